//! BEP 15 packets, both directions: the client encodes requests and decodes responses,
//! the server the reverse. Every decoder checks lengths before reading; nothing here
//! allocates more than the datagram it was given.

use std::net::{Ipv4Addr, SocketAddr};

use shoal_core::{compact, InfoHash, PeerId};

use crate::announce::{Event, Progress, ScrapeCounts};

/// The magic constant a connect request starts with.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
/// At most this many info-hashes fit one scrape (BEP 15).
pub const MAX_SCRAPE: usize = 74;
/// Large enough for any packet either side sends (an announce reply with 200 IPv6 peers).
pub const MAX_PACKET: usize = 20 + 200 * 18;

const CONNECT: u32 = 0;
const ANNOUNCE: u32 = 1;
const SCRAPE: u32 = 2;
const ERROR: u32 = 3;

/// A request, as the server receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Connect {
        transaction: u32,
    },
    Announce {
        connection: u64,
        transaction: u32,
        announce: UdpAnnounce,
    },
    Scrape {
        connection: u64,
        transaction: u32,
        hashes: Vec<InfoHash>,
    },
}

/// The body of a UDP announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpAnnounce {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub progress: Progress,
    pub event: Event,
    /// The `ip` field; 0 means "the sender's address" (the only value a server should
    /// trust).
    pub ip: Ipv4Addr,
    pub key: u32,
    /// `None` for the default (-1).
    pub numwant: Option<u32>,
    pub port: u16,
    /// BEP 41: the tracker URL's path and query (`/announce?passkey=…`), which an HTTP
    /// tracker would see in its request line; empty for none. Sent as `URLData` options
    /// after the announce's 98 bytes, 255 bytes an option.
    pub url_data: Vec<u8>,
}

/// BEP 41 option types: the end of the options, padding, and a piece of the request
/// string. Every other type is followed by a length byte.
const END_OF_OPTIONS: u8 = 0;
const NOP: u8 = 1;
const URL_DATA: u8 = 2;

/// Reads the options after an announce (BEP 41), keeping the URL data; an option that
/// runs past the packet ends them.
fn url_data(mut options: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    while let Some((&kind, rest)) = options.split_first() {
        match kind {
            END_OF_OPTIONS => break,
            NOP => options = rest,
            _ => {
                let Some((&len, rest)) = rest.split_first() else {
                    break;
                };
                let Some((value, rest)) = rest.split_at_checked(usize::from(len)) else {
                    break;
                };
                if kind == URL_DATA {
                    data.extend_from_slice(value);
                }
                options = rest;
            }
        }
    }
    data
}

/// A response, as the client receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Connect {
        transaction: u32,
        connection: u64,
    },
    Announce {
        transaction: u32,
        interval: u32,
        leechers: u32,
        seeders: u32,
        peers: Vec<SocketAddr>,
    },
    Scrape {
        transaction: u32,
        counts: Vec<ScrapeCounts>,
    },
    Error {
        transaction: u32,
        message: String,
    },
}

impl Response {
    pub fn transaction(&self) -> u32 {
        match self {
            Response::Connect { transaction, .. }
            | Response::Announce { transaction, .. }
            | Response::Scrape { transaction, .. }
            | Response::Error { transaction, .. } => *transaction,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("UDP tracker packet too short ({0} bytes)")]
    Short(usize),
    #[error("not a BEP 15 connect request (wrong protocol id)")]
    ProtocolId,
    #[error("unknown UDP tracker action {0}")]
    Action(u32),
    #[error("unknown announce event {0}")]
    Event(u32),
    #[error("scrape of {0} info-hashes (at most 74, at least 1)")]
    ScrapeCount(usize),
}

/// A cursor over big-endian fields.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take(2).try_into().expect("length checked"))
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take(4).try_into().expect("length checked"))
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take(8).try_into().expect("length checked"))
    }
    fn array20(&mut self) -> [u8; 20] {
        self.take(20).try_into().expect("length checked")
    }
}

