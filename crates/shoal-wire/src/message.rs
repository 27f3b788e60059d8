//! Peer wire messages (BEP 3, BEP 6, BEP 10, and BEP 52's hash request and reject) and
//! their framing: a 4-byte big-endian length,
//! then (unless the length is 0, a keep-alive) a 1-byte id and the payload.
//!
//! This is the one place where wire bytes become typed messages. The decoder is strict:
//! every id has an exact length (or a minimum, for variable-size ones), and a length
//! prefix above the caller's cap is an error as soon as its 4 bytes are seen, so a peer
//! cannot make us buffer megabytes by announcing them. Range checks that need torrent
//! knowledge (piece counts, piece sizes) belong to the session.

use crate::WireError;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use shoal_core::{Block, BLOCK_SIZE};

/// Large enough for any `piece` message carrying a 16 KiB block (13 bytes of header) with
/// generous slack for peers that send 32 KiB blocks we never asked for (they are dropped,
/// but must not kill the connection), and for bitfields of torrents up to ~1M pieces.
pub const DEFAULT_MAX_MESSAGE_LEN: u32 = 128 * 1024;

/// The length cap for a torrent with `piece_count` pieces: the default, or more when the
/// torrent's bitfield message (1 id byte + ⌈n/8⌉ bytes) would not fit in it.
pub fn max_message_len(piece_count: u32) -> u32 {
    let bitfield_message = 1 + piece_count.div_ceil(8);
    DEFAULT_MAX_MESSAGE_LEN.max(bitfield_message.saturating_add(1024))
}

const CHOKE: u8 = 0;
const UNCHOKE: u8 = 1;
const INTERESTED: u8 = 2;
const NOT_INTERESTED: u8 = 3;
const HAVE: u8 = 4;
const BITFIELD: u8 = 5;
const REQUEST: u8 = 6;
const PIECE: u8 = 7;
const CANCEL: u8 = 8;
const PORT: u8 = 9;
const SUGGEST: u8 = 13;
const HAVE_ALL: u8 = 14;
const HAVE_NONE: u8 = 15;
const REJECT: u8 = 16;
const ALLOWED_FAST: u8 = 17;
const EXTENDED: u8 = 20;
const HASH_REQUEST: u8 = 21;
const HASHES: u8 = 22;
const HASH_REJECT: u8 = 23;
/// A hash request's payload: a pieces root and four 32-bit numbers.
const HASH_RANGE_LEN: usize = 32 + 4 * 4;

/// What a BEP 52 `hash request` asks for (and a `hash reject` refuses): `length` hashes
/// from `index` of the layer `base_layer` levels above the leaves of the file whose
/// merkle root is `root`, with `proof_layers` levels of uncle hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashRange {
    pub root: [u8; 32],
    pub base_layer: u32,
    pub index: u32,
    pub length: u32,
    pub proof_layers: u32,
}

/// One peer wire message. Payloads are [`Bytes`] sliced out of the receive buffer, so a
/// 16 KiB block is not copied between the socket and the disk writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    /// Raw bitfield bytes; the session checks them against the piece count.
    Bitfield(Bytes),
    Request(Block),
    Piece {
        piece: u32,
        offset: u32,
        data: Bytes,
    },
    Cancel(Block),
    /// The peer's DHT port (BEP 5).
    Port(u16),
    /// BEP 6 fast extension from here to `AllowedFast`.
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject(Block),
    AllowedFast(u32),
    /// BEP 10: `id` 0 is the extension handshake, others are as the receiver assigned them.
    Extended {
        id: u8,
        payload: Bytes,
    },
    /// BEP 52: a v2 peer asks for piece-layer or leaf hashes.
    HashRequest(HashRange),
    /// BEP 52: the answer, the requested hashes followed by their proof.
    Hashes {
        range: HashRange,
        hashes: Vec<[u8; 32]>,
    },
    /// BEP 52: the answer when the hashes will not be sent.
    HashReject(HashRange),
}

