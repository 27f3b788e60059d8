//! Trackerless transfers against real clients on loopback (127.0.2.100–247, ports
//! 19100–19247, multicast port 19970): the Mainline DHT and magnet links with metadata from peers (BEP 9).
//!
//! - libtorrent seeds a torrent announced only on the DHT (bootstrapped to a `shoal dht`
//!   node); `shoal get magnet:` finds it there and downloads it.
//! - The reverse: a shoal seed on the DHT only; libtorrent downloads the magnet, and a
//!   DHT scrape (BEP 33) counts the seed.
//! - A shoal download that completes and seeds on is counted as a seed too.
//! - aria2 fetches a magnet's metadata from a shoal seed it found on the DHT.
//! - 20 in-process shoal nodes and two libtorrent nodes form one DHT; get_peers finds
//!   peers announced from either kind.
//! - A torrent's own DHT nodes (BEP 5 `nodes`): libtorrent makes a torrent naming a
//!   `shoal dht` node and seeds it on the DHT; `shoal get` of the torrent, given no
//!   bootstrap node, enters the DHT there and downloads. `shoal create --dht-node`
//!   writes nodes libtorrent reads, and leaves the info-hash alone.
//! - Torrents that change (BEP 46): `shoal dht publish` puts a torrent under a key, and
//!   `shoal get magnet:?xs=urn:btpk:…` downloads it; after a second torrent is published
//!   with the same key, the same link downloads that one.
//! - shoal to shoal with a magnet's `x.pe` peer and no DHT at all.
//! - Peer exchange (BEP 11) between shoal peers, and local service discovery (BEP 14)
//!   on a private multicast port.
//! - The IPv6 DHT (BEP 32) over ::1 (ports 19501–19513): both of the first two again,
//!   with every node, seed and download on IPv6.
//! - Dual-stack (127.0.2.231, ports 19521–19525): a `shoal dht` on `[::]` is a node
//!   in each DHT, and a download on `[::]` runs a node in each and finds a libtorrent
//!   seed announced only in the IPv4 DHT and another announced only in the IPv6 one.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A libtorrent session with its DHT on, bootstrapped to `boot`, and the settings that
/// let it route and search among loopback addresses.
const LT_SESSION: &str = r#"
import libtorrent as lt, sys, time
def session(ip, port, boot):
    host = '[%s]' % ip if ':' in ip else ip
    return lt.session({
        'listen_interfaces': '%s:%d' % (host, port), 'outgoing_interfaces': ip,
        'enable_dht': True, 'dht_bootstrap_nodes': boot,
        'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
        'enable_incoming_utp': False, 'enable_outgoing_utp': False,
        'allow_multiple_connections_per_ip': True,
        'dht_restrict_routing_ips': False, 'dht_restrict_search_ips': False,
        'dht_ignore_dark_internet': False, 'dht_prefer_verified_node_ids': False,
        'alert_mask': lt.alert.category_t.all_categories,
    })
"#;

/// Seeds a .torrent (argv[1]) from argv[2], announcing on the DHT only, until killed
/// (at most 120 s); prints READY once seeding.
const LT_SEED: &str = r#"
torrent, save, ip, port, boot = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
s = session(ip, port, boot)
h = s.add_torrent({'ti': lt.torrent_info(torrent), 'save_path': save})
deadline = time.time() + 120
ready, last = False, 0
while time.time() < deadline:
    s.pop_alerts()
    if time.time() - last > 2:
        h.force_dht_announce()
        last = time.time()
    if h.status().is_seeding and not ready:
        print('READY', flush=True)
        ready = True
    time.sleep(0.1)
"#;

/// Downloads a magnet (argv[1]) into argv[2] with peers from the DHT only; prints DONE.
const LT_GET_MAGNET: &str = r#"
magnet, save, ip, port, boot = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
s = session(ip, port, boot)
p = lt.parse_magnet_uri(magnet)
p.save_path = save
h = s.add_torrent(p)
deadline = time.time() + 60
last = 0
while time.time() < deadline:
    s.pop_alerts()
    if time.time() - last > 2:
        h.force_dht_announce()
        last = time.time()
    st = h.status()
    if st.is_seeding:
        print('DONE', st.total_payload_download, flush=True)
        sys.exit(0)
    time.sleep(0.1)
