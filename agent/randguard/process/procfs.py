"""Seeding the process table from /proc, so processes that predate the agent are known too."""

from __future__ import annotations

import os

from ..core.paths import decode_path
from ..core.proctable import ProcessTable, ProcInfo


def read_proc(pid: int, root: str = "/proc") -> ProcInfo | None:
    """One process from /proc/PID, or None if it is gone (or a kernel thread's exe is absent)."""
    base = f"{root}/{pid}"
    try:
        with open(f"{base}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # comm is between the first "(" and the last ")": it may itself hold parentheses
    lpar, rpar = stat.find(b"("), stat.rfind(b")")
    if lpar < 0 or rpar < lpar:
        return None
    comm = stat[lpar + 1 : rpar]
    fields = stat[rpar + 2 :].split()
    try:
        ppid = int(fields[1])
    except (IndexError, ValueError):
        return None
    try:
        exe: str | None = decode_path(os.readlink(f"{base}/exe".encode()))
    except OSError:
        exe = None
    return ProcInfo(ppid, decode_path(comm), exe)


def seed(table: ProcessTable, root: str = "/proc") -> int:
    """Add every process in /proc to the table; returns how many were added."""
    n = 0
    for name in os.listdir(root):
        if not name.isdigit():
            continue
        info = read_proc(int(name), root)
        if info is not None:
            table.put(int(name), info)
            n += 1
    return n
