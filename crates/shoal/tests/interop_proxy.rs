//! `--proxy` through real proxies on loopback (127.0.5.1–20, ports 19601–19613 and
//! 19660–19669): a SOCKS5 one (microsocks) and an HTTP CONNECT one (tinyproxy), both
//! wanting a password, and a SOCKS5 one that relays UDP (Dante). A download reaches its
//! tracker and its seed only through the proxy, which connects out from an address of
//! its own, so the seed sees the proxy, not us; and with a proxy that is down, nothing
//! gets through although the tracker and the seed are reachable directly. Through
//! Dante's UDP relay go uTP, UDP tracker announces and the DHT.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const PROXY: &str = "127.0.5.1";
const PROXY_PORT: &str = "19601";
/// Where the proxy's own connections come from (microsocks -b).
const PROXY_OUT: &str = "127.0.5.2";
const TRACKER: &str = "127.0.5.3:19603";
const SEED: &str = "127.0.5.4:19604";

/// microsocks on PROXY:PROXY_PORT, wanting `user`/`secret`, connecting out from PROXY_OUT.
fn microsocks() -> Guard {
    require("microsocks");
    let child = Command::new("microsocks")
        .args(["-i", PROXY, "-p", PROXY_PORT, "-u", "user", "-P", "secret"])
        .args(["-b", PROXY_OUT])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn microsocks");
    let guard = Guard(child);
    wait_listening(&format!("{PROXY}:{PROXY_PORT}"), Duration::from_secs(10));
    guard
}

/// A torrent of `size` random bytes announcing to the HTTP tracker at `tracker`, seeded
/// by shoal at `seed` over TCP alone (not proxied) with JSON events; returns the data
/// folder, the torrent, the seed and its event lines.
fn seeded(
    dir: &Path,
    size: usize,
    tracker: &str,
    seed: &str,
) -> (PathBuf, PathBuf, Guard, LineFeed) {
    let announce = format!("http://{tracker}/announce");
    seeded_with(dir, size, &announce, seed, &["--utp", "off"])
}

/// [`seeded`] announcing to the tracker URL `announce`, with `extra` seed arguments.
fn seeded_with(
    dir: &Path,
    size: usize,
    announce: &str,
    seed: &str,
    extra: &[&str],
) -> (PathBuf, PathBuf, Guard, LineFeed) {
    let src = dir.join("src");
    random_file(&src.join("payload.bin"), size, 31);
    let torrent = dir.join("payload.torrent");
    run_ok(
        shoal()
            .args(["create", path_str(&src.join("payload.bin")), "-o"])
            .args([path_str(&torrent), "-t", announce]),
    );
    let mut cmd = shoal();
    cmd.args([
        "seed",
        path_str(&torrent),
        path_str(&src),
        "--json",
        "--no-dht",
    ])
    .args(extra)
    .args(["--listen", seed, "--state-dir"])
    .arg(dir.join("seed-state"));
    let (guard, lines) = start_and_watch(cmd, "\"started\"", Duration::from_secs(30));
    (src, torrent, guard, lines)
}

type LineFeed = std::sync::mpsc::Receiver<String>;

/// Addresses of one proxied download: the tracker, the seed, the downloader, and where
/// the proxy's own connections come from.
struct Route {
    tracker: &'static str,
    seed: &'static str,
    us: &'static str,
    proxy_out: &'static str,
}

/// `shoal get SOURCE --no-seed --json` into `dir`/out through `proxy` (a `--proxy`
/// URL), listening at `us`, with `extra` arguments; checks that it succeeded and
/// returns its standard output and standard error.
fn get_through(
    source: &str,
    dir: &Path,
    us: &str,
    proxy: &str,
    extra: &[&str],
) -> (String, String) {
    let mut get = shoal();
    get.args(["get", source, "-o"])
        .arg(dir.join("out"))
        .args(["--no-seed", "--json", "--listen", us, "--proxy", proxy])
        .args(extra)
        .arg("--state-dir")
        .arg(dir.join("state"));
    let (output, _) = run_with_timeout(&mut get, Duration::from_secs(90));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    (String::from_utf8_lossy(&output.stdout).into_owned(), stderr)
}

