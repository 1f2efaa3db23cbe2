"""The pure core: raw ring-buffer records in, output events out. No I/O here.

decode -> normalize (paths, process context) -> filter -> event. The shell (runtime.py) feeds
it batches from the ring buffer and writes what comes back; tests feed it recorded records.
"""

from __future__ import annotations

import errno
import os
from collections import Counter

import msgspec

from .config import Config, PersistenceDetection, Rule
from .detections import NetworkDetections, PersistenceDetections, set_back
from .events import (
    Alert,
    Ancestor,
    Event,
    FileAttrEvent,
    FileEvent,
    NetworkEvent,
    PersistenceChange,
    ProcessExecFailed,
    ProcessExit,
    ProcessFork,
    ProcessStart,
    WallClock,
)
from .matcher import FileFilter
from .paths import decode_path, join
from .proctable import ProcessTable, ProcInfo
from .ratelimit import RateLimiter
from .records import (
    EXEC_SOURCES,
    FF_CREATED,
    FF_DIRECT,
    FF_FORCED,
    FF_INODE,
    FF_IO_URING,
    FF_NO_RESULT,
    FF_OLD,
    FF_WRITE,
    HF_TRUNC_S0,
    HF_TRUNC_S1,
    HF_TRUNC_S2,
    HF_TRUNC_S3,
    HF_TRUNC_S4,
    KERNEL_ERRNO_NAMES,
    MTIME_KEPT,
    MTIME_NOW,
    MTIME_UNKNOWN,
    NET_FAMILY_NAMES,
    NET_OPS,
    NET_PROTOCOL_NAMES,
    NET_SYSCALLS,
    OPS,
    SOCK_TYPE_NAMES,
    SYSCALLS,
    DecodeError,
    ExecFailedRecord,
    ExecRecord,
    ExitRecord,
    FileRecord,
    ForkRecord,
    NetRecord,
    Record,
    abi_name,
    decode,
    unix_path_text,
)
from .rules import RuleEngine

_ACCESS = ("read", "write", "read_write", None)
_ERRNO = errno.errorcode
_NEW_SIDE = HF_TRUNC_S0 | HF_TRUNC_S1 | HF_TRUNC_S2
_OLD_SIDE = HF_TRUNC_S3 | HF_TRUNC_S4
_OP_ID = {name: op for op, name in OPS.items()}
_OPEN, _WRITE, _RENAME, _LINK = (_OP_ID[n] for n in ("file_open", "file_write", "file_rename",
                                                     "file_link"))
_CHMOD, _CHOWN, _TRUNCATE, _MKDIR, _MKNOD, _SETXATTR, _UTIMES = (
    _OP_ID[n] for n in ("file_chmod", "file_chown", "file_truncate", "file_mkdir", "file_mknod",
                        "file_setxattr", "file_utimes"))
_NO_MTIME = (MTIME_NOW, MTIME_KEPT, MTIME_UNKNOWN)
_SET_BACK_NS = 60 * 1_000_000_000  # an mtime this far before the call is a time set back
_S_IFMT, _S_IFCHR, _S_IFBLK = 0o170000, 0o020000, 0o060000
_UNCHANGED_ID = 0xFFFFFFFF  # chown's -1
_MOUNT, _UMOUNT = _OP_ID["file_mount"], _OP_ID["file_umount"]
_IO_URING_SETUP = _OP_ID["io_uring_setup"]
_UNLINK = _OP_ID["file_unlink"]
# io_uring opens with no fd to tell: into a direct descriptor, or reported before the result
_NO_FD = FF_DIRECT | FF_NO_RESULT
PASSWD = "/etc/passwd"  # where `~/` paths get their home directories
_REMOVEXATTR = _OP_ID["file_removexattr"]
# FileAttrEvent: what the call sets
_ATTR_OPS = frozenset(range(_CHMOD, _UMOUNT + 1)) | {_REMOVEXATTR}
_TWO_NAMES = (_RENAME, _LINK, _MOUNT)  # source and target
# open, rename, unlink, link, mount and io_uring_setup flags
_FLAGS_OPS = (_OPEN, _RENAME, _OP_ID["file_unlink"], _LINK, _MOUNT, _UMOUNT, _IO_URING_SETUP)
# their source is carried as written: a symlink's content, what mount(2) mounts
_RAW_SOURCE = (SYSCALLS.index("symlink"), SYSCALLS.index("symlinkat"), SYSCALLS.index("mount"))
_NET_DIRECTIONS = {1: "outbound", 2: "local", 3: "inbound", 4: "inbound"}
_OTHER_FAMILIES = {16: "netlink", 17: "packet", 40: "vsock", 44: "xdp"}
_NET_ACCEPT = 4
# file events memoized by their record's static part (Pipeline.file_event), at most this many
_MEMO_OPS = frozenset({_OPEN, _WRITE})
_MEMO_MAX = 4096
_replace = msgspec.structs.replace


