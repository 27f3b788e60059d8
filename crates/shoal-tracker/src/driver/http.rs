//! A tracker-sized HTTP/1.1 client over tokio: one `GET`, one deadline, a capped body.
//! Web seeds (BEP 19) use it too, for byte ranges of files over a connection kept open
//! between requests ([`get_range_kept`]).
//!
//! Why not a general HTTP client: the SSRF rules need the *resolved* address of every
//! hop (a redirect from a public tracker to a private or loopback address is refused, and
//! the connection goes to exactly the address that was checked, so DNS cannot change it
//! in between), and the bad-response rules need the body size checked before it is
//! buffered. We never ask for a compressed body, and refuse one sent anyway, so a gzip
//! bomb is just a few bytes of refused data.
//!
//! `https` goes through rustls (ring provider, Mozilla's roots from `webpki-roots`, so
//! it works the same on every system); the certificate must name the tracker's host.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use shoal_proxy::{Proxy, Target};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::http1::{decode_chunked, parse_response_head, Framing, HttpError};
use crate::url::{is_local, Scheme, TrackerUrl};
use crate::TrackerError;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// For the whole exchange, redirects included.
    pub timeout: Duration,
    /// Largest body accepted (a tracker answer is a few kilobytes).
    pub max_body: usize,
    pub max_redirects: u32,
    /// Local address to send from (so the tracker sees the address peers should use);
    /// an unspecified one (`0.0.0.0`, `::`) keeps to that family (see [`resolve`]).
    pub bind: Option<IpAddr>,
    /// TLS settings for `https`; `None` uses [`default_tls`].
    pub tls: Option<Arc<ClientConfig>>,
    /// Longest wait for the next bytes of an answer; `None`: only `timeout` applies.
    /// Web seeds set it, so that a slow server still delivers a large range while a
    /// silent one (or a kept connection the network dropped) is given up quickly.
    pub idle_timeout: Option<Duration>,
    /// A proxy (SOCKS5 or HTTP CONNECT) to connect through. The server's name goes to the proxy to
    /// resolve (no DNS query of ours), so the local-address rule on redirects can only
    /// look at addresses written in the URL.
    pub proxy: Option<Arc<Proxy>>,
}

/// TLS client settings with the ring provider and the webpki root certificates.
pub fn tls_config(roots: RootCertStore) -> Arc<ClientConfig> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// The settings used when [`HttpConfig::tls`] is `None`, built once.
pub fn default_tls() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            tls_config(roots)
        })
        .clone()
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            timeout: Duration::from_secs(20),
            max_body: 1024 * 1024,
            max_redirects: 3,
            bind: None,
            tls: None,
            idle_timeout: None,
            proxy: None,
        }
    }
}

impl From<HttpError> for TrackerError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::TooLarge(n) => TrackerError::TooLarge(n),
            other => TrackerError::Io(other.to_string()),
        }
    }
}

fn io_error(context: &str, e: std::io::Error) -> TrackerError {
    TrackerError::Io(format!("{context}: {e}"))
}

/// Resolves `url`'s host to one address, preferring the family of `bind`. An
/// unspecified `bind` (`0.0.0.0` or `::`) asks for that family only, and only for an
/// address this host has a route to: a dual-stack client announces once per family
/// (BEP 7), and a tracker it cannot reach over one of them is no error worth a warning
/// ([`TrackerError::NoRoute`]).
pub async fn resolve(url: &TrackerUrl, bind: Option<IpAddr>) -> Result<SocketAddr, TrackerError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(|e| io_error(&format!("cannot resolve {}", url.host), e))?
        .collect();
    if let Some(family) = bind.filter(IpAddr::is_unspecified) {
        return addrs
            .into_iter()
            .find(|a| a.is_ipv4() == family.is_ipv4() && routable(family, *a))
            .ok_or_else(|| {
                let family = if family.is_ipv4() { "IPv4" } else { "IPv6" };
                TrackerError::NoRoute(format!("no {family} address of {} to reach", url.host))
            });
    }
    addrs
        .iter()
        .find(|a| bind.is_none_or(|b| a.is_ipv4() == b.is_ipv4()))
        .or(addrs.first())
        .copied()
        .ok_or_else(|| TrackerError::Io(format!("{} has no address", url.host)))
}

