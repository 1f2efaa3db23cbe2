"""The kernel matrix's judgement of a guest run (vm/matrix_result.py): which boots are emulator
trouble to boot again, and which are results. A result must never be retried away."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

import kernels  # vm/ is on pytest's pythonpath (pyproject.toml)
import matrix_result

STARTED = "============================= test session starts ==============================\n"
LOCKUP = (STARTED + "tests/kernel/test_loader.py ...      [  8%]\n"
          "tests/kernel/test_network_events.py ..[  180.649713] watchdog: BUG: soft lockup - "
          "CPU#0 stuck for 67s! [python3:498]\n"
          "[  180.658001] Kernel panic - not syncing: softlockup: hung tasks\n")


def section(name: str, text: str) -> str:
    return f"@@RG {name}@@\n{base64.b64encode(text.encode()).decode()}\n@@END@@\n"


def result(tmp_path: Path, console: str, sections: str = "") -> matrix_result.Result:
    c = tmp_path / "console.log"
    c.write_text(console)
    r = matrix_result.Result(kernel=None, console=c)
    r.sections = matrix_result.parse_sections(sections.encode())
    if "rc" in r.sections:
        r.rc = int(r.sections["rc"])
    if not r.sections:
        r.problem = "no result (qemu exit 0)\nconsole tail:\n..."
    return r


def test_soft_lockup_panic_is_booted_again_and_says_where(tmp_path: Path) -> None:
    why = matrix_result.emulation_trouble(result(tmp_path, LOCKUP))
    assert why == ("soft lockup panic (CPU#0 stuck for 67s) in "
                   "tests/kernel/test_network_events.py")


def test_death_before_the_tests_is_booted_again(tmp_path: Path) -> None:
    assert matrix_result.emulation_trouble(result(tmp_path, "Booting from ROM..\n")) == (
        "no result (qemu exit 0)")


def test_bad_clock_is_booted_again(tmp_path: Path) -> None:
    r = result(tmp_path, "", section("clock_bad", "TSC 5.7 times too fast\n"))
    assert matrix_result.emulation_trouble(r) == "TSC 5.7 times too fast"


@pytest.mark.parametrize("console", [
    STARTED + "tests/kernel/test_loader.py .F.\n",  # a failing test
    STARTED + "[  12.3] BUG: kernel NULL pointer dereference\nKernel panic - not syncing\n",
])
def test_results_and_other_panics_are_not_retried(tmp_path: Path, console: str) -> None:
    sections = section("rc", "1") if ".F." in console else ""
    assert matrix_result.emulation_trouble(result(tmp_path, console, sections)) == ""


def test_a_finished_run_with_a_lockup_warning_is_a_result(tmp_path: Path) -> None:
    # the tests ended and sent their exit code: what they say stands
    r = result(tmp_path, LOCKUP, section("rc", "0"))
    assert matrix_result.emulation_trouble(r) == ""


def test_junit_failure_in_teardown_wins_over_the_pass() -> None:
    xml = ('<testsuites><testsuite><testcase classname="tests.kernel.test_x" name="t"/>'
           '<testcase classname="tests.kernel.test_x" name="t"><error message="e"/></testcase>'
           '</testsuite></testsuites>')
    assert matrix_result.parse_junit(xml) == {"test_x::t": "error"}


INT3_OOPS = (STARTED + "tests/kernel/test_file_events.py ....   [ 61%]\n"
             "tests/kernel/test_detections.py ......[  167.259613] Oops: int3: 0000 [#1] "
             "SMP NOPTI\n"
             "[  167.260433] CPU: 1 UID: 0 PID: 917 Comm: python3 Not tainted 7.2.13 #1\n"
             "[  167.260823] RIP: 0010:trace_syscall_enter+0xd/0xb0\n"
             "[  167.263512] RIP: 0033:0x7f7be479b5f1\n"
             "[  167.265657] Kernel panic - not syncing: Fatal exception in interrupt\n"
             "[  167.266981] Kernel Offset: disabled\n")


def test_a_dead_guest_is_summed_up_in_one_line() -> None:
    assert matrix_result.how_it_died(INT3_OOPS) == (
        "Oops: int3: 0000 [#1] SMP NOPTI at trace_syscall_enter+0xd/0xb0 "
        "(panic: Fatal exception in interrupt) in tests/kernel/test_detections.py")
    assert matrix_result.how_it_died(LOCKUP) == (
        "watchdog: BUG: soft lockup - CPU#0 stuck for 67s! [python3:498] "
        "(panic: softlockup: hung tasks) in tests/kernel/test_network_events.py")
    assert matrix_result.how_it_died("Booting from ROM..\n") == ""


def test_int3_oops_from_stale_patched_text_is_booted_again(tmp_path: Path) -> None:
    assert matrix_result.emulation_trouble(result(tmp_path, INT3_OOPS)) == (
        "int3 oops at trace_syscall_enter+0xd/0xb0 (stale code after live patching) in "
        "tests/kernel/test_detections.py")


def cpio_modes(data: bytes) -> dict[str, int]:
    """Name -> mode of each entry of a newc archive."""
    out, pos = {}, 0
    while True:
        hdr = data[pos:pos + 110]
        mode, size, namesize = (int(hdr[6 + 8 * i:14 + 8 * i], 16) for i in (1, 6, 11))
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        if name == "TRAILER!!!":
            return out
        out[name] = mode
        pos += 110 + namesize
        pos += -pos % 4 + size
        pos += -pos % 4


def test_run_cpio_keeps_the_test_programs_executable(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """build/tests/ holds static programs next to the objects (i386ops): the guest runs them."""
    root = tmp_path / "root"
    for name, mode in (("agent/randguard/bpf/file.bpf.o", 0o644), ("pyproject.toml", 0o644),
                       ("build/tests/ringtest.bpf.o", 0o644), ("build/tests/i386ops", 0o755)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
        (root / name).chmod(mode)
    monkeypatch.setattr(kernels, "ROOT", root)
    kernels.build_run_cpio(tmp_path / "run.cpio", ["tests/kernel/test_i386.py"], [])
    modes = cpio_modes((tmp_path / "run.cpio").read_bytes())
    assert modes["repo/build/tests/i386ops"] == 0o100755
    assert modes["repo/build/tests/ringtest.bpf.o"] == 0o100644
    assert "tests/kernel/test_i386.py" in kernels.DEFAULT_TESTS


def test_every_kernel_test_file_runs_on_the_matrix_or_says_why_not() -> None:
    files = {str(p.relative_to(kernels.ROOT))
             for p in (kernels.ROOT / "tests/kernel").glob("test_*.py")}
    listed = {t.split("::")[0] for t in kernels.DEFAULT_TESTS}
    assert files == listed | kernels.HOST_ONLY_TESTS.keys()


def test_each_test_left_out_of_the_matrix_exists_in_a_file_it_runs() -> None:
    """A renamed test must not leave a stale deselection (it would run again, silently)."""
    for node in kernels.HOST_ONLY_NODES:
        path, name = node.split("::")
        assert path in kernels.DEFAULT_TESTS, node
        assert f"\ndef {name}(" in (kernels.ROOT / path).read_text(), node
