//! Properties the fuzz targets in `fuzz/` check, shared with the test that replays the
//! regression corpus so that both run exactly the same code. Each function panics when
//! an invariant breaks; errors on bad input are the expected outcome, not failures.

use shoal_bencode::{decode, Limits};

use crate::{Magnet, Metainfo};

/// Decoding never panics, and a decoded value re-encodes to bytes that decode to the
/// same value.
pub fn bencode(data: &[u8]) {
    if let Ok(doc) = decode(data, Limits::default()) {
        let value = doc.root().to_value();
        let again = value.to_bytes();
        let redecoded = decode(&again, Limits::default()).expect("re-encoded value decodes");
        assert_eq!(redecoded.root().to_value(), value);
    }
}

/// Parsing never panics; an accepted torrent has consistent geometry, only safe paths,
/// and survives a write and re-read with the same info-hash.
pub fn metainfo(data: &[u8]) {
    let Ok(m) = Metainfo::from_bytes(data) else {
        return;
    };
    let info = &m.info;
    assert!(info.total_length > 0);
    assert_eq!(
        info.total_length.div_ceil(u64::from(info.piece_length)),
        info.piece_count() as u64
    );
    let mut seen = std::collections::HashSet::new();
    for file in &info.files {
        assert!(!file.path.is_empty());
        for component in &file.path {
            assert!(
                !component.is_empty() && component != "." && component != "..",
                "{component:?}"
            );
            assert!(!component.contains(['/', '\\', '\0']), "{component:?}");
        }
        assert!(seen.insert(&file.path), "duplicate path {:?}", file.path);
    }
    let again = Metainfo::from_bytes(&m.to_bytes()).expect("a written torrent parses");
    assert_eq!(again.info_hash, m.info_hash);
}

/// Parsing never panics, and an accepted link prints as a link that parses back equal.
pub fn magnet(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = text.parse::<Magnet>() {
        let printed = m.to_string();
        assert_eq!(printed.parse::<Magnet>().as_ref(), Ok(&m), "{printed}");
    }
}

/// Runs `check` on every file of `fuzz/regressions/<target>/` (the inputs a fuzzer ever
/// crashed on), failing on a panic or an empty corpus. Each crate's corpus test calls
/// this, so the corpus replay is written once.
pub fn replay_regressions(target: &str, check: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
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
