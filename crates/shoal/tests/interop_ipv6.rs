//! IPv6: libtorrent and shoal trade over ::1 both ways, over TCP and over uTP (ports
//! 1821x). Peers' addresses, the listen socket, the uTP socket and the handshakes all
//! take IPv6 as they take IPv4.

mod common;

use common::*;

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
