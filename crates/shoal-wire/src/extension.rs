//! The BEP 10 extension handshake: a bencoded dictionary sent as extended message id 0.
//!
//! Its `m` dictionary maps extension names (`ut_metadata`, `ut_pex`, …) to the message ids
//! the *sender* wants to receive them under; the other keys advertise the client name,
//! request queue depth, listen port and so on. Everything here is peer-controlled, so the
//! decoder runs under tight bencode limits and clamps or drops values that make no sense
//! rather than letting them reach the torrent (a `reqq` of 2^31 must not size a queue).

use crate::WireError;
use bytes::Bytes;
use shoal_bencode::{Limits, Value};
use std::collections::BTreeMap;

/// The extended message id of the handshake itself.
pub const EXTENDED_HANDSHAKE_ID: u8 = 0;

/// BEP 21 (partial seeds): the handshake key, and the name of the message (libtorrent's)
/// that says so later, when a download completes on a live connection.
pub const UPLOAD_ONLY: &str = "upload_only";
/// The id we take the `upload_only` message under.
pub const OUR_UPLOAD_ONLY_ID: u8 = 3;

/// Upper bound for a peer's advertised request queue (`reqq`); libtorrent's default is 500.
pub const MAX_REQQ: u32 = 2000;

/// A real handshake has a handful of extensions; more than this are ignored.
const MAX_EXTENSIONS: usize = 64;
/// Client names longer than this are cut (they only end up in logs and the UI).
const MAX_CLIENT_NAME: usize = 64;

/// A handshake is a small flat dictionary: a few levels and a few hundred values at most.
const LIMITS: Limits = Limits {
    max_depth: 10,
    max_tokens: 1000,
};

/// The decoded (or to-be-sent) extension handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtensionHandshake {
    /// Extension name → id. An id of 0 means "disabled" (meaningful in a later handshake
    /// that turns an extension off); use [`ExtensionHandshake::id_of`] to look one up.
    pub m: BTreeMap<String, u8>,
    /// Client name and version.
    pub v: Option<String>,
    /// How many outstanding requests the sender will queue (clamped to 1..=[`MAX_REQQ`]).
    pub reqq: Option<u32>,
    /// The sender's listen port.
    pub p: Option<u16>,
    /// Our address as the sender sees it: 4 (IPv4) or 16 (IPv6) bytes.
    pub yourip: Option<Vec<u8>>,
    /// Size of the info dictionary, for ut_metadata (BEP 9); validated by that extension.
    pub metadata_size: Option<u64>,
    /// BEP 21: the sender wants nothing more (a seed, or a partial seed that has every
    /// piece of the files it chose).
    pub upload_only: Option<bool>,
}

impl ExtensionHandshake {
    /// The id the sender wants extension `name` sent under, if it enabled it.
    pub fn id_of(&self, name: &str) -> Option<u8> {
        self.m.get(name).copied().filter(|&id| id != 0)
    }

    /// Applies a later handshake from the same peer (BEP 10 allows re-sending it to enable
    /// or disable extensions): ids of 0 remove an extension, fields present replace ours.
    pub fn update(&mut self, newer: ExtensionHandshake) {
        for (name, id) in newer.m {
            if id == 0 {
                self.m.remove(&name);
            } else if self.m.len() < MAX_EXTENSIONS || self.m.contains_key(&name) {
                self.m.insert(name, id);
            }
        }
        self.v = newer.v.or(self.v.take());
        self.reqq = newer.reqq.or(self.reqq);
        self.p = newer.p.or(self.p);
        self.yourip = newer.yourip.or(self.yourip.take());
        self.metadata_size = newer.metadata_size.or(self.metadata_size);
        self.upload_only = newer.upload_only.or(self.upload_only);
    }

