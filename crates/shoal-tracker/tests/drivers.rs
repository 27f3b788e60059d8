//! The drivers over real loopback sockets: the HTTP client against a tiny misbehaving
//! server (item 32 of the bad-input list), and the [`Announcer`] failing over from dead
//! and broken trackers to a working `shoal tracker` (HTTP and UDP), then saying
//! `stopped`. Addresses 127.0.1.x; ports chosen by the kernel.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use shoal_core::{InfoHash, PeerId};
use shoal_tracker::client::UdpConfig;
use shoal_tracker::driver::http::{get, HttpConfig};
use shoal_tracker::driver::server::{ServerOptions, TrackerServer};
use shoal_tracker::driver::{Announcer, AnnouncerConfig};
use shoal_tracker::server::ServerConfig;
use shoal_tracker::{Progress, TrackerError, TrackerUrl};
use tokio::sync::mpsc;

/// Serves one canned reply (or, with `None`, silence) to every connection, from a
/// thread; returns its address.
fn misbehaving_server(ip: &str, reply: Option<Vec<u8>>) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).expect("bind");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.read(&mut buf);
            match &reply {
                Some(bytes) => {
                    let _ = stream.write_all(bytes);
                }
                // Black hole: keep the connection open, say nothing.
                None => held.push(stream),
            }
            if Instant::now() > deadline {
                break;
            }
        }
    });
    addr
}

fn http_reply(head: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!("HTTP/1.1 {head}\r\n").into_bytes();
    v.extend_from_slice(body);
    v
}

fn config() -> HttpConfig {
    HttpConfig {
        timeout: Duration::from_millis(1500),
        max_body: 64 * 1024,
        ..Default::default()
    }
}

async fn fetch(addr: SocketAddr) -> Result<Vec<u8>, TrackerError> {
    let url = TrackerUrl::parse(&format!("http://{addr}/announce")).unwrap();
    get(&url, "/announce?x=1", &config()).await
}

