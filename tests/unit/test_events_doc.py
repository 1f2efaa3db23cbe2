"""docs/events.md is the output contract in prose: it must list every event Struct of
randguard.core.events, with exactly the Struct's fields, in the Struct's order, with the JSON type
each field's annotation gives, and encoded events must come out with their keys in that order.

A section of the document is a `### StructName` heading followed by a line that starts with
`` `event_type`: `` and a Markdown table whose first column is the field name in backticks and
whose second is the JSON type (see JSON_TYPES below).
"""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import msgspec
import msgspec.inspect as mi
import pytest

from randguard.core import events, pipeline, records
from randguard.process import persistence

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"

# the JSON type names the document may use, and the msgspec types they stand for
JSON_TYPES: dict[str, type[mi.Type]] = {
    "integer": mi.IntType,
    "string": mi.StrType,
    "boolean": mi.BoolType,
    "number": mi.FloatType,
}
COMMON = ["seq", "event_type", "timestamp", "timestamp_ns", "host"]

_HEADING = re.compile(r"^### (?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*$")
_EVENT_TYPES_LINE = re.compile(r"^`event_type`:\s*(?P<rest>.*)$")
_ROW = re.compile(r"^\|\s*`(?P<field>[a-z_][a-z0-9_]*)`\s*\|\s*(?P<type>[^|]*?)\s*\|")


class Section(typing.NamedTuple):
    event_types: list[str]
    rows: list[tuple[str, str]]  # (field, JSON type) in document order


def parse_doc(text: str) -> dict[str, Section]:
    """Every `### Name` + `` `event_type`: `` section with the first table after it."""
    lines = text.splitlines()
    out: dict[str, Section] = {}
    i = 0
    while i < len(lines):
        m = _HEADING.match(lines[i])
        i += 1
        if m is None:
            continue
        j = i
        while j < len(lines) and not lines[j].strip():
            j += 1
        et = _EVENT_TYPES_LINE.match(lines[j]) if j < len(lines) else None
        if et is None:
            continue  # an ordinary heading, not a Struct section
        name = m.group("name")
        assert name not in out, f"docs/events.md: section {name} appears twice"
        types = re.findall(r"`([a-z_]+)`", et.group("rest"))
        # the table: from the first line starting with "|" up to the first line that does not
        while j < len(lines) and not lines[j].startswith("|"):
            assert not lines[j].startswith("#"), f"docs/events.md: section {name} has no table"
            j += 1
        rows = []
        while j < len(lines) and lines[j].startswith("|"):
            r = _ROW.match(lines[j])
            if r is not None:
                rows.append((r.group("field"), r.group("type")))
            j += 1
        out[name] = Section(types, rows)
        i = j
    return out


def record_structs() -> dict[str, type[events.Record]]:
    """Every subclass of events.Record, at any depth."""
    found: dict[str, type[events.Record]] = {}
    todo = list(events.Record.__subclasses__())
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo += cls.__subclasses__()
    return found


def json_type(t: mi.Type) -> str:
    """The document's spelling of a msgspec type."""
    if isinstance(t, mi.UnionType):
        rest = [u for u in t.types if not isinstance(u, mi.NoneType)]
        assert len(rest) == 1 and len(rest) < len(t.types), f"unsupported union {t}"
        return json_type(rest[0]) + " or null"
    for name, cls in JSON_TYPES.items():
        if isinstance(t, cls):
            return name
    if isinstance(t, mi.ListType) and isinstance(t.item_type, mi.StrType):
        return "array of string"
    if isinstance(t, mi.ListType) and isinstance(t.item_type, mi.StructType):
        return "array of object"  # (FileEvent.ancestors: the objects' keys are in its row)
    if isinstance(t, mi.StructType):
        return "object"  # (PersistenceChange.previous: its keys are in a table of their own)
    # string -> integer maps (counters); AgentStart.self_test maps to booleans
    if (isinstance(t, mi.DictType) and isinstance(t.key_type, mi.StrType)
            and isinstance(t.value_type, mi.IntType | mi.BoolType)):
        return "object"
    raise AssertionError(f"no documented JSON type for {t}")


