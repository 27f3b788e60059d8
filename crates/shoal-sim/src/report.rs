//! The result of a run: completion times against the lower bound, waste, fairness, bans.
//!
//! Everything here is a function of the scenario and its seed, so the printed report is
//! byte-identical between runs; host-dependent figures (wall time) are printed by the
//! binary on standard error.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde::Serialize;

use crate::content::HashCheck;
use crate::queue::as_secs;
use crate::scenario::{Bound, Scenario};
use crate::timeline::TimelineRow;
use crate::world::{Outcome, Role};
use shoal_core::units::format_size;
use shoal_swarm::INITIAL_RATE_GUESS;

/// Per-peer completion times in seconds since each peer joined.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub seed: u64,
    pub peers: u32,
    pub seeds: u32,
    pub bad_peers: u32,
    pub file_size: u64,
    pub piece_size: u32,
    pub hash_check: HashCheck,
    pub super_seed: bool,
    pub honest_peers: usize,
    pub completed: usize,
    /// Download times of the honest peers that completed.
    pub completion_s: Option<Spread>,
    /// When the last honest peer completed (virtual seconds since the start); `None`
    /// if some never did.
    pub swarm_completion_s: Option<f64>,
    pub bound_s: Bound,
    pub t_min_s: f64,
    /// T / T_min; `None` if some honest peer never completed.
    pub ratio_to_bound: Option<f64>,
    pub wasted_duplicate_bytes: u64,
    pub wasted_corrupt_bytes: u64,
    /// Pieces accepted with corrupt data (only when the hash check is off).
    pub corrupt_pieces_accepted: u64,
    /// Jain's index of the bytes honest leechers uploaded (1 = all equal).
    pub upload_fairness_jain: f64,
    pub seed_upload_bytes: u64,
    /// Seed upload in copies of the file.
    pub seed_upload_copies: f64,
    pub bad_peers_banned: usize,
    pub honest_peers_banned: usize,
    pub ban_events: usize,
    pub events: u64,
    /// Virtual time at which the run stopped.
    pub end_s: f64,
    /// With `--timeline`: what the swarm did, bucket by bucket.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<TimelineRow>,
}

impl Report {
    pub fn new(scenario: &Scenario, outcome: &Outcome) -> Self {
        let honest: Vec<_> = outcome
            .hosts
            .iter()
            .filter(|h| h.role == Role::Leecher)
            .collect();
        let mut times: Vec<f64> = honest
            .iter()
            .filter_map(|h| Some(as_secs(h.completed_at? - h.joined_at?)))
            .collect();
        times.sort_by(f64::total_cmp);
        let completion_s = (!times.is_empty()).then(|| Spread {
            min: times[0],
            median: times[(times.len() - 1) / 2],
            p99: times[(times.len() * 99).div_ceil(100) - 1],
            max: times[times.len() - 1],
        });
        let all_done = times.len() == honest.len();
        let swarm_completion_s = all_done
            .then(|| honest.iter().filter_map(|h| h.completed_at).max())
            .flatten()
            .map(as_secs);
        let bound = scenario.lower_bound();
        let t_min = bound.t_min();
        let uploads: Vec<f64> = honest.iter().map(|h| h.counters.uploaded as f64).collect();
        let sum: f64 = uploads.iter().sum();
        let squares: f64 = uploads.iter().map(|x| x * x).sum();
        let jain = if squares > 0.0 {
            sum * sum / (uploads.len() as f64 * squares)
        } else {
            1.0
        };
        let seed_upload: u64 = outcome
            .hosts
            .iter()
            .filter(|h| h.role == Role::Seed)
            .map(|h| h.counters.uploaded)
            .sum();
        let banned: BTreeSet<u32> = outcome.bans.iter().map(|&(_, b)| b).collect();
        let role = |id: u32| outcome.hosts[id as usize].role;
        Report {
            seed: scenario.rng_seed,
            peers: scenario.peers,
            seeds: scenario.seeds,
            bad_peers: scenario.bad_peers,
            file_size: scenario.file_size,
            piece_size: scenario.piece_size,
            hash_check: scenario.hash_check,
            super_seed: scenario.super_seed,
            honest_peers: honest.len(),
            completed: times.len(),
            completion_s,
            swarm_completion_s,
            bound_s: bound,
            t_min_s: t_min,
            ratio_to_bound: swarm_completion_s.map(|t| t / t_min),
            wasted_duplicate_bytes: outcome.hosts.iter().map(|h| h.counters.duplicate).sum(),
            wasted_corrupt_bytes: outcome.hosts.iter().map(|h| h.counters.corrupt).sum(),
            corrupt_pieces_accepted: outcome
                .hosts
                .iter()
                .map(|h| h.counters.corrupt_accepted)
                .sum(),
            upload_fairness_jain: jain,
            seed_upload_bytes: seed_upload,
            seed_upload_copies: seed_upload as f64 / scenario.file_size as f64,
            bad_peers_banned: banned.iter().filter(|&&b| role(b) == Role::Bad).count(),
            honest_peers_banned: banned.iter().filter(|&&b| role(b) != Role::Bad).count(),
            ban_events: outcome.bans.len(),
            events: outcome.events,
            end_s: as_secs(outcome.end_time),
            timeline: outcome.timeline.clone(),
        }
    }

