//! SOCKS5 (RFC 1928) CONNECT and UDP ASSOCIATE, with RFC 1929 user/password
//! authentication.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use std::net::{IpAddr, SocketAddr};

use crate::{ProxyError, Server, Target};

/// A SOCKS5 proxy.
#[derive(Clone, PartialEq, Eq)]
pub struct Socks5(pub(crate) Server);

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const USER_PASSWORD: u8 = 2;
const NO_ACCEPTABLE: u8 = 0xff;
const CONNECT: u8 = 1;
const UDP_ASSOCIATE: u8 = 3;
const ATYP_V4: u8 = 1;
const ATYP_NAME: u8 = 3;
const ATYP_V6: u8 = 4;

impl Socks5 {
    /// Opens a TCP connection to `target` through the proxy. The caller bounds it in time.
    pub async fn connect(&self, target: Target<'_>) -> Result<TcpStream, ProxyError> {
        let connect = request(CONNECT, target)?;
        let mut stream = self.0.dial().await?;
        self.handshake(&mut stream, &connect).await?;
        Ok(stream)
    }

    /// Asks the proxy to relay UDP datagrams (UDP ASSOCIATE) sent from `from` (an
    /// unspecified address if not known; the proxy then takes the control connection's
    /// address). The relay lives as long as the returned [`UdpAssociation`].
    pub async fn udp_associate(&self, from: SocketAddr) -> Result<UdpAssociation, ProxyError> {
        let associate = request(UDP_ASSOCIATE, Target::Addr(from))?;
        let mut control = self.0.dial().await?;
        let bound = self.handshake(&mut control, &associate).await?;
        let relay = match bound {
            // "Send to where you reached me": an unspecified address is the proxy's own.
            Some(relay) if relay.ip().is_unspecified() => {
                SocketAddr::new(control.peer_addr()?.ip(), relay.port())
            }
            Some(relay) => relay,
            None => return Err(ProxyError::NotSocks5),
        };
        Ok(UdpAssociation {
            relay: crate::canonical(relay),
            control,
        })
    }

