"""file_chmod, file_chown, file_truncate, file_mkdir, file_mknod, file_setxattr and
file_removexattr end to end on the real kernel.

One agent serves the module, with the shipped pack and rules on (so /etc/cron.d is watched), a
watched directory with an excluded directory inside it, and an unwatched one. Each test acts
(Python's os functions, or a raw syscall where os has no form for the call), synchronises on a
marker file and then asserts what did or did not arrive: the call's own fields (mode, owner_uid,
owner_gid, length, device, xattr_name), the path rules (a name is joined as given, an fd is
reported by the open file's real path) and the filter, where a chmod that sets the setuid or
setgid bit, and a setxattr of security.capability (file capabilities), are reported wherever the
file is.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from agent_proc import AgentProc, find, in_cron_d, running, the, write_config

pytestmark = pytest.mark.kernel

ATTR_TYPES = ("file_chmod", "file_chown", "file_truncate", "file_mkdir", "file_mknod",
              "file_setxattr", "file_removexattr")

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long
NR_FCHOWNAT = 260  # x86-64 numbers of what os cannot call (fchownat with AT_EMPTY_PATH)
NR_FCHMODAT2 = 452  # Linux 6.6; older kernels say ENOSYS (and the event says so)
NR_MKNOD = 133  # os.mknod and os.mkfifo call mknodat
NR_SETXATTRAT = 463  # Linux 6.13; older kernels say ENOSYS (and the event says so)
NR_REMOVEXATTRAT = 466  # Linux 6.13 too
AT_EMPTY_PATH = 0x1000
UMASK = 0o022  # what the mkdir and mknod calls run under (the event has the mode asked for)
# of every attribute set: trusted.* (root's), which tmpfs has on every kernel here (user.*
# only since 6.6)
VALUE = b"rg-value"
# VFS_CAP_REVISION_2 with cap_net_raw (13) permitted and effective: magic_etc 0x02000001
# (revision 2 | VFS_CAP_FLAGS_EFFECTIVE), then permitted, inheritable (low 32 bits), permitted,
# inheritable (high 32 bits), all little-endian
CAP_NET_RAW_EP = (bytes.fromhex("01000002") + (1 << 13).to_bytes(4, "little") + bytes(12))
NOBODY = 65534
GIB = 1 << 30

CRON = ("cron_modified", ["T1053.003"])
SETID = ("setid_bit_set", ["T1548.001"])
FILE_CAPS = ("file_capabilities_set", ["T1548"])
CAPS = "security.capability"
TRUE = os.path.realpath("/bin/true")
PLAIN = (False, None, None)


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    # /var/tmp, not /tmp (excluded by default; and nobody must reach it for EPERM)
    d = Path(tempfile.mkdtemp(prefix="rg-attr-", dir="/var/tmp"))
    d.chmod(0o755)
    for sub in ("watched", "watched/excluded", "unwatched", "markers"):
        (d / sub).mkdir()
        (d / sub).chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def agent(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProc]:
    # the shipped pack and rules stay on: their paths (/etc/cron.d) are watched and annotated
    cfg = write_config(
        tmp_path_factory.mktemp("cfg") / "config.toml",
        # (and a file in a directory not made yet: a new directory above it is reported)
        watch=[str(base / "watched"), str(base / "markers"), str(base / "later" / "keys")],
        exclude=[str(base / "watched" / "excluded")],
    )
    with running(cfg, base / "markers") as a:
        yield a


@pytest.fixture
def cron_job() -> Iterator[str]:
    """A new file in /etc/cron.d (a comment only: cron runs nothing), removed at the end."""
    with in_cron_d() as path:
        new_file(Path(path), data=b"# rg test: no schedule\n")
        yield path


@pytest.fixture
def cron_dir() -> Iterator[str]:
    """A name for a new directory in /etc/cron.d (cron runs no directory), removed at the end."""
    with in_cron_d(".d") as path:
        yield path


# --- helpers ---------------------------------------------------------------------------------


def syscall(nr: int, *args: int | bytes) -> int:
    """A raw x86-64 syscall: its result, or -errno."""
    ret = LIBC.syscall(ctypes.c_long(nr), *(
        ctypes.c_char_p(a) if isinstance(a, bytes) else ctypes.c_long(a) for a in args))
    return -ctypes.get_errno() if ret == -1 else ret




def about(agent: AgentProc, paths: list[Path]) -> list[dict]:
    """Every event whose resolved_path or filename is one of `paths`."""
    names = {str(p) for p in paths}
    return agent.matching(lambda e: e.get("resolved_path") in names
                          or e.get("filename") in names)


def detection(ev: dict) -> tuple:
    return ev["alert"], ev["detection_type"], ev["mitre"]


def rule_alerts(agent: AgentProc, ev: dict) -> list[tuple]:
    """The [[rules]] alert records written for `ev`, joined to it by source_seq."""
    return [(a["rule_id"], a["operation"], a["path"], a["source_event_type"], a["severity"])
            for a in find(agent, event_type="alert", source_seq=ev["seq"])]


class XattrArgs(ctypes.Structure):
    """setxattrat's struct xattr_args."""

    _fields_ = [("value", ctypes.c_uint64), ("size", ctypes.c_uint32),
                ("flags", ctypes.c_uint32)]


def setxattrat(dfd: int, name: bytes, at_flags: int, attr: bytes, value: bytes) -> int:
    """setxattrat(2) (os has no form for it): 0, or -errno (ENOSYS before Linux 6.13)."""
    buf = ctypes.create_string_buffer(value, len(value))
    args = XattrArgs(ctypes.addressof(buf), len(value), 0)
    assert ctypes.sizeof(args) == 16
    return syscall(NR_SETXATTRAT, dfd, name, at_flags, attr, ctypes.addressof(args),
                   ctypes.sizeof(args))


def assert_cron_rule_alert(agent: AgentProc, ev: dict) -> None:
    """`ev` raised FILE-CRON-001 (one alert record, joined by source_seq)."""
    kind, path = ev["event_type"], ev["resolved_path"]
    assert rule_alerts(agent, ev) == [("FILE-CRON-001", kind, path, kind, "high")]


def error_of(ret: int) -> str | None:
    return errno.errorcode[-ret] if ret < 0 else None


