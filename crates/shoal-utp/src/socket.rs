//! The tokio driver: one UDP socket carrying any number of [`Connection`]s, each seen by
//! the application as a [`UtpStream`] (`AsyncRead + AsyncWrite`, like a `TcpStream`).
//!
//! Datagrams that are not uTP (the DHT's KRPC messages, which start with `d`) go to an
//! optional channel, so that uTP and the DHT can share one port as libtorrent's do:
//! peers reach both at the port they learnt from a tracker or the DHT.
//!
//! Bound at `[::]`, the socket is dual-stack: IPv4 peers too, their addresses given and
//! taken in plain IPv4 form (see `shoal_core::dual_stack`).

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rand::Rng;
use shoal_core::dual_stack;
use shoal_udp::UdpSocket;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, Notify};

use crate::connection::{Config, Connection, Read, UtpError};
use crate::packet::{looks_like_utp, Kind, Packet};

/// Connections one socket holds at most; SYNs beyond are refused with a reset.
const MAX_CONNECTIONS: usize = 2000;
/// Accepted connections waiting for the application.
const ACCEPT_BACKLOG: usize = 64;
/// Non-uTP datagrams waiting for their consumer (the DHT); more are dropped, as a full
/// socket buffer would drop them.
const OTHER_BACKLOG: usize = 1024;
/// Bytes waiting for room in the socket's send buffer, at most (about 4 000 datagrams).
const MAX_QUEUED_BYTES: usize = 6 << 20;
/// Bytes one system call sends at most, as consecutive datagrams (UDP GSO): under the
/// 64 KiB a UDP datagram's length field allows.
const MAX_BATCH_BYTES: usize = 64_000;
/// Kernel buffer sizes asked for: a window's worth of datagrams arriving at once on a
/// fast path must not overflow the default (about 200 KiB on Linux).
const SOCKET_BUFFER: usize = 2 << 20;
/// How often timers are checked. Retransmission timeouts are at least 500 ms.
const TICK: Duration = Duration::from_millis(20);
/// A stream the application dropped is given this long to deliver what it wrote.
const LINGER: Duration = Duration::from_secs(30);

/// A connection and who waits on it.
struct Entry {
    conn: Connection,
    peer: SocketAddr,
    /// Our address the peer reached us at, to answer from (see `shoal_udp`); `None` for
    /// connections we opened (the route chose, and keeps choosing, the same one).
    local: Option<IpAddr>,
    readers: Option<Waker>,
    writers: Option<Waker>,
    /// The application dropped its stream.
    dropped_at: Option<Instant>,
    /// A batch of its datagrams failed (a path MTU below the packet size, or no
    /// segmentation offload after all): they go one a call from then on.
    unbatched: bool,
}

impl Entry {
    fn wake(&mut self) {
        if let Some(w) = self.readers.take() {
            w.wake();
        }
        if let Some(w) = self.writers.take() {
            w.wake();
        }
    }

    /// Sends whatever the connection has to send: a run of full-size packets (and one
    /// shorter one after them) in one system call where the system segments them (GSO),
    /// which is most of the cost of a fast transfer.
    fn flush(&mut self, outbox: &Outbox, now: Instant) {
        let max_segments = if self.unbatched {
            1
        } else {
            outbox.udp.max_segments()
        };
        let mut batch: Option<Batch> = None;
        while let Some(datagram) = self.conn.poll_transmit(now) {
            if tracing::enabled!(tracing::Level::TRACE) {
                if let Ok(p) = Packet::parse(&datagram) {
                    tracing::trace!(kind = ?p.kind, seq = p.seq_nr, ack = p.ack_nr, len = p.payload.len(), "uTP out");
                }
            }
            if let Some(b) = &mut batch {
                if b.takes(&datagram, max_segments) {
                    b.bytes.extend_from_slice(&datagram);
                    continue;
                }
                self.unbatched |= outbox.send(batch.take().expect("just matched"));
            }
            batch = Some(Batch {
                segment: datagram.len(),
                bytes: datagram,
                to: self.peer,
                from: self.local,
            });
        }
        if let Some(b) = batch {
            self.unbatched |= outbox.send(b);
        }
    }
}

/// Datagrams to one peer sent in one system call: `bytes` cut into `segment`-byte
/// datagrams, the last possibly shorter.
struct Batch {
    bytes: Vec<u8>,
    segment: usize,
    to: SocketAddr,
    /// Which of our addresses they go from.
    from: Option<IpAddr>,
}

