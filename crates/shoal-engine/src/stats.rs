//! Transfer statistics for the user interface (the rates come from
//! [`shoal_swarm::RateMeter`]).

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
