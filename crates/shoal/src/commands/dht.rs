//! `shoal dht`: a standalone DHT node, e.g. the bootstrap node of a private network.
//! It prints its counters every few seconds and saves its routing table on exit.
//! `shoal dht get|put|keygen` store and fetch BEP 44 items (see [`super::dht_item`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use shoal_dht::driver::{DhtHandle, DriverConfig};

use super::transfer::default_state_dir;

/// Run a Mainline DHT node until Ctrl-C, printing its statistics; or store and fetch
/// small items in the DHT (BEP 44).
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub item: Option<super::dht_item::Action>,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// UDP address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:6881")]
    pub listen: SocketAddr,
    /// A node to bootstrap from (HOST:PORT). Repeat for several.
    #[arg(long, value_name = "ADDR")]
    pub bootstrap: Vec<String>,
    /// Routing table file, loaded at start and saved on exit
    /// [default: dht.state in the state folder].
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Seconds between statistics lines.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub interval: u64,
    /// Keep nodes whose id does not match their IP address (BEP 42) out of the table.
    #[arg(long)]
    pub enforce_node_ids: bool,
    /// Print statistics as JSON lines.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    match args.item {
        Some(action) => super::dht_item::run(action),
        None => run_node(args.node),
    }
}

fn run_node(args: NodeArgs) -> Result<()> {
    let bootstrap = super::discovery::resolve(&args.bootstrap);
    let state = args
        .state
        .unwrap_or_else(|| default_state_dir().join("dht.state"));
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    let mut config = DriverConfig::new(args.listen);
    config.dht.bootstrap = bootstrap;
    config.dht.enforce_node_ids = args.enforce_node_ids;
    config.dht.seed = rand::random();
    config.state_file = Some(state);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let handle = DhtHandle::spawn(config)
            .await
            .with_context(|| format!("{}: cannot listen", args.listen))?;
        eprintln!(
            "shoal: DHT node {} listening on {}",
            handle.id().to_hex(),
            handle.local_addr()
        );
        let mut ticker = tokio::time::interval(Duration::from_secs(args.interval.max(1)));
        let stop = super::transfer::wait_for_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = ticker.tick() => {
                    let Some(s) = handle.stats().await else { break };
                    if args.json {
                        let line = json!({"event": "dht_stats", "nodes": s.nodes, "buckets": s.buckets,
                            "torrents": s.torrents_stored, "peers": s.peers_stored, "items": s.items_stored,
                            "packets_in": s.packets_in, "packets_out": s.packets_out,
                            "rate_limited": s.rate_limited, "bad_packets": s.bad_packets,
                            "lookups": s.lookups_running});
                        super::print(&format!("{line}\n"))?;
                    } else {
                        super::print(&format!(
                            "nodes {} ({} buckets), peers stored {} for {} torrents, items stored {}, packets in {} out {}, rate-limited {}, bad {}\n",
                            s.nodes, s.buckets, s.peers_stored, s.torrents_stored, s.items_stored,
                            s.packets_in, s.packets_out, s.rate_limited, s.bad_packets
                        ))?;
                    }
                }
            }
        }
        handle.shutdown().await;
        Ok(())
    })
}
