//! The byte stream under a peer connection, whatever carries it.
//!
//! The encryption handshake, the metadata exchange and the connection tasks only read and
//! write bytes, so they take a [`PeerStream`] rather than a socket type: TCP and uTP
//! connections then go through the same code, and only dialling and accepting know which
//! transport they use.

use std::fmt;
use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use shoal_proxy::{Proxy, Target};
use shoal_utp::{UtpSocket, UtpStream};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::round_trip::RoundTrip;

/// What a transport must offer to carry a peer connection: a byte stream that a
/// connection task can own, split and move between threads.
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// Which transport a connection runs over, kept because the boxed stream no longer says:
/// logs and statistics report it per peer, and policies (such as falling back from uTP
/// to TCP) depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Tcp,
    Utp,
}

impl Kind {
    /// A short name for logs and statistics.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Utp => "utp",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A peer connection's byte stream. Boxed rather than generic so that `Input`, the
/// torrent actor and the connection tasks stay one type for every transport; one
/// indirect call per read or write is nothing next to the system call behind it.
pub struct PeerStream {
    inner: Box<dyn Transport>,
    kind: Kind,
    round_trip: RoundTrip,
}

impl PeerStream {
    /// Wraps a stream of transport `kind` whose round trip nothing measures (see
    /// [`RoundTrip`]; TCP and uTP streams convert with `from`, which keeps theirs).
    /// Socket options (such as `TCP_NODELAY`) must be set before this: the concrete type
    /// is not reachable afterwards.
    pub fn new(stream: impl Transport, kind: Kind) -> Self {
        Self::measured(stream, kind, RoundTrip::Unknown)
    }

    fn measured(stream: impl Transport, kind: Kind, round_trip: RoundTrip) -> Self {
        PeerStream {
            inner: Box::new(stream),
            kind,
            round_trip,
        }
    }

    /// Which transport carries this connection.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Where the connection's round trip is read from, for whoever keeps track of the
    /// peer once the stream is split into reader and writer tasks.
    pub(crate) fn take_round_trip(&mut self) -> RoundTrip {
        std::mem::take(&mut self.round_trip)
    }
}

impl From<TcpStream> for PeerStream {
    fn from(stream: TcpStream) -> Self {
        let round_trip = RoundTrip::tcp(&stream);
        Self::measured(stream, Kind::Tcp, round_trip)
    }
}

impl From<UtpStream> for PeerStream {
    fn from(stream: UtpStream) -> Self {
        let round_trip = RoundTrip::utp(&stream);
        Self::measured(stream, Kind::Utp, round_trip)
    }
}

impl fmt::Debug for PeerStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerStream")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.inner).poll_read(cx, buf)
    }
}

// The vectored methods are forwarded too: without them a writer's batch of queued
// messages would go out one buffer per system call.
impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// When peers are dialled over uTP (BEP 29) rather than TCP. Whatever the mode but
/// [`UtpMode::Off`], peers may connect to us over uTP at the listen port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UtpMode {
    /// TCP only, both ways.
    Off,
    /// TCP first; uTP when TCP cannot connect, or for a peer that hung up on TCP before
    /// its handshake (libtorrent and Transmission can be set to take uTP only).
    #[default]
    Fallback,
    /// uTP first, TCP when uTP gets no answer: libtorrent's default. uTP's delay-based
    /// congestion control yields to the user's other traffic.
    Prefer,
    /// uTP only, both ways.
    Only,
}

/// How connections to peers are opened: the transports and their order, and the uTP
/// socket (shared with the DHT on the listen port).
#[derive(Clone, Default)]
pub struct Dialer {
    pub utp: Option<Arc<UtpSocket>>,
    pub mode: UtpMode,
    /// A proxy every TCP connection goes through (uTP only through a SOCKS5 proxy's UDP
    /// relay, which `utp`'s socket must then use: see `shoal_udp::UdpSocket::relay_through`).
    pub proxy: Option<Arc<Proxy>>,
}

