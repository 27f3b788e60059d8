#!/usr/bin/python3
"""Benchmark: `shoal get` against libtorrent downloading the same torrent from the same
Transmission seeds (transmission-daemon 3, TCP, on loopback; one by default).

Transmission unchokes on its own clock (every 10 s), so the wall time of a download
holds up to 10 s of waiting that says nothing of the downloader. The table gives the
transfer time instead: from the first piece the downloader has verified to the last
(each client's own progress, timestamped as it reports it), its median over the runs, and
the rate that makes. Clients run alternately (A B A B ...), each run from its own
127.0.0.x so that Transmission takes it as a new peer. Writes the section
"from Transmission:" of docs/BENCHMARKS.md.

    /usr/bin/python3 benches/from_transmission.py [--size-mib 64] [--piece 256K] [--runs 3]
        [--seeds 1] [--partial] [--leechers 0 --leecher-rate 262144]

With --partial the Transmission daemons are leechers, not seeds: the torrent is a folder
whose last file is one piece, which they lack and do not want (a partial seed, as a
Transmission peer that deselected a file is).

Needs: a release build, transmission-daemon and transmission-remote, python3-libtorrent
(hence /usr/bin/python3).
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import SHOAL, machine, random_torrent, write_section

def seed_addr(i):
    """The i-th seed's address, peer port and RPC port."""
    return f"127.0.0.{221 + i}", 17221 + i, 17321 + i

# Prints "first T" when the first piece is verified and "done T" when all are (T from
# the start of the script), then exits.
LT_GET = """
import libtorrent as lt, sys, time
start = time.monotonic()
torrent, save, ip, port = sys.argv[1:5]
s = lt.session({'listen_interfaces': '%s:%s' % (ip, port), 'outgoing_interfaces': ip,
    'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'enable_incoming_utp': False, 'enable_outgoing_utp': False, 'alert_mask': 0})
h = s.add_torrent({'ti': lt.torrent_info(torrent), 'save_path': save})
for seed in sys.argv[5:]:
    seed_ip, seed_port = seed.split(':')
    h.connect_peer((seed_ip, int(seed_port)))
first = None
while time.monotonic() - start < 600:
    st = h.status()
    if first is None and st.num_pieces > 0:
        first = time.monotonic() - start
        print('first %f' % first, flush=True)
    if st.is_seeding:
        print('done %f' % (time.monotonic() - start), flush=True)
        break
    time.sleep(0.02)
"""


# A libtorrent peer that lacks one piece and will not fetch it (priority 0), uploading at
# most RATE bytes/s: a leecher that sends, and stays one. Prints "ready" once checked.
LT_LEECHER = """
import libtorrent as lt, sys, time
torrent, save, ip, port, rate, missing = sys.argv[1:7]
s = lt.session({'listen_interfaces': '%s:%s' % (ip, port), 'outgoing_interfaces': ip,
    'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'enable_incoming_utp': False, 'enable_outgoing_utp': False, 'alert_mask': 0,
    'upload_rate_limit': int(rate)})
# Loopback peers are in libtorrent's local peer class, which the session limit skips.
local = s.get_peer_class(s.local_peer_class_id)
local['upload_limit'] = int(rate)
s.set_peer_class(s.local_peer_class_id, local)
info = lt.torrent_info(torrent)
h = s.add_torrent({'ti': info, 'save_path': save})
h.piece_priority(int(missing), 0)
deadline = time.monotonic() + 120
while h.status().num_pieces < info.num_pieces() - 1 or h.status().state == h.status().checking_files:
    if time.monotonic() > deadline:
        sys.exit('check did not finish')
    time.sleep(0.05)
print('ready', flush=True)
while True:
    time.sleep(1)
"""


