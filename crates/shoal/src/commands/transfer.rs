//! `shoal get` and `shoal seed`: run one torrent with the engine and show its progress;
//! for magnet links, fetch its metadata from peers first.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::hook;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use shoal_bencode::Value;
use shoal_core::mutable::MutableLink;
use shoal_core::{InfoHash, Magnet, Metainfo, PeerId};
use shoal_engine::metadata::{fetch_metadata, Fetched, MetadataFetch, MetadataFetchError};
use shoal_engine::{
    Dialer, Encryption, EngineEvent, Found, IpFilter, Outcome, PeerFeed, PeerInfo, RateLimit,
    SeedLimit, TorrentConfig, UtpMode,
};
use shoal_portmap::driver::{Method, PortMapper};
use shoal_portmap::Protocol;
use shoal_proxy::Proxy;
use shoal_tracker::driver::TrackerBoard;
use shoal_tracker::Progress;
use shoal_utp::UtpSocket;
use tokio::sync::{mpsc, watch};

use super::announcers::{parse_tier, with_extra, without_udp, Announcers, Tier};
use super::discovery::{self, Dhts, DiscoveryOptions};
use super::prioritize::Prioritize;
use super::select::{FileSelection, Selection};

use shoal_core::units::{format_size, parse_rate};

/// Options shared by `get` and `seed`.
#[derive(Debug, Clone, clap::Args)]
pub struct PeerOptions {
    /// A peer to connect to: IP:PORT, [IPv6]:PORT or HOST:PORT (a name is resolved once,
    /// at the start, and each of its addresses dialled). Repeat for several.
    #[arg(long = "peer", value_name = "ADDR", value_parser = parse_peer)]
    pub peers: Vec<PeerArg>,
    /// Address to accept peers on [default: [::] (IPv4 and IPv6; 0.0.0.0 without IPv6)
    /// on the first port of 6881-6999 free for TCP and UDP, as aria2 picks one]. On [::]
    /// the DHT runs in both the IPv4 and the IPv6 network.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Upload limit in bytes per second (e.g. 2M = 2 MiB/s, 2MB = 2 MB/s); unlimited by default.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_up: Option<u64>,
    /// Download limit in bytes per second (e.g. 10M); unlimited by default.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_down: Option<u64>,
    /// Most peer connections at once.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_peers: usize,
    /// Peers to upload to at once: one chosen at random in turn (the optimistic unchoke),
    /// the others those that trade best with us, as libtorrent's unchoke_slots_limit and
    /// Transmission's upload slots. Fewer slots give each peer more of the upload.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub upload_slots: u16,
    /// A blocklist: no connection is made to or taken from its addresses. Reads the
    /// lists Transmission and qBittorrent read: PeerGuardian text (`name:1.2.3.0-1.2.3.255`),
    /// eMule's ipfilter.dat, and lines of an address, a CIDR block or a range (IPv6 too).
    #[arg(long, value_name = "FILE")]
    pub ip_filter: Option<PathBuf>,
    /// Print one JSON object per line for each event instead of a progress bar.
    #[arg(long)]
    pub json: bool,
    /// Where resume state is kept [default: $XDG_DATA_HOME/shoal or ~/.local/share/shoal].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Do not announce to the torrent's trackers (use only --peer and incoming peers).
    #[arg(long)]
    pub no_tracker: bool,
    /// Connect to peers, trackers and web seeds through this proxy, as libtorrent's:
    /// socks5://[USER:PASSWORD@]HOST:PORT (SOCKS5) or http://[USER:PASSWORD@]HOST:PORT
    /// (HTTP CONNECT). Host names go to the proxy to resolve. A SOCKS5 proxy that relays
    /// UDP (UDP ASSOCIATE) carries uTP, the DHT (read-only) and UDP trackers too; what
    /// cannot go through the proxy is turned off, and said to be. Peers may still connect
    /// to --listen.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<Proxy>,
    /// Announce to this tracker too (http, https or udp), in a tier after the torrent's
    /// or the magnet's own, as aria2's --bt-tracker and libtorrent's add_tracker. Repeat
    /// for several tiers; separate URLs with commas to put them in one tier. The
    /// torrent file is not changed.
    #[arg(long = "tracker", value_name = "URL", value_parser = parse_tier, conflicts_with = "no_tracker")]
    pub trackers: Vec<Tier>,
    /// Hash the data on disk again even where the resume state vouches for it (which it
    /// does while every file keeps its size and modification time): after bit rot, or a
    /// tool that changed a file and kept its time. Pieces that fail are fetched again.
    #[arg(long)]
    pub recheck: bool,
    /// Message stream encryption (MSE/PE), as libtorrent and Transmission speak it:
    /// `prefer` dials with an encrypted handshake (again in plaintext if the peer does
    /// not answer it) and accepts both kinds; `require` encrypts every connection with
    /// RC4, both ways, and refuses plain ones; `off` refuses encrypted ones.
    #[arg(long, value_name = "MODE", value_enum, default_value_t = EncryptionMode::Prefer)]
    pub encryption: EncryptionMode,
    /// uTP (BEP 29), BitTorrent over UDP with delay-based congestion control that yields
    /// to your other traffic, on the listen port (shared with the DHT). With any mode but
    /// `off`, peers may connect over uTP. `fallback` dials TCP first and uTP when TCP
    /// fails; `prefer` dials uTP first, as libtorrent does; `only` uses uTP alone, both
    /// ways; `off` uses TCP alone.
    #[arg(long, value_name = "MODE", value_enum, default_value_t = UtpArg::Fallback)]
    pub utp: UtpArg,
    /// Do not ask the router to forward the listen port. By default, when listening on
    /// all addresses or a private one, shoal asks the router over NAT-PMP (RFC 6886)
    /// and UPnP IGD to forward the port's TCP and UDP to us, so that peers outside can
    /// connect, and removes the forwarding on exit.
    #[arg(long)]
    pub no_port_map: bool,
    /// Stop seeding (exit 0) once the bytes uploaded reach RATIO times the bytes held, as
    /// aria2's --seed-ratio (e.g. 1.0; 0 for no ratio limit). With --seed-time, whichever
    /// comes first. The daemon counts each torrent's uploads over all its runs, and
    /// `remote` changes the limit, or sets a torrent's own.
    #[arg(long, value_name = "RATIO", value_parser = parse_ratio)]
    pub seed_ratio: Option<f64>,
    /// Stop seeding (exit 0) after this many minutes, as aria2's --seed-time (0 stops once
    /// the download is complete); for the daemon, minutes over all a torrent's runs.
    #[arg(long, value_name = "MINUTES", value_parser = parse_minutes)]
    pub seed_time: Option<Duration>,
}

/// One `--peer`: the addresses it names (one for an address, each a host name resolves
/// to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerArg(Vec<SocketAddr>);

fn parse_peer(text: &str) -> Result<PeerArg, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(PeerArg(vec![addr]));
    }
    if text
        .rsplit_once(':')
        .is_none_or(|(_, port)| port.parse::<u16>().is_err())
    {
        return Err(format!("'{text}' is not IP:PORT or HOST:PORT"));
    }
    match std::net::ToSocketAddrs::to_socket_addrs(text) {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            match addrs.is_empty() {
                true => Err(format!("{text}: the name has no address")),
                false => Ok(PeerArg(addrs)),
            }
        }
        Err(e) => Err(format!("{text}: {e}")),
    }
}

/// Every address `peers` name, in order, once each.
fn addrs_of(peers: &[PeerArg]) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in peers.iter().flat_map(|p| &p.0) {
        if !addrs.contains(addr) {
            addrs.push(*addr);
        }
    }
    addrs
}

impl PeerOptions {
    pub fn peer_addrs(&self) -> Vec<SocketAddr> {
        addrs_of(&self.peers)
    }

    /// `--recheck`'s check of the data at the start.
    pub fn check(&self) -> shoal_engine::Check {
        match self.recheck {
            true => shoal_engine::Check::Recheck,
            false => shoal_engine::Check::Resume,
        }
    }

    pub fn seed_limit(&self) -> SeedLimit {
        SeedLimit {
            ratio: self.seed_ratio.filter(|&r| r > 0.0),
            time: self.seed_time,
        }
    }
}

fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("'{text}' is not a ratio (a number such as 1.0)")),
    }
}

