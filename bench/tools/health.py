"""The agent's health records in its NDJSON output: the final one carries its counters."""

from __future__ import annotations

import json
from pathlib import Path

from results import Loss


def health_records(path: Path) -> list[dict]:
    out = []
    with open(path, "rb") as f:
        for line in f:
            if b'"health"' in line:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if rec.get("event_type") == "health":
                    out.append(rec)
    return out


def last_health(path: Path, final_only: bool = True) -> dict | None:
    """The last health record of an output file (the final one, if the agent wrote it)."""
    found = [h for h in health_records(path) if h.get("final") or not final_only]
    return found[-1] if found else None


def losses(h: dict | None) -> Loss:
    """The loss counters of a health record, each summed over its keys."""
    if not h:
        return Loss()
    s = lambda v: sum(v.values()) if isinstance(v, dict) else (v or 0)  # noqa: E731
    return Loss(kernel_ring_drops=s(h.get("kernel_ring_drops")),
                rate_limited=s(h.get("rate_limited")), output_dropped=s(h.get("output_dropped")))
