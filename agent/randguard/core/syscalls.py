"""Which syscall numbers the kernel dispatcher serves, and with which family program.

The dispatcher (bpf_src/dispatch.bpf.h) runs for every syscall and tail-calls the program in the
syscall's slot of a program array: native x86-64 numbers from slot 0, i386 numbers (int $0x80, or
a 32-bit process) from IA32_BASE. This module is where those numbers live (from the kernel's
arch/x86/entry/syscalls/syscall_64.tbl and syscall_32.tbl); the loader fills the slots from it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final, NamedTuple

from .records import (
    ABIS,
    EXEC_SOURCES,
    NET_SYSCALLS,
    SYSCALLS,
    Compiled,
    field_layout,
    num,
    pad,
    struct_mismatches,
)

IA32_BASE: Final = 1024  # dispatch.bpf.h enum rg_dispatch_slot
SOCKETCALL_BASE: Final = 2048
SYSINFO_FIELDS: Final = (num("id", "H"), num("abi", "B"), pad(1))  # struct rg_sysinfo
SYSINFO: Final = struct.Struct("<" + "".join(f.fmt for f in SYSINFO_FIELDS))
ABI_X86_64: Final = ABIS.index("x86_64")
ABI_I386: Final = ABIS.index("i386")

# hook -> (x86-64 number, i386 numbers); i386 has two sendfiles (32- and 64-bit offsets)
NUMBERS: Final[dict[str, tuple[int | None, tuple[int, ...]]]] = {
    "open": (2, (5,)), "creat": (85, (8,)), "openat": (257, (295,)), "openat2": (437, (437,)),
    "write": (1, (4,)), "writev": (20, (146,)), "pwrite64": (18, (181,)),
    "pwritev": (296, (334,)), "pwritev2": (328, (379,)), "copy_file_range": (326, (377,)),
    "sendfile": (40, (187, 239)), "splice": (275, (313,)),
    "rename": (82, (38,)), "renameat": (264, (302,)), "renameat2": (316, (353,)),
    "unlink": (87, (10,)), "unlinkat": (263, (301,)), "rmdir": (84, (40,)),
    "link": (86, (9,)), "linkat": (265, (303,)), "symlink": (88, (83,)),
    "symlinkat": (266, (304,)),
    "execve": (59, (11,)), "execveat": (322, (358,)),
    # i386 has no accept(2) of its own: only through socketcall
    "connect": (42, (362,)), "bind": (49, (361,)), "listen": (50, (363,)), "accept": (43, ()),
    "accept4": (288, (364,)),
    # the directory cache's (file.bpf.c): what changes the paths directories have
    # i386 numbers of the same calls under another name (16-bit ids, 64-bit lengths) are in
    # I386_VARIANTS; chown, fchown, lchown here are i386's chown32, fchown32, lchown32
    "chmod": (90, (15,)), "fchmod": (91, (94,)), "fchmodat": (268, (306,)),
    "fchmodat2": (452, (452,)), "chown": (92, (212,)), "fchown": (93, (207,)),
    "lchown": (94, (198,)), "fchownat": (260, (298,)), "truncate": (76, (92,)),
    "ftruncate": (77, (93,)),
    "mkdir": (83, (39,)), "mkdirat": (258, (296,)), "mknod": (133, (14,)),
    "mknodat": (259, (297,)), "setxattr": (188, (226,)), "lsetxattr": (189, (227,)),
    "fsetxattr": (190, (228,)), "setxattrat": (463, (463,)), "fallocate": (285, (324,)),
    "open_by_handle_at": (304, (342,)), "utime": (132, (30,)), "utimes": (235, (271,)),
    "futimesat": (261, (299,)), "utimensat": (280, (320,)),
    "mount": (165, (21,)), "umount": (None, (22,)), "umount2": (166, (52,)),
    "move_mount": (429, (429,)), "pivot_root": (155, (217,)), "io_uring_setup": (425, (425,)),
    "removexattr": (197, (235,)), "lremovexattr": (198, (236,)), "fremovexattr": (199, (237,)),
    "removexattrat": (466, (466,)),
}
# hook -> {i386 number: the syscall's own name}: served with the hook, reported by that name
I386_VARIANTS: Final = {
    "chown": {182: "chown16"}, "fchown": {95: "fchown16"}, "lchown": {16: "lchown16"},
    "truncate": {193: "truncate64"}, "ftruncate": {194: "ftruncate64"},
    "utimensat": {412: "utimensat_time64"},
}
SOCKETCALL_I386: Final = 102
# socketcall(2)'s call numbers (linux/net.h SYS_*) for the network hooks
SOCKETCALL_CALLS: Final = {"bind": 2, "connect": 3, "listen": 4, "accept": 5, "accept4": 18}


class Handler(NamedTuple):
    """The family programs a syscall's slots hold, and the syscall's id in its records."""

    obj: str  # object name: file, process, network
    enter: str | None  # None: the exit program reads the arguments from the saved registers
    exit: str
    id: int


def _family(obj: str, enter: str | None, exit: str, names: tuple[str | None, ...],
            hooks: tuple[str, ...]) -> dict[str, Handler]:
    return {h: Handler(obj, enter, exit, names.index(h)) for h in hooks}


_ATTR_ON_FD = ("fchmod", "fchown", "ftruncate", "fsetxattr", "fremovexattr")
_OLD_AT_ENTER = ("fchmod", "fchown", "ftruncate", "fchmodat2", "fchownat")
HANDLERS: Final[dict[str, Handler]] = {
    **_family("file", None, "rg_file_exit_open", SYSCALLS,
              ("open", "creat", "openat", "openat2", "open_by_handle_at")),
    **_family("file", "rg_file_enter_write", "rg_file_exit_write", SYSCALLS,
              ("write", "writev", "pwrite64", "pwritev", "pwritev2", "copy_file_range",
               "sendfile", "splice", "fallocate")),
    **_family("file", "rg_file_enter_names", "rg_file_exit_names", SYSCALLS,
              ("rename", "renameat", "renameat2", "unlink", "unlinkat", "rmdir", "link",
               "linkat", "symlink", "symlinkat", "mount", "umount", "umount2", "move_mount")),
    # on a name (the *at calls hand "" with AT_EMPTY_PATH over to the fd program) or on an fd;
    # the calls that can act on an fd and change a mode, owner or size note it at sys_enter
    **{h: Handler("file", "rg_file_enter_attr" if h in _OLD_AT_ENTER else None,
                  "rg_file_exit_attr_fd" if h in _ATTR_ON_FD else "rg_file_exit_attr",
                  SYSCALLS.index(h))
       for h in ("chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown",
                 "fchownat", "truncate", "ftruncate", "mkdir", "mkdirat", "mknod", "mknodat",
                 "setxattr", "lsetxattr", "fsetxattr", "setxattrat", "utime", "utimes",
                 "futimesat", "utimensat", "removexattr", "lremovexattr", "fremovexattr",
                 "removexattrat")},
    # a process setting up an io_uring: reported, and the directory cache goes off
    "io_uring_setup": Handler("file", None, "rg_file_exit_uring_setup",
                              SYSCALLS.index("io_uring_setup")),
    **_family("process", "rg_proc_enter_exec", "rg_proc_exit_exec", EXEC_SOURCES,
              ("execve", "execveat")),
    **_family("network", "rg_net_enter", "rg_net_exit", NET_SYSCALLS,
              ("connect", "bind", "listen", "accept", "accept4")),
}
SOCKETCALL_ID: Final = NET_SYSCALLS.index("socketcall")

# Followed for the kernel's directory cache whatever the hooks: calls that change what path a
# directory has (their own event programs do it too when they are hooked), and io_uring_setup.
MOVES: Final = ("rename", "renameat", "renameat2", "rmdir", "unlinkat", "mount", "umount",
                "umount2", "move_mount", "pivot_root", "io_uring_setup")
MOVES_HANDLERS: Final[dict[str, Handler]] = _family(
    "file", "rg_file_enter_moves", "rg_file_exit_moves", SYSCALLS, MOVES)


class Slot(NamedTuple):
    """One program-array slot to fill: its index, what it is, and the programs for it."""

    index: int
    id: int
    abi: int
    handler: Handler


def slots(hooks: set[str], moves: bool = False) -> list[Slot]:
    """The dispatcher's slots for these hooks, both ABIs (i386 network calls also through
    socketcall, whose calls are described from SOCKETCALL_BASE and need no program of their
    own); with `moves`, also those of the MOVES calls that are not hooked."""
    handlers = {h: HANDLERS[h] for h in hooks}
    if moves:
        handlers = {**{h: MOVES_HANDLERS[h] for h in MOVES}, **handlers}
    out = []
    for hook, h in sorted(handlers.items()):
        native, ia32 = NUMBERS[hook]
        if native is not None:
            out.append(Slot(native, h.id, ABI_X86_64, h))
        out += [Slot(IA32_BASE + n, h.id, ABI_I386, h) for n in ia32]
        out += [Slot(IA32_BASE + n, SYSCALLS.index(name), ABI_I386, h)
                for n, name in I386_VARIANTS.get(hook, {}).items()]
    net = sorted(hooks & SOCKETCALL_CALLS.keys())
    if net:
        h = HANDLERS[net[0]]
        out.append(Slot(IA32_BASE + SOCKETCALL_I386, SOCKETCALL_ID, ABI_I386, h))
        out += [Slot(SOCKETCALL_BASE + SOCKETCALL_CALLS[n], HANDLERS[n].id, ABI_I386, h)
                for n in net]
    return out


def dispatch_mismatches(enums: Callable[[str], dict[str, int]], compiled: Compiled) -> list[str]:
    """Differences between this module's slot numbering and rg_sysinfo and what an object with
    the dispatcher's maps was compiled with (`enums`: BpfObject.enum_values, `compiled`:
    BpfObject.struct_layout); empty when they agree."""
    have = enums("rg_dispatch_slot")
    want = {"RG_IA32_BASE": IA32_BASE, "RG_SOCKETCALL_BASE": SOCKETCALL_BASE}
    return [f"enum rg_dispatch_slot: {k} is {have.get(k)} compiled, {v} here"
            for k, v in want.items() if have.get(k) != v] + struct_mismatches(
                compiled, "rg_sysinfo", field_layout(SYSINFO_FIELDS))
