"""The one path matcher (of the file filter, the detections and the rules) and the kernel filter.

Matching works on decoded, normalized paths (`randguard.paths.decode_path` then
`randguard.paths.normalize`/`join`). Config strings are plain text: a backslash in a config path
matches a backslash in the file name (internally it is doubled, as `decode_path` does).

Semantics of `PathMatcher`:

* paths are directory-aware prefixes: ``/etc`` matches ``/etc`` and ``/etc/x`` but not ``/etcd``;
  ``/etc/`` means the same as ``/etc``; ``/`` matches every absolute path;
* a path containing a glob character (``*?[``) is a glob anchored to the whole path, and is
  directory-aware too: it matches a path or anything below one;
* a pattern without ``/`` matches the basename (``*.service``, ``authorized_keys``), a pattern
  with ``/`` matches the whole path;
* globs follow fnmatch (case-sensitive, ``[!...]`` negation, an unclosed ``[`` is literal) except
  that ``*``, ``?`` and ``[...]`` never match ``/``.

`compile_kernel_filter` turns a `FileFilter` into the tables of the BPF filter (an LPM trie, a few
path suffixes and `pass_all` bits). The kernel filter is a superset of the userspace one: it
may pass events userspace drops, never the other way round.
"""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

import msgspec

from .paths import normalize
from .records import (
    VERDICT_EXCLUDE,
    VERDICT_FORCE,
    VERDICT_READ,
    VERDICT_WATCH,
    Compiled,
    Field,
    field_layout,
    num,
    octets,
    pad,
    struct_mismatches,
)

if TYPE_CHECKING:
    from .config import FileConfig

__all__ = [
    "KERNEL_FILTER_MAX_SUFFIXES",
    "KERNEL_SUFFIX_LEN",
    "KERNEL_SUFFIX_SIZE",
    "KERNEL_TRIE_KEY_LEN",
    "KERNEL_TRIE_MAX_PREFIX",
    "VERDICT_EXCLUDE",
    "VERDICT_FORCE",
    "VERDICT_READ",
    "VERDICT_WATCH",
    "FileFilter",
    "KernelFilter",
    "Memo",
    "PathMatcher",
    "TrieEntry",
    "compile_kernel_filter",
    "filter_mismatches",
    "glob_to_regex",
    "has_glob",
    "kernel_form",
    "pack_filter_conf",
    "pack_suffix",
    "pack_trie_key",
    "pack_trie_value",
]

# randguard.h's filter limits; FILTER_STRUCTS lays its structs out with them and the loader
# checks those against the object's BTF (filter_mismatches), the verdicts with the other enums.
KERNEL_TRIE_KEY_LEN = 256
KERNEL_FILTER_MAX_SUFFIXES = 16
KERNEL_SUFFIX_LEN = 30
# sizeof(struct rg_suffix): len, verdict, then s[RG_SUFFIX_LEN + 2] (two bytes of slack that keep
# the kernel's masked indexes in bounds). The suffixes of rg_filter_conf are this far apart.
KERNEL_SUFFIX_SIZE = 2 + KERNEL_SUFFIX_LEN + 2
FILTER_STRUCTS: dict[str, tuple[Field, ...]] = {
    "rg_filter_key": (num("prefixlen", "I"), octets("data", KERNEL_TRIE_KEY_LEN)),
    "rg_filter_val": (num("verdict", "B"), num("exact", "B"), num("fallback", "B"), pad(1)),
    "rg_suffix": (num("len", "B"), num("verdict", "B"), octets("s", KERNEL_SUFFIX_LEN + 2)),
    "rg_filter_conf": (num("nr_suffixes", "I"), num("pass_all", "I"),
                       octets("suffixes", KERNEL_FILTER_MAX_SUFFIXES * KERNEL_SUFFIX_SIZE)),
}
_PACK = {name: struct.Struct("=" + "".join(f.fmt for f in fields))
         for name, fields in FILTER_STRUCTS.items()}
# The value's `exact` byte holds the prefix length, so an exact entry is at most 255 bytes; longer
# prefixes are cut to this many bytes (a shorter prefix passes more: still a superset).
KERNEL_TRIE_MAX_PREFIX = 255

_NO_TOP: tuple[int, ...] = ()
_MAX_CUTS = 6  # beyond this many distinct prefix lengths per top, walking ancestors is cheaper

_FullMatch = Callable[[str], "re.Match[str] | None"]
_GLOB_RE = re.compile(r"[*?\[]")

