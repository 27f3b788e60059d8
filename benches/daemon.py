#!/usr/bin/python3
"""Benchmark: many torrents in one process, `shoal daemon` against a libtorrent session.

A libtorrent session seeds N torrents (random data) and announces them to a `shoal
tracker`; the shoal daemon (`shoal remote add`, N times) and another libtorrent session
(python3-libtorrent, all N added at once) in turn download them all through the
tracker, on loopback over TCP. Reported, medians over the runs: the time from the first
add until every torrent is complete, and the downloader's peak RSS (VmHWM) then.

transmission-daemon is not the other side: it takes no loopback address from a tracker
and drops a connection from an address still in a handshake with it, so on one
loopback seed its time measures those rules (316 s for 8 × 32 MiB), not its transfers.

Writes the section "daemon:" of docs/BENCHMARKS.md.

    /usr/bin/python3 benches/daemon.py [--torrents 8] [--size-mib 32] [--runs 3]

Needs: a release build, python3-libtorrent.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import SHOAL, machine, write_section

SEED = ("127.0.7.41", 18941)
SHOAL_AT = ("127.0.7.42", 18942, 18943)
LIBTORRENT_AT = ("127.0.7.43", 18944, None)
TRACKER = ("127.0.7.44", 18946)

# A libtorrent session on argv[1]:argv[2] (files in argv[3], torrents from argv[4]) that
# runs every torrent at once (libtorrent's queue would take turns), TCP only.
LT_SESSION = r"""
import libtorrent as lt, sys, time
ip, port, save = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = lt.session({'listen_interfaces': '%s:%d' % (ip, port), 'outgoing_interfaces': ip,
                'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False,
                'enable_natpmp': False, 'enable_incoming_utp': False,
                'enable_outgoing_utp': False, 'allow_multiple_connections_per_ip': True,
                'alert_mask': 0, 'active_seeds': -1, 'active_downloads': -1,
                'active_limit': -1})
"""

LT_SEEDS = LT_SESSION + r"""
handles = [s.add_torrent({'ti': lt.torrent_info(t), 'save_path': save}) for t in sys.argv[4:]]
while not all(h.status().is_seeding for h in handles):
    time.sleep(0.05)
print('ready', flush=True)
sys.stdin.read()
"""


LT_SESSION_GET = LT_SESSION + r"""
start = time.monotonic()
handles = [s.add_torrent({'ti': lt.torrent_info(t), 'save_path': save}) for t in sys.argv[4:]]
deadline = start + 600
while not all(h.status().is_seeding for h in handles):
    if time.monotonic() > deadline:
        sys.exit('not complete within 600 s')
    time.sleep(0.02)
took = time.monotonic() - start
hwm = next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:'))
print(took, hwm, flush=True)
"""


def vm_hwm(pid):
    """Peak RSS of a process in KiB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def make_torrents(tmp, count, size_mib):
    src = os.path.join(tmp, "src")
    os.makedirs(src)
    url = f"http://{TRACKER[0]}:{TRACKER[1]}/announce"
    torrents = []
    for i in range(count):
        data = os.path.join(src, f"file{i}.bin")
        with open(data, "wb") as f:
            for _ in range(size_mib):
                f.write(os.urandom(1 << 20))
        torrent = os.path.join(tmp, f"file{i}.torrent")
        subprocess.run([SHOAL, "create", data, "--piece-size", "256K", "-t", url, "-o", torrent],
                       check=True, capture_output=True)
        torrents.append(torrent)
    return src, torrents


def wait(what, check, limit=600):
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {limit} s")
        time.sleep(0.1)


