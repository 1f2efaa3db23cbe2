"""Syscalls made through the i386 entry (int $0x80) by a 64-bit process, on the real kernel.

Any 64-bit program can make a syscall with int $0x80: the kernel runs the i386 (compat)
syscall, which the native syscall tracepoints do not report, so without care such a program
writes files unseen. build/tests/i386ops makes the same file syscalls and execve through either
entry; each test runs both and compares the events field by field: only `abi` ("i386" or
"x86_64") may tell them apart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import NamedTuple

import pytest
from agent_proc import ROOT, AgentProc, write_config
from conftest import unavailable

pytestmark = pytest.mark.kernel

I386OPS = ROOT / "build" / "tests" / "i386ops"
ABIS = ("x86_64", "i386")
TRUE = os.path.realpath("/bin/true")
CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC

# What must be equal between the native and the i386 event besides event_type (not: pid, tid,
# times, seq, inode and abi).
FILE_FIELDS = ("syscall", "resolved_path", "filename", "old_path", "old_filename", "ret", "error",
               "flags", "access", "created", "fd", "path_truncated", "uid", "gid", "ppid", "comm",
               "exe_path", "alert", "detection_type", "mitre")
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


@pytest.fixture(scope="module")
def base() -> Path:
    d = Path(tempfile.mkdtemp(prefix="rg-i386-", dir="/var/tmp"))
    for sub in ("watched", "markers"):
        (d / sub).mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def agent(base: Path, tmp_path_factory: pytest.TempPathFactory) -> AgentProc:
    # the shipped pack stays on: its paths (/etc/cron.d) are watched and annotated
    cfg = write_config(
        tmp_path_factory.mktemp("cfg") / "config.toml",
        watch=[str(base / "watched"), str(base / "markers")],
        extra="[process]\ncollect_args = true\ncollect_cwd = true\nreport_exec_enoent = true\n"
              "[events]\nnetwork = true\n[network]\nenabled = true\n",
    )
    a = AgentProc(cfg, marker_dir=base / "markers")
    yield a
    assert a.stop() == 0
    assert not a.bad_lines, "stdout must be pure NDJSON"


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


def test_cron_job_written_through_int80_is_detected_like_a_shells(agent: AgentProc) -> None:
    """Persistence written by i386 syscalls gets the same annotation and [[rules]] alerts as
    the same file written by `sh -c 'echo ... > /etc/cron.d/x'`."""
    created_dir = not os.path.isdir("/etc/cron.d")
    os.makedirs("/etc/cron.d", exist_ok=True)
    paths = {abi: f"/etc/cron.d/rg-test-{os.getpid()}-{abi}" for abi in ABIS}
    line = "# rg test: no schedule\n"
    try:
        for p in paths.values():
            assert not os.path.lexists(p), f"{p} exists already; not touching it"
        sh = subprocess.Popen(["sh", "-c", f"printf '{line}' > {paths['x86_64']}"])
        assert sh.wait(30) == 0
        run = i386ops("i386", ["write", paths["i386"], line], Path("/"))
        assert run.rc == 0, run
        agent.sync()
        assert Path(paths["i386"]).read_text() == line
    finally:
        for p in paths.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
        if created_dir:
            os.rmdir("/etc/cron.d")
    got = {abi: agent.matching(lambda e, p=p: e.get("resolved_path") == p
                               and e["event_type"] in ("file_open", "file_write"))
           for abi, p in paths.items()}
    assert [e["pid"] for e in got["x86_64"]] == [sh.pid, sh.pid], got["x86_64"]
    assert [e["pid"] for e in got["i386"]] == [run.pid, run.pid], (
        "no file_open and file_write for the i386 syscalls", got["i386"])

    def seen(ev: dict) -> tuple:
        """The event's annotation and the alert records written for it."""
        alerts = agent.matching(lambda a: a["event_type"] == "alert"
                                and a["source_seq"] == ev["seq"])
        assert all(a["path"] == ev["resolved_path"] for a in alerts)
        return (ev["event_type"], ev["ret"] >= 0, ev["alert"], ev["detection_type"], ev["mitre"],
                [(a["rule_id"], a["operation"], a["severity"]) for a in alerts])

    assert [seen(e) for e in got["x86_64"]] == [
        (kind, True, True, "cron_modified", ["T1053.003"], [("FILE-CRON-001", kind, "high")])
        for kind in ("file_open", "file_write")]
    assert [seen(e) for e in got["i386"]] == [seen(e) for e in got["x86_64"]]
    assert [e["abi"] for e in got["i386"]] == ["i386", "i386"]
    assert [e["abi"] for e in got["x86_64"]] == ["x86_64", "x86_64"]


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
