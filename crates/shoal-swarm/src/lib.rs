//! Per-torrent swarm decisions: which blocks to ask which peer for ([`PiecePicker`]), how
//! many requests to keep in flight ([`queue_depth`]), whom to upload to ([`Choker`]),
//! whom to ban after a piece fails its hash check ([`SmartBan`]), which piece an initial
//! seed reveals next ([`SuperSeed`]), which pieces a peer suggested ([`Suggestions`]), and
//! which connection's blocks go on the uplink first ([`PieceProgress`]);
//! [`PeerLink`], a connected peer's wire session with the decisions that concern only it;
//! and [`TorrentCore`], which holds a torrent's links with all of the above and reacts to
//! every session event, for the engine and the simulator alike (each implements [`Io`]
//! for its sockets and storage).
//!
//! # Why sans-IO
//!
//! Nothing in this crate reads the clock, touches a socket, spawns a thread or draws from
//! a global random source. Time comes in as a `now: Instant` argument and randomness as an
//! `&mut impl Rng`. The same code then runs under the tokio engine and under the
//! deterministic simulator (thousands of peers, a virtual clock, one seed per run), and a
//! failing run replays exactly from its seed.
//!
//! Because the simulator drives many torrents with many peers, every operation is cheap:
//! availability updates are O(1) per piece, a seed costs O(1) (a counter, not a bump of
//! every piece), and picking a block does not scan all pieces in the common case.
//!
//! Peers are named by an opaque [`PeerKey`] that the engine assigns; this crate never sees
//! addresses or connections.

mod choker;
mod link;
mod meter;
mod peer_map;
mod picker;
mod pipeline;
mod request_window;
mod smart_ban;
mod suggestions;
mod super_seed;
mod torrent;
mod uplink;

pub use choker::{ChokeSchedule, Choker, ChokerConfig, ChokerPeer, CHOKE_INTERVAL, CHOKE_REACTION};
pub use link::{choke_round, PeerLink, ALLOWED_FAST_SET, SNUB_AFTER};
pub use meter::RateMeter;
pub use peer_map::PeerMap;
pub use picker::{PiecePicker, Received, ENDGAME_MAX_REQUESTERS};
pub use pipeline::{
    queue_depth, DEFAULT_REQQ, INITIAL_RATE_GUESS, MAX_QUEUE_DEPTH, MIN_QUEUE_DEPTH, REQUEST_WINDOW,
};
pub use request_window::{
    RequestWindow, Sources, TickState, HELD_BACK, MAX_REQUEST_WINDOW, MAX_SOURCES,
    MIN_SEED_SOURCES, PROBE_GAIN, ROUND_TRIPS_COVERED,
};
pub use smart_ban::{BlockData, SmartBan, DEFAULT_MAX_PIECES, MAX_RECORDS_PER_BLOCK};
pub use suggestions::{Suggestions, MAX_SUGGESTED};
pub use super_seed::{Reveal, SuperSeed};
pub use torrent::{Connection, CoreConfig, Io, TorrentCore, Uplink, BOTH_DONE, DUPLICATE};
pub use uplink::{PieceProgress, SharedUplink, CONTROL_RANK};

/// An opaque peer handle assigned by the engine (one per connection). The engine must not
/// reuse a key while the picker still knows the peer (that is, before
/// [`PiecePicker::peer_disconnected`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub u64);
