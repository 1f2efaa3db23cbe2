"""The machine the bench runs on: commands, BPF links attached by anyone, CPU time and RSS of
a process, load, and the description that heads the report."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from layout import ROOT
from results import Machine


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def sh(*cmd: str, check: bool = True, **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def link_count() -> int:
    """BPF links attached on the whole machine (ours and everyone else's)."""
    try:
        out = sh("bpftool", "link", "show", "-j").stdout.strip()
        return len(json.loads(out or "[]"))
    except (subprocess.CalledProcessError, json.JSONDecodeError):
        return -1


def wait_quiet(timeout: float, own: int = 0) -> int:
    """Wait until at most `own` BPF links are attached (no foreign tracer); returns how many
    foreign links there still were if the wait timed out (0 when quiet)."""
    deadline = time.monotonic() + timeout
    while True:
        n = link_count() - own
        if n <= 0 or time.monotonic() >= deadline:
            return max(n, 0)
        time.sleep(0.25)


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def proc_cpu_ns(pid: int) -> int:
    """CPU time of all threads of a process, ns (schedstat: ns resolution)."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
    except OSError:
        pass
    return total


def proc_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class RssSampler:
    """Largest VmRSS of a process, sampled every `interval` s while the context is open."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval = pid, interval
        self.max_kb = proc_rss_kb(pid) or 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.max_kb = max(self.max_kb, proc_rss_kb(self.pid) or 0)

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def pid_of_comm(comm: str) -> int | None:
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if Path(f"/proc/{p}/comm").read_text().strip() == comm:
                    return int(p)
            except OSError:
                pass
    return None


def git(*args: str) -> str:
    """Output of a git command in the repository ('' if it fails)."""
    return sh("git", "-C", str(ROOT), *args, check=False).stdout.rstrip()


def _first_value(path: str, prefix: str, sep: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(sep, 1)[1].strip().strip('"')
    return "unknown"


def machine_info() -> Machine:
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    dirty = [ln[3:] for ln in git("status", "--porcelain").splitlines()
             if not ln[3:].startswith(("bench/", "docs/benchmarks"))]
    versions = {}
    for name, cmd in (("opensnoop", ["dpkg-query", "-W", "-f=${Version}", "libbpf-tools"]),
                      ("auditd", ["dpkg-query", "-W", "-f=${Version}", "auditd"]),
                      ("python", [str(ROOT / ".venv/bin/python"), "-c",
                                  "import sys;print(sys.version.split()[0])"])):
        versions[name] = sh(*cmd, check=False).stdout.strip()
    return Machine(
        cpu=_first_value("/proc/cpuinfo", "model name", ":"), cores=os.cpu_count(),
        memory_gib=round(mem_kb / 2**20, 1), kernel=platform.release(),
        os=_first_value("/etc/os-release", "PRETTY_NAME=", "="), hostname=platform.node(),
        commit=git("rev-parse", "HEAD"), commit_subject=git("log", "-1", "--format=%s"),
        dirty_files_outside_bench=dirty, versions=versions,
    )


def rounds(args: argparse.Namespace, what: str) -> Iterator[int]:
    """The round numbers of a section, each said and started on a quiet machine."""
    for rnd in range(args.rounds):
        log(f"{what} round {rnd + 1}/{args.rounds}")
        wait_quiet(args.quiet_wait)
        yield rnd
