"""What every tool under test has: a name, a process whose CPU time is measured, the BPF links
it attached (so that waiting for a quiet machine does not wait for them), a start and a stop."""

from __future__ import annotations

import signal
import subprocess

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
        self.stop()


class Baseline(Tool):
    """No tool: the blocks the others are compared with."""


def interrupt(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGINT (the tools write their last records on it), SIGKILL if that takes too long."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
