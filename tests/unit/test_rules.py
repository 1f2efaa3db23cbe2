"""The `[[rules]]` engine, its config errors, rules.d and built-in overrides, and alert records
in the output stream (right after their source, `source_seq`, gap-free `seq`). No kernel."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

from recgen import record

from randguard.core import records
from randguard.core.config import Config, ConfigError, FileConfig, Rule, load_config, parse_config
from randguard.core.engine import RuleEngine
from randguard.core.events import Alert, Event, FileEvent, ProcessStart, WallClock
from randguard.core.matcher import FileFilter
from randguard.core.pipeline import Pipeline, PipelineState
from randguard.core.proctable import ProcessTable
from randguard.core.rules import CompiledRule, compile_rule
from randguard.core.ruleset import RuleSet, load_ruleset
from randguard.process import recording
from randguard.process.output import Output

HOMES = ["/root", "/home/alice", "/srv/bob"]
NO_CONFIG = Path("/nonexistent-rg-config-dir/config.toml")
DATA = Path(__file__).resolve().parents[1] / "data"

# the shipped rules that are on, in file order (read from the data: more may be added)
with open(Path(__file__).resolve().parents[2] / "config" / "builtin-rules.toml", "rb") as _f:
    BUILTIN_IDS = [r["id"] for r in tomllib.load(_f)["rules"] if r.get("enabled", True)]


def rule(type: str = "file", id: str = "R-1", **kw: object) -> Rule:
    return Rule(id=id, name=f"rule {id}", type=type, **kw)


def engine(rules: list[Rule]) -> RuleEngine:
    """The engine over these rules alone (no detections)."""
    return RuleEngine(RuleSet([], [], rules), HOMES)


def compiled(type: str = "file", **kw: object) -> CompiledRule:
    return compile_rule(rule(type, **kw), HOMES)


# --- process rules ---------------------------------------------------------------------------


def test_process_names_match_comm_or_exe_basename() -> None:
    c = compiled("process", process_names=["bash", "nc"])
    assert c.process("bash", "/usr/bin/bash", "sshd", "/usr/sbin/sshd")
    assert c.process("bash", None, "x", None)  # the name alone
    assert c.process("x", "/usr/bin/bash", "y", None)  # comm renamed, the image still is bash
    assert c.process("nc.openbsd", "/usr/bin/nc", None, None)
    assert not c.process("bas", "/usr/bin/bashx", "bash", "/usr/bin/bash")  # parent is not it
    assert not c.process("sh", "/usr/bin/dash", None, None)
    assert not c.process("x", "/usr/bin/bash/", None, None)  # basename is "", not bash


def test_parent_names_match_parent_comm_or_parent_exe_basename() -> None:
    c = compiled("process", parent_names=["nginx"])
    assert c.process("sh", "/usr/bin/dash", "nginx", None)
    assert c.process("sh", "/usr/bin/dash", "nginx: worker", "/usr/sbin/nginx")
    assert not c.process("nginx", "/usr/sbin/nginx", "systemd", "/usr/lib/systemd/systemd")
    assert not c.process("sh", "/usr/bin/dash", None, None)


def test_exe_paths_are_directory_aware_and_globs() -> None:
    c = compiled("process", exe_paths=["/tmp", "/dev/shm/*", "/home/*/bin/x"])
    assert c.process("a", "/tmp/a", None, None)
    assert c.process("a", "/tmp/deep/a", None, None)
    assert c.process("a", "/dev/shm/a", None, None)
    assert c.process("a", "/home/alice/bin/x", None, None)
    assert not c.process("a", "/tmpx/a", None, None)
    assert not c.process("a", "/home/alice/bin/y", None, None)
    assert not c.process("a", None, None, None)  # no image known: no match


def test_process_fields_are_anded_entries_ored() -> None:
    c = compiled("process", process_names=["sh", "bash"], parent_names=["nginx", "httpd"],
                 exe_paths=["/usr/bin"])
    assert c.process("sh", "/usr/bin/sh", "httpd", None)
    assert c.process("bash", "/usr/bin/bash", "nginx", None)
    assert not c.process("sh", "/opt/sh", "nginx", None)  # exe_paths fails
    assert not c.process("sh", "/usr/bin/sh", "cron", None)  # parent fails
    assert not c.process("python3", "/usr/bin/python3", "nginx", None)  # name fails


# --- file rules ------------------------------------------------------------------------------


def test_file_paths_and_patterns_must_both_match() -> None:
    c = compiled(paths=["/etc/systemd/system"], patterns=["*.service"])
    assert c.file("file_write", "/etc/systemd/system/a.service", "sh", None)
    assert c.file("file_write", "/etc/systemd/system/x.target.wants/a.service", "sh", None)
    assert not c.file("file_write", "/etc/systemd/system/a.timer", "sh", None)
    assert not c.file("file_write", "/var/tmp/a.service", "sh", None)
    assert not c.file("file_write", None, "sh", None)
    only_pattern = compiled(patterns=["authorized_keys", "/etc/cron.*/*"])
    assert only_pattern.file("file_write", "/anywhere/authorized_keys", "sh", None)
    assert only_pattern.file("file_write", "/etc/cron.daily/x", "sh", None)
    assert not only_pattern.file("file_write", "/etc/cron.daily/x/y", "sh", None)
    only_path = compiled(paths=["/etc/cron.d", "~/.ssh"])
    assert only_path.file("file_unlink", "/etc/cron.d", "rm", None)
    assert only_path.file("file_unlink", "/srv/bob/.ssh/id_rsa", "rm", None)
    assert not only_path.file("file_unlink", "/etc/cron.dx", "rm", None)
    assert not only_path.file("file_unlink", "/home/mallory/.ssh/x", "rm", None)


def test_file_operations_named_star_and_default() -> None:
    some = compiled(paths=["/etc"], operations=["file_write", "file_rename"])
    star = compiled(paths=["/etc"], operations=["*"])
    default = compiled(paths=["/etc"])
    for op in ("file_open", "file_write", "file_rename", "file_unlink", "file_link"):
        assert some.file(op, "/etc/x", "sh", None) is (op in ("file_write", "file_rename"))
        assert star.file(op, "/etc/x", "sh", None)
        assert default.file(op, "/etc/x", "sh", None)


def test_file_open_write_matches_writing_and_creating_opens_only() -> None:
    c = compiled(paths=["/etc/systemd/system"], operations=["file_open_write", "file_write"])
    unit = "/etc/systemd/system/a.service"
    assert c.file("file_open", unit, "cp", None, True)  # created or opened for writing
    assert not c.file("file_open", unit, "cat", None, False)  # a read
    assert c.file("file_write", unit, "sh", None)
    assert not c.file("file_unlink", unit, "rm", None)
    reads = compiled(paths=["/etc/shadow"], operations=["file_open"])  # every open, reads too
    assert reads.file("file_open", "/etc/shadow", "cat", None, False)
    assert reads.file("file_open", "/etc/shadow", "sh", None, True)


def test_file_rule_process_names() -> None:
    c = compiled(paths=["/etc"], process_names=["curl", "wget"])
    assert c.file("file_write", "/etc/x", "curl", "/usr/bin/curl")
    assert c.file("file_write", "/etc/x", "x", "/usr/bin/wget")
    assert not c.file("file_write", "/etc/x", "sh", "/usr/bin/dash")
    assert not c.file("file_write", "/var/x", "curl", "/usr/bin/curl")


def test_network_rule_fields() -> None:
    c = compiled("network", direction="outbound", ports=[4444, 1337],
                 addresses=["10.0.0.0/8", "2001:db8::/32"], process_names=["nc"])
    assert c.network("outbound", 4444, "10.1.2.3", "nc", None)
    assert c.network("outbound", 1337, "2001:db8::1", "x", "/usr/bin/nc")
    assert not c.network("inbound", 4444, "10.1.2.3", "nc", None)
    assert not c.network("outbound", 80, "10.1.2.3", "nc", None)
    assert not c.network("outbound", 4444, "192.168.1.1", "nc", None)
    assert not c.network("outbound", 4444, None, "nc", None)
    assert not c.network("outbound", 4444, "not-an-ip", "nc", None)
    assert not c.network("outbound", 4444, "10.1.2.3", "sh", None)


def test_engine_keeps_enabled_rules_by_type_in_order() -> None:
    rs = [rule("file", "F-1", paths=["/etc"]), rule("process", "P-1", process_names=["a"]),
          rule("file", "F-2", paths=["/x"], enabled=False), rule("network", "N-1", ports=[1]),
          rule("file", "F-3", patterns=["*.so"])]
    e = engine(rs)
    assert [c.rule.id for c in e.file_rules] == ["F-1", "F-3"]
    assert [c.rule.id for c in e.process_rules] == ["P-1"]
    assert [c.rule.id for c in e.network_rules] == ["N-1"]


def test_engine_watched_splits_writes_and_reads() -> None:
    e = engine([
        rule("file", "W", paths=["/opt/w", "~/.w"], operations=["file_write"]),
        rule("file", "R", paths=["/opt/r"], operations=["file_open"]),
        rule("file", "S", patterns=["*.so"], operations=["*"]),
        rule("file", "B", paths=["/opt/b"], patterns=["*.b"]),  # the path stands for it
    ])
    (wp, wpat), (rp, rpat) = e.watched()
    # a file_open rule also sees writable opens: its paths pass for writes too
    assert wp == ["/opt/w", "/root/.w", "/home/alice/.w", "/srv/bob/.w", "/opt/r", "/opt/b"]
    assert wpat == ["*.so"]
    assert rp == ["/opt/r", "/opt/b"] and rpat == ["*.so"]


# --- config errors name the rule and the field -----------------------------------------------


def config_error(text: str) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(text, "c.toml")
    return str(e.value)


OK_RULES = """
[[rules]]
id = "P-1"
name = "p"
type = "process"
process_names = ["a"]

