"""The NDJSON stream: numbering (`seq`), a bounded queue, and a writer thread.

The main loop never blocks on stdout: it keeps draining the kernel ring while a slow reader
(a stalled pipe, a slow `jq`) holds the writer thread. When the queue is full, events that
matter less are dropped and counted; alerts, annotated events, their sources, process lifecycle
and the agent's own records (health, loss, agent_start) are kept up to a hard cap. `seq` is given
to what is kept, so the written stream is gap-free and every loss is in a `loss` record.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
from collections import Counter, deque
from operator import attrgetter

from ..core.events import Alert, Event, encoder
from ..core.memo import Line

log = logging.getLogger("randguard.output")

KEEP_TYPES = frozenset({
    "alert", "loss", "health", "agent_start", "process_start", "process_fork", "process_exit",
    "process_exec_failed",
})


_event_type = attrgetter("event_type")
_IOV_MAX = 1024  # buffers per writev (Linux's UIO_MAXIOV)


def family_of(event_type: str) -> str:
    """file_open -> file, network_connect -> network, process_exit -> process."""
    return event_type.split("_", 1)[0]


class Output:
    """Thread-safe counters: `written` per event type, `dropped` per family, `write_failures`."""

    def __init__(self, fd: int, max_queued: int = 65536) -> None:
        self.fd = fd
        self.max_queued = max_queued
        self.hard_cap = 4 * max_queued  # what is kept past a full queue stops here too
        self.seq = 0
        self._last_source = 0
        self._q: deque[tuple[bytearray, Counter[str], int]] = deque()
        self.queued = 0
        self._cv = threading.Condition()
        self._stop = False
        self.written: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.write_failures = 0
        self.closed = False  # the reader went away (EPIPE)
        self._thread = threading.Thread(target=self._writer, name="randguard-output",
                                        daemon=True)
        self._thread.start()

    def room(self) -> int:
        """Lines that can still be queued before the queue is full."""
        return max(0, self.max_queued - self.queued)

    def submit(self, events: list[Event | Line]) -> None:
        """Number, encode and queue a batch in order (alerts right after their source)."""
        if not events:
            return
        if self.queued + len(events) > self.max_queued:
            events = self._kept(events)
            if not events:
                return
        data = bytearray()
        encode_into = encoder.encode_into
        seq, last_source = self.seq, self._last_source
        for ev in events:
            seq += 1
            if type(ev) is Line:
                data += ev.head % (seq, ev.pre, ev.ns, ev.ts)  # (Line.line(), inlined)
                data += ev.rest
                last_source = seq
                continue
            ev.seq = seq
            if type(ev) is Alert:
                ev.source_seq = last_source
            else:
                last_source = seq
            encode_into(ev, data, -1)
            data += b"\n"
        self.seq, self._last_source = seq, last_source
        counts = Counter(map(_event_type, events))  # written by type, once the writer has
        with self._cv:
            self._q.append((data, counts, len(events)))
            self.queued += len(events)
            self._cv.notify()

    def _kept(self, events: list[Event | Line]) -> list[Event | Line]:
        """What of a batch fits: past a full queue, only what matters most (KEEP_TYPES,
        annotated events and the sources of alerts), up to the hard cap; the rest is counted
        as dropped."""
        kept: list[Event | Line] = []
        queued, limit, cap = self.queued, self.max_queued, self.hard_cap
        n = len(events)
        for i, ev in enumerate(events):
            depth = queued + len(kept)
            if depth >= limit:
                t = ev.event_type
                keep = t in KEEP_TYPES or getattr(ev, "alert", False) or (
                    i + 1 < n and type(events[i + 1]) is Alert)
                if depth >= cap or not keep:
                    self.dropped[family_of(t)] += 1
                    continue
            kept.append(ev)
        return kept

    def _writer(self) -> None:
        """Write what is queued, every batch queued meanwhile at once (one writev: a thread
        waits for the interpreter's lock after each call, so fewer calls keep up better)."""
        while True:
            with self._cv:
                while not self._q and not self._stop:
                    self._cv.wait()
                if not self._q:
                    return
                batches = list(self._q)
                self._q.clear()
            done, err = self._write(batches)  # batches written whole, what stopped the rest
            lost = sum(n for _, _, n in batches[done:])
            with self._cv:
                for _, counts, _ in batches[:done]:
                    self.written.update(counts)
                self.write_failures += lost
                if err is not None and err.errno == errno.EPIPE:
                    self.closed = True
                    # nobody will read the rest: count it as failed, not written
                    for _, _, m in self._q:
                        self.write_failures += m
                    self.queued -= sum(m for _, _, m in self._q)
                    self._q.clear()
                self.queued -= sum(n for _, _, n in batches)
                self._cv.notify_all()
            if err is not None and err.errno != errno.EPIPE:
                log.warning("writing events failed: %s (%d lines lost)", err, lost)

    def _write(self, batches: list[tuple[bytearray, Counter[str], int]],
               ) -> tuple[int, OSError | None]:
        """Write the batches in order: how many were written whole, and the error that stopped
        the next one (None when all were)."""
        views = [memoryview(data) for data, _, _ in batches]
        done = 0
        try:
            while done < len(views):
                n = os.writev(self.fd, views[done:done + _IOV_MAX])
                while done < len(views) and n >= len(views[done]):
                    n -= len(views[done])
                    done += 1
                if n:
                    views[done] = views[done][n:]
        except OSError as e:
            return done, e
        return done, None

    def reader_gone(self) -> bool:
        """The reading end of a stdout pipe was closed (seen without writing: a quiet host
        need not wait for its next event to notice that `| head` is done)."""
        if not self.closed:
            p = select.poll()
            p.register(self.fd, select.POLLERR)
            if any(ev & (select.POLLERR | select.POLLHUP) for _, ev in p.poll(0)):
                self.closed = True
        return self.closed

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued is written (or failed); False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._q and self.queued == 0, timeout)

    def close(self, timeout: float) -> None:
        """Write what is queued (within `timeout`), then stop the writer."""
        self.flush(timeout)
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(max(0.1, timeout))
