//! Web seeds (BEP 19): `shoal get` fetching from an HTTP server named in the torrent's
//! `url-list` (made with `shoal create --web-seed`), alone or beside a libtorrent seed,
//! and dropping a web seed whose data fails the hash check.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// `shoal create PATH --web-seed URL --piece-size PIECE -o OUT`.
fn create_with_web_seed(path: &Path, url: &str, piece: &str, out: &Path) {
    shoal_create(path, piece, out, &["--web-seed", url]);
}

/// `shoal get --no-seed --json` with no DHT and no tracker, from `peers` (and the web
/// seeds) only.
fn get_alone(torrent: &Path, dir: &Path, listen: &str, peers: &[&str]) -> Vec<serde_json::Value> {
    shoal_get_with(
        torrent,
        &dir.join("out"),
        &dir.join("state"),
        listen,
        peers,
        &["--no-dht", "--no-tracker"],
    )
}

#[test]
fn a_folder_downloads_from_a_web_seed_alone() {
    let dir = tempdir();
    let root = dir.path().join("src/web album");
    // Names that must be percent-encoded in the URL; sizes that cross pieces.
    let files = [
        ("a.bin", 700 * 1024 + 3),
        ("b c.bin", 300 * 1024),
        ("sub/ü&x.bin", 1024 * 1024 + 17),
    ];
    for (i, (name, size)) in files.iter().enumerate() {
        random_file(&root.join(name), *size, 60 + i as u64);
    }
    let torrent = dir.path().join("album.torrent");
    create_with_web_seed(&root, "http://127.0.4.31:17431/", "256K", &torrent);
    let info = shoal_info(path_str(&torrent));
    assert_eq!(info["url_list"][0], "http://127.0.4.31:17431/");
    let (_server, requests) = web_seed(&dir.path().join("src"), "127.0.4.31", 17431, false);

    let events = get_alone(&torrent, dir.path(), "127.0.4.32:17432", &[]);
    for (name, _) in files {
        same_files(
            &root.join(name),
            &dir.path().join("out/web album").join(name),
        );
    }
    assert!(events.iter().any(|e| e["event"] == "completed"));
    assert!(!events.iter().any(|e| e["event"] == "peer_connected"));
    // The server prints a request after answering it: wait a little for the line.
    let wanted = "GET /web%20album/sub/%C3%BC%26x.bin ";
    let mut seen = Vec::new();
    while let Ok(line) = requests.recv_timeout(std::time::Duration::from_secs(5)) {
        if line.starts_with(wanted) {
            return;
        }
        seen.push(line);
    }
    panic!("no request for {wanted:?}: {seen:?}");
}

#[test]
fn many_small_files_go_over_few_kept_alive_connections() {
    let dir = tempdir();
    let root = dir.path().join("src/small");
    for i in 0..40 {
        random_file(
            &root.join(format!("f{i:02}.bin")),
            5000 + i * 37,
            80 + i as u64,
        );
    }
    let torrent = dir.path().join("small.torrent");
    create_with_web_seed(&root, "http://127.0.4.46:17446/", "16K", &torrent);
    let (_server, requests) = web_seed(&dir.path().join("src"), "127.0.4.46", 17446, false);
    get_alone(&torrent, dir.path(), "127.0.4.47:17447", &[]);
    for i in 0..40 {
        let name = format!("f{i:02}.bin");
        same_files(&root.join(&name), &dir.path().join("out/small").join(&name));
    }
    // Every file was asked for; the server prints each answer just after sending it.
    let mut lines = Vec::new();
    while let Ok(line) = requests.recv_timeout(std::time::Duration::from_secs(2)) {
        lines.push(line);
    }
    assert!(lines.len() >= 40, "{lines:?}");
    let ports: std::collections::BTreeSet<&str> =
        lines.iter().filter_map(|l| l.rsplit(' ').next()).collect();
    assert!(
        ports.len() <= 4,
        "{} requests over {} connections",
        lines.len(),
        ports.len()
    );
}

#[test]
fn a_redirect_is_followed_once_per_file_then_asked_directly() {
    let dir = tempdir();
    let (src, _) = make_single(dir.path(), 8 * 1024 * 1024 + 5, "256K");
    let torrent = dir.path().join("web.torrent");
    create_with_web_seed(
        &src.join("payload.bin"),
        "http://127.0.4.51:17451/",
        "256K",
        &torrent,
    );
    let (_front, redirects) = web_seed_redirecting("127.0.4.51", 17451, "http://127.0.4.52:17452");
    let (_data, requests) = web_seed(&src, "127.0.4.52", 17452, false);
    get_alone(&torrent, dir.path(), "127.0.4.53:17453", &[]);
    same_files(
        &src.join("payload.bin"),
        &dir.path().join("out/payload.bin"),
    );
    let lines = |rx: &std::sync::mpsc::Receiver<String>| {
        let mut lines = Vec::new();
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
            lines.push(line);
        }
        lines
    };
    let (redirects, requests) = (lines(&redirects), lines(&requests));
    // Eight 1 MiB fetches at least; each worker is redirected once and then asks the
    // data server directly, over its kept connection.
    assert!(requests.len() >= 8, "{requests:?}");
    assert!(
        (1..=2).contains(&redirects.len()),
        "{} redirects for {} requests",
        redirects.len(),
        requests.len()
    );
}

