//! An iterative Kademlia lookup: ask the closest known nodes for closer ones, several
//! at a time, until the [`K`] closest that answered are all asked.
//!
//! A lookup only decides *whom to ask next*; the node ([`crate::Dht`]) sends the queries
//! and feeds answers and timeouts back. Candidates are kept sorted by distance to the
//! target and bounded ([`MAX_CANDIDATES`]), so a node answering with thousands of fake
//! contacts cannot grow it. Every candidate remembers the *round* in which it was learnt
//! (the round of the node that named it, plus one), which is how lookups count hops.

use crate::id::NodeId;
use crate::krpc::{NodeInfo, Response, ScrapeFilters};
use crate::routing::K;
use std::collections::HashSet;
use std::net::SocketAddr;

/// Candidates kept per lookup; farther ones beyond this are forgotten.
pub const MAX_CANDIDATES: usize = 64;
/// Queries one lookup sends at most, however the network answers.
pub const MAX_QUERIES: u32 = 128;
/// Distinct peers one lookup remembers (to report each once).
const MAX_PEERS: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// What a lookup is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKind {
    /// find_node: fill the routing table (bootstrap, bucket refresh).
    FindNode,
    /// get_peers: collect peers.
    GetPeers,
    /// get_peers, then announce_peer to the closest nodes that gave us a token.
    /// `port: None` asks them to use the UDP source port (`implied_port`); `seed` says
    /// we seed the torrent (BEP 33).
    Announce { port: Option<u16>, seed: bool },
    /// get_peers with `scrape` (BEP 33): the union of the nodes' bloom filters.
    Scrape,
    /// BEP 44 get: the item stored under the target.
    GetItem,
    /// BEP 44 get, then put to the closest nodes that gave us a token.
    PutItem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Fresh,
    InFlight,
    Answered,
    Failed,
}

#[derive(Debug, Clone)]
struct Candidate {
    id: NodeId,
    addr: SocketAddr,
    distance: NodeId,
    state: State,
    token: Option<Vec<u8>>,
    round: u32,
}

/// One query the lookup wants sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    pub addr: SocketAddr,
    /// `None` for a bootstrap address whose node id we do not know yet.
    pub id: Option<NodeId>,
    pub round: u32,
}

pub struct Lookup {
    pub target: NodeId,
    pub kind: LookupKind,
    own: NodeId,
    alpha: usize,
    candidates: Vec<Candidate>,
    /// Bootstrap addresses (ids unknown); asked first.
    seeds: Vec<SocketAddr>,
    seen: HashSet<NodeId>,
    peers: HashSet<SocketAddr>,
    in_flight: usize,
    pub queries: u32,
    pub responses: u32,
    /// The round of the first answer that carried peers.
    pub first_peers_round: Option<u32>,
    /// A scrape's filters so far, ORed over the answers (BEP 33).
    pub scrape: ScrapeFilters,
}

impl Lookup {
    pub fn new(
        target: NodeId,
        kind: LookupKind,
        own: NodeId,
        alpha: usize,
        start: &[NodeInfo],
        seeds: Vec<SocketAddr>,
    ) -> Self {
        let mut lookup = Lookup {
            target,
            kind,
            own,
            alpha: alpha.max(1),
            candidates: Vec::new(),
            seeds,
            seen: HashSet::new(),
            peers: HashSet::new(),
            in_flight: 0,
            queries: 0,
            responses: 0,
            first_peers_round: None,
            scrape: ScrapeFilters::default(),
        };
        for n in start {
            lookup.add_candidate(*n, 1);
        }
        lookup
    }

    fn add_candidate(&mut self, n: NodeInfo, round: u32) {
        if n.id == self.own || !self.seen.insert(n.id) {
            return;
        }
        let distance = n.id.distance(&self.target);
        let pos = self.candidates.partition_point(|c| c.distance < distance);
        if pos >= MAX_CANDIDATES {
            return;
        }
        self.candidates.insert(
            pos,
            Candidate {
                id: n.id,
                addr: n.addr,
                distance,
                state: State::Fresh,
                token: None,
                round,
            },
        );
        if self.candidates.len() > MAX_CANDIDATES {
            // Drop the farthest that is not waiting for an answer.
            if let Some(i) = self
                .candidates
                .iter()
                .rposition(|c| c.state != State::InFlight)
            {
                self.candidates.remove(i);
            }
        }
    }

    /// The next query to send, if the lookup wants one now.
    pub fn next_ask(&mut self) -> Option<Ask> {
        if self.in_flight >= self.alpha || self.queries >= MAX_QUERIES {
            return None;
        }
        if let Some(addr) = self.seeds.pop() {
            self.in_flight += 1;
            self.queries += 1;
            return Some(Ask {
                addr,
                id: None,
                round: 1,
            });
        }
        let i = self.next_fresh()?;
        let c = &mut self.candidates[i];
        c.state = State::InFlight;
        self.in_flight += 1;
        self.queries += 1;
        Some(Ask {
            addr: c.addr,
            id: Some(c.id),
            round: c.round,
        })
    }

