"""Minimal cffi ABI-mode binding to the system libbpf (1.1 or newer).

ABI mode (``ffi.cdef`` + ``ffi.dlopen``) so the agent needs no compiler at run time: only
``libbpf.so.1`` from the distribution. Every Python object owns its libbpf handle and releases
it deterministically: use the context managers, or call ``close()`` / ``destroy()`` (both
idempotent). A ``BpfObject`` owns the links attached from it and destroys them when closed.

Error convention of libbpf >= 1.0, which this module relies on: pointer-returning calls return
NULL and set errno (read at once, through ``ffi.errno``); int-returning calls return -errno.

x86-64 only where noted (the print callback passes a ``va_list`` through as a pointer).
"""

from __future__ import annotations

import errno as _errno
import logging
import os
import platform
import struct
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import cffi

from .handle import Handle

__all__ = [
    "BpfObject",
    "LibbpfError",
    "Link",
    "Map",
    "ensure_tracefs",
    "install_logger",
    "libbpf_version",
    "possible_cpus",
    "tracepoint_exists",
]

_CDEF = """
struct bpf_object;
struct bpf_program;
struct bpf_map;
struct bpf_link;
struct btf;
struct bpf_object_open_opts;

/* linux/btf.h; the union {size, type} is one u32. */
struct btf_type { uint32_t name_off; uint32_t info; uint32_t size_or_type; };
struct btf_var_secinfo { uint32_t type; uint32_t offset; uint32_t size; };
struct btf_member { uint32_t name_off; uint32_t type; uint32_t offset; };
struct btf_enum { uint32_t name_off; int32_t val; };
struct btf_param { uint32_t name_off; uint32_t type; };

/* The x86-64 System V va_list element; va_list itself is an array of one of these, so it is
   passed to functions as a pointer, and va_copy is a plain copy of these 24 bytes. */
typedef struct {
    unsigned int gp_offset;
    unsigned int fp_offset;
    void *overflow_arg_area;
    void *reg_save_area;
} rg_va_list_tag;

enum libbpf_print_level { LIBBPF_WARN = 0, LIBBPF_INFO = 1, LIBBPF_DEBUG = 2 };
typedef int (*rg_print_fn_t)(enum libbpf_print_level level, const char *fmt, rg_va_list_tag *ap);

uint32_t libbpf_major_version(void);
uint32_t libbpf_minor_version(void);
rg_print_fn_t libbpf_set_print(rg_print_fn_t fn);
int libbpf_strerror(int err, char *buf, size_t size);
int libbpf_num_possible_cpus(void);

struct bpf_object *bpf_object__open_file(const char *path, const struct bpf_object_open_opts *opts);
int bpf_object__load(struct bpf_object *obj);
void bpf_object__close(struct bpf_object *obj);
struct btf *bpf_object__btf(const struct bpf_object *obj);
struct bpf_map *bpf_object__next_map(const struct bpf_object *obj, const struct bpf_map *map);
struct bpf_map *bpf_object__find_map_by_name(const struct bpf_object *obj, const char *name);
struct bpf_program *bpf_object__next_program(const struct bpf_object *obj,
                                             struct bpf_program *prog);
struct bpf_program *bpf_object__find_program_by_name(const struct bpf_object *obj,
                                                     const char *name);

const char *bpf_program__name(const struct bpf_program *prog);
const char *bpf_program__section_name(const struct bpf_program *prog);
int bpf_program__fd(const struct bpf_program *prog);
int bpf_program__set_autoload(struct bpf_program *prog, bool autoload);
struct bpf_link *bpf_program__attach(const struct bpf_program *prog);
struct bpf_link *bpf_program__attach_tracepoint(const struct bpf_program *prog,
                                                const char *tp_category, const char *tp_name);
struct bpf_link *bpf_program__attach_raw_tracepoint(const struct bpf_program *prog,
                                                    const char *tp_name);
int bpf_link__destroy(struct bpf_link *link);

const char *bpf_map__name(const struct bpf_map *map);
int bpf_map__fd(const struct bpf_map *map);
int bpf_map__reuse_fd(struct bpf_map *map, int fd);
int bpf_map__type(const struct bpf_map *map);
uint32_t bpf_map__max_entries(const struct bpf_map *map);
int bpf_map__set_max_entries(struct bpf_map *map, uint32_t max_entries);
uint32_t bpf_map__key_size(const struct bpf_map *map);
uint32_t bpf_map__value_size(const struct bpf_map *map);
const void *bpf_map__initial_value(struct bpf_map *map, size_t *psize);

int32_t btf__find_by_name_kind(const struct btf *btf, const char *type_name, uint32_t kind);
const struct btf_type *btf__type_by_id(const struct btf *btf, uint32_t id);
const char *btf__name_by_offset(const struct btf *btf, uint32_t offset);
long btf__resolve_size(const struct btf *btf, uint32_t type_id);
struct btf *btf__load_vmlinux_btf(void);
void btf__free(struct btf *btf);

int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags);
int bpf_map_lookup_elem(int fd, const void *key, void *value);
int bpf_map_delete_elem(int fd, const void *key);
int bpf_map_get_next_key(int fd, const void *key, void *next_key);
int bpf_prog_get_fd_by_id(uint32_t id);
int bpf_obj_get_info_by_fd(int bpf_fd, void *info, uint32_t *info_len);
"""

