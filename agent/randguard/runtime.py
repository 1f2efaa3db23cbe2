"""The agent's main loop: the shell that joins the kernel side, the pure pipeline and stdout."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import BinaryIO

from . import loader, procfs, recording
from .config import Config
from .detections import PersistenceDetections
from .events import encode_lines
from .matcher import FileFilter
from .pipeline import Pipeline, ProcessOutput
from .proctable import ProcessTable
from .ringbuf import RingBuffer
from .rules import RuleEngine
from .ruleset import load_ruleset, passwd_homes

log = logging.getLogger("randguard")

POLL_MS = 50  # the kernel wakes the reader only past a watermark: poll at least this often
BATCH = 4096  # records per pipeline batch and per stdout write


def make_pipeline(cfg: Config, config_path: Path) -> Pipeline:
    """The pipeline for a config: its filter, process table, detections and rules (the shipped
    pack and rules, the config's, rules.d's), with `~/` expanded to every passwd home."""
    rs = load_ruleset(cfg, config_path)
    homes = passwd_homes()
    detections = PersistenceDetections(rs.persistence, homes)
    rules = RuleEngine(rs.rules, homes)
    rule_w, rule_r = rules.watched()
    det_paths, det_patterns = detections.watched()
    file_filter = FileFilter.from_config(
        cfg.file,
        force=(det_paths + rule_w[0], det_patterns + rule_w[1]),
        force_read=rule_r,
    )
    return Pipeline(
        file_filter, ProcessTable(cfg.performance.max_process_cache_entries), cfg.host(),
        process=ProcessOutput.from_config(cfg), detections=detections, rules=rules,
    )


class Agent:
    """One run of the agent: `run()` returns when a stop signal arrives or stdout closes."""

    def __init__(
        self,
        cfg: Config,
        config_path: Path,
        out: BinaryIO | None = None,
        record: BinaryIO | None = None,
    ) -> None:
        self.cfg = cfg
        self.out = out if out is not None else sys.stdout.buffer
        self.record = recording.Writer(record) if record is not None else None
        self.pipeline = make_pipeline(cfg, config_path)
        self.file_filter = self.pipeline.file_filter
        self.procs = self.pipeline.procs
        self.stopping = False
        self.written = 0

    def stop(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.stop)
        with loader.load(self.cfg, self.file_filter) as ks:
            # Seed after attaching: a process that starts in between is seen by the kernel side.
            seeded = procfs.seed(self.procs)
            events = ks.events
            with RingBuffer(events.fd, events.max_entries) as ring:
                log.info("ready: %d programs attached, %d processes known, ring %d KiB",
                         len(ks.attached), seeded, events.max_entries // 1024)
                try:
                    self._loop(ring)
                except BrokenPipeError:
                    log.info("stdout closed; stopping")
                drops = ks.drop_counts()
            if any(drops.values()):
                log.warning("kernel ring buffer drops: %s",
                            " ".join(f"{k}={v}" for k, v in drops.items()))
        pipe = self.pipeline
        if pipe.decode_errors:
            log.warning("undecodable records: %s",
                        " ".join(f"{k}={v}" for k, v in sorted(pipe.decode_errors.items())))
        log.info("detached; %d records read, %d filtered, %d events written",
                 pipe.records, pipe.filtered, self.written)
        return 0

    def _loop(self, ring: RingBuffer) -> None:
        feed, out, record = self.pipeline.feed, self.out, self.record
        while True:
            stopping = self.stopping
            if not stopping:
                ring.wait(POLL_MS)
            while True:
                raws = ring.drain(BATCH)
                if not raws:
                    break
                if record is not None:
                    record.write(raws)
                evs = feed(raws)
                if evs:
                    out.write(encode_lines(evs))
                    out.flush()
                    self.written += len(evs)
                if len(raws) < BATCH:
                    break
            if stopping:
                return


def configure_logging(level: str) -> None:
    """Logs go to stderr, never stdout: stdout is the NDJSON stream."""
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper()),
        format="randguard: %(levelname)s: %(message)s",
    )
    # libbpf's own messages are mostly load-time chatter; warnings still show
    logging.getLogger("randguard.libbpf").setLevel(max(logging.WARNING, logging.root.level))
