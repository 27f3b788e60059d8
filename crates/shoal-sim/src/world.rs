//! The simulated world: hosts, links, the tracker, and the faults, on the event queue.
//!
//! # The network model
//!
//! - **Hosts** have an upload and a download capacity. A host's uplink sends one chunk
//!   (at most [`CHUNK`] bytes of a connection's byte stream) at a time, taking
//!   `len / upload` of virtual time, round-robin over its connections with bytes to send:
//!   the capacity is fair-shared among connections, as TCP flows sharing a bottleneck do.
//!   The receiver's downlink is a FIFO of capacity `download`: a chunk is delivered
//!   `len / download` after the downlink is free and the chunk has arrived.
//! - **Links** have a one-way latency: each host gets an access latency of
//!   `latency / 2 × U(0.5, 1.5)` and a link's latency is the sum of its two hosts', so the
//!   mean is `--latency` and links differ. A connection takes one round trip to set up.
//! - **TCP** is modelled by its effects, not its packets: bytes of a connection arrive in
//!   order; at most [`WINDOW`] bytes are on the wire undelivered (so a slow receiver
//!   pushes back and the sender's uplink serves its other connections); **loss** `p` is
//!   per 1460-byte segment, and a chunk that loses a segment is delayed one round trip per
//!   lost transmission (retransmission), holding back everything behind it on that
//!   connection. Congestion-window reduction after a loss is not modelled.
//! - **Crashes**: the process dies and the kernel resets its connections, so the other
//!   ends learn of it one latency later; the crashed host keeps its verified pieces
//!   (resume state) and rejoins later with new connections.
//! - **The tracker** answers a joining host with up to `dial` random online hosts, and
//!   again every 30 s while a host is downloading with fewer than `dial` connections (the
//!   engine, too, keeps dialling addresses it knows while below its connection limit).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_core::{Bitfield, PeerId};
use shoal_swarm::PeerKey;
use shoal_wire::HANDSHAKE_LEN;

use crate::content::Content;
use crate::queue::{transfer_time, EventQueue, Nanos, MILLISECOND, SECOND};
use crate::scenario::{Arrival, Scenario};
use crate::timeline::{Idle, Timeline, TimelineRow};
use crate::torrent::{Behaviour, Chunk, ConnId, Counters, HostId, Torrent, TorrentSetup};

/// The most bytes an uplink sends as one unit.
pub const CHUNK: usize = 64 * 1024;
/// The most bytes of one connection on the wire and not yet delivered.
pub const WINDOW: usize = 256 * 1024;
const MSS: usize = 1460;
const TICK: Nanos = SECOND;
const REANNOUNCE: Nanos = 30 * SECOND;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Seed,
    Leecher,
    Bad,
}

/// A host as the report sees it after the run.
#[derive(Debug, Clone)]
pub struct HostSummary {
    pub role: Role,
    pub joined_at: Option<Nanos>,
    pub completed_at: Option<Nanos>,
    pub counters: Counters,
}

struct Host {
    role: Role,
    up: u64,
    /// Half of the latency of any link to this host comes from here.
    access_latency: Nanos,
    torrent: Option<Torrent>,
    /// Verified pieces and bans, kept while offline.
    resume: Bitfield,
    banned: BTreeSet<HostId>,
    /// Bumped when the host goes offline; timers of an older incarnation are ignored.
    incarnation: u32,
    uplink_busy: bool,
    conns: BTreeSet<ConnId>,
    joined_at: Option<Nanos>,
    completed_at: Option<Nanos>,
    last_announce: Nanos,
    /// Counters of earlier incarnations.
    counters: Counters,
    /// Crash once at this time, for this long.
    crash: Option<(Nanos, Nanos)>,
    /// Since when, and why, the uplink of this downloading leecher has been idle.
    idle: Option<(Nanos, Idle)>,
    /// The torrent's served and first-copy bytes when the timeline last looked.
    served: (u64, u64),
}

/// A host's download capacity: a FIFO of `rate` bytes per second, free from `free` on.
struct Downlink {
    rate: u64,
    free: Nanos,
}

