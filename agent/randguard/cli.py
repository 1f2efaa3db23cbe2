"""Command line: `randguard run [--config PATH]` and `randguard check-config [PATH]`."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .config import ConfigError, load_config, resolve_config_path
from .libbpf import LibbpfError, libbpf_version
from .loader import LoadError

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
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("path", nargs="?", metavar="PATH", help="config file (default as for run)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = resolve_config_path(args.config if args.command == "run" else args.path)
    try:
        cfg = load_config(path)
    except ConfigError as e:
        print(f"randguard: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        print(f"{path}: ok", file=sys.stderr)
        return 0

    from .runtime import Agent, configure_logging

    configure_logging(cfg.agent.log_level)
    try:
        return Agent(cfg).run()
    except (LoadError, LibbpfError, OSError) as e:
        print(f"randguard: error: {e}", file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
