//! The HTTP front end's protocol part: an announce or scrape query string in, a bencoded
//! body out (BEP 3, 23 compact, 7 `peers6`, 48 scrape). The driver decides the client's
//! IP (the socket's, or a trusted proxy's `X-Forwarded-For`) and whether `ip=` may be
//! believed.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use percent_encoding::percent_decode_str;
use rand::Rng;
use shoal_bencode::Value;
use shoal_core::{compact, InfoHash, PeerId};

use super::{Family, PeerAnnounce, Refusal, Tracker};
use crate::announce::Event;
use crate::RetryIn;

/// Query parameters beyond this many are ignored.
const MAX_PARAMS: usize = 128;
/// Info-hashes in one scrape.
pub const MAX_SCRAPE: usize = 100;

fn params(query: &str) -> impl Iterator<Item = (&str, Vec<u8>)> {
    query
        .split('&')
        .take(MAX_PARAMS)
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k, percent_decode_str(v).collect()))
}

fn text(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v).ok()
}

/// A bencoded `failure reason`.
pub fn failure(reason: &str) -> Vec<u8> {
    refused(reason, None)
}

/// A bencoded `failure reason`, with BEP 31's `retry in` when there is one.
fn refused(reason: &str, retry: Option<RetryIn>) -> Vec<u8> {
    let mut d = Value::dict();
    d.insert("failure reason", reason);
    match retry {
        Some(RetryIn::Minutes(minutes)) => d.insert("retry in", i64::from(minutes)),
        Some(RetryIn::Never) => d.insert("retry in", "never"),
        None => {}
    }
    d.to_bytes()
}

/// Handles `/announce?query` from `client_ip`. `trust_ip_param`: the request came from a
/// configured proxy, so an `ip=` parameter names the real client.
pub fn announce(
    tracker: &mut Tracker,
    now: Instant,
    query: &str,
    client_ip: IpAddr,
    trust_ip_param: bool,
    rng: &mut impl Rng,
) -> Vec<u8> {
    let (mut info_hash, mut peer_id, mut port, mut left) = (None, None, None, None);
    let (mut event, mut numwant, mut compact, mut ip) = (Some(Event::None), None, true, None);
    for (key, value) in params(query) {
        match key {
            "info_hash" => info_hash = <[u8; 20]>::try_from(value.as_slice()).ok().map(InfoHash),
            "peer_id" => peer_id = <[u8; 20]>::try_from(value.as_slice()).ok().map(PeerId),
            "port" => port = text(&value).and_then(|s| s.parse::<u16>().ok()),
            "left" => left = text(&value).and_then(|s| s.parse::<u64>().ok()),
            "event" => event = text(&value).and_then(Event::from_http),
            "numwant" => numwant = text(&value).and_then(|s| s.parse::<u32>().ok()),
            "compact" => compact = value != b"0",
            "ip" => ip = text(&value).and_then(|s| s.parse::<IpAddr>().ok()),
            _ => {}
        }
    }
    let (Some(info_hash), Some(peer_id), Some(port), Some(event)) =
        (info_hash, peer_id, port, event)
    else {
        return failure(&Refusal::Malformed.to_string());
    };
    let ip = match ip {
        Some(ip) if trust_ip_param => ip,
        _ => client_ip,
    }
    .to_canonical();
    let a = PeerAnnounce {
        info_hash,
        peer_id,
        addr: SocketAddr::new(ip, port),
        event,
        // A client that does not say is taken for a leecher.
        left: left.unwrap_or(1),
        numwant,
        family: Family::Any,
    };
    let answer = match tracker.announce(now, &a, rng) {
        Ok(answer) => answer,
        Err(refusal) => {
            let retry = refusal.retry_in(tracker.config().interval);
            return refused(&refusal.to_string(), retry);
        }
    };
    let mut d = Value::dict();
    let secs = answer.interval.as_secs() as i64;
    d.insert("interval", secs);
    d.insert("min interval", (secs / 2).max(1));
    d.insert("complete", i64::from(answer.seeders));
    d.insert("incomplete", i64::from(answer.leechers));
    if compact {
        let v4 = compact::encode(&answer.peers, true);
        let v6 = compact::encode(&answer.peers, false);
        d.insert("peers", v4);
        if !v6.is_empty() {
            d.insert("peers6", v6);
        }
    } else {
        // Peer ids are not kept (see the server module), so dictionary peers carry
        // address and port only, as with `no_peer_id=1`.
        let list = answer
            .peers
            .iter()
            .map(|addr| {
                let mut p = Value::dict();
                p.insert("ip", addr.ip().to_string());
                p.insert("port", i64::from(addr.port()));
                p
            })
            .collect::<Vec<_>>();
        d.insert("peers", list);
    }
    d.to_bytes()
}

/// Handles `/scrape?info_hash=…&info_hash=…`. Without an info-hash a full scrape would
/// list every torrent; this tracker declines that (it is how swarms get enumerated).
pub fn scrape(tracker: &mut Tracker, query: &str) -> Vec<u8> {
    let hashes: Vec<InfoHash> = params(query)
        .filter(|(k, _)| *k == "info_hash")
        .filter_map(|(_, v)| <[u8; 20]>::try_from(v.as_slice()).ok().map(InfoHash))
        .take(MAX_SCRAPE)
        .collect();
    if hashes.is_empty() {
        return failure("scrape needs at least one info_hash");
    }
    let counts = tracker.scrape(&hashes);
    let mut files = Value::dict();
    for (h, c) in hashes.iter().zip(counts) {
        let mut d = Value::dict();
        d.insert("complete", i64::from(c.complete));
        d.insert("downloaded", i64::from(c.downloaded));
        d.insert("incomplete", i64::from(c.incomplete));
        if let Some(downloaders) = c.downloaders {
            d.insert("downloaders", i64::from(downloaders));
        }
        files.insert(h.0.to_vec(), d);
    }
    let mut root = Value::dict();
    root.insert("files", files);
    root.to_bytes()
}

