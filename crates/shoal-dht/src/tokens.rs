//! Write tokens for `announce_peer` (BEP 5): a node may announce only after a
//! `get_peers` from the same IP, proven by the token we handed out there.
//!
//! A token is the first 8 bytes of SHA-1(secret ‖ IP). The secret rotates every
//! [`ROTATE`]; tokens made with the current or the previous secret are accepted, so a
//! token is valid for between one and two rotation periods (5–10 minutes) and we keep no
//! per-requester state at all.

use sha1::{Digest, Sha1};
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub const ROTATE: Duration = Duration::from_secs(5 * 60);
const TOKEN_LEN: usize = 8;

pub struct Tokens {
    current: [u8; 16],
    previous: [u8; 16],
    rotated_at: Instant,
}

impl Tokens {
    pub fn new(secret: [u8; 16], now: Instant) -> Self {
        Tokens {
            current: secret,
            previous: secret,
            rotated_at: now,
        }
    }

    /// Rotates when due, with `fresh` as the new secret; returns when to call again.
    pub fn maybe_rotate(&mut self, now: Instant, fresh: impl FnOnce() -> [u8; 16]) -> Instant {
        if now >= self.rotated_at + ROTATE {
            self.previous = self.current;
            self.current = fresh();
            self.rotated_at = now;
        }
        self.rotated_at + ROTATE
    }

    pub fn make(&self, ip: IpAddr) -> Vec<u8> {
        token(&self.current, ip)
    }

    pub fn check(&self, ip: IpAddr, presented: &[u8]) -> bool {
        presented == token(&self.current, ip).as_slice()
            || presented == token(&self.previous, ip).as_slice()
    }
}

fn token(secret: &[u8; 16], ip: IpAddr) -> Vec<u8> {
    let mut h = Sha1::new();
    h.update(secret);
    match ip {
        IpAddr::V4(v4) => h.update(v4.octets()),
        IpAddr::V6(v6) => h.update(v6.octets()),
    }
    h.finalize()[..TOKEN_LEN].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_after_two_rotations() {
        let t0 = Instant::now();
        let mut tokens = Tokens::new([1; 16], t0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let tok = tokens.make(ip);
        assert!(tokens.check(ip, &tok));
        assert!(!tokens.check(other, &tok), "a token is bound to its IP");
        assert!(!tokens.check(ip, b"forged!!"));
        tokens.maybe_rotate(t0 + ROTATE, || [2; 16]);
        assert!(tokens.check(ip, &tok), "still valid after one rotation");
        tokens.maybe_rotate(t0 + ROTATE * 2, || [3; 16]);
        assert!(!tokens.check(ip, &tok), "stale after two");
    }
}
