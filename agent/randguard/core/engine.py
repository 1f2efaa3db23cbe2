"""The one engine over the detections and rules in force (a `ruleset.RuleSet`, compiled into
`rules.CompiledRule`s): which of them an event matches, and what the file filter must pass for
them to see it.

A detection annotates its source event, so one is enough: the first that matches wins. Entries
on what a call sets (mode bits, attributes) come first, being the more specific; a detection
judges a rename or link on its target, which is where something new appears. A rule is its own
`alert` record, so every rule that matches counts, in order, on either side of a rename.
Process rules look at process_start (a parent/child rule sees the parent's name and image at
exec time), file detections and rules at successful file operations, network ones at
connections that succeeded or are in progress.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from .config import NetworkDetection, PersistenceDetection, Rule
from .matcher import Memo, PathMatcher
from .rules import (
    COVERING_OPS,
    compile_network,
    compile_persistence,
    compile_rule,
)
from .ruleset import RuleSet

_Watched = tuple[list[str], list[str]]


class RuleEngine:
    """The enabled detections and rules of a RuleSet, compiled, by family and in order."""

    def __init__(self, rs: RuleSet, homes: Sequence[str]) -> None:
        persistence = [compile_persistence(d, homes) for d in rs.persistence if d.enabled]
        # judged by what the call sets (not memoized by path), and first
        self.value_detections = [c for c in persistence if c.mode_mask or c.xattrs]
        self.file_detections = [c for c in persistence if not (c.mode_mask or c.xattrs)]
        self.network_detections = [compile_network(d) for d in rs.network if d.enabled]
        rules = [compile_rule(r, homes) for r in rs.rules if r.enabled]
        self.process_rules = [c for c in rules if c.rule.type == "process"]
        self.file_rules = [c for c in rules if c.rule.type == "file"]
        self.network_rules = [c for c in rules if c.rule.type == "network"]
        self._mode_mask = 0
        self._xattrs: frozenset[str] = frozenset()
        for c in self.value_detections:
            self._mode_mask |= c.mode_mask
            self._xattrs |= c.xattrs
        # one matcher over all file detections: most events match none, and this says so at
        # once (what each one matches, its cover matches too)
        covers = [c.paths.cover() for c in self.file_detections]
        self._any = PathMatcher([p for ps, _ in covers for p in ps],
                                [p for _, ps in covers for p in ps])
        self._by_op: dict[str, Memo] = {}  # operation -> memo of path -> detection or None

    def watched(self) -> tuple[_Watched, _Watched]:
        """((paths, patterns) for writes, (paths, patterns) for reads) that the file
        detections and rules need to see, to pass whatever the file filter says. (Calls that
        set mode bits or attributes a detection looks for the kernel passes anywhere.)"""
        w: _Watched = ([], [])
        r: _Watched = ([], [])
        for c in (*self.file_detections, *self.file_rules):
            # no paths: any file may match (by process name), so every event must pass; the
            # kernel filter then passes all of them (see matcher: pass_all)
            paths, patterns = c.paths.cover() if c.paths is not None else ([], ["*"])
            # every operation can write, create or change names (file_open: writable opens)
            w[0].extend(paths)
            w[1].extend(patterns)
            if c.sees("file_open", False):  # reads too
                r[0].extend(paths)
                r[1].extend(patterns)
        return w, r

    def file_detection(self, op: str, path: str | None, write: bool, mode: int | None = None,
                       xattr: str | None = None) -> PersistenceDetection | None:
        """The detection of a successful file call (`write`: the open wrote or created;
        `mode`: what a chmod set; `xattr`: the attribute a setxattr set), or None."""
        if path is None or not write:
            return None
        if (mode is not None and mode & self._mode_mask) or xattr in self._xattrs:
            for c in self.value_detections:
                if c.sets(mode, xattr) and (c.paths is None or c.paths.matches(path)):
                    return c.rule
        if not self.file_detections:
            return None
        memo = self._by_op.get(op)
        if memo is None:
            memo = self._by_op[op] = Memo(lambda path: self._judge(op, path))
        return memo[path]

    def _judge(self, op: str, path: str) -> PersistenceDetection | None:
        """A path entry that matches wins over one whose paths lie below a covering op's."""
        hit = None
        if self._any.matches(path):
            hit = next((c.rule for c in self.file_detections
                        if c.sees(op) and c.paths.matches(path)), None)
        if hit is None and op in COVERING_OPS:
            hit = next((c.rule for c in self.file_detections
                        if c.sees(op) and c.paths.below(path)), None)
        return hit

    def file_alerts(self, op: str, paths: Sequence[str | None], comm: str | None,
                    exe: str | None, write: bool = True) -> list[tuple[Rule, str | None]]:
        """The rules a file event matches, each with the first of `paths` (a rename's target,
        then its source) it matched on."""
        hits: list[tuple[Rule, str | None]] = []
        for c in self.file_rules:
            for p in paths:
                if c.file(op, p, comm, exe, write):
                    hits.append((c.rule, p))
                    break
        return hits

    def process_alerts(self, comm: str, exe: str | None, parent_comm: str | None,
                       parent_exe: str | None) -> list[Rule]:
        """The rules a process_start matches."""
        return [c.rule for c in self.process_rules
                if c.process(comm, exe, parent_comm, parent_exe)]

    def network(self, direction: str, port: int | None, addr: str | None, comm: str | None,
                exe: str | None) -> tuple[NetworkDetection | None, list[Rule]]:
        """(detection, rules) of a network event that succeeded or is in progress."""
        det = next((c.rule for c in self.network_detections
                    if c.network(direction, port, addr, comm, exe)), None)
        return det, [c.rule for c in self.network_rules
                     if c.network(direction, port, addr, comm, exe)]


def set_back(d: PersistenceDetection) -> PersistenceDetection:
    """What a persistence location's detection becomes when a call sets a file's modification
    time into the past there: timestomping (T1070.006), hiding a planted file among old ones."""
    return msgspec.structs.replace(d, name="timestamps_set_back",
                                   mitre=["T1070.006", *d.mitre])