    /// Index of the closest unasked candidate among the K closest that have not failed.
    fn next_fresh(&self) -> Option<usize> {
        self.candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.state != State::Failed)
            .take(K)
            .find(|(_, c)| c.state == State::Fresh)
            .map(|(i, _)| i)
    }

    fn find(&self, addr: SocketAddr, id: Option<NodeId>) -> Option<usize> {
        self.candidates.iter().position(|c| {
            c.state == State::InFlight && c.addr == addr && id.is_none_or(|id| id == c.id)
        })
    }

    /// An answer from `addr` (node `id`): returns the peers not reported before.
    pub fn on_response(
        &mut self,
        addr: SocketAddr,
        asked_id: Option<NodeId>,
        id: NodeId,
        round: u32,
        response: Response,
    ) -> Vec<SocketAddr> {
        let Response {
            nodes,
            values,
            token,
            item: _,
            sample: _,
            scrape,
        } = response;
        if self.kind == LookupKind::Scrape {
            match scrape {
                Some(filters) => {
                    self.scrape.seeds.union(&filters.seeds);
                    self.scrape.peers.union(&filters.peers);
                }
                // A node without BEP 33: its values count as peers (the BEP's advice).
                None => values.iter().for_each(|p| self.scrape.peers.insert(p.ip())),
            }
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        self.responses += 1;
        let matched = asked_id.and_then(|asked| self.find(addr, Some(asked)).map(|i| (asked, i)));
        match matched {
            Some((asked, i)) if asked == id => {
                self.candidates[i].state = State::Answered;
                self.candidates[i].token = token;
            }
            other => {
                // Another node now answers at the address we asked (the one we meant is
                // gone): that position failed, and the responder joins as itself. Also
                // the way bootstrap nodes, whose ids we did not know, become candidates.
                if let Some((_, i)) = other {
                    self.candidates[i].state = State::Failed;
                }
                self.mark_answered(id, addr, round, token);
            }
        }
        for n in nodes.iter().take(2 * K) {
            self.add_candidate(*n, round + 1);
        }
        if !values.is_empty() && self.first_peers_round.is_none() {
            self.first_peers_round = Some(round);
        }
        let mut fresh = Vec::new();
        for p in values {
            if self.peers.len() < MAX_PEERS && self.peers.insert(p) {
                fresh.push(p);
            }
        }
        fresh
    }

    fn mark_answered(&mut self, id: NodeId, addr: SocketAddr, round: u32, token: Option<Vec<u8>>) {
        if !self.candidates.iter().any(|c| c.id == id) {
            self.seen.remove(&id);
            self.add_candidate(NodeInfo { id, addr }, round);
        }
        if let Some(c) = self.candidates.iter_mut().find(|c| c.id == id) {
            c.state = State::Answered;
            c.token = token;
        }
    }

    /// A query to `addr` went unanswered (or was answered with an error).
    pub fn on_failure(&mut self, addr: SocketAddr, asked_id: Option<NodeId>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if asked_id.is_some() {
            if let Some(i) = self.find(addr, asked_id) {
                self.candidates[i].state = State::Failed;
            }
        }
    }

    /// Done when nothing is in flight and nothing is left to ask.
    pub fn is_done(&self) -> bool {
        self.in_flight == 0
            && (self.queries >= MAX_QUERIES
                || (self.seeds.is_empty() && self.next_fresh().is_none()))
    }

    /// The closest answered nodes that gave a token: where to announce or put.
    pub fn announce_targets(&self) -> Vec<(NodeInfo, Vec<u8>)> {
        self.candidates
            .iter()
            .filter(|c| c.state == State::Answered)
            .filter_map(|c| {
                c.token.clone().map(|t| {
                    (
                        NodeInfo {
                            id: c.id,
                            addr: c.addr,
                        },
                        t,
                    )
                })
            })
            .take(K)
            .collect()
    }

    pub fn peers_found(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(b: u8) -> NodeInfo {
        let mut id = [0u8; 20];
        id[0] = b;
        NodeInfo {
            id: NodeId(id),
            addr: SocketAddr::new([10, 0, 0, b].into(), 1000),
        }
    }

    #[test]
    fn asks_alpha_at_a_time_closest_first_and_converges() {
        let target = NodeId([0; 20]);
        let own = NodeId([0xff; 20]);
        let start: Vec<NodeInfo> = (100..110).map(node).collect();
        let mut l = Lookup::new(target, LookupKind::GetPeers, own, 3, &start, vec![]);
        let asks: Vec<Ask> = std::iter::from_fn(|| l.next_ask()).collect();
        assert_eq!(asks.len(), 3);
        assert_eq!(asks[0].id, Some(node(100).id));
        // The first answers with closer nodes: they are asked next.
        let fresh = l.on_response(
            asks[0].addr,
            asks[0].id,
            node(100).id,
            1,
            Response {
                nodes: vec![node(1), node(2)],
                values: vec!["1.2.3.4:5".parse().unwrap()],
                token: Some(b"tok".to_vec()),
                ..Response::default()
            },
        );
        assert_eq!(fresh.len(), 1);
        assert_eq!(l.first_peers_round, Some(1));
        let next = l.next_ask().unwrap();
        assert_eq!(next.id, Some(node(1).id));
        assert_eq!(next.round, 2);
        // Everyone else fails or answers with nothing new; the lookup ends.
        for a in [asks[1], asks[2]] {
            l.on_failure(a.addr, a.id);
        }
        l.on_response(next.addr, next.id, node(1).id, 2, Response::default());
        while let Some(a) = l.next_ask() {
            l.on_response(a.addr, a.id, a.id.unwrap(), a.round, Response::default());
        }
        assert!(l.is_done());
        assert_eq!(l.announce_targets().len(), 1);
        assert!(l.queries <= 12);
    }

    #[test]
    fn candidates_are_bounded() {
        let mut l = Lookup::new(
            NodeId([0; 20]),
            LookupKind::FindNode,
            NodeId([0xff; 20]),
            3,
            &[],
            vec!["10.9.9.9:1".parse().unwrap()],
        );
        let a = l.next_ask().unwrap();
        assert_eq!(a.id, None);
        let many: Vec<NodeInfo> = (0..=255).map(node).collect();
        let response = Response {
            nodes: many,
            ..Response::default()
        };
        l.on_response(a.addr, None, NodeId([7; 20]), 1, response);
        assert!(l.candidates.len() <= MAX_CANDIDATES);
    }
}
