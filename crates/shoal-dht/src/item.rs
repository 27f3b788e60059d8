//! BEP 44 items: small values stored in the DHT under a 20-byte target.
//!
//! An *immutable* item is stored under the SHA-1 of its bencoded value, so anyone can
//! check what they got back. A *mutable* item is stored under SHA-1(public key ‖ salt)
//! and carries an ed25519 signature over its salt, sequence number and value; only the
//! key's owner can make a newer version, and storing nodes never go back to an older
//! one. Values are kept as the verbatim bencoded bytes they arrived as: decoding and
//! re-encoding is not always the identity, and the hash and the signature are over these
//! bytes.

use crate::NodeId;
use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
use ed25519_dalek::{Signature, VerifyingKey};
use sha1::{Digest, Sha1};
use sha2::Sha512;
use shoal_bencode::Limits;

/// Longest bencoded value a node stores (BEP 44: storing more is not safe to assume).
pub const MAX_VALUE: usize = 1000;
/// Longest salt (BEP 44).
pub const MAX_SALT: usize = 64;

/// What an item's value may nest: as deep as it can inside a KRPC packet (whose decoder
/// allows 32 levels, 3 of them taken by the message around the value).
const VALUE_LIMITS: Limits = Limits {
    max_depth: 29,
    max_tokens: 1024,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    #[error("the value is {0} bytes bencoded; the DHT stores at most {MAX_VALUE}")]
    ValueTooBig(usize),
    #[error("the salt is {0} bytes; at most {MAX_SALT} are allowed")]
    SaltTooBig(usize),
    #[error("the value is not one complete bencoded value")]
    NotBencode,
    #[error("sequence numbers must not be negative")]
    NegativeSeq,
    #[error("a secret key is 32 bytes (a seed) or 64 bytes (libtorrent's expanded form), not {0}")]
    KeyLength(usize),
}

/// An item as nodes store it and lookups return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Immutable { value: Vec<u8> },
    Mutable(MutableItem),
}

/// A signed, versioned item.
#[derive(Clone, PartialEq, Eq)]
pub struct MutableItem {
    pub key: [u8; 32],
    /// Part of the target and of what is signed, but never sent back by `get`: a reader
    /// must know it to find the item at all.
    pub salt: Vec<u8>,
    pub seq: i64,
    /// The bencoded value, verbatim.
    pub value: Vec<u8>,
    pub signature: [u8; 64],
}

impl std::fmt::Debug for MutableItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MutableItem")
            .field("key", &hex(&self.key))
            .field("salt", &String::from_utf8_lossy(&self.salt))
            .field("seq", &self.seq)
            .field("value", &String::from_utf8_lossy(&self.value))
            .finish_non_exhaustive()
    }
}

impl Item {
    /// An immutable item for a bencoded `value`, checked to be one bencoded value that a
    /// node will store.
    pub fn immutable(value: Vec<u8>) -> Result<Item, ItemError> {
        check_value(&value)?;
        Ok(Item::Immutable { value })
    }

    /// Where the item is stored.
    pub fn target(&self) -> NodeId {
        match self {
            Item::Immutable { value } => immutable_target(value),
            Item::Mutable(m) => mutable_target(&m.key, &m.salt),
        }
    }

    /// The bencoded value.
    pub fn value(&self) -> &[u8] {
        match self {
            Item::Immutable { value } => value,
            Item::Mutable(m) => &m.value,
        }
    }

    /// The sequence number of a mutable item.
    pub fn seq(&self) -> Option<i64> {
        match self {
            Item::Immutable { .. } => None,
            Item::Mutable(m) => Some(m.seq),
        }
    }
}

/// The target of an immutable item: SHA-1 of its bencoded value.
pub fn immutable_target(value: &[u8]) -> NodeId {
    NodeId(Sha1::digest(value).into())
}

/// The target of a mutable item: SHA-1 of the public key followed by the salt.
pub fn mutable_target(key: &[u8; 32], salt: &[u8]) -> NodeId {
    let mut h = Sha1::new();
    h.update(key);
    h.update(salt);
    NodeId(h.finalize().into())
}

/// What a mutable item's signature covers (BEP 44): `4:salt<len>:<salt>` when the salt
/// is not empty, then `3:seqi<seq>e1:v` and the bencoded value. Built by hand, not by
/// an encoder, so that no parser quirk can move bytes between the fields.
pub fn signed_bytes(salt: &[u8], seq: i64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(salt.len() + value.len() + 40);
    if !salt.is_empty() {
        out.extend_from_slice(format!("4:salt{}:", salt.len()).as_bytes());
        out.extend_from_slice(salt);
    }
    out.extend_from_slice(format!("3:seqi{seq}e1:v").as_bytes());
    out.extend_from_slice(value);
    out
}

impl MutableItem {
    /// Whether the signature is the key's over this salt, sequence number and value.
    pub fn verify(&self) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.key) else {
            return false;
        };
        let signature = Signature::from_bytes(&self.signature);
        let message = signed_bytes(&self.salt, self.seq, &self.value);
        key.verify_strict(&message, &signature).is_ok()
    }

    /// Checks what a storing node checks before the signature: sizes and the sequence
    /// number's sign.
    pub fn check(&self) -> Result<(), ItemError> {
        if self.salt.len() > MAX_SALT {
            return Err(ItemError::SaltTooBig(self.salt.len()));
        }
        if self.seq < 0 {
            return Err(ItemError::NegativeSeq);
        }
        check_value(&self.value)
    }
}

fn check_value(value: &[u8]) -> Result<(), ItemError> {
    if value.len() > MAX_VALUE {
        return Err(ItemError::ValueTooBig(value.len()));
    }
    match shoal_bencode::decode(value, VALUE_LIMITS) {
        Ok(_) => Ok(()),
        Err(_) => Err(ItemError::NotBencode),
    }
}

