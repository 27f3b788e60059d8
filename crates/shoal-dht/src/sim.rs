//! A deterministic simulation of a whole DHT: N [`Dht`] nodes — the same code as the
//! real node — on a virtual clock and a simulated network with latency (and optional
//! loss), for lookup success and cost under churn.
//!
//! Scenario, each phase on virtual time:
//! 1. **Join**: nodes join one after another over [`SimParams::join_secs`], each
//!    bootstrapping from a random node that joined before it; then the network settles.
//! 2. **Announce**: `announces` random nodes announce one info-hash each.
//! 3. **Churn**: a fraction `churn` of all nodes crashes (no goodbye: their entries stay
//!    in other tables until lookups time out on them), and as many fresh nodes join.
//!    With [`SimParams::reannounce`], the announcers still alive then announce again, as
//!    every client does periodically (libtorrent every 15 minutes); without it, an
//!    info-hash whose every storing node crashed is simply lost.
//! 4. **Lookups**: `lookups` random live nodes look up random info-hashes whose
//!    announcer is alive (a crashed announcer's address is not a peer to find).
//!
//! The [`Report`] gives the success rate, the round in which the first peer arrived
//! (1 = an answer from a node in the searcher's own table), queries per lookup, and
//! wall time. The same seed gives the same run.

use crate::{Dht, DhtConfig, DhtEvent, LookupId, NodeId, RateLimitConfig};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct SimParams {
    pub nodes: usize,
    /// Fraction of nodes that crash (and are replaced by fresh ones) before the lookups.
    pub churn: f64,
    pub seed: u64,
    pub announces: usize,
    pub lookups: usize,
    /// One-way latency is uniform in this range (milliseconds).
    pub latency_ms: (u64, u64),
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Virtual seconds over which the initial nodes join.
    pub join_secs: u64,
    /// Surviving announcers announce again after the churn.
    pub reannounce: bool,
}

impl Default for SimParams {
    fn default() -> Self {
        SimParams {
            nodes: 10_000,
            churn: 0.5,
            seed: 1,
            announces: 200,
            lookups: 1000,
            latency_ms: (10, 100),
            loss: 0.0,
            join_secs: 120,
            reannounce: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub nodes: usize,
    pub churn: f64,
    pub seed: u64,
    pub lookups: usize,
    pub found: usize,
    /// Announced info-hashes whose announcer survived but whose every storing node
    /// crashed (counted before any re-announce).
    pub lost_announces: usize,
    pub median_rounds: u32,
    pub p90_rounds: u32,
    pub mean_queries: f64,
    pub median_queries: u32,
    /// Median virtual time from start to the first peer (ms).
    pub median_ms_to_peer: u64,
    pub packets: u64,
    /// Mean routing-table size of the live nodes at the end.
    pub mean_table: f64,
    pub virtual_secs: u64,
    pub wall_secs: f64,
}

impl Report {
    pub fn success_rate(&self) -> f64 {
        self.found as f64 / self.lookups.max(1) as f64
    }
}

enum Kind {
    Packet { to: u32, from: u32, data: Vec<u8> },
    Timer { node: u32 },
}

struct Event {
    at: Instant,
    seq: u64,
    kind: Kind,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Event {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A lookup the scenario watches.
struct Watched {
    info_hash: NodeId,
    expected: SocketAddr,
    started: Instant,
    found_at: Option<Instant>,
    done: Option<(Option<u32>, u32)>,
}

struct Sim {
    params: SimParams,
    rng: StdRng,
    nodes: Vec<Option<Dht>>,
    timers: Vec<Option<Instant>>,
    queue: BinaryHeap<Reverse<Event>>,
    seq: u64,
    now: Instant,
    start: Instant,
    packets: u64,
    watched: HashMap<(u32, LookupId), Watched>,
}

fn addr(i: u32) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(0x0a00_0001 + i), 6881))
}

fn index(a: SocketAddr) -> Option<u32> {
    match a {
        SocketAddr::V4(v4) if v4.port() == 6881 => u32::from(*v4.ip()).checked_sub(0x0a00_0001),
        _ => None,
    }
}

impl Sim {
    fn push(&mut self, at: Instant, kind: Kind) {
        self.seq += 1;
        self.queue.push(Reverse(Event {
            at,
            seq: self.seq,
            kind,
        }));
    }

    fn config(&mut self, bootstrap: Option<u32>) -> DhtConfig {
        DhtConfig {
            bootstrap: bootstrap.map(addr).into_iter().collect(),
            seed: self.rng.gen(),
            // Each simulated node hears from few sources; keep the per-node maps small.
            rate_limit: RateLimitConfig {
                max_sources: 64,
                ..RateLimitConfig::default()
            },
            ..DhtConfig::default()
        }
    }

    fn add_node(&mut self, bootstrap: Option<u32>) -> u32 {
        let config = self.config(bootstrap);
        let i = self.nodes.len() as u32;
        self.nodes.push(Some(Dht::new(config, self.now)));
        self.timers.push(None);
        self.after_call(i);
        i
    }