STRUCTS = record_structs()
SECTIONS = parse_doc(DOC.read_text(encoding="utf-8"))


def test_every_struct_is_documented_and_nothing_else() -> None:
    assert len(STRUCTS) >= 10
    missing = sorted(set(STRUCTS) - set(SECTIONS))
    unknown = sorted(set(SECTIONS) - set(STRUCTS))
    assert not missing, f"Structs not documented in docs/events.md: {missing}"
    assert not unknown, f"docs/events.md documents Structs that do not exist: {unknown}"


def test_the_event_union_holds_every_struct() -> None:
    assert set(typing.get_args(events.Event)) == set(STRUCTS.values())


@pytest.mark.parametrize("name", sorted(STRUCTS))
def test_documented_fields_and_order_equal_the_struct(name: str) -> None:
    assert name in SECTIONS, f"docs/events.md has no section for {name}"
    fields = [f.name for f in msgspec.structs.fields(STRUCTS[name])]
    assert fields[: len(COMMON)] == COMMON, "the common fields come first"
    documented = [field for field, _ in SECTIONS[name].rows]
    assert documented == fields, f"docs/events.md, {name}: fields or their order differ"


@pytest.mark.parametrize("name", sorted(STRUCTS))
def test_documented_json_types_equal_the_annotations(name: str) -> None:
    assert name in SECTIONS, f"docs/events.md has no section for {name}"
    info = mi.type_info(STRUCTS[name])
    want = {f.name: json_type(f.type) for f in info.fields}
    for field, typ in SECTIONS[name].rows:
        assert typ == want.get(field), (
            f"docs/events.md, {name}.{field}: documented {typ!r}, annotation gives "
            f"{want.get(field)!r}")


def test_every_event_type_is_documented_under_exactly_one_struct() -> None:
    emitted = (set(records.OPS.values()) | set(records.NET_OPS.values())
               | set(pipeline._PROCESS_EVENT.values()) | {"alert", "loss", "health", "agent_start"}
               | set(persistence._TYPES.values()))
    documented = [t for s in SECTIONS.values() for t in s.event_types]
    assert len(documented) == len(set(documented)), "an event_type is listed twice"
    assert set(documented) == emitted
    assert set(records.OPS.values()) == {*SECTIONS["FileEvent"].event_types,
                                         *SECTIONS["FileAttrEvent"].event_types}
    assert set(records.NET_OPS.values()) <= set(SECTIONS["NetworkEvent"].event_types)


# --- encoding: one plausible instance per Struct ------------------------------------------

_COMMON = dict(timestamp="2026-11-27T20:30:26.128917066Z", timestamp_ns=2813172900477,
               host="vm")
_PROC = dict(pid=30779, tid=30779, ppid=27916, uid=0, gid=0, comm="sh", exe_path="/usr/bin/dash")