def new_file(path: Path, mode: int = 0o644, data: bytes = b"hello\n") -> Path:
    """A file of `data` made with `mode` (and its directories 0755) by open alone: no chmod,
    whose event the tests would see."""
    old = os.umask(0o022)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.umask(0)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    finally:
        os.umask(old)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return path


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@contextlib.contextmanager
def opened(path: Path | str, flags: int = os.O_RDONLY) -> Iterator[int]:
    fd = os.open(path, flags)
    try:
        yield fd
    finally:
        os.close(fd)


# --- each call on a watched file -------------------------------------------------------------


class Call(NamedTuple):
    """One call as its event must report it."""

    event_type: str
    syscall: str
    path: str  # resolved_path
    filename: str | None  # the name as passed; None for a call on an fd
    fd: int | None = None
    mode: int | None = None
    owner_uid: int | None = None
    owner_gid: int | None = None
    length: int | None = None
    device: str | None = None
    xattr_name: str | None = None
    ret: int = 0


def do_chmod(f: Path) -> Call:
    os.chmod(f, 0o640)
    return Call("file_chmod", "chmod", str(f), str(f), mode=0o640)


def do_chmod_file_type_bits(f: Path) -> Call:
    os.chmod(f, 0o100604)  # S_IFREG|0604: the kernel ignores what is not permission bits
    return Call("file_chmod", "chmod", str(f), str(f), mode=0o604)


def do_chmod_cwd_relative(f: Path) -> Call:
    old = os.getcwd()
    os.chdir(f.parent)
    try:
        os.chmod(f.name, 0o600)
    finally:
        os.chdir(old)
    return Call("file_chmod", "chmod", str(f), f.name, mode=0o600)


def do_fchmod(f: Path) -> Call:
    with opened(f) as fd:
        os.fchmod(fd, 0o600)
    return Call("file_chmod", "fchmod", str(f), None, fd=fd, mode=0o600)


def do_fchmodat(f: Path) -> Call:
    with opened(f.parent, os.O_RDONLY | os.O_DIRECTORY) as dfd:
        os.chmod(f.name, 0o640, dir_fd=dfd)
    return Call("file_chmod", "fchmodat", str(f), f.name, mode=0o640)


def do_fchmodat2(f: Path) -> Call:
    name = f"./{f.name}"  # joined lexically: no ./ in resolved_path
    with opened(f.parent, os.O_RDONLY | os.O_DIRECTORY) as dfd:
        ret = syscall(NR_FCHMODAT2, dfd, os.fsencode(name), 0o604, 0)
    return Call("file_chmod", "fchmodat2", str(f), name, mode=0o604, ret=ret)


def do_fchmodat2_empty_path(f: Path) -> Call:
    with opened(f) as fd:
        ret = syscall(NR_FCHMODAT2, fd, b"", 0o600, AT_EMPTY_PATH)
    return Call("file_chmod", "fchmodat2", str(f), None, fd=fd, mode=0o600, ret=ret)


def do_chown(f: Path) -> Call:
    os.chown(f, 100000, 5678)  # past 16 bits
    return Call("file_chown", "chown", str(f), str(f), owner_uid=100000, owner_gid=5678)


def do_chown_keep_uid(f: Path) -> Call:
    os.chown(f, -1, 5678)
    return Call("file_chown", "chown", str(f), str(f), owner_gid=5678)


def do_fchown(f: Path) -> Call:
    with opened(f) as fd:
        os.fchown(fd, 1234, -1)
    return Call("file_chown", "fchown", str(f), None, fd=fd, owner_uid=1234)


def do_lchown(f: Path) -> Call:
    link = f.with_name("link")  # the link itself is changed, and reported by its own name
    link.symlink_to(f.name)
    os.lchown(link, 1234, 5678)
    return Call("file_chown", "lchown", str(link), str(link), owner_uid=1234, owner_gid=5678)


def do_fchownat(f: Path) -> Call:
    with opened(f.parent, os.O_RDONLY | os.O_DIRECTORY) as dfd:
        os.chown(f.name, 1234, 5678, dir_fd=dfd)
    return Call("file_chown", "fchownat", str(f), f.name, owner_uid=1234, owner_gid=5678)


def do_fchownat_empty_path(f: Path) -> Call:
    with opened(f) as fd:
        ret = syscall(NR_FCHOWNAT, fd, b"", 1234, 5678, AT_EMPTY_PATH)
    assert ret == 0, os.strerror(-ret)
    return Call("file_chown", "fchownat", str(f), None, fd=fd, owner_uid=1234, owner_gid=5678)


def do_truncate(f: Path) -> Call:
    os.truncate(f, 3)
    return Call("file_truncate", "truncate", str(f), str(f), length=3)


def do_ftruncate(f: Path) -> Call:
    with opened(f, os.O_WRONLY) as fd:  # (that open is a file_open of its own)
        os.ftruncate(fd, 5 * GIB + 3)  # sparse; past 32 bits
    return Call("file_truncate", "ftruncate", str(f), None, fd=fd, length=5 * GIB + 3)


# mkdir and mknod make "new" next to the file, under UMASK; the event has the mode asked for


def do_mkdir(f: Path) -> Call:
    new = f.with_name("new")
    with umask(UMASK):
        os.mkdir(new, 0o777)  # (Python's os.mkdir is mkdir(2); with dir_fd, mkdirat)
    return Call("file_mkdir", "mkdir", str(new), str(new), mode=0o777)


def do_mkdir_sticky(f: Path) -> Call:
    new = f.with_name("new")
    with umask(UMASK):
        os.mkdir(new, 0o1777)
    return Call("file_mkdir", "mkdir", str(new), str(new), mode=0o1777)


def do_mkdirat(f: Path) -> Call:
    with opened(f.parent, os.O_RDONLY | os.O_DIRECTORY) as dfd, umask(UMASK):
        os.mkdir("new", 0o750, dir_fd=dfd)
    return Call("file_mkdir", "mkdirat", str(f.with_name("new")), "new", mode=0o750)


def do_mkfifo(f: Path) -> Call:
    new = f.with_name("new")
    with umask(UMASK):
        os.mkfifo(new, 0o644)  # glibc's mkfifo and mknod are mknodat
    return Call("file_mknod", "mknodat", str(new), str(new), mode=stat.S_IFIFO | 0o644)


