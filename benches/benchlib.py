"""Shared by the benchmark scripts: timing a command and writing a section of
docs/BENCHMARKS.md."""
import os, re, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOAL = os.path.join(ROOT, "target", "release", "shoal")


def parse_time_v(stderr):
    """(cpu s, peak RSS KiB) from the report of /usr/bin/time -v."""
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", stderr).group(1))
    system = float(re.search(r"System time \(seconds\): ([\d.]+)", stderr).group(1))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr).group(1))
    return user + system, rss


def timed(cmd, **kwargs):
    """Runs cmd under /usr/bin/time -v; returns (wall s, cpu s, peak RSS KiB)."""
    start = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, timeout=900, **kwargs)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{cmd} failed:\n{out.stdout}\n{out.stderr}")
    return (wall, *parse_time_v(out.stderr))


def machine():
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                      if l.startswith("model name")), "?")
    return f"{os.cpu_count()} cores, {cpu_model}"


def write_section(key, section):
    """Replaces (or appends) the section of docs/BENCHMARKS.md whose heading starts
    with `## {key}`."""
    print(section)
    path = os.path.join(ROOT, "docs", "BENCHMARKS.md")
    text = open(path).read() if os.path.exists(path) else \
        "# shoal benchmarks\n\nEach section is written by the script it names.\n\n"
    start = text.find(f"## {key}")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        rest = text[end + 1:] if end >= 0 else ""
        text = text[:start] + section.rstrip("\n") + ("\n\n" + rest if rest else "\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    open(path, "w").write(text)


def random_torrent(tmp, size_mib, piece, tail_bytes=0):
    """Writes tmp/src/payload.bin (size_mib MiB of random bytes) and tmp/payload.torrent
    for it; returns (src folder, payload path, torrent path). With `tail_bytes`, the
    torrent is the folder tmp/src/payload instead: payload/payload.bin holds all but the
    last `tail_bytes` (a whole number of pieces, for a client to leave out), which are
    payload/tail.bin."""
    src = os.path.join(tmp, "src")
    root = os.path.join(src, "payload") if tail_bytes else src
    os.makedirs(root)
    data = os.path.join(root, "payload.bin")
    with open(data, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(1 << 20))
        if tail_bytes:
            f.truncate((size_mib << 20) - tail_bytes)
    if tail_bytes:
        with open(os.path.join(root, "tail.bin"), "wb") as f:
            f.write(os.urandom(tail_bytes))
    torrent = os.path.join(tmp, "payload.torrent")
    subprocess.run([SHOAL, "create", root if tail_bytes else data, "--piece-size", piece,
                    "-o", torrent], check=True, capture_output=True)
    return src, data, torrent
