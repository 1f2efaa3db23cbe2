#!/usr/bin/env python3
"""The .deb on a booted Debian 12: install, service life cycle, remove and purge, under qemu.

Boots Debian 12's own kernel (the package linux-image-amd64 depends on) with systemd as PID 1
in a clean bookworm userspace (debootstrap --variant=minbase + systemd, systemd-sysv, dbus,
udev, kmod, libbpf1, python3, bpftool), packed as an uncompressed cpio and used as the
initramfs. A small per-run cpio appended to it carries the .deb, the Debian packages it pulls
in (a local apt repository: the guest has no network), tests/deb/guest_test.py and the
oneshot unit that runs it and powers off. Per-step results come back on the second serial
port; a table is printed and any failure exits 1.

Everything downloaded or built is cached in .cache/deb-vm/ (ignored by git); with a warm
cache nothing is downloaded. Needs root (debootstrap), qemu-system-x86, debootstrap,
dpkg-dev (dpkg-scanpackages) and cpio. The archive, the image cache and qemu are vm/testvm's,
as for the kernel matrix (vm/kernels.py).

    python3 tests/deb/run.py dist/randguard_0.1.0-1_amd64.deb
    python3 tests/deb/run.py --caps DEB     # the capability/hardening experiments instead
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "vm"))  # where testvm is (as for vm/kernels.py, run from there)
# ruff: noqa: E402 (imports after that)
from testvm import image, qemu
from testvm.archive import MIRROR, SECURITY, Apt, debootstrap, keep_only
from testvm.cpio import concatenate, pack_tree
from testvm.host import Log, lock, need_tools, run
from testvm.kernel import unpack

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("RANDGUARD_DEB_VM_CACHE", ROOT / ".cache" / "deb-vm"))
SUITE = "bookworm"
SOURCES = [(MIRROR, "bookworm"), (MIRROR, "bookworm-updates"), (SECURITY, "bookworm-security")]
GUEST_PACKAGES = ["systemd", "systemd-sysv", "dbus", "udev", "kmod", "libbpf1", "python3",
                  "bpftool"]
# Not in the image, in the local repository: the fleet steps install them (docs/fleet.md).
FLEET_PACKAGES = ["systemd-journal-remote"]
IMAGE_FORMAT = 1  # bump when the image recipe changes in a way the key does not see
# Trimmed from the image: nothing the test reads (the package's own docs are installed later).
TRIM = image.TRIM_WITH_APT
# Units that only cost boot time in the guest.
MASK = ["apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer",
        "e2scrub_all.timer", "fstrim.timer", "systemd-tmpfiles-clean.timer",
        "getty@tty1.service", "systemd-journal-flush.service", "systemd-update-utmp.service",
        "systemd-pstore.service", "systemd-timesyncd.service", "systemd-networkd.service",
        "systemd-resolved.service"]


log = Log("deb-vm")


# --------------------------------------------------------------------------- apt

def with_lists(apt: Apt, fn):
    """fn() with the cached lists; on a failure (lists missing or superseded), update, retry."""
    if apt.has_lists():
        try:
            return fn()
        except (subprocess.CalledProcessError, LookupError) as e:
            log(f"with the cached lists: {e}; updating them")
    log(f"apt-get update (private lists for {SUITE})")
    if failed := apt.update():
        raise SystemExit(f"apt-get update failed:\n{failed}")
    return fn()


# --------------------------------------------------------------------------- kernel

def kernel(apt: Apt) -> tuple[Path, str, Path]:
    """Debian 12's kernel, the image linux-image-amd64 depends on: the ELF vmlinux, a
    description, and the few modules the guest gets (modules/RELEASE/..., for lib/modules:
    testvm.kernel's, which the agent's network inventory and the --caps experiments load)."""
    def resolve() -> tuple[str, str]:
        info = apt.cache("show", "--no-all-versions", "linux-image-amd64")
        m = re.search(r"^Depends: (linux-image-[^ ,]+) \(= ([^)]+)\)", info, re.M)
        if not m:
            raise LookupError("linux-image-amd64: no Depends on an image")
        return m.group(1), m.group(2)

    pkg, ver = with_lists(apt, resolve)
    d = CACHE / "kernel" / f"{pkg}_{ver}"
    done = d / "release"
    if not (done.exists() and (d / "modules").is_dir()):
        t0 = time.monotonic()
        tmp = Path(tempfile.mkdtemp(dir=CACHE))
        shutil.rmtree(d, ignore_errors=True)
        (d / "modules").mkdir(parents=True)
        try:
            (deb,) = with_lists(apt, lambda: apt.download([f"{pkg}={ver}"], tmp))
            k = unpack([deb], deb.name)
            for rel, data in k.module_files():
                out = d / "modules" / k.release / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
            (d / k.image).write_bytes(k.data)
            done.write_text(k.release)
            log(f"kernel {pkg} {ver}: {deb.stat().st_size >> 20} MiB downloaded, "
                f"{k.image} extracted in {time.monotonic() - t0:.0f}s")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        keep_only(d)
    img = d / "vmlinux" if (d / "vmlinux").exists() else d / "vmlinuz"
    return img, f"{pkg} {ver} ({done.read_text()})", d / "modules"


# --------------------------------------------------------------------------- guest image

def image_key() -> str:
    return image.recipe_key([IMAGE_FORMAT, SUITE, GUEST_PACKAGES, TRIM, MASK])


def guest_image() -> tuple[Path, Path]:
    """The cached guest userspace (cpio) and its dpkg status file."""
    img, status = image.cached(CACHE, image_key(), [".cpio", ".status"], build_userspace, log)
    return img, status


def build_userspace(tree: Path, outputs: list[Path]) -> None:
    """debootstrap into tree, made an offline guest that boots fast, packed into outputs:
    the cpio, and the dpkg status apt plans the dependencies against."""
    img, status = outputs
    log(f"debootstrap --variant=minbase {SUITE} + {','.join(GUEST_PACKAGES)} ...")
    debootstrap(tree, SUITE, GUEST_PACKAGES, CACHE / "debootstrap-debs")
    # offline guest: no sources but the per-run local repository
    (tree / "etc/apt/sources.list").write_text("")
    (tree / "etc/hostname").write_text("rg-deb-guest\n")
    (tree / "etc/machine-id").write_text("5a1d3c0e9b8f4e2a8c7d6b5a4f3e2d1c\n")
    (tree / "etc/fstab").write_text("")
    for unit in MASK:
        link = tree / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    image.trim(tree, TRIM)
    (tree / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    (tree / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    for b in (tree / "var/cache/apt").glob("*.bin"):
        b.unlink()
    shutil.copy(tree / "var/lib/dpkg/status", status)
    pack_tree(tree, img)


# --------------------------------------------------------------------------- local repository

def dependency_debs(deb: Path, status: Path) -> list[Path]:
    """The Debian packages `apt install ./DEB` pulls into the guest image, with FLEET_PACKAGES
    and theirs, downloaded once."""
    apt = Apt(CACHE / "apt", SOURCES, status=status)
    repo = CACHE / "repo"
    repo.mkdir(parents=True, exist_ok=True)

    def plan() -> list[tuple[str, str]]:
        r = apt.get("-s", "install", "--no-install-recommends", str(deb.resolve()),
                    *FLEET_PACKAGES)
        inst = re.findall(r"^Inst (\S+) (?:\[\S+\] )?\((\S+) ", r.stdout, re.M)
        return [(p, v) for p, v in inst if p != "randguard"]

    need = with_lists(apt, plan)

    def have(p: str, v: str) -> Path | None:
        ver = v.replace(":", "%3a")
        hits = list(repo.glob(f"{p}_{ver}_*.deb"))
        return hits[0] if hits else None

    missing = [f"{p}={v}" for p, v in need if not have(p, v)]
    if missing:
        log(f"downloading {len(missing)} dependencies: {' '.join(missing)}")
        with_lists(apt, lambda: apt.download(missing, repo))
    return [have(p, v) for p, v in need]


def upgrade_deb(deb: Path, dest: Path) -> tuple[Path, str]:
    """The same package with a higher version (VERSION+t1): for the upgrade step."""
    tmp = Path(tempfile.mkdtemp(dir=CACHE))
    try:
        run(["dpkg-deb", "-R", str(deb), str(tmp / "x")])
        ctl = tmp / "x/DEBIAN/control"
        text = ctl.read_text()
        ver = re.search(r"^Version: (\S+)", text, re.M).group(1)
        new = f"{ver}+t1"
        ctl.write_text(text.replace(f"Version: {ver}", f"Version: {new}", 1))
        info = next((tmp / "x/usr/lib/randguard/lib").glob("python3*/site-packages/randguard"))
        (info / "_build_info.py").write_text(
            (info / "_build_info.py").read_text().replace(f'"{ver}"', f'"{new}"'))
        out = dest / f"randguard_{new}_amd64.deb"
        run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "-b", str(tmp / "x"), str(out)],
            stdout=subprocess.DEVNULL)
        return out, new
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- per-run cpio

TEST_UNIT = """[Unit]
Description=randguard .deb test (tests/deb/guest_test.py)
After=basic.target systemd-journald.service
[Service]
Type=oneshot
ExecStart=/usr/bin/python3 /rg/guest_test.py
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
[Install]
WantedBy=multi-user.target
"""


# The journal bench's guest side (bench/workloads/journal.py runs run.py --journal-bench).
JOURNAL_GUEST = ROOT / "bench" / "workloads" / "journal_guest.py"


def run_cpio(dest: Path, deb: Path, deps: list[Path], mode: str, modules: Path,
             bench: dict | None = None) -> None:
    stage = Path(tempfile.mkdtemp(dir=CACHE, prefix="run-"))
    try:
        # /lib is a symlink to usr/lib in the image: write through the real path
        shutil.copytree(modules, stage / "usr/lib/modules")
        debs = stage / "rg/debs"
        debs.mkdir(parents=True)
        for d in deps:
            shutil.copy(d, debs)
        # the index holds the dependencies only: the package under test is installed by path
        r = run(["dpkg-scanpackages", "--multiversion", "."], cwd=debs, capture_output=True)
        (debs / "Packages").write_bytes(r.stdout)
        shutil.copy(deb, debs)
        up, up_ver = upgrade_deb(deb, debs)
        (stage / "rg/job.json").write_text(json.dumps({
            "deb": deb.name, "upgrade_deb": up.name, "upgrade_version": up_ver, "mode": mode,
            "bench": bench or {}}))
        shutil.copy(HERE / "guest_test.py", stage / "rg/guest_test.py")
        shutil.copy(JOURNAL_GUEST, stage / "rg/journal_guest.py")
        src = stage / "etc/apt/sources.list.d"
        src.mkdir(parents=True)
        (src / "rg-local.list").write_text("deb [trusted=yes] file:/rg/debs ./\n")
        units = stage / "etc/systemd/system"
        (units / "multi-user.target.wants").mkdir(parents=True)
        (units / "rg-deb-test.service").write_text(TEST_UNIT)
        (units / "multi-user.target.wants/rg-deb-test.service").symlink_to(
            "/etc/systemd/system/rg-deb-test.service")
        # directories that exist in the base image must not be replaced by the appended
        # archive's entries with other modes: the kernel applies each entry in turn
        for p in [stage, *stage.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        pack_tree(stage, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# --------------------------------------------------------------------------- boot

# After qemu.APPEND: systemd as PID 1, straight from the initramfs.
APPEND = "rdinit=/lib/systemd/systemd systemd.show_status=auto systemd.log_level=warning"


def boot(vmlinux: Path, initrd: Path, outdir: Path, timeout: int, echo: bool) -> dict:
    """Boot the guest, showing its test log (echo) or each step as it ends; its results."""
    follow = qemu.Tail(outdir / (qemu.CONSOLE if echo else qemu.RESULTS))

    def watch() -> None:
        for ln in follow.lines():
            ln = ln.replace("\r", "")
            if echo and "[guest]" in ln:
                print("  " + ln[ln.index("[guest]"):], flush=True)
            elif not echo and ln.startswith("@@STEP "):
                s = json.loads(ln[7:])
                print(f"  {'PASS' if s['ok'] else 'FAIL' if s['ok'] is False else 'skip'}"
                      f" {s['name']} ({s['seconds']}s)", flush=True)

    ran = qemu.boot(qemu.Machine(vmlinux, initrd, APPEND), outdir, timeout, watch)
    res = {"seconds": ran.seconds, "rc": ran.rc, "qemu": ran.output, "steps": [], "caps": [],
           "done": None, "boot": None, "journal": "", "bench": None}
    read_results(outdir / qemu.RESULTS, res)
    (outdir / "journal.txt").write_text(res["journal"])
    (outdir / "debug.txt").write_text("\n".join(res.get("debug", [])))
    return res


def read_results(path: Path, res: dict) -> None:
    """The guest's '@@TAG json' lines (tests/deb/guest_test.py) into res."""
    for ln in path.read_text(errors="replace").replace("\r", "").splitlines():
        tag, _, rest = ln.partition(" ")
        try:
            if tag == "@@STEP":
                res["steps"].append(json.loads(rest))
            elif tag == "@@CAPS":
                res["caps"].append(json.loads(rest))
            elif tag == "@@BENCH":
                res["bench"] = json.loads(rest)
            elif tag == "@@DONE":
                res["done"] = json.loads(rest)
            elif tag == "@@BOOT":
                res["boot"] = json.loads(rest)
            elif tag == "@@DEBUG":
                res.setdefault("debug", []).append(json.loads(rest))
            elif tag == "@@JOURNAL":
                res["journal"] = base64.b64decode(rest).decode(errors="replace")
        except ValueError:
            pass


