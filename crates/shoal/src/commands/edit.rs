//! `shoal edit`: change what a `.torrent` says outside its info dictionary (trackers, web
//! seeds, DHT nodes, the comment), as `transmission-edit` does, so the info-hash and the
//! swarm stay the same. The info dictionary and every key shoal does not know are
//! written back byte for byte.

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde_json::json;
use shoal_core::{DhtNode, Metainfo};

use super::announcers::{parse_tier, with_extra, Tier};
use super::{print, write_atomically};

/// Change a torrent's trackers, web seeds, DHT nodes or comment; the info-hash stays the same.
///
/// The torrent is rewritten in place (through a temporary file and a rename) unless
/// --output names another file. Removals and replacements run before additions.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The .torrent file.
    #[arg(value_name = "TORRENT")]
    pub torrent: PathBuf,
    /// Write the result here instead of over TORRENT.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Add a tracker (http, https or udp) in a tier of its own after the others; URLs
    /// separated by commas go in one tier. Repeat for several (transmission-edit -a).
    #[arg(short = 'a', long = "add-tracker", value_name = "URL", value_parser = parse_tier)]
    pub add_trackers: Vec<Tier>,
    /// Remove this tracker URL wherever it is; empty tiers go too (transmission-edit -d).
    #[arg(short = 'd', long = "remove-tracker", value_name = "URL")]
    pub remove_trackers: Vec<String>,
    /// Replace the text OLD by NEW in every tracker URL, as when a private tracker changes
    /// its address or your passkey (transmission-edit -r).
    #[arg(short = 'r', long = "replace-tracker", num_args = 2, value_names = ["OLD", "NEW"])]
    pub replace_tracker: Vec<String>,
    /// Remove every tracker (before any --add-tracker).
    #[arg(long)]
    pub clear_trackers: bool,
    /// Add a web seed (BEP 19): an http or https URL. Repeat for several.
    #[arg(long = "add-web-seed", value_name = "URL")]
    pub add_web_seeds: Vec<String>,
    /// Remove this web seed URL.
    #[arg(long = "remove-web-seed", value_name = "URL")]
    pub remove_web_seeds: Vec<String>,
    /// Add a DHT node to bootstrap from (BEP 5 `nodes`): HOST:PORT, [IPv6]:PORT.
    #[arg(long = "add-dht-node", value_name = "ADDR")]
    pub add_dht_nodes: Vec<DhtNode>,
    /// Remove every DHT node.
    #[arg(long)]
    pub clear_dht_nodes: bool,
    /// Set the comment.
    #[arg(long, value_name = "TEXT", conflicts_with = "no_comment")]
    pub comment: Option<String>,
    /// Remove the comment.
    #[arg(long)]
    pub no_comment: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let mut metainfo = super::info::load_torrent(&args.torrent)?;
    super::create::check_web_seeds(&args.add_web_seeds)?;
    if metainfo.info.private && !args.add_dht_nodes.is_empty() {
        bail!("the torrent is private (BEP 27): its peers never use the DHT");
    }
    let before = metainfo.to_bytes();
    edit(&mut metainfo, &args);
    let bytes = metainfo.to_bytes();
    let changed = bytes != before;
    let output = args.output.clone().unwrap_or_else(|| args.torrent.clone());
    if changed || output != args.torrent {
        write_atomically(&output, &bytes, true)?;
    }
    if args.json {
        let nodes: Vec<String> = metainfo.nodes.iter().map(ToString::to_string).collect();
        let json = json!({
            "torrent": output.display().to_string(),
            "info_hash": metainfo.info_hash.to_hex(),
            "changed": changed,
            "trackers": metainfo.trackers,
            "url_list": metainfo.url_list,
            "dht_nodes": nodes,
            "comment": metainfo.comment,
        });
        print(&format!("{json}\n"))
    } else {
        let what = if changed { "written" } else { "unchanged" };
        print(&format!(
            "torrent:   {} ({what})\ninfo-hash: {}\n",
            output.display(),
            metainfo.info_hash
        ))
    }
}

/// Applies the edits: removals and replacements first, then additions.
fn edit(metainfo: &mut Metainfo, args: &Args) {
    let mut trackers = std::mem::take(&mut metainfo.trackers);
    if args.clear_trackers {
        trackers.clear();
    }
    for tier in &mut trackers {
        tier.retain(|url| !args.remove_trackers.contains(url));
        for pair in args.replace_tracker.chunks_exact(2) {
            for url in tier.iter_mut() {
                *url = url.replace(&pair[0], &pair[1]);
            }
        }
    }
    // A replacement may have made two URLs the same: the first stays.
    let mut seen = std::collections::HashSet::new();
    for tier in &mut trackers {
        tier.retain(|url| seen.insert(url.clone()));
    }
    trackers.retain(|tier| !tier.is_empty());
    metainfo.trackers = with_extra(&trackers, &args.add_trackers);

    metainfo
        .url_list
        .retain(|url| !args.remove_web_seeds.contains(url));
    for url in &args.add_web_seeds {
        if !metainfo.url_list.contains(url) {
            metainfo.url_list.push(url.clone());
        }
    }

    if args.clear_dht_nodes {
        metainfo.nodes.clear();
    }
    for node in &args.add_dht_nodes {
        if !metainfo.nodes.contains(node) {
            metainfo.nodes.push(node.clone());
        }
    }

    if args.no_comment || args.comment.is_some() {
        // The UTF-8 twin some clients write would otherwise outlive the change.
        metainfo.extra.remove(&b"comment.utf-8"[..]);
        metainfo.comment = args.comment.clone();
    }
}
