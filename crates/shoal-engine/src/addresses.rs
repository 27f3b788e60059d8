//! The peer address book: every address we know for a torrent, which of them to dial
//! next, and which to forget when the book is full.
//!
//! Candidates are dialled in libtorrent's order: those that never failed first, local
//! addresses before remote ones, those we were connected to longest ago (or never), by
//! where we heard of them (trackers, then local discovery, the DHT, PEX), and last by
//! BEP 40 canonical priority, so that the swarm's clients all lean towards the same
//! connections. A failing address is retried ever less often. An incoming connection's
//! address (the peer's ephemeral port) is never dialled; its listen port, once its
//! extension handshake tells it, is.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::stream::Kind;
use crate::IpFilter;

use shoal_wire::pex::PexFlags;

use shoal_core::{dual_stack, peer_priority};

/// Addresses kept per torrent. Beyond it a new address takes the place of a failed one,
/// or is ignored if none has failed.
const MAX_ADDRESSES: usize = 2000;
/// A peer we asked a relay to introduce us to (BEP 55) is not asked for again sooner:
/// the relay's `connect`, and the uTP dial it starts, come within seconds, and a dial
/// that fails after a rendezvous must not start another.
const RENDEZVOUS_INTERVAL: Duration = Duration::from_secs(60);

/// Where an address came from. The order is libtorrent's preference when choosing whom to
/// dial, after the addresses the user gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerSource {
    /// On the command line, in a magnet link's `x.pe`, or from a metadata exchange.
    Given,
    Tracker,
    /// Local service discovery (BEP 14).
    Lsd,
    Dht,
    /// Peer exchange (BEP 11).
    Pex,
    /// The peer connected to us.
    Incoming,
    /// The resume state of an earlier run: dialled after every other source, and the
    /// first forgotten.
    Resume,
}

impl PeerSource {
    fn bit(self) -> u8 {
        1 << self as u8
    }

    /// Higher is dialled first; sources add up (libtorrent's `source_rank`).
    fn rank(sources: u8) -> u8 {
        [Self::Given, Self::Tracker, Self::Lsd, Self::Dht, Self::Pex]
            .iter()
            .enumerate()
            .filter(|(_, s)| sources & s.bit() != 0)
            .map(|(i, _)| 1 << (5 - i))
            .sum()
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// [`PeerSource`] bits.
    sources: u8,
    /// Worth dialling: not just the far end of a connection the peer made.
    connectable: bool,
    failures: u32,
    next_attempt: Instant,
    connected: bool,
    /// When a connection with it last ended.
    last_connected: Option<Instant>,
    banned: bool,
    /// Our last connection to it in plaintext got through the BitTorrent handshake:
    /// dial it in plaintext (it hung up on an encrypted handshake before). A plaintext
    /// dial that fails turns it back, so that one lost encrypted handshake cannot shut
    /// us out of a peer that takes encrypted ones only (libtorrent toggles the same).
    plain_only: bool,
    /// Our last connection to it ended before the BitTorrent handshake over TCP: dial it
    /// over uTP first (libtorrent and Transmission can be set to take uTP only). A failure
    /// over uTP turns it back.
    wants_utp: bool,
    /// It had every piece when last connected (or a peer exchange said it was a seed):
    /// not worth dialling once we are done.
    seed: bool,
    /// It was found in a hybrid torrent's v2 swarm: dialled naming that swarm, as
    /// libtorrent dials its `protocol_v2` peers (a client that came by a v2-only link
    /// knows no other hash until it has the metadata).
    v2_swarm: bool,
    /// A peer exchange said it takes part in hole punching (BEP 55), and which
    /// connection (by its address) said so: the relay to ask when it cannot be dialled.
    introducer: Option<SocketAddr>,
    /// When we last asked a relay to introduce us.
    rendezvous_at: Option<Instant>,
}

impl Entry {
    /// Due for a connection attempt; a seed is not while we are `done` (it could give us
    /// nothing and wants nothing from us).
    fn is_due(&self, now: Instant, done: bool) -> bool {
        self.connectable
            && !self.connected
            && !self.banned
            && self.next_attempt <= now
            && !(done && self.seed)
    }

    fn new(source: PeerSource, connectable: bool, now: Instant) -> Self {
        Entry {
            sources: source.bit(),
            connectable,
            failures: 0,
            next_attempt: now,
            connected: false,
            last_connected: None,
            banned: false,
            plain_only: false,
            wants_utp: false,
            seed: false,
            v2_swarm: false,
            introducer: None,
            rendezvous_at: None,
        }
    }

