//! A far peer on loopback: a UDP relay that holds every datagram for a fixed delay each
//! way (the test machines' kernels have no netem). For uTP; a TCP relay would end TCP's
//! connection at the relay and hide the delay from it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Runs until dropped.
pub struct DelayRelay {
    _runtime: tokio::runtime::Runtime,
}

impl DelayRelay {
    /// Datagrams to `listen` go to `target` after `delay`, from a socket of the relay's own
    /// on `listen`'s address; the target's answers go back, after `delay` too, to whoever
    /// last wrote to `listen`. Order is kept both ways.
    pub fn start(listen: &str, target: SocketAddr, delay: Duration) -> DelayRelay {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let listen: SocketAddr = listen.parse().expect("an address");
        let (front, back) = runtime.block_on(async {
            let front = UdpSocket::bind(listen).await.expect("relay address free");
            let back = UdpSocket::bind((listen.ip(), 0)).await.expect("bind");
            (Arc::new(front), Arc::new(back))
        });
        let client = Arc::new(Mutex::new(None));
        runtime.spawn(relay(
            front.clone(),
            back.clone(),
            Some(target),
            client.clone(),
            delay,
        ));
        runtime.spawn(relay(back, front, None, client, delay));
        DelayRelay { _runtime: runtime }
    }
}

/// Forwards what `from` receives through `to`: to `target`, or (with none) to the client
/// that `from` last heard when it is the front (which records it).
async fn relay(
    from: Arc<UdpSocket>,
    to: Arc<UdpSocket>,
    target: Option<SocketAddr>,
    client: Arc<Mutex<Option<SocketAddr>>>,
    delay: Duration,
) {
    let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>, SocketAddr)>();
    tokio::spawn(async move {
        while let Some((at, datagram, dest)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            let _ = to.send_to(&datagram, dest).await;
        }
    });
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((len, source)) = from.recv_from(&mut buf).await else {
            continue;
        };
        let dest = match target {
            Some(target) => {
                *client.lock().expect("not poisoned") = Some(source);
                target
            }
            None => match *client.lock().expect("not poisoned") {
                Some(client) => client,
                None => continue,
            },
        };
        let _ = queue.send((Instant::now() + delay, buf[..len].to_vec(), dest));
    }
}
