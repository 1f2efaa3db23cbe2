"""The built-in persistence pack (config/persistence.toml), entry by entry, without a kernel.

Every entry of the pack needs paths that trigger exactly it (first match wins, so the detection's
name is checked) and near-miss paths that do not: the tables below are checked against the pack
itself, so an entry added without examples fails the suite. Homes are explicit, one of them
outside /home, as the passwd database may have them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import msgspec
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

from recgen import record

from randguard.core import records
from randguard.core.config import (
    FILE_OPERATIONS,
    Config,
    ConfigError,
    FileConfig,
    PersistenceDetection,
    load_config,
    parse_config,
)
from randguard.core.engine import RuleEngine
from randguard.core.events import FileAttrEvent, FileEvent, WallClock
from randguard.core.matcher import FileFilter, compile_kernel_filter, has_glob
from randguard.core.pipeline import Pipeline, PipelineState
from randguard.core.proctable import ProcessTable
from randguard.core.rules import PathRule, expand_homes
from randguard.core.ruleset import PACK_DIR, RuleSet, load_ruleset

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"
PACK_FILE = REPO_CONFIG / "persistence.toml"
HOMES = ["/root", "/home/alice", "/srv/bob"]
NO_CONFIG = Path("/nonexistent-rg-config-dir/config.toml")  # no rules.d beside it


def _raw_pack() -> list[PersistenceDetection]:
    with open(PACK_FILE, "rb") as f:
        raw = tomllib.load(f)
    return msgspec.convert(raw["detections"]["persistence"], list[PersistenceDetection])


PACK = _raw_pack()
NAMES = [d.name for d in PACK if not d.modes and not d.xattrs]  # on paths: examples below
VALUE_NAMES = [d.name for d in PACK if d.modes or d.xattrs]

# name -> paths that trigger exactly that entry (in addition to every literal path it lists)
TRIGGERS: dict[str, list[str]] = {
    "systemd_timer_modified": [
        "/etc/systemd/system/rg.timer",
        "/etc/systemd/system/timers.target.wants/rg.timer",
        "/usr/lib/systemd/user/rg.timer",
        "/srv/bob/.config/systemd/user/rg.timer",
        "/root/.local/share/systemd/user/rg.timer",
    ],
    "systemd_service_modified": [
        "/etc/systemd/system/rand-guard-demo.service",
        "/etc/systemd/system/multi-user.target.wants/rg.service",
        "/etc/systemd/system/rg.service.d/override.conf",
        "/etc/systemd/system/rg.timer.d/override.conf",
        "/run/systemd/system/rg.service",
        "/lib/systemd/system/rg.socket",
        "/usr/local/lib/systemd/system/rg.path",
        "/etc/systemd/user/rg.service",
        "/home/alice/.config/systemd/user/rg.service",
        "/srv/bob/.config/systemd/user/default.target.wants/rg.service",
        "/root/.local/share/systemd/user/rg.service",
    ],
    "systemd_generator_modified": [
        "/etc/systemd/system-generators/rg-gen",
        "/usr/lib/systemd/user-generators/rg-gen",
        "/usr/local/lib/systemd/system-generators/rg-gen",
        "/etc/systemd/system-environment-generators/rg-env",
        "/usr/lib/systemd/user-environment-generators/rg-env",
    ],
    "at_job_modified": [
        "/var/spool/cron/atjobs/a0000101a2b3c4",
        "/var/spool/atjobs/a0000101a2b3c4",
        "/etc/at.allow",
        "/etc/at.deny",
    ],
    "cron_modified": [
        "/etc/crontab",
        "/etc/cron.d/rg-job",
        "/etc/cron.hourly/rg",
        "/etc/cron.daily/rg",
        "/etc/cron.weekly/rg",
        "/etc/cron.monthly/rg",
        "/etc/cron.allow",
        "/var/spool/cron/crontabs/root",
        "/var/spool/cron/root",
    ],
    "anacron_modified": ["/etc/anacrontab", "/var/spool/anacron/cron.daily"],
    "sysv_init_modified": [
        "/etc/init.d/rg",
        "/etc/rc.local",
        "/etc/rc0.d/K01rg",
        "/etc/rc3.d/S01rg",
        "/etc/rc6.d/K01rg",
        "/etc/rcS.d/S01rg",
        "/etc/rc.d/init.d/rg",
        "/etc/rc.d/rc.local",
        "/etc/init/rg.conf",
        "/etc/inittab",
        "/etc/rc.common",
    ],
    "ssh_authorized_keys_modified": [
        "/root/.ssh/authorized_keys",
        "/home/alice/.ssh/authorized_keys",
        "/srv/bob/.ssh/authorized_keys",
        "/srv/bob/.ssh/authorized_keys2",
    ],
    "sshd_config_modified": ["/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d/rg.conf"],
    "ld_preload_modified": [
        "/etc/ld.so.preload",
        "/etc/ld.so.conf",
        "/etc/ld.so.conf.d/rg.conf",
    ],
    "account_modified": [
        "/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "/etc/subuid", "/etc/subgid",
    ],
    "shell_profile_modified": [
        "/etc/profile",
        "/etc/profile.d/rg.sh",
        "/etc/skel/.bashrc",
        "/etc/skel/.config/fish/config.fish",
        "/etc/environment",
        "/etc/bash_completion.d/rg",
        "/etc/zshenv",
        "/etc/mkshrc",
        "/etc/fish/conf.d/rg.fish",
        "/root/.shrc",
        "/home/alice/.mkshrc",
        "/home/alice/.config/fish/conf.d/rg.fish",
        "/home/alice/.pam_environment",
        "/etc/bash.bashrc",
        "/etc/zsh/zshrc",
        "/etc/fish/config.fish",
        "/root/.bashrc",
        "/home/alice/.profile",
        "/home/alice/.bash_logout",
        "/srv/bob/.zshrc",
        "/srv/bob/.zshenv",
        "/home/alice/.config/fish/config.fish",
    ],
    "sudoers_modified": ["/etc/sudoers", "/etc/sudoers.d/rg", "/etc/doas.conf"],
    "pam_modified": [
        "/etc/pam.d/sshd",
        "/etc/pam.d/common-auth",
        "/etc/pam.conf",
        "/etc/security/pam_env.conf",
        "/lib/x86_64-linux-gnu/security/pam_rg.so",
        "/usr/lib64/security/pam_rg.so",
    ],
    "kernel_module_config_modified": [
        "/etc/modules",
        "/etc/modules-load.d/rg.conf",
        "/etc/modprobe.d/rg.conf",
        "/usr/lib/modprobe.d/rg.conf",
        "/etc/modprobe.conf",
    ],
    "udev_rules_modified": [
        "/etc/udev/rules.d/99-rg.rules",
        "/usr/lib/udev/rules.d/99-rg.rules",
        "/run/udev/rules.d/99-rg.rules",
    ],
    "xdg_autostart_modified": [
        "/etc/xdg/autostart/rg.desktop",
        "/home/alice/.config/autostart/rg.desktop",
        "/srv/bob/.config/autostart-scripts/rg.sh",
        "/root/.kde4/Autostart/rg.sh",
    ],
    "motd_script_modified": ["/etc/update-motd.d/99-rg"],
    "apt_hook_modified": ["/etc/apt/apt.conf.d/99rg", "/etc/apt/apt.conf"],
    "network_manager_dispatcher_modified": [
        "/etc/NetworkManager/dispatcher.d/99-rg",
        "/etc/NetworkManager/dispatcher.d/pre-up.d/rg",
    ],
    "python_startup_modified": [
        "/usr/lib/python3/dist-packages/rg.pth",
        "/usr/lib/python3.11/site-packages/rg.pth",
        "/usr/local/lib/python3.11/dist-packages/rg.pth",
        # any site-packages: a user site, virtualenvs anywhere, /tmp included
        "/root/.local/lib/python3.11/site-packages/rg.pth",
        "/tmp/venv/lib/python3.11/site-packages/rg.pth",
        "/opt/app/.venv/lib64/python3.12/site-packages/rg.pth",
        "/etc/python3.11/sitecustomize.py",
        "/usr/lib/python3.11/usercustomize.py",
        # a file name anywhere, outside watched paths and under excluded ones too
        "/var/tmp/x/site-packages/sitecustomize.py",
        "/root/.local/lib/python3.11/site-packages/usercustomize.py",
        "/tmp/venv/lib/python3.11/site-packages/sitecustomize.py",
    ],
}

# name -> near misses: paths that look like the entry's but trigger no detection at all
NEAR_MISSES: dict[str, list[str]] = {
    "systemd_timer_modified": [
        "/etc/systemd/system.timer",
        "/var/tmp/rg.timer",
        "/etc/systemd/systemx/rg.timer",
    ],
    "systemd_service_modified": [
        "/etc/systemd/systemd.conf.d/x.conf",
        "/etc/systemd/system.conf",
        "/etc/systemd/journald.conf",
        "/etc/systemd/systemx/rg.service",
        "/home/mallory/.config/systemd/user/rg.service",  # not a home in the passwd database
        "/var/tmp/rg.service",
    ],
    "systemd_generator_modified": [
        "/etc/systemd/system-generatorsx/rg-gen",
        "/etc/systemd/system-generators.bak",
        "/usr/lib/systemd/systemd-logind",
    ],
    "at_job_modified": ["/var/spool/atjobs.bak/a01", "/etc/at.allow.bak", "/etc/at.denyx"],
    "cron_modified": [
        "/etc/crontab.bak",
        "/etc/crontabx",
        "/etc/cron.dx",
        "/etc/cron.dx/rg-job",
        "/etc/cron.d.bak",
        "/var/spool/cronx/root",
    ],
    "anacron_modified": ["/etc/anacrontab.bak", "/var/spool/anacronx/cron.daily"],
    "sysv_init_modified": [
        "/etc/rc7.d/S01rg",
        "/etc/rcs.d/S01rg",
        "/etc/rc.local.bak",
        "/etc/init.dx/rg",
        "/etc/initramfs.conf",
    ],
    "ssh_authorized_keys_modified": [
        "/home/alice/.ssh/authorized_keys.bak",
        "/root/.ssh/authorized_keys.tmp",
        "/srv/bob/.ssh/known_hosts",
        "/home/mallory/.ssh/authorized_keys",  # not a home in the passwd database
    ],
    "sshd_config_modified": ["/etc/ssh/sshd_config.bak", "/etc/ssh/ssh_host_rsa_key.pub"],
    "ld_preload_modified": [
        "/etc/ld.so.preload.d",
        "/etc/ld.so.preload.d/x",
        "/etc/ld.so.preload.bak",
        "/etc/ld.so.cache",
    ],
    "account_modified": [
        "/etc/passwd-", "/etc/passwd+", "/etc/passwd.lock", "/etc/shadow-", "/etc/group.bak",
        "/etc/subuid-", "/etc/passwdqc.conf",
    ],
    "shell_profile_modified": [
        "/etc/profile.bak",
        "/etc/profiles",
        "/etc/skeleton/.bashrc",
        "/etc/environment.bak",
        "/home/alice/.shrc.bak",
        "/home/alice/.bashrc.swp",
        "/home/alice/.bash_history",
    ],
    "sudoers_modified": ["/etc/sudoers.bak", "/etc/sudoers.dx/rg", "/etc/doas.conf.bak"],
    "pam_modified": ["/etc/pam.d.bak/sshd", "/etc/pam.confx", "/lib/x86_64-linux-gnu/libpam.so.0"],
    "kernel_module_config_modified": ["/etc/modules.bak", "/etc/modprobe.dx/rg.conf"],
    "udev_rules_modified": ["/etc/udev/rules.dx/99-rg.rules", "/etc/udev/hwdb.bin"],
    "xdg_autostart_modified": [
        "/home/alice/.config/autostartx/rg.desktop",
        "/etc/xdg/autostart.bak/rg.desktop",
    ],
    "motd_script_modified": ["/etc/motd", "/etc/update-motd.dx/99-rg"],
    "apt_hook_modified": ["/etc/apt/apt.conf.dx/99rg", "/etc/apt/apt.conf.bak"],
    "network_manager_dispatcher_modified": [
        "/etc/NetworkManager/NetworkManager.conf",
        "/etc/NetworkManager/dispatcher.dx/99-rg",
    ],
    "python_startup_modified": [
        "/usr/lib/python3/dist-packages/rg.pth.bak",
        "/usr/lib/python3/dist-packages/rg/nested.pth",
        "/tmp/venv/lib/python3.11/site-packages/rg/nested.pth",
        "/tmp/site-packagesx/rg.pth",
        "/tmp/rg.pth",
        "/usr/lib/python3/dist-packages/sitecustomize.py.bak",
        "/var/tmp/x/site-packages/xsitecustomize.py",
        "/var/tmp/x/site-packages/sitecustomize.pyc",
    ],
}

WRITE_OPS = tuple(FILE_OPERATIONS)  # file_open counts as a write when `write` is True


@pytest.fixture(scope="module")
def det() -> RuleEngine:
    return detections(PACK)


def detections(entries: list[PersistenceDetection], homes: list[str] = HOMES) -> RuleEngine:
    """The engine over these persistence detections alone."""
    return RuleEngine(RuleSet(entries, [], []), homes)


def first(det: RuleEngine, path: str, op: str = "file_write", write: bool = True) -> str | None:
    d = det.file_detection(op, path, write)
    return None if d is None else d.name


def entry(name: str) -> PersistenceDetection:
    (d,) = [d for d in PACK if d.name == name]
    return d


def ops_of(d: PersistenceDetection) -> tuple[str, ...]:
    return WRITE_OPS if "*" in d.operations else tuple(d.operations)


def listed_triggers(d: PersistenceDetection) -> list[str]:
    """A path for every literal path the entry lists (globs have hand-written examples): the
    path itself and a file below it, made to fit the entry's patterns when it has some."""
    out = []
    for p in expand_homes(d.paths, HOMES):
        if has_glob(p):
            continue
        if d.patterns:
            name = d.patterns[0].replace("*", "rg")
            assert "/" not in name and not has_glob(name), d.name
            out.append(f"{p}/{name}")
        else:
            out += [p, f"{p}/rg-file"]
    return out


