//! `shoal daemon --watch DIR`: .torrent files (and .magnet files holding a link) dropped
//! into a folder are added, as Transmission's watch-dir and qBittorrent's watched
//! folders add them. A file is taken once it has stopped changing (a copy in progress
//! is not read half-written), then renamed `NAME.added`, or `NAME.invalid` if it is not
//! a torrent, so that it is never taken twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;
use shoal_core::{Magnet, Metainfo, MAX_TORRENT_SIZE};

use super::session::{Adding, Session, SessionError};

/// How often the folder is looked at.
const SCAN_EVERY: Duration = Duration::from_secs(1);

/// Files the folder may hold that are looked at in one scan; more wait for the next.
const MAX_PER_SCAN: usize = 1000;

/// A file's size and modification time: unchanged between two scans, it is complete.
type Seen = (u64, Option<SystemTime>);

/// Watches `dir` for as long as the daemon runs.
pub async fn watch(session: Arc<Session>, dir: PathBuf, json: bool) {
    let mut seen: HashMap<PathBuf, Seen> = HashMap::new();
    let mut ticker = tokio::time::interval(SCAN_EVERY);
    loop {
        ticker.tick().await;
        let found = match candidates(&dir) {
            Ok(found) => found,
            Err(e) => {
                // A folder removed or unmounted may come back.
                say(
                    json,
                    "warning",
                    &dir,
                    &format!("cannot read the folder: {e}"),
                );
                continue;
            }
        };
        let mut next = HashMap::new();
        for (path, now) in found {
            if seen.get(&path) == Some(&now) {
                take(&session, &path, json);
            } else {
                next.insert(path, now);
            }
        }
        seen = next;
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

/// Adds the torrent or link in `path` and renames the file for what came of it; a
/// refusal that may pass (the session full, a disk error) leaves it for the next scan.
fn take(session: &Arc<Session>, path: &Path, json: bool) {
    let added = match read(path) {
        Ok(Source::Torrent(metainfo)) => session.add(metainfo, Adding::default()),
        Ok(Source::Magnet(magnet)) => session.add_magnet(magnet, Adding::default()),
        Err(reason) => {
            say(json, "invalid", path, &reason);
            return mark(path, "invalid", json);
        }
    };
    match added {
        // Already in the session: taken all the same.
        Ok(_) | Err(SessionError::Duplicate(_)) => mark(path, "added", json),
        Err(SessionError::Invalid(reason)) => {
            say(json, "invalid", path, &reason);
            mark(path, "invalid", json);
        }
        Err(e) => say(json, "warning", path, &format!("not added yet: {e}")),
    }
}

enum Source {
    Torrent(Metainfo),
    Magnet(Magnet),
}

/// What a watched file holds, or why it is no torrent.
fn read(path: &Path) -> Result<Source, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_TORRENT_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() > MAX_TORRENT_SIZE {
        return Err(format!("larger than {MAX_TORRENT_SIZE} bytes"));
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("magnet") => {
            let text = String::from_utf8(bytes).map_err(|_| "not text".to_string())?;
            let link = text.trim();
            link.parse::<Magnet>()
                .map(Source::Magnet)
                .map_err(|e| format!("not a magnet link: {e}"))
        }
        _ => Metainfo::from_bytes(&bytes)
            .map(Source::Torrent)
            .map_err(|e| format!("not a valid torrent: {e}")),
    }
}

/// Renames `path` to `path.SUFFIX`, so that it is not taken again.
fn mark(path: &Path, suffix: &str, json: bool) {
    let mut marked = path.as_os_str().to_owned();
    marked.push(format!(".{suffix}"));
    if let Err(e) = std::fs::rename(path, &marked) {
        say(json, "warning", path, &format!("cannot rename: {e}"));
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