def samples() -> dict[str, events.Record]:
    return {
        "FileEvent": events.FileEvent(
            seq=2621, event_type="file_open", **_COMMON, syscall="openat", abi="x86_64", **_PROC,
            resolved_path="/etc/systemd/system/rand-guard-demo.service",
            filename="/etc/systemd/system/rand-guard-demo.service", old_path=None,
            old_filename=None, ret=3, error=None, flags=577, access="write", created=True, fd=3,
            inode=739, path_truncated=False, alert=True,
            detection_type="systemd_service_modified", mitre=["T1543.002"],
        ),
        "FileAttrEvent": events.FileAttrEvent(
            seq=77, event_type="file_chmod", **_COMMON, syscall="fchmodat", abi="x86_64",
            **(_PROC | {"comm": "chmod", "exe_path": "/usr/bin/chmod"}),
            resolved_path="/var/tmp/rootbash", filename="rootbash", old_path=None,
            old_filename=None, ret=0, error=None, flags=None, access=None, created=None,
            fd=None, inode=None, path_truncated=False, alert=True,
            detection_type="setid_bit_set", mitre=["T1548.001"],
            ancestors=[events.Ancestor(2107, "bash", "/usr/bin/bash"),
                       events.Ancestor(2094, "sshd", "/usr/sbin/sshd")],
            mode=0o4755, owner_uid=None,
            owner_gid=None, length=None, old_mode=0o755, old_owner_uid=None, old_owner_gid=None,
            old_length=None, device=None, xattr_name=None, mtime_ns=None,
        ),
        "NetworkEvent": events.NetworkEvent(
            seq=15, event_type="network_connect", **_COMMON, syscall="connect", abi="x86_64",
            **(_PROC | {"comm": "python", "exe_path": "/usr/bin/python3.11"}), family="ipv4",
            protocol="tcp", sock_type="stream", socket_fd=7, direction="outbound",
            local_addr="127.0.0.1", local_port=50786, remote_addr="127.0.0.1", remote_port=4444,
            scope_id=None, unix_path=None, ret=0, error=None, result="success", inventory=False,
            alert=True, detection_type="suspicious_outbound_port", mitre=["T1571"],
        ),
        "ProcessStart": events.ProcessStart(
            seq=3, event_type="process_start", **_COMMON,
            **(_PROC | {"comm": "rm", "exe_path": "/usr/bin/rm"}), euid=0, egid=0,
            filename="/usr/bin/rm", filename_truncated=False,
            source="execve", abi="x86_64", argv=["rm", "-f", "x"], argv_truncated=False,
            cwd="/root",
            parent_comm="bash", parent_exe_path="/usr/bin/bash", cgroup_id=1,
        ),
        "ProcessExecFailed": events.ProcessExecFailed(
            seq=4, event_type="process_exec_failed", **_COMMON, **_PROC,
            filename="/usr/local/bin/rm", source="execve", abi="i386", ret=-2, error="ENOENT",
        ),
        "ProcessFork": events.ProcessFork(
            seq=5, event_type="process_fork", **_COMMON, parent_pid=27916, child_pid=30779,
            child_tid=30779, comm="bash", exe_path="/usr/bin/bash", uid=0, gid=0, thread=False,
        ),
        "ProcessExit": events.ProcessExit(
            seq=6, event_type="process_exit", **_COMMON, pid=30779, tid=30779, ppid=27916,
            comm="rm", exe_path="/usr/bin/rm", exit_code=0, signal=None, core_dumped=False,
            lifetime_ns=1843211, thread=False,
        ),
        "Alert": events.Alert(
            seq=2622, event_type="alert", **_COMMON, rule_id="FILE-SYSTEMD-001",
            rule_name="Systemd unit modified", rule_type="file", severity="high",
            action="alert", mitre=["T1543.002"], source_event_type="file_open",
            source_seq=2621, pid=30779, ppid=27916, comm="sh", exe_path="/usr/bin/dash",
            path="/etc/systemd/system/rand-guard-demo.service", operation="file_open",
            direction=None, port=None, addr=None,
        ),
        "Loss": events.Loss(
            seq=900, event_type="loss", **_COMMON, kind="kernel_ring_full", family="file",
            count=5120, total=5120,
        ),
        "Health": events.Health(
            seq=6700, event_type="health", **_COMMON, final=False, uptime_s=13.932,
            records_read=8581, events_written={"agent_start": 1, "file_open": 75},
            kernel_ring_drops={"file": 0, "process": 0, "network": 0},
            kernel_filtered={"file": 319912, "process": 0, "network": 0},
            kernel_table_full={"file": 0, "process": 0, "network": 0},
            kernel_skipped_runs={"sys_enter": 0, "sys_exit": 2, "sched_process_exec": 0},
            decode_errors={}, userspace_filtered=1943, rate_limited={}, output_dropped={},
            output_write_failures=0, output_queued=30, ring_pending_bytes=0,
            ring_size_bytes=8388608, process_table_size=89, process_table_evictions=0,
            rss_kb=39588, cpu_user_s=0.219, cpu_system_s=2.984,
        ),
        "PersistenceChange": events.PersistenceChange(
            seq=41, event_type="persistence_change", **_COMMON, path="/etc/cron.d/backup",
            change="modified", while_stopped=True,
            previous=_FACTS, current=msgspec.structs.replace(
                _FACTS, sha256="9cbbcdc26b6b2c8464bb61cf32dc57d8559a48733908347768e924f2bcf2ab56",
                size=41, mtime_ns=1796463528639487737),
            detection_type="cron_modified", mitre=["T1053.003"], source_seq=None,
        ),
        "PersistenceInventory": events.PersistenceInventory(
            seq=42, event_type="persistence_inventory", **_COMMON, files=839,
            hashed_bytes=3663403, skipped=164, not_listed=0, changes=1, duration_ms=87.638,
            state_file="/var/lib/randguard/inventory.state", previous_state="loaded",
        ),
        "PersistenceState": events.PersistenceState(
            seq=2, event_type="persistence_state", **_COMMON,
            state_file="/var/lib/randguard/inventory.state", status="tampered",
            reason="its checksum does not match its content",
        ),
        "AgentStart": events.AgentStart(
            seq=1, event_type="agent_start", **_COMMON, version="0.1.0", libbpf="1.1",
            kernel="6.18.44", config="/work/main/config/randguard.toml",
            hooks_attached=["openat", "sched_process_exec", "sched_process_fork"],
            hooks_missing=[], self_test={"process": True, "file": True},
            self_test_events=["file_open", "process_fork"],
        ),
    }


