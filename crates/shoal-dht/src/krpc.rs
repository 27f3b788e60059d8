//! KRPC, the DHT's message format (BEP 5): one bencoded dictionary per UDP packet, a
//! query (`y = q`), a response (`y = r`) or an error (`y = e`), matched by the
//! transaction id `t`.
//!
//! [`Message::decode`] is the one boundary where a packet becomes a typed message: ids
//! must be 20 bytes, compact node lists a multiple of 26, ports non-zero, and the whole
//! packet small and shallow. Anything else is a [`KrpcError`] and the packet is dropped
//! (or answered with error 203 when it was a query we could identify).

use crate::id::NodeId;
use crate::item::{Item, MutableItem, MAX_SALT, MAX_VALUE};
use crate::scrape::Bloom;
use shoal_bencode::{Dict, Limits, Value};
use shoal_core::compact;
use std::net::SocketAddr;

/// Longest packet we look at: real KRPC messages fit one unfragmented datagram.
pub const MAX_PACKET: usize = 1500;
/// Longest write token we accept (ours are 8 bytes, libtorrent's 4 to 8).
const MAX_TOKEN: usize = 64;
/// Longest transaction id we accept (libtorrent uses 2 bytes, others 4).
const MAX_TID: usize = 16;
/// A response carries at most this many peers in `values`; more are ignored.
pub const MAX_VALUES: usize = 100;
/// Peers we put in one `values` list: 50 × 8 bytes keeps the packet small.
pub const VALUES_PER_RESPONSE: usize = 50;

/// A 1500-byte packet holds at most 750 bencode tokens; a BEP 44 value may use most.
const LIMITS: Limits = Limits {
    // A BEP 44 value may nest (the decoder keeps its own stack, so depth costs nothing).
    max_depth: 32,
    max_tokens: 1024,
};

/// KRPC error codes (BEP 5).
pub const ERROR_GENERIC: i64 = 201;
pub const ERROR_PROTOCOL: i64 = 203;
pub const ERROR_METHOD_UNKNOWN: i64 = 204;
/// BEP 44 error codes.
pub const ERROR_VALUE_TOO_BIG: i64 = 205;
pub const ERROR_BAD_SIGNATURE: i64 = 206;
pub const ERROR_SALT_TOO_BIG: i64 = 207;
pub const ERROR_CAS_MISMATCH: i64 = 301;
pub const ERROR_SEQ_OUTDATED: i64 = 302;

/// A node as it travels in `nodes` (20-byte id, 4-byte IPv4, 2-byte port) or, in the
/// IPv6 DHT (BEP 32), in `nodes6` (20-byte id, 16-byte IPv6, 2-byte port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: NodeId,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Ping,
    FindNode {
        target: NodeId,
    },
    GetPeers {
        info_hash: NodeId,
        /// BEP 33: also the bloom filters of the seeds and peers stored.
        scrape: bool,
    },
    AnnouncePeer {
        info_hash: NodeId,
        /// The port from the message; with `implied_port` the source port is meant.
        port: u16,
        implied_port: bool,
        token: Vec<u8>,
        /// BEP 33: the announcer seeds the torrent.
        seed: bool,
    },
    /// BEP 44: the item stored under `target`, if any; with `seq`, only a newer version's
    /// value is wanted.
    Get {
        target: NodeId,
        seq: Option<i64>,
    },
    /// BEP 51: a sample of the info-hashes the node stores peers for (and nodes close to
    /// `target`, as `find_node` would give).
    SampleInfohashes {
        target: NodeId,
    },
    /// BEP 44: store `item` (its signature is checked by the node, not here).
    Put {
        item: Item,
        token: Vec<u8>,
        cas: Option<i64>,
    },
}

impl Query {
    fn method(&self) -> &'static str {
        match self {
            Query::Ping => "ping",
            Query::FindNode { .. } => "find_node",
            Query::GetPeers { .. } => "get_peers",
            Query::AnnouncePeer { .. } => "announce_peer",
            Query::Get { .. } => "get",
            Query::Put { .. } => "put",
            Query::SampleInfohashes { .. } => "sample_infohashes",
        }
    }
}

