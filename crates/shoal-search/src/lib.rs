//! Search without a central index (see docs/ARCHITECTURE.md, "Search").
//!
//! An *indexer* publishes a Prefix Hash Tree of keywords as BEP 44 mutable items signed
//! with its key, one item per tree node, the node's label in the salt. Anyone who knows
//! the indexer's public key can look keywords and prefixes up with plain DHT gets; only
//! the indexer can change its tree, so nobody else can overwrite or freeze its nodes.
//!
//! - [`keyword`]: text → keywords → 128-bit keys.
//! - [`label`]: a node's label (a key prefix) and its salt.
//! - [`node`]: a node's bencoded form (≤ 1000 bytes).
//! - [`build`]: the tree for a set of entries.
//! - [`query`]: exact and prefix lookups over any [`query::NodeSource`].
//! - [`similar`]: related names through MinHash keys in the same tree.
//! - [`dht`]: the DHT as a node source, and publishing a tree to it.
//! - [`local`]: the on-disk full-text index of what searches found.

pub mod build;
pub mod dht;
pub mod keyword;
pub mod label;
pub mod local;
pub mod node;
pub mod query;
pub mod similar;

pub use build::{entries_of, Tree};
pub use keyword::{query_terms, Term};
pub use node::{Entry, PhtNode};
pub use query::{lookup, prefix, Found, NodeSource, QueryError};
