//! Search benchmark: what an index costs to publish and to query.
//!
//! 1. In memory: an index of `--torrents` synthetic torrents (names of 3–6 words drawn
//!    from a 5 000-word vocabulary with Zipf-like frequencies, so a few words are in
//!    thousands of names), its tree's size, and the DHT gets that word and prefix
//!    lookups take.
//! 2. The local index (`shoal_search::local`, tantivy) of `--local-torrents` such
//!    torrents: how long adding them takes, its size on disk, and query latency for
//!    words, two words, prefixes and words with a letter wrong.
//! 3. Over a real DHT: `--nodes` shoal DHT nodes over UDP on 127.0.9.x (port 19900), one
//!    publishing a `--dht-torrents` index, others looking words up: publish time and
//!    lookup latency.
//!
//! `cargo run --release -p shoal-search --example search_bench -- [--torrents N]
//! [--local-torrents N] [--nodes N] [--dht-torrents N]`; prints a Markdown table for docs/BENCHMARKS.md.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_core::InfoHash;
use shoal_dht::driver::{DhtHandle, DriverConfig};
use shoal_dht::ItemSigner;
use shoal_search::dht::{publish, DhtSource};
use shoal_search::keyword::keywords;
use shoal_search::label::Label;
use shoal_search::query::QueryError;
use shoal_search::similar::{similarity, similarity_keys};
use shoal_search::{lookup, prefix, Entry, NodeSource, PhtNode, Tree};

#[derive(Clone)]
struct Counted {
    nodes: Arc<BTreeMap<Label, PhtNode>>,
    gets: Arc<AtomicUsize>,
}

impl NodeSource for Counted {
    async fn get(&self, label: Label) -> Result<Option<PhtNode>, QueryError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        Ok(self.nodes.get(&label).cloned())
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A made-up but pronounceable word for rank `i`.
fn word(i: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "su", "te", "ra", "no", "vi", "de", "an", "ex", "or", "ul", "zi", "po",
        "he",
    ];
    let mut w = String::new();
    let mut n = i + 16;
    while n > 0 {
        w.push_str(SYLLABLES[n % 16]);
        n /= 16;
    }
    w
}

/// Zipf-like: rank r drawn with weight 1/(r+1).
fn zipf(rng: &mut StdRng, cumulative: &[f64]) -> usize {
    let x = rng.gen::<f64>() * cumulative[cumulative.len() - 1];
    cumulative.partition_point(|&c| c < x)
}

