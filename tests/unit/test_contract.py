"""The record contract: records.py and the compiled objects' BTF describe the same layouts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from randguard.core import matcher, records, syscalls
from randguard.kernel import loader
from randguard.kernel.libbpf import BpfObject

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
    fields = list(drifted["rg_proc_exit"].fields)
    fields[0] = records.num("exit_code", "q")  # an int64 where the kernel has an int32
    drifted["rg_proc_exit"] = drifted["rg_proc_exit"]._replace(fields=tuple(fields))
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


def _drifted_copy(tmp_path: Path, old: str, new: str, name: str = "randguard.h") -> Path:
    """A copy of bpf_src/ whose header `name` has `old` replaced by `new`; its path."""
    src = tmp_path / "bpf_src"
    shutil.copytree(ROOT / "bpf_src", src)
    header = src / name
    text = header.read_text()
    assert old in text
    header.write_text(text.replace(old, new))
    return header


def _build(tmp_path: Path, src: Path, name: str) -> Path:
    """`src/name.bpf.c` compiled as the Makefile compiles the objects."""
    clang = shutil.which("clang")
    if clang is None:
        if os.environ.get("RANDGUARD_REQUIRE_KERNEL_TESTS") == "1":
            pytest.fail("clang missing: the contract check must be shown on CI")
        pytest.skip("clang not installed (make installs it)")
    out = tmp_path / f"{name}.bpf.o"
    subprocess.run([clang, "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86",
                    f"-I{ROOT / 'vmlinux'}", f"-I{src}", "-I/usr/include", "-c",
                    str(src / f"{name}.bpf.c"), "-o", str(out)], check=True)
    return out


def test_an_object_built_from_a_drifted_header_is_refused(tmp_path: Path) -> None:
    """One enum value changed in a copy of randguard.h: the object built from it is refused
    before anything is loaded, naming the enum, the value compiled and the one expected."""
    header = _drifted_copy(tmp_path, "\tRG_OP_WRITE = 2,", "\tRG_OP_WRITE = 17,")
    out = _build(tmp_path, header.parent, "process")
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


def test_two_fields_of_one_type_swapped_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each record is declared once (records.FILE_FIELDS): the decoder is derived from the same
    list the contract checks, so swapping two members of the same type is a drift it names."""
    drifted = dict(records.LAYOUTS)
    fields = list(drifted["rg_file_event"].fields)
    i, j = [k for k, f in enumerate(fields) if f.c in ("dev", "ppid")]
    fields[i], fields[j] = fields[j], fields[i]
    drifted["rg_file_event"] = drifted["rg_file_event"]._replace(fields=tuple(fields))
    monkeypatch.setattr(records, "LAYOUTS", drifted)
    with BpfObject(_object("file")) as obj:
        problems = records.layout_mismatches(obj.struct_layout)
    assert sorted(p.split(":")[0] for p in problems) == [
        "struct rg_file_event.dev", "struct rg_file_event.ppid"]


def test_the_filter_structs_match_the_object_and_a_drift_is_refused(tmp_path: Path) -> None:
    """The path filter's limits (key length, suffix slots and length) reach the agent as
    matcher.FILTER_STRUCTS, checked at load against the object that has the filter."""
    with BpfObject(_object("file")) as obj:
        assert matcher.filter_mismatches(obj.struct_layout) == []
        assert obj.map("rg_filter_conf_map").value_size == len(
            matcher.pack_filter_conf(matcher.KernelFilter([], [], 0)))
    header = _drifted_copy(tmp_path, "#define RG_FILTER_MAX_SUFFIXES 16",
                           "#define RG_FILTER_MAX_SUFFIXES 15")
    out = _build(tmp_path, header.parent, "file")
    with BpfObject(out) as obj, pytest.raises(loader.LoadError) as e:
        loader.check_contract(obj)
    assert "struct rg_filter_conf.suffixes: (offset, size) compiled (8, 510), decoded (8, 544)" \
        in str(e.value)


def test_an_object_with_another_slot_numbering_is_refused(tmp_path: Path) -> None:
    """The dispatcher's slot numbering (where i386 syscalls start) reaches the agent as
    syscalls.IA32_BASE, checked at load in every object that has the dispatcher's maps."""
    with BpfObject(_object("process")) as obj:
        assert syscalls.dispatch_mismatches(obj.enum_values, obj.struct_layout) == []
    header = _drifted_copy(tmp_path, "RG_IA32_BASE = 1024,", "RG_IA32_BASE = 1000,",
                           "dispatch.bpf.h")
    out = _build(tmp_path, header.parent, "process")
    with BpfObject(out) as obj, pytest.raises(loader.LoadError) as e:
        loader.check_contract(obj)
    assert "enum rg_dispatch_slot: RG_IA32_BASE is 1000 compiled, 1024 here" in str(e.value)
