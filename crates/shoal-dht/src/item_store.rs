//! The items this node stores for others (BEP 44), bounded in number and kept for
//! [`ItemStoreLimits::lifetime`] after their last `put`. When full, the item farthest
//! from our own id makes room (as libtorrent does): we are among the nodes responsible
//! for targets near us, so a flood of puts for arbitrary targets cannot push those out.
//!
//! Every item is checked before it gets here (the node verifies signatures); the store
//! applies the rules between versions of a mutable item: never back to a lower sequence
//! number, the same one only with the same value (which refreshes it), and a `cas`
//! must name the version being replaced.

use crate::item::Item;
use crate::NodeId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemStoreLimits {
    /// Items kept at most; a new one then replaces the one farthest from our id.
    pub max_items: usize,
    /// How long an item lives without being put again. BEP 44: items may expire after
    /// 2 hours, and publishers re-put them every hour.
    pub lifetime: Duration,
}

impl Default for ItemStoreLimits {
    fn default() -> Self {
        ItemStoreLimits {
            // libtorrent's `dht_max_dht_items`.
            max_items: 700,
            lifetime: Duration::from_secs(2 * 60 * 60),
        }
    }
}

/// Why a `put` of a mutable item was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutRefused {
    /// `cas` did not name the stored version (BEP 44 error 301).
    CasMismatch { stored: i64 },
    /// The stored version is newer, or the same number with another value (error 302).
    Outdated { stored: i64 },
}

struct Stored {
    item: Item,
    put_at: Instant,
}

pub struct ItemStore {
    limits: ItemStoreLimits,
    own: NodeId,
    items: HashMap<NodeId, Stored>,
}

impl ItemStore {
    /// A store for the node with id `own`.
    pub fn new(limits: ItemStoreLimits, own: NodeId) -> Self {
        ItemStore {
            limits,
            own,
            items: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn get(&self, target: &NodeId, now: Instant) -> Option<&Item> {
        self.items
            .get(target)
            .filter(|s| now.saturating_duration_since(s.put_at) < self.limits.lifetime)
            .map(|s| &s.item)
    }

    /// Stores `item` (already verified) unless the version rules refuse it.
    pub fn put(&mut self, item: Item, cas: Option<i64>, now: Instant) -> Result<(), PutRefused> {
        let target = item.target();
        if let (Some(stored), Some(seq)) = (self.get(&target, now), item.seq()) {
            let current = stored.seq().unwrap_or(i64::MIN);
            if cas.is_some_and(|cas| cas != current) {
                return Err(PutRefused::CasMismatch { stored: current });
            }
            if seq < current || (seq == current && stored.value() != item.value()) {
                return Err(PutRefused::Outdated { stored: current });
            }
        }
        if !self.items.contains_key(&target) && self.items.len() >= self.limits.max_items {
            self.expire(now);
            if self.items.len() >= self.limits.max_items {
                let own = self.own;
                let farthest = self.items.keys().copied().max_by_key(|t| t.distance(&own));
                if let Some(farthest) = farthest {
                    self.items.remove(&farthest);
                }
            }
        }
        self.items.insert(target, Stored { item, put_at: now });
        Ok(())
    }

    pub fn expire(&mut self, now: Instant) {
        let lifetime = self.limits.lifetime;
        self.items
            .retain(|_, s| now.saturating_duration_since(s.put_at) < lifetime);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::ItemSigner;

    fn store(max_items: usize) -> ItemStore {
        let limits = ItemStoreLimits {
            max_items,
            lifetime: Duration::from_secs(7200),
        };
        ItemStore::new(limits, NodeId([0; 20]))
    }

    #[test]
    fn versions_only_move_forward() {
        let now = Instant::now();
        let mut s = store(10);
        let signer = ItemSigner::from_secret(&[3; 32]).unwrap();
        let v = |seq: i64, value: &str| {
            Item::Mutable(signer.sign(b"", seq, value.as_bytes().to_vec()).unwrap())
        };
        s.put(v(5, "1:a"), None, now).unwrap();
        assert_eq!(
            s.put(v(4, "1:b"), None, now),
            Err(PutRefused::Outdated { stored: 5 })
        );
        assert_eq!(
            s.put(v(5, "1:b"), None, now),
            Err(PutRefused::Outdated { stored: 5 })
        );
        // The same version again refreshes it.
        s.put(v(5, "1:a"), None, now).unwrap();
        assert_eq!(
            s.put(v(6, "1:c"), Some(4), now),
            Err(PutRefused::CasMismatch { stored: 5 })
        );
        s.put(v(6, "1:c"), Some(5), now).unwrap();
        let target = v(6, "1:c").target();
        assert_eq!(s.get(&target, now).unwrap().value(), b"1:c");
    }

    #[test]
    fn bounded_and_expiring() {
        let t0 = Instant::now();
        let mut s = store(3);
        for i in 0..5u8 {
            let item = Item::immutable(format!("i{i}e").into_bytes()).unwrap();
            s.put(item, None, t0 + Duration::from_secs(u64::from(i)))
                .unwrap();
        }
        assert_eq!(s.len(), 3);
        // The ones farthest from our id (all zeros) made room as each new one came.
        let mut targets: Vec<NodeId> = (0..5u8)
            .map(|i| {
                Item::immutable(format!("i{i}e").into_bytes())
                    .unwrap()
                    .target()
            })
            .collect();
        let later = t0 + Duration::from_secs(10);
        let last = targets[4];
        let mut kept: Vec<NodeId> = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            if i >= 3 {
                kept.sort_by_key(|k| k.distance(&NodeId([0; 20])));
                kept.pop();
            }
            kept.push(*t);
        }
        targets.retain(|t| s.get(t, later).is_some());
        targets.sort();
        kept.sort();
        assert_eq!(targets, kept);
        let expired = t0 + Duration::from_secs(7205);
        assert!(s.get(&last, expired).is_none());
        s.expire(expired);
        assert_eq!(s.len(), 0);
    }
}
