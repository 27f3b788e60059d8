//! Verifying data already on disk against a torrent's piece hashes, on all cores.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use shoal_core::{Bitfield, Info};

use crate::{hash_pieces, FileLayout};

/// Returns the pieces whose data on disk matches their hash. Missing or short files
/// simply make their pieces absent. `progress` counts bytes checked.
pub fn verify(layout: &FileLayout, info: &Info, threads: usize, progress: &AtomicU64) -> Bitfield {
    let never = AtomicBool::new(false);
    verify_until(layout, info, threads, progress, &never).expect("not stopped")
}

/// [`verify`], given up (`None`) once `stop` is set: a torrent stopped while it checks
/// frees the disk and the cores at once, though the check may have hours to go.
pub fn verify_until(
    layout: &FileLayout,
    info: &Info,
    threads: usize,
    progress: &AtomicU64,
    stop: &AtomicBool,
) -> Option<Bitfield> {
    let have = Mutex::new(Bitfield::new(info.piece_count()));
    // Skip the work entirely when no file exists yet (a fresh download).
    if layout
        .files()
        .iter()
        .all(|f| f.padding || f.length == 0 || !f.path.exists())
    {
        return Some(have.into_inner().expect("not poisoned"));
    }
    hash_pieces(layout, threads, |index, result| {
        if let Ok(hash) = result {
            if info.piece_matches(index, &hash) {
                have.lock().expect("not poisoned").set(index);
            }
        }
        progress.fetch_add(layout.piece_size(index), Ordering::Relaxed);
        match stop.load(Ordering::Relaxed) {
            true => ControlFlow::Break(()),
            false => ControlFlow::Continue(()),
        }
    });
    match stop.load(Ordering::Relaxed) {
        true => None,
        false => Some(have.into_inner().expect("not poisoned")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::create::{create, scan, CreateOptions};
    use shoal_core::{Metainfo, TorrentFormat};

    #[test]
    fn a_stopped_check_ends_early_with_no_answer() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data");
        let data: Vec<u8> = (0..64 * 16384u32)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        std::fs::write(&file, &data).unwrap();
        let options = CreateOptions {
            piece_length: Some(16384),
            threads: 1,
            format: TorrentFormat::V1,
            attributes: false,
        };
        let built = create(&scan(&file).unwrap(), &options, &AtomicU64::new(0)).unwrap();
        let metainfo = Metainfo::from_bytes(&built.to_bytes()).unwrap();
        let layout = FileLayout::for_torrent(&metainfo.info, dir.path());

        let progress = AtomicU64::new(0);
        let whole = verify_until(
            &layout,
            &metainfo.info,
            1,
            &progress,
            &AtomicBool::new(false),
        );
        assert_eq!(whole.map(|have| have.count_ones()), Some(64));
        assert_eq!(progress.into_inner(), data.len() as u64);

        // Stopped from the start: the one thread hashes its first pair, then gives up.
        let progress = AtomicU64::new(0);
        let stopped = verify_until(
            &layout,
            &metainfo.info,
            1,
            &progress,
            &AtomicBool::new(true),
        );
        assert!(stopped.is_none());
        assert_eq!(progress.into_inner(), 2 * 16384);
    }
}
