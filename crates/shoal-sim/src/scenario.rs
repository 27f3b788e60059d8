//! What to simulate: the swarm, the links and the faults, and the lower bound on the
//! swarm's completion time that the result is measured against.

use shoal_swarm::INITIAL_RATE_GUESS;

use crate::content::HashCheck;

/// When leechers arrive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// All at time zero.
    Flash,
    /// A Poisson process of this many peers per second, starting at time zero.
    Poisson(f64),
}

impl std::str::FromStr for Arrival {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "flash" {
            return Ok(Arrival::Flash);
        }
        let rate = text
            .strip_prefix("poisson:")
            .and_then(|r| r.parse::<f64>().ok())
            .filter(|r| r.is_finite() && *r > 0.0)
            .ok_or_else(|| {
                format!("`{text}`: expected flash or poisson:RATE (peers per second)")
            })?;
        Ok(Arrival::Poisson(rate))
    }
}

impl std::fmt::Display for Arrival {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arrival::Flash => write!(f, "flash"),
            Arrival::Poisson(rate) => write!(f, "poisson:{rate}"),
        }
    }
}

/// A class of leechers with other link rates than `peer_up`/`peer_down` (for example
/// ADSL-like peers with a tenth of the upload).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkClass {
    /// Fraction of the honest leechers in this class.
    pub fraction: f64,
    pub up: u64,
    pub down: u64,
}

/// One simulated swarm. Sizes in bytes, rates in bytes per second, times in seconds.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Leechers, bad ones included.
    pub peers: u32,
    pub seeds: u32,
    pub file_size: u64,
    pub piece_size: u32,
    pub seed_up: u64,
    pub peer_up: u64,
    pub peer_down: u64,
    /// Mean one-way latency of a link, in milliseconds.
    pub latency_ms: f64,
    /// Probability that a TCP segment is lost.
    pub loss: f64,
    pub arrival: Arrival,
    /// Fraction of honest leechers that crash once and rejoin.
    pub churn: f64,
    /// Leechers that serve corrupt blocks.
    pub bad_peers: u32,
    /// Seed of every random choice of the run.
    pub rng_seed: u64,
    /// The seeds leave at this time.
    pub seed_leaves_at: Option<f64>,
    pub slow_class: Option<LinkClass>,
    pub hash_check: HashCheck,
    /// The seeds super-seed (BEP 16).
    pub super_seed: bool,
    /// Bytes per second assumed for a peer not yet measured, for its request queue depth.
    pub initial_rate: u64,
    /// Peers a host dials when it joins (the tracker's answer).
    pub dial: u32,
    /// Connections a host accepts at most.
    pub max_connections: u32,
    /// The run stops at this virtual time even if peers are still downloading.
    pub max_time: f64,
    /// Record a timeline in buckets of this many seconds (`crate::timeline`).
    pub timeline: Option<f64>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            peers: 100,
            seeds: 1,
            file_size: 64 << 20,
            piece_size: 256 << 10,
            seed_up: 1 << 20,
            peer_up: 1 << 20,
            peer_down: 8 << 20,
            latency_ms: 40.0,
            loss: 0.0,
            arrival: Arrival::Flash,
            churn: 0.0,
            bad_peers: 0,
            rng_seed: 1,
            seed_leaves_at: None,
            slow_class: None,
            hash_check: HashCheck::Sha1,
            super_seed: false,
            initial_rate: INITIAL_RATE_GUESS,
            dial: 25,
            max_connections: 50,
            max_time: 3600.0,
            timeline: None,
        }
    }
}

/// Why a scenario cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scenario: {0}")]
pub struct ScenarioError(pub String);