#[cfg(test)]
mod tests {
    use percent_encoding::{percent_encode, NON_ALPHANUMERIC};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::client::http::{parse_announce, parse_scrape};
    use crate::server::ServerConfig;
    use crate::TrackerError;

    fn query(hash: u8, port: u16, left: u64, extra: &str) -> String {
        let enc = |b: &[u8]| percent_encode(b, NON_ALPHANUMERIC).to_string();
        format!(
            "info_hash={}&peer_id={}&port={port}&uploaded=0&downloaded=0&left={left}{extra}",
            enc(&[hash; 20]),
            enc(&[port as u8; 20])
        )
    }

    #[test]
    fn compact_dictionary_and_v6() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut t = Tracker::new(ServerConfig::default());
        let now = Instant::now();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        announce(
            &mut t,
            now,
            &query(1, 1001, 0, "&event=started"),
            ip("10.0.0.1"),
            false,
            &mut rng,
        );
        announce(
            &mut t,
            now,
            &query(1, 1002, 0, ""),
            ip("fd00::2"),
            false,
            &mut rng,
        );
        let body = announce(
            &mut t,
            now,
            &query(1, 1003, 5, "&compact=1"),
            ip("10.0.0.3"),
            false,
            &mut rng,
        );
        let r = parse_announce(&body).unwrap();
        let mut peers: Vec<String> = r.peers.iter().map(|p| p.to_string()).collect();
        peers.sort();
        assert_eq!(peers, ["10.0.0.1:1001", "[fd00::2]:1002"]);
        assert_eq!((r.complete, r.incomplete), (Some(2), Some(1)));
        assert_eq!(r.interval.as_secs(), 1800);

        let body = announce(
            &mut t,
            now,
            &query(1, 1003, 5, "&compact=0"),
            ip("10.0.0.3"),
            false,
            &mut rng,
        );
        assert!(body.windows(6).any(|w| w == b"ld2:ip"), "dictionary peers");
        let r = parse_announce(&body).unwrap();
        assert_eq!(r.peers.len(), 2);
    }

    #[test]
    fn ip_param_only_from_trusted_proxy() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut t = Tracker::new(ServerConfig::default());
        let now = Instant::now();
        let proxy: IpAddr = "10.0.0.254".parse().unwrap();
        announce(
            &mut t,
            now,
            &query(1, 1001, 5, "&ip=1.2.3.4"),
            proxy,
            false,
            &mut rng,
        );
        announce(
            &mut t,
            now,
            &query(1, 1002, 5, "&ip=5.6.7.8"),
            proxy,
            true,
            &mut rng,
        );
        let body = announce(
            &mut t,
            now,
            &query(1, 1003, 5, ""),
            "10.0.0.3".parse().unwrap(),
            false,
            &mut rng,
        );
        let mut peers: Vec<String> = parse_announce(&body)
            .unwrap()
            .peers
            .iter()
            .map(|p| p.to_string())
            .collect();
        peers.sort();
        assert_eq!(peers, ["10.0.0.254:1001", "5.6.7.8:1002"]);
    }

    #[test]
    fn malformed_and_refused_get_a_failure_reason() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut t = Tracker::new(ServerConfig::default());
        let now = Instant::now();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for q in [
            "",
            "info_hash=short&peer_id=x&port=1",
            &query(1, 1, 0, "&event=bogus"),
            &query(1, 0, 0, ""),
        ] {
            let body = announce(&mut t, now, q, ip, false, &mut rng);
            assert!(
                matches!(parse_announce(&body), Err(TrackerError::Failure(_))),
                "{q}"
            );
        }
        t.set_allow_list(Some(Default::default()));
        let body = announce(&mut t, now, &query(1, 1, 0, ""), ip, false, &mut rng);
        assert_eq!(
            parse_announce(&body),
            Err(TrackerError::Failure(
                "info-hash not served by this tracker".into()
            ))
        );
        // A full tracker says when to come back (BEP 31): after its interval.
        let mut full = Tracker::new(ServerConfig {
            max_torrents: 1,
            interval: std::time::Duration::from_secs(1800),
            ..ServerConfig::default()
        });
        announce(&mut full, now, &query(1, 1, 0, ""), ip, false, &mut rng);
        let body = announce(&mut full, now, &query(2, 1, 0, ""), ip, false, &mut rng);
        assert_eq!(
            parse_announce(&body),
            Err(TrackerError::Backoff {
                reason: "tracker is full: too many torrents".into(),
                retry: RetryIn::Minutes(30),
            })
        );
    }

    #[test]
    fn scrape_counts() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut t = Tracker::new(ServerConfig::default());
        let now = Instant::now();
        announce(
            &mut t,
            now,
            &query(7, 1, 0, ""),
            "10.0.0.1".parse().unwrap(),
            false,
            &mut rng,
        );
        announce(
            &mut t,
            now,
            &query(7, 2, 9, ""),
            "10.0.0.2".parse().unwrap(),
            false,
            &mut rng,
        );
        let q = format!("info_hash={}", percent_encode(&[7; 20], NON_ALPHANUMERIC));
        let body = scrape(&mut t, &q);
        let counts = parse_scrape(&body, &[InfoHash([7; 20])]).unwrap();
        assert_eq!((counts[0].1.complete, counts[0].1.incomplete), (1, 1));
        assert!(matches!(
            parse_scrape(&scrape(&mut t, ""), &[]),
            Err(TrackerError::Failure(_))
        ));
    }
}
