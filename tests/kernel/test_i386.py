"""Syscalls made through the i386 entry (int $0x80) by a 64-bit process, on the real kernel.

Any 64-bit program can make a syscall with int $0x80: the kernel runs the i386 (compat)
syscall, which the native syscall tracepoints do not report, so without care such a program
writes files unseen. build/tests/i386ops makes the same file syscalls and execve through either
entry; each test runs both and compares the events field by field: only `abi` ("i386" or
"x86_64") may tell them apart, and the `syscall` of the calls only i386 has: chown16, lchown16
and fchown16 (16-bit ids) are i386's own chown, lchown and fchown (its chown32, lchown32 and
fchown32 are reported as chown, lchown and fchown), truncate64 and ftruncate64 take the length
in two halves. mkdir, mknod and the setxattr calls have the same numbers' worth of arguments
under both ABIs, and must report the same mode, device and attribute name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import NamedTuple

import pytest
from agent_proc import ROOT, AgentProc, agent_fixture, in_cron_d, scratch_fixture
from conftest import unavailable

pytestmark = pytest.mark.kernel

I386OPS = ROOT / "build" / "tests" / "i386ops"
ABIS = ("x86_64", "i386")
TRUE = os.path.realpath("/bin/true")
CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
AT_EMPTY_PATH = 0x1000
GIB = 1 << 30
CRON = ("cron_modified", ["T1053.003"])

# What must be equal between the native and the i386 event besides event_type (not: pid, tid,
# times, seq, inode and abi).
FILE_FIELDS = ("syscall", "resolved_path", "filename", "old_path", "old_filename", "ret", "error",
               "flags", "access", "created", "fd", "path_truncated", "uid", "gid", "ppid", "comm",
               "exe_path", "alert", "detection_type", "mitre", "mode", "owner_uid", "owner_gid",
               "length", "device", "xattr_name", "mtime_ns")
START_FIELDS = ("source", "filename", "filename_truncated", "exe_path", "comm", "argv",
                "argv_truncated", "cwd", "uid", "euid", "ppid", "parent_comm",
                "parent_exe_path")
FAILED_FIELDS = ("source", "filename", "ret", "error", "comm", "exe_path", "uid", "ppid")
NET_FIELDS = ("syscall", "family", "protocol", "sock_type", "socket_fd", "direction",
              "local_addr", "remote_addr", "remote_port", "ret", "error", "result", "comm",
              "exe_path", "uid", "ppid")


@cache
def ia32_problem() -> str | None:
    """Why int $0x80 cannot be tested here (the kernel has no ia32 emulation), or None."""
    if not I386OPS.exists():
        return f"{I386OPS.relative_to(ROOT)} missing: run make build/tests/i386ops"
    r = subprocess.run([I386OPS, "probe"], capture_output=True, text=True)
    if r.returncode == 2:
        return r.stderr.strip()
    assert r.returncode == 0, f"i386ops probe: exit {r.returncode}: {r.stderr}"
    return None


@pytest.fixture(autouse=True)
def ia32(request: pytest.FixtureRequest) -> None:
    problem = ia32_problem()
    if problem:
        unavailable(request.node, problem)


base = scratch_fixture("rg-i386-", ("watched", "markers"))


# the shipped pack stays on: its paths (/etc/cron.d) are watched and annotated
agent = agent_fixture(
    extra="[process]\ncollect_args = true\ncollect_cwd = true\nreport_exec_enoent = true\n"
          "[events]\nnetwork = true\n[network]\nenabled = true\n",
)


class Run(NamedTuple):
    pid: int
    rc: int
    stderr: str


def i386ops(abi: str, args: list[object], cwd: Path) -> Run:
    """Run one operation through `abi`; its pid is the pid of its events."""
    p = subprocess.Popen([I386OPS, abi, *map(str, args)], cwd=cwd, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    _, err = p.communicate(timeout=30)
    return Run(p.pid, p.returncode, err)


def file_events(agent: AgentProc, run: Run) -> list[dict]:
    return agent.matching(lambda e: e.get("pid") == run.pid
                          and e["event_type"].startswith("file_"))


def same_but_abi(native: list[dict], compat: list[dict], fields: tuple[str, ...]) -> None:
    """The i386 events are the native ones with `abi` "i386" instead of "x86_64"."""
    assert len(compat) == len(native), (
        f"{len(native)} events for the native syscalls, {len(compat)} for the i386 ones: "
        f"native {native}, i386 {compat}")
    for n, c in zip(native, compat, strict=True):
        diff = {f: (n.get(f), c.get(f)) for f in ("event_type", *fields) if n.get(f) != c.get(f)}
        assert not diff, f"the i386 event differs from the native one (native, i386): {diff}"
    assert [e.get("abi") for e in native] == ["x86_64"] * len(native)
    assert [e.get("abi") for e in compat] == ["i386"] * len(compat)


def seen(agent: AgentProc, ev: dict) -> tuple:
    """The event's annotation and the alert records written for it."""
    alerts = agent.matching(lambda a: a["event_type"] == "alert"
                            and a["source_seq"] == ev["seq"])
    assert all(a["path"] == ev["resolved_path"] for a in alerts)
    return (ev["event_type"], ev["ret"] >= 0, ev["alert"], ev["detection_type"], ev["mitre"],
            [(a["rule_id"], a["operation"], a["severity"]) for a in alerts])