def listed_near_misses(d: PersistenceDetection) -> list[str]:
    """Siblings of every literal path: same prefix, not the same directory."""
    return [f"{p}{s}" for p in expand_homes(d.paths, HOMES) if not has_glob(p)
            for s in (".bak", "x", "~")]


# --- the pack as a whole ---------------------------------------------------------------------


def test_every_pack_entry_has_examples() -> None:
    """A new entry without trigger and near-miss examples fails here."""
    assert sorted(TRIGGERS) == sorted(NAMES), "TRIGGERS must name exactly the pack's entries"
    assert sorted(NEAR_MISSES) == sorted(NAMES), "NEAR_MISSES must name exactly the entries"
    for name in NAMES:
        assert TRIGGERS[name] and NEAR_MISSES[name], name


def test_pack_is_on_by_default_and_loads_as_shipped() -> None:
    assert PACK_DIR == REPO_CONFIG
    rs = load_ruleset(parse_config(""), NO_CONFIG)
    assert rs.persistence == PACK  # every entry enabled, in file order
    assert len(set(NAMES)) == len(NAMES)


def test_pack_entries_are_well_formed() -> None:
    for d in PACK:
        assert d.enabled and (d.paths or d.patterns or d.modes or d.xattrs), d.name
        assert d.mitre and all(re.fullmatch(r"T\d{4}(\.\d{3})?", t) for t in d.mitre), d.name
        assert set(d.operations) <= {"*", *FILE_OPERATIONS}, d.name


