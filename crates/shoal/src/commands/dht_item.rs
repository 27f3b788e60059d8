//! `shoal dht get|put|keygen`: small items stored in the DHT itself (BEP 44), as
//! libtorrent's `dht_get_item`/`dht_put_item` do.
//!
//! Each run starts a short-lived DHT node ([`super::dht::with_node`]), runs one lookup
//! and prints the outcome. An
//! immutable item is found by the SHA-1 of its value; a mutable one by its publisher's
//! public key and a salt, and only the holder of the secret key can publish a newer
//! version of it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;
use shoal_core::InfoHash;
use shoal_dht::driver::ItemQuery;
use shoal_dht::{Item, ItemSigner, PutRequest};

use super::dht::NOT_DONE;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["target", "key"])))]
pub struct GetArgs {
    /// The immutable item's target: the SHA-1 of its bencoded value (40 hex digits).
    pub target: Option<String>,
    /// The public key (64 hex digits) of a mutable item.
    #[arg(long, value_name = "HEX", conflicts_with = "target")]
    pub key: Option<String>,
    /// The mutable item's salt (text).
    #[arg(long, value_name = "TEXT", default_value = "", requires = "key")]
    pub salt: String,
    #[command(flatten)]
    pub client: super::dht::ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct PutArgs {
    /// The value: text, stored as a bencoded string (at most about 1000 bytes).
    pub value: String,
    /// VALUE is already bencoded (e.g. 'li1ei2ee' or 'd3:key5:valuee') and is stored as is.
    #[arg(long)]
    pub bencoded: bool,
    /// Secret key file (from `shoal dht keygen`, or libtorrent's 64-byte key in hex):
    /// store a mutable item signed with it.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// The mutable item's salt (text): one key can publish one item per salt.
    #[arg(long, value_name = "TEXT", default_value = "", requires = "key_file")]
    pub salt: String,
    /// The mutable item's version [default: one above the newest found].
    #[arg(long, value_name = "N", requires = "key_file")]
    pub seq: Option<i64>,
    #[command(flatten)]
    pub client: super::dht::ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the secret key (hex); an existing file is never overwritten.
    pub file: PathBuf,
    /// Print the public key as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn get(args: GetArgs) -> Result<()> {
    let query = match (&args.target, &args.key) {
        (Some(target), _) => {
            let hash: InfoHash = target
                .parse()
                .with_context(|| format!("{target}: not an item target"))?;
            ItemQuery::Immutable(hash.into())
        }
        (None, Some(key)) => {
            if args.salt.len() > shoal_dht::item::MAX_SALT {
                anyhow::bail!(
                    "--salt: {} bytes; a salt is at most {}",
                    args.salt.len(),
                    shoal_dht::item::MAX_SALT
                );
            }
            ItemQuery::Mutable {
                key: public_key(key)?,
                salt: args.salt.clone().into_bytes(),
            }
        }
        (None, None) => unreachable!("clap requires a target or a key"),
    };
    let item = super::dht::with_node(&args.client, true, |dht| async move {
        dht.get_item(query).await.map_err(anyhow::Error::from)
    })?;
    let Some(item) = item else {
        eprintln!("shoal: no node had that item (an item lives about 2 hours unless put again)");
        std::process::exit(NOT_DONE);
    };
    let text = text_of(item.value());
    if args.client.json {
        let mut out = json!({
            "event": "item",
            "target": item.target().to_hex(),
            "value": text,
            "bencoded_hex": hex(item.value()),
        });
        if let Item::Mutable(m) = &item {
            out["key"] = json!(hex(&m.key));
            out["seq"] = json!(m.seq);
        }
        return super::print(&format!("{out}\n"));
    }
    if let Some(seq) = item.seq() {
        eprintln!("shoal: version {seq}");
    }
    match text {
        Some(text) => super::print(&format!("{text}\n")),
        // Not a string: the bencoded value itself, as bytes.
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(item.value())
                .and_then(|()| out.write_all(b"\n"))
                .context("writing to standard output")
        }
    }
}

