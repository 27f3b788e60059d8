//! v2 (BEP 52) and hybrid torrents as libtorrent 2 makes them, against libtorrent on
//! loopback (127.0.9.N): shoal reads both hashes, downloads a v2-only torrent checking
//! every piece's merkle root, seeds it back, finds a corrupt piece on disk, and joins a
//! hybrid torrent's swarm.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use common::*;

/// Makes a torrent of `root/content` with libtorrent: `v2` (v2 only) or `hybrid`, in
/// 256 KiB pieces; prints the v1 and v2 info-hashes.
const MAKE: &str = r#"
import libtorrent as lt, sys
root, out, kind = sys.argv[1], sys.argv[2], sys.argv[3]
fs = lt.file_storage()
lt.add_files(fs, root + '/content')
flags = lt.create_torrent.v2_only if kind == 'v2' else 0
t = lt.create_torrent(fs, 262144, flags=flags)
lt.set_piece_hashes(t, root)
open(out, 'wb').write(lt.bencode(t.generate()))
ti = lt.torrent_info(out)
print(str(ti.info_hashes().v1), str(ti.info_hashes().v2))
"#;

/// Files that hit every case of the v2 layout: longer than a piece and not a multiple
/// of it, exactly one piece, shorter than a piece (its own small tree), empty, nested.
const FILES: [(&str, usize); 5] = [
    ("a.bin", 700_000),
    ("one.bin", 262_144),
    ("empty", 0),
    ("sub/b.txt", 30_000),
    ("sub/deep/big.bin", 3 * 1024 * 1024 + 777),
];

/// Writes the content under `root/content` and makes its torrent; returns the
/// torrent's path and libtorrent's (v1, v2) info-hashes in hex.
fn make(root: &Path, kind: &str) -> (std::path::PathBuf, String, String) {
    for (i, (name, size)) in FILES.iter().enumerate() {
        random_file(&root.join("content").join(name), *size, 40 + i as u64);
    }
    let torrent = root.join(format!("{kind}.torrent"));
    let out = python(MAKE, &[path_str(root), path_str(&torrent), kind]);
    let mut hashes = out.split_whitespace().map(str::to_owned);
    let (v1, v2) = (hashes.next().unwrap(), hashes.next().unwrap());
    (torrent, v1, v2)
}

fn same_content(a: &Path, b: &Path) {
    for (name, _) in FILES {
        same_files(&a.join("content").join(name), &b.join("content").join(name));
    }
}

#[test]
fn v2_torrent_downloads_from_and_seeds_to_libtorrent() {
    let dir = tempdir();
    let src = dir.path().join("src");
    let (torrent, v1, v2) = make(&src, "v2");
    assert_eq!(v1, "0".repeat(40), "libtorrent made a v2-only torrent");
    let info = shoal_info(path_str(&torrent));
    assert_eq!(info["format"], "v2");
    assert_eq!(info["info_hash_v2"], v2.as_str());
    // The swarm is found under the v2 hash cut to 20 bytes.
    assert_eq!(info["info_hash"], &v2[..40]);
    assert_eq!(
        info["magnet"],
        format!("magnet:?xt=urn:btmh:1220{v2}&dn=content")
    );
    let listed: Vec<_> = info["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        listed,
        [
            "content/a.bin",
            "content/empty",
            "content/one.bin",
            "content/sub/b.txt",
            "content/sub/deep/big.bin"
        ],
        "the file tree's order, padding files hidden"
    );

    let _seed = lt_seed(&torrent, &src, "127.0.9.11", 17911);
    let out = dir.path().join("out");
    let events = shoal_get(
        &torrent,
        &out,
        &dir.path().join("state"),
        "127.0.9.12:17912",
        &["127.0.9.11:17911"],
    );
    same_content(&src, &out);
    assert!(events.iter().any(|e| e["event"] == "completed"));
    assert!(
        events_named(&events, "piece_failed").is_empty(),
        "every merkle root matched the first time"
    );
    assert!(
        !out.join("content/.pad").exists(),
        "padding is never written"
    );

    // And back: shoal seeds what it fetched, libtorrent checks it against its own roots.
    let _shoal_seed = shoal_seed(
        &torrent,
        &out,
        &dir.path().join("seed-state"),
        "127.0.9.13:17913",
    );
    let lt_out = dir.path().join("lt-out");
    lt_get(&torrent, &lt_out, "127.0.9.14", 17914, "127.0.9.13", 17913);
    same_content(&src, &lt_out);
}

