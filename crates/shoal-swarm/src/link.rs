//! One connected peer as the swarm logic sees it: its wire session and our bookkeeping
//! of it, and the decisions that touch only that peer.
//!
//! [`TorrentCore`](crate::TorrentCore) holds a [`PeerLink`] per connection next to the
//! driver's own I/O state (a socket writer, a simulated outbox), so the protocol
//! decisions — what to tell the picker when a bitfield or `have` arrives, when to
//! be interested, what to request, what a seed reveals, how the choker sees the peer —
//! are one piece of code that the simulator measures and the engine runs.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use shoal_core::{Bitfield, Block, InfoHash, BLOCK_SIZE};
use shoal_wire::{allowed_fast_set, PeerSession};

use crate::{
    queue_depth, Choker, ChokerPeer, PeerKey, PiecePicker, PieceProgress, RateMeter, RequestWindow,
    Reveal, Sources, Suggestions, SuperSeed, TickState, HELD_BACK,
};

/// A peer that has sent no block for this long while we had requests out is snubbed: its
/// requests are cancelled (and go to other peers) and it gets no regular upload slot.
pub const SNUB_AFTER: Duration = Duration::from_secs(30);

/// Allowed-fast pieces (BEP 6) offered to each peer with the fast extension.
pub const ALLOWED_FAST_SET: usize = 8;

/// A connected peer: the session and what the swarm logic keeps about it.
pub struct PeerLink {
    pub session: PeerSession,
    /// Requests outstanding with this peer (mirrors the session's, so the picker can be
    /// told when they die). Ordered, so that a simulated run replays byte for byte.
    pub requested: BTreeSet<Block>,
    pub downloaded: RateMeter,
    pub uploaded: RateMeter,
    /// When the peer last sent us a block, or when our requests to it were last cancelled,
    /// or last made with none outstanding: the snub clock runs from here.
    pub last_block: Instant,
    /// The handshake is done.
    pub connected: bool,
    /// The peer's pieces as last given to the picker.
    pub counted: Bitfield,
    /// Pieces the peer suggested (BEP 6).
    pub suggested: Suggestions,
    /// The piece we last served the peer a block of, and how much of it.
    pub served: PieceProgress,
    /// Until the peer's rate is first measured, the request queue grows by a block for
    /// every block that arrives (see [`request_more`](Self::request_more)): the extra depth.
    slow_start: Option<usize>,
    /// The span of transfer our requests to it cover.
    window: RequestWindow,
}

impl PeerLink {
    pub fn new(session: PeerSession, piece_count: usize, now: Instant) -> Self {
        PeerLink {
            session,
            requested: BTreeSet::new(),
            downloaded: RateMeter::default(),
            uploaded: RateMeter::default(),
            last_block: now,
            connected: false,
            counted: Bitfield::new(piece_count),
            suggested: Suggestions::default(),
            served: PieceProgress::default(),
            slow_start: Some(0),
            window: RequestWindow::new(now),
        }
    }

    /// Folds the last `elapsed` of transfer into the rates (about once a second).
    pub fn tick_meters(&mut self, elapsed: Duration) {
        self.downloaded.tick(elapsed);
        self.uploaded.tick(elapsed);
    }

    /// What the last rate tick says of the peer as a source.
    pub fn tick_state(&self) -> TickState {
        let state = self.session.state();
        if state.peer_choking {
            TickState::Choked
        } else if !state.am_interested || self.requested.is_empty() {
            TickState::Idle
        } else {
            TickState::Busy(self.downloaded.last_rate())
        }
    }

    /// Lets the request window learn from the last rate tick, when `sources` were sending
    /// to us.
    pub fn tick_window(&mut self, sources: Sources, now: Instant) {
        let tick = self.tick_state();
        let crowded = sources.crowded(self.counted.all(), self.held_back());
        self.window.tick(tick, crowded, now);
    }

    /// The connection's shortest round trip as the driver measures it: the request queue
    /// covers at least twice that (see [`RequestWindow`]).
    pub fn set_round_trip(&mut self, rtt: Option<Duration>) {
        self.window.set_round_trip(rtt);
    }

    /// Over the last rate tick the peer sent at least [`HELD_BACK`] of what our queue let
    /// through: our queue, not its upload, set the rate.
    fn held_back(&self) -> bool {
        let queue = self.requested.len() as f64 * f64::from(BLOCK_SIZE);
        !self.requested.is_empty()
            && self.downloaded.last_rate() >= HELD_BACK * queue / self.window.get().as_secs_f64()
    }

    /// No block for [`SNUB_AFTER`] although we have requests out.
    pub fn is_snubbed(&self, now: Instant) -> bool {
        !self.requested.is_empty() && now.duration_since(self.last_block) > SNUB_AFTER
    }

