//! [`TorrentCore`]: one torrent's swarm side, from a session's events to the choker
//! round, shared by the engine's torrent actor and the simulator's hosts.
//!
//! The core owns the connections' [`PeerLink`]s (next to each driver's own per-connection
//! state) and the torrent's picker, choker, smart ban and initial-seed steering, and
//! reacts to each [`SessionEvent`]: what to tell the picker, when to unchoke, what to
//! request and serve, what a verified or failed piece means for every peer, whom to ban.
//! What touches the outside world goes through [`Io`]: sockets (the engine's writer
//! tasks, the simulator's outboxes), storage (files and a disk thread, an in-memory
//! store), the address book and the user interface. So the simulator measures exactly
//! the decisions the engine runs.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use shoal_core::{Bitfield, Block, InfoHash, PeerId, BLOCK_SIZE};
use shoal_wire::{HashRange, SessionEvent};

mod web;

use self::web::WebSeeds;
use crate::{
    choke_round, BlockData, ChokeSchedule, Choker, ChokerConfig, PeerKey, PeerLink, PeerMap,
    PiecePicker, RateMeter, Received, Reveal, SharedUplink, SmartBan, Sources, SuperSeed,
    TickState,
};

/// Why the second of two connections to one peer is closed: it is not the peer's fault
/// (both ends dialled at once, or we knew it under two addresses), so the engine must
/// not count it as a failed connection.
pub const DUPLICATE: &str = "already connected to this peer (same peer id)";

/// Why a connection is dropped when neither side wants anything from the other.
pub const BOTH_DONE: &str =
    "both done: we have what we want and the peer wants nothing (a seed or upload-only)";

/// A driver's connection: its [`PeerLink`] and whatever the driver keeps beside it.
pub trait Connection {
    fn link(&self) -> &PeerLink;
    fn link_mut(&mut self) -> &mut PeerLink;
    /// The peer's address, for its allowed-fast set (BEP 6).
    fn ip(&self) -> IpAddr;
}

/// What the core asks of its driver. Calls come while the core is in the middle of
/// reacting, so a method must not reenter the core; it reports back by its return value.
pub trait Io<P: Connection> {
    /// Hands what `peer`'s session has queued to its socket.
    fn flush(&mut self, key: PeerKey, peer: &mut P);
    /// Whether `peer`'s socket takes more block data now (its backlog is short).
    fn upload_room(&self, peer: &P) -> bool;
    /// How the uplink is shared among the connections (see [`Uplink`]).
    fn uplink(&self) -> Uplink {
        Uplink::PerConnection
    }
    /// Sends `block`, one of our verified pieces' blocks that `peer` asked for, through
    /// its session to its socket. `false` if it could not be read (the driver has then
    /// rejected the request) or the session is closed.
    fn send_block(&mut self, key: PeerKey, peer: &mut P, block: Block) -> bool;
    /// Stores a block that arrived first. When it completes its piece: `Some(verdict)` if
    /// the piece was checked at once, `None` if the driver checks it later and then
    /// calls [`TorrentCore::piece_checked`].
    fn store_block(&mut self, block: Block, data: Bytes, piece_complete: bool) -> Option<bool>;
    /// A block of a stored piece, as stored (for smart ban); empty if it cannot be read.
    fn read_block(&self, piece: u32, offset: u32, length: u32) -> Bytes;
    /// The handshake with `peer` is done.
    fn connected(&mut self, _peer: &P, _peer_id: &PeerId) {}
    /// An extension message (BEP 10) the core does not handle. `Err(reason)` drops the
    /// connection.
    fn extended(
        &mut self,
        _peer: &mut P,
        _id: u8,
        _payload: Bytes,
        _now: Instant,
    ) -> Result<(), String> {
        Ok(())
    }
    /// The answer to a BEP 52 hash request: the hashes and their proof, or `None` to
    /// reject it (a v1 torrent, or hashes we do not hold). Block hashes come from a
    /// piece's data, so only from pieces we `have`.
    fn hashes(&mut self, _range: &HashRange, _have: &Bitfield) -> Option<Vec<[u8; 32]>> {
        None
    }
    /// A piece passed its hash check; `have` pieces are verified now.
    fn piece_verified(&mut self, _piece: u32, _have: usize) {}
    /// A piece failed its hash check (its blocks are read back already).
    fn piece_failed(&mut self, _piece: u32) {}
    /// `peer` is about to be dropped for sending data that failed the hash check.
    fn banning(&mut self, peer: &P);
    /// `peer`'s connection is gone from the core; close it and forget it.
    fn removed(&mut self, peer: P, reason: &str, now: Instant);
}

