"""Lines written once (memo.py): a record seen before, but for its time, is written from the
first one's NDJSON. Proven against the pipeline without any memo: every record fed to a
Pipeline of its own (the same judges and state, an empty memo), the same bytes must come out,
through the process changes that make a kept line wrong (exec, exit, a reused pid, eviction).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import msgspec
import pytest
from recgen import record

from randguard.core import records
from randguard.core.config import parse_config
from randguard.core.events import FileEvent, WallClock, encoder
from randguard.core.memo import Line, template
from randguard.core.pipeline import Pipeline
from randguard.process.output import Output
from randguard.process.runtime import make_pipeline

OP = {name: op for op, name in records.OPS.items()}
SYS = records.SYSCALLS.index
NO_CONFIG = Path("/nonexistent-rg-config-dir/config.toml")
CONFIG = """
[agent]
id = "lines-host"
[file]
watch_paths = ["/etc", "/var/tmp/rg-lines/w"]
exclude_paths = ["/var/tmp/rg-lines/w/skip"]
[performance]
max_process_cache_entries = %d
max_events_per_second = %d
"""
# what a process does again and again: watched, filtered, annotated (a detection, a rule),
# failed, /etc/passwd, a path with a % and an escaped character in it
FILES = [(OP["file_open"], b"/var/tmp/rg-lines/w/f", 3, 0o101),
         (OP["file_open"], b"/var/tmp/rg-lines/w/skip/f", 3, 0o101),
         (OP["file_open"], b"/var/tmp/rg-lines/unwatched", 3, 0),
         (OP["file_open"], b"/etc/cron.d/job", 4, 0o101),
         (OP["file_open"], b"/var/tmp/rg-lines/w/100%d \"q\"\n", 5, 0o1101),
         (OP["file_open"], b"/var/tmp/rg-lines/w/missing", -2, 0o101),
         (OP["file_write"], b"/var/tmp/rg-lines/w/f", 1, 0),
         (OP["file_write"], b"/etc/passwd", 64, 0)]
EXES = [(b"sh", b"/usr/bin/dash"), (b"crontab", b"/usr/bin/crontab"), (b"cp", b"/usr/bin/cp")]


def _file(ts: int, pid: int, ppid: int, comm: bytes, op: int, path: bytes, ret: int,
          flags: int) -> bytes:
    if op == OP["file_open"]:
        return record(records.KIND_FILE, ts_ns=ts, pid=pid, ppid=ppid, comm=comm, ret=ret,
                      flags=flags, fflags=records.FF_WRITE if flags & 3 else 0,
                      syscall=SYS("openat"), op=op, fd=-100, ino=77,
                      path=path if ret >= 0 else None, name=path)
    return record(records.KIND_FILE, ts_ns=ts, pid=pid, ppid=ppid, comm=comm, ret=ret,
                  syscall=SYS("write"), op=op, fd=3, ino=77, path=path)


def workload(n: int, seed: int, most: int) -> list[bytes]:
    """Processes repeating the same calls, with forks, execs and exits between them (a pid
    reused by a process of another image, too); at most `most` processes at once."""
    rnd = random.Random(seed)
    ts = 5_000_000_000
    procs = {100: (b"sh", 1), 101: (b"sh", 100)}
    out: list[bytes] = []
    while len(out) < n:
        ts += rnd.choice([1, 1_000, 400_000_000])  # now and then into the next second
        r = rnd.random()
        pid = rnd.choice(sorted(procs))
        comm, ppid = procs[pid]
        if r < 0.003:  # exec: the same pid, another image
            comm, exe = rnd.choice(EXES)
            out.append(record(records.KIND_PROC_EXEC, ts_ns=ts, pid=pid, ppid=ppid, comm=comm,
                              exe=exe, filename=exe, parent_comm=procs.get(ppid, (b"",))[0]))
            procs[pid] = (comm, ppid)
        elif r < 0.005 and len(procs) > 1:  # exit, and the pid reused by a child of another
            out.append(record(records.KIND_PROC_EXIT, ts_ns=ts, pid=pid, group_dead=1,
                              comm=comm))
            del procs[pid]
            parent = rnd.choice(sorted(procs))
            out.append(record(records.KIND_PROC_FORK, ts_ns=ts + 1, pid=parent,
                              parent_tgid=parent, child_tgid=pid, child_tid=pid,
                              comm=procs[parent][0]))
            procs[pid] = (procs[parent][0], parent)
        elif r < 0.007 + most / 10_000 and len(procs) < most:  # a new process
            child = max(procs) + 1
            out.append(record(records.KIND_PROC_FORK, ts_ns=ts, pid=pid, parent_tgid=pid,
                              child_tgid=child, child_tid=child, comm=comm))
            procs[child] = (comm, pid)
        else:
            out.append(_file(ts, pid, ppid, comm, *rnd.choice(FILES)))
    return out


def _run(raws: list[bytes], tmp_path: Path, memo: bool, table: int, rate: int) -> bytes:
    cfg = parse_config(CONFIG % (table, rate))
    pipe = make_pipeline(cfg, NO_CONFIG, homes=["/root"])
    pipe.state.clock = WallClock(1_700_000_000_000_000_000)
    path = tmp_path / f"out-{memo}.ndjson"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    lines = 0
    try:
        out = Output(fd, max_queued=1 << 22)
        for i in range(0, len(raws), 64):
            batch = raws[i:i + 64]
            if memo:
                events = pipe.feed(batch)
            else:  # a pipeline per record: the same judges and state, nothing remembered
                events = [ev for raw in batch for ev in Pipeline(
                    pipe.file_filter, pipe.state, pipe.host, pipe.process, pipe.rules,
                    pipe.limiter).feed([raw])]
            lines += sum(type(ev) is Line for ev in events)
            out.submit(events)
        out.close(30)
    finally:
        os.close(fd)
    assert not pipe.state.decode_errors
    assert (lines > len(raws) // 10) if memo else lines == 0  # the memo was used, or not at all
    return path.read_bytes()


@pytest.mark.parametrize(("table", "rate"), [(1024, 0), (64, 0), (1024, 50)],
                         ids=["plain", "evicting table", "rate limited"])
def test_lines_are_what_the_pipeline_without_a_memo_writes(tmp_path: Path, table: int,
                                                           rate: int) -> None:
    raws = workload(20_000, seed=table + rate, most=6 if table > 64 else 100)
    memo = _run(raws, tmp_path, True, table, rate)
    assert memo == _run(raws, tmp_path, False, table, rate)
    events = [msgspec.json.decode(line) for line in memo.splitlines()]
    # what makes a kept line wrong happened: the same process wrote under more than one image
    exes = {(e["pid"], e["exe_path"]) for e in events if e["event_type"] == "file_open"}
    assert len({pid for pid, _ in exes}) < len(exes)
    assert any(e.get("alert") for e in events) and any(e.get("error") for e in events)


def test_a_line_is_the_event_encoded() -> None:
    ev = FileEvent(
        event_type="file_open", timestamp="2026-12-05T17:36:12.000000042Z", timestamp_ns=42,
        host="h", syscall="openat", abi="x86_64", pid=1, tid=1, ppid=0, uid=0, gid=0,
        comm="a%b", exe_path=None, resolved_path='/w/100%d "é"\n', filename=None,
        old_path=None, old_filename=None, ret=3, error=None, flags=0, access="read",
        created=False, fd=3, inode=None, path_truncated=False)
    head, rest = template(ev)
    line = Line("file_open", head, rest, b"2026-12-05T17:36:13.", 5, 1_000_000_005)
    want = msgspec.structs.replace(ev, seq=7, timestamp="2026-12-05T17:36:13.000000005Z",
                                   timestamp_ns=1_000_000_005)
    assert line.line(7) == encoder.encode(want) + b"\n"
