//! The simulated torrent's data and each host's piece store.
//!
//! [`Content`] is the file: deterministic pseudo-random bytes from the run's seed, held once
//! in memory, with the SHA-1 of every piece computed once (the torrent's `pieces`). Every
//! host serves blocks as zero-copy slices of it, so a thousand peers cost one copy of the
//! file, yet real bytes cross every simulated link and every [`PeerSession`].
//!
//! [`PieceStore`] is one host's storage. It keeps no copy of good data: a received block
//! is compared with the reference bytes as it is written (a `memcmp`, skipped when the
//! block is a slice of the reference buffer itself, as honest blocks are end to end), and
//! only blocks that differ (corrupt ones) are kept, as an overlay. The piece hash check is then real but
//! memoized by content: a piece whose blocks all equal the reference has, by definition,
//! the reference piece's SHA-1 (computed once); a piece with any differing block is
//! assembled and hashed with SHA-1 for real. The result is exactly what hashing every
//! piece would give, without hashing 64 MiB per peer.
//!
//! [`PeerSession`]: shoal_wire::PeerSession

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use sha1::{Digest, Sha1};
use shoal_core::{Block, BLOCK_SIZE};

/// The torrent's bytes and piece hashes.
pub struct Content {
    data: Bytes,
    piece_length: u32,
    hashes: Vec<[u8; 20]>,
}

impl Content {
    /// `total_length` bytes drawn from a generator seeded with `seed`, in pieces of
    /// `piece_length` bytes (a positive multiple of nothing in particular; the last piece
    /// may be short).
    pub fn generate(total_length: u64, piece_length: u32, seed: u64) -> Self {
        assert!(piece_length > 0, "piece length is positive");
        let mut data = vec![0u8; total_length as usize];
        StdRng::seed_from_u64(seed ^ 0xc0_47e7).fill_bytes(&mut data);
        let hashes = data
            .chunks(piece_length as usize)
            .map(|piece| Sha1::digest(piece).into())
            .collect();
        Content {
            data: Bytes::from(data),
            piece_length,
            hashes,
        }
    }

    pub fn total_length(&self) -> u64 {
        self.data.len() as u64
    }

    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }

    pub fn piece_count(&self) -> u32 {
        self.hashes.len() as u32
    }

    /// Size of `piece` in bytes (the last piece may be shorter).
    pub fn piece_size(&self, piece: u32) -> u32 {
        let start = u64::from(piece) * u64::from(self.piece_length);
        (self.total_length() - start).min(u64::from(self.piece_length)) as u32
    }

    fn range(&self, piece: u32, offset: u32, length: u32) -> std::ops::Range<usize> {
        let start = u64::from(piece) * u64::from(self.piece_length) + u64::from(offset);
        start as usize..start as usize + length as usize
    }

    /// The true bytes of `block` (zero-copy).
    pub fn block(&self, block: Block) -> Bytes {
        self.data
            .slice(self.range(block.piece, block.offset, block.length))
    }

    /// `block` with some bytes flipped: what a bad peer sends.
    pub fn corrupted(&self, block: Block) -> Bytes {
        let mut data = self.block(block).to_vec();
        for i in (0..data.len()).step_by(4099) {
            data[i] ^= 0x5a;
        }
        Bytes::from(data)
    }

    pub fn piece_hash(&self, piece: u32) -> [u8; 20] {
        self.hashes[piece as usize]
    }
}

/// Whether `a` and `b` hold the same bytes. Honest blocks travel as slices of the one
/// [`Content`] buffer (senders write them vectored, receivers parse them in place), so
/// most comparisons are of a buffer with itself: equal without reading it. Any other
/// buffer (a corrupt block, or one a session had to copy) is compared byte for byte.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

/// Whether received pieces are checked against the torrent's hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HashCheck {
    /// SHA-1, memoized by content (see the module documentation).
    Sha1,
    /// Every complete piece is accepted; corrupt data spreads.
    Off,
}

/// One host's stored blocks: the reference data plus an overlay of blocks that differ.
pub struct PieceStore {
    content: Arc<Content>,
    check: HashCheck,
    /// Blocks received with bytes other than the reference's, by (piece, offset).
    overlay: BTreeMap<(u32, u32), Bytes>,
}

impl PieceStore {
    pub fn new(content: Arc<Content>, check: HashCheck) -> Self {
        PieceStore {
            content,
            check,
            overlay: BTreeMap::new(),
        }
    }

    /// Stores a received block.
    pub fn write(&mut self, block: Block, data: &Bytes) {
        let key = (block.piece, block.offset);
        if same_bytes(&self.content.block(block), data) {
            self.overlay.remove(&key);
        } else {
            self.overlay.insert(key, data.clone());
        }
    }

    /// Reads `length` bytes of `piece` at `offset`, as stored (corrupt blocks included).
    pub fn read(&self, piece: u32, offset: u32, length: u32) -> Bytes {
        match self.overlay.get(&(piece, offset)) {
            Some(data) if data.len() == length as usize => data.clone(),
            _ => self.content.block(Block {
                piece,
                offset,
                length,
            }),
        }
    }

    /// The hash check of a complete piece of `size` bytes: whether its SHA-1 equals the
    /// torrent's (always true with [`HashCheck::Off`]).
    pub fn verify(&self, piece: u32, size: u32) -> bool {
        if self.check == HashCheck::Off || !self.has_overlay(piece) {
            // All blocks equal the reference: the digest is the reference piece's.
            return true;
        }
        let mut hasher = Sha1::new();
        let mut offset = 0;
        while offset < size {
            let length = BLOCK_SIZE.min(size - offset);
            hasher.update(self.read(piece, offset, length));
            offset += length;
        }
        <[u8; 20]>::from(hasher.finalize()) == self.content.piece_hash(piece)
    }

    /// Whether a stored block of `piece` differs from the reference.
    pub fn has_overlay(&self, piece: u32) -> bool {
        self.overlay
            .range((piece, 0)..=(piece, u32::MAX))
            .next()
            .is_some()
    }

    /// Drops what is stored for a piece that failed its check (it is fetched again).
    pub fn forget(&mut self, piece: u32) {
        let keys: Vec<(u32, u32)> = self
            .overlay
            .range((piece, 0)..=(piece, u32::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.overlay.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memoized_check_equals_real_sha1() {
        let content = Arc::new(Content::generate(3 * 32768 + 100, 32768, 1));
        assert_eq!(content.piece_count(), 4);
        let mut store = PieceStore::new(content.clone(), HashCheck::Sha1);
        let good = Block {
            piece: 1,
            offset: 0,
            length: BLOCK_SIZE,
        };
        store.write(good, &content.block(good));
        assert!(store.verify(1, 32768));
        store.write(good, &content.corrupted(good));
        assert!(store.has_overlay(1));
        assert!(!store.verify(1, 32768));
        assert_eq!(store.read(1, 0, BLOCK_SIZE), content.corrupted(good));
        store.forget(1);
        assert!(store.verify(1, 32768));
        let last = content.piece_count() - 1;
        assert_eq!(
            Sha1::digest(content.block(Block {
                piece: last,
                offset: 0,
                length: 100
            }))
            .as_slice(),
            content.piece_hash(last)
        );
        let mut unchecked = PieceStore::new(content.clone(), HashCheck::Off);
        unchecked.write(good, &content.corrupted(good));
        assert!(unchecked.verify(1, 32768));
    }
}