def do_mkfifo_dir_fd(f: Path) -> Call:
    with opened(f.parent, os.O_RDONLY | os.O_DIRECTORY) as dfd, umask(UMASK):
        os.mkfifo("new", 0o600, dir_fd=dfd)
    return Call("file_mknod", "mknodat", str(f.with_name("new")), "new",
                mode=stat.S_IFIFO | 0o600)


def do_mknod_char_device(f: Path) -> Call:
    new = f.with_name("new")
    with umask(UMASK):
        os.mknod(new, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null's
    return Call("file_mknod", "mknodat", str(new), str(new), mode=0o020600, device="1:3")


def do_mknod_block_device(f: Path) -> Call:
    new = f.with_name("new")
    with umask(UMASK):  # a major past 8 bits and a minor past 16: the encoding's split fields
        os.mknod(new, stat.S_IFBLK | 0o640, os.makedev(259, 70000))
    return Call("file_mknod", "mknodat", str(new), str(new), mode=0o060640, device="259:70000")


def do_mknod_regular_file(f: Path) -> Call:
    new = f.with_name("new")
    with umask(UMASK):
        os.mknod(new, stat.S_IFREG | 0o644, os.makedev(1, 3))  # the device is ignored
    return Call("file_mknod", "mknodat", str(new), str(new), mode=0o100644)


def do_mknod(f: Path) -> Call:
    new = f.with_name("new")
    with umask(UMASK):
        ret = syscall(NR_MKNOD, os.fsencode(new), stat.S_IFIFO | 0o640, 0)
    assert ret == 0, os.strerror(-ret)
    return Call("file_mknod", "mknod", str(new), str(new), mode=0o010640)


def do_setxattr(f: Path) -> Call:
    os.setxattr(f, "trusted.rg", VALUE)  # follow_symlinks: setxattr(2)
    return Call("file_setxattr", "setxattr", str(f), str(f), xattr_name="trusted.rg")


def do_lsetxattr(f: Path) -> Call:
    os.setxattr(f, "trusted.rg", VALUE, follow_symlinks=False)
    return Call("file_setxattr", "lsetxattr", str(f), str(f), xattr_name="trusted.rg")


def do_lsetxattr_on_a_symlink(f: Path) -> Call:
    link = f.with_name("link")  # the link itself, which may have no user.* attributes
    link.symlink_to(f.name)
    with pytest.raises(PermissionError):
        os.setxattr(link, "user.rg", VALUE, follow_symlinks=False)
    return Call("file_setxattr", "lsetxattr", str(link), str(link), xattr_name="user.rg",
                ret=-errno.EPERM)


def do_fsetxattr(f: Path) -> Call:
    with opened(f) as fd:
        os.setxattr(fd, "trusted.rg", VALUE)
    return Call("file_setxattr", "fsetxattr", str(f), None, fd=fd, xattr_name="trusted.rg")


def do_setxattrat(f: Path) -> Call:
    with opened(f.parent, os.O_RDONLY | os.O_DIRECTORY) as dfd:
        ret = setxattrat(dfd, os.fsencode(f.name), 0, b"trusted.rg", VALUE)
    return Call("file_setxattr", "setxattrat", str(f), f.name, xattr_name="trusted.rg", ret=ret)


def do_setxattrat_empty_path(f: Path) -> Call:
    with opened(f) as fd:
        ret = setxattrat(fd, b"", AT_EMPTY_PATH, b"trusted.rg", VALUE)
    return Call("file_setxattr", "setxattrat", str(f), None, fd=fd, xattr_name="trusted.rg",
                ret=ret)


def xattr_set_unseen(f: Path) -> None:
    """trusted.rg on `f`, set where nothing is watched (moved out and back: no attribute event
    of its own, the same inode)."""
    away = f.parents[2] / "unwatched" / f"{f.parent.name}-{f.name}"
    os.rename(f, away)
    os.setxattr(away, "trusted.rg", VALUE)
    os.rename(away, f)


def removexattrat(dfd: int, name: bytes, at_flags: int, attr: bytes) -> int:
    """removexattrat(2): 0, or -errno (ENOSYS before Linux 6.13)."""
    return syscall(NR_REMOVEXATTRAT, dfd, name, at_flags, attr)


def do_removexattr(f: Path) -> Call:
    xattr_set_unseen(f)
    os.removexattr(f, "trusted.rg")  # removexattr(2)
    return Call("file_removexattr", "removexattr", str(f), str(f), xattr_name="trusted.rg")


def do_lremovexattr(f: Path) -> Call:
    xattr_set_unseen(f)
    os.removexattr(f, "trusted.rg", follow_symlinks=False)
    return Call("file_removexattr", "lremovexattr", str(f), str(f), xattr_name="trusted.rg")


def do_fremovexattr(f: Path) -> Call:
    xattr_set_unseen(f)
    with opened(f) as fd:
        os.removexattr(fd, "trusted.rg")
    return Call("file_removexattr", "fremovexattr", str(f), None, fd=fd,
                xattr_name="trusted.rg")


def do_removexattrat(f: Path) -> Call:
    xattr_set_unseen(f)
    with opened(f.parent, os.O_RDONLY | os.O_DIRECTORY) as dfd:
        ret = removexattrat(dfd, os.fsencode(f.name), 0, b"trusted.rg")
    return Call("file_removexattr", "removexattrat", str(f), f.name, xattr_name="trusted.rg",
                ret=ret)


CALLS: list[Callable[[Path], Call]] = [
    do_chmod, do_chmod_file_type_bits, do_chmod_cwd_relative, do_fchmod, do_fchmodat,
    do_fchmodat2, do_fchmodat2_empty_path, do_chown, do_chown_keep_uid, do_fchown, do_lchown,
    do_fchownat, do_fchownat_empty_path, do_truncate, do_ftruncate,
    do_mkdir, do_mkdir_sticky, do_mkdirat, do_mkfifo, do_mkfifo_dir_fd, do_mknod_char_device,
    do_mknod_block_device, do_mknod_regular_file, do_mknod, do_setxattr, do_lsetxattr,
    do_lsetxattr_on_a_symlink, do_fsetxattr, do_setxattrat, do_setxattrat_empty_path,
    do_removexattr, do_lremovexattr, do_fremovexattr, do_removexattrat,
]
# failed calls that are part of the table: what fails where, and why
EXPECTED_FAILURES = {
    ("fchmodat2", -errno.ENOSYS),  # before Linux 6.6
    ("setxattrat", -errno.ENOSYS),  # before Linux 6.13
    ("removexattrat", -errno.ENOSYS),  # before Linux 6.13
    ("lsetxattr", -errno.EPERM),  # user.* on a symlink
}


# what new_file leaves for a call to change (the tests run as root), and the path hook through
# which a call on a name reports it (a call on an fd reports it from sys_enter on any kernel)
OLD = {"file_chmod": {"old_mode": 0o644}, "file_chown": {"old_owner_uid": 0, "old_owner_gid": 0},
       "file_truncate": {"old_length": len(b"hello\n")}}
OLD_HOOKS = {"file_chmod": "security_path_chmod", "file_chown": "security_path_chown",
             "file_truncate": "security_path_truncate"}
NO_OLD = {"old_mode": None, "old_owner_uid": None, "old_owner_gid": None, "old_length": None}


def old_values(call: Call, hooks_attached: list[str]) -> dict:
    """The old_* fields `call`'s event must have."""
    hook = OLD_HOOKS.get(call.event_type)
    known = hook is not None and (call.fd is not None or (hook in hooks_attached
                                                          and call.ret == 0))
    return NO_OLD | (OLD[call.event_type] if known else {})


def device_of(st: os.stat_result) -> str | None:
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        return None
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


@pytest.mark.parametrize("act", CALLS, ids=lambda f: f.__name__[3:].replace("_", "-"))
def test_call_on_a_watched_file(agent: AgentProc, base: Path,
                                request: pytest.FixtureRequest,
                                act: Callable[[Path], Call]) -> None:
    start = agent.wait_for(lambda e: e["event_type"] == "agent_start")
    f = new_file(base / "watched" / request.node.callspec.id / "f")
    inode = f.stat().st_ino
    call = act(f)
    agent.sync()
    if call.ret == 0:  # the test's own premise: the call did what it asked
        st = os.stat(call.path, follow_symlinks=False)
        if call.event_type == "file_mkdir":  # (the umask applied, not reported)
            assert stat.S_ISDIR(st.st_mode) and st.st_mode & 0o7777 == call.mode & ~UMASK
        elif call.event_type == "file_mknod":
            assert (st.st_mode, device_of(st)) == (call.mode & ~UMASK, call.device)
        elif call.event_type == "file_setxattr":
            assert os.getxattr(call.path, call.xattr_name, follow_symlinks=False) == VALUE
        elif call.event_type == "file_removexattr":
            assert call.xattr_name not in os.listxattr(call.path, follow_symlinks=False)
        elif call.mode is not None:
            assert st.st_mode & 0o7777 == call.mode
        if call.owner_uid is not None:
            assert st.st_uid == call.owner_uid
        if call.owner_gid is not None:
            assert st.st_gid == call.owner_gid
        if call.length is not None:
            assert st.st_size == call.length
    else:  # what fails on purpose, or on older kernels: the failed call is still reported
        assert (call.syscall, call.ret) in EXPECTED_FAILURES, call
    ev = the(agent, event_type=call.event_type, resolved_path=call.path, pid=os.getpid())
    fields = ("syscall", "abi", "tid", "ppid", "uid", "gid", "exe_path", "filename", "fd",
              "inode", "ret", "error", "mode", "owner_uid", "owner_gid", "length", "device",
              "xattr_name", "old_path", "old_filename", "flags", "access", "created",
              "path_truncated", "alert", "detection_type", "mitre", *NO_OLD)
    assert {k: ev[k] for k in fields} == old_values(call, start["hooks_attached"]) | {
        "syscall": call.syscall, "abi": "x86_64", "tid": threading.get_native_id(),
        "ppid": os.getppid(), "uid": os.getuid(), "gid": os.getgid(),
        "exe_path": os.readlink("/proc/self/exe"), "filename": call.filename, "fd": call.fd,
        "inode": inode if call.fd is not None else None,  # a call on an fd knows its file
        "ret": call.ret, "error": error_of(call.ret), "mode": call.mode,
        "owner_uid": call.owner_uid, "owner_gid": call.owner_gid, "length": call.length,
        "device": call.device, "xattr_name": call.xattr_name, "old_path": None,
        "old_filename": None, "flags": None, "access": None, "created": None,
        "path_truncated": False, "alert": False, "detection_type": None, "mitre": None,
    }
    assert rule_alerts(agent, ev) == []
    # one event per call, of the call's type
    assert [e["event_type"] for e in find(agent, pid=os.getpid(), resolved_path=call.path)
            if e["event_type"] in ATTR_TYPES] == [call.event_type]


# --- failed calls ----------------------------------------------------------------------------


def test_failed_calls_on_a_missing_watched_file_are_reported(agent: AgentProc,
                                                             base: Path) -> None:
    missing = base / "watched" / "failed" / "missing"
    missing.parent.mkdir()
    with pytest.raises(FileNotFoundError):
        os.chmod(missing, 0o640)
    with pytest.raises(FileNotFoundError):
        os.chown(missing, 1234, -1)
    with pytest.raises(FileNotFoundError):
        os.truncate(missing, 7)
    with pytest.raises(FileNotFoundError):
        os.setxattr(missing, "trusted.rg", VALUE)
    agent.sync()
    got = {e["event_type"]: e for e in find(agent, resolved_path=str(missing), pid=os.getpid())}
    assert sorted(got) == ["file_chmod", "file_chown", "file_setxattr", "file_truncate"], got
    for ev in got.values():
        assert (ev["ret"], ev["error"], ev["filename"], ev["fd"]) == (
            -errno.ENOENT, "ENOENT", str(missing), None), ev
        assert detection(ev) == PLAIN
    assert [got["file_chmod"][k] for k in ("syscall", "mode")] == ["chmod", 0o640]
    assert [got["file_chown"][k] for k in ("syscall", "owner_uid", "owner_gid")] == [
        "chown", 1234, None]
    assert [got["file_truncate"][k] for k in ("syscall", "length")] == ["truncate", 7]
    assert [got["file_setxattr"][k] for k in ("syscall", "xattr_name", "mode", "length")] == [
        "setxattr", "trusted.rg", None, None]


def test_failed_mkdir_and_mknod_in_a_watched_dir_are_reported(agent: AgentProc,
                                                              base: Path) -> None:
    """A name that exists already (EEXIST), and one in a missing directory (ENOENT)."""
    d = base / "watched" / "failed-new"
    os.makedirs(d / "dir")  # (reported too, but succeeds: no EEXIST or ENOENT of its own)
    new_file(d / "file")
    with pytest.raises(FileExistsError):
        os.mkdir(d / "dir", 0o755)
    with pytest.raises(FileExistsError):
        os.mkfifo(d / "file", 0o644)
    with pytest.raises(FileNotFoundError):
        os.mkdir(d / "missing" / "dir", 0o700)
    with pytest.raises(FileNotFoundError):
        os.mknod(d / "missing" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    assert not (d / "missing").exists()
    agent.sync()
    evs = [e for e in agent.matching(lambda e: e["event_type"] in ATTR_TYPES
                                     and e["pid"] == os.getpid())
           if e["resolved_path"].startswith(f"{d}/") and e["ret"] < 0]
    assert [(e["event_type"], e["syscall"], e["resolved_path"], e["filename"], e["ret"],
             e["error"], e["mode"], e["device"]) for e in evs] == [
        ("file_mkdir", "mkdir", f"{d}/dir", f"{d}/dir", -errno.EEXIST, "EEXIST", 0o755, None),
        ("file_mknod", "mknodat", f"{d}/file", f"{d}/file", -errno.EEXIST, "EEXIST",
         0o010644, None),
        ("file_mkdir", "mkdir", f"{d}/missing/dir", f"{d}/missing/dir", -errno.ENOENT,
         "ENOENT", 0o700, None),
        ("file_mknod", "mknodat", f"{d}/missing/null", f"{d}/missing/null", -errno.ENOENT,
         "ENOENT", 0o020666, "1:3"),
    ]
    for ev in evs:
        assert (ev["fd"], ev["inode"], ev["xattr_name"]) == (None, None, None), ev
        assert detection(ev) == PLAIN


def test_calls_denied_to_an_unprivileged_user_are_reported(agent: AgentProc,
                                                           base: Path) -> None:
    """nobody may not chown or chmod root's file (EPERM), nor open it to truncate, nor set its
    user.* attributes, nor make a directory or FIFO beside it (EACCES)."""
    f = new_file(base / "watched" / "denied" / "root-file")
    script = (
        "import os, sys\n"
        "p = sys.argv[1]\n"
        "for call in (lambda: os.chown(p, 65534, 65534), lambda: os.chmod(p, 0o666),\n"
        "             lambda: os.truncate(p, 0), lambda: os.setxattr(p, 'user.rg', b'x'),\n"
        "             lambda: os.mkdir(p + '-dir', 0o755), lambda: os.mkfifo(p + '-fifo')):\n"
        "    try:\n"
        "        call()\n"
        "    except PermissionError:\n"
        "        continue\n"
        "    sys.exit('allowed')\n"
    )
    p = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         os.path.realpath(sys.executable), "-I", "-S", "-c", script, str(f)],
        capture_output=True, text=True, cwd="/",
    )
    assert p.returncode == 0, p.stderr
    st = f.stat()
    assert (st.st_uid, st.st_mode & 0o7777, st.st_size) == (0, 0o644, len("hello\n"))
    assert os.listxattr(f) == [] and os.listdir(f.parent) == [f.name]
    agent.sync()
    got = {e["event_type"]: e for e in find(agent, resolved_path=str(f), uid=NOBODY)}
    got |= {e["event_type"]: e for p in (f"{f}-dir", f"{f}-fifo")
            for e in find(agent, resolved_path=p, uid=NOBODY)}
    assert sorted(got) == ["file_chmod", "file_chown", "file_mkdir", "file_mknod",
                           "file_setxattr", "file_truncate"], got
    assert [(e["syscall"], e["error"], e["ret"], e["gid"]) for _, e in sorted(got.items())] == [
        ("chmod", "EPERM", -errno.EPERM, NOBODY), ("chown", "EPERM", -errno.EPERM, NOBODY),
        ("mkdir", "EACCES", -errno.EACCES, NOBODY), ("mknodat", "EACCES", -errno.EACCES, NOBODY),
        ("setxattr", "EACCES", -errno.EACCES, NOBODY),
        ("truncate", "EACCES", -errno.EACCES, NOBODY)]
    assert (got["file_chown"]["owner_uid"], got["file_chown"]["owner_gid"]) == (NOBODY, NOBODY)
    assert got["file_chmod"]["mode"] == 0o666 and got["file_truncate"]["length"] == 0
    assert (got["file_mkdir"]["mode"], got["file_mknod"]["mode"]) == (0o755, 0o010666)
    assert got["file_setxattr"]["xattr_name"] == "user.rg"
    assert all(detection(e) == PLAIN for e in got.values())
    # the old values: chmod's and chown's path hooks run before their permission check
    # (notify_change's), truncate's after its own (inode_permission): never reached
    hooks = agent.wait_for(lambda e: e["event_type"] == "agent_start")["hooks_attached"]
    assert got["file_chmod"]["old_mode"] == (0o644 if "security_path_chmod" in hooks else None)
    assert (got["file_chown"]["old_owner_uid"], got["file_chown"]["old_owner_gid"]) == (
        (0, 0) if "security_path_chown" in hooks else (None, None))
    assert got["file_truncate"]["old_length"] is None


