"""Command line: `randguard run [--config PATH]` and `randguard check-config [PATH]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__, recording
from .config import Config, ConfigError, load_config, resolve_config_path
from .events import encode_lines
from .libbpf import LibbpfError, libbpf_version
from .loader import LoadError
from .ruleset import load_ruleset

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="randguard",
        description="eBPF endpoint telemetry: NDJSON events on stdout, logs on stderr.",
    )
    p.add_argument("--version", action="version",
                   version=f"randguard {__version__} (libbpf {libbpf_version()})")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="load the BPF programs and stream events to stdout")
    run.add_argument("--config", metavar="PATH",
                     help="config file (default: $RANDGUARD_CONFIG, else the packaged default)")
    run.add_argument("--record", metavar="FILE",
                     help="also save every raw kernel record to FILE, for `replay`")
    run.add_argument("--strict", action="store_true",
                     help="exit 1 if a hook attaches but delivers nothing in the self-test")
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("path", nargs="?", metavar="PATH", help="config file (default as for run)")
    replay = sub.add_parser("replay", help="run a recording through the pipeline (no kernel)")
    replay.add_argument("recording", metavar="FILE")
    replay.add_argument("--config", metavar="PATH", help="config file (default as for run)")
    return p


def _replay(cfg: Config, config_path: Path, path: str) -> int:
    """The pure pipeline over a recording: the same events `run` wrote, minus live /proc data."""
    from .runtime import make_pipeline

    pipe = make_pipeline(cfg, config_path)
    with open(path, "rb") as f:
        events = pipe.feed(list(recording.read(f)))
    sys.stdout.buffer.write(encode_lines(events))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = resolve_config_path(args.path if args.command == "check-config" else args.config)
    try:
        cfg = load_config(path)
        ruleset = load_ruleset(cfg, path)  # checks the pack, rules and rules.d too
    except ConfigError as e:
        print(f"randguard: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        print(f"{path}: ok ({len(ruleset.persistence)} detections, {len(ruleset.rules)} rules)",
              file=sys.stderr)
        return 0

    if args.command == "replay":
        try:
            return _replay(cfg, path, args.recording)
        except (OSError, ValueError) as e:
            print(f"randguard: {args.recording}: {e}", file=sys.stderr)
            return EXIT_RUNTIME

    from .runtime import Agent, configure_logging

    configure_logging(cfg.agent.log_level)
    try:
        if args.record:
            with open(args.record, "wb") as rec:
                return Agent(cfg, path, record=rec, strict=args.strict).run()
        return Agent(cfg, path, strict=args.strict).run()
    except (LoadError, LibbpfError, OSError) as e:
        print(f"randguard: error: {e}", file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
