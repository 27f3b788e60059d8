//! [`PeerMap`]: a torrent's connections by [`PeerKey`], in key order.
//!
//! A torrent hands out keys in increasing order and looks a connection up several times
//! for every message it receives; a B-tree walk per lookup was a measurable part of a
//! run. Here a key's slot is found by subtraction, iteration is in key order (as a
//! `BTreeMap`'s, so runs do not change), and slots of the oldest removed keys are let go,
//! so the memory follows the span of live keys, not every key ever issued.

use std::collections::VecDeque;

use shoal_swarm::PeerKey;

/// Values by [`PeerKey`], for keys inserted in increasing order. The methods are those of
/// a `BTreeMap` that the torrent uses.
pub struct PeerMap<V> {
    /// The key of `slots[0]`.
    base: u64,
    slots: VecDeque<Option<(PeerKey, V)>>,
    len: usize,
}

impl<V> Default for PeerMap<V> {
    fn default() -> Self {
        PeerMap {
            base: 0,
            slots: VecDeque::new(),
            len: 0,
        }
    }
}

impl<V> PeerMap<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn index(&self, key: &PeerKey) -> Option<usize> {
        usize::try_from(key.0.checked_sub(self.base)?).ok()
    }

    pub fn get(&self, key: &PeerKey) -> Option<&V> {
        let (_, value) = self.slots.get(self.index(key)?)?.as_ref()?;
        Some(value)
    }

    pub fn get_mut(&mut self, key: &PeerKey) -> Option<&mut V> {
        let index = self.index(key)?;
        let (_, value) = self.slots.get_mut(index)?.as_mut()?;
        Some(value)
    }

    /// Inserts `value` under `key`, which must be above every key inserted before.
    pub fn insert(&mut self, key: PeerKey, value: V) {
        if self.slots.is_empty() {
            self.base = key.0;
        }
        let index = self
            .index(&key)
            .filter(|&i| i >= self.slots.len())
            .expect("keys are inserted in increasing order");
        self.slots.resize_with(index, || None);
        self.slots.push_back(Some((key, value)));
        self.len += 1;
    }

    pub fn remove(&mut self, key: &PeerKey) -> Option<V> {
        let index = self.index(key)?;
        let (_, value) = self.slots.get_mut(index)?.take()?;
        self.len -= 1;
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(value)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PeerKey, &V)> {
        self.slots.iter().flatten().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&PeerKey, &mut V)> {
        self.slots.iter_mut().flatten().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &PeerKey> {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.slots.iter_mut().flatten().map(|(_, v)| v)
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
        let span = model.keys().last().unwrap().0 - model.keys().next().unwrap().0;
        assert_eq!(map.slots.len() as u64, span + 1, "old slots are let go");
    }
}