    /// The ratio as the last line prints it (`inf` when some honest peer never finished).
    pub fn ratio_line(&self) -> String {
        match self.ratio_to_bound {
            Some(r) => format!("ratio_to_bound={r:.3}"),
            None => "ratio_to_bound=inf".to_owned(),
        }
    }

    /// The human-readable report; its last line is [`Report::ratio_line`].
    pub fn to_text(&self, scenario: &Scenario) -> String {
        let mut out = String::new();
        let s = scenario;
        let _ = writeln!(
            out,
            "scenario: peers={} seeds={} bad_peers={} file={} piece={} seed_up={}/s peer_up={}/s \
             peer_down={}/s latency={}ms loss={} arrival={} churn={} seed={}",
            s.peers,
            s.seeds,
            s.bad_peers,
            format_size(s.file_size),
            format_size(u64::from(s.piece_size)),
            format_size(s.seed_up),
            format_size(s.peer_up),
            format_size(s.peer_down),
            s.latency_ms,
            s.loss,
            s.arrival,
            s.churn,
            s.rng_seed
        );
        if let Some(class) = s.slow_class {
            let _ = writeln!(
                out,
                "slow_peers: {} with up={}/s down={}/s",
                s.slow_peers(),
                format_size(class.up),
                format_size(class.down)
            );
        }
        if s.super_seed {
            let _ = writeln!(out, "seed_mode: super-seeding (BEP 16)");
        }
        if s.initial_rate != Scenario::default().initial_rate {
            let _ = writeln!(
                out,
                "initial_rate_guess: {}/s (engine: {}/s)",
                format_size(s.initial_rate),
                format_size(INITIAL_RATE_GUESS)
            );
        }
        if let Some(leave) = s.seed_leaves_at {
            let _ = writeln!(out, "seeds_leave_at_s: {leave}");
        }
        let _ = writeln!(
            out,
            "hash_check: {}",
            match self.hash_check {
                HashCheck::Sha1 => "sha1 (every piece; digests memoized by content)",
                HashCheck::Off => "OFF (pieces accepted unchecked)",
            }
        );
        let _ = writeln!(
            out,
            "completed: {}/{} honest peers",
            self.completed, self.honest_peers
        );
        if let Some(c) = self.completion_s {
            let _ = writeln!(
                out,
                "peer_completion_s: min={:.3} median={:.3} p99={:.3} max={:.3}",
                c.min, c.median, c.p99, c.max
            );
        }
        match self.swarm_completion_s {
            Some(t) => {
                let _ = writeln!(out, "swarm_completion_T_s: {t:.3}");
            }
            None => {
                let _ = writeln!(
                    out,
                    "swarm_completion_T_s: not reached (stopped at {:.3})",
                    self.end_s
                );
            }
        }
        let b = self.bound_s;
        let _ = writeln!(
            out,
            "T_min_s: {:.3} (F/u_seed={:.3} F/d_min={:.3} N*F/(u_seed+sum_u)={:.3})",
            self.t_min_s, b.seed, b.download, b.aggregate
        );
        let _ = writeln!(
            out,
            "wasted_bytes: duplicate={} corrupt={}",
            self.wasted_duplicate_bytes, self.wasted_corrupt_bytes
        );
        if self.corrupt_pieces_accepted > 0 {
            let _ = writeln!(
                out,
                "corrupt_pieces_accepted: {}",
                self.corrupt_pieces_accepted
            );
        }
        let _ = writeln!(
            out,
            "upload_fairness_jain: {:.4}",
            self.upload_fairness_jain
        );
        let _ = writeln!(
            out,
            "seed_upload_bytes: {} ({:.3} copies)",
            self.seed_upload_bytes, self.seed_upload_copies
        );
        let _ = writeln!(
            out,
            "banned: bad={}/{} honest={} (ban events {})",
            self.bad_peers_banned, self.bad_peers, self.honest_peers_banned, self.ban_events
        );
        let _ = writeln!(out, "events: {}", self.events);
        if !self.timeline.is_empty() {
            out.push_str(&timeline_table(&self.timeline));
        }
        out.push_str(&self.ratio_line());
        out.push('\n');
        out
    }
}

/// The timeline as a table: percentages of the leechers' capacity, and pieces.
fn timeline_table(rows: &[TimelineRow]) -> String {
    let mut out = String::from(
        "timeline: from_s leecher_busy% | idle%: unwanted choking in_transit elsewhere \
         unasked window_full | seed_pieces: new repeat | completed\n",
    );
    let pct = |x: f64| 100.0 * x;
    for r in rows {
        let _ = writeln!(
            out,
            "timeline: {:7.1} {:5.1} | {:5.1} {:5.1} {:5.1} {:5.1} {:5.1} {:5.1} | {:6.1} {:6.1} | {}",
            r.start_s,
            pct(r.leecher_busy),
            pct(r.idle_unwanted),
            pct(r.idle_choking),
            pct(r.idle_in_transit),
            pct(r.idle_elsewhere),
            pct(r.idle_unasked),
            pct(r.idle_window_full),
            r.seed_new_pieces,
            r.seed_repeat_pieces,
            r.completed
        );
    }
    out
}
