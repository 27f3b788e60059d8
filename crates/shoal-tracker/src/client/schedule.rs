//! When to announce, to which tracker, with which event: the sans-IO core of the
//! announce client for one torrent.
//!
//! One *round* walks the trackers in BEP 12 order (tier by tier, front to back), skipping
//! trackers that are backing off after a failure, until one answers. The one that
//! answered moves to the front of its tier and sets the time of the next round (its
//! interval). A failure backs that tracker off (30 s, doubling, at most an hour) and the
//! round goes on to the next tracker; when every tracker is backing off the round ends and
//! the next one starts when the first back-off expires. A tracker that says when to come
//! back (BEP 31 `retry in`) waits at least that long, and one that says never is not
//! asked again, as libtorrent does. At most one announce is in flight,
//! so a dead tracker never delays the download, only the next announce.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use shoal_core::{InfoHash, PeerId};

use super::tiers::Tiers;
use crate::announce::{AnnounceRequest, AnnounceResponse, Event, Progress};
use crate::url::{TrackerUrl, UrlError};
use crate::TrackerError;

/// First back-off after a tracker fails; it doubles with each further failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(30);
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How long after an answer without a `min interval` a round the user asks for waits
/// (Transmission's cool-down between manual announces).
pub const ASKED_WAIT: Duration = Duration::from_secs(60);

/// Who we are, for every announce of one torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientParams {
    pub info_hash: InfoHash,
    /// The peer id of our handshakes: a tracker that lists peer ids tells us apart by it.
    pub peer_id: PeerId,
    /// The same for every announce of the torrent, whatever address it comes from: a
    /// tracker takes it as proof that an announce from another address (the other
    /// family's, or a new one) is the same client's (BEP 7).
    pub key: u32,
    /// The port peers can reach us on.
    pub port: u16,
    pub numwant: Option<u32>,
}

/// An announce the driver should send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceJob {
    /// Identifies the tracker in [`TrackerClient::handle_response`].
    pub tracker: TrackerId,
    pub url: TrackerUrl,
    pub request: AnnounceRequest,
}

/// A stable handle on one tracker of the list (its position changes as tiers reorder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrackerId(usize);

/// What the client learned, for the driver to act on or log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    Peers(Vec<SocketAddr>),
    Answered {
        url: TrackerUrl,
        seeders: Option<u32>,
        leechers: Option<u32>,
    },
    Warning {
        url: TrackerUrl,
        message: String,
    },
    Failed {
        url: TrackerUrl,
        error: TrackerError,
        /// When it is asked again; `None`: never (it said so, BEP 31).
        retry_in: Option<Duration>,
    },
}

#[derive(Debug)]
struct Tracker {
    id: TrackerId,
    url: TrackerUrl,
    /// Told `started` (and not yet `stopped`): it counts us in its swarm.
    started: bool,
    failures: u32,
    retry_at: Option<Instant>,
    /// It said never to come back (BEP 31).
    retired: bool,
    /// The soonest it may be asked again out of turn: its last answer's `min interval`
    /// after it (a minute without one), as trackers expect.
    earliest: Option<Instant>,
    /// Until when it said not to come back (BEP 31 `retry in`), which even the user's
    /// ask keeps to.
    told_to_wait: Option<Instant>,
    tracker_id: Option<Vec<u8>>,
}

impl Tracker {
    /// Whether it may be asked at `now`.
    fn askable(&self, now: Instant) -> bool {
        !self.retired && !matches!(self.retry_at, Some(at) if at > now)
    }
}

/// The announce client for one torrent.
#[derive(Debug)]
pub struct TrackerClient {
    params: ClientParams,
    trackers: Tiers<Tracker>,
    progress: Progress,
    /// `completed` is owed to a tracker that was told `started` while we were leeching.
    completed_pending: bool,
    next_round: Instant,
    /// The round under way was asked for by the user: it waits at a tracker whose `min
    /// interval` has not passed, rather than walk on to the next tier.
    asked: bool,
    /// When the user last asked for a round.
    last_asked: Option<Instant>,
    /// Position in announce order of the next tracker to try in the current round.
    round: Option<usize>,
    in_flight: Option<TrackerId>,
    events: VecDeque<ClientEvent>,
}