_LIBC_CDEF = """
int vsnprintf(char *str, size_t size, const char *format, rg_va_list_tag *ap);
int mount(const char *source, const char *target, const char *filesystemtype,
          unsigned long mountflags, const void *data);
"""

ffi = cffi.FFI()
ffi.cdef(_CDEF + _LIBC_CDEF)
_lib = ffi.dlopen("libbpf.so.1")
_libc = ffi.dlopen("libc.so.6")

_BTF_KIND_PTR = 2
_BTF_KIND_STRUCT = 4
_BTF_KIND_ENUM = 6
_BTF_KIND_TYPEDEF = 8
_BTF_KIND_FUNC = 12
_BTF_KIND_FUNC_PROTO = 13
_BTF_KIND_DATASEC = 15
_VA_LIST_SIZE = 24
_X86_64 = platform.machine() in ("x86_64", "AMD64")

# Map types whose lookups and updates move one value per possible CPU (linux/bpf.h).
_PERCPU_MAP_TYPES = frozenset({5, 6, 10, 21})  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH,
# PERCPU_CGROUP_STORAGE

TRACEFS = "/sys/kernel/tracing"


def _strerror(err: int) -> str:
    """libbpf_strerror also knows libbpf's own codes (4000+, e.g. 'not an ELF file')."""
    buf = ffi.new("char[]", 256)
    if _lib.libbpf_strerror(err, buf, 256) == 0:
        return ffi.string(buf).decode(errors="replace")
    return os.strerror(err)


class LibbpfError(OSError):
    """A failed libbpf call: keeps errno and names the operation and its object/program/map.

    ``str()`` reads like "load /path/file.bpf.o: Invalid argument", so a log line alone says
    what failed and on what.
    """

    def __init__(self, err: int, operation: str, target: str, hint: str = "") -> None:
        err = abs(err) or _errno.EIO  # a failure without errno is still a failure
        super().__init__(err, _strerror(err))
        self.operation = operation
        self.target = target
        self.hint = hint

    def __str__(self) -> str:
        msg = f"{self.operation} {self.target}: {self.strerror}"
        return f"{msg} ({self.hint})" if self.hint else msg


def libbpf_version() -> str:
    """The loaded libbpf's "major.minor", for logs and feature decisions (1.1 lacks some APIs)."""
    return f"{_lib.libbpf_major_version()}.{_lib.libbpf_minor_version()}"


# --------------------------------------------------------------------------- logging

_logger: logging.Logger = logging.getLogger("randguard.libbpf")
_LEVELS = (logging.WARNING, logging.INFO, logging.DEBUG)


def _format(fmt: object, ap: object) -> str:
    """vsnprintf on copies of the va_list (va_copy is a 24-byte copy on x86-64), so a message of
    any length (a verifier log can be megabytes) is formatted whole, never truncated."""
    size = 1024
    while True:
        ap_copy = ffi.new("rg_va_list_tag *")
        ffi.memmove(ap_copy, ap, _VA_LIST_SIZE)
        buf = ffi.new("char[]", size)
        n = _libc.vsnprintf(buf, size, fmt, ap_copy)
        if n < 0:
            return ffi.string(fmt).decode(errors="replace")
        if n < size:
            return ffi.string(buf, n).decode(errors="replace")
        size = n + 1