def test_setid_bits_are_detected_on_any_chmod_path(det: RuleEngine) -> None:
    assert VALUE_NAMES == ["setid_bit_set", "file_capabilities_set"]
    for path in ("/var/tmp/x/bash", "/usr/bin/rg", "/etc/cron.d/rg", "/home/alice/sh"):
        for mode in (0o4755, 0o2755, 0o6711, 0o4000):
            d = det.file_detection("file_chmod", path, True, mode)
            assert d is not None and d.name == "setid_bit_set", (path, oct(mode))
            assert d.mitre == ["T1548.001"]
    # no setid bit, or not a chmod: the path entries decide as before (a failed chmod: see
    # test_failed_operations_never_trigger)
    assert det.file_detection("file_chmod", "/var/tmp/x/bash", True, 0o1777) is None
    assert det.file_detection("file_chown", "/var/tmp/x/bash", True, None) is None
    d = det.file_detection("file_chmod", "/etc/cron.d/rg", True, 0o644)
    assert d is not None and d.name == "cron_modified"


def test_file_capabilities_are_detected_on_any_setxattr_path(det: RuleEngine) -> None:
    for path in ("/var/tmp/x/python3", "/usr/bin/rg", "/home/alice/bin/tool"):
        d = det.file_detection("file_setxattr", path, True, None, "security.capability")
        assert d is not None and (d.name, d.mitre) == ("file_capabilities_set", ["T1548"])
    for xattr in ("user.x", "security.selinux", "security.capabilityx", None):
        assert det.file_detection("file_setxattr", "/var/tmp/x/python3", True, None,
                                  xattr) is None
    # a path entry still judges other attributes on its paths
    d = det.file_detection("file_setxattr", "/etc/cron.d/rg", True, None, "user.x")
    assert d is not None and d.name == "cron_modified"


