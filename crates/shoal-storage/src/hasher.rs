//! Hashing pieces from disk on several cores.
//!
//! Workers take pairs of piece indices from a shared counter and read each piece with
//! positioned reads in chunks small enough to stay in the CPU's L2 cache while they are hashed, so
//! the data is touched from memory once. Memory use is two chunks per worker, whatever the
//! piece length or the size of the content.

use std::fs::File;
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use shoal_hash::{PieceDigest, PieceHasher};

use crate::layout::Segment;
use crate::{FileLayout, StorageError};

/// Read (and hash) this much at a time.
const CHUNK: usize = 256 * 1024;

/// Hashes every piece of `layout` on `threads` worker threads.
///
/// `on_piece` is called from the workers as each piece finishes, in no particular order,
/// with the piece's hash (SHA-1, or a v2 torrent's merkle root) or the error that stopped it from being read (a missing or
/// short file is an error here; a recheck treats it as "piece not present"). Returning
/// [`ControlFlow::Break`] stops all workers early.
///
/// Each worker hashes two pieces side by side (see [`shoal_hash::update_pair`]).
pub fn hash_pieces<F>(layout: &FileLayout, threads: usize, on_piece: F)
where
    F: Fn(usize, Result<PieceDigest, StorageError>) -> ControlFlow<()> + Sync,
{
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let count = layout.piece_count();
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, count.div_ceil(2).max(1)) {
            scope.spawn(|| {
                let mut lanes = [Lane::new(), Lane::new()];
                while !stop.load(Ordering::Relaxed) {
                    let first = next.fetch_add(2, Ordering::Relaxed);
                    if first >= count {
                        break;
                    }
                    let mut pieces = [
                        PieceRead::new(layout, first),
                        PieceRead::new(layout, first + 1),
                    ];
                    hash_side_by_side(layout, &mut pieces, &mut lanes);
                    for piece in pieces {
                        if piece.index < count && on_piece(piece.index, piece.finish()).is_break() {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
}

/// Reads and hashes two pieces chunk by chunk, in lockstep.
fn hash_side_by_side(layout: &FileLayout, pieces: &mut [PieceRead; 2], lanes: &mut [Lane; 2]) {
    loop {
        let [a, b] = pieces;
        let [lane_a, lane_b] = lanes;
        let n_a = a.read_chunk(layout, lane_a);
        let n_b = b.read_chunk(layout, lane_b);
        if n_a == 0 && n_b == 0 {
            return;
        }
        shoal_hash::update_piece_pair(
            &mut a.sha,
            &lane_a.buffer[..n_a],
            &mut b.sha,
            &lane_b.buffer[..n_b],
        );
    }
}

/// One lane of a worker: its buffer and the file it read last (consecutive pieces of a
/// lane usually fall in the same file, so one cached handle saves most opens).
struct Lane {
    open: Option<(usize, File)>,
    buffer: Vec<u8>,
}

impl Lane {
    fn new() -> Self {
        Lane {
            open: None,
            buffer: vec![0; CHUNK],
        }
    }
}

/// How far the reading and hashing of one piece has got.
struct PieceRead {
    index: usize,
    segments: Vec<Segment>,
    /// Bytes of `segments` read so far.
    read: u64,
    sha: PieceHasher,
    error: Option<StorageError>,
}

impl PieceRead {
    /// A piece past the end of the torrent reads as empty.
    fn new(layout: &FileLayout, index: usize) -> Self {
        let segments = if index < layout.piece_count() {
            layout.piece_segments(index).collect()
        } else {
            Vec::new()
        };
        PieceRead {
            index,
            segments,
            read: 0,
            sha: layout.piece_hasher(index),
            error: None,
        }
    }

    /// Reads the piece's next chunk (at most [`CHUNK`], within one file) into the lane's
    /// buffer; 0 once the piece is done or has failed.
    fn read_chunk(&mut self, layout: &FileLayout, lane: &mut Lane) -> usize {
        if self.error.is_some() {
            return 0;
        }
        let mut skip = self.read;
        let Some(segment) = self.segments.iter().find(|s| {
            let inside = skip < s.length;
            if !inside {
                skip -= s.length;
            }
            inside
        }) else {
            return 0;
        };
        let n = (segment.length - skip).min(CHUNK as u64) as usize;
        let info = &layout.files()[segment.file];
        if info.padding {
            lane.buffer[..n].fill(0);
        } else {
            let read = open_cached(&mut lane.open, layout, segment.file).and_then(|file| {
                file.read_exact_at(&mut lane.buffer[..n], segment.file_offset + skip)
                    .map_err(|e| match e.kind() {
                        io::ErrorKind::UnexpectedEof => StorageError::Changed {
                            path: info.path.clone(),
                            expected: info.length,
                        },
                        _ => StorageError::io(&info.path, e),
                    })
            });
            if let Err(e) = read {
                self.error = Some(e);
                return 0;
            }
        }
        self.read += n as u64;
        n
    }

    fn finish(self) -> Result<PieceDigest, StorageError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.sha.finalize()),
        }
    }
}

/// The handle of file `index`, reusing the cached one when it is the same file.
fn open_cached<'f>(
    open: &'f mut Option<(usize, File)>,
    layout: &FileLayout,
    index: usize,
) -> Result<&'f File, StorageError> {
    if open.as_ref().map(|(i, _)| *i) != Some(index) {
        let path = &layout.files()[index].path;
        *open = Some((
            index,
            File::open(path).map_err(|e| StorageError::io(path, e))?,
        ));
    }
    Ok(&open.as_ref().expect("just opened").1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};
    use std::sync::Mutex;

    #[test]
    fn hashes_match_a_plain_sha1_of_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let sizes = [1_048_577u64, 0, 5 * 1_048_576 - 7];
        let mut stream = Vec::new();
        let mut files = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let mut data = vec![0u8; size as usize];
            rng.fill_bytes(&mut data);
            let path = dir.path().join(format!("f{i}"));
            std::fs::write(&path, &data).unwrap();
            stream.extend_from_slice(&data);
            files.push((path, size, false));
        }
        let layout = FileLayout::new(files, 262_144);
        let hashes = Mutex::new(vec![None; layout.piece_count()]);
        hash_pieces(&layout, 3, |i, h| {
            hashes.lock().unwrap()[i] = Some(h.unwrap());
            ControlFlow::Continue(())
        });
        for (i, chunk) in stream.chunks(262_144).enumerate() {
            let want = PieceDigest::Sha1(shoal_hash::Sha1::digest(chunk));
            assert_eq!(hashes.lock().unwrap()[i], Some(want), "piece {i}");
        }
    }

    #[test]
    fn missing_and_short_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, [1u8; 10]).unwrap();
        let layout = FileLayout::new(
            [(short, 100, false), (dir.path().join("gone"), 100, false)],
            100,
        );
        let errors = Mutex::new(Vec::new());
        hash_pieces(&layout, 2, |i, h| {
            errors.lock().unwrap().push((i, h.unwrap_err().to_string()));
            ControlFlow::Continue(())
        });
        let mut errors = errors.into_inner().unwrap();
        errors.sort();
        assert!(
            errors[0].1.contains("short") && errors[0].1.contains("changed size"),
            "{errors:?}"
        );
        assert!(
            errors[1].1.contains("gone") && errors[1].1.contains("No such file"),
            "{errors:?}"
        );
    }
}
