//! The routing table (BEP 5): buckets of [`K`] nodes (more in the four farthest, see
//! [`bucket_capacity`]), split as they fill, finer
//! near our own id.
//!
//! Bucket `i` (for `i` below the last) holds nodes whose id shares exactly `i` leading
//! bits with ours; the last bucket holds everything closer. Only the last bucket splits
//! (into itself and a new last one), so the table is a list, at most 160 long.
//!
//! Node states follow BEP 5: *good* if it answered one of our queries in the last 15
//! minutes (or answered once and queried us in that time), *bad* after failing
//! [`MAX_FAILURES`] queries in a row, *questionable* otherwise. A full bucket replaces a
//! bad node at once; with questionable nodes it keeps the newcomer in a small
//! replacement cache and asks the caller to ping them, and a node that then fails is
//! replaced from the cache. Only nodes that answered us are ever inserted, so a forged
//! source address cannot put itself in the table.

use crate::id::NodeId;
use crate::krpc::NodeInfo;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Bucket size (Kademlia's k).
pub const K: usize = 8;

/// How many nodes bucket `depth` holds: k, except that the four farthest buckets (each
/// covering half, a quarter, … of the id space) hold 16, 8, 4 and 2 times as many. Those
/// are the buckets most lookups start in, so a bigger sample there puts the first hop
/// several bits closer to the target (libtorrent's "extended routing table" does the same);
/// it costs at most 232 extra nodes per table.
pub fn bucket_capacity(depth: usize) -> usize {
    match depth {
        0 => 16 * K,
        1 => 8 * K,
        2 => 4 * K,
        3 => 2 * K,
        _ => K,
    }
}
/// A node is questionable when it has been quiet for this long.
pub const QUESTIONABLE_AFTER: Duration = Duration::from_secs(15 * 60);
/// A bucket untouched for this long is refreshed with a lookup inside its range.
pub const REFRESH_AFTER: Duration = Duration::from_secs(15 * 60);
/// Unanswered queries in a row after which a node is bad.
pub const MAX_FAILURES: u8 = 2;

#[derive(Debug, Clone)]
pub struct Node {
    pub id: NodeId,
    pub addr: SocketAddr,
    last_response: Instant,
    last_query: Option<Instant>,
    pinged_at: Option<Instant>,
    failures: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Good,
    Questionable,
    Bad,
}

impl Node {
    fn new(id: NodeId, addr: SocketAddr, now: Instant) -> Self {
        Node {
            id,
            addr,
            last_response: now,
            last_query: None,
            pinged_at: None,
            failures: 0,
        }
    }

    pub fn status(&self, now: Instant) -> Status {
        if self.failures >= MAX_FAILURES {
            return Status::Bad;
        }
        let recent = |t: Instant| now.saturating_duration_since(t) < QUESTIONABLE_AFTER;
        if recent(self.last_response) || self.last_query.is_some_and(recent) {
            Status::Good
        } else {
            Status::Questionable
        }
    }

    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            id: self.id,
            addr: self.addr,
        }
    }
}

#[derive(Debug, Clone)]
struct Bucket {
    nodes: Vec<Node>,
    replacements: Vec<Node>,
    last_changed: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Self {
        Bucket {
            nodes: Vec::new(),
            replacements: Vec::new(),
            last_changed: now,
        }
    }
}

/// What happened to a node that answered us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    Inserted,
    Refreshed,
    /// The bucket is full of live nodes; the newcomer waits in the replacement cache.
    /// These questionable nodes should be pinged (a failure makes room).
    Full {
        ping: Vec<NodeInfo>,
    },
    /// Another node already holds this id at a different address (kept: the first one
    /// proved itself), or the id is our own.
    Rejected,
}

pub struct RoutingTable {
    own: NodeId,
    buckets: Vec<Bucket>,
}

impl RoutingTable {
    pub fn new(own: NodeId, now: Instant) -> Self {
        RoutingTable {
            own,
            buckets: vec![Bucket::new(now)],
        }
    }

    pub fn own_id(&self) -> NodeId {
        self.own
    }

