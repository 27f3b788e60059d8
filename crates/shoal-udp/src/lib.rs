//! A UDP socket that answers from the address it was reached at.
//!
//! A socket bound to every address (`[::]`, `0.0.0.0`) sends from whichever address the
//! route to the peer prefers. On a host with several addresses of one family (an IPv6
//! host's stable and temporary addresses, a seedbox with several IPv4 addresses, or
//! `127.0.0.x` on loopback), a peer that reached us at another one gets its answer from
//! an address it never wrote to and drops it: libtorrent matches uTP packets and DHT
//! answers by the address it sent to, and a UDP tracker client on a connected socket never
//! even sees them. libtorrent avoids this by binding one socket per local address; here
//! the socket asks the kernel, with each datagram, which address it came to
//! (`IP_PKTINFO` / `IPV6_RECVPKTINFO`), and says which to send from in the same way.
//! `quinn-udp` does the ancillary-data work.
//!
//! Addresses are given and taken in plain form (see `shoal_core::dual_stack`): IPv4 peers
//! of a dual-stack socket are IPv4 addresses here.
//!
//! Behind a SOCKS5 proxy ([`UdpSocket::relay_through`]) every datagram goes through the
//! proxy's UDP relay instead, wrapped in the header that names its destination, and
//! only the relay's datagrams are taken, unwrapped, with their true senders: uTP and the
//! DHT on the socket need not know.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use shoal_core::dual_stack;
use shoal_proxy::socks5::{self, UdpAssociation};
use shoal_proxy::Target;
use tokio::io::Interest;

/// What one receive gave: datagrams from one sender to one local address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub from: SocketAddr,
    /// The local address the datagrams came to, when the system says (it does on Linux,
    /// the BSDs, macOS and Windows).
    pub to: Option<IpAddr>,
    len: usize,
    /// The kernel may hand over several datagrams of one sender at once (UDP GRO), each
    /// `stride` bytes but the last.
    stride: usize,
}

impl Received {
    /// The datagrams, in the buffer given to [`UdpSocket::recv`].
    pub fn datagrams<'a>(&self, buf: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
        buf[..self.len].chunks(self.stride.max(1))
    }
}

/// A tokio UDP socket that reports and sets the local address of each datagram. See the
/// module documentation.
#[derive(Debug)]
pub struct UdpSocket {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
    /// Datagrams one call may carry, as the system said when the socket was made.
    /// (`quinn-udp` lowers its own count to 1 at the first failed send of any kind, a
    /// source address the kernel refused too; a failed batch is the caller's to resend.)
    segments: usize,
    /// The SOCKS5 UDP relay everything goes through, if any, and the task that holds
    /// its control connection open (and says when the proxy closes it).
    relay: Option<Relay>,
}

#[derive(Debug)]
struct Relay {
    addr: SocketAddr,
    control: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.control.abort();
    }
}

