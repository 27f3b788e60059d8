//! Helpers shared by the end-to-end tests: running shoal and the real clients we test
//! against, with bounded waits, and generating test data.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};

mod peers;
#[allow(unused_imports)] // the tests that start no peers
pub use peers::*;
mod tracker;
#[allow(unused_imports)] // the tests that use no tracker
pub use tracker::*;
mod netns;
#[allow(unused_imports)] // the tests on loopback alone
pub use netns::*;
mod relay;
#[allow(unused_imports)] // the tests with no far peer
pub use relay::*;

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
            // What it printed is the only clue to why it hung.
            let tail = |bytes: Vec<u8>| {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let cut = text.len().saturating_sub(8000);
                let cut = (cut..text.len())
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(0);
                text[cut..].to_owned()
            };
            panic!(
                "{cmd:?} did not finish within {limit:?}\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
                tail(out.join().expect("reader")),
                tail(err.join().expect("reader"))
            );
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
