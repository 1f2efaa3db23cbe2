"""The persistence inventory's pure parts and its filesystem reads, on a temporary tree: what is
listed and hashed, what a difference is called, and that the state file survives a round trip
and refuses damage."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import msgspec
import pytest

from randguard.core.config import InventoryConfig, PersistenceDetection, Rule
from randguard.core.engine import RuleEngine
from randguard.core.ruleset import RuleSet
from randguard.process.inventory import (
    FileState,
    StateProblem,
    decode_state,
    diff,
    encode_state,
    hash_file,
    locations,
    owner,
    read_state,
    scan,
    write_state,
)
from randguard.process.persistence import PersistenceWatch


def det(name: str, paths: list[str], patterns: list[str] = (), **kw: object
        ) -> PersistenceDetection:
    return PersistenceDetection(name=name, paths=paths, patterns=list(patterns),
                                mitre=["T1053.003"], **kw)


def tree(tmp_path: Path) -> tuple[list, Path]:
    cron = tmp_path / "cron.d"
    cron.mkdir()
    (cron / "job").write_text("* * * * * root true\n")
    (cron / "sub").mkdir()
    (cron / "sub" / "deep").write_text("x")
    (cron / "link").symlink_to("/etc/hostname")
    units = tmp_path / "system"
    units.mkdir()
    (units / "a.service").write_text("[Service]\n")
    (units / "a.conf").write_text("not a unit\n")
    os.mkfifo(units / "b.service")  # a FIFO must not stall the walk
    homes = [str(tmp_path / "home" / "u")]
    (tmp_path / "home" / "u" / ".ssh").mkdir(parents=True)
    (tmp_path / "home" / "u" / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAA\n")
    detections = [
        det("cron_modified", [str(cron)]),
        det("systemd_service_modified", [str(units)], ["*.service"]),
        det("ssh_authorized_keys_modified", ["~/.ssh/authorized_keys"]),
        det("python_startup_modified", [], ["sitecustomize.py"]),  # no place: not listed
        det("setid_bit_set", [], modes=["setuid"]),
    ]
    rules = [Rule(id="R1", name="r", type="file", paths=[str(tmp_path / "r")], mitre=["T1098"])]
    (tmp_path / "r").write_text("rule file\n")
    return locations(RuleEngine(RuleSet(detections, [], rules), homes)), tmp_path


def test_scan_lists_what_the_detections_name(tmp_path: Path) -> None:
    locs, t = tree(tmp_path)
    inv = scan(locs, InventoryConfig())
    assert sorted(inv.files) == sorted(str(t / p) for p in (
        "cron.d/job", "cron.d/sub/deep", "cron.d/link", "system/a.service", "system/b.service",
        "home/u/.ssh/authorized_keys", "r"))
    job = inv.files[str(t / "cron.d/job")]
    assert job.sha256 == hashlib.sha256(b"* * * * * root true\n").hexdigest()
    assert job.size == 20 and job.inode == os.stat(t / "cron.d/job").st_ino
    link = inv.files[str(t / "cron.d/link")]
    assert (link.sha256, link.link_target, link.skipped) == (None, "/etc/hostname", "symlink")
    assert inv.files[str(t / "system/b.service")].skipped == "not a regular file"
    assert inv.skipped == 2 and inv.not_listed == 0
    assert inv.hashed_bytes == sum(os.path.getsize(t / p) for p in (
        "cron.d/job", "cron.d/sub/deep", "system/a.service", "home/u/.ssh/authorized_keys", "r"))
    assert owner(locs, str(t / "cron.d/job")).detection == "cron_modified"
    assert owner(locs, str(t / "r")) == (None, ["T1098"])  # a file rule's path
    assert owner(locs, str(t / "system/a.conf")) is None


def test_limits_are_counted_not_silent(tmp_path: Path) -> None:
    locs, t = tree(tmp_path)
    inv = scan(locs, InventoryConfig(max_files=3, max_file_bytes=5))
    assert len(inv.files) == 3 and inv.not_listed == 4
    big = inv.files[str(t / "cron.d/job")]
    assert big.sha256 is None and big.skipped == "larger than max_file_bytes"


def test_hash_file_of_a_missing_file_is_none(tmp_path: Path) -> None:
    assert hash_file(str(tmp_path / "nope"), 100) == (None, 0)


def _st(**kw: object) -> FileState:
    base = dict(sha256="a" * 64, size=1, mode=0o100644, uid=0, gid=0, mtime_ns=1, inode=2,
                device=3, generation=4)
    return FileState(**(base | kw))


def test_diff_names_each_kind_of_change() -> None:
    prev = {"/a": _st(), "/b": _st(), "/c": _st(), "/d": _st(), "/e": _st(sha256=None, size=5)}
    cur = {"/a": _st(), "/b": _st(sha256="b" * 64, mode=0o100755), "/c": _st(mode=0o104755),
           "/e": _st(sha256=None, size=6), "/f": _st()}
    got = [(c.path, c.change) for c in diff(prev, cur)]
    assert got == [("/b", "modified"), ("/c", "metadata"), ("/d", "removed"),
                   ("/e", "modified"), ("/f", "added")]
    assert diff(prev, prev) == []
    # a symlink retargeted is a content change
    assert [c.change for c in diff({"/l": _st(sha256=None, link_target="x")},
                                   {"/l": _st(sha256=None, link_target="y")})] == ["modified"]


def test_state_round_trip_and_damage(tmp_path: Path) -> None:
    files = {"/etc/cron.d/job": _st(), "/etc/passwd": _st(sha256=None, skipped="unreadable: x")}
    path = str(tmp_path / "sub" / "inventory.state")
    with pytest.raises(StateProblem) as e:
        read_state(path)
    assert e.value.status == "missing"
    write_state(path, files, "vm", 123)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert read_state(path) == files
    assert not [p for p in os.listdir(tmp_path / "sub") if ".tmp" in p]

    data = encode_state(files, "vm", 1)
    for bad, status in [
        (data[: len(data) // 2], "corrupt"),  # truncated
        (b"\x00garbage", "corrupt"),
        (data.replace(b"randguard-inventory/1", b"randguard-inventory/9"), "corrupt"),
        (data.replace(b'"size":1', b'"size":2', 1), "tampered"),
    ]:
        with pytest.raises(StateProblem) as e:
            decode_state(bad)
        assert e.value.status == status, bad
    assert decode_state(data) == files
    st = msgspec.json.decode(data)
    assert st["format"] == "randguard-inventory/1" and st["host"] == "vm"


def test_a_mount_above_the_roots_rescans_them_as_the_baseline_did(tmp_path: Path) -> None:
    """A mount on `/` (any sandboxed service's private namespace makes one) has the inventory
    hash again what lies below: through the roots, as the baseline walked them, so that a root
    under a symlinked directory (`/lib -> usr/lib` on Debian) is not taken for removed."""
    real = tmp_path / "usr" / "lib" / "systemd" / "system"
    real.mkdir(parents=True)
    (real / "a.service").write_text("[Service]\n")
    (tmp_path / "lib").symlink_to("usr/lib")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.service").write_text("not under a root\n")
    rs = RuleSet([det("systemd_service_modified", [str(tmp_path / "lib/systemd/system")],
                      ["*.service"])], [], [])
    watch = PersistenceWatch(InventoryConfig(), locations(RuleEngine(rs, [])), "h",
                             str(tmp_path / "state"))
    watch._baseline()
    assert set(watch.files) == {str(tmp_path / "lib/systemd/system/a.service")}
    watch.take()
    watch._rehash(str(tmp_path), None)
    assert [r.event_type for r in watch.take()] == []
    (real / "a.service").write_text("[Service]\nExecStart=/tmp/x\n")
    watch._rehash(str(tmp_path), 7)
    assert [(r.path, r.change, r.source_seq) for r in watch.take()] == [
        (str(tmp_path / "lib/systemd/system/a.service"), "modified", 7)]
    # a mount on the real directory (usr) changes what the symlinked root shows
    (real / "a.service").write_text("[Service]\nExecStart=/tmp/y\n")
    watch._rehash(str(tmp_path / "usr"), 8)
    assert [(r.path, r.change, r.source_seq) for r in watch.take()] == [
        (str(tmp_path / "lib/systemd/system/a.service"), "modified", 8)]