    /// Logs in and sends `request`; returns the address the proxy's reply names (where
    /// it connected from, or its UDP relay), unless it named a host.
    async fn handshake(
        &self,
        stream: &mut TcpStream,
        request: &[u8],
    ) -> Result<Option<SocketAddr>, ProxyError> {
        let greeting: &[u8] = match self.0.credentials {
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
                    .0
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
        let (len, name) = match head[3] {
            ATYP_V4 => (4 + 2, false),
            ATYP_V6 => (16 + 2, false),
            ATYP_NAME => {
                let mut len = [0u8; 1];
                stream.read_exact(&mut len).await?;
                (usize::from(len[0]) + 2, true)
            }
            _ => return Err(ProxyError::NotSocks5),
        };
        let mut bound = [0u8; 255 + 2];
        stream.read_exact(&mut bound[..len]).await?;
        let port = u16::from_be_bytes([bound[len - 2], bound[len - 1]]);
        Ok(match (name, len) {
            (true, _) => None,
            (false, 6) => {
                let ip: [u8; 4] = bound[..4].try_into().expect("4 bytes");
                Some(SocketAddr::new(IpAddr::from(ip), port))
            }
            (false, _) => {
                let ip: [u8; 16] = bound[..16].try_into().expect("16 bytes");
                Some(SocketAddr::new(IpAddr::from(ip), port))
            }
        })
    }
}

/// A UDP relay the proxy keeps for us while the control connection is open (RFC 1928
/// section 7): datagrams sent to `relay` with a [`udp_header`] go on to the address it
/// names, and answers come back from `relay` behind the header of their sender.
#[derive(Debug)]
pub struct UdpAssociation {
    pub relay: SocketAddr,
    /// The association ends when this closes.
    pub control: TcpStream,
}

/// The header in front of a datagram sent through a UDP relay, naming where it goes: a
/// host name is resolved by the proxy.
pub fn udp_header(target: Target<'_>) -> Result<Vec<u8>, ProxyError> {
    let mut header = request(0, target)?;
    // RSV RSV FRAG, where a request has VER CMD RSV.
    header[..3].copy_from_slice(&[0, 0, 0]);
    Ok(header)
}

/// A datagram from a UDP relay: its sender and its payload. `None` for what is not such a
/// datagram, a fragment (which no proxy is obliged to send and we do not reassemble), or
/// a sender given by name.
pub fn parse_udp(datagram: &[u8]) -> Option<(SocketAddr, &[u8])> {
    let (&[0, 0, 0, atyp], rest) = datagram.split_first_chunk::<4>()? else {
        return None;
    };
    let (ip, rest) = match atyp {
        ATYP_V4 => {
            let (ip, rest) = rest.split_first_chunk::<4>()?;
            (IpAddr::from(*ip), rest)
        }
        ATYP_V6 => {
            let (ip, rest) = rest.split_first_chunk::<16>()?;
            (IpAddr::from(*ip), rest)
        }
        _ => return None,
    };
    let (port, payload) = rest.split_first_chunk::<2>()?;
    let from = SocketAddr::new(ip, u16::from_be_bytes(*port));
    Some((crate::canonical(from), payload))
}

/// A request with command `command` for `target` (the UDP header has the same shape).
fn request(command: u8, target: Target<'_>) -> Result<Vec<u8>, ProxyError> {
    let mut out = vec![VERSION, command, 0];
    let port = match target {
        Target::Addr(addr) => {
            match addr.ip().to_canonical() {
                IpAddr::V4(ip) => {
                    out.push(ATYP_V4);
                    out.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    out.push(ATYP_V6);
                    out.extend_from_slice(&ip.octets());
                }
            }
            addr.port()
        }
        Target::Name(name, port) => {
            // An address written as a name is sent as the address.
            if let Ok(ip) = name.trim_matches(['[', ']']).parse::<IpAddr>() {
                return request(command, Target::Addr(SocketAddr::new(ip, port)));
            }
            let len = u8::try_from(name.len()).map_err(|_| ProxyError::NameTooLong)?;
            out.push(ATYP_NAME);
            out.push(len);
            out.extend_from_slice(name.as_bytes());
            port
        }
    };
    out.extend_from_slice(&port.to_be_bytes());
    Ok(out)
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
    use crate::Proxy;
    use tokio::net::TcpListener;

    #[test]
    fn connect_requests() {
        let v4 = request(CONNECT, Target::Addr("10.1.2.3:6881".parse().unwrap())).unwrap();
        assert_eq!(v4, [5, 1, 0, 1, 10, 1, 2, 3, 0x1a, 0xe1]);
        let mapped = request(
            CONNECT,
            Target::Addr("[::ffff:10.1.2.3]:6881".parse().unwrap()),
        );
        assert_eq!(mapped.unwrap(), v4);
        let v6 = request(CONNECT, Target::Addr("[2001:db8::1]:80".parse().unwrap())).unwrap();
        assert_eq!(&v6[..4], [5, 1, 0, 4]);
        assert_eq!(v6.len(), 4 + 16 + 2);
        let name = request(CONNECT, Target::Name("tracker.example", 443)).unwrap();
        assert_eq!(&name[..5], [5, 1, 0, 3, 15]);
        assert_eq!(&name[5..20], b"tracker.example");
        assert_eq!(&name[20..], [1, 187]);
        let literal = request(CONNECT, Target::Name("[2001:db8::1]", 80)).unwrap();
        assert_eq!(literal, v6);
        let long = "a".repeat(256);
        assert!(matches!(
            request(CONNECT, Target::Name(&long, 1)),
            Err(ProxyError::NameTooLong)
        ));
    }

    /// A proxy that answers the handshake with `replies` (after reading what the client
    /// sends at each step) and records what it read.
    async fn scripted(replies: Vec<Vec<u8>>) -> (Proxy, tokio::task::JoinHandle<Vec<u8>>) {
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

    #[test]
    fn udp_headers_and_datagrams() {
        let to = Target::Addr("10.1.2.3:6881".parse().unwrap());
        assert_eq!(
            udp_header(to).unwrap(),
            [0, 0, 0, 1, 10, 1, 2, 3, 0x1a, 0xe1]
        );
        let named = udp_header(Target::Name("t.example", 80)).unwrap();
        assert_eq!(&named[..5], [0, 0, 0, 3, 9]);
        let mut datagram = vec![0, 0, 0, 1, 10, 1, 2, 3, 0x1a, 0xe1];
        datagram.extend_from_slice(b"d1:ad2:id20:");
        let (from, payload) = parse_udp(&datagram).unwrap();
        assert_eq!(from, "10.1.2.3:6881".parse().unwrap());
        assert_eq!(payload, b"d1:ad2:id20:");
        let mut v6 = vec![0, 0, 0, 4];
        v6.extend_from_slice(
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        v6.extend_from_slice(&[0, 80]);
        assert_eq!(
            parse_udp(&v6).unwrap().0,
            "[2001:db8::1]:80".parse().unwrap()
        );
        // A fragment, a name, a short header, another reserved value: dropped.
        let mut fragment = datagram.clone();
        fragment[2] = 1;
        for bad in [
            &fragment[..],
            &named[..],
            &datagram[..7],
            &[1, 0, 0, 1, 10, 1, 2, 3, 0, 1],
            &[],
        ] {
            assert!(parse_udp(bad).is_none(), "{bad:?}");
        }
    }

    /// The relay a scripted proxy names with `bound` (its reply's address and port), and
    /// what the proxy read.
    async fn relay_named(bound: &[u8]) -> (SocketAddr, Vec<u8>) {
        let mut reply = vec![5, 0, 0, 1];
        reply.extend_from_slice(bound);
        let (proxy, task) = scripted(vec![vec![5, 2], vec![1, 0], reply]).await;
        let Proxy::Socks5(socks) = proxy else {
            panic!("SOCKS5")
        };
        let association = socks
            .udp_associate("0.0.0.0:0".parse().unwrap())
            .await
            .unwrap();
        (association.relay, task.await.unwrap())
    }

    #[tokio::test]
    async fn associates_and_learns_the_relay() {
        let (relay, read) = relay_named(&[127, 0, 0, 9, 0x1f, 0x90]).await;
        assert_eq!(relay, "127.0.0.9:8080".parse().unwrap());
        assert!(read.ends_with(&[5, 3, 0, 1, 0, 0, 0, 0, 0, 0]), "{read:?}");
        // "Unspecified": the proxy's own address.
        let (relay, _) = relay_named(&[0, 0, 0, 0, 4, 0]).await;
        assert_eq!(relay, "127.0.0.1:1024".parse().unwrap());
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
