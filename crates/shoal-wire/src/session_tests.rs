//! Session tests: two sessions wired back to back in memory, and a single session fed
//! hand-made hostile bytes (TESTING.md items 17–23 and 26).

use super::*;
use crate::{parse_handshake, Message};
use std::collections::BTreeMap;

const PIECE_LEN: u32 = 32 * 1024;
/// Three full pieces and a short last one of 20,000 bytes.
const TOTAL: u64 = 3 * PIECE_LEN as u64 + 20_000;
const PIECES: u32 = 4;

fn info_hash() -> InfoHash {
    InfoHash([0xab; 20])
}

fn config(id: u8, have_all: bool) -> SessionConfig {
    let bits = if have_all {
        Bitfield::full(PIECES as usize)
    } else {
        Bitfield::new(PIECES as usize)
    };
    let mut c = SessionConfig::new(
        info_hash(),
        PeerId::shoal([id; 12]),
        PIECES,
        PIECE_LEN,
        TOTAL,
        bits,
    );
    c.extension_handshake.m = BTreeMap::from([("ut_pex".to_owned(), 1)]);
    c.extension_handshake.v = Some(format!("shoal test {id}"));
    c
}

fn block(piece: u32, offset: u32, length: u32) -> Block {
    Block {
        piece,
        offset,
        length,
    }
}

/// Deterministic block contents.
fn data_for(b: Block) -> Bytes {
    (0..b.length)
        .map(|i| (b.piece as u8) ^ ((b.offset + i) as u8))
        .collect::<Vec<u8>>()
        .into()
}

fn events(s: &mut PeerSession) -> Vec<SessionEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn take_bytes(s: &mut PeerSession) -> BytesMut {
    s.poll_transmit().map_or_else(BytesMut::new, BytesMut::from)
}

/// Decodes what a session (past its handshake) has queued to send.
fn sent(s: &mut PeerSession) -> Vec<Message> {
    let mut out = take_bytes(s);
    let mut msgs = Vec::new();
    while let Some(m) = Message::decode(&mut out, 1 << 20).unwrap() {
        msgs.push(m);
    }
    assert!(out.is_empty());
    msgs
}

fn wire(msgs: &[Message]) -> BytesMut {
    let mut out = BytesMut::new();
    for m in msgs {
        m.encode(&mut out);
    }
    out
}

/// Moves bytes between the two sessions until both are quiet, `chunk` bytes at a time.
fn pump(a: &mut PeerSession, b: &mut PeerSession, now: Instant, chunk: usize) {
    loop {
        let ab = take_bytes(a);
        let ba = take_bytes(b);
        if ab.is_empty() && ba.is_empty() {
            return;
        }
        for c in ab.chunks(chunk) {
            b.handle_input(now, c).unwrap();
        }
        for c in ba.chunks(chunk) {
            a.handle_input(now, c).unwrap();
        }
    }
}

/// `a` dials `b`; `b`'s driver parses the handshake before creating its session.
fn connect(a_cfg: SessionConfig, b_cfg: SessionConfig, now: Instant) -> (PeerSession, PeerSession) {
    let mut a = PeerSession::new(a_cfg, now);
    let first = take_bytes(&mut a);
    let theirs = parse_handshake(&first).unwrap().unwrap();
    assert_eq!(theirs.info_hash, info_hash());
    let mut b = PeerSession::new_after_handshake(b_cfg, theirs, now).unwrap();
    b.handle_input(now, &first[HANDSHAKE_LEN..]).unwrap();
    pump(&mut a, &mut b, now, usize::MAX);
    (a, b)
}

