//! Connection tasks: they move bytes between a socket and the torrent actor and make no
//! decisions. A reader per socket forwards what it reads (after the download rate
//! limit); a writer writes what the actor queues (after the upload rate limit).

use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use shoal_core::{dual_stack, Block, InfoHash};
use shoal_swarm::{PeerKey, PieceProgress};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::sync::mpsc;

use crate::budget::ConnectionPermit;
use crate::encryption::{self, Encryption, Secured};
use crate::stream::{Dialer, Kind, PeerStream};
use crate::RateLimit;
use shoal_utp::UtpSocket;
use shoal_wire::mse::Cipher;

/// How a connection came to be.
#[derive(Debug)]
pub enum Opened {
    /// We dialled it, naming this swarm (a hybrid torrent's v1 or v2 info-hash).
    Dialled(InfoHash),
    /// The peer connected; the acceptor has already read its 68-byte handshake (to find
    /// the torrent).
    Accepted(Vec<u8>),
}

/// What connection tasks tell the torrent actor.
#[derive(Debug)]
pub enum Input {
    /// A connection is up, with its encryption state and any bytes read past the
    /// handshakes.
    Connected {
        addr: SocketAddr,
        stream: PeerStream,
        opened: Opened,
        secured: Secured,
        /// A dialled connection's room in the session's limit, taken when it was dialled.
        permit: Option<ConnectionPermit>,
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
    /// Blocks a web seed's fetch returned (one run of adjacent blocks).
    WebBlocks {
        key: PeerKey,
        blocks: Vec<(Block, Bytes)>,
    },
    /// A web seed worker's fetch failed; `blocks` were not fetched. The fetch is over.
    WebFailed {
        key: PeerKey,
        worker: usize,
        blocks: Vec<Block>,
        failure: crate::web_seed::FetchFailure,
    },
    /// A web seed worker's fetch delivered everything.
    WebDone {
        key: PeerKey,
        worker: usize,
    },
}

/// Bytes the actor has queued for a socket but the writer has not written yet; the
/// actor stops serving uploads to a peer whose queue is long.
pub type Backlog = Arc<AtomicUsize>;

/// Bytes queued for all of a torrent's sockets together, and a wake-up for the actor when
/// a writer has written some: under an upload limit the actor keeps only a little queued
/// and chooses, as the uplink drains, whose request goes next (see
/// [`shoal_swarm::Uplink::Shared`]).
#[derive(Debug, Clone, Default)]
pub struct UplinkQueue {
    pub bytes: Backlog,
    pub drained: Arc<tokio::sync::Notify>,
}

/// Read size: large enough that a fast transfer costs few messages to the actor.
const READ_CHUNK: usize = 256 * 1024;

/// Reads `read` into the actor, decrypting with `decrypt` if the connection is encrypted.
pub fn spawn_reader(
    key: PeerKey,
    mut read: ReadHalf<PeerStream>,
    mut decrypt: Option<Cipher>,
    limit: Arc<RateLimit>,
    to_actor: mpsc::Sender<Input>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let reason = loop {
            if buf.capacity() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            // Each read: the limit may change while the connection lasts.
            let chunk = limit.chunk(READ_CHUNK);
            match read.read_buf(&mut (&mut buf).limit(chunk)).await {
                Ok(0) => break "connection closed by peer".to_owned(),
                Ok(n) => {
                    if let Some(decrypt) = decrypt.as_mut() {
                        let start = buf.len() - n;
                        decrypt.apply(&mut buf[start..]);
                    }
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

/// A writer's queue from the actor, and the bytes the actor counted for it (in the
/// connection's backlog and the torrent's uplink) that are not written yet. However the
/// writer ends (the connection closed, a write failed, the task aborted), what it never
/// wrote is taken off those counts: left there, a closed connection's queue would keep
/// a limited torrent's shared uplink full for good, and it would send nothing again.
struct Queue {
    from_actor: mpsc::UnboundedReceiver<Outgoing>,
    unwritten: usize,
    backlog: Backlog,
    uplink: UplinkQueue,
}

impl Queue {
    async fn recv(&mut self) -> Option<Outgoing> {
        let item = self.from_actor.recv().await?;
        self.unwritten += item.bytes.len();
        Some(item)
    }

    fn try_recv(&mut self) -> Option<Outgoing> {
        let item = self.from_actor.try_recv().ok()?;
        self.unwritten += item.bytes.len();
        Some(item)
    }

    /// `len` bytes are written (or will never be).
    fn written(&mut self, len: usize) {
        self.unwritten -= len;
        self.backlog.fetch_sub(len, Ordering::Relaxed);
        self.uplink.bytes.fetch_sub(len, Ordering::Relaxed);
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.from_actor.close();
        while self.try_recv().is_some() {}
        let unwritten = self.unwritten;
        self.written(unwritten);
        self.uplink.drained.notify_one();
    }
}

/// Writes what the actor queues to `write`, encrypting with `encrypt` if the connection
/// is encrypted (in queue order, so the keystream stays in step with the peer's).
pub fn spawn_writer(
    mut write: impl AsyncWrite + Unpin + Send + 'static,
    mut encrypt: Option<Cipher>,
    limit: Arc<RateLimit>,
    backlog: Backlog,
    uplink: UplinkQueue,
    from_actor: mpsc::UnboundedReceiver<Outgoing>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let drained = uplink.drained.clone();
        let mut queue = Queue {
            from_actor,
            unwritten: 0,
            backlog,
            uplink,
        };
        let mut batch = VecDeque::new();
        let mut sent_of: Vec<(u32, usize)> = Vec::new();
        let mut progress = PieceProgress::default();
        let mut held: Option<Outgoing> = None;
        loop {
            let first = match held.take() {
                Some(first) => first,
                None => match queue.recv().await {
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
                let bytes = match encrypt.as_mut() {
                    Some(encrypt) => {
                        let mut bytes = BytesMut::from(&item.bytes[..]);
                        encrypt.apply(&mut bytes);
                        bytes.freeze()
                    }
                    None => item.bytes,
                };
                batch.push_back(bytes);
                if len >= MAX_WRITE_BATCH || batch.len() >= MAX_WRITE_BUFFERS {
                    break;
                }
                match queue.try_recv() {
                    Some(more)
                        if limit.is_limited() && more.piece.is_some() && more.piece != piece =>
                    {
                        held = Some(more);
                    }
                    Some(more) => next = Some(more),
                    None => {}
                }
            }
            limit.acquire(len, rank).await;
            let result = write_all_vectored(&mut write, &mut batch).await;
            queue.written(len);
            if limit.is_limited() {
                drained.notify_one();
            }
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
    write: &mut (impl AsyncWrite + Unpin),
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

/// Connects to `addr` within `timeout`, over the transports `order` lists, and reports
/// the outcome to the actor. With `local`, a TCP connection comes from that IP (so that
/// a peer listening on 127.0.0.5 is seen by others as 127.0.0.5, which loopback tests and
/// multi-homed hosts need). The encrypted handshake, if `policy` wants one, comes first
/// (see [`Encryption`]).
pub fn spawn_connect(
    addr: SocketAddr,
    local: Option<std::net::IpAddr>,
    timeout: Duration,
    (dialer, order): (Dialer, &'static [Kind]),
    (policy, swarm): (Encryption, InfoHash),
    (to_actor, permit): (mpsc::Sender<Input>, Option<ConnectionPermit>),
) {
    tokio::spawn(async move {
        tracing::debug!("dialling {addr} over {order:?}");
        let dial = (&dialer, order);
        let input = match encryption::dial(addr, local, dial, policy, swarm.0, timeout).await {
            Some((stream, secured)) => Input::Connected {
                addr,
                stream,
                opened: Opened::Dialled(swarm),
                secured,
                permit,
            },
            None => Input::ConnectFailed { addr },
        };
        let _ = to_actor.send(input).await;
    });
}

/// Incoming connections whose handshakes are read at once; more are closed. Each may take
/// up to 10 s and, encrypted, a 768-bit modular exponentiation, so a flood of connections
/// must not tie up unbounded tasks and CPU.
pub const MAX_HANDSHAKES: usize = 64;

/// The handshakes being read, shared by a torrent's acceptors (TCP and uTP) so that
/// [`MAX_HANDSHAKES`] bounds them together.
pub fn handshake_slots() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES))
}

/// A TCP listener on `addr`; on `[::]`, dual-stack (IPv4 peers too) whatever the
/// system's default, as libtorrent listens.
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = dual_stack::bind(addr, socket2::Type::STREAM)?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// Where a listener's connections go: the torrents taking them, each under the
/// info-hashes it answers to (a hybrid torrent's v1 and v2 ones, see
/// `Metainfo::swarm_hashes`). A torrent's own listener routes to that torrent alone; one
/// shared by a session ([`crate::SharedListener`]) to each of the session's torrents,
/// which come and go while it listens.
#[derive(Debug, Clone, Default)]
pub struct Router(Arc<RwLock<HashMap<[u8; 20], mpsc::Sender<Input>>>>);

impl Router {
    /// Connections naming one of `swarms` go to `to_actor` until the registration is
    /// dropped. A swarm already taken goes to the newcomer: the torrent that had it is
    /// one stopping (a session starts a torrent again only once its task is gone).
    pub fn register(&self, swarms: &[[u8; 20]], to_actor: &mpsc::Sender<Input>) -> Registration {
        let mut routes = self.0.write().unwrap_or_else(|e| e.into_inner());
        for swarm in swarms {
            routes.insert(*swarm, to_actor.clone());
        }
        Registration {
            router: self.clone(),
            swarms: swarms.to_vec(),
            to_actor: to_actor.clone(),
        }
    }

    /// Every info-hash taken, for an encrypted handshake to be matched against.
    fn swarms(&self) -> Vec<[u8; 20]> {
        let routes = self.0.read().unwrap_or_else(|e| e.into_inner());
        routes.keys().copied().collect()
    }

    fn route(&self, swarm: &[u8]) -> Option<mpsc::Sender<Input>> {
        let swarm: [u8; 20] = swarm.try_into().ok()?;
        let routes = self.0.read().unwrap_or_else(|e| e.into_inner());
        routes.get(&swarm).cloned()
    }
}

/// A torrent's place in a [`Router`]; dropping it takes the torrent out.
#[derive(Debug)]
pub struct Registration {
    router: Router,
    swarms: Vec<[u8; 20]>,
    to_actor: mpsc::Sender<Input>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut routes = self.router.0.write().unwrap_or_else(|e| e.into_inner());
        for swarm in &self.swarms {
            if routes
                .get(swarm)
                .is_some_and(|to| to.same_channel(&self.to_actor))
            {
                routes.remove(swarm);
            }
        }
    }
}

/// Accepts TCP connections, reads each one's handshake (bounded in time, and in number
/// by `handshakes`; plain or behind an encrypted one, as `policy` allows) and hands
/// each to the torrent it names; others are closed.
pub fn spawn_acceptor(
    listener: tokio::net::TcpListener,
    handshakes: Arc<tokio::sync::Semaphore>,
    router: Router,
    policy: Encryption,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, addr)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let addr = dual_stack::canonical(addr);
            let _ = stream.set_nodelay(true);
            let stream = PeerStream::from(stream);
            take_handshake(stream, addr, &handshakes, policy, &router);
        }
    })
}

/// [`spawn_acceptor`] for connections over uTP (BEP 29).
pub fn spawn_utp_acceptor(
    utp: Arc<UtpSocket>,
    handshakes: Arc<tokio::sync::Semaphore>,
    router: Router,
    policy: Encryption,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(stream) = utp.accept().await {
            let addr = stream.peer_addr();
            let stream = PeerStream::from(stream);
            take_handshake(stream, addr, &handshakes, policy, &router);
        }
    })
}