    /// The bencoded dictionary (without the extended-message framing).
    pub fn encode(&self) -> Bytes {
        let mut m = Value::dict();
        for (name, &id) in &self.m {
            m.insert(name.as_bytes(), i64::from(id));
        }
        let mut root = Value::dict();
        root.insert("m", m);
        if let Some(v) = &self.v {
            root.insert("v", v.as_str());
        }
        if let Some(reqq) = self.reqq {
            root.insert("reqq", i64::from(reqq));
        }
        if let Some(p) = self.p {
            root.insert("p", i64::from(p));
        }
        if let Some(ip) = &self.yourip {
            root.insert("yourip", ip.clone());
        }
        if let Some(size) = self.metadata_size {
            // Sizes above i64::MAX cannot be real; saturate rather than wrap negative.
            root.insert("metadata_size", i64::try_from(size).unwrap_or(i64::MAX));
        }
        if let Some(upload_only) = self.upload_only {
            root.insert(UPLOAD_ONLY, i64::from(upload_only));
        }
        Bytes::from(root.to_bytes())
    }

    /// Decodes a peer's handshake payload.
    ///
    /// Malformed bencode (including a string length running past the payload, however
    /// large), a non-dictionary root or a non-dictionary `m` is an error. Individual fields
    /// of the wrong type or out of range are dropped: BEP 10 says unknown or unusable keys
    /// are ignored, and clients disagree on the details.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let doc = shoal_bencode::decode(payload, LIMITS)?;
        let root = doc.root();
        let dict = root
            .as_dict()
            .ok_or(WireError::BadExtensionHandshake("not a dictionary"))?;
        let mut hs = ExtensionHandshake::default();
        if let Some(m) = dict.get(b"m") {
            let m = m
                .as_dict()
                .ok_or(WireError::BadExtensionHandshake("`m` is not a dictionary"))?;
            for (name, id) in m.iter() {
                if hs.m.len() >= MAX_EXTENSIONS {
                    break;
                }
                let (Ok(name), Some(id)) = (std::str::from_utf8(name), id.as_int()) else {
                    continue;
                };
                if let Ok(id) = u8::try_from(id) {
                    // `Dict` lookups are first-match; keep the same rule for iteration.
                    hs.m.entry(name.to_owned()).or_insert(id);
                }
            }
        }
        hs.v = dict.get(b"v").and_then(|n| n.as_bytes()).map(|b| {
            let cut = &b[..b.len().min(MAX_CLIENT_NAME)];
            String::from_utf8_lossy(cut).into_owned()
        });
        hs.reqq = dict
            .get(b"reqq")
            .and_then(|n| n.as_int())
            .filter(|&q| q >= 1)
            .map(|q| u32::try_from(q).unwrap_or(u32::MAX).min(MAX_REQQ));
        hs.p = dict
            .get(b"p")
            .and_then(|n| n.as_int())
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p != 0);
        hs.yourip = dict
            .get(b"yourip")
            .and_then(|n| n.as_bytes())
            .filter(|b| b.len() == 4 || b.len() == 16)
            .map(<[u8]>::to_vec);
        hs.metadata_size = dict
            .get(b"metadata_size")
            .and_then(|n| n.as_int())
            .and_then(|s| u64::try_from(s).ok());
        hs.upload_only = dict
            .get(UPLOAD_ONLY.as_bytes())
            .and_then(|n| n.as_int())
            .map(|v| v != 0);
        Ok(hs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ExtensionHandshake {
        ExtensionHandshake {
            m: BTreeMap::from([("ut_metadata".to_owned(), 3), ("ut_pex".to_owned(), 1)]),
            v: Some("shoal 0.1".to_owned()),
            reqq: Some(500),
            p: Some(6881),
            yourip: Some(vec![127, 0, 0, 1]),
            metadata_size: Some(31_337),
            upload_only: Some(true),
        }
    }

    #[test]
    fn round_trip() {
        let hs = sample();
        assert_eq!(ExtensionHandshake::decode(&hs.encode()), Ok(hs.clone()));
        assert_eq!(hs.id_of("ut_pex"), Some(1));
        assert_eq!(hs.id_of("lt_donthave"), None);
        let empty = ExtensionHandshake::default();
        assert_eq!(&empty.encode()[..], b"d1:mdee");
        assert_eq!(ExtensionHandshake::decode(b"d1:mdee"), Ok(empty));
    }

    /// Item 26: a 4 GB string length is an error, never an allocation.
    #[test]
    fn huge_string_length_is_an_error() {
        let payload = b"d1:v4294967296:xe";
        assert!(matches!(
            ExtensionHandshake::decode(payload),
            Err(WireError::ExtensionBencode(_))
        ));
        let payload = b"d99999999999999999999999:xe";
        assert!(ExtensionHandshake::decode(payload).is_err());
    }

    #[test]
    fn malformed_input_is_an_error() {
        for bad in [
            &b""[..],
            b"i5e",
            b"le",
            b"d1:mi5ee",
            b"d1:md",
            b"d1:mdee trailing",
            &[b'l'; 50],
        ] {
            assert!(ExtensionHandshake::decode(bad).is_err(), "{bad:?}");
        }
        let deep = format!("d1:x{}{}e", "l".repeat(20), "e".repeat(20));
        assert!(ExtensionHandshake::decode(deep.as_bytes()).is_err());
        let many = format!("d1:xl{}ee", "i1e".repeat(2000));
        assert!(ExtensionHandshake::decode(many.as_bytes()).is_err());
    }

    #[test]
    fn absurd_values_are_clamped_or_dropped() {
        let payload = b"d1:md6:ut_pexi300e3:fooi-1e3:bari2ee1:pi70000e4:reqqi99999999999e6:yourip3:abc13:metadata_sizei-5ee";
        let hs = ExtensionHandshake::decode(payload).unwrap();
        assert_eq!(hs.m, BTreeMap::from([("bar".to_owned(), 2)]));
        assert_eq!(hs.reqq, Some(MAX_REQQ));
        assert_eq!(hs.p, None);
        assert_eq!(hs.yourip, None);
        assert_eq!(hs.metadata_size, None);
        let zero = ExtensionHandshake::decode(b"d4:reqqi0ee").unwrap();
        assert_eq!(zero.reqq, None);
        let long_name = format!("d1:v{}:{}e", 1000, "x".repeat(1000));
        let hs = ExtensionHandshake::decode(long_name.as_bytes()).unwrap();
        assert_eq!(hs.v.map(|v| v.len()), Some(MAX_CLIENT_NAME));
    }

    #[test]
    fn later_handshake_updates() {
        let mut hs = sample();
        let newer = ExtensionHandshake::decode(b"d1:md6:ut_pexi0e7:lt_testi9eee").unwrap();
        hs.update(newer);
        assert_eq!(hs.id_of("ut_pex"), None);
        assert_eq!(hs.id_of("lt_test"), Some(9));
        assert_eq!(hs.id_of("ut_metadata"), Some(3));
        assert_eq!(hs.reqq, Some(500));
    }

    #[test]
    fn upload_only_round_trips_and_updates() {
        let hs = ExtensionHandshake {
            upload_only: Some(true),
            ..ExtensionHandshake::default()
        };
        let decoded = ExtensionHandshake::decode(&hs.encode()).unwrap();
        assert_eq!(decoded.upload_only, Some(true));
        assert_eq!(ExtensionHandshake::default().encode()[..], b"d1:mdee"[..]);
        // Any integer counts (libtorrent reads it as a flag); other types are dropped.
        let two = ExtensionHandshake::decode(b"d11:upload_onlyi2ee").unwrap();
        assert_eq!(two.upload_only, Some(true));
        let text = ExtensionHandshake::decode(b"d11:upload_only1:1e").unwrap();
        assert_eq!(text.upload_only, None);
        // A later handshake without the key keeps the earlier answer; one with 0 ends it.
        let mut merged = decoded;
        merged.update(ExtensionHandshake::decode(b"d1:pi6881ee").unwrap());
        assert_eq!(merged.upload_only, Some(true));
        merged.update(ExtensionHandshake::decode(b"d11:upload_onlyi0ee").unwrap());
        assert_eq!(merged.upload_only, Some(false));
    }
}
