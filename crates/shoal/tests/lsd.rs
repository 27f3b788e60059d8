//! Local service discovery (BEP 14) with libtorrent, over IPv4 and over IPv6, each on a
//! LAN of its own: two network namespaces joined by a veth pair (10.79.14.0/24 or
//! fd79:14::/64), so that the standard groups and port (239.192.152.143:6771,
//! [ff15::efc0:988f]:6771) can be used without multicasting beyond the test. No tracker,
//! DHT or peer address anywhere: the peers find each other by LSD alone, each way round.
//! Needs root, like the other namespace tests.
//!
//! 1. A shoal seed listening on `[::]` (so on every interface, in both families). A
//!    libtorrent download that takes no incoming connections must dial it, so it found
//!    it in shoal's announcements.
//! 2. A libtorrent seed that makes no outgoing connections, started after a shoal
//!    download: the download must dial it, so it found it in libtorrent's.
//!
//! And a shoal seed started before its host had an IPv4 address, found by libtorrent
//! once the address is there.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// libtorrent in one direction only, with LSD on: `get` (argv: torrent, save, ip, port)
/// downloads and dials out only, printing `DONE` once it seeds; `seed` takes connections
/// only. Both print `LSD` and the peer for each peer they hear of by LSD.
const LT_LSD: &str = r#"
import libtorrent as lt, sys, time
role, torrent, save, ip, port = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
host = '[%s]' % ip if ':' in ip else ip
s = lt.session({
    'listen_interfaces': '%s:%d' % (host, port),
    'enable_dht': False, 'enable_lsd': True, 'enable_upnp': False, 'enable_natpmp': False,
    'enable_incoming_utp': False, 'enable_outgoing_utp': False,
    'enable_incoming_tcp': role == 'seed', 'enable_outgoing_tcp': role == 'get',
    'alert_mask': lt.alert.category_t.error_notification | lt.alert.category_t.peer_notification,
})
h = s.add_torrent({'ti': lt.torrent_info(torrent), 'save_path': save})
seen = []
deadline = time.time() + 50
while time.time() < deadline:
    for a in s.pop_alerts():
        if a.what() == 'lsd_peer':
            print('LSD', a.message(), flush=True)
        seen = (seen + ['%.2f %s' % (time.time(), a.message())])[-40:]
    st = h.status()
    if role == 'get' and st.is_seeding:
        print('DONE', flush=True)
        sys.exit(0)
    time.sleep(0.1)
print('TIMEOUT progress', h.status().progress, 'peers', h.status().num_peers, flush=True)
for line in seen:
    print('  alert', line, flush=True)
sys.exit(1)
"#;

/// [`LT_LSD`] as `role` in `host`, on `ip` port 6881, with the lines it prints.
fn lt_lsd(
    ns: &Namespaces,
    (host, ip): (&str, &str),
    role: &str,
    torrent: &Path,
    save: &Path,
) -> (Guard, std::sync::mpsc::Receiver<String>) {
    require("/usr/bin/python3");
    let mut cmd = ns.command(host, "/usr/bin/python3");
    cmd.args([
        "-c",
        LT_LSD,
        role,
        path_str(torrent),
        path_str(save),
        ip,
        "6881",
    ]);
    spawn_watched(cmd)
}

/// The options both shoal peers run with: LSD on its standard groups, nothing else.
const ONLY_LSD: [&str; 8] = [
    "--lsd",
    "--no-dht",
    "--no-tracker",
    "--no-port-map",
    "--utp",
    "off",
    "--json",
    "--state-dir",
];

/// Two hosts, `a` and `b`, on one link (`eth0` each, up, no addresses yet).
fn lan(tag: &str) -> Namespaces {
    let mut ns = Namespaces::new(tag);
    ns.add("a");
    ns.add("b");
    ns.link(("a", "eth0"), ("b", "eth0"));
    ns
}

/// Gives `a` and `b` their addresses (with a prefix length).
fn address(ns: &Namespaces, addrs: [&str; 2]) {
    for (host, addr) in [("a", addrs[0]), ("b", addrs[1])] {
        let mut add = vec!["ip", "addr", "add", addr, "dev", "eth0"];
        if addr.contains(':') {
            // No duplicate address detection: the address is usable at once.
            add.push("nodad");
        }
        ns.exec(host, &add);
    }
}

