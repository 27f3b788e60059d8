//! Per-source-IP rate limiting of incoming packets (TESTING.md item 29).
//!
//! A token bucket per IP: `burst` packets at once, refilled at `rate` per second. The
//! map of buckets is itself bounded: when it is full, buckets that have refilled (their
//! source has been quiet) are dropped, and if none has, the whole map is cleared. That
//! keeps memory fixed under a flood of spoofed source addresses, at the price of briefly
//! forgetting who was limited while such a flood lasts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct RateLimitConfig {
    /// Packets per second each IP may send on average.
    pub rate: f64,
    /// Packets an IP may send at once.
    pub burst: f64,
    /// Most IPs tracked at once.
    pub max_sources: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            rate: 5.0,
            burst: 25.0,
            max_sources: 20_000,
        }
    }
}

pub struct SourceLimiter {
    config: RateLimitConfig,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl SourceLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        SourceLimiter {
            config,
            buckets: HashMap::new(),
        }
    }

    /// Whether a packet from `ip` at `now` may be processed.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= self.config.max_sources {
            self.prune(now);
        }
        let (rate, burst) = (self.config.rate, self.config.burst);
        let (tokens, last) = self.buckets.entry(ip).or_insert((burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * rate).min(burst);
        *last = now.max(*last);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn prune(&mut self, now: Instant) {
        let (rate, burst) = (self.config.rate, self.config.burst);
        self.buckets.retain(|_, (tokens, last)| {
            *tokens + now.saturating_duration_since(*last).as_secs_f64() * rate < burst
        });
        if self.buckets.len() >= self.config.max_sources {
            self.buckets.clear();
        }
    }

    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn limits_a_flood_and_refills() {
        let t0 = Instant::now();
        let mut limiter = SourceLimiter::new(RateLimitConfig {
            rate: 5.0,
            burst: 10.0,
            max_sources: 100,
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let allowed = (0..100).filter(|_| limiter.allow(ip, t0)).count();
        assert_eq!(allowed, 10);
        assert!(
            limiter.allow("10.0.0.2".parse().unwrap(), t0),
            "others unaffected"
        );
        let later = t0 + Duration::from_secs(1);
        let allowed = (0..100).filter(|_| limiter.allow(ip, later)).count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn source_map_is_bounded() {
        let t0 = Instant::now();
        let mut limiter = SourceLimiter::new(RateLimitConfig {
            rate: 5.0,
            burst: 10.0,
            max_sources: 50,
        });
        for i in 0..10_000u32 {
            limiter.allow(IpAddr::from(i.to_be_bytes()), t0);
            assert!(limiter.tracked() <= 50);
        }
    }
}
