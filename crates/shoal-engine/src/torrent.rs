//! The torrent actor: one task that owns a torrent's peers, picker, choker and files.
//!
//! Lifecycle: check what is on disk (resume state if the files are unchanged, else a
//! parallel recheck) → connect to known peers and accept incoming ones → download,
//! verifying each piece as it completes → seed (or stop, with `seed: false`). A shutdown
//! signal saves the resume state and returns.
//!
//! Every input (bytes from a socket, a new connection, a timer tick) is fed to the
//! sans-IO cores; what they decide is carried out at once: blocks are requested, written,
//! hashed, served, and bytes are queued to the socket writers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use shoal_core::{Bitfield, Block, Metainfo, PeerId, BLOCK_SIZE};
use shoal_storage::{resume, FileLayout, StorageError, TorrentFiles};
use shoal_swarm::{
    choke_round, BlockData, ChokeSchedule, Choker, ChokerConfig, PeerKey, PeerLink, PiecePicker,
    RateMeter, Received, Reveal, SmartBan, SuperSeed, INITIAL_RATE_GUESS,
};
use shoal_wire::metadata::{self, OUR_UT_METADATA_ID, UT_METADATA};
use shoal_wire::pex::{PexPeer, OUR_UT_PEX_ID, UT_PEX};
use shoal_wire::{ExtensionHandshake, PeerSession, SessionConfig, SessionEvent};
use tokio::sync::{mpsc, watch};

use crate::addresses::AddressBook;
use crate::connection::{self, Backlog, Input, Outgoing};
use crate::disk::{Disk, DiskResult};
use crate::{RateLimit, Stats};

/// How a torrent is to be run.
#[derive(Debug)]
pub struct TorrentConfig {
    pub metainfo: Arc<Metainfo>,
    /// The folder the torrent's files go in (the torrent's name is a file or folder in it).
    pub download_dir: PathBuf,
    /// For a single-file torrent: the file's actual path, when it differs from
    /// `download_dir/name` (seeding a renamed file).
    pub single_file_path: Option<PathBuf>,
    /// Where resume state is kept.
    pub state_dir: PathBuf,
    /// Address to accept peers on; `None` to accept none.
    pub listen: Option<SocketAddr>,
    /// Peers to connect to.
    pub peers: Vec<SocketAddr>,
    /// More peers as they are discovered while the torrent runs (trackers, DHT, PEX).
    /// Addresses already known are ignored, so a source may repeat itself freely.
    pub peer_feed: Option<mpsc::UnboundedReceiver<Vec<SocketAddr>>>,
    /// Keep seeding after the download completes (until shutdown).
    pub seed: bool,
    /// Super-seed (BEP 16) when every piece is here from the start: announce no pieces,
    /// reveal them one at a time to the peers we upload to, so that an initial seed's
    /// scarce upload sends each piece about once.
    pub super_seed: bool,
    /// Bytes per second; `None` for unlimited.
    pub max_upload_rate: Option<u64>,
    pub max_download_rate: Option<u64>,
    pub max_connections: usize,
    /// Threads for the initial recheck (0: one per core).
    pub check_threads: usize,
}

/// What happened, for the user interface.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// Checking existing data: bytes checked so far of the total.
    Checking {
        done: u64,
        total: u64,
    },
    /// Ready to transfer; `have` pieces were already on disk (and verified).
    Started {
        have: usize,
        piece_count: usize,
        listen: Option<SocketAddr>,
        resumed: bool,
    },
    PieceVerified {
        piece: u32,
        have: usize,
    },
    PieceFailed {
        piece: u32,
    },
    PeerConnected {
        addr: SocketAddr,
        client: String,
    },
    /// A connection ended; `downloaded` and `uploaded` are the payload bytes it carried.
    PeerDisconnected {
        addr: SocketAddr,
        reason: String,
        downloaded: u64,
        uploaded: u64,
    },
    PeerBanned {
        addr: SocketAddr,
    },
    Stats(Stats),
    Completed {
        downloaded: u64,
    },
}

/// How [`run`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every piece is verified on disk.
    Complete,
    /// Stopped by the shutdown signal before completion.
    Stopped,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Runs a torrent until it completes (without `seed`) or `shutdown` becomes true.
