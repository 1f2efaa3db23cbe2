"""The floors, loaded by bench/minprobe_load.c (all built by prepare.build): minprobe
(bench/minprobe.bpf.c), an enter+exit syscall tracepoint pair on openat and write that returns
at once; minbtf (bench/minbtf.bpf.c), an empty tp_btf program on sys_enter and one on sys_exit,
the floor of a dispatcher that sees every syscall."""

from __future__ import annotations

import signal
import subprocess

from host import link_count
from layout import AGENT_CPU, BUILD

from tools.tool import Tool


class MinProbe(Tool):
    name = "minprobe"

    def __init__(self, name: str = "minprobe") -> None:
        super().__init__()
        self.name = name

    def start(self) -> None:
        before = link_count()
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(AGENT_CPU), str(BUILD / "minprobe_load"),
             str(BUILD / f"{self.name}.bpf.o")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"{self.name}: " + self.proc.stderr.read())
        self.pid = self.proc.pid
        self.own_links = max(0, link_count() - before)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(10)
