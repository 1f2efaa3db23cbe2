"""The persistence inventory's link to the event stream, for the agent's loop: the files of the
persistence events just written go to the inventory's thread to be hashed again, and what it
finds comes back: its records (for the output, with the alerts of a change found at start) and
the files it lists, by inode (for the kernel's rg_persist_inodes and the pipeline)."""

from __future__ import annotations

import time

from ..core.config import InventoryConfig
from ..core.events import Event, PersistenceChange
from ..core.pipeline import Pipeline, PipelineState, persistence_alerts
from ..kernel.loader import KernelSide
from .inventory import locations
from .persistence import PersistenceWatch


class InventoryLink:
    """A PersistenceWatch (when `[inventory] enabled`), started after agent_start."""

    def __init__(self, cfg: InventoryConfig, state_file: str) -> None:
        self.cfg = cfg  # ([inventory] is not reloadable: fixed for the run)
        self.state_file = state_file
        self.watch: PersistenceWatch | None = None
        self._inodes_seen = 0  # the watch's inodes_version last handed on

    def start(self, pipeline: Pipeline) -> None:
        """The inventory, in its own thread (it never holds up the event stream)."""
        if self.cfg.enabled:
            self.watch = PersistenceWatch(self.cfg, locations(pipeline.rules), pipeline.host,
                                          self.state_file)
            self.watch.start()

    def touched(self, state: PipelineState) -> None:
        """Hand the files of the persistence events just written to the inventory."""
        touched = state.touched
        if not touched:
            return
        if self.watch is not None:
            now = time.monotonic_ns()
            for ev in touched:
                for p in (ev.persistence_path or ev.resolved_path, ev.old_path):
                    if p is not None and p.startswith("/"):
                        self.watch.note(p, ev.seq or None, now)
        touched.clear()

    def records(self, ks: KernelSide, pipeline: Pipeline) -> list[Event]:
        """What the inventory found since last asked (its files by inode handed on first)."""
        if self.watch is None:
            return []
        if self.watch.inodes_version != self._inodes_seen:
            self._inodes_seen = self.watch.inodes_version
            inodes = self.watch.inodes  # published whole by the worker: read once
            ks.set_persist_inodes(set(inodes))
            pipeline.state.set_persist_paths({(d, i): p for (d, i, _), p in inodes.items()})
        out: list[Event] = []
        for rec in self.watch.take():
            out.append(rec)
            if type(rec) is PersistenceChange and rec.while_stopped:
                out += persistence_alerts(pipeline.rules, rec)
        return out

    def relocate(self, pipeline: Pipeline) -> None:
        """A new pipeline (reload, new homes): its host and locations."""
        if self.watch is not None:
            self.watch.host = pipeline.host
            self.watch.relocate(locations(pipeline.rules), time.monotonic_ns())

    def stop(self, timeout: float) -> None:
        """Stop the thread (it writes the state file as it stops)."""
        if self.watch is not None:
            self.watch.stop(timeout)

    @property
    def notes_dropped(self) -> int:
        """Changes not hashed again: the inventory's backlog was full."""
        return self.watch.notes_dropped if self.watch is not None else 0
