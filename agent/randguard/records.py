"""Decoding of the kernel's ring-buffer records: the Python mirror of bpf_src/randguard.h.

Every layout here is written once as a field list; the struct formats are derived from it, and
tests/unit/test_contract.py checks each field's offset and size against the BTF of the
compiled objects, so the two sides cannot drift apart silently.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterable
from typing import Final

import msgspec

from .paths import decode_path

SCHEMA_VERSION: Final = 1

KIND_FILE: Final = 1
KIND_PROC_FORK: Final = 2
KIND_PROC_EXEC: Final = 3
KIND_PROC_EXIT: Final = 4
KIND_PROC_EXEC_FAILED: Final = 5
KIND_NET: Final = 6

EXEC_SOURCES: Final = (None, "execve", "execveat")
ABIS: Final = ("x86_64", "i386")  # enum rg_abi

# rg_header.flags: string slot n was cut
HF_TRUNC_S0: Final = 1 << 0
HF_TRUNC_S1: Final = 1 << 1
HF_TRUNC_S2: Final = 1 << 2
HF_TRUNC_S3: Final = 1 << 3
HF_TRUNC_S4: Final = 1 << 4

# rg_file_event.fflags
FF_CREATED: Final = 1 << 0
FF_WRITE: Final = 1 << 1
FF_IO_URING: Final = 1 << 2
FF_DIRECT: Final = 1 << 3
FF_NO_RESULT: Final = 1 << 4
FF_FORCED: Final = 1 << 5
FF_OLD: Final = 1 << 6
FF_INODE: Final = 1 << 7

FAMILIES: Final = ("file", "process", "network")

# enum rg_verdict: the kernel filter's verdict bits (matcher.py builds the tables)
VERDICT_WATCH: Final = 1  # write-like operations pass
VERDICT_READ: Final = 2  # read-only opens pass
VERDICT_EXCLUDE: Final = 4  # nothing passes
VERDICT_FORCE: Final = 8  # with WATCH/READ on a suffix or pass_all: passes even excluded paths

# rg_net_event.op, .syscall, .nflags; address families and protocols (randguard.h)
NET_OPS: Final = {1: "network_connect", 2: "network_bind", 3: "network_listen",
                  4: "network_accept"}
NET_SYSCALLS: Final = (None, "connect", "bind", "listen", "accept", "accept4", "socketcall")
NF_LOCAL: Final = 1 << 0
NF_REMOTE: Final = 1 << 1
NF_SOCK: Final = 1 << 2
NF_UNIX_ABSTRACT: Final = 1 << 3
NF_LOCAL_SOCK: Final = 1 << 4
AF_UNSPEC: Final = 0
AF_UNIX: Final = 1
AF_INET: Final = 2
AF_INET6: Final = 10
NET_FAMILY_NAMES: Final = {AF_UNIX: "unix", AF_INET: "ipv4", AF_INET6: "ipv6"}
NET_PROTOCOL_NAMES: Final = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 132: "sctp",
                             136: "udplite", 255: "raw", 262: "mptcp"}
SOCK_TYPE_NAMES: Final = {1: "stream", 2: "dgram", 3: "raw", 4: "rdm", 5: "seqpacket"}
# -ret values that sys_exit can see but the errno module does not name (the kernel's restart
# codes: an interrupted call that is restarted, or that userspace sees as EINTR)
KERNEL_ERRNO_NAMES: Final = {512: "ERESTARTSYS", 513: "ERESTARTNOINTR", 514: "ERESTARTNOHAND",
                             516: "ERESTART_RESTARTBLOCK"}

OPS: Final = {1: "file_open", 2: "file_write", 3: "file_rename", 4: "file_unlink", 5: "file_link",
               6: "file_chmod", 7: "file_chown", 8: "file_truncate", 9: "file_mkdir",
               10: "file_mknod", 11: "file_setxattr", 12: "file_utimes", 13: "file_mount",
               14: "file_umount", 15: "io_uring_setup",
               16: "file_removexattr"}
# rg_file_event.flags of a file_utimes that sets no explicit time (randguard.h RG_MTIME_*)
MTIME_NOW: Final = 0x8000000000000000
MTIME_KEPT: Final = 0x8000000000000001
MTIME_UNKNOWN: Final = 0x8000000000000002

SYSCALLS: Final = (
    None, "open", "creat", "openat", "openat2", "write", "writev", "pwrite64", "pwritev",
    "pwritev2", "rename", "renameat", "renameat2", "unlink", "unlinkat", "rmdir", "link",
    "linkat", "symlink", "symlinkat", "copy_file_range", "sendfile", "splice",
    # hooked for the kernel's directory cache only, never in an event
    "mount", "umount", "umount2", "move_mount", "pivot_root", "io_uring_setup",
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
    "truncate", "ftruncate",
    # i386 only: the 16-bit id chowns, and the truncates with a 64-bit length
    "chown16", "fchown16", "lchown16", "truncate64", "ftruncate64",
    "mkdir", "mkdirat", "mknod", "mknodat", "setxattr", "lsetxattr", "fsetxattr", "setxattrat",
    "fallocate", "open_by_handle_at", "utime", "utimes", "futimesat", "utimensat",
    "utimensat_time64", "removexattr", "lremovexattr", "fremovexattr", "removexattrat",
)

# (C field name, struct format char(s)) in declaration order; "x" entries are padding.
HEADER_FIELDS: Final = (
    ("kind", "H"), ("version", "H"), ("size", "H"), ("flags", "H"), ("ts_ns", "Q"),
    ("pid", "I"), ("tid", "I"), ("uid", "I"), ("gid", "I"),
)
STR_FIELD: Final = "HH"  # struct rg_str {u16 off; u16 len;}

FILE_FIELDS: Final = (
    ("ret", "q"), ("flags", "Q"), ("ino", "Q"), ("dev", "I"), ("ppid", "I"), ("syscall", "H"),
    ("op", "B"), ("fflags", "B"), ("fd", "i"), ("comm", "16s"), ("path", STR_FIELD),
    ("dir", STR_FIELD), ("name", STR_FIELD), ("dir2", STR_FIELD), ("name2", STR_FIELD),
    ("abi", "B"), ("_pad", "3x"), ("old", "Q"),
)
FORK_FIELDS: Final = (
    ("parent_tgid", "I"), ("child_tgid", "I"), ("child_tid", "I"), ("_pad", "4x"),
    ("comm", "16s"),
)
EXEC_FIELDS: Final = (
    ("ppid", "I"), ("old_tid", "I"), ("euid", "I"), ("egid", "I"), ("cgroup_id", "Q"),
    ("source", "I"), ("abi", "B"), ("_pad", "3x"), ("comm", "16s"), ("parent_comm", "16s"),
    ("exe", STR_FIELD), ("filename", STR_FIELD), ("args", STR_FIELD), ("cwd", STR_FIELD),
)
EXEC_FAILED_FIELDS: Final = (
    ("ret", "q"), ("ppid", "I"), ("source", "I"), ("comm", "16s"), ("filename", STR_FIELD),
    ("abi", "B"), ("_pad", "3x"),
)
EXIT_FIELDS: Final = (
    ("exit_code", "i"), ("group_dead", "B"), ("_pad", "3x"), ("lifetime_ns", "Q"),
    ("comm", "16s"),
)
NET_FIELDS: Final = (
    ("ret", "q"), ("sock_ino", "Q"), ("ppid", "I"), ("fd", "i"), ("scope_id", "I"),
    ("arg", "I"), ("family", "H"), ("sa_family", "H"), ("sock_type", "H"), ("protocol", "H"),
    ("lport", "H"), ("rport", "H"), ("op", "B"), ("syscall", "B"), ("nflags", "H"),
    ("laddr", "16s"), ("raddr", "16s"), ("comm", "16s"), ("unix_path", STR_FIELD),
    ("abi", "B"), ("_pad", "3x"),
)

# C struct name -> fields after the header (None: the header itself)
LAYOUTS: Final = {
    "rg_header": HEADER_FIELDS,
    "rg_file_event": FILE_FIELDS,
    "rg_proc_fork": FORK_FIELDS,
    "rg_proc_exec": EXEC_FIELDS,
    "rg_proc_exit": EXIT_FIELDS,
    "rg_proc_exec_failed": EXEC_FAILED_FIELDS,
    "rg_net_event": NET_FIELDS,
}


def expected_layout(name: str) -> tuple[int, dict[str, tuple[int, int]]]:
    """``(size, {field: (offset, size)})`` of a C struct as this module reads it."""
    off, members = 0, {}
    if name != "rg_header":
        off = struct.calcsize("<" + _fmt(HEADER_FIELDS))
        members["hdr"] = (0, off)
    for field, fmt in LAYOUTS[name]:
        size = struct.calcsize("<" + fmt)
        if not field.startswith("_"):
            members[field] = (off, size)
        off += size
    return off, members


def _named(prefix: str, names: Iterable[tuple[int, str | None]]) -> dict[str, int]:
    return {f"{prefix}{n.upper()}": i for i, n in names if n}


def _flags(prefix: str) -> dict[str, int]:
    """This module's constants named `prefix`*, as randguard.h names them (RG_ in front)."""
    return {f"RG_{k}": v for k, v in globals().items() if k.startswith(prefix)}


