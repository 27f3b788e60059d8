//! The bad-input list (metadata, paths and bencode) through the real command: `shoal
//! info` either shows the sanitised result or exits non-zero within a second with one
//! line naming the file and the problem. Never a panic, never a hang.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use shoal_bencode::Value;

fn info_dict(total: i64, piece_length: i64) -> Value {
    let mut info = Value::dict();
    info.insert("name", "t");
    info.insert("piece length", piece_length);
    info.insert(
        "pieces",
        vec![0u8; ((total + piece_length - 1) / piece_length) as usize * 20],
    );
    info.insert("length", total);
    info
}

fn multi(paths: Vec<Vec<&[u8]>>) -> Value {
    let mut info = info_dict(paths.len() as i64, 16384);
    if let Value::Dict(map) = &mut info {
        map.remove(&b"length"[..]);
    }
    let files = paths
        .into_iter()
        .map(|p| {
            let mut f = Value::dict();
            f.insert("length", 1i64);
            f.insert(
                "path",
                Value::List(p.into_iter().map(|c| Value::Bytes(c.to_vec())).collect()),
            );
            f
        })
        .collect();
    info.insert("files", Value::List(files));
    info
}

fn wrap(info: Value) -> Vec<u8> {
    let mut t = Value::dict();
    t.insert("info", info);
    t.to_bytes()
}

