//! BEP 55 hole punching (`ut_holepunch`): a peer that cannot reach another one (a NAT
//! or firewall drops its connection attempts) asks a peer connected to both, the relay,
//! to introduce them. The relay sends each of the two a `connect` naming the other, and
//! both dial each other over uTP at once, so that each side's outgoing packet opens its
//! own NAT or firewall to the other's.
//!
//! A message is binary, not bencoded: type, address family, address, port and an error
//! code. [`HolepunchPeer`] bounds how many a peer may send: each one can make us send two
//! messages (as the relay) or dial an address (as a target), so a peer must not be able
//! to turn us into a flood. Like libtorrent, malformed messages are ignored rather than
//! fatal: the extension is optional and its messages carry no state.

use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The extension's name in the `m` dictionary.
pub const UT_HOLEPUNCH: &str = "ut_holepunch";
/// The id under which we take ut_holepunch messages.
pub const OUR_UT_HOLEPUNCH_ID: u8 = 4;
/// A peer may send at most this many messages per [`RECEIVE_WINDOW`]; more are ignored.
pub const MAX_RECEIVED_PER_WINDOW: u32 = 10;
const RECEIVE_WINDOW: Duration = Duration::from_secs(60);

/// Why a relay cannot introduce us (BEP 55 error codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The target endpoint is invalid.
    NoSuchPeer,
    /// The relay is not connected to the target.
    NotConnected,
    /// The target does not support the extension.
    NoSupport,
    /// The target endpoint is the relay itself (or the initiator).
    NoSelf,
    /// A code BEP 55 does not define.
    Other(u32),
}

impl Refusal {
    fn code(self) -> u32 {
        match self {
            Refusal::NoSuchPeer => 1,
            Refusal::NotConnected => 2,
            Refusal::NoSupport => 3,
            Refusal::NoSelf => 4,
            Refusal::Other(code) => code,
        }
    }

    fn from_code(code: u32) -> Self {
        match code {
            1 => Refusal::NoSuchPeer,
            2 => Refusal::NotConnected,
            3 => Refusal::NoSupport,
            4 => Refusal::NoSelf,
            code => Refusal::Other(code),
        }
    }
}

/// One message: what it asks, and the endpoint it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holepunch {
    /// Initiator → relay: introduce me to the peer at this endpoint.
    Rendezvous(SocketAddr),
    /// Relay → both peers: dial this endpoint over uTP now.
    Connect(SocketAddr),
    /// Relay → initiator: the rendezvous for this endpoint cannot be done.
    Error(SocketAddr, Refusal),
}

impl Holepunch {
    pub fn endpoint(&self) -> SocketAddr {
        match *self {
            Holepunch::Rendezvous(a) | Holepunch::Connect(a) | Holepunch::Error(a, _) => a,
        }
    }

    pub fn encode(&self) -> Bytes {
        let (kind, code) = match *self {
            Holepunch::Rendezvous(_) => (0u8, 0),
            Holepunch::Connect(_) => (1, 0),
            Holepunch::Error(_, refusal) => (2, refusal.code()),
        };
        let addr = self.endpoint();
        let mut out = Vec::with_capacity(24);
        out.push(kind);
        match addr.ip().to_canonical() {
            IpAddr::V4(ip) => {
                out.push(0);
                out.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                out.push(1);
                out.extend_from_slice(&ip.octets());
            }
        }
        out.extend_from_slice(&addr.port().to_be_bytes());
        out.extend_from_slice(&code.to_be_bytes());
        Bytes::from(out)
    }

    /// The message in `payload`, or `None` if it is not one we understand (too short, an
    /// unknown type or address family). A missing error code reads as 0, as libtorrent
    /// reads it.
    pub fn decode(payload: &[u8]) -> Option<Self> {
        let (&kind, rest) = payload.split_first()?;
        let (&family, rest) = rest.split_first()?;
        let (ip, rest): (IpAddr, &[u8]) = match family {
            0 => {
                let (ip, rest) = rest.split_first_chunk::<4>()?;
                ((*ip).into(), rest)
            }
            1 => {
                let (ip, rest) = rest.split_first_chunk::<16>()?;
                ((*ip).into(), rest)
            }
            _ => return None,
        };
        let (port, rest) = rest.split_first_chunk::<2>()?;
        let addr = SocketAddr::new(ip.to_canonical(), u16::from_be_bytes(*port));
        let code = rest
            .first_chunk::<4>()
            .map_or(0, |c| u32::from_be_bytes(*c));
        match kind {
            0 => Some(Holepunch::Rendezvous(addr)),
            1 => Some(Holepunch::Connect(addr)),
            2 => Some(Holepunch::Error(addr, Refusal::from_code(code))),
            _ => None,
        }
    }
}