/// A download through `proxy` (a `--proxy` URL) finds its seed through the tracker, and
/// the seed sees only the proxy's address, never ours.
fn download_through(proxy: &str, route: Route) {
    let dir = tempdir();
    let _tracker = shoal_tracker(route.tracker, &[]);
    let (src, torrent, _seed, seed_events) = seeded(dir.path(), 700_000, route.tracker, route.seed);
    let (events, stderr) = get_through(path_str(&torrent), dir.path(), route.us, proxy, &[]);
    // Neither proxy relays UDP.
    assert!(stderr.contains("uTP and the DHT are off"), "{stderr}");
    same_files(
        &src.join("payload.bin"),
        &dir.path().join("out/payload.bin"),
    );
    assert!(
        events.contains(&format!("\"addr\":\"{}\"", route.seed)),
        "{events}"
    );
    let proxy_out = format!("\"addr\":\"{}:", route.proxy_out);
    let seen = wait_lines(&seed_events, &[&proxy_out], Duration::from_secs(10));
    let us = route.us.split(':').next().unwrap();
    assert!(!seen.iter().any(|l| l.contains(us)), "{seen:?}");
}

#[test]
fn a_download_goes_through_a_socks5_proxy_only() {
    let _proxy = microsocks();
    download_through(
        &format!("socks5://user:secret@{PROXY}:{PROXY_PORT}"),
        Route {
            tracker: TRACKER,
            seed: SEED,
            us: "127.0.5.5:19605",
            proxy_out: PROXY_OUT,
        },
    );
}

