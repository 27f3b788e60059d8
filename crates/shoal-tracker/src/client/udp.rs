//! One UDP tracker (BEP 15) as a sans-IO state machine: connect, then announce or
//! scrape, with the BEP's retransmission back-off.
//!
//! A connection id is reused for up to a minute after it arrived; a request whose id has
//! expired by the time it is (re)sent goes back to connecting first. Responses whose
//! transaction id does not match the outstanding request are dropped, which is what makes
//! spoofed replies from other addresses useless without the id.

use std::time::{Duration, Instant};

use rand::RngCore;
use shoal_core::InfoHash;

use crate::announce::{clamp_interval, AnnounceRequest, AnnounceResponse, ScrapeCounts};
use crate::udp::{Request, Response, UdpAnnounce};
use crate::TrackerError;

/// How long a connection id may be used after the tracker issued it (BEP 15).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpConfig {
    /// The first wait for a reply; each retransmission doubles it (BEP 15: 15 s).
    pub base_timeout: Duration,
    /// Retransmissions before giving up on this tracker for now. BEP 15 allows 8
    /// (an hour); 2 means the next tracker is tried after 15 + 30 + 60 s.
    pub max_retransmits: u32,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            base_timeout: Duration::from_secs(15),
            max_retransmits: 2,
        }
    }
}

/// What to ask the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpOperation {
    Announce(AnnounceRequest),
    Scrape(Vec<InfoHash>),
}

/// What the tracker answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpOutcome {
    Announce(AnnounceResponse),
    Scrape(Vec<ScrapeCounts>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    Requesting(u64),
}

#[derive(Debug)]
struct Pending {
    operation: UdpOperation,
    stage: Stage,
    transaction: u32,
    /// Retransmissions so far (the `n` of 15·2^n).
    attempt: u32,
    deadline: Instant,
}

/// The client side of one UDP tracker.
#[derive(Debug)]
pub struct UdpTracker {
    config: UdpConfig,
    /// Peers in announce replies are 18 bytes when the tracker is reached over IPv6.
    ipv6: bool,
    /// The tracker URL's path and query, sent with each announce (BEP 41).
    url_data: Vec<u8>,
    connection: Option<(u64, Instant)>,
    pending: Option<Pending>,
    transmit: Option<Vec<u8>>,
    result: Option<Result<UdpOutcome, TrackerError>>,
}

impl UdpTracker {
    /// `path` is the tracker URL's path and query (`/announce?passkey=…`), which its
    /// announces carry as BEP 41 URL data, as libtorrent's do; nothing for `/` alone.
    /// Peers in announce replies are 18 bytes from now on if `ipv6` (a tracker reached
    /// through a proxy's relay: the relay says which family each reply came over).
    pub fn set_ipv6(&mut self, ipv6: bool) {
        self.ipv6 = ipv6;
    }

    pub fn new(config: UdpConfig, ipv6: bool, path: &str) -> Self {
        let url_data = match path {
            "" | "/" => Vec::new(),
            path => path.as_bytes().to_vec(),
        };
        UdpTracker {
            config,
            ipv6,
            url_data,
            connection: None,
            pending: None,
            transmit: None,
            result: None,
        }
    }

    /// Starts an operation, abandoning any unfinished one.
    pub fn start(&mut self, now: Instant, operation: UdpOperation, rng: &mut impl RngCore) {
        self.result = None;
        let stage = match self.connection {
            Some((id, at)) if now < at + CONNECTION_LIFETIME => Stage::Requesting(id),
            _ => Stage::Connecting,
        };
        self.pending = Some(Pending {
            operation,
            stage,
            transaction: rng.next_u32(),
            attempt: 0,
            deadline: now,
        });
        self.send(now);
    }

    /// Queues the packet for the current stage and arms its time-out.
    fn send(&mut self, now: Instant) {
        let Some(p) = &mut self.pending else { return };
        let request = match (&p.stage, &p.operation) {
            (Stage::Connecting, _) => Request::Connect {
                transaction: p.transaction,
            },
            (Stage::Requesting(id), UdpOperation::Announce(a)) => Request::Announce {
                connection: *id,
                transaction: p.transaction,
                announce: UdpAnnounce {
                    info_hash: a.info_hash,
                    peer_id: a.peer_id,
                    progress: a.progress,
                    event: a.event,
                    ip: std::net::Ipv4Addr::UNSPECIFIED,
                    key: a.key,
                    numwant: a.numwant,
                    port: a.port,
                    url_data: self.url_data.clone(),
                },
            },
            (Stage::Requesting(id), UdpOperation::Scrape(hashes)) => Request::Scrape {
                connection: *id,
                transaction: p.transaction,
                hashes: hashes.clone(),
            },
        };
        let mut out = Vec::with_capacity(98);
        request.encode(&mut out);
        self.transmit = Some(out);
        p.deadline = now + self.config.base_timeout * 2u32.saturating_pow(p.attempt.min(8));
    }

