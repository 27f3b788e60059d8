//! Properties the `ut_metadata`, `ut_pex`, `ut_holepunch` and `mse` fuzz targets check, shared with the
//! tests that replay their regression corpora. Each function panics when an invariant breaks;
//! errors on bad input are the expected outcome.

use crate::holepunch::{Holepunch, HolepunchPeer, MAX_RECEIVED_PER_WINDOW};
use crate::metadata::{MetadataAssembler, MetadataMessage};
use crate::mse::{CryptoSet, MseError, MseHandshake};
use crate::pex::{PexMessage, PexPeer};
use bytes::Bytes;
use shoal_core::InfoHash;
use std::time::Instant;

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
