//! Port mapping: asking the router in front of us to forward our listen port, so that
//! peers on the internet can connect to a host behind a NAT (libtorrent and Transmission
//! do it by default).
//!
//! [`natpmp`] is NAT-PMP (RFC 6886) as a sans-IO state machine: it takes datagrams from
//! the gateway and the time, and hands back datagrams to send, when to wake up, and
//! events (the external address, each mapping made, renewed or refused). [`driver`] runs
//! it over a tokio UDP socket, and removes the mappings when asked to stop.

pub mod driver;
pub mod gateway;
pub mod natpmp;

pub use natpmp::{Event, NatPmp, Protocol};
