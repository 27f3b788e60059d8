//! `shoal dht`: a standalone DHT node, e.g. the bootstrap node of a private network.
//! It prints its counters every few seconds and saves its routing table on exit.
//! `shoal dht get|put|keygen` store and fetch BEP 44 items (see [`super::dht_item`]);
//! `shoal dht sample` lists info-hashes the DHT's nodes store (BEP 51, see
//! [`super::dht_sample`]); `shoal dht scrape` counts a torrent's seeds and peers (BEP 33,
//! see [`super::scrape`]). Those commands share a short-lived node ([`with_node`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use shoal_dht::driver::{DhtHandle, DriverConfig};

use super::transfer::default_state_dir;

/// Run a Mainline DHT node, or store, fetch and crawl in the DHT
///
/// Without a command: a node that runs until Ctrl-C, printing its statistics. `get`,
/// `put` and `keygen` store and fetch small items (BEP 44); `sample` crawls for the
/// info-hashes nodes store (BEP 51).
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// UDP address to listen on: an IPv4 one is a node in the IPv4 DHT, an IPv6 one in
    /// the IPv6 DHT (BEP 32), and `[::]:PORT` a node in each, on one port.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:6881")]
    pub listen: SocketAddr,
    /// A node to bootstrap from (HOST:PORT). Repeat for several.
    #[arg(long, value_name = "ADDR")]
    pub bootstrap: Vec<String>,
    /// Routing table file, loaded at start and saved on exit (the IPv6 node of `[::]`
    /// keeps its own beside it: dht6.state) [default: dht.state in the state folder].
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

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Fetch an item (BEP 44) from the DHT
    ///
    /// An immutable item by its hash, or the newest version of a mutable one by its public
    /// key (and salt). Prints the value; exit code 3 if no node has it.
    Get(super::dht_item::GetArgs),
    /// Store an item (BEP 44) in the DHT and print its target
    ///
    /// The target is the hash to fetch it by. With --key-file it is a mutable item signed
    /// with that key, one version above the newest the DHT holds. Items live about 2 hours
    /// unless put again; exit code 3 if no node took it.
    Put(super::dht_item::PutArgs),
    /// Write a new ed25519 secret key for mutable items to FILE and print its public key.
    Keygen(super::dht_item::KeygenArgs),
    /// Publish a torrent under your key (BEP 46) and print the link that follows it
    ///
    /// The link (magnet:?xs=urn:btpk:KEY&s=SALT) names your key, not one version: publish
    /// a newer torrent with the same key and salt, and `shoal get` of the link fetches
    /// that one. The DHT keeps the item about 2 hours unless it is published again; exit
    /// code 3 if no node took it.
    Publish(super::mutable::PublishArgs),
    /// Crawl the DHT for the info-hashes its nodes store (BEP 51)
    ///
    /// Prints each new info-hash; stops after --count of them, at --timeout, or when no
    /// node is left to ask. Exit code 3 if none was found.
    Sample(super::dht_sample::SampleArgs),
    /// Count a torrent's seeds and peers with no tracker (BEP 33 DHT scrape)
    ///
    /// The nodes around each info-hash answer with bloom filters of the seeds' and
    /// peers' IP addresses; their union is counted, so a peer announced to several nodes
    /// counts once. Estimates, exact for small swarms, saturating near 8000. Exit code 3
    /// if no node knew of any peer.
    Scrape(super::scrape::DhtArgs),
}

/// Exit code of `get`/`put`/`sample` when no node had (or took) what was asked.
pub const NOT_DONE: i32 = 3;

/// The options of every command that runs a short-lived node.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// A node to bootstrap from (HOST:PORT). Repeat for several
    /// [default: the public Mainline routers].
    #[arg(long, value_name = "ADDR")]
    pub bootstrap: Vec<String>,
    /// UDP address of this run's DHT node.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:0")]
    pub listen: SocketAddr,
    /// Routing table file, loaded at start and saved at the end
    /// [default: dht-client.state in the state folder].
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    match args.action {
        Some(Action::Get(args)) => super::dht_item::get(args),
        Some(Action::Put(args)) => super::dht_item::put(args),
        Some(Action::Keygen(args)) => super::dht_item::keygen(args),
        Some(Action::Publish(args)) => super::mutable::publish(args),
        Some(Action::Sample(args)) => super::dht_sample::run(args),
        Some(Action::Scrape(args)) => super::scrape::run_dht(args),
        None => run_node(args.node),
    }
}

