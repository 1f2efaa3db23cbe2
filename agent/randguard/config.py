"""The agent's TOML config, decoded into typed msgspec Structs and validated up front.

Every problem is reported as one `ConfigError` whose text is ``"<file>: <key>: <reason>"`` with a
dotted key (``file.hooks[2]``, ``ebpf.buffer_size``; ``-`` when no key applies), so a bad config
fails fast with a message that points at the line to fix instead of misbehaving later.
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import msgspec

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

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
    "FileConfig",
    "PerformanceConfig",
    "ProcessConfig",
    "load_config",
    "parse_config",
    "resolve_config_path",
]

LOG_LEVELS = ("debug", "info", "warning", "error")
FILE_HOOKS = (
    "open",
    "creat",
    "openat",
    "openat2",
    "write",
    "writev",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
    "rmdir",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
)
PROCESS_HOOKS = ("execve", "execveat", "fork", "exit")

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


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class AgentConfig(_Section):
    """``[agent]``: identity, logging and health reporting."""

    id: str | None = None  # None: the hostname, looked up when used
    log_level: str = "info"
    health_interval: float = 10.0  # seconds


class EbpfConfig(_Section):
    """``[ebpf]``: kernel buffer sizing."""

    buffer_size: int = 8192  # KiB, power of two


class EventsConfig(_Section):
    """``[events]``: which event families are collected at all."""

    process: bool = True
    file: bool = True
    network: bool = False


class FileConfig(_Section):
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


class ProcessConfig(_Section):
    """``[process]``: process lifecycle hooks and what an exec reports."""

    enabled: bool = True
    hooks: list[str] = msgspec.field(default_factory=lambda: list(PROCESS_HOOKS))
    report_threads: bool = False  # thread creation and exit as process_fork/process_exit
    collect_args: bool = False
    max_args: int = 64  # argv entries kept; more sets argv_truncated
    max_args_bytes: int = 1024  # argv bytes copied in the kernel (<= 4095)
    collect_cwd: bool = False
    collect_env: bool = False  # rejected: no redaction story for secrets in environments


class PerformanceConfig(_Section):
    """``[performance]``: userspace cache bounds."""

    max_process_cache_entries: int = 32768
    max_pending_exec_sources: int = 4096  # execs in flight joined to their syscall, in kernel


class Config(_Section):
    """The whole config; every section and key has a default."""

    agent: AgentConfig = msgspec.field(default_factory=AgentConfig)
    ebpf: EbpfConfig = msgspec.field(default_factory=EbpfConfig)
    events: EventsConfig = msgspec.field(default_factory=EventsConfig)
    file: FileConfig = msgspec.field(default_factory=FileConfig)
    process: ProcessConfig = msgspec.field(default_factory=ProcessConfig)
    performance: PerformanceConfig = msgspec.field(default_factory=PerformanceConfig)

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


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, parse and validate a config file; any problem raises ConfigError."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise ConfigError(name, "-", e.strerror or str(e)) from None
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


def parse_config(text: str, path: str = "<string>") -> Config:
    """Parse and validate config text; `path` only names the source in errors."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "-", _toml_reason(str(e), text)) from None
    try:
        cfg = msgspec.convert(raw, Config)
    except msgspec.ValidationError as e:
        key, reason = _validation_reason(str(e))
        raise ConfigError(path, key, reason) from None
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

    pr = cfg.process
    _check_hooks(pr.hooks, PROCESS_HOOKS, "process.hooks", fail)
    if pr.collect_env:
        fail("process.collect_env", "not supported: environments hold secrets and randguard "
             "has no redaction for them yet")
    if not 1 <= pr.max_args <= 4096:
        fail("process.max_args", "must be between 1 and 4096")
    if not 16 <= pr.max_args_bytes <= 4095:
        fail("process.max_args_bytes", "must be between 16 and 4095")
    n = cfg.performance.max_pending_exec_sources
    if not 64 <= n <= 1048576:
        fail("performance.max_pending_exec_sources", "must be between 64 and 1048576")

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
