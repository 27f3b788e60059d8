//! `shoal daemon`: many torrents in one process on one port, as transmission-daemon,
//! rqbit's server and a libtorrent session run them, driven over an HTTP API
//! ([`api`]; `shoal remote` is its client). The torrents share the listening port (TCP
//! and uTP, incoming connections routed by the info-hash they name), the DHT node and
//! the port mapping; each runs in the engine exactly as `shoal get` runs one
//! ([`session`]).

mod api;
mod data;
mod files;
mod seeding;
mod session;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use tokio::sync::mpsc;

pub use seeding::Limit;

use super::discovery::DiscoveryOptions;
use super::transfer::{
    default_state_dir, show_port_map, wait_for_signal, PeerOptions, SessionNet, Update,
};

/// Where the API listens unless `--rpc` says otherwise.
pub const DEFAULT_RPC: &str = "127.0.0.1:6880";

/// How often the torrents' totals are saved while they move data: a crash loses at most
/// this much of them (the data itself is the resume state's, saved as it is verified).
const TOTALS_EVERY: Duration = Duration::from_secs(60);

/// The environment variable that may hold the API's token, for the daemon and `remote`
/// alike (a token on the command line is visible to every user of the machine).
pub const TOKEN_VARIABLE: &str = "SHOAL_RPC_TOKEN";

/// Run many torrents in one process on one port, driven by `shoal remote`, the web page
/// at the --rpc address, or any HTTP client over a JSON API, until Ctrl-C or SIGTERM
///
/// The torrents share the port (TCP and uTP), the DHT node, the port mapping and the
/// --max-up and --max-down limits, which hold for all of them together; each downloads,
/// then seeds, as `shoal get` would. The list of torrents is kept in the state folder,
/// so a restart (after a crash too) takes them all up again, paused ones paused.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder torrents download into, unless added with one of their own.
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    pub output: PathBuf,
    /// Where the API listens (HTTP).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_RPC)]
    pub rpc: SocketAddr,
    /// The secret every API request must carry (`Authorization: Bearer TOKEN`)
    /// [default: $SHOAL_RPC_TOKEN, else one made on the first start and kept in
    /// STATE_DIR/daemon/rpc-token, readable by its owner only, where `shoal remote`
    /// finds it].
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Most peer connections of all the torrents together (each one also keeps to
    /// --max-peers), as Transmission's peer-limit-global and libtorrent's
    /// connections_limit.
    #[arg(long, value_name = "N", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_peers_total: u32,
    /// Torrents downloading at once (Transmission's download queue); the others wait,
    /// queued, in the order they were added or resumed. Complete torrents seed
    /// regardless. 0: no limit.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_active_downloads: usize,
    /// A download that fetches nothing (not even a magnet link's metadata) for SECS
    /// seconds stops counting against --max-active-downloads, so the next one starts
    /// beside it (Transmission's queue-stalled-minutes).
    #[arg(long, value_name = "SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub queue_stalled_secs: u64,
    /// Add the .torrent files (and .magnet files holding a link) that appear in DIR, as
    /// Transmission's watch-dir: each is renamed NAME.added once taken, NAME.invalid if
    /// it is not a torrent.
    #[arg(long, value_name = "DIR")]
    pub watch: Option<PathBuf>,
    /// Run PROGRAM each time a torrent finishes downloading (Transmission's
    /// script-torrent-done), with its info-hash, name and the path of its file or folder
    /// as arguments and in SHOAL_INFO_HASH, SHOAL_NAME, SHOAL_PATH, as `get
    /// --on-complete` runs it. Not again for a torrent complete when the daemon starts.
    #[arg(long, value_name = "PROGRAM")]
    pub on_complete: Option<PathBuf>,
    #[command(flatten)]
    pub peer: PeerOptions,
    #[command(flatten)]
    pub discovery: DiscoveryOptions,
}

pub fn run(args: Args) -> Result<()> {
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("{}: cannot create", args.output.display()))?;
    // Torrents are listed with the folder they download into, wherever the list is read.
    let output = std::path::absolute(&args.output)
        .with_context(|| format!("{}: cannot find", args.output.display()))?;
    let state_dir = args
        .peer
        .state_dir
        .clone()
        .unwrap_or_else(default_state_dir);
    let token = match given_token(&args.token) {
        Some(token) => token,
        None => kept_token(&state_dir)?,
    };
    raise_file_limit();
    let args = Args { output, ..args };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move { tokio::spawn(serve(args, state_dir, token)).await? })
}

