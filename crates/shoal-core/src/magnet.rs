//! Magnet links (BEP 9): `magnet:?xt=urn:btih:<hash>&dn=<name>&tr=<tracker>&x.pe=<peer>`,
//! `xt=urn:btmh:1220<hash>` for v2 and hybrid torrents (BEP 52),
//! and `ws=<url>` for web seeds (BEP 19), as libtorrent and WebTorrent write them.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::InfoHash;

/// Characters left as they are in a magnet's values: RFC 3986's unreserved set.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Links longer than this are refused outright.
const MAX_MAGNET_LEN: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    pub info_hash: InfoHash,
    /// `xt=urn:btmh:1220…`: a v2 or hybrid torrent's SHA-256 info-hash (BEP 52). For a
    /// v2-only link (no `btih`), `info_hash` is this hash cut to 20 bytes.
    pub info_hash_v2: Option<[u8; 32]>,
    /// `dn`: the display name, a hint until the metadata arrives.
    pub name: Option<String>,
    /// Every `tr`, in order, duplicates removed.
    pub trackers: Vec<String>,
    /// Every `x.pe`: peer addresses (`host:port`) to try directly.
    pub peers: Vec<String>,
    /// Every `ws`: web seed URLs, used once the metadata is known.
    pub web_seeds: Vec<String>,
    /// BEP 53 `so`: the files to download, as 0-based ranges of indices into the
    /// torrent's file list (padding files counted); empty for all.
    pub select_only: Vec<RangeInclusive<usize>>,
}

/// The highest file index `so=` may name (libtorrent's bound too): a link cannot make us
/// allocate for millions of files.
pub const MAX_SELECT_INDEX: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MagnetError {
    #[error("not a magnet link (it should start with 'magnet:?')")]
    NotMagnet,
    #[error("magnet link is longer than {MAX_MAGNET_LEN} bytes")]
    TooLong,
    #[error("magnet link has no 'xt=urn:btih:' info-hash")]
    NoInfoHash,
    #[error("magnet link's 'urn:btmh:' is not a SHA-256 multihash (1220 and 64 hex digits)")]
    BadV2Hash,
    #[error("bad info-hash in magnet link: {0}")]
    BadInfoHash(#[from] crate::InfoHashParseError),
}

fn unescape(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

impl FromStr for Magnet {
    type Err = MagnetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_MAGNET_LEN {
            return Err(MagnetError::TooLong);
        }
        let query = s
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("magnet:?"))
            .map(|_| &s[8..])
            .ok_or(MagnetError::NotMagnet)?;
        let mut info_hash = None;
        let mut info_hash_v2 = None;
        let mut saw_v2 = false;
        let (mut name, mut trackers, mut peers) = (None, Vec::<String>::new(), Vec::new());
        let mut web_seeds = Vec::<String>::new();
        let mut select_only = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            // `xt.1`, `tr.2`, …: numbered forms of the same keys.
            let key = key
                .split_once('.')
                .filter(|(_, n)| n.bytes().all(|b| b.is_ascii_digit()))
                .map_or(key, |(k, _)| k);
            match key {
                "xt" => {
                    let value = unescape(value);
                    if let Some(hash) = value.strip_prefix("urn:btih:") {
                        if info_hash.is_none() {
                            info_hash = Some(hash.parse()?);
                        }
                    } else if let Some(multihash) = value.strip_prefix("urn:btmh:") {
                        saw_v2 = true;
                        // A multihash: 0x12 (SHA-256), 0x20 (32 bytes), then the hash.
                        if let Some(hex) = multihash.strip_prefix("1220") {
                            info_hash_v2 = info_hash_v2.or_else(|| crate::hex::decode_array(hex));
                        }
                    }
                }
                "dn" => name = Some(unescape(&value.replace('+', " "))),
                "tr" => {
                    let url = unescape(value);
                    if !url.is_empty() && !trackers.contains(&url) {
                        trackers.push(url);
                    }
                }
                "x.pe" => peers.push(unescape(value)),
                "ws" => {
                    let url = unescape(value);
                    if !url.is_empty() && !web_seeds.contains(&url) {
                        web_seeds.push(url);
                    }
                }
                "so" => select_only.extend(parse_select_only(&unescape(value))),
                _ => {}
            }
        }
        // A v2-only link: the swarm is found under the v2 hash cut to 20 bytes.
        let info_hash = match (info_hash, info_hash_v2) {
            (Some(hash), _) => hash,
            (None, Some(v2)) => InfoHash(v2[..20].try_into().expect("32 bytes")),
            (None, None) if saw_v2 => return Err(MagnetError::BadV2Hash),
            (None, None) => return Err(MagnetError::NoInfoHash),
        };
        Ok(Magnet {
            info_hash,
            info_hash_v2,
            name,
            trackers,
            peers,
            web_seeds,
            select_only,
        })
    }
}

