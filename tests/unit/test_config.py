"""Config decoding, defaults, the shipped default file and exact error messages."""

import re
import socket
from pathlib import Path

import pytest

from randguard.core import config as config_mod
from randguard.core.config import (
    DEFAULT_CONFIG_PATH,
    FILE_HOOKS,
    Config,
    ConfigError,
    load_config,
    parse_config,
    resolve_config_path,
)

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "randguard.toml"


def test_defaults() -> None:
    c = parse_config("")
    assert c == Config()
    assert c.agent.id is None
    assert c.agent.log_level == "info"
    assert c.agent.health_interval == 10
    assert c.ebpf.buffer_size == 8192
    assert (c.events.process, c.events.file, c.events.network) == (True, True, False)
    assert c.file.enabled
    assert c.file.hooks == list(FILE_HOOKS)
    assert "openat2" in c.file.hooks and "fchmodat2" in c.file.hooks and len(c.file.hooks) == 56
    assert c.file.hooks[-2:] == ["io_uring_setup", "io_uring"]
    assert c.file.watch_paths == ["/etc", "/usr/bin", "/bin"]
    assert c.file.watch_patterns == ["*.service"]
    assert c.file.exclude_paths == ["/var/log", "/tmp", "/proc", "/sys"]
    assert c.file.read_paths == [
        "/etc/shadow",
        "/etc/gshadow",
        "/etc/sudoers",
        "/etc/sudoers.d",
        "/root/.ssh",
    ]
    assert c.process.enabled
    assert c.process.hooks == ["execve", "execveat", "fork", "exit"]
    assert c.performance.max_process_cache_entries == 32768


def test_defaults_are_not_shared() -> None:
    a, b = Config(), Config()
    a.file.watch_paths.append("/x")
    assert b.file.watch_paths == ["/etc", "/usr/bin", "/bin"]


def test_default_file_loads_and_equals_defaults() -> None:
    assert DEFAULT_CONFIG_PATH == REPO_CONFIG
    assert load_config(REPO_CONFIG) == Config()
    assert load_config(str(REPO_CONFIG)) == Config()


def test_default_file_sets_every_key() -> None:
    import tomllib

    data = tomllib.loads(REPO_CONFIG.read_text())
    for section, struct in (
        ("agent", config_mod.AgentConfig),
        ("ebpf", config_mod.EbpfConfig),
        ("events", config_mod.EventsConfig),
        ("file", config_mod.FileConfig),
        ("process", config_mod.ProcessConfig),
        ("performance", config_mod.PerformanceConfig),
    ):
        # agent.id has no TOML spelling for "unset"; it is shown commented out
        expected = set(struct.__struct_fields__) - ({"id"} if section == "agent" else set())
        assert set(data[section]) == expected, section
    assert "agent.id" not in data
    assert "# id = " in REPO_CONFIG.read_text()


def test_values_override_defaults() -> None:
    c = parse_config(
        """
        [agent]
        id = "lab-1"
        log_level = "debug"
        health_interval = 2.5
        [ebpf]
        buffer_size = 64
        [events]
        network = true
        [network]
        enabled = true
        hooks = ["connect"]
        [file]
        hooks = ["openat", "unlinkat"]
        watch_paths = ["/opt/app/"]
        watch_patterns = ["authorized_keys"]
        exclude_paths = []
        read_paths = ["/home/*/.ssh"]
        [process]
        enabled = false
        hooks = []
        [performance]
        max_process_cache_entries = 4194304
        """
    )
    assert c.agent.id == "lab-1" and c.host() == "lab-1"
    assert c.agent.health_interval == 2.5
    assert c.ebpf.buffer_size == 64
    assert c.events.network is True and c.network.hooks == ["connect"]
    assert c.file.hooks == ["openat", "unlinkat"]
    assert c.file.exclude_paths == []
    assert c.process.hooks == []
    assert c.performance.max_process_cache_entries == 4194304


def test_host_defaults_to_hostname() -> None:
    assert Config().host() == socket.gethostname()


def _err(text: str, path: str = "<string>") -> str:
    with pytest.raises(ConfigError) as ei:
        parse_config(text, path)
    e = ei.value
    assert str(e) == f"{e.path}: {e.key}: {e.reason}"
    return str(e)


