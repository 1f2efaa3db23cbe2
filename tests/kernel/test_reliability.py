"""Reliability on the real kernel: every loss counted, slow and vanished readers, reloads."""

from __future__ import annotations

import contextlib
import ctypes
import json
import mmap
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from agent_proc import ROOT, AgentProc, held_program_ids, write_config

from randguard.kernel import libbpf

pytestmark = pytest.mark.kernel

ENV = dict(os.environ, PYTHONPATH=str(ROOT / "agent"))


@pytest.fixture
def base() -> Path:
    d = Path(tempfile.mkdtemp(prefix="rg-rel-", dir="/var/tmp"))
    for sub in ("a", "b", "markers"):
        (d / sub).mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _hammer(path: str, n: int) -> None:
    for _ in range(n):
        os.close(os.open(path, os.O_WRONLY))


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def final_health(events: list[dict]) -> dict:
    (h,) = [e for e in events if e["event_type"] == "health" and e["final"]]
    return h


def stop_and_read(a: AgentProc, r: int, chunks: list[bytes]) -> list[dict]:
    """SIGINT the agent, read its stdout pipe to the end, and return the stream's events
    (checked gap-free by seq)."""
    a.proc.send_signal(signal.SIGINT)
    while chunk := os.read(r, 1 << 16):
        chunks.append(chunk)
    os.close(r)
    assert a.proc.wait(10) == 0
    events = [json.loads(line) for line in b"".join(chunks).splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    return events


def test_burst_every_event_is_written_or_counted(base: Path, tmp_path: Path) -> None:
    """Four processes open a watched file far faster than the agent can keep up, through a
    small ring, a rate limit and a small output queue: what was written plus what each loss
    counter says equals what the processes did, exactly."""
    target = base / "a" / "hot"
    target.write_text("")
    cfg = write_config(tmp_path / "c.toml", watch=[str(base / "a")], builtin=False, extra=(
        "[ebpf]\nbuffer_size = 64\n"
        "[performance]\nmax_events_per_second = 5000\noutput_queue_events = 1024\n"
    ))
    out = tmp_path / "out.ndjson"
    procs, per = 4, 25_000
    with open(out, "wb") as f:
        a = AgentProc(cfg, stdout=f.fileno())
        try:
            workers = [multiprocessing.Process(target=_hammer, args=(str(target), per))
                       for _ in range(procs)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            time.sleep(1)
        finally:
            assert a.stop() == 0
    events = read_lines(out)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    h = final_health(events)
    written = sum(1 for e in events if e["event_type"] == "file_open"
                  and e["resolved_path"] == str(target))
    lost = (h["kernel_ring_drops"]["file"] + h["rate_limited"].get("file", 0)
            + h["output_dropped"].get("file", 0))
    assert written + lost == procs * per, h
    assert h["kernel_ring_drops"]["file"] > 0 and h["rate_limited"]["file"] > 0
    assert h["decode_errors"] == {} and h["output_write_failures"] == 0
    # every line but the final health is counted in it
    assert sum(h["events_written"].values()) == len(events) - 1
    losses = [e for e in events if e["event_type"] == "loss" and e["family"] == "file"]
    for kind, total in (("kernel_ring_full", h["kernel_ring_drops"]["file"]),
                        ("rate_limited", h["rate_limited"]["file"])):
        mine = [e for e in losses if e["kind"] == kind]
        assert sum(e["count"] for e in mine) == total and mine[-1]["total"] == total


def _wait_blocked(tids: list[int], n: int, syscall_nr: int) -> None:
    """Until `n` of these threads are blocked inside that syscall."""
    deadline = time.monotonic() + 20
    while True:
        inside = 0
        for tid in tids:
            with contextlib.suppress(OSError, IndexError):
                inside += Path(f"/proc/self/task/{tid}/syscall").read_text().split()[0] == str(
                    syscall_nr)
        if inside >= n:
            return
        assert time.monotonic() < deadline, f"{inside} of {n} threads blocked"
        time.sleep(0.05)


def test_full_in_flight_table_is_counted(base: Path, tmp_path: Path) -> None:
    """More threads inside hooked file syscalls at once than `max_syscalls_in_flight`: the
    kernel cannot follow the rest to their exit, and says how many it could not. (Writes: the
    open family needs no table, its exit reads the arguments from the saved registers.)"""
    n, room = 100, 64
    cfg = write_config(tmp_path / "c.toml", watch=[str(base / "a")], builtin=False,
                       extra=f"[performance]\nmax_syscalls_in_flight = {room}\n"
                             "max_events_per_second = 0\n")
    fifos = [base / "a" / f"fifo{i}" for i in range(n)]
    for f in fifos:
        os.mkfifo(f)
    tids: list[int] = []

    def writer(path: Path) -> None:
        fd = os.open(path, os.O_WRONLY)  # a reader is there: a watched write-open
        tids.append(threading.get_native_id())
        with contextlib.suppress(BrokenPipeError):  # more than a pipe holds: blocks in write
            os.write(fd, b"x" * (1 << 18))
        os.close(fd)

    out = tmp_path / "out.ndjson"
    with open(out, "wb") as f:
        a = AgentProc(cfg, stdout=f.fileno())
        try:
            readers = [os.open(p, os.O_RDONLY | os.O_NONBLOCK) for p in fifos]
            threads = [threading.Thread(target=writer, args=(p,)) for p in fifos]
            for t in threads:
                t.start()
            _wait_blocked(tids, n, 1)  # write
            for fd in readers:  # releases them
                os.close(fd)
            for t in threads:  # every write returned (100 wake-ups take a while under TCG)
                t.join(120)
            assert not [t for t in threads if t.is_alive()], "writers still inside write"
            # runs of the agent's programs the kernel skipped, by the kernel's own count: where
            # syscall tracepoints run their programs preemptibly (7.2), a program preempted on
            # a CPU makes the kernel skip it for every other syscall on that CPU meanwhile
            kernel_count = sum(libbpf.prog_recursion_misses(i)
                               for i in held_program_ids(a.proc.pid))
        finally:
            assert a.stop() == 0
    events = read_lines(out)
    h = final_health(events)
    # the agent reports the kernel's count (it can only have grown since it was read here)
    skipped = sum(h["kernel_skipped_runs"].values())
    assert skipped >= kernel_count, (h, kernel_count)
    assert set(h["kernel_skipped_runs"]) >= {"sys_enter", "sys_exit"}
    if skipped:
        (last,) = [e for e in events if e["event_type"] == "loss"
                   and e["kind"] == "kernel_skipped"][-1:]
        assert last["total"] == skipped and last["family"] is None
    mine = {str(p) for p in fifos}
    opened = {e["resolved_path"] for e in events if e["event_type"] == "file_open"
              and e["resolved_path"] in mine and e["access"] == "write"}
    # each skipped run can hide one open (and then that file's write is not tracked either)
    assert len(mine - opened) <= skipped, (
        f"write-opens not reported: {sorted(mine - opened)}; skipped runs {skipped}; health {h}")
    seen = sum(1 for e in events if e["event_type"] == "file_write" and e["resolved_path"] in mine)
    # at most `room` writers held an entry; every other one is counted (with any other
    # process's file syscalls that came while the table was full), or was skipped
    assert seen <= room
    assert h["kernel_table_full"]["file"] + skipped >= n - seen > 0, (h, skipped)
    # at the latest, the stop's last round of loss records says it
    losses = [e for e in events if e["event_type"] == "loss" and e["kind"] == "kernel_table_full"
              and e["family"] == "file"]
    assert losses and losses[-1]["total"] == h["kernel_table_full"]["file"]


class _Userfault:
    """A page of this process that is not there until `fill()`: a syscall that reads it from
    the kernel (execve copying its file name) blocks on it, after its sys_enter tracepoint."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        self.libc, self.page = libc, mmap.PAGESIZE
        self.fd = libc.syscall(323, os.O_CLOEXEC)  # userfaultfd
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        api = (ctypes.c_uint64 * 3)(0xAA, 0, 0)
        assert libc.ioctl(self.fd, 0xC018AA3F, api) == 0  # UFFDIO_API
        self.addr = libc.mmap(None, self.page, mmap.PROT_READ | mmap.PROT_WRITE,
                              mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        reg = (ctypes.c_uint64 * 4)(self.addr, self.page, 1, 0)  # range, MODE_MISSING
        assert libc.ioctl(self.fd, 0xC020AA00, reg) == 0, os.strerror(ctypes.get_errno())

    def fill(self, data: bytes) -> None:
        src = ctypes.create_string_buffer(data.ljust(self.page, b"\0"), self.page)
        copy = (ctypes.c_uint64 * 5)(self.addr, ctypes.addressof(src), self.page, 0, 0)
        assert self.libc.ioctl(self.fd, 0xC028AA03, copy) == 0  # UFFDIO_COPY, wakes them

    def close(self) -> None:
        os.close(self.fd)


def test_full_exec_table_is_counted(tmp_path: Path) -> None:
    """More threads inside execve at once than `max_pending_exec_sources`: the execs past it
    cannot be joined to their syscall (no source, a failure unreported), and are counted."""
    n, room = 100, 64
    cfg = write_config(tmp_path / "c.toml", watch=[str(tmp_path)], builtin=False,
                       extra=f"[performance]\nmax_pending_exec_sources = {room}\n")
    uf = _Userfault()
    tids: list[int] = []
    results: list[int] = []

    def execer() -> None:
        tids.append(threading.get_native_id())
        # blocks copying the name (after sys_enter_execve), then fails: ENOENT
        results.append(uf.libc.execve(ctypes.c_void_p(uf.addr), None, None))

    out = tmp_path / "out.ndjson"
    with open(out, "wb") as f:
        a = AgentProc(cfg, stdout=f.fileno())
        try:
            threads = [threading.Thread(target=execer) for _ in range(n)]
            for t in threads:
                t.start()
            _wait_blocked(tids, n, 59)  # execve
            uf.fill(f"{tmp_path}/no-such-program".encode())
            for t in threads:
                t.join(10)
        finally:
            uf.close()
            assert a.stop() == 0
    assert results == [-1] * n
    events = read_lines(out)
    h = final_health(events)
    assert h["kernel_table_full"]["process"] >= n - room, h
    losses = [e for e in events if e["event_type"] == "loss" and e["kind"] == "kernel_table_full"
              and e["family"] == "process"]
    assert losses and losses[-1]["total"] == h["kernel_table_full"]["process"]


def test_head_n_5_exits_0_promptly(base: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", watch=["/"], exclude=[])
    cmd = (f"{sys.executable} -m randguard run --config {cfg} | head -n 5; "
           'echo "status=${PIPESTATUS[0]}" >&2')
    t0 = time.monotonic()
    p = subprocess.Popen(["bash", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=ENV)
    time.sleep(8)  # loading and the self-test; then make sure there are events to write
    for i in range(50):
        (base / "a" / f"f{i}").write_text("x")
    out, err = p.communicate(timeout=30)
    assert len(out.splitlines()) == 5
    assert b"status=0" in err, err
    assert time.monotonic() - t0 < 30


def test_stalled_reader_loses_nothing_uncounted(base: Path, tmp_path: Path) -> None:
    """`randguard run | (sleep; cat)`: while nobody reads, the agent keeps draining the ring
    into its queue and drops what does not fit, by policy; the stream says how many."""
    cfg = write_config(tmp_path / "c.toml", watch=[str(base / "a")], builtin=False,
                       extra="[performance]\noutput_queue_events = 1024\n")
    r, w = os.pipe()
    a = AgentProc(cfg, stdout=w)
    os.close(w)
    n = 6000
    chunks: list[bytes] = []
    try:
        for i in range(n):  # far more than the pipe (64 KiB) and the queue hold
            os.close(os.open(base / "a" / f"f{i}", os.O_WRONLY | os.O_CREAT, 0o644))
        time.sleep(1)
    finally:
        events = stop_and_read(a, r, chunks)
    h = final_health(events)
    got = sum(1 for e in events if e["event_type"] == "file_open")
    assert h["output_dropped"].get("file", 0) > 0
    assert got + h["output_dropped"]["file"] + h["kernel_ring_drops"]["file"] == n, h
    # the process events of the writer were kept: only low-value events are dropped
    assert h["output_dropped"].get("process", 0) == 0


def test_stalled_reader_without_dropping_gets_everything_once_it_reads(
    base: Path, tmp_path: Path,
) -> None:
    """`drop_when_full = false`: while the queue is full the agent leaves records in the ring
    instead of dropping them; a reader that comes back gets every event."""
    cfg = write_config(tmp_path / "c.toml", watch=[str(base / "a")], builtin=False,
                       extra="[performance]\noutput_queue_events = 1024\n"
                             "drop_when_full = false\nmax_events_per_second = 0\n")
    r, w = os.pipe()
    a = AgentProc(cfg, stdout=w)
    os.close(w)
    n = 6000  # more than the pipe (64 KiB) and the queue hold, less than the ring (8 MiB)
    chunks = []
    try:
        for i in range(n):
            os.close(os.open(base / "a" / f"f{i}", os.O_WRONLY | os.O_CREAT, 0o644))
        time.sleep(1)  # the reader stalls: the queue fills, the rest waits in the ring
        deadline = time.monotonic() + 30
        seen = 0
        while seen < n and time.monotonic() < deadline:  # the reader comes back
            chunk = os.read(r, 1 << 16)
            chunks.append(chunk)
            seen += chunk.count(b'"event_type":"file_open"')
    finally:
        events = stop_and_read(a, r, chunks)
    h = final_health(events)
    assert sum(1 for e in events if e["event_type"] == "file_open") == n, h
    assert h["output_dropped"] == {} and h["kernel_ring_drops"]["file"] == 0


def test_sighup_reload_applies_a_valid_config_and_rejects_a_bad_one(base: Path,
                                                                    tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", watch=[str(base / "a"), str(base / "markers")])
    with AgentProc(cfg, marker_dir=base / "markers") as a:
        (base / "b" / "before").write_text("x")
        write_config(cfg, watch=[str(base / "a"), str(base / "b"), str(base / "markers")])
        a.proc.send_signal(signal.SIGHUP)
        a.wait_for_log("reloaded")
        (base / "b" / "after").write_text("x")
        a.sync()
        assert not a.matching(lambda e: e.get("resolved_path") == str(base / "b" / "before"))
        assert a.matching(lambda e: e.get("resolved_path") == str(base / "b" / "after"))

        cfg.write_text("[file]\nwatch_pathz = []\n")
        a.proc.send_signal(signal.SIGHUP)
        line = a.wait_for_log("reload rejected")
        assert f"{cfg}: file.watch_pathz: unknown key" in line
        (base / "b" / "still").write_text("x")
        a.sync()
        assert a.matching(lambda e: e.get("resolved_path") == str(base / "b" / "still"))
        assert a.proc.poll() is None


def test_sigterm_leaves_no_program_and_no_link(base: Path, tmp_path: Path) -> None:
    from agent_proc import held_program_ids, rg_program_ids

    cfg = write_config(tmp_path / "c.toml", watch=[str(base / "a")])
    a = AgentProc(cfg)
    mine = held_program_ids(a.proc.pid) & rg_program_ids()
    assert mine
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(10) == 0
    deadline = time.monotonic() + 3
    while mine & rg_program_ids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not mine & rg_program_ids()
    links = json.loads(subprocess.run(["bpftool", "-j", "link", "show"], capture_output=True,
                                      check=True).stdout)
    assert not [lk for lk in links if lk.get("prog_id") in mine]
    final = [ln for ln in a.stderr_lines if "detached" in ln]
    assert final
