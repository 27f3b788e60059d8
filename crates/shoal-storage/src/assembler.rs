//! Pieces being downloaded: their blocks are held in memory until the piece is complete,
//! then the piece is hashed (two pieces at a time) and written with one vectored write.
//!
//! Holding a piece until it is complete means it is hashed from memory whatever order
//! its blocks arrived in (libtorrent serves a piece's blocks out of order), and its 64
//! blocks cost one system call. Complete pieces are hashed in pairs with
//! [`shoal_hash::update_pair`], which on SHA-NI hashes two pieces in about the time of
//! 1.2. Memory is capped: past the cap, the piece holding the most is written out at
//! once ("spilled"), its later blocks are written as they come, and it is hashed by
//! reading it back when complete.

use std::collections::HashMap;

use bytes::Bytes;
use shoal_core::BLOCK_SIZE;
use shoal_hash::{PieceDigest, PieceHasher, Sha1};

use crate::{StorageError, TorrentFiles};

/// Read-back chunk size.
const CHUNK: usize = 256 * 1024;
/// Held blocks are written behind the hasher this many at a time (128 KiB for two
/// lanes of 16 KiB blocks): the copy into the page cache then reads data the hasher has
/// just brought into the L2 cache. Written after the whole piece, a 1 MiB piece has
/// left the cache and the copy costs several times more.
const WRITE_BEHIND: usize = 8;

/// The blocks of one piece received so far.
#[derive(Default)]
struct Assembly {
    /// (offset in the piece, data), in arrival order.
    blocks: Vec<(u32, Bytes)>,
    /// Bytes held in `blocks`.
    held: usize,
    /// Some blocks went to disk to make room: the piece is hashed from disk.
    spilled: bool,
}

/// Pieces being assembled and pieces complete but not yet hashed and written.
pub struct PieceAssembler {
    /// Holds only pieces in flight, which the picker bounds.
    pieces: HashMap<u32, Assembly>,
    /// Complete pieces waiting to be hashed.
    ready: Vec<(u32, Assembly)>,
    held: usize,
    cap: usize,
}

/// A finished piece: its index and SHA-1 (the piece is on disk by then), or the error
/// that stopped it from being written or read back.
pub type Finished = (u32, Result<PieceDigest, StorageError>);

impl PieceAssembler {
    /// Holds at most `cap` bytes of block data (complete pieces waiting for a partner to
    /// be hashed with included).
    pub fn new(cap: usize) -> Self {
        PieceAssembler {
            pieces: HashMap::new(),
            ready: Vec::new(),
            held: 0,
            cap,
        }
    }

    /// Takes a block of `piece` at `offset`. Only a write made to keep within the memory
    /// cap can fail.
    pub fn add_block(
        &mut self,
        files: &TorrentFiles,
        piece: u32,
        offset: u32,
        data: Bytes,
    ) -> Result<(), StorageError> {
        let assembly = self.pieces.entry(piece).or_default();
        if assembly.spilled {
            return files.write(piece_start(files, piece) + u64::from(offset), &data);
        }
        self.held += data.len();
        assembly.held += data.len();
        assembly.blocks.push((offset, data));
        while self.held > self.cap {
            if !self.spill(files)? {
                break;
            }
        }
        Ok(())
    }

    /// Marks `piece` complete (every block added); it is hashed and written by
    /// [`finish_ready`](Self::finish_ready).
    pub fn piece_complete(&mut self, piece: u32) {
        let assembly = self.pieces.remove(&piece).unwrap_or_default();
        self.ready.push((piece, assembly));
    }

    /// How many complete pieces wait to be hashed.
    pub fn ready(&self) -> usize {
        self.ready.len()
    }

    /// Bytes of block data held in memory.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Hashes and writes the complete pieces: in pairs, and a piece left without a
    /// partner too when `force` is set (no other piece is about to complete).
    pub fn finish_ready(&mut self, files: &TorrentFiles, force: bool) -> Vec<Finished> {
        let mut out = Vec::new();
        while self.ready.len() >= 2 || (force && !self.ready.is_empty()) {
            let a = self.ready.remove(0);
            let b = if self.ready.is_empty() {
                None
            } else {
                Some(self.ready.remove(0))
            };
            out.extend(self.finish_pair(files, a, b));
        }
        out
    }

    /// Writes out the unspilled piece holding the most; false if there is none (what is
    /// held belongs to complete pieces, which are written soon anyway).
    fn spill(&mut self, files: &TorrentFiles) -> Result<bool, StorageError> {
        let Some((&piece, _)) = self
            .pieces
            .iter()
            .filter(|(_, a)| !a.spilled && a.held > 0)
            .max_by_key(|(_, a)| a.held)
        else {
            return Ok(false);
        };
        let assembly = self.pieces.get_mut(&piece).expect("just found");
        assembly.spilled = true;
        self.held -= assembly.held;
        assembly.held = 0;
        let blocks = std::mem::take(&mut assembly.blocks);
        write_blocks(files, piece, blocks)?;
        Ok(true)
    }

