//! Replays `fuzz/regressions/tracker_*` through the tracker fuzz targets' checks, so
//! every input a fuzzer ever crashed on stays fixed.

use shoal_core::fuzzing::replay_regressions as replay;

#[test]
fn tracker_http_corpus() {
    replay("tracker_http", shoal_tracker::fuzzing::http_response);
}

#[test]
fn tracker_udp_corpus() {
    replay("tracker_udp", shoal_tracker::fuzzing::udp_packet);
    // HTTP inputs are datagrams too, as far as the decoders know.
    replay("tracker_http", shoal_tracker::fuzzing::udp_packet);
}
