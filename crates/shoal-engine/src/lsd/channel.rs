//! One BEP 14 group: a socket that receives it, joined on each interface the listen
//! address covers, and one socket per interface that sends to it. The interfaces are
//! looked at again every [`INTERFACE_CHECK`]: a laptop that joins a network after shoal
//! started, or an IPv6 address that arrives late (SLAAC), is announced on from then on,
//! as libtorrent reopens its discovery when the system's addresses change.
//!
//! An announcement counts only from an address on one of this host's networks, as
//! libtorrent checks against its listen address's netmask: multicast with a hop limit
//! of 1 never comes from farther, so anything else is a unicast datagram to the port
//! from anywhere, and would have us dial whatever it names.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use shoal_core::InfoHash;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::interfaces::{local_networks, Network};
use super::{Announcement, Interfaces, ANNOUNCE_INTERVAL, MAX_PACKET, SOURCE_QUIET};
use crate::{Found, PeerSource};

/// How often the interfaces are looked at again (one getifaddrs call).
const INTERFACE_CHECK: Duration = Duration::from_secs(10);
/// A round's announcements, as offsets from its start: three, since a lost datagram is
/// not made up for until the next round otherwise.
const ROUND: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_secs(2),
    Duration::from_secs(6),
];
/// Sources remembered for [`SOURCE_QUIET`]; a flood of spoofed sources clears the map.
const MAX_SOURCES: usize = 1024;

/// An interface of the group's family, named as the system takes it for multicast: an
/// IPv4 one by an address of it, an IPv6 one by its index (unspecified and 0: the
/// system's choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interface {
    V4(Ipv4Addr),
    V6(u32),
}

struct Sender {
    interface: Interface,
    socket: UdpSocket,
    /// The current round's start, and how many of its announcements have gone.
    round: Instant,
    sent: usize,
}

impl Sender {
    fn due(&self) -> Instant {
        self.round + ROUND[self.sent]
    }

    /// One announcement has gone: the next is the round's next, or the next round's
    /// first.
    fn sent_one(&mut self) {
        self.sent += 1;
        if self.sent == ROUND.len() {
            self.sent = 0;
            self.round += ANNOUNCE_INTERVAL;
        }
    }
}

pub(super) struct Channel {
    group: SocketAddr,
    listen: IpAddr,
    receiver: UdpSocket,
    /// The interfaces the group is joined on, each with its sending socket and its own
    /// rounds (an interface that comes later is announced on at once, the others are
    /// not disturbed).
    senders: Vec<Sender>,
    /// The networks this host is on (none where the system cannot tell: then every
    /// source counts).
    networks: Vec<Network>,
}

impl Channel {
    /// The receiving socket, on the group's port on every address (several programs may
    /// share it, hence reuse), and the interfaces `listen` covers now (maybe none yet).
    pub(super) fn open(group: SocketAddr, listen: IpAddr) -> io::Result<Channel> {
        let receiver = Socket::new(Domain::for_address(group), Type::DGRAM, Some(Protocol::UDP))?;
        receiver.set_reuse_address(true)?;
        let any: SocketAddr = match group {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, group.port()).into(),
            SocketAddr::V6(_) => {
                receiver.set_only_v6(true)?;
                (Ipv6Addr::UNSPECIFIED, group.port()).into()
            }
        };
        receiver.bind(&any.into())?;
        receiver.set_nonblocking(true)?;
        let mut channel = Channel {
            group,
            listen,
            receiver: UdpSocket::from_std(receiver.into())?,
            senders: Vec::new(),
            networks: Vec::new(),
        };
        channel.refresh();
        if channel.senders.is_empty() {
            tracing::warn!(%group, "local service discovery: no interface to multicast on yet");
        }
        Ok(channel)
    }

    /// Joins the group on the interfaces `listen` covers now and were not joined (their
    /// rounds start now), and leaves those gone.
    fn refresh(&mut self) {
        self.networks = local_networks();
        let now = Interfaces::for_listener(self.listen);
        let wanted: Vec<Interface> = match self.group {
            SocketAddr::V4(_) => now.v4.into_iter().map(Interface::V4).collect(),
            SocketAddr::V6(_) => now.v6.into_iter().map(Interface::V6).collect(),
        };
        for gone in self
            .senders
            .iter()
            .filter(|s| !wanted.contains(&s.interface))
        {
            // The system may have dropped the membership with the interface already.
            let _ = self.membership(gone.interface, false);
        }
        self.senders.retain(|s| wanted.contains(&s.interface));
        for interface in wanted {
            if self.senders.iter().any(|s| s.interface == interface) {
                continue;
            }
            // The socket first: a membership is never left behind without one. A
            // membership there already (left by a run that failed after it) will do.
            let joined = sender(interface, self.listen).and_then(|socket| {
                match self.membership(interface, true) {
                    Err(e) if e.kind() != io::ErrorKind::AddrInUse => Err(e),
                    _ => Ok(socket),
                }
            });
            match joined {
                Ok(socket) => self.senders.push(Sender {
                    interface,
                    socket,
                    round: Instant::now(),
                    sent: 0,
                }),
                // Tried again at the next check (an interface with no multicast route
                // yet, say).
                Err(e) => tracing::debug!(group = %self.group, ?interface, "cannot join: {e}"),
            }
        }
    }

    fn membership(&self, interface: Interface, join: bool) -> io::Result<()> {
        match (self.group.ip(), interface) {
            (IpAddr::V4(group), Interface::V4(at)) if join => {
                self.receiver.join_multicast_v4(group, at)
            }
            (IpAddr::V4(group), Interface::V4(at)) => self.receiver.leave_multicast_v4(group, at),
            (IpAddr::V6(group), Interface::V6(at)) if join => {
                self.receiver.join_multicast_v6(&group, at)
            }
            (IpAddr::V6(group), Interface::V6(at)) => self.receiver.leave_multicast_v6(&group, at),
            _ => Err(io::ErrorKind::InvalidInput.into()),
        }
    }

    /// Announces `announcement` in rounds (again at once on a new interface), and
    /// reports the sources of other peers' announcements of `ours` on `tx`, until `tx`
    /// is closed.
    pub(super) async fn run(
        mut self,
        announcement: Announcement,
        ours: Vec<InfoHash>,
        tx: mpsc::UnboundedSender<Found>,
    ) {
        let cookie = announcement.cookie.clone();
        let packet = announcement.encode(self.group);
        let mut check = Instant::now() + INTERFACE_CHECK;
        let mut heard: HashMap<IpAddr, Instant> = HashMap::new();
        let mut buf = vec![0u8; MAX_PACKET + 1];
        loop {
            // The next announcement due, on whichever interface (none: only the next
            // check can add one).
            let next = self.senders.iter().map(Sender::due).min().unwrap_or(check);
            tokio::select! {
                () = tokio::time::sleep_until(next) => {
                    let now = Instant::now();
                    for sender in self.senders.iter_mut().filter(|s| s.due() <= now) {
                        let _ = sender.socket.send_to(&packet, self.group).await;
                        sender.sent_one();
                    }
                }
                () = tokio::time::sleep_until(check) => {
                    check += INTERFACE_CHECK;
                    self.refresh();
                }
                received = self.receiver.recv_from(&mut buf) => {
                    let Ok((len, from)) = received else { continue };
                    if !local(&self.networks, from.ip()) {
                        continue;
                    }
                    let Some(a) = Announcement::parse(&buf[..len]) else { continue };
                    if a.cookie.is_some() && a.cookie == cookie {
                        continue;
                    }
                    // Ours in our order: a hybrid's v1 swarm before its v2 one.
                    let Some(&swarm) = ours.iter().find(|h| a.info_hashes.contains(h)) else {
                        continue;
                    };
                    let now = Instant::now();
                    if heard.get(&from.ip()).is_some_and(|&t| now < t + SOURCE_QUIET) {
                        continue;
                    }
                    if heard.len() >= MAX_SOURCES {
                        heard.retain(|_, t| now < *t + SOURCE_QUIET);
                        if heard.len() >= MAX_SOURCES {
                            heard.clear();
                        }
                    }
                    heard.insert(from.ip(), now);
                    let peers = vec![peer_at(from, a.port)];
                    if tx.send(Found { source: PeerSource::Lsd, swarm, peers }).is_err() {
                        return;
                    }
                }
                () = tx.closed() => return,
            }
        }
    }
}

