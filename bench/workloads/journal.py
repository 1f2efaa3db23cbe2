"""The journal path (docs/fleet.md): the agent's CPU per line with StandardOutput=journal
against stdout to a file, journald's native protocol against the stdout stream, and the
highest paced rate that journald -> systemd-journal-upload -> systemd-journal-remote on
loopback carries without losing a line.

This machine's PID 1 is not systemd, so there is no journald to measure here: the section
boots the .deb test's Debian 12 guest (tests/deb/run.py --journal-bench, qemu under TCG) and
runs bench/workloads/journal_guest.py in it against the installed randguard.service. Needs
the .deb (built here with `make deb`) and the guest cache of `make test-deb`."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys

from host import git, log
from layout import ROOT, WORK
from results import Journal, JournalCpuRun, JournalRate, JournalWriterRun, Results, summary
from typed_json import from_json

WHERE = ("Debian 12 guest of the .deb test (qemu TCG, 2 vCPUs, hosted by the machine above; "
         "Debian's kernel and systemd 252, the .deb installed)")


def journal(args: argparse.Namespace, res: Results) -> None:
    subprocess.run(["make", "-C", str(ROOT), "--no-print-directory", "deb"], check=True,
                   stdout=sys.stderr)
    debs = sorted((ROOT / "dist").glob("randguard_*_amd64.deb"))
    WORK.mkdir(parents=True, exist_ok=True)
    out = WORK / "journal-bench.json"
    out.unlink(missing_ok=True)
    params = {"rounds": args.rounds, "opens": 6000, "rate": 600.0, "seconds": 10,
              "rates": [250, 500, 1000, 2000, 4000], "writer_entries": 10000}
    log(f"journal: booting the .deb guest ({debs[-1].name}), {params}")
    subprocess.run([sys.executable, str(ROOT / "tests/deb/run.py"), str(debs[-1]),
                    "--journal-bench", str(out), "--bench-args", json.dumps(params),
                    "--timeout", "1500"], check=True, stdout=sys.stderr)
    res.journal = figures(json.loads(out.read_text()))


def figures(raw: dict) -> Journal:
    cpu = [from_json(JournalCpuRun, r) for r in raw["cpu"]]
    rates = [from_json(JournalRate, r) for r in raw["lossless"]]
    good = [r.rate for r in rates if r.lossless]

    def by(field: str) -> dict:
        return {o: summary([getattr(r, field) for r in cpu if r.output == o], 1)
                for o in ("journal", "file")}

    return Journal(
        date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        commit=git("rev-parse", "HEAD"), where=WHERE, kernel=raw["kernel"],
        vcpus=raw.get("vcpus"), seconds=raw["seconds"], cpu=cpu,
        writer=[from_json(JournalWriterRun, r) for r in raw["writer"]], rates=rates,
        agent_us_per_line=by("agent_cpu_us_per_line"),
        journald_us_per_line=by("journald_cpu_us_per_line"),
        lossless_rate=max(good) if good else None,
        generator_bound=bool(rates) and rates[-1].lossless,
        notes=[*raw.get("errors", []), *(f"journald: {n}" for n in raw.get("journald_notes", [])),
               f"at the end: {raw.get('journal_disk_usage', '?')}"])