impl Batch {
    /// Whether `datagram` can go after the batch's: no longer than its segments, after
    /// full ones only, within the system's count and the size limit.
    fn takes(&self, datagram: &[u8], max_segments: usize) -> bool {
        datagram.len() <= self.segment
            && self.bytes.len().is_multiple_of(self.segment)
            && self.bytes.len() / self.segment < max_segments
            && self.bytes.len() + datagram.len() <= MAX_BATCH_BYTES
    }
}

type Shared = Arc<Mutex<Entry>>;

/// Reads a connection's shortest round trip (see [`UtpStream::round_trip`]); it does not
/// keep the connection alive.
#[derive(Debug, Clone)]
pub struct UtpRoundTrip(Weak<Mutex<Entry>>);

impl UtpRoundTrip {
    /// `None` before the first measure, or once the connection is gone.
    pub fn shortest(&self) -> Option<Duration> {
        let entry = self.0.upgrade()?;
        let entry = entry.lock().expect("not poisoned");
        entry.conn.min_rtt()
    }
}

/// Datagrams go out at once while the socket's buffer takes them; when it is full they
/// wait here, in order, until the socket's task sees it writable again. (tokio learns
/// that a socket is writable again only when something waits for it: without this, one
/// full buffer would silence the socket for good.)
struct Outbox {
    udp: Arc<UdpSocket>,
    queue: Mutex<Queue>,
    wake: Notify,
}

#[derive(Default)]
struct Queue {
    batches: VecDeque<Batch>,
    bytes: usize,
}

/// What became of a batch given to the socket.
#[derive(Debug, PartialEq, Eq)]
enum Transmitted {
    Sent,
    /// The socket's buffer is full: it waits.
    Full,
    /// The system could not send it as one: its datagrams went one by one.
    Unbatched,
}

impl Outbox {
    /// Sends `batch`, or queues it while the socket's buffer is full. Returns whether it
    /// had to be sent one datagram at a time.
    fn send(&self, batch: Batch) -> bool {
        let mut queue = self.queue.lock().expect("not poisoned");
        if queue.batches.is_empty() {
            match self.transmit(&batch) {
                Transmitted::Sent => return false,
                Transmitted::Unbatched => return true,
                Transmitted::Full => {}
            }
        }
        // Past the cap a batch is dropped, as a congested link drops datagrams; the
        // connection sends them again.
        if queue.bytes + batch.bytes.len() <= MAX_QUEUED_BYTES {
            queue.bytes += batch.bytes.len();
            queue.batches.push_back(batch);
        }
        tracing::trace!(queued = queue.bytes, "uTP outbox waits for the socket");
        drop(queue);
        self.wake.notify_one();
        false
    }

    /// Sends `batch` if the socket's buffer takes it. A batch the system cannot send as
    /// one goes a datagram at a time; a failure no retry would cure (the peer's address
    /// unreachable) counts as sent: the datagrams are lost, as on a lossy link, and sent
    /// again by their connection.
    fn transmit(&self, batch: &Batch) -> Transmitted {
        let (udp, to, from) = (&self.udp, batch.to, batch.from);
        match udp.try_send_segments(&batch.bytes, batch.segment, to, from) {
            Ok(()) => Transmitted::Sent,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Transmitted::Full,
            Err(e) if batch.bytes.len() > batch.segment => {
                tracing::debug!(%to, "uTP: a batch of datagrams failed ({e}); sending them one by one");
                for datagram in batch.bytes.chunks(batch.segment) {
                    // A full buffer here loses the rest, as a congested link would.
                    let _ = udp.try_send(datagram, to, from);
                }
                Transmitted::Unbatched
            }
            Err(_) => Transmitted::Sent,
        }
    }

    fn is_empty(&self) -> bool {
        self.queue.lock().expect("not poisoned").batches.is_empty()
    }

    /// Sends what waits until the socket's buffer is full again.
    fn drain(&self) {
        let mut queue = self.queue.lock().expect("not poisoned");
        tracing::trace!(queued = queue.bytes, "uTP outbox drains");
        while let Some(batch) = queue.batches.front() {
            if self.transmit(batch) == Transmitted::Full {
                return;
            }
            queue.bytes -= batch.bytes.len();
            queue.batches.pop_front();
        }
    }
}

