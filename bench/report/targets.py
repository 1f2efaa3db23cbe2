"""The pass thresholds: issue 9's targets for the whole agent, and the sys_enter/sys_exit
dispatcher issue's for its syscall cost. Each is (what, measured, met); met is None when the
figure is missing."""

from __future__ import annotations

from layout import BEFORE_REV
from results import Overhead, Results, ratio

# The "before" of the dispatcher issue's targets is measured in the same run: the agent at
# BEFORE_REV (the `randguard_before` column). Runs that did not measure it fall back on
# randguard's added CPU ns per iteration with that kernel side in earlier runs, its source, and
# what it is scaled by to compare on another machine: absolute ns from other runs compare only
# on a machine as fast. The watched open's by the workload's baseline (2,749 ns/iter then);
# getppid's by the minimal pair's getppid cost (+68 ns in the note's harness, where randguard
# added +80): its target, "before + 40 ns", is 120/68 of the minimal pair of the same run.
BEFORE = {
    "openat_watched": (2695, "docs/benchmarks.md of 2026-11-28 02:41 at acfd559, baseline "
                             "2,749 ns/iter", 2749),
    # docs/benchmarks.md had no getppid row: "randguard today" of the harness in the note
    "getppid": (80, "shared/notes/kernel-hot-path.md of 2026-12-04, the minimal pair +68 ns",
                68),
}
RSS_LIMIT_KB = 60 * 1000 * 1000 / 1024  # 60 MB


def _ns(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+,.0f} ns"


def _x(r: float | None) -> str:
    return "n/a" if r is None else f"{r}x"


def dispatcher_targets(ov: Overhead, quiet: bool = False
                       ) -> list[tuple[str, str, str, bool | None]]:
    """(what, measured, target, met) for each target of the dispatcher issue, from one run's
    overhead table: unwatched openat and write against the minimal pair, getppid and the
    watched openat against their figures before the change (BEFORE). By the paired medians,
    or with `quiet` by the quiet-machine estimates (Overhead.added_quiet)."""
    med = ov.added_quiet if quiet else ov.added_median
    out = []
    for wl, what, target in (("openat_unwatched", "unwatched openat+close", "≤ 1.5x, aim 1.0x"),
                             ("write_unwatched", "unwatched write", "≤ 1.5x")):
        a, mp = med(wl, "randguard"), med(wl, "minprobe")
        out.append((f"{what} / minimal pair", f"{_x(ratio(a, mp))} ({_ns(a)} vs {_ns(mp)})",
                    target, None if a is None or mp is None else a <= 1.5 * max(mp, 1)))
    a, mp = med("getppid", "randguard"), med("getppid", "minprobe")
    floor = f"the minimal pair: {_ns(mp)}; an empty tp_btf pair: {_ns(med('getppid', 'minbtf'))}"
    was = med("getppid", "randguard_before")
    if was is not None:
        out.append(("getppid", f"{_ns(a)} (before, {BEFORE_REV}, this run: {_ns(was)}; {floor})",
                    f"≤ {_ns(was + 40)}: before + 40 ns", None if a is None else a <= was + 40))
        a, was = med("openat_watched", "randguard"), med("openat_watched", "randguard_before")
        out.append(("watched openat (produces an event) / its cost before",
                    f"{_x(ratio(a, was))} ({_ns(a)} vs {_ns(was)}: {BEFORE_REV}, this run)",
                    "≤ 0.5x", None if a is None or was is None else a <= 0.5 * was))
        return out
    ref, src, pair = BEFORE["getppid"]
    limit = None if mp is None else (ref + 40) * mp / pair
    out.append(("getppid", f"{_ns(a)} (before: {_ns(ref)}, {src}; {floor})",
                "n/a" if limit is None else f"≤ {_ns(limit)}: before + 40 ns, scaled by the "
                                            "minimal pair's cost here",
                None if a is None or limit is None else a <= limit))
    a = med("openat_watched", "randguard")
    ref, src, base = BEFORE["openat_watched"]
    now = ov.table["openat_watched"].baseline_ns.median if "openat_watched" in ov.table else None
    scaled = None if now is None else ref * now / base
    out.append(("watched openat (produces an event) / its cost before",
                f"{_x(ratio(a, scaled))} ({_ns(a)} vs {_ns(scaled)}: {_ns(ref)}, {src}, "
                f"scaled by this run's baseline, {now or 0:,.0f} ns/iter)", "≤ 0.5x",
                None if a is None or scaled is None else a <= 0.5 * scaled))
    return out


