//! HTTP tracker messages (BEP 3, 23, 7, 48): the announce and scrape URLs we request and
//! the bencoded bodies we get back. Pure functions; the driver does the fetching.

use std::net::{IpAddr, SocketAddr};

use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
use shoal_bencode::{decode, Dict, Limits, Node};
use shoal_core::{compact, InfoHash};

use crate::announce::{clamp_interval, push_peer, AnnounceRequest, AnnounceResponse, ScrapeCounts};
use crate::url::TrackerUrl;
use crate::{RetryIn, TrackerError};

/// RFC 3986 unreserved characters stay as they are; every other byte is `%XX`.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Limits for decoding a tracker body: small documents, shallow nesting.
const LIMITS: Limits = Limits {
    max_depth: 8,
    max_tokens: 64 * 1024,
};

fn append_param(path: &mut String, key: &str, value: &str) {
    path.push(if path.contains('?') { '&' } else { '?' });
    path.push_str(key);
    path.push('=');
    path.push_str(value);
}

/// The path and query of an announce to `url` (which may carry its own query, e.g. a
/// passkey, that is kept).
pub fn announce_path(url: &TrackerUrl, req: &AnnounceRequest) -> String {
    let mut path = url.path.clone();
    let enc = |b: &[u8]| percent_encode(b, QUERY).to_string();
    append_param(&mut path, "info_hash", &enc(&req.info_hash.0));
    append_param(&mut path, "peer_id", &enc(&req.peer_id.0));
    append_param(&mut path, "port", &req.port.to_string());
    append_param(&mut path, "uploaded", &req.progress.uploaded.to_string());
    append_param(
        &mut path,
        "downloaded",
        &req.progress.downloaded.to_string(),
    );
    append_param(&mut path, "left", &req.progress.left.to_string());
    append_param(&mut path, "compact", "1");
    if let Some(event) = req.event.as_http() {
        append_param(&mut path, "event", event);
    }
    if let Some(n) = req.numwant {
        append_param(&mut path, "numwant", &n.to_string());
    }
    append_param(&mut path, "key", &format!("{:08x}", req.key));
    if let Some(id) = &req.tracker_id {
        append_param(&mut path, "trackerid", &enc(id));
    }
    path
}

/// The path and query of a scrape for `hashes` at a scrape URL.
pub fn scrape_path(scrape_url: &TrackerUrl, hashes: &[InfoHash]) -> String {
    let mut path = scrape_url.path.clone();
    for h in hashes {
        append_param(
            &mut path,
            "info_hash",
            &percent_encode(&h.0, QUERY).to_string(),
        );
    }
    path
}

fn text(node: Option<Node<'_, '_>>) -> Option<String> {
    node.and_then(|n| n.as_bytes())
        .map(|b| String::from_utf8_lossy(&b[..b.len().min(1024)]).into_owned())
}

fn root_dict<'d, 'a>(doc: &'d shoal_bencode::Document<'a>) -> Result<Dict<'d, 'a>, TrackerError> {
    let root = doc.root().as_dict().ok_or(TrackerError::BadResponse(
        "tracker response is not a dictionary",
    ))?;
    if let Some(reason) = text(root.get(b"failure reason")) {
        // BEP 31: minutes, or "never"; anything else is as if it were not there.
        let retry = match root.get(b"retry in") {
            Some(n) if n.as_bytes() == Some(b"never") => Some(RetryIn::Never),
            Some(n) => n
                .as_int()
                .filter(|&m| m >= 0)
                .map(|m| RetryIn::Minutes(m.min(i64::from(RetryIn::MAX_MINUTES)) as u32)),
            None => None,
        };
        return Err(match retry {
            Some(retry) => TrackerError::Backoff { reason, retry },
            None => TrackerError::Failure(reason),
        });
    }
    Ok(root)
}

fn count(node: Option<Node<'_, '_>>) -> Option<u32> {
    node.and_then(|n| n.as_int())
        .map(|i| i.clamp(0, i64::from(u32::MAX)) as u32)
}