# --- detections: cron.d and the setuid/setgid bits ----------------------------------------


def chmod_job(path: str) -> None:
    os.chmod(path, 0o600)


def chown_job(path: str) -> None:
    os.chown(path, 0, 0)  # root's already: the call is what counts


def truncate_job(path: str) -> None:
    os.truncate(path, 0)


def setxattr_job(path: str) -> None:
    os.setxattr(path, "trusted.rg", VALUE)


@pytest.mark.parametrize("act, kind", [
    pytest.param(chmod_job, "file_chmod", id="chmod"),
    pytest.param(chown_job, "file_chown", id="chown"),
    pytest.param(truncate_job, "file_truncate", id="truncate"),
    pytest.param(setxattr_job, "file_setxattr", id="setxattr"),
])
def test_cron_d_file_is_detected_and_raises_file_cron_001(
        agent: AgentProc, cron_job: str, act: Callable[[str], None], kind: str) -> None:
    act(cron_job)
    agent.sync()
    ev = the(agent, event_type=kind, resolved_path=cron_job, pid=os.getpid())
    assert (ev["ret"], ev["error"], ev["filename"]) == (0, None, cron_job)
    assert detection(ev) == (True, *CRON)
    assert_cron_rule_alert(agent, ev)


def test_a_new_directory_above_a_watched_path_is_reported(agent: AgentProc, base: Path) -> None:
    """base/later/keys is watched and base/later does not exist yet: making it (what a new
    ~/.ssh is to ~/.ssh/authorized_keys) is reported; a new directory beside it is not."""
    above, beside = base / "later", base / "unwatched" / "later"
    os.mkdir(above, 0o700)
    os.mkdir(beside, 0o700)
    agent.sync()
    ev = the(agent, event_type="file_mkdir", resolved_path=str(above), pid=os.getpid())
    assert (ev["syscall"], ev["ret"], ev["mode"]) == ("mkdir", 0, 0o700)
    assert not find(agent, resolved_path=str(beside))


