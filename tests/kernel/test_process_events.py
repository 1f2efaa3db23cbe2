"""Process lifecycle telemetry end to end on the real kernel."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from agent_proc import AgentProc, agent_fixture, scratch_fixture, write_config

pytestmark = pytest.mark.kernel

TRUE = os.path.realpath("/bin/true")
SH = os.path.realpath("/bin/sh")
PYTHON = os.path.realpath(sys.executable)


def run(args: list[str], **kw: object) -> subprocess.Popen:
    """Like subprocess.run, but the result keeps the child's pid."""
    p = subprocess.Popen(args, **kw)
    p.wait()
    return p


base = scratch_fixture("rg-proc-", ("watched", "markers"))


agent = agent_fixture(
    extra="[process]\ncollect_args = true\ncollect_cwd = true\nmax_args = 4\n"
          "report_exec_enoent = true\n",
)


def starts(agent: AgentProc, **match: object) -> list[dict]:
    return agent.matching(lambda e: e["event_type"] == "process_start"
                          and all(e.get(k) == v for k, v in match.items()))


def test_true_from_a_shell(agent: AgentProc) -> None:
    sh = subprocess.Popen(["sh", "-c", "/bin/true; echo done"], stdout=subprocess.DEVNULL)
    sh.wait()
    agent.sync()
    (ev,) = starts(agent, ppid=sh.pid, exe_path=TRUE)
    assert ev["source"] == "execve" and ev["filename"] == "/bin/true" and ev["comm"] == "true"
    assert ev["parent_comm"] == "sh" and ev["parent_exe_path"] == SH
    assert ev["argv"] == ["/bin/true"] and ev["argv_truncated"] is False
    assert ev["cwd"] == os.getcwd() and ev["uid"] == ev["euid"] == 0
    assert isinstance(ev["cgroup_id"], int) and ev["filename_truncated"] is False
    (sh_start,) = starts(agent, pid=sh.pid)
    assert sh_start["ppid"] == os.getpid() and sh_start["exe_path"] == SH


def test_relative_exec_gives_absolute_exe_path(agent: AgentProc, base: Path) -> None:
    prog = base / "prog"
    shutil.copy(TRUE, prog)
    p = run(["./prog", "a", "b", "c", "d", "e"], cwd=base)
    assert p.returncode == 0
    agent.sync()
    (ev,) = starts(agent, filename="./prog")
    assert ev["exe_path"] == str(prog) and ev["cwd"] == str(base)
    assert ev["argv"] == ["./prog", "a", "b", "c"] and ev["argv_truncated"] is True


def test_execveat_empty_path_gives_absolute_exe_path(agent: AgentProc) -> None:
    code = ("import os; fd = os.open('/bin/true', os.O_RDONLY); "
            "os.execve(fd, ['fexec-true'], {})")  # fexecve: execveat(fd, "", AT_EMPTY_PATH)
    p = run([sys.executable, "-c", code])
    assert p.returncode == 0
    agent.sync()
    (ev,) = starts(agent, pid=p.pid, exe_path=TRUE)
    assert ev["source"] == "execveat" and ev["argv"] == ["fexec-true"]


def test_failed_exec(agent: AgentProc) -> None:
    with pytest.raises(FileNotFoundError):
        run(["/nonexistent/rg-no-such-program"])
    agent.sync()
    ev = agent.wait_for(lambda e: e["event_type"] == "process_exec_failed"
                        and e["filename"] == "/nonexistent/rg-no-such-program")
    assert ev["error"] == "ENOENT" and ev["ret"] == -2 and ev["source"] == "execve"
    assert not starts(agent, filename="/nonexistent/rg-no-such-program")


