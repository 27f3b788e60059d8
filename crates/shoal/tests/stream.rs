//! `shoal get --stream`: a torrent's files over HTTP while they download (127.0.13.x,
//! ports 183xx). A real player's HTTP client (ffprobe, whose libavformat is the one mpv
//! plays through) and curl read from a download fed by a rate-limited shoal seed.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// A 4-second video that does not compress (noise), about 13 MB, with its index (the
/// `moov` box) at the end, as ffmpeg writes it unless told otherwise: a player must read
/// the end of the file before it can play the start.
fn film(path: &Path) {
    require("ffmpeg");
    run_ok(Command::new("ffmpeg").args([
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=640x360:rate=25,noise=alls=100:allf=t+u",
        "-t",
        "4",
        "-c:v",
        "mpeg4",
        "-q:v",
        "2",
        "-y",
        path_str(path),
    ]));
}

/// The folder `film` (the video, under a name with a space, and a small text file) and
/// its torrent, with 256 KiB pieces.
fn film_torrent(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = dir.join("src");
    let folder = src.join("film");
    std::fs::create_dir_all(&folder).unwrap();
    film(&folder.join("my film.mp4"));
    std::fs::write(folder.join("notes <1>.txt"), b"shot on loopback\n").unwrap();
    let torrent = dir.join("film.torrent");
    shoal_create(&folder, "256K", &torrent, &[]);
    (src, torrent)
}

/// `shoal get --stream ADDR --json` from `seed`, not seeding afterwards, with `extra`
/// arguments; waits for its `streaming` event and returns the URL of each file.
fn streaming_get(
    torrent: &Path,
    dir: &Path,
    (listen, seed, stream): (&str, &str, &str),
    extra: &[&str],
) -> (
    Guard,
    std::sync::mpsc::Receiver<String>,
    Vec<serde_json::Value>,
) {
    let mut cmd = shoal();
    cmd.args(["get", path_str(torrent), "-o"])
        .arg(dir.join("out"))
        .args(["--state-dir"])
        .arg(dir.join("state"))
        .args([
            "--listen",
            listen,
            "--peer",
            seed,
            "--stream",
            stream,
            "--no-seed",
            "--no-dht",
            "--no-tracker",
            "--json",
        ])
        .args(extra);
    let (guard, lines) = spawn_watched(cmd);
    let mut events = Vec::new();
    assert!(
        events_until(&lines, &mut events, Duration::from_secs(30), |e| {
            e["event"] == "streaming"
        }),
        "{events:?}"
    );
    (guard, lines, events)
}

fn curl(args: &[&str]) -> std::process::Output {
    require("curl");
    let (output, _) = run_with_timeout(
        Command::new("curl")
            .args(["-sS", "--max-time", "60"])
            .args(args),
        Duration::from_secs(70),
    );
    output
}

/// The pieces verified by the newest `piece` event among `events`.
fn have(events: &[serde_json::Value]) -> u64 {
    events_named(events, "piece")
        .last()
        .map_or(0, |e| e["have"].as_u64().unwrap())
}

