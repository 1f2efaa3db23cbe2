"""Decoding network records (struct rg_net_event): addresses, the unix path, bad records."""

from __future__ import annotations

import socket

import pytest

from randguard.core import records


def net_record(path: bytes = b"", **over: object) -> bytes:
    """A well-formed network record laid out as the kernel writes it (a connect by default)."""
    v = dict(kind=records.KIND_NET, version=1, size=records.NET.size + len(path), flags=0, ts=1,
             pid=10, tid=11, uid=0, gid=0, ret=0, ino=77, ppid=1, fd=3, scope=0, arg=0,
             fam=records.AF_INET, sa_fam=records.AF_INET, stype=1, proto=6, lport=40000,
             rport=80, op=1, sysc=1,
             nflags=records.NF_LOCAL | records.NF_REMOTE | records.NF_SOCK,
             laddr=socket.inet_aton("10.0.0.1"), raddr=socket.inet_aton("10.0.0.2"),
             comm=b"curl", upath=(records.NET.size if path else 0, len(path)), abi=0)
    v.update(over)
    fixed = records.NET.pack(
        v["kind"], v["version"], v["size"], v["flags"], v["ts"], v["pid"], v["tid"], v["uid"],
        v["gid"], v["ret"], v["ino"], v["ppid"], v["fd"], v["scope"], v["arg"], v["fam"],
        v["sa_fam"], v["stype"], v["proto"], v["lport"], v["rport"], v["op"], v["sysc"],
        v["nflags"], v["laddr"], v["raddr"], v["comm"], *v["upath"], v["abi"],
    )
    return fixed + path


def test_layout_is_fixed_and_aligned() -> None:
    size, members = records.expected_layout("rg_net_event")
    assert size == records.NET.size == 136
    assert members["laddr"] == (80, 16) and members["raddr"] == (96, 16)
    assert members["unix_path"] == (128, 4)


def test_ipv4_connect() -> None:
    r = records.decode(net_record())
    assert isinstance(r, records.NetRecord)
    assert (r.local_addr, r.local_port) == ("10.0.0.1", 40000)
    assert (r.remote_addr, r.remote_port) == ("10.0.0.2", 80)
    assert r.comm == b"curl" and r.sock_ino == 77 and r.unix_path is None
    assert records.NET_OPS[r.op] == "network_connect"
    assert records.NET_SYSCALLS[r.syscall] == "connect"
    assert records.NET_FAMILY_NAMES[r.family] == "ipv4"
    assert records.NET_PROTOCOL_NAMES[r.protocol] == "tcp"


def test_ipv6_and_missing_sides() -> None:
    r = records.decode(net_record(fam=records.AF_INET6, nflags=records.NF_REMOTE, scope=3,
                                  raddr=socket.inet_pton(socket.AF_INET6, "fe80::1"),
                                  ret=-111))
    assert r.remote_addr == "fe80::1" and r.scope_id == 3 and r.ret == -111
    assert r.local_addr is None and r.local_port is None


def test_unix_paths() -> None:
    r = records.decode(net_record(b"/run/x.sock", fam=records.AF_UNIX, nflags=0))
    assert r.unix_path == b"/run/x.sock" and not r.unix_abstract
    assert records.unix_path_text(r) == "/run/x.sock"
    assert r.local_addr is None and r.remote_addr is None
    r = records.decode(net_record(b"my\0name", fam=records.AF_UNIX,
                                  nflags=records.NF_UNIX_ABSTRACT))
    assert r.unix_abstract and r.unix_path == b"my\0name"
    assert records.unix_path_text(r) == "@my@name"
    r = records.decode(net_record(fam=records.AF_UNIX, nflags=records.NF_UNIX_ABSTRACT))
    assert records.unix_path_text(r) == "@"
    r = records.decode(net_record(fam=records.AF_UNIX, nflags=0))
    assert records.unix_path_text(r) is None


def test_other_family_has_no_addresses() -> None:
    r = records.decode(net_record(fam=16, nflags=records.NF_LOCAL | records.NF_REMOTE))
    assert r.family == 16 and r.local_addr is None and r.remote_addr is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (net_record()[:100], "short_record"),
        (net_record(size=100)[:100] + b"\0" * 36, "short_record"),
        (net_record(b"/x", upath=(records.NET.size, 50)), "bad_string"),
        (net_record(version=3), "bad_version"),
    ],
)
def test_bad_network_records(raw: bytes, reason: str) -> None:
    with pytest.raises(records.DecodeError) as e:
        records.decode(raw)
    assert e.value.reason == reason
