//! `shoal daemon` and `shoal remote` (127.0.14.x, ports 184xx): several torrents in one
//! process on one port, fed by libtorrent seeds and read by libtorrent leechers that all
//! dial that one port, across a `kill -9` and a restart.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Where one test's daemon takes peers and API requests (tests run at once, so each
/// has its own).
struct At {
    listen: &'static str,
    rpc: &'static str,
}

const MAIN: At = At {
    listen: "127.0.14.3:18403",
    rpc: "127.0.14.3:18404",
};
const API: At = At {
    listen: "127.0.14.6:18413",
    rpc: "127.0.14.6:18414",
};
const CAPPED: At = At {
    listen: "127.0.14.7:18423",
    rpc: "127.0.14.7:18424",
};
const QUEUED: At = At {
    listen: "127.0.14.12:18443",
    rpc: "127.0.14.12:18444",
};
const SHARED: At = At {
    listen: "127.0.14.18:18453",
    rpc: "127.0.14.18:18454",
};
const WATCH: At = At {
    listen: "127.0.14.19:18463",
    rpc: "127.0.14.19:18464",
};
const PAGE: At = At {
    listen: "127.0.14.20:18473",
    rpc: "127.0.14.20:18474",
};
const LIMITS: At = At {
    listen: "127.0.14.21:18483",
    rpc: "127.0.14.21:18484",
};
const STALL: At = At {
    listen: "127.0.14.23:18493",
    rpc: "127.0.14.23:18494",
};
const TRACKED: At = At {
    listen: "127.0.14.25:18503",
    rpc: "127.0.14.25:18504",
};
const SEEDING: At = At {
    listen: "127.0.14.27:18513",
    rpc: "127.0.14.27:18514",
};
const VERIFY: At = At {
    listen: "127.0.14.30:18523",
    rpc: "127.0.14.30:18524",
};
const FILES: At = At {
    listen: "127.0.14.11:18433",
    rpc: "127.0.14.11:18434",
};

/// `shoal daemon` at `at` with its state in `state`, its downloads in `out`, told of
/// `peers`; returns once its API answers.
fn daemon(at: &At, (out, state): (&Path, &Path), peers: &[&str], extra: &[&str]) -> Guard {
    let mut cmd = shoal();
    cmd.args([
        "daemon",
        "-o",
        path_str(out),
        "--state-dir",
        path_str(state),
    ])
    .args(["--listen", at.listen, "--rpc", at.rpc, "--json"])
    .args(["--no-dht", "--no-port-map"])
    .args(extra);
    for peer in peers {
        cmd.args(["--peer", peer]);
    }
    start_and_wait(cmd, "\"listening\"", Duration::from_secs(30))
}

/// `shoal remote ARGS --json` against the daemon at `at`, with the token it keeps in
/// `state`, which must succeed; its JSON answer.
fn remote(at: &At, state: &Path, args: &[&str]) -> serde_json::Value {
    let mut cmd = shoal();
    cmd.args(["remote", "--rpc", at.rpc, "--json", "--state-dir"])
        .arg(state);
    let out = run_ok(cmd.args(args).env_remove("SHOAL_RPC_TOKEN"));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Adds the .torrent at `torrent` to the daemon at `at`; its info-hash.
fn add(at: &At, state: &Path, torrent: &Path) -> String {
    let added = remote(at, state, &["add", path_str(torrent)]);
    added["info_hash"]
        .as_str()
        .expect("an info-hash")
        .to_string()
}

/// The daemon's torrents, by name.
fn torrents(at: &At, state: &Path) -> std::collections::BTreeMap<String, serde_json::Value> {
    let list = remote(at, state, &["list"]);
    list["torrents"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_string(), t.clone()))
        .collect()
}

