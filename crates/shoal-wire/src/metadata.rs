//! BEP 9 ut_metadata: the info dictionary exchanged between peers in 16 KiB pieces, so
//! that a magnet link (just an info-hash) is enough to join a swarm.
//!
//! Messages are a bencoded dictionary (`msg_type`: 0 request, 1 data, 2 reject; `piece`;
//! `total_size` on data) followed, for data, by the piece's raw bytes.
//! [`MetadataAssembler`] collects the pieces from one peer and trusts nothing it says:
//! the size it advertised must be sane and must not change, each piece must be in range
//! and exactly as long as its position implies, and the result counts only when its
//! SHA-1 is the info-hash we asked for (TESTING.md item 24).

use bytes::Bytes;
use shoal_bencode::{Limits, Value};
use shoal_core::metainfo::MAX_TORRENT_SIZE;
use shoal_core::InfoHash;

/// The extension's name in the `m` dictionary.
pub const UT_METADATA: &str = "ut_metadata";
/// The id under which we ask peers to send us ut_metadata messages.
pub const OUR_UT_METADATA_ID: u8 = 2;
/// Metadata travels in pieces of this size (the last may be shorter).
pub const METADATA_PIECE_LEN: usize = 16 * 1024;
/// Largest metadata we accept: the same cap as a whole `.torrent` file.
pub const MAX_METADATA_SIZE: u64 = MAX_TORRENT_SIZE as u64;

