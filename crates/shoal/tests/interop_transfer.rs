//! `shoal get` and `shoal seed` against real clients on loopback, each peer on its own
//! 127.0.0.N: libtorrent seeds and shoal downloads, shoal seeds and libtorrent
//! downloads, shoal to shoal with a multi-file torrent, and a shoal download killed with
//! SIGKILL and restarted that fetches no verified piece again.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn libtorrent_seeds_shoal_downloads() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 5 * 1024 * 1024 + 777, "256K");
    let _seed = lt_seed(&torrent, &src, "127.0.0.11", 17011);
    let out = dir.path().join("out");
    let events = shoal_get(
        &torrent,
        &out,
        &dir.path().join("state"),
        "127.0.0.12:17012",
        &["127.0.0.11:17011"],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    assert!(events.iter().any(|e| e["event"] == "completed"));
    let client = events
        .iter()
        .find(|e| e["event"] == "peer_connected")
        .expect("a peer connected");
    assert_eq!(client["addr"], "127.0.0.11:17011");
}

/// `--peer` takes a host name: `localhost` names the libtorrent seed on 127.0.0.1.
#[test]
fn a_peer_given_by_host_name_is_dialled() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 1024 * 1024 + 5, "256K");
    let _seed = lt_seed(&torrent, &src, "127.0.0.1", 17019);
    let out = dir.path().join("out");
    let events = shoal_get(
        &torrent,
        &out,
        &dir.path().join("state"),
        "127.0.0.17:17017",
        &["localhost:17019"],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    let connected = events_named(&events, "peer_connected");
    assert_eq!(connected[0]["addr"], "127.0.0.1:17019", "{events:?}");
}

/// Every 5 s `--json` lists the connected peers: a libtorrent seed that sends, held to
/// 512 KiB/s by our download limit so the list comes before the end, shows as such.
#[test]
fn the_peer_list_shows_a_libtorrent_seed() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 4 * 1024 * 1024 + 3, "256K");
    let _seed = lt_seed(&torrent, &src, "127.0.0.13", 17013);
    let out = dir.path().join("out");
    let events = shoal_get_with(
        &torrent,
        &out,
        &dir.path().join("state"),
        "127.0.0.14:17014",
        &["127.0.0.13:17013"],
        &["--max-down", "512K"],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    let lists = events_named(&events, "peer_list");
    let list = lists
        .first()
        .unwrap_or_else(|| panic!("no peer_list: {events:?}"));
    let peers = list["peers"].as_array().expect("an array");
    assert_eq!(peers.len(), 1, "{list}");
    let seed = &peers[0];
    assert_eq!(seed["addr"], "127.0.0.13:17013", "{seed}");
    assert!(
        seed["client"].as_str().unwrap().starts_with("LT "),
        "{seed}"
    );
    assert_eq!(seed["transport"], "tcp", "{seed}");
    assert_eq!(seed["incoming"], false, "{seed}");
    assert_eq!(seed["progress"], 1.0, "{seed}");
    assert_eq!(seed["choking_us"], false, "{seed}");
    assert_eq!(seed["interested"], true, "{seed}");
    assert_eq!(
        seed["peer_interested"], false,
        "a seed wants nothing: {seed}"
    );
    assert_eq!(seed["snubbed"], false, "{seed}");
    let rate = seed["download_rate"].as_u64().unwrap();
    assert!(
        rate > 100_000 && rate < 800_000,
        "about the 512 KiB/s limit: {seed}"
    );
    assert!(seed["downloaded"].as_u64().unwrap() > 1024 * 1024, "{seed}");
    assert!(seed["rtt_ms"].as_f64().unwrap() < 100.0, "{seed}");
}