/// Runs `work` against a fresh read-only DHT node (its routing table kept in the state
/// folder, so the next run starts from known nodes) and saves the table afterwards.
/// With `bounded`, `work` failing to finish within `--timeout` is an error; otherwise
/// `work` keeps its own time.
pub fn with_node<F, Fut, T>(args: &ClientArgs, bounded: bool, work: F) -> Result<T>
where
    F: FnOnce(DhtHandle) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let state = args
        .state
        .clone()
        .unwrap_or_else(|| default_state_dir().join("dht-client.state"));
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut config = DriverConfig::new(args.listen);
        config.dht.bootstrap = super::discovery::bootstrap_for(&args.bootstrap, args.listen).await;
        config.dht.seed = rand::random();
        // This node lives seconds: others should not keep it in their tables.
        config.dht.read_only = true;
        config.state_file = Some(state);
        let dht = DhtHandle::spawn(config)
            .await
            .with_context(|| format!("{}: cannot listen", args.listen))?;
        let result = if bounded {
            let limit = Duration::from_secs(args.timeout.max(1));
            match tokio::time::timeout(limit, work(dht.clone())).await {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!(
                    "the DHT lookup took longer than {} s",
                    limit.as_secs()
                )),
            }
        } else {
            work(dht.clone()).await
        };
        dht.shutdown().await;
        result
    })
}

fn run_node(args: NodeArgs) -> Result<()> {
    let bootstrap = super::discovery::resolve(&args.bootstrap, "DHT bootstrap");
    let state = args
        .state
        .unwrap_or_else(|| default_state_dir().join("dht.state"));
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    // On `[::]` a node in each DHT, as a bootstrap node for both: the IPv6 one keeps its
    // table beside the other's (`dht.state`, `dht6.state`).
    let dual = shoal_core::dual_stack::is_dual_stack(args.listen);
    let config = |ipv6: bool| {
        let mut config = DriverConfig::new(args.listen);
        config.dht.ipv6 = ipv6;
        config.dht.bootstrap = super::discovery::of_family(bootstrap.clone(), ipv6);
        config.dht.enforce_node_ids = args.enforce_node_ids;
        config.dht.seed = rand::random();
        config.state_file = Some(match dual && ipv6 {
            true => with_suffix(&state, "6"),
            false => state.clone(),
        });
        config
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let dhts = super::discovery::spawn_nodes(args.listen, None, config).await?;
        for (family, node) in dhts.nodes() {
            eprintln!(
                "shoal: DHT node {} listening on {} ({})",
                node.id().to_hex(),
                node.local_addr(),
                family.name()
            );
        }
        let mut ticker = tokio::time::interval(Duration::from_secs(args.interval.max(1)));
        let stop = super::transfer::wait_for_signal();
        tokio::pin!(stop);
        'running: loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = ticker.tick() => {
                    for (family, node) in dhts.nodes() {
                        let Some(s) = node.stats().await else { break 'running };
                        let family = family.name();
                        if args.json {
                            let line = json!({"event": "dht_stats", "family": family,
                                "nodes": s.nodes, "buckets": s.buckets,
                                "torrents": s.torrents_stored, "peers": s.peers_stored, "items": s.items_stored,
                                "packets_in": s.packets_in, "packets_out": s.packets_out,
                                "rate_limited": s.rate_limited, "bad_packets": s.bad_packets,
                                "lookups": s.lookups_running});
                            super::print(&format!("{line}\n"))?;
                        } else {
                            super::print(&format!(
                                "{family}: nodes {} ({} buckets), peers stored {} for {} torrents, items stored {}, packets in {} out {}, rate-limited {}, bad {}\n",
                                s.nodes, s.buckets, s.peers_stored, s.torrents_stored, s.items_stored,
                                s.packets_in, s.packets_out, s.rate_limited, s.bad_packets
                            ))?;
                        }
                    }
                }
            }
        }
        dhts.shutdown().await;
        Ok(())
    })
}

/// `path` with `suffix` after its file's stem: `dht.state` → `dht6.state`.
fn with_suffix(path: &std::path::Path, suffix: &str) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}{suffix}.{}", ext.to_string_lossy()),
        None => format!("{stem}{suffix}"),
    };
    path.with_file_name(name)
}
