"""Built-in detections: annotations on the source event (`alert`, `detection_type`, `mitre`).

Network detections look at connections that succeeded or are in progress (see
NetworkDetections).

Persistence detections look at successful file operations on persistence locations; an open
counts only when it writes or creates (reading a unit file is not persistence). A rename or link
is judged on its target, which is where something new appears (a temp file renamed over a unit,
as editors, sed -i, install and dpkg do). Entries with `modes` judge chmods by the mode bits
set (a setuid bit appearing), entries with `xattrs` setxattrs by the attribute (file
capabilities), and they come first. The first matching detection wins. Pure: home
directories for `~/` paths are given, not looked up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from .config import MODE_BITS, NetworkDetection, PersistenceDetection
from .matcher import Memo, PathMatcher


def expand_homes(paths: Sequence[str], homes: Sequence[str]) -> list[str]:
    """`~/x` becomes `HOME/x` for every home; other paths stay as they are."""
    out: list[str] = []
    for p in paths:
        if p.startswith("~/"):
            out += [f"{h.rstrip('/')}/{p[2:]}" for h in homes]
        else:
            out.append(p)
    return out


# operations on a directory that matter to what lies below it: a mount hides it, a new
# directory (a new ~/.ssh) will hold it
COVERING_OPS = frozenset({"file_mount", "file_mkdir"})


class PathRule:
    """`paths` and `patterns` of a detection or file rule: with both, a path must match both
    (directory and name, e.g. `*.service` under the unit directories); with one, that one."""

    __slots__ = ("paths", "patterns", "by_path", "by_pattern", "matches")

    def __init__(self, paths: Sequence[str], patterns: Sequence[str], homes: Sequence[str]):
        self.paths = expand_homes(paths, homes)
        self.patterns = list(patterns)
        self.by_path = PathMatcher(self.paths) if self.paths else None
        self.by_pattern = PathMatcher((), self.patterns) if self.patterns else None
        self.matches: Callable[[str], bool] = Memo(self._judge).__getitem__

    def below(self, path: str) -> bool:
        """Does one of the rule's paths lie below directory `path`? (A mount there hides it.)"""
        d = path.rstrip("/") + "/"
        return any(p.startswith(d) for p in self.paths)

    def _judge(self, path: str) -> bool:
        if self.by_path is None and self.by_pattern is None:
            return False  # e.g. only `~/` paths and no homes: nothing to match, not everything
        return (self.by_path is None or self.by_path.matches(path)) and (
            self.by_pattern is None or self.by_pattern.matches(path)
        )


class PersistenceDetections:
    """The enabled persistence detections, compiled; `match` runs per file event."""

    def __init__(self, detections: Sequence[PersistenceDetection], homes: Sequence[str]):
        self.entries = [(d, PathRule(d.paths, d.patterns, homes), frozenset(d.operations))
                        for d in detections if not d.modes and not d.xattrs]
        # entries on what a call sets (mode bits, attributes) judge by it too (not memoized by
        # path); they come first, being the more specific
        self.by_value = [
            (d, PathRule(d.paths, d.patterns, homes) if d.paths or d.patterns else None,
             sum(MODE_BITS[m] for m in d.modes), frozenset(d.xattrs))
            for d in detections if d.modes or d.xattrs
        ]
        self.mode_mask = 0
        self.xattrs: frozenset[str] = frozenset()
        for _, _, mask, names in self.by_value:
            self.mode_mask |= mask
            self.xattrs |= names
        # one matcher over all of them: most events match none, and this says so at once (an
        # entry with paths and patterns needs its pattern, so the pattern stands for it)
        self._any = PathMatcher(
            [p for _, r, _ in self.entries if r.by_pattern is None for p in r.paths],
            [p for _, r, _ in self.entries for p in r.patterns],
        )
        self._by_op: dict[str, Memo] = {}  # operation -> memo of path -> detection or None

    def watched(self) -> tuple[list[str], list[str]]:
        """(paths, patterns) to pass whatever the file filter says."""
        paths = [p for _, r, _ in self.entries for p in r.paths]
        patterns = [p for _, r, _ in self.entries if r.by_path is None for p in r.patterns]
        return paths, patterns

    def match(
        self, op: str, path: str | None, ok: bool, write: bool, mode: int | None = None,
        xattr: str | None = None,
    ) -> PersistenceDetection | None:
        """The detection for a file event (`write`: the open wrote or created; `mode`: what a
        chmod set; `xattr`: the attribute a setxattr set), or None."""
        if not ok or path is None or not write:
            return None
        if (mode is not None and mode & self.mode_mask) or xattr in self.xattrs:
            for d, rule, mask, names in self.by_value:
                hit = (mode is not None and mode & mask) or xattr in names
                if hit and (rule is None or rule.matches(path)):
                    return d
        if not self.entries:
            return None
        memo = self._by_op.get(op)
        if memo is None:
            memo = self._by_op[op] = Memo(lambda path: self._judge(op, path))
        return memo[path]

    def _judge(self, op: str, path: str) -> PersistenceDetection | None:
        hit = None
        if self._any.matches(path):  # every entry's matches imply this one's
            hit = next((d for d, rule, ops in self.entries
                        if (op in ops or "*" in ops) and rule.matches(path)), None)
        if hit is None and op in COVERING_OPS:
            hit = next((d for d, rule, ops in self.entries
                        if (op in ops or "*" in ops) and rule.below(path)), None)
        return hit


def set_back(d: PersistenceDetection) -> PersistenceDetection:
    """What a persistence location's detection becomes when a call sets a file's modification
    time into the past there: timestomping (T1070.006), hiding a planted file among old ones."""
    return msgspec.structs.replace(d, name="timestamps_set_back",
                                   mitre=["T1070.006", *d.mitre])


class NetworkDetections:
    """`[[detections.network]]`: direction, port (the remote one outbound, the local one
    otherwise) and process name (comm or executable basename); first match wins."""

    def __init__(self, detections: Sequence[NetworkDetection]) -> None:
        self.entries = [(d, frozenset(d.directions), frozenset(d.ports),
                         frozenset(d.process_names)) for d in detections]

    def match(self, direction: str, port: int | None, comm: str | None,
              exe: str | None) -> NetworkDetection | None:
        base = exe[exe.rfind("/") + 1 :] if exe else None
        for d, directions, ports, names in self.entries:
            if direction not in directions or (ports and port not in ports):
                continue
            if names and comm not in names and base not in names:
                continue
            return d
        return None
