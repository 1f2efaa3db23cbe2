"""The startup inventory of listening sockets (sock_diag through pyroute2, owners from /proc).

sock_diag needs no privilege for the asking process's own sockets, so these run anywhere.
"""

from __future__ import annotations

import os
import socket
import struct
import uuid
from pathlib import Path

from randguard.process import netinventory
from randguard.process.netinventory import ListeningSocket, listening_sockets


def test_finds_a_tcp_listener_with_its_pid() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        ino = os.fstat(s.fileno()).st_ino
        found = [x for x in listening_sockets() if x.local_port == port]
    assert found == [ListeningSocket(
        family="ipv4", protocol="tcp", sock_type="stream", local_addr="127.0.0.1",
        local_port=port, scope_id=0, unix_path=None, inode=ino, uid=os.getuid(),
        pid=os.getpid(), comm=Path("/proc/self/comm").read_text().strip(), pids=(os.getpid(),),
    )]


def test_ipv6_udp_and_unix_listeners_and_what_is_left_out(tmp_path: Path) -> None:
    name = f"rg-inv-{uuid.uuid4().hex}"
    with (socket.socket(socket.AF_INET6) as t6, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
          as u6, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as connected,
          socket.socket() as bound_only, socket.socket(socket.AF_UNIX) as ux,
          socket.socket(socket.AF_UNIX) as ab):
        t6.bind(("::1", 0))
        t6.listen()
        u6.bind(("::1", 0))
        connected.connect(("127.0.0.1", 9))
        bound_only.bind(("127.0.0.1", 0))  # bound, never listening: not a server
        ux.bind(str(tmp_path / "s.sock"))
        ux.listen()
        ab.bind(b"\0" + name.encode() + b"\0x")
        ab.listen()
        inv = listening_sockets()
        ports = {(x.protocol, x.local_port): x for x in inv if x.pid == os.getpid()}
        assert ports[("tcp", t6.getsockname()[1])].local_addr == "::1"
        u = ports[("udp", u6.getsockname()[1])]
        assert (u.family, u.sock_type, u.local_addr) == ("ipv6", "dgram", "::1")
        assert ("udp", connected.getsockname()[1]) not in ports
        assert ("tcp", bound_only.getsockname()[1]) not in ports
        paths = {x.unix_path: x for x in inv if x.family == "unix"}
        assert paths[str(tmp_path / "s.sock")].inode == os.fstat(ux.fileno()).st_ino
        a = paths[f"@{name}@x"]
        assert a.pid == os.getpid() and a.pids == (os.getpid(),) and a.protocol is None
    assert not [x for x in listening_sockets() if x.unix_path == f"@{name}@x"]


def test_only_requested_kinds() -> None:
    with socket.socket(socket.AF_UNIX) as ux:
        ux.bind(b"\0" + uuid.uuid4().hex.encode())
        ux.listen()
        assert {x.family for x in listening_sockets(unix=False)} <= {"ipv4", "ipv6"}
        assert all(x.protocol == "udp" for x in listening_sockets(tcp=False, unix=False))


def test_socket_owners_reads_fd_links(tmp_path: Path) -> None:
    for pid, links in {"10": ["socket:[5]", "socket:[6]"], "11": ["socket:[5]", "/etc/x"],
                       "self": ["socket:[6]"], "12": []}.items():
        (tmp_path / pid / "fd").mkdir(parents=True)
        for i, target in enumerate(links):
            os.symlink(target, tmp_path / pid / "fd" / str(i))
    (tmp_path / "13").mkdir()  # no fd directory (gone, or not ours to read)
    assert netinventory.socket_owners({5, 6, 7}, str(tmp_path)) == {5: (10, 11), 6: (10,)}
    assert netinventory.socket_owners(set(), str(tmp_path)) == {}


def test_unix_names() -> None:
    text = netinventory.unix_name_text
    assert text(b"/run/a.sock\0") == "/run/a.sock"
    assert text(b"rel\0junk") == "rel"
    assert text(b"\0abs\0x\0") == "@abs@x@"
    assert text(b"") is None and text(None) is None
    # the UNIX_DIAG_NAME attribute read from a raw message: header, unix_diag_msg, attributes
    other = struct.pack("=HH", 8, 5) + b"\0" * 4
    name = b"\0abs\0"
    attr = struct.pack("=HH", 4 + len(name), 0) + name + b"\0" * (-len(name) % 4)
    msg = b"\0" * 32 + other + attr
    assert netinventory._unix_name(msg) == name
    assert netinventory._unix_name(b"\0" * 32 + other) is None
