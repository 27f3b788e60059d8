//! Super-seeding (BEP 16): an initial seed that sends each piece about once.
//!
//! A plain seed answers whatever its unchoked peers ask for. Each leecher picks the rarest
//! pieces *it* can see, among its own few dozen neighbours, so in a large swarm two
//! leechers that are not neighbours often fetch the same piece from the seed; the seed's
//! upload, the scarcest resource early on, then carries duplicates. A super-seed hides its
//! pieces (it announces none) and reveals them one peer at a time with `have`, always the
//! piece it has handed out least often. When a peer announces a piece revealed to it, it
//! has it and will spread it, and the seed reveals the next one. A piece counts as handed
//! out while it is revealed to a peer that can fetch it, and for good once that peer
//! announces it; reveals to a peer that leaves, and a suggesting seed's to a peer it
//! chokes, are taken back.
//!
//! The seed keeps [`SuperSeed::per_peer`] revealed-but-unannounced pieces per peer (BEP 16
//! uses one; two keep the connection busy over the round trip between the peer's `have` and
//! the next reveal), or more for a peer we upload to fast: as many as it takes in
//! [`REQUEST_WINDOW`], so that a single fast leecher is not held to two pieces per round
//! trip (which halved its rate in the simulator) while a crowd of slow ones still gets
//! each piece about once.
//!
//! The same bookkeeping steers a *plain* initial seed ([`Reveal::Suggest`]): it announces
//! every piece, as usual, and names the least-handed-out ones with BEP 6 `suggest` instead of
//! `have`. Leechers that honour suggestions (shoal, libtorrent) fetch those first, so the
//! seed's upload spreads over all pieces as a super-seed's does; a leecher that ignores
//! them, or wants more than the suggested pieces, still asks for anything. In the
//! simulator's 200-peer flash crowd this took a plain seed from 1.62 to 1.27 times the
//! bound (super-seeding: 1.27) without hiding pieces from a lone fast leecher.

use std::collections::HashMap;

use rand::Rng;
use shoal_core::Bitfield;

use crate::{PeerKey, REQUEST_WINDOW};

/// How a seed tells a peer about the pieces picked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reveal {
    /// BEP 16 super-seeding: announce no piece, reveal each with `have`.
    Have,
    /// Announce every piece; name the picked ones with BEP 6 `suggest`.
    Suggest,
}

impl Reveal {
    /// Pieces kept revealed and unannounced per peer, at least (see
    /// [`SuperSeed::target`]). Two `have`s cover the round trip to the next reveal; a
    /// peer may fetch any piece besides suggested ones, so suggesting three keeps more of
    /// its requests on least-sent pieces (simulator, plain seed, 1000-peer flash crowd:
    /// 1.398 of the bound with two, 1.331 with three, 1.339 with four; super-seeding with
    /// four instead of two at 200 peers: 1.277 vs 1.273).
    pub fn per_peer(self) -> usize {
        match self {
            Reveal::Have => 2,
            Reveal::Suggest => 3,
        }
    }
}

/// Super-seed bookkeeping for one torrent. See the module documentation.
#[derive(Debug, Clone)]
pub struct SuperSeed {
    by: Reveal,
    /// Per piece: peers that announced it while it was revealed to them (copies handed
    /// out), plus peers it is revealed to now. Reveals to a peer that is choked or leaves
    /// before announcing the piece are taken back, so a piece is never counted as given
    /// while nobody got it.
    given: Vec<u32>,
    /// Pieces we have sent a block of to anyone.
    sent: Bitfield,
    /// Pieces revealed to a peer that it has not announced yet.
    pending: HashMap<PeerKey, Vec<u32>>,
    per_peer: usize,
    piece_length: u32,
}

impl SuperSeed {
    /// For a torrent of `piece_count` pieces of `piece_length` bytes, keeping at least
    /// `per_peer` (at least one) pieces revealed and unannounced per peer, revealed `by`.
    pub fn new(piece_count: u32, piece_length: u32, per_peer: usize, by: Reveal) -> Self {
        SuperSeed {
            by,
            given: vec![0; piece_count as usize],
            pending: HashMap::new(),
            per_peer: per_peer.max(1),
            piece_length: piece_length.max(1),
            sent: Bitfield::new(piece_count as usize),
        }
    }

