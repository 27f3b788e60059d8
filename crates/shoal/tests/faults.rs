//! Fault scenarios from TESTING.md on loopback: the only seed leaving midway and coming
//! back, a disk that fills up and then has room again, a reader of the JSON events
//! that goes away, bit rot that the resume state hides until `--recheck`, and a download
//! that gives up when data stops (`--stop-timeout`).

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// CPU seconds (user + system) a process we started has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn seed_cmd(torrent: &Path, src: &Path, state: &Path, listen: &str) -> Command {
    let mut cmd = shoal();
    cmd.args(["seed", path_str(torrent), path_str(src), "--json"])
        .args(["--listen", listen, "--state-dir", path_str(state)])
        .args(["--max-up", "4M"]);
    cmd
}

/// `shoal get --no-seed --json` from the one peer `seed`, its events on a pipe.
fn get_cmd(torrent: &Path, dir: &Path, listen: &str, seed: &str) -> Command {
    let mut cmd = shoal();
    cmd.args(["get", path_str(torrent), "-o", path_str(&dir.join("out"))])
        .args(["--no-seed", "--json", "--listen", listen])
        .args(["--state-dir", path_str(&dir.join("state"))])
        .args(["--peer", seed])
        .stdout(Stdio::piped());
    cmd
}

#[test]
fn only_seed_leaves_at_forty_percent_and_returns() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 24 * 1024 * 1024, "256K");
    let seed_addr = "127.0.0.131:17131";
    let seed_state = dir.path().join("seed-state");
    let mut seed = start_and_wait(
        seed_cmd(&torrent, &src, &seed_state, seed_addr),
        "\"started\"",
        Duration::from_secs(30),
    );
    let out = dir.path().join("out");
    let mut child = get_cmd(&torrent, dir.path(), "127.0.0.132:17132", seed_addr)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn shoal get");
    let pid = child.id();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let get = Guard(child);
    let deadline = Instant::now() + Duration::from_secs(90);
    // Until 40 % (38 of 96 pieces) is in, then kill the only seed.
    for line in lines.by_ref().map_while(Result::ok) {
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "piece" && event["have"].as_u64().unwrap() >= 38 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress");
    }
    seed.0.kill().unwrap();
    seed.0.wait().unwrap();
    // With no peer left, the downloader waits with back-off instead of spinning.
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(3));
    let spent = cpu_seconds(pid) - before;
    assert!(
        spent < 0.3,
        "{spent} CPU seconds in 3 s with no peers: a busy loop"
    );
    // The seed comes back on the same address; the download finishes.
    let _seed = start_and_wait(
        seed_cmd(&torrent, &src, &seed_state, seed_addr),
        "\"started\"",
        Duration::from_secs(30),
    );
    let mut completed = false;
    for line in lines.map_while(Result::ok) {
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        completed |= event["event"] == "completed";
        assert!(Instant::now() < deadline, "did not complete in time");
    }
    let mut get = get;
    let status = get.0.wait().unwrap();
    assert!(status.success() && completed, "shoal get: {status}");
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
}

/// `shoal get --json | head -1`: the reader of the events goes away after the first line.
/// The download goes on to the end and exits 0; nothing panics on the closed pipe.
#[test]
fn a_reader_that_goes_away_does_not_stop_the_download() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 8 * 1024 * 1024, "64K");
    let seed_addr = "127.0.0.135:17135";
    // At the seed's 4 MiB/s, the download lasts seconds after the reader has gone.
    let _seed = start_and_wait(
        seed_cmd(&torrent, &src, &dir.path().join("seed-state"), seed_addr),
        "\"started\"",
        Duration::from_secs(30),
    );
    let out = dir.path().join("out");
    let mut child = get_cmd(&torrent, dir.path(), "127.0.0.136:17136", seed_addr)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shoal get");
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut get = Guard(child);
    let mut first = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("\"event\""), "{first}");
    // The reader is dropped here: the pipe is closed.
    let status = get.wait_exit(Duration::from_secs(60), "the download ends");
    let mut errors = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut errors).unwrap();
    assert!(status.success(), "{status}: {errors}");
    assert!(!errors.contains("panicked"), "{errors}");
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
}

