"""Two commits' agents side by side: the syscall cost each adds, in paired rounds.

`make bench` compares randguard with other tools; this compares randguard with itself at
another commit (`python3 bench/ab.py REV`), for a kernel-side change. REV is checked out into
a git worktree and built there. Each round runs, per side (the order alternating), the
generator's workloads with no agent, then with that side's agent on its own default config
plus a watched directory, then with no agent again; a side's added cost in a round is its run
minus the mean of the two baselines around it (the VMs' speed drifts within minutes), and the
report gives the median over rounds. Agents on core 0, the generator (bench/gen.c) on core 1.
Run it with the project's venv, as root: `sudo .venv/bin/python bench/ab.py REV`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = Path("/var/tmp/randguard-ab")
WATCHED, UNWATCHED = WORK / "watched", WORK / "unwatched"
WORKLOADS = {
    "openat_unwatched": ("open", UNWATCHED / "f", 0),
    "openat_watched": ("open", WATCHED / "f", 1),
    "write_unwatched": ("write", UNWATCHED / "w"),
    "getppid": ("getppid",),
    "open_i386_unwatched": ("open_i386", UNWATCHED / "f", 0),
}


def gen_ns(gen: Path, args: tuple, seconds: float) -> float:
    """The generator's CPU ns per iteration of one workload."""
    r = subprocess.run(["taskset", "-c", "1", str(gen), *map(str, args), str(seconds)],
                       capture_output=True, text=True, check=True)
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return d["cpu_ns"] / d["ops"]


def config(root: Path, side: str) -> Path:
    """That side's default config, with the watched directory added."""
    text = (root / "config" / "randguard.toml").read_text()
    text = re.sub(r"^watch_paths = \[(.*)\]$",
                  lambda m: f'watch_paths = [{m.group(1)}, "{WATCHED}"]', text, flags=re.M)
    path = WORK / f"config-{side}.toml"
    path.write_text(text)
    path.chmod(0o644)
    return path


def start_agent(root: Path, side: str) -> tuple[subprocess.Popen, float]:
    """The agent of the checkout at `root`, ready (its self-test passed); and how long that
    took."""
    env = dict(os.environ, PYTHONPATH=str(root / "agent"))
    t0 = time.monotonic()
    p = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "randguard", "run",
                          "--config", str(config(root, side))], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env, cwd=root)
    for line in p.stderr:
        if b"ready:" in line:
            return p, time.monotonic() - t0
    raise SystemExit(f"{root}: the agent did not start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rev", help="the other commit (e.g. HEAD~5)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--sample-s", type=float, default=0.4)
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("ab: run as root")
    for d in (WATCHED, UNWATCHED):
        d.mkdir(parents=True, exist_ok=True)
    (UNWATCHED / "f").write_text("x")
    (WATCHED / "f").write_text("x")
    with tempfile.TemporaryDirectory(prefix="rg-ab-") as tmp:
        other = Path(tmp) / "other"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(other),
                        a.rev], check=True)
        try:
            gen = Path(tmp) / "gen"
            subprocess.run(["gcc", "-O2", "-o", str(gen), str(ROOT / "bench" / "gen.c")],
                           check=True)
            for root in (ROOT, other):
                subprocess.run(["make", "-s", "-C", str(root), "all"], check=True,
                               stdout=subprocess.DEVNULL)
            sides = {a.rev: other, "this": ROOT}
            added = {wl: {s: [] for s in sides} for wl in WORKLOADS}
            start = {s: [] for s in sides}
            for rnd in range(a.rounds):
                for side in list(sides)[:: 1 if rnd % 2 == 0 else -1]:
                    before = {wl: gen_ns(gen, w, a.sample_s) for wl, w in WORKLOADS.items()}
                    agent, took = start_agent(sides[side], "this" if side == "this" else "other")
                    start[side].append(took)
                    during = {wl: gen_ns(gen, w, a.sample_s) for wl, w in WORKLOADS.items()}
                    agent.send_signal(signal.SIGINT)
                    agent.wait(30)
                    after = {wl: gen_ns(gen, w, a.sample_s) for wl, w in WORKLOADS.items()}
                    for wl in WORKLOADS:
                        added[wl][side].append(during[wl] - (before[wl] + after[wl]) / 2)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)])
    print(f"| workload | {a.rev} | this | this / {a.rev} |\n|---|---|---|---|")
    for wl, by in added.items():
        old, new = (statistics.median(v) for v in by.values())
        ratio = f"{new / old:.2f}" if old > 0 else "n/a"
        print(f"| {wl} | {old:+,.0f} ns | {new:+,.0f} ns | {ratio} |")
    old, new = (statistics.median(v) for v in start.values())
    print(f"| start-up to ready | {old:.2f} s | {new:.2f} s | {new / old:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