#[test]
fn corrupt_v2_piece_is_found_when_data_is_checked() {
    let dir = tempdir();
    let src = dir.path().join("src");
    let (torrent, _, _) = make(&src, "v2");
    let pieces = shoal_info(path_str(&torrent))["piece_count"]
        .as_u64()
        .unwrap();
    // One byte changed in the last piece of big.bin, which holds fewer bytes than the
    // piece (the rest of it is padding).
    let big = src.join("content/sub/deep/big.bin");
    let mut data = std::fs::read(&big).unwrap();
    let last = data.len() - 5;
    data[last] ^= 1;
    std::fs::write(&big, data).unwrap();

    let mut cmd = shoal();
    cmd.args(["seed", path_str(&torrent), path_str(&src), "--json"])
        .args(["--listen", "127.0.9.15:17915", "--no-dht", "--no-tracker"])
        .args(["--state-dir", path_str(&dir.path().join("state"))])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut seed = Guard(cmd.spawn().expect("spawn shoal seed"));
    let mut first = String::new();
    BufReader::new(seed.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let started: serde_json::Value = serde_json::from_str(&first).expect("a JSON event");
    assert_eq!(started["event"], "started");
    assert_eq!(
        started["have"].as_u64(),
        Some(pieces - 1),
        "exactly the changed piece fails its check"
    );
}

#[test]
fn hybrid_torrent_joins_the_v1_swarm() {
    let dir = tempdir();
    let src = dir.path().join("src");
    let (torrent, v1, v2) = make(&src, "hybrid");
    let info = shoal_info(path_str(&torrent));
    assert_eq!(info["format"], "hybrid (v1 and v2)");
    assert_eq!(info["info_hash"], v1.as_str());
    assert_eq!(info["info_hash_v2"], v2.as_str());
    assert_eq!(
        info["magnet"],
        format!("magnet:?xt=urn:btih:{v1}&xt=urn:btmh:1220{v2}&dn=content")
    );
    let _seed = lt_seed(&torrent, &src, "127.0.9.21", 17921);
    let out = dir.path().join("out");
    shoal_get(
        &torrent,
        &out,
        &dir.path().join("state"),
        "127.0.9.22:17922",
        &["127.0.9.21:17921"],
    );
    same_content(&src, &out);
    // The magnet link with both hashes: metadata from libtorrent, checked under both.
    let magnet = info["magnet"].as_str().unwrap();
    let by_link = dir.path().join("by-link");
    shoal_get(
        Path::new(magnet),
        &by_link,
        &dir.path().join("state2"),
        "127.0.9.23:17923",
        &["127.0.9.21:17921"],
    );
    same_content(&src, &by_link);
}

#[test]
fn hash_requests_are_rejected_not_ignored() {
    let dir = tempdir();
    let src = dir.path().join("src");
    let (torrent, _, _) = make(&src, "v2");
    let _seed = shoal_seed_with(
        &torrent,
        &src,
        &dir.path().join("state"),
        "127.0.9.31:17931",
        &["--no-dht", "--no-tracker"],
    );
    // BEP 52 message 21: a pieces root, then base layer, index, length and proof layers.
    let mut payload = vec![0x5a; 32];
    for n in [4u32, 0, 2, 1] {
        payload.extend_from_slice(&n.to_be_bytes());
    }
    let mut request = (1 + payload.len() as u32).to_be_bytes().to_vec();
    request.push(21);
    request.extend_from_slice(&payload);
    let mut peer = WirePeer::connect("127.0.9.31:17931", info_hash_of(&torrent), &request);
    // Whatever else comes first (bitfield, extension handshake, …), a reject with the
    // same payload must follow.
    for _ in 0..20 {
        let body = peer.next();
        if body.first() == Some(&23) {
            assert_eq!(&body[1..], &payload[..], "the reject names the request");
            return;
        }
    }
    panic!("no hash reject among the first 20 messages");
}
