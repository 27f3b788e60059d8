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