def test_cron_d_mkdir_is_detected_and_raises_file_cron_001(agent: AgentProc,
                                                            cron_dir: str) -> None:
    with umask(UMASK):
        os.mkdir(cron_dir, 0o755)
    agent.sync()
    ev = the(agent, event_type="file_mkdir", resolved_path=cron_dir, pid=os.getpid())
    assert (ev["syscall"], ev["ret"], ev["error"], ev["filename"], ev["mode"]) == (
        "mkdir", 0, None, cron_dir, 0o755)
    assert detection(ev) == (True, *CRON)
    assert_cron_rule_alert(agent, ev)


def test_failed_mkdir_in_cron_d_is_reported_without_detection(agent: AgentProc,
                                                              cron_job: str) -> None:
    with pytest.raises(FileExistsError):
        os.mkdir(cron_job)
    agent.sync()
    ev = the(agent, event_type="file_mkdir", resolved_path=cron_job, pid=os.getpid())
    assert (ev["ret"], ev["error"]) == (-errno.EEXIST, "EEXIST")
    assert detection(ev) == PLAIN  # only what succeeds changes cron's configuration
    assert rule_alerts(agent, ev) == []


@pytest.mark.parametrize("where, mode, by_fd", [
    pytest.param("unwatched", 0o4755, False, id="setuid"),
    pytest.param("unwatched", 0o2755, False, id="setgid"),
    pytest.param("unwatched", 0o6750, True, id="both-by-fchmod"),
    pytest.param("watched/excluded", 0o4700, False, id="setuid-excluded"),
])
def test_setting_a_setid_bit_is_reported_anywhere(agent: AgentProc, base: Path,
                                                  request: pytest.FixtureRequest, where: str,
                                                  mode: int, by_fd: bool) -> None:
    f = new_file(base / where / request.node.callspec.id / "tool", 0o755)
    if by_fd:
        with opened(f) as fd:
            os.fchmod(fd, mode)
    else:
        os.chmod(f, mode)
    assert f.stat().st_mode & 0o7777 == mode
    agent.sync()
    ev = the(agent, event_type="file_chmod", resolved_path=str(f), pid=os.getpid())
    assert (ev["syscall"], ev["mode"], ev["ret"], ev["error"]) == (
        "fchmod" if by_fd else "chmod", mode, 0, None)
    assert (ev["filename"], ev["fd"] is None) == ((None, False) if by_fd else (str(f), True))
    assert detection(ev) == (True, *SETID)
    # creating it there was not reported: only the setid chmod passes
    assert [e["event_type"] for e in about(agent, [f])] == ["file_chmod"]


