//! `.torrent` files (BEP 3), with tracker tiers (BEP 12), the private flag (BEP 27),
//! file attributes and padding files (BEP 47), and v2 and hybrid torrents (BEP 52, see
//! [`v2`]).
//!
//! [`Metainfo::from_bytes`] is the one place a torrent's bytes are trusted into types:
//! sizes are bounded before anything large is allocated, lengths are checked against each
//! other, and every file path is sanitised (see [`path`]) so that nothing a torrent says
//! can make shoal write outside its download directory.

mod build;
mod nodes;
pub mod path;
mod v2;

pub use build::{auto_piece_length, TorrentBuilder, TorrentFormat};
pub use nodes::{DhtNode, DhtNodeError, MAX_NODES};
pub use v2::{layers_needed, LayerNeeded};

use std::collections::BTreeMap;
use std::path::PathBuf;

use shoal_bencode::{decode, DecodeError, Dict, Kind, Limits, Node, Value};

use shoal_hash::{merkle, PieceDigest};

use crate::InfoHash;

/// Larger `.torrent` files are refused before they are read (libtorrent's default too).
pub const MAX_TORRENT_SIZE: usize = 10 * 1024 * 1024;
/// At most 2^21 pieces (libtorrent's default limit).
pub const MAX_PIECES: usize = 1 << 21;
/// Anything larger than 256 MiB per piece is not a real torrent.
pub const MAX_PIECE_LENGTH: u64 = 256 * 1024 * 1024;
/// Deeper file paths are refused.
pub const MAX_PATH_DEPTH: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetainfoError {
    #[error("torrent is {0} bytes, more than the {MAX_TORRENT_SIZE}-byte limit")]
    TooLarge(usize),
    #[error("{0}")]
    Bencode(#[from] DecodeError),
    #[error("missing key '{0}'")]
    Missing(&'static str),
    #[error("key '{key}' should be a {expected}, not a {found}")]
    WrongType {
        key: &'static str,
        expected: Kind,
        found: Kind,
    },
    #[error("piece length {0} is not between 1 and {MAX_PIECE_LENGTH}")]
    BadPieceLength(i64),
    #[error("file length {0} is invalid")]
    BadFileLength(i64),
    #[error("total length overflows")]
    TotalOverflow,
    #[error("torrent contains no data (total length 0)")]
    Empty,
    #[error("'pieces' is {0} bytes, not a multiple of 20")]
    PiecesNotMultipleOf20(usize),
    #[error("{0} pieces, more than the limit of {MAX_PIECES}")]
    TooManyPieces(usize),
    #[error("'pieces' holds {found} hashes but the total length needs {expected}")]
    PieceCountMismatch { expected: u64, found: usize },
    #[error("'files' is empty")]
    NoFiles,
    #[error("file path is deeper than {MAX_PATH_DEPTH} levels")]
    PathTooDeep,
    #[error("file path is not a list of strings")]
    BadPath,
    #[error("'meta version' {0} is newer than this shoal understands (it reads 2)")]
    UnsupportedMetaVersion(i64),
    #[error("'file tree' is malformed")]
    BadFileTree,
    #[error("the piece layer of {0:?} does not match its 'pieces root'")]
    BadPieceLayer(String),
}

/// BEP 47 file attributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileAttr {
    /// A padding file: zeros that align the next file to a piece boundary; never written.
    pub padding: bool,
    pub executable: bool,
    pub hidden: bool,
    pub symlink: bool,
}

impl FileAttr {
    fn parse(s: &[u8]) -> Self {
        FileAttr {
            padding: s.contains(&b'p'),
            executable: s.contains(&b'x'),
            hidden: s.contains(&b'h'),
            symlink: s.contains(&b'l'),
        }
    }
}

/// One file of the torrent, placed in the torrent's byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Sanitised components, relative to the download directory: `[name]` for a
    /// single-file torrent, `[name, dir…, file]` for a multi-file one.
    pub path: Vec<String>,
    pub length: u64,
    /// Where the file starts in the concatenation of all files.
    pub offset: u64,
    pub attr: FileAttr,
    /// For a symlink: its sanitised target, relative to the torrent's root. Sanitising
    /// drops `..`, so the target can never point outside the torrent.
    pub symlink_target: Option<Vec<String>>,
    /// The path as the torrent gives it, bytes as they are (the name first, as in
    /// `path`): what a web seed (BEP 19) serves the file under. Never a path on disk.
    pub url_path: Vec<Vec<u8>>,
}

