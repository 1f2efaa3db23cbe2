"""Debian's archive for the guests: a private apt that leaves the host's apt setup alone, the
kernel inside an image package, a minbase debootstrap."""

from __future__ import annotations

import lzma
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

from .host import run

MIRROR = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


class Apt:
    """apt-get/apt-cache on a private configuration under `base`: the host's apt setup, lists
    and status are untouched. `status` is the dpkg status apt plans against (default: an
    empty one, nothing installed)."""

    def __init__(self, base: Path, sources: list[tuple[str, str]],
                 status: Path | None = None) -> None:
        self.base = base
        for d in ("lists/partial", "cache/archives/partial", "etc/apt.conf.d",
                  "etc/preferences.d", "etc/sources.list.d"):
            (base / d).mkdir(parents=True, exist_ok=True)
        empty = base / "status"
        empty.touch()
        lines = [f"deb [signed-by={KEYRING}] {url} {suite} main" for url, suite in sources]
        (base / "etc" / "sources.list").write_text("\n".join(lines) + "\n")
        self.opts = [
            "-o", f"Dir::Etc={base}/etc",
            "-o", f"Dir::Etc::SourceList={base}/etc/sources.list",
            "-o", f"Dir::Etc::SourceParts={base}/etc/sources.list.d",
            "-o", f"Dir::Etc::Parts={base}/etc/apt.conf.d",
            "-o", f"Dir::Etc::PreferencesParts={base}/etc/preferences.d",
            "-o", f"Dir::State={base}",
            "-o", f"Dir::State::Lists={base}/lists",
            "-o", f"Dir::State::status={status or empty}",
            "-o", f"Dir::State::extended_states={base}/extended_states",
            "-o", f"Dir::Cache={base}/cache",
            "-o", "APT::Architectures::=amd64",
            "-o", "Acquire::Languages=none",
            "-o", "Acquire::Retries=3",
            "-o", "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false",
            "-o", "Debug::NoLocking=true",
            "-o", "APT::Sandbox::User=root",
        ]

    def has_lists(self) -> bool:
        return any((self.base / "lists").glob("*_Packages*"))

    def update(self) -> str:
        """Fetch the lists: '' when done, else what apt said."""
        r = subprocess.run(["apt-get", *self.opts, "-qq", "update"], capture_output=True,
                           text=True)
        return "" if r.returncode == 0 else (r.stderr or r.stdout).strip() or "failed"

    def get(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return run(["apt-get", *self.opts, *args], capture_output=True, text=True, **kw)

    def cache(self, *args: str) -> str:
        return run(["apt-cache", *self.opts, *args], capture_output=True, text=True).stdout

    def download(self, pkgs: list[str], dest: Path) -> list[Path]:
        """apt-get download of NAME=VERSION specs into dest; the .deb files, in that order."""
        dest.mkdir(parents=True, exist_ok=True)
        run(["apt-get", *self.opts, "-qq", "download", *pkgs], cwd=dest,
            stdout=subprocess.DEVNULL)
        out = []
        for spec in pkgs:
            name, _, version = spec.partition("=")
            ver = version.replace(":", "%3a") if version else "*"
            (deb,) = dest.glob(f"{name}_{ver}_*.deb")
            out.append(deb)
        return out


def decompress(data: bytes) -> bytes | None:
    """xz, zstd or gzip data (trailing garbage allowed), or None."""
    try:
        if data.startswith(b"\xfd7zXZ\x00"):
            return lzma.LZMADecompressor().decompress(data)
        if data.startswith(b"\x1f\x8b"):
            return zlib.decompressobj(31).decompress(data)
        if data.startswith(b"\x28\xb5\x2f\xfd"):
            r = subprocess.run(["zstd", "-dcq"], input=data, capture_output=True)
            return r.stdout or None
    except (lzma.LZMAError, zlib.error, OSError):
        pass
    return None


def extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The ELF vmlinux inside a bzImage (scripts/extract-vmlinux's method): qemu boots it
    through the PVH entry, which skips the decompressor (seconds under TCG)."""
    for magic in (b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd", b"\x1f\x8b\x08"):
        pos = bzimage.find(magic)
        while pos != -1:
            data = decompress(bzimage[pos:])
            if data and data.startswith(b"\x7fELF"):
                return data
            pos = bzimage.find(magic, pos + 1)
    return None


def debootstrap(tree: Path, suite: str, packages: list[str], debs: Path,
                attempts: int = 3) -> None:
    """A minbase `suite` with `packages` into tree (downloads cached in debs); needs root.
    The mirror sometimes fails one download ("Couldn't download packages: gpgv" while the
    file was there): a failed run is tried again, with what it did download kept."""
    if not shutil.which("debootstrap"):
        raise SystemExit("debootstrap missing: apt-get install debootstrap")
    debs.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, attempts + 1):
        r = subprocess.run(["debootstrap", "--variant=minbase", f"--cache-dir={debs}",
                            f"--include={','.join(packages)}", suite, str(tree), MIRROR],
                           capture_output=True, text=True)
        if r.returncode == 0:
            return
        tail = "\n".join((r.stdout + r.stderr).splitlines()[-20:])
        if attempt == attempts:
            raise SystemExit(f"debootstrap failed {attempts} times; the last:\n{tail}")
        print(f"debootstrap failed ({tail.splitlines()[-1] if tail else '?'}); again",
              file=sys.stderr, flush=True)
        shutil.rmtree(tree)
        tree.mkdir()
        time.sleep(5 * attempt)


def keep_only(current: Path) -> None:
    """Remove the other versions cached beside `current` (a newer package supersedes them)."""
    for old in current.parent.iterdir():
        if old != current:
            shutil.rmtree(old, ignore_errors=True)
