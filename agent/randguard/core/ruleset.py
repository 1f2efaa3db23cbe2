"""Which detections and rules are in force: the shipped pack and rules, overridden by the
config and by every ``*.toml`` in the ``rules.d`` directory beside it.

The pack (config/persistence.toml, config/network.toml) and the built-in rules
(config/builtin-rules.toml) are data: an entry of the config with the same name (detections)
or id (rules) replaces the shipped one, and ``enabled = false`` turns it off. Rules of the
config and of rules.d must have unique ids.
"""

from __future__ import annotations

import pwd
from pathlib import Path
from typing import NoReturn

import msgspec

from .config import (
    Config,
    ConfigError,
    DetectionsConfig,
    NetworkDetection,
    PersistenceDetection,
    Rule,
    RulesFile,
    Section,
    parse_toml_as,
    read_trusted,
    validate_persistence,
    validate_rules,
)

_REPO_DIR = Path(__file__).resolve().parents[3] / "config"
PACK_DIR: Path = _REPO_DIR if (_REPO_DIR / "persistence.toml").is_file() else Path(
    "/usr/share/randguard"
)


PACK_FILES = ("persistence.toml", "network.toml")


class _PackFile(Section):
    detections: DetectionsConfig = msgspec.field(default_factory=DetectionsConfig)


class RuleSet(msgspec.Struct, frozen=True):
    """The enabled detections and rules, in evaluation order."""

    persistence: list[PersistenceDetection]
    network: list[NetworkDetection]
    rules: list[Rule]


def _merge(shipped: list, own: list, key: str) -> list:
    """Shipped entries in order, each replaced by the config's entry of the same key; then the
    config's new entries. Disabled entries are dropped."""
    mine = {getattr(e, key): e for e in own}
    out = [mine.pop(getattr(e, key), e) for e in shipped]
    out += [e for e in own if getattr(e, key) in mine]
    return [e for e in out if e.enabled]


def load_ruleset(cfg: Config, config_path: Path, pack_dir: Path = PACK_DIR) -> RuleSet:
    """Everything that is in force for this config; a bad file raises ConfigError naming it."""
    persistence, network, shipped_rules = [], [], []
    if cfg.detections.builtin:
        for name in PACK_FILES:
            path = pack_dir / name
            pack = parse_toml_as(_read(path), str(path), _PackFile)

            def fail(key: str, reason: str, path: Path = path) -> NoReturn:
                raise ConfigError(str(path), key, reason)

            for i, d in enumerate(pack.detections.persistence):
                validate_persistence(d, f"detections.persistence[{i}] ({d.name})", fail)
            persistence += pack.detections.persistence
            network += pack.detections.network
    if cfg.detections.builtin_rules:
        path = pack_dir / "builtin-rules.toml"
        shipped_rules = _rules_file(path)

    own_rules = list(cfg.rules)
    rules_d = config_path.parent / "rules.d"
    if rules_d.is_dir():
        ids = {r.id: str(config_path) for r in own_rules}
        for path in sorted(rules_d.glob("*.toml")):
            for r in _rules_file(path):
                if r.id in ids:
                    raise ConfigError(str(path), f"rules (id {r.id})",
                                      f"duplicate rule id {r.id!r} (also in {ids[r.id]})")
                ids[r.id] = str(path)
                own_rules.append(r)
    return RuleSet(
        _merge(persistence, cfg.detections.persistence, "name"),
        _merge(network, cfg.detections.network, "name"),
        _merge(shipped_rules, own_rules, "id"),
    )


def _read(path: Path) -> str:
    try:
        return read_trusted(path).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(str(path), "-", f"not valid UTF-8: {e}") from None


def _rules_file(path: Path) -> list[Rule]:
    f = parse_toml_as(_read(path), str(path), RulesFile)

    def fail(key: str, reason: str) -> NoReturn:
        raise ConfigError(str(path), key, reason)

    validate_rules(f.rules, "rules", fail)
    return f.rules


def passwd_homes() -> list[str]:
    """Every home directory in the passwd database (where `~/` paths expand)."""
    homes = {p.pw_dir.rstrip("/") or "/" for p in pwd.getpwall() if p.pw_dir.startswith("/")}
    homes.discard("/nonexistent")
    return sorted(homes)
