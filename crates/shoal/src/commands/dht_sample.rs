//! `shoal dht sample`: crawl the DHT for the info-hashes its nodes store peers for, with
//! BEP 51's `sample_infohashes` (what DHT indexers and search engines are built on).
//!
//! The crawl starts at the bootstrap nodes and asks every node it hears of once, a few at
//! a time, each about a random target so that the nodes each one names spread over the
//! whole id space. Every new info-hash is printed as it comes; the crawl ends after
//! `--count` of them, at `--timeout`, or when no node is left to ask.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use shoal_dht::driver::{DhtHandle, SampleReply};
use shoal_dht::NodeId;
use tokio::task::JoinSet;

use super::dht::{ClientArgs, NOT_DONE};

/// Nodes waiting to be asked, and addresses remembered as seen, at most: a crawl of the
/// public DHT meets millions.
const MAX_QUEUE: usize = 100_000;
const MAX_SEEN: usize = 1_000_000;

#[derive(Debug, clap::Args)]
pub struct SampleArgs {
    /// Stop after this many distinct info-hashes.
    #[arg(long, value_name = "N", default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// Nodes asked at once (1–64).
    #[arg(long, value_name = "N", default_value_t = 16,
        value_parser = clap::value_parser!(u64).range(1..=64))]
    pub parallel: u64,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// What a crawl did.
#[derive(Debug, Default)]
struct Crawl {
    found: HashSet<NodeId>,
    asked: usize,
    sampled: usize,
}

pub fn run(args: SampleArgs) -> Result<()> {
    let client = &args.client;
    let crawl = super::dht::with_node(client, false, |dht| async {
        let start = super::discovery::bootstrap_for(&client.bootstrap, client.listen).await;
        crawl(dht, start, &args).await
    })?;
    let line = format!(
        "{} info-hashes from {} of the {} nodes asked",
        crawl.found.len(),
        crawl.sampled,
        crawl.asked
    );
    if client.json {
        let done = json!({"event": "sample_done", "info_hashes": crawl.found.len(),
            "nodes_asked": crawl.asked, "nodes_sampled": crawl.sampled});
        super::print(&format!("{done}\n"))?;
    } else {
        eprintln!("shoal: {line}");
    }
    if crawl.found.is_empty() {
        eprintln!("shoal: no node answered with an info-hash");
        std::process::exit(NOT_DONE);
    }
    Ok(())
}

async fn crawl(dht: DhtHandle, start: Vec<SocketAddr>, args: &SampleArgs) -> Result<Crawl> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.client.timeout.max(1));
    let mut queue: VecDeque<SocketAddr> = start.iter().copied().collect();
    let mut seen: HashSet<SocketAddr> = start.into_iter().collect();
    let mut asking: JoinSet<(SocketAddr, Option<SampleReply>)> = JoinSet::new();
    let mut crawl = Crawl::default();
    loop {
        while asking.len() < args.parallel as usize {
            let Some(addr) = queue.pop_front() else { break };
            let dht = dht.clone();
            let target = NodeId(rand::random());
            asking.spawn(async move { (addr, dht.sample_infohashes(addr, target).await.ok()) });
        }
        let joined = tokio::select! {
            joined = asking.join_next() => joined,
            _ = tokio::time::sleep_until(deadline) => break,
        };
        // Nothing in flight and nothing queued: every node heard of was asked.
        let Some(Ok((from, reply))) = joined else {
            break;
        };
        crawl.asked += 1;
        let Some(reply) = reply else { continue };
        if let Some(sample) = reply.sample {
            crawl.sampled += 1;
            for hash in sample.samples {
                if (crawl.found.len() as u64) < args.count && crawl.found.insert(hash) {
                    let line = match args.client.json {
                        true => json!({"event": "info_hash", "info_hash": hash.to_hex(),
                            "from": from.to_string()})
                        .to_string(),
                        false => hash.to_hex(),
                    };
                    super::print(&format!("{line}\n"))?;
                }
            }
            if crawl.found.len() as u64 >= args.count {
                break;
            }
        }
        for node in reply.nodes {
            let addr = node.addr;
            if queue.len() < MAX_QUEUE && seen.len() < MAX_SEEN && seen.insert(addr) {
                queue.push_back(addr);
            }
        }
    }
    Ok(crawl)
}