def expected_enums() -> dict[str, dict[str, int]]:
    """randguard.h's enums as this module reads them, by C enumerator (enum_mismatches())."""
    return {
        "rg_kind": _flags("KIND_"),
        "rg_header_flag": _flags("HF_"),
        "rg_family": _named("RG_FAM_", enumerate(FAMILIES)),
        "rg_file_op": _named("RG_OP_", ((i, n.removeprefix("file_")) for i, n in OPS.items())),
        "rg_syscall": _named("RG_SYS_", enumerate(SYSCALLS)) | {"RG_SYS_MAX": len(SYSCALLS)},
        "rg_abi": _named("RG_ABI_", enumerate(ABIS)),
        "rg_file_flag": _flags("FF_"),
        "rg_exec_source": _named("RG_SRC_", enumerate(EXEC_SOURCES)) | {"RG_SRC_UNKNOWN": 0},
        "rg_verdict": {f"RG_V_{k.removeprefix('RG_VERDICT_')}": v
                       for k, v in _flags("VERDICT_").items()},
        "rg_net_op": _named("RG_NET_", ((i, n.removeprefix("network_"))
                                        for i, n in NET_OPS.items())),
        "rg_net_syscall": _named("RG_NSYS_", enumerate(NET_SYSCALLS)),
        "rg_net_family": {"RG_AF_UNSPEC": AF_UNSPEC, "RG_AF_UNIX": AF_UNIX, "RG_AF_INET": AF_INET,
                          "RG_AF_INET6": AF_INET6},
        "rg_net_flag": _flags("NF_"),
    }


