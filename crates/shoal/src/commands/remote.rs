//! `shoal remote`: the client of a running `shoal daemon`'s API, as transmission-remote
//! is transmission-daemon's.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{header, Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use shoal_core::units::format_size;

use super::daemon::{given_token, read_kept_token, Limit, DEFAULT_RPC};
use super::transfer::{default_state_dir, parse_source, Source};

/// Drive a running `shoal daemon`: add torrents and magnet links, list and show them,
/// choose their files, move them, pause, resume, verify, reannounce and remove them,
/// change its limits
///
/// A torrent is named by its info-hash or any beginning of it that no other torrent
/// shares. Exit codes: 0 done, 1 the daemon refused or could not be reached.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon's API address (its --rpc).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_RPC, global = true)]
    pub rpc: SocketAddr,
    /// The daemon's token (its --token) [default: $SHOAL_RPC_TOKEN, else the one the
    /// daemon keeps in STATE_DIR/daemon/rpc-token].
    #[arg(long, value_name = "TOKEN", global = true)]
    pub token: Option<String>,
    /// The daemon's state folder, where its token is (its --state-dir)
    /// [default: $XDG_DATA_HOME/shoal or ~/.local/share/shoal].
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// Print the daemon's JSON answer instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show the daemon: its version, port, torrents, connections, rate and seed limits
    /// and DHT nodes; with a limit's flag, change that limit first (until the daemon
    /// restarts)
    Session {
        /// Upload limit of all torrents together in bytes per second (e.g. 1M; 0 for none).
        #[arg(long, value_name = "RATE", value_parser = parse_rate_or_none)]
        max_up: Option<u64>,
        /// Download limit of all torrents together (e.g. 10M; 0 for none).
        #[arg(long, value_name = "RATE", value_parser = parse_rate_or_none)]
        max_down: Option<u64>,
        /// Torrents without a ratio of their own stop seeding once they have uploaded
        /// RATIO times what they hold, over all their runs (or `none`).
        #[arg(long, value_name = "RATIO|none", value_parser = Limit::parse)]
        seed_ratio: Option<Limit>,
        /// Torrents without a seed time of their own stop seeding after MINUTES of it,
        /// over all their runs (or `none`).
        #[arg(long, value_name = "MINUTES|none", value_parser = Limit::parse)]
        seed_time: Option<Limit>,
    },
    /// List the torrents: state, progress, rates and peers
    List,
    /// Add a .torrent file (or its http(s) URL), a magnet link or an info-hash
    Add {
        #[arg(value_name = "TORRENT|MAGNET|INFOHASH")]
        torrent: String,
        /// Download into this folder instead of the daemon's.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Add it stopped; `resume` starts it.
        #[arg(long)]
        paused: bool,
        /// Download only these files, numbered from 1 as `shoal info` lists them:
        /// `2`, `1,3-5` (as `get --select-file`).
        #[arg(long, value_name = "LIST")]
        select_file: Option<String>,
        /// Fetch pieces in order, to read a file while it downloads.
        #[arg(long)]
        sequential: bool,
    },
    /// Show one torrent in full
    Show { id: String },
    /// List a torrent's files: how much of each is here, and which are wanted
    Files { id: String },
    /// Change which files a torrent fetches, in what order, how long it seeds, or its
    /// own rate limits (a change of files or order restarts a running torrent; nothing
    /// it has is fetched or checked again)
    Set {
        id: String,
        /// The files to download (`1,3-5`), or `all`.
        #[arg(long, value_name = "LIST|all")]
        select_file: Option<String>,
        /// Fetch pieces in order.
        #[arg(long, conflicts_with = "rarest_first")]
        sequential: bool,
        /// Fetch the rarest pieces first (the default, best for the swarm).
        #[arg(long)]
        rarest_first: bool,
        /// Stop seeding once it has uploaded RATIO times what it holds, over all its
        /// runs; `none` seeds on, `session` keeps to the daemon's --seed-ratio.
        #[arg(long, value_name = "RATIO|none|session", value_parser = Limit::parse)]
        seed_ratio: Option<Limit>,
        /// Stop seeding after MINUTES of it over all its runs; `none` seeds on,
        /// `session` keeps to the daemon's --seed-time.
        #[arg(long, value_name = "MINUTES|none|session", value_parser = Limit::parse)]
        seed_time: Option<Limit>,
        /// Its own upload limit in bytes per second (e.g. 500K; 0 for none), within the
        /// daemon's.
        #[arg(long, value_name = "RATE", value_parser = parse_rate_or_none)]
        max_up: Option<u64>,
        /// Its own download limit (e.g. 2M; 0 for none), within the daemon's.
        #[arg(long, value_name = "RATE", value_parser = parse_rate_or_none)]
        max_down: Option<u64>,
    },
    /// Move a torrent's files to another folder, where it downloads from now on
    Move {
        id: String,
        /// The folder its file or folder goes into.
        dir: PathBuf,
    },
    /// Stop a torrent (its connections close; it stays in the list, paused)
    Pause { id: String },
    /// Start a paused torrent again
    Resume { id: String },
    /// Hash a torrent's data again, whatever its resume state says (after the disk
    /// misbehaved, or its files were changed behind its back): a running torrent
    /// fetches again what fails; a paused one is checked and stays paused
    Verify { id: String },
    /// Ask a running torrent's trackers for more peers now (as soon as their minimum
    /// interval allows; failing trackers are tried again too)
    Reannounce { id: String },
    /// Take a torrent out of the daemon
    Remove {
        id: String,
        /// Delete its downloaded files too (only those the torrent names).
        #[arg(long)]
        delete_data: bool,
    },
}

