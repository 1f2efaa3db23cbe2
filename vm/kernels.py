#!/usr/bin/env python3
"""Run the kernel test suite on other kernels under qemu (TCG): the CO-RE portability matrix.

For each kernel series (5.10, 6.1, 6.12 and the newest in sid) this finds the newest Debian
package at run time through a private apt configuration, extracts its kernel, and boots it with
one cached Debian userspace (an uncompressed cpio) plus a small per-run cpio holding this
checkout's agent/, config/, tests/ and the precompiled BPF objects. The guest runs pytest on the
selected kernel test files and sends the junit XML back over a second serial port. At the end a
pass/fail table per kernel and per test is printed; any failure on any kernel exits non-zero.

Everything downloaded or built is cached under .cache/kernels/ (ignored by git). Run as root:
apt-get download works without root, but debootstrap does not.

    python3 vm/kernels.py                      # the whole matrix, default test files
    python3 vm/kernels.py --kernels 5.10,sid   # some kernels only
    python3 vm/kernels.py --tests tests/kernel/test_loader.py
    python3 vm/kernels.py --list               # which packages would be used, then exit
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from matrix_report import kernels_table, support_table, table, update_doc, write_json
from matrix_result import Result, emulation_trouble, how_it_died, parse_junit, parse_sections
from testvm import image, kernel, qemu
from testvm.archive import MIRROR, SECURITY, Apt, debootstrap, keep_only
from testvm.cpio import Cpio, concatenate
from testvm.host import Log, lock, need_tools, say

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("RANDGUARD_KERNEL_CACHE", ROOT / ".cache" / "kernels"))
HERE = Path(__file__).resolve().parent
GUEST_FILES = {  # name in the guest: (source, mode)
    "init": (HERE / "guest-init.sh", 0o755),
    "rg/probe.py": (HERE / "guest_probe.py", 0o644),
    "rg/send.py": (HERE / "guest_send.py", 0o644),
    "rg/clock.py": (HERE / "guest_clock.py", 0o644),
}

# Each series: the suites it may come from and the name of its unsigned image package. The
# newest package (by Debian version) matching the pattern in those suites is used.
SERIES: dict[str, tuple[tuple[str, ...], str]] = {
    "5.10": (("bullseye-security",), r"linux-image-5\.10\.0-\d+-amd64-unsigned"),
    "6.1": (("bookworm", "bookworm-security"), r"linux-image-6\.1\.0-\d+-amd64-unsigned"),
    "6.12": (("trixie", "trixie-security"),
             r"linux-image-6\.12\.\d+\+deb13(\.\d+)?-amd64-unsigned"),
    # sid: whatever is newest, under either naming scheme Debian has used for it
    "sid": (("sid",),
            r"linux-(image-\d[\w.+~-]*-amd64-unsigned|binary-unsigned-\d[\w.+~-]*-amd64)"),
}
SOURCES = [
    (SECURITY, "bullseye-security"),
    (MIRROR, "bookworm"), (SECURITY, "bookworm-security"),
    (MIRROR, "trixie"), (SECURITY, "trixie-security"),
    (MIRROR, "sid"),
]

DEFAULT_TESTS = [
    "tests/kernel/test_loader.py",
    "tests/kernel/test_process_events.py",
    "tests/kernel/test_file_events.py",
    "tests/kernel/test_network_events.py",
    # the resolver's part of the detections (a rename through a symlinked directory, fentry)
    "tests/kernel/test_detections.py::test_rename_through_a_symlinked_directory",
    "tests/kernel/test_i386.py",
    "tests/kernel/test_attr_events.py",
    "tests/kernel/test_io_uring.py",
    # one of the two workloads (both run on the host): the pair of agents is the slowest test
    # here, and CI has 30 minutes
    "tests/kernel/test_dcache.py::test_cache_on_and_off_report_the_same[1]",
    "tests/kernel/test_dcache.py::test_cached_paths_are_used_and_checked",
    # the in-flight tables' losses are counted on every kernel (two tests: the rest of that
    # file stresses the ring and the output, which do not vary by kernel)
    "tests/kernel/test_reliability.py::test_full_in_flight_table_is_counted",
    "tests/kernel/test_reliability.py::test_full_exec_table_is_counted",
    # the resolver's part of the inode-aware watch (chmod and truncate by another name, fentry)
    "tests/kernel/test_inventory.py::"
    "test_calls_by_name_through_a_hard_link_change_the_file_where_the_kernel_resolves_them",
]
# Tests of the files above left out, and why: each starts agents of its own (about 25 s each
# on the emulated 7.2), to check what does not vary by kernel; CI has 30 minutes.
HOST_ONLY_NODES = {
    "tests/kernel/test_loader.py::test_each_hook_gets_its_native_and_i386_slots_and_nothing_else":
        "which slots the loader fills is the syscall tables of syscalls.py, on any kernel",
    "tests/kernel/test_network_events.py::test_network_is_off_by_default":
        "that a config without network loads no network program is the loader's choice",
    "tests/kernel/test_process_events.py::test_defaults_no_argv_no_cwd_no_path_search_failures":
        "the defaults are the config's; argv, cwd and ENOENT capture run on every kernel in "
        "the other process tests",
    "tests/kernel/test_process_events.py::test_process_hooks_select_events":
        "which process programs are attached is the loader's choice",
    "tests/kernel/test_file_events.py::test_process_started_before_the_agent_is_enriched":
        "the process table is seeded from /proc in userspace",
}

# The kernel test files left out, and why (tests/unit/test_vm_kernels.py checks that each file
# is in one list or the other: a new one cannot be forgotten)
HOST_ONLY_TESTS = {
    "tests/kernel/test_cli.py": "the command line and its exit codes do not vary by kernel",
    "tests/kernel/test_libbpf.py": "the cffi binding against the system's libbpf",
    "tests/kernel/test_network_bpf.py": "network.bpf.o's maps against its source, no events",
    "tests/kernel/test_ringbuf.py": "the ring buffer reader: libbpf and Python, not the kernel",
    "tests/kernel/test_reliability.py": "stresses the ring and the output (its two in-flight "
                                        "table tests run everywhere, listed above)",
    "tests/kernel/test_detections.py": "the pack's annotations and the rules are userspace "
                                       "over file events that test_file_events and "
                                       "test_attr_events check on every kernel (its resolver "
                                       "test runs everywhere, listed above)",
    "tests/kernel/test_inventory.py": "the persistence inventory lists and hashes files in "
                                      "userspace; its kernel part (rg_persist_inodes, read as "
                                      "an open's inode is) loads with file.bpf.o everywhere "
                                      "(its resolver test runs everywhere, listed above)",
    "tests/kernel/test_patterns.py": "watch_patterns through the kernel filter's suffix tables: "
                                     "the same BPF code and maps on every kernel, which every "
                                     "other file test loads there",
}

# The guest userspace: Debian 12 minbase plus what the agent and the tests call. The Python
# dependencies come from PyPI wheels (msgspec is not packaged in bookworm).
GUEST_SUITE = "bookworm"
GUEST_PACKAGES = ["python3", "libbpf1", "bpftool", "procps", "iproute2", "kmod"]
GUEST_PY = ("3.11", "cp311", "manylinux2014_x86_64")
IMAGE_FORMAT = 1  # bump when the image recipe changes in a way the key below does not see

# What the per-run cpio carries from the checkout (relative to ROOT).
RUN_TREES = ["agent/randguard", "config", "tests"]
RUN_FILES = ["pyproject.toml"]


log = Log("kernels")


def version_gt(a: str, b: str) -> bool:
    return subprocess.run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0


@dataclass
class KernelPkg:
    series: str
    package: str
    version: str
    suite: str
    extra: list[str] = field(default_factory=list)  # same-version packages with the modules


def abi_of(package: str) -> str:
    """'7.2.13+deb14-amd64' from linux-binary-unsigned-7.2.13+deb14-amd64 or
    '5.10.0-46-amd64' from linux-image-5.10.0-46-amd64-unsigned."""
    return re.sub(r"^linux-(image|binary-unsigned)-|-unsigned$", "", package)


def newest_packages(apt: Apt, series: list[str]) -> dict[str, KernelPkg]:
    names = apt.cache("pkgnames", "linux-").split()
    found: dict[str, KernelPkg] = {}
    for s in series:
        suites, pattern = SERIES[s]
        rx = re.compile(pattern + "$")
        cands = sorted(n for n in names if rx.match(n) and "-dbg" not in n)
        best: KernelPkg | None = None
        if cands:
            for line in apt.cache("madison", *cands).splitlines():
                parts = [p.strip() for p in line.split("|")]
                if len(parts) < 3:
                    continue
                pkg, ver, where = parts[:3]
                suite = where.split()[1].split("/")[0] if len(where.split()) > 1 else ""
                if suite not in suites:
                    continue
                if best is None or version_gt(ver, best.version):
                    best = KernelPkg(s, pkg, ver, suite)
        if best is None:
            raise SystemExit(f"no kernel package for series {s} in {', '.join(suites)}")
        # newer Debian kernels split the image: modules and config come in their own packages
        abi = abi_of(best.package)
        best.extra = [n for n in (f"linux-modules-{abi}", f"linux-base-{abi}") if n in names]
        found[s] = best
    return found


# --------------------------------------------------------------------------- kernels

KERNEL_FORMAT = 3  # bump when what is kept of a kernel changes: cached kernels are re-fetched


@dataclass
class Kernel:
    series: str
    package: str
    version: str
    release: str  # uname -r
    image: Path  # what qemu boots (ELF vmlinux, or the bzImage)
    config: Path
    modules: Path  # a cpio with usr/lib/modules/RELEASE/...

    @classmethod
    def from_meta(cls, meta: Path) -> Kernel:
        m = json.loads(meta.read_text())
        d = meta.parent
        return cls(m["series"], m["package"], m["version"], m["release"], d / m["image"],
                   d / "config", d / "modules.cpio")


def kernel_dir(pkg: KernelPkg) -> Path:
    safe = re.sub(r"[^\w.+-]", "_", f"{pkg.package}_{pkg.version}")
    return CACHE / "images" / pkg.series / safe


def fetch_kernel(apt: Apt, pkg: KernelPkg) -> Kernel:
    d = kernel_dir(pkg)
    meta = d / "kernel.json"
    if not meta.exists() or json.loads(meta.read_text()).get("format") != KERNEL_FORMAT:
        t0 = time.monotonic()
        tmp = Path(tempfile.mkdtemp(dir=CACHE, prefix="dl-"))
        try:
            debs = apt.download([f"{p}={pkg.version}" for p in [pkg.package, *pkg.extra]],
                                tmp)
            k = kernel.unpack(debs, f"{pkg.package} {pkg.version}")
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            (d / k.image).write_bytes(k.data)
            (d / "config").write_bytes(k.config)
            with open(d / "modules.cpio", "wb") as f:
                c = Cpio(f)
                for rel, data in k.module_files():
                    c.file(f"usr/lib/modules/{k.release}/{rel}", data)
                c.close()
            size = sum(deb.stat().st_size for deb in debs) // 2**20
            meta.write_text(json.dumps({
                "format": KERNEL_FORMAT, "series": pkg.series, "package": pkg.package,
                "version": pkg.version, "suite": pkg.suite, "release": k.release,
                "image": k.image, "packages": [pkg.package, *pkg.extra],
                "modules": sorted(k.modules)}, indent=1))
            log(f"{pkg.series}: fetched {', '.join([pkg.package, *pkg.extra])} {pkg.version} "
                f"({size} MiB) in {time.monotonic() - t0:.0f}s; modules: "
                f"{', '.join(sorted(k.modules)) or 'none'}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        keep_only(d)  # older versions of the series are superseded
    return Kernel.from_meta(meta)


def cached_kernels(series: list[str]) -> dict[str, Kernel]:
    """The kernels already in the cache (when the archive cannot be reached)."""
    out = {}
    for s in series:
        for meta in sorted((CACHE / "images" / s).glob("*/kernel.json")):
            if json.loads(meta.read_text()).get("format") == KERNEL_FORMAT:
                out[s] = Kernel.from_meta(meta)
    return out


# --------------------------------------------------------------------------- guest image

def python_requirements() -> list[str]:
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [r for r in proj["dependencies"] if "python_version <" not in r]
    reqs += [r for r in proj.get("optional-dependencies", {}).get("test", [])
             if r.split(">")[0].split("=")[0].strip() == "pytest"]
    return reqs


def image_key() -> str:
    return image.recipe_key([IMAGE_FORMAT, GUEST_SUITE, GUEST_PACKAGES, GUEST_PY,
                             python_requirements()])


def pip_for_wheels() -> list[str]:
    for py in (ROOT / ".venv" / "bin" / "python", Path("/usr/bin/python3"), Path(sys.executable)):
        if py.exists() and subprocess.run([str(py), "-m", "pip", "--version"],
                                          capture_output=True).returncode == 0:
            return [str(py), "-m", "pip"]
    raise SystemExit("no pip to fetch the guest's wheels (run `make venv` first)")


def build_image() -> Path:
    """One Debian userspace for every kernel, as an uncompressed cpio (cached by recipe)."""
    (img,) = image.cached(CACHE, image_key(), [".cpio"], build_userspace, log)
    return img


def build_userspace(tree: Path, outputs: list[Path]) -> None:
    """debootstrap into tree, the Python dependencies as wheels, packed into outputs[0]."""
    log(f"building the guest userspace ({GUEST_SUITE} minbase + "
        f"{', '.join(GUEST_PACKAGES)}) ...")
    debootstrap(tree, GUEST_SUITE, GUEST_PACKAGES, CACHE / "debootstrap-debs")
    ver, abi, plat = GUEST_PY
    site = tree / "usr/local/lib" / f"python{ver}" / "dist-packages"
    site.mkdir(parents=True, exist_ok=True)
    reqs = python_requirements()
    log(f"installing wheels into the guest: {' '.join(reqs)}")
    r = subprocess.run([*pip_for_wheels(), "install", "-q", "--disable-pip-version-check",
                        "--no-warn-script-location", "--target", str(site),
                        "--platform", plat, "--python-version", ver, "--implementation", "cp",
                        "--abi", abi, "--only-binary=:all:", *reqs],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"pip could not install the guest's wheels:\n{r.stdout}{r.stderr}")
    image.trim(tree, image.TRIM_NO_APT)
    # the guest mounts devtmpfs on /dev; /dev/console must exist before that for init
    shutil.rmtree(tree / "dev", ignore_errors=True)
    (tree / "dev").mkdir()
    with open(outputs[0], "wb") as f:
        c = Cpio(f)
        c.add_tree(tree, "")
        c.chardev("dev/console", 5, 1)
        c.chardev("dev/null", 1, 3, 0o666)
        c.close()


def build_run_cpio(dest: Path, tests: list[str], pytest_args: list[str], guest_cmd: str = "",
                   probe: bool = True) -> None:
    """This checkout's agent, config, tests and objects, the guest's /init and its job."""
    objs = sorted((ROOT / "agent/randguard/bpf").glob("*.bpf.o"))
    # the tests' objects and static programs (build/tests/i386ops), modes kept
    test_builds = sorted(p for p in (ROOT / "build/tests").glob("*") if p.is_file())
    if not objs:
        raise SystemExit("no agent/randguard/bpf/*.bpf.o: run `make all` first")
    skip = lambda p: p.name in ("__pycache__", ".pytest_cache") or p.suffix == ".pyc"  # noqa: E731
    with open(dest, "wb") as f:
        c = Cpio(f)
        for name, (src, mode) in GUEST_FILES.items():
            c.file(name, src.read_bytes(), mode)
        for t in RUN_TREES:
            c.add_tree(ROOT / t, f"repo/{t}", skip)
        for t in RUN_FILES:
            c.file(f"repo/{t}", (ROOT / t).read_bytes())
        for o in test_builds:
            c.file(f"repo/build/tests/{o.name}", o.read_bytes(), stat.S_IMODE(o.stat().st_mode))
        job = {"tests": tests, "pytest_args": pytest_args}
        c.file("rg/job.json", json.dumps(job).encode())
        c.file("rg/tests", (" ".join(tests) + "\n").encode())
        c.file("rg/pytest_args", (" ".join(pytest_args) + "\n").encode())
        if guest_cmd:
            c.file("rg/cmd", (guest_cmd + "\n").encode())
        if probe:
            c.file("rg/probe", b"")
        c.close()


# --------------------------------------------------------------------------- boot and run

# After qemu.APPEND. A task stuck in the kernel for two minutes panics the guest (panic prints
# its backtrace whatever the loglevel, then the guest is gone at once) instead of using up the
# timeout. Under emulation on a busy host a vCPU can stall for over a minute (seen: "soft
# lockup - CPU#0 stuck for 67s" in syscall_trace_enter, on 5.10 and sid, each in one run of
# several), so the threshold is the largest the kernel takes and such a guest is booted again.
# guest_clock.py catches a bad TSC calibration (qemu.APPEND's tsc=reliable keeps the TSC).
APPEND = "oops=panic softlockup_panic=1 watchdog_thresh=60 rdinit=/init"
ANSI = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|c)")


def boot(k: Kernel, initrd: Path, outdir: Path, opts: argparse.Namespace) -> Result:
    machine = qemu.Machine(k.image, initrd, f"{APPEND} {opts.append}".strip(), cpu=opts.cpu,
                           mem=opts.mem, smp=opts.smp)
    console = qemu.Tail(outdir / qemu.CONSOLE)
    prefix = f"  [{k.series}] "

    def echo() -> None:
        for ln in console.lines():
            # the last of \r-separated updates, without the firmware's escape sequences
            text = ANSI.sub("", ln).rstrip("\r").split("\r")[-1]
            if text.strip():
                say(prefix + text)

    ran = qemu.boot(machine, outdir, opts.timeout, (lambda: None) if opts.quiet else echo)
    r = Result(k, seconds=ran.seconds, console=console.path)
    r.sections = parse_sections((outdir / qemu.RESULTS).read_bytes())
    if "junit" in r.sections:
        try:
            r.outcomes = parse_junit(r.sections["junit"])
        except ET.ParseError as e:
            r.problem = f"junit XML unreadable: {e}"
    if "rc" in r.sections:
        r.rc = int(r.sections["rc"].strip() or "255")
    if not r.problem and r.rc is None:
        if ran.rc == 124:
            r.problem = f"timed out after {opts.timeout}s"
        else:
            text = console.path.read_bytes().decode(errors="replace").replace("\r", "")
            tail = "\n".join(text.splitlines()[-15:])
            death = how_it_died(text)
            r.problem = (f"no result (qemu exit {ran.rc})"
                         + (f": {death}" if death else "")
                         + (f"; qemu: {ran.output}" if ran.output else "")
                         + f"\nconsole tail:\n{tail}")
    elif r.rc is not None and r.rc != 0 and not r.outcomes:
        r.problem = f"pytest exited {r.rc} without a junit report"
    return r


# --------------------------------------------------------------------------- main

def parse_args() -> argparse.Namespace:
    """The options, with the series and test files checked (a.series, a.tests)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernels", default=os.environ.get("RANDGUARD_KERNELS", ",".join(SERIES)),
                    help="comma-separated series (default: %(default)s)")
    ap.add_argument("--tests", nargs="+", default=None,
                    help="kernel test files to run in each guest (default: "
                    + " ".join(DEFAULT_TESTS) + ")")
    ap.add_argument("--pytest-args", default="", help="extra pytest arguments for the guest")
    ap.add_argument("--timeout", type=int, default=900,
                    help="per kernel, seconds (default: %(default)s)")
    ap.add_argument("--mem", default="2G")
    # rep movsb/stosb (ERMS, FSRM) is slow under TCG: without them the kernel's memcpy is the
    # unrolled one, and the verifier (most of the guests' time) runs 30% faster
    ap.add_argument("--cpu", default="max,-erms,-fsrm", help="qemu -cpu (default: %(default)s)")
    ap.add_argument("--append", default="", help="more kernel command line")
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("RANDGUARD_KERNEL_JOBS", 2)),
                    help="guests running at once (default: %(default)s)")
    ap.add_argument("--quiet", action="store_true", help="do not echo the guest consoles")
    ap.add_argument("--offline", action="store_true",
                    help="do not ask the archive: use the kernels already cached")
    ap.add_argument("--list", action="store_true", help="print the kernels that would run")
    ap.add_argument("--json", type=Path, default=CACHE / "run" / "results.json",
                    help="where to write the results as JSON (default: %(default)s)")
    ap.add_argument("--doc", type=Path,
                    help="rewrite the generated tables of this file (docs/kernels.md)")
    ap.add_argument("--guest-cmd", default="",
                    help="debugging: run this shell command in each guest instead of the tests")
    ap.add_argument("--no-probe", action="store_true",
                    help="skip the agent_start probe after the tests")
    a = ap.parse_args()
    a.series = [s.strip() for s in a.kernels.split(",") if s.strip()]
    for s in a.series:
        if s not in SERIES:
            ap.error(f"unknown series {s!r} (known: {', '.join(SERIES)})")
    a.tests = a.tests or (os.environ.get("RANDGUARD_KERNEL_TESTS", "").split() or DEFAULT_TESTS)
    for t in a.tests:
        if not (ROOT / t.split("::")[0]).exists():
            ap.error(f"no such test file: {t}")
    return a


