"""The pure core: raw ring-buffer records in, output events out. No I/O here.

decode -> normalize (paths, process context) -> filter -> event. The shell (runtime.py) feeds
it batches from the ring buffer and writes what comes back; tests feed it recorded records.
"""

from __future__ import annotations

import errno
from collections import Counter

from .events import Event, FileEvent, WallClock
from .matcher import FileFilter
from .paths import decode_path, join
from .proctable import ProcessTable
from .records import (
    FF_CREATED,
    FF_WRITE,
    HF_TRUNC_S0,
    HF_TRUNC_S1,
    HF_TRUNC_S2,
    HF_TRUNC_S3,
    HF_TRUNC_S4,
    OPS,
    SYSCALLS,
    DecodeError,
    ExecRecord,
    ExitRecord,
    FileRecord,
    ForkRecord,
    decode,
)

_ACCESS = ("read", "write", "read_write", None)
_ERRNO = errno.errorcode
_NEW_SIDE = HF_TRUNC_S0 | HF_TRUNC_S1 | HF_TRUNC_S2
_OLD_SIDE = HF_TRUNC_S3 | HF_TRUNC_S4
_WRITE, _RENAME, _LINK, _OPEN = 2, 3, 5, 1
_SYMLINKS = (SYSCALLS.index("symlink"), SYSCALLS.index("symlinkat"))


def _path(dir_: bytes | None, name: bytes | None) -> tuple[str | None, str | None]:
    """(resolved absolute path or None, raw name) for a name relative to a kernel-resolved dir."""
    if name is None:
        return None, None
    raw = decode_path(name)
    if raw.startswith("/"):
        return join(None, raw), raw
    if dir_ is None:
        return None, raw
    return join(decode_path(dir_), raw), raw


class Pipeline:
    """Turns records into events, keeping the process table and the loss counters."""

    def __init__(
        self,
        file_filter: FileFilter,
        procs: ProcessTable,
        host: str,
        clock: WallClock | None = None,
    ) -> None:
        self.file_filter = file_filter
        self.procs = procs
        self.host = host
        self.clock = clock or WallClock()
        self.decode_errors: Counter[str] = Counter()
        self.filtered = 0
        self.records = 0

    def feed(self, raws: list[bytes]) -> list[Event]:
        """Process a batch of raw records in ring order; returns the events to write."""
        out: list[Event] = []
        append = out.append
        procs = self.procs
        self.records += len(raws)
        for raw in raws:
            try:
                rec = decode(raw)
            except DecodeError as e:
                self.decode_errors[e.reason] += 1
                continue
            if type(rec) is FileRecord:
                ev = self.file_event(rec)
                if ev is not None:
                    append(ev)
            elif type(rec) is ExecRecord:
                procs.on_exec(rec)
            elif type(rec) is ForkRecord:
                procs.on_fork(rec)
            elif type(rec) is ExitRecord:
                procs.on_exit(rec)
        return out

    def file_event(self, r: FileRecord) -> FileEvent | None:
        """Normalize and filter one file record (None: filtered out)."""
        op = r.op
        old_path = old_name = None
        hflags = r.flags
        if op in (_RENAME, _LINK):
            path, name = _path(r.dir2, r.name2)
            if r.syscall in _SYMLINKS:
                old_name = decode_path(r.name) if r.name is not None else None
                old_path = old_name  # a symlink's target is content, kept as written
                wanted = path is not None and self.file_filter.wants(path, True)
            else:
                old_path, old_name = _path(r.dir, r.name)
                wanted = self.file_filter.wants_any(
                    [p for p in (path, old_path) if p is not None], True
                )
            truncated = bool(hflags & (_NEW_SIDE | _OLD_SIDE))
        else:
            if r.path is not None:
                path = decode_path(r.path)
                name = decode_path(r.name) if r.name is not None else None
            else:
                path, name = _path(r.dir, r.name)
            write = op != _OPEN or bool(r.fflags & FF_WRITE)
            wanted = path is not None and self.file_filter.wants(path, write)
            truncated = bool(hflags & _NEW_SIDE)
        if not wanted:
            self.filtered += 1
            return None

        ret = r.ret
        info = self.procs.get(r.pid)
        is_open = op == _OPEN
        return FileEvent(
            event_type=OPS.get(op, "file_unknown"),
            timestamp=self.clock.format(r.ts_ns),
            timestamp_ns=r.ts_ns,
            host=self.host,
            syscall=SYSCALLS[r.syscall] if 0 < r.syscall < len(SYSCALLS) else "unknown",
            pid=r.pid,
            tid=r.tid,
            ppid=r.ppid,
            uid=r.uid,
            gid=r.gid,
            comm=decode_path(r.comm),
            exe_path=info.exe_path if info is not None else None,
            resolved_path=path,
            filename=name,
            old_path=old_path,
            old_filename=old_name,
            ret=ret,
            error=_ERRNO.get(-ret, f"E{-ret}") if ret < 0 else None,
            flags=r.open_flags if op != _WRITE else None,
            access=_ACCESS[r.open_flags & 3] if is_open else None,
            created=bool(r.fflags & FF_CREATED) if is_open else None,
            fd=r.fd if op == _WRITE else (ret if is_open and ret >= 0 else None),
            inode=r.ino or None,
            path_truncated=truncated,
        )
