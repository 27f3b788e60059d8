//! BEP 40 canonical peer priority: a number both ends of a connection compute alike from
//! their two addresses, so that every client of a swarm prefers the same connections.
//! A client at its connection limit keeps the higher-priority peers, which spreads
//! connections evenly over the swarm (newcomers find a way in) and leaves an attacker
//! that floods one client with connections no better placed than its share of addresses.

use std::net::{IpAddr, SocketAddr};

use crate::crc32c::crc32c;

/// The canonical priority of a connection between `ours` (our address as the peer sees
/// it) and `theirs`; higher is preferred. Addresses of different families (after
/// unmapping IPv4-mapped IPv6) have none in common: 0.
pub fn peer_priority(ours: SocketAddr, theirs: SocketAddr) -> u32 {
    let (a, b) = (ours.ip().to_canonical(), theirs.ip().to_canonical());
    if a == b {
        let (low, high) = sorted(ours.port(), theirs.port());
        let mut buf = [0u8; 4];
        buf[..2].copy_from_slice(&low.to_be_bytes());
        buf[2..].copy_from_slice(&high.to_be_bytes());
        return crc32c(&buf);
    }
    match (a, b) {
        // At least the first 2 bytes (IPv4) or 6 bytes (IPv6) are kept whole, and every
        // byte up to the first that differs; the rest is masked with 0x55. (For IPv6
        // libtorrent 2.0 keeps one byte more than the BEP when the first five bytes match;
        // we follow the BEP, and the two agree for addresses that differ earlier.)
        (IpAddr::V4(a), IpAddr::V4(b)) => masked_crc(&a.octets(), &b.octets(), 2),
        (IpAddr::V6(a), IpAddr::V6(b)) => masked_crc(&a.octets(), &b.octets(), 6),
        _ => 0,
    }
}

fn sorted<T: Ord>(a: T, b: T) -> (T, T) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// CRC-32C of the two masked addresses, lower first. Both differ at their first unmasked
/// difference, so sorting before or after masking gives the same order.
fn masked_crc<const N: usize>(a: &[u8; N], b: &[u8; N], min_kept: usize) -> u32 {
    let first_difference = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(N);
    let kept = (first_difference + 1).max(min_kept);
    let mask = |addr: &[u8; N]| {
        let mut out = *addr;
        for byte in &mut out[kept.min(N)..] {
            *byte &= 0x55;
        }
        out
    };
    let (low, high) = sorted(mask(a), mask(b));
    let mut buf = Vec::with_capacity(2 * N);
    buf.extend_from_slice(&low);
    buf.extend_from_slice(&high);
    crc32c(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_beps_examples() {
        // BEP 40: 123.213.32.10 and 98.76.54.32 hash 624C14007BD50000 to ec2d7224.
        let (us, them) = (addr("123.213.32.10:6881"), addr("98.76.54.32:6881"));
        assert_eq!(peer_priority(us, them), 0xec2d_7224);
        // In the same /24 the whole addresses count: 7BD5200A7BD520EA, 99568189.
        let near = addr("123.213.32.234:51413");
        assert_eq!(peer_priority(us, near), 0x9956_8189);
    }

    #[test]
    fn both_ends_agree() {
        let pairs = [
            ("10.0.0.1:1", "10.0.0.2:2"),
            ("10.0.0.1:1", "10.0.9.2:2"),
            ("10.0.0.1:6881", "10.0.0.1:6882"),
            ("[2001:db8::1]:1", "[2001:db8:1::2]:2"),
            ("[2001:db8::1]:1", "[2001:db9::1]:1"),
        ];
        for (a, b) in pairs {
            assert_eq!(
                peer_priority(addr(a), addr(b)),
                peer_priority(addr(b), addr(a))
            );
        }
    }

    #[test]
    fn the_mask_hides_what_lies_beyond_the_prefix() {
        // Outside our /16, bits the mask clears do not change the priority (54 and 190
        // are both 0x14 masked, 32 and 170 both 0), so a block of addresses cannot pick
        // the one that ranks best.
        let us = addr("123.213.32.10:6881");
        assert_eq!(
            peer_priority(us, addr("98.76.54.32:1")),
            peer_priority(us, addr("98.76.190.170:2")),
        );
        assert_ne!(
            peer_priority(us, addr("98.76.54.32:1")),
            peer_priority(us, addr("98.76.55.32:1")),
        );
    }

    #[test]
    fn same_address_compares_ports_and_families_do_not_mix() {
        let a = addr("10.0.0.1:6881");
        let b = addr("10.0.0.1:6882");
        assert_eq!(peer_priority(a, b), crc32c(&[0x1a, 0xe1, 0x1a, 0xe2]));
        assert_eq!(
            peer_priority(a, addr("[::ffff:10.0.0.2]:1")),
            peer_priority(a, addr("10.0.0.2:1"))
        );
        assert_eq!(peer_priority(a, addr("[2001:db8::1]:1")), 0);
    }
}