def test_failed_setuid_chmod_is_reported_anywhere_without_detection(agent: AgentProc,
                                                                    base: Path) -> None:
    missing = base / "unwatched" / "setuid-missing" / "tool"
    with pytest.raises(FileNotFoundError):
        os.chmod(missing, 0o4755)
    agent.sync()
    ev = the(agent, event_type="file_chmod", resolved_path=str(missing), pid=os.getpid())
    assert (ev["mode"], ev["ret"], ev["error"]) == (0o4755, -errno.ENOENT, "ENOENT")
    assert detection(ev) == PLAIN  # only a successful chmod sets the bit


@pytest.mark.parametrize("where, by_fd", [
    pytest.param("unwatched", False, id="unwatched"),
    pytest.param("unwatched", True, id="unwatched-by-fsetxattr"),
    pytest.param("watched/excluded", False, id="excluded"),
])
def test_setting_file_capabilities_is_reported_anywhere(agent: AgentProc, base: Path,
                                                        request: pytest.FixtureRequest,
                                                        where: str, by_fd: bool) -> None:
    """cap_net_raw+ep on a copy of /bin/true, where nothing else is reported."""
    tool = base / where / request.node.callspec.id / "true"
    tool.parent.mkdir()
    shutil.copy(TRUE, tool)
    try:
        if by_fd:
            with opened(tool) as fd:
                os.setxattr(fd, CAPS, CAP_NET_RAW_EP)
        else:
            os.setxattr(tool, CAPS, CAP_NET_RAW_EP)
    except OSError as e:
        if e.errno == errno.EOPNOTSUPP:
            pytest.skip(f"{tool.parent} ({e}): its filesystem has no file capabilities")
        raise
    if shutil.which("getcap"):  # the test's own premise: a valid capability set
        out = subprocess.run(["getcap", str(tool)], capture_output=True, text=True, check=True)
        assert out.stdout.split()[-1] in ("cap_net_raw=ep", "cap_net_raw+ep"), out
    else:
        assert os.getxattr(tool, CAPS) == CAP_NET_RAW_EP
    agent.sync()
    ev = the(agent, event_type="file_setxattr", resolved_path=str(tool), pid=os.getpid())
    assert (ev["syscall"], ev["xattr_name"], ev["ret"], ev["error"]) == (
        "fsetxattr" if by_fd else "setxattr", CAPS, 0, None)
    assert (ev["filename"], ev["fd"] is None, ev["inode"]) == (
        (None, False, tool.stat().st_ino) if by_fd else (str(tool), True, None))
    assert (ev["mode"], ev["length"], ev["device"]) == (None, None, None)
    assert detection(ev) == (True, *FILE_CAPS)
    assert rule_alerts(agent, ev) == []
    # copying it there was not reported: only the capabilities pass
    assert [e["event_type"] for e in about(agent, [tool])] == ["file_setxattr"]