def enum_mismatches(compiled: Callable[[str], dict[str, int]]) -> list[str]:
    """Differences between this module's values and the compiled enums (`compiled` gives an
    enum's enumerators, e.g. BpfObject.enum_values); empty when the two sides agree. A C-side
    `*_MAX` that this module has no use for is not compared."""
    out = []
    for name, want in expected_enums().items():
        have = {k: v for k, v in compiled(name).items() if k in want or not k.endswith("_MAX")}
        out += [f"enum {name}: {k} is {have.get(k)} compiled, {want.get(k)} here"
                for k in sorted(set(want) | set(have)) if want.get(k) != have.get(k)]
    return out


def layout_mismatches(
    compiled: Callable[[str], tuple[int, dict[str, tuple[int, int]]]],
) -> list[str]:
    """Differences between this module and the compiled structs (`compiled` gives a struct's
    layout, e.g. BpfObject.struct_layout); empty when the two sides agree."""
    out = []
    for name in LAYOUTS:
        want_size, want = expected_layout(name)
        size, have = compiled(name)
        have = {k: v for k, v in have.items() if not k.startswith("_")}
        if size != want_size:
            out.append(f"struct {name}: {size} bytes compiled, {want_size} decoded")
        for field in sorted(set(want) | set(have)):
            if want.get(field) != have.get(field):
                out.append(f"struct {name}.{field}: (offset, size) compiled {have.get(field)}, "
                           f"decoded {want.get(field)}")
    return out


