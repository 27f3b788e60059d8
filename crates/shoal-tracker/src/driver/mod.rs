//! The tokio drivers: thin loops that move bytes between sockets and the sans-IO cores.

mod announcer;
mod board;
pub mod http;
mod scrape;
pub mod server;
mod udp;

pub use announcer::{Announcer, AnnouncerConfig};
pub use board::{TrackerBoard, TrackerStatus};
pub use scrape::scrape;
pub use udp::UdpEndpoint;
