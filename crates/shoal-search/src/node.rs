//! A tree node as it is stored: the bencoded value of one BEP 44 mutable item, at most
//! 1000 bytes. An internal node is `{"t": "i", "p": <prefix>}`, where the prefix (its
//! length byte, then its bits) is the longest common prefix of every key below it and its
//! children sit at that prefix plus a 0 and a 1; a leaf is `{"t": "l", "e": [entry…]}`
//! with each entry `[keyword, info-hash, name, size]`.

use shoal_bencode::{Limits, Value};
use shoal_core::InfoHash;
use shoal_dht::item::MAX_VALUE;

use crate::keyword::{key, truncate, KEY_BYTES, WORD_BYTES};
use crate::label::Label;

/// Names are cut to this many bytes in an entry: enough to recognise a torrent, short
/// enough that a leaf holds about ten entries.
pub const MAX_NAME: usize = 48;

/// One torrent under one keyword.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub keyword: String,
    pub info_hash: InfoHash,
    pub name: String,
    pub size: u64,
}

impl Entry {
    /// An entry with the keyword cut to [`WORD_BYTES`] bytes (what a key holds) and the
    /// name to [`MAX_NAME`].
    pub fn new(keyword: &str, info_hash: InfoHash, name: &str, size: u64) -> Entry {
        Entry {
            keyword: truncate(keyword, WORD_BYTES),
            info_hash,
            name: truncate(name, MAX_NAME),
            size,
        }
    }

    /// Where the entry sits in the tree: its keyword, then its info-hash, so that one
    /// keyword's torrents spread over as many leaves as they need.
    pub fn key(&self) -> [u8; KEY_BYTES] {
        key(&self.keyword, Some(&self.info_hash))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhtNode {
    /// Every key below starts with `prefix`; the children are `prefix`+0 and `prefix`+1.
    Internal {
        prefix: Label,
    },
    Leaf(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("not a tree node: {0}")]
    Malformed(&'static str),
}

const LIMITS: Limits = Limits {
    max_depth: 4,
    max_tokens: 1024,
};

impl PhtNode {
    pub fn encode(&self) -> Vec<u8> {
        let mut d = Value::dict();
        match self {
            PhtNode::Internal { prefix } => {
                d.insert("t", "i");
                d.insert("p", prefix.to_bytes());
            }
            PhtNode::Leaf(entries) => {
                d.insert("t", "l");
                let list = entries.iter().map(|e| {
                    Value::List(vec![
                        e.keyword.as_str().into(),
                        e.info_hash.as_bytes().to_vec().into(),
                        e.name.as_str().into(),
                        Value::Int(i64::try_from(e.size).unwrap_or(i64::MAX)),
                    ])
                });
                d.insert("e", Value::List(list.collect()));
            }
        }
        d.to_bytes()
    }

    /// Whether the node fits one DHT item.
    pub fn fits(&self) -> bool {
        self.encode().len() <= MAX_VALUE
    }

    /// Reads a node; entries that are not well formed are skipped, not fatal (a reader
    /// of a newer format still gets what it understands).
    pub fn decode(bytes: &[u8]) -> Result<PhtNode, NodeError> {
        let doc = shoal_bencode::decode(bytes, LIMITS)
            .map_err(|_| NodeError::Malformed("not bencode"))?;
        let root = doc.root();
        let d = root
            .as_dict()
            .ok_or(NodeError::Malformed("not a dictionary"))?;
        match d.get(b"t").and_then(|n| n.as_bytes()) {
            Some(b"i") => d
                .get(b"p")
                .and_then(|n| n.as_bytes())
                .and_then(Label::from_bytes)
                .map(|prefix| PhtNode::Internal { prefix })
                .ok_or(NodeError::Malformed("an internal node without its prefix")),
            Some(b"l") => {
                let list = d
                    .get(b"e")
                    .and_then(|n| n.as_list())
                    .ok_or(NodeError::Malformed("a leaf without entries"))?;
                let entries = list
                    .iter()
                    .filter_map(|e| {
                        let e = e.as_list()?;
                        let mut it = e.iter();
                        let keyword = it.next()?.as_str()?.to_owned();
                        let hash: [u8; 20] = it.next()?.as_bytes()?.try_into().ok()?;
                        let name = String::from_utf8_lossy(it.next()?.as_bytes()?).into_owned();
                        let size = u64::try_from(it.next()?.as_int()?).ok()?;
                        Some(Entry {
                            keyword,
                            info_hash: InfoHash(hash),
                            name,
                            size,
                        })
                    })
                    .collect();
                Ok(PhtNode::Leaf(entries))
            }
            _ => Err(NodeError::Malformed("unknown node type")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_round_trip_and_fit() {
        let e = Entry::new("ubuntu", InfoHash([7; 20]), &"n".repeat(100), 1 << 40);
        assert_eq!(e.name.len(), MAX_NAME);
        let long = Entry::new("supercalifragilistic", InfoHash([1; 20]), "x", 1);
        assert_eq!(
            long.keyword, "supercalifra",
            "a keyword is what its key holds"
        );
        let leaf = PhtNode::Leaf(vec![e.clone(); 3]);
        assert_eq!(PhtNode::decode(&leaf.encode()), Ok(leaf.clone()));
        let internal = PhtNode::Internal {
            prefix: Label::of(&e.key(), 70),
        };
        assert_eq!(PhtNode::decode(&internal.encode()), Ok(internal));
        assert!(PhtNode::decode(b"d1:t1:ie").is_err());
        assert!(leaf.fits());
        assert!(!PhtNode::Leaf(vec![e; 12]).fits());
        assert!(PhtNode::decode(b"d1:t1:xe").is_err());
        assert!(PhtNode::decode(b"i3e").is_err());
        // A malformed entry is skipped.
        let odd = b"d1:elli5eee1:t1:le";
        assert_eq!(PhtNode::decode(odd), Ok(PhtNode::Leaf(Vec::new())));
    }

    proptest::proptest! {
        /// Item values come from the DHT, signed by the indexer but otherwise anything:
        /// decoding them never panics, and a decoded node encodes back to what decodes
        /// the same.
        #[test]
        fn arbitrary_values_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            if let Ok(node) = PhtNode::decode(&bytes) {
                proptest::prop_assert_eq!(PhtNode::decode(&node.encode()), Ok(node));
            }
            let _ = Label::from_bytes(&bytes);
        }
    }
}