HOOKS = ", ".join(FILE_HOOKS)
POSITIVE = "must be a finite number > 0"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[agent]\nname = 'x'\n", "cfg.toml: agent.name: unknown key"),
        ("[file]\nwatch = ['/etc']\n", "cfg.toml: file.watch: unknown key"),
        ("[network]\nenabled = true\n",
         "cfg.toml: network.enabled: network telemetry needs both events.network and "
         "network.enabled = true (events.network is false)"),
        ("[events]\nnetwork = true\n",
         "cfg.toml: events.network: network telemetry needs both events.network and "
         "network.enabled = true (network.enabled is false)"),
        ("[events]\nnetwork = true\n[network]\nenabled = true\ncollect_dns = true\n",
         "cfg.toml: network.collect_dns: not supported: DNS collection is not implemented"),
        ("[network]\nhooks = ['sendto']\n",
         "cfg.toml: network.hooks[0]: unknown hook 'sendto' (expected one of: connect, bind, "
         "listen, accept)"),
        ("verbose = true\n", "cfg.toml: verbose: unknown key"),
        ("[ebpf]\nbuffer_size = '8192'\n", "cfg.toml: ebpf.buffer_size: expected int, got str"),
        ("[ebpf]\nbuffer_size = 8192.0\n", "cfg.toml: ebpf.buffer_size: expected int, got float"),
        ("[ebpf]\nbuffer_size = true\n", "cfg.toml: ebpf.buffer_size: expected int, got bool"),
        ("[events]\nfile = 1\n", "cfg.toml: events.file: expected bool, got int"),
        ("[agent]\nid = 5\n", "cfg.toml: agent.id: expected str, got int"),
        ("file = 3\n", "cfg.toml: file: expected table, got int"),
        ("[file]\nhooks = 'openat'\n", "cfg.toml: file.hooks: expected array, got str"),
        (
            "[file]\nhooks = ['open', 'creat', 7]\n",
            "cfg.toml: file.hooks[2]: expected str, got int",
        ),
        (
            "[file]\nhooks = ['open', 'creat', 'foo']\n",
            f"cfg.toml: file.hooks[2]: unknown hook 'foo' (expected one of: {HOOKS})",
        ),
        (
            "[file]\nhooks = ['open', 'open']\n",
            "cfg.toml: file.hooks[1]: duplicate hook 'open'",
        ),
        (
            "[process]\nhooks = ['execve', 'clone']\n",
            "cfg.toml: process.hooks[1]: unknown hook 'clone' "
            "(expected one of: execve, execveat, fork, exit)",
        ),
        ("[ebpf]\nbuffer_size = 1000\n", "cfg.toml: ebpf.buffer_size: must be a power of two"),
        (
            "[ebpf]\nbuffer_size = 32\n",
            "cfg.toml: ebpf.buffer_size: must be between 64 and 1048576, got 32",
        ),
        (
            "[ebpf]\nbuffer_size = 2097152\n",
            "cfg.toml: ebpf.buffer_size: must be between 64 and 1048576, got 2097152",
        ),
        (
            "[agent]\nlog_level = 'trace'\n",
            "cfg.toml: agent.log_level: unknown log level 'trace' "
            "(expected one of: debug, info, warning, error)",
        ),
        ("[agent]\nhealth_interval = 0\n", f"cfg.toml: agent.health_interval: {POSITIVE}"),
        ("[agent]\nhealth_interval = -1\n", f"cfg.toml: agent.health_interval: {POSITIVE}"),
        ("[agent]\nhealth_interval = inf\n", f"cfg.toml: agent.health_interval: {POSITIVE}"),
        ("[agent]\nhealth_interval = nan\n", f"cfg.toml: agent.health_interval: {POSITIVE}"),
        ("[agent]\nid = ''\n", "cfg.toml: agent.id: must not be empty"),
        (
            "[file]\nwatch_paths = ['/etc', 'etc/x']\n",
            "cfg.toml: file.watch_paths[1]: must be an absolute path, got 'etc/x'",
        ),
        (
            "[file]\nexclude_paths = ['']\n",
            "cfg.toml: file.exclude_paths[0]: must be an absolute path, got ''",
        ),
        (
            "[file]\nread_paths = ['~/.ssh']\n",
            "cfg.toml: file.read_paths[0]: must be an absolute path, got '~/.ssh'",
        ),
        ("[file]\nwatch_patterns = ['']\n", "cfg.toml: file.watch_patterns[0]: must not be empty"),
        (
            '[file]\nwatch_paths = ["/etc/\\u0000"]\n',
            "cfg.toml: file.watch_paths[0]: must not contain a NUL character",
        ),
        (
            "[performance]\nmax_process_cache_entries = 10\n",
            "cfg.toml: performance.max_process_cache_entries: must be between 64 and 4194304, "
            "got 10",
        ),
        (
            "[performance]\nmax_syscalls_in_flight = 63\n",
            "cfg.toml: performance.max_syscalls_in_flight: must be between 64 and 1048576, got 63",
        ),
        (
            "[performance]\nmax_pending_exec_sources = 1048577\n",
            "cfg.toml: performance.max_pending_exec_sources: must be between 64 and 1048576, "
            "got 1048577",
        ),
    ],
)
def test_error_messages(text: str, message: str) -> None:
    assert _err(text, "cfg.toml") == message


