//! Properties the `peer_session`, `ut_metadata`, `ut_pex`, `ut_holepunch` and `mse` fuzz
//! targets check, shared with the
//! tests that replay their regression corpora. Each function panics when an invariant breaks;
//! errors on bad input are the expected outcome.

use crate::holepunch::{Holepunch, HolepunchPeer, MAX_RECEIVED_PER_WINDOW};
use crate::metadata::{MetadataAssembler, MetadataMessage};
use crate::mse::{CryptoSet, MseError, MseHandshake};
use crate::pex::{PexMessage, PexPeer};
use crate::session::{PeerSession, SessionConfig, SessionEvent};
use crate::Handshake;
use bytes::Bytes;
use shoal_core::{Bitfield, InfoHash, PeerId};
use std::time::{Duration, Instant};

/// A peer's message stream, fed to a session on an accepted connection that unchokes it
/// and serves what it asks. `data` is the peer's reserved bytes (8), a chunk size (1),
/// then the stream. The stream goes in whole (without copying) and in chunks of that
/// size: never a panic, the same events either way (and the same bytes sent, unless the
/// peer was cut off: what was still queued then is dropped, and a chunk boundary decides
/// how much that is), every request served within its piece, and what the peer can grow
/// within its bounds.
pub fn peer_session(data: &[u8]) {
    const PIECES: u32 = 37;
    const PIECE_LENGTH: u32 = 32 * 1024;
    const TOTAL: u64 = PIECES as u64 * PIECE_LENGTH as u64 - 1000;
    if data.len() < 9 {
        return;
    }
    let reserved: [u8; 8] = data[..8].try_into().expect("eight bytes");
    let chunk = usize::from(data[8] % 16) + 1;
    let stream = &data[9..];
    let now = Instant::now();
    let run = |whole: bool| -> (Vec<String>, Option<Vec<u8>>) {
        let mut ours = Bitfield::new(PIECES as usize);
        for piece in (0..PIECES as usize).step_by(3) {
            ours.set(piece);
        }
        let config = SessionConfig::new(
            InfoHash([7; 20]),
            PeerId([1; 20]),
            PIECES,
            PIECE_LENGTH,
            TOTAL,
            ours,
        );
        let limit = config.max_incoming_requests;
        let theirs = Handshake::new(InfoHash([7; 20]), PeerId([2; 20]), reserved);
        let mut session =
            PeerSession::new_after_handshake(config, theirs, now).expect("the torrent's handshake");
        session.unchoke();
        let (mut events, mut sent) = (Vec::new(), Vec::new());
        // Requests are served, and hash requests answered, after all the input, the same
        // in both runs: a block served between two chunks may rightly be asked for, and
        // sent, again, and an answer's place among our messages is the driver's choice.
        let mut hash_requests = Vec::new();
        let mut drain = |session: &mut PeerSession, serve: bool| {
            if serve {
                for range in hash_requests.drain(..) {
                    session.answer_hashes(range, None);
                }
            }
            while let Some(block) = serve.then(|| session.next_upload()).flatten() {
                let end = u64::from(block.piece) * u64::from(PIECE_LENGTH)
                    + u64::from(block.offset)
                    + u64::from(block.length);
                assert!(
                    block.piece < PIECES && block.length > 0 && end <= TOTAL,
                    "{block:?}"
                );
                assert!(block.offset + block.length <= PIECE_LENGTH, "{block:?}");
                session.send_block(block, Bytes::from(vec![0; block.length as usize]));
            }
            while let Some(event) = session.poll_event() {
                if let SessionEvent::HashRequest(range) = &event {
                    hash_requests.push(*range);
                }
                events.push(format!("{event:?}"));
            }
            while let Some(bytes) = session.poll_transmit() {
                sent.extend_from_slice(&bytes);
            }
            let state = session.state();
            assert!(session.queued_uploads() <= limit);
            assert!(state.allowed_fast.len() <= 256);
            assert_eq!(state.peer_pieces.len(), PIECES as usize);
            assert!(state.outstanding.is_empty(), "we asked for nothing");
        };
        drain(&mut session, false);
        if whole {
            let _ = session.handle_input_bytes(now, Bytes::copy_from_slice(stream));
            drain(&mut session, false);
        } else {
            for piece in stream.chunks(chunk) {
                let _ = session.handle_input(now, piece);
                drain(&mut session, false);
            }
        }
        drain(&mut session, true);
        let cut_off = session.is_closed();
        session.handle_timeout(now + Duration::from_secs(600));
        drain(&mut session, false);
        assert!(session.is_closed(), "idle for 10 minutes");
        (events, (!cut_off).then_some(sent))
    };
    let (whole, chunked) = (run(true), run(false));
    assert_eq!(whole.0, chunked.0);
    if let (Some(a), Some(b)) = (&whole.1, &chunked.1) {
        assert!(a == b, "{} bytes sent against {}", a.len(), b.len());
    }
}

