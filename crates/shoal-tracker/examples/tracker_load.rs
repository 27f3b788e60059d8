//! UDP tracker load generator (BEP 15): many simulated peers announcing to one tracker.
//!
//! Peers are (source IP, announced port) pairs: `--sources` sockets bound to consecutive
//! loopback addresses, each announcing for up to 65 535 ports, so a million peers need
//! 16 sources. Peer `i` belongs to torrent `i % torrents`; info-hashes are SHA-1 of the
//! torrent number, so a whitelist can be written for trackers that need one
//! (`--print-hashes N`).
//!
//! Phase 1 (`fill`) announces every peer once with `started`; phase 2 (`steady`)
//! re-announces `--steady` random peers. Each source keeps `--window` requests
//! in flight; a request unanswered after a second counts as lost. Prints one JSON line
//! per phase: announces per second, latency percentiles, losses.
//!
//! ```text
//! cargo run --release -p shoal-tracker --example tracker_load -- \
//!     --target 127.0.1.90:18090 --torrents 100000 --peers 1000000 --first-source 127.0.1.40
//! ```

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha1::{Digest, Sha1};
use shoal_core::{InfoHash, PeerId};
use shoal_tracker::udp::{Request, Response, UdpAnnounce};
use shoal_tracker::{Event, Progress};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

struct Options {
    target: SocketAddr,
    torrents: u32,
    peers: u32,
    first_source: Ipv4Addr,
    window: usize,
    steady: u32,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        target: "127.0.1.90:18090".parse().expect("valid"),
        torrents: 100_000,
        peers: 1_000_000,
        first_source: Ipv4Addr::new(127, 0, 1, 40),
        window: 64,
        steady: 500_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--target" => o.target = value.parse().map_err(|e| bad(&e))?,
            "--torrents" => o.torrents = value.parse().map_err(|e| bad(&e))?,
            "--peers" => o.peers = value.parse().map_err(|e| bad(&e))?,
            "--first-source" => o.first_source = value.parse().map_err(|e| bad(&e))?,
            "--window" => o.window = value.parse().map_err(|e| bad(&e))?,
            "--steady" => o.steady = value.parse().map_err(|e| bad(&e))?,
            "--print-hashes" => {
                let n: u32 = value.parse().map_err(|e| bad(&e))?;
                for t in 0..n {
                    println!("{}", info_hash(t).to_hex());
                }
                std::process::exit(0);
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if o.torrents == 0 || o.peers == 0 || o.window == 0 {
        return Err("--torrents, --peers and --window must be positive".into());
    }
    Ok(o)
}

fn info_hash(torrent: u32) -> InfoHash {
    InfoHash(Sha1::digest(torrent.to_be_bytes()).into())
}

const PORTS_PER_SOURCE: u32 = 65_535;

/// What one source has in flight: transaction id → when it was sent.
type InFlight = Mutex<HashMap<u32, Instant>>;

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    lost: u64,
    errors: u64,
}

struct Source {
    socket: UdpSocket,
    /// Renewed at the start of each phase (ids live at least a minute).
    connection: Mutex<u64>,
    in_flight: InFlight,
    slots: Semaphore,
    tally: Mutex<Tally>,
}

async fn connect(socket: &UdpSocket) -> std::io::Result<u64> {
    let mut buf = [0u8; 64];
    for _ in 0..5 {
        let mut packet = Vec::new();
        Request::Connect {
            transaction: 0xc0ffee,
        }
        .encode(&mut packet);
        socket.send(&packet).await?;
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await
        {
            if let Ok(Response::Connect { connection, .. }) = Response::decode(&buf[..n], false) {
                return Ok(connection);
            }
        }
    }
    Err(std::io::Error::other("tracker does not answer connect"))
}

/// Receives answers and records latencies until `stop`.
async fn receive(source: Arc<Source>, stop: Arc<tokio::sync::Notify>) {
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            _ = stop.notified() => return,
            got = tokio::time::timeout(Duration::from_millis(200), source.socket.recv(&mut buf)) => {
                let now = Instant::now();
                if let Ok(Ok(n)) = got {
                    let Ok(response) = Response::decode(&buf[..n], false) else { continue };
                    let sent = source.in_flight.lock().expect("lock").remove(&response.transaction());
                    if let Some(sent) = sent {
                        let mut tally = source.tally.lock().expect("lock");
                        match response {
                            Response::Announce { .. } => tally.latencies_us.push((now - sent).as_micros().min(u32::MAX as u128) as u32),
                            _ => tally.errors += 1,
                        }
                        drop(tally);
                        source.slots.add_permits(1);
                    }
                }
                // Requests unanswered for a second are lost; free their slots.
                let mut in_flight = source.in_flight.lock().expect("lock");
                let before = in_flight.len();
                in_flight.retain(|_, sent| now.duration_since(*sent) < Duration::from_secs(1));
                let lost = before - in_flight.len();
                drop(in_flight);
                if lost > 0 {
                    source.tally.lock().expect("lock").lost += lost as u64;
                    source.slots.add_permits(lost);
                }
            }
        }
    }
}

