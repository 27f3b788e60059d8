//! The UDP (BEP 15) front end: one datagram in, at most one datagram out.
//!
//! Packets that do not parse get no answer at all, so the tracker cannot be used to
//! reflect traffic at a forged address; a wrong or stale connection id gets a BEP 15
//! error. The peer's address is always the datagram's source: the packet's `ip` field is
//! ignored (item 33 of the bad-input list).

use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;
use shoal_core::dual_stack;

use super::connection_id::ConnectionIds;
use super::{Family, PeerAnnounce, Refusal, Tracker};
use crate::udp::{Request, Response};

/// Handles one datagram from `from`; returns the reply, if any, in `out`.
pub fn handle_packet(
    tracker: &mut Tracker,
    ids: &ConnectionIds,
    now: Instant,
    from: SocketAddr,
    packet: &[u8],
    rng: &mut impl Rng,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    // A dual-stack socket reports IPv4 clients as mapped IPv6: one form per peer.
    let from = dual_stack::canonical(from);
    let Ok(request) = Request::decode(packet) else {
        return false;
    };
    let response = match request {
        Request::Connect { transaction } => Response::Connect {
            transaction,
            connection: ids.issue(from),
        },
        Request::Announce {
            connection,
            transaction,
            ..
        }
        | Request::Scrape {
            connection,
            transaction,
            ..
        } if !ids.check(from, connection) => Response::Error {
            transaction,
            message: Refusal::ConnectionId.to_string(),
        },
        Request::Announce {
            transaction,
            announce,
            ..
        } => {
            let a = PeerAnnounce {
                info_hash: announce.info_hash,
                peer_id: announce.peer_id,
                addr: SocketAddr::new(from.ip(), announce.port),
                event: announce.event,
                left: announce.progress.left,
                numwant: announce.numwant,
                family: if from.is_ipv4() {
                    Family::V4
                } else {
                    Family::V6
                },
            };
            match tracker.announce(now, &a, rng) {
                Ok(answer) => Response::Announce {
                    transaction,
                    interval: answer.interval.as_secs().min(u64::from(u32::MAX)) as u32,
                    leechers: answer.leechers,
                    seeders: answer.seeders,
                    peers: answer.peers,
                },
                Err(refusal) => Response::Error {
                    transaction,
                    message: refusal.to_string(),
                },
            }
        }
        Request::Scrape {
            transaction,
            hashes,
            ..
        } => Response::Scrape {
            transaction,
            counts: tracker.scrape(&hashes),
        },
    };
    response.encode(out);
    true
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use shoal_core::{InfoHash, PeerId};

    use super::*;
    use crate::announce::{Event, Progress, ScrapeCounts};
    use crate::server::ServerConfig;
    use crate::udp::UdpAnnounce;

    fn exchange(
        t: &mut Tracker,
        ids: &ConnectionIds,
        from: &str,
        req: Request,
        rng: &mut StdRng,
    ) -> Response {
        let mut packet = Vec::new();
        req.encode(&mut packet);
        let mut out = Vec::new();
        assert!(handle_packet(
            t,
            ids,
            Instant::now(),
            from.parse().unwrap(),
            &packet,
            rng,
            &mut out
        ));
        Response::decode(&out, from.starts_with('[')).unwrap()
    }

    fn announce(connection: u64, port: u16, left: u64) -> Request {
        Request::Announce {
            connection,
            transaction: 9,
            announce: UdpAnnounce {
                info_hash: InfoHash([1; 20]),
                peer_id: PeerId([2; 20]),
                progress: Progress {
                    uploaded: 0,
                    downloaded: 0,
                    left,
                    partial_seed: false,
                },
                event: Event::Started,
                // A forged address: must be ignored.
                ip: "1.2.3.4".parse().unwrap(),
                key: 0,
                numwant: None,
                port,
                // BEP 41 options after the 98 bytes, as libtorrent sends them.
                url_data: b"/announce".to_vec(),
            },
        }
    }

    #[test]
    fn connect_announce_scrape() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut t = Tracker::new(ServerConfig::default());
        let ids = ConnectionIds::new(Instant::now(), &mut rng);
        let Response::Connect {
            connection: c1,
            transaction: 3,
        } = exchange(
            &mut t,
            &ids,
            "127.0.0.2:5000",
            Request::Connect { transaction: 3 },
            &mut rng,
        )
        else {
            panic!()
        };
        let r = exchange(
            &mut t,
            &ids,
            "127.0.0.2:5000",
            announce(c1, 6881, 0),
            &mut rng,
        );
        assert!(
            matches!(
                r,
                Response::Announce {
                    seeders: 1,
                    leechers: 0,
                    ..
                }
            ),
            "{r:?}"
        );
        let Response::Connect { connection: c2, .. } = exchange(
            &mut t,
            &ids,
            "127.0.0.3:5000",
            Request::Connect { transaction: 4 },
            &mut rng,
        ) else {
            panic!()
        };
        let Response::Announce { peers, .. } = exchange(
            &mut t,
            &ids,
            "127.0.0.3:5000",
            announce(c2, 6882, 10),
            &mut rng,
        ) else {
            panic!()
        };
        assert_eq!(
            peers,
            vec!["127.0.0.2:6881".parse().unwrap()],
            "source IP, not the ip field"
        );
        let r = exchange(
            &mut t,
            &ids,
            "127.0.0.3:5000",
            Request::Scrape {
                connection: c2,
                transaction: 5,
                hashes: vec![InfoHash([1; 20])],
            },
            &mut rng,
        );
        assert_eq!(
            r,
            Response::Scrape {
                transaction: 5,
                counts: vec![ScrapeCounts {
                    complete: 1,
                    downloaded: 0,
                    incomplete: 1,
                    downloaders: None,
                }]
            }
        );
    }

    #[test]
    fn stale_or_foreign_connection_id_is_an_error_and_garbage_is_silent() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut t = Tracker::new(ServerConfig::default());
        let ids = ConnectionIds::new(Instant::now(), &mut rng);
        let foreign = ids.issue("127.0.0.9:1".parse().unwrap());
        let r = exchange(
            &mut t,
            &ids,
            "127.0.0.2:5000",
            announce(foreign, 6881, 0),
            &mut rng,
        );
        assert!(matches!(r, Response::Error { transaction: 9, .. }), "{r:?}");
        assert_eq!(t.stats().peers, 0);
        let mut out = Vec::new();
        for junk in [&b""[..], &[0; 15], &[0xff; 200]] {
            assert!(!handle_packet(
                &mut t,
                &ids,
                Instant::now(),
                "127.0.0.2:1".parse().unwrap(),
                junk,
                &mut rng,
                &mut out
            ));
        }
    }
}
