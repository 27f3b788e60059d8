//! What the swarm did over time (`--timeline SECS`): per bucket of virtual time, how busy
//! the leechers' uplinks were and, while one idled, why; how many pieces the seeds sent
//! for the first time and again; how many peers had completed.
//!
//! The swarm cannot finish before the leechers have uploaded every copy the seeds did
//! not, so when their upload capacity is what bounds T, every second an uplink idles
//! adds to T. This is how the flash crowd's distance to the bound was taken apart
//! (docs/BENCHMARKS.md).

use serde::Serialize;

use crate::queue::{as_secs, Nanos};

/// Why a downloading leecher's uplink had nothing to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// No connected peer wants any of its pieces.
    Unwanted,
    /// Peers want its pieces, but it chokes all of them.
    Choking,
    /// It unchokes peers that want its pieces, none of them has a request queued, none
    /// could ask for a piece of ours that nobody sends it yet, and one of them, with
    /// requests out to us, has bytes on the wire to us: a request, presumably.
    InTransit,
    /// It unchokes peers that want its pieces, none of them has a request queued, and
    /// every piece of ours they lack is on its way to them, from us or from others.
    Elsewhere,
    /// It unchokes peers that want its pieces, none of them has a request queued, and
    /// one of them could ask for a piece of ours that nobody sends it yet (it may not
    /// know yet that we unchoke it).
    Unasked,
    /// Data is queued, but every such connection's TCP window is full.
    WindowFull,
}

const REASONS: usize = 6;

impl Idle {
    fn index(self) -> usize {
        match self {
            Idle::Unwanted => 0,
            Idle::Choking => 1,
            Idle::InTransit => 2,
            Idle::Elsewhere => 3,
            Idle::Unasked => 4,
            Idle::WindowFull => 5,
        }
    }
}

/// One bucket of the timeline. Fractions are of the bucket's leecher capacity: every
/// leecher's upload rate (or leecher-time, for the idle reasons) over the bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineRow {
    pub start_s: f64,
    /// Bytes the leechers sent over what all of them could have sent.
    pub leecher_busy: f64,
    pub idle_unwanted: f64,
    pub idle_choking: f64,
    pub idle_in_transit: f64,
    pub idle_elsewhere: f64,
    pub idle_unasked: f64,
    pub idle_window_full: f64,
    /// Pieces' worth of first copies the seeds sent (each seed counts its own).
    pub seed_new_pieces: f64,
    /// Pieces' worth of copies the seeds had sent before.
    pub seed_repeat_pieces: f64,
    /// Honest leechers completed by the bucket's end.
    pub completed: usize,
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    leecher_bytes: u64,
    seed_new_bytes: u64,
    seed_repeat_bytes: u64,
    idle: [Nanos; REASONS],
    completed: usize,
}

/// The timeline being recorded. See the module documentation.
#[derive(Debug, Clone)]
pub struct Timeline {
    bucket: Nanos,
    buckets: Vec<Bucket>,
}

impl Timeline {
    /// Buckets of `bucket` nanoseconds (at least one).
    pub fn new(bucket: Nanos) -> Self {
        Timeline {
            bucket: bucket.max(1),
            buckets: Vec::new(),
        }
    }

    fn at(&mut self, time: Nanos) -> &mut Bucket {
        let index = usize::try_from(time / self.bucket).unwrap_or(usize::MAX);
        if self.buckets.len() <= index {
            self.buckets.resize(index + 1, Bucket::default());
        }
        &mut self.buckets[index]
    }

    /// A leecher's uplink sent `bytes` at `time`.
    pub fn leecher_sent(&mut self, time: Nanos, bytes: u64) {
        self.at(time).leecher_bytes += bytes;
    }

    /// A seed served `new` payload bytes of first copies and `repeat` of further ones.
    pub fn seed_served(&mut self, time: Nanos, new: u64, repeat: u64) {
        let bucket = self.at(time);
        bucket.seed_new_bytes += new;
        bucket.seed_repeat_bytes += repeat;
    }

    /// A downloading leecher's uplink idled from `from` to `to`, for `why`.
    pub fn idled(&mut self, from: Nanos, to: Nanos, why: Idle) {
        let mut start = from;
        while start < to {
            let end = to.min((start / self.bucket + 1) * self.bucket);
            self.at(start).idle[why.index()] += end - start;
            start = end;
        }
    }

    /// An honest leecher completed at `time`.
    pub fn completed(&mut self, time: Nanos) {
        self.at(time).completed += 1;
    }

    /// The rows up to `end`, given the leechers' total upload rate (bytes per second),
    /// their number, and the piece size.
    pub fn rows(
        mut self,
        end: Nanos,
        leecher_rate: u64,
        leechers: usize,
        piece_size: u32,
    ) -> Vec<TimelineRow> {
        self.at(end);
        let seconds = as_secs(self.bucket);
        let capacity = leecher_rate as f64 * seconds;
        let leecher_time = leechers as f64 * self.bucket as f64;
        let piece = f64::from(piece_size);
        let share = |part: f64, whole: f64| if whole > 0.0 { part / whole } else { 0.0 };
        let mut completed = 0;
        self.buckets
            .iter()
            .enumerate()
            .map(|(index, b)| {
                completed += b.completed;
                let idle = |reason: Idle| share(b.idle[reason.index()] as f64, leecher_time);
                TimelineRow {
                    start_s: index as f64 * seconds,
                    leecher_busy: share(b.leecher_bytes as f64, capacity),
                    idle_unwanted: idle(Idle::Unwanted),
                    idle_choking: idle(Idle::Choking),
                    idle_in_transit: idle(Idle::InTransit),
                    idle_elsewhere: idle(Idle::Elsewhere),
                    idle_unasked: idle(Idle::Unasked),
                    idle_window_full: idle(Idle::WindowFull),
                    seed_new_pieces: b.seed_new_bytes as f64 / piece,
                    seed_repeat_pieces: b.seed_repeat_bytes as f64 / piece,
                    completed,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::SECOND;

    #[test]
    fn spans_split_at_bucket_edges_and_completions_accumulate() {
        let mut timeline = Timeline::new(5 * SECOND);
        timeline.idled(4 * SECOND, 11 * SECOND, Idle::Unasked);
        timeline.leecher_sent(SECOND, 5 << 20);
        timeline.seed_served(6 * SECOND, 1 << 18, 1 << 17);
        timeline.completed(7 * SECOND);
        timeline.completed(12 * SECOND);
        // Two leechers at 1 MiB/s each: 10 MiB per 5 s bucket.
        let rows = timeline.rows(12 * SECOND, 2 << 20, 2, 1 << 18);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].leecher_busy, 0.5);
        assert_eq!(rows[0].idle_unasked, 0.1, "1 s of 10 leecher-seconds");
        assert_eq!(rows[1].idle_unasked, 0.5);
        assert_eq!(rows[2].idle_unasked, 0.1);
        assert_eq!(rows[1].seed_new_pieces, 1.0);
        assert_eq!(rows[1].seed_repeat_pieces, 0.5);
        assert_eq!(
            rows.iter().map(|r| r.completed).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(rows[2].start_s, 10.0);
    }
}
