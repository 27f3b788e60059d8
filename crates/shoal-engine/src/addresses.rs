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
            });
        }
    }

    /// Addresses due for a connection attempt, marked as connecting.
    pub fn due(&mut self, now: Instant, max: usize) -> Vec<SocketAddr> {
        let mut due: Vec<SocketAddr> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.connected && !e.banned && e.next_attempt <= now)
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

    /// The connection ended; `failed` when it never got going (refused, handshake error).
    pub fn disconnected(&mut self, addr: SocketAddr, failed: bool, now: Instant) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.connected = false;
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
        assert_eq!(book.due(now, 10), [a]);
        assert!(book.due(now, 10).is_empty(), "already connecting");
        book.disconnected(a, true, now);
        assert!(book.due(now + Duration::from_secs(4), 10).is_empty());
        assert_eq!(book.due(now + Duration::from_secs(5), 10), [a]);
        book.disconnected(a, true, now);
        assert!(book.due(now + Duration::from_secs(9), 10).is_empty());
        book.ban(a);
        assert!(book.due(now + Duration::from_secs(3600), 10).is_empty());
    }

    #[test]
    fn a_peer_without_encryption_is_remembered() {
        let now = Instant::now();
        let a: SocketAddr = "127.0.0.2:1".parse().unwrap();
        let mut book = AddressBook::default();
        book.add(a, now);
        assert!(!book.is_plain_only(&a));
        book.set_plain_only(a);
        book.disconnected(a, false, now);
        assert!(book.is_plain_only(&a), "kept across connections");
    }
}
