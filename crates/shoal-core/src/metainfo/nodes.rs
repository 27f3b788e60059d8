//! A torrent's DHT nodes (BEP 5's `nodes` key): where a trackerless torrent's maker
//! says the DHT can be entered, so that a downloader needs no public router (a private
//! network's DHT, or one cut off from the Internet).
//!
//! The key sits beside `info`, so it never changes the info-hash. Entries are
//! `[host, port]` lists, the host a name or an address (an IPv6 one without brackets,
//! as libtorrent writes it).

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use shoal_bencode::{Node, Value};

/// At most this many entries are kept: each may be a name to resolve, and BEP 5 asks
/// for the maker's K (8) closest nodes.
pub const MAX_NODES: usize = 64;

/// The longest host name DNS allows.
const MAX_HOST_LEN: usize = 253;

/// One DHT node to bootstrap from: a host name or an IP address, and a UDP port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DhtNode {
    host: String,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DhtNodeError {
    #[error("'{0}' is not HOST:PORT (an IPv6 address goes in brackets: [::1]:6881)")]
    Form(String),
    #[error("'{0}' is not a host name or an IP address")]
    Host(String),
    #[error("'{0}' is not a port from 1 to 65535")]
    Port(String),
}

impl DhtNode {
    /// A node at `host` (a name, or an IPv4 or IPv6 address without brackets) and `port`.
    pub fn new(host: &str, port: u16) -> Result<Self, DhtNodeError> {
        if port == 0 {
            return Err(DhtNodeError::Port(port.to_string()));
        }
        let valid = !host.is_empty()
            && host.len() <= MAX_HOST_LEN
            && host
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'[' | b']' | b'/'));
        if !valid {
            return Err(DhtNodeError::Host(host.to_owned()));
        }
        Ok(DhtNode {
            host: host.to_owned(),
            port,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// `HOST:PORT`, with an IPv6 address in brackets (what [`std::net::ToSocketAddrs`] and
/// `--dht-bootstrap` read).
impl fmt::Display for DhtNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.parse::<Ipv6Addr>().is_ok() {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for DhtNode {
    type Err = DhtNodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let form = || DhtNodeError::Form(s.to_owned());
        let (host, port) = s.rsplit_once(':').ok_or_else(form)?;
        let host = match host.strip_prefix('[') {
            Some(bracketed) => {
                let inner = bracketed.strip_suffix(']').ok_or_else(form)?;
                inner
                    .parse::<Ipv6Addr>()
                    .map_err(|_| DhtNodeError::Host(inner.to_owned()))?;
                inner
            }
            // A colon left in the host is an IPv6 address without its brackets.
            None if host.contains(':') => return Err(form()),
            None => host,
        };
        let port = port
            .parse::<u16>()
            .map_err(|_| DhtNodeError::Port(port.to_owned()))?;
        DhtNode::new(host, port)
    }
}

/// The usable entries of a `nodes` value, at most [`MAX_NODES`]. A malformed entry (not
/// a `[string, integer]` list, an empty or odd host, a port outside 1–65535) is skipped,
/// as a dead router is: the torrent stays usable.
pub(super) fn parse(node: Option<Node>) -> Vec<DhtNode> {
    let Some(list) = node.and_then(|n| n.as_list()) else {
        return Vec::new();
    };
    let mut nodes = Vec::new();
    for entry in list.iter().filter_map(|e| e.as_list()) {
        let mut fields = entry.iter();
        let (Some(host), Some(port), None) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let host = host.as_str();
        let port = port.as_int().and_then(|p| u16::try_from(p).ok());
        if let Some(node) = host.zip(port).and_then(|(h, p)| DhtNode::new(h, p).ok()) {
            if !nodes.contains(&node) {
                nodes.push(node);
            }
        }
        if nodes.len() == MAX_NODES {
            break;
        }
    }
    nodes
}

/// The `nodes` value for `nodes`.
pub(super) fn value(nodes: &[DhtNode]) -> Value {
    Value::List(
        nodes
            .iter()
            .map(|n| Value::List(vec![n.host.as_str().into(), i64::from(n.port).into()]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_bencode::{decode, Limits};

    fn parsed(bencoded: &[u8]) -> Vec<String> {
        let doc = decode(bencoded, Limits::default()).unwrap();
        parse(Some(doc.root()))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn names_and_addresses_of_both_families() {
        assert_eq!(
            parsed(b"ll9:127.0.0.5i6881eel3:::1i7000eel14:router.examplei25401eee"),
            ["127.0.0.5:6881", "[::1]:7000", "router.example:25401"]
        );
    }

    #[test]
    fn malformed_entries_are_skipped() {
        let bencoded: &[u8] = b"l\
            l9:127.0.0.1i99999ee\
            l0:i5ee\
            l9:127.0.0.1i0ee\
            l3:fooe\
            i5e\
            l4:a hoi5ee\
            li5e3:fooe\
            l3:fooi1ei2ee\
            l9:127.0.0.1i-1ee\
            l3:fooi6881ee\
            l3:fooi6881ee\
            e";
        assert_eq!(parsed(bencoded), ["foo:6881"]);
        assert!(parsed(b"3:foo").is_empty());
    }

    #[test]
    fn at_most_max_nodes_are_kept() {
        let mut bencoded = b"l".to_vec();
        for port in 1..=200 {
            bencoded.extend(format!("l4:hosti{port}ee").bytes());
        }
        bencoded.push(b'e');
        assert_eq!(parsed(&bencoded).len(), MAX_NODES);
    }

    #[test]
    fn written_as_parsed() {
        let nodes: Vec<DhtNode> = ["[2001:db8::1]:1941", "10.0.0.1:6881", "dht.example:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let bencoded = value(&nodes).to_bytes();
        assert_eq!(
            bencoded,
            b"ll11:2001:db8::1i1941eel8:10.0.0.1i6881eel11:dht.examplei1eee"
        );
        let doc = decode(&bencoded, Limits::default()).unwrap();
        assert_eq!(parse(Some(doc.root())), nodes);
    }

    #[test]
    fn host_port_arguments() {
        let node: DhtNode = "[::1]:6881".parse().unwrap();
        assert_eq!((node.host(), node.port()), ("::1", 6881));
        assert_eq!(node.to_string(), "[::1]:6881");
        assert!(matches!(
            "::1:6881".parse::<DhtNode>(),
            Err(DhtNodeError::Form(_))
        ));
        assert!(matches!(
            "[x]:6881".parse::<DhtNode>(),
            Err(DhtNodeError::Host(_))
        ));
        assert!(matches!(
            "host".parse::<DhtNode>(),
            Err(DhtNodeError::Form(_))
        ));
        assert!(matches!(
            "host:0".parse::<DhtNode>(),
            Err(DhtNodeError::Port(_))
        ));
        assert!(matches!(
            "host:70000".parse::<DhtNode>(),
            Err(DhtNodeError::Port(_))
        ));
        assert!(matches!(
            ":6881".parse::<DhtNode>(),
            Err(DhtNodeError::Host(_))
        ));
    }
}
