//! Where each byte of a torrent lives: the files in piece order and a map from a piece
//! to the file ranges it covers.

use std::path::{Path, PathBuf};

use shoal_core::{Bitfield, Info, BLOCK_SIZE};
use shoal_hash::{merkle, PieceHasher, Sha1};

/// One file of the torrent's byte stream, at its place on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutFile {
    pub path: PathBuf,
    pub length: u64,
    /// Offset of the file's first byte in the torrent's byte stream.
    pub offset: u64,
    /// A BEP 47 padding file: reads as zeros and is never created on disk.
    pub padding: bool,
    /// BEP 47 `x`: created executable (as its creator's file was), as libtorrent does.
    pub executable: bool,
    /// BEP 47 `l`: a symbolic link to this target, relative to the link's folder and
    /// inside the torrent's (the metainfo drops `..` from the target). Only for an empty
    /// file of a multi-file torrent: a link that claimed bytes could not hold them.
    pub symlink: Option<PathBuf>,
}

/// A contiguous range of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub file: usize,
    pub file_offset: u64,
    pub length: u64,
}

/// The files of a torrent in order, and its piece geometry.
#[derive(Debug, Clone)]
pub struct FileLayout {
    files: Vec<LayoutFile>,
    piece_length: u64,
    total_length: u64,
    hashing: Hashing,
}

/// Which hashes a layout's pieces get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hashing {
    /// SHA-1 (v1 and hybrid torrents are checked by it).
    #[default]
    Sha1,
    /// BEP 52 merkle roots (v2 torrents).
    Merkle,
    /// Both, in one read (creating a hybrid torrent).
    Both,
}

impl Hashing {
    /// How a parsed torrent's pieces are checked.
    pub fn of(info: &Info) -> Self {
        match info.is_merkle() {
            true => Hashing::Merkle,
            false => Hashing::Sha1,
        }
    }
}

impl FileLayout {
    /// A layout from files already in order; offsets are computed here.
    pub fn new(files: impl IntoIterator<Item = (PathBuf, u64, bool)>, piece_length: u32) -> Self {
        let mut offset = 0;
        let files = files
            .into_iter()
            .map(|(path, length, padding)| {
                let file = LayoutFile {
                    path,
                    length,
                    offset,
                    padding,
                    executable: false,
                    symlink: None,
                };
                offset += length;
                file
            })
            .collect();
        FileLayout {
            files,
            piece_length: u64::from(piece_length),
            total_length: offset,
            hashing: Hashing::Sha1,
        }
    }

    /// The layout of a parsed torrent below a download directory.
    pub fn for_torrent(info: &Info, download_dir: &Path) -> Self {
        let layout = Self::new(
            info.files.iter().map(|f| {
                (
                    download_dir.join(f.relative_path()),
                    f.length,
                    f.attr.padding,
                )
            }),
            info.piece_length,
        );
        layout.hashing(Hashing::of(info)).attributes_of(info)
    }

    /// The same layout with the attributes (BEP 47) of `info`'s files, which it must
    /// list in the same order: executable flags, and symbolic links.
    pub fn attributes_of(mut self, info: &Info) -> Self {
        for (file, entry) in self.files.iter_mut().zip(&info.files) {
            file.executable = entry.attr.executable;
            file.symlink = match &entry.symlink_target {
                Some(target) if info.multi_file && entry.length == 0 => {
                    // The target is relative to the torrent's root, `path[0]`: climb from
                    // the link's folder up to it.
                    let depth = entry.path.len().saturating_sub(2);
                    let up = std::iter::repeat_n("..", depth).map(String::from);
                    Some(up.chain(target.iter().cloned()).collect())
                }
                _ => None,
            };
        }
        self
    }

    /// The same layout, its pieces hashed as `hashing` says.
    pub fn hashing(self, hashing: Hashing) -> Self {
        FileLayout { hashing, ..self }
    }

    /// A hasher for piece `index`, of the kind its torrent checks.
    pub fn piece_hasher(&self, index: usize) -> PieceHasher {
        match self.hashing {
            Hashing::Sha1 => PieceHasher::Sha1(Sha1::new()),
            Hashing::Merkle => PieceHasher::Merkle(self.piece_tree(index)),
            Hashing::Both => PieceHasher::Hybrid(Sha1::new(), self.piece_tree(index)),
        }
    }

    /// The merkle tree of piece `index`. A v2 piece never spans files: it belongs to the
    /// first file with data at its start, and the rest of it, if any, is padding.
    fn piece_tree(&self, index: usize) -> merkle::PieceTree {
        let start = index as u64 * self.piece_length;
        let first = self.files.partition_point(|f| f.offset + f.length <= start);
        match self.files[first..]
            .iter()
            .find(|f| !f.padding && f.length > 0)
        {
            Some(f) => merkle::PieceTree::new(
                (f.offset + f.length)
                    .saturating_sub(start)
                    .min(self.piece_length),
                merkle::piece_leaves(f.length, self.piece_length),
            ),
            None => merkle::PieceTree::new(0, 1),
        }
    }

    pub fn files(&self) -> &[LayoutFile] {
        &self.files
    }

