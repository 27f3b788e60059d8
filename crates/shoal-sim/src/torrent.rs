//! One simulated host's torrent: the simulator's counterpart of the engine's torrent actor
//! (`shoal-engine/src/torrent.rs`).
//!
//! It owns the same sans-IO cores — a [`PeerSession`] per connection, the
//! [`PiecePicker`], the [`Choker`] and [`SmartBan`] — and reacts to each
//! [`SessionEvent`] the way the engine does: the methods below (`service`, `on_event`,
//! `on_block`, `piece_complete`, `request_more`, `serve_uploads`, `tick`, `run_choker`)
//! follow the engine's of the same names step for step, with three differences of
//! environment, not of policy:
//! - sockets are simulated: bytes the session wants to send go to the connection's
//!   `outbox`, which the host's simulated uplink drains ([`Torrent::next_chunk`]);
//! - storage is the in-memory [`PieceStore`], and a bad host corrupts what it serves;
//! - maps are ordered (`BTreeMap`/`BTreeSet`, the key-ordered [`PeerMap`]) so that
//!   iteration order, and so the run, depends only on the seed.
//!
//! Dialling and the address book stay with the world (the simulated tracker), as they
//! would with a shared torrent core. This file and the engine's glue are twins to be
//! unified into one sans-IO torrent core in `shoal-swarm`.

use std::cmp::Reverse;
use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use shoal_core::{Bitfield, Block, InfoHash, PeerId, BLOCK_SIZE};
use shoal_swarm::{
    choke_round, BlockData, ChokeSchedule, Choker, ChokerConfig, PeerKey, PeerLink, PiecePicker,
    PieceProgress, RateMeter, Received, Reveal, SmartBan, SuperSeed,
};
use shoal_wire::{ExtensionHandshake, PeerSession, SessionConfig, SessionEvent};

use crate::content::{Content, HashCheck, PieceStore};
use crate::peer_map::PeerMap;
use crate::timeline::Idle;

/// A simulated host (its address, as far as other hosts are concerned).
pub type HostId = u32;
/// A simulated TCP connection.
pub type ConnId = u32;

/// Blocks are served to a connection while fewer bytes than this wait for the uplink, and
/// again as the uplink drains it. The engine's writer allows 4 MiB (`MAX_BACKLOG`); a
/// thousand hosts cannot each hold that much, and a short backlog also keeps requests and
/// `have`s from queueing for seconds behind block data (libtorrent refills its send buffer
/// at a low-water mark the same way).
const MAX_BACKLOG: usize = 64 * 1024;
/// The torrent every simulated host shares.
const INFO_HASH: InfoHash = InfoHash([7; 20]);

/// A simulated host's IPv4 address (for the allowed-fast set): one /24 per host.
fn host_ip(host: HostId) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0A00_0001 | ((host & 0xFFFF) << 8)))
}

/// What a host does with the blocks it is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Serves every block with some bytes flipped.
    Corrupt,
}

/// Everything a torrent starts from.
pub struct TorrentSetup {
    pub content: Arc<Content>,
    pub check: HashCheck,
    pub peer_id: PeerId,
    /// Verified pieces (resume state after a crash).
    pub have: Bitfield,
    /// Hosts banned before (kept across a restart).
    pub banned: BTreeSet<HostId>,
    pub rng_seed: u64,
    pub behaviour: Behaviour,
    pub max_connections: usize,
    /// Keys start here, so that keys of different incarnations of a host never meet.
    pub first_key: u64,
    /// Super-seed (BEP 16) while we have every piece.
    pub super_seed: bool,
    /// Bytes per second assumed for a peer whose rate is not measured yet, for the depth
    /// of its request queue (the engine uses [`shoal_swarm::INITIAL_RATE_GUESS`]).
    pub initial_rate: f64,
}

/// Transfer figures of one torrent, for the report.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Payload bytes served.
    pub uploaded: u64,
    /// Payload bytes received for blocks already had (endgame crossings).
    pub duplicate: u64,
    /// Bytes of pieces that failed the hash check.
    pub corrupt: u64,
    /// Pieces accepted with corrupt blocks (hash check off).
    pub corrupt_accepted: u64,
    /// Of `uploaded`, the bytes of each piece's first copy (hosts that started complete).
    pub first_copy: u64,
}

