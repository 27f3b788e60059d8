//! BEP 11 peer exchange (`ut_pex`): connected peers tell each other whom they are
//! connected to, as `added`/`dropped` lists of compact addresses, about once a minute.
//!
//! [`PexPeer`] is the per-connection state, both ways. Sending: it remembers which
//! addresses this peer has heard from us, so each message carries only the changes (at
//! most [`MAX_PER_MESSAGE`] each way), never more often than [`SEND_INTERVAL`], and
//! never empty. Receiving: a peer may send a few messages per minute; more, or a
//! malformed or oversized message, is an error and the connection should be dropped
//! (TESTING.md item 25). Only the first [`MAX_PER_MESSAGE`] added peers of a message
//! are taken, so a peer cannot flood our address book through PEX either.
//!
//! Each added peer carries [`PexFlags`]: what the sender knows of it (a seed, over uTP,
//! able to take part in hole punching, reachable), which tells the receiver how, and
//! whether, to dial it.

use bytes::Bytes;
use shoal_bencode::{Limits, Value};
use shoal_core::compact;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The extension's name in the `m` dictionary.
pub const UT_PEX: &str = "ut_pex";
/// The id under which we ask peers to send us ut_pex messages.
pub const OUR_UT_PEX_ID: u8 = 1;
/// BEP 11: at most 50 added and 50 dropped peers per message.
pub const MAX_PER_MESSAGE: usize = 50;
/// We send at most one message per minute to each peer.
pub const SEND_INTERVAL: Duration = Duration::from_secs(60);
/// A peer may send at most this many messages per [`RECEIVE_WINDOW`].
const MAX_RECEIVED_PER_WINDOW: u32 = 4;
const RECEIVE_WINDOW: Duration = Duration::from_secs(60);
/// Larger messages are refused outright.
pub const MAX_MESSAGE_LEN: usize = 500 * 1024;

