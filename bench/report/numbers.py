"""How the report writes a figure: median (min – max), MiB, a verdict."""

from __future__ import annotations

from results import Summary


def fmt(s: Summary | None, unit: str = "", digits: int = 0) -> str:
    if not s or s.median is None:
        return "n/a"
    f = lambda v: f"{v:,.{digits}f}"  # noqa: E731
    return f"{f(s.median)}{unit} ({f(s.min)} – {f(s.max)})"


def fmt_mib(s: Summary, digits: int = 1) -> str:
    """fmt of a summary in KiB, written in MiB."""
    if s.median is None:
        return fmt(s)
    kb_to_mib = lambda v: round(v / 1024, 1)  # noqa: E731
    return fmt(Summary(median=kb_to_mib(s.median), min=kb_to_mib(s.min),
                       max=kb_to_mib(s.max), n=s.n), "", digits)


def mib(kb: int | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.1f}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")