[[rules]]
id = "F-1"
name = "f"
type = "file"
paths = ["/etc"]

[[rules]]
id = "N-1"
name = "n"
type = "network"
ports = [22]
"""


@pytest.mark.parametrize(("body", "expected"), [
    ('type = "file"\npaths = ["/etc"]\noperations = ["file_write", "wirte"]',
     "c.toml: rules[3] (id FILE-9).operations[1]: unknown operation 'wirte' (expected one of: "
     "*, file_open, file_write, file_rename, file_unlink, file_link, file_chmod, file_chown, "
     "file_truncate, file_mkdir, file_mknod, file_setxattr, file_utimes, file_mount, "
     "file_umount, io_uring_setup, file_removexattr, file_open_write, persistence_change)"),
    ('type = "fiel"\npaths = ["/etc"]',
     "c.toml: rules[3] (id FILE-9).type: unknown rule type 'fiel' "
     "(expected one of: process, file, network)"),
    ('type = "file"\npaths = ["/etc"]\nports = [22]',
     "c.toml: rules[3] (id FILE-9).ports: not a field of a file rule "
     "(paths, patterns, operations, process_names)"),
    ('type = "file"\npaths = ["/etc"]\ndirection = "outbound"',
     "c.toml: rules[3] (id FILE-9).direction: not a field of a file rule "
     "(paths, patterns, operations, process_names)"),
    ('type = "process"\nprocess_names = ["sh"]\npaths = ["/etc"]',
     "c.toml: rules[3] (id FILE-9).paths: not a field of a process rule "
     "(process_names, parent_names, exe_paths)"),
    ('type = "network"\naddresses = ["10.0.0.0/8", "10.0.0.0/33"]',
     "c.toml: rules[3] (id FILE-9).addresses[1]: not an address or CIDR network: '10.0.0.0/33'"),
    ('type = "network"\naddresses = ["example.com"]',
     "c.toml: rules[3] (id FILE-9).addresses[0]: not an address or CIDR network: 'example.com'"),
    ('type = "network"\nports = [22, 70000]',
     "c.toml: rules[3] (id FILE-9).ports[1]: must be between 1 and 65535, got 70000"),
    ('type = "network"\nports = [0]',
     "c.toml: rules[3] (id FILE-9).ports[0]: must be between 1 and 65535, got 0"),
    ('type = "network"\ndirection = "sideways"',
     "c.toml: rules[3] (id FILE-9).direction: unknown direction 'sideways' "
     "(expected one of: outbound, inbound, local)"),
    ('type = "file"\npaths = ["etc/cron.d"]',
     "c.toml: rules[3] (id FILE-9).paths[0]: must be an absolute path or start with ~/, "
     "got 'etc/cron.d'"),
    ('type = "file"\npaths = ["/etc"]\nseverity = "urgent"',
     "c.toml: rules[3] (id FILE-9).severity: unknown severity 'urgent' "
     "(expected one of: low, medium, high, critical)"),
    ('type = "file"\npaths = ["/etc"]\naction = "kill"',
     "c.toml: rules[3] (id FILE-9).action: unknown action 'kill' (expected one of: alert)"),
    ('type = "file"\npaths = ["/etc"]\nmitre = ["T15"]',
     "c.toml: rules[3] (id FILE-9).mitre[0]: not an ATT&CK technique id (like T1543.002): "
     "'T15'"),
    ('type = "file"',
     "c.toml: rules[3] (id FILE-9): matches everything: give at least one of paths, patterns, "
     "operations, process_names"),
    ('type = "file"\npaths = ["/etc"]\npath = "/x"',
     "c.toml: rules[3] (id FILE-9).path: unknown key"),
])
def test_rule_errors_name_rule_and_field(body: str, expected: str) -> None:
    text = OK_RULES + f'\n[[rules]]\nid = "FILE-9"\nname = "bad"\n{body}\n'
    assert config_error(text) == expected


def test_enabled_rule_needs_a_name() -> None:
    text = OK_RULES + '\n[[rules]]\nid = "FILE-9"\ntype = "file"\npaths = ["/etc"]\n'
    assert config_error(text) == (
        "c.toml: rules[3] (id FILE-9).name: required: a name for the alerts")


def test_enabled_rule_needs_a_type() -> None:
    text = OK_RULES + '\n[[rules]]\nid = "FILE-9"\nname = "x"\npaths = ["/etc"]\n'
    assert config_error(text).startswith("c.toml: rules[3] (id FILE-9).type: ")


def test_duplicate_rule_id_in_one_file() -> None:
    text = OK_RULES + '\n[[rules]]\nid = "F-1"\nname = "again"\ntype = "file"\npaths = ["/x"]\n'
    assert config_error(text) == (
        "c.toml: rules[3] (id F-1): duplicate rule id 'F-1' (also rules[1])")


def test_good_rules_load() -> None:
    cfg = parse_config(OK_RULES, "c.toml")
    assert [r.id for r in cfg.rules] == ["P-1", "F-1", "N-1"]
    assert cfg.rules[0].severity == "medium" and cfg.rules[0].action == "alert"


# --- rules.d, built-in overrides -------------------------------------------------------------


def write_rule(id: str, paths: str = '["/etc/x"]', extra: str = "") -> str:
    return f'[[rules]]\nid = "{id}"\nname = "rule {id}"\ntype = "file"\npaths = {paths}\n{extra}\n'


def setup_config(tmp_path: Path, main: str = "", files: dict[str, str] | None = None) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(main)
    if files is not None:
        (tmp_path / "rules.d").mkdir()
        for name, text in files.items():
            (tmp_path / "rules.d" / name).write_text(text)
    return cfg


def ruleset(cfg_path: Path) -> RuleSet:
    return load_ruleset(load_config(cfg_path), cfg_path)


def test_rules_d_loads_sorted_after_the_config(tmp_path: Path) -> None:
    cfg = setup_config(tmp_path, write_rule("MAIN-1"), {
        "20-b.toml": write_rule("B-1") + write_rule("B-2"),
        "10-a.toml": write_rule("A-1"),
        "README.txt": "not toml, not read",
        "30-c.toml.disabled": write_rule("C-1"),
    })
    assert [r.id for r in ruleset(cfg).rules] == BUILTIN_IDS + ["MAIN-1", "A-1", "B-1", "B-2"]


def test_no_rules_d_is_fine(tmp_path: Path) -> None:
    assert [r.id for r in ruleset(setup_config(tmp_path)).rules] == BUILTIN_IDS


def test_duplicate_id_across_rules_d_files_names_the_file(tmp_path: Path) -> None:
    cfg = setup_config(tmp_path, "", {"10-a.toml": write_rule("X-1"),
                                      "20-b.toml": write_rule("Y-1") + write_rule("X-1")})
    with pytest.raises(ConfigError) as e:
        ruleset(cfg)
    b, a = tmp_path / "rules.d" / "20-b.toml", tmp_path / "rules.d" / "10-a.toml"
    assert e.value.path == str(b)
    assert str(e.value) == f"{b}: rules (id X-1): duplicate rule id 'X-1' (also in {a})"


def test_duplicate_id_between_config_and_rules_d(tmp_path: Path) -> None:
    cfg = setup_config(tmp_path, write_rule("X-1"), {"10-a.toml": write_rule("X-1")})
    with pytest.raises(ConfigError) as e:
        ruleset(cfg)
    assert str(e.value) == (f"{tmp_path / 'rules.d' / '10-a.toml'}: rules (id X-1): "
                            f"duplicate rule id 'X-1' (also in {cfg})")


def test_bad_rule_in_rules_d_names_the_file_and_field(tmp_path: Path) -> None:
    cfg = setup_config(tmp_path, "", {
        "10-a.toml": write_rule("OK-1"),
        "20-b.toml": write_rule("OK-2") + write_rule("FILE-9", extra='operations = ["wirte"]'),
    })
    with pytest.raises(ConfigError) as e:
        ruleset(cfg)
    assert str(e.value).startswith(
        f"{tmp_path / 'rules.d' / '20-b.toml'}: rules[1] (id FILE-9).operations[0]: "
        "unknown operation 'wirte'")


def test_rules_d_holds_rules_only(tmp_path: Path) -> None:
    cfg = setup_config(tmp_path, "", {"10-a.toml": "[file]\nwatch_paths = []\n"})
    with pytest.raises(ConfigError) as e:
        ruleset(cfg)
    assert str(e.value) == f"{tmp_path / 'rules.d' / '10-a.toml'}: file: unknown key"


def test_override_builtin_rule_by_id_keeps_its_place(tmp_path: Path) -> None:
    cfg = setup_config(tmp_path, write_rule("MAIN-1") + write_rule(
        "FILE-CRON-001", '["/etc/crontab"]', 'severity = "critical"\noperations = ["*"]'))
    rs = ruleset(cfg).rules
    assert [r.id for r in rs] == BUILTIN_IDS + ["MAIN-1"]
    cron = rs[BUILTIN_IDS.index("FILE-CRON-001")]
    assert (cron.name, cron.paths, cron.severity, cron.operations) == (
        "rule FILE-CRON-001", ["/etc/crontab"], "critical", ["*"])


def test_override_builtin_rule_from_rules_d(tmp_path: Path) -> None:
    cfg = setup_config(tmp_path, "", {"50-local.toml": write_rule(
        "FILE-SYSTEMD-001", '["/etc/systemd/system"]', 'patterns = ["*.service"]')})
    rs = ruleset(cfg).rules
    assert [r.id for r in rs] == BUILTIN_IDS
    assert rs[BUILTIN_IDS.index("FILE-SYSTEMD-001")].patterns == ["*.service"]


def test_disable_builtin_rule_by_id(tmp_path: Path) -> None:
    cfg = setup_config(tmp_path, write_rule("PROC-001", extra="enabled = false"))
    assert [r.id for r in ruleset(cfg).rules] == [i for i in BUILTIN_IDS if i != "PROC-001"]


def test_enable_a_shipped_disabled_rule(tmp_path: Path) -> None:
    text = write_rule("FILE-001", '["/etc/shadow", "/etc/gshadow"]',
                      'operations = ["file_open"]\nseverity = "medium"')
    ids = [r.id for r in ruleset(setup_config(tmp_path, text)).rules]
    assert sorted(ids) == sorted(BUILTIN_IDS + ["FILE-001"])
    assert ids.index("FILE-001") == ids.index("FILE-CRON-001") + 1  # in its shipped place


def test_builtin_rules_false_drops_shipped_rules(tmp_path: Path) -> None:
    cfg = setup_config(tmp_path, write_rule("MAIN-1") + "[detections]\nbuiltin_rules = false\n")
    rs = ruleset(cfg)
    assert [r.id for r in rs.rules] == ["MAIN-1"]
    assert rs.persistence  # the pack is separate


def test_disable_builtin_rule_by_id_alone(tmp_path: Path) -> None:
    cfg = setup_config(tmp_path, '[[rules]]\nid = "PROC-001"\nenabled = false\n')
    assert [r.id for r in ruleset(cfg).rules] == [i for i in BUILTIN_IDS if i != "PROC-001"]


# --- alert records in the stream -------------------------------------------------------------

OP = {v: k for k, v in records.OPS.items()}


def file_rec(op: str, *, path: bytes | None = None, name: bytes | None = None,
             name2: bytes | None = None, ret: int = 0, fflags: int = 0, oflags: int = 0,
             syscall: str = "openat", pid: int = 200, comm: bytes = b"sh",
             ts: int = 2_000_000) -> bytes:
    return record(records.KIND_FILE, ts_ns=ts, pid=pid, ret=ret, flags=oflags, ino=7, ppid=1,
                  syscall=records.SYSCALLS.index(syscall), op=OP[op], fflags=fflags,
                  fd=3 if op == "file_write" else -100, comm=comm, path=path, name=name,
                  name2=name2)


def exec_rec(pid: int, ppid: int, comm: bytes, exe: bytes, parent_comm: bytes,
             ts: int = 1_000_000) -> bytes:
    return record(records.KIND_PROC_EXEC, ts_ns=ts, pid=pid, ppid=ppid, old_tid=pid, cgroup_id=1,
                  source=1, comm=comm, parent_comm=parent_comm, exe=exe, filename=exe)


def stream_pipeline(extra_rules: list[Rule]) -> Pipeline:
    rules = engine(load_ruleset(Config(), NO_CONFIG).rules + extra_rules)
    (rw, rr) = rules.watched()
    ff = FileFilter.from_config(FileConfig(), force=rw, force_read=rr)
    return Pipeline(ff, PipelineState(ProcessTable(64), WallClock(0)), "test-host", rules=rules)


def written(batches: list[list[Event]], tmp_path: Path) -> list[dict]:
    """The NDJSON lines the agent's output writes for these batches, decoded."""
    path = tmp_path / "out.ndjson"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        out = Output(fd)
        for b in batches:
            out.submit(b)
        out.close(5)
    finally:
        os.close(fd)
    return [msgspec.json.decode(line) for line in path.read_bytes().splitlines()]