/// libtorrent records file attributes in its torrents (BEP 47): an executable file's
/// mode (`attr: x`) and symbolic links (`attr: l`, `symlink path` from the torrent's
/// root). shoal creates that file executable and the others not, and makes the links,
/// pointing where they did, from the root's folder and from a subfolder.
#[test]
fn file_attributes_of_a_libtorrent_torrent_are_kept() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempdir();
    let src = dir.path().join("src");
    random_file(&src.join("pkg/sub/data.bin"), 300_000, 7);
    let script = src.join("pkg/run.sh");
    std::fs::write(&script, "#!/bin/sh\necho hello\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("sub/data.bin", src.join("pkg/link.bin")).unwrap();
    std::fs::create_dir_all(src.join("pkg/bin")).unwrap();
    std::os::unix::fs::symlink("../run.sh", src.join("pkg/bin/run")).unwrap();
    let torrent = dir.path().join("pkg.torrent");
    python(
        r#"
import libtorrent as lt, sys
fs = lt.file_storage()
lt.add_files(fs, sys.argv[1] + "/pkg", flags=lt.create_torrent.symlinks)
flags = lt.create_torrent.v1_only | lt.create_torrent.symlinks
t = lt.create_torrent(fs, 262144, flags=flags)
lt.set_piece_hashes(t, sys.argv[1])
open(sys.argv[2], "wb").write(lt.bencode(t.generate()))
"#,
        &[path_str(&src), path_str(&torrent)],
    );
    let info = shoal_info(path_str(&torrent));
    let files = info["files"].as_array().unwrap();
    let entry = |path: &str| files.iter().find(|f| f["path"] == path).unwrap().clone();
    assert_eq!(entry("pkg/run.sh")["executable"], true, "{info}");
    assert_eq!(entry("pkg/link.bin")["symlink"], "sub/data.bin", "{info}");
    assert_eq!(entry("pkg/bin/run")["symlink"], "run.sh", "{info}");
    let text = run_ok(shoal().args(["info", path_str(&torrent)]));
    assert!(text.contains("  pkg/run.sh (executable)\n"), "{text}");
    assert!(text.contains("  pkg/link.bin -> sub/data.bin\n"), "{text}");
    let _seed = lt_seed(&torrent, &src, "127.0.0.15", 17015);
    let out = dir.path().join("out");
    shoal_get(
        &torrent,
        &out,
        &dir.path().join("state"),
        "127.0.0.16:17016",
        &["127.0.0.15:17015"],
    );
    same_files(&script, &out.join("pkg/run.sh"));
    let mode = |name: &str| {
        let meta = std::fs::metadata(out.join("pkg").join(name)).unwrap();
        meta.permissions().mode()
    };
    assert_eq!(mode("run.sh") & 0o100, 0o100, "{:o}", mode("run.sh"));
    assert_eq!(
        mode("sub/data.bin") & 0o111,
        0,
        "{:o}",
        mode("sub/data.bin")
    );
    for (link, target, what) in [
        ("pkg/link.bin", "sub/data.bin", "pkg/sub/data.bin"),
        ("pkg/bin/run", "../run.sh", "pkg/run.sh"),
    ] {
        let link = out.join(link);
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new(target));
        same_files(&src.join(what), &link);
    }
    let (output, _) = run_with_timeout(
        shoal().args(["verify", path_str(&torrent), path_str(&out)]),
        Duration::from_secs(30),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// The reverse: `shoal create --attributes` records the executable and the links that
/// point inside the folder (from the torrent's folder, as BEP 47 says), in a hybrid
/// torrent. libtorrent reads them as links to the right files, downloads the torrent
/// from a shoal seed, and makes the script executable and the links links.
#[test]
fn libtorrent_keeps_the_attributes_of_a_shoal_torrent() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempdir();
    let src = dir.path().join("src");
    random_file(&src.join("pkg/lib/data.bin"), 300_000, 8);
    let script = src.join("pkg/run.sh");
    std::fs::write(&script, "#!/bin/sh\necho hello\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(src.join("pkg/bin")).unwrap();
    std::os::unix::fs::symlink("../run.sh", src.join("pkg/bin/run")).unwrap();
    std::os::unix::fs::symlink("lib/data.bin", src.join("pkg/data.bin")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("pkg/passwd")).unwrap();
    let torrent = dir.path().join("pkg.torrent");
    let mut create = shoal();
    create
        .args(["create", "--attributes", "--format", "hybrid", "-o"])
        .args([path_str(&torrent), path_str(&src.join("pkg"))]);
    let (output, _) = run_with_timeout(&mut create, Duration::from_secs(30));
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("passwd: symbolic link out of the folder"),
        "{stderr}"
    );

    let read = python(
        r#"
import libtorrent as lt, sys
fs = lt.torrent_info(sys.argv[1]).files()
for i in range(fs.num_files()):
    flags = fs.file_flags(i)
    if flags & lt.file_storage.flag_pad_file:
        continue
    link = fs.symlink(i) if flags & lt.file_storage.flag_symlink else ''
    x = 'x' if flags & lt.file_storage.flag_executable else '-'
    print(fs.file_path(i), x, link)
"#,
        &[path_str(&torrent)],
    );
    assert_eq!(
        read,
        "pkg/bin/run - pkg/run.sh\npkg/data.bin - pkg/lib/data.bin\n\
         pkg/lib/data.bin - \npkg/run.sh x \n"
    );

    let _seed = shoal_seed(
        &torrent,
        &src,
        &dir.path().join("state"),
        "127.0.0.18:17018",
    );
    let out = dir.path().join("lt-out");
    lt_get(&torrent, &out, "127.0.0.19", 17020, "127.0.0.18", 17018);
    same_files(&script, &out.join("pkg/run.sh"));
    let mode = std::fs::metadata(out.join("pkg/run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o100, 0o100, "{mode:o}");
    for (link, target, what) in [
        ("pkg/bin/run", "../run.sh", "pkg/run.sh"),
        ("pkg/data.bin", "lib/data.bin", "pkg/lib/data.bin"),
    ] {
        let link = out.join(link);
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new(target));
        same_files(&src.join(what), &link);
    }
}

/// A torrent given by its http URL, as aria2 and Transmission take one: `shoal info`
/// and `shoal get` fetch it (from a small HTTP server), and the download completes from
/// a libtorrent seed. A URL that answers 404 is a clear error.
#[test]
fn a_torrent_from_an_http_url() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 1024 * 1024 + 9, "256K");
    let (_server, _requests) = web_seed(dir.path(), "127.0.0.43", 17043, false);
    let url = "http://127.0.0.43:17043/payload.torrent";
    let info = shoal_info(url);
    assert_eq!(
        info["info_hash"],
        shoal_info(path_str(&torrent))["info_hash"]
    );
    let _seed = lt_seed(&torrent, &src, "127.0.0.44", 17044);
    let out = dir.path().join("out");
    shoal_get(
        Path::new(url),
        &out,
        &dir.path().join("state"),
        "127.0.0.45:17045",
        &["127.0.0.44:17044"],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    let (output, _) = run_with_timeout(
        shoal().args(["get", "http://127.0.0.43:17043/missing.torrent"]),
        Duration::from_secs(30),
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot download the torrent"), "{stderr}");
}

/// `--metadata-only`: a magnet link's metadata from a libtorrent seed goes to the
/// output folder as INFOHASH.torrent, and nothing of the content is downloaded.
#[test]
fn metadata_only_saves_a_magnets_torrent() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 1024 * 1024 + 5, "256K");
    let hash = shoal_info(path_str(&torrent))["info_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let _seed = lt_seed(&torrent, &src, "127.0.0.46", 17046);
    let out = dir.path().join("out");
    let magnet = format!("magnet:?xt=urn:btih:{hash}&x.pe=127.0.0.46:17046");
    let mut get = shoal();
    get.args([
        "get",
        &magnet,
        "-o",
        path_str(&out),
        "--metadata-only",
        "--json",
    ])
    .args(["--no-dht", "--listen", "127.0.0.47:17047", "--state-dir"])
    .arg(dir.path().join("state"));
    let (output, _) = run_with_timeout(&mut get, Duration::from_secs(60));
    let events = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{events}");
    assert!(events.contains("\"event\":\"metadata_saved\""), "{events}");
    let saved = out.join(format!("{hash}.torrent"));
    assert_eq!(shoal_info(path_str(&saved))["info_hash"], hash.as_str());
    assert!(!out.join("payload.bin").exists());
    // A .torrent has its metadata already.
    let (output, _) = run_with_timeout(
        shoal().args(["get", path_str(&torrent), "--metadata-only"]),
        Duration::from_secs(30),
    );
    assert_eq!(output.status.code(), Some(1));
    // Waiting on a DHT that never answers, --stop-timeout ends the wait for the metadata.
    let mut lonely = shoal();
    lonely
        .args([
            "get",
            &format!("magnet:?xt=urn:btih:{hash}"),
            "--metadata-only",
        ])
        .args([
            "--json",
            "--dht-bootstrap",
            "127.0.0.48:17048",
            "--stop-timeout",
            "1",
            "-o",
            path_str(&out),
        ])
        .args(["--listen", "127.0.0.47:17047", "--state-dir"])
        .arg(dir.path().join("state2"));
    let (output, took) = run_with_timeout(&mut lonely, Duration::from_secs(30));
    let events = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{events}");
    assert!(events.contains("\"event\":\"stalled\""), "{events}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn shoal_seeds_libtorrent_downloads() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 3 * 1024 * 1024 + 5, "64K");
    let _seed = shoal_seed(
        &torrent,
        &src,
        &dir.path().join("state"),
        "127.0.0.21:17021",
    );
    let out = dir.path().join("lt-out");
    lt_get(&torrent, &out, "127.0.0.22", 17022, "127.0.0.21", 17021);
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
}

#[test]
fn shoal_to_shoal_multi_file_with_empty_file() {
    let dir = tempdir();
    let root = dir.path().join("src/multi");
    random_file(&root.join("one.bin"), 1024 * 1024 + 1, 1);
    std::fs::write(root.join("empty"), b"").unwrap();
    random_file(&root.join("sub/three.bin"), 5 * 1024 * 1024 - 7, 3);
    let torrent = dir.path().join("multi.torrent");
    shoal_create(&root, "256K", &torrent, &[]);
    let _seed = shoal_seed(
        &torrent,
        &dir.path().join("src"),
        &dir.path().join("s1"),
        "127.0.0.31:17031",
    );
    let out = dir.path().join("out");
    shoal_get(
        &torrent,
        &out,
        &dir.path().join("s2"),
        "127.0.0.32:17032",
        &["127.0.0.31:17031"],
    );
    for name in ["one.bin", "empty", "sub/three.bin"] {
        same_files(&root.join(name), &out.join("multi").join(name));
    }
}

#[test]
fn killed_download_resumes_without_refetching_verified_pieces() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 24 * 1024 * 1024, "256K");
    let seed_state = dir.path().join("seed-state");
    // A slow seed so the download is surely killed midway.
    let mut cmd = shoal();
    cmd.args([
        "seed",
        path_str(&torrent),
        path_str(&src),
        "--json",
        "--listen",
        "127.0.0.41:17041",
    ])
    .args(["--state-dir", path_str(&seed_state), "--max-up", "4M"]);
    let _seed = start_and_wait(cmd, "\"started\"", Duration::from_secs(30));
    let out = dir.path().join("out");
    let state = dir.path().join("state");
    let mut get = shoal();
    get.args([
        "get",
        path_str(&torrent),
        "-o",
        path_str(&out),
        "--no-seed",
        "--json",
        "--listen",
        "127.0.0.42:17042",
    ])
    .args([
        "--state-dir",
        path_str(&state),
        "--peer",
        "127.0.0.41:17041",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut child = get.spawn().expect("spawn");
    // Wait until about a third is verified, then SIGKILL.
    let stdout = child.stdout.take().unwrap();
    let mut guard = Guard(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut verified_before = 0;
    {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let event: serde_json::Value = serde_json::from_str(&line).unwrap();
            if event["event"] == "piece" {
                verified_before = event["have"].as_u64().unwrap();
                if verified_before >= 30 {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "no progress");
        }
    }
    guard.0.kill().unwrap();
    guard.0.wait().unwrap();
    assert!(verified_before >= 30, "killed too early");

    let events = shoal_get(
        &torrent,
        &out,
        &state,
        "127.0.0.42:17042",
        &["127.0.0.41:17041"],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    let started = events.iter().find(|e| e["event"] == "started").unwrap();
    let had = started["have"].as_u64().unwrap();
    assert!(
        had >= verified_before,
        "restart found {had} pieces, {verified_before} were verified"
    );
    let completed = events.iter().find(|e| e["event"] == "completed").unwrap();
    let downloaded = completed["downloaded"].as_u64().unwrap();
    let missing = (96 - had) * 256 * 1024;
    assert!(
        downloaded <= missing,
        "downloaded {downloaded} bytes, only {missing} were missing"
    );
}

#[test]
fn aria2_seeds_shoal_downloads() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 4 * 1024 * 1024 + 99, "128K");
    let _seed = aria2_seed(&src, &torrent, "127.0.0.61", 17061, &[]);
    let out = dir.path().join("out");
    let events = shoal_get(
        &torrent,
        &out,
        &dir.path().join("state"),
        "127.0.0.62:17062",
        &["127.0.0.61:17061"],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "peer_connected"
                && e["client"].as_str().unwrap().starts_with("A2"))
    );
}