struct Inner {
    udp: Arc<UdpSocket>,
    outbox: Outbox,
    config: Config,
    conns: Mutex<HashMap<(SocketAddr, u16), Shared>>,
}

/// A UDP socket speaking uTP. See the module documentation.
pub struct UtpSocket {
    inner: Arc<Inner>,
    accepted: tokio::sync::Mutex<mpsc::Receiver<UtpStream>>,
    task: tokio::task::JoinHandle<()>,
}

/// A datagram that was not uTP, with its sender and the local address it came to.
pub type OtherDatagram = (Vec<u8>, SocketAddr, Option<IpAddr>);
/// Datagrams that were not uTP.
pub type OtherDatagrams = mpsc::Receiver<OtherDatagram>;

impl UtpSocket {
    /// Binds `addr`. With `share`, datagrams that are not uTP are passed on through the
    /// returned receiver (and [`UtpSocket::udp`] sends for their consumer); without it
    /// they are dropped.
    pub async fn bind(
        addr: SocketAddr,
        config: Config,
        share: bool,
    ) -> io::Result<(UtpSocket, Option<OtherDatagrams>)> {
        Ok(Self::on(udp_socket(addr)?, config, share))
    }

    /// [`UtpSocket::bind`] on a socket made by [`udp_socket`] (and perhaps sent through a
    /// proxy's relay since, [`UdpSocket::relay_through`]).
    pub fn on(udp: UdpSocket, config: Config, share: bool) -> (UtpSocket, Option<OtherDatagrams>) {
        let udp = Arc::new(udp);
        let inner = Arc::new(Inner {
            outbox: Outbox {
                udp: udp.clone(),
                queue: Mutex::new(Queue::default()),
                wake: Notify::new(),
            },
            udp,
            config,
            conns: Mutex::new(HashMap::new()),
        });
        let (accept_tx, accept_rx) = mpsc::channel(ACCEPT_BACKLOG);
        let (other_tx, other_rx) = if share {
            let (tx, rx) = mpsc::channel(OTHER_BACKLOG);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let task = tokio::spawn(run(inner.clone(), accept_tx, other_tx));
        (
            UtpSocket {
                inner,
                accepted: tokio::sync::Mutex::new(accept_rx),
                task,
            },
            other_rx,
        )
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.inner.udp.local_addr())
    }

    /// The UDP socket, for a consumer of the other datagrams to answer through.
    pub fn udp(&self) -> Arc<UdpSocket> {
        self.inner.udp.clone()
    }

    /// The next connection a peer opened.
    pub async fn accept(&self) -> io::Result<UtpStream> {
        self.accepted
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "uTP socket closed"))
    }

    /// Opens a connection to `peer`. Fails after the SYN's retransmissions (about 7 s),
    /// or at once if the peer resets it.
    pub async fn connect(&self, peer: SocketAddr) -> io::Result<UtpStream> {
        // Keyed as its answers will come in.
        let peer = dual_stack::canonical(peer);
        let now = Instant::now();
        let entry = {
            let mut conns = self.inner.conns.lock().expect("not poisoned");
            if conns.len() >= MAX_CONNECTIONS {
                return Err(io::Error::other("too many uTP connections"));
            }
            let mut rng = rand::thread_rng();
            let recv_id = loop {
                let id: u16 = rng.gen();
                if !conns.contains_key(&(peer, id))
                    && !conns.contains_key(&(peer, id.wrapping_add(1)))
                {
                    break id;
                }
            };
            let conn = Connection::connect(self.inner.config.clone(), recv_id, rng.gen(), now);
            let entry = Arc::new(Mutex::new(Entry {
                conn,
                peer,
                local: None,
                readers: None,
                writers: None,
                dropped_at: None,
                unbatched: false,
            }));
            conns.insert((peer, recv_id), entry.clone());
            entry
        };
        entry
            .lock()
            .expect("not poisoned")
            .flush(&self.inner.outbox, now);
        let stream = UtpStream {
            inner: self.inner.clone(),
            entry,
        };
        poll_fn(|cx| {
            let mut e = stream.entry.lock().expect("not poisoned");
            if e.conn.is_connected() {
                Poll::Ready(Ok(()))
            } else if let Some(error) = e.conn.error() {
                Poll::Ready(Err(io_error(error)))
            } else if e.conn.is_closed() {
                Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()))
            } else {
                e.writers = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await?;
        Ok(stream)
    }
}

