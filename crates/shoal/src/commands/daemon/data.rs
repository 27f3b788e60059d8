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
/// resume state still vouches for them). Files not there yet are skipped. Anything at
/// one of the torrent's paths under `to` stops the move before it starts; a failure
/// midway puts back what was moved.
///
/// `resuming`: a move cut short (the daemon killed) is finished. What is already at
/// `to` without its source was moved; what is at both was being copied, and is copied
/// again (a source goes only once its copy is on disk).
pub fn move_files(metainfo: &Metainfo, from: &Path, to: &Path, resuming: bool) -> Result<()> {
    let (old, new) = (
        FileLayout::for_torrent(&metainfo.info, from),
        FileLayout::for_torrent(&metainfo.info, to),
    );
    let pairs: Vec<(&Path, &Path)> = own_files(&old).zip(own_files(&new)).collect();
    // Even where the torrent has nothing yet: it would take that file for its own.
    let taken = pairs
        .iter()
        .find(|(_, t)| std::fs::symlink_metadata(t).is_ok());
    if let (Some((_, taken)), false) = (taken, resuming) {
        bail!("{}: already exists", taken.display());
    }
    let mut moved: Vec<(&Path, &Path)> = Vec::new();
    let result = pairs.iter().try_for_each(|&(source, target)| {
        if std::fs::symlink_metadata(source).is_err() {
            return Ok(());
        }
        if resuming && std::fs::symlink_metadata(target).is_ok() {
            std::fs::remove_file(target)
                .with_context(|| format!("{}: cannot remove a half copy", target.display()))?;
        }
        if let Some(folder) = target.parent() {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("{}: cannot create", folder.display()))?;
        }
        move_file(source, target)?;
        moved.push((source, target));
        anyhow::Ok(())
    });
    if let Err(e) = result {
        let stuck: Vec<String> = moved
            .iter()
            .rev()
            .filter(|(source, target)| move_file(target, source).is_err())
            .map(|(_, target)| target.display().to_string())
            .collect();
        let made: Vec<PathBuf> = moved.iter().map(|(_, t)| t.to_path_buf()).collect();
        remove_empty_folders(&made, to);
        if !stuck.is_empty() {
            return Err(e.context(format!(
                "and these could not be moved back: {}",
                stuck.join(", ")
            )));
        }
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
        // Another file system: copied (a link as a link), then the source removed.
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let copied = copy_file(source, target);
            if copied.is_err() {
                let _ = std::fs::remove_file(target);
            }
            copied?;
            std::fs::remove_file(source)
                .with_context(|| format!("{}: cannot remove", source.display()))
        }
        Err(e) => Err(e).with_context(|| format!("{}: cannot move", source.display())),
    }
}

/// Copies a file with its modification time (what the resume state recorded), on disk
/// before the source goes: a crash must not leave a copy of the right size and time
/// that holds zeros, which the resume state would vouch for.
fn copy_file(source: &Path, target: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(source)
        .with_context(|| format!("{}: cannot read", source.display()))?;
    if meta.file_type().is_symlink() {
        let points_to = std::fs::read_link(source)?;
        std::os::unix::fs::symlink(&points_to, target)
            .with_context(|| format!("{}: cannot create", target.display()))?;
        return Ok(());
    }
    std::fs::copy(source, target).with_context(|| format!("{}: cannot copy", source.display()))?;
    let copy = std::fs::File::options().write(true).open(target)?;
    copy.set_modified(meta.modified()?)?;
    copy.sync_all()
        .with_context(|| format!("{}: cannot write", target.display()))?;
    if let Some(folder) = target.parent() {
        std::fs::File::open(folder)?.sync_all()?;
    }
    Ok(())
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

        let refused = move_files(&metainfo, &from, &to, false).unwrap_err();
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
        move_files(&metainfo, &from, &to, false).unwrap();
        assert_eq!(std::fs::read(to.join("t/a")).unwrap(), b"aaaaa");
        assert_eq!(std::fs::read(to.join("t/b")).unwrap().len(), 20);
        assert!(!from.join("t/a").exists() && !from.join("t/b").exists());
        assert!(from.join("t/mine").is_file(), "not the torrent's: stays");

        // Deleting leaves what is not the torrent's, and the folder holding it.
        delete_files(&metainfo, &to);
        assert!(!to.join("t").exists(), "emptied, removed");
        assert!(to.is_dir());
    }

    /// Across file systems (the test's folder, and one in /dev/shm, a memory file
    /// system): copied with its time, so the resume state still vouches for it.
    #[test]
    fn a_move_across_file_systems_keeps_times() {
        let shm = Path::new("/dev/shm");
        assert!(shm.is_dir(), "Linux has /dev/shm");
        let (here, there) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir_in(shm).unwrap(),
        );
        let from = here.path().to_path_buf();
        std::fs::create_dir_all(from.join("t")).unwrap();
        std::fs::write(from.join("t/a"), b"aaaaa").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30);
        let file = std::fs::File::options()
            .write(true)
            .open(from.join("t/a"))
            .unwrap();
        file.set_modified(old).unwrap();
        std::os::unix::fs::symlink("a", from.join("t/b")).unwrap();
        move_files(&two_files(), &from, there.path(), false).unwrap();
        let moved = there.path().join("t/a");
        assert_eq!(std::fs::read(&moved).unwrap(), b"aaaaa");
        assert_eq!(std::fs::metadata(&moved).unwrap().modified().unwrap(), old);
        let link = there.path().join("t/b");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("a"),
            "a link stays a link"
        );
        assert!(!from.join("t").exists());
    }

    /// A move cut short is finished: a file moved stays, a half copy is copied again.
    #[test]
    fn a_move_cut_short_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        std::fs::create_dir_all(from.join("t")).unwrap();
        std::fs::create_dir_all(to.join("t")).unwrap();
        std::fs::write(to.join("t/a"), b"aaaaa").unwrap(); // moved
        std::fs::write(from.join("t/b"), b"b".repeat(20)).unwrap();
        std::fs::write(to.join("t/b"), b"bbb").unwrap(); // a half copy
        move_files(&two_files(), &from, &to, true).unwrap();
        assert_eq!(std::fs::read(to.join("t/a")).unwrap(), b"aaaaa");
        assert_eq!(std::fs::read(to.join("t/b")).unwrap(), b"b".repeat(20));
        assert!(!from.join("t").exists());
    }
}