# Each case: the operation with its arguments (names relative to the case's directory, the
# working directory of i386ops), the files ("x/": directory) to create first, and the events
# the native run produces.
CASES = [
    pytest.param(["open", "f", CREATE], [], ["file_open"], id="open"),
    pytest.param(["open", "no-dir/f", os.O_WRONLY], [], ["file_open"], id="open-enoent"),
    pytest.param(["open", "f", os.O_WRONLY | os.O_APPEND], ["f"], ["file_open"],
                 id="open-existing"),
    pytest.param(["openat", "f", CREATE], [], ["file_open"], id="openat"),
    pytest.param(["creat", "f"], [], ["file_open"], id="creat"),
    pytest.param(["write", "f", "hello\n"], [], ["file_open", "file_write"], id="write"),
    pytest.param(["rename", "a", "b"], ["a"], ["file_rename"], id="rename"),
    pytest.param(["renameat", "a", "b"], ["a"], ["file_rename"], id="renameat"),
    pytest.param(["unlink", "a"], ["a"], ["file_unlink"], id="unlink"),
    pytest.param(["unlink", "a"], [], ["file_unlink"], id="unlink-enoent"),
    pytest.param(["unlinkat", "a", 0], ["a"], ["file_unlink"], id="unlinkat"),
    pytest.param(["rmdir", "d"], ["d/"], ["file_unlink"], id="rmdir"),
    pytest.param(["link", "a", "b"], ["a"], ["file_link"], id="link"),
    pytest.param(["linkat", "a", "b", 0], ["a"], ["file_link"], id="linkat"),
    pytest.param(["symlink", TRUE, "b"], [], ["file_link"], id="symlink"),
    pytest.param(["symlinkat", TRUE, "b"], [], ["file_link"], id="symlinkat"),
]


@pytest.mark.parametrize("args, files, kinds", CASES)
def test_file_syscall_through_int80_is_reported_like_the_native_one(
        agent: AgentProc, base: Path, request: pytest.FixtureRequest,
        args: list[object], files: list[str], kinds: list[str]) -> None:
    d = base / "watched" / request.node.callspec.id
    runs = {}
    for abi in ABIS:  # one after the other in the same, fresh directory: the same paths
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        for f in files:
            (d / f).mkdir() if f.endswith("/") else (d / f).write_text("x\n")
        runs[abi] = i386ops(abi, args, d)
        agent.sync()
    native, compat = (file_events(agent, runs[abi]) for abi in ABIS)
    assert runs["i386"].rc == runs["x86_64"].rc, runs  # the syscalls did the same
    assert [e["event_type"] for e in native] == kinds, native  # the test's own premise
    same_but_abi(native, compat, FILE_FIELDS)