/// Runs `shoal info --json` on `bytes` written to a file; returns (success, stdout, stderr).
fn info_on(dir: &Path, name: &str, bytes: &[u8]) -> (bool, String, String) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let (out, elapsed) = run_with_timeout(
        shoal().args(["info", "--json"]).arg(&path),
        Duration::from_secs(10),
    );
    assert!(elapsed < Duration::from_secs(1), "{name}: took {elapsed:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

/// The input must be refused with one line naming the file and containing `problem`.
fn refused(dir: &Path, name: &str, bytes: &[u8], problem: &str) {
    let (ok, _, stderr) = info_on(dir, name, bytes);
    assert!(!ok, "{name}: accepted");
    assert_eq!(stderr.lines().count(), 1, "{name}: not one line: {stderr}");
    assert!(stderr.contains(name), "{name}: file not named: {stderr}");
    assert!(
        stderr.contains(problem),
        "{name}: expected '{problem}' in: {stderr}"
    );
}

/// The input must be accepted with these file paths.
fn sanitised(dir: &Path, name: &str, bytes: &[u8], want: &[&str]) {
    let (ok, stdout, stderr) = info_on(dir, name, bytes);
    assert!(ok, "{name}: refused: {stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let paths: Vec<&str> = json["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, want, "{name}");
}

#[test]
fn metadata_and_paths() {
    let dir = tempdir();
    let d = dir.path();
    // 1–3: traversal, separators inside an element, absolute paths.
    sanitised(
        d,
        "item1.torrent",
        &wrap(multi(vec![vec![b"a", b"..", b"..", b"x"]])),
        &["t/a/x"],
    );
    sanitised(
        d,
        "item2.torrent",
        &wrap(multi(vec![vec![b"x.avi /../../Startup/e.exe"]])),
        &["t/x.avi _.._.._Startup_e.exe"],
    );
    sanitised(
        d,
        "item3.torrent",
        &wrap(multi(vec![
            vec![b"/etc/cron.d/x"],
            vec![b"C:\\x"],
            vec![b"\\\\srv\\s"],
        ])),
        &["t/_etc_cron.d_x", "t/C:_x", "t/__srv_s"],
    );
    // 4: unusable names become the info-hash.
    for (i, name) in [&b""[..], b".", b"\x01\x02"].into_iter().enumerate() {
        let mut info = info_dict(10, 16384);
        info.insert("name", name);
        let (ok, stdout, _) = info_on(d, &format!("item4-{i}.torrent"), &wrap(info));
        let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert!(ok);
        assert_eq!(json["name"], json["info_hash"]);
    }
    // 5: NUL, control characters, invalid UTF-8, right-to-left override.
    sanitised(
        d,
        "item5.torrent",
        &wrap(multi(vec![
            vec![b"nul\0x"],
            vec![b"esc\x1b"],
            vec![b"bad\xff"],
            vec!["rlo\u{202E}txt.exe".as_bytes()],
        ])),
        &["t/nul_x", "t/esc_", "t/bad_", "t/rlo_txt.exe"],
    );
    // 6: a symlink pointing outside stays inside.
    let mut info = multi(vec![vec![b"link"]]);
    if let Value::Dict(map) = &mut info {
        if let Some(Value::List(files)) = map.get_mut(&b"files"[..]) {
            files[0].insert("attr", "l");
            files[0].insert(
                "symlink path",
                Value::List(vec![
                    "..".into(),
                    "..".into(),
                    "etc".into(),
                    "passwd".into(),
                ]),
            );
        }
    }
    let (ok, stdout, _) = info_on(d, "item6.torrent", &wrap(info));
    assert!(ok);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["files"][0]["symlink"], "etc/passwd");
    // 7: 10k identical paths are de-duplicated; depth over 100 is refused.
    let (ok, stdout, _) = info_on(
        d,
        "item7a.torrent",
        &wrap(multi(vec![vec![&b"same"[..]]; 10_000])),
    );
    assert!(ok);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let unique: std::collections::HashSet<&str> = json["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(unique.len(), 10_000);
    refused(
        d,
        "item7b.torrent",
        &wrap(multi(vec![vec![&b"d"[..]; 101]])),
        "deeper than 100",
    );
    // 8: file and piece lengths.
    refused(
        d,
        "item8a.torrent",
        &wrap(info_dict(-5, 16384)),
        "file length -5 is invalid",
    );
    refused(d, "item8b.torrent", &wrap(info_dict(0, 16384)), "no data");
    for (i, bad) in [0i64, -1, 1 << 40].into_iter().enumerate() {
        let mut info = info_dict(10, 16384);
        info.insert("piece length", bad);
        refused(
            d,
            &format!("item8c{i}.torrent"),
            &wrap(info),
            "piece length",
        );
    }
    let mut info = info_dict(10, 16384);
    if let Value::Dict(map) = &mut info {
        map.remove(&b"piece length"[..]);
    }
    refused(
        d,
        "item8d.torrent",
        &wrap(info),
        "missing key 'piece length'",
    );
    // 9: pieces not a multiple of 20, or not matching the length.
    let mut info = info_dict(100_000, 16384);
    info.insert("pieces", vec![0u8; 41]);
    refused(d, "item9a.torrent", &wrap(info), "not a multiple of 20");
    let mut info = info_dict(100_000, 16384);
    info.insert("pieces", vec![0u8; 40]);
    refused(d, "item9b.torrent", &wrap(info), "needs 7");
    // 10: oversized file, too many pieces.
    refused(
        d,
        "item10a.torrent",
        &vec![b'd'; 10 * 1024 * 1024 + 1],
        "limit",
    );
    // A `pieces` string that claims 2^21+1 hashes in a small file: the claimed length
    // is checked against the input before anything is allocated.
    let mut bytes = format!(
        "d4:infod6:lengthi1e4:name1:t12:piece lengthi1e6:pieces{}:",
        ((1usize << 21) + 1) * 20
    )
    .into_bytes();
    bytes.extend_from_slice(&[0; 100]);
    bytes.extend_from_slice(b"ee");
    refused(d, "item10b.torrent", &bytes, "runs past the end");
}

#[test]
fn bencode() {
    let dir = tempdir();
    let d = dir.path();
    let mut nested = vec![b'l'; 1024];
    nested.extend(vec![b'e'; 1024]);
    refused(d, "item11.torrent", &nested, "nesting deeper than 100");
    refused(
        d,
        "item12a.torrent",
        b"99999999999999999999:x",
        "invalid string length",
    );
    refused(d, "item12b.torrent", b"d4:info500:xe", "runs past the end");
    for (i, (bad, problem)) in [
        (&b"i9223372036854775808e"[..], "64 bits"),
        (b"i-e", "invalid integer"),
        (b"i01e", "leading zero"),
        (b"i-0e", "negative zero"),
        (b"i12", "end of input"),
    ]
    .into_iter()
    .enumerate()
    {
        refused(d, &format!("item13-{i}.torrent"), bad, problem);
    }
    let mut many = b"l".to_vec();
    for _ in 0..3_000_000 {
        many.extend_from_slice(b"le");
    }
    many.push(b'e');
    refused(d, "item14.torrent", &many, "more than");

    // 15: a real torrent cut at every offset (sampled: every offset of the head, where
    // the structure is, and a stride through the piece hashes).
    let mut info = info_dict(300_000, 16384);
    info.insert("name", "truncated.bin");
    let whole = wrap(info);
    let offsets = (0..whole.len().min(120)).chain((120..whole.len()).step_by(37));
    for cut in offsets {
        let (ok, _, stderr) = info_on(d, "item15.torrent", &whole[..cut]);
        assert!(
            !ok && stderr.lines().count() == 1 && stderr.contains("at byte"),
            "cut {cut}: {stderr}"
        );
    }

    // 16: unsorted and duplicate keys: the hash is over the raw bytes.
    let mut raw = b"d6:lengthi10e4:name1:b4:name1:a12:piece lengthi16384e6:pieces20:".to_vec();
    raw.extend_from_slice(&[0; 20]);
    raw.push(b'e');
    let mut torrent = b"d4:info".to_vec();
    torrent.extend_from_slice(&raw);
    torrent.push(b'e');
    let (ok, stdout, _) = info_on(d, "item16.torrent", &torrent);
    assert!(ok);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let want = python(
        "import hashlib, sys\nprint(hashlib.sha1(bytes.fromhex(sys.argv[1])).hexdigest())",
        &[&hex(&raw)],
    );
    assert_eq!(json["info_hash"], want.trim());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn not_a_torrent_at_all() {
    let dir = tempdir();
    let (out, _) = run_with_timeout(
        shoal().args(["info", "/definitely/not/here.torrent"]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1);
    assert!(
        stderr.contains("/definitely/not/here.torrent") && stderr.contains("No such file"),
        "{stderr}"
    );
    let (out, _) = run_with_timeout(
        shoal().args(["info"]).arg(dir.path()),
        Duration::from_secs(10),
    );
    assert!(!out.status.success());
    let (out, _) = run_with_timeout(
        shoal().args(["info", "magnet:?xt=urn:btih:zz"]),
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("magnet"),
        "{stderr}"
    );
}

/// Item 36: a torrent named to run a command reaches the completion hook as plain
/// text, never through a shell (on loopback at 127.0.11.1–2, ports 1811x).
#[test]
fn a_hostile_name_reaches_the_completion_hook_as_text() {
    let dir = tempdir();
    let name = "$(touch pwned1); `touch pwned2` | touch pwned3";
    let src = dir.path().join("src");
    random_file(&src.join(name), 300_000, 36);
    let torrent = dir.path().join("hostile.torrent");
    shoal_create(&src.join(name), "64K", &torrent, &[]);
    let _seed = shoal_seed(
        &torrent,
        &src,
        &dir.path().join("seed-state"),
        "127.0.11.1:18111",
    );
    let args = dir.path().join("args");
    let hook = dir.path().join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" \"$2\" \"$3\" \"$SHOAL_NAME\" > '{}'\n",
            path_str(&args)
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = dir.path().join("out");
    let events = shoal_get_with(
        &torrent,
        &out,
        &dir.path().join("state"),
        "127.0.11.2:18112",
        &["127.0.11.1:18111"],
        &["--on-complete", path_str(&hook)],
    );
    assert_eq!(events_named(&events, "hook_started").len(), 1, "{events:?}");
    assert_eq!(
        events_named(&events, "hook_exited")[0]["code"],
        0,
        "{events:?}"
    );
    let written = std::fs::read_to_string(&args).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    let info = shoal_info(path_str(&torrent));
    assert_eq!(lines[0], info["info_hash"].as_str().unwrap());
    assert_eq!(lines[1], name);
    assert_eq!(lines[2], path_str(&out.join(name)));
    assert_eq!(lines[3], name);
    same_files(&src.join(name), &out.join(name));
    // Nothing ran the name: no file it would have touched, wherever the hook ran.
    for dir in [dir.path(), &out, &std::env::current_dir().unwrap()] {
        for n in 1..=3 {
            assert!(!dir.join(format!("pwned{n}")).exists(), "{dir:?}");
        }
    }
}
