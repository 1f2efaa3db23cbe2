"""The file family's records as events: where a record's paths are and whether the filter
wants it (`locate`), and the event (`file_event`, `attr_event`). Pure: the judges' verdicts and
the process table's facts come in as arguments."""

from __future__ import annotations

import os

import msgspec

from .config import Detection
from .events import Ancestor, FileAttrEvent, FileEvent, errno_name, subject
from .matcher import FileFilter
from .paths import CUT, decode_path, join, walked
from .records import (
    FF_CREATED,
    FF_DIRECT,
    FF_FORCED,
    FF_INODE,
    FF_IO_URING,
    FF_NO_RESULT,
    FF_OLD,
    FF_WRITE,
    HF_TRUNC_S0,
    HF_TRUNC_S1,
    HF_TRUNC_S2,
    HF_TRUNC_S3,
    HF_TRUNC_S4,
    MTIME_KEPT,
    MTIME_NOW,
    MTIME_UNKNOWN,
    OPS,
    SYSCALLS,
    FileRecord,
    abi_name,
)

_ACCESS = ("read", "write", "read_write", None)
_NEW_SIDE = HF_TRUNC_S0 | HF_TRUNC_S1 | HF_TRUNC_S2
_OLD_SIDE = HF_TRUNC_S3 | HF_TRUNC_S4
_OP_ID = {name: op for op, name in OPS.items()}
_OPEN, _WRITE, _RENAME, _LINK = (_OP_ID[n] for n in ("file_open", "file_write", "file_rename",
                                                     "file_link"))
_CHMOD, _CHOWN, _TRUNCATE, _MKDIR, _MKNOD, _SETXATTR, _UTIMES = (
    _OP_ID[n] for n in ("file_chmod", "file_chown", "file_truncate", "file_mkdir", "file_mknod",
                        "file_setxattr", "file_utimes"))
_NO_MTIME = (MTIME_NOW, MTIME_KEPT, MTIME_UNKNOWN)
_S_IFMT, _S_IFCHR, _S_IFBLK = 0o170000, 0o020000, 0o060000
_UNCHANGED_ID = 0xFFFFFFFF  # chown's -1
_MOUNT, _UMOUNT = _OP_ID["file_mount"], _OP_ID["file_umount"]
_IO_URING_SETUP = _OP_ID["io_uring_setup"]
_UNLINK = _OP_ID["file_unlink"]
# io_uring opens with no fd to tell: into a direct descriptor, or reported before the result
_NO_FD = FF_DIRECT | FF_NO_RESULT
_REMOVEXATTR = _OP_ID["file_removexattr"]
# FileAttrEvent: what the call sets
_ATTR_OPS = frozenset(range(_CHMOD, _UMOUNT + 1)) | {_REMOVEXATTR}
_TWO_NAMES = (_RENAME, _LINK, _MOUNT)  # source and target
# open, rename, unlink, link, mount and io_uring_setup flags
_FLAGS_OPS = (_OPEN, _RENAME, _OP_ID["file_unlink"], _LINK, _MOUNT, _UMOUNT, _IO_URING_SETUP)
# their source is carried as written: a symlink's content, what mount(2) mounts
_RAW_SOURCE = (SYSCALLS.index("symlink"), SYSCALLS.index("symlinkat"), SYSCALLS.index("mount"))
def _path(dir_: bytes | None, name: bytes | None, dir_cut: bool) -> tuple[str | None, str | None]:
    """(resolved absolute path or None, raw name) for a name relative to a kernel-resolved dir."""
    if name is None:
        return None, None
    raw = decode_path(name)
    if raw.startswith("/"):
        return join(None, raw), raw
    if dir_ is None:
        return None, raw
    joined = join(decode_path(dir_), raw)
    return (CUT + joined if dir_cut else joined), raw


def attr_event(ev: FileEvent, r: FileRecord) -> FileAttrEvent:
    """What a chmod, chown, truncate, mkdir, mknod or setxattr set, from the record: its flags
    (the mode; uid << 32 | gid, each 0xffffffff when left unchanged; the length; dev << 32 |
    mode), for setxattr the attribute's name, and (FF_OLD) what a chmod, chown or truncate
    found before it, in the same encoding."""
    op, value = r.op, r.open_flags
    hi, lo = value >> 32, value & 0xFFFFFFFF
    old = r.old if r.fflags & FF_OLD else None
    device = None
    if op == _MKNOD and lo & _S_IFMT in (_S_IFCHR, _S_IFBLK):
        device = f"{os.major(hi)}:{os.minor(hi)}"
    return FileAttrEvent(
        **msgspec.structs.asdict(ev),
        mode=value if op in (_CHMOD, _MKDIR) else lo & 0o177777 if op == _MKNOD else None,
        owner_uid=hi if op == _CHOWN and hi != _UNCHANGED_ID else None,
        owner_gid=lo if op == _CHOWN and lo != _UNCHANGED_ID else None,
        length=value if op == _TRUNCATE else None,
        old_mode=old if op == _CHMOD else None,
        old_owner_uid=old >> 32 if op == _CHOWN and old is not None else None,
        old_owner_gid=old & 0xFFFFFFFF if op == _CHOWN and old is not None else None,
        old_length=old if op == _TRUNCATE else None,
        device=device,
        xattr_name=(decode_path(r.name2) if op in (_SETXATTR, _REMOVEXATTR)
                    and r.name2 is not None else None),
        mtime_ns=explicit_mtime(r) if op == _UTIMES else None,
    )


