//! Runs a [`NatPmp`] client over a tokio UDP socket until told to stop, then removes
//! the mappings it made.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::natpmp::{Event, NatPmp, Protocol};

/// A running port mapper; [`PortMapper::stop`] removes its mappings.
#[derive(Debug)]
pub struct PortMapper {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts mapping `ports` at `gateway`, from `local` (the address the mappings point
/// to; unspecified lets the system choose, as for the default route). Events go to
/// `events`.
pub async fn spawn(
    gateway: Ipv4Addr,
    local: Ipv4Addr,
    ports: Vec<(Protocol, u16)>,
    events: mpsc::UnboundedSender<Event>,
) -> std::io::Result<PortMapper> {
    let socket = UdpSocket::bind(SocketAddr::from((local, 0))).await?;
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(run(
        socket,
        NatPmp::new(gateway, &ports, Instant::now()),
        events,
        stopped,
    ));
    Ok(PortMapper { stop, task })
}

impl PortMapper {
    /// Removes the mappings (one datagram each, not waited on) and ends the task.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(1), self.task).await;
    }
}

async fn run(
    socket: UdpSocket,
    mut client: NatPmp,
    events: mpsc::UnboundedSender<Event>,
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
            let _ = events.send(event);
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
        let task = tokio::spawn(run(socket, client, tx, stopped));
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