def _fmt(fields: tuple[tuple[str, str], ...]) -> str:
    return "".join(f for _, f in fields)


HEADER: Final = struct.Struct("<" + _fmt(HEADER_FIELDS))
# struct rg_inode_key (ino, dev, pad): the key of the kernel's rg_persist_inodes; its value is
# the inode's generation (u32, 0: not compared)
INODE_KEY: Final = struct.Struct("<QI4x")
INODE_GEN: Final = struct.Struct("<I")
FILE: Final = struct.Struct("<" + _fmt(HEADER_FIELDS) + _fmt(FILE_FIELDS))
FORK: Final = struct.Struct("<" + _fmt(HEADER_FIELDS) + _fmt(FORK_FIELDS))
EXEC: Final = struct.Struct("<" + _fmt(HEADER_FIELDS) + _fmt(EXEC_FIELDS))
EXIT: Final = struct.Struct("<" + _fmt(HEADER_FIELDS) + _fmt(EXIT_FIELDS))
EXEC_FAILED: Final = struct.Struct("<" + _fmt(HEADER_FIELDS) + _fmt(EXEC_FAILED_FIELDS))
NET: Final = struct.Struct("<" + _fmt(HEADER_FIELDS) + _fmt(NET_FIELDS))


class DecodeError(ValueError):
    """A record that cannot be trusted; `reason` is the counter it is accounted under."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class FileRecord(msgspec.Struct, frozen=True, gc=False):
    """struct rg_file_event, with its string slots cut out of the record."""

    kind: int
    flags: int
    ts_ns: int
    pid: int
    tid: int
    uid: int
    gid: int
    ret: int
    open_flags: int
    ino: int
    dev: int
    ppid: int
    syscall: int
    op: int
    fflags: int
    fd: int
    comm: bytes
    path: bytes | None
    dir: bytes | None
    name: bytes | None
    dir2: bytes | None
    name2: bytes | None
    abi: int = 0
    old: int = 0  # with FF_OLD: the mode, uid << 32 | gid or size before the call


class ForkRecord(msgspec.Struct, frozen=True, gc=False):
    """struct rg_proc_fork."""

    ts_ns: int
    pid: int
    tid: int
    uid: int
    gid: int
    parent_tgid: int
    child_tgid: int
    child_tid: int
    comm: bytes


class ExecRecord(msgspec.Struct, frozen=True, gc=False):
    """struct rg_proc_exec."""

    flags: int
    ts_ns: int
    pid: int
    tid: int
    uid: int
    gid: int
    ppid: int
    old_tid: int
    euid: int
    egid: int
    cgroup_id: int
    source: int
    comm: bytes
    parent_comm: bytes
    exe: bytes | None
    filename: bytes | None
    args: bytes | None = None
    cwd: bytes | None = None
    abi: int = 0


class ExecFailedRecord(msgspec.Struct, frozen=True, gc=False):
    """struct rg_proc_exec_failed."""

    flags: int
    ts_ns: int
    pid: int
    tid: int
    uid: int
    gid: int
    ret: int
    ppid: int
    source: int
    comm: bytes
    filename: bytes | None
    abi: int = 0


class ExitRecord(msgspec.Struct, frozen=True, gc=False):
    """struct rg_proc_exit."""

    ts_ns: int
    pid: int
    tid: int
    exit_code: int
    group_dead: bool
    comm: bytes
    lifetime_ns: int = 0


class NetRecord(msgspec.Struct, frozen=True, gc=False):
    """struct rg_net_event, addresses formatted (see randguard.h for what each field means).

    ``local_addr``/``local_port`` and ``remote_addr``/``remote_port`` are None where the record
    has no such side (RG_NF_LOCAL / RG_NF_REMOTE unset). ``unix_path`` is the raw AF_UNIX name
    (abstract names without their leading NUL, ``unix_abstract`` set); `unix_path_text` gives
    the display form.
    """

    flags: int
    ts_ns: int
    pid: int
    tid: int
    uid: int
    gid: int
    ret: int
    sock_ino: int
    ppid: int
    fd: int
    scope_id: int
    arg: int
    family: int
    sa_family: int
    sock_type: int
    protocol: int
    op: int
    syscall: int
    nflags: int
    local_addr: str | None
    local_port: int | None
    remote_addr: str | None
    remote_port: int | None
    comm: bytes
    unix_path: bytes | None
    unix_abstract: bool
    abi: int = 0


Record = FileRecord | ForkRecord | ExecRecord | ExecFailedRecord | ExitRecord | NetRecord


def _cstr(raw: bytes) -> bytes:
    n = raw.find(b"\0")
    return raw if n < 0 else raw[:n]


def _slot(rec: bytes, off: int, length: int, size: int) -> bytes | None:
    if not length:
        return None
    if off + length > size:
        raise DecodeError("bad_string", f"string at {off}+{length} past record size {size}")
    return rec[off : off + length]


def _file(rec: bytes, size: int) -> FileRecord:
    if size < FILE.size:
        raise DecodeError("short_record", f"file record of {size} bytes")
    (kind, _, _, hflags, ts, pid, tid, uid, gid, ret, oflags, ino, dev, ppid, sysc, op, fflags,
     fd, comm, p_off, p_len, d_off, d_len, n_off, n_len, d2_off, d2_len, n2_off,
     n2_len, abi, old) = FILE.unpack_from(rec)
    if max(p_off + p_len, d_off + d_len, n_off + n_len, d2_off + d2_len,
           n2_off + n2_len) > size:  # (the hot path: every file record) one check for all
        for off, length in ((p_off, p_len), (d_off, d_len), (n_off, n_len), (d2_off, d2_len),
                            (n2_off, n2_len)):
            _slot(rec, off, length, size)  # raises for the slot past the end
    return FileRecord(
        kind, hflags, ts, pid, tid, uid, gid, ret, oflags, ino, dev, ppid, sysc, op, fflags,
        fd, comm.partition(b"\0")[0], rec[p_off:p_off + p_len] if p_len else None,
        rec[d_off:d_off + d_len] if d_len else None,
        rec[n_off:n_off + n_len] if n_len else None,
        rec[d2_off:d2_off + d2_len] if d2_len else None,
        rec[n2_off:n2_off + n2_len] if n2_len else None, abi, old,
    )


def _exec(rec: bytes, size: int) -> ExecRecord:
    if size < EXEC.size:
        raise DecodeError("short_record", f"exec record of {size} bytes")
    (_, _, _, hflags, ts, pid, tid, uid, gid, ppid, old_tid, euid, egid, cgid, src, abi,
     comm, pcomm, e_off, e_len, f_off, f_len, a_off, a_len, c_off, c_len) = EXEC.unpack_from(rec)
    return ExecRecord(
        hflags, ts, pid, tid, uid, gid, ppid, old_tid, euid, egid, cgid, src, _cstr(comm),
        _cstr(pcomm), _slot(rec, e_off, e_len, size), _slot(rec, f_off, f_len, size),
        _slot(rec, a_off, a_len, size), _slot(rec, c_off, c_len, size), abi,
    )


def _fork(rec: bytes, size: int) -> ForkRecord:
    if size < FORK.size:
        raise DecodeError("short_record", f"fork record of {size} bytes")
    (_, _, _, _, ts, pid, tid, uid, gid, ptgid, ctgid, ctid, comm) = FORK.unpack_from(rec)
    return ForkRecord(ts, pid, tid, uid, gid, ptgid, ctgid, ctid, _cstr(comm))


def _exit(rec: bytes, size: int) -> ExitRecord:
    if size < EXIT.size:
        raise DecodeError("short_record", f"exit record of {size} bytes")
    (_, _, _, _, ts, pid, tid, _, _, code, dead, life, comm) = EXIT.unpack_from(rec)
    return ExitRecord(ts, pid, tid, code, bool(dead), _cstr(comm), life)


def _exec_failed(rec: bytes, size: int) -> ExecFailedRecord:
    if size < EXEC_FAILED.size:
        raise DecodeError("short_record", f"exec-failed record of {size} bytes")
    (_, _, _, hflags, ts, pid, tid, uid, gid, ret, ppid, src, comm, f_off,
     f_len, abi) = EXEC_FAILED.unpack_from(rec)
    return ExecFailedRecord(hflags, ts, pid, tid, uid, gid, ret, ppid, src, _cstr(comm),
                            _slot(rec, f_off, f_len, size), abi)


def _net(rec: bytes, size: int) -> NetRecord:
    if size < NET.size:
        raise DecodeError("short_record", f"network record of {size} bytes")
    (_, _, _, hflags, ts, pid, tid, uid, gid, ret, ino, ppid, fd, scope, arg, fam, sa_fam,
     stype, proto, lport, rport, op, sysc, nflags, laddr, raddr, comm, u_off,
     u_len, abi) = NET.unpack_from(rec)
    local = _net_addr(fam, laddr) if nflags & NF_LOCAL else None
    remote = _net_addr(fam, raddr) if nflags & NF_REMOTE else None
    return NetRecord(
        hflags, ts, pid, tid, uid, gid, ret, ino, ppid, fd, scope, arg, fam, sa_fam, stype,
        proto, op, sysc, nflags, local, lport if local is not None else None, remote,
        rport if remote is not None else None, _cstr(comm), _slot(rec, u_off, u_len, size),
        bool(nflags & NF_UNIX_ABSTRACT), abi,
    )


_DECODERS: dict[int, Callable[[bytes, int], Record]] = {
    KIND_FILE: _file, KIND_PROC_EXEC: _exec, KIND_PROC_FORK: _fork, KIND_PROC_EXIT: _exit,
    KIND_PROC_EXEC_FAILED: _exec_failed, KIND_NET: _net,
}


def decode(rec: bytes) -> Record:
    """Decode one ring-buffer record; raises DecodeError (never anything else) when it is bad."""
    n = len(rec)
    if n < HEADER.size:
        raise DecodeError("short_record", f"{n} bytes, header needs {HEADER.size}")
    kind, version, size = struct.unpack_from("<HHH", rec)
    if version != SCHEMA_VERSION:
        raise DecodeError("bad_version", f"schema version {version}, expected {SCHEMA_VERSION}")
    if size > n:
        raise DecodeError("short_record", f"record says {size} bytes, ring gave {n}")
    fn = _DECODERS.get(kind)
    if fn is None:
        raise DecodeError("unknown_kind", f"record kind {kind}")
    return fn(rec, size)


def abi_name(abi: int) -> str:
    """The `abi` output value of a record's enum rg_abi."""
    return ABIS[abi] if abi < len(ABIS) else "unknown"


def _net_addr(family: int, raw: bytes) -> str | None:
    if family == AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if family == AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw)
    return None


def unix_path_text(rec: NetRecord) -> str | None:
    """The AF_UNIX name for output: a path name as `paths.decode_path` spells it; an abstract
    name as "@" followed by the name with each NUL in it also written "@" (as ss(8) does).
    None for an unnamed socket."""
    if rec.unix_abstract:
        return "@" + decode_path((rec.unix_path or b"").replace(b"\0", b"@"))
    if rec.unix_path is None:
        return None
    return decode_path(rec.unix_path)