    /// Feeds a datagram that came from the tracker's address.
    pub fn handle_datagram(&mut self, now: Instant, packet: &[u8], rng: &mut impl RngCore) {
        let Some(p) = &mut self.pending else { return };
        let Ok(response) = Response::decode(packet, self.ipv6) else {
            // Garbage on our socket is not the tracker's answer; keep waiting.
            return;
        };
        if response.transaction() != p.transaction {
            return;
        }
        match (p.stage, response) {
            (Stage::Connecting, Response::Connect { connection, .. }) => {
                self.connection = Some((connection, now));
                p.stage = Stage::Requesting(connection);
                p.transaction = rng.next_u32();
                p.attempt = 0;
                self.send(now);
            }
            (
                Stage::Requesting(_),
                Response::Announce {
                    interval,
                    leechers,
                    seeders,
                    peers,
                    ..
                },
            ) if matches!(p.operation, UdpOperation::Announce(_)) => {
                self.finish(Ok(UdpOutcome::Announce(AnnounceResponse {
                    interval: clamp_interval(i64::from(interval)),
                    min_interval: None,
                    peers,
                    tracker_id: None,
                    warning: None,
                    complete: Some(seeders),
                    incomplete: Some(leechers),
                })));
            }
            (Stage::Requesting(_), Response::Scrape { counts, .. })
                if matches!(p.operation, UdpOperation::Scrape(_)) =>
            {
                self.finish(Ok(UdpOutcome::Scrape(counts)));
            }
            (_, Response::Error { message, .. }) => {
                // The id may be what it refused; get a fresh one next time.
                self.connection = None;
                self.finish(Err(TrackerError::Failure(message)));
            }
            _ => {}
        }
    }

    fn finish(&mut self, result: Result<UdpOutcome, TrackerError>) {
        self.pending = None;
        self.transmit = None;
        self.result = Some(result);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(p) = &mut self.pending else { return };
        if now < p.deadline {
            return;
        }
        if p.attempt >= self.config.max_retransmits {
            self.finish(Err(TrackerError::Timeout));
            return;
        }
        p.attempt += 1;
        if let Stage::Requesting(_) = p.stage {
            if !matches!(self.connection, Some((_, at)) if now < at + CONNECTION_LIFETIME) {
                p.stage = Stage::Connecting;
            }
        }
        self.send(now);
    }

