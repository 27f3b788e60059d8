//! The torrent actor: one task that owns a torrent's peers, picker, choker and files.
//!
//! Lifecycle: check what is on disk (resume state if the files are unchanged, else a
//! parallel recheck) → connect to known peers and accept incoming ones → download,
//! verifying each piece as it completes → seed (or stop, with `seed: false`). A shutdown
//! signal saves the resume state and returns.
//!
//! Every input (bytes from a socket, a new connection, a timer tick, a hashed piece) is
//! fed to the sans-IO [`TorrentCore`], the simulator's too; what it decides is carried
//! out at once through [`EngineIo`]: blocks are requested, written, hashed, served, and
//! bytes are queued to the socket writers. Dialling, peer exchange, statistics and the
//! resume state stay here.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use shoal_core::{merkle, peer_priority, Bitfield, Block, InfoHash, Metainfo, PeerId, BLOCK_SIZE};
use shoal_storage::{resume, FileLayout, Hashing, StorageError, TorrentFiles};
use shoal_swarm::{
    Connection, CoreConfig, Io, PeerKey, PeerLink, TorrentCore, Uplink, DUPLICATE,
    INITIAL_RATE_GUESS,
};
use shoal_wire::holepunch::{Holepunch, HolepunchPeer, OUR_UT_HOLEPUNCH_ID, UT_HOLEPUNCH};
use shoal_wire::metadata::{self, OUR_UT_METADATA_ID, UT_METADATA};
use shoal_wire::pex::{PexFlags, PexPeer, OUR_UT_PEX_ID, UT_PEX};
use shoal_wire::{
    ExtensionHandshake, HashRange, PeerSession, SessionConfig, WireError, OUR_UPLOAD_ONLY_ID,
    UPLOAD_ONLY,
};
use tokio::sync::{mpsc, watch};

use crate::addresses::{is_local, AddressBook};
use crate::budget::{ConnectionBudget, ConnectionPermit, Member};
use crate::connection::{self, Backlog, Input, Opened, Outgoing, UplinkQueue};
use crate::disk::{Disk, DiskResult};
use crate::encryption::{Encryption, Secured};
use crate::holepunch::{self, Verdict};
use crate::round_trip::RoundTrip;
use crate::stream::{Dialer, Kind, PeerStream};
use crate::web_seed::{FetchContext, WebSeeds};
use crate::{Found, IpFilter, PeerFeed, PeerSource, SharedListener};
use crate::{PeerInfo, RateLimit, SeedLimit, Stats};

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
    /// A listener shared with other torrents (a session on one port, `shoal daemon`):
    /// peers come from it, and `listen` is not bound (peers are told its address).
    pub shared_listener: Option<Arc<SharedListener>>,
    /// How peers are dialled, and the uTP socket (bound at `listen`'s port) whose
    /// incoming connections are taken too.
    pub dialer: Dialer,
    /// Peers to connect to.
    pub peers: Vec<SocketAddr>,
    /// More peers as they are discovered while the torrent runs (trackers, the DHT,
    /// local discovery), each batch with its source. Addresses already known are ignored,
    /// so a source may repeat itself freely.
    pub peer_feed: Option<PeerFeed>,
    /// Keep seeding after the download completes (until shutdown or `seed_limit`).
    pub seed: bool,
    /// When to stop seeding, if `seed`.
    pub seed_limit: SeedLimit,
    /// Super-seed (BEP 16) when every piece is here from the start: announce no pieces,
    /// reveal them one at a time to the peers we upload to, so that an initial seed's
    /// scarce upload sends each piece about once.
    pub super_seed: bool,
    /// The upload and download rate limits (unlimited: `RateLimit::new(None)`); a session
    /// gives all its torrents the same, for one limit on them all.
    pub upload_limit: Arc<RateLimit>,
    pub download_limit: Arc<RateLimit>,
    pub max_connections: usize,
    /// A cap on the connections of a session's torrents together, beside each one's
    /// `max_connections`; `None` for none.
    pub connection_budget: Option<Arc<ConnectionBudget>>,
    /// Threads for the initial recheck (0: one per core).
    pub check_threads: usize,
    /// Turns to take for the initial recheck, shared by a session's torrents so that
    /// they check one at a time (as Transmission and qBittorrent queue them); `None`
    /// checks at once.
    pub check_turns: Option<Arc<tokio::sync::Semaphore>>,
    /// How the data on disk is taken at the start.
    pub check: Check,
    /// Message stream encryption (MSE/PE) for the torrent's connections.
    pub encryption: Encryption,
    /// Fetch pieces in order (to play a file while it downloads) instead of rarest first.
    pub sequential: bool,
    /// Pieces to fetch before any other, in this order (the start and end of files).
    pub priority_pieces: Vec<u32>,
    /// Readers of the torrent's data while it downloads (a video player streaming a
    /// file): told which pieces are on disk, they say which they wait for.
    pub readers: Option<Readers>,
    /// Peers we upload to at once, the optimistic unchoke among them.
    pub upload_slots: usize,
    /// Give up a download that has received no data for this long (aria2's
    /// `--bt-stop-timeout`): [`EngineEvent::Stalled`], and [`Outcome::Stopped`].
    pub stall_timeout: Option<Duration>,
    /// Addresses no connection is made to or taken from (a blocklist).
    pub ip_filter: Option<Arc<IpFilter>>,
    /// The port a router forwards to our listen port (port mapping), once it says: our
    /// BEP 10 handshake tells it to peers with a public IPv4 address, which reach us
    /// through the router, as libtorrent tells its external port.
    pub external_port: Option<watch::Receiver<Option<u16>>>,
    /// The files to download, as indices into the torrent's file list (padding files
    /// included); `None` for all. Only the pieces holding their bytes are fetched, so
    /// files next to a selected one get the bytes of the pieces they share with it.
    pub selected_files: Option<Vec<usize>>,
}

/// What a torrent shares with those reading its files while it downloads (`shoal get
/// --stream`), or following how far each file is (`shoal daemon`). A reader may read a
/// piece once `have` has it: it is verified and written.
#[derive(Debug)]
pub struct Readers {
    /// The pieces verified on disk, kept current.
    pub have: watch::Sender<Bitfield>,
    /// The pieces readers wait for: fetched before any other, `priority_pieces`
    /// included, and taken again whenever they change.
    pub wanted: watch::Receiver<Wanted>,
}

/// The pieces readers of a torrent wait for, most urgent first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// What readers are blocked on (each one's next piece or two).
    pub now: Vec<u32>,
    /// The rest of the readers' read-ahead, fetched after `now`, in this order.
    pub soon: Vec<u32>,
    /// How many times a reader started, or skipped ahead or back (a player seeking).
    /// Each time, the requests queued at peers for pieces other than `now` are cancelled
    /// to make way for them: they were made for what was wanted before. A reader going
    /// on in order needs no such thing, its next pieces were asked for in order.
    pub jumps: u64,
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
        /// The torrent's peer id, for its tracker announces to send too.
        peer_id: PeerId,
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
        /// TCP or uTP.
        transport: Kind,
        /// The shortest round trip the transport has measured so far (TCP's and uTP's
        /// connection set-up gives a dialled connection one).
        round_trip: Option<Duration>,
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
    /// The connected peers, every [`PEER_LIST_INTERVAL`].
    Peers(Vec<PeerInfo>),
    /// Every piece is verified (every piece of the selected files, with
    /// [`TorrentConfig::selected_files`]); `wasted` as in [`Stats::wasted`]. `seed`: every
    /// piece of the torrent is here, so we are a seed.
    Completed {
        downloaded: u64,
        wasted: u64,
        seed: bool,
    },
    /// Seeding stopped at [`TorrentConfig::seed_limit`], having uploaded this much (this
    /// run) against `size` bytes held.
    SeedLimitReached {
        uploaded: u64,
        size: u64,
    },
    /// No data came for [`TorrentConfig::stall_timeout`]: the download stops here.
    Stalled {
        secs: u64,
    },
    /// A web seed (BEP 19) could not deliver; it is tried again in `retry_secs`.
    WebSeedFailed {
        url: String,
        reason: String,
        retry_secs: u64,
    },
    /// A web seed sent data that failed the hash check and is no longer used.
    WebSeedBanned {
        url: String,
    },
}