#[test]
fn shoal_seeds_aria2_downloads() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 3 * 1024 * 1024 + 1, "64K");
    let out = dir.path().join("aria-out");
    // aria2 has no way to be given a peer without a tracker, so it listens and the shoal
    // seed dials it.
    let mut cmd = aria2(&out, &torrent, "127.0.0.71", 17071, &["--seed-time=0"]);
    let leecher = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn aria2c");
    let mut leecher = Guard(leecher);
    wait_listening("127.0.0.71:17071", Duration::from_secs(30));
    let mut seed = shoal();
    seed.args([
        "seed",
        path_str(&torrent),
        path_str(&src),
        "--listen",
        "127.0.0.72:17072",
        "--peer",
        "127.0.0.71:17071",
    ])
    .args(["--state-dir", path_str(&dir.path().join("state"))]);
    let _seed = Guard(
        seed.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let status = leecher.wait_exit(Duration::from_secs(60), "aria2 did not finish");
    assert!(status.success(), "aria2c exited with {status}");
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
}

/// A peer that claims every piece and answers each request with garbage: the pieces it
/// touched fail, are fetched again, it is banned, the honest seed is not, and the file
/// is correct.
#[test]
fn corrupt_peer_is_banned_and_download_is_correct() {
    use std::io::{Read, Write};
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 2 * 1024 * 1024, "64K");
    let info = shoal_info(path_str(&torrent));
    let info_hash: Vec<u8> = (0..20)
        .map(|i| {
            u8::from_str_radix(&info["info_hash"].as_str().unwrap()[i * 2..i * 2 + 2], 16).unwrap()
        })
        .collect();
    let pieces = info["piece_count"].as_u64().unwrap() as usize;

    let liar = std::net::TcpListener::bind("127.0.0.81:17081").unwrap();
    let liar_thread = std::thread::spawn(move || {
        // Like any client without encryption, the liar hangs up on a stream that does not
        // start with a BitTorrent handshake (shoal's encrypted one), and serves the next.
        let mut s = loop {
            let Ok((mut s, _)) = liar.accept() else {
                return;
            };
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut handshake = [0u8; 68];
            if s.read_exact(&mut handshake).is_err() {
                return;
            }
            if handshake[..20] == *b"\x13BitTorrent protocol" {
                break s;
            }
        };
        let mut reply = vec![19u8];
        reply.extend_from_slice(b"BitTorrent protocol");
        reply.extend_from_slice(&[0; 8]);
        reply.extend_from_slice(&info_hash);
        reply.extend_from_slice(b"-XX0001-liarliarliar");
        let mut bitfield = vec![0xffu8; pieces.div_ceil(8)];
        if !pieces.is_multiple_of(8) {
            *bitfield.last_mut().unwrap() = 0xff << (8 - pieces % 8);
        }
        reply.extend_from_slice(&(bitfield.len() as u32 + 1).to_be_bytes());
        reply.push(5);
        reply.extend_from_slice(&bitfield);
        reply.extend_from_slice(&[0, 0, 0, 1, 1]); // unchoke
        if s.write_all(&reply).is_err() {
            return;
        }
        loop {
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).is_err() {
                return;
            }
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            if s.read_exact(&mut body).is_err() {
                return;
            }
            if body.first() == Some(&6) && body.len() == 13 {
                let length = u32::from_be_bytes(body[9..13].try_into().unwrap()) as usize;
                let mut msg = (9 + length as u32).to_be_bytes().to_vec();
                msg.push(7);
                msg.extend_from_slice(&body[1..9]);
                msg.extend(std::iter::repeat_n(0xAB, length));
                if s.write_all(&msg).is_err() {
                    return;
                }
            }
        }
    });
    // The honest seed is slowed down so that the liar surely gets requests (on a busy
    // machine an unlimited seed on loopback can deliver everything first).
    let mut seed = shoal();
    seed.args(["seed", path_str(&torrent), path_str(&src), "--json"])
        .args(["--listen", "127.0.0.82:17082", "--max-up", "1M"])
        .args(["--state-dir", path_str(&dir.path().join("s1"))]);
    let _seed = start_and_wait(seed, "\"started\"", Duration::from_secs(30));
    let out = dir.path().join("out");
    let events = shoal_get(
        &torrent,
        &out,
        &dir.path().join("s2"),
        "127.0.0.83:17083",
        &["127.0.0.81:17081", "127.0.0.82:17082"],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    let banned: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "peer_banned")
        .map(|e| e["addr"].as_str().unwrap())
        .collect();
    assert_eq!(banned, ["127.0.0.81:17081"], "only the liar is banned");
    let failed = events
        .iter()
        .filter(|e| e["event"] == "piece_failed")
        .count() as u64;
    assert!(failed > 0);
    // Every failed piece's bytes count as wasted (so may endgame duplicates).
    let completed = events
        .iter()
        .find(|e| e["event"] == "completed")
        .expect("a completed event");
    let wasted = completed["wasted"].as_u64().unwrap();
    assert!(
        wasted >= failed * 65536,
        "{wasted} wasted, {failed} pieces failed"
    );
    assert!(wasted < completed["downloaded"].as_u64().unwrap());
    let _ = liar_thread.join();
}

