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

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// The options both peers run with: uTP only, nothing but the given peer.
const UTP_ONLY: [&str; 6] = [
    "--utp",
    "only",
    "--no-dht",
    "--no-tracker",
    "--no-port-map",
    "--json",
];

/// A `shoal seed` of `torrent` (data in `src`) in `host`, on `listen`, started.
fn seed_in(ns: &Namespaces, host: &str, listen: &str, (torrent, src): (&Path, &Path)) -> Guard {
    let state = src.with_file_name("seed-state");
    let mut seed = ns.command(host, env!("CARGO_BIN_EXE_shoal"));
    seed.args(["seed", path_str(torrent), path_str(src)])
        .args(["--listen", listen])
        .args(UTP_ONLY)
        .args(["--state-dir", path_str(&state)]);
    start_and_wait(seed, "\"started\"", Duration::from_secs(30))
}

/// A `shoal get --no-seed` of `torrent` into `out` in `host`, on `listen`, from `peer`.
fn get_in(
    ns: &Namespaces,
    (host, listen): (&str, &str),
    peer: &str,
    torrent: &Path,
    out: &Path,
) -> Command {
    let state = out.with_file_name("get-state");
    let mut get = ns.command(host, env!("CARGO_BIN_EXE_shoal"));
    get.args(["get", path_str(torrent), "-o", path_str(out), "--no-seed"])
        .args(["--listen", listen, "--peer", peer])
        .args(UTP_ONLY)
        .args(["--state-dir", path_str(&state)]);
    get
}

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
    // Dual-stack: IPv4 peers are IPv4-mapped on an IPv6 socket.
    let _seed = seed_in(&ns, "s", "[::]:6881", (&torrent, &src));
    let out = dir.path().join("out");
    let mut get = get_in(
        &ns,
        ("g", "10.79.2.2:6881"),
        "10.79.1.1:6881",
        &torrent,
        &out,
    );
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
    let _seed = seed_in(&ns, "s", "10.79.0.1:6881", (&torrent, &src));
    let out = dir.path().join("out");
    let mut get = get_in(
        &ns,
        ("g", "10.79.0.2:6881"),
        "10.79.0.1:6881",
        &torrent,
        &out,
    );
    let events = json_events(&mut get);
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    let connected = events_named(&events, "peer_connected");
    assert!(
        connected.iter().all(|e| e["transport"] == "utp") && !connected.is_empty(),
        "{connected:?}"
    );
}
