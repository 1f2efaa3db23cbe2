"""The inventory's worker thread: the shell around inventory.py.

It starts after agent_start and never holds up the event stream: the main loop hands it the
paths of persistence events (`note`) and takes the records it has ready (`take`). At start it
reads the previous state, lists and hashes the persistence locations, reports what changed
while the agent was stopped and writes the new state; then it hashes a file again once the
changes to it have settled, reports what it changed to and keeps the state file current.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections import deque

from ..core.config import InventoryConfig
from ..core.events import (
    Event,
    PersistenceChange,
    PersistenceInventory,
    PersistenceState,
    WallClock,
)
from .inventory import (
    Change,
    FileState,
    Location,
    StateProblem,
    diff,
    hash_file,
    owner,
    read_state,
    scan,
    walk,
    write_state,
)

log = logging.getLogger("randguard.inventory")

STATE_WRITE_SECONDS = 5.0  # live changes reach the state file at most this late (and at stop)


def kernel_dev(dev: int) -> int:
    """A stat() st_dev as the kernel's s_dev encodes it (major << 20 | minor)."""
    return os.major(dev) << 20 | os.minor(dev)


class PersistenceWatch:
    """The inventory, kept current in a thread of its own."""

    def __init__(self, cfg: InventoryConfig, locs: list[Location], host: str,
                 state_file: str) -> None:
        self.cfg = cfg
        self.locs = locs
        self.host = host
        self.state_file = state_file
        self.clock = WallClock()  # its own: WallClock caches per thread of use
        self.files: dict[str, FileState] = {}
        self._ready: deque[Event] = deque()  # records for the main loop (deque: thread-safe)
        self._due: dict[str, tuple[int, int | None]] = {}  # path -> (settled at ns, seq)
        self._cv = threading.Condition()
        self._stop = False
        self._dirty = False
        # the listed regular files by (kernel dev, inode, generation), republished whole on
        # each change (`inodes_version` counts them) for rg_persist_inodes and the pipeline
        self.inodes: dict[tuple[int, int, int], str] = {}
        self.inodes_version = 0
        self.notes_dropped = 0  # changes not hashed again: max_files were already waiting
        self._thread = threading.Thread(target=self._run, name="randguard-inventory",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def note(self, path: str, seq: int | None, now_ns: int) -> None:
        """A persistence event on `path`: hash it again once it has been quiet a while."""
        settle = now_ns + int(self.cfg.settle_seconds * 1e9)
        with self._cv:
            if path not in self._due and len(self._due) >= self.cfg.max_files:
                self.notes_dropped += 1  # a flood of new files: counted (loss records)
                return
            self._due[path] = (settle, seq)
            self._cv.notify()

    def relocate(self, locs: list[Location], now_ns: int) -> None:
        """New locations (a reload, a home added to passwd): what their new roots hold is
        listed once it settles, so a file written there before the pipeline followed (a new
        user's authorized_keys) comes out as `added`."""
        old = {r for loc in self.locs for r in loc.roots}
        self.locs = locs
        for root in sorted({r for loc in locs for r in loc.roots} - old):
            self.note(root, None, now_ns)

    def take(self) -> list[Event]:
        out = []
        while self._ready:
            out.append(self._ready.popleft())
        return out

    def stop(self, timeout: float) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ---- the worker ----

    def _record(self, rec_type: type, **fields: object) -> Event:
        now = time.monotonic_ns()
        return rec_type(event_type=_TYPES[rec_type],
                        timestamp=self.clock.format(now), timestamp_ns=now, host=self.host,
                        **fields)

    def _run(self) -> None:
        # a failure here is logged and ends the inventory, never the event stream
        try:
            self._baseline()
        except Exception:
            log.exception("the persistence inventory failed; live changes are still hashed")
        try:
            self._live()
        except Exception:
            log.exception("the persistence inventory stopped")

    def _baseline(self) -> None:
        t0 = time.monotonic()
        try:
            previous: dict[str, FileState] | None = read_state(self.state_file)
            status = "loaded"
        except StateProblem as p:
            previous, status = None, p.status
            self._ready.append(self._record(
                PersistenceState, state_file=self.state_file, status=p.status, reason=p.reason))
        inv = scan(self.locs, self.cfg)
        self.files = inv.files
        self._publish_inodes()
        changes = diff(previous, inv.files) if previous is not None else []
        for c in changes:
            self._ready.append(self._change(c, while_stopped=True, seq=None))
        self._write_state()
        self._ready.append(self._record(
            PersistenceInventory, files=len(inv.files), hashed_bytes=inv.hashed_bytes,
            skipped=inv.skipped, not_listed=inv.not_listed, changes=len(changes),
            duration_ms=round((time.monotonic() - t0) * 1000, 3), state_file=self.state_file,
            previous_state=status))
        log.info("persistence inventory: %d files (%d bytes hashed) in %.2f s; %d changed "
                 "since the previous run (state %s)", len(inv.files), inv.hashed_bytes,
                 time.monotonic() - t0, len(changes), status)

    def _change(self, c: Change, while_stopped: bool, seq: int | None) -> PersistenceChange:
        who = owner(self.locs, c.path)
        return self._record(
            PersistenceChange, path=c.path, change=c.change, while_stopped=while_stopped,
            previous=c.previous, current=c.current,
            detection_type=who.detection if who else None, mitre=who.mitre if who else [],
            source_seq=seq)

    def _live(self) -> None:
        next_write = time.monotonic() + STATE_WRITE_SECONDS
        while True:
            with self._cv:
                now = time.monotonic_ns()
                # stopping: what has not settled yet is hashed now, for the state file
                ready = {p: seq for p, (at, seq) in self._due.items()
                         if at <= now or self._stop}
                for p in ready:
                    del self._due[p]
                if not ready and not self._stop:
                    wait = min([(at - now) / 1e9 for at, _ in self._due.values()]
                               + [STATE_WRITE_SECONDS])
                    self._cv.wait(max(wait, 0.01))
                    continue
                stopping = self._stop
            for path, seq in ready.items():
                self._rehash(path, seq)
            if self._dirty and (stopping or time.monotonic() >= next_write):
                self._write_state()
                next_write = time.monotonic() + STATE_WRITE_SECONDS
            if stopping:
                return

    def _rehash(self, path: str, seq: int | None) -> None:
        """Hash `path` again (everything below it, for a directory) and report what differs
        from the inventory. Above the locations' roots (a mount on `/` or `/etc`), their roots
        below it are walked, as the baseline did: not the whole tree, and through a root's
        symlinked parents (`/lib -> usr/lib`), which a walk from above lists, not enters."""
        below = path.rstrip("/") + "/"
        roots = {r for loc in self.locs for r in loc.roots}
        # a root below it by name, or by where it really is (a mount on /usr changes what
        # /lib/systemd/system shows when /lib -> usr/lib)
        real = os.path.realpath(path).rstrip("/") + "/"
        tops = sorted(r for r in roots if r.startswith(below)
                      or (os.path.realpath(r).rstrip("/") + "/").startswith(real))
        if any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots):
            tops.append(path)
        unders = tuple(t.rstrip("/") + "/" for t in tops)
        before = {p: st for p, st in self.files.items() if p in tops or p.startswith(unders)}
        now: dict[str, FileState] = {}
        for p in (p for top in tops for p in walk(top)):
            if p in now or owner(self.locs, p) is None or (
                    p not in self.files and len(self.files) + len(now) >= self.cfg.max_files):
                continue
            st, _ = hash_file(p, self.cfg.max_file_bytes)
            if st is not None:
                now[p] = st
        for c in diff(before, now):
            self._ready.append(self._change(c, while_stopped=False, seq=seq))
            if c.current is None:
                self.files.pop(c.path, None)
            else:
                self.files[c.path] = c.current
            self._dirty = True
        if self._dirty:
            self._publish_inodes()

    def _publish_inodes(self) -> None:
        """Every listed regular file but those waiting to be hashed again: one renamed over or
        removed may no longer be that inode (the pipeline forgets those at once)."""
        with self._cv:
            pending = set(self._due)
        self.inodes = {(kernel_dev(st.device), st.inode, st.generation): p
                       for p, st in self.files.items()
                       if stat.S_ISREG(st.mode) and p not in pending}
        self.inodes_version += 1

    def _write_state(self) -> None:
        try:
            write_state(self.state_file, self.files, self.host, time.time_ns())
            self._dirty = False
        except OSError as e:
            log.warning("cannot write the inventory state %s: %s", self.state_file, e)
            self._ready.append(self._record(
                PersistenceState, state_file=self.state_file, status="write_failed",
                reason=e.strerror or str(e)))


_TYPES = {PersistenceChange: "persistence_change", PersistenceInventory:
          "persistence_inventory", PersistenceState: "persistence_state"}
