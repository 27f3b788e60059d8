//! Real peers for the transfer tests: libtorrent (through python3-libtorrent), aria2,
//! Transmission and shoal itself, each started on its own loopback address and killed
//! (by the PID we started) when its guard drops.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// Kills the child (by its PID, which we started) when dropped, also on test failure.
pub struct Guard(pub Child);

impl Guard {
    /// Waits (at most `limit`) for the process to exit by itself; panics saying `what`
    /// did not happen if it is still running then.
    pub fn wait_exit(&mut self, limit: Duration, what: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "{what} within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The start of a Python snippet that is a libtorrent DHT node: bound to argv[1]:argv[2],
/// bootstrapped from argv[3] only, with the settings that let it route among loopback
/// addresses. The session is `s`; the snippet's own arguments start at argv[4].
pub const LT_DHT_NODE: &str = r#"
import hashlib, libtorrent as lt, sys, time
ip, port, boot = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = lt.session({
    'listen_interfaces': '%s:%d' % (ip, port), 'outgoing_interfaces': ip,
    'enable_dht': True, 'dht_bootstrap_nodes': boot,
    'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'enable_incoming_utp': False, 'enable_outgoing_utp': False,
    'dht_restrict_routing_ips': False, 'dht_restrict_search_ips': False,
    'dht_ignore_dark_internet': False, 'dht_prefer_verified_node_ids': False,
    'alert_mask': lt.alert.category_t.all_categories,
})
"#;

/// `script` after [`LT_DHT_NODE`], run by Debian's Python with `ip`, `port`, `boot`,
/// then `args`.
pub fn lt_dht_node(script: &str, ip: &str, port: &str, boot: &str, args: &[&str]) -> Command {
    require("/usr/bin/python3");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg("-c")
        .arg(format!("{LT_DHT_NODE}\n{script}"))
        .args([ip, port, boot])
        .args(args);
    cmd
}

/// libtorrent session settings for loopback tests: no discovery, TCP only (unless
/// [`LtWire::UtpOnly`]), bound to `ip`.
pub const LT_SESSION: &str = r#"
import libtorrent as lt, os, sys, time
def session(ip, port):
    host = '[%s]' % ip if ':' in ip else ip
    settings = {
        'listen_interfaces': '%s:%d' % (host, port), 'outgoing_interfaces': ip,
        'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
        'enable_incoming_utp': False, 'enable_outgoing_utp': False,
        'allow_multiple_connections_per_ip': True, 'alert_mask': 0,
    }
    if os.environ.get('SHOAL_TEST_LT_UTP'):
        # uTP both ways; TCP too unless 'only': then it is neither made nor taken.
        tcp = os.environ['SHOAL_TEST_LT_UTP'] != 'only'
        settings.update({'enable_incoming_utp': True, 'enable_outgoing_utp': True,
                         'enable_incoming_tcp': tcp, 'enable_outgoing_tcp': tcp})
    if os.environ.get('SHOAL_TEST_LT_NO_DIAL'):
        # Connections are only taken: whoever wants this peer must dial it.
        settings.update({'enable_outgoing_tcp': False, 'enable_outgoing_utp': False})
    if os.environ.get('SHOAL_TEST_LT_RC4'):
        # Encrypted connections only, both ways, and RC4 only after the handshake.
        settings.update({'out_enc_policy': int(lt.enc_policy.forced),
                         'in_enc_policy': int(lt.enc_policy.forced),
                         'allowed_enc_level': int(lt.enc_level.rc4), 'prefer_rc4': True})
    return lt.session(settings)
"#;

/// How a libtorrent helper connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LtWire {
    /// libtorrent's defaults (it tries an encrypted handshake first, then plaintext).
    Default,
    /// RC4-encrypted connections only.
    Rc4Only,
    /// uTP only (BEP 29), no TCP either way.
    UtpOnly,
    /// uTP and TCP, as libtorrent's defaults have it.
    TcpAndUtp,
}

impl LtWire {
    pub fn apply(self, cmd: &mut Command) -> &mut Command {
        match self {
            LtWire::Default => {}
            LtWire::Rc4Only => {
                cmd.env("SHOAL_TEST_LT_RC4", "1");
            }
            LtWire::UtpOnly => {
                cmd.env("SHOAL_TEST_LT_UTP", "only");
            }
            LtWire::TcpAndUtp => {
                cmd.env("SHOAL_TEST_LT_UTP", "both");
            }
        }
        cmd
    }
}

/// Seeds `torrent` from `save` until killed (at most 120 s); prints READY when seeding.
pub const LT_SEED: &str = r#"
torrent, save, ip, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = session(ip, port)
h = s.add_torrent({'ti': lt.torrent_info(torrent), 'save_path': save})
deadline = time.time() + 120
while time.time() < deadline:
    st = h.status()
    if st.is_seeding:
        print('READY', flush=True)
        break
    time.sleep(0.05)
time.sleep(max(0, deadline - time.time()))
"#;

/// Downloads `torrent` into `save` from the peer at peer_ip:peer_port; prints DONE.
pub const LT_GET: &str = r#"
torrent, save, ip, port, peer_ip, peer_port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
s = session(ip, port)
h = s.add_torrent({'ti': lt.torrent_info(torrent), 'save_path': save})
# Peer and error alerts are kept, to say on a timeout why the connection went.
c = lt.alert.category_t
s.apply_settings({'alert_mask': c.error_notification | c.peer_notification | c.connect_notification})
seen = []
# Give up before the test's 60 s limit for the process, so that what went wrong is printed.
deadline = time.time() + 50
last_connect = 0
while time.time() < deadline:
    if time.time() - last_connect > 2:
        h.connect_peer((peer_ip, peer_port))
        last_connect = time.time()
    st = h.status()
    if st.is_seeding:
        print('DONE', st.total_payload_download, flush=True)
        sys.exit(0)
    seen = (seen + ['%.2f %s' % (time.time(), a.message()) for a in s.pop_alerts()])[-40:]
    time.sleep(0.05)
st = h.status()
print('TIMEOUT progress', st.progress, 'state', st.state, 'peers', st.num_peers, flush=True)
for line in seen:
    print('  alert', line, flush=True)
for p in h.get_peer_info():
    print('  peer', p.ip, 'flags', hex(p.flags), 'pieces', p.num_pieces, 'down', p.total_download,
          'up', p.total_upload, 'queue', p.download_queue_length, flush=True)
sys.exit(1)
"#;

/// A web seed for the tests (`web_seed.py` beside this file, which says what it does).
pub const WEB_SEED: &str = include_str!("web_seed.py");

/// Serves the files under `root` at http://ip:port/ as [`WEB_SEED`] does; returns the
/// guard and the lines it prints per request.
pub fn web_seed(
    root: &Path,
    ip: &str,
    port: u16,
    corrupt: bool,
) -> (Guard, std::sync::mpsc::Receiver<String>) {
    let corrupt = if corrupt { "1" } else { "0" };
    start_web_seed(&[path_str(root), ip, &port.to_string(), corrupt])
}

/// A server at http://ip:port/ that redirects every request to `to` + its path; the
/// lines say `REDIRECT path` per request.
pub fn web_seed_redirecting(
    ip: &str,
    port: u16,
    to: &str,
) -> (Guard, std::sync::mpsc::Receiver<String>) {
    start_web_seed(&[".", ip, &port.to_string(), "0", "120", to])
}

fn start_web_seed(args: &[&str]) -> (Guard, std::sync::mpsc::Receiver<String>) {
    require("/usr/bin/python3");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg("-c").arg(WEB_SEED).args(args);
    start_and_watch(cmd, "READY", Duration::from_secs(30))
}

pub fn python_script(body: &str) -> String {
    format!("{LT_SESSION}\n{body}")
}

/// Lines a process printed, shown on standard error if the test fails while this is in
/// scope: a peer that stalls once in many runs is only diagnosable with its own account.
pub struct Transcript {
    name: &'static str,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Transcript {
    pub fn new(name: &'static str, lines: std::sync::mpsc::Receiver<String>) -> Self {
        Transcript { name, lines }
    }
}

impl Drop for Transcript {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for line in self.lines.try_iter() {
                eprintln!("{}: {line}", self.name);
            }
        }
    }
}