def check_alerts_follow_sources(lines: list[dict]) -> list[tuple[dict, list[dict]]]:
    """seq is 1..n without gaps; every alert follows its source (or a sibling alert) and
    names it by source_seq. Returns (source, its alerts) pairs."""
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    pairs: list[tuple[dict, list[dict]]] = []
    for e in lines:
        if e["event_type"] == "alert":
            src, alerts = pairs[-1]
            assert e["source_seq"] == src["seq"], e
            assert e["source_event_type"] == src["event_type"]
            assert e["timestamp_ns"] == src["timestamp_ns"] and e["pid"] == src["pid"]
            alerts.append(e)
        else:
            pairs.append((e, []))
    return [(s, a) for s, a in pairs if a]


def test_alerts_follow_their_source_with_source_seq(tmp_path: Path) -> None:
    extra = [rule("file", "FILE-ANY-CRON", paths=["/etc/cron.d"], severity="low",
                  mitre=["T1053.003"])]
    pipe = stream_pipeline(extra)
    batch1 = pipe.feed([
        exec_rec(100, 1, b"nginx", b"/usr/sbin/nginx", b"systemd"),
        exec_rec(101, 100, b"sh", b"/usr/bin/dash", b"nginx", ts=1_100_000),
        file_rec("file_open", path=b"/etc/cron.d/rg-job", ret=3, oflags=0o1101,
                 fflags=records.FF_WRITE | records.FF_CREATED, pid=101),
        file_rec("file_write", path=b"/etc/cron.d/rg-job", ret=12, syscall="write", pid=101),
        file_rec("file_write", path=b"/etc/hostname", ret=5, syscall="write", pid=101),
    ])
    batch2 = pipe.feed([
        file_rec("file_write", path=b"/etc/cron.d/rg-job", ret=-28, syscall="write", pid=101),
        file_rec("file_rename", name=b"/var/tmp/rg.service",
                 name2=b"/etc/systemd/system/rg.service", syscall="renameat2", pid=101),
        file_rec("file_unlink", name=b"/etc/systemd/system/rg.service", syscall="unlinkat",
                 comm=b"rm", pid=102),
    ])
    # Pipeline.feed: each alert object right after its source object
    kinds = [(type(e).__name__, getattr(e, "rule_id", None)) for e in batch1 + batch2]
    assert kinds == [
        ("ProcessStart", None), ("ProcessStart", None), ("Alert", "PROC-001"),
        ("FileEvent", None), ("Alert", "FILE-CRON-001"), ("Alert", "FILE-ANY-CRON"),
        ("FileEvent", None), ("Alert", "FILE-CRON-001"), ("Alert", "FILE-ANY-CRON"),
        ("FileEvent", None),
        ("FileEvent", None),
        ("FileEvent", None), ("Alert", "FILE-SYSTEMD-001"),
        ("FileEvent", None), ("Alert", "FILE-SYSTEMD-001"),
    ]
    lines = written([batch1, batch2], tmp_path)
    pairs = check_alerts_follow_sources(lines)
    by_rule = [(s["event_type"], [a["rule_id"] for a in al]) for s, al in pairs]
    assert by_rule == [
        ("process_start", ["PROC-001"]),
        ("file_open", ["FILE-CRON-001", "FILE-ANY-CRON"]),
        ("file_write", ["FILE-CRON-001", "FILE-ANY-CRON"]),
        ("file_rename", ["FILE-SYSTEMD-001"]),
        ("file_unlink", ["FILE-SYSTEMD-001"]),
    ]
    (src, (proc,)) = pairs[0]
    assert src["comm"] == "sh" and src["parent_comm"] == "nginx"
    assert proc == {**proc, "rule_id": "PROC-001", "rule_name": "Shell spawned by web server",
                    "rule_type": "process", "severity": "high", "action": "alert",
                    "mitre": ["T1505.003"], "pid": 101, "ppid": 100, "comm": "sh",
                    "exe_path": "/usr/bin/dash", "path": "/usr/bin/dash", "operation": "exec",
                    "host": "test-host", "direction": None, "port": None, "addr": None}
    _, (cron, _) = pairs[2]
    assert (cron["path"], cron["operation"], cron["severity"], cron["rule_type"]) == (
        "/etc/cron.d/rg-job", "file_write", "high", "file")
    _, (ren,) = pairs[3]
    assert (ren["path"], ren["operation"]) == ("/etc/systemd/system/rg.service", "file_rename")
    _, (unl,) = pairs[4]
    assert (unl["path"], unl["operation"], unl["comm"]) == (
        "/etc/systemd/system/rg.service", "file_unlink", "rm")
    # the failed write is an event and raises nothing
    failed = [e for e in lines if e.get("ret") == -28]
    assert failed and lines[lines.index(failed[0]) + 1]["event_type"] != "alert"
    assert set(Alert.__struct_fields__) == set(proc)


