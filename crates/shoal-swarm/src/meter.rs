//! Transfer totals and smoothed rates: what the choker ranks peers by and what sizes each
//! peer's request queue. Sans-IO like the rest of this crate (the caller says how much
//! time passed), so the engine and the simulator compute the same rates.

use std::time::Duration;

/// A byte counter with a rate smoothed over a few seconds.
#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    pub total: u64,
    window: u64,
    rate: f64,
    /// The rate over the last tick alone.
    last: f64,
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
        self.last = instant;
        // Exponential average with a time constant of about 2 s.
        let alpha = (secs / 2.0).min(1.0);
        self.rate += (instant - self.rate) * alpha;
        self.window = 0;
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The rate over the last tick, unsmoothed.
    pub fn last_rate(&self) -> f64 {
        self.last
    }
}
