//! The Mainline DHT (BEP 5) with BEP 42 node ids and BEP 33 scrapes: a sans-IO Kademlia node ([`Dht`]) and
//! a tokio UDP driver ([`driver`]) that all torrents of a process share.
//!
//! Layers, bottom up:
//! - [`id`]: node ids, XOR distance, BEP 42 id generation and checking.
//! - [`krpc`]: KRPC messages ⇄ bytes, the one place where packets are validated.
//! - [`routing`]: the bucket list (k = 8, splitting), node states, replacement caches.
//! - [`lookup`]: an iterative lookup (α queries in flight, stops when the k closest
//!   answered).
//! - `tokens`, `peer_store`, `rate_limit`: write tokens from a rotating secret, the
//!   bounded store of announced peers, per-IP limits on incoming packets.
//! - [`item`], `item_store`: BEP 44 items (immutable, and mutable ones signed with
//!   ed25519) and the bounded store of those other nodes `put` here.
//! - [`Dht`]: ties them together behind `handle_packet` / `handle_timeout` /
//!   `poll_transmit` / `poll_event` / `poll_timeout`.
//! - [`scrape`]: BEP 33's bloom filters of seeds and peers, for scrapes without a tracker.
//! - [`persist`]: the routing table saved for the next start.
//! - [`driver`]: the socket, the clock, and subscriptions ("peers for this info-hash").

pub mod driver;
pub mod fuzzing;
pub mod id;
pub mod item;
mod item_store;
pub mod krpc;
pub mod lookup;
mod node;
mod peer_store;
pub mod persist;
mod rate_limit;
pub mod routing;
pub mod scrape;
pub mod sim;
mod tokens;

pub use id::NodeId;
pub use item::{Item, ItemError, ItemSigner, MutableItem};
pub use item_store::ItemStoreLimits;
pub use lookup::LookupId;
pub use node::{Dht, DhtConfig, DhtEvent, DhtStats, PutRequest};
pub use peer_store::PeerStoreLimits;
pub use rate_limit::RateLimitConfig;

#[cfg(test)]
mod node_tests;
