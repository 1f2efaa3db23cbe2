"""Recordings of raw ring-buffer records, for replay through the pure pipeline.

`randguard run --record FILE` saves what the kernel sent; `randguard replay FILE` and the unit
tests feed it back through the same pipeline without a kernel. Format: the magic line, an
optional line `pid N` (the recording agent, whose children, its self-test, replay hides), then
each record as a little-endian u32 length and the record's bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

MAGIC = b"RGREC1\n"
_LEN = struct.Struct("<I")


class Writer:
    """Appends batches of records to an open binary file."""

    def __init__(self, f: BinaryIO, agent_pid: int | None = None) -> None:
        self.f = f
        f.write(MAGIC)
        if agent_pid is not None:
            f.write(b"pid %d\n" % agent_pid)

    def write(self, raws: list[bytes]) -> None:
        pack = _LEN.pack
        self.f.write(b"".join(pack(len(r)) + r for r in raws))
        self.f.flush()


class Recording:
    """An open recording: `agent_pid` (or None) and `records()`."""

    def __init__(self, f: BinaryIO) -> None:
        if f.read(len(MAGIC)) != MAGIC:
            raise ValueError("not a randguard recording (bad magic)")
        self.f = f
        self.agent_pid: int | None = None
        self._head = f.read(_LEN.size)
        # a length field never reads "pid ": that would be a record of half a gigabyte
        if self._head == b"pid ":
            self.agent_pid = int(f.readline())
            self._head = f.read(_LEN.size)

    def records(self) -> Iterator[bytes]:
        f, head = self.f, self._head
        while head:
            if len(head) != _LEN.size:
                raise ValueError("recording cut short in a length field")
            (n,) = _LEN.unpack(head)
            rec = f.read(n)
            if len(rec) != n:
                raise ValueError("recording cut short in a record")
            yield rec
            head = f.read(_LEN.size)


def read(f: BinaryIO) -> Iterator[bytes]:
    """The records of a recording, in order; ValueError if it is not one or is cut short."""
    return Recording(f).records()
