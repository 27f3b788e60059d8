//! Hashing pieces as their blocks arrive, two pieces at a time.
//!
//! Blocks that arrive in order are kept (as the shared buffers they arrived in) until
//! their piece is complete; complete pieces are then hashed in pairs with
//! [`shoal_hash::update_pair`], which on SHA-NI hashes two pieces in about the time of
//! 1.2. A piece waits for a partner only while the caller expects another piece to
//! complete soon ([`PieceHashes::verify_ready`]). Blocks that arrived
//! out of order (or beyond the memory cap) are not kept: their bytes are read back from
//! disk when the piece is hashed.

use std::collections::HashMap;

use bytes::Bytes;
use shoal_hash::Sha1;

use crate::{StorageError, TorrentFiles};

/// Read-back chunk size.
const CHUNK: usize = 256 * 1024;
/// In-order block data kept for hashing, over all pieces; beyond it blocks are read back.
const MAX_KEPT: usize = 4 * 1024 * 1024;

/// The in-order prefix of a piece that has arrived: hashed state plus data kept to hash.
#[derive(Default)]
struct Partial {
    sha: Sha1,
    /// Bytes from the piece's start covered by `sha` and `kept`.
    prefix: u64,
    kept: Vec<Bytes>,
}

/// Pieces being downloaded and pieces complete but not yet hashed.
#[derive(Default)]
pub struct PieceHashes {
    /// Holds only pieces in flight, which the picker bounds.
    partial: HashMap<u32, Partial>,
    /// Complete pieces waiting to be hashed (at most two between calls).
    ready: Vec<(u32, Partial)>,
    kept_bytes: usize,
}

/// A hashed piece: its index and SHA-1, or why its data could not be read.
pub type Verified = (u32, Result<[u8; 20], StorageError>);

impl PieceHashes {
    /// Notes a block that was just written at `offset` within `piece`.
    pub fn block_written(&mut self, piece: u32, offset: u32, data: &Bytes) {
        let partial = self.partial.entry(piece).or_default();
        if u64::from(offset) != partial.prefix {
            return;
        }
        partial.prefix += data.len() as u64;
        if self.kept_bytes + data.len() <= MAX_KEPT {
            self.kept_bytes += data.len();
            partial.kept.push(data.clone());
        } else {
            // Over the cap: hash what this piece holds now instead of keeping more.
            for kept in partial.kept.drain(..) {
                self.kept_bytes -= kept.len();
                partial.sha.update(&kept);
            }
            partial.sha.update(data);
        }
    }

    /// Marks `piece` complete (every block written); its hash comes from
    /// [`verify_ready`](Self::verify_ready).
    pub fn piece_complete(&mut self, piece: u32) {
        let partial = self.partial.remove(&piece).unwrap_or_default();
        self.ready.push((piece, partial));
    }

    /// Whether a complete piece is waiting to be hashed.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Hashes the complete pieces: in pairs, and a piece left without a partner too when
    /// `force` is set (the caller knows no other piece is arriving, or it waited enough).
    pub fn verify_ready(&mut self, files: &TorrentFiles, force: bool) -> Vec<Verified> {
        let mut out = Vec::new();
        while self.ready.len() >= 2 {
            let (b, a) = (
                self.ready.pop().expect("two"),
                self.ready.pop().expect("two"),
            );
            let [ra, rb] = self.hash_pair(files, a, b);
            out.extend([ra, rb]);
        }
        if !self.ready.is_empty() && force {
            let a = self.ready.pop().expect("one");
            let [ra, _] = self.hash_pair(files, a, (u32::MAX, Partial::default()));
            out.push(ra);
        }
        out
    }

    /// Drops the state of a piece that will be downloaded again.
    pub fn forget(&mut self, piece: u32) {
        if let Some(partial) = self.partial.remove(&piece) {
            self.kept_bytes -= partial.kept.iter().map(Bytes::len).sum::<usize>();
        }
    }

    /// Hashes two complete pieces side by side; a piece numbered `u32::MAX` is an empty
    /// stand-in.
    fn hash_pair(
        &mut self,
        files: &TorrentFiles,
        a: (u32, Partial),
        b: (u32, Partial),
    ) -> [Verified; 2] {
        let mut feeds = [Feed::new(files, a), Feed::new(files, b)];
        for feed in &feeds {
            self.kept_bytes -= feed.chunks.kept.iter().map(Bytes::len).sum::<usize>();
        }
        loop {
            let [fa, fb] = &mut feeds;
            let (na, nb) = (fa.next_chunk(files), fb.next_chunk(files));
            if na == 0 && nb == 0 {
                break;
            }
            shoal_hash::update_pair(
                &mut fa.sha,
                fa.chunks.get(na),
                &mut fb.sha,
                fb.chunks.get(nb),
            );
        }
        feeds.map(Feed::finish)
    }
}