def test_thread_file_events_and_child_of_thread(agent: AgentProc, base: Path) -> None:
    path = base / "watched" / "from-thread"
    out: dict[str, int] = {}

    def work() -> None:
        out["tid"] = threading.get_native_id()
        path.write_text("x")
        out["child"] = run([TRUE]).returncode

    t = threading.Thread(target=work)
    t.start()
    t.join()
    agent.sync()
    ev = agent.wait_for(lambda e: e.get("resolved_path") == str(path)
                        and e["event_type"] == "file_open")
    assert ev["tid"] == out["tid"] != ev["pid"] == os.getpid()
    assert ev["exe_path"] == PYTHON and ev["ppid"] == os.getppid()
    child = [e for e in starts(agent, exe_path=TRUE) if e["ppid"] == os.getpid()]
    assert child, "the child of a thread has the process (TGID) as parent"
    forks = agent.matching(lambda e: e["event_type"] == "process_fork"
                           and e["child_pid"] == child[-1]["pid"])
    assert forks and forks[0]["parent_pid"] == os.getpid() and forks[0]["thread"] is False
    # the thread itself was not reported as a process
    assert not agent.matching(lambda e: e["event_type"] == "process_fork"
                              and e["child_tid"] == out["tid"])


def test_exit_code_and_signal(agent: AgentProc) -> None:
    three = run(["sh", "-c", "exit 3"])
    assert three.returncode == 3
    sleeper = subprocess.Popen(["sleep", "60"])
    sleeper.send_signal(signal.SIGKILL)
    sleeper.wait()
    agent.sync()
    (e3,) = agent.matching(lambda e: e["event_type"] == "process_exit"
                           and e["pid"] == three.pid)
    assert e3["exit_code"] == 3 and e3["signal"] is None and e3["exe_path"] == SH
    assert e3["lifetime_ns"] > 0 and e3["ppid"] == os.getpid()
    (e9,) = agent.matching(lambda e: e["event_type"] == "process_exit"
                           and e["pid"] == sleeper.pid)
    assert e9["signal"] == 9 and e9["exit_code"] is None and e9["comm"] == "sleep"


def test_shell_spawned_by_nginx_named_parent(agent: AgentProc, base: Path) -> None:
    nginx = base / "nginx"
    shutil.copy(SH, nginx)
    p = run([str(nginx), "-c", "sh -c 'true; true'; exit 0"])
    assert p.returncode == 0
    agent.sync()
    (ng,) = starts(agent, pid=p.pid)
    assert ng["comm"] == "nginx" and ng["exe_path"] == str(nginx)
    (sh,) = starts(agent, ppid=p.pid, comm="sh")
    assert sh["parent_comm"] == "nginx" and sh["parent_exe_path"] == str(nginx)


def test_defaults_no_argv_no_cwd_no_path_search_failures(base: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", watch=[str(base / "markers")])
    with AgentProc(cfg, marker_dir=base / "markers") as a:
        p = run([TRUE, "secret-arg"])
        with pytest.raises(FileNotFoundError):
            run(["/nonexistent/rg-default-enoent"])
        denied = base / "not-executable"
        denied.write_text("#!/bin/sh\n")
        with pytest.raises(PermissionError):
            run([str(denied)])
        a.sync()
        (ev,) = a.matching(lambda e: e["event_type"] == "process_start" and e["pid"] == p.pid)
        failed = a.matching(lambda e: e["event_type"] == "process_exec_failed"
                            and e["filename"] in (str(denied), "/nonexistent/rg-default-enoent"))
    assert ev["argv"] is None and ev["argv_truncated"] is None and ev["cwd"] is None
    assert ev["exe_path"] == TRUE
    # ENOENT (a $PATH search, mostly) is not reported by default; other errors are
    assert [e["error"] for e in failed] == ["EACCES"]


def test_process_hooks_select_events(base: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", watch=[str(base / "markers")],
                       extra='[process]\nhooks = ["exit"]\n')
    with AgentProc(cfg, marker_dir=base / "markers") as a:
        p = run([TRUE])
        a.sync()
        kinds = {e["event_type"] for e in a.matching(lambda e: e.get("pid") == p.pid
                                                      or e.get("child_pid") == p.pid)}
    assert kinds == {"process_exit"}
