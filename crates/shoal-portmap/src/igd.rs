//! Runs UPnP IGD port mapping ([`crate::upnp`]'s messages) over tokio: find the router
//! by SSDP, read its description, map the ports, renew them, remove them on stop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};
use tokio::sync::oneshot;

use crate::natpmp::{Event, Protocol};
use crate::upnp::{self, Control, Url};

/// How long the search waits for routers to answer.
const SEARCH_TIME: Duration = Duration::from_secs(3);
/// Each HTTP exchange with the router, at most.
const HTTP_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest answer read from the router (descriptions are a few KiB).
const MAX_RESPONSE: usize = 64 * 1024;
/// The lease asked for; renewed at half of it.
const LEASE: u32 = 3600;

/// Maps `ports` through the first router that answers an SSDP search from `local`,
/// until `stopped`; then removes them. Events as for NAT-PMP.
pub(crate) async fn run(
    local: Ipv4Addr,
    ports: Vec<(Protocol, u16)>,
    report: impl Fn(Event),
    mut stopped: oneshot::Receiver<()>,
) {
    let fail = |reason: String| {
        report(Event::Failed {
            protocol: None,
            reason,
        })
    };
    let found = tokio::select! {
        _ = &mut stopped => return,
        found = discover(local) => found,
    };
    let control = match found {
        Ok(control) => control,
        Err(reason) => return fail(reason),
    };
    // The address the router sees us at: the one our packets to it leave from.
    let client = match local_ip_towards(local, control.url.addr()).await {
        Some(ip) => ip,
        None => return fail(format!("no route to the router at {}", control.url.host)),
    };
    let external = call(&control, client, "GetExternalIPAddress", &[]).await;
    if let Ok(Some(ip)) =
        external.map(|a| a.get("NewExternalIPAddress").and_then(|ip| ip.parse().ok()))
    {
        report(Event::ExternalAddress(ip));
    }
    // What the router granted: (protocol, internal port, external port).
    let mut mapped: Vec<(Protocol, u16, u16)> = Vec::new();
    'renewals: loop {
        for &(protocol, port) in &ports {
            if stopped.try_recv().is_ok() {
                break 'renewals;
            }
            let granted = mapped
                .iter()
                .find(|m| (m.0, m.1) == (protocol, port))
                .map(|m| m.2);
            match add_somewhere(&control, client, protocol, port, granted).await {
                Ok((external, lease)) => {
                    mapped.retain(|m| (m.0, m.1) != (protocol, port));
                    mapped.push((protocol, port, external));
                    report(Event::Mapped {
                        protocol,
                        internal: port,
                        external,
                        lifetime: lease,
                    });
                }
                Err(reason) => {
                    report(Event::Failed {
                        protocol: Some(protocol),
                        reason,
                    });
                }
            }
        }
        if mapped.is_empty() {
            return;
        }
        let renew = tokio::time::sleep(Duration::from_secs(u64::from(LEASE / 2)));
        tokio::select! {
            _ = &mut stopped => break,
            () = renew => {}
        }
    }
    // The removals side by side, so that stopping takes one round trip to the router.
    let removals: Vec<_> = mapped
        .into_iter()
        .map(|(protocol, _, external)| {
            let control = control.clone();
            tokio::spawn(async move {
                let args = [
                    ("NewRemoteHost", String::new()),
                    ("NewExternalPort", external.to_string()),
                    ("NewProtocol", protocol_name(protocol).to_owned()),
                ];
                let _ = call(&control, client, "DeletePortMapping", &args).await;
            })
        })
        .collect();
    for removal in removals {
        let _ = removal.await;
    }
}

/// Another port tried when the router says the external port is another host's.
const CONFLICT_RETRIES: u32 = 4;

