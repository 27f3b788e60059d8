//! `shoal demo`: the whole flow on one machine with no network needed: make a file and
//! its torrent, start a few seeds on loopback, and download from all of them with the
//! same progress display `shoal get` shows.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use shoal_engine::{EngineEvent, Outcome, TorrentConfig};
use tokio::sync::{mpsc, watch};

use crate::units::{format_size, parse_size};

/// Make a sample file and its torrent, seed it from 3 peers on loopback, and download it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Size of the generated file.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_size)]
    pub size: u64,
    /// How many seeds to start.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub seeds: u8,
    /// Folder to work in [default: a new temporary folder].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print the download's events as JSON lines instead of a progress bar.
    #[arg(long)]
    pub json: bool,
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

fn torrent_config(
    metainfo: &Arc<shoal_core::Metainfo>,
    dir: PathBuf,
    state: PathBuf,
    listen: SocketAddr,
    peers: Vec<SocketAddr>,
    seed: bool,
) -> TorrentConfig {
    TorrentConfig {
        metainfo: metainfo.clone(),
        download_dir: dir,
        single_file_path: None,
        state_dir: state,
        listen: Some(listen),
        peers,
        peer_feed: None,
        seed,
        max_upload_rate: None,
        max_download_rate: None,
        max_connections: 50,
        check_threads: 0,
    }
}

pub fn run(args: Args) -> Result<()> {
    let dir = match args.dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("shoal-demo-{}", std::process::id())),
    };
    let source = dir.join("seed");
    std::fs::create_dir_all(&source)
        .with_context(|| format!("{}: cannot create", source.display()))?;
    let file = source.join("sample.bin");
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
        path: file.clone(),
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
    let metainfo = Arc::new(super::info::load_torrent(&torrent)?);

    // Seeds on 127.0.0.101.., the downloader on 127.0.0.100; ports picked by the system.
    let seeds: Vec<SocketAddr> = (0..args.seeds.max(1))
        .map(|i| SocketAddr::from(([127, 0, 0, 101 + i], 0)))
        .collect();
    let download = dir.join("download");
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async {
        let (stop_tx, stop) = watch::channel(false);
        let mut seed_addrs = Vec::new();
        for (i, listen) in seeds.iter().enumerate() {
            let (events_tx, mut events) = mpsc::unbounded_channel();
            let config = torrent_config(
                &metainfo,
                source.clone(),
                dir.join(format!("state-seed{i}")),
                *listen,
                vec![],
                true,
            );
            tokio::spawn(shoal_engine::run(config, events_tx, stop.clone()));
            // Wait for the seed to check its data and report its port.
            loop {
                match events.recv().await {
                    Some(EngineEvent::Started {
                        listen: Some(addr), ..
                    }) => {
                        seed_addrs.push(addr);
                        break;
                    }
                    Some(_) => continue,
                    None => bail!("seed {i} stopped before it started"),
                }
            }
            tokio::spawn(async move { while events.recv().await.is_some() {} });
        }
        eprintln!(
            "shoal demo: {} seeds on {}; shoal get {} -o {}",
            seed_addrs.len(),
            seed_addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            torrent.display(),
            download.display()
        );
        let (events_tx, events) = mpsc::unbounded_channel();
        let config = torrent_config(
            &metainfo,
            download.clone(),
            dir.join("state-get"),
            SocketAddr::from(([127, 0, 0, 100], 0)),
            seed_addrs,
            false,
        );
        let display = tokio::spawn(super::transfer::show_progress(
            events,
            metainfo.clone(),
            args.json,
        ));
        let started = std::time::Instant::now();
        let outcome = shoal_engine::run(config, events_tx, stop).await;
        let _ = display.await;
        let _ = stop_tx.send(true);
        Ok((outcome?, started.elapsed()))
    })?;
    let (outcome, elapsed) = outcome;
    if outcome != Outcome::Complete {
        bail!("the demo download did not complete");
    }
    let same = std::fs::read(&file)? == std::fs::read(download.join("sample.bin"))?;
    if !same {
        bail!("the downloaded file differs from the source (a bug)");
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "shoal demo: downloaded {} from {} seeds in {:.2} s ({}/s); the copy is identical. Files are in {}",
        format_size(args.size),
        seeds.len(),
        secs,
        format_size((args.size as f64 / secs) as u64),
        dir.display()
    );
    Ok(())
}
