//! Helpers shared by the end-to-end tests: running shoal and the real clients we test
//! against, with bounded waits, and generating test data.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};

/// The shoal binary under test.
pub fn shoal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
}

/// Panics with an install hint if an external tool the test needs is missing: a test
/// that silently skips is a test that cannot fail.
pub fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
        || Path::new(tool).is_file();
    assert!(
        found,
        "{tool} is not installed; run `sudo bash .ci/deps` (installs the test peers with apt-get)"
    );
}

/// Runs a command to completion, killing it if it outlives `limit`.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).ok();
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut v).ok();
        v
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    (
        Output {
            status,
            stdout: out.join().expect("reader"),
            stderr: err.join().expect("reader"),
        },
        elapsed,
    )
}

/// Runs a command that must succeed within a minute; returns its standard output.
pub fn run_ok(cmd: &mut Command) -> String {
    let (out, _) = run_with_timeout(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a Python snippet with Debian's interpreter, the one `python3-libtorrent` is for.
pub fn python(script: &str, args: &[&str]) -> String {
    require("/usr/bin/python3");
    run_ok(
        Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(script)
            .args(args),
    )
}

/// `shoal info --json` of a torrent or magnet.
pub fn shoal_info(target: &str) -> serde_json::Value {
    let out = run_ok(shoal().args(["info", "--json", target]));
    serde_json::from_str(&out).expect("shoal info --json prints JSON")
}

/// Writes `size` seeded random bytes to `path`, creating parent folders.
pub fn random_file(path: &Path, size: usize, seed: u64) {
    let mut data = vec![0u8; size];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(path, data).expect("write test data");
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

pub fn join(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Kills the child (by its PID, which we started) when dropped, also on test failure.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// libtorrent session settings for loopback tests: no discovery, TCP only, bound to `ip`.
pub const LT_SESSION: &str = r#"
import libtorrent as lt, sys, time
def session(ip, port):
    return lt.session({
        'listen_interfaces': '%s:%d' % (ip, port), 'outgoing_interfaces': ip,
        'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
        'enable_incoming_utp': False, 'enable_outgoing_utp': False,
        'allow_multiple_connections_per_ip': True, 'alert_mask': 0,
    })
"#;

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

/// A Python script that drives libtorrent: the session helper, then `body`.
pub fn python_script(body: &str) -> String {
    format!("{LT_SESSION}\n{body}")
}

/// Starts a process and waits (bounded) until it prints `marker` on stdout.
pub fn start_and_wait(mut cmd: Command, marker: &str, limit: Duration) -> Guard {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("piped");
    let guard = Guard(child);
    let (tx, rx) = std::sync::mpsc::channel();
    let marker = marker.to_owned();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains(&marker) {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{cmd:?} not ready within {limit:?}"));
    guard
}

/// Starts a libtorrent seed on `ip:port`; returns once it is seeding.
pub fn lt_seed(torrent: &Path, save: &Path, ip: &str, port: u16) -> Guard {
    require("/usr/bin/python3");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg("-c").arg(python_script(LT_SEED)).args([
        path_str(torrent),
        path_str(save),
        ip,
        &port.to_string(),
    ]);
    start_and_wait(cmd, "READY", Duration::from_secs(60))
}

/// Waits (bounded) until something accepts TCP connections on `addr`.
pub fn wait_listening(addr: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listening on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An aria2c command for loopback tests: bound to `ip`, no DHT, LPD or PEX.
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
