"""The persistence inventory: which files the pack's locations hold, hashed, and what changed.

An agent sees only what happens while it runs. The inventory closes the gaps: at start it lists
and hashes the files under every enabled detection's paths (and file rules' paths), compares
them with what the previous run left in the state file, and says what changed meanwhile; while
it runs, it hashes a persistence file again after a change has settled. Detections with only
patterns (`*.pth` anywhere) or only mode bits name no place to list: they are not inventoried.

`locations`, `diff` and the state file's format are pure; `scan` and `hash_file` read the
filesystem (the runtime calls them from a worker thread, never on the event path).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import msgspec

from ..core.config import InventoryConfig
from ..core.engine import RuleEngine
from ..core.events import FileFacts

STATE_FORMAT = "randguard-inventory/1"
CHUNK = 1 << 20


FileState = FileFacts  # what is listed per file is what a persistence_change shows


def same_content(a: FileState, b: FileState) -> bool:
    if a.link_target != b.link_target:
        return False
    if a.sha256 is not None and b.sha256 is not None:
        return a.sha256 == b.sha256
    # not hashed on one side (too large, unreadable): size and mtime are what is left
    return a.size == b.size and a.mtime_ns == b.mtime_ns


def same_metadata(a: FileState, b: FileState) -> bool:
    return (a.mode, a.uid, a.gid) == (b.mode, b.uid, b.gid)


class Location(NamedTuple):
    """Where one detection (or file rule) looks: concrete roots, narrowed by `matches`."""

    detection: str | None  # the pack's detection_type; None for a file rule's paths
    mitre: list[str]
    roots: list[str]
    matches: Callable[[str], bool]


def locations(rules: RuleEngine) -> list[Location]:
    """What to inventory, in the pack's order (the first detection that claims a file names
    it, as for events), then the file rules' concrete paths."""
    named = [(c.rule.name, c) for c in rules.file_detections]
    named += [(None, c) for c in rules.file_rules]
    return [Location(name, list(c.rule.mitre), c.paths.paths, c.paths.matches)
            for name, c in named if c.paths is not None and c.paths.paths]


class Change(NamedTuple):
    path: str
    change: str  # added | modified | metadata | removed
    previous: FileState | None
    current: FileState | None


def diff(previous: dict[str, FileState], current: dict[str, FileState]) -> list[Change]:
    """What differs between two inventories, by path (sorted): content first (`modified`
    also when the metadata changed with it), then metadata."""
    out = []
    for path in sorted(previous.keys() | current.keys()):
        old, new = previous.get(path), current.get(path)
        if old is None:
            out.append(Change(path, "added", None, new))
        elif new is None:
            out.append(Change(path, "removed", old, None))
        elif not same_content(old, new):
            out.append(Change(path, "modified", old, new))
        elif not same_metadata(old, new):
            out.append(Change(path, "metadata", old, new))
    return out


# ---- the state file: what the previous run saw, with a checksum over it ----

class State(msgspec.Struct, kw_only=True):
    format: str
    host: str
    written_ns: int  # wall clock
    files: dict[str, FileState]
    sha256: str  # over the canonical encoding of `files`


class StateProblem(Exception):
    """The state file cannot be used: `status` is missing, unreadable, corrupt or tampered."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


_encoder = msgspec.json.Encoder(order="sorted")


def _checksum(files: dict[str, FileState]) -> str:
    return hashlib.sha256(_encoder.encode(files)).hexdigest()


def encode_state(files: dict[str, FileState], host: str, written_ns: int) -> bytes:
    return _encoder.encode(State(format=STATE_FORMAT, host=host, written_ns=written_ns,
                                 files=files, sha256=_checksum(files)))


def decode_state(data: bytes) -> dict[str, FileState]:
    """The files of a state file's bytes, or StateProblem."""
    try:
        st = msgspec.json.decode(data, type=State)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise StateProblem("corrupt", f"not a randguard inventory state: {e}") from None
    if st.format != STATE_FORMAT:
        raise StateProblem("corrupt", f"unknown format {st.format!r} (want {STATE_FORMAT})")
    if _checksum(st.files) != st.sha256:
        raise StateProblem("tampered", "its checksum does not match its content")
    return st.files


def read_state(path: str) -> dict[str, FileState]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise StateProblem("missing", "no previous state (first start)") from None
    except OSError as e:
        raise StateProblem("unreadable", e.strerror or str(e)) from None
    return decode_state(data)


