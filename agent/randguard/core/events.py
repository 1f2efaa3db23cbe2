"""The output contract: one msgspec Struct per event type, encoded as NDJSON.

Field names, order and types here are what docs/events.md documents and
tests/unit/test_events_doc.py pins. Every key is always present; a value the agent does not know
is null.
"""

from __future__ import annotations

import errno
import time

import msgspec

from .records import (
    KERNEL_ERRNO_NAMES,
    ExecFailedRecord,
    ExecRecord,
    FileRecord,
    NetRecord,
)
from .records import Record as KernelRecord

_Subject = ExecRecord | ExecFailedRecord | FileRecord | NetRecord


class Record(msgspec.Struct, kw_only=True, gc=False):
    """What every output line starts with: its number in the stream, its type, when, where.
    (No cycle can go through an event: the garbage collector need not track them.)"""

    seq: int = 0
    event_type: str
    timestamp: str
    timestamp_ns: int
    host: str


class Ancestor(msgspec.Struct, gc=False):
    """A process above the one that made an annotated event, as the process table knows it."""

    pid: int
    comm: str
    exe_path: str | None


class FileEvent(Record, kw_only=True):
    """file_open, file_write, file_rename, file_unlink, file_link, io_uring_setup."""

    syscall: str
    abi: str
    pid: int
    tid: int
    ppid: int | None
    uid: int
    gid: int
    comm: str
    exe_path: str | None
    resolved_path: str | None
    filename: str | None
    old_path: str | None
    old_filename: str | None
    ret: int
    error: str | None
    flags: int | None
    access: str | None
    created: bool | None
    fd: int | None
    inode: int | None
    path_truncated: bool
    io_uring: bool = False
    alert: bool = False
    detection_type: str | None = None
    mitre: list[str] | None = None
    # with a detection or a rule: the parent, its parent, ... (what made the change: dpkg?)
    ancestors: list[Ancestor] | None = None
    # a change through another name of a persistence file the inventory listed: that file
    persistence_path: str | None = None


class FileAttrEvent(FileEvent, kw_only=True):
    """file_chmod, file_chown, file_truncate, file_mkdir, file_mknod, file_setxattr,
    file_removexattr, file_utimes: a file event, what the call sets and, where the kernel had
    it at hand, what it found."""

    mode: int | None
    owner_uid: int | None
    owner_gid: int | None
    length: int | None
    old_mode: int | None
    old_owner_uid: int | None
    old_owner_gid: int | None
    old_length: int | None
    device: str | None
    xattr_name: str | None
    mtime_ns: int | None


class NetworkEvent(Record, kw_only=True):
    """network_connect, network_bind, network_listen, network_accept."""

    syscall: str | None
    abi: str | None
    pid: int | None
    tid: int | None
    ppid: int | None
    uid: int | None
    gid: int | None
    comm: str | None
    exe_path: str | None
    family: str
    protocol: str | None
    sock_type: str | None
    socket_fd: int | None
    direction: str
    local_addr: str | None
    local_port: int | None
    remote_addr: str | None
    remote_port: int | None
    scope_id: int | None
    unix_path: str | None
    ret: int | None
    error: str | None
    result: str  # success | in_progress | failure
    inventory: bool = False
    alert: bool = False
    detection_type: str | None = None
    mitre: list[str] | None = None


class ProcessStart(Record, kw_only=True):
    """process_start: an exec completed; the process now runs a new image."""

    pid: int
    tid: int
    ppid: int
    uid: int
    gid: int
    euid: int
    egid: int
    comm: str
    exe_path: str | None
    filename: str | None
    filename_truncated: bool
    source: str | None
    abi: str | None
    argv: list[str] | None
    argv_truncated: bool | None
    cwd: str | None
    parent_comm: str
    parent_exe_path: str | None
    cgroup_id: int


class ProcessExecFailed(Record, kw_only=True):
    """process_exec_failed: execve/execveat returned an error; the caller runs on."""

    pid: int
    tid: int
    ppid: int
    uid: int
    gid: int
    comm: str
    exe_path: str | None
    filename: str | None
    source: str | None
    abi: str
    ret: int
    error: str


class ProcessFork(Record, kw_only=True):
    """process_fork: a new process (or, with report_threads, a thread)."""

    parent_pid: int
    child_pid: int
    child_tid: int
    comm: str
    exe_path: str | None
    uid: int
    gid: int
    thread: bool


class ProcessExit(Record, kw_only=True):
    """process_exit: the last thread of a process ended (with report_threads: any thread)."""

    pid: int
    tid: int
    ppid: int | None
    comm: str
    exe_path: str | None
    exit_code: int | None
    signal: int | None
    core_dumped: bool
    lifetime_ns: int
    thread: bool


class Alert(Record, kw_only=True):
    """alert: a `[[rules]]` match, written right after its source event (`source_seq`)."""

    rule_id: str
    rule_name: str
    rule_type: str
    severity: str
    action: str
    mitre: list[str]
    source_event_type: str
    source_seq: int
    pid: int | None
    ppid: int | None
    comm: str | None
    exe_path: str | None
    path: str | None
    operation: str | None
    direction: str | None
    port: int | None
    addr: str | None


class Loss(Record, kw_only=True):
    """loss: events lost on some path, written as soon as noticed (at most once a second per
    kind and family). `count` is since the previous loss record of the same kind and family."""

    kind: str
    family: str | None
    count: int
    total: int


