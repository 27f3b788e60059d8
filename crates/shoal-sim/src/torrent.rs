//! One simulated host's torrent: the simulator's counterpart of the engine's torrent actor
//! (`shoal-engine/src/torrent.rs`).
//!
//! Both hand every session event to the same [`TorrentCore`], which makes the torrent's
//! decisions; this file is the host's side of it ([`Io`]), with three differences of
//! environment, not of policy:
//! - sockets are simulated: bytes the session wants to send go to the connection's
//!   `outbox`, which the host's simulated uplink drains ([`Torrent::next_chunk`]);
//! - storage is the in-memory [`PieceStore`], a piece is checked as soon as it is
//!   complete, and a bad host corrupts what it serves;
//! - maps are ordered (`BTreeMap`/`BTreeSet`, the core's key-ordered
//!   [`PeerMap`](shoal_swarm::PeerMap)) so that iteration order, and so the run, depends
//!   only on the seed.
//!
//! Dialling and the address book stay with the world (the simulated tracker).

use std::cmp::Reverse;
use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use shoal_core::{Bitfield, Block, InfoHash, PeerId};
use shoal_swarm::{
    Connection, CoreConfig, Io, PeerKey, PeerLink, PieceProgress, TorrentCore, Uplink,
};
use shoal_wire::{ExtensionHandshake, PeerSession, SessionConfig};

use crate::content::{Content, HashCheck, PieceStore};
use crate::timeline::Idle;

/// A simulated host (its address, as far as other hosts are concerned).
pub type HostId = u32;
/// A simulated TCP connection.
pub type ConnId = u32;