/// Whether the system has a route from `family`'s unspecified address to `to`: a UDP
/// socket connects there (which sends nothing).
fn routable(family: IpAddr, to: SocketAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(family, 0))
        .and_then(|probe| probe.connect(to))
        .is_ok()
}

/// `GET`s `target` (path and query) from `url`'s host and returns the body of a 200.
pub async fn get(
    url: &TrackerUrl,
    target: &str,
    config: &HttpConfig,
) -> Result<Vec<u8>, TrackerError> {
    let got = tokio::time::timeout(config.timeout, get_following(url, target, None, config)).await;
    got.unwrap_or(Err(TrackerError::Timeout))
        .map(|(body, _)| body)
}

/// Where a redirect led: the server and the request target there.
pub type Moved = (TrackerUrl, String);

/// The body, and where the last redirect led if there was one.
async fn get_following(
    url: &TrackerUrl,
    target: &str,
    range: Option<(u64, u64)>,
    config: &HttpConfig,
) -> Result<(Vec<u8>, Option<Moved>), TrackerError> {
    let start = (url.clone(), target.to_owned());
    follow(start, None, 0, range, config).await
}

/// Requests `at` and follows redirects from there; `first_was_public` and `hops` say
/// what came before (nothing, for a first request).
async fn follow(
    at: Moved,
    mut first_was_public: Option<bool>,
    hops: u32,
    range: Option<(u64, u64)>,
    config: &HttpConfig,
) -> Result<(Vec<u8>, Option<Moved>), TrackerError> {
    let (mut url, mut target) = at;
    for hop in hops..=config.max_redirects {
        if url.scheme == Scheme::Udp {
            return Err(TrackerError::Refused(format!("redirect to {url}")));
        }
        let addr = locate(&url, config).await?;
        if let Some(ip) = addr.map(|a| a.ip()).or_else(|| literal(&url)) {
            check_hop(&mut first_was_public, ip)?;
        }
        match exchange(addr, &url, &target, range, config).await? {
            Reply::Body(body) => return Ok((body, (hop > 0).then_some((url, target)))),
            Reply::Redirect(location) => (url, target) = next_hop(&url, location)?,
        }
    }
    Err(TrackerError::Refused("too many redirects".into()))
}

/// Where a redirect from `url` to `location` leads (never from https to plain http).
fn next_hop(url: &TrackerUrl, location: String) -> Result<Moved, TrackerError> {
    if location.starts_with('/') {
        return Ok((url.clone(), location));
    }
    let next = TrackerUrl::parse(&location)?;
    if url.scheme == Scheme::Https && next.scheme != Scheme::Https {
        return Err(TrackerError::Refused(format!(
            "redirect from https to {next}"
        )));
    }
    let target = next.path.clone();
    Ok((next, target))
}

/// The SSRF rule for one hop: a tracker first reached on a public address may not send
/// us to a local one (loopback, private, link-local), where services trust their
/// neighbours. A tracker that is itself local may redirect anywhere.
fn check_hop(first_was_public: &mut Option<bool>, ip: IpAddr) -> Result<(), TrackerError> {
    let public = !is_local(ip);
    match *first_was_public {
        None => *first_was_public = Some(public),
        Some(true) if !public => {
            return Err(TrackerError::Refused(format!(
                "redirect from a public tracker to the local address {ip}"
            )))
        }
        Some(_) => {}
    }
    Ok(())
}

enum Reply {
    Body(Vec<u8>),
    Redirect(String),
}

