#!/usr/bin/python3
"""Benchmark: `--stream`, a torrent's files over HTTP.

1. Serving a complete file: `shoal seed --stream` against `python3 -m http.server`
   (sendfile), the same random file in the page cache read whole by curl, alternately;
   medians of the rate, and shoal's peak RSS afterwards.
2. Opening a film while it downloads: a shoal seed sends at `--rate`; `shoal get
   --stream` downloads; once the seed's first burst is over, ffprobe (libavformat's HTTP
   client, the one mpv plays through) opens the film, whose index (`moov`) is at its end.
   Reported: how long ffprobe took, how many pieces came meanwhile, and how long the
   whole download took. The film is noise, so it does not compress.

Writes the section "stream:" of docs/BENCHMARKS.md.

    /usr/bin/python3 benches/stream.py [--size-mib 1024] [--runs 5] [--film-secs 8]

Needs: a release build, curl, ffmpeg (ffprobe), /usr/bin/time.
"""
import argparse, json, os, queue, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import SHOAL, ROOT, machine, parse_time_v, random_torrent, write_section


def curl_rate(url):
    """Bytes per second of one whole GET of `url`."""
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{speed_download}", url],
                         capture_output=True, text=True, check=True, timeout=300)
    return float(out.stdout)


def wait_listening(port, host):
    import socket
    for _ in range(200):
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {host}:{port}")


def serving(tmp, size_mib, runs):
    src, data, torrent = random_torrent(tmp, size_mib, "1M")
    # Into the page cache for both.
    subprocess.run(["cat", data], stdout=subprocess.DEVNULL, check=True)
    seed = subprocess.Popen(
        ["/usr/bin/time", "-v", SHOAL, "seed", torrent, data, "--no-dht", "--no-tracker",
         "--listen", "127.0.7.31:18931", "--stream", "127.0.7.31:18932",
         "--state-dir", os.path.join(tmp, "state")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    server = subprocess.Popen(
        ["python3", "-m", "http.server", "18933", "--bind", "127.0.7.32", "--directory", src],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(18932, "127.0.7.31")
    wait_listening(18933, "127.0.7.32")
    shoal, python = [], []
    for _ in range(runs):
        shoal.append(curl_rate("http://127.0.7.31:18932/1/payload.bin"))
        python.append(curl_rate("http://127.0.7.32:18933/payload.bin"))
    server.terminate()
    # Ctrl-C to shoal itself (time(1) passes no signal on).
    subprocess.run(["pkill", "-INT", "-P", str(seed.pid)], check=True)
    _, stderr = seed.communicate(timeout=30)
    _, rss = parse_time_v(stderr)
    return statistics.median(shoal), statistics.median(python), rss


def opening(tmp, film_secs, rate):
    folder = os.path.join(tmp, "film")
    os.makedirs(folder)
    film = os.path.join(folder, "film.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                    "testsrc=size=640x360:rate=25,noise=alls=100:allf=t+u", "-t", str(film_secs),
                    "-c:v", "mpeg4", "-q:v", "2", "-y", film], check=True)
    torrent = os.path.join(tmp, "film.torrent")
    subprocess.run([SHOAL, "create", film, "--piece-size", "256K", "-o", torrent],
                   check=True, capture_output=True)
    seed = subprocess.Popen(
        [SHOAL, "seed", torrent, film, "--no-dht", "--no-tracker", "--listen",
         "127.0.7.33:18934", "--max-up", rate, "--state-dir", os.path.join(tmp, "seed-state")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(18934, "127.0.7.33")
    start = time.perf_counter()
    get = subprocess.Popen(
        [SHOAL, "get", torrent, "-o", os.path.join(tmp, "out"), "--no-seed", "--json",
         "--no-dht", "--no-tracker", "--peer", "127.0.7.33:18934", "--listen",
         "127.0.7.34:18935", "--stream", "127.0.7.34:18936",
         "--state-dir", os.path.join(tmp, "get-state")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    events = queue.Queue()
    threading.Thread(target=lambda: [events.put(json.loads(l)) for l in get.stdout],
                     daemon=True).start()
    have, pieces, url = 0, None, None

    def drain(until=None, limit=60):
        nonlocal have, pieces, url
        deadline = time.time() + limit
        while time.time() < deadline:
            try:
                e = events.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                return None
            if e["event"] == "streaming":
                url = e["files"][0]["url"]
            if e["event"] == "started":
                pieces = e["piece_count"]
            if "have" in e and e["event"] in ("piece", "stats"):
                have = max(have, e["have"])
            if until and until(e):
                return e
        return None

    drain(lambda e: e["event"] == "piece" and e["have"] >= 10)
    before = have
    probe_start = time.perf_counter()
    subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", url],
                   check=True, capture_output=True, timeout=120)
    probe = time.perf_counter() - probe_start
    drain(limit=0.25)
    came = have - before
    drain(lambda e: e["event"] == "completed", limit=300)
    whole = time.perf_counter() - start
    # It goes on serving after the download until Ctrl-C.
    get.send_signal(2)
    get.wait(timeout=30)
    seed.terminate()
    return probe, came, before, pieces, whole, os.path.getsize(film)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--film-secs", type=int, default=8)
    ap.add_argument("--rate", default="2M")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-p", "shoal"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/tmp")) as tmp:
        shoal, python, rss = serving(tmp, args.size_mib, args.runs)
        probe, came, before, pieces, whole, size = opening(tmp, args.film_secs, args.rate)
    mb = 1e6
    section = f"""## stream: `--stream` serving a file, and a player opening a film while it downloads

{machine()}. Date: {time.strftime('%Y-%m-%d')}.

| what | shoal | other | ratio |
|---|---|---|---|
| {args.size_mib} MiB file in the page cache, read whole by curl (median of {args.runs}) | {shoal / mb:.0f} MB/s (`seed --stream`, peak RSS {rss / 1024:.1f} MiB) | {python / mb:.0f} MB/s (`python3 -m http.server`, sendfile) | {shoal / python:.2f} |

A {size / mb:.1f} MB film ({pieces} pieces of 256 KiB, its index at the end) downloading
at {args.rate}/s from one shoal seed: once {before} pieces were here, ffprobe opened it in
**{probe:.2f} s**, while {came} more pieces came; the whole download took {whole:.1f} s.

Reproduce: `/usr/bin/python3 benches/stream.py --size-mib {args.size_mib} --runs {args.runs} --film-secs {args.film_secs} --rate {args.rate}`
"""
    write_section("stream:", section)


if __name__ == "__main__":
    main()
