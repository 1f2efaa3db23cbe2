"""The persistence inventory on the real machine: what changed while the agent was stopped is
reported at the next start, a live change is hashed again, and a damaged state file gives a
clear record and a fresh baseline. Real /etc files, the shipped pack and rules."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_proc import AgentProc, write_config
from test_detections import Tidy, exclusive, tidy  # noqa: F401 (fixtures: one run at a time)

from randguard.core.config import Config
from randguard.process.inventory import read_state

pytestmark = pytest.mark.kernel

URINGOPS = Path(__file__).resolve().parents[2] / "build" / "tests" / "uringops"

USER = "rg-inv-user"


def sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def config(tmp_path: Path, state: Path) -> Path:
    d = Config().file
    return write_config(
        tmp_path / "c.toml", watch=d.watch_paths, exclude=d.exclude_paths, read=d.read_paths,
        patterns=d.watch_patterns,
        extra=f'[inventory]\nstate_file = "{state}"\nsettle_seconds = 0.2\n')


def inventory_of(a: AgentProc) -> dict:
    return a.wait_for(lambda e: e["event_type"] == "persistence_inventory", timeout=60)


@contextlib.contextmanager
def linked_cron(tidy: Tidy, name: str, text: str) -> Iterator[tuple[str, Path]]:  # noqa: F811
    """A cron.d file and a hard link to it made earlier in an unwatched directory (same fs)."""
    tidy.dirs("/etc/cron.d")
    cron = tidy.new(f"/etc/cron.d/{name}")
    Path(cron).write_text(text)
    away = Path(tempfile.mkdtemp(prefix="rg-inv-", dir="/var/tmp"))
    try:
        os.link(cron, away / "innocent.txt")
        yield cron, away / "innocent.txt"
    finally:
        shutil.rmtree(away, ignore_errors=True)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A user whose ~/.ssh/authorized_keys exists (homes are read at start)."""
    h = tmp_path / "home"
    subprocess.run(["userdel", USER], capture_output=True)
    subprocess.run(["useradd", "-M", "-d", str(h), "-s", "/bin/sh", USER], check=True,
                   capture_output=True)
    (h / ".ssh").mkdir(parents=True)
    (h / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAAC3Nz test@lab\n")
    try:
        yield h
    finally:
        subprocess.run(["userdel", USER], capture_output=True)


def test_changes_while_stopped_then_live(tmp_path: Path, tidy: Tidy, home: Path) -> None:  # noqa: F811
    for d in ("/etc/cron.d", "/etc/systemd/system", "/etc/sudoers.d"):
        tidy.dirs(d)  # a machine without cron or sudo has no such directory
    cron = tidy.new("/etc/cron.d/rg-inv-added")
    unit = tidy.new("/etc/systemd/system/rg-inv-test.service")
    sudo = tidy.new("/etc/sudoers.d/rg-inv-test")
    keys = home / ".ssh" / "authorized_keys"
    Path(unit).write_text("[Service]\nExecStart=/bin/true\n")
    Path(sudo).write_text("# nothing granted\n")
    os.chmod(sudo, 0o440)
    state = tmp_path / "inventory.state"
    cfg = config(tmp_path, state)

    with AgentProc(cfg) as a:
        first = inventory_of(a)
        assert a.stop() == 0
    assert (first["previous_state"], first["changes"]) == ("missing", 0)
    (st,) = a.matching(lambda e: e["event_type"] == "persistence_state")
    assert st["status"] == "missing" and st["state_file"] == str(state)
    assert first["files"] > 10 and str(keys) in read_state(str(state))
    assert not a.matching(lambda e: e["event_type"] == "persistence_change")
    assert os.stat(state).st_mode & 0o777 == 0o600

    # while stopped: a cron file added, a unit's content changed, a sudoers drop-in chmodded,
    # an authorized_keys removed
    old_unit, old_keys = sha(unit), sha(keys)
    Path(cron).write_text("* * * * * root /var/tmp/x\n")
    Path(unit).write_text("[Service]\nExecStart=/var/tmp/x\n")
    os.chmod(sudo, 0o640)
    keys.unlink()

    with AgentProc(cfg) as a:
        second = inventory_of(a)
        changes = {e["path"]: e for e in a.matching(
            lambda e: e["event_type"] == "persistence_change")}
        assert set(changes) == {cron, unit, sudo, str(keys)}, changes
        assert second["previous_state"] == "loaded" and second["changes"] == 4
        c, u, s, k = (changes[p] for p in (cron, unit, sudo, str(keys)))
        assert all(e["while_stopped"] and e["source_seq"] is None and e["alert"]
                   for e in changes.values())
        assert (c["change"], c["previous"], c["current"]["sha256"]) == ("added", None, sha(cron))
        assert c["detection_type"] == "cron_modified" and c["mitre"] == ["T1053.003"]
        assert u["change"] == "modified" and u["previous"]["sha256"] == old_unit
        assert u["current"]["sha256"] == sha(unit) and u["detection_type"].startswith("systemd")
        assert s["change"] == "metadata" and s["previous"]["sha256"] == s["current"]["sha256"]
        assert (s["previous"]["mode"] & 0o7777, s["current"]["mode"] & 0o7777) == (0o440, 0o640)
        assert (k["change"], k["current"], k["previous"]["sha256"]) == ("removed", None, old_keys)
        assert k["detection_type"] == "ssh_authorized_keys_modified"
        assert not a.matching(lambda e: e["event_type"] == "persistence_state")
        # the built-in rules alert on the cron and unit changes, right after each
        for ev, rule in ((c, "FILE-CRON-001"), (u, "FILE-SYSTEMD-001")):
            (al,) = a.matching(lambda e, ev=ev: e["event_type"] == "alert"
                               and e["source_seq"] == ev["seq"])
            assert (al["rule_id"], al["operation"], al["path"]) == (
                rule, "persistence_change", ev["path"])

        # live: an append to the cron file is hashed again once it settled
        with open(cron, "a") as f:
            f.write("*/5 * * * * root /var/tmp/y\n")
        live = a.wait_for(lambda e: e["event_type"] == "persistence_change"
                          and not e["while_stopped"], timeout=20)
        assert (live["path"], live["change"]) == (cron, "modified")
        assert live["previous"]["sha256"] == c["current"]["sha256"]
        assert live["current"]["sha256"] == sha(cron)
        (src,) = a.matching(lambda e: e.get("seq") == live["source_seq"])
        assert src["event_type"] in ("file_write", "file_open") and src["resolved_path"] == cron
        assert a.stop() == 0
    # the agent never reports its own reads of what it hashes (/etc/shadow is in read_paths)
    assert not a.matching(lambda e: e["event_type"] == "file_open"
                          and e["pid"] == a.proc.pid)
    assert read_state(str(state))[cron].sha256 == sha(cron)  # kept current


@pytest.mark.parametrize("damage, status", [
    (lambda p: p.write_bytes(p.read_bytes()[:100]), "corrupt"),
    (lambda p: p.write_bytes(p.read_bytes().replace(b'"size":', b'"size":1', 1)), "tampered"),
], ids=["truncated", "tampered"])
def test_a_damaged_state_gives_a_record_and_a_fresh_baseline(tmp_path: Path, damage,
                                                             status: str) -> None:
    state = tmp_path / "inventory.state"
    cfg = config(tmp_path, state)
    with AgentProc(cfg) as a:
        inventory_of(a)
    damage(state)
    with AgentProc(cfg) as a:
        inv = inventory_of(a)
        assert a.stop() == 0
    (st,) = a.matching(lambda e: e["event_type"] == "persistence_state")
    assert st["status"] == status and st["reason"], st
    assert (inv["previous_state"], inv["changes"]) == (status, 0)
    assert not a.matching(lambda e: e["event_type"] == "persistence_change")
    assert len(read_state(str(state))) == inv["files"]  # a fresh, valid baseline


def test_a_write_through_a_hard_link_is_a_change_to_the_persistence_file(
        tmp_path: Path, tidy: Tidy) -> None:  # noqa: F811
    """A hard link made earlier from an unwatched directory to a cron.d file: a write through
    it is reported and annotated as a write to the cron file (`persistence_path`), and so are an
    fchmod through it and an io_uring open and write; the inventory hashes the cron file
    again."""
    with linked_cron(tidy, "rg-inv-linked", "# nothing yet\n") as (cron, link):
        away = link.parent
        with AgentProc(config(tmp_path, tmp_path / "inventory.state")) as a:
            inventory_of(a)
            with open(link, "a") as f:
                f.write("* * * * * root /var/tmp/x\n")
                f.flush()
                os.fchmod(f.fileno(), 0o644)
            live = a.wait_for(lambda e: e["event_type"] == "persistence_change"
                              and e["path"] == cron, timeout=20)
            assert live["change"] == "modified" and live["current"]["sha256"] == sha(cron)
            # through io_uring: judged at completion by the file it opened
            uring = subprocess.run([str(URINGOPS), "openat", str(link), "2001", ",", "write",
                                    "*/2 * * * * root /var/tmp/y"], capture_output=True)
            assert uring.returncode == 0, uring.stderr
            again = a.wait_for(lambda e: e["event_type"] == "persistence_change"
                               and e["path"] == cron and e["seq"] > live["seq"], timeout=20)
            assert again["previous"]["sha256"] == live["current"]["sha256"]
            assert again["current"]["sha256"] == sha(cron)
            # a plain file in the same directory stays unreported
            (away / "plain.txt").write_text("x")
            assert a.stop() == 0
        for typ, ring in (("file_open", False), ("file_write", False), ("file_chmod", False),
                          ("file_open", True), ("file_write", True)):
            (ev,) = a.matching(lambda e, t=typ, r=ring: e["event_type"] == t and e["io_uring"] == r
                               and e["resolved_path"] == str(link))
            assert ev["persistence_path"] == cron, ev
            assert ev["alert"] and ev["detection_type"] == "cron_modified", ev
            (al,) = a.matching(lambda e, ev=ev: e["event_type"] == "alert"
                               and e["source_seq"] == ev["seq"])
            assert (al["rule_id"], al["path"]) == ("FILE-CRON-001", cron)
        assert not a.matching(lambda e: str(e.get("resolved_path", "")).endswith("plain.txt"))


def test_a_hard_link_on_tmpfs_is_watched_without_an_inode_generation(tmp_path: Path) -> None:
    """tmpfs gives its inodes a generation but no FS_IOC_GETVERSION to read it with: the kernel
    must not compare what userspace cannot know. A user's home on a tmpfs, an authorized_keys
    in it with a second name outside the watched paths; a write through that name is a change
    to the keys file."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "rg-inv", str(mnt)], check=True)
    subprocess.run(["userdel", USER], capture_output=True)
    try:
        h = mnt / "home"
        subprocess.run(["useradd", "-M", "-d", str(h), "-s", "/bin/sh", USER], check=True,
                       capture_output=True)
        keys = h / ".ssh" / "authorized_keys"
        keys.parent.mkdir(parents=True)
        keys.write_text("ssh-ed25519 AAAAC3Nz test@lab\n")
        (mnt / "away").mkdir()
        link = mnt / "away" / "notes.txt"
        os.link(keys, link)
        with AgentProc(config(tmp_path, tmp_path / "inventory.state")) as a:
            assert inventory_of(a)["files"] > 0
            with open(link, "a") as f:
                f.write("ssh-ed25519 AAAAC3Nz attacker@far\n")
            live = a.wait_for(lambda e: e["event_type"] == "persistence_change"
                              and e["path"] == str(keys), timeout=20)
            assert live["current"]["sha256"] == sha(keys)
            assert a.stop() == 0
        writes = a.matching(lambda e: e["event_type"] == "file_write"
                            and e["resolved_path"] == str(link))
        assert [e["persistence_path"] for e in writes] == [str(keys)]
    finally:
        subprocess.run(["userdel", USER], capture_output=True)
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_calls_by_name_through_a_hard_link_change_the_file_where_the_kernel_resolves_them(
        tmp_path: Path, tidy: Tidy) -> None:  # noqa: F811
    """chmod and truncate by the other name of a listed cron file: with the resolver (fentry on
    security_path_chmod and _truncate: the qemu kernels, lab hosts) reported as changes to the
    cron file (`persistence_path`); without it the kernel judges the name given, an unwatched
    one, and they are not reported: the documented limit (calls on an open file are, above)."""
    with linked_cron(tidy, "rg-inv-byname", "* * * * * root /bin/true\n") as (cron, link):
        with AgentProc(config(tmp_path, tmp_path / "inventory.state"),
                       marker_dir=Path("/etc/cron.d")) as a:
            start = a.wait_for(lambda e: e["event_type"] == "agent_start")
            inventory_of(a)
            os.chmod(link, 0o600)
            os.truncate(link, 0)
            a.sync()
        got = [(e["event_type"], e["persistence_path"], e["ret"])
               for e in a.matching(lambda e: e.get("resolved_path") == str(link))]
        want = [(kind, cron, 0)
                for hook, kind in (("security_path_chmod", "file_chmod"),
                                   ("security_path_truncate", "file_truncate"))
                if hook in start["hooks_attached"]]
        assert got == want
