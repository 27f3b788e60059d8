//! Hashing pieces from disk on several cores.
//!
//! Workers take piece indices from a shared counter and read each piece with positioned
//! reads in chunks small enough to stay in the CPU's L2 cache while they are hashed, so
//! the data is touched from memory once. Memory use is one chunk per worker, whatever the
//! piece length or the size of the content.

use std::fs::File;
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use sha1::{Digest, Sha1};

use crate::{FileLayout, StorageError};

/// Read (and hash) this much at a time.
const CHUNK: usize = 256 * 1024;

/// Hashes every piece of `layout` on `threads` worker threads.
///
/// `on_piece` is called from the workers as each piece finishes, in no particular order,
/// with the piece's SHA-1 or the error that stopped it from being read (a missing or
/// short file is an error here; a recheck treats it as "piece not present"). Returning
/// [`ControlFlow::Break`] stops all workers early.
pub fn hash_pieces<F>(layout: &FileLayout, threads: usize, on_piece: F)
where
    F: Fn(usize, Result<[u8; 20], StorageError>) -> ControlFlow<()> + Sync,
{
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let count = layout.piece_count();
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, count.max(1)) {
            scope.spawn(|| {
                let mut reader = Reader {
                    layout,
                    open: None,
                    buffer: vec![0; CHUNK],
                };
                while !stop.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        break;
                    }
                    if on_piece(index, reader.hash_piece(index)).is_break() {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
    });
}

/// One worker's state: its buffer and the file it read last (consecutive pieces of a
/// worker usually fall in the same file, so one cached handle saves most opens).
struct Reader<'a> {
    layout: &'a FileLayout,
    open: Option<(usize, File)>,
    buffer: Vec<u8>,
}

impl Reader<'_> {
    fn hash_piece(&mut self, index: usize) -> Result<[u8; 20], StorageError> {
        let layout = self.layout;
        let mut sha = Sha1::new();
        for segment in layout.piece_segments(index) {
            let info = &layout.files()[segment.file];
            let mut done = 0;
            while done < segment.length {
                let n = (segment.length - done).min(CHUNK as u64) as usize;
                if info.padding {
                    self.buffer[..n].fill(0);
                } else {
                    let offset = segment.file_offset + done;
                    let file = open_cached(&mut self.open, layout, segment.file)?;
                    file.read_exact_at(&mut self.buffer[..n], offset)
                        .map_err(|e| match e.kind() {
                            io::ErrorKind::UnexpectedEof => StorageError::Changed {
                                path: info.path.clone(),
                                expected: info.length,
                            },
                            _ => StorageError::io(&info.path, e),
                        })?;
                }
                sha.update(&self.buffer[..n]);
                done += n as u64;
            }
        }
        Ok(sha.finalize().into())
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
            let want: [u8; 20] = Sha1::digest(chunk).into();
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