/// BEP 6 over the wire: a shoal downloader that holds half the pieces grants a peer with
/// the fast extension the pieces it has of the canonical allowed-fast set for the peer's
/// address, serves them while the peer is choked (it never even declares interest), and
/// rejects requests for other pieces.
#[test]
fn allowed_fast_pieces_are_served_to_a_choked_peer() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 2 * 1024 * 1024, "64K");
    let info_hash = info_hash_of(&torrent);
    let pieces = 32;
    // Half the data is already there; the rest is zeros (a seed grants nothing).
    let data = std::fs::read(src.join("payload.bin")).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let half = pieces / 2;
    let mut partial = data[..half as usize * 65536].to_vec();
    partial.resize(data.len(), 0);
    std::fs::write(out.join("payload.bin"), &partial).unwrap();
    let mut leecher = shoal();
    leecher
        .args(["get", path_str(&torrent), "-o", path_str(&out), "--json"])
        .args(["--listen", "127.0.0.85:17085", "--no-tracker"])
        .args(["--state-dir", path_str(&dir.path().join("s"))]);
    let _leecher = start_and_wait(leecher, "\"started\"", Duration::from_secs(30));

    let mut peer = WirePeer::connect("127.0.0.85:17085", info_hash, &[]);
    assert_eq!(
        peer.reply[27] & 0x04,
        0x04,
        "shoal supports the fast extension"
    );
    // The set is computed for the address shoal sees us at.
    let want: Vec<u32> =
        shoal_wire::allowed_fast_set(&shoal_core::InfoHash(info_hash), peer.local_ip(), pieces, 8)
            .into_iter()
            .filter(|&p| p < half)
            .collect();
    assert!(!want.is_empty(), "no piece of the set is among those held");
    let mut granted = Vec::new();
    while granted.len() < want.len() {
        let body = peer.next();
        if body.first() == Some(&17) {
            granted.push(piece_of(&body));
        }
    }
    assert_eq!(granted, want);
    let other = (0..pieces).find(|p| !want.contains(p)).unwrap();
    // Never unchoked: we never even declare interest.
    let block = peer.expect_reject_then_serve(other, want[0], 1);
    let at = want[0] as usize * 65536;
    assert_eq!(block, &data[at..at + 16384]);
}