/// Where the daemon keeps the token it made, for `shoal remote` to read.
fn token_path(state_dir: &Path) -> PathBuf {
    state_dir.join("daemon").join("rpc-token")
}

/// The token given by `--token`, else by [`TOKEN_VARIABLE`], if either is not empty.
pub fn given_token(flag: &Option<String>) -> Option<String> {
    flag.clone()
        .or_else(|| std::env::var(TOKEN_VARIABLE).ok())
        .filter(|token| !token.is_empty())
}

/// The token a daemon with this state folder made and kept, if there is one.
pub fn read_kept_token(state_dir: &Path) -> Option<String> {
    let token = std::fs::read_to_string(token_path(state_dir)).ok()?;
    Some(token.trim().to_string()).filter(|token| !token.is_empty())
}

/// The token kept in the state folder, made (128 random bits, readable by its owner
/// alone) on the first start: without one, any program of any user of the machine could
/// drive the daemon through the loopback address, and have it write where its user may.
fn kept_token(state_dir: &Path) -> Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(token) = read_kept_token(state_dir) {
        return Ok(token);
    }
    let path = token_path(state_dir);
    let folder = path.parent().expect("in a folder");
    std::fs::create_dir_all(folder)
        .with_context(|| format!("{}: cannot create", folder.display()))?;
    let token = shoal_core::hex::encode(&rand::random::<[u8; 16]>());
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    file.write_all(token.as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(token)
}

/// A daemon holds a socket per connection of every torrent, and files open for each:
/// more than the usual soft limit of 1024 descriptors. The hard limit is ours to take.
fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

async fn serve(args: Args, state_dir: PathBuf, token: String) -> Result<()> {
    let json = args.peer.json;
    let rpc = tokio::net::TcpListener::bind(args.rpc)
        .await
        .with_context(|| format!("{}: cannot listen for the API", args.rpc))?;
    let rpc_addr = rpc.local_addr().context("the API's address")?;
    let (display, mut shown) = mpsc::unbounded_channel();
    let net = SessionNet::open(args.peer, args.discovery, &display).await?;
    tokio::spawn(async move {
        while let Some(update) = shown.recv().await {
            if let Update::PortMap(method, answer) = update {
                show_port_map(method, answer, json, &|text| eprintln!("shoal: {text}"));
            }
        }
    });
    let listen = net.listen;
    let budget = shoal_engine::ConnectionBudget::new(args.max_peers_total as usize);
    let folders = (args.output, state_dir);
    let downloads = Some(args.max_active_downloads).filter(|&n| n > 0);
    let queue = (
        budget,
        downloads,
        Duration::from_secs(args.queue_stalled_secs),
    );
    let session = Arc::new(session::Session::new(
        net,
        folders,
        queue,
        (args.on_complete, json),
    ));
    let restored = session.restore()?;
    tokio::spawn(session.clone().keep_totals(TOTALS_EVERY));
    if let Some(dir) = args.watch {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
        tokio::spawn(watch::watch(session.clone(), dir, json));
    }
    if json {
        super::line(json!({"event": "listening", "listen": listen.to_string(),
                           "rpc": rpc_addr.to_string(), "torrents": restored}));
    } else {
        eprintln!(
            "shoal: peers connect to {listen}; the web page is at http://{rpc_addr}/ and the API at http://{rpc_addr}/api/torrents ({restored} torrents)"
        );
    }
    let app = api::router(session.clone(), token);
    let served = axum::serve(rpc, app)
        .with_graceful_shutdown(wait_for_signal())
        .await;
    if !json {
        eprintln!("shoal: stopping every torrent");
    }
    session.shutdown().await;
    session.net().close().await;
    served.context("the API server failed")
}

#[cfg(test)]
mod testing {
    use shoal_core::Metainfo;

    /// A torrent `t` of `files` (length, name) in 16-byte pieces, for two pieces' worth
    /// (its hashes are never checked).
    pub fn torrent_of(files: &[(u64, &str)]) -> Metainfo {
        let mut torrent = b"d4:infod5:filesl".to_vec();
        for (length, name) in files {
            torrent.extend(format!("d6:lengthi{length}e4:pathl1:{name}ee").bytes());
        }
        torrent.extend(b"e4:name1:t12:piece lengthi16e6:pieces40:");
        torrent.extend([7u8; 40]);
        torrent.extend(b"ee");
        Metainfo::from_bytes(&torrent).unwrap()
    }
}
