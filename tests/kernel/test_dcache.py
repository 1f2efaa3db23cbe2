"""The kernel's directory verdict cache never changes what is reported.

Two agents run side by side, one with `[performance] directory_cache` on and one with it off,
while the test makes a seeded random mix of opens (read, write, create; watched, read-only,
excluded, unwatched, pattern-named files), directory renames, mkdir and rmdir, bind mounts and
unmounts. Both see the same syscalls, so their file events must be the same, in the same
order (where the kernel skipped program runs, 7.2, each agent may miss up to as many as it
counted); the cache must also have been used (it holds verdicts at the end), or the test
proves nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import struct
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_proc import AgentProc, write_config

pytestmark = pytest.mark.kernel

OPS = 700


@contextlib.contextmanager
def fresh_tree() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="rg-dcache-", dir="/var/tmp"))
    for sub in ("w", "w/ex", "r", "u", "u/a", "u/b", "markers"):
        (d / sub).mkdir()
    try:
        yield d
    finally:
        for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
            target = line.split()[1]
            if target.startswith(str(d)):
                subprocess.run(["umount", "-l", target], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


def agent(tree: Path, cfg_dir: Path, cache: bool) -> AgentProc:
    cfg = write_config(
        cfg_dir / f"cache-{cache}.toml",
        # u/f: a watched file in an unwatched directory, whose verdict the name decides
        watch=[str(tree / "w"), str(tree / "markers"), str(tree / "u" / "f")],
        exclude=[str(tree / "w" / "ex")],
        read=[str(tree / "r")], patterns=["*.conf", "job"], builtin=False,
        extra=f"[performance]\ndirectory_cache = {str(cache).lower()}\n"
              "max_events_per_second = 0\n",
    )
    return AgentProc(cfg, marker_dir=tree / "markers")


class Workload:
    """A seeded mix of file operations under `root`; every failure is part of the mix."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root, self.rng = root, random.Random(seed)
        self.mounts: list[Path] = []
        self.names = 0

    def dirs(self) -> list[Path]:
        out = [Path(p) for p, _, _ in os.walk(self.root) if "markers" not in p]
        return sorted(out)

    def new_name(self) -> str:
        self.names += 1
        # now and then a name a pattern matches whole: a directory that passes by its own name
        if self.rng.random() < 0.2:
            return self.rng.choice(["job", "b.conf"])
        return self.rng.choice(["d", "x", "job", "cron.d", "a.conf", "site"]) + str(self.names)

    def open_one(self) -> None:
        d = self.rng.choice(self.dirs())
        name = self.rng.choice(["f", "job", "x.conf", "data", "y.conf.bak"])
        mode = self.rng.choice(["r", "r", "r", "a", "w"])
        with contextlib.suppress(OSError), open(d / name, mode) as f:
            if mode != "r":
                f.write("x\n")

    def open_dir(self) -> None:
        """A directory itself, mount points too (a mount root is judged by its own path)."""
        with contextlib.suppress(OSError):
            os.close(os.open(self.rng.choice(self.dirs()), os.O_RDONLY | os.O_DIRECTORY))

    def step(self) -> None:
        op = self.rng.choices(["open", "opendir", "rename", "mkdir", "rmdir", "mount", "umount"],
                              [62, 8, 10, 8, 4, 4, 4])[0]
        dirs = [d for d in self.dirs() if d != self.root]
        if op == "open" or not dirs:
            self.open_one()
        elif op == "opendir":
            self.open_dir()
        elif op == "rename":
            src, dst = self.rng.choice(dirs), self.rng.choice(self.dirs())
            with contextlib.suppress(OSError):
                os.rename(src, dst / self.new_name())
        elif op == "mkdir":
            with contextlib.suppress(OSError):
                (self.rng.choice(self.dirs()) / self.new_name()).mkdir()
        elif op == "rmdir":
            with contextlib.suppress(OSError):
                self.rng.choice(dirs).rmdir()
        elif op == "mount" and len(self.mounts) < 4:
            src, dst = self.rng.choice(dirs), self.rng.choice(dirs)
            # a bind mount, or a file system of its own (its root is its own parent)
            how = (["--bind", str(src)] if self.rng.random() < 0.7
                   else ["-t", "tmpfs", "rg-dcache"])
            if subprocess.run(["mount", *how, str(dst)], capture_output=True).returncode == 0:
                self.mounts.append(dst)
        elif op == "umount" and self.mounts:
            subprocess.run(["umount", str(self.mounts.pop())], capture_output=True)


def file_events(a: AgentProc, root: Path) -> list[tuple]:
    keep = ("event_type", "syscall", "resolved_path", "filename", "old_path", "ret", "access",
            "created", "flags")
    return [tuple(e.get(k) for k in keep) for e in a.events
            if e["event_type"].startswith("file_") and "/markers/" not in (e["resolved_path"] or "")
            and str(root) in json.dumps(e)]


def held_map(a: AgentProc, name: str) -> int:
    """The id of the agent's map `name` (bpftool finds it by the fds the agent holds)."""
    out = subprocess.run(["bpftool", "-j", "map", "show"], capture_output=True, text=True,
                         check=True).stdout
    ids = {m["id"] for m in json.loads(out) if m.get("name") == name}
    held = set()
    for fd in os.listdir(f"/proc/{a.proc.pid}/fdinfo"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{a.proc.pid}/fdinfo/{fd}").read_text().splitlines():
                if line.startswith("map_id:") and int(line.split()[1]) in ids:
                    held.add(int(line.split()[1]))
    assert len(held) == 1, held
    return held.pop()


def map_values(map_id: int) -> list[tuple[bytes, bytes]]:
    dump = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(map_id)],
                          capture_output=True, text=True, check=True).stdout
    return [(bytes(int(b, 16) for b in e["key"]), bytes(int(b, 16) for b in e["value"]))
            for e in json.loads(dump)]