impl UdpSocket {
    /// Binds `addr` (dual-stack on `[::]`, see `shoal_core::dual_stack::bind`). Must be
    /// called within a tokio runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
        Self::from_socket(dual_stack::bind(addr, socket2::Type::DGRAM)?)
    }

    /// Takes a bound datagram socket (for a caller that set options on it first).
    pub fn from_socket(socket: socket2::Socket) -> io::Result<UdpSocket> {
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        keep_path_mtu_discovery(&socket);
        let local = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP socket"))?;
        let io = tokio::net::UdpSocket::from_std(socket.into())?;
        let segments = state.max_gso_segments();
        Ok(UdpSocket {
            io,
            state,
            local,
            segments,
            relay: None,
        })
    }

    /// From now on, sends and receives through a SOCKS5 proxy's UDP relay (see the module
    /// documentation): one datagram a call, and nothing from anyone but the relay.
    pub fn relay_through(&mut self, association: UdpAssociation) {
        self.segments = 1;
        // A batch from the relay (GRO) would mix senders under one header.
        #[cfg(target_os = "linux")]
        set_option(
            &socket2::SockRef::from(&self.io),
            libc::IPPROTO_UDP,
            libc::UDP_GRO,
            0,
        );
        let UdpAssociation { relay, control } = association;
        // The relay lives while the connection does; the proxy sends nothing on it.
        let control = tokio::spawn(async move {
            let mut control = control;
            let mut byte = [0u8; 1];
            let _ = tokio::io::AsyncReadExt::read(&mut control, &mut byte).await;
            tracing::warn!(
                "the proxy closed its UDP relay ({relay}): uTP and the DHT get nothing more"
            );
        });
        self.relay = Some(Relay {
            addr: relay,
            control,
        });
    }

    /// The relay datagrams go through, if any.
    pub fn relay(&self) -> Option<SocketAddr> {
        self.relay.as_ref().map(|r| r.addr)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A buffer large enough for what one [`UdpSocket::recv`] may give.
    pub fn buffer(&self) -> Vec<u8> {
        vec![0; (self.state.gro_segments() * 1500).max(64 * 1024)]
    }

    /// Waits for datagrams and reads them into `buf` (see [`UdpSocket::buffer`]).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        loop {
            let mut meta = [RecvMeta::default()];
            self.io
                .async_io(Interest::READABLE, || {
                    let mut bufs = [IoSliceMut::new(buf)];
                    self.state
                        .recv(UdpSockRef::from(&self.io), &mut bufs, &mut meta)
                })
                .await?;
            let [meta] = meta;
            let received = Received {
                from: dual_stack::canonical(meta.addr),
                to: meta.dst_ip.map(|ip| ip.to_canonical()),
                len: meta.len,
                stride: meta.stride,
            };
            let Some(relay) = &self.relay else {
                return Ok(received);
            };
            if received.from != relay.addr {
                continue;
            }
            // One datagram (GRO is off), behind its header.
            let datagram = &buf[..received.len.min(received.stride.max(1))];
            let Some((from, payload)) = socks5::parse_udp(datagram) else {
                continue;
            };
            let (start, len) = (datagram.len() - payload.len(), payload.len());
            buf.copy_within(start..start + len, 0);
            return Ok(Received {
                from,
                to: None,
                len,
                stride: len,
            });
        }
    }

    /// Sends `datagram` to `to` from the local address `from` (one a peer reached us at;
    /// `None` lets the route choose), without waiting: `WouldBlock` when the socket's
    /// buffer is full.
    pub fn try_send(
        &self,
        datagram: &[u8],
        to: SocketAddr,
        from: Option<IpAddr>,
    ) -> io::Result<()> {
        self.try_send_segments(datagram, datagram.len(), to, from)
    }

    /// How many datagrams one [`UdpSocket::try_send_segments`] may carry: more than one
    /// where the system offloads segmentation (Linux's UDP GSO).
    pub fn max_segments(&self) -> usize {
        self.segments
    }

    /// Sends `contents` as datagrams of `segment` bytes each (the last may be shorter) in
    /// one system call, as [`UdpSocket::try_send`] sends one: at most
    /// [`UdpSocket::max_segments`] of them, and at most 64 KiB in all. The call fails
    /// where the system cannot segment them after all (a network card without the
    /// offload, or a path MTU below the segment size): the caller sends them one by one.
    pub fn try_send_segments(
        &self,
        contents: &[u8],
        segment: usize,
        to: SocketAddr,
        from: Option<IpAddr>,
    ) -> io::Result<()> {
        if let Some(relay) = &self.relay {
            if contents.len() > segment {
                return Err(io::ErrorKind::InvalidInput.into());
            }
            let mut wrapped = socks5::udp_header(Target::Addr(to)).map_err(io::Error::other)?;
            wrapped.extend_from_slice(contents);
            return self.send_raw_segments(
                &wrapped,
                None,
                dual_stack::for_socket(relay.addr, self.local),
                None,
            );
        }
        let destination = dual_stack::for_socket(to, self.local);
        let src_ip = from.and_then(|ip| self.source_for(ip, destination));
        let segment_size = (contents.len() > segment).then_some(segment);
        let send = |src_ip| self.send_raw_segments(contents, segment_size, destination, src_ip);
        match send(src_ip) {
            // The address is no longer ours (an IPv6 temporary address expired): any
            // answer beats none.
            Err(e) if src_ip.is_some() && e.kind() != io::ErrorKind::WouldBlock => send(None),
            sent => sent,
        }
    }

    fn send_raw_segments(
        &self,
        contents: &[u8],
        segment_size: Option<usize>,
        destination: SocketAddr,
        src_ip: Option<IpAddr>,
    ) -> io::Result<()> {
        self.io.try_io(Interest::WRITABLE, || {
            let transmit = Transmit {
                destination,
                ecn: None,
                contents,
                segment_size,
                src_ip,
            };
            self.state.try_send(UdpSockRef::from(&self.io), &transmit)
        })
    }

    /// [`UdpSocket::try_send`], waiting while the socket's buffer is full.
    pub async fn send(
        &self,
        datagram: &[u8],
        to: SocketAddr,
        from: Option<IpAddr>,
    ) -> io::Result<()> {
        loop {
            match self.try_send(datagram, to, from) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.io.writable().await?,
                sent => return sent,
            }
        }
    }

    /// Waits until the socket's buffer may take a datagram.
    pub async fn writable(&self) -> io::Result<()> {
        self.io.writable().await
    }

    /// `from` as this socket can send from it to `destination`, if it can: a source of
    /// the destination's family, mapped for an IPv4 peer of a dual-stack socket.
    fn source_for(&self, from: IpAddr, destination: SocketAddr) -> Option<IpAddr> {
        let from = from.to_canonical();
        // A datagram to a broadcast or multicast address (a wildcard socket gets those)
        // is answered from a unicast one: the route's.
        let unicast = match from {
            IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast()),
            IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
        };
        if !unicast {
            return None;
        }
        match (from, destination.ip()) {
            (IpAddr::V4(v4), IpAddr::V4(_)) => Some(v4.into()),
            (IpAddr::V4(v4), IpAddr::V6(d)) if d.to_ipv4_mapped().is_some() => {
                Some(v4.to_ipv6_mapped().into())
            }
            (IpAddr::V6(v6), IpAddr::V6(d)) if d.to_ipv4_mapped().is_none() => Some(v6.into()),
            _ => None,
        }
    }
}

