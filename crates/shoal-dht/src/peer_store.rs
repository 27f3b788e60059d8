//! Peers announced to us (`announce_peer`), served in `get_peers` answers.
//!
//! Everything here is grown by remote parties, so it is bounded: at most
//! [`PeerStoreLimits::max_torrents`] info-hashes and [`PeerStoreLimits::max_peers_per_torrent`]
//! peers each (a full list replaces its oldest entry), every entry expiring after
//! [`PeerStoreLimits::ttl`] unless re-announced.

use crate::id::NodeId;
use crate::krpc::ScrapeFilters;
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct PeerStoreLimits {
    pub max_torrents: usize,
    pub max_peers_per_torrent: usize,
    pub ttl: Duration,
}

impl Default for PeerStoreLimits {
    fn default() -> Self {
        PeerStoreLimits {
            max_torrents: 5000,
            max_peers_per_torrent: 200,
            ttl: Duration::from_secs(30 * 60),
        }
    }
}

/// One announced peer: where, until when, and whether it said it seeds (BEP 33).
#[derive(Debug, Clone, Copy)]
struct Stored {
    peer: SocketAddr,
    expires: Instant,
    seed: bool,
}

pub struct PeerStore {
    limits: PeerStoreLimits,
    torrents: HashMap<NodeId, Vec<Stored>>,
}

impl PeerStore {
    pub fn new(limits: PeerStoreLimits) -> Self {
        PeerStore {
            limits,
            torrents: HashMap::new(),
        }
    }

    /// Records `peer` (a seed if `seed`) for `info_hash`; returns false when the store is
    /// full.
    pub fn announce(
        &mut self,
        info_hash: NodeId,
        peer: SocketAddr,
        seed: bool,
        now: Instant,
    ) -> bool {
        let expires = now + self.limits.ttl;
        if !self.torrents.contains_key(&info_hash)
            && self.torrents.len() >= self.limits.max_torrents
        {
            self.expire(now);
            if self.torrents.len() >= self.limits.max_torrents {
                return false;
            }
        }
        let peers = self.torrents.entry(info_hash).or_default();
        let stored = Stored {
            peer,
            expires,
            seed,
        };
        if let Some(entry) = peers.iter_mut().find(|s| s.peer == peer) {
            *entry = stored;
        } else if peers.len() < self.limits.max_peers_per_torrent {
            peers.push(stored);
        } else if let Some(oldest) = peers.iter_mut().min_by_key(|s| s.expires) {
            *oldest = stored;
        }
        true
    }

    /// Up to `max` live peers for `info_hash`, a random sample when there are more.
    pub fn get(
        &self,
        info_hash: &NodeId,
        max: usize,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Vec<SocketAddr> {
        let Some(peers) = self.torrents.get(info_hash) else {
            return Vec::new();
        };
        let mut live: Vec<SocketAddr> = peers
            .iter()
            .filter(|s| s.expires > now)
            .map(|s| s.peer)
            .collect();
        if live.len() > max {
            live.shuffle(rng);
            live.truncate(max);
        }
        live
    }

    /// BEP 33: the bloom filters of the live seeds' and other peers' IPs for
    /// `info_hash`; `None` when we store nobody for it.
    pub fn filters(&self, info_hash: &NodeId, now: Instant) -> Option<ScrapeFilters> {
        let mut filters = ScrapeFilters::default();
        let mut any = false;
        for s in self
            .torrents
            .get(info_hash)?
            .iter()
            .filter(|s| s.expires > now)
        {
            let filter = if s.seed {
                &mut filters.seeds
            } else {
                &mut filters.peers
            };
            filter.insert(s.peer.ip());
            any = true;
        }
        any.then_some(filters)
    }

    /// Up to `max` of the info-hashes we store peers for, chosen at random (BEP 51).
    pub fn sample(&self, max: usize, rng: &mut impl Rng) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self.torrents.keys().copied().collect();
        // Sorted first: the map's order differs from process to process, the RNG's does not.
        all.sort_unstable();
        all.shuffle(rng);
        all.truncate(max);
        all
    }

    pub fn expire(&mut self, now: Instant) {
        self.torrents.retain(|_, peers| {
            peers.retain(|s| s.expires > now);
            !peers.is_empty()
        });
    }

    pub fn torrent_count(&self) -> usize {
        self.torrents.len()
    }

    pub fn peer_count(&self) -> usize {
        self.torrents.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn bounded_and_expiring() {
        let t0 = Instant::now();
        let limits = PeerStoreLimits {
            max_torrents: 2,
            max_peers_per_torrent: 3,
            ttl: Duration::from_secs(60),
        };
        let mut store = PeerStore::new(limits);
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let a = NodeId([1; 20]);
        for port in 1..=10u16 {
            assert!(store.announce(a, SocketAddr::from(([10, 0, 0, 1], port)), false, t0));
        }
        assert_eq!(store.get(&a, 100, t0, &mut rng).len(), 3);
        assert_eq!(store.get(&a, 2, t0, &mut rng).len(), 2);
        assert!(store.announce(NodeId([2; 20]), "10.0.0.2:1".parse().unwrap(), false, t0));
        assert!(!store.announce(NodeId([3; 20]), "10.0.0.3:1".parse().unwrap(), false, t0));
        assert_eq!(store.torrent_count(), 2);
        let later = t0 + Duration::from_secs(61);
        assert!(store.get(&a, 100, later, &mut rng).is_empty());
        assert!(store.announce(NodeId([3; 20]), "10.0.0.3:1".parse().unwrap(), false, later));
        assert_eq!(store.torrent_count(), 1);
        assert_eq!(store.peer_count(), 1);
    }

    #[test]
    fn scrape_filters_split_seeds_from_peers() {
        let t0 = Instant::now();
        let mut store = PeerStore::new(PeerStoreLimits::default());
        let a = NodeId([1; 20]);
        assert!(store.filters(&a, t0).is_none());
        for i in 1..=30u8 {
            let seed = i <= 10;
            assert!(store.announce(a, SocketAddr::from(([10, 0, 1, i], 6881)), seed, t0));
        }
        // A peer that says it seeds now moves over.
        store.announce(a, SocketAddr::from(([10, 0, 1, 30], 6881)), true, t0);
        let filters = store.filters(&a, t0).unwrap();
        assert!(
            (filters.seeds.estimate() - 11.0).abs() < 1.5,
            "{:?}",
            filters.seeds
        );
        assert!(
            (filters.peers.estimate() - 19.0).abs() < 1.5,
            "{:?}",
            filters.peers
        );
        let later = t0 + PeerStoreLimits::default().ttl + Duration::from_secs(1);
        assert!(store.filters(&a, later).is_none(), "expired");
    }
}