def _print_cb(level: int, fmt: object, ap: object) -> int:
    try:
        logger = _logger
        pylevel = _LEVELS[level] if 0 <= level < len(_LEVELS) else logging.DEBUG
        if not logger.isEnabledFor(pylevel):
            return 0
        # elsewhere the va_list cannot be passed through portably: log the format string
        msg = _format(fmt, ap) if _X86_64 else ffi.string(fmt).decode(errors="replace")
        logger.log(pylevel, "%s", msg.rstrip("\n"))
    except Exception:  # an exception escaping a cffi callback would go to raw stderr
        pass
    return 0


# Referenced from the module for the life of the process: libbpf keeps the raw pointer, and a
# collected callback would crash the process at the next libbpf message.
_PRINT_CALLBACK = ffi.callback("rg_print_fn_t", _print_cb, error=0)


def install_logger(logger: logging.Logger) -> None:
    """Route every libbpf message to ``logger`` (WARN->warning, INFO->info, DEBUG->debug).

    libbpf's default printer writes to raw stderr, which would corrupt the agent's output and
    bypass its log configuration. Installed once with ``randguard.libbpf`` at import.
    """
    global _logger
    _logger = logger
    _lib.libbpf_set_print(_PRINT_CALLBACK)


install_logger(_logger)


# --------------------------------------------------------------------------- tracefs

def _mount_tracefs(target: str) -> None:
    rc = _libc.mount(b"nodev", target.encode(), b"tracefs", 0, ffi.NULL)
    if rc != 0:
        err = ffi.errno
        raise OSError(
            err,
            f"tracefs is not mounted and mounting it at {target} failed: {os.strerror(err)}"
            " (needs root / CAP_SYS_ADMIN)",
        )


def ensure_tracefs() -> str:
    """Make sure tracefs is mounted at /sys/kernel/tracing and return that path.

    Tracepoint attach resolves the event id through tracefs; on hosts that do not mount it at
    boot every tracepoint attach fails with ENOENT until it is mounted.
    """
    events = os.path.join(TRACEFS, "events")
    if os.path.isdir(events):
        return TRACEFS
    if not os.path.isdir(TRACEFS):
        raise OSError(_errno.ENOENT, f"{TRACEFS} does not exist (is sysfs mounted?)")
    _mount_tracefs(TRACEFS)
    if not os.path.isdir(events):
        raise OSError(_errno.ENOENT, f"mounted tracefs at {TRACEFS} but it has no events/")
    return TRACEFS


def tracepoint_exists(category: str, name: str) -> bool:
    """Whether the kernel has tracepoint ``category/name`` (mounting tracefs if needed), so
    callers can skip optional probes instead of failing at attach."""
    for part in (category, name):
        if not part or "/" in part or part in (".", ".."):
            raise ValueError(f"bad tracepoint component {part!r}")
    return os.path.isdir(os.path.join(ensure_tracefs(), "events", category, name))


def _btf_kind(t: object) -> int:
    return (t.info >> 24) & 0x1F


def _btf_type_name(btf: object, type_id: int) -> str:
    """A C-ish name of a BTF type: "struct io_kiocb *", "void *", "bool"."""
    if type_id == 0:
        return "void"
    t = _lib.btf__type_by_id(btf, type_id)
    if _btf_kind(t) == _BTF_KIND_PTR:
        return _btf_type_name(btf, t.size_or_type) + " *"
    name = _cstr(_lib.btf__name_by_offset(btf, t.name_off))
    return f"struct {name}" if _btf_kind(t) == _BTF_KIND_STRUCT else name


def kernel_has_func(name: str) -> bool:
    """Whether the kernel's BTF declares function ``name`` (a kfunc such as bpf_rdonly_cast:
    the programs that may call it are told at load, so that elsewhere the call is dead code)."""
    btf = _lib.btf__load_vmlinux_btf()
    if btf == ffi.NULL:
        return False
    try:
        return _lib.btf__find_by_name_kind(btf, name.encode(), _BTF_KIND_FUNC) > 0
    finally:
        _lib.btf__free(btf)


