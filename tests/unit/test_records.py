"""Decoding bad records: counted by reason, never a crash."""

from __future__ import annotations

import struct

import pytest

from randguard.core import records
from randguard.core.matcher import FileFilter
from randguard.core.pipeline import Pipeline, PipelineState
from randguard.core.proctable import ProcessTable


def file_record(strings: bytes = b"/etc/x", **over: object) -> bytes:
    """A well-formed file record (open of /etc/x) built the way the kernel lays it out;
    `strings` follow the fixed part (the slots given in `over` point into them)."""
    name = strings
    v = dict(kind=records.KIND_FILE, version=1, size=records.FILE.size + len(name), flags=0,
             ts=1, pid=10, tid=11, uid=0, gid=0, ret=3, oflags=1, ino=5, dev=0, ppid=1,
             sysc=3, op=1, fflags=records.FF_WRITE, fd=-100, comm=b"sh",
             path=(0, 0), dir=(0, 0), name=(records.FILE.size, len(name)), dir2=(0, 0),
             name2=(0, 0), abi=0, old=0)
    v.update(over)
    fixed = records.FILE.pack(
        v["kind"], v["version"], v["size"], v["flags"], v["ts"], v["pid"], v["tid"], v["uid"],
        v["gid"], v["ret"], v["oflags"], v["ino"], v["dev"], v["ppid"], v["sysc"], v["op"],
        v["fflags"], v["fd"], v["comm"], *v["path"], *v["dir"], *v["name"], *v["dir2"],
        *v["name2"], v["abi"], v["old"],
    )
    return fixed + name


def test_good_record_decodes() -> None:
    r = records.decode(file_record())
    assert isinstance(r, records.FileRecord)
    assert r.name == b"/etc/x" and r.path is None and r.comm == b"sh" and r.fd == -100


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x01\x00", "short_record"),
        (file_record(version=2), "bad_version"),
        (file_record(kind=99), "unknown_kind"),
        (file_record()[:60], "short_record"),
        (file_record(size=60)[:60] + b"\0" * 4, "short_record"),
        (file_record(name=(records.FILE.size, 400)), "bad_string"),
        (struct.pack("<HHHH", records.KIND_PROC_EXIT, 1, 8, 0) + b"\0" * 24, "short_record"),
    ],
)
def test_bad_records_raise_decode_error(raw: bytes, reason: str) -> None:
    with pytest.raises(records.DecodeError) as e:
        records.decode(raw)
    assert e.value.reason == reason


def test_pipeline_counts_bad_records_and_goes_on() -> None:
    pipe = Pipeline(FileFilter(["/etc"], [], [], []), PipelineState(ProcessTable(64)), "h")
    out = pipe.feed([file_record(kind=99), b"", file_record(version=7), file_record()])
    assert [e.resolved_path for e in out] == ["/etc/x"]
    assert pipe.state.decode_errors == {"unknown_kind": 1, "short_record": 1, "bad_version": 1}


def test_resolved_rename_target_is_the_kernels_path_and_the_name_stays_raw() -> None:
    # resolve.bpf.c's case: the target walked into `path`, the name as passed in `name2`
    real, src, given = b"/etc/cron.d/job", b"/var/tmp/staged", b"/tmp/x/job"
    base = records.FILE.size
    raw = file_record(
        real + src + given, sysc=records.SYSCALLS.index("renameat2"), op=3, ret=0, fflags=0,
        path=(base, len(real)), name=(base + len(real), len(src)),
        name2=(base + len(real) + len(src), len(given)))
    pipe = Pipeline(FileFilter(["/etc/cron.d"], [], [], []), PipelineState(ProcessTable(64)), "h")
    (ev,) = pipe.feed([raw])
    assert ev.event_type == "file_rename" and ev.syscall == "renameat2"
    assert ev.resolved_path == "/etc/cron.d/job" and ev.filename == "/tmp/x/job"
    assert ev.old_path == "/var/tmp/staged" and ev.path_truncated is False
    # the same rename joined as given (no resolver) is not under the watched directory
    lexical = file_record(
        src + given, sysc=records.SYSCALLS.index("renameat2"), op=3, ret=0, fflags=0,
        name=(base, len(src)), name2=(base + len(src), len(given)))
    assert pipe.feed([lexical]) == [] and pipe.state.filtered == 1
