//! Resume state: which pieces are verified, saved so that a restart need not recheck.
//!
//! The state is trusted only while the files are exactly as they were when it was saved
//! (same size and modification time for every file); anything else, including a crash
//! after more data was written, means a full recheck, never blind trust. It is written
//! after the data it vouches for is durable, to a temporary file that is fsynced and then
//! renamed over the old one, so a crash at any moment leaves the old state or the new
//! one, never a torn mix.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use shoal_bencode::{decode, Limits, Value};
use shoal_core::{Bitfield, InfoHash};

use crate::{FileLayout, StorageError, TorrentFiles};

/// Size and modification time (ns) of each file, or `None` when it does not exist.
fn file_stats(layout: &FileLayout) -> Vec<Option<(u64, i64)>> {
    layout
        .files()
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(&f.path).ok()?;
            let mtime = meta
                .modified()
                .ok()?
                .duration_since(UNIX_EPOCH)
                .ok()?
                .as_nanos() as i64;
            Some((meta.len(), mtime))
        })
        .collect()
}

fn stats_value(stats: &[Option<(u64, i64)>]) -> Value {
    Value::List(
        stats
            .iter()
            .map(|s| match s {
                Some((len, mtime)) => {
                    Value::List(vec![Value::Int(*len as i64), Value::Int(*mtime)])
                }
                None => Value::List(vec![]),
            })
            .collect(),
    )
}

/// Where the resume state of a torrent lives.
pub fn resume_path(state_dir: &Path, info_hash: &InfoHash) -> PathBuf {
    state_dir.join(format!("{}.resume", info_hash.to_hex()))
}

/// Syncs the data, then atomically replaces the resume file.
pub fn save(
    path: &Path,
    info_hash: &InfoHash,
    files: &TorrentFiles,
    have: &Bitfield,
) -> Result<(), StorageError> {
    files.sync()?;
    let mut state = Value::dict();
    state.insert("info-hash", info_hash.0.to_vec());
    state.insert("pieces", have.as_bytes().to_vec());
    state.insert("files", stats_value(&file_stats(files.layout())));
    let bytes = state.to_bytes();
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
    let tmp = path.with_extension("resume.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| StorageError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| StorageError::io(path, e))?;
    // The rename itself must be durable too.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(dir, e))?;
    Ok(())
}

/// The verified pieces recorded at `path`, if the record exists, is for this torrent,
/// and every file is unchanged since it was written.
pub fn load(path: &Path, info_hash: &InfoHash, layout: &FileLayout) -> Option<Bitfield> {
    let bytes = std::fs::read(path).ok()?;
    let doc = decode(&bytes, Limits::default()).ok()?;
    let state = doc.root().as_dict()?;
    if state.get(b"info-hash")?.as_bytes()? != info_hash.0 {
        return None;
    }
    let recorded = stats_value(&file_stats(layout)).to_bytes();
    if state.get(b"files")?.raw() != recorded.as_slice() {
        return None;
    }
    Bitfield::from_bytes(state.get(b"pieces")?.as_bytes()?, layout.piece_count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_only_while_files_are_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let data_path = dir.path().join("f");
        let files = TorrentFiles::new(
            dir.path(),
            FileLayout::new([(data_path.clone(), 40, false)], 16),
        );
        files.write(0, &[1; 40]).unwrap();
        let hash = InfoHash([3; 20]);
        let path = resume_path(&dir.path().join("state"), &hash);
        let mut have = Bitfield::new(3);
        have.set(1);
        save(&path, &hash, &files, &have).unwrap();
        assert_eq!(load(&path, &hash, files.layout()), Some(have.clone()));
        assert_eq!(
            load(&path, &InfoHash([4; 20]), files.layout()),
            None,
            "other torrent"
        );
        // Touch the file: the state is no longer trusted.
        std::thread::sleep(std::time::Duration::from_millis(20));
        files.write(0, &[2; 1]).unwrap();
        files.sync().unwrap();
        assert_eq!(load(&path, &hash, files.layout()), None);
        std::fs::write(&path, b"garbage").unwrap();
        assert_eq!(load(&path, &hash, files.layout()), None);
    }
}