/// The bytes queued for one connection, as the session produced them: one unit per flush
/// (the engine's writer channel), a served block being its header plus the block's data as
/// a shared buffer (a vectored write: block bytes are never copied).
#[derive(Default)]
struct Outbox {
    queue: VecDeque<Unit>,
    len: usize,
    /// Of the piece last sent: its rank on the uplink.
    progress: PieceProgress,
}

/// One flush: `head` then `data` (empty unless a block of `piece` was served).
struct Unit {
    head: Bytes,
    data: Bytes,
    piece: Option<u32>,
}

impl Unit {
    fn len(&self) -> usize {
        self.head.len() + self.data.len()
    }
}

impl Outbox {
    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The rank on the uplink of the next bytes (see [`PieceProgress`]).
    fn rank(&self) -> u32 {
        self.progress
            .rank(self.queue.front().and_then(|unit| unit.piece))
    }

    fn push(&mut self, head: Bytes, data: Bytes, piece: Option<u32>) {
        let unit = Unit { head, data, piece };
        self.len += unit.len();
        self.queue.push_back(unit);
    }

    /// Moves what the session wants to send here; returns whether there was anything.
    fn push_from(&mut self, session: &mut PeerSession) -> bool {
        let Some(out) = session.poll_transmit() else {
            return false;
        };
        self.push(out, Bytes::new(), None);
        true
    }

    /// The next bytes to put on the wire, about `max` of them: whole units while they fit
    /// (a block message, 13 bytes over 16 KiB, goes whole), else a piece of the first.
    /// Buffers are passed on as they are, without copying.
    fn take(&mut self, max: usize, chunk: &mut Chunk) {
        let limit = max + 64;
        while let Some(front) = self.queue.front_mut() {
            if chunk.len + front.len() <= limit {
                let unit = self.queue.pop_front().expect("non-empty");
                if let Some(piece) = unit.piece {
                    self.progress.sent(piece, unit.data.len() as u32);
                }
                chunk.push(unit.head);
                chunk.push(unit.data);
            } else {
                if chunk.segments.is_empty() {
                    let head = front.head.split_to(max.min(front.head.len()));
                    let data = front.data.split_to(max - head.len());
                    if let Some(piece) = front.piece {
                        self.progress.sent(piece, data.len() as u32);
                    }
                    chunk.push(head);
                    chunk.push(data);
                }
                break;
            }
        }
        self.len -= chunk.len;
    }
}

/// Bytes of one connection's stream that cross the link together, in order.
#[derive(Debug, Default, Clone)]
pub struct Chunk {
    segments: Vec<Bytes>,
    len: usize,
}

impl Chunk {
    /// Empties the chunk, keeping its room for the next one.
    pub fn clear(&mut self) {
        self.segments.clear();
        self.len = 0;
    }

    fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.segments.push(bytes);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn segments(&self) -> &[Bytes] {
        &self.segments
    }
}

struct Peer {
    remote: HostId,
    conn: ConnId,
    link: PeerLink,
    /// Bytes the session sent that the uplink has not put on the wire (the engine's
    /// writer queue).
    outbox: Outbox,
    /// In `writable`.
    queued: bool,
    /// Waiting for the window to open.
    blocked: bool,
}

/// One host's torrent. See the module documentation.
pub struct Torrent {
    content: Arc<Content>,
    picker: PiecePicker,
    choker: Choker,
    smart_ban: SmartBan,
    /// An initial seed's steering: super-seeding (`have`) with `--super-seed`, otherwise
    /// `suggest`s, as the engine does.
    super_seed: Option<SuperSeed>,
    store: PieceStore,
    peer_id: PeerId,
    peers: PeerMap<Box<Peer>>,
    next_key: u64,
    rng: StdRng,
    behaviour: Behaviour,
    banned: BTreeSet<HostId>,
    max_connections: usize,
    initial_rate: f64,
    downloaded: RateMeter,
    uploaded: RateMeter,
    completed_announced: bool,
    choke_schedule: ChokeSchedule,
    last_stats: Instant,
    scratch: Vec<Block>,
    /// Connections with bytes for the uplink, in round-robin order.
    writable: VecDeque<PeerKey>,
    /// Connections this torrent dropped; the world closes them.
    closed: Vec<ConnId>,
    /// Hosts banned since the world last asked.
    new_bans: Vec<HostId>,
    pub counters: Counters,
    /// Payload bytes served per piece, for [`Counters::first_copy`]; kept by a host that
    /// started with every piece.
    served: Option<Vec<u64>>,
}

