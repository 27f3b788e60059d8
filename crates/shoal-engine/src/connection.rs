//! Connection tasks: they move bytes between a socket and the torrent actor and make no
//! decisions. A reader per socket forwards what it reads (after the download rate
//! limit); a writer writes what the actor queues (after the upload rate limit).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use shoal_swarm::{PeerKey, PieceProgress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::RateLimit;

/// What connection tasks tell the torrent actor.
#[derive(Debug)]
pub enum Input {
    /// A TCP connection is up. For incoming connections the acceptor has already read
    /// the peer's 68-byte handshake (to find the torrent); it is passed along.
    Connected {
        addr: SocketAddr,
        stream: TcpStream,
        incoming_handshake: Option<Vec<u8>>,
    },
    ConnectFailed {
        addr: SocketAddr,
    },
    Data {
        key: PeerKey,
        bytes: Bytes,
    },
    Closed {
        key: PeerKey,
        reason: String,
    },
}

/// Bytes the actor has queued for a socket but the writer has not written yet; the
/// actor stops serving uploads to a peer whose queue is long.
pub type Backlog = Arc<AtomicUsize>;

/// Read size: large enough that a fast transfer costs few messages to the actor.
const READ_CHUNK: usize = 256 * 1024;

pub fn spawn_reader(
    key: PeerKey,
    mut read: OwnedReadHalf,
    limit: Arc<RateLimit>,
    to_actor: mpsc::Sender<Input>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let reason = loop {
            if buf.capacity() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            match read.read_buf(&mut buf).await {
                Ok(0) => break "connection closed by peer".to_owned(),
                Ok(n) => {
                    limit.acquire(n, 0).await;
                    if to_actor
                        .send(Input::Data {
                            key,
                            bytes: buf.split().freeze(),
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => break e.to_string(),
            }
        };
        let _ = to_actor.send(Input::Closed { key, reason }).await;
    })
}

/// A writer gathers what the actor has queued, up to this much, into one vectored write:
/// the actor queues each block message as it is served, and a system call (and a wake-up)
/// per 16 KiB block is most of the cost of seeding.
const MAX_WRITE_BATCH: usize = 256 * 1024;
const MAX_WRITE_BUFFERS: usize = 64;

/// Bytes the actor queues for a socket: one flush of the session, ending with the block
/// message of `piece` if a block was served.
#[derive(Debug)]
pub struct Outgoing {
    pub bytes: Bytes,
    pub piece: Option<u32>,
}

pub fn spawn_writer(
    mut write: OwnedWriteHalf,
    limit: Arc<RateLimit>,
    backlog: Backlog,
    mut from_actor: mpsc::UnboundedReceiver<Outgoing>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut batch = VecDeque::new();
        let mut sent_of: Vec<(u32, usize)> = Vec::new();
        let mut progress = PieceProgress::default();
        let mut held: Option<Outgoing> = None;
        loop {
            let first = match held.take() {
                Some(first) => first,
                None => match from_actor.recv().await {
                    Some(first) => first,
                    None => break,
                },
            };
            // Under a limit, a batch waits for the uplink with its rank (see
            // `PieceProgress`), so it holds block data of one piece at most, and control
            // messages (which rank first) only with other control messages.
            let rank = progress.rank(first.piece);
            let piece = first.piece;
            let mut len = 0;
            let mut next = Some(first);
            while let Some(item) = next.take() {
                len += item.bytes.len();
                if let Some(piece) = item.piece {
                    sent_of.push((piece, item.bytes.len()));
                }
                batch.push_back(item.bytes);
                if len >= MAX_WRITE_BATCH || batch.len() >= MAX_WRITE_BUFFERS {
                    break;
                }
                match from_actor.try_recv() {
                    Ok(more)
                        if limit.is_limited() && more.piece.is_some() && more.piece != piece =>
                    {
                        held = Some(more);
                    }
                    Ok(more) => next = Some(more),
                    Err(_) => {}
                }
            }
            limit.acquire(len, rank).await;
            let result = write_all_vectored(&mut write, &mut batch).await;
            backlog.fetch_sub(len, Ordering::Relaxed);
            if result.is_err() {
                return;
            }
            for (piece, bytes) in sent_of.drain(..) {
                progress.sent(piece, u32::try_from(bytes).unwrap_or(u32::MAX));
            }
        }
        let _ = write.shutdown().await;
    })
}

/// Writes every buffer of `batch`, in order, emptying it.
async fn write_all_vectored(
    write: &mut OwnedWriteHalf,
    batch: &mut VecDeque<Bytes>,
) -> std::io::Result<()> {
    while !batch.is_empty() {
        let slices: Vec<IoSlice> = batch.iter().map(|b| IoSlice::new(b)).collect();
        let mut written = write.write_vectored(&slices).await?;
        drop(slices);
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while let Some(front) = batch.front_mut() {
            if written < front.len() {
                front.advance(written);
                break;
            }
            written -= front.len();
            batch.pop_front();
        }
    }
    Ok(())
}

/// Connects to `addr` within `timeout` and reports the outcome to the actor. With
/// `local`, the connection comes from that IP (so that a peer listening on 127.0.0.5 is
/// seen by others as 127.0.0.5, which loopback tests and multi-homed hosts need).
pub fn spawn_connect(
    addr: SocketAddr,
    local: Option<std::net::IpAddr>,
    timeout: Duration,
    to_actor: mpsc::Sender<Input>,
) {
    tokio::spawn(async move {
        let connect = async {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            if let Some(ip) =
                local.filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == addr.is_ipv4())
            {
                socket.bind(SocketAddr::new(ip, 0))?;
            }
            socket.connect(addr).await
        };
        let input = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Input::Connected {
                    addr,
                    stream,
                    incoming_handshake: None,
                }
            }
            _ => Input::ConnectFailed { addr },
        };
        let _ = to_actor.send(input).await;
    });
}

/// Accepts connections, reads each one's handshake (bounded in time) and hands those
/// for our torrent to the actor; others are closed.
pub fn spawn_acceptor(
    listener: tokio::net::TcpListener,
    info_hash: [u8; 20],
    to_actor: mpsc::Sender<Input>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, addr)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let to_actor = to_actor.clone();
            tokio::spawn(async move {
                let mut handshake = vec![0u8; 68];
                let read = tokio::time::timeout(
                    Duration::from_secs(10),
                    stream.read_exact(&mut handshake),
                )
                .await;
                if !matches!(read, Ok(Ok(_))) || handshake[28..48] != info_hash {
                    return;
                }
                let _ = stream.set_nodelay(true);
                let _ = to_actor
                    .send(Input::Connected {
                        addr,
                        stream,
                        incoming_handshake: Some(handshake),
                    })
                    .await;
            });
        }
    })
}
