"""The record contract: records.py and the compiled objects' BTF describe the same layouts."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from randguard import records
from randguard.libbpf import BpfObject

BPF_DIR = Path(__file__).resolve().parents[2] / "agent" / "randguard" / "bpf"
OBJECTS = ("process", "file", "network")


def _object(name: str) -> Path:
    path = BPF_DIR / f"{name}.bpf.o"
    if not path.exists():
        if os.environ.get("RANDGUARD_REQUIRE_KERNEL_TESTS") == "1":
            pytest.fail(f"{path} missing: the contract must be checked on CI")
        pytest.skip(f"{path} not built (run make)")
    return path


@pytest.mark.parametrize("name", OBJECTS)
def test_decoder_matches_compiled_layouts(name: str) -> None:
    with BpfObject(_object(name)) as obj:
        assert records.layout_mismatches(obj.struct_layout) == []
        size, members = obj.struct_layout("rg_file_event")
    assert size == records.FILE.size
    assert members["path"] == (records.FILE.size - 32, 4)


def test_a_drifted_layout_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    drifted = dict(records.LAYOUTS)
    fields = list(drifted["rg_proc_exit"])
    fields[0] = ("exit_code", "q")  # an int64 where the kernel has an int32
    drifted["rg_proc_exit"] = tuple(fields)
    monkeypatch.setattr(records, "LAYOUTS", drifted)
    with BpfObject(_object("process")) as obj:
        problems = records.layout_mismatches(obj.struct_layout)
    assert any("rg_proc_exit" in p and "exit_code" not in p for p in problems)  # size
    assert any("rg_proc_exit.group_dead" in p for p in problems)


HEADER = Path(__file__).resolve().parents[2] / "bpf_src" / "randguard.h"


def _c_enum(name: str) -> dict[str, int]:
    """`NAME = value` members of a C enum in randguard.h."""
    text = HEADER.read_text()
    body = text[text.index(f"enum {name} {{"):]
    body = body[: body.index("};")]
    return {m: int(v) for m, v in re.findall(r"^\s*(RG_\w+)\s*=\s*(\d+)", body, re.M)}


def test_syscall_and_op_ids_match_the_header() -> None:
    """records.SYSCALLS and OPS are indexed by the kernel's enum values."""
    syscalls = _c_enum("rg_syscall")
    assert syscalls.pop("RG_SYS_MAX") == len(records.SYSCALLS)
    assert {f"RG_SYS_{n.upper()}": i for i, n in enumerate(records.SYSCALLS) if n} == syscalls
    ops = _c_enum("rg_file_op")
    assert {f"RG_OP_{n.removeprefix('file_').upper()}": i for i, n in records.OPS.items()} == ops


def test_mtime_markers_match_the_header() -> None:
    defines = dict(re.findall(r"^#define (RG_MTIME_\w+) (0x[0-9A-F]+)ULL", HEADER.read_text(),
                              re.M))
    assert {k: int(v, 16) for k, v in defines.items()} == {
        "RG_MTIME_NOW": records.MTIME_NOW, "RG_MTIME_KEPT": records.MTIME_KEPT,
        "RG_MTIME_UNKNOWN": records.MTIME_UNKNOWN}


def test_file_flags_match_the_header() -> None:
    """records.FF_* are randguard.h's enum rg_file_flag, bit for bit."""
    text = HEADER.read_text()
    body = text[text.index("enum rg_file_flag {"):]
    body = body[:body.index("};")]
    bits = re.findall(r"^\s*RG_(FF_\w+)\s*=\s*1 << (\d+)", body, re.M)
    header = {m: 1 << int(b) for m, b in bits}
    assert header == {n: getattr(records, n) for n in dir(records) if n.startswith("FF_")}


def test_inode_key_matches_what_the_loader_packs() -> None:
    """rg_persist_inodes' key, as loader.KernelSide.set_persist_inodes packs it."""
    with BpfObject(_object("file")) as obj:
        size, members = obj.struct_layout("rg_inode_key")
    assert size == records.INODE_KEY.size
    assert members == {"ino": (0, 8), "dev": (8, 4), "gen": (12, 4)}