impl Torrent {
    pub fn new(setup: TorrentSetup, now: Instant) -> Self {
        let content = setup.content;
        let picker = PiecePicker::new(
            content.piece_count(),
            content.piece_length(),
            content.total_length(),
            &setup.have,
        );
        Torrent {
            served: picker
                .is_complete()
                .then(|| vec![0; content.piece_count() as usize]),
            store: PieceStore::new(content.clone(), setup.check),
            completed_announced: picker.is_complete(),
            super_seed: picker.is_complete().then(|| {
                let by = if setup.super_seed {
                    Reveal::Have
                } else {
                    Reveal::Suggest
                };
                SuperSeed::new(
                    content.piece_count(),
                    content.piece_length(),
                    by.per_peer(),
                    by,
                )
            }),
            picker,
            choker: Choker::new(ChokerConfig::default()),
            smart_ban: SmartBan::default(),
            content,
            peer_id: setup.peer_id,
            peers: PeerMap::default(),
            next_key: setup.first_key,
            rng: StdRng::seed_from_u64(setup.rng_seed),
            behaviour: setup.behaviour,
            banned: setup.banned,
            max_connections: setup.max_connections,
            initial_rate: setup.initial_rate,
            downloaded: RateMeter::default(),
            uploaded: RateMeter::default(),
            choke_schedule: ChokeSchedule::default(),
            last_stats: now,
            scratch: Vec::new(),
            writable: VecDeque::new(),
            closed: Vec::new(),
            new_bans: Vec::new(),
            counters: Counters::default(),
        }
    }

    // ---- queries for the world ---------------------------------------------------------

    pub fn is_complete(&self) -> bool {
        self.picker.is_complete()
    }

    pub fn have(&self) -> &Bitfield {
        self.picker.have()
    }

    pub fn banned(&self) -> &BTreeSet<HostId> {
        &self.banned
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Some connection has bytes for the uplink.
    pub fn wants_uplink(&self) -> bool {
        !self.writable.is_empty()
    }

    /// Why the uplink has nothing to send (see [`Idle`]).
    pub fn idle_reason(&self) -> Idle {
        let mut reason = Idle::Unwanted;
        for peer in self.peers.values() {
            let state = peer.link.session.state();
            if !state.peer_interested {
                continue;
            }
            if state.am_choking {
                if reason == Idle::Unwanted {
                    reason = Idle::Choking;
                }
                continue;
            }
            if peer.blocked {
                return Idle::WindowFull;
            }
            reason = Idle::Unasked;
        }
        reason
    }

    pub fn take_closed(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.closed)
    }

    pub fn take_bans(&mut self) -> Vec<HostId> {
        std::mem::take(&mut self.new_bans)
    }

    // ---- the simulated sockets ---------------------------------------------------------

    /// The next chunk of at most `max` bytes for the uplink, from the connection with bytes
    /// to send and an open TCP window (`window_open`, kept by the world, which sees the
    /// bytes in flight; a blocked connection waits for [`Torrent::window_opened`]) that
    /// ranks highest on the uplink (see [`PieceProgress`]), round-robin among equals. The
    /// bytes go into `chunk`, which must be empty; returns their connection.
    pub fn next_chunk(
        &mut self,
        max: usize,
        window_open: impl Fn(ConnId) -> bool,
        chunk: &mut Chunk,
    ) -> Option<ConnId> {
        let peers = &mut self.peers;
        self.writable.retain(|key| {
            let Some(peer) = peers.get_mut(key) else {
                return false;
            };
            if peer.outbox.is_empty() {
                peer.queued = false;
                return false;
            }
            if !window_open(peer.conn) {
                peer.queued = false;
                peer.blocked = true;
                return false;
            }
            true
        });
        let (at, _) = self.writable.iter().enumerate().max_by_key(|&(at, key)| {
            let peer = self.peers.get(key).expect("kept above");
            (peer.outbox.rank(), Reverse(at))
        })?;
        let key = self.writable.remove(at).expect("in range");
        let peer = self.peers.get_mut(&key).expect("kept above");
        peer.queued = false;
        peer.outbox.take(max, chunk);
        let conn = peer.conn;
        // The writer's backlog shrank: serve requests that waited for it.
        if peer.outbox.len() < MAX_BACKLOG && peer.link.session.queued_uploads() > 0 {
            self.serve_uploads(key);
        }
        let peer = self.peers.get_mut(&key).expect("present");
        if !peer.outbox.is_empty() && !peer.queued {
            peer.queued = true;
            self.writable.push_back(key);
        }
        Some(conn)
    }