/// Starts a process and waits (bounded) until it prints `marker` on stdout.
pub fn start_and_wait(cmd: Command, marker: &str, limit: Duration) -> Guard {
    start_and_watch(cmd, marker, limit).0
}

/// [`start_and_wait`], also handing over the lines the process prints after `marker`.
pub fn start_and_watch(
    cmd: Command,
    marker: &str,
    limit: Duration,
) -> (Guard, std::sync::mpsc::Receiver<String>) {
    let (guard, rx) = spawn_watched(cmd);
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(marker) => return (guard, rx),
            Ok(_) => {}
            Err(_) => panic!(
                "{:?} did not print {marker:?} within {limit:?}",
                guard.0.id()
            ),
        }
    }
}

/// Waits (bounded) until each of `needles` has been in some line; returns the lines
/// read up to then.
pub fn wait_lines(
    lines: &std::sync::mpsc::Receiver<String>,
    needles: &[&str],
    limit: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut missing: Vec<&str> = needles.to_vec();
    let mut seen = Vec::new();
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no lines with {missing:?} within {limit:?}"));
        missing.retain(|needle| !line.contains(needle));
        seen.push(line);
    }
    seen
}

/// Starts a process and hands over every line it prints on stdout, from the first.
pub fn spawn_watched(mut cmd: Command) -> (Guard, std::sync::mpsc::Receiver<String>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("piped");
    let guard = Guard(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            // Keep draining after the receiver is gone, so the child never meets a
            // closed pipe.
            let _ = tx.send(line);
        }
    });
    (guard, rx)
}