impl Request {
    pub fn decode(packet: &[u8]) -> Result<Request, PacketError> {
        if packet.len() < 16 {
            return Err(PacketError::Short(packet.len()));
        }
        let mut r = Reader(packet);
        let connection = r.u64();
        let action = r.u32();
        let transaction = r.u32();
        match action {
            CONNECT if connection == PROTOCOL_ID => Ok(Request::Connect { transaction }),
            CONNECT => Err(PacketError::ProtocolId),
            ANNOUNCE => {
                if packet.len() < 98 {
                    return Err(PacketError::Short(packet.len()));
                }
                let info_hash = InfoHash(r.array20());
                let peer_id = PeerId(r.array20());
                let downloaded = r.u64();
                let left = r.u64();
                let uploaded = r.u64();
                let event = r.u32();
                let event = Event::from_udp(event).ok_or(PacketError::Event(event))?;
                let ip = Ipv4Addr::from(r.u32());
                let key = r.u32();
                let numwant = r.u32();
                let port = r.u16();
                let url_data = url_data(r.0);
                Ok(Request::Announce {
                    connection,
                    transaction,
                    announce: UdpAnnounce {
                        info_hash,
                        peer_id,
                        progress: Progress {
                            uploaded,
                            downloaded,
                            left,
                            partial_seed: event == Event::Paused,
                        },
                        event,
                        ip,
                        key,
                        // -1 (and any absurd value) means "tracker's default".
                        numwant: i32::try_from(numwant).ok().map(|n| n as u32),
                        port,
                        url_data,
                    },
                })
            }
            SCRAPE => {
                let n = (packet.len() - 16) / 20;
                if n == 0 || n > MAX_SCRAPE {
                    return Err(PacketError::ScrapeCount(n));
                }
                let hashes = (0..n).map(|_| InfoHash(r.array20())).collect();
                Ok(Request::Scrape {
                    connection,
                    transaction,
                    hashes,
                })
            }
            other => Err(PacketError::Action(other)),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Request::Connect { transaction } => {
                out.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
                out.extend_from_slice(&CONNECT.to_be_bytes());
                out.extend_from_slice(&transaction.to_be_bytes());
            }
            Request::Announce {
                connection,
                transaction,
                announce: a,
            } => {
                out.extend_from_slice(&connection.to_be_bytes());
                out.extend_from_slice(&ANNOUNCE.to_be_bytes());
                out.extend_from_slice(&transaction.to_be_bytes());
                out.extend_from_slice(&a.info_hash.0);
                out.extend_from_slice(&a.peer_id.0);
                out.extend_from_slice(&a.progress.downloaded.to_be_bytes());
                out.extend_from_slice(&a.progress.left.to_be_bytes());
                out.extend_from_slice(&a.progress.uploaded.to_be_bytes());
                out.extend_from_slice(&a.event.as_udp().to_be_bytes());
                out.extend_from_slice(&a.ip.octets());
                out.extend_from_slice(&a.key.to_be_bytes());
                let numwant = a.numwant.map_or(-1, |n| n.min(i32::MAX as u32) as i32);
                out.extend_from_slice(&numwant.to_be_bytes());
                out.extend_from_slice(&a.port.to_be_bytes());
                for chunk in a.url_data.chunks(usize::from(u8::MAX)) {
                    out.extend_from_slice(&[URL_DATA, chunk.len() as u8]);
                    out.extend_from_slice(chunk);
                }
            }
            Request::Scrape {
                connection,
                transaction,
                hashes,
            } => {
                out.extend_from_slice(&connection.to_be_bytes());
                out.extend_from_slice(&SCRAPE.to_be_bytes());
                out.extend_from_slice(&transaction.to_be_bytes());
                for h in hashes.iter().take(MAX_SCRAPE) {
                    out.extend_from_slice(&h.0);
                }
            }
        }
    }
}

