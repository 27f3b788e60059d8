//! How much transfer a peer's request queue covers: [`REQUEST_WINDOW`] (0.5 s), unless
//! the peer has shown that it sends more when asked for more.
//!
//! # Why the window probes
//!
//! The queue depth is the peer's rate times the window (see
//! [`queue_depth`](crate::queue_depth)). For an uploader that serves requests as they come,
//! the rate does not depend on the depth once the depth covers the round trip, and a short
//! window keeps pieces from waiting in its queue (why the window is short). But where the
//! depth itself caps the rate, `rate = depth / delay`, the rate can never grow: with
//! `depth = rate × window`, the next rate is `rate × window / delay`, which holds still when
//! the delay equals the window and shrinks to the floor when it is longer.
//! - Transmission fills a connection's output every 500 ms (its bandwidth pulse): a
//!   `shoal get` from a Transmission seed on loopback stayed at the initial rate guess,
//!   256 KiB/s, while libtorrent (3 s window) took 1.2 MB/s from the same seed.
//! - A link whose round trip exceeds the window (satellite, a congested uplink) decays
//!   the same way.
//!
//! So once its rate has settled, each peer's window is doubled for a while: if the peer
//! then delivers [`PROBE_GAIN`] times as much, the longer window stays (and the next
//! doubling is tried at once, up to libtorrent's 3 s); if not, the window goes back and
//! the next probe waits twice as long as the last. A choke starts the peer afresh.
//!
//! Only while at most [`MAX_SOURCES`] peers are sending to us. In a swarm, uploaders are
//! shared, and a deeper queue at one wins a larger share of it (it is never empty when
//! the uploader picks whom to serve next), which the other downloaders pay for. In the
//! simulator's flash crowd (1000 peers, seeds 7–11; 1.161 of the bound before probing),
//! probing every connection gave 1.178–1.186, the probes succeeding about one time in
//! three; up to 8 sources 1.178, and probing seeds whatever the count 1.171. Up to 4
//! sources (or 2) it is 1.156, the 200-peer crowd unchanged (1.125, seeds 7–9), and a
//! lone leecher 300 ms from its seed (512 KiB/s) finishes at 1.28 of the bound instead
//! of 3.79.
//!
//! Two exceptions.
//! - A seed, once [`MIN_SEED_SOURCES`] seeds are sending to us. The flash crowd's harm
//!   comes from its one seed, the uploader every leecher waits on; a download from several
//!   seeds (popular torrents, or Transmission seeds, each held to 256 KiB/s) would
//!   otherwise never probe. From six Transmission seeds on loopback, 64 MiB took 21.9 s
//!   from the first piece to the last (libtorrent: 4.5 s) and now takes 7.3 s
//!   (libtorrent: 5.4 s; `benches/from_transmission.py --seeds 6`); the simulator's
//!   crowds with 2 and 5 seeds are unchanged (1.108 / 1.092 at seed 7, against 1.107 /
//!   1.093).
//! - Any peer our queue held back: over the last tick it delivered at least
//!   [`HELD_BACK`] of what the queue let through (its length ÷ the window), as a peer
//!   that sends in batches or is far away does, where an uploader shared by a crowd sends
//!   us less. From one Transmission seed beside five libtorrent leechers sending 256 KiB/s
//!   each, 64 MiB took 37.9 s (libtorrent: 16.1 s) and takes 14.8 s (libtorrent:
//!   16.0 s; `--leechers 5`, 3 runs); with a Transmission *leecher* (a partial seed)
//!   there instead, 36.0 s while the test covered seeds alone, 14.2 s now (libtorrent:
//!   14.8 s; `--partial --leechers 5`). The flash crowd pays a little for it: seeds
//!   7–16, mean 1.161 (1.158 with the test for seeds alone); probing a lone seed
//!   whatever it delivers gave 1.171.
//!
//! # The round trip
//!
//! Whatever the window, the queue covers [`ROUND_TRIPS_COVERED`] of the connection's
//! shortest round trip, when the driver knows it (TCP's `tcpi_min_rtt`, uTP's own
//! measure, the simulator's link). A queue shorter than the round trip caps the rate
//! below what the link carries: the decay above, whether or not the window may probe.
//! The shortest round trip, not the current one: a queue sized by a delay it causes
//! itself (a bloated router buffer that our own blocks fill) would only grow it.
//!
//! Simulator, links of 300 ms one way on average (seeds 1–3): a lone leecher 1.12 of the
//! bound on average (1.16 before; 600 ms one way 1.48, 1.65 before), from six seeds 1.20
//! (1.28), one 4 MiB/s seed and six leechers 1.66 (1.75), 200 peers in a flash crowd
//! (seeds 1–8) 1.278 (1.302); 1.5 round trips did as well for the few and 1.301 for the
//! crowd, whose uploaders' queues are then deeper. With 40 ms links (the 1000-peer
//! crowd) nothing changes: 1.25 round trips is under the window.

