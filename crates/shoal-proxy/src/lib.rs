//! Proxy clients for TCP connections to peers, trackers and web seeds, as libtorrent's
//! `proxy_type` makes them: SOCKS5 (RFC 1928, with RFC 1929 user/password, [`socks5`])
//! and HTTP `CONNECT` (RFC 9110, with Basic authentication, [`http`]).
//!
//! Only connections out. Names (a tracker's or a web seed's host) are sent to the proxy
//! to resolve, so no DNS query leaves this host for them; peers are addresses already.
//! What a proxy sends back is read into bounded buffers: a hostile proxy cannot make us
//! allocate.

pub mod http;
pub mod socks5;

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use percent_encoding::percent_decode_str;
use tokio::net::TcpStream;

pub use http::HttpProxy;
pub use socks5::{Socks5, UdpAssociation};

/// A proxy to connect through, from `socks5://…`, `socks5h://…` or `http://…`.
#[derive(Clone, PartialEq, Eq)]
pub enum Proxy {
    Socks5(Socks5),
    Http(HttpProxy),
}

/// What a connection goes to: an address, or a host name for the proxy to resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Addr(SocketAddr),
    Name(&'a str, u16),
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("proxy URL '{0}': {1}")]
    Url(String, &'static str),
    #[error("cannot reach the proxy: {0}")]
    Io(#[from] io::Error),
    #[error("the proxy does not speak SOCKS5")]
    NotSocks5,
    #[error(
        "the proxy accepts none of our ways to log in (a user name and password may be needed)"
    )]
    NoAcceptableMethod,
    #[error("the proxy refused the user name and password")]
    AuthFailed,
    #[error("the proxy could not connect: {0}")]
    Refused(&'static str),
    #[error("the proxy answered CONNECT with HTTP {0}")]
    HttpStatus(u16),
    #[error("the proxy's answer is not HTTP")]
    NotHttp,
    #[error("host name longer than 255 bytes")]
    NameTooLong,
}

/// Where a proxy is, and the user name and password it wants, if any.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Server {
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

impl Server {
    /// `host:port` after the scheme, with `user[:password]@` before it (percent-encoded
    /// if need be).
    fn parse(url: &str, rest: &str) -> Result<Server, ProxyError> {
        let bad = |why| ProxyError::Url(url.to_owned(), why);
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (credentials, server) = match rest.rsplit_once('@') {
            Some((login, server)) => {
                let (user, password) = login.split_once(':').unwrap_or((login, ""));
                let decode = |s: &str| {
                    percent_decode_str(s)
                        .decode_utf8()
                        .map(|s| s.into_owned())
                        .map_err(|_| bad("the user name or password is not UTF-8"))
                };
                let (user, password) = (decode(user)?, decode(password)?);
                if user.is_empty() || user.len() > 255 || password.len() > 255 {
                    return Err(bad(
                        "the user name and password must be 1-255 and 0-255 bytes",
                    ));
                }
                (Some((user, password)), server)
            }
            None => (None, rest),
        };
        let (host, port) = server
            .rsplit_once(':')
            .ok_or_else(|| bad("no port (SCHEME://HOST:PORT)"))?;
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.strip_suffix(']').ok_or_else(|| bad("unclosed '['"))?,
            None if host.contains(':') => return Err(bad("an IPv6 address goes in brackets")),
            None => host,
        };
        let port: u16 = port
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| bad("the port is not 1-65535"))?;
        if host.is_empty() || host.contains(['/', '?', '#']) {
            return Err(bad("no host"));
        }
        Ok(Server {
            host: host.to_owned(),
            port,
            credentials,
        })
    }

    /// A TCP connection to the proxy itself.
    async fn dial(&self) -> io::Result<TcpStream> {
        let stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    fn fmt(&self, scheme: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => write!(f, "{scheme}://[{ip}]:{}", self.port),
            _ => write!(f, "{scheme}://{}:{}", self.host, self.port),
        }
    }
}

impl FromStr for Proxy {
    type Err = ProxyError;

    /// `socks5://[user[:password]@]host:port` (`socks5h://` too: names always go to the
    /// proxy), or `http://[user[:password]@]host:port`.
    fn from_str(url: &str) -> Result<Self, ProxyError> {
        if let Some(rest) = url
            .strip_prefix("socks5://")
            .or_else(|| url.strip_prefix("socks5h://"))
        {
            return Ok(Proxy::Socks5(Socks5(Server::parse(url, rest)?)));
        }
        if let Some(rest) = url.strip_prefix("http://") {
            return Ok(Proxy::Http(HttpProxy(Server::parse(url, rest)?)));
        }
        Err(ProxyError::Url(
            url.to_owned(),
            "a proxy is socks5://HOST:PORT or http://HOST:PORT",
        ))
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl Proxy {
    /// Opens a TCP connection to `target` through the proxy. The caller bounds it in time.
    pub async fn connect(&self, target: Target<'_>) -> Result<TcpStream, ProxyError> {
        match self {
            Proxy::Socks5(proxy) => proxy.connect(target).await,
            Proxy::Http(proxy) => proxy.connect(target).await,
        }
    }
}

/// `scheme://host:port`, without the credentials.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proxy::Socks5(Socks5(server)) => server.fmt("socks5", f),
            Proxy::Http(HttpProxy(server)) => server.fmt("http", f),
        }
    }
}

/// The password stays out of logs.
impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Proxy::Socks5(Socks5(server)) | Proxy::Http(HttpProxy(server))) = self;
        f.debug_struct("Proxy")
            .field("url", &self.to_string())
            .field("user", &server.credentials.as_ref().map(|c| &c.0))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let Proxy::Socks5(Socks5(s)) = "socks5://127.0.0.1:1080".parse().unwrap() else {
            panic!("a SOCKS5 proxy");
        };
        assert_eq!(
            (s.host.as_str(), s.port, s.credentials),
            ("127.0.0.1", 1080, None)
        );
        let p: Proxy = "socks5h://al%40ice:p%3Ass@[::1]:9050/".parse().unwrap();
        let Proxy::Socks5(Socks5(s)) = &p else {
            panic!("a SOCKS5 proxy");
        };
        assert_eq!(s.host, "::1");
        assert_eq!(s.credentials, Some(("al@ice".into(), "p:ss".into())));
        assert_eq!(p.to_string(), "socks5://[::1]:9050");
        assert!(!format!("{p:?}").contains("p:ss"), "{p:?}");
        let h: Proxy = "http://u:pw@proxy.example:3128".parse().unwrap();
        assert_eq!(h.to_string(), "http://proxy.example:3128");
        assert!(matches!(h, Proxy::Http(_)));
        for bad in [
            "https://h:1",
            "socks5://h",
            "socks5://h:0",
            "socks5://h:x",
            "socks5://:1080",
            "socks5://::1:1080",
            "socks5://@h:1",
            "socks4://h:1",
            "http://h",
        ] {
            assert!(bad.parse::<Proxy>().is_err(), "{bad}");
        }
    }
}
