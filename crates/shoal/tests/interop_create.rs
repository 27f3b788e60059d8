//! `shoal create` and `shoal info` against mktorrent, libtorrent, Transmission and aria2:
//! the same content and piece size give the same info-hash, and each reads the others'
//! torrents with the same info-hash. v2 and hybrid torrents (BEP 52) against libtorrent's
//! own: both info-hashes the same.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const LT_INFO_HASH: &str =
    "import libtorrent as lt, sys\nprint(str(lt.torrent_info(sys.argv[1]).info_hashes().v1))";

const LT_CREATE: &str = r#"
import libtorrent as lt, os, sys
path, piece, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fs = lt.file_storage()
lt.add_files(fs, path)
t = lt.create_torrent(fs, piece, flags=lt.create_torrent.v1_only)
lt.set_piece_hashes(t, os.path.dirname(os.path.abspath(path)))
open(out, "wb").write(lt.bencode(t.generate()))
"#;

/// The folder of the mktorrent comparison: an empty file, nested folders, mixed-case
/// names, sizes that are not multiples of the piece size, and names whose full-path
/// order differs from a per-component order ("a-c" sorts before "a/...").
fn make_folder(root: &Path) {
    random_file(&root.join("B.txt"), 1_048_577, 1);
    random_file(&root.join("a/Nested/deep/x.bin"), 5 * 1_048_576 - 7, 2);
    random_file(&root.join("a/b.dat"), 300_000, 3);
    random_file(&root.join("a-c"), 1000, 4);
    random_file(&root.join("zz"), 3, 5);
    std::fs::write(root.join("a/empty"), b"").unwrap();
}

/// `shoal create --no-date` (see [`shoal_create`]); returns the info-hash.
fn create_hash(path: &Path, piece: &str, out: &Path, extra: &[&str]) -> String {
    shoal_create(path, piece, out, &[&["--no-date"], extra].concat());
    shoal_info(path_str(out))["info_hash"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn mktorrent(path: &Path, piece_exponent: u32, out: &Path) {
    require("mktorrent");
    run_ok(Command::new("mktorrent").args([
        "-l",
        &piece_exponent.to_string(),
        "-o",
        path_str(out),
        path_str(path),
    ]));
}

/// libtorrent makes a hybrid (its default) or v2-only torrent; prints both info-hashes.
const LT_CREATE_V2: &str = r#"
import libtorrent as lt, os, sys
path, piece, out, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
fs = lt.file_storage()
lt.add_files(fs, path)
flags = lt.create_torrent.v2_only if kind == 'v2' else 0
t = lt.create_torrent(fs, piece, flags=flags)
lt.set_piece_hashes(t, os.path.dirname(os.path.abspath(path)))
open(out, "wb").write(lt.bencode(t.generate()))
h = lt.torrent_info(out).info_hashes()
print(str(h.v1), str(h.v2))
"#;

fn lt_hash(torrent: &Path) -> String {
    python(LT_INFO_HASH, &[path_str(torrent)]).trim().to_owned()
}

/// The value of the first line of `text` that starts with `label` (after spaces).
fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no '{label}' in:\n{text}"))
        .trim()
        .to_lowercase()
}

fn transmission_hash(torrent: &Path) -> String {
    require("transmission-show");
    field(
        &run_ok(Command::new("transmission-show").arg(torrent)),
        "Hash:",
    )
}

fn aria2_hash(torrent: &Path) -> String {
    require("aria2c");
    field(
        &run_ok(Command::new("aria2c").args(["-S", path_str(torrent)])),
        "Info Hash:",
    )
}

/// Every reader reports `want` for `torrent`.
fn all_clients_agree(torrent: &Path, want: &str) {
    assert_eq!(lt_hash(torrent), want, "libtorrent on {torrent:?}");
    assert_eq!(
        transmission_hash(torrent),
        want,
        "transmission-show on {torrent:?}"
    );
    assert_eq!(aria2_hash(torrent), want, "aria2c -S on {torrent:?}");
}

#[test]
fn single_file_matches_mktorrent_and_libtorrent() {
    let dir = tempdir();
    let file = dir.path().join("Single File.bin");
    random_file(&file, 3 * 262_144 + 12_345, 7);

    let ours = create_hash(&file, "256K", &dir.path().join("shoal.torrent"), &[]);
    mktorrent(&file, 18, &dir.path().join("mk.torrent"));
    assert_eq!(
        shoal_info(path_str(&dir.path().join("mk.torrent")))["info_hash"],
        ours.as_str(),
        "vs mktorrent"
    );

    let lt_torrent = dir.path().join("lt.torrent");
    python(
        LT_CREATE,
        &[path_str(&file), "262144", path_str(&lt_torrent)],
    );
    assert_eq!(lt_hash(&lt_torrent), ours, "libtorrent v1_only");
    assert_eq!(
        shoal_info(path_str(&lt_torrent))["info_hash"],
        ours.as_str(),
        "shoal info on libtorrent's torrent"
    );

    all_clients_agree(&dir.path().join("shoal.torrent"), &ours);
}

#[test]
fn folder_matches_mktorrent() {
    let dir = tempdir();
    let root = dir.path().join("Mixed Case Folder");
    make_folder(&root);
    let ours_path = dir.path().join("shoal.torrent");
    let ours = create_hash(&root, "256K", &ours_path, &[]);
    let mk = dir.path().join("mk.torrent");
    mktorrent(&root, 18, &mk);
    let theirs = shoal_info(path_str(&mk));
    assert_eq!(theirs["info_hash"], ours.as_str(), "vs mktorrent");

    let info = shoal_info(path_str(&ours_path));
    let files: Vec<&str> = info["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "Mixed Case Folder/B.txt",
            "Mixed Case Folder/a-c",
            "Mixed Case Folder/a/Nested/deep/x.bin",
            "Mixed Case Folder/a/b.dat",
            "Mixed Case Folder/a/empty",
            "Mixed Case Folder/zz",
        ]
    );
    assert_eq!(
        info["total_size"],
        1_048_577 + 5 * 1_048_576 - 7 + 300_000 + 1000 + 3
    );
    all_clients_agree(&ours_path, &ours);
}

