//! BEP 14 local service discovery: peers on the same network announce the torrents they
//! run with small HTTP-like UDP messages to a multicast group: 239.192.152.143:6771 for
//! IPv4, [ff15::efc0:988f]:6771 for IPv6.
//!
//! [`Announcement`] is the message; parsing is strict and bounded (one datagram of at
//! most [`MAX_PACKET`] bytes, at most [`MAX_INFO_HASHES`] info-hashes). [`spawn`] joins
//! the group of each family we listen in, on each interface we listen on (see
//! [`interfaces`]), announces one torrent there (three times a round, as libtorrent does,
//! since multicast is lossy; a round every [`ANNOUNCE_INTERVAL`]), and turns other
//! peers' announcements of it into addresses on a channel (our own echo is recognised
//! by its cookie; each source is reported at most once per [`SOURCE_QUIET`]). It is off
//! unless asked for: multicast leaves the machine, which tests must not do.

mod interfaces;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use shoal_core::{dual_stack, InfoHash};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

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
/// A round's announcements after its first, as offsets from it: a lost datagram is not
/// made up for until the next round otherwise.
const RESENDS: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(6)];
/// A source is reported at most once per this long, however often it announces.
pub const SOURCE_QUIET: Duration = Duration::from_secs(60);
/// Sources remembered for [`SOURCE_QUIET`]; a flood of spoofed sources clears the map.
const MAX_SOURCES: usize = 1024;

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
                "cookie" => cookie = Some(value.chars().take(64).collect()),
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
    /// both in each announcement, as libtorrent sends them.
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

/// Starts announcing and listening in every group of `config` that can be joined; peers
/// found arrive on the channel until it is dropped. An error only if no group could be
/// (a group that fails beside one that works is logged: an IPv6 group on a host with no
/// IPv6 multicast route, say).
pub fn spawn(config: LsdConfig) -> io::Result<mpsc::UnboundedReceiver<Vec<SocketAddr>>> {
    let interfaces = Interfaces::for_listener(config.listen.ip());
    let cookie = format!("{:016x}", rand::random::<u64>());
    let (tx, rx) = mpsc::unbounded_channel();
    let mut first_error = None;
    let mut joined = 0;
    for group in config.groups_listened() {
        match Channel::open(group, &interfaces) {
            Ok(channel) => {
                joined += 1;
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
        Some(e) if joined == 0 => Err(e),
        None if joined == 0 => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no --lsd-group of {}'s family", config.listen),
        )),
        _ => Ok(rx),
    }
}

/// One group: a socket that receives it on the group's port, joined on each interface,
/// and one that sends to it through each interface.
struct Channel {
    group: SocketAddr,
    receiver: UdpSocket,
    senders: Vec<UdpSocket>,
}

