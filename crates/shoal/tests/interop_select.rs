//! `shoal get --select-file` against a libtorrent seed: only the selected files' pieces
//! are fetched, files no selected piece touches are never created, and a later run
//! without the selection keeps what is there and fetches the rest. A magnet link's BEP 53
//! `so=` selects the same way. `--sequential` fetches pieces in order, and
//! `--prioritize-piece` the ends of each file first (127.0.8.6x).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Five files whose edges all fall inside 256 KiB pieces; returns their names and sizes.
fn album(root: &std::path::Path) -> [(&'static str, usize); 5] {
    // 256 KiB pieces; sizes put every file edge inside a piece.
    let sizes = [
        ("a.bin", 1024 * 1024 + 100),
        ("b.bin", 700 * 1024),
        ("c.bin", 2 * 1024 * 1024),
        ("d.bin", 3 * 1024 * 1024 - 5),
        ("e.bin", 1024 * 1024),
    ];
    for (i, (name, size)) in sizes.iter().enumerate() {
        random_file(&root.join(name), *size, 40 + i as u64);
    }
    sizes
}

#[test]
fn selected_files_only_then_the_rest() {
    let dir = tempdir();
    let root = dir.path().join("src/album");
    let sizes = album(&root);
    let total: usize = sizes.iter().map(|(_, s)| s).sum();
    let torrent = dir.path().join("album.torrent");
    shoal_create(&root, "256K", &torrent, &[]);
    let _seed = lt_seed(&torrent, &dir.path().join("src"), "127.0.4.1", 17401);
    let (out, state) = (dir.path().join("out"), dir.path().join("state"));
    let got = |extra: &[&str]| {
        shoal_get_with(
            &torrent,
            &out,
            &state,
            "127.0.4.2:17402",
            &["127.0.4.1:17401"],
            extra,
        )
    };
    let completed = |events: &[serde_json::Value]| {
        events
            .iter()
            .find(|e| e["event"] == "completed")
            .expect("a completed event")
            .clone()
    };

    // File 2 (b.bin) only: pieces 4-6, two of which it shares with a.bin and c.bin.
    let events = got(&["--select-file", "2"]);
    let done = completed(&events);
    assert_eq!(done["seed"], false, "{done}");
    let downloaded = done["downloaded"].as_u64().unwrap();
    assert!(
        downloaded <= 3 * 256 * 1024,
        "fetched {downloaded} bytes for a 700 KiB file"
    );
    same_files(&root.join("b.bin"), &out.join("album/b.bin"));
    for untouched in ["d.bin", "e.bin"] {
        assert!(
            !out.join("album").join(untouched).exists(),
            "{untouched} shares no piece with b.bin, yet it was created"
        );
    }
    let stats = events.iter().rfind(|e| e["event"] == "stats");
    if let Some(stats) = stats {
        assert_eq!(stats["total_bytes"], total as u64);
        assert_eq!(stats["selected_bytes"], 3 * 256 * 1024);
    }

    // A number beyond the files is refused before anything runs.
    let (output, _) = run_with_timeout(
        shoal().args([
            "get",
            path_str(&torrent),
            "-o",
            path_str(&out),
            "--no-seed",
            "--select-file",
            "6",
            "--state-dir",
            path_str(&state),
            "--listen",
            "127.0.4.2:17402",
            "--no-dht",
            "--no-tracker",
        ]),
        std::time::Duration::from_secs(30),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("has 5 files"), "{stderr}");

    // Everything: what the first run verified (shared pieces included) is kept.
    let events = got(&[]);
    let done = completed(&events);
    assert_eq!(done["seed"], true, "{done}");
    let downloaded = done["downloaded"].as_u64().unwrap() as usize;
    // b.bin's pieces are 4-6; allow half a piece of duplicates.
    assert!(
        downloaded <= total - 3 * 256 * 1024 + 128 * 1024,
        "fetched {downloaded} of {total} bytes again"
    );
    for (name, _) in sizes {
        same_files(&root.join(name), &out.join("album").join(name));
    }
}

/// `so=3` (0-based: d.bin) in a magnet whose metadata comes from the libtorrent seed.
#[test]
fn a_magnets_select_only_picks_the_files() {
    let dir = tempdir();
    let root = dir.path().join("src/album");
    let sizes = album(&root);
    let torrent = dir.path().join("album.torrent");
    shoal_create(&root, "256K", &torrent, &[]);
    let _seed = lt_seed(&torrent, &dir.path().join("src"), "127.0.4.3", 17403);
    let info = shoal_info(path_str(&torrent));
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&so=3&x.pe=127.0.4.3:17403",
        info["info_hash"].as_str().unwrap()
    );
    let out = dir.path().join("out");
    let mut cmd = shoal();
    cmd.args(["get", &magnet, "-o", path_str(&out), "--no-seed", "--json"])
        .args(["--listen", "127.0.4.4:17404", "--no-dht", "--state-dir"])
        .arg(dir.path().join("state"));
    let events = json_events(&mut cmd);
    let done = events
        .iter()
        .find(|e| e["event"] == "completed")
        .expect("a completed event");
    assert_eq!(done["seed"], false, "{done}");
    same_files(&root.join("d.bin"), &out.join("album/d.bin"));
    // d.bin spans pieces 14-26 (3 MiB from offset 3.68 MiB): at most 13 pieces fetched.
    let downloaded = done["downloaded"].as_u64().unwrap() as usize;
    assert!(downloaded <= 13 * 256 * 1024, "fetched {downloaded} bytes");
    assert!(downloaded >= sizes[3].1, "fetched {downloaded} bytes");
    for untouched in ["a.bin", "b.bin"] {
        assert!(!out.join("album").join(untouched).exists(), "{untouched}");
    }
}

