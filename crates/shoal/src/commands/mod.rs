//! One module per subcommand, each with its clap `Args` and a `run` function.

pub mod announcers;
pub mod create;
pub mod daemon;
pub mod demo;
pub mod dht;
pub mod dht_item;
pub mod dht_sample;
pub mod discovery;
pub mod edit;
pub mod hook;
pub mod info;
pub mod mutable;
pub mod prioritize;
pub mod remote;
pub mod scrape;
pub mod search;
pub mod select;
pub mod stream;
pub mod tracker;
pub mod transfer;
pub mod verify;

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

/// Writes text to standard output; a closed pipe (`shoal info x | head -1`) is not an
/// error worth reporting.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing to standard output"))
        }
        _ => Ok(()),
    }
}

/// Writes one line to standard output, where the output goes alongside work in progress
/// (a transfer's JSON events, answers as they come): a reader that went away
/// (`shoal get --json … | head`) ends the output, not the work, and a failed write has
/// nowhere better to be reported.
pub fn line(text: impl std::fmt::Display) {
    let _ = print(&format!("{text}\n"));
}

/// Runs `work`, which hashes `total` bytes and counts them in the counter it is given, on
/// its own thread, with a progress bar on standard error when that is a terminal.
pub fn hashing<T: Send>(total: u64, work: impl FnOnce(&AtomicU64) -> T + Send) -> T {
    let progress = AtomicU64::new(0);
    let bar = if io::stderr().is_terminal() {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "hashing {bar:40.cyan/blue} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    // The result comes through a channel so it is picked up the moment hashing ends;
    // waiting in between is only a pause for redrawing the bar.
    let result = std::thread::scope(|scope| {
        let (done_tx, done) = std::sync::mpsc::channel();
        let progress = &progress;
        scope.spawn(move || {
            let _ = done_tx.send(work(progress));
        });
        loop {
            match done.recv_timeout(Duration::from_millis(50)) {
                Ok(result) => break result,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    bar.set_position(progress.load(Ordering::Relaxed))
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the hashing thread ended without a result")
                }
            }
        }
    });
    bar.finish_and_clear();
    result
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that an
/// interrupted write never leaves a truncated torrent behind.
pub fn write_atomically(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    if !force && path.exists() {
        bail!(
            "{}: already exists (use --force to overwrite)",
            path.display()
        );
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("{}: cannot write", path.display()))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}
