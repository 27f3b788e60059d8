//! The tracker server's state as a plain struct: swarms of peers per info-hash, with
//! expiry, caps and an optional allow-list. No sockets and no clock: the HTTP and UDP
//! front ends ([`http`], [`udp`]) turn requests into calls on [`Tracker`], and the
//! driver passes `now` and an RNG in.
//!
//! Memory is bounded by construction: at most `max_torrents` swarms and `max_peers`
//! peers in all; an announce that would pass a cap is refused with a reason the client
//! shows its user. A peer that has not announced for `peer_timeout` (about two
//! intervals) is dropped by [`Tracker::expire`].
//!
//! Memory is also kept small per peer, since a public tracker holds millions: a peer is
//! 24 bytes (address and port in 18, last announce as seconds in 4, its [`Kind`]);
//! peer ids are not kept (compact answers have none; dictionary answers go without). A
//! swarm is a plain vector, searched linearly while small, with an address index only
//! once it passes [`INDEX_AT`] peers.

pub mod connection_id;
pub mod http;
pub mod udp;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::Rng;
use shoal_core::{InfoHash, PeerId};

use crate::announce::{Event, ScrapeCounts};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// How often clients should announce.
    pub interval: Duration,
    /// Peers given when the client does not say (`numwant` absent or -1).
    pub default_numwant: usize,
    /// Most peers given in one answer, whatever the client asks.
    pub max_numwant: usize,
    pub max_torrents: usize,
    /// Peers over all torrents.
    pub max_peers: usize,
    pub max_peers_per_torrent: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            interval: Duration::from_secs(1800),
            default_numwant: 50,
            max_numwant: 200,
            max_torrents: 1_000_000,
            max_peers: 4_000_000,
            max_peers_per_torrent: 200_000,
        }
    }
}

impl ServerConfig {
    /// A peer silent for this long is forgotten: two intervals and some slack.
    pub fn peer_timeout(&self) -> Duration {
        self.interval * 2 + Duration::from_secs(60).min(self.interval)
    }
}

/// Why an announce was refused; the text is the `failure reason` clients display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("info-hash not served by this tracker")]
    NotAllowed,
    #[error("tracker is full: too many torrents")]
    TooManyTorrents,
    #[error("tracker is full: too many peers")]
    TooManyPeers,
    #[error("swarm is full")]
    SwarmFull,
    #[error("invalid port 0")]
    InvalidPort,
    #[error("malformed request")]
    Malformed,
    #[error("unknown or expired connection id")]
    ConnectionId,
}

impl Refusal {
    /// When the client may try again (BEP 31 `retry in`): a full tracker or swarm, after
    /// an announce interval of `interval`, when room may have come free. Other refusals
    /// say nothing (an allow-list may be reloaded, a malformed request fixed).
    pub fn retry_in(self, interval: Duration) -> Option<crate::RetryIn> {
        match self {
            Refusal::TooManyTorrents | Refusal::TooManyPeers | Refusal::SwarmFull => {
                let minutes = interval.as_secs().div_ceil(60).max(1);
                Some(crate::RetryIn::Minutes(
                    minutes.min(u64::from(crate::RetryIn::MAX_MINUTES)) as u32,
                ))
            }
            _ => None,
        }
    }
}

/// Restricts the peers in an answer to one address family (UDP answers carry only the
/// family of the socket they came in on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Any,
    V4,
    V6,
}

impl Family {
    fn admits(self, v4: bool) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => v4,
            Family::V6 => !v4,
        }
    }
}

/// One announce, after its front end has decided the peer's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAnnounce {
    pub info_hash: InfoHash,
    /// Checked to be present, as BEP 3 requires; not stored.
    pub peer_id: PeerId,
    /// The peer's IP (from the socket, or a trusted proxy) and the port it announced.
    pub addr: SocketAddr,
    pub event: Event,
    pub left: u64,
    pub numwant: Option<u32>,
    pub family: Family,
}

/// The answer to an announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceAnswer {
    pub interval: Duration,
    pub seeders: u32,
    pub leechers: u32,
    pub peers: Vec<SocketAddr>,
}