def write_state(path: str, files: dict[str, FileState], host: str, written_ns: int) -> None:
    """Atomically: a temp file beside it (0600), fsync, rename, fsync the directory."""
    d = os.path.dirname(path) or "."
    os.makedirs(d, mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a leftover (or something planted): never written through
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, encode_state(files, host, written_ns))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# ---- reading the filesystem ----

def hash_file(path: str, max_bytes: int) -> tuple[FileState | None, int]:
    """The state of `path` now (None: it does not exist) and the bytes hashed. Never follows
    a symlink; opens without blocking (a FIFO planted there cannot stall the agent)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None, 0
    except OSError as e:
        return _state(os.stat_result((0,) * 10), skipped=f"unreadable: {e.strerror}"), 0
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
        except OSError as e:
            target = f"? ({e.strerror})"
        return _state(st, link_target=target, skipped="symlink"), 0
    if not stat.S_ISREG(st.st_mode):
        return _state(st, skipped="not a regular file"), 0
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return None, 0
        return _state(st, skipped=f"unreadable: {e.strerror}"), 0
    try:
        st = os.fstat(fd)  # what was opened, not what was there a moment before
        if not stat.S_ISREG(st.st_mode):
            return _state(st, skipped="not a regular file"), 0
        gen = _generation(fd)
        if st.st_size > max_bytes:
            return _state(st, skipped="larger than max_file_bytes", generation=gen), 0
        h = hashlib.sha256()
        n = 0
        while n <= max_bytes:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        if n > max_bytes:  # it grew while read
            return _state(st, skipped="larger than max_file_bytes", generation=gen), n
        return _state(st, sha256=h.hexdigest(), generation=gen), n
    except OSError as e:
        return _state(st, skipped=f"unreadable: {e.strerror}"), 0
    finally:
        os.close(fd)


FS_IOC_GETVERSION = 0x80087601  # _IOR('v', 1, long)


def _generation(fd: int) -> int:
    """The inode's generation: a reused inode number gets a new one, so the kernel's by-inode
    watch does not mistake a new file for a listed one. 0 where the file system does not say
    (tmpfs has a generation but no FS_IOC_GETVERSION): the kernel then does not compare it."""
    try:
        buf = fcntl.ioctl(fd, FS_IOC_GETVERSION, bytes(8))
    except OSError:
        return 0
    return int.from_bytes(buf[:4], "little")


def _state(st: os.stat_result, sha256: str | None = None, link_target: str | None = None,
           skipped: str | None = None, generation: int = 0) -> FileState:
    return FileState(sha256=sha256, size=st.st_size, mode=st.st_mode, uid=st.st_uid,
                     gid=st.st_gid, mtime_ns=st.st_mtime_ns, inode=st.st_ino,
                     device=st.st_dev, link_target=link_target, skipped=skipped,
                     generation=generation)


def walk(root: str) -> Iterator[str]:
    """Every non-directory below `root` (or `root` itself), symlinks listed, not followed."""
    try:
        st = os.lstat(root)
    except OSError:
        return
    if not stat.S_ISDIR(st.st_mode):
        yield root
        return
    for top, dirs, files in os.walk(root, followlinks=False):
        for name in dirs:  # a symlink to a directory is listed, not entered
            p = os.path.join(top, name)
            if os.path.islink(p):
                yield p
        for name in files:
            yield os.path.join(top, name)


class Owner(NamedTuple):
    detection: str | None
    mitre: list[str]


def owner(locs: Sequence[Location], path: str) -> Owner | None:
    """Which location claims `path` (the first that does)."""
    for loc in locs:
        if loc.matches(path):
            return Owner(loc.detection, loc.mitre)
    return None


class Inventory(NamedTuple):
    files: dict[str, FileState]
    hashed_bytes: int
    skipped: int  # listed without a hash
    not_listed: int  # past max_files


def scan(locs: Sequence[Location], cfg: InventoryConfig) -> Inventory:
    files: dict[str, FileState] = {}
    hashed = skipped = not_listed = 0
    for loc in locs:
        for root in loc.roots:
            for path in walk(root):
                if path in files or not loc.matches(path):
                    continue
                if len(files) >= cfg.max_files:
                    not_listed += 1
                    continue
                st, n = hash_file(path, cfg.max_file_bytes)
                if st is None:
                    continue
                files[path] = st
                hashed += n
                skipped += st.sha256 is None
    return Inventory(files, hashed, skipped, not_listed)