const LIMITS: Limits = Limits {
    max_depth: 4,
    max_tokens: 64,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataMessage {
    Request(u32),
    Data {
        piece: u32,
        total_size: u64,
        data: Bytes,
    },
    Reject(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("ut_metadata: {0}")]
    Bencode(#[from] shoal_bencode::DecodeError),
    #[error("ut_metadata: malformed message: {0}")]
    Malformed(&'static str),
    #[error("metadata size {0} is zero or above the limit")]
    BadSize(u64),
    #[error("metadata size changed from {expected} to {got}")]
    SizeChanged { expected: u64, got: u64 },
    #[error("metadata piece {0} out of range")]
    PieceOutOfRange(u32),
    #[error("metadata piece {piece} has {got} bytes, expected {expected}")]
    WrongLength {
        piece: u32,
        expected: usize,
        got: usize,
    },
    #[error("metadata does not match the info-hash")]
    HashMismatch,
}

impl MetadataMessage {
    pub fn encode(&self) -> Bytes {
        let mut d = Value::dict();
        let (kind, piece) = match self {
            MetadataMessage::Request(p) => (0, p),
            MetadataMessage::Data { piece, .. } => (1, piece),
            MetadataMessage::Reject(p) => (2, p),
        };
        d.insert("msg_type", kind);
        d.insert("piece", i64::from(*piece));
        if let MetadataMessage::Data {
            total_size, data, ..
        } = self
        {
            d.insert("total_size", i64::try_from(*total_size).unwrap_or(i64::MAX));
            let mut out = d.to_bytes();
            out.extend_from_slice(data);
            return Bytes::from(out);
        }
        Bytes::from(d.to_bytes())
    }

    /// Decodes one message. `Ok(None)` for a message type we do not know (BEP 9 says to
    /// ignore those).
    pub fn decode(payload: &Bytes) -> Result<Option<Self>, MetadataError> {
        let (doc, used) = shoal_bencode::decode_prefix(payload, LIMITS)?;
        let root = doc.root();
        let dict = root
            .as_dict()
            .ok_or(MetadataError::Malformed("not a dictionary"))?;
        let int = |key: &[u8]| dict.get(key).and_then(|n| n.as_int());
        let kind = int(b"msg_type").ok_or(MetadataError::Malformed("no msg_type"))?;
        let piece = int(b"piece")
            .and_then(|p| u32::try_from(p).ok())
            .ok_or(MetadataError::Malformed("bad piece"))?;
        let trailing = payload.len() - used;
        Ok(match kind {
            0 | 2 if trailing != 0 => return Err(MetadataError::Malformed("trailing bytes")),
            0 => Some(MetadataMessage::Request(piece)),
            2 => Some(MetadataMessage::Reject(piece)),
            1 => {
                let total_size = int(b"total_size")
                    .and_then(|s| u64::try_from(s).ok())
                    .ok_or(MetadataError::Malformed("bad total_size"))?;
                Some(MetadataMessage::Data {
                    piece,
                    total_size,
                    data: payload.slice(used..),
                })
            }
            _ => None,
        })
    }
}

/// How many pieces metadata of `size` bytes has.
pub fn piece_count(size: u64) -> u32 {
    u32::try_from(size.div_ceil(METADATA_PIECE_LEN as u64)).unwrap_or(u32::MAX)
}

/// The answer to a request for `piece` of our metadata `info`.
pub fn serve(info: &[u8], piece: u32) -> MetadataMessage {
    let start = piece as usize * METADATA_PIECE_LEN;
    if start >= info.len() {
        return MetadataMessage::Reject(piece);
    }
    let end = (start + METADATA_PIECE_LEN).min(info.len());
    MetadataMessage::Data {
        piece,
        total_size: info.len() as u64,
        data: Bytes::copy_from_slice(&info[start..end]),
    }
}

/// What to send back for an incoming ut_metadata message when we have the metadata
/// `info`: an answer to a request, nothing for anything else (including garbage, which
/// BEP 9 lets us ignore).
pub fn answer(info: &[u8], payload: &Bytes) -> Option<MetadataMessage> {
    match MetadataMessage::decode(payload) {
        Ok(Some(MetadataMessage::Request(piece))) => Some(serve(info, piece)),
        _ => None,
    }
}

/// Collects one peer's metadata pieces and checks the result against the info-hash.
#[derive(Debug)]
pub struct MetadataAssembler {
    info_hash: InfoHash,
    /// For a v2-only torrent: the SHA-256 the dictionary must have instead of a SHA-1.
    info_hash_v2: Option<[u8; 32]>,
    size: u64,
    buf: Vec<u8>,
    received: Vec<bool>,
    requested: Vec<bool>,
}

impl MetadataAssembler {
    /// For a peer that advertised `metadata_size` = `size`.
    pub fn new(info_hash: InfoHash, size: u64) -> Result<Self, MetadataError> {
        if size == 0 || size > MAX_METADATA_SIZE {
            return Err(MetadataError::BadSize(size));
        }
        let count = piece_count(size) as usize;
        Ok(MetadataAssembler {
            info_hash,
            info_hash_v2: None,
            size,
            // Bounded by MAX_METADATA_SIZE above.
            buf: vec![0; size as usize],
            received: vec![false; count],
            requested: vec![false; count],
        })
    }

    /// Checks the dictionary by its SHA-256 `v2` hash (a v2-only torrent, whose swarm id
    /// is that hash cut to 20 bytes) instead of by SHA-1.
    pub fn v2(mut self, v2: [u8; 32]) -> Self {
        self.info_hash_v2 = Some(v2);
        self
    }

    /// The next piece to ask for, if any is neither received nor asked for.
    pub fn next_request(&mut self) -> Option<u32> {
        let i = (0..self.received.len()).find(|&i| !self.received[i] && !self.requested[i])?;
        self.requested[i] = true;
        Some(i as u32)
    }

    fn piece_len(&self, piece: u32) -> usize {
        let start = piece as u64 * METADATA_PIECE_LEN as u64;
        (self.size - start).min(METADATA_PIECE_LEN as u64) as usize
    }

    /// Takes a message from the peer. `Ok(Some(info))` once every piece is in and the
    /// whole hashes to the info-hash; a reject makes the piece askable again (the caller
    /// decides whether to give up on this peer).
    pub fn on_message(&mut self, msg: MetadataMessage) -> Result<Option<Vec<u8>>, MetadataError> {
        match msg {
            MetadataMessage::Request(_) => Ok(None),
            MetadataMessage::Reject(piece) => {
                if let Some(r) = self.requested.get_mut(piece as usize) {
                    *r = false;
                }
                Ok(None)
            }
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => {
                if total_size != self.size {
                    return Err(MetadataError::SizeChanged {
                        expected: self.size,
                        got: total_size,
                    });
                }
                if piece as usize >= self.received.len() {
                    return Err(MetadataError::PieceOutOfRange(piece));
                }
                let expected = self.piece_len(piece);
                if data.len() != expected {
                    return Err(MetadataError::WrongLength {
                        piece,
                        expected,
                        got: data.len(),
                    });
                }
                let start = piece as usize * METADATA_PIECE_LEN;
                self.buf[start..start + expected].copy_from_slice(&data);
                self.received[piece as usize] = true;
                if !self.received.iter().all(|&r| r) {
                    return Ok(None);
                }
                let matches = match self.info_hash_v2 {
                    Some(v2) => shoal_core::merkle::sha256(&self.buf) == v2,
                    None => InfoHash::of_info(&self.buf) == self.info_hash,
                };
                if !matches {
                    self.received.iter_mut().for_each(|r| *r = false);
                    self.requested.iter_mut().for_each(|r| *r = false);
                    return Err(MetadataError::HashMismatch);
                }
                Ok(Some(std::mem::take(&mut self.buf)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_of(len: usize) -> Vec<u8> {
        // A bencoded string of `len` bytes in total: "<n>:xxxx".
        let mut n = len - 2;
        while n.to_string().len() + 1 + n > len {
            n -= 1;
        }
        let mut v = format!("{n}:").into_bytes();
        v.extend((0..n).map(|i| (i % 251) as u8));
        assert_eq!(v.len(), len);
        v
    }

    #[test]
    fn messages_round_trip() {
        for m in [
            MetadataMessage::Request(3),
            MetadataMessage::Reject(0),
            MetadataMessage::Data {
                piece: 1,
                total_size: 20000,
                data: Bytes::from_static(b"raw bytes d1:xe"),
            },
        ] {
            assert_eq!(MetadataMessage::decode(&m.encode()), Ok(Some(m)));
        }
        // The example request from BEP 9.
        let req = Bytes::from_static(b"d8:msg_typei0e5:piecei0ee");
        assert_eq!(
            MetadataMessage::decode(&req),
            Ok(Some(MetadataMessage::Request(0)))
        );
        let unknown = Bytes::from_static(b"d8:msg_typei7e5:piecei0ee");
        assert_eq!(MetadataMessage::decode(&unknown), Ok(None));
        for bad in [
            &b""[..],
            b"le",
            b"d5:piecei0ee",
            b"d8:msg_typei0e5:piecei-1ee",
            b"d8:msg_typei0e5:piecei0eextra",
            b"d8:msg_typei1e5:piecei0ee",
            b"d8:msg_typei1e5:piecei0e10:total_sizei-5ee",
        ] {
            assert!(
                MetadataMessage::decode(&Bytes::from_static(bad)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn fetches_and_verifies_in_pieces() {
        let info = info_of(2 * METADATA_PIECE_LEN + 100);
        let hash = InfoHash::of_info(&info);
        let mut asm = MetadataAssembler::new(hash, info.len() as u64).unwrap();
        let requests: Vec<u32> = std::iter::from_fn(|| asm.next_request()).collect();
        assert_eq!(requests, vec![0, 1, 2]);
        assert_eq!(serve(&info, 3), MetadataMessage::Reject(3));
        let request = MetadataMessage::Request(2).encode();
        assert_eq!(answer(&info, &request), Some(serve(&info, 2)));
        assert_eq!(answer(&info, &serve(&info, 0).encode()), None);
        assert_eq!(answer(&info, &Bytes::from_static(b"garbage")), None);
        // A reject makes the piece askable again.
        asm.on_message(MetadataMessage::Reject(1)).unwrap();
        assert_eq!(asm.next_request(), Some(1));
        let mut result = None;
        for p in [2, 0, 1] {
            result = asm.on_message(serve(&info, p)).unwrap();
        }
        assert_eq!(result, Some(info));
    }

    /// Item 24: size 0 or over the cap, pieces out of range or of the wrong length, a
    /// changed size, and data whose SHA-1 is not the info-hash are all errors.
    #[test]
    fn bad_metadata_is_rejected() {
        let info = info_of(METADATA_PIECE_LEN + 10);
        let hash = InfoHash::of_info(&info);
        assert_eq!(
            MetadataAssembler::new(hash, 0).unwrap_err(),
            MetadataError::BadSize(0)
        );
        assert!(MetadataAssembler::new(hash, MAX_METADATA_SIZE + 1).is_err());
        assert!(MetadataAssembler::new(hash, u64::MAX).is_err());
        let size = info.len() as u64;
        let mut asm = MetadataAssembler::new(hash, size).unwrap();
        let data = |piece, total_size, len: usize| MetadataMessage::Data {
            piece,
            total_size,
            data: Bytes::from(vec![0; len]),
        };
        assert!(matches!(
            asm.on_message(data(2, size, 10)),
            Err(MetadataError::PieceOutOfRange(2))
        ));
        assert!(matches!(
            asm.on_message(data(1, size, 11)),
            Err(MetadataError::WrongLength { .. })
        ));
        assert!(matches!(
            asm.on_message(data(0, size + 1, METADATA_PIECE_LEN)),
            Err(MetadataError::SizeChanged { .. })
        ));
        // Well-formed pieces of the wrong content.
        asm.on_message(data(0, size, METADATA_PIECE_LEN)).unwrap();
        assert_eq!(
            asm.on_message(data(1, size, 10)),
            Err(MetadataError::HashMismatch)
        );
        // After a mismatch everything is asked again, and honest data then passes.
        assert_eq!(asm.next_request(), Some(0));
        asm.on_message(serve(&info, 0)).unwrap();
        assert_eq!(asm.on_message(serve(&info, 1)), Ok(Some(info)));
    }
}