    pub fn piece_length(&self) -> u64 {
        self.piece_length
    }

    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    pub fn piece_count(&self) -> usize {
        self.total_length.div_ceil(self.piece_length) as usize
    }

    /// Bytes in piece `index` (only the last one may be short).
    pub fn piece_size(&self, index: usize) -> u64 {
        let start = index as u64 * self.piece_length;
        self.total_length
            .saturating_sub(start)
            .min(self.piece_length)
    }

    /// The bytes at the start of piece `index` that must come from peers: all of it but
    /// a tail of whole blocks that lies in padding files (BEP 47), which is zeros by
    /// definition and never fetched, as libtorrent never fetches it. At least one block.
    pub fn fetched_length(&self, index: usize) -> u64 {
        let size = self.piece_size(index);
        let padding: u64 = self
            .piece_segments(index)
            .collect::<Vec<_>>()
            .iter()
            .rev()
            .take_while(|s| self.files[s.file].padding)
            .map(|s| s.length)
            .sum();
        let block = u64::from(BLOCK_SIZE);
        let data = size - padding;
        (data.div_ceil(block).max(1) * block).min(size)
    }

    /// The file ranges that make up bytes `[start, start + length)` of the stream, in
    /// order, skipping empty files.
    pub fn segments(&self, start: u64, length: u64) -> impl Iterator<Item = Segment> + '_ {
        let end = (start + length).min(self.total_length);
        // First file whose end lies beyond `start`.
        let first = self.files.partition_point(|f| f.offset + f.length <= start);
        self.files[first..]
            .iter()
            .enumerate()
            .take_while(move |(_, f)| f.offset < end)
            .filter(|(_, f)| f.length > 0)
            .map(move |(i, f)| {
                let from = start.max(f.offset);
                let to = end.min(f.offset + f.length);
                Segment {
                    file: first + i,
                    file_offset: from - f.offset,
                    length: to - from,
                }
            })
    }

    /// The file ranges of piece `index`.
    pub fn piece_segments(&self, index: usize) -> impl Iterator<Item = Segment> + '_ {
        self.segments(index as u64 * self.piece_length, self.piece_size(index))
    }

    /// The pieces that hold bytes of the files whose indices are in `files` (indices out
    /// of range and empty files add none). A piece at a file's edge also holds bytes of
    /// its neighbour, which is therefore written to as well.
    pub fn pieces_of(&self, files: &[usize]) -> Bitfield {
        let mut pieces = Bitfield::new(self.piece_count());
        for file in files.iter().filter_map(|&i| self.files.get(i)) {
            if file.length == 0 {
                continue;
            }
            let first = file.offset / self.piece_length;
            let last = (file.offset + file.length - 1) / self.piece_length;
            for piece in first..=last {
                pieces.set(piece as usize);
            }
        }
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cross_files_and_skip_empty_ones() {
        let layout = FileLayout::new(
            [
                ("a".into(), 10, false),
                ("empty".into(), 0, false),
                ("b".into(), 25, false),
                ("c".into(), 5, false),
            ],
            16,
        );
        assert_eq!(layout.piece_count(), 3);
        let seg = |i| {
            layout
                .piece_segments(i)
                .map(|s| (s.file, s.file_offset, s.length))
                .collect::<Vec<_>>()
        };
        assert_eq!(seg(0), [(0, 0, 10), (2, 0, 6)]);
        assert_eq!(seg(1), [(2, 6, 16)]);
        assert_eq!(seg(2), [(2, 22, 3), (3, 0, 5)]);
        assert_eq!(layout.piece_size(2), 8);
        let ones = |files: &[usize]| layout.pieces_of(files).iter_ones().collect::<Vec<_>>();
        assert_eq!(ones(&[0]), [0]);
        assert_eq!(ones(&[1]), [] as [usize; 0], "an empty file needs no piece");
        assert_eq!(ones(&[2]), [0, 1, 2]);
        assert_eq!(ones(&[3]), [2]);
        assert_eq!(
            ones(&[0, 3, 9]),
            [0, 2],
            "an index out of range adds nothing"
        );
    }

    #[test]
    fn only_the_whole_blocks_of_a_padding_tail_are_left_unfetched() {
        const B: u64 = BLOCK_SIZE as u64;
        let piece = 4 * B as u32;
        let layout = FileLayout::new(
            [
                ("a".into(), B + 100, false),
                (PathBuf::new(), 3 * B - 100, true),
                ("b".into(), 4 * B, false),
                ("c".into(), 10, false),
                (PathBuf::new(), 4 * B - 10, true),
            ],
            piece,
        );
        // The block holding a's last 100 bytes is fetched; the two after it are not.
        assert_eq!(layout.fetched_length(0), 2 * B);
        assert_eq!(layout.fetched_length(1), 4 * B, "no padding");
        assert_eq!(layout.fetched_length(2), B, "at least one block");
        let plain = FileLayout::new([("x".into(), 3 * B + 7, false)], piece);
        assert_eq!(
            plain.fetched_length(0),
            3 * B + 7,
            "a short last piece, whole"
        );
    }
}
