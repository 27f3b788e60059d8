//! [`Dht`]: one DHT node as a sans-IO state machine.
//!
//! The driver hands it packets ([`Dht::handle_packet`]) and timer expiries
//! ([`Dht::handle_timeout`]) with the current time, and drains packets to send
//! ([`Dht::poll_transmit`]), events ([`Dht::poll_event`]) and the next deadline
//! ([`Dht::poll_timeout`]). Randomness comes from a seeded RNG, so a simulator replays
//! a whole network exactly.
//!
//! Incoming packets pass, in order: the per-IP rate limit, the KRPC decoder, the
//! own-id check (a packet claiming our id is a reflection or an attack and is ignored),
//! then either the query handlers (which answer and may learn the sender) or the
//! transaction table (a response must come from the address we asked, under a
//! transaction id we issued and still wait for; anything else is dropped).

use crate::id::{bep42_id, bep42_valid, NodeId};
use crate::item::{immutable_target, mutable_target, Item, ItemSigner, MutableItem};
use crate::item_store::{ItemStore, ItemStoreLimits, PutRefused};
use crate::krpc::{
    Body, InfohashSample, ItemFields, KrpcError, Message, NodeInfo, Query, Response, ScrapeFilters,
    ERROR_BAD_SIGNATURE, ERROR_CAS_MISMATCH, ERROR_PROTOCOL, ERROR_SEQ_OUTDATED, MAX_SAMPLES,
    MAX_SAMPLE_INTERVAL, VALUES_PER_RESPONSE,
};
use crate::lookup::{Lookup, LookupId, LookupKind};
use crate::peer_store::{PeerStore, PeerStoreLimits};
use crate::rate_limit::{RateLimitConfig, SourceLimiter};
use crate::routing::{Insert, RoutingTable, K};
use crate::tokens::Tokens;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Settings of a node. [`DhtConfig::default`] is what a public node wants.
#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// Our id; `None` picks one (BEP 42 style when `external_ip` is known).
    pub id: Option<NodeId>,
    /// Our public IPv4 address, if known: our id is then derived from it (BEP 42).
    pub external_ip: Option<Ipv4Addr>,
    /// Keep nodes whose id does not match their address (BEP 42) out of the routing
    /// table. Loopback and private addresses are always exempt.
    pub enforce_node_ids: bool,
    /// Addresses to bootstrap from (ids unknown), e.g. router nodes or a saved table.
    pub bootstrap: Vec<SocketAddr>,
    /// Nodes from a saved routing table; asked first when the node starts.
    pub saved_nodes: Vec<NodeInfo>,
    /// Queries a lookup keeps in flight.
    pub alpha: usize,
    /// How long to wait for an answer.
    pub query_timeout: Duration,
    pub rate_limit: RateLimitConfig,
    pub peer_store: PeerStoreLimits,
    /// BEP 44 items stored for others.
    pub items: ItemStoreLimits,
    /// Queries we wait for at once, over all lookups; more wait their turn.
    pub max_pending: usize,
    /// Lookups run at once; further `get_peers`/`announce` calls are refused.
    pub max_lookups: usize,
    /// Packets queued for sending at most; answers beyond that are dropped.
    pub max_transmit_queue: usize,
    /// Seed for the RNG (ids, tokens, transaction ids).
    pub seed: u64,
    /// BEP 43: say `ro = 1` in our queries and answer none, so that other nodes keep us
    /// out of their tables. For a node that lives seconds (`shoal dht get`), which would
    /// otherwise leave a dead entry everywhere it asked.
    pub read_only: bool,
    /// The node is in the IPv6 DHT (BEP 32): it talks to, keeps and hands out IPv6
    /// nodes only (its socket is IPv6). Otherwise IPv4 only.
    pub ipv6: bool,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            id: None,
            external_ip: None,
            enforce_node_ids: false,
            bootstrap: Vec::new(),
            saved_nodes: Vec::new(),
            alpha: 4,
            query_timeout: Duration::from_secs(3),
            rate_limit: RateLimitConfig::default(),
            peer_store: PeerStoreLimits::default(),
            items: ItemStoreLimits::default(),
            max_pending: 1024,
            max_lookups: 256,
            max_transmit_queue: 4096,
            seed: 0,
            read_only: false,
            ipv6: false,
        }
    }
}