log = logging.getLogger("randguard.matcher")


class Memo(dict):
    """A bounded memo of a pure function of one hashable argument: `memo[key]` is a dict
    lookup when the key was seen (the common case: the same files are opened again and again),
    else `fn(key)`, stored. Cleared when full, so memory stays bounded under unique paths."""

    __slots__ = ("fn", "size")

    def __init__(self, fn: Callable[[str], object], size: int = 2048) -> None:
        super().__init__()
        self.fn = fn
        self.size = size

    def __missing__(self, key: str) -> object:
        if len(self) >= self.size:
            self.clear()
        value = self[key] = self.fn(key)
        return value


def has_glob(s: str) -> bool:
    """Whether `s` contains a glob character, i.e. is a pattern rather than a literal."""
    return _GLOB_RE.search(s) is not None


def _esc(s: str) -> str:
    """Config text -> decoded-path text (a literal backslash is doubled, as decode_path does)."""
    return s.replace("\\", "\\\\") if "\\" in s else s


def _bracket_end(pat: str, i: int) -> int | None:
    """Where the bracket expression opened just before `i` closes (fnmatch's rules: a leading
    ``!`` negates, a ``]`` right after the opening is a member), or None when it never does."""
    n = len(pat)
    if i < n and pat[i] == "!":
        i += 1
    if i < n and pat[i] == "]":
        i += 1
    while i < n and pat[i] != "]":
        i += 1
    return i if i < n else None


