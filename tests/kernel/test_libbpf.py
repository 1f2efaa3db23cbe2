"""Tests of the cffi libbpf binding (agent/randguard/kernel/libbpf.py) against
tests/bpf/ringtest.bpf.c.

Unmarked tests only open objects (no root, no kernel); tests marked ``kernel`` load and attach.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import loaded

from randguard.kernel import libbpf
from randguard.kernel.libbpf import BpfObject, LibbpfError

PROG = "handle_getppid"
KEY0 = struct.pack("<I", 0)
EVENT = struct.Struct("<QQQ")  # struct ringtest_event: seq, tag, tgid
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_RINGBUF = 27


def counter(obj: BpfObject) -> int:
    value = obj.map("counter").lookup(KEY0)
    assert value is not None
    return struct.unpack("<Q", value)[0]


def possible_cpus() -> int:
    """Count of /sys/devices/system/cpu/possible, e.g. "0-3,5" -> 5."""
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    total = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        total += int(hi or lo) - int(lo) + 1
    return total


def trigger(n: int) -> None:
    for _ in range(n):
        os.getppid()


@pytest.fixture
def libbpf_logger() -> Iterator[logging.Logger]:
    """A dedicated logger for libbpf messages, restoring the default afterwards."""
    logger = logging.getLogger("randguard.test.libbpf")
    libbpf.install_logger(logger)
    try:
        yield logger
    finally:
        libbpf.install_logger(logging.getLogger("randguard.libbpf"))


# --------------------------------------------------------------------------- no kernel needed


def test_version() -> None:
    version = libbpf.libbpf_version()
    assert re.fullmatch(r"\d+\.\d+", version)
    assert tuple(int(x) for x in version.split(".")) >= (1, 1)


def test_missing_file_is_enoent(tmp_path: Path) -> None:
    path = tmp_path / "nope.bpf.o"
    with pytest.raises(LibbpfError) as info:
        BpfObject(path)
    assert info.value.errno == errno.ENOENT
    assert isinstance(info.value, OSError)
    assert str(info.value) == f"open {path}: No such file or directory"


def test_not_elf_is_logged_not_printed(
    tmp_path: Path,
    libbpf_logger: logging.Logger,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "garbage.bpf.o"
    path.write_bytes(b"this is not an ELF object\n" * 10)
    caplog.set_level(logging.DEBUG, logger=libbpf_logger.name)
    with pytest.raises(LibbpfError) as info:
        BpfObject(path)
    assert str(info.value).startswith(f"open {path}: ")
    warnings = [
        r for r in caplog.records if r.name == libbpf_logger.name and r.levelno == logging.WARNING
    ]
    assert any(str(path) in r.getMessage() for r in warnings), caplog.text
    assert all(not r.getMessage().endswith("\n") for r in caplog.records)
    assert capfd.readouterr().err == ""


def test_introspection(ringtest_obj: Path) -> None:
    with BpfObject(ringtest_obj) as obj:
        assert obj.path == str(ringtest_obj)
        assert {"events", "counter", "drops"} <= set(obj.maps())
        assert any(name.endswith(".rodata") for name in obj.maps())
        assert obj.programs() == ["handle_getppid", "handle_getpgid"]
        assert obj.program_section(PROG) == "tracepoint/syscalls/sys_enter_getppid"
        events = obj.map("events")
        assert obj.map("events") is events
        assert (events.type, events.max_entries) == (BPF_MAP_TYPE_RINGBUF, 4096 * 64)
        ctr = obj.map("counter")
        assert (ctr.type, ctr.key_size, ctr.value_size, ctr.max_entries) == (
            BPF_MAP_TYPE_ARRAY, 4, 8, 1
        )
        assert obj.map("drops").type == BPF_MAP_TYPE_PERCPU_ARRAY
        assert obj.rodata_vars() == {"target_tgid": (0, 4), "tag": (8, 8)}
        with pytest.raises(KeyError, match="nosuchmap"):
            obj.map("nosuchmap")
        with pytest.raises(KeyError, match="nosuchprog"):
            obj.program_section("nosuchprog")
        with pytest.raises(LibbpfError) as info:
            _ = ctr.fd  # no fd before load
        assert info.value.errno == errno.EBADF


def test_unknown_rodata_name(ringtest_obj: Path) -> None:
    with BpfObject(ringtest_obj) as obj:
        with pytest.raises(KeyError, match="no_such_var"):
            obj.set_rodata({"target_tgid": 1, "no_such_var": 2})
        with pytest.raises(ValueError, match="target_tgid"):
            obj.set_rodata({"target_tgid": 1 << 32})
        with pytest.raises(ValueError, match="tag"):
            obj.set_rodata({"tag": b"123456789"})
        with pytest.raises(TypeError):
            obj.set_rodata({"tag": 1.5})  # type: ignore[dict-item]


def test_close_is_idempotent_and_final(ringtest_obj: Path) -> None:
    obj = BpfObject(ringtest_obj)
    ctr = obj.map("counter")
    obj.close()
    obj.close()
    assert obj.closed
    with pytest.raises(ValueError, match="closed"):
        obj.maps()
    with pytest.raises(ValueError, match="closed"):
        obj.load()
    with pytest.raises(ValueError, match="closed"):
        _ = ctr.key_size
    with BpfObject(ringtest_obj) as obj2:
        pass
    assert obj2.closed


# --------------------------------------------------------------------------- kernel


@pytest.mark.kernel
def test_load_attach_records_and_counter(require_kernel: None, ringtest_obj: Path) -> None:
    from randguard.kernel.ringbuf import RingBuffer

    n = 1000
    tag = 0x1122334455667788
    with loaded(ringtest_obj, tag) as obj:
        # const volatile values are in the frozen .rodata map, at the BTF offsets
        rodata_name = next(m for m in obj.maps() if m.endswith(".rodata"))
        rodata = obj.map(rodata_name).lookup(KEY0)
        assert rodata is not None
        assert struct.unpack_from("<I", rodata, 0)[0] == os.getpid()
        assert struct.unpack_from("<Q", rodata, 8)[0] == tag

        events = obj.map("events")
        with RingBuffer(events.fd, events.max_entries) as ring:
            link = obj.attach(PROG)
            assert link.program == PROG
            trigger(n)
            records = ring.drain()
        assert len(records) == n
        decoded = [EVENT.unpack(r) for r in records]
        assert [seq for seq, _, _ in decoded] == list(range(n))
        assert {(t, tgid) for _, t, tgid in decoded} == {(tag, os.getpid())}
        assert counter(obj) == n
        assert sum(struct.unpack("<Q", v)[0] for v in obj.map("drops").lookup_percpu(KEY0)) == 0


@pytest.mark.kernel
def test_configuration_after_load_is_refused(require_kernel: None, ringtest_obj: Path) -> None:
    with loaded(ringtest_obj) as obj:
        # writing the initial value after load would write into memory libbpf no longer uses
        with pytest.raises(LibbpfError) as info:
            obj.set_rodata({"tag": 1})
        assert info.value.errno == errno.EBUSY
        with pytest.raises(LibbpfError):
            obj.set_max_entries("events", 4096)
        with pytest.raises(LibbpfError):
            obj.reuse_map("events", obj.map("events").fd)
        with pytest.raises(LibbpfError):
            obj.load()


@pytest.mark.kernel
def test_map_element_operations(require_kernel: None, ringtest_obj: Path) -> None:
    with loaded(ringtest_obj) as obj:
        ctr = obj.map("counter")
        assert list(ctr.keys()) == [KEY0]
        ctr.update(KEY0, struct.pack("<Q", 41))
        assert ctr.lookup(KEY0) == struct.pack("<Q", 41)
        assert ctr.lookup(struct.pack("<I", 1)) is None  # out of range: ENOENT
        with pytest.raises(LibbpfError) as info:
            ctr.delete(KEY0)  # array elements cannot be deleted
        assert info.value.errno == errno.EINVAL
        assert "counter" in str(info.value)
        with pytest.raises(ValueError):
            ctr.update(KEY0, b"short")
        with pytest.raises(ValueError):
            ctr.lookup(b"\0")

        drops = obj.map("drops")
        per_cpu = drops.lookup_percpu(KEY0)
        assert len(per_cpu) == possible_cpus()
        assert all(v == bytes(8) for v in per_cpu)
        drops.update(KEY0, struct.pack("<Q", 3))  # one value: copied to every CPU
        assert drops.lookup_percpu(KEY0) == [struct.pack("<Q", 3)] * len(per_cpu)
        with pytest.raises(TypeError, match="lookup_percpu"):
            drops.lookup(KEY0)


@pytest.mark.kernel
def test_load_failure_is_logged(
    require_kernel: None,
    ringtest_obj: Path,
    libbpf_logger: logging.Logger,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO, logger=libbpf_logger.name)
    with BpfObject(ringtest_obj) as obj:
        obj.set_max_entries("counter", 0)  # the kernel refuses an empty array
        with pytest.raises(LibbpfError) as info:
            obj.load()
    assert info.value.errno == errno.EINVAL
    assert str(info.value) == f"load {ringtest_obj}: Invalid argument"
    assert any(
        r.levelno == logging.WARNING and "counter" in r.getMessage() for r in caplog.records
    ), caplog.text
    assert capfd.readouterr().err == ""


@pytest.mark.kernel
def test_ringbuf_size_is_rounded_up_by_libbpf(require_kernel: None, ringtest_obj: Path) -> None:
    # libbpf (>= 0.7) rounds a ring buffer's max_entries up to a power-of-two number of pages,
    # so consumers must take the size from the map after load, not from configuration.
    with BpfObject(ringtest_obj) as obj:
        obj.set_rodata({"target_tgid": os.getpid()})
        obj.set_max_entries("events", 5000)
        obj.load()
        assert obj.map("events").max_entries == 8192


@pytest.mark.kernel
def test_attach_errors_name_the_program(require_kernel: None, ringtest_obj: Path) -> None:
    with BpfObject(ringtest_obj) as obj:
        obj.set_rodata({"target_tgid": os.getpid()})
        obj.set_autoload("handle_getpgid", False)
        obj.load()
        with pytest.raises(LibbpfError) as info:
            obj.attach("handle_getpgid")  # not loaded
        assert "handle_getpgid" in str(info.value)
        assert str(info.value).startswith("attach program handle_getpgid")
        with pytest.raises(KeyError):
            obj.attach("nosuchprog")


@pytest.mark.kernel
def test_link_destroy_detaches_and_is_idempotent(require_kernel: None, ringtest_obj: Path) -> None:
    with loaded(ringtest_obj) as obj:
        with obj.attach(PROG) as link:
            trigger(5)
            assert counter(obj) == 5
        assert link.destroyed
        link.destroy()
        trigger(5)
        assert counter(obj) == 5  # detached: the program no longer fires
        link2 = obj.attach(PROG)  # re-attach works after a destroy
        trigger(2)
        assert counter(obj) == 7
        link2.destroy()
        link2.destroy()
        trigger(2)
        assert counter(obj) == 7


def _links() -> dict[int, int]:
    out = subprocess.run(
        ["bpftool", "-j", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    return {link["id"]: link.get("prog_id", -1) for link in json.loads(out or "[]")}


@pytest.mark.kernel
def test_close_destroys_links(require_kernel: None, ringtest_obj: Path) -> None:
    from randguard.kernel.ringbuf import RingBuffer

    have_bpftool = shutil.which("bpftool") is not None
    before = _links() if have_bpftool else {}
    obj = loaded(ringtest_obj)
    events = obj.map("events")
    # the ring buffer mapping keeps the map alive past the object's close: a program left
    # attached would still write into it
    with RingBuffer(events.fd, events.max_entries) as ring:
        link = obj.attach(PROG)  # kept referenced on purpose: close() must destroy it anyway
        trigger(3)
        assert len(ring.drain()) == 3
        new = set(_links()) - set(before) if have_bpftool else set()
        if have_bpftool:
            assert new, "attach created no bpf_link"
        obj.close()
        assert link.destroyed
        trigger(3)
        assert ring.drain() == []
    if have_bpftool:
        deadline = time.monotonic() + 2
        while new & set(_links()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not new & set(_links())
    link.destroy()  # after the object: still fine
    obj.close()


@pytest.mark.kernel
def test_tracefs(require_kernel: None) -> None:
    path = libbpf.ensure_tracefs()
    assert path == "/sys/kernel/tracing"
    assert os.path.isdir(os.path.join(path, "events"))
    assert libbpf.ensure_tracefs() == path  # already mounted: no second mount
    assert libbpf.tracepoint_exists("syscalls", "sys_enter_getppid")
    assert not libbpf.tracepoint_exists("syscalls", "sys_enter_no_such_call")
    with pytest.raises(ValueError):
        libbpf.tracepoint_exists("..", "x")
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    assert sum(1 for m in mounts if m.split()[1:3] == [path, "tracefs"]) == 1