def get_kernels(a: argparse.Namespace) -> dict[str, Kernel] | None:
    """The newest kernel of each series, fetched when new; the cached ones offline or when
    the archive cannot be reached. None when --list has printed them instead."""
    apt = Apt(CACHE / "apt", SOURCES)
    failed = "" if a.offline else apt.update()
    if failed:
        log(f"apt-get update failed:\n{failed}")
    if a.offline or failed:
        kernels = cached_kernels(a.series)
        missing = [s for s in a.series if s not in kernels]
        if missing:
            raise SystemExit(f"archive unreachable and no cached kernel for {missing}")
        log("using cached kernels (archive not asked)")
        return kernels
    pkgs = newest_packages(apt, a.series)
    if a.list:
        for p in pkgs.values():
            print(f"{p.series:5} {p.package} {p.version} ({p.suite})")
        return None
    return {s: fetch_kernel(apt, pkgs[s]) for s in a.series}


def run_guest(k: Kernel, parts: list[Path], rundir: Path, a: argparse.Namespace) -> Result:
    """Boot k on these archives until its run is a result. A guest whose clock came out
    wrong, that died before its tests started, or that an emulator stall panicked is booted
    again, three boots at most (each time said in the report)."""
    s = k.series
    log(f"{s}: booting {k.package} {k.version} ({k.image.name})")
    initrd = rundir / s / "initrd.cpio"
    initrd.parent.mkdir(parents=True, exist_ok=True)
    concatenate(parts, initrd)
    retries: list[str] = []
    for attempt in range(1, 4):
        r = boot(k, initrd, rundir / s, a)
        why = emulation_trouble(r)
        if not why:
            break
        detail = "\n".join(r.problem.splitlines()[1:])  # the console's tail, if any
        r.problem = f"the guest failed {attempt} times: {why}" + (
            f"\n{detail}" if detail else "")
        retries.append(why)
        if attempt < 3:
            log(f"{s}: {why}; booting again")
            if r.console is not None:  # kept: the next boot writes console.log anew
                r.console.replace(r.console.with_name(f"console.boot{attempt}.log"))
    r.retries = retries
    initrd.unlink()
    state = "ok" if r.ok else (r.problem.splitlines()[0] if r.problem else "FAILED")
    log(f"{s}: {state} in {r.seconds:.0f}s")
    if r.problem:
        say(r.problem)
    return r


