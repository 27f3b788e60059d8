//! Trackers with real clients on loopback (addresses 127.0.1.x, ports 180xx):
//! libtorrent, aria2 and Transmission announce to `shoal tracker` over HTTP and UDP,
//! find a shoal peer and each other through it, and finish transfers; scrapes count
//! seeders and leechers right. `shoal get` finds its seed through opentracker, past
//! tiers whose trackers are down. A dual-stack shoal seed announces over both families
//! (ports 18080–18083, 127.0.1.80–81).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use shoal_core::{InfoHash, Metainfo};
use shoal_tracker::{ScrapeCounts, TrackerUrl};

/// Creates a torrent of `size` random bytes announcing to `tiers`.
fn make_torrent(dir: &Path, size: usize, tiers: &[&[&str]]) -> (PathBuf, PathBuf, InfoHash) {
    let src = dir.join("src");
    let file = src.join("payload.bin");
    random_file(&file, size, 7);
    let torrent = dir.join("payload.torrent");
    run_ok(shoal().args([
        "create",
        path_str(&file),
        "--piece-size",
        "64K",
        "-o",
        path_str(&torrent),
    ]));
    let mut meta = Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
    meta.trackers = tiers
        .iter()
        .map(|t| t.iter().map(|u| u.to_string()).collect())
        .collect();
    std::fs::write(&torrent, meta.to_bytes()).unwrap();
    (src, torrent, meta.info_hash)
}

fn http_scrape(addr: &str, hash: InfoHash) -> ScrapeCounts {
    scrape_url(&format!("http://{addr}/announce"), hash)
}

fn udp_scrape(addr: &str, hash: InfoHash) -> ScrapeCounts {
    scrape_url(&format!("udp://{addr}"), hash)
}

/// Waits (bounded) until `check` holds.
fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn connected_to(events: &[serde_json::Value], addr: &str) -> bool {
    events
        .iter()
        .any(|e| e["event"] == "peer_connected" && e["addr"] == addr)
}

/// Whether a connection with the host at `ip` was made, whichever side dialled: when both
/// learn of each other at once (the seed's announce answered after ours), the duplicate
/// rule may keep the seed's connection to us.
fn connected_with(events: &[serde_json::Value], ip: &str) -> bool {
    events.iter().any(|e| {
        e["event"] == "peer_connected"
            && e["addr"]
                .as_str()
                .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
                .is_some_and(|a| a.ip().to_string() == ip)
    })
}

/// Downloads a torrent through its trackers only; prints DONE once seeding, then seeds.
const LT_GET_TRACKED: &str = r#"
torrent, save, ip, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = session(ip, port)
h = s.add_torrent({'ti': lt.torrent_info(torrent), 'save_path': save})
deadline = time.time() + 60
while time.time() < deadline:
    if h.status().is_seeding:
        print('DONE', flush=True)
        break
    time.sleep(0.05)
time.sleep(max(0, deadline - time.time()))
"#;

fn lt_get_tracked(torrent: &Path, save: &Path, ip: &str, port: u16) -> Guard {
    require("/usr/bin/python3");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg("-c").arg(python_script(LT_GET_TRACKED)).args([
        path_str(torrent),
        path_str(save),
        ip,
        &port.to_string(),
    ]);
    start_and_wait(cmd, "DONE", Duration::from_secs(60))
}

