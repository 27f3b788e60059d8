//! Which connections shoal keeps (127.0.8.x, ports 178xx): at its connection limit, a
//! peer of higher BEP 40 priority takes the place of the lowest; and two shoal peers
//! that know each other's address keep one connection, not two; a restarted download
//! finds its peers again from its resume state.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use shoal_core::peer_priority;

/// Runs `cmd` (a `--json` shoal) in the background, handing over its event lines.
fn spawn_json(cmd: std::process::Command) -> (Guard, std::sync::mpsc::Receiver<String>) {
    start_and_watch(cmd, "\"started\"", Duration::from_secs(30))
}

fn get(
    torrent: &std::path::Path,
    out: &std::path::Path,
    listen: &str,
    peer: &str,
) -> std::process::Command {
    let mut cmd = shoal();
    cmd.args([
        "get",
        path_str(torrent),
        "-o",
        path_str(out),
        "--no-seed",
        "--json",
        "--no-dht",
        "--no-tracker",
        "--listen",
        listen,
        "--peer",
        peer,
        "--state-dir",
        path_str(&out.join(".state")),
    ]);
    cmd
}

fn ip_of(event: &serde_json::Value) -> String {
    let addr: SocketAddr = event["addr"].as_str().unwrap().parse().unwrap();
    addr.ip().to_string()
}

#[test]
fn at_its_limit_a_seed_keeps_the_peer_of_higher_priority() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 6 * 1024 * 1024 + 5, "256K");
    let seed_addr = "127.0.8.1:17801";
    // Of the leechers' addresses, the lowest and the highest in the seed's eyes.
    let mut ips: Vec<String> = (2..=20).map(|i| format!("127.0.8.{i}")).collect();
    let ours: SocketAddr = seed_addr.parse().unwrap();
    ips.sort_by_key(|ip| peer_priority(ours, format!("{ip}:1").parse().unwrap()));
    let (low, high) = (ips[0].clone(), ips[ips.len() - 1].clone());

    let mut seed = shoal();
    seed.args([
        "seed",
        path_str(&torrent),
        path_str(&src),
        "--json",
        "--listen",
        seed_addr,
        "--max-peers",
        "1",
        // Slow enough that the first leecher is still downloading when the second comes.
        "--max-up",
        "1M",
        "--no-dht",
        "--no-tracker",
        "--state-dir",
        path_str(&dir.path().join("seed-state")),
    ]);
    let (_seed, seed_lines) = spawn_json(seed);
    let mut seed_events = Vec::new();

    let low_out = dir.path().join("low");
    let (mut low_get, _low_lines) =
        spawn_json(get(&torrent, &low_out, &format!("{low}:17802"), seed_addr));
    assert!(
        events_until(
            &seed_lines,
            &mut seed_events,
            Duration::from_secs(30),
            |e| { e["event"] == "peer_connected" && ip_of(e) == low }
        ),
        "the first leecher connects: {seed_events:?}"
    );
    let high_out = dir.path().join("high");
    let mut high_get = get(&torrent, &high_out, &format!("{high}:17803"), seed_addr);
    let (output, _) = run_with_timeout(&mut high_get, Duration::from_secs(60));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    same_files(&src.join("payload.bin"), &high_out.join("payload.bin"));

    // The newcomer ranks higher: the seed dropped the first leecher for it.
    assert!(
        events_until(&seed_lines, &mut seed_events, Duration::from_secs(5), |e| {
            e["event"] == "peer_disconnected" && ip_of(e) == low
        }),
        "{seed_events:?}"
    );
    let dropped = seed_events
        .iter()
        .find(|e| e["event"] == "peer_disconnected" && ip_of(e) == low)
        .unwrap();
    assert!(
        dropped["reason"].as_str().unwrap().contains("BEP 40"),
        "{dropped}"
    );
    // Once the newcomer is done and gone, the first leecher gets back in and finishes.
    let status = low_get.wait_exit(Duration::from_secs(60), "the first leecher never finished");
    assert!(status.success(), "{status}");
    same_files(&src.join("payload.bin"), &low_out.join("payload.bin"));
}

#[test]
fn two_peers_that_dial_each_other_keep_one_connection() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 8 * 1024 * 1024 + 3, "256K");
    let (seed_addr, get_addr) = ("127.0.8.30:17830", "127.0.8.31:17831");
    // The seed knows the downloader's address too: it dials it (first in vain, as the
    // downloader is not up yet, then again 5 s later) while the downloader's own
    // connection to it is open.
    let mut seed = shoal();
    seed.args([
        "seed",
        path_str(&torrent),
        path_str(&src),
        "--json",
        "--listen",
        seed_addr,
        "--peer",
        get_addr,
        "--max-up",
        "1M",
        "--no-dht",
        "--no-tracker",
        "--state-dir",
        path_str(&dir.path().join("seed-state")),
    ]);
    let (_seed, seed_lines) = spawn_json(seed);
    let out = dir.path().join("out");
    let started = Instant::now();
    let events = json_events(&mut get(&torrent, &out, get_addr, seed_addr));
    assert!(
        started.elapsed() > Duration::from_secs(6),
        "the seed's second dial came in time"
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));

    // Never two connections at once between the two, on either side.
    let mut seed_events = Vec::new();
    events_until(
        &seed_lines,
        &mut seed_events,
        Duration::from_secs(2),
        |_| false,
    );
    for (side, events) in [("downloader", &events), ("seed", &seed_events)] {
        let mut live = 0i32;
        for e in events.iter() {
            match e["event"].as_str() {
                Some("peer_connected") => live += 1,
                Some("peer_disconnected") => live -= 1,
                _ => {}
            }
            assert!(live <= 1, "{side}: {events:?}");
        }
    }
}

