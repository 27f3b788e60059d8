//! The tracker server's tokio driver: an HTTP listener (`/announce`, `/scrape`,
//! `/stats`) and a UDP socket (BEP 15) around one shared [`Tracker`].
//!
//! The HTTP side is deliberately small: one request per connection, a 16 KiB head read
//! within 10 s, at most [`MAX_HTTP_CONNECTIONS`] at once; nothing a client sends can make
//! it buffer more. The UDP side answers each datagram in turn from one task. The tracker
//! state sits behind a plain mutex held only for the length of one announce.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use shoal_core::{dual_stack, InfoHash};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::http1::parse_request_head;
use crate::server::connection_id::ConnectionIds;
use crate::server::{http, udp, ServerConfig, Tracker};
use crate::udp::MAX_PACKET;

/// Concurrent HTTP connections; more wait in the kernel's accept queue.
pub const MAX_HTTP_CONNECTIONS: usize = 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Allow-lists longer than this are refused (the file is read whole).
const MAX_ALLOW_LIST: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub http: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
    /// Hex info-hashes, one per line (`#` comments); re-read by [`ServerHandle::reload`].
    pub allow_list: Option<PathBuf>,
    /// Proxies whose `X-Forwarded-For` and `ip=` are believed.
    pub trusted_proxies: Vec<IpAddr>,
    pub config: ServerConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("allow-list {path}: {message}")]
    AllowList { path: PathBuf, message: String },
}

/// Reads an allow-list file.
pub fn read_allow_list(path: &PathBuf) -> Result<HashSet<InfoHash>, ServerError> {
    let err = |message: String| ServerError::AllowList {
        path: path.clone(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > MAX_ALLOW_LIST {
        return Err(err(format!("larger than {MAX_ALLOW_LIST} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mut set = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let hash = line
            .parse::<InfoHash>()
            .map_err(|e| err(format!("line {}: {e}", n + 1)))?;
        set.insert(hash);
    }
    Ok(set)
}

struct Shared {
    tracker: Mutex<Tracker>,
    allow_list: Option<PathBuf>,
    trusted: Vec<IpAddr>,
    /// Announces per second, measured over the last few seconds.
    rate: Mutex<(Instant, u64, f64)>,
}

impl Shared {
    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        // A panic while holding the lock cannot leave the swarm maps half-updated in a
        // way that matters more than stopping the server would.
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Lets the caller reload the allow-list (on SIGHUP) while the server runs.
#[derive(Clone)]
pub struct ServerHandle(Arc<Shared>);

impl ServerHandle {
    /// Re-reads the allow-list file; returns how many info-hashes it holds. On error
    /// the old list stays in force.
    pub fn reload(&self) -> Result<Option<usize>, ServerError> {
        let Some(path) = &self.0.allow_list else {
            return Ok(None);
        };
        let list = read_allow_list(path)?;
        let n = list.len();
        self.0.tracker().set_allow_list(Some(list));
        Ok(Some(n))
    }

    /// The `/stats` document.
    pub fn stats_json(&self) -> serde_json::Value {
        stats_json(&self.0)
    }
}

pub struct TrackerServer {
    shared: Arc<Shared>,
    http: Option<TcpListener>,
    udp: Option<shoal_udp::UdpSocket>,
}

impl TrackerServer {
    pub async fn bind(options: ServerOptions) -> Result<TrackerServer, ServerError> {
        let mut tracker = Tracker::new(options.config);
        if let Some(path) = &options.allow_list {
            tracker.set_allow_list(Some(read_allow_list(path)?));
        }
        // On `[::]`, both families, as every listening socket of shoal.
        let bind = |addr: SocketAddr, kind| {
            dual_stack::bind(addr, kind).map_err(|source| ServerError::Bind { addr, source })
        };
        let http = match options.http {
            Some(addr) => {
                let socket = bind(addr, socket2::Type::STREAM)?;
                socket
                    .listen(1024)
                    .map_err(|source| ServerError::Bind { addr, source })?;
                let listener = TcpListener::from_std(socket.into());
                Some(listener.map_err(|source| ServerError::Bind { addr, source })?)
            }
            None => None,
        };
        let udp = match options.udp {
            Some(addr) => {
                // Answers leave from the address each request came to (see `shoal_udp`).
                let socket = shoal_udp::UdpSocket::from_socket(bind(addr, socket2::Type::DGRAM)?);
                Some(socket.map_err(|source| ServerError::Bind { addr, source })?)
            }
            None => None,
        };
        Ok(TrackerServer {
            shared: Arc::new(Shared {
                tracker: Mutex::new(tracker),
                allow_list: options.allow_list,
                trusted: options.trusted_proxies,
                rate: Mutex::new((Instant::now(), 0, 0.0)),
            }),
            http,
            udp,
        })
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().map(|s| s.local_addr())
    }

    pub fn handle(&self) -> ServerHandle {
        ServerHandle(self.shared.clone())
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(listener) = self.http {
            tasks.spawn(serve_http(listener, self.shared.clone()));
        }
        if let Some(socket) = self.udp {
            tasks.spawn(serve_udp(socket, self.shared.clone()));
        }
        tasks.spawn(housekeeping(self.shared.clone()));
        shutdown.await;
        tasks.shutdown().await;
    }
}

/// Expires peers and samples the announce rate.
async fn housekeeping(shared: Arc<Shared>) {
    let expire_every = (shared.tracker().config().interval / 4)
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut last_expiry = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = Instant::now();
        let announces = {
            let mut tracker = shared.tracker();
            if now - last_expiry >= expire_every {
                tracker.expire(now);
                last_expiry = now;
            }
            tracker.stats().announces
        };
        let mut rate = shared.rate.lock().unwrap_or_else(|p| p.into_inner());
        let (then, count, _) = *rate;
        let secs = (now - then).as_secs_f64().max(1e-3);
        *rate = (
            now,
            announces,
            announces.saturating_sub(count) as f64 / secs,
        );
    }
}

/// Resident memory of this process, from /proc (Linux); 0 elsewhere.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn stats_json(shared: &Shared) -> serde_json::Value {
    let s = shared.tracker().stats();
    let rate = shared.rate.lock().unwrap_or_else(|p| p.into_inner()).2;
    serde_json::json!({
        "torrents": s.torrents,
        "peers": s.peers,
        "seeders": s.seeders,
        "leechers": s.leechers,
        "announces": s.announces,
        "scrapes": s.scrapes,
        "refused": s.refused,
        "announces_per_second": (rate * 10.0).round() / 10.0,
        "memory_bytes": resident_bytes(),
    })
}

async fn serve_udp(socket: shoal_udp::UdpSocket, shared: Arc<Shared>) {
    let mut rng = StdRng::from_entropy();
    let mut ids = ConnectionIds::new(Instant::now(), &mut rng);
    let mut buf = socket.buffer();
    let mut out = Vec::with_capacity(MAX_PACKET);
    loop {
        let Ok(received) = socket.recv(&mut buf).await else {
            continue;
        };
        let from = received.from;
        for packet in received.datagrams(&buf) {
            let now = Instant::now();
            ids.handle_timeout(now, &mut rng);
            let reply = {
                let mut tracker = shared.tracker();
                udp::handle_packet(&mut tracker, &ids, now, from, packet, &mut rng, &mut out)
            };
            if reply {
                let _ = socket.send(&out, from, received.to).await;
            }
        }
    }
}

async fn serve_http(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, peer)) = listener.accept().await else {
            // Out of file descriptors and the like: do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(HEAD_TIMEOUT, serve_connection(stream, peer, &shared)).await;
            drop(permit);
        });
    }
}