/// What the node reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtEvent {
    /// Peers for a `get_peers`/`announce` lookup, each reported once per lookup.
    Peers {
        lookup: LookupId,
        info_hash: NodeId,
        peers: Vec<SocketAddr>,
    },
    /// A lookup finished (announces, if any, have been sent).
    LookupDone {
        lookup: LookupId,
        target: NodeId,
        peers_found: usize,
        announced_to: usize,
        queries: u32,
        /// The round of the first answer with peers (1 = asked straight from our table).
        first_peers_round: Option<u32>,
        /// A scrape's bloom filters, ORed over the nodes that answered (BEP 33).
        scrape: Option<Box<ScrapeFilters>>,
    },
    /// A BEP 44 get finished: the item found (for a mutable item, the highest version
    /// any node had), checked against the target and, if mutable, its signature.
    ItemFound {
        lookup: LookupId,
        target: NodeId,
        item: Option<Item>,
        queries: u32,
    },
    /// The answer to [`Dht::sample_infohashes`]: the node's sample (`None` if it did not
    /// answer, or answered without one: not every node speaks BEP 51) and the nodes it
    /// named, which a crawler asks next.
    Sampled {
        lookup: LookupId,
        from: SocketAddr,
        sample: Option<InfohashSample>,
        nodes: Vec<NodeInfo>,
    },
    /// A BEP 44 put finished: `stored` of the `asked` closest nodes took the item.
    ItemStored {
        lookup: LookupId,
        target: NodeId,
        /// The version put, for a mutable item.
        seq: Option<i64>,
        asked: usize,
        stored: usize,
        /// Nodes that refused because they hold a newer version (error 302) or another
        /// than the `cas` named (301).
        outdated: usize,
    },
}

/// What to store with [`Dht::put_item`].
#[derive(Debug)]
pub enum PutRequest {
    Immutable(Item),
    /// Signed once the lookup has seen the versions already stored: with `seq: None`,
    /// one more than the highest found (1 if none), as libtorrent does.
    Mutable {
        signer: ItemSigner,
        salt: Vec<u8>,
        value: Vec<u8>,
        seq: Option<i64>,
    },
}

impl PutRequest {
    /// Where the item goes.
    pub fn target(&self) -> NodeId {
        match self {
            PutRequest::Immutable(item) => item.target(),
            PutRequest::Mutable { signer, salt, .. } => mutable_target(&signer.public_key(), salt),
        }
    }
}

/// Counters for the `shoal dht` display and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DhtStats {
    pub nodes: usize,
    pub buckets: usize,
    pub torrents_stored: usize,
    pub peers_stored: usize,
    pub items_stored: usize,
    pub packets_in: u64,
    pub packets_out: u64,
    pub rate_limited: u64,
    pub bad_packets: u64,
    pub queries_answered: u64,
    pub lookups_running: usize,
}

#[derive(Debug, Clone, Copy)]
enum Purpose {
    Lookup { lookup: LookupId, round: u32 },
    Ping,
    Announce,
    Put { lookup: LookupId },
    Sample { lookup: LookupId },
}

#[derive(Debug, Clone)]
struct Pending {
    addr: SocketAddr,
    id: Option<NodeId>,
    purpose: Purpose,
    deadline: Instant,
}

/// How long our BEP 51 sample stands (libtorrent's default too): a crawler learns nothing
/// new by asking sooner.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(6 * 60 * 60);
/// Housekeeping (pings, refreshes, bootstrap retries) runs this often.
const MAINTENANCE: Duration = Duration::from_secs(5);
/// A bootstrap that leaves fewer than K nodes in the table (a young node, or a network
/// whose nodes all started at once) is retried after this long, doubling each time up
/// to [`MAX_BOOTSTRAP_BACKOFF`].
const MIN_BOOTSTRAP_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BOOTSTRAP_BACKOFF: Duration = Duration::from_secs(60);
/// Far buckets refreshed right after a successful bootstrap.
const JOIN_REFRESH_BUCKETS: usize = 4;
/// Questionable nodes pinged per maintenance round.
const PINGS_PER_ROUND: usize = 8;

struct LookupEntry {
    lookup: Lookup,
    /// Internal lookups (bootstrap, refresh) report nothing.
    internal: bool,
    /// For BEP 44 gets and puts.
    item: Option<ItemSearch>,
}

/// What a get or put lookup looks for besides closer nodes.
struct ItemSearch {
    /// The salt of a mutable item (empty for none); `None` for an immutable one.
    salt: Option<Vec<u8>>,
    best: Option<Item>,
    put: Option<PutRequest>,
}

impl ItemSearch {
    /// Takes the item an answer carries if it is the one looked for (its hash, or its key
    /// and signature, check out) and newer than what we have.
    fn offer(&mut self, target: &NodeId, fields: ItemFields) -> bool {
        let Some(value) = fields.value else {
            return false;
        };
        let item = match (&self.salt, fields.key, fields.signature, fields.seq) {
            (None, ..) => {
                if immutable_target(&value) != *target {
                    return false;
                }
                Item::Immutable { value }
            }
            (Some(_), _, _, Some(seq))
                if self.best.as_ref().is_some_and(|b| b.seq() >= Some(seq)) =>
            {
                // No newer than what we have: not worth a signature check.
                return false;
            }
            (Some(salt), Some(key), Some(signature), Some(seq)) => {
                let item = MutableItem {
                    key,
                    salt: salt.clone(),
                    seq,
                    value,
                    signature,
                };
                if mutable_target(&key, salt) != *target || item.check().is_err() || !item.verify()
                {
                    return false;
                }
                Item::Mutable(item)
            }
            _ => return false,
        };
        if self.best.as_ref().is_some_and(|b| b.seq() >= item.seq()) {
            return false;
        }
        self.best = Some(item);
        true
    }
}