fn parse_minutes(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(m) if m.is_finite() && (0.0..=1e9).contains(&m) => Ok(Duration::from_secs_f64(m * 60.0)),
        _ => Err(format!("'{text}' is not a number of minutes")),
    }
}

/// `--encryption`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EncryptionMode {
    Off,
    Prefer,
    Require,
}

/// `--utp`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UtpArg {
    Off,
    Fallback,
    Prefer,
    Only,
}

impl From<UtpArg> for UtpMode {
    fn from(mode: UtpArg) -> Self {
        match mode {
            UtpArg::Off => UtpMode::Off,
            UtpArg::Fallback => UtpMode::Fallback,
            UtpArg::Prefer => UtpMode::Prefer,
            UtpArg::Only => UtpMode::Only,
        }
    }
}

impl From<EncryptionMode> for Encryption {
    fn from(mode: EncryptionMode) -> Self {
        match mode {
            EncryptionMode::Off => Encryption::Off,
            EncryptionMode::Prefer => Encryption::Prefer,
            EncryptionMode::Require => Encryption::Require,
        }
    }
}

/// Download a torrent, verifying every piece, then keep seeding it.
///
/// Data already in the output folder is checked first and only what is missing is
/// fetched, so an interrupted download resumes where it stopped. For a magnet link or a
/// bare info-hash, peers come from the DHT (and the link's `x.pe` peers) and the
/// metadata from those peers, checked against the info-hash. Exits 0 only when every
/// piece (of the selected files, with --select-file) is verified on disk; 3 when stopped
/// (Ctrl-C) before that.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// A .torrent file or its http(s) URL, a magnet link, or an info-hash (40 hex or 32
    /// base32 characters).
    #[arg(value_name = "TORRENT|MAGNET|INFOHASH")]
    pub torrent: String,
    /// The folder to download into (the torrent's file or folder is created inside it).
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    pub output: PathBuf,
    /// Stop when the download is complete instead of seeding until Ctrl-C.
    #[arg(long, conflicts_with_all = ["seed_ratio", "seed_time"])]
    pub no_seed: bool,
    /// Download only these files, numbered from 1 as `shoal info` lists them: `2`,
    /// `1,3-5`. A piece that a selected file shares with its neighbour is written into
    /// the neighbour too, so that file may appear, incomplete. Afterwards the pieces that
    /// are here are seeded.
    #[arg(long, value_name = "LIST")]
    pub select_file: Option<FileSelection>,
    /// Fetch pieces in order, so a video or an archive can be read while it downloads
    /// (libtorrent's and qBittorrent's sequential download). Rarest first, the default,
    /// is better for the swarm.
    #[arg(long)]
    pub sequential: bool,
    /// Fetch the pieces at the start (head) and the end (tail) of each file first, SIZE
    /// bytes of each (1M if not given), so a player or an unpacker can read what it
    /// needs early, as aria2's --bt-prioritize-piece: `head`, `head=2M,tail=1M`.
    #[arg(long, value_name = "head[=SIZE],tail[=SIZE]")]
    pub prioritize_piece: Option<Prioritize>,
    /// For a magnet link or an info-hash: fetch the metadata from peers, write it to the
    /// output folder as INFOHASH.torrent, and exit without downloading (aria2's
    /// --bt-metadata-only with --bt-save-metadata).
    #[arg(long, conflicts_with_all = ["select_file", "sequential", "prioritize_piece", "on_complete", "stream"])]
    pub metadata_only: bool,
    #[command(flatten)]
    pub stream: super::stream::StreamArgs,
    /// Give up (exit code 3) when no data has come for SECS seconds while pieces are
    /// missing, as aria2's --bt-stop-timeout: a script is not left waiting on a torrent
    /// nobody seeds. Run the same command again to resume.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub stop_timeout: Option<u64>,
    /// Run PROGRAM once every wanted piece is verified (also when the files were
    /// complete already), as aria2's --on-download-complete: with the info-hash, the
    /// torrent's name and the path of its file or folder as arguments (and in
    /// SHOAL_INFO_HASH, SHOAL_NAME, SHOAL_PATH). It is run directly, never through a
    /// shell, and its output goes to standard error. Seeding goes on beside it; shoal
    /// exits only once it has ended.
    #[arg(long, value_name = "PROGRAM")]
    pub on_complete: Option<PathBuf>,
    #[command(flatten)]
    pub peer: PeerOptions,
    #[command(flatten)]
    pub discovery: DiscoveryOptions,
}

/// Check a torrent's data on disk, then seed it until Ctrl-C.
#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    /// The .torrent file.
    pub torrent: PathBuf,
    /// The folder that holds the torrent's content (the one `shoal get -o` wrote into);
    /// for a single-file torrent, the file itself also works.
    pub path: PathBuf,
    /// Super-seed (BEP 16): announce no pieces and reveal them one at a time to the peers
    /// being uploaded to, so that an initial seed with little upload sends each piece
    /// about once. For the first seed of a new torrent; ignored if data is missing.
    #[arg(long)]
    pub super_seed: bool,
    #[command(flatten)]
    pub stream: super::stream::StreamArgs,
    #[command(flatten)]
    pub peer: PeerOptions,
    #[command(flatten)]
    pub discovery: DiscoveryOptions,
}

pub fn default_state_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir)
        .join("shoal")
}

/// What `shoal get` was given.
pub enum Source {
    Torrent(Metainfo),
    Magnet(Magnet),
}

/// A torrent file, its http(s) URL (fetched through `proxy` if given), a magnet link or
/// a bare info-hash.
pub fn parse_source(arg: &str, proxy: Option<Arc<Proxy>>) -> Result<Source> {
    if super::info::is_url(arg) {
        return Ok(Source::Torrent(super::info::fetch_torrent(arg, proxy)?));
    }
    if arg
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("magnet:"))
    {
        let magnet: Magnet = arg.parse().context("not a usable magnet link")?;
        return Ok(Source::Magnet(magnet));
    }
    let path = Path::new(arg);
    if !path.exists() {
        if let Ok(info_hash) = arg.parse::<InfoHash>() {
            return Ok(Source::Magnet(Magnet {
                info_hash,
                info_hash_v2: None,
                name: None,
                trackers: Vec::new(),
                peers: Vec::new(),
                web_seeds: Vec::new(),
                select_only: Vec::new(),
            }));
        }
    }
    Ok(Source::Torrent(super::info::load_torrent(path)?))
}

pub fn run_get(args: GetArgs) -> Result<()> {
    let source = match args.torrent.parse::<MutableLink>() {
        // BEP 46: the newest version its publisher put in the DHT.
        Ok(link) => Source::Magnet(super::mutable::resolve(&link, &lookup_node(&args)?)?),
        Err(_) => parse_source(&args.torrent, args.peer.proxy.clone().map(Arc::new))?,
    };
    if args.metadata_only && matches!(source, Source::Torrent(_)) {
        bail!("--metadata-only fetches a magnet link's metadata; this torrent has it already");
    }
    // Known files: refuse a bad selection before anything starts.
    let select = args.select_file.map_or(Selection::All, Selection::Numbered);
    if let Source::Torrent(metainfo) = &source {
        select.resolve(&metainfo.info.files)?;
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("{}: cannot create", args.output.display()))?;
    let job = Job {
        dir: args.output,
        file: None,
        seed: !args.no_seed,
        super_seed: false,
        select,
        opts: args.peer,
        discovery: args.discovery,
        ip_filter: None,
        sequential: args.sequential,
        prioritize: args.prioritize_piece,
        metadata_only: args.metadata_only,
        stall_timeout: args.stop_timeout.map(Duration::from_secs),
        downloads: true,
        on_complete: args.on_complete,
        stream: args.stream.stream,
        no_udp_relay: false,
    }
    .behind_proxy()?
    .choose_listen()?
    .load_ip_filter()?;
    block_on(move |stop| async move {
        match source {
            Source::Torrent(metainfo) => job.run(metainfo, stop).await,
            Source::Magnet(magnet) => job.run_magnet(magnet, stop).await,
        }
    })
}

