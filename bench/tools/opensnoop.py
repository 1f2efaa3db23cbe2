"""libbpf-tools opensnoop as shipped (it traces every open on the machine), stdout to a file.
It prints its header through stdio buffering, so readiness is taken from its BPF links
appearing and holding still."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from host import link_count
from layout import AGENT_CPU

from tools.tool import Tool, interrupt


class OpenSnoop(Tool):
    name = "opensnoop"

    def __init__(self, out: Path) -> None:
        self.out = out
        self.err = out.with_suffix(".err")

    def start(self) -> None:
        before = link_count()
        self._out = open(self.out, "wb")  # noqa: SIM115 - closed in stop()
        self._err = open(self.err, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(AGENT_CPU), "opensnoop"], stdout=self._out, stderr=self._err)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 20
        n, stable_since = before, None
        while time.monotonic() < deadline:
            now_n = link_count()
            if now_n > before and now_n == n:
                if stable_since and time.monotonic() - stable_since > 0.3:
                    break
                stable_since = stable_since or time.monotonic()
            else:
                stable_since = None
            n = now_n
            if self.proc.poll() is not None:
                raise RuntimeError("opensnoop exited: " + self.err.read_text())
            time.sleep(0.05)
        self.own_links = max(0, link_count() - before)

    def stop(self) -> None:
        interrupt(self.proc)
        self._out.close()
        self._err.close()

    def lost(self) -> int:
        return sum(int(m) for m in re.findall(r"[Ll]ost (\d+) events", self.err.read_text()))

    def count(self, needle: str) -> int:
        """Lines of its output that contain `needle`."""
        b = needle.encode()
        with open(self.out, "rb") as f:
            return sum(1 for line in f if b in line)
