//! Whole-node tests over an in-memory network: bootstrap, lookups and announces across
//! many nodes, and TESTING.md items 29–30 (rate limits, forged and stale tokens, our own
//! id) plus the bounds on what remote parties can grow.

use crate::krpc::{Body, Message, Query, Response};
use crate::persist::SavedState;
use crate::{Dht, DhtConfig, DhtEvent, Item, NodeId, PeerStoreLimits, PutRequest, RateLimitConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct Net {
    /// The nodes are in the IPv6 DHT (BEP 32), at IPv6 addresses.
    v6: bool,
    nodes: Vec<Dht>,
    addrs: Vec<SocketAddr>,
    by_addr: HashMap<SocketAddr, usize>,
    down: Vec<bool>,
    now: Instant,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 1, (i / 250) as u8, (i % 250 + 1) as u8], 6881))
}

fn addr6(i: usize) -> SocketAddr {
    SocketAddr::from(([0xfd00, 0, 0, 0, 0, 0, 1, i as u16 + 1], 6881))
}

impl Net {
    /// `n` nodes, all bootstrapping from node 0.
    fn new(n: usize, tweak: impl Fn(usize, &mut DhtConfig)) -> Net {
        Net::of_family(n, false, tweak)
    }

    /// [`Net::new`] in the IPv6 DHT (`v6`) or the IPv4 one.
    fn of_family(n: usize, v6: bool, tweak: impl Fn(usize, &mut DhtConfig)) -> Net {
        let now = Instant::now();
        let first = if v6 { addr6(0) } else { addr(0) };
        let mut net = Net {
            v6,
            nodes: Vec::new(),
            addrs: Vec::new(),
            by_addr: HashMap::new(),
            down: Vec::new(),
            now,
        };
        for i in 0..n {
            let mut config = DhtConfig {
                seed: i as u64,
                bootstrap: if i == 0 { vec![] } else { vec![first] },
                ipv6: v6,
                ..DhtConfig::default()
            };
            tweak(i, &mut config);
            net.push(config);
            net.deliver();
        }
        net
    }

    fn push(&mut self, config: DhtConfig) -> usize {
        let i = self.nodes.len();
        self.nodes.push(Dht::new(config, self.now));
        let at = if self.v6 { addr6(i) } else { addr(i) };
        self.addrs.push(at);
        self.by_addr.insert(at, i);
        self.down.push(false);
        i
    }

