//! NAT-PMP (RFC 6886) as a sans-IO client.
//!
//! One request is outstanding per mapping (and one for the external address); each is
//! sent again after 250 ms, 500 ms, 1 s, … as the RFC says, and after [`MAX_TRIES`]
//! unanswered sends the gateway is taken not to speak NAT-PMP. A mapping is renewed
//! when half its lifetime has passed. The gateway's epoch (seconds since it started)
//! tells when it lost its mappings (it restarted): then every mapping is requested
//! again. Only datagrams from the gateway's port 5351 are read, and each is checked for
//! its exact length and opcode, so a stray or hostile packet changes nothing.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The port a NAT-PMP gateway listens on.
pub const SERVER_PORT: u16 = 5351;
/// Unanswered sends of one request before the gateway is given up on (the RFC allows 9,
/// over 64 s; a router that speaks NAT-PMP answers the first).
pub const MAX_TRIES: u32 = 6;
/// The first resend comes after this; each later one after twice the one before.
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// The lifetime we ask for (the RFC's recommendation).
pub const LIFETIME: u32 = 7200;
/// A renewal the gateway did not answer is tried again after this.
const RETRY_GRANTED: Duration = Duration::from_secs(60);

/// What is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Udp,
    Tcp,
}

impl Protocol {
    fn opcode(self) -> u8 {
        match self {
            Protocol::Udp => 1,
            Protocol::Tcp => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        }
    }
}

/// What the client learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The gateway's address on the internet.
    ExternalAddress(Ipv4Addr),
    /// `internal` is forwarded from `external` on the gateway for `lifetime` seconds
    /// (renewed before it ends).
    Mapped {
        protocol: Protocol,
        internal: u16,
        external: u16,
        lifetime: u32,
    },
    /// The gateway refused a request (RFC 6886 result code and its meaning), or never
    /// answered; no more requests are sent for it.
    Failed {
        protocol: Option<Protocol>,
        reason: String,
    },
}

/// One request the client keeps outstanding until it is answered.
#[derive(Debug, Clone)]
struct Job {
    /// `None`: the external address.
    mapping: Option<(Protocol, u16)>,
    tries: u32,
    next_send: Instant,
    /// Answered; waiting for `next_send` to renew (mappings only).
    answered: bool,
    /// The external port the gateway granted, once it has (asked for again on renewal,
    /// as RFC 6886 says, and removed when we stop).
    granted: Option<u16>,
    given_up: bool,
}

/// A NAT-PMP client for a set of ports; see the module documentation.
#[derive(Debug)]
pub struct NatPmp {
    gateway: Ipv4Addr,
    /// [`SERVER_PORT`], except in tests.
    server_port: u16,
    jobs: Vec<Job>,
    /// The gateway's last epoch, and when we heard it.
    epoch: Option<(u32, Instant)>,
    events: VecDeque<Event>,
}

impl NatPmp {
    /// A client that will map each of `ports` (internal port = suggested external port).
    pub fn new(gateway: Ipv4Addr, ports: &[(Protocol, u16)], now: Instant) -> Self {
        let job = |mapping| Job {
            mapping,
            tries: 0,
            next_send: now,
            answered: false,
            granted: None,
            given_up: false,
        };
        let mut jobs = vec![job(None)];
        jobs.extend(ports.iter().map(|&p| job(Some(p))));
        NatPmp {
            gateway,
            server_port: SERVER_PORT,
            jobs,
            epoch: None,
            events: VecDeque::new(),
        }
    }

    pub fn gateway(&self) -> SocketAddr {
        SocketAddr::from((self.gateway, self.server_port))
    }

    /// Talks to the gateway at another port than [`SERVER_PORT`] (a test's gateway).
    #[cfg(test)]
    pub(crate) fn set_server_port(&mut self, port: u16) {
        self.server_port = port;
    }