impl FileEntry {
    /// The relative path to create below the download directory.
    pub fn relative_path(&self) -> PathBuf {
        self.path.iter().collect()
    }

    /// The path as text with `/` separators (for display and JSON).
    pub fn display_path(&self) -> String {
        self.path.join("/")
    }
}

/// The `info` dictionary: what the info-hash covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Sanitised; the info-hash in hex when the torrent's name is unusable.
    pub name: String,
    pub piece_length: u32,
    pieces: PieceHashes,
    pub files: Vec<FileEntry>,
    /// True for a torrent whose info dictionary has a `files` list (content in a folder
    /// named [`Info::name`]), false for a single file.
    pub multi_file: bool,
    pub private: bool,
    /// The info dictionary's `source` (mktorrent's and Transmission's `-s`): a private
    /// tracker's name, which makes the info-hash differ from the same content's
    /// elsewhere. Shown as given; a value that is not text is ignored.
    pub source: Option<String>,
    pub total_length: u64,
}

/// What each piece is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PieceHashes {
    /// SHA-1s, 20 bytes a piece (v1 and hybrid torrents).
    Sha1(Box<[u8]>),
    /// Merkle roots of each piece's 16 KiB blocks, 32 bytes a piece (v2 torrents): the
    /// piece layer of a file longer than a piece, the file's root for a shorter one.
    /// `layers` says where each longer file's piece layer is, for hash requests.
    Merkle {
        hashes: Box<[u8]>,
        layers: Vec<PieceLayer>,
    },
}

/// Where a v2 file's piece layer lies among a torrent's piece hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PieceLayer {
    root: merkle::Hash,
    first_piece: usize,
    pieces: usize,
    /// The file's length in bytes.
    length: u64,
}

impl Info {
    /// The files as `shoal info` numbers them, from 1: padding files are neither listed
    /// nor numbered. Each with its number and its index in `files`.
    pub fn numbered_files(&self) -> impl Iterator<Item = (usize, usize, &FileEntry)> {
        self.files
            .iter()
            .enumerate()
            .filter(|(_, file)| !file.attr.padding)
            .enumerate()
            .map(|(n, (index, file))| (n + 1, index, file))
    }

    pub fn piece_count(&self) -> usize {
        match &self.pieces {
            PieceHashes::Sha1(h) => h.len() / 20,
            PieceHashes::Merkle { hashes, .. } => hashes.len() / 32,
        }
    }

    /// True for a v2-only torrent, whose pieces are checked by merkle root (see
    /// [`shoal_hash::merkle`]); a hybrid torrent is checked by SHA-1.
    pub fn is_merkle(&self) -> bool {
        matches!(self.pieces, PieceHashes::Merkle { .. })
    }

    /// Whether `digest` is piece `index`'s expected hash.
    pub fn piece_matches(&self, index: usize, digest: &PieceDigest) -> bool {
        match (&self.pieces, digest) {
            (PieceHashes::Sha1(h), PieceDigest::Sha1(d)) => {
                h.get(index * 20..index * 20 + 20) == Some(&d[..])
            }
            (PieceHashes::Merkle { hashes, .. }, PieceDigest::Merkle(d)) => {
                hashes.get(index * 32..index * 32 + 32) == Some(&d[..])
            }
            _ => false,
        }
    }

