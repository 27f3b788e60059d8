//! Port mapping: asking the router in front of us to forward our listen port, so that
//! peers on the internet can connect to a host behind a NAT (libtorrent and Transmission
//! do it by default).
//!
//! [`natpmp`] is NAT-PMP (RFC 6886) as a sans-IO state machine: it takes datagrams from
//! the gateway and the time, and hands back datagrams to send, when to wake up, and
//! events (the external address, each mapping made, renewed or refused). [`upnp`] holds
//! the messages of UPnP IGD (SSDP search, device description, SOAP calls) as pure
//! functions, and `igd` runs them. [`driver`] runs both side by side and removes the
//! mappings when asked to stop.

pub mod driver;
pub mod gateway;
mod igd;
pub mod natpmp;
pub mod upnp;

pub use natpmp::{Event, NatPmp, Protocol};
