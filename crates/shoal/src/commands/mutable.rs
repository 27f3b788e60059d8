//! Torrents that change (BEP 46): `shoal dht publish` puts a torrent's info-hash in the
//! DHT under a key, and prints the `magnet:?xs=urn:btpk:…` link that follows it;
//! `shoal get` of such a link looks up the newest version and downloads it.
//!
//! Both run a short-lived DHT node ([`super::dht::with_node`]) before anything else.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;
use shoal_core::mutable::{info_hash_in, item_value, MutableLink};
use shoal_core::{InfoHash, Magnet};
use shoal_dht::driver::ItemQuery;
use shoal_dht::PutRequest;

use super::dht::{ClientArgs, NOT_DONE};
use super::dht_item::read_key;

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The torrent to publish: a .torrent file or an info-hash.
    #[arg(value_name = "TORRENT|INFOHASH")]
    pub torrent: String,
    /// Secret key file (from `shoal dht keygen`): the link follows this key.
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,
    /// The salt (text): one key can publish one torrent per salt.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub salt: String,
    /// The version [default: one above the newest found].
    #[arg(long, value_name = "N")]
    pub seq: Option<i64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn publish(args: PublishArgs) -> Result<()> {
    let info_hash = match args.torrent.parse::<InfoHash>() {
        Ok(hash) if !Path::new(&args.torrent).exists() => hash,
        _ => super::info::load_torrent(Path::new(&args.torrent))?.info_hash,
    };
    let signer = read_key(&args.key_file)?;
    let link = MutableLink::new(signer.public_key(), args.salt.as_bytes());
    let request = PutRequest::Mutable {
        salt: args.salt.clone().into_bytes(),
        value: item_value(info_hash),
        seq: args.seq,
        signer,
    };
    let outcome = super::dht::with_node(&args.client, true, |dht| async move {
        dht.put_item(request).await.map_err(anyhow::Error::from)
    })?;
    if args.client.json {
        let line = json!({
            "event": "published",
            "link": link.to_string(),
            "info_hash": info_hash.to_hex(),
            "seq": outcome.seq,
            "asked": outcome.asked,
            "stored": outcome.stored,
        });
        super::print(&format!("{line}\n"))?;
    } else {
        super::print(&format!("{link}\n"))?;
        eprintln!(
            "shoal: {} published as version {} on {} of the {} closest nodes; \
             publish again within 2 hours to keep it there",
            info_hash,
            outcome.seq.unwrap_or_default(),
            outcome.stored,
            outcome.asked
        );
    }
    if outcome.stored == 0 {
        eprintln!("shoal: no node took the item");
        std::process::exit(NOT_DONE);
    }
    Ok(())
}

/// The magnet link of the newest version `link` names, looked up in the DHT through
/// `client`, and reported as a JSON line with `client.json` (else on standard error).
pub fn resolve(link: &MutableLink, client: &ClientArgs) -> Result<Magnet> {
    let query = ItemQuery::Mutable {
        key: link.public_key,
        salt: link.salt.clone(),
    };
    let item = super::dht::with_node(client, true, |dht| async move {
        dht.get_item(query).await.map_err(anyhow::Error::from)
    })
    .with_context(|| format!("{link}: cannot look it up in the DHT"))?;
    let Some(item) = item else {
        bail!("{link}: no DHT node has its item (its publisher puts it again every 2 hours)");
    };
    let info_hash = info_hash_in(item.value())
        .with_context(|| format!("{link}: its item names no info-hash (no 20-byte 'ih')"))?;
    let seq = item.seq().unwrap_or_default();
    if client.json {
        super::line(json!({"event": "resolved", "link": link.to_string(),
            "seq": seq, "info_hash": info_hash.to_hex()}));
    } else {
        eprintln!("shoal: {link} is at version {seq}: {info_hash}");
    }
    Ok(link.resolved(info_hash)?)
}