/// Waits (bounded) until every torrent named in `names` is in `state`.
fn wait_state(
    (at, state_dir): (&At, &Path),
    names: &[&str],
    state: &str,
    limit: Duration,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let deadline = Instant::now() + limit;
    loop {
        let list = torrents(at, state_dir);
        if names
            .iter()
            .all(|n| list.get(*n).is_some_and(|t| t["status"]["state"] == state))
        {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "not all {state} within {limit:?}: {list:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// libtorrent downloading `torrent` from the daemon's one port, as `wire` says.
fn lt_leecher(wire: LtWire, torrent: &Path, save: &Path, ip: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new("/usr/bin/python3");
    cmd.arg("-c").arg(python_script(LT_GET)).args([
        path_str(torrent),
        path_str(save),
        ip,
        "18409",
        "127.0.14.3",
        "18403",
    ]);
    wire.apply(&mut cmd);
    cmd
}

/// Two torrents added to one daemon (a .torrent, and a magnet link whose metadata comes
/// from its seed) download from libtorrent seeds; then libtorrent leechers fetch both
/// from the daemon's one port at once, one over RC4-encrypted TCP, one over uTP. After
/// `kill -9` the daemon takes both up again without downloading a byte; a paused torrent
/// stays paused across a restart, and a removed one goes with its files.
#[test]
fn a_daemon_runs_many_torrents_on_one_port_across_a_kill() {
    require("/usr/bin/python3");
    let dir = tempdir();
    let src = dir.path().join("src");
    let film = src.join("film.bin");
    random_file(&film, 6 << 20, 1);
    let album = src.join("album");
    for (i, size) in [(1, 1_500_000), (2, 700_001), (3, 2_000_000)] {
        random_file(&album.join(format!("track {i}.bin")), size, 10 + i as u64);
    }
    let (film_torrent, album_torrent) = (
        dir.path().join("film.torrent"),
        dir.path().join("album.torrent"),
    );
    shoal_create(&film, "256K", &film_torrent, &[]);
    shoal_create(&album, "256K", &album_torrent, &[]);
    let album_hash = shoal_info(path_str(&album_torrent))["info_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let seeds = [
        lt_seed(&film_torrent, &src, "127.0.14.1", 18401),
        lt_seed(&album_torrent, &src, "127.0.14.2", 18402),
    ];
    let (out, state) = (dir.path().join("out"), dir.path().join("state"));
    let seeds_at = ["127.0.14.1:18401", "127.0.14.2:18402"];
    let mut daemon_run = daemon(&MAIN, (&out, &state), &seeds_at, &[]);
    assert_eq!(
        remote(&MAIN, &state, &["list"])["torrents"],
        serde_json::json!([])
    );
    // The token it made is its owner's alone.
    let token = std::fs::metadata(state.join("daemon").join("rpc-token")).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(&token.permissions());
    assert_eq!(mode & 0o777, 0o600);
    remote(&MAIN, &state, &["add", path_str(&film_torrent)]);
    let magnet = format!("magnet:?xt=urn:btih:{album_hash}&dn=album");
    remote(&MAIN, &state, &["add", &magnet]);
    let list = wait_state(
        (&MAIN, &state),
        &["film.bin", "album"],
        "seeding",
        Duration::from_secs(60),
    );
    same_files(&film, &out.join("film.bin"));
    for i in 1..=3 {
        let name = format!("track {i}.bin");
        same_files(&album.join(&name), &out.join("album").join(&name));
    }
    assert_eq!(list["film.bin"]["status"]["downloaded"], 6 << 20);
    assert!(
        state
            .join("daemon")
            .join(format!("{album_hash}.torrent"))
            .is_file(),
        "metadata kept"
    );
    drop(seeds);

    // Two libtorrent leechers at once, each naming its torrent on the same port.
    let leechers = dir.path().join("leechers");
    let mut film_get = lt_leecher(
        LtWire::Rc4Only,
        &film_torrent,
        &leechers.join("film"),
        "127.0.14.4",
    );
    let mut album_get = lt_leecher(
        LtWire::UtpOnly,
        &album_torrent,
        &leechers.join("album"),
        "127.0.14.5",
    );
    let film_done =
        std::thread::spawn(move || run_with_timeout(&mut film_get, Duration::from_secs(60)).0);
    let (album_done, _) = run_with_timeout(&mut album_get, Duration::from_secs(60));
    let film_done = film_done.join().unwrap();
    for (what, done) in [("film (RC4)", &film_done), ("album (uTP)", &album_done)] {
        assert!(
            String::from_utf8_lossy(&done.stdout).contains("DONE"),
            "{what}: {}",
            String::from_utf8_lossy(&done.stdout)
        );
    }
    same_files(&film, &leechers.join("film").join("film.bin"));
    same_files(
        &album.join("track 2.bin"),
        &leechers.join("album").join("album").join("track 2.bin"),
    );

    // kill -9, and a restart: both seed again from their resume state.
    let _ = daemon_run.0.kill();
    let _ = daemon_run.0.wait();
    let mut daemon_run = daemon(&MAIN, (&out, &state), &[], &[]);
    let list = wait_state(
        (&MAIN, &state),
        &["film.bin", "album"],
        "seeding",
        Duration::from_secs(30),
    );
    for torrent in list.values() {
        assert_eq!(torrent["status"]["resumed"], true, "{torrent:#}");
        assert_eq!(torrent["status"]["downloaded"], 0, "{torrent:#}");
        assert_eq!(torrent["progress"], 1.0, "{torrent:#}");
    }

    // Paused stays paused across a restart; removed goes, with its files only.
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    remote(&MAIN, &state, &["pause", &album_hash[..6]]);
    let film_hash = list["film.bin"]["info_hash"].as_str().unwrap().to_string();
    let shown = remote(&MAIN, &state, &["show", &film_hash[..8]]);
    assert_eq!(shown["name"], "film.bin");
    assert!(shown["peers"].is_array(), "{shown:#}");
    remote(&MAIN, &state, &["remove", &film_hash, "--delete-data"]);
    assert!(!out.join("film.bin").exists(), "the film's data is deleted");
    assert!(out.join("notes.txt").is_file(), "nothing else is");
    drop(daemon_run);
    daemon_run = daemon(&MAIN, (&out, &state), &[], &[]);
    let list = torrents(&MAIN, &state);
    assert_eq!(list.keys().collect::<Vec<_>>(), ["album"]);
    assert_eq!(list["album"]["status"]["state"], "paused");
    remote(&MAIN, &state, &["resume", &album_hash]);
    wait_state(
        (&MAIN, &state),
        &["album"],
        "seeding",
        Duration::from_secs(30),
    );
    drop(daemon_run);
}

/// A magnet link added with a file beyond its torrent's stops on it; given one file to
/// fetch, in order, it fetches that file and seeds it; the choice survives `kill -9`;
/// selecting every file then restarts it to fetch the rest, without checking what it
/// has.
#[test]
fn a_daemon_fetches_the_files_it_is_asked_for() {
    require("/usr/bin/python3");
    let dir = tempdir();
    let src = dir.path().join("src");
    let album = src.join("album");
    let sizes = [1_500_000, 700_001, 2_000_000];
    for (i, size) in sizes.iter().enumerate() {
        random_file(
            &album.join(format!("track {}.bin", i + 1)),
            *size,
            50 + i as u64,
        );
    }
    let torrent = dir.path().join("album.torrent");
    shoal_create(&album, "256K", &torrent, &[]);
    let _seed = lt_seed(&torrent, &src, "127.0.14.10", 18431);
    let (out, state) = (dir.path().join("out"), dir.path().join("state"));
    let folders = (out.as_path(), state.as_path());
    let seed_at = ["127.0.14.10:18431"];
    let mut daemon_run = daemon(&FILES, folders, &seed_at, &[]);
    // A magnet link's list meets its files only with its metadata: a number beyond
    // them stops it there, and a good list starts it again.
    let id = shoal_info(path_str(&torrent))["info_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let magnet = format!("magnet:?xt=urn:btih:{id}&dn=album");
    remote(&FILES, &state, &["add", &magnet, "--select-file", "2,4"]);
    let list = wait_state(
        (&FILES, &state),
        &["album"],
        "error",
        Duration::from_secs(60),
    );
    let error = list["album"]["status"]["error"].as_str().unwrap();
    assert!(error.contains("3 files"), "{error}");
    remote(
        &FILES,
        &state,
        &["set", &id, "--select-file", "2", "--sequential"],
    );
    wait_state(
        (&FILES, &state),
        &["album"],
        "seeding",
        Duration::from_secs(60),
    );
    let shown = remote(&FILES, &state, &["show", &id]);
    assert_eq!(shown["files_selected"], "2", "{shown:#}");
    assert_eq!(shown["sequential"], true);
    assert_eq!(shown["progress"], 1.0);
    assert_eq!(shown["wanted_size"], sizes[1]);
    let files = shown["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    for (i, file) in files.iter().enumerate() {
        assert_eq!(file["path"], format!("album/track {}.bin", i + 1));
        assert_eq!(file["wanted"], i == 1, "{file}");
        // The neighbours get the bytes of the pieces they share with track 2 only.
        assert_eq!(file["have"] == file["size"], i == 1, "{file}");
    }
    same_files(
        &album.join("track 2.bin"),
        &out.join("album").join("track 2.bin"),
    );

    // The choice is kept: after kill -9 the torrent seeds its one file again.
    let _ = daemon_run.0.kill();
    let _ = daemon_run.0.wait();
    let mut daemon_run = daemon(&FILES, folders, &seed_at, &[]);
    let list = wait_state(
        (&FILES, &state),
        &["album"],
        "seeding",
        Duration::from_secs(30),
    );
    assert_eq!(list["album"]["files_selected"], "2");
    assert_eq!(list["album"]["progress"], 1.0);

    let args = ["set", &id[..10], "--select-file", "all", "--rarest-first"];
    remote(&FILES, &state, &args);
    let list = wait_state(
        (&FILES, &state),
        &["album"],
        "seeding",
        Duration::from_secs(60),
    );
    let album_now = &list["album"];
    assert_eq!(album_now["files_selected"], serde_json::Value::Null);
    assert_eq!(album_now["sequential"], false);
    assert_eq!(album_now["status"]["resumed"], true, "{album_now:#}");
    for i in 1..=3 {
        let name = format!("track {i}.bin");
        same_files(&album.join(&name), &out.join("album").join(&name));
    }
    let table = run_ok(
        shoal()
            .args(["remote", "--rpc", FILES.rpc, "--state-dir"])
            .arg(&state)
            .args(["files", &id[..8]])
            .env_remove("SHOAL_RPC_TOKEN"),
    );
    assert_eq!(table.matches("100.0%").count(), 3, "{table}");
    assert!(table.contains("album/track 3.bin"), "{table}");

    // Moved elsewhere, it seeds from there at once: nothing fetched or checked again,
    // and nothing but its own files left its old folder.
    std::fs::write(out.join("album").join("mine.txt"), "mine").unwrap();
    let elsewhere = dir.path().join("elsewhere");
    remote(&FILES, &state, &["move", &id[..8], path_str(&elsewhere)]);
    let list = wait_state(
        (&FILES, &state),
        &["album"],
        "seeding",
        Duration::from_secs(30),
    );
    assert_eq!(list["album"]["dir"], path_str(&elsewhere));
    assert_eq!(list["album"]["status"]["resumed"], true, "{list:#?}");
    assert_eq!(list["album"]["status"]["downloaded"], 0, "{list:#?}");
    for i in 1..=3 {
        let name = format!("track {i}.bin");
        same_files(&album.join(&name), &elsewhere.join("album").join(&name));
        assert!(
            !out.join("album").join(&name).exists(),
            "{name} left behind"
        );
    }
    assert!(out.join("album").join("mine.txt").is_file());

    // A move back cut short by kill -9: the list says where to, one file is moved, one
    // half copied, one not yet. The next start finishes it, and seeds from there with
    // nothing fetched again.
    let _ = daemon_run.0.kill();
    let _ = daemon_run.0.wait();
    let (here, there) = (elsewhere.join("album"), out.join("album"));
    std::fs::rename(here.join("track 1.bin"), there.join("track 1.bin")).unwrap();
    std::fs::write(there.join("track 2.bin"), b"half").unwrap();
    let list_path = state.join("daemon").join("torrents.json");
    let mut list: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&list_path).unwrap()).unwrap();
    list[0]["moving_to"] = serde_json::json!(path_str(&out));
    std::fs::write(&list_path, list.to_string()).unwrap();
    let _daemon = daemon(&FILES, folders, &seed_at, &[]);
    let list = wait_state(
        (&FILES, &state),
        &["album"],
        "seeding",
        Duration::from_secs(30),
    );
    assert_eq!(list["album"]["dir"], path_str(&out), "{list:#?}");
    assert_eq!(list["album"]["status"]["resumed"], true, "{list:#?}");
    assert_eq!(list["album"]["status"]["downloaded"], 0, "{list:#?}");
    for i in 1..=3 {
        let name = format!("track {i}.bin");
        same_files(&album.join(&name), &there.join(&name));
    }
    assert!(!here.exists(), "the old folder is emptied");
    let saved = std::fs::read_to_string(&list_path).unwrap();
    assert!(!saved.contains("moving_to"), "{saved}");
}

/// Two torrents for a daemon to fetch while it is watched.
struct Pair<'a> {
    at: &'a At,
    /// Each torrent's libtorrent seeds (IP, port), all of which the daemon is told of.
    seeds: [&'a [(&'a str, u16)]; 2],
    /// The daemon's flags, beside a shared 1 MiB/s download limit that keeps each
    /// transfer going for seconds.
    limits: &'a [&'a str],
    /// Each torrent's size.
    size: usize,
}