def main() -> int:
    a = parse_args()
    need_tools(["qemu-system-x86_64", "dpkg-deb", "apt-get"], "qemu-system-x86 debootstrap")
    t_start = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    with lock(CACHE / "lock", log):
        kernels = get_kernels(a)
        if kernels is None:
            return 0
        base = build_image()
        t_prep = time.monotonic() - t_start
        rundir = CACHE / "run"
        rundir.mkdir(exist_ok=True)
        run_cpio = rundir / "run.cpio"
        deselect = [f"--deselect={n}" for n in HOST_ONLY_NODES if n.split("::")[0] in a.tests]
        build_run_cpio(run_cpio, a.tests, deselect + a.pytest_args.split(), a.guest_cmd,
                       not a.no_probe)
        log(f"prepared in {t_prep:.0f}s; tests: {' '.join(a.tests)}")

        def one(s: str) -> Result:
            # the kernel unpacks concatenated archives in order: later files win
            return run_guest(kernels[s], [base, kernels[s].modules, run_cpio], rundir, a)

        # The time goes into the verifier, one program at a time: two guests at once keep both
        # host cores busy. Newest first: they run the most tests (io_uring, fentry), so the two
        # queues end close together; the results keep the order asked for.
        with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
            results = list(pool.map(one, a.series[::-1]))[::-1]
        return report(results, a, time.monotonic() - t_start, t_prep)


