"""The kernel matrix's judgement of a guest run (vm/kernels.py): what the guest sent back,
which boots are emulator trouble to boot again, and how a dead guest died. A result must never
be retried away (tests/unit/test_vm_kernels.py)."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kernels import Kernel


@dataclass
class Result:
    kernel: Kernel
    outcomes: dict[str, str] = field(default_factory=dict)  # test id -> passed/failed/...
    rc: int | None = None  # pytest's exit code in the guest
    seconds: float = 0.0
    problem: str = ""  # no result at all: timeout, panic, ...
    sections: dict[str, str] = field(default_factory=dict)
    console: Path | None = None
    retries: list[str] = field(default_factory=list)  # why earlier boots were not used

    @property
    def ok(self) -> bool:
        return (not self.problem and self.rc == 0
                and ("junit" not in self.sections or bool(self.outcomes))
                and all(o in ("passed", "skipped") for o in self.outcomes.values()))


def parse_sections(raw: bytes) -> dict[str, str]:
    """Sections the guest wrote on its second serial port: '@@RG name@@', base64, '@@END@@'."""
    out = {}
    text = raw.decode(errors="replace").replace("\r", "")
    for m in re.finditer(r"@@RG (\S+)@@\n(.*?)@@END@@", text, re.S):
        try:
            out[m.group(1)] = base64.b64decode("".join(m.group(2).split())).decode(
                errors="replace")
        except ValueError:
            out[m.group(1)] = ""
    return out


def parse_junit(xml: str) -> dict[str, str]:
    outcomes = {}
    root = ET.fromstring(xml)
    for tc in root.iter("testcase"):
        cls = tc.get("classname", "")
        mod = cls.rsplit(".", 1)[-1] if "." in cls else cls
        tid = f"{mod}::{tc.get('name')}"
        if tc.find("failure") is not None:
            o = "failed"
        elif tc.find("error") is not None:
            o = "error"
        elif tc.find("skipped") is not None:
            o = "skipped"
        else:
            o = "passed"
        # an error in teardown comes as a second testcase with the same name
        if outcomes.get(tid, "passed") == "passed" or o in ("failed", "error"):
            outcomes[tid] = o
    return outcomes


def running_test(console: str) -> str:
    """The test file pytest was in when the console stopped, or ''."""
    files = re.findall(r"^(tests/\S+\.py) ", console, re.M)
    return files[-1] if files else ""


def first_fault(console: str) -> tuple[str, str]:
    """The console's first oops or BUG line and the kernel function it was in ('' if none)."""
    fault = re.search(r"\] ((?:Oops|BUG|watchdog: BUG|kernel BUG)\b.*?)\s*$", console, re.M)
    if not fault:
        return "", ""
    rip = re.compile(r"RIP: 0010:(\S+)").search(console, fault.end())
    return fault.group(1), rip.group(1) if rip else ""


def how_it_died(console: str) -> str:
    """One line from a dead guest's console: its first oops or BUG, the kernel function it
    was in, the panic, and the test file that was running (a CI log shows only its tail)."""
    parts = []
    fault, where = first_fault(console)
    if fault:
        parts.append(fault)
        if where:
            parts.append(f"at {where}")
    panic = re.search(r"Kernel panic - not syncing: (.*?)\s*$", console, re.M)
    if panic:
        parts.append(f"(panic: {panic.group(1)})")
    test = running_test(console)
    if test:
        parts.append(f"in {test}")
    return " ".join(parts)


def emulation_trouble(r: Result) -> str:
    """Why a guest should be booted again, or '': its clock came out wrong, it died before
    its tests started, or it panicked on emulator trouble: a soft lockup (a vCPU the busy
    host did not run) or an int3 left over from live patching."""
    why = r.sections.get("clock_bad", "").strip()
    console = r.console.read_bytes() if r.console is not None else b""
    if not why and not r.sections and b"test session starts" not in console:
        why = r.problem.splitlines()[0] if r.problem else "no result"
    text = console.decode(errors="replace")
    test = running_test(text)
    where = f" in {test}" if test else ""
    m = re.search(r"soft lockup - (CPU#\d+ stuck for \d+s)", text)
    if not why and r.rc is None and m:
        why = f"soft lockup panic ({m.group(1)}){where}"
    # A vCPU that ran a stale translation of kernel text the kernel had just live-patched
    # (the int3 of a static key or call: tracepoints flip them as programs attach) oopses on
    # an int3 that is no longer there. Seen with multi-threaded TCG (now single, see
    # testvm/qemu.py); never on real hardware.
    fault, at = first_fault(text)
    if not why and r.rc is None and fault.startswith("Oops: int3"):
        why = f"int3 oops at {at} (stale code after live patching){where}"
    return why