#[test]
fn nothing_bypasses_a_proxy_that_is_down() {
    let dir = tempdir();
    let _tracker = shoal_tracker("127.0.5.6:19606", &[]);
    let (_, torrent, _seed, _) = seeded(dir.path(), 300_000, "127.0.5.6:19606", "127.0.5.7:19607");
    // Nothing listens on the proxy's port. Stopped with SIGINT after 4 s.
    let mut get = Command::new("timeout");
    get.args(["--preserve-status", "-s", "INT", "4"])
        .arg(env!("CARGO_BIN_EXE_shoal"))
        .args(["get", path_str(&torrent), "-o"])
        .arg(dir.path().join("out"))
        .args(["--json", "--listen", "127.0.5.8:19608", "--state-dir"])
        .arg(dir.path().join("state"))
        .args([
            "--peer",
            "127.0.5.7:19607",
            "--proxy",
            "socks5://127.0.5.1:19699",
        ]);
    let (output, _) = run_with_timeout(&mut get, Duration::from_secs(20));
    let events = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{events}");
    assert!(!events.contains("peer_connected"), "{events}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

/// tinyproxy on 127.0.5.9:19609, wanting `user`/`secret`, connecting out from 127.0.5.10.
/// With no `ConnectPort` line it tunnels to any port.
fn tinyproxy(dir: &Path) -> Guard {
    require("tinyproxy");
    let conf = dir.join("tinyproxy.conf");
    std::fs::write(
        &conf,
        "Port 19609\nListen 127.0.5.9\nBind 127.0.5.10\nTimeout 60\n\
         Allow 127.0.0.0/8\nBasicAuth user secret\nLogLevel Error\nMaxClients 50\n",
    )
    .unwrap();
    let child = Command::new("tinyproxy")
        .args(["-d", "-c", path_str(&conf)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tinyproxy");
    let guard = Guard(child);
    wait_listening("127.0.5.9:19609", Duration::from_secs(10));
    guard
}

#[test]
fn a_download_goes_through_an_http_proxy_only() {
    let dir = tempdir();
    let _proxy = tinyproxy(dir.path());
    download_through(
        "http://user:secret@127.0.5.9:19609",
        Route {
            tracker: "127.0.5.11:19611",
            seed: "127.0.5.12:19612",
            us: "127.0.5.13:19613",
            proxy_out: "127.0.5.10",
        },
    );
}

/// Dante on 127.0.0.1:`port` (it listens only on an interface's address), relaying UDP
/// (UDP ASSOCIATE) and connecting out from 127.0.0.1, logging each session to `log`.
fn dante(dir: &Path, port: u16) -> (Guard, PathBuf) {
    require("danted");
    // Dante drops privileges to these users; as another user it stays that user.
    let (privileged, unprivileged) = match run_ok(Command::new("id").arg("-u")).trim() {
        "0" => ("root".to_owned(), "nobody".to_owned()),
        _ => {
            let me = run_ok(Command::new("id").arg("-un")).trim().to_owned();
            (me.clone(), me)
        }
    };
    let conf = dir.join(format!("danted-{port}.conf"));
    std::fs::write(
        &conf,
        format!(
            "logoutput: stderr\ninternal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\n\
             clientmethod: none\nsocksmethod: none\n\
             user.privileged: {privileged}\nuser.unprivileged: {unprivileged}\n\
             client pass {{\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n}}\n\
             socks pass {{\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n  \
             command: connect udpassociate udpreply\n  log: connect disconnect\n}}\n"
        ),
    )
    .unwrap();
    let log = dir.join(format!("danted-{port}.log"));
    let child = Command::new("danted")
        .args(["-f", path_str(&conf), "-N", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn danted");
    let guard = Guard(child);
    wait_listening(&format!("127.0.0.1:{port}"), Duration::from_secs(10));
    (guard, log)
}

/// Waits (10 s at most) until Dante's log has a UDP session with each of `addrs` (Dante
/// writes `IP.PORT`), logged once the session ends: our socket, or the one address the
/// session sent to (a session with several is logged with none).
fn wait_relayed(log: &Path, addrs: &[&str]) {
    let dotted: Vec<String> = addrs.iter().map(|a| a.replace(':', ".")).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let relayed = |addr: &String| {
            text.lines()
                .any(|l| l.contains("udp/udpassociate ]") && l.contains(addr.as_str()))
        };
        if dotted.iter().all(relayed) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{dotted:?} not in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Through a SOCKS5 proxy that relays UDP, a download announces to a UDP tracker and
/// reaches its seed over uTP, both through the relay: the seed sees its uTP peer at the
/// proxy's address, and the proxy logs the datagrams it passed to both.
#[test]
fn utp_and_udp_trackers_go_through_a_socks5_relay() {
    let dir = tempdir();
    let (_proxy, log) = dante(dir.path(), 19660);
    let tracker = "127.0.5.14:19661";
    let _tracker = shoal_tracker(tracker, &[]);
    let seed = "127.0.5.15:19662";
    let announce = format!("udp://{tracker}");
    let (src, torrent, _seed, seed_events) = seeded_with(dir.path(), 900_000, &announce, seed, &[]);

    let (events, _) = get_through(
        path_str(&torrent),
        dir.path(),
        "127.0.5.16:19663",
        "socks5://127.0.0.1:19660",
        &["--no-dht", "--utp", "only"],
    );
    same_files(
        &src.join("payload.bin"),
        &dir.path().join("out/payload.bin"),
    );
    assert!(events.contains("\"tracker_peers\""), "{events}");
    assert!(
        events.contains(&format!("\"addr\":\"{seed}\""))
            && events.contains("\"transport\":\"utp\""),
        "{events}"
    );
    let seen = wait_lines(
        &seed_events,
        &["\"addr\":\"127.0.0.1:"],
        Duration::from_secs(10),
    );
    assert!(!seen.iter().any(|l| l.contains("127.0.5.16")), "{seen:?}");
    wait_relayed(&log, &[tracker, seed]);
}

/// Through a SOCKS5 proxy that relays UDP, a magnet link is resolved on the DHT (its
/// node queries through the relay, as a read-only node) and downloaded from the seed
/// the DHT names.
#[test]
fn the_dht_goes_through_a_socks5_relay() {
    let dir = tempdir();
    let (_proxy, log) = dante(dir.path(), 19664);
    let boot = "127.0.5.17:19665";
    let mut node = shoal();
    node.args(["dht", "--listen", boot, "--interval", "1", "--json"]);
    let (_node, stats) = start_and_watch(node, "dht_stats", Duration::from_secs(10));
    let src = dir.path().join("src");
    random_file(&src.join("payload.bin"), 700_000, 33);
    let torrent = dir.path().join("payload.torrent");
    shoal_create(&src.join("payload.bin"), "64K", &torrent, &[]);
    let seed = "127.0.5.18:19666";
    let mut cmd = shoal();
    cmd.args(["seed", path_str(&torrent), path_str(&src), "--json"])
        .args(["--dht-bootstrap", boot, "--listen", seed, "--state-dir"])
        .arg(dir.path().join("seed-state"));
    let (_seed, _seed_events) = start_and_watch(cmd, "\"started\"", Duration::from_secs(30));
    // The seed's announce is stored before the download looks.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = stats
            .recv_timeout(left)
            .expect("the seed's announce stored");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["peers"].as_u64() >= Some(1) {
            break;
        }
    }
    let info = shoal_info(path_str(&torrent));
    let magnet = format!(
        "magnet:?xt=urn:btih:{}",
        info["info_hash"].as_str().unwrap()
    );
    let (events, stderr) = get_through(
        &magnet,
        dir.path(),
        "127.0.5.19:19667",
        "socks5://127.0.0.1:19664",
        &["--dht-bootstrap", boot],
    );
    assert!(!stderr.contains("relays no UDP"), "{stderr}");
    same_files(
        &src.join("payload.bin"),
        &dir.path().join("out/payload.bin"),
    );
    assert!(events.contains("\"metadata\""), "{events}");
    // The DHT's socket (ours, at the listen address) went through the relay.
    wait_relayed(&log, &["127.0.5.19:19667"]);
}
