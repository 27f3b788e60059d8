//! BEP 51 (`sample_infohashes`) against libtorrent on loopback (127.0.6.30–39, ports
//! 19630–19639): two libtorrent nodes announce info-hashes into a DHT with a `shoal dht`
//! node; `shoal dht sample` crawls all three and finds every one, and libtorrent's own
//! `dht_sample_infohashes` reads the shoal node's sample.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;

const BOOT: &str = "127.0.6.30:19630";

/// After [`LT_DHT_NODE`]: a node that joins the swarms of the info-hashes
/// in argv[4] (comma-separated; magnets whose metadata never comes, so it announces them
/// on the DHT every second) and, unless argv[5] is '-', asks that node (ip:port) for its
/// BEP 51 sample every 2 s, printing `SAMPLE <num> <hash>...`. Prints STARTED first;
/// stays up until killed (at most 90 s).
const LT_NODE: &str = r#"
hashes, ask = sys.argv[4].split(','), sys.argv[5]
handles = []
for h in hashes:
    p = lt.parse_magnet_uri('magnet:?xt=urn:btih:' + h)
    p.save_path = '/nonexistent'
    handles.append(s.add_torrent(p))
print('STARTED', flush=True)
last_announce, last_ask = 0, 0
end = time.time() + 90
while time.time() < end:
    for a in s.pop_alerts():
        if isinstance(a, lt.dht_sample_infohashes_alert):
            print('SAMPLE', a.num_infohashes, ' '.join(str(h) for h in a.samples), flush=True)
    if time.time() - last_announce > 1:
        for h in handles:
            h.force_dht_announce()
        last_announce = time.time()
    if ask != '-' and time.time() - last_ask > 2:
        host, p = ask.split(':')
        s.dht_sample_infohashes((host, int(p)), lt.sha1_hash(bytes(20)))
        last_ask = time.time()
    time.sleep(0.05)
"#;

fn libtorrent(
    ip: &str,
    port: &str,
    hashes: &[String],
    ask: &str,
) -> (Guard, std::sync::mpsc::Receiver<String>) {
    let cmd = lt_dht_node(LT_NODE, ip, port, BOOT, &[&hashes.join(","), ask]);
    start_and_watch(cmd, "STARTED", Duration::from_secs(20))
}

#[test]
fn shoal_crawls_libtorrent_nodes_and_libtorrent_samples_shoal() {
    let dir = tempdir();
    let mut node = shoal();
    node.args(["dht", "--listen", BOOT, "--interval", "1", "--json"])
        .args(["--state", path_str(&dir.path().join("node.state"))]);
    let (_node, _) = start_and_watch(node, "dht_stats", Duration::from_secs(10));

    let first: Vec<String> = ["a1", "a2", "a3"].iter().map(|b| b.repeat(20)).collect();
    let second: Vec<String> = ["b1", "b2"].iter().map(|b| b.repeat(20)).collect();
    // The first libtorrent node announces its three to the shoal node; the second, started
    // after, announces its two to both, and asks the shoal node for its sample.
    let (_lt1, _) = libtorrent("127.0.6.31", "19631", &first, "-");
    let (_lt2, lines) = libtorrent("127.0.6.32", "19632", &second, BOOT);
    let deadline = Instant::now() + Duration::from_secs(30);
    let sample = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("libtorrent got no sample of all 5 from the shoal node");
        if line.starts_with("SAMPLE 5 ") {
            break line;
        }
    };
    let fields: Vec<&str> = sample.split(' ').collect();
    let sampled: BTreeSet<&str> = fields[2..].iter().copied().collect();
    let all: BTreeSet<&str> = first.iter().chain(&second).map(String::as_str).collect();
    assert_eq!(sampled, all);

    // shoal crawls: the shoal node, then the two libtorrent nodes it names.
    let mut crawl = shoal();
    crawl
        .args([
            "dht",
            "sample",
            "--bootstrap",
            BOOT,
            "--listen",
            "127.0.6.33:0",
        ])
        .args(["--timeout", "20", "--json", "--state"])
        .arg(dir.path().join("crawler.state"));
    let out = run_ok(&mut crawl);
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    let found: BTreeSet<&str> = events
        .iter()
        .filter(|e| e["event"] == "info_hash")
        .map(|e| e["info_hash"].as_str().unwrap())
        .collect();
    assert_eq!(found, all);
    let done = events.last().unwrap();
    assert_eq!(done["event"], "sample_done", "{out}");
    // Every node answered with a sample: libtorrent's answers were understood too.
    assert_eq!(done["nodes_sampled"], 3, "{out}");
}