impl Channel {
    fn open(group: SocketAddr, interfaces: &Interfaces) -> io::Result<Channel> {
        let domain = Domain::for_address(group);
        // Receiving needs the group's port on every address (several programs may share
        // it, hence reuse); the group is joined on each interface that works.
        let receiver = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        receiver.set_reuse_address(true)?;
        let any: SocketAddr = match group {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, group.port()).into(),
            SocketAddr::V6(_) => {
                receiver.set_only_v6(true)?;
                (Ipv6Addr::UNSPECIFIED, group.port()).into()
            }
        };
        receiver.bind(&any.into())?;
        let mut senders = Vec::new();
        let mut last_error = None;
        match group.ip() {
            IpAddr::V4(ip) => {
                for &interface in &interfaces.v4 {
                    let sender = receiver
                        .join_multicast_v4(&ip, &interface)
                        .and_then(|()| sender_v4(interface));
                    match sender {
                        Ok(sender) => senders.push(sender),
                        Err(e) => last_error = Some(e),
                    }
                }
            }
            IpAddr::V6(ip) => {
                for &interface in &interfaces.v6 {
                    let sender = receiver
                        .join_multicast_v6(&ip, interface)
                        .and_then(|()| sender_v6(interface));
                    match sender {
                        Ok(sender) => senders.push(sender),
                        Err(e) => last_error = Some(e),
                    }
                }
            }
        }
        if senders.is_empty() {
            return Err(last_error.unwrap_or_else(|| io::ErrorKind::NotFound.into()));
        }
        receiver.set_nonblocking(true)?;
        let receiver = UdpSocket::from_std(std::net::UdpSocket::from(receiver))?;
        let senders = senders
            .into_iter()
            .map(|s| UdpSocket::from_std(std::net::UdpSocket::from(s)))
            .collect::<io::Result<_>>()?;
        Ok(Channel {
            group,
            receiver,
            senders,
        })
    }

    /// Announces `announcement` in rounds and reports the sources of other peers'
    /// announcements of `ours` on `tx`, until `tx` is closed.
    async fn run(
        self,
        announcement: Announcement,
        ours: Vec<InfoHash>,
        tx: mpsc::UnboundedSender<Vec<SocketAddr>>,
    ) {
        let cookie = announcement.cookie.clone();
        let packet = announcement.encode(self.group);
        let mut round = Instant::now();
        let mut resends = RESENDS.iter();
        let mut next = round;
        let mut heard: HashMap<IpAddr, Instant> = HashMap::new();
        let mut buf = vec![0u8; MAX_PACKET + 1];
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {
                    for sender in &self.senders {
                        let _ = sender.send_to(&packet, self.group).await;
                    }
                    next = match resends.next() {
                        Some(&after) => round + after,
                        None => {
                            round += ANNOUNCE_INTERVAL;
                            resends = RESENDS.iter();
                            round
                        }
                    };
                }
                received = self.receiver.recv_from(&mut buf) => {
                    let Ok((len, from)) = received else { continue };
                    let Some(a) = Announcement::parse(&buf[..len]) else { continue };
                    if a.cookie.is_some() && a.cookie == cookie
                        || !a.info_hashes.iter().any(|h| ours.contains(h))
                    {
                        continue;
                    }
                    let now = Instant::now();
                    if heard.get(&from.ip()).is_some_and(|&t| now < t + SOURCE_QUIET) {
                        continue;
                    }
                    if heard.len() >= MAX_SOURCES {
                        heard.retain(|_, t| now < *t + SOURCE_QUIET);
                        if heard.len() >= MAX_SOURCES {
                            heard.clear();
                        }
                    }
                    heard.insert(from.ip(), now);
                    if tx.send(vec![peer_at(from, a.port)]).is_err() {
                        return;
                    }
                }
                () = tx.closed() => return,
            }
        }
    }
}

/// The listener of a peer whose announcement came from `from`: its address (with the
/// interface it came in on, for a link-local IPv6 one) and the port it announced.
fn peer_at(from: SocketAddr, port: u16) -> SocketAddr {
    match from {
        SocketAddr::V4(from) => SocketAddr::new(IpAddr::V4(*from.ip()), port),
        SocketAddr::V6(from) => {
            let ip = *from.ip();
            match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(IpAddr::V4(v4), port),
                None if ip.is_unicast_link_local() => {
                    SocketAddrV6::new(ip, port, 0, from.scope_id()).into()
                }
                None => SocketAddrV6::new(ip, port, 0, 0).into(),
            }
        }
    }
}

/// A socket that multicasts through the IPv4 interface holding `interface` (sent from
/// that address, so announcements carry it), or the system's choice for 0.0.0.0.
fn sender_v4(interface: Ipv4Addr) -> io::Result<Socket> {
    let sender = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sender.bind(&SocketAddrV4::new(interface, 0).into())?;
    if !interface.is_unspecified() {
        sender.set_multicast_if_v4(&interface)?;
    }
    sender.set_multicast_loop_v4(true)?;
    sender.set_multicast_ttl_v4(1)?;
    sender.set_nonblocking(true)?;
    Ok(sender)
}

/// A socket that multicasts through the IPv6 interface of index `interface` (0: the
/// system's choice); the system picks the source address, of the group's scope.
fn sender_v6(interface: u32) -> io::Result<Socket> {
    let sender = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    sender.set_only_v6(true)?;
    sender.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)).into())?;
    sender.set_multicast_if_v6(interface)?;
    sender.set_multicast_loop_v6(true)?;
    sender.set_multicast_hops_v6(1)?;
    sender.set_nonblocking(true)?;
    Ok(sender)
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
        ) {
            let text = format!("BT-SEARCH * HTTP/1.1\r\n{}\r\n\r\n", lines.join("\r\n"));
            for input in [&packet[..], text.as_bytes()] {
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
        assert_eq!(from_b, vec!["127.0.2.211:19962".parse().unwrap()]);
        assert_eq!(from_a, vec!["127.0.2.210:19961".parse().unwrap()]);
    }

    #[test]
    fn a_peer_is_reached_at_the_source_of_its_announcement() {
        let at = |from: &str| peer_at(from.parse().unwrap(), 6881).to_string();
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