print('TIMEOUT', h.status().progress, h.status().num_peers, flush=True)
sys.exit(1)
"#;

/// A libtorrent node that joins the swarm of info-hash argv[4] (as a magnet whose
/// metadata never comes, so it announces its listen port on the DHT), looks up
/// argv[5], and prints `FOUND ip:port` for every peer its lookups return (for 60 s).
const LT_DHT_NODE: &str = r#"
ip, port, boot, announce, search, save = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
s = session(ip, port, boot)
p = lt.parse_magnet_uri('magnet:?xt=urn:btih:' + announce)
p.save_path = save
h = s.add_torrent(p)
want = lt.sha1_hash(bytes.fromhex(search))
deadline = time.time() + 60
last = 0
print('STARTED', flush=True)
while time.time() < deadline:
    for a in s.pop_alerts():
        if isinstance(a, lt.dht_get_peers_reply_alert) and str(a.info_hash) == search:
            for peer in a.peers():
                print('FOUND %s:%d' % (peer[0], peer[1]), flush=True)
    if time.time() - last > 1:
        h.force_dht_announce()
        s.dht_get_peers(want)
        last = time.time()
    time.sleep(0.05)
"#;

fn python_script(body: &str) -> String {
    format!("{LT_SESSION}\n{body}")
}

fn python_cmd(body: &str, args: &[&str]) -> Command {
    require("/usr/bin/python3");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg("-c").arg(python_script(body)).args(args);
    cmd
}

/// libtorrent seeding `torrent` (data in `src`) at `at`, announced only on the DHT it
/// bootstraps into from `boot`.
fn lt_dht_seed(torrent: &Path, src: &Path, at: &str, boot: &str) -> Guard {
    let at: SocketAddr = at.parse().expect("IP:PORT");
    let (ip, port) = (at.ip().to_string(), at.port().to_string());
    let args = [path_str(torrent), path_str(src), &ip, &port, boot];
    start_and_wait(python_cmd(LT_SEED, &args), "READY", Duration::from_secs(60))
}

/// A `shoal dht` bootstrap node printing JSON stats every second.
fn shoal_dht(listen: &str, state: &Path) -> (Guard, std::sync::mpsc::Receiver<String>) {
    let mut cmd = shoal();
    cmd.args([
        "dht",
        "--listen",
        listen,
        "--interval",
        "1",
        "--json",
        "--state",
        path_str(state),
    ]);
    start_and_watch(cmd, "dht_stats", Duration::from_secs(10))
}

fn shoal_seed(torrent: &Path, data: &Path, state: &Path, listen: &str, boot: &str) -> Guard {
    let mut cmd = shoal();
    cmd.args([
        "seed",
        path_str(torrent),
        path_str(data),
        "--json",
        "--listen",
        listen,
        "--dht-bootstrap",
        boot,
        "--state-dir",
        path_str(state),
    ]);
    start_and_watch(cmd, "\"started\"", Duration::from_secs(30)).0
}

/// Waits (10 s at most) until a `shoal dht` node's stats say it stores a peer.
fn wait_for_stored_announce(stats: &std::sync::mpsc::Receiver<String>) {
    wait_for_stored_announces(stats, &["ipv4", "ipv6"], 1);
}

/// Waits (10 s at most) until the stats of `shoal dht` nodes of `count` of `families`
/// say they store a peer.
fn wait_for_stored_announces(
    stats: &std::sync::mpsc::Receiver<String>,
    families: &[&str],
    count: usize,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut storing = std::collections::BTreeSet::new();
    while storing.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = stats
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("stored announces only in {storing:?}"));
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON stats");
        let family = v["family"].as_str().expect("a family").to_owned();
        if families.contains(&family.as_str()) && v["peers"].as_u64().unwrap_or(0) >= 1 {
            storing.insert(family);
        }
    }
}

