"""The CLI on the real kernel: bad input stops before any BPF is loaded; the agent needs no
tracefs, refuses to run without privileges, and detaches everything when it stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from agent_proc import ROOT, AgentProc, held_program_ids, wait_no_orphans, write_config

from randguard.kernel import libbpf

pytestmark = pytest.mark.kernel

ENV = dict(os.environ, PYTHONPATH=str(ROOT / "agent"))


def randguard(*args: str, user: int | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "randguard", *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=60)


BAD_CONFIGS = {
    "unknown key": ("[file]\nwatch_pathz = ['/etc']\n", "file.watch_pathz", "unknown key"),
    "unknown section": ("[fiel]\nenabled = true\n", "fiel", "unknown key"),
    "wrong type": ("[ebpf]\nbuffer_size = 'big'\n", "ebpf.buffer_size", "expected int"),
    "bad value": ("[ebpf]\nbuffer_size = 1000\n", "ebpf.buffer_size", "power of two"),
    "bad hook": ("[file]\nhooks = ['openat', 'opne']\n", "file.hooks[1]", "unknown hook"),
    "relative path": ("[file]\nwatch_paths = ['etc']\n", "file.watch_paths[0]", "absolute"),
    "invalid toml": ("[file\n", "-", "invalid TOML"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_before_loading_anything(case: str, tmp_path: Path) -> None:
    text, key, reason = BAD_CONFIGS[case]
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    for args in (("run", "--config", str(cfg)), ("check-config", str(cfg))):
        r = randguard(*args)
        assert r.returncode == 2, r.stderr
        line = r.stderr.strip()
        assert "\n" not in line and r.stdout == ""
        assert line.startswith(f"randguard: {cfg}: {key}: "), line
        assert reason in line, line
    assert wait_no_orphans() == set()


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    r = randguard("run", "--config", str(tmp_path / "nope.toml"))
    assert r.returncode == 2 and f"{tmp_path / 'nope.toml'}: -: " in r.stderr


def test_env_config_is_used(tmp_path: Path) -> None:
    cfg = tmp_path / "env.toml"
    cfg.write_text("[ebpf]\nbuffer_size = 3\n")
    env = dict(ENV, RANDGUARD_CONFIG=str(cfg))
    r = subprocess.run([sys.executable, "-m", "randguard", "check-config"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and str(cfg) in r.stderr


def test_unprivileged_user_gets_one_line_naming_the_capabilities() -> None:
    r = randguard("run", user=65534)
    assert r.returncode == 1 and r.stdout == ""
    lines = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(lines) == 1 and "CAP_BPF" in lines[0] and "CAP_PERFMON" in lines[0], r.stderr
    assert wait_no_orphans() == set()


def test_agent_runs_without_tracefs_and_detaches_on_sigterm(tmp_path: Path) -> None:
    """Every hook is a BTF tracepoint (tp_btf), attached by BTF id: tracefs may be unmounted."""
    tracing = "/sys/kernel/tracing"
    subprocess.run(["umount", tracing], capture_output=True)
    assert not os.path.exists(f"{tracing}/events"), "tracefs could not be unmounted"
    cfg = write_config(tmp_path / "c.toml", watch=[str(tmp_path)])
    try:
        a = AgentProc(cfg)  # ready: its self-test saw a file event and a process event
        assert not os.path.exists(f"{tracing}/events")
    finally:
        libbpf.ensure_tracefs()  # for the tests that attach syscalls/ tracepoints by name
    held = held_program_ids(a.proc.pid)
    # the two dispatchers, the family programs they tail-call, the scheduler hooks
    assert len(held) >= 12
    t0 = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(10) == 0
    assert time.monotonic() - t0 < 2
    assert wait_no_orphans() == set()
    assert not held & wait_no_orphans()


def test_default_config_runs(tmp_path: Path) -> None:
    """`randguard run` with no --config uses the packaged default and reports /etc writes."""
    env = {k: v for k, v in ENV.items() if k != "RANDGUARD_CONFIG"}
    p = subprocess.Popen([sys.executable, "-m", "randguard", "run"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 60
        err = b""
        while b"ready:" not in err and time.monotonic() < deadline:
            err += p.stderr.readline()
        assert b"ready:" in err, err
        target = Path("/etc") / f"rg-default-{os.getpid()}.service"
        target.write_text("x")
        target.unlink()
        time.sleep(0.3)
    finally:
        p.send_signal(signal.SIGINT)
        out, rest = p.communicate(timeout=10)
    assert p.returncode == 0, rest
    assert f'"resolved_path":"{target}"'.encode() in out