    /// The merkle tree above the piece layer of the v2 file whose root is `root`, to
    /// answer BEP 52 hash requests from; `None` unless this is a v2 torrent with a file
    /// longer than a piece under that root.
    pub fn layer_tree(&self, root: &merkle::Hash) -> Option<merkle::LayerTree> {
        let PieceHashes::Merkle { hashes, layers } = &self.pieces else {
            return None;
        };
        let layer = layers.iter().find(|l| &l.root == root)?;
        let nodes: Vec<merkle::Hash> = hashes
            [layer.first_piece * 32..(layer.first_piece + layer.pieces) * 32]
            .chunks_exact(32)
            .map(|h| h.try_into().expect("chunks of 32"))
            .collect();
        let height = (self.piece_length / merkle::BLOCK as u32).trailing_zeros();
        Some(merkle::LayerTree::new(&nodes, height))
    }

    /// Where the data of the v2 file whose root is `root` (one longer than a piece)
    /// starts, as a piece index, and its length in bytes: what a request for its block
    /// hashes is answered from.
    pub fn merkle_file(&self, root: &merkle::Hash) -> Option<(usize, u64)> {
        let PieceHashes::Merkle { layers, .. } = &self.pieces else {
            return None;
        };
        let layer = layers.iter().find(|l| &l.root == root)?;
        Some((layer.first_piece, layer.length))
    }

    /// The length of piece `index` (only the last one may be short).
    pub fn piece_size(&self, index: usize) -> u32 {
        let start = index as u64 * u64::from(self.piece_length);
        (self.total_length.saturating_sub(start)).min(u64::from(self.piece_length)) as u32
    }
}

/// A parsed `.torrent` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// What identifies the swarm on the wire, at trackers and on the DHT: the SHA-1 of
    /// the info dictionary, or for a v2-only torrent its SHA-256 cut to 20 bytes.
    pub info_hash: InfoHash,
    /// The SHA-256 of the info dictionary, for v2 and hybrid torrents (BEP 52).
    pub info_hash_v2: Option<merkle::Hash>,
    pub info: Info,
    /// Tracker tiers (BEP 12): `announce-list` when present, else `[[announce]]`.
    pub trackers: Vec<Vec<String>>,
    /// Web seeds (BEP 19), kept for later.
    pub url_list: Vec<String>,
    /// DHT nodes to bootstrap from (BEP 5 `nodes`), as the torrent's maker gave them.
    pub nodes: Vec<DhtNode>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
    /// The `info` dictionary exactly as received.
    pub info_bytes: Vec<u8>,
    /// Top-level keys this parser does not interpret, as raw bencode, so that writing the
    /// torrent back out loses nothing.
    pub extra: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Typed access to a dictionary with errors that name the key.
struct Fields<'d, 'a>(Dict<'d, 'a>);

impl<'d, 'a> Fields<'d, 'a> {
    fn typed(&self, key: &'static str, kind: Kind) -> Result<Option<Node<'d, 'a>>, MetainfoError> {
        match self.0.get(key.as_bytes()) {
            Some(node) if node.kind() == kind => Ok(Some(node)),
            Some(node) => Err(MetainfoError::WrongType {
                key,
                expected: kind,
                found: node.kind(),
            }),
            None => Ok(None),
        }
    }
    fn required(&self, key: &'static str, kind: Kind) -> Result<Node<'d, 'a>, MetainfoError> {
        self.typed(key, kind)?.ok_or(MetainfoError::Missing(key))
    }
    fn int(&self, key: &'static str) -> Result<Option<i64>, MetainfoError> {
        Ok(self.typed(key, Kind::Int)?.and_then(|n| n.as_int()))
    }
    /// An optional text field; a value of the wrong type or invalid UTF-8 is ignored
    /// (these fields are informational and real torrents get them wrong).
    fn text(&self, key: &str) -> Option<String> {
        self.0
            .get(key.as_bytes())
            .and_then(|n| n.as_bytes())
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
    /// The torrent's name, sanitised (the info-hash in hex when nothing usable is left),
    /// and as the torrent gives it (what web seeds serve it under).
    fn name(&self, info_hash: InfoHash) -> (String, Vec<u8>) {
        let raw = self
            .utf8_preferred("name", "name.utf-8")
            .and_then(|n| n.as_bytes());
        let name = raw
            .and_then(path::sanitize_component)
            .unwrap_or_else(|| info_hash.to_hex());
        let raw = raw.map_or_else(|| name.as_bytes().to_vec(), <[u8]>::to_vec);
        (name, raw)
    }

    /// `key.utf-8` if it is present and valid, else `key`: the form BEP 3 readers prefer.
    fn utf8_preferred(&self, key: &'static str, utf8_key: &str) -> Option<Node<'d, 'a>> {
        self.0
            .get(utf8_key.as_bytes())
            .or_else(|| self.0.get(key.as_bytes()))
    }
}

impl Metainfo {
    /// The swarms the torrent is in: `info_hash`, and for a hybrid torrent also its v2
    /// swarm, named by the SHA-256 cut to 20 bytes (BEP 52). libtorrent announces a
    /// hybrid under both and takes connections naming either; a peer that knows only the
    /// v2 hash (a `btmh`-only magnet link) finds and reaches us only in the second.
    pub fn swarm_hashes(&self) -> Vec<InfoHash> {
        let mut hashes = vec![self.info_hash];
        if let Some(v2) = self.info_hash_v2 {
            let v2 = InfoHash(v2[..20].try_into().expect("32 bytes"));
            if v2 != self.info_hash {
                hashes.push(v2);
            }
        }
        hashes
    }

