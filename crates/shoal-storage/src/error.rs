//! Storage errors, each naming the file involved.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The OS error is part of the message rather than a `source`, so that a report
    /// that prints the whole error chain shows it once.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("{0}: no files to put in a torrent")]
    NoFiles(PathBuf),
    #[error("{0}: every file is empty, and a torrent needs at least one byte")]
    AllEmpty(PathBuf),
    #[error("{path}: file changed size while it was being read (expected {expected} bytes)")]
    Changed { path: PathBuf, expected: u64 },
    #[error("piece length {0} is not a power of two between 16 KiB and 256 MiB")]
    BadPieceLength(u64),
    #[error("{0}: outside the download directory")]
    OutsideRoot(PathBuf),
    #[error("{0}: is a symbolic link; refusing to write through it")]
    Symlink(PathBuf),
    #[error("{0}: too many pieces (at most {max}); choose a larger piece size", max = shoal_core::MAX_PIECES)]
    TooManyPieces(PathBuf),
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            error: source,
        }
    }
}