/// `quinn-udp` turns path MTU discovery to "probe" (QUIC sizes its own packets). uTP here
/// sends fixed 1 400-byte payloads, so they must get through a path with a smaller MTU
/// (a VPN, a tunnel, PPPoE) by being fragmented rather than dropped:
/// - IPv4 datagrams go without "don't fragment", as libtorrent's do (it sets the mark only
///   on its MTU probes), so a router fragments them. With the mark, the sender relies on
///   the router's "fragmentation needed" to learn the path's MTU, and behind a firewall
///   that drops ICMP (a path MTU black hole) its full-size packets are lost for good.
/// - IPv6 routers never fragment: the kernel's usual discovery stays on, which learns the
///   path's MTU from "packet too big" (ICMPv6 that firewalls must pass, RFC 4890) and
///   fragments at the source.
#[cfg(target_os = "linux")]
fn keep_path_mtu_discovery(socket: &socket2::Socket) {
    // Either may not apply (an IPv4 socket has no IPv6 options); failing leaves the mode.
    // On a dual-stack socket the IPv4 option is the one IPv4-mapped peers get.
    set_option(
        socket,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DONT,
    );
    set_option(
        socket,
        libc::IPPROTO_IPV6,
        libc::IPV6_MTU_DISCOVER,
        libc::IPV6_PMTUDISC_WANT,
    );
    set_option(socket, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 0);
}

/// Elsewhere `quinn-udp` sets "don't fragment" (`IP_DONTFRAG` on macOS and FreeBSD,
/// `IPV6_DONTFRAG`); it is cleared again, for the same reason.
#[cfg(all(unix, not(target_os = "linux")))]
fn keep_path_mtu_discovery(socket: &socket2::Socket) {
    #[cfg(any(target_os = "freebsd", target_os = "macos", target_os = "ios"))]
    set_option(socket, libc::IPPROTO_IP, libc::IP_DONTFRAG, 0);
    set_option(socket, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 0);
}