/// A put's answers still awaited.
struct PutProgress {
    target: NodeId,
    seq: Option<i64>,
    asked: usize,
    waiting: usize,
    stored: usize,
    outdated: usize,
}

pub struct Dht {
    config: DhtConfig,
    own: NodeId,
    rng: StdRng,
    table: RoutingTable,
    tokens: Tokens,
    store: PeerStore,
    items: ItemStore,
    puts: BTreeMap<LookupId, PutProgress>,
    limiter: SourceLimiter,
    /// The sample `sample_infohashes` answers with, and when it was drawn.
    infohash_sample: Option<(Instant, Vec<NodeId>)>,
    pending: BTreeMap<u16, Pending>,
    next_tid: u16,
    lookups: BTreeMap<LookupId, LookupEntry>,
    next_lookup: u64,
    transmit: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<DhtEvent>,
    next_maintenance: Instant,
    bootstrap_lookup: Option<LookupId>,
    next_bootstrap: Option<Instant>,
    bootstrap_backoff: Duration,
    stats: DhtStats,
}

impl Dht {
    /// A node that starts bootstrapping at once (from saved nodes and bootstrap addresses).
    pub fn new(config: DhtConfig, now: Instant) -> Self {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let own = config.id.unwrap_or_else(|| match config.external_ip {
            Some(ip) => bep42_id(ip, &mut rng),
            None => NodeId::random(&mut rng),
        });
        let secret = rng.gen();
        let mut dht = Dht {
            table: RoutingTable::new(own, now),
            tokens: Tokens::new(secret, now),
            store: PeerStore::new(config.peer_store),
            items: ItemStore::new(config.items, own),
            puts: BTreeMap::new(),
            infohash_sample: None,
            limiter: SourceLimiter::new(config.rate_limit),
            own,
            rng,
            pending: BTreeMap::new(),
            next_tid: 0,
            lookups: BTreeMap::new(),
            next_lookup: 0,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            next_maintenance: now + MAINTENANCE,
            bootstrap_lookup: None,
            next_bootstrap: None,
            bootstrap_backoff: MIN_BOOTSTRAP_BACKOFF,
            stats: DhtStats::default(),
            config,
        };
        dht.bootstrap(now);
        dht
    }

    pub fn id(&self) -> NodeId {
        self.own
    }

    pub fn stats(&self) -> DhtStats {
        DhtStats {
            nodes: self.table.len(),
            buckets: self.table.bucket_count(),
            torrents_stored: self.store.torrent_count(),
            peers_stored: self.store.peer_count(),
            items_stored: self.items.len(),
            lookups_running: self.lookups.len(),
            ..self.stats
        }
    }

    /// The nodes of the routing table (to save for the next start).
    pub fn routing_nodes(&self) -> Vec<NodeInfo> {
        self.table.nodes().collect()
    }

    // ---- lookups -----------------------------------------------------------------------

    /// Starts a get_peers lookup; found peers arrive as [`DhtEvent::Peers`].
    pub fn get_peers(&mut self, info_hash: NodeId, now: Instant) -> Option<LookupId> {
        self.start_lookup(info_hash, LookupKind::GetPeers, false, now)
    }

    /// Looks up `info_hash` and announces us on `port` (`None`: our UDP source port,
    /// `implied_port`), as a seed if `seed` (BEP 33), to the closest nodes; found peers
    /// are reported too.
    pub fn announce(
        &mut self,
        info_hash: NodeId,
        port: Option<u16>,
        seed: bool,
        now: Instant,
    ) -> Option<LookupId> {
        self.start_lookup(info_hash, LookupKind::Announce { port, seed }, false, now)
    }

    /// A BEP 33 scrape of `info_hash`: the union of the seeds' and peers' bloom filters
    /// of the nodes around it, in [`DhtEvent::LookupDone`]'s `scrape`.
    pub fn scrape(&mut self, info_hash: NodeId, now: Instant) -> Option<LookupId> {
        self.start_lookup(info_hash, LookupKind::Scrape, false, now)
    }