pub fn run(args: Args) -> Result<()> {
    let token = given_token(&args.token)
        .or_else(|| read_kept_token(&args.state_dir.clone().unwrap_or_else(default_state_dir)));
    let (method, path, body) = request(&args.command)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let request = (method, path.as_str(), body, patience(&args.command));
    let answer = runtime.block_on(call(args.rpc, token.as_deref(), request))?;
    if args.json {
        return super::print(&format!("{answer}\n"));
    }
    super::print(&describe(&args.command, &answer))
}

/// The API request a command makes.
fn request(command: &Command) -> Result<(Method, String, Option<Value>)> {
    let id = |id: &str| -> Result<String> {
        match !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => Ok(id.to_ascii_lowercase()),
            false => bail!("{id}: not an info-hash (or the beginning of one, in hex)"),
        }
    };
    Ok(match command {
        Command::Session {
            max_up: None,
            max_down: None,
            seed_ratio: None,
            seed_time: None,
        } => (Method::GET, "/api/session".into(), None),
        Command::Session {
            max_up,
            max_down,
            seed_ratio,
            seed_time,
        } => {
            let body = json!({"max_up": max_up, "max_down": max_down,
                              "seed_ratio": seed_ratio, "seed_time": seed_time});
            (Method::POST, "/api/session".into(), Some(body))
        }
        Command::List => (Method::GET, "/api/torrents".into(), None),
        Command::Add {
            torrent,
            dir,
            paused,
            select_file,
            sequential,
        } => {
            let mut body = match parse_source(torrent, None)? {
                Source::Torrent(metainfo) => {
                    json!({"torrent": shoal_core::hex::encode(&metainfo.to_bytes())})
                }
                Source::Magnet(magnet) => json!({"magnet": magnet.to_string()}),
            };
            if let Some(dir) = dir {
                // The daemon's working folder is not ours.
                let dir = std::path::absolute(dir)
                    .with_context(|| format!("{}: no such folder", dir.display()))?;
                body["dir"] = json!(dir);
            }
            body["paused"] = json!(paused);
            body["files"] = json!(select_file);
            body["sequential"] = json!(sequential);
            (Method::POST, "/api/torrents".into(), Some(body))
        }
        Command::Show { id: name } | Command::Files { id: name } => {
            (Method::GET, format!("/api/torrents/{}", id(name)?), None)
        }
        Command::Set {
            id: name,
            select_file,
            sequential,
            rarest_first,
            seed_ratio,
            seed_time,
            max_up,
            max_down,
        } => {
            let order = match (sequential, rarest_first) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            if select_file.is_none()
                && order.is_none()
                && seed_ratio.is_none()
                && seed_time.is_none()
                && max_up.is_none()
                && max_down.is_none()
            {
                bail!("nothing to change: give --select-file, --sequential, --rarest-first, --seed-ratio, --seed-time, --max-up or --max-down");
            }
            let path = format!("/api/torrents/{}/set", id(name)?);
            let body = json!({"files": select_file, "sequential": order,
                              "seed_ratio": seed_ratio, "seed_time": seed_time,
                              "max_up": max_up, "max_down": max_down});
            (Method::POST, path, Some(body))
        }
        Command::Move { id: name, dir } => {
            let dir = std::path::absolute(dir)
                .with_context(|| format!("{}: not a folder", dir.display()))?;
            let path = format!("/api/torrents/{}/move", id(name)?);
            (Method::POST, path, Some(json!({"dir": dir})))
        }
        Command::Pause { id: name } => {
            let path = format!("/api/torrents/{}/pause", id(name)?);
            (Method::POST, path, Some(json!({})))
        }
        Command::Resume { id: name } => {
            let path = format!("/api/torrents/{}/resume", id(name)?);
            (Method::POST, path, Some(json!({})))
        }
        Command::Verify { id: name } => {
            let path = format!("/api/torrents/{}/verify", id(name)?);
            (Method::POST, path, Some(json!({})))
        }
        Command::Reannounce { id: name } => {
            let path = format!("/api/torrents/{}/reannounce", id(name)?);
            (Method::POST, path, Some(json!({})))
        }
        Command::Remove {
            id: name,
            delete_data,
        } => {
            let path = format!("/api/torrents/{}/remove", id(name)?);
            (
                Method::POST,
                path,
                Some(json!({"delete_data": delete_data})),
            )
        }
    })
}

