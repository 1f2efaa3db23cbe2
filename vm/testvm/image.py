"""A guest's userspace: a Debian minbase tree, trimmed, packed as a cpio and cached under a
key of its recipe, so that a changed recipe builds a new image and an unchanged one is reused
(the build needs root and the network, and takes minutes)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .host import Log

# What no guest reads: emptied in every image.
TRIM_NEVER_READ = ["usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
                   "usr/share/lintian", "usr/share/zoneinfo"]
# A guest that never runs apt or dpkg (the kernel matrix's) loses their caches too.
TRIM_NO_APT = [*TRIM_NEVER_READ, "var/cache/apt", "var/lib/apt/lists", "var/cache/debconf",
               "var/log", "usr/share/common-licenses"]
# A guest that installs packages (the .deb test's) keeps what apt and debconf need.
TRIM_WITH_APT = [*TRIM_NEVER_READ, "var/cache/apt/archives", "var/lib/apt/lists",
                 "var/cache/debconf/templates.dat-old", "var/log"]


def trim(tree: Path, paths: list[str]) -> None:
    """Empty these directories of the tree (what the guest never reads)."""
    for t in paths:
        p = tree / t
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
            p.mkdir()


def recipe_key(recipe: list) -> str:
    """A short name for what an image is built from (JSON-able: formats, suites, lists)."""
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:12]


def cached(cache: Path, key: str, suffixes: list[str],
           build: Callable[[Path, list[Path]], None], log: Log) -> list[Path]:
    """The image's files, cache/base-KEY{suffix} for each suffix, built when one is missing:
    build(tree, outputs) fills a scratch folder (tree, for debootstrap) and writes each of
    outputs, which then take the files' place. Images of other keys are removed."""
    files = [cache / f"base-{key}{s}" for s in suffixes]
    if all(f.exists() for f in files):
        return files
    if os.geteuid() != 0:
        raise SystemExit("building the guest image needs root (debootstrap)")
    t0 = time.monotonic()
    tree = Path(tempfile.mkdtemp(dir=cache, prefix="rootfs-"))
    try:
        outputs = [f.with_name(f.name + ".tmp") for f in files]
        build(tree, outputs)
        for out, f in zip(outputs, files, strict=True):
            out.rename(f)
        for old in cache.glob("base-*"):
            if old not in files:
                old.unlink()
        log(f"guest image {files[0].name}: {files[0].stat().st_size >> 20} MiB in "
            f"{time.monotonic() - t0:.0f}s")
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    return files
