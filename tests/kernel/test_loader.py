"""The loader on the real kernel: hook selection, the dispatcher's slots, shared maps."""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from agent_proc import fd_map_id, wait_no_orphans

from randguard.core import records, syscalls
from randguard.core.config import parse_config
from randguard.core.matcher import FileFilter
from randguard.kernel import loader

pytestmark = pytest.mark.kernel


def _filled_slots(ks: loader.KernelSide) -> dict[int, tuple[int, int]]:
    """The dispatcher's described slots: index -> (syscall id, abi)."""
    dispatch = next(o for o in ks.objects if o.path.endswith("dispatch.bpf.o"))
    info = dispatch.map("rg_sys_info")
    out = {}
    for i in range(info.max_entries):
        sid, abi = struct.unpack("<HB", info.lookup(struct.pack("<I", i))[:3])
        if sid:
            out[i] = (sid, abi)
    return out


def test_each_hook_gets_its_native_and_i386_slots_and_nothing_else() -> None:
    cfg = parse_config('[file]\nhooks = ["openat", "write", "sendfile"]\n'
                       '[process]\nhooks = ["execve", "fork", "exit"]\n'
                       '[events]\nnetwork = true\n[network]\nenabled = true\n'
                       'hooks = ["connect"]\n')
    with loader.load(cfg, FileFilter.from_config(cfg.file)) as ks:
        sys_ids = records.SYSCALLS.index
        i386 = syscalls.IA32_BASE
        connect = records.NET_SYSCALLS.index("connect")
        # what changes directory paths, followed for the directory cache whatever the hooks
        moves = {slot: (sys_ids(m), abi) for m in syscalls.MOVES
                 for slot, abi in ((syscalls.NUMBERS[m][0], 0),
                                   *((i386 + n, 1) for n in syscalls.NUMBERS[m][1]))
                 if slot is not None}
        assert {82: (sys_ids("rename"), 0), i386 + 38: (sys_ids("rename"), 1),
                165: (sys_ids("mount"), 0), i386 + 21: (sys_ids("mount"), 1),
                i386 + 22: (sys_ids("umount"), 1), 425: (sys_ids("io_uring_setup"), 0)
                }.items() <= moves.items()
        assert _filled_slots(ks) == moves | {
            257: (sys_ids("openat"), 0), i386 + 295: (sys_ids("openat"), 1),
            1: (sys_ids("write"), 0), i386 + 4: (sys_ids("write"), 1),
            40: (sys_ids("sendfile"), 0), i386 + 187: (sys_ids("sendfile"), 1),
            i386 + 239: (sys_ids("sendfile"), 1),
            59: (records.EXEC_SOURCES.index("execve"), 0), i386 + 11: (1, 1),
            42: (connect, 0), i386 + 362: (connect, 1),
            # i386 socketcall(SYS_CONNECT)
            i386 + 102: (records.NET_SYSCALLS.index("socketcall"), 1),
            syscalls.SOCKETCALL_BASE + 3: (connect, 1),
        }
        assert {"rg_sys_enter", "rg_sys_exit"} <= set(ks.attached)
    assert wait_no_orphans() == set()


def test_btf_loads_are_on_exactly_where_the_kernel_has_bpf_rdonly_cast() -> None:
    """bpf_rdonly_cast() came with 6.2: there the hot paths read by BTF loads (rg_btf_loads),
    before it they probe-read (the matrix runs both: 5.10 and 6.1 without, 6.12 and sid with)."""
    cfg = parse_config("")
    with loader.load(cfg, FileFilter.from_config(cfg.file)) as ks:
        fobj = next(o for o in ks.objects if o.path.endswith("file.bpf.o"))
        off, _ = fobj.rodata_vars()["rg_btf_loads"]
        rodata_map = next(m for m in fobj.maps() if m.endswith(".rodata"))
        rodata = fobj.map(rodata_map).lookup(struct.pack("<I", 0))
        # and the programs that use it were accepted by the verifier as built
        assert fobj.program_fd("rg_file_exit_open") >= 0
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    assert rodata[off] == int((major, minor) >= (6, 2)), os.uname().release


