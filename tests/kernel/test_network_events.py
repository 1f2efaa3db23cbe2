"""Network telemetry through the whole agent: opt-in, detections, rules, inventory."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
from agent_proc import AgentProc, held_program_ids, write_config

pytestmark = pytest.mark.kernel

NET_ON = "[events]\nnetwork = true\n[network]\nenabled = true\n"


@pytest.fixture
def markers() -> Path:
    d = Path(tempfile.mkdtemp(prefix="rg-net-", dir="/var/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def prog_names(pid: int) -> set[str]:
    import json
    import subprocess

    out = json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True,
                                    check=True).stdout)
    ids = held_program_ids(pid)
    return {p["name"] for p in out if p["id"] in ids}


def test_network_is_off_by_default(markers: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", watch=[str(markers)])
    with AgentProc(cfg, marker_dir=markers) as a:
        names = prog_names(a.proc.pid)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
        a.sync()
        assert not a.matching(lambda e: e["event_type"].startswith("network_"))
    assert names and not {n for n in names if "connect" in n or "listen" in n or "bind" in n}


def test_connect_to_4444_is_detected_and_alerted(markers: Path, tmp_path: Path) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 4444))
    srv.listen()
    cfg = write_config(tmp_path / "c.toml", watch=[str(markers)], extra=NET_ON)
    try:
        with AgentProc(cfg, marker_dir=markers) as a:
            inv = a.wait_for(lambda e: e["event_type"] == "network_listen" and e["inventory"]
                             and e["local_port"] == 4444)
            c = socket.create_connection(("127.0.0.1", 4444))
            conn, peer = srv.accept()
            c.close()
            conn.close()
            a.sync()
            ev = a.wait_for(lambda e: e["event_type"] == "network_connect"
                            and e["remote_port"] == 4444 and e["pid"] == os.getpid())
            alerts = a.matching(lambda e: e["event_type"] == "alert"
                                and e["source_seq"] == ev["seq"])
            acc = a.wait_for(lambda e: e["event_type"] == "network_accept"
                             and e["pid"] == os.getpid())
    finally:
        srv.close()
    assert inv["pid"] == os.getpid() and inv["family"] == "ipv4" and inv["protocol"] == "tcp"
    assert ev["detection_type"] == "suspicious_outbound_port" and ev["alert"] is True
    assert ev["mitre"] == ["T1571"] and ev["result"] == "success" and ev["error"] is None
    assert ev["remote_addr"] == "127.0.0.1" and ev["local_port"] == peer[1]
    assert ev["direction"] == "outbound" and ev["exe_path"] == os.path.realpath(
        f"/proc/{os.getpid()}/exe")
    assert [x["rule_id"] for x in alerts] == ["NET-001"]
    assert alerts[0]["port"] == 4444 and alerts[0]["addr"] == "127.0.0.1"
    assert acc["remote_port"] == peer[1] and acc["local_port"] == 4444


def test_refused_connect_is_a_failure_without_detection(markers: Path, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    cfg = write_config(tmp_path / "c.toml", watch=[str(markers)],
                       extra=NET_ON + "[[detections.network]]\nname = \"any_port\"\n"
                       f"ports = [{free}]\n")
    with AgentProc(cfg, marker_dir=markers) as a:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", free))
        a.sync()
        ev = a.wait_for(lambda e: e["event_type"] == "network_connect"
                        and e["remote_port"] == free)
    assert ev["error"] == "ECONNREFUSED" and ev["result"] == "failure"
    assert ev["alert"] is False


def test_self_test_proves_the_network_hooks(markers: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", watch=[str(markers)], extra=NET_ON)
    with AgentProc(cfg, marker_dir=markers) as a:
        start = a.wait_for(lambda e: e["event_type"] == "agent_start")
        a.sync()
        leaked = a.matching(lambda e: e["event_type"].startswith("network_")
                            and "randguard-self-test" in (e["unix_path"] or ""))
    assert start["self_test"] == {"process": True, "file": True, "network": True}
    assert {"network_bind", "network_listen", "network_connect",
            "network_accept"} <= set(start["self_test_events"])
    assert not leaked  # the child's own connection is swallowed, never printed