# chmod, chown, truncate, mkdir, mknod and setxattr: the operation with its arguments, the files
# to create ("x/": a directory, "l->f": a symlink to f), the (event_type, syscall) of the native
# run's events, and the syscall names the i386 run reports instead (native name -> i386 name)
# for the calls only i386 has. An f* call without "at" acts on an fd i386ops opens first
# (O_RDONLY: no event; ftruncate's O_WRONLY open is a file_open); the -fd forms pass such an fd
# as the dirfd, with "" and AT_EMPTY_PATH: a call on that file.
ATTR_CASES = [
    pytest.param(["chmod", "f", 0o640], ["f"], [("file_chmod", "chmod")], {}, id="chmod"),
    pytest.param(["chmod", "no-such", 0o640], [], [("file_chmod", "chmod")], {},
                 id="chmod-enoent"),
    pytest.param(["chmod", "f", 0o2750], ["f"], [("file_chmod", "chmod")], {},
                 id="chmod-setgid"),
    pytest.param(["fchmod", "f", 0o600], ["f"], [("file_chmod", "fchmod")], {}, id="fchmod"),
    pytest.param(["fchmodat", "f", 0o640], ["f"], [("file_chmod", "fchmodat")], {},
                 id="fchmodat"),
    # before Linux 6.6 both fail with ENOSYS, and are reported so
    pytest.param(["fchmodat2", "f", 0o640, 0], ["f"], [("file_chmod", "fchmodat2")], {},
                 id="fchmodat2"),
    pytest.param(["fchmodat2-fd", "f", "", 0o600, AT_EMPTY_PATH], ["f"],
                 [("file_chmod", "fchmodat2")], {}, id="fchmodat2-empty-path"),
    pytest.param(["chown16", "f", 1234, 5678], ["f"], [("file_chown", "chown")],
                 {"chown": "chown16"}, id="chown16"),
    pytest.param(["chown16", "f", -1, 5678], ["f"], [("file_chown", "chown")],
                 {"chown": "chown16"}, id="chown16-keep-uid"),
    pytest.param(["chown32", "f", 100000, 5678], ["f"], [("file_chown", "chown")], {},
                 id="chown32"),
    pytest.param(["chown32", "f", 100000, -1], ["f"], [("file_chown", "chown")], {},
                 id="chown32-keep-gid"),
    pytest.param(["chown32", "no-such", 1234, 5678], [], [("file_chown", "chown")], {},
                 id="chown32-enoent"),
    pytest.param(["lchown16", "f", 1234, 5678], ["f"], [("file_chown", "lchown")],
                 {"lchown": "lchown16"}, id="lchown16"),
    pytest.param(["lchown32", "f", 100000, 5678], ["f"], [("file_chown", "lchown")], {},
                 id="lchown32"),
    pytest.param(["fchown16", "f", 1234, 5678], ["f"], [("file_chown", "fchown")],
                 {"fchown": "fchown16"}, id="fchown16"),
    pytest.param(["fchown32", "f", 100000, 5678], ["f"], [("file_chown", "fchown")], {},
                 id="fchown32"),
    pytest.param(["fchownat", "f", 100000, 5678, 0], ["f"], [("file_chown", "fchownat")], {},
                 id="fchownat"),
    pytest.param(["fchownat-fd", "f", "", 1234, 5678, AT_EMPTY_PATH], ["f"],
                 [("file_chown", "fchownat")], {}, id="fchownat-empty-path"),
    pytest.param(["truncate", "f", 3], ["f"], [("file_truncate", "truncate")], {},
                 id="truncate"),
    pytest.param(["truncate", "no-such", 3], [], [("file_truncate", "truncate")], {},
                 id="truncate-enoent"),
    pytest.param(["truncate64", "f", 5 * GIB + 3], ["f"], [("file_truncate", "truncate")],
                 {"truncate": "truncate64"}, id="truncate64"),
    pytest.param(["ftruncate", "f", 3], ["f"],
                 [("file_open", "open"), ("file_truncate", "ftruncate")], {}, id="ftruncate"),
    pytest.param(["ftruncate64", "f", 5 * GIB + 3], ["f"],
                 [("file_open", "open"), ("file_truncate", "ftruncate")],
                 {"ftruncate": "ftruncate64"}, id="ftruncate64"),
    pytest.param(["mkdir", "new", 0o755], [], [("file_mkdir", "mkdir")], {}, id="mkdir"),
    pytest.param(["mkdir", "new", 0o1777], [], [("file_mkdir", "mkdir")], {},
                 id="mkdir-sticky"),
    pytest.param(["mkdir", "d", 0o700], ["d/"], [("file_mkdir", "mkdir")], {},
                 id="mkdir-eexist"),
    pytest.param(["mkdirat", "new", 0o750], [], [("file_mkdir", "mkdirat")], {}, id="mkdirat"),
    pytest.param(["mknod", "new", stat.S_IFIFO | 0o644, 0], [], [("file_mknod", "mknod")], {},
                 id="mknod-fifo"),
    pytest.param(["mknod", "new", stat.S_IFCHR | 0o600, os.makedev(1, 3)], [],
                 [("file_mknod", "mknod")], {}, id="mknod-char-device"),
    # a major past 8 bits and a minor past 16: dev as the kernel takes it, split
    pytest.param(["mknod", "new", stat.S_IFBLK | 0o640, os.makedev(259, 70000)], [],
                 [("file_mknod", "mknod")], {}, id="mknod-block-device"),
    pytest.param(["mknod", "no-dir/new", stat.S_IFIFO | 0o644, 0], [],
                 [("file_mknod", "mknod")], {}, id="mknod-enoent"),
    pytest.param(["mknodat", "new", stat.S_IFIFO | 0o600, 0], [], [("file_mknod", "mknodat")],
                 {}, id="mknodat-fifo"),
    pytest.param(["mknodat", "new", stat.S_IFCHR | 0o600, os.makedev(1, 5)], [],
                 [("file_mknod", "mknodat")], {}, id="mknodat-char-device"),
    pytest.param(["setxattr", "f", "trusted.rg", "value"], ["f"], [("file_setxattr", "setxattr")],
                 {}, id="setxattr"),
    pytest.param(["setxattr", "no-such", "trusted.rg", "value"], [],
                 [("file_setxattr", "setxattr")], {}, id="setxattr-enoent"),
    pytest.param(["lsetxattr", "f", "trusted.rg", "value"], ["f"],
                 [("file_setxattr", "lsetxattr")], {}, id="lsetxattr"),
    # user.* attributes are not allowed on a symlink: EPERM
    pytest.param(["lsetxattr", "l", "user.rg", "value"], ["f", "l->f"],
                 [("file_setxattr", "lsetxattr")], {}, id="lsetxattr-symlink-eperm"),
    pytest.param(["fsetxattr", "f", "trusted.rg", "value"], ["f"],
                 [("file_setxattr", "fsetxattr")], {}, id="fsetxattr"),
    # atime and mtime both 10**9 s (2001-09-09), as each call's own layout gives them
    pytest.param(["utimensat", "f", 10**9], ["f"], [("file_utimes", "utimensat")], {},
                 id="utimensat"),
    pytest.param(["futimesat", "f", 10**9], ["f"], [("file_utimes", "futimesat")], {},
                 id="futimesat"),
    pytest.param(["utimes", "f", 10**9], ["f"], [("file_utimes", "utimes")], {}, id="utimes"),
    pytest.param(["utime", "f", 10**9], ["f"], [("file_utimes", "utime")], {}, id="utime"),
    pytest.param(["utime", "no-such", 10**9], [], [("file_utimes", "utime")], {},
                 id="utime-enoent"),
]