/// BEP 16 over the wire: a super-seed announces no pieces, then reveals at most two to a
/// peer it unchokes, serves those and rejects the others; and a libtorrent leecher
/// downloads the whole torrent from it.
#[test]
fn super_seed_reveals_pieces_one_by_one() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 2 * 1024 * 1024, "64K");
    let mut seed = shoal();
    seed.args(["seed", path_str(&torrent), path_str(&src), "--json"])
        .args(["--super-seed", "--listen", "127.0.0.86:17086"])
        .args(["--no-tracker", "--no-dht"])
        .args(["--state-dir", path_str(&dir.path().join("s"))]);
    let (_seed, lines) = start_and_watch(seed, "\"started\"", Duration::from_secs(30));
    let _transcript = Transcript::new("seed", lines);

    // Our have-none and interest right after the handshake.
    let first = [0, 0, 0, 1, 15, 0, 0, 0, 1, 2];
    let mut peer = WirePeer::connect("127.0.0.86:17086", info_hash_of(&torrent), &first);
    // Have-none (or an empty bitfield), an unchoke, then two pieces revealed.
    let mut revealed = Vec::new();
    while revealed.len() < 2 {
        let body = peer.next();
        match body.first() {
            Some(14) => panic!("a super-seed sent have-all"),
            Some(5) => assert!(body[1..].iter().all(|&b| b == 0), "bitfield with pieces"),
            Some(4) => revealed.push(piece_of(&body)),
            _ => {}
        }
    }
    let hidden = (0..32u32).find(|p| !revealed.contains(p)).unwrap();
    // No third piece is revealed before one of these is fetched.
    peer.expect_reject_then_serve(hidden, revealed[0], 4);
    drop(peer);

    let out = dir.path().join("lt-out");
    lt_get(&torrent, &out, "127.0.0.87", 17087, "127.0.0.86", 17086);
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
}

