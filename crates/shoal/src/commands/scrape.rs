//! `shoal scrape`: ask torrents' trackers how many seeders and leechers they have, as
//! `transmission-show --scrape` does, without joining the swarm; `shoal dht scrape`:
//! the same from the DHT (BEP 33), for torrents with no tracker.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use shoal_core::InfoHash;
use shoal_tracker::client::UdpConfig;
use shoal_tracker::driver::http::HttpConfig;
use shoal_tracker::{ScrapeCounts, TrackerUrl};
use tokio::task::JoinSet;

use super::transfer::{parse_source, Source};

/// Ask a torrent's trackers how many seeders and leechers it has
///
/// A scrape (BEP 48 over HTTP, BEP 15 over UDP) of every tracker at once, each asked once
/// for all the torrents it serves; nothing joins the swarm.
///
/// Exits 0 when some tracker answered for every torrent, 1 otherwise.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// .torrent files, magnet links or info-hashes.
    #[arg(required = true, value_name = "TORRENT")]
    pub torrents: Vec<String>,
    /// A tracker (announce URL) to ask as well; repeat for several. An info-hash has no
    /// trackers of its own (`shoal dht scrape` asks the DHT instead).
    #[arg(long = "tracker", short = 't', value_name = "URL")]
    pub trackers: Vec<String>,
    /// Seconds to wait for each tracker.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub timeout: u64,
    /// Print one JSON object per line for each (torrent, tracker): `info_hash`, `name`,
    /// `tracker`, then `seeders`, `leechers`, `downloaded` (and `downloaders`, leechers
    /// that are not partial seeds, where the tracker says), or `listed: false`, or
    /// `error`.
    #[arg(long)]
    pub json: bool,
}

/// `shoal dht scrape`'s arguments.
#[derive(Debug, clap::Args)]
pub struct DhtArgs {
    /// .torrent files, magnet links or info-hashes.
    #[arg(required = true, value_name = "TORRENT")]
    pub torrents: Vec<String>,
    #[command(flatten)]
    pub client: super::dht::ClientArgs,
}

struct Torrent {
    info_hash: InfoHash,
    name: String,
}

/// A torrent argument: what it names, and the trackers it lists.
fn torrent_of(arg: &str) -> Result<(Torrent, Vec<String>)> {
    let (info_hash, name, trackers) = match parse_source(arg, None)? {
        Source::Torrent(m) => {
            let trackers = m.trackers.iter().flatten().cloned().collect();
            (m.info_hash, m.info.name.clone(), trackers)
        }
        Source::Magnet(m) => (m.info_hash, m.name.clone().unwrap_or_default(), m.trackers),
    };
    Ok((Torrent { info_hash, name }, trackers))
}