_PROCESS_EVENT = {ExecRecord: "process_start", ForkRecord: "process_fork",
                  ExitRecord: "process_exit", ExecFailedRecord: "process_exec_failed"}


def errno_name(ret: int) -> str | None:
    """"ENOENT" for -2; None for a result that is not an error."""
    if ret >= 0:
        return None
    return _ERRNO.get(-ret) or KERNEL_ERRNO_NAMES.get(-ret) or f"E{-ret}"


def family_name(family: int) -> str:
    return NET_FAMILY_NAMES.get(family) or _OTHER_FAMILIES.get(family) or f"af_{family}"


CUT = "..."  # starts a resolved path whose beginning the kernel had to cut (over 4095 bytes)


def _walked(raw: bytes | None, cut: int) -> str | None:
    """A path the kernel walked; one it had to cut starts with CUT."""
    if raw is None:
        return None
    return CUT + decode_path(raw) if cut else decode_path(raw)


def _path(dir_: bytes | None, name: bytes | None, dir_cut: bool) -> tuple[str | None, str | None]:
    """(resolved absolute path or None, raw name) for a name relative to a kernel-resolved dir."""
    if name is None:
        return None, None
    raw = decode_path(name)
    if raw.startswith("/"):
        return join(None, raw), raw
    if dir_ is None:
        return None, raw
    joined = join(decode_path(dir_), raw)
    return (CUT + joined if dir_cut else joined), raw


def attr_event(ev: FileEvent, r: FileRecord) -> FileAttrEvent:
    """What a chmod, chown, truncate, mkdir, mknod or setxattr set, from the record: its flags
    (the mode; uid << 32 | gid, each 0xffffffff when left unchanged; the length; dev << 32 |
    mode), for setxattr the attribute's name, and (FF_OLD) what a chmod, chown or truncate
    found before it, in the same encoding."""
    op, value = r.op, r.open_flags
    hi, lo = value >> 32, value & 0xFFFFFFFF
    old = r.old if r.fflags & FF_OLD else None
    device = None
    if op == _MKNOD and lo & _S_IFMT in (_S_IFCHR, _S_IFBLK):
        device = f"{os.major(hi)}:{os.minor(hi)}"
    return FileAttrEvent(
        **msgspec.structs.asdict(ev),
        mode=value if op in (_CHMOD, _MKDIR) else lo & 0o177777 if op == _MKNOD else None,
        owner_uid=hi if op == _CHOWN and hi != _UNCHANGED_ID else None,
        owner_gid=lo if op == _CHOWN and lo != _UNCHANGED_ID else None,
        length=value if op == _TRUNCATE else None,
        old_mode=old if op == _CHMOD else None,
        old_owner_uid=old >> 32 if op == _CHOWN and old is not None else None,
        old_owner_gid=old & 0xFFFFFFFF if op == _CHOWN and old is not None else None,
        old_length=old if op == _TRUNCATE else None,
        device=device,
        xattr_name=(decode_path(r.name2) if op in (_SETXATTR, _REMOVEXATTR)
                    and r.name2 is not None else None),
        mtime_ns=explicit_mtime(r) if op == _UTIMES else None,
    )


