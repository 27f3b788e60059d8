//! Peer discovery shared by `get` and `seed`: the process's DHT nodes and, when asked
//! for, local service discovery (BEP 14), merged into the one peer feed the engine
//! takes.
//!
//! The DHT serves every torrent of the process (here: the one torrent `get`/`seed`
//! runs). It listens on UDP at the same address as the TCP listener unless told
//! otherwise: one node in the IPv4 or the IPv6 DHT, or, on a dual-stack socket (`[::]`,
//! the default where the system has IPv6), one in each. Each keeps its routing table in
//! the state folder (one file per UDP port and family, so several shoal processes never
//! share a node id). `--no-dht` leaves it out entirely. Local discovery multicasts on
//! the LAN and is off unless `--lsd`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use shoal_core::{dual_stack, DhtNode, InfoHash};
use shoal_dht::driver::{DhtHandle, DriverConfig};
use shoal_engine::lsd::{self, LsdConfig};
use shoal_engine::{Found, PeerFeed, PeerSource};
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
    /// Multicast group and port for --lsd, one per family. Repeat for both families
    /// [default: 239.192.152.143:6771 and [ff15::efc0:988f]:6771, BEP 14's]. Each is used
    /// on every interface of its family that --listen covers.
    #[arg(long, value_name = "ADDR")]
    pub lsd_group: Vec<SocketAddr>,
}

/// Resolves `HOST:PORT` names (`what` they are, for the warning); names that do not
/// resolve are reported and skipped, since one dead router must not stop a download.
pub fn resolve(names: &[String], what: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for name in names {
        match name.to_socket_addrs() {
            Ok(addrs) => out.extend(addrs),
            Err(e) => eprintln!("shoal: warning: {what} {name}: {e}"),
        }
    }
    out
}

/// The addresses to bootstrap from: `names` if any, else the public routers unless the
/// node listens on loopback (from where they cannot be reached).
pub async fn bootstrap_for(names: &[String], listen: SocketAddr) -> Vec<SocketAddr> {
    let found = resolve_bootstrap(names, listen).await;
    same_dht(found, listen)
}

/// [`bootstrap_for`] before the addresses are sorted by family.
async fn resolve_bootstrap(names: &[String], listen: SocketAddr) -> Vec<SocketAddr> {
    if !names.is_empty() {
        resolve(names, "DHT bootstrap")
    } else if listen.ip().is_loopback() {
        Vec::new()
    } else {
        let names: Vec<String> = DEFAULT_BOOTSTRAP.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || resolve(&names, "DHT bootstrap"))
            .await
            .unwrap_or_default()
    }
}

/// The addresses in the DHT a node at `listen` is in: IPv6 ones for an IPv6 node (BEP 32,
/// a separate network), else IPv4 ones.
fn same_dht(addrs: Vec<SocketAddr>, listen: SocketAddr) -> Vec<SocketAddr> {
    of_family(addrs, listen.ip().to_canonical().is_ipv6())
}

/// The addresses of `addrs` in the IPv6 DHT if `ipv6`, else those in the IPv4 one.
pub fn of_family(addrs: Vec<SocketAddr>, ipv6: bool) -> Vec<SocketAddr> {
    addrs
        .into_iter()
        .filter(|a| a.ip().to_canonical().is_ipv6() == ipv6)
        .collect()
}

/// The uTP socket, for a DHT node on the same port: answers go out through it, and its
/// datagrams that are not uTP come in through the receiver.
pub type SharedUdp = (Arc<shoal_udp::UdpSocket>, shoal_utp::OtherDatagrams);

