"""The record contract: records.py and the compiled objects' BTF describe the same layouts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from randguard import loader, records
from randguard.libbpf import BpfObject

ROOT = Path(__file__).resolve().parents[2]
BPF_DIR = ROOT / "agent" / "randguard" / "bpf"
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


HEADER = ROOT / "bpf_src" / "randguard.h"


@pytest.mark.parametrize("name", (*OBJECTS, "dispatch", "resolve"))
def test_enums_match_the_compiled_objects(name: str) -> None:
    """records.py's ids and flags (syscalls, ops, flags, families, verdicts, ...) are the
    compiled enums' values; the loader refuses an object where they are not."""
    with BpfObject(_object(name)) as obj:
        assert records.enum_mismatches(obj.enum_values) == []
        loader.check_contract(obj)  # does not raise


def test_an_object_built_from_a_drifted_header_is_refused(tmp_path: Path) -> None:
    """One enum value changed in a copy of randguard.h: the object built from it is refused
    before anything is loaded, naming the enum, the value compiled and the one expected."""
    clang = shutil.which("clang")
    if clang is None:
        if os.environ.get("RANDGUARD_REQUIRE_KERNEL_TESTS") == "1":
            pytest.fail("clang missing: the contract check must be shown on CI")
        pytest.skip("clang not installed (make installs it)")
    src = tmp_path / "bpf_src"
    shutil.copytree(ROOT / "bpf_src", src)
    header = src / "randguard.h"
    text = header.read_text()
    assert "\tRG_OP_WRITE = 2," in text
    header.write_text(text.replace("\tRG_OP_WRITE = 2,", "\tRG_OP_WRITE = 17,"))
    out = tmp_path / "process.bpf.o"
    subprocess.run([clang, "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86",
                    f"-I{ROOT / 'vmlinux'}", f"-I{src}", "-I/usr/include", "-c",
                    str(src / "process.bpf.c"), "-o", str(out)], check=True)
    with BpfObject(out) as obj, pytest.raises(loader.LoadError) as e:
        loader.check_contract(obj)
    assert "enum rg_file_op: RG_OP_WRITE is 17 compiled, 2 here" in str(e.value)
    assert str(out) in str(e.value)


def test_mtime_markers_match_the_header() -> None:
    defines = dict(re.findall(r"^#define (RG_MTIME_\w+) (0x[0-9A-F]+)ULL", HEADER.read_text(),
                              re.M))
    assert {k: int(v, 16) for k, v in defines.items()} == {
        "RG_MTIME_NOW": records.MTIME_NOW, "RG_MTIME_KEPT": records.MTIME_KEPT,
        "RG_MTIME_UNKNOWN": records.MTIME_UNKNOWN}


def test_inode_key_matches_what_the_loader_packs() -> None:
    """rg_persist_inodes' key and value, as loader.KernelSide.set_persist_inodes packs them."""
    with BpfObject(_object("file")) as obj:
        size, members = obj.struct_layout("rg_inode_key")
        value_size = obj.map("rg_persist_inodes").value_size
    assert size == records.INODE_KEY.size
    assert members == {"ino": (0, 8), "dev": (8, 4), "_pad": (12, 4)}
    assert value_size == records.INODE_GEN.size  # the generation
