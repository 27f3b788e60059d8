//! The uTP header (BEP 29), its extension chain and the selective-ack bitmask.

use thiserror::Error;

/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 20;
/// The only protocol version.
const VERSION: u8 = 1;
/// Extension type of a selective ack.
const EXT_SACK: u8 = 1;

/// What a packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Data,
    Fin,
    State,
    Reset,
    Syn,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Data => 0,
            Kind::Fin => 1,
            Kind::State => 2,
            Kind::Reset => 3,
            Kind::Syn => 4,
        }
    }

    fn from_code(code: u8) -> Option<Kind> {
        Some(match code {
            0 => Kind::Data,
            1 => Kind::Fin,
            2 => Kind::State,
            3 => Kind::Reset,
            4 => Kind::Syn,
            _ => return None,
        })
    }
}

/// Why a datagram is not a uTP packet.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PacketError {
    #[error("shorter than a uTP header")]
    Short,
    #[error("not uTP version 1")]
    Version,
    #[error("unknown packet type {0}")]
    Type(u8),
    #[error("extension runs past the datagram")]
    Extension,
}

/// One uTP packet, parsed or to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub kind: Kind,
    pub connection_id: u16,
    pub timestamp_us: u32,
    pub timestamp_diff_us: u32,
    pub wnd_size: u32,
    pub seq_nr: u16,
    pub ack_nr: u16,
    /// Selective ack bitmask: bit `i` (LSB first in each byte) acks `ack_nr + 2 + i`.
    pub sack: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

impl Packet {
    /// A packet without extensions or payload.
    pub fn new(kind: Kind, connection_id: u16, seq_nr: u16, ack_nr: u16) -> Packet {
        Packet {
            kind,
            connection_id,
            timestamp_us: 0,
            timestamp_diff_us: 0,
            wnd_size: 0,
            seq_nr,
            ack_nr,
            sack: None,
            payload: Vec::new(),
        }
    }

    /// Parses a datagram. Unknown extensions are skipped; a malformed one refuses the
    /// whole datagram.
    pub fn parse(datagram: &[u8]) -> Result<Packet, PacketError> {
        if datagram.len() < HEADER_LEN {
            return Err(PacketError::Short);
        }
        if datagram[0] & 0x0f != VERSION {
            return Err(PacketError::Version);
        }
        let kind = Kind::from_code(datagram[0] >> 4).ok_or(PacketError::Type(datagram[0] >> 4))?;
        let u16_at = |i: usize| u16::from_be_bytes([datagram[i], datagram[i + 1]]);
        let u32_at = |i: usize| {
            u32::from_be_bytes([
                datagram[i],
                datagram[i + 1],
                datagram[i + 2],
                datagram[i + 3],
            ])
        };
        let mut sack = None;
        let mut next = datagram[1];
        let mut at = HEADER_LEN;
        while next != 0 {
            let header = datagram.get(at..at + 2).ok_or(PacketError::Extension)?;
            let (this, len) = (next, usize::from(header[1]));
            next = header[0];
            let body = datagram
                .get(at + 2..at + 2 + len)
                .ok_or(PacketError::Extension)?;
            // BEP 29 asks for a multiple of 4 bytes, but libtorrent sends as many bytes
            // as its out-of-order packets need (up to a packet's worth); an extension's
            // one-byte length bounds it anyway.
            if this == EXT_SACK && len > 0 {
                sack = Some(body.to_vec());
            }
            at += 2 + len;
        }
        Ok(Packet {
            kind,
            connection_id: u16_at(2),
            timestamp_us: u32_at(4),
            timestamp_diff_us: u32_at(8),
            wnd_size: u32_at(12),
            seq_nr: u16_at(16),
            ack_nr: u16_at(18),
            sack,
            payload: datagram[at..].to_vec(),
        })
    }

    /// The datagram.
    pub fn encode(&self) -> Vec<u8> {
        let sack_len = self.sack.as_ref().map_or(0, |s| 2 + s.len());
        let mut out = Vec::with_capacity(HEADER_LEN + sack_len + self.payload.len());
        out.push(self.kind.code() << 4 | VERSION);
        out.push(if self.sack.is_some() { EXT_SACK } else { 0 });
        out.extend_from_slice(&self.connection_id.to_be_bytes());
        out.extend_from_slice(&self.timestamp_us.to_be_bytes());
        out.extend_from_slice(&self.timestamp_diff_us.to_be_bytes());
        out.extend_from_slice(&self.wnd_size.to_be_bytes());
        out.extend_from_slice(&self.seq_nr.to_be_bytes());
        out.extend_from_slice(&self.ack_nr.to_be_bytes());
        if let Some(sack) = &self.sack {
            out.push(0);
            out.push(sack.len() as u8);
            out.extend_from_slice(sack);
        }
        out.extend_from_slice(&self.payload);
        out
    }

