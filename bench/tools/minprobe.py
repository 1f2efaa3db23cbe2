"""The floor: bench/minprobe.bpf.c, an enter+exit tracepoint pair that returns at once,
loaded by bench/minprobe_load.c (both built by prepare.build)."""

from __future__ import annotations

import signal
import subprocess

from host import link_count
from layout import AGENT_CPU, BUILD

from tools.tool import Tool


class MinProbe(Tool):
    name = "minprobe"

    def start(self) -> None:
        before = link_count()
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(AGENT_CPU), str(BUILD / "minprobe_load"),
             str(BUILD / "minprobe.bpf.o")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError("minprobe: " + self.proc.stderr.read())
        self.pid = self.proc.pid
        self.own_links = max(0, link_count() - before)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(10)