impl TrackerClient {
    /// A client for `tiers` of tracker URLs; URLs that cannot be used are returned with
    /// the reason so the caller can say so once.
    pub fn new(
        params: ClientParams,
        tiers: &[Vec<String>],
        progress: Progress,
        now: Instant,
        rng: &mut impl Rng,
    ) -> (Self, Vec<(String, UrlError)>) {
        let mut next = 0;
        let (trackers, rejected) = Tiers::new(tiers, rng, |url| {
            next += 1;
            Tracker {
                id: TrackerId(next),
                url,
                started: false,
                failures: 0,
                retry_at: None,
                retired: false,
                earliest: None,
                told_to_wait: None,
                tracker_id: None,
            }
        });
        let client = TrackerClient {
            params,
            trackers,
            progress,
            completed_pending: false,
            next_round: now,
            asked: false,
            last_asked: None,
            round: None,
            in_flight: None,
            events: VecDeque::new(),
        };
        (client, rejected)
    }

    pub fn tracker_count(&self) -> usize {
        self.trackers.len()
    }

    pub fn set_progress(&mut self, progress: Progress) {
        self.progress = progress;
    }

    /// The download finished: trackers that saw us leech get `completed` at once.
    pub fn completed(&mut self, now: Instant) {
        self.progress.left = 0;
        if self.trackers.iter().any(|t| t.started) {
            self.completed_pending = true;
            self.next_round = self.next_round.min(now);
        }
    }

    /// Peers are to reach us on `port` from now on (a router forwards it to us): a
    /// tracker that knows us at another port hears of it at once.
    pub fn set_port(&mut self, port: u16, now: Instant) {
        if port == self.params.port {
            return;
        }
        self.params.port = port;
        if self.trackers.iter().any(|t| t.started) {
            self.next_round = self.next_round.min(now);
        }
    }

    /// The user asks for peers (Transmission's reannounce, libtorrent's
    /// force_reannounce): a round starts now, in tier order. Trackers backing off after
    /// failures are asked too, unless they said when to come back (BEP 31); the round
    /// waits at one that answered until its `min interval` has passed. Asks within
    /// [`ASKED_WAIT`] of the last are ignored, so that a user (or a script) cannot
    /// hammer failing trackers.
    pub fn reannounce(&mut self, now: Instant) {
        if self.last_asked.is_some_and(|at| now < at + ASKED_WAIT) {
            return;
        }
        self.last_asked = Some(now);
        for t in self.trackers.iter_mut().filter(|t| !t.retired) {
            if t.retry_at.is_some() {
                t.retry_at = t.told_to_wait.filter(|&at| at > now);
            }
        }
        self.asked = true;
        if self.round.is_none() {
            self.next_round = now;
        }
    }

    fn request(&self, t: &Tracker, event: Event) -> AnnounceRequest {
        AnnounceRequest {
            info_hash: self.params.info_hash,
            peer_id: self.params.peer_id,
            port: self.params.port,
            progress: self.progress,
            event,
            numwant: match event {
                Event::Stopped => Some(0),
                _ => self.params.numwant,
            },
            key: self.params.key,
            tracker_id: t.tracker_id.clone(),
        }
    }