    /// Worth keeping less than any other? A connected or banned entry is always kept (the
    /// ban must be remembered), an untried good one too unless only an earlier run knew it.
    fn forgettable(&self) -> bool {
        let only_resumed = self.sources == PeerSource::Resume.bit();
        !self.connected && !self.banned && (!self.connectable || self.failures > 0 || only_resumed)
    }
}

#[derive(Debug, Default)]
pub struct AddressBook {
    entries: HashMap<SocketAddr, Entry>,
    /// Addresses neither dialled nor accepted; never entered.
    filter: Option<Arc<IpFilter>>,
}

impl AddressBook {
    pub fn new(filter: Option<Arc<IpFilter>>) -> Self {
        AddressBook {
            entries: HashMap::new(),
            filter,
        }
    }

    /// Whether the IP filter blocks `addr`.
    pub fn is_blocked(&self, addr: &SocketAddr) -> bool {
        self.filter.as_ref().is_some_and(|f| f.blocks(addr.ip()))
    }

    /// Learns of `addr`, a peer's listen address; a known address adds `source` to its
    /// sources. An IPv4-mapped address (a tracker's `peers6`, PEX `added6`) is kept as
    /// the IPv4 address it is, the form connections report.
    pub fn add(&mut self, addr: SocketAddr, source: PeerSource, now: Instant) {
        self.insert(dual_stack::canonical(addr), source, true, now);
    }

    /// Learns of `addr` from a peer exchange message that `from` sent, with what it said
    /// of the peer: a seed is not dialled once we are done, and a peer behind a NAT may
    /// be reached through `from` (see [`AddressBook::rendezvous`]).
    pub fn add_from_pex(
        &mut self,
        addr: SocketAddr,
        flags: PexFlags,
        from: SocketAddr,
        now: Instant,
    ) {
        let addr = dual_stack::canonical(addr);
        self.add(addr, PeerSource::Pex, now);
        let Some(e) = self.entries.get_mut(&addr) else {
            return;
        };
        if flags.contains(PexFlags::SEED) && !e.connected && e.last_connected.is_none() {
            e.seed = true;
        }
        if flags.contains(PexFlags::HOLEPUNCH) {
            e.introducer = Some(from);
        }
    }

    /// Dialling `addr` failed: the connection to ask for an introduction (BEP 55
    /// rendezvous), if a peer exchange named one and none was asked lately. Asking is
    /// recorded.
    pub fn rendezvous(&mut self, addr: SocketAddr, now: Instant) -> Option<SocketAddr> {
        let e = self.entries.get_mut(&addr)?;
        let recent = e
            .rendezvous_at
            .is_some_and(|at| now.duration_since(at) < RENDEZVOUS_INTERVAL);
        if e.banned || recent {
            return None;
        }
        let introducer = e.introducer?;
        e.rendezvous_at = Some(now);
        Some(introducer)
    }

    /// A relay asks us to dial `addr` (BEP 55 `connect`): whether to, that is whether it
    /// is neither banned, blocked, connected nor being dialled. If so it is marked as
    /// being dialled, and as introduced now, so that a failed punch does not ask for
    /// another introduction. An address we did not know is not dialled again on the
    /// relay's word alone: it becomes dialable once a connection to it is up.
    pub fn punch(&mut self, addr: SocketAddr, now: Instant) -> bool {
        if self.is_blocked(&addr) {
            return false;
        }
        self.insert(addr, PeerSource::Pex, false, now);
        match self.entries.get_mut(&addr) {
            Some(e) if !e.banned && !e.connected => {
                e.connected = true;
                e.rendezvous_at = Some(now);
                true
            }
            _ => false,
        }
    }

