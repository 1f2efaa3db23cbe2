"""Where the agent's CPU per event goes in userspace: a watched-open load recorded with
`run --record`, then the pure pipeline's stages timed over it (bench/stages.py, no profiler
overhead) and, when py-spy is installed, a `randguard replay` of it sampled."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from layout import AGENT, AGENT_CPU, BENCH, ROOT, WATCHED, WORK
from prepare import write_config
from results import Profile, PySpyRow, Results, Stages
from tools.randguard import RandGuard
from typed_json import from_json

from workloads.generator import gen

PY_SPY_FALLBACK = "/opt/rg-bench-tools/bin/py-spy"


def profile(args: argparse.Namespace, res: Results) -> None:
    cfg = write_config("nolimit-prof", max_events_per_second=0)
    rec = WORK / "profile.rec"
    with RandGuard(cfg, WORK / "profile-run.ndjson", record=rec) as a:
        time.sleep(0.3)
        gen("openrate", WATCHED / "f", 20000, 5)
        a.wait_drained()
    py = str(ROOT / ".venv" / "bin" / "python")
    r = subprocess.run(["taskset", "-c", str(AGENT_CPU), py, str(BENCH / "stages.py"), str(rec),
                        "--config", str(cfg)], capture_output=True, text=True, cwd=ROOT)
    out = Profile()
    if r.returncode == 0:
        out.stages = from_json(Stages, json.loads(r.stdout))
    else:
        res.notes.append("bench/stages.py failed (agent internals changed?): "
                         + r.stderr.strip().splitlines()[-1])
    spy = shutil.which("py-spy") or PY_SPY_FALLBACK
    if os.path.exists(spy):
        out.pyspy = pyspy(spy, rec, cfg)
    res.profile = out


def pyspy(spy: str, rec: Path, cfg: Path) -> list[PySpyRow] | None:
    """py-spy (2 kHz) over a replay of the recording, samples inside Pipeline.feed and
    Output.submit only: the top 20 functions by inclusive share."""
    raw = WORK / "replay.pyspy"
    subprocess.run(["taskset", "-c", str(AGENT_CPU), spy, "record", "-r", "2000", "-f", "raw",
                    "-o", str(raw), "--", str(AGENT), "replay", str(rec), "--config", str(cfg)],
                   capture_output=True)
    if not raw.exists():
        return None
    incl: dict[str, int] = {}
    own: dict[str, int] = {}
    in_feed = 0
    for line in raw.read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        frames = [f.split(" (")[0] for f in stack.split(";")]
        if "Pipeline.feed" not in frames and "Output.submit" not in frames:
            continue  # start-up (imports, config) and the final write
        in_feed += int(n)
        for f in set(frames):
            incl[f] = incl.get(f, 0) + int(n)
        own[frames[-1]] = own.get(frames[-1], 0) + int(n)
    top = sorted(incl, key=lambda k: -incl[k])
    return [PySpyRow(func=k, incl_pct=round(100 * incl[k] / in_feed, 1),
                     own_pct=round(100 * own.get(k, 0) / in_feed, 1))
            for k in top if k not in ("<module>", "main", "_replay")][:20]
