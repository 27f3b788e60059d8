//! `shoal demo`: the whole flow on one machine with no network needed: start a tracker
//! on loopback, make a file and a torrent that announces to it, start a few seeds, and
//! download from all of them with the same progress display `shoal get` shows.
//!
//! Nobody is told anybody's address: the seeds and the downloader announce to the
//! tracker through the same code `shoal get` and `shoal seed` use
//! ([`super::transfer::run_announced`]), and the downloader connects to the peers the
//! tracker hands back.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use shoal_core::InfoHash;
use shoal_engine::{Dialer, Encryption, EngineEvent, Outcome, RateLimit, SeedLimit, TorrentConfig};
use shoal_tracker::client::UdpConfig;
use shoal_tracker::driver::http::HttpConfig;
use shoal_tracker::driver::server::{ServerHandle, ServerOptions, TrackerServer};
use shoal_tracker::{ScrapeCounts, TrackerUrl};
use tokio::sync::{mpsc, watch};

use super::discovery::Dhts;
use super::transfer::{run_announced, show_progress, ExternalPort, Update};
use shoal_core::units::{format_size, parse_size};

/// Make a sample file and a torrent for it, start a tracker and 3 seeds on loopback, and
/// download the file through the tracker.
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
    /// Announce to this tracker (e.g. a `shoal tracker` or opentracker already running)
    /// instead of starting one on 127.0.0.99.
    #[arg(long, value_name = "URL")]
    pub tracker: Option<String>,
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
    seed: bool,
) -> TorrentConfig {
    TorrentConfig {
        metainfo: metainfo.clone(),
        download_dir: dir,
        single_file_path: None,
        state_dir: state,
        listen: Some(listen),
        shared_listener: None,
        dialer: Dialer::tcp(),
        // No addresses: every peer finds the others through the tracker.
        peers: Vec::new(),
        peer_feed: None,
        seed,
        super_seed: false,
        upload_limit: Arc::new(RateLimit::new(None)),
        download_limit: Arc::new(RateLimit::new(None)),
        max_connections: 50,
        connection_budget: None,
        ip_filter: None,
        sequential: false,
        priority_pieces: Vec::new(),
        readers: None,
        upload_slots: 8,
        stall_timeout: None,
        check_threads: 0,
        check_turns: None,
        check: shoal_engine::Check::Resume,
        encryption: Encryption::default(),
        external_port: None,
        selected_files: None,
        seed_limit: SeedLimit::default(),
    }
}

/// How long the seeds may take to be listed by the tracker.
const SEEDS_LISTED_WITHIN: Duration = Duration::from_secs(10);

/// What the tracker says about the demo torrent, asked over the wire (a scrape) like any
/// client would.
async fn scrape(url: &TrackerUrl, hash: InfoHash) -> Result<ScrapeCounts> {
    let counts =
        shoal_tracker::driver::scrape(url, &[hash], &HttpConfig::default(), UdpConfig::default())
            .await
            .with_context(|| format!("scraping {url}"))?;
    Ok(counts.first().map(|(_, c)| *c).unwrap_or_default())
}

/// The tracker the demo started itself: the same server `shoal tracker` runs, in process.
struct LocalTracker {
    handle: ServerHandle,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl LocalTracker {
    /// Serves HTTP on 127.0.0.99 (a port the system picks); returns the announce URL.
    fn start(runtime: &tokio::runtime::Runtime) -> Result<(String, LocalTracker)> {
        let server = runtime.block_on(TrackerServer::bind(ServerOptions {
            http: Some(SocketAddr::from(([127, 0, 0, 99], 0))),
            ..ServerOptions::default()
        }))?;
        let url = format!(
            "http://{}/announce",
            server
                .http_addr()
                .context("the tracker has no HTTP address")?
        );
        let handle = server.handle();
        let (stop, mut stopping) = watch::channel(false);
        let task = runtime.spawn(server.run(async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        }));
        Ok((url, LocalTracker { handle, stop, task }))
    }

    fn stop(self, runtime: &tokio::runtime::Runtime) {
        let _ = self.stop.send(true);
        let _ = runtime.block_on(self.task);
    }
}

/// The demo's peers are on loopback: no router forwards a port to them.
fn no_mapping() -> ExternalPort {
    watch::channel(None).1
}

