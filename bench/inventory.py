"""What the persistence inventory costs: time and memory to list and hash the default pack's
files on this machine, and a synthetic tree of 50,000 files; and the state file's write and
read. Each case runs in a fresh child process (its peak RSS is the inventory's own), with the
page cache warm and, as root, dropped first (cold). Prints a markdown table.

    sudo .venv/bin/python bench/inventory.py [--files 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
from randguard.core.config import Config, InventoryConfig, PersistenceDetection
from randguard.core.engine import RuleEngine
from randguard.process.inventory import locations, read_state, scan, write_state
from randguard.core.ruleset import RuleSet, load_ruleset, passwd_homes

def rss():
    for line in open("/proc/self/status"):
        if line.startswith(("VmRSS", "VmHWM")):
            yield int(line.split()[1])

tree = sys.argv[1]
if tree == "pack":
    cfg = Config()
    rs = load_ruleset(cfg, Path(sys.argv[2]))
    homes = passwd_homes()
    locs = locations(RuleEngine(rs, homes))
else:
    locs = locations(RuleEngine(RuleSet([PersistenceDetection(name="bench", paths=[tree])],
                                        [], []), []))
before, _ = rss()
t0 = time.perf_counter()
inv = scan(locs, InventoryConfig(max_files=10_000_000))  # all of them: what would it cost?
t1 = time.perf_counter()
now, _ = rss()
with tempfile.TemporaryDirectory() as d:
    write_state(d + "/s", inv.files, "bench", 0)
    t2 = time.perf_counter()
    read_state(d + "/s")
    t3 = time.perf_counter()
    size = Path(d + "/s").stat().st_size
_, peak = rss()
print(json.dumps(dict(files=len(inv.files), bytes=inv.hashed_bytes, scan_s=t1 - t0,
                      write_s=t2 - t1, read_s=t3 - t2, state_bytes=size,
                      rss_before_kb=before, rss_after_kb=now, peak_kb=peak)))
"""


def run(tree: str, cold: bool) -> dict:
    if cold:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "agent"))
    out = subprocess.run([sys.executable, "-c", CHILD, tree,
                          str(ROOT / "config" / "randguard.toml")],
                         check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out)


def make_tree(root: Path, n: int) -> None:
    per_dir = 100
    for d in range((n + per_dir - 1) // per_dir):
        sub = root / f"d{d:04}"
        sub.mkdir()
        for i in range(min(per_dir, n - d * per_dir)):
            (sub / f"f{i:03}.conf").write_bytes(os.urandom(1024))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rg-inv-bench-", dir="/var/tmp"))
    try:
        make_tree(root, a.files)
        rows = []
        for name, tree in (("default pack, this machine", "pack"),
                           (f"synthetic tree, {a.files:,} files of 1 KiB", str(root))):
            for cold in ((True, False) if os.geteuid() == 0 else (False,)):
                runs = [run(tree, cold) for _ in range(a.rounds)]
                r = sorted(runs, key=lambda x: x["scan_s"])[len(runs) // 2]  # the median
                rows.append(
                    f"| {name} | {'cold' if cold else 'warm'} | {r['files']:,} | "
                    f"{r['bytes'] / 1e6:,.1f} MB | {r['scan_s'] * 1000:,.0f} ms "
                    f"({min(x['scan_s'] for x in runs) * 1000:,.0f} – "
                    f"{max(x['scan_s'] for x in runs) * 1000:,.0f}) | "
                    f"{(r['rss_after_kb'] - r['rss_before_kb']) / 1024:,.1f} MiB | "
                    f"{r['state_bytes'] / 1e6:,.1f} MB: {r['write_s'] * 1000:,.0f} ms, "
                    f"{r['read_s'] * 1000:,.0f} ms |")
        print(f"Persistence inventory, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, "
              f"median of {a.rounds} runs (min – max); memory: RSS the listed "
              "inventory adds to the process (VmRSS right after minus before the scan)\n")
        print("| what | page cache | files | hashed | list + hash | RSS added "
              "| state file: size, write, read |")
        print("|---|---|---|---|---|---|---|")
        print("\n".join(rows))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