    /// Bytes sent on `key`'s connection, whose window was full, reached the other side: the
    /// window may be open again.
    pub fn window_opened(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.blocked {
            peer.blocked = false;
            if !peer.outbox.is_empty() && !peer.queued {
                peer.queued = true;
                self.writable.push_back(key);
            }
        }
    }

    // ---- inputs (the engine's `handle`) ------------------------------------------------

    /// A connection is up: outgoing (`incoming` is `None`), or accepted with the peer's
    /// 68-byte handshake. Returns the peer's key, or `None` if refused (too many
    /// connections, banned, or a handshake for another torrent).
    pub fn add_peer(
        &mut self,
        remote: HostId,
        conn: ConnId,
        incoming: Option<&[u8]>,
        now: Instant,
    ) -> Option<PeerKey> {
        if self.peers.len() >= self.max_connections || self.banned.contains(&remote) {
            return None;
        }
        let config = self.session_config();
        let session = match incoming {
            None => PeerSession::new(config, now),
            Some(bytes) => {
                let handshake = shoal_wire::parse_handshake(bytes).ok()??;
                PeerSession::new_after_handshake(config, handshake, now).ok()?
            }
        };
        let key = PeerKey(self.next_key);
        self.next_key += 1;
        self.peers.insert(
            key,
            Box::new(Peer {
                remote,
                conn,
                link: PeerLink::new(session, self.content.piece_count() as usize, now),
                outbox: Outbox::default(),
                queued: false,
                blocked: false,
            }),
        );
        self.service(key, now);
        Some(key)
    }

    /// Bytes arrived on `key`'s connection (a chunk is one socket read).
    pub fn on_data(&mut self, key: PeerKey, segments: &[Bytes], now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        for bytes in segments {
            if peer
                .link
                .session
                .handle_input_bytes(now, bytes.clone())
                .is_err()
            {
                self.remove_peer(key);
                return;
            }
        }
        self.service(key, now);
    }

    /// The other side closed the connection.
    pub fn on_closed(&mut self, key: PeerKey) {
        self.remove_peer(key);
    }

    fn session_config(&self) -> SessionConfig {
        // A super-seed announces nothing at first; pieces are revealed one by one.
        let announced = match &self.super_seed {
            Some(s) if s.reveals_by() == Reveal::Have => {
                Bitfield::new(self.content.piece_count() as usize)
            }
            _ => self.picker.have().clone(),
        };
        let mut config = SessionConfig::new(
            INFO_HASH,
            self.peer_id,
            self.content.piece_count(),
            self.content.piece_length(),
            self.content.total_length(),
            announced,
        );
        config.extension_handshake = ExtensionHandshake {
            v: Some("shoal-sim".to_owned()),
            ..ExtensionHandshake::default()
        };
        config
    }

    fn remove_peer(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.remove(&key) else {
            return;
        };
        self.picker.peer_disconnected(key, &peer.link.counted);
        if let Some(super_seed) = &mut self.super_seed {
            super_seed.peer_disconnected(key);
        }
        self.choke_schedule.changed();
        self.closed.push(peer.conn);
    }

    fn ban(&mut self, key: PeerKey) {
        if let Some(peer) = self.peers.get(&key) {
            if self.banned.insert(peer.remote) {
                self.new_bans.push(peer.remote);
            }
            self.remove_peer(key);
        }
    }

    /// Processes a peer's events, then tops up its requests, serves its uploads, and
    /// flushes what the session wants to send.
    fn service(&mut self, key: PeerKey, now: Instant) {
        loop {
            let Some(peer) = self.peers.get_mut(&key) else {
                return;
            };
            let Some(event) = peer.link.session.poll_event() else {
                break;
            };
            self.on_event(key, event, now);
        }
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.link.session.is_closed() {
            self.remove_peer(key);
            return;
        }
        self.request_more(key);
        self.serve_uploads(key);
        self.flush(key);
    }