/// Starts a seed that announces to the torrent's tracker; returns once it listens.
async fn start_seed(
    config: TorrentConfig,
    trackers: Vec<Vec<String>>,
    stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<Result<Outcome>>)> {
    let (updates_tx, mut updates) = mpsc::unbounded_channel();
    let task = tokio::spawn(run_announced(
        config,
        (trackers, Dhts::default(), no_mapping(), None),
        updates_tx,
        stop,
    ));
    loop {
        match updates.recv().await {
            Some(Update::Engine(EngineEvent::Started {
                listen: Some(addr), ..
            })) => {
                tokio::spawn(async move { while updates.recv().await.is_some() {} });
                return Ok((addr, task));
            }
            Some(_) => continue,
            None => {
                task.await??;
                bail!("a seed stopped before it started");
            }
        }
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

    // The tracker on 127.0.0.99, seeds on 127.0.0.101.., the downloader on 127.0.0.100;
    // ports picked by the system.
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let (announce_url, local) = match args.tracker {
        Some(url) => {
            eprintln!("shoal demo: using the tracker {url}");
            (url, None)
        }
        None => {
            let (url, local) = LocalTracker::start(&runtime)?;
            eprintln!("shoal demo: shoal tracker --http 127.0.0.99:0 is listening on {url}");
            (url, Some(local))
        }
    };
    // Checked before anything announces to it.
    let tracker_url = TrackerUrl::parse(&announce_url)?;

    let torrent = dir.join("sample.bin.torrent");
    eprintln!(
        "shoal demo: shoal create {} -t {announce_url} -o {}",
        file.display(),
        torrent.display()
    );
    super::create::run(super::create::Args {
        path: file.clone(),
        output: Some(torrent.clone()),
        piece_size: None,
        trackers: vec![super::announcers::Tier(vec![announce_url.clone()])],
        web_seeds: Vec::new(),
        dht_nodes: Vec::new(),
        private: false,
        source: None,
        comment: Some("made by shoal demo".into()),
        no_date: false,
        force: true,
        threads: None,
        format: super::create::Format::V1,
        attributes: false,
        // Keeps standard output all JSON lines under --json.
        json: args.json,
    })?;
    let metainfo = Arc::new(super::info::load_torrent(&torrent)?);
    let trackers = metainfo.trackers.clone();
    let hash = metainfo.info_hash;

    let seed_count = args.seeds.max(1);
    let download = dir.join("download");
    let outcome = runtime.block_on(async {
        let (stop_tx, stop) = watch::channel(false);
        let mut seeds = Vec::new();
        let mut seed_addrs = Vec::new();
        for i in 0..seed_count {
            let config = torrent_config(
                &metainfo,
                source.clone(),
                dir.join(format!("state-seed{i}")),
                SocketAddr::from(([127, 0, 0, 101 + i], 0)),
                true,
            );
            let (addr, task) = start_seed(config, trackers.clone(), stop.clone()).await?;
            seed_addrs.push(addr);
            seeds.push(task);
        }
        // The downloader should find every seed, so wait until the tracker lists them.
        let deadline = Instant::now() + SEEDS_LISTED_WITHIN;
        let listed = loop {
            let counts = scrape(&tracker_url, hash).await?;
            if counts.complete >= u32::from(seed_count) {
                break counts;
            }
            if Instant::now() > deadline {
                bail!(
                    "the tracker lists {} of the {seed_count} seeds after {}s",
                    counts.complete,
                    SEEDS_LISTED_WITHIN.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let seeds_text = seed_addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        if args.json {
            super::line(json!({"event": "tracker", "url": announce_url, "seeders": listed.complete,
                "leechers": listed.incomplete, "seeds": seed_addrs.iter().map(ToString::to_string).collect::<Vec<_>>()}));
        }
        eprintln!(
            "shoal demo: {} seeds on {seeds_text} announced to the tracker; its scrape lists {} seeders",
            seed_addrs.len(),
            listed.complete,
        );
        eprintln!(
            "shoal demo: shoal get {} -o {} (no --peer: the tracker gives the peers)",
            torrent.display(),
            download.display()
        );
        let (updates_tx, updates) = mpsc::unbounded_channel();
        let config = torrent_config(
            &metainfo,
            download.clone(),
            dir.join("state-get"),
            SocketAddr::from(([127, 0, 0, 100], 0)),
            false,
        );
        let display = tokio::spawn(show_progress(updates, metainfo.clone(), args.json));
        let started = Instant::now();
        let outcome = run_announced(
            config,
            (trackers.clone(), Dhts::default(), no_mapping(), None),
            updates_tx,
            stop,
        ).await;
        let elapsed = started.elapsed();
        let _ = display.await;
        // The downloader has told the tracker `completed` and `stopped` on its way out.
        let after = scrape(&tracker_url, hash).await?;
        // Only a tracker of our own tells how many announces it served (its /stats).
        let announces = local
            .as_ref()
            .map(|l| l.handle.stats_json()["announces"].clone());
        if args.json {
            super::line(json!({"event": "tracker_final", "url": announce_url, "seeders": after.complete,
                "leechers": after.incomplete, "completed": after.downloaded, "announces": announces}));
        }
        eprintln!(
            "shoal demo: the tracker counts {} completed download(s){}",
            after.downloaded,
            announces
                .map(|n| format!(" and {n} announces"))
                .unwrap_or_default()
        );
        let _ = stop_tx.send(true);
        for seed in seeds {
            seed.await??;
        }
        Ok((outcome?, elapsed))
    });
    if let Some(local) = local {
        local.stop(&runtime);
    }
    let (outcome, elapsed) = outcome?;
    if outcome != Outcome::Complete {
        bail!("the demo download did not complete");
    }
    let same = std::fs::read(&file)? == std::fs::read(download.join("sample.bin"))?;
    if !same {
        bail!("the downloaded file differs from the source (a bug)");
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "shoal demo: downloaded {} from {} seeds found through the tracker in {:.2} s ({}/s); the copy is identical. Files are in {}",
        format_size(args.size),
        seed_count,
        secs,
        format_size((args.size as f64 / secs) as u64),
        dir.display()
    );
    Ok(())
}