    fn finish_pair(
        &mut self,
        files: &TorrentFiles,
        a: (u32, Assembly),
        b: Option<(u32, Assembly)>,
    ) -> Vec<Finished> {
        let mut pieces: Vec<(u32, Assembly, Option<StorageError>)> = [Some(a), b]
            .into_iter()
            .flatten()
            .map(|(piece, assembly)| (piece, assembly, None))
            .collect();
        for (piece, assembly, error) in &mut pieces {
            self.held -= assembly.held;
            assembly.held = 0;
            assembly.blocks.sort_unstable_by_key(|(offset, _)| *offset);
            add_padding(files, *piece, assembly);
            if !assembly.spilled && !covers(&assembly.blocks, piece_size(files, *piece)) {
                // Gaps or overlaps (a caller's mistake): hash whatever is on disk.
                assembly.spilled = true;
                *error = write_blocks(files, *piece, std::mem::take(&mut assembly.blocks)).err();
            }
        }
        let mut feeds: Vec<Feed> = pieces
            .iter()
            .map(|(piece, assembly, error)| match error {
                Some(_) => Feed::empty(),
                None => Feed::new(files, *piece, assembly),
            })
            .collect();
        feeds.resize_with(2, Feed::empty);
        let [fa, fb] = &mut feeds[..] else {
            unreachable!("two feeds")
        };
        loop {
            let (na, nb) = (fa.next_chunk(files), fb.next_chunk(files));
            if na == 0 && nb == 0 {
                break;
            }
            shoal_hash::update_piece_pair(
                &mut fa.sha,
                fa.source.chunk(na),
                &mut fb.sha,
                fb.source.chunk(nb),
            );
            // Failed pieces are written too: smart ban reads the bad data back.
            fa.write_behind(files, WRITE_BEHIND);
            fb.write_behind(files, WRITE_BEHIND);
        }
        let hashes: Vec<_> = feeds
            .into_iter()
            .map(|mut feed| {
                feed.write_behind(files, 1);
                feed.finish()
            })
            .collect();
        pieces
            .into_iter()
            .zip(hashes)
            .map(|((piece, _, error), hash)| match error {
                Some(e) => (piece, Err(e)),
                None => (piece, hash),
            })
            .collect()
    }
}

fn piece_start(files: &TorrentFiles, piece: u32) -> u64 {
    u64::from(piece) * files.layout().piece_length()
}

fn piece_size(files: &TorrentFiles, piece: u32) -> u64 {
    files.layout().piece_size(piece as usize)
}

/// Zeros, for the padding tail of a piece that was never fetched.
static ZEROS: [u8; BLOCK_SIZE as usize] = [0; BLOCK_SIZE as usize];

/// Completes a held piece whose blocks end where its padding tail starts (see
/// [`FileLayout::fetched_length`](crate::FileLayout::fetched_length)) with zero blocks,
/// so that it is hashed from memory like any other.
fn add_padding(files: &TorrentFiles, piece: u32, assembly: &mut Assembly) {
    let layout = files.layout();
    let fetched = layout.fetched_length(piece as usize);
    let size = layout.piece_size(piece as usize);
    if assembly.spilled || fetched == size || !covers(&assembly.blocks, fetched) {
        return;
    }
    let mut offset = fetched;
    while offset < size {
        let length = (size - offset).min(u64::from(BLOCK_SIZE)) as usize;
        assembly
            .blocks
            .push((offset as u32, Bytes::from_static(&ZEROS[..length])));
        offset += length as u64;
    }
}

/// Whether blocks sorted by offset cover `0..size` exactly, without gaps or overlaps.
fn covers(blocks: &[(u32, Bytes)], size: u64) -> bool {
    let mut next = 0u64;
    for (offset, data) in blocks {
        if u64::from(*offset) != next {
            return false;
        }
        next += data.len() as u64;
    }
    next == size
}

/// Writes blocks (sorted by offset) with one vectored write per contiguous run.
fn write_blocks(
    files: &TorrentFiles,
    piece: u32,
    mut blocks: Vec<(u32, Bytes)>,
) -> Result<(), StorageError> {
    blocks.sort_unstable_by_key(|(offset, _)| *offset);
    let start = piece_start(files, piece);
    let mut run: Vec<&[u8]> = Vec::with_capacity(blocks.len());
    let mut run_start = 0u64;
    let mut run_end = None;
    for (offset, data) in &blocks {
        let offset = u64::from(*offset);
        if run_end != Some(offset) {
            if !run.is_empty() {
                files.write_vectored(start + run_start, &run)?;
            }
            run.clear();
            run_start = offset;
        }
        run.push(data);
        run_end = Some(offset + data.len() as u64);
    }
    if !run.is_empty() {
        files.write_vectored(start + run_start, &run)?;
    }
    Ok(())
}

