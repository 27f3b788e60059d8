//! `shoal index` and `shoal search` end to end on loopback (127.0.6.40–59, ports
//! 19640–19659, searchers on 127.0.7.1–20): an indexer publishes a few torrents to a DHT of `shoal dht` nodes, a
//! searcher finds them by words, prefixes and both, and libtorrent reads the index's root
//! as an ordinary BEP 44 item; and an index held by libtorrent nodes alone is searched.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const BOOT: &str = "127.0.6.40:19640";

/// After [`LT_DHT_NODE`]: fetches the mutable item of public key argv[4] under the salt
/// given in hex (argv[5]) and prints its version (libtorrent reports an item only once
/// its signature checks).
const LT_GET_ROOT: &str = r#"
pk, salt = bytes.fromhex(sys.argv[4]), bytes.fromhex(sys.argv[5])
end = time.time() + 3
while time.time() < end:
    if any(isinstance(a, lt.dht_bootstrap_alert) for a in s.pop_alerts()):
        break
    time.sleep(0.05)
s.dht_get_mutable_item(pk, salt)
end = time.time() + 20
while time.time() < end:
    for a in s.pop_alerts():
        if isinstance(a, lt.dht_mutable_item_alert) and a.seq > 0:
            print('ROOT', a.seq, flush=True)
            sys.exit(0)
    time.sleep(0.05)
print('TIMEOUT', flush=True)
sys.exit(1)
"#;

fn torrent(dir: &Path, name: &str, seed: u64) -> std::path::PathBuf {
    let src = dir.join("src").join(name);
    random_file(&src, 50_000 + seed as usize, seed);
    let out = dir.join(format!("{name}.torrent"));
    run_ok(shoal().args(["create", path_str(&src), "-o", path_str(&out)]));
    out
}

/// The DHT client flags, and the test's own state folder (so the local search index is
/// the test's, shared by its indexer and searchers).
fn client(args: &mut Command, ip: &str, state: &Path) {
    args.args(["--bootstrap", BOOT, "--listen", &format!("{ip}:0")])
        .args(["--timeout", "30", "--json", "--state", path_str(state)])
        .env(
            "XDG_DATA_HOME",
            state.parent().expect("in the test's folder"),
        );
}

fn sources(results: &[serde_json::Value]) -> Vec<&str> {
    results
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect()
}

