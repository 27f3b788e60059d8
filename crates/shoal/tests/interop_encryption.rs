//! Message stream encryption (MSE/PE) against libtorrent and between shoal peers, on
//! loopback. libtorrent set to RC4-only connections is the proof that the stream is
//! encrypted: it will not talk otherwise.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// `shoal get --encryption MODE` from a libtorrent seed that takes RC4 connections only.
fn get_from_rc4_only_libtorrent(mode: &str, seed_port: u16, our_port: u16) {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 3 * 1024 * 1024 + 333, "256K");
    let seed_ip = format!("127.0.0.{}", seed_port - 17000);
    let _seed = lt_seed_over(LtWire::Rc4Only, &torrent, &src, &seed_ip, seed_port);
    let out = dir.path().join("out");
    let events = shoal_get_with(
        &torrent,
        &out,
        &dir.path().join("state"),
        &format!("127.0.0.{}:{our_port}", our_port - 17000),
        &[&format!("{seed_ip}:{seed_port}")],
        &["--no-dht", "--encryption", mode],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    assert!(events.iter().any(|e| e["event"] == "completed"));
}

#[test]
fn libtorrent_rc4_only_seeds_shoal_requiring_encryption() {
    get_from_rc4_only_libtorrent("require", 17151, 17152);
}

/// The default dials with an encrypted handshake offering both; libtorrent picks RC4.
#[test]
fn libtorrent_rc4_only_seeds_shoal_preferring_encryption() {
    get_from_rc4_only_libtorrent("prefer", 17158, 17159);
}

#[test]
fn shoal_seeds_libtorrent_rc4_only() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 2 * 1024 * 1024 + 5, "64K");
    // The default (`prefer`) answers an encrypted handshake.
    let _seed = shoal_seed(
        &torrent,
        &src,
        &dir.path().join("state"),
        "127.0.0.153:17153",
    );
    let out = dir.path().join("lt-out");
    lt_get_over(
        LtWire::Rc4Only,
        &torrent,
        &out,
        ("127.0.0.154", 17154),
        ("127.0.0.153", 17153),
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
}

#[test]
fn shoal_to_shoal_with_encryption_required() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 2 * 1024 * 1024 + 99, "64K");
    let _seed = shoal_seed_with(
        &torrent,
        &src,
        &dir.path().join("s"),
        "127.0.0.155:17155",
        &["--encryption", "require", "--no-tracker", "--no-dht"],
    );
    let out = dir.path().join("out");
    let events = shoal_get_with(
        &torrent,
        &out,
        &dir.path().join("g"),
        "127.0.0.156:17156",
        &["127.0.0.155:17155"],
        &["--no-dht", "--encryption", "require"],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    assert!(events.iter().any(|e| e["event"] == "completed"));
}

/// A seed that requires encryption hangs up on a plain BitTorrent handshake without a
/// word, and answers an encrypted one (its public key comes back).
#[test]
fn a_seed_requiring_encryption_refuses_a_plain_handshake() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 256 * 1024, "64K");
    let _seed = shoal_seed_with(
        &torrent,
        &src,
        &dir.path().join("s"),
        "127.0.0.157:17157",
        &["--encryption", "require", "--no-tracker", "--no-dht"],
    );

    let mut plain = TcpStream::connect("127.0.0.157:17157").unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut hello = vec![19];
    hello.extend_from_slice(b"BitTorrent protocol");
    hello.extend_from_slice(&[0; 8]);
    hello.extend_from_slice(&info_hash_of(&torrent));
    hello.extend_from_slice(b"-XX0001-abcdefghijkl");
    plain.write_all(&hello).unwrap();
    let mut reply = Vec::new();
    let read = plain.read_to_end(&mut reply);
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "closed without a reply, got {reply:?}"
    );
    assert!(reply.is_empty());

    // 96 bytes of a (valid-looking) public key: the seed answers with its own.
    let mut encrypted = TcpStream::connect("127.0.0.157:17157").unwrap();
    encrypted
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut key = [0x5au8; 96];
    key[0] = 0x12;
    encrypted.write_all(&key).unwrap();
    let mut theirs = [0u8; 96];
    encrypted.read_exact(&mut theirs).unwrap();
    assert_ne!(theirs, [0u8; 96]);
}