impl Response {
    /// Decodes a response. Announce peers are 6 bytes each when the tracker was reached
    /// over IPv4 and 18 over IPv6 (BEP 15 ties the format to the socket's family).
    pub fn decode(packet: &[u8], ipv6: bool) -> Result<Response, PacketError> {
        if packet.len() < 8 {
            return Err(PacketError::Short(packet.len()));
        }
        let mut r = Reader(packet);
        let action = r.u32();
        let transaction = r.u32();
        match action {
            CONNECT if packet.len() >= 16 => Ok(Response::Connect {
                transaction,
                connection: r.u64(),
            }),
            ANNOUNCE if packet.len() >= 20 => {
                let interval = r.u32();
                let leechers = r.u32();
                let seeders = r.u32();
                let mut peers = Vec::new();
                let width = if ipv6 {
                    compact::V6_LEN
                } else {
                    compact::V4_LEN
                };
                crate::client::http::compact_peers(r.0, width, &mut peers);
                Ok(Response::Announce {
                    transaction,
                    interval,
                    leechers,
                    seeders,
                    peers,
                })
            }
            SCRAPE => Ok(Response::Scrape {
                transaction,
                counts: r
                    .0
                    .chunks_exact(12)
                    .take(MAX_SCRAPE)
                    .map(|c| {
                        let mut c = Reader(c);
                        let complete = c.u32();
                        let downloaded = c.u32();
                        let incomplete = c.u32();
                        ScrapeCounts {
                            complete,
                            downloaded,
                            incomplete,
                            downloaders: None,
                        }
                    })
                    .collect(),
            }),
            ERROR => Ok(Response::Error {
                transaction,
                message: String::from_utf8_lossy(&r.0[..r.0.len().min(512)]).into_owned(),
            }),
            CONNECT | ANNOUNCE => Err(PacketError::Short(packet.len())),
            other => Err(PacketError::Action(other)),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let head = |out: &mut Vec<u8>, action: u32, transaction: u32| {
            out.extend_from_slice(&action.to_be_bytes());
            out.extend_from_slice(&transaction.to_be_bytes());
        };
        match self {
            Response::Connect {
                transaction,
                connection,
            } => {
                head(out, CONNECT, *transaction);
                out.extend_from_slice(&connection.to_be_bytes());
            }
            Response::Announce {
                transaction,
                interval,
                leechers,
                seeders,
                peers,
            } => {
                head(out, ANNOUNCE, *transaction);
                out.extend_from_slice(&interval.to_be_bytes());
                out.extend_from_slice(&leechers.to_be_bytes());
                out.extend_from_slice(&seeders.to_be_bytes());
                for p in peers {
                    compact::push(*p, out);
                }
            }
            Response::Scrape {
                transaction,
                counts,
            } => {
                head(out, SCRAPE, *transaction);
                for c in counts {
                    out.extend_from_slice(&c.complete.to_be_bytes());
                    out.extend_from_slice(&c.downloaded.to_be_bytes());
                    out.extend_from_slice(&c.incomplete.to_be_bytes());
                }
            }
            Response::Error {
                transaction,
                message,
            } => {
                head(out, ERROR, *transaction);
                out.extend_from_slice(message.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn announce() -> Request {
        Request::Announce {
            connection: 0x1122_3344_5566_7788,
            transaction: 7,
            announce: UdpAnnounce {
                info_hash: InfoHash([3; 20]),
                peer_id: PeerId([4; 20]),
                progress: Progress {
                    uploaded: 10,
                    downloaded: 20,
                    left: 30,
                    partial_seed: false,
                },
                event: Event::Completed,
                ip: Ipv4Addr::UNSPECIFIED,
                key: 99,
                numwant: None,
                port: 6881,
                url_data: Vec::new(),
            },
        }
    }

    #[test]
    fn requests_round_trip() {
        for req in [
            Request::Connect { transaction: 5 },
            announce(),
            Request::Scrape {
                connection: 1,
                transaction: 2,
                hashes: vec![InfoHash([1; 20]), InfoHash([2; 20])],
            },
        ] {
            let mut out = Vec::new();
            req.encode(&mut out);
            assert_eq!(Request::decode(&out).unwrap(), req);
        }
        let mut out = Vec::new();
        announce().encode(&mut out);
        assert_eq!(out.len(), 98);
        assert_eq!(&out[92..96], &[0xff; 4], "numwant -1");
    }

    /// BEP 41: the request string goes in URLData options of at most 255 bytes and comes
    /// back whole; NOPs, unknown options and the end marker are read past or stop it.
    #[test]
    fn url_data_rides_in_options() {
        let long = format!("/announce?passkey={}", "k".repeat(300));
        for path in ["/announce", long.as_str()] {
            let mut req = announce();
            let Request::Announce { announce, .. } = &mut req else {
                unreachable!()
            };
            announce.url_data = path.as_bytes().to_vec();
            let mut out = Vec::new();
            req.encode(&mut out);
            assert_eq!(out[98], URL_DATA);
            assert_eq!(out.len(), 98 + path.len() + 2 * path.len().div_ceil(255));
            assert_eq!(Request::decode(&out).unwrap(), req);
        }
        let mut out = Vec::new();
        announce().encode(&mut out);
        // NOP, "/a", an unknown option 9 of 3 bytes, "b", the end, then ignored bytes.
        out.extend_from_slice(&[
            1, 2, 2, b'/', b'a', 9, 3, 0, 0, 0, 2, 1, b'b', 0, 2, 1, b'c',
        ]);
        let Request::Announce { announce, .. } = Request::decode(&out).unwrap() else {
            panic!("an announce")
        };
        assert_eq!(announce.url_data, b"/ab");
        // An option longer than the packet ends the options.
        let mut out = Vec::new();
        self::announce().encode(&mut out);
        out.extend_from_slice(&[2, 1, b'/', 2, 200, b'x']);
        let Request::Announce { announce, .. } = Request::decode(&out).unwrap() else {
            panic!("an announce")
        };
        assert_eq!(announce.url_data, b"/");
    }

    #[test]
    fn responses_round_trip() {
        for (resp, v6) in [
            (
                Response::Connect {
                    transaction: 1,
                    connection: 42,
                },
                false,
            ),
            (
                Response::Announce {
                    transaction: 2,
                    interval: 1800,
                    leechers: 3,
                    seeders: 4,
                    peers: vec![
                        "127.0.0.1:1".parse().unwrap(),
                        "10.0.0.1:2".parse().unwrap(),
                    ],
                },
                false,
            ),
            (
                Response::Announce {
                    transaction: 2,
                    interval: 1800,
                    leechers: 3,
                    seeders: 4,
                    peers: vec!["[::1]:1".parse().unwrap()],
                },
                true,
            ),
            (
                Response::Scrape {
                    transaction: 3,
                    counts: vec![ScrapeCounts {
                        complete: 1,
                        downloaded: 2,
                        incomplete: 3,
                        downloaders: None,
                    }],
                },
                false,
            ),
            (
                Response::Error {
                    transaction: 4,
                    message: "no".into(),
                },
                false,
            ),
        ] {
            let mut out = Vec::new();
            resp.encode(&mut out);
            assert_eq!(Response::decode(&out, v6).unwrap(), resp);
        }
    }

    #[test]
    fn bad_packets() {
        assert_eq!(Request::decode(&[0; 15]), Err(PacketError::Short(15)));
        let mut connect = Vec::new();
        Request::Connect { transaction: 1 }.encode(&mut connect);
        connect[0] = 1;
        assert_eq!(Request::decode(&connect), Err(PacketError::ProtocolId));
        let mut out = Vec::new();
        announce().encode(&mut out);
        assert_eq!(Request::decode(&out[..97]), Err(PacketError::Short(97)));
        out[83] = 9; // event
        assert_eq!(Request::decode(&out), Err(PacketError::Event(9)));
        let scrape = [&[0u8; 8][..], &2u32.to_be_bytes(), &[0; 4], &[0; 75 * 20]].concat();
        assert_eq!(Request::decode(&scrape), Err(PacketError::ScrapeCount(75)));
        assert_eq!(
            Response::decode(&[0, 0, 0, 1, 0, 0, 0, 1], false),
            Err(PacketError::Short(8))
        );
        assert_eq!(
            Response::decode(&[0, 0, 0, 9, 0, 0, 0, 1], false),
            Err(PacketError::Action(9))
        );
    }

    proptest! {
        #[test]
        fn decoders_never_panic(packet in proptest::collection::vec(any::<u8>(), 0..300), v6: bool) {
            let _ = Request::decode(&packet);
            let _ = Response::decode(&packet, v6);
        }
    }
}