/// Feeds a complete piece to the hasher, and writes its held blocks behind it.
struct Feed<'a> {
    piece: u32,
    sha: PieceHasher,
    source: Source<'a>,
    error: Option<StorageError>,
}

/// Where a piece's bytes come from.
enum Source<'a> {
    /// Its held blocks, in order; `next` is the index of the next to hand out, and
    /// those before `written` are on disk.
    Blocks {
        blocks: &'a [(u32, Bytes)],
        next: usize,
        written: usize,
    },
    /// Read back from disk (a spilled piece), `done` bytes so far.
    Disk {
        size: u64,
        done: u64,
        buffer: Vec<u8>,
    },
}

impl Source<'_> {
    /// The chunk of length `n` that [`Feed::next_chunk`] prepared.
    fn chunk(&self, n: usize) -> &[u8] {
        match self {
            _ if n == 0 => &[],
            Source::Blocks { blocks, next, .. } => &blocks[next - 1].1,
            Source::Disk { buffer, .. } => &buffer[..n],
        }
    }
}

impl<'a> Feed<'a> {
    fn new(files: &TorrentFiles, piece: u32, assembly: &'a Assembly) -> Self {
        let source = if assembly.spilled {
            Source::Disk {
                size: piece_size(files, piece),
                done: 0,
                buffer: Vec::new(),
            }
        } else {
            Source::Blocks {
                blocks: &assembly.blocks,
                next: 0,
                written: 0,
            }
        };
        Feed {
            piece,
            sha: files.layout().piece_hasher(piece as usize),
            source,
            error: None,
        }
    }

    /// A stand-in second lane when a piece is hashed alone.
    fn empty() -> Self {
        Feed {
            piece: u32::MAX,
            sha: PieceHasher::Sha1(Sha1::new()),
            source: Source::Blocks {
                blocks: &[],
                next: 0,
                written: 0,
            },
            error: None,
        }
    }

    /// Prepares the next chunk and returns its length (0 at the end or after an error).
    fn next_chunk(&mut self, files: &TorrentFiles) -> usize {
        match &mut self.source {
            Source::Blocks { blocks, next, .. } => match blocks.get(*next) {
                Some((_, block)) => {
                    *next += 1;
                    block.len()
                }
                None => 0,
            },
            Source::Disk { size, done, buffer } => {
                if self.error.is_some() || *done >= *size {
                    return 0;
                }
                let n = (*size - *done).min(CHUNK as u64) as usize;
                buffer.resize(n, 0);
                if let Err(e) = files.read(piece_start(files, self.piece) + *done, buffer) {
                    self.error = Some(e);
                    return 0;
                }
                *done += n as u64;
                n
            }
        }
    }

    /// Writes the blocks hashed since the last write, if there are at least `min`.
    fn write_behind(&mut self, files: &TorrentFiles, min: usize) {
        let Source::Blocks {
            blocks,
            next,
            written,
        } = &mut self.source
        else {
            return;
        };
        if *next - *written < min || self.error.is_some() {
            return;
        }
        let run: Vec<&[u8]> = blocks[*written..*next]
            .iter()
            .map(|(_, b)| &b[..])
            .collect();
        let at = piece_start(files, self.piece) + u64::from(blocks[*written].0);
        if let Err(e) = files.write_vectored(at, &run) {
            self.error = Some(e);
        }
        *written = *next;
    }

    fn finish(self) -> Result<PieceDigest, StorageError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.sha.finalize()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileLayout;
    use rand::seq::SliceRandom;
    use rand::{RngCore, SeedableRng};

    /// Files for `sizes`, pieces of `piece` bytes, and random content for them.
    fn setup(sizes: &[u64], piece: u32) -> (tempfile::TempDir, TorrentFiles, Bytes) {
        let dir = tempfile::tempdir().unwrap();
        let files = sizes
            .iter()
            .enumerate()
            .map(|(i, &len)| (dir.path().join(format!("f{i}")), len, false));
        let files = TorrentFiles::new(dir.path(), FileLayout::new(files, piece));
        let mut data = vec![0u8; sizes.iter().sum::<u64>() as usize];
        rand::rngs::StdRng::seed_from_u64(9).fill_bytes(&mut data);
        (dir, files, Bytes::from(data))
    }