    /// Parses a `.torrent` file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MetainfoError> {
        if bytes.len() > MAX_TORRENT_SIZE {
            return Err(MetainfoError::TooLarge(bytes.len()));
        }
        let doc = decode(bytes, Limits::default())?;
        let root = doc.root();
        let top = Fields(root.as_dict().ok_or(MetainfoError::WrongType {
            key: "(top level)",
            expected: Kind::Dict,
            found: root.kind(),
        })?);
        let info_node = top.required("info", Kind::Dict)?;
        let info_bytes = info_node.raw().to_vec();
        let fields = Fields(info_node.as_dict().expect("kind checked"));
        // BEP 52: the version is checked before anything else it may have changed.
        let (info_hash, info_hash_v2, info) = match fields.int("meta version")? {
            None => {
                let hash = InfoHash::of_info(&info_bytes);
                (hash, None, parse_info(fields, hash)?)
            }
            Some(2) => {
                let v2 = merkle::sha256(&info_bytes);
                if fields.0.get(b"pieces").is_some() {
                    // Hybrid: the v1 half describes the same content, padded to the
                    // same alignment; shoal joins its swarm and checks its SHA-1s.
                    let hash = InfoHash::of_info(&info_bytes);
                    (hash, Some(v2), parse_info(fields, hash)?)
                } else {
                    let hash = InfoHash(v2[..20].try_into().expect("32 bytes"));
                    let info = v2::parse_info(fields, top.0.get(b"piece layers"), hash)?;
                    (hash, Some(v2), info)
                }
            }
            Some(other) => return Err(MetainfoError::UnsupportedMetaVersion(other)),
        };

        let trackers = parse_trackers(&top);
        let url_list = match top.0.get(b"url-list") {
            Some(n) if n.kind() == Kind::List => n
                .as_list()
                .expect("kind checked")
                .iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect(),
            Some(n) => n.as_str().map(|s| vec![s.to_owned()]).unwrap_or_default(),
            None => Vec::new(),
        };
        const KNOWN: [&[u8]; 8] = [
            b"info",
            b"announce",
            b"announce-list",
            b"url-list",
            b"nodes",
            b"comment",
            b"created by",
            b"creation date",
        ];
        let extra = top
            .0
            .iter()
            .filter(|(k, _)| !KNOWN.contains(k))
            .map(|(k, v)| (k.to_vec(), v.raw().to_vec()))
            .collect();
        Ok(Metainfo {
            info_hash,
            info_hash_v2,
            info,
            trackers,
            url_list,
            nodes: nodes::parse(top.0.get(b"nodes")),
            comment: top.text("comment.utf-8").or_else(|| top.text("comment")),
            created_by: top.text("created by"),
            creation_date: top.0.get(b"creation date").and_then(|n| n.as_int()),
            info_bytes,
            extra,
        })
    }