    fn insert(&mut self, addr: SocketAddr, source: PeerSource, connectable: bool, now: Instant) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.sources |= source.bit();
            e.connectable |= connectable;
            return;
        }
        if self.is_blocked(&addr) {
            return;
        }
        if self.entries.len() >= MAX_ADDRESSES && !self.forget_one() {
            return;
        }
        self.entries
            .insert(addr, Entry::new(source, connectable, now));
    }

    /// Drops the least useful entry that may be dropped: one that is not dialable, else
    /// the one that failed most. Whether there was one.
    fn forget_one(&mut self) -> bool {
        let victim = self
            .entries
            .iter()
            .filter(|(_, e)| e.forgettable())
            .max_by_key(|(addr, e)| (!e.connectable, e.failures, std::cmp::Reverse(**addr)))
            .map(|(addr, _)| *addr);
        victim.is_some_and(|addr| self.entries.remove(&addr).is_some())
    }

    /// Up to `max` addresses due for a connection attempt, best first, marked as
    /// connecting. Seeds (and partial seeds) are skipped when we are `done` (have every
    /// piece we want): they could give us nothing and want nothing from us. `ours` is our
    /// address as peers see it, for BEP 40 priority (unknown: no priority).
    pub fn due(
        &mut self,
        now: Instant,
        max: usize,
        done: bool,
        ours: Option<SocketAddr>,
    ) -> Vec<SocketAddr> {
        if max == 0 {
            return Vec::new();
        }
        let mut due: Vec<(SocketAddr, &Entry)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.is_due(now, done))
            .map(|(a, e)| (*a, e))
            .collect();
        let key = |(addr, e): &(SocketAddr, &Entry)| {
            (
                e.failures,
                !is_local(addr.ip()),
                e.last_connected,
                std::cmp::Reverse(PeerSource::rank(e.sources)),
                std::cmp::Reverse(ours.map_or(0, |ours| peer_priority(ours, *addr))),
                *addr,
            )
        };
        if due.len() > max {
            due.select_nth_unstable_by_key(max - 1, key);
            due.truncate(max);
        }
        due.sort_by_key(key);
        let due: Vec<SocketAddr> = due.into_iter().map(|(addr, _)| addr).collect();
        for addr in &due {
            self.entries.get_mut(addr).expect("listed").connected = true;
        }
        due
    }

    /// Whether some address is due for a connection attempt (see [`AddressBook::due`]).
    pub fn any_due(&self, now: Instant, done: bool) -> bool {
        self.entries.values().any(|e| e.is_due(now, done))
    }

    /// Up to `max` addresses worth dialling after a restart, best first: those we are
    /// connected to, then the most recently connected, then those never tried.
    pub fn worth_keeping(&self, max: usize) -> Vec<SocketAddr> {
        let mut kept: Vec<(&SocketAddr, &Entry)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.connectable && !e.banned && e.failures == 0)
            .collect();
        kept.sort_by_key(|(addr, e)| (!e.connected, std::cmp::Reverse(e.last_connected), **addr));
        kept.into_iter().take(max).map(|(addr, _)| *addr).collect()
    }

    /// A peer connected to us from `addr` (an address not worth dialling).
    pub fn incoming(&mut self, addr: SocketAddr, now: Instant) {
        self.insert(addr, PeerSource::Incoming, false, now);
        self.mark_connected(addr);
    }

    /// `addr` is the listen address of a peer we are connected to: not to be dialled
    /// while that lasts, and worth dialling after.
    pub fn listening(&mut self, addr: SocketAddr, now: Instant) {
        self.insert(addr, PeerSource::Incoming, true, now);
        self.mark_connected(addr);
    }

    fn mark_connected(&mut self, addr: SocketAddr) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.connected = true;
        }
    }

    /// The connection ended; `failed` when it never got going (refused, handshake error);
    /// otherwise `seed` says whether the peer wanted nothing more (it had every piece, or
    /// said it was upload-only).
    pub fn disconnected(&mut self, addr: SocketAddr, failed: bool, seed: bool, now: Instant) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.connected = false;
            e.last_connected = Some(now);
            if !failed {
                e.seed = seed;
            }
            e.failures = if failed {
                e.failures.saturating_add(1)
            } else {
                0
            };
            // 5 s, 10 s, 20 s, … up to 10 minutes; a good peer that left is retried in 5 s.
            let backoff =
                Duration::from_secs(5) * 2u32.saturating_pow(e.failures.saturating_sub(1)).min(120);
            e.next_attempt = now + backoff;
        }
    }

    /// A connection to `addr` was not taken up (we were at our limit): try again in 5 s,
    /// with what we know of the peer unchanged.
    pub fn not_taken(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.connected = false;
            e.next_attempt = now + Duration::from_secs(5);
        }
    }

    pub fn ban(&mut self, addr: SocketAddr) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.banned = true;
        }
    }

    /// `addr` turned out to be one of ours: as a banned address, never dialled again
    /// nor passed on to others, but with nothing to report.
    pub fn ours(&mut self, addr: SocketAddr) {
        self.ban(addr);
    }

    pub fn is_banned(&self, addr: &SocketAddr) -> bool {
        self.entries.get(addr).is_some_and(|e| e.banned)
    }

    /// Whether the peer at `addr` is dialled in plaintext (see [`Entry`]).
    pub fn set_plain_only(&mut self, addr: SocketAddr, plain_only: bool) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.plain_only = plain_only;
        }
    }

    pub fn is_plain_only(&self, addr: &SocketAddr) -> bool {
        self.entries.get(addr).is_some_and(|e| e.plain_only)
    }

    /// `addr` (already added) was found in a hybrid torrent's v2 swarm.
    pub fn found_in_v2_swarm(&mut self, addr: SocketAddr) {
        if let Some(e) = self.entries.get_mut(&dual_stack::canonical(addr)) {
            e.v2_swarm = true;
        }
    }

    /// Whether `addr` is dialled naming the v2 swarm (see [`Entry`]).
    pub fn in_v2_swarm(&self, addr: &SocketAddr) -> bool {
        let addr = dual_stack::canonical(*addr);
        self.entries.get(&addr).is_some_and(|e| e.v2_swarm)
    }

    /// A connection we dialled over `transport` ended before its handshake: the next
    /// dial starts with the other transport (see [`Entry`]).
    pub fn failed_over(&mut self, addr: SocketAddr, transport: Kind) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.wants_utp = transport == Kind::Tcp;
        }
    }

    pub fn wants_utp(&self, addr: &SocketAddr) -> bool {
        self.entries.get(addr).is_some_and(|e| e.wants_utp)
    }
}