/// Runs aria2c to completion (it exits after downloading with --seed-time=0).
fn aria2_get(torrent: &Path, out: &Path, ip: &str, port: u16, extra: &[&str]) {
    let mut args = vec!["--seed-time=0"];
    args.extend_from_slice(extra);
    let mut cmd = aria2(out, torrent, ip, port, &args);
    let (output, _) = run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert!(
        output.status.success(),
        "aria2c failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn http_tracker_libtorrent_seed_shoal_and_aria2_leech() {
    let dir = tempdir();
    let tracker = "127.0.1.20:18020";
    let url = format!("http://{tracker}/announce");
    let (src, torrent, hash) = make_torrent(dir.path(), 3 * 1024 * 1024 + 5, &[&[&url]]);
    let _tracker = shoal_tracker(tracker, &[]);
    let _lt = lt_seed(&torrent, &src, "127.0.1.21", 18021);
    wait_until("libtorrent's announce", Duration::from_secs(20), || {
        stats(tracker)["seeders"] == 1
    });

    // shoal finds the libtorrent seed through the tracker alone.
    let out = dir.path().join("shoal-out");
    let events = shoal_get(
        &torrent,
        &out,
        &dir.path().join("state"),
        "127.0.1.22:18022",
        &[],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    assert!(connected_to(&events, "127.0.1.21:18021"), "{events:?}");
    // shoal said completed, then stopped on its way out.
    let counts = http_scrape(tracker, hash);
    assert_eq!(
        (counts.complete, counts.downloaded, counts.incomplete),
        (1, 1, 0)
    );

    // aria2 too.
    let aria_out = dir.path().join("aria-out");
    aria2_get(&torrent, &aria_out, "127.0.1.23", 18023, &[]);
    same_files(&src.join("payload.bin"), &aria_out.join("payload.bin"));

    // aria2 (which sends no `completed` when it leaves at once) said stopped: the
    // libtorrent seed is left. A rate-limited shoal leecher then counts as a leecher.
    wait_until("aria2's stopped", Duration::from_secs(10), || {
        stats(tracker)["peers"] == 1
    });
    let downloaded = http_scrape(tracker, hash).downloaded;
    assert_eq!(
        http_scrape(tracker, hash),
        ScrapeCounts {
            complete: 1,
            downloaded,
            incomplete: 0,
            downloaders: Some(0),
        }
    );
    let mut slow = shoal();
    slow.args([
        "get",
        path_str(&torrent),
        "-o",
        path_str(&dir.path().join("slow")),
        "--json",
    ])
    .args(["--listen", "127.0.1.24:18024", "--max-down", "16K"])
    .args(["--state-dir", path_str(&dir.path().join("slow-state"))]);
    let _slow = start_and_wait(slow, "\"started\"", Duration::from_secs(30));
    wait_until(
        "the slow leecher's announce",
        Duration::from_secs(10),
        || http_scrape(tracker, hash).incomplete == 1,
    );
    assert_eq!(
        http_scrape(tracker, hash),
        ScrapeCounts {
            complete: 1,
            downloaded,
            incomplete: 1,
            downloaders: Some(1),
        }
    );
    // UDP scrapes have no room for BEP 21's `downloaders`.
    assert_eq!(
        udp_scrape(tracker, hash),
        ScrapeCounts {
            downloaders: None,
            ..http_scrape(tracker, hash)
        },
        "one swarm state"
    );
}

#[test]
fn udp_tracker_shoal_seed_libtorrent_and_aria2_leech() {
    let dir = tempdir();
    let tracker = "127.0.1.30:18030";
    // With a path, which libtorrent, aria2 and shoal send in BEP 41 options.
    let url = format!("udp://{tracker}/announce");
    let (src, torrent, hash) = make_torrent(dir.path(), 2 * 1024 * 1024 + 333, &[&[&url]]);
    let _tracker = shoal_tracker(tracker, &[]);
    let _seed = shoal_seed(
        &torrent,
        &src,
        &dir.path().join("seed-state"),
        "127.0.1.31:18031",
    );
    wait_until("the seed's announce", Duration::from_secs(10), || {
        udp_scrape(tracker, hash).complete == 1
    });

    let lt_out = dir.path().join("lt-out");
    let _lt = lt_get_tracked(&torrent, &lt_out, "127.0.1.32", 18032);
    same_files(&src.join("payload.bin"), &lt_out.join("payload.bin"));

    let aria_out = dir.path().join("aria-out");
    // aria2 speaks UDP trackers only over its DHT socket, so the DHT is switched on
    // (with no bootstrap nodes it contacts no one).
    let dht_file = dir.path().join("aria2-dht.dat");
    let dht_file = format!("--dht-file-path={}", path_str(&dht_file));
    aria2_get(
        &torrent,
        &aria_out,
        "127.0.1.33",
        18033,
        &["--enable-dht=true", "--dht-listen-port=18034", &dht_file],
    );
    same_files(&src.join("payload.bin"), &aria_out.join("payload.bin"));

    // The shoal seed and libtorrent (now seeding) remain; aria2 said stopped.
    wait_until("aria2's stopped", Duration::from_secs(10), || {
        udp_scrape(tracker, hash).complete == 2
    });
    let counts = udp_scrape(tracker, hash);
    assert_eq!((counts.complete, counts.incomplete), (2, 0), "{counts:?}");
    assert!(counts.downloaded >= 1, "{counts:?}");
}

/// Transmission 3 announces to `shoal tracker` over HTTP and UDP; as a leecher it does
/// not dial 127.x peers it learns from a tracker (seen here, and noted in the testing
/// guide), so the shoal seed, started after it, learns its address from the tracker and
/// dials it.
#[test]
fn transmission_announces_and_shoal_seed_reaches_it() {
    require("transmission-cli");
    let dir = tempdir();
    // Two trackers in two tiers: Transmission announces to every tier, so it is seen
    // over HTTP by the first and over UDP by the second.
    let tracker = "127.0.1.40:18040";
    let udp_tracker = "127.0.1.43:18043";
    let url = format!("http://{tracker}/announce");
    let udp_url = format!("udp://{udp_tracker}");
    let (src, torrent, hash) =
        make_torrent(dir.path(), 2 * 1024 * 1024 + 17, &[&[&url], &[&udp_url]]);
    let _tracker = shoal_tracker(tracker, &[]);
    let _udp_tracker = shoal_tracker(udp_tracker, &[]);
    let config = dir.path().join("transmission");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("settings.json"),
        r#"{"dht-enabled": false, "lpd-enabled": false, "pex-enabled": false, "utp-enabled": false,
            "port-forwarding-enabled": false, "peer-port": 18041, "rename-partial-files": true}"#,
    )
    .unwrap();
    let out = dir.path().join("tr-out");
    std::fs::create_dir_all(&out).unwrap();
    let _transmission = Guard(
        Command::new("transmission-cli")
            .args(["-g", path_str(&config), "-w", path_str(&out), "-p", "18041"])
            .arg(&torrent)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn transmission-cli"),
    );
    wait_until("Transmission's announces", Duration::from_secs(30), || {
        http_scrape(tracker, hash).incomplete == 1 && udp_scrape(udp_tracker, hash).incomplete == 1
    });
    let _seed = shoal_seed(
        &torrent,
        &src,
        &dir.path().join("seed-state"),
        "127.0.1.42:18042",
    );
    let want = std::fs::read(src.join("payload.bin")).unwrap();
    wait_until("Transmission's download", Duration::from_secs(60), || {
        std::fs::read(out.join("payload.bin")).is_ok_and(|got| got == want)
    });
    // Transmission announces `completed` and becomes the second seeder (the shoal seed
    // announced to the first tier only, as BEP 12 says).
    wait_until(
        "Transmission's completed over UDP",
        Duration::from_secs(20),
        || {
            udp_scrape(udp_tracker, hash)
                == ScrapeCounts {
                    complete: 1,
                    downloaded: 1,
                    incomplete: 0,
                    downloaders: None,
                }
        },
    );
    wait_until(
        "Transmission's completed over HTTP",
        Duration::from_secs(20),
        || {
            http_scrape(tracker, hash)
                == ScrapeCounts {
                    complete: 2,
                    downloaded: 1,
                    incomplete: 0,
                    downloaders: Some(0),
                }
        },
    );
}

