#!/usr/bin/python3
"""Benchmark: uTP (BEP 29) on loopback.

1. A libtorrent 2.0 seed that takes uTP only: `shoal get` (its default `--utp fallback`:
   TCP is refused, uTP carries the download) against libtorrent downloading over uTP
   from the same seed.
2. `shoal seed` -> `shoal get` with `--utp only` against the same over TCP (`--utp off`).

Runs alternate; the table gives medians of wall time (start to exit; libtorrent to
"seeding"), CPU seconds and peak RSS (`/usr/bin/time -v`). Loopback has no queue for
LEDBAT to measure, so this shows what the protocol machinery costs, not how it shares a
real uplink. Writes the section "utp:" of docs/BENCHMARKS.md.

    /usr/bin/python3 benches/utp.py [--size-mib 256] [--piece 1M] [--runs 3]

Needs: a release build, python3-libtorrent (hence /usr/bin/python3), /usr/bin/time.
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import SHOAL, ROOT, machine, random_torrent, timed, write_section

LT_SESSION = """
import libtorrent as lt, sys, time
def session(ip, port):
    return lt.session({'listen_interfaces': '%s:%d' % (ip, port), 'outgoing_interfaces': ip,
        'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
        'enable_incoming_utp': True, 'enable_outgoing_utp': True,
        'enable_incoming_tcp': False, 'enable_outgoing_tcp': False,
        'allow_multiple_connections_per_ip': True, 'alert_mask': 0})
"""

# Seeds until stdin closes.
LT_SEED = LT_SESSION + """
s = session(sys.argv[3], int(sys.argv[4]))
h = s.add_torrent({'ti': lt.torrent_info(sys.argv[1]), 'save_path': sys.argv[2]})
while not h.status().is_seeding: time.sleep(0.05)
print('READY', flush=True)
sys.stdin.read()
"""

# Downloads from the seed over uTP; exits when seeding.
LT_GET = LT_SESSION + """
s = session(sys.argv[3], int(sys.argv[4]))
h = s.add_torrent({'ti': lt.torrent_info(sys.argv[1]), 'save_path': sys.argv[2]})
deadline = time.time() + 600
last = 0
while not h.status().is_seeding:
    if time.time() > deadline: sys.exit('timeout')
    if time.time() - last > 2:
        h.connect_peer((sys.argv[5], int(sys.argv[6]))); last = time.time()
    time.sleep(0.01)
"""

LT_SEED_ADDR = ("127.0.10.201", 18301)
SHOAL_SEED_ADDR = ("127.0.10.202", 18302)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--piece", default="1M")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-p", "shoal"], cwd=ROOT, check=True)

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/tmp")) as tmp:
        src, data, torrent = random_torrent(tmp, args.size_mib, args.piece)
        out = os.path.join(tmp, "out")
        state = os.path.join(tmp, "state")

        def fresh():
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(state, ignore_errors=True)
            os.makedirs(out)
            os.sync()

        def check(what):
            got = os.path.join(out, "payload.bin")
            if subprocess.run(["cmp", "-s", data, got]).returncode != 0:
                sys.exit(f"{what}: downloaded file differs")

        def shoal_get(peer, listen, extra):
            return timed([SHOAL, "get", torrent, "-o", out, "--no-seed", "--no-dht",
                          "--peer", f"{peer[0]}:{peer[1]}", "--listen", listen,
                          "--state-dir", state, *extra])

        lt_seed = subprocess.Popen(["/usr/bin/python3", "-c", LT_SEED, torrent, src,
                                    LT_SEED_ADDR[0], str(LT_SEED_ADDR[1])],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert lt_seed.stdout.readline().strip() == "READY"
        shoal_seed = subprocess.Popen([SHOAL, "seed", torrent, src, "--no-dht", "--json",
                                       "--listen", f"{SHOAL_SEED_ADDR[0]}:{SHOAL_SEED_ADDR[1]}",
                                       "--state-dir", os.path.join(tmp, "seed-state")],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        while '"started"' not in shoal_seed.stdout.readline():
            pass

        runs = {"from libtorrent (uTP): shoal get": [], "from libtorrent (uTP): libtorrent": [],
                "shoal seed -> shoal get, --utp only": [], "shoal seed -> shoal get, TCP": []}
        for _ in range(args.runs):
            fresh()
            runs["from libtorrent (uTP): shoal get"].append(
                shoal_get(LT_SEED_ADDR, "127.0.10.203:18303", []))
            check("shoal get from libtorrent")
            fresh()
            runs["from libtorrent (uTP): libtorrent"].append(
                timed(["/usr/bin/python3", "-c", LT_GET, torrent, out, "127.0.10.204", "18304",
                       *map(str, LT_SEED_ADDR)]))
            check("libtorrent")
            fresh()
            runs["shoal seed -> shoal get, --utp only"].append(
                shoal_get(SHOAL_SEED_ADDR, "127.0.10.205:18305", ["--utp", "only"]))
            check("shoal over uTP")
            fresh()
            runs["shoal seed -> shoal get, TCP"].append(
                shoal_get(SHOAL_SEED_ADDR, "127.0.10.206:18306", ["--utp", "off"]))
            check("shoal over TCP")
        shoal_seed.kill()
        lt_seed.stdin.close()
        lt_seed.wait()

    size_mb = args.size_mib * 1.048576
    med = {k: tuple(statistics.median(r[i] for r in v) for i in range(3)) for k, v in runs.items()}
    lines = [
        "## utp: uTP (BEP 29) on loopback, shoal and libtorrent",
        "",
        f"{args.size_mib} MiB, {args.piece} pieces, {args.runs} alternating runs, medians. "
        f"Machine: {machine()}.",
        "The libtorrent seed takes uTP only (TCP off both ways); `shoal get` runs with its "
        "default `--utp fallback`, so its TCP dial is refused and uTP carries the download.",
        "",
        "| transfer | wall s | MB/s | CPU s | peak RSS MiB |",
        "|---|---|---|---|---|",
    ]
    for name, (wall, cpu, rss) in med.items():
        lines.append(f"| {name} | {wall:.2f} | {size_mb / wall:.0f} | {cpu:.2f} | {rss / 1024:.1f} |")
    a = med["from libtorrent (uTP): shoal get"][0] / med["from libtorrent (uTP): libtorrent"][0]
    b = med["shoal seed -> shoal get, --utp only"][0] / med["shoal seed -> shoal get, TCP"][0]
    lines += [
        "",
        f"- From the same uTP-only libtorrent seed, shoal's time / libtorrent's: **{a:.2f}** "
        "(libtorrent's wall time includes its interpreter's start).",
        f"- shoal to shoal, uTP time / TCP time: **{b:.2f}**.",
        "",
        f"Reproduce: `/usr/bin/python3 benches/utp.py --size-mib {args.size_mib} "
        f"--piece {args.piece} --runs {args.runs}`",
        "",
    ]
    write_section("utp:", "\n".join(lines))


if __name__ == "__main__":
    main()
