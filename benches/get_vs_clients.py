#!/usr/bin/python3
"""Benchmark: `shoal get` against libtorrent, rqbit and aria2 downloading the same torrent
from the same libtorrent seed on loopback; shoal seed -> shoal get; and the recheck of
data already on disk.

Every client downloads the whole file from a libtorrent 2.0 seed (TCP, uTP off; the same
process for all but aria2, which gets a fresh one each run) into an empty folder; clients run alternately (A B C D A B C D ...), and the table gives medians
of wall time (start to exit, or to "seeding" for libtorrent, which does not exit), CPU
seconds and peak RSS (`/usr/bin/time -v`), and each client's time relative to shoal's.
Writes the section "get:" of docs/BENCHMARKS.md.

    /usr/bin/python3 benches/get_vs_clients.py [--size-mib 1024] [--piece 1M] [--runs 5]
        [--rqbit PATH] [--clients shoal,libtorrent,rqbit,aria2]

Needs: a release build, python3-libtorrent (hence /usr/bin/python3), aria2c,
/usr/bin/time, and for rqbit a binary built with `cargo install rqbit --root DIR` (never
committed); without --rqbit it is left out.
"""
import argparse, os, shutil, socket, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import SHOAL, ROOT, machine, parse_time_v, random_torrent, timed, write_section

SEED = ("127.0.0.201", 17201)

# With SHOAL_BENCH_LT_RC4 set in its environment, a session takes RC4-encrypted
# connections only (benches/encryption.py).
LT_SESSION = """
import libtorrent as lt, os, sys, time, select
def session(ip, port):
    settings = {'listen_interfaces': '%s:%d' % (ip, port), 'outgoing_interfaces': ip,
        'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
        'enable_incoming_utp': False, 'enable_outgoing_utp': False,
        'allow_multiple_connections_per_ip': True, 'alert_mask': 0}
    if os.environ.get('SHOAL_BENCH_LT_RC4'):
        settings.update({'out_enc_policy': int(lt.enc_policy.forced),
                         'in_enc_policy': int(lt.enc_policy.forced),
                         'allowed_enc_level': int(lt.enc_level.rc4), 'prefer_rc4': True})
    return lt.session(settings)
"""

# Seeds until stdin closes; each line "ip port" on stdin makes it dial that peer.
LT_SEED = LT_SESSION + """
s = session(sys.argv[3], int(sys.argv[4]))
h = s.add_torrent({'ti': lt.torrent_info(sys.argv[1]), 'save_path': sys.argv[2]})
while not h.status().is_seeding: time.sleep(0.05)
print('READY', flush=True)
for line in sys.stdin:
    ip, port = line.split()
    h.connect_peer((ip, int(port)))
"""

# Downloads from the seed; exits when seeding.
LT_GET = LT_SESSION + """
s = session(sys.argv[3], int(sys.argv[4]))
h = s.add_torrent({'ti': lt.torrent_info(sys.argv[1]), 'save_path': sys.argv[2]})
h.connect_peer((sys.argv[5], int(sys.argv[6])))
deadline = time.time() + 600
while not h.status().is_seeding:
    if time.time() > deadline: sys.exit('timeout')
    time.sleep(0.01)
"""


