"""The `[[rules]]` engine: each enabled rule that matches an event yields one `alert` record.

Process rules look at process_start (so a parent/child rule sees the parent's name and image at
exec time), file rules at successful file operations, network rules at network events. Within
one field any entry may match; every field the rule gives must match. Names are compared with
the process name (comm) and with the basename of its executable. Pure: homes are given.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from .config import Rule
from .detections import COVERING_OPS, PathRule
from .matcher import PathMatcher


def _names_match(names: frozenset[str], comm: str | None, exe: str | None) -> bool:
    if comm in names:
        return True
    return exe is not None and exe[exe.rfind("/") + 1 :] in names


class CompiledRule:
    """One rule with its matchers built once."""

    __slots__ = ("rule", "names", "parents", "exes", "paths", "ops", "nets", "ports")

    def __init__(self, rule: Rule, homes: Sequence[str]) -> None:
        self.rule = rule
        self.names = frozenset(rule.process_names)
        self.parents = frozenset(rule.parent_names)
        self.exes = PathMatcher(rule.exe_paths) if rule.exe_paths else None
        self.paths = PathRule(rule.paths, rule.patterns, homes) if (
            rule.paths or rule.patterns) else None
        self.ops = frozenset(rule.operations) if rule.operations else frozenset({"*"})
        self.nets = [ipaddress.ip_network(a, strict=False) for a in rule.addresses]
        self.ports = frozenset(rule.ports)

    def process(self, comm: str, exe: str | None, parent_comm: str | None,
                parent_exe: str | None) -> bool:
        return (
            (not self.names or _names_match(self.names, comm, exe))
            and (not self.parents or _names_match(self.parents, parent_comm, parent_exe))
            and (self.exes is None or (exe is not None and self.exes.matches(exe)))
        )

    def file(self, op: str, path: str | None, comm: str | None, exe: str | None,
             write: bool = True) -> bool:
        """`write`: for file_open, the open wrote or created (file_open_write)."""
        ops = self.ops
        return (
            (op in ops or "*" in ops or (write and op == "file_open" and "file_open_write" in ops))
            and (self.paths is None or (path is not None and (
                self.paths.matches(path) or (op in COVERING_OPS and self.paths.below(path)))))
            and (not self.names or _names_match(self.names, comm, exe))
        )

    def network(self, direction: str | None, port: int | None, addr: str | None, comm: str,
                exe: str | None) -> bool:
        r = self.rule
        if r.direction is not None and direction != r.direction:
            return False
        if self.ports and port not in self.ports:
            return False
        if self.nets:
            try:
                ip = ipaddress.ip_address(addr or "")
            except ValueError:
                return False
            if not any(ip in n for n in self.nets):
                return False
        return not self.names or _names_match(self.names, comm, exe)


class RuleEngine:
    """The enabled rules by type, in order."""

    def __init__(self, rules: Sequence[Rule], homes: Sequence[str]) -> None:
        compiled = [CompiledRule(r, homes) for r in rules if r.enabled]
        self.process_rules = [c for c in compiled if c.rule.type == "process"]
        self.file_rules = [c for c in compiled if c.rule.type == "file"]
        self.network_rules = [c for c in compiled if c.rule.type == "network"]

    def watched(self) -> tuple[tuple[list[str], list[str]], tuple[list[str], list[str]]]:
        """((paths, patterns) for writes, (paths, patterns) for reads) that file rules need
        to see, to pass whatever the file filter says."""
        w: tuple[list[str], list[str]] = ([], [])
        r: tuple[list[str], list[str]] = ([], [])
        for c in self.file_rules:
            if c.paths is None:
                # no paths: any file may match (by process name), so every event must pass;
                # the kernel filter then passes all of them (see matcher: pass_all)
                paths, patterns = [], ["*"]
            else:
                paths = c.paths.paths
                patterns = c.paths.patterns if not paths else []
            # every operation can write, create or change names (file_open: writable opens)
            w[0].extend(paths)
            w[1].extend(patterns)
            if c.ops & {"file_open", "*"}:  # reads too
                r[0].extend(paths)
                r[1].extend(patterns)
        return w, r