    /// Adds piece `piece` as blocks of `block` bytes in a shuffled order.
    fn add_piece(
        asm: &mut PieceAssembler,
        files: &TorrentFiles,
        data: &Bytes,
        piece: u32,
        block: usize,
        seed: u64,
    ) {
        let start = piece_start(files, piece) as usize;
        let end = start + piece_size(files, piece) as usize;
        let mut offsets: Vec<usize> = (start..end).step_by(block).collect();
        offsets.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        for at in offsets {
            let slice = data.slice(at..(at + block).min(end));
            asm.add_block(files, piece, (at - start) as u32, slice)
                .unwrap();
        }
        asm.piece_complete(piece);
    }

    fn on_disk(files: &TorrentFiles, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        files.read(0, &mut buf).unwrap();
        buf
    }

    fn check(finished: Vec<Finished>, files: &TorrentFiles, data: &Bytes) {
        for (piece, hash) in finished {
            let start = piece_start(files, piece) as usize;
            let end = start + piece_size(files, piece) as usize;
            assert_eq!(
                hash.unwrap(),
                PieceDigest::Sha1(Sha1::digest(&data[start..end])),
                "piece {piece}"
            );
        }
    }

    #[test]
    fn out_of_order_pieces_across_files_are_hashed_in_pairs_and_written() {
        let (_dir, files, data) = setup(&[100, 0, 157, 50], 64);
        let mut asm = PieceAssembler::new(1 << 20);
        add_piece(&mut asm, &files, &data, 2, 16, 1);
        assert!(
            asm.finish_ready(&files, false).is_empty(),
            "a piece waits for a partner"
        );
        add_piece(&mut asm, &files, &data, 0, 16, 2);
        let mut finished = asm.finish_ready(&files, false);
        assert_eq!(finished.len(), 2);
        for piece in [1, 3, 4] {
            add_piece(&mut asm, &files, &data, piece, 16, u64::from(piece));
        }
        finished.extend(asm.finish_ready(&files, false));
        assert_eq!(asm.ready(), 1);
        finished.extend(asm.finish_ready(&files, true));
        assert_eq!(finished.len(), 5);
        check(finished, &files, &data);
        assert_eq!(on_disk(&files, data.len()), data[..]);
        assert_eq!(asm.held(), 0);
    }

    #[test]
    fn past_the_cap_pieces_are_spilled_and_hashed_from_disk() {
        let (_dir, files, data) = setup(&[10 * 4096 + 300], 4096);
        let mut asm = PieceAssembler::new(6000);
        // Interleave three pieces block by block, as several peers would.
        let pieces = [0u32, 5, 10];
        for block in 0..4 {
            for &piece in &pieces {
                let start = piece_start(&files, piece) as usize;
                let end = start + piece_size(&files, piece) as usize;
                let at = start + block * 1024;
                if at < end {
                    let slice = data.slice(at..(at + 1024).min(end));
                    asm.add_block(&files, piece, (block * 1024) as u32, slice)
                        .unwrap();
                    assert!(asm.held() <= 6000, "held {}", asm.held());
                }
            }
        }
        for piece in pieces {
            asm.piece_complete(piece);
        }
        let finished = asm.finish_ready(&files, true);
        assert_eq!(finished.len(), 3);
        check(finished, &files, &data);
        let disk = on_disk(&files, data.len());
        for piece in pieces {
            let start = piece_start(&files, piece) as usize;
            let end = start + piece_size(&files, piece) as usize;
            assert_eq!(disk[start..end], data[start..end], "piece {piece}");
        }
        assert_eq!(asm.held(), 0);
    }

    #[test]
    fn a_piece_with_a_missing_block_hashes_what_is_on_disk() {
        let (_dir, files, data) = setup(&[128], 64);
        let mut asm = PieceAssembler::new(1 << 20);
        asm.add_block(&files, 1, 0, data.slice(64..96)).unwrap();
        asm.piece_complete(1);
        let finished = asm.finish_ready(&files, true);
        let mut expect = data[64..96].to_vec();
        expect.resize(64, 0);
        assert_eq!(
            finished[0].1.as_ref().unwrap(),
            &PieceDigest::Sha1(Sha1::digest(&expect))
        );
    }

    #[test]
    fn a_write_error_is_reported_for_the_piece() {
        let (dir, files, data) = setup(&[128], 64);
        // A directory where the file should be: opening it for writing fails.
        std::fs::create_dir(dir.path().join("f0")).unwrap();
        let mut asm = PieceAssembler::new(1 << 20);
        add_piece(&mut asm, &files, &data, 0, 16, 1);
        let finished = asm.finish_ready(&files, true);
        assert!(
            matches!(finished[0].1, Err(StorageError::Io { .. })),
            "{:?}",
            finished[0].1
        );
    }
}
