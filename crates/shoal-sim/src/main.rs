//! `shoal-sim`: run a simulated swarm and print how close it came to the lower bound.
//!
//! Standard output is a function of the arguments alone (the same `--seed` prints the
//! same bytes); wall time and speed go to standard error.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use shoal_sim::content::HashCheck;
use shoal_sim::units::{parse_rate, parse_size};
use shoal_sim::{Arrival, LinkClass, Scenario};

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
    /// (rate × 2 s / 16 KiB); the engine assumes 512 KiB/s.
    #[arg(long, default_value = "512KiB", value_parser = parse_rate)]
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
    })
}

fn main() -> ExitCode {
    let Command::Swarm(args) = Cli::parse().command;
    match swarm(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal-sim: error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
