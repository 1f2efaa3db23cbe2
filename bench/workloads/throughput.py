"""Table 2: the highest rate of watched-file opens each tool reports without losing one, the
agent's CPU per event and its RSS under that load and when overloaded."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from host import RssSampler, loadavg, proc_rss_kb, rounds, wait_quiet
from layout import WATCHED, WORK
from prepare import write_config
from results import (
    AgentTrial,
    OpenSnoopTrial,
    Results,
    Search,
    Throughput,
    ThroughputRun,
    ratio,
    summary,
)
from tools.health import losses
from tools.opensnoop import OpenSnoop
from tools.randguard import RandGuard

from workloads.generator import gen, rate

FRACTIONS = (0.9, 0.75, 0.6, 0.45, 0.3, 0.15)  # of the rate that got through flat out


def agent_trial(cfg: Path, target: float, secs: float, tag: str) -> AgentTrial:
    """One agent run with a paced (or, target 0, flat-out) watched-open load."""
    with RandGuard(cfg, WORK / f"tp-{tag}.ndjson") as a:
        time.sleep(0.5)
        rss_idle = proc_rss_kb(a.pid)
        with RssSampler(a.pid) as rs:
            c0, t0 = a.cpu_ns(), time.monotonic()
            g = gen("openrate", WATCHED / "f", target, secs)
            t_end = a.wait_drained()
            c1 = a.cpu_ns()
    h = a.final or {}
    written = (h.get("events_written") or {}).get("file_open", 0)
    loss = losses(h)
    busy = t_end - t0
    return AgentTrial(
        target_rate=target, achieved_rate=rate(g), ops=g["ops"], file_open_written=written,
        loss=loss, lossless=loss.none_lost() and written >= g["ops"],
        records_read=h.get("records_read"), cpu_ns_per_event=round((c1 - c0) / max(written, 1)),
        drain_rate=round(written / busy) if busy > 0 else None, rss_idle_kb=rss_idle,
        rss_load_max_kb=rs.max_kb, startup_s=a.startup_s, final_rss_kb=h.get("rss_kb"))


def opensnoop_trial(target: float, secs: float, tag: str) -> OpenSnoopTrial:
    with OpenSnoop(WORK / f"tp-opensnoop-{tag}.out") as o:
        time.sleep(0.3)
        c0 = o.cpu_ns()
        g = gen("openrate", WATCHED / "f", target, secs)
        time.sleep(1.0)
        c1 = o.cpu_ns()
    seen = o.count(str(WATCHED / "f"))
    lost = o.lost()
    return OpenSnoopTrial(target_rate=target, achieved_rate=rate(g), ops=g["ops"], lines=seen,
                          lost=lost, lossless=lost == 0 and seen >= g["ops"],
                          cpu_ns_per_event=round((c1 - c0) / max(seen, 1)))


def search(trial: Callable, secs: float, tag: str) -> Search:
    """Flat out first; if that lost anything, paced at fractions of the rate that got through,
    highest first, until one is lossless."""
    first = trial(0, secs, f"{tag}-max")
    if first.lossless:
        return Search(lossless_rate=first.achieved_rate, generator_bound=True, trials=[first])
    trials = [first]
    for frac in FRACTIONS:
        t = trial(round(first.delivered_rate() * frac), secs, f"{tag}-{int(frac * 100)}")
        trials.append(t)
        if t.lossless:
            return Search(lossless_rate=t.achieved_rate, generator_bound=False, trials=trials)
    return Search(lossless_rate=None, generator_bound=False, trials=trials)


def throughput(args: argparse.Namespace, res: Results) -> None:
    cfg = write_config("nolimit", max_events_per_second=0)
    runs = []
    for rnd in rounds(args, "throughput"):
        ag = search(lambda r, s, t: agent_trial(cfg, r, s, t), args.tp_seconds, f"agent{rnd}")
        wait_quiet(args.quiet_wait)
        os_ = search(opensnoop_trial, args.tp_seconds, f"os{rnd}")
        alone = rate(gen("openrate", WATCHED / "f", 0, args.tp_seconds))
        runs.append(ThroughputRun(randguard=ag, opensnoop=os_, loadavg=loadavg(),
                                  generator_alone_rate=alone))
        res.startup_samples_s += [round(t.startup_s, 3) for t in ag.trials]
    res.throughput = figures(runs, args.tp_seconds)


def figures(runs: list[ThroughputRun], trial_seconds: float) -> Throughput:
    """CPU per event and RSS from each run's highest lossless agent trial."""
    ag_rates = [r.randguard.lossless_rate for r in runs]
    os_rates = [r.opensnoop.lossless_rate for r in runs]
    ratios = [ratio(a, b) for a, b in zip(ag_rates, os_rates, strict=True)]
    best = [r.randguard.best() for r in runs if r.randguard.lossless_rate]
    os_best = [r.opensnoop.best() for r in runs if r.opensnoop.lossless_rate]
    return Throughput(
        randguard_eps=summary(ag_rates, 0), opensnoop_eps=summary(os_rates, 0),
        ratio_per_run=ratios, ratio=summary(ratios, 2),
        randguard_generator_bound=[r.randguard.generator_bound for r in runs],
        opensnoop_generator_bound=[r.opensnoop.generator_bound for r in runs],
        cpu_ns_per_event=summary([t.cpu_ns_per_event for t in best], 0),
        opensnoop_cpu_ns_per_event=summary([t.cpu_ns_per_event for t in os_best], 0),
        rss_load_kb=summary([t.rss_load_max_kb for t in best], 0),
        rss_overload_kb=summary([r.randguard.trials[0].rss_load_max_kb for r in runs], 0),
        runs=runs, trial_seconds=trial_seconds,
        generator_alone_eps=summary(alone, 0) if (alone := [
            r.generator_alone_rate for r in runs if r.generator_alone_rate]) else None)