    fn replace_node(&mut self, i: u32, bootstrap: u32) {
        let config = self.config(Some(bootstrap));
        self.nodes[i as usize] = Some(Dht::new(config, self.now));
        self.timers[i as usize] = None;
        self.after_call(i);
    }

    fn random_live(&mut self) -> u32 {
        loop {
            let i = self.rng.gen_range(0..self.nodes.len());
            if self.nodes[i].is_some() {
                return i as u32;
            }
        }
    }

    /// Moves a node's output into the network and its events to the watch list, and
    /// schedules its next timer.
    fn after_call(&mut self, i: u32) {
        let (lo, hi) = self.params.latency_ms;
        let mut sends = Vec::new();
        let mut events = Vec::new();
        let wake = {
            let Some(node) = self.nodes[i as usize].as_mut() else {
                return;
            };
            while let Some(out) = node.poll_transmit() {
                sends.push(out);
            }
            while let Some(e) = node.poll_event() {
                events.push(e);
            }
            node.poll_timeout()
        };
        for (to, data) in sends {
            self.packets += 1;
            let Some(j) = index(to) else { continue };
            if self.params.loss > 0.0 && self.rng.gen_bool(self.params.loss) {
                continue;
            }
            let delay = Duration::from_millis(self.rng.gen_range(lo..=hi.max(lo)));
            self.push(
                self.now + delay,
                Kind::Packet {
                    to: j,
                    from: i,
                    data,
                },
            );
        }
        for e in events {
            match e {
                DhtEvent::Peers { lookup, peers, .. } => {
                    if let Some(w) = self.watched.get_mut(&(i, lookup)) {
                        if w.found_at.is_none() && peers.contains(&w.expected) {
                            w.found_at = Some(self.now);
                        }
                    }
                }
                DhtEvent::LookupDone {
                    lookup,
                    first_peers_round,
                    queries,
                    ..
                } => {
                    if let Some(w) = self.watched.get_mut(&(i, lookup)) {
                        w.done = Some((first_peers_round, queries));
                    }
                }
                // This scenario stores no items and samples nothing.
                DhtEvent::ItemFound { .. }
                | DhtEvent::ItemStored { .. }
                | DhtEvent::Sampled { .. } => {}
            }
        }
        let wake = wake.max(self.now);
        if self.timers[i as usize].is_none_or(|t| wake < t || t < self.now) {
            self.timers[i as usize] = Some(wake);
            self.push(wake, Kind::Timer { node: i });
        }
    }

