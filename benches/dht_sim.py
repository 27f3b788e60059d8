#!/usr/bin/env python3
"""DHT simulation figures: runs `shoal_dht::sim` (`shoal-sim dht`, release build)
for one or more configurations and writes each as a row of the "DHT simulation" table in
docs/BENCHMARKS.md. A row is keyed by its arguments: running a configuration again
replaces its row and leaves the others.

    python3 benches/dht_sim.py                              # the default configurations
    python3 benches/dht_sim.py --run "--nodes 100000 --churn 0.5 --seed 1"
"""
import argparse, os, re, subprocess, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = [
    "--nodes 10000 --churn 0 --seed 1",
    "--nodes 10000 --churn 0.5 --seed 1",
    "--nodes 10000 --churn 0.5 --seed 1 --no-reannounce",
    "--nodes 10000 --churn 0.5 --seed 1 --loss 0.05",
    "--nodes 100000 --churn 0.5 --seed 1",
]
LINE = re.compile(
    r"nodes (\d+) churn ([\d.]+): (\d+)/(\d+) lookups found the peer \(([\d.]+) %\), rounds median (\d+) p90 (\d+), "
    r"queries per lookup mean ([\d.]+) median (\d+), first peer after (\d+) ms \(median\), (\d+) packets, "
    r"mean table (\d+) nodes, (\d+) s virtual; (\d+) announces lost")
HEADER = [
    "| arguments | found | rounds median / p90 | queries per lookup (mean) | first peer (median ms) | packets | lost announces | wall s | CPU s | peak RSS MiB |",
    "|---|---|---|---|---|---|---|---|---|---|",
]


def run(args):
    binary = os.path.join(ROOT, "target", "release", "shoal-sim")
    start = time.time()
    proc = subprocess.Popen([binary, "dht", *args.split()], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    # wait4 gives this child's own CPU time and peak RSS (not the maximum over all children).
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.time() - start
    if proc.returncode != 0:
        raise SystemExit(f"dht_sim {args} failed with {proc.returncode}")
    m = LINE.search(out)
    if not m:
        raise SystemExit(f"dht_sim printed something unexpected:\n{out}")
    g = m.groups()
    cpu = usage.ru_utime + usage.ru_stime
    return (f"| `{args}` | {g[2]}/{g[3]} ({g[4]} %) | {g[5]} / {g[6]} | {g[7]} | {g[9]} | {g[10]} | {g[13]} "
            f"| {wall:.0f} | {cpu:.0f} | {usage.ru_maxrss / 1024:.0f} |")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--run", action="append", help="arguments for one dht_sim run (repeatable)")
    a = p.parse_args()
    configs = a.run or DEFAULT
    subprocess.run(["cargo", "build", "--release", "-p", "shoal-sim"], cwd=ROOT, check=True)
    path = os.path.join(ROOT, "docs", "BENCHMARKS.md")
    text = open(path).read()
    start = text.find("## DHT simulation")
    old_rows = {}
    if start >= 0:
        end = text.find("\n## ", start + 1)
        old = text[start:end if end >= 0 else len(text)]
        for line in old.splitlines():
            k = re.match(r"\| `([^`]*)` \|", line)
            if k:
                old_rows[k.group(1)] = line
    for c in configs:
        print("running", c, flush=True)
        old_rows[c] = run(c)
        print(old_rows[c], flush=True)
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    section = "\n".join([
        "## DHT simulation (`shoal_dht::sim`)",
        "",
        "The real `Dht` node code on a virtual clock: nodes join over 120 s (each bootstrapping from a random",
        "earlier node), 200 random nodes announce one info-hash each, then the `--churn` fraction of all nodes",
        "crashes without a word and as many fresh nodes join; surviving announcers re-announce (as clients do",
        "every 15 minutes) unless `--no-reannounce`; then 1000 lookups from random live nodes for random",
        "live announcers' info-hashes. One-way latency 10–100 ms, `--loss` drops packets. *Rounds*: the hop in",
        "which the first peer arrived (1 = an answer from a node in the searcher's own table). *Lost announces*:",
        "info-hashes whose every storing node crashed (before any re-announce).",
        "",
        f"Machine: {os.cpu_count()} cores, {cpu_model}, shared with other work (wall time is noisy; CPU s is",
        f"the simulation's own). Date: {time.strftime('%Y-%m-%d')}.",
        "",
        *HEADER,
        *old_rows.values(),
        "",
        "Goal (issue 6): 100 000 nodes, 50 % churn, ≥ 99 % of lookups find an announced peer, median ≤ 4 rounds.",
        "",
        "Reproduce: `python3 benches/dht_sim.py` (all rows) or `python3 benches/dht_sim.py --run \"ARGS\"` (one row);",
        "`cargo run --release -p shoal-sim -- dht ARGS` prints one run.",
        "",
    ])
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    open(path, "w").write(text)


if __name__ == "__main__":
    main()
