//! Resume state: which pieces are verified, saved so that a restart need not recheck,
//! and the peers we knew, so that it finds them again without a tracker.
//!
//! The state is trusted only while the files are exactly as they were when it was saved
//! (same size and modification time for every file); anything else, including a crash
//! after more data was written, means a full recheck, never blind trust. It is written
//! after the data it vouches for is durable, to a temporary file that is fsynced and then
//! renamed over the old one, so a crash at any moment leaves the old state or the new
//! one, never a torn mix.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use shoal_bencode::{decode, Limits, Value};
use shoal_core::{compact, Bitfield, InfoHash};

use crate::{FileLayout, StorageError, TorrentFiles};

/// Size and modification time (ns) of each file, or `None` when it does not exist; of
/// a symbolic link (BEP 47) itself, not of what it points to.
fn file_stats(layout: &FileLayout) -> Vec<Option<(u64, i64)>> {
    layout
        .files()
        .iter()
        .map(|f| {
            let meta = match f.symlink {
                Some(_) => std::fs::symlink_metadata(&f.path),
                None => std::fs::metadata(&f.path),
            };
            let meta = meta.ok()?;
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

/// Peers kept in the resume state, at most.
pub const MAX_PEERS: usize = 200;

/// Syncs the data, then atomically replaces the resume file. `peers` (at most
/// [`MAX_PEERS`] are kept) are listen addresses worth dialling after a restart.
pub fn save(
    path: &Path,
    info_hash: &InfoHash,
    files: &TorrentFiles,
    have: &Bitfield,
    peers: &[SocketAddr],
) -> Result<(), StorageError> {
    files.sync()?;
    let mut state = Value::dict();
    state.insert("info-hash", info_hash.0.to_vec());
    state.insert("pieces", have.as_bytes().to_vec());
    state.insert("files", stats_value(&file_stats(files.layout())));
    let peers = &peers[..peers.len().min(MAX_PEERS)];
    // libtorrent's and Transmission's keys for the same.
    state.insert("peers", compact::encode(peers, true));
    state.insert("peers6", compact::encode(peers, false));
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

/// Takes the resume state at `path` back (before a recheck): none there already is
/// fine, but one that cannot be removed is an error, for it would still vouch.
pub fn forget(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StorageError::io(path, e)),
        _ => Ok(()),
    }
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

/// The peers recorded at `path` for this torrent (none if there is no record). Unlike
/// the pieces they need no unchanged files: a wrong address only costs a failed dial.
pub fn load_peers(path: &Path, info_hash: &InfoHash) -> Vec<SocketAddr> {
    let Some(bytes) = std::fs::read(path).ok() else {
        return Vec::new();
    };
    let Ok(doc) = decode(&bytes, Limits::default()) else {
        return Vec::new();
    };
    let Some(state) = doc.root().as_dict() else {
        return Vec::new();
    };
    if state.get(b"info-hash").and_then(|n| n.as_bytes()) != Some(&info_hash.0[..]) {
        return Vec::new();
    }
    let list = |key: &[u8], width| {
        let bytes = state
            .get(key)
            .and_then(|n| n.as_bytes())
            .unwrap_or_default();
        compact::peers(bytes, width).collect::<Vec<_>>()
    };
    let mut peers = list(b"peers", compact::V4_LEN);
    peers.extend(list(b"peers6", compact::V6_LEN));
    peers.truncate(MAX_PEERS);
    peers
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
        let peers: Vec<SocketAddr> = vec![
            "10.0.0.1:6881".parse().unwrap(),
            "[2001:db8::1]:1".parse().unwrap(),
        ];
        save(&path, &hash, &files, &have, &peers).unwrap();
        assert_eq!(load(&path, &hash, files.layout()), Some(have.clone()));
        assert_eq!(load_peers(&path, &hash), peers);
        assert!(load_peers(&path, &InfoHash([4; 20])).is_empty());
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
        assert_eq!(load_peers(&path, &hash), peers, "still worth dialling");
        std::fs::write(&path, b"garbage").unwrap();
        assert_eq!(load(&path, &hash, files.layout()), None);
        assert!(load_peers(&path, &hash).is_empty());
    }
}
