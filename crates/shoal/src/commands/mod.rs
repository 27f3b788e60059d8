//! One module per subcommand, each with its clap `Args` and a `run` function.

pub mod announcers;
pub mod create;
pub mod demo;
pub mod dht;
pub mod dht_item;
pub mod dht_sample;
pub mod discovery;
pub mod hook;
pub mod info;
pub mod scrape;
pub mod search;
pub mod select;
pub mod tracker;
pub mod transfer;

use std::io::{self, Write};

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
