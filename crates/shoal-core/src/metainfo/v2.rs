//! v2 torrents (BEP 52): the `file tree`, per-file merkle roots and the `piece layers`
//! outside the info dictionary.
//!
//! shoal maps a v2 torrent onto the byte stream a v1 torrent has: files in tree order,
//! each non-empty one starting on a piece boundary, the gap after it a BEP 47 padding
//! file, as a hybrid torrent spells out and libtorrent does internally. Storage, the
//! picker and the wire then need nothing of v2 but the piece check, which compares a
//! piece's merkle root (see [`shoal_hash::merkle`]) with the layer hash the torrent gives.

use shoal_bencode::{decode, Kind, Limits, Node};
use shoal_hash::merkle;

use super::{
    parse_length, path, FileAttr, FileEntry, Info, MetainfoError, PieceHashes, PieceLayer,
    MAX_PATH_DEPTH, MAX_PIECES,
};
use crate::InfoHash;

/// A file as the tree gives it, before it is placed in the stream.
struct TreeFile<'a> {
    /// Path elements as they are, from the tree's root.
    raw: Vec<&'a [u8]>,
    length: u64,
    root: Option<merkle::Hash>,
    attr: FileAttr,
    symlink: Option<Vec<String>>,
}

/// Parses a v2-only info dictionary (`meta version` 2, no `pieces`), checking every
/// file's piece layer against its root. `layers` is the top level's `piece layers`.
pub(super) fn parse_info(
    info: super::Fields,
    layers: Option<Node>,
    info_hash: InfoHash,
) -> Result<Info, MetainfoError> {
    let piece_length = info
        .int("piece length")?
        .ok_or(MetainfoError::Missing("piece length"))?;
    if piece_length < merkle::BLOCK as i64
        || piece_length as u64 > super::MAX_PIECE_LENGTH
        || !(piece_length as u64).is_power_of_two()
    {
        return Err(MetainfoError::BadPieceLength(piece_length));
    }
    let piece_length = piece_length as u32;
    let piece = u64::from(piece_length);

    let (name, raw_name) = info.name(info_hash);

    let tree = info.required("file tree", Kind::Dict)?;
    let mut found = Vec::new();
    walk(tree, &mut Vec::new(), &mut found)?;
    if found.is_empty() {
        return Err(MetainfoError::NoFiles);
    }
    // One file at the root is a single-file torrent; anything else lives in a folder
    // named after the torrent.
    let multi_file = !(found.len() == 1 && found[0].raw.len() == 1);

    let layers = layers.and_then(|n| n.as_dict());
    let layer_height = (piece / merkle::BLOCK as u64).trailing_zeros();
    let mut hashes = Vec::new();
    let mut piece_layers = Vec::new();
    let mut files = Vec::new();
    let mut offset = 0u64;
    let mut paths = Vec::new();
    let mut pads = 0usize;
    for (index, file) in found.into_iter().enumerate() {
        if file.length > 0 {
            let root = file.root.ok_or(MetainfoError::Missing("pieces root"))?;
            let count = file.length.div_ceil(piece);
            if hashes.len() as u64 / 32 + count > MAX_PIECES as u64 {
                return Err(MetainfoError::TooManyPieces(
                    (hashes.len() as u64 / 32 + count) as usize,
                ));
            }
            if file.length <= piece {
                hashes.extend_from_slice(&root);
            } else {
                let layer = layers
                    .and_then(|d| d.get(&root))
                    .and_then(|n| n.as_bytes())
                    .ok_or(MetainfoError::Missing("piece layers"))?;
                if layer.len() as u64 != count * 32 {
                    return Err(MetainfoError::BadPieceLayer(file_name(&file.raw)));
                }
                let nodes: Vec<merkle::Hash> = layer
                    .chunks_exact(32)
                    .map(|h| h.try_into().expect("chunks of 32"))
                    .collect();
                let width = nodes.len().next_power_of_two();
                if merkle::root(&nodes, width, layer_height) != root {
                    return Err(MetainfoError::BadPieceLayer(file_name(&file.raw)));
                }
                piece_layers.push(PieceLayer {
                    root,
                    first_piece: hashes.len() / 32,
                    pieces: nodes.len(),
                    length: file.length,
                });
                hashes.extend_from_slice(layer);
            }
        }
        let mut relative = path::sanitize_path(file.raw.iter().copied());
        if relative.is_empty() {
            relative.push(format!("{name}.file{index}"));
        }
        paths.push(relative);
        let mut url_path: Vec<Vec<u8>> = file.raw.iter().map(|c| c.to_vec()).collect();
        if multi_file {
            url_path.insert(0, raw_name.clone());
        }
        let end = offset
            .checked_add(file.length)
            .ok_or(MetainfoError::TotalOverflow)?;
        files.push(FileEntry {
            path: Vec::new(),
            length: file.length,
            offset,
            attr: file.attr,
            symlink_target: file.symlink,
            url_path,
        });
        offset = end;
        // Align the next file: the gap is a padding file. libtorrent pads the last file
        // too, so its last piece is whole, and its peers ask for blocks up to its end.
        let gap = (piece - end % piece) % piece;
        if gap > 0 {
            pads += 1;
            paths.push(vec![".pad".into(), pads.to_string()]);
            files.push(FileEntry {
                path: Vec::new(),
                length: gap,
                offset,
                attr: FileAttr {
                    padding: true,
                    ..FileAttr::default()
                },
                symlink_target: None,
                url_path: Vec::new(),
            });
            offset = offset
                .checked_add(gap)
                .ok_or(MetainfoError::TotalOverflow)?;
        }
    }
    if offset == 0 {
        return Err(MetainfoError::Empty);
    }

    if multi_file {
        path::dedup(&mut paths);
        for p in &mut paths {
            p.insert(0, name.clone());
        }
    }
    for (file, p) in files.iter_mut().zip(paths) {
        file.path = p;
    }
    Ok(Info {
        name,
        piece_length,
        pieces: PieceHashes::Merkle {
            hashes: hashes.into(),
            layers: piece_layers,
        },
        files,
        multi_file,
        private: info.int("private").ok().flatten() == Some(1),
        source: info.text("source"),
        total_length: offset,
    })
}