/// How a driver's uplink is shared among its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uplink {
    /// Each connection is served while its own socket takes more, and the sockets (or a
    /// rate limit in front of them) decide what goes on the wire first. For a driver that
    /// does not know its uplink's capacity.
    PerConnection,
    /// The core chooses, a block at a time, which connection is served next
    /// ([`SharedUplink`]); `room` says whether the uplink takes another block now. The
    /// driver calls [`TorrentCore::serve_uplink`] whenever room frees up.
    Shared { room: bool },
}

/// What a torrent starts from.
pub struct CoreConfig<'a> {
    pub info_hash: InfoHash,
    pub piece_count: u32,
    pub piece_length: u32,
    pub total_length: u64,
    /// Verified pieces.
    pub have: &'a Bitfield,
    /// The pieces to download (those of the files the user selected); `None` for all.
    pub wanted: Option<&'a Bitfield>,
    /// Super-seed (BEP 16) if we start with every piece; otherwise an initial seed
    /// suggests (BEP 6) what it has sent least.
    pub super_seed: bool,
    /// Bytes per second assumed for a peer whose rate is not measured yet, for the depth
    /// of its request queue ([`crate::INITIAL_RATE_GUESS`] in the engine).
    pub initial_rate: f64,
    /// Keys start here.
    pub first_key: u64,
    pub rng: StdRng,
    pub now: Instant,
}

/// One torrent's swarm side. See the module documentation.
pub struct TorrentCore<P> {
    info_hash: InfoHash,
    picker: PiecePicker,
    choker: Choker,
    choke_schedule: ChokeSchedule,
    smart_ban: SmartBan,
    /// An initial seed's steering: super-seeding (`have`) if configured, otherwise
    /// `suggest`s.
    super_seed: Option<SuperSeed>,
    /// Boxed: the map keeps a slot per key across gaps, and a slot is then a pointer.
    peers: PeerMap<Box<P>>,
    /// HTTP sources of every piece (BEP 19 web seeds) that the driver fetches from; see
    /// [`add_web_seed`](Self::add_web_seed).
    web_seeds: WebSeeds,
    uplink: SharedUplink,
    next_key: u64,
    rng: StdRng,
    initial_rate: f64,
    scratch: Vec<Block>,
    pub downloaded: RateMeter,
    pub uploaded: RateMeter,
    /// Payload bytes received for blocks already had, or no longer requested (both mostly
    /// copies that crossed our `cancel`); with `failed_bytes`, what libtorrent calls
    /// redundant and failed bytes, shown as wasted.
    pub duplicate_bytes: u64,
    /// Bytes of pieces that failed their hash check.
    pub failed_bytes: u64,
    last_stats: Instant,
}

impl<P: Connection> TorrentCore<P> {
    pub fn new(config: CoreConfig<'_>) -> Self {
        let picker = PiecePicker::with_wanted(
            config.piece_count,
            config.piece_length,
            config.total_length,
            config.have,
            config.wanted,
        );
        let super_seed = picker.is_seed().then(|| {
            let by = if config.super_seed {
                Reveal::Have
            } else {
                Reveal::Suggest
            };
            SuperSeed::new(config.piece_count, config.piece_length, by.per_peer(), by)
        });
        TorrentCore {
            info_hash: config.info_hash,
            picker,
            choker: Choker::new(ChokerConfig::default()),
            choke_schedule: ChokeSchedule::default(),
            smart_ban: SmartBan::default(),
            super_seed,
            peers: PeerMap::default(),
            web_seeds: WebSeeds::default(),
            uplink: SharedUplink::default(),
            next_key: config.first_key,
            rng: config.rng,
            initial_rate: config.initial_rate,
            scratch: Vec::new(),
            downloaded: RateMeter::default(),
            uploaded: RateMeter::default(),
            duplicate_bytes: 0,
            failed_bytes: 0,
            last_stats: config.now,
        }
    }

