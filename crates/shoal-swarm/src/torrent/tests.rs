//! Two [`TorrentCore`]s wired back to back in memory: a seed and a leecher, each with a
//! small [`Io`] of its own, so the core's contract with its drivers is checked without
//! either driver: pieces checked at once (the simulator's way) or later through
//! [`TorrentCore::piece_checked`] (the engine's), and a sender of bad data banned.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use shoal_core::{Bitfield, Block, InfoHash, PeerId};
use shoal_wire::{PeerSession, SessionConfig, WireError, OUR_UPLOAD_ONLY_ID, UPLOAD_ONLY};

use super::{Connection, CoreConfig, Io, TorrentCore, Uplink};
use crate::{PeerKey, PeerLink};

const PIECE_LENGTH: u32 = 32 * 1024;
const PIECES: u32 = 6;
/// The last piece is short.
const TOTAL: u64 = PIECES as u64 * PIECE_LENGTH as u64 - 5000;
const INFO_HASH: InfoHash = InfoHash([3; 20]);

fn content() -> Vec<u8> {
    (0..TOTAL).map(|i| (i * 7 + i / 1000) as u8).collect()
}

struct TestPeer {
    link: PeerLink,
    /// Bytes flushed to the "socket", not yet delivered.
    wire: VecDeque<Bytes>,
}

impl Connection for TestPeer {
    fn link(&self) -> &PeerLink {
        &self.link
    }

    fn link_mut(&mut self) -> &mut PeerLink {
        &mut self.link
    }

    fn ip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
}

/// Storage is a byte vector; the piece check compares with the true content.
struct TestIo {
    truth: Vec<u8>,
    stored: Vec<u8>,
    /// Serve every block with its first byte flipped.
    corrupt: bool,
    /// Check complete pieces later (the harness calls `piece_checked`), as the engine's
    /// disk thread does.
    check_later: bool,
    to_check: Vec<u32>,
    verified: Vec<u32>,
    failed: Vec<u32>,
    banned: usize,
    removed: Vec<String>,
    /// A shared uplink ([`Uplink::Shared`]) that takes one block per step: blocks handed
    /// to it this step, and every block served, in order.
    shared: Option<usize>,
    served: Vec<(PeerKey, Block)>,
}

impl TestIo {
    fn new(have_all: bool, corrupt: bool, check_later: bool) -> Self {
        let truth = content();
        TestIo {
            stored: if have_all {
                truth.clone()
            } else {
                vec![0; truth.len()]
            },
            truth,
            corrupt,
            check_later,
            to_check: Vec::new(),
            verified: Vec::new(),
            failed: Vec::new(),
            banned: 0,
            removed: Vec::new(),
            shared: None,
            served: Vec::new(),
        }
    }

    fn range(piece: u32, offset: u32, length: u32) -> std::ops::Range<usize> {
        let start = (piece * PIECE_LENGTH + offset) as usize;
        start..start + length as usize
    }

    fn piece_is_true(&self, piece: u32) -> bool {
        let start = (piece * PIECE_LENGTH) as usize;
        let end = (start + PIECE_LENGTH as usize).min(self.truth.len());
        self.stored[start..end] == self.truth[start..end]
    }
}

impl Io<TestPeer> for TestIo {
    fn flush(&mut self, _key: PeerKey, peer: &mut TestPeer) {
        if let Some(bytes) = peer.link.session.poll_transmit() {
            peer.wire.push_back(bytes);
        }
    }

    fn upload_room(&self, peer: &TestPeer) -> bool {
        peer.wire.len() < 64
    }

    fn uplink(&self) -> Uplink {
        match self.shared {
            None => Uplink::PerConnection,
            Some(this_step) => Uplink::Shared {
                room: this_step == 0,
            },
        }
    }