/// The short-lived DHT node that looks a BEP 46 link up: bootstrapped as the download's
/// node will be, on the same address with a port of its own.
fn lookup_node(args: &GetArgs) -> Result<super::dht::ClientArgs> {
    if args.discovery.no_dht || args.peer.proxy.is_some() {
        bail!("a magnet:?xs=urn:btpk: link is looked up in the DHT, which is off");
    }
    // All addresses (`[::]` too): the IPv4 DHT, the one every client is in.
    let ip = match args.peer.listen.map(|a| a.ip()) {
        Some(ip) if !ip.is_unspecified() => ip,
        _ => std::net::Ipv4Addr::UNSPECIFIED.into(),
    };
    let state = args
        .peer
        .state_dir
        .clone()
        .unwrap_or_else(default_state_dir);
    Ok(super::dht::ClientArgs {
        bootstrap: args.discovery.bootstrap.clone(),
        listen: SocketAddr::new(ip, 0),
        state: Some(state.join("dht-client.state")),
        timeout: 60,
        json: args.peer.json,
    })
}

pub fn run_seed(args: SeedArgs) -> Result<()> {
    let metainfo = super::info::load_torrent(&args.torrent)?;
    let meta = std::fs::metadata(&args.path)
        .with_context(|| format!("{}: cannot read", args.path.display()))?;
    let (dir, file) = if meta.is_file() {
        if metainfo.info.multi_file {
            bail!(
                "{}: is a file, but the torrent holds a folder; pass the folder that contains '{}'",
                args.path.display(),
                metainfo.info.name
            );
        }
        (
            args.path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            Some(args.path.clone()),
        )
    } else {
        (args.path.clone(), None)
    };
    let job = Job {
        dir,
        file,
        seed: true,
        super_seed: args.super_seed,
        select: Selection::All,
        opts: args.peer,
        discovery: args.discovery,
        ip_filter: None,
        sequential: false,
        prioritize: None,
        metadata_only: false,
        stall_timeout: None,
        downloads: false,
        on_complete: None,
        stream: args.stream.stream,
        no_udp_relay: false,
    }
    .behind_proxy()?
    .choose_listen()?
    .load_ip_filter()?;
    block_on(move |stop| job.run(metainfo, stop))
}

/// Runs `work` on a fresh runtime with a stop signal that Ctrl-C or SIGTERM sets.
fn block_on<F, Fut>(work: F) -> Result<()>
where
    F: FnOnce(watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = Result<Outcome>> + Send + 'static,
{
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async move {
        let (stop_tx, stop) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = stop_tx.send(true);
        });
        // On a worker thread rather than this one, so that a socket's reader task wakes
        // the torrent actor on its own thread instead of across threads.
        tokio::spawn(work(stop))
            .await
            .context("the transfer task failed")?
    })?;
    match outcome {
        Outcome::Complete => Ok(()),
        Outcome::Stopped => {
            eprintln!("shoal: stopped before the download completed; run the same command again to resume");
            std::process::exit(3);
        }
    }
}

/// How long a clean exit waits for trackers to acknowledge `stopped`.
pub const STOP_ANNOUNCE_WAIT: Duration = Duration::from_secs(2);

/// The port the router forwards to our listen port (port mapping), once it says; peers
/// outside the NAT reach us there, so trackers and the DHT are told that one.
pub type ExternalPort = watch::Receiver<Option<u16>>;

/// What the progress display is told: the engine's events, and what the trackers said.
#[derive(Debug)]
pub enum Update {
    Engine(EngineEvent),
    /// A tracker answered an announce with this many peers.
    TrackerPeers(usize),
    /// The router answered a port mapping request (or did not), over NAT-PMP or UPnP.
    PortMap(Method, shoal_portmap::Event),
    /// What became of the `--on-complete` program.
    Hook(hook::Outcome),
}

/// Where a torrent is announced: its trackers' tiers, the DHT, the port a router
/// forwards to us, and where what each tracker says is kept for a user interface.
pub type Announcing = (Vec<Vec<String>>, Dhts, ExternalPort, Option<TrackerBoard>);

/// Runs one torrent in the engine while announcing it to `trackers` (none: no announcing)
/// and feeding the peers they return to the engine; everything worth showing goes to
/// `display`. After the engine stops, the trackers are told `stopped`.
///
/// `shoal get`, `shoal seed` and every peer of `shoal demo` run through here, so the demo
/// finds its peers exactly the way a user's swarm does.
pub async fn run_announced(
    mut config: TorrentConfig,
    (trackers, dht, external_port, board): Announcing,
    display: mpsc::UnboundedSender<Update>,
    stop: watch::Receiver<bool>,
) -> Result<Outcome> {
    let (feed, peer_feed) = mpsc::unbounded_channel();
    if !trackers.is_empty() {
        // Peers from the trackers join those of any other source (the DHT, LSD).
        if let Some(other) = config.peer_feed.take() {
            discovery::relay(other, feed.clone(), |peers| peers);
        }
        config.peer_feed = Some(peer_feed);
    }
    let (events_tx, events) = mpsc::unbounded_channel();
    let announcing = tokio::spawn(announce(
        (events, external_port),
        display,
        config.metainfo.clone(),
        (trackers, config.dialer.proxy.clone(), board),
        dht,
        feed,
    ));
    let outcome = shoal_engine::run(config, events_tx, stop).await;
    // The engine has dropped its event sender, so `announce` returns.
    if let Ok(Some(announcers)) = announcing.await {
        announcers.stop(STOP_ANNOUNCE_WAIT).await;
    }
    Ok(outcome?)
}

/// Passes engine events on to the display and keeps the trackers told: starts announcing
/// once the engine listens (its port is known then), reports progress and completion,
/// and relays the peers the trackers return to the engine's `feed`, telling the display
/// how many. The DHT hears when we become a seed (BEP 33). Returns the announcers, so the
/// caller can send `stopped` after the engine stops.
async fn announce(
    (mut events, mut external_port): (mpsc::UnboundedReceiver<EngineEvent>, ExternalPort),
    display: mpsc::UnboundedSender<Update>,
    metainfo: Arc<Metainfo>,
    (trackers, proxy, board): (Vec<Vec<String>>, Option<Arc<Proxy>>, Option<TrackerBoard>),
    dht: Dhts,
    feed: mpsc::UnboundedSender<Found>,
) -> Option<Announcers> {
    let info = &metainfo.info;
    let mut announcers: Option<Announcers> = None;
    let (found_tx, mut found) = mpsc::unbounded_channel::<Found>();
    // A torrent complete from the start is a seed: no `completed` to report.
    let mut was_complete = false;
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => break,
            },
            Some(peers) = found.recv() => {
                let _ = display.send(Update::TrackerPeers(peers.peers.len()));
                let _ = feed.send(peers);
                continue;
            }
            Ok(()) = external_port.changed() => {
                if let Some(port) = *external_port.borrow_and_update() {
                    for swarm in metainfo.swarm_hashes() {
                        dht.set_ipv4_port(swarm, port);
                    }
                    if let Some(a) = &announcers {
                        a.set_ipv4_port(port);
                    }
                }
                continue;
            }
        };
        let now_seed = match &event {
            EngineEvent::Started {
                have, piece_count, ..
            } => have == piece_count,
            EngineEvent::Completed { seed, .. } => *seed,
            _ => false,
        };
        if now_seed {
            for swarm in metainfo.swarm_hashes() {
                dht.seeding(swarm);
            }
        }
        match &event {
            EngineEvent::Started {
                have,
                piece_count,
                listen: Some(listen),
                peer_id,
                ..
            } if !trackers.is_empty() && announcers.is_none() => {
                was_complete = have == piece_count;
                let left = if have == piece_count {
                    0
                } else {
                    info.total_length
                        .saturating_sub(*have as u64 * u64::from(info.piece_length))
                        .max(1)
                };
                // Whether it is a partial seed is known from the first stats, a second on.
                let progress = Progress {
                    uploaded: 0,
                    downloaded: 0,
                    left,
                    partial_seed: false,
                };
                announcers = Some(Announcers::spawn(
                    &trackers,
                    (&metainfo.swarm_hashes(), *peer_id),
                    (*listen, *external_port.borrow()),
                    progress,
                    (&found_tx, proxy.clone()),
                    board.clone(),
                ));
            }
            EngineEvent::Stats(s) => {
                if let Some(a) = &announcers {
                    let left = s.total_bytes.saturating_sub(s.bytes_have);
                    a.set_progress(Progress {
                        uploaded: s.uploaded,
                        downloaded: s.downloaded,
                        left,
                        // BEP 21: the chosen files are here; announces say `paused`.
                        partial_seed: left > 0 && s.selected_have == s.selected_bytes,
                    });
                }
            }
            // Only a download that made us a seed is `completed` to a tracker.
            EngineEvent::Completed { seed: true, .. } if !was_complete => {
                if let Some(a) = &announcers {
                    a.completed();
                }
            }
            _ => {}
        }
        let _ = display.send(Update::Engine(event));
    }
    announcers
}

