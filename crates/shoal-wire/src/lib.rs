//! The BitTorrent peer wire protocol (BEP 3) with the fast extension (BEP 6) and the
//! extension protocol (BEP 10), as a sans-IO state machine.
//!
//! Why sans-IO: the same [`PeerSession`] is driven by the tokio engine over real sockets
//! and by the deterministic simulator over simulated links. It never reads the clock,
//! opens a socket or spawns anything; the driver feeds it bytes and the current
//! [`Instant`](std::time::Instant), and drains bytes to send, events for the torrent and
//! the next deadline. A test can therefore replay any exchange exactly, chunked however
//! it likes.
//!
//! Layers, bottom up:
//! - [`Message`]: one length-prefixed message ⇄ bytes, with strict per-id lengths and a
//!   length cap checked before a body is buffered.
//! - [`Handshake`] / [`parse_handshake`]: the 68-byte opening, reserved bits.
//! - [`ExtensionHandshake`]: the BEP 10 handshake dictionary, decoded under small limits.
//! - [`metadata`]: BEP 9 ut_metadata messages and the checked assembly of fetched
//!   metadata.
//! - [`pex`]: BEP 11 peer exchange messages and per-connection send/receive limits.
//! - [`holepunch`]: BEP 55 hole punching messages and a per-connection allowance.
//! - [`PeerSession`]: one connection's state — choke/interest, the peer's pieces, our
//!   outstanding requests, the peer's queued requests — and every rule that turns hostile
//!   input into a [`WireError`] (the driver then disconnects).
//!
//! Every `WireError` is fatal for the connection: the protocol has no way to resynchronise
//! a byte stream once a peer has broken its rules.

mod allowed_fast;
mod extension;
pub mod fuzzing;
mod handshake;
pub mod holepunch;
mod message;
pub mod metadata;
pub mod mse;
pub mod pex;
mod session;

pub use allowed_fast::allowed_fast_set;
pub use extension::{
    ExtensionHandshake, EXTENDED_HANDSHAKE_ID, MAX_REQQ, OUR_UPLOAD_ONLY_ID, UPLOAD_ONLY,
};
pub use handshake::{parse_handshake, Handshake, HANDSHAKE_LEN, PROTOCOL};
pub use message::{max_message_len, Frames, HashRange, Message, DEFAULT_MAX_MESSAGE_LEN};
pub use session::{PeerSession, PeerState, SessionConfig, SessionEvent};

use shoal_core::{Block, InfoHash};
use std::time::Duration;

/// Why a connection must be closed. Each variant names one broken rule, so a log line
/// (or a ban decision) can say exactly what the peer did.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not a BitTorrent handshake")]
    NotBitTorrent,
    #[error("peer answered for info-hash {got}, expected {expected}")]
    InfoHashMismatch { expected: InfoHash, got: InfoHash },
    #[error("connected to ourselves")]
    SelfConnection,
    #[error("message length {len} exceeds the limit of {max}")]
    MessageTooLong { len: u32, max: u32 },
    #[error("message id {id} with invalid length {len}")]
    BadLength { id: u8, len: u32 },
    #[error("bitfield has the wrong length or spare bits set")]
    BadBitfield,
    #[error("piece {piece} out of range (the torrent has {piece_count})")]
    PieceOutOfRange { piece: u32, piece_count: u32 },
    #[error("block {0:?} lies outside its piece or has an invalid length")]
    InvalidBlock(Block),
    #[error("fast-extension message id {0} but BEP 6 was not negotiated")]
    FastNotNegotiated(u8),
    #[error("extension message but BEP 10 was not negotiated")]
    ExtensionsNotNegotiated,
    #[error("extension handshake: {0}")]
    ExtensionBencode(#[from] shoal_bencode::DecodeError),
    #[error("extension handshake: {0}")]
    BadExtensionHandshake(&'static str),
    #[error("request flood: more than {0} unservable requests in a short window")]
    RequestFlood(usize),
    #[error("no handshake within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("nothing received for {0:?}")]
    IdleTimeout(Duration),
}
