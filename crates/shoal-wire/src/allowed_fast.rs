//! The allowed-fast set of BEP 6: the pieces a peer may request from us while we choke
//! it, derived from its address so that reconnecting (or a neighbour in the same /24)
//! cannot collect a fresh set.

use std::net::IpAddr;

use shoal_core::InfoHash;
use shoal_hash::Sha1;

/// The first `k` pieces of the canonical allowed-fast sequence for a peer at `ip`
/// (BEP 6 defines it for IPv4; an IPv6 peer gets none).
pub fn allowed_fast_set(info_hash: &InfoHash, ip: IpAddr, piece_count: u32, k: usize) -> Vec<u32> {
    let IpAddr::V4(ip) = ip else {
        return Vec::new();
    };
    let k = k.min(piece_count as usize);
    let mut set = Vec::with_capacity(k);
    let mut x = [0u8; 24];
    x[..4].copy_from_slice(&(u32::from(ip) & 0xFFFF_FF00).to_be_bytes());
    x[4..].copy_from_slice(&info_hash.0);
    let mut hash = Sha1::digest(&x);
    while set.len() < k {
        for word in hash.chunks_exact(4) {
            let index = u32::from_be_bytes(word.try_into().expect("4 bytes")) % piece_count;
            if set.len() < k && !set.contains(&index) {
                set.push(index);
            }
        }
        hash = Sha1::digest(&hash);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in BEP 6.
    #[test]
    fn matches_the_bep_example() {
        let hash = InfoHash([0xaa; 20]);
        let ip: IpAddr = "80.4.4.200".parse().unwrap();
        assert_eq!(
            allowed_fast_set(&hash, ip, 1313, 7),
            [1059, 431, 808, 1217, 287, 376, 1188]
        );
        assert_eq!(
            allowed_fast_set(&hash, ip, 1313, 9),
            [1059, 431, 808, 1217, 287, 376, 1188, 353, 508]
        );
        // Same /24, same set; fewer pieces than k, all of them.
        assert_eq!(
            allowed_fast_set(&hash, "80.4.4.1".parse().unwrap(), 1313, 7),
            allowed_fast_set(&hash, ip, 1313, 7)
        );
        let mut small = allowed_fast_set(&hash, ip, 3, 10);
        small.sort();
        assert_eq!(small, [0, 1, 2]);
    }
}
