"""The loader on the real kernel: hook selection, missing tracepoints, shared maps."""

from __future__ import annotations

import logging
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from agent_proc import fd_map_id, wait_no_orphans

from randguard import loader
from randguard.config import parse_config
from randguard.matcher import FileFilter

pytestmark = pytest.mark.kernel


def test_missing_tracepoint_warns_and_disables_only_that_hook(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = loader.tracepoint_exists
    monkeypatch.setattr(loader, "tracepoint_exists",
                        lambda cat, name: name != "sys_enter_rename" and real(cat, name))
    cfg = parse_config("")
    with caplog.at_level(logging.WARNING), loader.load(cfg, FileFilter.from_config(cfg.file)) as ks:
        # (the resolver's fentry hooks are missing too on kernels without fentry: not this test's)
        assert [h for h in ks.missing_hooks if h not in loader.RESOLVER_HOOKS] == ["rename"]
        assert "rename" not in ks.hooks and "rg_enter_rename" not in ks.attached
        assert {"renameat", "renameat2", "sched_process_exec"} <= ks.hooks
        assert {"rg_enter_renameat2", "rg_file_exit_names", "rg_proc_exec"} <= set(ks.attached)
    assert "file hook rename" in caplog.text and "hook disabled" in caplog.text
    assert wait_no_orphans() == set()


def test_resolver_attaches_where_fentry_works_else_only_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = parse_config("")
    with caplog.at_level(logging.WARNING), loader.load(cfg, FileFilter.from_config(cfg.file)) as ks:
        resolver = set(loader.RESOLVER_HOOKS)
        names = [Path(o.path).name for o in ks.objects]
        if resolver <= ks.hooks:  # fentry works (the qemu guests' Debian kernels)
            assert names == ["process.bpf.o", "file.bpf.o", "resolve.bpf.o"]
            fobj, robj = ks.objects[1:]
            assert fd_map_id(fobj.map("rg_inflight_map").fd) == fd_map_id(
                robj.map("rg_inflight_map").fd)
            assert {f"rg_resolve_{h.rsplit('_', 1)[1]}" for h in resolver} <= set(ks.attached)
            assert "rename, link and unlink paths" not in caplog.text
        else:  # no fentry (this development machine): one warning, the rest unchanged
            assert names == ["process.bpf.o", "file.bpf.o"]
            assert sorted(resolver) == ks.missing_hooks
            assert caplog.text.count("rename, link and unlink paths: cannot hook") == 1
            assert "libbpf:" not in caplog.text  # libbpf's own lines about it are not shown
            assert {"rename", "renameat2", "link", "symlink"} <= ks.hooks
    assert wait_no_orphans() == set()


def test_only_configured_hooks_are_attached_and_maps_are_shared() -> None:
    cfg = parse_config('[file]\nhooks = ["openat", "write"]\n[ebpf]\nbuffer_size = 256\n')
    with loader.load(cfg, FileFilter.from_config(cfg.file)) as ks:
        assert ks.hooks == {"openat", "write", "execve", "execveat", "sched_process_fork",
                            "sched_process_exec", "sched_process_exit"}
        # one exit program per file family serves each of its syscalls
        assert {"rg_file_exit_open", "rg_file_exit_write", "rg_exit_execve"} <= set(ks.attached)
        proc, fobj = ks.objects
        for name in loader.SHARED_MAPS:
            assert fd_map_id(proc.map(name).fd) == fd_map_id(fobj.map(name).fd)
        assert ks.events.max_entries == 256 * 1024
        assert ks.drop_counts() == {"file": 0, "process": 0, "network": 0}


def test_file_events_off_loads_no_file_object() -> None:
    cfg = parse_config('[events]\nfile = false\n[process]\nhooks = ["fork", "exit"]\n')
    with loader.load(cfg, FileFilter.from_config(cfg.file)) as ks:
        assert len(ks.objects) == 1
        assert not [p for p in ks.attached if p.startswith("rg_enter_")]
        assert set(ks.attached) == {"rg_proc_fork", "rg_proc_exec", "rg_proc_exit"}


def test_write_tracking_forgets_a_process_when_its_last_thread_exits(tmp_path: Path) -> None:
    """`rg_watched_procs` holds live processes only (a full one is counted, not evicted): a
    process that opened a watched file for writing is in it until its last thread is gone."""
    cfg = parse_config(f'[file]\nwatch_paths = ["{tmp_path}"]\nexclude_paths = []\n')
    child = (f"import os, sys, threading\n"
             f"fd = os.open('{tmp_path}/f', os.O_WRONLY | os.O_CREAT)\n"
             "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
             "print('ready', flush=True); sys.stdin.readline()\n")
    with loader.load(cfg, FileFilter.from_config(cfg.file)) as ks:
        procs = ks.objects[1].map("rg_watched_procs")
        p = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        key = struct.pack("<I", p.pid)
        try:
            assert p.stdout.readline() == "ready\n"
            assert procs.lookup(key) is not None  # tracked; a thread's exit left it there
        finally:
            p.communicate("\n", timeout=10)
        assert procs.lookup(key) is None
        assert ks.table_full_counts()["file"] == 0
    assert wait_no_orphans() == set()