def test_pack_covers_the_issues_techniques() -> None:
    techniques = {t for d in PACK for t in d.mitre}
    assert {
        "T1543.002", "T1053.006", "T1053.003", "T1053.002", "T1037.004", "T1098.004",
        "T1574.006", "T1546.004", "T1548.003", "T1556.003", "T1547.006",
    } <= techniques


# --- entry by entry --------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_entry_triggers_on_its_paths(det: RuleEngine, name: str) -> None:
    assert name in TRIGGERS, f"pack entry {name!r} has no trigger examples in TRIGGERS"
    d = entry(name)
    paths = TRIGGERS[name] + listed_triggers(d)
    for op in ops_of(d):
        for p in paths:
            got = det.file_detection(op, p, True)
            assert got is not None and got.name == name, (op, p, got and got.name)
            assert got.mitre == d.mitre


@pytest.mark.parametrize("name", NAMES)
def test_entry_near_misses(det: RuleEngine, name: str) -> None:
    assert name in NEAR_MISSES, f"pack entry {name!r} has no near misses in NEAR_MISSES"
    for p in NEAR_MISSES[name]:
        for op in WRITE_OPS:
            assert first(det, p, op) is None, (op, p)
    for p in listed_near_misses(entry(name)):
        assert first(det, p) != name, p


@pytest.mark.parametrize("name", NAMES)
def test_reading_never_triggers(det: RuleEngine, name: str) -> None:
    for p in TRIGGERS[name] + listed_triggers(entry(name)):
        assert first(det, p, "file_open", write=False) is None, p
        assert first(det, p, "file_open", write=True) == name, p


@pytest.mark.parametrize("name", NAMES)
def test_failed_operations_never_trigger(name: str) -> None:
    """Through the pipeline, which judges successful calls only (a failed chmod setting a
    setuid bit, a failed setxattr of file capabilities among them)."""
    pipe = default_pipeline()
    for p in TRIGGERS[name]:
        for op in WRITE_OPS:
            rec = file_rec(op, path=p.encode(), ret=-13, oflags=0o4755,
                           fflags=records.FF_WRITE | FORCED, name2=b"security.capability")
            (ev,) = pipe.feed([rec])  # an event (a FileAttrEvent too), no alert
            assert ev.ret == -13 and ev.detection_type is None, (op, p)


def test_examples_cover_every_home_kind(det: RuleEngine) -> None:
    """`~/` entries expand to every given home, also one outside /home."""
    for name in ("ssh_authorized_keys_modified", "shell_profile_modified",
                 "systemd_service_modified", "xdg_autostart_modified"):
        tilde = [p for p in entry(name).paths if p.startswith("~/")]
        assert tilde, name
        for home in HOMES:
            for p in tilde:
                assert first(det, home + p[1:]) == name, (home, p)


def test_no_path_of_an_entry_is_shadowed_by_an_earlier_one(det: RuleEngine) -> None:
    """First match wins: a literal path listed by an entry must reach that entry."""
    for d in PACK:
        for p in listed_triggers(d):
            assert first(det, p) == d.name, (d.name, p)


def test_expand_homes() -> None:
    assert expand_homes(["~/.bashrc", "/etc/profile"], ["/root", "/srv/bob/", "/"]) == [
        "/root/.bashrc", "/srv/bob/.bashrc", "/.bashrc", "/etc/profile",
    ]
    assert expand_homes(["~user/.bashrc"], ["/root"]) == ["~user/.bashrc"]  # only "~/"


def test_path_rule_needs_path_and_pattern() -> None:
    r = PathRule(["/etc/systemd/system"], ["*.timer"], HOMES)
    assert r.matches("/etc/systemd/system/a.timer")
    assert r.matches("/etc/systemd/system/timers.target.wants/a.timer")
    assert not r.matches("/etc/systemd/system/a.service")
    assert not r.matches("/var/tmp/a.timer")
    assert PathRule(["~/.ssh"], [], HOMES).matches("/srv/bob/.ssh/authorized_keys")