/// A v2 file whose piece layer a torrent started from a magnet link must get from peers
/// (BEP 52 hash requests): the info dictionary has only its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerNeeded {
    pub root: merkle::Hash,
    /// Hashes in the layer: the file's pieces.
    pub pieces: usize,
    /// The layer's height above the leaves (log2 of the piece length in blocks).
    pub height: u32,
}

/// The piece layers a v2-only info dictionary needs (an empty list for a v1 or hybrid
/// one, which checks pieces by SHA-1). The dictionary must already be trusted (its hash
/// checked); this only reads its file tree.
pub fn layers_needed(info_bytes: &[u8]) -> Result<Vec<LayerNeeded>, MetainfoError> {
    let doc = decode(info_bytes, Limits::default())?;
    let root = doc.root();
    let info = super::Fields(root.as_dict().ok_or(MetainfoError::WrongType {
        key: "info",
        expected: Kind::Dict,
        found: root.kind(),
    })?);
    if info.int("meta version")? != Some(2) || info.0.get(b"pieces").is_some() {
        return Ok(Vec::new());
    }
    let piece_length = info
        .int("piece length")?
        .ok_or(MetainfoError::Missing("piece length"))?;
    if piece_length < merkle::BLOCK as i64 || !(piece_length as u64).is_power_of_two() {
        return Err(MetainfoError::BadPieceLength(piece_length));
    }
    let piece = piece_length as u64;
    let height = (piece / merkle::BLOCK as u64).trailing_zeros();
    let mut found = Vec::new();
    walk(
        info.required("file tree", Kind::Dict)?,
        &mut Vec::new(),
        &mut found,
    )?;
    let mut needed = Vec::new();
    let mut total = 0u64;
    for file in found.into_iter().filter(|f| f.length > piece) {
        let pieces = file.length.div_ceil(piece);
        total += pieces;
        if total > MAX_PIECES as u64 {
            return Err(MetainfoError::TooManyPieces(total as usize));
        }
        needed.push(LayerNeeded {
            root: file.root.ok_or(MetainfoError::Missing("pieces root"))?,
            pieces: pieces as usize,
            height,
        });
    }
    Ok(needed)
}