class Health(Record, kw_only=True):
    """health: every `[agent] health_interval` seconds and once more (final) when stopping."""

    final: bool
    uptime_s: float
    records_read: int
    events_written: dict[str, int]
    kernel_ring_drops: dict[str, int]
    kernel_filtered: dict[str, int]
    kernel_table_full: dict[str, int]
    kernel_skipped_runs: dict[str, int]
    decode_errors: dict[str, int]
    userspace_filtered: int
    rate_limited: dict[str, int]
    output_dropped: dict[str, int]
    output_write_failures: int
    output_queued: int
    ring_pending_bytes: int
    ring_size_bytes: int
    process_table_size: int
    process_table_evictions: int
    rss_kb: int | None
    cpu_user_s: float
    cpu_system_s: float


class AgentStart(Record, kw_only=True):
    """agent_start: the first line; what is attached and what the self-test proved."""

    version: str
    libbpf: str
    kernel: str
    config: str
    hooks_attached: list[str]
    hooks_missing: list[str]
    self_test: dict[str, bool]
    self_test_events: list[str]


class FileFacts(msgspec.Struct, frozen=True, kw_only=True):
    """A persistence file as the inventory saw it: its content (`sha256`, null with `skipped`
    saying why), its inode and metadata. A symlink is listed as itself, with its target. Also
    what the inventory's state file keeps per file."""

    sha256: str | None
    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    inode: int
    device: int
    generation: int  # the inode's generation (FS_IOC_GETVERSION), 0 where unknown
    link_target: str | None = None
    skipped: str | None = None  # why sha256 is null


class PersistenceChange(Record, kw_only=True):
    """persistence_change: a persistence file differs from what the inventory had: found at
    start against the previous run's state (`while_stopped`), or hashed again after a live
    change settled (`source_seq`: the last event on it)."""

    path: str
    change: str  # added | modified | metadata | removed
    while_stopped: bool
    previous: FileFacts | None
    current: FileFacts | None
    detection_type: str | None
    mitre: list[str]
    source_seq: int | None
    alert: bool = True


class PersistenceInventory(Record, kw_only=True):
    """persistence_inventory: the start-up inventory is done (after agent_start, off the event
    path); the changes since the previous run come right before it."""

    files: int
    hashed_bytes: int
    skipped: int
    not_listed: int
    changes: int
    duration_ms: float
    state_file: str
    previous_state: str  # loaded | missing | unreadable | corrupt | tampered


class PersistenceState(Record, kw_only=True):
    """persistence_state: the previous run's state file could not be used (it is replaced by a
    fresh baseline, and no change since then can be told), or the new one could not be
    written."""

    state_file: str
    status: str  # missing | unreadable | corrupt | tampered | write_failed
    reason: str


Event = (
    FileEvent | FileAttrEvent | NetworkEvent | ProcessStart | ProcessExecFailed | ProcessFork
    | ProcessExit | Alert | Loss | Health | AgentStart | PersistenceChange
    | PersistenceInventory | PersistenceState
)

encoder = msgspec.json.Encoder()  # the one NDJSON encoder (lines.py encodes with it too)


def stamped(r: KernelRecord, stamp: str, host: str) -> dict[str, object]:
    """The fields every event of a record starts with: when (`stamp`: r.ts_ns as text) and
    where."""
    return {"timestamp": stamp, "timestamp_ns": r.ts_ns, "host": host}


def subject(r: _Subject, stamp: str, host: str) -> dict[str, object]:
    """stamped(), then which thread of which process (and its parent) made the call, as whom."""
    return {**stamped(r, stamp, host), "pid": r.pid, "tid": r.tid, "ppid": r.ppid,
            "uid": r.uid, "gid": r.gid}


def encode_lines(events: list[Event]) -> bytes:
    """NDJSON for a batch: one object per line, each line ending in a newline."""
    return encoder.encode_lines(events)


class WallClock:
    """Turns the kernel's CLOCK_MONOTONIC nanoseconds into RFC 3339 UTC with nanoseconds.

    The boot-time offset is taken once; the date-time prefix is cached per second, so an event
    in the current second costs one subtraction, one compare and one %-format (the hot path:
    every event is stamped).
    """

    def __init__(self, offset_ns: int | None = None) -> None:
        if offset_ns is None:
            offset_ns = time.time_ns() - time.monotonic_ns()
        self.offset_ns = offset_ns
        self._start = -(1 << 62)  # where the cached second starts (none yet: far in the past)
        self._prefix = ""
        self._prefix_b = b""

    def _second(self, mono_ns: int) -> int:
        """Cache the second `mono_ns` is in; the nanoseconds into it."""
        sec, ns = divmod(mono_ns + self.offset_ns, 1_000_000_000)
        self._start = mono_ns - ns
        self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
        self._prefix_b = self._prefix.encode()
        return ns

    def format(self, mono_ns: int) -> str:
        ns = mono_ns - self._start
        if ns >= 1_000_000_000 or ns < 0:
            ns = self._second(mono_ns)
        return self._prefix + str(ns).zfill(9) + "Z"  # (faster than % or an f-string here)

    def second(self, mono_ns: int) -> tuple[bytes, int]:
        """The second `mono_ns` is in: format()'s text up to the fraction (as bytes), and the
        monotonic ns it starts at (for a caller that stamps many events of one second)."""
        ns = mono_ns - self._start
        if ns >= 1_000_000_000 or ns < 0:
            self._second(mono_ns)
        return self._prefix_b, self._start


def errno_name(ret: int) -> str | None:
    """The `error` field: "ENOENT" for -2; None for a result that is not an error."""
    if ret >= 0:
        return None
    return errno.errorcode.get(-ret) or KERNEL_ERRNO_NAMES.get(-ret) or f"E{-ret}"
