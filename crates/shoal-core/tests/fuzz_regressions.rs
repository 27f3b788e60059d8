//! Replays `fuzz/regressions/<target>/*` through the fuzz targets' checks. Every input a
//! fuzzer ever crashed on becomes a file there, so the bug stays fixed.

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
fn bencode_corpus() {
    replay("bencode", shoal_core::fuzzing::bencode);
}

#[test]
fn metainfo_corpus() {
    replay("metainfo", shoal_core::fuzzing::metainfo);
    // Bencode inputs are torrents too, as far as the parser knows.
    replay("bencode", shoal_core::fuzzing::metainfo);
}

#[test]
fn magnet_corpus() {
    replay("magnet", shoal_core::fuzzing::magnet);
}
