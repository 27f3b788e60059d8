//! A connection's shortest round trip, as its transport measures it, for the request
//! queue: a queue that covers less than a round trip caps what a far peer can send us
//! (see `shoal_swarm::RequestWindow`).
//!
//! TCP's own measure comes from the kernel (`TCP_INFO`, `tcpi_min_rtt`: the least over
//! the last five minutes by default), uTP's from our uTP connection. The shortest rather
//! than the current one: in a bloated router buffer the current round trip is mostly our
//! own queued blocks, and a queue sized by it would only grow it.

#[cfg(target_os = "linux")]
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use shoal_utp::{UtpRoundTrip, UtpStream};
use tokio::net::TcpStream;

/// Where a connection's round trip is read from.
#[derive(Debug, Default)]
pub enum RoundTrip {
    /// A transport with no measure of its own (tests' in-memory streams).
    #[default]
    Unknown,
    /// A duplicate of the TCP socket's descriptor: the socket itself went to the reader
    /// and writer tasks.
    #[cfg(target_os = "linux")]
    Tcp(OwnedFd),
    Utp(UtpRoundTrip),
}

impl RoundTrip {
    #[cfg(target_os = "linux")]
    pub fn tcp(stream: &TcpStream) -> Self {
        stream
            .as_fd()
            .try_clone_to_owned()
            .map_or(RoundTrip::Unknown, RoundTrip::Tcp)
    }

    /// Only Linux's `TCP_INFO` has the shortest round trip.
    #[cfg(not(target_os = "linux"))]
    pub fn tcp(_stream: &TcpStream) -> Self {
        RoundTrip::Unknown
    }

    pub fn utp(stream: &UtpStream) -> Self {
        RoundTrip::Utp(stream.round_trip())
    }

    /// The shortest round trip measured, if the transport has measured one.
    pub fn shortest(&self) -> Option<Duration> {
        match self {
            RoundTrip::Unknown => None,
            #[cfg(target_os = "linux")]
            RoundTrip::Tcp(fd) => tcp_min_rtt(fd),
            RoundTrip::Utp(utp) => utp.shortest(),
        }
    }
}

#[cfg(target_os = "linux")]
fn tcp_min_rtt(fd: &OwnedFd) -> Option<Duration> {
    // SAFETY: `tcp_info` is plain integers, for which zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the descriptor is open (we own it), and `info` is writable for `len` bytes;
    // the kernel writes at most `len` and says how many in `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::addr_of_mut!(info).cast(),
            &mut len,
        )
    };
    // Kernels before 4.6 fill less and leave `tcpi_min_rtt` zero; zero also means no
    // sample yet (the kernel's "no measure" is all ones).
    let min = info.tcpi_min_rtt;
    (rc == 0 && min != 0 && min != u32::MAX).then(|| Duration::from_micros(u64::from(min)))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// The kernel measures a loopback TCP connection once data has been acked: well under
    /// a millisecond, and never zero.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_tcp_connection_reports_its_round_trip() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (dialled, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (mut dialled, (mut accepted, _)) = (dialled.unwrap(), accepted.unwrap());
        let round_trip = RoundTrip::tcp(&dialled);
        dialled.write_all(b"ping").await.unwrap();
        let mut buf = [0; 4];
        accepted.read_exact(&mut buf).await.unwrap();
        accepted.write_all(b"pong").await.unwrap();
        dialled.read_exact(&mut buf).await.unwrap();
        let rtt = round_trip.shortest().expect("measured after an exchange");
        assert!(
            rtt > Duration::ZERO && rtt < Duration::from_millis(100),
            "{rtt:?}"
        );
        drop((dialled, accepted));
    }

    #[test]
    fn an_unknown_transport_has_no_round_trip() {
        assert_eq!(RoundTrip::Unknown.shortest(), None);
    }
}
