"""Fixtures for the libbpf binding and ring buffer tests.

Kernel tests (marked ``kernel``, or using the ``require_kernel`` fixture) need root, BPF,
tracefs and the compiled test object. When any of that is missing they skip with the reason,
unless RANDGUARD_REQUIRE_KERNEL_TESTS=1 (CI on a real machine), where an unavailable kernel must
not look like a pass: the test then FAILS (in its call phase, so it is reported as a failure
rather than as a setup error).
"""

from __future__ import annotations

import errno
import os
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RINGTEST_OBJ = ROOT / "build" / "tests" / "ringtest.bpf.o"


def _required() -> bool:
    return os.environ.get("RANDGUARD_REQUIRE_KERNEL_TESTS") == "1"


_PROBLEM = pytest.StashKey[str]()


def unavailable(node: pytest.Item, reason: str) -> None:
    """Skip now, or, when kernel tests are required, make the test fail when it is called."""
    if not _required():
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


@cache
def _kernel_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN for tracefs)"
    problem = _object_problem()
    if problem:
        return problem
    try:
        from randguard import libbpf
    except (ImportError, OSError) as e:
        return f"libbpf binding unavailable: {e}"
    try:
        libbpf.ensure_tracefs()  # the binding's own tests attach syscalls/ tracepoints by name
        if not libbpf.tracepoint_exists("syscalls", "sys_enter_getppid"):
            return "kernel has no syscalls/sys_enter_getppid tracepoint"
    except OSError as e:
        return f"tracefs unavailable: {e}"
    # A trial load tells a kernel without (permitted) BPF from a bug in the code under test:
    # only the former is a reason to skip.
    try:
        with libbpf.BpfObject(RINGTEST_OBJ) as obj:
            obj.load()
    except libbpf.LibbpfError as e:
        if e.errno in (errno.EPERM, errno.EACCES, errno.ENOSYS, errno.EOPNOTSUPP):
            return f"BPF not usable here: {e}"
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
