//! Building a tree from an indexer's entries.
//!
//! The indexer holds its whole index, so the tree is computed at once rather than grown
//! by inserts: a node whose entries fit one DHT item is a leaf; any other is internal,
//! records the longest common prefix of its entries' keys, and its entries go to the two
//! children under that prefix by their next bit. Recording the prefix (path compression)
//! matters here: one popular word's torrents share all of the word's 96 bits, and an
//! uncompressed binary trie would spend a node per shared bit, twice, before reaching
//! them. So a tree of n leaves has 2n − 1 nodes, and both children of an internal node
//! hold entries.

use std::collections::BTreeMap;

use shoal_core::metainfo::Metainfo;

use crate::keyword::keywords;
use crate::label::Label;
use crate::node::{Entry, PhtNode};
use crate::similar::similarity_keys;

/// A built tree: every node under its label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    pub nodes: BTreeMap<Label, PhtNode>,
    /// Entries left out: more with one key (one word and info-hash prefix) than a leaf
    /// holds, which only duplicates can do.
    pub dropped: usize,
}

/// Keywords indexed per torrent at most: its name's first, then its files' paths'.
pub const MAX_KEYWORDS: usize = 32;

/// What a torrent is indexed under: one entry per keyword of its name and file paths, and
/// one per similarity key of its name (see [`crate::similar`]).
pub fn entries_of(metainfo: &Metainfo) -> Vec<Entry> {
    let mut words = keywords(&metainfo.info.name);
    for file in metainfo.info.files.iter().filter(|f| !f.attr.padding) {
        for word in keywords(&file.path.join(" ")) {
            if !words.contains(&word) {
                words.push(word);
            }
        }
    }
    words.truncate(MAX_KEYWORDS);
    words.extend(similarity_keys(&metainfo.info.name));
    words
        .iter()
        .map(|w| {
            Entry::new(
                w,
                metainfo.info_hash,
                &metainfo.info.name,
                metainfo.info.total_length,
            )
        })
        .collect()
}

impl Tree {
    pub fn build(mut entries: Vec<Entry>) -> Tree {
        // In key order, which the common-prefix step below relies on.
        entries.sort_by_cached_key(|e| (e.key(), e.clone()));
        entries.dedup();
        let mut tree = Tree::default();
        tree.split(Label::ROOT, entries);
        tree
    }

    fn split(&mut self, label: Label, mut entries: Vec<Entry>) {
        let leaf = PhtNode::Leaf(entries.clone());
        if leaf.fits() {
            self.nodes.insert(label, leaf);
            return;
        }
        // Sorted by key (keyword first, then info-hash): the first and last keys' common
        // prefix is everyone's.
        let (first, last) = (entries[0].key(), entries[entries.len() - 1].key());
        let prefix = Label::common(&first, &last);
        let (Some(zero), Some(one)) = (prefix.child(false), prefix.child(true)) else {
            while !PhtNode::Leaf(entries.clone()).fits() {
                entries.pop();
                self.dropped += 1;
            }
            self.nodes.insert(label, PhtNode::Leaf(entries));
            return;
        };
        self.nodes.insert(label, PhtNode::Internal { prefix });
        let (left, right): (Vec<Entry>, Vec<Entry>) =
            entries.into_iter().partition(|e| zero.covers(&e.key()));
        self.split(zero, left);
        self.split(one, right);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyword::KEY_BITS;
    use shoal_core::InfoHash;

    /// Following prefixes from the root reaches, for every entry, the one leaf holding it.
    fn leaf_of<'a>(tree: &'a Tree, e: &Entry) -> &'a [Entry] {
        let mut at = Label::ROOT;
        loop {
            match &tree.nodes[&at] {
                PhtNode::Leaf(held) => return held,
                PhtNode::Internal { prefix } => {
                    assert!(prefix.covers(&e.key()));
                    let next_bit = Label::of(&e.key(), KEY_BITS).bit(prefix.len());
                    at = prefix.child(next_bit).unwrap();
                }
            }
        }
    }

    #[test]
    fn every_entry_is_reached_from_the_root() {
        let words = [
            "apple", "apricot", "banana", "band", "bandana", "cherry", "zebra",
        ];
        let mut entries = Vec::new();
        for (i, w) in words.iter().enumerate() {
            for t in 0..6u8 {
                let hash = InfoHash([i as u8 * 16 + t; 20]);
                entries.push(Entry::new(w, hash, &format!("{w} torrent {t}"), 1000));
            }
        }
        let tree = Tree::build(entries.clone());
        assert_eq!(tree.dropped, 0);
        for e in &entries {
            assert!(leaf_of(&tree, e).contains(e), "{e:?}");
        }
        let leaves = tree
            .nodes
            .values()
            .filter(|n| matches!(n, PhtNode::Leaf(held) if !held.is_empty()))
            .count();
        // Path compression: 2n − 1 nodes, no empty leaf.
        assert_eq!(tree.nodes.len(), 2 * leaves - 1);
        for node in tree.nodes.values() {
            assert!(node.fits());
        }
    }

    #[test]
    fn one_keywords_torrents_spread_over_leaves() {
        let entries: Vec<Entry> = (0..40u8)
            .map(|i| {
                Entry::new(
                    "linux",
                    InfoHash([i.wrapping_mul(97); 20]),
                    "some linux image",
                    1,
                )
            })
            .collect();
        let tree = Tree::build(entries);
        assert_eq!(tree.dropped, 0);
        let leaves: Vec<usize> = tree
            .nodes
            .values()
            .filter_map(|n| match n {
                PhtNode::Leaf(e) if !e.is_empty() => Some(e.len()),
                _ => None,
            })
            .collect();
        assert_eq!(leaves.iter().sum::<usize>(), 40);
        assert!(leaves.len() >= 3, "{leaves:?}");
    }
}
