//! A tree node's label: a prefix of a key, 0 to [`KEY_BITS`] bits long. The root is the
//! empty prefix; a node's children append a 0 and a 1.

use crate::keyword::{KEY_BITS, KEY_BYTES};

/// What every node's BEP 44 salt starts with: names the format, so other uses of the
/// same key (other salts) never collide with a tree.
const SALT_PREFIX: &[u8] = b"shoal-pht1:";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    /// The prefix's bits, most significant first; bits past `len` are zero.
    bits: [u8; KEY_BYTES],
    len: u8,
}

impl Label {
    pub const ROOT: Label = Label {
        bits: [0; KEY_BYTES],
        len: 0,
    };

    /// The first `len` bits of `key` (at most [`KEY_BITS`]).
    pub fn of(key: &[u8; KEY_BYTES], len: u8) -> Label {
        let len = len.min(KEY_BITS);
        let mut bits = *key;
        for (i, byte) in bits.iter_mut().enumerate() {
            let start = (i * 8) as u32;
            let keep = u32::from(len).saturating_sub(start).min(8);
            *byte &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
        }
        Label { bits, len }
    }

    pub fn len(&self) -> u8 {
        self.len
    }

    /// The empty prefix: the root's label.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The child that appends `bit`; `None` at full length.
    pub fn child(&self, bit: bool) -> Option<Label> {
        if self.len >= KEY_BITS {
            return None;
        }
        let mut bits = self.bits;
        if bit {
            bits[usize::from(self.len / 8)] |= 0x80 >> (self.len % 8);
        }
        Some(Label {
            bits,
            len: self.len + 1,
        })
    }

    /// Whether this prefix is a prefix of `key`.
    pub fn covers(&self, key: &[u8; KEY_BYTES]) -> bool {
        Label::of(key, self.len) == *self
    }

    /// Bit `i` (most significant first).
    pub fn bit(&self, i: u8) -> bool {
        self.bits[usize::from(i / 8)] & (0x80 >> (i % 8)) != 0
    }

    /// This label cut to `len` bits.
    pub fn prefix(&self, len: u8) -> Label {
        Label::of(&self.bits, len.min(self.len))
    }

    /// Whether one of the two labels is a prefix of the other.
    pub fn agrees_with(&self, other: &Label) -> bool {
        let len = self.len.min(other.len);
        self.prefix(len) == other.prefix(len)
    }

    /// Whether `other` is a prefix of this label (or the same).
    pub fn extends(&self, other: &Label) -> bool {
        self.len >= other.len && self.prefix(other.len) == *other
    }

    /// The longest common prefix of two keys.
    pub fn common(a: &[u8; KEY_BYTES], b: &[u8; KEY_BYTES]) -> Label {
        let same = a
            .iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .map_or(u32::from(KEY_BITS), |i| {
                (i * 8) as u32 + (a[i] ^ b[i]).leading_zeros()
            });
        Label::of(a, same as u8)
    }

    /// The length, then the bits' bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let used = usize::from(self.len).div_ceil(8);
        let mut out = vec![self.len];
        out.extend_from_slice(&self.bits[..used]);
        out
    }

    /// The inverse of [`Label::to_bytes`]; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<Label> {
        let (&len, bits) = bytes.split_first()?;
        if len > KEY_BITS || bits.len() != usize::from(len).div_ceil(8) {
            return None;
        }
        let mut key = [0; KEY_BYTES];
        key[..bits.len()].copy_from_slice(bits);
        let label = Label::of(&key, len);
        (label.bits == key).then_some(label)
    }

    /// The node's BEP 44 salt: the format name, the length, then the bits' bytes.
    pub fn salt(&self) -> Vec<u8> {
        let mut salt = SALT_PREFIX.to_vec();
        salt.extend_from_slice(&self.to_bytes());
        salt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyword::key;

    #[test]
    fn prefixes_children_and_salts() {
        let k = key("ab", None); // 0x61 0x62
        let l = Label::of(&k, 7);
        assert!(l.covers(&k));
        assert!(!l.covers(&key("c", None)));
        // 'a' is 0110_0001: its eighth bit is a 1.
        assert_eq!(l.child(true), Some(Label::of(&k, 8)));
        assert_ne!(l.child(false), Some(Label::of(&k, 8)));
        assert_eq!(Label::ROOT.child(false).unwrap().len(), 1);
        assert!(Label::of(&k, KEY_BITS).child(true).is_none());
        // Salts differ by length even where the bits agree, and stay within BEP 44's 64.
        assert_ne!(Label::of(&k, 1).salt(), Label::of(&k, 2).salt());
        assert!(Label::of(&k, KEY_BITS).salt().len() <= 64);
        for len in [0, 1, 7, 8, 9, KEY_BITS] {
            let l = Label::of(&k, len);
            assert_eq!(Label::from_bytes(&l.to_bytes()), Some(l));
        }
        assert_eq!(Label::from_bytes(&[3, 0xff]), None, "bits past the length");
        assert_eq!(Label::from_bytes(&[9, 0]), None, "too few bytes");
        let c = Label::common(&key("abc", None), &key("abd", None));
        assert_eq!(c.len(), 16 + 5);
        assert!(c.covers(&key("abc", None)) && c.covers(&key("abd", None)));
        assert!(Label::of(&k, 3).agrees_with(&Label::of(&k, 9)));
        assert!(Label::of(&k, 9).extends(&Label::of(&k, 3)));
        assert!(!Label::of(&k, 3).extends(&Label::of(&k, 9)));
        assert!(!Label::of(&k, 9).agrees_with(&Label::of(&key("q", None), 9)));
    }
}