def report(results: list[Result], a: argparse.Namespace, total: float, t_prep: float) -> int:
    """The tables, the JSON and docs/kernels.md if asked, what went wrong; the exit code."""
    print()
    print("kernels:")
    print(kernels_table(results))
    print()
    print("what the agent reported (agent_start with file, process and network on):")
    print(support_table(results))
    print()
    print("kernel tests per kernel (CO-RE objects built once, against vmlinux/vmlinux.h):")
    print(table(results))
    print()
    if a.doc and not a.guest_cmd:
        update_doc(a.doc, results, a.tests, total)
        log(f"updated {a.doc}")
    if a.json:
        write_json(a.json, results, a.tests, total, t_prep)
    # what went wrong, again at the end, where a log's tail shows it
    for r in results:
        for i, why in enumerate(r.retries, 1):
            log(f"{r.kernel.series}: boot {i} not used: {why}")
        if r.problem:
            log(f"{r.kernel.series}: {r.problem.splitlines()[0]}")
        for t, o in r.outcomes.items():
            if o in ("failed", "error"):
                log(f"{r.kernel.series}: {o}: {t} (see {r.console})")
    bad = [r.kernel.series for r in results if not r.ok]
    npass = sum(o == "passed" for r in results for o in r.outcomes.values())
    nfail = sum(o in ("failed", "error") for r in results for o in r.outcomes.values())
    log(f"{len(results)} kernels in {total:.0f}s (preparation {t_prep:.0f}s)")
    if bad:
        log(f"FAILED on: {', '.join(bad)}")
    print(f"kernels: {npass} passed, {nfail} failed")
    return 1 if bad else 0



if __name__ == "__main__":
    sys.exit(main())
