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
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import (
    Annotated,
    Literal,
    NoReturn,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

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
    "enabled_families",
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


# The types carry what they can check (msgspec: Literal, Meta ranges and patterns); _validate()
# checks the rest (duplicates, powers of two, what depends on other keys). Errors from either
# read alike: see _validation_reason().
LogLevel = Literal[LOG_LEVELS]
FileHook = Literal[FILE_HOOKS]
ProcessHook = Literal[PROCESS_HOOKS]
NetworkHook = Literal[NETWORK_HOOKS]


def _between(lo: int, hi: int) -> object:
    return msgspec.Meta(ge=lo, le=hi)


Port = Annotated[int, _between(1, 65535)]
# (a NUL in a path or pattern is refused by _validate: the kernel would cut the path there)
AbsPath = Annotated[str, msgspec.Meta(pattern="^/")]
DetectionPath = Annotated[str, msgspec.Meta(pattern="^(/|~/)")]  # ~/: in every home
Pattern = Annotated[str, msgspec.Meta(min_length=1)]
Name = Annotated[str, msgspec.Meta(pattern=r"\S")]  # not empty, not blank

_ENV_VAR = "RANDGUARD_CONFIG"
_REPO_CONFIG = Path(__file__).resolve().parents[3] / "config" / "randguard.toml"
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

    id: Name | None = None  # None: the hostname, looked up when used
    log_level: LogLevel = "info"
    health_interval: float = 10.0  # seconds


class EbpfConfig(Section):
    """``[ebpf]``: kernel buffer sizing."""

    buffer_size: Annotated[int, _between(64, 1048576)] = 8192  # KiB, power of two


class EventsConfig(Section):
    """``[events]``: which event families are collected at all."""

    process: bool = True
    file: bool = True
    network: bool = False


class FileConfig(Section):
    """``[file]``: file hooks and the path filter (see randguard.matcher.FileFilter)."""

    enabled: bool = True
    hooks: list[FileHook] = msgspec.field(default_factory=lambda: list(FILE_HOOKS))
    watch_paths: list[AbsPath] = msgspec.field(default_factory=lambda: ["/etc", "/usr/bin", "/bin"])
    watch_patterns: list[Pattern] = msgspec.field(default_factory=lambda: ["*.service"])
    exclude_paths: list[AbsPath] = msgspec.field(
        default_factory=lambda: ["/var/log", "/tmp", "/proc", "/sys"]
    )
    read_paths: list[AbsPath] = msgspec.field(
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
    hooks: list[ProcessHook] = msgspec.field(default_factory=lambda: list(PROCESS_HOOKS))
    report_threads: bool = False  # thread creation and exit as process_fork/process_exit
    # execs failing with ENOENT are mostly a shell trying each $PATH directory: off by default
    report_exec_enoent: bool = False
    collect_args: bool = False
    max_args: Annotated[int, _between(1, 4096)] = 64  # argv entries kept; more: argv_truncated
    max_args_bytes: Annotated[int, _between(16, 4095)] = 1024  # argv bytes copied in the kernel
    collect_cwd: bool = False
    collect_env: bool = False  # rejected: no redaction story for secrets in environments


class NetworkConfig(Section):
    """``[network]``: opt-in (with ``[events] network``): connect, bind, listen, accept."""

    enabled: bool = False
    hooks: list[NetworkHook] = msgspec.field(default_factory=lambda: list(NETWORK_HOOKS))
    all_families: bool = False  # also netlink, packet, ... sockets (no addresses)
    inventory: bool = True  # a network_listen (inventory: true) per socket listening at start
    collect_dns: bool = False  # rejected: not supported
    collect_payload: bool = False  # rejected: not supported


class PerformanceConfig(Section):
    """``[performance]``: userspace cache bounds."""

    max_process_cache_entries: Annotated[int, _between(64, 4194304)] = 32768
    # execs in flight joined to their syscall, in kernel
    max_pending_exec_sources: Annotated[int, _between(64, 1048576)] = 4096
    # threads inside hooked file (network) syscalls at once
    max_syscalls_in_flight: Annotated[int, _between(64, 1048576)] = 16384
    # per family, for events matching no detection or rule; 0: no limit
    max_events_per_second: Annotated[int, _between(0, 10_000_000)] = 20000
    drop_when_full: bool = True  # output queue full: drop by policy (else stop reading the ring)
    # lines waiting for a slow stdout reader
    output_queue_events: Annotated[int, _between(1024, 4_194_304)] = 65536
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
Mitre = Annotated[str, msgspec.Meta(pattern=r"^T\d{4}(\.\d{3})?$")]
Operation = Literal[("*", *FILE_OPERATIONS)]
RuleOperation = Literal[RULE_OPERATIONS]
ModeBit = Literal[tuple(MODE_BITS)]
Direction = Literal[DIRECTIONS]


class Detection(Section):
    """What every ``[[detections.*]]`` entry has: the name a match puts in the event's
    `detection_type`, the ATT&CK techniques it puts in `mitre`, and whether it is on."""

    name: Name
    mitre: list[Mitre] = msgspec.field(default_factory=list)
    enabled: bool = True
    description: str | None = None


class PersistenceDetection(Detection):
    """``[[detections.persistence]]``: file operations on persistence locations.

    Paths may start with ``~/``: one path per home directory in the passwd database."""

    paths: list[DetectionPath] = msgspec.field(default_factory=list)
    patterns: list[Pattern] = msgspec.field(default_factory=list)
    operations: list[Operation] = msgspec.field(default_factory=lambda: ["*"])
    # what the call sets: chmods that set one of these mode bits (MODE_BITS), setxattrs of one
    # of these attributes; then paths and patterns, if given, narrow where (else: anywhere)
    modes: list[ModeBit] = msgspec.field(default_factory=list)
    xattrs: list[str] = msgspec.field(default_factory=list)


class NetworkDetection(Detection):
    """``[[detections.network]]``: connections by direction, port and process."""

    directions: list[Direction] = msgspec.field(default_factory=lambda: ["outbound"])
    ports: list[Port] = msgspec.field(default_factory=list)
    process_names: list[str] = msgspec.field(default_factory=list)


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
    type: Literal[RULE_TYPES] | None = None  # required when enabled
    enabled: bool = True
    severity: Literal[SEVERITIES] = "medium"
    action: Literal["alert"] = "alert"
    mitre: list[Mitre] = msgspec.field(default_factory=list)
    description: str | None = None
    process_names: list[str] = msgspec.field(default_factory=list)
    parent_names: list[str] = msgspec.field(default_factory=list)
    exe_paths: list[DetectionPath] = msgspec.field(default_factory=list)
    paths: list[DetectionPath] = msgspec.field(default_factory=list)
    patterns: list[Pattern] = msgspec.field(default_factory=list)
    operations: list[RuleOperation] = msgspec.field(default_factory=list)
    direction: Direction | None = None
    ports: list[Port] = msgspec.field(default_factory=list)
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


def enabled_families(cfg: Config) -> list[str]:
    """The event families this config collects: "process", "file", "network"."""
    return [fam for fam, on in (
        ("process", cfg.events.process and cfg.process.enabled),
        ("file", cfg.events.file and cfg.file.enabled),
        ("network", cfg.events.network and cfg.network.enabled),
    ) if on]


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
        key, reason = _validation_reason(str(e), raw, schema)
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


# what a list's item or a key holds, for "unknown <noun> 'x'" (the key's name otherwise)
_NOUNS = {"hooks": "hook", "log_level": "log level", "type": "rule type",
          "operations": "operation", "directions": "direction", "modes": "mode bit"}
_PATTERN_REASONS = {  # what a pattern a type carries means
    Mitre.__metadata__[0].pattern: "not an ATT&CK technique id (like T1543.002): {value!r}",
    AbsPath.__metadata__[0].pattern: "must be an absolute path, got {value!r}",
    DetectionPath.__metadata__[0].pattern: "must be an absolute path or start with ~/, got "
                                           "{value!r}",
    Name.__metadata__[0].pattern: "must not be empty",
}
_STEP_RE = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _validation_reason(msg: str, raw: object, schema: type) -> tuple[str, str]:
    """msgspec's "<what> - at `$.file.hooks[2]`" -> ("file.hooks[2]", readable reason), the
    reason worded from the type the schema has there (its values, its range, its pattern)."""
    m = _MSGSPEC_AT_RE.match(msg)
    assert m is not None  # the pattern matches any text
    what, at = m.group("msg"), m.group("at") or "$"
    steps: list[str | int] = [k if k else int(i) for k, i in _STEP_RE.findall(at)]
    key = _key(steps, raw)
    if u := _UNKNOWN_FIELD_RE.match(what):
        field = u.group("field")
        return (f"{key}.{field}" if key else field), "unknown key"
    if t := _TYPE_RE.match(what):
        # TOML has no null, so "str | null" (an optional key) reads better as "str"
        wants = [w for w in t.group("want").split(" | ") if w != "null"] or ["null"]
        want = " or ".join(_TYPE_NAMES.get(w, w) for w in wants)
        got = _TYPE_NAMES.get(t.group("got"), t.group("got"))
        return key or "-", f"expected {want}, got {got}"
    leaf, value = _type_at(schema, steps), _value_at(raw, steps)
    if get_origin(leaf) is Literal:
        name = next((s for s in reversed(steps) if isinstance(s, str)), "value")
        noun = _NOUNS.get(name, name.replace("_", " "))
        return key, f"unknown {noun} {value!r} ({_one_of([str(v) for v in get_args(leaf)])})"
    meta = get_args(leaf)[1] if get_origin(leaf) is Annotated else None
    if isinstance(meta, msgspec.Meta) and meta.ge is not None and meta.le is not None:
        return key, f"must be between {meta.ge} and {meta.le}, got {value}"
    if isinstance(meta, msgspec.Meta) and meta.pattern in _PATTERN_REASONS:
        return key, _PATTERN_REASONS[meta.pattern].format(value=value)
    if isinstance(meta, msgspec.Meta) and meta.min_length == 1:
        return key, "must not be empty"
    reason = what.replace("`", "'")
    return key or "-", reason[:1].lower() + reason[1:]


def _key(steps: list[str | int], raw: object) -> str:
    """The dotted key of a path, an entry of a list of rules or detections named as _validate
    names it: ``rules[3] (id FILE-9)``, ``detections.persistence[0] (cron)``."""
    out, node = "", raw
    for step in steps:
        if isinstance(step, str):
            out += f".{step}" if out else step
            node = node.get(step) if isinstance(node, dict) else None
            continue
        out += f"[{step}]"
        node = node[step] if isinstance(node, list) and step < len(node) else None
        if isinstance(node, dict):
            if out.startswith("rules") and _named(node.get("id")):
                out += f" (id {node['id']})"
            elif out.startswith("detections.") and _named(node.get("name")):
                out += f" ({node['name']})"
    return out


def _named(v: object) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _type_at(t: object, steps: list[str | int]) -> object:
    """The type a path leads to in a schema (its Literal, its Annotated constraints), or None
    where it cannot tell."""
    for step in steps:
        t = _present(t)
        if isinstance(step, int) and get_origin(t) is list:
            t = get_args(t)[0]
        elif isinstance(step, str) and isinstance(t, type) and issubclass(t, msgspec.Struct):
            t = get_type_hints(t, include_extras=True).get(step)  # TOML keys are field names
        else:
            return None
    return _present(t)


def _present(t: object) -> object:
    """An optional key's type when it is there: ``X | None`` -> ``X``."""
    if get_origin(t) in (Union, types.UnionType):
        args = [a for a in get_args(t) if a is not type(None)]
        return args[0] if len(args) == 1 else t
    return t


def _value_at(raw: object, steps: list[str | int]) -> object:
    for step in steps:
        if isinstance(step, int) and isinstance(raw, list) and step < len(raw):
            raw = raw[step]
        elif isinstance(step, str) and isinstance(raw, dict):
            raw = raw.get(step)
        else:
            return None
    return raw


def _validate(cfg: Config, path: str) -> None:
    """Value checks msgspec's types cannot express."""

    def fail(key: str, reason: str) -> NoReturn:
        raise ConfigError(path, key, reason)

    a = cfg.agent
    if not math.isfinite(a.health_interval) or a.health_interval <= 0:
        fail("agent.health_interval", "must be a finite number > 0")

    size = cfg.ebpf.buffer_size
    if size & (size - 1):
        fail("ebpf.buffer_size", "must be a power of two")

    f = cfg.file
    _check_unique(f.hooks, "file.hooks", "hook", fail)
    for name in ("watch_paths", "exclude_paths", "read_paths", "watch_patterns"):
        _check_texts(getattr(f, name), f"file.{name}", fail)

    net = cfg.network
    _check_unique(net.hooks, "network.hooks", "hook", fail)
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
    _check_unique(pr.hooks, "process.hooks", "hook", fail)
    if pr.collect_env:
        fail("process.collect_env", "not supported: environments hold secrets and randguard "
             "has no redaction for them yet")
    for i, d in enumerate(cfg.detections.persistence):
        validate_persistence(d, f"detections.persistence[{i}] ({d.name})", fail)
    _check_unique([d.name for d in cfg.detections.persistence], "detections.persistence",
                  "name", fail)
    _check_unique([d.name for d in cfg.detections.network], "detections.network", "name", fail)
    validate_rules(cfg.rules, "rules", fail)


_Fail = Callable[[str, str], NoReturn]


def _one_of(names: Sequence[str]) -> str:
    return "expected one of: " + ", ".join(names)


def _check_text(s: str, key: str, fail: _Fail) -> None:
    if "\0" in s:
        fail(key, "must not contain a NUL character")


def _check_unique(values: list[str], key: str, what: str, fail: _Fail) -> None:
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            fail(f"{key}[{i}]", f"duplicate {what} {v!r}")
        seen.add(v)


def _check_texts(texts: list[str], key: str, fail: _Fail) -> None:
    for j, t in enumerate(texts):
        _check_text(t, f"{key}[{j}]", fail)


def validate_persistence(d: PersistenceDetection, key: str, fail: _Fail) -> None:
    """A persistence detection: a name, something to match, known operations."""
    if d.enabled and not (d.paths or d.patterns or d.modes or d.xattrs):
        fail(key, "needs paths, patterns, modes or xattrs")
    for j, name in enumerate(d.xattrs):
        if "." not in name.strip("."):
            fail(f"{key}.xattrs[{j}]", f"not an attribute name {name!r} (namespace.name)")
    for field, op in (("modes", "file_chmod"), ("xattrs", "file_setxattr")):
        if getattr(d, field) and d.operations not in (["*"], [op]):
            fail(f"{key}.operations", f"an entry with {field} matches {op} only")
    if d.modes and d.xattrs:
        fail(key, "modes and xattrs: one or the other")
    _check_texts(d.paths, f"{key}.paths", fail)
    _check_texts(d.patterns, f"{key}.patterns", fail)


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
        allowed = _RULE_FIELDS[r.type]
        used = [f for fields in _RULE_FIELDS.values() for f in fields if getattr(r, f)]
        for f in used:
            if f not in allowed:
                fail(f"{k}.{f}", f"not a field of a {r.type} rule ({', '.join(allowed)})")
        if not used:
            fail(k, f"matches everything: give at least one of {', '.join(allowed)}")
        _check_texts(r.paths, f"{k}.paths", fail)
        _check_texts(r.exe_paths, f"{k}.exe_paths", fail)
        for j, a in enumerate(r.addresses):
            try:
                ipaddress.ip_network(a, strict=False)
            except ValueError:
                fail(f"{k}.addresses[{j}]", f"not an address or CIDR network: {a!r}")
