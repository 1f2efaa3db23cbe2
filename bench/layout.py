"""Where the bench finds the repository and keeps its scratch files, and which core runs what."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = Path("/var/tmp/randguard-bench")
BUILD = WORK / "build"
WATCHED = WORK / "watched"  # added to watch_paths in the bench configs
UNWATCHED = WORK / "unwatched"  # under no watch, read or exclude path
AGENT = ROOT / ".venv" / "bin" / "randguard"
# The agent before the sys_enter/sys_exit dispatcher (one syscalls/ tracepoint pair per traced
# syscall): the "before" of that targets, measured in the same run (table 1)
BEFORE_REV = "acfd559"
AGENT_CPU, LOAD_CPU = 0, 1  # the tool under test on core 0, the generator on core 1
DOCS_MD = ROOT / "docs" / "benchmarks.md"
DOCS_JSON = ROOT / "docs" / "benchmarks.json"