fn corpus(torrents: usize, seed: u64) -> Vec<(InfoHash, String)> {
    let vocabulary = 5000;
    let mut cumulative = Vec::with_capacity(vocabulary);
    let mut total = 0.0;
    for r in 0..vocabulary {
        total += 1.0 / (r as f64 + 1.0);
        cumulative.push(total);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    (0..torrents)
        .map(|_| {
            let n = rng.gen_range(3..=6);
            let name: Vec<String> = (0..n).map(|_| word(zipf(&mut rng, &cumulative))).collect();
            (InfoHash(rng.gen()), name.join(" "))
        })
        .collect()
}

/// What `entries_of` makes of a torrent with this name: its keywords and similarity keys.
fn entries(corpus: &[(InfoHash, String)]) -> Vec<Entry> {
    corpus
        .iter()
        .flat_map(|(h, name)| {
            let mut words = keywords(name);
            words.extend(similarity_keys(name));
            words.into_iter().map(move |w| Entry::new(&w, *h, name, 1))
        })
        .collect()
}

fn percentile(v: &mut [usize], p: f64) -> usize {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn percentile_ms(v: &mut [Duration], p: f64) -> f64 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
}

/// Part 2: the local full-text index.
fn local_index(torrents: usize) {
    use shoal_search::local::{Listed, LocalIndex};
    use shoal_search::query_terms;
    let corpus = corpus(torrents, 3);
    let dir = tempfile::tempdir().unwrap();
    let mut index = LocalIndex::open(dir.path()).unwrap();
    let indexer = [7u8; 32];
    let started = Instant::now();
    let batch = corpus.iter().map(|(h, name)| Listed {
        info_hash: *h,
        name: name.clone(),
        size: 1,
        indexer,
        words: Vec::new(),
    });
    index.add(batch, 1_800_000_000).unwrap();
    let add_s = started.elapsed().as_secs_f64();
    let disk: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    // Opening again checks every file's checksum (the files are in the page cache, as
    // after a recent search).
    drop(index);
    let started = Instant::now();
    let index = LocalIndex::open(dir.path()).unwrap();
    let open_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut rng = StdRng::seed_from_u64(4);
    let timed = |query: &str, want: Option<&InfoHash>| -> (Duration, bool) {
        let terms: Vec<_> = query.split(' ').flat_map(query_terms).collect();
        let started = Instant::now();
        let hits = index.search(&terms, &[indexer], 20).unwrap();
        let took = started.elapsed();
        (
            took,
            want.is_none_or(|h| hits.iter().any(|x| x.listed.info_hash == *h)),
        )
    };
    let mut rows: Vec<(&str, Vec<Duration>, usize)> = Vec::new();
    for kind in [
        "one word",
        "two words of a name",
        "3-letter prefix",
        "two words of a name, one with a letter wrong",
    ] {
        let mut times = Vec::new();
        let mut found = 0;
        for _ in 0..300 {
            let (hash, name) = &corpus[rng.gen_range(0..corpus.len())];
            let words: Vec<&str> = name.split(' ').collect();
            let (query, want) = match kind {
                "one word" => (words[0].to_owned(), None),
                "two words of a name" => (format!("{} {}", words[0], words[1]), Some(hash)),
                "3-letter prefix" => (format!("{}*", &words[0][..3]), None),
                _ => {
                    // The first word, a letter in its middle replaced.
                    let mut chars: Vec<char> = words[0].chars().collect();
                    let mid = chars.len() / 2;
                    chars[mid] = if chars[mid] == 'q' { 'j' } else { 'q' };
                    let typo: String = chars.into_iter().collect();
                    (format!("{typo} {}", words[1]), Some(hash))
                }
            };
            let (took, hit) = timed(&query, want);
            times.push(took);
            found += usize::from(hit);
        }
        rows.push((kind, times, found));
    }
    println!();
    println!("| local index, {torrents} torrents | |");
    println!("|---|---|");
    println!("| add all (one batch, with commit) | {add_s:.1} s |");
    println!("| size on disk | {:.1} MiB |", disk as f64 / 1_048_576.0);
    println!("| open, every file's checksum checked | {open_ms:.0} ms |");
    for (kind, mut times, found) in rows {
        let recall = match kind {
            "one word" | "3-letter prefix" => String::new(),
            _ => format!("; the torrent among the first 20: {found} of 300"),
        };
        println!(
            "| {kind}, top 20: median / p99 | {:.2} / {:.2} ms{recall} |",
            percentile_ms(&mut times.clone(), 0.5),
            percentile_ms(&mut times, 0.99)
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let torrents = arg("--torrents", 10_000);
    let nodes = arg("--nodes", 100);
    let dht_torrents = arg("--dht-torrents", 1000);

    // 1. In memory.
    let corpus1 = corpus(torrents, 1);
    let all = entries(&corpus1);
    let started = Instant::now();
    let tree = Tree::build(all.clone());
    let build_ms = started.elapsed().as_secs_f64() * 1000.0;
    let leaves: Vec<usize> = tree
        .nodes
        .values()
        .filter_map(|n| match n {
            PhtNode::Leaf(e) => Some(e.len()),
            PhtNode::Internal { .. } => None,
        })
        .collect();
    let gets = Arc::new(AtomicUsize::new(0));
    let source = Counted {
        nodes: Arc::new(tree.nodes.clone()),
        gets: gets.clone(),
    };
    let mut rng = StdRng::seed_from_u64(2);
    // Words drawn by frequency: an entry at random, similarity keys left out.
    let words_only: Vec<&Entry> = all.iter().filter(|e| !e.keyword.starts_with('~')).collect();
    let mut word_gets = Vec::new();
    let mut word_hits = Vec::new();
    for _ in 0..500 {
        let e = words_only[rng.gen_range(0..words_only.len())];
        gets.store(0, Ordering::Relaxed);
        let found = lookup(&source, &e.keyword).await.unwrap();
        word_gets.push(gets.load(Ordering::Relaxed));
        word_hits.push(found.entries.len());
    }
    let mut prefix_gets = Vec::new();
    let mut truncated = 0;
    for _ in 0..200 {
        let e = words_only[rng.gen_range(0..words_only.len())];
        let p: String = e.keyword.chars().take(3).collect();
        gets.store(0, Ordering::Relaxed);
        let found = prefix(&source, &p).await.unwrap();
        prefix_gets.push(gets.load(Ordering::Relaxed));
        truncated += usize::from(found.truncated);
    }
    // Related torrents: a name with one of its words replaced, looked up by its keys.
    let mut like_gets = Vec::new();
    let mut like_found = 0;
    let mut like_candidates = Vec::new();
    for _ in 0..200 {
        let (hash, name) = &corpus1[rng.gen_range(0..corpus1.len())];
        let mut words: Vec<&str> = name.split(' ').collect();
        words[0] = "zzqx";
        let query = words.join(" ");
        gets.store(0, Ordering::Relaxed);
        let mut candidates = std::collections::BTreeSet::new();
        for key in similarity_keys(&query) {
            for e in lookup(&source, &key).await.unwrap().entries {
                candidates.insert((e.info_hash, e.name));
            }
        }
        like_gets.push(gets.load(Ordering::Relaxed));
        like_candidates.push(candidates.len());
        let _ = similarity(&query, name);
        like_found += usize::from(candidates.iter().any(|(h, _)| h == hash));
    }
    println!("| in memory, {torrents} torrents | |");
    println!("|---|---|");
    println!(
        "| entries (torrent × keyword, and 6 similarity keys each) | {} |",
        all.len()
    );
    println!(
        "| tree nodes / leaves / entries per leaf (mean) | {} / {} / {:.1} |",
        tree.nodes.len(),
        leaves.len(),
        all.len() as f64 / leaves.len() as f64
    );
    println!("| build time | {build_ms:.0} ms |");
    println!(
        "| `--like` a name with its first word changed: original among the candidates / gets median, p99 / candidates median | {like_found} of 200 / {}, {} / {} |",
        percentile(&mut like_gets.clone(), 0.5),
        percentile(&mut like_gets, 0.99),
        percentile(&mut like_candidates, 0.5)
    );
    println!(
        "| word lookup, gets: median / p99 / max (500 words drawn by frequency) | {} / {} / {} |",
        percentile(&mut word_gets.clone(), 0.5),
        percentile(&mut word_gets.clone(), 0.99),
        percentile(&mut word_gets, 1.0)
    );
    println!(
        "| torrents per word found: median / p99 | {} / {} |",
        percentile(&mut word_hits.clone(), 0.5),
        percentile(&mut word_hits, 0.99)
    );
    println!(
        "| 3-letter prefix, gets: median / p99; walks cut at 256 nodes | {} / {}; {truncated} of 200 |",
        percentile(&mut prefix_gets.clone(), 0.5),
        percentile(&mut prefix_gets, 0.99)
    );

    local_index(arg("--local-torrents", 100_000));

    // 3. Over UDP.
    let boot: SocketAddr = "127.0.9.1:19900".parse().unwrap();
    let mut handles = Vec::new();
    for i in 0..nodes {
        let ip = [127, 0, 9, 1 + i as u8];
        let mut config = DriverConfig::new(SocketAddr::from((ip, 19900)));
        if i > 0 {
            config.dht.bootstrap = vec![boot];
        }
        config.dht.seed = i as u64 + 1000;
        config.retry = Duration::from_millis(500);
        handles.push(DhtHandle::spawn(config).await.expect("bind"));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let corpus2 = corpus(dht_torrents, 3);
    let tree = Tree::build(entries(&corpus2));
    let signer = ItemSigner::from_secret(&[0x42; 32]).unwrap();
    let started = Instant::now();
    let published = publish(&handles[1], &signer, &tree, 1, 8).await.unwrap();
    let publish_s = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    let mut dht_gets = Vec::new();
    for i in 0..100 {
        let (_, name) = &corpus2[rng.gen_range(0..corpus2.len())];
        let w = keywords(name).remove(0);
        let reader = DhtSource {
            dht: handles[2 + i % (nodes - 2)].clone(),
            indexer: signer.public_key(),
        };
        let started = Instant::now();
        let found = lookup(&reader, &w).await.unwrap();
        latencies.push(started.elapsed());
        dht_gets.push(found.gets);
        assert!(!found.entries.is_empty(), "{w}");
    }
    println!();
    println!("| over UDP: {nodes} shoal DHT nodes, {dht_torrents} torrents | |");
    println!("|---|---|");
    println!(
        "| publish: tree nodes / stored nowhere / copies stored | {} / {} / {} |",
        published.nodes, published.unstored, published.copies
    );
    println!(
        "| publish time (8 puts at once) | {publish_s:.1} s ({:.0} nodes/s) |",
        published.nodes as f64 / publish_s
    );
    println!(
        "| word lookup: latency median / p99, gets median (100 words, every one found) | {:.0} / {:.0} ms, {} |",
        percentile_ms(&mut latencies.clone(), 0.5),
        percentile_ms(&mut latencies, 0.99),
        percentile(&mut dht_gets, 0.5)
    );
    for h in handles {
        h.shutdown().await;
    }
}
