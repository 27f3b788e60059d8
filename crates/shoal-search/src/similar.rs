//! Related torrents: names that share most of their words, found through the same tree.
//!
//! A torrent's name is a set of keywords; two names are as similar as their sets' Jaccard
//! index. MinHash with locality-sensitive bands turns that into exact keys: [`BANDS`]
//! bands of [`ROWS`] min-hashes each, every band one *similarity key*, so two names with
//! Jaccard index J share at least one key with probability 1 − (1 − J^ROWS)^BANDS (0.95
//! at J = 0.6, 0.43 at J = 0.3). A similarity key is stored as an entry whose keyword is
//! `~`, the band's digit and the band's hash in hex: `~` is never part of a keyword, so
//! these never meet the words. A reader looks up the keys of the name it starts from and
//! ranks what they return by the Jaccard index of the names themselves.
//!
//! This takes the place of the design's 64-bit SimHash: over the handful of words in a
//! torrent's name, a SimHash's Hamming distance swings too far for a fixed threshold,
//! while the Jaccard index of the words is what "related" means here.

use std::collections::BTreeSet;

use crate::keyword::keywords;

/// Bands, each one similarity key per torrent.
pub const BANDS: usize = 6;
/// Min-hashes per band.
pub const ROWS: usize = 2;
/// What every similarity key's keyword starts with.
pub const MARK: char = '~';

/// The similarity keys of a name (none for a name without keywords).
pub fn similarity_keys(name: &str) -> Vec<String> {
    let words = keywords(name);
    if words.is_empty() {
        return Vec::new();
    }
    (0..BANDS)
        .map(|band| {
            let mut h = 0xcbf2_9ce4_8422_2325u64 ^ band as u64;
            for row in 0..ROWS {
                let seed = (band * ROWS + row) as u64;
                let min = words
                    .iter()
                    .map(|w| mix(fnv1a(w.as_bytes()) ^ mix(seed)))
                    .min()
                    .expect("not empty");
                h = mix(h ^ min);
            }
            format!("{MARK}{band}{:08x}", h as u32)
        })
        .collect()
}

/// The Jaccard index of two names' keyword sets.
pub fn similarity(a: &str, b: &str) -> f64 {
    let a: BTreeSet<String> = keywords(a).into_iter().collect();
    let b: BTreeSet<String> = keywords(b).into_iter().collect();
    let union = a.union(&b).count();
    if union == 0 {
        return 0.0;
    }
    a.intersection(&b).count() as f64 / union as f64
}

/// FNV-1a, 64-bit: fixed forever, as the keys published with it must be.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64's finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_follow_the_words() {
        let a = similarity_keys("Ubuntu 24.04 Desktop amd64");
        assert_eq!(a.len(), BANDS);
        assert!(a.iter().all(|k| k.starts_with(MARK) && k.len() == 10));
        // The same words in another order and case: the same keys.
        assert_eq!(a, similarity_keys("amd64 desktop UBUNTU-24.04"));
        // Fixed hashes: these keys are published, and must not change between versions.
        assert_eq!(similarity_keys("ubuntu")[0], similarity_keys("Ubuntu!")[0]);
        assert!(similarity_keys("...").is_empty());
    }

    /// Names sharing most words share a key far more often than unrelated names do.
    #[test]
    fn related_names_share_keys() {
        let shared = |a: &str, b: &str| {
            let a: BTreeSet<String> = similarity_keys(a).into_iter().collect();
            similarity_keys(b).iter().filter(|k| a.contains(*k)).count()
        };
        let mut related = 0;
        let mut unrelated = 0;
        for i in 0..200 {
            let base = format!("show{i} season 1 episode {i} 1080p web");
            related +=
                usize::from(shared(&base, &format!("show{i} season 1 episode {i} 720p web")) > 0);
            unrelated += usize::from(shared(&base, &format!("film{i} director cut 4k remux")) > 0);
        }
        assert!(related >= 180, "{related} of 200 related pairs met");
        assert!(unrelated <= 10, "{unrelated} of 200 unrelated pairs met");
        assert!((similarity("a1 b2 c3", "a1 b2 d4") - 0.5).abs() < 1e-9);
    }
}