/// A connection takes no more blocks while this much waits in its outbox (a bound that
/// the shared uplink below, which keeps far less queued, does not reach in practice).
const MAX_BACKLOG: usize = 64 * 1024;
/// A host's uplink takes another block while less block data than this waits for it, all
/// connections together: the core then chooses which connection's request goes next (see
/// [`Uplink::Shared`]), as the engine does under an upload limit.
const UPLINK_BACKLOG: usize = 16 * 1024;
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
    /// Of `len`, block data.
    data_len: usize,
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

    /// The queued unit that goes next: `Some(piece)` for a block, `Some(None)` for other
    /// messages, `None` if nothing is queued.
    fn front_piece(&self) -> Option<Option<u32>> {
        self.queue.front().map(|unit| unit.piece)
    }

    /// The rank on the uplink of the next bytes (see [`PieceProgress`]).
    fn rank(&self) -> u32 {
        self.progress
            .rank(self.queue.front().and_then(|unit| unit.piece))
    }

    fn push(&mut self, head: Bytes, data: Bytes, piece: Option<u32>) {
        let unit = Unit { head, data, piece };
        self.len += unit.len();
        self.data_len += unit.data.len();
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

    /// Appends the next bytes to put on the wire to `chunk`, until it holds about `max`:
    /// whole units while they fit (a block message, 13 bytes over 16 KiB, goes whole),
    /// else, into an empty chunk, a piece of the first. Buffers are passed on as they are,
    /// without copying. Returns the block data bytes taken.
    fn take(&mut self, max: usize, chunk: &mut Chunk) -> usize {
        let data_before = self.data_len;
        let chunk_before = chunk.len;
        let limit = max + 64;
        while let Some(front) = self.queue.front_mut() {
            if chunk.len + front.len() <= limit {
                let unit = self.queue.pop_front().expect("non-empty");
                if let Some(piece) = unit.piece {
                    self.progress.sent(piece, unit.data.len() as u32);
                }
                self.data_len -= unit.data.len();
                chunk.push(unit.head);
                chunk.push(unit.data);
            } else {
                if chunk.segments.is_empty() {
                    let head = front.head.split_to(max.min(front.head.len()));
                    let data = front.data.split_to(max - head.len());
                    if let Some(piece) = front.piece {
                        self.progress.sent(piece, data.len() as u32);
                    }
                    self.data_len -= data.len();
                    chunk.push(head);
                    chunk.push(data);
                }
                break;
            }
        }
        self.len -= chunk.len - chunk_before;
        data_before - self.data_len
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

impl Connection for Peer {
    fn link(&self) -> &PeerLink {
        &self.link
    }

    fn link_mut(&mut self) -> &mut PeerLink {
        &mut self.link
    }

    fn ip(&self) -> IpAddr {
        host_ip(self.remote)
    }
}

/// One host's torrent. See the module documentation.
pub struct Torrent {
    core: TorrentCore<Peer>,
    host: Host,
    peer_id: PeerId,
    max_connections: usize,
}

/// A host's side of its torrent: storage, its simulated sockets' queues and what the
/// world reads back (see [`Io`]).
struct Host {
    content: Arc<Content>,
    store: PieceStore,
    behaviour: Behaviour,
    banned: BTreeSet<HostId>,
    /// Connections with bytes for the uplink, in round-robin order.
    writable: VecDeque<PeerKey>,
    /// Connections this torrent dropped; the world closes them.
    closed: Vec<ConnId>,
    /// Hosts banned since the world last asked.
    new_bans: Vec<HostId>,
    counters: Counters,
    /// Payload bytes served per piece, for [`Counters::first_copy`]; kept by a host that
    /// started with every piece.
    served: Option<Vec<u64>>,
    /// Block data waiting for the uplink, all connections together.
    backlog: usize,
}

impl Host {
    fn mark_writable(&mut self, key: PeerKey, peer: &mut Peer) {
        if !peer.queued && !peer.blocked {
            peer.queued = true;
            self.writable.push_back(key);
        }
    }
}

impl Io<Peer> for Host {
    fn flush(&mut self, key: PeerKey, peer: &mut Peer) {
        if peer.outbox.push_from(&mut peer.link.session) {
            self.mark_writable(key, peer);
        }
    }

    fn upload_room(&self, peer: &Peer) -> bool {
        peer.outbox.len() < MAX_BACKLOG
    }

    fn uplink(&self) -> Uplink {
        Uplink::Shared {
            room: self.backlog < UPLINK_BACKLOG,
        }
    }

    fn send_block(&mut self, key: PeerKey, peer: &mut Peer, block: Block) -> bool {
        let data = match self.behaviour {
            Behaviour::Honest => self.store.read(block.piece, block.offset, block.length),
            Behaviour::Corrupt => self.content.corrupted(block),
        };
        let Some(head) = peer.link.session.send_block_header(block) else {
            return false;
        };
        self.backlog += data.len();
        peer.outbox.push(head, data, Some(block.piece));
        self.counters.uploaded += u64::from(block.length);
        if let Some(served) = &mut self.served {
            let before = served[block.piece as usize];
            let size = u64::from(self.content.piece_size(block.piece));
            served[block.piece as usize] += u64::from(block.length);
            self.counters.first_copy += size.saturating_sub(before).min(u64::from(block.length));
        }
        self.mark_writable(key, peer);
        true
    }

    fn store_block(&mut self, block: Block, data: Bytes, piece_complete: bool) -> Option<bool> {
        self.store.write(block, &data);
        if !piece_complete {
            return None;
        }
        let good = self
            .store
            .verify(block.piece, self.content.piece_size(block.piece));
        if good && self.store.has_overlay(block.piece) {
            self.counters.corrupt_accepted += 1;
        }
        Some(good)
    }

    fn read_block(&self, piece: u32, offset: u32, length: u32) -> Bytes {
        self.store.read(piece, offset, length)
    }

    fn piece_failed(&mut self, piece: u32) {
        self.store.forget(piece);
    }

    fn banning(&mut self, peer: &Peer) {
        if self.banned.insert(peer.remote) {
            self.new_bans.push(peer.remote);
        }
    }

    fn removed(&mut self, peer: Peer, _reason: &str, _now: Instant) {
        self.backlog -= peer.outbox.data_len;
        self.closed.push(peer.conn);
    }
}

impl Torrent {
    pub fn new(setup: TorrentSetup, now: Instant) -> Self {
        let content = setup.content;
        let core = TorrentCore::new(CoreConfig {
            info_hash: INFO_HASH,
            piece_count: content.piece_count(),
            piece_length: content.piece_length(),
            total_length: content.total_length(),
            have: &setup.have,
            wanted: None,
            super_seed: setup.super_seed,
            initial_rate: setup.initial_rate,
            first_key: setup.first_key,
            rng: StdRng::seed_from_u64(setup.rng_seed),
            now,
        });
        Torrent {
            host: Host {
                served: core
                    .is_complete()
                    .then(|| vec![0; content.piece_count() as usize]),
                store: PieceStore::new(content.clone(), setup.check),
                content,
                behaviour: setup.behaviour,
                banned: setup.banned,
                writable: VecDeque::new(),
                closed: Vec::new(),
                new_bans: Vec::new(),
                counters: Counters::default(),
                backlog: 0,
            },
            core,
            peer_id: setup.peer_id,
            max_connections: setup.max_connections,
        }
    }

    // ---- queries for the world ---------------------------------------------------------

    pub fn is_complete(&self) -> bool {
        self.core.is_complete()
    }

    pub fn have(&self) -> &Bitfield {
        self.core.have()
    }

    pub fn banned(&self) -> &BTreeSet<HostId> {
        &self.host.banned
    }

    pub fn peer_count(&self) -> usize {
        self.core.peers().len()
    }

    /// Transfer figures so far.
    pub fn counters(&self) -> Counters {
        Counters {
            duplicate: self.core.duplicate_bytes,
            corrupt: self.core.failed_bytes,
            ..self.host.counters.clone()
        }
    }

    /// Some connection has bytes for the uplink.
    pub fn wants_uplink(&self) -> bool {
        !self.host.writable.is_empty()
    }

    /// The peers we unchoke that want our pieces, by host and connection.
    pub fn unchoked_and_interested(&self) -> impl Iterator<Item = (HostId, ConnId)> + '_ {
        self.core.peers().values().filter_map(|peer| {
            let state = peer.link.session.state();
            (state.peer_interested && !state.am_choking).then_some((peer.remote, peer.conn))
        })
    }

    /// Why we ask nothing on `conn` of a peer that unchokes us and has `theirs`, as the
    /// reason its uplink idles (see [`Idle`]); `sending` says bytes of ours are on the
    /// wire to it. `None` if the connection is gone.
    pub fn why_not_asking(&self, conn: ConnId, theirs: &Bitfield, sending: bool) -> Option<Idle> {
        let peer = self.core.peers().values().find(|p| p.conn == conn)?;
        let picker = self.core.picker();
        let askable = (0..theirs.len()).any(|piece| {
            theirs.get(piece) && !picker.have().get(piece) && !picker.in_progress(piece as u32)
        });
        Some(if askable {
            Idle::Unasked
        } else if sending && !peer.link.requested.is_empty() {
            Idle::InTransit
        } else {
            Idle::Elsewhere
        })
    }

    /// Why the uplink has nothing to send, as far as this host can tell: [`Idle::Unasked`]
    /// stands for all three reasons that need the other side's view (see
    /// [`why_not_asking`](Self::why_not_asking)).
    pub fn idle_reason(&self) -> Idle {
        let mut reason = Idle::Unwanted;
        for peer in self.core.peers().values() {
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
        std::mem::take(&mut self.host.closed)
    }

    pub fn take_bans(&mut self) -> Vec<HostId> {
        std::mem::take(&mut self.host.new_bans)
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
        let peers = self.core.peers_mut();
        self.host.writable.retain(|key| {
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
        let (at, _) = self
            .host
            .writable
            .iter()
            .enumerate()
            .max_by_key(|&(at, key)| {
                let peer = peers.get(key).expect("kept above");
                (peer.outbox.rank(), Reverse(at))
            })?;
        let key = self.host.writable.remove(at).expect("in range");
        let peer = peers.get_mut(&key).expect("kept above");
        peer.queued = false;
        self.host.backlog -= peer.outbox.take(max, chunk);
        let conn = peer.conn;
        let mut piece = peer.outbox.progress.piece();
        loop {
            // The uplink's backlog shrank: serve requests that waited for it.
            self.core.serve_uplink(&mut self.host);
            // Blocks that go on with the same piece to the same peer join this chunk (one
            // event on the link, not one per block); another piece waits for the next.
            let Some(peer) = self.core.peers_mut().get_mut(&key) else {
                return Some(conn);
            };
            let next = peer.outbox.front_piece();
            if chunk.len() >= max || next.is_none() || next != piece.map(Some) {
                break;
            }
            let taken = chunk.len();
            self.host.backlog -= peer.outbox.take(max, chunk);
            if chunk.len() == taken {
                break;
            }
            piece = peer.outbox.progress.piece();
        }
        let peer = self.core.peers_mut().get_mut(&key).expect("present");
        if !peer.outbox.is_empty() {
            self.host.mark_writable(key, peer);
        }
        Some(conn)
    }

    /// Bytes sent on `key`'s connection, whose window was full, reached the other side: the
    /// window may be open again.
    pub fn window_opened(&mut self, key: PeerKey) {
        let Some(peer) = self.core.peers_mut().get_mut(&key) else {
            return;
        };
        if peer.blocked {
            peer.blocked = false;
            if !peer.outbox.is_empty() {
                self.host.mark_writable(key, peer);
            }
        }
    }

    // ---- inputs (the engine's `handle`) ------------------------------------------------

    /// A connection is up: outgoing (`incoming` is `None`), or accepted with the peer's
    /// 68-byte handshake; `round_trip` is its link's, as a transport would measure it.
    /// Returns the peer's key, or `None` if refused (too many connections, banned, or a
    /// handshake for another torrent).
    pub fn add_peer(
        &mut self,
        remote: HostId,
        conn: ConnId,
        incoming: Option<&[u8]>,
        round_trip: Duration,
        now: Instant,
    ) -> Option<PeerKey> {
        if self.core.peers().len() >= self.max_connections || self.host.banned.contains(&remote) {
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
        let piece_count = self.host.content.piece_count() as usize;
        let mut link = PeerLink::new(session, piece_count, now);
        link.set_round_trip(Some(round_trip));
        let make = |_| Peer {
            remote,
            conn,
            link,
            outbox: Outbox::default(),
            queued: false,
            blocked: false,
        };
        Some(self.core.add_peer(make, now, &mut self.host))
    }

    /// Bytes arrived on `key`'s connection (a chunk is one socket read).
    pub fn on_data(&mut self, key: PeerKey, segments: &[Bytes], now: Instant) {
        self.core
            .on_data(key, segments.iter().cloned(), now, &mut self.host);
    }

    /// The other side closed the connection.
    pub fn on_closed(&mut self, key: PeerKey, now: Instant) {
        self.core.remove_peer(key, "closed", now, &mut self.host);
    }

    fn session_config(&self) -> SessionConfig {
        let content = &self.host.content;
        let mut config = SessionConfig::new(
            INFO_HASH,
            self.peer_id,
            content.piece_count(),
            content.piece_length(),
            content.total_length(),
            self.core.announced(),
        );
        config.extension_handshake = ExtensionHandshake {
            v: Some("shoal-sim".to_owned()),
            ..ExtensionHandshake::default()
        };
        config
    }

    /// The engine's 100 ms tick, run by the world once a second: timers, snubbing,
    /// topping up every connection, the choker, and the rate meters.
    pub fn tick(&mut self, now: Instant) {
        self.core.tick(now, &mut self.host);
    }
}