pub fn run_dht(args: DhtArgs) -> Result<()> {
    let torrents: Vec<Torrent> = args
        .torrents
        .iter()
        .map(|arg| torrent_of(arg).map(|(t, _)| t))
        .collect::<Result<_>>()?;
    let hashes: Vec<InfoHash> = torrents.iter().map(|t| t.info_hash).collect();
    let counts = super::dht::with_node(&args.client, true, |dht| async move {
        let mut counts = Vec::new();
        for hash in hashes {
            let filters = dht.scrape(hash).await?;
            // The BEP's estimate is 0.5 for an empty filter: whole peers are shown.
            counts.push((
                filters.seeds.estimate().round() as u64,
                filters.peers.estimate().round() as u64,
            ));
        }
        Ok(counts)
    })?;
    let mut any = false;
    for (torrent, (seeds, peers)) in torrents.iter().zip(counts) {
        any |= seeds + peers > 0;
        let hash = torrent.info_hash.to_hex();
        if args.client.json {
            let line =
                json!({"info_hash": hash, "name": torrent.name, "seeds": seeds, "peers": peers});
            super::line(&line);
        } else {
            super::line(format_args!(
                "{hash} {}: about {seeds} seeds, {peers} peers",
                torrent.name
            ));
        }
    }
    if !any {
        eprintln!("shoal: no DHT node knew of a peer of these torrents");
        std::process::exit(super::dht::NOT_DONE);
    }
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let mut torrents = Vec::new();
    // Tracker URL → the torrents to ask it about.
    let mut asks: BTreeMap<String, Vec<InfoHash>> = BTreeMap::new();
    for arg in &args.torrents {
        let (torrent, own) = torrent_of(arg)?;
        let urls: Vec<&String> = own.iter().chain(&args.trackers).collect();
        if urls.is_empty() {
            bail!("{arg}: no trackers to ask; give one with --tracker, or ask the DHT with `shoal dht scrape`");
        }
        for url in urls {
            let hashes = asks.entry(url.clone()).or_default();
            if !hashes.contains(&torrent.info_hash) {
                hashes.push(torrent.info_hash);
            }
        }
        torrents.push(torrent);
    }
    let timeout = Duration::from_secs(args.timeout.max(1));
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let answers = runtime.block_on(scrape_all(asks, timeout));
    let mut answered = vec![false; torrents.len()];
    for (i, torrent) in torrents.iter().enumerate() {
        if !args.json {
            super::line(format_args!(
                "{} {}",
                torrent.info_hash.to_hex(),
                torrent.name
            ));
        }
        for (url, answer) in &answers {
            if !answer.asked.contains(&torrent.info_hash) {
                continue;
            }
            let result = answer.result.as_ref().map(|counts| {
                counts
                    .iter()
                    .find(|(h, _)| *h == torrent.info_hash)
                    .map(|(_, c)| *c)
            });
            answered[i] |= result.is_ok();
            show(torrent, url, result, args.json);
        }
    }
    let silent: Vec<&str> = torrents
        .iter()
        .zip(&answered)
        .filter(|(_, ok)| !**ok)
        .map(|(t, _)| t.name.as_str())
        .collect();
    if !silent.is_empty() {
        bail!("no tracker answered for {}", silent.join(", "));
    }
    Ok(())
}

/// One tracker's answer to the torrents it was asked about.
struct Answer {
    asked: Vec<InfoHash>,
    result: Result<Vec<(InfoHash, ScrapeCounts)>, String>,
}

async fn scrape_all(
    asks: BTreeMap<String, Vec<InfoHash>>,
    timeout: Duration,
) -> BTreeMap<String, Answer> {
    let http = HttpConfig {
        timeout,
        ..HttpConfig::default()
    };
    // Two retransmissions within the time given (BEP 15's 15 s would be one wait).
    let udp = UdpConfig {
        base_timeout: timeout / 7,
        max_retransmits: 2,
    };
    let mut tasks = JoinSet::new();
    for (url, hashes) in asks {
        let http = http.clone();
        tasks.spawn(async move {
            let result = match TrackerUrl::parse(&url) {
                Ok(parsed) => {
                    let work = shoal_tracker::driver::scrape(&parsed, &hashes, &http, udp);
                    match tokio::time::timeout(timeout, work).await {
                        Ok(result) => result.map_err(|e| e.to_string()),
                        Err(_) => Err(format!("no answer in {} s", timeout.as_secs())),
                    }
                }
                Err(e) => Err(e.to_string()),
            };
            (
                url,
                Answer {
                    asked: hashes,
                    result,
                },
            )
        });
    }
    let mut answers = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok((url, answer)) = done {
            answers.insert(url, answer);
        }
    }
    answers
}

fn show(
    torrent: &Torrent,
    url: &str,
    result: Result<Option<ScrapeCounts>, &String>,
    as_json: bool,
) {
    let hash = torrent.info_hash.to_hex();
    if as_json {
        let mut line = json!({"info_hash": hash, "name": torrent.name, "tracker": url});
        match result {
            Ok(Some(c)) => {
                line["seeders"] = json!(c.complete);
                line["leechers"] = json!(c.incomplete);
                line["downloaded"] = json!(c.downloaded);
                if let Some(d) = c.downloaders {
                    line["downloaders"] = json!(d);
                }
            }
            Ok(None) => line["listed"] = json!(false),
            Err(e) => line["error"] = json!(e),
        }
        super::line(&line);
        return;
    }
    match result {
        Ok(Some(c)) => super::line(format_args!(
            "  {url}: {} seeders, {} leechers, {} downloaded",
            c.complete, c.incomplete, c.downloaded
        )),
        Ok(None) => super::line(format_args!("  {url}: not listed")),
        Err(e) => super::line(format_args!("  {url}: error: {e}")),
    }
}
