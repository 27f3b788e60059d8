//! Token-bucket rate limits shared by all connections of a process.
//!
//! Callers wait in line by rank (then first come, first served): the upload limit lets the
//! connection whose piece is closest to done write first (see [`shoal_swarm::PieceProgress`]),
//! so that under a limit pieces are sent one after another rather than all at once.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// A token bucket: `rate` bytes per second with one second of burst. `None` rate means
/// unlimited, and then [`RateLimit::acquire`] costs nothing. The rate may change while
/// callers wait (a daemon's limits are set at run time). A limit may sit within another
/// (a torrent's own within a session's): callers wait for both.
#[derive(Debug)]
pub struct RateLimit {
    /// Bytes per second; 0 for no limit.
    rate: AtomicU64,
    state: Mutex<State>,
    /// Wakes the line when its head leaves.
    turn: Notify,
    /// The limit this one sits within, if any.
    parent: Option<Arc<RateLimit>>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    last: Instant,
    /// Callers waiting, best first: highest rank, then lowest ticket.
    line: BTreeSet<Place>,
    next_ticket: u64,
}

type Place = (Reverse<u32>, u64);

impl RateLimit {
    pub fn new(rate: Option<u64>) -> Self {
        let burst = rate.unwrap_or(0) as f64;
        RateLimit {
            rate: AtomicU64::new(rate.unwrap_or(0)),
            state: Mutex::new(State {
                tokens: burst,
                last: Instant::now(),
                line: BTreeSet::new(),
                next_ticket: 0,
            }),
            turn: Notify::new(),
            parent: None,
        }
    }

    /// A limit of `rate` (`None`: none of its own) within `parent`'s.
    pub fn within(rate: Option<u64>, parent: Arc<RateLimit>) -> Self {
        RateLimit {
            parent: Some(parent),
            ..RateLimit::new(rate)
        }
    }

    /// Bytes per second callers get at most, if limited: the tighter of this limit's
    /// own rate and those it sits within.
    pub fn rate(&self) -> Option<u64> {
        let parent = self.parent.as_ref().and_then(|p| p.rate());
        match (self.own_rate(), parent) {
            (Some(own), Some(parent)) => Some(own.min(parent)),
            (own, parent) => own.or(parent),
        }
    }

    /// This limit's own rate, if it has one.
    pub fn own_rate(&self) -> Option<u64> {
        Some(self.rate.load(Ordering::Relaxed)).filter(|&rate| rate > 0)
    }

    /// Whether callers may have to wait.
    pub fn is_limited(&self) -> bool {
        self.rate().is_some()
    }

    /// A new rate of its own (`None`: no limit) for callers from now on, and those
    /// waiting. The bucket is filled at the old rate up to now, then keeps what it holds
    /// within a second of the new rate either way: a debt run up under a high rate does
    /// not freeze everyone for long under a low one.
    pub fn set_rate(&self, rate: Option<u64>) {
        let mut state = self.state.lock().expect("not poisoned");
        let now = Instant::now();
        let old = self.own_rate();
        self.rate.store(rate.unwrap_or(0), Ordering::Relaxed);
        match (old, rate.filter(|&r| r > 0)) {
            // A bucket that was not counting starts full.
            (None, Some(rate)) => state.tokens = rate as f64,
            (Some(old), Some(rate)) => {
                let filled = now.duration_since(state.last).as_secs_f64() * old as f64;
                let second = rate as f64;
                state.tokens = (state.tokens + filled)
                    .min(old as f64)
                    .clamp(-second, second);
            }
            (_, None) => {}
        }
        state.last = now;
        drop(state);
        self.turn.notify_waiters();
    }

    /// The most a caller should take at once, of at most `max`: a quarter second of the
    /// rate (at least 1 KiB). A reader that took a whole socket buffer under a low limit
    /// would put the bucket seconds into debt, and every other connection's messages
    /// (handshakes, `have`s, peer exchange) would wait that long behind it.
    pub fn chunk(&self, max: usize) -> usize {
        self.rate()
            .map_or(max, |rate| ((rate / 4) as usize).clamp(1024, max.max(1024)))
    }

    /// Takes `bytes` tokens once the bucket is out of debt and no caller of a higher rank
    /// (or of the same rank, who came first) is waiting, then as much of each limit this
    /// one sits within. Debt is allowed (a large write is taken whole), and the next
    /// caller waits it off. A caller that gives up (its future is dropped) leaves the
    /// line.
    pub async fn acquire(&self, bytes: usize, rank: u32) {
        let mut limit = Some(self);
        while let Some(this) = limit {
            this.acquire_own(bytes, rank).await;
            limit = this.parent.as_deref();
        }
    }

