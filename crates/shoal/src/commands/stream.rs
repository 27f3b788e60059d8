//! `get --stream ADDR`: the torrent's files over HTTP while they download, for a player
//! to open (see the `shoal-stream` crate).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;
use shoal_core::{Bitfield, Metainfo};
use shoal_stream::{Library, Readers};
use tokio::sync::watch;

/// `--stream ADDR`, for `get` and `seed`.
#[derive(Debug, clap::Args)]
pub struct StreamArgs {
    /// Serve the files over HTTP at ADDR, for a video player or a browser, while they
    /// download (as rqbit and webtorrent do): http://ADDR/ lists them, /N/NAME is file N
    /// (numbered as `shoal info` lists them), /playlist.m3u is a playlist of them all.
    /// Players may seek (byte ranges); the pieces a player is about to read are fetched
    /// before any other, and only verified data is ever sent. After a download with
    /// --no-seed it goes on serving until Ctrl-C.
    #[arg(long, value_name = "ADDR")]
    pub stream: Option<SocketAddr>,
}

/// How far ahead of each reader pieces are fetched first: enough for a player to keep
/// playing while the next ones come, small enough to leave the rest rarest first.
const READ_AHEAD: u64 = 16 * 1024 * 1024;

/// The running server; stops when dropped.
pub struct Server {
    task: tokio::task::JoinHandle<()>,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// After a download without seeding: go on serving until Ctrl-C, as the player may
    /// still be playing.
    pub async fn serve_until(self, mut stop: watch::Receiver<bool>, json: bool) {
        if json {
            super::line(json!({"event": "streaming_until_stopped", "url": self.url}));
        } else {
            eprintln!(
                "shoal: download complete; still serving {} until Ctrl-C",
                self.url
            );
        }
        let _ = stop.wait_for(|stopped| *stopped).await;
    }
}

/// Listens on `addr` and serves the files of `metainfo` downloaded into `dir` (only
/// `selected`, if given; a single file at `single_file`, if given, as `seed` takes it).
/// Returns what the engine is to keep current, and the server.
pub async fn start(
    addr: SocketAddr,
    metainfo: &Metainfo,
    dir: &Path,
    (selected, single_file): (Option<&[usize]>, Option<&Path>),
    json: bool,
) -> Result<(shoal_engine::Readers, Server)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--stream: cannot listen on {addr}"))?;
    let bound = listener
        .local_addr()
        .context("--stream: the listening address")?;
    let info = &metainfo.info;
    let mut library = Library::new(info, dir, selected);
    if let (Some(path), false) = (single_file, info.multi_file) {
        for file in &mut library.files {
            file.path = path.to_path_buf();
        }
    }
    let (have_tx, have) = watch::channel(Bitfield::new(info.piece_count()));
    let (wanted_tx, wanted) = watch::channel(shoal_engine::Wanted::default());
    let window = (READ_AHEAD / u64::from(info.piece_length)).clamp(2, 256) as u32;
    let readers = Readers::new(window, wanted_tx, have);
    let url = format!("http://{}/", reachable(bound));
    let files: Vec<_> = library
        .files
        .iter()
        .filter(|f| f.selected)
        .map(|f| {
            (
                f.number,
                format!("{}{}", url, &shoal_stream::server::link(f)[1..]),
            )
        })
        .collect();
    if json {
        let files: Vec<_> = files
            .iter()
            .map(|(number, url)| json!({"number": number, "url": url}))
            .collect();
        super::line(json!({"event": "streaming", "url": url, "files": files}));
    } else if let [(_, only)] = files.as_slice() {
        eprintln!("shoal: streaming at {only}");
    } else {
        eprintln!(
            "shoal: streaming at {url} ({} files; {url}playlist.m3u lists them)",
            files.len()
        );
    }
    let task = tokio::spawn(async move {
        if let Err(error) = shoal_stream::serve(listener, library, readers).await {
            eprintln!("shoal: --stream: the server stopped: {error}");
        }
    });
    let engine_side = shoal_engine::Readers {
        have: have_tx,
        wanted,
    };
    Ok((engine_side, Server { task, url }))
}

/// An address a local player can open: the loopback address for a server listening on
/// every address.
fn reachable(bound: SocketAddr) -> SocketAddr {
    use std::net::{Ipv4Addr, Ipv6Addr};
    match bound.ip() {
        ip if !ip.is_unspecified() => bound,
        std::net::IpAddr::V4(_) => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), bound.port()),
        std::net::IpAddr::V6(_) => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), bound.port()),
    }
}