/// Both directions on a LAN whose hosts have `addrs` (with a prefix length) and nothing
/// of the other family.
fn lsd_both_ways(tag: &str, addrs: [&str; 2]) {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 3 * 1024 * 1024 + 7, "256K");
    let ns = lan(tag);
    address(&ns, addrs);
    let ip = |addr: &str| addr.split('/').next().unwrap().to_owned();
    let (ip_a, ip_b) = (ip(addrs[0]), ip(addrs[1]));
    let socket = |ip: &str, port: u16| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };

    // 1. libtorrent finds the shoal seed in shoal's announcements.
    let mut seed = ns.command("a", env!("CARGO_BIN_EXE_shoal"));
    seed.args(["seed", path_str(&torrent), path_str(&src)])
        .args(["--listen", "[::]:6881"])
        .args(ONLY_LSD)
        .arg(dir.path().join("seed-state"));
    let seed = start_and_wait(seed, "\"started\"", Duration::from_secs(30));
    let got = dir.path().join("lt");
    std::fs::create_dir_all(&got).unwrap();
    let (mut lt_get, lines) = lt_lsd(&ns, ("b", &ip_b), "get", &torrent, &got);
    let seen = wait_lines(&lines, &["DONE"], Duration::from_secs(60));
    assert!(
        seen.iter()
            .any(|l| l.starts_with("LSD") && l.contains(&socket(&ip_a, 6881))),
        "libtorrent did not connect to a peer it heard of by LSD: {seen:?}"
    );
    lt_get.wait_exit(Duration::from_secs(10), "libtorrent exits once done");
    drop(seed);
    same_files(&src.join("payload.bin"), &got.join("payload.bin"));

    // 2. The shoal download finds the libtorrent seed in libtorrent's announcements.
    let out = dir.path().join("out");
    let mut get = ns.command("a", env!("CARGO_BIN_EXE_shoal"));
    get.args(["get", path_str(&torrent), "-o", path_str(&out), "--no-seed"])
        .args(["--listen", "[::]:6882"])
        .args(ONLY_LSD)
        .arg(dir.path().join("get-state"));
    let (mut get, events) = start_and_watch(get, "\"started\"", Duration::from_secs(30));
    let (_lt_seed, _) = lt_lsd(&ns, ("b", &ip_b), "seed", &torrent, &got);
    let seen = wait_lines(&events, &["\"completed\""], Duration::from_secs(60));
    let status = get.wait_exit(Duration::from_secs(10), "shoal get exits once done");
    assert!(status.success(), "{status:?}");
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    let connected: Vec<serde_json::Value> = seen
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &serde_json::Value| e["event"] == "peer_connected")
        .collect();
    assert_eq!(
        connected
            .iter()
            .map(|e| e["addr"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec![socket(&ip_b, 6881)],
        "shoal dialled the seed it heard of, and nothing else"
    );
}

/// A shoal seed started before its host has an IPv4 address (a laptop before it joins a
/// network) announces on the interface once the address arrives, and libtorrent finds it.
#[test]
fn lsd_takes_up_an_interface_that_comes_later() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 1024 * 1024 + 7, "256K");
    let ns = lan("lt");
    let mut seed = ns.command("a", env!("CARGO_BIN_EXE_shoal"));
    seed.args(["seed", path_str(&torrent), path_str(&src)])
        .args(["--listen", "[::]:6881"])
        .args(ONLY_LSD)
        .arg(dir.path().join("seed-state"));
    let _seed = start_and_wait(seed, "\"started\"", Duration::from_secs(30));
    address(&ns, ["10.79.15.1/24", "10.79.15.2/24"]);
    let got = dir.path().join("lt");
    std::fs::create_dir_all(&got).unwrap();
    let (_lt_get, lines) = lt_lsd(&ns, ("b", "10.79.15.2"), "get", &torrent, &got);
    let seen = wait_lines(&lines, &["DONE"], Duration::from_secs(60));
    assert!(
        seen.iter()
            .any(|l| l.starts_with("LSD") && l.contains("10.79.15.1:6881")),
        "{seen:?}"
    );
    same_files(&src.join("payload.bin"), &got.join("payload.bin"));
}

#[test]
fn lsd_with_libtorrent_over_ipv4() {
    lsd_both_ways("l4", ["10.79.14.1/24", "10.79.14.2/24"]);
}

#[test]
fn lsd_with_libtorrent_over_ipv6() {
    lsd_both_ways("l6", ["fd79:14::1/64", "fd79:14::2/64"]);
}
