#!/usr/bin/env python3
"""randguard benchmark: syscall overhead, lossless throughput, CPU and memory, exec load, fork
storm and (with --long) a 10-minute soak, side by side with opensnoop and auditd in one run.

Run as root from the repository (`sudo make bench`, or `sudo python3 bench/bench.py`). Writes
docs/benchmarks.json (every sample) and docs/benchmarks.md (the tables). Standard library only;
the agent runs from .venv as `randguard run`. Load generators are small C programs (bench/gen.c)
compiled here with gcc; the "minimal tracepoint pair" floor is bench/minprobe.bpf.c.

This file is the entry point: the command line and the order of the sections. The sections are
in workloads/ (each runs a load against tools/, the tools under test) and write their figures
into results.py's structures; report/ turns those into docs/benchmarks.md and its targets;
prepare.py installs and builds what the bench needs, host.py reads the machine.

The machine may be shared: every figure is the median of several runs (min and max beside it),
syscall costs are measured as CPU time of the generator (not wall time, which other load
inflates), every comparison is measured in the same run and given as a ratio, and each
measurement waits until no foreign BPF links are attached (their count is recorded if it has
to go ahead anyway).

What it changes on the machine, and puts back: auditd is started with watch rules for the
agent's watch set and stopped afterwards, rules deleted and the audit "enabled" flag restored;
packages it needs (gcc, libbpf-dev, clang, libbpf-tools, auditd) are apt-get installed if
missing; scratch files live in /var/tmp/randguard-bench and are removed at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from host import git, loadavg, log, machine_info
from layout import AGENT, DOCS_JSON, DOCS_MD, WATCHED, WORK
from prepare import build, ensure_packages
from report.markdown import write_md
from results import SECTION_KEYS, Noise, Results, summary
from typed_json import field_from_json, from_json, to_json
from workloads.agent_alone import idle, mixed, soak
from workloads.exec_load import exec_load
from workloads.fork_storm import fork_storm
from workloads.journal import journal
from workloads.kprofile import kprofile
from workloads.overhead import overhead
from workloads.profile import profile
from workloads.throughput import throughput

Section = Callable[[argparse.Namespace, Results], None]
STEPS: dict[str, Section] = {
    "overhead": overhead, "kprofile": kprofile, "throughput": throughput, "idle": idle,
    "exec": exec_load, "mixed": mixed, "fork": fork_storm, "profile": profile, "soak": soak,
    "journal": journal}
# soak (--long) and journal (boots the .deb test's guest: `--only journal`) only when asked
SECTIONS = tuple(s for s in STEPS if s not in ("soak", "journal"))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--long", action="store_true", help="also run the 10-minute soak")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)};"
                         " 'soak' alone runs just the soak, 'journal' the journal path in the "
                         ".deb test's guest); others are kept from the last JSON")
    ap.add_argument("--rounds", type=int, default=3, help="runs per figure (median of these)")
    ap.add_argument("--reps", type=int, default=2, help="samples per workload per block")
    ap.add_argument("--sample-s", type=float, default=0.25, help="seconds per overhead sample")
    ap.add_argument("--tp-seconds", type=float, default=5.0, help="seconds per throughput trial")
    ap.add_argument("--exec-seconds", type=float, default=3.0)
    ap.add_argument("--mixed-seconds", type=float, default=6.0)
    ap.add_argument("--idle-seconds", type=float, default=6.0)
    ap.add_argument("--forks", type=int, default=20000)
    ap.add_argument("--soak-seconds", type=int, default=600)
    ap.add_argument("--soak-scale", type=float, default=2.0)
    ap.add_argument("--quiet-wait", type=float, default=20.0,
                    help="seconds to wait for foreign BPF links to go away before a sample")
    ap.add_argument("--skip-auditd", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="do not touch docs/")
    ap.add_argument("--out", type=Path, default=DOCS_JSON.parent,
                    help="directory of benchmarks.json and benchmarks.md (default: docs/), e.g. "
                         "a scratch one for a trial run")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite benchmarks.md from benchmarks.json (in --out), run nothing")
    ap.add_argument("--keep", action="store_true",
                    help=f"keep {WORK} (agent outputs, configs, recordings) for inspection")
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    out_json, out_md = args.out / DOCS_JSON.name, args.out / DOCS_MD.name
    if args.report_only:
        write_md(from_json(Results, json.loads(out_json.read_text())), out_md)
        return 0
    if os.geteuid() != 0:
        print("bench: run as root (sudo make bench)", file=sys.stderr)
        return 1
    if not AGENT.exists():
        print("bench: .venv missing: run `make venv` (make bench does)", file=sys.stderr)
        return 1
    # a SIGTERM stops the run as Ctrl-C does: the running tools' `with` blocks stop them (else
    # an opensnoop or an agent stays attached, and the next run waits on its links)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    only = set(args.only.split(","))
    if args.long:
        only.add("soak")
    ensure_packages(("auditd",) if args.skip_auditd else ())
    build()
    res = run(args, only)
    carry_over(res, out_json)
    if args.no_write:
        print(json.dumps(to_json(res), indent=1))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(to_json(res), indent=1) + "\n")
    write_md(res, out_md)
    log(f"wrote {out_md} and {out_json} in {res.duration_s:.0f} s")
    return 0


def run(args: argparse.Namespace, only: set[str]) -> Results:
    """The chosen sections, in order, with the load average sampled every 2 s meanwhile."""
    t_start = time.monotonic()
    res = Results(date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                  mode="long" if args.long else "short",
                  args={**vars(args), "out": str(args.out)}, machine=machine_info())
    load_samples: list[float] = [loadavg()]
    stop_noise = threading.Event()

    def noise() -> None:
        while not stop_noise.wait(2):
            load_samples.append(loadavg())

    threading.Thread(target=noise, daemon=True).start()
    try:
        for name, section in STEPS.items():
            if name in only:
                log(f"== {name}")
                try:
                    section(args, res)
                except Exception as e:  # one failed section must not lose the others
                    log(f"{name} failed: {e!r}")
                    res.notes.append(f"section {name} failed: {e!r}")
    finally:
        stop_noise.set()
        shutil.rmtree(WATCHED if args.keep else WORK, ignore_errors=True)
    res.duration_s = time.monotonic() - t_start
    # other people may commit while this runs: the agent is loaded anew at each start
    res.machine.commit_end = git("rev-parse", "HEAD")
    if res.startup_samples_s:
        res.startup = summary(res.startup_samples_s, 3)
    samples = res.overhead.samples if res.overhead else []
    res.noise = Noise(loadavg_min=min(load_samples), loadavg_max=max(load_samples),
                      loadavg_median=statistics.median(load_samples),
                      overhead_samples=len(samples),
                      samples_with_foreign_links=sum(1 for s in samples if s.foreign_links))
    return res


def carry_over(res: Results, out_json: Path) -> None:
    """Keep the sections not run this time from the last JSON (e.g. the soak of a --long
    run), with a note that says so."""
    if not out_json.exists():
        return
    try:
        old = json.loads(out_json.read_text())
    except json.JSONDecodeError:
        return
    for key in SECTION_KEYS:
        if getattr(res, key) is None and key in old:
            setattr(res, key, field_from_json(Results, key, old[key]))
            # a section the previous run carried over too keeps the run it came from
            came = [n for n in old.get("notes", []) if n.startswith(f"`{key}` is carried over")]
            res.notes.append(came[0] if came else (
                f"`{key}` is carried over from the previous run "
                f"({old.get('date')}, commit {old['machine']['commit'][:12]})"))


if __name__ == "__main__":
    sys.exit(main())