/// The process's DHT nodes: one, or on a dual-stack socket two, one in the IPv4 DHT and
/// one in the IPv6 DHT (BEP 32: separate networks, each with its own routing table), as
/// libtorrent runs one per listen socket. Every torrent is announced in each.
#[derive(Clone, Default)]
pub struct Dhts(Vec<(Family, DhtHandle)>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

impl Dhts {
    /// Announces `info_hash` on `port` in every node (as a seed if `seed`, BEP 33): the
    /// peers each finds.
    pub fn announce(
        &self,
        info_hash: InfoHash,
        port: u16,
        seed: bool,
    ) -> Vec<mpsc::UnboundedReceiver<Vec<SocketAddr>>> {
        self.0
            .iter()
            .map(|(_, dht)| dht.announce(info_hash, Some(port), seed))
            .collect()
    }

    /// We became a seed of `info_hash`: the next announces say so.
    pub fn seeding(&self, info_hash: InfoHash) {
        for (_, dht) in &self.0 {
            dht.seeding(info_hash);
        }
    }

    /// A router forwards `port` to us (port mapping is IPv4's): the IPv4 node announces
    /// `info_hash` on that port from now on.
    pub fn set_ipv4_port(&self, info_hash: InfoHash, port: u16) {
        for (_, dht) in self.0.iter().filter(|(family, _)| *family == Family::V4) {
            dht.set_port(info_hash, port);
        }
    }

    /// The nodes, each with the DHT it is in.
    pub fn nodes(&self) -> &[(Family, DhtHandle)] {
        &self.0
    }

    /// Stops the nodes, each once its routing table is saved.
    pub async fn shutdown(self) {
        for (_, dht) in self.0 {
            dht.shutdown().await;
        }
    }
}

/// Starts the DHT unless `--no-dht` says not to: on `shared` when given, else on its own
/// socket at `--dht-listen` or `listen`. A dual-stack socket (`[::]`) gets a node in each
/// family's DHT, each fed the datagrams from its family. The torrent's own `nodes`
/// (BEP 5) are bootstrapped from beside the routers, as libtorrent adds them: a
/// trackerless torrent made for a network the routers do not reach still finds its DHT.
pub async fn start(
    opts: &DiscoveryOptions,
    listen: SocketAddr,
    state_dir: &Path,
    shared: Option<SharedUdp>,
    torrent_nodes: &[DhtNode],
) -> Result<Dhts> {
    if opts.no_dht {
        return Ok(Dhts::default());
    }
    let addr = match &shared {
        Some((udp, _)) => udp.local_addr(),
        None => opts.dht_listen.unwrap_or(listen),
    };
    let mut found = resolve_bootstrap(&opts.bootstrap, addr).await;
    let names: Vec<String> = torrent_nodes.iter().map(ToString::to_string).collect();
    if !names.is_empty() {
        let resolved = tokio::task::spawn_blocking(move || resolve(&names, "torrent's DHT node"));
        found.extend(resolved.await.unwrap_or_default());
    }
    // Behind a proxy's UDP relay nobody can query us (the relay passes on only the
    // answers of nodes we wrote to): a read-only node (BEP 43) says so.
    let relayed = shared
        .as_ref()
        .is_some_and(|(udp, _)| udp.relay().is_some());
    let config = |ipv6: bool| {
        let mut config = DriverConfig::new(addr);
        config.dht.ipv6 = ipv6;
        config.dht.read_only = relayed;
        config.dht.bootstrap = of_family(found.clone(), ipv6);
        config.dht.seed = rand::random();
        // One file per UDP port and family, so that several shoal processes never share
        // a node id.
        let family = if ipv6 { "dht6" } else { "dht" };
        if std::fs::create_dir_all(state_dir).is_ok() {
            config.state_file = Some(state_dir.join(format!("{family}-{}.state", addr.port())));
        }
        config
    };
    spawn_nodes(addr, shared, config).await
}

/// The DHT nodes for a UDP socket at `addr` (`shared` when given, else one of their own):
/// a node of its family, or on a dual-stack address one of each family, each fed the
/// datagrams from its family. `config(ipv6)` is each node's configuration.
pub async fn spawn_nodes(
    addr: SocketAddr,
    shared: Option<SharedUdp>,
    config: impl Fn(bool) -> DriverConfig,
) -> Result<Dhts> {
    let cannot = || format!("{addr}: cannot open the DHT's UDP socket");
    if !dual_stack::is_dual_stack(addr) {
        let config = config(addr.is_ipv6());
        let handle = match shared {
            Some((udp, incoming)) => DhtHandle::spawn_shared(config, udp, incoming)?,
            None => DhtHandle::spawn(config).await.with_context(cannot)?,
        };
        let family = if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        };
        return Ok(Dhts(vec![(family, handle)]));
    }
    let (udp, incoming) = match shared {
        Some(shared) => shared,
        None => shoal_dht::driver::own_socket(addr).with_context(cannot)?,
    };
    let (v4, v6) = split_by_family(incoming);
    Ok(Dhts(vec![
        (
            Family::V4,
            DhtHandle::spawn_shared(config(false), udp.clone(), v4)?,
        ),
        (Family::V6, DhtHandle::spawn_shared(config(true), udp, v6)?),
    ]))
}

