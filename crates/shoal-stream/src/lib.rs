//! Streaming a torrent's files over HTTP while they download (`shoal get --stream`), as
//! rqbit and webtorrent serve them: a video player opens a file's URL, reads from where
//! it likes with byte ranges, and the pieces it is about to read are fetched before any
//! other.
//!
//! - [`range`]: the `Range` header.
//! - [`readers`]: where each open response is reading, which becomes the engine's list
//!   of pieces to fetch first (`shoal_engine::Wanted`).
//! - [`library`]: which files are offered, and where their bytes are.
//! - [`server`]: the HTTP side (axum), sending a file's bytes as their pieces are
//!   verified on disk; nothing unverified is ever sent.

pub mod library;
pub mod range;
pub mod readers;
pub mod server;

pub use library::{Library, ServedFile};
pub use readers::Readers;
pub use server::{only_by_address, serve};