/// How a torrent takes the data already on disk when it starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Check {
    /// The resume state's word for the pieces it vouches for (its files unchanged
    /// since); the data is hashed only without one.
    #[default]
    Resume,
    /// Every piece hashed even if the resume state vouches for it (the files may have
    /// changed without their size or modification time changing: bit rot, a tool that
    /// keeps times), as libtorrent's force recheck and Transmission's verify do.
    Recheck,
    /// A [`Check::Recheck`], its result saved as the resume state, and nothing more: the
    /// run ends (`Stopped`) without joining the swarm, as Transmission verifies a
    /// stopped torrent.
    RecheckOnly,
}

/// How [`run`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every piece is verified on disk (every piece of the selected files, with
    /// [`TorrentConfig::selected_files`]).
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
    mut config: TorrentConfig,
    events: mpsc::UnboundedSender<EngineEvent>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Outcome, EngineError> {
    let info = &config.metainfo.info;
    let layout = match &config.single_file_path {
        // The one file at `path`; a v2 torrent's padding after it stays padding.
        Some(path) if !info.multi_file => FileLayout::new(
            info.files.iter().map(|f| match f.attr.padding {
                true => (PathBuf::new(), f.length, true),
                false => (path.clone(), f.length, false),
            }),
            info.piece_length,
        )
        .hashing(Hashing::of(info))
        .attributes_of(info),
        _ => FileLayout::for_torrent(info, &config.download_dir),
    };
    let resume_path = resume::resume_path(&config.state_dir, &config.metainfo.info_hash);
    // The peers of the last run, so that a restart finds them with no tracker.
    let kept_peers = resume::load_peers(&resume_path, &config.metainfo.info_hash);
    let trusted = match config.check {
        Check::Resume => resume::load(&resume_path, &config.metainfo.info_hash, &layout),
        Check::Recheck | Check::RecheckOnly => {
            // Its word is taken back first: a recheck cut short leaves the next start a
            // whole check too, never the old word.
            resume::forget(&resume_path)?;
            None
        }
    };
    let (have, resumed) = match trusted {
        Some(have) => (have, true),
        None => match check_existing(&config, &layout, &events, &mut shutdown).await {
            Some(have) => (have, false),
            // Stopped while waiting to check, or checking: nothing to save.
            None => return Ok(Outcome::Stopped),
        },
    };
    let files = Arc::new(TorrentFiles::new(&config.download_dir, layout));
    if config.check == Check::RecheckOnly {
        if let Some(readers) = &config.readers {
            readers.have.send_replace(have.clone());
        }
        resume::save(
            &resume_path,
            &config.metainfo.info_hash,
            &files,
            &have,
            &kept_peers,
        )?;
        return Ok(Outcome::Stopped);
    }
    let (disk_results, mut disk_results_rx) = mpsc::unbounded_channel();
    let disk = Disk::spawn(files.clone(), config.metainfo.clone(), disk_results);

    let (to_actor, inputs) = mpsc::channel(INPUT_QUEUE);
    // Incoming connections: from a listener shared with other torrents, else over uTP
    // from the shared socket and over TCP from a listener of our own.
    let swarms: Vec<[u8; 20]> = config
        .metainfo
        .swarm_hashes()
        .iter()
        .map(|hash| hash.0)
        .collect();
    let mut acceptors = Vec::new();
    let router = match &config.shared_listener {
        Some(shared) => shared.router().clone(),
        None => connection::Router::default(),
    };
    let registration = router.register(&swarms, &to_actor);
    let listen = match (&config.shared_listener, config.listen) {
        (Some(shared), _) => Some(shared.local_addr()),
        (None, listen) => {
            let handshakes = connection::handshake_slots();
            if let Some(utp) = config.dialer.utp.clone() {
                if config.dialer.accepts_utp() {
                    acceptors.push(connection::spawn_utp_acceptor(
                        utp,
                        handshakes.clone(),
                        router.clone(),
                        config.encryption,
                    ));
                }
            }
            match listen {
                Some(addr) if config.dialer.accepts_tcp() => {
                    let listener = connection::bind_listener(addr)
                        .map_err(|source| EngineError::Listen { addr, source })?;
                    let bound = listener
                        .local_addr()
                        .map_err(|source| EngineError::Listen { addr, source })?;
                    acceptors.push(connection::spawn_acceptor(
                        listener,
                        handshakes,
                        router.clone(),
                        config.encryption,
                    ));
                    Some(bound)
                }
                Some(addr) => config
                    .dialer
                    .utp
                    .as_ref()
                    .and_then(|u| u.local_addr().ok())
                    .or(Some(addr)),
                None => None,
            }
        }
    };
    // The port actually bound (`--listen IP:0` picks one), which peers are told.
    if listen.is_some() {
        config.listen = listen;
    }
    let mut rng = StdRng::from_entropy();
    let mut random = [0u8; 12];
    rng.fill_bytes(&mut random);
    let peer_id = PeerId::shoal(random);
    if let Some(readers) = &config.readers {
        readers.have.send_replace(have.clone());
    }
    let _ = events.send(EngineEvent::Started {
        have: have.count_ones(),
        piece_count: info.piece_count(),
        listen,
        resumed,
        peer_id,
    });

    let now = Instant::now();
    let mut addresses = AddressBook::new(config.ip_filter.clone());
    for peer in &config.peers {
        addresses.add(*peer, PeerSource::Given, now);
    }
    for peer in kept_peers {
        if Some(peer) != config.listen {
            addresses.add(peer, PeerSource::Resume, now);
        }
    }
    let wanted = config
        .selected_files
        .as_deref()
        .map(|selected| files.layout().pieces_of(selected));
    let selected_bytes = wanted.as_ref().map_or(info.total_length, |wanted| {
        wanted
            .iter_ones()
            .map(|piece| files.layout().piece_size(piece))
            .sum()
    });
    let mut core = TorrentCore::new(CoreConfig {
        info_hash: config.metainfo.info_hash,
        piece_count: info.piece_count() as u32,
        piece_length: info.piece_length,
        total_length: info.total_length,
        have: &have,
        wanted: wanted.as_ref(),
        super_seed: config.super_seed,
        initial_rate: INITIAL_RATE_GUESS as f64,
        first_key: 0,
        rng,
        now,
    });
    core.set_sequential(config.sequential);
    core.set_priority(config.priority_pieces.iter().copied());
    core.set_upload_slots(config.upload_slots);
    // Padding (BEP 47, and every v2 torrent's alignment) is zeros: not asked of peers.
    if info.files.iter().any(|f| f.attr.padding) {
        for piece in 0..info.piece_count() {
            let fetched = files.layout().fetched_length(piece);
            if fetched < files.layout().piece_size(piece) {
                core.skip_padding(piece as u32, fetched.div_ceil(u64::from(BLOCK_SIZE)) as u32);
            }
        }
    }
    let download_limit = config.download_limit.clone();
    let web_seeds = WebSeeds::new(
        &mut core,
        &config.metainfo.url_list,
        FetchContext {
            metainfo: config.metainfo.clone(),
            files: files.clone(),
            http: web_seed_http(&config),
            download_limit: download_limit.clone(),
            to_actor: to_actor.clone(),
        },
    );
    let mut actor = Actor {
        core,
        web_seeds,
        peer_id,
        to_actor,
        download_limit,
        upload_limit: config.upload_limit.clone(),
        resume_path,
        completion_reported: false,
        selected_bytes,
        seeding_since: None,
        last_resume_save: now,
        last_peer_list: now,
        last_data: (0, now),
        _member: config.connection_budget.as_ref().map(|b| b.join()),
        dialling: 0,
        io: EngineIo {
            config,
            disk,
            files,
            addresses,
            events,
            uplink: UplinkQueue::default(),
            trees: HashMap::new(),
            hash_reads: HashReads::default(),
            punches: Vec::new(),
        },
    };
    let outcome = actor
        .run_loop(inputs, &mut disk_results_rx, &mut shutdown)
        .await;
    drop(registration);
    for acceptor in acceptors {
        acceptor.abort();
    }
    actor.shutdown(&mut disk_results_rx);
    outcome
}