def raw_tracepoint_args(names: Sequence[str]) -> dict[str, list[str]]:
    """The argument types of those of the kernel's tracepoints ``names`` it has, as its BTF
    declares them (``btf_trace_<name>``, the tracepoint's own data pointer left out): what a
    raw_tp program finds in its context, whose layout changes across kernel versions."""
    btf = _lib.btf__load_vmlinux_btf()
    if btf == ffi.NULL:
        return {}
    try:
        out = {}
        for name in names:
            tid = _lib.btf__find_by_name_kind(btf, f"btf_trace_{name}".encode(),
                                              _BTF_KIND_TYPEDEF)
            if tid < 0:
                continue
            ptr = _lib.btf__type_by_id(btf, _lib.btf__type_by_id(btf, tid).size_or_type)
            proto = _lib.btf__type_by_id(btf, ptr.size_or_type)
            if _btf_kind(proto) != _BTF_KIND_FUNC_PROTO:
                continue
            params = ffi.cast("const struct btf_param *", proto + 1)
            out[name] = [_btf_type_name(btf, params[i].type)
                         for i in range(1, proto.info & 0xFFFF)]
        return out
    finally:
        _lib.btf__free(btf)


# --------------------------------------------------------------------------- objects

def _cstr(ptr: object) -> str:
    return "" if ptr == ffi.NULL else ffi.string(ptr).decode(errors="replace")


class Link(Handle):
    """An attachment of one program; destroying it detaches the program."""

    def __init__(self, ptr: object, program: str) -> None:
        self._ptr = ptr
        self.program = program

    def destroy(self) -> None:
        """Detach now (bpf_link__destroy). Idempotent."""
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            _lib.bpf_link__destroy(ptr)

    close = destroy

    @property
    def destroyed(self) -> bool:
        """True once detached."""
        return self._ptr is None

    def __del__(self) -> None:
        # Safety net only; BpfObject.close() destroys its links deterministically.
        if getattr(self, "_ptr", None) is not None:
            self.destroy()

    def __repr__(self) -> str:
        state = "destroyed" if self._ptr is None else "attached"
        return f"<Link {self.program} {state}>"


def _map_int(what: str, doc: str) -> property:
    """A read-only Map property: libbpf's bpf_map__`what`()."""
    fn = getattr(_lib, f"bpf_map__{what}")

    def get(self: Map) -> int:
        self._check()
        return int(fn(self._ptr))

    return property(get, doc=doc)


