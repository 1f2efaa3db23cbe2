"""The one compiled matcher of detections and rules: `CompiledRule`.

A detection is a rule whose match annotates its source event (`alert`, `detection_type`,
`mitre`); a `[[rules]]` entry is one whose match is a separate `alert` record. Both compile to
the same matcher, which looks by family at: process names, parent names, executable paths
(process); operations, paths and patterns, names, and for persistence detections the mode bits
a chmod sets and the attribute a setxattr sets (file); directions, ports, addresses, names
(network). Within one field any entry may match; every field given must match. Names are
compared with the process name (comm) and with the basename of its executable. Pure: homes
for `~/` paths are given, not looked up.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence

from .config import MODE_BITS, NetworkDetection, PersistenceDetection, Rule
from .matcher import Memo, PathMatcher

# operations on a directory that matter to what lies below it: a mount hides it, a new
# directory (a new ~/.ssh) will hold it
COVERING_OPS = frozenset({"file_mount", "file_mkdir"})


def expand_homes(paths: Sequence[str], homes: Sequence[str]) -> list[str]:
    """`~/x` becomes `HOME/x` for every home; other paths stay as they are."""
    out: list[str] = []
    for p in paths:
        if p.startswith("~/"):
            out += [f"{h.rstrip('/')}/{p[2:]}" for h in homes]
        else:
            out.append(p)
    return out


def names_match(names: frozenset[str], comm: str | None, exe: str | None) -> bool:
    """Is the process one of `names`, by its name (comm) or by its executable's basename (a
    renamed comm does not hide the image)?"""
    if comm in names:
        return True
    return exe is not None and exe[exe.rfind("/") + 1 :] in names


class PathRule:
    """`paths` and `patterns` of a detection or file rule: with both, a path must match both
    (directory and name, e.g. `*.service` under the unit directories); with one, that one."""

    __slots__ = ("paths", "patterns", "_by_path", "_by_pattern", "matches")

    def __init__(self, paths: Sequence[str], patterns: Sequence[str], homes: Sequence[str]):
        self.paths = expand_homes(paths, homes)
        self.patterns = list(patterns)
        self._by_path = PathMatcher(self.paths) if self.paths else None
        self._by_pattern = PathMatcher((), self.patterns) if self.patterns else None
        self.matches: Callable[[str], bool] = Memo(self._judge).__getitem__

    def below(self, path: str) -> bool:
        """Does one of the rule's paths lie below directory `path`? (A mount there hides it.)"""
        d = path.rstrip("/") + "/"
        return any(p.startswith(d) for p in self.paths)

    def cover(self) -> tuple[list[str], list[str]]:
        """(paths, patterns) that every path the rule matches matches too: its paths when it
        has some (the kernel filter's trie holds them exactly), else its patterns."""
        return (self.paths, []) if self.paths else ([], self.patterns)

    def _judge(self, path: str) -> bool:
        if self._by_path is None and self._by_pattern is None:
            return False  # e.g. only `~/` paths and no homes: nothing to match, not everything
        return (self._by_path is None or self._by_path.matches(path)) and (
            self._by_pattern is None or self._by_pattern.matches(path)
        )


def _path_rule(paths: Sequence[str], patterns: Sequence[str],
               homes: Sequence[str]) -> PathRule | None:
    return PathRule(paths, patterns, homes) if paths or patterns else None


class CompiledRule:
    """One detection or rule (`rule`: its config entry) with its matchers built once. A field
    the matches look at matches anything when left empty, except `ops` (a rule without
    operations has `*`) and `directions` (None: any); `mode_mask` and `xattrs` are what
    `sets()` looks for."""

    __slots__ = ("rule", "ops", "writes_only", "paths", "names", "parents", "exes",
                 "directions", "ports", "nets", "mode_mask", "xattrs")

    def __init__(
        self, rule: Rule | PersistenceDetection | NetworkDetection, *,
        ops: Iterable[str] = ("*",), writes_only: bool = False, paths: PathRule | None = None,
        names: Iterable[str] = (), parents: Iterable[str] = (), exe_paths: Sequence[str] = (),
        directions: Iterable[str] | None = None, ports: Iterable[int] = (),
        addresses: Iterable[str] = (), modes: Iterable[str] = (), xattrs: Iterable[str] = (),
    ) -> None:
        self.rule = rule
        self.ops = frozenset(ops)
        self.writes_only = writes_only  # an open counts only when it writes or creates
        self.paths = paths
        self.names = frozenset(names)
        self.parents = frozenset(parents)
        self.exes = PathMatcher(exe_paths) if exe_paths else None
        self.directions = frozenset(directions) if directions is not None else None
        self.ports = frozenset(ports)
        self.nets = [ipaddress.ip_network(a, strict=False) for a in addresses]
        self.mode_mask = sum(MODE_BITS[m] for m in modes)
        self.xattrs = frozenset(xattrs)

    def process(self, comm: str, exe: str | None, parent_comm: str | None,
                parent_exe: str | None) -> bool:
        return (
            (not self.names or names_match(self.names, comm, exe))
            and (not self.parents or names_match(self.parents, parent_comm, parent_exe))
            and (self.exes is None or (exe is not None and self.exes.matches(exe)))
        )

    def sees(self, op: str, write: bool = True) -> bool:
        """Does the rule look at this file operation? (`write`: for file_open, the open wrote
        or created: file_open_write.)"""
        if not write and self.writes_only:
            return False
        ops = self.ops
        return op in ops or "*" in ops or (write and op == "file_open" and "file_open_write" in ops)

    def file(self, op: str, path: str | None, comm: str | None, exe: str | None,
             write: bool = True) -> bool:
        """A file event (or a change found at start: operation persistence_change); a
        covering operation (COVERING_OPS) matches above the rule's paths too."""
        return (
            self.sees(op, write)
            and (self.paths is None or (path is not None and (
                self.paths.matches(path) or (op in COVERING_OPS and self.paths.below(path)))))
            and (not self.names or names_match(self.names, comm, exe))
        )

    def sets(self, mode: int | None, xattr: str | None) -> bool:
        """Does a chmod (`mode`) or setxattr (`xattr`) set what the rule looks for?"""
        return bool(mode is not None and mode & self.mode_mask) or xattr in self.xattrs

    def network(self, direction: str | None, port: int | None, addr: str | None,
                comm: str | None, exe: str | None) -> bool:
        """A network event: `port` and `addr` are the remote ones outbound, else the local
        ones."""
        if self.directions is not None and direction not in self.directions:
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
        return not self.names or names_match(self.names, comm, exe)


def compile_rule(r: Rule, homes: Sequence[str]) -> CompiledRule:
    """A `[[rules]]` entry: its match is an `alert` record."""
    return CompiledRule(
        r, ops=r.operations or ("*",), paths=_path_rule(r.paths, r.patterns, homes),
        names=r.process_names, parents=r.parent_names, exe_paths=r.exe_paths,
        directions=(r.direction,) if r.direction is not None else None, ports=r.ports,
        addresses=r.addresses,
    )


def compile_persistence(d: PersistenceDetection, homes: Sequence[str]) -> CompiledRule:
    """A `[[detections.persistence]]` entry: successful writes, creates and name changes only
    (reading a unit file is not persistence)."""
    return CompiledRule(d, ops=d.operations, writes_only=True,
                        paths=_path_rule(d.paths, d.patterns, homes), modes=d.modes,
                        xattrs=d.xattrs)


def compile_network(d: NetworkDetection) -> CompiledRule:
    """A `[[detections.network]]` entry."""
    return CompiledRule(d, directions=d.directions, ports=d.ports, names=d.process_names)