/// A download into a 3 MiB file system of a torrent whose first file (2 MiB) fits and
/// second (2 MiB) does not: a clear error naming the file, exit 1, the first file's
/// pieces verified; after the file system grows, a second run fetches only the rest.
/// Runs in a private mount namespace (`unshare`), so it needs no privileges.
#[test]
fn disk_full_is_a_clear_error_and_recovers_when_space_returns() {
    require("unshare");
    let dir = tempdir();
    let root = dir.path().join("src/two");
    random_file(&root.join("a.bin"), 2 * 1024 * 1024, 7);
    random_file(&root.join("b.bin"), 2 * 1024 * 1024, 8);
    let torrent = dir.path().join("two.torrent");
    run_ok(
        shoal()
            .args(["create", path_str(&root), "--piece-size", "64K"])
            .args(["-o", path_str(&torrent)]),
    );
    let _seed = shoal_seed(
        &torrent,
        &dir.path().join("src"),
        &dir.path().join("seed-state"),
        "127.0.0.133:17133",
    );
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let get = |extra: &str| {
        format!(
            "{shoal} get {torrent} -o {small}/out --no-seed --json --listen 127.0.0.134:17134 \
             --peer 127.0.0.133:17133 --state-dir {small}/state{extra}",
            shoal = env!("CARGO_BIN_EXE_shoal"),
            torrent = path_str(&torrent),
            small = path_str(&small),
        )
    };
    // One shell in one namespace: mount, fail, grow, succeed, report.
    let script = format!(
        "set -u\n\
         mount -t tmpfs -o size=3m tmpfs {small} || exit 90\n\
         {first} > {small}/first.json 2> {small}/first.err; echo \"first=$?\"\n\
         cat {small}/first.json\n\
         mount -o remount,size=16m {small} || exit 91\n\
         {second} > {small}/second.json 2>&1; echo \"second=$?\"\n\
         cmp {src}/a.bin {small}/out/two/a.bin && cmp {src}/b.bin {small}/out/two/b.bin && echo same\n\
         echo FIRST_ERR; cat {small}/first.err\n\
         echo SECOND; cat {small}/second.json\n",
        small = path_str(&small),
        first = get(""),
        second = get(""),
        src = path_str(&root),
    );
    let (output, _) = run_with_timeout(
        Command::new("unshare").args(["-rm", "sh", "-c", &script]),
        Duration::from_secs(90),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("first=1"),
        "the first run must fail: {stdout}"
    );
    let first_err = stdout
        .split("FIRST_ERR\n")
        .nth(1)
        .unwrap()
        .split("SECOND\n")
        .next()
        .unwrap();
    // Pieces are picked in random order, so either file may be the one that no longer
    // fits; the message names it, once.
    assert!(
        first_err.matches("No space left on device").count() == 1
            && (first_err.contains("a.bin") || first_err.contains("b.bin")),
        "{first_err}"
    );
    let verified_first = stdout
        .lines()
        .take_while(|l| !l.starts_with("FIRST_ERR"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "piece")
        .map(|e| e["have"].as_u64().unwrap())
        .max()
        .unwrap_or(0);
    assert!(
        verified_first > 0,
        "nothing was verified before the disk filled"
    );
    assert!(
        stdout.contains("second=0") && stdout.contains("same"),
        "{stdout}"
    );
    let second: Vec<serde_json::Value> = stdout
        .split("SECOND\n")
        .nth(1)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let started = second.iter().find(|e| e["event"] == "started").unwrap();
    let had = started["have"].as_u64().unwrap();
    assert!(
        had >= verified_first,
        "{verified_first} pieces were verified before the disk filled, {had} found: {started}"
    );
    let completed = second.iter().find(|e| e["event"] == "completed").unwrap();
    assert!(
        completed["downloaded"].as_u64().unwrap() <= (64 - had) * 64 * 1024,
        "only missing pieces are fetched again: {completed}"
    );
}

/// Bit rot under a resume state that still vouches for the data (the file keeps its
/// size and modification time): a plain restart trusts it, `--recheck` hashes the data
/// again, finds the bad piece and fetches it from the (libtorrent) seed.
#[test]
fn recheck_finds_bit_rot_that_the_resume_state_hides() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 4 * 1024 * 1024 + 1, "256K");
    let _seed = lt_seed(&torrent, &src, "127.0.0.137", 17137);
    let (out, state) = (dir.path().join("out"), dir.path().join("state"));
    let get = |extra: &[&str]| {
        let events = shoal_get_with(
            &torrent,
            &out,
            &state,
            "127.0.0.138:17138",
            &["127.0.0.137:17137"],
            extra,
        );
        let started = events_named(&events, "started")[0].clone();
        (started["have"].as_u64().unwrap(), events)
    };
    let (_, events) = get(&[]);
    assert!(events.iter().any(|e| e["event"] == "completed"));
    let copy = out.join("payload.bin");
    let kept = std::fs::metadata(&copy).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes[1_000_000] ^= 0x5a; // piece 3
    std::fs::write(&copy, bytes).unwrap();
    let file = std::fs::File::options().write(true).open(&copy).unwrap();
    file.set_modified(kept).unwrap();
    drop(file);

    let (have, _) = get(&[]);
    assert_eq!(have, 17, "the resume state is trusted");
    assert_ne!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(src.join("payload.bin")).unwrap()
    );
    let (have, events) = get(&["--recheck"]);
    assert_eq!(have, 16, "one piece fails the recheck: {events:?}");
    same_files(&src.join("payload.bin"), &copy);
}

