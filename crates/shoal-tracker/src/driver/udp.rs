//! Runs [`UdpTracker`] exchanges over a real socket: one socket per tracker, kept between
//! announces, because trackers bind connection ids to the client's address and port.
//! Behind a SOCKS5 proxy the socket talks to the proxy's UDP relay, which resolves the
//! tracker's name and passes the datagrams on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::UdpSocket;

use shoal_proxy::socks5::{self, UdpAssociation};
use shoal_proxy::{Proxy, Target};

use super::http::resolve;
use crate::client::{UdpConfig, UdpOperation, UdpOutcome, UdpTracker};
use crate::udp::MAX_PACKET;
use crate::url::TrackerUrl;
use crate::TrackerError;

/// How long a proxy may take to set up a UDP relay.
const ASSOCIATE_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// A UDP tracker with its socket.
#[derive(Debug)]
pub struct UdpEndpoint {
    socket: UdpSocket,
    tracker: UdpTracker,
    rng: StdRng,
    /// Through a SOCKS5 proxy: the header naming the tracker in front of each datagram,
    /// and the relay, which lives as long as this.
    relayed: Option<(Vec<u8>, UdpAssociation)>,
}

impl UdpEndpoint {
    /// Resolves the tracker and opens a socket connected to it (so datagrams from any
    /// other address never reach us), sending from `bind` when given; through `proxy`'s
    /// UDP relay if it is a SOCKS5 one.
    pub async fn open(
        url: &TrackerUrl,
        bind: Option<IpAddr>,
        config: UdpConfig,
        proxy: Option<&Proxy>,
    ) -> Result<Self, TrackerError> {
        match proxy {
            Some(Proxy::Socks5(socks5)) => return Self::open_relayed(url, config, socks5).await,
            Some(Proxy::Http(_)) => {
                return Err(TrackerError::Io(format!(
                    "UDP tracker {url}: UDP does not go through an HTTP proxy"
                )))
            }
            None => {}
        }
        let addr = resolve(url, bind).await?;
        let local = match bind.filter(|b| b.is_ipv4() == addr.is_ipv4()) {
            Some(ip) => SocketAddr::new(ip, 0),
            None if addr.is_ipv4() => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
            None => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
        };
        let io = |e: std::io::Error| TrackerError::Io(format!("UDP tracker {url}: {e}"));
        let socket = UdpSocket::bind(local).await.map_err(io)?;
        socket.connect(addr).await.map_err(io)?;
        Ok(UdpEndpoint {
            socket,
            tracker: UdpTracker::new(config, addr.is_ipv6(), &url.path),
            rng: StdRng::from_entropy(),
            relayed: None,
        })
    }

    /// Through a SOCKS5 proxy's UDP relay; the tracker's name goes to the proxy.
    async fn open_relayed(
        url: &TrackerUrl,
        config: UdpConfig,
        socks5: &socks5::Socks5,
    ) -> Result<Self, TrackerError> {
        let io = |e: std::io::Error| TrackerError::Io(format!("UDP tracker {url}: {e}"));
        let proxy =
            |e: shoal_proxy::ProxyError| TrackerError::Io(format!("UDP tracker {url}: {e}"));
        let unspecified = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0);
        // The announcer waits for this: a proxy that never answers must not hold it.
        let association = tokio::time::timeout(ASSOCIATE_WAIT, socks5.udp_associate(unspecified))
            .await
            .map_err(|_| {
                TrackerError::Io(format!(
                    "UDP tracker {url}: the proxy did not answer UDP ASSOCIATE"
                ))
            })?
            .map_err(proxy)?;
        let header = socks5::udp_header(Target::Name(&url.host, url.port)).map_err(proxy)?;
        let local = match association.relay {
            SocketAddr::V4(_) => unspecified,
            SocketAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
        };
        let socket = UdpSocket::bind(local).await.map_err(io)?;
        socket.connect(association.relay).await.map_err(io)?;
        // The tracker's family is the proxy's business: each answer's header says it.
        let ipv6 = url.host.contains(':');
        Ok(UdpEndpoint {
            socket,
            tracker: UdpTracker::new(config, ipv6, &url.path),
            rng: StdRng::from_entropy(),
            relayed: Some((header, association)),
        })
    }

    /// Runs one announce or scrape to its end (answer, error or the last time-out).
    pub async fn run(&mut self, operation: UdpOperation) -> Result<UdpOutcome, TrackerError> {
        self.tracker.start(Instant::now(), operation, &mut self.rng);
        let mut buf = vec![0u8; MAX_PACKET];
        loop {
            while let Some(packet) = self.tracker.poll_transmit() {
                let packet = match &self.relayed {
                    Some((header, _)) => [header.as_slice(), &packet].concat(),
                    None => packet,
                };
                // A send error is like a lost packet: the time-out retransmits.
                let _ = self.socket.send(&packet).await;
            }
            if let Some(result) = self.tracker.poll_result() {
                return result;
            }
            let Some(deadline) = self.tracker.poll_timeout() else {
                return Err(TrackerError::Timeout);
            };
            tokio::select! {
                received = self.socket.recv(&mut buf) => match received {
                    Ok(n) => {
                        let datagram = match &self.relayed {
                            Some(_) => match socks5::parse_udp(&buf[..n]) {
                                Some((from, payload)) => {
                                    self.tracker.set_ipv6(from.is_ipv6());
                                    payload
                                }
                                None => continue,
                            },
                            None => &buf[..n],
                        };
                        self.tracker.handle_datagram(Instant::now(), datagram, &mut self.rng);
                    }
                    // ICMP port unreachable: nothing listens there, no point waiting
                    // out the retransmissions.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        return Err(TrackerError::Io(format!("UDP tracker unreachable: {e}")));
                    }
                    Err(_) => {}
                },
                _ = tokio::time::sleep_until(deadline.into()) => {
                    self.tracker.handle_timeout(Instant::now());
                }
            }
        }
    }
}