#[test]
fn a_single_file_web_seed_url_may_name_the_file() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 2 * 1024 * 1024 + 5, "64K");
    let torrent_web = dir.path().join("web.torrent");
    create_with_web_seed(
        &src.join("payload.bin"),
        "http://127.0.4.33:17433/payload.bin",
        "64K",
        &torrent_web,
    );
    assert_eq!(
        shoal_info(path_str(&torrent))["info_hash"],
        shoal_info(path_str(&torrent_web))["info_hash"],
        "the web seed is outside the info dictionary"
    );
    let (_server, _) = web_seed(&src, "127.0.4.33", 17433, false);
    get_alone(&torrent_web, dir.path(), "127.0.4.34:17434", &[]);
    same_files(
        &src.join("payload.bin"),
        &dir.path().join("out/payload.bin"),
    );
}

#[test]
fn a_lying_web_seed_is_dropped_and_a_libtorrent_seed_finishes() {
    let dir = tempdir();
    let (src, _) = make_single(dir.path(), 3 * 1024 * 1024 + 9, "256K");
    let torrent = dir.path().join("web.torrent");
    create_with_web_seed(
        &src.join("payload.bin"),
        "http://127.0.4.35:17435/",
        "256K",
        &torrent,
    );
    let (_server, _) = web_seed(&src, "127.0.4.35", 17435, true);
    // First the lying web seed alone (the peer is not up yet, so its whole pieces are
    // its own and the first that fails names it); the libtorrent seed starts once it
    // is banned, and the download is dialled to it again.
    let mut cmd = shoal();
    cmd.args([
        "get",
        path_str(&torrent),
        "-o",
        path_str(&dir.path().join("out")),
        "--no-seed",
        "--json",
        "--no-dht",
        "--no-tracker",
        "--listen",
        "127.0.4.37:17437",
        "--peer",
        "127.0.4.36:17436",
        "--state-dir",
        path_str(&dir.path().join("state")),
    ]);
    let (mut get, lines) = start_and_watch(cmd, "web_seed_banned", Duration::from_secs(30));
    let _seed = lt_seed(&torrent, &src, "127.0.4.36", 17436);
    let status = get.wait_exit(Duration::from_secs(60), "the download did not finish");
    assert!(status.success(), "{status}");
    same_files(
        &src.join("payload.bin"),
        &dir.path().join("out/payload.bin"),
    );
    let events: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    assert!(
        events_named(&events, "web_seed_banned").is_empty(),
        "banned once"
    );
    assert!(!events_named(&events, "completed").is_empty(), "{events:?}");
}

#[test]
fn an_unreachable_web_seed_backs_off_while_a_peer_serves() {
    let dir = tempdir();
    let (src, _) = make_single(dir.path(), 2 * 1024 * 1024 + 1, "256K");
    let torrent = dir.path().join("web.torrent");
    // Nothing listens there.
    create_with_web_seed(
        &src.join("payload.bin"),
        "http://127.0.4.38:17438/",
        "256K",
        &torrent,
    );
    let _seed = lt_seed(&torrent, &src, "127.0.4.39", 17439);
    let events = get_alone(
        &torrent,
        dir.path(),
        "127.0.4.40:17440",
        &["127.0.4.39:17439"],
    );
    same_files(
        &src.join("payload.bin"),
        &dir.path().join("out/payload.bin"),
    );
    let errors = events_named(&events, "web_seed_error");
    assert!(!errors.is_empty(), "{events:?}");
    assert_eq!(errors[0]["retry_secs"], 10, "{}", errors[0]);
    assert!(errors.len() <= 2, "retried without waiting: {errors:?}");
}

#[test]
fn a_magnets_ws_web_seed_is_used_once_a_peer_gave_the_metadata() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 8 * 1024 * 1024 + 3, "256K");
    let (_server, requests) = web_seed(&src, "127.0.4.41", 17441, false);
    // A slow peer, so that the web seed is asked before the peer has sent everything.
    let _seed = shoal_seed_with(
        &torrent,
        &src,
        &dir.path().join("s1"),
        "127.0.4.42:17442",
        &["--max-up", "1M"],
    );
    let hash = shoal_info(path_str(&torrent))["info_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let magnet = format!(
        "magnet:?xt=urn:btih:{hash}&x.pe=127.0.4.42:17442&ws=http%3A%2F%2F127.0.4.41%3A17441%2F"
    );
    let events = json_events(shoal().args([
        "get",
        &magnet,
        "-o",
        path_str(&dir.path().join("out")),
        "--no-seed",
        "--json",
        "--no-dht",
        "--listen",
        "127.0.4.43:17443",
        "--state-dir",
        path_str(&dir.path().join("s2")),
    ]));
    same_files(
        &src.join("payload.bin"),
        &dir.path().join("out/payload.bin"),
    );
    assert!(events.iter().any(|e| e["event"] == "metadata"));
    let first = requests.recv_timeout(std::time::Duration::from_secs(5));
    assert!(
        first
            .as_deref()
            .is_ok_and(|r| r.starts_with("GET /payload.bin ")),
        "the web seed was not asked: {first:?}"
    );
}

#[test]
fn aria2_downloads_from_the_web_seed_shoal_create_wrote() {
    let dir = tempdir();
    let root = dir.path().join("src/set");
    random_file(&root.join("one.bin"), 600 * 1024 + 1, 71);
    random_file(&root.join("two words.bin"), 900 * 1024, 72);
    let torrent = dir.path().join("set.torrent");
    create_with_web_seed(&root, "http://127.0.4.44:17444/", "64K", &torrent);
    let (_server, _) = web_seed(&dir.path().join("src"), "127.0.4.44", 17444, false);
    let out = dir.path().join("aria2-out");
    let (output, _) = run_with_timeout(
        &mut aria2(&out, &torrent, "127.0.4.45", 17445, &["--seed-time=0"]),
        std::time::Duration::from_secs(60),
    );
    assert!(output.status.success(), "{output:?}");
    for name in ["one.bin", "two words.bin"] {
        same_files(&root.join(name), &out.join("set").join(name));
    }
}
