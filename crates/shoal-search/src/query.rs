//! Reading a tree: where its nodes come from is a [`NodeSource`] (the DHT, or a map in
//! tests), so the same lookups run against both.
//!
//! A word's torrents are the subtree under its [`WORD_BITS`]-bit label, a prefix's
//! (`ubu*`) the subtree under the prefix's bits. Both are found by descending from the
//! root: an internal node's prefix either leaves the target (nothing there), covers it
//! (the whole node is the answer) or is covered by it (go on to the child the target's
//! next bit names). The subtree is then walked level by level, each level's gets at
//! once. A popular word costs about log2(leaves) sequential gets, then its leaves.

use std::collections::BTreeSet;
use std::future::Future;

use tokio::task::JoinSet;

use crate::keyword::{key, WORD_BITS};
use crate::label::Label;
use crate::node::{Entry, NodeError, PhtNode};

/// Where a tree's nodes are read from.
pub trait NodeSource: Clone + Send + Sync + 'static {
    /// The node under `label`; `Ok(None)` when there is none.
    fn get(&self, label: Label)
        -> impl Future<Output = Result<Option<PhtNode>, QueryError>> + Send;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the indexer's tree has no root: nothing is published under that key")]
    NoTree,
    #[error("a tree node is unreadable: {0}")]
    BadNode(#[from] NodeError),
    #[error("the DHT is unavailable")]
    Unavailable,
}

/// Nodes one prefix query visits at most: a walk of a huge subtree is cut short.
pub const MAX_WALK: usize = 256;
/// Gets a walk keeps going at once (each is a DHT lookup of its own).
const MAX_GETS_AT_ONCE: usize = 32;

/// What a lookup found, and what it cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    pub entries: Vec<Entry>,
    pub gets: usize,
    /// The walk stopped at [`MAX_WALK`] nodes.
    pub truncated: bool,
    /// Tree nodes the source did not have (expired, never stored, or unreachable): what
    /// they held is missing from `entries`.
    pub missing: usize,
}

/// The entries under `word` exactly.
pub async fn lookup<S: NodeSource>(source: &S, word: &str) -> Result<Found, QueryError> {
    let mut found = under(source, word, WORD_BITS).await?;
    found.entries.retain(|e| e.keyword == word);
    Ok(found)
}

/// The entries whose keyword starts with `prefix`.
pub async fn prefix<S: NodeSource>(source: &S, prefix: &str) -> Result<Found, QueryError> {
    let bits = (prefix.len() * 8).min(usize::from(WORD_BITS)) as u8;
    let mut found = under(source, prefix, bits).await?;
    found.entries.retain(|e| e.keyword.starts_with(prefix));
    Ok(found)
}

/// Every entry in the subtree under the first `bits` bits of `word`'s key.
async fn under<S: NodeSource>(source: &S, word: &str, bits: u8) -> Result<Found, QueryError> {
    let target = Label::of(&key(word, None), bits);
    let mut found = Found::default();
    let mut at = Label::ROOT;
    loop {
        let node = source.get(at).await?;
        found.gets += 1;
        match node {
            None if at.is_empty() => return Err(QueryError::NoTree),
            // A node that expired or was never put: what it held is missing.
            None => {
                found.missing += 1;
                return Ok(found);
            }
            Some(PhtNode::Leaf(entries)) => {
                found.entries = entries;
                return Ok(found);
            }
            // See `walk`: a prefix must extend the node's own label, or the descent
            // could go round in circles.
            Some(PhtNode::Internal { prefix }) if !prefix.extends(&at) => return Ok(found),
            Some(PhtNode::Internal { prefix }) => {
                if !prefix.agrees_with(&target) {
                    return Ok(found);
                }
                if prefix.len() >= target.len() {
                    walk(source, prefix, &mut found).await?;
                    return Ok(found);
                }
                at = prefix
                    .child(target.bit(prefix.len()))
                    .expect("shorter than the target");
            }
        }
    }
}