impl Scenario {
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let fail = |what: &str| Err(ScenarioError(what.to_owned()));
        if self.seeds == 0 {
            return fail("at least one seed is needed");
        }
        if self.peers == 0 || self.bad_peers >= self.peers {
            return fail("there must be at least one honest peer (bad peers count among --peers)");
        }
        if self.file_size == 0 || self.file_size > 4 << 30 {
            return fail("the file size must be between 1 byte and 4 GiB");
        }
        if self.piece_size < 16 << 10 || !self.piece_size.is_power_of_two() {
            return fail("the piece size must be a power of two of at least 16 KiB");
        }
        if self.file_size.div_ceil(u64::from(self.piece_size)) > 1 << 20 {
            return fail("more than 2^20 pieces");
        }
        if self.seed_up == 0 || self.peer_up == 0 || self.peer_down == 0 || self.initial_rate == 0 {
            return fail("rates must be positive");
        }
        if !(0.0..=10_000.0).contains(&self.latency_ms) {
            return fail("latency must be between 0 and 10000 ms");
        }
        if !(0.0..0.5).contains(&self.loss) {
            return fail("loss must be in [0, 0.5)");
        }
        if !(0.0..=1.0).contains(&self.churn) {
            return fail("churn is a fraction in [0, 1]");
        }
        if let Some(class) = self.slow_class {
            if !(0.0..=1.0).contains(&class.fraction) || class.up == 0 || class.down == 0 {
                return fail("a link class needs a fraction in [0, 1] and positive rates");
            }
        }
        if self
            .timeline
            .is_some_and(|secs| !(secs >= 0.001 && secs <= self.max_time))
        {
            return fail("a timeline bucket must be between 1 ms and the run's time limit");
        }
        if self.dial == 0 || self.max_connections < self.dial {
            return fail("dial at least one peer, and accept at least as many as dialled");
        }
        if !(self.max_time > 0.0 && self.max_time <= 1e7) {
            return fail("max time must be positive (and below 10^7 s)");
        }
        Ok(())
    }

    pub fn honest_peers(&self) -> u32 {
        self.peers - self.bad_peers
    }

    /// Honest leechers in the slow link class (the first ones after the bad peers).
    pub fn slow_peers(&self) -> u32 {
        self.slow_class.map_or(0, |c| {
            (f64::from(self.honest_peers()) * c.fraction).round() as u32
        })
    }

    /// The Kumar & Ross lower bound on the time for every honest leecher to finish:
    /// `max(F/u_seed, F/d_min, N·F/(u_seed + Σu_i))`, with `u_seed` the seeds' total
    /// upload and N, u_i, d_min over honest leechers (bad peers' upload is worthless).
    /// It assumes every leecher is there at time zero; with Poisson arrivals it is only a
    /// reference point.
    pub fn lower_bound(&self) -> Bound {
        let f = self.file_size as f64;
        let u_seed = f64::from(self.seeds) * self.seed_up as f64;
        let slow = self.slow_peers();
        let fast = self.honest_peers() - slow;
        let class = self.slow_class.unwrap_or(LinkClass {
            fraction: 0.0,
            up: self.peer_up,
            down: self.peer_down,
        });
        let sum_up = f64::from(fast) * self.peer_up as f64 + f64::from(slow) * class.up as f64;
        let d_min = if slow > 0 {
            self.peer_down.min(class.down)
        } else {
            self.peer_down
        } as f64;
        let n = f64::from(self.honest_peers());
        Bound {
            seed: f / u_seed,
            download: f / d_min,
            aggregate: n * f / (u_seed + sum_up),
        }
    }
}

/// The three terms of the lower bound, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Bound {
    /// F / u_seed: the seed must send every byte once.
    pub seed: f64,
    /// F / d_min: the slowest downloader must receive every byte.
    pub download: f64,
    /// N·F / (u_seed + Σu_i): all bytes received need that much upload.
    pub aggregate: f64,
}

impl Bound {
    pub fn t_min(&self) -> f64 {
        self.seed.max(self.download).max(self.aggregate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_of_the_flagship_scenario() {
        let s = Scenario {
            peers: 1000,
            ..Scenario::default()
        };
        let b = s.lower_bound();
        assert_eq!(b.seed, 64.0);
        assert_eq!(b.download, 8.0);
        assert!((b.aggregate - 1000.0 * 64.0 / 1001.0).abs() < 1e-9);
        assert_eq!(b.t_min(), 64.0);
        assert_eq!("poisson:2.5".parse(), Ok(Arrival::Poisson(2.5)));
        assert!("poisson:-1".parse::<Arrival>().is_err());
        assert!(s.validate().is_ok());
    }
}