/// The next batch from a peer feed; pending forever once there is no feed.
async fn next_peers(feed: &mut Option<PeerFeed>) -> Option<Found> {
    match feed {
        Some(feed) => feed.recv().await,
        None => std::future::pending().await,
    }
}

/// The readers' next list of wanted pieces; `None` once they are gone, and pending
/// forever when there are none.
async fn next_change(wanted: &mut Option<watch::Receiver<Wanted>>) -> Option<Wanted> {
    match wanted {
        Some(wanted) => match wanted.changed().await {
            Ok(()) => Some(wanted.borrow_and_update().clone()),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

/// Verifies data already on disk (on all cores, off the async threads), reporting progress.
async fn check_existing(
    config: &TorrentConfig,
    layout: &FileLayout,
    events: &mpsc::UnboundedSender<EngineEvent>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Bitfield> {
    let stopped = async {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stopped);
    // A session's checks take turns: each one already uses every core.
    let _turn = match &config.check_turns {
        Some(turns) => tokio::select! {
            turn = turns.clone().acquire_owned() => turn.ok(),
            () = &mut stopped => return None,
        },
        None => None,
    };
    let progress = Arc::new(AtomicU64::new(0));
    let total = layout.total_length();
    // However this returns, the check's threads stop with it.
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let task = {
        let (layout, metainfo, progress, stop, threads) = (
            layout.clone(),
            config.metainfo.clone(),
            progress.clone(),
            stop.0.clone(),
            config.check_threads,
        );
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        tokio::task::spawn_blocking(move || {
            shoal_storage::verify_until(&layout, &metainfo.info, threads, &progress, &stop)
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
            // The check's threads stop after the pieces they are hashing.
            () = &mut stopped => return None,
        }
    }
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

struct Peer {
    addr: SocketAddr,
    link: PeerLink,
    /// The transport's measure of the connection's round trip, which the request queue
    /// covers (read once a second).
    round_trip: RoundTrip,
    writer: mpsc::UnboundedSender<Outgoing>,
    backlog: Backlog,
    /// The torrent's [`UplinkQueue`] bytes, which this connection's count toward too.
    uplink: Backlog,
    reader: tokio::task::JoinHandle<()>,
    /// Peer exchange (BEP 11) with this peer.
    pex: PexPeer,
    /// Hole punching (BEP 55) messages from this peer.
    holepunch: HolepunchPeer,
    /// What carries the connection, whether we dialled it, and whether it is encrypted.
    transport: Kind,
    dialled: bool,
    encrypted: bool,
    /// Its BitTorrent handshake came behind an encrypted one (MSE), even if the stream
    /// then went plaintext.
    obfuscated: bool,
    /// The connection is in a hybrid torrent's v2 swarm: its handshake named the v2 hash.
    in_v2_swarm: bool,
    /// Its room in the session's [`ConnectionBudget`], held while the connection is.
    _permit: Option<ConnectionPermit>,
}

impl Peer {
    /// The address the peer accepts connections on: the port its extension handshake
    /// gives (BEP 10 `p`), else the one we reach it at (for a peer that connected to us,
    /// an ephemeral port).
    fn listen_addr(&self) -> SocketAddr {
        let extensions = self.link.session.state().peer_extensions.as_ref();
        match extensions.and_then(|e| e.p) {
            Some(port) => SocketAddr::new(self.addr.ip(), port),
            None => self.addr,
        }
    }

    /// The peer's listen address if we know it: the one we dialled, or the port its
    /// extension handshake gives.
    fn dialable_addr(&self) -> Option<SocketAddr> {
        let session = &self.link.session;
        let port = session.state().peer_extensions.as_ref().and_then(|e| e.p);
        (session.is_outgoing() || port.is_some()).then(|| self.listen_addr())
    }

    /// The id the peer takes extension `name` under, if its handshake offered it.
    fn extension_id(&self, name: &str) -> Option<u8> {
        let extensions = self.link.session.state().peer_extensions.as_ref();
        extensions.and_then(|e| e.id_of(name))
    }

    /// What a peer exchange says of this peer (BEP 11 flags).
    fn pex_flags(&self) -> PexFlags {
        let mut flags = PexFlags::default();
        let done = self.link.counted.all() || self.link.session.state().peer_upload_only;
        for (set, flag) in [
            (self.encrypted, PexFlags::ENCRYPTION),
            (done, PexFlags::SEED),
            (self.transport == Kind::Utp, PexFlags::UTP),
            (
                self.extension_id(UT_HOLEPUNCH).is_some(),
                PexFlags::HOLEPUNCH,
            ),
            (self.dialled, PexFlags::REACHABLE),
        ] {
            if set {
                flags |= flag;
            }
        }
        flags
    }

    /// What the hole punching relay needs to know of this peer.
    fn as_connected(&self) -> holepunch::Connected {
        holepunch::Connected {
            addr: self.addr,
            listen: self.dialable_addr(),
            holepunch: self.extension_id(UT_HOLEPUNCH).is_some(),
        }
    }

    /// Where a peer we introduce (BEP 55) is to send this peer its uTP packets: where
    /// this connection's come from if it is uTP (the mapping its NAT made for its uTP
    /// socket), else its IP at its listen port (right for a NAT that keeps ports).
    fn punch_endpoint(&self) -> SocketAddr {
        match self.transport {
            Kind::Utp => self.addr,
            Kind::Tcp => self.listen_addr(),
        }
    }

    /// Sends a ut_holepunch message, if the peer takes them.
    fn send_holepunch(&mut self, message: Holepunch) {
        if let Some(id) = self.extension_id(UT_HOLEPUNCH) {
            self.link.session.send_extended(id, message.encode());
            self.flush();
        }
    }

    /// Our address as this peer says it sees us (BEP 10 `yourip`).
    fn seen_as(&self) -> Option<IpAddr> {
        let extensions = self.link.session.state().peer_extensions.as_ref()?;
        match extensions.yourip.as_deref()? {
            &[a, b, c, d] => Some(IpAddr::from([a, b, c, d])),
            bytes => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        }
    }

    /// Hands what the session wants to send to the socket's writer.
    fn flush(&mut self) {
        self.flush_block(None);
    }

    /// Hands what the session wants to send to the socket's writer, the last of it a
    /// block of `piece` if given.
    fn flush_block(&mut self, piece: Option<u32>) {
        if let Some(bytes) = self.link.session.poll_transmit() {
            self.backlog.fetch_add(bytes.len(), Ordering::Relaxed);
            self.uplink.fetch_add(bytes.len(), Ordering::Relaxed);
            let _ = self.writer.send(Outgoing { bytes, piece });
        }
    }
}

impl Connection for Peer {
    fn link(&self) -> &PeerLink {
        &self.link
    }

    fn link_mut(&mut self) -> &mut PeerLink {
        &mut self.link
    }

    fn ip(&self) -> IpAddr {
        self.addr.ip()
    }
}

struct Actor {
    core: TorrentCore<Peer>,
    web_seeds: WebSeeds,
    io: EngineIo,
    peer_id: PeerId,
    to_actor: mpsc::Sender<Input>,
    download_limit: Arc<RateLimit>,
    upload_limit: Arc<RateLimit>,
    resume_path: PathBuf,
    /// The files are complete and the user was told.
    completion_reported: bool,
    /// Bytes in the pieces we download: all of them, or those of the selected files.
    selected_bytes: u64,
    /// When the download completed (or the torrent started complete).
    seeding_since: Option<Instant>,
    last_resume_save: Instant,
    last_peer_list: Instant,
    /// Payload bytes received so far, and when that last grew (for `stall_timeout`).
    last_data: (u64, Instant),
    /// Our place among the torrents sharing the session's connection limit.
    _member: Option<Member>,
    /// Dials under way: they count toward our connections, as libtorrent counts
    /// half-open ones.
    dialling: usize,
}

/// The torrent's outside as [`TorrentCore`] sees it: files and the disk thread, the
/// address book, the user interface, and the extensions the core leaves to the engine.
struct EngineIo {
    config: TorrentConfig,
    disk: Disk,
    files: Arc<TorrentFiles>,
    addresses: AddressBook,
    events: mpsc::UnboundedSender<EngineEvent>,
    uplink: UplinkQueue,
    /// v2 files' trees above their piece layers, built on the first hash request for
    /// each (at most one per file of the torrent).
    trees: HashMap<merkle::Hash, merkle::LayerTree>,
    /// Pieces read back this second to answer block hash requests.
    hash_reads: HashReads,
    /// Hole punching work from peers' messages, for the actor, which sees every
    /// connection (bounded by each peer's allowance, and drained after each input).
    punches: Vec<Punch>,
}

/// Pieces the torrent reads back per second, at most, to answer block hash requests.
/// Each costs a piece's read and hashing for an answer of 32 bytes a block, so peers
/// together get this many (libtorrent asks once per piece that failed its check) and
/// the rest are rejected.
const HASH_READS_PER_SECOND: u32 = 4;

/// The count of pieces read back for block hashes in the current second.
#[derive(Debug, Default)]
struct HashReads {
    since: Option<Instant>,
    count: u32,
}

impl HashReads {
    /// Whether another read fits this second; counts it if so.
    fn take(&mut self, now: Instant) -> bool {
        if self
            .since
            .is_none_or(|since| now.duration_since(since) >= Duration::from_secs(1))
        {
            *self = HashReads {
                since: Some(now),
                count: 0,
            };
        }
        self.count += 1;
        self.count <= HASH_READS_PER_SECOND
    }
}

/// What a ut_holepunch message asks of us (BEP 55).
#[derive(Debug)]
enum Punch {
    /// The peer connected from `from` asks us, as the relay, to introduce it to `target`.
    Relay {
        from: SocketAddr,
        target: SocketAddr,
    },
    /// A relay asks us to dial this endpoint over uTP.
    Dial(SocketAddr),
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

/// How often the user interface gets the peer list ([`EngineEvent::Peers`]).
pub const PEER_LIST_INTERVAL: Duration = Duration::from_secs(5);
/// Under an upload limit, the actor serves another block while less than this much of
/// the limit's time is queued for the writers, all connections together (at least a
/// block): little enough that each block goes to whoever the core chooses when the
/// uplink can take it (see [`Uplink::Shared`]), enough that the uplink never waits for
/// the actor.
const UPLINK_QUEUE_TIME: f64 = 0.01;

impl EngineIo {
    fn add_addresses(&mut self, found: Found) {
        let now = Instant::now();
        let own = self.config.listen;
        let v2_swarm = self.config.metainfo.swarm_hashes().get(1) == Some(&found.swarm);
        for addr in found.peers.into_iter().filter(|a| Some(*a) != own) {
            self.addresses.add(addr, found.source, now);
            if v2_swarm {
                self.addresses.found_in_v2_swarm(addr);
            }
        }
    }
}

impl Io<Peer> for EngineIo {
    fn flush(&mut self, _key: PeerKey, peer: &mut Peer) {
        peer.flush();
    }

    fn hashes(&mut self, range: &HashRange, have: &Bitfield) -> Option<Vec<[u8; 32]>> {
        if !self.trees.contains_key(&range.root) {
            let tree = self.config.metainfo.info.layer_tree(&range.root)?;
            self.trees.insert(range.root, tree);
        }
        let tree = &self.trees[&range.root];
        let Some(piece) = tree.piece_of(range.base_layer, range.index, range.length) else {
            return tree.hashes(
                range.base_layer,
                range.index,
                range.length,
                range.proof_layers,
            );
        };
        // Block hashes: read the piece back, as for a block request (libtorrent asks for
        // them to find which block of a failed piece was bad).
        let info = &self.config.metainfo.info;
        let (first, file_length) = info.merkle_file(&range.root)?;
        let global = first + piece as usize;
        let piece_length = u64::from(info.piece_length);
        let start = u64::from(piece) * piece_length;
        if start >= file_length || !have.get(global) || !self.hash_reads.take(Instant::now()) {
            return None;
        }
        let mut data = vec![0; (file_length - start).min(piece_length) as usize];
        self.files
            .read(global as u64 * piece_length, &mut data)
            .ok()?;
        let mut leaves: Vec<merkle::Hash> =
            data.chunks(merkle::BLOCK).map(merkle::sha256).collect();
        leaves.resize(
            merkle::piece_leaves(file_length, piece_length),
            merkle::pad(0),
        );
        tree.hashes_within(
            range.base_layer,
            range.index,
            range.length,
            range.proof_layers,
            &leaves,
        )
    }

    fn upload_room(&self, peer: &Peer) -> bool {
        let cap =
            ((peer.link.uploaded.rate() * BACKLOG_TIME) as usize).clamp(MIN_BACKLOG, MAX_BACKLOG);
        peer.backlog.load(Ordering::Relaxed) < cap
    }

    fn uplink(&self) -> Uplink {
        // Without a limit the uplink's capacity is unknown and the sockets share it.
        match self.config.upload_limit.rate() {
            None => Uplink::PerConnection,
            Some(rate) => {
                let cap = ((rate as f64 * UPLINK_QUEUE_TIME) as usize).max(BLOCK_SIZE as usize);
                Uplink::Shared {
                    room: self.uplink.bytes.load(Ordering::Relaxed) < cap,
                }
            }
        }
    }

    fn send_block(&mut self, _key: PeerKey, peer: &mut Peer, block: Block) -> bool {
        let piece_length = u64::from(self.config.metainfo.info.piece_length);
        let at = u64::from(block.piece) * piece_length + u64::from(block.offset);
        let files = &self.files;
        let sent = match peer
            .link
            .session
            .send_block_with(block, |out| files.read(at, out))
        {
            Ok(()) => true,
            Err(e) => {
                // Data we claimed vanished (deleted or truncated files): stop claiming it.
                tracing::warn!("cannot serve piece {}: {e}", block.piece);
                peer.link.session.reject(block);
                false
            }
        };
        // Flush as we go so a large queue doesn't sit in the session's buffer.
        peer.flush_block(sent.then_some(block.piece));
        sent
    }

    fn store_block(&mut self, block: Block, data: Bytes, piece_complete: bool) -> Option<bool> {
        // Hashed on the disk thread, which answers with `DiskResult::Piece`.
        self.disk.write(block, data, piece_complete);
        None
    }

    fn read_block(&self, piece: u32, offset: u32, length: u32) -> Bytes {
        let start = u64::from(piece) * u64::from(self.config.metainfo.info.piece_length);
        let mut data = vec![0u8; length as usize];
        match self.files.read(start + u64::from(offset), &mut data) {
            Ok(()) => Bytes::from(data),
            Err(_) => Bytes::new(),
        }
    }

    fn connected(&mut self, peer: &Peer, peer_id: &PeerId) {
        if peer.dialled {
            self.addresses.set_plain_only(peer.addr, !peer.obfuscated);
        }
        let _ = self.events.send(EngineEvent::PeerConnected {
            addr: peer.addr,
            client: client_name(&peer_id.0),
            transport: peer.transport,
            round_trip: peer.round_trip.shortest(),
        });
    }

    fn extended(
        &mut self,
        peer: &mut Peer,
        id: u8,
        payload: Bytes,
        now: Instant,
    ) -> Result<(), String> {
        match id {
            OUR_UT_METADATA_ID => {
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
            OUR_UT_PEX_ID if !self.config.metainfo.info.private => {
                let found = peer
                    .pex
                    .on_receive(now, &payload)
                    .map_err(|e| e.to_string())?;
                let own = self.config.listen;
                tracing::debug!("{} told us of {found:?}", peer.addr);
                for (addr, flags) in found.into_iter().filter(|(a, _)| Some(*a) != own) {
                    self.addresses.add_from_pex(addr, flags, peer.addr, now);
                }
            }
            // BEP 55: a peer that did not offer the extension could not be answered; a
            // private torrent's peers come from its tracker alone (BEP 27).
            OUR_UT_HOLEPUNCH_ID
                if peer.extension_id(UT_HOLEPUNCH).is_some()
                    && !self.config.metainfo.info.private =>
            {
                let message = peer.holepunch.on_receive(now, &payload);
                match message.filter(|m| holepunch::dialable(m.endpoint())) {
                    Some(Holepunch::Rendezvous(target)) => self.punches.push(Punch::Relay {
                        from: peer.addr,
                        target,
                    }),
                    // A local address is only taken from a local relay (libtorrent's
                    // rule: a remote peer must not make us probe our own network).
                    Some(Holepunch::Connect(addr))
                        if !is_local(addr.ip()) || is_local(peer.addr.ip()) =>
                    {
                        self.punches.push(Punch::Dial(addr));
                    }
                    Some(Holepunch::Error(addr, refusal)) => {
                        tracing::debug!("{} cannot introduce us to {addr}: {refusal:?}", peer.addr);
                    }
                    Some(Holepunch::Connect(_)) | None => {}
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn piece_verified(&mut self, piece: u32, have: usize) {
        if let Some(readers) = &self.config.readers {
            readers.have.send_modify(|bits| {
                bits.set(piece as usize);
            });
        }
        let _ = self.events.send(EngineEvent::PieceVerified { piece, have });
    }

    fn piece_failed(&mut self, piece: u32) {
        let _ = self.events.send(EngineEvent::PieceFailed { piece });
    }

    fn banning(&mut self, peer: &Peer) {
        self.addresses.ban(peer.addr);
        let _ = self
            .events
            .send(EngineEvent::PeerBanned { addr: peer.addr });
    }

    fn removed(&mut self, peer: Peer, reason: &str, now: Instant) {
        peer.reader.abort();
        // A partial seed (BEP 21) wants nothing either: not dialled again while we are done.
        let state = peer.link.session.state();
        let done = peer.link.counted.all() || state.peer_upload_only;
        // A duplicate is closed before it counts as connected, through no fault of the
        // peer (both ends dialled at once, as hole punching has them do).
        let failed = !peer.link.connected && reason != DUPLICATE;
        self.addresses.disconnected(peer.addr, failed, done, now);
        // An address of ours (the other family's, or our router's) came back from a
        // tracker, the DHT or a peer exchange.
        if peer.dialled && reason == WireError::SelfConnection.to_string() {
            self.addresses.ours(peer.addr);
        }
        if failed && peer.dialled {
            self.addresses.failed_over(peer.addr, peer.transport);
            if !peer.obfuscated {
                self.addresses.set_plain_only(peer.addr, false);
            }
        }
        let listen = peer.listen_addr();
        if listen != peer.addr {
            self.addresses.disconnected(listen, failed, done, now);
        }
        if peer.link.connected {
            let _ = self.events.send(EngineEvent::PeerDisconnected {
                addr: peer.addr,
                reason: reason.to_owned(),
                downloaded: peer.link.downloaded.total,
                uploaded: peer.link.uploaded.total,
            });
        }
    }
}

impl Actor {
    async fn run_loop(
        &mut self,
        mut inputs: mpsc::Receiver<Input>,
        disk_results: &mut mpsc::UnboundedReceiver<DiskResult>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Outcome, EngineError> {
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut feed = self.io.config.peer_feed.take();
        let mut wanted = self.io.config.readers.as_ref().map(|r| r.wanted.clone());
        let mut jumps = 0;
        let drained = self.io.uplink.drained.clone();
        loop {
            // Read each round: a session's limits change while it runs.
            let limited = self.upload_limit.is_limited();
            if self.core.is_complete() && !self.completion_reported {
                self.report_completion()?;
                if !self.io.config.seed {
                    return Ok(Outcome::Complete);
                }
            }
            if let Some(since) = self.seeding_since {
                let (uploaded, size) = (self.core.uploaded.total, self.selected_bytes);
                if self
                    .io
                    .config
                    .seed_limit
                    .reached(since.elapsed(), uploaded, size)
                {
                    let _ = self
                        .io
                        .events
                        .send(EngineEvent::SeedLimitReached { uploaded, size });
                    return Ok(Outcome::Complete);
                }
            }
            if self.stalled() {
                return Ok(Outcome::Stopped);
            }
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return Ok(if self.core.is_complete() { Outcome::Complete } else { Outcome::Stopped });
                    }
                }
                Some(result) = disk_results.recv() => self.on_disk(result)?,
                Some(input) = inputs.recv() => self.handle(input),
                found = next_peers(&mut feed) => match found {
                    Some(found) => self.io.add_addresses(found),
                    None => feed = None,
                },
                () = drained.notified(), if limited => self.core.serve_uplink(&mut self.io),
                changed = next_change(&mut wanted) => match changed {
                    Some(wanted) => {
                        let fixed = &self.io.config.priority_pieces;
                        let soon: Vec<u32> = wanted.soon.into_iter().chain(fixed.iter().copied()).collect();
                        if wanted.jumps != jumps {
                            jumps = wanted.jumps;
                            self.core.set_urgent(&wanted.now, &soon, Instant::now(), &mut self.io);
                        } else {
                            self.core.set_priority(wanted.now.into_iter().chain(soon));
                        }
                    }
                    None => wanted = None,
                },
                _ = ticker.tick() => self.tick(),
            }
            // Whatever arrived in this round goes to the disk thread as one batch.
            self.io.disk.flush();
        }
    }

    /// Whether the download has had no data for `stall_timeout` (said once, then true).
    fn stalled(&mut self) -> bool {
        let Some(limit) = self.io.config.stall_timeout else {
            return false;
        };
        if self.core.is_complete() {
            return false;
        }
        let now = Instant::now();
        let total = self.core.downloaded.total;
        if total != self.last_data.0 {
            self.last_data = (total, now);
            return false;
        }
        if now.duration_since(self.last_data.1) < limit {
            return false;
        }
        let secs = limit.as_secs();
        let _ = self.io.events.send(EngineEvent::Stalled { secs });
        true
    }

    fn handle(&mut self, input: Input) {
        let now = Instant::now();
        let is_web = matches!(
            input,
            Input::WebBlocks { .. } | Input::WebFailed { .. } | Input::WebDone { .. }
        );
        match input {
            Input::Connected {
                addr,
                stream,
                opened,
                secured,
                permit,
            } => {
                if matches!(opened, Opened::Dialled(_)) {
                    self.dialling = self.dialling.saturating_sub(1);
                }
                self.add_peer(addr, stream, (opened, secured, permit), now);
            }
            Input::ConnectFailed { addr } => {
                self.dialling = self.dialling.saturating_sub(1);
                self.io.addresses.disconnected(addr, true, false, now);
                self.ask_for_introduction(addr, now);
            }
            Input::Data { key, bytes } => self.core.on_data(key, [bytes], now, &mut self.io),
            Input::Closed { key, reason } => self.core.remove_peer(key, &reason, now, &mut self.io),
            Input::WebBlocks { key, blocks } => {
                for (block, data) in blocks {
                    self.core
                        .web_seed_block(key, block, data, now, &mut self.io);
                }
            }
            Input::WebFailed {
                key,
                worker,
                blocks,
                failure,
            } => {
                self.core.web_seed_failed(key, &blocks);
                let events = &self.io.events;
                self.web_seeds
                    .ended(key, worker, Some(failure), now, events);
            }
            Input::WebDone { key, worker } => {
                let events = &self.io.events;
                self.web_seeds.ended(key, worker, None, now, events);
            }
        }
        if is_web {
            let events = &self.io.events;
            self.web_seeds.schedule(&mut self.core, now, events);
        }
        for punch in std::mem::take(&mut self.io.punches) {
            match punch {
                Punch::Relay { from, target } => self.relay(from, target),
                Punch::Dial(addr) => self.dial_punched(addr, now),
            }
        }
    }

    /// The connected peer at `addr` (as connected, or at its listen address).
    fn peer_at(&mut self, addr: SocketAddr) -> Option<&mut Peer> {
        self.core
            .peers_mut()
            .values_mut()
            .find(|p| p.link.connected && (p.addr == addr || p.dialable_addr() == Some(addr)))
            .map(|p| &mut **p)
    }

    /// BEP 55, as the relay: introduces the peer connected from `from` to `target`, both
    /// connected to us, by sending each a `connect` naming the other; or tells `from`
    /// why not.
    fn relay(&mut self, from: SocketAddr, target: SocketAddr) {
        let Some(initiator) = self.peer_at(from) else {
            return;
        };
        let (endpoint, initiator) = (initiator.punch_endpoint(), initiator.as_connected());
        let ours: Vec<SocketAddr> = [self.io.config.listen, self.our_address()]
            .into_iter()
            .flatten()
            .collect();
        let peers = self.core.peers().iter().filter(|(_, p)| p.link.connected);
        let verdict = holepunch::judge(
            &initiator,
            target,
            &ours,
            peers.map(|(&key, p)| (key, p.as_connected())),
        );
        let answer = match verdict {
            Verdict::Ignore => return,
            Verdict::Refuse(refusal) => Holepunch::Error(target, refusal),
            Verdict::Introduce(key) => {
                tracing::debug!("hole punching: introducing {from} to {target}");
                let Some(peer) = self.core.peers_mut().get_mut(&key) else {
                    return;
                };
                peer.send_holepunch(Holepunch::Connect(endpoint));
                // Where the target's packets come from, as for the initiator.
                Holepunch::Connect(peer.punch_endpoint())
            }
        };
        if let Some(initiator) = self.peer_at(from) {
            initiator.send_holepunch(answer);
        }
    }

    /// BEP 55: a relay asks us to dial `addr` over uTP, as `addr` dials us, so that
    /// each side's packets open its own NAT or firewall to the other's.
    fn dial_punched(&mut self, addr: SocketAddr, now: Instant) {
        let own = [self.io.config.listen, self.our_address()].contains(&Some(addr));
        let config = &self.io.config;
        let full = self.room(now) == 0;
        if full || own || !config.dialer.accepts_utp() || self.peer_at(addr).is_some() {
            return;
        }
        // The room first: an address marked as being punched is not tried again.
        let Some(permit) = self.dial_permit() else {
            return;
        };
        if !self.io.addresses.punch(addr, now) {
            return;
        }
        tracing::debug!("hole punching: dialling {addr} over uTP");
        let policy = self.io.config.encryption;
        self.dial(addr, (&[Kind::Utp], policy), permit);
    }

    /// Dials `addr` over the transports of `order`, in the background; the connection,
    /// or its failure, comes back as an input.
    fn dial(
        &mut self,
        addr: SocketAddr,
        (order, policy): (&'static [Kind], Encryption),
        permit: Option<ConnectionPermit>,
    ) {
        self.dialling += 1;
        let config = &self.io.config;
        connection::spawn_connect(
            addr,
            config.listen.map(|a| a.ip()),
            Duration::from_secs(10),
            (config.dialer.clone(), order),
            (policy, self.swarm_of(addr)),
            (self.to_actor.clone(), permit),
        );
    }

    /// BEP 55, as the initiator: `addr` could not be dialled; if a peer exchange said it
    /// takes part in hole punching, asks the peer that told us of it to introduce us.
    fn ask_for_introduction(&mut self, addr: SocketAddr, now: Instant) {
        if !self.io.config.dialer.accepts_utp() {
            return;
        }
        let Some(relay) = self.io.addresses.rendezvous(addr, now) else {
            return;
        };
        if let Some(relay) = self.peer_at(relay) {
            tracing::debug!(
                "hole punching: asking {} to introduce us to {addr}",
                relay.addr
            );
            relay.send_holepunch(Holepunch::Rendezvous(addr));
        }
    }

    /// The port a peer at `addr` reaches us on, when a router forwards one to us and the
    /// peer is on the internet (on the LAN, it reaches our listen port itself).
    fn external_port_for(&self, addr: SocketAddr) -> Option<u16> {
        is_public_ipv4(addr).then_some(())?;
        *self.io.config.external_port.as_ref()?.borrow()
    }

    /// A router has just said which port it forwards to us: the public peers already
    /// connected hear of it (those connected later, from their first handshake).
    fn tell_external_port(&mut self) {
        let Some(external) = self.io.config.external_port.as_mut() else {
            return;
        };
        if !external.has_changed().unwrap_or(false) {
            return;
        }
        let Some(port) = *external.borrow_and_update() else {
            return;
        };
        for peer in self.core.peers_mut().values_mut() {
            if peer.link.connected && is_public_ipv4(peer.addr) {
                peer.link.session.send_listen_port(port);
                peer.flush();
            }
        }
    }

    /// The swarm `addr` is dialled in: a hybrid torrent's v2 one if it was found there,
    /// else the torrent's own.
    fn swarm_of(&self, addr: SocketAddr) -> InfoHash {
        let metainfo = &self.io.config.metainfo;
        match metainfo.swarm_hashes().get(1) {
            Some(&v2) if self.io.addresses.in_v2_swarm(&addr) => v2,
            _ => metainfo.info_hash,
        }
    }

    fn session_config(&self) -> SessionConfig {
        let metainfo = &self.io.config.metainfo;
        let info = &metainfo.info;
        let mut config = SessionConfig::new(
            metainfo.info_hash,
            self.peer_id,
            info.piece_count() as u32,
            info.piece_length,
            info.total_length,
            self.core.announced(),
        );
        config.extension_handshake = ExtensionHandshake {
            m: extensions_offered(metainfo),
            v: Some(concat!("shoal ", env!("CARGO_PKG_VERSION")).to_owned()),
            p: self.io.config.listen.map(|a| a.port()),
            metadata_size: Some(metainfo.info_bytes.len() as u64),
            upload_only: self.core.upload_only().then_some(true),
            ..ExtensionHandshake::default()
        };
        config
    }

    fn add_peer(
        &mut self,
        addr: SocketAddr,
        stream: PeerStream,
        (opened, secured, permit): (Opened, Secured, Option<ConnectionPermit>),
        now: Instant,
    ) {
        let is_incoming = matches!(opened, Opened::Accepted(_));
        if self.io.addresses.is_banned(&addr) || self.io.addresses.is_blocked(&addr) {
            return;
        }
        let full = self.core.peers().len() >= self.io.config.max_connections;
        let budget = self.io.config.connection_budget.clone();
        let permit = match (permit, &budget) {
            (Some(permit), _) => Some(Some(permit)),
            (None, budget) => budget.as_ref().map(|b| b.take()),
        };
        // At the session's limit a newcomer is refused, and if we are under our share,
        // the torrents over theirs are asked for room (see `share_connections`); while
        // another torrent asks, one at or over its share takes no newcomer either.
        let ours = self.connections();
        let session_full = match (&permit, &budget) {
            (Some(None), Some(budget)) => {
                if ours < budget.fair_share() {
                    budget.want_room(now);
                }
                true
            }
            (Some(Some(_)), Some(budget)) if is_incoming => {
                ours >= budget.fair_share() && budget.is_room_wanted(now)
            }
            _ => false,
        };
        if session_full || (full && (!is_incoming || !self.make_room_for(addr, now))) {
            if !is_incoming {
                self.io.addresses.not_taken(addr, now);
            }
            return;
        }
        let permit = permit.flatten();
        let mut config = self.session_config();
        // BEP 10 `yourip`: how we see the peer, which it may use to learn its address.
        config.extension_handshake.yourip = Some(match addr.ip().to_canonical() {
            IpAddr::V4(ip) => ip.octets().to_vec(),
            IpAddr::V6(ip) => ip.octets().to_vec(),
        });
        if let Some(port) = self.external_port_for(addr) {
            config.extension_handshake.p = Some(port);
        }
        // A hybrid torrent's connection may be in its v2 swarm: the handshake names it.
        let swarms = self.io.config.metainfo.swarm_hashes();
        let (named, handshake) = match opened {
            Opened::Dialled(swarm) => (swarm, None),
            Opened::Accepted(bytes) => match shoal_wire::parse_handshake(&bytes) {
                Ok(Some(h)) => (h.info_hash, Some(h)),
                _ => return,
            },
        };
        if swarms.contains(&named) {
            config.info_hash = named;
        }
        let in_v2_swarm = swarms.get(1) == Some(&config.info_hash);
        let session = match handshake {
            None => PeerSession::new(config, now),
            Some(handshake) => match PeerSession::new_after_handshake(config, handshake, now) {
                Ok(session) => session,
                Err(_) => return,
            },
        };
        if is_incoming {
            self.io.addresses.incoming(addr, now);
        }
        let piece_count = self.io.config.metainfo.info.piece_count();
        let (download_limit, upload_limit) = (&self.download_limit, &self.upload_limit);
        let to_actor = &self.to_actor;
        let uplink = self.io.uplink.clone();
        let Secured {
            ciphers,
            leftover,
            obfuscated,
        } = secured;
        let encrypted = ciphers.is_some();
        let (encrypt, decrypt) = ciphers.map_or((None, None), |(e, d)| (Some(e), Some(d)));
        let transport = stream.kind();
        let mut stream = stream;
        let round_trip = stream.take_round_trip();
        let mut added = None;
        let make = |key| {
            added = Some(key);
            let (read, write) = tokio::io::split(stream);
            let (writer, writer_rx) = mpsc::unbounded_channel();
            let backlog = Backlog::default();
            connection::spawn_writer(
                write,
                encrypt,
                upload_limit.clone(),
                backlog.clone(),
                uplink.clone(),
                writer_rx,
            );
            let reader = connection::spawn_reader(
                key,
                read,
                decrypt,
                download_limit.clone(),
                to_actor.clone(),
            );
            Peer {
                addr,
                link: PeerLink::new(session, piece_count, now),
                round_trip,
                writer,
                backlog,
                uplink: uplink.bytes.clone(),
                reader,
                pex: PexPeer::new(now),
                holepunch: HolepunchPeer::new(now),
                transport,
                dialled: !is_incoming,
                encrypted,
                obfuscated,
                in_v2_swarm,
                _permit: permit,
            }
        };
        self.core.add_peer(make, now, &mut self.io);
        // Bytes that came with the handshakes (an encrypted one is read in chunks).
        if let (Some(key), false) = (added, leftover.is_empty()) {
            self.core
                .on_data(key, [Bytes::from(leftover)], now, &mut self.io);
        }
    }

    /// Connections we may still open: under our own limit and the session's, where a
    /// torrent at or over its share leaves the room to one under its share that wants it.
    fn room(&self, now: Instant) -> usize {
        let config = &self.io.config;
        let peers = self.connections();
        let ours = config.max_connections.saturating_sub(peers);
        match &config.connection_budget {
            None => ours,
            Some(budget) if peers >= budget.fair_share() && budget.is_room_wanted(now) => 0,
            Some(budget) => ours.min(budget.available()),
        }
    }

    /// Our connections, and the dials under way.
    fn connections(&self) -> usize {
        self.core.peers().len() + self.dialling
    }

    /// A dial's room in the session's limit: `Some(None)` without one, `None` if the
    /// session is full.
    fn dial_permit(&self) -> Option<Option<ConnectionPermit>> {
        match &self.io.config.connection_budget {
            None => Some(None),
            Some(budget) => budget.take().map(Some),
        }
    }

    /// With a session's limit: under our fair share, with peers to dial and no room,
    /// asks for room; over it while another torrent asks, lets our lowest-ranked
    /// connection go (one a second, so that a call for room frees about what it needs).
    fn share_connections(&mut self, now: Instant, metered: bool) {
        let Some(budget) = self.io.config.connection_budget.clone() else {
            return;
        };
        let peers = self.connections();
        let fair = budget.fair_share();
        let done = self.core.is_complete();
        if peers < fair.min(self.io.config.max_connections) {
            if budget.available() == 0 && self.io.addresses.any_due(now, done) {
                budget.want_room(now);
            }
        } else if metered && peers > fair && budget.is_room_wanted(now) {
            if let Some(key) = self.lowest_ranked() {
                let reason = "too many connections in the session: room for another torrent";
                self.core.remove_peer(key, reason, now, &mut self.io);
            }
        }
    }

    /// At our connection limit, a peer that connected to us takes the place of the
    /// connected peer of lowest BEP 40 priority if its own is higher (libtorrent's rule):
    /// the swarm's clients agree on which connections to keep, so a newcomer finds room
    /// and a flood of connections from a few addresses cannot lock everyone else out.
    /// Whether there is room now.
    fn make_room_for(&mut self, addr: SocketAddr, now: Instant) -> bool {
        let Some(ours) = self.our_address() else {
            return false;
        };
        match self.ranked_lowest(ours) {
            Some((rank, key)) if rank < peer_priority(ours, addr) => {
                let reason = "too many connections: replaced by a peer of higher priority (BEP 40)";
                self.core.remove_peer(key, reason, now, &mut self.io);
                true
            }
            _ => false,
        }
    }

    /// The connected peer of lowest BEP 40 priority (from `ours`), with its priority.
    fn ranked_lowest(&self, ours: SocketAddr) -> Option<(u32, PeerKey)> {
        self.core
            .peers()
            .iter()
            .map(|(&key, peer)| (peer_priority(ours, peer.listen_addr()), key))
            .min()
    }

    /// The peer to let go first: of lowest BEP 40 priority, as libtorrent chooses
    /// (any, if our address is unknown).
    fn lowest_ranked(&self) -> Option<PeerKey> {
        match self.our_address() {
            Some(ours) => self.ranked_lowest(ours).map(|(_, key)| key),
            None => self.core.peers().keys().next().copied(),
        }
    }

    /// Our address as peers see it, for BEP 40 priority: the IP most of our peers say
    /// they see (BEP 10 `yourip`, one vote per peer IP, so one peer cannot decide it),
    /// else the IP we listen on; with the port we listen on. `None` when neither is known.
    fn our_address(&self) -> Option<SocketAddr> {
        let listen = self.io.config.listen?;
        let votes: BTreeMap<IpAddr, IpAddr> = self
            .core
            .peers()
            .values()
            .filter_map(|peer| Some((peer.addr.ip(), peer.seen_as()?)))
            .collect();
        let mut counts: BTreeMap<IpAddr, usize> = BTreeMap::new();
        for ip in votes.into_values() {
            *counts.entry(ip).or_default() += 1;
        }
        let voted = counts
            .into_iter()
            .max_by_key(|&(ip, count)| (count, std::cmp::Reverse(ip)))
            .map(|(ip, _)| ip);
        let ip = voted.or(Some(listen.ip()).filter(|ip| !ip.is_unspecified()))?;
        Some(SocketAddr::new(ip, listen.port()))
    }

    fn on_disk(&mut self, result: DiskResult) -> Result<(), EngineError> {
        match result {
            DiskResult::Piece { piece, good } => {
                self.core
                    .piece_checked(piece, good, Instant::now(), &mut self.io);
            }
            DiskResult::Failed(e) => return Err(e.into()),
        }
        Ok(())
    }

    fn tick(&mut self) {
        let now = Instant::now();
        self.tell_external_port();
        // Connect to peers that are due.
        let slots = self.room(now);
        let done = self.core.is_complete();
        // What we are connected to is not dialled again, under any of its addresses; a
        // peer that named a hybrid's v2 swarm is dialled in it later, as one found there.
        for peer in self.core.peers().values() {
            let Some(addr) = peer.dialable_addr() else {
                continue;
            };
            self.io.addresses.listening(addr, now);
            if peer.in_v2_swarm {
                self.io.addresses.found_in_v2_swarm(addr);
            }
        }
        let ours = if slots > 0 { self.our_address() } else { None };
        for addr in self.io.addresses.due(now, slots.min(10), done, ours) {
            let Some(permit) = self.dial_permit() else {
                // Another torrent of the session took the room first.
                self.io.addresses.not_taken(addr, now);
                continue;
            };
            let config = &self.io.config;
            let policy = match config.encryption {
                Encryption::Prefer if self.io.addresses.is_plain_only(&addr) => Encryption::Off,
                policy => policy,
            };
            let order = config.dialer.order(self.io.addresses.wants_utp(&addr));
            self.dial(addr, (order, policy), permit);
        }
        // Timers, snubbing, uploads that waited for the writer's backlog to drain, the
        // choker.
        let metered = self.core.tick(now, &mut self.io);
        self.share_connections(now, metered);
        self.web_seeds
            .schedule(&mut self.core, now, &self.io.events);
        self.send_pex(now);
        if metered {
            // Once a second, as the request windows learn: a path's shortest round trip
            // changes seldom.
            for peer in self.core.peers_mut().values_mut() {
                peer.link.set_round_trip(peer.round_trip.shortest());
            }
            self.report_stats();
            if now.duration_since(self.last_peer_list) >= PEER_LIST_INTERVAL {
                self.report_peers(now);
                self.last_peer_list = now;
            }
        }
        if now.duration_since(self.last_resume_save) >= RESUME_SAVE_INTERVAL {
            self.save_resume();
            self.last_resume_save = now;
        }
    }

    /// BEP 11: tells each peer that speaks ut_pex about our other peers (their listen
    /// addresses), at most once a minute; never for a private torrent (BEP 27).
    fn send_pex(&mut self, now: Instant) {
        if self.io.config.metainfo.info.private {
            return;
        }
        // Peers whose listen address we know (not the ephemeral port of one that
        // connected to us and did not say), with what we know of them.
        let connected: BTreeMap<SocketAddr, PexFlags> = self
            .core
            .peers()
            .values()
            .filter(|p| p.link.connected)
            .filter_map(|p| Some((p.dialable_addr()?, p.pex_flags())))
            .collect();
        for peer in self.core.peers_mut().values_mut() {
            let Some(their_id) = peer.extension_id(UT_PEX) else {
                continue;
            };
            if let Some(payload) = peer.pex.poll_send(now, &connected, peer.listen_addr()) {
                peer.link.session.send_extended(their_id, payload);
                peer.flush();
            }
        }
    }

    fn report_stats(&mut self) {
        let info = &self.io.config.metainfo.info;
        let picker = self.core.picker();
        let left = picker.bytes_left();
        let wanted_left = picker.wanted_bytes_left();
        let (downloaded, uploaded) = (&self.core.downloaded, &self.core.uploaded);
        let rate = downloaded.rate();
        let mut available = picker.have().clone();
        for peer in self.core.peers().values() {
            for piece in peer.link.counted.iter_ones() {
                available.set(piece);
            }
        }
        let _ = self.io.events.send(EngineEvent::Stats(Stats {
            pieces_have: picker.have().count_ones(),
            piece_count: info.piece_count(),
            bytes_have: info.total_length - left,
            total_bytes: info.total_length,
            selected_have: self.selected_bytes - wanted_left,
            selected_bytes: self.selected_bytes,
            downloaded: downloaded.total,
            uploaded: uploaded.total,
            download_rate: rate,
            upload_rate: uploaded.rate(),
            peers: self
                .core
                .peers()
                .values()
                .filter(|p| p.link.connected)
                .count(),
            eta_secs: (wanted_left > 0 && rate > 1.0).then(|| (wanted_left as f64 / rate) as u64),
            available_pieces: available.count_ones(),
            wasted: self.wasted(),
        }));
    }

    fn report_peers(&self, now: Instant) {
        let pieces = self.io.config.metainfo.info.piece_count().max(1) as f64;
        let peers = self.core.peers().values().filter(|p| p.link.connected);
        let list = peers
            .map(|peer| {
                let link = &peer.link;
                let state = link.session.state();
                PeerInfo {
                    addr: peer.addr,
                    client: state
                        .peer_id
                        .as_ref()
                        .map_or_else(String::new, |id| client_name(&id.0)),
                    transport: peer.transport,
                    incoming: !peer.dialled,
                    encrypted: peer.encrypted,
                    round_trip: peer.round_trip.shortest(),
                    download_rate: link.downloaded.rate(),
                    upload_rate: link.uploaded.rate(),
                    downloaded: link.downloaded.total,
                    uploaded: link.uploaded.total,
                    progress: link.counted.count_ones() as f64 / pieces,
                    choking_us: state.peer_choking,
                    choked: state.am_choking,
                    interested: state.am_interested,
                    peer_interested: state.peer_interested,
                    snubbed: link.is_snubbed(now),
                }
            })
            .collect();
        let _ = self.io.events.send(EngineEvent::Peers(list));
    }

    /// Bytes downloaded for nothing: duplicates and pieces that failed the hash check.
    fn wasted(&self) -> u64 {
        self.core.duplicate_bytes + self.core.failed_bytes
    }

    fn save_resume(&self) {
        if let Err(e) = resume::save(
            &self.resume_path,
            &self.io.config.metainfo.info_hash,
            &self.io.files,
            self.core.have(),
            &self.io.addresses.worth_keeping(resume::MAX_PEERS),
        ) {
            tracing::warn!("cannot save resume state: {e}");
        }
    }

    /// Every (selected) piece is verified: the (selected) files are made whole (empty
    /// files too), the resume state saved and the user told.
    fn report_completion(&mut self) -> Result<(), EngineError> {
        self.completion_reported = true;
        self.seeding_since = Some(Instant::now());
        match &self.io.config.selected_files {
            Some(selected) => self.io.files.create_files(selected)?,
            None => self.io.files.create_all()?,
        }
        self.save_resume();
        let _ = self.io.events.send(EngineEvent::Completed {
            downloaded: self.core.downloaded.total,
            wasted: self.wasted(),
            seed: self.core.picker().is_seed(),
        });
        Ok(())
    }

    fn shutdown(&mut self, disk_results: &mut mpsc::UnboundedReceiver<DiskResult>) {
        let now = Instant::now();
        // Complete pieces not hashed yet would otherwise be downloaded again next time.
        self.io.disk.finish();
        while let Ok(result) = disk_results.try_recv() {
            if let Err(e) = self.on_disk(result) {
                tracing::warn!("cannot write the last pieces: {e}");
            }
        }
        self.save_resume();
        let keys: Vec<PeerKey> = self.core.peers().keys().copied().collect();
        for key in keys {
            self.core
                .remove_peer(key, "shutting down", now, &mut self.io);
        }
        // The figures as it stops: what moved since the last second's count too (a
        // daemon adds each run to the torrent's totals).
        self.report_stats();
    }
}

/// HTTP settings for web seeds: a fetch of up to a few MiB may take a while, and the
/// requests go out from the address peers know us by.
fn web_seed_http(config: &TorrentConfig) -> shoal_tracker::driver::http::HttpConfig {
    shoal_tracker::driver::http::HttpConfig {
        // A 1 MiB fetch from a slow server may take minutes; a silent one is left after
        // 20 s (libtorrent's `urlseed_timeout`).
        timeout: Duration::from_secs(600),
        idle_timeout: Some(Duration::from_secs(20)),
        bind: config
            .listen
            .map(|a| a.ip())
            .filter(|ip| !ip.is_unspecified()),
        proxy: config.dialer.proxy.clone(),
        ..Default::default()
    }
}

/// The BEP 10 extensions we take: ut_metadata and upload_only (BEP 21) always; ut_pex
/// and ut_holepunch (BEP 55, as a relay at least) unless the torrent is private, whose
/// peers come from its tracker alone (BEP 27).
fn extensions_offered(metainfo: &Metainfo) -> BTreeMap<String, u8> {
    let mut m = BTreeMap::from([
        (UT_METADATA.to_owned(), OUR_UT_METADATA_ID),
        (UPLOAD_ONLY.to_owned(), OUR_UPLOAD_ONLY_ID),
    ]);
    if !metainfo.info.private {
        m.insert(UT_PEX.to_owned(), OUR_UT_PEX_ID);
        m.insert(UT_HOLEPUNCH.to_owned(), OUR_UT_HOLEPUNCH_ID);
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

/// Whether `addr` is an IPv4 peer on the internet: port mapping is IPv4's, and a peer on
/// the LAN reaches our listen port itself.
fn is_public_ipv4(addr: SocketAddr) -> bool {
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => {
            !(ip.is_private() || ip.is_loopback() || ip.is_link_local() || ip.is_unspecified())
        }
        IpAddr::V6(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_hash_reads_are_capped_per_second() {
        let mut reads = HashReads::default();
        let start = Instant::now();
        for _ in 0..HASH_READS_PER_SECOND {
            assert!(reads.take(start));
        }
        assert!(
            !reads.take(start + Duration::from_millis(999)),
            "over the cap"
        );
        assert!(
            reads.take(start + Duration::from_secs(1)),
            "the next second"
        );
    }
}
