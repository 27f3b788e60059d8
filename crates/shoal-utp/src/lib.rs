//! uTP, the uTorrent transport protocol (BEP 29): reliable, ordered byte streams over
//! UDP whose LEDBAT congestion control backs off as soon as it adds queueing delay, so
//! BitTorrent traffic yields to everything else on the user's uplink. libtorrent and
//! Transmission prefer it to TCP.
//!
//! [`Connection`] is the protocol as a state machine; [`socket`] runs connections over
//! one tokio UDP socket.

pub mod congestion;
pub mod connection;
pub mod fuzzing;
pub mod packet;
pub mod socket;

pub use connection::{Config, Connection, Read, UtpError};
pub use packet::{looks_like_utp, Kind, Packet, PacketError};
pub use socket::{udp_socket, OtherDatagram, OtherDatagrams, UtpRoundTrip, UtpSocket, UtpStream};
