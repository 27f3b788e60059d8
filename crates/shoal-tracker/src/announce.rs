//! What an announce says and what a tracker answers, independent of HTTP or UDP.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_core::{InfoHash, PeerId};

/// The `event` of an announce (BEP 3); `None` is a periodic re-announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    None,
    Started,
    Completed,
    Stopped,
    /// BEP 21: a periodic announce of a partial seed (it has every piece of the files it
    /// chose, and wants nothing more).
    Paused,
}

impl Event {
    /// The HTTP `event=` value, absent for a periodic announce.
    pub fn as_http(self) -> Option<&'static str> {
        match self {
            Event::None => None,
            Event::Started => Some("started"),
            Event::Completed => Some("completed"),
            Event::Stopped => Some("stopped"),
            Event::Paused => Some("paused"),
        }
    }

    pub fn from_http(text: &str) -> Option<Event> {
        match text {
            "" | "empty" => Some(Event::None),
            "started" => Some(Event::Started),
            "completed" => Some(Event::Completed),
            "stopped" => Some(Event::Stopped),
            "paused" => Some(Event::Paused),
            _ => None,
        }
    }

    /// BEP 15's numbering, and libtorrent's 4 for `paused` (BEP 15 has no number for it).
    pub fn as_udp(self) -> u32 {
        match self {
            Event::None => 0,
            Event::Completed => 1,
            Event::Started => 2,
            Event::Stopped => 3,
            Event::Paused => 4,
        }
    }

    pub fn from_udp(n: u32) -> Option<Event> {
        match n {
            0 => Some(Event::None),
            1 => Some(Event::Completed),
            2 => Some(Event::Started),
            3 => Some(Event::Stopped),
            4 => Some(Event::Paused),
            _ => None,
        }
    }
}

/// Transfer totals reported to a tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    /// BEP 21: every piece of the chosen files is here, though `left` is not 0; periodic
    /// announces then say `paused`.
    pub partial_seed: bool,
}

/// One announce, as the client sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub port: u16,
    pub progress: Progress,
    pub event: Event,
    /// Peers wanted; `None` lets the tracker choose.
    pub numwant: Option<u32>,
    /// A random number that identifies this client across IP changes.
    pub key: u32,
    /// Echoed back from an earlier HTTP response (`tracker id`).
    pub tracker_id: Option<Vec<u8>>,
}

/// What a tracker answered to an announce.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnnounceResponse {
    pub interval: Duration,
    pub min_interval: Option<Duration>,
    /// IPv4 and IPv6 peers, in the tracker's order, duplicates and port 0 removed.
    pub peers: Vec<SocketAddr>,
    pub tracker_id: Option<Vec<u8>>,
    pub warning: Option<String>,
    /// Seeders and leechers, when the tracker says.
    pub complete: Option<u32>,
    pub incomplete: Option<u32>,
}

/// Counts for one torrent from a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeCounts {
    /// Seeders.
    pub complete: u32,
    /// Completed downloads ever reported.
    pub downloaded: u32,
    /// Leechers (partial seeds included).
    pub incomplete: u32,
    /// BEP 21: the leechers that still download (not partial seeds). HTTP scrapes only;
    /// `None` where the tracker does not say.
    pub downloaders: Option<u32>,
}

/// Announce intervals outside this range are clamped: a tracker cannot make us hammer it
/// (or itself) every second, nor silence us for a day.
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);
pub const MAX_INTERVAL: Duration = Duration::from_secs(3 * 3600);

/// A tracker's interval in seconds, clamped to a sane range.
pub fn clamp_interval(secs: i64) -> Duration {
    Duration::from_secs(secs.clamp(0, i64::from(u32::MAX)) as u64).clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// Most peers one response may deliver (a 1 MiB body holds at most ~170k compact peers,
/// no client wants that many).
pub const MAX_PEERS_PER_RESPONSE: usize = 2000;

/// Adds a peer unless it is a duplicate, has port 0 or the list is full.
pub(crate) fn push_peer(peers: &mut Vec<SocketAddr>, addr: SocketAddr) {
    if addr.port() != 0 && peers.len() < MAX_PEERS_PER_RESPONSE && !peers.contains(&addr) {
        peers.push(addr);
    }
}
