#!/usr/bin/env python3
"""UDP announce load: `shoal tracker` vs opentracker, alternating runs, medians.

Builds shoal and the load generator (crates/shoal-tracker/examples/tracker_load.rs) in
release mode, then for each run starts one tracker on 127.0.1.90:18090, replays the same
announces (fill: every peer once with `started`; steady: random re-announces) from
simulated peers on 127.0.1.40.., reads the tracker's peak RSS (VmHWM) and stops it.
opentracker (Debian) serves only whitelisted hashes and drops root to its own user, so
it gets a whitelist of the generator's info-hashes in a world-readable folder.

Writes the table into docs/BENCHMARKS.md (section "tracker"). Run as root (opentracker
needs it to change user) on an otherwise idle machine.
"""

import argparse
import json
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADDR = ("127.0.1.90", 18090)


def wait_udp(addr, limit=10.0):
    """Waits until a BEP 15 connect gets an answer."""
    deadline = time.time() + limit
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    while time.time() < deadline:
        s.sendto(struct.pack(">QII", 0x41727101980, 0, 7), addr)
        try:
            s.recvfrom(64)
            return
        except socket.timeout:
            pass
    sys.exit(f"no tracker answering on {addr}")


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))


def start(name, workdir):
    host, port = ADDR
    if name == "shoal":
        cmd = [f"{ROOT}/target/release/shoal", "tracker", "--udp", f"{host}:{port}",
               "--http", f"{host}:{port}"]
    else:
        cmd = ["opentracker", "-i", host, "-p", str(port), "-P", str(port),
               "-f", f"{workdir}/opentracker.conf"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_udp(ADDR)
    return proc


def load(args):
    out = subprocess.run(
        [f"{ROOT}/target/release/examples/tracker_load", "--target", f"{ADDR[0]}:{ADDR[1]}",
         "--torrents", str(args.torrents), "--peers", str(args.peers),
         "--steady", str(args.steady), "--window", str(args.window)],
        check=True, capture_output=True, text=True, timeout=600).stdout
    return {p["phase"]: p for p in map(json.loads, out.splitlines())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--torrents", type=int, default=100_000)
    ap.add_argument("--peers", type=int, default=1_000_000)
    ap.add_argument("--steady", type=int, default=500_000)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    # Two builds: naming an example restricts a build to examples.
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "shoal"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "shoal-tracker", "--example", "tracker_load"],
                   cwd=ROOT, check=True)
    workdir = tempfile.mkdtemp(prefix="tracker-bench-")
    os.chmod(workdir, 0o755)
    hashes = subprocess.run([f"{ROOT}/target/release/examples/tracker_load", "--print-hashes",
                             str(args.torrents)], check=True, capture_output=True, text=True).stdout
    with open(f"{workdir}/whitelist.txt", "w") as f:
        f.write(hashes)
    os.chmod(f"{workdir}/whitelist.txt", 0o644)
    with open(f"{workdir}/opentracker.conf", "w") as f:
        f.write(f"tracker.rootdir {workdir}\naccess.whitelist /whitelist.txt\ntracker.user _opentracker\n")

    results = {"shoal": [], "opentracker": []}
    for run in range(args.runs):
        order = ["shoal", "opentracker"] if run % 2 == 0 else ["opentracker", "shoal"]
        for name in order:
            proc = start(name, workdir)
            try:
                phases = load(args)
                phases["rss_mib"] = peak_rss_kib(proc.pid) / 1024
            finally:
                proc.terminate()
                proc.wait(timeout=10)
            results[name].append(phases)
            print(name, json.dumps(phases), flush=True)

    def med(name, phase, key):
        return statistics.median(r[phase][key] for r in results[name])

    def med_rss(name):
        return statistics.median(r["rss_mib"] for r in results[name])

    rows = []
    for name in ["shoal", "opentracker"]:
        rows.append(
            f"| {name} | {med(name, 'fill', 'announces_per_sec'):.0f} | {med(name, 'fill', 'p99_ms'):.2f} "
            f"| {med(name, 'steady', 'announces_per_sec'):.0f} | {med(name, 'steady', 'p99_ms'):.2f} "
            f"| {sum(r['fill']['lost'] + r['steady']['lost'] for r in results[name])} | {med_rss(name):.0f} |")
    ratio_fill = med("shoal", "fill", "announces_per_sec") / med("opentracker", "fill", "announces_per_sec")
    ratio_steady = med("shoal", "steady", "announces_per_sec") / med("opentracker", "steady", "announces_per_sec")
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    section = "\n".join([
        "## tracker: `shoal tracker` vs opentracker (UDP announces)",
        "",
        f"{args.peers:,} peers in {args.torrents:,} torrents from {-(-args.peers // 65535)} loopback source "
        f"addresses, {args.window} announces in flight per source; fill = every peer announces `started` "
        f"once, steady = {args.steady:,} random re-announces; numwant 50. {args.runs} alternating runs, "
        f"medians. The load generator and the tracker share the machine's 2 cores ({cpu}). "
        f"Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "| tracker | fill announces/s | fill p99 ms | steady announces/s | steady p99 ms | lost (all runs) | peak RSS MiB |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"- Ratio shoal / opentracker, announces/s: fill **{ratio_fill:.2f}**, steady **{ratio_steady:.2f}** "
        "(goal ≥ 1.00).",
        "- shoal answers UDP from one task (opentracker runs 5 threads); the generator is one thread, so the "
        "figures are what two shared cores give. Lost = requests unanswered within 1 s (socket buffer "
        "overruns).",
        "",
        f"Reproduce (as root): `python3 benches/tracker_vs_opentracker.py --torrents {args.torrents} "
        f"--peers {args.peers} --steady {args.steady} --window {args.window} --runs {args.runs}`",
        "",
    ])
    path = f"{ROOT}/docs/BENCHMARKS.md"
    with open(path) as f:
        text = f.read()
    pattern = re.compile(r"## tracker:.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(section.rstrip("\n") + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)
    print(section)


if __name__ == "__main__":
    main()
