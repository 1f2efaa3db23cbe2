"""Name patterns of every shape reach userspace through the real kernel filter (issue 18).

The pack's `sitecustomize.py` and `usercustomize.py` patterns fired under /etc (a watched path)
and nowhere else, while the config's `*.service` fired anywhere: the suffix table was packed
32 bytes per suffix where the kernel's `struct rg_suffix` is 34, so the kernel found only the
first suffix (`.service`, which sorts first) where it looks. The Python model of the kernel
(`KernelFilter.passes`) read the tables as they were packed and could not see it: these tests
ask the real kernel, through the real agent, with the shipped config and pack.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_proc import AgentProc, running, write_config, write_default_config

from randguard.config import Config
from randguard.matcher import (
    KERNEL_FILTER_MAX_SUFFIXES,
    FileFilter,
    compile_kernel_filter,
    kernel_form,
)
from randguard.ruleset import load_ruleset

pytestmark = pytest.mark.kernel

PACK = load_ruleset(Config(), Path("/nonexistent-rg/config.toml")).persistence
PY_STARTUP = next(d for d in PACK if "sitecustomize.py" in d.patterns)
DEFAULTS = Config().file


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="rg-pat-", dir="/var/tmp"))
    d.chmod(0o755)
    (d / "markers").mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def agent(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProc]:
    cfg = write_default_config(tmp_path_factory.mktemp("cfg") / "config.toml", base / "markers")
    with running(cfg, base / "markers") as a:
        yield a


@pytest.fixture
def made() -> Iterator[list[Path]]:
    """Files and directories a test creates outside its temp dirs, removed at the end (in
    reverse; a directory only if empty)."""
    out: list[Path] = []
    yield out
    for p in reversed(out):
        with contextlib.suppress(FileNotFoundError, OSError):
            if p.is_dir() and not p.is_symlink():
                p.rmdir()
            else:
                p.unlink()


def mkdirs(path: Path, made: list[Path]) -> None:
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        d.mkdir()
        made.append(d)


def sh(script: str) -> subprocess.Popen:
    p = subprocess.Popen(["sh", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0, (script, err)
    return p


def events_for(agent: AgentProc, path: Path, **match: object) -> list[dict]:
    return agent.matching(lambda e: e.get("resolved_path") == str(path)
                          and all(e.get(k) == v for k, v in match.items()))


def the(agent: AgentProc, path: Path, **match: object) -> dict:
    evs = events_for(agent, path, **match)
    assert len(evs) == 1, (path, match, evs, agent.stderr_lines[-5:])
    return evs[0]


def annotated_as_python_startup(ev: dict) -> None:
    assert (ev["alert"], ev["detection_type"], ev["mitre"]) == (
        True, PY_STARTUP.name, PY_STARTUP.mitre), ev
    assert ev["ret"] >= 0 and ev["error"] is None


def create(agent: AgentProc, path: Path) -> tuple[dict, dict]:
    """Create `path` with a shell redirection as an attacker would; its open and write."""
    p = sh(f"printf 'import os\\n' > '{path}'")
    agent.sync()
    opened = the(agent, path, event_type="file_open", pid=p.pid)
    written = the(agent, path, event_type="file_write", pid=p.pid)
    assert opened["created"] is True and opened["access"] == "write"
    return opened, written


# --- the pack's file names, wherever the file is ---------------------------------------------


@pytest.mark.parametrize("name", ["sitecustomize.py", "usercustomize.py"])
def test_python_startup_hook_in_an_unwatched_site_packages(agent: AgentProc, base: Path,
                                                           name: str) -> None:
    site = base / "venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    path = site / name
    # nothing but the detection's file-name pattern makes this path pass
    assert not FileFilter.from_config(DEFAULTS).wants(str(path), True)
    assert name in PY_STARTUP.patterns and kernel_form(name) == ("suffix", f"/{name}".encode())
    for ev in create(agent, path):
        annotated_as_python_startup(ev)


def test_python_startup_hook_in_roots_user_site(agent: AgentProc, made: list[Path]) -> None:
    """`~/.local/lib/python3.11/site-packages/usercustomize.py`, the issue's second example."""
    site = Path("/root/.local/lib/python3.11/site-packages")
    path = site / "usercustomize.py"
    if path.exists():
        pytest.skip(f"{path} exists; not touching it")
    mkdirs(site, made)
    made.append(path)
    for ev in create(agent, path):
        annotated_as_python_startup(ev)


def test_python_startup_hook_under_an_excluded_path(agent: AgentProc, made: list[Path]) -> None:
    """A virtualenv under /tmp: a detection wins over exclude_paths, in the kernel too."""
    assert "/tmp" in DEFAULTS.exclude_paths
    venv = Path(tempfile.mkdtemp(prefix="rg-pat-venv-", dir="/tmp"))
    made.append(venv)
    site = venv / "lib" / "python3.11" / "site-packages"
    mkdirs(site, made)
    path = site / "sitecustomize.py"
    made.append(path)
    for ev in create(agent, path):
        annotated_as_python_startup(ev)


