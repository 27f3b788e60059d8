//! Runs port mapping until told to stop, then removes the mappings: a [`NatPmp`] client
//! over a tokio UDP socket and a UPnP IGD client ([`crate::igd`]) side by side, as
//! libtorrent does, since a router may speak either (many speak both; asking twice for
//! the same forwarding to the same host is harmless).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use std::sync::Arc;
use tokio::net::UdpSocket;

use tokio::sync::oneshot;

use crate::natpmp::{Event, NatPmp, Protocol};

/// Which protocol an event came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    NatPmp,
    Upnp,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::NatPmp => "natpmp",
            Method::Upnp => "upnp",
        }
    }
}

/// A running port mapper; [`PortMapper::stop`] removes its mappings.
#[derive(Debug)]
pub struct PortMapper {
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts mapping `ports` at `gateway` (NAT-PMP) and at whichever router answers an
/// SSDP search (UPnP), from `local` (the address the mappings point to; unspecified
/// lets the system choose, as for the default route). Each event goes to `report`
/// with the method it came through.
pub async fn spawn(
    gateway: Ipv4Addr,
    local: Ipv4Addr,
    ports: Vec<(Protocol, u16)>,
    report: impl Fn(Method, Event) + Send + Sync + 'static,
) -> std::io::Result<PortMapper> {
    let socket = UdpSocket::bind(SocketAddr::from((local, 0))).await?;
    let report = Arc::new(report);
    let tagged = |method| {
        let report = report.clone();
        move |event| report(method, event)
    };
    let natpmp = NatPmp::new(gateway, &ports, Instant::now());
    let (stop_natpmp, stopped_natpmp) = oneshot::channel();
    let (stop_upnp, stopped_upnp) = oneshot::channel();
    let natpmp_task = run(socket, natpmp, tagged(Method::NatPmp), stopped_natpmp);
    let upnp_task = crate::igd::run(local, ports, tagged(Method::Upnp), stopped_upnp);
    Ok(PortMapper {
        stops: vec![stop_natpmp, stop_upnp],
        tasks: vec![tokio::spawn(natpmp_task), tokio::spawn(upnp_task)],
    })
}

impl PortMapper {
    /// Removes the mappings and ends the tasks, waiting 4 s at most (a NAT-PMP removal
    /// is a datagram each, the UPnP ones HTTP calls to the router, 3 s at most, side by
    /// side).
    pub async fn stop(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        let tasks = self.tasks;
        let all = async move {
            for task in tasks {
                let _ = task.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(4), all).await;
    }
}

async fn run(
    socket: UdpSocket,
    mut client: NatPmp,
    report: impl Fn(Event),
    mut stopped: oneshot::Receiver<()>,
) {
    let gateway = client.gateway();
    let mut buf = [0u8; 64];
    loop {
        let now = Instant::now();
        while let Some(datagram) = client.poll_transmit(now) {
            if let Err(e) = socket.send_to(&datagram, gateway).await {
                tracing::debug!("NAT-PMP: cannot send to {gateway}: {e}");
            }
        }
        while let Some(event) = client.poll_event() {
            report(event);
        }
        let wake = client.poll_timeout();
        tokio::select! {
            _ = &mut stopped => break,
            received = socket.recv_from(&mut buf) => {
                if let Ok((n, from)) = received {
                    client.handle(from, &buf[..n], Instant::now());
                }
            }
            () = sleep_until(wake) => {}
        }
    }
    for datagram in client.unmap() {
        let _ = socket.send_to(&datagram, gateway).await;
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    /// Against a gateway on loopback that answers like a router: the mapping is
    /// reported, and stopping sends its removal.
    #[tokio::test]
    async fn maps_through_a_gateway_and_removes_on_stop() {
        let gateway = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let gateway_addr = gateway.local_addr().unwrap();
        // The client talks to port 5351; this test's gateway listens elsewhere, so the
        // client is pointed at it through the sans-IO core's address below.
        let (tx, mut rx) = mpsc::unbounded_channel();
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client_addr = socket.local_addr().unwrap();
        let mut client = NatPmp::new(
            Ipv4Addr::LOCALHOST,
            &[(Protocol::Udp, 7000)],
            Instant::now(),
        );
        client.set_server_port(gateway_addr.port());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(socket, client, move |e| tx.send(e).unwrap(), stopped));
        let mut buf = [0u8; 64];
        let mut answered = 0;
        while answered < 2 {
            let (n, from) = gateway.recv_from(&mut buf).await.unwrap();
            assert_eq!(from, client_addr);
            let reply: Vec<u8> = match &buf[..n] {
                [0, 0] => [&[0, 128, 0, 0, 0, 0, 0, 9][..], &[203, 0, 113, 1]].concat(),
                [0, 1, 0, 0, port @ .., _, _, _, _, _, _] => [
                    &[0, 129, 0, 0, 0, 0, 0, 9][..],
                    port,
                    &[0x4e, 0x20],
                    &7200u32.to_be_bytes(),
                ]
                .concat(),
                other => panic!("unexpected request {other:?}"),
            };
            gateway.send_to(&reply, from).await.unwrap();
            answered += 1;
        }
        let mut got = Vec::new();
        while got.len() < 2 {
            got.push(rx.recv().await.unwrap());
        }
        assert!(got.contains(&Event::ExternalAddress(Ipv4Addr::new(203, 0, 113, 1))));
        assert!(got.contains(&Event::Mapped {
            protocol: Protocol::Udp,
            internal: 7000,
            external: 20000,
            lifetime: 7200
        }));
        stop.send(()).unwrap();
        task.await.unwrap();
        let (n, _) = gateway.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], &[0, 1, 0, 0, 0x1b, 0x58, 0, 0, 0, 0, 0, 0]);
    }
}
