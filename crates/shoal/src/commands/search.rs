//! `shoal index` publishes a search index of torrents to the DHT; `shoal search` queries
//! the indexes of the indexers it is told to follow (see `shoal-search`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use shoal_core::{InfoHash, Magnet};
use shoal_search::dht::{publish, DhtSource, Published};
use shoal_search::local::{Listed, LocalHit, LocalIndex};
use shoal_search::similar::{similarity, similarity_keys};
use shoal_search::{entries_of, query_terms, Entry, QueryError, Term, Tree};

use super::dht::{ClientArgs, NOT_DONE};

/// Publish a search index of torrents to the DHT, signed with your key
///
/// Anyone who knows the index's public key (printed) can then `shoal search --indexer
/// KEY` it. Each run replaces the index with the torrents given; items live about 2
/// hours, so run it again hourly, or keep it running with --keep. Exit code 3 if some of
/// the index was stored nowhere.
#[derive(Debug, clap::Args)]
pub struct IndexArgs {
    /// The .torrent files to index (by the words of their names and file paths).
    #[arg(required = true)]
    pub torrents: Vec<PathBuf>,
    /// Secret key file (from `shoal dht keygen`): the index's identity.
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,
    /// Tree nodes stored at once (1–64).
    #[arg(long, value_name = "N", default_value_t = 8,
        value_parser = clap::value_parser!(u64).range(1..=64))]
    pub parallel: u64,
    /// Stay up and publish again every --every seconds until Ctrl-C, so that the index
    /// does not expire (DHT items live about 2 hours).
    #[arg(long)]
    pub keep: bool,
    /// Seconds between publishes with --keep.
    #[arg(long, value_name = "SECS", default_value_t = 3600, requires = "keep")]
    pub every: u64,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Where searches keep what they found.
#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    /// The local search index: what searches found (and what you index), answered at
    /// once next time, offline too [default: search/ in the state folder].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Neither read nor write the local search index.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
}

