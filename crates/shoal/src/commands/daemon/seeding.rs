//! How long a daemon's torrents seed. Each torrent's totals add up over all its runs
//! and are kept in the list, so a restart does not start its ratio or seeding time from
//! zero again (Transmission's uploadedEver). A torrent's seed limits are its own, or
//! else the session's (`--seed-ratio`, `--seed-time`); both change while it runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_engine::SeedLimit;

/// What a torrent has moved over all its runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub uploaded: u64,
    pub downloaded: u64,
    /// Seconds spent seeding what it wants.
    pub seeding_secs: u64,
}

impl Totals {
    /// These totals and a run's figures so far.
    pub fn and(&self, uploaded: u64, downloaded: u64, seeding: Duration) -> Totals {
        Totals {
            uploaded: self.uploaded.saturating_add(uploaded),
            downloaded: self.downloaded.saturating_add(downloaded),
            seeding_secs: self.seeding_secs.saturating_add(seeding.as_secs()),
        }
    }

    /// Bytes uploaded for each byte of `size` (what the torrent holds), as the seed ratio
    /// counts them.
    pub fn ratio(&self, size: u64) -> f64 {
        match size {
            0 => 0.0,
            size => self.uploaded as f64 / size as f64,
        }
    }
}

/// One seed limit as set: the session's (for a torrent), none at all, or a value (a
/// ratio, or minutes). In JSON: `"session"`, `"none"`, or the number.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Limit {
    #[default]
    Session,
    Unlimited,
    At(f64),
}

impl Limit {
    pub fn is_session(&self) -> bool {
        *self == Limit::Session
    }

    /// The limit as `shoal remote` takes it: a number, `none` or `session`.
    pub fn parse(text: &str) -> Result<Limit, String> {
        match text.trim() {
            "session" => Ok(Limit::Session),
            "none" => Ok(Limit::Unlimited),
            number => match number.parse::<f64>() {
                Ok(n) if Limit::valid(n) => Ok(Limit::At(n)),
                _ => Err(format!("'{text}': give a number, `none` or `session`")),
            },
        }
    }

    /// A ratio, or minutes: not negative, and not beyond what a `Duration` holds.
    fn valid(n: f64) -> bool {
        n.is_finite() && (0.0..=1e9).contains(&n)
    }

    /// Its value, or else the session's (`None`: no limit).
    fn or<T>(self, session: Option<T>, value: impl Fn(f64) -> Option<T>) -> Option<T> {
        match self {
            Limit::Session => session,
            Limit::Unlimited => None,
            Limit::At(n) => value(n),
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::Session => serializer.serialize_str("session"),
            Limit::Unlimited => serializer.serialize_str("none"),
            Limit::At(n) => serializer.serialize_f64(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Number(f64),
            Word(String),
        }
        match Given::deserialize(deserializer)? {
            Given::Number(n) if Limit::valid(n) => Ok(Limit::At(n)),
            Given::Number(n) => Err(serde::de::Error::custom(format!(
                "{n}: not a seed limit (0 or more)"
            ))),
            Given::Word(word) => Limit::parse(&word).map_err(serde::de::Error::custom),
        }
    }
}

/// A torrent's own seed limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Goals {
    /// Bytes uploaded for each byte held (0 is no limit, as for `get --seed-ratio`).
    #[serde(default, skip_serializing_if = "Limit::is_session")]
    pub seed_ratio: Limit,
    /// Minutes of seeding (0 stops once complete, as for `get --seed-time`).
    #[serde(default, skip_serializing_if = "Limit::is_session")]
    pub seed_time: Limit,
}

impl Goals {
    /// The limits that hold for the torrent: each its own, else the session's.
    pub fn limit(&self, session: SeedLimit) -> SeedLimit {
        SeedLimit {
            ratio: self
                .seed_ratio
                .or(session.ratio, |r| Some(r).filter(|&r| r > 0.0)),
            time: self
                .seed_time
                .or(session.time, |m| Some(Duration::from_secs_f64(m * 60.0))),
        }
    }

    /// These goals with each limit that is given in place of its own.
    pub fn with(&self, seed_ratio: Option<Limit>, seed_time: Option<Limit>) -> Goals {
        Goals {
            seed_ratio: seed_ratio.unwrap_or(self.seed_ratio),
            seed_time: seed_time.unwrap_or(self.seed_time),
        }
    }
}

