"""Booting a guest kernel under qemu's TCG, with its console on the first serial port and what
it reports on the second, each in a file of the run's folder. TCG only: the KVM on these
machines does not run stock kernels (/work/shared/notes/vm-testing.md)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CONSOLE, RESULTS = "console.log", "results.out"  # the two serial ports, in the run's folder

# The kernel command line every guest starts with. tsc=reliable: the TSC (the host's, under
# TCG) stays the clocksource (5.10 would otherwise find the vCPUs' TSCs "unsynchronized" and
# fall back to the slow HPET).
APPEND = ("console=ttyS0 panic=-1 quiet loglevel=3 mitigations=off random.trust_cpu=on "
          "tsc=reliable no_timer_check")


@dataclass
class Machine:
    image: Path  # what qemu boots: the ELF vmlinux (through PVH), or the bzImage
    initrd: Path
    append: str  # after APPEND
    cpu: str = "max"
    mem: str = "2G"
    smp: int = 2

    def command(self, outdir: Path) -> list[str]:
        # thread=single: one host thread runs the vCPUs in turn. With one thread per vCPU
        # (thread=multi) a vCPU could run a stale translation of kernel text another vCPU had
        # just live-patched as a program attached, and oops on the int3 (sid here; most
        # likely the 6.12 guest that died in CI). Two guests at once keep both host cores busy
        # as before, in the same time.
        return ["qemu-system-x86_64", "-accel", "tcg,thread=single", "-cpu", self.cpu,
                "-m", self.mem, "-smp", str(self.smp), "-nographic", "-no-reboot",
                "-nodefaults", "-monitor", "none", "-serial", f"file:{outdir / CONSOLE}",
                "-serial", f"file:{outdir / RESULTS}", "-kernel", str(self.image),
                "-initrd", str(self.initrd), "-append", f"{APPEND} {self.append}".strip()]


@dataclass
class Exit:
    rc: int  # qemu's, or 124 when the timeout ended it
    output: str  # what qemu itself printed
    seconds: float


def boot(machine: Machine, outdir: Path, timeout: int, watch: Callable[[], None]) -> Exit:
    """Run the guest to its end (or the timeout) with the serial ports in outdir, calling
    watch() twice a second while it runs and once after (to follow the ports' files)."""
    outdir.mkdir(parents=True, exist_ok=True)
    for name in (CONSOLE, RESULTS):
        (outdir / name).unlink(missing_ok=True)
        (outdir / name).touch()
    cmd = ["timeout", "--kill-after=10", str(timeout), *machine.command(outdir)]
    (outdir / "qemu.cmd").write_text(" ".join(cmd) + "\n")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    while proc.poll() is None:
        time.sleep(0.5)
        watch()
    watch()
    reader.join(2)
    return Exit(proc.returncode, b"".join(output).decode(errors="replace").strip(),
                time.monotonic() - t0)


class Tail:
    """The whole lines a growing file (a serial port's) gained since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pos = 0
        self.partial = b""

    def lines(self) -> list[str]:
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            chunk = f.read()
        self.pos += len(chunk)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        return [ln.decode(errors="replace") for ln in lines]
