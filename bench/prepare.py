"""Getting the machine ready: the packages the bench needs, the load generator and the minimal
probe built, scratch directories and agent configs written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from host import log, sh
from layout import BEFORE_REV, BENCH, BUILD, ROOT, UNWATCHED, WATCHED, WORK

APT_NEEDED = {"gcc": "/usr/bin/gcc", "clang": "/usr/bin/clang",
              "libbpf-dev": "/usr/include/bpf/libbpf.h", "libbpf-tools": "/usr/sbin/opensnoop",
              "auditd": "/usr/sbin/auditd"}


def ensure_packages(skip: tuple[str, ...] = ()) -> None:
    missing = [p for p, f in APT_NEEDED.items() if p not in skip and not Path(f).exists()]
    if not missing:
        return
    log(f"installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def build() -> None:
    """tracefs mounted, scratch directories with a file each, bench/gen.c and the two floors
    (minprobe, minbtf) compiled."""
    BUILD.mkdir(parents=True, exist_ok=True)
    if not os.path.isdir("/sys/kernel/tracing/events"):  # opensnoop attaches through it
        sh("mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing")
    for d in (WATCHED, UNWATCHED):
        d.mkdir(parents=True, exist_ok=True)
    (UNWATCHED / "f").write_text("unwatched\n")
    (WATCHED / "f").write_text("watched\n")
    sh("gcc", "-O2", "-Wall", "-o", str(BUILD / "gen"), str(BENCH / "gen.c"))
    sh("gcc", "-O2", "-Wall", "-o", str(BUILD / "minprobe_load"), str(BENCH / "minprobe_load.c"),
       "-lbpf")
    for floor in ("minprobe", "minbtf"):
        sh("clang", "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86", "-Wall",
           f"-I{ROOT / 'vmlinux'}", "-c", str(BENCH / f"{floor}.bpf.c"),
           "-o", str(BUILD / f"{floor}.bpf.o"))


def build_before() -> Path:
    """The checkout of BEFORE_REV (git archive, not a worktree), its BPF objects built."""
    root = BUILD / f"randguard-{BEFORE_REV}"
    if not (root / "agent" / "randguard" / "bpf" / "file.bpf.o").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        # (files as git would check them out: the agent refuses configs others can write)
        archive = subprocess.run(["git", "-C", str(ROOT), "-c", "tar.umask=0022", "archive",
                                  BEFORE_REV],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
        sh("make", "-s", "-C", str(root), "all")
    return root


def write_config(name: str, root: Path = ROOT, **perf: object) -> Path:
    """The default config (of the checkout at `root`) with the bench's watched directory added
    to watch_paths, and the given overrides ([agent] health_interval, [performance]
    max_events_per_second)."""
    text = (root / "config" / "randguard.toml").read_text()
    text, n = re.subn(r'^watch_paths = \[(.*)\]$',
                      lambda m: f'watch_paths = [{m.group(1)}, "{WATCHED}"]', text, flags=re.M)
    assert n == 1, "config/randguard.toml: no watch_paths line"
    for key, value in perf.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        assert n == 1, f"config/randguard.toml: no {key} line"
    path = WORK / f"{name}.toml"
    path.write_text(text)
    os.chmod(path, 0o600)  # the agent refuses configs others can write
    return path


def watch_set() -> tuple[list[str], list[str]]:
    """(write-watched dirs, read-watched paths) of the bench config, for auditd's rules."""
    text = (ROOT / "config" / "randguard.toml").read_text()

    def paths(key: str) -> list[str]:
        return re.findall(r'"([^"]+)"', re.search(rf"^{key} = \[(.*)\]$", text, re.M).group(1))

    watch = [p for p in paths("watch_paths") + [str(WATCHED)] if not os.path.islink(p)]
    reads = [p for p in paths("read_paths") if os.path.exists(p)]
    return watch, reads
