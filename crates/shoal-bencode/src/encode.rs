//! The owned value tree and its canonical encoding.

use std::collections::BTreeMap;

/// An owned bencode value. Dictionaries are `BTreeMap`s keyed by raw bytes, so encoding
/// is canonical (keys sorted as byte strings) by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
    /// Bytes that are already bencoded and are written out unchanged, e.g. an `info`
    /// dictionary whose hash must not change. The caller vouches that they are valid.
    Raw(Vec<u8>),
}

impl Value {
    /// An empty dictionary, the usual starting point.
    pub fn dict() -> Self {
        Value::Dict(BTreeMap::new())
    }

    /// Inserts into a dictionary; does nothing useful (and says so) on other kinds.
    ///
    /// # Panics
    /// If `self` is not a dictionary: that is a programming error, not bad input.
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Value>) {
        match self {
            Value::Dict(map) => {
                map.insert(key.into(), value.into());
            }
            _ => panic!("Value::insert on a non-dictionary"),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Value::Bytes(b) => encode_bytes(b, out),
            Value::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode(out);
                }
                out.push(b'e');
            }
            Value::Dict(map) => {
                out.push(b'd');
                for (k, v) in map {
                    encode_bytes(k, out);
                    v.encode(out);
                }
                out.push(b'e');
            }
            Value::Raw(raw) => out.extend_from_slice(raw),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Bytes(s.as_bytes().to_vec())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Bytes(s.into_bytes())
    }
}
impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value::Bytes(b)
    }
}
impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Self {
        Value::Bytes(b.to_vec())
    }
}
impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Self {
        Value::List(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, Limits};
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..12),
                    inner,
                    0..8
                )
                .prop_map(Value::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn decode_of_encode_is_identity(v in value()) {
            let bytes = v.to_bytes();
            let doc = decode(&bytes, Limits::default()).unwrap();
            prop_assert_eq!(doc.root().to_value(), v);
            // And re-encoding canonical input reproduces it byte for byte.
            prop_assert_eq!(doc.root().to_value().to_bytes(), bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(doc) = decode(&bytes, Limits::default()) {
                let _ = doc.root().to_value();
            }
        }
    }

    #[test]
    fn encodes_canonically() {
        let mut d = Value::dict();
        d.insert("b", 1i64);
        d.insert("a", Value::List(vec!["x".into(), Value::Int(-3)]));
        d.insert("c", Value::Raw(b"d1:zi0ee".to_vec()));
        assert_eq!(d.to_bytes(), b"d1:al1:xi-3ee1:bi1e1:cd1:zi0eee");
    }
}