/// The session's limits with each one given in place of its own (`session` means
/// nothing there).
pub fn session_limit(
    limit: SeedLimit,
    seed_ratio: Option<Limit>,
    seed_time: Option<Limit>,
) -> Result<SeedLimit, String> {
    if seed_ratio == Some(Limit::Session) || seed_time == Some(Limit::Session) {
        return Err("the session's limits are a number or `none`".into());
    }
    let own = Goals::default().with(seed_ratio, seed_time);
    Ok(own.limit(limit))
}

/// Limits as the API shows them: numbers, or `"none"`.
pub fn shown(limit: SeedLimit) -> (Limit, Limit) {
    let ratio = limit.ratio.map_or(Limit::Unlimited, Limit::At);
    let time = limit
        .time
        .map_or(Limit::Unlimited, |t| Limit::At(t.as_secs_f64() / 60.0));
    (ratio, time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torrents_own_limits_come_before_the_sessions() {
        let session = SeedLimit {
            ratio: Some(2.0),
            time: Some(Duration::from_secs(600)),
        };
        assert_eq!(Goals::default().limit(session), session);
        let own = Goals {
            seed_ratio: Limit::At(0.5),
            seed_time: Limit::Unlimited,
        };
        let limit = own.limit(session);
        assert_eq!(limit.ratio, Some(0.5));
        assert_eq!(limit.time, None);
        // A ratio of 0 is no limit; 0 minutes stops at once.
        let zero = Goals {
            seed_ratio: Limit::At(0.0),
            seed_time: Limit::At(0.0),
        };
        assert_eq!(zero.limit(session).ratio, None);
        assert_eq!(zero.limit(session).time, Some(Duration::ZERO));
        let changed = own.with(Some(Limit::Session), None);
        assert_eq!(changed.limit(session).ratio, Some(2.0));
        assert_eq!(changed.seed_time, Limit::Unlimited);
    }

    #[test]
    fn limits_read_and_write_as_numbers_or_words() {
        let goals: Goals =
            serde_json::from_str(r#"{"seed_ratio": 1.5, "seed_time": "none"}"#).unwrap();
        assert_eq!(goals.seed_ratio, Limit::At(1.5));
        assert_eq!(goals.seed_time, Limit::Unlimited);
        let text = serde_json::to_string(&goals).unwrap();
        assert_eq!(text, r#"{"seed_ratio":1.5,"seed_time":"none"}"#);
        // The session's, the default, is not written.
        let plain = serde_json::to_string(&Goals::default()).unwrap();
        assert_eq!(plain, "{}");
        assert_eq!(
            serde_json::from_str::<Goals>("{}").unwrap(),
            Goals::default()
        );
        for bad in [r#"{"seed_ratio": -1}"#, r#"{"seed_ratio": "lots"}"#] {
            assert!(serde_json::from_str::<Goals>(bad).is_err(), "{bad}");
        }
        assert_eq!(Limit::parse("session"), Ok(Limit::Session));
        assert_eq!(Limit::parse(" 2 "), Ok(Limit::At(2.0)));
        assert!(Limit::parse("inf").is_err());
        assert!(Limit::parse("-0.5").is_err());
    }

    #[test]
    fn the_session_takes_numbers_or_none() {
        let limit = SeedLimit::default();
        let set = session_limit(limit, Some(Limit::At(1.0)), Some(Limit::At(90.0))).unwrap();
        assert_eq!(set.ratio, Some(1.0));
        assert_eq!(set.time, Some(Duration::from_secs(5400)));
        assert_eq!(shown(set), (Limit::At(1.0), Limit::At(90.0)));
        let lifted = session_limit(set, Some(Limit::Unlimited), None).unwrap();
        assert_eq!(lifted.ratio, None);
        assert_eq!(lifted.time, set.time, "what is not given stays");
        assert!(session_limit(set, Some(Limit::Session), None).is_err());
    }

    #[test]
    fn totals_add_a_run_to_the_ones_before() {
        let before = Totals {
            uploaded: 100,
            downloaded: 50,
            seeding_secs: 60,
        };
        let now = before.and(100, 0, Duration::from_millis(30_900));
        assert_eq!(now.uploaded, 200);
        assert_eq!(now.seeding_secs, 90);
        assert_eq!(now.ratio(100), 2.0);
        assert_eq!(Totals::default().ratio(0), 0.0);
    }
}