# --- through the pipeline: renames, reads, failures ------------------------------------------

OP = {v: k for k, v in records.OPS.items()}
ATTR_OPS = ("file_chmod", "file_chown", "file_truncate", "file_mkdir", "file_mknod",
            "file_setxattr", "file_utimes")


FORCED = records.FF_FORCED  # the kernel's mark on what it passes whatever the filter says


def file_rec(op: str, *, path: bytes | None = None, name: bytes | None = None,
             name2: bytes | None = None, ret: int = 0, fflags: int = 0, oflags: int = 0,
             syscall: str = "openat", pid: int = 4242, uid: int = 0, comm: bytes = b"sh",
             ts: int = 1_000_000, old: int | None = None) -> bytes:
    """A file record laid out as the kernel writes it (absolute names, no dir slots); `old`:
    the value before the call (FF_OLD)."""
    if old is not None:
        fflags |= records.FF_OLD
    return record(records.KIND_FILE, ts_ns=ts, pid=pid, uid=uid, gid=uid, ret=ret, flags=oflags,
                  ino=7, ppid=1, syscall=records.SYSCALLS.index(syscall), op=OP[op],
                  fflags=fflags,
                  fd=3 if op == "file_write" or (path and op in ATTR_OPS) else -100, comm=comm,
                  path=path, name=name, name2=name2, old=old or 0)


def default_pipeline(file_cfg: FileConfig | None = None) -> Pipeline:
    """What runtime.make_pipeline builds for the default config, with explicit homes."""
    rs = load_ruleset(Config(), NO_CONFIG)
    rules = RuleEngine(rs, HOMES)
    writes, reads = rules.watched()
    ff = FileFilter.from_config(file_cfg or FileConfig(), force=writes, force_read=reads)
    return Pipeline(ff, PipelineState(ProcessTable(64), WallClock(0)), "test-host",
                    rules=rules)


def file_events(pipe: Pipeline, raws: list[bytes]) -> list[FileEvent]:
    return [e for e in pipe.feed(raws) if type(e) is FileEvent]


def test_rename_target_triggers_and_source_does_not() -> None:
    pipe = default_pipeline()
    unit = b"/etc/systemd/system/rg-moved.service"
    into, out_of = file_events(pipe, [
        # staged in an excluded directory, moved into place (mv, editors, sed -i, dpkg)
        file_rec("file_rename", name=b"/tmp/rg-stage.service", name2=unit, syscall="renameat2"),
        # moving a unit away puts nothing new in a persistence location
        file_rec("file_rename", name=unit, name2=b"/var/tmp/rg-old.service", syscall="rename"),
    ])
    assert into.resolved_path == unit.decode() and into.old_path == "/tmp/rg-stage.service"
    assert (into.alert, into.detection_type, into.mitre) == (
        True, "systemd_service_modified", ["T1543.002"])
    assert out_of.old_path == unit.decode()
    assert (out_of.alert, out_of.detection_type, out_of.mitre) == (False, None, None)


def test_rename_over_a_watched_name_from_a_temp_file_in_place() -> None:
    """sed -i / visudo style: a temp file beside the target renamed over it."""
    pipe = default_pipeline()
    (ev,) = file_events(pipe, [
        file_rec("file_rename", name=b"/etc/sudoers.tmp", name2=b"/etc/sudoers"),
    ])
    assert (ev.alert, ev.detection_type) == (True, "sudoers_modified")


def test_link_and_symlink_targets_trigger() -> None:
    pipe = default_pipeline()
    sym, hard = file_events(pipe, [
        file_rec("file_link", name=b"/var/tmp/rg.service",
                 name2=b"/etc/systemd/system/multi-user.target.wants/rg.service",
                 syscall="symlinkat"),
        file_rec("file_link", name=b"/var/tmp/rg-job", name2=b"/etc/cron.d/rg-job",
                 syscall="linkat"),
    ])
    assert (sym.alert, sym.detection_type, sym.old_path) == (
        True, "systemd_service_modified", "/var/tmp/rg.service")
    assert (hard.alert, hard.detection_type) == (True, "cron_modified")


def test_reading_a_unit_is_no_detection_even_when_reported() -> None:
    unit = b"/etc/systemd/system/rg-read.service"
    # with the default [file] section a read of a unit is not even an event
    assert file_events(default_pipeline(), [file_rec("file_open", path=unit, ret=3)]) == []
    # when reads there are reported, the read is still no detection; a writable open is
    pipe = default_pipeline(FileConfig(read_paths=["/etc/systemd"]))
    read, wr, created = file_events(pipe, [
        file_rec("file_open", path=unit, ret=3),
        file_rec("file_open", path=unit, ret=3, oflags=2, fflags=records.FF_WRITE),
        file_rec("file_open", path=unit, ret=3, oflags=0o101, fflags=records.FF_CREATED),
    ])
    assert read.access == "read" and not read.alert and read.detection_type is None
    assert wr.access == "read_write" and wr.detection_type == "systemd_service_modified"
    assert created.detection_type == "systemd_service_modified"