def start_leechers(tmp, content, torrent, count, rate, piece_bytes):
    """`count` libtorrent leechers at 127.0.0.241+i, each lacking piece i (its copy of the
    data has that piece zeroed); returns their processes and addresses. `content` is what
    the torrent holds: payload.bin, or a folder that starts with it."""
    procs, addrs = [], []
    for i in range(count):
        save = os.path.join(tmp, f"leecher-{i}")
        os.makedirs(save)
        copy = os.path.join(save, os.path.basename(content))
        if os.path.isdir(content):
            shutil.copytree(content, copy)
            copy = os.path.join(copy, "payload.bin")
        else:
            shutil.copyfile(content, copy)
        with open(copy, "r+b") as f:
            f.seek(i * piece_bytes)
            f.write(bytes(piece_bytes))
        ip, port = f"127.0.0.{241 + i}", 17241 + i
        proc = subprocess.Popen(["/usr/bin/python3", "-c", LT_LEECHER, torrent, save, ip,
                                 str(port), str(rate), str(i)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(proc)
        if proc.stdout.readline().strip() != "ready":
            sys.exit("a libtorrent leecher did not start")
        addrs.append(f"{ip}:{port}")
    return procs, addrs


def stop(procs):
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=30)


def remote(i, *args):
    ip, _, rpc = seed_addr(i)
    return subprocess.run(["transmission-remote", f"{ip}:{rpc}", *args],
                          capture_output=True, text=True, timeout=30)


def start_seed(tmp, src, torrent, i, partial=False):
    """The i-th transmission-daemon, seeding `src` (seeds share it: they only read), or
    if `partial` a copy of it without the torrent's last file, which it does not want."""
    ip, port, rpc = seed_addr(i)
    config = os.path.join(tmp, f"tr-config-{i}")
    if partial:
        own = os.path.join(tmp, f"tr-data-{i}")
        shutil.copytree(src, own)
        os.remove(os.path.join(own, "payload", "tail.bin"))
        src = own
    daemon = subprocess.Popen(
        ["transmission-daemon", "--foreground", "--config-dir", config,
         "--bind-address-ipv4", ip, "--peerport", str(port),
         "--rpc-bind-address", ip, "--port", str(rpc),
         "--allowed", "127.*.*.*", "--no-auth", "--no-dht", "--no-lpd", "--no-utp",
         "--no-portmap", "--encryption-tolerated", "--no-incomplete-dir",
         "--download-dir", src],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while remote(i, "--list").returncode != 0:
        if time.monotonic() > deadline:
            sys.exit("transmission-daemon RPC not up")
        time.sleep(0.1)
    remote(i, "--add", torrent)
    if partial:
        remote(i, "--torrent", "1", "--no-get", "1")
    deadline = time.monotonic() + 300
    while True:
        info = remote(i, "--torrent", "1", "--info").stdout
        if "Percent Done: 100%" in info and "Verif" not in info:
            return daemon
        if time.monotonic() > deadline:
            sys.exit(f"Transmission did not finish checking:\n{info}")
        time.sleep(0.2)


def run_shoal(tmp, torrent, ip, port, seeds):
    out, state = os.path.join(tmp, "out"), os.path.join(tmp, "state")
    cmd = [SHOAL, "get", torrent, "-o", out, "--no-seed", "--json", "--no-dht",
           "--listen", f"{ip}:{port}", "--state-dir", state]
    for seed in seeds:
        cmd += ["--peer", seed]
    start = time.monotonic()
    first = done = None
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        for line in proc.stdout:
            event = json.loads(line).get("event")
            now = time.monotonic() - start
            if event == "piece" and first is None:
                first = now
            if event == "completed":
                done = now
    if proc.returncode != 0 or first is None or done is None:
        sys.exit(f"shoal get failed ({proc.returncode})")
    return first, done


def run_libtorrent(tmp, torrent, ip, port, seeds):
    out = os.path.join(tmp, "out")
    os.makedirs(out)
    proc = subprocess.run(["/usr/bin/python3", "-c", LT_GET, torrent, out, ip, str(port),
                           *seeds], capture_output=True, text=True, timeout=700)
    times = dict(line.split() for line in proc.stdout.split("\n") if line)
    if "done" not in times:
        sys.exit(f"libtorrent did not finish:\n{proc.stdout}\n{proc.stderr}")
    return float(times["first"]), float(times["done"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--piece", default="256K")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=1, help="Transmission seeds (1-19)")
    parser.add_argument("--partial", action="store_true",
                        help="the Transmission peers each lack a piece (leechers, not seeds)")
    parser.add_argument("--leechers", type=int, default=0,
                        help="libtorrent peers that each lack one piece and send too (0-14)")
    parser.add_argument("--leecher-rate", type=int, default=256 * 1024,
                        help="each leecher's upload limit, bytes/s")
    args = parser.parse_args()
    for tool in ("transmission-daemon", "transmission-remote"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed")
    if not os.path.exists(SHOAL):
        sys.exit("build first: cargo build --release")
    clients = {"shoal": run_shoal, "libtorrent": run_libtorrent}
    transfer = {name: [] for name in clients}
    with tempfile.TemporaryDirectory() as tmp:
        unit = {"k": 10, "m": 20}.get(args.piece[-1].lower(), 0)
        piece_bytes = int(args.piece.rstrip("KkMm")) << unit
        src, data, torrent = random_torrent(tmp, args.size_mib, args.piece,
                                            piece_bytes if args.partial else 0)
        content = os.path.dirname(data) if args.partial else data
        daemons = []
        try:
            for i in range(args.seeds):
                daemons.append(start_seed(tmp, src, torrent, i, args.partial))
            seeds = [f"{ip}:{port}" for ip, port, _ in map(seed_addr, range(args.seeds))]
            host = 1
            for run in range(args.runs):
                for name, fetch in clients.items():
                    host += 1
                    ip, port = f"127.0.1.{host}", 17400 + host
                    work = os.path.join(tmp, f"{name}-{run}")
                    os.makedirs(work)
                    # Fresh leechers each run: none has learnt of the last downloader.
                    leechers, extra = start_leechers(work, content, torrent, args.leechers,
                                                     args.leecher_rate, piece_bytes)
                    try:
                        first, done = fetch(work, torrent, ip, port, seeds + extra)
                    finally:
                        stop(leechers)
                    transfer[name].append(done - first)
                    print(f"{name} run {run + 1}: first piece {first:.1f} s, "
                          f"done {done:.1f} s", flush=True)
                    shutil.rmtree(work)
        finally:
            stop(daemons)
    size = args.size_mib
    peer = "leecher" if args.partial else "seed"
    key = "from Transmission" if args.seeds == 1 else f"from {args.seeds} Transmission"
    if args.seeds > 1 or args.partial:
        key += f" {peer}s" if args.seeds > 1 else f" {peer}"
    what = (f"one Transmission {peer}" if args.seeds == 1
            else f"{args.seeds} Transmission {peer}s")
    if args.partial:
        what += (" (lacking the last piece: a file it does not want)" if args.seeds == 1
                 else " (each lacking the last piece: a file it does not want)")
    if args.leechers:
        key += f" and {args.leechers} leechers"
        what += (f" and {args.leechers} libtorrent leechers that send "
                 f"({args.leecher_rate // 1024} KiB/s each, each lacking a piece)")
    lines = [
        f"## {key}: `shoal get` and libtorrent from {what}",
        "",
        f"`/usr/bin/python3 benches/from_transmission.py --size-mib {size} "
        f"--piece {args.piece} --runs {args.runs}"
        + (f" --seeds {args.seeds}" if args.seeds > 1 else "")
        + (" --partial" if args.partial else "")
        + (f" --leechers {args.leechers} --leecher-rate {args.leecher_rate}" if args.leechers
           else "") + f"` ({machine()}; "
        f"{time.strftime('%Y-%m-%d')}). transmission-daemon {peer}s on loopback (TCP), "
        "each client run in turn from its own address. Transfer time: from the first "
        "verified piece to the last (Transmission's 10 s unchoke clock left out); median "
        "over the runs.",
        "",
        "| client | transfer (s) | MiB/s | runs (s) | vs shoal |",
        "|---|---|---|---|---|",
    ]
    ours = statistics.median(transfer["shoal"])
    for name, times in transfer.items():
        median = statistics.median(times)
        runs = ", ".join(f"{t:.1f}" for t in times)
        lines.append(f"| {name} | {median:.1f} | {size / median:.1f} | {runs} | "
                     f"{median / ours:.2f} |")
    write_section(key, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
