//! Smart ban: find out which peer sent corrupt data when a piece fails its hash check.
//!
//! A failed piece only says that *some* block was wrong. To name the liar, shoal remembers
//! a SHA-1 digest of every block of the failed piece together with the peer that sent it
//! ([`SmartBan::piece_failed`]; the engine reads the blocks back or still holds them). The
//! piece is then downloaded again. When a later copy passes the check
//! ([`SmartBan::piece_passed`] with the verified blocks), every recorded block whose digest
//! differs from the verified block's was corrupt, and its sender is banned. A peer whose
//! blocks all matched is never banned: its data was the verified data.
//!
//! Two extra rules catch a liar before any pass: if a piece fails *again* and every block
//! of the new attempt came from a single peer, that peer alone sent the bad piece; and if
//! every block of a failed piece came from a peer already *on parole* (it sent a block of
//! an earlier failed piece: see `PiecePicker::on_parole`, which gives such a peer whole
//! pieces to itself), it has now sent a bad piece on its own. An honest peer only ever
//! sends data it verified, so a piece it sent alone never fails.
//!
//! Memory is bounded: only failed pieces are remembered, at most
//! [`SmartBan::max_pieces`] of them (the oldest is forgotten first), with at most
//! [`MAX_RECORDS_PER_BLOCK`] senders per block.

use std::collections::{HashMap, VecDeque};

use sha1::{Digest, Sha1};

use crate::PeerKey;

/// Distinct (peer, data) records kept per block; more are dropped.
pub const MAX_RECORDS_PER_BLOCK: usize = 8;

/// Failed pieces remembered by default.
pub const DEFAULT_MAX_PIECES: usize = 256;

/// One block of a failed piece as it was received.
#[derive(Debug, Clone, Copy)]
pub struct BlockData<'a> {
    /// Byte offset of the block in its piece.
    pub offset: u32,
    /// The peer that sent it.
    pub peer: PeerKey,
    pub data: &'a [u8],
}

#[derive(Debug, Default)]
struct FailedPiece {
    failures: u32,
    /// Block offset → the distinct (sender, digest) pairs seen for it.
    records: HashMap<u32, Vec<(PeerKey, [u8; 20])>>,
}

/// Smart-ban bookkeeping for one torrent. See the module documentation.
#[derive(Debug)]
pub struct SmartBan {
    pieces: HashMap<u32, FailedPiece>,
    /// Pieces in the order they first failed, for eviction.
    order: VecDeque<u32>,
    max_pieces: usize,
}

impl Default for SmartBan {
    fn default() -> Self {
        SmartBan::new(DEFAULT_MAX_PIECES)
    }
}

impl SmartBan {
    /// Remembers at most `max_pieces` failed pieces (at least one).
    pub fn new(max_pieces: usize) -> Self {
        SmartBan {
            pieces: HashMap::new(),
            order: VecDeque::new(),
            max_pieces: max_pieces.max(1),
        }
    }

    pub fn max_pieces(&self) -> usize {
        self.max_pieces
    }

    /// The piece failed before and its verified data is wanted by
    /// [`piece_passed`](Self::piece_passed) once it passes.
    pub fn is_watched(&self, piece: u32) -> bool {
        self.pieces.contains_key(&piece)
    }

    /// `piece` failed its hash check; `blocks` are its blocks as received, with their
    /// senders (see `PiecePicker::block_senders`); `on_parole` says whether a peer was on
    /// parole before this failure. Returns peers to ban now: the sole sender of a piece
    /// that failed before, or of a piece sent on parole.
    pub fn piece_failed<'a>(
        &mut self,
        piece: u32,
        blocks: impl IntoIterator<Item = BlockData<'a>>,
        on_parole: impl Fn(PeerKey) -> bool,
    ) -> Vec<PeerKey> {
        if !self.pieces.contains_key(&piece) {
            if self.pieces.len() >= self.max_pieces {
                if let Some(oldest) = self.order.pop_front() {
                    self.pieces.remove(&oldest);
                }
            }
            self.order.push_back(piece);
        }
        let entry = self.pieces.entry(piece).or_default();
        entry.failures += 1;
        let mut senders: Vec<PeerKey> = Vec::new();
        for block in blocks {
            if !senders.contains(&block.peer) {
                senders.push(block.peer);
            }
            let record = (block.peer, digest(block.data));
            let list = entry.records.entry(block.offset).or_default();
            if !list.contains(&record) && list.len() < MAX_RECORDS_PER_BLOCK {
                list.push(record);
            }
        }
        if senders.len() == 1 && (entry.failures >= 2 || on_parole(senders[0])) {
            senders
        } else {
            Vec::new()
        }
    }

    /// `piece` passed its hash check; `blocks` are its verified blocks as (offset, data).
    /// Returns the peers that sent a block differing from the verified one in an earlier,
    /// failed attempt (sorted, without repeats), and forgets the piece.
    pub fn piece_passed<'a>(
        &mut self,
        piece: u32,
        blocks: impl IntoIterator<Item = (u32, &'a [u8])>,
    ) -> Vec<PeerKey> {
        let Some(entry) = self.pieces.remove(&piece) else {
            return Vec::new();
        };
        if let Some(position) = self.order.iter().position(|&p| p == piece) {
            self.order.remove(position);
        }
        let mut liars = Vec::new();
        for (offset, data) in blocks {
            let Some(records) = entry.records.get(&offset) else {
                continue;
            };
            let good = digest(data);
            liars.extend(
                records
                    .iter()
                    .filter(|(_, d)| *d != good)
                    .map(|(peer, _)| *peer),
            );
        }
        liars.sort_unstable();
        liars.dedup();
        liars
    }

    /// Forget everything about `piece` (for example when the torrent's files are removed).
    pub fn forget(&mut self, piece: u32) {
        if self.pieces.remove(&piece).is_some() {
            self.order.retain(|&p| p != piece);
        }
    }
}

