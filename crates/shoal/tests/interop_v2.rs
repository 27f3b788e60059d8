//! v2 (BEP 52) and hybrid torrents as libtorrent 2 makes them, against libtorrent on
//! loopback (127.0.9.N): shoal reads both hashes, downloads a v2-only torrent checking
//! every piece's merkle root (from its .torrent, and from its v2 magnet link with the
//! piece layers asked of libtorrent), seeds it back (to a .torrent and to a v2 magnet link, whose
//! piece layers libtorrent asks shoal for), answers hash requests with proofs, finds a
//! corrupt piece on disk, and is in both of a hybrid torrent's swarms.

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

/// libtorrent downloads from a v2-only magnet link (no .torrent): the info dictionary
/// from the peer (BEP 9, checked by SHA-256), then each file's piece layer through BEP 52
/// hash requests, checked against the file's root, then the pieces. The peer is dialled
/// every 2 s, unless its port is 0 (then the link's trackers find it).
const LT_GET_V2_MAGNET: &str = r#"
link, save, ip, port, peer_ip, peer_port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
s = session(ip, port)
atp = lt.parse_magnet_uri(link)
atp.save_path = save
h = s.add_torrent(atp)
s.apply_settings({'alert_mask': lt.alert.category_t.all_categories})
# BEP 52 messages as libtorrent's peer log shows them: what it asked, what it got.
counts = {'==> HASH_REQUEST': 0, '<== HASHES': 0, '<== HASH_REJECT': 0}
seen = []
deadline = time.time() + 50
last_connect = 0
while time.time() < deadline:
    if peer_port and time.time() - last_connect > 2:
        h.connect_peer((peer_ip, peer_port))
        last_connect = time.time()
    for a in s.pop_alerts():
        m = a.message()
        for k in counts:
            if k in m:
                counts[k] += 1
        seen = (seen + [m])[-40:]
    if h.status().is_seeding:
        print('DONE', counts['==> HASH_REQUEST'], counts['<== HASHES'], counts['<== HASH_REJECT'], flush=True)
        sys.exit(0)
    time.sleep(0.05)
print('TIMEOUT progress', h.status().progress, 'state', h.status().state, flush=True)
for line in seen:
    print('  alert', line, flush=True)
sys.exit(1)
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
    // The size is the files' bytes; the padding that aligns them is counted apart.
    let content: usize = FILES.iter().map(|(_, size)| size).sum();
    assert_eq!(info["total_size"], content as u64);
    assert!(info["padding_size"].as_u64().unwrap() > 0, "{info}");

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
    let completed = events
        .iter()
        .find(|e| e["event"] == "completed")
        .expect("completed");
    // The padding that aligns each file (BEP 47) is never asked for: what came over the
    // wire is the files' bytes, plus at most a block's worth of zeros per piece where a
    // file ends inside a block.
    let content: u64 = FILES.iter().map(|(_, size)| *size as u64).sum();
    let pieces = info["piece_count"].as_u64().unwrap();
    let downloaded = completed["downloaded"].as_u64().unwrap();
    assert!(
        (content..content + pieces * 16384).contains(&downloaded),
        "{downloaded} bytes downloaded for {content} bytes of files in {pieces} pieces"
    );
    assert!(
        events_named(&events, "piece_failed").is_empty(),
        "every merkle root matched the first time"
    );
    assert!(
        !out.join("content/.pad").exists(),
        "padding is never written"
    );

    // From the v2 magnet link alone: the info dictionary from libtorrent (checked by
    // SHA-256), then both piece layers through hash requests, proven against the roots.
    let magnet = info["magnet"].as_str().unwrap();
    let by_link = dir.path().join("by-link");
    let events = shoal_get(
        Path::new(magnet),
        &by_link,
        &dir.path().join("state-link"),
        "127.0.9.17:17917",
        &["127.0.9.11:17911"],
    );
    same_content(&src, &by_link);
    assert!(events_named(&events, "piece_failed").is_empty());
    // The fetched metadata is kept as a .torrent (with the piece layers it was given).
    let metadata = events_named(&events, "metadata");
    let saved = shoal_info(metadata[0]["torrent"].as_str().expect("the saved torrent"));
    assert_eq!(saved["info_hash_v2"], info["info_hash_v2"]);
    assert_eq!(saved["format"], info["format"]);

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

    // And from the v2 magnet link alone: libtorrent must ask shoal for every piece
    // layer (BEP 52 hash requests) and check the answers against the file roots.
    let magnet = info["magnet"].as_str().unwrap();
    let by_link = dir.path().join("lt-by-link");
    std::fs::create_dir_all(&by_link).unwrap();
    let script = python_script(LT_GET_V2_MAGNET);
    let out = python(
        &script,
        &[
            magnet,
            path_str(&by_link),
            "127.0.9.16",
            "17916",
            "127.0.9.13",
            "17913",
        ],
    );
    // Two files are longer than a piece: libtorrent asks for each one's piece layer
    // once and gets hashes, not a reject (what they hold is checked in
    // `hash_requests_are_answered_from_the_piece_layers`).
    assert_eq!(out.trim(), "DONE 2 2 0", "requests, hashes, rejects: {out}");
    same_content(&src, &by_link);
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

