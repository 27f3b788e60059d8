//! Addresses on a dual-stack socket: one bound to `[::]` with `IPV6_V6ONLY` off, which
//! takes IPv4 peers as well as IPv6 ones, as libtorrent's default listen socket does.
//!
//! Such a socket sees an IPv4 peer as `::ffff:a.b.c.d` and can only send to IPv6
//! addresses. Everything above the socket (address books, ban lists, the DHT's family
//! check, what PEX tells others) wants the plain IPv4 address, so addresses are made
//! [`canonical`] where they come off the socket and [`for_socket`] where they go onto it.
//! Every listening socket of shoal is made by [`bind`], so `[::]` means the same
//! everywhere, whatever the system's default (`net.ipv6.bindv6only`).

use std::net::{IpAddr, SocketAddr};

/// A non-blocking socket of `kind` (stream or datagram) bound at `addr`: on `[::]`,
/// dual-stack (`IPV6_V6ONLY` off); a stream one with `SO_REUSEADDR`, as tokio binds
/// its listeners, so that a restart takes its port while old connections linger.
pub fn bind(addr: SocketAddr, kind: socket2::Type) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), kind, None)?;
    if is_dual_stack(addr) {
        socket.set_only_v6(false)?;
    }
    if kind == socket2::Type::STREAM {
        socket.set_reuse_address(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// `addr` with an IPv4-mapped IPv6 address turned into the IPv4 address it carries.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// `to` in the form a socket bound at `local` can send to: an IPv4 address becomes
/// IPv4-mapped on an IPv6 socket.
pub fn for_socket(to: SocketAddr, local: SocketAddr) -> SocketAddr {
    match (to.ip(), local) {
        (IpAddr::V4(ip), SocketAddr::V6(_)) => {
            SocketAddr::new(ip.to_ipv6_mapped().into(), to.port())
        }
        _ => to,
    }
}

/// Whether a socket bound at `local` is (or is to be made) dual-stack: IPv6, on every
/// address.
pub fn is_dual_stack(local: SocketAddr) -> bool {
    matches!(local, SocketAddr::V6(v6) if v6.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn mapped_addresses_become_ipv4_and_back() {
        assert_eq!(canonical(a("[::ffff:10.0.0.7]:6881")), a("10.0.0.7:6881"));
        assert_eq!(canonical(a("[2001:db8::1]:6881")), a("[2001:db8::1]:6881"));
        assert_eq!(canonical(a("10.0.0.7:6881")), a("10.0.0.7:6881"));
        let dual = a("[::]:6881");
        assert_eq!(for_socket(a("10.0.0.7:1"), dual), a("[::ffff:10.0.0.7]:1"));
        assert_eq!(for_socket(a("[::1]:1"), dual), a("[::1]:1"));
        assert_eq!(
            for_socket(a("10.0.0.7:1"), a("0.0.0.0:6881")),
            a("10.0.0.7:1")
        );
        assert_eq!(
            canonical(for_socket(a("10.0.0.7:1"), dual)),
            a("10.0.0.7:1")
        );
    }

    #[test]
    fn a_socket_on_every_ipv6_address_takes_ipv4_too() {
        let Ok(udp) = bind(a("[::]:0"), socket2::Type::DGRAM) else {
            return; // No IPv6 on this system.
        };
        let udp = std::net::UdpSocket::from(udp);
        udp.set_nonblocking(false).unwrap();
        udp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let port = udp.local_addr().unwrap().port();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        sender.send_to(b"hi", ("127.0.0.1", port)).unwrap();
        let mut buf = [0; 2];
        let (_, from) = udp.recv_from(&mut buf).unwrap();
        assert_eq!(canonical(from), sender.local_addr().unwrap());
        udp.send_to(b"yo", for_socket(sender.local_addr().unwrap(), a("[::]:0")))
            .unwrap();
        assert_eq!(sender.recv_from(&mut buf).unwrap().0, 2);
    }

    #[test]
    fn only_ipv6_on_every_address_is_dual_stack() {
        assert!(is_dual_stack(a("[::]:0")));
        assert!(!is_dual_stack(a("[::1]:0")));
        assert!(!is_dual_stack(a("0.0.0.0:0")));
    }
}
