"""auditd with `-w` watch rules for the agent's watch set (and, for the exec load, an
execve/execveat rule). It restores the audit state it found: rules deleted, enabled flag."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from host import pid_of_comm, proc_cpu_ns, sh
from prepare import watch_set

from tools.tool import Tool


class Auditd(Tool):
    name = "auditd"

    def __init__(self, exec_rule: bool = False) -> None:
        self.exec_rule = exec_rule

    @staticmethod
    def status() -> dict:
        out = sh("auditctl", "-s", check=False).stdout
        return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)

    def start(self) -> None:
        st = self.status()
        self.was_enabled = st.get("enabled", "0")
        if st.get("pid", "0") != "0":
            raise RuntimeError("auditd is already running; the bench will not touch it")
        sh("auditd")  # daemonizes
        deadline = time.monotonic() + 10
        while self.status().get("pid", "0") == "0":
            if time.monotonic() > deadline:
                raise RuntimeError("auditd did not register with the kernel")
            time.sleep(0.05)
        self.pid = int(self.status()["pid"])
        self.kauditd = pid_of_comm("kauditd")
        self._add_rules()
        sh("auditctl", "-e", "1")

    def _add_rules(self) -> None:
        sh("auditctl", "-D")
        sh("auditctl", "-b", "8192")  # Debian's shipped rules: -b 8192, backlog wait 60 s
        sh("auditctl", "--backlog_wait_time", "60000")
        watch, reads = watch_set()
        for p in watch:
            sh("auditctl", "-w", p, "-p", "wa", "-k", "rgbench")
        for p in reads:
            sh("auditctl", "-w", p, "-p", "r", "-k", "rgbench")
        if self.exec_rule:
            sh("auditctl", "-a", "always,exit", "-F", "arch=b64", "-S", "execve,execveat",
               "-k", "rgbench-exec")

    def cpu_ns(self) -> int:
        """auditd (the daemon) plus kauditd (the kernel thread that hands records over)."""
        return proc_cpu_ns(self.pid) + (proc_cpu_ns(self.kauditd) if self.kauditd else 0)

    def stop(self) -> None:
        sh("auditctl", "-D", check=False)
        pid = self.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        sh("auditctl", "-e", self.was_enabled, check=False)