    fn flush(&mut self, key: PeerKey) {
        if let Some(peer) = self.peers.get_mut(&key) {
            if peer.outbox.push_from(&mut peer.link.session) && !peer.queued && !peer.blocked {
                peer.queued = true;
                self.writable.push_back(key);
            }
        }
    }

    fn on_event(&mut self, key: PeerKey, event: SessionEvent, now: Instant) {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        match event {
            SessionEvent::Connected { fast, .. } => {
                peer.link.connected = true;
                if fast {
                    let ip = host_ip(peer.remote);
                    peer.link
                        .grant_allowed_fast(&INFO_HASH, ip, self.picker.have());
                }
            }
            SessionEvent::PeerBitfield => {
                peer.link.bitfield_received(key, &mut self.picker);
                if self.super_seed.is_some() {
                    // A super-seed's peers see nothing to be interested in until pieces
                    // are revealed, and pieces are revealed to unchoked peers only.
                    self.offer_free_slot(key);
                    self.reveal(key);
                }
            }
            SessionEvent::Have(piece) => {
                peer.link.have_received(key, piece, &mut self.picker);
                if let Some(super_seed) = &mut self.super_seed {
                    if super_seed.peer_have(key, piece) {
                        self.reveal(key);
                    }
                }
            }
            SessionEvent::Choked { dropped } => {
                peer.link.requests_dropped(key, dropped, &mut self.picker);
            }
            SessionEvent::Rejected(block) => {
                peer.link.requests_dropped(key, [block], &mut self.picker);
            }
            SessionEvent::Interested => {
                self.offer_free_slot(key);
                self.choke_schedule.changed();
            }
            SessionEvent::NotInterested => self.choke_schedule.changed(),
            SessionEvent::BlockReceived { block, data } => self.on_block(key, block, data, now),
            SessionEvent::AllowedFast(_) => self.request_more(key),
            SessionEvent::Suggest(piece) => {
                peer.link.suggested.add(piece, self.picker.have());
                self.request_more(key);
            }
            SessionEvent::Closed(_)
            | SessionEvent::Unchoked
            | SessionEvent::DhtPort(_)
            | SessionEvent::ExtensionHandshake(_)
            | SessionEvent::Extended { .. } => {}
        }
    }

    /// A free upload slot is given at once, as the engine does on `Interested`, rather
    /// than at the next choker round.
    fn offer_free_slot(&mut self, key: PeerKey) {
        let slots = self.choker.config().regular_slots + self.choker.config().optimistic_slots;
        let unchoked = self
            .peers
            .values()
            .filter(|p| !p.link.session.state().am_choking)
            .count();
        let peer = self.peers.get_mut(&key).expect("caller checked");
        if unchoked < slots && peer.link.session.state().am_choking {
            peer.link.session.unchoke();
        }
    }

    fn reveal(&mut self, key: PeerKey) {
        if let (Some(super_seed), Some(peer)) = (&mut self.super_seed, self.peers.get_mut(&key)) {
            peer.link.reveal(key, super_seed, &mut self.rng);
        }
    }

    fn on_block(&mut self, key: PeerKey, block: Block, data: Bytes, now: Instant) {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        peer.link.block_arrived(block, now);
        self.downloaded.add(u64::from(block.length));
        match self.picker.block_received(key, block) {
            Received::New {
                piece_complete,
                cancel,
            } => {
                for other in cancel {
                    if let Some(p) = self.peers.get_mut(&other) {
                        if p.link.requested.remove(&block) {
                            p.link.session.cancel(block);
                        }
                    }
                }
                self.store.write(block, &data);
                if piece_complete {
                    self.piece_complete(block.piece);
                }
            }
            Received::Duplicate | Received::Unexpected => {
                self.counters.duplicate += u64::from(block.length);
            }
        }
    }

