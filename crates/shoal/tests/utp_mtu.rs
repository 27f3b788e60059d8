//! uTP across a path whose MTU (1 280 bytes, IPv6's minimum, common on tunnels) is below
//! the size of uTP's full packets (1 448 bytes on the wire): a seed and a downloader in
//! network namespaces joined by a veth pair with that MTU. The sender's batches of packets
//! (UDP GSO) fail there, and are sent one datagram at a time, which the kernel fragments
//! (path MTU discovery as it was before `quinn-udp`, which turns it to "probe" and would
//! make them fail). Needs root, like the other namespace tests.

mod common;

use std::time::Duration;

use common::*;

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