/// A rate as `--max-up` takes it, where 0 means no limit.
fn parse_rate_or_none(text: &str) -> Result<u64, String> {
    match text.trim() {
        "0" => Ok(0),
        rate => shoal_core::units::parse_rate(rate).map_err(|e| e.to_string()),
    }
}

/// The most of an answer read: a list of a thousand torrents is well under it.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// How long a command waits for the daemon's answer: a move copies whole files across
/// file systems, and a pause or a removal waits for a move under way.
fn patience(command: &Command) -> std::time::Duration {
    match command {
        Command::Move { .. } | Command::Pause { .. } | Command::Remove { .. } => {
            std::time::Duration::from_secs(24 * 3600)
        }
        _ => std::time::Duration::from_secs(30),
    }
}

/// Makes one request (method, path, body, how long to wait) of the daemon at `rpc` and
/// returns its JSON answer; a refusal becomes an error with the daemon's reason.
async fn call(
    rpc: SocketAddr,
    token: Option<&str>,
    (method, path, body, wait): (Method, &str, Option<Value>, std::time::Duration),
) -> Result<Value> {
    let unreachable = || format!("{rpc}: no daemon answers (is `shoal daemon` running there?)");
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(rpc)
            .await
            .with_context(unreachable)?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(unreachable)?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, rpc.to_string());
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let bytes = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let response = sender
            .send_request(request.body(Full::new(bytes))?)
            .await
            .with_context(unreachable)?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the daemon's answer: {e}"))?
            .to_bytes();
        anyhow::Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(wait, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("{rpc}: no answer within {wait:?}"))??;
    let answer: Value = serde_json::from_slice(&body)
        .with_context(|| format!("{rpc}: answered {status} with something other than JSON"))?;
    if !status.is_success() {
        let reason = answer["error"].as_str().unwrap_or("no reason given");
        bail!("the daemon refused ({status}): {reason}");
    }
    Ok(answer)
}

