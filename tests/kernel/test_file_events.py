"""File telemetry end to end on the real kernel: the agent runs, the test acts, events arrive.

One agent serves the module (loading takes seconds); each test works in its own directory under
a watched base and synchronises on a marker file before asserting what did or did not arrive.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from agent_proc import AgentProc, write_config

from randguard.core.paths import decode_path

pytestmark = pytest.mark.kernel

N_PREFIXES = 64


@pytest.fixture(scope="module")
def base() -> Path:
    # /var/tmp, not /tmp: the test must not depend on /tmp's own exclusion, and an unprivileged
    # user must be able to reach it (for EACCES)
    d = Path(tempfile.mkdtemp(prefix="rg-test-", dir="/var/tmp"))
    d.chmod(0o755)
    for sub in ("watched", "excluded", "unwatched", "markers"):
        (d / sub).mkdir()
        (d / sub).chmod(0o755)
    for i in range(N_PREFIXES):
        (d / f"p{i:02d}").mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def agent(base: Path, tmp_path_factory: pytest.TempPathFactory) -> AgentProc:
    cfg = write_config(
        tmp_path_factory.mktemp("cfg") / "config.toml",
        watch=["/etc", str(base / "watched"), str(base / "markers")]
        + [str(base / f"p{i:02d}") for i in range(N_PREFIXES)],
        exclude=[str(base / "excluded")],
        read=[str(base / "watched" / "secret")],
        patterns=["*.service"],
    )
    a = AgentProc(cfg, marker_dir=base / "markers")
    yield a
    assert a.stop() == 0
    assert not a.bad_lines, "stdout must be pure NDJSON"


def events_for(agent: AgentProc, path: Path | str, kind: str | None = None) -> list[dict]:
    return agent.matching(
        lambda e: e.get("resolved_path") == str(path) and (kind is None or e["event_type"] == kind)
    )


def sh(cmd: str, cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", cmd], cwd=cwd, check=True)


def test_post_demo_create_write_unlink(agent: AgentProc) -> None:
    path = "/etc/systemd/system/rand-guard-demo.service"
    os.makedirs("/etc/systemd/system", exist_ok=True)
    sh(f"printf '# rand-guard persistence demo\\n' > {path}")
    rm = subprocess.run(["rm", "-f", path], check=True)
    assert rm.returncode == 0
    agent.sync()
    opened = agent.wait_for(lambda e: e["event_type"] == "file_open"
                            and e.get("resolved_path") == path)
    written = agent.wait_for(lambda e: e["event_type"] == "file_write"
                             and e.get("resolved_path") == path)
    unlinked = agent.wait_for(lambda e: e["event_type"] == "file_unlink"
                              and e.get("resolved_path") == path)
    assert opened["created"] is True and opened["access"] == "write"
    assert opened["ret"] >= 0 and opened["error"] is None
    assert written["ret"] == len("# rand-guard persistence demo\n") and written["error"] is None
    assert unlinked["ret"] == 0 and unlinked["error"] is None
    for ev in (opened, written):
        assert ev["comm"] == "sh" and ev["exe_path"] == os.path.realpath("/bin/sh")
        assert ev["ppid"] == os.getpid()
        assert ev["uid"] == 0 and ev["pid"] > 0 and ev["tid"] == ev["pid"]
    assert opened["pid"] == written["pid"]
    assert unlinked["comm"] == "rm" and unlinked["exe_path"] == os.path.realpath("/bin/rm")
    assert unlinked["ppid"] == os.getpid()


def test_relative_name_in_cron_dir(agent: AgentProc) -> None:
    created_dir = not os.path.isdir("/etc/cron.d")
    os.makedirs("/etc/cron.d", exist_ok=True)
    job = f"rg-test-job-{os.getpid()}"
    try:
        sh(f"echo x > {job}", cwd="/etc/cron.d")
        agent.sync()
        ev = agent.wait_for(lambda e: e["event_type"] == "file_open"
                            and e.get("resolved_path") == f"/etc/cron.d/{job}")
        assert ev["filename"] == job and ev["created"] is True
    finally:
        os.unlink(f"/etc/cron.d/{job}")
        if created_dir:
            os.rmdir("/etc/cron.d")


def test_dirfd_relative_open_rename_unlink(agent: AgentProc, base: Path) -> None:
    d = base / "watched" / "dirfd"
    d.mkdir()
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = os.open("a.conf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=dfd)
        os.close(fd)
        os.rename("a.conf", "b.conf", src_dir_fd=dfd, dst_dir_fd=dfd)
        os.unlink("b.conf", dir_fd=dfd)
    finally:
        os.close(dfd)
    agent.sync()
    op = events_for(agent, d / "a.conf", "file_open")
    assert op and op[0]["syscall"] == "openat" and op[0]["filename"] == "a.conf"
    rn = events_for(agent, d / "b.conf", "file_rename")
    assert rn and rn[0]["old_path"] == str(d / "a.conf") and rn[0]["ret"] == 0
    assert rn[0]["filename"] == "b.conf" and rn[0]["old_filename"] == "a.conf"
    ul = events_for(agent, d / "b.conf", "file_unlink")
    assert ul and ul[0]["syscall"] == "unlinkat" and ul[0]["ret"] == 0


def test_dotdot_and_double_slash_forms(agent: AgentProc, base: Path) -> None:
    d = base / "watched" / "dots"
    (d / "sub").mkdir(parents=True)
    weird = f"{base}//watched/./dots/sub/../sub//f.txt"
    os.close(os.open(weird, os.O_WRONLY | os.O_CREAT, 0o644))  # pathlib would tidy the name
    missing = f"{base}/watched/dots/sub/..//nope/../missing.txt"
    with pytest.raises(FileNotFoundError):
        os.open(missing, os.O_WRONLY)
    agent.sync()
    ev = agent.wait_for(lambda e: e["event_type"] == "file_open"
                        and e.get("resolved_path") == str(d / "sub" / "f.txt"))
    assert ev["filename"] == weird
    failed = events_for(agent, d / "missing.txt", "file_open")
    assert failed and failed[0]["error"] == "ENOENT" and failed[0]["ret"] == -errno.ENOENT
    assert failed[0]["filename"] == missing


def test_failed_open_enoent(agent: AgentProc, base: Path) -> None:
    path = base / "watched" / "no-such-dir" / "f"
    with pytest.raises(FileNotFoundError):
        os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    agent.sync()
    ev = events_for(agent, path, "file_open")
    assert ev and ev[0]["error"] == "ENOENT" and ev[0]["ret"] == -errno.ENOENT
    assert ev[0]["created"] is False and ev[0]["fd"] is None


def test_denied_open_eacces_as_unprivileged_user(agent: AgentProc, base: Path) -> None:
    path = base / "watched" / "root-only"
    path.write_text("secret")
    path.chmod(0o600)
    r = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         "sh", "-c", f"echo x >> {path}"],
        capture_output=True,
    )
    assert r.returncode != 0
    agent.sync()
    ev = agent.wait_for(lambda e: e.get("resolved_path") == str(path) and e["uid"] == 65534)
    assert ev["event_type"] == "file_open" and ev["error"] == "EACCES"
    assert ev["ret"] == -errno.EACCES and ev["gid"] == 65534


def test_rename_from_excluded_into_watched(agent: AgentProc, base: Path) -> None:
    src = base / "excluded" / "payload.service"
    dst = base / "watched" / "payload.service"
    src.write_text("[Unit]\n")
    os.rename(src, dst)
    agent.sync()
    ev = agent.wait_for(lambda e: e["event_type"] == "file_rename"
                        and e.get("resolved_path") == str(dst))
    assert ev["old_path"] == str(src) and ev["syscall"] in ("rename", "renameat", "renameat2")
    # creating it inside the excluded directory produced nothing, pattern or not
    assert not agent.matching(lambda e: e.get("resolved_path") == str(src))


def test_symlink_and_hard_link_into_watched_dir(agent: AgentProc, base: Path) -> None:
    target = base / "unwatched" / "tool"
    target.write_text("#!/bin/sh\n")
    sym = base / "watched" / "sym-tool"
    hard = base / "watched" / "hard-tool"
    os.symlink(target, sym)
    os.link(target, hard)
    agent.sync()
    s = agent.wait_for(lambda e: e["event_type"] == "file_link"
                       and e.get("resolved_path") == str(sym))
    assert s["syscall"] in ("symlink", "symlinkat") and s["old_path"] == str(target)
    h = agent.wait_for(lambda e: e["event_type"] == "file_link"
                       and e.get("resolved_path") == str(hard))
    assert h["syscall"] in ("link", "linkat") and h["old_path"] == str(target) and h["ret"] == 0


def test_rename_links_and_unlinks_through_a_symlinked_directory(agent: AgentProc,
                                                                base: Path) -> None:
    """A name through a symlink to a watched directory (any user can make one): with the
    resolver (fentry on security_path_*) the kernel's real target is reported; without it
    the agent said at start that it cannot follow such names, and it does not guess."""
    start = agent.wait_for(lambda e: e["event_type"] == "agent_start")
    # the hooks of these calls (chmod and the rest are test_attr_events.py's)
    resolver = {"security_path_rename", "security_path_link", "security_path_symlink",
                "security_path_unlink", "security_path_rmdir"}
    via = base / "unwatched" / "to-watched"
    via.symlink_to(base / "watched")
    staged = base / "unwatched" / "staged"
    staged.write_text("x\n")
    src = base / "unwatched" / "src"
    src.write_text("y\n")
    subprocess.run(["mv", str(staged), f"{via}/moved"], check=True)
    os.link(src, f"{via}/hard")
    os.symlink("/bin/true", f"{via}/soft")
    (base / "watched" / "gone").mkdir()
    (base / "watched" / "gone-too").mkdir()
    os.unlink(f"{via}/hard")
    os.rmdir(f"{via}/gone")
    with pytest.raises(IsADirectoryError):  # a failed unlink names its real victim too
        os.unlink(f"{via}/gone-too")
    agent.sync()
    real = {n: str(base / "watched" / n) for n in ("moved", "hard", "soft", "gone", "gone-too")}
    if resolver <= set(start["hooks_attached"]):
        mv = agent.wait_for(lambda e: e["event_type"] == "file_rename"
                            and e["resolved_path"] == real["moved"])
        assert mv["filename"] == f"{via}/moved" and mv["old_path"] == str(staged)
        assert mv["ret"] == 0 and mv["path_truncated"] is False
        hard = agent.wait_for(lambda e: e["event_type"] == "file_link"
                              and e["resolved_path"] == real["hard"])
        assert hard["syscall"] in ("link", "linkat") and hard["old_path"] == str(src)
        soft = agent.wait_for(lambda e: e["event_type"] == "file_link"
                              and e["resolved_path"] == real["soft"])
        assert soft["syscall"] in ("symlink", "symlinkat") and soft["old_path"] == "/bin/true"
        for name, syscall, ret in (("hard", "unlink", 0), ("gone", "rmdir", 0),
                                   ("gone-too", "unlink", -errno.EISDIR)):
            rm = agent.wait_for(lambda e, n=name: e["event_type"] == "file_unlink"
                                and e["resolved_path"] == real[n])
            assert rm["syscall"] in (syscall, "unlinkat") and rm["ret"] == ret
            assert rm["filename"] == f"{via}/{name}" and rm["path_truncated"] is False
    else:
        assert resolver <= set(start["hooks_missing"])
        # joined as given: an unwatched path, filtered (the documented limit), never a guess
        # (the test's own mkdirs of the real directories are file_mkdir events, not these)
        assert not agent.matching(lambda e: e.get("resolved_path") in real.values()
                                  and e["event_type"] != "file_mkdir")


def test_ten_thousand_writes_make_one_event(agent: AgentProc, base: Path) -> None:
    path = base / "watched" / "busy.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for _ in range(10_000):
            os.write(fd, b"x")
    finally:
        os.close(fd)
    agent.sync()
    writes = events_for(agent, path, "file_write")
    assert len(writes) == 1
    assert writes[0]["pid"] == os.getpid() and writes[0]["ret"] == 1 and writes[0]["fd"] == fd


def test_fallocate_is_a_write(agent: AgentProc, base: Path) -> None:
    """Content changed without write(2): a range punched out of a watched file."""
    path = base / "watched" / "punched.log"
    path.write_bytes(b"x" * 8192)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long)
    fd = os.open(path, os.O_WRONLY)
    try:
        punch_hole, keep_size = 0x02, 0x01
        assert libc.fallocate(fd, punch_hole | keep_size, 0, 4096) == 0, ctypes.get_errno()
    finally:
        os.close(fd)
    assert path.read_bytes() == b"\0" * 4096 + b"x" * 4096
    agent.sync()
    (w,) = [e for e in events_for(agent, path, "file_write") if e["syscall"] == "fallocate"]
    assert (w["fd"], w["ret"], w["pid"]) == (fd, 0, os.getpid())


class FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * 128)]


def test_open_by_handle_is_an_open_of_the_real_file(agent: AgentProc, base: Path) -> None:
    """name_to_handle_at + open_by_handle_at opens a file without a path: the event has the
    path the kernel opened (no name was given)."""
    path = base / "watched" / "by-handle"
    path.write_text("x\n")
    libc = ctypes.CDLL(None, use_errno=True)
    fh, mount_id = FileHandle(handle_bytes=128), ctypes.c_int()
    if libc.name_to_handle_at(-100, str(path).encode(), ctypes.byref(fh),
                              ctypes.byref(mount_id), 0) != 0:
        err = ctypes.get_errno()
        assert err == errno.EOPNOTSUPP, os.strerror(err)
        pytest.skip(f"{path}'s file system gives no file handles (EOPNOTSUPP)")
    mount_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = libc.open_by_handle_at(mount_fd, ctypes.byref(fh), os.O_WRONLY)
        assert fd >= 0, os.strerror(ctypes.get_errno())
        os.close(fd)
    finally:
        os.close(mount_fd)
    agent.sync()
    (op,) = [e for e in events_for(agent, path, "file_open") if e["pid"] == os.getpid()
             and e["syscall"] == "open_by_handle_at"]
    assert (op["ret"], op["fd"], op["filename"], op["access"]) == (fd, fd, None, "write")


MS_BIND = 4096


def test_bind_mount_over_a_watched_file_and_its_umount(agent: AgentProc, base: Path) -> None:
    """A bind mount changes what a watched path shows without a write (what cron or sshd would
    then read): reported on the mount point, with the source as written; so is its umount. The
    same over an unwatched path is not."""
    target, evil = base / "watched" / "mnt-target", base / "unwatched" / "evil"
    quiet = base / "unwatched" / "quiet-target"
    for f, text in ((target, "real\n"), (evil, "evil\n"), (quiet, "q\n")):
        f.write_text(text)
    for t in (target, quiet):
        subprocess.run(["mount", "--bind", str(evil), str(t)], check=True)
        try:
            assert t.read_text() == "evil\n"
        finally:
            subprocess.run(["umount", str(t)], check=True)
    agent.sync()
    (m,) = events_for(agent, target, "file_mount")
    assert (m["syscall"], m["old_path"], m["filename"], m["ret"]) == ("mount", str(evil),
                                                                      str(target), 0)
    assert m["flags"] & MS_BIND
    (u,) = events_for(agent, target, "file_umount")
    assert (u["syscall"], u["filename"], u["ret"], u["flags"]) == ("umount2", str(target), 0, 0)
    assert not agent.matching(lambda e: e.get("resolved_path") == str(quiet))


def test_new_mount_api_move_mount_over_a_watched_directory(agent: AgentProc, base: Path) -> None:
    """open_tree(OPEN_TREE_CLONE) + move_mount(MOVE_MOUNT_F_EMPTY_PATH): a detached copy of a
    directory put over a watched one (the new mount API's way to a bind mount)."""
    libc = ctypes.CDLL(None, use_errno=True)
    src, target = base / "unwatched" / "tree", base / "watched" / "tree-target"
    src.mkdir()
    target.mkdir()
    (src / "job").write_text("evil\n")
    open_tree_clone, cloexec, f_empty_path = 1, 0o2000000, 0x04
    fd = libc.syscall(428, -100, str(src).encode(), open_tree_clone | cloexec)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    try:
        rc = libc.syscall(429, fd, b"", -100, str(target).encode(), f_empty_path)
        assert rc == 0, os.strerror(ctypes.get_errno())
    finally:
        os.close(fd)
    try:
        assert (target / "job").read_text() == "evil\n"
    finally:
        subprocess.run(["umount", str(target)], check=True)
    agent.sync()
    (m,) = events_for(agent, target, "file_mount")
    assert (m["syscall"], m["filename"], m["ret"], m["flags"]) == ("move_mount", str(target), 0,
                                                                   f_empty_path)
    assert len(events_for(agent, target, "file_umount")) == 1


def test_new_mount_api_fsmount_of_a_new_file_system_over_a_watched_directory(
        agent: AgentProc, base: Path) -> None:
    """fsopen("tmpfs") + fsconfig(FSCONFIG_CMD_CREATE) + fsmount + move_mount: a new, empty file
    system put over a watched directory (hiding what is in it) without mount(2). Only the
    move_mount that attaches it touches a path: it is the event."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    target = base / "watched" / "fsmount-target"
    target.mkdir()
    (target / "job").write_text("real\n")
    nr_fsopen, nr_fsconfig, nr_fsmount, nr_move_mount = 430, 431, 432, 429
    cloexec, cmd_create, f_empty_path = 1, 6, 0x04  # FSOPEN_/FSMOUNT_CLOEXEC, FSCONFIG_CMD_CREATE
    fs = libc.syscall(nr_fsopen, b"tmpfs", cloexec)
    assert fs >= 0, os.strerror(ctypes.get_errno())
    try:
        rc = libc.syscall(nr_fsconfig, fs, cmd_create, None, None, 0)
        assert rc == 0, os.strerror(ctypes.get_errno())
        mnt = libc.syscall(nr_fsmount, fs, cloexec, 0)
        assert mnt >= 0, os.strerror(ctypes.get_errno())
    finally:
        os.close(fs)
    try:
        rc = libc.syscall(nr_move_mount, mnt, b"", -100, str(target).encode(), f_empty_path)
        assert rc == 0, os.strerror(ctypes.get_errno())
    finally:
        os.close(mnt)
    try:
        assert list(target.iterdir()) == []  # the job is hidden
    finally:
        subprocess.run(["umount", str(target)], check=True)
    assert (target / "job").read_text() == "real\n"
    agent.sync()
    (m,) = events_for(agent, target, "file_mount")
    assert (m["syscall"], m["filename"], m["ret"], m["flags"], m["pid"]) == (
        "move_mount", str(target), 0, f_empty_path, os.getpid())
    assert [u["ret"] for u in events_for(agent, target, "file_umount")] == [0]


def test_a_mount_above_a_watched_directory_is_reported(agent: AgentProc, base: Path) -> None:
    """A tmpfs over a directory above watched ones hides them all at once (mount -t tmpfs over
    /etc hides /etc/cron.d): reported like a mount on them, and so is its umount; the same
    inside an unwatched directory is not."""
    quiet = base / "unwatched" / "quiet-dir"
    quiet.mkdir()
    for t in (base, quiet):
        subprocess.run(["mount", "-t", "tmpfs", "rg-test", str(t)], check=True)
        try:
            assert not (t / "watched").exists()
        finally:
            subprocess.run(["umount", str(t)], check=True)
    agent.sync()
    (m,) = events_for(agent, base, "file_mount")
    assert (m["syscall"], m["old_path"], m["filename"], m["ret"]) == ("mount", "rg-test",
                                                                      str(base), 0)
    assert [u["ret"] for u in events_for(agent, base, "file_umount")] == [0]
    assert not agent.matching(lambda e: e.get("resolved_path") == str(quiet))


def test_writes_to_unwatched_and_read_only_opens_are_dropped(agent: AgentProc, base: Path) -> None:
    quiet = base / "unwatched" / "quiet"
    quiet.write_text("x" * 10)
    plain = base / "watched" / "plain"
    plain.write_text("x")
    plain.read_text()  # a read-only open outside read_paths
    secret = base / "watched" / "secret"
    secret.write_text("s")
    secret.read_text()  # under read_paths: reported
    agent.sync()
    assert not events_for(agent, quiet)
    assert [e["access"] for e in events_for(agent, plain, "file_open")] == ["write"]
    assert [e["access"] for e in events_for(agent, secret, "file_open")] == ["write", "read"]


def test_3000_byte_path_arrives_whole(agent: AgentProc, base: Path) -> None:
    d = base / "watched"
    comp = "d" * 199
    deep = d
    while len(str(deep)) + len(comp) + 1 < 2900:
        deep = deep / comp
    deep.mkdir(parents=True)
    path = deep / ("f" * (3000 - len(str(deep)) - 1))
    assert len(str(path)) == 3000
    path.write_text("x")
    agent.sync()
    ev = agent.wait_for(lambda e: e["event_type"] == "file_open"
                        and e.get("resolved_path") == str(path))
    assert ev["path_truncated"] is False and ev["filename"] == str(path)


def test_newline_and_invalid_utf8_in_path(agent: AgentProc, base: Path) -> None:
    raw = os.fsencode(base / "watched") + b"/bad\nname\"\\\xff\x01.txt"
    fd = os.open(raw, os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    agent.sync()
    want = decode_path(raw)
    assert "\\xff" in want and "\n" in want
    ev = agent.wait_for(lambda e: e.get("resolved_path") == want)
    assert ev["event_type"] == "file_open" and ev["filename"] == want
    os.unlink(raw)


def test_64_watch_prefixes(agent: AgentProc, base: Path) -> None:
    paths = [base / f"p{i:02d}" / "x" for i in (0, 17, 42, N_PREFIXES - 1)]
    for p in paths:
        p.write_text("x")
    agent.sync()
    for p in paths:
        assert events_for(agent, p, "file_open"), p


def test_excluded_paths_produce_nothing(agent: AgentProc, base: Path) -> None:
    d = base / "excluded" / "deep"
    d.mkdir()
    (d / "a.service").write_text("x")
    os.rename(d / "a.service", d / "b.service")
    os.unlink(d / "b.service")
    agent.sync()
    assert not agent.matching(lambda e: str(e.get("resolved_path")).startswith(str(d)))


def test_kernel_reports_absolute_path_for_cwd_relative_failure(agent: AgentProc,
                                                               base: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    d = base / "watched"
    old = os.getcwd()
    os.chdir(d)
    try:
        assert libc.unlink(b"never-existed") == -1
    finally:
        os.chdir(old)
    agent.sync()
    ev = events_for(agent, d / "never-existed", "file_unlink")
    assert ev and ev[0]["error"] == "ENOENT" and ev[0]["filename"] == "never-existed"


def test_agents_own_activity_never_produces_events(base: Path, tmp_path: Path) -> None:
    """The agent reads /proc after attaching (read_paths has /proc) and writes its output to a
    watched file: none of that may come back as events."""
    out = base / "watched" / "agent-output.ndjson"
    cfg = write_config(tmp_path / "c.toml", watch=[str(base / "watched")], read=["/proc"])
    with open(out, "wb") as f:
        a = AgentProc(cfg, stdout=f.fileno())
        try:
            for i in range(3):
                (base / "watched" / f"trigger{i}").write_text("x")
                Path(f"/proc/{os.getpid()}/stat").read_bytes()
            time.sleep(0.5)
        finally:
            assert a.stop() == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert any(e.get("resolved_path") == str(base / "watched" / "trigger2") for e in events)
    assert any(str(e.get("resolved_path")).startswith("/proc/") for e in events)
    assert not [e for e in events if e.get("pid") == a.proc.pid]


def test_process_started_before_the_agent_is_enriched(base: Path, tmp_path: Path) -> None:
    path = base / "watched" / "from-old-process"
    old = subprocess.Popen(["sh", "-c", f"read go; echo y > {path}"], stdin=subprocess.PIPE)
    cfg = write_config(tmp_path / "c.toml", watch=[str(base / "watched"), str(base / "markers")])
    with AgentProc(cfg, marker_dir=base / "markers") as a:
        old.communicate(b"go\n", timeout=10)
        ev = a.wait_for(lambda e: e.get("resolved_path") == str(path) and
                        e["event_type"] == "file_open")
    assert ev["pid"] == old.pid and ev["ppid"] == os.getpid()
    assert ev["comm"] == "sh" and ev["exe_path"] == os.path.realpath("/bin/sh")


def test_kernel_drops_are_counted_when_the_reader_stalls(base: Path, tmp_path: Path) -> None:
    """A 64 KiB ring and a stopped reader: what does not fit is counted, nothing vanishes."""
    d = base / "watched" / "burst"
    d.mkdir()
    cfg = write_config(tmp_path / "c.toml", watch=[str(d)], builtin=False,
                       extra="[ebpf]\nbuffer_size = 64\n")
    n = 3000
    with AgentProc(cfg) as a:
        a.proc.send_signal(signal.SIGSTOP)
        try:
            for i in range(n):
                os.close(os.open(d / f"f{i}", os.O_WRONLY | os.O_CREAT, 0o644))
        finally:
            a.proc.send_signal(signal.SIGCONT)
        time.sleep(1)
        assert a.stop() == 0
    got = len(a.matching(lambda e: e["event_type"] == "file_open"))
    (health,) = a.matching(lambda e: e["event_type"] == "health" and e["final"])
    dropped = health["kernel_ring_drops"]["file"]
    assert got < n and dropped > 0, health
    lost = a.matching(lambda e: e["event_type"] == "loss" and e["kind"] == "kernel_ring_full"
                      and e["family"] == "file")
    assert sum(e["count"] for e in lost) == dropped and lost[-1]["total"] == dropped, lost
    # every open arrived, was dropped or rate-limited, counted; or its program's run was
    # skipped, counted too (7.2 skips a program preempted on a CPU for the other tasks there,
    # and these runs may have been any syscall's: a bound, not an equality)
    accounted = got + dropped + health["rate_limited"].get("file", 0)
    assert n - a.skipped_runs() <= accounted <= n, (got, health)


def test_kernel_filter_drops_what_userspace_would(base: Path, tmp_path: Path) -> None:
    """Unwatched failed opens, unlinks and renames stay in the kernel: userspace filters
    almost nothing (the kernel filter is a superset, but a tight one)."""
    cfg = write_config(tmp_path / "c.toml", watch=[str(base / "watched")])
    n = 500
    with AgentProc(cfg) as a:
        for i in range(n):
            # hidden names (/.x) are judged in the kernel too: only . and .. components,
            # // and trailing slashes need userspace
            for name in (f"/usr/lib/rg-none-{i}", f"rg-none-{i}", f"/usr/lib/.rg-none-{i}",
                         f".rg-none-{i}"):
                with contextlib.suppress(FileNotFoundError):
                    os.open(name, os.O_RDONLY)
                with contextlib.suppress(FileNotFoundError):
                    os.open(name, os.O_WRONLY)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name)
        assert a.stop() == 0
    (health,) = a.matching(lambda e: e["event_type"] == "health" and e["final"])
    assert health["userspace_filtered"] < 50, health
    assert health["kernel_filtered"]["file"] >= 8 * n  # opens and unlinks stayed in the kernel


def test_path_longer_than_the_kernel_carries_is_reported_marked(agent: AgentProc,
                                                                base: Path) -> None:
    """Past 4095 bytes the kernel keeps the end of a path: such an event cannot be judged by
    its prefix, so it is reported anyway, with resolved_path starting "..." (not absolute)."""
    top = base / "watched" / "deep"
    top.mkdir()
    comp = "d" * 250
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(18):  # 18 * 251 bytes: past 4096 with the base in front
            os.mkdir(comp, dir_fd=fd)
            nfd = os.open(comp, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        os.close(os.open("leaf.conf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    try:
        agent.sync()
        ev = agent.wait_for(lambda e: e["event_type"] == "file_open"
                            and str(e.get("resolved_path")).endswith("/leaf.conf"))
    finally:
        shutil.rmtree(top)
    assert ev["path_truncated"] is True and ev["resolved_path"].startswith(".../")
    assert len(ev["resolved_path"]) <= 4095 + 3 and ev["filename"] == "leaf.conf"
