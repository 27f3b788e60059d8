//! [`PeerSession`]: one peer connection as a sans-IO state machine (the quinn-proto shape).
//!
//! The driver feeds it received bytes ([`PeerSession::handle_input`]) and timer expiries
//! ([`PeerSession::handle_timeout`]), and drains bytes to send
//! ([`PeerSession::poll_transmit`]), events for the torrent ([`PeerSession::poll_event`])
//! and the next deadline ([`PeerSession::poll_timeout`]). The torrent steers it with
//! commands (`choke`, `interested`, `request`, `send_block`, …) that only queue bytes.
//!
//! What the session owns, so that no caller has to re-implement the rules:
//! - **Our outstanding requests** ([`PeerState::outstanding`]). A `piece` that matches none
//!   of them is dropped without an event, so unrequested data can never reach the disk.
//!   A request leaves the set when its block arrives, when the peer rejects it (BEP 6),
//!   when we cancel it, or — without the fast extension — when the peer chokes us (the
//!   dropped blocks are listed in [`SessionEvent::Choked`] so the torrent can re-queue
//!   them). On close the set is left in place for the torrent to read and re-queue.
//! - **The peer's queued requests**: a bounded FIFO the driver drains with
//!   [`PeerSession::next_upload`] (then reads the block and calls
//!   [`PeerSession::send_block`]). A `cancel` removes a queued request, and choking the
//!   peer empties the queue; with the fast extension each dropped request is answered by a
//!   `reject`, as BEP 6 requires.
//! - **Validation** of everything the peer sends; any violation is a [`WireError`] after
//!   which the session is closed and the driver should disconnect.
//!
//! Handshake order: an outgoing session ([`PeerSession::new`]) sends our handshake first and
//! waits for the peer's. An accepting driver does not know the torrent until the peer's
//! handshake names it, so it reads 68 bytes with [`crate::parse_handshake`], looks up the
//! info-hash (closing the connection if unknown), and then calls
//! [`PeerSession::new_after_handshake`], which answers with our handshake.

use crate::extension::{ExtensionHandshake, EXTENDED_HANDSHAKE_ID, MAX_REQQ, UPLOAD_ONLY};
use crate::handshake::{parse_handshake, Handshake, HANDSHAKE_LEN};
use crate::message::{
    max_message_len, parse_piece_header, piece_header, valid_block_length, Frames, HashRange,
    Message, PIECE_HEADER_LEN,
};
use crate::WireError;
use bytes::{Buf, Bytes, BytesMut};
use shoal_core::{Bitfield, Block, InfoHash, PeerId};
use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// Unservable requests (while choked, for pieces we lack, beyond the queue) are counted in
/// windows of this length; see [`PeerSession::flood_limit`].
const FLOOD_WINDOW: Duration = Duration::from_secs(10);
/// BEP 52 hash requests answered per window; more are rejected. libtorrent asks for a
/// file's piece layer 512 hashes at a time, so this is an 8 GiB file's in 256 KiB
/// pieces, and at most ~1 MiB of answers.
const MAX_HASH_REQUESTS: usize = 64;

/// A peer may grant us at most this many allowed-fast pieces; more are ignored (BEP 6
/// suggests about 10, so this only bounds memory against a hostile peer).
const MAX_ALLOWED_FAST: usize = 256;

/// Everything a session needs to know about the torrent and about us.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub piece_count: u32,
    pub piece_length: u32,
    pub total_length: u64,
    /// The pieces we have now; later ones are announced with [`PeerSession::have`].
    pub our_bitfield: Bitfield,
    /// Our handshake's reserved bytes; an extension is used only if both sides set it.
    pub reserved: [u8; 8],
    /// Our BEP 10 handshake (`m`, `v`, and `yourip` set by the driver from the peer's
    /// address). A missing `reqq` is filled in from `max_incoming_requests`.
    pub extension_handshake: ExtensionHandshake,
    /// How many of the peer's requests we queue; more are dropped (rejected with BEP 6).
    pub max_incoming_requests: usize,
    /// How many requests we keep outstanding at this peer at most; `request` refuses more.
    pub max_outstanding_requests: usize,
    /// Send a keep-alive when we have sent nothing for this long.
    pub keepalive_interval: Duration,
    /// Close when nothing at all has been received for this long.
    pub idle_timeout: Duration,
    /// Close an outgoing connection whose peer has not completed its handshake by then.
    pub handshake_timeout: Duration,
}

impl SessionConfig {
    /// A configuration with the usual limits: 500 queued incoming requests, keep-alives
    /// every 120 s, idle timeout 180 s, handshake timeout 20 s, fast and extension bits on.
    pub fn new(
        info_hash: InfoHash,
        peer_id: PeerId,
        piece_count: u32,
        piece_length: u32,
        total_length: u64,
        our_bitfield: Bitfield,
    ) -> Self {
        SessionConfig {
            info_hash,
            peer_id,
            piece_count,
            piece_length,
            total_length,
            our_bitfield,
            reserved: Handshake::SHOAL_RESERVED,
            extension_handshake: ExtensionHandshake::default(),
            max_incoming_requests: 500,
            max_outstanding_requests: MAX_REQQ as usize,
            keepalive_interval: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(180),
            handshake_timeout: Duration::from_secs(20),
        }
    }