DET = '[[detections.persistence]]\nname = "mine"\n'
NET = '[[detections.network]]\nname = "out"\n'


@pytest.mark.parametrize(("text", "message"), [
    (DET + 'paths = ["etc/x"]\n', "detections.persistence[0] (mine).paths[0]: must be an "
                                  "absolute path or start with ~/, got 'etc/x'"),
    (DET + 'paths = ["/etc/x"]\nmodes = ["sticky"]\n',
     "detections.persistence[0] (mine).modes[0]: unknown mode bit 'sticky' "
     "(expected one of: setuid, setgid)"),
    (DET + 'paths = ["/etc/x"]\nmitre = ["T1053.3"]\n',
     "detections.persistence[0] (mine).mitre[0]: not an ATT&CK technique id (like T1543.002): "
     "'T1053.3'"),
    (DET + 'patterns = [""]\n', "detections.persistence[0] (mine).patterns[0]: must not be "
                                 "empty"),
    ('[[detections.persistence]]\nname = " "\npaths = ["/etc/x"]\n',
     "detections.persistence[0].name: must not be empty"),  # a blank name names nothing
    (NET + 'directions = ["up"]\n', "detections.network[0] (out).directions[0]: unknown "
                                   "direction 'up' (expected one of: outbound, inbound, local)"),
    (NET + "ports = [65536]\n", "detections.network[0] (out).ports[0]: must be between 1 and "
                               "65535, got 65536"),
])
def test_detection_errors_are_worded_from_their_types(text: str, message: str) -> None:
    """What the types say (choices in declared order, ranges, what a pattern means) reads as
    the hand-written checks did, the entry named by its name."""
    assert _err(text, "cfg.toml") == f"cfg.toml: {message}"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("[agent]\nlog_level = 'info'\nfoo bar\n", 3),
        ("[ebpf]\nbuffer_size = 8192\n[ebpf]\n", 3),
        ("[agent\n", 1),
        ("[file]\nhooks = ['open',\n", 3),
    ],
)
def test_invalid_toml(text: str, line: int) -> None:
    msg = _err(text, "x.toml")
    assert re.fullmatch(rf"x\.toml: -: invalid TOML: \S.* at line {line}", msg), msg


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as ei:
        load_config(missing)
    assert str(ei.value) == f"{missing}: -: No such file or directory"
    assert ei.value.key == "-"


def test_unreadable_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(tmp_path)
    assert str(ei.value) == f"{tmp_path}: -: Is a directory"


def test_load_config_errors_name_the_file(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[ebpf]\nbuffer_size = 100\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(ei.value) == f"{p}: ebpf.buffer_size: must be a power of two"
    p.write_bytes(b"[agent]\nid = '\xff'\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(ei.value) == f"{p}: -: invalid TOML: not valid UTF-8 at line 2"


def test_resolve_config_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANDGUARD_CONFIG", raising=False)
    assert resolve_config_path(None) == DEFAULT_CONFIG_PATH
    assert resolve_config_path("/x/y.toml") == Path("/x/y.toml")
    monkeypatch.setenv("RANDGUARD_CONFIG", "/env/c.toml")
    assert resolve_config_path(None) == Path("/env/c.toml")
    assert resolve_config_path("/x/y.toml") == Path("/x/y.toml")
    monkeypatch.setenv("RANDGUARD_CONFIG", "")
    assert resolve_config_path(None) == DEFAULT_CONFIG_PATH
