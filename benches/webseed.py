#!/usr/bin/python3
"""Benchmark: downloading from a web seed (BEP 19) alone, shoal against aria2.

One random file, a torrent whose `url-list` names a local HTTP server
(crates/shoal/tests/common/web_seed.py, answering Range requests), no peers, no DHT, no
tracker. `shoal get` and `aria2c` download it alternately from the same server; medians
of wall time (start to exit), CPU seconds and peak RSS (`/usr/bin/time -v`). Writes the
section "web seed:" of docs/BENCHMARKS.md.

    /usr/bin/python3 benches/webseed.py [--size-mib 256] [--piece 1M] [--runs 5]

Needs: a release build, aria2c, /usr/bin/time.
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import SHOAL, ROOT, machine, timed, write_section

SERVER = os.path.join(ROOT, "crates", "shoal", "tests", "common", "web_seed.py")
ADDR = ("127.0.5.1", 18001)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--piece", default="1M")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-p", "shoal"], cwd=ROOT, check=True)
    aria2_version = subprocess.run(["aria2c", "--version"], capture_output=True,
                                   text=True).stdout.split("\n")[0]

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/tmp")) as tmp:
        src = os.path.join(tmp, "src")
        os.makedirs(src)
        data = os.path.join(src, "payload.bin")
        with open(data, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        torrent = os.path.join(tmp, "payload.torrent")
        url = "http://%s:%d/" % ADDR
        subprocess.run([SHOAL, "create", data, "--piece-size", args.piece, "--web-seed", url,
                        "-o", torrent], check=True, capture_output=True)
        server = subprocess.Popen(["/usr/bin/python3", SERVER, src, ADDR[0], str(ADDR[1]), "0",
                                   "3600"], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout.readline().strip() == "READY"
            # The server prints a line per request; drain them so it never blocks.
            subprocess.Popen(["cat"], stdin=server.stdout, stdout=subprocess.DEVNULL)
            results = {"shoal": [], "aria2": []}
            out = os.path.join(tmp, "out")
            for run in range(args.runs):
                for name in ("shoal", "aria2") if run % 2 == 0 else ("aria2", "shoal"):
                    shutil.rmtree(out, ignore_errors=True)
                    if name == "shoal":
                        cmd = [SHOAL, "get", torrent, "-o", out, "--no-seed", "--no-dht",
                               "--no-tracker", "--listen", "127.0.5.2:18002", "--state-dir",
                               os.path.join(tmp, "state-%d" % run), "--json"]
                    else:
                        cmd = ["aria2c", "-d", out, "--enable-dht=false", "--bt-enable-lpd=false",
                               "--seed-time=0", "--listen-port=18003", "--summary-interval=0",
                               "--console-log-level=warn", "--file-allocation=none", torrent]
                    wall, cpu, rss = timed(cmd)
                    if open(os.path.join(out, "payload.bin"), "rb").read() != open(data, "rb").read():
                        sys.exit(f"{name}: the copy differs")
                    results[name].append((wall, cpu, rss))
                    print(name, "%.2f s" % wall, file=sys.stderr)
        finally:
            server.kill()
            server.wait()

    med = {n: [statistics.median(r[i] for r in rs) for i in range(3)] for n, rs in results.items()}
    size_mb = args.size_mib * 1048576 / 1e6
    rows = "\n".join(
        f"| {n} | {w:.2f} | {size_mb / w:.0f} | {c:.2f} | {r / 1024:.1f} |"
        for n, (w, c, r) in med.items())
    ratio = med["shoal"][0] / med["aria2"][0]
    section = f"""## web seed: `shoal get` vs `aria2c` from a web seed alone

{args.size_mib} MiB random file, {args.piece} pieces, one local HTTP server answering Range
requests (crates/shoal/tests/common/web_seed.py, Python), no peers; {args.runs} alternating
runs each, medians. Machine: {machine()}. {aria2_version}. Date: {time.strftime('%Y-%m-%d')}.

| client | wall s | MB/s | CPU s | peak RSS MiB |
|---|---|---|---|---|
{rows}

- Ratio shoal / aria2 (wall): **{ratio:.2f}**. Both copies compared with the original.

Reproduce: `/usr/bin/python3 benches/webseed.py --size-mib {args.size_mib} --piece {args.piece} --runs {args.runs}`
"""
    write_section("web seed:", section)


if __name__ == "__main__":
    main()