/// BEP 6 suggest: a leecher fetches the pieces a seed suggests before any other.
#[test]
fn suggested_pieces_are_requested_first() {
    let dir = tempdir();
    let (_src, torrent) = make_single(dir.path(), 2 * 1024 * 1024, "64K");
    let mut leecher = shoal();
    leecher
        .args([
            "get",
            path_str(&torrent),
            "--json",
            "--no-tracker",
            "--no-dht",
        ])
        .args(["-o", path_str(&dir.path().join("out"))])
        .args(["--listen", "127.0.0.88:17088"])
        .args(["--state-dir", path_str(&dir.path().join("s"))]);
    let _leecher = start_and_wait(leecher, "\"started\"", Duration::from_secs(30));
    // A seed (have all) that suggests two pieces, then unchokes. With 32 equally rare
    // pieces, rarest-first alone would start elsewhere.
    let (first, second) = (23u32, 7u32);
    let mut hello = vec![0, 0, 0, 1, 14];
    for piece in [first, second] {
        hello.extend_from_slice(&[0, 0, 0, 5, 13]);
        hello.extend_from_slice(&piece.to_be_bytes());
    }
    hello.extend_from_slice(&[0, 0, 0, 1, 1]);
    let mut peer = WirePeer::connect("127.0.0.88:17088", info_hash_of(&torrent), &hello);
    let mut requested = Vec::new();
    while requested.len() < 8 {
        let body = peer.next();
        if body.first() == Some(&6) {
            requested.push(piece_of(&body));
        }
    }
    // 64 KiB pieces are four blocks each: both suggested pieces, in order, come first.
    assert_eq!(requested, [[first; 4], [second; 4]].concat());
}