def test_a_rename_alert_names_the_side_that_matched(tmp_path: Path) -> None:
    pipe = stream_pipeline([])
    out = pipe.feed([file_rec("file_rename", name=b"/etc/cron.d/rg-job",
                              name2=b"/var/tmp/rg-job", syscall="rename")])
    assert [type(e) for e in out] == [FileEvent, Alert]
    assert out[1].path == "/etc/cron.d/rg-job" and out[1].rule_id == "FILE-CRON-001"


def test_replayed_scenario_alerts_are_joined_and_gap_free(tmp_path: Path) -> None:
    """The recording of tests/data/scenario.py, replayed with rules over its directory."""
    cfg = load_config(DATA / "scenario.toml")
    w = "/var/tmp/rg-scenario/watched"
    rules = engine([
        rule("file", "SCN-CONF", paths=[w], patterns=["*.conf"],
             operations=["file_open", "file_write"]),
        rule("file", "SCN-ANY", paths=[w], operations=["*"]),
        rule("process", "SCN-PROC", process_names=["python3", "python3.11", "python"]),
    ])
    pipe = Pipeline(FileFilter.from_config(cfg.file),
                    PipelineState(ProcessTable(4096), WallClock(0)), "test-host", rules=rules)
    with open(DATA / "scenario.rgrec", "rb") as f:
        raws = list(recording.read(f))
    half = len(raws) // 2
    lines = written([pipe.feed(raws[:half]), pipe.feed(raws[half:])], tmp_path)
    pairs = check_alerts_follow_sources(lines)
    ids = {a["rule_id"] for _, al in pairs for a in al}
    assert {"SCN-CONF", "SCN-ANY"} <= ids
    for src, al in pairs:
        if src["event_type"].startswith("file_"):
            assert src["ret"] >= 0
            assert [a["rule_id"] for a in al][-1] == "SCN-ANY"  # rules in order, one alert each
            assert all(a["operation"] == src["event_type"] for a in al)
    # every successful file event under the directory raised SCN-ANY
    files = [e for e in lines if e["event_type"].startswith("file_") and e["ret"] >= 0
             and (e["resolved_path"] or "").startswith(w)]
    assert files and all(any(e is s for s, _ in pairs) for e in files)


