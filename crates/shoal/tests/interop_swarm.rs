//! `shoal get` in swarms of real clients on loopback, each peer on its own 127.0.0.N:
//! Transmission seeding to shoal and downloading from it, three different seeds at once
//! (each must deliver a share), and one of three seeds killed mid-transfer.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn transmission_seeds_shoal_downloads() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 3 * 1024 * 1024 + 333, "128K");
    let seed = Transmission::start(
        &dir.path().join("tr-config"),
        &src,
        "127.0.0.91",
        17091,
        17191,
    );
    seed.add(&torrent);
    seed.wait_complete(Duration::from_secs(30));
    let out = dir.path().join("out");
    let events = shoal_get(
        &torrent,
        &out,
        &dir.path().join("state"),
        "127.0.0.92:17092",
        &["127.0.0.91:17091"],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    let peer = events
        .iter()
        .find(|e| e["event"] == "peer_connected")
        .expect("a peer connected");
    assert_eq!(peer["client"], "TR 3000", "{peer}");
}

#[test]
fn shoal_seeds_transmission_downloads() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 2 * 1024 * 1024 + 1, "64K");
    let out = dir.path().join("tr-out");
    let leecher = Transmission::start(
        &dir.path().join("tr-config"),
        &out,
        "127.0.0.93",
        17093,
        17193,
    );
    leecher.add(&torrent);
    // Transmission learns of peers only from trackers, the DHT and PEX, so the seed
    // dials it. Transmission 3 waits up to ~10 s before it declares interest.
    let mut seed = shoal();
    seed.args(["seed", path_str(&torrent), path_str(&src)])
        .args(["--listen", "127.0.0.94:17094", "--peer", "127.0.0.93:17093"])
        .args(["--state-dir", path_str(&dir.path().join("state"))])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _seed = Guard(seed.spawn().expect("spawn shoal seed"));
    leecher.wait_complete(Duration::from_secs(90));
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
}

/// Starts a libtorrent, an aria2 and a shoal seed of `torrent` (data in `src`) on
/// 127.0.0.{base, base+1, base+2}; returns their guards and addresses.
fn three_seeds(dir: &Path, src: &Path, torrent: &Path, base: u8) -> (Vec<Guard>, Vec<String>) {
    let ip = |n: u8| format!("127.0.0.{}", base + n);
    let port = |n: u8| 17000 + u16::from(base + n);
    let lt = lt_seed(torrent, src, &ip(0), port(0));
    let aria = aria2_seed(src, torrent, &ip(1), port(1), &[]);
    let shoal = shoal_seed(
        torrent,
        src,
        &dir.join("seed-state"),
        &format!("{}:{}", ip(2), port(2)),
    );
    let addrs: Vec<String> = (0..3).map(|n| format!("{}:{}", ip(n), port(n))).collect();
    (vec![lt, aria, shoal], addrs)
}

/// Payload bytes each peer address delivered, from `peer_disconnected` events.
fn delivered(events: &[serde_json::Value]) -> HashMap<String, u64> {
    let mut by_peer = HashMap::new();
    for e in events.iter().filter(|e| e["event"] == "peer_disconnected") {
        *by_peer
            .entry(e["addr"].as_str().unwrap().to_owned())
            .or_default() += e["downloaded"].as_u64().unwrap();
    }
    by_peer
}

#[test]
fn three_different_seeds_each_deliver_a_share() {
    let dir = tempdir();
    let size = 16 * 1024 * 1024;
    let (src, torrent) = make_single(dir.path(), size, "256K");
    let (_seeds, addrs) = three_seeds(dir.path(), &src, &torrent, 111);
    let out = dir.path().join("out");
    // A download cap stretches the transfer over about five seconds so that every seed
    // has unchoked us before it ends (aria2 can take a few seconds on a busy machine);
    // the picker must then spread requests over all three.
    let mut get = shoal();
    get.args(["get", path_str(&torrent), "-o", path_str(&out)])
        .args(["--no-seed", "--json", "--listen", "127.0.0.114:17114"])
        .args(["--state-dir", path_str(&dir.path().join("state"))])
        .args(["--max-down", "3M"]);
    for addr in &addrs {
        get.args(["--peer", addr]);
    }
    let events = json_events(&mut get);
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    let by_peer = delivered(&events);
    for addr in &addrs {
        let bytes = by_peer.get(addr).copied().unwrap_or(0);
        assert!(
            bytes >= 64 * 1024,
            "{addr} delivered {bytes} bytes; all: {by_peer:?}"
        );
    }
    let total: u64 = by_peer.values().sum();
    assert!(total >= size as u64, "{by_peer:?}");
}

#[test]
fn download_completes_when_one_of_three_seeds_dies() {
    let dir = tempdir();
    let size = 24 * 1024 * 1024;
    let (src, torrent) = make_single(dir.path(), size, "256K");
    let (mut seeds, addrs) = three_seeds(dir.path(), &src, &torrent, 121);
    let out = dir.path().join("out");
    let mut get = shoal();
    get.args(["get", path_str(&torrent), "-o", path_str(&out)])
        .args(["--no-seed", "--json", "--listen", "127.0.0.124:17124"])
        .args(["--state-dir", path_str(&dir.path().join("state"))])
        .args(["--max-down", "6M"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for addr in &addrs {
        get.args(["--peer", addr]);
    }
    let mut child = get.spawn().expect("spawn shoal get");
    let stdout = child.stdout.take().unwrap();
    let mut get = Guard(child);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut killed = false;
    let mut lines = Vec::new();
    {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let event: serde_json::Value = serde_json::from_str(&line).unwrap();
            // Once a quarter is in, kill the libtorrent seed (SIGKILL, by our own PID).
            if !killed && event["event"] == "piece" && event["have"].as_u64().unwrap() >= 24 {
                seeds[0].0.kill().unwrap();
                seeds[0].0.wait().unwrap();
                killed = true;
            }
            lines.push(event);
            assert!(Instant::now() < deadline, "no completion in time");
        }
    }
    let status = get.0.wait().unwrap();
    assert!(killed, "the download ended before a quarter was in");
    assert!(status.success(), "shoal get exited with {status}");
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    assert!(lines.iter().any(|e| e["event"] == "completed"));
    let by_peer = delivered(&lines);
    assert!(
        by_peer.get(&addrs[0]).copied().unwrap_or(0) > 0,
        "the killed seed had delivered nothing: {by_peer:?}"
    );
}
