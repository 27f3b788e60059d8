//! BEP 14 local service discovery: peers on the same network announce the torrents they
//! run with small HTTP-like UDP messages to a multicast group (239.192.152.143:6771).
//!
//! [`Announcement`] is the message; parsing is strict and bounded (one datagram of at
//! most [`MAX_PACKET`] bytes, at most [`MAX_INFO_HASHES`] info-hashes). [`spawn`] joins
//! the group, announces one torrent every [`ANNOUNCE_INTERVAL`], and turns other
//! peers' announcements of it into addresses on a channel (our own echo is recognised
//! by its cookie; each source is reported at most once per [`SOURCE_QUIET`]). It is off
//! unless asked for: multicast leaves the machine, which tests must not do.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use shoal_core::InfoHash;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The IPv4 group and port of BEP 14.
pub const DEFAULT_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 192, 152, 143), 6771);
/// Announcements are a few hundred bytes; anything longer is dropped unread.
pub const MAX_PACKET: usize = 1400;
/// More info-hashes than this in one announcement are ignored.
pub const MAX_INFO_HASHES: usize = 16;
/// How often we announce (BEP 14 allows once a minute at most per torrent).
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(5 * 60);
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
    pub fn encode(&self, group: SocketAddrV4) -> Vec<u8> {
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
    pub group: SocketAddrV4,
    /// The local address to announce from and listen on (0.0.0.0: the system's choice).
    pub interface: Ipv4Addr,
    /// The torrent's info-hashes: a hybrid torrent's two (see `Metainfo::swarm_hashes`),
    /// both in each announcement, as libtorrent sends them.
    pub info_hashes: Vec<InfoHash>,
    /// Our BitTorrent listen port.
    pub port: u16,
}

/// Starts announcing and listening; peers found arrive on the channel until it is dropped.
pub fn spawn(config: LsdConfig) -> io::Result<mpsc::UnboundedReceiver<Vec<SocketAddr>>> {
    // Receiving needs the group's port on every address (several programs may share
    // it); sending from our own address makes our announcements carry it.
    let receiver = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    receiver.set_reuse_address(true)?;
    receiver.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, config.group.port()).into())?;
    receiver.join_multicast_v4(config.group.ip(), &config.interface)?;
    receiver.set_nonblocking(true)?;
    let sender = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sender.bind(&SocketAddrV4::new(config.interface, 0).into())?;
    if !config.interface.is_unspecified() {
        sender.set_multicast_if_v4(&config.interface)?;
    }
    sender.set_multicast_loop_v4(true)?;
    sender.set_multicast_ttl_v4(1)?;
    sender.set_nonblocking(true)?;
    let receiver = UdpSocket::from_std(std::net::UdpSocket::from(receiver))?;
    let sender = UdpSocket::from_std(std::net::UdpSocket::from(sender))?;
    let cookie = format!("{:016x}", rand::random::<u64>());
    let announcement = Announcement {
        port: config.port,
        info_hashes: config.info_hashes.clone(),
        cookie: Some(cookie.clone()),
    }
    .encode(config.group);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(ANNOUNCE_INTERVAL);
        let mut heard: HashMap<IpAddr, Instant> = HashMap::new();
        let mut buf = vec![0u8; MAX_PACKET + 1];
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let _ = sender.send_to(&announcement, config.group).await;
                }
                received = receiver.recv_from(&mut buf) => {
                    let Ok((len, from)) = received else { continue };
                    let Some(a) = Announcement::parse(&buf[..len]) else { continue };
                    if a.cookie.as_deref() == Some(cookie.as_str())
                        || !a.info_hashes.iter().any(|h| config.info_hashes.contains(h))
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
                    if tx.send(vec![SocketAddr::new(from.ip(), a.port)]).is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    Ok(rx)
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
        assert_eq!(Announcement::parse(&a.encode(DEFAULT_GROUP)), Some(a));
        let theirs = b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nport: 51413\r\nINFOHASH: 0101010101010101010101010101010101010101\r\n\r\n\r\n";
        let parsed = Announcement::parse(theirs).unwrap();
        assert_eq!(parsed.port, 51413);
        assert_eq!(parsed.info_hashes, vec![hash(1)]);
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
        let group = SocketAddrV4::new(DEFAULT_GROUP.ip().to_owned(), 19960);
        let config = |ip: [u8; 4], port, info_hashes| LsdConfig {
            group,
            interface: Ipv4Addr::from(ip),
            info_hashes,
            port,
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
}
