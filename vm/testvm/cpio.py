"""The newc cpio archives the kernel unpacks into its initial rootfs: the guests' userspace,
their modules and each run's files, concatenated into one initrd (later archives win)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from .host import run


class Cpio:
    """A writer for the newc format, in Python: every entry owned by root, device nodes only
    where asked (chardev), so that an archive is the same whoever builds it."""

    def __init__(self, out) -> None:
        self.out = out
        self.ino = 1
        self.dirs: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", mtime: int = 0,
               rdev: tuple[int, int] = (0, 0), nlink: int = 1) -> None:
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            self.ino, mode, 0, 0, nlink, int(mtime), len(data), 0, 0, rdev[0], rdev[1],
            len(nb), 0))
        self.ino += 1
        buf = hdr.encode() + nb
        buf += b"\0" * (-len(buf) % 4)
        self.out.write(buf)
        self.out.write(data)
        self.out.write(b"\0" * (-len(data) % 4))

    def mkdir(self, name: str, mode: int = 0o755, mtime: int = 0) -> None:
        name = name.strip("/")
        if not name or name in self.dirs:
            return
        parent = os.path.dirname(name)
        if parent:
            self.mkdir(parent)
        self.dirs.add(name)
        self._entry(name, stat.S_IFDIR | mode, mtime=mtime, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644, mtime: int = 0) -> None:
        name = name.strip("/")
        self.mkdir(os.path.dirname(name))
        self._entry(name, stat.S_IFREG | mode, data, mtime)

    def chardev(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name.strip("/"), stat.S_IFCHR | mode, rdev=(major, minor))

    def add_tree(self, src: Path, dest: str, skip=lambda p: False) -> None:
        """Add src as dest (recursively), keeping modes, symlinks and mtimes; device nodes,
        sockets and fifos are left out (the guest mounts devtmpfs)."""
        for dirpath, dirnames, filenames in os.walk(src):
            rel = os.path.relpath(dirpath, src)
            base = dest.strip("/") if rel == "." else f"{dest.strip('/')}/{rel}".strip("/")
            dirnames[:] = sorted(n for n in dirnames if not skip(Path(dirpath, n)))
            if base:
                st = os.lstat(dirpath)
                self.mkdir(base, stat.S_IMODE(st.st_mode), int(st.st_mtime))
            for n in sorted(dirnames) + sorted(filenames):
                p = Path(dirpath, n)
                if skip(p):
                    continue
                st = os.lstat(p)
                name = f"{base}/{n}".strip("/")
                if stat.S_ISLNK(st.st_mode):
                    self._entry(name, st.st_mode, os.readlink(p).encode(), int(st.st_mtime))
                elif stat.S_ISREG(st.st_mode):
                    self._entry(name, st.st_mode, p.read_bytes(), int(st.st_mtime))
                elif stat.S_ISDIR(st.st_mode) and n not in dirnames:
                    pass  # a skipped directory

    def close(self) -> None:
        self._entry("TRAILER!!!", 0)
        pad = -self.out.tell() % 512
        self.out.write(b"\0" * pad)


def pack_tree(tree: Path, dest: Path) -> None:
    """The tree as an uncompressed newc cpio by cpio(1): unlike Cpio, owners and device nodes
    are kept (a systemd userspace has files owned by its system users)."""
    with open(dest, "wb") as f:
        find = subprocess.Popen(["find", ".", "-mindepth", "1", "-print0"], cwd=tree,
                                stdout=subprocess.PIPE)
        run(["cpio", "--quiet", "--null", "-o", "-H", "newc"], cwd=tree, stdin=find.stdout,
            stdout=f)
        find.wait()


def concatenate(parts: list[Path], dest: Path) -> None:
    """One initrd of these archives, in order: the kernel unpacks each over the last."""
    with open(dest, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
