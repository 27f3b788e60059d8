//! BitTorrent trackers, both halves: the announce client a torrent uses to find peers,
//! and the tracker server (`shoal tracker`) that peers announce to.
//!
//! The protocol logic is sans-IO, like every core in shoal: [`client::TrackerClient`]
//! decides when to announce to which tracker (BEP 12 tiers, back-off, events),
//! [`client::UdpTracker`] runs one BEP 15 exchange, [`client::http`] builds announce URLs
//! and parses bencoded answers, and [`server::Tracker`] is the whole server state
//! (swarms, expiry, caps, allow-list) as a plain struct. Time and randomness come in as
//! arguments.
//!
//! The tokio drivers are thin: [`driver::Announcer`] runs the client for one torrent and
//! feeds discovered peers to the engine; [`driver::http`] is a small HTTP/1.1 client
//! with a body cap, a deadline and redirect checks; [`driver::server`] serves HTTP and
//! UDP from one shared [`server::Tracker`].

pub mod announce;
pub mod client;
pub mod driver;
#[doc(hidden)]
pub mod fuzzing;
pub mod http1;
pub mod server;
pub mod udp;
pub mod url;

pub use announce::{AnnounceRequest, AnnounceResponse, Event, Progress, ScrapeCounts};
pub use url::{Scheme, TrackerUrl, UrlError};

/// Why an announce or scrape failed. Every variant is logged and answered with a
/// back-off and the next tracker; none is fatal to the download.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerError {
    #[error("tracker said: {0}")]
    Failure(String),
    #[error("tracker answered HTTP {0}")]
    Http(u16),
    #[error("no answer from the tracker in time")]
    Timeout,
    #[error("tracker response is not bencode: {0}")]
    Bencode(shoal_bencode::DecodeError),
    #[error("bad tracker response: {0}")]
    BadResponse(&'static str),
    #[error("tracker response larger than {0} bytes")]
    TooLarge(usize),
    #[error("tracker sent an encoded body ({0}); we asked for none")]
    Encoded(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Io(String),
    /// The tracker has no address in the family asked for that this host can reach.
    #[error("{0}")]
    NoRoute(String),
    #[error(transparent)]
    Url(#[from] UrlError),
}