def test_failed_operations_are_events_without_detection() -> None:
    pipe = default_pipeline()
    evs = file_events(pipe, [
        file_rec("file_open", name=b"/etc/cron.d/rg-x", ret=-13, oflags=0o1101,
                 fflags=records.FF_WRITE, uid=65534),
        file_rec("file_rename", name=b"/var/tmp/x", name2=b"/etc/ld.so.preload", ret=-1),
        file_rec("file_unlink", name=b"/etc/systemd/system/rg.service", ret=-2,
                 syscall="unlinkat"),
    ])
    assert [e.error for e in evs] == ["EACCES", "EPERM", "ENOENT"]
    assert all(not e.alert and e.detection_type is None and e.mitre is None for e in evs)


def test_attribute_changes_carry_what_was_set_and_are_judged_like_writes() -> None:
    pipe = default_pipeline(FileConfig(watch_paths=["/srv/app"], exclude_paths=["/srv/app/log"]))
    out = pipe.feed([
        file_rec("file_chmod", name=b"/etc/cron.d/rg-x", oflags=0o755, syscall="fchmodat"),
        file_rec("file_chown", path=b"/srv/app/conf", oflags=1000 << 32 | 0xFFFFFFFF,
                 syscall="fchown"),
        file_rec("file_truncate", name=b"/srv/app/log/big", oflags=0, syscall="truncate"),
        # the kernel passes a setuid or setgid bit whatever the filter says, and says so
        file_rec("file_chmod", name=b"/var/tmp/rootbash", oflags=0o4755, syscall="chmod",
                 fflags=FORCED),
        file_rec("file_chmod", name=b"/srv/app/log/sh", oflags=0o2755, syscall="chmod",
                 fflags=FORCED),
        file_rec("file_chmod", name=b"/var/tmp/plain", oflags=0o755, syscall="chmod"),
        file_rec("file_chmod", name=b"/var/tmp/rootbash2", oflags=0o4755, ret=-1, fflags=FORCED),
    ])
    evs = [e for e in out if e.event_type != "alert"]
    assert all(type(e) is FileAttrEvent for e in evs)
    got = [(e.event_type, e.resolved_path, e.mode, e.owner_uid, e.owner_gid, e.length,
            e.detection_type) for e in evs]
    assert got == [
        ("file_chmod", "/etc/cron.d/rg-x", 0o755, None, None, None, "cron_modified"),
        ("file_chown", "/srv/app/conf", None, 1000, None, None, None),
        # a setuid or setgid bit is reported wherever it is, excluded paths included
        ("file_chmod", "/var/tmp/rootbash", 0o4755, None, None, None, "setid_bit_set"),
        ("file_chmod", "/srv/app/log/sh", 0o2755, None, None, None, "setid_bit_set"),
        ("file_chmod", "/var/tmp/rootbash2", 0o4755, None, None, None, None),  # failed
    ]
    assert [(e.flags, e.access, e.created) for e in evs] == [(None, None, None)] * 5
    assert evs[1].fd == 3 and evs[0].fd is None  # on an fd, on a name
    assert [a.rule_id for a in out if a.event_type == "alert"] == ["FILE-CRON-001"]
    assert pipe.state.filtered == 2


def test_new_directories_nodes_and_attributes_are_judged_like_writes() -> None:
    pipe = default_pipeline(FileConfig(watch_paths=["/srv/app"]))
    dev = os.makedev(1, 1) << 32  # /dev/mem's numbers
    out = pipe.feed([
        file_rec("file_mkdir", name=b"/etc/systemd/system/rg.service.d", oflags=0o700,
                 syscall="mkdir"),
        file_rec("file_mknod", name=b"/srv/app/mem", oflags=dev | 0o020600, syscall="mknodat"),
        file_rec("file_mknod", name=b"/srv/app/fifo", oflags=0o010644, syscall="mknod"),
        file_rec("file_setxattr", name=b"/var/tmp/py", name2=b"security.capability",
                 syscall="setxattr", fflags=FORCED),
        file_rec("file_setxattr", path=b"/srv/app/conf", name2=b"user.note",
                 syscall="fsetxattr"),
        file_rec("file_setxattr", name=b"/var/tmp/py", name2=b"user.note", syscall="setxattr"),
        file_rec("file_mkdir", name=b"/var/tmp/d", oflags=0o755, syscall="mkdir"),
    ])
    evs = [e for e in out if e.event_type != "alert"]
    got = [(e.event_type, e.resolved_path, e.mode, e.device, e.xattr_name, e.detection_type)
           for e in evs]
    assert got == [
        ("file_mkdir", "/etc/systemd/system/rg.service.d", 0o700, None, None,
         "systemd_service_modified"),
        ("file_mknod", "/srv/app/mem", 0o020600, "1:1", None, None),
        ("file_mknod", "/srv/app/fifo", 0o010644, None, None, None),
        # file capabilities are reported wherever they are set
        ("file_setxattr", "/var/tmp/py", None, None, "security.capability",
         "file_capabilities_set"),
        ("file_setxattr", "/srv/app/conf", None, None, "user.note", None),
    ]
    assert pipe.state.filtered == 2