pub async fn run(
    config: TorrentConfig,
    events: mpsc::UnboundedSender<EngineEvent>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Outcome, EngineError> {
    let info = &config.metainfo.info;
    let layout = match &config.single_file_path {
        Some(path) if !info.multi_file => FileLayout::new(
            [(path.clone(), info.total_length, false)],
            info.piece_length,
        ),
        _ => FileLayout::for_torrent(info, &config.download_dir),
    };
    let resume_path = resume::resume_path(&config.state_dir, &config.metainfo.info_hash);
    let (have, resumed) = match resume::load(&resume_path, &config.metainfo.info_hash, &layout) {
        Some(have) => (have, true),
        None => (check_existing(&config, &layout, &events).await, false),
    };
    let files = Arc::new(TorrentFiles::new(&config.download_dir, layout));
    let (disk_results, mut disk_results_rx) = mpsc::unbounded_channel();
    let disk = Disk::spawn(files.clone(), config.metainfo.clone(), disk_results);

    let (to_actor, inputs) = mpsc::channel(INPUT_QUEUE);
    let listen = match config.listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| EngineError::Listen { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| EngineError::Listen { addr, source })?;
            let acceptor =
                connection::spawn_acceptor(listener, config.metainfo.info_hash.0, to_actor.clone());
            Some((bound, acceptor))
        }
        None => None,
    };
    let _ = events.send(EngineEvent::Started {
        have: have.count_ones(),
        piece_count: info.piece_count(),
        listen: listen.as_ref().map(|(a, _)| *a),
        resumed,
    });

    let mut rng = StdRng::from_entropy();
    let mut random = [0u8; 12];
    rng.fill_bytes(&mut random);
    let now = Instant::now();
    let mut addresses = AddressBook::default();
    for peer in &config.peers {
        addresses.add(*peer, now);
    }
    let mut actor = Actor {
        picker: PiecePicker::new(
            info.piece_count() as u32,
            info.piece_length,
            info.total_length,
            &have,
        ),
        choker: Choker::new(ChokerConfig::default()),
        smart_ban: SmartBan::default(),
        super_seed: have.all().then(|| {
            let by = if config.super_seed {
                Reveal::Have
            } else {
                Reveal::Suggest
            };
            SuperSeed::new(
                info.piece_count() as u32,
                info.piece_length,
                by.per_peer(),
                by,
            )
        }),
        disk,
        peer_id: PeerId::shoal(random),
        files,
        addresses,
        peers: HashMap::new(),
        next_key: 0,
        rng,
        to_actor,
        download_limit: Arc::new(RateLimit::new(config.max_download_rate)),
        upload_limit: Arc::new(RateLimit::new(config.max_upload_rate)),
        downloaded: RateMeter::default(),
        uploaded: RateMeter::default(),
        events,
        resume_path,
        completed_announced: have.all(),
        choke_schedule: ChokeSchedule::default(),
        last_stats: now,
        last_resume_save: now,
        config,
        scratch: Vec::new(),
    };
    let outcome = actor
        .run_loop(inputs, &mut disk_results_rx, &mut shutdown)
        .await;
    if let Some((_, acceptor)) = listen {
        acceptor.abort();
    }
    actor.shutdown(&mut disk_results_rx);
    outcome
}

/// The next batch from a peer feed; pending forever once there is no feed.
async fn next_peers(
    feed: &mut Option<mpsc::UnboundedReceiver<Vec<SocketAddr>>>,
) -> Option<Vec<SocketAddr>> {
    match feed {
        Some(feed) => feed.recv().await,
        None => std::future::pending().await,
    }
}

/// Verifies data already on disk (on all cores, off the async threads), reporting progress.
async fn check_existing(
    config: &TorrentConfig,
    layout: &FileLayout,
    events: &mpsc::UnboundedSender<EngineEvent>,
) -> Bitfield {
    let progress = Arc::new(AtomicU64::new(0));
    let total = layout.total_length();
    let task = {
        let (layout, metainfo, progress, threads) = (
            layout.clone(),
            config.metainfo.clone(),
            progress.clone(),
            config.check_threads,
        );
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        tokio::task::spawn_blocking(move || {
            shoal_storage::verify(&layout, &metainfo.info, threads, &progress)
        })
    };
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    tokio::pin!(task);
    loop {
        tokio::select! {
            result = &mut task => {
                let _ = events.send(EngineEvent::Checking { done: total, total });
                return result.expect("recheck does not panic");
            }
            _ = ticker.tick() => {
                let _ = events.send(EngineEvent::Checking { done: progress.load(Ordering::Relaxed), total });
            }
        }
    }
}

