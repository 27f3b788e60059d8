//! Peer discovery shared by `get` and `seed`: the process's DHT node and, when asked
//! for, local service discovery (BEP 14), merged into the one peer feed the engine
//! takes.
//!
//! One DHT node serves every torrent of the process (here: the one torrent `get`/`seed`
//! runs). It listens on UDP at the same address as the TCP listener unless told
//! otherwise, keeps its routing table in the state folder (one file per UDP port, so
//! several shoal processes never share a node id), and is left out entirely with
//! `--no-dht`. Local discovery multicasts on the LAN and is off unless `--lsd`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use shoal_core::InfoHash;
use shoal_dht::driver::{DhtHandle, DriverConfig};
use shoal_engine::lsd::{self, LsdConfig};
use shoal_engine::{PeerFeed, PeerSource};
use tokio::sync::mpsc;

/// Public routers used when no `--dht-bootstrap` is given (and we are not on loopback).
const DEFAULT_BOOTSTRAP: [&str; 4] = [
    "router.bittorrent.com:6881",
    "router.utorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "dht.libtorrent.org:25401",
];

#[derive(Debug, Clone, clap::Args)]
pub struct DiscoveryOptions {
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
    /// Find peers on the local network by multicast (BEP 14 local service discovery).
    #[arg(long)]
    pub lsd: bool,
    /// Multicast group and port for --lsd.
    #[arg(long, value_name = "ADDR", default_value_t = lsd::DEFAULT_GROUP)]
    pub lsd_group: SocketAddrV4,
}

/// Resolves `HOST:PORT` names; names that do not resolve are reported and skipped,
/// since one dead router must not stop a download.
pub fn resolve(names: &[String]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for name in names {
        match name.to_socket_addrs() {
            Ok(addrs) => out.extend(addrs),
            Err(e) => eprintln!("shoal: warning: DHT bootstrap {name}: {e}"),
        }
    }
    out
}

/// The addresses to bootstrap from: `names` if any, else the public routers unless the
/// node listens on loopback (from where they cannot be reached).
pub async fn bootstrap_for(names: &[String], listen: SocketAddr) -> Vec<SocketAddr> {
    let found = if !names.is_empty() {
        resolve(names)
    } else if listen.ip().is_loopback() {
        Vec::new()
    } else {
        let names: Vec<String> = DEFAULT_BOOTSTRAP.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || resolve(&names))
            .await
            .unwrap_or_default()
    };
    same_dht(found, listen)
}

/// The addresses in the DHT a node at `listen` is in: IPv6 ones for an IPv6 node (BEP 32,
/// a separate network), else IPv4 ones.
pub fn same_dht(addrs: Vec<SocketAddr>, listen: SocketAddr) -> Vec<SocketAddr> {
    let v6 = listen.ip().to_canonical().is_ipv6();
    addrs
        .into_iter()
        .filter(|a| a.ip().to_canonical().is_ipv6() == v6)
        .collect()
}

/// The uTP socket, for a DHT node on the same port: answers go out through it, and its
/// datagrams that are not uTP come in through the receiver.
pub type SharedUdp = (Arc<tokio::net::UdpSocket>, shoal_utp::OtherDatagrams);

/// Starts the DHT node unless `--no-dht` (or a private torrent) says not to: on
/// `shared` when given, else on its own
/// socket at `--dht-listen` or `listen`.
pub async fn start(
    opts: &DiscoveryOptions,
    listen: SocketAddr,
    state_dir: &Path,
    shared: Option<SharedUdp>,
) -> Result<Option<DhtHandle>> {
    if opts.no_dht {
        return Ok(None);
    }
    let addr = match &shared {
        Some((udp, _)) => udp.local_addr()?,
        None => opts.dht_listen.unwrap_or(listen),
    };
    let bootstrap = bootstrap_for(&opts.bootstrap, addr).await;
    let mut config = DriverConfig::new(addr);
    config.dht.bootstrap = bootstrap;
    config.dht.seed = rand::random();
    if std::fs::create_dir_all(state_dir).is_ok() {
        config.state_file = Some(state_dir.join(format!("dht-{}.state", addr.port())));
    }
    let handle = match shared {
        Some((udp, incoming)) => DhtHandle::spawn_shared(config, udp, incoming)?,
        None => DhtHandle::spawn(config)
            .await
            .with_context(|| format!("{addr}: cannot open the DHT's UDP socket"))?,
    };
    Ok(Some(handle))
}

/// The peer feed for one torrent: the DHT's announce subscription (as a seed if `seed`,
/// BEP 33) and local discovery, merged; `None` when neither runs.
pub fn peer_feed(
    dht: Option<&DhtHandle>,
    opts: &DiscoveryOptions,
    info_hash: InfoHash,
    listen: SocketAddr,
    seed: bool,
) -> Option<PeerFeed> {
    let mut feeds = Vec::new();
    if let Some(dht) = dht {
        let found = dht.announce(info_hash, Some(listen.port()), seed);
        feeds.push(tagged(PeerSource::Dht, found));
    }
    if opts.lsd {
        let interface = match listen.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        let config = LsdConfig {
            group: opts.lsd_group,
            interface,
            info_hash,
            port: listen.port(),
        };
        match lsd::spawn(config) {
            Ok(feed) => feeds.push(tagged(PeerSource::Lsd, feed)),
            Err(e) => eprintln!("shoal: warning: local service discovery: {e}"),
        }
    }
    merge_feeds(feeds)
}

/// A source's batches of peers as a feed that says where they came from.
pub fn tagged(source: PeerSource, mut found: mpsc::UnboundedReceiver<Vec<SocketAddr>>) -> PeerFeed {
    let (tx, feed) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(batch) = found.recv().await {
            if tx.send((source, batch)).is_err() {
                return;
            }
        }
    });
    feed
}

/// One feed with every batch of `feeds` (none when there are none).
pub fn merge_feeds(mut feeds: Vec<PeerFeed>) -> Option<PeerFeed> {
    if feeds.len() <= 1 {
        return feeds.pop();
    }
    let (tx, merged) = mpsc::unbounded_channel();
    for mut feed in feeds {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(batch) = feed.recv().await {
                if tx.send(batch).is_err() {
                    return;
                }
            }
        });
    }
    Some(merged)
}