impl Message {
    /// Appends the framed message to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Message::KeepAlive => out.put_u32(0),
            Message::Choke => header(out, CHOKE, 0),
            Message::Unchoke => header(out, UNCHOKE, 0),
            Message::Interested => header(out, INTERESTED, 0),
            Message::NotInterested => header(out, NOT_INTERESTED, 0),
            Message::HaveAll => header(out, HAVE_ALL, 0),
            Message::HaveNone => header(out, HAVE_NONE, 0),
            Message::Have(piece) => index(out, HAVE, *piece),
            Message::Suggest(piece) => index(out, SUGGEST, *piece),
            Message::AllowedFast(piece) => index(out, ALLOWED_FAST, *piece),
            Message::Request(b) => block(out, REQUEST, b),
            Message::Cancel(b) => block(out, CANCEL, b),
            Message::Reject(b) => block(out, REJECT, b),
            Message::Bitfield(bits) => {
                header(out, BITFIELD, bits.len());
                out.put_slice(bits);
            }
            Message::Piece {
                piece,
                offset,
                data,
            } => {
                out.reserve(PIECE_HEADER_LEN + data.len());
                piece_header(out, *piece, *offset, data.len());
                out.put_slice(data);
            }
            Message::Port(port) => {
                header(out, PORT, 2);
                out.put_u16(*port);
            }
            Message::Extended { id, payload } => {
                header(out, EXTENDED, 1 + payload.len());
                out.put_u8(*id);
                out.put_slice(payload);
            }
            Message::HashRequest(range) => hash_range(out, HASH_REQUEST, range),
            Message::HashReject(range) => hash_range(out, HASH_REJECT, range),
            Message::Hashes { range, hashes } => {
                hash_range_with(out, HASHES, range, 32 * hashes.len());
                for hash in hashes {
                    out.put_slice(hash);
                }
            }
        }
    }

    /// Takes one complete message off the front of `buf`.
    ///
    /// Returns `Ok(None)` while the next message is incomplete (nothing is consumed then).
    /// A length prefix above `max_len` is an error as soon as the prefix is complete, before
    /// any of the body is waited for. Messages with an unknown id are consumed and skipped
    /// (BEP 3 lets clients ignore what they do not understand), and decoding continues with
    /// the next one.
    pub fn decode<B: Frames>(buf: &mut B, max_len: u32) -> Result<Option<Message>, WireError> {
        loop {
            if buf.len() < 4 {
                return Ok(None);
            }
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            if len > max_len {
                return Err(WireError::MessageTooLong { len, max: max_len });
            }
            if len == 0 {
                buf.advance(4);
                return Ok(Some(Message::KeepAlive));
            }
            // `len <= max_len`, a u32: the sum cannot overflow usize on 32- or 64-bit targets.
            if buf.len() < 4 + len as usize {
                return Ok(None);
            }
            let id = buf[4];
            if let Some(msg) = parse_body(id, len, buf)? {
                return Ok(Some(msg));
            }
            // Unknown id: drop it and look at what follows.
        }
    }
}

/// Received bytes that messages are cut from without copying: bytes accumulated in a
/// `BytesMut`, or a chunk handed over whole as `Bytes`.
pub trait Frames: Buf + std::ops::Deref<Target = [u8]> {
    /// Removes and returns the first `n` bytes (`n <= len`).
    fn take_front(&mut self, n: usize) -> Bytes;
}

impl Frames for BytesMut {
    fn take_front(&mut self, n: usize) -> Bytes {
        self.split_to(n).freeze()
    }
}

impl Frames for Bytes {
    fn take_front(&mut self, n: usize) -> Bytes {
        self.split_to(n)
    }
}