/// The fields of a response we use; each query kind fills some of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub nodes: Vec<NodeInfo>,
    pub values: Vec<SocketAddr>,
    pub token: Option<Vec<u8>>,
    /// A BEP 44 `get` answer's item fields, as sent (a lookup checks them).
    pub item: ItemFields,
    /// A BEP 51 `sample_infohashes` answer.
    pub sample: Option<InfohashSample>,
    /// A BEP 33 scrape answer (`BFsd`, `BFpe`); boxed, as 512 bytes that most answers
    /// lack.
    pub scrape: Option<Box<ScrapeFilters>>,
}

/// The bloom filters of a BEP 33 scrape answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrapeFilters {
    pub seeds: Bloom,
    pub peers: Bloom,
}

/// Info-hashes a node stores peers for, as BEP 51 reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InfohashSample {
    /// Seconds before the node's sample may change: asking again sooner gains nothing.
    pub interval: u32,
    /// How many info-hashes the node stores in all.
    pub num: u64,
    pub samples: Vec<NodeId>,
}

/// BEP 51's bound on `interval` (six hours), which also caps what we take from others.
pub const MAX_SAMPLE_INTERVAL: u32 = 21_600;
/// Samples in one answer: 20 × 20 bytes keeps it well inside a datagram (libtorrent's
/// limit too).
pub const MAX_SAMPLES: usize = 20;

/// The item fields of a `get` answer: `v` alone for an immutable item; `k`, `seq`,
/// `sig` and `v` for a mutable one (`seq` alone when asked for newer than what is held).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemFields {
    /// The bencoded value, verbatim.
    pub value: Option<Vec<u8>>,
    pub key: Option<[u8; 32]>,
    pub signature: Option<[u8; 64]>,
    pub seq: Option<i64>,
}

impl ItemFields {
    /// The fields that describe `item` in an answer.
    pub fn of(item: &Item) -> ItemFields {
        match item {
            Item::Immutable { value } => ItemFields {
                value: Some(value.clone()),
                ..ItemFields::default()
            },
            Item::Mutable(m) => ItemFields {
                value: Some(m.value.clone()),
                key: Some(m.key),
                signature: Some(m.signature),
                seq: Some(m.seq),
            },
        }
    }

