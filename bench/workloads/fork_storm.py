"""The fork storm: N short-lived processes (fork, the child exits at once) from 2 workers,
with the agent on the default config and health every second: its process table's size and
evictions, and its RSS before, during and after."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from host import RssSampler, proc_rss_kb, rounds
from layout import WORK
from prepare import write_config
from results import ForkRun, ForkStorm, Results, summary
from tools.health import health_records, last_health, losses
from tools.randguard import RandGuard

from workloads.generator import gen

TABLE_BOUND = 32768  # the agent's process table


def fork_storm(args: argparse.Namespace, res: Results) -> None:
    cfg = write_config("health1", health_interval=1)
    runs = [fork_run(args, cfg, res) for _ in rounds(args, "fork storm")]
    res.fork_storm = ForkStorm(
        runs=runs, processes=args.forks,
        rss_growth_kb=summary([r.rss_after_kb - r.rss_before_kb for r in runs], 0),
        rss_max_kb=summary([r.rss_max_kb for r in runs], 0),
        table_after=summary([r.table_after for r in runs], 0),
        table_max=summary([r.table_max for r in runs], 0))


def fork_run(args: argparse.Namespace, cfg: Path, res: Results) -> ForkRun:
    out = WORK / "fork.ndjson"
    with RandGuard(cfg, out) as a:
        time.sleep(2.2)  # at least one periodic health record
        before = last_health(out, final_only=False) or {}
        rss0 = proc_rss_kb(a.pid)
        with RssSampler(a.pid, 0.1) as rs:
            c0 = a.cpu_ns()
            g = gen("fork", args.forks, 2, cpu=None)
            a.wait_drained(settle=1.5)
        rss1 = proc_rss_kb(a.pid)
        c1 = a.cpu_ns()
    after = a.final or {}
    res.startup_samples_s.append(round(a.startup_s, 3))
    return ForkRun(
        processes=g["ops"], seconds=round(g["ns"] / 1e9, 2),
        table_before=before.get("process_table_size"),
        table_after=after.get("process_table_size"),
        table_max=max((h.get("process_table_size") or 0) for h in health_records(out)),
        table_bound=TABLE_BOUND,
        evictions_before=before.get("process_table_evictions"),
        evictions_after=after.get("process_table_evictions"),
        rss_before_kb=rss0, rss_max_kb=rs.max_kb, rss_after_kb=rss1,
        events_written=after.get("events_written"), loss=losses(after),
        cpu_s=round((c1 - c0) / 1e9, 2))
