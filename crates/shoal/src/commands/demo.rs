//! `shoal demo`: the whole provider flow on a generated file, with no network needed.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::units::{format_size, parse_size};

/// Generate a sample file, make a torrent of it, and show the torrent's details.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Size of the generated file.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_size)]
    pub size: u64,
    /// Folder to work in [default: a new temporary folder].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Pseudo-random bytes (xorshift64*): incompressible like real media, reproducible.
fn sample_data(size: u64, out: &mut impl Write) -> std::io::Result<()> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let dir = match args.dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("shoal-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let file = dir.join("sample.bin");
    eprintln!(
        "shoal demo: writing {} of sample data to {}",
        format_size(args.size),
        file.display()
    );
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&file)
            .with_context(|| format!("{}: cannot create", file.display()))?,
    );
    sample_data(args.size, &mut out)
        .and_then(|()| out.flush())
        .with_context(|| format!("{}: cannot write", file.display()))?;
    drop(out);

    let torrent = dir.join("sample.bin.torrent");
    eprintln!(
        "shoal demo: shoal create {} -o {}",
        file.display(),
        torrent.display()
    );
    super::create::run(super::create::Args {
        path: file,
        output: Some(torrent.clone()),
        piece_size: None,
        trackers: vec![],
        private: false,
        comment: Some("made by shoal demo".into()),
        no_date: false,
        force: true,
        threads: None,
        json: false,
    })?;
    eprintln!("shoal demo: shoal info {}", torrent.display());
    super::info::run(super::info::Args {
        torrent: torrent.display().to_string(),
        json: false,
    })?;
    eprintln!("shoal demo: done; files are in {}", dir.display());
    Ok(())
}
