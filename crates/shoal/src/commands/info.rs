//! `shoal info`: show what a `.torrent` file or a magnet link holds.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use shoal_core::mutable::MutableLink;
use shoal_core::{Magnet, Metainfo, MAX_TORRENT_SIZE};
use shoal_proxy::Proxy;
use shoal_tracker::driver::http::HttpConfig;
use shoal_tracker::TrackerUrl;

use super::print;
use shoal_core::units::format_size;

/// Show a torrent's name, info-hash, pieces, files, trackers and magnet link.
///
/// Reads .torrent files from any client. File paths are shown as shoal would write them:
/// sanitised so that nothing can land outside the download folder.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A .torrent file, its http(s) URL, or a magnet link.
    pub torrent: String,
    /// Print one JSON object with the keys name, info_hash (info_hash_v2 and format for
    /// v2 and hybrid torrents), piece_length, piece_count,
    /// total_size (the files' bytes), padding_size (BEP 47 padding between them), files
    /// ([{path, size}]), trackers (list of tiers) and magnet.
    #[arg(long)]
    pub json: bool,
}

/// Reads and parses a `.torrent` file, refusing oversized files before reading them.
pub fn load_torrent(path: &Path) -> Result<Metainfo> {
    let name = path.display();
    let file = std::fs::File::open(path).with_context(|| format!("{name}: cannot open"))?;
    let size = file
        .metadata()
        .with_context(|| format!("{name}: cannot read"))?
        .len();
    if !file.metadata().map(|m| m.is_file()).unwrap_or(false) {
        bail!("{name}: not a regular file");
    }
    if size > MAX_TORRENT_SIZE as u64 {
        bail!("{name}: {size} bytes is more than the {MAX_TORRENT_SIZE}-byte limit for a .torrent file");
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_TORRENT_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{name}: cannot read"))?;
    Metainfo::from_bytes(&bytes).with_context(|| format!("{name}: not a valid torrent"))
}

/// Whether a command-line torrent names a web address rather than a file.
pub fn is_url(arg: &str) -> bool {
    let lower = arg.get(..8).unwrap_or(arg).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Downloads and parses a `.torrent` from an http(s) URL (as aria2 and Transmission
/// take one), through `proxy` if given: at most [`MAX_TORRENT_SIZE`] bytes, within a
/// minute, redirects followed under the tracker client's rules.
pub fn fetch_torrent(url: &str, proxy: Option<Arc<Proxy>>) -> Result<Metainfo> {
    let parsed = TrackerUrl::parse(url).with_context(|| format!("{url}: not a usable URL"))?;
    let config = HttpConfig {
        timeout: Duration::from_secs(60),
        max_body: MAX_TORRENT_SIZE,
        proxy,
        ..HttpConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let bytes = runtime
        .block_on(shoal_tracker::driver::http::get(
            &parsed,
            &parsed.path,
            &config,
        ))
        .with_context(|| format!("{url}: cannot download the torrent"))?;
    Metainfo::from_bytes(&bytes).with_context(|| format!("{url}: not a valid torrent"))
}

/// Bytes of the torrent's files, and of the padding (BEP 47) between them, which is in
/// its pieces but on no one's disk.
fn sizes(m: &Metainfo) -> (u64, u64) {
    let padding: u64 = m
        .info
        .files
        .iter()
        .filter(|f| f.attr.padding)
        .map(|f| f.length)
        .sum();
    (m.info.total_length - padding, padding)
}

fn torrent_json(m: &Metainfo) -> Value {
    let (total, padding) = sizes(m);
    let files: Vec<Value> = m
        .info
        .files
        .iter()
        .filter(|f| !f.attr.padding)
        .map(|f| {
            let mut entry = json!({ "path": f.display_path(), "size": f.length });
            if let Some(target) = &f.symlink_target {
                entry["symlink"] = json!(target.join("/"));
            }
            if f.attr.executable {
                entry["executable"] = json!(true);
            }
            entry
        })
        .collect();
    json!({
        "name": m.info.name,
        "info_hash": m.info_hash.to_hex(),
        "info_hash_v2": m.info_hash_v2.map(|h| shoal_core::hex::encode(&h)),
        "format": format(m),
        "piece_length": m.info.piece_length,
        "piece_count": m.info.piece_count(),
        "total_size": total,
        "padding_size": padding,
        "files": files,
        "trackers": m.trackers,
        "magnet": m.magnet().to_string(),
        "private": m.info.private,
        "source": m.info.source,
        "multi_file": m.info.multi_file,
        "comment": m.comment,
        "created_by": m.created_by,
        "creation_date": m.creation_date,
        "url_list": m.url_list,
        "dht_nodes": m.nodes.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// Which BEP the torrent follows: v1 (BEP 3), v2 (BEP 52) or both (a hybrid).
fn format(m: &Metainfo) -> &'static str {
    match (m.info_hash_v2.is_some(), m.info.is_merkle()) {
        (false, _) => "v1",
        (true, false) => "hybrid (v1 and v2)",
        (true, true) => "v2",
    }
}

fn torrent_text(m: &Metainfo) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: &str| out.push_str(&format!("{label:<14} {value}\n"));
    line("name:", &m.info.name);
    line("info-hash:", &m.info_hash.to_hex());
    if let Some(v2) = &m.info_hash_v2 {
        line("info-hash v2:", &shoal_core::hex::encode(v2));
    }
    line("format:", format(m));
    line(
        "piece length:",
        &format_size(u64::from(m.info.piece_length)),
    );
    line("pieces:", &m.info.piece_count().to_string());
    let (total, padding) = sizes(m);
    let padding = match padding {
        0 => String::new(),
        bytes => format!(", and {} of padding", format_size(bytes)),
    };
    line(
        "total size:",
        &format!("{} ({total} bytes{padding})", format_size(total)),
    );
    line("private:", if m.info.private { "yes" } else { "no" });
    if let Some(source) = &m.info.source {
        line("source:", source);
    }
    if let Some(by) = &m.created_by {
        line("created by:", by);
    }
    if let Some(date) = m.creation_date {
        line("created:", &format_timestamp(date));
    }
    if let Some(comment) = &m.comment {
        line("comment:", comment);
    }
    for (i, tier) in m.trackers.iter().enumerate() {
        line(
            if i == 0 { "trackers:" } else { "" },
            &format!("tier {}: {}", i + 1, tier.join(" ")),
        );
    }
    if m.trackers.is_empty() {
        line("trackers:", "none");
    }
    for url in &m.url_list {
        line("web seed:", url);
    }
    for node in &m.nodes {
        line("DHT node:", &node.to_string());
    }
    line("magnet:", &m.magnet().to_string());
    let files: Vec<_> = m.info.files.iter().filter(|f| !f.attr.padding).collect();
    out.push_str(&format!("files ({}):\n", files.len()));
    // Numbered from 1, as `shoal get --select-file` takes them.
    for (number, f) in files.iter().enumerate().map(|(i, f)| (i + 1, f)) {
        let link = f
            .symlink_target
            .as_ref()
            .map(|t| format!(" -> {}", t.join("/")))
            .unwrap_or_default();
        let executable = if f.attr.executable && f.symlink_target.is_none() {
            " (executable)"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {number:>4}  {:>12}  {}{link}{executable}\n",
            f.length,
            f.display_path()
        ));
    }
    out
}

fn magnet_json(m: &Magnet) -> Value {
    json!({
        "name": m.name,
        "info_hash": m.info_hash.to_hex(),
        "info_hash_v2": m.info_hash_v2.map(|h| shoal_core::hex::encode(&h)),
        "piece_length": null,
        "piece_count": null,
        "total_size": null,
        "padding_size": null,
        "files": [],
        "trackers": m.trackers.iter().map(|t| vec![t]).collect::<Vec<_>>(),
        "magnet": m.to_string(),
        "peers": m.peers,
    })
}

fn magnet_text(m: &Magnet) -> String {
    let mut out = format!(
        "name:          {}\n",
        m.name
            .as_deref()
            .unwrap_or("(unknown until the metadata is fetched)")
    );
    out.push_str(&format!("info-hash:     {}\n", m.info_hash));
    for (i, t) in m.trackers.iter().enumerate() {
        out.push_str(&format!(
            "{:<14} tier {}: {t}\n",
            if i == 0 { "trackers:" } else { "" },
            i + 1
        ));
    }
    for p in &m.peers {
        out.push_str(&format!("peer:          {p}\n"));
    }
    out.push_str(&format!("magnet:        {m}\n"));
    out
}

pub fn run(args: Args) -> Result<()> {
    let text = if args
        .torrent
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("magnet:"))
    {
        if let Ok(link) = args.torrent.parse::<MutableLink>() {
            return print(&mutable_text(&link, args.json));
        }
        let magnet: Magnet = args.torrent.parse().context("not a valid magnet link")?;
        if args.json {
            format!("{}\n", magnet_json(&magnet))
        } else {
            magnet_text(&magnet)
        }
    } else {
        let metainfo = match is_url(&args.torrent) {
            true => fetch_torrent(&args.torrent, None)?,
            false => load_torrent(Path::new(&args.torrent))?,
        };
        if args.json {
            format!("{}\n", torrent_json(&metainfo))
        } else {
            torrent_text(&metainfo)
        }
    };
    print(&text)
}

/// A BEP 46 link: whose key it follows; what it names now is in the DHT.
fn mutable_text(link: &MutableLink, json: bool) -> String {
    let key = shoal_core::hex::encode(&link.public_key);
    let salt = String::from_utf8_lossy(&link.salt);
    if json {
        let value = json!({"public_key": key, "salt": salt, "magnet": link.to_string()});
        return format!("{value}\n");
    }
    format!(
        "publisher key: {key}\nsalt:          {salt}\nthe torrent it names now is in the DHT: `shoal get` \
         of the link looks it up\n"
    )
}

/// A Unix timestamp as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian calendar).
pub fn format_timestamp(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(format_timestamp(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_timestamp(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(format_timestamp(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_timestamp(-1), "1969-12-31 23:59:59 UTC");
    }
}
