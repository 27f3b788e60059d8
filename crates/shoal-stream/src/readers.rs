//! Who is reading where, and so which pieces the engine should fetch first.
//!
//! A player reads a file from some position on; what it waits for is the piece at its
//! position, then the next ones. Each reader's next [`NOW`] pieces are wanted now (the
//! engine clears the way for them), the rest of its read-ahead window soon; the lists
//! of several readers (a player often keeps one connection for the picture and opens
//! another to seek) are interleaved, so each one's next piece comes before anyone's
//! second.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use shoal_core::Bitfield;
use shoal_engine::Wanted;
use tokio::sync::watch;

/// Pieces from a reader's position on that it is blocked on, rather than reading ahead.
pub const NOW: u32 = 2;

/// Readers at most at once: each adds its window to the engine's priority list, and a
/// client that opens connections without end must not grow it without end.
pub const MAX_READERS: usize = 32;

/// The pieces one reader still needs: from `next` to `last`, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    next: u32,
    last: u32,
}

#[derive(Debug)]
struct Inner {
    readers: BTreeMap<u64, Position>,
    next_id: u64,
    /// Readers started, or skipped ahead or back ([`Wanted::jumps`]).
    jumps: u64,
}

/// The registry of readers, shared by every response being sent. It publishes the
/// wanted pieces on `wanted` whenever they change.
#[derive(Debug, Clone)]
pub struct Readers {
    inner: Arc<Mutex<Inner>>,
    /// Pieces ahead of a reader's position that are wanted with it.
    window: u32,
    wanted: Arc<watch::Sender<Wanted>>,
    have: watch::Receiver<Bitfield>,
}

impl Readers {
    /// `window`: how many pieces from a reader's position on are fetched first (at
    /// least 1).
    pub fn new(
        window: u32,
        wanted: watch::Sender<Wanted>,
        have: watch::Receiver<Bitfield>,
    ) -> Self {
        Readers {
            inner: Arc::new(Mutex::new(Inner {
                readers: BTreeMap::new(),
                next_id: 0,
                jumps: 0,
            })),
            window: window.max(1),
            wanted: Arc::new(wanted),
            have,
        }
    }