/// A libtorrent leecher of the whole torrent that fetches what the peer at `peer` has;
/// libtorrent then drops an upload-only peer it wants nothing more from (BEP 21), which
/// it can only know from the peer's handshake. Prints `DROPPED <pieces> <why>`.
const LT_LEECH_PARTIAL: &str = r#"
torrent, save, ip, port, peer_ip, peer_port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
s = session(ip, port)
c = lt.alert.category_t
s.apply_settings({'alert_mask': c.peer_notification | c.connect_notification | c.error_notification})
h = s.add_torrent({'ti': lt.torrent_info(torrent), 'save_path': save})
h.connect_peer((peer_ip, peer_port))
deadline = time.time() + 30
while time.time() < deadline:
    for a in s.pop_alerts():
        if isinstance(a, lt.peer_disconnected_alert) and peer_ip in a.message():
            print('DROPPED', h.status().num_pieces, a.error.message(), flush=True)
            sys.exit(0)
    time.sleep(0.05)
print('TIMEOUT', h.status().num_pieces, flush=True)
"#;

/// A libtorrent peer that downloads only file 2 from the seed, then (finished, so
/// upload-only itself) connects to the peer at `peer` and stays until killed. It never
/// closes redundant connections itself, so that only the other side can end this one.
const LT_PARTIAL_SEED: &str = r#"
torrent, save, ip, port, seed_port, peer_ip, peer_port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], int(sys.argv[7])
s = session(ip, port)
s.apply_settings({'close_redundant_connections': False})
ti = lt.torrent_info(torrent)
prio = [0] * ti.num_files()
prio[2] = 1
h = s.add_torrent({'ti': ti, 'save_path': save, 'file_priorities': prio})
h.connect_peer(('127.0.4.5', seed_port))
deadline = time.time() + 60
while time.time() < deadline and not h.status().is_finished:
    time.sleep(0.05)
print('FINISHED' if h.status().is_finished else 'TIMEOUT', flush=True)
h.connect_peer((peer_ip, peer_port))
time.sleep(max(0, deadline - time.time()))
"#;

#[test]
fn partial_seeds_say_they_want_nothing_more() {
    let dir = tempdir();
    let root = dir.path().join("src/album");
    album(&root);
    let torrent = dir.path().join("album.torrent");
    shoal_create(&root, "256K", &torrent, &[]);
    let _seed = lt_seed(&torrent, &dir.path().join("src"), "127.0.4.5", 17405);

    // shoal fetches file 2 only, then stays as a partial seed.
    let mut get = shoal();
    get.args(["get", path_str(&torrent), "-o"])
        .arg(dir.path().join("shoal"))
        .args([
            "--select-file",
            "2",
            "--json",
            "--no-dht",
            "--listen",
            "127.0.4.6:17406",
        ])
        .args(["--peer", "127.0.4.5:17405", "--state-dir"])
        .arg(dir.path().join("state"));
    let (_shoal, events) = start_and_watch(get, "\"completed\"", Duration::from_secs(60));

    // libtorrent reads shoal's handshake as upload-only: once it has shoal's three
    // pieces it drops shoal, as it drops upload-only peers it wants nothing from.
    let out = python(
        &python_script(LT_LEECH_PARTIAL),
        &[
            path_str(&torrent),
            path_str(&dir.path().join("lt-leecher")),
            "127.0.4.7",
            "17407",
            "127.0.4.6",
            "17406",
        ],
    );
    assert_eq!(out.trim(), "DROPPED 3 uninteresting upload-only peer");

    // A libtorrent partial seed of the same file: neither wants anything of the other,
    // and the connection goes at once (without BEP 21 neither is a seed, and it would
    // stay).
    let mut partial = Command::new("/usr/bin/python3");
    partial
        .arg("-c")
        .arg(python_script(LT_PARTIAL_SEED))
        .arg(&torrent)
        .arg(dir.path().join("lt-partial"))
        .args(["127.0.4.8", "17408", "17405", "127.0.4.6", "17406"]);
    let _partial = start_and_wait(partial, "FINISHED", Duration::from_secs(60));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let gone = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = events
            .recv_timeout(left)
            .expect("shoal reports the partial seed's connection gone within 20 s");
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "peer_disconnected"
            && event["addr"]
                .as_str()
                .unwrap_or("")
                .starts_with("127.0.4.8:")
        {
            break event;
        }
    };
    let reason = gone["reason"].as_str().unwrap();
    assert!(reason.starts_with("both done"), "{gone}");
}