    fn encode_into(&self, d: &mut Value) {
        if let Some(v) = &self.value {
            d.insert("v", Value::Raw(v.clone()));
        }
        if let Some(k) = &self.key {
            d.insert("k", k.to_vec());
        }
        if let Some(sig) = &self.signature {
            d.insert("sig", sig.to_vec());
        }
        if let Some(seq) = self.seq {
            d.insert("seq", seq);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Query(Query),
    Response(Response),
    Error { code: i64, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub tid: Vec<u8>,
    /// The sender's id (queries and responses; errors carry none).
    pub sender: Option<NodeId>,
    /// BEP 42: in a response, the address the responder saw us at.
    pub your_ip: Option<SocketAddr>,
    /// `ro = 1` (BEP 43): the sender does not answer queries; keep it out of tables.
    pub read_only: bool,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KrpcError {
    #[error("packet of {0} bytes is too large")]
    TooLarge(usize),
    #[error("bencode: {0}")]
    Bencode(#[from] shoal_bencode::DecodeError),
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A query we could parse far enough to answer with an error.
    #[error("bad query: {message}")]
    BadQuery {
        tid: Vec<u8>,
        code: i64,
        message: &'static str,
    },
}

impl Message {
    pub fn decode(packet: &[u8]) -> Result<Message, KrpcError> {
        if packet.len() > MAX_PACKET {
            return Err(KrpcError::TooLarge(packet.len()));
        }
        let doc = shoal_bencode::decode(packet, LIMITS)?;
        let root = doc.root();
        let dict = root
            .as_dict()
            .ok_or(KrpcError::Malformed("not a dictionary"))?;
        let tid = dict
            .get(b"t")
            .and_then(|n| n.as_bytes())
            .filter(|t| t.len() <= MAX_TID)
            .ok_or(KrpcError::Malformed("missing transaction id"))?
            .to_vec();
        let kind = dict
            .get(b"y")
            .and_then(|n| n.as_bytes())
            .ok_or(KrpcError::Malformed("missing y"))?;
        let your_ip = dict
            .get(b"ip")
            .and_then(|n| n.as_bytes())
            .and_then(compact::peer);
        let read_only = dict.get(b"ro").and_then(|n| n.as_int()) == Some(1);
        let (sender, body) = match kind {
            b"q" => {
                let method = dict
                    .get(b"q")
                    .and_then(|n| n.as_bytes())
                    .ok_or(KrpcError::Malformed("missing q"))?;
                let args = dict
                    .get(b"a")
                    .and_then(|n| n.as_dict())
                    .ok_or_else(|| bad_query(&tid, "missing arguments"))?;
                let sender = id_field(&args, b"id").ok_or_else(|| bad_query(&tid, "bad id"))?;
                (
                    Some(sender),
                    Body::Query(decode_query(&tid, method, &args)?),
                )
            }
            b"r" => {
                let r = dict
                    .get(b"r")
                    .and_then(|n| n.as_dict())
                    .ok_or(KrpcError::Malformed("missing r"))?;
                let sender = id_field(&r, b"id").ok_or(KrpcError::Malformed("bad id"))?;
                (Some(sender), Body::Response(decode_response(&r)?))
            }
            b"e" => {
                let list = dict.get(b"e").and_then(|n| n.as_list());
                let mut items = list.iter().flat_map(|l| l.iter());
                let code = items.next().and_then(|n| n.as_int()).unwrap_or(0);
                let message = items
                    .next()
                    .and_then(|n| n.as_bytes())
                    .map(|b| String::from_utf8_lossy(&b[..b.len().min(100)]).into_owned())
                    .unwrap_or_default();
                (None, Body::Error { code, message })
            }
            _ => return Err(KrpcError::Malformed("unknown y")),
        };
        Ok(Message {
            tid,
            sender,
            your_ip,
            read_only,
            body,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut root = Value::dict();
        root.insert("t", self.tid.clone());
        if let Some(ip) = self.your_ip {
            root.insert("ip", compact::bytes(ip));
        }
        if self.read_only {
            root.insert("ro", 1i64);
        }
        match &self.body {
            Body::Query(q) => {
                root.insert("y", "q");
                root.insert("q", q.method());
                let mut a = Value::dict();
                if let Some(id) = self.sender {
                    a.insert("id", id.0.to_vec());
                }
                match q {
                    Query::Ping => {}
                    Query::FindNode { target } => a.insert("target", target.0.to_vec()),
                    Query::GetPeers { info_hash, scrape } => {
                        a.insert("info_hash", info_hash.0.to_vec());
                        if *scrape {
                            a.insert("scrape", 1i64);
                        }
                    }
                    Query::AnnouncePeer {
                        info_hash,
                        port,
                        implied_port,
                        token,
                        seed,
                    } => {
                        a.insert("info_hash", info_hash.0.to_vec());
                        a.insert("port", i64::from(*port));
                        a.insert("implied_port", i64::from(*implied_port));
                        a.insert("token", token.clone());
                        if *seed {
                            a.insert("seed", 1i64);
                        }
                    }
                    Query::SampleInfohashes { target } => a.insert("target", target.0.to_vec()),
                    Query::Get { target, seq } => {
                        a.insert("target", target.0.to_vec());
                        if let Some(seq) = seq {
                            a.insert("seq", *seq);
                        }
                    }
                    Query::Put { item, token, cas } => {
                        a.insert("token", token.clone());
                        if let Some(cas) = cas {
                            a.insert("cas", *cas);
                        }
                        if let Item::Mutable(m) = item {
                            if !m.salt.is_empty() {
                                a.insert("salt", m.salt.clone());
                            }
                        }
                        ItemFields::of(item).encode_into(&mut a);
                    }
                }
                root.insert("a", a);
            }
            Body::Response(r) => {
                root.insert("y", "r");
                let mut d = Value::dict();
                if let Some(id) = self.sender {
                    d.insert("id", id.0.to_vec());
                }
                // BEP 32: IPv4 nodes in `nodes`, IPv6 ones in `nodes6`.
                for (key, v6) in [("nodes", false), ("nodes6", true)] {
                    if r.nodes.iter().any(|n| n.addr.is_ipv6() == v6) {
                        d.insert(key, encode_nodes(&r.nodes, v6));
                    }
                }
                if !r.values.is_empty() {
                    let values = r.values.iter().map(|&p| Value::Bytes(compact::bytes(p)));
                    d.insert("values", Value::List(values.collect()));
                }
                if let Some(token) = &r.token {
                    d.insert("token", token.clone());
                }
                r.item.encode_into(&mut d);
                if let Some(filters) = &r.scrape {
                    d.insert("BFsd", filters.seeds.as_bytes().to_vec());
                    d.insert("BFpe", filters.peers.as_bytes().to_vec());
                }
                if let Some(sample) = &r.sample {
                    d.insert("interval", i64::from(sample.interval));
                    d.insert("num", i64::try_from(sample.num).unwrap_or(i64::MAX));
                    let bytes: Vec<u8> = sample.samples.iter().flat_map(|h| h.0).collect();
                    d.insert("samples", bytes);
                }
                root.insert("r", d);
            }
            Body::Error { code, message } => {
                root.insert("y", "e");
                root.insert(
                    "e",
                    Value::List(vec![Value::Int(*code), message.as_str().into()]),
                );
            }
        }
        root.to_bytes()
    }
}

fn bad_query(tid: &[u8], message: &'static str) -> KrpcError {
    KrpcError::BadQuery {
        tid: tid.to_vec(),
        code: ERROR_PROTOCOL,
        message,
    }
}

fn id_field(dict: &Dict<'_, '_>, key: &[u8]) -> Option<NodeId> {
    dict.get(key)
        .and_then(|n| n.as_bytes())
        .and_then(NodeId::from_slice)
}

/// A query's write token: at most [`MAX_TOKEN`] bytes.
fn token_field(tid: &[u8], args: &Dict<'_, '_>) -> Result<Vec<u8>, KrpcError> {
    args.get(b"token")
        .and_then(|n| n.as_bytes())
        .filter(|t| t.len() <= MAX_TOKEN)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| bad_query(tid, "bad token"))
}

fn decode_query(tid: &[u8], method: &[u8], args: &Dict<'_, '_>) -> Result<Query, KrpcError> {
    Ok(match method {
        b"ping" => Query::Ping,
        b"find_node" => Query::FindNode {
            target: id_field(args, b"target").ok_or_else(|| bad_query(tid, "bad target"))?,
        },
        b"get_peers" => Query::GetPeers {
            info_hash: id_field(args, b"info_hash")
                .ok_or_else(|| bad_query(tid, "bad info_hash"))?,
            scrape: args.get(b"scrape").and_then(|n| n.as_int()) == Some(1),
        },
        b"announce_peer" => {
            let info_hash =
                id_field(args, b"info_hash").ok_or_else(|| bad_query(tid, "bad info_hash"))?;
            let implied_port = args.get(b"implied_port").and_then(|n| n.as_int()) == Some(1);
            let port = args
                .get(b"port")
                .and_then(|n| n.as_int())
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(0);
            if port == 0 && !implied_port {
                return Err(bad_query(tid, "bad port"));
            }
            let token = token_field(tid, args)?;
            Query::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
                seed: args.get(b"seed").and_then(|n| n.as_int()) == Some(1),
            }
        }
        b"get" => Query::Get {
            target: id_field(args, b"target").ok_or_else(|| bad_query(tid, "bad target"))?,
            seq: args.get(b"seq").and_then(|n| n.as_int()),
        },
        b"put" => decode_put(tid, args)?,
        b"sample_infohashes" => Query::SampleInfohashes {
            target: id_field(args, b"target").ok_or_else(|| bad_query(tid, "bad target"))?,
        },
        _ => {
            return Err(KrpcError::BadQuery {
                tid: tid.to_vec(),
                code: ERROR_METHOD_UNKNOWN,
                message: "method unknown",
            })
        }
    })
}

/// A BEP 44 `put`: sizes first (TESTING.md item 31: an oversized salt or value gets the
/// BEP's own error code), then the fields' shapes. With `k` it is a mutable item.
fn decode_put(tid: &[u8], args: &Dict<'_, '_>) -> Result<Query, KrpcError> {
    let refuse = |code, message| KrpcError::BadQuery {
        tid: tid.to_vec(),
        code,
        message,
    };
    let salt = args.get(b"salt").map(|n| n.as_bytes());
    let salt = match salt {
        None => &[][..],
        Some(Some(salt)) if salt.len() <= MAX_SALT => salt,
        Some(Some(_)) => return Err(refuse(ERROR_SALT_TOO_BIG, "salt (salt field) too big")),
        Some(None) => return Err(bad_query(tid, "bad salt")),
    };
    let value = args
        .get(b"v")
        .ok_or_else(|| bad_query(tid, "missing v"))?
        .raw();
    if value.len() > MAX_VALUE {
        return Err(refuse(ERROR_VALUE_TOO_BIG, "message (v field) too big"));
    }
    let token = token_field(tid, args)?;
    let cas = args.get(b"cas").and_then(|n| n.as_int());
    let item = match args.get(b"k") {
        None => Item::Immutable {
            value: value.to_vec(),
        },
        Some(k) => {
            let key = k
                .as_bytes()
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .ok_or_else(|| bad_query(tid, "bad k"))?;
            let signature = args
                .get(b"sig")
                .and_then(|n| n.as_bytes())
                .and_then(|s| <[u8; 64]>::try_from(s).ok())
                .ok_or_else(|| bad_query(tid, "bad sig"))?;
            let seq = args
                .get(b"seq")
                .and_then(|n| n.as_int())
                .filter(|&seq| seq >= 0)
                .ok_or_else(|| bad_query(tid, "bad seq"))?;
            Item::Mutable(MutableItem {
                key,
                salt: salt.to_vec(),
                seq,
                value: value.to_vec(),
                signature,
            })
        }
    };
    Ok(Query::Put { item, token, cas })
}

fn decode_response(r: &Dict<'_, '_>) -> Result<Response, KrpcError> {
    let mut nodes = Vec::new();
    for (key, v6) in [(&b"nodes"[..], false), (&b"nodes6"[..], true)] {
        if let Some(bytes) = r.get(key).and_then(|n| n.as_bytes()) {
            nodes.extend(decode_nodes(bytes, v6).ok_or(KrpcError::Malformed("bad nodes"))?);
        }
    }
    let values = r
        .get(b"values")
        .and_then(|n| n.as_list())
        .map(|list| {
            list.iter()
                .filter_map(|v| v.as_bytes().and_then(compact::peer))
                .take(MAX_VALUES)
                .collect()
        })
        .unwrap_or_default();
    let token = r
        .get(b"token")
        .and_then(|n| n.as_bytes())
        .filter(|t| t.len() <= MAX_TOKEN)
        .map(<[u8]>::to_vec);
    let item = ItemFields {
        value: r
            .get(b"v")
            .map(|n| n.raw())
            .filter(|v| v.len() <= MAX_VALUE)
            .map(<[u8]>::to_vec),
        key: r
            .get(b"k")
            .and_then(|n| n.as_bytes())
            .and_then(|k| k.try_into().ok()),
        signature: r
            .get(b"sig")
            .and_then(|n| n.as_bytes())
            .and_then(|k| k.try_into().ok()),
        seq: r.get(b"seq").and_then(|n| n.as_int()),
    };
    let sample = match r.get(b"samples").and_then(|n| n.as_bytes()) {
        None => None,
        Some(bytes) if bytes.len().is_multiple_of(20) => Some(InfohashSample {
            interval: r
                .get(b"interval")
                .and_then(|n| n.as_int())
                .map_or(0, |i| i.clamp(0, i64::from(MAX_SAMPLE_INTERVAL)) as u32),
            num: r
                .get(b"num")
                .and_then(|n| n.as_int())
                .map_or(0, |n| n.max(0) as u64),
            samples: bytes
                .chunks_exact(20)
                .filter_map(NodeId::from_slice)
                .collect(),
        }),
        Some(_) => return Err(KrpcError::Malformed("bad samples")),
    };
    // Both filters or none; a filter of the wrong size is ignored (BEP 33 fixes it).
    let filter = |key: &[u8]| {
        r.get(key)
            .and_then(|n| n.as_bytes())
            .and_then(Bloom::from_bytes)
    };
    let scrape = match (filter(b"BFsd"), filter(b"BFpe")) {
        (Some(seeds), Some(peers)) => Some(Box::new(ScrapeFilters { seeds, peers })),
        _ => None,
    };
    Ok(Response {
        nodes,
        values,
        token,
        item,
        sample,
        scrape,
    })
}

/// Compact nodes: 26 bytes each, or 38 for IPv6 (`nodes6`). `None` when the length is
/// not a multiple of that.
pub fn decode_nodes(bytes: &[u8], v6: bool) -> Option<Vec<NodeInfo>> {
    let width = if v6 { 38 } else { 26 };
    if !bytes.len().is_multiple_of(width) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(width)
            .filter_map(|c| {
                let id = NodeId::from_slice(&c[..20])?;
                let addr = compact::peer(&c[20..])?;
                (!addr.ip().is_unspecified()).then_some(NodeInfo { id, addr })
            })
            .collect(),
    )
}

/// The nodes of one family (`v6` or not) in compact form.
pub fn encode_nodes(nodes: &[NodeInfo], v6: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(nodes.len() * 38);
    for n in nodes.iter().filter(|n| n.addr.is_ipv6() == v6) {
        out.extend_from_slice(&n.id.0);
        compact::push(n.addr, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 20])
    }

    #[test]
    fn queries_round_trip() {
        for q in [
            Query::Ping,
            Query::FindNode { target: id(2) },
            Query::GetPeers {
                info_hash: id(3),
                scrape: false,
            },
            Query::GetPeers {
                info_hash: id(3),
                scrape: true,
            },
            Query::AnnouncePeer {
                info_hash: id(4),
                port: 6881,
                implied_port: false,
                token: b"tok".to_vec(),
                seed: false,
            },
            Query::AnnouncePeer {
                info_hash: id(4),
                port: 6881,
                implied_port: true,
                token: b"tok".to_vec(),
                seed: true,
            },
            Query::Get {
                target: id(5),
                seq: Some(3),
            },
            Query::SampleInfohashes { target: id(6) },
            Query::Get {
                target: id(5),
                seq: None,
            },
            Query::Put {
                item: Item::immutable(b"li1e3:abce".to_vec()).unwrap(),
                token: b"tok".to_vec(),
                cas: None,
            },
            Query::Put {
                item: Item::Mutable(
                    crate::item::ItemSigner::from_secret(&[9; 32])
                        .unwrap()
                        .sign(b"salty", 7, b"d1:ai1ee".to_vec())
                        .unwrap(),
                ),
                token: b"tok".to_vec(),
                cas: Some(6),
            },
        ] {
            let m = Message {
                tid: b"aa".to_vec(),
                sender: Some(id(1)),
                your_ip: None,
                read_only: false,
                body: Body::Query(q),
            };
            assert_eq!(Message::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn responses_and_errors_round_trip() {
        let m = Message {
            tid: vec![0, 1, 2, 3],
            sender: Some(id(9)),
            your_ip: Some("1.2.3.4:5".parse().unwrap()),
            read_only: false,
            body: Body::Response(Response {
                nodes: vec![NodeInfo {
                    id: id(7),
                    addr: "10.0.0.1:6881".parse().unwrap(),
                }],
                values: vec!["127.0.0.1:1".parse().unwrap(), "[::1]:2".parse().unwrap()],
                token: Some(vec![1; 8]),
                scrape: Some(Box::new(ScrapeFilters {
                    seeds: {
                        let mut b = Bloom::default();
                        b.insert("10.0.0.1".parse().unwrap());
                        b
                    },
                    peers: Bloom::default(),
                })),
                item: ItemFields {
                    value: Some(b"l1:xi-3ee".to_vec()),
                    key: Some([4; 32]),
                    signature: Some([5; 64]),
                    seq: Some(9),
                },
                sample: Some(InfohashSample {
                    interval: 60,
                    num: 1234,
                    samples: vec![id(1), id(2)],
                }),
            }),
        };
        assert_eq!(Message::decode(&m.encode()), Ok(m));
        let e = Message {
            tid: b"x".to_vec(),
            sender: None,
            your_ip: None,
            read_only: false,
            body: Body::Error {
                code: 203,
                message: "bad".into(),
            },
        };
        assert_eq!(Message::decode(&e.encode()), Ok(e));
    }

    /// BEP 32: IPv6 nodes travel in `nodes6`, 38 bytes each, beside IPv4 ones in
    /// `nodes`; a `nodes6` of the wrong length is refused.
    #[test]
    fn ipv6_nodes_go_in_nodes6() {
        let nodes = vec![
            NodeInfo {
                id: id(1),
                addr: "10.0.0.1:6881".parse().unwrap(),
            },
            NodeInfo {
                id: id(2),
                addr: "[2001:db8::7]:6882".parse().unwrap(),
            },
        ];
        let m = Message {
            tid: vec![7],
            sender: Some(id(9)),
            your_ip: None,
            read_only: false,
            body: Body::Response(Response {
                nodes: nodes.clone(),
                ..Response::default()
            }),
        };
        let bytes = m.encode();
        let six = encode_nodes(&nodes, true);
        assert_eq!(six.len(), 38);
        assert_eq!(
            &six[20..36],
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert!(bytes.windows(9).any(|w| w == b"6:nodes63"), "{bytes:?}");
        assert_eq!(Message::decode(&bytes), Ok(m));
        let ragged = b"d1:rd2:id20:aaaaaaaaaaaaaaaaaaaa6:nodes65:12345e1:t1:x1:y1:re";
        assert!(Message::decode(ragged).is_err());
    }

    /// The example ping from BEP 5, byte for byte.
    #[test]
    fn decodes_the_bep_example() {
        let ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
        let m = Message::decode(ping).unwrap();
        assert_eq!(m.body, Body::Query(Query::Ping));
        assert_eq!(m.sender, NodeId::from_slice(b"abcdefghij0123456789"));
        let reply = Message {
            tid: b"aa".to_vec(),
            sender: NodeId::from_slice(b"mnopqrstuvwxyz123456"),
            your_ip: None,
            read_only: false,
            body: Body::Response(Response::default()),
        };
        assert_eq!(
            reply.encode(),
            b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re"
        );
    }

    #[test]
    fn bad_packets_are_errors() {
        let too_big = vec![b'x'; MAX_PACKET + 1];
        assert!(matches!(
            Message::decode(&too_big),
            Err(KrpcError::TooLarge(_))
        ));
        for bad in [
            &b""[..],
            b"le",
            b"d1:y1:qe",
            b"d1:t2:aa1:y1:qe",
            b"d1:t2:aa1:y1:r1:rd2:id3:abcee",
            b"d1:rd2:id20:mnopqrstuvwxyz1234565:nodes5:12345e1:t2:aa1:y1:re",
            b"d1:t2:aa1:y1:ze",
        ] {
            assert!(Message::decode(bad).is_err(), "{bad:?}");
        }
        // An unknown method and a short id are answerable errors.
        let unknown = b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:aa1:y1:qe";
        assert!(matches!(
            Message::decode(unknown),
            Err(KrpcError::BadQuery {
                code: ERROR_METHOD_UNKNOWN,
                ..
            })
        ));
        let short = b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe";
        assert!(matches!(
            Message::decode(short),
            Err(KrpcError::BadQuery {
                code: ERROR_PROTOCOL,
                ..
            })
        ));
        let deep = format!("d1:t2:aa1:y1:q1:x{}{}e", "l".repeat(50), "e".repeat(50));
        assert!(Message::decode(deep.as_bytes()).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_packets_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Message::decode(&bytes);
        }
    }
}