    /// [`RateLimit::acquire`] of this limit's own bucket.
    async fn acquire_own(&self, bytes: usize, rank: u32) {
        if self.own_rate().is_none() {
            return;
        }
        let place = {
            let mut state = self.state.lock().expect("not poisoned");
            let place = (Reverse(rank), state.next_ticket);
            state.next_ticket += 1;
            state.line.insert(place);
            place
        };
        let mut in_line = InLine {
            limit: self,
            place: Some(place),
        };
        loop {
            let notified = self.turn.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // The limit may have been lifted while we waited.
            let Some(rate) = self.own_rate() else { return };
            let wait = {
                let mut state = self.state.lock().expect("not poisoned");
                if state.line.first() == Some(&place) {
                    let now = Instant::now();
                    state.tokens = (state.tokens
                        + now.duration_since(state.last).as_secs_f64() * rate as f64)
                        .min(rate as f64);
                    state.last = now;
                    if state.tokens >= 0.0 {
                        state.tokens -= bytes as f64;
                        state.line.remove(&place);
                        in_line.place = None;
                        drop(state);
                        self.turn.notify_waiters();
                        return;
                    }
                    Some(Duration::from_secs_f64(-state.tokens / rate as f64))
                } else {
                    None
                }
            };
            match wait {
                Some(wait) => {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

/// A caller's place in line, given up if it stops waiting.
struct InLine<'a> {
    limit: &'a RateLimit,
    place: Option<Place>,
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        if let Some(place) = self.place.take() {
            if let Ok(mut state) = self.limit.state.lock() {
                state.line.remove(&place);
            }
            self.limit.turn.notify_waiters();
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
            limit.acquire(10_000, 0).await;
        }
        // 300 kB at 100 kB/s with a 100 kB burst: about 2 s.
        let elapsed = start.elapsed().as_secs_f64();
        assert!((1.8..2.3).contains(&elapsed), "{elapsed}");
        RateLimit::new(None).acquire(usize::MAX, 0).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_rate_holds_for_callers_already_waiting() {
        let limit = std::sync::Arc::new(RateLimit::new(Some(1000)));
        limit.acquire(1000, 0).await;
        limit.acquire(10_000, 0).await; // 10 s of debt
        let start = tokio::time::Instant::now();
        let waiting = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire(1, 0).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "in debt");
        limit.set_rate(None);
        waiting.await.unwrap();
        assert!(start.elapsed() < Duration::from_secs(2), "lifted at once");
        assert_eq!(limit.rate(), None);

        // A debt run up under a high rate costs at most a second under a low one.
        limit.set_rate(Some(1_000_000));
        limit.acquire(3_000_000, 0).await;
        limit.set_rate(Some(10_000));
        let start = tokio::time::Instant::now();
        limit.acquire(1, 0).await;
        assert!(
            start.elapsed() <= Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );

        // From no limit to one: the bucket starts full, then counts.
        limit.set_rate(None);
        limit.set_rate(Some(100_000));
        let start = tokio::time::Instant::now();
        for _ in 0..30 {
            limit.acquire(10_000, 0).await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        assert!((1.8..2.3).contains(&elapsed), "{elapsed}");
    }

    #[test]
    fn chunks_are_a_quarter_second_of_the_rate() {
        assert_eq!(RateLimit::new(None).chunk(256 * 1024), 256 * 1024);
        assert_eq!(RateLimit::new(Some(100_000)).chunk(256 * 1024), 25_000);
        assert_eq!(RateLimit::new(Some(2000)).chunk(256 * 1024), 1024);
        assert_eq!(
            RateLimit::new(Some(100 << 20)).chunk(256 * 1024),
            256 * 1024
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_highest_rank_goes_first_and_a_caller_that_gives_up_leaves_the_line() {
        let start = Instant::now();
        let limit = std::sync::Arc::new(RateLimit::new(Some(100_000)));
        // Spend the burst and go 100 kB into debt: the next caller waits a second.
        limit.acquire(200_000, 0).await;
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, rank) in [("low", 1), ("gives up", 9), ("high", 5), ("also low", 1)] {
            let (limit, order) = (limit.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                limit.acquire(10_000, rank).await;
                order.lock().expect("not poisoned").push(name);
            }));
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        tasks.remove(1).abort();
        for task in tasks {
            task.await.expect("not aborted");
        }
        assert_eq!(
            *order.lock().expect("not poisoned"),
            ["high", "low", "also low"]
        );
        // 100 kB of debt, then 10 kB each for the first two: about 1.2 s.
        let elapsed = start.elapsed().as_secs_f64();
        assert!((1.1..1.5).contains(&elapsed), "{elapsed}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_within_another_keeps_to_both() {
        let session = std::sync::Arc::new(RateLimit::new(Some(100_000)));
        let torrent = RateLimit::within(Some(50_000), session.clone());
        assert_eq!(torrent.rate(), Some(50_000));
        let start = tokio::time::Instant::now();
        for _ in 0..15 {
            torrent.acquire(10_000, 0).await;
        }
        // 150 kB at its own 50 kB/s, after a 50 kB burst: about 2 s.
        let elapsed = start.elapsed().as_secs_f64();
        assert!((1.8..2.3).contains(&elapsed), "{elapsed}");
        // What it takes counts against the session's too: 250 kB from a full 100 kB
        // bucket leaves the session 1.5 s in debt.
        torrent.acquire(250_000, 0).await;
        let start = tokio::time::Instant::now();
        session.acquire(1, 0).await;
        let elapsed = start.elapsed().as_secs_f64();
        assert!((1.4..1.7).contains(&elapsed), "{elapsed}");
        // Without a rate of its own, the session's holds.
        torrent.set_rate(None);
        assert_eq!(torrent.own_rate(), None);
        assert_eq!(torrent.rate(), Some(100_000));
        assert!(torrent.is_limited());
        session.set_rate(None);
        assert!(!torrent.is_limited());
        torrent.acquire(usize::MAX, 0).await;
    }
}