fn digest(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks<'a>(senders: &[u64], data: &'a [Vec<u8>]) -> Vec<BlockData<'a>> {
        senders
            .iter()
            .zip(data)
            .enumerate()
            .map(|(i, (&peer, data))| BlockData {
                offset: i as u32 * 16384,
                peer: PeerKey(peer),
                data,
            })
            .collect()
    }

    fn piece(seed: u8) -> Vec<Vec<u8>> {
        (0..4u8)
            .map(|i| vec![seed.wrapping_add(i); 16384])
            .collect()
    }

    #[test]
    fn bans_the_liar_and_not_the_honest() {
        let mut ban = SmartBan::default();
        let good = piece(1);
        let mut bad = good.clone();
        bad[2][100] ^= 0xff; // peer 3 corrupts block 2
                             // Attempt 1: peers 1, 2, 3, 1 — fails.
        assert!(ban
            .piece_failed(7, blocks(&[1, 2, 3, 1], &bad), |_| false)
            .is_empty());
        assert!(ban.is_watched(7));
        // Attempt 2 from honest peers passes.
        let verified: Vec<(u32, &[u8])> = good
            .iter()
            .enumerate()
            .map(|(i, d)| (i as u32 * 16384, d.as_slice()))
            .collect();
        assert_eq!(ban.piece_passed(7, verified.clone()), vec![PeerKey(3)]);
        assert!(!ban.is_watched(7));
        // Nothing more to say about the piece.
        assert!(ban.piece_passed(7, verified).is_empty());
    }

    #[test]
    fn repeated_failure_by_one_sender_bans_it() {
        let mut ban = SmartBan::default();
        let bad = piece(9);
        assert!(
            ban.piece_failed(1, blocks(&[5, 5, 5, 5], &bad), |_| false)
                .is_empty(),
            "first failure: maybe our fault"
        );
        assert_eq!(
            ban.piece_failed(1, blocks(&[5, 5, 5, 5], &bad), |_| false),
            vec![PeerKey(5)]
        );
        // Two senders on a repeated failure: no conclusion.
        assert!(ban
            .piece_failed(1, blocks(&[5, 6, 5, 6], &bad), |_| false)
            .is_empty());
    }

    #[test]
    fn a_sole_sender_on_parole_is_banned_at_the_first_failure() {
        let mut ban = SmartBan::default();
        let bad = piece(4);
        let parole = |peer: PeerKey| peer == PeerKey(5);
        assert_eq!(
            ban.piece_failed(2, blocks(&[5, 5, 5, 5], &bad), parole),
            vec![PeerKey(5)]
        );
        // Not on parole: a first failure may be our fault.
        assert!(ban
            .piece_failed(3, blocks(&[6, 6, 6, 6], &bad), parole)
            .is_empty());
        // On parole but not alone: no conclusion.
        assert!(ban
            .piece_failed(4, blocks(&[5, 6, 5, 5], &bad), parole)
            .is_empty());
    }

    #[test]
    fn memory_is_bounded() {
        let mut ban = SmartBan::new(2);
        let data = piece(0);
        for p in 0..5 {
            ban.piece_failed(p, blocks(&[1, 1, 1, 1], &data), |_| false);
        }
        assert_eq!(ban.pieces.len(), 2);
        assert!(ban.is_watched(3) && ban.is_watched(4) && !ban.is_watched(0));
        ban.forget(3);
        assert!(!ban.is_watched(3));
        assert_eq!(ban.order.len(), 1);
    }
}