impl Drop for UtpSocket {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A non-blocking UDP socket on `addr` (dual-stack on `[::]`) with large kernel buffers
/// (as far as the system allows).
/// A UDP socket at `addr` with the buffers uTP wants, for [`UtpSocket::on`].
pub fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = dual_stack::bind(addr, socket2::Type::DGRAM)?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    UdpSocket::from_socket(socket)
}

fn io_error(error: UtpError) -> io::Error {
    let kind = match error {
        UtpError::TimedOut => io::ErrorKind::TimedOut,
        UtpError::Reset => io::ErrorKind::ConnectionReset,
    };
    io::Error::new(kind, error)
}

/// The socket's task: reads datagrams, runs timers, and forgets finished connections.
async fn run(
    inner: Arc<Inner>,
    accept: mpsc::Sender<UtpStream>,
    other: Option<mpsc::Sender<OtherDatagram>>,
) {
    let mut buf = inner.udp.buffer();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let waiting = !inner.outbox.is_empty();
        tokio::select! {
            // Something was queued: look again at whether to wait for writability.
            () = inner.outbox.wake.notified() => {}
            Ok(()) = inner.udp.writable(), if waiting => inner.outbox.drain(),
            received = inner.udp.recv(&mut buf) => {
                let Ok(received) = received else { continue };
                // A batch (GRO) is answered once it is all read: one ack for its packets.
                let mut touched = Vec::new();
                for datagram in received.datagrams(&buf) {
                    dispatch(&inner, &accept, other.as_ref(), datagram, received, &mut touched);
                }
                let now = Instant::now();
                for entry in touched {
                    let mut e = entry.lock().expect("not poisoned");
                    e.flush(&inner.outbox, now);
                    e.wake();
                }
            }
            _ = tick.tick() => timers(&inner),
        }
    }
}

/// One datagram: uTP to its connection (added to `touched`, for the caller to send what
/// it has to and wake its stream), anything else to `other`.
fn dispatch(
    inner: &Arc<Inner>,
    accept: &mpsc::Sender<UtpStream>,
    other: Option<&mpsc::Sender<OtherDatagram>>,
    datagram: &[u8],
    received: shoal_udp::Received,
    touched: &mut Vec<Shared>,
) {
    if !looks_like_utp(datagram) {
        if let Some(other) = other {
            let _ = other.try_send((datagram.to_vec(), received.from, received.to));
        }
        return;
    }
    if let Ok(packet) = Packet::parse(datagram) {
        tracing::trace!(
            kind = ?packet.kind, id = packet.connection_id, seq = packet.seq_nr,
            ack = packet.ack_nr, wnd = packet.wnd_size, sack = ?packet.sack,
            len = packet.payload.len(), "uTP in"
        );
        receive(inner, accept, packet, (received.from, received.to), touched);
    }
}

fn receive(
    inner: &Arc<Inner>,
    accept: &mpsc::Sender<UtpStream>,
    packet: Packet,
    (from, to): (SocketAddr, Option<IpAddr>),
    touched: &mut Vec<Shared>,
) {
    let now = Instant::now();
    // A SYN names the id we send with; we receive on the next one.
    let id = if packet.kind == Kind::Syn {
        packet.connection_id.wrapping_add(1)
    } else {
        packet.connection_id
    };
    let existing = inner
        .conns
        .lock()
        .expect("not poisoned")
        .get(&(from, id))
        .cloned();
    if let Some(entry) = existing {
        entry
            .lock()
            .expect("not poisoned")
            .conn
            .handle_packet(&packet, now);
        // Sent to and woken by the caller, once per batch.
        if !touched.iter().any(|t| Arc::ptr_eq(t, &entry)) {
            touched.push(entry);
        }
        return;
    }
    match packet.kind {
        Kind::Syn => {
            let mut conns = inner.conns.lock().expect("not poisoned");
            if conns.len() >= MAX_CONNECTIONS || accept.capacity() == 0 {
                drop(conns);
                reset(inner, &packet, (from, to));
                return;
            }
            let conn =
                Connection::accept(inner.config.clone(), &packet, rand::thread_rng().gen(), now);
            let entry = Arc::new(Mutex::new(Entry {
                conn,
                peer: from,
                local: to,
                readers: None,
                writers: None,
                dropped_at: None,
                unbatched: false,
            }));
            conns.insert((from, id), entry.clone());
            drop(conns);
            entry
                .lock()
                .expect("not poisoned")
                .flush(&inner.outbox, now);
            let stream = UtpStream {
                inner: inner.clone(),
                entry,
            };
            if accept.try_send(stream).is_err() {
                inner
                    .conns
                    .lock()
                    .expect("not poisoned")
                    .remove(&(from, id));
            }
        }
        // A stray data packet or FIN: tell the sender we have no such connection.
        Kind::Data | Kind::Fin => reset(inner, &packet, (from, to)),
        Kind::State | Kind::Reset => {}
    }
}