    fn send_block(&mut self, key: PeerKey, peer: &mut TestPeer, block: Block) -> bool {
        if let Some(this_step) = &mut self.shared {
            *this_step += 1;
        }
        self.served.push((key, block));
        let mut data = self.stored[Self::range(block.piece, block.offset, block.length)].to_vec();
        if self.corrupt {
            data[0] ^= 0xff;
        }
        peer.link.session.send_block(block, Bytes::from(data));
        if let Some(bytes) = peer.link.session.poll_transmit() {
            peer.wire.push_back(bytes);
        }
        true
    }

    fn store_block(&mut self, block: Block, data: Bytes, piece_complete: bool) -> Option<bool> {
        self.stored[Self::range(block.piece, block.offset, block.length)].copy_from_slice(&data);
        if !piece_complete {
            None
        } else if self.check_later {
            self.to_check.push(block.piece);
            None
        } else {
            Some(self.piece_is_true(block.piece))
        }
    }

    fn read_block(&self, piece: u32, offset: u32, length: u32) -> Bytes {
        Bytes::copy_from_slice(&self.stored[Self::range(piece, offset, length)])
    }

    fn piece_verified(&mut self, piece: u32, _have: usize) {
        self.verified.push(piece);
    }

    fn piece_failed(&mut self, piece: u32) {
        self.failed.push(piece);
    }

    fn banning(&mut self, _peer: &TestPeer) {
        self.banned += 1;
    }

    fn removed(&mut self, _peer: TestPeer, reason: &str, _now: Instant) {
        self.removed.push(reason.to_owned());
    }
}

struct Side {
    core: TorrentCore<TestPeer>,
    io: TestIo,
    key: PeerKey,
}

impl Side {
    fn new(id: u8, io: TestIo, have: &Bitfield, now: Instant) -> Self {
        Side::wanting(id, io, have, None, now)
    }

    /// A side that downloads only `wanted` (the pieces of the files chosen).
    fn wanting(
        id: u8,
        io: TestIo,
        have: &Bitfield,
        wanted: Option<&Bitfield>,
        now: Instant,
    ) -> Self {
        let mut core = new_core(id, have, wanted, now);
        let mut io = io;
        let peer = new_peer(id, core.announced(), core.upload_only(), now);
        let key = core.add_peer(|_| peer, now, &mut io);
        Side { core, io, key }
    }

    /// What this side flushed towards the other.
    fn take_wire(&mut self) -> Vec<Bytes> {
        match self.core.peers_mut().get_mut(&self.key) {
            Some(peer) => peer.wire.drain(..).collect(),
            None => Vec::new(),
        }
    }

    fn deliver(&mut self, bytes: Vec<Bytes>, now: Instant) {
        self.core.on_data(self.key, bytes, now, &mut self.io);
        for piece in std::mem::take(&mut self.io.to_check) {
            let good = self.io.piece_is_true(piece);
            self.core.piece_checked(piece, good, now, &mut self.io);
        }
    }
}

fn new_core(
    id: u8,
    have: &Bitfield,
    wanted: Option<&Bitfield>,
    now: Instant,
) -> TorrentCore<TestPeer> {
    TorrentCore::new(CoreConfig {
        info_hash: INFO_HASH,
        piece_count: PIECES,
        piece_length: PIECE_LENGTH,
        total_length: TOTAL,
        have,
        wanted,
        super_seed: false,
        initial_rate: 256.0 * 1024.0,
        first_key: 0,
        rng: StdRng::seed_from_u64(u64::from(id)),
        now,
    })
}

/// A connection of host `id`, which announces `announced` (and, as the engine does,
/// whether it wants anything more, BEP 21), before its handshake.
fn new_peer(id: u8, announced: Bitfield, upload_only: bool, now: Instant) -> TestPeer {
    TestPeer {
        link: PeerLink::new(
            PeerSession::new(session_config(id, announced, upload_only), now),
            PIECES as usize,
            now,
        ),
        wire: VecDeque::new(),
    }
}

