"""The host side's plumbing: log lines with the tool's prefix, commands that must succeed,
the tools a run needs, and the lock that lets one run at a time use a cache."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import threading
from pathlib import Path
from typing import TextIO

# One lock for every line printed: guests booted in threads echo their consoles at once.
_print_lock = threading.Lock()


class Log:
    """print() of whole lines, each with a prefix that says which tool wrote it."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, msg: str) -> None:
        say(f"[{self.prefix}] {msg}")


def say(line: str) -> None:
    """One line on stdout, never interleaved with another thread's."""
    with _print_lock:
        print(line, flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def need_tools(tools: list[str], install: str) -> None:
    """Exit with what to install when one of the tools is not on PATH."""
    for tool in tools:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} missing (apt-get install {install})")


def lock(path: Path, log: Log) -> TextIO:
    """Wait for the exclusive lock on path (one run at a time per cache: the guests' folders
    and the images are shared), saying so when another run holds it. Held until the returned
    file is closed."""
    f = open(path, "w")  # noqa: SIM115 (the caller holds it)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log(f"another run holds {path}: waiting for it")
        fcntl.flock(f, fcntl.LOCK_EX)
    return f