/// Answers a packet of no connection of ours with a reset, from where it came to.
fn reset(inner: &Inner, packet: &Packet, (peer, local): (SocketAddr, Option<IpAddr>)) {
    let reset = Packet::new(
        Kind::Reset,
        if packet.kind == Kind::Syn {
            packet.connection_id
        } else {
            packet.connection_id.wrapping_sub(1)
        },
        0,
        packet.seq_nr,
    );
    let reset = reset.encode();
    inner.outbox.send(Batch {
        segment: reset.len(),
        bytes: reset,
        to: peer,
        from: local,
    });
}

fn timers(inner: &Inner) {
    let now = Instant::now();
    let entries: Vec<((SocketAddr, u16), Shared)> = inner
        .conns
        .lock()
        .expect("not poisoned")
        .iter()
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    let mut finished = Vec::new();
    for (key, entry) in entries {
        let mut e = entry.lock().expect("not poisoned");
        if e.conn.poll_timeout().is_some_and(|at| now >= at) {
            e.conn.handle_timeout(now);
            e.flush(&inner.outbox, now);
            e.wake();
        }
        let gone = match e.dropped_at {
            Some(at) => {
                e.conn.is_closed()
                    || e.conn.is_drained()
                    || now.saturating_duration_since(at) > LINGER
            }
            None => false,
        };
        if gone {
            finished.push(key);
        }
    }
    let mut conns = inner.conns.lock().expect("not poisoned");
    for key in finished {
        conns.remove(&key);
    }
}

/// One uTP connection, read and written like a TCP stream. Dropping it closes our side
/// (a FIN after what was written); the socket keeps the connection a while to deliver.
pub struct UtpStream {
    inner: Arc<Inner>,
    entry: Shared,
}

impl std::fmt::Debug for UtpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtpStream")
            .field("peer", &self.peer_addr())
            .finish()
    }
}

impl UtpStream {
    pub fn peer_addr(&self) -> SocketAddr {
        self.entry.lock().expect("not poisoned").peer
    }

    /// A handle that reads the connection's shortest round trip while it lasts, for a
    /// holder that no longer has the stream (it went to reader and writer tasks).
    pub fn round_trip(&self) -> UtpRoundTrip {
        UtpRoundTrip(Arc::downgrade(&self.entry))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Entry, &Outbox) -> T) -> T {
        let mut e = self.entry.lock().expect("not poisoned");
        f(&mut e, &self.inner.outbox)
    }
}