impl CacheArgs {
    /// The local index, unless turned off; a cache that cannot be opened is a warning,
    /// not the end of the search.
    fn open(&self) -> Option<LocalIndex> {
        if self.no_cache {
            return None;
        }
        let dir = self
            .cache_dir
            .clone()
            .unwrap_or_else(|| super::transfer::default_state_dir().join("search"));
        match LocalIndex::open_or_reset(&dir, unix_now()) {
            Ok((index, moved)) => {
                if let Some(moved) = moved {
                    eprintln!(
                        "shoal: the search cache could not be read; it was moved to {} and a new one started",
                        moved.display()
                    );
                }
                Some(index)
            }
            Err(e) => {
                eprintln!("shoal: {e}; going on without it");
                None
            }
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Adds what was found to the local index; trouble there is a warning.
fn remember(cache: &mut Option<LocalIndex>, found: Vec<Listed>) {
    let Some(index) = cache else {
        return;
    };
    if found.is_empty() {
        return;
    }
    if let Err(e) = index.add(found, unix_now()) {
        eprintln!("shoal: results not kept: {e}");
    }
}

/// Search the DHT indexes of the indexers you follow
///
/// Every word must match; a word ending in * matches as a prefix. Answers come from the
/// indexers' trees in the DHT, then from the local index of what earlier searches found,
/// where a word of four or more letters also matches with one letter wrong (--offline
/// answers from it alone, at once). Prints a magnet link, the size and the name of each
/// torrent found; exit code 3 if none.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// Words to find, e.g. `ubuntu server` or `ubu*`.
    #[arg(required_unless_present = "like")]
    pub words: Vec<String>,
    /// Find torrents related to this one instead: a .torrent file, or a name. Related
    /// means sharing most of the words of the name (see --min-similarity).
    #[arg(long, value_name = "TORRENT|NAME", conflicts_with = "words")]
    pub like: Option<String>,
    /// With --like: the least share of words in common (Jaccard index, 0–1).
    #[arg(long, value_name = "X", default_value_t = 0.3, requires = "like")]
    pub min_similarity: f64,
    /// An indexer's public key (64 hex digits). Repeat for several. With --offline,
    /// only these indexers' torrents are shown (all if none given).
    #[arg(long, value_name = "HEX", required_unless_present = "offline")]
    pub indexer: Vec<String>,
    /// Answer from the local index only, without the DHT.
    #[arg(long, conflicts_with = "no_cache")]
    pub offline: bool,
    /// Show at most this many torrents.
    #[arg(long, value_name = "N", default_value_t = 200,
        value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub limit: u64,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn run_index(args: IndexArgs) -> Result<()> {
    let signer = super::dht_item::read_key(&args.key_file)?;
    let mut entries = Vec::new();
    for path in &args.torrents {
        entries.extend(entries_of(&super::info::load_torrent(path)?));
    }
    // What you index, you can find offline: the local index holds exactly this index.
    let public = signer.public_key();
    if let Some(mut index) = args.cache.open() {
        let own = entries.iter().map(|e| Listed::from_entry(e, public));
        if let Err(e) = index.replace_indexer(public, own, unix_now()) {
            eprintln!("shoal: the local search index was not updated: {e}");
        }
    }
    let tree = Tree::build(entries);
    let key = shoal_core::hex::encode(&public);
    let report = |published: &Published, version: i64| -> Result<()> {
        if args.client.json {
            let line = json!({"event": "published", "indexer": key,
                "torrents": args.torrents.len(), "nodes": published.nodes,
                "unstored": published.unstored, "copies": published.copies,
                "version": version});
            super::print(&format!("{line}\n"))?;
        } else {
            super::print(&format!("{key}\n"))?;
            eprintln!(
                "shoal: indexed {} torrents in {} tree nodes, stored on {} DHT nodes in all",
                args.torrents.len(),
                published.nodes,
                published.copies
            );
        }
        if published.unstored > 0 {
            eprintln!(
                "shoal: {} of the tree's nodes were stored nowhere; searches will miss what they hold",
                published.unstored
            );
        }
        Ok(())
    };
    let every = Duration::from_secs(args.every.max(1));
    let (signer, tree, report) = (&signer, &tree, &report);
    // No overall time limit: every put's lookup ends by itself (each query times out),
    // and a big index takes as long as its nodes take.
    let last = super::dht::with_node(&args.client, false, |dht| async move {
        let stop = super::transfer::wait_for_signal();
        tokio::pin!(stop);
        let mut last = None;
        loop {
            // Each publish's version is the time: newer than any earlier one's.
            let version = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs() as i64);
            let parallel = args.parallel as usize;
            let published = tokio::select! {
                _ = &mut stop => return Ok(last),
                published = publish(&dht, signer, tree, version, parallel) => published,
            };
            match published {
                Ok(published) => {
                    report(&published, version)?;
                    last = Some(published);
                }
                // With --keep, one failed round is not the end: the next may work.
                Err(e) if args.keep => eprintln!("shoal: publishing failed: {e}"),
                Err(e) => return Err(e.into()),
            }
            if !args.keep {
                return Ok(last);
            }
            tokio::select! {
                _ = &mut stop => return Ok(last),
                _ = tokio::time::sleep(every) => {}
            }
        }
    })?;
    if last.is_none_or(|p| p.unstored > 0) {
        std::process::exit(NOT_DONE);
    }
    Ok(())
}

pub fn run_search(args: SearchArgs) -> Result<()> {
    let mut indexers = Vec::new();
    for key in &args.indexer {
        indexers.push(super::dht_item::public_key(key)?);
    }
    let like = match &args.like {
        Some(like) => Some(like_name(like)?),
        None => None,
    };
    let terms: Vec<Term> = match &like {
        // Each similarity key is looked up whole; what they return is ranked below.
        Some((name, _)) => similarity_keys(name).into_iter().map(Term::Word).collect(),
        None => args.words.iter().flat_map(|w| query_terms(w)).collect(),
    };
    if terms.is_empty() {
        anyhow::bail!("no word to search for (words are letters and digits, 2 or more)");
    }
    let mut cache = args.cache.open();
    if args.offline && cache.is_none() {
        anyhow::bail!("--offline needs the local search index, and it cannot be opened");
    }
    let mut local: Vec<LocalHit> = Vec::new();
    if let Some(index) = &cache {
        let limit = args.limit as usize;
        let hits = match &like {
            Some((name, _)) => index.related(name, &indexers, limit.max(RELATED_CANDIDATES)),
            None => index.search(&terms, &indexers, limit),
        };
        match hits {
            Ok(hits) => local = hits,
            Err(e) => eprintln!("shoal: the local search index failed: {e}"),
        }
    }
    // The local side may have had more than it was asked for.
    let local_full = like.is_none() && local.len() == args.limit as usize;
    let mut out = Results {
        args: &args,
        like: like.as_ref(),
        shown: BTreeSet::new(),
        cut: false,
    };
    if args.offline {
        out.show(cached(local), false)?;
    } else {
        // The DHT failing as a whole (no node answered in --timeout) leaves the cache's
        // answers, if it has any; with none, it is an error, not "nothing found".
        let (dht, answered, truncated) = match search_dht(&args, indexers, &terms, like.is_some()) {
            Ok(found) => found,
            Err(e) if !local.is_empty() => {
                eprintln!("shoal: {e:#}; showing the local index's answers alone");
                (Vec::new(), BTreeSet::new(), false)
            }
            Err(e) => return Err(e),
        };
        // A cached torrent that an indexer's tree once listed under every term, and that
        // the tree's complete answer now leaves out, has left the index: it is forgotten,
        // not shown. (Only for words: --like's lookups return candidates, not every
        // relative.)
        let listed: BTreeSet<(InfoHash, [u8; 32])> =
            dht.iter().map(|l| (l.info_hash, l.indexer)).collect();
        let (stale, local): (Vec<LocalHit>, Vec<LocalHit>) = local.into_iter().partition(|h| {
            let h = &h.listed;
            like.is_none()
                && answered.contains(&h.indexer)
                && !listed.contains(&(h.info_hash, h.indexer))
                && h.confirmed_under(&terms)
        });
        let found = dht.iter().map(|l| {
            let entry = Entry::new("", l.info_hash, &l.name, l.size);
            (entry, l.indexer, DHT)
        });
        if like.is_some() {
            // Ranked together by similarity.
            out.show(found.chain(cached(local)), truncated)?;
        } else {
            out.show(found, truncated)?;
            // Then what only the local index knows: near words, or indexers that did not
            // answer.
            out.show(cached(local), false)?;
        }
        if let Some(index) = &mut cache {
            let stale = stale.iter().map(|h| (h.listed.indexer, h.listed.info_hash));
            if let Err(e) = index.forget(stale) {
                eprintln!("shoal: the local search index failed: {e}");
            }
        }
        remember(&mut cache, dht);
    }
    out.cut |= local_full && out.shown.len() >= args.limit as usize;
    if out.cut {
        eprintln!("shoal: more torrents matched than --limit {}", args.limit);
    }
    if out.shown.is_empty() {
        eprintln!("shoal: nothing found");
        std::process::exit(NOT_DONE);
    }
    Ok(())
}

/// What the indexers' trees in the DHT list for `terms`, by indexer; the indexers whose
/// answer was complete; and whether any was cut short.
#[allow(clippy::type_complexity)]
fn search_dht(
    args: &SearchArgs,
    indexers: Vec<[u8; 32]>,
    terms: &[Term],
    any: bool,
) -> Result<(Vec<Listed>, BTreeSet<[u8; 32]>, bool)> {
    let terms = terms.to_vec();
    let words: Vec<String> = terms
        .iter()
        .filter_map(|t| match t {
            Term::Word(w) => Some(w.clone()),
            Term::Prefix(_) => None,
        })
        .collect();
    super::dht::with_node(&args.client, true, |dht| async move {
        let mut all: Vec<Listed> = Vec::new();
        let mut answered = BTreeSet::new();
        let mut truncated = false;
        for indexer in indexers {
            let source = DhtSource {
                dht: dht.clone(),
                indexer,
            };
            let hex = shoal_core::hex::encode(&indexer);
            // One indexer's trouble is a warning: the others' results still count.
            match matching(&source, &terms, any).await {
                Ok(found) => {
                    if found.truncated {
                        eprintln!("shoal: indexer {hex}: too many matches, only some are shown (use longer words)");
                    }
                    if found.missing > 0 {
                        eprintln!(
                            "shoal: indexer {hex}: {} of its tree's nodes were not found in the DHT; some matches may be missing",
                            found.missing
                        );
                    }
                    if !found.truncated && found.missing == 0 {
                        answered.insert(indexer);
                    }
                    truncated |= found.truncated;
                    all.extend(found.entries.iter().map(|e| {
                        let mut listed = Listed::from_entry(e, indexer);
                        // Every word matched: the tree lists the torrent under each.
                        if !any {
                            listed.words.extend(words.iter().cloned());
                        }
                        listed
                    }));
                }
                Err(QueryError::NoTree) => eprintln!(
                    "shoal: indexer {hex} has no index in the DHT (not published, or expired)"
                ),
                Err(e) => eprintln!("shoal: indexer {hex}: {e}"),
            }
        }
        Ok((merge(all), answered, truncated))
    })
}

/// One [`Listed`] per (torrent, indexer), with every keyword it was found under.
fn merge(all: Vec<Listed>) -> Vec<Listed> {
    let mut merged: BTreeMap<(InfoHash, [u8; 32]), Listed> = BTreeMap::new();
    for listed in all {
        match merged.get_mut(&(listed.info_hash, listed.indexer)) {
            Some(known) => known.words.extend(listed.words),
            None => {
                merged.insert((listed.info_hash, listed.indexer), listed);
            }
        }
    }
    merged.into_values().collect()
}

/// Where a result came from (`source` in JSON).
const DHT: &str = "dht";
const CACHE: &str = "cache";

/// Local hits as results.
fn cached(hits: Vec<LocalHit>) -> impl Iterator<Item = (Entry, [u8; 32], &'static str)> {
    hits.into_iter().map(|LocalHit { listed: l, .. }| {
        (
            Entry::new("", l.info_hash, &l.name, l.size),
            l.indexer,
            CACHE,
        )
    })
}

/// Candidates the local index gives `--like` at least, before they are ranked by
/// similarity and cut to `--limit`.
const RELATED_CANDIDATES: usize = 1000;

/// What has been printed, so that each torrent is printed once and at most `--limit`.
struct Results<'a> {
    args: &'a SearchArgs,
    like: Option<&'a (String, Option<InfoHash>)>,
    shown: BTreeSet<InfoHash>,
    /// Some matches were not shown for the limit.
    cut: bool,
}

impl Results<'_> {
    /// Prints the torrents of `found` not printed yet: with --like, those similar enough
    /// (most similar first); otherwise in the order given.
    fn show(
        &mut self,
        found: impl IntoIterator<Item = (Entry, [u8; 32], &'static str)>,
        truncated: bool,
    ) -> Result<()> {
        let mut found: Vec<(Entry, [u8; 32], &str, Option<f64>)> = found
            .into_iter()
            .filter(|(e, _, _)| !self.shown.contains(&e.info_hash))
            .map(|(e, indexer, source)| {
                let score = self.like.map(|(name, _)| similarity(name, &e.name));
                (e, indexer, source, score)
            })
            .filter(|(e, _, _, score)| match (self.like, score) {
                (Some((_, own)), Some(score)) => {
                    *score >= self.args.min_similarity && Some(e.info_hash) != *own
                }
                _ => true,
            })
            .collect();
        found.sort_by(|a, b| b.3.partial_cmp(&a.3).unwrap_or(std::cmp::Ordering::Equal));
        for (entry, indexer, source, score) in found {
            if !self.shown.insert(entry.info_hash) {
                continue;
            }
            if self.shown.len() > self.args.limit as usize {
                self.shown.remove(&entry.info_hash);
                self.cut = true;
                break;
            }
            let magnet = Magnet {
                info_hash: entry.info_hash,
                info_hash_v2: None,
                name: Some(entry.name.clone()),
                trackers: Vec::new(),
                peers: Vec::new(),
                web_seeds: Vec::new(),
                select_only: Vec::new(),
            };
            let line = if self.args.client.json {
                json!({"event": "result", "info_hash": entry.info_hash.to_hex(),
                    "name": entry.name, "size": entry.size, "magnet": magnet.to_string(),
                    "indexer": shoal_core::hex::encode(&indexer), "source": source,
                    "truncated": truncated, "similarity": score})
                .to_string()
            } else {
                match score {
                    Some(score) => {
                        format!("{magnet}  {}  {}  ({score:.2})", entry.size, entry.name)
                    }
                    None => format!("{magnet}  {}  {}", entry.size, entry.name),
                }
            };
            super::print(&format!("{line}\n"))?;
        }
        Ok(())
    }
}

/// What one indexer's tree answered.
struct Matches {
    entries: Vec<Entry>,
    /// A walk was cut short at its node limit: some matches are not listed.
    truncated: bool,
    /// Tree nodes the DHT did not have: what they held is not listed.
    missing: usize,
}

/// The entries matching every term (by info-hash), or any term with `any`.
async fn matching(source: &DhtSource, terms: &[Term], any: bool) -> Result<Matches, QueryError> {
    let mut result: Option<BTreeMap<InfoHash, Entry>> = None;
    let (mut truncated, mut missing) = (false, 0);
    // All terms' lookups at once: a search costs the slowest of them, not their sum.
    let mut lookups = tokio::task::JoinSet::new();
    for (i, term) in terms.iter().cloned().enumerate() {
        let source = source.clone();
        lookups.spawn(async move {
            let found = match term {
                Term::Prefix(p) => shoal_search::prefix(&source, &p).await,
                Term::Word(w) => shoal_search::lookup(&source, &w).await,
            };
            (i, found)
        });
    }
    let mut founds = Vec::new();
    while let Some(joined) = lookups.join_next().await {
        let (i, found) = joined.map_err(|_| QueryError::Unavailable)?;
        founds.push((i, found?));
    }
    founds.sort_by_key(|(i, _)| *i);
    for (_, found) in founds {
        truncated |= found.truncated;
        missing += found.missing;
        let hits: BTreeMap<InfoHash, Entry> = found
            .entries
            .into_iter()
            .map(|e| (e.info_hash, e))
            .collect();
        result = Some(match result {
            None => hits,
            Some(mut before) if any => {
                before.extend(hits);
                before
            }
            Some(before) => {
                let keep: BTreeSet<InfoHash> = hits.keys().copied().collect();
                before
                    .into_iter()
                    .filter(|(h, _)| keep.contains(h))
                    .collect()
            }
        });
    }
    Ok(Matches {
        entries: result.unwrap_or_default().into_values().collect(),
        truncated,
        missing,
    })
}

/// The name to find relatives of, and the torrent's own info-hash when given a .torrent.
fn like_name(like: &str) -> Result<(String, Option<InfoHash>)> {
    let path = std::path::Path::new(like);
    if like.ends_with(".torrent") || path.is_file() {
        let metainfo = super::info::load_torrent(path)?;
        return Ok((metainfo.info.name, Some(metainfo.info_hash)));
    }
    Ok((like.to_owned(), None))
}
