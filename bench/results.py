"""What the bench measured, as typed structures: the sections write them, the report and the
targets read them, and docs/benchmarks.json is their JSON (typed_json), with the keys it has
always had. Raw samples stay beside the figures so that a reader can check them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from typed_json import omit, unwritten_list

T = TypeVar("T")


@dataclass(kw_only=True)
class Summary:
    """median, min, max and n of a list of runs (runs: the values, rounded)."""

    median: float | None = None
    min: float | None = None
    max: float | None = None
    n: int = 0
    runs: list[float] | None = omit()


def summary(values: list[float | None], digits: int | None = 1) -> Summary:
    vals = [v for v in values if v is not None]
    if not vals:
        return Summary()
    r = (lambda x: round(x, digits)) if digits is not None else (lambda x: x)
    return Summary(median=r(statistics.median(vals)), min=r(min(vals)), max=r(max(vals)),
                   n=len(vals), runs=[r(v) for v in vals])


def ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, digits)


@dataclass(kw_only=True)
class Loss:
    """The loss counters the brief asks to be zero, summed: kernel ring, rate limit, output
    (None: the agent wrote no final health record)."""

    kernel_ring_drops: int | None = None
    rate_limited: int | None = None
    output_dropped: int | None = None

    def counts(self) -> list[int | None]:
        return [self.kernel_ring_drops, self.rate_limited, self.output_dropped]

    def none_lost(self) -> bool:
        return all(v == 0 for v in self.counts())

    def total(self) -> int:
        return sum(v or 0 for v in self.counts())


@dataclass(kw_only=True)
class Machine:
    cpu: str
    cores: int | None
    memory_gib: float
    kernel: str
    os: str
    hostname: str
    commit: str
    commit_subject: str
    dirty_files_outside_bench: list[str]
    versions: dict[str, str]
    commit_end: str | None = omit()


# ---- 1. syscall overhead ---------------------------------------------------------------------

@dataclass(kw_only=True)
class OverheadSample:
    round: int
    tool: str
    workload: str
    rep: int
    cpu_ns_per_op: float
    wall_ns_per_op: float
    ops: int
    foreign_links: int
    loadavg: float


@dataclass(kw_only=True)
class AddedCost:
    added_cpu_ns: Summary
    added_wall_ns: Summary


@dataclass(kw_only=True)
class OverheadRow:
    """One workload: the baseline and what each tool (TRACERS) added to it."""

    baseline_ns: Summary
    minprobe: AddedCost
    randguard: AddedCost
    opensnoop: AddedCost
    auditd: AddedCost
    minbtf: AddedCost | None = omit()  # (runs before 2026-12-05 did not measure it)
    # randguard at BEFORE_REV (bench/layout.py), for the dispatcher issue's "before" figures
    # (runs before 2026-12-05 22:00 did not measure it)
    randguard_before: AddedCost | None = omit()

    def added(self, tool: str) -> Summary | None:
        cost = getattr(self, tool)
        return cost.added_cpu_ns if cost is not None else None


# OverheadRow's tools, in the order they run
TRACERS = ("minprobe", "minbtf", "randguard", "randguard_before", "opensnoop", "auditd")


@dataclass(kw_only=True)
class Overhead:
    table: dict[str, OverheadRow]
    samples: list[OverheadSample]
    workloads: dict[str, str]  # name: description
    auditd_rules: str

    def added_median(self, wl: str, tool: str) -> float | None:
        """A tool's median added CPU ns per iteration of a workload."""
        added = self.table[wl].added(tool) if wl in self.table else None
        return added.median if added else None

    def added_quiet(self, wl: str, tool: str) -> float | None:
        """A tool's added CPU ns per iteration of a workload on a quiet machine: the lower
        quartile of its samples minus the lower quartile of the baseline's. Other tenants of a
        shared VM only ever slow a sample down, so the fast samples of each side are the ones
        that measure it; the paired median (`added_median`) carries that noise twice."""
        def low(t: str) -> float | None:
            v = [s.cpu_ns_per_op for s in self.samples if s.workload == wl and s.tool == t]
            return statistics.quantiles(v, n=4)[0] if len(v) >= 2 else None
        mine, base = low(tool), low("none")
        return None if mine is None or base is None else mine - base


# ---- kernel side profile ---------------------------------------------------------------------

@dataclass(kw_only=True)
class ProgramCosts:
    desc: str
    ns_per_run: dict[str, int]
    ops: int


