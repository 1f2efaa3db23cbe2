"""Loss records and health records: the agent accounts for every event it could not deliver.

`LossTracker` turns ever-growing counters (kernel ring drops per family, decode errors, rate
limiting, output drops and write failures) into `loss` records as soon as they move, at most
once a second per kind and family. `health_record` snapshots everything for the periodic and
final `health` line.
"""

from __future__ import annotations

import resource
from collections.abc import Mapping

from ..core.events import Health, Loss, WallClock


class LossTracker:
    """Remembers what was reported; `due` yields a Loss per counter that grew since."""

    def __init__(self, host: str, clock: WallClock, min_interval_ns: int = 1_000_000_000):
        self.host = host
        self.clock = clock
        self.min_interval_ns = min_interval_ns
        self._reported: dict[tuple[str, str | None], int] = {}
        self._last_ns: dict[tuple[str, str | None], int] = {}

    def due(self, now_ns: int, counters: Mapping[str, Mapping[str | None, int]]) -> list[Loss]:
        """`counters`: kind -> family (or None) -> total so far."""
        out = []
        for kind, by_family in counters.items():
            for family, total in by_family.items():
                key = (kind, family)
                before = self._reported.get(key, 0)
                if total <= before:
                    continue
                last = self._last_ns.get(key)
                if last is not None and now_ns - last < self.min_interval_ns:
                    continue
                self._reported[key] = total
                self._last_ns[key] = now_ns
                out.append(Loss(
                    event_type="loss", timestamp=self.clock.format(now_ns), timestamp_ns=now_ns,
                    host=self.host,
                    kind=kind, family=family, count=total - before, total=total,
                ))
        return out


def rss_kb() -> int | None:
    """Resident set size from /proc/self/status, or None if unreadable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def health_record(
    *, host: str, clock: WallClock, now_ns: int, start_ns: int, final: bool,
    counters: Mapping[str, object],
) -> Health:
    """A health line from the counters the runtime gathered (see Health for the fields)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return Health(
        event_type="health", timestamp=clock.format(now_ns), timestamp_ns=now_ns, host=host,
        final=final,
        uptime_s=round((now_ns - start_ns) / 1e9, 3), rss_kb=rss_kb(),
        cpu_user_s=round(ru.ru_utime, 3), cpu_system_s=round(ru.ru_stime, 3), **counters,
    )