def attrs(path: Path) -> tuple | None:
    """What the calls change: mode, owner, size, device and extended attributes (of a symlink
    itself), or None."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    xattrs = {n: os.getxattr(path, n, follow_symlinks=False)
              for n in os.listxattr(path, follow_symlinks=False)}
    return st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_rdev, xattrs


def what_is_set(args: list[object]) -> dict:
    """The fields a mkdir, mknod or setxattr event must have for these arguments (the others
    are compared with the native event only)."""
    op = str(args[0])
    if op.startswith("mkdir"):
        return {"mode": int(args[2]) & 0o7777, "device": None, "xattr_name": None}
    if op.startswith("mknod"):
        mode, dev = int(args[2]), int(args[3])
        device = (f"{os.major(dev)}:{os.minor(dev)}"
                  if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else None)
        return {"mode": mode, "device": device, "xattr_name": None}
    if op.endswith("setxattr"):
        return {"mode": None, "device": None, "xattr_name": args[2]}
    if op.startswith(("utime", "futimes")):  # i386ops' fractions: 7 ns or 7 us, none for utime
        frac = {"utimensat": 7, "utime": 0}.get(op, 7000)
        return {"mtime_ns": int(args[2]) * 10**9 + frac}
    return {}


def make(d: Path, files: list[str]) -> None:
    """The files of a case: "x/" a directory, "l->f" a symlink to f, else a regular file."""
    for f in files:
        if f.endswith("/"):
            (d / f).mkdir()
        elif "->" in f:
            link, target = f.split("->")
            (d / link).symlink_to(target)
        else:
            (d / f).write_text("x\n")


@pytest.mark.parametrize("args, files, calls, i386_names", ATTR_CASES)
def test_attribute_syscall_through_int80_is_reported_like_the_native_one(
        agent: AgentProc, base: Path, request: pytest.FixtureRequest, args: list[object],
        files: list[str], calls: list[tuple[str, str]], i386_names: dict[str, str]) -> None:
    d = base / "watched" / request.node.callspec.id
    runs, after = {}, {}
    for abi in ABIS:  # one after the other in the same, fresh directory: the same paths
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        make(d, files)
        runs[abi] = i386ops(abi, args, d)
        after[abi] = attrs(d / str(args[1]))
        agent.sync()
    native, compat = (file_events(agent, runs[abi]) for abi in ABIS)
    assert runs["i386"].rc == runs["x86_64"].rc, runs  # the syscalls did the same
    assert after["i386"] == after["x86_64"], after
    assert [(e["event_type"], e["syscall"]) for e in native] == calls, native  # the premise
    want = what_is_set(args)
    assert {f: native[-1][f] for f in want} == want, native[-1]
    same_but_abi(native, compat, tuple(f for f in FILE_FIELDS if f != "syscall"))
    assert [e["syscall"] for e in compat] == [i386_names.get(c, c) for _, c in calls], compat


def test_chown16_ids_are_16_bits_and_0xffff_leaves_the_id(agent: AgentProc, base: Path) -> None:
    """chown16's ids are old_uid_t, 16 bits: 0xffff is its -1 ("leave it"), reported as null
    like chown's -1."""
    d = base / "watched" / "chown16-0xffff"
    d.mkdir()
    (d / "f").write_text("x\n")
    os.chown(d / "f", 1234, 5678)
    run = i386ops("i386", ["chown16", "f", 0xFFFF, 4321], d)
    agent.sync()
    assert run.rc == 0, run
    assert (os.stat(d / "f").st_uid, os.stat(d / "f").st_gid) == (1234, 4321)
    evs = file_events(agent, run)
    assert [(e["event_type"], e["syscall"], e["abi"], e["ret"]) for e in evs] == [
        ("file_chown", "chown16", "i386", 0)], evs
    assert (evs[0]["owner_uid"], evs[0]["owner_gid"]) == (None, 4321)