/// An answer as text for a person.
fn describe(command: &Command, answer: &Value) -> String {
    match command {
        Command::List => {
            let torrents = answer["torrents"].as_array().cloned().unwrap_or_default();
            let mut out = format!(
                "{:<10} {:<17} {:>6} {:>10} {:>11} {:>11} {:>5} {:>5}  NAME\n",
                "ID", "STATE", "DONE", "SIZE", "DOWN", "UP", "PEERS", "RATIO"
            );
            for torrent in &torrents {
                out.push_str(&row(torrent));
            }
            out
        }
        Command::Session { .. } => {
            let connections = &answer["connections"];
            let limit = |key: &str| match answer[key].as_u64() {
                Some(rate) => format!("{}/s", format_size(rate)),
                None => "unlimited".to_string(),
            };
            let mut out = format!(
                "shoal {}, peers connect to {}\n{} torrents, {} of {} connections open\nlimits: up {}, down {}\nseeding: {}\n",
                answer["version"].as_str().unwrap_or("?"),
                answer["listen"].as_str().unwrap_or("?"),
                answer["torrents"],
                connections["open"],
                connections["limit"],
                limit("max_up"),
                limit("max_down"),
                seed_limits(answer, None),
            );
            if let Some(dht) = answer["dht"].as_object() {
                for (family, node) in dht {
                    out.push_str(&format!("DHT ({family}): {} nodes\n", node["nodes"]));
                }
            }
            out
        }
        Command::Show { .. } => show(answer),
        Command::Files { .. } => {
            let files = answer["files"].as_array().cloned().unwrap_or_default();
            let mut out = format!(
                "{:>4} {:>6} {:>10} {:<4}  PATH\n",
                "#", "DONE", "SIZE", "WANT"
            );
            for file in &files {
                let (size, have) = (
                    file["size"].as_u64().unwrap_or(0),
                    file["have"].as_u64().unwrap_or(0),
                );
                let done = match size {
                    0 => 100.0,
                    size => have as f64 * 100.0 / size as f64,
                };
                out.push_str(&format!(
                    "{:>4} {:>5.1}% {:>10} {:<4}  {}\n",
                    file["number"],
                    done,
                    format_size(size),
                    if file["wanted"] == true { "yes" } else { "no" },
                    printable(file["path"].as_str().unwrap_or("")),
                ));
            }
            out
        }
        Command::Set { id, .. } => format!("changed {id}\n"),
        Command::Add { .. } => format!("added {}\n", answer["info_hash"].as_str().unwrap_or("")),
        Command::Pause { id } => format!("paused {id}\n"),
        Command::Move { id, dir } => format!("moved {id} to {}\n", dir.display()),
        Command::Resume { id } => format!("resumed {id}\n"),
        Command::Verify { id } => format!("checking {id}\n"),
        Command::Reannounce { id } => format!("asking the trackers of {id}\n"),
        Command::Remove { id, .. } => format!("removed {id}\n"),
    }
}

/// One torrent for a person, as `transmission-remote -i` shows one: the figures, then
/// its trackers and its peers.
fn show(torrent: &Value) -> String {
    let status = &torrent["status"];
    let text = |value: &Value| printable(value.as_str().unwrap_or("-"));
    let size = |value: &Value| value.as_u64().map_or("-".into(), format_size);
    let rate = |key: &str| rate_of(status, key);
    let done = done_of(torrent);
    let mut state = text(&status["state"]);
    if let Some(error) = status["error"].as_str() {
        state = format!("{state}: {}", printable(error));
    }
    let eta = status["eta_secs"].as_u64().map_or("-".into(), |secs| {
        format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    });
    let mut out = format!(
        "{}\n  info-hash  {}\n  state      {state}\n  done       {done} of {} wanted ({} in all)\n  \
         folder     {}\n  rates      down {}, up {}\n  limits     down {}, up {}\n  this run   down {}, up {}\n  \
         all runs   down {}, up {}, ratio {}, seeded {} min\n  seeding    {}\n  \
         eta        {eta}\n  order      {}\n",
        text(&torrent["name"]),
        text(&torrent["info_hash"]),
        size(&torrent["wanted_size"]),
        size(&torrent["size"]),
        text(&torrent["dir"]),
        rate("download_rate"),
        rate("upload_rate"),
        own_limit(&torrent["max_down"]),
        own_limit(&torrent["max_up"]),
        size(&status["downloaded"]),
        size(&status["uploaded"]),
        size(&status["totals"]["downloaded"]),
        size(&status["totals"]["uploaded"]),
        ratio_of(torrent),
        status["totals"]["seeding_secs"].as_u64().unwrap_or(0) / 60,
        seed_limits(&torrent["seed_limit"], Some(torrent)),
        if torrent["sequential"] == true { "sequential" } else { "rarest first" },
    );
    let trackers = torrent["trackers"].as_array().cloned().unwrap_or_default();
    if !trackers.is_empty() {
        out.push_str("trackers\n");
    }
    for tracker in &trackers {
        let said = match (&tracker["answered_at"], tracker["message"].as_str()) {
            (_, Some(message)) => printable(message),
            (Value::Number(_), None) => {
                let count = |key: &str| tracker[key].as_u64().map_or("?".into(), |n| n.to_string());
                format!(
                    "{} seeders, {} leechers",
                    count("seeders"),
                    count("leechers")
                )
            }
            _ => "no answer yet".into(),
        };
        out.push_str(&format!("  {}  {said}\n", text(&tracker["url"])));
    }
    let peers = torrent["peers"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("peers ({})\n", peers.len()));
    for peer in &peers {
        out.push_str(&format!(
            "  {:<22} {:<20} down {:>11} up {:>11}\n",
            text(&peer["addr"]),
            text(&peer["client"]),
            format!(
                "{}/s",
                format_size(peer["download_rate"].as_u64().unwrap_or(0))
            ),
            format!(
                "{}/s",
                format_size(peer["upload_rate"].as_u64().unwrap_or(0))
            ),
        ));
    }
    out
}