#[tokio::test]
async fn bad_http_responses_are_clean_errors() {
    let ip = "127.0.1.10";
    let garbage = misbehaving_server(
        ip,
        Some(http_reply(
            "200 OK\r\nContent-Length: 13\r\n",
            b"<html>oops</html>",
        )),
    );
    let body = fetch(garbage).await.expect("a body");
    assert!(matches!(
        shoal_tracker::client::http::parse_announce(&body),
        Err(TrackerError::Bencode(_))
    ));

    let mut bomb = http_reply(
        "200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4096\r\n",
        b"",
    );
    bomb.extend_from_slice(&[0x1f, 0x8b, 8, 0]);
    bomb.extend(std::iter::repeat_n(0u8, 4092));
    let bomb = misbehaving_server(ip, Some(bomb));
    assert_eq!(fetch(bomb).await, Err(TrackerError::Encoded("gzip".into())));

    let error = misbehaving_server(
        ip,
        Some(http_reply(
            "500 Internal Server Error\r\nContent-Length: 0\r\n",
            b"",
        )),
    );
    assert_eq!(fetch(error).await, Err(TrackerError::Http(500)));

    let silent = misbehaving_server(ip, None);
    let started = Instant::now();
    assert_eq!(fetch(silent).await, Err(TrackerError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(3));

    let declared = misbehaving_server(
        ip,
        Some(http_reply("200 OK\r\nContent-Length: 999999999\r\n", b"d")),
    );
    assert_eq!(
        fetch(declared).await,
        Err(TrackerError::TooLarge(64 * 1024))
    );

    let endless = misbehaving_server(ip, Some(http_reply("200 OK\r\n", &vec![b'x'; 200 * 1024])));
    assert_eq!(fetch(endless).await, Err(TrackerError::TooLarge(64 * 1024)));

    let chunked = misbehaving_server(
        ip,
        Some(http_reply(
            "200 OK\r\nTransfer-Encoding: chunked\r\n",
            b"ffffff\r\nxx",
        )),
    );
    assert_eq!(fetch(chunked).await, Err(TrackerError::TooLarge(64 * 1024)));

    let loop_to_self = misbehaving_server(
        ip,
        Some(http_reply(
            "302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n",
            b"",
        )),
    );
    assert!(matches!(
        fetch(loop_to_self).await,
        Err(TrackerError::Refused(_))
    ));

    let to_file = misbehaving_server(
        ip,
        Some(http_reply(
            "302 Found\r\nLocation: file:///etc/passwd\r\n",
            b"",
        )),
    );
    assert!(matches!(fetch(to_file).await, Err(TrackerError::Url(_))));

    let huge_head = misbehaving_server(ip, Some(vec![b'a'; 40 * 1024]));
    assert!(matches!(fetch(huge_head).await, Err(TrackerError::Io(_))));

    // Nothing listening at all.
    let closed = TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap();
    assert!(matches!(fetch(closed).await, Err(TrackerError::Io(_))));
}

async fn start_tracker(
    ip: &str,
) -> (
    SocketAddr,
    SocketAddr,
    shoal_tracker::driver::server::ServerHandle,
    tokio::sync::oneshot::Sender<()>,
) {
    let server = TrackerServer::bind(ServerOptions {
        http: Some(format!("{ip}:0").parse().unwrap()),
        udp: Some(format!("{ip}:0").parse().unwrap()),
        config: ServerConfig {
            interval: Duration::from_secs(60),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let (http, udp) = (server.http_addr().unwrap(), server.udp_addr().unwrap());
    let handle = server.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    (http, udp, handle, stop)
}

/// A seed announces to the tracker directly, so the announcer under test has a peer to find.
async fn seed_swarm(http: SocketAddr, info_hash: InfoHash, seed: &str) {
    let url = TrackerUrl::parse(&format!("http://{http}/announce")).unwrap();
    let request = shoal_tracker::AnnounceRequest {
        info_hash,
        peer_id: PeerId([9; 20]),
        port: 6881,
        progress: Progress::default(),
        event: shoal_tracker::Event::Started,
        numwant: None,
        key: 1,
        tracker_id: None,
    };
    let target = shoal_tracker::client::http::announce_path(&url, &request);
    let config = HttpConfig {
        bind: Some(seed.parse().unwrap()),
        ..config()
    };
    let body = get(&url, &target, &config).await.unwrap();
    shoal_tracker::client::http::parse_announce(&body).unwrap();
}

async fn run_announcer(
    trackers: Vec<Vec<String>>,
    info_hash: InfoHash,
    me: &str,
) -> (Announcer, Vec<SocketAddr>, Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let announcer = Announcer::spawn(
        AnnouncerConfig {
            trackers,
            info_hash,
            peer_id: PeerId::shoal([7; 12]),
            key: 7,
            port: 7000,
            bind: Some(me.parse().unwrap()),
            numwant: Some(50),
            http: config(),
            udp: UdpConfig {
                base_timeout: Duration::from_millis(200),
                max_retransmits: 1,
            },
            board: None,
        },
        Progress {
            uploaded: 0,
            downloaded: 0,
            left: 1000,
            partial_seed: false,
        },
        tx,
    );
    let peers = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("peers within 10 s")
        .expect("a peer list");
    (announcer, peers, started.elapsed())
}

#[tokio::test]
async fn announcer_fails_over_to_a_working_tracker_and_says_stopped() {
    let (http, _udp, handle, _stop) = start_tracker("127.0.1.11").await;
    let info_hash = InfoHash([0x42; 20]);
    seed_swarm(http, info_hash, "127.0.1.12").await;

    let dead_http = TcpListener::bind("127.0.1.13:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let broken = misbehaving_server(
        "127.0.1.13",
        Some(http_reply("500 Oops\r\nContent-Length: 0\r\n", b"")),
    );
    let black_hole = std::net::UdpSocket::bind("127.0.1.13:0").unwrap();
    let trackers = vec![
        vec![
            format!("http://{dead_http}/announce"),
            format!("http://{broken}/announce"),
            format!("udp://{}", black_hole.local_addr().unwrap()),
        ],
        vec!["wss://unsupported/".into()],
        vec![format!("http://{http}/announce")],
    ];
    let (announcer, peers, took) = run_announcer(trackers, info_hash, "127.0.1.14").await;
    assert_eq!(
        peers,
        vec!["127.0.1.12:6881".parse::<SocketAddr>().unwrap()]
    );
    // Dead: refused at once; 500: at once; UDP black hole: 200 + 400 ms.
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(handle.stats_json()["peers"], 2);

    let stopping = Instant::now();
    announcer.stop(Duration::from_secs(2)).await;
    assert!(stopping.elapsed() < Duration::from_secs(2));
    assert_eq!(handle.stats_json()["peers"], 1, "stopped removed us");
    assert_eq!(handle.stats_json()["leechers"], 0);
}

#[tokio::test]
async fn announcer_over_udp() {
    let (http, udp, handle, _stop) = start_tracker("127.0.1.15").await;
    let info_hash = InfoHash([0x43; 20]);
    seed_swarm(http, info_hash, "127.0.1.16").await;
    let (announcer, peers, _) = run_announcer(
        vec![vec![format!("udp://{udp}/announce")]],
        info_hash,
        "127.0.1.17",
    )
    .await;
    assert_eq!(
        peers,
        vec!["127.0.1.16:6881".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(handle.stats_json()["leechers"], 1);
    announcer.completed();
    // Completed turns us into a seeder.
    let deadline = Instant::now() + Duration::from_secs(5);
    while handle.stats_json()["seeders"] != 2 {
        assert!(Instant::now() < deadline, "completed not announced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    announcer.stop(Duration::from_secs(2)).await;
    assert_eq!(handle.stats_json()["peers"], 1);

    // Scrape over UDP and HTTP agree.
    let url = TrackerUrl::parse(&format!("udp://{udp}")).unwrap();
    let mut endpoint =
        shoal_tracker::driver::UdpEndpoint::open(&url, None, UdpConfig::default(), None)
            .await
            .unwrap();
    let outcome = endpoint
        .run(shoal_tracker::client::UdpOperation::Scrape(vec![info_hash]))
        .await
        .unwrap();
    let shoal_tracker::client::UdpOutcome::Scrape(counts) = outcome else {
        panic!()
    };
    assert_eq!(
        (
            counts[0].complete,
            counts[0].incomplete,
            counts[0].downloaded
        ),
        (1, 0, 1)
    );
}

/// A self-signed certificate for `ip` (DER certificate, DER PKCS#8 key), made with the
/// openssl command-line tool.
fn self_signed(dir: &std::path::Path, ip: &str) -> (Vec<u8>, Vec<u8>) {
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is installed (.ci/deps)");
        assert!(status.success(), "openssl {args:?}");
    };
    let san = format!("subjectAltName=IP:{ip}");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-subj",
        "/CN=shoal test",
        "-addext",
        &san,
        // An end-entity certificate, as webpki requires (the default would be a CA).
        "-addext",
        "basicConstraints=critical,CA:FALSE",
    ]);
    run(&[
        "x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der",
    ]);
    run(&[
        "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out", "key.der",
    ]);
    (
        std::fs::read(dir.join("cert.der")).unwrap(),
        std::fs::read(dir.join("key.der")).unwrap(),
    )
}

#[tokio::test]
async fn https_tracker_with_a_trusted_certificate() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::rustls::{RootCertStore, ServerConfig};

    let ip = "127.0.1.18";
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), ip);
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let body = b"d8:intervali900e5:peers6:\x7f\x00\x01\x13\x1a\xe1e";
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    let url = TrackerUrl::parse(&format!("https://{addr}/announce")).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(cert)).unwrap();
    let trusted = HttpConfig {
        tls: Some(shoal_tracker::driver::http::tls_config(roots)),
        ..config()
    };
    let body = get(&url, "/announce?x=1", &trusted)
        .await
        .expect("https works");
    let response = shoal_tracker::client::http::parse_announce(&body).unwrap();
    assert_eq!(
        response.peers,
        vec!["127.0.1.19:6881".parse::<SocketAddr>().unwrap()]
    );

    // The same server with the public roots: its certificate is not trusted.
    match get(&url, "/announce?x=1", &config()).await {
        Err(TrackerError::Io(message)) => assert!(message.contains("TLS"), "{message}"),
        other => panic!("untrusted certificate accepted: {other:?}"),
    }
}
