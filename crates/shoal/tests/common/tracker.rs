//! Talking to trackers from tests: a `shoal tracker` to run, its `/stats`, scrapes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use shoal_core::InfoHash;
use shoal_tracker::{ScrapeCounts, TrackerUrl};

use super::*;

/// `shoal tracker` on `ip:port` for both HTTP and UDP, with a 10 s interval.
pub fn shoal_tracker(addr: &str, extra: &[&str]) -> Guard {
    let child = shoal()
        .args(["tracker", "--http", addr, "--udp", addr, "--interval", "10"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn shoal tracker");
    let guard = Guard(child);
    wait_listening(addr, Duration::from_secs(10));
    guard
}

/// A plain HTTP GET; returns the body.
pub fn http_get(addr: &str, target: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("read reply");
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP head")
        + 4;
    reply.split_off(split)
}

pub fn stats(addr: &str) -> serde_json::Value {
    serde_json::from_slice(&http_get(addr, "/stats")).expect("JSON stats")
}

/// Scrapes one torrent with shoal's tracker client (HTTP or UDP, by the URL).
pub fn scrape_url(url: &str, hash: InfoHash) -> ScrapeCounts {
    use shoal_tracker::client::UdpConfig;
    use shoal_tracker::driver::http::HttpConfig;
    let url = TrackerUrl::parse(url).unwrap();
    let http = HttpConfig {
        bind: Some("127.0.1.99".parse().unwrap()),
        ..HttpConfig::default()
    };
    let udp = UdpConfig {
        base_timeout: Duration::from_millis(500),
        max_retransmits: 2,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let counts = runtime
        .block_on(shoal_tracker::driver::scrape(&url, &[hash], &http, udp))
        .expect("scrape");
    counts.first().map(|(_, c)| *c).unwrap_or_default()
}