/// Parses an announce response body.
pub fn parse_announce(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    let doc = decode(body, LIMITS).map_err(TrackerError::Bencode)?;
    let root = root_dict(&doc)?;
    let interval =
        root.get(b"interval")
            .and_then(|n| n.as_int())
            .ok_or(TrackerError::BadResponse(
                "announce response has no interval",
            ))?;
    let mut peers = Vec::new();
    match root.get(b"peers") {
        Some(node) => {
            if let Some(compact) = node.as_bytes() {
                compact_peers(compact, compact::V4_LEN, &mut peers);
            } else if let Some(list) = node.as_list() {
                for entry in list.iter().filter_map(|e| e.as_dict()) {
                    let ip = entry
                        .get(b"ip")
                        .and_then(|n| n.as_str())
                        .and_then(|s| s.parse::<IpAddr>().ok());
                    let port = entry
                        .get(b"port")
                        .and_then(|n| n.as_int())
                        .and_then(|p| u16::try_from(p).ok());
                    if let (Some(ip), Some(port)) = (ip, port) {
                        push_peer(&mut peers, SocketAddr::new(ip, port));
                    }
                }
            } else {
                return Err(TrackerError::BadResponse(
                    "peers is neither a string nor a list",
                ));
            }
        }
        None if root.get(b"peers6").is_none() => {
            return Err(TrackerError::BadResponse("announce response has no peers"))
        }
        None => {}
    }
    if let Some(compact) = root.get(b"peers6").and_then(|n| n.as_bytes()) {
        compact_peers(compact, compact::V6_LEN, &mut peers);
    }
    Ok(AnnounceResponse {
        interval: clamp_interval(interval),
        min_interval: root
            .get(b"min interval")
            .and_then(|n| n.as_int())
            .map(clamp_interval),
        peers,
        tracker_id: root
            .get(b"tracker id")
            .and_then(|n| n.as_bytes())
            .filter(|b| b.len() <= 256)
            .map(<[u8]>::to_vec),
        warning: text(root.get(b"warning message")),
        complete: count(root.get(b"complete")),
        incomplete: count(root.get(b"incomplete")),
    })
}

/// A compact list of `width`-byte peers (BEP 23 IPv4, BEP 7 IPv6) into `peers`.
pub(crate) fn compact_peers(bytes: &[u8], width: usize, peers: &mut Vec<SocketAddr>) {
    for peer in compact::peers(bytes, width) {
        push_peer(peers, peer);
    }
}

