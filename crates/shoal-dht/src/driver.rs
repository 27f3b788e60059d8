//! The tokio driver: one UDP socket and one [`Dht`], shared by every torrent of the
//! process through cheap [`DhtHandle`] clones.
//!
//! A torrent asks for a *subscription*: [`DhtHandle::find_peers`] or
//! [`DhtHandle::announce`] returns a channel of peer batches, fed by a lookup now and
//! by repeated lookups later (soon when the last one found nothing or could announce
//! nowhere, every [`DriverConfig::repeat`] otherwise) for as long as the receiver is
//! alive. Dropping the receiver ends the subscription; dropping every handle stops the
//! node and saves its routing table.
//!
//! BEP 44 gets and puts are one-shot: [`DhtHandle::get_item`] and
//! [`DhtHandle::put_item`] run one lookup and return its outcome;
//! [`DhtHandle::sample_infohashes`] asks one node for its BEP 51 sample.

use crate::krpc::{InfohashSample, NodeInfo, ScrapeFilters};
use crate::persist::SavedState;
use crate::{Dht, DhtConfig, DhtEvent, DhtStats, Item, LookupId, NodeId, PutRequest};
use shoal_core::{dual_stack, InfoHash};
use shoal_udp::UdpSocket;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone)]
pub struct DriverConfig {
    pub listen: SocketAddr,
    /// The node's settings. Its `ipv6` (which DHT it joins, BEP 32) is taken from the
    /// socket's family, except on a dual-stack socket (`[::]`), where two nodes can
    /// share the socket, one per family, each fed the datagrams of its family.
    pub dht: DhtConfig,
    /// Where the routing table is loaded from at start and saved to (periodically and
    /// at shutdown).
    pub state_file: Option<PathBuf>,
    /// Lookups for a subscription repeat this often once they found peers (or announced).
    pub repeat: Duration,
    /// ... and this often while they find nothing.
    pub retry: Duration,
}

impl DriverConfig {
    pub fn new(listen: SocketAddr) -> Self {
        DriverConfig {
            listen,
            dht: DhtConfig {
                ipv6: listen.is_ipv6(),
                ..DhtConfig::default()
            },
            state_file: None,
            repeat: Duration::from_secs(15 * 60),
            retry: Duration::from_secs(5),
        }
    }
}

enum Command {
    Subscribe {
        info_hash: NodeId,
        announce: Option<Announce>,
        peers: mpsc::UnboundedSender<Vec<SocketAddr>>,
    },
    Scrape {
        info_hash: NodeId,
        reply: oneshot::Sender<ScrapeFilters>,
    },
    /// What a subscription announces changed.
    Reannounce {
        info_hash: NodeId,
        change: Change,
    },
    Get {
        query: ItemQuery,
        reply: oneshot::Sender<Option<Item>>,
    },
    Put {
        // Boxed: a signing key is large next to the other commands.
        request: Box<PutRequest>,
        reply: oneshot::Sender<PutOutcome>,
    },
    Sample {
        addr: SocketAddr,
        target: NodeId,
        reply: oneshot::Sender<SampleReply>,
    },
    Stats(oneshot::Sender<DhtStats>),
    Shutdown(oneshot::Sender<()>),
}

/// A change to what a subscription announces.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// We became a seed.
    Seed,
    /// Peers are to reach us on this port.
    Port(u16),
}

/// How a subscription announces us: on `port` (`None`: the DHT socket's), as a seed or
/// not (BEP 33).
#[derive(Debug, Clone, Copy)]
struct Announce {
    port: Option<u16>,
    seed: bool,
}

/// What one node answered to `sample_infohashes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleReply {
    /// `None` when the node did not answer or does not speak BEP 51.
    pub sample: Option<InfohashSample>,
    /// Nodes it named (near the target asked about): where a crawler goes next.
    pub nodes: Vec<NodeInfo>,
}

/// Which item [`DhtHandle::get_item`] looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemQuery {
    /// The immutable item whose value hashes to this target.
    Immutable(NodeId),
    /// The mutable item of this public key under this salt (empty for none).
    Mutable { key: [u8; 32], salt: Vec<u8> },
}

