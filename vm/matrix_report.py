"""The kernel matrix's report (vm/kernels.py): the tables per kernel and per test, printed
or as Markdown between the markers of docs/kernels.md, and the run as JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path

from matrix_result import Result

SYMBOL = {"passed": "pass", "failed": "FAIL", "error": "ERROR", "skipped": "skip", None: "-"}


def table(results: list[Result], markdown: bool = False) -> str:
    tests: list[str] = []
    for r in results:
        for t in r.outcomes:
            if t not in tests:
                tests.append(t)
    cols = [r.kernel.series for r in results]
    rows = [[t] + [SYMBOL.get(r.outcomes.get(t)) if not r.problem else "NO RESULT"
                   for r in results] for t in tests]
    totals = []
    for r in results:
        n = sum(o == "passed" for o in r.outcomes.values())
        bad = sum(o in ("failed", "error") for o in r.outcomes.values())
        totals.append("no result" if r.problem else f"{n} passed, {bad} failed")
    head = ["test"] + cols
    foot = ["total"] + totals
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join([f"`{row[0]}`", *row[1:]]) + " |" for row in rows]
        out.append("| " + " | ".join([f"**{foot[0]}**", *foot[1:]]) + " |")
        return "\n".join(out)
    widths = [max(len(str(x[i])) for x in [head, foot, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '^'}{w}}}" for i, w in enumerate(widths))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt.format(*head), sep, *(fmt.format(*row) for row in rows), sep,
                      fmt.format(*foot)])


def _render(head: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(out)
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), *(fmt.format(*row).rstrip() for row in rows)])


def kernels_table(results: list[Result], markdown: bool = False) -> str:
    head = ["series", "package", "version", "uname -r", "guest run"]
    rows = [[r.kernel.series, r.kernel.package, r.kernel.version,
             r.sections.get("uname", r.kernel.release).strip(), f"{r.seconds:.0f}s"]
            for r in results]
    return _render(head, rows, markdown)


def support_table(results: list[Result], markdown: bool = False) -> str:
    """What the agent found on each kernel: its agent_start record (file, process and network
    on), and whether BPF LSM is active (the agent does not use it)."""
    head = ["series", "hooks attached", "hooks missing", "self-test", "BPF LSM active"]
    rows = []
    for r in results:
        try:
            st = json.loads(r.sections.get("agent_start", ""))
        except ValueError:
            rows.append([r.kernel.series, "?", "?", "no agent_start record", "?"])
            continue
        proven = ", ".join(f"{k} {'ok' if v else 'NO EVENTS'}"
                           for k, v in st.get("self_test", {}).items())
        lsm = r.sections.get("lsm", "").strip().split(",")
        rows.append([r.kernel.series, str(len(st.get("hooks_attached", []))),
                     ", ".join(st.get("hooks_missing", [])) or "none", proven,
                     "yes" if "bpf" in lsm else "no"])
    return _render(head, rows, markdown)


DOC_BEGIN, DOC_END = "<!-- kernels.py:begin -->", "<!-- kernels.py:end -->"


def update_doc(doc: Path, results: list[Result], tests: list[str], total: float) -> None:
    """Rewrite the generated part of docs/kernels.md (between the markers)."""
    when = time.strftime("%Y-%m-%d", time.gmtime())
    block = "\n\n".join([
        DOC_BEGIN,
        f"Measured {when} by `vm/kernels.py` ({total / 60:.1f} minutes for the whole run, "
        "two guests at a time on 2 cores). Test files: "
        + ", ".join(f"`{t}`" for t in tests) + ".",
        kernels_table(results, markdown=True),
        table(results, markdown=True),
        "What the agent reported on each kernel (its `agent_start` record with file, process "
        "and network events on):",
        support_table(results, markdown=True),
        DOC_END,
    ])
    text = doc.read_text() if doc.exists() else f"{DOC_BEGIN}\n{DOC_END}\n"
    if DOC_BEGIN not in text or DOC_END not in text:
        raise SystemExit(f"{doc}: no {DOC_BEGIN} ... {DOC_END} block to update")
    head, rest = text.split(DOC_BEGIN, 1)
    tail = rest.split(DOC_END, 1)[1]
    doc.write_text(head + block + tail)


def write_json(path: Path, results: list[Result], tests: list[str], total: float,
               t_prep: float) -> None:
    path.write_text(json.dumps({
        "tests": tests, "seconds": round(total, 1), "prepare_seconds": round(t_prep, 1),
        "kernels": [{"series": r.kernel.series, "package": r.kernel.package,
                     "version": r.kernel.version, "seconds": round(r.seconds, 1),
                     "uname": r.sections.get("uname", "").strip(),
                     "lsm": r.sections.get("lsm", "").strip(),
                     "agent_start": r.sections.get("agent_start", "").strip(),
                     "problem": r.problem, "retries": r.retries, "rc": r.rc,
                     "outcomes": r.outcomes}
                    for r in results]}, indent=1))