/// A leecher `a` downloads three blocks (one of them the short tail) from a seed `b`.
fn transfer(a_cfg: SessionConfig, b_cfg: SessionConfig) -> (Vec<SessionEvent>, PeerSession) {
    let now = Instant::now();
    let (mut a, mut b) = connect(a_cfg, b_cfg, now);
    let fast = a.state().fast;
    let mut a_events = events(&mut a);
    let b_events = events(&mut b);
    assert!(matches!(b_events[0], SessionEvent::Connected { .. }));
    assert!(a.state().peer_pieces.all());

    a.interested(true);
    pump(&mut a, &mut b, now, usize::MAX);
    assert!(events(&mut b).contains(&SessionEvent::Interested));
    assert!(b.state().peer_interested);
    b.unchoke();
    pump(&mut a, &mut b, now, usize::MAX);
    assert!(!a.state().peer_choking);

    let wanted = [
        block(0, 0, 16384),
        block(0, 16384, 16384),
        block(3, 16384, 20_000 - 16384),
    ];
    for w in wanted {
        assert!(a.request(w));
    }
    assert!(!a.request(wanted[0]), "duplicate request refused");
    assert_eq!(a.state().outstanding.len(), 3);
    pump(&mut a, &mut b, now, usize::MAX);
    assert_eq!(b.queued_uploads(), 3);
    assert!(
        b.upload_queue().eq(wanted.iter()),
        "queued in arrival order"
    );
    // Served out of turn: the last request first, then the rest in order.
    assert!(b.take_upload(wanted[2]));
    assert!(!b.take_upload(wanted[2]), "taken once");
    b.send_block(wanted[2], data_for(wanted[2]));
    while let Some(up) = b.next_upload() {
        b.send_block(up, data_for(up));
    }
    pump(&mut a, &mut b, now, usize::MAX);
    a_events.extend(events(&mut a));
    let received: Vec<_> = a_events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::BlockReceived { block, data } => Some((*block, data.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        received,
        [wanted[2], wanted[0], wanted[1]]
            .iter()
            .map(|&w| (w, data_for(w)))
            .collect::<Vec<_>>()
    );
    assert!(a.state().outstanding.is_empty());
    assert_eq!(a.state().downloaded, 16384 * 2 + 20_000 - 16384);
    assert_eq!(b.state().uploaded, a.state().downloaded);
    assert_eq!(a.state().fast, fast);
    (a_events, a)
}

#[test]
fn two_sessions_with_fast_and_extensions() {
    let (events, a) = transfer(config(1, false), config(2, true));
    let SessionEvent::Connected {
        peer_id,
        fast,
        extensions,
    } = events[0]
    else {
        panic!("first event {:?}", events[0]);
    };
    assert_eq!(peer_id, PeerId::shoal([2; 12]));
    assert!(fast && extensions);
    assert_eq!(events[1], SessionEvent::PeerBitfield);
    let hs = a
        .state()
        .peer_extensions
        .clone()
        .expect("extension handshake");
    assert_eq!(hs.id_of("ut_pex"), Some(1));
    assert_eq!(hs.v.as_deref(), Some("shoal test 2"));
    assert_eq!(hs.reqq, Some(500));
    assert!(events.contains(&SessionEvent::ExtensionHandshake(hs)));
}

/// A listen port learnt later (a router's) goes in a second extension handshake, which
/// the peer merges into the first: the extensions it named stay.
#[test]
fn a_new_listen_port_is_told_in_a_second_extension_handshake() {
    let now = Instant::now();
    let (mut a, mut b) = connect(config(1, false), config(2, true), now);
    assert_eq!(b.state().peer_extensions.as_ref().unwrap().p, None);
    a.send_listen_port(41234);
    pump(&mut a, &mut b, now, usize::MAX);
    let hs = b
        .state()
        .peer_extensions
        .clone()
        .expect("extension handshake");
    assert_eq!(hs.p, Some(41234));
    assert_eq!(hs.id_of("ut_pex"), Some(1));
    let mut plain = open(false, true);
    plain.send_listen_port(41234);
    assert!(sent(&mut plain).is_empty(), "no BEP 10, no handshake");
}

#[test]
fn two_sessions_plain_bep3() {
    let mut plain = config(2, true);
    plain.reserved = [0; 8];
    let (events, a) = transfer(config(1, false), plain);
    assert!(matches!(
        events[0],
        SessionEvent::Connected {
            fast: false,
            extensions: false,
            ..
        }
    ));
    assert!(a.state().peer_extensions.is_none());
}

#[test]
fn partial_bitfield_and_have() {
    let now = Instant::now();
    let mut seed = config(2, false);
    seed.our_bitfield.set(1);
    let (mut a, mut b) = connect(config(1, false), seed, now);
    assert!(a.state().peer_pieces.get(1) && !a.state().peer_pieces.get(0));
    events(&mut a);
    b.have(2);
    b.have(2);
    pump(&mut a, &mut b, now, usize::MAX);
    assert_eq!(events(&mut a), [SessionEvent::Have(2)]);
    assert_eq!(a.state().peer_pieces.count_ones(), 2);
}

/// The whole exchange, handshakes included, fed one byte at a time gives the same result.
#[test]
fn one_byte_at_a_time() {
    let now = Instant::now();
    let mut a = PeerSession::new(config(1, false), now);
    let first = take_bytes(&mut a);
    let mut b = PeerSession::new_after_handshake(
        config(2, true),
        parse_handshake(&first).unwrap().unwrap(),
        now,
    )
    .unwrap();
    pump(&mut a, &mut b, now, 1);
    let ev = events(&mut a);
    assert!(matches!(ev[0], SessionEvent::Connected { fast: true, .. }));
    assert!(a.state().peer_pieces.all());
    assert!(a.state().peer_extensions.is_some());
    b.unchoke();
    pump(&mut a, &mut b, now, 1);
    let w = block(1, 0, 16384);
    assert!(a.request(w));
    pump(&mut a, &mut b, now, 1);
    let up = b.next_upload().unwrap();
    b.send_block(up, data_for(up));
    pump(&mut a, &mut b, now, 1);
    assert!(events(&mut a).contains(&SessionEvent::BlockReceived {
        block: w,
        data: data_for(w)
    }));
}

#[test]
fn outgoing_checks_the_reply_info_hash() {
    let now = Instant::now();
    let mut a = PeerSession::new(config(1, false), now);
    let mut other = config(2, true);
    other.info_hash = InfoHash([0xcd; 20]);
    let mut reply = BytesMut::new();
    Handshake::new(other.info_hash, other.peer_id, other.reserved).encode(&mut reply);
    let err = a.handle_input(now, &reply).unwrap_err();
    assert!(matches!(err, WireError::InfoHashMismatch { .. }));
    assert!(a.is_closed());
    assert_eq!(events(&mut a), [SessionEvent::Closed(err.clone())]);
    assert_eq!(a.handle_input(now, b"x"), Err(err));
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn outgoing_rejects_garbage_and_self() {
    let now = Instant::now();
    let mut a = PeerSession::new(config(1, false), now);
    assert_eq!(
        a.handle_input(now, b"HTTP/1.1 200"),
        Err(WireError::NotBitTorrent)
    );
    let mut a = PeerSession::new(config(1, false), now);
    let mine = take_bytes(&mut a);
    assert_eq!(a.handle_input(now, &mine), Err(WireError::SelfConnection));
}

/// Item 23: the driver looked up the torrent; a mismatching handshake is still refused.
#[test]
fn incoming_for_another_torrent_is_refused() {
    let theirs = Handshake::new(InfoHash([1; 20]), PeerId([9; 20]), [0; 8]);
    assert!(matches!(
        PeerSession::new_after_handshake(config(1, true), theirs, Instant::now()),
        Err(WireError::InfoHashMismatch { .. })
    ));
}

/// An incoming session with the handshake done and its opening messages drained. We are a
/// seed of pieces 0..=2 (not 3) unless `seed` is false; the peer supports BEP 6 and BEP 10
/// when `fast` is true.
fn open(fast: bool, seed: bool) -> PeerSession {
    let mut cfg = config(1, false);
    if seed {
        for i in 0..3 {
            cfg.our_bitfield.set(i);
        }
    }
    cfg.max_incoming_requests = 4;
    let reserved = if fast {
        Handshake::SHOAL_RESERVED
    } else {
        [0; 8]
    };
    let theirs = Handshake::new(info_hash(), PeerId([9; 20]), reserved);
    let mut s = PeerSession::new_after_handshake(cfg, theirs, Instant::now()).unwrap();
    take_bytes(&mut s);
    events(&mut s);
    s
}

fn feed(s: &mut PeerSession, msgs: &[Message]) -> Result<(), WireError> {
    let now = s.now;
    s.handle_input(now, &wire(msgs))
}

/// Item 17.
#[test]
fn huge_length_prefix_disconnects_before_buffering() {
    let mut s = open(true, true);
    let err = s.handle_input(s.now, &2_000_000u32.to_be_bytes());
    assert!(matches!(
        err,
        Err(WireError::MessageTooLong { len: 2_000_000, .. })
    ));
    assert!(s.is_closed());
}

/// Item 18.
#[test]
fn bad_bitfields_disconnect() {
    for bits in [&[0xf0, 0][..], &[], &[0xf8], &[0xf0, 0, 0]] {
        let mut s = open(false, true);
        let msg = Message::Bitfield(Bytes::copy_from_slice(bits));
        let want = if bits.is_empty() {
            WireError::BadLength { id: 5, len: 1 }
        } else {
            WireError::BadBitfield
        };
        // [0xf0] alone would be valid for 4 pieces; the cases above are all wrong.
        assert_eq!(feed(&mut s, &[msg]), Err(want), "{bits:?}");
    }
    let mut s = open(false, true);
    assert_eq!(
        feed(&mut s, &[Message::Bitfield(Bytes::from_static(&[0xa0]))]),
        Ok(())
    );
    assert_eq!(events(&mut s), [SessionEvent::PeerBitfield]);
    // A late bitfield (aria2 sends one only after its first `have`s) is merged.
    let mut s = open(false, true);
    feed(&mut s, &[Message::Have(1)]).unwrap();
    feed(&mut s, &[Message::Bitfield(Bytes::from_static(&[0x80]))]).unwrap();
    assert_eq!(
        s.state().peer_pieces.iter_ones().collect::<Vec<_>>(),
        [0, 1]
    );
    // aria2 sends have-none and a bitfield, in either order: both are merged.
    feed(&mut s, &[Message::Bitfield(Bytes::from_static(&[0x20]))]).unwrap();
    assert_eq!(
        s.state().peer_pieces.iter_ones().collect::<Vec<_>>(),
        [0, 1, 2]
    );
}

/// Transmission sends its extension handshake before its bitfield.
#[test]
fn bitfield_may_follow_the_extension_handshake() {
    let mut s = open(true, true);
    let hs = ExtensionHandshake::default().encode();
    feed(
        &mut s,
        &[
            Message::KeepAlive,
            Message::Extended { id: 0, payload: hs },
            Message::Bitfield(Bytes::from_static(&[0x10])),
        ],
    )
    .unwrap();
    assert!(s.state().peer_pieces.get(3));
}

/// Item 19.
#[test]
fn wrong_lengths_and_indices_disconnect() {
    let mut s = open(true, true);
    let mut bad = BytesMut::from(&[0, 0, 0, 6, 4, 0, 0, 0, 1, 0][..]);
    assert_eq!(
        s.handle_input(s.now, &bad.split()),
        Err(WireError::BadLength { id: 4, len: 6 })
    );
    let mut s = open(true, true);
    assert_eq!(
        feed(&mut s, &[Message::Have(PIECES)]),
        Err(WireError::PieceOutOfRange {
            piece: PIECES,
            piece_count: PIECES
        })
    );
    let mut s = open(true, true);
    let request12 = [0, 0, 0, 12, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 64];
    assert_eq!(
        s.handle_input(s.now, &request12),
        Err(WireError::BadLength { id: 6, len: 12 })
    );
    // An unknown id of sane length is skipped.
    let mut s = open(true, true);
    s.handle_input(s.now, &[0, 0, 0, 3, 42, 1, 2]).unwrap();
    feed(&mut s, &[Message::Have(0)]).unwrap();
    assert_eq!(events(&mut s), [SessionEvent::Have(0)]);
}

#[test]
fn fast_and_extension_messages_need_negotiation() {
    for (msg, id) in [
        (Message::HaveAll, 14),
        (Message::HaveNone, 15),
        (Message::Suggest(0), 13),
        (Message::Reject(block(0, 0, 16384)), 16),
        (Message::AllowedFast(0), 17),
    ] {
        let mut s = open(false, true);
        assert_eq!(feed(&mut s, &[msg]), Err(WireError::FastNotNegotiated(id)));
    }
    let mut s = open(false, true);
    let ext = Message::Extended {
        id: 1,
        payload: Bytes::new(),
    };
    assert_eq!(
        feed(&mut s, &[ext]),
        Err(WireError::ExtensionsNotNegotiated)
    );
}

/// Item 20: out-of-range requests disconnect; one for a piece we lack is rejected.
#[test]
fn bad_requests() {
    for bad in [
        block(0, 16384 * 2, 1),    // beyond the piece
        block(3, 16384, 16384),    // beyond the short last piece
        block(0, 0, 0),            // empty
        block(0, 0, 16385),        // too long
        block(PIECES, 0, 16384),   // no such piece
        block(0, u32::MAX, 16384), // offset overflow
    ] {
        let mut s = open(true, true);
        s.unchoke();
        let err = feed(&mut s, &[Message::Request(bad)]).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::InvalidBlock(_) | WireError::PieceOutOfRange { .. }
            ),
            "{bad:?}: {err}"
        );
    }
    // Piece 3 is one we lack: rejected under BEP 6, silently dropped without it.
    let lacking = block(3, 0, 16384);
    let mut s = open(true, true);
    s.unchoke();
    sent(&mut s);
    feed(&mut s, &[Message::Request(lacking)]).unwrap();
    assert_eq!(sent(&mut s), [Message::Reject(lacking)]);
    assert_eq!(s.next_upload(), None);
    let mut s = open(false, true);
    s.unchoke();
    sent(&mut s);
    feed(&mut s, &[Message::Request(lacking)]).unwrap();
    assert_eq!(sent(&mut s), []);
    assert_eq!(s.next_upload(), None);
}

