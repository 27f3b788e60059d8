//! Verifying data already on disk against a torrent's piece hashes, on all cores.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use shoal_core::{Bitfield, Info};

use crate::{hash_pieces, FileLayout};

/// Returns the pieces whose data on disk matches their hash. Missing or short files
/// simply make their pieces absent. `progress` counts bytes checked.
pub fn verify(layout: &FileLayout, info: &Info, threads: usize, progress: &AtomicU64) -> Bitfield {
    let have = Mutex::new(Bitfield::new(info.piece_count()));
    // Skip the work entirely when no file exists yet (a fresh download).
    if layout
        .files()
        .iter()
        .all(|f| f.padding || f.length == 0 || !f.path.exists())
    {
        return have.into_inner().expect("not poisoned");
    }
    hash_pieces(layout, threads, |index, result| {
        if let Ok(hash) = result {
            if info.piece_matches(index, &hash) {
                have.lock().expect("not poisoned").set(index);
            }
        }
        progress.fetch_add(layout.piece_size(index), Ordering::Relaxed);
        ControlFlow::Continue(())
    });
    have.into_inner().expect("not poisoned")
}