    fn piece_complete(&mut self, piece: u32) {
        let size = self.picker.piece_size(piece);
        if self.store.verify(piece, size) {
            if self.store.has_overlay(piece) {
                self.counters.corrupt_accepted += 1;
            }
            if self.smart_ban.is_watched(piece) {
                let blocks = self.read_blocks(
                    piece,
                    (0..self.picker.blocks_in_piece(piece)).map(|i| i * BLOCK_SIZE),
                );
                let liars = self.smart_ban.piece_passed(
                    piece,
                    blocks.iter().map(|(offset, data)| (*offset, &data[..])),
                );
                for liar in liars {
                    self.ban(liar);
                }
            }
            self.picker.piece_verified(piece);
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for key in keys {
                let peer = self.peers.get_mut(&key).expect("listed");
                peer.link.session.have(piece);
                peer.link.update_interest(&self.picker);
                self.flush(key);
            }
            if self.picker.is_complete() && !self.completed_announced {
                self.complete();
            }
        } else {
            self.counters.corrupt += u64::from(size);
            let senders = self.picker.block_senders(piece);
            let blocks = self.read_blocks(piece, senders.iter().map(|(offset, _)| *offset));
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
            self.store.forget(piece);
            for liar in liars {
                self.ban(liar);
            }
        }
    }

    /// Blocks of `piece` at the given offsets as stored (shorter at the piece's end).
    fn read_blocks(&self, piece: u32, offsets: impl Iterator<Item = u32>) -> Vec<(u32, Bytes)> {
        let size = self.picker.piece_size(piece);
        offsets
            .map(|offset| {
                let length = BLOCK_SIZE.min(size - offset);
                (offset, self.store.read(piece, offset, length))
            })
            .collect()
    }

    fn request_more(&mut self, key: PeerKey) {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        peer.link.request_more(
            key,
            &mut self.picker,
            self.initial_rate,
            &mut self.rng,
            &mut self.scratch,
        );
    }

    fn serve_uploads(&mut self, key: PeerKey) {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        while peer.outbox.len() < MAX_BACKLOG {
            let Some(block) = peer.link.session.next_upload() else {
                break;
            };
            if !self.picker.have().get(block.piece as usize) {
                peer.link.session.reject(block);
                continue;
            }
            let data = match self.behaviour {
                Behaviour::Honest => self.store.read(block.piece, block.offset, block.length),
                Behaviour::Corrupt => self.content.corrupted(block),
            };
            let Some(head) = peer.link.session.send_block_header(block) else {
                break;
            };
            peer.outbox.push(head, data, Some(block.piece));
            peer.link.uploaded.add(u64::from(block.length));
            self.uploaded.add(u64::from(block.length));
            self.counters.uploaded += u64::from(block.length);
            if let Some(super_seed) = &mut self.super_seed {
                super_seed.block_sent(block.piece);
            }
            if let Some(served) = &mut self.served {
                let before = served[block.piece as usize];
                let size = u64::from(self.picker.piece_size(block.piece));
                served[block.piece as usize] += u64::from(block.length);
                self.counters.first_copy +=
                    size.saturating_sub(before).min(u64::from(block.length));
            }
            if !peer.queued && !peer.blocked {
                peer.queued = true;
                self.writable.push_back(key);
            }
        }
    }

    /// The engine's 100 ms tick, run by the world once a second: timers, snubbing,
    /// topping up every connection, the choker, and the rate meters.
    pub fn tick(&mut self, now: Instant) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for &key in &keys {
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            peer.link.session.handle_timeout(now);
            peer.link.cancel_if_snubbed(key, now, &mut self.picker);
            self.service(key, now);
        }
        if self.choke_schedule.due(now) {
            self.run_choker(now);
        }
        if now.duration_since(self.last_stats) >= Duration::from_secs(1) {
            self.report_stats(now);
        }
    }

    fn run_choker(&mut self, now: Instant) {
        let changed = choke_round(
            &mut self.choker,
            self.peers.iter_mut().map(|(&key, p)| (key, &mut p.link)),
            self.picker.is_complete(),
            self.super_seed.as_mut(),
            now,
            &mut self.rng,
        );
        for key in changed {
            self.flush(key);
        }
    }

    fn report_stats(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.last_stats);
        self.last_stats = now;
        self.downloaded.tick(elapsed);
        self.uploaded.tick(elapsed);
        for peer in self.peers.values_mut() {
            peer.link.downloaded.tick(elapsed);
            peer.link.uploaded.tick(elapsed);
        }
    }

    fn complete(&mut self) {
        self.completed_announced = true;
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            let peer = self.peers.get_mut(&key).expect("listed");
            peer.link.update_interest(&self.picker);
            self.flush(key);
        }
    }
}