/// One torrent to run, with where its data lives and how to find peers.
struct Job {
    dir: PathBuf,
    file: Option<PathBuf>,
    seed: bool,
    super_seed: bool,
    /// Only these files (`get --select-file`, or a magnet's `so=`).
    select: Selection,
    opts: PeerOptions,
    discovery: DiscoveryOptions,
    /// `--ip-filter`, read once.
    ip_filter: Option<Arc<IpFilter>>,
    /// `get --sequential`.
    sequential: bool,
    /// `get --prioritize-piece`.
    prioritize: Option<Prioritize>,
    /// `get` (which may download), not `seed` (which has every piece).
    downloads: bool,
    /// `get --on-complete`.
    on_complete: Option<PathBuf>,
    /// `get --metadata-only`: a magnet's metadata to the output folder, then stop.
    metadata_only: bool,
    /// `get --stop-timeout`.
    stall_timeout: Option<Duration>,
    /// `get --stream`: where to serve the files over HTTP.
    stream: Option<SocketAddr>,
    /// The SOCKS5 proxy relays no UDP: UDP trackers are left out too (see
    /// [`Job::open_utp`]).
    no_udp_relay: bool,
}

/// The ports tried when no `--listen` is given: aria2's default range.
const DEFAULT_PORTS: std::ops::RangeInclusive<u16> = 6881..=6999;

/// The first address on `ip` with a port of `ports` that is free for TCP, and for UDP
/// too if `udp` (the DHT node listens on the same port), so that a second shoal on the
/// machine does not fail for want of `--listen`. The probe sockets are closed at once;
/// the engine and the DHT bind for real right after.
fn free_listen_addr(
    ip: std::net::IpAddr,
    ports: std::ops::RangeInclusive<u16>,
    udp: bool,
) -> Result<SocketAddr> {
    let (first, last) = (*ports.start(), *ports.end());
    for port in ports {
        let addr = SocketAddr::new(ip, port);
        if probe(addr, socket2::Type::STREAM).is_ok()
            && (!udp || probe(addr, socket2::Type::DGRAM).is_ok())
        {
            return Ok(addr);
        }
    }
    bail!("no port of {first}-{last} is free on {ip}; choose one with --listen")
}

/// A port on `ip` that the system picks for UDP and that is free for TCP too.
fn free_ephemeral_addr(ip: std::net::IpAddr) -> Result<SocketAddr> {
    for _ in 0..20 {
        let udp = probe(SocketAddr::new(ip, 0), socket2::Type::DGRAM)?;
        let addr = udp
            .local_addr()?
            .as_socket()
            .context("a UDP socket without an address")?;
        if probe(addr, socket2::Type::STREAM).is_ok() {
            return Ok(addr);
        }
    }
    bail!("no port on {ip} is free for both TCP and UDP; choose one with --listen")
}

/// A socket bound at `addr` as the engine will bind it (dual-stack on `[::]`), to see
/// whether the address is free.
fn probe(addr: SocketAddr, kind: socket2::Type) -> std::io::Result<socket2::Socket> {
    shoal_core::dual_stack::bind(addr, kind)
}