/// On this machine or the local network (libtorrent dials those first: they are fast).
pub(crate) fn is_local(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(ip) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        IpAddr::V6(ip) => {
            ip.is_loopback()
                || (ip.segments()[0] & 0xfe00) == 0xfc00
                || (ip.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PeerSource::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_peer_found_in_the_v2_swarm_is_remembered_as_such() {
        let now = Instant::now();
        let mut book = AddressBook::default();
        let (v1, v2) = (addr("10.0.0.1:6881"), addr("10.0.0.2:6881"));
        book.add(v1, PeerSource::Tracker, now);
        book.add(v2, PeerSource::Dht, now);
        // Reported as IPv4-mapped, as a dual-stack socket sees it.
        book.found_in_v2_swarm(addr("[::ffff:10.0.0.2]:6881"));
        assert!(!book.in_v2_swarm(&v1));
        assert!(book.in_v2_swarm(&v2));
        // Unknown addresses are not entered by it.
        book.found_in_v2_swarm(addr("10.0.0.3:6881"));
        assert!(book.due(now, 10, false, None).len() == 2);
    }

    #[test]
    fn failing_peers_back_off() {
        let now = Instant::now();
        let a = addr("127.0.0.2:1");
        let mut book = AddressBook::default();
        book.add(a, Tracker, now);
        assert_eq!(book.due(now, 10, false, None), [a]);
        assert!(
            book.due(now, 10, false, None).is_empty(),
            "already connecting"
        );
        book.disconnected(a, true, false, now);
        assert!(book
            .due(now + Duration::from_secs(4), 10, false, None)
            .is_empty());
        assert_eq!(book.due(now + Duration::from_secs(5), 10, false, None), [a]);
        book.disconnected(a, true, false, now);
        assert!(book
            .due(now + Duration::from_secs(9), 10, false, None)
            .is_empty());
        book.ban(a);
        assert!(book
            .due(now + Duration::from_secs(3600), 10, false, None)
            .is_empty());
    }

    #[test]
    fn seeds_are_not_dialled_once_we_are_done() {
        let now = Instant::now();
        let (a, b) = (addr("127.0.0.2:1"), addr("127.0.0.3:1"));
        let mut book = AddressBook::default();
        book.add(a, Tracker, now);
        book.add(b, Tracker, now);
        assert_eq!(
            book.due(now, 10, true, None),
            [a, b],
            "not known as seeds yet"
        );
        book.disconnected(a, false, true, now);
        book.disconnected(b, false, false, now);
        let later = now + Duration::from_secs(5);
        assert_eq!(book.due(later, 10, true, None), [b]);
        assert_eq!(
            book.due(later, 10, false, None),
            [a],
            "still a source while we download"
        );
        book.not_taken(a, later);
        let after = later + Duration::from_secs(5);
        assert!(
            book.due(after, 10, true, None).is_empty(),
            "still known as a seed"
        );
    }

    #[test]
    fn a_peer_without_encryption_is_remembered() {
        let now = Instant::now();
        let a = addr("127.0.0.2:1");
        let mut book = AddressBook::default();
        book.add(a, Pex, now);
        assert!(!book.is_plain_only(&a));
        book.set_plain_only(a, true);
        book.disconnected(a, false, false, now);
        assert!(book.is_plain_only(&a), "kept across connections");
        assert!(!book.wants_utp(&a));
        book.failed_over(a, Kind::Tcp);
        assert!(book.wants_utp(&a), "next dial over uTP");
        book.failed_over(a, Kind::Utp);
        assert!(!book.wants_utp(&a), "and back to TCP after uTP failed too");
    }

    #[test]
    fn an_incoming_connections_address_is_never_dialled() {
        let now = Instant::now();
        let (ephemeral, listen) = (addr("127.0.0.2:40312"), addr("127.0.0.2:6881"));
        let mut book = AddressBook::default();
        book.incoming(ephemeral, now);
        book.listening(listen, now);
        assert!(book.due(now, 10, false, None).is_empty(), "connected");
        book.disconnected(ephemeral, false, false, now);
        book.disconnected(listen, false, false, now);
        let later = now + Duration::from_secs(5);
        assert_eq!(book.due(later, 10, false, None), [listen]);
        // A source naming the port makes it worth dialling after all.
        book.add(ephemeral, Pex, later);
        assert_eq!(book.due(later, 10, false, None), [ephemeral]);
    }

    #[test]
    fn candidates_come_in_libtorrents_order() {
        let now = Instant::now();
        let mut book = AddressBook::default();
        let failed = addr("127.0.0.9:1");
        book.add(failed, Given, now);
        book.disconnected(failed, true, false, now - Duration::from_secs(60));
        let recent = addr("127.0.0.8:1");
        book.add(recent, Given, now);
        book.disconnected(recent, false, false, now - Duration::from_secs(10));
        let earlier = addr("127.0.0.7:1");
        book.add(earlier, Given, now);
        book.disconnected(earlier, false, false, now - Duration::from_secs(20));
        let (pex, tracker_and_pex, remote) = (
            addr("127.0.0.6:1"),
            addr("127.0.0.5:1"),
            addr("203.0.113.1:1"),
        );
        book.add(pex, Pex, now);
        book.add(tracker_and_pex, Pex, now);
        book.add(tracker_and_pex, Tracker, now);
        book.add(remote, Given, now);
        assert_eq!(
            book.due(now, 10, false, None),
            [tracker_and_pex, pex, earlier, recent, remote, failed]
        );
        // With fewer slots than candidates, the best of them.
        for a in [tracker_and_pex, pex, earlier, recent, remote, failed] {
            book.not_taken(a, now - Duration::from_secs(5));
        }
        assert_eq!(book.due(now, 2, false, None), [tracker_and_pex, pex]);
    }

    #[test]
    fn ties_go_to_the_higher_canonical_priority() {
        let now = Instant::now();
        let ours = addr("198.51.100.7:6881");
        let peers: Vec<SocketAddr> = (1..=20)
            .map(|i| addr(&format!("203.0.{i}.{}:6881", 200 - i)))
            .collect();
        let mut book = AddressBook::default();
        for &p in &peers {
            book.add(p, Dht, now);
        }
        let mut expected = peers.clone();
        expected.sort_by_key(|&p| std::cmp::Reverse(peer_priority(ours, p)));
        expected.truncate(5);
        assert_eq!(book.due(now, 5, false, Some(ours)), expected);
    }

    #[test]
    fn what_is_kept_for_a_restart() {
        let now = Instant::now();
        let mut book = AddressBook::default();
        let (connected, earlier, untried, failed, banned, incoming) = (
            addr("127.0.0.2:1"),
            addr("127.0.0.3:1"),
            addr("127.0.0.4:1"),
            addr("127.0.0.5:1"),
            addr("127.0.0.6:1"),
            addr("127.0.0.7:40000"),
        );
        for a in [connected, earlier, untried, failed, banned] {
            book.add(a, Tracker, now);
        }
        book.listening(connected, now);
        book.listening(earlier, now);
        book.disconnected(earlier, false, false, now);
        book.disconnected(failed, true, false, now);
        book.ban(banned);
        book.incoming(incoming, now);
        assert_eq!(book.worth_keeping(10), [connected, earlier, untried]);
        assert_eq!(book.worth_keeping(2), [connected, earlier]);
    }

    #[test]
    fn a_full_book_forgets_failed_addresses_for_new_ones() {
        let now = Instant::now();
        let mut book = AddressBook::default();
        let at = |i: usize| SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 1));
        for i in 0..MAX_ADDRESSES {
            book.add(at(i), Tracker, now);
        }
        let new = addr("192.0.2.1:1");
        book.add(new, Tracker, now);
        assert!(!book.entries.contains_key(&new), "nothing failed: ignored");
        book.disconnected(at(3), true, false, now);
        book.disconnected(at(4), true, false, now);
        book.disconnected(at(4), true, false, now);
        book.ban(at(5));
        book.disconnected(at(5), true, false, now);
        book.disconnected(at(5), true, false, now);
        book.disconnected(at(5), true, false, now);
        book.add(new, Tracker, now);
        assert!(book.entries.contains_key(&new));
        assert!(!book.entries.contains_key(&at(4)), "failed most");
        assert!(book.is_banned(&at(5)), "a ban is remembered");
        assert_eq!(book.entries.len(), MAX_ADDRESSES);
    }

    /// A mapped address is the IPv4 one it carries; an address found to be ours is
    /// never dialled again, whoever names it.
    #[test]
    fn mapped_addresses_are_ipv4_and_our_own_are_not_dialled() {
        let now = Instant::now();
        let mut book = AddressBook::default();
        let (v4, ours) = (addr("10.0.0.7:6881"), addr("[2001:db8::5]:6881"));
        book.add(addr("[::ffff:10.0.0.7]:6881"), Tracker, now);
        book.add_from_pex(addr("[::ffff:10.0.0.7]:6881"), PexFlags::UTP, ours, now);
        book.add(ours, Tracker, now);
        assert_eq!(book.entries.len(), 2, "one entry per peer");
        let due = book.due(now, 10, false, None);
        assert!(due.contains(&v4) && due.contains(&ours), "{due:?}");
        book.disconnected(v4, true, false, now);
        book.disconnected(ours, true, false, now);
        book.ours(ours);
        book.add(ours, Tracker, now);
        let later = now + Duration::from_secs(3600);
        assert_eq!(book.due(later, 10, false, None), [v4]);
    }

    /// PEX flags: a seed is skipped once we are done; a hole-punching peer names its
    /// relay once a minute at most; a relay's `connect` dials only what is idle.
    #[test]
    fn pex_flags_and_hole_punching() {
        let now = Instant::now();
        let (seed, natted, relay) = (addr("10.0.0.1:1"), addr("10.0.0.2:2"), addr("10.0.0.3:3"));
        let mut book = AddressBook::default();
        book.add_from_pex(seed, PexFlags::SEED | PexFlags::UTP, relay, now);
        book.add_from_pex(natted, PexFlags::HOLEPUNCH, relay, now);
        assert_eq!(
            book.due(now, 10, true, None),
            [natted],
            "no seeds when done"
        );
        assert_eq!(book.rendezvous(seed, now), None, "no hole punching offered");
        book.disconnected(natted, true, false, now);
        assert_eq!(book.rendezvous(natted, now), Some(relay));
        let soon = now + Duration::from_secs(10);
        assert_eq!(book.rendezvous(natted, soon), None, "asked lately");
        // The relay's connect: dialled once, not while the dial is under way, and its
        // failure asks for no new introduction for a while.
        let later = now + RENDEZVOUS_INTERVAL;
        assert!(book.punch(natted, later));
        assert!(!book.punch(natted, later));
        book.disconnected(natted, true, false, later);
        assert_eq!(book.rendezvous(natted, later), None);
        assert_eq!(
            book.rendezvous(natted, later + RENDEZVOUS_INTERVAL),
            Some(relay)
        );
        // A connect for an address we never heard of is dialled, but not again by the
        // dialler on the relay's word; a banned one is not dialled.
        let stranger = addr("10.0.0.4:4");
        assert!(book.punch(stranger, now));
        book.disconnected(stranger, true, false, now);
        assert!(book
            .due(now + Duration::from_secs(3600), 10, false, None)
            .iter()
            .all(|a| *a != stranger));
        book.ban(natted);
        let much_later = later + 3 * RENDEZVOUS_INTERVAL;
        assert!(!book.punch(natted, much_later));
        assert_eq!(book.rendezvous(natted, much_later), None);
    }
}
