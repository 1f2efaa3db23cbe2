"""Tests of the mmapped ring buffer consumer (agent/randguard/kernel/ringbuf.py), fed by the
test object tests/bpf/ringtest.bpf.c (getppid: 24-byte records; getpgid: 40-byte records,
every third discarded, 48 bytes in the ring so they straddle the end of the ring)."""

from __future__ import annotations

import mmap
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import loaded

from randguard.kernel.libbpf import BpfObject
from randguard.kernel.ringbuf import RingBuffer

KEY0 = struct.pack("<I", 0)
SMALL = struct.Struct("<QQQ")  # seq, tag, tgid
BIG = struct.Struct("<QQQQQ")  # seq, tag, tgid, kind, check
CHECK = 0xA5A5A5A55A5A5A5A
SMALL_PROG = "handle_getppid"
BIG_PROG = "handle_getpgid"


def small_trigger(n: int) -> None:
    for _ in range(n):
        os.getppid()


def big_trigger(n: int) -> None:
    for _ in range(n):
        os.getpgid(0)


def ring_of(obj: BpfObject) -> RingBuffer:
    events = obj.map("events")
    return RingBuffer(events.fd, events.max_entries)


def u64(obj: BpfObject, name: str) -> int:
    m = obj.map(name)
    if name == "drops":
        return sum(struct.unpack("<Q", v)[0] for v in m.lookup_percpu(KEY0))
    value = m.lookup(KEY0)
    assert value is not None
    return struct.unpack("<Q", value)[0]


def check_small(records: list[bytes], tag: int, first_seq: int) -> int:
    """Every record intact and in order; returns the next expected seq."""
    seq = first_seq
    for r in records:
        assert SMALL.unpack(r) == (seq, tag, os.getpid())
        seq += 1
    return seq


def test_bad_size_is_refused() -> None:
    for size in (0, -4096, 4096 * 3, 100):
        with pytest.raises(ValueError, match="power of two"):
            RingBuffer(-1, size)


@pytest.mark.kernel
def test_records_in_order_and_limit(require_kernel: None, ringtest_obj: Path) -> None:
    with loaded(ringtest_obj, tag=42) as obj, ring_of(obj) as ring:
        assert ring.capacity == 4096 * 64
        assert ring.drain() == []
        assert ring.pending_bytes() == 0
        obj.attach(SMALL_PROG)
        small_trigger(100)
        assert ring.pending_bytes() == 100 * 32  # 24-byte payload + 8-byte header
        first = ring.drain(limit=10)
        assert len(first) == 10
        assert ring.pending_bytes() == 90 * 32
        rest = ring.drain()
        assert len(rest) == 90
        assert check_small(first + rest, 42, 0) == 100
        assert ring.pending_bytes() == 0
        assert ring.drain() == []


@pytest.mark.kernel
def test_wait(require_kernel: None, ringtest_obj: Path) -> None:
    with loaded(ringtest_obj) as obj, ring_of(obj) as ring:
        obj.attach(SMALL_PROG)
        assert ring.wait(0) is False
        t0 = time.monotonic()
        assert ring.wait(50) is False
        assert time.monotonic() - t0 >= 0.04
        small_trigger(1)  # reader caught up: the default (adaptive) policy wakes it
        assert ring.wait(1000) is True
        assert len(ring.drain()) == 1
        assert ring.wait(0) is False
        assert ring.fileno() >= 0


@pytest.mark.kernel
def test_discarded_records_are_skipped(require_kernel: None, ringtest_obj: Path) -> None:
    tag = 0xDEADBEEF
    with loaded(ringtest_obj, tag=tag) as obj, ring_of(obj) as ring:
        obj.attach(BIG_PROG)
        big_trigger(30)
        assert ring.pending_bytes() == 30 * 48  # discarded records take space until consumed
        records = ring.drain()
        assert [BIG.unpack(r)[0] for r in records] == [s for s in range(30) if s % 3 != 2]
        assert ring.pending_bytes() == 0


def _wrap_rounds(
    obj: BpfObject,
    ring: RingBuffer,
    trigger: Callable[[int], None],
    per_round: int,
    rounds: int,
    record: struct.Struct,
    tag: int,
) -> int:
    seq = 0
    received = 0
    for _ in range(rounds):
        trigger(per_round)
        records = ring.drain()
        for r in records:
            fields = record.unpack(r)
            if record is BIG:
                while seq % 3 == 2:  # discarded by the program
                    seq += 1
                assert fields == (seq, tag, os.getpid(), 1, seq ^ tag ^ CHECK)
            else:
                assert fields == (seq, tag, os.getpid())
            seq += 1
        received += len(records)
    assert u64(obj, "drops") == 0
    return received