def run_shoal(tmp, torrents):
    ip, port, rpc = SHOAL_AT
    state, out = os.path.join(tmp, "shoal-state"), os.path.join(tmp, "shoal-out")
    daemon = subprocess.Popen(
        [SHOAL, "daemon", "-o", out, "--listen", f"{ip}:{port}", "--rpc", f"{ip}:{rpc}",
         "--state-dir", state, "--no-dht", "--no-port-map", "--utp", "off", "--json",
         # Every torrent at once, as the libtorrent session's limits are lifted too.
         "--max-active-downloads", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if "listening" not in daemon.stdout.readline():
        sys.exit("shoal daemon did not start")
    remote = [SHOAL, "remote", "--rpc", f"{ip}:{rpc}", "--state-dir", state]

    def done():
        listed = subprocess.run(remote + ["--json", "list"], check=True, capture_output=True,
                                text=True).stdout
        states = [t["status"]["state"] for t in json.loads(listed)["torrents"]]
        return len(states) == len(torrents) and all(s == "seeding" for s in states)

    try:
        start = time.monotonic()
        for torrent in torrents:
            subprocess.run(remote + ["add", torrent], check=True, capture_output=True)
        wait("shoal daemon", done)
        took = time.monotonic() - start
        rss = vm_hwm(daemon.pid)
    finally:
        daemon.send_signal(2)
        daemon.wait(timeout=60)
    shutil.rmtree(out)
    shutil.rmtree(state)
    return took, rss


def run_libtorrent(tmp, torrents):
    ip, port, _ = LIBTORRENT_AT
    out = os.path.join(tmp, "lt-out")
    os.makedirs(out)
    try:
        done = subprocess.run(["/usr/bin/python3", "-c", LT_SESSION_GET, ip, str(port), out,
                               *torrents], capture_output=True, text=True, timeout=700)
        if done.returncode != 0:
            sys.exit(f"libtorrent failed: {done.stdout}{done.stderr}")
        took, rss = done.stdout.split()
        return float(took), int(rss)
    finally:
        shutil.rmtree(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torrents", type=int, default=8)
    parser.add_argument("--size-mib", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, torrents = make_torrents(tmp, args.torrents, args.size_mib)
        tracker = subprocess.Popen(
            [SHOAL, "tracker", "--http", f"{TRACKER[0]}:{TRACKER[1]}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seeds = subprocess.Popen(["/usr/bin/python3", "-c", LT_SEEDS, SEED[0], str(SEED[1]),
                                  src, *torrents],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if seeds.stdout.readline().strip() != "ready":
            sys.exit("the libtorrent seeds did not start")
        results = {"shoal": [], "libtorrent": []}
        try:
            for run in range(args.runs):
                for name, runner in (("shoal", run_shoal), ("libtorrent", run_libtorrent)):
                    took, rss = runner(tmp, torrents)
                    print(f"run {run + 1}: {name} {took:.2f} s, {rss / 1024:.1f} MiB",
                          flush=True)
                    results[name].append((took, rss))
        finally:
            seeds.terminate()
            seeds.wait(timeout=30)
            tracker.terminate()
            tracker.wait(timeout=30)
    med = {name: (statistics.median(t for t, _ in runs), statistics.median(r for _, r in runs))
           for name, runs in results.items()}
    total = args.torrents * args.size_mib
    lt_version = subprocess.run(["/usr/bin/python3", "-c",
                                 "import libtorrent; print(libtorrent.__version__)"],
                                capture_output=True, text=True).stdout.strip()
    rows = "\n".join(
        f"| {label} | {med[name][0]:.2f} | {total / med[name][0]:.0f} | "
        f"{med[name][1] / 1024:.1f} | {', '.join(f'{t:.2f}' for t, _ in results[name])} |"
        for name, label in (("shoal", "shoal daemon"),
                            ("libtorrent", f"libtorrent {lt_version} session (python3)")))
    section = f"""## daemon: `shoal daemon` vs a libtorrent session, {args.torrents} torrents at once

{args.torrents} torrents of {args.size_mib} MiB (256 KiB pieces), all added at once to one
process that finds their seed (another libtorrent {lt_version} session) through a
`shoal tracker`; TCP on loopback, no DHT, no uTP, every torrent active at once in both
(shoal's download queue and libtorrent's active limits lifted).
Time from the first add until every torrent is complete; peak RSS of the downloading
process then (libtorrent's includes its Python interpreter, about 10 MiB, and the
files' pages it maps: libtorrent 2 reads and writes through mmap). Medians of
{args.runs} alternating runs. Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}.

| downloader | all complete s | MiB/s | peak RSS MiB | runs s |
|---|---|---|---|---|
{rows}

- Ratio shoal / libtorrent (time): **{med['shoal'][0] / med['libtorrent'][0]:.2f}**;
  peak RSS: **{med['shoal'][1] / med['libtorrent'][1]:.2f}**.
- transmission-daemon is left out: on one loopback seed its time measures how it takes
  peers (no loopback address from a tracker; a second connection from an address still
  in a handshake dropped), 316 s for this work, not its transfers.

Reproduce: `/usr/bin/python3 benches/daemon.py --torrents {args.torrents} --size-mib {args.size_mib} --runs {args.runs}`
"""
    write_section("daemon:", section)


if __name__ == "__main__":
    main()
