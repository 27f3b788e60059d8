//! The 20-byte SHA-1 that identifies a v1 torrent, and its text forms (hex, base32).

use std::fmt;
use std::str::FromStr;

/// SHA-1 of a torrent's bencoded `info` dictionary, exactly as it appeared in the file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoHashParseError {
    #[error("an info-hash is 40 hex or 32 base32 characters, not {0}")]
    BadLength(usize),
    #[error("invalid character {0:?} in info-hash")]
    BadChar(char),
}

impl InfoHash {
    /// Hashes a bencoded info dictionary.
    pub fn of_info(info_bytes: &[u8]) -> Self {
        use sha1::{Digest, Sha1};
        InfoHash(Sha1::digest(info_bytes).into())
    }

    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl FromStr for InfoHash {
    type Err = InfoHashParseError;

    /// Accepts 40 hex digits or 32 base32 characters (RFC 4648 alphabet, either case),
    /// the two forms magnet links use.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 20];
        match s.len() {
            40 => {
                for (i, pair) in s.as_bytes().chunks(2).enumerate() {
                    out[i] = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
                }
            }
            32 => {
                // 32 symbols × 5 bits = 160 bits, exactly 20 bytes: no padding involved.
                let mut acc: u64 = 0;
                let mut bits = 0;
                let mut n = 0;
                for c in s.bytes() {
                    acc = (acc << 5) | u64::from(base32_value(c)?);
                    bits += 5;
                    if bits >= 8 {
                        bits -= 8;
                        out[n] = (acc >> bits) as u8;
                        n += 1;
                    }
                }
            }
            n => return Err(InfoHashParseError::BadLength(n)),
        }
        Ok(InfoHash(out))
    }
}

fn hex_value(c: u8) -> Result<u8, InfoHashParseError> {
    crate::hex::digit(c).ok_or(InfoHashParseError::BadChar(c as char))
}

fn base32_value(c: u8) -> Result<u8, InfoHashParseError> {
    match c {
        b'A'..=b'Z' => Ok(c - b'A'),
        b'a'..=b'z' => Ok(c - b'a'),
        b'2'..=b'7' => Ok(c - b'2' + 26),
        _ => Err(InfoHashParseError::BadChar(c as char)),
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_base32_agree() {
        let hex: InfoHash = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a".parse().unwrap();
        let b32: InfoHash = "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK".parse().unwrap();
        let lower: InfoHash = "yex6dqdlxisuvhoj6um3gnnkpqjwpkek".parse().unwrap();
        assert_eq!(hex, b32);
        assert_eq!(hex, lower);
        assert_eq!(hex.to_string(), "c12fe1c06bba254a9dc9f519b335aa7c1367a88a");
        assert_eq!(
            "abc".parse::<InfoHash>(),
            Err(InfoHashParseError::BadLength(3))
        );
        assert!("g12fe1c06bba254a9dc9f519b335aa7c1367a88a"
            .parse::<InfoHash>()
            .is_err());
        assert!("1EX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK"
            .parse::<InfoHash>()
            .is_err());
    }
}
