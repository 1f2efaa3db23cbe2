"""network.bpf.o on the real kernel, alone: connect, bind, listen and accept records.

The object is loaded directly (no agent), its ring buffer read by the test. Traffic runs between
two network namespaces that the module creates, joined by a veth pair (nothing leaves the
machine). The test thread enters a namespace (netns.pushns) to create a socket there and
leaves it again: a socket stays in the namespace it was created in, so every call below runs in
this thread and its records are picked out by pid and tid.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from randguard.core import records
from randguard.kernel import loader
from randguard.kernel.libbpf import BpfObject
from randguard.kernel.ringbuf import RingBuffer

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]
NET_OBJ = ROOT / "agent" / "randguard" / "bpf" / "network.bpf.o"

A4, B4 = "10.200.0.1", "10.200.0.2"
A6, B6 = "fd00:200::1", "fd00:200::2"
A_LL, B_LL = "fe80::200:1", "fe80::200:2"
IFA_F_NODAD = 0x02
SOCK_CLOEXEC = 0o2000000

CONNECT, BIND, LISTEN, ACCEPT = 1, 2, 3, 4


class Net:
    """The loaded object and its ring: records of this thread, in order."""

    def __init__(self, all_families: bool = False, self_tgid: int = 0) -> None:
        self.obj = BpfObject(NET_OBJ)
        self.obj.set_rodata({"rg_self_tgid": self_tgid,
                             "rg_net_all_families": int(all_families)})
        self.obj.set_max_entries("rg_scratch_map", os.cpu_count() or 1)
        self.obj.set_max_entries("rg_events", 1 << 22)
        self.obj.load()
        # the syscall dispatcher, sharing this object's maps, tail-calls its programs
        self.ks = loader.KernelSide()
        self.ks.objects.append(self.obj)
        loader.attach_syscalls(self.ks, self.obj, {"network": self.obj},
                               {"network": {"connect", "bind", "listen", "accept", "accept4"}},
                               {})
        ev = self.obj.map("rg_events")
        self.ring = RingBuffer(ev.fd, ev.max_entries)
        self.seen: list[records.NetRecord] = []

    def close(self) -> None:
        self.ring.close()
        self.ks.close()

    def _drain(self) -> None:
        tid = threading.get_native_id()
        for raw in self.ring.drain():
            rec = records.decode(raw)
            assert isinstance(rec, records.NetRecord)
            if rec.pid == os.getpid() and rec.tid == tid:
                self.seen.append(rec)

    def sync(self) -> list[records.NetRecord]:
        """Every record this thread caused since the last sync, up to a marker: a connect of a
        unix datagram socket to an abstract name nobody has (refused, but reported)."""
        name = f"rg-marker-{uuid.uuid4().hex}".encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as m, pytest.raises(OSError):
            m.connect(b"\0" + name)
        deadline = time.monotonic() + 10
        while True:
            self._drain()
            for i, rec in enumerate(self.seen):
                if rec.unix_path == name and rec.unix_abstract:
                    out, self.seen = self.seen[:i], self.seen[i + 1 :]
                    return out
            assert time.monotonic() < deadline, "marker record never arrived"
            self.ring.wait(100)

    def drops(self) -> int:
        vals = self.obj.map("rg_drops").lookup_percpu(struct.pack("<I", 2))
        return sum(struct.unpack_from("<Q", v)[0] for v in vals)


def one(recs: list[records.NetRecord], pred: Callable[[records.NetRecord], bool]
        ) -> records.NetRecord:
    found = [r for r in recs if pred(r)]
    assert len(found) == 1, f"expected one matching record, got {found} of {recs}"
    return found[0]


@pytest.fixture(scope="module")
def namespaces() -> Iterator[tuple[str, str]]:
    from pyroute2 import IPRoute, netns

    tag = os.getpid() % 100000
    a, b = f"rgnet-a-{os.getpid()}", f"rgnet-b-{os.getpid()}"
    va, vb = f"rgn{tag}a", f"rgn{tag}b"
    netns.create(a)
    netns.create(b)
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname=va, kind="veth", peer=vb)
            ipr.link("set", index=ipr.link_lookup(ifname=va)[0], net_ns_fd=a)
            ipr.link("set", index=ipr.link_lookup(ifname=vb)[0], net_ns_fd=b)
        for ns, ifname, v4, v6, ll in ((a, va, A4, A6, A_LL), (b, vb, B4, B6, B_LL)):
            with IPRoute(netns=ns) as ipr:
                idx = ipr.link_lookup(ifname=ifname)[0]
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
                ipr.addr("add", index=idx, address=v4, prefixlen=24)
                ipr.addr("add", index=idx, address=v6, prefixlen=64, flags=IFA_F_NODAD)
                ipr.addr("add", index=idx, address=ll, prefixlen=64, flags=IFA_F_NODAD)
                ipr.link("set", index=idx, state="up")
        yield a, b
    finally:
        netns.remove(a)
        netns.remove(b)


@pytest.fixture(scope="module")
def net(namespaces: tuple[str, str]) -> Iterator[Net]:
    n = Net()
    yield n
    assert n.drops() == 0
    n.close()


@contextmanager
def inside(ns: str) -> Iterator[None]:
    from pyroute2 import netns

    netns.pushns(ns)
    try:
        yield
    finally:
        netns.popns()


def sock_in(ns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM
            ) -> socket.socket:
    with inside(ns):
        return socket.socket(family, kind)


@contextmanager
def server_and_client(namespaces: tuple[str, str]) -> Iterator[tuple[socket.socket,
                                                                     socket.socket]]:
    """A TCP socket in the second namespace bound to B4 (any port) and an unbound one in the
    first, closed afterwards."""
    a, b = namespaces
    srv, cli = sock_in(b), sock_in(a)
    try:
        srv.bind((B4, 0))
        yield srv, cli
    finally:
        srv.close()
        cli.close()


def ifindex_in(ns: str, ifname_suffix: str) -> int:
    with inside(ns):
        return next(i for i, name in socket.if_nameindex() if name.endswith(ifname_suffix))


def test_tcp_ipv4_listen_connect_accept(net: Net, namespaces: tuple[str, str]) -> None:
    with server_and_client(namespaces) as (srv, cli):
        sfd, cfd = srv.fileno(), cli.fileno()
        srv.listen(7)
        port = srv.getsockname()[1]
        cli.connect((B4, port))
        conn, peer = srv.accept()
        ino, new_ino = os.fstat(srv.fileno()).st_ino, os.fstat(conn.fileno()).st_ino
        conn.close()
        recs = net.sync()

    bind = one(recs, lambda r: r.op == BIND and r.fd == sfd)
    assert bind.ret == 0 and bind.family == socket.AF_INET and bind.protocol == 6
    assert (bind.local_addr, bind.local_port) == (B4, port)  # port 0 asked, chosen one given
    assert bind.nflags & records.NF_LOCAL_SOCK and bind.remote_addr is None
    assert bind.sa_family == socket.AF_INET and bind.sock_type == socket.SOCK_STREAM

    listen = one(recs, lambda r: r.op == LISTEN)
    assert listen.ret == 0 and listen.arg == 7 and listen.fd == sfd
    assert (listen.local_addr, listen.local_port) == (B4, port)
    assert listen.sock_ino == bind.sock_ino == ino

    c = one(recs, lambda r: r.op == CONNECT)
    assert c.ret == 0 and records.NET_SYSCALLS[c.syscall] == "connect"
    assert (c.remote_addr, c.remote_port) == (B4, port)
    assert (c.local_addr, c.local_port) == (A4, peer[1]) and peer[0] == A4
    assert c.family == socket.AF_INET and c.protocol == 6 and c.fd == cfd
    assert c.comm == Path("/proc/self/comm").read_bytes().strip()
    assert c.ppid == os.getppid() and c.uid == os.getuid()

    acc = one(recs, lambda r: r.op == ACCEPT)
    assert acc.ret >= 0 and acc.fd == sfd
    assert records.NET_SYSCALLS[acc.syscall] == "accept4" and acc.arg & SOCK_CLOEXEC
    assert (acc.remote_addr, acc.remote_port) == peer
    assert (acc.local_addr, acc.local_port) == (B4, port)
    assert acc.sock_ino == new_ino  # the new socket's


def test_tcp_ipv6_connect_and_plain_accept(net: Net, namespaces: tuple[str, str]) -> None:
    a, b = namespaces
    srv = sock_in(b, socket.AF_INET6)
    cli = sock_in(a, socket.AF_INET6)
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        srv.bind((B6, 0))
        srv.listen()
        port = srv.getsockname()[1]
        cli.connect((B6, port))
        local = cli.getsockname()
        newfd = libc.syscall(43, srv.fileno(), None, None)  # accept(2) itself, not accept4
        assert newfd >= 0
        os.close(newfd)
        recs = net.sync()
    finally:
        srv.close()
        cli.close()
    c = one(recs, lambda r: r.op == CONNECT)
    assert c.ret == 0 and c.family == socket.AF_INET6 and c.protocol == 6
    assert (c.remote_addr, c.remote_port) == (B6, port)
    assert (c.local_addr, c.local_port) == (A6, local[1])
    acc = one(recs, lambda r: r.op == ACCEPT)
    assert acc.ret == newfd and records.NET_SYSCALLS[acc.syscall] == "accept" and acc.arg == 0
    assert (acc.remote_addr, acc.remote_port) == (A6, local[1])
    assert (acc.local_addr, acc.local_port) == (B6, port)
    listen = one(recs, lambda r: r.op == LISTEN)
    assert (listen.local_addr, listen.local_port) == (B6, port)


def test_refused_connect(net: Net, namespaces: tuple[str, str]) -> None:
    # bound, not listening: a SYN to it is answered with RST
    with server_and_client(namespaces) as (closed, cli):
        port = closed.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            cli.connect((B4, port))
        recs = net.sync()
    c = one(recs, lambda r: r.op == CONNECT)
    assert c.ret == -errno.ECONNREFUSED
    assert (c.remote_addr, c.remote_port) == (B4, port)
    assert c.local_addr is None  # no local side after a failed connect


def test_nonblocking_connect_is_in_progress(net: Net, namespaces: tuple[str, str]) -> None:
    with server_and_client(namespaces) as (srv, cli):
        srv.listen()
        port = srv.getsockname()[1]
        cli.setblocking(False)
        assert cli.connect_ex((B4, port)) == errno.EINPROGRESS
        local = cli.getsockname()
        recs = net.sync()
    c = one(recs, lambda r: r.op == CONNECT)
    assert c.ret == -errno.EINPROGRESS
    assert (c.remote_addr, c.remote_port) == (B4, port)
    assert (c.local_addr, c.local_port) == local  # the ephemeral port, already chosen


def test_udp_connect_ipv4_and_ipv6_link_local(net: Net, namespaces: tuple[str, str]) -> None:
    a, _ = namespaces
    u4 = sock_in(a, socket.AF_INET, socket.SOCK_DGRAM)
    u6 = sock_in(a, socket.AF_INET6, socket.SOCK_DGRAM)
    idx = ifindex_in(a, "a")
    try:
        u4.connect((B4, 5353))
        local4 = u4.getsockname()
        u6.connect((B_LL, 5354, 0, idx))
        local6 = u6.getsockname()
        recs = net.sync()
    finally:
        u4.close()
        u6.close()
    c4 = one(recs, lambda r: r.op == CONNECT and r.family == socket.AF_INET)
    assert c4.ret == 0 and c4.protocol == 17 and c4.sock_type == socket.SOCK_DGRAM
    assert (c4.remote_addr, c4.remote_port) == (B4, 5353)
    assert (c4.local_addr, c4.local_port) == local4
    c6 = one(recs, lambda r: r.op == CONNECT and r.family == socket.AF_INET6)
    assert c6.ret == 0 and c6.protocol == 17
    assert (c6.remote_addr, c6.remote_port, c6.scope_id) == (B_LL, 5354, idx)
    assert (c6.local_addr, c6.local_port) == (A_LL, local6[1])


def test_bind_failure_and_listen_without_bind(net: Net, namespaces: tuple[str, str]) -> None:
    _, b = namespaces
    first = sock_in(b)
    second = sock_in(b)
    auto = sock_in(b, socket.AF_INET6)
    second_fd, auto_fd = second.fileno(), auto.fileno()
    try:
        first.bind((B4, 0))
        port = first.getsockname()[1]
        first.listen()
        with pytest.raises(OSError) as e:
            second.bind((B4, port))
        assert e.value.errno == errno.EADDRINUSE
        auto.listen()  # never bound: listen binds it to a port of the kernel's choice
        chosen = auto.getsockname()[1]
        recs = net.sync()
    finally:
        first.close()
        second.close()
        auto.close()
    failed = one(recs, lambda r: r.op == BIND and r.fd == second_fd)
    assert failed.ret == -errno.EADDRINUSE
    assert (failed.local_addr, failed.local_port) == (B4, port)  # what was asked for
    assert not failed.nflags & records.NF_LOCAL_SOCK
    listen = one(recs, lambda r: r.op == LISTEN and r.fd == auto_fd)
    assert chosen != 0 and (listen.local_addr, listen.local_port) == ("::", chosen)
    assert listen.family == socket.AF_INET6


def test_ipv4_sockaddr_on_ipv6_udp_socket_is_v4_mapped(net: Net,
                                                       namespaces: tuple[str, str]) -> None:
    a, _ = namespaces
    u = sock_in(a, socket.AF_INET6, socket.SOCK_DGRAM)
    libc = ctypes.CDLL(None, use_errno=True)
    sin = struct.pack("=H", socket.AF_INET) + struct.pack("!H4s8x", 7777, socket.inet_aton(B4))
    try:
        assert libc.connect(u.fileno(), sin, len(sin)) == 0
        recs = net.sync()
    finally:
        u.close()
    c = one(recs, lambda r: r.op == CONNECT)
    assert c.family == socket.AF_INET6 and c.sa_family == socket.AF_INET
    assert (c.remote_addr, c.remote_port) == (f"::ffff:{B4}", 7777)


def test_unix_path_abstract_and_autobind(net: Net) -> None:
    d = Path(tempfile.mkdtemp(prefix="rg-net-"))
    path = str(d / "srv.sock")
    abstract = f"rg-test-{uuid.uuid4().hex}\0tail".encode()
    srv = socket.socket(socket.AF_UNIX)
    asrv = socket.socket(socket.AF_UNIX)
    cli = socket.socket(socket.AF_UNIX)
    acli = socket.socket(socket.AF_UNIX)
    auto = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    fds = {s: s.fileno() for s in (asrv, cli, acli, auto)}
    try:
        srv.bind(path)
        srv.listen()
        asrv.bind(b"\0" + abstract)
        asrv.listen()
        cli.connect(path)
        conn, _ = srv.accept()
        conn.close()
        acli.connect(b"\0" + abstract)
        auto.bind(b"")  # addrlen 2: autobind to an abstract name of the kernel's choice
        autoname = auto.getsockname()
        recs = net.sync()
    finally:
        for s in (srv, asrv, cli, acli, auto):
            s.close()
        os.unlink(path)
        d.rmdir()
    c = one(recs, lambda r: r.op == CONNECT and r.fd == fds[cli])
    assert c.ret == 0 and c.family == socket.AF_UNIX and c.sa_family == socket.AF_UNIX
    assert c.unix_path == path.encode() and not c.unix_abstract
    assert records.unix_path_text(c) == path
    assert c.local_addr is None and c.remote_addr is None and c.sock_type == 1
    for op in (BIND, LISTEN, ACCEPT):
        r = one(recs, lambda r, op=op: r.op == op and r.unix_path == path.encode())
        assert r.ret >= 0 and r.family == socket.AF_UNIX
    ac = one(recs, lambda r: r.op == CONNECT and r.fd == fds[acli])
    assert ac.unix_abstract and ac.unix_path == abstract
    assert records.unix_path_text(ac) == "@" + abstract.decode().replace("\0", "@")
    al = one(recs, lambda r: r.op == LISTEN and r.fd == fds[asrv])
    assert al.unix_abstract and al.unix_path == abstract
    ab = one(recs, lambda r: r.op == BIND and r.fd == fds[auto])
    assert ab.ret == 0 and ab.unix_abstract and ab.unix_path == autoname[1:]
    assert len(ab.unix_path) == 5  # the kernel's five hex digits


def test_eagain_accept_and_other_families_are_not_reported(net: Net) -> None:
    srv = socket.socket()
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    try:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        srv.setblocking(False)
        with pytest.raises(BlockingIOError):
            srv.accept()
        nl.bind((0, 0))
        recs = net.sync()
    finally:
        srv.close()
        nl.close()
    assert not [r for r in recs if r.op == ACCEPT]
    assert not [r for r in recs if r.family == socket.AF_NETLINK]
    assert one(recs, lambda r: r.op == LISTEN).local_addr == "127.0.0.1"


def test_all_families_and_self_filter() -> None:
    other = Net(all_families=True)
    try:
        nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        nl.bind((0, 0))
        nl.close()
        recs = other.sync()
    finally:
        other.close()
    b = one(recs, lambda r: r.op == BIND)
    assert b.family == socket.AF_NETLINK and b.ret == 0 and b.nflags & records.NF_SOCK
    assert b.local_addr is None and b.unix_path is None

    quiet = Net(self_tgid=os.getpid())
    try:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.close()
        time.sleep(0.05)
        quiet._drain()
    finally:
        quiet.close()
    assert quiet.seen == []