/// Where to listen when `--listen` gives no address: every address of both families
/// (`[::]`, dual-stack) where the system has IPv6, else every IPv4 address.
fn any_address() -> std::net::IpAddr {
    let dual = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
    match probe(dual, socket2::Type::DGRAM) {
        Ok(_) => dual.ip(),
        Err(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
    }
}

impl Job {
    /// The address peers reach us at: `--listen`, else a free port of [`DEFAULT_PORTS`]
    /// (chosen once, by [`Job::choose_listen`]).
    fn listen(&self) -> SocketAddr {
        self.opts.listen.expect("chosen by Job::choose_listen")
    }

    /// With `--proxy`, turns off what would go around it. A SOCKS5 proxy relays UDP too
    /// (uTP, the DHT, UDP trackers: see [`Job::open_utp`]); behind an HTTP proxy, uTP and
    /// the DHT are off and UDP trackers are left out when announcing.
    fn behind_proxy(mut self) -> Result<Self> {
        let Some(proxy) = &self.opts.proxy else {
            return Ok(self);
        };
        if let Proxy::Socks5(_) = proxy {
            // UDP goes through the proxy's relay: uTP, the DHT and UDP trackers too,
            // as libtorrent sends them. A DHT socket of its own would not.
            if self.discovery.dht_listen.is_some() && !self.discovery.no_dht {
                bail!(
                    "--dht-listen cannot go through the proxy: the DHT shares the relayed socket"
                );
            }
            return Ok(self);
        }
        if self.opts.utp == UtpArg::Only {
            bail!(
                "--utp only cannot go through an HTTP proxy (uTP is UDP); a SOCKS5 one relays it"
            );
        }
        if !self.discovery.no_dht || self.opts.utp != UtpArg::Off {
            eprintln!(
                "shoal: through {proxy}: TCP peers and HTTP(S) trackers; uTP and the DHT are off (a SOCKS5 proxy would relay them)"
            );
        }
        self.opts.utp = UtpArg::Off;
        self.discovery.no_dht = true;
        Ok(self)
    }

    fn choose_listen(mut self) -> Result<Self> {
        let dht_here = !self.discovery.no_dht && self.discovery.dht_listen.is_none();
        let udp = dht_here || self.opts.utp != UtpArg::Off;
        match self.opts.listen {
            None => {
                self.opts.listen = Some(free_listen_addr(any_address(), DEFAULT_PORTS, udp)?);
            }
            // TCP, uTP and the DHT must share one port, which `:0` would not give.
            Some(addr) if addr.port() == 0 && udp => {
                self.opts.listen = Some(free_ephemeral_addr(addr.ip())?);
            }
            Some(_) => {}
        }
        Ok(self)
    }

    fn load_ip_filter(mut self) -> Result<Self> {
        let Some(path) = &self.opts.ip_filter else {
            return Ok(self);
        };
        // The largest public lists are a few tens of MiB.
        const MAX_FILTER_FILE: u64 = 256 * 1024 * 1024;
        let size = std::fs::metadata(path)
            .with_context(|| format!("{}: cannot read", path.display()))?
            .len();
        if size > MAX_FILTER_FILE {
            bail!(
                "{}: {size} bytes is more than an IP filter can be ({MAX_FILTER_FILE})",
                path.display()
            );
        }
        let text =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let filter = IpFilter::parse(&String::from_utf8_lossy(&text))
            .with_context(|| format!("{}: not an IP filter", path.display()))?;
        if filter.ignored() > 0 {
            eprintln!(
                "shoal: warning: {}: {} lines not understood, ignored",
                path.display(),
                filter.ignored()
            );
        }
        self.ip_filter = Some(Arc::new(filter));
        Ok(self)
    }

    /// The uTP socket on the listen port, unless `--utp off`; with it, what a DHT node
    /// on the same port needs to share it.
    /// The UDP socket uTP and the DHT share at the listen port, and the dialer. Behind a
    /// SOCKS5 proxy the socket goes through the proxy's UDP relay, and is opened for the
    /// DHT even without uTP (a socket of the DHT's own would not be relayed). A proxy
    /// that relays no UDP (many do not: ssh's, Tor's, microsocks) leaves uTP and the DHT
    /// off, as behind an HTTP proxy.
    async fn open_utp(&mut self) -> Result<(Dialer, Option<discovery::SharedUdp>)> {
        let mode = UtpMode::from(self.opts.utp);
        let proxy = self.opts.proxy.clone().map(Arc::new);
        let socks5 = match self.opts.proxy.as_ref() {
            Some(Proxy::Socks5(socks5)) => Some(socks5),
            _ => None,
        };
        let share = !self.discovery.no_dht && self.discovery.dht_listen.is_none();
        if mode == UtpMode::Off && !(socks5.is_some() && share) {
            return Ok((
                Dialer {
                    proxy,
                    ..Dialer::tcp()
                },
                None,
            ));
        }
        let listen = self.listen();
        let mut udp = shoal_utp::udp_socket(listen).with_context(|| {
            format!("{listen}: cannot open the uTP socket (UDP); try --utp off")
        })?;
        if let Some(socks5) = socks5 {
            // The proxy takes datagrams from the control connection's address.
            let from = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), 0);
            let wait = Duration::from_secs(30);
            let refusal = match tokio::time::timeout(wait, socks5.udp_associate(from)).await {
                Ok(Ok(association)) => {
                    udp.relay_through(association);
                    None
                }
                Ok(Err(error)) => Some(error.to_string()),
                Err(_) => Some(format!("no answer within {wait:?}")),
            };
            if let Some(refusal) = refusal {
                let name = Proxy::Socks5(socks5.clone());
                if mode == UtpMode::Only {
                    bail!("--utp only: {name} relays no UDP ({refusal})");
                }
                eprintln!("shoal: {name} relays no UDP ({refusal}): TCP peers and HTTP(S) trackers only; uTP and the DHT are off");
                self.discovery.no_dht = true;
                self.opts.utp = UtpArg::Off;
                self.no_udp_relay = true;
                return Ok((
                    Dialer {
                        proxy,
                        ..Dialer::tcp()
                    },
                    None,
                ));
            }
        }
        let (utp, other) = UtpSocket::on(udp, shoal_utp::Config::default(), share);
        let utp = Arc::new(utp);
        let shared = other.map(|other| (utp.udp(), other));
        Ok((
            Dialer {
                utp: Some(utp),
                mode,
                proxy,
            },
            shared,
        ))
    }

    /// Asks the default gateway to forward the listen port (see `--no-port-map`): TCP
    /// unless `--utp only`, UDP when uTP or the DHT listen there. Only from all addresses
    /// or a private one (a public address has no NAT in front of it, loopback no router),
    /// and only if there is a default route. What the router says goes to `display`, and
    /// the external port peers dial (TCP's, uTP's under `--utp only`) to `external`.
    async fn map_ports(
        &self,
        display: &mpsc::UnboundedSender<Update>,
        external: watch::Sender<Option<u16>>,
    ) -> Option<PortMapper> {
        let listen = self.listen();
        // NAT-PMP and UPnP map IPv4 ports; a dual-stack socket takes IPv4 on them all.
        let ip = match listen.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() || ip.is_private() => ip,
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv4Addr::UNSPECIFIED,
            _ => return None,
        };
        // Port 0 would name every mapping of ours when removed (RFC 6886 3.4).
        if self.opts.no_port_map || listen.port() == 0 {
            return None;
        }
        let gateway = shoal_portmap::gateway::default()?;
        let mut ports = Vec::new();
        if self.opts.utp != UtpArg::Only {
            ports.push((Protocol::Tcp, listen.port()));
        }
        let dht_here = !self.discovery.no_dht && self.discovery.dht_listen.is_none();
        if self.opts.utp != UtpArg::Off || dht_here {
            ports.push((Protocol::Udp, listen.port()));
        }
        let dialled = match self.opts.utp {
            UtpArg::Only => Protocol::Udp,
            _ => Protocol::Tcp,
        };
        let answers = display.clone();
        // A router that speaks both may forward different ports to us: the first method
        // to map one is the one announced, so the port does not flip at each renewal.
        let announced = std::sync::OnceLock::new();
        let report = move |method, answer| {
            if let shoal_portmap::Event::Mapped {
                protocol,
                external: port,
                ..
            } = answer
            {
                if protocol == dialled && *announced.get_or_init(|| method) == method {
                    external.send_replace(Some(port));
                }
            }
            let _ = answers.send(Update::PortMap(method, answer));
        };
        match shoal_portmap::driver::spawn(gateway, ip, ports, report).await {
            Ok(mapper) => Some(mapper),
            Err(e) => {
                let reason = format!("cannot open a socket: {e}");
                let failed = shoal_portmap::Event::Failed {
                    protocol: None,
                    reason,
                };
                let _ = display.send(Update::PortMap(Method::NatPmp, failed));
                None
            }
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.opts
            .state_dir
            .clone()
            .unwrap_or_else(default_state_dir)
    }

    /// A magnet link: find peers, fetch the info dictionary from them, then run it.
    async fn run_magnet(
        mut self,
        magnet: Magnet,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Outcome> {
        let info_hash = magnet.info_hash;
        let saved = self
            .state_dir()
            .join(format!("{}.torrent", info_hash.to_hex()));
        if let Ok(metainfo) = super::info::load_torrent(&saved) {
            // A v2 link names a hybrid torrent by its v2 swarm's hash.
            if metainfo.swarm_hashes().contains(&info_hash) {
                if self.metadata_only {
                    return self.write_metadata(&metainfo);
                }
                return self.run(metainfo, stop).await;
            }
        }
        let (dialer, shared) = self.open_utp().await?;
        let dht = discovery::start(
            &self.discovery,
            self.listen(),
            &self.state_dir(),
            shared,
            &[],
        )
        .await?;
        let sources = MetadataSources {
            dht: &dht,
            dialer: &dialer,
            listen: self.listen(),
            opts: &self.opts,
            discovery: &self.discovery,
            ip_filter: self.ip_filter.clone(),
            no_udp_relay: self.no_udp_relay,
            peer_id: PeerId::shoal(rand::random()),
        };
        if self.opts.json {
            super::line(json!({"event": "fetching_metadata", "info_hash": info_hash.to_hex()}));
        } else {
            eprintln!(
                "shoal: {}: fetching metadata from peers",
                info_hash.to_hex()
            );
        }
        let (mut feed, announcer) = metadata_feed(&magnet, &sources);
        let fetching = fetch_metadata(metadata_fetch(&magnet, &sources), feed.as_mut(), &mut stop);
        // `--stop-timeout` bounds the wait for the metadata too.
        let fetched = match self.stall_timeout {
            None => fetching.await,
            Some(limit) => match tokio::time::timeout(limit, fetching).await {
                Ok(fetched) => fetched,
                Err(_) => {
                    let secs = limit.as_secs();
                    if self.opts.json {
                        super::line(json!({"event": "stalled", "secs": secs}));
                    } else {
                        eprintln!("shoal: no metadata in {secs} s: giving up (--stop-timeout)");
                    }
                    Err(MetadataFetchError::Stopped)
                }
            },
        };
        // From here on the torrent's own announce flow (with these trackers) takes over.
        if let Some(announcer) = announcer {
            announcer.stop(STOP_ANNOUNCE_WAIT).await;
        }
        let fetched = match fetched {
            Ok(fetched) => fetched,
            Err(MetadataFetchError::Stopped) => {
                dht.shutdown().await;
                return Ok(Outcome::Stopped);
            }
            Err(e) => return Err(e).context(format!("{}: no metadata", info_hash.to_hex())),
        };
        let metainfo = metainfo_from_info(&fetched, &magnet)?;
        // Keep it: a restart then needs no peer to tell us the metadata again, and the
        // user has the .torrent (aria2's --bt-save-metadata, on by default here).
        let kept = std::fs::create_dir_all(self.state_dir())
            .and_then(|()| std::fs::write(&saved, metainfo.to_bytes()))
            .is_ok()
            .then(|| saved.display().to_string());
        if self.opts.json {
            super::line(json!({"event": "metadata", "name": metainfo.info.name,
                       "size": metainfo.info.total_length, "torrent": kept}));
        } else if let Some(kept) = &kept {
            eprintln!("shoal: {}: metadata saved to {kept}", metainfo.info.name);
        }
        if self.metadata_only {
            dht.shutdown().await;
            return self.write_metadata(&metainfo);
        }
        let mut job = self;
        job.opts.peers.push(PeerArg(fetched.peers));
        if job.select == Selection::All && !magnet.select_only.is_empty() {
            job.select = Selection::MagnetIndices(magnet.select_only.clone());
        }
        job.run_with(metainfo, (dht, dialer), feed, stop).await
    }

    /// `tiers` less what cannot be reached (see [`reachable`]).
    fn reachable(&self, tiers: Vec<Vec<String>>) -> Vec<Vec<String>> {
        reachable(tiers, self.no_udp_relay)
    }

    /// `--metadata-only`: the torrent goes to the output folder as INFOHASH.torrent.
    fn write_metadata(&self, metainfo: &Metainfo) -> Result<Outcome> {
        let path = self
            .dir
            .join(format!("{}.torrent", metainfo.info_hash.to_hex()));
        super::write_atomically(&path, &metainfo.to_bytes(), true)?;
        if self.opts.json {
            super::line(json!({"event": "metadata_saved", "torrent": path.display().to_string()}));
        } else {
            eprintln!("shoal: {}: saved to {}", metainfo.info.name, path.display());
        }
        Ok(Outcome::Complete)
    }

    async fn run(mut self, metainfo: Metainfo, stop: watch::Receiver<bool>) -> Result<Outcome> {
        // BEP 27: a private torrent's peers come from its tracker only.
        if metainfo.info.private {
            let (dialer, _) = self.open_utp().await?;
            return self
                .run_with(metainfo, (Dhts::default(), dialer), None, stop)
                .await;
        }
        let (dialer, shared) = self.open_utp().await?;
        let dht = discovery::start(
            &self.discovery,
            self.listen(),
            &self.state_dir(),
            shared,
            &metainfo.nodes,
        )
        .await?;
        // `shoal seed` says it seeds (BEP 33 scrapes count it so); a download does not.
        let feed = discovery::peer_feed(
            &dht,
            &self.discovery,
            &metainfo.swarm_hashes(),
            self.listen(),
            !self.downloads,
        );
        self.run_with(metainfo, (dht, dialer), feed, stop).await
    }

    async fn run_with(
        self,
        metainfo: Metainfo,
        (dht, dialer): (Dhts, Dialer),
        peer_feed: Option<PeerFeed>,
        stop: watch::Receiver<bool>,
    ) -> Result<Outcome> {
        let selected_files = self.select.resolve(&metainfo.info.files)?;
        let metainfo = Arc::new(metainfo);
        let listen = self.listen();
        let json = self.opts.json;
        let (display_tx, display_events) = mpsc::unbounded_channel();
        let (external_tx, external_port) = watch::channel(None);
        let mapper = self.map_ports(&display_tx, external_tx).await;
        let (seed_limit, check) = (self.opts.seed_limit(), self.opts.check());
        let trackers = if self.opts.no_tracker {
            Vec::new()
        } else {
            self.reachable(with_extra(&metainfo.trackers, &self.opts.trackers))
        };
        let peers = self.opts.peer_addrs();
        let (readers, streaming) = match self.stream {
            Some(addr) => {
                let files = (selected_files.as_deref(), self.file.as_deref());
                let (readers, server) =
                    super::stream::start(addr, &metainfo, &self.dir, files, json).await?;
                (Some(readers), Some(server))
            }
            None => (None, None),
        };
        let config = TorrentConfig {
            metainfo: metainfo.clone(),
            download_dir: self.dir,
            single_file_path: self.file,
            state_dir: self.opts.state_dir.unwrap_or_else(default_state_dir),
            listen: Some(listen),
            shared_listener: None,
            dialer,
            peers,
            peer_feed,
            seed: self.seed,
            seed_limit,
            super_seed: self.super_seed,
            upload_limit: Arc::new(RateLimit::new(self.opts.max_up)),
            download_limit: Arc::new(RateLimit::new(self.opts.max_down)),
            max_connections: self.opts.max_peers,
            connection_budget: None,
            upload_slots: usize::from(self.opts.upload_slots),
            stall_timeout: self.stall_timeout,
            check_threads: 0,
            check_turns: None,
            check,
            encryption: self.opts.encryption.into(),
            ip_filter: self.ip_filter.clone(),
            sequential: self.sequential,
            priority_pieces: self
                .prioritize
                .map(|p| p.pieces(&metainfo.info, selected_files.as_deref()))
                .unwrap_or_default(),
            readers,
            external_port: Some(external_port.clone()),
            selected_files,
        };
        let done = self.on_complete.map(|program| {
            let name = metainfo.info.name.clone();
            let path = config.download_dir.join(&name);
            let completed = hook::Completed {
                info_hash: metainfo.info_hash.to_hex(),
                name,
                path: config.single_file_path.clone().unwrap_or(path),
            };
            (program, completed)
        });
        let display = tokio::spawn(show_progress(display_events, metainfo, json));
        let engine_updates = match done {
            Some(done) => run_on_complete(done, display_tx),
            None => display_tx,
        };
        let announcing = (trackers, dht.clone(), external_port, None);
        let stream_stop = stop.clone();
        let outcome = run_announced(config, announcing, engine_updates, stop).await;
        if let Some(mapper) = mapper {
            mapper.stop().await;
        }
        let _ = display.await;
        dht.shutdown().await;
        if let (Some(server), Ok(Outcome::Complete)) = (streaming, &outcome) {
            server.serve_until(stream_stop, json).await;
        }
        outcome
    }
}

