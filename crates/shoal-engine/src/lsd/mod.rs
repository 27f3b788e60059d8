//! BEP 14 local service discovery: peers on the same network announce the torrents they
//! run with small HTTP-like UDP messages to a multicast group: 239.192.152.143:6771 for
//! IPv4, [ff15::efc0:988f]:6771 for IPv6.
//!
//! [`Announcement`] is the message; parsing is strict and bounded (one datagram of at
//! most [`MAX_PACKET`] bytes, at most [`MAX_INFO_HASHES`] info-hashes). [`spawn`] joins
//! the group of each family we listen in, on each interface we listen on (see
//! [`interfaces`] and [`channel`]), announces one torrent there (three times a round, as
//! libtorrent does, since multicast is lossy; a round every [`ANNOUNCE_INTERVAL`]), and
//! turns other peers' announcements of it into addresses on a channel (our own echo is
//! recognised by its cookie; each source is reported at most once per [`SOURCE_QUIET`]).
//! It is off unless asked for: multicast leaves the machine, which tests must not do.

mod channel;
mod interfaces;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use shoal_core::{dual_stack, InfoHash};
use tokio::sync::mpsc;

use crate::PeerFeed;
use channel::Channel;
pub use interfaces::Interfaces;

/// The IPv4 group and port of BEP 14.
pub const GROUP_V4: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(239, 192, 152, 143), 6771));
/// The IPv6 group and port of BEP 14 (site-local scope).
pub const GROUP_V6: SocketAddr = SocketAddr::V6(SocketAddrV6::new(
    Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0xefc0, 0x988f),
    6771,
    0,
    0,
));
/// Announcements are a few hundred bytes; anything longer is dropped unread.
pub const MAX_PACKET: usize = 1400;
/// More info-hashes than this in one announcement are ignored.
pub const MAX_INFO_HASHES: usize = 16;
/// How often a round of announcements goes out (BEP 14 allows once a minute at most per
/// torrent).
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// A source is reported at most once per this long, however often it announces.
pub const SOURCE_QUIET: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub port: u16,
    pub info_hashes: Vec<InfoHash>,
    pub cookie: Option<String>,
}

impl Announcement {
    pub fn encode(&self, group: SocketAddr) -> Vec<u8> {
        let mut out = format!(
            "BT-SEARCH * HTTP/1.1\r\nHost: {group}\r\nPort: {}\r\n",
            self.port
        );
        for h in &self.info_hashes {
            out.push_str(&format!("Infohash: {}\r\n", h.to_hex()));
        }
        if let Some(cookie) = &self.cookie {
            out.push_str(&format!("cookie: {cookie}\r\n"));
        }
        out.push_str("\r\n\r\n");
        out.into_bytes()
    }

    /// `None` for anything that is not a well-formed announcement.
    pub fn parse(packet: &[u8]) -> Option<Self> {
        if packet.len() > MAX_PACKET {
            return None;
        }
        let text = std::str::from_utf8(packet).ok()?;
        let mut lines = text.split("\r\n");
        if lines.next()? != "BT-SEARCH * HTTP/1.1" {
            return None;
        }
        let (mut port, mut info_hashes, mut cookie) = (None, Vec::new(), None);
        for line in lines.take_while(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':')?;
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "port" => port = value.parse::<u16>().ok().filter(|&p| p != 0),
                "infohash" if info_hashes.len() < MAX_INFO_HASHES && value.len() == 40 => {
                    info_hashes.push(value.parse().ok()?);
                }
                "cookie" => {
                    // Cut, then trimmed: what is kept reads back the same.
                    let cut: String = value.chars().take(64).collect();
                    cookie = Some(cut.trim().to_owned());
                }
                _ => {}
            }
        }
        Some(Announcement {
            port: port?,
            info_hashes,
            cookie,
        })
    }
}

