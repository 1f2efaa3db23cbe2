"""The agent on its own, no other tool: idle, under the mixed load, and the --long soak
(its CPU and whether its RSS stays flat)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from host import git, loadavg, log, proc_rss_kb, rounds, wait_quiet
from layout import UNWATCHED, WATCHED, WORK
from prepare import write_config
from results import Idle, IdleRun, Mixed, MixedRun, Results, Soak, SoakSample, summary
from tools.health import losses
from tools.randguard import RandGuard

from workloads.generator import gen


def cpu_pct(c0: int, c1: int, t0: float, t1: float) -> float:
    """CPU ns used between two instants, as % of one core."""
    return 100 * (c1 - c0) / 1e9 / (t1 - t0)


@contextlib.contextmanager
def settled(cfg: Path, name: str, seconds: float) -> Iterator[tuple[RandGuard, int, float]]:
    """The agent on `cfg` (its stdout in WORK/`name`.ndjson), `seconds` after its start: with
    its CPU ns and the monotonic time then, where a measurement starts."""
    with RandGuard(cfg, WORK / f"{name}.ndjson") as a:
        time.sleep(seconds)
        yield a, a.cpu_ns(), time.monotonic()


def idle(args: argparse.Namespace, res: Results) -> None:
    """Idle CPU and RSS: the agent on the default config with nothing of ours running (other
    users' processes still make events: the machine is shared)."""
    cfg = write_config("default")
    runs = []
    for _ in rounds(args, "idle"):
        with settled(cfg, "idle", 1.0) as (a, c0, t0):
            time.sleep(args.idle_seconds)
            c1, t1 = a.cpu_ns(), time.monotonic()
            rss = proc_rss_kb(a.pid)
        h = a.final or {}
        runs.append(IdleRun(cpu_pct=cpu_pct(c0, c1, t0, t1), rss_kb=rss,
                            records_read=h.get("records_read"), startup_s=a.startup_s))
        res.startup_samples_s.append(round(a.startup_s, 3))
    res.idle = Idle(cpu_pct=summary([r.cpu_pct for r in runs], 3),
                    rss_kb=summary([r.rss_kb for r in runs], 0), runs=runs,
                    seconds=args.idle_seconds)


def mixed(args: argparse.Namespace, res: Results) -> None:
    """Per second: 1,000 read-only opens of an unwatched file, 200 create+write+rename+unlink
    cycles in the watched directory, 20 execs of /bin/true (bench/gen.c's mixed mode)."""
    cfg = write_config("default")
    runs = []
    for _ in rounds(args, "mixed"):
        with settled(cfg, "mixed", 0.5) as (a, c0, t0):
            g = gen("mixed", WATCHED, UNWATCHED / "f", 1, args.mixed_seconds)
            t1 = a.wait_drained()
            c1 = a.cpu_ns()
            rss = proc_rss_kb(a.pid)
        h = a.final or {}
        written = sum((h.get("events_written") or {}).values())
        runs.append(MixedRun(cpu_pct=cpu_pct(c0, c1, t0, t1), rss_kb=rss,
                             events_written=written, events_per_s=written / (t1 - t0),
                             loss=losses(h), gen=g))
        res.startup_samples_s.append(round(a.startup_s, 3))
    res.mixed = Mixed(cpu_pct=summary([r.cpu_pct for r in runs], 2),
                      events_per_s=summary([r.events_per_s for r in runs], 0),
                      rss_kb=summary([r.rss_kb for r in runs], 0),
                      lossless_runs=sum(r.loss.none_lost() for r in runs),
                      runs=runs, seconds=args.mixed_seconds)


def soak(args: argparse.Namespace, res: Results) -> None:
    """--long: mixed load (scale 2) for args.soak_seconds; RSS sampled every 5 s."""
    cfg = write_config("soak")
    wait_quiet(args.quiet_wait)
    log(f"soak: {args.soak_seconds} s of mixed load")
    samples = []
    with RandGuard(cfg, WORK / "soak.ndjson") as a:
        time.sleep(0.5)
        c0, t0 = a.cpu_ns(), time.monotonic()
        box: dict = {}
        th = threading.Thread(target=lambda: box.update(g=gen(
            "mixed", WATCHED, UNWATCHED / "f", args.soak_scale, args.soak_seconds,
            timeout=args.soak_seconds + 120)), daemon=True)
        th.start()
        while th.is_alive():
            samples.append(SoakSample(t=round(time.monotonic() - t0, 1),
                                      rss_kb=proc_rss_kb(a.pid),
                                      cpu_s=round((a.cpu_ns() - c0) / 1e9, 2),
                                      loadavg=loadavg()))
            th.join(5)
        a.wait_drained()
        c1, t1 = a.cpu_ns(), time.monotonic()
    res.soak = soak_figures(args, samples, box.get("g"), a.final or {},
                            round(cpu_pct(c0, c1, t0, t1), 2))


def soak_figures(args: argparse.Namespace, samples: list[SoakSample], g: dict | None,
                 h: dict, cpu: float) -> Soak:
    """RSS from 60 s on (after warm-up): where it started and ended, its spread."""
    warm = [s.rss_kb for s in samples if s.t >= 60 and s.rss_kb]
    spread = (max(warm) - min(warm)) / min(warm) if warm else None
    return Soak(
        seconds=args.soak_seconds, scale=args.soak_scale, gen=g,
        rss_at_60s_kb=warm[0] if warm else None, rss_end_kb=warm[-1] if warm else None,
        rss_min_kb=min(warm) if warm else None, rss_max_kb=max(warm) if warm else None,
        rss_spread_pct=round(100 * spread, 1) if warm else None,
        flat_within_10pct=bool(warm) and spread <= 0.10, cpu_pct=cpu,
        events_written=h.get("events_written"), loss=losses(h),
        records_read=h.get("records_read"), samples=samples,
        commit=git("rev-parse", "HEAD"), date=dt.datetime.now(dt.UTC).isoformat())