/// aria2 set to encrypted connections with RC4 only seeds; `shoal get --encryption
/// require` dials it and downloads.
#[test]
fn aria2_requiring_rc4_seeds_shoal() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 2 * 1024 * 1024 + 7, "128K");
    let _seed = aria2_seed(
        &src,
        &torrent,
        "127.0.0.160",
        17160,
        &["--bt-require-crypto=true", "--bt-min-crypto-level=arc4"],
    );
    let out = dir.path().join("out");
    let events = shoal_get_with(
        &torrent,
        &out,
        &dir.path().join("state"),
        "127.0.0.161:17161",
        &["127.0.0.160:17160"],
        &["--no-dht", "--encryption", "require"],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "peer_connected"
                && e["client"].as_str().unwrap().starts_with("A2"))
    );
}

/// Transmission requiring encryption seeds; `shoal get` with its default (`prefer`)
/// downloads, over the encrypted handshake.
#[test]
fn transmission_requiring_encryption_seeds_shoal() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 2 * 1024 * 1024 + 3, "128K");
    let seed = Transmission::start_with(
        &dir.path().join("tr-config"),
        &src,
        ("127.0.0.162", 17162, 17262),
        "--encryption-required",
    );
    seed.add(&torrent);
    seed.wait_complete(Duration::from_secs(30));
    let out = dir.path().join("out");
    let events = shoal_get_with(
        &torrent,
        &out,
        &dir.path().join("state"),
        "127.0.0.163:17163",
        &["127.0.0.162:17162"],
        &["--no-dht"],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    assert!(events
        .iter()
        .any(|e| e["event"] == "peer_connected" && e["client"] == "TR 3000"));
}

/// A peer that takes encrypted connections only (libtorrent, RC4 only) loses our first
/// encrypted handshake (a relay in front of it hangs up once it has read our public key).
/// `shoal get` (default `prefer`) dials again in plaintext, which the peer refuses; the
/// next dial must offer encryption again. Before, the plaintext retry's TCP connection
/// alone had the peer marked plaintext-only for good, and the download never finished.
#[test]
fn one_lost_encrypted_handshake_does_not_shut_out_a_peer_requiring_encryption() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 1024 * 1024 + 11, "64K");
    let _seed = lt_seed_over(LtWire::Rc4Only, &torrent, &src, "127.0.0.164", 17164);
    let relay = FlakyRelay::start("127.0.0.165:17165", "127.0.0.164:17164");
    let out = dir.path().join("out");
    let events = shoal_get_with(
        &torrent,
        &out,
        &dir.path().join("state"),
        "127.0.0.166:17166",
        &["127.0.0.165:17165"],
        &["--no-dht", "--utp", "off"],
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    assert!(events.iter().any(|e| e["event"] == "completed"));
    let dialled = relay.connections();
    assert!(dialled >= 3, "lost, plaintext, encrypted again: {dialled}");
}

/// A TCP relay from `listen` to `target` whose first connection is closed once 96 bytes
/// (an MSE public key) have come in; later ones are passed through both ways.
struct FlakyRelay {
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FlakyRelay {
    fn start(listen: &str, target: &'static str) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind(listen).unwrap();
        listener.set_nonblocking(true).unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (connections.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Ok((mut incoming, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                incoming.set_nonblocking(false).unwrap();
                if count.fetch_add(1, Ordering::Relaxed) == 0 {
                    incoming
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let _ = incoming.read_exact(&mut [0u8; 96]);
                    continue; // dropped: closed
                }
                let Ok(outgoing) = TcpStream::connect(target) else {
                    continue;
                };
                pipe(incoming.try_clone().unwrap(), outgoing.try_clone().unwrap());
                pipe(outgoing, incoming);
            }
        });
        FlakyRelay { connections, stop }
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for FlakyRelay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Copies `from` to `to` in a thread until either end closes, then closes both.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Both);
        let _ = from.shutdown(std::net::Shutdown::Both);
    });
}
