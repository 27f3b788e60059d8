//! A SOCKS5 client (RFC 1928, with RFC 1929 user/password authentication): TCP
//! connections to peers, trackers and web seeds made through a proxy, as libtorrent's
//! `proxy_type = socks5` makes them.
//!
//! Only CONNECT. Names (a tracker's or a web seed's host) are sent to the proxy to
//! resolve, so no DNS query leaves this host for them; peers are addresses already.
//! Every length the proxy sends is read into a fixed buffer: a hostile proxy cannot make
//! us allocate.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use percent_encoding::percent_decode_str;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const USER_PASSWORD: u8 = 2;
const NO_ACCEPTABLE: u8 = 0xff;
const CONNECT: u8 = 1;
const ATYP_V4: u8 = 1;
const ATYP_NAME: u8 = 3;
const ATYP_V6: u8 = 4;

/// A SOCKS5 proxy: where it is, and the user name and password it wants, if any.
#[derive(Clone, PartialEq, Eq)]
pub struct Socks5 {
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

/// The password stays out of logs.
impl fmt::Debug for Socks5 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socks5")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .finish()
    }
}

/// `socks5://host:port`, without the credentials.
impl fmt::Display for Socks5 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => write!(f, "socks5://[{ip}]:{}", self.port),
            _ => write!(f, "socks5://{}:{}", self.host, self.port),
        }
    }
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
    #[error("host name longer than 255 bytes")]
    NameTooLong,
}

impl FromStr for Socks5 {
    type Err = ProxyError;

    /// `socks5://[user[:password]@]host:port` (`socks5h://` too: names always go to the
    /// proxy). The user name and password may be percent-encoded.
    fn from_str(url: &str) -> Result<Self, ProxyError> {
        let bad = |why| ProxyError::Url(url.to_owned(), why);
        let rest = url
            .strip_prefix("socks5://")
            .or_else(|| url.strip_prefix("socks5h://"))
            .ok_or_else(|| bad("only socks5:// proxies are supported"))?;
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
            .ok_or_else(|| bad("no port (socks5://HOST:PORT)"))?;
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
        Ok(Socks5 {
            host: host.to_owned(),
            port,
            credentials,
        })
    }
}

impl Socks5 {
    /// Opens a TCP connection to `target` through the proxy. The caller bounds it in time.
    pub async fn connect(&self, target: Target<'_>) -> Result<TcpStream, ProxyError> {
        let request = connect_request(target)?;
        let mut stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
        let _ = stream.set_nodelay(true);
        self.handshake(&mut stream, &request).await?;
        Ok(stream)
    }

    async fn handshake(&self, stream: &mut TcpStream, request: &[u8]) -> Result<(), ProxyError> {
        let greeting: &[u8] = match self.credentials {
            Some(_) => &[VERSION, 2, NO_AUTH, USER_PASSWORD],
            None => &[VERSION, 1, NO_AUTH],
        };
        stream.write_all(greeting).await?;
        let mut choice = [0u8; 2];
        stream.read_exact(&mut choice).await?;
        match choice {
            [VERSION, NO_AUTH] => {}
            [VERSION, USER_PASSWORD] => {
                let (user, password) = self
                    .credentials
                    .as_ref()
                    .ok_or(ProxyError::NoAcceptableMethod)?;
                stream.write_all(&login_request(user, password)).await?;
                let mut status = [0u8; 2];
                stream.read_exact(&mut status).await?;
                if status[1] != 0 {
                    return Err(ProxyError::AuthFailed);
                }
            }
            [VERSION, NO_ACCEPTABLE] => return Err(ProxyError::NoAcceptableMethod),
            _ => return Err(ProxyError::NotSocks5),
        }
        stream.write_all(request).await?;
        let mut head = [0u8; 4];
        stream.read_exact(&mut head).await?;
        if head[0] != VERSION {
            return Err(ProxyError::NotSocks5);
        }
        if head[1] != 0 {
            return Err(ProxyError::Refused(reply_text(head[1])));
        }
        // The address the proxy connected from: read past it.
        let skip = match head[3] {
            ATYP_V4 => 4 + 2,
            ATYP_V6 => 16 + 2,
            ATYP_NAME => {
                let mut len = [0u8; 1];
                stream.read_exact(&mut len).await?;
                usize::from(len[0]) + 2
            }
            _ => return Err(ProxyError::NotSocks5),
        };
        let mut bound = [0u8; 255 + 2];
        stream.read_exact(&mut bound[..skip]).await?;
        Ok(())
    }
}

/// The CONNECT request for `target`.
fn connect_request(target: Target<'_>) -> Result<Vec<u8>, ProxyError> {
    let mut request = vec![VERSION, CONNECT, 0];
    let port = match target {
        Target::Addr(addr) => {
            match addr.ip().to_canonical() {
                IpAddr::V4(ip) => {
                    request.push(ATYP_V4);
                    request.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    request.push(ATYP_V6);
                    request.extend_from_slice(&ip.octets());
                }
            }
            addr.port()
        }
        Target::Name(name, port) => {
            // An address written as a name is sent as the address.
            if let Ok(ip) = name.trim_matches(['[', ']']).parse::<IpAddr>() {
                return connect_request(Target::Addr(SocketAddr::new(ip, port)));
            }
            let len = u8::try_from(name.len()).map_err(|_| ProxyError::NameTooLong)?;
            request.push(ATYP_NAME);
            request.push(len);
            request.extend_from_slice(name.as_bytes());
            port
        }
    };
    request.extend_from_slice(&port.to_be_bytes());
    Ok(request)
}