/// An ed25519 key pair that signs mutable items.
pub struct ItemSigner {
    secret: ExpandedSecretKey,
    public: VerifyingKey,
}

impl Clone for ItemSigner {
    fn clone(&self) -> Self {
        ItemSigner {
            secret: ExpandedSecretKey {
                scalar: self.secret.scalar,
                hash_prefix: self.secret.hash_prefix,
            },
            public: self.public,
        }
    }
}

impl std::fmt::Debug for ItemSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemSigner")
            .field("public", &hex(self.public.as_bytes()))
            .finish_non_exhaustive()
    }
}

impl ItemSigner {
    /// A key from its secret: a 32-byte seed (RFC 8032's private key, what `shoal dht
    /// keygen` writes) or the 64-byte expanded form libtorrent's `ed25519_create_keypair`
    /// gives, so keys can be shared with libtorrent-based programs.
    pub fn from_secret(secret: &[u8]) -> Result<ItemSigner, ItemError> {
        let secret = match secret.len() {
            32 => {
                let seed: [u8; 32] = secret.try_into().expect("length checked");
                ExpandedSecretKey::from(&seed)
            }
            64 => ExpandedSecretKey::from_bytes(secret.try_into().expect("length checked")),
            n => return Err(ItemError::KeyLength(n)),
        };
        let public = VerifyingKey::from(&secret);
        Ok(ItemSigner { secret, public })
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.public.to_bytes()
    }

    /// Signs `value` (bencoded) as version `seq` under `salt`.
    pub fn sign(&self, salt: &[u8], seq: i64, value: Vec<u8>) -> Result<MutableItem, ItemError> {
        let item = MutableItem {
            key: self.public_key(),
            salt: salt.to_vec(),
            seq,
            signature: [0; 64],
            value,
        };
        item.check()?;
        let message = signed_bytes(salt, seq, &item.value);
        let signature = raw_sign::<Sha512>(&self.secret, &message, &self.public).to_bytes();
        Ok(MutableItem { signature, ..item })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        shoal_core::hex::decode(s).expect("test vector is hex")
    }

    const PUBLIC: &str = "77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548";
    const SECRET: &str = "e06d3183d14159228433ed599221b80bd0a5ce8352e4bdf0262f76786ef1c74d\
                          b7e7a9fea2c0eb269d61e3b38e450a22e754941ac78479d6c54e1faf6037881d";

    /// BEP 44's test vectors 1 and 2: the same signatures and targets, from the BEP's
    /// 64-byte (libtorrent-form) secret key.
    #[test]
    fn beps_mutable_test_vectors() {
        let signer = ItemSigner::from_secret(&unhex(SECRET)).unwrap();
        assert_eq!(signer.public_key().to_vec(), unhex(PUBLIC));
        for (salt, target, signature) in [
            (
                &b""[..],
                "4a533d47ec9c7d95b1ad75f576cffc641853b750",
                "305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff\
                 1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01",
            ),
            (
                b"foobar",
                "411eba73b6f087ca51a3795d9c8c938d365e32c1",
                "6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17d\
                 df9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08",
            ),
        ] {
            let item = signer.sign(salt, 1, b"12:Hello World!".to_vec()).unwrap();
            assert_eq!(item.signature.to_vec(), unhex(signature));
            assert!(item.verify());
            assert_eq!(Item::Mutable(item).target().0.to_vec(), unhex(target));
        }
        let expected = b"4:salt6:foobar3:seqi1e1:v12:Hello World!";
        assert_eq!(signed_bytes(b"foobar", 1, b"12:Hello World!"), expected);
    }

    /// BEP 44's test vector 3.
    #[test]
    fn beps_immutable_test_vector() {
        let item = Item::immutable(b"12:Hello World!".to_vec()).unwrap();
        assert_eq!(
            item.target().0.to_vec(),
            unhex("e5f96f6f38320f0f33959cb4d3d656452117aadb")
        );
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let signer = ItemSigner::from_secret(&[7; 32]).unwrap();
        let item = signer.sign(b"s", 5, b"3:abc".to_vec()).unwrap();
        assert!(item.verify());
        for bad in [
            MutableItem {
                seq: 6,
                ..item.clone()
            },
            MutableItem {
                salt: b"t".to_vec(),
                ..item.clone()
            },
            MutableItem {
                value: b"3:abd".to_vec(),
                ..item.clone()
            },
            MutableItem {
                key: ItemSigner::from_secret(&[8; 32]).unwrap().public_key(),
                ..item.clone()
            },
        ] {
            assert!(!bad.verify(), "{bad:?}");
        }
    }

    #[test]
    fn bad_values_and_keys_are_refused() {
        assert_eq!(Item::immutable(vec![b'x'; 3]), Err(ItemError::NotBencode));
        assert_eq!(
            Item::immutable(b"3:abcx".to_vec()),
            Err(ItemError::NotBencode)
        );
        let big = format!("1001:{}", "x".repeat(1001));
        assert!(matches!(
            Item::immutable(big.into_bytes()),
            Err(ItemError::ValueTooBig(_))
        ));
        let signer = ItemSigner::from_secret(&[1; 32]).unwrap();
        assert!(matches!(
            signer.sign(&[0; 65], 1, b"i1e".to_vec()),
            Err(ItemError::SaltTooBig(65))
        ));
        assert_eq!(
            signer.sign(b"", -1, b"i1e".to_vec()).unwrap_err(),
            ItemError::NegativeSeq
        );
        assert!(matches!(
            ItemSigner::from_secret(&[0; 31]),
            Err(ItemError::KeyLength(31))
        ));
    }
}