def targets(res: Results) -> list[tuple[str, str, bool | None]]:
    """Issue 9's targets, in the report's order."""
    return (syscall_targets(res.overhead) + throughput_targets(res) + cpu_targets(res)
            + rss_targets(res) + startup_and_soak_targets(res))


def syscall_targets(ov: Overhead | None) -> list[tuple[str, str, bool | None]]:
    if not ov:
        return []
    med = ov.added_median
    out = []
    for wl in ("openat_unwatched", "write_unwatched"):
        a, mp, au = med(wl, "randguard"), med(wl, "minprobe"), med(wl, "auditd")
        if a is None:
            continue
        out.append((f"{wl}: added ≤ 100 ns", f"{a:.0f} ns", a <= 100))
        out.append((f"{wl}: ≤ 1.5x minimal tracepoint pair", f"{ratio(a, mp)}x "
                    f"({a:.0f} vs {mp:.0f} ns)" if mp else "n/a",
                    None if not mp else a <= 1.5 * max(mp, 1)))
        if au is not None:
            out.append((f"{wl}: below auditd's", f"{a:.0f} vs {au:.0f} ns", a < au))
    a = med("openat_watched", "randguard")
    if a is not None:
        out.append(("syscall that produces an event: added ≤ 250 ns", f"{a:.0f} ns "
                    f"(opensnoop {med('openat_watched', 'opensnoop') or 0:.0f} ns)", a <= 250))
    return out


def throughput_targets(res: Results) -> list[tuple[str, str, bool | None]]:
    tp = res.throughput
    if not tp:
        return []
    c, e, r = tp.cpu_ns_per_event.median, tp.randguard_eps.median, tp.ratio.median
    return [("agent CPU per event ≤ 1 µs", f"{c:,.0f} ns" if c else "n/a",
             None if c is None else c <= 1000),
            ("lossless rate ≥ 500k events/s", f"{e:,.0f}/s" if e else "n/a",
             None if e is None else e >= 500_000),
            ("lossless rate ≥ 5x opensnoop's", f"{r}x" if r else "n/a",
             None if r is None else r >= 5)]


def cpu_targets(res: Results) -> list[tuple[str, str, bool | None]]:
    """The agent's CPU under the exec load (against auditd's) and idle."""
    out = []
    if res.exec:
        row = res.exec.table["1600"]
        a, b = row.randguard.cpu_pct.median, row.auditd.cpu_pct.median
        out.append(("CPU at 1,600 execs/s below auditd's", f"{a}% vs {b}%",
                    None if a is None or b is None else a < b))
    if res.idle:
        c = res.idle.cpu_pct.median
        out.append(("idle CPU < 0.5% of a core", f"{c:.3f}%", c < 0.5))
    return out


def rss_targets(res: Results) -> list[tuple[str, str, bool | None]]:
    """RSS < 60 MB in every section that measured it (the largest of the runs)."""
    rss = []
    if res.idle:
        rss.append(("idle", res.idle.rss_kb.max))
    if res.mixed:
        rss.append(("mixed load", res.mixed.rss_kb.max))
    if res.fork_storm:
        rss.append(("fork storm", res.fork_storm.rss_max_kb.max))
    if res.throughput:
        rss.append(("at the lossless rate", res.throughput.rss_load_kb.max))
        rss.append(("overloaded (flat out, output queue full)",
                     res.throughput.rss_overload_kb.max))
    return [(f"RSS < 60 MB: {what} (largest of the runs)", f"{kb / 1024:.1f} MiB",
             kb < RSS_LIMIT_KB) for what, kb in rss]


def startup_and_soak_targets(res: Results) -> list[tuple[str, str, bool | None]]:
    out = []
    if res.startup:
        s = res.startup.median
        out.append(("start-up to agent_start < 1 s", f"{s:.3f} s", s < 1))
    if res.soak:
        out.append(("soak: RSS flat within 10%", f"{res.soak.rss_spread_pct}%",
                    res.soak.flat_within_10pct))
    return out
