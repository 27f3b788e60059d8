//! `shoal demo`, README's "run the main job" command: a tracker, seeds and a downloader
//! on loopback that find each other only by announcing. The demo's own peers use
//! 127.0.0.99–127.0.0.104 with ports the system picks; the `shoal tracker` started here
//! is on 127.0.2.1:18201.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use serde_json::Value;

/// Runs `shoal demo --json` with `extra` flags; returns its events.
fn demo(dir: &Path, seeds: u8, extra: &[&str]) -> Vec<Value> {
    json_events(
        shoal()
            .args(["demo", "--json", "--size", "16M", "--seeds"])
            .arg(seeds.to_string())
            .args(["--dir", path_str(dir)])
            .args(extra),
    )
}

fn event<'a>(events: &'a [Value], name: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["event"] == name)
        .unwrap_or_else(|| panic!("no {name} event in {events:#?}"))
}

fn position(events: &[Value], name: &str) -> usize {
    events
        .iter()
        .position(|e| e["event"] == name)
        .unwrap_or_else(|| panic!("no {name} event"))
}

/// Checks what every demo run must show: the downloader learned the seeds from the
/// tracker (it is given no address), connected to each of them, got a share of the
/// pieces from each, completed, and the copy is identical. Returns the seeds' addresses.
fn assert_swarm_through_tracker(dir: &Path, events: &[Value], seeds: usize) -> BTreeSet<String> {
    // The tracker listed every seed (a scrape) before the download started.
    let tracker = event(events, "tracker");
    assert_eq!(tracker["seeders"], seeds, "{tracker}");
    let seed_addrs: BTreeSet<String> = tracker["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(seed_addrs.len(), seeds);

    // The torrent announces to that tracker, and to nothing else.
    let info = shoal_info(path_str(&dir.join("sample.bin.torrent")));
    assert_eq!(
        info["trackers"],
        serde_json::json!([[tracker["url"]]]),
        "{info}"
    );

    // The downloader's peers came from the tracker: it answered with every seed before
    // the first connection, and the downloader connected to exactly those.
    assert_eq!(event(events, "tracker_peers")["peers"], seeds);
    assert!(position(events, "tracker_peers") < position(events, "peer_connected"));
    let connected: BTreeSet<String> = events
        .iter()
        .filter(|e| e["event"] == "peer_connected")
        .map(|e| e["addr"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(connected, seed_addrs);
    // Parallel download: each seed delivered a share.
    for e in events.iter().filter(|e| e["event"] == "peer_disconnected") {
        assert!(e["downloaded"].as_u64().unwrap() > 0, "{e}");
    }

    assert_eq!(event(events, "completed")["downloaded"], 16 << 20);
    same_files(
        &dir.join("seed/sample.bin"),
        &dir.join("download/sample.bin"),
    );
    seed_addrs
}

#[test]
fn demo_swarm_finds_its_peers_through_its_tracker() {
    let dir = tempdir();
    let events = demo(dir.path(), 3, &[]);
    let seeds = assert_swarm_through_tracker(dir.path(), &events, 3);
    for (n, addr) in seeds.iter().enumerate() {
        assert!(addr.starts_with(&format!("127.0.0.{}:", 101 + n)), "{addr}");
    }
    let url = event(&events, "tracker")["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.99:"), "{url}");
    // The tracker's own count: 3 seeds and the downloader started, the downloader
    // completed and stopped; it counts the completed download.
    let last = event(&events, "tracker_final");
    assert_eq!(last["announces"], 6, "{last}");
    assert_eq!(last["completed"], 1, "{last}");
    assert_eq!(last["seeders"], 3, "{last}");
}

#[test]
fn demo_swarm_through_a_running_shoal_tracker() {
    let addr = "127.0.2.1:18201";
    let url = format!("http://{addr}/announce");
    let _tracker = shoal_tracker(addr, &[]);
    let dir = tempdir();
    let events = demo(dir.path(), 2, &["--tracker", &url]);
    assert_eq!(event(&events, "tracker")["url"], url.as_str());
    assert_swarm_through_tracker(dir.path(), &events, 2);

    // The demo's scrape of that tracker after the download: the seeds still up, the
    // download counted.
    let last = event(&events, "tracker_final");
    assert_eq!(
        (&last["seeders"], &last["completed"]),
        (&2.into(), &1.into())
    );
    assert!(last["announces"].is_null(), "{last}");

    // Seen from outside: the seeds announced started and stopped, the downloader
    // started, completed and stopped; everybody has left.
    let stats = stats(addr);
    assert_eq!(stats["announces"], 7, "{stats}");
    assert_eq!(
        (&stats["peers"], &stats["torrents"]),
        (&0.into(), &0.into()),
        "{stats}"
    );
}

/// README's commands must run as written on a fresh clone: the workspace has more than one
/// binary (`shoal`, `shoal-sim`), so a bare `cargo run` cannot tell which one is meant.
#[test]
fn readme_cargo_run_commands_name_their_binary() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let runs: Vec<&str> = readme
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("cargo run"))
        .collect();
    assert!(!runs.is_empty(), "README runs the main job with cargo run");
    for line in runs {
        let command = line.split(" -- ").next().unwrap_or(line);
        let words: Vec<&str> = command.split_whitespace().collect();
        assert!(
            words
                .iter()
                .any(|w| ["--bin", "-p", "--package"].contains(w)),
            "README: `{line}` does not say which binary to run"
        );
    }
}
