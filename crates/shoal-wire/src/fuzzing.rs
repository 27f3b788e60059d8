//! Properties the `ut_metadata` and `ut_pex` fuzz targets check, shared with the tests
//! that replay their regression corpora. Each function panics when an invariant breaks;
//! errors on bad input are the expected outcome.

use crate::metadata::{MetadataAssembler, MetadataMessage};
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
