"""The pure core: raw ring-buffer records in, output events out. No I/O here.

decode -> normalize (paths, process context) -> filter -> event. The shell (runtime.py) feeds
it batches from the ring buffer and writes what comes back; tests feed it recorded records.
"""

from __future__ import annotations

import errno
import struct
from collections import Counter

import msgspec

from .config import PersistenceDetection, Rule
from .engine import RuleEngine, set_back
from .events import (
    Alert,
    Ancestor,
    Event,
    FileEvent,
    PersistenceChange,
    ProcessStart,
    WallClock,
    errno_name,
)
from .file_events import explicit_mtime, fd_named, file_event, locate
from .matcher import FileFilter
from .memo import FFLAGS_AT, KEY_AT, OP_AT, TS_AT, FileMemo, Line
from .network_events import net_direction, net_result, network_event
from .paths import decode_path, walked
from .process_events import (
    ProcessOutput,
    exec_failed,
    process_exit,
    process_fork,
    process_start,
)
from .proctable import ProcessTable
from .ratelimit import RateLimiter
from .records import (
    FF_CREATED,
    FF_INODE,
    FF_WRITE,
    HF_TRUNC_S0,
    NET_OPS,
    NF_LOCAL,
    NF_REMOTE,
    OPS,
    DecodeError,
    ExecFailedRecord,
    ExecRecord,
    ExitRecord,
    FileRecord,
    ForkRecord,
    NetRecord,
    Record,
    decode,
)

_OP_ID = {name: op for op, name in OPS.items()}
_OPEN, _WRITE, _RENAME, _UNLINK, _CHMOD, _SETXATTR, _UTIMES = (
    _OP_ID[n] for n in ("file_open", "file_write", "file_rename", "file_unlink", "file_chmod",
                        "file_setxattr", "file_utimes"))
_SET_BACK_NS = 60 * 1_000_000_000  # an mtime this far before the call is a time set back
PASSWD = "/etc/passwd"  # where `~/` paths get their home directories
_TS = struct.Struct("<Q").unpack_from  # rg_header.ts_ns (of a line's record: memo.py)
_replace = msgspec.structs.replace


_PROCESS_EVENT = {ExecRecord: "process_start", ForkRecord: "process_fork",
                  ExitRecord: "process_exit", ExecFailedRecord: "process_exec_failed"}


def alert_of(rule: Rule, src: Event, **fields: object) -> Alert:
    """The alert of `rule` on the event `src`; its `seq` and `source_seq` are given when it is
    written."""
    return Alert(
        event_type="alert", timestamp=src.timestamp, timestamp_ns=src.timestamp_ns,
        host=src.host, rule_id=rule.id, rule_name=rule.name, rule_type=rule.type,
        severity=rule.severity, action=rule.action, mitre=rule.mitre,
        source_event_type=src.event_type, source_seq=0, **fields,
    )


def process_alerts(rules: RuleEngine, ev: ProcessStart) -> list[Alert]:
    """The alerts of the process rules an exec matches."""
    return [alert_of(rule, ev, pid=ev.pid, ppid=ev.ppid, comm=ev.comm, exe_path=ev.exe_path,
                     path=ev.exe_path, operation="exec", direction=None, port=None, addr=None)
            for rule in rules.process_alerts(ev.comm, ev.exe_path, ev.parent_comm,
                                             ev.parent_exe_path)]


def persistence_alerts(rules: RuleEngine | None, ev: PersistenceChange) -> list[Alert]:
    """The alerts of the file rules that match a change found at start (operation
    persistence_change; a live change already went through the rules as its event)."""
    if rules is None:
        return []
    return [alert_of(rule, ev, pid=None, ppid=None, comm=None, exe_path=None,
                     path=p, operation="persistence_change", direction=None,
                     port=None, addr=None)
            for rule, p in rules.file_alerts("persistence_change", (ev.path,), None, None)]


