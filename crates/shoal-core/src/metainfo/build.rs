//! Writing a new `.torrent` from a file list and its piece hashes.
//!
//! The info dictionary holds exactly the keys mktorrent and libtorrent (`v1_only`) write
//! for the same content (`length` or `files`, `name`, `piece length`, `pieces`, and
//! `private` and `source` only when set), so the same files and piece size give the same
//! info-hash in all three. A v2 or hybrid torrent (BEP 52) is written as libtorrent 2
//! writes it: `file tree` and `meta version`, `piece layers` beside the info dictionary,
//! and for a hybrid one the v1 `files` list with a padding file (`.pad/<size>`, attribute
//! `p`) after every file that does not end on a piece boundary, the last one too.

use std::collections::BTreeMap;

use shoal_bencode::Value;
use shoal_hash::merkle;

use super::tiers_value;

/// Which BEP a new torrent follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TorrentFormat {
    /// BEP 3: SHA-1 pieces, read by every client (mktorrent's and Transmission's kind).
    #[default]
    V1,
    /// BEP 52 only: SHA-256 merkle trees; libtorrent 2 and qBittorrent read it.
    V2,
    /// Both in one info dictionary (libtorrent 2's default): every client joins, v1
    /// clients through the SHA-1 half.
    Hybrid,
}

/// Chooses a piece length for `total` bytes: the smallest power of two from 16 KiB to
/// 16 MiB that keeps the torrent at no more than 2000 pieces (so between 1000 and 2000
/// whenever the bounds allow), as libtorrent and mktorrent aim to.
pub fn auto_piece_length(total: u64) -> u32 {
    let mut length: u32 = 16 * 1024;
    while length < 16 * 1024 * 1024 && total.div_ceil(u64::from(length)) > 2000 {
        length *= 2;
    }
    length
}

/// The contents and options of a torrent to write.
#[derive(Debug, Clone, Default)]
pub struct TorrentBuilder {
    /// The file's name (single-file) or the folder's name (multi-file), as raw bytes so
    /// that names which are not UTF-8 on disk round-trip.
    pub name: Vec<u8>,
    /// `None` for a single-file torrent; otherwise each file's path below the folder and
    /// its length, in the order the pieces cover them.
    pub files: Option<Vec<(Vec<Vec<u8>>, u64)>>,
    /// Length of the single file (ignored for multi-file torrents).
    pub length: u64,
    pub piece_length: u32,
    /// Concatenated 20-byte piece hashes (v1 and hybrid).
    pub pieces: Vec<u8>,
    pub format: TorrentFormat,
    /// v2 and hybrid: each file's merkle root, in the order of `files` (one entry for a
    /// single file); `None` for an empty file.
    pub roots: Vec<Option<merkle::Hash>>,
    /// v2 and hybrid: the piece layer of each file longer than a piece, by root.
    pub piece_layers: BTreeMap<merkle::Hash, Vec<u8>>,
    /// BEP 47 `attr: x` per file, in the order of `files` (one entry for a single file),
    /// as libtorrent records an executable file; empty when none is recorded.
    pub executable: Vec<bool>,
    /// BEP 47 `attr: l` per file, in the order of `files`: a symbolic link's target,
    /// relative to the torrent's folder; empty when no file is a link.
    pub symlinks: Vec<Option<Vec<Vec<u8>>>>,
    pub private: bool,
    /// The info dictionary's `source` (see [`super::Info::source`]).
    pub source: Option<String>,
    pub trackers: Vec<Vec<String>>,
    /// Web seeds (BEP 19 `url-list`).
    pub web_seeds: Vec<String>,
    /// DHT nodes to bootstrap from (BEP 5 `nodes`).
    pub nodes: Vec<super::DhtNode>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
}

impl TorrentBuilder {
    /// The bencoded info dictionary (its SHA-1 is the info-hash).
    pub fn info_bytes(&self) -> Vec<u8> {
        let mut info = Value::dict();
        info.insert("name", self.name.clone());
        info.insert("piece length", i64::from(self.piece_length));
        if self.private {
            info.insert("private", 1i64);
        }
        if let Some(source) = &self.source {
            info.insert("source", source.as_str());
        }
        if self.format != TorrentFormat::V2 {
            info.insert("pieces", self.pieces.clone());
            match &self.files {
                None => {
                    info.insert("length", self.length as i64);
                    if self.is_executable(0) {
                        info.insert("attr", "x");
                    }
                }
                Some(files) => info.insert("files", Value::List(self.v1_files(files))),
            }
        }
        if self.format != TorrentFormat::V1 {
            info.insert("meta version", 2i64);
            info.insert("file tree", self.file_tree());
        }
        info.to_bytes()
    }

    fn is_executable(&self, file: usize) -> bool {
        self.executable.get(file).copied().unwrap_or(false)
    }

    fn symlink(&self, file: usize) -> Option<&Vec<Vec<u8>>> {
        self.symlinks.get(file).and_then(Option::as_ref)
    }