def test_a_mount_or_a_new_directory_above_watched_paths_is_reported() -> None:
    """mount over /etc (above /etc/cron.d and the unit directories): reported, annotated and
    alerted on; over /data (above the watched /data/app): reported; over /var/tmp (nothing
    watched below): not."""
    pipe = default_pipeline(FileConfig(watch_paths=["/data/app"]))
    out = pipe.feed([
        file_rec("file_mount", name=b"tmpfs", path=b"/etc", syscall="mount"),
        file_rec("file_mount", name=b"tmpfs", path=b"/data", syscall="mount"),
        file_rec("file_mount", name=b"tmpfs", path=b"/var/tmp/x", syscall="mount"),
        file_rec("file_umount", name=b"/data", syscall="umount2"),
        file_rec("file_umount", name=b"/var/tmp/x", syscall="umount2"),
        # a new directory above persistence files (a new ~/.ssh) will hold them
        file_rec("file_mkdir", name=b"/home/alice/.ssh", oflags=0o700, syscall="mkdir"),
        file_rec("file_mkdir", name=b"/var/tmp/x", oflags=0o700, syscall="mkdir"),
    ])
    evs = [e for e in out if e.event_type != "alert"]
    assert [(e.event_type, e.resolved_path) for e in evs] == [
        ("file_mount", "/etc"), ("file_mount", "/data"), ("file_umount", "/data"),
        ("file_mkdir", "/home/alice/.ssh")]
    assert evs[3].detection_type == "ssh_authorized_keys_modified"
    assert evs[0].alert and evs[0].detection_type is not None
    assert not evs[1].alert and not evs[2].alert
    assert {a.rule_id for a in out if a.event_type == "alert"} == {"FILE-CRON-001",
                                                                   "FILE-SYSTEMD-001"}
    assert pipe.state.filtered == 3


def test_timestamps_set_back_on_a_persistence_location_are_timestomping() -> None:
    pipe = default_pipeline(FileConfig(watch_paths=["/srv/app"]))
    now = 1_000_000  # the records' CLOCK_MONOTONIC ns; the pipeline's clock: offset 0
    back = now - 3600 * 10**9  # an hour before the call
    out = pipe.feed([
        file_rec("file_utimes", name=b"/etc/cron.d/rg", oflags=back % (1 << 64),
                 syscall="utimensat", ts=now),
        file_rec("file_utimes", name=b"/etc/cron.d/rg", oflags=records.MTIME_NOW,
                 syscall="utimensat", ts=now),
        file_rec("file_utimes", name=b"/srv/app/x", oflags=back % (1 << 64), syscall="utimes",
                 ts=now),
        file_rec("file_utimes", name=b"/srv/app/y", oflags=records.MTIME_KEPT,
                 syscall="utimensat", ts=now),
    ])
    evs = [e for e in out if e.event_type != "alert"]
    assert [(e.resolved_path, e.mtime_ns, e.detection_type, e.mitre) for e in evs] == [
        ("/etc/cron.d/rg", back, "timestamps_set_back", ["T1070.006", "T1053.003"]),
        ("/etc/cron.d/rg", None, "cron_modified", ["T1053.003"]),
        # not a persistence location: reported (watched), no detection
        ("/srv/app/x", back, None, None),
        ("/srv/app/y", None, None, None),
    ]


def test_persistence_outside_watch_paths_is_still_reported() -> None:
    """The pack's paths pass whatever the [file] watch and exclude lists say."""
    pipe = default_pipeline(FileConfig(watch_paths=[], watch_patterns=[], exclude_paths=["/"]))
    (ev,) = file_events(pipe, [file_rec("file_write", path=b"/srv/bob/.ssh/authorized_keys",
                                        ret=10, syscall="write")])
    assert ev.detection_type == "ssh_authorized_keys_modified"
    assert file_events(pipe, [file_rec("file_write", path=b"/srv/bob/notes", ret=1,
                                       syscall="write")]) == []


# --- overriding and disabling through the config ---------------------------------------------


def ruleset_for(tmp_path: Path, text: str) -> RuleSet:
    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text(text)
    cfg = load_config(cfg_path)
    return load_ruleset(cfg, cfg_path)


def test_override_and_disable_entries_by_name(tmp_path: Path) -> None:
    rs = ruleset_for(tmp_path, """
[[detections.persistence]]
name = "cron_modified"
paths = ["/etc/crontab"]
mitre = ["T1053.003"]

[[detections.persistence]]
name = "sudoers_modified"
enabled = false

[[detections.persistence]]
name = "rg_custom_modified"
paths = ["/opt/rg-app/hooks"]
operations = ["file_write", "file_rename"]
mitre = ["T1546"]
""")
    names = [d.name for d in rs.persistence]
    assert "sudoers_modified" not in names
    # the override keeps the shipped entry's place (first match wins); new entries come last
    assert names == [d.name for d in PACK if d.name != "sudoers_modified"] + [
        "rg_custom_modified"]
    det = detections(rs.persistence)
    assert first(det, "/etc/crontab") == "cron_modified"
    assert first(det, "/etc/cron.d/rg-job") is None
    assert first(det, "/etc/sudoers.d/rg") is None and first(det, "/etc/sudoers") is None
    assert first(det, "/opt/rg-app/hooks/pre") == "rg_custom_modified"
    assert first(det, "/opt/rg-app/hooks/pre", "file_unlink") is None
    assert first(det, "/opt/rg-app/hooks/pre", "file_open") is None
    # everything else is as shipped
    assert first(det, "/etc/systemd/system/rg.service") == "systemd_service_modified"


