"""journal.py: the agent's log lines carry a syslog priority prefix only when stderr is the
journal stream, never 6 (the events' priority), one per line."""

from __future__ import annotations

import logging
import os

from randguard.process import journal


def test_is_journal_stream_matches_dev_ino(tmp_path):
    with open(tmp_path / "f", "w") as f:
        st = os.fstat(f.fileno())
        assert journal.is_journal_stream(f.fileno(), {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not journal.is_journal_stream(f.fileno(), {"JOURNAL_STREAM": f"{st.st_dev}:1"})
        assert not journal.is_journal_stream(f.fileno(), {})


def test_no_log_level_maps_to_the_events_priority():
    levels = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL,
              logging.INFO + 1, logging.CRITICAL + 10, 1]
    assert journal.EVENTS_PRIORITY not in {journal.priority(lv) for lv in levels}
    assert journal.priority(logging.WARNING) == 4
    assert journal.priority(logging.INFO + 1) == 4  # between two levels: the more severe


def test_formatter_prefixes_every_line():
    rec = logging.LogRecord("randguard", logging.ERROR, __file__, 1, "boom\nsecond", None, None)
    text = journal.PriorityFormatter("randguard: %(levelname)s: %(message)s").format(rec)
    assert text.split("\n") == ["<3>randguard: ERROR: boom", "<3>second"]