/// A swarm gets an address index once it has this many peers; below, a linear search
/// of 24-byte entries is as fast and costs no memory.
pub const INDEX_AT: usize = 48;

/// A peer's address in 18 bytes: IPv6 (IPv4 as mapped) and the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PeerAddr([u8; 16], [u8; 2]);

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> Self {
        let ip = match addr.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        PeerAddr(ip.octets(), addr.port().to_be_bytes())
    }
}

impl PeerAddr {
    fn socket_addr(&self) -> SocketAddr {
        let ip = Ipv6Addr::from(self.0).to_canonical();
        SocketAddr::new(ip, u16::from_be_bytes(self.1))
    }

    fn is_ipv4(&self) -> bool {
        Ipv6Addr::from(self.0).to_ipv4_mapped().is_some()
    }
}

/// What a peer wants, by its last announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Leecher,
    /// BEP 21: it has the files it chose (it announces `paused`); counted among the
    /// leechers (`incomplete`) but not the `downloaders`.
    PartialSeed,
    Seeder,
}

impl Kind {
    fn of(a: &PeerAnnounce) -> Kind {
        if a.left == 0 {
            Kind::Seeder
        } else if a.event == Event::Paused {
            Kind::PartialSeed
        } else {
            Kind::Leecher
        }
    }

    /// Wants nothing more: such peers are given only leechers, and never each other.
    fn done(self) -> bool {
        self != Kind::Leecher
    }
}

#[derive(Debug, Clone, Copy)]
struct Peer {
    addr: PeerAddr,
    kind: Kind,
    /// Seconds since the tracker's epoch.
    last_seen: u32,
}

/// The peers of one torrent.
#[derive(Debug, Default)]
struct Swarm {
    peers: Vec<Peer>,
    /// Position of each peer in `peers`, kept only for large swarms.
    index: Option<HashMap<PeerAddr, u32>>,
    seeders: u32,
    partial_seeds: u32,
    /// `completed` events seen (scrape's `downloaded`).
    downloaded: u32,
}

impl Swarm {
    fn find(&self, addr: &PeerAddr) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(addr).map(|&i| i as usize),
            None => self.peers.iter().position(|p| p.addr == *addr),
        }
    }

    /// Counts a peer of `kind` in (`add`) or out.
    fn count(&mut self, kind: Kind, add: bool) {
        let counter = match kind {
            Kind::Seeder => &mut self.seeders,
            Kind::PartialSeed => &mut self.partial_seeds,
            Kind::Leecher => return,
        };
        if add {
            *counter += 1;
        } else {
            *counter -= 1;
        }
    }

    fn push(&mut self, peer: Peer) {
        self.count(peer.kind, true);
        self.peers.push(peer);
        match &mut self.index {
            Some(index) => {
                index.insert(peer.addr, self.peers.len() as u32 - 1);
            }
            None if self.peers.len() > INDEX_AT => self.rebuild_index(),
            None => {}
        }
    }

    fn rebuild_index(&mut self) {
        self.index = (self.peers.len() > INDEX_AT / 2).then(|| {
            self.peers
                .iter()
                .enumerate()
                .map(|(i, p)| (p.addr, i as u32))
                .collect()
        });
    }

    fn remove(&mut self, addr: &PeerAddr) -> bool {
        let Some(i) = self.find(addr) else {
            return false;
        };
        let peer = self.peers.swap_remove(i);
        self.count(peer.kind, false);
        if let Some(index) = &mut self.index {
            index.remove(addr);
            if let Some(moved) = self.peers.get(i) {
                index.insert(moved.addr, i as u32);
            }
            if self.peers.len() < INDEX_AT / 2 {
                self.index = None;
            }
        }
        true
    }

    /// Drops peers last seen before `cutoff`; returns how many.
    fn expire(&mut self, cutoff: u32) -> usize {
        let before = self.peers.len();
        self.peers.retain(|p| p.last_seen >= cutoff);
        let removed = before - self.peers.len();
        if removed > 0 {
            let of = |kind| self.peers.iter().filter(|p| p.kind == kind).count() as u32;
            (self.seeders, self.partial_seeds) = (of(Kind::Seeder), of(Kind::PartialSeed));
            self.rebuild_index();
            if self.peers.capacity() > 4 * self.peers.len().max(4) {
                self.peers.shrink_to_fit();
            }
        }
        removed
    }

    fn leechers(&self) -> u32 {
        self.peers.len() as u32 - self.seeders
    }

    fn counts(&self) -> ScrapeCounts {
        ScrapeCounts {
            complete: self.seeders,
            downloaded: self.downloaded,
            incomplete: self.leechers(),
            downloaders: Some(self.leechers() - self.partial_seeds),
        }
    }
}