fn session_config(id: u8, announced: Bitfield, upload_only: bool) -> SessionConfig {
    let mut config = SessionConfig::new(
        INFO_HASH,
        PeerId::shoal([id; 12]),
        PIECES,
        PIECE_LENGTH,
        TOTAL,
        announced,
    );
    let hs = &mut config.extension_handshake;
    hs.m = BTreeMap::from([(UPLOAD_ONLY.to_owned(), OUR_UPLOAD_ONLY_ID)]);
    hs.upload_only = upload_only.then_some(true);
    config
}

fn all_pieces() -> Bitfield {
    let mut all = Bitfield::new(PIECES as usize);
    for piece in 0..PIECES as usize {
        all.set(piece);
    }
    all
}

/// Runs a seed and a leecher until nothing moves or `limit` virtual seconds pass;
/// returns the leecher.
fn transfer(seed_corrupts: bool, check_later: bool, limit: u64) -> Side {
    let start = Instant::now();
    let mut seed = Side::new(
        1,
        TestIo::new(true, seed_corrupts, false),
        &all_pieces(),
        start,
    );
    let none = Bitfield::new(PIECES as usize);
    let mut leecher = Side::new(2, TestIo::new(false, false, check_later), &none, start);
    for step in 0..limit * 10 {
        let now = start + Duration::from_millis(100 * step);
        let (up, down) = (seed.take_wire(), leecher.take_wire());
        leecher.deliver(up, now);
        seed.deliver(down, now);
        seed.core.tick(now, &mut seed.io);
        leecher.core.tick(now, &mut leecher.io);
        if leecher.core.is_complete() || leecher.core.peers().is_empty() {
            break;
        }
    }
    leecher
}

#[test]
fn a_leecher_verifies_every_piece_checked_at_once() {
    let leecher = transfer(false, false, 30);
    assert!(leecher.core.is_complete());
    assert_eq!(leecher.io.stored, leecher.io.truth);
    let mut verified = leecher.io.verified.clone();
    verified.sort_unstable();
    assert_eq!(verified, (0..PIECES).collect::<Vec<_>>());
    assert!(leecher.io.failed.is_empty());
    // Complete, and the peer a seed: nothing to trade either way, so the connection goes.
    assert!(leecher.core.peers().get(&leecher.key).is_none());
    assert_eq!(leecher.io.removed, [super::BOTH_DONE]);
}

/// A dial to an address of our own (the other family's, or our router's) reaches us:
/// both ends see their own peer id and close, whatever they have to trade.
#[test]
fn a_connection_to_ourselves_is_closed_at_the_handshake() {
    let now = Instant::now();
    let none = Bitfield::new(PIECES as usize);
    let mut dialled = Side::new(1, TestIo::new(true, false, false), &all_pieces(), now);
    let mut dialling = Side::new(1, TestIo::new(false, false, false), &none, now);
    for _ in 0..3 {
        let (out, back) = (dialling.take_wire(), dialled.take_wire());
        dialled.deliver(out, now);
        dialling.deliver(back, now);
    }
    for side in [&dialled, &dialling] {
        assert!(side.core.peers().is_empty());
        assert_eq!(side.io.removed, [WireError::SelfConnection.to_string()]);
    }
    assert!(dialling.io.stored.iter().all(|&b| b == 0), "nothing traded");
}

#[test]
fn a_leecher_verifies_every_piece_checked_later() {
    let leecher = transfer(false, true, 30);
    assert!(leecher.core.is_complete());
    assert_eq!(leecher.io.stored, leecher.io.truth);
    assert_eq!(leecher.io.verified.len(), PIECES as usize);
}

