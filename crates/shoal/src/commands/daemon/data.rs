//! A torrent's files on disk as the daemon handles them whole: deleted with the torrent,
//! or moved to another folder (Transmission's set-location). Only the files the torrent
//! names are touched, and the folders of theirs that this leaves empty.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use shoal_core::Metainfo;
use shoal_storage::FileLayout;

/// Deletes the files of `metainfo` under `dir`, then the folders of a multi-file torrent
/// that this leaves empty. Nothing else in `dir` is touched.
pub fn delete_files(metainfo: &Metainfo, dir: &Path) {
    let layout = FileLayout::for_torrent(&metainfo.info, dir);
    let paths: Vec<PathBuf> = own_files(&layout).map(Path::to_path_buf).collect();
    for path in &paths {
        let _ = std::fs::remove_file(path);
    }
    remove_empty_folders(&paths, dir);
}

/// Moves the files of `metainfo` from under `from` to under `to` (renamed, or copied
/// and deleted across file systems, keeping their modification times, so that the
/// resume state still vouches for them). Files not there yet are skipped. A file in the
/// way at `to` stops the move, and what was moved goes back.
pub fn move_files(metainfo: &Metainfo, from: &Path, to: &Path) -> Result<()> {
    let (old, new) = (
        FileLayout::for_torrent(&metainfo.info, from),
        FileLayout::for_torrent(&metainfo.info, to),
    );
    let mut moved: Vec<(&Path, &Path)> = Vec::new();
    let result = own_files(&old)
        .zip(own_files(&new))
        .try_for_each(|(source, target)| {
            if std::fs::symlink_metadata(source).is_err() {
                return Ok(());
            }
            if std::fs::symlink_metadata(target).is_ok() {
                bail!("{}: already exists", target.display());
            }
            if let Some(folder) = target.parent() {
                std::fs::create_dir_all(folder)
                    .with_context(|| format!("{}: cannot create", folder.display()))?;
            }
            move_file(source, target)?;
            moved.push((source, target));
            Ok(())
        });
    if let Err(e) = result {
        for (source, target) in moved.iter().rev() {
            let _ = move_file(target, source);
        }
        let made: Vec<PathBuf> = moved.iter().map(|(_, t)| t.to_path_buf()).collect();
        remove_empty_folders(&made, to);
        return Err(e);
    }
    let left: Vec<PathBuf> = moved.iter().map(|(s, _)| s.to_path_buf()).collect();
    remove_empty_folders(&left, from);
    Ok(())
}

/// The torrent's own files (not its padding), where `layout` puts them.
fn own_files(layout: &FileLayout) -> impl Iterator<Item = &Path> {
    layout
        .files()
        .iter()
        .filter(|f| !f.padding)
        .map(|f| f.path.as_path())
}

fn move_file(source: &Path, target: &Path) -> Result<()> {
    match std::fs::rename(source, target) {
        Ok(()) => Ok(()),
        // Another file system: copied, with the time the resume state recorded.
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let modified = std::fs::metadata(source).and_then(|m| m.modified());
            std::fs::copy(source, target)
                .with_context(|| format!("{}: cannot copy", source.display()))?;
            if let Ok(modified) = modified {
                let copy = std::fs::File::options().write(true).open(target)?;
                copy.set_modified(modified)?;
            }
            std::fs::remove_file(source)
                .with_context(|| format!("{}: cannot remove", source.display()))
        }
        Err(e) => Err(e).with_context(|| format!("{}: cannot move", source.display())),
    }
}

/// Removes the folders under `dir` that held `paths` and are empty now, deepest first;
/// `dir` itself stays.
fn remove_empty_folders(paths: &[PathBuf], dir: &Path) {
    let mut folders = BTreeSet::new();
    for path in paths {
        let mut parent = path.parent();
        while let Some(folder) = parent.filter(|p| p.starts_with(dir) && *p != dir) {
            folders.insert(folder.to_path_buf());
            parent = folder.parent();
        }
    }
    for folder in folders.iter().rev() {
        let _ = std::fs::remove_dir(folder);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::commands::daemon::testing::torrent_of;

    /// A torrent `t` of the files `a` (5 bytes) and `b` (20 bytes).
    fn two_files() -> Metainfo {
        torrent_of(&[(5, "a"), (20, "b")])
    }

    #[test]
    fn a_move_goes_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        std::fs::create_dir_all(from.join("t")).unwrap();
        std::fs::write(from.join("t/a"), b"aaaaa").unwrap();
        std::fs::write(from.join("t/b"), b"b".repeat(20)).unwrap();
        std::fs::write(from.join("t/mine"), b"mine").unwrap();
        std::fs::create_dir_all(to.join("t")).unwrap();
        std::fs::write(to.join("t/b"), b"in the way").unwrap();
        let metainfo = two_files();

        let refused = move_files(&metainfo, &from, &to).unwrap_err();
        assert!(
            format!("{refused:#}").contains("already exists"),
            "{refused:#}"
        );
        assert_eq!(
            std::fs::read(from.join("t/a")).unwrap(),
            b"aaaaa",
            "moved back"
        );
        assert!(!to.join("t/a").exists());
        assert_eq!(std::fs::read(to.join("t/b")).unwrap(), b"in the way");

        std::fs::remove_file(to.join("t/b")).unwrap();
        move_files(&metainfo, &from, &to).unwrap();
        assert_eq!(std::fs::read(to.join("t/a")).unwrap(), b"aaaaa");
        assert_eq!(std::fs::read(to.join("t/b")).unwrap().len(), 20);
        assert!(!from.join("t/a").exists() && !from.join("t/b").exists());
        assert!(from.join("t/mine").is_file(), "not the torrent's: stays");

        // Deleting leaves what is not the torrent's, and the folder holding it.
        delete_files(&metainfo, &to);
        assert!(!to.join("t").exists(), "emptied, removed");
        assert!(to.is_dir());
    }
}