/// Whether `source` is on one of `networks` (any source, if none are known).
fn local(networks: &[Network], source: IpAddr) -> bool {
    networks.is_empty() || networks.iter().any(|n| n.contains(source))
}

/// The listener of a peer whose announcement came from `from`: its address (with the
/// interface it came in on, for a link-local IPv6 one) and the port it announced.
pub(super) fn peer_at(from: SocketAddr, port: u16) -> SocketAddr {
    match from {
        SocketAddr::V4(from) => SocketAddr::new(IpAddr::V4(*from.ip()), port),
        SocketAddr::V6(from) => {
            let ip = *from.ip();
            match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(IpAddr::V4(v4), port),
                None if ip.is_unicast_link_local() => {
                    SocketAddrV6::new(ip, port, 0, from.scope_id()).into()
                }
                None => SocketAddrV6::new(ip, port, 0, 0).into(),
            }
        }
    }
}

/// A socket that multicasts through `interface`, loops back to this host and goes no
/// further than the link. An IPv4 one is bound to the interface's address, so that
/// announcements carry it; an IPv6 one to `listen` when that is a specific address (the
/// one peers must dial), else the system picks the source, of the group's scope.
fn sender(interface: Interface, listen: IpAddr) -> io::Result<UdpSocket> {
    let socket = match interface {
        Interface::V4(at) => {
            let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            socket.bind(&SocketAddrV4::new(at, 0).into())?;
            if !at.is_unspecified() {
                socket.set_multicast_if_v4(&at)?;
            }
            socket.set_multicast_loop_v4(true)?;
            socket.set_multicast_ttl_v4(1)?;
            socket
        }
        Interface::V6(index) => {
            let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
            socket.set_only_v6(true)?;
            // A specific listen address is the one peers must dial: announce from it.
            let from = match listen {
                IpAddr::V6(ip) if !ip.is_unspecified() => ip,
                _ => Ipv6Addr::UNSPECIFIED,
            };
            // (A link-local one without its interface cannot be bound: the system's pick.)
            socket
                .bind(&SocketAddr::from((from, 0)).into())
                .or_else(|_| socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)).into()))?;
            socket.set_multicast_if_v6(index)?;
            socket.set_multicast_loop_v6(true)?;
            socket.set_multicast_hops_v6(1)?;
            socket
        }
    };
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sources_on_our_networks_count() {
        let lan = Network {
            ip: "192.168.1.20".parse().unwrap(),
            prefix: 24,
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(local(&[lan], ip("192.168.1.5")));
        assert!(!local(&[lan], ip("203.0.113.9")), "a datagram from afar");
        assert!(
            local(&[], ip("203.0.113.9")),
            "nothing known, nothing filtered"
        );
    }
}