    /// The next announce to send, if one is due and none is in flight.
    pub fn poll_announce(&mut self, now: Instant) -> Option<AnnounceJob> {
        // Mid-round `next_round` has passed, unless an asked-for round waits.
        if self.in_flight.is_some() || now < self.next_round {
            return None;
        }
        if self.round.is_none() {
            if self.trackers.is_empty() {
                return None;
            }
            self.round = Some(0);
        }
        let start = self.round.expect("set above");
        let position = self
            .trackers
            .iter()
            .skip(start)
            .position(|t| t.askable(now))
            .map(|p| p + start);
        let Some(position) = position else {
            // Everyone is backing off: try again when the first back-off ends.
            self.round = None;
            self.asked = false;
            self.next_round = self
                .trackers
                .iter()
                .filter(|t| !t.retired)
                .filter_map(|t| t.retry_at)
                .min()
                .unwrap_or(now + FIRST_BACKOFF)
                .max(now);
            return None;
        };
        let t = self.trackers.iter().nth(position).expect("position found");
        if let Some(at) = t.earliest.filter(|&at| self.asked && at > now) {
            // The round asked for waits here, its place kept.
            self.round = Some(position);
            self.next_round = at;
            return None;
        }
        self.round = Some(position + 1);
        let event = if !t.started {
            Event::Started
        } else if self.completed_pending {
            Event::Completed
        } else if self.progress.partial_seed && self.progress.left > 0 {
            // BEP 21, as libtorrent does: every periodic announce of a partial seed.
            Event::Paused
        } else {
            Event::None
        };
        let job = AnnounceJob {
            tracker: t.id,
            url: t.url.clone(),
            request: self.request(t, event),
        };
        self.in_flight = Some(t.id);
        Some(job)
    }

    /// The result of the announce for `job`.
    pub fn handle_response(
        &mut self,
        now: Instant,
        job: &AnnounceJob,
        result: Result<AnnounceResponse, TrackerError>,
    ) {
        if self.in_flight != Some(job.tracker) {
            return;
        }
        self.in_flight = None;
        let Some(position) = self.trackers.iter().position(|t| t.id == job.tracker) else {
            return;
        };
        let t = self.trackers.nth_mut(position).expect("position found");
        match result {
            Ok(response) => {
                t.failures = 0;
                t.retry_at = None;
                t.earliest = Some(now + response.min_interval.unwrap_or(ASKED_WAIT));
                t.started = true;
                if response.tracker_id.is_some() {
                    t.tracker_id = response.tracker_id.clone();
                }
                let url = t.url.clone();
                if job.request.event == Event::Completed || self.progress.left == 0 {
                    self.completed_pending = false;
                }
                self.trackers.promote(position);
                self.round = None;
                self.asked = false;
                let wait = response
                    .min_interval
                    .map_or(response.interval, |m| response.interval.max(m));
                // The port changed while this announce was out: it named the old one.
                self.next_round = match job.request.port == self.params.port {
                    true => now + wait,
                    false => now,
                };
                if let Some(message) = response.warning {
                    self.events.push_back(ClientEvent::Warning {
                        url: url.clone(),
                        message,
                    });
                }
                self.events.push_back(ClientEvent::Answered {
                    url,
                    seeders: response.complete,
                    leechers: response.incomplete,
                });
                if !response.peers.is_empty() {
                    self.events.push_back(ClientEvent::Peers(response.peers));
                }
            }
            Err(error) => {
                t.failures += 1;
                let backoff = FIRST_BACKOFF
                    .saturating_mul(2u32.saturating_pow(t.failures - 1))
                    .min(MAX_BACKOFF);
                let (retry_in, told) = match &error {
                    TrackerError::Backoff { retry, .. } => {
                        (retry.duration().map(|d| d.max(backoff)), retry.duration())
                    }
                    _ => (Some(backoff), None),
                };
                t.told_to_wait = told.map(|d| now + d);
                match retry_in {
                    Some(wait) => t.retry_at = Some(now + wait),
                    None => t.retired = true,
                }
                self.events.push_back(ClientEvent::Failed {
                    url: t.url.clone(),
                    error,
                    retry_in,
                });
            }
        }
    }

