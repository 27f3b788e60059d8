//! Runs [`UdpTracker`] exchanges over a real socket: one socket per tracker, kept between
//! announces, because trackers bind connection ids to the client's address and port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::UdpSocket;

use super::http::resolve;
use crate::client::{UdpConfig, UdpOperation, UdpOutcome, UdpTracker};
use crate::udp::MAX_PACKET;
use crate::url::TrackerUrl;
use crate::TrackerError;

/// A UDP tracker with its socket.
#[derive(Debug)]
pub struct UdpEndpoint {
    socket: UdpSocket,
    tracker: UdpTracker,
    rng: StdRng,
}

impl UdpEndpoint {
    /// Resolves the tracker and opens a socket connected to it (so datagrams from any
    /// other address never reach us), sending from `bind` when given.
    pub async fn open(
        url: &TrackerUrl,
        bind: Option<IpAddr>,
        config: UdpConfig,
    ) -> Result<Self, TrackerError> {
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
        })
    }

    /// Runs one announce or scrape to its end (answer, error or the last time-out).
    pub async fn run(&mut self, operation: UdpOperation) -> Result<UdpOutcome, TrackerError> {
        self.tracker.start(Instant::now(), operation, &mut self.rng);
        let mut buf = vec![0u8; MAX_PACKET];
        loop {
            while let Some(packet) = self.tracker.poll_transmit() {
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
                    Ok(n) => self.tracker.handle_datagram(Instant::now(), &buf[..n], &mut self.rng),
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
