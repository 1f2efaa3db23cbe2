"""Fixtures for the libbpf binding and ring buffer tests.

Kernel tests (marked ``kernel``, or using the ``require_kernel`` fixture) need root, BPF,
tracefs and the compiled test object. Without root, or on a kernel that refuses BPF or has no
tracefs, they skip with the reason, unless RANDGUARD_REQUIRE_KERNEL_TESTS=1 (CI on a real
machine), where an unavailable kernel must not look like a pass. What the checkout lacks (the
test object not built, the libbpf binding not importable) is never a skip. Either way the test
FAILS in its call phase, so it is reported as a failure rather than as a setup error.
"""

from __future__ import annotations

import errno
import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from randguard.kernel import libbpf

ROOT = Path(__file__).resolve().parents[2]
RINGTEST_OBJ = ROOT / "build" / "tests" / "ringtest.bpf.o"


def _required() -> bool:
    return os.environ.get("RANDGUARD_REQUIRE_KERNEL_TESTS") == "1"


_PROBLEM = pytest.StashKey[str]()


def unavailable(node: pytest.Item, reason: str) -> None:
    """Skip now, or, when kernel tests are required (or the reason is not the machine's: as root,
    only a kernel that refuses BPF is), make the test fail when it is called."""
    if not _required() and reason.startswith(_SKIPPABLE):
        pytest.skip(reason)
    node.stash[_PROBLEM] = f"kernel test required but unavailable: {reason}"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("kernel") is not None:
        problem = _kernel_problem()
        if problem:
            unavailable(item, problem)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    problem = item.stash.get(_PROBLEM, None)
    if problem:
        pytest.fail(problem, pytrace=False)


def _object_problem() -> str | None:
    if not RINGTEST_OBJ.exists():
        return f"{RINGTEST_OBJ.relative_to(ROOT)} missing: run make build/tests/ringtest.bpf.o"
    return None


# what the machine, not the checkout, lacks: a skip (else a failure)
_NO_ROOT = "needs root"
_NO_BPF = "BPF not usable here"
_NO_TRACEFS = "tracefs unavailable"
_SKIPPABLE = (_NO_ROOT, _NO_BPF, _NO_TRACEFS)


@cache
def _kernel_problem() -> str | None:
    if os.geteuid() != 0:
        return f"{_NO_ROOT} (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN for tracefs)"
    problem = _object_problem()
    if problem:
        return problem
    try:
        from randguard.kernel import libbpf
    except (ImportError, OSError) as e:
        return f"libbpf binding unavailable: {e}"
    try:
        libbpf.ensure_tracefs()  # the binding's own tests attach syscalls/ tracepoints by name
        if not libbpf.tracepoint_exists("syscalls", "sys_enter_getppid"):
            return f"{_NO_TRACEFS}: it has no syscalls/sys_enter_getppid tracepoint"
    except OSError as e:
        return f"{_NO_TRACEFS}: {e}"
    # A trial load tells a kernel without (permitted) BPF from a bug in the code under test:
    # only the former is a reason to skip.
    try:
        with libbpf.BpfObject(RINGTEST_OBJ) as obj:
            obj.load()
    except libbpf.LibbpfError as e:
        if e.errno in (errno.EPERM, errno.EACCES, errno.ENOSYS, errno.EOPNOTSUPP):
            return f"{_NO_BPF}: {e}"
    return None


@pytest.fixture
def require_kernel(request: pytest.FixtureRequest) -> None:
    """Root, BPF, tracefs and the test object, or skip (fail when required)."""
    problem = _kernel_problem()
    if problem:
        unavailable(request.node, problem)


@pytest.fixture
def ringtest_obj(request: pytest.FixtureRequest) -> Path:
    """Path of the compiled test object (opening it needs no root)."""
    problem = _object_problem()
    if problem:
        unavailable(request.node, problem)
    return RINGTEST_OBJ


def loaded(path: Path, tag: int = 0, ring_size: int = 0, reuse_fd: int = -1,
           ) -> libbpf.BpfObject:
    """The ring test object, counting and emitting for this process only, loaded (not
    attached); `ring_size` resizes its ring, `reuse_fd` shares another object's."""
    from randguard.kernel import libbpf  # (here: an unimportable binding is a test failure)

    obj = libbpf.BpfObject(path)
    try:
        obj.set_rodata({"target_tgid": os.getpid(), "tag": tag})
        if ring_size:
            obj.set_max_entries("events", ring_size)
        if reuse_fd >= 0:
            obj.reuse_map("events", reuse_fd)
        obj.load()
    except BaseException:
        obj.close()
        raise
    return obj
