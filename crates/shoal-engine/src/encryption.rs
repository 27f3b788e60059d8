//! Message stream encryption (MSE/PE) on real sockets: the driver around
//! [`shoal_wire::mse::MseHandshake`], for connections we dial and connections we accept.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use shoal_wire::mse::{Cipher, CryptoSet, Established, MseHandshake};
use shoal_wire::{HANDSHAKE_LEN, PROTOCOL};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::stream::{Dialer, Kind, PeerStream};

/// Whether connections are encrypted (`--encryption off|prefer|require`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encryption {
    /// Plaintext only: an encrypted handshake from a peer is refused.
    Off,
    /// As libtorrent's and Transmission's defaults: we dial with an encrypted handshake
    /// that offers RC4 and plaintext, and dial again in plaintext if the peer does not
    /// answer it; we accept both kinds. After an encrypted handshake the stream is
    /// plaintext when both sides take it (the handshake is obfuscated either way, and RC4
    /// costs CPU on every byte), RC4 when the peer insists.
    #[default]
    Prefer,
    /// RC4 only, both ways: plaintext handshakes are refused, and peers we dial are
    /// offered nothing else.
    Require,
}

impl Encryption {
    /// What we accept after an encrypted handshake, if we take one at all.
    fn methods(self) -> Option<CryptoSet> {
        match self {
            Encryption::Off => None,
            Encryption::Prefer => Some(CryptoSet::BOTH),
            Encryption::Require => Some(CryptoSet::RC4),
        }
    }
}

/// The whole handshake, whichever side, is bounded by this (libtorrent uses 10 s).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection after the encryption handshake: the ciphers, if RC4 was chosen (for what
/// we send, for what we receive), and bytes already read past the handshake, decrypted.
#[derive(Debug, Default)]
pub struct Secured {
    pub ciphers: Option<(Cipher, Cipher)>,
    pub leftover: Vec<u8>,
    /// The BitTorrent handshake came behind an encrypted one (whatever the stream chose
    /// after it); else it went in the clear.
    pub obfuscated: bool,
}

/// Runs `handshake` over `stream` until it is established.
async fn drive(stream: &mut PeerStream, mut handshake: MseHandshake) -> Option<Established> {
    let mut buf = vec![0u8; 4096];
    loop {
        let out = handshake.take_output();
        if !out.is_empty() {
            stream.write_all(&out).await.ok()?;
        }
        let n = match stream.read(&mut buf).await {
            Ok(0) => {
                tracing::debug!("encryption handshake: the peer hung up");
                return None;
            }
            Ok(n) => n,
            Err(e) => {
                tracing::debug!("encryption handshake: {e}");
                return None;
            }
        };
        let fed = handshake.feed(&buf[..n]);
        if let Err(e) = &fed {
            tracing::debug!("{e}");
        }
        if let Some(done) = fed.ok()? {
            let out = handshake.take_output();
            if !out.is_empty() {
                stream.write_all(&out).await.ok()?;
            }
            return Some(done);
        }
    }
}

/// The initiator's handshake over a connection we dialled for `info_hash`.
async fn secure_outgoing(
    stream: &mut PeerStream,
    info_hash: [u8; 20],
    offer: CryptoSet,
) -> Option<Secured> {
    let handshake = MseHandshake::initiator(info_hash, offer, &mut rand::thread_rng());
    let done = tokio::time::timeout(HANDSHAKE_TIMEOUT, drive(stream, handshake))
        .await
        .ok()??;
    Some(Secured {
        ciphers: done.ciphers,
        leftover: done.payload,
        obfuscated: true,
    })
}

/// Dials a peer for `info_hash` over the transports `order` lists, as `policy` says,
/// each attempt within `timeout` (the encrypted handshake has its own): the connection,
/// ready for the BitTorrent handshake, or `None`.
pub async fn dial(
    addr: SocketAddr,
    local: Option<IpAddr>,
    (dialer, order): (&Dialer, &[Kind]),
    policy: Encryption,
    info_hash: [u8; 20],
    timeout: Duration,
) -> Option<(PeerStream, Secured)> {
    let mut stream = dialer.connect(addr, local, order, timeout).await?;
    let Some(offer) = policy.methods() else {
        return Some((stream, Secured::default()));
    };
    if let Some(secured) = secure_outgoing(&mut stream, info_hash, offer).await {
        return Some((stream, secured));
    }
    // A peer that does not speak MSE hangs up on it: dial again in plaintext, over the
    // transport that answered, unless we insist on encryption. The failed connection goes
    // first: a peer may take only one connection from an address.
    let kind = stream.kind();
    drop(stream);
    if policy == Encryption::Require {
        return None;
    }
    Some((
        dialer.connect(addr, local, &[kind], timeout).await?,
        Secured::default(),
    ))
}

