//! Peer discovery options shared by `get` and `seed`: the process's DHT node.
//!
//! One node serves every torrent of the process (here: the one torrent `get`/`seed`
//! runs). It listens on UDP at the same address as the TCP listener unless told
//! otherwise, keeps its routing table in the state folder (one file per UDP port, so
//! several shoal processes never share a node id), and is left out entirely with
//! `--no-dht`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use anyhow::{Context, Result};
use shoal_dht::driver::{DhtHandle, DriverConfig};

/// Public routers used when no `--dht-bootstrap` is given (and we are not on loopback).
const DEFAULT_BOOTSTRAP: [&str; 4] = [
    "router.bittorrent.com:6881",
    "router.utorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "dht.libtorrent.org:25401",
];

#[derive(Debug, Clone, clap::Args)]
pub struct DhtOptions {
    /// A DHT node to bootstrap from (HOST:PORT). Repeat for several
    /// [default: the public Mainline routers].
    #[arg(long = "dht-bootstrap", value_name = "ADDR")]
    pub bootstrap: Vec<String>,
    /// Do not use the DHT (no lookups, no announces).
    #[arg(long)]
    pub no_dht: bool,
    /// UDP address of the DHT node [default: the --listen address].
    #[arg(long, value_name = "ADDR")]
    pub dht_listen: Option<SocketAddr>,
}

/// Resolves `HOST:PORT` names to IPv4 addresses (the node speaks IPv4); names that do
/// not resolve are reported and skipped, since one dead router must not stop a download.
pub fn resolve(names: &[String]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for name in names {
        match name.to_socket_addrs() {
            Ok(addrs) => out.extend(addrs.filter(SocketAddr::is_ipv4)),
            Err(e) => eprintln!("shoal: warning: DHT bootstrap {name}: {e}"),
        }
    }
    out
}

/// Starts the DHT node unless `--no-dht` (or a private torrent) says not to.
pub async fn start(
    opts: &DhtOptions,
    listen: SocketAddr,
    state_dir: &Path,
) -> Result<Option<DhtHandle>> {
    if opts.no_dht {
        return Ok(None);
    }
    let addr = opts.dht_listen.unwrap_or(listen);
    let bootstrap = if !opts.bootstrap.is_empty() {
        resolve(&opts.bootstrap)
    } else if addr.ip().is_loopback() {
        // A loopback socket cannot reach the Internet's routers.
        Vec::new()
    } else {
        let names: Vec<String> = DEFAULT_BOOTSTRAP.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || resolve(&names))
            .await
            .unwrap_or_default()
    };
    let mut config = DriverConfig::new(addr);
    config.dht.bootstrap = bootstrap;
    config.dht.seed = rand::random();
    if std::fs::create_dir_all(state_dir).is_ok() {
        config.state_file = Some(state_dir.join(format!("dht-{}.state", addr.port())));
    }
    let handle = DhtHandle::spawn(config)
        .await
        .with_context(|| format!("{addr}: cannot open the DHT's UDP socket"))?;
    Ok(Some(handle))
}
