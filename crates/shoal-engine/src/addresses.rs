//! The peer address book: every address we know for a torrent, with exponential
//! back-off for those that fail, so a dead peer is retried ever less often.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Addresses kept per torrent; new ones beyond this are ignored.
const MAX_ADDRESSES: usize = 2000;

#[derive(Debug, Clone)]
struct Entry {
    failures: u32,
    next_attempt: Instant,
    connected: bool,
    banned: bool,
    /// It hung up on our encrypted handshake and took a plaintext one: dial it in
    /// plaintext from now on (libtorrent keeps the same per peer).
    plain_only: bool,
    /// It had every piece when last connected: not worth dialling once we are done.
    seed: bool,
}

#[derive(Debug, Default)]
pub struct AddressBook {
    entries: HashMap<SocketAddr, Entry>,
}

impl AddressBook {
    pub fn add(&mut self, addr: SocketAddr, now: Instant) {
        if self.entries.len() < MAX_ADDRESSES {
            self.entries.entry(addr).or_insert(Entry {
                failures: 0,
                next_attempt: now,
                connected: false,
                banned: false,
                plain_only: false,
                seed: false,
            });
        }
    }

    /// Addresses due for a connection attempt, marked as connecting; seeds (and partial
    /// seeds) are skipped when we are `done` (have every piece we want), as they could
    /// give us nothing and want nothing from us.
    pub fn due(&mut self, now: Instant, max: usize, done: bool) -> Vec<SocketAddr> {
        let mut due: Vec<SocketAddr> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.connected && !e.banned && e.next_attempt <= now)
            .filter(|(_, e)| !(done && e.seed))
            .map(|(a, _)| *a)
            .take(max)
            .collect();
        due.sort();
        for addr in &due {
            self.entries.get_mut(addr).expect("listed").connected = true;
        }
        due
    }

    /// Marks an address connected (e.g. it connected to us).
    pub fn connected(&mut self, addr: SocketAddr, now: Instant) {
        self.add(addr, now);
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

    pub fn is_banned(&self, addr: &SocketAddr) -> bool {
        self.entries.get(addr).is_some_and(|e| e.banned)
    }

    /// The peer at `addr` does not speak MSE (see [`Entry`]).
    pub fn set_plain_only(&mut self, addr: SocketAddr) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.plain_only = true;
        }
    }

    pub fn is_plain_only(&self, addr: &SocketAddr) -> bool {
        self.entries.get(addr).is_some_and(|e| e.plain_only)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_peers_back_off() {
        let now = Instant::now();
        let a: SocketAddr = "127.0.0.2:1".parse().unwrap();
        let mut book = AddressBook::default();
        book.add(a, now);
        assert_eq!(book.due(now, 10, false), [a]);
        assert!(book.due(now, 10, false).is_empty(), "already connecting");
        book.disconnected(a, true, false, now);
        assert!(book.due(now + Duration::from_secs(4), 10, false).is_empty());
        assert_eq!(book.due(now + Duration::from_secs(5), 10, false), [a]);
        book.disconnected(a, true, false, now);
        assert!(book.due(now + Duration::from_secs(9), 10, false).is_empty());
        book.ban(a);
        assert!(book
            .due(now + Duration::from_secs(3600), 10, false)
            .is_empty());
    }

    #[test]
    fn seeds_are_not_dialled_once_we_are_done() {
        let now = Instant::now();
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.2:1".parse().unwrap(),
            "127.0.0.3:1".parse().unwrap(),
        );
        let mut book = AddressBook::default();
        book.add(a, now);
        book.add(b, now);
        assert_eq!(book.due(now, 10, true), [a, b], "not known as seeds yet");
        book.disconnected(a, false, true, now);
        book.disconnected(b, false, false, now);
        let later = now + Duration::from_secs(5);
        assert_eq!(book.due(later, 10, true), [b]);
        assert_eq!(
            book.due(later, 10, false),
            [a],
            "still a source while we download"
        );
        book.not_taken(a, later);
        let after = later + Duration::from_secs(5);
        assert!(
            book.due(after, 10, true).is_empty(),
            "still known as a seed"
        );
    }

    #[test]
    fn a_peer_without_encryption_is_remembered() {
        let now = Instant::now();
        let a: SocketAddr = "127.0.0.2:1".parse().unwrap();
        let mut book = AddressBook::default();
        book.add(a, now);
        assert!(!book.is_plain_only(&a));
        book.set_plain_only(a);
        book.disconnected(a, false, false, now);
        assert!(book.is_plain_only(&a), "kept across connections");
    }
}
