"""Decoding of the kernel's ring-buffer records: the Python mirror of bpf_src/randguard.h.

Every record is declared once, as a list of `Field`s in the C order; its struct format, its
msgspec record type and its decoder are derived from that list, and the loader (and
tests/unit/test_contract.py) checks each field's offset and size, and every enum value here,
against the BTF of the compiled objects, so the two sides cannot drift apart silently.
"""

from __future__ import annotations

import operator
import socket
import struct
from collections.abc import Callable, Iterable
from typing import Final, NamedTuple

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
HF_TRUNC_S0, HF_TRUNC_S1, HF_TRUNC_S2, HF_TRUNC_S3, HF_TRUNC_S4 = (1 << i for i in range(5))

# rg_file_event.fflags
FF_CREATED, FF_WRITE, FF_IO_URING, FF_DIRECT, FF_NO_RESULT, FF_FORCED, FF_OLD, FF_INODE = (
    1 << i for i in range(8))

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
NF_LOCAL, NF_REMOTE, NF_SOCK, NF_UNIX_ABSTRACT, NF_LOCAL_SOCK = (1 << i for i in range(5))
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

class Field(NamedTuple):
    """One member of a C struct in randguard.h, as the agent reads it: the C name (checked
    against the objects' BTF), its struct format, the decoded record's attribute (None: not
    kept) and how the value becomes it (INT as is, RAW bytes as they are, CSTR a char array cut
    at its NUL, SLOT a struct rg_str: the bytes it points at or None, BOOL, PAD padding)."""

    c: str
    fmt: str
    attr: str | None
    conv: str


INT, RAW, CSTR, SLOT, BOOL, PAD = "int", "raw", "cstr", "slot", "bool", "pad"
_TYPES: Final = {INT: int, RAW: bytes, CSTR: bytes, SLOT: bytes | None, BOOL: bool}


def num(c: str, fmt: str, attr: str | None = "") -> Field:
    """An integer member (`attr` "": kept under its C name; None: not kept)."""
    return Field(c, fmt, c if attr == "" else attr, INT)


def chars(c: str, n: int = 16) -> Field:
    """A char array, kept up to its NUL (comm)."""
    return Field(c, f"{n}s", c, CSTR)


def octets(c: str, n: int) -> Field:
    """A byte array kept whole (an address)."""
    return Field(c, f"{n}s", c, RAW)


def string(c: str) -> Field:
    """A struct rg_str {u16 off; u16 len;}: a string after the fixed part, or None."""
    return Field(c, "HH", c, SLOT)


def flag(c: str, fmt: str) -> Field:
    return Field(c, fmt, c, BOOL)


def pad(n: int) -> Field:
    return Field("_pad", f"{n}x", None, PAD)


HEADER_FIELDS: Final = (
    num("kind", "H"), num("version", "H", None), num("size", "H", None), num("flags", "H"),
    num("ts_ns", "Q"), num("pid", "I"), num("tid", "I"), num("uid", "I"), num("gid", "I"),
)
FILE_FIELDS: Final = (
    num("ret", "q"), num("flags", "Q", "open_flags"), num("ino", "Q"), num("dev", "I"),
    num("ppid", "I"), num("syscall", "H"), num("op", "B"), num("fflags", "B"), num("fd", "i"),
    chars("comm"), string("path"), string("dir"), string("name"), string("dir2"),
    string("name2"), num("abi", "B"), pad(3),
    num("old", "Q"),  # with FF_OLD: the mode, uid << 32 | gid or size before the call
)
FORK_FIELDS: Final = (
    num("parent_tgid", "I"), num("child_tgid", "I"), num("child_tid", "I"), pad(4),
    chars("comm"),
)
EXEC_FIELDS: Final = (
    num("ppid", "I"), num("old_tid", "I"), num("euid", "I"), num("egid", "I"),
    num("cgroup_id", "Q"), num("source", "I"), num("abi", "B"), pad(3), chars("comm"),
    chars("parent_comm"), string("exe"), string("filename"), string("args"), string("cwd"),
)
EXEC_FAILED_FIELDS: Final = (
    num("ret", "q"), num("ppid", "I"), num("source", "I"), chars("comm"), string("filename"),
    num("abi", "B"), pad(3),
)
EXIT_FIELDS: Final = (
    num("exit_code", "i"), flag("group_dead", "B"), pad(3), num("lifetime_ns", "Q"),
    chars("comm"),
)
NET_FIELDS: Final = (
    num("ret", "q"), num("sock_ino", "Q"), num("ppid", "I"), num("fd", "i"),
    num("scope_id", "I"), num("arg", "I"), num("family", "H"), num("sa_family", "H"),
    num("sock_type", "H"), num("protocol", "H"), num("lport", "H"), num("rport", "H"),
    num("op", "B"), num("syscall", "B"), num("nflags", "H"), octets("laddr", 16),
    octets("raddr", 16), chars("comm"), string("unix_path"), num("abi", "B"), pad(3),
)
# struct rg_inode_key (ino, dev, pad): the key of the kernel's rg_persist_inodes; its value is
# the inode's generation (u32, 0: not compared)
INODE_KEY: Final = struct.Struct("<QI4x")
INODE_GEN: Final = struct.Struct("<I")


