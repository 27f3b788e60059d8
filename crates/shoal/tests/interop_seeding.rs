//! When shoal stops seeding on its own: `--seed-ratio` once a libtorrent peer has taken
//! enough, `--seed-time` after the time, both exiting 0 with a `seed_limit_reached` event.
//! And how many peers it uploads to at once (`--upload-slots`).

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_seed_stops_at_its_ratio_once_libtorrent_has_the_file() {
    let dir = tempdir();
    let size = 3 * 1024 * 1024 + 11;
    let (src, torrent) = make_single(dir.path(), size, "256K");
    let mut cmd = shoal();
    cmd.args([
        "seed",
        path_str(&torrent),
        path_str(&src),
        "--json",
        "--listen",
        "127.0.4.11:17411",
        "--no-dht",
        "--no-tracker",
        "--seed-ratio",
        "1.0",
        "--state-dir",
        path_str(&dir.path().join("state")),
    ]);
    let (mut seed, lines) = start_and_watch(cmd, "\"started\"", Duration::from_secs(30));
    let out = dir.path().join("lt-out");
    lt_get(&torrent, &out, "127.0.4.12", 17412, "127.0.4.11", 17411);
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));

    // libtorrent took every byte from us, so the ratio is reached: the seed exits by itself.
    let status = seed.wait_exit(
        Duration::from_secs(30),
        "the seed kept running past its ratio",
    );
    assert!(status.success(), "{status}");
    // The process is gone, so its stdout ends and so does this iterator.
    let reached: serde_json::Value = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .find(|e| e["event"] == "seed_limit_reached")
        .expect("a seed_limit_reached event");
    assert!(
        reached["uploaded"].as_u64().unwrap() >= size as u64,
        "{reached}"
    );
    assert!(reached["ratio"].as_f64().unwrap() >= 1.0, "{reached}");
}

#[test]
fn a_download_seeds_for_its_seed_time_then_exits() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 1024 * 1024 + 3, "64K");
    let _seed = lt_seed(&torrent, &src, "127.0.4.21", 17421);
    let out = dir.path().join("out");
    let mut cmd = shoal();
    cmd.args([
        "get",
        path_str(&torrent),
        "-o",
        path_str(&out),
        "--json",
        "--listen",
        "127.0.4.22:17422",
        "--peer",
        "127.0.4.21:17421",
        "--no-dht",
        "--no-tracker",
        "--seed-time",
        "0.05",
        "--state-dir",
        path_str(&dir.path().join("state")),
    ]);
    let started = Instant::now();
    let events = json_events(&mut cmd);
    // 0.05 minutes is 3 s of seeding after the download, which cannot take less.
    assert!(started.elapsed() >= Duration::from_secs(3));
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    let done = names
        .iter()
        .position(|&n| n == "completed")
        .expect("completed");
    let stop = names
        .iter()
        .position(|&n| n == "seed_limit_reached")
        .expect("seed_limit_reached");
    assert!(done < stop, "{names:?}");

    // --no-seed and a seeding limit contradict each other.
    let (output, _) = run_with_timeout(
        shoal().args(["get", path_str(&torrent), "--no-seed", "--seed-time", "1"]),
        Duration::from_secs(30),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[test]
fn a_finished_download_drops_its_connection_to_a_seed() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 2 * 1024 * 1024 + 9, "256K");
    let _seed = lt_seed(&torrent, &src, "127.0.4.61", 17461);
    let mut cmd = shoal();
    cmd.args([
        "get",
        path_str(&torrent),
        "-o",
        path_str(&dir.path().join("out")),
        "--json",
        "--listen",
        "127.0.4.62:17462",
        "--peer",
        "127.0.4.61:17461",
        "--no-dht",
        "--no-tracker",
        // 7.2 s: longer than the 5 s after which a peer that left is dialled again.
        "--seed-time",
        "0.12",
        "--state-dir",
        path_str(&dir.path().join("state")),
    ]);
    let events = json_events(&mut cmd);
    same_files(
        &src.join("payload.bin"),
        &dir.path().join("out/payload.bin"),
    );
    // Both sides have everything: the connection is closed, not kept for nothing, and the
    // seed is not dialled again while we seed.
    let dropped: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "peer_disconnected" && e["addr"] == "127.0.4.61:17461")
        .collect();
    assert_eq!(dropped.len(), 1, "{events:?}");
    assert!(
        dropped[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("both done"),
        "{}",
        dropped[0]
    );
}

/// `--upload-slots 2`: of four leechers that all want the seed's pieces, the seed
/// uploads to two at a time (its `peer_list` events, every 5 s, say whom it unchokes),
/// and the others wait; default slots would serve all four at once.
#[test]
fn a_seed_uploads_to_as_many_peers_as_it_has_slots() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 2 * 1024 * 1024 + 7, "256K");
    let mut cmd = shoal();
    cmd.args(["seed", path_str(&torrent), path_str(&src), "--json"])
        .args(["--listen", "127.0.4.71:17471", "--no-dht", "--no-tracker"])
        .args(["--utp", "off", "--upload-slots", "2", "--state-dir"])
        .arg(dir.path().join("seed-state"));
    let (_seed, lines) = start_and_watch(cmd, "\"started\"", Duration::from_secs(30));
    let _leechers: Vec<Guard> = (72..76)
        .map(|n| {
            let mut get = shoal();
            get.args(["get", path_str(&torrent), "-o"])
                .arg(dir.path().join(format!("out{n}")))
                .args([
                    "--json",
                    "--no-seed",
                    "--no-dht",
                    "--no-tracker",
                    "--utp",
                    "off",
                ])
                .args(["--listen", &format!("127.0.4.{n}:174{n}")])
                .args([
                    "--peer",
                    "127.0.4.71:17471",
                    "--max-down",
                    "128K",
                    "--state-dir",
                ])
                .arg(dir.path().join(format!("state{n}")))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            Guard(get.spawn().expect("spawn shoal get"))
        })
        .collect();
    // The seed's peer lists over 11 s: two or three of them.
    let deadline = Instant::now() + Duration::from_secs(11);
    let mut lists = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(line) = lines.recv_timeout(left) else {
            break;
        };
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "peer_list" {
            lists.push(event["peers"].as_array().unwrap().clone());
        }
    }
    let count = |peers: &[serde_json::Value], unchoked: bool| {
        let wanting = |p: &&serde_json::Value| p["peer_interested"] == true;
        let state = |p: &&serde_json::Value| p["choked"] == !unchoked;
        peers.iter().filter(wanting).filter(state).count()
    };
    assert!(lists.len() >= 2, "{lists:?}");
    assert!(lists.iter().all(|l| count(l, true) <= 2), "{lists:?}");
    // All four connected and wanting: two served, two waiting.
    assert!(
        lists
            .iter()
            .any(|l| count(l, true) == 2 && count(l, false) == 2),
        "{lists:?}"
    );
}
