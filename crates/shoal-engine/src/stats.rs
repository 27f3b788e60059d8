//! Transfer statistics for the user interface (the rates come from
//! [`shoal_swarm::RateMeter`]).

use std::net::SocketAddr;
use std::time::Duration;

use crate::stream::Kind;

/// A snapshot of a torrent's progress, sent to the user interface once a second.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub pieces_have: usize,
    pub piece_count: usize,
    /// Verified bytes and all bytes of the torrent (what a tracker's `left` is made of).
    pub bytes_have: u64,
    pub total_bytes: u64,
    /// The same over the pieces we download: those of the selected files, or all.
    pub selected_have: u64,
    pub selected_bytes: u64,
    pub downloaded: u64,
    pub uploaded: u64,
    /// Bytes per second.
    pub download_rate: f64,
    pub upload_rate: f64,
    pub peers: usize,
    /// Seconds to completion at the current rate, when downloading.
    pub eta_secs: Option<u64>,
    /// Pieces available from at least one connected peer, or that we have.
    pub available_pieces: usize,
    /// Bytes downloaded for nothing: blocks that arrived twice (endgame) or after we had
    /// cancelled them, and pieces that failed the hash check.
    pub wasted: u64,
}

/// One connected peer, for the user interface's peer list (sent every
/// [`PEER_LIST_INTERVAL`](crate::torrent::PEER_LIST_INTERVAL)).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    /// The client its peer id names (`LT 2080`), or the id's printable part.
    pub client: String,
    pub transport: Kind,
    /// It connected to us (we did not dial it).
    pub incoming: bool,
    /// RC4 both ways (MSE/PE), not just an obfuscated handshake.
    pub encrypted: bool,
    /// The shortest round trip the transport measured.
    pub round_trip: Option<Duration>,
    /// Payload bytes per second, and in all, over this connection.
    pub download_rate: f64,
    pub upload_rate: f64,
    pub downloaded: u64,
    pub uploaded: u64,
    /// The share of the torrent's pieces it has, 0 to 1.
    pub progress: f64,
    /// It chokes us; we choke it.
    pub choking_us: bool,
    pub choked: bool,
    /// We want something it has; it wants something we have.
    pub interested: bool,
    pub peer_interested: bool,
    /// It has sent us nothing for a long while although we asked.
    pub snubbed: bool,
}