#[derive(Debug, Clone)]
pub struct LsdConfig {
    /// The groups to announce in; those of a family we do not listen in are left out.
    pub groups: Vec<SocketAddr>,
    /// Our BitTorrent listen address: its port is the one announced, and its address
    /// says where to multicast: that address's interface, or every interface for an
    /// unspecified one (`[::]` on a dual-stack system: both families).
    pub listen: SocketAddr,
    /// The torrent's info-hashes: a hybrid torrent's two (see `Metainfo::swarm_hashes`),
    /// both in each announcement (BEP 14 allows several; libtorrent sends one an
    /// announcement, and reads several).
    pub info_hashes: Vec<InfoHash>,
}

impl LsdConfig {
    /// The groups of the families `listen` takes connections in.
    fn groups_listened(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let ip = self.listen.ip().to_canonical();
        let both = dual_stack::is_dual_stack(self.listen);
        self.groups
            .iter()
            .copied()
            .filter(move |g| both || g.is_ipv4() == ip.is_ipv4())
    }
}

/// Starts announcing and listening in every group of `config` (on the interfaces there
/// are now and those that come later); peers found arrive on the channel until it is
/// dropped. An error if no group's socket could be opened.
pub fn spawn(config: LsdConfig) -> io::Result<PeerFeed> {
    let cookie = format!("{:016x}", rand::random::<u64>());
    let (tx, rx) = mpsc::unbounded_channel();
    let mut first_error = None;
    let mut opened = 0;
    for group in config.groups_listened() {
        if !group.ip().is_multicast() {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "not a multicast group");
            tracing::warn!(%group, "local service discovery: {e}");
            first_error.get_or_insert(e);
            continue;
        }
        match Channel::open(group, config.listen.ip()) {
            Ok(channel) => {
                opened += 1;
                let announcement = Announcement {
                    port: config.listen.port(),
                    info_hashes: config.info_hashes.clone(),
                    cookie: Some(cookie.clone()),
                };
                tokio::spawn(channel.run(announcement, config.info_hashes.clone(), tx.clone()));
            }
            Err(e) => {
                tracing::warn!(%group, "local service discovery: {e}");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if opened == 0 => Err(e),
        None if opened == 0 => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no --lsd-group of {}'s family", config.listen),
        )),
        _ => Ok(rx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(b: u8) -> InfoHash {
        InfoHash([b; 20])
    }

    #[test]
    fn round_trip_and_a_foreign_announcement() {
        let a = Announcement {
            port: 6881,
            info_hashes: vec![hash(1), hash(2)],
            cookie: Some("abc".into()),
        };
        assert_eq!(Announcement::parse(&a.encode(GROUP_V4)), Some(a.clone()));
        let v6 = a.encode(GROUP_V6);
        assert!(String::from_utf8_lossy(&v6).contains("\r\nHost: [ff15::efc0:988f]:6771\r\n"));
        assert_eq!(Announcement::parse(&v6), Some(a));
        let theirs = b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nport: 51413\r\nINFOHASH: 0101010101010101010101010101010101010101\r\n\r\n\r\n";
        let parsed = Announcement::parse(theirs).unwrap();
        assert_eq!(parsed.port, 51413);
        assert_eq!(parsed.info_hashes, vec![hash(1)]);
    }

    proptest::proptest! {
        /// Whatever arrives, parsing stays within its bounds and what it accepts encodes
        /// back to the same announcement.
        #[test]
        fn parsing_is_bounded_and_round_trips(
            packet in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1500),
            lines in proptest::collection::vec("(Port|port|Infohash|INFOHASH|cookie|Host|X): ?[0-9a-f]{0,41}", 0..24),
            cookie in "[a-z ]{0,90}",
        ) {
            let text = format!(
                "BT-SEARCH * HTTP/1.1\r\n{}\r\ncookie: {cookie}\r\n\r\n",
                lines.join("\r\n")
            );
            // Random bytes after a valid first line, too.
            let mut tail = b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\n".to_vec();
            tail.extend_from_slice(&packet);
            for input in [&packet[..], text.as_bytes(), &tail[..]] {
                if let Some(a) = Announcement::parse(input) {
                    proptest::prop_assert!(a.info_hashes.len() <= MAX_INFO_HASHES);
                    proptest::prop_assert!(a.port != 0);
                    proptest::prop_assert_eq!(Announcement::parse(&a.encode(GROUP_V6)), Some(a));
                }
            }
        }
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            &b""[..],
            b"M-SEARCH * HTTP/1.1\r\nPort: 1\r\n\r\n",
            b"BT-SEARCH * HTTP/1.1\r\nInfohash: 0101010101010101010101010101010101010101\r\n\r\n",
            b"BT-SEARCH * HTTP/1.1\r\nPort: 0\r\n\r\n",
            b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: zz01010101010101010101010101010101010101\r\n\r\n",
            b"BT-SEARCH * HTTP/1.1\r\nno colon\r\n\r\n",
            b"\xff\xfe",
        ] {
            assert_eq!(Announcement::parse(bad), None, "{bad:?}");
        }
        let huge = vec![b'x'; MAX_PACKET + 1];
        assert_eq!(Announcement::parse(&huge), None);
        let many = format!(
            "BT-SEARCH * HTTP/1.1\r\nPort: 1\r\n{}\r\n",
            "Infohash: 0101010101010101010101010101010101010101\r\n".repeat(20)
        );
        assert_eq!(
            Announcement::parse(many.as_bytes())
                .unwrap()
                .info_hashes
                .len(),
            MAX_INFO_HASHES
        );
    }

    /// Two announcers on loopback (127.0.2.210/211) and a private group port find each
    /// other and not themselves: one announces a hybrid torrent's two hashes, the other
    /// knows only its second one.
    #[tokio::test]
    async fn two_announcers_on_loopback_find_each_other() {
        let group = SocketAddr::new(GROUP_V4.ip(), 19960);
        let config = |ip: [u8; 4], port, info_hashes| LsdConfig {
            // The IPv6 group is left out: the listener is IPv4.
            groups: vec![SocketAddr::new(GROUP_V6.ip(), 19960), group],
            listen: SocketAddr::from((ip, port)),
            info_hashes,
        };
        let mut a = spawn(config([127, 0, 2, 210], 19961, vec![hash(9), hash(8)])).unwrap();
        let mut b = spawn(config([127, 0, 2, 211], 19962, vec![hash(8)])).unwrap();
        let limit = Duration::from_secs(5);
        let from_b = tokio::time::timeout(limit, a.recv())
            .await
            .unwrap()
            .unwrap();
        let from_a = tokio::time::timeout(limit, b.recv())
            .await
            .unwrap()
            .unwrap();
        // Each found the other in the swarm they share: the hybrid's second.
        let found = |peer: &str| crate::Found {
            source: crate::PeerSource::Lsd,
            swarm: hash(8),
            peers: vec![peer.parse().unwrap()],
        };
        assert_eq!(from_b, found("127.0.2.211:19962"));
        assert_eq!(from_a, found("127.0.2.210:19961"));
    }

    #[test]
    fn a_peer_is_reached_at_the_source_of_its_announcement() {
        let at = |from: &str| channel::peer_at(from.parse().unwrap(), 6881).to_string();
        assert_eq!(at("10.0.0.5:40000"), "10.0.0.5:6881");
        assert_eq!(at("[::ffff:10.0.0.5]:40000"), "10.0.0.5:6881");
        assert_eq!(at("[fd00::5]:40000"), "[fd00::5]:6881");
        // A link-local address means nothing without the interface it was heard on.
        assert_eq!(at("[fe80::5%3]:40000"), "[fe80::5%3]:6881");
    }

    #[test]
    fn only_the_groups_of_the_listeners_families_are_joined() {
        let config = |listen: &str| LsdConfig {
            groups: vec![GROUP_V4, GROUP_V6],
            listen: listen.parse().unwrap(),
            info_hashes: vec![],
        };
        let groups = |listen| config(listen).groups_listened().collect::<Vec<_>>();
        assert_eq!(groups("0.0.0.0:6881"), vec![GROUP_V4]);
        assert_eq!(groups("[fd00::1]:6881"), vec![GROUP_V6]);
        assert_eq!(groups("[::ffff:10.0.0.1]:6881"), vec![GROUP_V4]);
        if dual_stack::is_dual_stack("[::]:6881".parse().unwrap()) {
            assert_eq!(groups("[::]:6881"), vec![GROUP_V4, GROUP_V6]);
        }
    }
}