pub fn lt_seed(torrent: &Path, save: &Path, ip: &str, port: u16) -> Guard {
    lt_seed_over(LtWire::Default, torrent, save, ip, port)
}

/// [`lt_seed`], connecting as `wire` says.
pub fn lt_seed_over(wire: LtWire, torrent: &Path, save: &Path, ip: &str, port: u16) -> Guard {
    require("/usr/bin/python3");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg("-c").arg(python_script(LT_SEED)).args([
        path_str(torrent),
        path_str(save),
        ip,
        &port.to_string(),
    ]);
    wire.apply(&mut cmd);
    start_and_wait(cmd, "READY", Duration::from_secs(60))
}

/// Runs `shoal get --no-seed --json` to completion; returns its JSON event lines.
pub fn shoal_get(
    torrent: &Path,
    out: &Path,
    state: &Path,
    listen: &str,
    peers: &[&str],
) -> Vec<serde_json::Value> {
    shoal_get_with(torrent, out, state, listen, peers, &[])
}

/// [`shoal_get`] with `extra` arguments.
pub fn shoal_get_with(
    torrent: &Path,
    out: &Path,
    state: &Path,
    listen: &str,
    peers: &[&str],
    extra: &[&str],
) -> Vec<serde_json::Value> {
    let mut cmd = shoal();
    cmd.args([
        "get",
        path_str(torrent),
        "-o",
        path_str(out),
        "--no-seed",
        "--json",
        "--listen",
        listen,
    ])
    .args(["--state-dir", path_str(state)]);
    for peer in peers {
        cmd.args(["--peer", peer]);
    }
    json_events(cmd.args(extra))
}