async fn announce(source: &Source, txid: u32, torrent: u32, port: u16, event: Event) {
    let permit = source.slots.acquire().await.expect("open");
    permit.forget();
    let connection = *source.connection.lock().expect("lock");
    let mut packet = Vec::with_capacity(98);
    Request::Announce {
        connection,
        transaction: txid,
        announce: UdpAnnounce {
            info_hash: info_hash(torrent),
            peer_id: PeerId::shoal([(txid & 0xff) as u8; 12]),
            progress: Progress {
                uploaded: 0,
                downloaded: 0,
                left: u64::from(port % 2),
                partial_seed: false,
            },
            event,
            ip: Ipv4Addr::UNSPECIFIED,
            key: txid,
            numwant: Some(50),
            port,
            url_data: Vec::new(),
        },
    }
    .encode(&mut packet);
    source
        .in_flight
        .lock()
        .expect("lock")
        .insert(txid, Instant::now());
    let _ = source.socket.send(&packet).await;
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

async fn phase(name: &str, sources: &[Arc<Source>], plan: Vec<(usize, u32, u16, Event)>) {
    for s in sources {
        *s.tally.lock().expect("lock") = Tally::default();
        let id = connect(&s.socket).await.expect("tracker answers connect");
        *s.connection.lock().expect("lock") = id;
    }
    let stop = Arc::new(tokio::sync::Notify::new());
    let receivers: Vec<_> = sources
        .iter()
        .map(|s| tokio::spawn(receive(s.clone(), stop.clone())))
        .collect();
    let started = Instant::now();
    // One sender per source, each walking its share of the plan.
    let mut per_source: Vec<Vec<(u32, u16, Event)>> = vec![Vec::new(); sources.len()];
    for (s, torrent, port, event) in plan {
        per_source[s].push((torrent, port, event));
    }
    let senders: Vec<_> = per_source
        .into_iter()
        .enumerate()
        .map(|(i, work)| {
            let source = sources[i].clone();
            tokio::spawn(async move {
                for (n, (torrent, port, event)) in work.into_iter().enumerate() {
                    announce(&source, n as u32, torrent, port, event).await;
                }
            })
        })
        .collect();
    for s in senders {
        s.await.expect("sender");
    }
    // Wait for the last answers (at most the loss timeout).
    let drain = Instant::now();
    while sources
        .iter()
        .any(|s| !s.in_flight.lock().expect("lock").is_empty())
        && drain.elapsed() < Duration::from_millis(1500)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.notify_waiters();
    for r in receivers {
        r.abort();
    }
    let mut all = Vec::new();
    let (mut lost, mut errors) = (0, 0);
    for s in sources {
        let t = s.tally.lock().expect("lock");
        all.extend_from_slice(&t.latencies_us);
        lost += t.lost;
        errors += t.errors;
    }
    all.sort_unstable();
    println!(
        "{{\"phase\":\"{name}\",\"answered\":{},\"lost\":{lost},\"errors\":{errors},\"seconds\":{elapsed:.3},\"announces_per_sec\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
        all.len(),
        all.len() as f64 / elapsed,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        percentile(&all, 1.0),
    );
}

fn main() {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tracker_load: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(options));
}

async fn run(o: Options) {
    let n_sources = o.peers.div_ceil(PORTS_PER_SOURCE) as usize;
    let mut sources = Vec::new();
    for i in 0..n_sources {
        let ip = Ipv4Addr::from(u32::from(o.first_source) + i as u32);
        let socket = UdpSocket::bind((ip, 0))
            .await
            .expect("bind a source address");
        socket.connect(o.target).await.expect("connect");
        let connection = connect(&socket).await.expect("tracker answers connect");
        sources.push(Arc::new(Source {
            socket,
            connection: Mutex::new(connection),
            in_flight: Mutex::new(HashMap::new()),
            slots: Semaphore::new(o.window),
            tally: Mutex::new(Tally::default()),
        }));
    }
    let peer = |i: u32| {
        (
            (i / PORTS_PER_SOURCE) as usize,
            i % o.torrents,
            (i % PORTS_PER_SOURCE + 1) as u16,
        )
    };
    let fill: Vec<_> = (0..o.peers)
        .map(|i| {
            let (s, t, p) = peer(i);
            (s, t, p, Event::Started)
        })
        .collect();
    phase("fill", &sources, fill).await;
    // Steady: random re-announces of known peers, a fixed count (not a time) so that
    // every tracker gets the same work.
    let mut rng = StdRng::seed_from_u64(1);
    let count = o.steady;
    let steady: Vec<_> = (0..count)
        .map(|_| {
            let (s, t, p) = peer(rng.gen_range(0..o.peers));
            (s, t, p, Event::None)
        })
        .collect();
    phase("steady", &sources, steady).await;
}
