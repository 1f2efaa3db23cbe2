"""What every tool under test has: a name, a process whose CPU time is measured, the BPF links
it attached (so that waiting for a quiet machine does not wait for them), a start and a stop."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from collections.abc import Iterator

from host import proc_cpu_ns


class Tool:
    name = "none"
    pid: int | None = None
    own_links = 0

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def cpu_ns(self) -> int:
        return proc_cpu_ns(self.pid) if self.pid else 0

    def __enter__(self) -> Tool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with signals_deferred():
            self.stop()


class Baseline(Tool):
    """No tool: the blocks the others are compared with."""


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then act on one that came: a tool's stop()
    cut short by a second Ctrl-C leaves its probes attached or audit enabled."""
    if threading.current_thread() is not threading.main_thread():
        yield  # (only the main thread may set handlers; the signals go to it anyway)
        return
    came: list[int] = []
    old = {sig: signal.signal(sig, lambda n, _f: came.append(n))
           for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if came:
        raise KeyboardInterrupt


def interrupt(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGINT (the tools write their last records on it), SIGKILL if that takes too long."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