    // ---- views -------------------------------------------------------------------------

    pub fn picker(&self) -> &PiecePicker {
        &self.picker
    }

    pub fn have(&self) -> &Bitfield {
        self.picker.have()
    }

    pub fn is_complete(&self) -> bool {
        self.picker.is_complete()
    }

    pub fn peers(&self) -> &PeerMap<Box<P>> {
        &self.peers
    }

    pub fn peers_mut(&mut self) -> &mut PeerMap<Box<P>> {
        &mut self.peers
    }

    /// Fetch pieces in index order instead of rarest first (see the picker).
    pub fn set_sequential(&mut self, sequential: bool) {
        self.picker.set_sequential(sequential);
    }

    /// At most `slots` peers unchoked at once (see [`ChokerConfig::with_slots`]).
    pub fn set_upload_slots(&mut self, slots: usize) {
        self.choker = Choker::new(ChokerConfig::with_slots(slots));
        self.choke_schedule.changed();
    }

    /// Fetch these pieces before any other, in this order (see the picker).
    pub fn set_priority(&mut self, pieces: impl IntoIterator<Item = u32>) {
        self.picker.set_priority(pieces);
    }

    /// Like [`set_priority`](Self::set_priority) for pieces readers wait for (a player
    /// streaming a file that has just started or seeked): `now` (what they are blocked
    /// on), then `soon` (their read-ahead). `now` cannot wait for the requests already
    /// queued at peers, which a peer serves first (a new connection's slow start alone
    /// queues seconds of them): at each peer that has a piece of `now` we lack, the
    /// requests for other pieces are cancelled and `now` asked for at once. What was
    /// cancelled is asked for again later; blocks already on their way are lost
    /// (counted as wasted), a round trip's worth at most.
    pub fn set_urgent(&mut self, now: &[u32], soon: &[u32], at: Instant, io: &mut impl Io<P>) {
        self.picker.set_priority(now.iter().chain(soon).copied());
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            let peer = self.peers.get_mut(&key).expect("listed");
            if peer.link_mut().make_room_for(now, key, &mut self.picker) {
                self.request_more(key, at);
                self.flush(key, io);
            }
        }
    }

    /// BEP 21: we want nothing more (every wanted piece is here), and say so in the
    /// handshake. Not while super-seeding: a super-seed announces no pieces, and peers
    /// would take an upload-only peer with nothing as useless.
    pub fn upload_only(&self) -> bool {
        self.picker.is_complete()
            && !matches!(&self.super_seed, Some(s) if s.reveals_by() == Reveal::Have)
    }

    /// The pieces a new connection's bitfield announces: none for a super-seed, which
    /// reveals them one by one.
    pub fn announced(&self) -> Bitfield {
        match &self.super_seed {
            Some(s) if s.reveals_by() == Reveal::Have => Bitfield::new(self.picker.have().len()),
            _ => self.picker.have().clone(),
        }
    }

    // ---- connections -------------------------------------------------------------------

    /// Adds a connection made by `make` from its key, and services it.
    pub fn add_peer(
        &mut self,
        make: impl FnOnce(PeerKey) -> P,
        now: Instant,
        io: &mut impl Io<P>,
    ) -> PeerKey {
        let key = PeerKey(self.next_key);
        self.next_key += 1;
        self.peers.insert(key, Box::new(make(key)));
        self.service(key, now, io);
        key
    }

    /// Drops a connection, telling the picker and the seed's steering that its pieces and
    /// requests are gone.
    pub fn remove_peer(&mut self, key: PeerKey, reason: &str, now: Instant, io: &mut impl Io<P>) {
        let Some(peer) = self.peers.remove(&key) else {
            return;
        };
        self.picker.peer_disconnected(key, &peer.link().counted);
        if let Some(super_seed) = &mut self.super_seed {
            super_seed.peer_disconnected(key);
        }
        self.choke_schedule.changed();
        io.removed(*peer, reason, now);
    }

    fn ban(&mut self, key: PeerKey, now: Instant, io: &mut impl Io<P>) {
        if self.web_seeds.ban(key) {
            self.picker.peer_disconnected(key, &Bitfield::new(0));
        } else if let Some(peer) = self.peers.get(&key) {
            io.banning(peer);
            self.remove_peer(key, "banned: sent data that failed the hash check", now, io);
        }
    }

    /// Bytes arrived from `key`'s peer, in one or more buffers (one socket read); the
    /// events they carry are handled once all are in.
    pub fn on_data(
        &mut self,
        key: PeerKey,
        bytes: impl IntoIterator<Item = Bytes>,
        now: Instant,
        io: &mut impl Io<P>,
    ) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let session = &mut peer.link_mut().session;
        let unrequested = session.state().unrequested;
        let mut result = Ok(());
        for bytes in bytes {
            result = session.handle_input_bytes(now, bytes);
            if result.is_err() {
                break;
            }
        }
        self.duplicate_bytes += session.state().unrequested - unrequested;
        if let Err(e) = result {
            self.remove_peer(key, &e.to_string(), now, io);
            return;
        }
        self.service(key, now, io);
    }

    /// Processes a peer's events, then tops up its requests, serves its uploads, and
    /// flushes what the session wants to send.
    pub fn service(&mut self, key: PeerKey, now: Instant, io: &mut impl Io<P>) {
        loop {
            let Some(peer) = self.peers.get_mut(&key) else {
                return;
            };
            let Some(event) = peer.link_mut().session.poll_event() else {
                break;
            };
            self.on_event(key, event, now, io);
        }
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let session = &peer.link().session;
        if session.is_closed() {
            let reason = session
                .close_reason()
                .map_or("closed".to_owned(), |e| e.to_string());
            self.remove_peer(key, &reason, now, io);
            return;
        }
        self.request_more(key, now);
        match io.uplink() {
            Uplink::PerConnection => self.serve_uploads(key, io),
            Uplink::Shared { .. } => self.serve_uplink(io),
        }
        self.flush(key, io);
    }

    fn flush(&mut self, key: PeerKey, io: &mut impl Io<P>) {
        if let Some(peer) = self.peers.get_mut(&key) {
            io.flush(key, peer);
        }
    }

    fn on_event(&mut self, key: PeerKey, event: SessionEvent, now: Instant, io: &mut impl Io<P>) {
        if let SessionEvent::Connected { peer_id, .. } = &event {
            if let Some(close) = self.duplicate_to_close(key, peer_id) {
                self.remove_peer(close, DUPLICATE, now, io);
                if close == key {
                    return;
                }
            }
        }
        let peer = self.peers.get_mut(&key).expect("caller checked");
        let link = peer.link_mut();
        // What may make the connection useless both ways.
        let pieces_changed = matches!(
            event,
            SessionEvent::PeerBitfield
                | SessionEvent::Have(_)
                | SessionEvent::ExtensionHandshake(_)
                | SessionEvent::UploadOnly
        );
        match event {
            SessionEvent::Connected { peer_id, fast, .. } => {
                link.connected = true;
                if fast {
                    let ip = peer.ip();
                    peer.link_mut()
                        .grant_allowed_fast(&self.info_hash, ip, self.picker.have());
                }
                io.connected(peer, &peer_id);
            }
            SessionEvent::PeerBitfield => {
                link.bitfield_received(key, &mut self.picker);
                if self.super_seed.is_some() {
                    // A super-seed's peers see nothing to be interested in until pieces
                    // are revealed, and pieces are revealed to unchoked peers only.
                    self.offer_free_slot(key);
                    self.reveal(key);
                }
            }
            SessionEvent::Have(piece) => {
                link.have_received(key, piece, &mut self.picker);
                if let Some(super_seed) = &mut self.super_seed {
                    if super_seed.peer_have(key, piece) {
                        self.reveal(key);
                    }
                }
            }
            SessionEvent::Choked { dropped } => {
                link.requests_dropped(key, dropped, &mut self.picker);
            }
            SessionEvent::Rejected(block) => {
                link.requests_dropped(key, [block], &mut self.picker);
            }
            SessionEvent::Interested => {
                self.offer_free_slot(key);
                self.choke_schedule.changed();
            }
            SessionEvent::NotInterested => self.choke_schedule.changed(),
            SessionEvent::BlockReceived { block, data } => self.on_block(key, block, data, now, io),
            SessionEvent::AllowedFast(_) => self.request_more(key, now),
            SessionEvent::Suggest(piece) => {
                // Fetched first when still wanted (as libtorrent does): a seed suggests
                // what it has in its cache, or what it wants spread (BEP 16).
                link.suggested.add(piece, self.picker.have());
            }
            SessionEvent::HashRequest(range) => {
                link.session
                    .answer_hashes(range, io.hashes(&range, self.picker.have()));
            }
            SessionEvent::Extended { id, payload } => {
                if let Err(reason) = io.extended(peer, id, payload, now) {
                    self.remove_peer(key, &reason, now, io);
                }
            }
            SessionEvent::Closed(_)
            | SessionEvent::UploadOnly
            | SessionEvent::Unchoked
            | SessionEvent::DhtPort(_)
            | SessionEvent::ExtensionHandshake(_) => {}
        }
        if pieces_changed {
            self.drop_if_both_done(key, now, io);
        }
    }

    /// Drops `key`'s connection if neither side can give the other anything: we have
    /// every piece we want and the peer has every piece, or says it wants nothing more
    /// (BEP 21: a partial seed). Such connections only hold slots that other peers could
    /// use (libtorrent and Transmission close them too).
    fn drop_if_both_done(&mut self, key: PeerKey, now: Instant, io: &mut impl Io<P>) {
        let peer_done = self.peers.get(&key).is_some_and(|p| {
            let link = p.link();
            link.connected && (link.counted.all() || link.session.state().peer_upload_only)
        });
        if peer_done && self.picker.is_complete() {
            self.remove_peer(key, BOTH_DONE, now, io);
        }
    }

    /// A free upload slot is given at once, as libtorrent does, rather than at the next
    /// choker round.
    fn offer_free_slot(&mut self, key: PeerKey) {
        let slots = self.choker.config().regular_slots + self.choker.config().optimistic_slots;
        let unchoked = self
            .peers
            .values()
            .filter(|p| !p.link().session.state().am_choking)
            .count();
        let link = self.peers.get_mut(&key).expect("caller checked").link_mut();
        if unchoked < slots && link.session.state().am_choking {
            link.session.unchoke();
        }
    }

    /// When `key`'s handshake names a peer we are already connected to (it dialled us as
    /// we dialled it, or we know it under two addresses), the one of the two connections
    /// to close. Both ends must close the same one, so the end with the greater peer id
    /// keeps the connection it made (libtorrent's rule); of two made the same way, the
    /// newer goes.
    fn duplicate_to_close(&self, key: PeerKey, peer_id: &PeerId) -> Option<PeerKey> {
        let new = &self.peers.get(&key)?.link().session;
        let (&old_key, old) = self.peers.iter().find(|(&other, peer)| {
            let link = peer.link();
            other != key && link.connected && link.session.state().peer_id.as_ref() == Some(peer_id)
        })?;
        let old = &old.link().session;
        if old.is_outgoing() == new.is_outgoing() {
            return Some(key);
        }
        let ours_greater = new.our_peer_id().0 > peer_id.0;
        Some(if new.is_outgoing() == ours_greater {
            old_key
        } else {
            key
        })
    }

    fn reveal(&mut self, key: PeerKey) {
        if let (Some(super_seed), Some(peer)) = (&mut self.super_seed, self.peers.get_mut(&key)) {
            peer.link_mut().reveal(key, super_seed, &mut self.rng);
        }
    }

    fn on_block(
        &mut self,
        key: PeerKey,
        block: Block,
        data: Bytes,
        now: Instant,
        io: &mut impl Io<P>,
    ) {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        peer.link_mut().block_arrived(block, now);
        self.accept_block(key, block, data, now, io);
    }

    /// A block arrived from `key` (a connection or a web seed): stored if it is new,
    /// cancelled at the other peers it was asked of, its piece checked when complete.
    fn accept_block(
        &mut self,
        key: PeerKey,
        block: Block,
        data: Bytes,
        now: Instant,
        io: &mut impl Io<P>,
    ) {
        self.downloaded.add(u64::from(block.length));
        match self.picker.block_received(key, block) {
            Received::New {
                piece_complete,
                cancel,
            } => {
                for other in cancel {
                    if let Some(p) = self.peers.get_mut(&other) {
                        let link = p.link_mut();
                        if link.requested.remove(&block) {
                            link.session.cancel(block);
                        }
                    }
                }
                if let Some(good) = io.store_block(block, data, piece_complete) {
                    self.piece_checked(block.piece, good, now, io);
                }
            }
            Received::Duplicate | Received::Unexpected => {
                self.duplicate_bytes += u64::from(block.length);
            }
        }
    }

    /// Only the first `blocks` blocks of `piece` are fetched: the rest is padding (see
    /// [`PiecePicker::skip_padding`]). Before the first peer connects.
    pub fn skip_padding(&mut self, piece: u32, blocks: u32) {
        self.picker.skip_padding(piece, blocks);
    }

    /// Acts on a complete piece's hash check: a good piece is announced to every peer (and
    /// clears or convicts the peers smart ban watched for it); a bad one is fetched again,
    /// and its senders are banned once smart ban can tell who lied.
    pub fn piece_checked(&mut self, piece: u32, good: bool, now: Instant, io: &mut impl Io<P>) {
        if good {
            if self.smart_ban.is_watched(piece) {
                let blocks = self.read_blocks(
                    piece,
                    (0..self.picker.blocks_in_piece(piece)).map(|i| i * BLOCK_SIZE),
                    io,
                );
                let liars = self.smart_ban.piece_passed(
                    piece,
                    blocks.iter().map(|(offset, data)| (*offset, &data[..])),
                );
                for liar in liars {
                    self.ban(liar, now, io);
                }
            }
            self.picker.piece_verified(piece);
            io.piece_verified(piece, self.picker.have().count_ones());
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for &key in &keys {
                let peer = self.peers.get_mut(&key).expect("listed");
                let link = peer.link_mut();
                link.session.have(piece);
                link.update_interest(&self.picker);
                io.flush(key, peer);
            }
            if self.picker.is_complete() {
                for key in keys {
                    if self.upload_only() {
                        let peer = self.peers.get_mut(&key).expect("listed");
                        peer.link_mut().session.send_upload_only(true);
                        io.flush(key, peer);
                    }
                    self.drop_if_both_done(key, now, io);
                }
            }
        } else {
            // The bad data is still stored: read it back so smart ban can compare it with
            // the good copy later.
            let senders = self.picker.block_senders(piece);
            let blocks = self.read_blocks(piece, senders.iter().map(|(offset, _)| *offset), io);
            let records = senders
                .iter()
                .zip(&blocks)
                .map(|((_, peer), (offset, data))| BlockData {
                    offset: *offset,
                    peer: *peer,
                    data,
                });
            let picker = &self.picker;
            let liars = self
                .smart_ban
                .piece_failed(piece, records, |peer| picker.on_parole(peer));
            self.picker.piece_failed(piece);
            self.failed_bytes += u64::from(self.picker.piece_size(piece));
            io.piece_failed(piece);
            for liar in liars {
                self.ban(liar, now, io);
            }
        }
    }

    /// Blocks of `piece` at the given offsets as stored (shorter at the piece's end).
    fn read_blocks(
        &self,
        piece: u32,
        offsets: impl Iterator<Item = u32>,
        io: &impl Io<P>,
    ) -> Vec<(u32, Bytes)> {
        let size = self.picker.piece_size(piece);
        offsets
            .map(|offset| {
                let length = BLOCK_SIZE.min(size - offset);
                (offset, io.read_block(piece, offset, length))
            })
            .collect()
    }

    fn request_more(&mut self, key: PeerKey, now: Instant) {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        peer.link_mut().request_more(
            key,
            &mut self.picker,
            self.initial_rate,
            now,
            &mut self.rng,
            &mut self.scratch,
        );
    }

    /// Serves `key`'s queued requests while its socket has room: blocks of pieces we
    /// have, and a reject for any other. For [`Uplink::PerConnection`].
    pub fn serve_uploads(&mut self, key: PeerKey, io: &mut impl Io<P>) {
        loop {
            let peer = self.peers.get_mut(&key).expect("caller checked");
            if !io.upload_room(peer) {
                return;
            }
            let Some(block) = peer.link_mut().session.next_upload() else {
                return;
            };
            self.serve(key, block, io);
        }
    }

    /// Serves the uplink while it has room ([`Uplink::Shared`]), a block at a time, the
    /// next one chosen by [`SharedUplink`] among every connection's queued requests.
    pub fn serve_uplink(&mut self, io: &mut impl Io<P>) {
        while io.uplink() == (Uplink::Shared { room: true }) {
            let with_room = |peer: &P| io.upload_room(peer);
            let link_of = |key| {
                self.peers
                    .get(&key)
                    .filter(|peer| with_room(peer))
                    .map(|peer| peer.link())
            };
            let links = self
                .peers
                .iter()
                .filter(|(_, peer)| peer.link().session.queued_uploads() > 0 && with_room(peer))
                .map(|(&key, peer)| (key, peer.link()));
            let Some((key, block)) = self.uplink.next(link_of, links, &mut self.rng) else {
                return;
            };
            let peer = self.peers.get_mut(&key).expect("chosen among them");
            peer.link_mut().session.take_upload(block);
            self.serve(key, block, io);
            self.flush(key, io);
        }
    }

    /// Sends `block`, taken from `key`'s queued requests, if it is of a piece we have;
    /// rejects it otherwise.
    fn serve(&mut self, key: PeerKey, block: Block, io: &mut impl Io<P>) {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        if !self.picker.have().get(block.piece as usize) {
            peer.link_mut().session.reject(block);
            return;
        }
        if io.send_block(key, peer, block) {
            let link = peer.link_mut();
            link.uploaded.add(u64::from(block.length));
            link.served.sent(block.piece, block.length);
            self.uploaded.add(u64::from(block.length));
            if let Some(super_seed) = &mut self.super_seed {
                super_seed.block_sent(block.piece);
            }
        }
    }

    /// The periodic work (the engine's 100 ms tick): session timers, snubbing, topping up
    /// every connection, the choker when due, and once a second the rate meters. Returns
    /// whether the meters were updated.
    pub fn tick(&mut self, now: Instant, io: &mut impl Io<P>) -> bool {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for &key in &keys {
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            let link = peer.link_mut();
            link.session.handle_timeout(now);
            link.cancel_if_snubbed(key, now, &mut self.picker);
            self.service(key, now, io);
        }
        if self.choke_schedule.due(now) {
            self.run_choker(now, io);
        }
        if now.duration_since(self.last_stats) < Duration::from_secs(1) {
            return false;
        }
        let elapsed = now.duration_since(self.last_stats);
        self.last_stats = now;
        self.downloaded.tick(elapsed);
        self.uploaded.tick(elapsed);
        for peer in self.peers.values_mut() {
            peer.link_mut().tick_meters(elapsed);
        }
        let mut sources = Sources::default();
        for peer in self.peers.values() {
            let link = peer.link();
            if matches!(link.tick_state(), TickState::Busy(_)) {
                sources.all += 1;
                sources.seeds += usize::from(link.counted.all());
            }
        }
        for peer in self.peers.values_mut() {
            peer.link_mut().tick_window(sources, now);
        }
        true
    }

    fn run_choker(&mut self, now: Instant, io: &mut impl Io<P>) {
        let changed = choke_round(
            &mut self.choker,
            self.peers.iter_mut().map(|(&key, p)| (key, p.link_mut())),
            self.picker.is_complete(),
            self.super_seed.as_mut(),
            now,
            &mut self.rng,
        );
        for key in changed {
            self.flush(key, io);
        }
    }
}

#[cfg(test)]
mod tests;