    /// How picked pieces are revealed: by `have` (then announce no piece up front) or by
    /// `suggest`.
    pub fn reveals_by(&self) -> Reveal {
        self.by
    }

    pub fn per_peer(&self) -> usize {
        self.per_peer
    }

    /// Revealed-but-unannounced pieces kept for a peer we send `upload_rate` bytes per
    /// second: [`per_peer`](Self::per_peer), or [`REQUEST_WINDOW`] of its rate if more.
    pub fn target(&self, upload_rate: f64) -> usize {
        let rate = if upload_rate.is_finite() {
            upload_rate.max(0.0)
        } else {
            0.0
        };
        let pieces = (rate * REQUEST_WINDOW.as_secs_f64() / f64::from(self.piece_length)).ceil();
        // `as` saturates; the pieces the peer lacks bound the count anyway.
        (pieces as usize).max(self.per_peer)
    }

    /// The pieces to reveal to `peer` now (send a `have` for each), least revealed first;
    /// among those, pieces not sent to anyone yet first (near the end every piece has been
    /// revealed once, and some of them still wait behind other reveals at their peers:
    /// showing those to a second peer gets them out of the seed sooner than a second copy
    /// of a piece already out; simulator, 1000-peer flash crowd, seeds 7–9: 1.208 /
    /// 1.209 / 1.187 of the bound → 1.196 / 1.186 / 1.189); remaining ties at random.
    ///
    /// A super-seed never leaves a single piece hidden from a peer after a reveal: it is
    /// revealed with the rest, last. libtorrent drops a peer once it has been told of every
    /// piece (the peer then counts as upload-only) if it wants nothing from it, and it
    /// checks this *before* it counts the piece that last `have` names. A lone last `have`
    /// reaches a peer that has fetched everything revealed so far, so libtorrent hung up
    /// one piece short and did not come back: the super-seed interop test failed in 4 of
    /// 105 runs under load, and in none of 100 since. Behind a `have` it wants in the same
    /// batch, it stays.
    ///
    /// `peer_bits` are the pieces it has; `shown` the pieces it was told we have;
    /// `upload_rate` is what we send it per second (see [`target`](Self::target)). Call
    /// once its bitfield is known and again whenever [`peer_have`](Self::peer_have)
    /// returns true.
    pub fn reveal(
        &mut self,
        peer: PeerKey,
        peer_bits: &Bitfield,
        shown: &Bitfield,
        upload_rate: f64,
        rng: &mut impl Rng,
    ) -> Vec<u32> {
        let count = self.given.len();
        let mut out = Vec::new();
        if count == 0 {
            return out;
        }
        let target = self.target(upload_rate);
        let pending = self.pending.entry(peer).or_default();
        while pending.len() < target {
            let start = rng.gen_range(0..count);
            let best = (0..count)
                .map(|k| (start + k) % count)
                .filter(|&p| !peer_bits.get(p) && !pending.contains(&(p as u32)))
                .min_by_key(|&p| (self.given[p], self.sent.get(p)));
            let Some(piece) = best else {
                break;
            };
            self.given[piece] += 1;
            pending.push(piece as u32);
            out.push(piece as u32);
        }
        if self.by == Reveal::Have && !out.is_empty() {
            let mut hidden = (0..count).filter(|&p| !shown.get(p) && !out.contains(&(p as u32)));
            if let (Some(last), None) = (hidden.next(), hidden.next()) {
                if !peer_bits.get(last) {
                    self.given[last] += 1;
                    pending.push(last as u32);
                }
                out.push(last as u32);
            }
        }
        out
    }

    /// We sent a block of `piece`.
    pub fn block_sent(&mut self, piece: u32) {
        if (piece as usize) < self.sent.len() {
            self.sent.set(piece as usize);
        }
    }

