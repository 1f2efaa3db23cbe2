"""Runs the real agent (`python -m randguard run`) as a child process for kernel tests.

Events are read from its stdout by a thread; a test acts, then drops a marker file and waits for
the marker's event: the ring buffer is ordered, so by then every earlier event has arrived.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

Event = dict


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def write_config(path: Path, watch: list[str], exclude: list[str] = (), read: list[str] = (),
                 patterns: list[str] = (), extra: str = "", builtin: bool = True,
                 inventory: bool = False) -> Path:
    """A config watching exactly these paths; `builtin=False` also drops the shipped detection
    pack and rules, whose paths are always watched (for tests that count every event).
    `inventory`: the persistence inventory runs, with a state file of this config's own (a
    fresh baseline); off otherwise (listing and hashing the pack's files at every start costs
    about a second of emulated CPU per agent on the qemu kernels), unless `extra` sets it."""
    path.write_text(
        "[agent]\nlog_level = \"info\"\n"
        + ("" if builtin else "[detections]\nbuiltin = false\nbuiltin_rules = false\n")
        + "[file]\n"
        f"watch_paths = {toml_list(list(watch))}\n"
        f"watch_patterns = {toml_list(list(patterns))}\n"
        f"exclude_paths = {toml_list(list(exclude))}\n"
        f"read_paths = {toml_list(list(read))}\n" + extra
        + ("" if "[inventory]" in extra
           else f"[inventory]\nstate_file = \"{path.with_suffix('.state')}\"\n" if inventory
           else "[inventory]\nenabled = false\n")
    )
    return path


def write_default_config(path: Path, markers: Path) -> Path:
    """The default [file] lists, the shipped pack and rules, and a watched markers directory."""
    from randguard.core.config import Config

    d = Config().file
    return write_config(path, watch=[*d.watch_paths, str(markers)], exclude=d.exclude_paths,
                        read=d.read_paths, patterns=d.watch_patterns, inventory=True)


class AgentProc:
    """A running agent; `stop()` sends SIGINT and returns its exit code."""

    def __init__(self, config: Path, stdout: int | None = None, marker_dir: Path | None = None):
        self.marker_dir = marker_dir
        self.events: list[Event] = []
        self.bad_lines: list[bytes] = []
        self.stderr_lines: list[str] = []
        self._cond = threading.Condition()
        env = dict(os.environ, PYTHONPATH=str(ROOT / "agent"))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "randguard", "run", "--config", str(config)],
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self._threads = [threading.Thread(target=self._read_err, daemon=True)]
        if stdout is None:
            self._threads.append(threading.Thread(target=self._read_out, daemon=True))
        for t in self._threads:
            t.start()
        self._wait_ready()

    def _read_out(self) -> None:
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                self.bad_lines.append(line)
                continue
            with self._cond:
                self.events.append(ev)
                self._cond.notify_all()

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            with self._cond:
                self.stderr_lines.append(line.decode(errors="replace"))
                self._cond.notify_all()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any("ready:" in ln for ln in self.stderr_lines):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self._cond.release()
                    try:
                        if self.proc.poll() is None:  # slow, not dead: do not leave it running
                            self.proc.kill()
                        self.proc.wait(5)
                        for t in self._threads:
                            t.join(2)
                    finally:
                        self._cond.acquire()
                    raise RuntimeError("agent did not start:\n" + "".join(self.stderr_lines))
                self._cond.wait(0.2)

    def wait_for(self, pred: Callable[[Event], bool], timeout: float = 10) -> Event:
        """The first event matching pred, waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events:
                    if pred(ev):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(
                        f"no matching event within {timeout}s; {len(self.events)} events seen; "
                        "stderr:\n" + "".join(self.stderr_lines[-20:])
                    )
                self._cond.wait(min(left, 0.2))

    def wait_for_log(self, text: str, timeout: float = 10) -> str:
        """The first stderr line containing `text`, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.stderr_lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no log line with {text!r}:\n"
                                         + "".join(self.stderr_lines[-20:]))
                self._cond.wait(min(left, 0.2))

    def sync(self) -> None:
        """Wait until every event caused before this call has been read."""
        assert self.marker_dir is not None
        marker = self.marker_dir / f"marker-{uuid.uuid4().hex}"
        marker.write_bytes(b"")
        self.wait_for(lambda e: e.get("resolved_path") == str(marker))
        marker.unlink()

    def matching(self, pred: Callable[[Event], bool]) -> list[Event]:
        with self._cond:
            return [e for e in self.events if pred(e)]

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(timeout)
        for t in self._threads:
            t.join(5)
        return rc

    def skipped_runs(self) -> int:
        """After `stop()`: runs of the agent's programs the kernel skipped, from its final
        health record (7.2 skips a program preempted on a CPU for the other tasks there)."""
        (h,) = self.matching(lambda e: e["event_type"] == "health" and e["final"])
        return sum(h["kernel_skipped_runs"].values())

    def __enter__(self) -> AgentProc:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()


def find(agent: AgentProc, **match: object) -> list[dict]:
    """The events whose fields have these values."""
    return agent.matching(lambda e: all(e.get(k) == v for k, v in match.items()))


def the(agent: AgentProc, **match: object) -> dict:
    """The one event whose fields have these values."""
    evs = find(agent, **match)
    assert len(evs) == 1, (match, evs)
    return evs[0]


@contextlib.contextmanager
def running(config: Path, marker_dir: Path) -> Iterator[AgentProc]:
    """An agent for a module's tests: it must stop cleanly and have written NDJSON only."""
    a = AgentProc(config, marker_dir=marker_dir)
    try:
        yield a
    finally:
        assert a.stop() == 0
    assert not a.bad_lines, "stdout must be pure NDJSON"


