#!/usr/bin/python3
"""Benchmark: a real shoal swarm on loopback against the Kumar & Ross lower bound, and
the simulator's prediction for the same scenario (issue 5).

One `shoal seed` limited to 2 MB/s upload and N `shoal get` leechers limited to 1 MB/s
upload (download unlimited), each on its own 127.0.4.x, all started at once, finding
each other through a `shoal tracker`; a 64 MiB file in 256 KiB pieces. Leechers keep
seeding after they complete. T is the time from the start to the last leecher's
`completed` event; T_min = max(F/u_seed, N·F/(u_seed + Σu_i)) (download is unlimited).
Then `shoal-sim swarm` runs the same scenario and its T is compared with the real one.
Writes the section "swarm-loopback:" of docs/BENCHMARKS.md.

    /usr/bin/python3 benches/swarm_loopback.py [--leechers 20] [--runs 1]
"""
import argparse, json, os, re, signal, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, SHOAL, machine, write_section

SIZE = 64 * 1024 * 1024
SEED_UP, PEER_UP = 2_000_000, 1_000_000
TRACKER = ("127.0.4.250", 20250)


def bound(n):
    return max(SIZE / SEED_UP, n * SIZE / (SEED_UP + n * PEER_UP))


def run_swarm(tmp, torrent, src, n, super_seed):
    """Returns the completion time of each leecher (seconds from the common start)."""
    procs = []
    try:
        seed = subprocess.Popen([SHOAL, "seed", torrent, src, "--json", "--listen", "127.0.4.1:20001",
                                 "--max-up", str(SEED_UP), "--state-dir", os.path.join(tmp, "seed-state")]
                                + (["--super-seed"] if super_seed else []),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(seed)
        while '"started"' not in seed.stdout.readline():
            pass
        done = {}
        start = time.perf_counter()
        threads = []
        for i in range(n):
            out = os.path.join(tmp, f"leecher{i}")
            p = subprocess.Popen([SHOAL, "get", torrent, "-o", out, "--json",
                                  "--listen", f"127.0.4.{i + 2}:{20002 + i}", "--max-up", str(PEER_UP),
                                  "--state-dir", os.path.join(out, "state")],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            procs.append(p)

            def watch(i=i, p=p):
                for line in p.stdout:
                    if '"completed"' in line:
                        done[i] = time.perf_counter() - start
                        return
            t = threading.Thread(target=watch, daemon=True)
            t.start()
            threads.append(t)
        deadline = time.time() + 20 * bound(n)
        while len(done) < n and time.time() < deadline:
            time.sleep(0.1)
        if len(done) < n:
            sys.exit(f"only {len(done)} of {n} leechers completed")
        return [done[i] for i in range(n)]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def simulate(n, super_seed):
    cmd = ["cargo", "run", "--release", "-q", "-p", "shoal-sim", "--", "swarm",
           "--peers", str(n), "--seeds", "1", "--file-size", "64MiB", "--piece-size", "256KiB",
           "--seed-up", "2MB", "--peer-up", "1MB", "--peer-down", "1000MB", "--latency", "1",
           "--seed", "1", "--json"] + (["--super-seed"] if super_seed else [])
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[0]), " ".join(cmd[7:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--leechers", type=int, default=20)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--super-seed", action="store_true", help="the seed super-seeds (BEP 16)")
    args = ap.parse_args()
    n = args.leechers
    subprocess.run(["cargo", "build", "--release", "-p", "shoal", "-p", "shoal-sim"], cwd=ROOT, check=True)
    results = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/tmp")) as tmp:
        src = os.path.join(tmp, "src")
        os.makedirs(src)
        with open(os.path.join(src, "payload.bin"), "wb") as f:
            f.write(os.urandom(SIZE))
        torrent = os.path.join(tmp, "payload.torrent")
        announce = f"http://{TRACKER[0]}:{TRACKER[1]}/announce"
        subprocess.run([SHOAL, "create", os.path.join(src, "payload.bin"), "--piece-size", "256K",
                        "-t", announce, "-o", torrent], check=True, capture_output=True)
        tracker = subprocess.Popen([SHOAL, "tracker", "--http", f"{TRACKER[0]}:{TRACKER[1]}", "--interval", "60"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            for r in range(args.runs):
                run_dir = os.path.join(tmp, f"run{r}")
                os.makedirs(run_dir)
                results.append(run_swarm(run_dir, torrent, src, n, args.super_seed))
        finally:
            tracker.send_signal(signal.SIGTERM)
            tracker.wait(timeout=10)
    t_min = bound(n)
    swarm_t = statistics.median(max(r) for r in results)
    times = sorted(t for r in results for t in r)
    print(f"swarm T = {swarm_t:.1f} s, bound {t_min:.1f} s", flush=True)
    sim, sim_cmd = simulate(n, args.super_seed)
    sim_t = sim["swarm_completion_s"]
    section = "\n".join([
        "## swarm-loopback" + (" (super-seed)" if args.super_seed else "") + ": a real shoal swarm vs the bound and the simulator",
        "",
        f"1 `shoal seed{' --super-seed' if args.super_seed else ''}` at 2 MB/s upload, {n} `shoal get` leechers at 1 MB/s upload (download unlimited), "
        f"a 64 MiB file in 256 KiB pieces, each peer on its own 127.0.4.x, all started at once and "
        f"finding each other through `shoal tracker`. {args.runs} run(s), median of the swarm's T. "
        f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "| | T s | T / T_min |",
        "|---|---|---|",
        f"| bound T_min | {t_min:.1f} | 1.000 |",
        f"| shoal swarm on loopback | {swarm_t:.1f} | **{swarm_t / t_min:.3f}** |",
        f"| shoal-sim prediction | {sim_t:.1f} | {sim_t / t_min:.3f} |",
        f"| libtorrent 2.0.8 (issue 5's reference) | 67–68.5 | 1.10–1.12 |",
        "",
        f"- Leecher completion times (s): min {times[0]:.1f}, median {statistics.median(times):.1f}, max {times[-1]:.1f}.",
        f"- Simulator vs real: {100 * (sim_t / swarm_t - 1):+.1f} % (goal within ±5 %). Goal for the swarm: T/T_min ≤ 1.05.",
        "",
        f"Reproduce: `/usr/bin/python3 benches/swarm_loopback.py --leechers {n} --runs {args.runs}"
        f"{' --super-seed' if args.super_seed else ''}`; "
        f"the simulation alone: `cargo run --release -p shoal-sim -- {sim_cmd}`",
        "",
    ])
    write_section("swarm-loopback (super-seed):" if args.super_seed else "swarm-loopback:", section)

if __name__ == "__main__":
    main()