/// Decoding never panics; an accepted message re-encodes to one that decodes the same;
/// an assembler fed it (for a small and a large advertised size) never panics.
pub fn ut_metadata(data: &[u8]) {
    let payload = Bytes::copy_from_slice(data);
    let Ok(Some(message)) = MetadataMessage::decode(&payload) else {
        return;
    };
    assert_eq!(
        MetadataMessage::decode(&message.encode()),
        Ok(Some(message.clone()))
    );
    for size in [1, 40_000] {
        let mut assembler = MetadataAssembler::new(InfoHash([0; 20]), size).expect("valid size");
        let _ = assembler.on_message(message.clone());
        while assembler.next_request().is_some() {}
    }
}

/// Decoding never panics and round-trips; the per-peer state accepts or refuses it
/// without panicking and never hands out more than 50 peers.
pub fn ut_pex(data: &[u8]) {
    if let Ok(message) = PexMessage::decode(data) {
        assert_eq!(PexMessage::decode(&message.encode()), Ok(message));
    }
    let mut peer = PexPeer::new(Instant::now());
    if let Ok(added) = peer.on_receive(Instant::now(), data) {
        assert!(added.len() <= crate::pex::MAX_PER_MESSAGE);
    }
}

/// Decoding never panics; what decodes re-encodes to a message that decodes the same;
/// a peer repeating it gets no more than its allowance through.
pub fn ut_holepunch(data: &[u8]) {
    if let Some(message) = Holepunch::decode(data) {
        assert_eq!(Holepunch::decode(&message.encode()), Some(message));
    }
    let now = Instant::now();
    let mut peer = HolepunchPeer::new(now);
    let passed = (0..2 * MAX_RECEIVED_PER_WINDOW)
        .filter(|_| peer.on_receive(now, data).is_some())
        .count();
    assert!(passed <= MAX_RECEIVED_PER_WINDOW as usize);
}

/// The MSE handshake, in either role, fed `data` whole and then a byte at a time: never
/// a panic, the same outcome both ways (an error, a finished handshake with the same
/// payload, or still waiting), and never more than the handshake's windows kept.
pub fn mse(data: &[u8]) {
    use rand::SeedableRng;
    /// Ya or Yb, the largest pad, the marker and the fixed fields, plus the largest
    /// chunk a caller feeds at once here (one byte, or all of `data`).
    fn bound(data: &[u8]) -> usize {
        96 + 512 + 40 + 512 + 2 + 68 + data.len()
    }
    type Outcome = Result<Option<Vec<u8>>, MseError>;
    let run = |initiator: bool, chunk: usize| -> Outcome {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let mut side = if initiator {
            MseHandshake::initiator([3; 20], CryptoSet::BOTH, &mut rng)
        } else {
            MseHandshake::responder([3; 20], CryptoSet::BOTH, &mut rng)
        };
        for piece in data.chunks(chunk.max(1)) {
            if let Some(done) = side.feed(piece)? {
                return Ok(Some(done.payload));
            }
            assert!(side.buffered() <= bound(data));
        }
        Ok(None)
    };
    for initiator in [false, true] {
        assert_eq!(run(initiator, data.len()), run(initiator, 1));
    }
}