def _fd(r: FileRecord) -> int | None:
    """The fd an event names: written to, changed through, or (open, io_uring_setup) made."""
    if r.op == _WRITE or (r.op in _ATTR_OPS and r.name is None):
        return r.fd if r.fd >= 0 else None  # an io_uring write's fd is not known
    if r.op in (_OPEN, _IO_URING_SETUP) and r.ret >= 0 and not r.fflags & _NO_FD:
        return r.ret
    return None


def explicit_mtime(r: FileRecord) -> int | None:
    """The modification time a utime-family call set (signed ns since the epoch), or None
    when it set the current time, left it, or could not be read."""
    v = r.open_flags
    return None if v in _NO_MTIME else v - (1 << 64) if v >= 1 << 63 else v


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


class Pipeline:
    """Turns records into events, keeping the process table and the loss counters."""

    def __init__(
        self,
        file_filter: FileFilter,
        procs: ProcessTable,
        host: str,
        clock: WallClock | None = None,
        process: ProcessOutput | None = None,
        detections: PersistenceDetections | None = None,
        rules: RuleEngine | None = None,
        limiter: RateLimiter | None = None,
        net_detections: NetworkDetections | None = None,
    ) -> None:
        self.file_filter = file_filter
        self.procs = procs
        self.host = host
        self.clock = clock or WallClock()
        self.process = process or ProcessOutput()
        self.detections = detections
        self.rules = rules
        self.limiter = limiter or RateLimiter(0)
        self.net_detections = net_detections
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
        # file_event's memo: a record's static part (and its process's exe) -> _judged()
        self._memo: dict[tuple, tuple] = {}

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
            if (self.hidden_pids or self.hidden_parents) and self._hidden(rec):
                continue
            if type(rec) is FileRecord:
                self.file_event(rec, out)
            elif type(rec) is ExecRecord:
                parent = procs.get(rec.ppid)
                procs.on_exec(rec, _walked(rec.exe, rec.flags & HF_TRUNC_S0))
                if self.process.exec:
                    ev = self.process_start(rec, parent.exe_path if parent else None)
                    append(ev)
                    if self.rules is not None and self.rules.process_rules:
                        self._process_alerts(ev, out)
            elif type(rec) is ForkRecord:
                procs.on_fork(rec)
                if self.process.fork:
                    append(self.process_fork(rec))
            elif type(rec) is ExitRecord:
                info = procs.on_exit(rec)
                if self.process.exit:
                    append(self.process_exit(rec, info))
            elif type(rec) is ExecFailedRecord:
                if rec.ret != -errno.ENOENT or self.process.exec_enoent:
                    append(self.exec_failed(rec))
                else:
                    self.filtered += 1
            elif type(rec) is NetRecord:
                self.network_event(rec, out)
        return out

    def _hidden(self, rec: Record) -> bool:
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

    def network_event(self, r: NetRecord, out: list[Event]) -> None:
        """Normalize, judge and rate-limit one network record into `out` (with its alerts)."""
        ret = r.ret
        info = self.procs.get(r.pid)
        exe = info.exe_path if info is not None else None
        comm = decode_path(r.comm)
        event_type = NET_OPS.get(r.op, "network_unknown")
        direction = _NET_DIRECTIONS.get(r.op, "local")
        result = "success" if ret >= 0 else "in_progress" if ret == -errno.EINPROGRESS else (
            "failure")
        if direction == "outbound":
            port, addr = r.remote_port, r.remote_addr
        else:
            port, addr = r.local_port, r.local_addr
        det = None
        hits: list[Rule] = []
        if result != "failure":
            if self.net_detections is not None:
                det = self.net_detections.match(direction, port, comm, exe)
            if self.rules is not None:
                hits = [c.rule for c in self.rules.network_rules
                        if c.network(direction, port, addr, comm, exe)]
        if det is None and not hits and not self.limiter.allow("network", r.ts_ns):
            self.rate_limited["network"] += 1
            return
        inet = r.family in (2, 10)
        ev = NetworkEvent(
            event_type=event_type,
            timestamp=self.clock.format(r.ts_ns),
            timestamp_ns=r.ts_ns,
            host=self.host,
            syscall=NET_SYSCALLS[r.syscall] if 0 < r.syscall < len(NET_SYSCALLS) else None,
            abi=abi_name(r.abi),
            pid=r.pid,
            tid=r.tid,
            ppid=r.ppid,
            uid=r.uid,
            gid=r.gid,
            comm=comm,
            exe_path=exe,
            family=family_name(r.family),
            protocol=NET_PROTOCOL_NAMES.get(r.protocol, str(r.protocol)) if inet else None,
            sock_type=SOCK_TYPE_NAMES.get(r.sock_type) if r.sock_type else None,
            socket_fd=ret if r.op == _NET_ACCEPT and ret >= 0 else r.fd,
            direction=direction,
            local_addr=r.local_addr,
            local_port=r.local_port,
            remote_addr=r.remote_addr,
            remote_port=r.remote_port,
            scope_id=r.scope_id if r.family == 10 else None,
            unix_path=unix_path_text(r),
            ret=ret,
            error=errno_name(ret),
            result=result,
            alert=det is not None,
            detection_type=det.name if det is not None else None,
            mitre=det.mitre if det is not None else None,
        )
        out.append(ev)
        for rule in hits:
            out.append(self._alert(
                rule, ev, pid=r.pid, ppid=r.ppid, comm=comm, exe_path=exe, path=ev.unix_path,
                operation=event_type, direction=direction, port=port, addr=addr,
            ))

    def _alert(self, rule: Rule, src: Event, **fields: object) -> Alert:
        """An alert record; its `seq` and `source_seq` are given when it is written."""
        return Alert(
            event_type="alert", timestamp=src.timestamp, timestamp_ns=src.timestamp_ns,
            host=self.host,
            rule_id=rule.id, rule_name=rule.name, rule_type=rule.type, severity=rule.severity,
            action=rule.action, mitre=rule.mitre, source_event_type=src.event_type,
            source_seq=0, **fields,
        )

    def _process_alerts(self, ev: ProcessStart, out: list[Event]) -> None:
        for c in self.rules.process_rules:
            if c.process(ev.comm, ev.exe_path, ev.parent_comm, ev.parent_exe_path):
                out.append(self._alert(
                    c.rule, ev, pid=ev.pid, ppid=ev.ppid, comm=ev.comm, exe_path=ev.exe_path,
                    path=ev.exe_path, operation="exec", direction=None, port=None, addr=None,
                ))

    def process_start(self, r: ExecRecord, parent_exe: str | None) -> ProcessStart:
        argv, argv_cut = _argv(r.args, bool(r.flags & HF_TRUNC_S2), self.process.max_args)
        return ProcessStart(
            event_type="process_start",
            timestamp=self.clock.format(r.ts_ns),
            timestamp_ns=r.ts_ns,
            host=self.host,
            pid=r.pid,
            tid=r.tid,
            ppid=r.ppid,
            uid=r.uid,
            gid=r.gid,
            euid=r.euid,
            egid=r.egid,
            comm=decode_path(r.comm),
            exe_path=_walked(r.exe, r.flags & HF_TRUNC_S0),
            filename=decode_path(r.filename) if r.filename is not None else None,
            filename_truncated=bool(r.flags & HF_TRUNC_S1),
            source=EXEC_SOURCES[r.source] if r.source < len(EXEC_SOURCES) else None,
            abi=abi_name(r.abi) if r.source else None,
            argv=argv,
            argv_truncated=argv_cut,
            cwd=_walked(r.cwd, r.flags & HF_TRUNC_S3),
            parent_comm=decode_path(r.parent_comm),
            parent_exe_path=parent_exe,
            cgroup_id=r.cgroup_id,
        )

    def exec_failed(self, r: ExecFailedRecord) -> ProcessExecFailed:
        info = self.procs.get(r.pid)
        return ProcessExecFailed(
            event_type="process_exec_failed",
            timestamp=self.clock.format(r.ts_ns),
            timestamp_ns=r.ts_ns,
            host=self.host,
            pid=r.pid,
            tid=r.tid,
            ppid=r.ppid,
            uid=r.uid,
            gid=r.gid,
            comm=decode_path(r.comm),
            exe_path=info.exe_path if info is not None else None,
            filename=decode_path(r.filename) if r.filename is not None else None,
            source=EXEC_SOURCES[r.source] if r.source < len(EXEC_SOURCES) else None,
            abi=abi_name(r.abi),
            ret=r.ret,
            error=errno_name(r.ret) or "",
        )

    def process_fork(self, r: ForkRecord) -> ProcessFork:
        info = self.procs.get(r.child_tgid)
        return ProcessFork(
            event_type="process_fork",
            timestamp=self.clock.format(r.ts_ns),
            timestamp_ns=r.ts_ns,
            host=self.host,
            parent_pid=r.parent_tgid,
            child_pid=r.child_tgid,
            child_tid=r.child_tid,
            comm=decode_path(r.comm),
            exe_path=info.exe_path if info is not None else None,
            uid=r.uid,
            gid=r.gid,
            thread=r.child_tid != r.child_tgid,
        )

    def process_exit(self, r: ExitRecord, info: ProcInfo | None) -> ProcessExit:
        status = r.exit_code
        sig = status & 0x7F
        return ProcessExit(
            event_type="process_exit",
            timestamp=self.clock.format(r.ts_ns),
            timestamp_ns=r.ts_ns,
            host=self.host,
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

    def _locate(self, r: FileRecord) -> tuple[str | None, str | None, str | None, str | None,
                                                bool, bool]:
        """(path, name, old_path, old_name, wanted, truncated) of a file record: its paths as
        the kernel resolved them (or joined), and whether the filter wants it."""
        op = r.op
        old_path = old_name = None
        hflags = r.flags
        # a path cut in the kernel cannot be judged by its prefix: it is reported, marked
        cut = bool(hflags & (HF_TRUNC_S0 | HF_TRUNC_S1 | HF_TRUNC_S3))
        if op in _TWO_NAMES:
            if r.path is not None:  # the target as the kernel resolved it (resolve.bpf.c)
                path = _walked(r.path, hflags & HF_TRUNC_S0)
                name = decode_path(r.name2) if r.name2 is not None else None
            else:
                path, name = _path(r.dir2, r.name2, bool(hflags & HF_TRUNC_S3))
            if r.syscall in _RAW_SOURCE:
                old_name = decode_path(r.name) if r.name is not None else None
                old_path = old_name  # a symlink's target is content, kept as written
                wanted = cut or (path is not None and self.file_filter.wants(path, True))
            else:
                old_path, old_name = _path(r.dir, r.name, bool(hflags & HF_TRUNC_S1))
                wanted = cut or self.file_filter.wants_any(
                    [p for p in (path, old_path) if p is not None], True
                )
            wanted = wanted or (op == _MOUNT and path is not None
                                and self.file_filter.covers(path))
            return path, name, old_path, old_name, wanted, bool(hflags & (_NEW_SIDE | _OLD_SIDE))
        if r.path is not None:
            path = _walked(r.path, hflags & HF_TRUNC_S0)
            name = decode_path(r.name) if r.name is not None else None
        else:
            path, name = _path(r.dir, r.name, bool(hflags & HF_TRUNC_S1))
        write = op != _OPEN or bool(r.fflags & FF_WRITE)
        # what the kernel passed whatever the filter says (a setuid or setgid bit or file
        # capabilities appearing: its attr_forced()), and a process setting up an io_uring (no
        # path), are reported wherever they are
        wanted = (cut or op == _IO_URING_SETUP or bool(r.fflags & FF_FORCED)
                  # another name of a listed persistence file (while it is still that file)
                  or (r.fflags & FF_INODE and (r.dev, r.ino) in self.persist_paths)
                  or (path is not None and self.file_filter.wants(path, write))
                  # above watched paths: an umount uncovers them (a mount there hid them), a
                  # new directory (a new ~/.ssh) will hold them
                  or (op in (_UMOUNT, _MKDIR) and path is not None
                      and self.file_filter.covers(path)))
        return path, name, old_path, old_name, wanted, bool(hflags & _NEW_SIDE)

    def set_persist_paths(self, paths: dict[tuple[int, int], str]) -> None:
        """The inventory's listed files by (kernel dev, inode), as it last published them."""
        self.persist_paths = paths
        self._persist_keys = {p: key for key, p in paths.items()}

    def _forget_inodes(self, paths: tuple[str | None, str | None]) -> None:
        """A listed file unlinked, renamed away or replaced: its inode is not it any more (and
        may be reused at once), until the inventory hashes it again and says what is there."""
        gone = [key for p in paths if p is not None
                and (key := self._persist_keys.get(p)) is not None]
        if gone:
            self.set_persist_paths({k: p for k, p in self.persist_paths.items()
                                    if k not in gone})

    def _set_back(self, r: FileRecord) -> bool:
        """Did a utime-family call set the file's mtime well before the call itself?"""
        mtime = explicit_mtime(r)
        return mtime is not None and mtime < r.ts_ns + self.clock.offset_ns - _SET_BACK_NS

    def _judge_file(self, r: FileRecord, event_type: str, path: str | None,
                    old_path: str | None, comm: str, exe: str | None,
                    ) -> tuple[PersistenceDetection | None, list[tuple[Rule, str | None]]]:
        """The built-in detection a successful file call matches, and the rules it hits (with
        the path each matched)."""
        op = r.op
        write = op != _OPEN or bool(r.fflags & (FF_WRITE | FF_CREATED))
        det = None
        hits: list[tuple[Rule, str | None]] = []
        if self.detections is not None:
            det = self.detections.match(
                event_type, path, True, write, r.open_flags if op == _CHMOD else None,
                decode_path(r.name2) if op == _SETXATTR and r.name2 is not None else None)
            if det is not None and op == _UTIMES and self._set_back(r):
                det = set_back(det)
        if self.rules is not None:
            paths = (path, old_path) if op == _RENAME else (path,)
            for c in self.rules.file_rules:
                for p in paths:
                    if c.file(event_type, p, comm, exe, write):
                        hits.append((c.rule, p))
                        break
        return det, hits

    def _ancestors(self, ppid: int) -> list[Ancestor]:
        """The process lineage an annotated event carries, parent first."""
        return [Ancestor(pid, info.comm, info.exe_path)
                for pid, info in self.procs.lineage(ppid or None)]

    def file_event(self, r: FileRecord, out: list[Event]) -> None:
        """Normalize, filter, judge and rate-limit one file record; append its event and the
        alerts of the rules it matches to `out`."""
        op = r.op
        info = self.procs.get(r.pid)
        exe = info.exe_path if info is not None else None
        ret = r.ret
        # opens and writes (nearly every file event) of a record seen before: its verdicts and
        # event, bar the per-call fields, are what they were then
        memo = op in _MEMO_OPS and not r.fflags & FF_INODE
        if memo:
            key = (op, r.syscall, r.flags, r.fflags, r.open_flags, r.abi, r.path, r.dir, r.name,
                   r.comm, exe, ret >= 0)
            judged = self._memo.get(key)
            if judged is None:
                if len(self._memo) >= _MEMO_MAX:
                    self._memo.clear()
                judged = self._memo[key] = self._judged(r, exe)
        else:
            judged = self._judged(r, exe)
        ev, old_path, det, hits = judged
        if ev is None:
            self.filtered += 1
            return
        path = ev.resolved_path
        if path == PASSWD and ret >= 0 and op != _OPEN:
            self.passwd_changed = True
        if ret >= 0 and op in (_UNLINK, _RENAME) and self.persist_paths:
            self._forget_inodes((path, old_path))
        # the limit applies to what matched nothing: it cannot be used to hide an attack
        if det is None and not hits and not self.limiter.allow("file", r.ts_ns):
            self.rate_limited["file"] += 1
            return
        if memo:
            ev = _replace(ev, timestamp=self.clock.format(r.ts_ns), timestamp_ns=r.ts_ns,
                          pid=r.pid, tid=r.tid, ppid=r.ppid, uid=r.uid, gid=r.gid, ret=ret,
                          error=errno_name(ret), fd=_fd(r), inode=r.ino or None,
                          ancestors=self._ancestors(r.ppid) if det is not None or hits
                          else None)
        out.append(ev)
        if det is not None or hits:
            self.touched.append(ev)
        for rule, p in hits:
            out.append(self._alert(
                rule, ev, pid=ev.pid, ppid=ev.ppid, comm=ev.comm, exe_path=exe, path=p,
                operation=ev.event_type, direction=None, port=None, addr=None,
            ))

    def _judged(self, r: FileRecord, exe: str | None) -> tuple[
            FileEvent | None, str | None, PersistenceDetection | None,
            list[tuple[Rule, str | None]]]:
        """(event, old path, detection, rule hits) of a file record; the event is None when the
        filter does not want it."""
        op = r.op
        path, name, old_path, old_name, wanted, truncated = self._locate(r)
        if not wanted:
            return None, old_path, None, []
        ret = r.ret
        comm = decode_path(r.comm)
        is_open = op == _OPEN
        event_type = OPS.get(op, "file_unknown")
        # another name of a persistence file (a hard link): judged as that file
        ppath = (self.persist_paths.get((r.dev, r.ino)) if r.fflags & FF_INODE else None)
        if ppath == path:
            ppath = None
        det, hits = (self._judge_file(r, event_type, ppath or path, old_path, comm, exe)
                     if ret >= 0 else (None, []))
        ev = FileEvent(
            event_type=event_type,
            timestamp=self.clock.format(r.ts_ns),
            timestamp_ns=r.ts_ns,
            host=self.host,
            syscall=SYSCALLS[r.syscall] if 0 < r.syscall < len(SYSCALLS) else "unknown",
            abi=abi_name(r.abi),
            pid=r.pid,
            tid=r.tid,
            ppid=r.ppid,
            uid=r.uid,
            gid=r.gid,
            comm=comm,
            exe_path=exe,
            resolved_path=path,
            filename=name,
            old_path=old_path,
            old_filename=old_name,
            ret=ret,
            error=errno_name(ret),
            flags=r.open_flags if op in _FLAGS_OPS else None,
            access=_ACCESS[r.open_flags & 3] if is_open else None,
            created=bool(r.fflags & FF_CREATED) if is_open else None,
            fd=_fd(r),
            inode=r.ino or None,
            path_truncated=truncated,
            io_uring=bool(r.fflags & FF_IO_URING),
            alert=det is not None,
            detection_type=det.name if det is not None else None,
            mitre=det.mitre if det is not None else None,
            ancestors=self._ancestors(r.ppid) if det is not None or hits else None,
            persistence_path=ppath,
        )
        if op in _ATTR_OPS:
            ev = attr_event(ev, r)
        return ev, old_path, det, hits

    def persistence_alerts(self, ev: PersistenceChange) -> list[Alert]:
        """The alerts of the file rules that match a change found at start (operation
        persistence_change; a live change already went through the rules as its event)."""
        if self.rules is None:
            return []
        return [self._alert(c.rule, ev, pid=None, ppid=None, comm=None, exe_path=None,
                            path=ev.path, operation="persistence_change", direction=None,
                            port=None, addr=None)
                for c in self.rules.file_rules if c.file("persistence_change", ev.path, None, None)]
