//! The announce client's sans-IO parts: HTTP messages, the UDP exchange, tiers and the
//! schedule that ties them together.

pub mod http;
mod schedule;
mod tiers;
mod udp;

pub use schedule::{
    AnnounceJob, ClientEvent, ClientParams, TrackerClient, TrackerId, FIRST_BACKOFF, MAX_BACKOFF,
};
pub use tiers::{Tiers, MAX_TRACKERS};
pub use udp::{UdpConfig, UdpOperation, UdpOutcome, UdpTracker, CONNECTION_LIFETIME};