class PipelineState:
    """What records leave behind for the records after them, and what a reload (a new Pipeline
    for a new config, or for new homes) takes over whole: the process table, the clock, the
    loss counters, the self-test child's hidden PIDs, the events to hash again, and the
    inventory's files by inode."""

    def __init__(self, procs: ProcessTable, clock: WallClock | None = None) -> None:
        self.procs = procs
        self.clock = clock or WallClock()
        # the agent's own self-test child: its records are noted here, never turned into events
        self.hidden_pids: set[int] = set()
        self.hidden_parents: set[int] = set()  # whose new children are hidden (replay)
        self.hidden_seen: list[str] = []
        self.rate_limited: Counter[str] = Counter()
        self.decode_errors: Counter[str] = Counter()
        self.filtered = 0
        self.records = 0
        self.passwd_changed = False  # a successful call changed PASSWD: homes may have moved
        # the annotated or rule-hit events of the batch (the inventory hashes their files again)
        self.touched: list[FileEvent] = []
        # the inventory's persistence files by (kernel dev, inode): what FF_INODE events change
        # (shared with the inventory that published it: copied before a change)
        self.persist_paths: dict[tuple[int, int], str] = {}
        self._persist_keys: dict[str, tuple[int, int]] = {}  # the same, by path

    def hidden(self, rec: Record) -> bool:
        """Note and swallow a record of a hidden process (the self-test child)."""
        t = type(rec)
        pid = rec.child_tgid if t is ForkRecord else rec.pid
        if t is ForkRecord and rec.parent_tgid in self.hidden_parents:
            self.hidden_pids.add(pid)
        if pid not in self.hidden_pids:
            return False
        if t is FileRecord:
            self.hidden_seen.append(OPS.get(rec.op, "file_unknown"))
        elif t is NetRecord:
            self.hidden_seen.append(NET_OPS.get(rec.op, "network_unknown"))
        else:
            self.hidden_seen.append(_PROCESS_EVENT[t])
        if t is ExitRecord and rec.group_dead:
            self.hidden_pids.discard(pid)
            self.procs.on_exit(rec)
        return True

    def set_persist_paths(self, paths: dict[tuple[int, int], str]) -> None:
        """The inventory's listed files by (kernel dev, inode), as it last published them."""
        self.persist_paths = paths
        self._persist_keys = {p: key for key, p in paths.items()}

    def forget_inodes(self, paths: tuple[str | None, str | None]) -> None:
        """A listed file unlinked, renamed away or replaced: its inode is not it any more (and
        may be reused at once), until the inventory hashes it again and says what is there."""
        gone = [key for p in paths if p is not None
                and (key := self._persist_keys.get(p)) is not None]
        if gone:
            self.set_persist_paths({k: p for k, p in self.persist_paths.items()
                                    if k not in gone})