/// A status's rate (`download_rate`, `upload_rate`) for a person.
fn rate_of(status: &Value, key: &str) -> String {
    format!(
        "{}/s",
        format_size(status[key].as_f64().unwrap_or(0.0) as u64)
    )
}

/// A torrent's own rate limit, for a person.
fn own_limit(rate: &Value) -> String {
    match rate.as_u64() {
        Some(rate) => format!("{}/s", format_size(rate)),
        None => "the daemon's".into(),
    }
}

/// A torrent's ratio (over all its runs), for a person.
fn ratio_of(torrent: &Value) -> String {
    match torrent["ratio"].as_f64() {
        Some(ratio) => format!("{ratio:.2}"),
        None => "-".into(),
    }
}

/// Seed limits (`seed_ratio`, `seed_time`: a number or `none`) for a person; those
/// that `own` (a torrent's) leaves to the session are marked so.
fn seed_limits(limits: &Value, own: Option<&Value>) -> String {
    let limit = |key: &str, unit: &str| {
        let from = match own.is_some_and(|own| own[key] == "session") {
            true => " (the daemon's)",
            false => "",
        };
        limits[key].as_f64().map(|n| format!("{n}{unit}{from}"))
    };
    let limits: Vec<String> = [
        limit("seed_ratio", "").map(|l| format!("to ratio {l}")),
        limit("seed_time", " min").map(|l| format!("for {l}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    match limits.is_empty() {
        true => "until stopped".into(),
        false => limits.join(", or "),
    }
}

/// How much of what a torrent wants is here, for a person.
fn done_of(torrent: &Value) -> String {
    match torrent["progress"].as_f64() {
        Some(progress) => format!("{:.1}%", progress * 100.0),
        None => "-".into(),
    }
}

fn row(torrent: &Value) -> String {
    let status = &torrent["status"];
    let rate = |key: &str| rate_of(status, key);
    let done = done_of(torrent);
    let size = torrent["size"].as_u64().map_or("-".into(), format_size);
    let id = torrent["info_hash"].as_str().unwrap_or("");
    format!(
        "{:<10} {:<17} {:>6} {:>10} {:>11} {:>11} {:>5} {:>5}  {}\n",
        id.get(..8).unwrap_or(id),
        status["state"].as_str().unwrap_or("?"),
        done,
        size,
        rate("download_rate"),
        rate("upload_rate"),
        status["peers"].as_u64().unwrap_or(0),
        ratio_of(torrent),
        printable(torrent["name"].as_str().unwrap_or("")),
    )
}

/// `text` without control characters or bidirectional overrides: a torrent's name, a
/// tracker's message and a peer's client are anybody's, and escape codes would drive
/// the user's terminal, overrides disguise the text.
fn printable(text: &str) -> String {
    use shoal_core::metainfo::path::is_deceptive;
    text.chars()
        .map(|c| if is_deceptive(c) { '?' } else { c })
        .collect()
}
