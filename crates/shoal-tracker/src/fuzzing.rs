//! Properties the tracker fuzz targets in `fuzz/` check, shared with the test that
//! replays their regression corpus. Each function panics only when an invariant breaks.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use shoal_core::{InfoHash, PeerId};

use crate::announce::{Event, MAX_PEERS_PER_RESPONSE};
use crate::client::http::{parse_announce, parse_scrape};
use crate::client::{UdpConfig, UdpOperation, UdpTracker};
use crate::http1::{decode_chunked, parse_request_head, parse_response_head};
use crate::server::connection_id::ConnectionIds;
use crate::server::{udp, ServerConfig, Tracker};
use crate::udp::{Request, Response, MAX_PACKET};
use crate::AnnounceRequest;

/// What a tracker sends over HTTP: bencoded bodies and HTTP heads never panic; an
/// accepted announce has a sane interval and a bounded, duplicate-free peer list.
pub fn http_response(data: &[u8]) {
    if let Ok(r) = parse_announce(data) {
        assert!(r.interval >= crate::announce::MIN_INTERVAL);
        assert!(r.peers.len() <= MAX_PEERS_PER_RESPONSE);
        let unique: std::collections::HashSet<_> = r.peers.iter().collect();
        assert_eq!(unique.len(), r.peers.len());
        assert!(r.peers.iter().all(|p| p.port() != 0));
    }
    let _ = parse_scrape(data, &[InfoHash([0; 20])]);
    let _ = parse_response_head(data);
    let _ = parse_request_head(data);
    if let Ok(Some(body)) = decode_chunked(data, 4096) {
        assert!(body.len() <= 4096);
    }
}

/// UDP datagrams, both ways: decoding never panics, a decoded request re-encodes to a
/// packet that decodes the same, the server answers within one packet, and a client
/// waiting for an answer survives anything.
pub fn udp_packet(data: &[u8]) {
    if let Ok(request) = Request::decode(data) {
        let mut out = Vec::new();
        request.encode(&mut out);
        assert_eq!(Request::decode(&out).as_ref(), Ok(&request));
    }
    let _ = Response::decode(data, false);
    let _ = Response::decode(data, true);

    let mut rng = StdRng::seed_from_u64(0);
    let now = Instant::now();
    let mut tracker = Tracker::new(ServerConfig::default());
    let ids = ConnectionIds::new(now, &mut rng);
    let from: SocketAddr = "127.0.0.1:6881".parse().expect("valid");
    let mut out = Vec::new();
    if udp::handle_packet(&mut tracker, &ids, now, from, data, &mut rng, &mut out) {
        assert!(out.len() <= MAX_PACKET);
    }

    let mut client = UdpTracker::new(UdpConfig::default(), false, "/announce");
    let request = AnnounceRequest {
        info_hash: InfoHash([1; 20]),
        peer_id: PeerId([2; 20]),
        port: 1,
        progress: Default::default(),
        event: Event::Started,
        numwant: None,
        key: 0,
        tracker_id: None,
    };
    client.start(now, UdpOperation::Announce(request), &mut rng);
    client.handle_datagram(now, data, &mut rng);
    client.handle_timeout(now + Duration::from_secs(3600));
}
