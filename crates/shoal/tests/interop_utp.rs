//! uTP (BEP 29) against libtorrent set to take and make uTP connections only, and between
//! shoal peers with `--utp only`, on loopback (127.0.10.N, ports 1810x): the transfers
//! complete, the data is identical, and the JSON says which transport carried each peer
//! and its round trip (also through a relay that makes a libtorrent seed far away).

mod common;

use std::time::Duration;

use common::*;

fn transports(events: &[serde_json::Value]) -> Vec<String> {
    events_named(events, "peer_connected")
        .iter()
        .map(|e| e["transport"].as_str().unwrap().to_owned())
        .collect()
}

/// The round trips (ms) that `peer_connected` reports, one per peer.
fn round_trips(events: &[serde_json::Value]) -> Vec<f64> {
    events_named(events, "peer_connected")
        .iter()
        .map(|e| {
            e["rtt_ms"]
                .as_f64()
                .unwrap_or_else(|| panic!("no rtt_ms: {e}"))
        })
        .collect()
}

#[test]
fn shoal_downloads_from_a_libtorrent_seed_that_takes_only_utp() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 6 * 1024 * 1024 + 123, "256K");
    let data = src.join("payload.bin");
    let _seed = lt_seed_over(LtWire::UtpOnly, &torrent, &src, "127.0.10.1", 18101);
    // shoal's default dials TCP first and falls back to uTP.
    let out = dir.path().join("out");
    let events = shoal_get(
        &torrent,
        &out,
        &dir.path().join("state"),
        "127.0.10.2:18102",
        &["127.0.10.1:18101"],
    );
    same_files(&data, &out.join("payload.bin"));
    assert_eq!(transports(&events), ["utp"], "{events:?}");
}

#[test]
fn a_libtorrent_that_speaks_only_utp_downloads_from_shoal() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 5 * 1024 * 1024 + 7, "256K");
    let data = src.join("payload.bin");
    let _seed = shoal_seed(
        &torrent,
        &src,
        &dir.path().join("state"),
        "127.0.10.3:18103",
    );
    let out = dir.path().join("lt");
    lt_get_over(
        LtWire::UtpOnly,
        &torrent,
        &out,
        ("127.0.10.4", 18104),
        ("127.0.10.3", 18103),
    );
    same_files(&data, &out.join("payload.bin"));
}

#[test]
fn shoal_peers_trade_over_utp_only() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 24 * 1024 * 1024 + 5, "256K");
    let data = src.join("payload.bin");
    let _seed = shoal_seed_with(
        &torrent,
        &src,
        &dir.path().join("seed-state"),
        "127.0.10.5:18105",
        &["--utp", "only"],
    );
    let out = dir.path().join("out");
    let started = std::time::Instant::now();
    let events = shoal_get_with(
        &torrent,
        &out,
        &dir.path().join("state"),
        "127.0.10.6:18106",
        &["127.0.10.5:18105"],
        &["--utp", "only"],
    );
    let took = started.elapsed();
    same_files(&data, &out.join("payload.bin"));
    assert_eq!(transports(&events), ["utp"]);
    // Loopback has no queue to speak of: LEDBAT must not hold a transfer to a trickle.
    assert!(
        took < Duration::from_secs(60),
        "24 MiB over uTP took {took:?}"
    );
}

#[test]
fn prefer_dials_utp_first_and_falls_back_to_tcp() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 2 * 1024 * 1024 + 9, "256K");
    let data = src.join("payload.bin");
    // libtorrent with both transports: `--utp prefer` picks uTP.
    let _lt = lt_seed_over(LtWire::TcpAndUtp, &torrent, &src, "127.0.10.7", 18107);
    let out = dir.path().join("from-lt");
    let events = shoal_get_with(
        &torrent,
        &out,
        &dir.path().join("state1"),
        "127.0.10.8:18108",
        &["127.0.10.7:18107"],
        &["--utp", "prefer"],
    );
    same_files(&data, &out.join("payload.bin"));
    assert_eq!(transports(&events), ["utp"]);
    assert!(round_trips(&events)[0] < 100.0, "loopback: {events:?}");
    // A shoal seed with uTP off answers no SYN: after the SYN's retries, TCP.
    let _seed = shoal_seed_with(
        &torrent,
        &src,
        &dir.path().join("seed-state"),
        "127.0.10.9:18109",
        &["--utp", "off"],
    );
    let out = dir.path().join("from-tcp");
    let events = shoal_get_with(
        &torrent,
        &out,
        &dir.path().join("state2"),
        "127.0.10.10:18110",
        &["127.0.10.9:18109"],
        &["--utp", "prefer"],
    );
    same_files(&data, &out.join("payload.bin"));
    assert_eq!(transports(&events), ["tcp"]);
    // The kernel's measure (TCP_INFO), from the connection's set-up.
    let rtt = round_trips(&events)[0];
    assert!(rtt > 0.0 && rtt < 100.0, "loopback: {events:?}");
}

/// A libtorrent seed 150 ms away each way (a relay delays every uTP datagram): shoal
/// measures the round trip from the connection's set-up on, reports it, and sizes its
/// request queue to cover it; the download completes.
#[test]
fn a_far_libtorrent_seed_is_measured_over_utp() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 1024 * 1024 + 77, "256K");
    let data = src.join("payload.bin");
    let _seed = lt_seed_over(LtWire::UtpOnly, &torrent, &src, "127.0.10.11", 18111);
    let delay = Duration::from_millis(150);
    let _relay = DelayRelay::start(
        "127.0.10.12:18112",
        "127.0.10.11:18111".parse().unwrap(),
        delay,
    );
    let out = dir.path().join("out");
    let events = shoal_get_with(
        &torrent,
        &out,
        &dir.path().join("state"),
        "127.0.10.13:18113",
        &["127.0.10.12:18112"],
        &["--utp", "only"],
    );
    same_files(&data, &out.join("payload.bin"));
    let rtt = round_trips(&events)[0];
    assert!((300.0..600.0).contains(&rtt), "{rtt} ms: {events:?}");
}