class Pipeline:
    """Turns records into events: the judges of a config (filter, detections and rules, rate
    limit) over a PipelineState."""

    def __init__(
        self,
        file_filter: FileFilter,
        state: PipelineState,
        host: str,
        process: ProcessOutput | None = None,
        rules: RuleEngine | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.file_filter = file_filter
        self.state = state
        self.host = host
        self.process = process or ProcessOutput()
        self.rules = rules
        self.limiter = limiter or RateLimiter(0)
        # what file records seen before were: the judges' verdicts, so it lives and dies with
        # them
        self._memo = FileMemo()

    def feed(self, raws: list[bytes]) -> list[Event | Line]:
        """Process a batch of raw records in ring order; returns the events to write."""
        out: list[Event | Line] = []
        append = out.append
        state, memo = self.state, self._memo
        procs, clock, limiter = state.procs, state.clock, self.limiter
        state.records += len(raws)
        # (while the self-test runs, every record is decoded: its process's are hidden)
        memo_on = not (state.hidden_pids or state.hidden_parents)
        lines = memo.lines if memo_on else {}
        touch = procs.touch
        pre, second = b"", -(1 << 62)  # the second a line was last stamped in, its start
        for raw in raws:
            seen = lines.get(raw[KEY_AT:])
            if seen is not None and raw.startswith(seen[0]):
                if seen[1] is not None:
                    touch(seen[1])
                if seen[2] is None:
                    state.filtered += 1
                    continue
                ts = _TS(raw, TS_AT)[0]
                if limiter.rate and not limiter.allow("file", ts):
                    state.rate_limited["file"] += 1
                    continue
                ns = ts - second
                if ns >= 1_000_000_000 or ns < 0:
                    pre, second = clock.second(ts)
                    ns = ts - second
                append(Line(seen[2], seen[3], seen[4], pre, ns, ts))
                continue
            key = memo.key(raw, procs) if memo_on else None
            if key is not None and (judged := memo.judged.get(key[0])) is not None:
                per = key[1]
                self._remember_line(raw, per[1], judged, self._emit(
                    judged, raw[OP_AT], raw[FFLAGS_AT], per, False, out))
                continue
            try:
                rec = decode(raw)
            except DecodeError as e:
                state.decode_errors[e.reason] += 1
                continue
            if (state.hidden_pids or state.hidden_parents) and state.hidden(rec):
                continue
            if type(rec) is FileRecord:
                self._file_record(rec, out, key, raw)
            elif type(rec) is NetRecord:
                self._net_record(rec, out)
            else:
                self._process_record(rec, out)
        return out

    def _process_record(self, rec: Record, out: list[Event]) -> None:
        """Keep the process table and append the event of a process record (and the alerts of
        the process rules an exec matches)."""
        procs, process = self.state.procs, self.process
        t = type(rec)
        if t is ExecRecord:
            parent = procs.get(rec.ppid)
            procs.on_exec(rec, walked(rec.exe, rec.flags & HF_TRUNC_S0))
            self._memo.new_image(rec.pid, procs.evictions)
            if process.exec:
                ev = process_start(rec, self.state.clock.format(rec.ts_ns), self.host,
                                   parent.exe_path if parent else None, process.max_args)
                out.append(ev)
                if self.rules is not None and self.rules.process_rules:
                    out += process_alerts(self.rules, ev)
        elif t is ForkRecord:
            procs.on_fork(rec)
            self._memo.new_image(rec.child_tgid, procs.evictions)
            if process.fork:
                info = procs.get(rec.child_tgid)
                out.append(process_fork(rec, self.state.clock.format(rec.ts_ns), self.host,
                                        info.exe_path if info is not None else None))
        elif t is ExitRecord:
            info = procs.on_exit(rec)
            if rec.group_dead:
                self._memo.new_image(rec.pid, procs.evictions)
            if process.exit:
                out.append(process_exit(rec, self.state.clock.format(rec.ts_ns), self.host, info))
        elif t is ExecFailedRecord:
            if rec.ret != -errno.ENOENT or process.exec_enoent:
                info = procs.get(rec.pid)
                out.append(exec_failed(rec, self.state.clock.format(rec.ts_ns), self.host,
                                       info.exe_path if info is not None else None))
            else:
                self.state.filtered += 1

    def _net_record(self, r: NetRecord, out: list[Event]) -> None:
        """Judge and rate-limit one network record into `out` (with its alerts)."""
        info = self.state.procs.get(r.pid)
        exe = info.exe_path if info is not None else None
        comm = decode_path(r.comm)
        direction, result = net_direction(r), net_result(r)
        addr, port = (r.side(NF_REMOTE, r.raddr, r.rport) if direction == "outbound"
                      else r.side(NF_LOCAL, r.laddr, r.lport))
        det = None
        hits: list[Rule] = []
        if result != "failure" and self.rules is not None:
            det, hits = self.rules.network(direction, port, addr, comm, exe)
        if det is None and not hits and not self.limiter.allow("network", r.ts_ns):
            self.state.rate_limited["network"] += 1
            return
        ev = network_event(r, self.state.clock.format(r.ts_ns), self.host, comm, exe, det)
        out.append(ev)
        for rule in hits:
            out.append(alert_of(
                rule, ev, pid=r.pid, ppid=r.ppid, comm=comm, exe_path=exe, path=ev.unix_path,
                operation=ev.event_type, direction=direction, port=port, addr=addr,
            ))

    def _set_back(self, r: FileRecord) -> bool:
        """Did a utime-family call set the file's mtime well before the call itself?"""
        mtime = explicit_mtime(r)
        return mtime is not None and mtime < r.ts_ns + self.state.clock.offset_ns - _SET_BACK_NS

    def _judge_file(self, r: FileRecord, event_type: str, path: str | None,
                    old_path: str | None, comm: str, exe: str | None,
                    ) -> tuple[PersistenceDetection | None, list[tuple[Rule, str | None]]]:
        """The built-in detection a successful file call matches, and the rules it hits (with
        the path each matched)."""
        if self.rules is None:
            return None, []
        op = r.op
        write = op != _OPEN or bool(r.fflags & (FF_WRITE | FF_CREATED))
        det = self.rules.file_detection(
            event_type, path, write, r.open_flags if op == _CHMOD else None,
            decode_path(r.name2) if op == _SETXATTR and r.name2 is not None else None)
        if det is not None and op == _UTIMES and self._set_back(r):
            det = set_back(det)
        paths = (path, old_path) if op == _RENAME else (path,)
        return det, self.rules.file_alerts(event_type, paths, comm, exe, write)

    def _ancestors(self, ppid: int) -> list[Ancestor]:
        """The process lineage an annotated event carries, parent first."""
        return [Ancestor(pid, info.comm, info.exe_path)
                for pid, info in self.state.procs.lineage(ppid or None)]

    def _file_record(self, r: FileRecord, out: list[Event], key: tuple | None,
                     raw: bytes) -> None:
        """Normalize, filter, judge and rate-limit one file record; append its event and the
        alerts of the rules it matches to `out`; with a memo `key` (FileMemo.key()), remember
        the judgement and the line."""
        judged = self._judged(r)
        emitted = self._emit(judged, r.op, r.fflags, (r.ts_ns, r.pid, r.tid, r.uid, r.gid, r.ret,
                                                      r.ino, r.dev, r.ppid, r.fd, r.old),
                             True, out)
        if key is not None:
            self._memo.remember(key[0], judged)
            self._remember_line(raw, r.pid, judged, emitted)

    def _remember_line(self, raw: bytes, pid: int, judged: tuple, ev: FileEvent | None) -> None:
        """Keep the line of a memoized record (lines.py): the filter's drop, or an event that
        neither a detection nor a rule annotated and that is not about PASSWD."""
        known = pid in self.state.procs
        if judged[0] is None:
            self._memo.remember_line(raw, pid, known, None)
        elif (ev is not None and judged[2] is None and not judged[3]
              and ev.resolved_path != PASSWD):
            self._memo.remember_line(raw, pid, known, ev)

    def _emit(self, judged: tuple, op: int, fflags: int, per: tuple, fresh: bool,
              out: list[Event]) -> FileEvent | None:
        """Append a judged file event and the alerts of the rules it matches to `out`, unless
        the filter or the rate limit drops it; the event appended. `per`: the call's varying
        fields (_PER_CALL's), which replace the judged event's unless it is `fresh` (judged from
        this very call)."""
        ev, old_path, det, hits = judged
        if ev is None:
            self.state.filtered += 1
            return None
        ts, pid, tid, uid, gid, ret, ino, _dev, ppid, fd, _old = per
        path = ev.resolved_path
        if path == PASSWD and ret >= 0 and op != _OPEN:
            self.state.passwd_changed = True
        if ret >= 0 and op in (_UNLINK, _RENAME) and self.state.persist_paths:
            self.state.forget_inodes((path, old_path))
        # the limit applies to what matched nothing: it cannot be used to hide an attack
        if det is None and not hits and not self.limiter.allow("file", ts):
            self.state.rate_limited["file"] += 1
            return None
        if not fresh:
            ev = _replace(ev, timestamp=self.state.clock.format(ts), timestamp_ns=ts, pid=pid,
                          tid=tid, ppid=ppid, uid=uid, gid=gid, ret=ret, error=errno_name(ret),
                          fd=fd_named(op, fflags, ret, fd, False), inode=ino or None,
                          ancestors=self._ancestors(ppid) if det is not None or hits else None)
        out.append(ev)
        if det is not None or hits:
            self.state.touched.append(ev)
        for rule, p in hits:
            out.append(alert_of(
                rule, ev, pid=ev.pid, ppid=ev.ppid, comm=ev.comm, exe_path=ev.exe_path, path=p,
                operation=ev.event_type, direction=None, port=None, addr=None,
            ))
        return ev

    def _judged(self, r: FileRecord) -> tuple[
            FileEvent | None, str | None, PersistenceDetection | None,
            list[tuple[Rule, str | None]]]:
        """(event, old path, detection, rule hits) of a file record; the event is None when the
        filter does not want it (the process table is not asked then)."""
        op = r.op
        path, name, old_path, old_name, wanted, truncated = locate(r, self.file_filter,
                                                                 self.state.persist_paths)
        if not wanted:
            return None, old_path, None, []
        info = self.state.procs.get(r.pid)
        exe = info.exe_path if info is not None else None
        ret = r.ret
        comm = decode_path(r.comm)
        event_type = OPS.get(op, "file_unknown")
        # another name of a persistence file (a hard link): judged as that file
        ppath = (self.state.persist_paths.get((r.dev, r.ino)) if r.fflags & FF_INODE else None)
        if ppath == path:
            ppath = None
        det, hits = (self._judge_file(r, event_type, ppath or path, old_path, comm, exe)
                     if ret >= 0 else (None, []))
        ev = file_event(r, self.state.clock.format(r.ts_ns), self.host, comm, exe,
                        (path, name, old_path, old_name, truncated), det,
                        self._ancestors(r.ppid) if det is not None or hits else None, ppath)
        return ev, old_path, det, hits