    /// Writes the torrent back out: the `info` dictionary byte for byte as received,
    /// unknown top-level keys preserved, the rest canonical.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut top = Value::dict();
        for (k, v) in &self.extra {
            top.insert(k.clone(), Value::Raw(v.clone()));
        }
        top.insert("info", Value::Raw(self.info_bytes.clone()));
        if let Some(first) = self.trackers.iter().flatten().next() {
            top.insert("announce", first.as_str());
        }
        if self.trackers.iter().map(Vec::len).sum::<usize>() > 1 {
            top.insert("announce-list", tiers_value(&self.trackers));
        }
        if !self.url_list.is_empty() {
            top.insert(
                "url-list",
                Value::List(self.url_list.iter().map(|u| u.as_str().into()).collect()),
            );
        }
        if !self.nodes.is_empty() {
            top.insert("nodes", nodes::value(&self.nodes));
        }
        if let Some(c) = &self.comment {
            top.insert("comment", c.as_str());
        }
        if let Some(c) = &self.created_by {
            top.insert("created by", c.as_str());
        }
        if let Some(d) = self.creation_date {
            top.insert("creation date", d);
        }
        top.to_bytes()
    }

    /// A magnet link for this torrent, with its name and trackers.
    pub fn magnet(&self) -> crate::Magnet {
        crate::Magnet {
            info_hash: self.info_hash,
            info_hash_v2: self.info_hash_v2,
            name: Some(self.info.name.clone()),
            trackers: self.trackers.iter().flatten().cloned().collect(),
            peers: Vec::new(),
            web_seeds: self.url_list.clone(),
            select_only: Vec::new(),
        }
    }
}

pub(crate) fn tiers_value(tiers: &[Vec<String>]) -> Value {
    Value::List(
        tiers
            .iter()
            .map(|tier| Value::List(tier.iter().map(|u| u.as_str().into()).collect()))
            .collect(),
    )
}

/// `announce-list` if it has any usable URL, else `announce`; empty tiers and duplicate
/// URLs dropped; non-string entries ignored.
fn parse_trackers(top: &Fields) -> Vec<Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut tiers = Vec::new();
    if let Some(list) = top.0.get(b"announce-list").and_then(|n| n.as_list()) {
        for tier in list.iter().filter_map(|t| t.as_list()) {
            let urls: Vec<String> = tier
                .iter()
                .filter_map(|u| u.as_str())
                .map(|u| u.trim().to_owned())
                .filter(|u| !u.is_empty() && seen.insert(u.clone()))
                .collect();
            if !urls.is_empty() {
                tiers.push(urls);
            }
        }
    }
    if tiers.is_empty() {
        if let Some(url) = top
            .0
            .get(b"announce")
            .and_then(|n| n.as_str())
            .map(str::trim)
        {
            if !url.is_empty() {
                tiers.push(vec![url.to_owned()]);
            }
        }
    }
    tiers
}

fn parse_length(node: Option<Node>) -> Result<u64, MetainfoError> {
    let node = node.ok_or(MetainfoError::Missing("length"))?;
    let value = node.as_int().ok_or(MetainfoError::WrongType {
        key: "length",
        expected: Kind::Int,
        found: node.kind(),
    })?;
    u64::try_from(value).map_err(|_| MetainfoError::BadFileLength(value))
}