/// What the torrents of a session (`shoal daemon`) share, set up as `get` sets up its
/// one torrent: one port for TCP, uTP and the DHT, one port mapping, one blocklist.
pub struct SessionNet {
    /// The address peers reach us at.
    pub listen: SocketAddr,
    pub dialer: Dialer,
    pub listener: Arc<shoal_engine::SharedListener>,
    pub dht: Dhts,
    pub external_port: ExternalPort,
    pub ip_filter: Option<Arc<IpFilter>>,
    pub opts: PeerOptions,
    pub discovery: DiscoveryOptions,
    /// Taken when the session closes.
    mapper: std::sync::Mutex<Option<PortMapper>>,
    no_udp_relay: bool,
}

impl SessionNet {
    /// Chooses the port, opens uTP (through the proxy, if any), the shared listener and
    /// the DHT, and asks the router to forward the port; what the router says goes to
    /// `display`.
    pub async fn open(
        opts: PeerOptions,
        discovery: DiscoveryOptions,
        display: &mpsc::UnboundedSender<Update>,
    ) -> Result<Self> {
        let mut job = Job {
            dir: PathBuf::new(),
            file: None,
            seed: true,
            super_seed: false,
            select: Selection::All,
            opts,
            discovery,
            ip_filter: None,
            sequential: false,
            prioritize: None,
            metadata_only: false,
            stall_timeout: None,
            downloads: true,
            on_complete: None,
            stream: None,
            no_udp_relay: false,
        }
        .behind_proxy()?
        .choose_listen()?
        .load_ip_filter()?;
        let (dialer, shared) = job.open_utp().await?;
        let listener =
            shoal_engine::SharedListener::bind(job.listen(), &dialer, job.opts.encryption.into())
                .with_context(|| format!("{}: cannot listen", job.listen()))?;
        let dht =
            discovery::start(&job.discovery, job.listen(), &job.state_dir(), shared, &[]).await?;
        let (external_tx, external_port) = watch::channel(None);
        let mapper = job.map_ports(display, external_tx).await;
        Ok(SessionNet {
            listen: listener.local_addr(),
            dialer,
            listener: Arc::new(listener),
            dht,
            external_port,
            ip_filter: job.ip_filter.clone(),
            mapper: std::sync::Mutex::new(mapper),
            no_udp_relay: job.no_udp_relay,
            opts: job.opts,
            discovery: job.discovery,
        })
    }

    /// A torrent's trackers and `--tracker`'s, less those that cannot be reached; none
    /// with `--no-tracker`.
    pub fn trackers(&self, metainfo: &Metainfo) -> Vec<Vec<String>> {
        if self.opts.no_tracker {
            return Vec::new();
        }
        reachable(
            with_extra(&metainfo.trackers, &self.opts.trackers),
            self.no_udp_relay,
        )
    }

    /// Where a magnet link's metadata is looked for, with `peer_id` for ours.
    pub fn metadata_sources(&self, peer_id: PeerId) -> MetadataSources<'_> {
        MetadataSources {
            dht: &self.dht,
            dialer: &self.dialer,
            listen: self.listen,
            opts: &self.opts,
            discovery: &self.discovery,
            ip_filter: self.ip_filter.clone(),
            no_udp_relay: self.no_udp_relay,
            peer_id,
        }
    }

    /// Removes the port mapping and stops the DHT, saving its routing table.
    pub async fn close(&self) {
        let mapper = self.mapper.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mapper) = mapper {
            mapper.stop().await;
        }
        self.dht.clone().shutdown().await;
    }
}

/// Where a magnet link's metadata is looked for: the DHT, local discovery, the link's
/// trackers and `--tracker`'s, `--peer` and the link's `x.pe` peers.
pub struct MetadataSources<'a> {
    pub dht: &'a Dhts,
    pub dialer: &'a Dialer,
    pub listen: SocketAddr,
    pub opts: &'a PeerOptions,
    pub discovery: &'a DiscoveryOptions,
    pub ip_filter: Option<Arc<IpFilter>>,
    pub no_udp_relay: bool,
    /// Ours, in announces and to the peers asked for the metadata.
    pub peer_id: PeerId,
}