/// An integer socket option socket2 has no setter for; a failure leaves it as it was.
#[cfg(unix)]
fn set_option(socket: &socket2::Socket, level: libc::c_int, name: libc::c_int, value: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor, and a pointer to a c_int with its size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(not(unix))]
fn keep_path_mtu_discovery(_: &socket2::Socket) {}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A datagram to 127.0.0.7 is answered from 127.0.0.7, not from 127.0.0.1 (the route's
    /// choice on loopback), on an IPv4 wildcard socket and on a dual-stack one.
    #[tokio::test]
    async fn answers_come_from_the_address_asked() {
        for wildcard in ["0.0.0.0:0", "[::]:0"] {
            let Ok(socket) = UdpSocket::bind(a(wildcard)) else {
                continue; // No IPv6 on this system.
            };
            let port = socket.local_addr().port();
            let peer = tokio::net::UdpSocket::bind("127.0.0.9:0").await.unwrap();
            peer.send_to(b"ask", ("127.0.0.7", port)).await.unwrap();
            let mut buf = socket.buffer();
            let got = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
                .await
                .expect("in time")
                .unwrap();
            assert_eq!(got.from, peer.local_addr().unwrap(), "{wildcard}");
            assert_eq!(got.to, Some("127.0.0.7".parse().unwrap()), "{wildcard}");
            let datagrams: Vec<&[u8]> = got.datagrams(&buf).collect();
            assert_eq!(datagrams, [b"ask"]);

            socket.send(b"answer", got.from, got.to).await.unwrap();
            let mut answer = [0u8; 16];
            let (n, from) =
                tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut answer))
                    .await
                    .expect("in time")
                    .unwrap();
            assert_eq!(&answer[..n], b"answer");
            assert_eq!(from, SocketAddr::from(([127, 0, 0, 7], port)), "{wildcard}");

            // With no source given the route chooses (127.0.0.1 on loopback).
            socket.send(b"again", got.from, None).await.unwrap();
            let (_, from) = peer.recv_from(&mut answer).await.unwrap();
            assert_eq!(from, SocketAddr::from(([127, 0, 0, 1], port)), "{wildcard}");
        }
    }

    /// Datagrams sent in one call arrive as the datagrams they are, at a plain socket and
    /// at one that takes them in batches (GRO).
    #[tokio::test]
    async fn segments_arrive_as_separate_datagrams() {
        let sender = UdpSocket::bind(a("127.0.0.1:0")).unwrap();
        if sender.max_segments() < 4 {
            return; // No segmentation offload here (it is Linux's).
        }
        let plain = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let batching = UdpSocket::bind(a("127.0.0.1:0")).unwrap();
        let contents: Vec<u8> = (0..340u32).map(|i| (i / 100) as u8).collect();
        let sizes = |datagrams: Vec<Vec<u8>>| -> Vec<(usize, u8)> {
            datagrams.iter().map(|d| (d.len(), d[0])).collect()
        };
        let want = vec![(100, 0), (100, 1), (100, 2), (40, 3)];

        sender.writable().await.unwrap();
        sender
            .try_send_segments(&contents, 100, plain.local_addr().unwrap(), None)
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1000];
        while got.len() < 4 {
            let (n, _) = tokio::time::timeout(Duration::from_secs(5), plain.recv_from(&mut buf))
                .await
                .expect("in time")
                .unwrap();
            got.push(buf[..n].to_vec());
        }
        assert_eq!(sizes(got), want);

        sender.writable().await.unwrap();
        sender
            .try_send_segments(&contents, 100, batching.local_addr(), None)
            .unwrap();
        let mut got = Vec::new();
        let mut buf = batching.buffer();
        while got.len() < 4 {
            let received = tokio::time::timeout(Duration::from_secs(5), batching.recv(&mut buf))
                .await
                .expect("in time")
                .unwrap();
            got.extend(received.datagrams(&buf).map(<[u8]>::to_vec));
        }
        assert_eq!(sizes(got), want);
    }

    /// Through a SOCKS5 relay: what is sent goes to the relay behind a header naming its
    /// destination; what the relay sends back comes out unwrapped, from its true sender;
    /// anyone else's datagrams are dropped.
    #[tokio::test]
    async fn a_relay_carries_everything() {
        let relay = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let control = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let mut socket = UdpSocket::bind(a("127.0.0.1:0")).unwrap();
        socket.relay_through(UdpAssociation {
            relay: relay.local_addr().unwrap(),
            control,
        });
        assert_eq!(socket.max_segments(), 1);
        let peer = a("10.1.2.3:6881");
        socket.send(b"ask", peer, None).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), relay.recv_from(&mut buf))
            .await
            .expect("in time")
            .unwrap();
        assert_eq!(&buf[..n], b"\0\0\0\x01\x0a\x01\x02\x03\x1a\xe1ask");
        assert_eq!(from, socket.local_addr());

        let stranger = tokio::net::UdpSocket::bind("127.0.0.9:0").await.unwrap();
        stranger
            .send_to(b"\0\0\0\x01\x0a\x01\x02\x03\x1a\xe1no", from)
            .await
            .unwrap();
        relay
            .send_to(b"\0\0\0\x01\x0a\x01\x02\x03\x1a\xe1answer", from)
            .await
            .unwrap();
        let mut buf = socket.buffer();
        let got = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
            .await
            .expect("in time")
            .unwrap();
        assert_eq!(got.from, peer);
        let datagrams: Vec<&[u8]> = got.datagrams(&buf).collect();
        assert_eq!(datagrams, [b"answer"]);
    }

    /// A source of the wrong family, a broadcast or multicast one (a datagram sent to one
    /// reaches a wildcard socket), or one the kernel refuses (not ours, as an expired
    /// temporary address) still lets the answer out, from the route's address.
    #[tokio::test]
    async fn an_unusable_source_is_left_to_the_route() {
        let socket = UdpSocket::bind(a("0.0.0.0:0")).unwrap();
        let port = socket.local_addr().port();
        let peer = tokio::net::UdpSocket::bind("127.0.0.9:0").await.unwrap();
        let to = peer.local_addr().unwrap();
        let mut buf = [0u8; 16];
        for from in ["::1", "255.255.255.255", "224.0.0.1", "192.0.2.1"] {
            socket
                .send(b"x", to, Some(from.parse().unwrap()))
                .await
                .unwrap();
            let (n, answered_from) =
                tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
                    .await
                    .expect("in time")
                    .unwrap();
            assert_eq!(&buf[..n], b"x", "{from}");
            assert_eq!(
                answered_from,
                SocketAddr::from(([127, 0, 0, 1], port)),
                "{from}"
            );
        }
    }
}