    /// Size of piece `piece` in bytes (the last one may be short); 0 out of range.
    fn piece_size(&self, piece: u32) -> u64 {
        if piece >= self.piece_count {
            return 0;
        }
        let start = u64::from(piece) * u64::from(self.piece_length);
        self.total_length
            .saturating_sub(start)
            .min(u64::from(self.piece_length))
    }
}

/// The connection's state as the torrent sees it. Read through [`PeerSession::state`].
#[derive(Debug, Clone)]
pub struct PeerState {
    /// Known once the peer's handshake arrived.
    pub peer_id: Option<PeerId>,
    pub am_choking: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    /// The peer's pieces (have-all → full, have-none → empty, updated by `have`).
    pub peer_pieces: Bitfield,
    /// Both sides support BEP 6.
    pub fast: bool,
    /// Both sides support BEP 10.
    pub extensions: bool,
    /// The peer's extension handshake, with later updates applied.
    pub peer_extensions: Option<ExtensionHandshake>,
    /// The peer wants nothing more (BEP 21: a seed or a partial seed), as its handshake
    /// or a later `upload_only` message said.
    pub peer_upload_only: bool,
    /// Our requests the peer has not yet answered, in a deterministic order.
    pub outstanding: BTreeSet<Block>,
    /// Pieces the peer lets us request while it chokes us (BEP 6).
    pub allowed_fast: BTreeSet<u32>,
    /// Pieces we let the peer request while we choke it (BEP 6).
    pub granted_fast: BTreeSet<u32>,
    /// Payload bytes of requested blocks received / blocks sent.
    pub downloaded: u64,
    pub uploaded: u64,
    /// Payload bytes of blocks received that were not outstanding, and so dropped: mostly
    /// blocks already on the way when we cancelled them (libtorrent counts these as
    /// redundant bytes too).
    pub unrequested: u64,
}

/// What happened on the connection, for the torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// Both handshakes are done; commands take effect from now on.
    Connected {
        peer_id: PeerId,
        fast: bool,
        extensions: bool,
    },
    /// The peer announced its pieces (bitfield, have-all or have-none): read
    /// [`PeerState::peer_pieces`].
    PeerBitfield,
    /// The peer has a piece it did not have before.
    Have(u32),
    /// The peer choked us. Without BEP 6 this cancels all our outstanding requests; they
    /// are listed here, so the torrent can give them to other peers.
    Choked {
        dropped: Vec<Block>,
    },
    Unchoked,
    Interested,
    NotInterested,
    /// A block we requested arrived (unrequested ones never produce this).
    BlockReceived {
        block: Block,
        data: Bytes,
    },
    /// The peer refused one of our outstanding requests (BEP 6).
    Rejected(Block),
    AllowedFast(u32),
    Suggest(u32),
    /// The peer's DHT port (BEP 5).
    DhtPort(u16),
    /// The peer's extension handshake, merged with any earlier one.
    ExtensionHandshake(ExtensionHandshake),
    /// The peer now says it wants nothing more, or wants pieces again (BEP 21's
    /// `upload_only` message): read [`PeerState::peer_upload_only`].
    UploadOnly,
    /// An extension message under one of the ids we assigned in our `m`.
    Extended {
        id: u8,
        payload: Bytes,
    },
    /// A BEP 52 hash request, to be answered with [`PeerSession::answer_hashes`].
    HashRequest(HashRange),
    /// The session is over; the driver should drop the connection.
    Closed(WireError),
}

enum Phase {
    /// Outgoing: our handshake is queued, the peer's has not fully arrived.
    AwaitingHandshake {
        deadline: Instant,
    },
    /// Both handshakes done.
    Open,
    Closed(WireError),
}

/// One peer connection. See the module documentation.
pub struct PeerSession {
    config: SessionConfig,
    /// We dialled the peer (our handshake went first).
    outgoing: bool,
    phase: Phase,
    state: PeerState,
    max_message_len: u32,
    /// Received bytes not yet parsed: at most one incomplete message (capped by
    /// `max_message_len`) plus the last chunk the driver passed in.
    recv: BytesMut,
    /// Bytes waiting for `poll_transmit`.
    send: BytesMut,
    events: VecDeque<SessionEvent>,
    /// The peer's requests we will serve, oldest first; at most `max_incoming_requests`.
    uploads: VecDeque<Block>,
    /// The latest `now` passed in; commands (which take no `now`) stamp sends with it.
    now: Instant,
    last_received: Instant,
    last_sent: Instant,
    flood_window_start: Instant,
    unservable_requests: usize,
    /// BEP 52 hash requests handed to the torrent in this window.
    hash_requests: usize,
}