impl fmt::Debug for Dialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dialer")
            .field("utp", &self.utp.as_ref().map(|u| u.local_addr().ok()))
            .field("mode", &self.mode)
            .field("proxy", &self.proxy)
            .finish()
    }
}

impl Dialer {
    /// TCP only.
    pub fn tcp() -> Self {
        Dialer {
            utp: None,
            mode: UtpMode::Off,
            proxy: None,
        }
    }

    /// The transports to try, in order; `utp_first`: the peer is known to want uTP.
    pub fn order(&self, utp_first: bool) -> &'static [Kind] {
        if self.utp.is_none() {
            return &[Kind::Tcp];
        }
        match self.mode {
            UtpMode::Off => &[Kind::Tcp],
            UtpMode::Fallback if !utp_first => &[Kind::Tcp, Kind::Utp],
            UtpMode::Fallback | UtpMode::Prefer => &[Kind::Utp, Kind::Tcp],
            UtpMode::Only => &[Kind::Utp],
        }
    }

    /// Whether incoming uTP connections are taken.
    pub fn accepts_utp(&self) -> bool {
        self.utp.is_some() && self.mode != UtpMode::Off
    }

    /// Whether incoming TCP connections are taken.
    pub fn accepts_tcp(&self) -> bool {
        self.mode != UtpMode::Only || self.utp.is_none()
    }

    /// Connects to `addr` over the first of `order` that answers, each within
    /// `timeout`. A TCP connection comes from `local` if given (uTP's from the socket's
    /// address).
    pub async fn connect(
        &self,
        addr: SocketAddr,
        local: Option<IpAddr>,
        order: &[Kind],
        timeout: Duration,
    ) -> Option<PeerStream> {
        for kind in order {
            let attempt = async {
                match kind {
                    Kind::Tcp => match &self.proxy {
                        Some(proxy) => proxy
                            .connect(Target::Addr(addr))
                            .await
                            .map(PeerStream::from)
                            .map_err(std::io::Error::other),
                        None => connect_tcp(addr, local).await.map(PeerStream::from),
                    },
                    Kind::Utp => match &self.utp {
                        Some(utp) => utp.connect(addr).await.map(PeerStream::from),
                        None => Err(std::io::ErrorKind::Unsupported.into()),
                    },
                }
            };
            if let Ok(Ok(stream)) = tokio::time::timeout(timeout, attempt).await {
                return Some(stream);
            }
        }
        None
    }
}

/// Opens a TCP connection to `addr` (from `local`, if given and of the same family).
async fn connect_tcp(addr: SocketAddr, local: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(ip) = local.filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == addr.is_ipv4()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Any stream goes through unchanged, vectored writes included, and keeps its kind.
    #[tokio::test]
    async fn delegates_to_the_wrapped_stream() {
        let (ours, theirs) = tokio::io::duplex(1024);
        let mut ours = PeerStream::new(ours, Kind::Utp);
        let mut theirs = PeerStream::new(theirs, Kind::Utp);
        assert_eq!(ours.kind(), Kind::Utp);
        assert_eq!(ours.is_write_vectored(), theirs.is_write_vectored());
        let parts = [IoSlice::new(b"ab"), IoSlice::new(b"cd")];
        let n = ours.write_vectored(&parts).await.unwrap();
        ours.shutdown().await.unwrap();
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"abcd"[..n]);
    }

    #[tokio::test]
    async fn tcp_streams_are_labelled_tcp() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (dialled, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let dialled = PeerStream::from(dialled.unwrap());
        let accepted: PeerStream = accepted.unwrap().0.into();
        assert_eq!(dialled.kind(), Kind::Tcp);
        assert_eq!(accepted.kind(), Kind::Tcp);
        assert!(dialled.is_write_vectored());
        assert_eq!(format!("{dialled:?}"), "PeerStream { kind: Tcp, .. }");
    }
}