#[test]
fn a_seed_sending_bad_data_is_banned() {
    let leecher = transfer(true, false, 60);
    assert!(!leecher.core.is_complete());
    assert!(leecher.io.verified.is_empty(), "no corrupt piece passes");
    assert!(!leecher.io.failed.is_empty());
    assert_eq!(leecher.io.banned, 1);
    assert_eq!(leecher.io.removed.len(), 1);
    assert!(leecher.io.removed[0].starts_with("banned"));
    assert!(leecher.core.peers().is_empty());
    // Nothing of the failed pieces counts as had, and all of it counts as wasted.
    assert_eq!(leecher.core.have().count_ones(), 0);
    let failed_bytes: u64 = leecher
        .io
        .failed
        .iter()
        .map(|&p| {
            if p == PIECES - 1 {
                TOTAL % u64::from(PIECE_LENGTH)
            } else {
                u64::from(PIECE_LENGTH)
            }
        })
        .sum();
    assert_eq!(leecher.core.failed_bytes, failed_bytes);
}

/// A seed whose uplink the core shares between two leechers, a block per step: it
/// finishes the piece under way before it starts another, sends nothing beyond its
/// room, and both leechers get pieces in turn.
#[test]
fn a_shared_uplink_sends_a_piece_at_a_time_to_each_leecher_in_turn() {
    let start = Instant::now();
    let mut seed_io = TestIo::new(true, false, false);
    seed_io.shared = Some(0);
    let mut seed = Side::new(1, seed_io, &all_pieces(), start);
    let to_b = {
        let peer = new_peer(1, seed.core.announced(), seed.core.upload_only(), start);
        seed.core.add_peer(|_| peer, start, &mut seed.io)
    };
    let to_a = seed.key;
    let none = Bitfield::new(PIECES as usize);
    let mut a = Side::new(2, TestIo::new(false, false, false), &none, start);
    let mut b = Side::new(3, TestIo::new(false, false, false), &none, start);
    for step in 0..600 {
        let now = start + Duration::from_millis(100 * step);
        let wire = |seed: &mut Side, key| match seed.core.peers_mut().get_mut(&key) {
            Some(peer) => peer.wire.drain(..).collect(),
            None => Vec::new(),
        };
        let (for_a, for_b) = (wire(&mut seed, to_a), wire(&mut seed, to_b));
        a.deliver(for_a, now);
        b.deliver(for_b, now);
        let (from_a, from_b) = (a.take_wire(), b.take_wire());
        seed.io.shared = Some(0);
        seed.core.on_data(to_a, from_a, now, &mut seed.io);
        seed.core.on_data(to_b, from_b, now, &mut seed.io);
        seed.core.serve_uplink(&mut seed.io);
        seed.core.tick(now, &mut seed.io);
        assert!(
            seed.io.shared.is_some_and(|sent| sent <= 1),
            "room for one block"
        );
        a.core.tick(now, &mut a.io);
        b.core.tick(now, &mut b.io);
        if a.core.is_complete() && b.core.is_complete() {
            break;
        }
    }
    assert!(a.core.is_complete() && b.core.is_complete());
    assert_eq!(a.io.stored, a.io.truth);
    assert_eq!(b.io.stored, b.io.truth);
    // Runs of blocks of one piece to one leecher: each (leecher, piece) in one run.
    let mut runs: Vec<(PeerKey, u32)> = seed.io.served.iter().map(|(k, b)| (*k, b.piece)).collect();
    runs.dedup();
    let mut distinct = runs.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        runs.len(),
        distinct.len(),
        "a piece was interrupted: {runs:?}"
    );
    assert_eq!(runs.len(), 2 * PIECES as usize);
    // Turns: the uplink did not serve one leecher all its pieces, then the other.
    let switches = runs.windows(2).filter(|w| w[0].0 != w[1].0).count();
    assert!(switches >= 3, "{runs:?}");
}