/// Reads an incoming connection's handshake in a task of its own, if one of `handshakes`
/// is free (else the connection is closed), and hands it to the torrent it names.
fn take_handshake(
    mut stream: PeerStream,
    addr: SocketAddr,
    handshakes: &Arc<tokio::sync::Semaphore>,
    policy: Encryption,
    router: &Router,
) {
    let router = router.clone();
    let Ok(permit) = handshakes.clone().try_acquire_owned() else {
        return; // too many at once: this one is closed
    };
    tokio::spawn(async move {
        let _permit = permit;
        let swarms = router.swarms();
        let Some((handshake, secured)) = encryption::accept(&mut stream, &swarms, policy).await
        else {
            return;
        };
        // The torrent may have stopped while the handshake was read.
        let Some(to_actor) = router.route(&handshake[28..48]) else {
            return;
        };
        let _ = to_actor
            .send(Input::Connected {
                addr,
                stream,
                opened: Opened::Accepted(handshake),
                secured,
                permit: None,
            })
            .await;
    });
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    use super::*;

    const BLOCK: usize = 16 * 1024;

    /// A shared listener's routes: each torrent gets the connections naming its swarms
    /// while registered; a torrent registering a swarm already taken takes it over, and
    /// the first one's leaving does not take the newcomer's route away.
    #[test]
    fn a_router_sends_each_swarm_to_its_torrent_while_registered() {
        let router = Router::default();
        let (film, _film_inputs) = mpsc::channel(1);
        let (album, _album_inputs) = mpsc::channel(1);
        let film_in = router.register(&[[1; 20], [2; 20]], &film);
        let album_in = router.register(&[[3; 20], [1; 20]], &album);
        let routed = |swarm: [u8; 20], to: &mpsc::Sender<Input>| {
            router.route(&swarm).is_some_and(|r| r.same_channel(to))
        };
        assert!(routed([1; 20], &album) && routed([2; 20], &film) && routed([3; 20], &album));
        let mut swarms = router.swarms();
        swarms.sort();
        assert_eq!(swarms, [[1; 20], [2; 20], [3; 20]]);
        drop(film_in);
        assert!(routed([1; 20], &album), "the newcomer keeps what it took");
        assert!(router.route(&[2; 20]).is_none());
        drop(album_in);
        assert!(router.swarms().is_empty());
        assert!(router.route(&[9; 3]).is_none(), "not an info-hash");
    }

    /// Connections that send nothing hold at most `MAX_HANDSHAKES` handshake tasks; one
    /// more is closed at once, and once they go a real handshake gets through.
    #[tokio::test]
    async fn silent_connections_cannot_hold_more_than_the_handshake_limit() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (to_actor, mut inputs) = mpsc::channel(8);
        let info_hash = [9u8; 20];
        let router = Router::default();
        let _registered = router.register(&[info_hash], &to_actor);
        spawn_acceptor(listener, handshake_slots(), router, Encryption::Prefer);
        let mut silent = Vec::new();
        for _ in 0..MAX_HANDSHAKES {
            silent.push(TcpStream::connect(addr).await.unwrap());
        }
        // Let the acceptor take them all before the next one.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut byte)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
        drop(silent);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut real = TcpStream::connect(addr).await.unwrap();
        let mut hello = vec![19u8];
        hello.extend_from_slice(shoal_wire::PROTOCOL);
        hello.extend_from_slice(&[0; 8]);
        hello.extend_from_slice(&info_hash);
        hello.extend_from_slice(&[1; 20]);
        real.write_all(&hello).await.unwrap();
        let input = tokio::time::timeout(Duration::from_secs(5), inputs.recv())
            .await
            .expect("handed over")
            .expect("channel open");
        assert!(
            matches!(input, Input::Connected { opened: Opened::Accepted(h), .. } if h == hello)
        );
    }

    fn block(piece: u32, fill: u8) -> Outgoing {
        Outgoing {
            bytes: Bytes::from(vec![fill; BLOCK]),
            piece: Some(piece),
        }
    }

    /// Under an upload limit, of two connections waiting for it, the one further into its
    /// piece writes first, whichever came first.
    #[tokio::test(start_paused = true)]
    async fn under_a_limit_the_piece_furthest_along_is_written_first() {
        let limit = Arc::new(RateLimit::new(Some(4 * BLOCK as u64)));
        let (a_write, mut a_read) = tokio::io::duplex(1 << 20);
        let (b_write, mut b_read) = tokio::io::duplex(1 << 20);
        let (a_tx, a_rx) = mpsc::unbounded_channel();
        let (b_tx, b_rx) = mpsc::unbounded_channel();
        spawn_writer(
            a_write,
            None,
            limit.clone(),
            Backlog::default(),
            UplinkQueue::default(),
            a_rx,
        );
        spawn_writer(
            b_write,
            None,
            limit.clone(),
            Backlog::default(),
            UplinkQueue::default(),
            b_rx,
        );
        // A sends half of piece 1 with the bucket's burst.
        for _ in 0..2 {
            a_tx.send(block(1, 1)).expect("writer alive");
        }
        let mut buf = vec![0; 2 * BLOCK];
        a_read.read_exact(&mut buf).await.expect("written");
        // The bucket is a second in debt. B asks for the uplink first, for a new piece;
        // then A, for the rest of piece 1.
        limit.acquire(4 * BLOCK, 0).await;
        b_tx.send(block(2, 2)).expect("writer alive");
        tokio::task::yield_now().await;
        a_tx.send(block(1, 1)).expect("writer alive");
        let start = tokio::time::Instant::now();
        let mut one = vec![0; BLOCK];
        let a_done = async {
            a_read.read_exact(&mut one).await.expect("written");
            start.elapsed()
        };
        let mut other = vec![0; BLOCK];
        let b_done = async {
            b_read.read_exact(&mut other).await.expect("written");
            start.elapsed()
        };
        let (a_at, b_at) = tokio::join!(a_done, b_done);
        assert!(a_at < b_at, "A at {a_at:?}, B at {b_at:?}");
        // A waited off the debt (1 s), B then A's block (0.25 s more).
        assert!(
            b_at >= a_at + Duration::from_millis(200),
            "A at {a_at:?}, B at {b_at:?}"
        );
    }

    /// Without a limit a writer batches whatever is queued, pieces mixed, in order.
    #[tokio::test]
    async fn without_a_limit_everything_is_written_in_order() {
        let limit = Arc::new(RateLimit::new(None));
        let (write, mut read) = tokio::io::duplex(1 << 20);
        let (tx, rx) = mpsc::unbounded_channel();
        let backlog = Backlog::default();
        backlog.fetch_add(3 * BLOCK + 3, Ordering::Relaxed);
        for item in [
            block(1, 1),
            Outgoing {
                bytes: Bytes::from_static(b"req"),
                piece: None,
            },
            block(2, 2),
            block(1, 3),
        ] {
            tx.send(item).expect("writer alive");
        }
        drop(tx);
        spawn_writer(
            write,
            None,
            limit,
            backlog.clone(),
            UplinkQueue::default(),
            rx,
        )
        .await
        .expect("writer finished");
        let mut all = Vec::new();
        read.read_to_end(&mut all).await.expect("read");
        assert_eq!(all.len(), 3 * BLOCK + 3);
        assert_eq!(&all[BLOCK..BLOCK + 3], b"req");
        assert_eq!(all[BLOCK + 3], 2);
        assert_eq!(all[2 * BLOCK + 3], 3);
        assert_eq!(backlog.load(Ordering::Relaxed), 0);
    }

    /// A writer that ends with bytes still queued (its socket closed, or its task
    /// aborted while it waited for the limit) takes them off the counts: else a closed
    /// connection would keep a limited torrent's uplink full, and it would send no more.
    #[tokio::test(start_paused = true)]
    async fn a_writer_that_ends_early_gives_its_queued_bytes_back() {
        let queued = |tx: &mpsc::UnboundedSender<Outgoing>, counts: (&Backlog, &UplinkQueue)| {
            for piece in 0..4 {
                counts.0.fetch_add(BLOCK, Ordering::Relaxed);
                counts.1.bytes.fetch_add(BLOCK, Ordering::Relaxed);
                tx.send(block(piece, 1)).expect("writer alive");
            }
        };
        // The socket goes away: the first write fails, three blocks still queued.
        let (write, read) = tokio::io::duplex(1024);
        drop(read);
        let (backlog, uplink) = (Backlog::default(), UplinkQueue::default());
        let (tx, rx) = mpsc::unbounded_channel();
        queued(&tx, (&backlog, &uplink));
        let limit = Arc::new(RateLimit::new(Some(BLOCK as u64)));
        let writer = spawn_writer(write, None, limit, backlog.clone(), uplink.clone(), rx);
        writer.await.expect("writer finished");
        assert_eq!(backlog.load(Ordering::Relaxed), 0);
        assert_eq!(uplink.bytes.load(Ordering::Relaxed), 0);
        // Aborted while it waits for a limit deep in debt.
        let limit = Arc::new(RateLimit::new(Some(1024)));
        limit.acquire(1 << 20, 0).await;
        let (write, _read) = tokio::io::duplex(1 << 20);
        let (tx, rx) = mpsc::unbounded_channel();
        queued(&tx, (&backlog, &uplink));
        let writer = spawn_writer(write, None, limit, backlog.clone(), uplink.clone(), rx);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            uplink.bytes.load(Ordering::Relaxed),
            4 * BLOCK,
            "still waiting"
        );
        writer.abort();
        let _ = writer.await;
        assert_eq!(backlog.load(Ordering::Relaxed), 0);
        assert_eq!(uplink.bytes.load(Ordering::Relaxed), 0);
    }
}