/// A libtorrent peer that downloads only file 2, finding peers through the torrent's
/// tracker, then announces again at once (as a partial seed, BEP 21: `event=paused`);
/// prints FINISHED and stays until killed.
const LT_PARTIAL_ANNOUNCE: &str = r#"
torrent, save, ip, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = session(ip, port)
ti = lt.torrent_info(torrent)
prio = [0] * ti.num_files()
prio[2] = 1
h = s.add_torrent({'ti': ti, 'save_path': save, 'file_priorities': prio})
deadline = time.time() + 60
while time.time() < deadline and not h.status().is_finished:
    time.sleep(0.05)
h.force_reannounce()
print('FINISHED' if h.status().is_finished else 'TIMEOUT', flush=True)
time.sleep(max(0, deadline - time.time()))
"#;

#[test]
fn a_tracker_counts_partial_seeds_apart() {
    let dir = tempdir();
    let root = dir.path().join("src/album");
    album(&root);
    let tracker = "127.0.4.10:17410";
    let _tracker = shoal_tracker(tracker, &[]);
    let url = format!("http://{tracker}/announce");
    let torrent = dir.path().join("album.torrent");
    shoal_create(&root, "256K", &torrent, &["--tracker", &url]);
    let hash = shoal_core::Metainfo::from_bytes(&std::fs::read(&torrent).unwrap())
        .unwrap()
        .info_hash;
    let _seed = lt_seed(&torrent, &dir.path().join("src"), "127.0.4.11", 17411);
    let mut partial = Command::new("/usr/bin/python3");
    partial
        .arg("-c")
        .arg(python_script(LT_PARTIAL_ANNOUNCE))
        .arg(&torrent)
        .arg(dir.path().join("lt-partial"))
        .args(["127.0.4.12", "17412"]);
    let _partial = start_and_wait(partial, "FINISHED", Duration::from_secs(60));
    // libtorrent's `paused` announce makes it a leecher that does not download.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let counts = scrape_url(&url, hash);
        if (counts.complete, counts.incomplete, counts.downloaders) == (1, 1, Some(0)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the partial seed never counted apart: {counts:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sequential_download_fetches_pieces_in_order() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 8 * 1024 * 1024 + 5, "256K");
    let _seed = lt_seed(&torrent, &src, "127.0.8.60", 17860);
    let out = dir.path().join("out");
    let events = shoal_get_with(
        &torrent,
        &out,
        &dir.path().join("state"),
        "127.0.8.61:17861",
        &["127.0.8.60:17860"],
        &[
            "--sequential",
            "--no-dht",
            "--no-tracker",
            "--max-down",
            "2M",
        ],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    // Each piece verified is among the first ones missing: at most two places ahead of
    // the count (the disk thread hashes pieces in pairs). Rarest first from one seed
    // would take them in random order.
    let pieces: Vec<(u64, u64)> = events_named(&events, "piece")
        .iter()
        .map(|e| (e["piece"].as_u64().unwrap(), e["have"].as_u64().unwrap()))
        .collect();
    assert!(pieces.len() >= 5, "{pieces:?}");
    assert!(
        pieces.iter().all(|&(piece, have)| piece < have + 2),
        "{pieces:?}"
    );
}

/// `--prioritize-piece head=SIZE,tail=SIZE` fetches the pieces at both ends of each file
/// first (here a single file's first piece and last three), then rarest first.
#[test]
fn the_ends_of_each_file_come_first() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 4 * 1024 * 1024 + 5, "256K");
    let _seed = lt_seed(&torrent, &src, "127.0.8.62", 17862);
    let out = dir.path().join("out");
    // At 512 KiB/s a piece takes half a second, so each gets its own `piece` event.
    let events = shoal_get_with(
        &torrent,
        &out,
        &dir.path().join("state"),
        "127.0.8.63:17863",
        &["127.0.8.62:17862"],
        &[
            "--prioritize-piece",
            "head=100K,tail=300K",
            "--no-dht",
            "--no-tracker",
            "--max-down",
            "512K",
        ],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    // (piece, pieces verified by then); events come at most every 250 ms, and the disk
    // thread hashes pieces in pairs, so not every piece has one.
    let pieces: Vec<(u64, u64)> = events_named(&events, "piece")
        .iter()
        .map(|e| (e["piece"].as_u64().unwrap(), e["have"].as_u64().unwrap()))
        .collect();
    // 17 pieces: 0 holds the first 100 KiB, 14-16 the last 300 KiB. Those four are the
    // first four verified: each one reported was verified among the first four, and
    // every other piece reported came after them.
    let prioritized = [0, 14, 15, 16];
    let (first, rest): (Vec<_>, Vec<_>) = pieces.iter().partition(|(p, _)| prioritized.contains(p));
    assert!(first.len() >= 2, "{pieces:?}");
    assert!(first.iter().all(|&&(_, have)| have <= 4), "{pieces:?}");
    assert!(rest.iter().all(|&&(_, have)| have > 4), "{pieces:?}");
}