def test_execve_through_int80_is_reported_like_the_native_one(agent: AgentProc,
                                                               base: Path) -> None:
    runs = {abi: i386ops(abi, ["execve", "/bin/true", "rg-i386", "x"], base) for abi in ABIS}
    agent.sync()
    assert [r.rc for r in runs.values()] == [0, 0], runs
    starts = {abi: agent.matching(lambda e, r=r: e["event_type"] == "process_start"
                                  and e["pid"] == r.pid and e["exe_path"] == TRUE)
              for abi, r in runs.items()}
    native, compat = starts["x86_64"], starts["i386"]
    assert [(e["source"], e["argv"]) for e in native] == [
        ("execve", ["/bin/true", "rg-i386", "x"])], native
    same_but_abi(native, compat, START_FIELDS)


def test_failed_execve_through_int80_is_reported_like_the_native_one(agent: AgentProc,
                                                                      base: Path) -> None:
    missing = str(base / "no-such-program")
    runs = {abi: i386ops(abi, ["execve", missing], base) for abi in ABIS}
    agent.sync()
    assert [r.rc for r in runs.values()] == [1, 1], runs
    native, compat = (agent.matching(lambda e, r=r: e["event_type"] == "process_exec_failed"
                                     and e["pid"] == r.pid) for r in runs.values())
    assert [(e["filename"], e["error"]) for e in native] == [(missing, "ENOENT")], native
    same_but_abi(native, compat, FAILED_FIELDS)