/// `so=0,2,4-6`: indices and ranges. An item that is not a number or an ascending range
/// within [`MAX_SELECT_INDEX`] is skipped, not fatal: the rest of the link still works.
/// libtorrent is stricter in one way (a character other than digits, `-` and `,` voids
/// the whole `so=`) and looser in another (`1-2-3` reads as `1-2`); the value is
/// percent-decoded here like every other, which libtorrent does not do for `so=`.
fn parse_select_only(value: &str) -> Vec<RangeInclusive<usize>> {
    let index = |s: &str| {
        s.parse::<usize>()
            .ok()
            .filter(|&i| i <= MAX_SELECT_INDEX && s.bytes().all(|b| b.is_ascii_digit()))
    };
    value
        .split(',')
        .filter_map(|item| match item.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (index(first)?, index(last)?);
                (first <= last).then_some(first..=last)
            }
            None => index(item).map(|i| i..=i),
        })
        .collect()
}

impl fmt::Display for Magnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.info_hash_v2 {
            // A v2-only torrent: its swarm id is the v2 hash cut short, not a SHA-1.
            Some(v2) if v2[..20] == self.info_hash.0 => {
                write!(f, "magnet:?xt=urn:btmh:1220{}", crate::hex::encode(&v2))?
            }
            Some(v2) => write!(
                f,
                "magnet:?xt=urn:btih:{}&xt=urn:btmh:1220{}",
                self.info_hash.to_hex(),
                crate::hex::encode(&v2)
            )?,
            None => write!(f, "magnet:?xt=urn:btih:{}", self.info_hash.to_hex())?,
        }
        if let Some(name) = &self.name {
            write!(f, "&dn={}", utf8_percent_encode(name, VALUE))?;
        }
        for tracker in &self.trackers {
            write!(f, "&tr={}", utf8_percent_encode(tracker, VALUE))?;
        }
        for peer in &self.peers {
            write!(f, "&x.pe={}", utf8_percent_encode(peer, VALUE))?;
        }
        for url in &self.web_seeds {
            write!(f, "&ws={}", utf8_percent_encode(url, VALUE))?;
        }
        if !self.select_only.is_empty() {
            let items: Vec<String> = self
                .select_only
                .iter()
                .map(|r| match r.start() == r.end() {
                    true => r.start().to_string(),
                    false => format!("{}-{}", r.start(), r.end()),
                })
                .collect();
            write!(f, "&so={}", items.join(","))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    #[test]
    fn parses_every_field() {
        let m: Magnet = "magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK&dn=Some+File%20x&tr=udp%3A%2F%2Ft1%3A80&tr=http://t2/a&tr.1=http://t2/a&x.pe=127.0.0.2:6881&x.pe=[::1]:7000&ws=http%3A%2F%2Fw%2Fa%2F&ws=http://w/a/"
            .parse()
        .unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
        assert_eq!(m.name.as_deref(), Some("Some File x"));
        assert_eq!(m.trackers, ["udp://t1:80", "http://t2/a"]);
        assert_eq!(m.peers, ["127.0.0.2:6881", "[::1]:7000"]);
        assert_eq!(m.web_seeds, ["http://w/a/"]);
        assert!(m.select_only.is_empty());
    }

    /// BEP 53 `so`: indices and ranges; malformed items are skipped as libtorrent skips
    /// them, and so are indices past its bound.
    #[test]
    fn select_only() {
        let m: Magnet =
            format!("magnet:?xt=urn:btih:{HEX}&so=0,2,4-6,x,9-7,-3,8-,10%2C12,+1,99999")
                .parse()
                .unwrap();
        assert_eq!(m.select_only, [0..=0, 2..=2, 4..=6, 10..=10, 12..=12]);
        let twice: Magnet = format!("magnet:?xt=urn:btih:{HEX}&so=1&so=3-4")
            .parse()
            .unwrap();
        assert_eq!(twice.select_only, [1..=1, 3..=4]);
        assert!(twice.to_string().ends_with("&so=1,3-4"));
    }

    #[test]
    fn round_trips() {
        let m = Magnet {
            info_hash_v2: None,
            info_hash: HEX.parse().unwrap(),
            name: Some("a b&c=d/é".into()),
            trackers: vec!["http://tracker.example/announce?x=1&y=2".into()],
            peers: vec!["127.0.0.1:1".into()],
            web_seeds: vec!["https://files.example/x y/".into()],
            select_only: vec![0..=0, 2..=5],
        };
        let text = m.to_string();
        assert!(text.starts_with(&format!(
            "magnet:?xt=urn:btih:{HEX}&dn=a%20b%26c%3Dd%2F%C3%A9&tr=http%3A%2F%2F"
        )));
        assert_eq!(text.parse::<Magnet>().unwrap(), m);
    }

    #[test]
    fn hybrid_links_keep_both_hashes() {
        let v2 = "f0528dd2fe396ede422a69dfb4ca72893b04b348285ee69fb3d0f7ccce7aa55f";
        let text = format!("magnet:?xt=urn:btih:{HEX}&xt=urn:btmh:1220{v2}&dn=x");
        let m: Magnet = text.parse().unwrap();
        assert_eq!(m.info_hash_v2, crate::hex::decode_array(v2));
        assert_eq!(m.to_string(), text);
        // Only the v2 hash: the swarm id is that hash cut short, and the link says so.
        let v2_only = Magnet {
            info_hash: InfoHash(m.info_hash_v2.unwrap()[..20].try_into().unwrap()),
            name: None,
            ..m
        };
        assert_eq!(v2_only.to_string(), format!("magnet:?xt=urn:btmh:1220{v2}"));
        assert_eq!(v2_only.to_string().parse::<Magnet>(), Ok(v2_only));
    }

    #[test]
    fn errors() {
        assert_eq!("http://x".parse::<Magnet>(), Err(MagnetError::NotMagnet));
        assert_eq!(
            "magnet:?dn=x".parse::<Magnet>(),
            Err(MagnetError::NoInfoHash)
        );
        assert_eq!(
            "magnet:?xt=urn:btmh:1220abcd".parse::<Magnet>(),
            Err(MagnetError::BadV2Hash)
        );
        assert!(matches!(
            "magnet:?xt=urn:btih:1234".parse::<Magnet>(),
            Err(MagnetError::BadInfoHash(_))
        ));
        let upper: Magnet = format!("MAGNET:?xt=urn:btih:{HEX}").parse().unwrap();
        assert_eq!(upper.info_hash.to_hex(), HEX);
        assert_eq!("magnét:?xt".parse::<Magnet>(), Err(MagnetError::NotMagnet));
        assert_eq!(
            "x".repeat(70_000).parse::<Magnet>(),
            Err(MagnetError::TooLong)
        );
    }
}