/// Parses a complete message whose `len` bytes (id included) follow the 4-byte prefix at the
/// front of `buf`, and consumes it. `Ok(None)` for an unknown id (still consumed).
fn parse_body<B: Frames>(id: u8, len: u32, buf: &mut B) -> Result<Option<Message>, WireError> {
    let exact = |want: u32| {
        if len == want {
            Ok(())
        } else {
            Err(WireError::BadLength { id, len })
        }
    };
    match id {
        CHOKE | UNCHOKE | INTERESTED | NOT_INTERESTED | HAVE_ALL | HAVE_NONE => exact(1)?,
        HAVE | SUGGEST | ALLOWED_FAST => exact(5)?,
        REQUEST | CANCEL | REJECT => exact(13)?,
        PORT => exact(3)?,
        HASH_REQUEST | HASH_REJECT => exact(1 + HASH_RANGE_LEN as u32)?,
        HASHES
            if len < 1 + HASH_RANGE_LEN as u32
                || !(len - 1 - HASH_RANGE_LEN as u32).is_multiple_of(32) =>
        {
            return Err(WireError::BadLength { id, len })
        }
        BITFIELD if len < 2 => return Err(WireError::BadLength { id, len }),
        PIECE if len < 9 => return Err(WireError::BadLength { id, len }),
        EXTENDED if len < 2 => return Err(WireError::BadLength { id, len }),
        _ => {}
    }
    buf.advance(5);
    let mut body = buf.take_front(len as usize - 1);
    let msg = match id {
        CHOKE => Message::Choke,
        UNCHOKE => Message::Unchoke,
        INTERESTED => Message::Interested,
        NOT_INTERESTED => Message::NotInterested,
        HAVE_ALL => Message::HaveAll,
        HAVE_NONE => Message::HaveNone,
        HAVE => Message::Have(body.get_u32()),
        SUGGEST => Message::Suggest(body.get_u32()),
        ALLOWED_FAST => Message::AllowedFast(body.get_u32()),
        REQUEST => Message::Request(read_block(&mut body)),
        CANCEL => Message::Cancel(read_block(&mut body)),
        REJECT => Message::Reject(read_block(&mut body)),
        PORT => Message::Port(body.get_u16()),
        BITFIELD => Message::Bitfield(body),
        PIECE => {
            let piece = body.get_u32();
            let offset = body.get_u32();
            Message::Piece {
                piece,
                offset,
                data: body,
            }
        }
        EXTENDED => {
            let ext = body.get_u8();
            Message::Extended {
                id: ext,
                payload: body,
            }
        }
        HASH_REQUEST => Message::HashRequest(read_hash_range(&mut body)),
        HASH_REJECT => Message::HashReject(read_hash_range(&mut body)),
        HASHES => Message::Hashes {
            range: read_hash_range(&mut body),
            hashes: body
                .chunks_exact(32)
                .map(|h| h.try_into().expect("chunks of 32"))
                .collect(),
        },
        _ => return Ok(None),
    };
    Ok(Some(msg))
}

fn hash_range(out: &mut BytesMut, id: u8, range: &HashRange) {
    hash_range_with(out, id, range, 0);
}

/// A hash range message whose `extra` payload bytes the caller appends.
fn hash_range_with(out: &mut BytesMut, id: u8, range: &HashRange, extra: usize) {
    header(out, id, HASH_RANGE_LEN + extra);
    out.put_slice(&range.root);
    for n in [
        range.base_layer,
        range.index,
        range.length,
        range.proof_layers,
    ] {
        out.put_u32(n);
    }
}

/// Reads a hash range from a body of exactly [`HASH_RANGE_LEN`] bytes.
fn read_hash_range(body: &mut Bytes) -> HashRange {
    let mut root = [0u8; 32];
    body.copy_to_slice(&mut root);
    HashRange {
        root,
        base_layer: body.get_u32(),
        index: body.get_u32(),
        length: body.get_u32(),
        proof_layers: body.get_u32(),
    }
}

/// Bytes of a `piece` message before its data: length prefix, id, index and offset.
pub(crate) const PIECE_HEADER_LEN: usize = 13;