/// How a put went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    pub target: NodeId,
    /// The version put, for a mutable item.
    pub seq: Option<i64>,
    /// The closest nodes that gave a write token, all asked to store it.
    pub asked: usize,
    pub stored: usize,
    /// Nodes that hold a newer version and refused.
    pub outdated: usize,
}

/// The node has stopped, or runs as many lookups as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the DHT node is stopped or too busy to start a lookup")]
pub struct DhtUnavailable;

/// A handle to the running node; clone it freely.
#[derive(Clone)]
pub struct DhtHandle {
    commands: mpsc::UnboundedSender<Command>,
    local_addr: SocketAddr,
    id: NodeId,
}

impl DhtHandle {
    /// Binds the socket, loads the saved table if any, and starts the node.
    pub async fn spawn(config: DriverConfig) -> std::io::Result<DhtHandle> {
        let (udp, incoming) = own_socket(config.listen)?;
        Self::spawn_shared(config, udp, incoming)
    }

    /// Starts the node on a UDP socket another protocol also reads (uTP, which shares
    /// the peers' port as libtorrent's does), or another node (the other family's, on a
    /// dual-stack socket): `incoming` carries the datagrams that are this node's;
    /// answers go out through `udp`.
    pub fn spawn_shared(
        mut config: DriverConfig,
        udp: Arc<UdpSocket>,
        incoming: mpsc::Receiver<Datagram>,
    ) -> std::io::Result<DhtHandle> {
        config.listen = udp.local_addr();
        let socket = Socket {
            udp,
            incoming,
            reached_at: HashMap::new(),
        };
        Self::start(config, socket)
    }

    fn start(mut config: DriverConfig, socket: Socket) -> std::io::Result<DhtHandle> {
        if let Some(path) = &config.state_file {
            if let Ok(bytes) = std::fs::read(path) {
                match SavedState::decode(&bytes) {
                    Ok(saved) => {
                        config.dht.id.get_or_insert(saved.id);
                        config.dht.saved_nodes.extend(saved.nodes);
                    }
                    Err(e) => tracing::warn!("{}: ignoring DHT state: {e}", path.display()),
                }
            }
        }
        let local_addr = socket.udp.local_addr();
        // BEP 32: the socket's family says which DHT the node joins; on a dual-stack
        // socket, which carries both, the caller says.
        if !dual_stack::is_dual_stack(local_addr) {
            config.dht.ipv6 = local_addr.ip().to_canonical().is_ipv6();
        }
        let dht = Dht::new(config.dht.clone(), Instant::now());
        let id = dht.id();
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(socket, dht, config, rx));
        Ok(DhtHandle {
            commands,
            local_addr,
            id,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Peers for `info_hash`, in batches, for as long as the receiver is kept.
    pub fn find_peers(&self, info_hash: InfoHash) -> mpsc::UnboundedReceiver<Vec<SocketAddr>> {
        self.subscribe(info_hash, None)
    }

    /// Announces us on `port` (`None`: the DHT socket's port, `implied_port`), as a seed
    /// if `seed` (BEP 33), and re-announces for as long as the receiver is kept; peers
    /// found on the way arrive on it too.
    pub fn announce(
        &self,
        info_hash: InfoHash,
        port: Option<u16>,
        seed: bool,
    ) -> mpsc::UnboundedReceiver<Vec<SocketAddr>> {
        self.subscribe(info_hash, Some(Announce { port, seed }))
    }

    /// From now on `info_hash` is announced as a seed (BEP 33): a download has completed.
    /// Its nodes hear so at once (or as soon as a running lookup ends), not at the next
    /// periodic announce.
    pub fn seeding(&self, info_hash: InfoHash) {
        let _ = self.commands.send(Command::Reannounce {
            info_hash: info_hash.into(),
            change: Change::Seed,
        });
    }

    /// From now on `info_hash` is announced on `port` (the one a router forwards to us),
    /// at once as for [`DhtHandle::seeding`].
    pub fn set_port(&self, info_hash: InfoHash, port: u16) {
        let _ = self.commands.send(Command::Reannounce {
            info_hash: info_hash.into(),
            change: Change::Port(port),
        });
    }

    /// A BEP 33 scrape: the bloom filters of the seeds and peers the nodes around
    /// `info_hash` store, ORed together ([`crate::scrape::Bloom::estimate`] counts them).
    pub async fn scrape(&self, info_hash: InfoHash) -> Result<ScrapeFilters, DhtUnavailable> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Scrape {
                info_hash: info_hash.into(),
                reply,
            })
            .map_err(|_| DhtUnavailable)?;
        rx.await.map_err(|_| DhtUnavailable)
    }

