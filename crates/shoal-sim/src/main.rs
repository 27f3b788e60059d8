//! `shoal-sim`: run a simulated swarm and print how close it came to the lower bound.
//!
//! Standard output is a function of the arguments alone (the same `--seed` prints the
//! same bytes); wall time and speed go to standard error.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use shoal_core::units::{parse_rate, parse_size};
use shoal_sim::content::HashCheck;
use shoal_sim::{Arrival, LinkClass, Scenario};

/// A run allocates and frees a small buffer for nearly every simulated message, across
/// thousands of hosts; mimalloc's free lists made that 8 % of a 1000-peer run cheaper
/// than glibc's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "shoal-sim",
    version,
    about = "Deterministic swarm simulator on shoal's protocol cores"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One torrent, seeds and leechers; prints completion times against the lower bound.
    Swarm(SwarmArgs),
    /// A Mainline DHT of simulated nodes running shoal's DHT node code: nodes join, a
    /// fraction crash and are replaced, then lookups look for announced peers.
    Dht(DhtArgs),
}

#[derive(Args)]
struct DhtArgs {
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Fraction of nodes that crash (replaced by fresh ones) before the lookups (0.5 or 50%).
    #[arg(long, default_value = "0.5", value_parser = parse_fraction)]
    churn: f64,
    /// Random seed: the same arguments and seed give the same output.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Peers announced before the churn.
    #[arg(long, default_value_t = 200)]
    announces: usize,
    /// get_peers lookups after the churn.
    #[arg(long, default_value_t = 1000)]
    lookups: usize,
    /// Probability that a packet is lost (0.05 or 5%).
    #[arg(long, default_value = "0", value_parser = parse_fraction)]
    loss: f64,
    /// Virtual seconds over which the initial nodes join.
    #[arg(long, default_value_t = 120)]
    join_secs: u64,
    /// Surviving announcers do not announce again after the churn.
    #[arg(long)]
    no_reannounce: bool,
}

#[derive(Args)]
struct SwarmArgs {
    /// Leechers (bad peers included).
    #[arg(long, default_value_t = 100)]
    peers: u32,
    #[arg(long, default_value_t = 1)]
    seeds: u32,
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    file_size: u64,
    #[arg(long, default_value = "256KiB", value_parser = parse_size)]
    piece_size: u64,
    /// Upload rate of each seed, per second.
    #[arg(long, default_value = "1MiB", value_parser = parse_rate)]
    seed_up: u64,
    #[arg(long, default_value = "1MiB", value_parser = parse_rate)]
    peer_up: u64,
    #[arg(long, default_value = "8MiB", value_parser = parse_rate)]
    peer_down: u64,
    /// Mean one-way link latency in milliseconds.
    #[arg(long, default_value_t = 40.0)]
    latency: f64,
    /// Probability that a TCP segment is lost (0.01 or 1%).
    #[arg(long, default_value = "0", value_parser = parse_fraction)]
    loss: f64,
    /// flash (all at once) or poisson:RATE (peers per second).
    #[arg(long, default_value = "flash")]
    arrival: Arrival,
    /// Fraction of honest peers that crash once and rejoin (0.1 or 10%).
    #[arg(long, default_value = "0", value_parser = parse_fraction)]
    churn: f64,
    /// Peers that send corrupt blocks: a count, or a percentage of --peers (5%).
    #[arg(long, default_value = "0")]
    bad_peers: String,
    /// Seed of the run's random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The seeds leave at this many seconds.
    #[arg(long)]
    seed_leaves_at: Option<f64>,
    /// A class of honest peers with other link rates: FRACTION:UP:DOWN (e.g. 0.3:128KiB:2MiB).
    #[arg(long)]
    slow_peers: Option<String>,
    /// Accept pieces without checking their hashes (the report says so).
    #[arg(long)]
    no_hash_check: bool,
    /// The seeds super-seed (BEP 16): reveal pieces one peer at a time.
    #[arg(long)]
    super_seed: bool,
    /// Rate assumed for a peer not yet measured, which sets its first request queue depth
    /// (rate × 0.5 s / 16 KiB); the engine assumes 256 KiB/s.
    #[arg(long, default_value = "256KiB", value_parser = parse_rate)]
    initial_rate: u64,
    /// Peers each host dials when it joins.
    #[arg(long, default_value_t = 25)]
    dial: u32,
    /// Connections each host accepts at most.
    #[arg(long, default_value_t = 50)]
    max_connections: u32,
    /// Stop at this virtual time (seconds) even if peers are unfinished.
    #[arg(long, default_value_t = 3600.0)]
    max_time: f64,
    /// Also report, every SECS of virtual time, how busy the leechers' uplinks were and
    /// why they idled, the seeds' new and repeated pieces, and completions.
    #[arg(long, value_name = "SECS")]
    timeline: Option<f64>,
    /// Print the report as one JSON line (followed by the ratio line).
    #[arg(long)]
    json: bool,
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    let value = match text.strip_suffix('%') {
        Some(percent) => percent.parse::<f64>().map(|p| p / 100.0),
        None => text.parse::<f64>(),
    };
    value
        .ok()
        .filter(|v| v.is_finite() && (0.0..=1.0).contains(v))
        .ok_or_else(|| format!("`{text}` is not a fraction (0.1 or 10%)"))
}