impl AsyncRead for UtpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.with(|e, outbox| match e.conn.read(buf.initialize_unfilled()) {
            Read::Data(n) => {
                buf.advance(n);
                // Reading may have opened our window: the peer hears of it now.
                e.flush(outbox, Instant::now());
                Poll::Ready(Ok(()))
            }
            Read::Eof => match e.conn.error() {
                Some(error) => Poll::Ready(Err(io_error(error))),
                None => Poll::Ready(Ok(())),
            },
            Read::Pending => {
                e.readers = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

impl AsyncWrite for UtpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.with(|e, outbox| {
            if let Some(error) = e.conn.error() {
                return Poll::Ready(Err(io_error(error)));
            }
            if e.conn.is_closed() {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            let n = e.conn.write(data);
            if n == 0 && !data.is_empty() {
                e.writers = Some(cx.waker().clone());
                return Poll::Pending;
            }
            e.flush(outbox, Instant::now());
            Poll::Ready(Ok(n))
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written bytes are already the connection's to deliver.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|e, outbox| {
            e.conn.close();
            e.flush(outbox, Instant::now());
        });
        Poll::Ready(Ok(()))
    }
}

impl Drop for UtpStream {
    fn drop(&mut self) {
        self.with(|e, outbox| {
            e.conn.close();
            e.flush(outbox, Instant::now());
            e.dropped_at = Some(Instant::now());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn localhost() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    /// A batch takes full-size packets while the system's count and the size limit
    /// allow, then one shorter packet, and nothing after it.
    #[test]
    fn batches_take_full_packets_then_one_shorter() {
        let batch = |bytes: usize| Batch {
            bytes: vec![0; bytes],
            segment: 1400,
            to: localhost(),
            from: None,
        };
        assert!(batch(1400).takes(&[0; 1400], 64));
        assert!(batch(1400).takes(&[0; 20], 64));
        assert!(
            !batch(1400).takes(&[0; 1401], 64),
            "longer than the segments"
        );
        assert!(!batch(1400).takes(&[0; 1400], 1), "no segmentation offload");
        assert!(!batch(2800).takes(&[0; 1400], 2), "the system's count");
        assert!(!batch(1420).takes(&[0; 20], 64), "after a shorter one");
        assert!(batch(44 * 1400).takes(&[0; 1400], 64));
        assert!(!batch(45 * 1400).takes(&[0; 1400], 64), "over 64 000 bytes");
    }

    fn wildcard() -> SocketAddr {
        "0.0.0.0:0".parse().unwrap()
    }

    /// 127.0.0.7 on `socket`'s port: an address of the host that is not the one the
    /// route to a loopback peer would answer from (127.0.0.1).
    fn other_address(socket: &UtpSocket) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 7], socket.local_addr().unwrap().port()))
    }

    /// The server listens on every address and is reached at 127.0.0.7: its answers must
    /// come from there, or the client, which keys the connection by the address it
    /// dialled, would take them for strays.
    #[tokio::test]
    async fn streams_carry_bytes_both_ways_and_close_with_eof() {
        let (server, _) = UtpSocket::bind(wildcard(), Config::default(), false)
            .await
            .unwrap();
        let (client, _) = UtpSocket::bind("127.0.0.9:0".parse().unwrap(), Config::default(), false)
            .await
            .unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 977) as u8).collect();
        let to_send = data.clone();
        let addr = other_address(&server);
        let echo = tokio::spawn(async move {
            let mut stream = server.accept().await.unwrap();
            let mut got = Vec::new();
            stream.read_to_end(&mut got).await.unwrap();
            stream.write_all(&got[..1000]).await.unwrap();
            drop(stream);
            tokio::time::sleep(Duration::from_millis(200)).await;
            (got, server)
        });
        let mut stream = tokio::time::timeout(Duration::from_secs(10), client.connect(addr))
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), async {
            stream.write_all(&to_send).await.unwrap();
            stream.shutdown().await.unwrap();
            let mut back = Vec::new();
            stream.read_to_end(&mut back).await.unwrap();
            assert_eq!(back[..], data[..1000]);
        })
        .await
        .unwrap();
        let (got, _server) = echo.await.unwrap();
        assert!(got == data, "{} bytes of {}", got.len(), data.len());
    }

    #[tokio::test]
    async fn connecting_to_a_closed_port_fails_and_other_datagrams_are_passed_on() {
        let (socket, other) = UtpSocket::bind(wildcard(), Config::default(), true)
            .await
            .unwrap();
        let mut other = other.unwrap();
        let at = other_address(&socket);
        let probe = tokio::net::UdpSocket::bind(localhost()).await.unwrap();
        probe
            .send_to(
                b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe",
                at,
            )
            .await
            .unwrap();
        let (datagram, from, to) = tokio::time::timeout(Duration::from_secs(5), other.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from, probe.local_addr().unwrap());
        assert_eq!(to, Some(at.ip()));
        assert!(datagram.starts_with(b"d1:a"));
        // A stray data packet is answered with a reset, from where it was sent to.
        let stray = Packet::new(Kind::Data, 4242, 1, 1).encode();
        probe.send_to(&stray, at).await.unwrap();
        let mut buf = [0u8; 100];
        let (n, answered_from) =
            tokio::time::timeout(Duration::from_secs(5), probe.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(answered_from, at);
        let answer = Packet::parse(&buf[..n]).unwrap();
        assert_eq!(answer.kind, Kind::Reset);
        assert_eq!(answer.connection_id, 4241);
        // Nobody listens at the probe's port for uTP: the SYN goes unanswered.
        let dead = tokio::net::UdpSocket::bind(localhost()).await.unwrap();
        let started = Instant::now();
        let error = socket
            .connect(dead.local_addr().unwrap())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}