@dataclass(kw_only=True)
class PerfShares:
    workload: str
    shares_pct: dict[str, float]
    cpu_ns_per_op: int


@dataclass(kw_only=True)
class KProfile:
    per_program: dict[str, ProgramCosts] = field(default_factory=dict)
    perf: PerfShares | None = None
    perf_by_workload: dict[str, PerfShares] | None = omit()


# ---- 2. throughput ---------------------------------------------------------------------------

@dataclass(kw_only=True)
class AgentTrial:
    target_rate: float
    achieved_rate: int
    ops: int
    file_open_written: int
    loss: Loss
    lossless: bool
    records_read: int | None
    cpu_ns_per_event: int
    drain_rate: int | None
    rss_idle_kb: int | None
    rss_load_max_kb: int
    startup_s: float
    final_rss_kb: int | None

    def delivered_rate(self) -> float:
        return self.drain_rate or self.achieved_rate * self.file_open_written / max(self.ops, 1)


@dataclass(kw_only=True)
class OpenSnoopTrial:
    target_rate: float
    achieved_rate: int
    ops: int
    lines: int
    lost: int
    lossless: bool
    cpu_ns_per_event: int

    def delivered_rate(self) -> float:
        return self.achieved_rate * self.lines / max(self.ops, 1)


@dataclass(kw_only=True)
class Search(Generic[T]):
    """The trials of one tool's search for its highest lossless rate."""

    lossless_rate: int | None
    generator_bound: bool
    trials: list[T]

    def best(self) -> T | None:
        """The highest lossless trial (the last one run)."""
        return next((t for t in reversed(self.trials) if t.lossless), None)


@dataclass(kw_only=True)
class ThroughputRun:
    randguard: Search[AgentTrial]
    opensnoop: Search[OpenSnoopTrial]
    loadavg: float
    # the generator flat out with no tracer attached: the most any tool could be shown to keep
    # up with (None in runs from before it was measured)
    generator_alone_rate: int | None = None


@dataclass(kw_only=True)
class Throughput:
    randguard_eps: Summary
    opensnoop_eps: Summary
    ratio_per_run: list[float | None]
    ratio: Summary
    randguard_generator_bound: list[bool]
    opensnoop_generator_bound: list[bool]
    cpu_ns_per_event: Summary
    opensnoop_cpu_ns_per_event: Summary
    rss_load_kb: Summary
    rss_overload_kb: Summary
    runs: list[ThroughputRun]
    trial_seconds: float
    generator_alone_eps: Summary | None = None


# ---- 3. the agent alone: idle, mixed load, soak ----------------------------------------------

@dataclass(kw_only=True)
class IdleRun:
    cpu_pct: float
    rss_kb: int | None
    records_read: int | None
    startup_s: float


@dataclass(kw_only=True)
class Idle:
    cpu_pct: Summary
    rss_kb: Summary
    runs: list[IdleRun]
    seconds: float


@dataclass(kw_only=True)
class MixedRun:
    cpu_pct: float
    rss_kb: int | None
    events_written: int
    events_per_s: float
    loss: Loss
    gen: dict[str, int]  # the generator's own counts


@dataclass(kw_only=True)
class Mixed:
    cpu_pct: Summary
    events_per_s: Summary
    rss_kb: Summary
    lossless_runs: int
    runs: list[MixedRun]
    seconds: float


@dataclass(kw_only=True)
class SoakSample:
    t: float
    rss_kb: int | None
    cpu_s: float
    loadavg: float


@dataclass(kw_only=True)
class Soak:
    seconds: int
    scale: float
    gen: dict[str, int] | None
    rss_at_60s_kb: int | None
    rss_end_kb: int | None
    rss_min_kb: int | None
    rss_max_kb: int | None
    rss_spread_pct: float | None
    flat_within_10pct: bool
    cpu_pct: float
    events_written: dict[str, int] | None
    loss: Loss
    records_read: int | None
    samples: list[SoakSample]
    commit: str
    date: str


# ---- 4. exec load, fork storm ----------------------------------------------------------------

@dataclass(kw_only=True)
class ExecSample:
    round: int
    tool: str
    rate: int
    achieved_rate: int
    cpu_pct: float
    cpu_us_per_exec: float
    loss: Loss | None = omit()  # on the last sample of an agent's block: its final counters


@dataclass(kw_only=True)
class ExecFigures:
    cpu_pct: Summary
    cpu_us_per_exec: Summary | None = None
    achieved_rate: Summary


