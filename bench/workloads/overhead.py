"""Table 1: the CPU ns each tool adds to every syscall loop, against no tool, in one run.

Per round: none, minprobe, none, minbtf, none, randguard, none, randguard at BEFORE_REV, none,
opensnoop, none, auditd, none.
The added cost of a tool in a round is its median minus the median of the two baseline blocks
around it (CPU ns of the generator per iteration), so that a machine whose speed drifts still
compares."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

from host import loadavg, rounds, wait_quiet
from layout import WORK
from prepare import build_before, watch_set, write_config
from results import TRACERS, AddedCost, Overhead, OverheadRow, OverheadSample, Results, summary
from tools.auditd import Auditd
from tools.minprobe import MinProbe
from tools.opensnoop import OpenSnoop
from tools.randguard import RandGuard
from tools.tool import Baseline, Tool

from workloads.generator import I386, gen, syscall_loops


def overhead(args: argparse.Namespace, res: Results) -> None:
    cfg = write_config("default")
    before = build_before()
    before_cfg = write_config("before", root=before)
    if I386 not in syscall_loops():
        res.notes.append("this kernel has no i386 syscall entry (int $0x80 failed): the "
                         "i386 open row was not measured")
    tools: dict[str, Callable[[], Tool]] = {
        "minprobe": MinProbe,
        "minbtf": lambda: MinProbe("minbtf"),
        "randguard": lambda: RandGuard(cfg, WORK / "overhead-agent.ndjson"),
        "randguard_before": lambda: RandGuard(before_cfg, WORK / "overhead-before.ndjson",
                                              root=before, name="randguard_before"),
        "opensnoop": lambda: OpenSnoop(WORK / "overhead-opensnoop.out"),
        "auditd": Auditd}
    samples: list[OverheadSample] = []
    for rnd in rounds(args, "overhead"):
        samples += block(args, rnd, Baseline())
        for name, make in tools.items():
            if args.skip_auditd and name == "auditd":
                continue
            wait_quiet(args.quiet_wait)
            with make() as t:
                samples += block(args, rnd, t)
                if name == "randguard":
                    res.startup_samples_s.append(round(t.startup_s, 3))
            samples += block(args, rnd, Baseline())
    watch, reads = watch_set()
    res.overhead = Overhead(
        table={wl: table_row(args, samples, wl) for wl in syscall_loops()}, samples=samples,
        workloads={k: v[1] for k, v in syscall_loops().items()},
        auditd_rules=" ; ".join(watch + reads))


def block(args: argparse.Namespace, rnd: int, tool: Tool) -> list[OverheadSample]:
    """args.reps samples of every syscall loop with `tool` running."""
    out = []
    for rep in range(args.reps):
        for wl, (gargs, _) in syscall_loops().items():
            foreign = wait_quiet(args.quiet_wait, tool.own_links)
            la = loadavg()
            r = gen(*gargs, args.sample_s)
            out.append(OverheadSample(
                round=rnd, tool=tool.name, workload=wl, rep=rep,
                cpu_ns_per_op=r["cpu_ns"] / r["ops"], wall_ns_per_op=r["ns"] / r["ops"],
                ops=r["ops"], foreign_links=foreign, loadavg=la))
    return out


def table_row(args: argparse.Namespace, samples: list[OverheadSample], wl: str) -> OverheadRow:
    """One workload's baseline, and per tool its added cost in each round, summarized."""
    mine = [(i, s) for i, s in enumerate(samples) if s.workload == wl]
    base = [s.cpu_ns_per_op for _, s in mine if s.tool == "none"]
    added: dict[str, AddedCost] = {}
    for tool in TRACERS:
        cpu, wall = [], []
        for rnd in range(args.rounds):
            costs = added_in_round(mine, rnd, tool, args.reps)
            if costs:
                cpu.append(costs[0])
                wall.append(costs[1])
        added[tool] = AddedCost(added_cpu_ns=summary(cpu), added_wall_ns=summary(wall))
    return OverheadRow(baseline_ns=summary(base), **added)


def added_in_round(mine: list[tuple[int, OverheadSample]], rnd: int, tool: str,
                   reps: int) -> tuple[float, float] | None:
    """(CPU, wall) ns per iteration a tool's block added in a round over the baseline blocks
    just before and after it; mine: one workload's samples with their place in the run."""
    block_ = [(i, s) for i, s in mine if s.round == rnd and s.tool == tool]
    if not block_:
        return None
    start = block_[0][0]
    base = [(i, s) for i, s in mine if s.round == rnd and s.tool == "none"]
    ref = [s for i, s in base if i < start][-reps:] + [s for i, s in base if i > start][:reps]
    med = statistics.median
    return (med(s.cpu_ns_per_op for _, s in block_) - med(s.cpu_ns_per_op for s in ref),
            med(s.wall_ns_per_op for _, s in block_) - med(s.wall_ns_per_op for s in ref))
