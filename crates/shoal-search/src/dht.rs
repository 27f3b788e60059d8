//! The DHT as the home of a tree: its nodes are the indexer's BEP 44 mutable items.

use shoal_dht::driver::{DhtHandle, ItemQuery};
use shoal_dht::{ItemSigner, PutRequest};
use tokio::task::JoinSet;

use crate::build::Tree;
use crate::label::Label;
use crate::node::PhtNode;
use crate::query::{NodeSource, QueryError};

/// An indexer's tree as read from the DHT.
#[derive(Clone)]
pub struct DhtSource {
    pub dht: DhtHandle,
    /// The indexer's public key.
    pub indexer: [u8; 32],
}

impl NodeSource for DhtSource {
    async fn get(&self, label: Label) -> Result<Option<PhtNode>, QueryError> {
        let query = ItemQuery::Mutable {
            key: self.indexer,
            salt: label.salt(),
        };
        let item = self
            .dht
            .get_item(query)
            .await
            .map_err(|_| QueryError::Unavailable)?;
        match item {
            Some(item) => Ok(Some(PhtNode::decode(item.value())?)),
            None => Ok(None),
        }
    }
}

/// How a publish went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    pub nodes: usize,
    /// Nodes no DHT node took.
    pub unstored: usize,
    /// Put operations on DHT nodes that stored one of ours, summed.
    pub copies: usize,
}

/// Puts every node of `tree` as version `seq` (the caller makes it grow from one publish
/// to the next, e.g. the time in seconds), `parallel` at a time. A node no DHT node took
/// (all its queries lost, or dropped by busy nodes' rate limits) is tried once more at
/// the end.
pub async fn publish(
    dht: &DhtHandle,
    signer: &ItemSigner,
    tree: &Tree,
    seq: i64,
    parallel: usize,
) -> Result<Published, QueryError> {
    let mut out = Published {
        nodes: tree.nodes.len(),
        ..Published::default()
    };
    let mut todo: Vec<(Label, PhtNode)> = tree.nodes.iter().map(|(l, n)| (*l, n.clone())).collect();
    for attempt in 0..2 {
        let mut failed = Vec::new();
        let mut puts = JoinSet::new();
        let mut pending = todo.into_iter();
        loop {
            while puts.len() < parallel.max(1) {
                let Some((label, node)) = pending.next() else {
                    break;
                };
                let request = PutRequest::Mutable {
                    signer: signer.clone(),
                    salt: label.salt(),
                    value: node.encode(),
                    seq: Some(seq),
                };
                let dht = dht.clone();
                puts.spawn(async move {
                    let outcome = dht.put_item(request).await;
                    ((label, node), outcome)
                });
            }
            let Some(joined) = puts.join_next().await else {
                break;
            };
            let (key, outcome) = joined.map_err(|_| QueryError::Unavailable)?;
            let outcome = outcome.map_err(|_| QueryError::Unavailable)?;
            out.copies += outcome.stored;
            if outcome.stored == 0 {
                failed.push(key);
            }
        }
        todo = failed;
        if todo.is_empty() {
            break;
        }
        if attempt == 0 {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
    out.unstored = todo.len();
    Ok(out)
}