use std::time::{Duration, Instant};

use crate::REQUEST_WINDOW;

/// Probing stops, and the window goes back to the standard, while more peers than this
/// are sending to us.
pub const MAX_SOURCES: usize = 4;

/// Seeds sending to us at once from which a seed is probed however many peers send.
pub const MIN_SEED_SOURCES: usize = 2;

/// A peer counts as held back by our queue when over the last rate tick it delivered at
/// least this share of what the queue let through (its length ÷ the window).
pub const HELD_BACK: f64 = 0.75;

/// Who sent to us over the last rate tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sources {
    /// Peers that delivered with our requests out ([`TickState::Busy`]).
    pub all: usize,
    /// How many of them are seeds.
    pub seeds: usize,
}

impl Sources {
    /// Whether probing a peer would take a share other downloaders need (see the module
    /// docs): with more than [`MAX_SOURCES`] sending, yes, unless our queue held the peer
    /// back (`held_back`, see [`HELD_BACK`]) or it is a seed and [`MIN_SEED_SOURCES`]
    /// seeds send.
    pub fn crowded(self, seed: bool, held_back: bool) -> bool {
        self.all > MAX_SOURCES && !held_back && !(seed && self.seeds >= MIN_SEED_SOURCES)
    }
}

/// How many of the connection's shortest round trips the queue covers at least.
pub const ROUND_TRIPS_COVERED: f64 = 1.25;

/// The longest window: libtorrent's `request_queue_time`.
pub const MAX_REQUEST_WINDOW: Duration = Duration::from_secs(3);

/// How much more a peer must deliver with the doubled window for it to stay.
pub const PROBE_GAIN: f64 = 1.5;

/// Rate ticks a probe lasts: the first one after the doubling is a mix of the two depths,
/// the others are measured.
const PROBE_TICKS: u8 = 4;

/// Busy rate ticks in a row before a probe, whose mean rate the probe is measured
/// against: the rate must have settled (the first ones include the slow start, or a
/// partial second after an unchoke), and one second's rate is lumpy (a piece or two).
const SETTLE_TICKS: usize = 3;

/// The wait after a first failed probe, doubling with each failure up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(4);
const MAX_BACKOFF: Duration = Duration::from_secs(64);

/// One peer's request window (see the module docs).
#[derive(Debug, Clone)]
pub struct RequestWindow {
    window: Duration,
    phase: Phase,
    /// The wait after the next failed probe.
    backoff: Duration,
    /// The rates over the last busy ticks in a row, up to [`SETTLE_TICKS`].
    recent: Vec<f64>,
    /// The connection's shortest round trip, if the driver knows it.
    round_trip: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No probe before `until`.
    Waiting { until: Instant },
    /// The window was doubled from `before`, at which the peer delivered `base` bytes/s;
    /// `ticks` have passed since, the measured ones bringing `sum` bytes/s.
    Probing {
        before: Duration,
        base: f64,
        ticks: u8,
        sum: f64,
    },
}

/// What one rate tick says of the peer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TickState {
    /// It chokes us: the window starts afresh at the next unchoke.
    Choked,
    /// Unchoked, but we had nothing out with it (or wanted nothing): its rate says nothing.
    Idle,
    /// Unchoked with our requests out: it delivered this many bytes/s over the tick.
    Busy(f64),
}

impl RequestWindow {
    pub fn new(now: Instant) -> Self {
        RequestWindow {
            window: REQUEST_WINDOW,
            phase: Phase::Waiting { until: now },
            backoff: FIRST_BACKOFF,
            recent: Vec::with_capacity(SETTLE_TICKS),
            round_trip: None,
        }
    }

    /// The window to size the queue by now: at least [`ROUND_TRIPS_COVERED`] round trips.
    pub fn get(&self) -> Duration {
        match self.round_trip {
            Some(rtt) => self.window.max(rtt.mul_f64(ROUND_TRIPS_COVERED)),
            None => self.window,
        }
    }