    fn index(&self, id: &NodeId) -> usize {
        self.own.common_prefix_len(id).min(self.buckets.len() - 1)
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.nodes.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    pub fn contains(&self, id: &NodeId) -> bool {
        let b = &self.buckets[self.index(id)];
        b.nodes.iter().any(|n| n.id == *id)
    }

    /// Whether a node with this id would get a place now (room, a split, or a bad node to
    /// replace): worth pinging an unknown node that queried us.
    pub fn has_room_for(&self, id: &NodeId, now: Instant) -> bool {
        if *id == self.own || self.contains(id) {
            return false;
        }
        let i = self.index(id);
        let b = &self.buckets[i];
        b.nodes.len() < bucket_capacity(i)
            || (i == self.buckets.len() - 1 && self.buckets.len() < 160)
            || b.nodes.iter().any(|n| n.status(now) == Status::Bad)
    }

    /// Records that `id` at `addr` answered one of our queries.
    pub fn heard_response(&mut self, id: NodeId, addr: SocketAddr, now: Instant) -> Insert {
        if id == self.own {
            return Insert::Rejected;
        }
        loop {
            let i = self.index(&id);
            let can_split = i == self.buckets.len() - 1 && self.buckets.len() < 160;
            let bucket = &mut self.buckets[i];
            if let Some(n) = bucket.nodes.iter_mut().find(|n| n.id == id) {
                if n.addr != addr {
                    return Insert::Rejected;
                }
                n.last_response = now;
                n.failures = 0;
                n.pinged_at = None;
                bucket.last_changed = now;
                return Insert::Refreshed;
            }
            if bucket.nodes.len() < bucket_capacity(i) {
                bucket.nodes.push(Node::new(id, addr, now));
                bucket.replacements.retain(|n| n.id != id);
                bucket.last_changed = now;
                return Insert::Inserted;
            }
            if can_split {
                self.split(now);
                continue;
            }
            if let Some(bad) = bucket
                .nodes
                .iter_mut()
                .find(|n| n.status(now) == Status::Bad)
            {
                *bad = Node::new(id, addr, now);
                bucket.last_changed = now;
                return Insert::Inserted;
            }
            bucket.replacements.retain(|n| n.id != id);
            if bucket.replacements.len() >= K {
                bucket.replacements.remove(0);
            }
            bucket.replacements.push(Node::new(id, addr, now));
            let ping = bucket
                .nodes
                .iter_mut()
                .filter(|n| n.status(now) == Status::Questionable && n.pinged_at.is_none())
                .map(|n| {
                    n.pinged_at = Some(now);
                    n.info()
                })
                .collect();
            return Insert::Full { ping };
        }
    }

    fn split(&mut self, now: Instant) {
        let depth = self.buckets.len() - 1;
        let own = self.own;
        let mut next = Bucket::new(now);
        let last = self.buckets.last_mut().expect("the table has a bucket");
        let deeper = |n: &Node| own.common_prefix_len(&n.id) > depth;
        next.nodes = last.nodes.iter().filter(|n| deeper(n)).cloned().collect();
        last.nodes.retain(|n| !deeper(n));
        next.replacements = last
            .replacements
            .iter()
            .filter(|n| deeper(n))
            .cloned()
            .collect();
        last.replacements.retain(|n| !deeper(n));
        self.buckets.push(next);
    }

    /// Records a query from a node we know (it keeps it good).
    pub fn heard_query(&mut self, id: &NodeId, addr: SocketAddr, now: Instant) {
        let i = self.index(id);
        if let Some(n) = self.buckets[i]
            .nodes
            .iter_mut()
            .find(|n| n.id == *id && n.addr == addr)
        {
            n.last_query = Some(now);
        }
    }

    /// Records an unanswered query to `addr`; a node that turns bad is replaced from its
    /// bucket's cache when there is one.
    pub fn failed(&mut self, id: &NodeId, addr: SocketAddr, now: Instant) {
        let i = self.index(id);
        let bucket = &mut self.buckets[i];
        let Some(pos) = bucket
            .nodes
            .iter()
            .position(|n| n.id == *id && n.addr == addr)
        else {
            return;
        };
        let node = &mut bucket.nodes[pos];
        node.failures = node.failures.saturating_add(1);
        node.pinged_at = None;
        if node.status(now) == Status::Bad {
            if let Some(replacement) = bucket.replacements.pop() {
                bucket.nodes[pos] = replacement;
                bucket.last_changed = now;
            }
        }
    }

    /// Forgets `id` at `addr` at once (another node answered there), promoting a
    /// replacement if the bucket has one.
    pub fn remove(&mut self, id: &NodeId, addr: SocketAddr, now: Instant) {
        let i = self.index(id);
        let bucket = &mut self.buckets[i];
        if let Some(pos) = bucket
            .nodes
            .iter()
            .position(|n| n.id == *id && n.addr == addr)
        {
            bucket.nodes.remove(pos);
            if let Some(replacement) = bucket.replacements.pop() {
                bucket.nodes.push(replacement);
            }
            bucket.last_changed = now;
        }
    }

    /// The `n` nodes closest to `target` that are not bad.
    pub fn closest(&self, target: &NodeId, n: usize, now: Instant) -> Vec<NodeInfo> {
        let mut all: Vec<&Node> = self
            .buckets
            .iter()
            .flat_map(|b| b.nodes.iter())
            .filter(|node| node.status(now) != Status::Bad)
            .collect();
        // Partial selection: answering a query must not cost a full sort of the table.
        if n == 0 {
            return Vec::new();
        }
        if all.len() > n {
            all.select_nth_unstable_by_key(n - 1, |node| node.id.distance(target));
            all.truncate(n);
        }
        all.sort_unstable_by_key(|node| node.id.distance(target));
        all.into_iter().map(Node::info).collect()
    }

    /// Questionable nodes not yet pinged, to check they are still there (at most `max`).
    pub fn to_ping(&mut self, now: Instant, max: usize) -> Vec<NodeInfo> {
        let mut out = Vec::new();
        for node in self.buckets.iter_mut().flat_map(|b| b.nodes.iter_mut()) {
            if out.len() >= max {
                break;
            }
            if node.status(now) == Status::Questionable && node.pinged_at.is_none() {
                node.pinged_at = Some(now);
                out.push(node.info());
            }
        }
        out
    }

    /// Depths of buckets untouched for [`REFRESH_AFTER`]; each is marked as refreshed.
    pub fn stale_buckets(&mut self, now: Instant) -> Vec<usize> {
        let mut out = Vec::new();
        for (depth, b) in self.buckets.iter_mut().enumerate() {
            if now.saturating_duration_since(b.last_changed) >= REFRESH_AFTER {
                b.last_changed = now;
                out.push(depth);
            }
        }
        out
    }

    /// Every node in the table, for saving.
    pub fn nodes(&self) -> impl Iterator<Item = NodeInfo> + '_ {
        self.buckets
            .iter()
            .flat_map(|b| b.nodes.iter().map(Node::info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::new(std::net::Ipv4Addr::from(0x0a00_0000 + i).into(), 6881)
    }

    #[test]
    fn buckets_split_and_stay_bounded() {
        let now = Instant::now();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let own = NodeId::random(&mut rng);
        let mut table = RoutingTable::new(own, now);
        for i in 0..5000 {
            table.heard_response(NodeId::random(&mut rng), addr(i), now);
        }
        assert!(table.bucket_count() > 5, "{}", table.bucket_count());
        for (depth, b) in table.buckets.iter().enumerate() {
            assert!(b.nodes.len() <= bucket_capacity(depth) && b.replacements.len() <= K);
            if depth + 1 < table.bucket_count() {
                assert!(b
                    .nodes
                    .iter()
                    .all(|n| own.common_prefix_len(&n.id) == depth));
            }
        }
        // Nodes near us are all kept: the closest known are really close.
        let target = own.random_with_prefix(3, &mut rng);
        let closest = table.closest(&target, K, now);
        assert_eq!(closest.len(), K);
        assert!(closest.iter().all(|n| own.common_prefix_len(&n.id) == 3));
    }

    #[test]
    fn bad_nodes_are_replaced_questionable_ones_pinged() {
        let t0 = Instant::now();
        let own = NodeId([0; 20]);
        let mut table = RoutingTable::new(own, t0);
        // Fill the bucket of ids starting with bit 1 (depth 0) after one split.
        let far = |i: u8| {
            let mut id = [0xff; 20];
            id[19] = i;
            NodeId(id)
        };
        let near = |i: u8| {
            let mut id = [0; 20];
            id[19] = i + 1;
            NodeId(id)
        };
        let cap = bucket_capacity(0);
        for i in 0..cap as u8 {
            table.heard_response(far(i), addr(u32::from(i)), t0);
        }
        table.heard_response(near(0), addr(100), t0); // splits: far ones now in bucket 0
        assert_eq!(
            table.heard_response(far(200), addr(200), t0),
            Insert::Full { ping: vec![] },
            "good nodes are kept and nobody needs a ping"
        );
        let later = t0 + QUESTIONABLE_AFTER;
        let Insert::Full { ping } = table.heard_response(far(201), addr(201), later) else {
            panic!("expected a full bucket");
        };
        assert_eq!(ping.len(), cap);
        // The first one fails twice: it is replaced by the latest cached newcomer.
        table.failed(&far(0), addr(0), later);
        assert!(table.contains(&far(0)));
        table.failed(&far(0), addr(0), later);
        assert!(!table.contains(&far(0)));
        assert!(table.contains(&far(201)));
        // A node answering from another address cannot take over an id.
        assert_eq!(
            table.heard_response(far(1), addr(999), later),
            Insert::Rejected
        );
        assert_eq!(table.heard_response(own, addr(1), later), Insert::Rejected);
        assert!(!table.stale_buckets(later).is_empty());
        assert!(table.stale_buckets(later).is_empty());
    }
}
