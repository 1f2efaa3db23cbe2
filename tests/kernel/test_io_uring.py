"""io_uring file operations end to end on the real kernel.

An io_uring request passes no syscall tracepoint: before io_uring was followed, each of these
changes to /etc/cron.d was made with nothing printed. build/tests/uringops submits real requests
(raw io_uring syscalls, inline, with IOSQE_ASYNC so that an io worker runs them, or through an
SQPOLL kernel thread); one agent with the shipped pack and rules watches /etc/cron.d, a watched
directory with an excluded one inside, and not an unwatched one. Each test asserts the event of
the syscall the request stands for, marked `io_uring`, with the operation's result, and for
/etc/cron.d the annotation and the rule's alert record; the near misses assert nothing came.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_proc import AgentProc, find, in_cron_d, running, the, write_config

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]
URINGOPS = ROOT / "build" / "tests" / "uringops"
CRON = (True, "cron_modified", ["T1053.003"])
O_WRONLY, O_CREAT, O_TRUNC = 0o1, 0o100, 0o1000
AT_REMOVEDIR = 0x200
IORING_SETUP_SQPOLL = 2
# how the ring runs the requests: in the submitting task, in an io worker, in an SQPOLL thread
MODES = {"inline": [], "worker": ["-a"], "sqpoll": ["-s"]}
KERNEL = tuple(int(x) for x in platform.release().split("-")[0].split(".")[:2])
# MKDIRAT, SYMLINKAT and LINKAT came with 5.15 (Debian's 5.10 has io_uring from 5.15 without them)
HAS_MKDIR_LINK = KERNEL >= (5, 15)
# Debian's 5.10 (the io_uring of 5.15) completes requests without naming them: the completion
# cannot look at what an open opened
COMPLETION_HAS_REQUEST = KERNEL >= (5, 15)
CAPS = "security.capability"
# VFS_CAP_REVISION_2, cap_net_raw permitted and effective (as in test_attr_events)
CAP_NET_RAW_EP = bytes.fromhex("01000002") + (1 << 13).to_bytes(4, "little") + bytes(12)
FILE_CAPS = (True, "file_capabilities_set", ["T1548"])


@pytest.fixture(scope="module", autouse=True)
def uringops() -> None:
    if not URINGOPS.exists():
        pytest.fail(f"{URINGOPS.relative_to(ROOT)} missing: run make build/tests/uringops")


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    # /var/tmp, not /tmp (excluded by default)
    d = Path(tempfile.mkdtemp(prefix="rg-uring-", dir="/var/tmp"))
    for sub in ("watched", "watched/excluded", "unwatched", "markers"):
        (d / sub).mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def agent(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProc]:
    cfg = write_config(tmp_path_factory.mktemp("cfg") / "config.toml",
                       watch=[str(base / "watched"), str(base / "markers")],
                       exclude=[str(base / "watched" / "excluded")])
    with running(cfg, base / "markers") as a:
        yield a


def test_the_io_uring_tracepoints_are_hooked(agent: AgentProc) -> None:
    start = agent.wait_for(lambda e: e["event_type"] == "agent_start")
    submit = "io_uring_submit_req" if KERNEL >= (6, 4) else "io_uring_submit_sqe"
    assert {"io_uring_complete", submit, "io_uring_setup"} <= set(start["hooks_attached"])
    assert "io_uring" not in start["hooks_missing"]


class Ring:
    """One run of uringops: its pid and each operation's result, in order."""

    def __init__(self, args: list[str], cwd: Path | str = "/") -> None:
        p = subprocess.Popen([str(URINGOPS), *args], cwd=cwd, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, f"uringops {args}: exit {p.returncode}: {err}"
        self.pid = p.pid
        self.results = [(op, int(res)) for op, res in (ln.split() for ln in out.splitlines())]


def ring(*ops: list[str], mode: str = "inline", cwd: Path | str = "/") -> Ring:
    """Submit these operations ([op, arg...] each) through one ring, one after the other."""
    args = list(MODES[mode])
    for i, op in enumerate(ops):
        args += ([","] if i else []) + op
    return Ring(args, cwd)


def rule_ids(agent: AgentProc, ev: dict) -> list[str]:
    """The [[rules]] alert records written for `ev`."""
    return [a["rule_id"] for a in find(agent, event_type="alert", source_seq=ev["seq"])]


def detection(ev: dict) -> tuple:
    return ev["alert"], ev["detection_type"], ev["mitre"]


@pytest.mark.parametrize("mode", MODES)
def test_open_and_write_in_cron_d(agent: AgentProc, mode: str) -> None:
    with in_cron_d() as job:
        r = ring(["openat", job, oct(O_WRONLY | O_CREAT)[2:]], ["write", "# rg test"], mode=mode)
        assert [res for _, res in r.results][1] == len("# rg test\n")
        assert Path(job).read_text() == "# rg test\n"
        agent.sync()
        op = the(agent, event_type="file_open", resolved_path=job)
        assert (op["syscall"], op["io_uring"], op["pid"], op["abi"]) == (
            "openat", True, r.pid, "x86_64")
        assert (op["ret"], op["fd"], op["created"], op["access"]) == (
            r.results[0][1], r.results[0][1], True, "write")
        assert op["filename"] == job and op["inode"] == os.stat(job).st_ino
        assert op["flags"] & (O_WRONLY | O_CREAT) == O_WRONLY | O_CREAT
        wr = the(agent, event_type="file_write", resolved_path=job)
        assert (wr["syscall"], wr["io_uring"], wr["pid"], wr["ret"], wr["fd"]) == (
            "write", True, r.pid, len("# rg test\n"), None)
        assert wr["inode"] == op["inode"]
        for ev in (op, wr):
            assert detection(ev) == CRON
            assert rule_ids(agent, ev) == ["FILE-CRON-001"]
        if mode == "sqpoll":
            assert op["comm"].startswith("iou-sqp-") and op["tid"] != r.pid


def test_openat2_and_registered_file_write(agent: AgentProc) -> None:
    """openat2, and a write through a registered (fixed) file: the ring names it by slot."""
    with in_cron_d() as job:
        r = ring(["openat2", job, oct(O_WRONLY | O_CREAT | O_TRUNC)[2:]],
                 ["write_registered", "# rg fixed"])
        assert r.results[1] == ("write_registered", len("# rg fixed\n"))
        agent.sync()
        op = the(agent, event_type="file_open", resolved_path=job)
        assert (op["syscall"], op["io_uring"], op["ret"]) == ("openat2", True, r.results[0][1])
        wr = the(agent, event_type="file_write", resolved_path=job)
        assert (wr["syscall"], wr["io_uring"], wr["ret"]) == ("write", True, len("# rg fixed\n"))
        assert detection(wr) == CRON


def test_writev_to_a_file_opened_by_syscall(agent: AgentProc) -> None:
    """A file opened with open(2) and written through io_uring (IORING_OP_WRITEV)."""
    with in_cron_d() as job:
        Path(job).write_text("")
        agent.sync()
        r = ring(["openat", job, oct(O_WRONLY)[2:]], ["writev", "# rg v"])
        assert r.results[1] == ("writev", len("# rg v\n"))
        agent.sync()
        wr = the(agent, event_type="file_write", resolved_path=job, pid=r.pid)
        assert (wr["syscall"], wr["io_uring"], wr["ret"]) == ("writev", True, len("# rg v\n"))


@pytest.mark.parametrize("op", ["fallocate", "splice"])
def test_content_changes_without_a_write(agent: AgentProc, op: str) -> None:
    """IORING_OP_FALLOCATE and IORING_OP_SPLICE (into the file, from a pipe): file_write events
    of the syscalls they stand for, as for a write."""
    arg = "4096" if op == "fallocate" else "# rg spliced"
    with in_cron_d() as job:
        r = ring(["openat", job, oct(O_WRONLY | O_CREAT)[2:]], [op, arg])
        assert r.results[1][1] >= 0, r.results
        agent.sync()
        wr = the(agent, event_type="file_write", resolved_path=job)
        assert (wr["syscall"], wr["io_uring"], wr["pid"], wr["ret"]) == (
            op, True, r.pid, r.results[1][1])
        assert detection(wr) == CRON


@pytest.mark.skipif(KERNEL < (6, 9), reason="IORING_OP_FTRUNCATE came with 6.9")
def test_ftruncate(agent: AgentProc, base: Path) -> None:
    """Judged by the file's path, like ftruncate(2): in /etc/cron.d reported, in the excluded
    directory not."""
    with in_cron_d() as job:
        Path(job).write_text("# rg test, to be cut\n")
        hidden = base / "watched" / "excluded" / "t"
        hidden.write_text("x" * 100)
        agent.sync()
        r = ring(["openat", job, oct(O_WRONLY)[2:]], ["ftruncate", "4"],
                 ["openat", str(hidden), oct(O_WRONLY)[2:]], ["ftruncate", "0"])
        assert [res for _, res in r.results][1::2] == [0, 0]
        agent.sync()
        ev = the(agent, event_type="file_truncate", pid=r.pid)
        assert (ev["resolved_path"], ev["syscall"], ev["io_uring"], ev["length"], ev["ret"]) == (
            job, "ftruncate", True, 4, 0)
        assert detection(ev) == CRON


@pytest.mark.skipif(KERNEL < (5, 19), reason="IORING_OP_SETXATTR and FSETXATTR came with 5.19 "
                    "(Debian's 5.10 has the io_uring of 5.15)")
@pytest.mark.parametrize("op", ["setxattr", "fsetxattr"])
def test_setting_an_attribute(agent: AgentProc, base: Path, op: str) -> None:
    """IORING_OP_SETXATTR (by name) and FSETXATTR (on an open file): a file_setxattr with the
    attribute's name, as setxattr(2) and fsetxattr(2) give; file capabilities are reported
    wherever the file is (a copy of /bin/true in the unwatched directory), a plain attribute
    of an unwatched file is not."""
    tool = base / "unwatched" / f"tool-{op}"
    shutil.copy("/bin/true", tool)
    quiet = base / "unwatched" / f"quiet-{op}"
    quiet.write_text("x")

    def request(path: str, name: str, value: bytes) -> list[list[str]]:
        if op == "setxattr":
            return [["setxattr", path, name, value.hex()]]
        return [["openat", path, "0"], ["fsetxattr", name, value.hex()]]

    with in_cron_d() as job:
        Path(job).write_text("# rg test\n")
        r = ring(*request(job, "trusted.rg", b"hi"), *request(str(tool), CAPS, CAP_NET_RAW_EP),
                 *request(str(quiet), "trusted.rg", b"hi"))
        assert [res for o, res in r.results if o == op] == [0, 0, 0], r.results
        assert os.getxattr(job, "trusted.rg") == b"hi"
        assert os.getxattr(tool, CAPS) == CAP_NET_RAW_EP
        agent.sync()
        ev = the(agent, event_type="file_setxattr", resolved_path=job)
        assert (ev["syscall"], ev["io_uring"], ev["pid"], ev["ret"], ev["xattr_name"]) == (
            op, True, r.pid, 0, "trusted.rg")
        assert ev["filename"] == (job if op == "setxattr" else None)
        assert detection(ev) == CRON
        assert rule_ids(agent, ev) == ["FILE-CRON-001"]
        caps = the(agent, event_type="file_setxattr", resolved_path=str(tool))
        assert (caps["syscall"], caps["io_uring"], caps["xattr_name"], caps["ret"]) == (
            op, True, CAPS, 0)
        assert detection(caps) == FILE_CAPS
        assert find(agent, resolved_path=str(quiet)) == []


@pytest.mark.parametrize("mode", MODES)
def test_an_open_through_a_symlink_is_judged_by_the_file_it_opened(
        agent: AgentProc, base: Path, mode: str) -> None:
    """A name through a symlink in an unwatched directory to /etc/cron.d does not pass the filter
    as written; the open's completion is judged by the file it opened, as open(2) is: reported
    with the kernel's path (filename null: the kernel has freed the name by then), and its
    writes are tracked. On Debian's 5.10 the completion names no request: nothing is seen there
    (the documented limit)."""
    link = base / "unwatched" / f"to-cron-{mode}"
    link.symlink_to("/etc/cron.d")
    try:
        with in_cron_d() as job:
            via = str(link / os.path.basename(job))
            r = ring(["openat", via, oct(O_WRONLY | O_CREAT)[2:]], ["write", "# rg via link"],
                     mode=mode)
            fd = r.results[0][1]
            assert fd >= 0 and r.results[1][1] == len("# rg via link\n"), r.results
            assert Path(job).read_text() == "# rg via link\n"
            agent.sync()
            if not COMPLETION_HAS_REQUEST:
                assert find(agent, resolved_path=job) == []
                return
            op = the(agent, event_type="file_open", resolved_path=job)
            assert (op["syscall"], op["io_uring"], op["pid"], op["filename"], op["ret"],
                    op["fd"], op["created"], op["access"]) == (
                "openat", True, r.pid, None, fd, fd, True, "write")
            assert op["inode"] == os.stat(job).st_ino
            wr = the(agent, event_type="file_write", resolved_path=job)
            assert (wr["io_uring"], wr["pid"], wr["ret"]) == (True, r.pid, r.results[1][1])
            for ev in (op, wr):
                assert detection(ev) == CRON
                assert rule_ids(agent, ev) == ["FILE-CRON-001"]
    finally:
        link.unlink()


@pytest.mark.parametrize("mode", ["inline"])  # run by an io worker whatever the mode
def test_name_operations_through_a_symlink_are_judged_where_the_kernel_resolves_them(
        agent: AgentProc, base: Path, mode: str) -> None:
    """A rename, link, symlink, mkdir, unlink and rmdir in /etc/cron.d through a symlink in an
    unwatched directory: with the resolver (fentry on io_renameat and the other handlers, and on
    the path hooks they reach: 6.1 on) each is judged by the target the kernel resolved and
    reported with the kernel's path (filename null: the names are freed by the completion);
    without it (this development VM; Debian's 5.10, whose completion names no request) the names
    are joined as given, in the unwatched directory: nothing is reported (the documented
    limit)."""
    start = agent.wait_for(lambda e: e["event_type"] == "agent_start")
    resolved = {"io_renameat", "security_path_rename"} <= set(start["hooks_attached"])
    # the matrix's kernels have fentry: every one whose completion names the request resolves
    assert resolved or not (os.environ.get("RANDGUARD_EXPECT_FENTRY") == "1"
                            and COMPLETION_HAS_REQUEST), start["hooks_missing"]
    link = base / "unwatched" / f"names-to-cron-{mode}"
    link.symlink_to("/etc/cron.d")
    src, other = base / "unwatched" / f"mv-{mode}", base / "unwatched" / f"ln-{mode}"
    src.write_text("# rg test\n")
    other.write_text("# rg test\n")

    def via(path: str) -> str:
        return str(link / os.path.basename(path))

    try:
        with in_cron_d() as moved, in_cron_d() as hard, in_cron_d() as soft, \
                in_cron_d(".d") as newdir:
            ops = [["rename", str(src), via(moved)], ["link", str(other), via(hard)],
                   ["symlink", "/bin/true", via(soft)], ["mkdir", via(newdir), "755"],
                   ["unlink", via(hard)], ["rmdir", via(newdir)]]
            want = [("file_rename", moved, "renameat2"), ("file_link", hard, "linkat"),
                    ("file_link", soft, "symlinkat"), ("file_mkdir", newdir, "mkdirat"),
                    ("file_unlink", hard, "unlinkat"), ("file_unlink", newdir, "unlinkat")]
            if not HAS_MKDIR_LINK:
                os.link(other, hard)
                os.mkdir(newdir)
                ops, want = [ops[0], *ops[4:]], [want[0], *want[4:]]
            r = ring(*ops, mode=mode)
            assert [res for _, res in r.results] == [0] * len(ops), r.results
            assert Path(moved).read_text() == "# rg test\n"
            assert Path(soft).is_symlink() == HAS_MKDIR_LINK
            agent.sync()
            got = [(e["event_type"], e["resolved_path"], e["syscall"])
                   for e in agent.matching(lambda e: e.get("pid") == r.pid
                                           and e["event_type"].startswith("file_"))]
            if not resolved:
                assert got == []
                return
            assert got == want
            for event_type, path, syscall in want:
                ev = the(agent, event_type=event_type, resolved_path=path, syscall=syscall)
                assert (ev["io_uring"], ev["ret"], ev["filename"], ev["old_path"]) == (
                    True, 0, None, None), ev
                assert detection(ev) == CRON, ev
                assert rule_ids(agent, ev) == ["FILE-CRON-001"], ev
            assert the(agent, event_type="file_mkdir", resolved_path=newdir)["mode"] == 0o755
    finally:
        link.unlink()


def test_direct_descriptor_open(agent: AgentProc) -> None:
    """An open into a fixed slot returns no fd: reported, with fd null."""
    with in_cron_d() as job:
        r = ring(["openat_direct", job, oct(O_WRONLY | O_CREAT)[2:]])
        assert r.results == [("openat_direct", 0)]
        agent.sync()
        op = the(agent, event_type="file_open", resolved_path=job)
        assert (op["io_uring"], op["ret"], op["fd"], op["inode"]) == (True, 0, None, None)
        assert detection(op) == CRON


@pytest.mark.parametrize("mode", ["inline", "worker"])
def test_name_operations_in_cron_d(agent: AgentProc, base: Path, mode: str) -> None:
    """rename into, link and symlink into, mkdir in, unlink and rmdir in /etc/cron.d."""
    src = base / "watched" / f"src-{mode}"
    src.write_text("# rg test\n")
    with in_cron_d() as moved, in_cron_d() as hard, in_cron_d() as soft, \
            in_cron_d(".d") as newdir:
        ops = [["rename", str(src), moved], ["link", moved, hard], ["symlink", "/bin/true", soft],
               ["mkdir", newdir, "755"], ["unlink", hard], ["rmdir", newdir]]
        want = [
            ("file_rename", moved, "renameat2", str(src)),
            ("file_link", hard, "linkat", moved),
            ("file_link", soft, "symlinkat", "/bin/true"),
            ("file_mkdir", newdir, "mkdirat", None),
            ("file_unlink", hard, "unlinkat", None),
            ("file_unlink", newdir, "unlinkat", None),
        ]
        if not HAS_MKDIR_LINK:  # a link to unlink and a directory to remove, made otherwise
            os.link(src, hard)
            os.mkdir(newdir)
            ops, want = [ops[0], *ops[4:]], [want[0], *want[4:]]
        r = ring(*ops, mode=mode)
        assert [res for _, res in r.results] == [0] * len(ops)
        agent.sync()
        for event_type, path, syscall, old in want:
            ev = the(agent, event_type=event_type, resolved_path=path, syscall=syscall)
            assert (ev["io_uring"], ev["pid"], ev["ret"], ev["old_path"]) == (
                True, r.pid, 0, old), ev
            assert detection(ev) == CRON, ev
            assert rule_ids(agent, ev) == ["FILE-CRON-001"], ev
        if HAS_MKDIR_LINK:
            assert the(agent, event_type="file_mkdir", resolved_path=newdir)["mode"] == 0o755
        assert find(agent, event_type="file_unlink", resolved_path=newdir,
                    io_uring=True)[0]["flags"] == AT_REMOVEDIR


@pytest.mark.skipif(KERNEL < (5, 17), reason="IOSQE_CQE_SKIP_SUCCESS came with 5.17")
def test_requests_that_post_no_completion(agent: AgentProc) -> None:
    """IOSQE_CQE_SKIP_SUCCESS: a request that succeeds posts nothing, so no completion
    tracepoint fires: reported at submission, as succeeded."""
    with in_cron_d() as job, in_cron_d() as moved:
        r = ring(["openat!", job, oct(O_WRONLY | O_CREAT)[2:]], ["openat", job, oct(O_WRONLY)[2:]],
                 ["write!", "# rg skip"], ["rename!", job, moved])
        assert [res for _, res in r.results][::2] == [0, 0]
        assert Path(moved).read_text() == "# rg skip\n"
        agent.sync()
        opens = find(agent, event_type="file_open", resolved_path=job, pid=r.pid)
        assert [(e["io_uring"], e["ret"], e["fd"]) for e in opens] == [
            (True, 0, None), (True, r.results[1][1], r.results[1][1])]
        wr = the(agent, event_type="file_write", resolved_path=job, pid=r.pid)
        assert (wr["io_uring"], wr["ret"], wr["syscall"]) == (True, 0, "write")
        mv = the(agent, event_type="file_rename", resolved_path=moved, pid=r.pid)
        assert (mv["io_uring"], mv["ret"], mv["old_path"]) == (True, 0, job)
        for ev in (*opens, wr, mv):
            assert detection(ev) == CRON


def test_relative_names_are_joined_to_the_cwd(agent: AgentProc) -> None:
    with in_cron_d() as job:
        name = os.path.basename(job)
        r = ring(["openat", name, oct(O_WRONLY | O_CREAT)[2:]], cwd="/etc/cron.d")
        assert r.results[0][1] >= 0
        agent.sync()
        op = the(agent, event_type="file_open", resolved_path=job)
        assert (op["filename"], op["io_uring"]) == (name, True)


def test_a_failed_operation_carries_its_error(agent: AgentProc) -> None:
    with in_cron_d() as missing:
        r = ring(["unlink", missing])
        assert r.results == [("unlink", -2)]
        agent.sync()
        ev = the(agent, event_type="file_unlink", resolved_path=missing)
        assert (ev["io_uring"], ev["ret"], ev["error"], ev["alert"]) == (
            True, -2, "ENOENT", False)


def test_ring_setup_is_reported(agent: AgentProc) -> None:
    r = ring(["unlink", "/nonexistent-rg/x"], mode="sqpoll")
    assert r.results[0][1] == -2
    agent.sync()
    ev = the(agent, event_type="io_uring_setup", pid=r.pid)
    assert (ev["syscall"], ev["io_uring"], ev["flags"] & IORING_SETUP_SQPOLL) == (
        "io_uring_setup", False, IORING_SETUP_SQPOLL)
    assert ev["ret"] >= 0 and ev["fd"] == ev["ret"] and ev["error"] is None
    assert ev["resolved_path"] is None


@pytest.mark.parametrize("where", ["unwatched", "watched/excluded"])
def test_near_misses_report_nothing(agent: AgentProc, base: Path, where: str) -> None:
    d = base / where
    f, g = d / "f", d / "g"
    r = ring(["openat", str(f), oct(O_WRONLY | O_CREAT)[2:]], ["write", "x"],
             ["rename", str(f), str(g)], ["unlink", str(g)],
             *([["mkdir", str(d / "sub"), "755"]] if HAS_MKDIR_LINK else []))
    assert all(res >= 0 for _, res in r.results), r.results
    agent.sync()
    assert agent.matching(lambda e: e.get("pid") == r.pid
                          and e["event_type"].startswith("file_")) == []
    assert find(agent, event_type="io_uring_setup", pid=r.pid) != []