    /// A file's BEP 47 attributes: `l` for a link (whose own mode means nothing), `x` for
    /// an executable file.
    fn attr(&self, file: usize) -> Option<&'static str> {
        if self.symlink(file).is_some() {
            Some("l")
        } else {
            self.is_executable(file).then_some("x")
        }
    }

    /// The v1 `files` list; a hybrid torrent's has padding files aligning each file to a
    /// piece boundary, as its v2 half implies.
    fn v1_files(&self, files: &[(Vec<Vec<u8>>, u64)]) -> Vec<Value> {
        let entry = |path: Vec<Vec<u8>>, length: u64, attr: Option<&str>| {
            let mut file = Value::dict();
            if let Some(attr) = attr {
                file.insert("attr", attr);
            }
            file.insert("length", length as i64);
            file.insert("path", components(&path));
            file
        };
        let piece = u64::from(self.piece_length);
        let mut list = Vec::new();
        for (index, (path, length)) in files.iter().enumerate() {
            let mut file = entry(path.clone(), *length, self.attr(index));
            if let Some(target) = self.symlink(index) {
                file.insert("symlink path", components(target));
            }
            list.push(file);
            let gap = (piece - length % piece) % piece;
            if self.format == TorrentFormat::Hybrid && gap > 0 {
                let name = vec![b".pad".to_vec(), gap.to_string().into_bytes()];
                list.push(entry(name, gap, Some("p")));
            }
        }
        list
    }

    /// The v2 `file tree`: the file's name alone at the root for a single file,
    /// otherwise the paths below the torrent's folder.
    fn file_tree(&self) -> Value {
        enum Node {
            Dir(BTreeMap<Vec<u8>, Node>),
            /// A file's properties.
            File(Value),
        }
        fn value(node: Node) -> Value {
            match node {
                Node::Dir(children) => {
                    let mut dict = Value::dict();
                    for (name, child) in children {
                        dict.insert(name, value(child));
                    }
                    dict
                }
                Node::File(props) => {
                    let mut leaf = Value::dict();
                    leaf.insert("", props);
                    leaf
                }
            }
        }
        let single = [(vec![self.name.clone()], self.length)];
        let files: Vec<_> = match &self.files {
            Some(files) => files.iter().map(|(p, l)| (p.clone(), *l)).collect(),
            None => single.to_vec(),
        };
        let mut root = BTreeMap::new();
        let entries = files.into_iter().zip(&self.roots).enumerate();
        'files: for (index, ((path, length), file_root)) in entries {
            let Some((name, dirs)) = path.split_last() else {
                continue;
            };
            let mut dir = &mut root;
            for component in dirs {
                let next = dir
                    .entry(component.clone())
                    .or_insert_with(|| Node::Dir(BTreeMap::new()));
                match next {
                    Node::Dir(children) => dir = children,
                    // A name both a file and a folder cannot come from a folder on disk.
                    Node::File(..) => continue 'files,
                }
            }
            let mut props = Value::dict();
            if let Some(attr) = self.attr(index) {
                props.insert("attr", attr);
            }
            match self.symlink(index) {
                // A link has no bytes, and libtorrent writes it no length.
                Some(target) => props.insert("symlink path", components(target)),
                None => props.insert("length", length as i64),
            }
            if let Some(root) = file_root {
                props.insert("pieces root", root.to_vec());
            }
            dir.insert(name.clone(), Node::File(props));
        }
        value(Node::Dir(root))
    }

    /// The whole `.torrent` file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut top = Value::dict();
        top.insert("info", Value::Raw(self.info_bytes()));
        if self.format != TorrentFormat::V1 {
            let mut layers = Value::dict();
            for (root, layer) in &self.piece_layers {
                layers.insert(root.to_vec(), layer.clone());
            }
            top.insert("piece layers", layers);
        }
        if let Some(first) = self.trackers.iter().flatten().next() {
            top.insert("announce", first.as_str());
        }
        if self.trackers.iter().map(Vec::len).sum::<usize>() > 1 {
            top.insert("announce-list", tiers_value(&self.trackers));
        }
        if !self.web_seeds.is_empty() {
            let urls = self.web_seeds.iter().map(|u| u.as_str().into()).collect();
            top.insert("url-list", Value::List(urls));
        }
        if !self.nodes.is_empty() {
            top.insert("nodes", super::nodes::value(&self.nodes));
        }
        if let Some(comment) = &self.comment {
            top.insert("comment", comment.as_str());
        }
        if let Some(by) = &self.created_by {
            top.insert("created by", by.as_str());
        }
        if let Some(date) = self.creation_date {
            top.insert("creation date", date);
        }
        top.to_bytes()
    }
}

/// A path as a bencoded list of its components.
fn components(path: &[Vec<u8>]) -> Value {
    Value::List(path.iter().cloned().map(Value::Bytes).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_length_targets_1000_to_2000_pieces() {
        assert_eq!(auto_piece_length(1), 16 * 1024);
        assert_eq!(auto_piece_length(1 << 30), 1 << 20);
        for shift in 25..35 {
            let total = (1u64 << shift) + 12345;
            let pieces = total.div_ceil(u64::from(auto_piece_length(total)));
            assert!((1000..=2000).contains(&pieces), "{total}: {pieces}");
        }
        assert_eq!(auto_piece_length(u64::MAX / 2), 16 * 1024 * 1024);
    }
}
