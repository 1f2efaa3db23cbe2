"""The process family's records as events: pure builders, no state (the process table and the
judges are the pipeline's)."""

from __future__ import annotations

import msgspec

from .config import Config
from .events import (
    ProcessExecFailed,
    ProcessExit,
    ProcessFork,
    ProcessStart,
    errno_name,
    stamped,
    subject,
)
from .paths import decode_path, walked
from .proctable import ProcInfo
from .records import (
    EXEC_SOURCES,
    HF_TRUNC_S0,
    HF_TRUNC_S1,
    HF_TRUNC_S2,
    HF_TRUNC_S3,
    ExecFailedRecord,
    ExecRecord,
    ExitRecord,
    ForkRecord,
    abi_name,
)


class ProcessOutput(msgspec.Struct, frozen=True):
    """Which process events to emit (the table is kept current either way)."""

    exec: bool = True
    fork: bool = True
    exit: bool = True
    max_args: int = 64
    exec_enoent: bool = True

    @classmethod
    def from_config(cls, cfg: Config) -> ProcessOutput:
        on = cfg.events.process and cfg.process.enabled
        hooks = cfg.process.hooks
        return cls(
            exec=on and ("execve" in hooks or "execveat" in hooks),
            fork=on and "fork" in hooks,
            exit=on and "exit" in hooks,
            max_args=cfg.process.max_args,
            exec_enoent=cfg.process.report_exec_enoent,
        )


def _argv(raw: bytes | None, cut: bool, max_args: int) -> tuple[list[str] | None, bool | None]:
    if raw is None:
        return None, None
    args = raw.split(b"\0")
    if args and args[-1] == b"":
        args.pop()
    if len(args) > max_args:
        args, cut = args[:max_args], True
    return [decode_path(a) for a in args], cut


def process_start(r: ExecRecord, stamp: str, host: str, parent_exe: str | None,
                  max_args: int) -> ProcessStart:
    """process_start: an exec that succeeded (`parent_exe`: the parent's, from the table)."""
    argv, argv_cut = _argv(r.args, bool(r.flags & HF_TRUNC_S2), max_args)
    return ProcessStart(
        event_type="process_start",
        **subject(r, stamp, host),
        euid=r.euid,
        egid=r.egid,
        comm=decode_path(r.comm),
        exe_path=walked(r.exe, r.flags & HF_TRUNC_S0),
        filename=decode_path(r.filename) if r.filename is not None else None,
        filename_truncated=bool(r.flags & HF_TRUNC_S1),
        source=EXEC_SOURCES[r.source] if r.source < len(EXEC_SOURCES) else None,
        abi=abi_name(r.abi) if r.source else None,
        argv=argv,
        argv_truncated=argv_cut,
        cwd=walked(r.cwd, r.flags & HF_TRUNC_S3),
        parent_comm=decode_path(r.parent_comm),
        parent_exe_path=parent_exe,
        cgroup_id=r.cgroup_id,
    )


def exec_failed(r: ExecFailedRecord, stamp: str, host: str, exe: str | None) -> ProcessExecFailed:
    """process_exec_failed (`exe`: what the process still runs)."""
    return ProcessExecFailed(
        event_type="process_exec_failed",
        **subject(r, stamp, host),
        comm=decode_path(r.comm),
        exe_path=exe,
        filename=decode_path(r.filename) if r.filename is not None else None,
        source=EXEC_SOURCES[r.source] if r.source < len(EXEC_SOURCES) else None,
        abi=abi_name(r.abi),
        ret=r.ret,
        error=errno_name(r.ret) or "",
    )


def process_fork(r: ForkRecord, stamp: str, host: str, exe: str | None) -> ProcessFork:
    """process_fork (`exe`: the child's, which is the parent's)."""
    return ProcessFork(
        event_type="process_fork",
        **stamped(r, stamp, host),
        parent_pid=r.parent_tgid,
        child_pid=r.child_tgid,
        child_tid=r.child_tid,
        comm=decode_path(r.comm),
        exe_path=exe,
        uid=r.uid,
        gid=r.gid,
        thread=r.child_tid != r.child_tgid,
    )


def process_exit(r: ExitRecord, stamp: str, host: str, info: ProcInfo | None) -> ProcessExit:
    """process_exit (`info`: the table's entry, as it was before the exit)."""
    status = r.exit_code
    sig = status & 0x7F
    return ProcessExit(
        event_type="process_exit",
        **stamped(r, stamp, host),
        pid=r.pid,
        tid=r.tid,
        ppid=info.ppid if info is not None else None,
        comm=decode_path(r.comm),
        exe_path=info.exe_path if info is not None else None,
        exit_code=None if sig else (status >> 8) & 0xFF,
        signal=sig or None,
        core_dumped=bool(status & 0x80),
        lifetime_ns=r.lifetime_ns,
        thread=not r.group_dead,
    )
