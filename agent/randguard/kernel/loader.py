"""Loading and attaching the kernel side: the shell around libbpf.

Order matters and is the point of this module: open every object, size the shared maps, load
(the process object first: it owns the ring buffer that the others reuse), fill the kernel
filter, and only then attach. Anything that fails closes what was opened, so nothing is left
attached.
"""

from __future__ import annotations

import ctypes
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from ..core import matcher, records, syscalls
from ..core.config import Config
from .handle import Handle
from .libbpf import (
    BpfObject,
    LibbpfError,
    Map,
    kernel_has_func,
    possible_cpus,
    raw_tracepoint_args,
    recursion_misses,
)

log = logging.getLogger("randguard.loader")

# Maps every object shares: created by the first object loaded, reused by the others.
SHARED_MAPS = ("rg_events", "rg_drops", "rg_filtered", "rg_table_full", "rg_scratch_map",
               "rg_sys_info")

CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39


class LoadError(RuntimeError):
    """The kernel side could not be set up; the message is one line for the operator."""


def bpf_dir() -> Path:
    """Where the compiled objects are: $RANDGUARD_BPF_DIR, else next to this package."""
    env = os.environ.get("RANDGUARD_BPF_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "bpf"


def missing_capabilities(status_path: str = "/proc/self/status") -> list[str]:
    """The capabilities this process lacks to load and attach tracing programs."""
    with open(status_path) as f:
        for line in f:
            if line.startswith("CapEff:"):
                eff = int(line.split()[1], 16)
                break
        else:
            return ["CapEff unknown"]
    if eff & (1 << CAP_SYS_ADMIN):
        return []
    return [name for bit, name in ((CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON"))
            if not eff & (1 << bit)]


class KernelSide(Handle):
    """The loaded objects and their links; `close()` detaches and frees everything."""

    def __init__(self) -> None:
        self.objects: list[BpfObject] = []
        self.attached: list[str] = []  # program names
        self.hooks: set[str] = set()  # what they hook: syscalls, sched_process_* tracepoints
        self.missing_hooks: list[str] = []
        # what a program attached by name hooks (a raw_tp's section does not say)
        self.hook_of: dict[str, str] = {}
        self._persist: set[tuple[int, int, int]] = set()  # what rg_persist_inodes holds

    @property
    def events(self) -> Map:
        return self.objects[0].map("rg_events")

    def _per_family(self, map_name: str) -> dict[str, int]:
        m = self.objects[0].map(map_name)
        out = {}
        for i, fam in enumerate(records.FAMILIES):
            vals = m.lookup_percpu(struct.pack("<I", i))
            out[fam] = sum(struct.unpack_from("<Q", v)[0] for v in vals)
        return out

    def drop_counts(self) -> dict[str, int]:
        """Records the kernel could not put into the ring, per event family (summed over CPUs)."""
        return self._per_family("rg_drops")

    def filtered_counts(self) -> dict[str, int]:
        """Events the kernel filter dropped by config, per event family."""
        return self._per_family("rg_filtered")

    def table_full_counts(self) -> dict[str, int]:
        """What the kernel could not keep track of because its table was full (a syscall in
        flight, an exec, a process holding a tracked file): events lost, per family."""
        return self._per_family("rg_table_full")

    def skipped_runs(self) -> dict[str, int]:
        """Runs of each attached program the kernel skipped (its `recursion_misses`), by what
        it hooks. Where the kernel runs tracepoint programs preemptibly (7.2), a program
        preempted on a CPU is skipped for every other task that hits its hook there until it
        resumes: each skipped run of `sys_exit` is a syscall not followed to its end (an
        upper bound of events lost: most syscalls are not traced at all)."""
        out: dict[str, int] = {}
        for obj in self.objects:
            for prog in obj.programs():
                if prog in self.attached:
                    hook = (self.hook_of.get(prog)
                            or obj.program_section(prog).split("/", 1)[-1])
                    out[hook] = out.get(hook, 0) + recursion_misses(obj.program_fd(prog))
        return out

    def set_persist_inodes(self, keys: set[tuple[int, int, int]]) -> None:
        """The persistence files the kernel passes by inode, as (kernel dev, inode, generation;
        0: unknown, not compared): the map is brought to exactly `keys` (entries gone are
        deleted, new ones added; a changed generation is both)."""
        m = next((o.map("rg_persist_inodes") for o in self.objects
                  if "rg_persist_inodes" in o.maps()), None)
        if m is None:
            return  # no file object: nothing to pass
        for dev, ino, _gen in self._persist - keys:
            m.delete(records.INODE_KEY.pack(ino, dev))
        for dev, ino, gen in keys - self._persist:
            m.update(records.INODE_KEY.pack(ino, dev), records.INODE_GEN.pack(gen))
        self._persist = set(keys)

    def close(self) -> None:
        for obj in reversed(self.objects):
            obj.close()
        self.objects.clear()



def _open(name: str) -> BpfObject:
    path = bpf_dir() / f"{name}.bpf.o"
    if not path.exists():
        raise LoadError(f"{path}: BPF object missing (run `make` to build it)")
    obj = BpfObject(path)
    try:
        check_contract(obj)
    except BaseException:
        obj.close()
        raise
    return obj


def check_contract(obj: BpfObject) -> None:
    """Refuse an object built from another randguard.h than the one records.py mirrors: its
    record layouts, enum values or (where it has them) the path filter's structs or the
    dispatcher's slot numbering, as its BTF has them, differ from what the agent decodes and
    packs."""
    problems = (records.layout_mismatches(obj.struct_layout)
                + records.enum_mismatches(obj.enum_values))
    if "rg_filter_trie" in obj.maps():
        problems += matcher.filter_mismatches(obj.struct_layout)
    if "rg_sys_info" in obj.maps():
        problems += syscalls.dispatch_mismatches(obj.enum_values, obj.struct_layout)
    if problems:
        raise LoadError(f"{obj.path}: built from another randguard.h than the agent decodes: "
                        + "; ".join(problems))


def _share(obj: BpfObject, owner: BpfObject, rodata: dict[str, int]) -> None:
    """Before load: the settings `obj` has, and the shared maps it uses, taken from `owner`."""
    obj.set_rodata({k: v for k, v in rodata.items() if k in obj.rodata_vars()})
    for name in SHARED_MAPS:
        if name in obj.maps():
            obj.reuse_map(name, owner.map(name).fd)


def _fill_filter(obj: BpfObject, kf: matcher.KernelFilter) -> None:
    trie = obj.map("rg_filter_trie")
    if len(kf.trie) > trie.max_entries:
        # a reload grew past the map: let the kernel pass everything, userspace still filters
        log.warning("kernel filter: %d prefixes do not fit the %d-entry map until a restart; "
                    "the kernel passes every event meanwhile", len(kf.trie), trie.max_entries)
        every = matcher.VERDICT_WATCH | matcher.VERDICT_READ | matcher.VERDICT_FORCE
        kf = matcher.KernelFilter([], [], every)
    new = {matcher.pack_trie_key(e.prefix): matcher.pack_trie_value(e) for e in kf.trie}
    for key in list(trie.keys()):  # a reload: entries the new filter does not have go
        if key not in new:
            trie.delete(key)
    for key, value in new.items():
        trie.update(key, value)
    obj.map("rg_filter_conf_map").update(struct.pack("<I", 0), matcher.pack_filter_conf(kf))
    _fill_dir_below(obj, kf)


def dir_hash(prefix: bytes) -> int:
    """FNV-1a over little-endian 64-bit words (the last zero-padded), as file.bpf.c's
    dir_hash() computes it over a directory prefix ("/etc/")."""
    h = 0xCBF29CE484222325
    for i in range(0, len(prefix), 8):
        w = int.from_bytes(prefix[i : i + 8].ljust(8, b"\0"), "little")
        h = ((h ^ w) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _fill_dir_below(obj: BpfObject, kf: matcher.KernelFilter) -> None:
    """The list of directories with trie entries below them (the directory cache judges their
    files by name, never by directory; a mount or umount on them is reported), then a new
    epoch: verdicts cached under the previous filter are stale."""
    below = obj.map("rg_dir_below")
    new = {struct.pack("<Q", dir_hash(d)) for d in matcher.dirs_above(kf)}
    if len(new) > below.max_entries:
        log.warning("kernel filter: %d directories above watched paths do not fit the %d-entry "
                    "map; the directory cache is off", len(new), below.max_entries)
        _dcache_off(obj)
        new = set()
    for key in list(below.keys()):
        if key not in new:
            below.delete(key)
    for key in new:
        below.update(key, b"\1")
    epoch = obj.map("rg_dcache_epoch")
    zero = struct.pack("<I", 0)
    epoch.update(zero, struct.pack("<Q", struct.unpack("<Q", epoch.lookup(zero))[0] + 1))


def _dcache_off(obj: BpfObject) -> None:
    state = obj.map("rg_dcache_state_map")
    zero = struct.pack("<I", 0)
    gen, busy, _ = struct.unpack("<QQQ", state.lookup(zero))
    state.update(zero, struct.pack("<QQQ", gen + 1, busy, 1))


def _check_io_uring(fobj: BpfObject) -> None:
    """An io_uring set up before the agent started: the directory cache goes off (the hook on
    io_uring_setup, attached before this look, turns it off for any set up later)."""
    users = io_uring_users()
    if users:
        _dcache_off(fobj)
        log.info("directory cache off: io_uring in use (pid %s)", ", ".join(map(str, users[:5])))
    else:
        log.info("directory cache on")


def io_uring_users(proc: str = "/proc") -> list[int]:
    """PIDs holding an io_uring instance (its renames would not be seen by the directory
    cache's invalidation)."""
    def link(path: str) -> str:
        try:
            return os.readlink(path)
        except OSError:  # closed meanwhile
            return ""

    out = []
    for pid in filter(str.isdigit, os.listdir(proc)):
        try:
            fds = os.listdir(f"{proc}/{pid}/fd")
        except OSError:
            continue  # gone, or a kernel thread
        if any(link(f"{proc}/{pid}/fd/{fd}") == "anon_inode:[io_uring]" for fd in fds):
            out.append(int(pid))
    return out


def fill_filter(ks: KernelSide, file_filter: matcher.FileFilter) -> None:
    """Put a (new) file filter into the kernel: on start, before attaching; on reload, live."""
    for obj in ks.objects:
        if "rg_filter_trie" in obj.maps():
            _fill_filter(obj, matcher.compile_kernel_filter(file_filter))


def traced_numbers(hooks: dict[str, set[str]], moves: bool) -> dict[str, bytes]:
    """The dispatcher's rodata bitmaps: bit n of rg_enter_nrs (rg_exit_nrs) set when syscall
    number n, native or i386, has an enter (exit) slot; any other syscall returns at once."""
    bits = {"rg_enter_nrs": 0, "rg_exit_nrs": 0}
    for name, wanted in hooks.items():
        for slot in syscalls.slots(wanted, moves and name == "file"):
            if slot.index >= syscalls.SOCKETCALL_BASE:
                continue  # a socketcall call: its own slot is socketcall's
            nr = slot.index % syscalls.IA32_BASE
            bits["rg_exit_nrs"] |= 1 << nr
            if slot.handler.enter:
                bits["rg_enter_nrs"] |= 1 << nr
    return {k: v.to_bytes(syscalls.IA32_BASE // 8, "little") for k, v in bits.items()}


def _fill_dispatch(dispatch: BpfObject, objs: dict[str, BpfObject],
                   hooks: dict[str, set[str]], moves: bool) -> bool:
    """Put each hooked syscall's family programs into the dispatcher's slots, both ABIs.
    Returns whether any syscall needs the sys_enter dispatcher."""
    info, enter, exit_ = (dispatch.map(m) for m in ("rg_sys_info", "rg_enter_progs",
                                                     "rg_exit_progs"))
    any_enter = False
    for name, wanted in hooks.items():
        obj = objs[name]
        for slot in syscalls.slots(wanted, moves and name == "file"):
            key = struct.pack("<I", slot.index)
            info.update(key, syscalls.SYSINFO.pack(slot.id, slot.abi))
            if slot.index >= exit_.max_entries:
                continue  # a socketcall call: described, served by socketcall's own slot
            exit_.update(key, struct.pack("<I", obj.program_fd(slot.handler.exit)))
            if slot.handler.enter:
                enter.update(key, struct.pack("<I", obj.program_fd(slot.handler.enter)))
                any_enter = True
    return any_enter


def attach_syscalls(ks: KernelSide, owner: BpfObject, objs: dict[str, BpfObject],
                    hooks: dict[str, set[str]], rodata: dict[str, int],
                    moves: bool = False) -> None:
    """Load the dispatcher (sharing `owner`'s maps), give it the family programs of `objs`
    for the syscalls in `hooks` (object name -> hook names), and attach it: from then on
    those syscalls are traced, native and i386. `moves`: the file object also follows what
    changes directory paths, for its directory cache. No hooks: no dispatcher at all."""
    if not any(hooks.values()) and not moves:
        return
    dispatch = _open("dispatch")
    ks.objects.append(dispatch)
    _share(dispatch, owner, rodata)
    dispatch.set_rodata(traced_numbers(hooks, moves))
    dispatch.load()
    any_enter = _fill_dispatch(dispatch, objs, hooks, moves)
    # exit first: a syscall then never reaches an exit program without its enter program
    for prog in ("rg_sys_exit", "rg_sys_enter") if any_enter else ("rg_sys_exit",):
        dispatch.attach(prog)
        ks.attached.append(prog)
    for wanted in hooks.values():
        ks.hooks |= wanted


def _attach_sched(ks: KernelSide) -> None:
    """The scheduler hooks of every object (the syscall programs are only ever tail-called)."""
    for obj in ks.objects:
        for prog in obj.programs():
            section = obj.program_section(prog)
            if section.startswith("tp_btf/sched_"):
                obj.attach(prog)
                ks.attached.append(prog)
                ks.hooks.add(section.removeprefix("tp_btf/"))


# resolve.bpf.c: fentry programs on the kernel's path hooks, for the syscalls they serve
RESOLVER_HOOKS = {
    "security_path_rename": ("rename", "renameat", "renameat2"),
    "security_path_link": ("link", "linkat"),
    "security_path_symlink": ("symlink", "symlinkat"),
    "security_path_unlink": ("unlink", "unlinkat"),
    "security_path_rmdir": ("rmdir", "unlinkat"),
    "security_path_chmod": ("chmod", "fchmodat", "fchmodat2"),
    "security_path_chown": ("chown", "lchown", "fchownat"),
    "security_path_truncate": ("truncate",),
    "security_path_mkdir": ("mkdir", "mkdirat"),
    "security_path_mknod": ("mknod", "mknodat"),
    "security_sb_mount": ("mount",),
    "security_move_mount": ("move_mount",),
}
# io_uring's name operations (6.1 on: a handler each), so that the path hooks they reach note
# their targets for the request; wanted with the io_uring programs whose completion has it
RESOLVER_URING_HOOKS = ("io_renameat", "io_unlinkat", "io_mkdirat", "io_symlinkat", "io_linkat")


# traceable wherever fentry works at all (every kernel since 5.5): tried first
FIRST_RESOLVER_HOOK = "security_path_rename"


def _load_resolver(fobj: BpfObject, rodata: dict[str, int],
                   hooks: set[str]) -> tuple[BpfObject, dict[str, str]]:
    """resolve.bpf.o with the programs of `hooks` loaded and attached, and hook -> program name
    (raises LibbpfError, with nothing left open)."""
    obj = _open("resolve")
    try:
        _share(obj, fobj, rodata)
        for name in ("rg_inflight_map", "rg_uring_noted"):
            obj.reuse_map(name, fobj.map(name).fd)
        progs = {obj.program_section(p).split("/", 1)[1]: p for p in obj.programs()}
        for hook, prog in progs.items():
            obj.set_autoload(prog, hook in hooks)
        obj.load()
        for hook in sorted(hooks):
            obj.attach(progs[hook])
    except BaseException:
        obj.close()
        raise
    return obj, progs


def _add_resolver(ks: KernelSide, fobj: BpfObject, rodata: dict[str, int],
                  file_hooks: set[str], uring: bool) -> None:
    """resolve.bpf.o where this kernel can load and attach it (fentry needs BTF and ftrace):
    the real targets of rename, link and symlink, what unlink and rmdir remove, and the files
    chmod, chown, truncate, mkdir and mknod change or make by name. A hook the kernel cannot
    trace (5.10 cannot fentry a function taking a struct, as security_path_chown takes ids)
    leaves the others; without them names are joined lexically, so a symlink in a name is not
    followed: a warning, never a failed start."""
    wanted = {h for h, calls in RESOLVER_HOOKS.items() if file_hooks & set(calls)}
    if uring and wanted:
        wanted |= set(RESOLVER_URING_HOOKS)
    if not wanted:
        return
    libbpf_log = logging.getLogger("randguard.libbpf")
    level = libbpf_log.level
    libbpf_log.setLevel(logging.CRITICAL)  # failures are expected on some kernels: said below
    usable, error = wanted, None
    try:
        try:
            obj, progs = _load_resolver(fobj, rodata, wanted)
        except LibbpfError as e:  # which ones? each alone (small loads, at start only)
            usable, error = set(), e
            for hook in sorted(wanted, key=lambda h: h != FIRST_RESOLVER_HOOK):
                try:
                    _load_resolver(fobj, rodata, {hook})[0].close()
                    usable.add(hook)
                except LibbpfError:
                    if hook == FIRST_RESOLVER_HOOK:
                        break  # not even the oldest hook: no fentry here at all
            obj, progs = _load_resolver(fobj, rodata, usable) if usable else (None, {})
    finally:
        libbpf_log.setLevel(level)
    if error is not None:
        log.warning("paths by name (rename, link, unlink, chmod, chown, truncate, mkdir, mknod, "
                    "mount): cannot hook %s here (%s); names are joined as given, a symlink in "
                    "them is not followed", ", ".join(sorted(wanted - usable)), error)
        ks.missing_hooks += sorted(wanted - usable)
    if obj is not None:
        ks.objects.append(obj)
        ks.attached += [progs[h] for h in sorted(usable)]
        ks.hooks |= usable


URING_PROGRAMS = ("rg_uring_submit", "rg_uring_submit_content", "rg_uring_submit_sqe",
                  "rg_uring_submit_sqe_content", "rg_uring_complete", "rg_uring_complete_open",
                  "rg_uring_complete_names", "rg_uring_complete_data")


class UringTracepoints(NamedTuple):
    """io_uring's tracepoints as this kernel has them, for file.bpf.c's raw_tp programs."""

    submit: str  # io_uring_submit_req (6.4 on) or io_uring_submit_sqe
    req_arg: int  # the request's index among the submit tracepoint's arguments
    by_data: bool  # io_uring_complete carries no request: (ring, user_data, res, ...)

    @property
    def programs(self) -> dict[str, str]:
        """file.bpf.c's programs and the tracepoint of each: completion first, so that what a
        submission keeps is always taken out again. Submission has two (opens and names;
        content), each small enough for 5.10's verifier."""
        submit = "rg_uring_submit_sqe" if self.req_arg else "rg_uring_submit"
        return {"rg_uring_complete_data" if self.by_data else "rg_uring_complete":
                "io_uring_complete", submit: self.submit, f"{submit}_content": self.submit}

    @property
    def tail_calls(self) -> dict[str, str]:
        """Programs loaded, not attached: the program array each is reached through."""
        return {} if self.by_data else {"rg_uring_complete_open": "rg_uring_open_prog",
                                        "rg_uring_complete_names": "rg_uring_names_prog"}


_POINTERS = ("void *", "struct io_kiocb *")


def uring_tracepoints() -> UringTracepoints | None:
    """How this kernel's io_uring tracepoints carry the request (so its names, file and result):
    submission gets (req, ...) from 6.1 on and (ctx, req, opcode, user_data, ...) on 5.15 (and
    Debian's 5.10); completion gets (ctx, req, ...), except on 5.15's (ctx, user_data, res,
    ...). None: they cannot be followed."""
    args = raw_tracepoint_args(
        ("io_uring_submit_req", "io_uring_submit_sqe", "io_uring_complete"))
    done = args.get("io_uring_complete", [])
    if len(done) >= 2 and done[1] in _POINTERS:
        by_data = False
    elif done[:3] == ["void *", "u64", "int"]:
        by_data = True
    else:
        return None
    for submit in ("io_uring_submit_req", "io_uring_submit_sqe"):
        a = args.get(submit, [])
        if a[:1] == ["struct io_kiocb *"] and not by_data:
            return UringTracepoints(submit, 0, False)
        if len(a) > 3 and a[1] in _POINTERS and a[2:4] == ["u8", "u64"]:
            return UringTracepoints(submit, 1, by_data)
    return None


def _attach_uring(ks: KernelSide, fobj: BpfObject, tps: UringTracepoints) -> None:
    """file.bpf.c's io_uring programs, on the tracepoints this kernel has."""
    for prog, tp in tps.programs.items():
        fobj.attach(prog, raw_tracepoint=tp)
        ks.attached.append(prog)
        ks.hook_of[prog] = tp
        ks.hooks.add(tp)


def _load_file(add: Callable[..., BpfObject], ks: KernelSide, cfg: Config,
               file_filter: matcher.FileFilter, tps: UringTracepoints | None,
               ) -> tuple[BpfObject, UringTracepoints | None]:
    """file.bpf.o with its filter, and the io_uring programs for `tps`; where those cannot load
    (a verifier this agent was not tested on), without them: a warning and a missing hook."""
    kf = matcher.compile_kernel_filter(file_filter)

    def load(tps: UringTracepoints | None) -> BpfObject:
        return add("file", {"rg_dcache_on": int(cfg.performance.directory_cache),
                            "rg_uring_by_data": int(tps.by_data) if tps else 0},
                   # room for the filter, and for a reload that adds to it
                   {"rg_filter_trie": max(4096, 2 * len(kf.trie)),
                    "rg_inflight_map": cfg.performance.max_syscalls_in_flight},
                   skip=tuple(p for p in URING_PROGRAMS
                              if tps is None or p not in {**tps.programs, **tps.tail_calls}))

    try:
        fobj = load(tps)
    except LibbpfError as e:
        if tps is None:
            raise
        ks.objects.pop().close()
        log.warning("io_uring file operations: cannot load their programs here (%s); only "
                    "io_uring_setup is seen", e)
        ks.missing_hooks.append("io_uring")
        fobj, tps = load(None), None
    _fill_filter(fobj, kf)
    # the attribute calls on a name hand "" with AT_EMPTY_PATH to the fd program; an io_uring
    # open's completion hands an open that its name did not pass to the open program
    for prog, array in {"rg_file_exit_attr_fd": "rg_attr_fd_prog",
                        **(tps.tail_calls if tps else {})}.items():
        fobj.map(array).update(struct.pack("<I", 0), struct.pack("<I", fobj.program_fd(prog)))
    return fobj, tps


def load(cfg: Config, file_filter: matcher.FileFilter) -> KernelSide:
    """Load, configure and attach everything the config asks for."""
    missing = missing_capabilities()
    if missing:
        raise LoadError(f"missing capabilities: {', '.join(missing)} (run as root)")
    ring_bytes = cfg.ebpf.buffer_size * 1024
    rodata = {"rg_self_tgid": os.getpid(), "rg_wakeup_bytes": ring_bytes // 4,
              "rg_btf_loads": int(kernel_has_func("bpf_rdonly_cast"))}
    ks = KernelSide()
    objs: dict[str, BpfObject] = {}
    hooks: dict[str, set[str]] = {}  # object name -> the syscalls it serves
    try:
        proc = _load_process(ks, cfg, rodata, ring_bytes)
        objs["process"] = proc
        if cfg.events.process and cfg.process.enabled:
            hooks["process"] = set(cfg.process.hooks) & syscalls.HANDLERS.keys()

        def add(name: str, extra_rodata: dict[str, int],
                sizes: dict[str, int] | None = None, skip: tuple[str, ...] = ()) -> BpfObject:
            obj = _open(name)
            ks.objects.append(obj)
            _share(obj, proc, rodata | extra_rodata)
            for map_name, n in (sizes or {}).items():
                obj.set_max_entries(map_name, n)
            for prog in skip:
                obj.set_autoload(prog, False)
            obj.load()
            objs[name] = obj
            return obj

        fobj = tps = None
        if cfg.events.file and cfg.file.enabled:
            if "io_uring" in cfg.file.hooks:
                tps = uring_tracepoints()
                if tps is None:
                    log.warning("io_uring file operations: this kernel's io_uring tracepoints "
                                "do not carry the request; only io_uring_setup is seen")
                    ks.missing_hooks.append("io_uring")
            fobj, tps = _load_file(add, ks, cfg, file_filter, tps)
            hooks["file"] = set(cfg.file.hooks) & syscalls.HANDLERS.keys()
        if cfg.events.network and cfg.network.enabled:
            add("network", {"rg_net_all_families": int(cfg.network.all_families)},
                {"rg_net_inflight": cfg.performance.max_syscalls_in_flight})
            net = set(cfg.network.hooks)
            hooks["network"] = net | ({"accept4"} if "accept" in net else set())
        # Attach last: the filter is in place before the first event can fire.
        _attach_sched(ks)
        attach_syscalls(ks, proc, objs, hooks, rodata,
                        moves=fobj is not None and cfg.performance.directory_cache)
        if fobj is not None:
            if tps is not None:
                _attach_uring(ks, fobj, tps)
            _add_resolver(ks, fobj, rodata, hooks["file"],
                          uring=tps is not None and not tps.by_data)
            if cfg.performance.directory_cache:
                _check_io_uring(fobj)
    except BaseException:
        ks.close()
        raise
    _give_back_heap()
    return ks


def _load_process(ks: KernelSide, cfg: Config, rodata: dict[str, int],
                  ring_bytes: int) -> BpfObject:
    """process.bpf.o, loaded first: it owns the maps the other objects share (the ring, the
    scratch record, the counters)."""
    proc = _open("process")
    ks.objects.append(proc)
    pc = cfg.process
    proc.set_rodata(rodata | {
        "rg_report_threads": int(pc.report_threads),
        "rg_args_bytes": pc.max_args_bytes if pc.collect_args else 0,
        "rg_collect_cwd": int(pc.collect_cwd),
    })
    proc.set_max_entries("rg_events", ring_bytes)
    # indexed by CPU id: every possible CPU needs its slot
    proc.set_max_entries("rg_scratch_map", possible_cpus())
    proc.set_max_entries("rg_exec_pending_map", cfg.performance.max_pending_exec_sources)
    proc.load()
    return proc


_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def _give_back_heap() -> None:
    """libbpf parsed the kernel's BTF (several MiB) to load the objects and has freed it, but
    glibc keeps freed heap mapped: return it, or the agent's RSS carries ~12 MiB for good.
    Then fix glibc's mmap threshold: by default it rises to the largest block freed, so each
    output batch's buffer (hundreds of KiB) would come from the heap and leave it fragmented
    and resident (RSS 56-61 MiB at 650,000 events/s; 50 MiB with the threshold fixed, for a
    map and an unmap per batch)."""
    libc = ctypes.CDLL(None)
    trim = getattr(libc, "malloc_trim", None)  # glibc only
    if trim is not None:
        trim(0)
        libc.mallopt(_M_MMAP_THRESHOLD, 256 * 1024)