type Poll = (
    serde_json::Value,
    std::collections::BTreeMap<String, serde_json::Value>,
);

/// Adds `pair`'s torrents ("one.bin", then "two.bin" once `second_when` says so of a
/// poll) and polls the daemon every 100 ms until both seed, then checks their files;
/// returns what each poll saw: the session, and the torrents by name.
fn pair_watched(pair: Pair, second_when: impl Fn(&Poll) -> bool) -> Vec<Poll> {
    require("/usr/bin/python3");
    let (at, dir) = (pair.at, tempdir());
    let mut made = Vec::new();
    let mut seeds = Vec::new();
    for (i, name) in ["one.bin", "two.bin"].iter().enumerate() {
        let src = dir.path().join(format!("src{i}"));
        let file = src.join(name);
        random_file(&file, pair.size, 40 + i as u64);
        let torrent = dir.path().join(format!("{name}.torrent"));
        shoal_create(&file, "256K", &torrent, &[]);
        for (ip, port) in pair.seeds[i] {
            seeds.push((lt_seed(&torrent, &src, ip, *port), format!("{ip}:{port}")));
        }
        made.push((file, torrent));
    }
    let (out, state) = (dir.path().join("out"), dir.path().join("state"));
    let seeds_at: Vec<&str> = seeds.iter().map(|(_, at)| at.as_str()).collect();
    let limits = [pair.limits, &["--max-down", "1M"]].concat();
    let _daemon = daemon(at, (&out, &state), &seeds_at, &limits);
    remote(at, &state, &["add", path_str(&made[0].1)]);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let mut polls: Vec<Poll> = Vec::new();
    let mut second_added = false;
    loop {
        let session = remote(at, &state, &["session"]);
        let list = torrents(at, &state);
        let seeding = |name: &str| {
            list.get(name)
                .is_some_and(|t| t["status"]["state"] == "seeding")
        };
        let done = seeding("one.bin") && seeding("two.bin");
        polls.push((session, list));
        if !second_added && second_when(polls.last().unwrap()) {
            remote(at, &state, &["add", path_str(&made[1].1)]);
            second_added = true;
        }
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not both seeding: {:#?}",
            polls.last()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Both sizes at 1 MiB/s, less the limiter's first second's burst.
    let took = started.elapsed();
    assert!(
        took > Duration::from_secs(2) && polls.len() >= 5,
        "the transfers took {took:?}, {} polls: too quick to watch",
        polls.len()
    );
    for (file, _) in &made {
        same_files(file, &out.join(file.file_name().unwrap()));
    }
    polls
}

/// A torrent's connection count in a poll.
fn peers_of(poll: &Poll, name: &str) -> u64 {
    poll.1
        .get(name)
        .map_or(0, |t| t["status"]["peers"].as_u64().unwrap())
}

/// `--max-peers-total` holds for all the torrents together: with room for one
/// connection, two torrents whose seeds are both known download one after the other
/// (a finished torrent closes its connection to its seed, which frees the room), and
/// never hold two connections at once.
#[test]
fn a_daemon_keeps_to_its_total_connection_limit() {
    let pair = Pair {
        at: &CAPPED,
        seeds: [&[("127.0.14.8", 18425)], &[("127.0.14.9", 18426)]],
        limits: &["--max-peers-total", "1"],
        size: 2 << 20,
    };
    let polls = pair_watched(pair, |_| true);
    assert_eq!(polls[0].0["connections"]["limit"], 1, "{:#}", polls[0].0);
    // The torrents' own counts (each follows its connections as they open and close),
    // not the session's, which its limit bounds by construction.
    for poll in &polls {
        let peers = peers_of(poll, "one.bin") + peers_of(poll, "two.bin");
        assert!(peers <= 1, "two connections at once: {poll:#?}");
    }
    for name in ["one.bin", "two.bin"] {
        assert!(
            polls.iter().any(|poll| peers_of(poll, name) == 1),
            "{name} never connected"
        );
    }
}

/// Under `--max-peers-total`, a torrent that finds every connection taken by another
/// still gets its share: with room for two, a torrent holding both (one to each of its
/// two seeds) lets one go for a torrent added later, and they fetch side by side.
#[test]
fn a_daemon_shares_its_connection_limit_among_torrents() {
    let pair = Pair {
        at: &SHARED,
        seeds: [
            &[("127.0.14.15", 18455), ("127.0.14.16", 18456)],
            &[("127.0.14.17", 18457)],
        ],
        limits: &["--max-peers-total", "2"],
        size: 4 << 20,
    };
    // The second is added once the first holds both connections.
    let polls = pair_watched(pair, |poll| peers_of(poll, "one.bin") == 2);
    for poll in &polls {
        let peers = peers_of(poll, "one.bin") + peers_of(poll, "two.bin");
        assert!(peers <= 2, "more than two connections: {poll:#?}");
    }
    let shared = polls.iter().any(|poll| {
        let downloading = |name| poll.1[name]["status"]["state"] == "downloading";
        peers_of(poll, "one.bin") == 1
            && peers_of(poll, "two.bin") == 1
            && downloading("one.bin")
            && downloading("two.bin")
    });
    assert!(
        shared,
        "never one connection each while both downloaded: {:#?}",
        polls.last()
    );
}

/// `--max-active-downloads 1`: of two torrents added at once, the second waits, queued,
/// until the first is complete; never do both fetch at once.
#[test]
fn a_daemon_queues_downloads_beyond_its_limit() {
    let pair = Pair {
        at: &QUEUED,
        seeds: [&[("127.0.14.13", 18445)], &[("127.0.14.14", 18446)]],
        limits: &["--max-active-downloads", "1"],
        size: 2 << 20,
    };
    let polls = pair_watched(pair, |_| true);
    let fetching = ["fetching_metadata", "checking", "downloading"];
    let mut queued = 0;
    for (_, list) in &polls {
        let states: Vec<&str> = list
            .values()
            .map(|t| t["status"]["state"].as_str().unwrap())
            .collect();
        let active = states.iter().filter(|s| fetching.contains(s)).count();
        assert!(active <= 1, "two downloads at once: {list:#?}");
        queued += usize::from(states.contains(&"queued"));
    }
    assert!(
        queued >= 5,
        "the second torrent was queued in {queued} polls only"
    );
}

/// `--watch`: a .torrent and a .magnet file dropped into the folder are added and
/// renamed `.added`; a damaged .torrent is renamed `.invalid`; other files are left
/// alone.
#[test]
fn a_daemon_adds_what_is_dropped_into_its_watched_folder() {
    let dir = tempdir();
    let (_, torrent) = make_single(dir.path(), 100_000, "16K");
    let (out, state, watched) = (
        dir.path().join("out"),
        dir.path().join("state"),
        dir.path().join("watched"),
    );
    let watch = ["--watch", path_str(&watched)];
    let _daemon = daemon(&WATCH, (&out, &state), &[], &watch);
    std::fs::copy(&torrent, watched.join("payload.torrent")).unwrap();
    let hash = "c12fe1c06bba254a9dc9f519b335aa7c1367a8a2";
    let link = format!("magnet:?xt=urn:btih:{hash}&dn=linked\n");
    std::fs::write(watched.join("link.magnet"), link).unwrap();
    std::fs::write(watched.join("broken.torrent"), b"d4:infod").unwrap();
    std::fs::write(watched.join("notes.txt"), b"mine").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let expected = [
        "broken.torrent.invalid",
        "link.magnet.added",
        "notes.txt",
        "payload.torrent.added",
    ];
    loop {
        let mut names: Vec<String> = std::fs::read_dir(&watched)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        if names == expected {
            break;
        }
        assert!(Instant::now() < deadline, "the folder holds {names:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let list = torrents(&WATCH, &state);
    assert_eq!(
        list.keys().collect::<Vec<_>>(),
        ["linked", "payload.bin"],
        "{list:#?}"
    );
}

/// The web page: served without the token (it asks for it) under a policy that runs
/// only its own script, refused under another host name; its script's API client,
/// under node, drives the daemon as the page would.
#[test]
fn a_daemon_serves_a_web_page_whose_client_drives_it() {
    require("curl");
    require("node");
    require("/usr/share/nodejs/jsdom/package.json");
    let dir = tempdir();
    let album = dir.path().join("album");
    for i in 1..=3 {
        random_file(&album.join(format!("{i}.bin")), 40_000, 60 + i);
    }
    let torrent = dir.path().join("album.torrent");
    shoal_create(&album, "16K", &torrent, &[]);
    let (out, state) = (dir.path().join("out"), dir.path().join("state"));
    let _daemon = daemon(&PAGE, (&out, &state), &[], &["--token", "t0ken"]);
    let base = format!("http://{}", PAGE.rpc);
    let fetch = |path: &str, extra: &[&str]| -> String {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-s", "-i", "--max-time", "10"])
            .args(extra)
            .arg(format!("{base}{path}"));
        run_ok(&mut cmd)
    };
    let page = fetch("/", &[]);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("content-type: text/html"), "{page}");
    assert!(page.contains("script-src 'self'"), "{page}");
    assert!(page.contains("x-frame-options: DENY"), "{page}");
    assert!(page.contains("<script src=\"/ui.js\""), "{page}");
    let script = fetch("/ui.js", &[]);
    assert!(script.contains("content-type: text/javascript"), "{script}");
    assert!(fetch("/ui.css", &[]).starts_with("HTTP/1.1 200"));
    let rebound = fetch("/", &["-H", "Host: evil.example"]);
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    assert!(fetch("/api/torrents", &[]).starts_with("HTTP/1.1 401"));

    let ui = concat!(env!("CARGO_MANIFEST_DIR"), "/src/commands/daemon/ui/ui.js");
    let test = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ui_client.js");
    let mut node = std::process::Command::new("node");
    node.args([test, ui, &base, "t0ken", path_str(&torrent)]);
    node_ok(&mut node, "UI OK");

    // The page itself in jsdom, loaded from the daemon and clicked through.
    let page = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ui_page.js");
    let mut node = std::process::Command::new("node");
    node.args([page, &base, "t0ken", path_str(&torrent)])
        .env("NODE_PATH", "/usr/share/nodejs");
    node_ok(&mut node, "PAGE OK");
}

/// Runs a node script to its end, which must succeed and print `marker`.
fn node_ok(node: &mut std::process::Command, marker: &str) {
    let (output, _) = run_with_timeout(node, Duration::from_secs(60));
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains(marker),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Rate limits change while torrents run: a download held to 256 KiB/s by the session's
/// limit, then by its own within it once the session's is lifted, finishes at once when
/// `remote set --max-down 0` lifts its own.
#[test]
fn a_daemon_changes_its_rate_limits_while_it_runs() {
    require("/usr/bin/python3");
    let dir = tempdir();
    let src = dir.path().join("src");
    let file = src.join("big.bin");
    random_file(&file, 8 << 20, 70);
    let torrent = dir.path().join("big.torrent");
    shoal_create(&file, "256K", &torrent, &[]);
    let _seed = lt_seed(&torrent, &src, "127.0.14.22", 18485);
    let (out, state) = (dir.path().join("out"), dir.path().join("state"));
    let flags = ["--max-down", "256K"];
    let _daemon = daemon(&LIMITS, (&out, &state), &["127.0.14.22:18485"], &flags);
    let session = remote(&LIMITS, &state, &["session"]);
    assert_eq!(session["max_down"], 256 * 1024, "{session:#}");
    assert_eq!(session["max_up"], serde_json::Value::Null);
    remote(&LIMITS, &state, &["add", path_str(&torrent)]);
    wait_state(
        (&LIMITS, &state),
        &["big.bin"],
        "downloading",
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_secs(2));
    let held = torrents(&LIMITS, &state)["big.bin"]["status"]["have"]
        .as_u64()
        .unwrap();
    // Two seconds at 256 KiB/s, a second's burst, and what was on the way.
    assert!(held <= 1536 * 1024, "{held} bytes in 2 s under 256 KiB/s");
    // The torrent's own limit, then the session's lifted: the torrent's still holds.
    let hash = torrents(&LIMITS, &state)["big.bin"]["info_hash"]
        .as_str()
        .unwrap()
        .to_string();
    remote(&LIMITS, &state, &["set", &hash, "--max-down", "256K"]);
    let session = remote(
        &LIMITS,
        &state,
        &["session", "--max-down", "0", "--max-up", "1M"],
    );
    assert_eq!(session["max_down"], serde_json::Value::Null, "{session:#}");
    assert_eq!(session["max_up"], 1 << 20);
    let before = torrents(&LIMITS, &state)["big.bin"]["status"]["have"]
        .as_u64()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let shown = remote(&LIMITS, &state, &["show", &hash]);
    assert_eq!(shown["max_down"], 256 * 1024, "{shown:#}");
    let gained = shown["status"]["have"].as_u64().unwrap() - before;
    assert!(
        gained <= 1536 * 1024,
        "{gained} bytes in 2 s under its own 256 KiB/s"
    );
    let lifted = Instant::now();
    remote(&LIMITS, &state, &["set", &hash, "--max-down", "0"]);
    // The rest (5 MiB or more) would take 20 s under the old limit.
    wait_state(
        (&LIMITS, &state),
        &["big.bin"],
        "seeding",
        Duration::from_secs(30),
    );
    let took = lifted.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "{took:?} to finish once lifted"
    );
    same_files(&file, &out.join("big.bin"));
}

/// A magnet link nobody serves holds the one download turn only for
/// `--queue-stalled-secs`; then the torrent queued behind it starts, and completes, and
/// the `--on-complete` program is run for it (once).
#[test]
fn a_stalled_download_gives_its_turn_back() {
    require("/usr/bin/python3");
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 1 << 20, "256K");
    let _seed = lt_seed(&torrent, &src, "127.0.14.24", 18495);
    let (out, state) = (dir.path().join("out"), dir.path().join("state"));
    // --on-complete, for the one that completes.
    let (hook, told) = (dir.path().join("done.sh"), dir.path().join("told"));
    let script = format!("#!/bin/sh\necho \"$1|$2|$3\" >> {}\n", told.display());
    std::fs::write(&hook, script).unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let flags = [
        "--max-active-downloads",
        "1",
        "--queue-stalled-secs",
        "2",
        "--on-complete",
        path_str(&hook),
    ];
    let _daemon = daemon(&STALL, (&out, &state), &["127.0.14.24:18495"], &flags);
    let nobody = "magnet:?xt=urn:btih:00112233445566778899aabbccddeeff00112233&dn=nobody";
    remote(&STALL, &state, &["add", nobody]);
    remote(&STALL, &state, &["add", path_str(&torrent)]);
    let queued = Duration::from_secs(10);
    let list = wait_state((&STALL, &state), &["payload.bin"], "queued", queued);
    assert_eq!(
        list["nobody"]["status"]["state"], "fetching_metadata",
        "{list:#?}"
    );
    let list = wait_state(
        (&STALL, &state),
        &["payload.bin"],
        "seeding",
        Duration::from_secs(30),
    );
    assert_eq!(list["nobody"]["status"]["state"], "fetching_metadata");
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    let hash = list["payload.bin"]["info_hash"].as_str().unwrap();
    let expected = format!("{hash}|payload.bin|{}\n", out.join("payload.bin").display());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&told).unwrap_or_default() != expected {
        assert!(
            Instant::now() < deadline,
            "--on-complete said {:?}",
            std::fs::read_to_string(&told)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A torrent's view lists its trackers as they answer: counts from a working one, the
/// failures of one nobody runs; `remote reannounce` asks them again at once.
#[test]
fn a_daemon_shows_what_each_tracker_said() {
    let dir = tempdir();
    let file = dir.path().join("src").join("tracked.bin");
    random_file(&file, 100_000, 80);
    let torrent = dir.path().join("tracked.torrent");
    let (live, dead) = (
        "http://127.0.14.26:18505/announce",
        "http://127.0.14.26:18506/announce",
    );
    // The dead one first: the next tier is asked once it fails (BEP 12).
    shoal_create(&file, "16K", &torrent, &["-t", dead, "-t", live]);
    let _tracker = shoal_tracker("127.0.14.26:18505", &[]);
    let (out, state) = (dir.path().join("out"), dir.path().join("state"));
    let _daemon = daemon(&TRACKED, (&out, &state), &[], &[]);
    let added = remote(&TRACKED, &state, &["add", path_str(&torrent)]);
    let id = added["info_hash"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shown = remote(&TRACKED, &state, &["show", &id]);
        let trackers = shown["trackers"].as_array().unwrap().clone();
        let by_url = |url: &str| trackers.iter().find(|t| t["url"] == url).cloned();
        let (working, failing) = (by_url(live), by_url(dead));
        let answered = working.as_ref().is_some_and(|t| t["answered_at"].is_u64());
        let failed = failing
            .as_ref()
            .is_some_and(|t| t["failures"].as_u64() >= Some(1));
        if answered && failed {
            let working = working.unwrap();
            assert_eq!(working["leechers"], 1, "we are its one leecher: {working}");
            assert_eq!(working["message"], serde_json::Value::Null);
            assert!(failing.unwrap()["message"].is_string());
            break;
        }
        assert!(Instant::now() < deadline, "{trackers:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Asked again: the failing one too, well before its 30 s back-off ends (the live
    // one's min interval is 5 s).
    let failures = |shown: &serde_json::Value| {
        let trackers = shown["trackers"].as_array().unwrap();
        let dead = trackers.iter().find(|t| t["url"] == dead).unwrap();
        dead["failures"].as_u64().unwrap()
    };
    let before = failures(&remote(&TRACKED, &state, &["show", &id]));
    remote(&TRACKED, &state, &["reannounce", &id]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let shown = remote(&TRACKED, &state, &["show", &id]);
        if failures(&shown) > before {
            break;
        }
        assert!(Instant::now() < deadline, "not asked again: {shown:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The same for a person.
    let shown = run_ok(
        shoal()
            .args(["remote", "--rpc", TRACKED.rpc, "--state-dir"])
            .arg(&state)
            .args(["show", &id[..6]])
            .env_remove("SHOAL_RPC_TOKEN"),
    );
    assert!(shown.starts_with("tracked.bin\n"), "{shown}");
    assert!(
        shown.contains(&format!("{live}  0 seeders, 1 leechers")),
        "{shown}"
    );
    assert!(
        shown.contains(dead) && shown.contains("peers (0)"),
        "{shown}"
    );
}

/// The API refuses what a web page could send: a change without a JSON body, a host
/// name that is not the server's; and with a token, a request without it.
#[test]
fn the_api_refuses_requests_a_web_page_could_forge() {
    require("curl");
    let dir = tempdir();
    let (out, state) = (dir.path().join("out"), dir.path().join("state"));
    let _daemon = daemon(&API, (&out, &state), &[], &["--token", "s3cret"]);
    let status = |args: &[&str]| -> String {
        let mut cmd = std::process::Command::new("curl");
        cmd.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(args);
        run_ok(&mut cmd)
    };
    let url = format!("http://{}/api/torrents", API.rpc);
    let bearer = "Authorization: Bearer s3cret";
    assert_eq!(status(&[&url]), "401");
    assert_eq!(status(&["-H", "Authorization: Bearer s3cre", &url]), "401");
    assert_eq!(status(&["-H", bearer, &url]), "200");
    // A form post (text/plain needs no CORS preflight).
    let form = ["-H", bearer, "-H", "Content-Type: text/plain", "-d", "{}"];
    assert_eq!(status(&[&form[..], &[url.as_str()]].concat()), "415");
    assert_eq!(
        status(&["-H", bearer, "-H", "Host: evil.example", &url]),
        "403"
    );
    let post_to = |url: &str, body: &str| -> String {
        let json = "Content-Type: application/json";
        status(&["-H", bearer, "-H", json, "-d", body, url])
    };
    let post = |body: &str| post_to(&url, body);
    assert_eq!(post("{\"torrent\":\"zz\"}"), "400");
    let (_, torrent) = make_single(dir.path(), 100_000, "16K");
    let hex: String = std::fs::read(&torrent)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // A folder relative to wherever the daemon runs means nothing to the client.
    let relative = format!("{{\"torrent\":\"{hex}\",\"dir\":\"downloads\"}}");
    assert_eq!(post(&relative), "400");
    let paused = format!("{{\"torrent\":\"{hex}\",\"paused\":true}}");
    assert_eq!(post(&paused), "201");
    assert_eq!(post(&paused), "409", "added twice");
    // A file list must fit the torrent's one file.
    let hash = shoal_info(path_str(&torrent))["info_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let set = format!("{url}/{hash}/set");
    assert_eq!(post_to(&set, "{\"files\":\"0\"}"), "400");
    assert_eq!(post_to(&set, "{\"files\":\"2\"}"), "400");
    assert_eq!(post_to(&set, "{\"order\":1}"), "400");
    assert_eq!(
        post_to(&set, "{\"files\":\"1\",\"sequential\":true}"),
        "200"
    );
    assert_eq!(post_to(&format!("{url}/abcd/set"), "{}"), "404");
    // `remote` without the token says why, and fails.
    let (output, _) = run_with_timeout(
        shoal()
            .args([
                "remote",
                "--rpc",
                API.rpc,
                "--state-dir",
                path_str(&state),
                "list",
            ])
            .env_remove("SHOAL_RPC_TOKEN"),
        Duration::from_secs(30),
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("401"),
        "{output:?}"
    );
    let listed = run_ok(shoal().args(["remote", "--rpc", API.rpc, "--token", "s3cret", "list"]));
    assert!(listed.starts_with("ID"), "{listed}");
}

/// A torrent's totals add up across restarts, and its seed limits (its own, else the
/// daemon's) count them: a libtorrent leecher takes the whole file, the torrent is
/// paused, the daemon killed and started again, and a session ratio below what it
/// uploaded before stops it at once; its own `none` lets it seed again.
#[test]
fn a_daemon_seeds_to_its_limits_over_all_runs() {
    require("/usr/bin/python3");
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 1 << 20, "256K");
    let (out, state) = (dir.path().join("out"), dir.path().join("state"));
    std::fs::create_dir_all(&out).unwrap();
    std::fs::copy(src.join("payload.bin"), out.join("payload.bin")).unwrap();
    let flags = ["--seed-ratio", "5"];
    let mut daemon_run = daemon(&SEEDING, (&out, &state), &[], &flags);
    let session = remote(&SEEDING, &state, &["session"]);
    assert_eq!(session["seed_ratio"], 5.0, "{session:#}");
    assert_eq!(session["seed_time"], "none");
    let hash = add(&SEEDING, &state, &torrent);
    let list = wait_state(
        (&SEEDING, &state),
        &["payload.bin"],
        "seeding",
        Duration::from_secs(30),
    );
    let torrent_now = &list["payload.bin"];
    assert_eq!(torrent_now["seed_ratio"], "session", "{torrent_now:#}");
    assert_eq!(torrent_now["seed_limit"]["seed_ratio"], 5.0);
    assert_eq!(torrent_now["ratio"], 0.0);

    let leecher = dir.path().join("leecher");
    lt_get(
        &torrent,
        &leecher,
        "127.0.14.28",
        18515,
        "127.0.14.27",
        18513,
    );
    same_files(&src.join("payload.bin"), &leecher.join("payload.bin"));
    // Paused, its totals are saved; then kill -9 and a restart.
    remote(&SEEDING, &state, &["pause", &hash]);
    let _ = daemon_run.0.kill();
    let _ = daemon_run.0.wait();
    daemon_run = daemon(&SEEDING, (&out, &state), &[], &flags);
    let shown = remote(&SEEDING, &state, &["show", &hash]);
    let totals = &shown["status"]["totals"];
    assert!(totals["uploaded"].as_u64().unwrap() >= 1 << 20, "{shown:#}");
    assert!(shown["ratio"].as_f64().unwrap() >= 1.0, "{shown:#}");
    assert_eq!(totals["downloaded"], 0);
    remote(&SEEDING, &state, &["resume", &hash]);
    wait_state(
        (&SEEDING, &state),
        &["payload.bin"],
        "seeding",
        Duration::from_secs(30),
    );
    // Below what it uploaded in its first run: it stops, though this run sent nothing.
    let session = remote(&SEEDING, &state, &["session", "--seed-ratio", "0.5"]);
    assert_eq!(session["seed_ratio"], 0.5, "{session:#}");
    wait_state(
        (&SEEDING, &state),
        &["payload.bin"],
        "finished",
        Duration::from_secs(10),
    );
    // Its own limit comes first.
    remote(&SEEDING, &state, &["set", &hash, "--seed-ratio", "none"]);
    let shown = remote(&SEEDING, &state, &["show", &hash]);
    assert_eq!(shown["seed_ratio"], "none", "{shown:#}");
    assert_eq!(shown["seed_limit"]["seed_ratio"], "none");
    remote(&SEEDING, &state, &["resume", &hash]);
    wait_state(
        (&SEEDING, &state),
        &["payload.bin"],
        "seeding",
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_secs(2));
    let list = torrents(&SEEDING, &state);
    assert_eq!(
        list["payload.bin"]["status"]["state"], "seeding",
        "{list:#?}"
    );
    // The text a person reads.
    let mut cmd = shoal();
    cmd.args(["remote", "--rpc", SEEDING.rpc, "--state-dir"])
        .arg(&state)
        .args(["show", &hash]);
    let text = run_ok(cmd.env_remove("SHOAL_RPC_TOKEN"));
    assert!(text.contains("seeding    until stopped"), "{text}");
    assert!(
        text.contains("ratio 1.0") || text.contains("ratio 1.1"),
        "{text}"
    );
    drop(daemon_run);
}

/// Flips a byte of `file` at `at`, keeping its size and modification time: bit rot the
/// resume state cannot see.
fn rot(file: &Path, at: usize) {
    let kept = std::fs::metadata(file).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(file).unwrap();
    bytes[at] ^= 0x5a;
    std::fs::write(file, bytes).unwrap();
    let handle = std::fs::File::options().write(true).open(file).unwrap();
    handle.set_modified(kept).unwrap();
}

/// `remote verify` hashes what the resume state vouches for: a paused torrent with a
/// rotten piece is checked, stays paused and shows the piece missing, and fetches it
/// from its (libtorrent) seed once resumed; a running one stops, is checked, and
/// fetches the piece again.
#[test]
fn a_daemon_verifies_the_data_its_resume_state_vouches_for() {
    require("/usr/bin/python3");
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), (2 << 20) + 1, "256K");
    let _seed = lt_seed(&torrent, &src, "127.0.14.31", 18525);
    let (out, state) = (dir.path().join("out"), dir.path().join("state"));
    let _daemon = daemon(&VERIFY, (&out, &state), &["127.0.14.31:18525"], &[]);
    let hash = add(&VERIFY, &state, &torrent);
    let at = (&VERIFY, state.as_path());
    wait_state(at, &["payload.bin"], "seeding", Duration::from_secs(30));
    let (copy, original) = (out.join("payload.bin"), src.join("payload.bin"));
    same_files(&original, &copy);

    remote(&VERIFY, &state, &["pause", &hash]);
    rot(&copy, 1_000_000); // piece 3
    remote(&VERIFY, &state, &["verify", &hash]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let checked = loop {
        let torrent = torrents(&VERIFY, &state).remove("payload.bin").unwrap();
        if torrent["status"]["state"] == "paused" && torrent["progress"].as_f64() < Some(1.0) {
            break torrent;
        }
        assert!(Instant::now() < deadline, "not checked: {torrent:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // One piece of nine short.
    let size = ((2 << 20) + 1) as f64;
    let progress = checked["progress"].as_f64().unwrap();
    assert!(
        (progress - (size - 262_144.0) / size).abs() < 1e-9,
        "{checked:#}"
    );
    remote(&VERIFY, &state, &["resume", &hash]);
    wait_state(at, &["payload.bin"], "seeding", Duration::from_secs(30));
    same_files(&original, &copy);

    // Running: it stops, is checked, and fetches the rotten piece again.
    rot(&copy, 2_000_000); // piece 7
    remote(&VERIFY, &state, &["verify", &hash]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read(&copy).unwrap() != std::fs::read(&original).unwrap() {
        assert!(Instant::now() < deadline, "piece 7 not fetched again");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_state(at, &["payload.bin"], "seeding", Duration::from_secs(30));
}
