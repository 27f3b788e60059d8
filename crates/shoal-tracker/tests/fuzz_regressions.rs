//! Replays `fuzz/regressions/tracker_*` through the tracker fuzz targets' checks, so
//! every input a fuzzer ever crashed on stays fixed.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("readable corpus").path();
        let data = std::fs::read(&path).expect("readable corpus file");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} fails its fuzz check", path.display());
        count += 1;
    }
    assert!(count > 0, "empty corpus in {}", dir.display());
}

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