@contextlib.contextmanager
def in_cron_d(suffix: str = "") -> Iterator[str]:
    """A new name in /etc/cron.d (made if missing): whatever is made there is removed at the
    end, and so is the directory if it was made here."""
    made_dir = not os.path.isdir("/etc/cron.d")
    os.makedirs("/etc/cron.d", exist_ok=True)
    path = f"/etc/cron.d/rg-test-{uuid.uuid4().hex}{suffix}"
    try:
        yield path
    finally:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        if made_dir:
            with contextlib.suppress(OSError):
                os.rmdir("/etc/cron.d")


def rg_program_ids() -> set[int]:
    """IDs of the loaded BPF programs that belong to randguard (names start with rg_)."""
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, check=True)
    return {p["id"] for p in json.loads(out.stdout) if p.get("name", "").startswith("rg_")}


def held_program_ids(pid: int | str) -> set[int]:
    """Programs a process holds, as program or link fds (from /proc/PID/fdinfo)."""
    ids = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fdinfo")
    except OSError:
        return ids
    for fd in fds:
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            continue
    return ids


def orphan_rg_programs() -> set[int]:
    """randguard programs that no live process holds: what a crashed or half-started agent
    would leave behind. (Other agents running at the same time hold theirs.)"""
    held = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            held |= held_program_ids(pid)
    return rg_program_ids() - held


def wait_no_orphans(timeout: float = 3.0) -> set[int]:
    """Orphaned randguard programs that remain after `timeout` (the kernel frees a detached
    program after an RCU grace period, so one may linger for a moment)."""
    deadline = time.monotonic() + timeout
    while (orphans := orphan_rg_programs()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return orphans


def fd_map_id(fd: int) -> int:
    """The kernel's id of the map behind one of this process's fds."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("map_id:"):
                return int(line.split()[1])
    raise ValueError(f"fd {fd} is not a BPF map")


def scratch_dir(prefix: str, subs: Sequence[str] = ()) -> Iterator[Path]:
    """A fresh directory in /var/tmp (a disk file system, where a host's watched paths are),
    open to other users (tests drop privileges), with these subdirectories, removed afterwards:
    what a module's `base` fixture yields from."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    d.chmod(0o755)
    for sub in subs:
        (d / sub).mkdir()
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def scratch_fixture(prefix: str, subs: Sequence[str] = ()) -> Callable[[], Iterator[Path]]:
    """A module-scoped fixture of one scratch_dir: `base = scratch_fixture("rg-x-", ...)`."""

    @pytest.fixture(scope="module")
    def base() -> Iterator[Path]:
        yield from scratch_dir(prefix, subs)

    return base


def agent_fixture(**config: object) -> Callable[..., Iterator[AgentProc]]:
    """A module-scoped `agent` fixture on write_config(**config), by default watching the
    module's `base`/watched and `base`/markers (where its markers go); the agent is stopped
    with status 0 afterwards, having written nothing but NDJSON."""

    @pytest.fixture(scope="module")
    def agent(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProc]:
        watch = config.get("watch", [str(base / "watched"), str(base / "markers")])
        cfg = write_config(tmp_path_factory.mktemp("cfg") / "config.toml",
                           **{**config, "watch": watch})
        a = AgentProc(cfg, marker_dir=base / "markers")
        yield a
        assert a.stop() == 0
        assert not a.bad_lines, "stdout must be pure NDJSON"

    return agent