def wait_listening(addr, limit=30):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            socket.create_connection(addr, timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listening on {addr}")


def start_seed(torrent, src, addr):
    seed = subprocess.Popen(["/usr/bin/python3", "-c", LT_SEED, torrent, src, *map(str, addr)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert seed.stdout.readline().strip() == "READY"
    return seed


def run_aria2(torrent, src, out):
    """aria2 cannot be given a peer, so it listens and the seed dials it. The seed is a
    libtorrent seed of its own, started (untimed) for each run: a seed that had served
    other clients before sometimes never got through to aria2 (not understood yet)."""
    seed = start_seed(torrent, src, ("127.0.0.208", 17208))
    try:
        return aria2_from(torrent, out, seed.stdin)
    finally:
        seed.stdin.close()
        seed.wait()


def aria2_from(torrent, out, seed_stdin):
    ip, port = "127.0.0.204", 17204
    cmd = ["/usr/bin/time", "-v", "aria2c", "-d", out, f"--listen-port={port}", f"--interface={ip}",
           "--disable-ipv6", "--enable-dht=false", "--bt-enable-lpd=false",
           "--enable-peer-exchange=false", "--seed-time=0", "--console-log-level=error",
           "--summary-interval=0", "--bt-stop-timeout=120", torrent]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_listening((ip, port))
    # aria2 listens before it is ready for peers (it allocates the file first), so the
    # seed dials it again every two seconds until it is done.
    err_lines = []
    drain = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
    drain.start()
    deadline = time.time() + 600
    while proc.poll() is None and time.time() < deadline:
        seed_stdin.write(f"{ip} {port}\n")
        seed_stdin.flush()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
    proc.wait(timeout=10)
    drain.join(timeout=10)
    err = "".join(err_lines)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"aria2c failed:\n{err}")
    return (wall, *parse_time_v(err))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--piece", default="1M")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rqbit")
    ap.add_argument("--clients", default="shoal,libtorrent,rqbit,aria2")
    args = ap.parse_args()
    clients = [c for c in args.clients.split(",") if c != "rqbit" or args.rqbit]
    subprocess.run(["cargo", "build", "--release", "-p", "shoal"], cwd=ROOT, check=True)

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/tmp")) as tmp:
        src, data, torrent = random_torrent(tmp, args.size_mib, args.piece)
        seed = start_seed(torrent, src, SEED)
        out = os.path.join(tmp, "out")

        def fresh():
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(os.path.join(tmp, "state"), ignore_errors=True)
            os.makedirs(out)
            # Every run starts with the last one's gigabyte written back: a transfer
            # made while the kernel flushes the previous one's dirty pages took 1.8 s
            # instead of 1.0 s (shoal seed -> shoal get, 1 GiB).
            os.sync()

        seed_addr = f"{SEED[0]}:{SEED[1]}"
        commands = {
            "shoal": lambda: timed([SHOAL, "get", torrent, "-o", out, "--no-seed", "--peer", seed_addr,
                                    "--listen", "127.0.0.202:17202",
                                    "--state-dir", os.path.join(tmp, "state")]),
            "libtorrent": lambda: timed(["/usr/bin/python3", "-c", LT_GET, torrent, out,
                                         "127.0.0.203", "17203", *map(str, SEED)]),
            "rqbit": lambda: timed([args.rqbit, "--disable-dht", "--disable-dht-persistence",
                                    "--disable-upnp-port-forward", "--disable-lsd",
                                    "--listen-ip", "127.0.0.205", "--listen-port", "17205",
                                    "download", "-o", out, "-e", "--disable-http-api",
                                    "--initial-peers", seed_addr, torrent],
                                   env={**os.environ, "XDG_CACHE_HOME": os.path.join(tmp, "cache")}),
            "aria2": lambda: run_aria2(torrent, src, out),
        }
        results = {c: [] for c in clients}
        for _ in range(args.runs):
            for client in clients:
                fresh()
                results[client].append(commands[client]())
                got = os.path.join(out, "payload.bin")
                if subprocess.run(["cmp", "-s", data, got]).returncode != 0:
                    sys.exit(f"{client}: downloaded file differs")

        # shoal seed -> shoal get, and a recheck of the complete file with no resume state.
        shoal_seed = subprocess.Popen([SHOAL, "seed", torrent, src, "--listen", "127.0.0.206:17206",
                                       "--state-dir", os.path.join(tmp, "seed-state"), "--json"],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        while '"started"' not in shoal_seed.stdout.readline():
            pass
        s2s, recheck = [], []
        for _ in range(args.runs):
            fresh()
            s2s.append(timed([SHOAL, "get", torrent, "-o", out, "--no-seed", "--peer", "127.0.0.206:17206",
                              "--listen", "127.0.0.207:17207", "--state-dir", os.path.join(tmp, "state")]))
            shutil.rmtree(os.path.join(tmp, "state"))
            recheck.append(timed([SHOAL, "get", torrent, "-o", out, "--no-seed",
                                  "--listen", "127.0.0.207:17207", "--state-dir", os.path.join(tmp, "state")]))
        shoal_seed.kill()
        seed.stdin.close()
        seed.wait()

    size_mb = args.size_mib * 1.048576

    def med(runs):
        return tuple(statistics.median(r[i] for r in runs) for i in range(3))

    base = med(results["shoal"])[0] if "shoal" in results else None
    rows = []
    for client, runs in results.items():
        wall, cpu, rss = med(runs)
        ratio = f"{wall / base:.2f}" if base else "-"
        rows.append(f"| {client} | {wall:.2f} | {size_mb / wall:.0f} | {cpu:.2f} | {rss / 1024:.1f} | {ratio} |")
    others = [med(r)[0] for c, r in results.items() if c != "shoal"]
    fastest = min(others) if others else None
    s2s_wall, s2s_cpu, s2s_rss = med(s2s)
    re_wall, re_cpu, _ = med(recheck)
    reproduce = f"/usr/bin/python3 benches/get_vs_clients.py --size-mib {args.size_mib} --piece {args.piece} --runs {args.runs}"
    if args.rqbit:
        reproduce += " --rqbit PATH/TO/rqbit"
    section = "\n".join([
        "## get: `shoal get` vs libtorrent, rqbit and aria2 from one libtorrent seed",
        "",
        f"{args.size_mib} MiB, {args.piece} pieces, one libtorrent {lt_version()} seed on loopback (TCP), "
        f"{args.runs} alternating runs per client, medians. Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}.",
        "Wall time runs from start to exit (libtorrent: to `is_seeding`, interpreter start included). "
        "libtorrent's RSS counts its memory-mapped file.",
        "",
        "| client | wall s | MB/s | CPU s | peak RSS MiB | time / shoal's |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        (f"- shoal / fastest other client (wall): **{base / fastest:.2f}** (goal ≤ 0.80)." if base and fastest else ""),
        f"- shoal seed → shoal get: {s2s_wall:.2f} s, **{size_mb / s2s_wall:.0f} MB/s** (goal ≥ 1000), "
        f"{s2s_cpu:.2f} CPU s for the downloader, {s2s_rss / 1024:.1f} MiB peak RSS.",
        f"- Recheck of the complete file with no resume state (`shoal get` into the folder that holds it): "
        f"{re_wall:.2f} s, **{size_mb / re_wall:.0f} MB/s** (goal ≥ 3000), {re_cpu:.2f} CPU s.",
        "",
        f"Reproduce: `{reproduce}`",
        "",
    ])
    write_section("get:", section)


def lt_version():
    out = subprocess.run(["/usr/bin/python3", "-c", "import libtorrent; print(libtorrent.__version__)"],
                         capture_output=True, text=True)
    return out.stdout.strip()


if __name__ == "__main__":
    main()