    /// The next datagram due for the gateway, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        let job = self
            .jobs
            .iter_mut()
            .find(|j| !j.given_up && j.next_send <= now)?;
        if job.answered {
            // Time to renew: a fresh request, with fresh retries.
            job.answered = false;
            job.tries = 0;
        }
        if job.tries == MAX_TRIES {
            let protocol = job.mapping.map(|(p, _)| p);
            if job.granted.is_some() {
                // A gateway that mapped the port before may be rebooting: try the
                // renewal again later rather than lose the mapping for good.
                job.tries = 0;
                job.next_send = now + RETRY_GRANTED;
            } else {
                job.given_up = true;
            }
            self.events.push_back(Event::Failed {
                protocol,
                reason: format!("no answer from the gateway {} (NAT-PMP)", self.gateway),
            });
            return self.poll_transmit(now);
        }
        job.next_send = now + FIRST_RETRY * 2u32.pow(job.tries);
        job.tries += 1;
        let mapping = job
            .mapping
            .map(|(protocol, port)| (protocol, port, job.granted.unwrap_or(port)));
        Some(request(mapping, LIFETIME))
    }

    /// When [`NatPmp::poll_transmit`] will next have something to send.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.jobs
            .iter()
            .filter(|j| !j.given_up)
            .map(|j| j.next_send)
            .min()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// A datagram that arrived from `from`.
    pub fn handle(&mut self, from: SocketAddr, data: &[u8], now: Instant) {
        if from != self.gateway() {
            return;
        }
        let Some(response) = Response::decode(data) else {
            return;
        };
        self.check_epoch(response.epoch, now);
        let job = self.jobs.iter_mut().find(|j| {
            !j.answered
                && !j.given_up
                && match (j.mapping, response.body) {
                    (None, Body::Address(_)) => true,
                    (
                        Some((p, port)),
                        Body::Mapping {
                            protocol, internal, ..
                        },
                    ) => p == protocol && port == internal,
                    _ => false,
                }
        });
        let Some(job) = job else {
            return;
        };
        let protocol = job.mapping.map(|(p, _)| p);
        if response.result != 0 {
            job.given_up = true;
            self.events.push_back(Event::Failed {
                protocol,
                reason: format!("the gateway refused: {}", meaning(response.result)),
            });
            return;
        }
        job.answered = true;
        match response.body {
            Body::Address(ip) => {
                job.given_up = true; // asked once; a restart asks again
                self.events.push_back(Event::ExternalAddress(ip));
            }
            Body::Mapping {
                protocol,
                internal,
                external,
                lifetime,
            } => {
                // Renew at half the lifetime (at least a second from now, so that a
                // gateway granting none cannot make us flood it).
                let renew = Duration::from_secs(u64::from(lifetime / 2).max(1));
                job.next_send = now + renew;
                job.granted = Some(external);
                self.events.push_back(Event::Mapped {
                    protocol,
                    internal,
                    external,
                    lifetime,
                });
            }
        }
    }

    /// RFC 6886 3.6: an epoch lower than the last one plus 7/8 of the time since (less
    /// 2 s) means the gateway restarted and lost our mappings; ask for all again.
    fn check_epoch(&mut self, epoch: u32, now: Instant) {
        if let Some((last, at)) = self.epoch {
            let elapsed = now.duration_since(at).as_secs();
            let expected = u64::from(last) + elapsed * 7 / 8;
            if u64::from(epoch) + 2 < expected {
                for job in &mut self.jobs {
                    *job = Job {
                        tries: 0,
                        next_send: now,
                        answered: false,
                        given_up: false,
                        ..job.clone()
                    };
                }
            }
        }
        self.epoch = Some((epoch, now));
    }

    /// The datagrams that remove our mappings (lifetime 0), to send when we stop.
    pub fn unmap(&self) -> Vec<Vec<u8>> {
        self.jobs
            .iter()
            .filter(|j| j.granted.is_some())
            .filter_map(|j| j.mapping)
            .map(|(protocol, port)| request(Some((protocol, port, 0)), 0))
            .collect()
    }
}