#[test]
fn other_piece_sizes_and_options_are_read_by_every_client() {
    let dir = tempdir();
    let root = dir.path().join("opts");
    make_folder(&root);
    for (piece, exponent) in [("32K", 15), ("1M", 20)] {
        let ours_path = dir.path().join(format!("shoal-{piece}.torrent"));
        let ours = create_hash(&root, piece, &ours_path, &[]);
        let mk = dir.path().join(format!("mk-{piece}.torrent"));
        mktorrent(&root, exponent, &mk);
        assert_eq!(
            shoal_info(path_str(&mk))["info_hash"],
            ours.as_str(),
            "piece size {piece}"
        );
    }
    // Trackers in two tiers, private, a comment: outside the info-hash except `private`.
    let torrent = dir.path().join("full.torrent");
    let hash = create_hash(
        &root,
        "512K",
        &torrent,
        &[
            "-t",
            "http://127.0.0.1:1/announce,udp://127.0.0.1:2",
            "-t",
            "http://127.0.0.1:3/a",
            "--private",
            "--comment",
            "hi",
        ],
    );
    let info = shoal_info(path_str(&torrent));
    assert_eq!(info["private"], true);
    assert_eq!(
        info["trackers"],
        serde_json::json!([
            ["http://127.0.0.1:1/announce", "udp://127.0.0.1:2"],
            ["http://127.0.0.1:3/a"]
        ])
    );
    all_clients_agree(&torrent, &hash);
    let shown = run_ok(Command::new("transmission-show").arg(&torrent));
    assert!(shown.contains("Private torrent"), "{shown}");

    // A source tag is in the info dictionary, as mktorrent -s writes it: same info-hash,
    // and another one than without it.
    let tagged = dir.path().join("tagged.torrent");
    let tagged_hash = create_hash(&root, "1M", &tagged, &["--source", "SHOAL"]);
    let mk = dir.path().join("mk-source.torrent");
    run_ok(Command::new("mktorrent").args([
        "-l",
        "20",
        "-s",
        "SHOAL",
        "-o",
        path_str(&mk),
        path_str(&root),
    ]));
    assert_eq!(shoal_info(path_str(&mk))["info_hash"], tagged_hash.as_str());
    assert_ne!(
        tagged_hash,
        create_hash(&root, "1M", &dir.path().join("plain.torrent"), &[])
    );
    assert_eq!(shoal_info(path_str(&tagged))["source"], "SHOAL");
    assert_eq!(lt_hash(&tagged), tagged_hash, "libtorrent");
}