struct End {
    host: HostId,
    key: Option<PeerKey>,
    /// An accepting end buffers the peer's handshake until it is complete.
    handshake: Vec<u8>,
}

struct Conn {
    ends: [End; 2],
    open: bool,
    latency: Nanos,
    /// Delivery time of the last chunk towards each end (bytes arrive in order).
    last_delivery: [Nanos; 2],
    /// Bytes each end sent that are not delivered yet (the TCP window in use).
    in_flight: [usize; 2],
}

/// A chunk on the wire, by its slot in [`World::chunks`] (events stay small, and a slot's
/// room is reused by the next chunk).
type ChunkId = u32;

enum Event {
    Join(HostId),
    Crash(HostId),
    Leave(HostId),
    Tick(HostId, u32),
    UplinkFree(HostId, u32),
    /// The dialling end's connect completed.
    Connected(ConnId),
    Deliver {
        conn: ConnId,
        to: u8,
        chunk: ChunkId,
    },
    /// The other end closed; `to` learns of it.
    Closed {
        conn: ConnId,
        to: u8,
    },
}

/// How a run ended.
pub struct Outcome {
    pub hosts: Vec<HostSummary>,
    /// (banning host, banned host) for every ban.
    pub bans: Vec<(HostId, HostId)>,
    pub events: u64,
    pub end_time: Nanos,
    /// Empty unless the scenario asked for a timeline.
    pub timeline: Vec<TimelineRow>,
}

/// The simulated swarm. See the module documentation.
pub struct World {
    scenario: Scenario,
    content: Arc<Content>,
    queue: EventQueue<Event>,
    rng: StdRng,
    hosts: Vec<Host>,
    /// Each host's downlink, apart from the rest of the host: every chunk sent touches
    /// its receiver's, and a compact array of them stays in cache.
    downlinks: Vec<Downlink>,
    conns: Vec<Conn>,
    /// Chunks on the wire, and the slots free for the next ones.
    chunks: Vec<Chunk>,
    free_chunks: Vec<ChunkId>,
    /// Online hosts, in a deterministic order (for the tracker's random sample).
    online: Vec<HostId>,
    /// The instant that virtual time zero maps to (only differences are ever used).
    epoch: Instant,
    honest_left: usize,
    bans: Vec<(HostId, HostId)>,
    timeline: Option<Timeline>,
}