fn parse_info(info: Fields, info_hash: InfoHash) -> Result<Info, MetainfoError> {
    let piece_length = info
        .int("piece length")?
        .ok_or(MetainfoError::Missing("piece length"))?;
    if piece_length <= 0 || piece_length as u64 > MAX_PIECE_LENGTH {
        return Err(MetainfoError::BadPieceLength(piece_length));
    }
    let piece_length = piece_length as u32;

    let pieces = info
        .required("pieces", Kind::Bytes)?
        .as_bytes()
        .expect("kind checked");
    if pieces.len() % 20 != 0 {
        return Err(MetainfoError::PiecesNotMultipleOf20(pieces.len()));
    }
    if pieces.len() / 20 > MAX_PIECES {
        return Err(MetainfoError::TooManyPieces(pieces.len() / 20));
    }

    let (name, raw_name) = info.name(info_hash);

    let mut files = Vec::new();
    let multi_file = match info.typed("files", Kind::List)? {
        Some(list) => {
            for (index, entry) in list.as_list().expect("kind checked").iter().enumerate() {
                let mut file = parse_file_entry(entry, index, &name)?;
                file.url_path.insert(0, raw_name.clone());
                files.push(file);
            }
            if files.is_empty() {
                return Err(MetainfoError::NoFiles);
            }
            true
        }
        None => {
            let length = parse_length(info.0.get(b"length"))?;
            let attr = info
                .0
                .get(b"attr")
                .and_then(|a| a.as_bytes())
                .map(FileAttr::parse)
                .unwrap_or_default();
            files.push(FileEntry {
                path: vec![name.clone()],
                length,
                offset: 0,
                attr,
                symlink_target: None,
                url_path: vec![raw_name.clone()],
            });
            false
        }
    };

    let mut offset = 0u64;
    for file in &mut files {
        file.offset = offset;
        offset = offset
            .checked_add(file.length)
            .ok_or(MetainfoError::TotalOverflow)?;
    }
    let total_length = offset;
    if total_length == 0 {
        return Err(MetainfoError::Empty);
    }
    let expected = total_length.div_ceil(u64::from(piece_length));
    if expected != (pieces.len() / 20) as u64 {
        return Err(MetainfoError::PieceCountMismatch {
            expected,
            found: pieces.len() / 20,
        });
    }

    if multi_file {
        let mut paths: Vec<Vec<String>> = files
            .iter_mut()
            .map(|f| std::mem::take(&mut f.path))
            .collect();
        path::dedup(&mut paths);
        for (file, mut p) in files.iter_mut().zip(paths) {
            p.insert(0, name.clone());
            file.path = p;
        }
    }

    Ok(Info {
        name,
        piece_length,
        pieces: PieceHashes::Sha1(pieces.into()),
        files,
        multi_file,
        private: info.int("private").ok().flatten() == Some(1),
        source: info.text("source"),
        total_length,
    })
}

/// Reads a path list into sanitised components.
/// A path list's elements as they are; an error if one is not a string or there are too
/// many.
fn raw_components<'a>(node: Node<'_, 'a>) -> Result<Vec<&'a [u8]>, MetainfoError> {
    let list = node.as_list().ok_or(MetainfoError::BadPath)?;
    let mut raw = Vec::new();
    for element in list.iter() {
        raw.push(element.as_bytes().ok_or(MetainfoError::BadPath)?);
        if raw.len() > MAX_PATH_DEPTH {
            return Err(MetainfoError::PathTooDeep);
        }
    }
    Ok(raw)
}

fn path_components(node: Node) -> Result<Vec<String>, MetainfoError> {
    Ok(path::sanitize_path(raw_components(node)?))
}

fn parse_file_entry(entry: Node, index: usize, name: &str) -> Result<FileEntry, MetainfoError> {
    let fields = Fields(entry.as_dict().ok_or(MetainfoError::WrongType {
        key: "files",
        expected: Kind::Dict,
        found: entry.kind(),
    })?);
    let length = parse_length(fields.0.get(b"length"))?;
    let path_node = fields
        .utf8_preferred("path", "path.utf-8")
        .ok_or(MetainfoError::Missing("path"))?;
    let url_path = raw_components(path_node)?
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    let mut path = path_components(path_node)?;
    if path.is_empty() {
        // Every element was unusable: give the file a name that cannot clash with a
        // sanitised one for long (dedup settles any remaining clash).
        path.push(format!("{name}.file{index}"));
    }
    let attr = fields
        .0
        .get(b"attr")
        .and_then(|a| a.as_bytes())
        .map(FileAttr::parse)
        .unwrap_or_default();
    let symlink_target = match (attr.symlink, fields.0.get(b"symlink path")) {
        (true, Some(target)) => Some(path_components(target)?).filter(|t| !t.is_empty()),
        _ => None,
    };
    Ok(FileEntry {
        path,
        length,
        offset: 0,
        attr,
        symlink_target,
        url_path,
    })
}

#[cfg(test)]
mod tests;