struct Peer {
    addr: SocketAddr,
    link: PeerLink,
    writer: mpsc::UnboundedSender<Outgoing>,
    backlog: Backlog,
    reader: tokio::task::JoinHandle<()>,
    /// Peer exchange (BEP 11) with this peer.
    pex: PexPeer,
}

impl Peer {
    /// Hands what the session wants to send to the socket's writer.
    fn flush(&mut self) {
        self.flush_block(None);
    }

    /// Hands what the session wants to send to the socket's writer, the last of it a
    /// block of `piece` if given.
    fn flush_block(&mut self, piece: Option<u32>) {
        if let Some(bytes) = self.link.session.poll_transmit() {
            self.backlog.fetch_add(bytes.len(), Ordering::Relaxed);
            let _ = self.writer.send(Outgoing { bytes, piece });
        }
    }
}

struct Actor {
    config: TorrentConfig,
    picker: PiecePicker,
    choker: Choker,
    smart_ban: SmartBan,
    /// An initial seed's steering: super-seeding (`have`) if configured, otherwise
    /// `suggest`s.
    super_seed: Option<SuperSeed>,
    disk: Disk,
    peer_id: PeerId,
    files: Arc<TorrentFiles>,
    addresses: AddressBook,
    peers: HashMap<PeerKey, Peer>,
    next_key: u64,
    rng: StdRng,
    to_actor: mpsc::Sender<Input>,
    download_limit: Arc<RateLimit>,
    upload_limit: Arc<RateLimit>,
    downloaded: RateMeter,
    uploaded: RateMeter,
    events: mpsc::UnboundedSender<EngineEvent>,
    resume_path: PathBuf,
    completed_announced: bool,
    choke_schedule: ChokeSchedule,
    last_stats: Instant,
    last_resume_save: Instant,
    scratch: Vec<Block>,
}

/// Inputs queued for the actor before connection tasks wait. Most are socket reads (up
/// to 256 KiB each), so this bounds what the actor has not looked at yet: when the disk
/// thread is behind and the actor waits on it, readers stop reading and TCP slows the peers.
const INPUT_QUEUE: usize = 32;
/// Bytes queued for one socket before its writer catches up: about half a second of
/// the peer's measured upload rate, within these bounds. Queuing more only delays every
/// block behind it (under an upload limit, a few MiB is many seconds), and a peer that
/// gets its pieces late shares them late.
const MIN_BACKLOG: usize = 256 * 1024;
const MAX_BACKLOG: usize = 4 * 1024 * 1024;
const BACKLOG_TIME: f64 = 0.5;
const RESUME_SAVE_INTERVAL: Duration = Duration::from_secs(30);