impl World {
    pub fn new(scenario: Scenario) -> Self {
        let mut rng = StdRng::seed_from_u64(scenario.rng_seed);
        let content = Arc::new(Content::generate(
            scenario.file_size,
            scenario.piece_size,
            scenario.rng_seed,
        ));
        let piece_count = content.piece_count() as usize;
        let mut queue = EventQueue::default();
        let latency = (scenario.latency_ms * MILLISECOND as f64) as Nanos;
        let mut hosts = Vec::new();
        let mut downlinks = Vec::new();
        let seeds = scenario.seeds;
        let slow = scenario.slow_peers();
        let total = seeds + scenario.peers;
        for id in 0..total {
            let leecher = id - seeds.min(id);
            let (role, up, down) = if id < seeds {
                (Role::Seed, scenario.seed_up, scenario.peer_down)
            } else if leecher < scenario.bad_peers {
                (Role::Bad, scenario.peer_up, scenario.peer_down)
            } else if leecher < scenario.bad_peers + slow {
                let class = scenario.slow_class.expect("slow peers come from a class");
                (Role::Leecher, class.up, class.down)
            } else {
                (Role::Leecher, scenario.peer_up, scenario.peer_down)
            };
            let access_latency = (latency as f64 / 2.0 * rng.gen_range(0.5..1.5)) as Nanos;
            downlinks.push(Downlink {
                rate: down,
                free: 0,
            });
            hosts.push(Host {
                role,
                up,
                access_latency,
                torrent: None,
                resume: if role == Role::Seed {
                    Bitfield::full(piece_count)
                } else {
                    Bitfield::new(piece_count)
                },
                banned: BTreeSet::new(),
                incarnation: 0,
                uplink_busy: false,
                conns: BTreeSet::new(),
                joined_at: None,
                completed_at: None,
                last_announce: 0,
                counters: Counters::default(),
                crash: None,
                idle: None,
                served: (0, 0),
            });
        }
        // Arrivals: seeds at zero, leechers at once or as a Poisson process. The roles
        // are shuffled into the arrival order so bad and slow peers are spread out.
        let mut leechers: Vec<HostId> = (seeds..total).collect();
        for i in (1..leechers.len()).rev() {
            leechers.swap(i, rng.gen_range(0..=i));
        }
        for seed in 0..seeds {
            queue.schedule(0, Event::Join(seed));
        }
        let mut t = 0.0f64;
        let mut arrivals = Vec::new();
        for &host in &leechers {
            if let Arrival::Poisson(rate) = scenario.arrival {
                t += -(1.0 - rng.gen::<f64>()).ln() / rate;
            }
            let at = (t * SECOND as f64) as Nanos;
            arrivals.push(at);
            queue.schedule(at, Event::Join(host));
        }
        // Churn: a fraction of honest leechers crash once during their download and
        // rejoin 5–30 s later.
        let honest: Vec<(HostId, Nanos)> = leechers
            .iter()
            .zip(&arrivals)
            .filter(|(h, _)| hosts[**h as usize].role == Role::Leecher)
            .map(|(h, at)| (*h, *at))
            .collect();
        let churners = (honest.len() as f64 * scenario.churn).round() as usize;
        let expected = scenario.lower_bound().t_min();
        for index in rand::seq::index::sample(&mut rng, honest.len(), churners).into_vec() {
            let (host, at) = honest[index];
            let after = rng.gen_range(0.05..0.9) * expected;
            let down = rng.gen_range(5.0..30.0);
            let crash_at = at + (after * SECOND as f64) as Nanos;
            hosts[host as usize].crash = Some((crash_at, (down * SECOND as f64) as Nanos));
            queue.schedule(crash_at, Event::Crash(host));
        }
        if let Some(leave) = scenario.seed_leaves_at {
            for seed in 0..seeds {
                queue.schedule((leave * SECOND as f64) as Nanos, Event::Leave(seed));
            }
        }
        let honest_left = honest.len();
        let timeline = scenario
            .timeline
            .map(|secs| Timeline::new((secs * SECOND as f64) as Nanos));
        World {
            scenario,
            content,
            queue,
            rng,
            hosts,
            downlinks,
            conns: Vec::new(),
            chunks: Vec::new(),
            free_chunks: Vec::new(),
            online: Vec::new(),
            epoch: Instant::now(),
            honest_left,
            bans: Vec::new(),
            timeline,
        }
    }

    /// Runs until every honest leecher has completed, nothing is left to happen, or the
    /// scenario's time limit.
    pub fn run(mut self) -> Outcome {
        let until = (self.scenario.max_time * SECOND as f64) as Nanos;
        while self.honest_left > 0 {
            let Some(event) = self.queue.pop(until) else {
                break;
            };
            self.handle(event);
        }
        let end_time = self.queue.now();
        for id in 0..self.hosts.len() {
            self.end_idle(id as HostId, end_time);
        }
        let timeline = match self.timeline.take() {
            Some(timeline) => {
                let leechers = self.hosts.iter().filter(|h| h.role != Role::Seed);
                let rate = leechers.clone().map(|h| h.up).sum();
                let piece_size = self.scenario.piece_size;
                timeline.rows(end_time, rate, leechers.count(), piece_size)
            }
            None => Vec::new(),
        };
        let hosts = self
            .hosts
            .iter_mut()
            .map(|h| {
                let mut counters = h.counters.clone();
                if let Some(t) = &h.torrent {
                    add_counters(&mut counters, &t.counters());
                }
                HostSummary {
                    role: h.role,
                    joined_at: h.joined_at,
                    completed_at: h.completed_at,
                    counters,
                }
            })
            .collect();
        Outcome {
            hosts,
            bans: self.bans,
            events: self.queue.processed(),
            end_time,
            timeline,
        }
    }