fn parse_count_or_percent(text: &str, of: u32) -> anyhow::Result<u32> {
    if text.ends_with('%') {
        let fraction = parse_fraction(text).map_err(anyhow::Error::msg)?;
        return Ok((f64::from(of) * fraction).round() as u32);
    }
    text.parse()
        .with_context(|| format!("`{text}` is not a count or a percentage"))
}

fn parse_class(text: &str) -> anyhow::Result<LinkClass> {
    let parts: Vec<&str> = text.split(':').collect();
    let [fraction, up, down] = parts[..] else {
        bail!("`{text}`: expected FRACTION:UP:DOWN, e.g. 0.3:128KiB:2MiB");
    };
    Ok(LinkClass {
        fraction: parse_fraction(fraction).map_err(anyhow::Error::msg)?,
        up: parse_rate(up)?,
        down: parse_rate(down)?,
    })
}

fn scenario(args: &SwarmArgs) -> anyhow::Result<Scenario> {
    Ok(Scenario {
        peers: args.peers,
        seeds: args.seeds,
        file_size: args.file_size,
        piece_size: u32::try_from(args.piece_size).context("piece size too large")?,
        seed_up: args.seed_up,
        peer_up: args.peer_up,
        peer_down: args.peer_down,
        latency_ms: args.latency,
        loss: args.loss,
        arrival: args.arrival,
        churn: args.churn,
        bad_peers: parse_count_or_percent(&args.bad_peers, args.peers).context("--bad-peers")?,
        rng_seed: args.seed,
        seed_leaves_at: args.seed_leaves_at,
        slow_class: args
            .slow_peers
            .as_deref()
            .map(parse_class)
            .transpose()
            .context("--slow-peers")?,
        hash_check: if args.no_hash_check {
            HashCheck::Off
        } else {
            HashCheck::Sha1
        },
        super_seed: args.super_seed,
        initial_rate: args.initial_rate,
        dial: args.dial,
        max_connections: args.max_connections,
        max_time: args.max_time,
        timeline: args.timeline,
    })
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Swarm(args) => swarm(&args),
        Command::Dht(args) => {
            dht(&args);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal-sim: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dht(args: &DhtArgs) {
    let params = shoal_dht::sim::SimParams {
        nodes: args.nodes,
        churn: args.churn,
        seed: args.seed,
        announces: args.announces,
        lookups: args.lookups,
        loss: args.loss,
        join_secs: args.join_secs,
        reannounce: !args.no_reannounce,
        ..shoal_dht::sim::SimParams::default()
    };
    let r = shoal_dht::sim::run(&params);
    println!(
        "nodes {} churn {:.2}: {}/{} lookups found the peer ({:.1} %), rounds median {} p90 {}, \
         queries per lookup mean {:.1} median {}, first peer after {} ms (median), \
         {} packets, mean table {:.0} nodes, {} s virtual; \
         {} announces lost every storing node in the churn (re-announce: {})",
        r.nodes,
        r.churn,
        r.found,
        r.lookups,
        100.0 * r.success_rate(),
        r.median_rounds,
        r.p90_rounds,
        r.mean_queries,
        r.median_queries,
        r.median_ms_to_peer,
        r.packets,
        r.mean_table,
        r.virtual_secs,
        r.lost_announces,
        params.reannounce
    );
    eprintln!("shoal-sim: {:.1} s wall", r.wall_secs);
}

fn swarm(args: &SwarmArgs) -> anyhow::Result<()> {
    let scenario = scenario(args)?;
    let started = Instant::now();
    let report = shoal_sim::run(&scenario)?;
    let wall = started.elapsed().as_secs_f64();
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        println!("{}", report.ratio_line());
    } else {
        print!("{}", report.to_text(&scenario));
    }
    eprintln!(
        "wall_time_s={wall:.3} events_per_s={:.0}",
        report.events as f64 / wall.max(1e-9)
    );
    Ok(())
}