/// Searches from a new address each time (127.0.7.1, .2, …): in a two-node DHT every get
/// lands on the same two nodes, whose per-IP rate limit (5 packets/s, burst 25) would
/// otherwise start dropping one searcher's queries after a few searches.
fn search(words: &[&str], indexer: &str, dir: &Path) -> (Option<i32>, Vec<serde_json::Value>) {
    static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
    let ip = format!(
        "127.0.7.{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut cmd = shoal();
    cmd.arg("search").args(words).args(["--indexer", indexer]);
    client(&mut cmd, &ip, &dir.join(format!("searcher-{ip}.state")));
    let (out, _) = run_with_timeout(&mut cmd, Duration::from_secs(60));
    let results = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    (out.status.code(), results)
}

fn names(results: &[serde_json::Value]) -> Vec<String> {
    let mut names: Vec<String> = results
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_index_published_to_the_dht_is_searched_by_words_and_prefixes() {
    let dir = tempdir();
    // Two DHT nodes, so that every tree node has two homes.
    let mut guards = Vec::new();
    for (i, addr) in [BOOT, "127.0.6.41:19641"].iter().enumerate() {
        let mut node = shoal();
        node.args(["dht", "--listen", addr, "--interval", "1", "--json"])
            .args(["--state", path_str(&dir.path().join(format!("n{i}.state")))]);
        if i > 0 {
            node.args(["--bootstrap", BOOT]);
        }
        guards.push(start_and_watch(node, "dht_stats", Duration::from_secs(10)).0);
    }
    let torrents = [
        torrent(dir.path(), "ubuntu-24.04-desktop-amd64.iso", 1),
        torrent(dir.path(), "ubuntu-24.04-live-server-amd64.iso", 2),
        torrent(dir.path(), "debian-12.5.0-amd64-netinst.iso", 3),
        torrent(dir.path(), "Big Buck Bunny 1080p.mkv", 4),
    ];
    let key = dir.path().join("indexer.key");
    let public = run_ok(shoal().args(["dht", "keygen", path_str(&key)]));
    let public = public.trim();

    let mut index = shoal();
    index.arg("index");
    for t in &torrents {
        index.arg(t);
    }
    index.args(["--key-file", path_str(&key)]);
    client(&mut index, "127.0.6.42", &dir.path().join("indexer.state"));
    let out = run_ok(&mut index);
    let published: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(published["indexer"], public, "{out}");
    assert_eq!(published["unstored"], 0, "{out}");
    assert!(published["copies"].as_u64().unwrap() >= published["nodes"].as_u64().unwrap());

    let (code, results) = search(&["ubuntu"], public, dir.path());
    assert_eq!(code, Some(0));
    assert_eq!(
        names(&results),
        [
            "ubuntu-24.04-desktop-amd64.iso",
            "ubuntu-24.04-live-server-amd64.iso"
        ]
    );
    let magnet = results[0]["magnet"].as_str().unwrap();
    assert!(magnet.starts_with("magnet:?xt=urn:btih:"), "{magnet}");
    let (_, results) = search(&["amd64", "ser*"], public, dir.path());
    assert_eq!(names(&results), ["ubuntu-24.04-live-server-amd64.iso"]);
    // Query words are split as indexed text is: `24.04` is `24` and `04`.
    let (_, results) = search(&["Ubuntu-24.04", "desk*"], public, dir.path());
    assert_eq!(names(&results), ["ubuntu-24.04-desktop-amd64.iso"]);
    let (_, results) = search(&["BUN*"], public, dir.path());
    assert_eq!(names(&results), ["Big Buck Bunny 1080p.mkv"]);
    // Related torrents: the desktop image's relatives are the server image (5 of 8 words
    // in common), not itself, not Debian (2 of 9) or the film.
    let like = path_str(&torrents[0]).to_owned();
    let (code, results) = search(&["--like", &like], public, dir.path());
    assert_eq!(code, Some(0));
    assert_eq!(names(&results), ["ubuntu-24.04-live-server-amd64.iso"]);
    assert_eq!(results[0]["similarity"], 0.625);
    // From a name: both Ubuntu images, the closer first.
    let (_, results) = search(&["--like", "Ubuntu 24.04 server"], public, dir.path());
    let order: Vec<&str> = results
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "ubuntu-24.04-live-server-amd64.iso",
            "ubuntu-24.04-desktop-amd64.iso"
        ]
    );
    let (code, results) = search(&["windows"], public, dir.path());
    assert_eq!((code, results.len()), (Some(3), 0));

    // The local index now holds what the indexer indexed and the searches found: it
    // answers without the DHT, and forgives a letter wrong, online or not.
    let (code, results) = search(&["ubuntu", "--offline"], public, dir.path());
    assert_eq!(code, Some(0));
    assert_eq!(names(&results).len(), 2);
    assert_eq!(sources(&results), ["cache", "cache"]);
    let (_, results) = search(&["debain", "--offline"], public, dir.path());
    assert_eq!(names(&results), ["debian-12.5.0-amd64-netinst.iso"]);
    let (code, results) = search(&["ubunto", "desktop"], public, dir.path());
    assert_eq!(
        code,
        Some(0),
        "the tree has no `ubunto`, the local index a near word"
    );
    assert_eq!(names(&results), ["ubuntu-24.04-desktop-amd64.iso"]);
    assert_eq!(sources(&results), ["cache"]);
    // Online, the DHT's answer comes first and is what is marked so.
    let (_, results) = search(&["ubuntu", "server"], public, dir.path());
    assert_eq!(sources(&results), ["dht"]);
    // --no-cache: the tree alone.
    let (code, _) = search(&["ubunto", "--no-cache"], public, dir.path());
    assert_eq!(code, Some(3));
    // A reader with a cache of its own (not the indexer's), which finds Debian now.
    let reader = dir.path().join("reader-cache");
    let reader_cache = ["--cache-dir", path_str(&reader)];
    let (_, results) = search(
        &[&["debian"][..], &reader_cache].concat(),
        public,
        dir.path(),
    );
    assert_eq!(names(&results), ["debian-12.5.0-amd64-netinst.iso"]);

    // libtorrent reads the root node like any other BEP 44 item.
    let root_salt: String = b"shoal-pht1:\x00"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let out = run_ok(&mut lt_dht_node(
        LT_GET_ROOT,
        "127.0.6.44",
        "19644",
        BOOT,
        &[public, &root_salt],
    ));
    assert_eq!(out.trim(), format!("ROOT {}", published["version"]));

    // `--keep` publishes again and again, each time as a newer version, until stopped.
    let mut keep = shoal();
    keep.arg("index").arg(&torrents[0]).args([
        "--key-file",
        path_str(&key),
        "--keep",
        "--every",
        "1",
    ]);
    client(&mut keep, "127.0.6.45", &dir.path().join("keeper.state"));
    let (mut keeper, lines) = start_and_watch(keep, "published", Duration::from_secs(40));
    let next = lines
        .recv_timeout(Duration::from_secs(40))
        .expect("a second publish");
    let next: serde_json::Value = serde_json::from_str(&next).unwrap();
    assert_eq!(next["event"], "published");
    assert!(next["version"].as_i64() > published["version"].as_i64());
    let pid = keeper.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = keeper.wait_exit(
        Duration::from_secs(10),
        "shoal index --keep stops on SIGTERM",
    );
    assert!(status.success(), "{status}");
    // The one-torrent index replaced the four-torrent one: in the indexer's own local
    // index at once; in the reader's once the tree's complete answer leaves Debian out.
    let (_, results) = search(&["debian", "--offline"], public, dir.path());
    assert!(results.is_empty(), "{results:?}");
    let offline = [&["debian", "--offline"][..], &reader_cache].concat();
    let (_, results) = search(&offline, public, dir.path());
    assert_eq!(names(&results), ["debian-12.5.0-amd64-netinst.iso"]);
    let (_, results) = search(
        &[&["debian"][..], &reader_cache].concat(),
        public,
        dir.path(),
    );
    assert!(results.is_empty(), "{results:?}");
    let (_, results) = search(&offline, public, dir.path());
    assert!(results.is_empty(), "{results:?}");
    let (_, results) = search(&["desktop"], public, dir.path());
    assert_eq!(names(&results), ["ubuntu-24.04-desktop-amd64.iso"]);
}

