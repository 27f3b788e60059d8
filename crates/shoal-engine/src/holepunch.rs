//! BEP 55 as the relay: whether to introduce a peer to another one we are connected to.
//!
//! Kept apart from the actor so that every answer (introduce, each refusal, silence) is
//! decided by one function over plain data, and tested as such.

use std::net::SocketAddr;

use shoal_wire::holepunch::Refusal;

use crate::addresses::is_local;

/// Whether an endpoint from a hole punching message could be a peer at all: not port
/// 0, not an unspecified (which reaches this host), multicast or broadcast address. A
/// peer must not make us send uTP packets to such places.
pub(crate) fn dialable(addr: SocketAddr) -> bool {
    let ip = addr.ip().to_canonical();
    let broadcast = matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast());
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

/// What the relay knows of one of its connected peers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Connected {
    /// Where the connection comes from.
    pub addr: SocketAddr,
    /// Where the peer takes connections, if known.
    pub listen: Option<SocketAddr>,
    /// Its extension handshake offered `ut_holepunch`.
    pub holepunch: bool,
}

impl Connected {
    fn is(&self, addr: SocketAddr) -> bool {
        self.addr == addr || self.listen == Some(addr)
    }
}

/// The relay's answer to a rendezvous.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict<K> {
    /// Send both a `connect`: the target is this peer.
    Introduce(K),
    /// Tell the initiator why not.
    Refuse(Refusal),
    /// Say nothing: a local and a remote peer are not introduced (neither should learn
    /// the other's network; libtorrent keeps the same rule).
    Ignore,
}

/// The answer to `initiator`'s rendezvous for `target`, given our own addresses and our
/// connected peers.
pub(crate) fn judge<K>(
    initiator: &Connected,
    target: SocketAddr,
    ours: &[SocketAddr],
    peers: impl IntoIterator<Item = (K, Connected)>,
) -> Verdict<K> {
    if ours.contains(&target) || initiator.is(target) {
        return Verdict::Refuse(Refusal::NoSelf);
    }
    if is_local(target.ip()) != is_local(initiator.addr.ip()) {
        return Verdict::Ignore;
    }
    match peers.into_iter().find(|(_, p)| p.is(target)) {
        None => Verdict::Refuse(Refusal::NotConnected),
        Some((_, peer)) if !peer.holepunch => Verdict::Refuse(Refusal::NoSupport),
        Some((key, _)) => Verdict::Introduce(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn peer(addr: &str, listen: Option<&str>, holepunch: bool) -> Connected {
        Connected {
            addr: a(addr),
            listen: listen.map(a),
            holepunch,
        }
    }

    #[test]
    fn each_answer() {
        let initiator = peer("10.0.0.2:40000", Some("10.0.0.2:6881"), true);
        let peers = [
            (1, initiator),
            (2, peer("10.0.0.3:51000", Some("10.0.0.3:6882"), true)),
            (3, peer("10.0.0.4:6883", None, false)),
        ];
        let ours = [a("10.0.0.1:6881")];
        let judge = |target: &str| judge(&initiator, a(target), &ours, peers);
        // Found by its listen address, or by where its connection comes from.
        assert_eq!(judge("10.0.0.3:6882"), Verdict::Introduce(2));
        assert_eq!(judge("10.0.0.3:51000"), Verdict::Introduce(2));
        assert_eq!(judge("10.0.0.4:6883"), Verdict::Refuse(Refusal::NoSupport));
        assert_eq!(judge("10.0.0.5:1"), Verdict::Refuse(Refusal::NotConnected));
        assert_eq!(judge("10.0.0.1:6881"), Verdict::Refuse(Refusal::NoSelf));
        assert_eq!(judge("10.0.0.2:6881"), Verdict::Refuse(Refusal::NoSelf));
        // A remote target for a local initiator: not a word.
        assert_eq!(judge("203.0.113.7:6881"), Verdict::Ignore);
    }

    #[test]
    fn only_peer_addresses_are_dialable() {
        for bad in [
            "0.0.0.0:6881",
            "[::]:6881",
            "10.0.0.1:0",
            "224.0.0.1:6881",
            "255.255.255.255:1",
            "[ff02::1]:6881",
            "[::ffff:0.0.0.0]:1",
        ] {
            assert!(!dialable(a(bad)), "{bad}");
        }
        for good in ["10.0.0.1:6881", "[2001:db8::1]:51413", "127.0.0.1:7"] {
            assert!(dialable(a(good)), "{good}");
        }
    }
}