    /// A datagram to send to the tracker.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.take()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.deadline)
    }

    /// The outcome of the operation, once.
    pub fn poll_result(&mut self) -> Option<Result<UdpOutcome, TrackerError>> {
        self.result.take()
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use shoal_core::PeerId;

    use super::*;
    use crate::announce::{Event, Progress};

    fn request() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash([1; 20]),
            peer_id: PeerId([2; 20]),
            port: 1,
            progress: Progress::default(),
            event: Event::Started,
            numwant: Some(10),
            key: 5,
            tracker_id: None,
        }
    }

    fn sent(t: &mut UdpTracker) -> Request {
        Request::decode(&t.poll_transmit().expect("a packet")).unwrap()
    }

    fn reply(t: &mut UdpTracker, now: Instant, r: Response, rng: &mut StdRng) {
        let mut out = Vec::new();
        r.encode(&mut out);
        t.handle_datagram(now, &out, rng);
    }

    /// The URL's path and query ride with each announce (BEP 41), as libtorrent sends
    /// them; a URL without a path sends the plain 98 bytes.
    #[test]
    fn announces_carry_the_urls_path() {
        let mut rng = StdRng::seed_from_u64(2);
        let now = Instant::now();
        for (path, want) in [
            ("/announce?passkey=abc", &b"/announce?passkey=abc"[..]),
            ("/", b""),
        ] {
            let mut t = UdpTracker::new(UdpConfig::default(), false, path);
            t.start(now, UdpOperation::Announce(request()), &mut rng);
            let Request::Connect { transaction } = sent(&mut t) else {
                panic!()
            };
            let connection = 5;
            reply(
                &mut t,
                now,
                Response::Connect {
                    transaction,
                    connection,
                },
                &mut rng,
            );
            let packet = t.poll_transmit().expect("the announce");
            assert_eq!(
                packet.len(),
                98 + want.len() + if want.is_empty() { 0 } else { 2 }
            );
            let Request::Announce { announce, .. } = Request::decode(&packet).unwrap() else {
                panic!()
            };
            assert_eq!(announce.url_data, want);
        }
    }

    #[test]
    fn connect_then_announce_then_reuse_id() {
        let mut rng = StdRng::seed_from_u64(1);
        let now = Instant::now();
        let mut t = UdpTracker::new(UdpConfig::default(), false, "/");
        t.start(now, UdpOperation::Announce(request()), &mut rng);
        let Request::Connect { transaction } = sent(&mut t) else {
            panic!()
        };
        // Wrong transaction: ignored.
        reply(
            &mut t,
            now,
            Response::Connect {
                transaction: transaction ^ 1,
                connection: 9,
            },
            &mut rng,
        );
        assert!(t.poll_transmit().is_none());
        reply(
            &mut t,
            now,
            Response::Connect {
                transaction,
                connection: 77,
            },
            &mut rng,
        );
        let Request::Announce {
            connection,
            transaction,
            announce,
        } = sent(&mut t)
        else {
            panic!()
        };
        assert_eq!(connection, 77);
        assert_eq!(announce.numwant, Some(10));
        let peers = vec!["127.0.0.1:5".parse().unwrap()];
        reply(
            &mut t,
            now,
            Response::Announce {
                transaction,
                interval: 600,
                leechers: 1,
                seeders: 2,
                peers: peers.clone(),
            },
            &mut rng,
        );
        let Some(Ok(UdpOutcome::Announce(r))) = t.poll_result() else {
            panic!()
        };
        assert_eq!(r.peers, peers);
        assert_eq!(r.interval, Duration::from_secs(600));
        assert_eq!((r.complete, r.incomplete), (Some(2), Some(1)));
        assert_eq!(t.poll_timeout(), None);

        // Within a minute the id is reused; after it, a new connect.
        t.start(
            now + Duration::from_secs(59),
            UdpOperation::Scrape(vec![InfoHash([1; 20])]),
            &mut rng,
        );
        assert!(matches!(
            sent(&mut t),
            Request::Scrape { connection: 77, .. }
        ));
        t.start(
            now + Duration::from_secs(61),
            UdpOperation::Announce(request()),
            &mut rng,
        );
        assert!(matches!(sent(&mut t), Request::Connect { .. }));
    }

    #[test]
    fn retransmits_with_backoff_then_times_out() {
        let mut rng = StdRng::seed_from_u64(2);
        let now = Instant::now();
        let config = UdpConfig {
            base_timeout: Duration::from_millis(100),
            max_retransmits: 2,
        };
        let mut t = UdpTracker::new(config, false, "/");
        t.start(now, UdpOperation::Announce(request()), &mut rng);
        let first = sent(&mut t);
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_millis(100)));
        t.handle_timeout(now + Duration::from_millis(50));
        assert!(t.poll_transmit().is_none(), "not yet");
        let at = now + Duration::from_millis(100);
        t.handle_timeout(at);
        assert_eq!(sent(&mut t), first, "same request again");
        assert_eq!(t.poll_timeout(), Some(at + Duration::from_millis(200)));
        let at = at + Duration::from_millis(200);
        t.handle_timeout(at);
        assert_eq!(t.poll_timeout(), Some(at + Duration::from_millis(400)));
        t.poll_transmit();
        t.handle_timeout(at + Duration::from_millis(400));
        assert_eq!(t.poll_result(), Some(Err(TrackerError::Timeout)));
        assert!(t.poll_transmit().is_none());
    }

    #[test]
    fn expired_id_reconnects_on_retransmit_and_error_is_reported() {
        let mut rng = StdRng::seed_from_u64(3);
        let now = Instant::now();
        let config = UdpConfig {
            max_retransmits: 3,
            ..Default::default()
        };
        let mut t = UdpTracker::new(config, false, "/");
        t.start(now, UdpOperation::Announce(request()), &mut rng);
        let Request::Connect { transaction } = sent(&mut t) else {
            panic!()
        };
        reply(
            &mut t,
            now,
            Response::Connect {
                transaction,
                connection: 1,
            },
            &mut rng,
        );
        let _ = sent(&mut t);
        // 15 s, then 30 s, then 60 s: past the id's minute, so connect again.
        t.handle_timeout(now + Duration::from_secs(15));
        assert!(matches!(sent(&mut t), Request::Announce { .. }));
        t.handle_timeout(now + Duration::from_secs(45));
        assert!(matches!(sent(&mut t), Request::Announce { .. }));
        t.handle_timeout(now + Duration::from_secs(105));
        let Request::Connect { transaction } = sent(&mut t) else {
            panic!("reconnect")
        };
        reply(
            &mut t,
            now,
            Response::Error {
                transaction,
                message: "go away".into(),
            },
            &mut rng,
        );
        assert_eq!(
            t.poll_result(),
            Some(Err(TrackerError::Failure("go away".into())))
        );
    }

    #[test]
    fn garbage_is_ignored() {
        let mut rng = StdRng::seed_from_u64(4);
        let now = Instant::now();
        let mut t = UdpTracker::new(UdpConfig::default(), false, "/");
        t.start(now, UdpOperation::Announce(request()), &mut rng);
        let _ = sent(&mut t);
        for junk in [&b""[..], b"\0\0\0\0", &[0xff; 100]] {
            t.handle_datagram(now, junk, &mut rng);
        }
        assert!(t.poll_result().is_none());
        assert!(t.poll_timeout().is_some());
    }
}