/// The peers of `magnet`'s swarm as its sources find them, and the announcer to its
/// trackers (to be stopped once the metadata is here). The size is unknown until then,
/// so announces say only that something is left.
pub fn metadata_feed(
    magnet: &Magnet,
    sources: &MetadataSources<'_>,
) -> (Option<PeerFeed>, Option<Announcers>) {
    let info_hash = magnet.info_hash;
    let mut feeds: Vec<_> = discovery::peer_feed(
        sources.dht,
        sources.discovery,
        &[info_hash],
        sources.listen,
        false,
    )
    .into_iter()
    .collect();
    // The link's trackers (`tr=`), one tier each.
    let tiers: Vec<Vec<String>> = magnet.trackers.iter().map(|t| vec![t.clone()]).collect();
    let tiers = reachable(
        with_extra(&tiers, &sources.opts.trackers),
        sources.no_udp_relay,
    );
    let announcer = (!sources.opts.no_tracker && !tiers.is_empty()).then(|| {
        let (found, feed) = mpsc::unbounded_channel();
        feeds.push(feed);
        let progress = Progress {
            uploaded: 0,
            downloaded: 0,
            left: 1,
            partial_seed: false,
        };
        let me = (&[info_hash][..], sources.peer_id);
        let found = (&found, sources.dialer.proxy.clone());
        Announcers::spawn(&tiers, me, (sources.listen, None), progress, found, None)
    });
    (discovery::merge_feeds(feeds), announcer)
}

/// How to fetch `magnet`'s info dictionary from its peers.
pub fn metadata_fetch(magnet: &Magnet, sources: &MetadataSources<'_>) -> MetadataFetch {
    let mut fetch = MetadataFetch::new(magnet.info_hash, sources.peer_id);
    fetch.peers = sources.opts.peer_addrs();
    fetch
        .peers
        .extend(discovery::resolve(&magnet.peers, "magnet peer (x.pe)"));
    fetch.local_ip = Some(sources.listen.ip());
    fetch.encryption = sources.opts.encryption.into();
    fetch.ip_filter = sources.ip_filter.clone();
    fetch.dialer = sources.dialer.clone();
    // A v2-only link: the dictionary is checked by SHA-256, and its piece layers come
    // from the same peer.
    fetch.info_hash_v2 = magnet
        .info_hash_v2
        .filter(|v2| v2[..20] == magnet.info_hash.0);
    fetch
}

/// `tiers` less what cannot be reached: UDP trackers behind a SOCKS5 proxy that relays no
/// UDP (`no_udp_relay`).
fn reachable(tiers: Vec<Vec<String>>, no_udp_relay: bool) -> Vec<Vec<String>> {
    match no_udp_relay {
        true => without_udp(&tiers, "the proxy relays no UDP"),
        false => tiers,
    }
}

/// A `.torrent` around fetched (already verified) info bytes and piece layers, with the
/// magnet's trackers.
pub fn metainfo_from_info(fetched: &Fetched, magnet: &Magnet) -> Result<Metainfo> {
    let mut root = Value::dict();
    root.insert("info", Value::Raw(fetched.info.clone()));
    if !fetched.piece_layers.is_empty() {
        let mut layers = Value::dict();
        for (file_root, layer) in &fetched.piece_layers {
            layers.insert(file_root.to_vec(), layer.clone());
        }
        root.insert("piece layers", layers);
    }
    if let Some(first) = magnet.trackers.first() {
        root.insert("announce", first.as_str());
        let tiers = magnet
            .trackers
            .iter()
            .map(|t| Value::List(vec![t.as_str().into()]))
            .collect::<Vec<_>>();
        root.insert("announce-list", Value::List(tiers));
    }
    if !magnet.web_seeds.is_empty() {
        let urls = magnet.web_seeds.iter().map(|u| u.as_str().into()).collect();
        root.insert("url-list", Value::List(urls));
    }
    let metainfo = Metainfo::from_bytes(&root.to_bytes())
        .context("the peers' metadata is not a usable torrent")?;
    // A hybrid link names both hashes: the metadata matched the SHA-1, and must be the
    // same torrent under SHA-256 too.
    if let Some(v2) = magnet.info_hash_v2 {
        if metainfo.info_hash_v2 != Some(v2) {
            bail!("the peers' metadata does not match the link's v2 info-hash (urn:btmh)");
        }
    }
    Ok(metainfo)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A channel for the engine's updates that passes them on to `display` and starts the
/// `--on-complete` program at the first `completed`.
fn run_on_complete(
    (program, completed): (PathBuf, hook::Completed),
    display: mpsc::UnboundedSender<Update>,
) -> mpsc::UnboundedSender<Update> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut started = false;
        while let Some(update) = rx.recv().await {
            let complete = matches!(update, Update::Engine(EngineEvent::Completed { .. }));
            let _ = display.send(update);
            if complete && !started {
                started = true;
                let display = display.clone();
                hook::run(&program, &completed, move |outcome| {
                    let _ = display.send(Update::Hook(outcome));
                });
            }
        }
    });
    tx
}

/// What became of the `--on-complete` program, as a JSON line or a line for the user.
fn show_hook(outcome: hook::Outcome, json: bool, say: &impl Fn(String)) {
    let (value, line) = outcome.describe();
    if json {
        super::line(&value);
    } else {
        say(line);
    }
}

/// What the router said of our port mapping, as a JSON line or a line for the user.
pub fn show_port_map(
    method: Method,
    answer: shoal_portmap::Event,
    json: bool,
    say: &impl Fn(String),
) {
    use shoal_portmap::Event;
    let via = method.as_str();
    match answer {
        Event::ExternalAddress(ip) if json => {
            super::line(json!({"event": "external_address", "ip": ip.to_string(), "method": via}));
        }
        Event::ExternalAddress(_) => {}
        Event::Mapped {
            protocol,
            internal,
            external,
            lifetime,
        } => {
            if json {
                super::line(
                    json!({"event": "port_mapped", "protocol": protocol.as_str(),
                    "internal_port": internal, "external_port": external, "lifetime": lifetime,
                    "method": via}),
                );
            } else {
                say(format!(
                    "the router forwards {} port {external} to our port {internal} ({via})",
                    protocol.as_str()
                ));
            }
        }
        Event::Failed { protocol, reason } => {
            if json {
                super::line(
                    json!({"event": "port_map_failed", "protocol": protocol.map(|p| p.as_str()),
                    "reason": reason, "method": via}),
                );
            } else {
                say(format!("port mapping ({via}) failed: {reason}"));
            }
        }
    }
}

