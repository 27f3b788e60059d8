//! When a finished torrent stops seeding: `--seed-ratio` and `--seed-time`, with aria2's
//! meaning (whichever is reached first).

use std::time::Duration;

/// Limits on seeding after the download is complete; the default seeds until shutdown.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SeedLimit {
    /// Stop once the bytes uploaded reach this many times the bytes we hold (those of the
    /// selected files, or the whole torrent).
    pub ratio: Option<f64>,
    /// Stop after seeding this long.
    pub time: Option<Duration>,
}

impl SeedLimit {
    /// Whether to stop, having seeded for `seeded_for` and uploaded `uploaded` bytes (this
    /// run, download time included) of a torrent whose wanted part is `size` bytes.
    pub fn reached(&self, seeded_for: Duration, uploaded: u64, size: u64) -> bool {
        self.time.is_some_and(|time| seeded_for >= time)
            || self
                .ratio
                .is_some_and(|ratio| uploaded as f64 >= ratio * size as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whichever_limit_comes_first() {
        let min = Duration::from_secs(60);
        let unlimited = SeedLimit::default();
        assert!(!unlimited.reached(1000 * min, u64::MAX, 1));
        let ratio = SeedLimit {
            ratio: Some(1.5),
            time: None,
        };
        assert!(!ratio.reached(1000 * min, 149, 100));
        assert!(ratio.reached(Duration::ZERO, 150, 100));
        let both = SeedLimit {
            ratio: Some(2.0),
            time: Some(10 * min),
        };
        assert!(!both.reached(9 * min, 199, 100));
        assert!(both.reached(10 * min, 0, 100));
        assert!(both.reached(Duration::ZERO, 200, 100));
        let now = SeedLimit {
            ratio: None,
            time: Some(Duration::ZERO),
        };
        assert!(
            now.reached(Duration::ZERO, 0, 100),
            "a zero seed time stops at once"
        );
    }
}