/// Totals for `/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrackerStats {
    pub torrents: usize,
    pub peers: usize,
    pub seeders: u64,
    pub leechers: u64,
    pub announces: u64,
    pub scrapes: u64,
    pub refused: u64,
}

/// The whole server state.
#[derive(Debug)]
pub struct Tracker {
    config: ServerConfig,
    swarms: HashMap<InfoHash, Swarm>,
    /// `None`: open tracker.
    allow: Option<HashSet<InfoHash>>,
    peers: usize,
    /// `last_seen` times count seconds from here (set by the first announce).
    epoch: Option<Instant>,
    announces: u64,
    scrapes: u64,
    refused: u64,
}

impl Tracker {
    pub fn new(config: ServerConfig) -> Self {
        Tracker {
            config,
            swarms: HashMap::new(),
            allow: None,
            peers: 0,
            epoch: None,
            announces: 0,
            scrapes: 0,
            refused: 0,
        }
    }

    /// `now` as seconds since the epoch.
    fn seconds(&mut self, now: Instant) -> u32 {
        let epoch = *self.epoch.get_or_insert(now);
        now.saturating_duration_since(epoch)
            .as_secs()
            .min(u64::from(u32::MAX)) as u32
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Restricts the tracker to `allow` (or opens it with `None`); swarms no longer
    /// allowed are dropped.
    pub fn set_allow_list(&mut self, allow: Option<HashSet<InfoHash>>) {
        if let Some(allow) = &allow {
            let mut dropped = 0;
            self.swarms.retain(|h, s| {
                let keep = allow.contains(h);
                if !keep {
                    dropped += s.peers.len();
                }
                keep
            });
            self.peers -= dropped;
        }
        self.allow = allow;
    }

    pub fn announce(
        &mut self,
        now: Instant,
        a: &PeerAnnounce,
        rng: &mut impl Rng,
    ) -> Result<AnnounceAnswer, Refusal> {
        let result = self.announce_inner(now, a, rng);
        match result {
            Ok(_) => self.announces += 1,
            Err(_) => self.refused += 1,
        }
        result
    }

    fn announce_inner(
        &mut self,
        now: Instant,
        a: &PeerAnnounce,
        rng: &mut impl Rng,
    ) -> Result<AnnounceAnswer, Refusal> {
        if a.addr.port() == 0 {
            return Err(Refusal::InvalidPort);
        }
        if self
            .allow
            .as_ref()
            .is_some_and(|l| !l.contains(&a.info_hash))
        {
            return Err(Refusal::NotAllowed);
        }
        let interval = self.config.interval;
        let seconds = self.seconds(now);
        let addr = PeerAddr::from(a.addr);
        if a.event == Event::Stopped {
            let mut answer = AnnounceAnswer {
                interval,
                seeders: 0,
                leechers: 0,
                peers: Vec::new(),
            };
            if let Some(swarm) = self.swarms.get_mut(&a.info_hash) {
                if swarm.remove(&addr) {
                    self.peers -= 1;
                }
                answer.seeders = swarm.seeders;
                answer.leechers = swarm.leechers();
                if swarm.peers.is_empty() {
                    self.swarms.remove(&a.info_hash);
                }
            }
            return Ok(answer);
        }
        if !self.swarms.contains_key(&a.info_hash) && self.swarms.len() >= self.config.max_torrents
        {
            return Err(Refusal::TooManyTorrents);
        }
        let swarm = self.swarms.entry(a.info_hash).or_default();
        let kind = Kind::of(a);
        match swarm.find(&addr) {
            Some(i) => {
                let was = swarm.peers[i].kind;
                if was != kind {
                    swarm.count(was, false);
                    swarm.count(kind, true);
                }
                let peer = &mut swarm.peers[i];
                peer.kind = kind;
                peer.last_seen = seconds;
            }
            None => {
                let refusal = if self.peers >= self.config.max_peers {
                    Some(Refusal::TooManyPeers)
                } else if swarm.peers.len() >= self.config.max_peers_per_torrent {
                    Some(Refusal::SwarmFull)
                } else {
                    None
                };
                if let Some(refusal) = refusal {
                    if swarm.peers.is_empty() {
                        self.swarms.remove(&a.info_hash);
                    }
                    return Err(refusal);
                }
                swarm.push(Peer {
                    addr,
                    kind,
                    last_seen: seconds,
                });
                self.peers += 1;
            }
        }
        if a.event == Event::Completed {
            swarm.downloaded = swarm.downloaded.saturating_add(1);
        }
        let want = a
            .numwant
            .map_or(self.config.default_numwant, |n| n as usize)
            .min(self.config.max_numwant);
        let mut peers = Vec::with_capacity(want.min(swarm.peers.len()));
        let n = swarm.peers.len();
        if want > 0 && n > 1 {
            // A random starting point, then in order: a uniform choice of window, O(want).
            let start = rng.gen_range(0..n);
            for k in 0..n {
                let p = &swarm.peers[(start + k) % n];
                // Never the peer itself; a seeder or partial seed gets only leechers.
                if p.addr != addr
                    && !(kind.done() && p.kind.done())
                    && a.family.admits(p.addr.is_ipv4())
                {
                    peers.push(p.addr.socket_addr());
                    if peers.len() == want {
                        break;
                    }
                }
            }
        }
        Ok(AnnounceAnswer {
            interval,
            seeders: swarm.seeders,
            leechers: swarm.leechers(),
            peers,
        })
    }

    /// Counts for each hash (zeros for torrents the tracker does not know).
    pub fn scrape(&mut self, hashes: &[InfoHash]) -> Vec<ScrapeCounts> {
        self.scrapes += 1;
        hashes
            .iter()
            .map(|h| {
                self.swarms
                    .get(h)
                    .map_or_else(|| Swarm::default().counts(), Swarm::counts)
            })
            .collect()
    }

    /// Forgets peers that stopped announcing, and swarms left empty.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self
            .config
            .peer_timeout()
            .as_secs()
            .min(u64::from(u32::MAX)) as u32;
        let cutoff = self.seconds(now).saturating_sub(timeout);
        let mut removed = 0;
        self.swarms.retain(|_, swarm| {
            removed += swarm.expire(cutoff);
            !swarm.peers.is_empty()
        });
        self.peers -= removed;
    }