    fn deliver(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some((to, packet)) = self.nodes[i].poll_transmit() {
                    moved = true;
                    if let Some(&j) = self.by_addr.get(&to) {
                        if !self.down[j] && !self.down[i] {
                            self.nodes[j].handle_packet(self.now, self.addrs[i], &packet);
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        for node in &mut self.nodes {
            node.handle_timeout(self.now);
        }
        self.deliver();
    }

    fn events(&mut self, i: usize) -> Vec<DhtEvent> {
        std::iter::from_fn(|| self.nodes[i].poll_event()).collect()
    }
}

fn peers_of(events: &[DhtEvent]) -> Vec<SocketAddr> {
    events
        .iter()
        .filter_map(|e| match e {
            DhtEvent::Peers { peers, .. } => Some(peers.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn announce_then_get_peers_across_forty_nodes() {
    let mut net = Net::new(40, |_, _| {});
    for _ in 0..3 {
        net.advance(Duration::from_secs(5));
    }
    for (i, node) in net.nodes.iter().enumerate() {
        assert!(node.stats().nodes >= 8, "node {i} knows {:?}", node.stats());
    }
    let info_hash = NodeId([0x42; 20]);
    let now = net.now;
    net.nodes[7]
        .announce(info_hash, Some(7007), false, now)
        .unwrap();
    net.deliver();
    let done = net.events(7);
    assert!(
        done.iter()
            .any(|e| matches!(e, DhtEvent::LookupDone { announced_to, .. } if *announced_to >= 4)),
        "{done:?}"
    );
    let stored: usize = net.nodes.iter().map(|n| n.stats().peers_stored).sum();
    assert!(stored >= 4, "{stored}");
    let lookup = net.nodes[31].get_peers(info_hash, now).unwrap();
    net.deliver();
    let events = net.events(31);
    let expected = SocketAddr::new(net.addrs[7].ip(), 7007);
    assert_eq!(peers_of(&events), vec![expected]);
    let Some(DhtEvent::LookupDone {
        lookup: done_id,
        first_peers_round,
        queries,
        ..
    }) = events.last()
    else {
        panic!("{events:?}");
    };
    assert_eq!(*done_id, lookup);
    assert!(first_peers_round.unwrap() <= 4 && *queries < 60);
}

/// BEP 32: the same over IPv6, where nodes travel in `nodes6` and peers as 18-byte
/// values; an IPv4 node that asks is answered but not taken into an IPv6 table.
#[test]
fn the_ipv6_dht_works_alike_and_keeps_ipv4_out() {
    let mut net = Net::of_family(30, true, |_, _| {});
    for _ in 0..3 {
        net.advance(Duration::from_secs(5));
    }
    for (i, node) in net.nodes.iter().enumerate() {
        assert!(node.stats().nodes >= 8, "node {i} knows {:?}", node.stats());
    }
    let info_hash = NodeId([0x66; 20]);
    let now = net.now;
    net.nodes[5]
        .announce(info_hash, Some(5005), false, now)
        .unwrap();
    net.deliver();
    net.nodes[22].get_peers(info_hash, now).unwrap();
    net.deliver();
    let expected = SocketAddr::new(net.addrs[5].ip(), 5005);
    assert_eq!(peers_of(&net.events(22)), vec![expected]);
    // An IPv4 node's find_node: answered with IPv6 nodes only, and not pinged to be
    // learnt (a node it does not know gets a ping before it enters the table).
    let stranger = NodeId([0x77; 20]);
    let ask = query(stranger, b"v4", Query::FindNode { target: stranger });
    net.nodes[3].handle_packet(now, addr(900), &ask);
    let sent: Vec<(SocketAddr, Message)> = std::iter::from_fn(|| net.nodes[3].poll_transmit())
        .filter_map(|(to, p)| Some((to, Message::decode(&p).ok()?)))
        .collect();
    let [(to, reply)] = &sent[..] else {
        panic!("{sent:?}");
    };
    assert_eq!(*to, addr(900));
    let Body::Response(r) = &reply.body else {
        panic!("{reply:?}");
    };
    assert!(!r.nodes.is_empty() && r.nodes.iter().all(|n| n.addr.is_ipv6()));
}

/// BEP 33: nodes keep who seeds, a scrape ORs the filters of the nodes around the
/// info-hash, and each announcer counts once however many nodes store it.
#[test]
fn a_scrape_counts_seeds_and_peers_across_the_nodes() {
    let mut net = Net::new(40, |_, _| {});
    for _ in 0..3 {
        net.advance(Duration::from_secs(5));
    }
    let info_hash = NodeId([0x33; 20]);
    let now = net.now;
    for i in 0..12 {
        net.nodes[i]
            .announce(info_hash, Some(6881), i < 4, now)
            .unwrap();
    }
    net.deliver();
    let lookup = net.nodes[30].scrape(info_hash, now).unwrap();
    net.deliver();
    let events = net.events(30);
    let Some(DhtEvent::LookupDone {
        lookup: done,
        scrape: Some(filters),
        ..
    }) = events.last()
    else {
        panic!("{events:?}");
    };
    assert_eq!(*done, lookup);
    let (seeds, peers) = (filters.seeds.estimate(), filters.peers.estimate());
    assert!((seeds - 4.0).abs() < 1.0, "{seeds}");
    assert!((peers - 8.0).abs() < 1.0, "{peers}");
    // A plain lookup carries no filters.
    net.nodes[31].get_peers(info_hash, now).unwrap();
    net.deliver();
    assert!(net.events(31).iter().all(|e| !matches!(
        e,
        DhtEvent::LookupDone {
            scrape: Some(_),
            ..
        }
    )));
}

#[test]
fn implied_port_uses_the_source_port() {
    let mut net = Net::new(12, |_, _| {});
    net.advance(Duration::from_secs(5));
    let info_hash = NodeId([9; 20]);
    let now = net.now;
    net.nodes[3].announce(info_hash, None, false, now);
    net.deliver();
    net.nodes[9].get_peers(info_hash, now);
    net.deliver();
    assert_eq!(peers_of(&net.events(9)), vec![net.addrs[3]]);
}

/// Dead nodes stop costing lookups: right after half the network dies a lookup waits
/// for timeouts, but once the silent nodes have been pinged (they turn questionable after
/// 15 minutes, and bad after two unanswered pings) lookups ask only live nodes and finish
/// without waiting at all.
#[test]
fn dead_nodes_are_detected_and_no_longer_asked() {
    let mut net = Net::new(30, |_, _| {});
    net.advance(Duration::from_secs(5));
    let _ = net.events(0);
    for i in 1..15 {
        net.down[i] = true;
    }
    let lookup_done_at_once = |net: &mut Net, target: u8| {
        let now = net.now;
        let id = net.nodes[0].get_peers(NodeId([target; 20]), now).unwrap();
        net.deliver();
        let done = net
            .events(0)
            .iter()
            .any(|e| matches!(e, DhtEvent::LookupDone { lookup, .. } if *lookup == id));
        // Let it finish either way before the next one.
        net.advance(Duration::from_secs(10));
        let _ = net.events(0);
        done
    };
    assert!(
        !lookup_done_at_once(&mut net, 1),
        "a lookup through dead nodes must wait for their timeouts"
    );
    for _ in 0..(16 * 60 / 5 + 4) {
        net.advance(Duration::from_secs(5));
    }
    assert!(
        lookup_done_at_once(&mut net, 2),
        "dead nodes are still being asked after 16 minutes"
    );
}

fn query(sender: NodeId, tid: &[u8], q: Query) -> Vec<u8> {
    Message {
        tid: tid.to_vec(),
        sender: Some(sender),
        your_ip: None,
        read_only: false,
        body: Body::Query(q),
    }
    .encode()
}

fn answers(dht: &mut Dht) -> Vec<Message> {
    std::iter::from_fn(|| dht.poll_transmit())
        .filter_map(|(_, p)| Message::decode(&p).ok())
        .filter(|m| !matches!(m.body, Body::Query(_)))
        .collect()
}

/// Item 29: one IP sending far more than a few packets per second is cut off; others
/// are still served.
#[test]
fn a_flooding_ip_is_rate_limited() {
    let now = Instant::now();
    let mut dht = Dht::new(
        DhtConfig {
            rate_limit: RateLimitConfig {
                rate: 5.0,
                burst: 20.0,
                max_sources: 1000,
            },
            ..DhtConfig::default()
        },
        now,
    );
    let flooder: SocketAddr = "10.0.0.66:1".parse().unwrap();
    let ping = query(NodeId([3; 20]), b"aa", Query::Ping);
    for _ in 0..1000 {
        dht.handle_packet(now, flooder, &ping);
    }
    assert_eq!(answers(&mut dht).len(), 20);
    assert_eq!(dht.stats().rate_limited, 980);
    dht.handle_packet(now, "10.0.0.67:1".parse().unwrap(), &ping);
    assert_eq!(answers(&mut dht).len(), 1);
    let later = now + Duration::from_secs(2);
    for _ in 0..100 {
        dht.handle_packet(later, flooder, &ping);
    }
    assert_eq!(answers(&mut dht).len(), 10, "5 per second refill");
}

/// Item 29: forged and stale tokens are refused and store nothing.
#[test]
fn forged_and_stale_tokens_are_ignored() {
    let t0 = Instant::now();
    let mut dht = Dht::new(DhtConfig::default(), t0);
    let info_hash = NodeId([7; 20]);
    let peer: SocketAddr = "10.0.0.5:4000".parse().unwrap();
    let other: SocketAddr = "10.0.0.6:4000".parse().unwrap();
    let them = NodeId([1; 20]);
    let announce = |token: Vec<u8>| {
        query(
            them,
            b"an",
            Query::AnnouncePeer {
                info_hash,
                port: 5000,
                implied_port: false,
                token,
                seed: false,
            },
        )
    };
    // A token for another IP, and a made-up one.
    dht.handle_packet(
        t0,
        other,
        &query(
            them,
            b"gp",
            Query::GetPeers {
                info_hash,
                scrape: false,
            },
        ),
    );
    let token_for_other = answers(&mut dht)
        .into_iter()
        .find_map(|m| match m.body {
            Body::Response(Response { token, .. }) => token,
            _ => None,
        })
        .unwrap();
    for forged in [token_for_other, b"12345678".to_vec(), Vec::new()] {
        dht.handle_packet(t0, peer, &announce(forged));
        let replies = answers(&mut dht);
        assert!(
            matches!(
                &replies[..],
                [Message {
                    body: Body::Error { code: 203, .. },
                    ..
                }]
            ),
            "{replies:?}"
        );
    }
    assert_eq!(dht.stats().peers_stored, 0);
    // A real token works now but not 11 minutes later.
    dht.handle_packet(
        t0,
        peer,
        &query(
            them,
            b"gp",
            Query::GetPeers {
                info_hash,
                scrape: false,
            },
        ),
    );
    let token = answers(&mut dht)
        .into_iter()
        .find_map(|m| match m.body {
            Body::Response(Response { token, .. }) => token,
            _ => None,
        })
        .unwrap();
    let later = t0 + Duration::from_secs(11 * 60);
    for step in 1..=(11 * 60 / 5) {
        dht.handle_timeout(t0 + Duration::from_secs(5 * step));
    }
    let _ = answers(&mut dht);
    dht.handle_packet(later, peer, &announce(token.clone()));
    assert!(matches!(
        &answers(&mut dht)[..],
        [Message {
            body: Body::Error { code: 203, .. },
            ..
        }]
    ));
    assert_eq!(dht.stats().peers_stored, 0);
    dht.handle_packet(
        later,
        peer,
        &query(
            them,
            b"gp",
            Query::GetPeers {
                info_hash,
                scrape: false,
            },
        ),
    );
    let fresh = answers(&mut dht)
        .into_iter()
        .find_map(|m| match m.body {
            Body::Response(Response { token, .. }) => token,
            _ => None,
        })
        .unwrap();
    dht.handle_packet(later, peer, &announce(fresh));
    assert!(matches!(
        &answers(&mut dht)[..],
        [Message {
            body: Body::Response(_),
            ..
        }]
    ));
    assert_eq!(dht.stats().peers_stored, 1);
}

/// Item 30: a message carrying our own node id is ignored: no answer, no table entry.
#[test]
fn our_own_id_is_ignored() {
    let now = Instant::now();
    let mut dht = Dht::new(DhtConfig::default(), now);
    let own = dht.id();
    let from: SocketAddr = "10.0.0.9:1".parse().unwrap();
    dht.handle_packet(now, from, &query(own, b"aa", Query::Ping));
    assert!(dht.poll_transmit().is_none());
    let response = Message {
        tid: vec![0, 0],
        sender: Some(own),
        your_ip: None,
        read_only: false,
        body: Body::Response(Response::default()),
    };
    dht.handle_packet(now, from, &response.encode());
    assert_eq!(dht.stats().nodes, 0);
    assert_eq!(dht.stats().bad_packets, 2);
}

/// Bounded tables: unsolicited responses, peers announced from thousands of
/// addresses, and garbage never grow anything past its cap.
#[test]
fn remote_parties_cannot_grow_tables() {
    let now = Instant::now();
    let mut dht = Dht::new(
        DhtConfig {
            peer_store: PeerStoreLimits {
                max_torrents: 10,
                max_peers_per_torrent: 20,
                ttl: Duration::from_secs(1800),
            },
            ..DhtConfig::default()
        },
        now,
    );
    for i in 0..3000u32 {
        let from = SocketAddr::from((i.to_be_bytes(), 6881));
        let them = NodeId([(i % 250) as u8; 20]);
        let info_hash = NodeId([(i % 40) as u8; 20]);
        dht.handle_packet(
            now,
            from,
            &query(
                them,
                b"gp",
                Query::GetPeers {
                    info_hash,
                    scrape: false,
                },
            ),
        );
        let token = answers(&mut dht)
            .into_iter()
            .find_map(|m| match m.body {
                Body::Response(Response { token, .. }) => token,
                _ => None,
            })
            .unwrap();
        let announce = Query::AnnouncePeer {
            info_hash,
            port: 1,
            implied_port: false,
            token,
            seed: false,
        };
        dht.handle_packet(now, from, &query(them, b"an", announce));
        // An answer to a question never asked (our ids are two bytes), and one under a
        // live transaction id but from the wrong address.
        for tid in [b"zzz".to_vec(), (i as u16).to_be_bytes().to_vec()] {
            let bogus = Message {
                tid,
                sender: Some(them),
                your_ip: None,
                read_only: false,
                body: Body::Response(Response::default()),
            };
            let wrong = SocketAddr::from(((i + 1).to_be_bytes(), 6882));
            dht.handle_packet(now, wrong, &bogus.encode());
        }
        dht.handle_packet(now, from, b"d1:t2:aa1:y1:q1:q4:ping1:ad2:id3:xyzee");
    }
    let stats = dht.stats();
    assert!(
        stats.torrents_stored <= 10 && stats.peers_stored <= 200,
        "{stats:?}"
    );
    assert_eq!(
        stats.nodes, 0,
        "only nodes that answer our queries enter the table"
    );
    let _ = std::iter::from_fn(|| dht.poll_transmit()).count();
}

/// BEP 42 as a setting: with enforcement on, nodes whose id does not match their public
/// address stay out of the routing table; our own id follows our external address.
#[test]
fn bep42_enforcement_keeps_forged_ids_out() {
    let now = Instant::now();
    let ip: std::net::Ipv4Addr = "93.184.216.34".parse().unwrap();
    let mut dht = Dht::new(
        DhtConfig {
            external_ip: Some(ip),
            enforce_node_ids: true,
            ..DhtConfig::default()
        },
        now,
    );
    assert!(crate::id::bep42_valid(&dht.id(), ip.into()));
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    let honest_ip: std::net::Ipv4Addr = "8.8.4.4".parse().unwrap();
    let honest = crate::id::bep42_id(honest_ip, &mut rng);
    let forged = NodeId([0x55; 20]);
    for (id, from) in [
        (honest, SocketAddr::from((honest_ip, 1000))),
        (forged, "8.8.8.8:1000".parse().unwrap()),
    ] {
        // A query from it; we ping back; it answers.
        dht.handle_packet(now, from, &query(id, b"aa", Query::Ping));
        let pings: Vec<Message> = std::iter::from_fn(|| dht.poll_transmit())
            .filter_map(|(_, p)| Message::decode(&p).ok())
            .filter(|m| matches!(m.body, Body::Query(_)))
            .collect();
        for ping in pings {
            let pong = Message {
                tid: ping.tid,
                sender: Some(id),
                your_ip: None,
                read_only: false,
                body: Body::Response(Response::default()),
            };
            dht.handle_packet(now, from, &pong.encode());
        }
    }
    let ids: Vec<NodeId> = dht.routing_nodes().iter().map(|n| n.id).collect();
    assert_eq!(ids, vec![honest]);
}

/// The routing table survives a restart: the saved nodes are enough to rejoin without
/// any bootstrap address, and the node keeps its id.
#[test]
fn routing_table_survives_restart() {
    let mut net = Net::new(20, |_, _| {});
    net.advance(Duration::from_secs(5));
    let saved = SavedState {
        id: net.nodes[5].id(),
        nodes: net.nodes[5].routing_nodes(),
    };
    let bytes = saved.encode();
    let loaded = SavedState::decode(&bytes).unwrap();
    let restarted = Dht::new(
        DhtConfig {
            id: Some(loaded.id),
            saved_nodes: loaded.nodes,
            seed: 99,
            ..DhtConfig::default()
        },
        net.now,
    );
    net.nodes[5] = restarted;
    net.deliver();
    net.advance(Duration::from_secs(5));
    assert_eq!(net.nodes[5].id(), saved.id);
    assert!(
        net.nodes[5].stats().nodes >= 8,
        "{:?}",
        net.nodes[5].stats()
    );
}

/// Item 31: a BEP 44 `put` with a salt over 64 bytes or a value over 1000 bytes is
/// refused with the BEP's error codes (207, 205); nothing is stored (a put of the
/// largest allowed sizes gets as far as the token check).
#[test]
fn oversized_bep44_put_gets_the_beps_error_codes() {
    let now = Instant::now();
    let mut dht = Dht::new(DhtConfig::default(), now);
    let from: SocketAddr = "10.0.0.44:1".parse().unwrap();
    let put = |salt: usize, value: usize| {
        let mut a = shoal_bencode::Value::dict();
        a.insert("id", vec![1u8; 20]);
        a.insert("token", b"tok".to_vec());
        a.insert("v", vec![b'x'; value]);
        if salt > 0 {
            a.insert("salt", vec![b's'; salt]);
        }
        let mut m = shoal_bencode::Value::dict();
        m.insert("t", b"pt".to_vec());
        m.insert("y", "q");
        m.insert("q", "put");
        m.insert("a", a);
        m.to_bytes()
    };
    for (salt, value, code) in [(65, 10, 207), (0, 1000, 205), (64, 990, 203)] {
        dht.handle_packet(now, from, &put(salt, value));
        let replies = answers(&mut dht);
        assert!(
            matches!(&replies[..], [Message { body: Body::Error { code: c, .. }, .. }] if *c == code),
            "salt {salt}, value {value}: {replies:?}"
        );
    }
    assert_eq!(dht.stats().peers_stored, 0);
    assert_eq!(dht.stats().items_stored, 0);
}

fn item_events(events: &[DhtEvent]) -> Vec<&DhtEvent> {
    events
        .iter()
        .filter(|e| matches!(e, DhtEvent::ItemFound { .. } | DhtEvent::ItemStored { .. }))
        .collect()
}

/// BEP 44 across 40 nodes: an immutable item and three versions of a mutable one are
/// put by one node and found by others; an older version is refused by every holder.
#[test]
fn items_put_and_found_across_forty_nodes() {
    let mut net = Net::new(40, |_, _| {});
    for _ in 0..3 {
        net.advance(Duration::from_secs(5));
    }
    let now = net.now;
    let value = b"l5:shoali44ee".to_vec();
    let item = Item::immutable(value.clone()).unwrap();
    let target = item.target();
    net.nodes[3]
        .put_item(PutRequest::Immutable(item.clone()), now)
        .unwrap();
    net.deliver();
    let events = net.events(3);
    let stored = item_events(&events);
    assert!(
        matches!(stored[..], [DhtEvent::ItemStored { target: t, asked: 8, stored: 8, seq: None, .. }] if *t == target),
        "{stored:?}"
    );
    net.nodes[29].get_immutable(target, now).unwrap();
    net.deliver();
    let events = net.events(29);
    let found = item_events(&events);
    assert!(
        matches!(&found[..], [DhtEvent::ItemFound { item: Some(i), .. }] if *i == item),
        "{found:?}"
    );
    // Nothing under a target nobody put.
    net.nodes[29]
        .get_immutable(NodeId([0x99; 20]), now)
        .unwrap();
    net.deliver();
    let events = net.events(29);
    assert!(matches!(
        item_events(&events)[..],
        [DhtEvent::ItemFound { item: None, .. }]
    ));

    // A mutable item: each put without a version goes one above what the network has.
    let secret = [0x5a; 32];
    let signer = || crate::ItemSigner::from_secret(&secret).unwrap();
    let key = signer().public_key();
    for (round, text) in ["4:one!", "4:two!", "6:three!"].iter().enumerate() {
        let request = PutRequest::Mutable {
            signer: signer(),
            salt: b"feed".to_vec(),
            value: text.as_bytes().to_vec(),
            seq: None,
        };
        net.nodes[11].put_item(request, now).unwrap();
        net.deliver();
        let events = net.events(11);
        let expected = round as i64 + 1;
        assert!(
            matches!(item_events(&events)[..], [DhtEvent::ItemStored { seq: Some(s), stored: 8, outdated: 0, .. }] if *s == expected),
            "{events:?}"
        );
        let reader = 20 + round;
        net.nodes[reader]
            .get_mutable(key, b"feed".to_vec(), now)
            .unwrap();
        net.deliver();
        let events = net.events(reader);
        let found = item_events(&events);
        let [DhtEvent::ItemFound {
            item: Some(Item::Mutable(m)),
            ..
        }] = &found[..]
        else {
            panic!("{found:?}");
        };
        assert_eq!((m.seq, &m.value[..]), (expected, text.as_bytes()));
    }
    // Another salt is another item; the wrong salt finds nothing.
    net.nodes[30]
        .get_mutable(key, b"food".to_vec(), now)
        .unwrap();
    net.deliver();
    let events = net.events(30);
    assert!(matches!(
        item_events(&events)[..],
        [DhtEvent::ItemFound { item: None, .. }]
    ));
    // An explicit older version is refused by every node that holds a newer one (a node
    // that held none may take it), and readers still get the newest.
    let stale = PutRequest::Mutable {
        signer: signer(),
        salt: b"feed".to_vec(),
        value: b"5:stale".to_vec(),
        seq: Some(2),
    };
    net.nodes[12].put_item(stale, now).unwrap();
    net.deliver();
    let events = net.events(12);
    assert!(
        matches!(item_events(&events)[..], [DhtEvent::ItemStored { stored, outdated, asked: 8, .. }] if *outdated >= 6 && stored + outdated == 8),
        "{events:?}"
    );
    net.nodes[33]
        .get_mutable(key, b"feed".to_vec(), now)
        .unwrap();
    net.deliver();
    let events = net.events(33);
    assert!(
        matches!(item_events(&events)[..], [DhtEvent::ItemFound { item: Some(Item::Mutable(m)), .. }] if m.seq == 3),
        "{events:?}"
    );
}

/// Item 31 continued: what a storing node refuses, with BEP 44's error codes: a bad
/// token, a bad signature (206), an older version or the same version with another value
/// (302), a `cas` that names another version (301). A `get` with `seq` gets the version
/// number alone when it holds nothing newer.
#[test]
fn a_storing_node_enforces_beps_rules() {
    let now = Instant::now();
    let mut dht = Dht::new(DhtConfig::default(), now);
    let from: SocketAddr = "10.0.0.45:1".parse().unwrap();
    let me = NodeId([1; 20]);
    let signer = crate::ItemSigner::from_secret(&[0x33; 32]).unwrap();
    let target = crate::item::mutable_target(&signer.public_key(), b"");
    dht.handle_packet(
        now,
        from,
        &query(me, b"g1", Query::Get { target, seq: None }),
    );
    let replies = answers(&mut dht);
    let [Message {
        body:
            Body::Response(Response {
                token: Some(token),
                item,
                ..
            }),
        ..
    }] = &replies[..]
    else {
        panic!("{replies:?}");
    };
    assert_eq!(*item, crate::krpc::ItemFields::default());
    let mut put = |item: &Item, token: &[u8], cas: Option<i64>| {
        let q = Query::Put {
            item: item.clone(),
            token: token.to_vec(),
            cas,
        };
        dht.handle_packet(now, from, &query(me, b"p1", q));
        match &answers(&mut dht)[..] {
            [Message {
                body: Body::Response(_),
                ..
            }] => 0,
            [Message {
                body: Body::Error { code, .. },
                ..
            }] => *code,
            other => panic!("{other:?}"),
        }
    };
    let v = |seq: i64, value: &str| {
        Item::Mutable(signer.sign(b"", seq, value.as_bytes().to_vec()).unwrap())
    };
    assert_eq!(put(&v(3, "1:a"), b"forged", None), 203);
    let Item::Mutable(mut forged) = v(3, "1:a") else {
        unreachable!()
    };
    forged.value = b"1:b".to_vec();
    assert_eq!(put(&Item::Mutable(forged), token, None), 206);
    assert_eq!(put(&v(3, "1:a"), token, None), 0);
    assert_eq!(put(&v(2, "1:c"), token, None), 302);
    assert_eq!(put(&v(3, "1:c"), token, None), 302);
    assert_eq!(put(&v(3, "1:a"), token, None), 0);
    assert_eq!(put(&v(4, "1:d"), token, Some(2)), 301);
    assert_eq!(put(&v(4, "1:d"), token, Some(3)), 0);
    assert_eq!(dht.stats().items_stored, 1);

    let get = |dht: &mut Dht, seq| {
        dht.handle_packet(now, from, &query(me, b"g2", Query::Get { target, seq }));
        match answers(dht).pop().map(|m| m.body) {
            Some(Body::Response(r)) => r.item,
            other => panic!("{other:?}"),
        }
    };
    let newest = get(&mut dht, None);
    assert_eq!(
        (newest.seq, newest.value.as_deref()),
        (Some(4), Some(&b"1:d"[..]))
    );
    assert!(newest.signature.is_some() && newest.key.is_some());
    let unchanged = get(&mut dht, Some(4));
    assert_eq!((unchanged.seq, unchanged.value), (Some(4), None));
}

/// TESTING.md fault scenario: half the nodes restart every 30 s (same id, table reloaded
/// from their saved state, stored peers lost). After every round an announce still
/// reaches several nodes, a lookup from another node finds it, and the restarted nodes'
/// tables refill.
#[test]
fn half_the_nodes_restarting_every_30_s() {
    let mut net = Net::new(40, |_, _| {});
    net.advance(Duration::from_secs(5));
    for round in 0..4u8 {
        // Restart every other node (alternating halves each round), bootstrap node too.
        for i in (usize::from(round % 2)..40).step_by(2) {
            let saved = SavedState {
                id: net.nodes[i].id(),
                nodes: net.nodes[i].routing_nodes(),
            };
            let config = DhtConfig {
                id: Some(saved.id),
                saved_nodes: saved.nodes,
                bootstrap: vec![addr(0)],
                seed: 1000 + i as u64 + 100 * u64::from(round),
                ..DhtConfig::default()
            };
            net.nodes[i] = Dht::new(config, net.now);
        }
        net.deliver();
        net.advance(Duration::from_secs(30));
        let info_hash = NodeId([0x70 + round; 20]);
        let (announcer, searcher) = (3 + usize::from(round), 30 - usize::from(round));
        let now = net.now;
        net.nodes[announcer].announce(info_hash, Some(9000), false, now);
        net.deliver();
        let announced = net
            .events(announcer)
            .iter()
            .any(|e| matches!(e, DhtEvent::LookupDone { announced_to, .. } if *announced_to >= 4));
        assert!(
            announced,
            "round {round}: the announce reached too few nodes"
        );
        net.nodes[searcher].get_peers(info_hash, now);
        net.deliver();
        let expected = SocketAddr::new(net.addrs[announcer].ip(), 9000);
        assert_eq!(
            peers_of(&net.events(searcher)),
            vec![expected],
            "round {round}"
        );
        for (i, node) in net.nodes.iter().enumerate() {
            assert!(
                node.stats().nodes >= 8,
                "round {round}: node {i} has a thin table"
            );
        }
    }
}

/// A lookup keeps only items that check out: an immutable value must hash to the target,
/// a mutable one must be signed by a key that, with the salt, hashes to the target.
#[test]
fn forged_items_in_answers_are_ignored() {
    let now = Instant::now();
    let node: SocketAddr = "10.0.0.46:6881".parse().unwrap();
    let signer = crate::ItemSigner::from_secret(&[0x44; 32]).unwrap();
    let other = crate::ItemSigner::from_secret(&[0x45; 32]).unwrap();
    let genuine = signer.sign(b"s", 9, b"2:ok".to_vec()).unwrap();
    let mut tampered = genuine.clone();
    tampered.value = b"2:no".to_vec();
    let impostor = other.sign(b"s", 10, b"2:ok".to_vec()).unwrap();
    let immutable = Item::immutable(b"5:hello".to_vec()).unwrap();
    let cases: Vec<(bool, crate::krpc::ItemFields, bool)> = vec![
        (false, crate::krpc::ItemFields::of(&immutable), true),
        (
            false,
            crate::krpc::ItemFields {
                value: Some(b"5:jello".to_vec()),
                ..Default::default()
            },
            false,
        ),
        (
            true,
            crate::krpc::ItemFields::of(&Item::Mutable(genuine.clone())),
            true,
        ),
        (
            true,
            crate::krpc::ItemFields::of(&Item::Mutable(tampered)),
            false,
        ),
        (
            true,
            crate::krpc::ItemFields::of(&Item::Mutable(impostor)),
            false,
        ),
    ];
    for (mutable, fields, accepted) in cases {
        let mut dht = Dht::new(
            DhtConfig {
                bootstrap: vec![node],
                ..DhtConfig::default()
            },
            now,
        );
        while dht.poll_transmit().is_some() {}
        if mutable {
            dht.get_mutable(signer.public_key(), b"s".to_vec(), now)
        } else {
            dht.get_immutable(immutable.target(), now)
        }
        .unwrap();
        let (to, packet) = dht.poll_transmit().expect("a get query");
        assert_eq!(to, node);
        let asked = Message::decode(&packet).unwrap();
        assert!(matches!(asked.body, Body::Query(Query::Get { .. })));
        let answer = Message {
            tid: asked.tid,
            sender: Some(NodeId([0x77; 20])),
            your_ip: None,
            read_only: false,
            body: Body::Response(Response {
                token: Some(b"t".to_vec()),
                item: fields,
                ..Response::default()
            }),
        };
        dht.handle_packet(now, node, &answer.encode());
        let found = std::iter::from_fn(|| dht.poll_event())
            .find_map(|e| match e {
                DhtEvent::ItemFound { item, .. } => Some(item),
                _ => None,
            })
            .expect("the lookup ends with its only node answered");
        assert_eq!(found.is_some(), accepted, "{found:?}");
    }
}

/// BEP 43: a read-only node says so in its queries and answers none; the nodes it asks
/// answer it but keep it out of their tables.
#[test]
fn a_read_only_node_stays_out_of_tables() {
    let mut net = Net::new(10, |_, _| {});
    net.advance(Duration::from_secs(5));
    let before: Vec<usize> = net.nodes.iter().map(|n| n.stats().nodes).collect();
    let reader = net.push(DhtConfig {
        seed: 99,
        bootstrap: vec![addr(0)],
        read_only: true,
        ..DhtConfig::default()
    });
    net.deliver();
    net.advance(Duration::from_secs(5));
    assert!(net.nodes[reader].stats().nodes >= 8);
    let now = net.now;
    net.nodes[reader]
        .get_peers(NodeId([0x31; 20]), now)
        .unwrap();
    net.deliver();
    assert!(net
        .events(reader)
        .iter()
        .any(|e| matches!(e, DhtEvent::LookupDone { .. })));
    let reader_id = net.nodes[reader].id();
    for (i, node) in net.nodes[..reader].iter().enumerate() {
        assert!(
            !node.routing_nodes().iter().any(|n| n.id == reader_id),
            "node {i} keeps the read-only node"
        );
        assert_eq!(node.stats().nodes, before[i]);
    }
    let asked = query(NodeId([0x32; 20]), b"r1", Query::Ping);
    let from = net.addrs[1];
    net.nodes[reader].handle_packet(now, from, &asked);
    assert!(answers(&mut net.nodes[reader]).is_empty());
}

/// BEP 51: every node answers `sample_infohashes` with at most 20 of the info-hashes it
/// stores, how many it stores, and how long the sample stands; asking all 40 nodes once
/// finds every announced info-hash, and nothing that was not announced.
#[test]
fn sampling_every_node_finds_every_announced_info_hash() {
    let mut net = Net::new(40, |_, _| {});
    for _ in 0..3 {
        net.advance(Duration::from_secs(5));
    }
    let now = net.now;
    let announced: std::collections::BTreeSet<NodeId> = (0..30u8)
        .map(|i| NodeId([i.wrapping_mul(37); 20]))
        .collect();
    for (i, hash) in announced.iter().enumerate() {
        net.nodes[i % 40]
            .announce(*hash, Some(6000), false, now)
            .unwrap();
        net.deliver();
    }
    // The crawler: a read-only node, so that it does not end up storing announces.
    let crawler = net.push(DhtConfig {
        seed: 77,
        bootstrap: vec![addr(0)],
        read_only: true,
        ..DhtConfig::default()
    });
    net.deliver();
    let mut found = std::collections::BTreeSet::new();
    for j in 0..40 {
        let target = net.nodes[j].id();
        net.nodes[crawler]
            .sample_infohashes(net.addrs[j], target, now)
            .unwrap();
        net.deliver();
        let events = net.events(crawler);
        let sampled = events
            .iter()
            .find_map(|e| match e {
                DhtEvent::Sampled {
                    sample,
                    nodes,
                    from,
                    ..
                } => Some((sample, nodes, from)),
                _ => None,
            })
            .expect("an answer");
        assert_eq!(*sampled.2, net.addrs[j]);
        let sample = sampled.0.as_ref().expect("a shoal node speaks BEP 51");
        let stored = net.nodes[j].stats().torrents_stored;
        assert_eq!(sample.num, stored as u64);
        assert_eq!(sample.samples.len(), stored.min(20));
        assert!(sample.interval <= 21_600);
        assert!(sampled.1.len() >= 7, "the answer names nodes to ask next");
        found.extend(sample.samples.iter().copied());
    }
    assert_eq!(found, announced);

    // The same sample stands until the interval has passed.
    let ask = |net: &mut Net| {
        net.nodes[6].sample_infohashes(net.addrs[0], NodeId([0; 20]), net.now);
        net.deliver();
        net.events(6).into_iter().find_map(|e| match e {
            DhtEvent::Sampled { sample, .. } => sample,
            _ => None,
        })
    };
    let first = ask(&mut net).unwrap();
    net.advance(Duration::from_secs(60));
    let again = ask(&mut net).unwrap();
    assert_eq!(first.samples, again.samples);
    assert!(
        again.interval + 55 <= first.interval,
        "{again:?} vs {first:?}"
    );

    // A node that does not answer: no sample.
    let nobody: SocketAddr = "10.9.9.9:1".parse().unwrap();
    let now = net.now;
    net.nodes[6].sample_infohashes(nobody, NodeId([0; 20]), now);
    net.deliver();
    net.advance(Duration::from_secs(5));
    assert!(net
        .events(6)
        .iter()
        .any(|e| matches!(e, DhtEvent::Sampled { sample: None, from, .. } if *from == nobody)));
}