# --------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("deb", type=Path, nargs="?", help="default: the newest dist/randguard_*.deb")
    ap.add_argument("--caps", action="store_true",
                    help="run the capability and hardening experiments instead of the test")
    ap.add_argument("--journal-bench", metavar="JSON", type=Path,
                    help="run the journal bench (bench/workloads/journal_guest.py) instead, "
                         "its results to JSON")
    ap.add_argument("--bench-args", default="{}",
                    help="JSON: the journal bench's parameters (opens, rate, rounds, rates, ...)")
    ap.add_argument("--timeout", type=int, default=420, help="for the whole guest, seconds")
    ap.add_argument("--echo", action="store_true", help="echo the guest's test log")
    a = ap.parse_args()
    deb = a.deb or max(ROOT.glob("dist/randguard_*_amd64.deb"), key=os.path.getmtime,
                       default=None)
    if deb is None or not deb.is_file():
        raise SystemExit("no .deb: run `make deb` first")
    need_tools(["qemu-system-x86_64", "debootstrap", "dpkg-scanpackages", "cpio", "apt-get"],
               "qemu-system-x86 debootstrap dpkg-dev cpio")

    t_start = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    with lock(CACHE / ".lock", log):
        return test(a, deb, t_start)


def test(a: argparse.Namespace, deb: Path, t_start: float) -> int:
    vmlinux, kdesc, modules = kernel(Apt(CACHE / "apt", SOURCES))
    img, status = guest_image()
    deps = dependency_debs(deb, status)
    rundir = CACHE / "run"
    rundir.mkdir(exist_ok=True)
    per_run = rundir / "run.cpio"
    mode = "caps" if a.caps else "journal-bench" if a.journal_bench else "test"
    run_cpio(per_run, deb, deps, mode, modules, json.loads(a.bench_args))
    initrd = rundir / "initrd.cpio"
    concatenate([img, per_run], initrd)
    t_prep = time.monotonic() - t_start
    log(f"{deb.name} ({deb.stat().st_size >> 10} KiB) on {kdesc}; image {img.name}; "
        f"{len(deps)} dependencies from the local repository; prepared in {t_prep:.1f}s")

    res = boot(vmlinux, initrd, rundir, a.timeout, a.echo)
    total = time.monotonic() - t_start
    ok = bool(res["done"] and res["done"]["ok"])
    print()
    if a.caps:
        for c in res["caps"]:
            print(json.dumps(c))
    elif a.journal_bench:
        ok = ok and res["bench"] is not None
        if res["bench"] is not None:
            a.journal_bench.write_text(json.dumps(res["bench"], indent=1) + "\n")
            log(f"journal bench results in {a.journal_bench}")
    else:
        width = max((len(s["name"]) for s in res["steps"]), default=10)
        for s in res["steps"]:
            mark = "PASS" if s["ok"] else ("FAIL" if s["ok"] is False else "SKIP")
            print(f"{mark}  {s['name']:<{width}}  {s['seconds']:6.1f}s  {s['detail']}")
        ok = ok and bool(res["steps"]) and all(s["ok"] for s in res["steps"])
    boot_s = res["boot"]["uptime"] if res["boot"] else None
    print()
    log(f"guest: kernel {res['boot']['kernel'] if res['boot'] else '?'}, test unit started "
        f"{boot_s}s after boot; qemu {res['seconds']:.1f}s; preparation {t_prep:.1f}s; "
        f"total {total:.1f}s")
    if not res["done"]:
        tail = (rundir / "console.log").read_text(errors="replace").replace("\r", "")
        print("no result from the guest (qemu exit "
              f"{res['rc']}{'; ' + res['qemu'] if res['qemu'] else ''}); console tail:")
        print("\n".join(tail.splitlines()[-30:]))
    if not ok:
        log(f"FAILED (console: {rundir / 'console.log'}, journal: {rundir / 'journal.txt'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