/// Parses a scrape response: counts for each of `hashes` that the tracker listed.
pub fn parse_scrape(
    body: &[u8],
    hashes: &[InfoHash],
) -> Result<Vec<(InfoHash, ScrapeCounts)>, TrackerError> {
    let doc = decode(body, LIMITS).map_err(TrackerError::Bencode)?;
    let root = root_dict(&doc)?;
    let files = root
        .get(b"files")
        .and_then(|n| n.as_dict())
        .ok_or(TrackerError::BadResponse("scrape response has no files"))?;
    Ok(hashes
        .iter()
        .filter_map(|h| {
            let d = files.get(&h.0)?.as_dict()?;
            Some((
                *h,
                ScrapeCounts {
                    complete: count(d.get(b"complete")).unwrap_or(0),
                    downloaded: count(d.get(b"downloaded")).unwrap_or(0),
                    incomplete: count(d.get(b"incomplete")).unwrap_or(0),
                    downloaders: count(d.get(b"downloaders")),
                },
            ))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use shoal_core::PeerId;

    use super::*;
    use crate::announce::{Event, Progress};

    fn request() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash([0xab; 20]),
            peer_id: PeerId(*b"-SH0100-a b~c.d_e-f%"),
            port: 6881,
            progress: Progress {
                uploaded: 1,
                downloaded: 2,
                left: 3,
                partial_seed: false,
            },
            event: Event::Started,
            numwant: Some(50),
            key: 0xdead_beef,
            tracker_id: Some(b"t&1".to_vec()),
        }
    }

    #[test]
    fn announce_query_encodes_every_field() {
        let url = TrackerUrl::parse("http://t:80/announce?pk=1").unwrap();
        let path = announce_path(&url, &request());
        assert_eq!(
            path,
            format!(
                "/announce?pk=1&info_hash={}&peer_id=-SH0100-a%20b~c.d_e-f%25&port=6881&uploaded=1\
                 &downloaded=2&left=3&compact=1&event=started&numwant=50&key=deadbeef&trackerid=t%261",
                "%AB".repeat(20)
            )
        );
        let mut periodic = request();
        periodic.event = Event::None;
        periodic.tracker_id = None;
        periodic.numwant = None;
        let path = announce_path(&TrackerUrl::parse("http://t/a").unwrap(), &periodic);
        assert!(
            !path.contains("event") && !path.contains("numwant") && !path.contains("trackerid")
        );
        assert!(path.starts_with("/a?info_hash="));
    }

    #[test]
    fn compact_and_dictionary_peers() {
        let body = b"d8:completei5e10:incompletei2e8:intervali1800e12:min intervali60e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x50\
6:peers618:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\xe110:tracker id3:abc15:warning message4:slowe";
        let r = parse_announce(body).unwrap();
        assert_eq!(r.interval, Duration::from_secs(1800));
        assert_eq!(r.min_interval, Some(Duration::from_secs(60)));
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:6881".parse().unwrap(),
                "10.0.0.2:80".parse().unwrap(),
                "[::1]:6881".parse().unwrap()
            ]
        );
        assert_eq!(r.tracker_id.as_deref(), Some(&b"abc"[..]));
        assert_eq!(r.warning.as_deref(), Some("slow"));
        assert_eq!((r.complete, r.incomplete), (Some(5), Some(2)));

        let body = b"d8:intervali900e5:peersld2:ip9:127.0.0.17:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti6881eed2:ip3:::14:porti1eed2:ip4:nope4:porti1eed2:ip9:127.0.0.14:porti99999eeee";
        let r = parse_announce(body).unwrap();
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:6881".parse().unwrap(),
                "[::1]:1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn failure_and_garbage() {
        assert_eq!(
            parse_announce(b"d14:failure reason9:not founde"),
            Err(TrackerError::Failure("not found".into()))
        );
        // BEP 31.
        let backoff = |retry| {
            Err(TrackerError::Backoff {
                reason: "busy".into(),
                retry,
            })
        };
        assert_eq!(
            parse_announce(b"d14:failure reason4:busy8:retry ini30ee"),
            backoff(RetryIn::Minutes(30))
        );
        assert_eq!(
            parse_announce(b"d14:failure reason4:busy8:retry in5:nevere"),
            backoff(RetryIn::Never)
        );
        assert_eq!(
            parse_announce(b"d14:failure reason4:busy8:retry ini99999999999ee"),
            backoff(RetryIn::Minutes(RetryIn::MAX_MINUTES))
        );
        for ignored in [&b"i-5e"[..], b"4:soon"] {
            let body = [&b"d14:failure reason4:busy8:retry in"[..], ignored, b"e"].concat();
            assert_eq!(
                parse_announce(&body),
                Err(TrackerError::Failure("busy".into()))
            );
        }
        assert_eq!(
            RetryIn::Minutes(90).duration(),
            Some(std::time::Duration::from_secs(5400))
        );
        assert_eq!(RetryIn::Never.duration(), None);
        assert!(matches!(
            parse_announce(b"<html>500</html>"),
            Err(TrackerError::Bencode(_))
        ));
        assert!(matches!(
            parse_announce(b"le"),
            Err(TrackerError::BadResponse(_))
        ));
        assert!(matches!(
            parse_announce(b"d5:peers0:e"),
            Err(TrackerError::BadResponse(_))
        ));
        // Interval clamped both ways.
        let r = parse_announce(b"d8:intervali1e5:peers0:e").unwrap();
        assert_eq!(r.interval, crate::announce::MIN_INTERVAL);
        let r = parse_announce(b"d8:intervali999999999999e5:peers0:e").unwrap();
        assert_eq!(r.interval, crate::announce::MAX_INTERVAL);
    }

    #[test]
    fn scrape_path_and_body() {
        let url = TrackerUrl::parse("http://t/announce")
            .unwrap()
            .scrape_url()
            .unwrap();
        let a = InfoHash([1; 20]);
        let b = InfoHash([2; 20]);
        assert_eq!(
            scrape_path(&url, &[a, b]),
            format!(
                "/scrape?info_hash={}&info_hash={}",
                "%01".repeat(20),
                "%02".repeat(20)
            )
        );
        let mut body = b"d5:filesd20:".to_vec();
        body.extend_from_slice(&a.0);
        body.extend_from_slice(b"d8:completei3e10:downloadedi7e10:incompletei4eeee");
        assert_eq!(
            parse_scrape(&body, &[a, b]).unwrap(),
            vec![(
                a,
                ScrapeCounts {
                    complete: 3,
                    downloaded: 7,
                    incomplete: 4,
                    downloaders: None,
                }
            )]
        );
    }

    proptest! {
        #[test]
        fn announce_parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_announce(&body);
            let _ = parse_scrape(&body, &[InfoHash([0; 20])]);
        }

        #[test]
        fn compact_peers_round_trip(addrs in proptest::collection::vec((any::<[u8; 4]>(), 1u16..), 0..50)) {
            let mut body = format!("d8:intervali60e5:peers{}:", addrs.len() * 6).into_bytes();
            let mut expected = Vec::new();
            for (ip, port) in &addrs {
                body.extend_from_slice(ip);
                body.extend_from_slice(&port.to_be_bytes());
                push_peer(&mut expected, SocketAddr::new(std::net::Ipv4Addr::from(*ip).into(), *port));
            }
            body.push(b'e');
            prop_assert_eq!(parse_announce(&body).unwrap().peers, expected);
        }
    }
}