/// RFC 1929's request: version 1, then the user name and the password, each with its
/// length (checked at parse time to fit a byte).
fn login_request(user: &str, password: &str) -> Vec<u8> {
    let mut request = vec![1, user.len() as u8];
    request.extend_from_slice(user.as_bytes());
    request.push(password.len() as u8);
    request.extend_from_slice(password.as_bytes());
    request
}

/// RFC 1928's reply codes.
fn reply_text(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn urls() {
        let p: Socks5 = "socks5://127.0.0.1:1080".parse().unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.credentials),
            ("127.0.0.1", 1080, None)
        );
        let p: Socks5 = "socks5h://al%40ice:p%3Ass@[::1]:9050/".parse().unwrap();
        assert_eq!(p.host, "::1");
        assert_eq!(p.credentials, Some(("al@ice".into(), "p:ss".into())));
        assert_eq!(p.to_string(), "socks5://[::1]:9050");
        assert!(!format!("{p:?}").contains("p:ss"), "{p:?}");
        for bad in [
            "http://h:1",
            "socks5://h",
            "socks5://h:0",
            "socks5://h:x",
            "socks5://:1080",
            "socks5://::1:1080",
            "socks5://@h:1",
            "socks4://h:1",
        ] {
            assert!(bad.parse::<Socks5>().is_err(), "{bad}");
        }
    }

    #[test]
    fn connect_requests() {
        let v4 = connect_request(Target::Addr("10.1.2.3:6881".parse().unwrap())).unwrap();
        assert_eq!(v4, [5, 1, 0, 1, 10, 1, 2, 3, 0x1a, 0xe1]);
        let mapped = connect_request(Target::Addr("[::ffff:10.1.2.3]:6881".parse().unwrap()));
        assert_eq!(mapped.unwrap(), v4);
        let v6 = connect_request(Target::Addr("[2001:db8::1]:80".parse().unwrap())).unwrap();
        assert_eq!(&v6[..4], [5, 1, 0, 4]);
        assert_eq!(v6.len(), 4 + 16 + 2);
        let name = connect_request(Target::Name("tracker.example", 443)).unwrap();
        assert_eq!(&name[..5], [5, 1, 0, 3, 15]);
        assert_eq!(&name[5..20], b"tracker.example");
        assert_eq!(&name[20..], [1, 187]);
        let literal = connect_request(Target::Name("[2001:db8::1]", 80)).unwrap();
        assert_eq!(literal, v6);
        let long = "a".repeat(256);
        assert!(matches!(
            connect_request(Target::Name(&long, 1)),
            Err(ProxyError::NameTooLong)
        ));
    }

    /// A proxy that answers the handshake with `replies` (after reading what the client
    /// sends at each step) and records what it read.
    async fn scripted(replies: Vec<Vec<u8>>) -> (Socks5, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut read = Vec::new();
            for reply in replies {
                let mut buf = [0u8; 512];
                let n = stream.read(&mut buf).await.unwrap();
                read.extend_from_slice(&buf[..n]);
                stream.write_all(&reply).await.unwrap();
            }
            read
        });
        let proxy = format!("socks5://user:secret@127.0.0.1:{port}")
            .parse()
            .unwrap();
        (proxy, task)
    }

    #[tokio::test]
    async fn logs_in_and_connects() {
        let (proxy, task) = scripted(vec![
            vec![5, 2],
            vec![1, 0],
            vec![5, 0, 0, 3, 4, b'h', b'o', b's', b't', 0, 80],
        ])
        .await;
        proxy.connect(Target::Name("t.example", 80)).await.unwrap();
        let read = task.await.unwrap();
        let mut expected = vec![5, 2, 0, 2];
        expected.extend_from_slice(&[1, 4, b'u', b's', b'e', b'r', 6]);
        expected.extend_from_slice(b"secret");
        expected.extend_from_slice(&[5, 1, 0, 3, 9]);
        expected.extend_from_slice(b"t.example");
        expected.extend_from_slice(&[0, 80]);
        assert_eq!(read, expected);
    }

    #[tokio::test]
    async fn refusals_are_errors() {
        let (proxy, _task) = scripted(vec![vec![5, 2], vec![1, 1]]).await;
        let addr = Target::Addr("10.0.0.1:1".parse().unwrap());
        assert!(matches!(
            proxy.connect(addr).await,
            Err(ProxyError::AuthFailed)
        ));
        let (proxy, _task) = scripted(vec![vec![5, 0], vec![5, 5, 0, 1, 0, 0, 0, 0, 0, 0]]).await;
        assert!(matches!(
            proxy.connect(addr).await,
            Err(ProxyError::Refused("connection refused"))
        ));
        let (proxy, _task) = scripted(vec![vec![5, 0xff]]).await;
        assert!(matches!(
            proxy.connect(addr).await,
            Err(ProxyError::NoAcceptableMethod)
        ));
        let (proxy, _task) = scripted(vec![b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()]).await;
        assert!(matches!(
            proxy.connect(addr).await,
            Err(ProxyError::NotSocks5)
        ));
    }
}