    /// BEP 6: a few pieces a new peer (at `ip`) may fetch from us even while choked, so it
    /// has something to trade with sooner. A seed grants none: its upload is the swarm's
    /// scarcest resource, and choked peers would spend it on duplicates (a super-seed
    /// hides its pieces anyway).
    pub fn grant_allowed_fast(&mut self, info_hash: &InfoHash, ip: IpAddr, have: &Bitfield) {
        if have.all() {
            return;
        }
        let pieces = u32::try_from(have.len()).unwrap_or(u32::MAX);
        for piece in allowed_fast_set(info_hash, ip, pieces, ALLOWED_FAST_SET) {
            if have.get(piece as usize) {
                self.session.allow_fast(piece);
            }
        }
    }

    /// The peer's bitfield (or have-all / have-none) arrived: tell the picker, replacing
    /// whatever it was told before, and update our interest.
    pub fn bitfield_received(&mut self, key: PeerKey, picker: &mut PiecePicker) {
        let bits = self.session.state().peer_pieces.clone();
        picker.peer_disconnected(key, &self.counted);
        if bits.all() {
            picker.peer_have_all(key);
        } else {
            picker.peer_bitfield(key, &bits);
        }
        self.counted = bits;
        self.update_interest(picker);
    }

    /// The peer announced `piece`.
    pub fn have_received(&mut self, key: PeerKey, piece: u32, picker: &mut PiecePicker) {
        if self.counted.set(piece as usize) {
            picker.peer_have(key, piece);
        }
        self.update_interest(picker);
    }

    /// A block we asked for arrived (the picker is told separately): it is no longer
    /// outstanding, the peer is not snubbing us, and it counts toward its rate.
    pub fn block_arrived(&mut self, block: Block, now: Instant) {
        self.requested.remove(&block);
        self.last_block = now;
        self.downloaded.add(u64::from(block.length));
        if let Some(extra) = &mut self.slow_start {
            *extra += 1;
        }
    }

    /// Requests the peer dropped (it choked us) or rejected: back to the picker.
    pub fn requests_dropped(
        &mut self,
        key: PeerKey,
        blocks: impl IntoIterator<Item = Block>,
        picker: &mut PiecePicker,
    ) {
        for block in blocks {
            if self.requested.remove(&block) {
                picker.request_cancelled(key, block);
            }
        }
    }

    /// Cancels every outstanding request if the peer is snubbed, so other peers get them.
    pub fn cancel_if_snubbed(&mut self, key: PeerKey, now: Instant, picker: &mut PiecePicker) {
        if !self.is_snubbed(now) {
            return;
        }
        for block in std::mem::take(&mut self.requested) {
            self.session.cancel(block);
            picker.request_cancelled(key, block);
        }
        self.last_block = now;
    }

    /// Cancels the requests for pieces other than `urgent` when the peer has a piece of
    /// `urgent` we lack, so that it serves that one next (see
    /// [`TorrentCore::set_urgent`](crate::TorrentCore::set_urgent)). Returns whether
    /// anything was cancelled.
    pub fn make_room_for(
        &mut self,
        urgent: &[u32],
        key: PeerKey,
        picker: &mut PiecePicker,
    ) -> bool {
        let has =
            |piece: u32| self.counted.get(piece as usize) && !picker.have().get(piece as usize);
        if !urgent.iter().any(|&piece| has(piece)) {
            return false;
        }
        let cancelled: Vec<Block> = self
            .requested
            .iter()
            .filter(|block| !urgent.contains(&block.piece))
            .copied()
            .collect();
        for &block in &cancelled {
            self.requested.remove(&block);
            self.session.cancel(block);
            picker.request_cancelled(key, block);
        }
        !cancelled.is_empty()
    }

    /// Interested exactly while the peer has a piece we lack.
    pub fn update_interest(&mut self, picker: &PiecePicker) {
        let interesting = picker.is_interesting(&self.counted);
        if interesting != self.session.state().am_interested {
            self.session.interested(interesting);
        }
    }

    /// An initial seed reveals (or suggests) pieces to a peer it uploads to (see
    /// [`SuperSeed`]): only the unchoked can fetch them, so revealing to others would
    /// only make duplicates later.
    pub fn reveal(&mut self, key: PeerKey, super_seed: &mut SuperSeed, rng: &mut impl Rng) {
        if self.session.state().am_choking {
            return;
        }
        let shown = self.session.announced();
        let rate = self.uploaded.rate();
        for piece in super_seed.reveal(key, &self.counted, shown, rate, rng) {
            match super_seed.reveals_by() {
                Reveal::Have => self.session.have(piece),
                Reveal::Suggest => self.session.suggest(piece),
            }
        }
    }