#[test]
fn hybrid_and_v2_torrents_match_libtorrent() {
    let dir = tempdir();
    let root = dir.path().join("v2");
    make_folder(&root);
    for (path, piece) in [
        (root.clone(), 262_144u32),
        (root.clone(), 16_384),
        (root.join("a/b.dat"), 65_536),
    ] {
        for kind in ["hybrid", "v2"] {
            let lt_out = dir.path().join(format!("lt-{kind}-{piece}.torrent"));
            let lt = python(
                LT_CREATE_V2,
                &[path_str(&path), &piece.to_string(), path_str(&lt_out), kind],
            );
            let mut lt = lt.split_whitespace();
            let (lt_v1, lt_v2) = (lt.next().unwrap(), lt.next().unwrap());
            let ours = dir.path().join(format!("shoal-{kind}-{piece}.torrent"));
            shoal_create(
                &path,
                &piece.to_string(),
                &ours,
                &["--no-date", "--format", kind],
            );
            let info = shoal_info(path_str(&ours));
            let what = format!("{kind}, {piece}-byte pieces, {}", path.display());
            assert_eq!(info["info_hash_v2"], lt_v2, "{what}");
            match kind {
                "hybrid" => assert_eq!(info["info_hash"], lt_v1, "{what}"),
                _ => assert_eq!(info["info_hash"], &lt_v2[..40], "{what}"),
            }
            assert_eq!(
                info["format"],
                if kind == "v2" {
                    "v2"
                } else {
                    "hybrid (v1 and v2)"
                }
            );
        }
    }
}

#[test]
fn shoal_reads_transmission_created_torrents() {
    require("transmission-create");
    let dir = tempdir();
    let root = dir.path().join("tr");
    make_folder(&root);
    let torrent = dir.path().join("tr.torrent");
    run_ok(Command::new("transmission-create").args([
        "-s",
        "64",
        "-o",
        path_str(&torrent),
        path_str(&root),
    ]));
    let want = transmission_hash(&torrent);
    assert_eq!(shoal_info(path_str(&torrent))["info_hash"], want.as_str());
    assert_eq!(shoal_info(path_str(&torrent))["piece_length"], 65536);
    // (Transmission writes `private: 0` and its own file order into the info
    // dictionary, so its hash for the same content differs by design; only reading is
    // compared.)
}

#[test]
fn magnet_links_are_understood_by_libtorrent_and_aria2() {
    let dir = tempdir();
    let file = dir.path().join("m.bin");
    random_file(&file, 100_000, 9);
    let torrent = dir.path().join("m.torrent");
    let hash = create_hash(
        &file,
        "16K",
        &torrent,
        &["-t", "udp://127.0.0.1:9/announce"],
    );
    let magnet = shoal_info(path_str(&torrent))["magnet"]
        .as_str()
        .unwrap()
        .to_owned();
    let parsed = python(
        "import libtorrent as lt, sys\np = lt.parse_magnet_uri(sys.argv[1])\nprint(str(p.info_hashes.v1), p.name, ' '.join(p.trackers))",
        &[&magnet],
    );
    assert_eq!(
        parsed.trim(),
        format!("{hash} m.bin udp://127.0.0.1:9/announce")
    );
    // And shoal reads the magnet back, base32 form included.
    assert_eq!(shoal_info(&magnet)["info_hash"], hash.as_str());
    assert_eq!(shoal_info(&magnet)["name"], "m.bin");
}