    /// When to call [`poll_announce`](Self::poll_announce) again (none while an announce
    /// is in flight: its result comes first).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.in_flight.is_some() || self.trackers.is_empty() {
            return None;
        }
        // Mid-round (after a failure) the next tracker is due at once, and `next_round`
        // is already in the past then.
        Some(self.next_round)
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// `stopped` announces for every tracker that counts us, to send on a clean exit.
    pub fn stop(&mut self) -> Vec<AnnounceJob> {
        self.in_flight = None;
        self.round = None;
        let jobs = self
            .trackers
            .iter()
            .filter(|t| t.started)
            .map(|t| AnnounceJob {
                tracker: t.id,
                url: t.url.clone(),
                request: self.request(t, Event::Stopped),
            })
            .collect();
        for t in self.trackers.iter_mut() {
            t.started = false;
        }
        jobs
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    fn params() -> ClientParams {
        ClientParams {
            info_hash: InfoHash([1; 20]),
            peer_id: PeerId([2; 20]),
            key: 0x5eed,
            port: 6881,
            numwant: Some(50),
        }
    }

    fn ok_response(interval: u64) -> Result<AnnounceResponse, TrackerError> {
        ok(interval, &[])
    }

    fn ok(interval: u64, peers: &[&str]) -> Result<AnnounceResponse, TrackerError> {
        Ok(AnnounceResponse {
            interval: Duration::from_secs(interval),
            peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
            ..Default::default()
        })
    }

    fn client(tiers: &[&[&str]], now: Instant) -> TrackerClient {
        let tiers: Vec<Vec<String>> = tiers
            .iter()
            .map(|t| t.iter().map(|s| s.to_string()).collect())
            .collect();
        let mut rng = StdRng::seed_from_u64(7);
        TrackerClient::new(
            params(),
            &tiers,
            Progress {
                uploaded: 0,
                downloaded: 0,
                left: 100,
                partial_seed: false,
            },
            now,
            &mut rng,
        )
        .0
    }

    fn events(c: &mut TrackerClient) -> Vec<ClientEvent> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    #[test]
    fn started_then_periodic_then_completed_then_stopped() {
        let now = Instant::now();
        let mut c = client(&[&["udp://a:1"]], now);
        let job = c.poll_announce(now).unwrap();
        assert_eq!(job.request.event, Event::Started);
        assert_eq!(job.request.progress.left, 100);
        assert!(c.poll_announce(now).is_none(), "one in flight");
        c.handle_response(now, &job, ok(1800, &["127.0.0.1:5"]));
        assert!(events(&mut c).contains(&ClientEvent::Peers(vec!["127.0.0.1:5".parse().unwrap()])));
        assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(1800)));
        assert!(c.poll_announce(now + Duration::from_secs(1799)).is_none());
        let later = now + Duration::from_secs(1800);
        let job = c.poll_announce(later).unwrap();
        assert_eq!(job.request.event, Event::None);
        c.handle_response(later, &job, ok(1800, &[]));
        c.completed(later);
        let job = c.poll_announce(later).unwrap();
        assert_eq!(
            (job.request.event, job.request.progress.left),
            (Event::Completed, 0)
        );
        c.handle_response(later, &job, ok(1800, &[]));
        let job = c.poll_announce(later + Duration::from_secs(1800)).unwrap();
        assert_eq!(job.request.event, Event::None, "completed is sent once");
        c.handle_response(later, &job, ok(1800, &[]));
        let stops = c.stop();
        assert_eq!(stops.len(), 1);
        assert_eq!(stops[0].request.event, Event::Stopped);
        assert_eq!(stops[0].request.numwant, Some(0));
    }

    /// BEP 31: a tracker's `retry in` holds it back at least that long (a shorter one
    /// than our own back-off does not shorten it), and `never` retires it for good while
    /// the other trackers go on.
    #[test]
    fn retry_in_holds_a_tracker_back_and_never_retires_it() {
        use crate::RetryIn;
        let now = Instant::now();
        let mut c = client(&[&["http://a/announce"], &["http://b/announce"]], now);
        let refuse = |retry| {
            Err(TrackerError::Backoff {
                reason: "busy".into(),
                retry,
            })
        };
        let job = c.poll_announce(now).unwrap();
        assert_eq!(job.url.host, "a");
        c.handle_response(now, &job, refuse(RetryIn::Minutes(10)));
        let failed = events(&mut c);
        assert!(matches!(
            failed.as_slice(),
            [ClientEvent::Failed { retry_in: Some(wait), .. }] if *wait == Duration::from_secs(600)
        ));
        // The round goes on to b, which answers; a is not asked before ten minutes.
        let job = c.poll_announce(now).unwrap();
        assert_eq!(job.url.host, "b");
        c.handle_response(now, &job, ok_response(60));
        let at = |secs| now + Duration::from_secs(secs);
        let job = c.poll_announce(at(60)).unwrap();
        assert_eq!(job.url.host, "b", "a still waits");
        c.handle_response(at(60), &job, refuse(RetryIn::Never));
        assert!(matches!(
            events(&mut c).as_slice(),
            [_, ClientEvent::Failed { retry_in: None, .. }]
        ));
        // b is retired; a's ten minutes are up at 600 s, and then only a is asked.
        assert!(c.poll_announce(at(599)).is_none());
        let job = c.poll_announce(at(600)).unwrap();
        assert_eq!(job.url.host, "a");
        c.handle_response(at(600), &job, refuse(RetryIn::Minutes(0)));
        // Zero minutes is no shorter than our own back-off (30 s, doubled: 60 s).
        assert!(c.poll_announce(at(659)).is_none());
        let job = c.poll_announce(at(660)).unwrap();
        assert_eq!(job.url.host, "a");
        c.handle_response(at(660), &job, refuse(RetryIn::Never));
        // Nobody is left: nothing is announced, ever.
        assert!(c.poll_announce(at(100_000)).is_none());
        assert!(c.poll_announce(at(10_000_000)).is_none());
    }

    #[test]
    fn a_new_port_is_announced_at_once() {
        let now = Instant::now();
        let mut c = client(&[&["udp://a:1"]], now);
        c.set_port(6881, now);
        let job = c.poll_announce(now).unwrap();
        assert_eq!(
            (job.request.event, job.request.port),
            (Event::Started, 6881)
        );
        c.handle_response(now, &job, ok_response(1800));
        assert!(c.poll_announce(now).is_none(), "next round in 30 minutes");
        let later = now + Duration::from_secs(5);
        c.set_port(41234, later);
        let job = c.poll_announce(later).unwrap();
        assert_eq!((job.request.event, job.request.port), (Event::None, 41234));
        c.handle_response(later, &job, ok_response(1800));
        c.set_port(41234, later);
        assert!(
            c.poll_announce(later).is_none(),
            "the same port again is no news"
        );
        // A port that changes while an announce is out goes in the next one at once,
        // even when the one out is the first (`started`) and no tracker was told yet.
        let mut c = client(&[&["udp://a:1"]], now);
        let job = c.poll_announce(now).unwrap();
        c.set_port(42000, now);
        c.handle_response(now, &job, ok_response(1800));
        let job = c.poll_announce(now).expect("announced again");
        assert_eq!(job.request.port, 42000);
    }

    #[test]
    fn a_partial_seed_announces_paused() {
        let now = Instant::now();
        let mut c = client(&[&["http://a/announce"]], now);
        let job = c.poll_announce(now).unwrap();
        assert_eq!(job.request.event, Event::Started);
        c.handle_response(now, &job, ok(1800, &[]));
        // The chosen files are here: every periodic announce says so (BEP 21).
        c.set_progress(Progress {
            left: 60,
            partial_seed: true,
            ..Progress::default()
        });
        let later = now + Duration::from_secs(1800);
        let job = c.poll_announce(later).unwrap();
        assert_eq!(job.request.event, Event::Paused);
        assert_eq!(job.request.event.as_http(), Some("paused"));
        c.handle_response(later, &job, ok(1800, &[]));
        // More files chosen later: a leecher again.
        c.set_progress(Progress {
            left: 60,
            ..Progress::default()
        });
        let job = c.poll_announce(later + Duration::from_secs(1800)).unwrap();
        assert_eq!(job.request.event, Event::None);
        c.handle_response(later, &job, ok(1800, &[]));
        assert_eq!(
            c.stop()[0].request.event,
            Event::Stopped,
            "stopped stays stopped"
        );
    }

    #[test]
    fn fails_over_within_and_across_tiers_and_promotes() {
        let now = Instant::now();
        let mut c = client(&[&["udp://a1:1", "udp://a2:1"], &["udp://b:1"]], now);
        let first = c.poll_announce(now).unwrap();
        c.handle_response(now, &first, Err(TrackerError::Timeout));
        let second = c.poll_announce(now).unwrap();
        assert_ne!(first.url, second.url);
        assert!(second.url.host.starts_with('a'));
        c.handle_response(now, &second, Err(TrackerError::Http(500)));
        let third = c.poll_announce(now).unwrap();
        assert_eq!(third.url.host, "b");
        c.handle_response(now, &third, ok(600, &[]));
        let failed: Vec<_> = events(&mut c)
            .into_iter()
            .filter(|e| matches!(e, ClientEvent::Failed { .. }))
            .collect();
        assert_eq!(failed.len(), 2);

        // Next round: both a's still back off (30 s), so b directly... after 600 s the
        // back-off has expired and tier 1 is tried first again.
        let later = now + Duration::from_secs(600);
        let job = c.poll_announce(later).unwrap();
        assert!(job.url.host.starts_with('a'));
        assert_eq!(job.request.event, Event::Started);
        c.handle_response(later, &job, ok(600, &[]));
        // The one that answered is now first in its tier.
        let job2 = c.poll_announce(later + Duration::from_secs(600)).unwrap();
        assert_eq!(job2.url, job.url);
        assert_eq!(job2.request.event, Event::None);
    }

    #[test]
    fn all_failing_backs_off_exponentially() {
        let now = Instant::now();
        let mut c = client(&[&["udp://a:1"]], now);
        let mut at = now;
        let mut waits = Vec::new();
        for _ in 0..10 {
            let job = c.poll_announce(at).expect("due");
            c.handle_response(at, &job, Err(TrackerError::Timeout));
            assert!(c.poll_announce(at).is_none());
            let next = c.poll_timeout().unwrap();
            waits.push((next - at).as_secs());
            at = next;
        }
        assert_eq!(&waits[..4], &[30, 60, 120, 240]);
        assert_eq!(*waits.last().unwrap(), 3600);
        assert!(c.stop().is_empty(), "no tracker counts us");
    }

    #[test]
    fn a_round_asked_for_asks_failed_trackers_at_once_and_others_after_their_min_interval() {
        let now = Instant::now();
        let mut c = client(&[&["udp://dead:1"], &["udp://live:1"]], now);
        let job = c.poll_announce(now).unwrap();
        assert_eq!(job.url.to_string(), "udp://dead:1");
        c.handle_response(now, &job, Err(TrackerError::Timeout));
        let job = c.poll_announce(now).unwrap();
        let mut r = ok(1800, &[]).unwrap();
        r.min_interval = Some(Duration::from_secs(20));
        c.handle_response(now, &job, Ok(r));
        assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(1800)));
        let asked = now + Duration::from_secs(5);
        c.reannounce(asked);
        // The dead one at once, though it backs off; the live one after its min interval.
        let job = c.poll_announce(asked).unwrap();
        assert_eq!(job.url.to_string(), "udp://dead:1");
        c.handle_response(asked, &job, Err(TrackerError::Timeout));
        assert!(c.poll_announce(asked).is_none());
        let due = now + Duration::from_secs(20);
        assert_eq!(c.poll_timeout(), Some(due));
        assert_eq!(
            c.poll_announce(due).unwrap().url.to_string(),
            "udp://live:1"
        );
    }

    #[test]
    fn a_round_asked_for_keeps_to_the_tier_order_and_is_not_asked_again_at_once() {
        let now = Instant::now();
        let mut c = client(&[&["udp://a:1"], &["udp://b:1"]], now);
        let job = c.poll_announce(now).unwrap();
        let mut r = ok(1800, &[]).unwrap();
        r.min_interval = Some(Duration::from_secs(20));
        c.handle_response(now, &job, Ok(r));
        let asked = now + Duration::from_secs(5);
        c.reannounce(asked);
        // It waits for the working tracker, never walks on to the backup tier.
        assert!(c.poll_announce(asked).is_none());
        let due = now + Duration::from_secs(20);
        assert_eq!(c.poll_timeout(), Some(due));
        let job = c.poll_announce(due).unwrap();
        assert_eq!(job.url.to_string(), "udp://a:1");
        c.handle_response(due, &job, ok_response(1800));
        // Asked again within a minute: nothing sooner than the interval.
        c.reannounce(due + Duration::from_secs(1));
        assert_eq!(c.poll_timeout(), Some(due + Duration::from_secs(1800)));
    }

    #[test]
    fn a_round_asked_for_keeps_to_a_trackers_retry_in() {
        let now = Instant::now();
        let mut c = client(&[&["udp://a:1"]], now);
        let job = c.poll_announce(now).unwrap();
        let refused = TrackerError::Backoff {
            reason: "busy".into(),
            retry: crate::RetryIn::Minutes(60),
        };
        c.handle_response(now, &job, Err(refused));
        c.reannounce(now + Duration::from_secs(1));
        assert!(c.poll_announce(now + Duration::from_secs(1)).is_none());
        assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(3600)));
    }

    #[test]
    fn min_interval_and_stale_responses() {
        let now = Instant::now();
        let mut c = client(&[&["udp://a:1"]], now);
        let job = c.poll_announce(now).unwrap();
        let mut r = ok(60, &[]).unwrap();
        r.min_interval = Some(Duration::from_secs(300));
        r.tracker_id = Some(b"x".to_vec());
        c.handle_response(now, &job, Ok(r));
        assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(300)));
        // A second response for the same job is ignored.
        c.handle_response(now, &job, Err(TrackerError::Timeout));
        assert!(!events(&mut c)
            .iter()
            .any(|e| matches!(e, ClientEvent::Failed { .. })));
        let job = c.poll_announce(now + Duration::from_secs(300)).unwrap();
        assert_eq!(job.request.tracker_id.as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn no_trackers_means_nothing_to_do() {
        let now = Instant::now();
        let mut c = client(&[&["wss://x/"]], now);
        assert_eq!(c.tracker_count(), 0);
        assert!(c.poll_announce(now).is_none());
        assert!(c.poll_timeout().is_none());
    }

    proptest::proptest! {
        /// Random answers from a random set of tiers: one announce at a time, only
        /// listed trackers, `started` until a tracker has answered, the time-out always
        /// leads to an announce (no stall), and `stop` covers exactly the trackers that
        /// answered.
        #[test]
        fn schedule_invariants(
            tiers in proptest::collection::vec(1usize..4, 1..4),
            answers in proptest::collection::vec(proptest::bool::ANY, 1..60),
        ) {
            let mut n = 0;
            let urls: Vec<Vec<String>> = tiers
                .iter()
                .map(|&k| (0..k).map(|_| { n += 1; format!("udp://t{n}:1") }).collect())
                .collect();
            let tiers_ref: Vec<Vec<&str>> = urls.iter().map(|t| t.iter().map(String::as_str).collect()).collect();
            let tiers_ref: Vec<&[&str]> = tiers_ref.iter().map(Vec::as_slice).collect();
            let mut now = Instant::now();
            let mut c = client(&tiers_ref, now);
            let mut answered = std::collections::HashSet::new();
            for ok in answers {
                // Advance to the next due time; something must be due then.
                let due = c.poll_timeout().expect("trackers and nothing in flight");
                now = now.max(due);
                let job = match c.poll_announce(now) {
                    Some(job) => job,
                    None => {
                        // The round ended with everyone backing off: the next time-out
                        // lies ahead and then there is a job.
                        let next = c.poll_timeout().unwrap();
                        proptest::prop_assert!(next > now);
                        now = next;
                        c.poll_announce(now).expect("due after the back-off")
                    }
                };
                proptest::prop_assert!(urls.iter().flatten().any(|u| TrackerUrl::parse(u).unwrap() == job.url));
                proptest::prop_assert!(c.poll_announce(now).is_none(), "one in flight");
                proptest::prop_assert_eq!(job.request.event == Event::Started, !answered.contains(&job.url));
                if ok {
                    answered.insert(job.url.clone());
                    c.handle_response(now, &job, ok_response(60));
                } else {
                    c.handle_response(now, &job, Err(TrackerError::Timeout));
                }
                while c.poll_event().is_some() {}
            }
            let stopped: std::collections::HashSet<_> = c.stop().into_iter().map(|j| j.url).collect();
            proptest::prop_assert_eq!(stopped, answered);
        }
    }
}