/// A request: the external address (`None`), or a mapping of internal `port`,
/// suggesting `suggested` outside, for `lifetime` seconds (0 removes it, and then the
/// suggested port must be 0).
fn request(mapping: Option<(Protocol, u16, u16)>, lifetime: u32) -> Vec<u8> {
    match mapping {
        None => vec![0, 0],
        Some((protocol, port, suggested)) => {
            let mut out = vec![0, protocol.opcode(), 0, 0];
            out.extend_from_slice(&port.to_be_bytes());
            out.extend_from_slice(&suggested.to_be_bytes());
            out.extend_from_slice(&lifetime.to_be_bytes());
            out
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Address(Ipv4Addr),
    Mapping {
        protocol: Protocol,
        internal: u16,
        external: u16,
        lifetime: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Response {
    result: u16,
    epoch: u32,
    body: Body,
}

impl Response {
    /// A version 0 response of the right length for its opcode; `None` otherwise.
    fn decode(data: &[u8]) -> Option<Self> {
        let (&[version, opcode], rest) = data.split_first_chunk::<2>()?;
        let (result, rest) = rest.split_first_chunk::<2>()?;
        let (epoch, rest) = rest.split_first_chunk::<4>()?;
        if version != 0 {
            return None;
        }
        let (result, epoch) = (u16::from_be_bytes(*result), u32::from_be_bytes(*epoch));
        let body = match (opcode, rest.len()) {
            (128, 4) => Body::Address(Ipv4Addr::from(<[u8; 4]>::try_from(rest).ok()?)),
            (129 | 130, 8) => Body::Mapping {
                protocol: if opcode == 129 {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                },
                internal: u16::from_be_bytes([rest[0], rest[1]]),
                external: u16::from_be_bytes([rest[2], rest[3]]),
                lifetime: u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]),
            },
            _ => return None,
        };
        Some(Response {
            result,
            epoch,
            body,
        })
    }
}

/// RFC 6886 result codes.
fn meaning(result: u16) -> String {
    match result {
        1 => "unsupported version".into(),
        2 => "not authorized (port mapping is turned off on the router)".into(),
        3 => "network failure (the router has no external address)".into(),
        4 => "out of resources".into(),
        5 => "unsupported opcode".into(),
        code => format!("result code {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);

    fn from_gw() -> SocketAddr {
        SocketAddr::from((GW, SERVER_PORT))
    }

    fn address_response(epoch: u32, result: u16) -> Vec<u8> {
        let mut out = vec![0, 128];
        out.extend_from_slice(&result.to_be_bytes());
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&[203, 0, 113, 9]);
        out
    }

    fn map_response(protocol: Protocol, epoch: u32, external: u16, lifetime: u32) -> Vec<u8> {
        let mut out = vec![0, 128 + protocol.opcode(), 0, 0];
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&6881u16.to_be_bytes());
        out.extend_from_slice(&external.to_be_bytes());
        out.extend_from_slice(&lifetime.to_be_bytes());
        out
    }

    fn drain(c: &mut NatPmp, now: Instant) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| c.poll_transmit(now)).collect()
    }

    fn events(c: &mut NatPmp) -> Vec<Event> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    /// The bytes of RFC 6886's requests, the answers taken, renewal at half the
    /// lifetime, and removal.
    #[test]
    fn maps_renews_and_unmaps() {
        let t0 = Instant::now();
        let ports = [(Protocol::Tcp, 6881), (Protocol::Udp, 6881)];
        let mut c = NatPmp::new(GW, &ports, t0);
        let sent = drain(&mut c, t0);
        assert_eq!(
            sent,
            [
                vec![0, 0],
                vec![0, 2, 0, 0, 0x1a, 0xe1, 0x1a, 0xe1, 0, 0, 0x1c, 0x20],
                vec![0, 1, 0, 0, 0x1a, 0xe1, 0x1a, 0xe1, 0, 0, 0x1c, 0x20],
            ]
        );
        c.handle(from_gw(), &address_response(100, 0), t0);
        c.handle(
            from_gw(),
            &map_response(Protocol::Tcp, 100, 16881, 7200),
            t0,
        );
        c.handle(from_gw(), &map_response(Protocol::Udp, 100, 6881, 120), t0);
        assert_eq!(
            events(&mut c),
            [
                Event::ExternalAddress(Ipv4Addr::new(203, 0, 113, 9)),
                Event::Mapped {
                    protocol: Protocol::Tcp,
                    internal: 6881,
                    external: 16881,
                    lifetime: 7200
                },
                Event::Mapped {
                    protocol: Protocol::Udp,
                    internal: 6881,
                    external: 6881,
                    lifetime: 120
                },
            ]
        );
        // Nothing until the UDP mapping's renewal, 60 s on (half of 120 s).
        assert!(drain(&mut c, t0 + Duration::from_secs(59)).is_empty());
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        let renewal = drain(&mut c, t0 + Duration::from_secs(60));
        assert_eq!(
            renewal,
            [vec![0, 1, 0, 0, 0x1a, 0xe1, 0x1a, 0xe1, 0, 0, 0x1c, 0x20]]
        );
        // The TCP renewal suggests the port the gateway chose (16881), an hour on (with
        // the unanswered UDP renewal, retried meanwhile).
        let tcp_renewal = drain(&mut c, t0 + Duration::from_secs(3600));
        assert_eq!(
            tcp_renewal[0],
            [0, 2, 0, 0, 0x1a, 0xe1, 0x41, 0xf1, 0, 0, 0x1c, 0x20]
        );
        // Removal: lifetime 0 and suggested port 0, for each mapping granted.
        assert_eq!(
            c.unmap(),
            [
                vec![0, 2, 0, 0, 0x1a, 0xe1, 0, 0, 0, 0, 0, 0],
                vec![0, 1, 0, 0, 0x1a, 0xe1, 0, 0, 0, 0, 0, 0]
            ]
        );
    }

    /// Resends at 250 ms, 500 ms, 1 s, …; then one failure per request, and silence.
    #[test]
    fn a_silent_gateway_is_given_up_on() {
        let t0 = Instant::now();
        let mut c = NatPmp::new(GW, &[(Protocol::Tcp, 6881)], t0);
        let mut now = t0;
        let mut sends = 0;
        while let Some(at) = c.poll_timeout() {
            now = now.max(at);
            sends += drain(&mut c, now).len();
            assert!(now < t0 + Duration::from_secs(60));
        }
        assert_eq!(sends, 2 * MAX_TRIES as usize);
        // 0.25 + 0.5 + 1 + 2 + 4 + 8 s.
        assert_eq!(now - t0, Duration::from_millis(15_750));
        let failures = events(&mut c);
        assert_eq!(failures.len(), 2);
        assert!(
            matches!(&failures[1], Event::Failed { protocol: Some(Protocol::Tcp), reason } if reason.contains("no answer"))
        );
    }

    /// A gateway that stops answering renewals is tried again a minute later, not left.
    #[test]
    fn an_unanswered_renewal_is_retried() {
        let t0 = Instant::now();
        let mut c = NatPmp::new(GW, &[(Protocol::Udp, 6881)], t0);
        drain(&mut c, t0);
        c.handle(from_gw(), &address_response(1, 0), t0);
        c.handle(from_gw(), &map_response(Protocol::Udp, 1, 6881, 10), t0);
        let mut now = t0 + Duration::from_secs(5);
        let mut sends = drain(&mut c, now).len();
        for _ in 1..MAX_TRIES {
            now = c.poll_timeout().unwrap();
            sends += drain(&mut c, now).len();
        }
        assert_eq!(sends, MAX_TRIES as usize);
        now = c.poll_timeout().unwrap();
        assert!(drain(&mut c, now).is_empty(), "a pause after the last try");
        assert_eq!(c.poll_timeout(), Some(now + RETRY_GRANTED));
        assert_eq!(drain(&mut c, now + RETRY_GRANTED).len(), 1);
    }

    /// A refusal is reported once; datagrams from elsewhere, of the wrong length or
    /// version, or answering nothing we asked, change nothing.
    #[test]
    fn refusals_and_garbage() {
        let t0 = Instant::now();
        let mut c = NatPmp::new(GW, &[(Protocol::Udp, 6881)], t0);
        drain(&mut c, t0);
        let stranger = SocketAddr::from(([192, 168, 1, 66], SERVER_PORT));
        c.handle(stranger, &map_response(Protocol::Udp, 1, 6881, 7200), t0);
        c.handle(
            from_gw(),
            &map_response(Protocol::Udp, 1, 6881, 7200)[..15],
            t0,
        );
        let mut wrong_version = map_response(Protocol::Udp, 1, 6881, 7200);
        wrong_version[0] = 1;
        c.handle(from_gw(), &wrong_version, t0);
        c.handle(from_gw(), &map_response(Protocol::Tcp, 1, 6881, 7200), t0);
        assert!(events(&mut c).is_empty());
        c.handle(from_gw(), &address_response(1, 3), t0);
        let failed = events(&mut c);
        assert!(
            matches!(&failed[..], [Event::Failed { protocol: None, reason }] if reason.contains("network failure")),
            "{failed:?}"
        );
    }

    /// A gateway whose epoch went back restarted: every mapping is asked for again.
    #[test]
    fn a_restarted_gateway_gets_the_mappings_again() {
        let t0 = Instant::now();
        let mut c = NatPmp::new(GW, &[(Protocol::Tcp, 6881)], t0);
        drain(&mut c, t0);
        c.handle(from_gw(), &address_response(5000, 0), t0);
        c.handle(
            from_gw(),
            &map_response(Protocol::Tcp, 5000, 6881, 7200),
            t0,
        );
        events(&mut c);
        let later = t0 + Duration::from_secs(100);
        assert!(drain(&mut c, later).is_empty());
        // 100 s later the epoch should be about 5100; 30 means it restarted. The
        // answer carries the address, so only the mapping is asked for again.
        c.handle(from_gw(), &address_response(30, 0), later);
        assert_eq!(
            drain(&mut c, later),
            [vec![0, 2, 0, 0, 0x1a, 0xe1, 0x1a, 0xe1, 0, 0, 0x1c, 0x20]]
        );
    }

    proptest::proptest! {
        /// Any datagram: no panic.
        #[test]
        fn any_datagram_is_safe(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24)) {
            let t0 = Instant::now();
            let mut c = NatPmp::new(GW, &[(Protocol::Tcp, 1), (Protocol::Udp, 1)], t0);
            drain(&mut c, t0);
            c.handle(from_gw(), &data, t0);
            drain(&mut c, t0);
        }
    }
}
