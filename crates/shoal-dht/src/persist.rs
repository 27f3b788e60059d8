//! The routing table across restarts: our id and the nodes we knew, as a small bencoded
//! file. Saved nodes are not trusted on load: they are asked first when the node starts
//! and enter the table only when they answer.

use crate::id::NodeId;
use crate::krpc::{decode_nodes, encode_nodes, NodeInfo};
use shoal_bencode::{Limits, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedState {
    pub id: NodeId,
    pub nodes: Vec<NodeInfo>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("bencode: {0}")]
    Bencode(#[from] shoal_bencode::DecodeError),
    #[error("not a shoal DHT state file: {0}")]
    Malformed(&'static str),
}

/// Nodes kept in a state file at most (a full table of 160 buckets is 1280).
const MAX_SAVED: usize = 2000;

impl SavedState {
    pub fn encode(&self) -> Vec<u8> {
        let mut root = Value::dict();
        root.insert("id", self.id.0.to_vec());
        let nodes = &self.nodes[..self.nodes.len().min(MAX_SAVED)];
        root.insert("nodes", encode_nodes(nodes, false));
        root.insert("nodes6", encode_nodes(nodes, true));
        root.to_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let doc = shoal_bencode::decode(bytes, Limits::default())?;
        let root = doc.root();
        let dict = root
            .as_dict()
            .ok_or(StateError::Malformed("not a dictionary"))?;
        let id = dict
            .get(b"id")
            .and_then(|n| n.as_bytes())
            .and_then(NodeId::from_slice)
            .ok_or(StateError::Malformed("bad id"))?;
        let mut nodes = dict
            .get(b"nodes")
            .and_then(|n| n.as_bytes())
            .and_then(|n| decode_nodes(n, false))
            .ok_or(StateError::Malformed("bad nodes"))?;
        // A file of an IPv6 node (BEP 32); older files have none.
        if let Some(six) = dict.get(b"nodes6").and_then(|n| n.as_bytes()) {
            nodes.extend(decode_nodes(six, true).ok_or(StateError::Malformed("bad nodes6"))?);
        }
        nodes.truncate(MAX_SAVED);
        Ok(SavedState { id, nodes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let state = SavedState {
            id: NodeId([5; 20]),
            nodes: vec![NodeInfo {
                id: NodeId([6; 20]),
                addr: "127.0.2.9:19001".parse().unwrap(),
            }],
        };
        assert_eq!(SavedState::decode(&state.encode()).unwrap(), state);
        for bad in [
            &b""[..],
            b"de",
            b"d2:id3:abce",
            b"d2:id20:aaaaaaaaaaaaaaaaaaaa5:nodes3:abce",
        ] {
            assert!(SavedState::decode(bad).is_err());
        }
    }
}