    fn subscribe(
        &self,
        info_hash: InfoHash,
        announce: Option<Announce>,
    ) -> mpsc::UnboundedReceiver<Vec<SocketAddr>> {
        let (peers, rx) = mpsc::unbounded_channel();
        let _ = self.commands.send(Command::Subscribe {
            info_hash: info_hash.into(),
            announce,
            peers,
        });
        rx
    }

    /// Looks the item up: `Ok(None)` when no node had it (or none that checked out).
    pub async fn get_item(&self, query: ItemQuery) -> Result<Option<Item>, DhtUnavailable> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Get { query, reply })
            .map_err(|_| DhtUnavailable)?;
        rx.await.map_err(|_| DhtUnavailable)
    }

    /// Stores the item on the closest nodes to its target.
    pub async fn put_item(&self, request: PutRequest) -> Result<PutOutcome, DhtUnavailable> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Put {
                request: Box::new(request),
                reply,
            })
            .map_err(|_| DhtUnavailable)?;
        rx.await.map_err(|_| DhtUnavailable)
    }

    /// Asks the node at `addr` for a sample of the info-hashes it stores (BEP 51), and
    /// for nodes near `target`.
    pub async fn sample_infohashes(
        &self,
        addr: SocketAddr,
        target: NodeId,
    ) -> Result<SampleReply, DhtUnavailable> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Sample {
                addr,
                target,
                reply,
            })
            .map_err(|_| DhtUnavailable)?;
        rx.await.map_err(|_| DhtUnavailable)
    }

    /// The node's counters; `None` once it has stopped.
    pub async fn stats(&self) -> Option<DhtStats> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Stats(tx)).ok()?;
        rx.await.ok()
    }

    /// Stops the node for every handle and returns once its table is saved.
    pub async fn shutdown(self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

struct Subscription {
    info_hash: NodeId,
    announce: Option<Announce>,
    peers: mpsc::UnboundedSender<Vec<SocketAddr>>,
    lookup: Option<LookupId>,
    next_run: Instant,
    /// What we announce changed while a lookup ran: announce again once it ends.
    announce_again: bool,
}

const SAVE_EVERY: Duration = Duration::from_secs(10 * 60);

/// A datagram for a DHT node: its bytes, its sender, and the local address it came to.
pub type Datagram = (Vec<u8>, SocketAddr, Option<IpAddr>);

/// Datagrams waiting for a node, at most; more are dropped, as a full socket buffer
/// would drop them.
const DATAGRAM_BACKLOG: usize = 1024;

/// Nodes whose local address we remember, at most (then the memory starts over).
const MAX_REACHED_AT: usize = 16 * 1024;

/// A UDP socket at `addr` (dual-stack on `[::]`) for DHT nodes alone, and its datagrams.
/// The reader runs until the receiver is dropped.
pub fn own_socket(addr: SocketAddr) -> std::io::Result<(Arc<UdpSocket>, mpsc::Receiver<Datagram>)> {
    let udp = Arc::new(UdpSocket::bind(addr)?);
    let (tx, rx) = mpsc::channel(DATAGRAM_BACKLOG);
    let reader = udp.clone();
    tokio::spawn(async move {
        let mut buf = reader.buffer();
        loop {
            let received = tokio::select! {
                () = tx.closed() => return,
                received = reader.recv(&mut buf) => received,
            };
            // An error (an ICMP answer to an earlier datagram) is about that one only.
            let Ok(received) = received else { continue };
            for datagram in received.datagrams(&buf) {
                let _ = tx.try_send((datagram.to_vec(), received.from, received.to));
            }
        }
    });
    Ok((udp, rx))
}

/// The node's socket, and which of our addresses each node reached us at: on a socket
/// bound to every address, answers and further queries go out from that one, as the
/// node expects (see `shoal_udp`).
struct Socket {
    udp: Arc<UdpSocket>,
    incoming: mpsc::Receiver<Datagram>,
    reached_at: HashMap<SocketAddr, IpAddr>,
}

impl Socket {
    async fn send_to(&self, packet: &[u8], to: SocketAddr) {
        let from = self.reached_at.get(&to).copied();
        let _ = self.udp.send(packet, to, from).await;
    }

    /// The next datagram, copied into `buf`: its length and sender.
    async fn recv(&mut self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        let Some((datagram, from, to)) = self.incoming.recv().await else {
            // The socket's reader is gone: wait for the shutdown command.
            return std::future::pending().await;
        };
        if let Some(to) = to {
            if self.reached_at.len() >= MAX_REACHED_AT && !self.reached_at.contains_key(&from) {
                self.reached_at.clear();
            }
            self.reached_at.insert(from, to);
        }
        let len = datagram.len().min(buf.len());
        buf[..len].copy_from_slice(&datagram[..len]);
        Some((len, from))
    }
}

async fn run(
    mut socket: Socket,
    mut dht: Dht,
    config: DriverConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut subs: Vec<Subscription> = Vec::new();
    let mut oneshots = Oneshots::default();
    let mut buf = vec![0u8; 2048];
    let mut next_save = Instant::now() + SAVE_EVERY;
    loop {
        let now = Instant::now();
        subs.retain(|s| !s.peers.is_closed());
        for sub in subs.iter_mut() {
            if sub.lookup.is_none() && sub.next_run <= now {
                sub.lookup = match sub.announce {
                    Some(a) => dht.announce(sub.info_hash, a.port, a.seed, now),
                    None => dht.get_peers(sub.info_hash, now),
                };
                // Refused (too many lookups running): try again shortly.
                sub.next_run = now + config.retry;
            }
        }
        while let Some(event) = dht.poll_event() {
            on_event(event, &mut subs, &mut oneshots, &config, now);
        }
        while let Some((to, packet)) = dht.poll_transmit() {
            socket.send_to(&packet, to).await;
        }
        if now >= next_save {
            next_save = now + SAVE_EVERY;
            save(&dht, &config);
        }
        let wake = subs
            .iter()
            .filter(|s| s.lookup.is_none())
            .map(|s| s.next_run)
            .chain([dht.poll_timeout(), next_save])
            .min()
            .expect("never empty");
        tokio::select! {
            received = socket.recv(&mut buf) => {
                if let Some((len, from)) = received {
                    dht.handle_packet(Instant::now(), from, &buf[..len]);
                }
            }
            command = commands.recv() => match command {
                None => break,
                Some(Command::Subscribe { info_hash, announce, peers }) => subs.push(Subscription {
                    info_hash,
                    announce,
                    peers,
                    lookup: None,
                    next_run: now,
                    announce_again: false,
                }),
                Some(Command::Reannounce { info_hash, change }) => {
                    for sub in subs.iter_mut().filter(|s| s.info_hash == info_hash) {
                        let Some(a) = &mut sub.announce else { continue };
                        let changed = match change {
                            Change::Seed => !std::mem::replace(&mut a.seed, true),
                            Change::Port(port) => a.port.replace(port) != Some(port),
                        };
                        if !changed {
                            continue;
                        }
                        match sub.lookup {
                            Some(_) => sub.announce_again = true,
                            None => sub.next_run = now,
                        }
                    }
                }
                Some(Command::Get { query, reply }) => {
                    let now = Instant::now();
                    let lookup = match query {
                        ItemQuery::Immutable(target) => dht.get_immutable(target, now),
                        ItemQuery::Mutable { key, salt } => dht.get_mutable(key, salt, now),
                    };
                    // Refused: dropping `reply` tells the caller.
                    if let Some(lookup) = lookup {
                        oneshots.gets.insert(lookup, reply);
                    }
                }
                Some(Command::Put { request, reply }) => {
                    if let Some(lookup) = dht.put_item(*request, Instant::now()) {
                        oneshots.puts.insert(lookup, reply);
                    }
                }
                Some(Command::Scrape { info_hash, reply }) => {
                    if let Some(lookup) = dht.scrape(info_hash, Instant::now()) {
                        oneshots.scrapes.insert(lookup, reply);
                    }
                }
                Some(Command::Sample { addr, target, reply }) => {
                    if let Some(lookup) = dht.sample_infohashes(addr, target, Instant::now()) {
                        oneshots.samples.insert(lookup, reply);
                    }
                }
                Some(Command::Stats(reply)) => {
                    let _ = reply.send(dht.stats());
                }
                Some(Command::Shutdown(done)) => {
                    save(&dht, &config);
                    let _ = done.send(());
                    return;
                }
            },
            _ = tokio::time::sleep_until(wake.into()) => {
                dht.handle_timeout(Instant::now());
            }
        }
    }
    save(&dht, &config);
}

/// Callers waiting for a get or a put, by lookup.
#[derive(Default)]
struct Oneshots {
    gets: HashMap<LookupId, oneshot::Sender<Option<Item>>>,
    puts: HashMap<LookupId, oneshot::Sender<PutOutcome>>,
    samples: HashMap<LookupId, oneshot::Sender<SampleReply>>,
    scrapes: HashMap<LookupId, oneshot::Sender<ScrapeFilters>>,
}

fn on_event(
    event: DhtEvent,
    subs: &mut [Subscription],
    oneshots: &mut Oneshots,
    config: &DriverConfig,
    now: Instant,
) {
    match event {
        DhtEvent::Sampled {
            lookup,
            sample,
            nodes,
            ..
        } => {
            if let Some(reply) = oneshots.samples.remove(&lookup) {
                let _ = reply.send(SampleReply { sample, nodes });
            }
        }
        DhtEvent::ItemFound { lookup, item, .. } => {
            if let Some(reply) = oneshots.gets.remove(&lookup) {
                let _ = reply.send(item);
            }
        }
        DhtEvent::ItemStored {
            lookup,
            target,
            seq,
            asked,
            stored,
            outdated,
        } => {
            if let Some(reply) = oneshots.puts.remove(&lookup) {
                let _ = reply.send(PutOutcome {
                    target,
                    seq,
                    asked,
                    stored,
                    outdated,
                });
            }
        }
        DhtEvent::Peers { lookup, peers, .. } => {
            if let Some(sub) = subs.iter().find(|s| s.lookup == Some(lookup)) {
                let _ = sub.peers.send(peers);
            }
        }
        DhtEvent::LookupDone {
            lookup,
            peers_found,
            announced_to,
            scrape,
            ..
        } => {
            if let (Some(reply), Some(filters)) = (oneshots.scrapes.remove(&lookup), scrape) {
                let _ = reply.send(*filters);
            }
            if let Some(sub) = subs.iter_mut().find(|s| s.lookup == Some(lookup)) {
                sub.lookup = None;
                let done = match sub.announce {
                    Some(_) => announced_to > 0,
                    None => peers_found > 0,
                };
                sub.next_run = match std::mem::take(&mut sub.announce_again) {
                    true => now,
                    false => now + if done { config.repeat } else { config.retry },
                };
            }
        }
    }
}

fn save(dht: &Dht, config: &DriverConfig) {
    let Some(path) = &config.state_file else {
        return;
    };
    let state = SavedState {
        id: dht.id(),
        nodes: dht.routing_nodes(),
    };
    let tmp = path.with_extension("tmp");
    let result = std::fs::write(&tmp, state.encode()).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        tracing::warn!("{}: cannot save DHT state: {e}", path.display());
    }
}