class Map:
    """A map of a ``BpfObject``; valid while the object is open. Element access goes through the
    map fd (bpf_map_*_elem), so it sees what the kernel side sees."""

    def __init__(self, obj: BpfObject, ptr: object, name: str) -> None:
        self._obj = obj
        self._ptr = ptr
        self.name = name

    def _check(self) -> None:
        if self._obj._ptr is None:
            raise ValueError(f"map {self.name}: its object {self._obj.path} is closed")

    @property
    def fd(self) -> int:
        """The map fd (owned by the object; do not close it). Exists after load or reuse_map."""
        self._check()
        fd = _lib.bpf_map__fd(self._ptr)
        if fd < 0:
            raise LibbpfError(_errno.EBADF, "fd of map", f"{self.name} (object not loaded)")
        return fd

    key_size = _map_int("key_size", "Key size in bytes.")
    value_size = _map_int("value_size",
                          "Value size in bytes (of one CPU's value for per-CPU maps).")
    max_entries = _map_int("max_entries", "max_entries (the byte size for a ring buffer).")
    type = _map_int("type", "The BPF_MAP_TYPE_* number.")

    def _key(self, key: bytes) -> object:
        if len(key) != self.key_size:
            raise ValueError(f"map {self.name}: key is {len(key)} bytes, expected {self.key_size}")
        return ffi.from_buffer(key)

    def _percpu_layout(self) -> tuple[int, int]:
        return possible_cpus(), (self.value_size + 7) & ~7

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        """Set ``key`` to ``value`` (BPF_ANY/BPF_NOEXIST/BPF_EXIST in flags). For a per-CPU
        map, ``value`` is either one value (copied to every CPU) or the full per-CPU array."""
        fd = self.fd
        k = self._key(key)
        vs = self.value_size
        if self.type in _PERCPU_MAP_TYPES:
            ncpus, stride = self._percpu_layout()
            if len(value) == vs:
                value = (bytes(value) + bytes(stride - vs)) * ncpus
            elif len(value) != ncpus * stride:
                raise ValueError(
                    f"map {self.name}: per-CPU value is {len(value)} bytes, expected {vs}"
                    f" or {ncpus}*{stride}"
                )
        elif len(value) != vs:
            raise ValueError(f"map {self.name}: value is {len(value)} bytes, expected {vs}")
        rc = _lib.bpf_map_update_elem(fd, k, ffi.from_buffer(value), flags)
        if rc < 0:
            raise LibbpfError(-rc, "update map", self.name)

    def lookup(self, key: bytes) -> bytes | None:
        """The value at ``key``, or None when there is none (ENOENT)."""
        fd = self.fd
        k = self._key(key)
        if self.type in _PERCPU_MAP_TYPES:
            # the kernel would write ncpus values into a one-value buffer
            raise TypeError(f"map {self.name} is per-CPU: use lookup_percpu()")
        buf = ffi.new("char[]", max(self.value_size, 1))
        rc = _lib.bpf_map_lookup_elem(fd, k, buf)
        if rc == -_errno.ENOENT:
            return None
        if rc < 0:
            raise LibbpfError(-rc, "lookup in map", self.name)
        return ffi.buffer(buf, self.value_size)[:]

    def lookup_percpu(self, key: bytes) -> list[bytes]:
        """One value per possible CPU (per-CPU maps), e.g. to sum drop counters."""
        fd = self.fd
        k = self._key(key)
        ncpus, stride = self._percpu_layout()
        vs = self.value_size
        buf = ffi.new("char[]", ncpus * stride)
        rc = _lib.bpf_map_lookup_elem(fd, k, buf)
        if rc < 0:
            if rc == -_errno.ENOENT:
                raise KeyError(key)
            raise LibbpfError(-rc, "lookup in map", self.name)
        raw = ffi.buffer(buf)[:]
        return [raw[i * stride : i * stride + vs] for i in range(ncpus)]

    def delete(self, key: bytes) -> bool:
        """Delete ``key``; False if it was not there."""
        fd = self.fd
        rc = _lib.bpf_map_delete_elem(fd, self._key(key))
        if rc == -_errno.ENOENT:
            return False
        if rc < 0:
            raise LibbpfError(-rc, "delete from map", self.name)
        return True

    def keys(self) -> Iterator[bytes]:
        """Iterate keys (bpf_map_get_next_key). For hash maps, deleting while iterating may
        restart the walk, as in the kernel API."""
        fd = self.fd
        ks = self.key_size
        cur = ffi.NULL
        nxt = ffi.new("char[]", max(ks, 1))
        while True:
            self._check()  # a closed object's fd number may already belong to something else
            rc = _lib.bpf_map_get_next_key(fd, cur, nxt)
            if rc == -_errno.ENOENT:
                return
            if rc < 0:
                raise LibbpfError(-rc, "iterate map", self.name)
            key = ffi.buffer(nxt, ks)[:]
            yield key
            cur = ffi.from_buffer(key)

    def __repr__(self) -> str:
        return f"<Map {self.name}>"


# struct bpf_prog_info (uapi linux/bpf.h, 5.12+): where recursion_misses is, and its size
_PROG_INFO_SIZE, _RECURSION_MISSES_OFF = 232, 208


def recursion_misses(prog_fd: int) -> int:
    """Runs of a program the kernel skipped because it was already running on that CPU: on
    kernels whose syscall tracepoints run their programs preemptibly (7.2), another task's
    syscall on the CPU of a preempted program is not seen at all. 0 where the kernel does
    not count them (before 5.12)."""
    buf = ffi.new("char[]", _PROG_INFO_SIZE)
    n = ffi.new("uint32_t *", _PROG_INFO_SIZE)
    rc = _lib.bpf_obj_get_info_by_fd(prog_fd, buf, n)
    if rc < 0:
        raise LibbpfError(-rc, "get info of program fd", str(prog_fd))
    if n[0] < _RECURSION_MISSES_OFF + 8:
        return 0
    return struct.unpack_from("<Q", ffi.buffer(buf, _PROG_INFO_SIZE), _RECURSION_MISSES_OFF)[0]


def prog_recursion_misses(prog_id: int) -> int:
    """recursion_misses() of a loaded program by its id (another process's, for tests)."""
    fd = _lib.bpf_prog_get_fd_by_id(prog_id)
    if fd < 0:
        raise LibbpfError(-fd, "get fd of program id", str(prog_id))
    try:
        return recursion_misses(fd)
    finally:
        os.close(fd)


_ncpus: int | None = None


def possible_cpus() -> int:
    global _ncpus
    if _ncpus is None:
        n = _lib.libbpf_num_possible_cpus()
        if n < 0:
            raise LibbpfError(-n, "count", "possible CPUs")
        _ncpus = n
    return _ncpus


