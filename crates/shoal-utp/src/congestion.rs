//! LEDBAT congestion control (BEP 29, RFC 6817): the window grows while the one-way
//! queueing delay the peer measures stays under a target, and shrinks as it passes it,
//! so a uTP upload yields to interactive traffic sharing the uplink's queue.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Queueing delay LEDBAT aims for (BEP 29 and libtorrent: 100 ms).
pub const TARGET: Duration = Duration::from_millis(100);
/// Most the window grows in one round trip in congestion avoidance (BEP 29's gain).
const MAX_GROWTH_PER_RTT: f64 = 3000.0;
/// Base-delay minima kept, one per minute: the base delay forgets a route change within
/// two minutes (RFC 6817 suggests a few minutes).
const BASE_HISTORY: usize = 2;
const BASE_INTERVAL: Duration = Duration::from_secs(60);

/// The congestion window and what it is computed from.
#[derive(Debug, Clone)]
pub struct Ledbat {
    window: f64,
    min_window: f64,
    max_window: f64,
    slow_start: bool,
    ssthresh: f64,
    /// Per-minute minima of the delay samples, newest last, each with its minute's start.
    /// Samples carry the two hosts' clock offset, so only differences mean anything and
    /// they are compared with wrapping arithmetic.
    base: VecDeque<(Instant, u32)>,
    /// Sequence number past which a loss may halve the window again: one halving per
    /// window of data, as TCP's fast recovery.
    recovery_until: Option<u16>,
}

/// `a` is below `b`, for delay samples that may wrap.
fn below(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl Ledbat {
    pub fn new(packet: usize, max_window: usize) -> Ledbat {
        Ledbat {
            window: (2 * packet) as f64,
            min_window: packet as f64,
            max_window: max_window as f64,
            slow_start: true,
            ssthresh: max_window as f64,
            base: VecDeque::new(),
            recovery_until: None,
        }
    }

    /// Bytes that may be in flight.
    pub fn window(&self) -> usize {
        self.window as usize
    }

    /// The queueing delay a sample shows over the base delay.
    fn queueing(&mut self, sample: u32, now: Instant) -> Duration {
        match self.base.back_mut() {
            Some((start, min)) if now.saturating_duration_since(*start) < BASE_INTERVAL => {
                if below(sample, *min) {
                    *min = sample;
                }
            }
            _ => {
                self.base.push_back((now, sample));
                if self.base.len() > BASE_HISTORY {
                    self.base.pop_front();
                }
            }
        }
        let base = self
            .base
            .iter()
            .map(|&(_, m)| m)
            .reduce(|a, b| if below(b, a) { b } else { a })
            .unwrap_or(sample);
        Duration::from_micros(u64::from(sample.wrapping_sub(base).min(10_000_000)))
    }

    /// `acked` bytes were acknowledged, with `sample` the peer's latest one-way delay
    /// measurement (0: none yet). `limited` says whether the window was full, since an
    /// application that sends less than the window teaches nothing about the path.
    pub fn on_ack(&mut self, acked: usize, sample: u32, limited: bool, now: Instant) {
        if acked == 0 {
            return;
        }
        let delay = if sample == 0 {
            Duration::ZERO
        } else {
            self.queueing(sample, now)
        };
        if !limited {
            return;
        }
        let acked = acked as f64;
        if self.slow_start {
            self.window += acked;
            if self.window >= self.ssthresh || delay > TARGET / 2 {
                self.slow_start = false;
            }
        } else {
            let off_target = (TARGET.as_secs_f64() - delay.as_secs_f64()) / TARGET.as_secs_f64();
            self.window += MAX_GROWTH_PER_RTT * off_target.max(-1.0) * acked / self.window;
        }
        self.window = self.window.clamp(self.min_window, self.max_window);
    }

    /// A packet sent after `recovery_until` was lost (found by duplicate or selective
    /// acks): halve the window, once per window. `highest_sent` bounds the next recovery.
    pub fn on_loss(&mut self, lost: u16, highest_sent: u16) {
        if self
            .recovery_until
            .is_some_and(|until| !crate::packet::seq_lt(until, lost))
        {
            return;
        }
        self.recovery_until = Some(highest_sent);
        self.window = (self.window / 2.0).max(self.min_window);
        self.ssthresh = self.window;
        self.slow_start = false;
    }

    /// Nothing was acknowledged for a whole retransmission timeout: back to one packet,
    /// and slow start up to half the window that timed out.
    pub fn on_timeout(&mut self) {
        self.ssthresh = (self.window / 2.0).max(self.min_window);
        self.window = self.min_window;
        self.slow_start = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_under_target_and_shrinks_over_it() {
        let now = Instant::now();
        let mut cc = Ledbat::new(1000, 1 << 20);
        cc.slow_start = false;
        let start = cc.window();
        // Samples carry an arbitrary clock offset near the wrap; the base removes it.
        let offset = u32::MAX - 5_000;
        for _ in 0..50 {
            cc.on_ack(1000, offset.wrapping_add(10_000), true, now);
        }
        let grown = cc.window();
        assert!(grown > start, "{grown} > {start}");
        // 250 ms of queueing: over target, the window shrinks.
        for _ in 0..50 {
            cc.on_ack(1000, offset.wrapping_add(260_000), true, now);
        }
        assert!(cc.window() < grown);
        // Not window-limited: no growth.
        let before = cc.window();
        cc.on_ack(1000, offset.wrapping_add(10_000), false, now);
        assert_eq!(cc.window(), before);
    }

    #[test]
    fn loss_halves_once_per_window_and_timeout_resets() {
        let mut cc = Ledbat::new(1000, 1 << 20);
        cc.window = 64_000.0;
        cc.on_loss(10, 40);
        assert_eq!(cc.window(), 32_000);
        cc.on_loss(20, 45);
        assert_eq!(cc.window(), 32_000, "same window: no second halving");
        cc.on_loss(41, 60);
        assert_eq!(cc.window(), 16_000);
        cc.on_timeout();
        assert_eq!(cc.window(), 1000);
    }
}
