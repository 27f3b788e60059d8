//! Types every part of shoal shares: the [`InfoHash`] that names a torrent, the parsed
//! [`Metainfo`] of a `.torrent` file (and the [`TorrentBuilder`] that writes one), and
//! [`Magnet`] links.
//!
//! Nothing here does I/O but bind sockets ([`dual_stack::bind`]). Everything that comes
//! from outside (a torrent file, a magnet link) is parsed once, at this boundary, into
//! types whose invariants later code can trust: piece counts that match the total
//! length, file paths that cannot leave the download directory, lengths that do not
//! overflow.

pub mod compact;
#[doc(hidden)]
pub mod crc32c;
pub mod dual_stack;
pub mod fuzzing;
pub mod hex;
mod info_hash;
mod magnet;
pub mod metainfo;
pub mod mutable;
pub mod peer_priority;
mod types;
pub mod units;

pub use info_hash::{InfoHash, InfoHashParseError};
pub use magnet::{Magnet, MagnetError};
pub use metainfo::{
    auto_piece_length, layers_needed, DhtNode, DhtNodeError, FileAttr, FileEntry, Info,
    LayerNeeded, Metainfo, MetainfoError, TorrentBuilder, TorrentFormat, MAX_PIECES,
    MAX_TORRENT_SIZE,
};
pub use peer_priority::peer_priority;
/// v2 torrents' merkle trees (BEP 52), for crates that read them through [`Info`].
pub use shoal_hash::merkle;
pub use types::{Bitfield, Block, PeerId, BLOCK_SIZE};