/// ut_holepunch state for one connection: how many messages the peer sent lately.
#[derive(Debug)]
pub struct HolepunchPeer {
    window_start: Instant,
    received_in_window: u32,
}

impl HolepunchPeer {
    pub fn new(now: Instant) -> Self {
        HolepunchPeer {
            window_start: now,
            received_in_window: 0,
        }
    }

    /// A message from the peer, if it is well formed and within the peer's allowance
    /// (see the module documentation).
    pub fn on_receive(&mut self, now: Instant, payload: &[u8]) -> Option<Holepunch> {
        if now >= self.window_start + RECEIVE_WINDOW {
            self.window_start = now;
            self.received_in_window = 0;
        }
        self.received_in_window = self.received_in_window.saturating_add(1);
        if self.received_in_window > MAX_RECEIVED_PER_WINDOW {
            return None;
        }
        Holepunch::decode(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// The bytes BEP 55 lays out, both families, each type.
    #[test]
    fn known_bytes_round_trip() {
        let rendezvous = Holepunch::Rendezvous(a("10.0.0.1:6881"));
        assert_eq!(
            &rendezvous.encode()[..],
            b"\x00\x00\x0a\x00\x00\x01\x1a\xe1\x00\x00\x00\x00"
        );
        let error = Holepunch::Error(a("[2001:db8::1]:1"), Refusal::NoSupport);
        let bytes = error.encode();
        assert_eq!(bytes.len(), 1 + 1 + 16 + 2 + 4);
        assert_eq!(&bytes[..2], b"\x02\x01");
        assert_eq!(&bytes[bytes.len() - 4..], b"\x00\x00\x00\x03");
        for m in [
            rendezvous,
            error,
            Holepunch::Connect(a("192.168.1.2:51413")),
            Holepunch::Error(a("1.2.3.4:5"), Refusal::Other(77)),
        ] {
            assert_eq!(Holepunch::decode(&m.encode()), Some(m));
        }
        // An IPv4-mapped IPv6 address goes out as IPv4.
        let mapped = Holepunch::Connect(a("[::ffff:10.1.2.3]:9"));
        assert_eq!(mapped.encode()[1], 0);
        assert_eq!(
            Holepunch::decode(&mapped.encode()),
            Some(Holepunch::Connect(a("10.1.2.3:9")))
        );
    }

    /// Short, unknown-type and unknown-family messages are not understood; a missing
    /// error code is 0.
    #[test]
    fn malformed_messages_are_ignored() {
        let good = Holepunch::Connect(a("10.0.0.1:1")).encode();
        for cut in 0..8 {
            assert_eq!(Holepunch::decode(&good[..cut]), None, "{cut} bytes");
        }
        assert_eq!(
            Holepunch::decode(&good[..8]),
            Some(Holepunch::Connect(a("10.0.0.1:1")))
        );
        let mut unknown_type = good.to_vec();
        unknown_type[0] = 3;
        assert_eq!(Holepunch::decode(&unknown_type), None);
        let mut unknown_family = good.to_vec();
        unknown_family[1] = 2;
        assert_eq!(Holepunch::decode(&unknown_family), None);
        assert_eq!(Holepunch::decode(&[]), None);
    }

    proptest::proptest! {
        /// Any bytes: no panic, and what decodes re-encodes to the same message.
        #[test]
        fn any_bytes_decode_safely(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            if let Some(m) = Holepunch::decode(&data) {
                proptest::prop_assert_eq!(Holepunch::decode(&m.encode()), Some(m));
            }
        }
    }

    /// A peer's messages beyond its allowance are dropped until the window passes.
    #[test]
    fn a_flood_is_cut_off() {
        let t0 = Instant::now();
        let mut peer = HolepunchPeer::new(t0);
        let message = Holepunch::Rendezvous(a("10.0.0.1:1"));
        let payload = message.encode();
        for _ in 0..MAX_RECEIVED_PER_WINDOW {
            assert_eq!(peer.on_receive(t0, &payload), Some(message));
        }
        assert_eq!(peer.on_receive(t0, &payload), None);
        assert_eq!(
            peer.on_receive(t0 + RECEIVE_WINDOW, &payload),
            Some(message)
        );
    }
}
