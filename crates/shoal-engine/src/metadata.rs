//! The metadata phase of a magnet download (BEP 9): before a torrent can run we need its
//! info dictionary, and only peers have it.
//!
//! [`fetch_metadata`] connects to peers as they become known (a fixed list plus a feed:
//! the DHT, trackers), a few at a time. With each it does the BitTorrent handshake and
//! the extension handshake, then asks for every metadata piece. The
//! [`MetadataAssembler`] checks what comes back, and the first peer whose pieces hash
//! to the info-hash wins; a peer that fails (no ut_metadata, a bad size, a wrong hash,
//! silence) is dropped and may be retried later, since it may simply not have been up
//! yet. Nothing here keeps state for the normal run: the torrent actor starts afresh
//! with the verified info dictionary.
//!
//! A v2-only torrent (BEP 52) needs more than its info dictionary: the piece layers of
//! its files longer than a piece live outside it. The same peer is then asked for them
//! with hash requests, and each answer must prove itself against the file's root.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use shoal_core::{layers_needed, merkle, InfoHash, LayerNeeded, PeerId};
use shoal_wire::metadata::{
    piece_count, MetadataAssembler, MetadataMessage, OUR_UT_METADATA_ID, UT_METADATA,
};
use shoal_wire::{
    parse_handshake, ExtensionHandshake, Handshake, HashRange, Message, HANDSHAKE_LEN,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::encryption::{self, Secured};
use crate::stream::{Dialer, PeerStream};
use crate::{ConnectionBudget, Encryption, IpFilter, PeerFeed};
use shoal_wire::mse::Cipher;

/// Longest message accepted in this phase: a metadata piece with its header, or the
/// bitfield of a torrent with up to 2^21 pieces.
const MAX_MESSAGE: u32 = 512 * 1024;
/// Metadata requests kept outstanding at one peer.
const PIPELINE: usize = 16;
/// A failed peer is tried again after this long, at most [`MAX_ATTEMPTS`] times.
const RETRY_AFTER: Duration = Duration::from_secs(3);
const MAX_ATTEMPTS: u32 = 20;
/// How soon a fetch with peers waiting looks for room in the session's connections again.
const ROOM_AGAIN: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct MetadataFetch {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    /// Peers known from the start (the magnet's `x.pe`, `--peer`).
    pub peers: Vec<SocketAddr>,
    /// Connect from this address (loopback tests give each peer its own 127.0.0.N).
    pub local_ip: Option<IpAddr>,
    /// Peers asked at once.
    pub max_connections: usize,
    /// How long one peer may take for the whole exchange.
    pub peer_timeout: Duration,
    /// Whether each exchange starts with an encrypted handshake (see [`Encryption`]).
    pub encryption: Encryption,
    /// Addresses never dialled.
    pub ip_filter: Option<Arc<IpFilter>>,
    /// For a v2-only link (`urn:btmh` alone): the info dictionary's SHA-256, which it is
    /// checked against instead of `info_hash` (that hash cut short); its piece layers
    /// are fetched too.
    pub info_hash_v2: Option<merkle::Hash>,
    /// Which transports peers are dialled over.
    pub dialer: Dialer,
    /// A session's cap on connections (`shoal daemon --max-peers-total`): each peer asked
    /// holds a place in it for as long as it is asked.
    pub connection_budget: Option<Arc<ConnectionBudget>>,
}

impl MetadataFetch {
    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> Self {
        MetadataFetch {
            info_hash,
            peer_id,
            peers: Vec::new(),
            local_ip: None,
            max_connections: 8,
            peer_timeout: Duration::from_secs(30),
            encryption: Encryption::default(),
            ip_filter: None,
            info_hash_v2: None,
            dialer: Dialer::tcp(),
            connection_budget: None,
        }
    }
}

/// The verified info dictionary, and every peer address learnt on the way (for the
/// torrent's run).
#[derive(Debug)]
pub struct Fetched {
    pub info: Vec<u8>,
    /// A v2-only torrent's piece layers (root, concatenated hashes), each proven against
    /// its root; empty otherwise.
    pub piece_layers: BTreeMap<merkle::Hash, Vec<u8>>,
    pub peers: Vec<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetadataFetchError {
    #[error("stopped before the metadata arrived")]
    Stopped,
    #[error("no peer sent the metadata, and no more peers are coming")]
    NoPeers,
}

/// Why one peer did not give us the metadata (for the log).
#[derive(Debug, thiserror::Error)]
enum PeerFailure {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Wire(#[from] shoal_wire::WireError),
    #[error("{0}")]
    Metadata(#[from] shoal_wire::metadata::MetadataError),
    #[error("{0}")]
    Protocol(&'static str),
}

/// Fetches the info dictionary for `fetch.info_hash`. Peers come from `fetch.peers` and
/// `feed` (which the caller gets back untouched for the torrent's run).
pub async fn fetch_metadata(
    fetch: MetadataFetch,
    mut feed: Option<&mut PeerFeed>,
    stop: &mut watch::Receiver<bool>,
) -> Result<Fetched, MetadataFetchError> {
    let mut known: Vec<SocketAddr> = Vec::new();
    let mut seen: HashSet<SocketAddr> = HashSet::new();
    let mut queue: VecDeque<SocketAddr> = VecDeque::new();
    let mut attempts: HashMap<SocketAddr, u32> = HashMap::new();
    let mut retries: Vec<(Instant, SocketAddr)> = Vec::new();
    let mut tasks: JoinSet<(SocketAddr, Result<Exchange, PeerFailure>)> = JoinSet::new();
    let blocked = |a: &SocketAddr| fetch.ip_filter.as_ref().is_some_and(|f| f.blocks(a.ip()));
    let mut add = |addrs: Vec<SocketAddr>, queue: &mut VecDeque<SocketAddr>| {
        for a in addrs {
            if !blocked(&a) && seen.insert(a) {
                known.push(a);
                queue.push_back(a);
            }
        }
    };
    add(fetch.peers.clone(), &mut queue);
    loop {
        let now = Instant::now();
        retries.retain(|&(at, addr)| {
            if at <= now {
                queue.push_back(addr);
                false
            } else {
                true
            }
        });
        // Peers waiting while the session has no room: looked at again in a moment.
        let mut starved = false;
        while tasks.len() < fetch.max_connections.max(1) && !queue.is_empty() {
            let permit = match &fetch.connection_budget {
                None => None,
                Some(budget) => match budget.take() {
                    Some(permit) => Some(permit),
                    None => {
                        starved = true;
                        break;
                    }
                },
            };
            let Some(addr) = queue.pop_front() else { break };
            *attempts.entry(addr).or_default() += 1;
            let fetch = fetch.clone();
            tasks.spawn(async move {
                let _permit = permit;
                let result = tokio::time::timeout(fetch.peer_timeout, fetch_from(addr, &fetch))
                    .await
                    .unwrap_or(Err(PeerFailure::Timeout));
                (addr, result)
            });
        }
        if tasks.is_empty() && queue.is_empty() && retries.is_empty() && feed.is_none() {
            return Err(MetadataFetchError::NoPeers);
        }
        let next_retry = retries.iter().map(|&(at, _)| at).min();
        tokio::select! {
            batch = next_batch(&mut feed) => match batch {
                Some(addrs) => add(addrs, &mut queue),
                None => feed = None,
            },
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok((addr, result)) = joined else { continue };
                match result {
                    Ok((info, piece_layers)) => {
                        tasks.abort_all();
                        return Ok(Fetched { info, piece_layers, peers: known });
                    }
                    Err(e) => {
                        tracing::debug!("metadata from {addr}: {e}");
                        if attempts.get(&addr).copied().unwrap_or(0) < MAX_ATTEMPTS {
                            retries.push((Instant::now() + RETRY_AFTER, addr));
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(next_retry.unwrap_or(now + Duration::from_secs(3600))),
                if next_retry.is_some() => {}
            () = tokio::time::sleep(ROOM_AGAIN), if starved => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    tasks.abort_all();
                    return Err(MetadataFetchError::Stopped);
                }
            }
        }
    }
}

async fn next_batch(feed: &mut Option<&mut PeerFeed>) -> Option<Vec<SocketAddr>> {
    match feed {
        Some(rx) => rx.recv().await.map(|found| found.peers),
        None => std::future::pending().await,
    }
}

/// What one peer gave: the info dictionary and, for a v2-only torrent, piece layers.
type Exchange = (Vec<u8>, BTreeMap<merkle::Hash, Vec<u8>>);

/// The whole exchange with one peer.
async fn fetch_from(addr: SocketAddr, fetch: &MetadataFetch) -> Result<Exchange, PeerFailure> {
    let (stream, secured) = encryption::dial(
        addr,
        fetch.local_ip,
        (&fetch.dialer, fetch.dialer.order(false)),
        fetch.encryption,
        fetch.info_hash.0,
        fetch.peer_timeout,
    )
    .await
    .ok_or(PeerFailure::Protocol("could not connect"))?;
    let mut stream = Link::new(stream, secured);
    // Only the extension bit: without the fast extension we owe the peer no bitfield.
    let mut reserved = [0u8; 8];
    reserved[5] |= 0x10;
    let mut out = BytesMut::new();
    Handshake::new(fetch.info_hash, fetch.peer_id, reserved).encode(&mut out);
    let ours = ExtensionHandshake {
        m: [(UT_METADATA.to_owned(), OUR_UT_METADATA_ID)].into(),
        v: Some(concat!("shoal ", env!("CARGO_PKG_VERSION")).to_owned()),
        ..ExtensionHandshake::default()
    };
    Message::Extended {
        id: shoal_wire::EXTENDED_HANDSHAKE_ID,
        payload: ours.encode(),
    }
    .encode(&mut out);
    stream.write_all(&out).await?;

    let mut buf = BytesMut::with_capacity(64 * 1024);
    buf.extend_from_slice(&std::mem::take(&mut stream.leftover));
    while buf.len() < HANDSHAKE_LEN {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(PeerFailure::Protocol("closed during the handshake"));
        }
    }
    let theirs =
        parse_handshake(&buf[..HANDSHAKE_LEN])?.ok_or(PeerFailure::Protocol("short handshake"))?;
    let _ = buf.split_to(HANDSHAKE_LEN);
    if theirs.info_hash != fetch.info_hash {
        return Err(PeerFailure::Protocol("handshake for another torrent"));
    }
    if !theirs.supports_extensions() {
        return Err(PeerFailure::Protocol("no extension protocol"));
    }

    // The assembler, the peer's id for ut_metadata, and the piece count.
    let mut assembler: Option<(MetadataAssembler, u8, u32)> = None;
    let mut outstanding = 0usize;
    let mut rejects = 0u32;
    loop {
        while let Some(message) = Message::decode(&mut buf, MAX_MESSAGE)? {
            let Message::Extended { id, payload } = message else {
                continue;
            };
            if id == shoal_wire::EXTENDED_HANDSHAKE_ID {
                if assembler.is_some() {
                    continue;
                }
                let hs = ExtensionHandshake::decode(&payload)?;
                let their_id = hs
                    .id_of(UT_METADATA)
                    .ok_or(PeerFailure::Protocol("no ut_metadata"))?;
                let size = hs
                    .metadata_size
                    .ok_or(PeerFailure::Protocol("no metadata_size"))?;
                let mut asm = MetadataAssembler::new(fetch.info_hash, size)?;
                if let Some(v2) = fetch.info_hash_v2 {
                    asm = asm.v2(v2);
                }
                assembler = Some((asm, their_id, piece_count(size)));
            } else if id == OUR_UT_METADATA_ID {
                let Some(msg) = MetadataMessage::decode(&payload)? else {
                    continue;
                };
                let Some((asm, their_id, _)) = assembler.as_mut() else {
                    continue;
                };
                match &msg {
                    MetadataMessage::Request(piece) => {
                        // We have nothing to give yet.
                        let reject = MetadataMessage::Reject(*piece);
                        send_metadata(&mut stream, *their_id, &reject).await?;
                        continue;
                    }
                    MetadataMessage::Reject(_) => {
                        rejects += 1;
                        outstanding = outstanding.saturating_sub(1);
                    }
                    MetadataMessage::Data { .. } => outstanding = outstanding.saturating_sub(1),
                }
                if let Some(info) = asm.on_message(msg)? {
                    let layers = match fetch.info_hash_v2 {
                        Some(_) => fetch_layers(&mut stream, &mut buf, &info).await?,
                        None => BTreeMap::new(),
                    };
                    return Ok((info, layers));
                }
            }
        }
        if let Some((asm, their_id, pieces)) = assembler.as_mut() {
            if rejects > 2 * *pieces + 2 {
                return Err(PeerFailure::Protocol("the peer keeps rejecting requests"));
            }
            while outstanding < PIPELINE {
                let Some(piece) = asm.next_request() else {
                    break;
                };
                send_metadata(&mut stream, *their_id, &MetadataMessage::Request(piece)).await?;
                outstanding += 1;
            }
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(PeerFailure::Protocol("connection closed"));
        }
    }
}

/// Hash requests kept outstanding at one peer.
const HASH_PIPELINE: usize = 8;

/// Asks the peer for the piece layer of every file of `info` that needs one, 512 hashes
/// a request with proofs up to the root's children, and checks each answer against the
/// file's root.
async fn fetch_layers(
    stream: &mut Link,
    buf: &mut BytesMut,
    info: &[u8],
) -> Result<BTreeMap<merkle::Hash, Vec<u8>>, PeerFailure> {
    let needed =
        layers_needed(info).map_err(|_| PeerFailure::Protocol("unreadable v2 file tree"))?;
    let mut to_ask: VecDeque<HashRange> = needed.iter().flat_map(requests_for).collect();
    let mut layers: BTreeMap<merkle::Hash, Vec<u8>> = needed
        .iter()
        .map(|n| (n.root, vec![0; n.pieces * 32]))
        .collect();
    let by_root: HashMap<merkle::Hash, &LayerNeeded> = needed.iter().map(|n| (n.root, n)).collect();
    let mut asked: Vec<HashRange> = Vec::new();
    loop {
        let mut out = BytesMut::new();
        while asked.len() < HASH_PIPELINE {
            let Some(range) = to_ask.pop_front() else {
                break;
            };
            Message::HashRequest(range).encode(&mut out);
            asked.push(range);
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }
        if asked.is_empty() {
            return Ok(layers);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(PeerFailure::Protocol("connection closed"));
        }
        while let Some(message) = Message::decode(buf, MAX_MESSAGE)? {
            match message {
                Message::Hashes { range, hashes } => {
                    let Some(at) = asked.iter().position(|r| *r == range) else {
                        return Err(PeerFailure::Protocol("hashes we did not ask for"));
                    };
                    asked.swap_remove(at);
                    let need = by_root[&range.root];
                    let (index, count) = (range.index as usize, range.length as usize);
                    let width = need.pieces.next_power_of_two();
                    if !merkle::proves(&range.root, width, need.height, index, count, &hashes) {
                        return Err(PeerFailure::Protocol("hashes that do not prove out"));
                    }
                    let real = count.min(need.pieces - index);
                    let layer = layers.get_mut(&range.root).expect("one per need");
                    layer[index * 32..(index + real) * 32]
                        .copy_from_slice(&hashes[..real].concat());
                }
                Message::HashReject(_) => {
                    return Err(PeerFailure::Protocol("the peer rejects hash requests"))
                }
                _ => {}
            }
        }
    }
}

/// The hash requests for one file's piece layer: the padded layer in runs of at most
/// 512 (BEP 52's advice), each with proof layers up to the root's children.
fn requests_for(need: &LayerNeeded) -> Vec<HashRange> {
    let width = need.pieces.next_power_of_two();
    let count = width.min(merkle::MAX_REQUEST_HASHES as usize);
    (0..need.pieces)
        .step_by(count)
        .map(|index| HashRange {
            root: need.root,
            base_layer: need.height,
            index: index as u32,
            length: count as u32,
            proof_layers: width.trailing_zeros() - 1,
        })
        .collect()
}

/// A connection, encrypted or not.
struct Link {
    stream: PeerStream,
    ciphers: Option<(Cipher, Cipher)>,
    /// Bytes read during the encrypted handshake, decrypted.
    leftover: Vec<u8>,
}

impl Link {
    fn new(stream: PeerStream, secured: Secured) -> Self {
        Link {
            stream,
            ciphers: secured.ciphers,
            leftover: secured.leftover,
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.ciphers.as_mut() {
            Some((send, _)) => {
                let mut bytes = bytes.to_vec();
                send.apply(&mut bytes);
                self.stream.write_all(&bytes).await
            }
            None => self.stream.write_all(bytes).await,
        }
    }

    async fn read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        let before = buf.len();
        let n = self.stream.read_buf(buf).await?;
        if let Some((_, receive)) = self.ciphers.as_mut() {
            receive.apply(&mut buf[before..]);
        }
        Ok(n)
    }
}

async fn send_metadata(
    stream: &mut Link,
    their_id: u8,
    message: &MetadataMessage,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    Message::Extended {
        id: their_id,
        payload: message.encode(),
    }
    .encode(&mut out);
    stream.write_all(&out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fetch asks a peer only once the session's connections have room for it, and
    /// the peer holds that room while it is asked.
    #[tokio::test]
    async fn peers_are_asked_only_with_room_in_the_session() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let budget = ConnectionBudget::new(1);
        let held = budget.take().expect("room for one");
        let mut fetch = MetadataFetch::new(InfoHash([1; 20]), PeerId::shoal([2; 12]));
        fetch.peers = vec![listener.local_addr().unwrap()];
        fetch.connection_budget = Some(budget.clone());
        let (stop_tx, mut stop) = watch::channel(false);
        let fetching = tokio::spawn(async move { fetch_metadata(fetch, None, &mut stop).await });
        let no_room = tokio::time::timeout(Duration::from_millis(600), listener.accept()).await;
        assert!(no_room.is_err(), "a peer was asked with no room");
        drop(held);
        let asked = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
        let _socket = asked.expect("asked once there is room").unwrap();
        assert_eq!(budget.open(), 1, "the peer asked holds the room");
        stop_tx.send(true).unwrap();
        let ended = fetching.await.unwrap();
        assert!(
            matches!(ended, Err(MetadataFetchError::Stopped)),
            "{ended:?}"
        );
    }
}