/// `shoal verify` on another client's torrents: the folder checks complete against
/// mktorrent's v1 torrent and libtorrent's v2 one (exit 0), then, with one byte changed,
/// a file cut short and one removed, each file's status is as its pieces say (exit 3).
/// In v1 a piece can span two files: the bad byte fails its neighbour's tail too.
#[test]
fn verify_checks_data_against_mktorrent_and_libtorrent_torrents() {
    let dir = tempdir();
    let root = dir.path().join("Verify Me");
    make_folder(&root);
    let v1 = dir.path().join("mk.torrent");
    mktorrent(&root, 18, &v1);
    let v2 = dir.path().join("lt-v2.torrent");
    python(
        LT_CREATE_V2,
        &[path_str(&root), "262144", path_str(&v2), "v2"],
    );
    let verify = |torrent: &Path| {
        let out = shoal()
            .args(["verify", path_str(torrent), path_str(dir.path()), "--json"])
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        let status = |name: &str| {
            let files = report["files"].as_array().unwrap();
            let file = files
                .iter()
                .find(|f| f["path"] == format!("Verify Me/{name}"));
            file.unwrap_or_else(|| panic!("{name}: {report}"))["status"].clone()
        };
        let statuses: Vec<_> = [
            "B.txt",
            "a-c",
            "a/Nested/deep/x.bin",
            "a/b.dat",
            "a/empty",
            "zz",
        ]
        .map(status)
        .to_vec();
        (out.status.code(), report, statuses)
    };
    for torrent in [&v1, &v2] {
        let (code, report, statuses) = verify(torrent);
        assert_eq!(code, Some(0), "{report}");
        assert_eq!(report["complete"], true);
        assert!(statuses.iter().all(|s| s == "complete"), "{report}");
    }
    // The torrent's own folder instead of the one that holds it: all missing, and a hint.
    let out = shoal()
        .args(["verify", path_str(&v1), path_str(&root)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("give the folder that holds Verify Me"),
        "{stderr}"
    );

    // One byte in the middle of a/b.dat: v1's piece 24 holds x.bin's last 994 bytes
    // and b.dat's first 261 150.
    let bad = root.join("a/b.dat");
    let mut bytes = std::fs::read(&bad).unwrap();
    bytes[150_000] ^= 0xff;
    std::fs::write(&bad, bytes).unwrap();
    let (code, report, statuses) = verify(&v1);
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["complete"], false);
    let expected = [
        "complete",
        "complete",
        "incomplete",
        "incomplete",
        "complete",
        "complete",
    ];
    assert_eq!(statuses, expected, "{report}");
    let b = &report["files"].as_array().unwrap()[3];
    assert_eq!(b["verified_bytes"], 300_000 - 261_150, "{report}");

    // Then B.txt one byte short and zz gone; v2 hashes each file apart.
    let short = root.join("B.txt");
    let len = std::fs::metadata(&short).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&short)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    std::fs::remove_file(root.join("zz")).unwrap();
    let (code, report, statuses) = verify(&v2);
    assert_eq!(code, Some(3), "{report}");
    let expected = [
        "wrong_size",
        "complete",
        "complete",
        "incomplete",
        "complete",
        "missing",
    ];
    assert_eq!(statuses, expected, "{report}");
    assert_eq!(
        report["files"].as_array().unwrap()[5]["on_disk"],
        serde_json::Value::Null
    );
}

/// libtorrent records executable files (BEP 47 `attr: x`); `shoal create --attributes`
/// does too, giving libtorrent's info-hashes: hybrid and v2 for a folder and a single
/// file, v1 for the single file (libtorrent's v1-only folders list files in the order
/// the directory gives them). Without it shoal keeps mktorrent's.
#[test]
fn attributes_match_libtorrent_and_their_absence_mktorrent() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempdir();
    let root = dir.path().join("tools");
    make_folder(&root);
    let script = root.join("a/run.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let lt_v1 = dir.path().join("lt-v1.torrent");
    python(LT_CREATE, &[path_str(&script), "262144", path_str(&lt_v1)]);
    let ours = create_hash(
        &script,
        "256K",
        &dir.path().join("v1.torrent"),
        &["--attributes"],
    );
    assert_eq!(lt_hash(&lt_v1), ours, "v1, one executable file");
    for path in [&root, &script] {
        for kind in ["hybrid", "v2"] {
            let lt_out = dir.path().join(format!("lt-{kind}.torrent"));
            let lt = python(
                LT_CREATE_V2,
                &[path_str(path), "262144", path_str(&lt_out), kind],
            );
            let lt_v2 = lt.split_whitespace().nth(1).unwrap().to_owned();
            let ours = dir.path().join(format!("shoal-{kind}.torrent"));
            shoal_create(
                path,
                "256K",
                &ours,
                &["--no-date", "--attributes", "--force", "--format", kind],
            );
            let what = format!("{kind}: {}", path.display());
            assert_eq!(shoal_info(path_str(&ours))["info_hash_v2"], lt_v2, "{what}");
        }
    }
    let plain = create_hash(&script, "256K", &dir.path().join("plain.torrent"), &[]);
    let mk = dir.path().join("mk.torrent");
    mktorrent(&script, 18, &mk);
    assert_eq!(
        shoal_info(path_str(&mk))["info_hash"],
        plain.as_str(),
        "vs mktorrent"
    );
    assert_ne!(plain, ours, "the attribute is in the info-hash");
}

