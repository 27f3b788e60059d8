//! Web seeds (BEP 19) in the torrent core: HTTP servers that hold every piece. The
//! driver does the HTTP; the core decides what each is asked for and takes what it
//! returns like a peer's blocks (hash check, smart ban, endgame cancels), so a web seed
//! that serves bad data is banned like a lying peer.

use std::collections::BTreeSet;
use std::time::Instant;

use bytes::Bytes;
use shoal_core::{Bitfield, Block};

use super::{Connection, Io, TorrentCore};
use crate::PeerKey;

/// The core's web seeds, by key (keys come from the same counter as connections').
#[derive(Debug, Default)]
pub(super) struct WebSeeds {
    active: BTreeSet<PeerKey>,
    /// Banned since the driver last asked.
    banned: Vec<PeerKey>,
}

impl WebSeeds {
    /// Drops `key` for sending bad data, if it is an active web seed; says whether it was.
    pub(super) fn ban(&mut self, key: PeerKey) -> bool {
        let active = self.active.remove(&key);
        if active {
            self.banned.push(key);
        }
        active
    }
}

impl<P: Connection> TorrentCore<P> {
    /// A new web seed, a source of every piece; its key names it in the calls below.
    pub fn add_web_seed(&mut self) -> PeerKey {
        let key = PeerKey(self.next_key);
        self.next_key += 1;
        self.picker.peer_have_all(key);
        self.web_seeds.active.insert(key);
        key
    }

    /// Up to `max` blocks of `pieces` (those web seed `key` can serve: every piece, less
    /// those of files it lacks) for it to fetch, sorted by piece and offset so that each
    /// run of adjacent blocks can be one HTTP range. None once the download is complete,
    /// or if `key` is not an active web seed.
    pub fn web_seed_requests(&mut self, key: PeerKey, pieces: &Bitfield, max: usize) -> Vec<Block> {
        let mut blocks = Vec::new();
        if self.web_seeds.active.contains(&key) {
            self.picker
                .pick(key, pieces, max, &mut self.rng, &mut blocks);
            blocks.sort_unstable_by_key(|b| (b.piece, b.offset));
        }
        blocks
    }

    /// A block web seed `key` returned. Data from a web seed banned meanwhile is dropped
    /// (counted as wasted).
    pub fn web_seed_block(
        &mut self,
        key: PeerKey,
        block: Block,
        data: Bytes,
        now: Instant,
        io: &mut impl Io<P>,
    ) {
        if self.web_seeds.active.contains(&key) {
            self.accept_block(key, block, data, now, io);
        } else {
            self.duplicate_bytes += u64::from(block.length);
        }
    }

    /// Web seed `key` could not deliver `blocks`: others may fetch them now.
    pub fn web_seed_failed(&mut self, key: PeerKey, blocks: &[Block]) {
        for &block in blocks {
            self.picker.request_cancelled(key, block);
        }
    }

    /// The driver gives up on web seed `key`: its requests go back to the pool.
    pub fn remove_web_seed(&mut self, key: PeerKey) {
        if self.web_seeds.active.remove(&key) {
            self.picker.peer_disconnected(key, &Bitfield::new(0));
        }
    }

    /// Web seeds banned since the last call, for sending data that failed the hash check.
    pub fn take_banned_web_seeds(&mut self) -> Vec<PeerKey> {
        std::mem::take(&mut self.web_seeds.banned)
    }
}