    fn instant(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.queue.now())
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Join(host) => self.join(host),
            Event::Crash(host) => {
                let down = self.hosts[host as usize].crash.map_or(SECOND, |(_, d)| d);
                self.go_offline(host);
                let at = self.queue.now() + down;
                self.queue.schedule(at, Event::Join(host));
            }
            Event::Leave(host) => self.go_offline(host),
            Event::Tick(host, incarnation) => self.tick(host, incarnation),
            Event::UplinkFree(host, incarnation) => self.uplink(host, incarnation),
            Event::Connected(conn) => self.connected(conn),
            Event::Deliver { conn, to, chunk } => self.deliver(conn, to, chunk),
            Event::Closed { conn, to } => {
                let end = &self.conns[conn as usize].ends[to as usize];
                let (host, key) = (end.host, end.key);
                let instant = self.instant();
                if let (Some(torrent), Some(key)) =
                    (self.hosts[host as usize].torrent.as_mut(), key)
                {
                    torrent.on_closed(key, instant);
                    self.after(host);
                }
            }
        }
    }

    fn join(&mut self, id: HostId) {
        let now = self.queue.now();
        let instant = self.instant();
        let scenario = &self.scenario;
        let host = &mut self.hosts[id as usize];
        let mut random = [0u8; 12];
        random[..4].copy_from_slice(&id.to_be_bytes());
        random[4..8].copy_from_slice(&host.incarnation.to_be_bytes());
        host.torrent = Some(Torrent::new(
            TorrentSetup {
                content: self.content.clone(),
                check: scenario.hash_check,
                peer_id: PeerId::shoal(random),
                have: host.resume.clone(),
                banned: std::mem::take(&mut host.banned),
                rng_seed: scenario.rng_seed ^ (u64::from(id) << 32 | u64::from(host.incarnation)),
                behaviour: if host.role == Role::Bad {
                    Behaviour::Corrupt
                } else {
                    Behaviour::Honest
                },
                max_connections: scenario.max_connections as usize,
                first_key: u64::from(host.incarnation) << 40,
                super_seed: scenario.super_seed && host.role == Role::Seed,
                initial_rate: scenario.initial_rate as f64,
            },
            instant,
        ));
        host.joined_at.get_or_insert(now);
        // A new torrent's counters start from zero.
        host.served = (0, 0);
        host.uplink_busy = false;
        let incarnation = host.incarnation;
        self.online.push(id);
        self.announce(id);
        let first_tick = now + self.rng.gen_range(0..TICK);
        self.queue
            .schedule(first_tick, Event::Tick(id, incarnation));
        self.after(id);
    }

    fn go_offline(&mut self, id: HostId) {
        self.end_idle(id, self.queue.now());
        let host = &mut self.hosts[id as usize];
        let Some(torrent) = host.torrent.take() else {
            return;
        };
        host.resume = torrent.have().clone();
        host.banned = torrent.banned().clone();
        add_counters(&mut host.counters, &torrent.counters());
        host.incarnation += 1;
        host.uplink_busy = false;
        let conns: Vec<ConnId> = host.conns.iter().copied().collect();
        for conn in conns {
            self.close(conn, id);
        }
        if let Some(position) = self.online.iter().position(|&h| h == id) {
            self.online.remove(position);
        }
    }

    /// The tracker: dial random online hosts, up to `dial` connections.
    fn announce(&mut self, id: HostId) {
        self.hosts[id as usize].last_announce = self.queue.now();
        let Some(torrent) = &self.hosts[id as usize].torrent else {
            return;
        };
        let want = (self.scenario.dial as usize).saturating_sub(torrent.peer_count());
        if want == 0 || self.online.len() < 2 {
            return;
        }
        let connected: BTreeSet<HostId> = self.hosts[id as usize]
            .conns
            .iter()
            .map(|&c| self.other(c, id))
            .collect();
        let banned = torrent.banned();
        let sample = (want * 2).min(self.online.len());
        let picks: Vec<HostId> = rand::seq::index::sample(&mut self.rng, self.online.len(), sample)
            .into_iter()
            .map(|i| self.online[i])
            .filter(|&h| h != id && !connected.contains(&h) && !banned.contains(&h))
            .take(want)
            .collect();
        for remote in picks {
            self.dial(id, remote);
        }
    }

    fn other(&self, conn: ConnId, id: HostId) -> HostId {
        let ends = &self.conns[conn as usize].ends;
        if ends[0].host == id {
            ends[1].host
        } else {
            ends[0].host
        }
    }

    fn dial(&mut self, from: HostId, to: HostId) {
        let conn = self.conns.len() as ConnId;
        let latency =
            self.hosts[from as usize].access_latency + self.hosts[to as usize].access_latency;
        let end = |host| End {
            host,
            key: None,
            handshake: Vec::new(),
        };
        self.conns.push(Conn {
            ends: [end(from), end(to)],
            open: true,
            latency,
            last_delivery: [0, 0],
            in_flight: [0, 0],
        });
        self.hosts[from as usize].conns.insert(conn);
        self.hosts[to as usize].conns.insert(conn);
        let at = self.queue.now() + 2 * latency;
        self.queue.schedule(at, Event::Connected(conn));
    }

    /// Closes a connection from `by`'s side; the other end learns of it one latency later.
    fn close(&mut self, conn: ConnId, by: HostId) {
        let c = &mut self.conns[conn as usize];
        if !c.open {
            return;
        }
        c.open = false;
        let (a, b) = (c.ends[0].host, c.ends[1].host);
        let to = if a == by { 1 } else { 0 };
        let at = self.queue.now() + c.latency;
        self.hosts[a as usize].conns.remove(&conn);
        self.hosts[b as usize].conns.remove(&conn);
        self.queue.schedule(at, Event::Closed { conn, to });
    }

    fn connected(&mut self, conn: ConnId) {
        let c = &self.conns[conn as usize];
        if !c.open {
            return;
        }
        let (from, to) = (c.ends[0].host, c.ends[1].host);
        if self.hosts[to as usize].torrent.is_none() {
            // Refused: nobody listens there any more.
            self.close(conn, to);
            return;
        }
        let instant = self.instant();
        let round_trip = Duration::from_nanos(2 * c.latency);
        let Some(torrent) = self.hosts[from as usize].torrent.as_mut() else {
            return;
        };
        match torrent.add_peer(to, conn, None, round_trip, instant) {
            Some(key) => self.conns[conn as usize].ends[0].key = Some(key),
            None => self.close(conn, from),
        }
        self.after(from);
    }

    fn deliver(&mut self, conn: ConnId, to: u8, id: ChunkId) {
        let mut chunk = std::mem::take(&mut self.chunks[id as usize]);
        self.deliver_chunk(conn, to, &chunk);
        chunk.clear();
        self.chunks[id as usize] = chunk;
        self.free_chunks.push(id);
    }

    fn deliver_chunk(&mut self, conn: ConnId, to: u8, chunk: &Chunk) {
        let instant = self.instant();
        let c = &mut self.conns[conn as usize];
        if !c.open {
            return;
        }
        let from = 1 - to as usize;
        let (sender, sender_key) = (c.ends[from].host, c.ends[from].key);
        let round_trip = Duration::from_nanos(2 * c.latency);
        // Only a sender whose window was full can have a connection waiting for it.
        let window_was_full = c.in_flight[from] >= WINDOW;
        c.in_flight[from] -= chunk.len();
        let end = &mut c.ends[to as usize];
        let receiver = end.host;
        match end.key {
            Some(key) => {
                if let Some(torrent) = self.hosts[receiver as usize].torrent.as_mut() {
                    torrent.on_data(key, chunk.segments(), instant);
                }
            }
            None => {
                // The accepting side: wait for the whole handshake, then take the peer.
                for segment in chunk.segments() {
                    end.handshake.extend_from_slice(segment);
                }
                if end.handshake.len() >= HANDSHAKE_LEN {
                    let buffered = Bytes::from(std::mem::take(&mut end.handshake));
                    let accepted = self.hosts[receiver as usize]
                        .torrent
                        .as_mut()
                        .and_then(|t| {
                            let key = t.add_peer(
                                sender,
                                conn,
                                Some(&buffered[..HANDSHAKE_LEN]),
                                round_trip,
                                instant,
                            )?;
                            t.on_data(key, &[buffered.slice(HANDSHAKE_LEN..)], instant);
                            Some(key)
                        });
                    match accepted {
                        Some(key) => self.conns[conn as usize].ends[to as usize].key = Some(key),
                        None => self.close(conn, receiver),
                    }
                }
            }
        }
        self.after(receiver);
        if window_was_full {
            if let (Some(torrent), Some(key)) =
                (self.hosts[sender as usize].torrent.as_mut(), sender_key)
            {
                torrent.window_opened(key);
            }
            self.after(sender);
        }
    }

    fn tick(&mut self, id: HostId, incarnation: u32) {
        let now = self.queue.now();
        let instant = self.instant();
        let host = &mut self.hosts[id as usize];
        if host.incarnation != incarnation {
            return;
        }
        let Some(torrent) = host.torrent.as_mut() else {
            return;
        };
        torrent.tick(instant);
        let reannounce = !torrent.is_complete()
            && torrent.peer_count() < self.scenario.dial as usize
            && now >= host.last_announce + REANNOUNCE;
        if reannounce {
            self.announce(id);
        }
        self.after(id);
        self.queue
            .schedule(now + TICK, Event::Tick(id, incarnation));
    }

    /// The uplink is free: send the next chunk, if any connection has one. Small chunks
    /// (requests, `have`s) of several connections go out back to back under one event.
    fn uplink(&mut self, id: HostId, incarnation: u32) {
        let host = &self.hosts[id as usize];
        if host.incarnation != incarnation || host.torrent.is_none() {
            return;
        }
        let mut sent = self.queue.now();
        let mut total = 0;
        while total < CHUNK {
            let chunk = self.free_chunks.pop().unwrap_or_else(|| {
                self.chunks.push(Chunk::default());
                (self.chunks.len() - 1) as ChunkId
            });
            let host = &mut self.hosts[id as usize];
            let torrent = host.torrent.as_mut().expect("checked above");
            let conns = &self.conns;
            let window_open = |conn: ConnId| {
                let c = &conns[conn as usize];
                c.in_flight[usize::from(c.ends[0].host != id)] < WINDOW
            };
            let Some(conn) =
                torrent.next_chunk(CHUNK, window_open, &mut self.chunks[chunk as usize])
            else {
                self.free_chunks.push(chunk);
                break;
            };
            let len = self.chunks[chunk as usize].len();
            let c = &mut self.conns[conn as usize];
            c.in_flight[usize::from(c.ends[0].host != id)] += len;
            total += len;
            sent += transfer_time(len, host.up);
            self.transmit(conn, id, sent, chunk);
        }
        if let Some(timeline) = &mut self.timeline {
            let now = self.queue.now();
            let host = &mut self.hosts[id as usize];
            let torrent = host.torrent.as_ref().expect("checked above");
            if host.role != Role::Seed {
                timeline.leecher_sent(now, total as u64);
                if total == 0 && !torrent.is_complete() {
                    let why = match torrent.idle_reason() {
                        Idle::Unasked => self.why_unasked(id),
                        why => why,
                    };
                    self.hosts[id as usize].idle = Some((now, why));
                }
            } else {
                let counters = torrent.counters();
                let (served, first) = host.served;
                let new = counters.first_copy - first;
                timeline.seed_served(now, new, counters.uploaded - served - new);
                host.served = (counters.uploaded, counters.first_copy);
            }
        }
        if total == 0 {
            self.hosts[id as usize].uplink_busy = false;
        } else {
            self.queue
                .schedule(sent, Event::UplinkFree(id, incarnation));
        }
    }

    /// Why the peers `id` unchokes ask it for nothing, from their side of each
    /// connection: the reason closest to ending the idle among them (a piece one of them
    /// could ask for, then a request on the wire, then all on their way from elsewhere).
    fn why_unasked(&self, id: HostId) -> Idle {
        let Some(torrent) = self.hosts[id as usize].torrent.as_ref() else {
            return Idle::Unasked;
        };
        let ours = torrent.have();
        let mut why = Idle::Elsewhere;
        for (remote, conn) in torrent.unchoked_and_interested() {
            let c = &self.conns[conn as usize];
            let sending = c.in_flight[usize::from(c.ends[0].host != remote)] > 0;
            let theirs = self.hosts[remote as usize].torrent.as_ref();
            match theirs.and_then(|t| t.why_not_asking(conn, ours, sending)) {
                Some(Idle::Unasked) => return Idle::Unasked,
                Some(Idle::InTransit) => why = Idle::InTransit,
                _ => {}
            }
        }
        why
    }

    /// Closes a leecher's idle stretch on the timeline, if one is open.
    fn end_idle(&mut self, id: HostId, now: Nanos) {
        let host = &mut self.hosts[id as usize];
        if let (Some((since, why)), Some(timeline)) = (host.idle.take(), &mut self.timeline) {
            timeline.idled(since, now, why);
        }
    }

    /// `chunk` left `from`'s uplink at `sent` on `conn`: schedule its delivery.
    fn transmit(&mut self, conn: ConnId, from: HostId, sent: Nanos, chunk: ChunkId) {
        let c = &self.conns[conn as usize];
        if !c.open {
            self.chunks[chunk as usize].clear();
            self.free_chunks.push(chunk);
            return;
        }
        let len = self.chunks[chunk as usize].len();
        let to = usize::from(c.ends[0].host == from);
        let receiver = c.ends[to].host;
        let latency = c.latency;
        let arrival = sent + latency + self.retransmission_delay(len, latency);
        let down = &mut self.downlinks[receiver as usize];
        let received = arrival.max(down.free) + transfer_time(len, down.rate);
        down.free = received;
        let c = &mut self.conns[conn as usize];
        let at = received.max(c.last_delivery[to]);
        c.last_delivery[to] = at;
        self.queue.schedule(
            at,
            Event::Deliver {
                conn,
                to: to as u8,
                chunk,
            },
        );
    }

    /// Extra delay of a chunk of `len` bytes from lost segments: one round trip per
    /// lost transmission of its worst segment.
    fn retransmission_delay(&mut self, len: usize, latency: Nanos) -> Nanos {
        let p = self.scenario.loss;
        if p <= 0.0 {
            return 0;
        }
        let segments = len.div_ceil(MSS) as i32;
        let mut hit = 1.0 - (1.0 - p).powi(segments);
        let mut delay = 0;
        // Bounded: a segment lost ten times in a row would have reset the connection.
        for _ in 0..10 {
            if self.rng.gen::<f64>() >= hit {
                break;
            }
            delay += 2 * latency;
            hit = p;
        }
        delay
    }

    /// After a host's torrent ran: close what it dropped, note bans and completion, and
    /// start its uplink if it has bytes to send.
    fn after(&mut self, id: HostId) {
        let now = self.queue.now();
        let host = &mut self.hosts[id as usize];
        let Some(torrent) = host.torrent.as_mut() else {
            return;
        };
        let closed = torrent.take_closed();
        for banned in torrent.take_bans() {
            self.bans.push((id, banned));
        }
        let mut ends_idle = false;
        if host.completed_at.is_none() && host.role != Role::Seed && torrent.is_complete() {
            host.completed_at = Some(now);
            ends_idle = true;
            if host.role == Role::Leecher {
                self.honest_left -= 1;
                if let Some(timeline) = &mut self.timeline {
                    timeline.completed(now);
                }
            }
        }
        if !host.uplink_busy && torrent.wants_uplink() {
            host.uplink_busy = true;
            ends_idle = true;
            self.queue
                .schedule(now, Event::UplinkFree(id, host.incarnation));
        }
        if ends_idle {
            self.end_idle(id, now);
        }
        for conn in closed {
            self.close(conn, id);
        }
    }
}

fn add_counters(total: &mut Counters, more: &Counters) {
    total.uploaded += more.uploaded;
    total.duplicate += more.duplicate;
    total.corrupt += more.corrupt;
    total.corrupt_accepted += more.corrupt_accepted;
    total.first_copy += more.first_copy;
}
