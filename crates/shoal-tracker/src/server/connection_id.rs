//! Stateless BEP 15 connection ids: a keyed hash of the client's address under a secret
//! that rotates every minute. A connect costs no memory, and an id is accepted while its
//! secret is the current or the previous one (one to two minutes, covering the client's
//! one-minute lifetime). Spoofed connects from other addresses yield ids that are useless
//! from the attacker's own address.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::RngCore;
use sha1::{Digest, Sha1};

/// How often the secret changes.
pub const ROTATE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct ConnectionIds {
    current: [u8; 16],
    previous: [u8; 16],
    next_rotation: Instant,
}

fn derive(secret: &[u8; 16], addr: SocketAddr) -> u64 {
    let mut h = Sha1::new();
    h.update(secret);
    match addr.ip() {
        IpAddr::V4(ip) => h.update(ip.octets()),
        IpAddr::V6(ip) => h.update(ip.octets()),
    }
    h.update(addr.port().to_be_bytes());
    let digest = h.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("SHA-1 is 20 bytes"))
}

impl ConnectionIds {
    pub fn new(now: Instant, rng: &mut impl RngCore) -> Self {
        let mut current = [0; 16];
        let mut previous = [0; 16];
        rng.fill_bytes(&mut current);
        rng.fill_bytes(&mut previous);
        ConnectionIds {
            current,
            previous,
            next_rotation: now + ROTATE_EVERY,
        }
    }

    /// The id to give `addr` in a connect response.
    pub fn issue(&self, addr: SocketAddr) -> u64 {
        derive(&self.current, addr)
    }

    /// Whether `id` was issued to `addr` recently enough.
    pub fn check(&self, addr: SocketAddr, id: u64) -> bool {
        derive(&self.current, addr) == id || derive(&self.previous, addr) == id
    }

    /// Rotates the secret when due.
    pub fn handle_timeout(&mut self, now: Instant, rng: &mut impl RngCore) {
        if now >= self.next_rotation {
            self.previous = self.current;
            rng.fill_bytes(&mut self.current);
            self.next_rotation = now + ROTATE_EVERY;
        }
    }

    pub fn poll_timeout(&self) -> Instant {
        self.next_rotation
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn ids_bind_to_address_and_expire_after_two_rotations() {
        let mut rng = StdRng::seed_from_u64(1);
        let now = Instant::now();
        let mut ids = ConnectionIds::new(now, &mut rng);
        let a: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:1000".parse().unwrap();
        let id = ids.issue(a);
        assert!(ids.check(a, id));
        assert!(!ids.check(b, id), "another address cannot use it");
        assert!(!ids.check(a, id ^ 1));
        ids.handle_timeout(now + Duration::from_secs(30), &mut rng);
        assert!(ids.check(a, id), "no rotation yet");
        ids.handle_timeout(now + ROTATE_EVERY, &mut rng);
        assert!(ids.check(a, id), "previous secret still accepted");
        ids.handle_timeout(now + ROTATE_EVERY * 2, &mut rng);
        assert!(!ids.check(a, id), "stale id refused");
    }
}
