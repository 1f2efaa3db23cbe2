"""The policies the shell relies on, without a kernel: the rate limit's buckets, what a reload
may change (`reloadable`), when a loss is reported (`LossTracker`), and what the output keeps
past a full queue and how it numbers it (`Output`, on a pipe)."""

from __future__ import annotations

import json
import os

from randguard.core.config import parse_config
from randguard.core.events import WallClock
from randguard.core.ratelimit import RateLimiter, TokenBucket
from randguard.process.health import LossTracker
from randguard.process.output import Output
from randguard.process.runtime import reloadable

S = 1_000_000_000


def test_token_bucket_bursts_then_refills_at_its_rate_and_ignores_time_going_back() -> None:
    b = TokenBucket(rate=10, burst=3)
    assert [b.allow(0) for _ in range(4)] == [True, True, True, False]
    assert b.allow(S // 10) and not b.allow(S // 10)  # one token per 100 ms
    assert not b.allow(0)  # an older timestamp (another CPU's) adds nothing
    assert [b.allow(10 * S) for _ in range(4)] == [True, True, True, False]  # capped at burst


def test_rate_limiter_keeps_a_bucket_per_family_and_zero_is_no_limit() -> None:
    r = RateLimiter(2)
    assert [r.allow("file", 0) for _ in range(3)] == [True, True, False]
    assert r.allow("network", 0)  # its own bucket
    off = RateLimiter(0)
    assert all(off.allow("file", 0) for _ in range(10_000))


def test_reloadable_keeps_what_only_a_restart_can_change_and_names_it() -> None:
    old = parse_config('[ebpf]\nbuffer_size = 256\n[file]\nhooks = ["openat"]\n'
                       'watch_paths = ["/etc"]\n[performance]\nmax_events_per_second = 5\n')
    new = parse_config('[ebpf]\nbuffer_size = 512\n[file]\nhooks = ["openat", "write"]\n'
                       'watch_paths = ["/srv"]\n[performance]\nmax_events_per_second = 9\n')
    cfg, restart = reloadable(old, new)
    assert restart == ["ebpf", "file.hooks"]
    assert (cfg.ebpf, cfg.file.hooks) == (old.ebpf, old.file.hooks)  # kept
    assert cfg.file.watch_paths == ["/srv"]  # taken
    assert cfg.performance.max_events_per_second == 9
    same, none = reloadable(old, old)
    assert (same, none) == (old, [])


def test_loss_tracker_reports_growth_once_per_interval_with_count_and_total() -> None:
    t = LossTracker("h", WallClock(0), min_interval_ns=S)
    assert t.due(0, {"rate_limited": {"file": 0}}) == []
    (a,) = t.due(0, {"rate_limited": {"file": 5}})
    assert (a.kind, a.family, a.count, a.total) == ("rate_limited", "file", 5, 5)
    assert t.due(S // 2, {"rate_limited": {"file": 7}}) == []  # too soon: kept for later
    (b,) = t.due(S, {"rate_limited": {"file": 7}, "decode_error": {None: 0}})
    assert (b.count, b.total) == (2, 7)
    assert t.due(3 * S, {"rate_limited": {"file": 7}}) == []  # no growth, nothing


def test_output_keeps_what_matters_past_a_full_queue_and_numbers_what_it_keeps() -> None:
    """A queue of 2 and one batch of 7: plain file events past it are dropped and counted;
    process events, annotated events, a rule's source and its alert are kept; `seq` is
    gap-free over what is written and the alert points at its source."""
    import msgspec
    from test_events_doc import samples

    s = samples()
    plain = msgspec.structs.replace(s["FileEvent"], alert=False, detection_type=None, mitre=None)
    annotated = msgspec.structs.replace(s["FileEvent"], alert=True)
    batch = [msgspec.structs.replace(plain) for _ in range(3)] + [
        s["ProcessStart"], annotated, msgspec.structs.replace(plain), s["Alert"]]
    r, w = os.pipe()
    out = Output(w, max_queued=2)
    try:
        out.submit(batch)
        assert out.dropped == {"file": 1}
        assert out.flush(5)
        lines = [json.loads(ln) for ln in os.read(r, 1 << 20).splitlines()]
    finally:
        out.close(1)
        os.close(r)
        os.close(w)
    assert [e["event_type"] for e in lines] == [
        "file_open", "file_open", "process_start", "file_open", "file_open", "alert"]
    assert [e["seq"] for e in lines] == [1, 2, 3, 4, 5, 6]
    assert lines[-1]["source_seq"] == 5
    assert out.written == {"file_open": 4, "process_start": 1, "alert": 1}
