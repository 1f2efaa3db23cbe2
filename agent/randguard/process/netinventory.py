"""The startup inventory of listening sockets, for `network_listen` events with inventory: true.

Sockets come from the kernel's sock_diag netlink interface through pyroute2's DiagSocket (not
from /proc/net text): TCP sockets in LISTEN, UDP sockets bound to a port and not connected
(what a UDP server looks like), and AF_UNIX sockets in LISTEN, all in the agent's own network
namespace (sock_diag answers for the namespace of the asking socket). Each socket's owner is
found by its inode: every /proc/PID/fd/* link that reads ``socket:[INODE]``. A socket that
several processes hold (a preforking server) lists them all; `pid` is the lowest of them,
usually the parent. A socket held by no visible process (in another pid namespace, or whose
owner went away in between) has pid None.

The result is pure data (`ListeningSocket`); all I/O is in `listening_sockets` and
`socket_owners`.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from collections.abc import Iterable

import msgspec

from ..core.network_events import ListeningSocket
from ..core.paths import decode_path

__all__ = ["ListeningSocket", "listening_sockets", "socket_owners"]

log = logging.getLogger("randguard.netinventory")

# sock_diag states (include/net/tcp_states.h)
TCP_ESTABLISHED = 1
TCP_CLOSE = 7
TCP_LISTEN = 10

_SOCK_TYPES = {1: "stream", 2: "dgram", 5: "seqpacket"}
_NLMSG_HDR = 16
_UNIX_DIAG_MSG = 16
_UNIX_DIAG_NAME = 0


def socket_owners(inodes: Iterable[int], proc: str = "/proc") -> dict[int, tuple[int, ...]]:
    """``{inode: (pid, ...)}`` for the socket inodes that some process holds an fd of."""
    wanted = {f"socket:[{i}]": i for i in inodes}
    found: dict[int, set[int]] = {}
    if not wanted:
        return {}
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        fd_dir = f"{proc}/{name}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            inode = wanted.get(target)
            if inode is not None:
                found.setdefault(inode, set()).add(int(name))
    return {i: tuple(sorted(p)) for i, p in found.items()}


def _comm(pid: int, proc: str) -> str | None:
    try:
        with open(f"{proc}/{pid}/comm", "rb") as f:
            return decode_path(f.read().rstrip(b"\n"))
    except OSError:
        return None


def _unix_name(raw_msg: bytes) -> bytes | None:
    """The raw UNIX_DIAG_NAME payload (sun_path as the kernel keeps it) of one sock_diag
    message. pyroute2 decodes it as a string with NULs stripped at both ends, which loses what
    marks an abstract name, so the attribute is read from the message bytes."""
    off = _NLMSG_HDR + _UNIX_DIAG_MSG
    while off + 4 <= len(raw_msg):
        length, kind = struct.unpack_from("=HH", raw_msg, off)
        if length < 4:
            break
        if kind & 0x3FFF == _UNIX_DIAG_NAME:
            return raw_msg[off + 4 : off + length]
        off += (length + 3) & ~3
    return None


def unix_name_text(sun_path: bytes | None) -> str | None:
    """Display form of a unix socket name, the rule of records.unix_path_text: a path up to its
    first NUL; an abstract name (leading NUL) as "@" + the name with each NUL as "@"."""
    if not sun_path:
        return None
    if sun_path[0] == 0:
        return "@" + decode_path(sun_path[1:].replace(b"\0", b"@"))
    end = sun_path.find(b"\0")
    return decode_path(sun_path if end < 0 else sun_path[:end])


def _linklocal(addr: str) -> bool:
    return addr.lower().startswith(("fe8", "fe9", "fea", "feb"))


def _inet(ds: object, family: int, protocol: int, states: int) -> list[ListeningSocket]:
    fam = "ipv4" if family == socket.AF_INET else "ipv6"
    proto = "tcp" if protocol == socket.IPPROTO_TCP else "udp"
    out = []
    for m in ds.get_sock_stats(family=family, protocol=protocol, states=states):
        port = m["idiag_sport"]
        if protocol == socket.IPPROTO_UDP and (not port or m["idiag_dport"]):
            continue  # unbound or connected: not a server
        addr = m["idiag_src"]
        out.append(ListeningSocket(
            family=fam, protocol=proto,
            sock_type="stream" if protocol == socket.IPPROTO_TCP else "dgram",
            local_addr=addr, local_port=port,
            scope_id=m["idiag_if"] if fam == "ipv6" and _linklocal(addr) else 0,
            unix_path=None, inode=m["idiag_inode"], uid=m["idiag_uid"], pid=None, comm=None,
        ))
    return out


def _unix(ds: object) -> list[ListeningSocket]:
    out = []
    for m in ds.get_sock_stats(family=socket.AF_UNIX, states=1 << TCP_LISTEN):
        raw = bytes(m.data[m.offset : m.offset + m.length])
        out.append(ListeningSocket(
            family="unix", protocol=None,
            sock_type=_SOCK_TYPES.get(m["udiag_type"], str(m["udiag_type"])),
            local_addr=None, local_port=None, scope_id=0,
            unix_path=unix_name_text(_unix_name(raw)), inode=m["udiag_ino"], uid=None,
            pid=None, comm=None,
        ))
    return out


def listening_sockets(tcp: bool = True, udp: bool = True, unix: bool = True,
                      proc: str = "/proc") -> list[ListeningSocket]:
    """Every listening socket of the current network namespace, with its owners.

    A query the kernel refuses (e.g. no udp_diag) is logged and skipped; the others still
    count. Sorted by family, protocol, port, path.
    """
    from pyroute2 import DiagSocket  # imported here: only needed when network is enabled

    found: list[ListeningSocket] = []
    queries = []
    for fam in (socket.AF_INET, socket.AF_INET6):
        if tcp:
            queries.append((fam, socket.IPPROTO_TCP, 1 << TCP_LISTEN))
        if udp:
            queries.append((fam, socket.IPPROTO_UDP, 1 << TCP_CLOSE))
    with DiagSocket() as ds:
        ds.bind()
        for fam, proto, states in queries:
            try:
                found += _inet(ds, fam, proto, states)
            except Exception as e:  # pyroute2 raises NetlinkError and friends
                log.warning("network inventory: sock_diag query (family %d, protocol %d) "
                            "failed: %s", fam, proto, e)
        if unix:
            try:
                found += _unix(ds)
            except Exception as e:
                log.warning("network inventory: sock_diag query (unix) failed: %s", e)
    owners = socket_owners({s.inode for s in found if s.inode}, proc)
    out = []
    for s in found:
        pids = owners.get(s.inode, ())
        if pids:
            s = msgspec.structs.replace(s, pid=pids[0], comm=_comm(pids[0], proc), pids=pids)
        out.append(s)
    out.sort(key=lambda s: (s.family, s.protocol or "", s.local_port or 0, s.unix_path or "",
                            s.local_addr or "", s.inode))
    return out