/// The last path element, for error messages.
fn file_name(raw: &[&[u8]]) -> String {
    raw.last()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_default()
}

/// Collects the files below `dir`, in the tree's (sorted) order.
fn walk<'a>(
    dir: Node<'_, 'a>,
    prefix: &mut Vec<&'a [u8]>,
    out: &mut Vec<TreeFile<'a>>,
) -> Result<(), MetainfoError> {
    if prefix.len() >= MAX_PATH_DEPTH {
        return Err(MetainfoError::PathTooDeep);
    }
    let dict = dir.as_dict().ok_or(MetainfoError::BadFileTree)?;
    for (key, child) in dict.iter() {
        let child_dict = child.as_dict().ok_or(MetainfoError::BadFileTree)?;
        if key.is_empty() {
            // Properties belong to a file's own dictionary, never beside other names.
            return Err(MetainfoError::BadFileTree);
        }
        prefix.push(key);
        let mut entries = child_dict.iter();
        match (entries.next(), entries.next()) {
            (Some((&[], props)), None) => out.push(tree_file(props, prefix.clone())?),
            _ => walk(child, prefix, out)?,
        }
        prefix.pop();
    }
    Ok(())
}

fn tree_file<'a>(props: Node<'_, 'a>, raw: Vec<&'a [u8]>) -> Result<TreeFile<'a>, MetainfoError> {
    let fields = super::Fields(props.as_dict().ok_or(MetainfoError::BadFileTree)?);
    let attr = fields
        .0
        .get(b"attr")
        .and_then(|a| a.as_bytes())
        .map(FileAttr::parse)
        .unwrap_or_default();
    // libtorrent writes a symbolic link's entry without a length: it holds no bytes.
    let length = match fields.0.get(b"length") {
        None if attr.symlink => 0,
        length => parse_length(length)?,
    };
    let root = match fields.0.get(b"pieces root").and_then(|n| n.as_bytes()) {
        Some(bytes) => Some(
            <merkle::Hash>::try_from(bytes)
                .map_err(|_| MetainfoError::BadPieceLayer(file_name(&raw)))?,
        ),
        None => None,
    };
    let symlink = match (attr.symlink, fields.0.get(b"symlink path")) {
        (true, Some(target)) => Some(super::path_components(target)?).filter(|t| !t.is_empty()),
        _ => None,
    };
    Ok(TreeFile {
        raw,
        length,
        root,
        attr,
        symlink,
    })
}

#[cfg(test)]
mod tests {
    use shoal_bencode::Value;
    use shoal_hash::merkle::{self, BLOCK};
    use shoal_hash::PieceDigest;

    use crate::metainfo::{Metainfo, MetainfoError};

    const PIECE: usize = 4 * BLOCK;

    /// The root over a file's blocks, and its piece layer when it is longer than a piece.
    fn tree(data: &[u8]) -> (merkle::Hash, Vec<u8>) {
        let leaves: Vec<_> = data.chunks(BLOCK).map(merkle::sha256).collect();
        let root = merkle::root(&leaves, leaves.len().next_power_of_two(), 0);
        if data.len() <= PIECE {
            return (root, Vec::new());
        }
        let layer: Vec<merkle::Hash> = leaves
            .chunks(PIECE / BLOCK)
            .map(|piece| merkle::root(piece, PIECE / BLOCK, 0))
            .collect();
        (root, layer.concat())
    }

    fn file_node(data: &[u8]) -> Value {
        let mut props = Value::dict();
        props.insert("length", data.len() as i64);
        if !data.is_empty() {
            props.insert("pieces root", tree(data).0.to_vec());
        }
        let mut leaf = Value::dict();
        leaf.insert("", props);
        leaf
    }