/// Runs a `shoal ... --json` command to success (bounded); returns its JSON event lines.
pub fn json_events(cmd: &mut Command) -> Vec<serde_json::Value> {
    let (output, _) = run_with_timeout(cmd, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect()
}

pub fn shoal_seed(torrent: &Path, data: &Path, state: &Path, listen: &str) -> Guard {
    shoal_seed_with(torrent, data, state, listen, &[])
}

/// [`shoal_seed`] with `extra` arguments.
pub fn shoal_seed_with(
    torrent: &Path,
    data: &Path,
    state: &Path,
    listen: &str,
    extra: &[&str],
) -> Guard {
    let mut cmd = shoal();
    cmd.args([
        "seed",
        path_str(torrent),
        path_str(data),
        "--json",
        "--listen",
        listen,
        "--state-dir",
        path_str(state),
    ])
    .args(extra);
    start_and_wait(cmd, "\"started\"", Duration::from_secs(30))
}

/// Asserts two files hold the same bytes (without printing them: they may be megabytes).
pub fn same_files(a: &Path, b: &Path) {
    assert!(
        std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
        "{a:?} differs from {b:?}"
    );
}

pub fn make_single(
    dir: &Path,
    size: usize,
    piece: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = dir.join("src");
    let file = src.join("payload.bin");
    random_file(&file, size, 42);
    let torrent = dir.join("payload.torrent");
    shoal_create(&file, piece, &torrent, &[]);
    (src, torrent)
}

/// `shoal create PATH --piece-size PIECE -o OUT` with `extra` arguments.
pub fn shoal_create(path: &Path, piece: &str, out: &Path, extra: &[&str]) {
    run_ok(
        shoal()
            .args(["create", path_str(path), "--piece-size", piece, "-o"])
            .arg(out)
            .args(extra),
    );
}

/// The events named `name` among `events`.
pub fn events_named<'a>(events: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

/// Waits (bounded) until something accepts TCP connections on `addr`.
pub fn wait_listening(addr: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listening on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn aria2(dir: &Path, torrent: &Path, ip: &str, port: u16, extra: &[&str]) -> Command {
    require("aria2c");
    let mut cmd = Command::new("aria2c");
    cmd.args([
        "-d",
        path_str(dir),
        &format!("--listen-port={port}"),
        &format!("--interface={ip}"),
    ])
    .args([
        "--disable-ipv6",
        "--enable-dht=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
    ])
    .args([
        "--console-log-level=warn",
        "--summary-interval=0",
        "--bt-stop-timeout=60",
    ])
    .args(extra)
    .arg(torrent);
    cmd
}

/// An aria2 seed of `torrent` (data in `dir`) on `ip:port`, once it listens.
pub fn aria2_seed(dir: &Path, torrent: &Path, ip: &str, port: u16, extra: &[&str]) -> Guard {
    let seed = aria2(
        dir,
        torrent,
        ip,
        port,
        &[&["-V", "--seed-ratio=0.0"], extra].concat(),
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .spawn()
    .expect("spawn aria2c");
    let seed = Guard(seed);
    wait_listening(&format!("{ip}:{port}"), Duration::from_secs(30));
    seed
}

/// A `transmission-daemon` (Transmission 3) in the foreground with its own config folder,
/// taking peers on `ip:port` and RPC on `ip:rpc_port`; driven with `transmission-remote`.
/// uTP, DHT, LPD and port mapping are off so it speaks TCP to the peers it is given only.
pub struct Transmission {
    _daemon: Guard,
    rpc: String,
}

impl Transmission {
    /// Accepting both plain and encrypted connections (`--encryption-tolerated`).
    pub fn start(config: &Path, download: &Path, ip: &str, port: u16, rpc_port: u16) -> Self {
        Self::start_with(
            config,
            download,
            (ip, port, rpc_port),
            "--encryption-tolerated",
        )
    }

    /// [`start`](Self::start) with Transmission's `encryption` flag
    /// (`--encryption-required`, `--encryption-preferred`, `--encryption-tolerated`).
    pub fn start_with(
        config: &Path,
        download: &Path,
        (ip, port, rpc_port): (&str, u16, u16),
        encryption: &str,
    ) -> Self {
        require("transmission-daemon");
        require("transmission-remote");
        std::fs::create_dir_all(download).unwrap();
        let daemon = Command::new("transmission-daemon")
            .args(["--foreground", "--config-dir", path_str(config)])
            .args(["--bind-address-ipv4", ip, "--peerport", &port.to_string()])
            .args(["--rpc-bind-address", ip, "--port", &rpc_port.to_string()])
            .args(["--allowed", "127.*.*.*", "--no-auth"])
            .args(["--no-dht", "--no-lpd", "--no-utp", "--no-portmap"])
            .args([encryption, "--no-incomplete-dir"])
            .args(["--download-dir", path_str(download)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn transmission-daemon");
        let transmission = Transmission {
            _daemon: Guard(daemon),
            rpc: format!("{ip}:{rpc_port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while transmission.remote(&["--list"]).is_none() {
            assert!(Instant::now() < deadline, "transmission-daemon RPC not up");
            std::thread::sleep(Duration::from_millis(100));
        }
        transmission
    }

    /// Runs transmission-remote against this daemon; its stdout when it succeeded.
    fn remote(&self, args: &[&str]) -> Option<String> {
        let (output, _) = run_with_timeout(
            Command::new("transmission-remote")
                .arg(&self.rpc)
                .args(args),
            Duration::from_secs(10),
        );
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub fn add(&self, torrent: &Path) {
        self.remote(&["--add", path_str(torrent)])
            .expect("transmission-remote --add");
    }

    /// Waits (bounded) until the first torrent is complete and verified.
    pub fn wait_complete(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let info = self
                .remote(&["--torrent", "1", "--info"])
                .unwrap_or_default();
            let done = info.contains("Percent Done: 100%") && !info.contains("Verif");
            if done {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Transmission not complete within {limit:?}:\n{info}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A hand-driven BitTorrent peer for wire-level tests: a raw TCP connection to a shoal
/// instance, past the handshake, reading and writing whole messages.
pub struct WirePeer {
    stream: std::net::TcpStream,
    /// The other side's 68-byte handshake.
    pub reply: [u8; 68],
}

impl WirePeer {
    /// Connects to `addr` for the torrent `info_hash`, offering the fast extension, and
    /// sends `first` (whole messages) right after the handshake.
    pub fn connect(addr: &str, info_hash: [u8; 20], first: &[u8]) -> Self {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut hello = vec![19u8];
        hello.extend_from_slice(b"BitTorrent protocol");
        hello.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x04]); // fast extension
        hello.extend_from_slice(&info_hash);
        // A peer id of its own: a second connection with the same one would be taken for
        // a duplicate connection to the same peer, and closed.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        hello.extend_from_slice(format!("-XX0001-wire{n:08}").as_bytes());
        hello.extend_from_slice(first);
        stream.write_all(&hello).unwrap();
        let mut reply = [0u8; 68];
        stream.read_exact(&mut reply).unwrap();
        WirePeer { stream, reply }
    }

    /// The address the other side sees us at.
    pub fn local_ip(&self) -> std::net::IpAddr {
        self.stream.local_addr().unwrap().ip()
    }

    /// The next message's body (id first; empty for a keep-alive).
    pub fn next(&mut self) -> Vec<u8> {
        use std::io::Read;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).unwrap();
        body
    }

    /// Requests the first block of `refused` and of `wanted`; expects a reject of the
    /// first and the second served (returning its data), panicking on a message with id
    /// `forbidden` meanwhile.
    pub fn expect_reject_then_serve(
        &mut self,
        refused: u32,
        wanted: u32,
        forbidden: u8,
    ) -> Vec<u8> {
        use std::io::Write;
        let request = |piece: u32| {
            let mut msg = vec![0, 0, 0, 13, 6];
            for v in [piece, 0, 16384] {
                msg.extend_from_slice(&v.to_be_bytes());
            }
            msg
        };
        self.stream
            .write_all(&[request(refused), request(wanted)].concat())
            .unwrap();
        let (mut rejected, mut served) = (false, None);
        while !(rejected && served.is_some()) {
            let body = self.next();
            match body.first() {
                Some(16) => {
                    assert_eq!(piece_of(&body), refused, "rejected");
                    rejected = true;
                }
                Some(7) => {
                    assert_eq!(piece_of(&body), wanted, "served");
                    served = Some(body[9..].to_vec());
                }
                Some(&id) if id == forbidden => panic!("unexpected message {body:?}"),
                _ => {}
            }
        }
        served.expect("served")
    }
}

/// The piece index a `have`, `request`, `piece`, `reject` or `allowed fast` is about.
pub fn piece_of(body: &[u8]) -> u32 {
    u32::from_be_bytes(body[1..5].try_into().unwrap())
}

/// A torrent's info-hash, as `shoal info` reports it.
pub fn info_hash_of(torrent: &Path) -> [u8; 20] {
    let info = shoal_info(path_str(torrent));
    let hex = info["info_hash"].as_str().unwrap().to_owned();
    std::array::from_fn(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap())
}

/// libtorrent downloads `torrent` into `out` on `ip:port` from the peer at
/// `peer_ip:peer_port`; panics unless it completes.
pub fn lt_get(torrent: &Path, out: &Path, ip: &str, port: u16, peer_ip: &str, peer_port: u16) {
    lt_get_over(
        LtWire::Default,
        torrent,
        out,
        (ip, port),
        (peer_ip, peer_port),
    );
}

/// [`lt_get`], connecting as `wire` says; `us` and `peer` are (IP, port).
pub fn lt_get_over(wire: LtWire, torrent: &Path, out: &Path, us: (&str, u16), peer: (&str, u16)) {
    require("/usr/bin/python3");
    std::fs::create_dir_all(out).unwrap();
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg("-c").arg(python_script(LT_GET)).args([
        path_str(torrent),
        path_str(out),
        us.0,
        &us.1.to_string(),
        peer.0,
        &peer.1.to_string(),
    ]);
    let stdout = run_ok(wire.apply(&mut cmd));
    assert!(stdout.starts_with("DONE"), "{stdout}");
}

/// JSON events from `lines` until `until` matches one (bounded by `limit`).
pub fn events_until(
    lines: &std::sync::mpsc::Receiver<String>,
    seen: &mut Vec<serde_json::Value>,
    limit: Duration,
    until: impl Fn(&serde_json::Value) -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            return false;
        };
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let done = until(&event);
        seen.push(event);
        if done {
            return true;
        }
    }
}
