//! Turning a file or a folder into a new torrent.
//!
//! Files are listed in byte-wise order of their full relative paths (the order mktorrent
//! uses, so both give the same info-hash), empty files included. Symbolic links are never
//! followed: with [`CreateOptions::attributes`] a link to something inside the folder is
//! recorded as a link (BEP 47), its target relative to the torrent's folder; any other
//! link, and special files, are skipped and reported.

use std::ops::ControlFlow;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use std::collections::BTreeMap;

use shoal_core::{auto_piece_length, merkle, TorrentBuilder, TorrentFormat, MAX_PIECES};
use shoal_hash::PieceDigest;

use crate::{hash_pieces, FileLayout, Hashing, StorageError};

/// A file or folder ready to be hashed.
#[derive(Debug, Clone)]
pub struct Scanned {
    /// The torrent's name: the file's or the folder's own name.
    pub name: Vec<u8>,
    /// True when the path was a single file.
    pub single_file: bool,
    /// Files in torrent order: path components below the folder, path on disk, length.
    pub files: Vec<(Vec<Vec<u8>>, PathBuf, u64)>,
    /// Symbolic links to something inside the folder.
    pub links: Vec<ScannedLink>,
    pub total_length: u64,
    /// What was left out, and why.
    pub skipped: Vec<Skipped>,
}

/// A symbolic link found in the folder, pointing inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedLink {
    /// Path components below the folder.
    pub components: Vec<Vec<u8>>,
    /// The link's path on disk.
    pub path: PathBuf,
    /// What it points at, as path components below the folder (BEP 47's `symlink path`).
    pub target: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// `None` picks one with [`auto_piece_length`].
    pub piece_length: Option<u32>,
    /// Hashing threads; 0 means one per core.
    pub threads: usize,
    pub format: TorrentFormat,
    /// Record which files are executable (BEP 47 `attr: x`), as libtorrent does; off,
    /// the torrent has mktorrent's info-hash.
    pub attributes: bool,
}

/// Lists what a torrent of `path` would contain.
pub fn scan(path: &Path) -> Result<Scanned, StorageError> {
    let meta = std::fs::metadata(path).map_err(|e| StorageError::io(path, e))?;
    // The name of "." or "dir/.." is that of the folder it resolves to.
    let resolved = std::fs::canonicalize(path).map_err(|e| StorageError::io(path, e))?;
    let name = resolved
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .ok_or_else(|| StorageError::NoFiles(path.into()))?;
    let mut skipped = Vec::new();
    let mut files = Vec::new();
    let mut links = Vec::new();
    if meta.is_file() {
        files.push((Vec::new(), path.to_path_buf(), meta.len()));
    } else if meta.is_dir() {
        let mut stack = vec![(path.to_path_buf(), Vec::<Vec<u8>>::new())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| StorageError::io(&dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| StorageError::io(&dir, e))?;
                let full = entry.path();
                let kind = entry.file_type().map_err(|e| StorageError::io(&full, e))?;
                let mut components = rel.clone();
                components.push(entry.file_name().as_bytes().to_vec());
                if kind.is_dir() {
                    stack.push((full, components));
                } else if kind.is_file() {
                    let length = entry
                        .metadata()
                        .map_err(|e| StorageError::io(&full, e))?
                        .len();
                    files.push((components, full, length));
                } else if kind.is_symlink() {
                    let target =
                        std::fs::read_link(&full).map_err(|e| StorageError::io(&full, e))?;
                    match link_target(&rel, &target) {
                        Some(target) => links.push(ScannedLink {
                            components,
                            path: full,
                            target,
                        }),
                        None => skipped.push(Skipped {
                            path: full,
                            reason: "symbolic link out of the folder (not followed)",
                        }),
                    }
                } else {
                    skipped.push(Skipped {
                        path: full,
                        reason: "not a regular file",
                    });
                }
            }
        }
        files.sort_by_cached_key(|f| joined(&f.0));
        links.sort_by_cached_key(|l| joined(&l.components));
    } else {
        return Err(StorageError::NoFiles(path.into()));
    }
    if files.is_empty() {
        return Err(StorageError::NoFiles(path.into()));
    }
    let total_length = files.iter().map(|f| f.2).sum();
    if total_length == 0 {
        return Err(StorageError::AllEmpty(path.into()));
    }
    Ok(Scanned {
        name,
        single_file: meta.is_file(),
        files,
        links,
        total_length,
        skipped,
    })
}

