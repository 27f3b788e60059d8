//! Small shared types of the transfer path: peer ids, blocks and piece bitfields.

use std::fmt;

/// Pieces are requested in blocks of this size (BEP 3 practice; requests larger than
/// this are refused by most clients).
pub const BLOCK_SIZE: u32 = 16 * 1024;

/// The 20-byte id a peer announces in its handshake.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub [u8; 20]);

impl PeerId {
    /// Azureus-style id `-SH0100-` followed by 12 caller-supplied random bytes (cores take
    /// randomness as an argument so that runs can be replayed).
    pub fn shoal(random: [u8; 12]) -> Self {
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(b"-SH0100-");
        id[8..].copy_from_slice(&random);
        PeerId(id)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PeerId({})",
            String::from_utf8_lossy(&self.0).escape_debug()
        )
    }
}

/// One block of one piece: what `request`, `cancel` and `reject` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Block {
    pub piece: u32,
    pub offset: u32,
    pub length: u32,
}

/// One bit per piece, most significant bit of the first byte = piece 0 (BEP 3 order).
#[derive(Clone, PartialEq, Eq)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: usize,
    ones: usize,
}

impl Bitfield {
    pub fn new(len: usize) -> Self {
        Bitfield {
            bytes: vec![0; len.div_ceil(8)],
            len,
            ones: 0,
        }
    }

    pub fn full(len: usize) -> Self {
        let mut b = Bitfield::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// From wire bytes: the length must be exactly right and spare bits clear.
    pub fn from_bytes(bytes: &[u8], len: usize) -> Option<Self> {
        if bytes.len() != len.div_ceil(8) {
            return None;
        }
        if !len.is_multiple_of(8) && bytes[bytes.len() - 1] & (0xff >> (len % 8)) != 0 {
            return None;
        }
        let ones = bytes.iter().map(|b| b.count_ones() as usize).sum();
        Some(Bitfield {
            bytes: bytes.to_vec(),
            len,
            ones,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: usize) -> bool {
        i < self.len && self.bytes[i / 8] & (0x80 >> (i % 8)) != 0
    }

    /// Sets bit `i`; returns whether it was newly set. Out-of-range indices are ignored.
    pub fn set(&mut self, i: usize) -> bool {
        if i >= self.len || self.get(i) {
            return false;
        }
        self.bytes[i / 8] |= 0x80 >> (i % 8);
        self.ones += 1;
        true
    }

    pub fn clear(&mut self, i: usize) {
        if self.get(i) {
            self.bytes[i / 8] &= !(0x80 >> (i % 8));
            self.ones -= 1;
        }
    }

    pub fn count_ones(&self) -> usize {
        self.ones
    }

    pub fn all(&self) -> bool {
        self.ones == self.len
    }

    pub fn none(&self) -> bool {
        self.ones == 0
    }

    pub fn iter_ones(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len).filter(|&i| self.get(i))
    }
}

impl fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitfield_wire_rules() {
        assert!(Bitfield::from_bytes(&[0xff, 0x80], 9).is_some());
        assert!(
            Bitfield::from_bytes(&[0xff, 0xc0], 9).is_none(),
            "spare bit set"
        );
        assert!(Bitfield::from_bytes(&[0xff], 9).is_none(), "too short");
        assert!(Bitfield::from_bytes(&[0xff, 0, 0], 9).is_none(), "too long");
        let mut b = Bitfield::from_bytes(&[0x80, 0x00], 9).unwrap();
        assert!(b.get(0) && !b.get(8) && !b.get(100));
        assert!(b.set(8) && !b.set(8));
        assert_eq!(b.count_ones(), 2);
        b.clear(0);
        assert_eq!(b.iter_ones().collect::<Vec<_>>(), [8]);
        assert!(Bitfield::full(9).all());
        assert_eq!(PeerId::shoal([b'x'; 12]).0[..8], *b"-SH0100-");
    }
}