/// `shoal edit` makes the same file `transmission-edit` makes from the same edits (a
/// passkey replaced, a tracker removed with its tier, one added), byte for byte, and
/// the info-hash never changes. Web seeds, DHT nodes and the comment are edited too, and
/// libtorrent reads them; an edit that changes nothing leaves the file alone.
#[test]
fn shoal_edit_matches_transmission_edit() {
    require("transmission-edit");
    let dir = tempdir();
    let file = dir.path().join("f.bin");
    random_file(&file, 100_000, 21);
    let original = dir.path().join("t.torrent");
    let mut create = shoal();
    create
        .args([
            "create",
            path_str(&file),
            "--no-date",
            "-o",
            path_str(&original),
        ])
        .args(["-t", "http://a.example/announce?passkey=OLD"])
        .args(["-t", "udp://b.example:1", "-t", "http://x.example/announce"])
        .args(["--web-seed", "http://ws.example/", "--comment", "hello"]);
    run_ok(&mut create);
    let theirs = dir.path().join("theirs.torrent");
    let ours = dir.path().join("ours.torrent");
    std::fs::copy(&original, &theirs).unwrap();
    let edits = [
        "-r",
        "OLD",
        "NEW",
        "-d",
        "udp://b.example:1",
        "-a",
        "http://c.example/announce",
    ];
    run_ok(Command::new("transmission-edit").args(edits).arg(&theirs));
    run_ok(
        shoal()
            .args(["edit", path_str(&original), "-o", path_str(&ours)])
            .args(edits),
    );
    assert!(
        std::fs::read(&ours).unwrap() == std::fs::read(&theirs).unwrap(),
        "shoal edit and transmission-edit wrote different files"
    );

    let hash = shoal_info(path_str(&original))["info_hash"].clone();
    let edited = run_ok(shoal().args([
        "edit",
        path_str(&ours),
        "--json",
        "--remove-web-seed",
        "http://ws.example/",
        "--add-web-seed",
        "https://mirror.example/f.bin",
        "--add-dht-node",
        "[2001:db8::1]:6881",
        "--no-comment",
    ]));
    let edited: serde_json::Value = serde_json::from_str(&edited).unwrap();
    assert_eq!(edited["changed"], true);
    assert_eq!(edited["info_hash"], hash);
    let read = python(
        r#"
import libtorrent as lt, sys
ti = lt.torrent_info(sys.argv[1])
print([(t.url, t.tier) for t in ti.trackers()])
print([w['url'] for w in ti.web_seeds()], ti.nodes(), repr(ti.comment()))
print(ti.info_hash())
"#,
        &[path_str(&ours)],
    );
    let expected = format!(
        "[('http://a.example/announce?passkey=NEW', 0), ('http://x.example/announce', 1), \
         ('http://c.example/announce', 2)]\n\
         ['https://mirror.example/f.bin'] [('2001:db8::1', 6881)] ''\n{}\n",
        hash.as_str().unwrap()
    );
    assert_eq!(read, expected);

    let before = std::fs::read(&ours).unwrap();
    let again = run_ok(shoal().args(["edit", path_str(&ours), "-a", "http://x.example/announce"]));
    assert!(again.contains("(unchanged)"), "{again}");
    assert_eq!(std::fs::read(&ours).unwrap(), before);
    // A bad URL is a usage error, and the file is left alone.
    let (output, _) = run_with_timeout(
        shoal().args(["edit", path_str(&ours), "-a", "ftp://x"]),
        std::time::Duration::from_secs(30),
    );
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(std::fs::read(&ours).unwrap(), before);
}