/// The start of a `piece` message whose `len` data bytes the caller appends (room for
/// them is not reserved: they may go out as a buffer of their own).
pub(crate) fn piece_header(out: &mut BytesMut, piece: u32, offset: u32, len: usize) {
    let len = u32::try_from(9 + len).expect("a block is far below 4 GiB");
    out.reserve(PIECE_HEADER_LEN);
    out.put_u32(len);
    out.put_u8(PIECE);
    out.put_u32(piece);
    out.put_u32(offset);
}

/// If `head` is exactly the header of a `piece` message whose data fits in `max_len`:
/// the block's index, offset and data length.
pub(crate) fn parse_piece_header(head: &[u8], max_len: u32) -> Option<(u32, u32, usize)> {
    let head: &[u8; PIECE_HEADER_LEN] = head.try_into().ok()?;
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if head[4] != PIECE || !(9..=max_len).contains(&len) {
        return None;
    }
    let piece = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
    let offset = u32::from_be_bytes([head[9], head[10], head[11], head[12]]);
    Some((piece, offset, len as usize - 9))
}

fn header(out: &mut BytesMut, id: u8, payload_len: usize) {
    // Payloads we send are blocks, bitfields and extension messages: all far below 4 GiB.
    let len = u32::try_from(1 + payload_len).expect("outgoing message payload below 4 GiB");
    out.reserve(4 + len as usize);
    out.put_u32(len);
    out.put_u8(id);
}

fn index(out: &mut BytesMut, id: u8, piece: u32) {
    header(out, id, 4);
    out.put_u32(piece);
}

fn block(out: &mut BytesMut, id: u8, b: &Block) {
    header(out, id, 12);
    out.put_u32(b.piece);
    out.put_u32(b.offset);
    out.put_u32(b.length);
}

fn read_block(body: &mut Bytes) -> Block {
    Block {
        piece: body.get_u32(),
        offset: body.get_u32(),
        length: body.get_u32(),
    }
}