@contextlib.contextmanager
def cron_names(infix: str = "", suffix: str = "") -> Iterator[dict[str, str]]:
    """A new name in /etc/cron.d for each ABI, removed at the end with what was made there."""
    with contextlib.ExitStack() as stack:
        yield {abi: stack.enter_context(in_cron_d(f"{infix}-{abi}{suffix}")) for abi in ABIS}


def test_cron_job_written_through_int80_is_detected_like_a_shells(agent: AgentProc) -> None:
    """Persistence written by i386 syscalls gets the same annotation and [[rules]] alerts as
    the same file written by `sh -c 'echo ... > /etc/cron.d/x'`."""
    line = "# rg test: no schedule\n"
    with cron_names() as paths:
        sh = subprocess.Popen(["sh", "-c", f"printf '{line}' > {paths['x86_64']}"])
        assert sh.wait(30) == 0
        run = i386ops("i386", ["write", paths["i386"], line], Path("/"))
        assert run.rc == 0, run
        agent.sync()
        assert Path(paths["i386"]).read_text() == line
    got = {abi: agent.matching(lambda e, p=p: e.get("resolved_path") == p
                               and e["event_type"] in ("file_open", "file_write"))
           for abi, p in paths.items()}
    assert [e["pid"] for e in got["x86_64"]] == [sh.pid, sh.pid], got["x86_64"]
    assert [e["pid"] for e in got["i386"]] == [run.pid, run.pid], (
        "no file_open and file_write for the i386 syscalls", got["i386"])
    assert [seen(agent, e) for e in got["x86_64"]] == [
        (kind, True, True, *CRON, [("FILE-CRON-001", kind, "high")])
        for kind in ("file_open", "file_write")]
    assert [seen(agent, e) for e in got["i386"]] == [seen(agent, e) for e in got["x86_64"]]
    assert [e["abi"] for e in got["i386"]] == ["i386", "i386"]
    assert [e["abi"] for e in got["x86_64"]] == ["x86_64", "x86_64"]