    /// A v2 torrent of `files` (top-level names) in PIECE-byte pieces; `edit` changes
    /// the info dictionary and `layers` the piece layers before encoding.
    fn torrent(
        files: &[(&str, &[u8])],
        edit: impl FnOnce(&mut Value),
        layers_edit: impl FnOnce(&mut Vec<(Vec<u8>, Vec<u8>)>),
    ) -> Vec<u8> {
        let mut file_tree = Value::dict();
        let mut layers = Vec::new();
        for (name, data) in files {
            file_tree.insert(*name, file_node(data));
            let (root, layer) = tree(data);
            if !layer.is_empty() {
                layers.push((root.to_vec(), layer));
            }
        }
        let mut dir = Value::dict();
        dir.insert("d", file_tree);
        let mut info = Value::dict();
        info.insert("file tree", dir);
        info.insert("meta version", 2);
        info.insert("name", "d");
        info.insert("piece length", PIECE as i64);
        edit(&mut info);
        layers_edit(&mut layers);
        let mut layer_dict = Value::dict();
        for (root, layer) in layers {
            layer_dict.insert(root, layer);
        }
        let mut top = Value::dict();
        top.insert("info", info);
        top.insert("piece layers", layer_dict);
        top.to_bytes()
    }

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn files_are_aligned_by_padding_and_checked_by_merkle_root() {
        let big = data(2 * PIECE + 5000, 1);
        let small = data(3 * BLOCK - 7, 2);
        let m = Metainfo::from_bytes(&torrent(
            &[("big", &big), ("empty", &[]), ("small", &small)],
            |_| {},
            |_| {},
        ))
        .unwrap();
        assert_eq!(&m.info_hash.0[..], &m.info_hash_v2.unwrap()[..20]);
        // A v2-only torrent is in one swarm, named by its cut SHA-256.
        assert_eq!(m.swarm_hashes(), vec![m.info_hash]);
        assert!(m.info.is_merkle());
        let layout: Vec<_> = m
            .info
            .files
            .iter()
            .map(|f| (f.display_path(), f.offset, f.length, f.attr.padding))
            .collect();
        let gap = |len: usize| (PIECE - len % PIECE) as u64;
        assert_eq!(
            layout,
            [
                ("d/d/big".into(), 0, big.len() as u64, false),
                ("d/.pad/1".into(), big.len() as u64, gap(big.len()), true),
                ("d/d/empty".into(), 3 * PIECE as u64, 0, false),
                (
                    "d/d/small".into(),
                    3 * PIECE as u64,
                    small.len() as u64,
                    false
                ),
                (
                    "d/.pad/2".into(),
                    (3 * PIECE + small.len()) as u64,
                    gap(small.len()),
                    true
                ),
            ]
        );
        assert_eq!(m.info.piece_count(), 4);
        assert_eq!(m.info.total_length, 4 * PIECE as u64);
        let (_, layer) = tree(&big);
        let piece = |i: usize| PieceDigest::Merkle(layer[i * 32..i * 32 + 32].try_into().unwrap());
        assert!(m.info.piece_matches(2, &piece(2)));
        assert!(!m.info.piece_matches(1, &piece(2)));
        assert!(m
            .info
            .piece_matches(3, &PieceDigest::Merkle(tree(&small).0)));
        assert!(!m.info.piece_matches(2, &PieceDigest::Sha1([0; 20])));
        // Hash requests can be answered for the file with a piece layer, not the other.
        let big_root = tree(&big).0;
        assert_eq!(m.info.layer_tree(&big_root).unwrap().root(), big_root);
        assert!(m.info.layer_tree(&tree(&small).0).is_none());
        // Started from a magnet link, only the info dictionary is known: it names the
        // layer to ask peers for.
        assert_eq!(
            super::layers_needed(&m.info_bytes).unwrap(),
            [super::LayerNeeded {
                root: big_root,
                pieces: 3,
                height: 2
            }]
        );
    }

    #[test]
    fn a_single_file_at_the_root_is_named_by_its_key() {
        let mut info = Value::dict();
        let mut file_tree = Value::dict();
        file_tree.insert("movie.mkv", file_node(&data(100, 3)));
        info.insert("file tree", file_tree);
        info.insert("meta version", 2);
        info.insert("name", "movie.mkv");
        info.insert("piece length", PIECE as i64);
        let mut top = Value::dict();
        top.insert("info", info);
        let m = Metainfo::from_bytes(&top.to_bytes()).unwrap();
        assert!(!m.info.multi_file);
        assert_eq!(m.info.files[0].display_path(), "movie.mkv");
    }