/// Whether `length` is one a well-behaved peer may request: 1..=16 KiB.
pub(crate) fn valid_block_length(length: u32) -> bool {
    (1..=BLOCK_SIZE).contains(&length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block_strategy() -> impl Strategy<Value = Block> {
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(piece, offset, length)| Block {
            piece,
            offset,
            length,
        })
    }

    fn bytes_strategy(max: usize) -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
    }

    fn message_strategy() -> impl Strategy<Value = Message> {
        prop_oneof![
            Just(Message::KeepAlive),
            Just(Message::Choke),
            Just(Message::Unchoke),
            Just(Message::Interested),
            Just(Message::NotInterested),
            Just(Message::HaveAll),
            Just(Message::HaveNone),
            any::<u32>().prop_map(Message::Have),
            any::<u32>().prop_map(Message::Suggest),
            any::<u32>().prop_map(Message::AllowedFast),
            any::<u16>().prop_map(Message::Port),
            block_strategy().prop_map(Message::Request),
            block_strategy().prop_map(Message::Cancel),
            block_strategy().prop_map(Message::Reject),
            (any::<[u8; 32]>(), any::<[u32; 4]>(), any::<bool>()).prop_map(|(root, n, reject)| {
                let range = HashRange {
                    root,
                    base_layer: n[0],
                    index: n[1],
                    length: n[2],
                    proof_layers: n[3],
                };
                match reject {
                    true => Message::HashReject(range),
                    false => Message::HashRequest(range),
                }
            }),
            (
                any::<[u8; 32]>(),
                proptest::collection::vec(any::<[u8; 32]>(), 0..20)
            )
                .prop_map(|(root, hashes)| Message::Hashes {
                    range: HashRange {
                        root,
                        base_layer: 4,
                        index: 0,
                        length: 2,
                        proof_layers: 1,
                    },
                    hashes,
                }),
            proptest::collection::vec(any::<u8>(), 1..64)
                .prop_map(|v| Message::Bitfield(Bytes::from(v))),
            (any::<u32>(), any::<u32>(), bytes_strategy(300)).prop_map(|(piece, offset, data)| {
                Message::Piece {
                    piece,
                    offset,
                    data,
                }
            }),
            (any::<u8>(), bytes_strategy(100))
                .prop_map(|(id, payload)| Message::Extended { id, payload }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(msgs in proptest::collection::vec(message_strategy(), 1..8)) {
            let mut buf = BytesMut::new();
            for m in &msgs {
                m.encode(&mut buf);
            }
            let mut decoded = Vec::new();
            while let Some(m) = Message::decode(&mut buf, DEFAULT_MAX_MESSAGE_LEN).unwrap() {
                decoded.push(m);
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(decoded, msgs);
        }

        #[test]
        fn any_chunking_decodes_the_same(msgs in proptest::collection::vec(message_strategy(), 1..6),
                                         chunk in 1usize..20) {
            let mut wire = BytesMut::new();
            for m in &msgs {
                m.encode(&mut wire);
            }
            let mut buf = BytesMut::new();
            let mut decoded = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(m) = Message::decode(&mut buf, DEFAULT_MAX_MESSAGE_LEN).unwrap() {
                    decoded.push(m);
                }
            }
            prop_assert_eq!(decoded, msgs);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = Message::decode(&mut buf, 1000) {}
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let msgs = [
            Message::Have(7),
            Message::KeepAlive,
            Message::Piece {
                piece: 1,
                offset: 16384,
                data: Bytes::from_static(b"hello"),
            },
            Message::Unchoke,
        ];
        let mut wire = BytesMut::new();
        for m in &msgs {
            m.encode(&mut wire);
        }
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for &b in wire.iter() {
            buf.put_u8(b);
            while let Some(m) = Message::decode(&mut buf, DEFAULT_MAX_MESSAGE_LEN).unwrap() {
                decoded.push(m);
            }
        }
        assert_eq!(decoded, msgs);
    }

    /// Item 17: a huge length prefix fails on its 4 bytes alone.
    #[test]
    fn huge_length_prefix_fails_before_buffering() {
        let mut buf = BytesMut::from(&2_000_000u32.to_be_bytes()[..]);
        assert_eq!(
            Message::decode(&mut buf, DEFAULT_MAX_MESSAGE_LEN),
            Err(WireError::MessageTooLong {
                len: 2_000_000,
                max: DEFAULT_MAX_MESSAGE_LEN
            })
        );
    }

    fn raw(len: u32, id: u8, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u32(len);
        b.put_u8(id);
        b.put_slice(body);
        b
    }

    /// Item 19: exact lengths per id.
    #[test]
    fn wrong_lengths_are_errors() {
        let cases: &[(u8, u32)] = &[
            (HAVE, 4),
            (HAVE, 6),
            (REQUEST, 12),
            (REQUEST, 14),
            (CANCEL, 17),
            (REJECT, 9),
            (PORT, 5),
            (CHOKE, 2),
            (HAVE_ALL, 5),
            (ALLOWED_FAST, 1),
            (PIECE, 8),
            (BITFIELD, 1),
            (EXTENDED, 1),
        ];
        for &(id, len) in cases {
            let mut buf = raw(len, id, &vec![0; len as usize - 1]);
            assert_eq!(
                Message::decode(&mut buf, DEFAULT_MAX_MESSAGE_LEN),
                Err(WireError::BadLength { id, len }),
                "id {id} len {len}"
            );
        }
    }

    #[test]
    fn unknown_ids_are_skipped() {
        let mut buf = raw(4, 99, b"abc");
        Message::Choke.encode(&mut buf);
        assert_eq!(
            Message::decode(&mut buf, DEFAULT_MAX_MESSAGE_LEN),
            Ok(Some(Message::Choke))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn cap_grows_with_huge_bitfields() {
        assert_eq!(max_message_len(100), DEFAULT_MAX_MESSAGE_LEN);
        let bitfield_message_len = 1 + 2_000_000 / 8;
        assert!(max_message_len(2_000_000) >= bitfield_message_len);
    }
}
