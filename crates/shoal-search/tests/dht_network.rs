//! A tree published to a real DHT: 24 shoal nodes over UDP on 127.0.8.x (port 19800),
//! one indexer publishing 120 torrents' keywords, readers on other nodes finding words
//! and prefixes with plain BEP 44 gets.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use shoal_core::InfoHash;
use shoal_dht::driver::{DhtHandle, DriverConfig};
use shoal_dht::ItemSigner;
use shoal_search::dht::{publish, DhtSource};
use shoal_search::keyword::keywords;
use shoal_search::{lookup, prefix, Entry, QueryError, Tree};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexers_tree_is_found_by_others() {
    let boot: SocketAddr = "127.0.8.1:19800".parse().unwrap();
    let mut nodes: Vec<DhtHandle> = Vec::new();
    for i in 0..24u8 {
        let mut config = DriverConfig::new(SocketAddr::from(([127, 0, 8, 1 + i], 19800)));
        if i > 0 {
            config.dht.bootstrap = vec![boot];
        }
        config.dht.seed = u64::from(i) + 100;
        config.retry = Duration::from_millis(500);
        nodes.push(DhtHandle::spawn(config).await.expect("bind"));
    }
    // Let the tables fill.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let words = [
        "ubuntu", "debian", "desktop", "server", "iso", "linux", "mint", "arch",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut entries = Vec::new();
    let mut names = Vec::new();
    for t in 0..120 {
        let name = format!(
            "{} {} {t}",
            words[rng.gen_range(0..words.len())],
            words[rng.gen_range(0..words.len())]
        );
        let hash = InfoHash(rng.gen());
        for word in keywords(&name) {
            entries.push(Entry::new(&word, hash, &name, 1 << 20));
        }
        names.push((hash, name));
    }
    let tree = Tree::build(entries.clone());
    assert_eq!(tree.dropped, 0);
    let signer = ItemSigner::from_secret(&[0x21; 32]).unwrap();
    let published = publish(&nodes[5], &signer, &tree, 1, 8).await.unwrap();
    assert_eq!(published.nodes, tree.nodes.len());
    assert_eq!(published.unstored, 0, "{published:?}");

    let reader = DhtSource {
        dht: nodes[17].clone(),
        indexer: signer.public_key(),
    };
    for word in ["ubuntu", "iso", "arch"] {
        let found = lookup(&reader, word).await.unwrap();
        let got: BTreeSet<InfoHash> = found.entries.iter().map(|e| e.info_hash).collect();
        let expected: BTreeSet<InfoHash> = names
            .iter()
            .filter(|(_, n)| keywords(n).iter().any(|w| w == word))
            .map(|(h, _)| *h)
            .collect();
        assert_eq!(got, expected, "{word}");
    }
    // `de*`: debian and desktop.
    let found = prefix(&reader, "de").await.unwrap();
    let words_found: BTreeSet<&str> = found.entries.iter().map(|e| e.keyword.as_str()).collect();
    assert_eq!(words_found, BTreeSet::from(["debian", "desktop"]));
    // Another key publishes nothing.
    let nobody = DhtSource {
        dht: nodes[9].clone(),
        indexer: ItemSigner::from_secret(&[0x22; 32]).unwrap().public_key(),
    };
    assert_eq!(lookup(&nobody, "ubuntu").await, Err(QueryError::NoTree));
    for node in nodes {
        node.shutdown().await;
    }
}
