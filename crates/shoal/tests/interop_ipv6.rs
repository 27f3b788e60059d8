//! IPv6: libtorrent and shoal trade over ::1 both ways, over TCP and over uTP (ports
//! 1821x). Peers' addresses, the listen socket, the uTP socket and the handshakes all
//! take IPv6 as they take IPv4.
//!
//! Dual-stack (ports 18221–18230, 127.0.12.x): shoal on `[::]`, its default, as
//! libtorrent's, trades with IPv4 and IPv6 peers on one port, over TCP and uTP, and
//! reports IPv4 peers by their plain IPv4 addresses.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn shoal_downloads_from_libtorrent_over_ipv6() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 4 * 1024 * 1024 + 9, "256K");
    let _seed = lt_seed_over(LtWire::TcpAndUtp, &torrent, &src, "::1", 18211);
    for (name, utp, port) in [("tcp", "off", "18212"), ("utp", "only", "18213")] {
        let out = dir.path().join(name);
        let events = shoal_get_with(
            &torrent,
            &out,
            &dir.path().join(format!("{name}-state")),
            &format!("[::1]:{port}"),
            &["[::1]:18211"],
            &["--utp", utp],
        );
        same_files(&src.join("payload.bin"), &out.join("payload.bin"));
        let connected = events_named(&events, "peer_connected");
        assert_eq!(connected[0]["addr"], "[::1]:18211", "{connected:?}");
        assert_eq!(connected[0]["transport"], name, "{connected:?}");
    }
}

#[test]
fn libtorrent_downloads_from_shoal_over_ipv6() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 4 * 1024 * 1024 + 21, "256K");
    let _seed = shoal_seed(&torrent, &src, &dir.path().join("state"), "[::1]:18214");
    for (name, wire, port) in [
        ("tcp", LtWire::Default, 18215),
        ("utp", LtWire::UtpOnly, 18216),
    ] {
        let out = dir.path().join(name);
        lt_get_over(wire, &torrent, &out, ("::1", port), ("::1", 18214));
        same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    }
}

/// A shoal seed on `[::]` serves libtorrent over IPv4 and over IPv6, over TCP and over
/// uTP, all on one port. The IPv4 uTP peer reaches it at 127.0.12.1, not at the address
/// the route from the seed to that peer would pick (127.0.0.1): libtorrent takes uTP
/// packets only from the address it dialled, so the seed answers from the one asked.
#[test]
fn a_dual_stack_seed_serves_both_families() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 3 * 1024 * 1024 + 5, "256K");
    // No DHT: on every address it would bootstrap from the public routers.
    let state = dir.path().join("state");
    let _seed = shoal_seed_with(&torrent, &src, &state, "[::]:18221", &["--no-dht"]);
    for (name, wire, us, seed) in [
        (
            "v4-tcp",
            LtWire::Default,
            ("127.0.12.2", 18222),
            "127.0.0.1",
        ),
        (
            "v4-utp",
            LtWire::UtpOnly,
            ("127.0.12.3", 18223),
            "127.0.12.1",
        ),
        ("v6-tcp", LtWire::Default, ("::1", 18224), "::1"),
        ("v6-utp", LtWire::UtpOnly, ("::1", 18225), "::1"),
    ] {
        let out = dir.path().join(name);
        lt_get_over(wire, &torrent, &out, us, (seed, 18221));
        same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    }
}

/// `shoal get` on `[::]` dials an IPv4 and an IPv6 libtorrent seed that take uTP only,
/// through one dual-stack UDP socket, and names the IPv4 one in plain IPv4 form.
#[test]
fn a_dual_stack_download_reaches_both_families_over_utp() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 3 * 1024 * 1024 + 7, "256K");
    let _seed4 = lt_seed_over(LtWire::UtpOnly, &torrent, &src, "127.0.12.4", 18226);
    let _seed6 = lt_seed_over(LtWire::UtpOnly, &torrent, &src, "::1", 18227);
    let out = dir.path().join("out");
    // Slow enough (3 MiB at 512 KiB/s) for both to connect before the end.
    let events = shoal_get_with(
        &torrent,
        &out,
        &dir.path().join("get-state"),
        "[::]:18228",
        &["127.0.12.4:18226", "[::1]:18227"],
        &["--utp", "only", "--max-down", "512K", "--no-dht"],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    let connected = events_named(&events, "peer_connected");
    for seed in ["127.0.12.4:18226", "[::1]:18227"] {
        assert!(
            connected
                .iter()
                .any(|e| e["addr"] == seed && e["transport"] == "utp"),
            "{seed}: {connected:?}"
        );
    }
}

/// With no `--listen`, a seed listens on `[::]` at the first free port of 6881–6999, and
/// libtorrent reaches it there over IPv4 and over IPv6.
#[test]
fn by_default_a_seed_listens_on_both_families() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 1024 * 1024 + 9, "256K");
    let mut seed = shoal();
    seed.args(["seed", path_str(&torrent), path_str(&src), "--json"])
        // Loopback only: no public DHT routers, no asking the gateway for a port.
        .args(["--no-dht", "--no-port-map"])
        .args(["--state-dir", path_str(&dir.path().join("state"))]);
    let (_seed, lines) = spawn_watched(seed);
    let seen = wait_lines(&lines, &["\"started\""], Duration::from_secs(30));
    let started: serde_json::Value = serde_json::from_str(seen.last().unwrap()).unwrap();
    let listen: std::net::SocketAddr = started["listen"].as_str().unwrap().parse().unwrap();
    assert!(
        listen.ip().is_unspecified() && listen.is_ipv6(),
        "{started}"
    );
    assert!((6881..=6999).contains(&listen.port()), "{started}");
    for (name, us, seed) in [
        ("v4", ("127.0.12.5", 18229), "127.0.0.1"),
        ("v6", ("::1", 18230), "::1"),
    ] {
        let out = dir.path().join(name);
        lt_get_over(LtWire::Default, &torrent, &out, us, (seed, listen.port()));
        same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    }
}