/// Item 20: a flood of unservable requests disconnects.
#[test]
fn request_flood_disconnects() {
    let mut s = open(true, true);
    let limit = s.flood_limit();
    let req = Message::Request(block(0, 0, 16384));
    let msgs = vec![req; limit];
    feed(&mut s, &msgs).expect("up to the limit is tolerated while choked");
    assert_eq!(
        feed(&mut s, &[Message::Request(block(1, 0, 16384))]),
        Err(WireError::RequestFlood(limit))
    );
    // The window resets: the same count spread over time is fine.
    let mut s = open(false, true);
    for round in 0..3u64 {
        let later = s.now + FLOOD_WINDOW * (round as u32 + 1);
        s.handle_input(
            later,
            &wire(&vec![Message::Request(block(0, 0, 16384)); limit]),
        )
        .unwrap();
    }
}

/// Item 21: the queue is bounded, the excess rejected (BEP 6) and never served.
#[test]
fn excess_requests_are_dropped() {
    let mut s = open(true, true);
    s.unchoke();
    sent(&mut s);
    let reqs: Vec<Block> = (0..6)
        .map(|i| block(i / 2, (i % 2) * 16384, 16384))
        .collect();
    feed(
        &mut s,
        &reqs
            .iter()
            .map(|&b| Message::Request(b))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(s.queued_uploads(), 4);
    assert_eq!(
        sent(&mut s),
        [Message::Reject(reqs[4]), Message::Reject(reqs[5])]
    );
    let served: Vec<Block> = std::iter::from_fn(|| s.next_upload()).collect();
    assert_eq!(served, reqs[..4]);
}

#[test]
fn cancel_and_choke_empty_the_queue() {
    let reqs = [
        block(0, 0, 16384),
        block(0, 16384, 16384),
        block(1, 0, 16384),
    ];
    for fast in [true, false] {
        let mut s = open(fast, true);
        s.unchoke();
        sent(&mut s);
        feed(&mut s, &reqs.map(Message::Request)).unwrap();
        feed(&mut s, &[Message::Cancel(reqs[1])]).unwrap();
        assert_eq!(s.queued_uploads(), 2);
        let answered = if fast {
            vec![Message::Reject(reqs[1])]
        } else {
            vec![]
        };
        assert_eq!(sent(&mut s), answered);
        s.choke();
        assert_eq!(s.queued_uploads(), 0);
        assert_eq!(s.next_upload(), None);
        let mut want = vec![Message::Choke];
        if fast {
            want.extend([Message::Reject(reqs[0]), Message::Reject(reqs[2])]);
        }
        assert_eq!(sent(&mut s), want);
    }
    let mut s = open(true, true);
    assert!(matches!(
        feed(&mut s, &[Message::Cancel(block(0, 0, 0))]),
        Err(WireError::InvalidBlock(_))
    ));
}

/// Item 22: unrequested, cancelled or mismatched blocks are discarded without an event.
#[test]
fn unrequested_pieces_are_discarded() {
    let mut s = open(true, false);
    feed(&mut s, &[Message::HaveAll, Message::Unchoke]).unwrap();
    events(&mut s);
    let wanted = block(0, 0, 16384);
    let cancelled = block(1, 0, 16384);
    assert!(s.request(wanted));
    assert!(s.request(cancelled));
    s.cancel(cancelled);
    let piece = |b: Block, len: u32| Message::Piece {
        piece: b.piece,
        offset: b.offset,
        data: data_for(Block { length: len, ..b }),
    };
    feed(
        &mut s,
        &[
            piece(block(2, 0, 16384), 16384),
            piece(cancelled, 16384),
            piece(wanted, 100),
            piece(block(99, 0, 16384), 16384),
        ],
    )
    .unwrap();
    assert_eq!(events(&mut s), []);
    assert_eq!(s.state().downloaded, 0);
    // Counted as received for nothing (the torrent reports them as wasted).
    assert_eq!(s.state().unrequested, 3 * 16384 + 100);
    assert_eq!(s.state().outstanding.len(), 1);
    feed(&mut s, &[piece(wanted, 16384), piece(wanted, 16384)]).unwrap();
    assert_eq!(
        events(&mut s).len(),
        1,
        "a duplicate delivery is discarded too"
    );
    assert_eq!(s.state().downloaded, 16384);
    assert_eq!(s.state().unrequested, 4 * 16384 + 100);
}

#[test]
fn choke_drops_outstanding_requests_without_fast() {
    let mut s = open(false, false);
    feed(&mut s, &[Message::Unchoke]).unwrap();
    events(&mut s);
    let (b1, b2) = (block(0, 0, 16384), block(2, 16384, 16384));
    assert!(s.request(b2) && s.request(b1));
    feed(&mut s, &[Message::Choke]).unwrap();
    assert_eq!(
        events(&mut s),
        [SessionEvent::Choked {
            dropped: vec![b1, b2]
        }]
    );
    assert!(s.state().outstanding.is_empty());
    assert!(
        !s.request(b1),
        "no requests while choked without allowed-fast"
    );
}

#[test]
fn with_fast_only_rejects_cancel_requests() {
    let mut s = open(true, false);
    feed(&mut s, &[Message::HaveAll, Message::Unchoke]).unwrap();
    let (b1, b2) = (block(0, 0, 16384), block(1, 0, 16384));
    assert!(s.request(b1) && s.request(b2));
    feed(&mut s, &[Message::Choke, Message::AllowedFast(1)]).unwrap();
    events(&mut s);
    assert_eq!(s.state().outstanding.len(), 2);
    feed(&mut s, &[Message::Reject(b1), Message::Reject(b1)]).unwrap();
    assert_eq!(events(&mut s), [SessionEvent::Rejected(b1)]);
    assert!(!s.request(b1), "choked and piece 0 not allowed-fast");
    s.cancel(b2);
    assert!(s.request(b2), "piece 1 is allowed-fast");
}

/// Item 26 through the session: the peer's extension handshake with a 4 GB string.
#[test]
fn hostile_extension_handshake_disconnects() {
    let mut s = open(true, true);
    let payload = Bytes::from_static(b"d1:v4294967296:xe");
    let err = feed(&mut s, &[Message::Extended { id: 0, payload }]).unwrap_err();
    assert!(matches!(err, WireError::ExtensionBencode(_)));
    assert!(s.is_closed());
}

#[test]
fn extension_messages_are_passed_on() {
    let mut s = open(true, true);
    let payload = Bytes::from_static(b"d5:added0:e");
    feed(
        &mut s,
        &[Message::Extended {
            id: 1,
            payload: payload.clone(),
        }],
    )
    .unwrap();
    assert_eq!(events(&mut s), [SessionEvent::Extended { id: 1, payload }]);
    assert!(s.send_extended(3, Bytes::from_static(b"de")));
    assert_eq!(
        sent(&mut s),
        [Message::Extended {
            id: 3,
            payload: Bytes::from_static(b"de")
        }]
    );
    let mut plain = open(false, true);
    assert!(!plain.send_extended(3, Bytes::new()));
}

#[test]
fn keepalive_and_idle_timeout() {
    let start = Instant::now();
    let mut s = PeerSession::new_after_handshake(
        config(1, true),
        Handshake::new(info_hash(), PeerId([9; 20]), [0; 8]),
        start,
    )
    .unwrap();
    take_bytes(&mut s);
    let secs = |n| start + Duration::from_secs(n);
    assert_eq!(s.poll_timeout(), Some(secs(120)));
    s.handle_timeout(secs(119));
    assert!(s.poll_transmit().is_none());
    s.handle_timeout(secs(120));
    assert_eq!(take_bytes(&mut s).as_ref(), [0, 0, 0, 0]);
    // The peer speaks at 150 s: the idle deadline moves to 330 s, the next keep-alive is due
    // at 240 s.
    s.handle_input(secs(150), &wire(&[Message::KeepAlive]))
        .unwrap();
    assert_eq!(s.poll_timeout(), Some(secs(240)));
    s.handle_timeout(secs(240));
    assert_eq!(take_bytes(&mut s).as_ref(), [0, 0, 0, 0]);
    assert_eq!(s.poll_timeout(), Some(secs(330)));
    s.handle_timeout(secs(330));
    assert!(s.is_closed());
    assert_eq!(
        events(&mut s).last(),
        Some(&SessionEvent::Closed(WireError::IdleTimeout(
            Duration::from_secs(180)
        )))
    );
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn handshake_timeout() {
    let start = Instant::now();
    let mut a = PeerSession::new(config(1, false), start);
    assert_eq!(a.poll_timeout(), Some(start + Duration::from_secs(20)));
    // Half a handshake does not stop the clock.
    a.handle_input(start + Duration::from_secs(5), b"\x13BitTorrent")
        .unwrap();
    a.handle_timeout(start + Duration::from_secs(20));
    assert_eq!(
        a.close_reason(),
        Some(&WireError::HandshakeTimeout(Duration::from_secs(20)))
    );
}

#[test]
fn commands_before_the_handshake_are_ignored() {
    let now = Instant::now();
    let mut a = PeerSession::new(config(1, false), now);
    a.interested(true);
    a.unchoke();
    assert!(!a.request(block(0, 0, 16384)));
    a.have(2);
    let bytes = take_bytes(&mut a);
    assert_eq!(bytes.len(), HANDSHAKE_LEN, "only our handshake");
    // `have` before the handshake still shapes the opening bitfield.
    let theirs = parse_handshake(&bytes).unwrap().unwrap();
    let mut b = PeerSession::new_after_handshake(config(2, false), theirs, now).unwrap();
    pump(&mut a, &mut b, now, usize::MAX);
    assert!(b.state().peer_pieces.get(2));
    assert_eq!(b.state().peer_pieces.count_ones(), 1);
}

/// Owned input cut at any size gives the same blocks as borrowed input: whole messages
/// are cut from the chunk, partial ones buffered until the rest arrives, and only a
/// message cut in two is copied.
#[test]
fn owned_input_in_any_chunks() {
    for chunk in [1, 7, 1000, 16_390, 40_000] {
        let now = Instant::now();
        let (mut a, mut b) = connect(config(1, false), config(2, true), now);
        events(&mut a);
        b.unchoke();
        pump(&mut a, &mut b, now, usize::MAX);
        let wanted = [
            block(0, 0, 16384),
            block(1, 16384, 16384),
            block(3, 0, 16384),
        ];
        for w in wanted {
            assert!(a.request(w));
        }
        pump(&mut a, &mut b, now, usize::MAX);
        while let Some(up) = b.next_upload() {
            b.send_block(up, data_for(up));
        }
        b.have(2);
        let bytes = take_bytes(&mut b).freeze();
        for start in (0..bytes.len()).step_by(chunk) {
            let end = (start + chunk).min(bytes.len());
            a.handle_input_bytes(now, bytes.slice(start..end)).unwrap();
        }
        let got: Vec<_> = events(&mut a)
            .into_iter()
            .filter_map(|e| match e {
                SessionEvent::BlockReceived { block, data } => Some((block, data)),
                _ => None,
            })
            .collect();
        // Only a block cut by a chunk boundary is copied; the others point into the input.
        let input = bytes.as_ptr_range();
        let in_place = got
            .iter()
            .filter(|(_, data)| input.contains(&data.as_ptr()))
            .count();
        let boundaries = (bytes.len() - 1) / chunk;
        assert!(
            in_place >= wanted.len().saturating_sub(boundaries),
            "chunk {chunk}: {in_place} blocks parsed in place"
        );
        assert_eq!(
            got,
            wanted.iter().map(|&w| (w, data_for(w))).collect::<Vec<_>>(),
            "chunk {chunk}"
        );
        assert!(a.state().outstanding.is_empty(), "chunk {chunk}");
    }
}

/// BEP 6: pieces we grant as allowed-fast are served while the peer is choked, and
/// their requests survive a choke; requests for other pieces are rejected.
#[test]
fn granted_allowed_fast_pieces_are_served_while_choked() {
    let mut s = open(true, true);
    s.allow_fast(1);
    s.allow_fast(1);
    s.allow_fast(99); // beyond the torrent: ignored
    assert_eq!(sent(&mut s), [Message::AllowedFast(1)]);
    let (granted, other) = (block(1, 0, 16384), block(0, 0, 16384));
    feed(
        &mut s,
        &[Message::Request(granted), Message::Request(other)],
    )
    .unwrap();
    assert_eq!(sent(&mut s), [Message::Reject(other)]);
    assert_eq!(s.next_upload(), Some(granted));
    assert_eq!(s.next_upload(), None);
    // Unchoked then choked again: the allowed-fast request stays queued.
    s.unchoke();
    feed(
        &mut s,
        &[Message::Request(granted), Message::Request(other)],
    )
    .unwrap();
    s.choke();
    assert_eq!(
        sent(&mut s),
        [Message::Unchoke, Message::Choke, Message::Reject(other)]
    );
    assert_eq!(s.next_upload(), Some(granted));
}

#[test]
fn no_allowed_fast_without_the_fast_extension() {
    let mut s = open(false, true);
    s.allow_fast(1);
    assert!(sent(&mut s).is_empty());
    feed(&mut s, &[Message::Request(block(1, 0, 16384))]).unwrap();
    assert_eq!(s.next_upload(), None);
}

/// BEP 6 `suggest`: only with the fast extension, and only for pieces we have.
#[test]
fn suggestions_name_pieces_we_have() {
    let mut s = open(true, true);
    s.suggest(1);
    s.suggest(99); // beyond the torrent: ignored
    assert_eq!(sent(&mut s), [Message::Suggest(1)]);
    let mut lacking = open(true, false);
    lacking.suggest(1);
    assert!(sent(&mut lacking).is_empty());
    let mut slow = open(false, true);
    slow.suggest(1);
    assert!(sent(&mut slow).is_empty());
}

/// A block filled in place goes out like one passed in; a failed fill sends nothing.
#[test]
fn blocks_filled_in_place() {
    let mut s = open(true, true);
    s.unchoke();
    let (good, bad) = (block(0, 0, 16384), block(1, 0, 16384));
    feed(&mut s, &[Message::Request(good), Message::Request(bad)]).unwrap();
    let up = s.next_upload().unwrap();
    s.send_block_with(up, |out| {
        out.copy_from_slice(&data_for(up));
        Ok::<(), ()>(())
    })
    .unwrap();
    let up = s.next_upload().unwrap();
    assert_eq!(
        s.send_block_with(up, |_| Err("read failed")),
        Err("read failed")
    );
    s.reject(up);
    assert_eq!(
        sent(&mut s),
        [
            Message::Unchoke,
            Message::Piece {
                piece: 0,
                offset: 0,
                data: data_for(good)
            },
            Message::Reject(bad),
        ]
    );
    assert_eq!(s.state().uploaded, 16384);
}

/// A block sent as its header plus the driver's own data buffer arrives whole, and the
/// receiver's block points into that buffer (no copy on either side); data cut short of
/// the header's length is buffered as usual.
#[test]
fn blocks_sent_vectored_arrive_without_copies() {
    for split_data in [false, true] {
        let now = Instant::now();
        let (mut a, mut b) = connect(config(1, false), config(2, true), now);
        events(&mut a);
        b.unchoke();
        pump(&mut a, &mut b, now, usize::MAX);
        let wanted = [block(0, 0, 16384), block(3, 0, 16384)];
        for w in wanted {
            assert!(a.request(w));
        }
        pump(&mut a, &mut b, now, usize::MAX);
        let mut wire = Vec::new();
        while let Some(up) = b.next_upload() {
            b.have(1); // pending before the header: it goes first
            let head = b.send_block_header(up).unwrap();
            wire.push(head);
            wire.push(data_for(up));
        }
        assert_eq!(b.state().uploaded, 2 * 16384);
        for bytes in &wire {
            if split_data && bytes.len() == 16384 {
                a.handle_input_bytes(now, bytes.slice(..100)).unwrap();
                a.handle_input_bytes(now, bytes.slice(100..)).unwrap();
            } else {
                a.handle_input_bytes(now, bytes.clone()).unwrap();
            }
        }
        let got: Vec<_> = events(&mut a)
            .into_iter()
            .filter_map(|e| match e {
                SessionEvent::BlockReceived { block, data } => Some((block, data)),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            wanted.iter().map(|&w| (w, data_for(w))).collect::<Vec<_>>()
        );
        let shared = got
            .iter()
            .zip(wire.iter().skip(1).step_by(2))
            .all(|((_, data), sent)| data.as_ptr() == sent.as_ptr());
        assert_eq!(shared, !split_data, "split {split_data}");
        assert!(a.state().peer_pieces.get(1));
    }
}

#[test]
fn upload_only_from_the_handshake_and_from_the_message() {
    use crate::{OUR_UPLOAD_ONLY_ID, UPLOAD_ONLY};
    let now = Instant::now();
    // `a` takes the message (libtorrent's name, our id); `b` is a partial seed.
    let mut a_cfg = config(1, false);
    a_cfg
        .extension_handshake
        .m
        .insert(UPLOAD_ONLY.to_owned(), OUR_UPLOAD_ONLY_ID);
    let mut b_cfg = config(2, false);
    b_cfg.extension_handshake.upload_only = Some(true);
    let (mut a, mut b) = connect(a_cfg, b_cfg, now);
    assert!(a.state().peer_upload_only, "from b's handshake");
    assert!(!b.state().peer_upload_only);
    events(&mut a);
    events(&mut b);

    // b's download finished: a says so with a message, under the id b gave it... but b
    // did not take the message, so nothing is sent.
    a.send_upload_only(true);
    assert!(take_bytes(&mut a).is_empty());
    // b tells a it wants pieces again, then that it is done: a sees both.
    b.send_upload_only(false);
    pump(&mut b, &mut a, now, usize::MAX);
    assert!(!a.state().peer_upload_only);
    assert_eq!(events(&mut a), [SessionEvent::UploadOnly]);
    b.send_upload_only(true);
    pump(&mut b, &mut a, now, usize::MAX);
    assert!(a.state().peer_upload_only);
    assert_eq!(events(&mut a), [SessionEvent::UploadOnly]);

    // A malformed one (two bytes) is ignored, not fatal; nor is it passed on.
    feed(
        &mut a,
        &[Message::Extended {
            id: OUR_UPLOAD_ONLY_ID,
            payload: Bytes::from_static(&[0, 0]),
        }],
    )
    .unwrap();
    assert!(events(&mut a).is_empty());
    assert!(a.state().peer_upload_only);
}

/// BEP 52: every hash request is answered, by the torrent up to a budget per window and
/// with a reject beyond it, so a peer cannot make us build answers without limit.
#[test]
fn hash_requests_go_to_the_torrent_up_to_a_budget_then_are_rejected() {
    let mut s = open(true, true);
    let range = |index| HashRange {
        root: [7; 32],
        base_layer: 4,
        index,
        length: 2,
        proof_layers: 0,
    };
    let requests: Vec<_> = (0..MAX_HASH_REQUESTS as u32 + 3)
        .map(|i| Message::HashRequest(range(2 * i)))
        .collect();
    feed(&mut s, &requests).unwrap();
    let asked: Vec<_> = events(&mut s)
        .into_iter()
        .filter_map(|e| match e {
            SessionEvent::HashRequest(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(asked.len(), MAX_HASH_REQUESTS);
    let rejected: Vec<_> = (MAX_HASH_REQUESTS as u32..MAX_HASH_REQUESTS as u32 + 3)
        .map(|i| Message::HashReject(range(2 * i)))
        .collect();
    assert_eq!(sent(&mut s), rejected);
    // The torrent's answers go out as `hashes` or `hash reject`.
    s.answer_hashes(asked[0], Some(vec![[1; 32], [2; 32]]));
    s.answer_hashes(asked[1], None);
    assert_eq!(
        sent(&mut s),
        [
            Message::Hashes {
                range: asked[0],
                hashes: vec![[1; 32], [2; 32]]
            },
            Message::HashReject(asked[1]),
        ]
    );
    // A new window, a new budget.
    let later = s.now + FLOOD_WINDOW;
    s.handle_input(later, &wire(&[Message::HashRequest(range(0))]))
        .unwrap();
    assert!(matches!(events(&mut s)[..], [SessionEvent::HashRequest(_)]));
}