/// A player opens the film while it downloads: it reads the start, seeks to the index at
/// the end, and knows the film's length long before the download is done, because the
/// pieces it reads are fetched first. The whole file read meanwhile is the seed's, byte
/// for byte.
#[test]
fn a_player_opens_a_film_long_before_it_has_downloaded() {
    require("ffprobe");
    let dir = tempdir();
    let (src, torrent) = film_torrent(dir.path());
    let source = src.join("film/my film.mp4");
    let size = std::fs::metadata(&source).unwrap().len();
    let pieces = std::fs::metadata(src.join("film/notes <1>.txt"))
        .unwrap()
        .len()
        + size;
    let pieces = pieces.div_ceil(256 * 1024);
    // At 2 MiB/s the download takes about 6 s.
    let _seed = shoal_seed_with(
        &torrent,
        &src,
        &dir.path().join("seed-state"),
        "127.0.13.1:18301",
        &["--max-up", "2M"],
    );
    let (_get, lines, mut events) = streaming_get(
        &torrent,
        dir.path(),
        ("127.0.13.2:18302", "127.0.13.1:18301", "127.0.13.2:18303"),
        &[],
    );
    let files = events_named(&events, "streaming")[0]["files"].clone();
    let url = files[0]["url"].as_str().unwrap().to_owned();
    assert_eq!(url, "http://127.0.13.2:18303/1/my%20film.mp4");

    // The player starts once the seed's first burst is over, so that what comes while
    // it runs is what it asked for, at the seed's pace.
    assert!(
        events_until(&lines, &mut events, Duration::from_secs(30), |e| {
            e["have"].as_u64() >= Some(10)
        }),
        "{events:?}"
    );
    let before = have(&events);
    let (probe, _) = run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_name,nb_frames",
            "-of",
            "default=noprint_wrappers=1",
            &url,
        ]),
        Duration::from_secs(60),
    );
    let said = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert!(said.contains("codec_name=mpeg4"), "{said}");
    assert!(said.contains("nb_frames=100"), "{said}");
    assert!(said.contains("duration=4.0"), "{said}");
    // What came while the player read the film's start and its end (the index): those
    // pieces, and little else. `piece` events come at most every 250 ms, hence the wait.
    events_until(&lines, &mut events, Duration::from_millis(250), |_| false);
    assert!(events_named(&events, "completed").is_empty(), "{events:?}");
    let came = have(&events) - before;
    eprintln!("{came} pieces came while the player read; {before} were here before");
    assert!(came <= 12, "{came} of {pieces} pieces: {events:?}");

    // The whole film, read from the start while the rest downloads.
    let copy = dir.path().join("copy.mp4");
    let output = curl(&["-o", path_str(&copy), &url]);
    assert!(output.status.success(), "{output:?}");
    same_files(&source, &copy);
    assert!(
        events_until(&lines, &mut events, Duration::from_secs(60), |e| {
            e["event"] == "completed"
        }),
        "{events:?}"
    );
    same_files(&source, &dir.path().join("out/film/my film.mp4"));
}

/// The HTTP a player and a browser meet: byte ranges (206, and 416 past the end), HEAD,
/// a page and a playlist listing the files (names escaped), 404 for files not there or
/// not selected. After a download without seeding, the files are still served until
/// Ctrl-C, and the exit code says the download is complete.
#[test]
fn ranges_pages_and_serving_after_the_download() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 3 * 1024 * 1024 + 7, "256K");
    let source = src.join("payload.bin");
    let bytes = std::fs::read(&source).unwrap();
    let _seed = shoal_seed_with(
        &torrent,
        &src,
        &dir.path().join("seed-state"),
        "127.0.13.11:18311",
        &["--max-up", "2M"],
    );
    let (mut get, lines, mut events) = streaming_get(
        &torrent,
        dir.path(),
        (
            "127.0.13.12:18312",
            "127.0.13.11:18311",
            "127.0.13.12:18313",
        ),
        &[],
    );
    let base = "http://127.0.13.12:18313";
    let url = format!("{base}/1/payload.bin");

    // A range from the middle (awaited while it downloads), one from the end, the last
    // bytes: each exactly those bytes, with the headers that say so.
    let len = bytes.len();
    for (range, from, to) in [
        ("1500000-1600000", 1_500_000, 1_600_000),
        (&format!("{}-", len - 10) as &str, len - 10, len - 1),
        ("-5", len - 5, len - 1),
    ] {
        let output = curl(&["-D", "-", "-o", "-", "-r", range, &url]);
        let text = output.stdout.clone();
        let split = text.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&text[..split]).to_lowercase();
        assert!(head.starts_with("http/1.1 206"), "{head}");
        assert!(
            head.contains(&format!("content-range: bytes {from}-{to}/{len}")),
            "{head}"
        );
        assert!(head.contains("accept-ranges: bytes"), "{head}");
        assert_eq!(&text[split..], &bytes[from..=to], "{range}");
    }
    let output = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-r",
        &format!("{len}-"),
        &url,
    ]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "416");
    let output = curl(&["-I", &url]);
    let head = String::from_utf8_lossy(&output.stdout).to_lowercase();
    assert!(head.contains(&format!("content-length: {len}")), "{head}");
    for missing in ["/2/x", "/0", "/nope"] {
        let output = curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{base}{missing}"),
        ]);
        assert_eq!(String::from_utf8_lossy(&output.stdout), "404", "{missing}");
    }
    let page = String::from_utf8(curl(&[base]).stdout).unwrap();
    assert!(
        page.contains("<a href=\"/1/payload.bin\">payload.bin</a>"),
        "{page}"
    );
    // A page elsewhere that points a name of its own here (DNS rebinding) is refused.
    let output = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Host: evil.example",
        &url,
    ]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "403");
    let playlist = String::from_utf8(curl(&[&format!("{base}/playlist.m3u")]).stdout).unwrap();
    assert_eq!(
        playlist,
        format!("#EXTM3U\n#EXTINF:-1,payload.bin\n{url}\n")
    );

    // Done downloading, still serving.
    assert!(
        events_until(&lines, &mut events, Duration::from_secs(60), |e| {
            e["event"] == "streaming_until_stopped"
        }),
        "{events:?}"
    );
    let copy = dir.path().join("copy.bin");
    assert!(curl(&["-o", path_str(&copy), &url]).status.success());
    same_files(&source, &copy);
    let pid = get.0.id().to_string();
    run_ok(Command::new("kill").args(["-INT", &pid]));
    let status = get.wait_exit(Duration::from_secs(10), "shoal did not stop on Ctrl-C");
    assert_eq!(status.code(), Some(0), "{status}");
}