@pytest.mark.kernel
@pytest.mark.parametrize("prog", [SMALL_PROG, BIG_PROG])
def test_wrap_around(require_kernel: None, ringtest_obj: Path, prog: str) -> None:
    tag = 0x0123456789ABCDEF
    size = 4096  # the smallest ring: wraps every ~100 records
    rounds = 60
    with loaded(ringtest_obj, tag=tag, ring_size=size) as obj, ring_of(obj) as ring:
        obj.attach(prog)
        if prog == SMALL_PROG:
            per_round = 100  # 3,200 bytes of 4,096
            got = _wrap_rounds(obj, ring, small_trigger, per_round, rounds, SMALL, tag)
            assert got == per_round * rounds
        else:
            per_round = 70  # 3,360 bytes of 4,096; 48-byte records straddle the end
            got = _wrap_rounds(obj, ring, big_trigger, per_round, rounds, BIG, tag)
            total = per_round * rounds
            assert got == sum(1 for s in range(total) if s % 3 != 2)
        assert u64(obj, "counter") == per_round * rounds
        assert per_round * rounds * 32 > 10 * size


@pytest.mark.kernel
def test_overflow_counts_drops(require_kernel: None, ringtest_obj: Path) -> None:
    produced = 1000
    with loaded(ringtest_obj, tag=7, ring_size=4096) as obj, ring_of(obj) as ring:
        obj.attach(SMALL_PROG)
        small_trigger(produced)
        records = ring.drain()
        drops = u64(obj, "drops")
        assert drops > 0
        assert len(records) + drops == produced
        assert u64(obj, "counter") == produced
        assert check_small(records, 7, 0) == len(records)  # the ring kept the oldest ones
        # space is free again after the drain
        small_trigger(10)
        assert check_small(ring.drain(), 7, produced) == produced + 10


@pytest.mark.kernel
def test_two_objects_share_one_ring(require_kernel: None, ringtest_obj: Path) -> None:
    n = 200
    with loaded(ringtest_obj, tag=1) as first:
        events = first.map("events")
        with loaded(ringtest_obj, tag=2, ring_size=4096, reuse_fd=events.fd) as second:
            # the reused map's definition wins over the second object's own settings
            assert second.map("events").max_entries == events.max_entries
            with ring_of(first) as ring:
                first.attach(SMALL_PROG)
                second.attach(SMALL_PROG)
                small_trigger(n)
                records = ring.drain()
                assert len(records) == 2 * n
                by_tag: dict[int, list[int]] = {1: [], 2: []}
                for r in records:
                    seq, tag, tgid = SMALL.unpack(r)
                    assert tgid == os.getpid()
                    by_tag[tag].append(seq)
                assert by_tag == {1: list(range(n)), 2: list(range(n))}

                # closing the first object leaves the shared ring to the second one
                first.close()
                small_trigger(3)
                tail = [SMALL.unpack(r)[:2] for r in ring.drain()]
                assert tail == [(n, 2), (n + 1, 2), (n + 2, 2)]


@pytest.mark.kernel
def test_close_order_and_idempotency(require_kernel: None, ringtest_obj: Path) -> None:
    obj = loaded(ringtest_obj)
    ring = ring_of(obj)
    obj.attach(SMALL_PROG)
    small_trigger(5)
    obj.close()  # object first: the mapping keeps the map alive
    assert len(ring.drain()) == 5
    ring.close()
    ring.close()
    assert ring.closed
    for call in (ring.drain, ring.pending_bytes, lambda: ring.wait(0), ring.fileno):
        with pytest.raises(ValueError, match="closed"):
            call()

    # ring first, then the object; and the context manager form
    with loaded(ringtest_obj) as obj2:
        with ring_of(obj2) as ring2:
            obj2.attach(SMALL_PROG)
            small_trigger(2)
        assert ring2.closed
        small_trigger(2)
        assert u64(obj2, "counter") == 4


@pytest.mark.kernel
def test_mappings_are_protected(require_kernel: None, ringtest_obj: Path) -> None:
    with loaded(ringtest_obj) as obj, ring_of(obj) as ring:
        data = ring._data_mm
        assert data is not None
        assert len(data) == mmap.PAGESIZE + 2 * ring.capacity
        with pytest.raises(TypeError):
            data[0:1] = b"x"  # producer page and data are read-only
