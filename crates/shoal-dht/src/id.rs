//! Node ids: 160-bit numbers in the same space as info-hashes, compared by XOR distance,
//! and BEP 42's rule that ties an id to its owner's IP address.
//!
//! BEP 42 makes an attacker unable to choose an id next to a target info-hash without also
//! owning an IP address whose CRC32C lands there: the first 21 bits of the id are the
//! CRC32C of the masked IP with three random bits `r` (which are repeated in the last
//! byte). Addresses that cannot be reached from the Internet (loopback, private ranges)
//! are exempt, as in every implementation.

use rand::Rng;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// A DHT node id (or a target: an info-hash or a random point in a bucket).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub [u8; 20]);

impl NodeId {
    pub fn random(rng: &mut impl Rng) -> Self {
        let mut id = [0u8; 20];
        rng.fill(&mut id);
        NodeId(id)
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(NodeId)
    }

    /// XOR distance; compared as a big-endian number, so `Ord` on the result orders by
    /// closeness.
    pub fn distance(&self, other: &NodeId) -> NodeId {
        let mut d = [0u8; 20];
        for (i, byte) in d.iter_mut().enumerate() {
            *byte = self.0[i] ^ other.0[i];
        }
        NodeId(d)
    }

    /// How many leading bits `self` and `other` share (160 when equal).
    pub fn common_prefix_len(&self, other: &NodeId) -> usize {
        for (i, (a, b)) in self.0.iter().zip(other.0.iter()).enumerate() {
            let x = a ^ b;
            if x != 0 {
                return i * 8 + x.leading_zeros() as usize;
            }
        }
        160
    }

    /// A random id that shares exactly `prefix_len` leading bits with `self` (the next
    /// bit differs): a point inside the bucket at that depth, for refreshing it.
    pub fn random_with_prefix(&self, prefix_len: usize, rng: &mut impl Rng) -> NodeId {
        let mut id = NodeId::random(rng);
        let prefix_len = prefix_len.min(159);
        for bit in 0..=prefix_len {
            let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
            let ours = self.0[byte] & mask;
            let want = if bit == prefix_len { ours ^ mask } else { ours };
            id.0[byte] = (id.0[byte] & !mask) | want;
        }
        id
    }

    pub fn to_hex(&self) -> String {
        shoal_core::hex::encode(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", &self.to_hex()[..12])
    }
}

impl From<shoal_core::InfoHash> for NodeId {
    fn from(h: shoal_core::InfoHash) -> Self {
        NodeId(h.0)
    }
}

/// Whether BEP 42 applies to `ip`: addresses that are not globally routable are exempt.
pub fn bep42_exempt(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_local_v4(v4),
        // IPv6 is not used by this node yet; never reject on a rule it does not check.
        IpAddr::V6(_) => true,
    }
}

fn is_local_v4(ip: Ipv4Addr) -> bool {
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
}

/// The CRC32C of the masked IPv4 address with `r` in its top bits (BEP 42).
fn bep42_crc(ip: Ipv4Addr, r: u8) -> u32 {
    let masked = u32::from(ip) & 0x030f_3fff;
    let value = masked | (u32::from(r & 7) << 29);
    shoal_core::crc32c::crc32c(&value.to_be_bytes())
}

/// A BEP 42 id for our external address `ip`, the rest random.
pub fn bep42_id(ip: Ipv4Addr, rng: &mut impl Rng) -> NodeId {
    let mut id = NodeId::random(rng);
    let r = id.0[19] & 7;
    let crc = bep42_crc(ip, r);
    id.0[0] = (crc >> 24) as u8;
    id.0[1] = (crc >> 16) as u8;
    id.0[2] = ((crc >> 8) as u8 & 0xf8) | (id.0[2] & 7);
    id
}

/// Whether `id` is a valid BEP 42 id for a node at `ip` (true for exempt addresses).
pub fn bep42_valid(id: &NodeId, ip: IpAddr) -> bool {
    let IpAddr::V4(v4) = ip else {
        return true;
    };
    if is_local_v4(v4) {
        return true;
    }
    let crc = bep42_crc(v4, id.0[19] & 7);
    id.0[0] == (crc >> 24) as u8
        && id.0[1] == (crc >> 16) as u8
        && (id.0[2] & 0xf8) == ((crc >> 8) as u8 & 0xf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn hex_id(s: &str) -> NodeId {
        let mut id = [0u8; 20];
        for (i, b) in id.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        NodeId(id)
    }

    /// The test vectors from BEP 42.
    #[test]
    fn bep42_vectors() {
        let cases = [
            ("124.31.75.21", "5fbfbff10c5d6a4ec8a88e4c6ab4c28b95eee401"),
            ("21.75.31.124", "5a3ce9c14e7a08645677bbd1cfe7d8f956d53256"),
            ("65.23.51.170", "a5d43220bc8f112a3d426c84764f8c2a1150e616"),
            ("84.124.73.14", "1b0321dd1bb1fe518101ceef99462b947a01ff41"),
            ("43.213.53.83", "e56f6cbf5b7c4be0237986d5243b87aa6d51305a"),
        ];
        for (ip, id) in cases {
            let ip: Ipv4Addr = ip.parse().unwrap();
            assert!(bep42_valid(&hex_id(id), IpAddr::V4(ip)), "{ip}");
            let mut wrong = hex_id(id);
            wrong.0[0] ^= 0x40;
            assert!(!bep42_valid(&wrong, IpAddr::V4(ip)), "{ip}");
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let ip: Ipv4Addr = "93.184.216.34".parse().unwrap();
        for _ in 0..50 {
            assert!(bep42_valid(&bep42_id(ip, &mut rng), IpAddr::V4(ip)));
        }
        assert!(bep42_valid(&NodeId([0; 20]), "127.0.2.1".parse().unwrap()));
        assert!(bep42_valid(
            &NodeId([0; 20]),
            "192.168.1.1".parse().unwrap()
        ));
    }

    #[test]
    fn distances_and_prefixes() {
        let a = NodeId([0; 20]);
        let mut b = NodeId([0; 20]);
        b.0[1] = 0x10;
        assert_eq!(a.common_prefix_len(&b), 11);
        assert_eq!(a.common_prefix_len(&a), 160);
        assert!(a.distance(&b) > a.distance(&a));
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for depth in [0, 1, 7, 8, 33, 159] {
            let r = b.random_with_prefix(depth, &mut rng);
            assert_eq!(b.common_prefix_len(&r), depth);
        }
    }
}