async fn connect(addr: SocketAddr, bind: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = bind.filter(|ip| ip.is_ipv4() == addr.is_ipv4() && !ip.is_unspecified()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(addr).await
}

async fn exchange(
    addr: Option<SocketAddr>,
    url: &TrackerUrl,
    target: &str,
    range: Option<(u64, u64)>,
    config: &HttpConfig,
) -> Result<Reply, TrackerError> {
    let mut stream = open(addr, url, config).await?;
    Ok(exchange_on(&mut stream, url, target, range, false, config)
        .await?
        .0)
}

/// A byte stream to an HTTP server, plain or TLS.
trait HttpStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> HttpStream for S {}

/// Where to connect for `url`: its resolved address, or `None` through the proxy, which
/// resolves the name itself.
async fn locate(url: &TrackerUrl, config: &HttpConfig) -> Result<Option<SocketAddr>, TrackerError> {
    match config.proxy {
        Some(_) => Ok(None),
        None => resolve(url, config.bind).await.map(Some),
    }
}

/// The address `url` names, when it names one rather than a host name.
fn literal(url: &TrackerUrl) -> Option<IpAddr> {
    url.host.trim_matches(['[', ']']).parse().ok()
}

/// A connection to `url`'s server at `addr`, or through the proxy when `addr` is `None`
/// (TLS for `https`, naming its host).
async fn open(
    addr: Option<SocketAddr>,
    url: &TrackerUrl,
    config: &HttpConfig,
) -> Result<Box<dyn HttpStream>, TrackerError> {
    let cannot = |e| io_error(&format!("cannot connect to {url}"), e);
    let stream = match (addr, &config.proxy) {
        (Some(addr), _) => connect(addr, config.bind).await.map_err(cannot)?,
        (None, Some(proxy)) => proxy
            .connect(Target::Name(&url.host, url.port))
            .await
            .map_err(|e| cannot(std::io::Error::other(e)))?,
        (None, None) => return Err(TrackerError::Refused(format!("{url}: no address"))),
    };
    if url.scheme != Scheme::Https {
        return Ok(Box::new(stream));
    }
    let name = ServerName::try_from(url.host.clone())
        .map_err(|_| TrackerError::Refused(format!("{url}: not a valid TLS server name")))?;
    let tls = config.tls.clone().unwrap_or_else(default_tls);
    let stream = TlsConnector::from(tls)
        .connect(name, stream)
        .await
        .map_err(|e| io_error(&format!("TLS with {url}"), e))?;
    Ok(Box::new(stream))
}

/// A connection kept open between requests to one server (HTTP/1.1 keep-alive), so that
/// a web seed's requests in a row skip the TCP (and TLS) handshakes and TCP's slow start.
pub struct KeptAlive {
    origin: (Scheme, String, u16),
    /// Whether the server is on a public address (for the redirect rule).
    public: bool,
    stream: Box<dyn HttpStream>,
}

impl std::fmt::Debug for KeptAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptAlive")
            .field("origin", &self.origin)
            .finish()
    }
}

fn origin(url: &TrackerUrl) -> (Scheme, String, u16) {
    (url.scheme, url.host.to_ascii_lowercase(), url.port)
}