/// A seed and a leecher for `steps` steps of 100 ms, with everything the seed sends in
/// steps `silent` held back and delivered after. Returns the leecher and, for every step,
/// how many requests it had out with the seed after its tick.
fn seed_silent(silent: std::ops::RangeInclusive<u64>, steps: u64) -> (Side, Vec<usize>) {
    let start = Instant::now();
    let mut seed = Side::new(1, TestIo::new(true, false, false), &all_pieces(), start);
    let none = Bitfield::new(PIECES as usize);
    let mut leecher = Side::new(2, TestIo::new(false, false, false), &none, start);
    let mut held = Vec::new();
    let mut requested = Vec::new();
    for step in 0..steps {
        let now = start + Duration::from_millis(100 * step);
        held.extend(seed.take_wire());
        if !silent.contains(&step) {
            leecher.deliver(std::mem::take(&mut held), now);
        }
        seed.deliver(leecher.take_wire(), now);
        seed.core.tick(now, &mut seed.io);
        leecher.core.tick(now, &mut leecher.io);
        // The connection goes once the leecher is complete (both done).
        let link = leecher.core.peers().get(&leecher.key).map(|p| p.link());
        requested.push(link.map_or(0, |l| l.requested.len()));
    }
    (leecher, requested)
}

/// The snub clock starts when we ask: a peer that has sent us nothing because we asked
/// it nothing (here: its bitfield and unchoke took 40 s to arrive) is not snubbed as soon
/// as we ask, which would cancel the requests it is answering.
#[test]
fn a_peer_first_asked_late_is_not_snubbed_at_once() {
    let (leecher, requested) = seed_silent(1..=400, 450);
    let asked = requested.iter().position(|&n| n > 0).expect("asked");
    assert!(asked > 400, "asked at step {asked}");
    assert!(leecher.core.is_complete());
    assert_eq!(leecher.core.duplicate_bytes, 0, "nothing sent twice");
}

/// A peer that sends nothing for 30 s although asked is snubbed: its requests are
/// cancelled (and asked again: it is the only peer), and what it sent twice counts as
/// wasted, whether the copy that lost is a duplicate or a block no longer requested.
#[test]
fn blocks_sent_twice_after_a_snub_count_as_wasted() {
    let (leecher, requested) = seed_silent(3..=350, 450);
    assert!(requested[2] > 0, "asked before the silence");
    assert!(leecher.core.is_complete());
    assert!(leecher.core.duplicate_bytes > 0);
    assert_eq!(
        leecher.core.duplicate_bytes % u64::from(shoal_core::BLOCK_SIZE),
        0
    );
}

/// A leecher with no connection and two web seeds, the first serving `bad_first`
/// corrupt data; each web seed fetches what it is asked, a batch a round. Returns the
/// leecher and the web seeds' keys.
fn web_download(bad_first: bool) -> (Side, [PeerKey; 2]) {
    let now = Instant::now();
    let none = Bitfield::new(PIECES as usize);
    let mut leecher = Side::new(2, TestIo::new(false, false, true), &none, now);
    let gone = leecher.key;
    leecher
        .core
        .remove_peer(gone, "not needed", now, &mut leecher.io);
    let web = [leecher.core.add_web_seed(), leecher.core.add_web_seed()];
    let truth = content();
    for _round in 0..50 {
        for (i, &key) in web.iter().enumerate() {
            let blocks = leecher.core.web_seed_requests(key, &all_pieces(), 3);
            for block in blocks {
                let range = TestIo::range(block.piece, block.offset, block.length);
                let mut data = truth[range].to_vec();
                if bad_first && i == 0 {
                    data[0] ^= 1;
                }
                let core = &mut leecher.core;
                core.web_seed_block(key, block, Bytes::from(data), now, &mut leecher.io);
            }
        }
        for piece in std::mem::take(&mut leecher.io.to_check) {
            let good = leecher.io.piece_is_true(piece);
            leecher
                .core
                .piece_checked(piece, good, now, &mut leecher.io);
        }
        if leecher.core.is_complete() {
            break;
        }
    }
    (leecher, web)
}

#[test]
fn web_seeds_alone_complete_a_download() {
    let (mut leecher, web) = web_download(false);
    assert!(leecher.core.is_complete());
    assert_eq!(leecher.io.stored, leecher.io.truth);
    assert!(leecher.core.take_banned_web_seeds().is_empty());
    assert!(
        leecher
            .core
            .web_seed_requests(web[0], &all_pieces(), 3)
            .is_empty(),
        "nothing left"
    );
}