    /// The connection's shortest round trip as the driver measures it.
    pub fn set_round_trip(&mut self, rtt: Option<Duration>) {
        self.round_trip = rtt;
    }

    /// Once per rate tick (about a second), with what the peer did over it.
    /// `crowded` says probing is off (see [`Sources::crowded`]).
    pub fn tick(&mut self, state: TickState, crowded: bool, now: Instant) {
        let crowded = matches!(state, TickState::Busy(_)) && crowded;
        if state == TickState::Choked || crowded {
            *self = RequestWindow {
                round_trip: self.round_trip,
                ..Self::new(now)
            };
            return;
        }
        let rate = match state {
            TickState::Choked => return,
            TickState::Idle => {
                self.recent.clear();
                if let Phase::Probing { before, .. } = self.phase {
                    // Nothing measured: try again later from where it was.
                    self.window = before;
                    self.phase = Phase::Waiting {
                        until: now + self.backoff,
                    };
                }
                return;
            }
            TickState::Busy(rate) => rate,
        };
        if self.recent.len() == SETTLE_TICKS {
            self.recent.remove(0);
        }
        self.recent.push(rate);
        match self.phase {
            Phase::Waiting { until } => {
                let base = self.recent.iter().sum::<f64>() / SETTLE_TICKS as f64;
                let due = now >= until && self.recent.len() == SETTLE_TICKS;
                // Doubled from the window in use, which the round trip may set.
                let current = self.get();
                if due && base > 0.0 && current < MAX_REQUEST_WINDOW {
                    self.phase = Phase::Probing {
                        before: self.window,
                        base,
                        ticks: 0,
                        sum: 0.0,
                    };
                    self.window = (current * 2).min(MAX_REQUEST_WINDOW);
                }
            }
            Phase::Probing {
                before,
                base,
                ticks,
                sum,
            } => {
                let ticks = ticks + 1;
                // The first tick mixes the two depths.
                let sum = if ticks > 1 { sum + rate } else { sum };
                if ticks < PROBE_TICKS {
                    self.phase = Phase::Probing {
                        before,
                        base,
                        ticks,
                        sum,
                    };
                } else if sum / f64::from(PROBE_TICKS - 1) >= base * PROBE_GAIN {
                    self.backoff = FIRST_BACKOFF;
                    self.phase = Phase::Waiting { until: now };
                } else {
                    self.window = before;
                    self.phase = Phase::Waiting {
                        until: now + self.backoff,
                    };
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// Drives a window against a lone peer whose rate for a window is `rate_of(window)`,
    /// for `seconds` busy ticks; returns the window at the end.
    fn run(seconds: u32, rate_of: impl Fn(Duration) -> f64) -> (RequestWindow, Instant) {
        let mut now = Instant::now();
        let mut window = RequestWindow::new(now);
        for _ in 0..seconds {
            now += SECOND;
            let rate = rate_of(window.get());
            window.tick(TickState::Busy(rate), false, now);
        }
        (window, now)
    }

    /// A peer that serves in 500 ms batches, what was asked by then.
    fn batches(window: Duration) -> f64 {
        window.as_secs_f64() / 0.5 * 256.0 * 1024.0
    }

    /// A peer that serves in 500 ms batches delivers what was asked per batch: the window
    /// doubles until the longest.
    #[test]
    fn a_batching_peer_gets_the_longest_window() {
        let (window, _) = run(20, batches);
        assert_eq!(window.get(), MAX_REQUEST_WINDOW);
    }

    /// A peer whose rate does not follow the depth keeps the short window, and probes ever
    /// more rarely.
    #[test]
    fn a_peer_serving_as_requests_come_keeps_the_short_window() {
        let (window, _) = run(200, |_| 1_000_000.0);
        assert_eq!(window.get(), REQUEST_WINDOW);
        assert_eq!(window.backoff, MAX_BACKOFF);
    }

    /// A peer whose rate follows the depth up to a cap: the window stops at the first one
    /// that reaches the cap.
    #[test]
    fn the_window_stops_growing_where_the_rate_does() {
        let capped = |window: Duration| (window.as_secs_f64() * 1_000_000.0).min(1_000_000.0);
        let (window, _) = run(60, capped);
        assert_eq!(window.get(), Duration::from_secs(1));
    }

    /// A choke starts afresh; a tick without requests out ends a probe where it started.
    #[test]
    fn a_choke_or_an_idle_tick_undoes_the_probe() {
        let (mut window, mut now) = run(20, batches);
        assert_eq!(window.get(), MAX_REQUEST_WINDOW);
        now += SECOND;
        window.tick(TickState::Choked, false, now);
        assert_eq!(window.get(), REQUEST_WINDOW);

        for _ in 0..SETTLE_TICKS {
            now += SECOND;
            window.tick(TickState::Busy(500_000.0), false, now);
        }
        assert_eq!(window.get(), 2 * REQUEST_WINDOW, "probing");
        now += SECOND;
        window.tick(TickState::Idle, false, now);
        assert_eq!(window.get(), REQUEST_WINDOW);
    }

    /// A peer 800 ms away whose rate follows the depth, `depth / round trip`: without the
    /// round trip the queue covers 0.5 s and the rate decays to nothing; with it the queue
    /// covers 1 s and the rate grows until the peer's upload caps it. Being crowded
    /// (probing off) does not take the floor away.
    #[test]
    fn the_queue_covers_the_round_trip_even_in_a_crowd() {
        let rtt = Duration::from_millis(800);
        let cap = 1_000_000.0;
        let mut now = Instant::now();
        for (round_trip, expected) in [(None, 0.0), (Some(rtt), cap)] {
            let mut window = RequestWindow::new(now);
            window.set_round_trip(round_trip);
            let mut rate = 200_000.0_f64;
            for _ in 0..40 {
                now += SECOND;
                let depth = rate * window.get().as_secs_f64();
                rate = (depth / rtt.as_secs_f64()).min(cap);
                window.tick(TickState::Busy(rate), true, now);
            }
            assert!((rate - expected).abs() < 1000.0, "{round_trip:?}: {rate}");
        }
        let mut window = RequestWindow::new(now);
        window.set_round_trip(Some(rtt));
        assert_eq!(window.get(), rtt.mul_f64(ROUND_TRIPS_COVERED));
        window.tick(TickState::Choked, false, now);
        assert_eq!(
            window.get(),
            rtt.mul_f64(ROUND_TRIPS_COVERED),
            "kept across a choke"
        );
        window.set_round_trip(Some(Duration::from_millis(40)));
        assert_eq!(
            window.get(),
            REQUEST_WINDOW,
            "a short round trip changes nothing"
        );
    }

    /// A probe doubles the window in use, the round trip's when that is longer.
    #[test]
    fn a_probe_doubles_the_round_trips_window() {
        let mut now = Instant::now();
        let mut window = RequestWindow::new(now);
        let rtt = Duration::from_millis(600);
        window.set_round_trip(Some(rtt));
        for _ in 0..SETTLE_TICKS {
            now += SECOND;
            window.tick(TickState::Busy(500_000.0), false, now);
        }
        assert_eq!(
            window.get(),
            rtt.mul_f64(ROUND_TRIPS_COVERED) * 2,
            "probing"
        );
    }

    /// A crowd is more than [`MAX_SOURCES`] sources, unless the peer is a seed and enough
    /// seeds send, or our queue held the peer back.
    #[test]
    fn a_crowd_spares_seeds_when_several_send_and_peers_our_queue_holds_back() {
        let crowd = |all, seeds| Sources { all, seeds };
        assert!(!crowd(MAX_SOURCES, 0).crowded(false, false));
        assert!(crowd(MAX_SOURCES + 1, 0).crowded(false, false));
        assert!(crowd(MAX_SOURCES + 1, MIN_SEED_SOURCES).crowded(false, false));
        assert!(crowd(MAX_SOURCES + 1, MIN_SEED_SOURCES - 1).crowded(true, false));
        assert!(!crowd(MAX_SOURCES + 1, MIN_SEED_SOURCES).crowded(true, false));
        // A lone seed or a leecher our queue held back.
        assert!(!crowd(MAX_SOURCES + 1, 1).crowded(true, true));
        assert!(!crowd(MAX_SOURCES + 1, 0).crowded(false, true));
        assert!(!crowd(MAX_SOURCES, 0).crowded(false, true));
    }

    /// With more sources than [`MAX_SOURCES`], no probe, and a window won goes back.
    #[test]
    fn a_crowd_of_sources_keeps_the_short_window() {
        let (mut window, mut now) = run(20, batches);
        assert_eq!(window.get(), MAX_REQUEST_WINDOW);
        for _ in 0..30 {
            now += SECOND;
            let rate = batches(window.get());
            window.tick(TickState::Busy(rate), true, now);
            assert_eq!(window.get(), REQUEST_WINDOW);
        }
    }
}
