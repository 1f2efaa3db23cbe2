"""What a file record seen before was: nearly every file event is an open or a write that a
process makes again and again, so these are remembered by the record's own bytes, at two
levels, with the judges (a reload starts afresh).

- `judged`: the same file, call and process image (the record's bytes bar the fields that vary
  from call to call, records.Varying, with the process's exe and success): the judged event,
  whose per-call fields the pipeline replaces (Pipeline._emit).
- `lines`: every byte but the timestamp the same (same thread, file, result, fd and inode):
  the line written the first time, with this record's `seq` and time (`Line`): a slice, a dict
  lookup and one %-format instead of a decode, a judgement and an encode. What such an event
  shows is in the record's bytes, bar the process's exe, which the process table gives: the
  lines are forgotten when a process they name starts another image, exits or has its pid
  reused, and when the table evicts. Events with a detection or a rule hit are never lines
  (their ancestors are read at the time), nor the ones that change what the judges know
  (/etc/passwd, whose homes `~/` paths expand to).
"""

from __future__ import annotations

import msgspec

from .events import FileEvent, encoder
from .proctable import ProcessTable
from .records import FF_INODE, FILE, KIND_FILE, OPS, expected_layout, varying

# the header's timestamp: what a line's key (the record's bytes after it) leaves out
TS_AT, _TS_SIZE = expected_layout("rg_header")[1]["ts_ns"]
KEY_AT = TS_AT + _TS_SIZE
_MAX = 4096  # entries of each memo (cleared when full)
_MEMO_OPS = frozenset(op for op, name in OPS.items() if name in ("file_open", "file_write"))
_PER_CALL = varying("rg_file_event", frozenset({
    "ts_ns", "pid", "tid", "uid", "gid", "ret", "ino", "dev", "ppid", "fd", "old"}))
_FILE_MEMBERS = expected_layout("rg_file_event")[1]
OP_AT, FFLAGS_AT = _FILE_MEMBERS["op"][0], _FILE_MEMBERS["fflags"][0]
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


class FileMemo:
    """The two memos. `lines`: record bytes after the timestamp -> (the header bytes before it,
    the process's pid if the process table holds it, event type, Line.head, Line.rest), or (the
    header bytes, the pid, None) when the filter drops the event; a hit marks the process as
    used in the table, as judging the record would have (so that the table evicts the same
    processes). `judged`: key() -> what Pipeline._judged() said."""

    def __init__(self) -> None:
        self.lines: dict[bytes, tuple] = {}
        self.judged: dict[tuple, tuple] = {}
        self._pids: set[int] = set()  # the processes whose records have lines here
        self.evictions = 0  # the process table's, when the lines were last checked against it

    @staticmethod
    def key(raw: bytes, procs: ProcessTable) -> tuple[tuple, tuple] | None:
        """(`judged` key, the varying fields) of an open's or write's record (not one passed
        by inode: what it is depends on the inventory's files); None for others."""
        if (len(raw) < FILE.size or raw[0] != KIND_FILE or raw[OP_AT] not in _MEMO_OPS
                or raw[FFLAGS_AT] & FF_INODE):
            return None
        per = _PER_CALL.unpack(raw)
        info = procs.get(per[1])
        return (_PER_CALL.rest(raw), info.exe_path if info is not None else None,
                per[5] >= 0), per

    def remember(self, key: tuple, judged: tuple) -> None:
        if len(self.judged) >= _MAX:
            self.judged.clear()
        self.judged[key] = judged

    def remember_line(self, raw: bytes, pid: int, known: bool, ev: FileEvent | None) -> None:
        """The line of `raw`, made by process `pid` (`known`: in the process table): `ev`, or
        None when the filter dropped it. (A process the table holds stays there as long as its
        lines are here: its exit, exec or eviction forgets them; one it does not hold is only
        added by a fork or an exec.)"""
        if len(self.lines) >= _MAX:
            self.forget_lines()
        hdr, used = raw[:TS_AT], pid if known else None
        self.lines[raw[KEY_AT:]] = ((hdr, used, ev.event_type, *template(ev))
                                    if ev is not None else (hdr, used, None))
        self._pids.add(pid)

    def forget_lines(self) -> None:
        self.lines.clear()
        self._pids.clear()

    def new_image(self, pid: int, evictions: int) -> None:
        """Process `pid` runs another image now (exec), is gone (exit) or is another process (a
        fork that reused the pid): its lines name the old one. `evictions`: the process table's
        count (an evicted process's lines name what the table no longer says)."""
        if pid in self._pids or evictions != self.evictions:
            self.forget_lines()
            self.evictions = evictions