@dataclass(kw_only=True)
class ExecRow:
    randguard: ExecFigures
    auditd: ExecFigures
    ratio: Summary


@dataclass(kw_only=True)
class ExecLoad:
    table: dict[str, ExecRow]  # by target rate
    samples: list[ExecSample]
    seconds: float


@dataclass(kw_only=True)
class ForkRun:
    processes: int
    seconds: float
    table_before: int | None
    table_after: int | None
    table_max: int
    table_bound: int
    evictions_before: int | None
    evictions_after: int | None
    rss_before_kb: int | None
    rss_max_kb: int
    rss_after_kb: int | None
    events_written: dict[str, int] | None
    loss: Loss
    cpu_s: float


@dataclass(kw_only=True)
class ForkStorm:
    runs: list[ForkRun]
    processes: int
    rss_growth_kb: Summary
    rss_max_kb: Summary
    table_after: Summary
    table_max: Summary


# ---- userspace profile -----------------------------------------------------------------------

@dataclass(kw_only=True)
class Stages:
    """bench/stages.py's output."""

    records: int
    file_records: int
    events: int
    ns_per_record: dict[str, int]


@dataclass(kw_only=True)
class PySpyRow:
    func: str
    incl_pct: float
    own_pct: float


@dataclass(kw_only=True)
class Profile:
    stages: Stages | None = omit()
    pyspy: list[PySpyRow] | None = omit()


# ---- the journal path (docs/fleet.md) ---------------------------------------------------------

@dataclass(kw_only=True)
class JournalCpuRun:
    """One agent run under the paced workload, its stdout to the journal or to a file."""

    output: str  # "journal" or "file"
    opens: int
    rate: float
    seconds: float
    lines: int
    agent_cpu_us_per_line: float
    journald_cpu_us_per_line: float


@dataclass(kw_only=True)
class JournalWriterRun:
    """The same lines handed to journald by the stdout stream or by the native protocol."""

    mode: str  # "stream" or "native"
    entries: int
    writer_cpu_us_per_entry: float
    journald_cpu_us_per_entry: float


@dataclass(kw_only=True)
class JournalRate:
    """One paced rate through journald -> systemd-journal-upload -> systemd-journal-remote."""

    rate: float
    opens: int
    achieved_rate: float
    lines: int
    missing_at_collector: int
    loss_records: int
    arrived_s: float | None
    lossless: bool


@dataclass(kw_only=True)
class Journal:
    """bench/workloads/journal.py: measured in the .deb test's guest (systemd as PID 1)."""

    date: str
    commit: str
    where: str
    kernel: str
    vcpus: int | None
    seconds: float
    cpu: list[JournalCpuRun]
    writer: list[JournalWriterRun]
    rates: list[JournalRate]
    agent_us_per_line: dict[str, Summary]  # by output
    journald_us_per_line: dict[str, Summary]
    lossless_rate: float | None  # highest paced rate with every line at the collector
    generator_bound: bool  # the highest rate tried was lossless: the load could not go on
    notes: list[str] = field(default_factory=list)  # failed phases, journald's own messages


# ---- the whole run ---------------------------------------------------------------------------

@dataclass(kw_only=True)
class Noise:
    """The machine's load during the run, and how many overhead samples had company."""

    loadavg_min: float | None = None
    loadavg_max: float | None = None
    loadavg_median: float | None = None
    overhead_samples: int = 0
    samples_with_foreign_links: int = 0


@dataclass(kw_only=True)
class Results:
    """docs/benchmarks.json. A section is None when it was not run (and not carried over)."""

    date: str
    mode: str
    args: dict[str, Any]  # the command line (argparse's names)
    machine: Machine
    notes: list[str] = field(default_factory=list)
    overhead: Overhead | None = omit()
    kprofile: KProfile | None = omit()
    throughput: Throughput | None = omit()
    idle: Idle | None = omit()
    exec: ExecLoad | None = omit()
    mixed: Mixed | None = omit()
    fork_storm: ForkStorm | None = omit()
    profile: Profile | None = omit()
    soak: Soak | None = omit()
    journal: Journal | None = omit()
    duration_s: float | None = omit()
    startup: Summary | None = omit()
    noise: Noise | None = omit()
    # start-up times of every agent start, for `startup`; not written
    startup_samples_s: list[float] = unwritten_list()


SECTION_KEYS = ("overhead", "kprofile", "throughput", "idle", "exec", "mixed", "fork_storm",
                "profile", "soak", "journal", "startup")  # what a run that did not measure keeps
