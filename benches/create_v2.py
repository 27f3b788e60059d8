#!/usr/bin/env python3
"""Benchmark: `shoal create --format hybrid|v2` against libtorrent 2's own torrent creation
(python3-libtorrent: `create_torrent` with its default, hybrid, and with `v2_only`) on the
same file and piece size.

Runs shoal and libtorrent alternately on a file already in the page cache, reports the
median wall time, CPU seconds and peak RSS of each, and the ratio; checks that both give
the same v1 and v2 info-hashes; writes the table to docs/BENCHMARKS.md (section
"create v2").

    python3 benches/create_v2.py [--size-mib 1024] [--runs 5] [--piece 1M]

Needs: a release build (`cargo build --release`), python3-libtorrent, /usr/bin/time.
"""
import argparse, json, os, statistics, subprocess, tempfile, time

from benchlib import ROOT, SHOAL, machine, timed, write_section

LT_CREATE = """
import libtorrent as lt, os, sys
path, piece, out, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
fs = lt.file_storage()
lt.add_files(fs, path)
flags = lt.create_torrent.v2_only if kind == 'v2' else 0
t = lt.create_torrent(fs, piece, flags=flags)
lt.set_piece_hashes(t, os.path.dirname(os.path.abspath(path)))
open(out, 'wb').write(lt.bencode(t.generate()))
"""

LT_HASHES = """
import libtorrent as lt, sys
h = lt.torrent_info(sys.argv[1]).info_hashes()
print(str(h.v1), str(h.v2))
"""


def shoal_hashes(torrent):
    out = subprocess.run([SHOAL, "info", "--json", torrent], capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    v1 = info["info_hash"] if info["format"] != "v2" else "0" * 40
    return v1, info["info_hash_v2"]


def lt_hashes(torrent):
    out = subprocess.run(["/usr/bin/python3", "-c", LT_HASHES, torrent],
                         capture_output=True, text=True, check=True)
    return tuple(out.stdout.split())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--piece", default="1M")
    args = ap.parse_args()
    piece = {"256K": 1 << 18, "512K": 1 << 19, "1M": 1 << 20, "2M": 1 << 21, "4M": 1 << 22}[args.piece]
    subprocess.run(["cargo", "build", "--release", "-p", "shoal"], cwd=ROOT, check=True)

    rows, notes = [], []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/tmp")) as tmp:
        data = os.path.join(tmp, "data.bin")
        with open(data, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        subprocess.run(["cat", data], stdout=subprocess.DEVNULL, check=True)  # into the page cache
        for kind in ["hybrid", "v2"]:
            ours = os.path.join(tmp, f"shoal-{kind}.torrent")
            theirs = os.path.join(tmp, f"lt-{kind}.torrent")
            cmds = {
                f"shoal create --format {kind}": [SHOAL, "create", data, "--piece-size", args.piece,
                                                  "--format", kind, "--no-date", "-f", "-o", ours],
                f"libtorrent create_torrent ({kind})": ["/usr/bin/python3", "-c", LT_CREATE, data,
                                                        str(piece), theirs, kind],
            }
            results = {name: [] for name in cmds}
            for _ in range(args.runs):
                for name, cmd in cmds.items():
                    results[name].append(timed(cmd))
            med = {}
            for name, runs in results.items():
                wall = statistics.median(r[0] for r in runs)
                cpu = statistics.median(r[1] for r in runs)
                rss = statistics.median(r[2] for r in runs)
                med[name] = wall
                rows.append(f"| {name} | {wall:.3f} | {args.size_mib / 1024 * 1073.741824 / wall:.0f} "
                            f"| {cpu:.2f} | {rss / 1024:.1f} |")
            names = list(cmds)
            same = shoal_hashes(ours) == lt_hashes(theirs)
            notes.append(f"- {kind}: ratio shoal / libtorrent (wall) **{med[names[0]] / med[names[1]]:.2f}**; "
                         f"same v1 and v2 info-hashes: {'yes' if same else 'NO'}.")

    section = "\n".join([
        "## create v2: `shoal create --format hybrid|v2` vs libtorrent's create_torrent",
        "",
        f"{args.size_mib} MiB random file in the page cache, {args.piece} pieces, {args.runs} alternating runs "
        f"each, medians. libtorrent through python3-libtorrent (its interpreter start is in its times, "
        f"about 0.05 s). Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "| tool | wall s | MB/s | CPU s | peak RSS MiB |",
        "|---|---|---|---|---|",
        *rows,
        "",
        *notes,
        "",
        f"Reproduce: `python3 benches/create_v2.py --size-mib {args.size_mib} --runs {args.runs} --piece {args.piece}`",
        "",
    ])
    write_section("create v2:", section)


if __name__ == "__main__":
    main()