/// Draws a progress bar (terminal), prints JSON lines (`--json`), or a few plain lines.
pub async fn show_progress(
    mut events: mpsc::UnboundedReceiver<Update>,
    metainfo: Arc<Metainfo>,
    json: bool,
) {
    let terminal = std::io::stderr().is_terminal() && !json;
    let bar = if terminal {
        ProgressBar::new(metainfo.info.total_length)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix:>9} [{bar:30.cyan/blue}] {percent:>3}% {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let name = metainfo.info.name.clone();
    let info_hash = metainfo.info_hash.to_hex();
    let mut last_piece_event = Instant::now() - Duration::from_secs(1);
    let emit = |value: serde_json::Value| super::line(&value);
    // A line for the user: above the bar on a terminal, else on standard error.
    let say = |line: String| {
        if terminal {
            bar.println(line);
        } else {
            eprintln!("shoal: {name}: {line}");
        }
    };
    while let Some(update) = events.recv().await {
        let event = match update {
            Update::Engine(event) => event,
            Update::TrackerPeers(count) => {
                if json {
                    emit(json!({"event": "tracker_peers", "peers": count}));
                } else {
                    say(format!("a tracker gave {count} peers"));
                }
                continue;
            }
            Update::PortMap(method, answer) => {
                show_port_map(method, answer, json, &say);
                continue;
            }
            Update::Hook(outcome) => {
                show_hook(outcome, json, &say);
                continue;
            }
        };
        match event {
            EngineEvent::Checking { done, total } => {
                bar.set_prefix("checking");
                bar.set_length(total.max(1));
                bar.set_position(done);
            }
            EngineEvent::Started {
                have,
                piece_count,
                listen,
                resumed,
                ..
            } => {
                bar.set_prefix(if have == piece_count {
                    "seeding"
                } else {
                    "getting"
                });
                if json {
                    emit(
                        json!({"event": "started", "name": name, "info_hash": info_hash, "have": have,
                        "piece_count": piece_count, "listen": listen.map(|a| a.to_string()), "resumed": resumed}),
                    );
                } else if !terminal {
                    eprintln!("shoal: {name}: {have}/{piece_count} pieces already verified");
                }
            }
            EngineEvent::PieceVerified { piece, have } => {
                if json && last_piece_event.elapsed() >= Duration::from_millis(250) {
                    last_piece_event = Instant::now();
                    emit(
                        json!({"event": "piece", "piece": piece, "have": have, "piece_count": metainfo.info.piece_count()}),
                    );
                }
            }
            EngineEvent::PieceFailed { piece } => {
                if json {
                    emit(json!({"event": "piece_failed", "piece": piece}));
                }
            }
            EngineEvent::PeerConnected {
                addr,
                client,
                transport,
                round_trip,
            } => {
                if json {
                    emit(json!({
                        "event": "peer_connected",
                        "addr": addr.to_string(),
                        "client": client,
                        "transport": transport.as_str(),
                        "rtt_ms": millis(round_trip),
                    }));
                }
            }
            EngineEvent::PeerDisconnected {
                addr,
                reason,
                downloaded,
                uploaded,
            } => {
                if json {
                    emit(json!({
                        "event": "peer_disconnected", "addr": addr.to_string(), "reason": reason,
                        "downloaded": downloaded, "uploaded": uploaded,
                    }));
                }
            }
            EngineEvent::PeerBanned { addr } => {
                if json {
                    emit(json!({"event": "peer_banned", "addr": addr.to_string()}));
                } else {
                    say(format!(
                        "banned {addr}: it sent data that failed the hash check"
                    ));
                }
            }
            EngineEvent::Stats(s) => {
                bar.set_length(s.selected_bytes.max(1));
                bar.set_position(s.selected_have);
                let eta = s.eta_secs.map(|e| format!(" eta {e}s")).unwrap_or_default();
                bar.set_message(format!(
                    "{}/s down {}/s up, {} peers{eta}{}",
                    format_size(s.download_rate as u64),
                    format_size(s.upload_rate as u64),
                    s.peers,
                    wasted_note(s.wasted)
                ));
                if json {
                    emit(
                        json!({"event": "stats", "have": s.pieces_have, "piece_count": s.piece_count,
                        "bytes_have": s.bytes_have, "total_bytes": s.total_bytes, "selected_have": s.selected_have,
                        "selected_bytes": s.selected_bytes, "downloaded": s.downloaded,
                        "uploaded": s.uploaded, "download_rate": s.download_rate as u64,
                        "upload_rate": s.upload_rate as u64, "peers": s.peers, "eta_secs": s.eta_secs,
                        "wasted": s.wasted}),
                    );
                }
            }
            EngineEvent::Peers(peers) => {
                if json {
                    let peers: Vec<_> = peers.iter().map(peer_json).collect();
                    emit(json!({"event": "peer_list", "peers": peers}));
                }
            }
            EngineEvent::WebSeedFailed {
                url,
                reason,
                retry_secs,
            } => {
                if json {
                    emit(
                        json!({"event": "web_seed_error", "url": url, "reason": reason, "retry_secs": retry_secs}),
                    );
                } else {
                    say(format!(
                        "web seed {url}: {reason} (trying again in {retry_secs} s)"
                    ));
                }
            }
            EngineEvent::Stalled { secs } => {
                if json {
                    emit(json!({"event": "stalled", "secs": secs}));
                } else {
                    say(format!("no data for {secs} s: giving up (--stop-timeout)"));
                }
            }
            EngineEvent::WebSeedBanned { url } => {
                if json {
                    emit(json!({"event": "web_seed_banned", "url": url}));
                } else {
                    say(format!(
                        "web seed {url} dropped: it sent data that failed the hash check"
                    ));
                }
            }
            EngineEvent::SeedLimitReached { uploaded, size } => {
                let ratio = uploaded as f64 / size.max(1) as f64;
                if json {
                    emit(
                        json!({"event": "seed_limit_reached", "uploaded": uploaded, "ratio": ratio}),
                    );
                } else {
                    say(format!(
                        "seeding done, {} uploaded (ratio {ratio:.2})",
                        format_size(uploaded)
                    ));
                }
            }
            EngineEvent::Completed {
                downloaded,
                wasted,
                seed,
            } => {
                bar.set_prefix("seeding");
                bar.set_position(bar.length().unwrap_or(0));
                let what = if seed {
                    "every piece verified"
                } else {
                    "every piece of the selected files verified"
                };
                if json {
                    emit(
                        json!({"event": "completed", "downloaded": downloaded, "wasted": wasted, "seed": seed}),
                    );
                } else {
                    bar.println(format!(
                        "{name}: complete, {what} ({} downloaded{})",
                        format_size(downloaded),
                        wasted_note(wasted)
                    ));
                    if !terminal {
                        eprintln!("shoal: {name}: complete, {what}");
                    }
                }
            }
        }
    }
    bar.finish_and_clear();
}

/// ", 1.2 MiB wasted" when something was (duplicates, pieces that failed their check).
/// One entry of the `peer_list` event: rates and totals in bytes (per second), as in
/// `stats`.
pub fn peer_json(peer: &PeerInfo) -> serde_json::Value {
    json!({
        "addr": peer.addr.to_string(),
        "client": peer.client,
        "transport": peer.transport.as_str(),
        "incoming": peer.incoming,
        "encrypted": peer.encrypted,
        "rtt_ms": millis(peer.round_trip),
        "download_rate": peer.download_rate as u64,
        "upload_rate": peer.upload_rate as u64,
        "downloaded": peer.downloaded,
        "uploaded": peer.uploaded,
        "progress": peer.progress,
        "choking_us": peer.choking_us,
        "choked": peer.choked,
        "interested": peer.interested,
        "peer_interested": peer.peer_interested,
        "snubbed": peer.snubbed,
    })
}

/// A round trip in milliseconds for JSON (`null` when unknown).
fn millis(round_trip: Option<Duration>) -> Option<f64> {
    round_trip.map(|rtt| rtt.as_secs_f64() * 1000.0)
}

fn wasted_note(wasted: u64) -> String {
    if wasted == 0 {
        String::new()
    } else {
        format!(", {} wasted", format_size(wasted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_port_is_skipped_for_tcp_and_for_udp() {
        let ip: std::net::IpAddr = "127.0.4.50".parse().unwrap();
        let _tcp = std::net::TcpListener::bind((ip, 17450)).unwrap();
        let _udp = std::net::UdpSocket::bind((ip, 17451)).unwrap();
        let pick = |udp| free_listen_addr(ip, 17450..=17453, udp).unwrap().port();
        assert_eq!(
            pick(true),
            17452,
            "17450 has a TCP listener, 17451 a UDP socket"
        );
        assert_eq!(pick(false), 17451, "without the DHT only TCP matters");
        let _more = std::net::TcpListener::bind((ip, 17452)).unwrap();
        let none = free_listen_addr(ip, 17450..=17452, true).unwrap_err();
        assert!(format!("{none}").contains("--listen"), "{none}");
    }

    /// `--peer` takes addresses as they are and host names (from /etc/hosts here, no
    /// DNS) with each of their addresses; one without a port is refused before any lookup.
    #[test]
    fn peers_are_addresses_or_host_names() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            parse_peer("10.0.0.1:6881"),
            Ok(PeerArg(vec![addr("10.0.0.1:6881")]))
        );
        assert_eq!(parse_peer("[::1]:7"), Ok(PeerArg(vec![addr("[::1]:7")])));
        let local = parse_peer("localhost:6881").unwrap();
        assert!(local.0.contains(&addr("127.0.0.1:6881")), "{local:?}");
        for bad in ["10.0.0.1", "localhost", "host:port", "[::1]"] {
            assert!(parse_peer(bad).is_err(), "{bad}");
        }
        let twice = [local.clone(), parse_peer("127.0.0.1:6881").unwrap()];
        assert_eq!(addrs_of(&twice), local.0, "each address once");
    }
}
