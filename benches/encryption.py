#!/usr/bin/python3
"""Benchmark: what message stream encryption (MSE/PE) costs, and shoal against libtorrent
on the same encrypted work.

- shoal seed -> shoal get on loopback with `--encryption off`, `prefer` (the default: an
  encrypted handshake, then plaintext) and `require` (RC4 both ways), a fresh seed each;
- from one libtorrent seed that takes RC4 connections only: `shoal get --encryption
  require` against a libtorrent downloader set the same way, alternately.

Medians of wall time (start to exit; libtorrent: to `is_seeding`, interpreter start
included), CPU seconds and peak RSS (`/usr/bin/time -v`) of the downloader. Writes the
section "encryption:" of docs/BENCHMARKS.md.

    /usr/bin/python3 benches/encryption.py [--size-mib 512] [--piece 1M] [--runs 3]

Needs: a release build, python3-libtorrent (hence /usr/bin/python3), /usr/bin/time.
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import SHOAL, ROOT, machine, random_torrent, timed, write_section
from get_vs_clients import LT_GET, lt_version, start_seed

LT_SEED_ADDR = ("127.0.0.211", 17211)
MODES = ["off", "prefer", "require"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--piece", default="1M")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-p", "shoal"], cwd=ROOT, check=True)

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/tmp")) as tmp:
        src, data, torrent = random_torrent(tmp, args.size_mib, args.piece)
        out = os.path.join(tmp, "out")

        def fresh():
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(os.path.join(tmp, "state"), ignore_errors=True)
            os.makedirs(out)
            os.sync()

        def check(who):
            if subprocess.run(["cmp", "-s", data, os.path.join(out, "payload.bin")]).returncode != 0:
                sys.exit(f"{who}: downloaded file differs")

        def shoal_get(peer, mode, listen):
            return timed([SHOAL, "get", torrent, "-o", out, "--no-seed", "--no-tracker", "--no-dht",
                          "--peer", peer, "--listen", listen, "--encryption", mode,
                          "--state-dir", os.path.join(tmp, "state")])

        # shoal -> shoal: a fresh seed for every download (a seed left running between
        # downloads made the first mode's look a third slower), modes alternating.
        own = {mode: [] for mode in MODES}
        for run in range(args.runs):
            for mode in MODES[run % 3:] + MODES[:run % 3]:
                addr = "127.0.0.213:17213"
                shutil.rmtree(os.path.join(tmp, "seed-state"), ignore_errors=True)
                seed = subprocess.Popen(
                    [SHOAL, "seed", torrent, src, "--listen", addr, "--no-tracker", "--no-dht",
                     "--encryption", mode, "--state-dir", os.path.join(tmp, "seed-state"), "--json"],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                while '"started"' not in seed.stdout.readline():
                    pass
                fresh()
                own[mode].append(shoal_get(addr, mode, "127.0.0.216:17216"))
                check(f"shoal ({mode})")
                seed.kill()
                seed.wait()

        # From one RC4-only libtorrent seed: shoal (require) and libtorrent (RC4 only).
        os.environ["SHOAL_BENCH_LT_RC4"] = "1"
        lt_seed = start_seed(torrent, src, LT_SEED_ADDR)
        seed_addr = f"{LT_SEED_ADDR[0]}:{LT_SEED_ADDR[1]}"
        versus = {"shoal": [], "libtorrent": []}
        for _ in range(args.runs):
            fresh()
            versus["shoal"].append(shoal_get(seed_addr, "require", "127.0.0.217:17217"))
            check("shoal (require, from libtorrent)")
            fresh()
            versus["libtorrent"].append(timed(["/usr/bin/python3", "-c", LT_GET, torrent, out,
                                               "127.0.0.218", "17218", *map(str, LT_SEED_ADDR)]))
            check("libtorrent (RC4)")
        lt_seed.stdin.close()
        lt_seed.wait()

    size_mb = args.size_mib * 1.048576

    def med(runs):
        return tuple(statistics.median(r[i] for r in runs) for i in range(3))

    def row(name, runs, base):
        wall, cpu, rss = med(runs)
        return (f"| {name} | {wall:.2f} | {size_mb / wall:.0f} | {cpu:.2f} | {rss / 1024:.1f} | "
                f"{wall / base:.2f} |")

    off = med(own["off"])[0]
    shoal_rc4 = med(versus["shoal"])[0]
    lt_rc4 = med(versus["libtorrent"])[0]
    section = "\n".join([
        "## encryption: what MSE/PE costs, and shoal vs libtorrent over RC4",
        "",
        f"{args.size_mib} MiB, {args.piece} pieces, loopback, {args.runs} alternating runs, medians; "
        f"downloader's figures. Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}. "
        f"libtorrent {lt_version()}.",
        "",
        "| downloader (seed) | wall s | MB/s | CPU s | peak RSS MiB | time / first row's |",
        "|---|---|---|---|---|---|",
        *[row(f"shoal `--encryption {m}` (shoal seed, same mode)", own[m], off) for m in MODES],
        row("shoal `--encryption require` (libtorrent seed, RC4 only)", versus["shoal"], off),
        row("libtorrent, RC4 only (the same seed)", versus["libtorrent"], off),
        "",
        f"- Against `off`: `prefer` (an encrypted handshake, then plaintext, as libtorrent's "
        f"default picks) {(med(own['prefer'])[0] / off - 1) * 100:+.0f} % wall time; RC4 both ways "
        f"{(med(own['require'])[0] / off - 1) * 100:+.0f} % wall and "
        f"{med(own['require'])[1] - med(own['off'])[1]:+.2f} CPU s for the downloader.",
        f"- From the same RC4-only libtorrent seed, shoal / libtorrent (wall): **{shoal_rc4 / lt_rc4:.2f}**.",
        "",
        f"Reproduce: `/usr/bin/python3 benches/encryption.py --size-mib {args.size_mib} "
        f"--piece {args.piece} --runs {args.runs}`",
        "",
    ])
    write_section("encryption:", section)


if __name__ == "__main__":
    main()