/// `--stop-timeout`: the only seed goes away midway, and the download gives up once no
/// data has come for that long (exit 3, a `stalled` event) instead of waiting forever;
/// run again with a seed back, it resumes and completes.
#[test]
fn a_download_with_a_stop_timeout_gives_up_when_data_stops() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 4 * 1024 * 1024 + 1, "256K");
    let seed = "127.0.0.139:17139";
    let mut slow = shoal();
    slow.args(["seed", path_str(&torrent), path_str(&src), "--json"])
        .args(["--listen", seed, "--max-up", "512K", "--state-dir"])
        .arg(dir.path().join("seed-state"));
    let (mut seeding, _) = start_and_watch(slow, "\"started\"", Duration::from_secs(30));
    let mut get = get_cmd(&torrent, dir.path(), "127.0.0.140:17140", seed);
    get.args(["--stop-timeout", "2"]).stderr(Stdio::piped());
    let mut getting = Guard(get.spawn().expect("spawn shoal get"));
    let lines = std::io::BufReader::new(getting.0.stdout.take().unwrap()).lines();
    let mut events = Vec::new();
    let started = Instant::now();
    for line in lines.map_while(Result::ok) {
        // Some pieces, then the seed goes away.
        if line.contains("\"event\":\"piece\"") && seeding.0.try_wait().unwrap().is_none() {
            let _ = seeding.0.kill();
            let _ = seeding.0.wait();
        }
        events.push(line);
    }
    let status = getting.wait_exit(Duration::from_secs(20), "shoal get did not give up");
    assert_eq!(status.code(), Some(3), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e.contains("\"event\":\"stalled\",\"secs\":2")),
        "{events:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(15), "{events:?}");
    // The seed is back: the same command resumes and completes.
    let (_seeding, _) = start_and_watch(
        seed_cmd(&torrent, &src, &dir.path().join("seed-state"), seed),
        "\"started\"",
        Duration::from_secs(30),
    );
    let mut again = get_cmd(&torrent, dir.path(), "127.0.0.140:17140", seed);
    again.args(["--stop-timeout", "30"]);
    let (output, _) = run_with_timeout(&mut again, Duration::from_secs(60));
    assert!(output.status.success());
    same_files(
        &src.join("payload.bin"),
        &dir.path().join("out/payload.bin"),
    );
}