def test_cron_job_chmod_chown_truncate_through_int80_are_detected_like_native_ones(
        agent: AgentProc) -> None:
    """The pack and FILE-CRON-001 judge i386's chmod, chown16 and truncate64 of a cron.d file
    as they judge the native chmod, chown and truncate."""
    ops = (["chmod", 0o600], ["chown16", 0, 0], ["truncate64", 0])
    runs: dict[str, list[Run]] = {}
    with cron_names("-attr") as paths:
        for abi, p in paths.items():
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)  # not there before
            try:
                os.write(fd, b"# rg test: no schedule\n")
            finally:
                os.close(fd)
            runs[abi] = [i386ops(abi, [op, p, *args], Path("/")) for op, *args in ops]
        agent.sync()
    assert [r.rc for abi in ABIS for r in runs[abi]] == [0] * 6, runs
    got = {abi: [e for r in runs[abi] for e in file_events(agent, r)] for abi in ABIS}
    for abi, p in paths.items():
        assert [e["resolved_path"] for e in got[abi]] == [p] * 3, got[abi]
    assert [e["syscall"] for e in got["x86_64"]] == ["chmod", "chown", "truncate"]
    assert [e["syscall"] for e in got["i386"]] == ["chmod", "chown16", "truncate64"]
    assert [seen(agent, e) for e in got["x86_64"]] == [
        (kind, True, True, *CRON, [("FILE-CRON-001", kind, "high")])
        for kind in ("file_chmod", "file_chown", "file_truncate")]
    assert [seen(agent, e) for e in got["i386"]] == [seen(agent, e) for e in got["x86_64"]]
    assert [(e["mode"], e["owner_uid"], e["owner_gid"], e["length"]) for e in got["i386"]] == [
        (e["mode"], e["owner_uid"], e["owner_gid"], e["length"]) for e in got["x86_64"]] == [
        (0o600, None, None, None), (None, 0, 0, None), (None, None, None, 0)]


def test_cron_d_mkdir_and_setxattr_through_int80_are_detected_like_native_ones(
        agent: AgentProc) -> None:
    """The pack and FILE-CRON-001 judge i386's mkdir and setxattr of a cron.d directory as they
    judge the native ones (cron runs no directory)."""
    ops = (["mkdir", 0o755], ["setxattr", "trusted.rg", "value"])
    runs: dict[str, list[Run]] = {}
    with cron_names("-new", ".d") as paths:
        for abi, p in paths.items():
            runs[abi] = [i386ops(abi, [op, p, *args], Path("/")) for op, *args in ops]
        agent.sync()
        assert [os.getxattr(p, "trusted.rg") for p in paths.values()] == [b"value", b"value"]
    assert [r.rc for abi in ABIS for r in runs[abi]] == [0] * 4, runs
    got = {abi: [e for r in runs[abi] for e in file_events(agent, r)] for abi in ABIS}
    for abi, p in paths.items():
        assert [(e["event_type"], e["syscall"], e["resolved_path"], e["abi"])
                for e in got[abi]] == [("file_mkdir", "mkdir", p, abi),
                                       ("file_setxattr", "setxattr", p, abi)], got[abi]
    assert [seen(agent, e) for e in got["i386"]] == [seen(agent, e) for e in got["x86_64"]]
    assert [(e["mode"], e["xattr_name"]) for e in got["i386"]] == [
        (e["mode"], e["xattr_name"]) for e in got["x86_64"]] == [
        (0o755, None), (None, "trusted.rg")]
    want = [(kind, True, True, *CRON, [("FILE-CRON-001", kind, "high")])
            for kind in ("file_mkdir", "file_setxattr")]
    assert [seen(agent, e) for e in got["x86_64"]] == want


def test_connect_through_int80_and_socketcall_is_reported_like_the_native_one(
        agent: AgentProc, base: Path) -> None:
    """i386 programs reach the network either by the direct socket syscalls or through
    socketcall(2), which names the call and points at its arguments: both are a connect."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        runs = {(abi, how): i386ops(abi, [how, port], base) for abi, how in (
            ("x86_64", "connect"), ("i386", "connect"), ("i386", "socketcall-connect"))}
        agent.sync()
    assert [r.rc for r in runs.values()] == [0, 0, 0], runs
    native, direct, via_socketcall = (
        agent.matching(lambda e, r=r: e["event_type"] == "network_connect"
                       and e["pid"] == r.pid) for r in runs.values())
    assert [(e["remote_port"], e["syscall"], e["result"]) for e in native] == [
        (port, "connect", "success")], native
    same_but_abi(native, direct, NET_FIELDS)
    same_but_abi(native, via_socketcall, NET_FIELDS)