# --- bugs found by this suite, now fixed: regressions ---------------------------------------


def test_unit_created_by_cp_raises_the_systemd_rule() -> None:
    pipe = stream_pipeline([])
    out = pipe.feed([file_rec("file_open", path=b"/etc/systemd/system/rg-cp.service", ret=4,
                              oflags=0o301, fflags=records.FF_WRITE | records.FF_CREATED,
                              comm=b"cp")])
    assert [type(e) for e in out] == [FileEvent, Alert]
    assert out[1].rule_id == "FILE-SYSTEMD-001"


def test_file_open_rule_sees_writable_opens_outside_watch_paths() -> None:
    from randguard.process.runtime import make_pipeline

    cfg = parse_config(write_rule("OPEN-1", '["/opt/rg-secret"]', 'operations = ["file_open"]'))
    ff = make_pipeline(cfg, NO_CONFIG).file_filter
    assert ff.wants("/opt/rg-secret/key", False)
    assert ff.wants("/opt/rg-secret/key", True)


def test_process_only_file_rule_sees_unwatched_paths() -> None:
    from randguard.process.runtime import make_pipeline

    cfg = parse_config('[[rules]]\nid = "NC-1"\nname = "nc writes"\ntype = "file"\n'
                       'process_names = ["nc"]\noperations = ["file_write"]\n')
    pipe = make_pipeline(cfg, NO_CONFIG)
    out = pipe.feed([file_rec("file_write", path=b"/var/tmp/payload", ret=10,
                              syscall="write", comm=b"nc")])
    assert [type(e) for e in out] == [FileEvent, Alert]


def test_process_alert_needs_exec_output() -> None:
    """Process rules look at process_start as it is written."""
    pipe = stream_pipeline([])
    out = pipe.feed([exec_rec(101, 100, b"bash", b"/usr/bin/bash", b"apache2")])
    assert [type(e) for e in out] == [ProcessStart, Alert]
    assert out[1].rule_id == "PROC-001" and out[1].operation == "exec"
