"""The load generator (bench/gen.c, built by prepare.build) and the syscall loops whose added
cost the overhead table measures."""

from __future__ import annotations

import functools
import json
import subprocess

from layout import BUILD, LOAD_CPU, UNWATCHED, WATCHED

O_WRONLY = 1


def gen(*args: object, cpu: int | None = LOAD_CPU, timeout: float = 900) -> dict:
    """Run the generator (pinned to the load core unless cpu is None); its JSON summary line:
    ops, ns (wall), cpu_ns and what the mode counts besides."""
    cmd = [str(BUILD / "gen"), *map(str, args)]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


SYSCALL_LOOPS = {
    # name: (gen args, description); gen runs each for the seconds given after these
    "openat_unwatched": (("open", UNWATCHED / "f", 0), "openat O_RDONLY + close, unwatched file"),
    "openat_watched": (("open", WATCHED / "f", O_WRONLY), "openat O_WRONLY + close, watched file"),
    "write_unwatched": (("write", UNWATCHED / "w"), "write 1 byte, unwatched file"),
    "write_watched": (("write", WATCHED / "w"), "write 1 byte, watched file (after the first)"),
    "getppid": (("getppid",), "getppid (traced by nobody: what attaching costs every syscall)"),
    # the same path as openat_unwatched, so that the two rows compare
    "open_i386_unwatched": (("open_i386", UNWATCHED / "f", 0),
                            "i386 open O_RDONLY + close (int $0x80), unwatched file"),
}
I386 = "open_i386_unwatched"


@functools.cache
def syscall_loops() -> dict[str, tuple[tuple, str]]:
    """SYSCALL_LOOPS that this kernel can run: int $0x80 fails where the kernel has no IA32
    emulation (not built, or booted with ia32_emulation=0); that row is then left out."""
    try:
        gen(*SYSCALL_LOOPS[I386][0], 0)
    except (RuntimeError, ValueError, IndexError):
        return {k: v for k, v in SYSCALL_LOOPS.items() if k != I386}
    return SYSCALL_LOOPS


def rate(g: dict) -> int:
    """Operations per second the generator achieved."""
    return round(g["ops"] / (g["ns"] / 1e9))
