"""The pure pipeline on records recorded from the real kernel (tests/data/scenario.*)."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest

from randguard.core.config import load_config
from randguard.core.events import WallClock, encode_lines
from randguard.core.matcher import FileFilter
from randguard.core.pipeline import Pipeline, PipelineState
from randguard.core.proctable import ProcessTable
from randguard.process import recording

DATA = Path(__file__).resolve().parents[1] / "data"
W = "/var/tmp/rg-scenario/watched"


@pytest.fixture(scope="module")
def events() -> list[dict]:
    cfg = load_config(DATA / "scenario.toml")
    pipe = Pipeline(FileFilter.from_config(cfg.file),
                    PipelineState(ProcessTable(4096), WallClock(0)), "test-host")
    with open(DATA / "scenario.rgrec", "rb") as f:
        out = pipe.feed(list(recording.read(f)))
    assert not pipe.state.decode_errors
    return [msgspec.json.decode(line) for line in encode_lines(out).splitlines()]


def pick(events: list[dict], kind: str, path: str) -> list[dict]:
    return [e for e in events if e["event_type"] == kind and e.get("resolved_path") == path]


def test_create_write_once(events: list[dict]) -> None:
    (op,) = pick(events, "file_open", f"{W}/a.conf")
    assert (op["created"], op["access"], op["syscall"], op["ret"]) == (True, "write", "openat", 3)
    (wr,) = pick(events, "file_write", f"{W}/a.conf")  # two writes, one event
    assert wr["ret"] == 3 and wr["fd"] == 3 and wr["pid"] == op["pid"]
    assert op["exe_path"] and op["exe_path"].startswith("/")  # from the recorded exec


def test_relative_dotdot_and_dirfd_names(events: list[dict]) -> None:
    (b,) = pick(events, "file_open", f"{W}/sub/b.conf")
    assert b["filename"] == "..//sub/./b.conf"
    (c,) = pick(events, "file_open", f"{W}/c.conf")
    assert c["filename"] == "c.conf" and c["access"] == "read_write"
    (d,) = pick(events, "file_open", f"{W}/missing/d.conf")
    assert (d["ret"], d["error"], d["created"], d["fd"]) == (-2, "ENOENT", False, None)


def test_reads_only_under_read_paths(events: list[dict]) -> None:
    assert [e["access"] for e in pick(events, "file_open", f"{W}/secret")] == ["write", "read"]
    assert [e["access"] for e in pick(events, "file_open", f"{W}/a.conf")] == ["write"]


def test_rename_from_excluded_links_and_unlinks(events: list[dict]) -> None:
    (rn,) = pick(events, "file_rename", f"{W}/x.service")
    assert rn["old_path"] == f"{W}/excluded/x.service"
    assert not [e for e in events if e.get("resolved_path", "").startswith(f"{W}/excluded")]
    (sym,) = pick(events, "file_link", f"{W}/link.conf")
    assert sym["syscall"] == "symlink" and sym["old_path"] == "a.conf"
    (hard,) = pick(events, "file_link", f"{W}/hard.conf")
    assert hard["syscall"] == "link" and hard["old_path"] == f"{W}/a.conf"
    unlinked = {e["resolved_path"] for e in events if e["event_type"] == "file_unlink"}
    assert {f"{W}/link.conf", f"{W}/hard.conf", f"{W}/x.service", W} <= unlinked


def test_odd_bytes_are_escaped_and_json_stays_valid(events: list[dict]) -> None:
    (odd,) = pick(events, "file_open", f"{W}/odd\n\\xff")
    assert odd["filename"] == f"{W}/odd\n\\xff"


def test_every_event_of_a_type_has_the_same_keys(events: list[dict]) -> None:
    keys: dict[str, set[str]] = {}
    for e in events:
        assert set(e) == keys.setdefault(e["event_type"], set(e))
        assert e["host"] == "test-host" and e["timestamp"].endswith("Z")
    assert {"file_open", "file_write", "process_start", "process_exit"} <= set(keys)


def test_the_scenario_process_is_known(events: list[dict]) -> None:
    (op,) = pick(events, "file_open", f"{W}/a.conf")
    (start,) = [e for e in events if e["event_type"] == "process_start"
                and e["pid"] == op["pid"]]
    assert start["exe_path"] == op["exe_path"] and start["source"] == "execve"
    exits = [e for e in events if e["event_type"] == "process_exit" and e["pid"] == op["pid"]]
    assert exits and exits[0]["exit_code"] == 0


def test_wall_clock_is_rfc3339_with_nanoseconds_in_any_order() -> None:
    # ring order is not time order across CPUs: stamps step back over second boundaries too
    offset = 1_764_201_600 * 10**9  # 2025-11-27T00:00:00Z
    clock = WallClock(offset)
    for mono in (5, 999_999_999, 1_000_000_000, 999_999_998, 86_400 * 10**9 + 7,
                 3 * 10**9 + 123_456_789, 2 * 10**9, 0):
        t = time.gmtime((mono + offset) // 10**9)
        want = time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{(mono + offset) % 10**9:09d}Z"
        assert clock.format(mono) == want
