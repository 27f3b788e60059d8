//! `shoal tracker`: run a BitTorrent tracker (HTTP and UDP) until SIGTERM or Ctrl-C.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use shoal_tracker::driver::server::{ServerOptions, TrackerServer};
use shoal_tracker::server::ServerConfig;

/// Run a tracker that peers announce to over HTTP (/announce, /scrape, /stats) and UDP
/// (BEP 15), sharing one swarm state.
///
/// Open to any torrent unless --allow-list is given; the list is re-read on SIGHUP.
/// Without --http and --udp it listens on 0.0.0.0:6969 for both.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address for HTTP announces, scrapes and /stats.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Address for UDP announces and scrapes.
    #[arg(long, value_name = "ADDR")]
    pub udp: Option<SocketAddr>,
    /// Serve only the info-hashes in FILE (40 hex digits a line; # starts a comment).
    #[arg(long, value_name = "FILE")]
    pub allow_list: Option<PathBuf>,
    /// Seconds between announces asked of clients; peers silent for about twice this
    /// long are forgotten.
    #[arg(long, value_name = "SECS", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(10..=86400))]
    pub interval: u64,
    /// A reverse proxy whose X-Forwarded-For header and ip= parameter are believed.
    /// Repeat for several. From anyone else both are ignored.
    #[arg(long = "trusted-proxy", value_name = "IP")]
    pub trusted_proxies: Vec<IpAddr>,
    /// Most torrents tracked at once.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub max_torrents: usize,
    /// Most peers tracked at once, over all torrents.
    #[arg(long, value_name = "N", default_value_t = 4_000_000)]
    pub max_peers: usize,
    /// Most peers in one torrent's swarm.
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    pub max_peers_per_torrent: usize,
}

pub fn run(args: Args) -> Result<()> {
    let (http, udp) = match (args.http, args.udp) {
        (None, None) => {
            let any: SocketAddr = "0.0.0.0:6969".parse().expect("valid");
            (Some(any), Some(any))
        }
        pair => pair,
    };
    if args.max_torrents == 0 || args.max_peers == 0 || args.max_peers_per_torrent == 0 {
        bail!("the --max-* limits must be at least 1");
    }
    let options = ServerOptions {
        http,
        udp,
        allow_list: args.allow_list,
        trusted_proxies: args.trusted_proxies,
        config: ServerConfig {
            interval: Duration::from_secs(args.interval),
            max_torrents: args.max_torrents,
            max_peers: args.max_peers,
            max_peers_per_torrent: args.max_peers_per_torrent,
            ..ServerConfig::default()
        },
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let server = TrackerServer::bind(options).await?;
        if let Some(addr) = server.http_addr() {
            eprintln!("shoal tracker: HTTP on http://{addr}/announce");
        }
        if let Some(addr) = server.udp_addr() {
            eprintln!("shoal tracker: UDP on udp://{addr}");
        }
        let handle = server.handle();
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot watch SIGHUP")?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                match handle.reload() {
                    Ok(Some(n)) => eprintln!("shoal tracker: allow-list reloaded, {n} info-hashes"),
                    Ok(None) => {}
                    Err(e) => eprintln!("shoal tracker: {e}; keeping the previous list"),
                }
            }
        });
        server.run(super::transfer::wait_for_signal()).await;
        eprintln!("shoal tracker: stopped");
        anyhow::Ok(())
    })
}