pub fn put(args: PutArgs) -> Result<()> {
    let value = if args.bencoded {
        args.value.clone().into_bytes()
    } else {
        let mut v = format!("{}:", args.value.len()).into_bytes();
        v.extend_from_slice(args.value.as_bytes());
        v
    };
    let request = match &args.key_file {
        None => PutRequest::Immutable(Item::immutable(value).context("cannot store that value")?),
        Some(path) => {
            let signer = read_key(path)?;
            // Checks the value, salt and version now rather than after the lookup.
            signer
                .sign(args.salt.as_bytes(), args.seq.unwrap_or(0), value.clone())
                .context("cannot store that value")?;
            PutRequest::Mutable {
                signer,
                salt: args.salt.clone().into_bytes(),
                value,
                seq: args.seq,
            }
        }
    };
    let key = match &request {
        PutRequest::Mutable { signer, .. } => Some(hex(&signer.public_key())),
        PutRequest::Immutable(_) => None,
    };
    let outcome = super::dht::with_node(&args.client, true, |dht| async move {
        dht.put_item(request).await.map_err(anyhow::Error::from)
    })?;
    if args.client.json {
        let line = json!({
            "event": "stored",
            "target": outcome.target.to_hex(),
            "key": key,
            "seq": outcome.seq,
            "asked": outcome.asked,
            "stored": outcome.stored,
            "outdated": outcome.outdated,
        });
        super::print(&format!("{line}\n"))?;
    } else {
        super::print(&format!("{}\n", outcome.target.to_hex()))?;
        let version = outcome
            .seq
            .map(|s| format!(" (version {s})"))
            .unwrap_or_default();
        eprintln!(
            "shoal: stored on {} of the {} closest nodes{version}",
            outcome.stored, outcome.asked
        );
    }
    if outcome.outdated > 0 {
        eprintln!(
            "shoal: {} of them hold a newer version; put again without --seq to go above it",
            outcome.outdated
        );
    }
    if outcome.stored == 0 {
        eprintln!("shoal: no node took the item");
        std::process::exit(NOT_DONE);
    }
    Ok(())
}

pub fn keygen(args: KeygenArgs) -> Result<()> {
    let seed: [u8; 32] = rand::random();
    let signer = ItemSigner::from_secret(&seed).expect("32 bytes");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&args.file)
        .with_context(|| format!("{}: cannot create", args.file.display()))?;
    file.write_all(format!("{}\n", hex(&seed)).as_bytes())
        .with_context(|| format!("{}: cannot write", args.file.display()))?;
    let public = hex(&signer.public_key());
    if args.json {
        let line = json!({"event": "key", "file": args.file, "public_key": public});
        super::print(&format!("{line}\n"))
    } else {
        super::print(&format!("{public}\n"))
    }
}

/// The value as text when it is a bencoded string of UTF-8.
fn text_of(value: &[u8]) -> Option<String> {
    let colon = value.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&value[..colon]).ok()?.parse().ok()?;
    let body = value.get(colon + 1..)?;
    (body.len() == len)
        .then(|| String::from_utf8(body.to_vec()).ok())
        .flatten()
}

pub fn public_key(text: &str) -> Result<[u8; 32]> {
    unhex(text)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .with_context(|| format!("{text}: a public key is 64 hex digits"))
}

/// Reads a secret key file: 64 hex digits (a seed, as `keygen` writes) or 128
/// (libtorrent's expanded form).
pub fn read_key(path: &Path) -> Result<ItemSigner> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let bytes =
        unhex(text.trim()).with_context(|| format!("{}: not a key in hex", path.display()))?;
    ItemSigner::from_secret(&bytes).with_context(|| format!("{}", path.display()))
}

use shoal_core::hex::{decode as unhex, encode as hex};