def test_parse_config_override_matches_load_config(tmp_path: Path) -> None:
    text = '[[detections.persistence]]\nname = "ld_preload_modified"\nenabled = false\n'
    rs = load_ruleset(parse_config(text, "c.toml"), NO_CONFIG)
    assert rs == ruleset_for(tmp_path, text)
    assert "ld_preload_modified" not in [d.name for d in rs.persistence]
    assert first(detections(rs.persistence), "/etc/ld.so.preload") is None


def test_builtin_false_drops_the_pack(tmp_path: Path) -> None:
    rs = ruleset_for(tmp_path, "[detections]\nbuiltin = false\n")
    assert rs.persistence == [] and rs.network == []
    assert [r.id for r in rs.rules] == [r.id for r in load_ruleset(Config(), NO_CONFIG).rules]
    det = detections(rs.persistence)
    for name in NAMES:
        for p in TRIGGERS[name]:
            assert first(det, p) is None, p
    # the config's own entries stay
    rs = ruleset_for(tmp_path, """
[detections]
builtin = false
[[detections.persistence]]
name = "only_mine"
paths = ["/etc/crontab"]
""")
    assert [d.name for d in rs.persistence] == ["only_mine"]


def test_pack_file_errors_name_the_pack(tmp_path: Path) -> None:
    (tmp_path / "persistence.toml").write_text(
        '[[detections.persistence]]\nname = "bad"\npaths = ["/etc/x"]\noperations = ["wirte"]\n')
    (tmp_path / "builtin-rules.toml").write_text("")
    with pytest.raises(ConfigError) as e:
        load_ruleset(Config(), NO_CONFIG, pack_dir=tmp_path)
    assert str(e.value).startswith(f"{tmp_path / 'persistence.toml'}: "
                                   "detections.persistence[0] (bad).operations[0]: "
                                   "unknown operation 'wirte'")


# --- bugs found by this suite, now fixed: regressions ---------------------------------------


def test_no_homes_does_not_make_home_entries_match_everything() -> None:
    det = detections(PACK, [])
    assert first(det, "/etc/ld.so.preload") == "ld_preload_modified"
    assert first(det, "/etc/pam.d/sshd") == "pam_modified"


def test_kernel_filter_compiles_with_many_homes() -> None:
    (paths, patterns), _ = detections(PACK, [f"/home/user{i:03d}" for i in range(100)]).watched()
    ff = FileFilter.from_config(FileConfig(), force=(paths, patterns))
    kf = compile_kernel_filter(ff)
    assert len(kf.trie) > 100 * 29  # every home's paths are in it


def test_pack_paths_pass_the_kernel_filter() -> None:
    (paths, patterns), _ = detections(PACK).watched()
    # every pack path passes the kernel filter for writes, even with /srv excluded
    excl = compile_kernel_filter(FileFilter.from_config(
        FileConfig(exclude_paths=["/srv", "/tmp"]), force=(paths, patterns)))
    for name in NAMES:
        for p in TRIGGERS[name]:
            assert excl.passes(p.encode(), True), p
    # reading a unit does not even leave the kernel with the default lists
    kf = compile_kernel_filter(FileFilter.from_config(FileConfig(), force=(paths, patterns)))
    assert not kf.passes(b"/etc/systemd/system/rg.service", False)
    assert kf.passes(b"/etc/systemd/system/rg.service", True)


def test_shipped_pack_and_rules_fit_the_kernel_filter_exactly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The default config with the shipped pack and rules needs no coarser kernel form: every
    name pattern has its own suffix slot (the file names `/sitecustomize.py` and
    `/usercustomize.py` among them), nothing sets pass_all, nothing is logged."""
    rs = load_ruleset(parse_config(""), NO_CONFIG)
    det = RuleEngine(rs, HOMES)
    writes, reads = det.watched()
    ff = FileFilter.from_config(FileConfig(), force=writes, force_read=reads)
    with caplog.at_level("WARNING", logger="randguard.matcher"):
        kf = compile_kernel_filter(ff)
    assert (kf.pass_all, kf.widened, caplog.records) == (0, (), [])
    sfx = dict(kf.suffixes)
    assert sfx[b"/sitecustomize.py"] & 1 and sfx[b"/usercustomize.py"] & 1
    for p in ("/var/tmp/x/site-packages/sitecustomize.py", "/tmp/u/usercustomize.py"):
        assert kf.passes(p.encode(), True) and det.file_detection("file_open", p, True), p
    assert not kf.passes(b"/var/tmp/x/site-packages/xsitecustomize.py", True)


def test_a_change_to_etc_passwd_is_noted_for_the_homes() -> None:
    """The shell re-reads the homes after a successful change to /etc/passwd (a rename over it,
    a write), not after a read, an open or a failure."""
    for rec, noted in (
        (file_rec("file_open", path=b"/etc/passwd", oflags=os.O_WRONLY), False),
        (file_rec("file_rename", path=b"/etc/passwd", name=b"/etc/passwd+", name2=b"/etc/passwd",
                  syscall="rename", ret=-13), False),
        (file_rec("file_write", path=b"/etc/passwdx", syscall="write"), False),
        (file_rec("file_rename", path=b"/etc/passwd", name=b"/etc/passwd+", name2=b"/etc/passwd",
                  syscall="rename"), True),
        (file_rec("file_write", path=b"/etc/passwd", syscall="write"), True),
    ):
        pipe = default_pipeline()
        pipe.feed([rec])
        assert pipe.state.passwd_changed is noted, rec
