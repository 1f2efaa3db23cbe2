"""Where the pipeline's CPU per event goes, without a profiler's distortion.

Run with the project's venv: `.venv/bin/python bench/stages.py RECORDING --config CONFIG`.
Times each stage of the pure pipeline over a recording made with `randguard run --record`
(best of 5 passes, ns per record) and prints JSON: the stages a record seen for the first time
goes through (decode, names, filter, detections, rules), each alone; the whole feed with a
fresh pipeline and with a warm memo (an open or write seen before skips them all); the
output's numbering and encoding. It reads agent
internals (decode, the filter, detections, rules, the event structs, the encoder): when those
change, adjust this file; bench.py reports a failure here without losing the other figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from randguard.core.config import load_config
from randguard.core.paths import decode_path
from randguard.core.records import FF_WRITE, FileRecord, decode
from randguard.process import recording
from randguard.process.output import Output
from randguard.process.runtime import BATCH, make_pipeline

SUBMIT = "Output.submit (number, encode, queue; written to /dev/null)"


def best(fn, reps: int = 5) -> float:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t0)
    return min(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("recording")
    ap.add_argument("--config", required=True)
    args = ap.parse_args()
    cfg_path = Path(args.config)
    cfg = load_config(cfg_path)
    with open(args.recording, "rb") as f:
        raws = list(recording.read(f))
    n = len(raws)
    recs = [decode(r) for r in raws]
    files = [r for r in recs if type(r) is FileRecord and r.path is not None]
    paths = [decode_path(r.path) for r in files]
    writes = [r.op != 1 or bool(r.fflags & FF_WRITE) for r in files]
    pipe = make_pipeline(cfg, cfg_path)
    ff, rules = pipe.file_filter, pipe.rules

    def decode_all() -> None:
        for r in raws:
            decode(r)

    def decode_paths() -> None:
        for r in files:
            decode_path(r.path)
            decode_path(r.comm)

    def filt() -> None:
        for p, w in zip(paths, writes, strict=True):
            ff.wants(p, w)

    def detect() -> None:
        for p in paths:
            rules.file_detection("file_open", p, True)

    def rule_loop() -> None:
        fr = rules.file_rules
        for p in paths:
            for c in fr:
                c.file("file_open", p, "gen", "/usr/bin/gen")

    batches = [raws[i:i + BATCH] for i in range(0, n, BATCH)]  # as the agent drains the ring

    def feed() -> list:
        # a fresh pipeline each pass: the same process table state as the live agent's start
        p = make_pipeline(cfg, cfg_path)
        return [p.feed(b) for b in batches]

    warm = make_pipeline(cfg, cfg_path)
    events = [warm.feed(b) for b in batches]

    def feed_warm() -> None:
        for b in batches:
            warm.feed(b)  # its memo holds every open and write already

    sink = Output(os.open(os.devnull, os.O_WRONLY), max_queued=1 << 30)

    def encode() -> None:
        for batch in events:
            sink.submit(batch)  # numbered and encoded here; its thread writes to /dev/null
        sink.flush(60)

    t_make = best(lambda: make_pipeline(cfg, cfg_path))
    full = "Pipeline.feed, fresh pipeline (each distinct record judged once, then memo hits)"
    t = {
        "decode (struct unpack + record struct)": best(decode_all),
        "decode_path of path and comm": best(decode_paths),
        "file filter (FileFilter.wants)": best(filt),
        "persistence detections (file_detection)": best(detect),
        f"file rules ({len(rules.file_rules)} rules, per path)": best(rule_loop),
        full: best(feed) - t_make,
        "Pipeline.feed, warm memo (seen before: not decoded, not judged)": best(feed_warm),
        SUBMIT: best(encode),
    }
    per = {k: round(v / n) for k, v in t.items()}
    per["feed (fresh) + submit (pure pipeline per record)"] = per[full] + per[SUBMIT]
    json.dump({"records": n, "file_records": len(files), "events": sum(map(len, events)),
               "ns_per_record": per}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
