"""The agent under test: `randguard run` from the venv, pinned to the tool core, stdout to a
file. Start-up time is until its first line; it is ready when it says so on stderr. With
`root`, the agent of another checkout (its package on PYTHONPATH, the venv's interpreter)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from host import link_count
from layout import AGENT, AGENT_CPU, ROOT

from tools.health import last_health
from tools.tool import Tool, interrupt


class RandGuard(Tool):
    name = "randguard"

    def __init__(self, config: Path, out: Path, record: Path | None = None,
                 root: Path | None = None, name: str = "randguard") -> None:
        self.config, self.out, self.record, self.root = config, out, record, root
        self.name = name
        self.stderr: list[str] = []
        self.startup_s: float | None = None
        self.final: dict | None = None

    def start(self) -> None:
        before = link_count()
        agent, env = [str(AGENT)], None
        if self.root:
            agent = [str(ROOT / ".venv" / "bin" / "python"), "-m", "randguard"]
            env = dict(os.environ, PYTHONPATH=str(self.root / "agent"))
        cmd = ["taskset", "-c", str(AGENT_CPU), *agent, "run", "--config", str(self.config)]
        if self.record:
            cmd += ["--record", str(self.record)]
        self._out = open(self.out, "wb")  # noqa: SIM115 - closed in stop()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.PIPE, text=True,
                                     env=env, cwd=self.root)
        self.pid = self.proc.pid
        ready = threading.Event()
        threading.Thread(target=self._read_stderr, args=(ready,), daemon=True).start()
        deadline = t0 + 120  # the verifier is CPU-bound: a loaded machine makes it slow
        while time.monotonic() < deadline:
            if self.out.stat().st_size > 0:
                self.startup_s = time.monotonic() - t0
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.002)
        ready.wait(max(0.0, deadline - time.monotonic()))
        if self.startup_s is None or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("randguard did not start:\n" + "\n".join(self.stderr[-20:]))
        self.own_links = max(0, link_count() - before)

    def _read_stderr(self, ready: threading.Event) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())
            if "ready:" in line:
                ready.set()
        ready.set()

    def stop(self) -> None:
        interrupt(self.proc)
        self._out.close()
        self.final = last_health(self.out)

    def wait_drained(self, settle: float = 0.6, timeout: float = 60) -> float:
        """Wait until the output file stops growing; returns when it last grew (monotonic)."""
        last_size, last_change = -1, time.monotonic()
        deadline = last_change + timeout
        while time.monotonic() < deadline:
            size = self.out.stat().st_size
            if size != last_size:
                last_size, last_change = size, time.monotonic()
            elif time.monotonic() - last_change >= settle:
                break
            time.sleep(0.05)
        return last_change
