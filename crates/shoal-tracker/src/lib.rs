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
    /// A failure that says when to come back (BEP 31 `retry in`).
    #[error("tracker said: {reason} ({retry})")]
    Backoff { reason: String, retry: RetryIn },
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

/// When a tracker that refused an announce wants to hear from us again (BEP 31).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryIn {
    /// Not before this many minutes (at most [`RetryIn::MAX_MINUTES`]).
    Minutes(u32),
    /// Not in this session: the tracker will never accept it.
    Never,
}

impl RetryIn {
    /// Longer waits are cut to a week: the session will not outlive it, and a bigger
    /// number from a tracker must not overflow a deadline.
    pub const MAX_MINUTES: u32 = 7 * 24 * 60;

    /// The wait as a duration; `None` for never.
    pub fn duration(self) -> Option<std::time::Duration> {
        match self {
            RetryIn::Minutes(minutes) => Some(std::time::Duration::from_secs(
                u64::from(minutes.min(Self::MAX_MINUTES)) * 60,
            )),
            RetryIn::Never => None,
        }
    }
}

impl std::fmt::Display for RetryIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RetryIn::Minutes(1) => f.write_str("retry in 1 minute"),
            RetryIn::Minutes(m) => write!(f, "retry in {m} minutes"),
            RetryIn::Never => f.write_str("never retry"),
        }
    }
}