/// opentracker from Debian: whitelist-only, drops root to its own user, chroots into
/// `tracker.rootdir`.
fn opentracker(dir: &Path, ip: &str, port: u16, hash: InfoHash) -> Guard {
    use std::os::unix::fs::PermissionsExt;
    require("opentracker");
    let root = dir.join("opentracker");
    std::fs::create_dir_all(&root).unwrap();
    for p in [dir, &root] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(root.join("whitelist.txt"), format!("{}\n", hash.to_hex())).unwrap();
    let conf = root.join("opentracker.conf");
    std::fs::write(
        &conf,
        format!(
            "tracker.rootdir {}\naccess.whitelist /whitelist.txt\ntracker.user _opentracker\n",
            root.display()
        ),
    )
    .unwrap();
    let child = Command::new("opentracker")
        .args([
            "-i",
            ip,
            "-p",
            &port.to_string(),
            "-P",
            &port.to_string(),
            "-f",
            path_str(&conf),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn opentracker");
    let guard = Guard(child);
    wait_listening(&format!("{ip}:{port}"), Duration::from_secs(10));
    guard
}

#[test]
fn shoal_get_through_opentracker_past_dead_trackers() {
    let dir = tempdir();
    // Nothing listens on 18063 (TCP or UDP): tier 1 is down, and tier 2 holds a dead
    // UDP tracker beside opentracker, in a random order.
    let dead_http = "http://127.0.1.60:18063/announce";
    let dead_udp = "udp://127.0.1.60:18063";
    let (src, torrent, hash) = make_torrent(
        dir.path(),
        3 * 1024 * 1024 + 1,
        &[
            &[dead_http],
            &[dead_udp, "http://127.0.1.60:18060/announce"],
        ],
    );
    let _tracker = opentracker(dir.path(), "127.0.1.60", 18060, hash);
    // No DHT: the tracker is the only way to meet.
    let _seed = shoal_seed_with(
        &torrent,
        &src,
        &dir.path().join("seed-state"),
        "127.0.1.61:18061",
        &["--no-dht"],
    );
    let out = dir.path().join("out");
    let started = Instant::now();
    let events = shoal_get_with(
        &torrent,
        &out,
        &dir.path().join("state"),
        "127.0.1.62:18062",
        &[],
        &["--no-dht"],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    assert!(connected_with(&events, "127.0.1.61"), "{events:?}");
    // shoal's scrape client reads opentracker's counts: the seed, and one download.
    let counts = http_scrape("127.0.1.60:18060", hash);
    assert_eq!(
        (counts.complete, counts.incomplete, counts.downloaded),
        (1, 0, 1)
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    // The same through opentracker's UDP side.
    let (src2, torrent2, hash2) = make_torrent(
        &dir.path().join("udp"),
        1024 * 1024 + 3,
        // With a path: shoal sends it in BEP 41 options, which opentracker reads past.
        &[&[dead_udp], &["udp://127.0.1.60:18060/announce"]],
    );
    drop(_tracker);
    let _tracker = opentracker(&dir.path().join("udp"), "127.0.1.60", 18060, hash2);
    let _seed2 = shoal_seed_with(
        &torrent2,
        &src2,
        &dir.path().join("seed2-state"),
        "127.0.1.63:18064",
        &["--no-dht"],
    );
    let out2 = dir.path().join("out2");
    let events = shoal_get_with(
        &torrent2,
        &out2,
        &dir.path().join("state2"),
        "127.0.1.64:18065",
        &[],
        &["--no-dht"],
    );
    same_files(&src2.join("payload.bin"), &out2.join("payload.bin"));
    assert!(connected_with(&events, "127.0.1.63"), "{events:?}");
    let counts = udp_scrape("127.0.1.60:18060", hash2);
    assert_eq!(
        (counts.complete, counts.incomplete, counts.downloaded),
        (1, 0, 1)
    );

    // `shoal scrape` asks each of the torrent's trackers: opentracker answers, the dead
    // one is reported, and one answer is enough.
    let (output, _) = run_with_timeout(
        shoal().args(["scrape", path_str(&torrent2), "--json", "--timeout", "2"]),
        Duration::from_secs(30),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |url: &str| lines.iter().find(|l| l["tracker"] == url).unwrap().clone();
    let live = of("udp://127.0.1.60:18060/announce");
    assert_eq!(
        (&live["seeders"], &live["leechers"], &live["downloaded"]),
        (&1.into(), &0.into(), &1.into()),
        "{live}"
    );
    assert_eq!(live["info_hash"], hash2.to_hex());
    assert!(of(dead_udp)["error"].is_string(), "{stdout}");
    // Only dead trackers: exit 1, saying so.
    let (output, _) = run_with_timeout(
        shoal().args(["scrape", &hash2.to_hex(), "-t", dead_udp, "--timeout", "1"]),
        Duration::from_secs(30),
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no tracker answered"), "{stderr}");
}

/// Sends `signal` (e.g. "-HUP") to a process this test started.
fn signal(guard: &Guard, signal: &str) {
    run_ok(Command::new("kill").args([signal, &guard.0.id().to_string()]));
}

/// One HTTP announce from `ip` (the address the tracker records), through shoal's own
/// tracker client; returns the parsed answer.
fn announce_from(
    tracker: &str,
    hash: InfoHash,
    ip: &str,
    event: shoal_tracker::Event,
) -> Result<shoal_tracker::AnnounceResponse, shoal_tracker::TrackerError> {
    use shoal_tracker::client::http::{announce_path, parse_announce};
    use shoal_tracker::driver::http::{get, HttpConfig};
    let url = TrackerUrl::parse(&format!("http://{tracker}/announce")).unwrap();
    let request = shoal_tracker::AnnounceRequest {
        info_hash: hash,
        peer_id: shoal_core::PeerId([b'x'; 20]),
        port: 18099,
        progress: shoal_tracker::Progress {
            uploaded: 0,
            downloaded: 0,
            left: 1,
            partial_seed: false,
        },
        event,
        numwant: None,
        key: 0,
        tracker_id: None,
    };
    let config = HttpConfig {
        bind: Some(ip.parse().unwrap()),
        ..HttpConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = runtime.block_on(get(&url, &announce_path(&url, &request), &config))?;
    parse_announce(&body)
}

#[test]
fn tracker_allow_list_reloads_on_sighup_and_stops_on_sigterm() {
    let dir = tempdir();
    let tracker = "127.0.1.70:18070";
    let (a, b) = (InfoHash([0xaa; 20]), InfoHash([0xbb; 20]));
    let list = dir.path().join("allow.txt");
    std::fs::write(&list, format!("# served here\n{}\n", a.to_hex())).unwrap();
    let server = shoal_tracker(tracker, &["--allow-list", path_str(&list)]);
    use shoal_tracker::Event::Started;
    assert!(announce_from(tracker, a, "127.0.1.71", Started).is_ok());
    assert_eq!(
        announce_from(tracker, b, "127.0.1.71", Started),
        Err(shoal_tracker::TrackerError::Failure(
            "info-hash not served by this tracker".into()
        ))
    );
    std::fs::write(&list, format!("{}\n", b.to_hex())).unwrap();
    signal(&server, "-HUP");
    wait_until("the reloaded allow-list", Duration::from_secs(5), || {
        announce_from(tracker, b, "127.0.1.71", Started).is_ok()
    });
    assert!(
        announce_from(tracker, a, "127.0.1.71", Started).is_err(),
        "a is no longer served"
    );
    assert_eq!(stats(tracker)["torrents"], 1, "a's swarm was dropped");

    let mut server = server;
    signal(&server, "-TERM");
    let status = server.wait_exit(Duration::from_secs(3), "shoal tracker ignored SIGTERM");
    assert!(status.success(), "{status}");
}

#[test]
fn seed_says_stopped_on_sigterm() {
    let dir = tempdir();
    let tracker = "127.0.1.75:18075";
    let url = format!("http://{tracker}/announce");
    let (src, torrent, hash) = make_torrent(dir.path(), 100_000, &[&[&url]]);
    let _tracker = shoal_tracker(tracker, &[]);
    let seed = shoal_seed(
        &torrent,
        &src,
        &dir.path().join("state"),
        "127.0.1.76:18076",
    );
    wait_until("the seed's announce", Duration::from_secs(10), || {
        http_scrape(tracker, hash).complete == 1
    });
    // A leecher sees the seed at the address it listens on.
    let answer = announce_from(tracker, hash, "127.0.1.77", shoal_tracker::Event::Started).unwrap();
    assert_eq!(answer.peers, vec!["127.0.1.76:18076".parse().unwrap()]);
    let started = Instant::now();
    signal(&seed, "-TERM");
    wait_until("the seed's stopped", Duration::from_secs(3), || {
        http_scrape(tracker, hash).complete == 0
    });
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A magnet link whose only source of peers is its `tr=` tracker (no DHT, no `x.pe`):
/// the tracker finds the seed for the metadata, then for the download.
#[test]
fn magnet_with_only_a_tracker() {
    let dir = tempdir();
    let tracker = "127.0.1.70:18070";
    let url = format!("http://{tracker}/announce");
    let (src, torrent, hash) = make_torrent(dir.path(), 1024 * 1024 + 7, &[&[&url]]);
    let _tracker = shoal_tracker(tracker, &[]);
    let _seed = shoal_seed(
        &torrent,
        &src,
        &dir.path().join("seed-state"),
        "127.0.1.71:18071",
    );
    wait_until("the seed's announce", Duration::from_secs(10), || {
        http_scrape(tracker, hash).complete == 1
    });
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&tr={}",
        hash.to_hex(),
        url.replace(':', "%3A").replace('/', "%2F")
    );
    let out = dir.path().join("out");
    let mut get = shoal();
    get.args([
        "get",
        &magnet,
        "-o",
        path_str(&out),
        "--no-seed",
        "--json",
        "--no-dht",
    ])
    .args(["--listen", "127.0.1.72:18072"])
    .args(["--state-dir", path_str(&dir.path().join("state"))]);
    let events = json_events(&mut get);
    assert!(
        events.iter().any(|e| e["event"] == "metadata"),
        "{events:?}"
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
}

/// `--tracker` adds a tracker to a torrent and to a magnet that name none: a seed
/// announces a tracker-less torrent there, and a download of the bare magnet finds the
/// seed there for its metadata and its data. The metadata it keeps names no tracker.
#[test]
fn trackers_added_on_the_command_line() {
    let dir = tempdir();
    let tracker = "127.0.1.90:18090";
    let (src, torrent, hash) = make_torrent(dir.path(), 1024 * 1024 + 9, &[]);
    let _tracker = shoal_tracker(tracker, &[]);
    let http = format!("http://{tracker}/announce");
    let udp = format!("udp://{tracker}");
    let _seed = shoal_seed_with(
        &torrent,
        &src,
        &dir.path().join("seed-state"),
        "127.0.1.91:18091",
        &["--no-dht", "--tracker", &http],
    );
    wait_until("the seed's announce", Duration::from_secs(10), || {
        http_scrape(tracker, hash).complete == 1
    });
    let out = dir.path().join("out");
    let state = dir.path().join("state");
    let mut get = shoal();
    get.args([
        "get",
        &hash.to_hex(),
        "-o",
        path_str(&out),
        "--no-seed",
        "--json",
    ])
    .args(["--no-dht", "--listen", "127.0.1.92:18092", "--state-dir"])
    .args([path_str(&state), "--tracker", &udp]);
    let events = json_events(&mut get);
    assert!(
        events.iter().any(|e| e["event"] == "metadata"),
        "{events:?}"
    );
    assert!(connected_to(&events, "127.0.1.91:18091"), "{events:?}");
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    let kept = shoal_info(path_str(&state.join(format!("{}.torrent", hash.to_hex()))));
    assert_eq!(kept["trackers"], serde_json::json!([]));
}

/// A full `shoal tracker` tells a refused client when to come back (BEP 31 `retry in`:
/// its announce interval, here 10 s, in whole minutes), and `shoal get` waits that long
/// instead of its own first back-off of 30 s. (libtorrent backs off half an hour from
/// any failure, so it cannot show the difference.)
#[test]
fn a_full_tracker_says_when_to_retry_and_shoal_waits() {
    let dir = tempdir();
    let tracker = "127.0.1.95:18095";
    let url = format!("http://{tracker}/announce");
    let _tracker = shoal_tracker(tracker, &["--max-torrents", "1"]);
    let (src, first, hash) = make_torrent(&dir.path().join("a"), 100_000, &[&[&url]]);
    let (_, second, _) = make_torrent(&dir.path().join("b"), 100_001, &[&[&url]]);
    let _seed = shoal_seed_with(
        &first,
        &src,
        &dir.path().join("seed-state"),
        "127.0.1.96:18096",
        &["--no-dht"],
    );
    wait_until(
        "the first torrent's announce",
        Duration::from_secs(10),
        || http_scrape(tracker, hash).complete == 1,
    );
    // Stopped by SIGINT after 3 s (no peer has the second torrent), as a user would.
    let mut get = Command::new("timeout");
    get.args(["-s", "INT", "3", env!("CARGO_BIN_EXE_shoal")])
        .args(["get", path_str(&second), "-o"])
        .arg(dir.path().join("out"))
        .args(["--no-dht", "--listen", "127.0.1.97:18097", "--state-dir"])
        .arg(dir.path().join("state"));
    let (output, _) = run_with_timeout(&mut get, Duration::from_secs(15));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("tracker is full: too many torrents (retry in 1 minute); retrying in 60s"),
        "{stderr}"
    );
}

/// A seed listening dual-stack (`[::]`) announces once over IPv4 and once over IPv6, as
/// libtorrent announces from each listen socket: the tracker, reachable as 127.0.1.80
/// and as ::1 (two URLs in one tier), learns both of its addresses, and libtorrent on
/// ::1 alone and libtorrent on IPv4 alone each find it there and download. Each
/// family's announcer passes over the URL of the other family without a warning.
#[test]
fn a_dual_stack_seed_announces_over_both_families() {
    let dir = tempdir();
    let (v4, v6) = (
        "http://127.0.1.80:18080/announce",
        "http://[::1]:18080/announce",
    );
    let (src, torrent, hash) = make_torrent(dir.path(), 2 * 1024 * 1024 + 77, &[&[v4, v6]]);
    // On every address of both families, port 18080.
    let tracker = shoal()
        .args(["tracker", "--http", "[::]:18080", "--udp", "[::]:18080"])
        .args(["--interval", "10"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn shoal tracker");
    let _tracker = Guard(tracker);
    wait_listening("127.0.1.80:18080", Duration::from_secs(10));
    let mut seed = shoal();
    seed.args(["seed", path_str(&torrent), path_str(&src), "--json"])
        .args(["--listen", "[::]:18081", "--no-dht"])
        .args(["--state-dir", path_str(&dir.path().join("seed-state"))]);
    let (_seed, lines) = start_and_watch(seed, "\"started\"", Duration::from_secs(30));
    wait_until("both announces", Duration::from_secs(10), || {
        scrape_url(v4, hash).complete == 2
    });
    // Its UDP socket, on every address too, answers from the one asked (127.0.1.80, not
    // the route's 127.0.0.1): a client's connected socket takes nothing else.
    assert_eq!(udp_scrape("127.0.1.80:18080", hash).complete, 2);

    let lt6 = dir.path().join("lt6");
    let _lt6 = lt_get_tracked(&torrent, &lt6, "::1", 18082);
    same_files(&src.join("payload.bin"), &lt6.join("payload.bin"));
    let lt4 = dir.path().join("lt4");
    let _lt4 = lt_get_tracked(&torrent, &lt4, "127.0.1.81", 18083);
    same_files(&src.join("payload.bin"), &lt4.join("payload.bin"));
    // Both came to the seed: an IPv6 peer and an IPv4 one.
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(seen.contains("[::1]:") && seen.contains("127.0.1.81:")) && Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
            if line.contains("peer_connected") {
                seen.push_str(&line);
            }
        }
    }
    assert!(
        seen.contains("[::1]:") && seen.contains("127.0.1.81:"),
        "{seen}"
    );
}

/// A tracker that records each announce's query and answers with no peers: what the
/// client sends is the thing under test here.
fn recording_tracker(addr: &str) -> std::sync::mpsc::Receiver<String> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(addr).expect("bind recording tracker");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut request = Vec::new();
            let mut buf = [0u8; 2048];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16384 {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let body = b"d8:intervali1800e5:peers0:e";
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
            let line = String::from_utf8_lossy(&request);
            let target = line.split(' ').nth(1).unwrap_or_default().to_string();
            if tx.send(target).is_err() {
                return;
            }
        }
    });
    rx
}

/// The raw bytes of an announce's query parameter `name` (percent-decoded).
fn query_param(target: &str, name: &str) -> Vec<u8> {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let value = query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {target}"));
    let mut out = Vec::new();
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex: String = bytes.by_ref().take(2).map(char::from).collect();
            out.push(u8::from_str_radix(&hex, 16).expect("percent escape"));
        } else {
            out.push(b);
        }
    }
    out
}

/// BEP 7: a client announcing from several addresses sends one key (and libtorrent one
/// peer id) with each, so a tracker can tell the announces are one client's. shoal's
/// two family announcers send the same key and the peer id of the seed's handshakes.
#[test]
fn both_families_announce_one_peer_id_and_key() {
    let dir = tempdir();
    let (v4, v6) = ("127.0.1.82:18084", "[::1]:18084");
    let (urls4, urls6) = (
        format!("http://{v4}/announce"),
        format!("http://{v6}/announce"),
    );
    let (announces4, announces6) = (recording_tracker(v4), recording_tracker(v6));
    let (src, torrent, hash) = make_torrent(dir.path(), 300 * 1024, &[&[&urls4, &urls6]]);
    let mut seed = shoal();
    seed.args(["seed", path_str(&torrent), path_str(&src), "--json"])
        .args(["--listen", "[::]:18085", "--no-dht", "--no-port-map"])
        .args(["--state-dir", path_str(&dir.path().join("seed-state"))]);
    let (_seed, _lines) = start_and_watch(seed, "\"started\"", Duration::from_secs(30));
    let four = announces4
        .recv_timeout(Duration::from_secs(10))
        .expect("an announce over IPv4");
    let six = announces6
        .recv_timeout(Duration::from_secs(10))
        .expect("an announce over IPv6");
    assert_eq!(query_param(&four, "info_hash"), hash.0);
    assert_eq!(query_param(&six, "info_hash"), hash.0);
    assert_eq!(query_param(&four, "key"), query_param(&six, "key"));
    let peer_id = query_param(&four, "peer_id");
    assert_eq!(peer_id, query_param(&six, "peer_id"));

    // The seed's handshake names the same peer id.
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect("127.0.0.1:18085").expect("connect to seed");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut handshake = b"\x13BitTorrent protocol".to_vec();
    handshake.extend_from_slice(&[0; 8]);
    handshake.extend_from_slice(&hash.0);
    handshake.extend_from_slice(b"-XX0000-test-peer-id");
    stream.write_all(&handshake).unwrap();
    let mut answer = [0u8; 68];
    stream
        .read_exact(&mut answer)
        .expect("the seed's handshake");
    assert_eq!(&answer[28..48], &hash.0);
    assert_eq!(&answer[48..68], &peer_id[..]);
}