/// Only the selected files are offered: the page leaves the others out, and asking for
/// one is a 404 that says why. Names are escaped in the page.
#[test]
fn files_not_selected_are_not_served() {
    let dir = tempdir();
    let src = dir.path().join("src/album");
    random_file(&src.join("a <b>.bin"), 300 * 1024, 1);
    random_file(&src.join("c.bin"), 300 * 1024, 2);
    let torrent = dir.path().join("album.torrent");
    shoal_create(&src, "256K", &torrent, &[]);
    let _seed = shoal_seed_with(
        &torrent,
        &dir.path().join("src"),
        &dir.path().join("seed-state"),
        "127.0.13.21:18321",
        &[],
    );
    let (_get, _lines, events) = streaming_get(
        &torrent,
        dir.path(),
        (
            "127.0.13.22:18322",
            "127.0.13.21:18321",
            "127.0.13.22:18323",
        ),
        &["--select-file", "1"],
    );
    let files = &events_named(&events, "streaming")[0]["files"];
    assert_eq!(files.as_array().unwrap().len(), 1, "{files}");
    let base = "http://127.0.13.22:18323";
    let page = String::from_utf8(curl(&[base]).stdout).unwrap();
    assert!(page.contains(">album/a &lt;b&gt;.bin</a>"), "{page}");
    assert!(!page.contains("c.bin"), "{page}");
    let output = curl(&["-w", "%{http_code}", &format!("{base}/2/c.bin")]);
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.contains("not being downloaded") && said.ends_with("404"),
        "{said}"
    );
    let output = curl(&[&format!("{base}/1/x")]);
    assert_eq!(output.stdout, std::fs::read(src.join("a <b>.bin")).unwrap());
}

/// `seed --stream` serves a complete torrent's files at once, here a single file seeded
/// from a path of its own (renamed since the torrent was made).
#[test]
fn a_seed_streams_its_files() {
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 1024 * 1024 + 9, "256K");
    let renamed = dir.path().join("renamed.bin");
    std::fs::rename(src.join("payload.bin"), &renamed).unwrap();
    let mut cmd = shoal();
    cmd.args(["seed", path_str(&torrent), path_str(&renamed), "--json"])
        .args(["--no-dht", "--no-tracker", "--listen", "127.0.13.31:18331"])
        .args(["--stream", "127.0.13.31:18332", "--state-dir"])
        .arg(dir.path().join("state"));
    let (_seed, lines) = spawn_watched(cmd);
    let mut events = Vec::new();
    assert!(
        events_until(&lines, &mut events, Duration::from_secs(30), |e| {
            e["event"] == "started"
        }),
        "{events:?}"
    );
    let streaming = &events_named(&events, "streaming")[0]["files"][0]["url"];
    assert_eq!(streaming, "http://127.0.13.31:18332/1/payload.bin");
    let copy = dir.path().join("copy.bin");
    let output = curl(&["-o", path_str(&copy), streaming.as_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    same_files(&renamed, &copy);
}