def event_fd(r: FileRecord) -> int | None:
    """The fd an event names: written to, changed through, or (open, io_uring_setup) made."""
    return fd_named(r.op, r.fflags, r.ret, r.fd, r.name is None)


def fd_named(op: int, fflags: int, ret: int, fd: int, unnamed: bool) -> int | None:
    """event_fd() of a record's fields (`unnamed`: a call on an fd, not on a name)."""
    if op == _WRITE or (op in _ATTR_OPS and unnamed):
        return fd if fd >= 0 else None  # an io_uring write's fd is not known
    if op in (_OPEN, _IO_URING_SETUP) and ret >= 0 and not fflags & _NO_FD:
        return ret
    return None


def explicit_mtime(r: FileRecord) -> int | None:
    """The modification time a utime-family call set (signed ns since the epoch), or None
    when it set the current time, left it, or could not be read."""
    v = r.open_flags
    return None if v in _NO_MTIME else v - (1 << 64) if v >= 1 << 63 else v


def locate(r: FileRecord, file_filter: FileFilter, persist_paths: dict[tuple[int, int], str],
           ) -> tuple[str | None, str | None, str | None, str | None, bool, bool]:
    """(path, name, old_path, old_name, wanted, truncated) of a file record: its paths as
    the kernel resolved them (or joined), and whether the filter wants it (`persist_paths`:
    the inventory's files by (kernel dev, inode), which pass by inode)."""
    op = r.op
    old_path = old_name = None
    hflags = r.flags
    # a path cut in the kernel cannot be judged by its prefix: it is reported, marked
    cut = bool(hflags & (HF_TRUNC_S0 | HF_TRUNC_S1 | HF_TRUNC_S3))
    if op in _TWO_NAMES:
        if r.path is not None:  # the target as the kernel resolved it (resolve.bpf.c)
            path = walked(r.path, hflags & HF_TRUNC_S0)
            name = decode_path(r.name2) if r.name2 is not None else None
        else:
            path, name = _path(r.dir2, r.name2, bool(hflags & HF_TRUNC_S3))
        if r.syscall in _RAW_SOURCE:
            old_name = decode_path(r.name) if r.name is not None else None
            old_path = old_name  # a symlink's target is content, kept as written
            wanted = cut or (path is not None and file_filter.wants(path, True))
        else:
            old_path, old_name = _path(r.dir, r.name, bool(hflags & HF_TRUNC_S1))
            wanted = cut or file_filter.wants_any(
                [p for p in (path, old_path) if p is not None], True
            )
        wanted = wanted or (op == _MOUNT and path is not None
                            and file_filter.covers(path))
        return path, name, old_path, old_name, wanted, bool(hflags & (_NEW_SIDE | _OLD_SIDE))
    if r.path is not None:
        path = walked(r.path, hflags & HF_TRUNC_S0)
        name = decode_path(r.name) if r.name is not None else None
    else:
        path, name = _path(r.dir, r.name, bool(hflags & HF_TRUNC_S1))
    write = op != _OPEN or bool(r.fflags & FF_WRITE)
    # what the kernel passed whatever the filter says (a setuid or setgid bit or file
    # capabilities appearing: its attr_forced()), and a process setting up an io_uring (no
    # path), are reported wherever they are
    wanted = (cut or op == _IO_URING_SETUP or bool(r.fflags & FF_FORCED)
              # another name of a listed persistence file (while it is still that file)
              or (r.fflags & FF_INODE and (r.dev, r.ino) in persist_paths)
              or (path is not None and file_filter.wants(path, write))
              # above watched paths: an umount uncovers them (a mount there hid them), a
              # new directory (a new ~/.ssh) will hold them
              or (op in (_UMOUNT, _MKDIR) and path is not None
                  and file_filter.covers(path)))
    return path, name, old_path, old_name, wanted, bool(hflags & _NEW_SIDE)


def file_event(r: FileRecord, stamp: str, host: str, comm: str, exe: str | None,
               located: tuple[str | None, str | None, str | None, str | None, bool],
               det: Detection | None, ancestors: list[Ancestor] | None,
               ppath: str | None) -> FileEvent:
    """The event of a file record: `located` is locate()'s (path, name, old path, old name,
    truncated), `det` the detection it matched, `ppath` the persistence file it is another name
    of."""
    op = r.op
    ret = r.ret
    is_open = op == _OPEN
    path, name, old_path, old_name, truncated = located
    ev = FileEvent(
        event_type=OPS.get(op, "file_unknown"),
        **subject(r, stamp, host),
        syscall=SYSCALLS[r.syscall] if 0 < r.syscall < len(SYSCALLS) else "unknown",
        abi=abi_name(r.abi),
        comm=comm,
        exe_path=exe,
        resolved_path=path,
        filename=name,
        old_path=old_path,
        old_filename=old_name,
        ret=ret,
        error=errno_name(ret),
        flags=r.open_flags if op in _FLAGS_OPS else None,
        access=_ACCESS[r.open_flags & 3] if is_open else None,
        created=bool(r.fflags & FF_CREATED) if is_open else None,
        fd=event_fd(r),
        inode=r.ino or None,
        path_truncated=truncated,
        io_uring=bool(r.fflags & FF_IO_URING),
        alert=det is not None,
        detection_type=det.name if det is not None else None,
        mitre=det.mitre if det is not None else None,
        ancestors=ancestors,
        persistence_path=ppath,
    )
    return attr_event(ev, r) if op in _ATTR_OPS else ev
