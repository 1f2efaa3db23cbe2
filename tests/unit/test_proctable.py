"""The process table: lineage from fork and exec, removal at exit, LRU bounds."""

from __future__ import annotations

import os

from recgen import record

from randguard.core.proctable import ProcessTable, ProcInfo
from randguard.core.records import (
    KIND_PROC_EXEC,
    KIND_PROC_EXIT,
    KIND_PROC_FORK,
    ExecRecord,
    ExitRecord,
    ForkRecord,
    decode,
)
from randguard.process import procfs


def fork(parent: int, child: int, comm: bytes = b"bash") -> ForkRecord:
    return decode(record(KIND_PROC_FORK, ts_ns=1, pid=parent, parent_tgid=parent,
                         child_tgid=child, child_tid=child, comm=comm))


def exec_(pid: int, ppid: int, exe: bytes, comm: bytes) -> ExecRecord:
    return decode(record(KIND_PROC_EXEC, ts_ns=2, pid=pid, ppid=ppid, old_tid=pid, source=1,
                         comm=comm, parent_comm=b"bash", exe=exe, filename=exe))


def exit_(ts: int, pid: int, tid: int, group_dead: bool) -> ExitRecord:
    return decode(record(KIND_PROC_EXIT, ts_ns=ts, pid=pid, tid=tid, group_dead=group_dead,
                         comm=b"nginx"))


def test_fork_inherits_exe_then_exec_replaces_it() -> None:
    t = ProcessTable(16)
    t.put(100, ProcInfo(1, "bash", "/usr/bin/bash"))
    t.on_fork(fork(100, 200))
    assert t.get(200) == ProcInfo(100, "bash", "/usr/bin/bash", 1)
    t.on_exec(exec_(200, 100, b"/usr/bin/cat", b"cat"), "/usr/bin/cat")
    info = t.get(200)
    assert (info.ppid, info.comm, info.exe_path, info.start_ns) == (100, "cat", "/usr/bin/cat", 1)


def test_exit_of_the_group_frees_the_entry_and_reuse_starts_clean() -> None:
    t = ProcessTable(16)
    t.on_exec(exec_(300, 1, b"/usr/sbin/nginx", b"nginx"), "/usr/sbin/nginx")
    t.on_exit(exit_(3, 300, 301, False))  # a thread: the process lives on
    assert t.get(300) is not None
    t.on_exit(exit_(4, 300, 300, True))
    assert t.get(300) is None and len(t) == 0
    t.on_fork(fork(1, 300, b"sh"))  # PID reused by an unrelated process
    assert t.get(300).exe_path is None and t.get(300).comm == "sh"


def test_lru_eviction_is_bounded_and_counted() -> None:
    t = ProcessTable(3)
    for pid in (1, 2, 3):
        t.put(pid, ProcInfo(0, str(pid), None))
    t.get(1)  # 1 is now the most recently used
    t.put(4, ProcInfo(0, "4", None))
    assert len(t) == 3 and t.get(2) is None and t.get(1) is not None and t.evictions == 1


def test_seed_from_proc_knows_this_process() -> None:
    t = ProcessTable(100_000)
    assert procfs.seed(t) > 1
    me = t.get(os.getpid())
    assert me.ppid == os.getppid()
    assert me.exe_path == os.path.realpath(f"/proc/{os.getpid()}/exe")


def test_lineage_is_nearest_first_and_stops_at_the_unknown_a_loop_or_the_limit() -> None:
    t = ProcessTable(64)
    t.put(1, ProcInfo(0, "systemd", "/usr/lib/systemd/systemd"))
    t.put(500, ProcInfo(1, "apt-get", "/usr/bin/apt-get"))
    t.put(600, ProcInfo(500, "dpkg", "/usr/bin/dpkg"))
    t.put(700, ProcInfo(600, "sh", "/usr/bin/dash"))
    assert [(pid, i.comm) for pid, i in t.lineage(700)] == [
        (700, "sh"), (600, "dpkg"), (500, "apt-get"), (1, "systemd")]
    assert t.lineage(None) == [] and t.lineage(0) == [] and t.lineage(9999) == []
    t.put(800, ProcInfo(4242, "orphan", None))  # a parent the table never saw
    assert [pid for pid, _ in t.lineage(800)] == [800]
    t.put(901, ProcInfo(902, "a", None))  # pid reuse can make a cycle
    t.put(902, ProcInfo(901, "b", None))
    assert [pid for pid, _ in t.lineage(901)] == [901, 902]
    assert len(t.lineage(700, limit=2)) == 2
