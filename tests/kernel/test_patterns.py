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
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from agent_proc import AgentProc, running, scratch_fixture, write_config, write_default_config

from randguard.core.config import Config, load_config
from randguard.core.matcher import (
    KERNEL_FILTER_MAX_SUFFIXES,
    FileFilter,
    compile_kernel_filter,
    kernel_form,
)
from randguard.core.ruleset import load_ruleset
from randguard.process.runtime import make_pipeline

pytestmark = pytest.mark.kernel

PACK = load_ruleset(Config(), Path("/nonexistent-rg/config.toml")).persistence
PY_STARTUP = next(d for d in PACK if "sitecustomize.py" in d.patterns)
DEFAULTS = Config().file


base = scratch_fixture("rg-pat-", ("markers",))


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


# --- the kernel filter passes a superset of userspace's, for the shipped lists ------------------


def _reroot(p: str, root: Path) -> str:
    """A path or pattern of the shipped config, pack or rules, moved under `root` (a home
    `~/x` to root/home/rg/x); a relative pattern (a file name) stays: it matches anywhere."""
    if p.startswith("~/"):
        return f"{root}/home/rg/{p[2:]}"
    return f"{root}{p}" if p.startswith("/") else p


def _example(glob: str) -> str:
    """One path the glob matches: `**/` a/b/, `*` rgx, `?` q, a bracket its first member."""
    s = glob.replace("**/", "a/b/").replace("**", "a/b")
    s = re.sub(r"\[!([^\]]*)\]", "z", s)
    s = re.sub(r"\[([^\]])[^\]]*\]", r"\1", s)
    return s.replace("*", "rgx").replace("?", "q")


def _toml_entries(table: str, entries: list[dict]) -> str:
    out = []
    for e in entries:
        out.append(f"[[{table}]]")
        out += [f"{k} = {msgspec.json.encode(v).decode()}" for k, v in e.items()]
    return "\n".join(out) + "\n"


def _rerooted_config(path: Path, roots: list[Path], markers: Path) -> tuple[Path, list[str]]:
    """The default [file] lists, the pack and the shipped file rules, each path and absolute
    pattern once under every root (the pack and rules as the config's own entries, so they
    keep their force over exclude_paths); and the path-like strings it used, for generating."""
    rs = load_ruleset(Config(), Path("/nonexistent-rg/config.toml"))
    d = Config().file
    used: list[str] = []

    def moved(items: list[str]) -> list[str]:
        used.extend(items)
        return [_reroot(p, r) for r in roots for p in items] if items else []

    dets = [{"name": x.name, "mitre": x.mitre, "operations": x.operations, "modes": x.modes,
             "xattrs": x.xattrs, "paths": moved(x.paths), "patterns": moved(x.patterns)}
            for x in rs.persistence]
    rules = [{"id": r.id, "name": r.name, "type": r.type, "severity": r.severity,
              "paths": moved(r.paths), "patterns": moved(r.patterns),
              "operations": r.operations, "process_names": r.process_names}
             for r in rs.rules if r.type == "file"]
    cfg = write_config(
        path, watch=[*moved(d.watch_paths), str(markers)], exclude=moved(d.exclude_paths),
        read=moved(d.read_paths), patterns=moved(d.watch_patterns), builtin=False,
        extra="[performance]\nmax_events_per_second = 0\n"
        + _toml_entries("detections.persistence", dets) + _toml_entries("rules", rules))
    return cfg, used


def _candidates(used: list[str], as_file: Path, below: Path) -> list[Path]:
    """Paths to create: under `as_file` each listed path itself and its near misses (longer,
    shorter, a backup, another case), under `below` files inside and beside it; each
    pattern's example, the same one a directory deeper, and its near misses; file names in a
    plain and in an excluded directory."""
    out: list[str] = []
    for p in set(used):
        ex = _example(p)
        if p.startswith(("/", "~/")):
            a, b = _reroot(ex, as_file), _reroot(ex, below)
            out += [a, a + "x", a + ".bak", a + "~", a[:-1], f"{b}/rg-f", f"{b}/.rg-hidden",
                    f"{b}/sub/rg-f", f"{b}/sub/deeper/rg-f", f"{b}x/rg-f", f"{b}.d/rg-f"]
            head, _, name = a.rpartition("/")
            out += [f"{head}/x{name}", f"{head}/sub/{name}", f"{head}/{name.upper()}"]
        else:
            for d in (f"{below}/plain-dir", f"{below}/tmp/rg", f"{as_file}/var/log/rg"):
                out += [f"{d}/{ex}", f"{d}/{ex}.bak", f"{d}/x{ex}", f"{d}/sub/{ex}"]
    paths = {Path(p) for p in out}
    dirs = {q for p in paths for q in p.parents}
    return sorted(p for p in paths if p not in dirs)  # a path some other one needs as a directory


def test_kernel_filter_passes_all_userspace_wants_for_generated_paths(
        base: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The shipped watch lists, pack and rules, moved under two temp roots: thousands of files
    made at their paths, their near misses and their patterns' examples, in watched, unwatched
    and excluded places. Every file userspace's filter (the agent's own, built from the same
    config) wants is reported: the real kernel program dropped none of them (it drops others:
    it filters at all), and nothing else is reported."""
    as_file, below = base / "gen-a", base / "gen-b"
    markers = base / "gen-markers"
    markers.mkdir()
    cfg, used = _rerooted_config(tmp_path_factory.mktemp("cfg") / "config.toml",
                                 [as_file, below], markers)
    files = _candidates(used, as_file, below)
    wants = make_pipeline(load_config(cfg), cfg).file_filter.wants
    expected = {str(f) for f in files if wants(str(f), True)}
    assert len(files) > 2000 and 500 < len(expected) < len(files) - 500, (len(files),
                                                                          len(expected))
    with AgentProc(cfg, marker_dir=markers) as a:
        a.wait_for(lambda e: e["event_type"] == "agent_start")
        for f in files:
            f.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(f, os.O_WRONLY | os.O_CREAT, 0o644))
        a.sync()
        got = {e["resolved_path"] for e in a.matching(
            lambda e: e["event_type"] == "file_open" and e["pid"] == os.getpid()
            and e["resolved_path"].startswith((f"{as_file}/", f"{below}/")))}
        assert a.stop() == 0
        final = a.wait_for(lambda e: e["event_type"] == "health" and e.get("final") is True)
    assert sorted(expected - got) == []  # the kernel dropped nothing userspace wanted
    assert sorted(got - expected) == []
    # the kernel filtered some itself (a coarser filter: most near misses pass it, for
    # userspace to drop)
    assert final["kernel_filtered"]["file"] >= 50 and final["userspace_filtered"] > 0
