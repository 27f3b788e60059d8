//! BEP 33 DHT scrapes: the bloom filters of IPs a node returns for an info-hash's seeds
//! (`BFsd`) and other peers (`BFpe`), which a scraper ORs together from several nodes
//! and counts, so a peer stored on many nodes is counted once.

use std::net::IpAddr;

use sha1::{Digest, Sha1};

/// Bytes of a filter (m = 2048 bits, k = 2, fixed by the BEP).
pub const BLOOM_BYTES: usize = 256;
const BITS: usize = BLOOM_BYTES * 8;

/// A BEP 33 bloom filter of IP addresses.
#[derive(Clone, PartialEq, Eq)]
pub struct Bloom([u8; BLOOM_BYTES]);

impl std::fmt::Debug for Bloom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bloom(~{:.0})", self.estimate())
    }
}

impl Default for Bloom {
    fn default() -> Self {
        Bloom([0; BLOOM_BYTES])
    }
}

impl Bloom {
    /// A filter as received; `None` unless exactly [`BLOOM_BYTES`] long.
    pub fn from_bytes(bytes: &[u8]) -> Option<Bloom> {
        bytes.try_into().ok().map(Bloom)
    }

    pub fn as_bytes(&self) -> &[u8; BLOOM_BYTES] {
        &self.0
    }

    /// Adds an address: two bits from the SHA-1 of its 4 or 16 bytes.
    pub fn insert(&mut self, ip: IpAddr) {
        let hash = match ip.to_canonical() {
            IpAddr::V4(ip) => Sha1::digest(ip.octets()),
            IpAddr::V6(ip) => Sha1::digest(ip.octets()),
        };
        for pair in [[hash[0], hash[1]], [hash[2], hash[3]]] {
            let index = usize::from(u16::from_le_bytes(pair)) % BITS;
            self.0[index / 8] |= 1 << (index % 8);
        }
    }

    /// The union with `other` (what a scraper does with several nodes' filters).
    pub fn union(&mut self, other: &Bloom) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a |= b;
        }
    }

    /// How many distinct addresses the filter holds, estimated from its zero bits; it
    /// saturates around 8000. An empty filter holds none: the BEP's formula, which caps
    /// the zero bits at m - 1 (as libtorrent does), would say 0.5 there, which rounds to
    /// a peer that is not.
    pub fn estimate(&self) -> f64 {
        let zeros = self
            .0
            .iter()
            .map(|b| b.count_zeros() as usize)
            .sum::<usize>();
        if zeros == BITS {
            return 0.0;
        }
        let m = BITS as f64;
        let c = zeros.min(BITS - 1) as f64;
        (c / m).ln() / (2.0 * (1.0 - 1.0 / m).ln())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn the_beps_test_vector() {
        let mut bloom = Bloom::default();
        for i in 0..=255u8 {
            bloom.insert(Ipv4Addr::new(192, 0, 2, i).into());
        }
        for i in 0..=0x3e7u16 {
            let mut segments = [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0];
            segments[7] = i;
            bloom.insert(Ipv6Addr::from(segments).into());
        }
        let expected = "F6C3F5EAA07FFD91BDE89F777F26FB2BFF37BDB8FB2BBAA2FD3DDDE7BACFFF75EE7CCBAE\
            FE5EEDB1FBFAFF67F6ABFF5E43DDBCA3FD9B9FFDF4FFD3E9DFF12D1BDF59DB53DBE9FA5B\
            7FF3B8FDFCDE1AFB8BEDD7BE2F3EE71EBBBFE93BCDEEFE148246C2BC5DBFF7E7EFDCF24F\
            D8DC7ADFFD8FFFDFDDFFF7A4BBEEDF5CB95CE81FC7FCFF1FF4FFFFDFE5F7FDCBB7FD79B3\
            FA1FC77BFE07FFF905B7B7FFC7FEFEFFE0B8370BB0CD3F5B7F2BD93FEB4386CFDD6F7FD5\
            BFAF2E9EBFFFFEECD67ADBF7C67F17EFD5D75EBA6FFEBA7FFF47A91EB1BFBB53E8ABFB57\
            62ABE8FF237279BFEFBFEEF5FFC5FEBFDFE5ADFFADFEE1FB737FFFFBFD9F6AEFFEEE76B6\
            FD8F72EF";
        assert_eq!(
            shoal_core::hex::encode(bloom.as_bytes()).to_uppercase(),
            expected
        );
        assert!(
            (bloom.estimate() - 1224.9308).abs() < 0.001,
            "{}",
            bloom.estimate()
        );
    }

    #[test]
    fn an_empty_filter_counts_nobody_and_one_address_counts_one() {
        let mut bloom = Bloom::default();
        assert_eq!(bloom.estimate().round(), 0.0);
        bloom.insert(Ipv4Addr::new(10, 0, 0, 1).into());
        assert_eq!(bloom.estimate().round(), 1.0);
    }

    #[test]
    fn unions_count_each_address_once() {
        let (mut a, mut b) = (Bloom::default(), Bloom::default());
        for i in 0..40u8 {
            a.insert(Ipv4Addr::new(10, 0, 0, i).into());
        }
        for i in 20..60u8 {
            b.insert(Ipv4Addr::new(10, 0, 0, i).into());
        }
        a.union(&b);
        assert!((a.estimate() - 60.0).abs() < 3.0, "{}", a.estimate());
        assert!(
            Bloom::default().estimate() < 1.0,
            "the BEP's formula gives 0.5"
        );
        assert!(Bloom::from_bytes(&[0; 255]).is_none());
    }
}