/// Runs `shoal get --no-seed --json` on `source` to completion (bounded).
fn shoal_get(source: &str, out: &Path, state: &Path, listen: &str, extra: &[&str]) -> String {
    let mut cmd = shoal();
    cmd.args(["get", source, "-o", path_str(out), "--no-seed", "--json"])
        .args(["--listen", listen, "--state-dir", path_str(state)])
        .args(extra);
    let (output, _) = run_with_timeout(&mut cmd, Duration::from_secs(90));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "shoal get failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A 2 MiB + 333 byte file in 64 KiB pieces and its torrent; returns (folder, torrent,
/// magnet link without peers or trackers).
fn make_torrent(dir: &Path, seed: u64) -> (PathBuf, PathBuf, String) {
    let src = dir.join("src");
    random_file(&src.join("payload.bin"), 2 * 1024 * 1024 + 333, seed);
    let torrent = dir.join("payload.torrent");
    run_ok(shoal().args([
        "create",
        path_str(&src.join("payload.bin")),
        "--piece-size",
        "64K",
        "-o",
        path_str(&torrent),
    ]));
    let info = shoal_info(path_str(&torrent));
    let magnet = format!(
        "magnet:?xt=urn:btih:{}",
        info["info_hash"].as_str().expect("info_hash")
    );
    (src, torrent, magnet)
}

#[test]
fn libtorrent_seeds_on_dht_shoal_gets_magnet() {
    let dir = tempdir();
    let (src, torrent, magnet) = make_torrent(dir.path(), 1);
    let dht_state = dir.path().join("dht.state");
    let (mut boot, stats) = shoal_dht("127.0.2.100:19100", &dht_state);
    let _seed = lt_dht_seed(&torrent, &src, "127.0.2.101:19101", "127.0.2.100:19100");
    let out = dir.path().join("out");
    let events = shoal_get(
        &magnet,
        &out,
        &dir.path().join("state"),
        "127.0.2.102:19102",
        &["--dht-bootstrap", "127.0.2.100:19100"],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    assert!(events.contains("\"metadata\""), "{events}");

    // The bootstrap node stored libtorrent's announce, and saves its table on SIGTERM.
    wait_for_stored_announce(&stats);
    let pid = boot.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while boot.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "shoal dht did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let saved = std::fs::read(&dht_state).expect("state file written");
    assert!(saved.starts_with(b"d2:id20:"), "{saved:?}");
}

/// BEP 32: libtorrent announces on the IPv6 DHT through a `shoal dht` node on ::1, and
/// `shoal get` finds it there (its node learns IPv6 nodes from `nodes6`, and the peer
/// from 18-byte `values`).
#[test]
fn libtorrent_seeds_on_the_ipv6_dht_shoal_gets_magnet() {
    let dir = tempdir();
    let (src, torrent, magnet) = make_torrent(dir.path(), 11);
    let (_boot, stats) = shoal_dht("[::1]:19501", &dir.path().join("dht.state"));
    let _seed = lt_dht_seed(&torrent, &src, "[::1]:19502", "[::1]:19501");
    let out = dir.path().join("out");
    let events = shoal_get(
        &magnet,
        &out,
        &dir.path().join("state"),
        "[::1]:19503",
        &["--dht-bootstrap", "[::1]:19501"],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    assert!(events.contains("\"metadata\""), "{events}");
    assert!(events.contains("\"addr\":\"[::1]:19502\""), "{events}");
    wait_for_stored_announce(&stats);
}

/// BEP 32, the other way: a shoal seed announces on the IPv6 DHT and libtorrent finds
/// it through the shoal node's IPv6 answers.
#[test]
fn shoal_seeds_on_the_ipv6_dht_libtorrent_gets_magnet() {
    let dir = tempdir();
    let (src, torrent, magnet) = make_torrent(dir.path(), 12);
    let (_boot, _) = shoal_dht("[::1]:19511", &dir.path().join("dht.state"));
    let _seed = shoal_seed(
        &torrent,
        &src,
        &dir.path().join("seed-state"),
        "[::1]:19512",
        "[::1]:19511",
    );
    let out = dir.path().join("lt-out");
    let stdout = run_ok(&mut python_cmd(
        LT_GET_MAGNET,
        &[&magnet, path_str(&out), "::1", "19513", "[::1]:19511"],
    ));
    assert!(stdout.contains("DONE"), "{stdout}");
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
}

/// Dual-stack, as libtorrent listens by default: one `shoal dht` on `[::]` is a node in
/// both DHTs, and `shoal get` on `[::]` joins both through one UDP socket and finds one
/// seed in each: the IPv4 nodes' queries and answers go out through IPv6 sockets as
/// mapped addresses, and come back in plain IPv4 form.
#[test]
fn a_dual_stack_download_finds_seeds_in_both_dhts() {
    let dir = tempdir();
    let (src, torrent, magnet) = make_torrent(dir.path(), 13);
    let (_boot, stats) = shoal_dht("[::]:19521", &dir.path().join("dht.state"));
    // libtorrent takes answers only from the address it asked: the node on `[::]` must
    // answer from 127.0.2.230, not from the route's choice (127.0.0.1).
    let _seed4 = lt_dht_seed(&torrent, &src, "127.0.2.231:19523", "127.0.2.230:19521");
    let _seed6 = lt_dht_seed(&torrent, &src, "[::1]:19524", "[::1]:19521");
    // Each in the DHT of its own family only.
    wait_for_stored_announces(&stats, &["ipv4", "ipv6"], 2);
    let out = dir.path().join("out");
    // Slow enough (2 MiB at 256 KiB/s) for both seeds to be found and connected.
    let events = shoal_get(
        &magnet,
        &out,
        &dir.path().join("state"),
        "[::]:19525",
        &[
            "--dht-bootstrap",
            "127.0.2.230:19521",
            "--dht-bootstrap",
            "[::1]:19521",
            "--max-down",
            "256K",
        ],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    for seed in ["127.0.2.231:19523", "[::1]:19524"] {
        let connected = events.lines().any(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON lines");
            v["event"] == "peer_connected" && v["addr"] == seed
        });
        assert!(connected, "{seed} not found: {events}");
    }
    // Each node kept its own table, in its own file.
    let state = dir.path().join("state");
    for file in ["dht-19525.state", "dht6-19525.state"] {
        assert!(state.join(file).exists(), "{file} not saved");
    }
}

#[test]
fn shoal_seeds_on_dht_libtorrent_gets_magnet() {
    let dir = tempdir();
    let (src, torrent, magnet) = make_torrent(dir.path(), 2);
    let (_boot, _) = shoal_dht("127.0.2.110:19110", &dir.path().join("dht.state"));
    let _seed = shoal_seed(
        &torrent,
        &src,
        &dir.path().join("seed-state"),
        "127.0.2.111:19111",
        "127.0.2.110:19110",
    );
    let out = dir.path().join("lt-out");
    let stdout = run_ok(&mut python_cmd(
        LT_GET_MAGNET,
        &[
            &magnet,
            path_str(&out),
            "127.0.2.112",
            "19112",
            "127.0.2.110:19110",
        ],
    ));
    assert!(stdout.contains("DONE"), "{stdout}");
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));

    // BEP 33: a DHT scrape counts the shoal seed (it announced itself as one) and at
    // most libtorrent besides.
    let hash = magnet.split("btih:").nth(1).unwrap()[..40].to_owned();
    let mut scrape = shoal();
    scrape
        .args(["dht", "scrape", &hash, "--json", "--timeout", "30"])
        .args([
            "--bootstrap",
            "127.0.2.110:19110",
            "--listen",
            "127.0.2.113:19113",
        ])
        .args(["--state", path_str(&dir.path().join("scrape.state"))]);
    let counts: serde_json::Value = serde_json::from_str(run_ok(&mut scrape).trim()).unwrap();
    assert_eq!(counts["info_hash"], hash.as_str());
    let (seeds, peers) = (
        counts["seeds"].as_u64().unwrap(),
        counts["peers"].as_u64().unwrap(),
    );
    // libtorrent finished too, and may have said so to the nodes or not yet.
    assert!((1..=2).contains(&seeds) && seeds + peers <= 2, "{counts}");
}

#[test]
fn a_download_that_completes_is_scraped_as_a_seed() {
    let dir = tempdir();
    let (src, torrent, magnet) = make_torrent(dir.path(), 4);
    let (_boot, _) = shoal_dht("127.0.2.200:19200", &dir.path().join("dht.state"));
    let _seed = shoal_seed(
        &torrent,
        &src,
        &dir.path().join("seed-state"),
        "127.0.2.201:19201",
        "127.0.2.200:19200",
    );
    // A download that stays on to seed: it announced itself as a mere peer when it
    // started, and must say it seeds once it has everything.
    let out = dir.path().join("out");
    let mut get = shoal();
    get.args(["get", &magnet, "-o", path_str(&out), "--json"])
        .args(["--listen", "127.0.2.202:19202"])
        .args(["--dht-bootstrap", "127.0.2.200:19200"])
        .args(["--state-dir", path_str(&dir.path().join("state"))]);
    let (_get, _) = start_and_watch(get, "\"completed\"", Duration::from_secs(60));
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));

    let hash = magnet.split("btih:").nth(1).unwrap()[..40].to_owned();
    // The re-announce is immediate, but give the node a moment to have taken it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut scrape = shoal();
        scrape
            .args(["dht", "scrape", &hash, "--json", "--timeout", "10"])
            .args(["--bootstrap", "127.0.2.200:19200"])
            .args(["--listen", "127.0.2.203:19203"])
            .args(["--state", path_str(&dir.path().join("scrape.state"))]);
        let counts: serde_json::Value = serde_json::from_str(run_ok(&mut scrape).trim()).unwrap();
        let (seeds, peers) = (
            counts["seeds"].as_u64().unwrap(),
            counts["peers"].as_u64().unwrap(),
        );
        if seeds == 2 && peers == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the finished download is not counted as a seed: {counts}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn aria2_fetches_metadata_from_a_shoal_seed() {
    require("aria2c");
    let dir = tempdir();
    let (src, torrent, magnet) = make_torrent(dir.path(), 3);
    let (_boot, _) = shoal_dht("127.0.2.120:19120", &dir.path().join("dht.state"));
    let _seed = shoal_seed(
        &torrent,
        &src,
        &dir.path().join("seed-state"),
        "127.0.2.121:19121",
        "127.0.2.120:19120",
    );
    let out = dir.path().join("aria-out");
    // aria2 saves the fetched .torrent only into an existing folder.
    std::fs::create_dir_all(&out).unwrap();
    let mut cmd = Command::new("aria2c");
    cmd.args(["-d", path_str(&out), "--listen-port=19122"])
        .args(["--interface=127.0.2.122", "--disable-ipv6"])
        .args(["--enable-dht=true", "--dht-listen-port=19123"])
        .args(["--dht-entry-point=127.0.2.120:19120", "--dht-file-path"])
        .arg(dir.path().join("aria2-dht.dat"))
        .args(["--bt-enable-lpd=false", "--enable-peer-exchange=false"])
        .args(["--bt-metadata-only=true", "--bt-save-metadata=true"])
        .args(["--console-log-level=warn", "--summary-interval=0"])
        .arg(&magnet);
    let (output, _) = run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert!(
        output.status.success(),
        "aria2c: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let hash = magnet.rsplit(':').next().unwrap();
    let fetched = out.join(format!("{hash}.torrent"));
    let info = shoal_info(path_str(&fetched));
    assert_eq!(info["info_hash"].as_str(), Some(hash));
    assert_eq!(info["name"].as_str(), Some("payload.bin"));
}

/// Makes a v1 torrent of argv[1] at argv[2] naming DHT node argv[3] (IP) port argv[4].
const LT_CREATE_WITH_NODE: &str = r#"
import libtorrent as lt, os, sys
src, out, ip, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
fs = lt.file_storage()
lt.add_files(fs, src)
t = lt.create_torrent(fs, 65536, flags=lt.create_torrent.v1_only)
t.add_node(ip, port)
lt.set_piece_hashes(t, os.path.dirname(src))
open(out, 'wb').write(lt.bencode(t.generate()))
"#;

#[test]
fn a_torrents_own_dht_node_leads_to_its_swarm() {
    let dir = tempdir();
    let src = dir.path().join("src");
    random_file(&src.join("payload.bin"), 1024 * 1024 + 77, 12);
    let torrent = dir.path().join("payload.torrent");
    python(
        LT_CREATE_WITH_NODE,
        &[
            path_str(&src.join("payload.bin")),
            path_str(&torrent),
            "127.0.2.240",
            "19240",
        ],
    );
    let info = shoal_info(path_str(&torrent));
    assert_eq!(info["dht_nodes"], serde_json::json!(["127.0.2.240:19240"]));
    assert_eq!(info["trackers"], serde_json::json!([]));

    let (_boot, stats) = shoal_dht("127.0.2.240:19240", &dir.path().join("dht.state"));
    let _seed = lt_dht_seed(&torrent, &src, "127.0.2.241:19241", "127.0.2.240:19240");
    wait_for_stored_announce(&stats);
    // No --dht-bootstrap, and on loopback no public router: the torrent's node is the
    // only way in.
    let out = dir.path().join("out");
    let events = shoal_get(
        path_str(&torrent),
        &out,
        &dir.path().join("state"),
        "127.0.2.242:19242",
        &[],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    assert!(
        events.contains("\"addr\":\"127.0.2.241:19241\""),
        "{events}"
    );
}

/// Prints the DHT nodes and the info-hash libtorrent reads from the torrent argv[1].
const LT_NODES: &str = r#"
import libtorrent as lt, sys
ti = lt.torrent_info(sys.argv[1])
for host, port in ti.nodes():
    print('%s %d' % (host, port))
print(str(ti.info_hash()))
"#;

#[test]
fn shoal_create_writes_dht_nodes_libtorrent_reads() {
    let dir = tempdir();
    let file = dir.path().join("payload.bin");
    random_file(&file, 100_000, 13);
    let create = |out: &Path, nodes: &[&str]| {
        let mut cmd = shoal();
        cmd.args(["create", path_str(&file), "--no-date", "-o", path_str(out)]);
        for node in nodes {
            cmd.args(["--dht-node", node]);
        }
        run_ok(&mut cmd);
    };
    let plain = dir.path().join("plain.torrent");
    let with_nodes = dir.path().join("nodes.torrent");
    create(&plain, &[]);
    create(
        &with_nodes,
        &[
            "10.0.0.1:6881",
            "[2001:db8::1]:1941",
            "dht.example.org:25401",
        ],
    );
    let read = python(LT_NODES, &[path_str(&with_nodes)]);
    let hash = shoal_info(path_str(&plain))["info_hash"]
        .as_str()
        .expect("info_hash")
        .to_owned();
    assert_eq!(
        read,
        format!("10.0.0.1 6881\n2001:db8::1 1941\ndht.example.org 25401\n{hash}\n")
    );
    // A bad address is refused with a message, and so is a private torrent with nodes.
    let mut bad = shoal();
    bad.args(["create", path_str(&file), "-o"])
        .arg(dir.path().join("bad.torrent"))
        .args(["--dht-node", "::1:6881"]);
    let (output, _) = run_with_timeout(&mut bad, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("brackets"));
    let mut private = shoal();
    private
        .args(["create", path_str(&file), "--private", "-o"])
        .arg(dir.path().join("private.torrent"))
        .args(["--dht-node", "10.0.0.1:6881"]);
    let (output, _) = run_with_timeout(&mut private, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn a_link_to_a_key_follows_what_its_publisher_publishes() {
    let dir = tempdir();
    let boot = "127.0.2.243:19243";
    let (_boot, stats) = shoal_dht(boot, &dir.path().join("dht.state"));
    let key = dir.path().join("publisher.key");
    run_ok(shoal().args(["dht", "keygen", path_str(&key)]));
    let client = |state: &str| {
        let state = dir.path().join(state);
        vec![
            "--bootstrap".to_owned(),
            boot.to_owned(),
            "--listen".to_owned(),
            "127.0.2.244:0".to_owned(),
            "--state".to_owned(),
            path_str(&state).to_owned(),
            "--json".to_owned(),
        ]
    };
    let publish = |torrent: &Path, state: &str| -> serde_json::Value {
        let mut cmd = shoal();
        cmd.args([
            "dht",
            "publish",
            path_str(torrent),
            "--key-file",
            path_str(&key),
        ])
        .args(["--salt", "dumps"])
        .args(client(state));
        serde_json::from_str(&run_ok(&mut cmd)).expect("JSON")
    };
    let get = |link: &str, out: &Path, state: &str| {
        shoal_get(
            link,
            out,
            &dir.path().join(state),
            "127.0.2.245:19245",
            &["--dht-bootstrap", boot],
        )
    };

    // Version 1.
    let first_dir = dir.path().join("first");
    let (src1, torrent1, _) = make_torrent(&first_dir, 21);
    let _seed1 = shoal_seed(
        &torrent1,
        &src1,
        &first_dir.join("state"),
        "127.0.2.246:19246",
        boot,
    );
    wait_for_stored_announce(&stats);
    let published = publish(&torrent1, "p1.state");
    assert_eq!(published["seq"], 1, "{published}");
    let link = published["link"].as_str().unwrap().to_owned();
    assert!(link.ends_with("&s=64756d7073"), "{link}");
    assert_eq!(shoal_info(&link)["salt"], "dumps");
    let out1 = dir.path().join("out1");
    let events = get(&link, &out1, "g1");
    assert!(events.contains("\"event\":\"resolved\""), "{events}");
    assert!(events.contains("\"seq\":1"), "{events}");
    same_files(&src1.join("payload.bin"), &out1.join("payload.bin"));

    // Version 2 (other bytes, another info-hash): the same link now gets it.
    let second_dir = dir.path().join("second");
    let (src2, torrent2, _) = make_torrent(&second_dir, 22);
    let _seed2 = shoal_seed(
        &torrent2,
        &src2,
        &second_dir.join("state"),
        "127.0.2.247:19247",
        boot,
    );
    let published = publish(&torrent2, "p2.state");
    assert_eq!(published["seq"], 2, "{published}");
    assert_eq!(published["link"], link.as_str());
    let out2 = dir.path().join("out2");
    let events = get(&link, &out2, "g2");
    assert!(events.contains("\"seq\":2"), "{events}");
    same_files(&src2.join("payload.bin"), &out2.join("payload.bin"));
}

#[test]
fn shoal_to_shoal_magnet_with_a_peer_and_no_dht() {
    let dir = tempdir();
    let (src, torrent, magnet) = make_torrent(dir.path(), 4);
    let mut seed = shoal();
    seed.args([
        "seed",
        path_str(&torrent),
        path_str(&src),
        "--json",
        "--no-dht",
    ])
    .args(["--listen", "127.0.2.130:19130", "--state-dir"])
    .arg(dir.path().join("seed-state"));
    let _seed = start_and_watch(seed, "\"started\"", Duration::from_secs(30));
    let with_peer = format!("{magnet}&x.pe=127.0.2.130:19130");
    let out = dir.path().join("out");
    let state = dir.path().join("state");
    shoal_get(&with_peer, &out, &state, "127.0.2.131:19131", &["--no-dht"]);
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    // The fetched metadata was kept: a bare info-hash now resumes with no peer at all.
    let hash = magnet.rsplit(':').next().unwrap();
    let events = shoal_get(hash, &out, &state, "127.0.2.131:19131", &["--no-dht"]);
    assert!(!events.contains("fetching_metadata"), "{events}");
}

/// 20 shoal nodes (in this process, 127.0.2.140–159) and two libtorrent nodes form one
/// DHT. libtorrent announces one info-hash and a shoal node finds it; a shoal node
/// announces another and libtorrent finds that.
#[test]
fn shoal_and_libtorrent_nodes_find_each_others_peers() {
    use shoal_dht::driver::{DhtHandle, DriverConfig};
    let dir = tempdir();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let boot = "127.0.2.140:19140";
    let nodes: Vec<DhtHandle> = runtime.block_on(async {
        let mut nodes = Vec::new();
        for i in 0..20u8 {
            let addr = SocketAddr::from(([127, 0, 2, 140 + i], 19140));
            let mut config = DriverConfig::new(addr);
            if i > 0 {
                config.dht.bootstrap = vec![boot.parse().unwrap()];
            }
            config.dht.seed = u64::from(i);
            config.retry = Duration::from_millis(500);
            nodes.push(DhtHandle::spawn(config).await.expect("bind"));
        }
        nodes
    });
    let from_lt = "aa".repeat(20);
    let from_shoal = "bb".repeat(20);
    let mut lt_nodes = Vec::new();
    for (i, (announce, search)) in [(&from_lt, &from_shoal), (&from_shoal, &from_lt)]
        .iter()
        .enumerate()
    {
        let ip = format!("127.0.2.{}", 170 + i);
        let port = (19170 + i).to_string();
        let save = dir.path().join(format!("lt{i}"));
        lt_nodes.push(start_and_watch(
            python_cmd(
                LT_DHT_NODE,
                &[&ip, &port, boot, announce, search, path_str(&save)],
            ),
            "STARTED",
            Duration::from_secs(30),
        ));
    }
    // A shoal node finds libtorrent's announce (127.0.2.170, its listen port 19170).
    let info_hash: shoal_core::InfoHash = from_lt.parse().unwrap();
    let expected = SocketAddr::from(([127, 0, 2, 170], 19170));
    let found = runtime.block_on(async {
        let mut peers = nodes[13].find_peers(info_hash);
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(batch) = peers.recv().await {
                if batch.contains(&expected) {
                    return true;
                }
            }
            false
        })
        .await
    });
    assert_eq!(found, Ok(true), "shoal did not find libtorrent's peer");
    // libtorrent (the second node, searching `from_shoal`) finds a shoal announce.
    let theirs: shoal_core::InfoHash = from_shoal.parse().unwrap();
    let _announcing = nodes[7].announce(theirs, Some(19187), false);
    let (_, lines) = &lt_nodes[0];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("libtorrent did not find the shoal node's peer");
        if line == "FOUND 127.0.2.147:19187" {
            break;
        }
    }
}

/// BEP 11: two leechers that know only the seed learn about each other from the seed's
/// peer exchange and connect (whichever dials first; no DHT, no tracker).
#[test]
fn peer_exchange_introduces_leechers() {
    let dir = tempdir();
    let (src, torrent, _) = make_torrent(dir.path(), 5);
    let mut seed = shoal();
    seed.args([
        "seed",
        path_str(&torrent),
        path_str(&src),
        "--json",
        "--no-dht",
    ])
    .args([
        "--listen",
        "127.0.2.190:19190",
        "--max-up",
        "1M",
        "--state-dir",
    ])
    .arg(dir.path().join("seed-state"));
    let _seed = start_and_watch(seed, "\"started\"", Duration::from_secs(30));
    // The first leecher connects to the seed and keeps running.
    let mut first = shoal();
    first
        .args(["get", path_str(&torrent), "-o"])
        .arg(dir.path().join("first"))
        .args(["--json", "--no-dht", "--listen", "127.0.2.191:19191"])
        .args(["--peer", "127.0.2.190:19190", "--state-dir"])
        .arg(dir.path().join("first-state"));
    let _first = start_and_watch(first, "\"peer_connected\"", Duration::from_secs(30));
    // The second is told only about the seed.
    let out = dir.path().join("second");
    let events = shoal_get(
        path_str(&torrent),
        &out,
        &dir.path().join("second-state"),
        "127.0.2.192:19192",
        &["--no-dht", "--peer", "127.0.2.190:19190"],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    assert!(
        events
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|e| e["event"] == "peer_connected"
                && e["addr"].as_str().unwrap_or("").starts_with("127.0.2.191:")),
        "the leechers never connected to each other: {events}"
    );
}

/// BEP 14: with `--lsd` on a private multicast port, a seed and a downloader on the same
/// machine find each other with no DHT, tracker or peer address.
#[test]
fn local_service_discovery_finds_a_seed() {
    let dir = tempdir();
    let (src, torrent, _) = make_torrent(dir.path(), 6);
    let lsd = ["--no-dht", "--lsd", "--lsd-group", "239.192.152.143:19970"];
    let mut seed = shoal();
    seed.args(["seed", path_str(&torrent), path_str(&src), "--json"])
        .args(lsd)
        .args(["--listen", "127.0.2.220:19220", "--state-dir"])
        .arg(dir.path().join("seed-state"));
    let _seed = start_and_watch(seed, "\"started\"", Duration::from_secs(30));
    let out = dir.path().join("out");
    shoal_get(
        path_str(&torrent),
        &out,
        &dir.path().join("state"),
        "127.0.2.221:19221",
        &lsd,
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
}