/// A peer dialled us: reads its BitTorrent handshake, plain or behind an encrypted one as
/// `policy` allows, and checks it names one of `swarms` (the info-hashes taken on the
/// listener: a torrent's, a hybrid torrent's v2 one, a session's other torrents'). Returns the 68 handshake bytes and the connection's state,
/// or `None` to close it.
pub async fn accept(
    stream: &mut PeerStream,
    swarms: &[[u8; 20]],
    policy: Encryption,
) -> Option<(Vec<u8>, Secured)> {
    let (&first, others) = swarms.split_first()?;
    let accept = async {
        let mut start = [0u8; 20];
        stream.read_exact(&mut start).await.ok()?;
        let plain = usize::from(start[0]) == PROTOCOL.len() && start[1..] == PROTOCOL[..];
        let mut secured = Secured::default();
        let mut bytes = start.to_vec();
        // Behind an encrypted handshake, the torrent it named; else any of ours.
        let mut named = None;
        if plain {
            if policy == Encryption::Require {
                return None;
            }
        } else {
            let mut handshake =
                MseHandshake::responder(first, policy.methods()?, &mut rand::thread_rng());
            for &other in others {
                handshake = handshake.also_serving(other);
            }
            let done = match handshake.feed(&start).ok()? {
                Some(done) => done,
                None => drive(stream, handshake).await?,
            };
            secured.ciphers = done.ciphers;
            secured.obfuscated = true;
            bytes = done.payload;
            named = Some(done.info_hash);
        }
        // The rest of the BitTorrent handshake (decrypted, behind an encrypted one).
        while bytes.len() < HANDSHAKE_LEN {
            let mut more = vec![0u8; HANDSHAKE_LEN - bytes.len()];
            let n = stream.read(&mut more).await.ok()?;
            if n == 0 {
                return None;
            }
            more.truncate(n);
            if let Some((_, receive)) = secured.ciphers.as_mut() {
                receive.apply(&mut more);
            }
            bytes.extend_from_slice(&more);
        }
        secured.leftover = bytes.split_off(HANDSHAKE_LEN);
        Some((bytes, secured, named))
    };
    let (handshake, secured, named) = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept)
        .await
        .ok()??;
    let hash = &handshake[28..48];
    let ours = match named {
        Some(named) => hash == named,
        None => swarms.iter().any(|swarm| hash == swarm),
    };
    ours.then_some((handshake, secured))
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    /// A peer that does not speak MSE: it reads what would be a BitTorrent handshake,
    /// finds none and hangs up; a plaintext dialler's connection it keeps.
    async fn plain_only_peer() -> (SocketAddr, tokio::task::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = tokio::spawn(async move {
            let mut connections = 0;
            while let Ok(Ok((mut stream, _))) =
                tokio::time::timeout(Duration::from_secs(2), listener.accept()).await
            {
                connections += 1;
                let mut start = [0u8; 20];
                if stream.read_exact(&mut start).await.is_err() {
                    continue;
                }
                if start[1..] != PROTOCOL[..] {
                    continue; // drops the connection
                }
                let _ = stream.write_all(b"ok").await;
            }
            connections
        });
        (addr, peer)
    }

    #[tokio::test]
    async fn prefer_dials_again_in_plaintext_and_require_gives_up() {
        let (addr, peer) = plain_only_peer().await;
        let timeout = Duration::from_secs(5);
        let (mut stream, secured) = dial(
            addr,
            None,
            (&Dialer::tcp(), &[Kind::Tcp]),
            Encryption::Prefer,
            [7; 20],
            timeout,
        )
        .await
        .expect("plaintext after the encrypted handshake failed");
        assert!(secured.ciphers.is_none() && secured.leftover.is_empty());
        assert!(!secured.obfuscated);
        let mut hello = vec![19];
        hello.extend_from_slice(PROTOCOL);
        stream.write_all(&hello).await.unwrap();
        let mut ok = [0u8; 2];
        stream.read_exact(&mut ok).await.unwrap();
        assert_eq!(&ok, b"ok");
        drop(stream);
        assert!(dial(
            addr,
            None,
            (&Dialer::tcp(), &[Kind::Tcp]),
            Encryption::Require,
            [7; 20],
            timeout
        )
        .await
        .is_none());
        let (_, _) = dial(
            addr,
            None,
            (&Dialer::tcp(), &[Kind::Tcp]),
            Encryption::Off,
            [7; 20],
            timeout,
        )
        .await
        .expect("plaintext");
        // Prefer: two connections; require: one; off: one.
        assert_eq!(peer.await.unwrap(), 4);
    }
}