@pytest.mark.parametrize("where", ["tmp-venv", "root-user-site"])
def test_pth_file_in_any_site_packages(agent: AgentProc, made: list[Path], where: str) -> None:
    """A `.pth` file (its `import` lines run at every interpreter start) dropped into a
    virtualenv under /tmp (excluded) and into root's user site: `/**/site-packages/*.pth`,
    which the kernel passes as the suffix `.pth`. Python reading it at start is no event."""
    if where == "tmp-venv":
        venv = Path(tempfile.mkdtemp(prefix="rg-pat-venv-", dir="/tmp"))
        made.append(venv)
        site = venv / "lib" / "python3.11" / "site-packages"
    else:
        site = Path("/root/.local/lib/python3.11/site-packages")
    path = site / "rg-test-hook.pth"
    if path.exists():
        pytest.skip(f"{path} exists; not touching it")
    assert not FileFilter.from_config(DEFAULTS).wants(str(path), True)
    assert kernel_form("/**/site-packages/*.pth") == ("suffix", b".pth")
    mkdirs(site, made)
    made.append(path)
    for ev in create(agent, path):
        annotated_as_python_startup(ev)
    if where == "root-user-site":  # the interpreter reads it (the user site is on by default)
        p = subprocess.run(["python3", "-c", "import sys; print(sys.flags.no_user_site)"],
                           capture_output=True, text=True, check=True, cwd="/")
        assert p.stdout.strip() == "0"
        agent.sync()
        assert len(events_for(agent, path)) == 2  # the open and the write above, nothing more


def test_near_misses_of_the_pth_pattern_produce_nothing(agent: AgentProc, base: Path) -> None:
    """A `.pth` outside any site-packages, one below a package's own directory, and a name that
    only starts like it: the kernel passes them (the `.pth` suffix), userspace drops them."""
    near = [base / "pth-near" / "rg.pth", base / "pth-near" / "site-packages" / "pkg" / "rg.pth",
            base / "pth-near" / "site-packagesx" / "rg.pth"]
    for path in near:
        path.parent.mkdir(parents=True, exist_ok=True)
        sh(f"printf 'x\\n' > '{path}'")
    control = base / "pth-near" / "site-packages" / "rg.pth"
    opened, _ = create(agent, control)
    annotated_as_python_startup(opened)
    for path in near:
        assert events_for(agent, path) == [], path


def test_near_misses_of_the_file_names_produce_nothing(agent: AgentProc, base: Path) -> None:
    site = base / "near" / "site-packages"
    site.mkdir(parents=True)
    names = ["xsitecustomize.py", "sitecustomize.py.bak", "usercustomize.pyc", "customize.py"]
    for name in names:
        sh(f"printf 'x\\n' > '{site / name}'")
    real = site / "sitecustomize.py"  # the control: the same directory, the real name
    opened, _ = create(agent, real)
    annotated_as_python_startup(opened)
    for name in names:
        assert events_for(agent, site / name) == [], name


# --- more suffixes than the kernel has slots -------------------------------------------------


def test_every_pattern_shape_passes_with_more_suffixes_than_slots(
    base: Path, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Names, `*.ext`, globs with several wildcards and full-path patterns, with more suffixes
    than the 16 slots: the kernel shares shorter endings, every file reaches userspace, and
    the agent says at start which patterns it widened."""
    many = base / "many"
    many.mkdir()
    (base / "prefixed").mkdir()  # apart: its trie prefix passes everything below it
    names = [f"rg-slot-{i:02d}.conf" for i in range(KERNEL_FILTER_MAX_SUFFIXES + 2)]
    shapes = {  # pattern -> a file it matches
        "*.rgext": many / "a.rgext",
        "[ab]*.rg?at": many / "b1.rgdat",
        "?rg-any.x": many / "zrg-any.x",
        "/*/*/rg-pat-*/many/*.rgq": many / "x.rgq",  # no literal beginning: its tail, a suffix
        f"{base}/p*d/*.rgpy": base / "prefixed" / "x.rgpy",  # absolute: a trie prefix
    }
    patterns = names + list(shapes)
    kf = compile_kernel_filter(FileFilter([str(base / "markers")], patterns))
    # the test covers what it says: every slot in use, some patterns widened, no pass_all
    assert len(kf.suffixes) == KERNEL_FILTER_MAX_SUFFIXES and kf.pass_all == 0
    assert kf.widened and {p for p, _ in kf.widened} <= set(names)
    cfg = write_config(tmp_path_factory.mktemp("cfg") / "config.toml",
                       watch=[str(base / "markers")], patterns=patterns, builtin=False)
    with AgentProc(cfg, marker_dir=base / "markers") as a:
        line = a.wait_for_log("kernel filter:")
        assert f"suffixes for {KERNEL_FILTER_MAX_SUFFIXES} slots" in line
        assert sum("kernel filter:" in ln for ln in a.stderr_lines) == 1  # one warning
        assert all(repr(p) in line for p, _ in kf.widened), line
        files = [many / n for n in names] + list(shapes.values())
        for f in files:
            f.write_text("x\n")
        miss = many / "rg-slot-00.conf.bak"
        miss.write_text("x\n")
        a.sync()
        opened = {e["resolved_path"] for e in a.matching(lambda e: e["event_type"] == "file_open")}
        assert [f for f in files if str(f) not in opened] == []
        assert events_for(a, miss) == []  # userspace decides: no pattern matches it
        assert a.stop() == 0