impl Actor {
    async fn run_loop(
        &mut self,
        mut inputs: mpsc::Receiver<Input>,
        disk_results: &mut mpsc::UnboundedReceiver<DiskResult>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Outcome, EngineError> {
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut feed = self.config.peer_feed.take();
        if self.picker.is_complete() {
            self.complete()?;
            if !self.config.seed {
                return Ok(Outcome::Complete);
            }
        }
        loop {
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return Ok(if self.picker.is_complete() { Outcome::Complete } else { Outcome::Stopped });
                    }
                }
                Some(result) = disk_results.recv() => self.on_disk(result)?,
                Some(input) = inputs.recv() => self.handle(input)?,
                found = next_peers(&mut feed) => match found {
                    Some(found) => self.add_addresses(found),
                    None => feed = None,
                },
                _ = ticker.tick() => self.tick()?,
            }
            // Whatever arrived in this round goes to the disk thread as one batch.
            self.disk.flush();
            if self.picker.is_complete() && !self.completed_announced {
                self.complete()?;
                if !self.config.seed {
                    return Ok(Outcome::Complete);
                }
            }
        }
    }

    fn handle(&mut self, input: Input) -> Result<(), EngineError> {
        let now = Instant::now();
        match input {
            Input::Connected {
                addr,
                stream,
                incoming_handshake,
            } => self.add_peer(addr, stream, incoming_handshake, now),
            Input::ConnectFailed { addr } => self.addresses.disconnected(addr, true, now),
            Input::Data { key, bytes } => {
                let Some(peer) = self.peers.get_mut(&key) else {
                    return Ok(());
                };
                if let Err(e) = peer.link.session.handle_input_bytes(now, bytes) {
                    self.remove_peer(key, &e.to_string(), now);
                    return Ok(());
                }
                self.service(key, now)?;
            }
            Input::Closed { key, reason } => self.remove_peer(key, &reason, now),
        }
        Ok(())
    }

    fn add_addresses(&mut self, found: Vec<SocketAddr>) {
        let now = Instant::now();
        let own = self.config.listen;
        for addr in found.into_iter().filter(|a| Some(*a) != own) {
            self.addresses.add(addr, now);
        }
    }

    fn session_config(&self) -> SessionConfig {
        let info = &self.config.metainfo.info;
        let mut config = SessionConfig::new(
            self.config.metainfo.info_hash,
            self.peer_id,
            info.piece_count() as u32,
            info.piece_length,
            info.total_length,
            // A super-seed announces nothing at first; pieces are revealed one by one.
            match &self.super_seed {
                Some(s) if s.reveals_by() == Reveal::Have => Bitfield::new(info.piece_count()),
                _ => self.picker.have().clone(),
            },
        );
        config.extension_handshake = ExtensionHandshake {
            m: extensions_offered(&self.config.metainfo),
            v: Some(concat!("shoal ", env!("CARGO_PKG_VERSION")).to_owned()),
            p: self.config.listen.map(|a| a.port()),
            metadata_size: Some(self.config.metainfo.info_bytes.len() as u64),
            ..ExtensionHandshake::default()
        };
        config
    }

    fn add_peer(
        &mut self,
        addr: SocketAddr,
        stream: tokio::net::TcpStream,
        incoming: Option<Vec<u8>>,
        now: Instant,
    ) {
        if self.peers.len() >= self.config.max_connections || self.addresses.is_banned(&addr) {
            if incoming.is_none() {
                self.addresses.disconnected(addr, false, now);
            }
            return;
        }
        let config = self.session_config();
        let session = match incoming {
            None => PeerSession::new(config, now),
            Some(bytes) => {
                let handshake = match shoal_wire::parse_handshake(&bytes) {
                    Ok(Some(h)) => h,
                    _ => return,
                };
                match PeerSession::new_after_handshake(config, handshake, now) {
                    Ok(session) => session,
                    Err(_) => return,
                }
            }
        };
        self.addresses.connected(addr, now);
        let key = PeerKey(self.next_key);
        self.next_key += 1;
        let (read, write) = stream.into_split();
        let (writer, writer_rx) = mpsc::unbounded_channel();
        let backlog = Backlog::default();
        connection::spawn_writer(write, self.upload_limit.clone(), backlog.clone(), writer_rx);
        let reader = connection::spawn_reader(
            key,
            read,
            self.download_limit.clone(),
            self.to_actor.clone(),
        );
        let piece_count = self.config.metainfo.info.piece_count();
        self.peers.insert(
            key,
            Peer {
                addr,
                link: PeerLink::new(session, piece_count, now),
                writer,
                backlog,
                reader,
                pex: PexPeer::new(now),
            },
        );
        let _ = self.service(key, now);
    }

    fn remove_peer(&mut self, key: PeerKey, reason: &str, now: Instant) {
        let Some(peer) = self.peers.remove(&key) else {
            return;
        };
        peer.reader.abort();
        self.picker.peer_disconnected(key, &peer.link.counted);
        if let Some(super_seed) = &mut self.super_seed {
            super_seed.peer_disconnected(key);
        }
        self.addresses
            .disconnected(peer.addr, !peer.link.connected, now);
        self.choke_schedule.changed();
        if peer.link.connected {
            let _ = self.events.send(EngineEvent::PeerDisconnected {
                addr: peer.addr,
                reason: reason.to_owned(),
                downloaded: peer.link.downloaded.total,
                uploaded: peer.link.uploaded.total,
            });
        }
    }

    fn ban(&mut self, key: PeerKey, now: Instant) {
        if let Some(peer) = self.peers.get(&key) {
            let addr = peer.addr;
            self.addresses.ban(addr);
            let _ = self.events.send(EngineEvent::PeerBanned { addr });
            self.remove_peer(key, "banned: sent data that failed the hash check", now);
        }
    }

    /// Processes a peer's events, then tops up its requests, serves its uploads, and
    /// flushes what the session wants to send.
    fn service(&mut self, key: PeerKey, now: Instant) -> Result<(), EngineError> {
        loop {
            let Some(peer) = self.peers.get_mut(&key) else {
                return Ok(());
            };
            let Some(event) = peer.link.session.poll_event() else {
                break;
            };
            self.on_event(key, event, now)?;
        }
        let Some(peer) = self.peers.get_mut(&key) else {
            return Ok(());
        };
        if peer.link.session.is_closed() {
            let reason = peer
                .link
                .session
                .close_reason()
                .map_or("closed".to_owned(), |e| e.to_string());
            self.remove_peer(key, &reason, now);
            return Ok(());
        }
        self.request_more(key);
        self.serve_uploads(key)?;
        self.flush(key);
        Ok(())
    }

    fn flush(&mut self, key: PeerKey) {
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.flush();
        }
    }

    fn on_event(
        &mut self,
        key: PeerKey,
        event: SessionEvent,
        now: Instant,
    ) -> Result<(), EngineError> {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        match event {
            SessionEvent::Connected { peer_id, fast, .. } => {
                peer.link.connected = true;
                let client = client_name(&peer_id.0);
                let _ = self.events.send(EngineEvent::PeerConnected {
                    addr: peer.addr,
                    client,
                });
                if fast {
                    let info_hash = &self.config.metainfo.info_hash;
                    let ip = peer.addr.ip();
                    peer.link
                        .grant_allowed_fast(info_hash, ip, self.picker.have());
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
            SessionEvent::BlockReceived { block, data } => self.on_block(key, block, data, now)?,
            SessionEvent::Closed(_) => {}
            SessionEvent::AllowedFast(_) => self.request_more(key),
            SessionEvent::Extended {
                id: OUR_UT_METADATA_ID,
                payload,
            } => {
                // BEP 9: serve our info dictionary to peers that came from a magnet link.
                let extensions = peer.link.session.state().peer_extensions.as_ref();
                let their_id = extensions.and_then(|e| e.id_of(UT_METADATA));
                let info = &self.config.metainfo.info_bytes;
                if let (Some(their_id), Some(answer)) = (their_id, metadata::answer(info, &payload))
                {
                    if peer.backlog.load(Ordering::Relaxed) < MAX_BACKLOG {
                        peer.link.session.send_extended(their_id, answer.encode());
                    }
                }
            }
            SessionEvent::Extended {
                id: OUR_UT_PEX_ID,
                payload,
            } if !self.config.metainfo.info.private => match peer.pex.on_receive(now, &payload) {
                Ok(found) => self.add_addresses(found),
                Err(e) => self.remove_peer(key, &e.to_string(), now),
            },
            SessionEvent::Suggest(piece) => {
                // Fetched first when still wanted (as libtorrent does): a seed suggests
                // what it has in its cache, or what it wants spread (BEP 16).
                peer.link.suggested.add(piece, self.picker.have());
            }
            SessionEvent::Unchoked
            | SessionEvent::DhtPort(_)
            | SessionEvent::ExtensionHandshake(_)
            | SessionEvent::Extended { .. } => {}
        }
        Ok(())
    }

    /// A free upload slot is given at once, as libtorrent does, rather than at the next
    /// choker round.
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

    fn on_block(
        &mut self,
        key: PeerKey,
        block: Block,
        data: Bytes,
        now: Instant,
    ) -> Result<(), EngineError> {
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
                self.disk.write(block, data, piece_complete);
            }
            Received::Duplicate | Received::Unexpected => {}
        }
        Ok(())
    }

    fn on_disk(&mut self, result: DiskResult) -> Result<(), EngineError> {
        match result {
            DiskResult::Piece { piece, good } => self.piece_hashed(piece, good, Instant::now()),
            DiskResult::Failed(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Acts on a piece the disk thread has hashed (and written).
    fn piece_hashed(&mut self, piece: u32, good: bool, now: Instant) {
        if good {
            if self.smart_ban.is_watched(piece) {
                let blocks = self.read_blocks(
                    piece,
                    (0..self.picker.blocks_in_piece(piece)).map(|i| i * BLOCK_SIZE),
                );
                let liars = self.smart_ban.piece_passed(
                    piece,
                    blocks
                        .iter()
                        .map(|(offset, data)| (*offset, data.as_slice())),
                );
                for liar in liars {
                    self.ban(liar, now);
                }
            }
            self.picker.piece_verified(piece);
            let have = self.picker.have().count_ones();
            let _ = self.events.send(EngineEvent::PieceVerified { piece, have });
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for key in keys {
                let peer = self.peers.get_mut(&key).expect("listed");
                peer.link.session.have(piece);
                peer.link.update_interest(&self.picker);
                self.flush(key);
            }
        } else {
            let _ = self.events.send(EngineEvent::PieceFailed { piece });
            // The bad data is still on disk: read it back so smart ban can compare it with
            // the good copy later.
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
            for liar in liars {
                self.ban(liar, now);
            }
        }
    }

    /// Reads blocks of `piece` at the given offsets (shorter at the piece's end); a block
    /// that cannot be read comes back empty.
    fn read_blocks(&self, piece: u32, offsets: impl Iterator<Item = u32>) -> Vec<(u32, Vec<u8>)> {
        let size = self.picker.piece_size(piece);
        let start = u64::from(piece) * u64::from(self.config.metainfo.info.piece_length);
        offsets
            .map(|offset| {
                let mut data = vec![0u8; BLOCK_SIZE.min(size - offset) as usize];
                if self
                    .files
                    .read(start + u64::from(offset), &mut data)
                    .is_err()
                {
                    data.clear();
                }
                (offset, data)
            })
            .collect()
    }

    fn request_more(&mut self, key: PeerKey) {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        peer.link.request_more(
            key,
            &mut self.picker,
            INITIAL_RATE_GUESS as f64,
            &mut self.rng,
            &mut self.scratch,
        );
    }

    fn serve_uploads(&mut self, key: PeerKey) -> Result<(), EngineError> {
        let piece_length = u64::from(self.config.metainfo.info.piece_length);
        let peer = self.peers.get_mut(&key).expect("caller checked");
        let cap =
            ((peer.link.uploaded.rate() * BACKLOG_TIME) as usize).clamp(MIN_BACKLOG, MAX_BACKLOG);
        while peer.backlog.load(Ordering::Relaxed) < cap {
            let Some(block) = peer.link.session.next_upload() else {
                break;
            };
            if !self.picker.have().get(block.piece as usize) {
                peer.link.session.reject(block);
                continue;
            }
            let at = u64::from(block.piece) * piece_length + u64::from(block.offset);
            let served = match peer
                .link
                .session
                .send_block_with(block, |out| self.files.read(at, out))
            {
                Ok(()) => {
                    peer.link.uploaded.add(u64::from(block.length));
                    self.uploaded.add(u64::from(block.length));
                    if let Some(super_seed) = &mut self.super_seed {
                        super_seed.block_sent(block.piece);
                    }
                    Some(block.piece)
                }
                Err(e) => {
                    // Data we claimed vanished (deleted or truncated files): stop claiming it.
                    tracing::warn!("cannot serve piece {}: {e}", block.piece);
                    peer.link.session.reject(block);
                    None
                }
            };
            // Flush as we go so a large queue doesn't sit in the session's buffer.
            peer.flush_block(served);
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<(), EngineError> {
        let now = Instant::now();
        // Connect to peers that are due.
        let slots = self.config.max_connections.saturating_sub(self.peers.len());
        for addr in self.addresses.due(now, slots.min(10)) {
            connection::spawn_connect(
                addr,
                self.config.listen.map(|a| a.ip()),
                Duration::from_secs(10),
                self.to_actor.clone(),
            );
        }
        // Timers, snubbing and uploads that waited for the writer's backlog to drain.
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for &key in &keys {
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            peer.link.session.handle_timeout(now);
            peer.link.cancel_if_snubbed(key, now, &mut self.picker);
            self.service(key, now)?;
        }
        self.send_pex(now);
        if self.choke_schedule.due(now) {
            self.run_choker(now);
        }
        if now.duration_since(self.last_stats) >= Duration::from_secs(1) {
            self.report_stats(now);
        }
        if now.duration_since(self.last_resume_save) >= RESUME_SAVE_INTERVAL {
            self.save_resume();
            self.last_resume_save = now;
        }
        Ok(())
    }

    /// BEP 11: tells each peer that speaks ut_pex about our other peers (their listen
    /// addresses), at most once a minute; never for a private torrent (BEP 27).
    fn send_pex(&mut self, now: Instant) {
        if self.config.metainfo.info.private {
            return;
        }
        let listen_addr = |p: &Peer| match p
            .link
            .session
            .state()
            .peer_extensions
            .as_ref()
            .and_then(|e| e.p)
        {
            Some(port) => SocketAddr::new(p.addr.ip(), port),
            None => p.addr,
        };
        let connected: BTreeSet<SocketAddr> = self
            .peers
            .values()
            .filter(|p| p.link.connected)
            .map(listen_addr)
            .collect();
        for peer in self.peers.values_mut() {
            let extensions = peer.link.session.state().peer_extensions.as_ref();
            let Some(their_id) = extensions.and_then(|e| e.id_of(UT_PEX)) else {
                continue;
            };
            if let Some(payload) = peer.pex.poll_send(now, &connected, listen_addr(peer)) {
                peer.link.session.send_extended(their_id, payload);
                peer.flush();
            }
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
        let info = &self.config.metainfo.info;
        let left = self.picker.bytes_left();
        let rate = self.downloaded.rate();
        let mut available = self.picker.have().clone();
        for peer in self.peers.values() {
            for piece in peer.link.counted.iter_ones() {
                available.set(piece);
            }
        }
        let _ = self.events.send(EngineEvent::Stats(Stats {
            pieces_have: self.picker.have().count_ones(),
            piece_count: info.piece_count(),
            bytes_have: info.total_length - left,
            total_bytes: info.total_length,
            downloaded: self.downloaded.total,
            uploaded: self.uploaded.total,
            download_rate: rate,
            upload_rate: self.uploaded.rate(),
            peers: self.peers.values().filter(|p| p.link.connected).count(),
            eta_secs: (left > 0 && rate > 1.0).then(|| (left as f64 / rate) as u64),
            available_pieces: available.count_ones(),
        }));
    }

    fn save_resume(&self) {
        if let Err(e) = resume::save(
            &self.resume_path,
            &self.config.metainfo.info_hash,
            &self.files,
            self.picker.have(),
        ) {
            tracing::warn!("cannot save resume state: {e}");
        }
    }

    fn complete(&mut self) -> Result<(), EngineError> {
        self.completed_announced = true;
        self.files.create_all()?;
        self.save_resume();
        let _ = self.events.send(EngineEvent::Completed {
            downloaded: self.downloaded.total,
        });
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            let peer = self.peers.get_mut(&key).expect("listed");
            peer.link.update_interest(&self.picker);
            self.flush(key);
        }
        Ok(())
    }

    fn shutdown(&mut self, disk_results: &mut mpsc::UnboundedReceiver<DiskResult>) {
        let now = Instant::now();
        // Complete pieces not hashed yet would otherwise be downloaded again next time.
        self.disk.finish();
        while let Ok(result) = disk_results.try_recv() {
            if let Err(e) = self.on_disk(result) {
                tracing::warn!("cannot write the last pieces: {e}");
            }
        }
        self.save_resume();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.remove_peer(key, "shutting down", now);
        }
    }
}

/// The BEP 10 extensions we take: ut_metadata always, ut_pex unless the torrent is private.
fn extensions_offered(metainfo: &Metainfo) -> BTreeMap<String, u8> {
    let mut m = BTreeMap::from([(UT_METADATA.to_owned(), OUR_UT_METADATA_ID)]);
    if !metainfo.info.private {
        m.insert(UT_PEX.to_owned(), OUR_UT_PEX_ID);
    }
    m
}

/// A readable client name from an Azureus-style peer id (`-LT2080-` → `LT 2080`).
fn client_name(id: &[u8; 20]) -> String {
    if id[0] == b'-' && id[7] == b'-' && id[1..7].iter().all(u8::is_ascii_alphanumeric) {
        format!(
            "{} {}",
            String::from_utf8_lossy(&id[1..3]),
            String::from_utf8_lossy(&id[3..7])
        )
    } else {
        String::from_utf8_lossy(&id[..8])
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .collect()
    }
}
