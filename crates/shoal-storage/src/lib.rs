//! Everything that touches the disk: where each piece of a torrent lives in which files
//! ([`FileLayout`]), hashing pieces from disk on all cores ([`hash_pieces`]), and turning a
//! file or folder into a new torrent ([`create`]).
//!
//! The piece hasher is shared by torrent creation and the recheck of existing data, so
//! both run at the same SHA-1 speed: each worker reads two pieces side by side in
//! L2-sized chunks and hashes them together with `shoal-hash`; memory is two chunks per
//! worker whatever the size of the content. Pieces arriving from peers are held until
//! complete, then hashed in pairs and written in one go ([`PieceAssembler`]).

mod assembler;
mod check;
mod create;
mod error;
mod files;
mod hasher;
mod layout;
pub mod resume;

pub use assembler::{Finished, PieceAssembler};
pub use check::{verify, verify_until};
pub use create::{check_piece_length, create, scan, CreateOptions, Scanned, Skipped};
pub use error::StorageError;
pub use files::TorrentFiles;
pub use hasher::hash_pieces;
pub use layout::{FileLayout, Hashing, LayoutFile, Segment};