#[test]
fn a_web_seed_serving_bad_data_is_banned_and_the_other_finishes() {
    let (mut leecher, web) = web_download(true);
    assert!(leecher.core.is_complete());
    assert_eq!(leecher.io.stored, leecher.io.truth);
    assert!(!leecher.io.failed.is_empty());
    assert_eq!(leecher.core.take_banned_web_seeds(), [web[0]]);
    assert!(
        leecher.core.take_banned_web_seeds().is_empty(),
        "reported once"
    );
}

#[test]
fn a_failed_web_fetch_returns_its_blocks_to_the_pool() {
    let now = Instant::now();
    let none = Bitfield::new(PIECES as usize);
    let mut leecher = Side::new(2, TestIo::new(false, false, false), &none, now);
    let web = leecher.core.add_web_seed();
    let asked = leecher.core.web_seed_requests(web, &all_pieces(), 4);
    assert_eq!(asked.len(), 4);
    assert!(asked
        .windows(2)
        .all(|w| (w[0].piece, w[0].offset) < (w[1].piece, w[1].offset)));
    leecher.core.web_seed_failed(web, &asked);
    let again = leecher.core.web_seed_requests(web, &all_pieces(), 64);
    assert!(
        asked.iter().all(|b| again.contains(b)),
        "asked again after the failure"
    );
    leecher.core.web_seed_failed(web, &again);
    // A web seed missing a file is asked only for the pieces it can serve.
    let mut some = Bitfield::new(PIECES as usize);
    some.set(4);
    let only = leecher.core.web_seed_requests(web, &some, 64);
    assert!(
        !only.is_empty() && only.iter().all(|b| b.piece == 4),
        "{only:?}"
    );
    leecher.core.remove_web_seed(web);
    assert!(leecher
        .core
        .web_seed_requests(web, &all_pieces(), 4)
        .is_empty());
}

fn pieces(list: &[u32]) -> Bitfield {
    let mut bits = Bitfield::new(PIECES as usize);
    for &piece in list {
        bits.set(piece as usize);
    }
    bits
}

/// Steps two sides against each other, `steps` ticks of 100 ms from `first`, or until
/// either dropped the other.
fn exchange(a: &mut Side, b: &mut Side, start: Instant, first: u64, steps: u64) {
    for step in first..first + steps {
        let now = start + Duration::from_millis(100 * step);
        let (to_b, to_a) = (a.take_wire(), b.take_wire());
        b.deliver(to_b, now);
        a.deliver(to_a, now);
        a.core.tick(now, &mut a.io);
        b.core.tick(now, &mut b.io);
        if a.core.peers().is_empty() || b.core.peers().is_empty() {
            return;
        }
    }
}

#[test]
fn two_partial_seeds_part_at_once() {
    let start = Instant::now();
    let half = pieces(&[0, 1, 2]);
    let io = || TestIo::new(true, false, false);
    let mut a = Side::wanting(1, io(), &half, Some(&half), start);
    let mut b = Side::wanting(2, io(), &half, Some(&half), start);
    assert!(a.core.upload_only() && b.core.upload_only());
    exchange(&mut a, &mut b, start, 0, 50);
    // Each learns from the other's handshake that it wants nothing (BEP 21).
    assert_eq!(a.io.removed, [super::BOTH_DONE]);
    assert_eq!(b.io.removed, [super::BOTH_DONE]);

    // The same, but `b` wants the rest: it stays.
    let mut a = Side::wanting(1, io(), &half, Some(&half), start);
    let mut b = Side::wanting(2, io(), &half, None, start);
    assert!(!b.core.upload_only());
    exchange(&mut a, &mut b, start, 0, 50);
    assert!(a.io.removed.is_empty() && b.io.removed.is_empty());
}

