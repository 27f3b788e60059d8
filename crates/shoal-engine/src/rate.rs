//! Token-bucket rate limits shared by all connections of a process.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket: `rate` bytes per second with one second of burst. `None` rate means
/// unlimited, and then [`RateLimit::acquire`] costs nothing.
#[derive(Debug)]
pub struct RateLimit {
    rate: Option<u64>,
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    pub fn new(rate: Option<u64>) -> Self {
        let burst = rate.unwrap_or(0) as f64;
        RateLimit {
            rate: rate.filter(|&r| r > 0),
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes `bytes` tokens, waiting until the bucket has them. Debt is allowed (a
    /// large read is taken whole), and the next caller waits it off.
    pub async fn acquire(&self, bytes: usize) {
        let Some(rate) = self.rate else { return };
        let wait = {
            let mut state = self.state.lock().expect("not poisoned");
            let now = Instant::now();
            let (tokens, last) = &mut *state;
            *tokens =
                (*tokens + now.duration_since(*last).as_secs_f64() * rate as f64).min(rate as f64);
            *last = now;
            *tokens -= bytes as f64;
            if *tokens >= 0.0 {
                None
            } else {
                Some(Duration::from_secs_f64(-*tokens / rate as f64))
            }
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limits_to_the_rate() {
        let limit = RateLimit::new(Some(100_000));
        let start = tokio::time::Instant::now();
        for _ in 0..30 {
            limit.acquire(10_000).await;
        }
        // 300 kB at 100 kB/s with a 100 kB burst: about 2 s.
        let elapsed = start.elapsed().as_secs_f64();
        assert!((1.8..2.3).contains(&elapsed), "{elapsed}");
        RateLimit::new(None).acquire(usize::MAX).await;
    }
}