/// Datagrams waiting for a DHT node, at most.
const DATAGRAM_BACKLOG: usize = 1024;

type Datagrams = mpsc::Receiver<shoal_dht::driver::Datagram>;

/// `incoming` as two streams: from IPv4 senders, and from IPv6 ones.
fn split_by_family(mut incoming: Datagrams) -> (Datagrams, Datagrams) {
    let (v4_tx, v4) = mpsc::channel(DATAGRAM_BACKLOG);
    let (v6_tx, v6) = mpsc::channel(DATAGRAM_BACKLOG);
    // Until both nodes have stopped (then the reader of an own socket stops too).
    tokio::spawn(async move {
        loop {
            let both_stopped = async {
                v4_tx.closed().await;
                v6_tx.closed().await;
            };
            let received = tokio::select! {
                () = both_stopped => return,
                received = incoming.recv() => received,
            };
            let Some(datagram) = received else {
                return;
            };
            let node = if datagram.1.is_ipv4() { &v4_tx } else { &v6_tx };
            let _ = node.try_send(datagram);
        }
    });
    (v4, v6)
}

/// The peer feed for one torrent: the DHT's announce subscriptions for each of its
/// `swarms` (a hybrid torrent's v1 and v2 info-hashes; as a seed if `seed`, BEP 33) and
/// local discovery, merged; `None` when neither runs.
pub fn peer_feed(
    dhts: &Dhts,
    opts: &DiscoveryOptions,
    swarms: &[InfoHash],
    listen: SocketAddr,
    seed: bool,
) -> Option<PeerFeed> {
    let mut feeds: Vec<PeerFeed> = swarms
        .iter()
        .flat_map(|&swarm| {
            let found = dhts.announce(swarm, listen.port(), seed);
            found
                .into_iter()
                .map(move |found| tagged((PeerSource::Dht, swarm), found))
        })
        .collect();
    if opts.lsd {
        let groups = if opts.lsd_group.is_empty() {
            vec![lsd::GROUP_V4, lsd::GROUP_V6]
        } else {
            opts.lsd_group.clone()
        };
        let config = LsdConfig {
            groups,
            listen,
            info_hashes: swarms.to_vec(),
        };
        match lsd::spawn(config) {
            Ok(feed) => feeds.push(feed),
            Err(e) => eprintln!("shoal: warning: local service discovery: {e}"),
        }
    }
    merge_feeds(feeds)
}

/// A source's batches of peers in one swarm as a feed that says where they came from.
pub fn tagged(
    (source, swarm): (PeerSource, InfoHash),
    found: mpsc::UnboundedReceiver<Vec<SocketAddr>>,
) -> PeerFeed {
    let (tx, feed) = mpsc::unbounded_channel();
    forward((source, swarm), found, tx);
    feed
}

/// Sends `found`'s batches, as found by `source` in `swarm`, to `to` until either end
/// is gone.
pub fn forward(
    (source, swarm): (PeerSource, InfoHash),
    found: mpsc::UnboundedReceiver<Vec<SocketAddr>>,
    to: mpsc::UnboundedSender<Found>,
) {
    relay(found, to, move |peers| Found {
        source,
        swarm,
        peers,
    });
}

/// Sends what `from` receives, made into `T` by `map`, to `to`, until either end is
/// gone. The far end going is noticed at once, not at the next send: `from` is dropped
/// then, so its source (LSD's loop, say) stops too.
pub fn relay<F: Send + 'static, T: Send + 'static>(
    mut from: mpsc::UnboundedReceiver<F>,
    to: mpsc::UnboundedSender<T>,
    map: impl Fn(F) -> T + Send + 'static,
) {
    tokio::spawn(async move {
        loop {
            let item = tokio::select! {
                item = from.recv() => item,
                () = to.closed() => return,
            };
            let Some(item) = item else { return };
            if to.send(map(item)).is_err() {
                return;
            }
        }
    });
}

/// One feed with every batch of `feeds` (none when there are none).
pub fn merge_feeds(mut feeds: Vec<PeerFeed>) -> Option<PeerFeed> {
    if feeds.len() <= 1 {
        return feeds.pop();
    }
    let (tx, merged) = mpsc::unbounded_channel();
    for feed in feeds {
        relay(feed, tx.clone(), |batch| batch);
    }
    Some(merged)
}
