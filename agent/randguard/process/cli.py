"""Command line: `randguard run [--config PATH]` and `randguard check-config [PATH]`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .. import __version__
from ..core.config import Config, ConfigError, load_config, resolve_config_path
from ..core.ruleset import load_ruleset
from ..kernel.libbpf import LibbpfError, libbpf_version
from ..kernel.loader import LoadError
from . import journal, recording

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def _package_version() -> str:
    """The .deb's version (e.g. 0.1.0-1) when installed from it: the package build writes
    randguard/_build_info.py (packaging/debian/rules). Else the Python package's version."""
    try:
        from .._build_info import PACKAGE_VERSION  # type: ignore[import-not-found]
    except ImportError:
        return __version__
    return PACKAGE_VERSION


def _libbpf_file() -> str | None:
    """The file the dynamic linker resolved libbpf.so.1 to in this process (its name carries
    the full version, e.g. libbpf.so.1.1.2), from /proc/self/maps."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and "/libbpf.so" in parts[5]:
                    return parts[5].strip()
    except OSError:
        pass
    return None


def _version() -> str:
    where = _libbpf_file()
    return (f"randguard {_package_version()} (libbpf {libbpf_version()}"
            + (f", {where})" if where else ")"))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="randguard",
        description="eBPF endpoint telemetry: NDJSON events on stdout, logs on stderr.",
    )
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="load the BPF programs and stream events to stdout")
    run.add_argument("--config", metavar="PATH",
                     help="config file (default: $RANDGUARD_CONFIG, else the packaged default)")
    run.add_argument("--record", metavar="FILE",
                     help="also save every raw kernel record to FILE, for `replay`")
    run.add_argument("--strict", action="store_true",
                     help="exit 1 if a hook attaches but delivers nothing in the self-test")
    run.add_argument("--state-file", metavar="PATH",
                     help="the persistence inventory's state (default: [inventory] state_file)")
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("path", nargs="?", metavar="PATH", help="config file (default as for run)")
    det = sub.add_parser("detections",
                         help="print the detections a config puts in force (markdown) and exit")
    det.add_argument("--config", metavar="PATH", help="config file (default as for run)")
    replay = sub.add_parser("replay", help="run a recording through the pipeline (no kernel)")
    replay.add_argument("recording", metavar="FILE")
    replay.add_argument("--config", metavar="PATH", help="config file (default as for run)")
    return p


def _replay(cfg: Config, config_path: Path, path: str) -> int:
    """The pure pipeline over a recording: the same events `run` wrote (numbered the same way),
    minus live /proc data; the recording agent's self-test stays hidden."""
    from .output import Output
    from .runtime import make_pipeline

    pipe = make_pipeline(cfg, config_path)
    out = Output(sys.stdout.fileno())
    with open(path, "rb") as f:
        rec = recording.Recording(f)
        if rec.agent_pid is not None:
            pipe.state.hidden_parents.add(rec.agent_pid)
        out.submit(pipe.feed(list(rec.records())))
    out.close(timeout=60)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = resolve_config_path(args.path if args.command == "check-config" else args.config)
    try:
        cfg = load_config(path)
        ruleset = load_ruleset(cfg, path)  # checks the pack, rules and rules.d too
    except ConfigError as e:
        journal.error(f"randguard: {e}")
        return EXIT_CONFIG
    if args.command == "check-config":
        print(f"{path}: ok ({len(ruleset.persistence)} detections, {len(ruleset.rules)} rules)",
              file=sys.stderr)
        return 0

    if args.command == "detections":
        from .detection_table import markdown

        sys.stdout.write(markdown(ruleset))
        return 0

    if args.command == "replay":
        try:
            return _replay(cfg, path, args.recording)
        except (OSError, ValueError) as e:
            print(f"randguard: {args.recording}: {e}", file=sys.stderr)
            return EXIT_RUNTIME

    from .runtime import Agent, configure_logging

    configure_logging(cfg.agent.log_level)
    state = os.path.abspath(args.state_file) if args.state_file else None
    try:
        if args.record:
            with open(args.record, "wb") as rec:
                return Agent(cfg, path, record=rec, strict=args.strict, state_file=state).run()
        return Agent(cfg, path, strict=args.strict, state_file=state).run()
    except (LoadError, LibbpfError, OSError) as e:
        journal.error(f"randguard: error: {e}")
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
