"""Lines written once: a file record whose every byte but the timestamp was seen before gives
the line of the first one, with its own `seq` and time.

That is the common case (a process opening or writing the same file again and again: same
thread, file, result, fd and inode), and it then costs a slice, a dict lookup and one
%-format instead of a decode, a judgement and an encode. What such an event shows is in the
record's bytes, bar the process's exe, which the process table gives: the memo forgets every
line when a process it holds a line of starts another image or its pid is reused, and when the
table evicts. Events with a detection or a rule hit are never kept here (their ancestors are
read at the time), nor the ones that change what the judges know (/etc/passwd).
"""

from __future__ import annotations

import msgspec

from .events import FileEvent, encoder
from .records import expected_layout

# the header's timestamp: what a line's key (the record's bytes after it) leaves out
_TS_AT, _TS_SIZE = expected_layout("rg_header")[1]["ts_ns"]
KEY_AT = _TS_AT + _TS_SIZE
_MAX = 4096
_STAMP_LEN = len("2026-12-05T17:36:12.123456789Z")


class Line(msgspec.Struct, gc=False):
    """An event ready to be written but for its number: `line(seq)` is its NDJSON line."""

    event_type: str
    head: bytes  # its first fields (seq, event_type, time), %-formatted with (seq, pre, ns, ts)
    rest: bytes  # the others, and the newline
    pre: bytes  # the date-time text of the second the event is in, up to the fraction
    ns: int  # nanoseconds into that second
    ts: int  # timestamp_ns

    def line(self, seq: int) -> bytes:
        """The NDJSON line (with its newline) of this event numbered `seq`."""
        return self.head % (seq, self.pre, self.ns, self.ts) + self.rest


def template(ev: FileEvent) -> tuple[bytes, bytes]:
    """(Line.head, Line.rest) of `ev`: its encoding cut after the fields that vary, seq,
    timestamp and timestamp_ns (the first three fields of every event: events.Record)."""
    data = encoder.encode(msgspec.structs.replace(ev, seq=0))
    head = (b'{"seq":%d,"event_type":"' + ev.event_type.encode()
            + b'","timestamp":"%b%09dZ","timestamp_ns":%d')
    known = head % (0, ev.timestamp[:-10].encode(), int(ev.timestamp[-10:-1]), ev.timestamp_ns)
    if not data.startswith(known) or len(ev.timestamp) != _STAMP_LEN:
        raise ValueError(f"{ev.event_type}: not encoded as events.Record says")
    return head, data[len(known):] + b"\n"


class LineMemo:
    """Record bytes after the timestamp -> (the header bytes before it, the process's pid if the
    process table holds it, event type, Line.head, Line.rest), or (the header bytes, the pid,
    None) when the filter drops the event. A hit marks the process as used in the table, as
    judging the record would have (so that the table evicts the same processes)."""

    def __init__(self) -> None:
        self.lines: dict[bytes, tuple] = {}
        self._pids: set[int] = set()  # the processes whose records have lines here
        self.evictions = 0  # the process table's, when the lines were last checked against it

    def remember(self, raw: bytes, pid: int, known: bool, ev: FileEvent | None) -> None:
        """The line of `raw`, made by process `pid` (`known`: in the process table): `ev`, or
        None when the filter dropped it. (A process the table holds stays there as long as its
        lines are here: its exit, exec or eviction forgets them; one it does not hold is only
        added by a fork or an exec.)"""
        if len(self.lines) >= _MAX:
            self.forget()
        hdr, used = raw[:_TS_AT], pid if known else None
        self.lines[raw[KEY_AT:]] = ((hdr, used, ev.event_type, *template(ev))
                                    if ev is not None else (hdr, used, None))
        self._pids.add(pid)

    def forget(self) -> None:
        self.lines.clear()
        self._pids.clear()

    def new_image(self, pid: int, evictions: int) -> None:
        """Process `pid` runs another image now (exec), is gone (exit) or is another process (a
        fork that reused the pid): its lines name the old one. `evictions`: the process table's
        count (an evicted process's lines name what the table no longer says)."""
        if pid in self._pids or evictions != self.evictions:
            self.forget()
            self.evictions = evictions