/// [`FILES`] (their bytes from `seed`) under `dir/src/content`, and a hybrid torrent of
/// them made by shoal with the tracker `url`: the source folder, the torrent, and its v1
/// info-hash and v2 one (hex, whole).
fn hybrid_with_tracker(
    dir: &Path,
    url: &str,
    seed: u64,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    (shoal_core::InfoHash, String),
) {
    let src = dir.join("src");
    for (i, (name, size)) in FILES.iter().enumerate() {
        random_file(&src.join("content").join(name), *size, seed + i as u64);
    }
    let torrent = dir.join("hybrid.torrent");
    shoal_create(
        &src.join("content"),
        "256K",
        &torrent,
        &["--format", "hybrid", "--tracker", url],
    );
    let info = shoal_info(path_str(&torrent));
    let v1 = info["info_hash"].as_str().unwrap().parse().unwrap();
    let v2_hex = info["info_hash_v2"].as_str().unwrap().to_owned();
    (src, torrent, (v1, v2_hex))
}

/// A hybrid torrent is two swarms, one under each info-hash, and libtorrent announces it
/// in both. A shoal seed of one announces both hashes to its tracker, and libtorrent,
/// given only the v2 magnet link (no v1 hash) and the tracker, finds it there, connects
/// naming the v2 swarm (its truncated SHA-256), and downloads: the info dictionary, the
/// piece layers (BEP 52 hash requests), then the pieces; in plaintext, then behind an
/// encrypted handshake. Fails with the seed in the v1 swarm only, as before: the tracker
/// has nobody under the v2 hash, and the seed took no connection naming it.
#[test]
fn a_hybrid_seed_is_found_and_reached_in_the_v2_swarm() {
    let dir = tempdir();
    let url = "http://127.0.9.60:17960/announce";
    let (src, torrent, (v1, v2_hex)) = hybrid_with_tracker(dir.path(), url, 70);
    let v2: shoal_core::InfoHash = v2_hex[..40].parse().unwrap();
    let _tracker = shoal_tracker("127.0.9.60:17960", &[]);
    let _seed = shoal_seed_with(
        &torrent,
        &src,
        &dir.path().join("state"),
        "127.0.9.61:17961",
        &["--no-dht", "--no-port-map"],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while (scrape_url(url, v1).complete, scrape_url(url, v2).complete) != (1, 1) {
        assert!(
            std::time::Instant::now() < deadline,
            "the seed is not in both swarms"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let link = format!("magnet:?xt=urn:btmh:1220{v2_hex}&dn=content&tr={url}");
    let out = dir.path().join("lt-out");
    let stdout = python(
        &python_script(LT_GET_V2_MAGNET),
        &[&link, path_str(&out), "127.0.9.62", "17962", "-", "0"],
    );
    assert!(stdout.starts_with("DONE"), "{stdout}");
    same_content(&src, &out);
    // Again behind an encrypted handshake (MSE names the swarm too, by its hash).
    let out = dir.path().join("lt-out-rc4");
    let stdout = run_ok(
        std::process::Command::new("/usr/bin/python3")
            .env("SHOAL_TEST_LT_RC4", "1")
            .arg("-c")
            .arg(python_script(LT_GET_V2_MAGNET))
            .args([&link, path_str(&out), "127.0.9.63", "17963", "-", "0"]),
    );
    assert!(stdout.starts_with("DONE"), "{stdout}");
    same_content(&src, &out);
}

/// The other way round: libtorrent, given only the v2 magnet link and the tracker, makes
/// no connections and waits; the shoal seed finds it under the v2 hash at the tracker
/// and must dial it naming the v2 swarm, as libtorrent dials the peers it found there:
/// before it has the metadata, that is the only hash libtorrent knows (named by the v1
/// hash, the connection was dropped and the download never started).
#[test]
fn a_hybrid_seed_dials_the_v2_swarm_by_its_hash() {
    let dir = tempdir();
    let url = "http://127.0.9.64:17964/announce";
    let (src, torrent, (_, v2_hex)) = hybrid_with_tracker(dir.path(), url, 90);
    let v2: shoal_core::InfoHash = v2_hex[..40].parse().unwrap();
    let _tracker = shoal_tracker("127.0.9.64:17964", &[]);
    let link = format!("magnet:?xt=urn:btmh:1220{v2_hex}&dn=content&tr={url}");
    let out = dir.path().join("lt-out");
    let mut lt = std::process::Command::new("/usr/bin/python3");
    lt.env("SHOAL_TEST_LT_NO_DIAL", "1")
        .arg("-c")
        .arg(python_script(LT_GET_V2_MAGNET))
        .args([&link, path_str(&out), "127.0.9.66", "17966", "-", "0"]);
    let (mut lt, lines) = spawn_watched(lt);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while scrape_url(url, v2).incomplete != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "libtorrent is not at the tracker"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _seed = shoal_seed_with(
        &torrent,
        &src,
        &dir.path().join("state"),
        "127.0.9.65:17965",
        &["--no-dht", "--no-port-map"],
    );
    let seen = wait_lines(&lines, &["DONE"], std::time::Duration::from_secs(55));
    assert!(seen.iter().any(|l| l.starts_with("DONE")), "{seen:?}");
    lt.wait_exit(
        std::time::Duration::from_secs(10),
        "libtorrent exits once done",
    );
    same_content(&src, &out);
}

/// A hybrid torrent fetched by its v2 link alone keeps its metadata: run again with no
/// peer at all, the download finds the saved .torrent (named by the v1 hash's swarm and
/// the v2 one's) and checks the files instead of waiting for someone to send it.
#[test]
fn a_hybrid_fetched_by_its_v2_link_keeps_its_metadata() {
    let dir = tempdir();
    let url = "http://127.0.9.67:17967/announce";
    let (src, torrent, (_, v2_hex)) = hybrid_with_tracker(dir.path(), url, 110);
    let seed = shoal_seed_with(
        &torrent,
        &src,
        &dir.path().join("seed-state"),
        "127.0.9.68:17968",
        &["--no-dht", "--no-port-map"],
    );
    let link = format!("magnet:?xt=urn:btmh:1220{v2_hex}&dn=content");
    let (out, state) = (dir.path().join("out"), dir.path().join("state"));
    let quiet = ["--no-dht", "--no-tracker", "--no-port-map"];
    let events = shoal_get_with(
        Path::new(&link),
        &out,
        &state,
        "127.0.9.69:17969",
        &["127.0.9.68:17968"],
        &quiet,
    );
    same_content(&src, &out);
    assert_eq!(events_named(&events, "metadata").len(), 1);
    drop(seed);
    let again = shoal_get_with(
        Path::new(&link),
        &out,
        &state,
        "127.0.9.69:17969",
        &[],
        &quiet,
    );
    assert!(
        events_named(&again, "fetching_metadata").is_empty(),
        "{again:?}"
    );
    assert_eq!(events_named(&again, "completed").len(), 1, "{again:?}");
}

/// A BEP 52 hash request for `count` hashes from `index` of layer `base` of the file
/// whose root is `root`, with `proofs` proof layers, as a framed message.
fn hash_request(root: &[u8; 32], base: u32, index: u32, count: u32, proofs: u32) -> Vec<u8> {
    let mut msg = (1u32 + 48).to_be_bytes().to_vec();
    msg.push(21);
    msg.extend_from_slice(root);
    for n in [base, index, count, proofs] {
        msg.extend_from_slice(&n.to_be_bytes());
    }
    msg
}

/// The next message with id 22 (`hashes`) or 23 (`hash reject`), skipping the rest.
fn hash_answer(peer: &mut WirePeer) -> Vec<u8> {
    for _ in 0..40 {
        let body = peer.next();
        if matches!(body.first(), Some(22 | 23)) {
            return body;
        }
    }
    panic!("no answer to the hash request among 40 messages");
}

#[test]
fn hash_requests_are_answered_from_the_piece_layers_and_the_data() {
    use shoal_core::merkle::{pad, parent, proves, root, sha256, Hash, BLOCK};
    let dir = tempdir();
    let src = dir.path().join("src");
    let (torrent, _, _) = make(&src, "v2");
    // What the answers must hold, from the data itself: big.bin's 13 piece hashes
    // (16 leaves each, the last piece's past the end zero) and its root.
    let data = std::fs::read(src.join("content/sub/deep/big.bin")).unwrap();
    let layer: Vec<Hash> = data
        .chunks(16 * BLOCK)
        .map(|piece| {
            let leaves: Vec<Hash> = piece.chunks(BLOCK).map(sha256).collect();
            root(&leaves, 16, 0)
        })
        .collect();
    assert_eq!(layer.len(), 13);
    let file_root = root(&layer, 16, 4);

    let _seed = shoal_seed_with(
        &torrent,
        &src,
        &dir.path().join("state"),
        "127.0.9.31:17931",
        &["--no-dht", "--no-tracker"],
    );
    // The whole piece layer (padded to 16), no proof needed.
    let first = hash_request(&file_root, 4, 0, 16, 0);
    // Two hashes from the middle and every proof layer up to below the root.
    let second = hash_request(&file_root, 4, 6, 2, 3);
    // The block hashes of the last piece (12, partly past the end of the file), with
    // proofs up to the root's children: read back from the data.
    let blocks = hash_request(&file_root, 0, 12 * 16, 16, 7);
    // A root that names no file, and block hashes of two pieces at once.
    let unknown = hash_request(&[0x5a; 32], 4, 0, 2, 0);
    let two_pieces = hash_request(&file_root, 0, 0, 32, 0);
    let mut peer = WirePeer::connect(
        "127.0.9.31:17931",
        info_hash_of(&torrent),
        &[
            first.clone(),
            second.clone(),
            blocks.clone(),
            unknown.clone(),
            two_pieces.clone(),
        ]
        .concat(),
    );
    let answer = |body: &[u8]| -> Vec<Hash> {
        body[49..]
            .chunks(32)
            .map(|h| h.try_into().unwrap())
            .collect()
    };

    let body = hash_answer(&mut peer);
    assert_eq!(
        (body[0], &body[1..49]),
        (22, &first[5..]),
        "hashes for the first"
    );
    let hashes = answer(&body);
    assert_eq!(&hashes[..13], &layer[..]);
    assert_eq!(&hashes[13..], &[pad(4); 3], "padding past the file");

    let body = hash_answer(&mut peer);
    assert_eq!((body[0], &body[1..49]), (22, &second[5..]));
    let hashes = answer(&body);
    // Three proof layers for a pair: the pair's own parent needs no proof, so three
    // uncles follow, from the lowest up: those of pieces 6-7, 4-7 and 0-7.
    assert_eq!(hashes.len(), 2 + 3);
    assert_eq!(&hashes[..2], &layer[6..8]);
    assert_eq!(hashes[2], parent(&layer[4], &layer[5]), "uncle of 6-7");
    assert_eq!(hashes[3], root(&layer[..4], 4, 4), "uncle of 4-7");
    assert_eq!(hashes[4], root(&layer[8..], 8, 4), "uncle of 0-7");
    // Climbing with them from the pair reaches the file's root.
    let six_seven = parent(&hashes[0], &hashes[1]);
    let four_seven = parent(&hashes[2], &six_seven);
    let zero_seven = parent(&hashes[3], &four_seven);
    assert_eq!(parent(&zero_seven, &hashes[4]), file_root);

    let body = hash_answer(&mut peer);
    assert_eq!((body[0], &body[1..49]), (22, &blocks[5..]));
    let hashes = answer(&body);
    let mut leaves: Vec<Hash> = data[12 * 16 * BLOCK..].chunks(BLOCK).map(sha256).collect();
    leaves.resize(16, pad(0));
    assert_eq!(&hashes[..16], &leaves[..]);
    assert_eq!(
        hashes.len(),
        16 + 4,
        "uncles of pieces 12, 12-13, 12-15 and 8-15"
    );
    assert!(proves(&file_root, 256, 0, 12 * 16, 16, &hashes));

    for request in [unknown, two_pieces] {
        let body = hash_answer(&mut peer);
        assert_eq!((body[0], &body[1..]), (23, &request[5..]), "rejected");
    }
}

#[test]
fn shoal_made_hybrid_torrent_seeds_to_libtorrent() {
    let dir = tempdir();
    let src = dir.path().join("src");
    for (i, (name, size)) in FILES.iter().enumerate() {
        random_file(&src.join("content").join(name), *size, 60 + i as u64);
    }
    let torrent = dir.path().join("ours.torrent");
    shoal_create(
        &src.join("content"),
        "256K",
        &torrent,
        &["--format", "hybrid"],
    );
    let _seed = shoal_seed(
        &torrent,
        &src,
        &dir.path().join("state"),
        "127.0.9.41:17941",
    );
    // libtorrent checks a hybrid torrent's pieces by both SHA-1 and merkle root.
    let lt_out = dir.path().join("lt-out");
    lt_get(&torrent, &lt_out, "127.0.9.42", 17942, "127.0.9.41", 17941);
    same_content(&src, &lt_out);
}

/// libtorrent makes a v2-only torrent of one file; prints nothing.
const MAKE_SINGLE: &str = r#"
import libtorrent as lt, os, sys
path, out = sys.argv[1], sys.argv[2]
fs = lt.file_storage()
lt.add_files(fs, path)
t = lt.create_torrent(fs, 262144, flags=lt.create_torrent.v2_only)
lt.set_piece_hashes(t, os.path.dirname(os.path.abspath(path)))
open(out, 'wb').write(lt.bencode(t.generate()))
"#;

#[test]
fn single_file_v2_torrent_seeds_from_the_file_s_own_path() {
    let dir = tempdir();
    let file = dir.path().join("data/movie.bin");
    random_file(&file, 3 * 262_144 + 1000, 70);
    let torrent = dir.path().join("movie.torrent");
    python(MAKE_SINGLE, &[path_str(&file), path_str(&torrent)]);
    // `shoal seed TORRENT FILE`: the file named directly, its padding kept out of it.
    let _seed = shoal_seed(
        &torrent,
        &file,
        &dir.path().join("state"),
        "127.0.9.51:17951",
    );
    let lt_out = dir.path().join("lt-out");
    lt_get(&torrent, &lt_out, "127.0.9.52", 17952, "127.0.9.51", 17951);
    same_files(&file, &lt_out.join("movie.bin"));
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        3 * 262_144 + 1000,
        "nothing was added to the seeded file"
    );
}

/// A peer that dialled a hybrid seed naming the v2 swarm (as a client with only the v2
/// link must) is dialled back, once it has gone, naming the v2 swarm too: it may know no
/// other hash. A raw peer plays it: it connects by the v2 hash, gives its listen port in
/// its extension handshake, hangs up, and waits on that port for the seed's handshake.
/// Before, the seed dialled it back by the v1 hash.
#[test]
fn a_peer_that_came_by_the_v2_hash_is_dialled_back_by_it() {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    let dir = tempdir();
    let url = "http://127.0.9.67:17967/announce";
    let (src, torrent, (v1, v2_hex)) = hybrid_with_tracker(dir.path(), url, 110);
    let v2: shoal_core::InfoHash = v2_hex[..40].parse().unwrap();
    // Plain handshakes, so that the raw peer can read the one that comes back.
    let _seed = shoal_seed_with(
        &torrent,
        &src,
        &dir.path().join("state"),
        "127.0.9.68:17968",
        &["--no-tracker", "--no-dht", "--encryption", "off"],
    );
    let listener = TcpListener::bind("127.0.9.69:17969").unwrap();
    listener.set_nonblocking(true).unwrap();

    // From the address it listens on, as a client does that binds its listen IP.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: std::net::SocketAddr = "127.0.9.69:0".parse().unwrap();
    let seed: std::net::SocketAddr = "127.0.9.68:17968".parse().unwrap();
    socket.bind(&from.into()).unwrap();
    socket.connect(&seed.into()).unwrap();
    let mut peer: TcpStream = socket.into();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut hello = vec![19];
    hello.extend_from_slice(b"BitTorrent protocol");
    hello.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x04]); // extensions, fast
    hello.extend_from_slice(&v2.0);
    hello.extend_from_slice(b"-XX0001-v2v2v2v2v2v2");
    peer.write_all(&hello).unwrap();
    let mut reply = [0u8; 68];
    peer.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[28..48], &v2.0, "the seed answers in the v2 swarm");
    let extended = b"d1:md11:ut_metadatai1ee1:pi17969ee";
    let mut message = ((extended.len() + 2) as u32).to_be_bytes().to_vec();
    message.extend_from_slice(&[20, 0]);
    message.extend_from_slice(extended);
    message.extend_from_slice(&[0, 0, 0, 1, 15]); // have none
    peer.write_all(&message).unwrap();
    // Long enough for the seed to take in the listen port (it looks every 100 ms).
    std::thread::sleep(Duration::from_secs(2));
    drop(peer);

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut back = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(_) => {
                assert!(Instant::now() < deadline, "the seed never dialled back");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    back.set_nonblocking(false).unwrap();
    back.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut theirs = [0u8; 68];
    back.read_exact(&mut theirs).unwrap();
    assert_eq!(&theirs[..20], &hello[..20], "a plain handshake");
    assert_ne!(&theirs[28..48], &v1.0, "named the v1 swarm");
    assert_eq!(&theirs[28..48], &v2.0);
}
