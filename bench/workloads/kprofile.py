"""Where the added syscall cost goes in the kernel, with the agent on the default config:
(a) kernel.bpf_stats_enabled: ns per run of each randguard program under each syscall loop
(the stats add ~2 clock reads per run, so these are upper bounds); (b) perf record of the
generator's core during the openat loops, grouped: what share of an iteration goes where."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import threading
import time
from pathlib import Path

from host import sh, wait_quiet
from layout import LOAD_CPU, WORK
from prepare import write_config
from results import KProfile, PerfShares, ProgramCosts, Results
from tools.randguard import RandGuard

from workloads.generator import SYSCALL_LOOPS, gen, syscall_loops

BPF_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
PERF_GROUPS = (
    ("ring buffer wakeups (irq_work self-IPI: MSR write trapped by the hypervisor)",
     lambda s: s in ("native_write_msr", "irq_work_queue", "__irq_work_queue_local",
                     "x2apic_send_IPI_self", "native_x2apic_icr_write", "irq_work_raise",
                     "arch_irq_work_raise", "bpf_ringbuf_notify")),
    ("ring buffer output (reserve, copy, commit)", lambda s: "ringbuf" in s),
    ("LRU hash updates (rg_watched_files, rg_watched_procs)", lambda s: "lru" in s),
    ("randguard BPF program bodies", lambda s: s.startswith("bpf_prog_")),
    ("bpf_probe_read_* (copy_from_*_nofault)", lambda s: "nofault" in s or s.startswith(
        "bpf_probe_read") or s in ("__check_object_size", "__virt_addr_valid",
                                   "check_stack_object")),
    ("per-thread hash map (rg_inflight_map update/lookup/delete)", lambda s: s.startswith(
        ("htab_", "__htab", "free_htab", "alloc_htab", "pcpu_freelist"))),
    ("LPM trie lookup (path filter)", lambda s: s.startswith("trie_")),
    ("tracepoint dispatch (perf_syscall_*, trace_call_bpf, syscall work)", lambda s: s in (
        "trace_call_bpf", "perf_syscall_exit", "perf_syscall_enter", "perf_call_bpf_enter",
        "perf_call_bpf_exit", "perf_trace_buf_alloc", "syscall_trace_enter", "syscall_exit_work",
        "__bpf_prog_exit", "__bpf_prog_enter", "migrate_disable", "migrate_enable")),
    ("other BPF helpers (ktime, comm, pid, uid, task)", lambda s: s.startswith("bpf_get_") or s in (
        "ktime_get_mono_fast_ns", "read_tsc", "bpf_ktime_get_ns", "__get_task_comm",
        "strscpy_pad", "sized_strscpy", "bpf_get_smp_processor_id")),
    ("audit syscall hooks (set once auditd has run since boot)", lambda s: "audit" in s),
)
THE_SYSCALLS = "the syscalls themselves (open, close, path lookup, ...)"  # the rest
PERF_LOOPS = ("openat_unwatched", "openat_watched")


def kprofile(args: argparse.Namespace, res: Results) -> None:
    cfg = write_config("default")
    out = KProfile()
    wait_quiet(args.quiet_wait)
    old = BPF_STATS.read_text().strip()
    with RandGuard(cfg, WORK / "kprofile.ndjson"):
        time.sleep(0.5)
        try:
            BPF_STATS.write_text("1")
            out.per_program = {wl: program_costs(gargs, desc)
                               for wl, (gargs, desc) in syscall_loops().items()}
        finally:
            BPF_STATS.write_text(old)
        out.perf_by_workload = {}
        for wl in PERF_LOOPS if shutil.which("perf") else ():
            shares = perf_shares(wl)
            if shares:
                out.perf_by_workload[wl] = shares
        out.perf = out.perf_by_workload.get("openat_unwatched")
    res.kprofile = out


def bpf_prog_stats() -> dict[int, tuple[str, int, int]]:
    """Per loaded BPF program id: (name, run count, run time ns)."""
    out = {}
    for p in json.loads(sh("bpftool", "prog", "show", "-j").stdout or "[]"):
        out[p["id"]] = (p.get("name", "?"), p.get("run_cnt", 0), p.get("run_time_ns", 0))
    return out


def program_costs(gargs: tuple, desc: str) -> ProgramCosts:
    """ns per run of each randguard program that ran for (at least half of) 1 s of a loop."""
    s0 = bpf_prog_stats()
    r = gen(*gargs, 1.0)
    s1 = bpf_prog_stats()
    progs = {}
    for pid_, (name, cnt, ns) in s1.items():
        c0, t0 = s0.get(pid_, (name, 0, 0))[1:]
        if name.startswith("rg_") and cnt - c0 >= r["ops"] // 2:
            progs[name] = round((ns - t0) / (cnt - c0))
    return ProgramCosts(desc=desc, ns_per_run=progs, ops=r["ops"])


def perf_shares(wl: str) -> PerfShares | None:
    """perf record of the load core for 3 s of a 4 s loop: the generator's samples by group."""
    data = WORK / "perf.data"
    box: dict = {}
    th = threading.Thread(target=lambda: box.update(r=gen(*SYSCALL_LOOPS[wl][0], 4.0)))
    th.start()
    time.sleep(0.5)
    sh("perf", "record", "-q", "-C", str(LOAD_CPU), "-o", str(data), "--", "sleep", "3",
       check=False)
    th.join()
    rep = sh("perf", "report", "-i", str(data), "--no-children", "--sort", "comm,sym",
             "--stdio", "-g", "none", check=False).stdout
    shares: dict[str, float] = {g: 0.0 for g, _ in PERF_GROUPS}
    other, total = 0.0, 0.0
    for line in rep.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(\S+)", line)
        if not m or m.group(2) != "gen":
            continue
        pct, sym = float(m.group(1)), m.group(4)
        total += pct
        group = next((g for g, f in PERF_GROUPS if f(sym)), None)
        if group:
            shares[group] += pct
        else:
            other += pct
    if not total:
        return None
    shares = {g: round(100 * v / total, 1) for g, v in shares.items()}
    shares[THE_SYSCALLS] = round(100 * other / total, 1)
    return PerfShares(workload=wl, shares_pct=shares,
                      cpu_ns_per_op=round(box["r"]["cpu_ns"] / box["r"]["ops"]))
