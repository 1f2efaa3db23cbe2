"""The process table: what the agent knows about each live process, for enrichment.

Keyed by TGID (so every thread of a process finds it), seeded from /proc at start (procfs.py)
and kept current from the kernel's fork, exec and exit records. Exited processes are removed,
not marked, so a reused PID never inherits stale data; the table is an LRU bounded by
`[performance] max_process_cache_entries`, with O(1) eviction.
"""

from __future__ import annotations

from collections import OrderedDict

import msgspec

from .paths import decode_path
from .records import ExecRecord, ExitRecord, ForkRecord


class ProcInfo(msgspec.Struct):
    """One process: parent TGID, name and executable (null when unknown)."""

    ppid: int | None
    comm: str
    exe_path: str | None
    start_ns: int | None = None


class ProcessTable:
    """TGID -> ProcInfo, least recently used first."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._procs: OrderedDict[int, ProcInfo] = OrderedDict()
        self.evictions = 0
        # mark a process as just used, as get() does (KeyError if the table does not hold it)
        self.touch = self._procs.move_to_end

    def __contains__(self, tgid: int) -> bool:
        return tgid in self._procs

    def __len__(self) -> int:
        return len(self._procs)

    def get(self, tgid: int) -> ProcInfo | None:
        info = self._procs.get(tgid)
        if info is not None:
            self._procs.move_to_end(tgid)
        return info

    def lineage(self, ppid: int | None, limit: int = 16) -> list[tuple[int, ProcInfo]]:
        """The known processes from `ppid` up, nearest first: up to `limit`, a process this
        table does not know, or a loop (pid reuse)."""
        out: list[tuple[int, ProcInfo]] = []
        seen: set[int] = set()
        procs = self._procs
        while ppid is not None and ppid > 0 and len(out) < limit and ppid not in seen:
            info = procs.get(ppid)
            if info is None:
                break
            seen.add(ppid)
            out.append((ppid, info))
            ppid = info.ppid
        return out

    def put(self, tgid: int, info: ProcInfo) -> None:
        procs = self._procs
        procs[tgid] = info
        procs.move_to_end(tgid)
        if len(procs) > self.max_entries:
            procs.popitem(last=False)
            self.evictions += 1

    def on_fork(self, r: ForkRecord) -> None:
        """A new process starts as a copy of its parent: same image, same name."""
        parent = self._procs.get(r.parent_tgid)
        exe = parent.exe_path if parent else None
        self.put(r.child_tgid, ProcInfo(r.parent_tgid, decode_path(r.comm), exe, r.ts_ns))

    def on_exec(self, r: ExecRecord, exe: str | None) -> None:
        """`exe`: the new image's path as the events show it."""
        old = self._procs.get(r.pid)
        start = old.start_ns if old else r.ts_ns
        self.put(r.pid, ProcInfo(r.ppid, decode_path(r.comm), exe, start))

    def on_exit(self, r: ExitRecord) -> ProcInfo | None:
        """Forget a process whose last thread ended; returns what was known of it."""
        if r.group_dead:
            return self._procs.pop(r.pid, None)
        return self._procs.get(r.pid)