def glob_to_regex(pat: str) -> str:
    """Translate a shell glob to a regex body (no anchors) where only ``**`` matches ``/``:
    ``*``, ``?`` and ``[...]`` stay within one path component; ``**`` is any run of characters,
    and ``**/`` any run of whole directories, none included (``/**/x`` matches ``/x``).

    Own translation instead of fnmatch.translate: fnmatch lets ``*`` cross ``/``.
    """
    out: list[str] = []
    i, n = 0, len(pat)
    while i < n:
        c = pat[i]
        i += 1
        if c == "*":
            deep = i < n and pat[i] == "*"
            while i < n and pat[i] == "*":
                i += 1
            if not deep:
                out.append("[^/]*")
            elif i < n and pat[i] == "/":
                i += 1
                out.append("(?:.*/)?")
            else:
                out.append(".*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = _bracket_end(pat, i)
            if j is None:  # unclosed: a literal "["
                out.append(re.escape(c))
                continue
            stuff = pat[i:j]
            i = j + 1
            negate = stuff.startswith("!")
            if negate:
                stuff = stuff[1:]
            items: list[str] = []
            k = 0
            while k < len(stuff):
                if k + 2 < len(stuff) and stuff[k + 1] == "-":
                    lo, hi = stuff[k], stuff[k + 2]
                    if lo <= hi:  # fnmatch drops empty ranges
                        items.append(f"{re.escape(lo)}-{re.escape(hi)}")
                    k += 3
                else:
                    items.append(re.escape(stuff[k]))
                    k += 1
            body = "".join(items)
            if negate:
                out.append(f"[^/{body}]")
            elif body:
                out.append(f"(?!/)[{body}]")
            else:
                out.append("(?!)")  # an empty set matches nothing
        else:
            out.append(re.escape(c))
    return "".join(out)


class PathMatcher:
    """Directory-aware path prefixes plus shell-glob patterns, precompiled for per-event use."""

    __slots__ = (
        "_all",
        "_prefixes",
        "_max_len",
        "_base_names",
        "_base_suffixes",
        "_base_re",
        "_full_re",
        "_tops",
        "_has_base",
    )

    def __init__(self, paths: Iterable[str] = (), patterns: Iterable[str] = ()) -> None:
        self._all = False  # "/" is among the paths
        prefixes: set[str] = set()
        base_names: set[str] = set()
        base_suffixes: list[str] = []
        base_globs: list[str] = []
        full_globs: list[str] = []
        for p in paths:
            p = normalize(_esc(p))
            if has_glob(p):
                # anchored to the whole path, or anything below a match
                full_globs.append(glob_to_regex(p) + "(?:/.*)?")
            elif p == "/":
                self._all = True
            else:
                prefixes.add(p)
        for pat in patterns:
            pat = _esc(_norm_pattern(pat))
            if "/" in pat:
                full_globs.append(glob_to_regex(pat))
            elif not has_glob(pat):
                base_names.add(pat)
            elif pat.startswith("*") and not has_glob(pat.lstrip("*")):
                base_suffixes.append(pat.lstrip("*"))
            else:
                base_globs.append(glob_to_regex(pat))
        self._prefixes = frozenset(prefixes)
        self._max_len = max(map(len, prefixes), default=0)
        self._base_names = frozenset(base_names)
        self._base_suffixes = tuple(base_suffixes)
        self._base_re = _compile_alternatives(base_globs)
        self._full_re = _compile_alternatives(full_globs, dotall=True)
        # first component -> sorted prefix lengths below it, or None (too many: walk ancestors)
        by_top: dict[str, set[int]] = {}
        for p in prefixes:
            j = p.find("/", 1)
            by_top.setdefault(p if j < 0 else p[:j], set()).add(len(p))
        self._tops = {
            t: tuple(sorted(ls)) if len(ls) <= _MAX_CUTS else None for t, ls in by_top.items()
        }
        self._has_base = bool(base_names or base_suffixes or base_globs)

    def matches(self, path: str) -> bool:
        """Whether a decoded, normalized path is selected. O(depth) set lookups for prefixes."""
        if path[:1] == "/":
            if self._all:
                return True
            tops = self._tops
            if tops:
                # prune on the first component: most paths share it with no prefix
                j = path.find("/", 1)
                lens = tops.get(path if j < 0 else path[:j], _NO_TOP)
                if lens is None:
                    if self._walk(path):
                        return True
                elif lens:
                    # few distinct prefix lengths under this top: test just those cut points
                    n = len(path)
                    prefixes = self._prefixes
                    for k in lens:
                        if k >= n:
                            if k == n and path in prefixes:
                                return True
                            break
                        if path[k] == "/" and path[:k] in prefixes:
                            return True
        if self._has_base:
            base = path[path.rfind("/") + 1 :]
            if base in self._base_names:
                return True
            if self._base_suffixes and base.endswith(self._base_suffixes):
                return True
            if self._base_re is not None and self._base_re(base) is not None:
                return True
        return self._full_re is not None and self._full_re(path) is not None

    def _walk(self, path: str) -> bool:
        """Test each ancestor of `path` no longer than the longest prefix against the set."""
        prefixes = self._prefixes
        max_len = self._max_len
        if len(path) <= max_len and path in prefixes:
            return True
        i = path.rfind("/", 0, max_len + 1)
        while i > 0:
            if path[:i] in prefixes:
                return True
            i = path.rfind("/", 0, i)
        return False


def _compile_alternatives(bodies: Sequence[str], dotall: bool = False) -> _FullMatch | None:
    """One fullmatch callable for a list of regex bodies, or None when there are none."""
    if not bodies:
        return None
    flags = re.DOTALL if dotall else 0
    return re.compile("|".join(f"(?:{b})" for b in bodies), flags).fullmatch


class FileFilter:
    """The userspace file event filter from the ``[file]`` config section.

    Excludes win over everything; write-like operations pass when watched (watch_paths or
    watch_patterns); read-only opens pass only under read_paths, so that e.g. every exec reading
    /etc/ld.so.cache does not flood the output.
    """

    __slots__ = (
        "watch_paths", "watch_patterns", "exclude_paths", "read_paths", "force", "force_read",
        "_writes", "_reads", "_excluded", "_forced_writes", "_forced_reads", "_wants_write",
        "_wants_read", "_above",
    )

    def __init__(
        self,
        watch_paths: Sequence[str] = (),
        watch_patterns: Sequence[str] = (),
        exclude_paths: Sequence[str] = (),
        read_paths: Sequence[str] = (),
        force: tuple[Sequence[str], Sequence[str]] = ((), ()),
        force_read: tuple[Sequence[str], Sequence[str]] = ((), ()),
    ) -> None:
        self.watch_paths = tuple(watch_paths)
        self.watch_patterns = tuple(watch_patterns)
        self.exclude_paths = tuple(exclude_paths)
        self.read_paths = tuple(read_paths)
        # (paths, patterns) that detections and rules look at: they pass whatever the watch and
        # exclude lists say, so nothing a detection or rule would match is filtered away
        self.force = (tuple(force[0]), tuple(force[1]))
        self.force_read = (tuple(force_read[0]), tuple(force_read[1]))
        self._writes = PathMatcher(self.watch_paths, self.watch_patterns)
        self._reads = PathMatcher(self.read_paths)
        self._excluded = PathMatcher(self.exclude_paths)
        self._forced_writes = PathMatcher(*self.force) if any(self.force) else None
        self._forced_reads = PathMatcher(*self.force_read) if any(self.force_read) else None
        self._wants_write = Memo(lambda path: self._judge(path, True))
        self._wants_read = Memo(lambda path: self._judge(path, False))
        self._above: frozenset[bytes] | None = None

    @classmethod
    def from_config(
        cls,
        section: FileConfig,
        force: tuple[Sequence[str], Sequence[str]] = ((), ()),
        force_read: tuple[Sequence[str], Sequence[str]] = ((), ()),
    ) -> FileFilter:
        """Build from the ``[file]`` section (`randguard.config.FileConfig`), plus what the
        detections and rules need to see."""
        return cls(
            section.watch_paths, section.watch_patterns, section.exclude_paths,
            section.read_paths, force, force_read,
        )

    def wants(self, path: str, write: bool) -> bool:
        """Whether an event on a decoded, normalized path is reported.

        `write` is True for creates, writes, truncating or writable opens, rename, unlink, link;
        False for read-only opens.
        """
        return (self._wants_write if write else self._wants_read)[path]

    def _judge(self, path: str, write: bool) -> bool:
        forced = self._forced_writes if write else self._forced_reads
        if forced is not None and forced.matches(path):
            return True
        if self._excluded.matches(path):
            return False
        return (self._writes if write else self._reads).matches(path)

    def wants_any(self, paths: Iterable[str], write: bool) -> bool:
        """For two-path operations (rename, link): reported when either side passes."""
        return any(self.wants(p, write) for p in paths)

    def covers(self, path: str) -> bool:
        """Whether directory `path` has paths of the filter below it: a mount there hides them,
        so a mount or umount there is reported (the kernel's rg_dir_below, the same set)."""
        if self._above is None:
            self._above = dirs_above(compile_kernel_filter(self))
        return (path.rstrip("/") + "/").encode(errors="surrogateescape") in self._above


# ---------------------------------------------------------------------------------------------
# Kernel filter compilation


class TrieEntry(msgspec.Struct, frozen=True):
    """One LPM trie entry. `exact`: `verdict` applies only to a path of exactly len(prefix)
    bytes, any longer path that reaches this entry gets `fallback`."""

    prefix: bytes
    exact: bool
    verdict: int
    fallback: int


class KernelFilter(msgspec.Struct, frozen=True):
    """The kernel filter tables; `passes` is the reference of the BPF lookup (key_passes()).

    `widened`: the patterns the tables could only express coarsely, each with the suffix the
    kernel matches it by (a shorter one shared with other patterns, when there were more
    suffixes than slots) or ``b""`` for `pass_all`; logged at compile time."""

    trie: list[TrieEntry]
    suffixes: list[tuple[bytes, int]]
    pass_all: int
    widened: tuple[tuple[str, bytes], ...] = ()

    def passes(self, path: bytes, write: bool) -> bool:
        """Emulate the kernel's decision for a raw absolute path (slow; for tests and docs).

        Order: the trie verdict has the needed bit -> pass (a verdict with the bit is never
        EXCLUDE); a suffix with the bit matches the end of the path -> pass, where an excluded path
        needs the suffix's FORCE bit; `pass_all` has the bit (and FORCE, if excluded) -> pass;
        else drop.
        """
        need = VERDICT_WATCH if write else VERDICT_READ
        key = path[:KERNEL_TRIE_KEY_LEN]
        best: TrieEntry | None = None
        for e in self.trie:
            if key.startswith(e.prefix) and (best is None or len(e.prefix) > len(best.prefix)):
                best = e
        bits = 0
        if best is not None:
            exact_miss = best.exact and len(best.prefix) != len(path)
            bits = best.fallback if exact_miss else best.verdict
        if bits & need:
            return True
        excluded = bits & VERDICT_EXCLUDE
        for s, v in self.suffixes:
            if v & need and (not excluded or v & VERDICT_FORCE) and path.endswith(s):
                return True
        if excluded:
            return bool(self.pass_all & VERDICT_FORCE and self.pass_all & need)
        return bool(self.pass_all & need)


def dirs_above(kf: KernelFilter) -> frozenset[bytes]:
    """The directories (with their trailing "/") that have trie entries below them: their files
    are judged by name (never by the directory cache), and a mount on them hides what the
    filter names."""
    return frozenset(e.prefix[: i + 1] for e in kf.trie
                     for i, c in enumerate(e.prefix[:-1]) if c == ord("/"))


def pack_trie_key(prefix: bytes) -> bytes:
    """`struct rg_filter_key` for a prefix (prefixlen in bits, host order; data zero padded)."""
    if len(prefix) > KERNEL_TRIE_KEY_LEN:
        raise ValueError(f"trie prefix longer than {KERNEL_TRIE_KEY_LEN} bytes: {prefix!r}")
    return _PACK["rg_filter_key"].pack(len(prefix) * 8, prefix)


def pack_trie_value(e: TrieEntry) -> bytes:
    """`struct rg_filter_val`. The kernel compares `exact` with the path length, so an exact entry
    stores its prefix length there (1..255) and a non-exact one 0."""
    exact = len(e.prefix) if e.exact else 0
    if exact > KERNEL_TRIE_MAX_PREFIX:
        raise ValueError(f"exact trie prefix longer than {KERNEL_TRIE_MAX_PREFIX} bytes")
    return _PACK["rg_filter_val"].pack(e.verdict, exact, e.fallback)


def pack_suffix(s: bytes, verdict: int) -> bytes:
    """`struct rg_suffix`: length, verdict, then the suffix left-aligned and zero padded to the
    whole `s[RG_SUFFIX_LEN + 2]` array, so that suffixes packed one after another sit where
    the kernel reads `conf->suffixes[i]` (KERNEL_SUFFIX_SIZE bytes apart)."""
    if len(s) > KERNEL_SUFFIX_LEN:
        raise ValueError(f"suffix longer than {KERNEL_SUFFIX_LEN} bytes: {s!r}")
    return _PACK["rg_suffix"].pack(len(s), verdict, s)


def pack_filter_conf(kf: KernelFilter) -> bytes:
    """`struct rg_filter_conf`: the suffixes in their slots, and the pass_all verdict bits.
    (struct's "s" would cut a longer run of suffixes without a word: refuse it instead.)"""
    if len(kf.suffixes) > KERNEL_FILTER_MAX_SUFFIXES:
        raise ValueError(f"{len(kf.suffixes)} suffixes for {KERNEL_FILTER_MAX_SUFFIXES} slots")
    return _PACK["rg_filter_conf"].pack(
        len(kf.suffixes), kf.pass_all, b"".join(pack_suffix(s, v) for s, v in kf.suffixes))


def filter_mismatches(compiled: Compiled) -> list[str]:
    """Differences between FILTER_STRUCTS and an object's compiled filter structs (`compiled`:
    BpfObject.struct_layout); empty when they agree."""
    return [p for name, fields in FILTER_STRUCTS.items()
            for p in struct_mismatches(compiled, name, field_layout(fields))]


def _norm_pattern(pat: str) -> str:
    """Absolute full-path patterns get the same lexical normalization as paths."""
    return normalize(pat) if pat.startswith("/") else pat


def _literal_prefix(pat: str) -> str:
    m = _GLOB_RE.search(pat)
    return pat if m is None else pat[: m.start()]


_HEX = frozenset("0123456789abcdef")


def _unanchored_suffix(lit: str) -> bytes:
    """Raw-byte suffix that every path whose decoded text ends with `lit` is sure to end with.

    The decoded text may start `lit` in the middle of an escape (``\\\\`` or ``\\xNN``) that stands
    for one raw byte, so drop what could lie inside one: everything up to the last backslash,
    then a leading ``xNN``, ``NN`` or ``N`` (lowercase hex) that may be the rest of a ``\\xNN``.
    """
    tail = lit[lit.rfind("\\") + 1 :]
    if len(tail) >= 3 and tail[0] == "x" and tail[1] in _HEX and tail[2] in _HEX:
        tail = tail[3:]
    elif len(tail) >= 2 and tail[0] in _HEX and tail[1] in _HEX:
        tail = tail[2:]
    elif tail[:1] in _HEX:
        tail = tail[1:]
    return tail.encode("utf-8")[-KERNEL_SUFFIX_LEN:]


def _literal_tail(pat: str) -> str | None:
    """The text after the last wildcard of a glob (``*``, ``?`` or a closed ``[...]``, parsed as
    `glob_to_regex` does: an unclosed ``[`` is literal), or None when there is no wildcard."""
    end = None
    i, n = 0, len(pat)
    while i < n:
        c = pat[i]
        i += 1
        if c in "*?":
            end = i
        elif c == "[":
            j = _bracket_end(pat, i)
            if j is not None:  # closed: a wildcard; unclosed: a literal "[", go on after it
                i = end = j + 1
    return None if end is None else pat[end:]


def kernel_form(pat: str) -> tuple[str, bytes]:
    """How the kernel filter expresses a pattern (config text, as in `PathMatcher`): one of

    * ``("prefix", P)``: an absolute full-path pattern with a literal beginning longer than
      ``/``: a raw trie prefix (``/etc/cron.*/*`` -> ``/etc/cron.``);
    * ``("suffix", S)``: raw bytes every matching path ends with: ``/NAME`` for a literal file
      name (the whole last component), else the literal text after the last wildcard
      (``*.service`` -> ``.service``, ``[ab]*.conf`` -> ``.conf``, ``/*/x.py`` -> ``/x.py``), cut
      to its last KERNEL_SUFFIX_LEN bytes and to what cannot lie inside an escape;
    * ``("all", b"")``: nothing usable (``cron*``, ``*``): `pass_all` for its verdict bits.

    Every form passes a superset of the paths the pattern matches; userspace decides.
    """
    pat = _norm_pattern(pat)
    tail = _literal_tail(pat)
    if "/" in pat:
        prefix = _literal_prefix(pat)
        if pat.startswith("/") and len(prefix) > 1:
            return "prefix", prefix.encode("utf-8")
    elif tail is None:
        # a file name: the whole last component (a name longer than the slot is cut: it still
        # ends every path that has the name)
        return "suffix", (b"/" + pat.encode("utf-8"))[-KERNEL_SUFFIX_LEN:]
    if tail is None:
        # a literal relative path: a path matches it only if it is that text, so it ends so
        tail = pat
    sfx = _unanchored_suffix(_esc(tail)) if tail else b""
    return ("suffix", sfx) if sfx else ("all", b"")


def _common_ending(a: bytes, b: bytes) -> bytes:
    n = 0
    for x, y in zip(reversed(a), reversed(b), strict=False):
        if x != y:
            break
        n += 1
    return a[len(a) - n :]


def _fit_suffixes(
    suffixes: dict[bytes, int], origins: dict[bytes, set[str]], pass_all: int,
) -> tuple[dict[bytes, int], int, dict[str, bytes], int]:
    """Fit the suffixes into KERNEL_FILTER_MAX_SUFFIXES slots, passing a superset.

    A suffix that ends with another one whose bits cover its own is dropped (exact: every path
    it passes, the other passes), as is one whose bits `pass_all` has. While there are too
    many, the two with the longest common ending (same bits preferred) are replaced by that
    ending with both bits, which passes everything either did; no common ending means
    `pass_all` for both bits. Returns (suffixes, pass_all, widened, needed): widened maps each
    pattern whose suffix was replaced to the suffix it now passes by, or b"" for `pass_all`;
    needed is how many slots the suffixes would take without that."""
    cur = dict(suffixes)
    members = {s: {s} for s in cur}  # suffix in the table -> original suffixes it stands for
    merged_into: dict[bytes, bytes] = {}  # original suffix -> what replaced it by merging

    def prune(overflow: bool) -> None:
        for s in sorted(cur, key=len, reverse=True):
            v = cur[s]
            if v & ~pass_all == 0:
                del cur[s]
                for o in members.pop(s):
                    if overflow:  # pass_all has these bits because the slots ran out
                        merged_into[o] = b""
                continue
            t = next((t for t in cur if t != s and s.endswith(t) and v & ~cur[t] == 0), None)
            if t is not None:
                del cur[s]
                members[t] |= members.pop(s)

    prune(False)
    needed = len(cur)
    while len(cur) > KERNEL_FILTER_MAX_SUFFIXES:
        # the longest common ending of any two is that of two neighbours in reversed order
        order = sorted(cur, key=lambda s: s[::-1])
        best = max(
            pairwise(order),
            key=lambda ab: (len(_common_ending(*ab)), cur[ab[0]] == cur[ab[1]]),
        )
        a, b = best
        c = _common_ending(a, b)
        bits = cur.pop(a) | cur.pop(b)
        group = members.pop(a) | members.pop(b)
        for s in group:
            merged_into[s] = c
        if c:
            cur[c] = cur.get(c, 0) | bits
            members[c] = members.get(c, set()) | group
        else:
            pass_all |= bits
        prune(True)
    # where each merged original went in the end (a later merge or pass_all may have taken it)
    final = {o: s for s, group in members.items() for o in group}
    widened: dict[str, bytes] = {}
    for o in merged_into:
        for pat in origins.get(o, ()):
            widened[pat] = final.get(o, b"")
    return cur, pass_all, widened, needed


def _bits_text(bits: int) -> str:
    what = [w for b, w in ((VERDICT_WATCH, "writes"), (VERDICT_READ, "reads")) if bits & b]
    return " and ".join(what) + (", also under exclude_paths" if bits & VERDICT_FORCE else "")


def _log_widened(widened: dict[str, tuple[bytes, int]], n_suffixes: int) -> None:
    """One warning: which patterns the kernel cannot express and what it passes instead."""
    by_form: dict[tuple[bytes, int], list[str]] = {}
    for pat, form in widened.items():
        by_form.setdefault(form, []).append(pat)
    parts = []
    for (sfx, bits), pats in sorted(by_form.items()):
        how = f"paths ending in {sfx.decode('utf-8', 'backslashreplace')!r}" if sfx else (
            "every path (pass_all)")
        parts.append(f"{', '.join(map(repr, sorted(pats)))} as {how} ({_bits_text(bits)})")
    slots = (f"{n_suffixes} suffixes for {KERNEL_FILTER_MAX_SUFFIXES} slots; "
             if n_suffixes > KERNEL_FILTER_MAX_SUFFIXES else "")
    log.warning("kernel filter: %scannot express %d pattern(s) exactly, so it passes more and "
                "userspace matches them exactly: %s", slots, len(widened), "; ".join(parts))


def compile_kernel_filter(f: FileFilter) -> KernelFilter:
    """Compile the userspace filter into kernel tables that pass a superset of its events.

    * Each literal directory path P (watch, read or exclude) gives a trie entry ``P/`` and an
      exact entry ``P``; ``/`` gives a single entry ``/``.
    * A glob path gives its literal prefix (up to the first glob char) as a raw entry; an empty
      or ``/`` literal prefix sets `pass_all` instead.
    * Each pattern, of any shape, becomes what `kernel_form` says: a raw trie prefix, a suffix
      (``/B`` for a literal file name B, else the literal tail after the last wildcard), or
      `pass_all` when nothing usable is left.
    * More suffixes than the KERNEL_FILTER_MAX_SUFFIXES slots are never dropped: `_fit_suffixes`
      replaces some by shorter common endings (or `pass_all`), which pass a superset. What could
      not be expressed (beyond a prefix or its own suffix) is in `widened` and logged as one
      warning.
    * Every entry's verdict is computed from all sources, so the longest-prefix lookup is right
      for any nesting: EXCLUDE alone if an exclude path covers all paths reaching the entry
      (exclude wins), else the OR of WATCH and READ of the sources covering it. An exact entry's
      fallback is the verdict for the longer paths that end at it.
    * Exclude globs are not compiled (the kernel just excludes less), nor excludes longer than
      the trie can hold. Prefixes longer than 255 bytes are cut to raw 255-byte prefixes.
    """
    src = _FilterSources()
    src.add_paths(f)
    suffixes, n_suffixes = src.add_patterns(f)
    if src.widened:
        _log_widened(src.widened, n_suffixes)
    return KernelFilter(
        src.trie(), sorted(suffixes.items()), src.pass_all,
        tuple(sorted((w, sfx) for w, (sfx, _) in src.widened.items())),
    )


class _FilterSources:
    """What compile_kernel_filter() builds its tables from. Directory sources: normalized
    literal path (raw bytes) -> bits; raw sources: prefix -> bits; forced sources (detections,
    rules) carry VERDICT_FORCE: excludes do not apply to them."""

    def __init__(self) -> None:
        self.dirs: dict[bytes, int] = {}
        self.raws: dict[bytes, int] = {}
        self.excl_dirs: set[bytes] = set()
        self.pass_all = 0
        self.widened: dict[str, tuple[bytes, int]] = {}  # pattern or path -> (suffix or b"", bits)

    def add_raw(self, prefix: bytes, bits: int) -> None:
        if prefix in (b"", b"/"):
            self.pass_all |= bits
        else:
            prefix = prefix[:KERNEL_TRIE_MAX_PREFIX]
            self.raws[prefix] = self.raws.get(prefix, 0) | bits

    def widen(self, what: str, sfx: bytes, bits: int) -> None:
        old = self.widened.get(what, (sfx, 0))
        self.widened[what] = (sfx if sfx == old[0] else b"", old[1] | bits)

    def add_paths(self, f: FileFilter) -> None:
        """Watch, read and forced paths (a glob by its literal prefix), and literal excludes."""
        force_w, force_r = VERDICT_WATCH | VERDICT_FORCE, VERDICT_READ | VERDICT_FORCE
        sources = (
            (f.watch_paths, VERDICT_WATCH), (f.read_paths, VERDICT_READ),
            (f.force[0], force_w), (f.force_read[0], force_r),
        )
        for paths, bits in sources:
            for p in paths:
                n = normalize(p)
                if has_glob(n):
                    lit = _literal_prefix(n).encode("utf-8")
                    self.add_raw(lit, bits)
                    if lit in (b"", b"/"):
                        self.widen(p, b"", bits)
                else:
                    b = n.encode("utf-8")
                    self.dirs[b] = self.dirs.get(b, 0) | bits
        for p in f.exclude_paths:
            n = normalize(p)
            if not has_glob(n):
                self.excl_dirs.add(n.encode("utf-8"))

    def add_patterns(self, f: FileFilter) -> tuple[dict[bytes, int], int]:
        """The patterns as raw prefixes, suffixes or pass_all; returns (suffixes fitted to the
        kernel's slots, how many there were before fitting)."""
        force_w, force_r = VERDICT_WATCH | VERDICT_FORCE, VERDICT_READ | VERDICT_FORCE
        suffixes: dict[bytes, int] = {}
        origins: dict[bytes, set[str]] = {}  # suffix -> the patterns it stands for
        pat_bits: dict[str, int] = {}
        patterns = (
            (f.watch_patterns, VERDICT_WATCH), (f.force[1], force_w), (f.force_read[1], force_r),
        )
        for pats, bits in patterns:
            for pat in pats:
                kind, lit = kernel_form(pat)
                pat_bits[pat] = pat_bits.get(pat, 0) | bits
                if kind == "prefix":
                    self.add_raw(lit, bits)
                elif kind == "suffix":
                    suffixes[lit] = suffixes.get(lit, 0) | bits
                    origins.setdefault(lit, set()).add(pat)
                else:
                    self.pass_all |= bits
                    self.widen(pat, b"", bits)
        suffixes, self.pass_all, merged, n_suffixes = _fit_suffixes(suffixes, origins,
                                                                    self.pass_all)
        for pat, sfx in merged.items():
            self.widen(pat, sfx, pat_bits[pat])
        return suffixes, n_suffixes

    def _keys(self) -> dict[bytes, bool]:
        """The trie's keys: prefix -> exact? (a directory gives "d/" and the exact "d")."""
        keys: dict[bytes, bool] = {}

        def add_key(prefix: bytes, exact: bool) -> None:
            if len(prefix) > KERNEL_TRIE_MAX_PREFIX:
                prefix, exact = prefix[:KERNEL_TRIE_MAX_PREFIX], False
            keys[prefix] = keys.get(prefix, False) or exact

        for d in (*self.dirs, *self.excl_dirs):
            if d == b"/":
                add_key(b"/", False)
            else:
                add_key(d + b"/", False)
                add_key(d, True)
                if len(d) + 1 > KERNEL_TRIE_MAX_PREFIX and d in self.dirs:
                    # "d/" does not fit: its bits must hold for everything under the cut prefix
                    self.add_raw(d + b"/", self.dirs[d])
        for r in self.raws:
            add_key(r, False)
        return keys

    def _bits_for(self, key: bytes, exact: bool) -> int:
        """The verdict of every path reaching `key` (equal to it if `exact`, else starting with
        it), from the directories whose trees hold them all (its ancestors, and itself if
        exact: looked up one by one rather than scanning every source, thousands of them with
        many homes) and the raw prefixes it starts with."""
        ancestors = [b"/"]
        i = key.find(b"/", 1)
        while i != -1:
            ancestors.append(key[:i])
            i = key.find(b"/", i + 1)
        if exact:
            ancestors.append(key)
        bits = 0
        for d in ancestors:
            bits |= self.dirs.get(d, 0)
        for r, b in self.raws.items():
            if key.startswith(r):
                bits |= b
        forced = bits & VERDICT_FORCE
        if any(d in self.excl_dirs for d in ancestors):
            # exclude wins, except over what detections and rules look at
            return bits & ~VERDICT_FORCE if forced else VERDICT_EXCLUDE
        return bits & ~VERDICT_FORCE

    def trie(self) -> list[TrieEntry]:
        keys = self._keys()
        trie = []
        for key in sorted(keys):
            exact = keys[key]
            generic = self._bits_for(key, False)
            if exact:
                trie.append(TrieEntry(key, True, self._bits_for(key, True), generic))
            else:
                trie.append(TrieEntry(key, False, generic, 0))
        return trie
