//! `shoal create`: hash a file or folder and write a `.torrent` and a magnet link.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use shoal_core::{DhtNode, Metainfo, TorrentBuilder, TorrentFormat};
use shoal_storage::{CreateOptions, Scanned};

use super::announcers::{parse_tier, Tier};
use super::{hashing, print, write_atomically};
use shoal_core::units::{format_size, parse_size};

/// Create a .torrent file (and a magnet link) from a file or a folder.
///
/// Files are hashed on all cores. A folder's files are listed in byte-wise path order,
/// the order mktorrent uses, so both tools give the same info-hash for the same content
/// and piece size. Symbolic links and special files are skipped with a message.
/// `--format hybrid` or `v2` writes a BEP 52 torrent as libtorrent 2 does (the same
/// info-hashes for the same content and piece size).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file or folder to share.
    pub path: PathBuf,
    /// Where to write the torrent [default: NAME.torrent in the current folder].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Piece size, a power of two from 16K to 256M: 256K, 1M, 262144, ...
    /// [default: chosen for 1000-2000 pieces]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub piece_size: Option<u64>,
    /// Tracker announce URL (http, https or udp). Repeat for several tiers; separate
    /// URLs with commas to put them in one tier.
    #[arg(short, long = "tracker", value_name = "URL", value_parser = parse_tier)]
    pub trackers: Vec<Tier>,
    /// A web seed (BEP 19): an http(s) URL that serves the torrent's content, as
    /// mktorrent's -w. For a folder, the URL of the folder that holds it (ending in `/`);
    /// for a single file, that of the file or of its folder. Repeat for several.
    #[arg(short, long = "web-seed", value_name = "URL")]
    pub web_seeds: Vec<String>,
    /// A DHT node for downloaders to enter the DHT through (BEP 5 `nodes`, libtorrent's
    /// `add_node`): HOST:PORT, [IPv6]:PORT. For a trackerless torrent on a network the
    /// public routers do not reach. Repeat for several. It is not in the info
    /// dictionary, so the info-hash does not change.
    #[arg(long = "dht-node", value_name = "ADDR")]
    pub dht_nodes: Vec<DhtNode>,
    /// Mark the torrent private (BEP 27): peers only from its trackers, no DHT or PEX.
    #[arg(long, conflicts_with = "dht_nodes")]
    pub private: bool,
    /// A source tag in the info dictionary (mktorrent's and transmission-create's -s):
    /// private trackers ask for their name there, and it makes the info-hash the
    /// tracker's own.
    #[arg(short, long, value_name = "TEXT")]
    pub source: Option<String>,
    /// A comment stored in the torrent.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// Leave out the creation date, so the same content always gives the same file.
    #[arg(long)]
    pub no_date: bool,
    /// Overwrite the output file if it exists.
    #[arg(short, long)]
    pub force: bool,
    /// v1 (BEP 3, read by every client), hybrid (v1 and v2 in one torrent, libtorrent's
    /// default: v2 clients check pieces by SHA-256 merkle tree, the others join through
    /// the v1 half) or v2 (BEP 52 alone: libtorrent 2, qBittorrent, shoal).
    #[arg(long, value_enum, default_value_t = Format::V1)]
    pub format: Format,
    /// Record which files are executable (BEP 47 `attr: x`) and the symbolic links that
    /// point inside the folder (`attr: l`, their targets from the torrent's folder), as
    /// libtorrent and qBittorrent do, so that clients that read them (libtorrent's,
    /// shoal) make them again. Without it links are left out and the torrent has
    /// mktorrent's info-hash.
    #[arg(long)]
    pub attributes: bool,
    /// Hashing threads [default: one per core].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    V1,
    Hybrid,
    V2,
}

impl From<Format> for TorrentFormat {
    fn from(format: Format) -> Self {
        match format {
            Format::V1 => TorrentFormat::V1,
            Format::Hybrid => TorrentFormat::Hybrid,
            Format::V2 => TorrentFormat::V2,
        }
    }
}

/// Hashes `scanned`, drawing a progress bar on standard error when it is a terminal.
pub fn hash_with_progress(
    scanned: &Scanned,
    options: &CreateOptions,
) -> Result<(TorrentBuilder, Duration)> {
    let started = Instant::now();
    let result = hashing(scanned.total_length, |progress| {
        shoal_storage::create(scanned, options, progress)
    });
    Ok((result?, started.elapsed()))
}

/// Refuses web seed URLs (BEP 19) that are not http(s).
pub fn check_web_seeds(urls: &[String]) -> Result<()> {
    match urls.iter().find(|url| !super::info::is_url(url)) {
        Some(url) => bail!("web seed URL '{url}' must start with http:// or https://"),
        None => Ok(()),
    }
}

pub fn run(args: Args) -> Result<()> {
    check_web_seeds(&args.web_seeds)?;
    let piece_length = args
        .piece_size
        .map(shoal_storage::check_piece_length)
        .transpose()?;
    let scanned = shoal_storage::scan(&args.path)?;
    for skipped in &scanned.skipped {
        eprintln!(
            "shoal: skipping {}: {}",
            skipped.path.display(),
            skipped.reason
        );
    }
    if !args.attributes {
        for link in &scanned.links {
            eprintln!(
                "shoal: skipping {}: symbolic link (--attributes records it as a link)",
                link.path.display()
            );
        }
    }
    let options = CreateOptions {
        piece_length,
        threads: args.threads.unwrap_or(0),
        format: args.format.into(),
        attributes: args.attributes,
    };
    let (mut builder, elapsed) = hash_with_progress(&scanned, &options)?;
    builder.private = args.private;
    builder.source = args.source;
    builder.trackers = args.trackers.into_iter().map(|Tier(urls)| urls).collect();
    builder.web_seeds = args.web_seeds;
    builder.nodes = args.dht_nodes;
    builder.comment = args.comment;
    builder.created_by = Some(concat!("shoal/", env!("CARGO_PKG_VERSION")).to_owned());
    if !args.no_date {
        builder.creation_date = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs() as i64);
    }
    let bytes = builder.to_bytes();
    let metainfo =
        Metainfo::from_bytes(&bytes).context("the torrent just built does not parse (a bug)")?;
    let output = args.output.unwrap_or_else(|| {
        PathBuf::from(format!(
            "{}.torrent",
            String::from_utf8_lossy(&scanned.name)
        ))
    });
    write_atomically(&output, &bytes, args.force)?;

    let secs = elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "shoal: hashed {} in {:.2} s ({}/s)",
        format_size(scanned.total_length),
        secs,
        format_size((scanned.total_length as f64 / secs) as u64)
    );
    let magnet = metainfo.magnet().to_string();
    if args.json {
        let json = serde_json::json!({
            "torrent": output.display().to_string(),
            "name": metainfo.info.name,
            "info_hash": metainfo.info_hash.to_hex(),
            "info_hash_v2": metainfo.info_hash_v2.map(|h| shoal_core::hex::encode(&h)),
            "piece_length": metainfo.info.piece_length,
            "piece_count": metainfo.info.piece_count(),
            "total_size": metainfo.info.total_length,
            "magnet": magnet,
            "seconds": secs,
        });
        print(&format!("{json}\n"))
    } else {
        let v2 = metainfo
            .info_hash_v2
            .map(|h| format!("info-hash v2: {}\n", shoal_core::hex::encode(&h)))
            .unwrap_or_default();
        print(&format!(
            "torrent:   {}\ninfo-hash: {}\n{v2}magnet:    {}\n",
            output.display(),
            metainfo.info_hash,
            magnet
        ))
    }
}