    /// Runs events until virtual time `until` (or until `stop` says so, checked after
    /// each event).
    fn run_until(&mut self, until: Instant, mut stop: impl FnMut(&Sim) -> bool) {
        while let Some(Reverse(peek)) = self.queue.peek() {
            if peek.at > until || stop(self) {
                break;
            }
            let Reverse(event) = self.queue.pop().expect("peeked");
            self.now = event.at;
            match event.kind {
                Kind::Packet { to, from, data } => {
                    if let Some(node) = self.nodes[to as usize].as_mut() {
                        node.handle_packet(self.now, addr(from), &data);
                        self.after_call(to);
                    }
                }
                Kind::Timer { node } => {
                    if self.timers[node as usize] != Some(event.at) {
                        continue;
                    }
                    self.timers[node as usize] = None;
                    if let Some(n) = self.nodes[node as usize].as_mut() {
                        n.handle_timeout(self.now);
                        self.after_call(node);
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }
}

/// Runs the scenario described in the module documentation.
pub fn run(params: &SimParams) -> Report {
    let wall = Instant::now();
    let start = Instant::now();
    let mut sim = Sim {
        rng: StdRng::seed_from_u64(params.seed),
        params: params.clone(),
        nodes: Vec::with_capacity(params.nodes),
        timers: Vec::with_capacity(params.nodes),
        queue: BinaryHeap::new(),
        seq: 0,
        now: start,
        start,
        packets: 0,
        watched: HashMap::new(),
    };
    let n = params.nodes.max(2);

    // 1. Join.
    sim.add_node(None);
    let step = Duration::from_secs(params.join_secs).as_nanos() as u64 / n as u64;
    for i in 1..n {
        let at = start + Duration::from_nanos(step * i as u64);
        sim.run_until(at, |_| false);
        let boot = sim.rng.gen_range(0..i) as u32;
        sim.add_node(Some(boot));
    }
    let settle = sim.now + Duration::from_secs(30);
    sim.run_until(settle, |_| false);

    // 2. Announce.
    let mut announced: Vec<(u32, NodeId, SocketAddr)> = Vec::new();
    for a in 0..params.announces {
        let who = sim.random_live();
        let info_hash = NodeId::random(&mut sim.rng);
        let port = 1000 + a as u16;
        let now = sim.now;
        if let Some(node) = sim.nodes[who as usize].as_mut() {
            node.announce(info_hash, Some(port), false, now);
        }
        sim.after_call(who);
        let SocketAddr::V4(v4) = addr(who) else {
            unreachable!("simulated addresses are IPv4")
        };
        announced.push((who, info_hash, SocketAddr::new((*v4.ip()).into(), port)));
    }
    let until = sim.now + Duration::from_secs(60);
    sim.run_until(until, |_| false);

    // 3. Churn: crash a fraction, then as many fresh nodes join over 30 s.
    let crash = ((n as f64) * params.churn.clamp(0.0, 1.0)) as usize;
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(&mut sim.rng);
    let crashed: Vec<u32> = order[..crash].to_vec();
    for &i in &crashed {
        sim.nodes[i as usize] = None;
        sim.timers[i as usize] = None;
    }
    // Fresh nodes take the crashed nodes' slots (and addresses), with new ids.
    let rejoin_start = sim.now;
    for (k, &i) in crashed.iter().enumerate() {
        let at = rejoin_start + Duration::from_millis(30_000 * k as u64 / crash.max(1) as u64);
        sim.run_until(at, |_| false);
        let boot = sim.random_live();
        sim.replace_node(i, boot);
    }
    let until = sim.now + Duration::from_secs(30);
    sim.run_until(until, |_| false);
    // An announcer that crashed was replaced by a fresh node at its address: its peer is
    // gone. The others' info-hashes may have lost every storing node.
    let crashed: std::collections::HashSet<u32> = crashed.into_iter().collect();
    announced.retain(|(who, _, _)| !crashed.contains(who));
    let lost_announces = announced
        .iter()
        .filter(|(_, info_hash, _)| {
            let now = sim.now;
            let mut probe = StdRng::seed_from_u64(0);
            sim.nodes
                .iter()
                .flatten()
                .all(|n| n.stored_peers(info_hash, now, &mut probe).is_empty())
        })
        .count();
    if params.reannounce {
        for &(who, info_hash, peer) in &announced {
            let now = sim.now;
            if let Some(node) = sim.nodes[who as usize].as_mut() {
                node.announce(info_hash, Some(peer.port()), false, now);
            }
            sim.after_call(who);
        }
        let until = sim.now + Duration::from_secs(30);
        sim.run_until(until, |_| false);
    }

    // 4. Lookups, spread over 10 s.
    let lookups_start = sim.now;
    for l in 0..params.lookups {
        let at = lookups_start + Duration::from_millis(10_000 * l as u64 / params.lookups as u64);
        sim.run_until(at, |_| false);
        let who = sim.random_live();
        let Some(&(_, info_hash, expected)) = announced.choose(&mut sim.rng) else {
            break;
        };
        let now = sim.now;
        let Some(node) = sim.nodes[who as usize].as_mut() else {
            continue;
        };
        if let Some(id) = node.get_peers(info_hash, now) {
            sim.watched.insert(
                (who, id),
                Watched {
                    info_hash,
                    expected,
                    started: now,
                    found_at: None,
                    done: None,
                },
            );
        }
        sim.after_call(who);
    }
    let until = sim.now + Duration::from_secs(120);
    sim.run_until(until, |s| s.watched.values().all(|w| w.done.is_some()));

    let mut rounds = Vec::new();
    let mut queries = Vec::new();
    let mut to_peer = Vec::new();
    let mut found = 0;
    for w in sim.watched.values() {
        debug_assert!(w.info_hash != NodeId::default());
        if let Some(at) = w.found_at {
            found += 1;
            to_peer.push(at.duration_since(w.started).as_millis() as u64);
        }
        if let Some((round, q)) = w.done {
            queries.push(q);
            if w.found_at.is_some() {
                rounds.push(round.unwrap_or(0));
            }
        }
    }
    rounds.sort_unstable();
    queries.sort_unstable();
    to_peer.sort_unstable();
    let pick = |v: &[u32], q: f64| {
        v.get(((v.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    Report {
        nodes: n,
        churn: params.churn,
        seed: params.seed,
        lookups: sim.watched.len(),
        found,
        lost_announces,
        median_rounds: pick(&rounds, 0.5),
        p90_rounds: pick(&rounds, 0.9),
        mean_queries: queries.iter().map(|&q| f64::from(q)).sum::<f64>()
            / queries.len().max(1) as f64,
        median_queries: pick(&queries, 0.5),
        median_ms_to_peer: to_peer.get(to_peer.len() / 2).copied().unwrap_or(0),
        packets: sim.packets,
        mean_table: {
            let live: Vec<usize> = sim
                .nodes
                .iter()
                .flatten()
                .map(|n| n.stats().nodes)
                .collect();
            live.iter().sum::<usize>() as f64 / live.len().max(1) as f64
        },
        virtual_secs: sim.now.duration_since(sim.start).as_secs(),
        wall_secs: wall.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_network_under_churn_finds_announced_peers() {
        let params = SimParams {
            nodes: 300,
            churn: 0.5,
            seed: 7,
            announces: 60,
            lookups: 150,
            join_secs: 20,
            ..SimParams::default()
        };
        let report = run(&params);
        assert_eq!(report.lookups, 150);
        assert!(report.success_rate() >= 0.95, "{report:?}");
        assert!(report.median_rounds <= 4, "{report:?}");
        // Deterministic: the same seed gives the same figures.
        let again = run(&params);
        assert_eq!(
            (again.found, again.packets, again.median_queries),
            (report.found, report.packets, report.median_queries)
        );
    }
}