/// Reads a complete piece for hashing: the kept blocks, then the rest from disk.
struct Feed {
    piece: u32,
    sha: Sha1,
    chunks: Chunks,
    /// Bytes of the piece: in all, covered by the kept blocks, and read back so far.
    size: u64,
    prefix: u64,
    read_back: u64,
    error: Option<StorageError>,
}

/// Where the chunks being hashed come from.
struct Chunks {
    kept: Vec<Bytes>,
    /// Index of the next kept block to hand out, or `None` once they are all out and
    /// `buffer` holds the last read-back chunk.
    next_kept: Option<usize>,
    buffer: Vec<u8>,
}

impl Chunks {
    /// The chunk of length `n` that [`Feed::next_chunk`] prepared.
    fn get(&self, n: usize) -> &[u8] {
        match self.next_kept {
            _ if n == 0 => &[],
            Some(i) => &self.kept[i - 1],
            None => &self.buffer[..n],
        }
    }
}

impl Feed {
    fn new(files: &TorrentFiles, (piece, partial): (u32, Partial)) -> Self {
        let size = if piece == u32::MAX {
            0
        } else {
            files.layout().piece_size(piece as usize)
        };
        Feed {
            piece,
            sha: partial.sha,
            chunks: Chunks {
                kept: partial.kept,
                next_kept: Some(0),
                buffer: Vec::new(),
            },
            size,
            prefix: partial.prefix,
            read_back: 0,
            error: None,
        }
    }

    /// Prepares the next chunk and returns its length (0 at the end or after an error).
    fn next_chunk(&mut self, files: &TorrentFiles) -> usize {
        let chunks = &mut self.chunks;
        if let Some(i) = chunks.next_kept {
            if let Some(block) = chunks.kept.get(i) {
                chunks.next_kept = Some(i + 1);
                return block.len();
            }
            chunks.next_kept = None;
        }
        let done = self.prefix + self.read_back;
        if self.error.is_some() || done >= self.size {
            return 0;
        }
        let n = (self.size - done).min(CHUNK as u64) as usize;
        chunks.buffer.resize(n, 0);
        let at = u64::from(self.piece) * files.layout().piece_length() + done;
        if let Err(e) = files.read(at, &mut chunks.buffer) {
            self.error = Some(e);
            return 0;
        }
        self.read_back += n as u64;
        n
    }

    fn finish(self) -> Verified {
        let result = match self.error {
            Some(e) => Err(e),
            None => Ok(self.sha.finalize()),
        };
        (self.piece, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileLayout;

    #[test]
    fn in_order_out_of_order_and_unseen_pieces_hash_right() {
        let dir = tempfile::tempdir().unwrap();
        let files = TorrentFiles::new(
            dir.path(),
            FileLayout::new([(dir.path().join("f"), 100, false)], 40),
        );
        let data = Bytes::from((0..100).collect::<Vec<u8>>());
        let mut hashes = PieceHashes::default();
        let write = |hashes: &mut PieceHashes, piece: u32, at: usize, len: usize| {
            files.write(at as u64, &data[at..at + len]).unwrap();
            hashes.block_written(
                piece,
                (at - piece as usize * 40) as u32,
                &data.slice(at..at + len),
            );
        };
        // Piece 0 in order, piece 1 backwards, piece 2 (short) written behind its back.
        write(&mut hashes, 0, 0, 20);
        write(&mut hashes, 1, 60, 20);
        write(&mut hashes, 0, 20, 20);
        hashes.piece_complete(0);
        assert!(
            hashes.verify_ready(&files, false).is_empty(),
            "piece 0 waits for a partner while piece 1 arrives"
        );
        write(&mut hashes, 1, 40, 20);
        hashes.piece_complete(1);
        let mut got = hashes.verify_ready(&files, false);
        files.write(80, &data[80..]).unwrap();
        hashes.piece_complete(2);
        assert!(hashes.verify_ready(&files, false).is_empty());
        got.extend(hashes.verify_ready(&files, true));
        got.sort_by_key(|(piece, _)| *piece);
        for ((piece, hash), range) in got.into_iter().zip([0..40, 40..80, 80..100]) {
            assert_eq!(hash.unwrap(), Sha1::digest(&data[range]), "piece {piece}");
        }
        assert!(!hashes.has_ready());
        assert_eq!(hashes.kept_bytes, 0);
    }

    #[test]
    fn a_forced_lone_piece_is_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let files = TorrentFiles::new(
            dir.path(),
            FileLayout::new([(dir.path().join("f"), 80, false)], 40),
        );
        let data = Bytes::from(vec![7u8; 80]);
        let mut hashes = PieceHashes::default();
        files.write(0, &data[..40]).unwrap();
        hashes.block_written(0, 0, &data.slice(..40));
        hashes.block_written(1, 0, &data.slice(40..50));
        hashes.piece_complete(0);
        assert!(hashes.verify_ready(&files, false).is_empty());
        let got = hashes.verify_ready(&files, true);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.as_ref().unwrap(), &Sha1::digest(&data[..40]));
        hashes.forget(1);
        assert_eq!(hashes.kept_bytes, 0);
    }
}