#[test]
fn a_finished_partial_download_tells_its_peers() {
    let start = Instant::now();
    // `p` has half the pieces and wants them all; `l` wants two of them.
    let mut p = Side::new(
        1,
        TestIo::new(true, false, false),
        &pieces(&[0, 1, 2]),
        start,
    );
    let wanted = pieces(&[0, 1]);
    let none = Bitfield::new(PIECES as usize);
    let mut l = Side::wanting(
        2,
        TestIo::new(false, false, false),
        &none,
        Some(&wanted),
        start,
    );
    let link = |side: &Side| {
        side.core
            .peers()
            .get(&side.key)
            .map(|p| p.link().session.state().peer_upload_only)
    };
    let mut step = 0;
    while !l.core.is_complete() && step < 200 {
        // Until then, `l` wants pieces.
        assert_ne!(link(&p), Some(true));
        exchange(&mut p, &mut l, start, step, 1);
        step += 1;
    }
    assert!(l.core.is_complete());
    exchange(&mut p, &mut l, start, step, 3);
    // `l` said so on the live connection; neither leaves, as `p` still wants pieces.
    assert_eq!(link(&p), Some(true));
    assert!(p.io.removed.is_empty() && l.io.removed.is_empty());
}

/// `from` (host `from_id`) dials `to` (host `to_id`): the dialling end's connection and
/// the accepting end's, made from the dialler's handshake as the engine's acceptor does.
fn dial(
    (from, from_io, from_id): (&mut TorrentCore<TestPeer>, &mut TestIo, u8),
    (to, to_io, to_id): (&mut TorrentCore<TestPeer>, &mut TestIo, u8),
    now: Instant,
) -> (PeerKey, PeerKey) {
    let out = new_peer(from_id, from.announced(), false, now);
    let dialled = from.add_peer(|_| out, now, from_io);
    let sent: Vec<u8> = from
        .peers_mut()
        .get_mut(&dialled)
        .unwrap()
        .wire
        .drain(..)
        .flatten()
        .collect();
    let handshake = shoal_wire::parse_handshake(&sent).unwrap().unwrap();
    let config = session_config(to_id, to.announced(), false);
    let session = PeerSession::new_after_handshake(config, handshake, now).unwrap();
    let accepted = to.add_peer(
        |_| TestPeer {
            link: PeerLink::new(session, PIECES as usize, now),
            wire: VecDeque::new(),
        },
        now,
        to_io,
    );
    let rest = Bytes::copy_from_slice(&sent[shoal_wire::HANDSHAKE_LEN..]);
    to.on_data(accepted, [rest], now, to_io);
    (dialled, accepted)
}

#[test]
fn of_two_connections_between_two_peers_both_ends_close_the_same_one() {
    for (a_id, b_id) in [(1, 2), (2, 1)] {
        let now = Instant::now();
        let none = Bitfield::new(PIECES as usize);
        let (mut a, mut b) = (
            new_core(a_id, &none, None, now),
            new_core(b_id, &none, None, now),
        );
        let (mut a_io, mut b_io) = (
            TestIo::new(false, false, false),
            TestIo::new(false, false, false),
        );
        // They dial each other at once: x is a's, y is b's.
        let (ax, bx) = dial((&mut a, &mut a_io, a_id), (&mut b, &mut b_io, b_id), now);
        let (by, ay) = dial((&mut b, &mut b_io, b_id), (&mut a, &mut a_io, a_id), now);
        for _ in 0..5 {
            for (from_a, to_b) in [(ax, bx), (ay, by)] {
                let take = |core: &mut TorrentCore<TestPeer>, key| -> Vec<Bytes> {
                    core.peers_mut()
                        .get_mut(&key)
                        .map_or(Vec::new(), |p| p.wire.drain(..).collect())
                };
                let (to_b_bytes, to_a_bytes) = (take(&mut a, from_a), take(&mut b, to_b));
                if b.peers().get(&to_b).is_some() {
                    b.on_data(to_b, to_b_bytes, now, &mut b_io);
                }
                if a.peers().get(&from_a).is_some() {
                    a.on_data(from_a, to_a_bytes, now, &mut a_io);
                }
            }
        }
        // A connection one end closed is closed at the other (TCP's part).
        for (from_a, to_b) in [(ax, bx), (ay, by)] {
            match (
                a.peers().get(&from_a).is_some(),
                b.peers().get(&to_b).is_some(),
            ) {
                (false, true) => b.remove_peer(to_b, "closed by the peer", now, &mut b_io),
                (true, false) => a.remove_peer(from_a, "closed by the peer", now, &mut a_io),
                _ => {}
            }
        }
        assert_eq!(
            (a.peers().len(), b.peers().len()),
            (1, 1),
            "ids {a_id}, {b_id}"
        );
        let a_kept_x = a.peers().get(&ax).is_some();
        assert_eq!(
            a_kept_x,
            b.peers().get(&bx).is_some(),
            "the same connection stays"
        );
        assert_eq!(
            a_kept_x,
            a_id > b_id,
            "the greater peer id keeps the one it made"
        );
        let removed = [a_io.removed, b_io.removed].concat();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(
            removed.iter().any(|r| r.contains("same peer id")),
            "{removed:?}"
        );
    }
}