class DecodeError(ValueError):
    """A record that cannot be trusted; `reason` is the counter it is accounted under."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _past_end(size: int, slots: Iterable[tuple[int, int]]) -> None:
    for off, length in slots:
        if length and off + length > size:
            raise DecodeError("bad_string", f"string at {off}+{length} past record size {size}")


def _decoder(name: str, what: str, fields: tuple[Field, ...], st: struct.Struct,
             record: type) -> Callable[[bytes, int], Record]:
    """The decoder of one layout, written out from its fields (as dataclasses writes __init__):
    one unpack_from, one bounds check for all string slots, one constructor call."""
    names, args, slots = [], [], []
    for f in fields:
        if f.conv == PAD:
            continue
        v = f"v{len(names)}"
        names.append(v)
        expr = {INT: v, RAW: v, CSTR: f"{v}.partition(b'\\0')[0]", BOOL: f"bool({v})"}.get(f.conv)
        if f.conv == SLOT:
            n = f"v{len(names)}"
            names.append(n)
            slots.append((v, n))
            expr = f"rec[{v}:{v} + {n}] if {n} else None"
        if f.attr is not None:
            args.append(expr)
    check = (f"    if max({', '.join(f'{v} + {n}' for v, n in slots)}, 0) > size:\n"
             f"        _past_end(size, ({', '.join(f'({v}, {n})' for v, n in slots)},))\n"
             if slots else "")
    src = (f"def decode_{name}(rec, size):\n"
           f"    if size < {st.size}:\n"
           f"        raise DecodeError('short_record', f'{what} record of {{size}} bytes')\n"
           f"    ({', '.join(names)},) = unpack_from(rec)\n{check}"
           f"    return record({', '.join(args)})\n")
    scope = {"DecodeError": DecodeError, "_past_end": _past_end, "unpack_from": st.unpack_from,
             "record": record}
    exec(compile(src, f"<records: {name}>", "exec"), scope)  # the fields, written out once
    return scope[f"decode_{name}"]


class _NetSides(msgspec.Struct, frozen=True, gc=False):
    """What rg_net_event's raw address fields mean: ``local_addr``/``local_port`` and
    ``remote_addr``/``remote_port`` are None where the record has no such side (RG_NF_LOCAL /
    RG_NF_REMOTE unset) or the family has no addresses; ``unix_path`` is the raw AF_UNIX name
    (abstract names without their leading NUL, ``unix_abstract`` set); `unix_path_text` gives
    the display form."""

    def side(self, flag: int, raw: bytes, port: int) -> tuple[str | None, int | None]:
        """(address, port) of one side: RG_NF_LOCAL with laddr and lport, or RG_NF_REMOTE
        with raddr and rport."""
        addr = _net_addr(self.family, raw) if self.nflags & flag else None
        return addr, (port if addr is not None else None)

    local_addr = property(lambda self: self.side(NF_LOCAL, self.laddr, self.lport)[0])
    local_port = property(lambda self: self.side(NF_LOCAL, self.laddr, self.lport)[1])
    remote_addr = property(lambda self: self.side(NF_REMOTE, self.raddr, self.rport)[0])
    remote_port = property(lambda self: self.side(NF_REMOTE, self.raddr, self.rport)[1])
    unix_abstract = property(lambda self: bool(self.nflags & NF_UNIX_ABSTRACT))


class Layout(NamedTuple):
    """One record struct of randguard.h: its fields after the header, the struct that unpacks
    the fixed part, the msgspec record it decodes to and that decoder, all from `fields`."""

    kind: int
    fields: tuple[Field, ...]
    struct: struct.Struct
    record: type
    decode: Callable[[bytes, int], Record]


def _layout(c_name: str, kind: int, what: str, fields: tuple[Field, ...], doc: str,
            base: type = msgspec.Struct) -> Layout:
    full = HEADER_FIELDS + fields
    st = struct.Struct("<" + "".join(f.fmt for f in full))
    kept = [(f.attr, _TYPES[f.conv]) for f in full if f.attr is not None]
    name = "".join(w.title() for w in what.split("-")) + "Record"
    record = msgspec.defstruct(name, kept, bases=(base,), module=__name__,
                               namespace={"__doc__": f"struct {c_name}: {doc}"},
                               frozen=True, gc=False)
    return Layout(kind, fields, st, record, _decoder(c_name, what, full, st, record))


LAYOUTS: Final = {
    "rg_file_event": _layout("rg_file_event", KIND_FILE, "file", FILE_FIELDS,
                             "a file operation, its string slots cut out of the record."),
    "rg_proc_fork": _layout("rg_proc_fork", KIND_PROC_FORK, "fork", FORK_FIELDS,
                            "a new process or thread."),
    "rg_proc_exec": _layout("rg_proc_exec", KIND_PROC_EXEC, "exec", EXEC_FIELDS,
                            "a successful execve/execveat."),
    "rg_proc_exit": _layout("rg_proc_exit", KIND_PROC_EXIT, "exit", EXIT_FIELDS,
                            "a thread's exit (group_dead: the process's)."),
    "rg_proc_exec_failed": _layout("rg_proc_exec_failed", KIND_PROC_EXEC_FAILED, "exec-failed",
                                   EXEC_FAILED_FIELDS, "an execve/execveat that failed."),
    "rg_net_event": _layout("rg_net_event", KIND_NET, "network", NET_FIELDS,
                            "a connect, bind, listen or accept.", _NetSides),
}
HEADER: Final = struct.Struct("<" + "".join(f.fmt for f in HEADER_FIELDS))
FILE: Final = LAYOUTS["rg_file_event"].struct
NET: Final = LAYOUTS["rg_net_event"].struct
FileRecord = LAYOUTS["rg_file_event"].record
ForkRecord = LAYOUTS["rg_proc_fork"].record
ExecRecord = LAYOUTS["rg_proc_exec"].record
ExitRecord = LAYOUTS["rg_proc_exit"].record
ExecFailedRecord = LAYOUTS["rg_proc_exec_failed"].record
NetRecord = LAYOUTS["rg_net_event"].record
Record = FileRecord | ForkRecord | ExecRecord | ExecFailedRecord | ExitRecord | NetRecord
_DECODERS: Final = {lay.kind: lay.decode for lay in LAYOUTS.values()}


class Varying(NamedTuple):
    """A record's bytes split for a memo keyed by them: `unpack` gives the fields that vary
    from call to call (in layout order), `rest` every other byte (the other fields of the fixed
    part and the strings) as a tuple of slices: two records with the same `rest` differ only in
    the varying fields."""

    unpack: Callable[[bytes], tuple]
    rest: Callable[[bytes], tuple[bytes, ...]]


def varying(c_name: str, attrs: frozenset[str]) -> Varying:
    """The Varying split of a layout, the varying fields named by their record attributes."""
    fmt, rest, off, start = "<", [], 0, 0
    for f in HEADER_FIELDS + LAYOUTS[c_name].fields:
        size = struct.calcsize("<" + f.fmt)
        if f.attr in attrs:
            fmt += f.fmt
            if off > start:
                rest.append(slice(start, off))
            start = off + size
        else:
            fmt += f"{size}x"
        off += size
    rest.append(slice(start, None))
    return Varying(struct.Struct(fmt).unpack_from, operator.itemgetter(*rest))


def field_layout(fields: Iterable[Field], off: int = 0) -> tuple[int, dict[str, tuple[int, int]]]:
    """``(end, {member: (offset, size)})`` of `fields` laid out from `off` (padding unnamed)."""
    members = {}
    for f in fields:
        size = struct.calcsize("<" + f.fmt)
        if f.conv != PAD:
            members[f.c] = (off, size)
        off += size
    return off, members


def expected_layout(name: str) -> tuple[int, dict[str, tuple[int, int]]]:
    """``(size, {field: (offset, size)})`` of a C struct as this module reads it."""
    if name == "rg_header":
        return field_layout(HEADER_FIELDS)
    size, members = field_layout(LAYOUTS[name].fields, HEADER.size)
    return size, {"hdr": (0, HEADER.size), **members}


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


Compiled = Callable[[str], tuple[int, dict[str, tuple[int, int]]]]


def struct_mismatches(compiled: Compiled, name: str,
                      expected: tuple[int, dict[str, tuple[int, int]]]) -> list[str]:
    """Differences between one compiled struct (`compiled` gives a struct's layout, e.g.
    BpfObject.struct_layout) and the `(size, members)` the agent expects of it."""
    want_size, want = expected
    size, have = compiled(name)
    have = {k: v for k, v in have.items() if not k.startswith("_")}
    out = [f"struct {name}: {size} bytes compiled, {want_size} decoded"] * (size != want_size)
    return out + [f"struct {name}.{field}: (offset, size) compiled {have.get(field)}, "
                  f"decoded {want.get(field)}"
                  for field in sorted(set(want) | set(have)) if want.get(field) != have.get(field)]


def layout_mismatches(compiled: Compiled) -> list[str]:
    """Differences between this module's records and the compiled structs; empty when the two
    sides agree."""
    return [p for name in ("rg_header", *LAYOUTS)
            for p in struct_mismatches(compiled, name, expected_layout(name))]


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