/// An initial seed that does not super-seed still announces every piece, and suggests
/// (BEP 6) the pieces it has handed out least: two peers are steered to different ones.
#[test]
fn a_plain_seed_suggests_different_pieces_to_each_peer() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 2 * 1024 * 1024, "64K");
    let mut seed = shoal();
    seed.args(["seed", path_str(&torrent), path_str(&src), "--json"])
        .args(["--listen", "127.0.0.89:17089", "--no-tracker", "--no-dht"])
        .args(["--state-dir", path_str(&dir.path().join("s"))]);
    let _seed = start_and_wait(seed, "\"started\"", Duration::from_secs(30));
    let suggested_to_a_new_peer = || {
        // Our have-none and interest right after the handshake.
        let first = [0, 0, 0, 1, 15, 0, 0, 0, 1, 2];
        let mut peer = WirePeer::connect("127.0.0.89:17089", info_hash_of(&torrent), &first);
        let (mut have_all, mut suggested) = (false, Vec::new());
        while suggested.len() < 3 {
            let body = peer.next();
            match body.first() {
                Some(14) => have_all = true,
                Some(13) => suggested.push(piece_of(&body)),
                _ => {}
            }
        }
        assert!(have_all, "a plain seed announces every piece");
        (peer, suggested)
    };
    let (_first_peer, first) = suggested_to_a_new_peer();
    let (_second_peer, second) = suggested_to_a_new_peer();
    assert!(
        first.iter().chain(&second).all(|&p| p < 32),
        "{first:?} {second:?}"
    );
    assert!(
        first.iter().all(|p| !second.contains(p)),
        "both peers were steered to the same pieces: {first:?} {second:?}"
    );
}