const LIMITS: Limits = Limits {
    max_depth: 4,
    max_tokens: 64,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PexError {
    #[error("ut_pex: message of {0} bytes is too large")]
    TooLarge(usize),
    #[error("ut_pex: {0}")]
    Bencode(#[from] shoal_bencode::DecodeError),
    #[error("ut_pex: malformed message: {0}")]
    Malformed(&'static str),
    #[error("ut_pex: more than {MAX_RECEIVED_PER_WINDOW} messages a minute")]
    Flood,
}

/// What the sender of a PEX message knows about an added peer (BEP 11's `added.f`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PexFlags(pub u8);

impl PexFlags {
    /// It prefers encryption (MSE/PE).
    pub const ENCRYPTION: PexFlags = PexFlags(0x01);
    /// A seed, or a partial seed (BEP 21): it wants nothing.
    pub const SEED: PexFlags = PexFlags(0x02);
    /// It speaks uTP (BEP 29).
    pub const UTP: PexFlags = PexFlags(0x04);
    /// Its extension handshake offered `ut_holepunch` (BEP 55).
    pub const HOLEPUNCH: PexFlags = PexFlags(0x08);
    /// The sender dialled it: it takes incoming connections.
    pub const REACHABLE: PexFlags = PexFlags(0x10);

    pub fn contains(self, other: PexFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for PexFlags {
    type Output = PexFlags;

    fn bitor(self, other: PexFlags) -> PexFlags {
        PexFlags(self.0 | other.0)
    }
}

impl std::ops::BitOrAssign for PexFlags {
    fn bitor_assign(&mut self, other: PexFlags) {
        self.0 |= other.0;
    }
}

/// One decoded message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PexMessage {
    pub added: Vec<(SocketAddr, PexFlags)>,
    pub dropped: Vec<SocketAddr>,
}

impl PexMessage {
    pub fn encode(&self) -> Bytes {
        let mut d = Value::dict();
        for (v4, key, flags_key) in [(true, "added", "added.f"), (false, "added6", "added6.f")] {
            let (addrs, flags): (Vec<SocketAddr>, Vec<u8>) = self
                .added
                .iter()
                .filter(|(a, _)| a.is_ipv4() == v4)
                .map(|&(a, f)| (a, f.0))
                .unzip();
            d.insert(key, compact::encode(&addrs, v4));
            d.insert(flags_key, flags);
        }
        d.insert("dropped", compact::encode(&self.dropped, true));
        d.insert("dropped6", compact::encode(&self.dropped, false));
        Bytes::from(d.to_bytes())
    }

    pub fn decode(payload: &[u8]) -> Result<Self, PexError> {
        if payload.len() > MAX_MESSAGE_LEN {
            return Err(PexError::TooLarge(payload.len()));
        }
        let doc = shoal_bencode::decode(payload, LIMITS)?;
        let root = doc.root();
        let dict = root
            .as_dict()
            .ok_or(PexError::Malformed("not a dictionary"))?;
        let list = |key: &[u8], width: usize| -> Result<Vec<Option<SocketAddr>>, PexError> {
            let Some(bytes) = dict.get(key).and_then(|n| n.as_bytes()) else {
                return Ok(Vec::new());
            };
            if bytes.len() % width != 0 {
                return Err(PexError::Malformed("compact list of the wrong length"));
            }
            // One entry per slot, unusable ones too, so that flags stay aligned.
            Ok(bytes
                .chunks_exact(width)
                .map(|c| compact::peer(c).filter(|a| !a.ip().is_unspecified()))
                .collect())
        };
        // Flags are optional; a flags string that does not match its list is ignored.
        let flagged = |key: &[u8], flags_key: &[u8], width: usize| {
            let addrs = list(key, width)?;
            let flags = dict
                .get(flags_key)
                .and_then(|n| n.as_bytes())
                .filter(|f| f.len() == addrs.len());
            Ok::<_, PexError>(
                addrs
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, a)| Some((a?, PexFlags(flags.map_or(0, |f| f[i])))))
                    .collect::<Vec<_>>(),
            )
        };
        let mut added = flagged(b"added", b"added.f", compact::V4_LEN)?;
        added.extend(flagged(b"added6", b"added6.f", compact::V6_LEN)?);
        let mut dropped: Vec<SocketAddr> = list(b"dropped", compact::V4_LEN)?
            .into_iter()
            .flatten()
            .collect();
        dropped.extend(list(b"dropped6", compact::V6_LEN)?.into_iter().flatten());
        Ok(PexMessage { added, dropped })
    }
}

/// PEX state for one connection; see the module documentation.
#[derive(Debug)]
pub struct PexPeer {
    told: BTreeSet<SocketAddr>,
    next_send: Instant,
    window_start: Instant,
    received_in_window: u32,
}

impl PexPeer {
    pub fn new(now: Instant) -> Self {
        PexPeer {
            told: BTreeSet::new(),
            next_send: now,
            window_start: now,
            received_in_window: 0,
        }
    }

    /// The message to send now, if one is due and there is news: the peers in
    /// `connected` (other than the recipient) this peer has not heard of, with their
    /// flags, and those it heard of that are gone.
    pub fn poll_send(
        &mut self,
        now: Instant,
        connected: &BTreeMap<SocketAddr, PexFlags>,
        recipient: SocketAddr,
    ) -> Option<Bytes> {
        if now < self.next_send {
            return None;
        }
        let added: Vec<(SocketAddr, PexFlags)> = connected
            .iter()
            .filter(|(a, _)| !self.told.contains(a) && **a != recipient)
            .take(MAX_PER_MESSAGE)
            .map(|(&a, &f)| (a, f))
            .collect();
        let dropped: Vec<SocketAddr> = self
            .told
            .iter()
            .filter(|a| !connected.contains_key(a))
            .take(MAX_PER_MESSAGE)
            .copied()
            .collect();
        if added.is_empty() && dropped.is_empty() {
            return None;
        }
        self.next_send = now + SEND_INTERVAL;
        self.told.extend(added.iter().map(|(a, _)| *a));
        for d in &dropped {
            self.told.remove(d);
        }
        Some(PexMessage { added, dropped }.encode())
    }

    /// A message from the peer: the peers it added (at most [`MAX_PER_MESSAGE`]) with
    /// their flags, or an error when the peer sends too often or sends garbage.
    pub fn on_receive(
        &mut self,
        now: Instant,
        payload: &[u8],
    ) -> Result<Vec<(SocketAddr, PexFlags)>, PexError> {
        if now >= self.window_start + RECEIVE_WINDOW {
            self.window_start = now;
            self.received_in_window = 0;
        }
        self.received_in_window += 1;
        if self.received_in_window > MAX_RECEIVED_PER_WINDOW {
            return Err(PexError::Flood);
        }
        let mut message = PexMessage::decode(payload)?;
        message.added.truncate(MAX_PER_MESSAGE);
        Ok(message.added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn round_trip_and_known_bytes() {
        let m = PexMessage {
            added: vec![
                (a("10.0.0.1:6881"), PexFlags::SEED | PexFlags::UTP),
                (a("10.0.0.3:7"), PexFlags::default()),
                (a("[2001:db8::1]:51413"), PexFlags::HOLEPUNCH),
            ],
            dropped: vec![a("10.0.0.2:1")],
        };
        let encoded = m.encode();
        assert!(encoded.windows(13).any(|w| w == b"7:added.f2:\x06\x00"));
        assert_eq!(PexMessage::decode(&encoded), Ok(m));
        let raw = b"d5:added6:\x7f\x00\x00\x01\x1a\xe17:added.f1:\x187:dropped0:e";
        assert_eq!(
            PexMessage::decode(raw).unwrap().added,
            vec![(a("127.0.0.1:6881"), PexFlags(0x18))]
        );
    }

    /// Flags stay with their peer when an entry before it is unusable (port 0), and a
    /// flags string of the wrong length is ignored.
    #[test]
    fn flags_stay_aligned() {
        let raw =
            b"d5:added12:\x0a\x00\x00\x01\x00\x00\x0a\x00\x00\x02\x00\x097:added.f2:\x02\x08e";
        assert_eq!(
            PexMessage::decode(raw).unwrap().added,
            vec![(a("10.0.0.2:9"), PexFlags::HOLEPUNCH)]
        );
        let ragged = b"d5:added6:\x0a\x00\x00\x02\x00\x097:added.f2:\x02\x08e";
        assert_eq!(
            PexMessage::decode(ragged).unwrap().added,
            vec![(a("10.0.0.2:9"), PexFlags::default())]
        );
        let flags = PexFlags::SEED | PexFlags::REACHABLE;
        assert!(flags.contains(PexFlags::SEED) && !flags.contains(PexFlags::UTP));
    }

    /// Item 25: oversized, malformed, or too frequent messages are errors.
    #[test]
    fn bad_or_flooding_messages_are_errors() {
        let t0 = Instant::now();
        let mut peer = PexPeer::new(t0);
        let huge = vec![b'x'; MAX_MESSAGE_LEN + 1];
        assert!(matches!(
            peer.on_receive(t0, &huge),
            Err(PexError::TooLarge(_))
        ));
        let mut peer = PexPeer::new(t0);
        assert!(peer.on_receive(t0, b"d5:added5:12345e").is_err());
        assert!(peer.on_receive(t0, b"le").is_err());
        let ok = PexMessage {
            added: (1..=200u16)
                .map(|p| (SocketAddr::from(([10, 0, 0, 1], p)), PexFlags::default()))
                .collect(),
            dropped: vec![],
        }
        .encode();
        let mut peer = PexPeer::new(t0);
        for _ in 0..MAX_RECEIVED_PER_WINDOW {
            assert_eq!(peer.on_receive(t0, &ok).unwrap().len(), MAX_PER_MESSAGE);
        }
        assert_eq!(peer.on_receive(t0, &ok), Err(PexError::Flood));
        let later = t0 + RECEIVE_WINDOW;
        assert!(peer.on_receive(later, &ok).is_ok());
    }

    #[test]
    fn sends_changes_at_most_once_a_minute() {
        let t0 = Instant::now();
        let me = a("10.0.0.9:1");
        let mut peer = PexPeer::new(t0);
        let utp = PexFlags::UTP;
        let mut connected: BTreeMap<SocketAddr, PexFlags> = [
            (a("10.0.0.1:1"), utp),
            (a("10.0.0.2:1"), PexFlags::default()),
            (me, utp),
        ]
        .into();
        let first = PexMessage::decode(&peer.poll_send(t0, &connected, me).unwrap()).unwrap();
        assert_eq!(
            first.added,
            vec![
                (a("10.0.0.1:1"), utp),
                (a("10.0.0.2:1"), PexFlags::default())
            ]
        );
        connected.remove(&a("10.0.0.1:1"));
        connected.insert(a("10.0.0.3:1"), PexFlags::SEED);
        assert_eq!(
            peer.poll_send(t0 + Duration::from_secs(30), &connected, me),
            None
        );
        let next = t0 + SEND_INTERVAL;
        let second = PexMessage::decode(&peer.poll_send(next, &connected, me).unwrap()).unwrap();
        assert_eq!(second.added, vec![(a("10.0.0.3:1"), PexFlags::SEED)]);
        assert_eq!(second.dropped, vec![a("10.0.0.1:1")]);
        // Nothing new: nothing sent.
        assert_eq!(peer.poll_send(next + SEND_INTERVAL, &connected, me), None);
        // Big swarms go out 50 at a time.
        let many: BTreeMap<SocketAddr, PexFlags> = (1..=120u16)
            .map(|p| (SocketAddr::from(([10, 1, 0, 1], p)), PexFlags::default()))
            .collect();
        let mut peer = PexPeer::new(t0);
        let m = PexMessage::decode(&peer.poll_send(t0, &many, me).unwrap()).unwrap();
        assert_eq!(m.added.len(), MAX_PER_MESSAGE);
    }
}
