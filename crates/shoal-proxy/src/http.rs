//! HTTP `CONNECT` (RFC 9110 9.3.6), with Basic authentication (RFC 7617): the proxy
//! opens a TCP connection to the target and relays bytes once it answers 2xx.

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{ProxyError, Server, Target};

/// The longest answer head read from a proxy.
const MAX_HEAD: usize = 8 * 1024;

/// An HTTP proxy that takes `CONNECT`.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpProxy(pub(crate) Server);

impl HttpProxy {
    /// Opens a TCP connection to `target` through the proxy. The caller bounds it in time.
    pub async fn connect(&self, target: Target<'_>) -> Result<TcpStream, ProxyError> {
        let request = self.request(target)?;
        let mut stream = self.0.dial().await?;
        stream.write_all(request.as_bytes()).await?;
        read_answer(&mut stream).await?;
        Ok(stream)
    }

    fn request(&self, target: Target<'_>) -> Result<String, ProxyError> {
        let authority = match target {
            Target::Addr(addr) => addr.to_string(),
            Target::Name(name, _) if name.len() > 255 => return Err(ProxyError::NameTooLong),
            Target::Name(name, port) if name.contains(':') && !name.starts_with('[') => {
                format!("[{name}]:{port}")
            }
            Target::Name(name, port) => format!("{name}:{port}"),
        };
        let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some((user, password)) = &self.0.credentials {
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            request.push_str(&format!("Proxy-Authorization: Basic {basic}\r\n"));
        }
        request.push_str("\r\n");
        Ok(request)
    }
}

/// Reads the proxy's answer head, a byte at a time so that nothing of the tunnel after
/// it is taken, and accepts a 2xx status.
async fn read_answer(stream: &mut TcpStream) -> Result<(), ProxyError> {
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() == MAX_HEAD {
            return Err(ProxyError::NotHttp);
        }
        head.push(stream.read_u8().await?);
    }
    let status_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let status = std::str::from_utf8(status_line)
        .ok()
        .filter(|line| line.starts_with("HTTP/1."))
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or(ProxyError::NotHttp)?;
    match status {
        200..=299 => Ok(()),
        407 => Err(ProxyError::AuthFailed),
        other => Err(ProxyError::HttpStatus(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Proxy;
    use tokio::net::TcpListener;

    fn proxy(url: &str) -> HttpProxy {
        match url.parse().unwrap() {
            Proxy::Http(proxy) => proxy,
            Proxy::Socks5(_) => panic!("an HTTP proxy"),
        }
    }

    #[test]
    fn requests() {
        let plain = proxy("http://p:3128");
        let to = Target::Addr("10.0.0.1:6881".parse().unwrap());
        assert_eq!(
            plain.request(to).unwrap(),
            "CONNECT 10.0.0.1:6881 HTTP/1.1\r\nHost: 10.0.0.1:6881\r\n\r\n"
        );
        let v6 = Target::Addr("[2001:db8::1]:80".parse().unwrap());
        assert!(plain
            .request(v6)
            .unwrap()
            .starts_with("CONNECT [2001:db8::1]:80 "));
        let named = plain.request(Target::Name("t.example", 443)).unwrap();
        assert!(named.starts_with("CONNECT t.example:443 HTTP/1.1\r\nHost: t.example:443\r\n"));
        let login = proxy("http://aladdin:open%20sesame@p:3128");
        let request = login.request(Target::Name("t.example", 80)).unwrap();
        // RFC 7617's example.
        assert!(
            request.contains("Proxy-Authorization: Basic YWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"),
            "{request}"
        );
    }

    /// A proxy that reads the request head, answers `reply`, sends `after` and hangs up.
    async fn answering(reply: &'static [u8], after: &'static [u8]) -> HttpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await.unwrap();
            stream.write_all(reply).await.unwrap();
            stream.write_all(after).await.unwrap();
        });
        proxy(&format!("http://127.0.0.1:{port}"))
    }

    #[tokio::test]
    async fn answers() {
        let to = Target::Name("t.example", 80);
        let ok = answering(b"HTTP/1.1 200 Connection established\r\n\r\n", b"tunnel").await;
        let mut stream = ok.connect(to).await.unwrap();
        let mut first = [0u8; 6];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(
            &first, b"tunnel",
            "the bytes after the head are the tunnel's"
        );
        let denied = answering(b"HTTP/1.1 403 Forbidden\r\nX: y\r\n\r\n", b"").await;
        assert!(matches!(
            denied.connect(to).await,
            Err(ProxyError::HttpStatus(403))
        ));
        let login = answering(b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n", b"").await;
        assert!(matches!(
            login.connect(to).await,
            Err(ProxyError::AuthFailed)
        ));
        let socks = answering(&[5, 0], b"").await;
        assert!(matches!(socks.connect(to).await, Err(ProxyError::Io(_))));
        let endless: &'static [u8] = Box::leak(vec![b'a'; MAX_HEAD + 10].into_boxed_slice());
        let flood = answering(endless, b"").await;
        assert!(matches!(flood.connect(to).await, Err(ProxyError::NotHttp)));
    }
}
