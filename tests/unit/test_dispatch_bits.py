"""The dispatcher's bitmaps (loader.traced_numbers): which syscall numbers reach the program
arrays at all. A number left out is a syscall never seen; one set needlessly only costs time."""

from __future__ import annotations

from randguard.core import syscalls
from randguard.kernel import loader


def bits(raw: bytes) -> set[int]:
    n = int.from_bytes(raw, "little")
    return {i for i in range(len(raw) * 8) if n >> i & 1}


def test_each_slot_of_either_abi_has_its_bit_and_nothing_else_does() -> None:
    hooks = {"file": {"openat", "write", "rename"}, "network": {"connect"}}
    got = loader.traced_numbers(hooks, moves=False)
    assert {len(v) for v in got.values()} == {syscalls.IA32_BASE // 8}
    want_exit, want_enter = set(), set()
    for wanted in hooks.values():
        for slot in syscalls.slots(wanted):
            if slot.index < syscalls.SOCKETCALL_BASE:
                want_exit.add(slot.index % syscalls.IA32_BASE)
                if slot.handler.enter:
                    want_enter.add(slot.index % syscalls.IA32_BASE)
    assert bits(got["rg_exit_nrs"]) == want_exit
    assert bits(got["rg_enter_nrs"]) == want_enter
    # openat: native 257, i386 295, exit only; write: native 1, i386 4, both; socketcall
    # (i386 102) carries i386 connect; getppid (native 110, i386 64) is nobody's
    assert {257, 295, 1, 4, 102} <= want_exit and not {110, 64} & want_exit
    assert {1, 4} <= want_enter and not {257, 295} & want_enter


def test_moves_add_the_directory_cache_calls() -> None:
    plain = bits(loader.traced_numbers({"file": {"openat"}}, moves=False)["rg_enter_nrs"])
    moves = bits(loader.traced_numbers({"file": {"openat"}}, moves=True)["rg_enter_nrs"])
    renameat2 = syscalls.NUMBERS["renameat2"][0]
    assert renameat2 not in plain and renameat2 in moves
