//! BEP 12 tracker tiers: parsed once, shuffled within each tier, and reordered as
//! trackers answer (the one that answered moves to the front of its tier).

use rand::seq::SliceRandom;
use rand::Rng;

use crate::url::{TrackerUrl, UrlError};

/// Most trackers kept for one torrent; a torrent with thousands of URLs gets the first.
pub const MAX_TRACKERS: usize = 64;

/// Tiers of trackers, each entry carrying the caller's per-tracker state `T`.
#[derive(Debug, Clone)]
pub struct Tiers<T> {
    tiers: Vec<Vec<T>>,
}

impl<T> Tiers<T> {
    /// Parses `urls` (tiers of URL strings, e.g. a torrent's `announce-list` or a
    /// magnet's `tr=` as one tier each), drops duplicates and unusable URLs (returned
    /// with the reason), shuffles each tier and wraps each URL with `make`.
    pub fn new(
        urls: &[Vec<String>],
        rng: &mut impl Rng,
        mut make: impl FnMut(TrackerUrl) -> T,
    ) -> (Self, Vec<(String, UrlError)>) {
        let mut seen = std::collections::HashSet::new();
        let mut rejected = Vec::new();
        let mut tiers = Vec::new();
        let mut total = 0;
        for tier in urls {
            let mut parsed = Vec::new();
            for text in tier {
                match TrackerUrl::parse(text.trim()) {
                    Ok(url) if total < MAX_TRACKERS && seen.insert(url.clone()) => {
                        total += 1;
                        parsed.push(url);
                    }
                    Ok(_) => {}
                    Err(e) => rejected.push((text.clone(), e)),
                }
            }
            if !parsed.is_empty() {
                parsed.shuffle(rng);
                tiers.push(parsed.into_iter().map(&mut make).collect());
            }
        }
        (Tiers { tiers }, rejected)
    }

    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    pub fn len(&self) -> usize {
        self.tiers.iter().map(Vec::len).sum()
    }

    /// Every tracker in announce order: tier by tier, front to back.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.tiers.iter().flatten()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.tiers.iter_mut().flatten()
    }

    /// The tracker at position `n` of [`iter`](Self::iter).
    pub fn nth_mut(&mut self, n: usize) -> Option<&mut T> {
        self.tiers.iter_mut().flatten().nth(n)
    }

    /// Moves the tracker at position `n` to the front of its tier; returns its new
    /// position.
    pub fn promote(&mut self, mut n: usize) -> usize {
        let mut start = 0;
        for tier in &mut self.tiers {
            if n < tier.len() {
                let t = tier.remove(n);
                tier.insert(0, t);
                return start;
            }
            n -= tier.len();
            start += tier.len();
        }
        start
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    fn urls(t: &Tiers<TrackerUrl>) -> Vec<String> {
        t.iter().map(|u| u.to_string()).collect()
    }

    #[test]
    fn parses_dedups_and_rejects() {
        let mut rng = StdRng::seed_from_u64(1);
        let (t, rejected) = Tiers::new(
            &[
                vec!["udp://a:1".into(), "file:///x".into()],
                vec![],
                vec!["udp://a:1".into(), "http://b/announce".into()],
            ],
            &mut rng,
            |u| u,
        );
        assert_eq!(urls(&t), ["udp://a:1", "http://b:80/announce"]);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, "file:///x");
    }

    #[test]
    fn shuffles_within_tiers_only() {
        let tier1: Vec<String> = (0..8).map(|i| format!("udp://a{i}:1")).collect();
        let tier2: Vec<String> = (0..8).map(|i| format!("udp://b{i}:1")).collect();
        let mut orders = std::collections::HashSet::new();
        for seed in 0..10 {
            let mut rng = StdRng::seed_from_u64(seed);
            let (t, _) = Tiers::new(&[tier1.clone(), tier2.clone()], &mut rng, |u| u);
            let order = urls(&t);
            assert!(order[..8].iter().all(|u| u.starts_with("udp://a")));
            assert!(order[8..].iter().all(|u| u.starts_with("udp://b")));
            orders.insert(order);
        }
        assert!(orders.len() > 1, "tiers are shuffled");
    }

    #[test]
    fn promote_moves_to_front_of_its_tier() {
        let mut rng = StdRng::seed_from_u64(1);
        let (mut t, _) = Tiers::new(
            &[
                vec!["udp://a:1".into()],
                vec!["udp://b:1".into(), "udp://c:1".into()],
            ],
            &mut rng,
            |u| u,
        );
        let second = urls(&t)[2].clone();
        assert_eq!(t.promote(2), 1);
        assert_eq!(urls(&t)[1], second);
        assert_eq!(t.promote(0), 0);
    }

    #[test]
    fn caps_the_number_of_trackers() {
        let mut rng = StdRng::seed_from_u64(1);
        let many: Vec<String> = (0..1000).map(|i| format!("udp://h{i}:1")).collect();
        let (t, _) = Tiers::new(&[many], &mut rng, |u| u);
        assert_eq!(t.len(), MAX_TRACKERS);
    }
}
