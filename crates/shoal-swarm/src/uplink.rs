//! The order in which connections share one uplink: the piece closest to done goes first.
//!
//! A peer can pass a piece on only once it has all of it and checked its hash. An uplink
//! shared fairly among five downloaders (TCP's way, and a token bucket's) completes all
//! five pieces together, 1.25 s after they start at 1 MiB/s with 256 KiB pieces; served one
//! after another, the first is complete after 0.25 s and its new holder uploads it to
//! others a second sooner, the second after 0.5 s, and so on, with the same bytes sent.
//! In a swarm where every uplink is busy this is what sets how fast new pieces spread:
//! each hop costs the time to send one piece, not one per unchoked peer.
//!
//! So where the bytes of several connections wait for the uplink (the engine's upload rate
//! limit, the simulator's link), the connection whose next bytes have the highest
//! [`PieceProgress::rank`] goes first: the most bytes of that piece already sent. Control
//! messages (requests, `have`s) rank above every block ([`CONTROL_RANK`]): they are tiny,
//! and a request held behind block data idles the uplink at the other end. No connection
//! keeps the top rank for long: the first bytes of its next piece rank lowest, and a
//! downloader's short request queue (see [`queue_depth`](crate::queue_depth)) often leaves
//! it with nothing to send for a round trip, when the others go.
//!
//! In the simulator's 1000-peer flash crowd (seed upload = peer upload) this, with eight
//! upload slots instead of five (see [`ChokerConfig`](crate::ChokerConfig)), took T/T_min
//! from 1.240 to 1.19–1.21 (seeds 7–9); with fair sharing, more slots only slowed each
//! piece down.

//!
//! # A shared uplink
//!
//! Where the driver knows its uplink's capacity (the simulator's links; the engine under
//! an upload limit) it lets [`SharedUplink`] choose, a block at a time, which connection's
//! request goes next, and keeps only about a block queued for the wire. When each
//! connection instead queues its own blocks ahead (64 KiB in the simulator, a quarter of
//! a second or more in the engine), the uplink is committed before it is free: requests
//! are served in each connection's order, and a connection whose next piece's first
//! blocks went out with the last of its previous piece holds the top rank into that next
//! piece too, while downloaders waiting for their first piece from us keep waiting.
//! Choosing late, the piece under way is still finished first, and the next piece goes
//! to a connection drawn at random among those with requests queued.
//!
//! In the simulator's 1000-peer flash crowd (seed upload = peer upload, seeds 7–11) this
//! took T/T_min from 1.1905 to 1.163, because the leechers' uplinks were busier in the
//! first 20 s; with 128 KiB queued for the uplink instead of a block the gain was a third
//! smaller (1.170), and with each connection keeping its own short queue (16 KiB) it was
//! 1.179. The real 20-leecher swarm on loopback (the engine under upload limits) went from
//! 1.043 to 1.007 of its bound. Ordering the choice by the rarity of the requested piece
//! instead of at random starved the requests for common pieces, and the downloaders
//! waiting on them asked nobody else: 1.222 at seed 7.

use rand::Rng;
use shoal_core::Block;

use crate::{PeerKey, PeerLink};

/// The rank of bytes that carry no block data.
pub const CONTROL_RANK: u32 = u32::MAX;

/// The piece a connection was last sent block data of, and how much of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PieceProgress {
    piece: Option<u32>,
    bytes: u32,
}

impl PieceProgress {
    /// `bytes` of block data of `piece` went on the wire.
    pub fn sent(&mut self, piece: u32, bytes: u32) {
        if self.piece == Some(piece) {
            self.bytes = self.bytes.saturating_add(bytes);
        } else {
            *self = PieceProgress {
                piece: Some(piece),
                bytes,
            };
        }
    }

    /// The piece last sent, if any.
    pub fn piece(&self) -> Option<u32> {
        self.piece
    }

    /// The place on the uplink of bytes that go next, of `piece` (`None`: no block data);
    /// higher goes first.
    pub fn rank(&self, piece: Option<u32>) -> u32 {
        match piece {
            None => CONTROL_RANK,
            Some(piece) if self.piece == Some(piece) => self.bytes.min(CONTROL_RANK - 1),
            Some(_) => 0,
        }
    }
}

/// The choice of the next block for an uplink shared by a torrent's connections. See
/// the module documentation.
#[derive(Debug, Default)]
pub struct SharedUplink {
    /// The connection and piece last served.
    current: Option<(PeerKey, u32)>,
}

impl SharedUplink {
    /// The next request to serve: more of the piece last served while its requests are
    /// queued (`link_of` gives a connection's link if its socket takes more); else, among
    /// `links`, the oldest request of the connection whose oldest request goes on with the
    /// piece with the most bytes already sent to it ([`PeerLink::served`]); else a
    /// connection's oldest request, the connection drawn at random.
    pub fn next<'a>(
        &mut self,
        link_of: impl FnOnce(PeerKey) -> Option<&'a PeerLink>,
        links: impl Iterator<Item = (PeerKey, &'a PeerLink)>,
        rng: &mut impl Rng,
    ) -> Option<(PeerKey, Block)> {
        if let Some((key, piece)) = self.current {
            let next = link_of(key).and_then(|link| {
                link.session
                    .upload_queue()
                    .find(|b| b.piece == piece)
                    .copied()
            });
            if let Some(block) = next {
                return Some((key, block));
            }
        }
        let mut best: Option<(u32, PeerKey, Block)> = None;
        let mut ties = 0u32;
        for (key, link) in links {
            // Requests come in order, so the rest of a piece under way is first in line.
            let Some(&block) = link.session.upload_queue().next() else {
                continue;
            };
            let rank = match link.served.piece() {
                Some(piece) if piece == block.piece => link.served.rank(Some(piece)) + 1,
                _ => 0,
            };
            match best {
                Some((top, ..)) if rank < top => continue,
                Some((top, ..)) if rank == top => {
                    ties += 1;
                    if rng.gen_range(0..ties) != 0 {
                        continue;
                    }
                }
                _ => ties = 1,
            }
            best = Some((rank, key, block));
        }
        self.current = best.map(|(_, key, block)| (key, block.piece));
        best.map(|(_, key, block)| (key, block))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: u32 = 16 * 1024;

    #[test]
    fn a_piece_further_along_ranks_higher_and_a_new_piece_lowest() {
        let mut a = PieceProgress::default();
        let mut b = PieceProgress::default();
        assert_eq!(a.rank(Some(3)), 0);
        a.sent(3, BLOCK);
        a.sent(3, BLOCK);
        b.sent(5, BLOCK);
        assert!(a.rank(Some(3)) > b.rank(Some(5)));
        assert!(
            b.rank(Some(5)) > a.rank(Some(4)),
            "a's next piece starts from nothing"
        );
        a.sent(4, BLOCK);
        assert_eq!(a.rank(Some(4)), b.rank(Some(5)));
        assert_eq!(a.rank(None), CONTROL_RANK);
        assert!(a.rank(Some(4)) < CONTROL_RANK);
    }
}