    pub fn stats(&self) -> TrackerStats {
        let seeders: u64 = self.swarms.values().map(|s| u64::from(s.seeders)).sum();
        TrackerStats {
            torrents: self.swarms.len(),
            peers: self.peers,
            seeders,
            leechers: self.peers as u64 - seeders,
            announces: self.announces,
            scrapes: self.scrapes,
            refused: self.refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    fn announce(hash: u8, peer: &str, left: u64, event: Event) -> PeerAnnounce {
        PeerAnnounce {
            info_hash: InfoHash([hash; 20]),
            peer_id: PeerId([hash; 20]),
            addr: peer.parse().unwrap(),
            event,
            left,
            numwant: None,
            family: Family::Any,
        }
    }

    #[test]
    fn partial_seeds_are_leechers_that_do_not_download() {
        let mut t = Tracker::new(ServerConfig::default());
        let mut rng = StdRng::seed_from_u64(1);
        let now = Instant::now();
        let mut go = |peer: &str, left: u64, event: Event| {
            t.announce(now, &announce(1, peer, left, event), &mut rng)
                .unwrap()
        };
        go("10.0.0.1:1", 0, Event::Started);
        go("10.0.0.2:1", 50, Event::Started);
        go("10.0.0.3:1", 50, Event::Started);
        // 10.0.0.3 has its files: its periodic announces say `paused` (BEP 21).
        let partial = go("10.0.0.3:1", 50, Event::Paused);
        assert_eq!((partial.seeders, partial.leechers), (1, 2));
        // It is given only the peer still downloading, not the seed.
        assert_eq!(addrs(&partial), ["10.0.0.2:1"]);
        // The seed is given the downloader only; the downloader everyone.
        assert_eq!(addrs(&go("10.0.0.1:1", 0, Event::None)), ["10.0.0.2:1"]);
        assert_eq!(
            addrs(&go("10.0.0.2:1", 50, Event::None)),
            ["10.0.0.1:1", "10.0.0.3:1"]
        );
        let counts = |t: &mut Tracker| t.scrape(&[InfoHash([1; 20])])[0];
        let c = counts(&mut t);
        assert_eq!((c.complete, c.incomplete, c.downloaders), (1, 2, Some(1)));
        // It chose more files: downloading again. Then it stops.
        let mut t2 = t;
        t2.announce(now, &announce(1, "10.0.0.3:1", 50, Event::None), &mut rng)
            .unwrap();
        assert_eq!(counts(&mut t2).downloaders, Some(2));
        t2.announce(now, &announce(1, "10.0.0.3:1", 50, Event::Paused), &mut rng)
            .unwrap();
        t2.announce(
            now,
            &announce(1, "10.0.0.3:1", 50, Event::Stopped),
            &mut rng,
        )
        .unwrap();
        let c = counts(&mut t2);
        assert_eq!((c.incomplete, c.downloaders), (1, Some(1)));
        // Expiry recounts partial seeds too: the others time out, a later one stays.
        let timeout = t2.config.peer_timeout();
        let later = now + timeout;
        t2.announce(
            later,
            &announce(1, "10.0.0.4:1", 50, Event::Paused),
            &mut rng,
        )
        .unwrap();
        t2.expire(later + Duration::from_secs(1));
        let c = counts(&mut t2);
        assert_eq!((c.complete, c.incomplete, c.downloaders), (0, 1, Some(0)));
    }

    fn addrs(a: &AnnounceAnswer) -> Vec<String> {
        let mut v: Vec<String> = a.peers.iter().map(|a| a.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn peers_meet_never_themselves_and_stopped_removes() {
        let mut t = Tracker::new(ServerConfig::default());
        let mut rng = StdRng::seed_from_u64(1);
        let now = Instant::now();
        let a = t
            .announce(now, &announce(1, "10.0.0.1:1", 0, Event::Started), &mut rng)
            .unwrap();
        assert!(a.peers.is_empty());
        assert_eq!((a.seeders, a.leechers), (1, 0));
        let b = t
            .announce(now, &announce(1, "10.0.0.2:1", 5, Event::Started), &mut rng)
            .unwrap();
        assert_eq!(addrs(&b), ["10.0.0.1:1"]);
        assert_eq!((b.seeders, b.leechers), (1, 1));
        let c = t
            .announce(now, &announce(1, "10.0.0.3:1", 5, Event::Started), &mut rng)
            .unwrap();
        assert_eq!(addrs(&c), ["10.0.0.1:1", "10.0.0.2:1"]);
        // A seeder is given leechers only.
        let a = t
            .announce(now, &announce(1, "10.0.0.1:1", 0, Event::None), &mut rng)
            .unwrap();
        assert_eq!(addrs(&a), ["10.0.0.2:1", "10.0.0.3:1"]);
        // Completed turns a leecher into a seeder and counts a download.
        t.announce(
            now,
            &announce(1, "10.0.0.2:1", 0, Event::Completed),
            &mut rng,
        )
        .unwrap();
        assert_eq!(
            t.scrape(&[InfoHash([1; 20]), InfoHash([9; 20])]),
            vec![
                ScrapeCounts {
                    complete: 2,
                    downloaded: 1,
                    incomplete: 1,
                    downloaders: Some(1),
                },
                ScrapeCounts {
                    downloaders: Some(0),
                    ..ScrapeCounts::default()
                }
            ]
        );
        t.announce(now, &announce(1, "10.0.0.3:1", 5, Event::Stopped), &mut rng)
            .unwrap();
        t.announce(now, &announce(1, "10.0.0.2:1", 0, Event::Stopped), &mut rng)
            .unwrap();
        assert_eq!(t.stats().peers, 1);
        t.announce(now, &announce(1, "10.0.0.1:1", 0, Event::Stopped), &mut rng)
            .unwrap();
        assert_eq!(t.stats().torrents, 0, "empty swarm dropped");
    }

    #[test]
    fn numwant_capped_and_family_filtered() {
        let config = ServerConfig {
            max_numwant: 10,
            ..Default::default()
        };
        let mut t = Tracker::new(config);
        let mut rng = StdRng::seed_from_u64(2);
        let now = Instant::now();
        for i in 0..30 {
            t.announce(
                now,
                &announce(1, &format!("10.0.1.{i}:1"), 1, Event::Started),
                &mut rng,
            )
            .unwrap();
            t.announce(
                now,
                &announce(1, &format!("[fd00::{i}]:1"), 1, Event::Started),
                &mut rng,
            )
            .unwrap();
        }
        let mut me = announce(1, "10.0.0.1:1", 1, Event::None);
        me.numwant = Some(1000);
        assert_eq!(t.announce(now, &me, &mut rng).unwrap().peers.len(), 10);
        me.numwant = Some(0);
        assert!(t.announce(now, &me, &mut rng).unwrap().peers.is_empty());
        me.numwant = None;
        me.family = Family::V6;
        let a = t.announce(now, &me, &mut rng).unwrap();
        assert_eq!(a.peers.len(), 10);
        assert!(a.peers.iter().all(|p| p.is_ipv6()));
    }

    #[test]
    fn expiry_after_two_intervals() {
        let config = ServerConfig {
            interval: Duration::from_secs(100),
            ..Default::default()
        };
        let mut t = Tracker::new(config);
        let mut rng = StdRng::seed_from_u64(3);
        let now = Instant::now();
        t.announce(now, &announce(1, "10.0.0.1:1", 1, Event::Started), &mut rng)
            .unwrap();
        t.announce(
            now + Duration::from_secs(200),
            &announce(1, "10.0.0.2:1", 1, Event::Started),
            &mut rng,
        )
        .unwrap();
        t.expire(now + Duration::from_secs(250));
        assert_eq!(t.stats().peers, 2);
        t.expire(now + Duration::from_secs(261));
        assert_eq!(t.stats().peers, 1);
        t.expire(now + Duration::from_secs(500));
        assert_eq!(
            t.stats(),
            TrackerStats {
                announces: 2,
                ..Default::default()
            }
        );
    }

    #[test]
    fn caps_refuse_with_a_reason() {
        let config = ServerConfig {
            max_torrents: 2,
            max_peers: 3,
            max_peers_per_torrent: 2,
            ..Default::default()
        };
        let mut t = Tracker::new(config);
        let mut rng = StdRng::seed_from_u64(4);
        let now = Instant::now();
        t.announce(now, &announce(1, "10.0.0.1:1", 1, Event::Started), &mut rng)
            .unwrap();
        t.announce(now, &announce(1, "10.0.0.2:1", 1, Event::Started), &mut rng)
            .unwrap();
        assert_eq!(
            t.announce(now, &announce(1, "10.0.0.3:1", 1, Event::Started), &mut rng),
            Err(Refusal::SwarmFull)
        );
        t.announce(now, &announce(2, "10.0.0.3:1", 1, Event::Started), &mut rng)
            .unwrap();
        assert_eq!(
            t.announce(now, &announce(3, "10.0.0.4:1", 1, Event::Started), &mut rng),
            Err(Refusal::TooManyTorrents)
        );
        assert_eq!(
            t.announce(now, &announce(2, "10.0.0.4:1", 1, Event::Started), &mut rng),
            Err(Refusal::TooManyPeers)
        );
        // Re-announces of known peers still work.
        assert!(t
            .announce(now, &announce(1, "10.0.0.1:1", 0, Event::None), &mut rng)
            .is_ok());
        assert_eq!(t.stats().torrents, 2);
        assert_eq!(t.stats().refused, 3);
    }

    #[test]
    fn a_flood_of_random_hashes_stays_bounded() {
        let config = ServerConfig {
            max_torrents: 100,
            max_peers: 150,
            ..Default::default()
        };
        let mut t = Tracker::new(config);
        let mut rng = StdRng::seed_from_u64(5);
        let now = Instant::now();
        for i in 0..10_000u32 {
            let mut a = announce(0, "10.0.0.1:1", 1, Event::Started);
            a.info_hash.0[..4].copy_from_slice(&i.to_be_bytes());
            a.addr.set_port((i % 60000 + 1) as u16);
            let _ = t.announce(now, &a, &mut rng);
        }
        let s = t.stats();
        assert!(s.torrents <= 100 && s.peers <= 150, "{s:?}");
    }

    #[test]
    fn allow_list() {
        let mut t = Tracker::new(ServerConfig::default());
        let mut rng = StdRng::seed_from_u64(6);
        let now = Instant::now();
        t.announce(now, &announce(1, "10.0.0.1:1", 1, Event::Started), &mut rng)
            .unwrap();
        t.announce(now, &announce(2, "10.0.0.1:1", 1, Event::Started), &mut rng)
            .unwrap();
        t.set_allow_list(Some([InfoHash([2; 20])].into_iter().collect()));
        assert_eq!(t.stats().torrents, 1);
        assert_eq!(t.stats().peers, 1);
        assert_eq!(
            t.announce(now, &announce(1, "10.0.0.1:1", 1, Event::Started), &mut rng),
            Err(Refusal::NotAllowed)
        );
        assert!(t
            .announce(now, &announce(2, "10.0.0.2:1", 1, Event::Started), &mut rng)
            .is_ok());
        t.set_allow_list(None);
        assert!(t
            .announce(now, &announce(1, "10.0.0.1:1", 1, Event::Started), &mut rng)
            .is_ok());
    }

    proptest::proptest! {
        /// Random announces and stops over a small address space, with expiry, against
        /// a model: counts, membership and answers stay right as swarms grow past the
        /// index threshold and shrink below it.
        #[test]
        fn swarm_matches_a_model(ops in proptest::collection::vec((0u16..120, 0u8..4, 0u64..30), 1..600)) {
            let mut t = Tracker::new(ServerConfig { interval: Duration::from_secs(100), ..Default::default() });
            let mut rng = StdRng::seed_from_u64(9);
            let start = Instant::now();
            let mut model: HashMap<u16, (bool, u64)> = HashMap::new();
            let mut clock = 0;
            for (port, kind, advance) in ops {
                clock += advance;
                let now = start + Duration::from_secs(clock);
                let addr = if port % 3 == 0 { format!("[fd00::1]:{}", port + 1) } else { format!("10.0.0.1:{}", port + 1) };
                match kind {
                    0 => {
                        t.announce(now, &announce(1, &addr, 0, Event::Stopped), &mut rng).unwrap();
                        model.remove(&port);
                    }
                    3 => {
                        t.expire(now);
                        let timeout = t.config().peer_timeout().as_secs();
                        model.retain(|_, (_, seen)| clock - *seen <= timeout);
                    }
                    _ => {
                        let left = u64::from(kind == 1);
                        let answer = t.announce(now, &announce(1, &addr, left, Event::None), &mut rng).unwrap();
                        model.insert(port, (left == 0, clock));
                        let me: SocketAddr = addr.parse().unwrap();
                        proptest::prop_assert!(!answer.peers.contains(&me));
                        let mut seen = std::collections::HashSet::new();
                        proptest::prop_assert!(answer.peers.iter().all(|p| seen.insert(*p)));
                    }
                }
                let seeders = model.values().filter(|(s, _)| *s).count() as u64;
                let stats = t.stats();
                proptest::prop_assert_eq!(stats.peers, model.len());
                proptest::prop_assert_eq!(stats.seeders, seeders);
                proptest::prop_assert_eq!(stats.torrents, usize::from(!model.is_empty()));
            }
        }
    }
}