    /// `peer` announced `piece`. Returns true if it was revealed to it: it now has it,
    /// and more may be revealed.
    pub fn peer_have(&mut self, peer: PeerKey, piece: u32) -> bool {
        let Some(pending) = self.pending.get_mut(&peer) else {
            return false;
        };
        match pending.iter().position(|&r| r == piece) {
            Some(i) => {
                pending.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// We choked `peer`: a suggesting seed takes back its suggestions, started or not,
    /// and gives them to other peers (an unchoke suggests afresh). A choked peer cannot
    /// finish a piece from us, and while nobody else has the piece nobody else can finish
    /// it. Without this, the last pieces to leave the seed waited on peers that could not
    /// fetch them while the seed handed out second copies: taking back untouched
    /// suggestions took the simulator's 200 peers uploading twice the seed's rate from
    /// 1.102 of the bound to 1.090 (seeds 1–3), and taking back started ones as well took
    /// the 1000-peer flash crowd from 1.211 to 1.190 (seed 7; the seed's last new piece
    /// left at ~65 s instead of ~71 s). A super-seed keeps its reveals: the peer was told
    /// it has the piece and asks for it once unchoked, so showing it to another peer made
    /// a second copy (200-peer flash crowd: 1.273 → 1.282).
    pub fn peer_choked(&mut self, peer: PeerKey) {
        if self.by == Reveal::Suggest {
            self.take_back(peer);
        }
    }

    /// The peer is gone: what was revealed to it and not announced is taken back.
    pub fn peer_disconnected(&mut self, peer: PeerKey) {
        self.take_back(peer);
    }

    fn take_back(&mut self, peer: PeerKey) {
        for piece in self.pending.remove(&peer).unwrap_or_default() {
            self.given[piece as usize] -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn every_piece_is_revealed_once_before_any_twice() {
        let mut seed = SuperSeed::new(8, 1 << 18, 2, Reveal::Have);
        let mut rng = StdRng::seed_from_u64(1);
        let none = Bitfield::new(8);
        let mut seen = Vec::new();
        for peer in 0..4 {
            let pieces = seed.reveal(PeerKey(peer), &none, &none, 0.0, &mut rng);
            assert_eq!(pieces.len(), 2);
            seen.extend(pieces);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..8).collect::<Vec<u32>>());
        // Nothing more until a revealed piece is announced.
        assert!(seed
            .reveal(PeerKey(0), &none, &none, 0.0, &mut rng)
            .is_empty());
        let first = seed.pending[&PeerKey(0)][0];
        assert!(!seed.peer_have(PeerKey(0), (first + 1) % 8 + 100));
        assert!(seed.peer_have(PeerKey(0), first));
        let mut has = Bitfield::new(8);
        has.set(first as usize);
        let next = seed.reveal(PeerKey(0), &has, &has, 0.0, &mut rng);
        assert_eq!(next.len(), 1);
        assert_ne!(next[0], first);
        seed.peer_disconnected(PeerKey(0));
        assert!(!seed.peer_have(PeerKey(0), next[0]));
    }

    #[test]
    fn a_peer_with_everything_gets_nothing() {
        let mut seed = SuperSeed::new(4, 1 << 18, 1, Reveal::Suggest);
        let mut rng = StdRng::seed_from_u64(2);
        assert!(seed
            .reveal(
                PeerKey(1),
                &Bitfield::full(4),
                &Bitfield::full(4),
                1e12,
                &mut rng
            )
            .is_empty());
        assert!(SuperSeed::new(0, 1 << 18, 1, Reveal::Have)
            .reveal(
                PeerKey(1),
                &Bitfield::new(0),
                &Bitfield::new(0),
                0.0,
                &mut rng
            )
            .is_empty());
    }

    #[test]
    fn a_fast_peer_gets_a_window_of_pieces() {
        // 256 KiB pieces; 0.5 s at 4 MiB/s is 2 MiB: 8 pieces.
        let mut seed = SuperSeed::new(100, 1 << 18, 2, Reveal::Have);
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(seed.target(0.0), 2);
        assert_eq!(seed.target(f64::NAN), 2);
        assert_eq!(seed.target(4.0 * 1024.0 * 1024.0), 8);
        let none = Bitfield::new(100);
        assert_eq!(
            seed.reveal(PeerKey(1), &none, &none, 0.0, &mut rng).len(),
            2
        );
        assert_eq!(
            seed.reveal(PeerKey(1), &none, &none, 4.0 * 1024.0 * 1024.0, &mut rng)
                .len(),
            6,
            "topped up to 8"
        );
        assert_eq!(
            seed.reveal(PeerKey(2), &none, &none, 1e300, &mut rng).len(),
            100
        );
    }

    #[test]
    fn reveals_to_a_choked_or_departed_peer_are_taken_back() {
        let mut seed = SuperSeed::new(4, 1 << 18, 2, Reveal::Suggest);
        let mut rng = StdRng::seed_from_u64(4);
        let none = Bitfield::new(4);
        let first = seed.reveal(PeerKey(1), &none, &none, 0.0, &mut rng);
        assert_eq!(first.len(), 2);
        // Peer 1 is choked (perhaps halfway through a piece): both its pieces go back, so
        // peers 2 and 3 are shown all four pieces, each once.
        seed.peer_choked(PeerKey(1));
        let second = seed.reveal(PeerKey(2), &none, &none, 0.0, &mut rng);
        let third = seed.reveal(PeerKey(3), &none, &none, 0.0, &mut rng);
        let mut all: Vec<u32> = second.iter().chain(&third).copied().collect();
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2, 3]);
        // Peer 1 announces one of its pieces later (it had it from another peer): the
        // count stays with the peer it is now revealed to.
        assert!(!seed.peer_have(PeerKey(1), first[0]));
        assert_eq!(seed.given[first[0] as usize], 1);
        // Peer 2 leaves: both its pieces go back, and peer 4 is shown them.
        seed.peer_disconnected(PeerKey(2));
        let mut fourth = seed.reveal(PeerKey(4), &none, &none, 0.0, &mut rng);
        let mut second = second;
        fourth.sort_unstable();
        second.sort_unstable();
        assert_eq!(fourth, second);
    }

    #[test]
    fn a_super_seed_keeps_its_reveals_to_a_choked_peer() {
        let mut seed = SuperSeed::new(4, 1 << 18, 2, Reveal::Have);
        let mut rng = StdRng::seed_from_u64(5);
        let none = Bitfield::new(4);
        let first = seed.reveal(PeerKey(1), &none, &none, 0.0, &mut rng);
        seed.peer_choked(PeerKey(1));
        let second = seed.reveal(PeerKey(2), &none, &none, 0.0, &mut rng);
        assert!(
            second.iter().all(|p| !first.contains(p)),
            "{first:?} {second:?}"
        );
        assert!(seed.peer_have(PeerKey(1), first[0]));
    }

    /// A lone peer fetching from a super-seed: the `have` that tells it of our last piece
    /// never comes alone, nor first in its batch, and the peer gets every piece.
    #[test]
    fn the_last_hidden_piece_is_revealed_behind_one_the_peer_wants() {
        for seed_value in 0..20 {
            let mut seed = SuperSeed::new(9, 1 << 18, 2, Reveal::Have);
            let mut rng = StdRng::seed_from_u64(seed_value);
            let (mut has, mut shown) = (Bitfield::new(9), Bitfield::new(9));
            let mut batches = 0;
            while !has.all() {
                let batch = seed.reveal(PeerKey(1), &has, &shown, 0.0, &mut rng);
                for &piece in &batch {
                    shown.set(piece as usize);
                }
                let hidden = 9 - shown.count_ones();
                assert_ne!(hidden, 1, "a piece left hidden alone after {batch:?}");
                if hidden == 0 && !batch.is_empty() {
                    assert!(batch.len() >= 2, "the last have came alone: {batch:?}");
                    assert!(
                        !has.get(batch[0] as usize),
                        "{batch:?} starts with one it has"
                    );
                }
                // The peer fetches the oldest piece revealed to it and announces it.
                let piece = seed.pending[&PeerKey(1)][0];
                has.set(piece as usize);
                assert!(seed.peer_have(PeerKey(1), piece));
                batches += 1;
                assert!(batches <= 9, "the peer stopped getting pieces");
            }
        }
    }

    #[test]
    fn a_piece_revealed_but_not_yet_sent_is_revealed_again_before_one_already_sent() {
        let mut seed = SuperSeed::new(2, 1 << 18, 1, Reveal::Suggest);
        let mut rng = StdRng::seed_from_u64(6);
        let none = Bitfield::new(2);
        let a = seed.reveal(PeerKey(1), &none, &none, 0.0, &mut rng)[0];
        let b = seed.reveal(PeerKey(2), &none, &none, 0.0, &mut rng)[0];
        assert_ne!(a, b);
        // Peer 1 has started its piece; peer 2 has not. Peer 3 is shown peer 2's.
        seed.block_sent(a);
        assert_eq!(seed.reveal(PeerKey(3), &none, &none, 0.0, &mut rng), [b]);
    }
}