    /// Asks the node at `addr` for a sample of the info-hashes it stores (BEP 51), and for
    /// nodes near `target`; the answer arrives as [`DhtEvent::Sampled`].
    pub fn sample_infohashes(
        &mut self,
        addr: SocketAddr,
        target: NodeId,
        now: Instant,
    ) -> Option<LookupId> {
        if self.pending.len() >= self.config.max_pending {
            return None;
        }
        let lookup = LookupId(self.next_lookup);
        self.next_lookup += 1;
        let query = Query::SampleInfohashes { target };
        self.send_query(now, addr, None, query, Purpose::Sample { lookup });
        Some(lookup)
    }

    /// Looks up the immutable item stored under `target` (the SHA-1 of its value); the
    /// answer arrives as [`DhtEvent::ItemFound`], as soon as one node returns it.
    pub fn get_immutable(&mut self, target: NodeId, now: Instant) -> Option<LookupId> {
        self.start_item_lookup(target, None, None, now)
    }

    /// Looks up the mutable item of public key `key` under `salt` (empty for none); the
    /// highest version found arrives as [`DhtEvent::ItemFound`] when the lookup ends.
    pub fn get_mutable(&mut self, key: [u8; 32], salt: Vec<u8>, now: Instant) -> Option<LookupId> {
        let target = mutable_target(&key, &salt);
        self.start_item_lookup(target, Some(salt), None, now)
    }

    /// Stores an item on the closest nodes to its target, after a get that collects their
    /// write tokens (and, for a mutable item, the version already there). The outcome
    /// arrives as [`DhtEvent::ItemStored`].
    pub fn put_item(&mut self, request: PutRequest, now: Instant) -> Option<LookupId> {
        let target = request.target();
        let salt = match &request {
            PutRequest::Immutable(_) => None,
            PutRequest::Mutable { salt, .. } => Some(salt.clone()),
        };
        self.start_item_lookup(target, salt, Some(request), now)
    }

    fn start_item_lookup(
        &mut self,
        target: NodeId,
        salt: Option<Vec<u8>>,
        put: Option<PutRequest>,
        now: Instant,
    ) -> Option<LookupId> {
        let kind = if put.is_some() {
            LookupKind::PutItem
        } else {
            LookupKind::GetItem
        };
        let id = self.start_lookup_with(target, kind, false, now, |entry| {
            entry.item = Some(ItemSearch {
                salt,
                best: None,
                put,
            });
        })?;
        Some(id)
    }

    fn start_lookup(
        &mut self,
        target: NodeId,
        kind: LookupKind,
        internal: bool,
        now: Instant,
    ) -> Option<LookupId> {
        self.start_lookup_with(target, kind, internal, now, |_| {})
    }

    fn start_lookup_with(
        &mut self,
        target: NodeId,
        kind: LookupKind,
        internal: bool,
        now: Instant,
        setup: impl FnOnce(&mut LookupEntry),
    ) -> Option<LookupId> {
        if self.lookups.len() >= self.config.max_lookups {
            return None;
        }
        // More than k: if the closest ones have gone away, the lookup falls back on these
        // instead of ending empty-handed.
        let start = self.table.closest(&target, 4 * K, now);
        let seeds = if start.len() < K {
            self.bootstrap_addrs()
        } else {
            Vec::new()
        };
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        let lookup = Lookup::new(target, kind, self.own, self.config.alpha, &start, seeds);
        let mut entry = LookupEntry {
            lookup,
            internal,
            item: None,
        };
        setup(&mut entry);
        self.lookups.insert(id, entry);
        self.drive(id, now);
        Some(id)
    }

