"""The network family's records as events: pure builders, no state (the process table and the
judges are the pipeline's)."""

from __future__ import annotations

import errno

import msgspec

from .config import Detection
from .events import NetworkEvent, errno_name, subject
from .proctable import ProcessTable
from .records import (
    NET_FAMILY_NAMES,
    NET_OPS,
    NET_PROTOCOL_NAMES,
    NET_SYSCALLS,
    NF_LOCAL,
    NF_REMOTE,
    SOCK_TYPE_NAMES,
    NetRecord,
    abi_name,
    unix_path_text,
)

_NET_DIRECTIONS = {1: "outbound", 2: "local", 3: "inbound", 4: "inbound"}
_OTHER_FAMILIES = {16: "netlink", 17: "packet", 40: "vsock", 44: "xdp"}
_NET_ACCEPT = 4


def family_name(family: int) -> str:
    return NET_FAMILY_NAMES.get(family) or _OTHER_FAMILIES.get(family) or f"af_{family}"


def net_direction(r: NetRecord) -> str:
    """outbound (connect), inbound (listen, accept) or local (bind)."""
    return _NET_DIRECTIONS.get(r.op, "local")


def net_result(r: NetRecord) -> str:
    """success, in_progress (a non-blocking connect under way) or failure."""
    ret = r.ret
    return "success" if ret >= 0 else "in_progress" if ret == -errno.EINPROGRESS else "failure"


def network_event(r: NetRecord, stamp: str, host: str, comm: str, exe: str | None,
                  det: Detection | None) -> NetworkEvent:
    """network_connect, _bind, _listen, _accept (`det`: the detection it matched)."""
    ret = r.ret
    inet = r.family in (2, 10)
    # each side formatted once (the record's local_*/remote_* properties format on every read)
    local, remote = r.side(NF_LOCAL, r.laddr, r.lport), r.side(NF_REMOTE, r.raddr, r.rport)
    return NetworkEvent(
        event_type=NET_OPS.get(r.op, "network_unknown"),
        **subject(r, stamp, host),
        syscall=NET_SYSCALLS[r.syscall] if 0 < r.syscall < len(NET_SYSCALLS) else None,
        abi=abi_name(r.abi),
        comm=comm,
        exe_path=exe,
        family=family_name(r.family),
        protocol=NET_PROTOCOL_NAMES.get(r.protocol, str(r.protocol)) if inet else None,
        sock_type=SOCK_TYPE_NAMES.get(r.sock_type) if r.sock_type else None,
        socket_fd=ret if r.op == _NET_ACCEPT and ret >= 0 else r.fd,
        direction=net_direction(r),
        local_addr=local[0],
        local_port=local[1],
        remote_addr=remote[0],
        remote_port=remote[1],
        scope_id=r.scope_id if r.family == 10 else None,
        unix_path=unix_path_text(r),
        ret=ret,
        error=errno_name(ret),
        result=net_result(r),
        alert=det is not None,
        detection_type=det.name if det is not None else None,
        mitre=det.mitre if det is not None else None,
    )


class ListeningSocket(msgspec.Struct, frozen=True):
    """One socket that was already listening when the agent started."""

    family: str  # "ipv4" | "ipv6" | "unix"
    protocol: str | None  # "tcp" | "udp"; None for unix
    sock_type: str  # "stream" | "dgram" | "seqpacket"
    local_addr: str | None  # inet only
    local_port: int | None  # inet only
    scope_id: int  # IPv6 link-local: the bound interface; else 0
    unix_path: str | None  # unix only: as records.unix_path_text spells it ("@name": abstract)
    inode: int  # the socket inode (as in /proc/PID/fd: socket:[inode])
    uid: int | None  # the socket's owner uid (inet); None for unix
    pid: int | None  # the lowest pid holding it; None when not found
    comm: str | None  # that process's comm
    pids: tuple[int, ...] = ()  # every process holding it, ascending


def listen_inventory(sockets: list[ListeningSocket], stamp: str, now: int, host: str,
                     procs: ProcessTable) -> list[NetworkEvent]:
    """One network_listen (inventory: true) per socket listening at start."""
    out: list[NetworkEvent] = []
    for s in sockets:
        info = procs.get(s.pid) if s.pid is not None else None
        out.append(NetworkEvent(
            event_type="network_listen", timestamp=stamp, timestamp_ns=now, host=host,
            syscall=None, abi=None, pid=s.pid, tid=None,
            ppid=info.ppid if info else None, uid=s.uid,
            gid=None, comm=s.comm, exe_path=info.exe_path if info else None,
            family=s.family, protocol=s.protocol, sock_type=s.sock_type, socket_fd=None,
            direction="inbound", local_addr=s.local_addr, local_port=s.local_port,
            remote_addr=None, remote_port=None,
            scope_id=s.scope_id if s.family == "ipv6" else None, unix_path=s.unix_path,
            ret=None, error=None, result="success", inventory=True,
        ))
    return out
