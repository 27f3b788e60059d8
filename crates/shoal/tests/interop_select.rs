//! `shoal get --select-file` against a libtorrent seed: only the selected files' pieces
//! are fetched, files no selected piece touches are never created, and a later run
//! without the selection keeps what is there and fetches the rest. A magnet link's BEP 53
//! `so=` selects the same way.

mod common;

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
