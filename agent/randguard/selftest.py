"""The start-up self-test: prove that the attached hooks deliver, not only that they attached.

A child shell writes and removes self_test_path() (a path the file filter always passes)
and execs `rm` to do it, so one short-lived process exercises fork, exec, open, write, unlink
and exit. The pipeline swallows its records (Pipeline.hidden_pids), before filtering and rate
limiting, even late ones; what arrived is reported in agent_start.
"""

from __future__ import annotations

import os
import subprocess

from .pipeline import Pipeline

SELF_TEST_DIR = "/run/randguard"


def self_test_path() -> str:
    """This agent's own (another agent running beside it does not watch it)."""
    return f"{SELF_TEST_DIR}/self-test.{os.getpid()}"


class SelfTest:
    """Runs the child; the pipeline notes its events."""

    def __init__(self, pipeline: Pipeline) -> None:
        os.makedirs(SELF_TEST_DIR, mode=0o700, exist_ok=True)
        path = self_test_path()
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", 'echo randguard self-test > "$1"; exec rm -f "$1"', "sh", path],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.pid = self.proc.pid
        self.pipeline = pipeline
        pipeline.hidden_pids.add(self.pid)
        self.seen = pipeline.hidden_seen

    def proven(self, families: list[str]) -> dict[str, bool]:
        """Which enabled families delivered at least one event of the child's."""
        return {f: any(t.startswith(f + "_") for t in self.seen) for f in families}

    @property
    def done(self) -> bool:
        """Its exit was seen: nothing more of it can come."""
        return self.pid not in self.pipeline.hidden_pids

    def reap(self) -> None:
        self.proc.wait()