/// After [`LT_DHT_NODE`]: a plain node; prints STARTED once bootstrapped
/// and stays up until killed (at most 90 s).
const LT_NODE: &str = r#"
end = time.time() + 90
started = False
while time.time() < end:
    for a in s.pop_alerts():
        if isinstance(a, lt.dht_bootstrap_alert) and not started:
            print('STARTED', flush=True)
            started = True
    time.sleep(0.05)
"#;

/// The index stored by libtorrent nodes alone: published into a DHT of one `shoal dht`
/// node and two libtorrent nodes, then searched through a libtorrent node after the
/// shoal node is gone.
#[test]
fn an_index_stored_on_libtorrent_nodes_is_searched() {
    let dir = tempdir();
    let boot = "127.0.6.50:19650";
    let mut node = shoal();
    node.args(["dht", "--listen", boot, "--interval", "1", "--json"])
        .args(["--state", path_str(&dir.path().join("n.state"))]);
    let (mut shoal_node, _) = start_and_watch(node, "dht_stats", Duration::from_secs(10));
    let mut lt = Vec::new();
    for (ip, port) in [("127.0.6.51", "19651"), ("127.0.6.52", "19652")] {
        let cmd = lt_dht_node(LT_NODE, ip, port, boot, &[]);
        lt.push(start_and_watch(cmd, "STARTED", Duration::from_secs(20)).0);
    }
    let torrents = [
        torrent(dir.path(), "fedora-workstation-40.iso", 7),
        torrent(dir.path(), "fedora-server-40.iso", 8),
    ];
    let key = dir.path().join("indexer.key");
    let public = run_ok(shoal().args(["dht", "keygen", path_str(&key)]));
    let public = public.trim();
    let mut index = shoal();
    index
        .arg("index")
        .args(&torrents)
        .args(["--key-file", path_str(&key), "--no-cache"]);
    index
        .args([
            "--bootstrap",
            boot,
            "--listen",
            "127.0.6.53:0",
            "--json",
            "--state",
        ])
        .arg(dir.path().join("indexer.state"));
    let out = run_ok(&mut index);
    let published: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    // Every tree node went to the shoal node and to libtorrent's.
    assert!(
        published["copies"].as_u64() >= published["nodes"].as_u64().map(|n| 2 * n),
        "{out}"
    );

    // The shoal node goes away; only libtorrent holds the index now.
    let pid = shoal_node.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap()
        .success());
    shoal_node.wait_exit(
        Duration::from_secs(10),
        "the shoal DHT node exits on SIGKILL",
    );
    let mut search = shoal();
    search
        .args([
            "search",
            "fedora",
            "serv*",
            "--indexer",
            public,
            "--no-cache",
        ])
        .args([
            "--bootstrap",
            "127.0.6.51:19651",
            "--listen",
            "127.0.6.54:0",
        ])
        .args(["--timeout", "30", "--json", "--state"])
        .arg(dir.path().join("searcher.state"));
    let out = run_ok(&mut search);
    let results: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(names(&results), ["fedora-server-40.iso"], "{out}");
    assert_eq!(sources(&results), ["dht"]);
}