/// A seed whose shared uplink sends one block a step, and a leecher; after 3 steps the
/// leecher's last piece that nobody has been asked for yet becomes urgent
/// ([`TorrentCore::set_urgent`]), or only first in line if not `urgent`
/// ([`TorrentCore::set_priority`]). Returns the order the leecher verified its pieces
/// in, and the place in it of the chosen piece, counted from that moment.
fn urgent_download(urgent: bool) -> (Vec<u32>, usize) {
    let start = Instant::now();
    let mut seed_io = TestIo::new(true, false, false);
    seed_io.shared = Some(0);
    let mut seed = Side::new(1, seed_io, &all_pieces(), start);
    let none = Bitfield::new(PIECES as usize);
    let mut leecher = Side::new(2, TestIo::new(false, false, false), &none, start);
    let mut chosen = None;
    for step in 0..600 {
        let now = start + Duration::from_millis(100 * step);
        if step == 3 {
            let link = &leecher
                .core
                .peers()
                .get(&leecher.key)
                .expect("connected")
                .link;
            let asked: Vec<u32> = link.requested.iter().map(|b| b.piece).collect();
            assert!(asked.len() >= 4, "a queue at the seed: {asked:?}");
            let piece = (0..PIECES)
                .rev()
                .find(|p| !asked.contains(p) && !leecher.io.verified.contains(p))
                .expect("a piece not asked for");
            chosen = Some((piece, leecher.io.verified.len()));
            match urgent {
                true => leecher.core.set_urgent(&[piece], &[], now, &mut leecher.io),
                false => leecher.core.set_priority([piece]),
            }
        }
        let up = seed.take_wire();
        leecher.deliver(up, now);
        let down = leecher.take_wire();
        seed.io.shared = Some(0);
        seed.deliver(down, now);
        seed.core.serve_uplink(&mut seed.io);
        seed.core.tick(now, &mut seed.io);
        leecher.core.tick(now, &mut leecher.io);
        if leecher.core.is_complete() {
            break;
        }
    }
    assert!(leecher.core.is_complete());
    assert_eq!(leecher.io.stored, leecher.io.truth);
    let order = leecher.io.verified.clone();
    let (piece, at) = chosen.expect("chosen");
    let place = order.iter().position(|&p| p == piece).expect("verified") - at;
    (order, place)
}

/// An urgent piece (a player waits for it) does not wait behind the requests already
/// queued at the seed: they are cancelled and it is asked for at once, so it is the
/// next piece verified (the piece whose block was on the wire may finish first).
#[test]
fn an_urgent_piece_overtakes_the_queued_requests() {
    let (order, place) = urgent_download(true);
    assert!(place <= 1, "{order:?}, {place}");
    // Only first in line, it waits for the pieces queued before it.
    let (order, place) = urgent_download(false);
    assert!(place >= 2, "{order:?}, {place}");
}
