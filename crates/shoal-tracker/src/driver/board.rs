//! What each tracker of a torrent last said, kept for a user interface (the daemon's
//! torrent view, as Transmission's tracker list shows it), and the user's asks to
//! announce now.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::client::ClientEvent;

/// How long an answer outweighs another announcer's failure with the same tracker.
const ANSWER_HOLDS: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// One tracker's last answer, or why it gave none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackerStatus {
    /// Seeders and leechers, as its last answer counted them.
    pub seeders: Option<u32>,
    pub leechers: Option<u32>,
    /// When it last answered.
    pub answered: Option<SystemTime>,
    /// Its last warning or failure (an answer clears a failure).
    pub message: Option<String>,
    /// Failures since its last answer.
    pub failures: u32,
}

/// The trackers of a torrent by URL, shared by its announcers (one per address family
/// and swarm) and read by whoever shows them; and a count of the user's asks for an
/// announce, which each announcer follows.
#[derive(Debug, Clone)]
pub struct TrackerBoard {
    said: Arc<Mutex<BTreeMap<String, TrackerStatus>>>,
    asked: watch::Sender<u64>,
}

impl Default for TrackerBoard {
    fn default() -> Self {
        TrackerBoard {
            said: Arc::default(),
            asked: watch::channel(0).0,
        }
    }
}

impl TrackerBoard {
    /// The user asks for an announce now (as the trackers' `min interval` allows).
    pub fn ask_again(&self) {
        self.asked.send_modify(|asks| *asks += 1);
    }

    /// The asks from now on, for an announcer to follow.
    pub fn asks(&self) -> watch::Receiver<u64> {
        self.asked.subscribe()
    }

    /// Every tracker heard of so far.
    pub fn statuses(&self) -> Vec<(String, TrackerStatus)> {
        let board = self.said.lock().unwrap_or_else(|e| e.into_inner());
        board
            .iter()
            .map(|(url, status)| (url.clone(), status.clone()))
            .collect()
    }

    /// A tracker is to be announced to (listed before it says anything).
    pub fn list(&self, url: &str) {
        let mut board = self.said.lock().unwrap_or_else(|e| e.into_inner());
        board.entry(url.to_owned()).or_default();
    }

    /// What an announce brought.
    pub fn record(&self, event: &ClientEvent, now: SystemTime) {
        let mut board = self.said.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            ClientEvent::Peers(_) => {}
            ClientEvent::Answered {
                url,
                seeders,
                leechers,
            } => {
                let status = board.entry(url.to_string()).or_default();
                (status.seeders, status.leechers) = (*seeders, *leechers);
                status.answered = Some(now);
                status.failures = 0;
                status.message = None;
            }
            ClientEvent::Warning { url, message } => {
                let status = board.entry(url.to_string()).or_default();
                status.message = Some(format!("warning: {message}"));
            }
            ClientEvent::Failed {
                url,
                error,
                retry_in,
            } => {
                let status = board.entry(url.to_string()).or_default();
                // Another announcer (the other address family, a hybrid's other swarm)
                // had an answer from it lately: it works, over that one.
                let lately =
                    |at: SystemTime| now.duration_since(at).unwrap_or_default() < ANSWER_HOLDS;
                if status.answered.is_some_and(lately) {
                    return;
                }
                status.failures += 1;
                status.message = Some(match retry_in {
                    Some(wait) => format!("{error} (again in {} s)", wait.as_secs()),
                    None => format!("{error} (not asked again)"),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TrackerError;

    #[test]
    fn answers_and_failures_are_kept_per_tracker() {
        let board = TrackerBoard::default();
        let url = crate::TrackerUrl::parse("udp://tracker.example:6969").unwrap();
        board.list(&url.to_string());
        assert_eq!(board.statuses()[0].1, TrackerStatus::default());
        let failed = ClientEvent::Failed {
            url: url.clone(),
            error: TrackerError::BadResponse("garbage"),
            retry_in: Some(std::time::Duration::from_secs(60)),
        };
        let later = SystemTime::UNIX_EPOCH + ANSWER_HOLDS;
        board.record(&failed, SystemTime::UNIX_EPOCH);
        board.record(&failed, SystemTime::UNIX_EPOCH);
        let (_, status) = &board.statuses()[0];
        assert_eq!(status.failures, 2);
        assert!(status.message.as_deref().unwrap().contains("again in 60 s"));
        let answered = ClientEvent::Answered {
            url: url.clone(),
            seeders: Some(3),
            leechers: Some(9),
        };
        board.record(&answered, SystemTime::UNIX_EPOCH);
        let (listed, status) = &board.statuses()[0];
        assert_eq!(listed, &url.to_string());
        assert_eq!(
            (status.seeders, status.leechers, status.failures),
            (Some(3), Some(9), 0)
        );
        assert_eq!(status.message, None);
        // Another family failing with it right after is not its failure; later it is.
        board.record(&failed, SystemTime::UNIX_EPOCH);
        assert_eq!(board.statuses()[0].1.failures, 0);
        board.record(&failed, later);
        assert_eq!(board.statuses()[0].1.failures, 1);
    }
}