def test_resolver_attaches_where_fentry_works_else_only_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = parse_config("")
    with caplog.at_level(logging.WARNING), loader.load(cfg, FileFilter.from_config(cfg.file)) as ks:
        # io_uring's name handlers too, where the completion tracepoint names the request
        tps = loader.uring_tracepoints()
        resolver = set(loader.RESOLVER_HOOKS) | (
            set(loader.RESOLVER_URING_HOOKS) if tps is not None and not tps.by_data else set())
        names = [Path(o.path).name for o in ks.objects]
        if os.environ.get("RANDGUARD_EXPECT_FENTRY") == "1":  # the matrix's kernels
            # 5.10 cannot fentry a function that takes a struct (security_path_chown's ids)
            allowed = {"security_path_chown"} if os.uname().release < "6" else set()
            assert resolver - ks.hooks <= allowed, caplog.text
            assert sorted(resolver - ks.hooks) == ks.missing_hooks
        if resolver & ks.hooks:  # fentry works (the qemu guests' Debian kernels)
            assert names == ["process.bpf.o", "file.bpf.o", "dispatch.bpf.o", "resolve.bpf.o"]
            fobj, _, robj = ks.objects[1:]
            assert fd_map_id(fobj.map("rg_inflight_map").fd) == fd_map_id(
                robj.map("rg_inflight_map").fd)
            robj_progs = {robj.program_section(p).split("/", 1)[1]: p for p in robj.programs()}
            assert {robj_progs[h] for h in resolver & ks.hooks} <= set(ks.attached)
            # what could not be hooked is said once, naming only those
            assert caplog.text.count("cannot hook") == (1 if ks.missing_hooks else 0)
        else:  # no fentry (this development machine): one warning, the rest unchanged
            assert os.environ.get("RANDGUARD_EXPECT_FENTRY") != "1", caplog.text
            assert names == ["process.bpf.o", "file.bpf.o", "dispatch.bpf.o"]
            assert sorted(resolver) == ks.missing_hooks
            assert caplog.text.count("mount): cannot hook") == 1
            assert "libbpf:" not in caplog.text  # libbpf's own lines about it are not shown
            assert {"rename", "renameat2", "link", "symlink"} <= ks.hooks
    assert wait_no_orphans() == set()


def test_only_configured_hooks_are_attached_and_maps_are_shared() -> None:
    cfg = parse_config('[file]\nhooks = ["openat", "write"]\n[ebpf]\nbuffer_size = 256\n')
    with loader.load(cfg, FileFilter.from_config(cfg.file)) as ks:
        assert ks.hooks == {"openat", "write", "execve", "execveat", "sched_process_fork",
                            "sched_process_exec", "sched_process_exit"}
        # two dispatchers for every syscall, the family programs only tail-called
        assert set(ks.attached) == {"rg_sys_enter", "rg_sys_exit", "rg_proc_fork",
                                    "rg_proc_exec", "rg_proc_exit", "rg_file_fork",
                                    "rg_file_proc_gone"}
        proc, fobj, dispatch = ks.objects
        for name in loader.SHARED_MAPS:
            for obj in (fobj, dispatch):
                if name in obj.maps():
                    assert fd_map_id(proc.map(name).fd) == fd_map_id(obj.map(name).fd)
        assert ks.events.max_entries == 256 * 1024
        assert ks.drop_counts() == {"file": 0, "process": 0, "network": 0}


def test_file_events_off_loads_no_file_object() -> None:
    cfg = parse_config('[events]\nfile = false\n[process]\nhooks = ["fork", "exit"]\n')
    with loader.load(cfg, FileFilter.from_config(cfg.file)) as ks:
        assert len(ks.objects) == 1  # no syscall hooked: no dispatcher either
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
