//! The tokio runtime around shoal's sans-IO cores.
//!
//! One task per torrent (the *torrent actor*, [`torrent`]) owns every decision-making
//! core: the [`PeerSession`](shoal_wire::PeerSession) of each connection, the piece
//! picker, the choker and smart-ban bookkeeping, and the torrent's files. Connection tasks
//! only move bytes: a reader per socket sends what it reads to the actor, a writer per
//! socket writes what the actor queues. Keeping all state in one task means no locks on
//! the hot path and the same order of decisions a simulator would make.
//!
//! Each torrent has a disk thread (`disk`) that holds incoming blocks until their piece
//! is complete, hashes pieces in pairs and writes each with one vectored write, so the
//! actor only parses and decides while the other core hashes and writes. The initial
//! recheck runs on all cores in a blocking thread before the actor starts.

mod addresses;
mod budget;
mod connection;
mod disk;
mod encryption;
mod holepunch;
pub mod ip_filter;
mod listener;
pub mod lsd;
pub mod metadata;
mod rate;
mod round_trip;
mod seeding;
mod stats;
pub mod stream;
pub mod torrent;
mod web_seed;

pub use addresses::PeerSource;
pub use budget::{ConnectionBudget, ConnectionPermit};
pub use encryption::Encryption;
pub use ip_filter::{IpFilter, IpFilterError};
pub use listener::SharedListener;
pub use rate::RateLimit;
pub use seeding::SeedLimit;
pub use stats::{PeerInfo, Stats};
pub use stream::{Dialer, PeerStream, Transport, UtpMode};
pub use torrent::{
    run, Check, EngineError, EngineEvent, Outcome, Readers, TorrentConfig, Wanted,
    PEER_LIST_INTERVAL,
};

/// Peers found while a torrent runs, a batch at a time.
pub type PeerFeed = tokio::sync::mpsc::UnboundedReceiver<Found>;

/// A batch of peers: where they came from, and the swarm they are in (a hybrid torrent
/// has two, one under each info-hash; a peer found in its v2 swarm is dialled naming
/// that one, as libtorrent does, since it may know no other yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub source: PeerSource,
    pub swarm: shoal_core::InfoHash,
    pub peers: Vec<std::net::SocketAddr>,
}