impl PeerSession {
    /// An outgoing connection: our handshake is queued at once and the peer's awaited.
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        let deadline = now + config.handshake_timeout;
        let mut session = PeerSession::build(config, now);
        session.outgoing = true;
        session.phase = Phase::AwaitingHandshake { deadline };
        session.send_handshake();
        session
    }

    /// An accepted connection whose handshake the driver has already parsed with
    /// [`crate::parse_handshake`]; bytes the peer sent after it go to `handle_input`.
    /// Queues our handshake, our pieces and our extension handshake.
    ///
    /// Fails if `theirs` names another torrent or carries our own peer id.
    pub fn new_after_handshake(
        config: SessionConfig,
        theirs: Handshake,
        now: Instant,
    ) -> Result<Self, WireError> {
        let mut session = PeerSession::build(config, now);
        session.check_handshake(&theirs)?;
        session.send_handshake();
        session.on_handshake(theirs);
        Ok(session)
    }

    fn build(mut config: SessionConfig, now: Instant) -> Self {
        let count = config.piece_count as usize;
        if config.our_bitfield.len() != count {
            // A mismatched bitfield would be sent as a protocol violation; keep what fits.
            let mut fixed = Bitfield::new(count);
            for i in config.our_bitfield.iter_ones() {
                fixed.set(i);
            }
            config.our_bitfield = fixed;
        }
        PeerSession {
            max_message_len: max_message_len(config.piece_count),
            state: PeerState {
                peer_id: None,
                am_choking: true,
                am_interested: false,
                peer_choking: true,
                peer_interested: false,
                peer_pieces: Bitfield::new(count),
                fast: false,
                extensions: false,
                peer_extensions: None,
                peer_upload_only: false,
                outstanding: BTreeSet::new(),
                allowed_fast: BTreeSet::new(),
                granted_fast: BTreeSet::new(),
                downloaded: 0,
                unrequested: 0,
                uploaded: 0,
            },
            config,
            outgoing: false,
            phase: Phase::Open,
            recv: BytesMut::new(),
            send: BytesMut::new(),
            events: VecDeque::new(),
            uploads: VecDeque::new(),
            now,
            last_received: now,
            last_sent: now,
            flood_window_start: now,
            unservable_requests: 0,
            hash_requests: 0,
        }
    }

    // ---- driver side -------------------------------------------------------------------

    /// Feeds bytes received from the peer, in any chunking. An error closes the session
    /// (it is also reported as [`SessionEvent::Closed`]); input after that returns the
    /// same error.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) -> Result<(), WireError> {
        self.begin_input(now, bytes.len())?;
        self.recv.extend_from_slice(bytes);
        let result = self.process_input();
        self.end_input(result)
    }

    /// [`handle_input`](Self::handle_input) for bytes the caller owns: messages are cut
    /// from them without copying (blocks keep pointing into `bytes`), and only a partial
    /// message at the end is buffered. A block whose header ended the previous input and
    /// whose data starts this one (a sender's vectored write, see
    /// [`send_block_header`](Self::send_block_header)) is not copied either.
    pub fn handle_input_bytes(&mut self, now: Instant, mut bytes: Bytes) -> Result<(), WireError> {
        if !matches!(self.phase, Phase::Open) {
            return self.handle_input(now, &bytes);
        }
        self.begin_input(now, bytes.len())?;
        // A message cut by the end of the last chunk takes only the bytes it lacks, so
        // the rest of this chunk is still parsed in place: reads rarely end on a message
        // boundary, and copying the whole chunk would copy nearly everything. A block
        // whose header ended the last chunk takes its data without any copy.
        while !self.recv.is_empty() && !bytes.is_empty() {
            let header = parse_piece_header(&self.recv, self.max_message_len);
            if let Some((piece, offset, length)) = header.filter(|h| h.2 <= bytes.len()) {
                self.recv.clear();
                let data = bytes.split_to(length);
                if let Err(e) = self.on_message(Message::Piece {
                    piece,
                    offset,
                    data,
                }) {
                    return self.end_input(Err(e));
                }
                continue;
            }
            let take = self.bytes_to_complete().min(bytes.len());
            self.recv.extend_from_slice(&bytes[..take]);
            bytes.advance(take);
            if let Err(e) = self.process_input() {
                return self.end_input(Err(e));
            }
        }
        let result = self.process_frames(&mut bytes);
        if result.is_ok() {
            self.recv.extend_from_slice(&bytes);
        }
        self.end_input(result)
    }

    /// Bytes the partial message in `recv` lacks: the rest of its length prefix, then the
    /// rest of its body. A length over the limit asks for nothing more: parsing rejects it.
    fn bytes_to_complete(&self) -> usize {
        let have = self.recv.len();
        if have < 4 {
            return 4 - have;
        }
        let len = u32::from_be_bytes(self.recv[..4].try_into().expect("four bytes"));
        if len > self.max_message_len {
            return 0;
        }
        (4 + len as usize).saturating_sub(have)
    }

    fn begin_input(&mut self, now: Instant, len: usize) -> Result<(), WireError> {
        if let Phase::Closed(e) = &self.phase {
            return Err(e.clone());
        }
        self.now = self.now.max(now);
        if len > 0 {
            self.last_received = self.now;
        }
        Ok(())
    }

    fn end_input(&mut self, result: Result<(), WireError>) -> Result<(), WireError> {
        if let Err(e) = &result {
            self.close(e.clone());
        }
        if self.recv.is_empty() {
            // Everything was parsed. The buffer may still share its allocation with the
            // last message handed out (a block's data): let go of it, so that an idle
            // connection holds no receive memory.
            self.recv = BytesMut::new();
        }
        result
    }

    /// Runs the timers due at `now`: handshake and idle timeouts close the session (see
    /// [`PeerSession::is_closed`] and [`SessionEvent::Closed`]); a keep-alive is queued
    /// when we have been silent for the keep-alive interval.
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Closed(_)) {
            return;
        }
        self.now = self.now.max(now);
        if let Phase::AwaitingHandshake { deadline } = self.phase {
            if self.now >= deadline {
                self.close(WireError::HandshakeTimeout(self.config.handshake_timeout));
                return;
            }
        }
        if self.now >= self.last_received + self.config.idle_timeout {
            self.close(WireError::IdleTimeout(self.config.idle_timeout));
            return;
        }
        if matches!(self.phase, Phase::Open)
            && self.now >= self.last_sent + self.config.keepalive_interval
        {
            self.enqueue(&Message::KeepAlive);
        }
    }

    /// The bytes waiting to be sent, if any. They are split off the session's send
    /// buffer, whose allocation is used again once the driver has dropped every chunk
    /// taken from it, so a busy connection does not allocate (and fault in fresh
    /// memory) for every message.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.send.is_empty()).then(|| self.send.split().freeze())
    }

    /// The next event, oldest first. Drain after every input, timeout and command.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` should next be called; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = self.last_received + self.config.idle_timeout;
        match self.phase {
            Phase::Closed(_) => None,
            Phase::AwaitingHandshake { deadline } => Some(deadline.min(idle)),
            Phase::Open => Some(idle.min(self.last_sent + self.config.keepalive_interval)),
        }
    }

    /// Whether we dialled the peer, rather than it us.
    pub fn is_outgoing(&self) -> bool {
        self.outgoing
    }

    /// The peer id we introduce ourselves with.
    pub fn our_peer_id(&self) -> &PeerId {
        &self.config.peer_id
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed(_))
    }

    /// Why the session closed, if it did.
    pub fn close_reason(&self) -> Option<&WireError> {
        match &self.phase {
            Phase::Closed(e) => Some(e),
            _ => None,
        }
    }

    pub fn state(&self) -> &PeerState {
        &self.state
    }

    /// The pieces the peer was told we have: our bitfield, then each `have`.
    pub fn announced(&self) -> &Bitfield {
        &self.config.our_bitfield
    }

    /// How many of the peer's requests wait in the upload queue.
    pub fn queued_uploads(&self) -> usize {
        self.uploads.len()
    }

    /// The largest unservable-request count per 10 s window before the peer is dropped as
    /// a flooder: ten times the queue size, so a well-behaved peer whose in-flight requests
    /// meet a choke or a full queue never comes close.
    pub fn flood_limit(&self) -> usize {
        self.config
            .max_incoming_requests
            .saturating_mul(10)
            .max(100)
    }

    // ---- commands from the torrent -----------------------------------------------------
    //
    // Commands other than `have` do nothing until the handshake is complete (the
    // `Connected` event) or after the session closed: before the peer's handshake nothing
    // may be sent after ours, since the bitfield must come first.

    pub fn choke(&mut self) {
        if !self.is_open() || self.state.am_choking {
            return;
        }
        self.state.am_choking = true;
        self.enqueue(&Message::Choke);
        // Requests for allowed-fast pieces survive a choke (BEP 6); the rest are dropped.
        let granted = &self.state.granted_fast;
        let (keep, dropped): (Vec<Block>, Vec<Block>) = self
            .uploads
            .drain(..)
            .partition(|b| granted.contains(&b.piece));
        self.uploads = keep.into();
        if self.state.fast {
            for block in dropped {
                self.enqueue(&Message::Reject(block));
            }
        }
    }

    /// Lets the peer request `piece` while we choke it (BEP 6 allowed fast; see
    /// [`allowed_fast_set`](crate::allowed_fast_set)). Only with the fast extension.
    pub fn allow_fast(&mut self, piece: u32) {
        if self.is_open()
            && self.state.fast
            && piece < self.config.piece_count
            && self.state.granted_fast.insert(piece)
        {
            self.enqueue(&Message::AllowedFast(piece));
        }
    }

    pub fn unchoke(&mut self) {
        if !self.is_open() || !self.state.am_choking {
            return;
        }
        self.state.am_choking = false;
        self.enqueue(&Message::Unchoke);
    }

    /// Tells the peer whether we want its pieces; sends only on a change.
    pub fn interested(&mut self, interested: bool) {
        if !self.is_open() || self.state.am_interested == interested {
            return;
        }
        self.state.am_interested = interested;
        let msg = if interested {
            Message::Interested
        } else {
            Message::NotInterested
        };
        self.enqueue(&msg);
    }

    /// Records that we now have `piece` and, once connected, announces it.
    pub fn have(&mut self, piece: u32) {
        if piece >= self.config.piece_count {
            debug_assert!(false, "have({piece}) beyond piece count");
            return;
        }
        self.config.our_bitfield.set(piece as usize);
        if self.is_open() {
            self.enqueue(&Message::Have(piece));
        }
    }

    /// Suggests the peer fetch `piece` (BEP 6 `suggest`), one we have. Only with the fast
    /// extension.
    pub fn suggest(&mut self, piece: u32) {
        if self.is_open()
            && self.state.fast
            && piece < self.config.piece_count
            && self.config.our_bitfield.get(piece as usize)
        {
            self.enqueue(&Message::Suggest(piece));
        }
    }

    /// Requests a block. Returns false (and sends nothing) if it is already outstanding,
    /// the outstanding limit is reached, or the peer chokes us and has not allowed this
    /// piece as allowed-fast — a request it would ignore would otherwise hang forever.
    pub fn request(&mut self, block: Block) -> bool {
        if !self.is_open()
            || self.state.outstanding.len() >= self.config.max_outstanding_requests
            || self.state.outstanding.contains(&block)
        {
            return false;
        }
        if self.state.peer_choking
            && !(self.state.fast && self.state.allowed_fast.contains(&block.piece))
        {
            return false;
        }
        debug_assert!(self.check_block(block).is_ok(), "request for {block:?}");
        self.state.outstanding.insert(block);
        self.enqueue(&Message::Request(block));
        true
    }

    /// Withdraws an outstanding request. A block that arrives later is discarded.
    pub fn cancel(&mut self, block: Block) {
        if self.is_open() && self.state.outstanding.remove(&block) {
            self.enqueue(&Message::Cancel(block));
        }
    }

    /// The next request of the peer's to serve (oldest first); while we choke it, only
    /// requests for allowed-fast pieces are queued. The driver reads the block's data and
    /// passes it to [`PeerSession::send_block`], or calls [`PeerSession::reject`] if it
    /// cannot.
    pub fn next_upload(&mut self) -> Option<Block> {
        if !self.is_open() {
            return None;
        }
        self.uploads.pop_front()
    }

    /// The peer's queued requests, oldest first (see [`next_upload`](Self::next_upload)).
    pub fn upload_queue(&self) -> impl Iterator<Item = &Block> {
        self.uploads.iter()
    }

    /// Takes `block`, one of the queued requests, out of the queue to serve it now, out of
    /// turn (an uplink shared by many peers chooses what goes next); false if it is not
    /// queued or the session is closed.
    pub fn take_upload(&mut self, block: Block) -> bool {
        if !self.is_open() {
            return false;
        }
        match self.uploads.iter().position(|b| *b == block) {
            Some(at) => {
                self.uploads.remove(at);
                true
            }
            None => false,
        }
    }

    /// Sends a block taken from [`PeerSession::next_upload`].
    pub fn send_block(&mut self, block: Block, data: Bytes) {
        debug_assert_eq!(data.len(), block.length as usize, "block data length");
        let copied: Result<(), std::convert::Infallible> = self.send_block_with(block, |out| {
            out.copy_from_slice(&data);
            Ok(())
        });
        let Ok(()) = copied;
    }

    /// Like [`send_block`](Self::send_block), but `fill` writes the block's data straight
    /// into the outgoing buffer (a driver reads from disk into it, saving a copy and an
    /// allocation per block). If `fill` fails nothing is sent, and its error is returned.
    pub fn send_block_with<E>(
        &mut self,
        block: Block,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.is_open() {
            return Ok(());
        }
        let start = self.send.len();
        self.send.reserve(PIECE_HEADER_LEN + block.length as usize);
        piece_header(
            &mut self.send,
            block.piece,
            block.offset,
            block.length as usize,
        );
        let data = self.send.len();
        self.send.resize(data + block.length as usize, 0);
        if let Err(e) = fill(&mut self.send[data..]) {
            self.send.truncate(start);
            return Err(e);
        }
        self.state.uploaded += u64::from(block.length);
        self.last_sent = self.now;
        Ok(())
    }

    /// Sends a block whose data the driver puts on the wire itself, from a buffer it shares
    /// (a vectored write): returns every pending byte, as
    /// [`poll_transmit`](Self::poll_transmit) would, ending with the block's header; the
    /// driver must send exactly `block.length` bytes of the block's data right after them.
    /// `None` (nothing to send) if the session is not open.
    pub fn send_block_header(&mut self, block: Block) -> Option<Bytes> {
        if !self.is_open() {
            return None;
        }
        piece_header(
            &mut self.send,
            block.piece,
            block.offset,
            block.length as usize,
        );
        self.state.uploaded += u64::from(block.length);
        self.last_sent = self.now;
        Some(self.send.split().freeze())
    }

    /// Answers a [`SessionEvent::HashRequest`]: the hashes and their proof, or a reject
    /// when they are `None`.
    pub fn answer_hashes(&mut self, range: HashRange, hashes: Option<Vec<[u8; 32]>>) {
        if !self.is_open() {
            return;
        }
        match hashes {
            Some(hashes) => self.enqueue(&Message::Hashes { range, hashes }),
            None => self.enqueue(&Message::HashReject(range)),
        }
    }

    /// Refuses one of the peer's requests (queued, or taken but not servable, e.g. after
    /// a read error): removed from the queue, and answered with `reject` under BEP 6.
    pub fn reject(&mut self, block: Block) {
        if !self.is_open() {
            return;
        }
        self.uploads.retain(|b| *b != block);
        if self.state.fast {
            self.enqueue(&Message::Reject(block));
        }
    }

    /// Sends an extension message under the id the peer assigned (see
    /// [`ExtensionHandshake::id_of`]). Returns false if BEP 10 was not negotiated.
    pub fn send_extended(&mut self, id: u8, payload: Bytes) -> bool {
        if !self.is_open() || !self.state.extensions {
            return false;
        }
        self.enqueue(&Message::Extended { id, payload });
        true
    }

    /// Tells the peer whether we want anything more (BEP 21), if it takes libtorrent's
    /// `upload_only` message: sent when a download completes on a live connection (the
    /// handshake says it for connections made after).
    pub fn send_upload_only(&mut self, upload_only: bool) {
        let id = self
            .state
            .peer_extensions
            .as_ref()
            .and_then(|e| e.id_of(UPLOAD_ONLY));
        if let Some(id) = id {
            self.send_extended(id, Bytes::from(vec![u8::from(upload_only)]));
        }
    }

    /// Tells the peer the port to reach us on from now on (a router forwards it to us):
    /// our extension handshake again, with that `p`. BEP 10 allows a handshake to be
    /// sent again; libtorrent and shoal merge it into the first.
    pub fn send_listen_port(&mut self, port: u16) {
        self.config.extension_handshake.p = Some(port);
        if self.is_open() && self.state.extensions {
            self.send_extension_handshake();
        }
    }

    /// Tells the peer our DHT port (BEP 5).
    pub fn send_dht_port(&mut self, port: u16) {
        if self.is_open() {
            self.enqueue(&Message::Port(port));
        }
    }

    // ---- internals ---------------------------------------------------------------------

    fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open)
    }

    fn send_extension_handshake(&mut self) {
        let mut hs = self.config.extension_handshake.clone();
        if hs.reqq.is_none() {
            let reqq = self.config.max_incoming_requests.min(MAX_REQQ as usize);
            hs.reqq = Some(reqq as u32);
        }
        self.enqueue(&Message::Extended {
            id: EXTENDED_HANDSHAKE_ID,
            payload: hs.encode(),
        });
    }

    fn enqueue(&mut self, msg: &Message) {
        msg.encode(&mut self.send);
        self.last_sent = self.now;
    }

    fn emit(&mut self, event: SessionEvent) {
        self.events.push_back(event);
    }

    fn close(&mut self, error: WireError) {
        self.phase = Phase::Closed(error.clone());
        self.send.clear();
        self.recv.clear();
        self.uploads.clear();
        self.emit(SessionEvent::Closed(error));
    }

    fn send_handshake(&mut self) {
        let ours = Handshake::new(
            self.config.info_hash,
            self.config.peer_id,
            self.config.reserved,
        );
        ours.encode(&mut self.send);
        self.last_sent = self.now;
    }

    fn check_handshake(&self, theirs: &Handshake) -> Result<(), WireError> {
        if theirs.info_hash != self.config.info_hash {
            return Err(WireError::InfoHashMismatch {
                expected: self.config.info_hash,
                got: theirs.info_hash,
            });
        }
        if theirs.peer_id == self.config.peer_id {
            return Err(WireError::SelfConnection);
        }
        Ok(())
    }

    /// Both handshakes are done: negotiate, then send our pieces and extension handshake.
    fn on_handshake(&mut self, theirs: Handshake) {
        let ours = Handshake::new(
            self.config.info_hash,
            self.config.peer_id,
            self.config.reserved,
        );
        self.phase = Phase::Open;
        self.state.peer_id = Some(theirs.peer_id);
        self.state.fast = ours.supports_fast() && theirs.supports_fast();
        self.state.extensions = ours.supports_extensions() && theirs.supports_extensions();

        let pieces = &self.config.our_bitfield;
        let opening = if self.state.fast {
            if pieces.none() {
                Some(Message::HaveNone)
            } else if pieces.all() {
                Some(Message::HaveAll)
            } else {
                Some(Message::Bitfield(Bytes::copy_from_slice(pieces.as_bytes())))
            }
        } else if pieces.none() {
            // BEP 3: a peer with no pieces may skip the bitfield.
            None
        } else {
            Some(Message::Bitfield(Bytes::copy_from_slice(pieces.as_bytes())))
        };
        if let Some(msg) = opening {
            self.enqueue(&msg);
        }
        if self.state.extensions {
            self.send_extension_handshake();
        }
        self.emit(SessionEvent::Connected {
            peer_id: theirs.peer_id,
            fast: self.state.fast,
            extensions: self.state.extensions,
        });
    }

    fn process_input(&mut self) -> Result<(), WireError> {
        if let Phase::AwaitingHandshake { .. } = self.phase {
            let Some(theirs) = parse_handshake(&self.recv)? else {
                return Ok(());
            };
            self.check_handshake(&theirs)?;
            self.recv.advance(HANDSHAKE_LEN);
            self.on_handshake(theirs);
        }
        let mut recv = std::mem::take(&mut self.recv);
        let result = self.process_frames(&mut recv);
        self.recv = recv;
        result
    }

    /// Handles every complete message at the front of `frames`, consuming them.
    fn process_frames(&mut self, frames: &mut impl Frames) -> Result<(), WireError> {
        while let Some(msg) = Message::decode(frames, self.max_message_len)? {
            self.on_message(msg)?;
        }
        Ok(())
    }

    fn on_message(&mut self, msg: Message) -> Result<(), WireError> {
        match msg {
            Message::KeepAlive => {}
            Message::Choke => {
                let was_unchoked = !self.state.peer_choking;
                self.state.peer_choking = true;
                let dropped: Vec<Block> = if self.state.fast {
                    Vec::new()
                } else {
                    std::mem::take(&mut self.state.outstanding)
                        .into_iter()
                        .collect()
                };
                if was_unchoked || !dropped.is_empty() {
                    self.emit(SessionEvent::Choked { dropped });
                }
            }
            Message::Unchoke => {
                if self.state.peer_choking {
                    self.state.peer_choking = false;
                    self.emit(SessionEvent::Unchoked);
                }
            }
            Message::Interested => {
                if !self.state.peer_interested {
                    self.state.peer_interested = true;
                    self.emit(SessionEvent::Interested);
                }
            }
            Message::NotInterested => {
                if self.state.peer_interested {
                    self.state.peer_interested = false;
                    self.emit(SessionEvent::NotInterested);
                }
            }
            Message::Have(piece) => {
                self.check_piece(piece)?;
                if self.state.peer_pieces.set(piece as usize) {
                    self.emit(SessionEvent::Have(piece));
                }
            }
            Message::Bitfield(bytes) => {
                let count = self.config.piece_count as usize;
                let bits = Bitfield::from_bytes(&bytes, count).ok_or(WireError::BadBitfield)?;
                // BEP 3 wants the bitfield first and once, but real clients send it
                // late (Transmission after its extension handshake) or twice (aria2: a
                // have-none, then a bitfield). Merge: nothing the peer announced is lost.
                let mut merged = bits;
                for piece in self.state.peer_pieces.iter_ones() {
                    merged.set(piece);
                }
                self.state.peer_pieces = merged;
                self.emit(SessionEvent::PeerBitfield);
            }
            Message::HaveAll => {
                self.require_fast(14)?;
                self.state.peer_pieces = Bitfield::full(self.config.piece_count as usize);
                self.emit(SessionEvent::PeerBitfield);
            }
            Message::HaveNone => {
                // Nothing to record: the peer's pieces start empty, and `have`s that
                // came before a late have-none still count.
                self.require_fast(15)?;
                self.emit(SessionEvent::PeerBitfield);
            }
            Message::Request(block) => self.on_request(block)?,
            Message::Piece {
                piece,
                offset,
                data,
            } => {
                // `data` fits in a message whose length is a u32.
                let length = data.len() as u32;
                let block = Block {
                    piece,
                    offset,
                    length,
                };
                if self.state.outstanding.remove(&block) {
                    self.state.downloaded += u64::from(length);
                    self.emit(SessionEvent::BlockReceived { block, data });
                } else {
                    self.state.unrequested += u64::from(length);
                }
            }
            Message::Cancel(block) => {
                self.check_block(block)?;
                if let Some(pos) = self.uploads.iter().position(|b| *b == block) {
                    self.uploads.remove(pos);
                    // BEP 6: every request gets a piece or a reject, cancelled ones too.
                    if self.state.fast {
                        self.enqueue(&Message::Reject(block));
                    }
                }
            }
            Message::Port(port) => self.emit(SessionEvent::DhtPort(port)),
            // BEP 52: every hash request gets the hashes or a reject; the torrent
            // answers (see `answer_hashes`) up to a budget per window, the rest are
            // rejected here.
            Message::HashRequest(range) => {
                self.roll_flood_window();
                if self.hash_requests < MAX_HASH_REQUESTS {
                    self.hash_requests += 1;
                    self.emit(SessionEvent::HashRequest(range));
                } else {
                    self.enqueue(&Message::HashReject(range));
                }
            }
            // We never ask for hashes.
            Message::Hashes { .. } | Message::HashReject(_) => {}
            Message::Suggest(piece) => {
                self.require_fast(13)?;
                self.check_piece(piece)?;
                self.emit(SessionEvent::Suggest(piece));
            }
            Message::Reject(block) => {
                self.require_fast(16)?;
                self.check_block(block)?;
                // A reject for something we cancelled (or never asked) is harmless.
                if self.state.outstanding.remove(&block) {
                    self.emit(SessionEvent::Rejected(block));
                }
            }
            Message::AllowedFast(piece) => {
                self.require_fast(17)?;
                self.check_piece(piece)?;
                if self.state.allowed_fast.len() < MAX_ALLOWED_FAST
                    && self.state.allowed_fast.insert(piece)
                {
                    self.emit(SessionEvent::AllowedFast(piece));
                }
            }
            Message::Extended { id, payload } => {
                if !self.state.extensions {
                    return Err(WireError::ExtensionsNotNegotiated);
                }
                if id == EXTENDED_HANDSHAKE_ID {
                    let newer = ExtensionHandshake::decode(&payload)?;
                    let merged = self
                        .state
                        .peer_extensions
                        .get_or_insert_with(Default::default);
                    merged.update(newer);
                    let merged = merged.clone();
                    if let Some(upload_only) = merged.upload_only {
                        self.state.peer_upload_only = upload_only;
                    }
                    self.emit(SessionEvent::ExtensionHandshake(merged));
                } else if Some(id) == self.config.extension_handshake.id_of(UPLOAD_ONLY) {
                    // One byte, as libtorrent sends it; anything else is ignored, as
                    // libtorrent ignores it.
                    if let [flag] = payload[..] {
                        self.state.peer_upload_only = flag != 0;
                        self.emit(SessionEvent::UploadOnly);
                    }
                } else {
                    self.emit(SessionEvent::Extended { id, payload });
                }
            }
        }
        Ok(())
    }

    /// A request from the peer: queue it if we can serve it, otherwise drop it (rejecting
    /// under BEP 6) and count it towards the flood limit.
    fn on_request(&mut self, block: Block) -> Result<(), WireError> {
        self.check_block(block)?;
        self.roll_flood_window();
        let duplicate = self.uploads.contains(&block);
        let servable = (!self.state.am_choking || self.state.granted_fast.contains(&block.piece))
            && self.config.our_bitfield.get(block.piece as usize)
            && self.uploads.len() < self.config.max_incoming_requests
            && !duplicate;
        if servable {
            self.uploads.push_back(block);
            return Ok(());
        }
        self.unservable_requests += 1;
        if self.unservable_requests > self.flood_limit() {
            return Err(WireError::RequestFlood(self.flood_limit()));
        }
        // A duplicate is still queued and will be served once: no reject for it.
        if self.state.fast && !duplicate {
            self.enqueue(&Message::Reject(block));
        }
        Ok(())
    }

    /// Starts a new window for the request budgets once the current one is over.
    fn roll_flood_window(&mut self) {
        if self.now.duration_since(self.flood_window_start) >= FLOOD_WINDOW {
            self.flood_window_start = self.now;
            self.unservable_requests = 0;
            self.hash_requests = 0;
        }
    }

    fn require_fast(&self, id: u8) -> Result<(), WireError> {
        if self.state.fast {
            Ok(())
        } else {
            Err(WireError::FastNotNegotiated(id))
        }
    }

    fn check_piece(&self, piece: u32) -> Result<(), WireError> {
        if piece < self.config.piece_count {
            Ok(())
        } else {
            Err(WireError::PieceOutOfRange {
                piece,
                piece_count: self.config.piece_count,
            })
        }
    }

    /// In range: existing piece, length 1..=16 KiB, and ending inside the piece.
    fn check_block(&self, block: Block) -> Result<(), WireError> {
        self.check_piece(block.piece)?;
        let end = u64::from(block.offset) + u64::from(block.length);
        if valid_block_length(block.length) && end <= self.config.piece_size(block.piece) {
            Ok(())
        } else {
            Err(WireError::InvalidBlock(block))
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
