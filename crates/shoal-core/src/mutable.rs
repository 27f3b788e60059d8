//! Torrents that change (BEP 46): a publisher keeps the current info-hash in a mutable DHT
//! item (BEP 44) under its public key and a salt, as `{"ih": <20 bytes>}`, and shares a
//! link to the key instead of to one version: `magnet:?xs=urn:btpk:<key>&s=<salt>`, both
//! in hex. A downloader looks the item up, checks its signature, and fetches that
//! info-hash like any magnet link.

use std::fmt;
use std::str::FromStr;

use shoal_bencode::{decode, Limits, Value};

use crate::{InfoHash, Magnet, MagnetError};

/// A BEP 46 link: a publisher's key and salt, and the rest of the link (`dn`, `tr`,
/// `x.pe`, …), which the resolved magnet keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutableLink {
    pub public_key: [u8; 32],
    pub salt: Vec<u8>,
    /// The link as given, for [`resolved`](Self::resolved).
    link: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MutableLinkError {
    #[error("not a BEP 46 link (it needs 'xs=urn:btpk:' and no 'xt=')")]
    NotMutable,
    #[error("'xs=urn:btpk:' needs a public key of 64 hex digits")]
    BadKey,
    #[error("'s=' needs a salt in hex, at most 64 bytes")]
    BadSalt,
    #[error(transparent)]
    Magnet(#[from] MagnetError),
}

/// The longest salt BEP 44 allows.
const MAX_SALT: usize = 64;

impl FromStr for MutableLink {
    type Err = MutableLinkError;

    fn from_str(link: &str) -> Result<Self, MutableLinkError> {
        let query = link
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("magnet:?"))
            .map(|_| &link[8..])
            .ok_or(MagnetError::NotMagnet)?;
        let (mut key, mut salt) = (None, Vec::new());
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "xt" => return Err(MutableLinkError::NotMutable),
                "xs" => {
                    if let Some(hex) = value.strip_prefix("urn:btpk:") {
                        key = Some(crate::hex::decode_array(hex).ok_or(MutableLinkError::BadKey)?);
                    }
                }
                "s" => {
                    salt = crate::hex::decode(value)
                        .filter(|s| s.len() <= MAX_SALT)
                        .ok_or(MutableLinkError::BadSalt)?;
                }
                _ => {}
            }
        }
        Ok(MutableLink {
            public_key: key.ok_or(MutableLinkError::NotMutable)?,
            salt,
            link: link.to_owned(),
        })
    }
}

impl MutableLink {
    /// A link to `public_key`'s item under `salt`.
    pub fn new(public_key: [u8; 32], salt: &[u8]) -> Self {
        let mut link = format!("magnet:?xs=urn:btpk:{}", crate::hex::encode(&public_key));
        if !salt.is_empty() {
            link.push_str(&format!("&s={}", crate::hex::encode(salt)));
        }
        MutableLink {
            public_key,
            salt: salt.to_vec(),
            link,
        }
    }

    /// The magnet link of the version the item names: this link with `info_hash` as its
    /// `xt`, keeping its name, trackers and peers.
    pub fn resolved(&self, info_hash: InfoHash) -> Result<Magnet, MagnetError> {
        format!("{}&xt=urn:btih:{}", self.link, info_hash.to_hex()).parse()
    }
}

impl fmt::Display for MutableLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.link)
    }
}

/// The item value that names `info_hash`: `{"ih": <20 bytes>}`.
pub fn item_value(info_hash: InfoHash) -> Vec<u8> {
    let mut dict = Value::dict();
    dict.insert("ih", info_hash.0.to_vec());
    dict.to_bytes()
}

/// The info-hash an item value names, if it is a dictionary with a 20-byte `ih`.
pub fn info_hash_in(value: &[u8]) -> Option<InfoHash> {
    let doc = decode(value, Limits::default()).ok()?;
    let ih = doc.root().as_dict()?.get(b"ih")?.as_bytes()?;
    Some(InfoHash(ih.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "8543d3e6115f0f98c944077a4493dcd543e49c739fd998550a1f614ab36ed63e";

    #[test]
    fn links() {
        let link: MutableLink =
            format!("magnet:?xs=urn:btpk:{KEY}&s=6162&dn=Dumps&tr=http%3A%2F%2Ft%2Fa")
                .parse()
                .unwrap();
        assert_eq!(crate::hex::encode(&link.public_key), KEY);
        assert_eq!(link.salt, b"ab");
        let hash = InfoHash([7; 20]);
        let magnet = link.resolved(hash).unwrap();
        assert_eq!(magnet.info_hash, hash);
        assert_eq!(magnet.name.as_deref(), Some("Dumps"));
        assert_eq!(magnet.trackers, ["http://t/a"]);

        let made = MutableLink::new(link.public_key, b"ab");
        assert_eq!(
            made.to_string(),
            format!("magnet:?xs=urn:btpk:{KEY}&s=6162")
        );
        assert_eq!(made.to_string().parse::<MutableLink>().unwrap().salt, b"ab");
        assert_eq!(
            MutableLink::new(link.public_key, b"").to_string(),
            format!("magnet:?xs=urn:btpk:{KEY}")
        );

        let not = |s: &str| s.parse::<MutableLink>().unwrap_err();
        assert_eq!(not("magnet:?dn=x"), MutableLinkError::NotMutable);
        assert_eq!(
            not(&format!(
                "magnet:?xt=urn:btih:{}&xs=urn:btpk:{KEY}",
                "a".repeat(40)
            )),
            MutableLinkError::NotMutable
        );
        assert_eq!(not("magnet:?xs=urn:btpk:abcd"), MutableLinkError::BadKey);
        assert_eq!(
            not(&format!("magnet:?xs=urn:btpk:{KEY}&s=zz")),
            MutableLinkError::BadSalt
        );
        let long = "ab".repeat(65);
        assert_eq!(
            not(&format!("magnet:?xs=urn:btpk:{KEY}&s={long}")),
            MutableLinkError::BadSalt
        );
        assert_eq!(
            not("http://x"),
            MutableLinkError::Magnet(MagnetError::NotMagnet)
        );
    }

    #[test]
    fn item_values() {
        let hash = InfoHash([9; 20]);
        let value = item_value(hash);
        assert_eq!(&value[..8], b"d2:ih20:");
        assert_eq!(info_hash_in(&value), Some(hash));
        assert_eq!(info_hash_in(b"d2:ih3:abce"), None);
        assert_eq!(info_hash_in(b"5:hello"), None);
        assert_eq!(info_hash_in(b"d2:ih20:"), None);
    }
}
