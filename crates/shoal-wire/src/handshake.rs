//! The BEP 3 handshake: `\x13BitTorrent protocol`, 8 reserved bytes, info-hash, peer id.
//!
//! The reserved bytes are how optional protocols are negotiated: an extension is used only
//! when *both* handshakes set its bit. Parsing is a free function so an accepting driver can
//! read an incoming handshake before it knows which torrent (and so which session
//! configuration) the connection belongs to.

use crate::WireError;
use bytes::{BufMut, BytesMut};
use shoal_core::{InfoHash, PeerId};

/// The protocol string, preceded on the wire by its length byte (19).
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";

/// 1 + 19 + 8 + 20 + 20 bytes.
pub const HANDSHAKE_LEN: usize = 68;

/// One side's handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
}

/// BEP 10 extension protocol: reserved byte 5, bit 0x10.
const EXTENSIONS: (usize, u8) = (5, 0x10);
/// BEP 6 fast extension: reserved byte 7, bit 0x04.
const FAST: (usize, u8) = (7, 0x04);
/// BEP 5 DHT (the peer accepts a `port` message): reserved byte 7, bit 0x01.
const DHT: (usize, u8) = (7, 0x01);

impl Handshake {
    /// The reserved bytes shoal sends by default: fast extension and extension protocol.
    pub const SHOAL_RESERVED: [u8; 8] = {
        let mut r = [0u8; 8];
        r[EXTENSIONS.0] |= EXTENSIONS.1;
        r[FAST.0] |= FAST.1;
        r
    };

    pub fn new(info_hash: InfoHash, peer_id: PeerId, reserved: [u8; 8]) -> Self {
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }

    pub fn supports_fast(&self) -> bool {
        self.reserved[FAST.0] & FAST.1 != 0
    }

    pub fn supports_extensions(&self) -> bool {
        self.reserved[EXTENSIONS.0] & EXTENSIONS.1 != 0
    }

    pub fn supports_dht(&self) -> bool {
        self.reserved[DHT.0] & DHT.1 != 0
    }

    /// Appends the 68 wire bytes to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(HANDSHAKE_LEN);
        out.put_u8(PROTOCOL.len() as u8);
        out.put_slice(PROTOCOL);
        out.put_slice(&self.reserved);
        out.put_slice(&self.info_hash.0);
        out.put_slice(&self.peer_id.0);
    }
}

/// Parses a handshake at the start of `input`.
///
/// `Ok(None)` until 68 bytes are there; bytes after the 68th are not looked at (they are
/// the first messages, for the session). The protocol prefix is checked on whatever part of
/// it has arrived, so a stream that is not BitTorrent (or is encrypted) fails on its first
/// byte instead of after 68.
pub fn parse_handshake(input: &[u8]) -> Result<Option<Handshake>, WireError> {
    let prefix_len = input.len().min(1 + PROTOCOL.len());
    let mut expected = [0u8; 20];
    expected[0] = PROTOCOL.len() as u8;
    expected[1..].copy_from_slice(PROTOCOL);
    if input[..prefix_len] != expected[..prefix_len] {
        return Err(WireError::NotBitTorrent);
    }
    if input.len() < HANDSHAKE_LEN {
        return Ok(None);
    }
    let mut reserved = [0u8; 8];
    reserved.copy_from_slice(&input[20..28]);
    let mut info_hash = [0u8; 20];
    info_hash.copy_from_slice(&input[28..48]);
    let mut peer_id = [0u8; 20];
    peer_id.copy_from_slice(&input[48..68]);
    Ok(Some(Handshake {
        reserved,
        info_hash: InfoHash(info_hash),
        peer_id: PeerId(peer_id),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Handshake {
        Handshake::new(
            InfoHash([7; 20]),
            PeerId::shoal([1; 12]),
            Handshake::SHOAL_RESERVED,
        )
    }

    #[test]
    fn round_trip_and_bits() {
        let hs = sample();
        let mut out = BytesMut::new();
        hs.encode(&mut out);
        assert_eq!(out.len(), HANDSHAKE_LEN);
        assert_eq!(&out[..20], b"\x13BitTorrent protocol");
        assert_eq!(out[25], 0x10);
        assert_eq!(out[27], 0x04);
        let parsed = parse_handshake(&out).unwrap().unwrap();
        assert_eq!(parsed, hs);
        assert!(parsed.supports_fast() && parsed.supports_extensions());
        assert!(!parsed.supports_dht());
        let plain = Handshake::new(InfoHash([0; 20]), PeerId([0; 20]), [0, 0, 0, 0, 0, 0, 0, 1]);
        assert!(plain.supports_dht() && !plain.supports_fast() && !plain.supports_extensions());
    }

    #[test]
    fn incomplete_then_complete() {
        let mut out = BytesMut::new();
        sample().encode(&mut out);
        for n in 0..HANDSHAKE_LEN {
            assert_eq!(parse_handshake(&out[..n]), Ok(None), "prefix {n}");
        }
        out.extend_from_slice(b"trailing messages");
        assert_eq!(parse_handshake(&out), Ok(Some(sample())));
    }

    #[test]
    fn wrong_protocol_fails_early() {
        assert_eq!(
            parse_handshake(b"GET / HTTP/1.1"),
            Err(WireError::NotBitTorrent)
        );
        assert_eq!(
            parse_handshake(b"\x13BitTorrent protocoX"),
            Err(WireError::NotBitTorrent)
        );
        assert_eq!(parse_handshake(b"\x13Bit"), Ok(None));
    }
}