    #[test]
    fn bad_v2_torrents_are_clear_errors() {
        let big = data(3 * PIECE, 4);
        let files: &[(&str, &[u8])] = &[("big", &big)];
        let err = |bytes: Vec<u8>| Metainfo::from_bytes(&bytes).unwrap_err();
        // A layer that is not the root's.
        assert!(matches!(
            err(torrent(files, |_| {}, |l| l[0].1[40] ^= 1)),
            MetainfoError::BadPieceLayer(_)
        ));
        // A layer one hash short.
        assert!(matches!(
            err(torrent(files, |_| {}, |l| l[0].1.truncate(64))),
            MetainfoError::BadPieceLayer(_)
        ));
        assert_eq!(
            err(torrent(files, |_| {}, |l| l.clear())),
            MetainfoError::Missing("piece layers")
        );
        assert_eq!(
            err(torrent(files, |i| i.insert("meta version", 3), |_| {})),
            MetainfoError::UnsupportedMetaVersion(3)
        );
        assert_eq!(
            err(torrent(
                files,
                |i| i.insert("piece length", 3 * BLOCK as i64),
                |_| {}
            )),
            MetainfoError::BadPieceLength(3 * BLOCK as i64)
        );
        // The root of the tree may not be a file.
        let mut root_file = Value::dict();
        root_file.insert("", {
            let mut p = Value::dict();
            p.insert("length", 5);
            p
        });
        assert_eq!(
            err(torrent(files, |i| i.insert("file tree", root_file), |_| {})),
            MetainfoError::BadFileTree
        );
        // A file without its root.
        let mut no_root = Value::dict();
        no_root.insert("f", {
            let mut leaf = Value::dict();
            let mut p = Value::dict();
            p.insert("length", 5);
            leaf.insert("", p);
            leaf
        });
        assert_eq!(
            err(torrent(files, |i| i.insert("file tree", no_root), |_| {})),
            MetainfoError::Missing("pieces root")
        );
    }

    #[test]
    fn hostile_file_trees_cannot_escape_or_nest_forever() {
        let mut deep = file_node(&data(10, 5));
        for _ in 0..200 {
            let mut dir = Value::dict();
            dir.insert("x", deep);
            deep = dir;
        }
        let bytes = torrent(&[], |i| i.insert("file tree", deep), |_| {});
        // The decoder's own depth limit or the tree's: either way an error, no overflow.
        assert!(Metainfo::from_bytes(&bytes).is_err());

        let mut tree = Value::dict();
        tree.insert("..", {
            let mut up = Value::dict();
            up.insert("passwd", file_node(&data(10, 6)));
            up
        });
        let m =
            Metainfo::from_bytes(&torrent(&[], |i| i.insert("file tree", tree), |_| {})).unwrap();
        assert_eq!(m.info.files[0].display_path(), "d/passwd");
    }

    /// libtorrent writes a link's entry with `attr` and `symlink path` but no `length`.
    #[test]
    fn a_symlink_entry_needs_no_length() {
        let with = |name: &str, leaf: Value| {
            let mut tree = Value::dict();
            tree.insert("file", file_node(&data(3 * BLOCK, 3)));
            tree.insert(name, leaf);
            torrent(&[], |i| i.insert("file tree", tree), |_| {})
        };
        let mut props = Value::dict();
        props.insert("attr", "l");
        props.insert("symlink path", Value::List(vec!["file".into()]));
        let mut link = Value::dict();
        link.insert("", props);
        let m = Metainfo::from_bytes(&with("link", link)).unwrap();
        let link = m.info.files.iter().find(|f| f.display_path() == "d/link");
        let link = link.expect("the link is listed");
        assert_eq!(link.length, 0);
        assert_eq!(link.symlink_target, Some(vec!["file".to_owned()]));
        // Any other entry still needs its length.
        let mut empty = Value::dict();
        empty.insert("", Value::dict());
        let err = Metainfo::from_bytes(&with("x", empty)).unwrap_err();
        assert_eq!(err, MetainfoError::Missing("length"));
    }
}
