//! uTP across a path whose MTU (1 280 bytes, IPv6's minimum, common on tunnels) is below
//! the size of uTP's full packets (1 448 bytes on the wire): a seed and a downloader in
//! network namespaces joined by a veth pair with that MTU. The sender's batches of packets
//! (UDP GSO) fail there, and are sent one datagram at a time, which the kernel fragments
//! (path MTU discovery as it was before `quinn-udp`, which turns it to "probe" and would
//! make them fail). Needs root, like the other namespace tests.
//!
//! And across a path MTU black hole: the small-MTU link is behind a router that sends
//! no "fragmentation needed" (as firewalls that drop all ICMP do), so a sender that marks
//! its IPv4 datagrams "don't fragment" never learns the path's MTU and its full-size
//! packets vanish. shoal's don't carry the mark, so the router fragments them.

mod common;

use std::time::Duration;

use common::*;

/// The options both peers run with: uTP only, nothing but the given peer.
const UTP_ONLY: [&str; 7] = [
    "--utp",
    "only",
    "--no-dht",
    "--no-tracker",
    "--no-port-map",
    "--json",
    "--state-dir",
];

#[test]
fn utp_crosses_a_path_mtu_black_hole() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 4 * 1024 * 1024 + 5, "256K");
    let mut ns = Namespaces::new("bh");
    for host in ["s", "r", "g"] {
        ns.add(host);
    }
    ns.link(("s", "eth0"), ("r", "eth0"));
    ns.link(("r", "eth1"), ("g", "eth0"));
    ns.exec("s", &["ip", "addr", "add", "10.79.1.1/24", "dev", "eth0"]);
    ns.exec("r", &["ip", "addr", "add", "10.79.1.254/24", "dev", "eth0"]);
    ns.exec("r", &["ip", "addr", "add", "10.79.2.254/24", "dev", "eth1"]);
    ns.exec("g", &["ip", "addr", "add", "10.79.2.2/24", "dev", "eth0"]);
    for (host, dev) in [("r", "eth1"), ("g", "eth0")] {
        ns.exec(host, &["ip", "link", "set", dev, "mtu", "1280"]);
    }
    ns.exec(
        "s",
        &["ip", "route", "add", "default", "via", "10.79.1.254"],
    );
    ns.exec(
        "g",
        &["ip", "route", "add", "default", "via", "10.79.2.254"],
    );
    ns.exec("r", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    ns.nft(
        "r",
        "table inet blackhole {\n  chain out {\n    type filter hook output priority 0;\n    \
         icmp type destination-unreachable drop\n  }\n}\n",
    );
    let mut seed = ns.command("s", env!("CARGO_BIN_EXE_shoal"));
    seed.args(["seed", path_str(&torrent), path_str(&src)])
        // Dual-stack: IPv4 peers are IPv4-mapped on an IPv6 socket.
        .args(["--listen", "[::]:6881"])
        .args(UTP_ONLY)
        .arg(dir.path().join("seed-state"));
    let _seed = start_and_wait(seed, "\"started\"", Duration::from_secs(30));
    let out = dir.path().join("out");
    let mut get = ns.command("g", env!("CARGO_BIN_EXE_shoal"));
    get.args(["get", path_str(&torrent), "-o", path_str(&out), "--no-seed"])
        .args(["--listen", "10.79.2.2:6881", "--peer", "10.79.1.1:6881"])
        .args(UTP_ONLY)
        .arg(dir.path().join("get-state"));
    let (output, took) = run_with_timeout(&mut get, Duration::from_secs(60));
    assert!(
        output.status.success(),
        "no download through the black hole in {took:?}: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
}

#[test]
fn utp_crosses_a_path_with_a_small_mtu() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 8 * 1024 * 1024 + 5, "256K");
    let mut ns = Namespaces::new("mtu");
    ns.add("s");
    ns.add("g");
    ns.link(("s", "eth0"), ("g", "eth0"));
    for (host, addr) in [("s", "10.79.0.1/24"), ("g", "10.79.0.2/24")] {
        ns.exec(host, &["ip", "addr", "add", addr, "dev", "eth0"]);
        ns.exec(host, &["ip", "link", "set", "eth0", "mtu", "1280"]);
    }
    let quiet = [
        "--utp",
        "only",
        "--no-dht",
        "--no-tracker",
        "--no-port-map",
        "--json",
    ];
    let mut seed = ns.command("s", env!("CARGO_BIN_EXE_shoal"));
    seed.args(["seed", path_str(&torrent), path_str(&src)])
        .args(["--listen", "10.79.0.1:6881"])
        .args(quiet)
        .args(["--state-dir", path_str(&dir.path().join("seed-state"))]);
    let _seed = start_and_wait(seed, "\"started\"", Duration::from_secs(30));
    let out = dir.path().join("out");
    let mut get = ns.command("g", env!("CARGO_BIN_EXE_shoal"));
    get.args(["get", path_str(&torrent), "-o", path_str(&out), "--no-seed"])
        .args(["--listen", "10.79.0.2:6881", "--peer", "10.79.0.1:6881"])
        .args(quiet)
        .args(["--state-dir", path_str(&dir.path().join("get-state"))]);
    let events = json_events(&mut get);
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    let connected = events_named(&events, "peer_connected");
    assert!(
        connected.iter().all(|e| e["transport"] == "utp") && !connected.is_empty(),
        "{connected:?}"
    );
}
