"""The agent's main loop: the shell that joins the kernel side, the pure pipeline and stdout."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import msgspec

from .. import __version__
from ..core.config import Config, ConfigError, enabled_families, load_config
from ..core.engine import RuleEngine
from ..core.events import AgentStart, Event, Health
from ..core.matcher import FileFilter
from ..core.network_events import listen_inventory
from ..core.pipeline import PASSWD, Pipeline, PipelineState
from ..core.process_events import ProcessOutput
from ..core.proctable import ProcessTable
from ..core.ratelimit import RateLimiter
from ..core.ruleset import RuleSet, load_ruleset, passwd_homes
from ..kernel import loader
from ..kernel.libbpf import libbpf_version
from ..kernel.ringbuf import RingBuffer
from . import journal, procfs, recording
from .health import LossTracker, health_record
from .inventory_link import InventoryLink
from .netinventory import listening_sockets
from .output import Output
from .selftest import SelfTest, self_test_path

log = logging.getLogger("randguard")

POLL_MS = 50  # the kernel wakes the reader only past a watermark: poll at least this often
BATCH = 1024  # records per pipeline batch
SELF_TEST_SECONDS = 5.0
FLUSH_SECONDS = 1.0  # at stop: how long queued lines may take to go out (exit within 2 s)


def make_pipeline(cfg: Config, config_path: Path, rs: RuleSet | None = None,
                  homes: list[str] | None = None, state: PipelineState | None = None) -> Pipeline:
    """The pipeline for a config: its filter, process table, detections and rules (the shipped
    pack and rules, the config's, rules.d's: `rs`, else read now), with `~/` expanded to every
    home (`homes`, else the passwd database's). /etc/passwd always passes the filter: its
    changes are what the agent follows homes by."""
    rs = rs if rs is not None else load_ruleset(cfg, config_path)
    homes = homes if homes is not None else passwd_homes()
    rules = RuleEngine(rs, homes)
    (paths, patterns), reads = rules.watched()
    file_filter = FileFilter.from_config(
        cfg.file, force=(paths + [self_test_path(), PASSWD], patterns), force_read=reads)
    return Pipeline(
        file_filter,
        state or PipelineState(ProcessTable(cfg.performance.max_process_cache_entries)),
        cfg.host(),
        process=ProcessOutput.from_config(cfg), rules=rules,
        limiter=RateLimiter(cfg.performance.max_events_per_second),
    )


class Agent:
    """One run of the agent: `run()` returns its exit code when a stop signal arrives or the
    reader of stdout goes away."""

    def __init__(
        self,
        cfg: Config,
        config_path: Path,
        out_fd: int = 1,
        record: BinaryIO | None = None,
        strict: bool = False,
        state_file: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.out_fd = out_fd
        self.record = recording.Writer(record, os.getpid()) if record is not None else None
        self.strict = strict
        self.inventory = InventoryLink(cfg.inventory, state_file or cfg.inventory.state_file)
        self.ruleset = load_ruleset(cfg, config_path)
        self.homes = passwd_homes()
        self.pipeline = make_pipeline(cfg, config_path, self.ruleset, self.homes)
        self.stopping = False
        self.reload_requested = False

    def stop(self, *_: object) -> None:
        self.stopping = True

    def request_reload(self, *_: object) -> None:
        self.reload_requested = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGHUP, self.request_reload)
        self.start_ns = time.monotonic_ns()
        with loader.load(self.cfg, self.pipeline.file_filter) as ks:
            self.ks = ks
            # Seed after attaching: a process that starts in between is seen by the kernel side.
            seeded = procfs.seed(self.pipeline.state.procs)
            events = ks.events
            with RingBuffer(events.fd, events.max_entries) as ring:
                self.ring = ring
                self.output = Output(self.out_fd, self.cfg.performance.output_queue_events)
                self.losses = LossTracker(self.pipeline.host, self.pipeline.state.clock)
                log.info("attached %d programs, %d processes known, ring %d KiB",
                         len(ks.attached), seeded, events.max_entries // 1024)
                code = self._start()
                if code == 0:
                    self.inventory.start(self.pipeline)
                    self._loop()
                self._finish()
        log.info("detached; %d records read, %d events written",
                 self.pipeline.state.records, sum(self.output.written.values()))
        return code

    def _drain(self, sink: Callable[[list[Event]], None], max_batches: int = 64,
               room: Callable[[], int] | None = None) -> None:
        """Up to `max_batches` batches from the ring through the pipeline, each handed to
        `sink` as it is done: a backlog is never held as event objects all at once. With
        `room`, take no more records than it says the output can still queue (the rest
        waits in the ring)."""
        for _ in range(max_batches):
            n = BATCH if room is None else min(BATCH, room())
            if n <= 0:
                break
            raws = self.ring.drain(n)
            if not raws:
                break
            if self.record is not None:
                self.record.write(raws)
            sink(self.pipeline.feed(raws))
            self.inventory.touched(self.pipeline.state)
            if len(raws) < n:
                break

    def _start(self) -> int:
        """Self-test, then the agent_start record (and what arrived meanwhile) goes out."""
        families = enabled_families(self.cfg)
        test = SelfTest(self.pipeline.state, network="network" in families)
        held: list[Event] = []
        deadline = time.monotonic() + SELF_TEST_SECONDS
        while time.monotonic() < deadline and not self.stopping and not test.done:
            self.ring.wait(10)
            self._drain(held.extend)
        test.reap()
        # reaped: everything the child did is in the ring now; take it, then stop hiding
        # its pid, so that a later process reusing it is seen
        self._drain(held.extend)
        test.done_with()
        proven = test.proven(families)
        now = time.monotonic_ns()
        self.output.submit([AgentStart(
            event_type="agent_start", timestamp=self.pipeline.state.clock.format(now),
            timestamp_ns=now,
            host=self.pipeline.host, version=__version__, libbpf=libbpf_version(),
            kernel=os.uname().release, config=str(self.config_path),
            hooks_attached=sorted(self.ks.hooks), hooks_missing=self.ks.missing_hooks,
            self_test=proven, self_test_events=sorted(set(test.seen)),
        )])
        if self.cfg.events.network and self.cfg.network.inventory:
            now = time.monotonic_ns()
            self.output.submit(listen_inventory(
                listening_sockets(), self.pipeline.state.clock.format(now), now,
                self.pipeline.host, self.pipeline.state.procs))
        self.output.submit(held)
        log.info("ready: self-test %s", ", ".join(f"{k}={'ok' if v else 'NO EVENTS'}"
                                                  for k, v in proven.items()))
        silent = [f for f, ok in proven.items() if not ok]
        if silent:
            log.warning("hooks attached but delivered nothing in the self-test: %s",
                        ", ".join(silent))
            if self.strict:
                log.error("--strict: stopping")
                return 1
        return 0

    def _loop(self) -> None:
        perf = self.cfg.performance
        next_health = time.monotonic_ns() + int(self.cfg.agent.health_interval * 1e9)
        next_loss = 0
        out = self.output
        while not self.stopping and not out.reader_gone():
            if self.reload_requested:
                self.reload_requested = False
                self._reload()
            if self.pipeline.state.passwd_changed:
                self.pipeline.state.passwd_changed = False
                self._follow_homes()
            if perf.drop_when_full or out.room():
                self.ring.wait(POLL_MS)
                # not dropping: what does not fit stays in the ring (the kernel counts its drops)
                self._drain(out.submit, room=None if perf.drop_when_full else out.room)
            else:
                time.sleep(POLL_MS / 1000)  # let the ring fill: the kernel counts what it drops
            out.submit(self.inventory.records(self.ks, self.pipeline))
            now = time.monotonic_ns()
            if now >= next_loss:
                out.submit(self.losses.due(now, self._loss_counters()))
                next_loss = now + 1_000_000_000
            if now >= next_health:
                out.submit([self._health(now, final=False)])
                next_health = now + int(self.cfg.agent.health_interval * 1e9)  # reloadable
        if out.closed:
            log.info("stdout closed; stopping")

    def _finish(self) -> None:
        """Final drain, loss and health records, then what is queued goes out (bounded)."""
        out = self.output
        self.inventory.stop(FLUSH_SECONDS)  # the state file is written as it stops
        if not out.closed:
            self._drain(out.submit, max_batches=16)
            out.submit(self.inventory.records(self.ks, self.pipeline))
            now = time.monotonic_ns()
            self.losses.min_interval_ns = 0
            out.submit(self.losses.due(now, self._loss_counters()))
            # written before the final health, so that its counts cover every line but itself
            out.flush(FLUSH_SECONDS * 2 / 3)
            out.submit([self._health(time.monotonic_ns(), final=True)])
        out.close(FLUSH_SECONDS / 3)

    def _loss_counters(self) -> dict[str, dict[str | None, int]]:
        p, out = self.pipeline.state, self.output
        return {
            "kernel_ring_full": dict(self.ks.drop_counts()),
            "kernel_table_full": dict(self.ks.table_full_counts()),
            "kernel_skipped": {None: sum(self.ks.skipped_runs().values())},
            "decode_error": {None: sum(p.decode_errors.values())},
            "rate_limited": dict(p.rate_limited),
            "output_queue_full": dict(out.dropped),
            "output_write_failed": {None: out.write_failures},
            "inventory_backlog_full": {None: self.inventory.notes_dropped},
        }

    def _health(self, now: int, final: bool) -> Health:
        p, out, procs = self.pipeline.state, self.output, self.pipeline.state.procs
        return health_record(
            host=self.pipeline.host, clock=p.clock, now_ns=now, start_ns=self.start_ns, final=final,
            counters=dict(
                records_read=p.records, events_written=dict(out.written),
                kernel_ring_drops=self.ks.drop_counts(),
                kernel_filtered=self.ks.filtered_counts(),
                kernel_table_full=self.ks.table_full_counts(),
                kernel_skipped_runs=self.ks.skipped_runs(),
                decode_errors=dict(p.decode_errors), userspace_filtered=p.filtered,
                rate_limited=dict(p.rate_limited), output_dropped=dict(out.dropped),
                output_write_failures=out.write_failures, output_queued=out.queued,
                ring_pending_bytes=self.ring.pending_bytes(), ring_size_bytes=self.ring.capacity,
                process_table_size=len(procs), process_table_evictions=procs.evictions,
            ),
        )

    def _reload(self) -> None:
        """SIGHUP: the new config's filters, detections, rules, limits, id and log level, or
        none of it if it is invalid. What the loaded kernel side fixed waits for a restart."""
        try:
            new_cfg = load_config(self.config_path)
            cfg, restart = reloadable(self.cfg, new_cfg)
            rs, homes = load_ruleset(cfg, self.config_path), passwd_homes()
            new = make_pipeline(cfg, self.config_path, rs, homes, self.pipeline.state)
        except ConfigError as e:
            log.error("reload rejected, the running config stays in force: %s", e)
            return
        if restart:
            log.warning("reload: changes to %s take effect at the next start",
                        ", ".join(restart))
        self._swap(new, cfg, rs, homes)
        logging.getLogger().setLevel(cfg.agent.log_level.upper())
        log.info("reloaded %s", self.config_path)

    def _follow_homes(self) -> None:
        """/etc/passwd changed: if the home directories did, `~/` paths are expanded again, in
        the userspace filter, detections and rules and in the kernel filter (the running config
        and ruleset stay)."""
        homes = passwd_homes()
        if homes == self.homes:
            return
        added, gone = sorted(set(homes) - set(self.homes)), sorted(set(self.homes) - set(homes))
        self._swap(make_pipeline(self.cfg, self.config_path, self.ruleset, homes,
                                 self.pipeline.state), self.cfg, self.ruleset, homes)
        log.info("home directories changed (new: %s; gone: %s): ~/ paths expanded again",
                 ", ".join(added) or "none", ", ".join(gone) or "none")

    def _swap(self, new: Pipeline, cfg: Config, rs: RuleSet, homes: list[str]) -> None:
        """Put `new` (built over the running one's state) in place, and the kernel its filter."""
        loader.fill_filter(self.ks, new.file_filter)
        self.inventory.relocate(new)
        self.losses.host = new.host
        self.pipeline, self.cfg, self.ruleset, self.homes = new, cfg, rs, homes


# What a reload cannot change: it is built into the loaded programs and maps.
_FIXED_SECTIONS = ("ebpf", "events", "process", "network", "inventory")
_FIXED_KEYS = {
    "file": ("enabled", "hooks"),
    "performance": ("max_process_cache_entries", "max_pending_exec_sources",
                    "max_syscalls_in_flight", "output_queue_events", "directory_cache"),
}


def reloadable(old: Config, new: Config) -> tuple[Config, list[str]]:
    """`new` with what only a restart can change kept as in `old`, and the names of what
    differed there."""
    restart = [k for k in _FIXED_SECTIONS if getattr(new, k) != getattr(old, k)]
    changes: dict[str, object] = {k: getattr(old, k) for k in _FIXED_SECTIONS}
    for section, keys in _FIXED_KEYS.items():
        o, n = getattr(old, section), getattr(new, section)
        restart += [f"{section}.{k}" for k in keys if getattr(o, k) != getattr(n, k)]
        changes[section] = msgspec.structs.replace(n, **{k: getattr(o, k) for k in keys})
    return msgspec.structs.replace(new, **changes), restart


def configure_logging(level: str) -> None:
    """Logs go to stderr, never stdout: stdout is the NDJSON stream. When stderr is the
    journal, each line starts with its syslog priority (journal.py)."""
    handler = logging.StreamHandler(sys.stderr)
    fmt = "randguard: %(levelname)s: %(message)s"
    handler.setFormatter(journal.PriorityFormatter(fmt) if journal.stderr_is_journal()
                         else logging.Formatter(fmt))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
    # libbpf's own messages are mostly load-time chatter; warnings still show
    logging.getLogger("randguard.libbpf").setLevel(max(logging.WARNING, logging.root.level))
