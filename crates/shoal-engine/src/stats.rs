//! Transfer statistics: totals and smoothed rates.

use std::time::Duration;

/// A byte counter with a rate smoothed over a few seconds.
#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    pub total: u64,
    window: u64,
    rate: f64,
}

impl RateMeter {
    pub fn add(&mut self, bytes: u64) {
        self.total += bytes;
        self.window += bytes;
    }

    /// Folds the bytes counted since the last tick into the rate.
    pub fn tick(&mut self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64().max(1e-3);
        let instant = self.window as f64 / secs;
        // Exponential average with a time constant of about 2 s.
        let alpha = (secs / 2.0).min(1.0);
        self.rate += (instant - self.rate) * alpha;
        self.window = 0;
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }
}

/// A snapshot of a torrent's progress, sent to the user interface once a second.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub pieces_have: usize,
    pub piece_count: usize,
    pub bytes_have: u64,
    pub total_bytes: u64,
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
}
