"""The output contract: one msgspec Struct per event type, encoded as NDJSON.

Field names, order and types here are what docs/events.md documents and tests/unit/test_events.py
pins. Every key is always present; a value the agent does not know is null.
"""

from __future__ import annotations

import time

import msgspec


class FileEvent(msgspec.Struct, kw_only=True):
    """file_open, file_write, file_rename, file_unlink, file_link."""

    event_type: str
    timestamp: str
    timestamp_ns: int
    host: str
    syscall: str
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


Event = FileEvent

_encoder = msgspec.json.Encoder()


def encode_lines(events: list[Event]) -> bytes:
    """NDJSON for a batch: one object per line, each line ending in a newline."""
    return _encoder.encode_lines(events)


class WallClock:
    """Turns the kernel's CLOCK_MONOTONIC nanoseconds into RFC 3339 UTC with nanoseconds.

    The boot-time offset is taken once; the date-time prefix is cached per second, so formatting
    costs one integer division and one f-string per event.
    """

    def __init__(self, offset_ns: int | None = None) -> None:
        if offset_ns is None:
            offset_ns = time.time_ns() - time.monotonic_ns()
        self.offset_ns = offset_ns
        self._sec = -1
        self._prefix = ""

    def format(self, mono_ns: int) -> str:
        sec, ns = divmod(mono_ns + self.offset_ns, 1_000_000_000)
        if sec != self._sec:
            self._sec = sec
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self._prefix}.{ns:09d}Z"
