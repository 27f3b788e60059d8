//! Keywords: what a torrent is indexed under and a query is split into, and the fixed-size
//! bit keys the tree is built on.
//!
//! A keyword is a run of letters and digits, lower-cased, at least [`MIN_LEN`] bytes and
//! cut to [`WORD_BYTES`] bytes (at a character boundary). An entry's key is the word's
//! UTF-8 bytes padded with zeros to [`WORD_BYTES`], then the first bytes of the torrent's
//! info-hash: keys sort as the words do, so the words sharing a prefix share a subtree
//! (which answers `ubu*`), and one word's torrents are a subtree of their own, split
//! over as many leaves as they fill.

use unicode_normalization::UnicodeNormalization;

/// Bytes of a keyword in a key.
pub const WORD_BYTES: usize = 12;
/// Bytes of a key: the word, then 8 bytes of info-hash.
pub const KEY_BYTES: usize = 20;
/// Bits of a key: a tree is at most this deep.
pub const KEY_BITS: u8 = (KEY_BYTES * 8) as u8;
/// Bits of the word part.
pub const WORD_BITS: u8 = (WORD_BYTES * 8) as u8;
/// Words of fewer characters are not indexed (they match too much to be worth a lookup).
pub const MIN_LEN: usize = 2;

/// The keywords of `text`, in order of first appearance, without repeats. Text is
/// normalised to NFC first: file names from macOS come decomposed (`e` + a combining
/// accent), and would otherwise be split at the accent and never match a typed `é`.
pub fn keywords(text: &str) -> Vec<String> {
    let text: String = text.nfc().collect();
    let mut out: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        let word = truncate(&word.to_lowercase(), WORD_BYTES);
        if word.chars().count() >= MIN_LEN && !out.contains(&word) {
            out.push(word);
        }
    }
    out
}

/// One term of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// A whole keyword.
    Word(String),
    /// Keywords starting with this (the query said `ubu*`).
    Prefix(String),
}

/// The terms of one query argument, normalised the way indexed text is: `Ubuntu-24.04`
/// is the words `ubuntu`, `24` and `04`; `BUN*` is the prefix `bun`, and in `linux-mi*`
/// only the last word is a prefix. A prefix may be a single character.
pub fn query_terms(arg: &str) -> Vec<Term> {
    let (stem, is_prefix) = match arg.strip_suffix('*') {
        Some(stem) => (stem, true),
        None => (arg, false),
    };
    let stem: String = stem.nfc().collect();
    let mut terms: Vec<Term> = keywords(&stem).into_iter().map(Term::Word).collect();
    if is_prefix {
        let last = stem
            .rsplit(|c: char| !c.is_alphanumeric())
            .next()
            .map(|w| truncate(&w.to_lowercase(), WORD_BYTES))
            .unwrap_or_default();
        if let Some(Term::Word(w)) = terms.last() {
            if *w == last {
                terms.pop();
            }
        }
        if !last.is_empty() {
            terms.push(Term::Prefix(last));
        }
    }
    terms
}

/// The key of `word` and (for an entry) `info_hash`: the word's bytes zero-padded to
/// [`WORD_BYTES`], then the info-hash's first bytes (zeros without one).
pub fn key(word: &str, info_hash: Option<&shoal_core::InfoHash>) -> [u8; KEY_BYTES] {
    let mut key = [0; KEY_BYTES];
    let bytes = word.as_bytes();
    let n = bytes.len().min(WORD_BYTES);
    key[..n].copy_from_slice(&bytes[..n]);
    if let Some(hash) = info_hash {
        key[WORD_BYTES..].copy_from_slice(&hash.as_bytes()[..KEY_BYTES - WORD_BYTES]);
    }
    key
}

/// The longest prefix of `s` of at most `max` bytes that ends at a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_split_lowered_deduplicated_and_cut() {
        assert_eq!(
            keywords("Ubuntu-24.04 Desktop (amd64) ubuntu a Überschall_x"),
            ["ubuntu", "24", "04", "desktop", "amd64", "überschall"]
        );
        // Decomposed and composed forms are the same word.
        assert_eq!(keywords("Cafe\u{301} noir"), ["café", "noir"]);
        assert_eq!(keywords("Café"), ["café"]);
        let long = keywords("Supercalifragilisticexpialidocious");
        assert_eq!(long, ["supercalifra"]);
        // A cut never splits a character.
        assert_eq!(truncate("ééééééééé", 16), "éééééééé");
        assert_eq!(key("ab", None)[..3], [b'a', b'b', 0]);
        let word = |w: &str| Term::Word(w.into());
        let prefix = |w: &str| Term::Prefix(w.into());
        assert_eq!(
            query_terms("Ubuntu-24.04"),
            [word("ubuntu"), word("24"), word("04")]
        );
        assert_eq!(query_terms("BUN*"), [prefix("bun")]);
        assert_eq!(query_terms("u*"), [prefix("u")]);
        assert_eq!(query_terms("linux-mi*"), [word("linux"), prefix("mi")]);
        assert_eq!(query_terms("*"), []);
        assert_eq!(query_terms("cafe\u{301}*"), [prefix("café")]);
        assert_eq!(
            query_terms("Supercalifragilistic*"),
            [prefix("supercalifra")]
        );
        let hash = shoal_core::InfoHash([9; 20]);
        assert_eq!(key("ab", Some(&hash))[WORD_BYTES..], [9; 8]);
    }
}
