//! `shoal verify`: check a torrent's data on disk against its piece hashes, as
//! `aria2c --check-integrity`, Transmission's "verify local data" and `imdl torrent
//! verify` do, without joining the swarm.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::json;
use shoal_core::units::format_size;
use shoal_core::{Bitfield, Metainfo};
use shoal_storage::{FileLayout, LayoutFile};

use super::info::load_torrent;
use super::{hashing, print};

/// Check a torrent's files on disk against its piece hashes.
///
/// Hashes on all cores (SHA-1, or SHA-256 merkle roots for v2 torrents) and reports each
/// file, numbered as `shoal info` lists them: complete, incomplete (with how much of it
/// verifies), of the wrong size, or missing. Paths are read as `shoal get` writes them.
/// Exit code 0: every piece verifies; 3: some do not (run `shoal get` with the same
/// folder to fetch only those); 1: the torrent cannot be read.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The .torrent file.
    pub torrent: PathBuf,
    /// The folder that holds the torrent's file or folder (what `shoal get -o` and
    /// `shoal seed` take).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Print one JSON object: name, info_hash, piece_count, verified_pieces, complete,
    /// and files ([{index, path, size, on_disk (bytes, or null when missing),
    /// verified_bytes, status}]), status being complete, incomplete, wrong_size or
    /// missing.
    #[arg(long)]
    pub json: bool,
    /// Hashing threads [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
}

/// What became of one file of the torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Its size is right and every piece it is in verifies.
    Complete,
    /// Its size is right but some of its pieces do not verify (yet).
    Incomplete,
    /// It is there, longer or shorter than the torrent says.
    WrongSize,
    Missing,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Complete => "complete",
            Status::Incomplete => "incomplete",
            Status::WrongSize => "wrong_size",
            Status::Missing => "missing",
        }
    }
}

/// One file's report.
struct FileReport {
    /// Counted from 1 over the torrent's files without its padding, as `shoal info`.
    index: usize,
    path: PathBuf,
    size: u64,
    on_disk: Option<u64>,
    /// Bytes of the file inside pieces that verify.
    verified_bytes: u64,
    status: Status,
}

pub fn run(args: Args) -> Result<()> {
    let metainfo = load_torrent(&args.torrent)?;
    let layout = FileLayout::for_torrent(&metainfo.info, &args.dir);
    let threads = match args.threads.unwrap_or(0) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let have = hashing(layout.total_length(), |progress| {
        shoal_storage::verify(&layout, &metainfo.info, threads, progress)
    });
    let reports = file_reports(&metainfo, &layout, &have);
    if reports.iter().all(|r| r.status == Status::Missing) {
        // The usual slip: the torrent's own folder given instead of the one holding it.
        eprintln!(
            "shoal: no file of {} is in {}; give the folder that holds {}",
            metainfo.info.name,
            args.dir.display(),
            metainfo.info.name
        );
    }
    let complete = have.all();
    let text = if args.json {
        format!("{}\n", report_json(&metainfo, &have, &reports))
    } else {
        report_text(&have, &reports)
    };
    print(&text)?;
    if !complete {
        std::process::exit(3);
    }
    Ok(())
}

fn file_reports(metainfo: &Metainfo, layout: &FileLayout, have: &Bitfield) -> Vec<FileReport> {
    let piece_length = layout.piece_length();
    let entries = metainfo.info.files.iter().zip(layout.files());
    let files = entries.filter(|(entry, _)| !entry.attr.padding);
    files
        .enumerate()
        .map(|(i, (entry, file))| {
            let verified_bytes = verified_bytes(file, piece_length, have);
            let on_disk = match file.symlink {
                // A symbolic link (BEP 47) holds no bytes: there or not.
                Some(_) => std::fs::symlink_metadata(&file.path).ok().map(|_| 0),
                None => std::fs::metadata(&file.path)
                    .ok()
                    .filter(|m| m.is_file())
                    .map(|m| m.len()),
            };
            let status = match on_disk {
                None => Status::Missing,
                Some(len) if len != file.length => Status::WrongSize,
                Some(_) if verified_bytes == file.length => Status::Complete,
                Some(_) => Status::Incomplete,
            };
            FileReport {
                index: i + 1,
                path: entry.relative_path(),
                size: file.length,
                on_disk,
                verified_bytes,
                status,
            }
        })
        .collect()
}

/// Bytes of `file` that lie in pieces `have` holds.
fn verified_bytes(file: &LayoutFile, piece_length: u64, have: &Bitfield) -> u64 {
    if file.length == 0 {
        return 0;
    }
    let (start, end) = (file.offset, file.offset + file.length);
    let pieces = start / piece_length..=(end - 1) / piece_length;
    pieces
        .filter(|&piece| have.get(piece as usize))
        .map(|piece| {
            let (from, to) = (piece * piece_length, (piece + 1) * piece_length);
            to.min(end) - from.max(start)
        })
        .sum()
}

fn report_text(have: &Bitfield, reports: &[FileReport]) -> String {
    let mut text = String::new();
    for report in reports {
        let detail = match report.status {
            Status::Complete => format_size(report.size),
            Status::Incomplete => format!(
                "{} of {} verified",
                format_size(report.verified_bytes),
                format_size(report.size)
            ),
            Status::WrongSize => format!(
                "{} on disk, the torrent says {}",
                format_size(report.on_disk.unwrap_or(0)),
                format_size(report.size)
            ),
            Status::Missing => format_size(report.size),
        };
        text += &format!(
            "{:>3}  {:<10}  {}  {}\n",
            report.index,
            report.status.as_str(),
            display(&report.path),
            detail
        );
    }
    let (done, count) = (have.count_ones(), have.len());
    if have.all() {
        text += &format!("all {count} pieces verify: complete\n");
    } else {
        let percent = done as f64 * 100.0 / count.max(1) as f64;
        text += &format!("{done} of {count} pieces verify ({percent:.1} %): incomplete\n");
    }
    text
}

fn report_json(metainfo: &Metainfo, have: &Bitfield, reports: &[FileReport]) -> serde_json::Value {
    let files: Vec<_> = reports
        .iter()
        .map(|r| {
            json!({
                "index": r.index,
                "path": display(&r.path),
                "size": r.size,
                "on_disk": r.on_disk,
                "verified_bytes": r.verified_bytes,
                "status": r.status.as_str(),
            })
        })
        .collect();
    json!({
        "name": metainfo.info.name,
        "info_hash": metainfo.info_hash.to_hex(),
        "piece_count": have.len(),
        "verified_pieces": have.count_ones(),
        "complete": have.all(),
        "files": files,
    })
}

fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
