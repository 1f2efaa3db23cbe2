"""Table 4: CPU of randguard and of auditd (with an execve rule) while /bin/true is spawned
at fixed rates."""

from __future__ import annotations

import argparse
import time

from host import log, wait_quiet
from layout import WORK
from prepare import write_config
from results import ExecFigures, ExecLoad, ExecRow, ExecSample, Results, ratio, summary
from tools.auditd import Auditd
from tools.health import losses
from tools.randguard import RandGuard
from tools.tool import Tool

from workloads.agent_alone import cpu_pct
from workloads.generator import gen, rate

EXEC_RATES = (100, 400, 1600)


def exec_load(args: argparse.Namespace, res: Results) -> None:
    cfg = write_config("default")
    samples: list[ExecSample] = []
    for rnd in range(args.rounds):
        log(f"exec round {rnd + 1}/{args.rounds}")
        for make in (lambda: RandGuard(cfg, WORK / "exec-agent.ndjson"),
                     lambda: Auditd(exec_rule=True)):
            wait_quiet(args.quiet_wait)
            with make() as t:
                time.sleep(0.5)
                samples += [exec_sample(t, rnd, r, args.exec_seconds) for r in EXEC_RATES]
            if isinstance(t, RandGuard):
                samples[-1].loss = losses(t.final)
                res.startup_samples_s.append(round(t.startup_s, 3))
    res.exec = ExecLoad(table={str(r): exec_row(samples, r) for r in EXEC_RATES},
                        samples=samples, seconds=args.exec_seconds)


def exec_sample(t: Tool, rnd: int, target: int, seconds: float) -> ExecSample:
    c0, t0 = t.cpu_ns(), time.monotonic()
    g = gen("exec", target, seconds)
    c1, t1 = t.cpu_ns(), time.monotonic()
    return ExecSample(round=rnd, tool=t.name, rate=target, achieved_rate=rate(g),
                      cpu_pct=round(cpu_pct(c0, c1, t0, t1), 2),
                      cpu_us_per_exec=round((c1 - c0) / 1e3 / g["ops"], 1))


def exec_row(samples: list[ExecSample], target: int) -> ExecRow:
    by_tool = {tool: [x for x in samples if x.tool == tool and x.rate == target]
               for tool in ("randguard", "auditd")}
    figures = {tool: ExecFigures(cpu_pct=summary([x.cpu_pct for x in s], 2),
                                 cpu_us_per_exec=summary([x.cpu_us_per_exec for x in s], 1),
                                 achieved_rate=summary([x.achieved_rate for x in s], 0))
               for tool, s in by_tool.items()}
    ratios = [ratio(a.cpu_pct, b.cpu_pct)
              for a, b in zip(by_tool["randguard"], by_tool["auditd"], strict=False)]
    return ExecRow(**figures, ratio=summary(ratios, 2))