    fn bootstrap_addrs(&self) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = self.config.bootstrap.clone();
        addrs.extend(self.config.saved_nodes.iter().map(|n| n.addr));
        addrs.sort_unstable();
        addrs.dedup();
        addrs
    }

    fn bootstrap(&mut self, now: Instant) {
        if self.bootstrap_addrs().is_empty() && self.table.is_empty() {
            return;
        }
        self.bootstrap_lookup = self.start_lookup(self.own, LookupKind::FindNode, true, now);
    }

    /// Sends what the lookup wants sent; finishes it when it is done.
    fn drive(&mut self, id: LookupId, now: Instant) {
        loop {
            if self.pending.len() >= self.config.max_pending {
                return;
            }
            let Some(entry) = self.lookups.get_mut(&id) else {
                return;
            };
            let Some(ask) = entry.lookup.next_ask() else {
                break;
            };
            let target = entry.lookup.target;
            let query = match entry.lookup.kind {
                LookupKind::FindNode => Query::FindNode { target },
                LookupKind::GetItem | LookupKind::PutItem => Query::Get { target, seq: None },
                LookupKind::GetPeers | LookupKind::Announce { .. } | LookupKind::Scrape => {
                    Query::GetPeers {
                        info_hash: target,
                        scrape: entry.lookup.kind == LookupKind::Scrape,
                    }
                }
            };
            let purpose = Purpose::Lookup {
                lookup: id,
                round: ask.round,
            };
            self.send_query(now, ask.addr, ask.id, query, purpose);
        }
        if self.lookups.get(&id).is_some_and(|e| e.lookup.is_done()) {
            self.finish(id, now);
        }
    }

    fn finish(&mut self, id: LookupId, now: Instant) {
        let Some(entry) = self.lookups.remove(&id) else {
            return;
        };
        if self.bootstrap_lookup == Some(id) {
            self.bootstrap_lookup = None;
            if self.table.len() < K {
                self.next_bootstrap = Some(now + self.bootstrap_backoff);
                self.bootstrap_backoff = (self.bootstrap_backoff * 2).min(MAX_BOOTSTRAP_BACKOFF);
            } else {
                self.bootstrap_backoff = MIN_BOOTSTRAP_BACKOFF;
                // Kademlia's join: the self-lookup filled the buckets near us; a lookup in
                // each of the far buckets, where most lookups take their first hop, fills
                // those too.
                for depth in 0..JOIN_REFRESH_BUCKETS {
                    let target = self.own.random_with_prefix(depth, &mut self.rng);
                    self.start_lookup(target, LookupKind::FindNode, true, now);
                }
            }
        }
        let lookup = entry.lookup;
        let mut announced_to = 0;
        if let LookupKind::Announce { port, seed } = lookup.kind {
            for (node, token) in lookup.announce_targets() {
                let query = Query::AnnouncePeer {
                    info_hash: lookup.target,
                    port: port.unwrap_or(0),
                    implied_port: port.is_none(),
                    token,
                    seed,
                };
                let addr = node.addr;
                self.send_query(now, addr, Some(node.id), query, Purpose::Announce);
                announced_to += 1;
            }
        }
        if let Some(search) = entry.item {
            match search.put {
                None => self.events.push_back(DhtEvent::ItemFound {
                    lookup: id,
                    target: lookup.target,
                    item: search.best,
                    queries: lookup.queries,
                }),
                Some(request) => self.send_puts(id, &lookup, request, search.best, now),
            }
            return;
        }
        if !entry.internal {
            self.events.push_back(DhtEvent::LookupDone {
                lookup: id,
                target: lookup.target,
                peers_found: lookup.peers_found(),
                announced_to,
                queries: lookup.queries,
                first_peers_round: lookup.first_peers_round,
                scrape: (lookup.kind == LookupKind::Scrape).then(|| Box::new(lookup.scrape)),
            });
        }
    }

    /// The put phase: signs a mutable item one version above what the lookup found
    /// (unless the caller chose the version), and sends it to the closest nodes that
    /// gave a token.
    fn send_puts(
        &mut self,
        id: LookupId,
        lookup: &Lookup,
        request: PutRequest,
        found: Option<Item>,
        now: Instant,
    ) {
        let item = match request {
            PutRequest::Immutable(item) => Ok(item),
            PutRequest::Mutable {
                signer,
                salt,
                value,
                seq,
            } => {
                let found = found.and_then(|f| f.seq());
                let seq = seq.unwrap_or_else(|| found.map_or(1, |s| s.saturating_add(1)));
                signer.sign(&salt, seq, value).map(Item::Mutable)
            }
        };
        let (item, targets) = match item {
            Ok(item) => (Some(item), lookup.announce_targets()),
            // A version the caller chose that cannot be signed (negative): nothing to send.
            Err(_) => (None, Vec::new()),
        };
        let progress = PutProgress {
            target: lookup.target,
            seq: item.as_ref().and_then(Item::seq),
            asked: targets.len(),
            waiting: targets.len(),
            stored: 0,
            outdated: 0,
        };
        self.puts.insert(id, progress);
        if let Some(item) = item {
            for (node, token) in targets {
                let query = Query::Put {
                    item: item.clone(),
                    token,
                    cas: None,
                };
                let addr = node.addr;
                self.send_query(now, addr, Some(node.id), query, Purpose::Put { lookup: id });
            }
        }
        self.put_answered(id, None);
    }

    /// One put was answered (`Some(Ok)` stored, `Some(Err(code))` refused) or timed out;
    /// `None` only checks whether any are left.
    fn put_answered(&mut self, id: LookupId, answer: Option<Result<(), i64>>) {
        let Some(p) = self.puts.get_mut(&id) else {
            return;
        };
        if let Some(answer) = answer {
            p.waiting = p.waiting.saturating_sub(1);
            match answer {
                Ok(()) => p.stored += 1,
                Err(ERROR_CAS_MISMATCH | ERROR_SEQ_OUTDATED) => p.outdated += 1,
                Err(_) => {}
            }
        }
        if p.waiting == 0 {
            let p = self.puts.remove(&id).expect("present");
            self.events.push_back(DhtEvent::ItemStored {
                lookup: id,
                target: p.target,
                seq: p.seq,
                asked: p.asked,
                stored: p.stored,
                outdated: p.outdated,
            });
        }
    }

    // ---- sending -----------------------------------------------------------------------

    fn send_query(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        id: Option<NodeId>,
        query: Query,
        purpose: Purpose,
    ) {
        if self.pending.len() >= self.config.max_pending || !self.in_our_dht(addr) {
            match purpose {
                Purpose::Lookup { lookup, .. } => {
                    if let Some(e) = self.lookups.get_mut(&lookup) {
                        e.lookup.on_failure(addr, id);
                    }
                }
                Purpose::Put { lookup } => self.put_answered(lookup, Some(Err(0))),
                Purpose::Sample { lookup } => self.sampled(lookup, addr, None),
                Purpose::Ping | Purpose::Announce => {}
            }
            return;
        }
        let mut tid = self.next_tid;
        while self.pending.contains_key(&tid) {
            tid = tid.wrapping_add(1);
        }
        self.next_tid = tid.wrapping_add(1);
        let message = Message {
            tid: tid.to_be_bytes().to_vec(),
            sender: Some(self.own),
            your_ip: None,
            read_only: self.config.read_only,
            body: Body::Query(query),
        };
        self.pending.insert(
            tid,
            Pending {
                addr,
                id,
                purpose,
                deadline: now + self.config.query_timeout,
            },
        );
        self.send(addr, message.encode());
    }

    fn send(&mut self, addr: SocketAddr, packet: Vec<u8>) {
        if self.transmit.len() < self.config.max_transmit_queue {
            self.stats.packets_out += 1;
            self.transmit.push_back((addr, packet));
        }
    }

    fn reply(&mut self, to: SocketAddr, tid: Vec<u8>, body: Body) {
        let message = Message {
            tid,
            sender: matches!(body, Body::Response(_)).then_some(self.own),
            your_ip: Some(to),
            read_only: false,
            body,
        };
        self.send(to, message.encode());
    }

    // ---- driver interface --------------------------------------------------------------

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<DhtEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Instant {
        self.pending
            .values()
            .map(|p| p.deadline)
            .chain(self.next_bootstrap)
            .fold(self.next_maintenance, Instant::min)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(&t, _)| t)
            .collect();
        for tid in expired {
            if let Some(p) = self.pending.remove(&tid) {
                self.on_failure(p, now);
            }
        }
        if self.next_bootstrap.is_some_and(|t| now >= t) {
            self.next_bootstrap = None;
            self.bootstrap(now);
        }
        if now >= self.next_maintenance {
            self.next_maintenance = now + MAINTENANCE;
            self.maintain(now);
        }
        // Lookups held back by a full transaction table get their turn.
        let ids: Vec<LookupId> = self.lookups.keys().copied().collect();
        for id in ids {
            self.drive(id, now);
        }
    }

    fn maintain(&mut self, now: Instant) {
        let rng = &mut self.rng;
        self.tokens.maybe_rotate(now, || rng.gen());
        self.store.expire(now);
        self.items.expire(now);
        for node in self.table.to_ping(now, PINGS_PER_ROUND) {
            self.send_query(now, node.addr, Some(node.id), Query::Ping, Purpose::Ping);
        }
        // A table that thinned out (nodes went bad) rejoins through the bootstrap nodes.
        if self.table.len() < K && self.bootstrap_lookup.is_none() && self.next_bootstrap.is_none()
        {
            self.bootstrap(now);
        }
        for depth in self.table.stale_buckets(now) {
            let target = self.own.random_with_prefix(depth, &mut self.rng);
            self.start_lookup(target, LookupKind::FindNode, true, now);
        }
    }

    fn on_failure(&mut self, p: Pending, now: Instant) {
        if let Some(id) = p.id {
            self.table.failed(&id, p.addr, now);
        }
        self.on_refused(p, 0, now);
    }

    /// A query timed out (`code` 0) or was answered with error `code`.
    fn on_refused(&mut self, p: Pending, code: i64, now: Instant) {
        match p.purpose {
            Purpose::Lookup { lookup, .. } => {
                // The node is gone, or alive but refused; the lookup moves on without it.
                if let Some(e) = self.lookups.get_mut(&lookup) {
                    e.lookup.on_failure(p.addr, p.id);
                }
                self.drive(lookup, now);
            }
            Purpose::Put { lookup } => self.put_answered(lookup, Some(Err(code))),
            Purpose::Sample { lookup } => self.sampled(lookup, p.addr, None),
            Purpose::Ping | Purpose::Announce => {}
        }
    }

    fn sampled(&mut self, lookup: LookupId, from: SocketAddr, response: Option<Response>) {
        let (sample, nodes) = response.map_or((None, Vec::new()), |r| (r.sample, r.nodes));
        self.events.push_back(DhtEvent::Sampled {
            lookup,
            from,
            sample,
            nodes,
        });
    }

    /// Our sample for `sample_infohashes`: redrawn once [`SAMPLE_INTERVAL`] has passed, or
    /// sooner while it holds fewer than it could (the store has grown since).
    fn infohash_sample(&mut self, now: Instant) -> InfohashSample {
        let count = self.store.torrent_count().min(MAX_SAMPLES);
        let fresh = self.infohash_sample.as_ref().is_some_and(|(at, sample)| {
            now.saturating_duration_since(*at) < SAMPLE_INTERVAL && sample.len() >= count
        });
        if !fresh {
            let sample = self.store.sample(MAX_SAMPLES, &mut self.rng);
            self.infohash_sample = Some((now, sample));
        }
        let (at, samples) = self.infohash_sample.as_ref().expect("just drawn");
        let left = SAMPLE_INTERVAL.saturating_sub(now.saturating_duration_since(*at));
        InfohashSample {
            interval: (left.as_secs() as u32).min(MAX_SAMPLE_INTERVAL),
            num: self.store.torrent_count() as u64,
            samples: samples.clone(),
        }
    }

    /// Processes one received UDP packet.
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, packet: &[u8]) {
        self.stats.packets_in += 1;
        if !self.limiter.allow(from.ip(), now) {
            self.stats.rate_limited += 1;
            return;
        }
        let message = match Message::decode(packet) {
            Ok(m) => m,
            Err(KrpcError::BadQuery { .. }) if self.config.read_only => return,
            Err(KrpcError::BadQuery { tid, code, message }) => {
                self.stats.bad_packets += 1;
                let body = Body::Error {
                    code,
                    message: message.to_owned(),
                };
                self.reply(from, tid, body);
                return;
            }
            Err(_) => {
                self.stats.bad_packets += 1;
                return;
            }
        };
        if message.sender == Some(self.own) {
            // Our own id from someone else: a reflection or an attempt to poison tables.
            self.stats.bad_packets += 1;
            return;
        }
        match message.body {
            Body::Query(_) if self.config.read_only => {}
            Body::Query(query) => {
                let sender = message.sender.expect("queries always carry an id");
                self.on_query(now, from, message.tid, sender, message.read_only, query);
            }
            Body::Response(response) => {
                let sender = message.sender.expect("responses always carry an id");
                self.on_response(now, from, &message.tid, sender, message.read_only, response);
            }
            Body::Error { code, .. } => {
                if let Some(p) = self.take_pending(&message.tid, from) {
                    self.on_refused(p, code, now);
                }
            }
        }
    }

    fn take_pending(&mut self, tid: &[u8], from: SocketAddr) -> Option<Pending> {
        let tid = u16::from_be_bytes(tid.try_into().ok()?);
        match self.pending.get(&tid) {
            Some(p) if p.addr == from => self.pending.remove(&tid),
            _ => None,
        }
    }

    /// Whether `addr` belongs to our DHT: the IPv4 one, or the IPv6 one (BEP 32), which
    /// are separate networks with separate routing tables.
    fn in_our_dht(&self, addr: SocketAddr) -> bool {
        addr.ip().to_canonical().is_ipv6() == self.config.ipv6
    }

    /// Whether `id` at `addr` may enter the routing table.
    fn acceptable(&self, id: &NodeId, addr: SocketAddr) -> bool {
        self.in_our_dht(addr) && (!self.config.enforce_node_ids || bep42_valid(id, addr.ip()))
    }

    fn on_query(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tid: Vec<u8>,
        sender: NodeId,
        read_only: bool,
        query: Query,
    ) {
        self.stats.queries_answered += 1;
        let body = match query {
            Query::Ping => Body::Response(Response::default()),
            Query::FindNode { target } => Body::Response(Response {
                nodes: self.table.closest(&target, K, now),
                ..Response::default()
            }),
            Query::GetPeers { info_hash, scrape } => {
                let values = self
                    .store
                    .get(&info_hash, VALUES_PER_RESPONSE, now, &mut self.rng);
                Body::Response(Response {
                    nodes: self.table.closest(&info_hash, K, now),
                    values,
                    token: Some(self.tokens.make(from.ip())),
                    scrape: scrape
                        .then(|| self.store.filters(&info_hash, now))
                        .flatten()
                        .map(Box::new),
                    ..Response::default()
                })
            }
            Query::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
                seed,
            } => {
                if self.tokens.check(from.ip(), &token) {
                    let port = if implied_port { from.port() } else { port };
                    let peer = SocketAddr::new(from.ip(), port);
                    if self.store.announce(info_hash, peer, seed, now) {
                        Body::Response(Response::default())
                    } else {
                        Body::Error {
                            code: crate::krpc::ERROR_GENERIC,
                            message: "peer store full".to_owned(),
                        }
                    }
                } else {
                    bad_token()
                }
            }
            Query::SampleInfohashes { target } => Body::Response(Response {
                nodes: self.table.closest(&target, K, now),
                sample: Some(self.infohash_sample(now)),
                ..Response::default()
            }),
            Query::Get { target, seq } => {
                let item = match self.items.get(&target, now) {
                    // Asked for newer than what we hold: the version number alone says so.
                    Some(Item::Mutable(m)) if seq.is_some_and(|s| m.seq <= s) => ItemFields {
                        seq: Some(m.seq),
                        ..ItemFields::default()
                    },
                    Some(item) => ItemFields::of(item),
                    None => ItemFields::default(),
                };
                Body::Response(Response {
                    nodes: self.table.closest(&target, K, now),
                    token: Some(self.tokens.make(from.ip())),
                    item,
                    ..Response::default()
                })
            }
            Query::Put { item, token, cas } => {
                if !self.tokens.check(from.ip(), &token) {
                    bad_token()
                } else if matches!(&item, Item::Mutable(m) if !m.verify()) {
                    error(ERROR_BAD_SIGNATURE, "invalid signature")
                } else {
                    match self.items.put(item, cas, now) {
                        Ok(()) => Body::Response(Response::default()),
                        Err(PutRefused::CasMismatch { .. }) => {
                            error(ERROR_CAS_MISMATCH, "CAS mismatch, re-read and try again")
                        }
                        Err(PutRefused::Outdated { .. }) => {
                            error(ERROR_SEQ_OUTDATED, "sequence number less than current")
                        }
                    }
                }
            }
        };
        self.reply(from, tid, body);
        if read_only || !self.acceptable(&sender, from) {
            return;
        }
        if self.table.contains(&sender) {
            self.table.heard_query(&sender, from, now);
        } else if self.table.has_room_for(&sender, now)
            && self.pending.len() < self.config.max_pending / 2
        {
            // Learn it only once it answers us: a forged source address never does.
            self.send_query(now, from, Some(sender), Query::Ping, Purpose::Ping);
        }
    }

    fn on_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tid: &[u8],
        sender: NodeId,
        read_only: bool,
        response: Response,
    ) {
        let Some(p) = self.take_pending(tid, from) else {
            self.stats.bad_packets += 1;
            return;
        };
        if let Some(asked) = p.id.filter(|asked| *asked != sender) {
            // The node we knew at this address is gone; someone else lives there now.
            self.table.remove(&asked, from, now);
        }
        if !read_only && self.acceptable(&sender, from) {
            if let Insert::Full { ping } = self.table.heard_response(sender, from, now) {
                for n in ping {
                    let addr = n.addr;
                    self.send_query(now, addr, Some(n.id), Query::Ping, Purpose::Ping);
                }
            }
        }
        if let Purpose::Put { lookup } = p.purpose {
            self.put_answered(lookup, Some(Ok(())));
        }
        if let Purpose::Sample { lookup } = p.purpose {
            self.sampled(lookup, from, Some(response));
            return;
        }
        if let Purpose::Lookup { lookup, round } = p.purpose {
            let Some(entry) = self.lookups.get_mut(&lookup) else {
                return;
            };
            let mut response = response;
            let item_fields = std::mem::take(&mut response.item);
            let target = entry.lookup.target;
            let mut found_immutable = false;
            if let Some(search) = &mut entry.item {
                if search.offer(&target, item_fields) {
                    found_immutable = search.salt.is_none() && search.put.is_none();
                }
            }
            let fresh = entry
                .lookup
                .on_response(from, p.id, sender, round, response);
            if found_immutable {
                // An immutable item is the same wherever it is found: no need to go on.
                self.finish(lookup, now);
                return;
            }
            let info_hash = entry.lookup.target;
            if !fresh.is_empty() && !entry.internal {
                self.events.push_back(DhtEvent::Peers {
                    lookup,
                    info_hash,
                    peers: fresh,
                });
            }
            self.drive(lookup, now);
        }
    }

    /// Peers we store for `info_hash` (at most 50, as a `get_peers` answer would carry):
    /// lets the simulator see where announces landed.
    pub fn stored_peers(
        &self,
        info_hash: &NodeId,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Vec<SocketAddr> {
        self.store.get(info_hash, VALUES_PER_RESPONSE, now, rng)
    }
}

fn error(code: i64, message: &str) -> Body {
    Body::Error {
        code,
        message: message.to_owned(),
    }
}

fn bad_token() -> Body {
    error(ERROR_PROTOCOL, "bad token")
}