def test_failed_file_capabilities_setxattr_is_reported_anywhere_without_detection(
        agent: AgentProc, base: Path) -> None:
    """On a missing file (ENOENT) and with a value that is no capability set (EINVAL)."""
    d = base / "unwatched" / "caps-failed"
    missing, tool = d / "missing", d / "true"
    d.mkdir()
    shutil.copy(TRUE, tool)
    with pytest.raises(FileNotFoundError):
        os.setxattr(missing, CAPS, CAP_NET_RAW_EP)
    with pytest.raises(OSError) as e:
        os.setxattr(tool, CAPS, b"\x00")
    if e.value.errno == errno.EOPNOTSUPP:
        pytest.skip(f"{d} ({e.value}): its filesystem has no file capabilities")
    assert e.value.errno == errno.EINVAL
    agent.sync()
    evs = [find(agent, event_type="file_setxattr", resolved_path=str(p), pid=os.getpid())
           for p in (missing, tool)]
    assert [[(e["xattr_name"], e["ret"], e["error"]) for e in es] for es in evs] == [
        [(CAPS, -errno.ENOENT, "ENOENT")], [(CAPS, -errno.EINVAL, "EINVAL")]]
    assert [detection(es[0]) for es in evs] == [PLAIN, PLAIN]  # nothing was set


# --- near misses ---------------------------------------------------------------------------


def test_near_misses_produce_nothing(agent: AgentProc, base: Path) -> None:
    un = base / "unwatched" / "near"
    ex = base / "watched" / "excluded" / "near"
    un_mode, un_sticky, un_owner, un_fd = (new_file(un / n, 0o600) for n in (
        "mode", "sticky", "owner", "fd"))
    ex_trunc, ex_mode, ex_owner = (new_file(ex / n) for n in ("trunc", "mode", "owner"))
    os.chmod(un_mode, 0o644)  # no setid bit: a write-like change, and unwatched
    os.chmod(un_sticky, 0o1755)  # the sticky bit is not a setid bit
    os.chown(un_owner, 1234, 5678)
    with opened(un_fd) as fd:
        os.fchmod(fd, 0o644)
        os.fchown(fd, 1234, 5678)
    os.truncate(ex_trunc, 0)
    os.chmod(ex_mode, 0o600)
    os.chown(ex_owner, 1234, 5678)
    with opened(ex_trunc, os.O_WRONLY) as fd:
        os.ftruncate(fd, 1)
    # new names, and attributes other than file capabilities
    un_dir, un_setid_dir, un_fifo, un_null = (un / n for n in ("dir", "setid-dir", "fifo",
                                                                "null"))
    ex_dir, ex_fifo = ex / "dir", ex / "fifo"
    os.mkdir(un_dir)
    os.mkdir(un_setid_dir, 0o6755)  # setid bits asked of mkdir: not a chmod
    os.mkfifo(un_fifo)
    os.mknod(un_null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.setxattr(un_mode, "trusted.rg", VALUE)
    os.setxattr(un_sticky, "trusted.capability", VALUE)  # not security.capability
    with opened(un_fd) as fd:
        os.setxattr(fd, "trusted.rg", VALUE)
    os.mkdir(ex_dir)
    os.mkfifo(ex_fifo)
    os.setxattr(ex_mode, "trusted.rg", VALUE)
    with opened(ex_owner) as fd:
        os.setxattr(fd, "trusted.rg", VALUE)
    assert un_sticky.stat().st_mode & 0o7777 == 0o1755 and ex_trunc.stat().st_size == 1
    assert stat.S_ISFIFO(ex_fifo.stat().st_mode) and os.getxattr(un_fd, "trusted.rg") == VALUE
    agent.sync()
    assert about(agent, [un_mode, un_sticky, un_owner, un_fd, ex_trunc, ex_mode, ex_owner,
                         un_dir, un_setid_dir, un_fifo, un_null, ex_dir, ex_fifo]) == []


# --- calls on an fd: the open file's real path ---------------------------------------------


def test_fd_calls_report_the_real_path_of_a_file_opened_through_a_symlink(
        agent: AgentProc, base: Path) -> None:
    real = new_file(base / "watched" / "via-fd" / "target")
    link = base / "unwatched" / "link-to-target"
    link.symlink_to(real)
    with opened(link) as fd:  # O_RDONLY: not an event (no read_paths)
        os.fchmod(fd, 0o600)
        os.fchown(fd, 1234, 5678)
        with pytest.raises(OSError) as e:  # not open for writing
            os.ftruncate(fd, 0)
        assert e.value.errno == errno.EINVAL
    with opened(link, os.O_WRONLY) as wfd:
        os.ftruncate(wfd, 2)
    st = real.stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid, st.st_size) == (0o600, 1234, 5678, 2)
    agent.sync()
    evs = [e for e in find(agent, resolved_path=str(real), pid=os.getpid())
           if e["event_type"] not in ("file_open", "file_write")]
    assert [(e["event_type"], e["syscall"], e["fd"], e["ret"], e["error"]) for e in evs] == [
        ("file_chmod", "fchmod", fd, 0, None), ("file_chown", "fchown", fd, 0, None),
        ("file_truncate", "ftruncate", fd, -errno.EINVAL, "EINVAL"),
        ("file_truncate", "ftruncate", wfd, 0, None)]
    for ev in evs:
        assert (ev["filename"], ev["inode"]) == (None, st.st_ino), ev
    assert [(e["mode"], e["owner_uid"], e["owner_gid"], e["length"]) for e in evs] == [
        (0o600, None, None, None), (None, 1234, 5678, None), (None, None, None, 0),
        (None, None, None, 2)]
    # the O_WRONLY open is a file_open of the real path (its filename is the link, as passed);
    # nothing is reported under the link's own path
    assert [e["event_type"] for e in about(agent, [link])] == ["file_open"]
    assert agent.matching(lambda e: e.get("resolved_path") == str(link)) == []