    /// Sequence numbers the selective ack covers.
    pub fn sacked(&self) -> impl Iterator<Item = u16> + '_ {
        let base = self.ack_nr.wrapping_add(2);
        self.sack.iter().flat_map(move |mask| {
            mask.iter().enumerate().flat_map(move |(byte, bits)| {
                (0..8)
                    .filter(move |bit| bits >> bit & 1 == 1)
                    .map(move |bit| base.wrapping_add((byte * 8 + bit) as u16))
            })
        })
    }
}

/// Whether a datagram looks like uTP at all (version 1, a known type), so that a socket
/// shared with the DHT can tell the two apart: a KRPC message starts with `d`.
pub fn looks_like_utp(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN && datagram[0] & 0x0f == VERSION && datagram[0] >> 4 <= 4
}

/// `a` comes before `b` in 16-bit sequence space.
pub fn seq_lt(a: u16, b: u16) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trips_with_a_selective_ack() {
        let mut packet = Packet::new(Kind::State, 0x1234, 7, 0xffff);
        packet.timestamp_us = 0xdead_beef;
        packet.timestamp_diff_us = 42;
        packet.wnd_size = 1 << 20;
        packet.sack = Some(vec![0b0000_0101, 0, 0, 0x80]);
        let bytes = packet.encode();
        assert_eq!(bytes[0], 0x21, "type 2, version 1");
        assert_eq!(bytes.len(), HEADER_LEN + 2 + 4);
        let parsed = Packet::parse(&bytes).unwrap();
        assert_eq!(parsed, packet);
        // ack_nr wraps: bits 0, 2 and 31 ack 1, 3 and 32.
        assert_eq!(parsed.sacked().collect::<Vec<_>>(), vec![1, 3, 32]);
    }

    #[test]
    fn malformed_packets_are_refused() {
        let good = Packet::new(Kind::Data, 1, 2, 3).encode();
        assert_eq!(Packet::parse(&good[..19]), Err(PacketError::Short));
        let mut bad = good.clone();
        bad[0] = 0x02;
        assert_eq!(Packet::parse(&bad), Err(PacketError::Version));
        bad[0] = 0x51;
        assert_eq!(Packet::parse(&bad), Err(PacketError::Type(5)));
        let mut ext = good.clone();
        ext[1] = 1;
        assert_eq!(Packet::parse(&ext), Err(PacketError::Extension));
        // libtorrent's selective acks are as long as they need, not a multiple of 4.
        ext.extend_from_slice(&[0, 3, 1, 2, 3]);
        let odd = Packet::parse(&ext).unwrap();
        assert_eq!(odd.sack.as_deref(), Some(&[1, 2, 3][..]));
        assert_eq!(odd.sacked().collect::<Vec<_>>(), [5, 14, 21, 22]);
        // An unknown extension is skipped.
        let mut unknown = good;
        unknown[1] = 9;
        unknown.extend_from_slice(&[0, 2, 0xaa, 0xbb, b'x']);
        assert_eq!(Packet::parse(&unknown).unwrap().payload, b"x");
        assert!(!looks_like_utp(
            b"d1:ad2:id20:xxxxxxxxxxxxxxxxxxxxe1:q4:ping1:t2:aa1:y1:qe"
        ));
        assert!(looks_like_utp(&Packet::new(Kind::Syn, 1, 1, 0).encode()));
    }

    #[test]
    fn sequence_order_wraps() {
        assert!(seq_lt(1, 2));
        assert!(seq_lt(0xfffe, 3));
        assert!(!seq_lt(3, 0xfffe));
        assert!(!seq_lt(5, 5));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(packet) = Packet::parse(&bytes) {
                let _ = packet.sacked().count();
                let again = Packet::parse(&packet.encode()).unwrap();
                prop_assert_eq!(again.payload, packet.payload);
            }
        }
    }
}