_FACTS = events.FileFacts(
    sha256="a23a5299ff4c65e23fafdf3527ffe0497f71ba312a21c587e2440172d8c6870c", size=20,
    mode=0o100644, uid=0, gid=0, mtime_ns=1796463524635487713, inode=1122, device=65024,
    generation=1703550195, link_target=None, skipped=None)

_PY_TYPES = {"integer": int, "string": str, "boolean": bool, "number": float}


def _json_matches(value: object, typ: str) -> bool:
    """Does a decoded JSON value have the documented JSON type?"""
    if typ.endswith(" or null"):
        if value is None:
            return True
        typ = typ.removesuffix(" or null")
    if typ == "array of string":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if typ == "array of object":
        return isinstance(value, list) and all(isinstance(v, dict) for v in value)
    if typ == "object":
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if typ == "number":
        return type(value) in (int, float)  # JSON does not tell 1.0 from 1
    return type(value) is _PY_TYPES[typ]


def test_every_struct_has_a_sample() -> None:
    assert set(samples()) == set(STRUCTS)


@pytest.mark.parametrize("name", sorted(STRUCTS))
def test_encoded_keys_come_out_in_the_documented_order(name: str) -> None:
    assert name in SECTIONS, f"docs/events.md has no section for {name}"
    ev = samples()[name]
    assert type(ev) is STRUCTS[name]
    line = events.encode_lines([ev])
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    obj = json.loads(line)
    rows = SECTIONS[name].rows
    assert list(obj) == [field for field, _ in rows]
    for field, typ in rows:
        assert _json_matches(obj[field], typ), f"{name}.{field} = {obj[field]!r} is not {typ}"
    assert obj["event_type"] in SECTIONS[name].event_types
    # and the line decodes back, strictly typed, into the same event
    assert msgspec.json.decode(line, type=STRUCTS[name]) == ev


def test_the_parser_rejects_what_it_should() -> None:
    text = (
        "### FileEvent\n\n`event_type`: `file_open`\n\n"
        "| field | JSON type | meaning |\n|---|---|---|\n| `seq` | integer | n |\n"
        "| `host` | string or null | h |\n\n### Escaping\n\nprose\n"
    )
    parsed = parse_doc(text)
    assert list(parsed) == ["FileEvent"]
    assert parsed["FileEvent"] == Section(["file_open"], [("seq", "integer"),
                                                         ("host", "string or null")])
