"""The start-up self-test: prove that the attached hooks deliver, not only that they attached.

A child shell writes and removes a file in SELF_TEST_DIR (a path the file filter always passes)
and execs `rm` to do it, so one short-lived process exercises fork, exec, open, write, unlink
and exit. Its events are consumed here, never written; what arrived is reported in agent_start.
"""

from __future__ import annotations

import os
import subprocess

from .events import Event

SELF_TEST_DIR = "/run/randguard"


class SelfTest:
    """Runs the child and collects its events from the stream by pid."""

    def __init__(self) -> None:
        os.makedirs(SELF_TEST_DIR, mode=0o700, exist_ok=True)
        path = f"{SELF_TEST_DIR}/self-test.{os.getpid()}"
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", 'echo randguard self-test > "$1"; exec rm -f "$1"', "sh", path],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.pid = self.proc.pid
        self.seen: list[str] = []
        self.done = False

    def take(self, events: list[Event]) -> list[Event]:
        """Remove the child's events from a batch and note them; the rest go on."""
        keep = []
        for ev in events:
            pid = getattr(ev, "pid", None)
            if pid is None:
                pid = getattr(ev, "child_pid", None)
            if pid == self.pid:
                self.seen.append(ev.event_type)
                if ev.event_type == "process_exit":
                    self.done = True
            else:
                keep.append(ev)
        return keep

    def proven(self, families: list[str]) -> dict[str, bool]:
        """Which enabled families delivered at least one event of the child's."""
        return {f: any(t.startswith(f + "_") for t in self.seen) for f in families}

    def reap(self) -> None:
        self.proc.wait()