# --- calls on a name through a symlink ---------------------------------------------------------


def test_calls_through_a_symlink_report_the_real_file_where_the_kernel_resolves_them(
        agent: AgentProc, base: Path) -> None:
    """A name through a symlinked directory, or the /proc/self/fd magic link of an O_PATH fd
    (whose open is not reported): with the resolver (fentry on security_path_chmod, _chown,
    _truncate) the file the kernel changed is reported; without it the names are joined as
    given, the documented limit, and only the setuid chmod (reported anywhere) shows."""
    start = agent.wait_for(lambda e: e["event_type"] == "agent_start")
    hooks = {"security_path_chmod", "security_path_chown", "security_path_truncate"}
    real = new_file(base / "watched" / "via-link" / "job")
    via = base / "unwatched" / "to-via-link"
    via.symlink_to(real.parent)
    os.chmod(via / "job", 0o640)
    os.chown(via / "job", 4321, -1)
    os.truncate(via / "job", 1)
    fd = os.open(real, os.O_PATH)
    magic = f"/proc/self/fd/{fd}"
    try:
        os.chmod(magic, 0o4750)
    finally:
        os.close(fd)
    agent.sync()
    evs = [(e["event_type"], e["resolved_path"], e["filename"], e["ret"])
           for e in agent.matching(lambda e: e["event_type"] in ATTR_TYPES
                                   and e["pid"] == os.getpid()
                                   and e["filename"] in (f"{via}/job", magic))]
    # per hook: 5.10 has fentry but cannot trace security_path_chown (it takes ids by value)
    assert hooks <= {*start["hooks_attached"], *start["hooks_missing"]}
    want = [(kind, str(real), f"{via}/job", 0)
            for hook, kind in (("security_path_chmod", "file_chmod"),
                               ("security_path_chown", "file_chown"),
                               ("security_path_truncate", "file_truncate"))
            # else joined as given: an unwatched path, filtered, never a guess
            if hook in start["hooks_attached"]]
    # the setuid bit shows either way, without the resolver by the name given
    resolved_chmod = "security_path_chmod" in start["hooks_attached"]
    want.append(("file_chmod", str(real) if resolved_chmod else magic, magic, 0))
    assert evs == want


def test_mkdir_and_mknod_through_a_symlink_report_the_new_name_where_the_kernel_resolves_it(
        agent: AgentProc, base: Path) -> None:
    """A new name in a watched directory reached through a symlink in an unwatched one: with the
    resolver (fentry on security_path_mkdir, _mknod) the real new path is reported; without it
    the name is joined as given, the documented limit: unwatched, so nothing is reported."""
    start = agent.wait_for(lambda e: e["event_type"] == "agent_start")
    real = base / "watched" / "new-via-link"
    real.mkdir()
    via = base / "unwatched" / "to-new-via-link"
    via.symlink_to(real)
    os.mkdir(via / "dir", 0o700)
    os.mkfifo(via / "fifo", 0o600)
    assert (real / "dir").is_dir() and stat.S_ISFIFO((real / "fifo").stat().st_mode)
    agent.sync()
    evs = [(e["event_type"], e["resolved_path"], e["filename"], e["ret"])
           for e in agent.matching(lambda e: e["event_type"] in ATTR_TYPES
                                   and e["pid"] == os.getpid()
                                   and e["filename"] in (f"{via}/dir", f"{via}/fifo"))]
    want = []
    for hook, kind, name in (("security_path_mkdir", "file_mkdir", "dir"),
                             ("security_path_mknod", "file_mknod", "fifo")):
        if hook in start["hooks_attached"]:
            want.append((kind, str(real / name), f"{via}/{name}", 0))
        else:  # joined as given: an unwatched path, filtered, never a guess
            assert hook in start["hooks_missing"]
    assert evs == want


# --- timestamps -----------------------------------------------------------------------------


def test_timestamps_set_are_reported_and_set_back_on_persistence_is_timestomping(
        agent: AgentProc, base: Path, cron_job: str) -> None:
    """touch, touch -d and futimens on a watched file; on a cron.d file, a time set back is
    timestomping (T1070.006), the current time only the location's detection."""
    f = new_file(base / "watched" / "times" / "f")
    un = new_file(base / "unwatched" / "times-f")
    os.utime(f)  # utimensat(AT_FDCWD, f, NULL, 0): now
    os.utime(f, ns=(5, 2_000_000_123))
    fd = os.open(f, os.O_RDONLY)
    try:
        os.utime(fd, ns=(5, 3_000_000_000))  # futimens: utimensat(fd, NULL, times, 0)
    finally:
        os.close(fd)
    os.utime(cron_job, ns=(10**18, 10**18))  # back to 2001
    os.utime(cron_job)
    os.utime(un, ns=(1, 1))  # unwatched: nothing
    assert os.stat(f).st_mtime_ns == 3_000_000_000
    agent.sync()
    evs = find(agent, event_type="file_utimes", pid=os.getpid())
    assert [(e["syscall"], e["resolved_path"], e["filename"], e["fd"], e["mtime_ns"], e["ret"])
            for e in evs] == [
        ("utimensat", str(f), str(f), None, None, 0),
        ("utimensat", str(f), str(f), None, 2_000_000_123, 0),
        ("utimensat", str(f), None, fd, 3_000_000_000, 0),
        ("utimensat", cron_job, cron_job, None, 10**18, 0),
        ("utimensat", cron_job, cron_job, None, None, 0),
    ]
    assert [detection(e) for e in evs] == [
        (False, None, None), (False, None, None), (False, None, None),
        (True, "timestamps_set_back", ["T1070.006", "T1053.003"]),
        (True, "cron_modified", ["T1053.003"]),
    ]
    for ev in evs[3:]:
        assert_cron_rule_alert(agent, ev)
