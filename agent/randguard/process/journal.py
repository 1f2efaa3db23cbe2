"""The agent's log lines in the journal: a syslog priority per line, so that a reader of the
journal (on the host or on a collector) selects the events by field, not by grepping.

Under systemd with `StandardError=journal`, stderr is a journal stream and `$JOURNAL_STREAM`
names it (`DEVICE:INODE`). journald strips a leading `<N>` from each line and stores N as the
entry's PRIORITY (`SyslogLevelPrefix=`, on by default). The agent's log lines get `<7>` (debug),
`<5>` (info: start, reload, stop), `<4>` (warning), `<3>` (error) or `<2>` (critical); the
events on stdout carry no prefix and keep the unit's level, info (6). So in the journal
`PRIORITY=6` is exactly the NDJSON stream and every other priority the agent's log.

stdout is never touched: `randguard run | jq` reads the same bytes with or without a journal,
and stderr on a terminal or in a file stays unprefixed."""

from __future__ import annotations

import logging
import os
import sys

EVENTS_PRIORITY = 6  # the unit's SyslogLevel (info): the NDJSON lines on stdout
PRIORITY = {logging.DEBUG: 7, logging.INFO: 5, logging.WARNING: 4, logging.ERROR: 3,
            logging.CRITICAL: 2}


def is_journal_stream(fd: int, env: dict[str, str] | None = None) -> bool:
    """True when fd is the journal stream systemd connected ($JOURNAL_STREAM = DEV:INO)."""
    want = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return want == f"{st.st_dev}:{st.st_ino}"


def priority(levelno: int) -> int:
    """The syslog priority of a logging level (between two levels: the more severe)."""
    for lvl in sorted(PRIORITY):
        if levelno <= lvl:
            return PRIORITY[lvl]
    return PRIORITY[logging.CRITICAL]


def prefixed(text: str, pri: int) -> str:
    """Every line of text with `<pri>`: a traceback's lines keep the record's priority."""
    return "\n".join(f"<{pri}>{ln}" for ln in text.split("\n"))


class PriorityFormatter(logging.Formatter):
    """A Formatter whose lines start with the record's syslog priority prefix."""

    def format(self, record: logging.LogRecord) -> str:
        return prefixed(super().format(record), priority(record.levelno))


def stderr_is_journal() -> bool:
    try:
        return is_journal_stream(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # replaced by a non-file (tests)
        return False


def error(msg: str) -> None:
    """An error printed to stderr outside logging (start-up), with `<3>` in the journal."""
    print(prefixed(msg, 3) if stderr_is_journal() else msg, file=sys.stderr)
