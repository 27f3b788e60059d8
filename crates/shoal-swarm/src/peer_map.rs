//! [`PeerMap`]: a torrent's connections by [`PeerKey`], in key order.
//!
//! A torrent hands out keys in increasing order and looks a connection up several times
//! for every message it receives; a B-tree walk per lookup was a measurable part of a
//! simulated run, and so was a binary search over a sorted vector (a third more
//! instructions in a whole run). Here a key's slot is found by subtraction, iteration
//! is in key order (as a `BTreeMap`'s, so runs do not change), and the slots of removed
//! keys are let go from the front. A connection that outlives many newer ones would
//! keep a slot alive for every key issued since (a long-running seed's); once most
//! slots are empty, the oldest live entries move to a small ordered map instead, so the
//! memory stays proportional to the live connections.

use std::collections::{BTreeMap, VecDeque};

use crate::PeerKey;

/// Below this many slots the map never compacts.
const MIN_SPAN: usize = 64;

/// Values by [`PeerKey`], for keys inserted in increasing order. The methods are those of
/// a `BTreeMap` that the torrent uses.
pub struct PeerMap<V> {
    /// Entries moved out of `slots`; every key here is below `base`.
    old: BTreeMap<PeerKey, V>,
    /// The key of `slots[0]`.
    base: u64,
    slots: VecDeque<Option<(PeerKey, V)>>,
    /// Live entries in `slots`.
    in_slots: usize,
}

impl<V> Default for PeerMap<V> {
    fn default() -> Self {
        PeerMap {
            old: BTreeMap::new(),
            base: 0,
            slots: VecDeque::new(),
            in_slots: 0,
        }
    }
}

impl<V> PeerMap<V> {
    pub fn len(&self) -> usize {
        self.old.len() + self.in_slots
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn index(&self, key: &PeerKey) -> Option<usize> {
        usize::try_from(key.0.checked_sub(self.base)?).ok()
    }

    pub fn get(&self, key: &PeerKey) -> Option<&V> {
        let Some(index) = self.index(key) else {
            return self.old.get(key);
        };
        let (_, value) = self.slots.get(index)?.as_ref()?;
        Some(value)
    }

    pub fn get_mut(&mut self, key: &PeerKey) -> Option<&mut V> {
        let Some(index) = self.index(key) else {
            return self.old.get_mut(key);
        };
        let (_, value) = self.slots.get_mut(index)?.as_mut()?;
        Some(value)
    }

    /// Inserts `value` under `key`, which must be above every key inserted before.
    pub fn insert(&mut self, key: PeerKey, value: V) {
        if self.slots.is_empty() {
            assert!(
                self.old
                    .last_key_value()
                    .is_none_or(|(last, _)| *last < key),
                "keys are inserted in increasing order"
            );
            self.base = key.0;
        }
        let index = self
            .index(&key)
            .filter(|&i| i >= self.slots.len())
            .expect("keys are inserted in increasing order");
        self.slots.resize_with(index, || None);
        self.slots.push_back(Some((key, value)));
        self.in_slots += 1;
        self.compact();
    }

    pub fn remove(&mut self, key: &PeerKey) -> Option<V> {
        let Some(index) = self.index(key) else {
            return self.old.remove(key);
        };
        let (_, value) = self.slots.get_mut(index)?.take()?;
        self.in_slots -= 1;
        self.compact();
        Some(value)
    }

    /// Lets go of empty slots at the front, and while most slots are empty moves the
    /// oldest live entry to `old`: the slots stay within twice the live entries.
    fn compact(&mut self) {
        loop {
            let sparse = self.slots.len() > MIN_SPAN.max(2 * self.len());
            match self.slots.front_mut() {
                Some(None) => {}
                Some(slot) if sparse => {
                    let (key, value) = slot.take().expect("matched above");
                    self.old.insert(key, value);
                    self.in_slots -= 1;
                }
                _ => return,
            }
            self.slots.pop_front();
            self.base += 1;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PeerKey, &V)> {
        let recent = self.slots.iter().flatten().map(|(k, v)| (k, v));
        self.old.iter().chain(recent)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&PeerKey, &mut V)> {
        let recent = self.slots.iter_mut().flatten().map(|(k, v)| (&*k, v));
        self.old.iter_mut().chain(recent)
    }

    pub fn keys(&self) -> impl Iterator<Item = &PeerKey> {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.iter_mut().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Any sequence of increasing inserts and arbitrary removes behaves as a `BTreeMap`.
    #[test]
    fn behaves_as_an_ordered_map() {
        let mut map = PeerMap::default();
        let mut model = BTreeMap::new();
        let mut next = 1u64 << 40;
        for step in 0u64..2000 {
            if step % 3 != 2 {
                map.insert(PeerKey(next), step);
                model.insert(PeerKey(next), step);
                next += 1 + step % 4;
            } else {
                // A recent key (maybe absent), or the oldest one.
                let key = match step % 2 {
                    0 => PeerKey(next - (step * 7) % 40),
                    _ => *model.keys().next().expect("more inserts than removes"),
                };
                assert_eq!(map.remove(&key), model.remove(&key));
            }
            let probe = PeerKey(next - step % 50);
            assert_eq!(map.get(&probe), model.get(&probe));
            assert_eq!(map.len(), model.len());
        }
        assert!(map.iter().eq(model.iter()));
        for value in map.values_mut() {
            *value += 1;
        }
        assert!(map
            .values()
            .eq(model.values().map(|v| v + 1).collect::<Vec<_>>().iter()));
        assert_eq!(map.get(&PeerKey(0)), None);
        assert!(
            map.slots.len() <= MIN_SPAN.max(2 * map.len()),
            "removed keys take no room"
        );
    }

    /// Connections that outlive many newer ones (a long-running seed's): the map's room
    /// follows the live entries, and it still behaves as a `BTreeMap`, old entries
    /// included.
    #[test]
    fn long_lived_entries_do_not_pin_every_later_key() {
        let mut map = PeerMap::default();
        let mut model = BTreeMap::new();
        let mut next = 0u64;
        let mut random = 7u64;
        for step in 0u64..20_000 {
            random = random
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Keep ~20 live: every 50th entry is long-lived, the rest churn.
            if model.len() < 20 || random >> 62 == 0 {
                map.insert(PeerKey(next), step);
                model.insert(PeerKey(next), step);
                next += 1;
            } else {
                let live: Vec<PeerKey> = model.keys().copied().collect();
                let pick = live[(random >> 33) as usize % live.len()];
                if !pick.0.is_multiple_of(50) || random.is_multiple_of(97) {
                    assert_eq!(map.remove(&pick), model.remove(&pick));
                }
            }
            assert_eq!(map.len(), model.len());
            assert!(map.slots.len() <= MIN_SPAN.max(2 * map.len()));
            if step % 500 == 0 {
                assert!(map.iter().eq(model.iter()));
                for key in model.keys() {
                    assert_eq!(map.get(key), model.get(key));
                }
            }
        }
        assert!(
            !map.old.is_empty(),
            "long-lived entries moved out of the slots"
        );
        assert!(map.iter().eq(model.iter()));
    }
}
