//! Properties the `krpc` fuzz target checks, shared with the test that replays its
//! regression corpus. Each function panics when an invariant breaks; errors on bad input
//! are the expected outcome.

use crate::krpc::{Body, Message};
use crate::{Dht, DhtConfig};
use std::time::Instant;

/// Decoding never panics; an accepted query or response re-encodes to a packet that
/// decodes to the same message; a node fed the packet (from two sources) never panics
/// and never queues more than one answer per packet.
pub fn krpc(data: &[u8]) {
    if let Ok(message) = Message::decode(data) {
        if !matches!(message.body, Body::Error { .. }) {
            let again = Message::decode(&message.encode()).expect("re-encoded message decodes");
            assert_eq!(again, message);
        }
    }
    let now = Instant::now();
    let mut dht = Dht::new(DhtConfig::default(), now);
    for from in ["10.0.0.1:6881", "10.0.0.2:1"] {
        dht.handle_packet(now, from.parse().expect("valid"), data);
    }
    dht.handle_timeout(now);
    let answers = std::iter::from_fn(|| dht.poll_transmit()).count();
    // One answer per packet, plus at most one ping back per source.
    assert!(answers <= 4, "{answers} packets for two inputs");
}