def _btf_datasec(btf: object, section: bytes) -> dict[str, tuple[int, int]]:
    """``{variable: (offset, size)}`` of a BTF data section (``.rodata``); {} without one."""
    sec_id = _lib.btf__find_by_name_kind(btf, section, _BTF_KIND_DATASEC)
    if sec_id < 0:
        return {}
    sec = _lib.btf__type_by_id(btf, sec_id)
    infos = ffi.cast("const struct btf_var_secinfo *", sec + 1)
    layout: dict[str, tuple[int, int]] = {}
    for i in range(sec.info & 0xFFFF):
        info = infos[i]
        var = _lib.btf__type_by_id(btf, info.type)
        if var != ffi.NULL:
            name = _cstr(_lib.btf__name_by_offset(btf, var.name_off))
            layout[name] = (int(info.offset), int(info.size))
    return layout


def _btf_struct(btf: object, type_id: int) -> tuple[int, dict[str, tuple[int, int]]]:
    """``(size, {member: (byte offset, size)})`` of BTF struct `type_id`."""
    t = _lib.btf__type_by_id(btf, type_id)
    kflag = t.info >> 31
    members = ffi.cast("const struct btf_member *", t + 1)
    layout = {}
    for i in range(t.info & 0xFFFF):
        m = members[i]
        bits = m.offset & 0xFFFFFF if kflag else m.offset
        mname = _cstr(_lib.btf__name_by_offset(btf, m.name_off))
        layout[mname] = (bits // 8, int(_lib.btf__resolve_size(btf, m.type)))
    return int(t.size_or_type), layout


def _btf_enum(btf: object, type_id: int) -> dict[str, int]:
    """``{enumerator: value}`` of BTF enum `type_id`."""
    t = _lib.btf__type_by_id(btf, type_id)
    values = ffi.cast("const struct btf_enum *", t + 1)
    return {_cstr(_lib.btf__name_by_offset(btf, values[i].name_off)): int(values[i].val)
            for i in range(t.info & 0xFFFF)}


def _rodata_bytes(name: str, value: int | bytes, size: int) -> bytes:
    """A .rodata variable's `size` bytes for `value`: an int little-endian, bytes zero-padded."""
    if isinstance(value, int):
        try:
            return value.to_bytes(size, "little", signed=value < 0)
        except OverflowError:
            raise ValueError(f"rodata {name}: {value} does not fit in {size} bytes") from None
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        if len(data) > size:
            raise ValueError(f"rodata {name}: {len(data)} bytes do not fit in {size}")
        return data + bytes(size - len(data))
    raise TypeError(f"rodata {name}: expected int or bytes, not {type(value).__name__}")


class BpfObject(Handle):
    """An opened BPF ELF object (bpf_object__open_file): configure, load, attach, close.

    Configuration (set_rodata, reuse_map, set_max_entries, set_autoload) must happen before
    ``load()``. ``close()`` destroys the links attached through this object, then the object
    (its programs and its map fds).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._ptr: object | None = None
        self._loaded = False
        self._links: list[Link] = []
        self._maps: dict[str, Map] = {}
        ptr = _lib.bpf_object__open_file(self.path.encode(), ffi.NULL)
        if ptr == ffi.NULL:
            raise LibbpfError(ffi.errno, "open", self.path)
        self._ptr = ptr

    # -- lifecycle
    def _obj(self) -> object:
        if self._ptr is None:
            raise ValueError(f"BpfObject {self.path} is closed")
        return self._ptr

    def _before_load(self, what: str) -> object:
        ptr = self._obj()
        if self._loaded:
            raise LibbpfError(_errno.EBUSY, what, self.path, "object already loaded")
        return ptr

    @property
    def loaded(self) -> bool:
        """True after a successful load()."""
        return self._loaded

    @property
    def closed(self) -> bool:
        """True after close()."""
        return self._ptr is None

    def load(self) -> None:
        """Create maps, relocate (CO-RE) and verify/load the programs."""
        ptr = self._before_load("load")
        rc = _lib.bpf_object__load(ptr)
        if rc < 0:
            raise LibbpfError(-rc, "load", self.path)
        self._loaded = True

    def close(self) -> None:
        """Destroy this object's links, then the object. Idempotent.

        Detaching a tracepoint waits for an RCU grace period (about 50 ms here), so the links
        are destroyed from several threads at once (cffi calls release the GIL): 38 syscall
        hooks detach in one or two grace periods instead of two seconds."""
        links, self._links = self._links, []
        if len(links) > 1:
            with ThreadPoolExecutor(max_workers=min(32, len(links))) as pool:
                list(pool.map(Link.destroy, links))
        for link in links:
            link.destroy()  # no-op unless a thread failed
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            _lib.bpf_object__close(ptr)

    def __del__(self) -> None:
        if getattr(self, "_ptr", None) is not None:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._ptr is None else ("loaded" if self._loaded else "open")
        return f"<BpfObject {self.path} {state}>"

    # -- maps
    def _map_ptr(self, name: str) -> object:
        ptr = _lib.bpf_object__find_map_by_name(self._obj(), name.encode())
        if ptr == ffi.NULL:
            raise KeyError(f"no map {name!r} in {self.path}")
        return ptr

    def map(self, name: str) -> Map:
        """The map called ``name`` (KeyError if absent)."""
        m = self._maps.get(name)
        if m is None:
            m = self._maps[name] = Map(self, self._map_ptr(name), name)
        return m

    def maps(self) -> list[str]:
        """Names of all maps, including internal ones such as "<obj>.rodata"."""
        return self._names(_lib.bpf_object__next_map, _lib.bpf_map__name)

    def reuse_map(self, name: str, fd: int) -> None:
        """Use an existing map (e.g. another object's ring buffer) instead of creating ``name``
        at load. libbpf dups ``fd``; the caller keeps ownership of its own fd."""
        self._before_load("reuse map")
        rc = _lib.bpf_map__reuse_fd(self._map_ptr(name), fd)
        if rc < 0:
            raise LibbpfError(-rc, "reuse fd for map", f"{name} in {self.path}")

    def set_max_entries(self, map_name: str, n: int) -> None:
        """Resize a map before load (e.g. the ring buffer size from configuration)."""
        self._before_load("set max_entries")
        rc = _lib.bpf_map__set_max_entries(self._map_ptr(map_name), n)
        if rc < 0:
            raise LibbpfError(-rc, "set max_entries of map", f"{map_name} in {self.path}")

    def _rodata_layout(self) -> tuple[object, dict[str, tuple[int, int]]]:
        obj = self._obj()
        rodata = ffi.NULL
        m = _lib.bpf_object__next_map(obj, ffi.NULL)
        while m != ffi.NULL:
            if _cstr(_lib.bpf_map__name(m)).endswith(".rodata"):
                rodata = m
                break
            m = _lib.bpf_object__next_map(obj, m)
        btf = _lib.bpf_object__btf(obj)
        if rodata == ffi.NULL or btf == ffi.NULL:
            return rodata, {}
        return rodata, _btf_datasec(btf, b".rodata")

    def struct_layout(self, name: str) -> tuple[int, dict[str, tuple[int, int]]]:
        """``(size, {member: (byte offset, size)})`` of a struct in the object's BTF: what the
        compiler really laid out, for checking a userspace mirror against it."""
        btf = self._btf_with(f"struct {name}")
        return _btf_struct(btf, self._btf_id(btf, "struct", name, _BTF_KIND_STRUCT))

    def enum_values(self, name: str) -> dict[str, int]:
        """``{enumerator: value}`` of an enum in the object's BTF (raises KeyError if absent)."""
        btf = self._btf_with(f"enum {name}")
        return _btf_enum(btf, self._btf_id(btf, "enum", name, _BTF_KIND_ENUM))

    def _btf_with(self, what: str) -> object:
        btf = _lib.bpf_object__btf(self._obj())
        if btf == ffi.NULL:  # an object built without -g: no BTF to ask
            raise KeyError(f"no {what} in the BTF of {self.path}: it has no BTF")
        return btf

    def _btf_id(self, btf: object, kind_name: str, name: str, kind: int) -> int:
        type_id = _lib.btf__find_by_name_kind(btf, name.encode(), kind)
        if type_id < 0:
            raise KeyError(f"no {kind_name} {name} in the BTF of {self.path}")
        return type_id

    def rodata_vars(self) -> dict[str, tuple[int, int]]:
        """``{name: (offset, size)}`` of the ``const volatile`` variables in .rodata."""
        return self._rodata_layout()[1]

    def set_rodata(self, values: dict[str, int | bytes]) -> None:
        """Set ``const volatile`` globals before load (how configuration reaches the kernel
        side without a skeleton). Ints are little-endian, sized by the variable; bytes must fit
        and are zero-padded. All names are checked before anything is written."""
        self._before_load("set rodata of")
        rodata, layout = self._rodata_layout()
        writes: list[tuple[int, bytes]] = []
        for name, value in values.items():
            if name not in layout:
                raise KeyError(f"no .rodata variable {name!r} in {self.path}")
            off, size = layout[name]
            writes.append((off, _rodata_bytes(name, value, size)))
        if not writes:
            return
        psize = ffi.new("size_t *")
        base = _lib.bpf_map__initial_value(rodata, psize)
        if base == ffi.NULL:
            raise LibbpfError(ffi.errno or _errno.EINVAL, "get initial value of", ".rodata")
        dst = ffi.cast("uint8_t *", base)
        for off, data in writes:
            if off + len(data) > psize[0]:
                raise LibbpfError(
                    _errno.EINVAL, "set rodata of", self.path, "BTF offset beyond the map"
                )
            ffi.memmove(dst + off, data, len(data))

    # -- programs
    def _prog_ptr(self, name: str) -> object:
        ptr = _lib.bpf_object__find_program_by_name(self._obj(), name.encode())
        if ptr == ffi.NULL:
            raise KeyError(f"no program {name!r} in {self.path}")
        return ptr

    def programs(self) -> list[str]:
        """Names of the programs (function names, not section names)."""
        return self._names(_lib.bpf_object__next_program, _lib.bpf_program__name)

    def _names(self, next_of: Callable[[object, object], object],
               name_of: Callable[[object], object]) -> list[str]:
        """The names of the object's maps or programs, walked with libbpf's iterator."""
        obj = self._obj()
        names = []
        p = next_of(obj, ffi.NULL)
        while p != ffi.NULL:
            names.append(_cstr(name_of(p)))
            p = next_of(obj, p)
        return names

    def program_section(self, name: str) -> str:
        """ELF section of a program, e.g. "tracepoint/syscalls/sys_enter_openat"."""
        return _cstr(_lib.bpf_program__section_name(self._prog_ptr(name)))

    def program_fd(self, name: str) -> int:
        """The loaded program's fd (to put it into a program array)."""
        fd = _lib.bpf_program__fd(self._prog_ptr(name))
        if fd < 0:
            raise LibbpfError(-fd, "get fd of program", name)
        return fd

    def set_autoload(self, prog: str, on: bool) -> None:
        """Choose before load whether ``prog`` is loaded (skip probes the kernel lacks)."""
        self._before_load("set autoload of")
        rc = _lib.bpf_program__set_autoload(self._prog_ptr(prog), bool(on))
        if rc < 0:
            raise LibbpfError(-rc, "set autoload of program", prog)

    def attach(self, prog: str, tracepoint: tuple[str, str] | None = None,
               raw_tracepoint: str | None = None) -> Link:
        """Attach ``prog`` as its section name says, to ``tracepoint`` (category, name), or
        (a ``raw_tp`` program) to ``raw_tracepoint``: one program can serve several
        tracepoints. The link is owned by this object too."""
        ptr = self._prog_ptr(prog)
        if raw_tracepoint is not None:
            link = _lib.bpf_program__attach_raw_tracepoint(ptr, raw_tracepoint.encode())
            section = f"raw_tp/{raw_tracepoint}"
        elif tracepoint is None:
            link = _lib.bpf_program__attach(ptr)
            section = _cstr(_lib.bpf_program__section_name(ptr))
        else:
            link = _lib.bpf_program__attach_tracepoint(ptr, *(t.encode() for t in tracepoint))
            section = "tracepoint/" + "/".join(tracepoint)
        if link == ffi.NULL:
            err = ffi.errno
            hint = ""
            if (
                err == _errno.ENOENT
                and section.startswith(("tracepoint/", "tp/"))
                and not os.path.isdir(os.path.join(TRACEFS, "events"))
            ):
                hint = f"tracefs is not mounted at {TRACEFS}: call ensure_tracefs() first"
            raise LibbpfError(err, "attach program", f"{prog} ({section})", hint)
        result = Link(link, prog)
        self._links = [lk for lk in self._links if not lk.destroyed]
        self._links.append(result)
        return result