    /// A new reader of pieces `first..=last`; `None` when [`MAX_READERS`] read already.
    /// It counts until the returned [`Reader`] is dropped.
    pub fn add(&self, first: u32, last: u32) -> Option<Reader> {
        let id = {
            let mut inner = self.lock();
            if inner.readers.len() >= MAX_READERS {
                return None;
            }
            let id = inner.next_id;
            inner.next_id += 1;
            inner.jumps += 1;
            inner.readers.insert(id, Position { next: first, last });
            id
        };
        self.publish();
        Some(Reader {
            readers: self.clone(),
            id,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends the wanted pieces to the engine if they changed: each reader's next pieces
    /// that are not here yet, up to the window, the readers' lists interleaved. Sent
    /// under the registry's lock, so that lists go out in the order they were made.
    fn publish(&self) {
        let inner = self.lock();
        let wanted = {
            let have = self.have.borrow();
            let mut wanted = Wanted {
                jumps: inner.jumps,
                ..Wanted::default()
            };
            let mut listed = Bitfield::new(have.len());
            for ahead in 0..self.window {
                for position in inner.readers.values() {
                    let Some(piece) = position.next.checked_add(ahead) else {
                        continue;
                    };
                    // `set` is false for a piece listed already (or out of range).
                    if piece <= position.last
                        && !have.get(piece as usize)
                        && listed.set(piece as usize)
                    {
                        match ahead < NOW {
                            true => wanted.now.push(piece),
                            false => wanted.soon.push(piece),
                        }
                    }
                }
            }
            wanted
        };
        self.wanted.send_if_modified(|current| {
            let changed = *current != wanted;
            *current = wanted;
            changed
        });
    }

    /// The pieces verified so far, to wait on.
    pub fn have(&self) -> watch::Receiver<Bitfield> {
        self.have.clone()
    }
}

/// One reader: moves its position as it reads; leaves the registry when dropped.
#[derive(Debug)]
pub struct Reader {
    readers: Readers,
    id: u64,
}

impl Reader {
    /// The reader goes on from `piece`: the window moves with it. A move other than to
    /// the next piece is a jump.
    pub fn at(&self, piece: u32) {
        let moved = {
            let mut inner = self.readers.lock();
            let Some(position) = inner.readers.get_mut(&self.id) else {
                return;
            };
            let (moved, jumped) = (
                position.next != piece,
                Some(piece) != position.next.checked_add(1),
            );
            position.next = piece;
            if moved && jumped {
                inner.jumps += 1;
            }
            moved
        };
        if moved {
            self.readers.publish();
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.readers.lock().readers.remove(&self.id);
        self.readers.publish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(
        window: u32,
        pieces: usize,
    ) -> (Readers, watch::Receiver<Wanted>, watch::Sender<Bitfield>) {
        let (wanted_tx, wanted_rx) = watch::channel(Wanted::default());
        let (have_tx, have_rx) = watch::channel(Bitfield::new(pieces));
        (Readers::new(window, wanted_tx, have_rx), wanted_rx, have_tx)
    }

    /// The wanted lists as (now, soon).
    fn lists(wanted: &watch::Receiver<Wanted>) -> (Vec<u32>, Vec<u32>) {
        let wanted = wanted.borrow();
        (wanted.now.clone(), wanted.soon.clone())
    }

    #[test]
    fn a_reader_wants_its_window_and_moves_it() {
        let (readers, wanted, _have) = registry(3, 100);
        let reader = readers.add(10, 11).unwrap();
        // The window stops at the reader's last piece.
        assert_eq!(lists(&wanted), (vec![10, 11], vec![]));
        drop(reader);
        assert_eq!(lists(&wanted), (vec![], vec![]));

        let reader = readers.add(10, 50).unwrap();
        assert_eq!(lists(&wanted), (vec![10, 11], vec![12]));
        assert_eq!(wanted.borrow().jumps, 2, "two readers started");
        // Reading on in order is no jump; skipping ahead is.
        reader.at(11);
        assert_eq!(lists(&wanted), (vec![11, 12], vec![13]));
        assert_eq!(wanted.borrow().jumps, 2);
        reader.at(20);
        assert_eq!(lists(&wanted), (vec![20, 21], vec![22]));
        assert_eq!(wanted.borrow().jumps, 3);
    }

    #[test]
    fn pieces_here_are_not_wanted() {
        let (readers, wanted, have) = registry(4, 100);
        have.send_modify(|bits| {
            bits.set(11);
        });
        let _reader = readers.add(10, 50).unwrap();
        assert_eq!(lists(&wanted), (vec![10], vec![12, 13]));
    }

    #[test]
    fn readers_take_turns_and_share_pieces() {
        let (readers, wanted, _have) = registry(3, 100);
        let _a = readers.add(0, 99).unwrap();
        let _b = readers.add(50, 99).unwrap();
        assert_eq!(lists(&wanted), (vec![0, 50, 1, 51], vec![2, 52]));
        // A third reader one piece behind the first: its next pieces are listed once.
        let _c = readers.add(1, 99).unwrap();
        assert_eq!(lists(&wanted), (vec![0, 50, 1, 51, 2], vec![52, 3]));
    }

    #[test]
    fn readers_are_bounded() {
        let (readers, wanted, _have) = registry(1, 1000);
        let held: Vec<Reader> = (0..MAX_READERS as u32)
            .map(|i| readers.add(i, i).unwrap())
            .collect();
        assert!(readers.add(999, 999).is_none());
        assert_eq!(wanted.borrow().now.len(), MAX_READERS);
        drop(held);
        assert_eq!(lists(&wanted), (vec![], vec![]));
        assert!(readers.add(999, 999).is_some());
    }
}