def cached_verdicts(a: AgentProc) -> int:
    """Filled slots of the agent's rg_dcache map."""
    return sum(any(v) for _, v in map_values(held_map(a, "rg_dcache")))


# struct rg_dpath_val (file.bpf.c): the directory's verdict entry (8 u64), len, sum, path
DPATH = struct.Struct("<8QQQ256s")
MASK = (1 << 64) - 1


def sum_k(i: int) -> int:
    """file.bpf.c's RG_SUM_K(i): the odd multiplier of position i of a sum."""
    return (0x9E3779B97F4A7C15 + i * 0x200000000366) & MASK


def dpath_sum(v: tuple[int, ...], length: int, path: bytes) -> int:
    """file.bpf.c's dpath_sum(): the XOR of each field of the verdict entry (gen, epoch, parent,
    hash_len, dir, mnt, bits: not its own sum), the length and each little-endian word of the
    path (the last one zero-padded), each times its position's multiplier."""
    words = [int.from_bytes(path[at : min(at + 8, length)].ljust(8, b"\0"), "little")
             for at in range(0, length, 8)]
    h = 0
    for i, x in enumerate([*v[:7], length, *words]):
        h ^= (x * sum_k(i)) & MASK
    return h


def cached_paths(a: AgentProc) -> dict[bytes, tuple[bytes, tuple]]:
    """The agent's path cache: directory path -> (slot key, the entry's fields)."""
    out = {}
    for key, value in map_values(held_map(a, "rg_dpath")):
        f = DPATH.unpack(value)
        if f[8]:
            out[f[10][: f[8]]] = (key, f)
    return out


def run_pair(tree: Path, cfg_dir: Path, seed: int) -> list[tuple[list[tuple], int]]:
    """The workload under both agents: each one's file events and the runs the kernel skipped."""
    on, off = agent(tree, cfg_dir, True), agent(tree, cfg_dir, False)
    try:
        work = Workload(tree, seed)
        for _ in range(OPS):
            work.step()
        on.sync()
        off.sync()
        assert cached_verdicts(on) > 0, "the cache was never used: the test proves nothing"
        assert cached_paths(on), "no path was ever cached: the test proves nothing"
        assert cached_verdicts(off) == 0 and not cached_paths(off)
    finally:
        assert on.stop() == 0 and off.stop() == 0
    return [(file_events(a, tree), a.skipped_runs()) for a in (on, off)]


@pytest.mark.parametrize("seed", [1, 2])
def test_cache_on_and_off_report_the_same(tmp_path: Path, seed: int) -> None:
    with fresh_tree() as tree:
        (a, skipped_a), (b, skipped_b) = run_pair(tree, tmp_path, seed)
    assert len(b) > 100, f"too few events to compare: {len(b)}"
    if not skipped_a and not skipped_b:
        assert a == b
        return
    # 7.2 runs syscall tracepoint programs preemptibly and skips a program preempted on a CPU
    # for the other tasks there (each agent counts its own skipped runs): what one agent missed
    # of what the other saw is bounded by its count, and the order of the rest is the same
    only_b, only_a = Counter(b) - Counter(a), Counter(a) - Counter(b)
    assert only_b.total() <= skipped_a and only_a.total() <= skipped_b, (
        f"cache on missed {sorted(only_b)} (skipped {skipped_a}); "
        f"cache off missed {sorted(only_a)} (skipped {skipped_b})")
    # the events both saw alike come in the same order (linear; an LCS of the two took the
    # sid guest minutes)
    ca, cb = Counter(a), Counter(b)
    alike = {x for x in ca if ca[x] == cb[x]}
    assert [x for x in a if x in alike] == [x for x in b if x in alike]


def test_cached_paths_are_used_and_checked(tmp_path: Path) -> None:
    """An open in a watched directory takes the directory's path from the path cache (planted
    there, a path of the same length shows in the event), and an entry whose checksum does not
    add up is never used (the path is walked again)."""
    with fresh_tree() as tree:
        a = agent(tree, tmp_path, True)
        try:
            w = tree / "w" / "sub"  # (w itself has w/ex, excluded, below it: never cached)
            w.mkdir()
            target = w / "f"

            def opened() -> str:
                target.write_text("x")  # O_WRONLY|O_CREAT|O_TRUNC: a watched open
                a.sync()
                return [e for e in a.events if e["event_type"] == "file_open"
                        and e["resolved_path"].endswith("/f")][-1]["resolved_path"]

            assert opened() == str(target)
            key, f = cached_paths(a)[f"{w}/".encode()]
            planted = f"{tree}/w/QQQ/".encode()
            map_id = held_map(a, "rg_dpath")

            def plant(checksum: int) -> None:
                value = DPATH.pack(*f[:8], f[8], checksum, planted)
                subprocess.run(["bpftool", "map", "update", "id", str(map_id),
                                "key", "hex", *(f"{b:02x}" for b in key),
                                "value", "hex", *(f"{b:02x}" for b in value)], check=True)

            plant(dpath_sum(f[:8], f[8], planted))
            assert opened() == f"{tree}/w/QQQ/f", "the cached path was not used"
            plant(dpath_sum(f[:8], f[8], planted) ^ 1)
            assert opened() == str(target), "an entry that does not add up was used"
        finally:
            assert a.stop() == 0
