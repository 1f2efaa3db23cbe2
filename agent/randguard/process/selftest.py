"""The start-up self-test: prove that the attached hooks deliver, not only that they attached.

A child process writes and removes self_test_path() (a path the file filter always passes),
and, with network events on, connects to itself over an abstract unix socket (bind, listen,
connect, accept: the packaged unit allows AF_UNIX only); then it execs `rm` to remove the
file. So one short-lived process exercises fork, exec, open, write, unlink, exit and every
network hook. The pipeline swallows its records (PipelineState.hidden_pids), before filtering and
rate limiting, even late ones; what arrived is reported in agent_start.
"""

from __future__ import annotations

import os
import subprocess
import sys

from ..core.pipeline import PipelineState

SELF_TEST_DIR = "/run/randguard"

# The child: argv[1] the file, argv[2] "net" to exercise the network hooks. Python without
# site (-S) and isolated (-I) starts in tens of ms.
CHILD = """
import os, socket, sys
path = sys.argv[1]
with open(path, "w") as f:
    f.write("randguard self-test\\n")
if sys.argv[2] == "net":
    name = "\\0randguard-self-test-%d" % os.getpid()
    try:
        with socket.socket(socket.AF_UNIX) as srv, socket.socket(socket.AF_UNIX) as cli:
            srv.bind(name)
            srv.listen(1)
            cli.connect(name)
            srv.accept()[0].close()
    except OSError:
        pass  # network stays unproven, and agent_start says so; the file is removed anyway
os.execv("/bin/rm", ["rm", "-f", path])
"""


def self_test_path() -> str:
    """This agent's own (another agent running beside it does not watch it)."""
    return f"{SELF_TEST_DIR}/self-test.{os.getpid()}"


class SelfTest:
    """Runs the child; the pipeline notes its events."""

    def __init__(self, state: PipelineState, network: bool = False) -> None:
        os.makedirs(SELF_TEST_DIR, mode=0o700, exist_ok=True)
        path = self_test_path()
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", CHILD, path, "net" if network else "-"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.pid = self.proc.pid
        self.state = state
        state.hidden_pids.add(self.pid)
        self.seen = state.hidden_seen

    def proven(self, families: list[str]) -> dict[str, bool]:
        """Which enabled families delivered at least one event of the child's."""
        return {f: any(t.startswith(f + "_") for t in self.seen) for f in families}

    @property
    def done(self) -> bool:
        """Its exit was seen: nothing more of it can come."""
        return self.pid not in self.state.hidden_pids

    def reap(self) -> None:
        self.proc.wait()

    def done_with(self) -> None:
        """Stop hiding its PID (once what it did was read): a later process may reuse it."""
        self.state.hidden_pids.discard(self.pid)
