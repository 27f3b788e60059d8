//! 24 shoal DHT nodes over real UDP on loopback (127.0.2.1–24, port 19001), each with
//! its own tokio driver in this process: they bootstrap from the first, one announces,
//! and the others' get_peers find it, then at the port it announces instead. Also: the
//! routing table is saved on shutdown and reloaded.

use shoal_core::InfoHash;
use shoal_dht::driver::{DhtHandle, DriverConfig};
use shoal_dht::DhtConfig;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::timeout;

const PORT: u16 = 19001;

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 2, i], PORT))
}

async fn node(i: u8, bootstrap: Vec<SocketAddr>, state: Option<std::path::PathBuf>) -> DhtHandle {
    let mut config = DriverConfig::new(addr(i));
    config.dht = DhtConfig {
        bootstrap,
        seed: u64::from(i),
        ..DhtConfig::default()
    };
    config.retry = Duration::from_millis(300);
    config.state_file = state;
    DhtHandle::spawn(config).await.expect("bind 127.0.2.x")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_four_nodes_find_an_announced_peer() {
    let dir = tempfile::tempdir().unwrap();
    let first = node(1, vec![], None).await;
    let mut nodes = vec![first.clone()];
    for i in 2..=24u8 {
        let state = (i == 24).then(|| dir.path().join("dht.state"));
        nodes.push(node(i, vec![addr(1)], state).await);
    }
    // Wait until every node knows a few others.
    // Generous: the machine running the tests may be busy.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut smallest = usize::MAX;
        for n in &nodes {
            smallest = smallest.min(n.stats().await.unwrap().nodes);
        }
        if std::env::var("DBG").is_ok() {
            let mut v = vec![];
            for n in &nodes {
                v.push(n.stats().await.unwrap().nodes);
            }
            eprintln!("{v:?}");
        }
        if smallest >= 8 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tables did not fill: smallest {smallest}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let info_hash = InfoHash([0xab; 20]);
    let _announcing = nodes[4].announce(info_hash, Some(7005), true);
    let expected = SocketAddr::from(([127, 0, 2, 5], 7005));
    for searcher in [10usize, 17, 23] {
        let mut found = nodes[searcher].find_peers(info_hash);
        let got = timeout(Duration::from_secs(10), async {
            loop {
                let batch = found.recv().await.expect("subscription open");
                if batch.contains(&expected) {
                    return;
                }
            }
        })
        .await;
        assert!(
            got.is_ok(),
            "node {searcher} did not find the announced peer"
        );
    }
    let stored: usize = {
        let mut sum = 0;
        for n in &nodes {
            sum += n.stats().await.unwrap().peers_stored;
        }
        sum
    };
    assert!(stored >= 3, "announce reached {stored} nodes");
    // BEP 33: a scrape from another node counts the announcer once, as a seed, though
    // several nodes store it.
    let filters = timeout(Duration::from_secs(10), nodes[12].scrape(info_hash))
        .await
        .expect("in time")
        .expect("node running");
    assert!((filters.seeds.estimate() - 1.0).abs() < 0.6, "{filters:?}");
    assert!(filters.peers.estimate() < 1.0, "{filters:?}");

    // A router now forwards another port to the announcer: it announces that one at
    // once, and a lookup finds it there.
    nodes[4].set_port(info_hash, 7006);
    let moved = SocketAddr::from(([127, 0, 2, 5], 7006));
    let got = timeout(Duration::from_secs(10), async {
        // A lookup of its own each time: one that ran before the new announce landed
        // would not look again for 15 minutes.
        loop {
            let mut found = nodes[19].find_peers(info_hash);
            let lookup = timeout(Duration::from_millis(500), async {
                while !found
                    .recv()
                    .await
                    .expect("subscription open")
                    .contains(&moved)
                {}
            });
            if lookup.await.is_ok() {
                return;
            }
        }
    })
    .await;
    assert!(got.is_ok(), "the new port was not announced");

    // The last node saves its table when its handles are gone, and a restart from that
    // file (no bootstrap address) keeps its id and rejoins.
    let last = nodes.pop().unwrap();
    let id = last.id();
    drop(last);
    let state = dir.path().join("dht.state");
    let saved = timeout(Duration::from_secs(5), async {
        while !state.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(saved.is_ok(), "state file not written");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let restarted = node(24, vec![], Some(state)).await;
    assert_eq!(restarted.id(), id);
    let rejoined = timeout(Duration::from_secs(5), async {
        loop {
            if restarted.stats().await.unwrap().nodes >= 8 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(rejoined.is_ok(), "{:?}", restarted.stats().await);
}
