//! Hashing pieces as their blocks arrive, so that verifying a piece needs no read-back
//! when blocks come in order (the common case with a sequential picker per peer).
//!
//! Blocks that arrive ahead of the hashed prefix are written but not hashed; when the
//! piece is complete, [`PieceHashes::finish`] reads back only the unhashed remainder.

use std::collections::HashMap;

use sha1::{Digest, Sha1};

use crate::{StorageError, TorrentFiles};

const CHUNK: usize = 256 * 1024;

/// Running SHA-1 state of the pieces being downloaded.
#[derive(Default)]
pub struct PieceHashes {
    /// piece → (hash of its first `hashed` bytes, hashed). Holds only pieces in flight,
    /// which the picker bounds.
    partial: HashMap<u32, (Sha1, u64)>,
}

impl PieceHashes {
    /// Feeds a block that was just written at `offset` within `piece`.
    pub fn block_written(&mut self, piece: u32, offset: u32, data: &[u8]) {
        let (sha, hashed) = self
            .partial
            .entry(piece)
            .or_insert_with(|| (Sha1::new(), 0));
        if u64::from(offset) == *hashed {
            sha.update(data);
            *hashed += data.len() as u64;
        }
    }

    /// The SHA-1 of a complete piece: the running hash, plus whatever had to be read back.
    pub fn finish(&mut self, files: &TorrentFiles, piece: u32) -> Result<[u8; 20], StorageError> {
        let (mut sha, mut hashed) = self
            .partial
            .remove(&piece)
            .unwrap_or_else(|| (Sha1::new(), 0));
        let layout = files.layout();
        let size = layout.piece_size(piece as usize);
        let start = u64::from(piece) * layout.piece_length();
        let mut buffer = vec![0u8; CHUNK.min((size - hashed.min(size)) as usize)];
        while hashed < size {
            let n = (size - hashed).min(CHUNK as u64) as usize;
            files.read(start + hashed, &mut buffer[..n])?;
            sha.update(&buffer[..n]);
            hashed += n as u64;
        }
        Ok(sha.finalize().into())
    }

    /// Drops the state of a piece that will be downloaded again.
    pub fn forget(&mut self, piece: u32) {
        self.partial.remove(&piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileLayout;

    #[test]
    fn in_order_and_out_of_order_give_the_same_hash() {
        let dir = tempfile::tempdir().unwrap();
        let files = TorrentFiles::new(
            dir.path(),
            FileLayout::new([(dir.path().join("f"), 100, false)], 40),
        );
        let data: Vec<u8> = (0..100).collect();
        let mut hashes = PieceHashes::default();
        // Piece 0 in order, piece 1 backwards, piece 2 (short) untouched by the hasher.
        for (offset, len) in [(0, 20), (20, 20)] {
            files
                .write(offset, &data[offset as usize..][..len])
                .unwrap();
            hashes.block_written(0, offset as u32, &data[offset as usize..][..len]);
        }
        for (offset, len) in [(60, 20), (40, 20)] {
            files
                .write(offset, &data[offset as usize..][..len])
                .unwrap();
            hashes.block_written(1, offset as u32 - 40, &data[offset as usize..][..len]);
        }
        files.write(80, &data[80..]).unwrap();
        for (piece, range) in [(0u32, 0..40), (1, 40..80), (2, 80..100)] {
            let want: [u8; 20] = Sha1::digest(&data[range]).into();
            assert_eq!(hashes.finish(&files, piece).unwrap(), want);
        }
    }
}