/// The client's address: the socket's, unless the socket is a trusted proxy that says
/// whom it forwards for.
fn client_ip(peer: IpAddr, forwarded: Option<&str>, trusted: &[IpAddr]) -> (IpAddr, bool) {
    let peer = peer.to_canonical();
    if !trusted.contains(&peer) {
        return (peer, false);
    }
    let forwarded = forwarded
        .and_then(|h| h.rsplit(',').next())
        .and_then(|ip| ip.trim().parse::<IpAddr>().ok());
    (forwarded.unwrap_or(peer), true)
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head = loop {
        match parse_request_head(&buf) {
            Ok(Some((head, _))) => break Some(head),
            Ok(None) => {}
            Err(_) => break None,
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let (status, content_type, body) = match head {
        None => (400, "text/plain", b"bad request".to_vec()),
        Some(head) if head.method != "GET" => (405, "text/plain", b"GET only".to_vec()),
        Some(head) => {
            let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
            let (ip, trusted) =
                client_ip(peer.ip(), head.header("x-forwarded-for"), &shared.trusted);
            match path {
                "/announce" => {
                    let mut rng = StdRng::from_entropy();
                    let body = http::announce(
                        &mut shared.tracker(),
                        Instant::now(),
                        query,
                        ip,
                        trusted,
                        &mut rng,
                    );
                    (200, "text/plain", body)
                }
                "/scrape" => (
                    200,
                    "text/plain",
                    http::scrape(&mut shared.tracker(), query),
                ),
                "/stats" => (
                    200,
                    "application/json",
                    stats_json(shared).to_string().into_bytes(),
                ),
                _ => (404, "text/plain", b"not found".to_vec()),
            }
        }
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.254".parse().unwrap();
        let other: IpAddr = "10.0.0.9".parse().unwrap();
        let xff = Some("1.1.1.1, 2.2.2.2");
        assert_eq!(client_ip(other, xff, &[proxy]), (other, false));
        assert_eq!(
            client_ip(proxy, xff, &[proxy]),
            ("2.2.2.2".parse().unwrap(), true)
        );
        assert_eq!(client_ip(proxy, Some("junk"), &[proxy]), (proxy, true));
        let mapped: IpAddr = "::ffff:10.0.0.254".parse().unwrap();
        assert_eq!(client_ip(mapped, None, &[proxy]), (proxy, true));
    }
}