/// Every leaf under the internal node whose prefix is `prefix`, a level at a time.
async fn walk<S: NodeSource>(
    source: &S,
    prefix: Label,
    found: &mut Found,
) -> Result<(), QueryError> {
    let mut level: Vec<Label> = [prefix.child(false), prefix.child(true)]
        .into_iter()
        .flatten()
        .collect();
    let mut visited = 0;
    while !level.is_empty() {
        if visited + level.len() > MAX_WALK {
            found.truncated = true;
            return Ok(());
        }
        visited += level.len();
        let mut gets = JoinSet::new();
        let mut waiting = std::mem::take(&mut level).into_iter();
        let mut next = BTreeSet::new();
        loop {
            while gets.len() < MAX_GETS_AT_ONCE {
                let Some(label) = waiting.next() else { break };
                let source = source.clone();
                gets.spawn(async move { (label, source.get(label).await) });
            }
            let Some(joined) = gets.join_next().await else {
                break;
            };
            let Ok((label, node)) = joined else {
                found.missing += 1;
                continue;
            };
            found.gets += 1;
            match node? {
                Some(PhtNode::Leaf(entries)) => found.entries.extend(entries),
                Some(PhtNode::Internal { prefix }) if prefix.extends(&label) => {
                    next.extend(
                        [prefix.child(false), prefix.child(true)]
                            .into_iter()
                            .flatten(),
                    );
                }
                // An internal node whose prefix does not extend its own label would lead
                // back up the tree: the indexer's tree is broken, skip it.
                Some(PhtNode::Internal { .. }) => {}
                // A child that expired or was never put: its entries are missing, not fatal.
                None => found.missing += 1,
            }
        }
        level = next.into_iter().collect();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::Tree;
    use crate::keyword::keywords;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use shoal_core::InfoHash;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    #[derive(Clone)]
    struct MapSource(Arc<BTreeMap<Label, PhtNode>>);

    impl NodeSource for MapSource {
        async fn get(&self, label: Label) -> Result<Option<PhtNode>, QueryError> {
            Ok(self.0.get(&label).cloned())
        }
    }

    /// 400 torrents named from a vocabulary that shares many prefixes.
    fn index() -> (Vec<Entry>, MapSource) {
        let vocabulary = [
            "ubuntu",
            "ubuntu2",
            "ubiquity",
            "debian",
            "debug",
            "desktop",
            "server",
            "serve",
            "linux",
            "linuxmint",
            "lin",
            "amd64",
            "arm64",
            "iso",
            "isolinux",
            "mint",
            "fedora",
            "feather",
            "kernel",
            "kernels",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut entries = Vec::new();
        for t in 0..400u32 {
            let words: Vec<&str> = vocabulary.choose_multiple(&mut rng, 3).copied().collect();
            let name = format!("{} {}", words.join(" "), rng.gen::<u16>());
            let hash: [u8; 20] = rng.gen();
            for word in keywords(&name) {
                entries.push(Entry::new(&word, InfoHash(hash), &name, u64::from(t)));
            }
        }
        let tree = Tree::build(entries.clone());
        let kept: BTreeMap<Label, PhtNode> = tree.nodes;
        (entries, MapSource(Arc::new(kept)))
    }

    fn hashes(entries: &[Entry]) -> BTreeSet<InfoHash> {
        entries.iter().map(|e| e.info_hash).collect()
    }

    #[tokio::test]
    async fn every_keyword_is_found_with_few_gets() {
        let (entries, source) = index();
        let words: BTreeSet<&str> = entries.iter().map(|e| e.keyword.as_str()).collect();
        for word in words {
            let found = lookup(&source, word).await.unwrap();
            let expected: Vec<Entry> = entries
                .iter()
                .filter(|e| e.keyword == word)
                .cloned()
                .collect();
            assert_eq!(hashes(&found.entries), hashes(&expected), "{word}");
            // The descent (about log2 of the tree's leaves), then the word's subtree.
            let leaves = expected.len().div_ceil(5);
            assert!(found.gets <= 12 + 2 * leaves, "{word}: {} gets", found.gets);
        }
        let none = lookup(&source, "windows").await.unwrap();
        assert!(none.entries.is_empty());
        assert_eq!(none.missing, 0, "absent from a whole tree: nothing missing");
    }

    /// A node the DHT no longer has loses what it held, and the answer says so (a
    /// reader must not take it for the indexer's complete answer).
    #[tokio::test]
    async fn missing_nodes_are_counted() {
        let (_, source) = index();
        let mut nodes = (*source.0).clone();
        let (leaf, word) = nodes
            .iter()
            .find_map(|(label, node)| match node {
                PhtNode::Leaf(entries) if !label.is_empty() => {
                    Some((*label, entries[0].keyword.clone()))
                }
                _ => None,
            })
            .expect("a leaf");
        let whole = lookup(&source, &word).await.unwrap();
        assert_eq!(whole.missing, 0);
        nodes.remove(&leaf);
        let holed = MapSource(Arc::new(nodes));
        let found = lookup(&holed, &word).await.unwrap();
        assert_eq!(found.missing, 1, "{word}");
        assert!(found.entries.len() < whole.entries.len());
    }

    #[tokio::test]
    async fn prefixes_find_every_word_under_them() {
        let (entries, source) = index();
        for p in ["ub", "deb", "linux", "ker", "s", "zz"] {
            let found = prefix(&source, p).await.unwrap();
            let words: BTreeSet<&str> = found.entries.iter().map(|e| e.keyword.as_str()).collect();
            let expected: BTreeSet<&str> = entries
                .iter()
                .filter(|e| e.keyword.starts_with(p))
                .map(|e| e.keyword.as_str())
                .collect();
            assert_eq!(
                words, expected,
                "{p}: {} gets, truncated {}",
                found.gets, found.truncated
            );
            assert!(!found.truncated);
        }
    }

    /// An indexer's broken (or hostile) tree cannot make a lookup go round in circles:
    /// here every node claims the root's prefix, so every child leads back up.
    #[tokio::test]
    async fn a_tree_that_points_back_up_ends_the_lookup() {
        let looping = PhtNode::Internal {
            prefix: Label::ROOT,
        };
        let mut nodes = BTreeMap::new();
        nodes.insert(Label::ROOT, looping.clone());
        for bit in [false, true] {
            nodes.insert(Label::ROOT.child(bit).unwrap(), looping.clone());
        }
        let source = MapSource(Arc::new(nodes));
        let found = lookup(&source, "ubuntu").await.unwrap();
        assert!(found.entries.is_empty());
        assert!(found.gets <= 2, "{found:?}");
        let all = prefix(&source, "").await.unwrap();
        assert!(all.entries.is_empty() && all.gets <= 3, "{all:?}");
    }

    #[tokio::test]
    async fn no_tree_is_an_error() {
        let empty = MapSource(Arc::new(BTreeMap::new()));
        assert_eq!(lookup(&empty, "x1").await, Err(QueryError::NoTree));
    }
}
