//! Compact peer addresses (BEP 23, BEP 7): 4 or 16 address bytes and a big-endian port,
//! as trackers, the DHT, peer exchange and resume state carry them.

use std::net::{IpAddr, SocketAddr};

/// Bytes of a compact IPv4 peer.
pub const V4_LEN: usize = 6;
/// Bytes of a compact IPv6 peer.
pub const V6_LEN: usize = 18;

/// Appends `addr` in compact form.
pub fn push(addr: SocketAddr, out: &mut Vec<u8>) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// `addr` in compact form.
pub fn bytes(addr: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(V6_LEN);
    push(addr, &mut out);
    out
}

/// The addresses of one family (`v4` or not) of `addrs`, in compact form.
pub fn encode<'a>(addrs: impl IntoIterator<Item = &'a SocketAddr>, v4: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for &addr in addrs.into_iter().filter(|a| a.is_ipv4() == v4) {
        push(addr, &mut out);
    }
    out
}

/// One compact peer of [`V4_LEN`] or [`V6_LEN`] bytes; `None` for another length or port
/// 0 (nobody listens there).
pub fn peer(bytes: &[u8]) -> Option<SocketAddr> {
    let (ip, port) = bytes.split_at_checked(bytes.len().checked_sub(2)?)?;
    let ip = match ip.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(ip).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(ip).ok()?),
        _ => return None,
    };
    let port = u16::from_be_bytes([port[0], port[1]]);
    (port != 0).then_some(SocketAddr::new(ip, port))
}

/// The peers of a list of `width`-byte compact peers ([`V4_LEN`] or [`V6_LEN`]), skipping
/// port 0 and a ragged tail.
pub fn peers(bytes: &[u8], width: usize) -> impl Iterator<Item = SocketAddr> + '_ {
    bytes.chunks_exact(width).filter_map(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_both_families() {
        let addrs: Vec<SocketAddr> = ["10.1.2.3:6881", "[2001:db8::7]:51413", "192.0.2.9:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let v4 = encode(&addrs, true);
        let v6 = encode(&addrs, false);
        assert_eq!(v4, [10, 1, 2, 3, 0x1a, 0xe1, 192, 0, 2, 9, 0, 1]);
        assert_eq!(v6.len(), V6_LEN);
        let back: Vec<SocketAddr> = peers(&v4, V4_LEN).chain(peers(&v6, V6_LEN)).collect();
        assert_eq!(back, [addrs[0], addrs[2], addrs[1]]);
    }

    #[test]
    fn port_zero_and_odd_lengths_are_no_peer() {
        assert_eq!(peer(&[1, 2, 3, 4, 0, 0]), None);
        assert_eq!(peer(&[1, 2, 3, 4, 0]), None);
        assert_eq!(peer(&[]), None);
        assert_eq!(peer(&[1]), None);
        assert_eq!(
            peers(&[1, 2, 3, 4, 0, 9, 7, 7], V4_LEN).count(),
            1,
            "ragged tail"
        );
    }
}
