//! `shoal daemon --watch DIR`: .torrent files (and .magnet files holding a link) dropped
//! into a folder are added, as Transmission's watch-dir and qBittorrent's watched
//! folders add them. A file is taken once it has stopped changing (a copy in progress
//! is not read half-written), then renamed `NAME.added`, or `NAME.invalid` if it is not
//! a torrent, so that it is never taken twice. A file that cannot be renamed is left
//! alone while it stays as it is; one that could not be read or added for a reason that
//! may pass (the session full) is tried again a while later.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use shoal_core::{Magnet, Metainfo, MAX_TORRENT_SIZE};

use super::session::{Adding, Session, SessionError};

/// How often the folder is looked at.
const SCAN_EVERY: Duration = Duration::from_secs(1);

/// Files the folder may hold that are looked at in one scan; more wait for the next.
const MAX_PER_SCAN: usize = 1000;

/// How long a file that could not be added for a reason that may pass waits.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// A file's size and modification time: unchanged between two scans, it is complete.
type Seen = (u64, Option<SystemTime>);

/// What came of taking a file.
enum Taken {
    /// Renamed: gone from the watch.
    Renamed,
    /// Taken, but it could not be renamed: left alone while it stays as it is.
    Kept,
    /// Not added for a reason that may pass: tried again after [`RETRY_AFTER`].
    Later,
}

/// Watches `dir` for as long as the daemon runs.
pub async fn watch(session: Arc<Session>, dir: PathBuf, json: bool) {
    // Files seen once, waiting to be seen the same again.
    let mut settling: HashMap<PathBuf, Seen> = HashMap::new();
    // Files taken that are still there, as they were, and when to try them again.
    let mut held: HashMap<PathBuf, (Seen, Option<Instant>)> = HashMap::new();
    let mut ticker = tokio::time::interval(SCAN_EVERY);
    loop {
        ticker.tick().await;
        let found = match candidates(&dir) {
            Ok(found) => found,
            Err(e) => {
                // A folder removed or unmounted may come back.
                let reason = format!("cannot read the folder: {e}");
                say(json, "warning", &dir, &reason);
                continue;
            }
        };
        let mut still_held = HashMap::new();
        let mut next = HashMap::new();
        for (path, now) in found {
            if let Some((seen, retry)) = held.remove(&path) {
                if seen == now && retry.is_none_or(|at| Instant::now() < at) {
                    still_held.insert(path, (seen, retry));
                    continue;
                }
            }
            if settling.get(&path) != Some(&now) {
                next.insert(path, now);
                continue;
            }
            let retry = match take(&session, &path, json) {
                Taken::Renamed => continue,
                Taken::Kept => None,
                Taken::Later => Some(Instant::now() + RETRY_AFTER),
            };
            still_held.insert(path, (now, retry));
        }
        (settling, held) = (next, still_held);
    }
}

/// The .torrent and .magnet files in `dir`, with their size and modification time.
fn candidates(dir: &Path) -> std::io::Result<Vec<(PathBuf, Seen)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        let wanted = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("torrent" | "magnet")
        );
        let Ok(meta) = entry.metadata() else { continue };
        if wanted && meta.is_file() {
            found.push((path, (meta.len(), meta.modified().ok())));
            if found.len() == MAX_PER_SCAN {
                break;
            }
        }
    }
    Ok(found)
}

/// Adds the torrent or link in `path` and renames the file for what came of it.
fn take(session: &Arc<Session>, path: &Path, json: bool) -> Taken {
    let added = match read(path) {
        Ok(Source::Torrent(metainfo)) => session.add(metainfo, Adding::default()),
        Ok(Source::Magnet(magnet)) => session.add_magnet(magnet, Adding::default()),
        Err(Unread::Invalid(reason)) => {
            say(json, "invalid", path, &reason);
            return mark(path, "invalid", json);
        }
        Err(Unread::Io(e)) => {
            say(json, "warning", path, &format!("cannot read: {e}"));
            return Taken::Later;
        }
    };
    match added {
        // Already in the session: taken all the same.
        Ok(_) | Err(SessionError::Duplicate(_)) => mark(path, "added", json),
        Err(SessionError::Invalid(reason)) => {
            say(json, "invalid", path, &reason);
            mark(path, "invalid", json)
        }
        Err(e) => {
            say(json, "warning", path, &format!("not added yet: {e}"));
            Taken::Later
        }
    }
}

/// Why a watched file gave no torrent.
enum Unread {
    /// It could not be read (it may be readable later).
    Io(std::io::Error),
    /// It holds no torrent.
    Invalid(String),
}

enum Source {
    Torrent(Metainfo),
    Magnet(Magnet),
}

/// What a watched file holds, or why it gave none.
fn read(path: &Path) -> Result<Source, Unread> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(Unread::Io)?;
    let mut bytes = Vec::new();
    file.take(MAX_TORRENT_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(Unread::Io)?;
    let invalid = |reason: String| Unread::Invalid(reason);
    if bytes.len() > MAX_TORRENT_SIZE {
        return Err(invalid(format!("larger than {MAX_TORRENT_SIZE} bytes")));
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("magnet") => {
            let text = String::from_utf8(bytes).map_err(|_| invalid("not text".into()))?;
            text.trim()
                .parse::<Magnet>()
                .map(Source::Magnet)
                .map_err(|e| invalid(format!("not a magnet link: {e}")))
        }
        _ => Metainfo::from_bytes(&bytes)
            .map(Source::Torrent)
            .map_err(|e| invalid(format!("not a valid torrent: {e}"))),
    }
}

/// Renames `path` to `path.SUFFIX`, so that it is not taken again.
fn mark(path: &Path, suffix: &str, json: bool) -> Taken {
    let mut marked = path.as_os_str().to_owned();
    marked.push(format!(".{suffix}"));
    match std::fs::rename(path, &marked) {
        Ok(()) => Taken::Renamed,
        Err(e) => {
            say(json, "warning", path, &format!("cannot rename: {e}"));
            Taken::Kept
        }
    }
}

fn say(json: bool, event: &str, path: &Path, text: &str) {
    let shown = path.display();
    match json {
        true => crate::commands::line(
            json!({"event": format!("watch_{event}"), "path": shown.to_string(), "reason": text}),
        ),
        false => eprintln!("shoal: {shown}: {text}"),
    }
}
