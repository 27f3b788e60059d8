//! Bencode, the serialisation format of `.torrent` files, tracker responses, the DHT and
//! extension messages.
//!
//! Decoding is zero-copy and iterative: [`decode`] turns the input into a flat tape of
//! tokens (no recursion, so hostile nesting cannot overflow the stack) and hands out
//! borrowed [`Node`] views. Every node keeps the exact byte span it was parsed from,
//! because an info-hash is the SHA-1 of the `info` dictionary *as received*: a
//! re-encoding would hide unsorted or duplicate keys and produce a different hash.
//!
//! Encoding goes through the owned [`Value`] tree, which always writes canonical bencode
//! (dictionary keys sorted as raw bytes) and can splice in pre-encoded bytes verbatim
//! ([`Value::Raw`]), which is how an info dictionary is carried unchanged into a new file.
//!
//! Decoding is the only way in and [`Node`]'s typed accessors the only way to read:
//! there is deliberately no serde layer, so every parser in shoal checks lengths and
//! types at one boundary and reports byte offsets the same way.

mod decode;
mod encode;

pub use decode::{
    decode, decode_prefix, DecodeError, Dict, Document, ErrorKind, Kind, Limits, List, Node,
};
pub use encode::Value;
