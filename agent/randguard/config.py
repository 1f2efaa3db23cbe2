"""The agent's TOML config, decoded into typed msgspec Structs and validated up front.

Every problem is reported as one `ConfigError` whose text is ``"<file>: <key>: <reason>"`` with a
dotted key (``file.hooks[2]``, ``ebpf.buffer_size``; ``-`` when no key applies), so a bad config
fails fast with a message that points at the line to fix instead of misbehaving later.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import msgspec

from .records import OPS
from .syscalls import HANDLERS

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "FILE_HOOKS",
    "LOG_LEVELS",
    "PROCESS_HOOKS",
    "AgentConfig",
    "Config",
    "ConfigError",
    "EbpfConfig",
    "EventsConfig",
    "NetworkConfig",
    "FileConfig",
    "InventoryConfig",
    "PerformanceConfig",
    "ProcessConfig",
    "load_config",
    "parse_config",
    "resolve_config_path",
]

LOG_LEVELS = ("debug", "info", "warning", "error")
# the file family's hooks: syscalls as the dispatcher serves them (syscalls.HANDLERS), and
# io_uring's submission and completion tracepoints
FILE_HOOKS = (*(h for h, handler in HANDLERS.items() if handler.obj == "file"), "io_uring")
PROCESS_HOOKS = ("execve", "execveat", "fork", "exit")
NETWORK_HOOKS = ("connect", "bind", "listen", "accept")

BUFFER_SIZE_MIN, BUFFER_SIZE_MAX = 64, 1048576
CACHE_ENTRIES_MIN, CACHE_ENTRIES_MAX = 64, 4194304

_ENV_VAR = "RANDGUARD_CONFIG"
_REPO_CONFIG = Path(__file__).resolve().parent.parent.parent / "config" / "randguard.toml"
_SYSTEM_CONFIG = Path("/etc/randguard/config.toml")
# The repo's config when running from a checkout, else the installed location.
DEFAULT_CONFIG_PATH: Path = _REPO_CONFIG if _REPO_CONFIG.is_file() else _SYSTEM_CONFIG


class ConfigError(Exception):
    """A config problem: ``str(err) == f"{path}: {key}: {reason}"``."""

    def __init__(self, path: str, key: str, reason: str) -> None:
        super().__init__(f"{path}: {key}: {reason}")
        self.path = path
        self.key = key
        self.reason = reason


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class AgentConfig(Section):
    """``[agent]``: identity, logging and health reporting."""

    id: str | None = None  # None: the hostname, looked up when used
    log_level: str = "info"
    health_interval: float = 10.0  # seconds


class EbpfConfig(Section):
    """``[ebpf]``: kernel buffer sizing."""

    buffer_size: int = 8192  # KiB, power of two


class EventsConfig(Section):
    """``[events]``: which event families are collected at all."""

    process: bool = True
    file: bool = True
    network: bool = False


class FileConfig(Section):
    """``[file]``: file hooks and the path filter (see randguard.matcher.FileFilter)."""

    enabled: bool = True
    hooks: list[str] = msgspec.field(default_factory=lambda: list(FILE_HOOKS))
    watch_paths: list[str] = msgspec.field(default_factory=lambda: ["/etc", "/usr/bin", "/bin"])
    watch_patterns: list[str] = msgspec.field(default_factory=lambda: ["*.service"])
    exclude_paths: list[str] = msgspec.field(
        default_factory=lambda: ["/var/log", "/tmp", "/proc", "/sys"]
    )
    read_paths: list[str] = msgspec.field(
        default_factory=lambda: [
            "/etc/shadow",
            "/etc/gshadow",
            "/etc/sudoers",
            "/etc/sudoers.d",
            "/root/.ssh",
        ]
    )


class ProcessConfig(Section):
    """``[process]``: process lifecycle hooks and what an exec reports."""

    enabled: bool = True
    hooks: list[str] = msgspec.field(default_factory=lambda: list(PROCESS_HOOKS))
    report_threads: bool = False  # thread creation and exit as process_fork/process_exit
    # execs failing with ENOENT are mostly a shell trying each $PATH directory: off by default
    report_exec_enoent: bool = False
    collect_args: bool = False
    max_args: int = 64  # argv entries kept; more sets argv_truncated
    max_args_bytes: int = 1024  # argv bytes copied in the kernel (<= 4095)
    collect_cwd: bool = False
    collect_env: bool = False  # rejected: no redaction story for secrets in environments


class NetworkConfig(Section):
    """``[network]``: opt-in (with ``[events] network``): connect, bind, listen, accept."""

    enabled: bool = False
    hooks: list[str] = msgspec.field(default_factory=lambda: list(NETWORK_HOOKS))
    all_families: bool = False  # also netlink, packet, ... sockets (no addresses)
    inventory: bool = True  # a network_listen (inventory: true) per socket listening at start
    collect_dns: bool = False  # rejected: not supported
    collect_payload: bool = False  # rejected: not supported


class PerformanceConfig(Section):
    """``[performance]``: userspace cache bounds."""

    max_process_cache_entries: int = 32768
    max_pending_exec_sources: int = 4096  # execs in flight joined to their syscall, in kernel
    max_syscalls_in_flight: int = 16384  # threads inside hooked file (network) syscalls at once
    max_events_per_second: int = 20000  # per family, for events matching no detection/rule; 0: off
    drop_when_full: bool = True  # output queue full: drop by policy (else stop reading the ring)
    output_queue_events: int = 65536  # lines waiting for a slow stdout reader
    directory_cache: bool = True  # the kernel judges most unwatched opens by directory


class InventoryConfig(Section):
    """``[inventory]``: the hashed list of persistence files, kept across runs (inventory.py)."""

    enabled: bool = True
    # where the previous run's inventory is kept; `randguard run --state-file` overrides it
    state_file: Annotated[str, msgspec.Meta(pattern="^/")] = "/var/lib/randguard/inventory.state"
    max_files: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 20_000
    max_file_bytes: Annotated[int, msgspec.Meta(ge=0, le=1 << 40)] = 64 << 20  # larger: no hash
    # a live change is hashed again once its file has been quiet this long (bursts coalesce)
    settle_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 1.0


FILE_OPERATIONS = tuple(OPS.values())  # the file event types (records.OPS)
# rules can also ask for opens that write or create only (a unit copied into place by cp is an
# open and a copy_file_range, and a rule on file_open would also fire on every read)
# and the inventory's persistence_change records found at start (while_stopped)
RULE_OPERATIONS = ("*", *FILE_OPERATIONS, "file_open_write", "persistence_change")
RULE_TYPES = ("process", "file", "network")
MODE_BITS = {"setuid": 0o4000, "setgid": 0o2000}
SEVERITIES = ("low", "medium", "high", "critical")
DIRECTIONS = ("outbound", "inbound", "local")
_MITRE_RE = re.compile(r"^T\d{4}(\.\d{3})?$")


class PersistenceDetection(Section):
    """``[[detections.persistence]]``: file operations on persistence locations.

    Paths may start with ``~/``: one path per home directory in the passwd database."""

    name: str
    paths: list[str] = msgspec.field(default_factory=list)
    patterns: list[str] = msgspec.field(default_factory=list)
    operations: list[str] = msgspec.field(default_factory=lambda: ["*"])
    # what the call sets: chmods that set one of these mode bits (MODE_BITS), setxattrs of one
    # of these attributes; then paths and patterns, if given, narrow where (else: anywhere)
    modes: list[str] = msgspec.field(default_factory=list)
    xattrs: list[str] = msgspec.field(default_factory=list)
    mitre: list[str] = msgspec.field(default_factory=list)
    enabled: bool = True
    description: str | None = None


class NetworkDetection(Section):
    """``[[detections.network]]``: connections by direction, port and process."""

    name: str
    directions: list[str] = msgspec.field(default_factory=lambda: ["outbound"])
    ports: list[int] = msgspec.field(default_factory=list)
    process_names: list[str] = msgspec.field(default_factory=list)
    mitre: list[str] = msgspec.field(default_factory=list)
    enabled: bool = True
    description: str | None = None


class DetectionsConfig(Section):
    """``[detections]``: the shipped pack (on by default) plus entries of this config; an
    entry with the name of a shipped one replaces it (``enabled = false`` turns it off)."""

    builtin: bool = True  # the shipped detection pack
    builtin_rules: bool = True  # the shipped rules (each can also be disabled by id)
    persistence: list[PersistenceDetection] = msgspec.field(default_factory=list)
    network: list[NetworkDetection] = msgspec.field(default_factory=list)


class Rule(Section):
    """``[[rules]]``: a match that emits a separate ``alert`` record. Fields by type:
    process: process_names, parent_names, exe_paths; file: paths, patterns, operations,
    process_names; network: direction, ports, addresses (CIDR), process_names. ``id`` and
    ``enabled = false`` alone turn off a shipped rule of that id."""

    id: str
    name: str | None = None  # required when enabled
    type: str | None = None  # required when enabled
    enabled: bool = True
    severity: str = "medium"
    action: str = "alert"
    mitre: list[str] = msgspec.field(default_factory=list)
    description: str | None = None
    process_names: list[str] = msgspec.field(default_factory=list)
    parent_names: list[str] = msgspec.field(default_factory=list)
    exe_paths: list[str] = msgspec.field(default_factory=list)
    paths: list[str] = msgspec.field(default_factory=list)
    patterns: list[str] = msgspec.field(default_factory=list)
    operations: list[str] = msgspec.field(default_factory=list)
    direction: str | None = None
    ports: list[int] = msgspec.field(default_factory=list)
    addresses: list[str] = msgspec.field(default_factory=list)


class RulesFile(Section):
    """A ``rules.d/*.toml`` file: rules only."""

    rules: list[Rule] = msgspec.field(default_factory=list)


class Config(Section):
    """The whole config; every section and key has a default."""

    agent: AgentConfig = msgspec.field(default_factory=AgentConfig)
    ebpf: EbpfConfig = msgspec.field(default_factory=EbpfConfig)
    events: EventsConfig = msgspec.field(default_factory=EventsConfig)
    file: FileConfig = msgspec.field(default_factory=FileConfig)
    process: ProcessConfig = msgspec.field(default_factory=ProcessConfig)
    network: NetworkConfig = msgspec.field(default_factory=NetworkConfig)
    performance: PerformanceConfig = msgspec.field(default_factory=PerformanceConfig)
    detections: DetectionsConfig = msgspec.field(default_factory=DetectionsConfig)
    inventory: InventoryConfig = msgspec.field(default_factory=InventoryConfig)
    rules: list[Rule] = msgspec.field(default_factory=list)

    def host(self) -> str:
        """The agent id for output: the configured id, else this machine's hostname."""
        return self.agent.id if self.agent.id is not None else socket.gethostname()


def resolve_config_path(cli_path: str | None) -> Path:
    """Which config file to use: the CLI argument, else $RANDGUARD_CONFIG, else the default."""
    if cli_path:
        return Path(cli_path)
    env = os.environ.get(_ENV_VAR)
    if env:
        return Path(env)
    return DEFAULT_CONFIG_PATH


def read_trusted(path: str | os.PathLike[str]) -> bytes:
    """A config or rules file's bytes. Running as root, a file that another user could change
    is refused, as sudo and sshd do: the file must not be writable by group or others, it (and
    a symlink to it) must belong to root or to the owner of the directory it is in, through a
    symlink it must belong to root or the symlink's owner, and no directory involved may be
    writable by anyone unless it is sticky (like /tmp)."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            if os.geteuid() == 0:
                _check_trusted(name, os.fstat(fh.fileno()))
            return fh.read()
    except OSError as e:
        raise ConfigError(name, "-", e.strerror or str(e)) from None


def _check_trusted(name: str, st: os.stat_result) -> None:
    if st.st_mode & 0o022:
        raise ConfigError(name, "-", f"writable by group or others (mode {st.st_mode & 0o777:04o});"
                          " a root agent refuses it: chmod go-w")
    # the file where it really is, and the symlink if it is one: each in its own directory
    places = [(os.path.realpath(name), st.st_uid)]
    if os.path.islink(name):
        link_owner = os.lstat(name).st_uid
        places.append((os.path.abspath(name), link_owner))
        if st.st_uid not in (0, link_owner):
            raise ConfigError(name, "-", f"a symlink to a file owned by uid {st.st_uid}, not by "
                              "root or the symlink's owner; a root agent refuses it")
    for where, owner in places:
        parent = os.stat(os.path.dirname(where))
        if parent.st_mode & 0o002 and not parent.st_mode & 0o1000:
            raise ConfigError(name, "-", f"{os.path.dirname(where)} is writable by anyone; a "
                              "root agent refuses it")
        if owner not in (0, parent.st_uid):
            raise ConfigError(name, "-", f"owned by uid {owner}, not by root or the owner of "
                              f"{os.path.dirname(where)}; a root agent refuses it")


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, parse and validate a config file; any problem raises ConfigError."""
    name = os.fspath(path)
    data = read_trusted(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(name, "-", f"invalid TOML: not valid UTF-8 at line {line}") from None
    return parse_config(text, name)


_TOML_POS_RE = re.compile(
    r"^(?P<msg>.*?)\s*\((?:at line (?P<line>\d+), column \d+|at end of document)\)$", re.DOTALL
)
_MSGSPEC_AT_RE = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<at>\$[^`]*)`)?$", re.DOTALL)
_UNKNOWN_FIELD_RE = re.compile(r"^Object contains unknown field `(?P<field>.*)`$", re.DOTALL)
_TYPE_RE = re.compile(r"^Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`$")
_TYPE_NAMES = {"object": "table"}


_T = TypeVar("_T")


def parse_toml_as(text: str, path: str, schema: type[_T]) -> _T:
    """TOML text decoded into `schema`; errors as ConfigError naming `path` and the key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "-", _toml_reason(str(e), text)) from None
    try:
        return msgspec.convert(raw, schema)
    except msgspec.ValidationError as e:
        key, reason = _validation_reason(str(e))
        raise ConfigError(path, key, reason) from None


def parse_config(text: str, path: str = "<string>") -> Config:
    """Parse and validate config text; `path` only names the source in errors."""
    cfg = parse_toml_as(text, path, Config)
    _validate(cfg, path)
    return cfg


def _toml_reason(msg: str, text: str) -> str:
    m = _TOML_POS_RE.match(msg)
    if m is None:
        return f"invalid TOML: {msg}"
    # tomllib counts lines as newlines before the position + 1; the end is after the last one
    line = m.group("line") or str(text.count("\n") + 1)
    return f"invalid TOML: {m.group('msg')} at line {line}"


def _validation_reason(msg: str) -> tuple[str, str]:
    """msgspec's "<what> - at `$.file.hooks[2]`" -> ("file.hooks[2]", readable reason)."""
    m = _MSGSPEC_AT_RE.match(msg)
    assert m is not None  # the pattern matches any text
    what, at = m.group("msg"), m.group("at") or "$"
    key = at[2:] if at.startswith("$.") else at[1:]
    if u := _UNKNOWN_FIELD_RE.match(what):
        field = u.group("field")
        return (f"{key}.{field}" if key else field), "unknown key"
    if t := _TYPE_RE.match(what):
        # TOML has no null, so "str | null" (an optional key) reads better as "str"
        wants = [w for w in t.group("want").split(" | ") if w != "null"] or ["null"]
        want = " or ".join(_TYPE_NAMES.get(w, w) for w in wants)
        got = _TYPE_NAMES.get(t.group("got"), t.group("got"))
        return key or "-", f"expected {want}, got {got}"
    reason = what.replace("`", "'")
    return key or "-", reason[:1].lower() + reason[1:]


def _validate(cfg: Config, path: str) -> None:
    """Value checks msgspec's types cannot express."""

    def fail(key: str, reason: str) -> NoReturn:
        raise ConfigError(path, key, reason)

    a = cfg.agent
    if a.id is not None and not a.id.strip():
        fail("agent.id", "must not be empty")
    if a.log_level not in LOG_LEVELS:
        fail("agent.log_level", f"unknown log level {a.log_level!r} ({_one_of(LOG_LEVELS)})")
    if not math.isfinite(a.health_interval) or a.health_interval <= 0:
        fail("agent.health_interval", "must be a finite number > 0")

    size = cfg.ebpf.buffer_size
    if not BUFFER_SIZE_MIN <= size <= BUFFER_SIZE_MAX:
        fail("ebpf.buffer_size", f"must be between {BUFFER_SIZE_MIN} and {BUFFER_SIZE_MAX}")
    if size & (size - 1):
        fail("ebpf.buffer_size", "must be a power of two")

    f = cfg.file
    _check_hooks(f.hooks, FILE_HOOKS, "file.hooks", fail)
    for name in ("watch_paths", "exclude_paths", "read_paths"):
        for i, p in enumerate(getattr(f, name)):
            key = f"file.{name}[{i}]"
            if not p.startswith("/"):
                fail(key, f"must be an absolute path, got {p!r}")
            _check_text(p, key, fail)
    for i, p in enumerate(f.watch_patterns):
        key = f"file.watch_patterns[{i}]"
        if not p:
            fail(key, "must not be empty")
        _check_text(p, key, fail)

    net = cfg.network
    _check_hooks(net.hooks, NETWORK_HOOKS, "network.hooks", fail)
    if cfg.events.network != net.enabled:
        on, off = ("events.network", "network.enabled") if cfg.events.network else (
            "network.enabled", "events.network")
        fail(on, f"network telemetry needs both events.network and network.enabled = true "
             f"({off} is false)")
    if net.collect_dns:
        fail("network.collect_dns", "not supported: DNS collection is not implemented")
    if net.collect_payload:
        fail("network.collect_payload", "not supported: payload collection is not implemented")

    pr = cfg.process
    _check_hooks(pr.hooks, PROCESS_HOOKS, "process.hooks", fail)
    if pr.collect_env:
        fail("process.collect_env", "not supported: environments hold secrets and randguard "
             "has no redaction for them yet")
    if not 1 <= pr.max_args <= 4096:
        fail("process.max_args", "must be between 1 and 4096")
    if not 16 <= pr.max_args_bytes <= 4095:
        fail("process.max_args_bytes", "must be between 16 and 4095")
    for i, d in enumerate(cfg.detections.persistence):
        validate_persistence(d, f"detections.persistence[{i}] ({d.name})", fail)
    for i, d in enumerate(cfg.detections.network):
        validate_network_detection(d, f"detections.network[{i}] ({d.name})", fail)
    _check_unique([d.name for d in cfg.detections.persistence], "detections.persistence",
                  "name", fail)
    _check_unique([d.name for d in cfg.detections.network], "detections.network", "name", fail)
    validate_rules(cfg.rules, "rules", fail)

    if not 0 <= cfg.performance.max_events_per_second <= 10_000_000:
        fail("performance.max_events_per_second", "must be between 0 (no limit) and 10000000")
    if not 1024 <= cfg.performance.output_queue_events <= 4_194_304:
        fail("performance.output_queue_events", "must be between 1024 and 4194304")
    for key in ("max_pending_exec_sources", "max_syscalls_in_flight"):
        if not 64 <= getattr(cfg.performance, key) <= 1048576:
            fail(f"performance.{key}", "must be between 64 and 1048576")

    n = cfg.performance.max_process_cache_entries
    if not CACHE_ENTRIES_MIN <= n <= CACHE_ENTRIES_MAX:
        fail(
            "performance.max_process_cache_entries",
            f"must be between {CACHE_ENTRIES_MIN} and {CACHE_ENTRIES_MAX}",
        )


_Fail = Callable[[str, str], NoReturn]


def _one_of(names: Sequence[str]) -> str:
    return "expected one of: " + ", ".join(names)


def _check_hooks(hooks: list[str], known: Sequence[str], key: str, fail: _Fail) -> None:
    seen: set[str] = set()
    for i, h in enumerate(hooks):
        if h not in known:
            fail(f"{key}[{i}]", f"unknown hook {h!r} ({_one_of(known)})")
        if h in seen:
            fail(f"{key}[{i}]", f"duplicate hook {h!r}")
        seen.add(h)


def _check_text(s: str, key: str, fail: _Fail) -> None:
    if "\0" in s:
        fail(key, "must not contain a NUL character")


def _check_list(values: list[str], allowed: Sequence[str], key: str, what: str,
                fail: _Fail) -> None:
    for j, v in enumerate(values):
        if v not in allowed:
            fail(f"{key}[{j}]", f"unknown {what} {v!r} ({_one_of(allowed)})")


def _check_unique(values: list[str], key: str, what: str, fail: _Fail) -> None:
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            fail(f"{key}[{i}]", f"duplicate {what} {v!r}")
        seen.add(v)


def _check_paths(paths: list[str], key: str, fail: _Fail) -> None:
    for j, p in enumerate(paths):
        if not (p.startswith("/") or p.startswith("~/")):
            fail(f"{key}[{j}]", f"must be an absolute path or start with ~/, got {p!r}")
        _check_text(p, f"{key}[{j}]", fail)


def _check_mitre(ids: list[str], key: str, fail: _Fail) -> None:
    for j, t in enumerate(ids):
        if not _MITRE_RE.match(t):
            fail(f"{key}[{j}]", f"not an ATT&CK technique id (like T1543.002): {t!r}")


def _check_ports(ports: list[int], key: str, fail: _Fail) -> None:
    for j, port in enumerate(ports):
        if not 0 < port < 65536:
            fail(f"{key}[{j}]", f"port must be 1..65535, got {port}")


def validate_persistence(d: PersistenceDetection, key: str, fail: _Fail) -> None:
    """A persistence detection: a name, something to match, known operations."""
    if not d.name.strip():
        fail(f"{key}.name", "must not be empty")
    if d.enabled and not (d.paths or d.patterns or d.modes or d.xattrs):
        fail(key, "needs paths, patterns, modes or xattrs")
    _check_list(d.modes, tuple(MODE_BITS), f"{key}.modes", "mode bit", fail)
    for j, name in enumerate(d.xattrs):
        if "." not in name.strip("."):
            fail(f"{key}.xattrs[{j}]", f"not an attribute name {name!r} (namespace.name)")
    for field, op in (("modes", "file_chmod"), ("xattrs", "file_setxattr")):
        if getattr(d, field) and d.operations not in (["*"], [op]):
            fail(f"{key}.operations", f"an entry with {field} matches {op} only")
    if d.modes and d.xattrs:
        fail(key, "modes and xattrs: one or the other")
    _check_paths(d.paths, f"{key}.paths", fail)
    for j, pat in enumerate(d.patterns):
        if not pat:
            fail(f"{key}.patterns[{j}]", "must not be empty")
    _check_list(d.operations, ("*", *FILE_OPERATIONS), f"{key}.operations", "operation", fail)
    _check_mitre(d.mitre, f"{key}.mitre", fail)


def validate_network_detection(d: NetworkDetection, key: str, fail: _Fail) -> None:
    if not d.name.strip():
        fail(f"{key}.name", "must not be empty")
    _check_list(d.directions, DIRECTIONS, f"{key}.directions", "direction", fail)
    _check_ports(d.ports, f"{key}.ports", fail)
    _check_mitre(d.mitre, f"{key}.mitre", fail)


_RULE_FIELDS = {
    "process": ("process_names", "parent_names", "exe_paths"),
    "file": ("paths", "patterns", "operations", "process_names"),
    "network": ("direction", "ports", "addresses", "process_names"),
}


def validate_rules(rules: list[Rule], key: str, fail: _Fail) -> None:
    """Every rule, named in errors as ``rules[3] (id FILE-9)``."""
    seen: dict[str, int] = {}
    for i, r in enumerate(rules):
        k = f"{key}[{i}] (id {r.id})"
        if not r.id.strip():
            fail(f"{key}[{i}].id", "must not be empty")
        if r.id in seen:
            fail(k, f"duplicate rule id {r.id!r} (also rules[{seen[r.id]}])")
        seen[r.id] = i
        if not r.enabled and r.name is None and r.type is None:
            continue  # turns off the shipped rule of this id: nothing else to check
        if r.name is None or not r.name.strip():
            fail(f"{k}.name", "required: a name for the alerts")
        if r.type is None:
            fail(f"{k}.type", f"required ({_one_of(RULE_TYPES)})")
        if r.type not in RULE_TYPES:
            fail(f"{k}.type", f"unknown rule type {r.type!r} ({_one_of(RULE_TYPES)})")
        if r.severity not in SEVERITIES:
            fail(f"{k}.severity", f"unknown severity {r.severity!r} ({_one_of(SEVERITIES)})")
        if r.action != "alert":
            fail(f"{k}.action", f"unknown action {r.action!r} (expected one of: alert)")
        _check_mitre(r.mitre, f"{k}.mitre", fail)
        allowed = _RULE_FIELDS[r.type]
        used = [f for fields in _RULE_FIELDS.values() for f in fields if getattr(r, f)]
        for f in used:
            if f not in allowed:
                fail(f"{k}.{f}", f"not a field of a {r.type} rule ({', '.join(allowed)})")
        if not used:
            fail(k, f"matches everything: give at least one of {', '.join(allowed)}")
        _check_paths(r.paths, f"{k}.paths", fail)
        _check_paths(r.exe_paths, f"{k}.exe_paths", fail)
        _check_list(r.operations, RULE_OPERATIONS, f"{k}.operations", "operation", fail)
        if r.direction is not None and r.direction not in DIRECTIONS:
            fail(f"{k}.direction", f"unknown direction {r.direction!r} ({_one_of(DIRECTIONS)})")
        _check_ports(r.ports, f"{k}.ports", fail)
        for j, a in enumerate(r.addresses):
            try:
                ipaddress.ip_network(a, strict=False)
            except ValueError:
                fail(f"{k}.addresses[{j}]", f"not an address or CIDR network: {a!r}")