#[test]
fn a_restarted_download_finds_its_peers_without_being_told() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 8 * 1024 * 1024 + 1, "256K");
    let seed_addr = "127.0.8.40:17840";
    let mut seed = shoal();
    seed.args([
        "seed",
        path_str(&torrent),
        path_str(&src),
        "--json",
        "--listen",
        seed_addr,
        "--max-up",
        "1M",
        "--no-dht",
        "--no-tracker",
        "--state-dir",
        path_str(&dir.path().join("seed-state")),
    ]);
    let (_seed, _seed_lines) = spawn_json(seed);
    let out = dir.path().join("out");
    let (mut first, lines) = spawn_json(get(&torrent, &out, "127.0.8.41:17841", seed_addr));
    let mut events = Vec::new();
    assert!(
        events_until(&lines, &mut events, Duration::from_secs(30), |e| {
            e["event"] == "piece" && e["have"].as_u64() >= Some(4)
        }),
        "{events:?}"
    );
    // Stopped as Ctrl-C stops it: exit 3, the resume state saved.
    let pid = first.0.id().to_string();
    run_ok(std::process::Command::new("kill").args(["-INT", &pid]));
    let status = first.wait_exit(Duration::from_secs(20), "the download did not stop");
    assert_eq!(status.code(), Some(3), "{status}");

    // No --peer, no tracker, no DHT: the seed comes from the resume state.
    let mut again = shoal();
    again.args([
        "get",
        path_str(&torrent),
        "-o",
        path_str(&out),
        "--no-seed",
        "--json",
        "--no-dht",
        "--no-tracker",
        "--listen",
        "127.0.8.41:17841",
        "--state-dir",
        path_str(&out.join(".state")),
    ]);
    let events = json_events(&mut again);
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "peer_connected" && e["addr"] == seed_addr),
        "{events:?}"
    );
    let started = events.iter().find(|e| e["event"] == "started").unwrap();
    assert!(started["have"].as_u64() >= Some(4), "{started}");
}

#[test]
fn a_blocked_peer_is_neither_dialled_nor_accepted() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 3 * 1024 * 1024 + 7, "256K");
    let (blocked, allowed, ours) = ("127.0.8.50:17850", "127.0.8.51:17851", "127.0.8.52:17852");
    let filter = dir.path().join("blocklist.p2p");
    std::fs::write(
        &filter,
        "# PeerGuardian text, as Transmission reads it\n\
         Test range:127.0.8.48-127.0.8.50\n\
         this line is not understood\n",
    )
    .unwrap();
    let seed = |listen: &str, extra: &[&str]| {
        let mut cmd = shoal();
        cmd.args([
            "seed",
            path_str(&torrent),
            path_str(&src),
            "--json",
            "--listen",
            listen,
        ])
        .args(["--no-dht", "--no-tracker", "--max-up", "1M", "--state-dir"])
        .arg(dir.path().join(format!("state-{listen}")))
        .args(extra);
        spawn_json(cmd)
    };
    let (_allowed_seed, _) = seed(allowed, &[]);
    let out = dir.path().join("out");
    let mut cmd = get(&torrent, &out, ours, allowed);
    cmd.args(["--peer", blocked, "--ip-filter", path_str(&filter)]);
    let (mut download, lines) = spawn_json(cmd);
    // Once we listen, the blocked seed dials us (and we would dial it).
    let (_blocked_seed, blocked_lines) = seed(blocked, &["--peer", ours]);
    let status = download.wait_exit(Duration::from_secs(60), "the download did not finish");
    assert!(status.success(), "{status}");
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    let mut events = Vec::new();
    events_until(&lines, &mut events, Duration::from_secs(5), |e| {
        e["event"] == "completed"
    });
    let connected: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "peer_connected")
        .map(ip_of)
        .collect();
    assert_eq!(connected, ["127.0.8.51"], "{events:?}");
    let theirs: Vec<String> = blocked_lines.try_iter().collect();
    assert!(
        !theirs.iter().any(|l| l.contains("peer_connected")),
        "the blocked seed got in: {theirs:?}"
    );
    // The warning for the line not understood.
    let (output, _) = run_with_timeout(
        shoal()
            .args(["get", path_str(&torrent), "-o", path_str(&out), "--no-dht"])
            .args(["--no-tracker", "--no-seed", "--listen", "127.0.8.54:17854"])
            .args([
                "--ip-filter",
                path_str(&filter),
                "--state-dir",
                path_str(&out.join(".state")),
            ]),
        Duration::from_secs(30),
    );
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("1 lines not understood"), "{stderr}");

    // A file with no range in it is refused, not taken for an empty filter.
    std::fs::write(&filter, "nothing here\n").unwrap();
    let mut cmd = get(
        &torrent,
        &dir.path().join("out2"),
        "127.0.8.53:17853",
        allowed,
    );
    cmd.args(["--ip-filter", path_str(&filter)]);
    let (output, _) = run_with_timeout(&mut cmd, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not an IP filter"), "{stderr}");
}