/// Forwards `internal` from the external port granted before (`granted`), else from
/// the same port, else, when the router reports a conflict (718, or the 501 some
/// routers answer instead) from a random one of 40000–49999, as libtorrent does: the
/// external port and the lease.
async fn add_somewhere(
    control: &Control,
    client: Ipv4Addr,
    protocol: Protocol,
    internal: u16,
    granted: Option<u16>,
) -> Result<(u16, u32), String> {
    let mut external = granted.unwrap_or(internal);
    let mut tries = 0;
    loop {
        match add(control, client, protocol, (internal, external)).await {
            Ok(lease) => return Ok((external, lease)),
            Err(e) if is_conflict(&e) && tries < CONFLICT_RETRIES => {
                tries += 1;
                external = rand::thread_rng().gen_range(40000..50000);
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_conflict(error: &str) -> bool {
    error.contains("error 718") || error.contains("error 501")
}

fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

/// Forwards the external port to `client`'s internal one; the lease granted (0: until
/// the router restarts, for routers that take no other).
async fn add(
    control: &Control,
    client: Ipv4Addr,
    protocol: Protocol,
    (internal, external): (u16, u16),
) -> Result<u32, String> {
    let args = |lease: u32| {
        [
            ("NewRemoteHost", String::new()),
            ("NewExternalPort", external.to_string()),
            ("NewProtocol", protocol_name(protocol).to_owned()),
            ("NewInternalPort", internal.to_string()),
            ("NewInternalClient", client.to_string()),
            ("NewEnabled", "1".to_owned()),
            (
                "NewPortMappingDescription",
                format!("shoal {}", protocol.as_str()),
            ),
            ("NewLeaseDuration", lease.to_string()),
        ]
    };
    match call(control, client, "AddPortMapping", &args(LEASE)).await {
        Ok(_) => Ok(LEASE),
        // 725: OnlyPermanentLeasesSupported.
        Err(e) if e.contains("error 725") => call(control, client, "AddPortMapping", &args(0))
            .await
            .map(|_| 0),
        Err(e) => Err(e),
    }
}

/// One SOAP call, from `from` (routers in secure mode, as miniupnpd by default, map
/// ports only to the address a request comes from).
async fn call(
    control: &Control,
    from: Ipv4Addr,
    action: &str,
    args: &[(&str, String)],
) -> Result<std::collections::HashMap<String, String>, String> {
    let request = upnp::soap_request(control, action, args);
    let (status, body) = http(from, control.url.addr(), &request)
        .await
        .map_err(|e| format!("{action}: {e}"))?;
    upnp::parse_soap_response(status, &body).map_err(|e| format!("{action}: {e}"))
}

/// The router's WAN connection service, from the first answer to an SSDP search whose
/// description has one.
async fn discover(local: Ipv4Addr) -> Result<Control, String> {
    let socket = UdpSocket::bind(SocketAddr::from((local, 0)))
        .await
        .map_err(|e| format!("UPnP: cannot open a socket: {e}"))?;
    let _ = socket.set_multicast_ttl_v4(2);
    let search = upnp::search_request();
    let deadline = tokio::time::Instant::now() + SEARCH_TIME;
    let mut buf = [0u8; 2048];
    let mut tried = Vec::new();
    for _ in 0..2 {
        let _ = socket.send_to(&search, upnp::SSDP).await;
    }
    loop {
        let received = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await;
        let Ok(Ok((n, from))) = received else {
            return Err("UPnP: no router answered the search".into());
        };
        let Some(location) = upnp::parse_search_response(&buf[..n], from) else {
            continue;
        };
        if tried.contains(&location) || tried.len() >= 8 {
            continue;
        }
        tried.push(location.clone());
        if let Some(control) = describe(local, &location).await {
            return Ok(control);
        }
    }
}

async fn describe(from: Ipv4Addr, location: &Url) -> Option<Control> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        location.path,
        location.addr()
    );
    let (status, body) = http(from, location.addr(), request.as_bytes()).await.ok()?;
    (status == 200).then(|| upnp::parse_description(&body, location))?
}

/// Our address on the way to `to` (from `local` if it is not unspecified).
async fn local_ip_towards(local: Ipv4Addr, to: SocketAddr) -> Option<Ipv4Addr> {
    if !local.is_unspecified() {
        return Some(local);
    }
    let probe = UdpSocket::bind("0.0.0.0:0").await.ok()?;
    probe.connect(to).await.ok()?;
    match probe.local_addr().ok()?.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    }
}

/// One HTTP/1.1 exchange, `Connection: close`: the status and the body (at most
/// [`MAX_RESPONSE`] bytes; chunked bodies are joined).
async fn http(from: Ipv4Addr, addr: SocketAddr, request: &[u8]) -> std::io::Result<(u16, String)> {
    let exchange = async {
        let socket = TcpSocket::new_v4()?;
        if !from.is_unspecified() {
            socket.bind(SocketAddr::from((from, 0)))?;
        }
        let mut stream = socket.connect(addr).await?;
        stream.write_all(request).await?;
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        // To the end of the body (some routers keep the connection open after it), of
        // the stream, or of what we take.
        while !complete(&response) && response.len() < MAX_RESPONSE {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "the router did not answer")
        })??;
    parse_http(&response)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response"))
}

/// Whether `response` holds a whole HTTP response: its headers and as many body bytes
/// as its `Content-Length` says, or a chunked body's last chunk.
fn complete(response: &[u8]) -> bool {
    let text = String::from_utf8_lossy(response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return body.ends_with("0\r\n\r\n");
    }
    header("content-length")
        .and_then(|len| len.parse::<usize>().ok())
        .is_some_and(|len| body.len() >= len)
}

/// Status and body of a whole HTTP response.
fn parse_http(response: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if !chunked {
        return Some((status, body.to_owned()));
    }
    let mut joined = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some((status, joined));
        }
        joined.push_str(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix("\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_responses() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_http(plain), Some((200, "hello".into())));
        let chunked = b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_http(chunked), Some((500, "abcde".into())));
        assert_eq!(
            parse_http(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            None
        );
        assert_eq!(parse_http(b"garbage"), None);
        assert!(complete(plain));
        assert!(!complete(&plain[..plain.len() - 1]));
        assert!(complete(chunked));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"));
        assert!(!complete(
            b"HTTP/1.1 200 OK\r\n\r\nno length: read to the end"
        ));
    }
}