/// `GET`s bytes `first..=last` of the resource at `target` (a `Range` request) and
/// returns exactly those bytes: from a 206 whose `Content-Range` matches, or from a 200
/// whose body is exactly the range (a resource no longer than it); `config.max_body` is
/// ignored. It goes over `kept`, a connection to the same server left open by the
/// previous call (a fresh one if there is none, it is to another server, or it has gone
/// stale), and leaves the connection there if the server keeps it open. A redirect is
/// followed on fresh connections, under the same rules as [`get`], and where it led is
/// returned, so that the caller can ask there directly next time (archive.org sends
/// every file to one of its data servers).
pub async fn get_range_kept(
    kept: &mut Option<KeptAlive>,
    url: &TrackerUrl,
    target: &str,
    first: u64,
    last: u64,
    config: &HttpConfig,
) -> Result<(Vec<u8>, Option<Moved>), TrackerError> {
    if last < first || last - first >= usize::MAX as u64 {
        return Err(TrackerError::Refused(format!("bad range {first}-{last}")));
    }
    let range = Some((first, last));
    let attempt = async {
        if let Some(mut conn) = kept.take().filter(|k| k.origin == origin(url)) {
            match exchange_on(&mut conn.stream, url, target, range, true, config).await {
                Ok((Reply::Body(body), reusable)) => {
                    if reusable {
                        *kept = Some(conn);
                    }
                    return Ok((body, None));
                }
                Ok((Reply::Redirect(location), _)) => {
                    let public = conn.public;
                    let next = next_hop(url, location)?;
                    return follow(next, Some(public), 1, range, config).await;
                }
                // Closed while idle: a fresh connection below.
                Err(TrackerError::Io(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let addr = locate(url, config).await?;
        let ip = addr.map(|a| a.ip()).or_else(|| literal(url));
        // A name sent to the proxy counts as public: it may not redirect to a local address.
        let public = !ip.is_some_and(is_local);
        let mut stream = open(addr, url, config).await?;
        match exchange_on(&mut stream, url, target, range, true, config).await? {
            (Reply::Body(body), reusable) => {
                if reusable {
                    *kept = Some(KeptAlive {
                        origin: origin(url),
                        public,
                        stream,
                    });
                }
                Ok((body, None))
            }
            (Reply::Redirect(location), _) => {
                let next = next_hop(url, location)?;
                follow(next, Some(public), 1, range, config).await
            }
        }
    };
    tokio::time::timeout(config.timeout, attempt)
        .await
        .unwrap_or(Err(TrackerError::Timeout))
}

/// One request and its answer on `stream`. With `keep_alive` the server is asked to keep
/// the connection open, and the second value says whether it may be used again (the
/// body was delimited by its length and the server did not say `close`).
async fn exchange_on<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    url: &TrackerUrl,
    target: &str,
    range: Option<(u64, u64)>,
    keep_alive: bool,
    config: &HttpConfig,
) -> Result<(Reply, bool), TrackerError> {
    let range_header = range
        .map(|(first, last)| format!("Range: bytes={first}-{last}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: shoal/{}\r\n{range_header}Accept-Encoding: identity\r\nConnection: {}\r\n\r\n",
        url.authority(),
        env!("CARGO_PKG_VERSION"),
        if keep_alive { "keep-alive" } else { "close" },
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| io_error("cannot send the request", e))?;

    let mut buf = Vec::with_capacity(4096);
    let (head, head_len) = loop {
        if let Some(parsed) = parse_response_head(&buf)? {
            break parsed;
        }
        if read_more(stream, &mut buf, config.idle_timeout).await? == 0 {
            return Err(TrackerError::Io(
                "connection closed before a response".into(),
            ));
        }
    };
    if (300..400).contains(&head.status) {
        let location = head
            .header("location")
            .ok_or(TrackerError::BadResponse("redirect without a location"))?;
        return Ok((Reply::Redirect(location.to_owned()), false));
    }
    let connection = head.header("connection").map(str::to_ascii_lowercase);
    let reusable = keep_alive
        && match connection {
            Some(c) if c.contains("close") => false,
            Some(c) if c.contains("keep-alive") => true,
            _ => !head.http10,
        };
    // With a range, exactly its bytes are accepted: a 206 for them, or a 200 that is
    // the whole resource and as long as the range (checked against the length below).
    let max = match range {
        None if head.status == 200 => config.max_body,
        Some((first, last)) if head.status == 206 || (head.status == 200 && first == 0) => {
            if head.status == 206 {
                check_content_range(head.header("content-range"), first, last)?;
            }
            (last - first + 1) as usize
        }
        _ => return Err(TrackerError::Http(head.status)),
    };
    if let Some(encoding) = head
        .header("content-encoding")
        .filter(|e| !e.eq_ignore_ascii_case("identity"))
    {
        return Err(TrackerError::Encoded(encoding.chars().take(32).collect()));
    }
    buf.drain(..head_len);
    match head.framing()? {
        Framing::Length(n) => {
            if n > max as u64 {
                return Err(TrackerError::TooLarge(max));
            }
            let n = n as usize;
            while buf.len() < n {
                if read_more(stream, &mut buf, config.idle_timeout).await? == 0 {
                    return Err(TrackerError::Io(
                        "body shorter than its Content-Length".into(),
                    ));
                }
            }
            // Bytes past the body would be an answer we never asked for.
            let reusable = reusable && buf.len() == n;
            buf.truncate(n);
            Ok((exact(buf, range)?, reusable))
        }
        Framing::Chunked => loop {
            if let Some(body) = decode_chunked(&buf, max)? {
                return Ok((exact(body, range)?, false));
            }
            // Chunk framing adds a few bytes per chunk; twice the cap is plenty.
            if buf.len() > 2 * max + 1024
                || read_more(stream, &mut buf, config.idle_timeout).await? == 0
            {
                return Err(TrackerError::BadResponse(
                    "chunked body incomplete or too large",
                ));
            }
        },
        Framing::UntilClose => {
            while read_more(stream, &mut buf, config.idle_timeout).await? > 0 {
                if buf.len() > max {
                    return Err(TrackerError::TooLarge(max));
                }
            }
            Ok((exact(buf, range)?, false))
        }
    }
}

/// The body, if it is as long as the range asked for (any length without a range).
fn exact(body: Vec<u8>, range: Option<(u64, u64)>) -> Result<Reply, TrackerError> {
    match range {
        Some((first, last)) if body.len() as u64 != last - first + 1 => Err(
            TrackerError::BadResponse("the body is not the range asked for"),
        ),
        _ => Ok(Reply::Body(body)),
    }
}

/// A 206's `Content-Range: bytes FIRST-LAST/TOTAL` must name the range asked for.
fn check_content_range(header: Option<&str>, first: u64, last: u64) -> Result<(), TrackerError> {
    let named = header
        .and_then(|h| h.trim().strip_prefix("bytes "))
        .and_then(|h| h.split_once('/'))
        .and_then(|(span, _)| span.split_once('-'))
        .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)));
    if named == Some((first, last)) {
        Ok(())
    } else {
        Err(TrackerError::BadResponse(
            "Content-Range is not the range asked for",
        ))
    }
}

async fn read_more<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    idle_timeout: Option<Duration>,
) -> Result<usize, TrackerError> {
    let mut chunk = [0u8; 16 * 1024];
    let read = stream.read(&mut chunk);
    let result = match idle_timeout {
        Some(idle) => tokio::time::timeout(idle, read)
            .await
            .map_err(|_| TrackerError::Io(format!("nothing received for {idle:?}")))?,
        None => read.await,
    };
    let n = match result {
        Ok(n) => n,
        // Servers that close without TLS close_notify: what arrived is all there is.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
        Err(e) => return Err(io_error("reading the response", e)),
    };
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hops(ips: &[&str]) -> Result<(), TrackerError> {
        let mut first = None;
        ips.iter()
            .try_for_each(|ip| check_hop(&mut first, ip.parse().unwrap()))
    }

    #[tokio::test]
    async fn an_unspecified_bind_resolves_its_own_family_only() {
        let url = |u: &str| TrackerUrl::parse(u).unwrap();
        let (v4, v6) = (url("http://127.0.0.1:6969/a"), url("http://[::1]:6969/a"));
        let (any4, any6): (IpAddr, IpAddr) = ("0.0.0.0".parse().unwrap(), "::".parse().unwrap());
        assert_eq!(
            resolve(&v4, Some(any4)).await.unwrap(),
            "127.0.0.1:6969".parse().unwrap()
        );
        assert_eq!(
            resolve(&v6, Some(any6)).await.unwrap(),
            "[::1]:6969".parse().unwrap()
        );
        for (url, bind) in [(&v4, any6), (&v6, any4)] {
            let error = resolve(url, Some(bind)).await.unwrap_err();
            assert!(matches!(error, TrackerError::NoRoute(_)), "{error}");
        }
        // Without a family asked for, any address will do.
        assert!(resolve(&v6, None).await.is_ok());
    }

    #[test]
    fn a_range_answer_must_be_the_range_asked_for() {
        assert!(check_content_range(Some("bytes 10-19/100"), 10, 19).is_ok());
        assert!(check_content_range(Some("bytes 10-19/*"), 10, 19).is_ok());
        for bad in [
            None,
            Some("bytes 0-19/100"),
            Some("bytes 10-18/100"),
            Some("10-19/100"),
            Some("bytes x-y/z"),
        ] {
            assert!(check_content_range(bad, 10, 19).is_err(), "{bad:?}");
        }
        assert!(exact(vec![0; 10], Some((10, 19))).is_ok());
        assert!(exact(vec![0; 9], Some((10, 19))).is_err());
        assert!(exact(vec![0; 11], Some((10, 19))).is_err());
        assert!(exact(vec![0; 3], None).is_ok());
    }

    #[test]
    fn public_tracker_cannot_redirect_to_local_addresses() {
        assert!(hops(&["203.0.113.5", "198.51.100.7"]).is_ok());
        assert!(hops(&["127.0.0.1", "10.0.0.1", "203.0.113.5"]).is_ok());
        for local in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "169.254.169.254",
            "::1",
            "fd00::1",
        ] {
            assert!(
                matches!(hops(&["203.0.113.5", local]), Err(TrackerError::Refused(_))),
                "{local}"
            );
        }
        // Once public, always judged as public.
        assert!(hops(&["203.0.113.5", "198.51.100.7", "127.0.0.1"]).is_err());
    }
}
