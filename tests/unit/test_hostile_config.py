"""Hostile configs: every wrong type, empty and huge lists. Each gives a clear error or works;
none crashes or hangs."""

from __future__ import annotations

import pytest

from randguard.core.config import ConfigError, parse_config
from randguard.core.matcher import FileFilter, compile_kernel_filter

WRONG_TYPES = [
    ("[agent]\nid = 5\n", "agent.id", "expected str"),
    ("[agent]\nhealth_interval = 'soon'\n", "agent.health_interval", "expected float"),
    ("[ebpf]\nbuffer_size = 1.5\n", "ebpf.buffer_size", "expected int"),
    ("[events]\nfile = 'yes'\n", "events.file", "expected bool"),
    ("[file]\nhooks = 'openat'\n", "file.hooks", "expected array"),
    ("[file]\nwatch_paths = [1]\n", "file.watch_paths[0]", "expected str"),
    ("[process]\nmax_args = []\n", "process.max_args", "expected int"),
    ("[performance]\ndrop_when_full = 1\n", "performance.drop_when_full", "expected bool"),
    ("[detections]\npersistence = {}\n", "detections.persistence", "expected array"),
    ("rules = 3\n", "rules", "expected array"),
    ("[[rules]]\nid = 1\n", "rules[0].id", "expected str"),
    ("file = 3\n", "file", "expected table"),
]


@pytest.mark.parametrize(("text", "key", "reason"), WRONG_TYPES)
def test_every_wrong_type_names_the_key(text: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(text, "c.toml")
    assert str(e.value).startswith(f"c.toml: {key}: "), str(e.value)
    assert reason in str(e.value)


def test_empty_lists_are_valid_and_watch_nothing() -> None:
    cfg = parse_config("[file]\nwatch_paths = []\nwatch_patterns = []\nexclude_paths = []\n"
                       "read_paths = []\n")
    f = FileFilter.from_config(cfg.file)
    assert not f.wants("/etc/passwd", True) and not f.wants("/etc/shadow", False)
    kf = compile_kernel_filter(f)
    assert kf.trie == [] and kf.suffixes == [] and kf.pass_all == 0


def test_huge_lists_load_and_compile() -> None:
    """20,000 watch paths: every one in the kernel's trie, judged alike in userspace (how long
    it takes is the benchmarks' business, not a test's)."""
    paths = [f"/srv/tenant{i:05d}/conf" for i in range(20_000)]
    text = "[file]\nwatch_paths = [" + ", ".join(f'"{p}"' for p in paths) + "]\n"
    cfg = parse_config(text)
    f = FileFilter.from_config(cfg.file)
    kf = compile_kernel_filter(f)
    assert len(kf.trie) >= 2 * len(paths)  # plus the default excludes and read paths
    assert f.wants("/srv/tenant19999/conf/x", True) and not f.wants("/srv/tenant1/conf", True)