/// Where a link in the folder at `dir` (components below the torrent's folder) that reads
/// `target` points, as components below the torrent's folder: `None` when that is not
/// inside it (an absolute target, one that climbs out, or the folder itself).
fn link_target(dir: &[Vec<u8>], target: &Path) -> Option<Vec<Vec<u8>>> {
    use std::path::Component;
    let mut resolved = dir.to_vec();
    for component in target.components() {
        match component {
            Component::Normal(name) => resolved.push(name.as_bytes().to_vec()),
            Component::CurDir => {}
            Component::ParentDir => {
                resolved.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!resolved.is_empty()).then_some(resolved)
}

/// A relative path as one byte string with `/` separators: the sort key.
fn joined(components: &[Vec<u8>]) -> Vec<u8> {
    components.join(&b'/')
}

/// Checks a piece length given by the user: a power of two from 16 KiB to 256 MiB.
pub fn check_piece_length(length: u64) -> Result<u32, StorageError> {
    if length.is_power_of_two() && (16 * 1024..=256 * 1024 * 1024).contains(&length) {
        Ok(length as u32)
    } else {
        Err(StorageError::BadPieceLength(length))
    }
}

/// Hashes the scanned content and returns a builder with the name, files, piece length
/// and piece hashes set; the caller adds trackers and the other optional fields.
/// `progress` counts the bytes hashed so far.
pub fn create(
    scanned: &Scanned,
    options: &CreateOptions,
    progress: &AtomicU64,
) -> Result<TorrentBuilder, StorageError> {
    let piece_length = match options.piece_length {
        Some(length) => check_piece_length(u64::from(length))?,
        None => auto_piece_length(scanned.total_length),
    };
    let root = scanned.files[0].1.clone();
    let format = options.format;
    let piece = u64::from(piece_length);
    // The files, and the links (which hold no bytes) among them when attributes are
    // recorded.
    let mut files: Vec<Entry> = scanned
        .files
        .iter()
        .map(|(rel, path, length)| Entry {
            rel: rel.clone(),
            path: path.clone(),
            length: *length,
            link: None,
        })
        .collect();
    if options.attributes {
        files.extend(scanned.links.iter().map(|link| Entry {
            rel: link.components.clone(),
            path: link.path.clone(),
            length: 0,
            link: Some(link.target.clone()),
        }));
    }
    // v1 lists files by their joined paths (mktorrent's order), v2 in the file tree's
    // order: by path, a component at a time.
    match format {
        TorrentFormat::V1 => files.sort_by_cached_key(|f| joined(&f.rel)),
        _ => files.sort_by(|a, b| a.rel.cmp(&b.rel)),
    }
    // A hybrid's v1 half aligns each file to a piece boundary with padding files (a
    // single file needs none); v2 pieces never span files either.
    let padded = format != TorrentFormat::V1 && !scanned.single_file;
    let mut entries = Vec::new();
    for Entry { path, length, .. } in &files {
        entries.push((path.clone(), *length, false));
        let gap = (piece - length % piece) % piece;
        if padded && gap > 0 {
            entries.push((PathBuf::new(), gap, true));
        }
    }
    let layout = FileLayout::new(entries, piece_length).hashing(match format {
        TorrentFormat::V1 => Hashing::Sha1,
        TorrentFormat::V2 => Hashing::Merkle,
        TorrentFormat::Hybrid => Hashing::Both,
    });
    if layout.piece_count() > MAX_PIECES {
        return Err(StorageError::TooManyPieces(root));
    }
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let pieces = Mutex::new(vec![0u8; layout.piece_count() * 20]);
    let piece_roots = Mutex::new(vec![[0u8; 32]; layout.piece_count()]);
    let failure = Mutex::new(None);
    hash_pieces(&layout, threads, |index, result| match result {
        Ok(hash) => {
            let (sha1, merkle_root) = match hash {
                PieceDigest::Sha1(sha1) => (Some(sha1), None),
                PieceDigest::Merkle(root) => (None, Some(root)),
                PieceDigest::Hybrid(sha1, root) => (Some(sha1), Some(root)),
            };
            if let Some(sha1) = sha1 {
                pieces.lock().expect("no panics while held")[index * 20..index * 20 + 20]
                    .copy_from_slice(&sha1);
            }
            if let Some(merkle_root) = merkle_root {
                piece_roots.lock().expect("no panics while held")[index] = merkle_root;
            }
            progress.fetch_add(layout.piece_size(index), Ordering::Relaxed);
            ControlFlow::Continue(())
        }
        Err(e) => {
            failure
                .lock()
                .expect("no panics while held")
                .get_or_insert(e);
            ControlFlow::Break(())
        }
    });
    if let Some(e) = failure.into_inner().expect("workers are done") {
        return Err(e);
    }
    // A file that grew while we hashed would not be covered by the torrent.
    for (_, path, length) in &scanned.files {
        let now = std::fs::metadata(path)
            .map_err(|e| StorageError::io(path, e))?
            .len();
        if now != *length {
            return Err(StorageError::Changed {
                path: path.clone(),
                expected: *length,
            });
        }
    }
    // BEP 47 `x`: the owner may run it, as libtorrent reads a file's mode.
    let executable = match options.attributes {
        true => files
            .iter()
            .map(|Entry { path, link, .. }| {
                if link.is_some() {
                    return Ok(false);
                }
                std::fs::metadata(path)
                    .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o100 != 0)
                    .map_err(|e| StorageError::io(path, e))
            })
            .collect::<Result<_, _>>()?,
        false => Vec::new(),
    };
    let (roots, piece_layers) = match format {
        TorrentFormat::V1 => (Vec::new(), BTreeMap::new()),
        _ => file_trees(
            &layout,
            &piece_roots.into_inner().expect("workers are done"),
        ),
    };
    Ok(TorrentBuilder {
        name: scanned.name.clone(),
        files: (!scanned.single_file)
            .then(|| files.iter().map(|f| (f.rel.clone(), f.length)).collect()),
        length: scanned.total_length,
        piece_length,
        pieces: pieces.into_inner().expect("workers are done"),
        format,
        roots,
        piece_layers,
        executable,
        symlinks: match scanned.links.is_empty() || !options.attributes {
            true => Vec::new(),
            false => files.into_iter().map(|f| f.link).collect(),
        },
        ..Default::default()
    })
}

/// One entry of a new torrent's file list.
struct Entry {
    /// Path components below the folder.
    rel: Vec<Vec<u8>>,
    path: PathBuf,
    length: u64,
    /// A link's target (components below the folder).
    link: Option<Vec<Vec<u8>>>,
}

/// Each real file's merkle root (`None` when empty), in layout order, and the piece
/// layers of those longer than a piece, from the merkle roots of the layout's pieces.
type FileTrees = (Vec<Option<merkle::Hash>>, BTreeMap<merkle::Hash, Vec<u8>>);

fn file_trees(layout: &FileLayout, piece_roots: &[merkle::Hash]) -> FileTrees {
    let piece = layout.piece_length();
    let height = (piece / merkle::BLOCK as u64).trailing_zeros();
    let mut roots = Vec::new();
    let mut layers = BTreeMap::new();
    for file in layout.files().iter().filter(|f| !f.padding) {
        if file.length == 0 {
            roots.push(None);
            continue;
        }
        let first = (file.offset / piece) as usize;
        let count = file.length.div_ceil(piece) as usize;
        let layer = &piece_roots[first..first + count];
        if count == 1 {
            // A file of at most one piece: its piece's tree is the file's whole tree.
            roots.push(Some(layer[0]));
        } else {
            let root = merkle::root(layer, count.next_power_of_two(), height);
            layers.insert(root, layer.concat());
            roots.push(Some(root));
        }
    }
    (roots, layers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::Metainfo;

    #[test]
    fn folders_are_sorted_bytewise_with_empty_files_and_no_symlinks_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("Content");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a-c"), b"1").unwrap();
        std::fs::write(root.join("a/b/Z"), b"22").unwrap();
        std::fs::write(root.join("a/b/y"), b"").unwrap();
        std::fs::write(root.join("B"), b"333").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        std::os::unix::fs::symlink("../B", root.join("a/inside")).unwrap();
        let scanned = scan(&root).unwrap();
        let names: Vec<String> = scanned
            .files
            .iter()
            .map(|f| String::from_utf8(joined(&f.0)).unwrap())
            .collect();
        // '-' (0x2d) sorts before '/' (0x2f): full-path order, as mktorrent.
        assert_eq!(names, ["B", "a-c", "a/b/Z", "a/b/y"]);
        assert_eq!(
            scanned.skipped,
            [Skipped {
                path: root.join("link"),
                reason: "symbolic link out of the folder (not followed)"
            }]
        );
        // Without attributes a link inside is left out too.
        assert_eq!(scanned.links.len(), 1);
        assert_eq!(scanned.name, b"Content");

        let progress = AtomicU64::new(0);
        let builder = create(
            &scanned,
            &CreateOptions {
                piece_length: Some(16384),
                threads: 2,
                format: TorrentFormat::V1,
                attributes: false,
            },
            &progress,
        )
        .unwrap();
        assert_eq!(progress.into_inner(), 6);
        let m = Metainfo::from_bytes(&builder.to_bytes()).unwrap();
        assert_eq!(m.info.files.len(), 4);
        assert_eq!(m.info.files[3].display_path(), "Content/a/b/y");
    }

    #[test]
    fn v2_and_hybrid_torrents_check_out_against_their_own_data() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("Content");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        let data = |len: usize, seed: u8| -> Vec<u8> {
            (0..len)
                .map(|i| (i as u8).wrapping_mul(seed) ^ seed)
                .collect()
        };
        std::fs::write(root.join("a-c"), data(70_000, 3)).unwrap();
        std::fs::write(root.join("a/b/Z"), data(16_384 * 2, 5)).unwrap();
        std::fs::write(root.join("a/b/y"), b"").unwrap();
        std::fs::write(root.join("a/x"), data(10, 7)).unwrap();
        let scanned = scan(&root).unwrap();
        for format in [TorrentFormat::V2, TorrentFormat::Hybrid] {
            let options = CreateOptions {
                piece_length: Some(32_768),
                threads: 2,
                format,
                attributes: false,
            };
            let builder = create(&scanned, &options, &AtomicU64::new(0)).unwrap();
            // Parsing checks every piece layer against its root.
            let m = Metainfo::from_bytes(&builder.to_bytes()).unwrap();
            let real: Vec<_> = m
                .info
                .files
                .iter()
                .filter(|f| !f.attr.padding)
                .map(|f| f.display_path())
                .collect();
            // The file tree's order: a folder "a" before the name "a-c".
            assert_eq!(
                real,
                [
                    "Content/a/b/Z",
                    "Content/a/b/y",
                    "Content/a/x",
                    "Content/a-c"
                ],
                "{format:?}"
            );
            let layout = FileLayout::for_torrent(&m.info, dir.path());
            let have = crate::verify(&layout, &m.info, 2, &AtomicU64::new(0));
            assert!(have.all(), "{format:?}: every piece checks out");
            // A hybrid is in two swarms: its SHA-1's and its cut SHA-256's.
            let v2 = &m.info_hash_v2.expect("a v2 hash")[..20];
            let hashes = m.swarm_hashes();
            let swarms: Vec<&[u8]> = hashes.iter().map(|h| &h.0[..]).collect();
            match format {
                TorrentFormat::Hybrid => assert_eq!(swarms, [&m.info_hash.0[..], v2]),
                _ => assert_eq!(swarms, [v2]),
            }
        }
    }

    /// Links inside the folder become BEP 47 links with `--attributes`, their targets
    /// from the torrent's folder; links that leave it are skipped.
    #[test]
    fn links_inside_the_folder_are_recorded_as_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pkg");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("lib")).unwrap();
        std::fs::write(root.join("lib/data"), vec![7u8; 40_000]).unwrap();
        std::fs::write(root.join("run.sh"), b"#!/bin/sh\n").unwrap();
        let link = |target: &str, at: &str| std::os::unix::fs::symlink(target, root.join(at));
        link("../run.sh", "bin/run").unwrap();
        link("./lib/./data", "data").unwrap();
        link("lib", "libdir").unwrap();
        link("../lib/missing", "bin/dangling").unwrap();
        link("../../elsewhere", "bin/out").unwrap();
        link("..", "bin/up").unwrap();
        link("/etc/passwd", "abs").unwrap();
        let scanned = scan(&root).unwrap();
        let mut skipped: Vec<_> = scanned.skipped.iter().map(|s| s.path.clone()).collect();
        skipped.sort();
        assert_eq!(
            skipped,
            [root.join("abs"), root.join("bin/out"), root.join("bin/up")]
        );
        for format in [TorrentFormat::V1, TorrentFormat::V2, TorrentFormat::Hybrid] {
            let options = CreateOptions {
                piece_length: Some(16_384),
                threads: 1,
                format,
                attributes: true,
            };
            let builder = create(&scanned, &options, &AtomicU64::new(0)).unwrap();
            let m = Metainfo::from_bytes(&builder.to_bytes()).unwrap();
            let links: Vec<(String, String)> = m
                .info
                .files
                .iter()
                .filter_map(|f| {
                    let target = f.symlink_target.as_ref()?.join("/");
                    assert_eq!(f.length, 0);
                    Some((f.display_path(), target))
                })
                .collect();
            let expected = [
                ("pkg/bin/dangling", "lib/missing"),
                ("pkg/bin/run", "run.sh"),
                ("pkg/data", "lib/data"),
                ("pkg/libdir", "lib"),
            ];
            let expected: Vec<_> = expected
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            assert_eq!(links, expected, "{format:?}");
            // The data still checks out: links hold no bytes and need no padding.
            let layout = FileLayout::for_torrent(&m.info, dir.path());
            let have = crate::verify(&layout, &m.info, 1, &AtomicU64::new(0));
            assert!(have.all(), "{format:?}");
        }
        // Without attributes the torrent is the one without the links.
        let options = CreateOptions {
            piece_length: Some(16_384),
            threads: 1,
            ..Default::default()
        };
        let builder = create(&scanned, &options, &AtomicU64::new(0)).unwrap();
        let m = Metainfo::from_bytes(&builder.to_bytes()).unwrap();
        assert_eq!(m.info.files.len(), 2);
    }

    #[test]
    fn errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(scan(dir.path()), Err(StorageError::NoFiles(_))));
        std::fs::write(dir.path().join("e"), b"").unwrap();
        assert!(matches!(scan(dir.path()), Err(StorageError::AllEmpty(_))));
        let err = scan(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(
            err.contains("nope") && err.contains("No such file"),
            "{err}"
        );
        assert!(check_piece_length(262_144).is_ok());
        assert!(check_piece_length(100_000).is_err());
        assert!(check_piece_length(8192).is_err());
    }
}
