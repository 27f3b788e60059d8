#!/usr/bin/env python3
"""Benchmark: `shoal create` against `mktorrent -t 2` on the same file, same piece size.

Runs both alternately (A B A B ...) on a file already in the page cache, reports the
median wall time, CPU seconds and peak RSS of each, the ratio, and the one-core SHA-1
limit from `openssl speed -evp sha1`; checks that both produce the same info-hash; and
writes the table to docs/BENCHMARKS.md (section "create").

    python3 benches/create_vs_mktorrent.py [--size-mib 1024] [--runs 5] [--piece 1M]

Needs: a release build (`cargo build --release`), mktorrent, /usr/bin/time, openssl.
"""
import argparse, json, os, statistics, subprocess, tempfile, time

from benchlib import ROOT, SHOAL, machine, timed, write_section


def info_hash(torrent):
    out = subprocess.run([SHOAL, "info", "--json", torrent], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["info_hash"]


def openssl_sha1():
    out = subprocess.run(["openssl", "speed", "-evp", "sha1", "-bytes", "16384", "-seconds", "3"],
                         capture_output=True, text=True).stdout
    line = [l for l in out.splitlines() if l.lower().startswith("sha1")][-1]
    return float(line.split()[-1].rstrip("k")) * 1000 / 1e6  # MB/s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--piece", default="1M")
    args = ap.parse_args()
    exponent = {"256K": 18, "512K": 19, "1M": 20, "2M": 21, "4M": 22}[args.piece]
    subprocess.run(["cargo", "build", "--release", "-p", "shoal"], cwd=ROOT, check=True)

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/tmp")) as tmp:
        data = os.path.join(tmp, "data.bin")
        with open(data, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        subprocess.run(["cat", data], stdout=subprocess.DEVNULL, check=True)  # into the page cache
        cmds = {
            "shoal create": [SHOAL, "create", data, "--piece-size", args.piece, "--no-date", "-f",
                             "-o", os.path.join(tmp, "shoal.torrent")],
            "mktorrent -t 2": ["mktorrent", "-t", "2", "-l", str(exponent), "-o",
                               os.path.join(tmp, "mk.torrent"), data],
        }
        results = {name: [] for name in cmds}
        for _ in range(args.runs):
            for name, cmd in cmds.items():
                if name.startswith("mktorrent"):
                    try:
                        os.remove(os.path.join(tmp, "mk.torrent"))
                    except FileNotFoundError:
                        pass
                results[name].append(timed(cmd))
        same = info_hash(os.path.join(tmp, "shoal.torrent")) == info_hash(os.path.join(tmp, "mk.torrent"))
    sha1 = openssl_sha1()

    rows = []
    med = {}
    for name, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        rss = statistics.median(r[2] for r in runs)
        med[name] = wall
        rows.append(f"| {name} | {wall:.3f} | {args.size_mib / 1024 * 1073.741824 / wall:.0f} | {cpu:.2f} | {rss / 1024:.1f} |")
    ratio = med["shoal create"] / med["mktorrent -t 2"]
    nproc = os.cpu_count()
    section = "\n".join([
        "## create: `shoal create` vs `mktorrent -t 2`",
        "",
        f"{args.size_mib} MiB random file in the page cache, {args.piece} pieces, {args.runs} alternating runs each, medians. "
        f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "| tool | wall s | MB/s | CPU s | peak RSS MiB |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"- Ratio shoal / mktorrent (wall): **{ratio:.2f}** (goal ≤ 1.00). Same info-hash from both: {'yes' if same else 'NO'}.",
        f"- One-core SHA-1 limit (`openssl speed -evp sha1`, 16 KiB blocks): {sha1:.0f} MB/s; "
        f"{nproc} cores: {sha1 * nproc:.0f} MB/s.",
        "",
        f"Reproduce: `python3 benches/create_vs_mktorrent.py --size-mib {args.size_mib} --runs {args.runs} --piece {args.piece}`",
        "",
    ])
    write_section("create:", section)

if __name__ == "__main__":
    main()