    /// Unchokes or chokes the peer (a choker decision), revealing pieces to it or taking
    /// back what was revealed, if we are an initial seed.
    pub fn set_choking(
        &mut self,
        key: PeerKey,
        choke: bool,
        super_seed: Option<&mut SuperSeed>,
        rng: &mut impl Rng,
    ) {
        if choke {
            self.session.choke();
            if let Some(super_seed) = super_seed {
                super_seed.peer_choked(key);
            }
        } else {
            self.session.unchoke();
            if let Some(super_seed) = super_seed {
                self.reveal(key, super_seed, rng);
            }
        }
    }

    /// Tops up our requests to the peer's queue depth (its measured rate, at least
    /// `initial_rate`, over its [`RequestWindow`]; until the rate is first measured, a block
    /// more for every block received, as TCP's slow start): allowed-fast pieces while
    /// it chokes us, else the priority pieces (`--prioritize-piece`), the pieces it
    /// suggested, then the picker's choice.
    /// `scratch` is a buffer reused across calls.
    pub fn request_more(
        &mut self,
        key: PeerKey,
        picker: &mut PiecePicker,
        initial_rate: f64,
        now: Instant,
        rng: &mut impl Rng,
        scratch: &mut Vec<Block>,
    ) {
        let state = self.session.state();
        if !state.am_interested || picker.is_complete() {
            return;
        }
        if state.peer_choking && state.allowed_fast.is_empty() {
            return;
        }
        let reqq = state.peer_extensions.as_ref().and_then(|e| e.reqq);
        // Rates are measured once a second: until then a new connection assumes a modest
        // rate (which stays the floor after) plus the slow start's extra blocks.
        if self.downloaded.rate() > 0.0 {
            self.slow_start = None;
        }
        let window = self.window.get();
        let slow_start =
            self.slow_start.unwrap_or(0) as f64 * f64::from(BLOCK_SIZE) / window.as_secs_f64();
        let depth = queue_depth(
            self.downloaded.rate().max(initial_rate) + slow_start,
            window,
            reqq,
        );
        if self.requested.len() >= depth {
            return;
        }
        scratch.clear();
        let want = depth - self.requested.len();
        if state.peer_choking {
            let allowed: Vec<u32> = state.allowed_fast.iter().copied().collect();
            picker.pick_from(key, &self.counted, &allowed, want, scratch);
        } else {
            let first = picker.pick_priority(key, &self.counted, want, scratch);
            let needed = self.suggested.needed(picker.have());
            let suggested = picker.pick_from(key, &self.counted, needed, want - first, scratch);
            picker.pick(key, &self.counted, want - first - suggested, rng, scratch);
        }
        // A peer owes us nothing while we ask it for nothing: a first request after a
        // quiet spell starts the snub clock afresh.
        if self.requested.is_empty() && !scratch.is_empty() {
            self.last_block = now;
        }
        for block in scratch.drain(..) {
            if self.session.request(block) {
                self.requested.insert(block);
            } else {
                picker.request_cancelled(key, block);
            }
        }
    }

    /// How the choker sees the peer, once connected. A super-seed's peers cannot be
    /// interested before a reveal, so they count as interested while they lack anything.
    pub fn choker_view(&self, key: PeerKey, now: Instant, super_seeding: bool) -> ChokerPeer {
        ChokerPeer {
            key,
            interested: self.session.state().peer_interested
                || (super_seeding && !self.counted.all()),
            download_rate: self.downloaded.rate(),
            upload_rate: self.uploaded.rate(),
            is_seed: self.counted.all(),
            snubbed: self.is_snubbed(now),
            unchoked: !self.session.state().am_choking,
        }
    }
}

/// One choker round over every connected link: unchokes the peers the choker picks,
/// chokes the rest (a seed revealing to, or taking back from, each as it goes), and
/// returns the peers whose choke state changed, whose sessions have messages to flush.
/// `super_seed` is the initial seed's steering, if we are one.
pub fn choke_round<'a>(
    choker: &mut Choker,
    links: impl Iterator<Item = (PeerKey, &'a mut PeerLink)>,
    seeding: bool,
    mut super_seed: Option<&mut SuperSeed>,
    now: Instant,
    rng: &mut impl Rng,
) -> Vec<PeerKey> {
    let super_seeding = super_seed
        .as_ref()
        .is_some_and(|s| s.reveals_by() == Reveal::Have);
    let mut links: Vec<(PeerKey, &mut PeerLink)> =
        links.filter(|(_, link)| link.connected).collect();
    let candidates: Vec<ChokerPeer> = links
        .iter()
        .map(|(key, link)| link.choker_view(*key, now, super_seeding))
        .collect();
    let unchoke: HashSet<PeerKey> = choker
        .run(now, &candidates, seeding, rng)
        .into_iter()
        .collect();
    let mut changed = Vec::new();
    for (key, link) in &mut links {
        let choke = !unchoke.contains(key);
        if choke != link.session.state().am_choking {
            link.set_choking(*key, choke, super_seed.as_deref_mut(), rng);
            changed.push(*key);
        }
    }
    changed
}
