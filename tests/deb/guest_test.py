#!/usr/bin/python3
"""In the guest (Debian 12, systemd as PID 1, no network): install the randguard .deb with apt
from /rg/debs and put the service through its life cycle, one step after the other. Run by
rg-deb-test.service (tests/deb/run.py writes it); each step's result goes to the host as one
line on the second serial port (/dev/ttyS1):

    @@STEP {"name": ..., "ok": true|false|null, "seconds": ..., "detail": ...}
    @@DONE {"ok": ...}

then the guest powers off. ok null: not run, because a step it needs failed.
Mode "caps" (run.py --caps) runs the capability and hardening experiments instead.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import termios
import time
import traceback
import tty
from pathlib import Path

DEBS = Path("/rg/debs")
JOB = json.loads(Path("/rg/job.json").read_text())
DEB = DEBS / JOB["deb"]  # the package under test
UPGRADE_DEB = DEBS / JOB["upgrade_deb"]  # the same, repacked with a higher version
UNIT = "randguard"
DEMO = "/etc/systemd/system/rand-guard-demo.service"
EXPECTED_CAPS = {"cap_bpf", "cap_perfmon", "cap_sys_admin", "cap_sys_ptrace",
                 "cap_dac_read_search"}
ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8",
           PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")

_port = os.open("/dev/ttyS1", os.O_WRONLY | os.O_NOCTTY)
tty.setraw(_port)


def send(line: str) -> None:
    data = (line + "\n").encode()
    while data:
        data = data[os.write(_port, data):]


def log(msg: str) -> None:
    print(f"[guest] {msg}", flush=True)


# --------------------------------------------------------------------------- helpers

def sh(cmd: str | list[str], check: bool = True, timeout: float = 120,
       **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True,
                       timeout=timeout, env=ENV, **kw)
    if check and r.returncode != 0:
        why = (r.stderr or r.stdout).strip()[-800:]
        raise AssertionError(f"{cmd!r} exited {r.returncode}: {why}")
    return r


def out(cmd: str | list[str], **kw) -> str:
    return sh(cmd, **kw).stdout.strip()


def prop(name: str) -> str:
    return out(["systemctl", "show", UNIT, "-p", name, "--value"])


def main_pid() -> int:
    return int(prop("MainPID"))


def journal(invocation: str | None = None) -> list[str]:
    cmd = ["journalctl", "--no-pager", "-o", "cat"]
    cmd += [f"_SYSTEMD_INVOCATION_ID={invocation}"] if invocation else ["-u", UNIT]
    return sh(cmd, check=False).stdout.splitlines()


def events(invocation: str | None = None) -> list[dict]:
    evs = []
    for line in journal(invocation):
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                evs.append(json.loads(line))
    return evs


def wait_for(what: str, pred, timeout: float = 60, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def agent_starts() -> list[dict]:
    return [e for e in events() if e.get("event_type") == "agent_start"]


def wait_started(previous: int, timeout: float = 90) -> dict:
    """The next agent_start line (there were `previous` before)."""
    starts = wait_for(f"agent_start #{previous + 1} in the journal",
                      lambda: (s := agent_starts()) and len(s) > previous and s, timeout, 1.0)
    return starts[previous]


def digest(paths: list[str]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        q = Path(p)
        h.update(p.encode())
        if q.is_file() and not q.is_symlink():
            h.update(q.read_bytes())
    return h.hexdigest()


def package_files() -> list[str]:
    return [p for p in out(["dpkg", "-L", "randguard"]).splitlines() if p.startswith("/")]


def etc_files() -> list[str]:
    return [str(p) for p in Path("/etc/randguard").rglob("*")]


CAP_NAMES = [
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
    "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
    "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
    "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
    "lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
    "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
]


def caps_of(pid: int, field: str = "CapEff") -> set[str]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            mask = int(line.split()[1], 16)
            return {"cap_" + n for i, n in enumerate(CAP_NAMES) if mask >> i & 1}
    return set()


def bpf_progs() -> list[dict]:
    return json.loads(out(["bpftool", "-j", "prog", "show"]) or "[]")


def bpf_links() -> list[dict]:
    return json.loads(out(["bpftool", "-j", "link", "show"]) or "[]")


def ours(progs: list[dict]) -> list[str]:
    return [f"{p.get('type')}:{p.get('name')}" for p in progs
            if str(p.get("name", "")).startswith("rg_")
            or p.get("type") in ("tracepoint", "tracing", "raw_tracepoint", "kprobe", "lsm")]


SNAP_SKIP = ("/proc", "/sys", "/dev", "/run", "/tmp", "/var/log", "/var/lib/apt",
             "/var/cache/apt", "/var/lib/dpkg", "/var/cache/debconf", "/var/cache/ldconfig",
             "/var/lib/systemd/timers", "/var/tmp", "/rg",
             # the uploader's cursor (fleet steps; DynamicUser's StateDirectory), not ours
             "/var/lib/private", "/var/lib/systemd/journal-upload")


def snapshot() -> set[str]:
    seen = set()
    for root, dirs, files in os.walk("/"):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in SNAP_SKIP]
        for n in dirs + files:
            seen.add(os.path.join(root, n))
    return seen


def apt_install(deb: Path) -> subprocess.CompletedProcess:
    return sh(["apt-get", "install", "-y", "--no-install-recommends", f"./{deb.name}"],
              cwd=DEBS, timeout=300)


# --------------------------------------------------------------------------- steps

RESULTS: list[dict] = []
STATE: dict = {}


def step(name: str, needs: tuple[str, ...] = ()):
    def wrap(fn):
        def run():
            missing = [n for n in needs if not any(r["name"] == n and r["ok"] for r in RESULTS)]
            if missing:
                res = {"name": name, "ok": None, "seconds": 0,
                       "detail": f"not run: needs {', '.join(missing)}"}
            else:
                log(f"step {name} ...")
                t0 = time.monotonic()
                try:
                    detail = fn() or ""
                    ok = True
                except Exception as e:  # a step's failure is reported, not raised
                    ok = False
                    detail = (f"{e}" if isinstance(e, AssertionError)
                              else "".join(traceback.format_exception(e))[-1500:])
                res = {"name": name, "ok": ok, "seconds": round(time.monotonic() - t0, 2),
                       "detail": detail}
                log(f"step {name}: {'PASS' if ok else 'FAIL'} {res['seconds']}s {detail}")
            RESULTS.append(res)
            send("@@STEP " + json.dumps(res))
        run.__name__ = name
        return run
    return wrap


@step("install-journal-remote")
def install_journal_remote() -> str:
    """systemd-journal-remote (uploader and collector, docs/fleet.md), before the snapshot the
    purge step compares with: it is not randguard's."""
    sh(["apt-get", "update", "-qq"], timeout=120)
    r = sh(["apt-get", "install", "-y", "--no-install-recommends", "systemd-journal-remote"],
           timeout=300)
    assert out(["systemctl", "is-enabled", UPLOAD], check=False) != "enabled", "enabled?"
    pulled = re.findall(r"^Setting up (\S+) ", r.stdout, re.M)
    return f"set up: {' '.join(p.split(':')[0] for p in pulled)}"


@step("install")
def install() -> str:
    STATE["snapshot"] = snapshot()
    t0 = time.monotonic()
    sh(["apt-get", "update", "-qq"], timeout=120)
    t1 = time.monotonic()
    r = apt_install(DEB)
    took = time.monotonic() - t1
    status = out(["dpkg-query", "-W", "-f", "${Status} ${Version}", "randguard"])
    assert status.startswith("install ok installed"), status
    pulled = re.findall(r"^Setting up (\S+) ", r.stdout, re.M)
    for dep in ("python3-cffi", "python3-pyroute2"):
        assert any(p.startswith(dep) for p in pulled), f"{dep} not installed by apt: {pulled}"
    STATE["version"] = status.split()[-1]
    return (f"apt-get update {t1 - t0:.1f}s, install {took:.1f}s; set up: "
            f"{' '.join(p.split(':')[0] for p in pulled)}")


@step("enabled-started-restarted-on-failure", needs=("install",))
def started() -> str:
    """Started by postinst; SIGKILL in the middle of its start-up (loading the programs): systemd
    restarts it (Restart=on-failure) and the second one comes up."""
    assert out(["systemctl", "is-enabled", UNIT], check=False) == "enabled", "not enabled"
    first = wait_for("a MainPID", lambda: main_pid(), 30, 0.1)
    n = len(agent_starts())
    time.sleep(1)
    os.kill(first, 9)
    wait_for("a new MainPID", lambda: main_pid() not in (0, first), 30)
    start = wait_started(n)
    assert prop("NRestarts") == "1", f"NRestarts {prop('NRestarts')}"
    assert out(["systemctl", "is-active", UNIT], check=False) == "active"
    assert all(start["self_test"].values()), f"self-test: {start['self_test']}"
    assert start["hooks_attached"], "no hooks attached"
    STATE["pid"] = main_pid()
    return (f"SIGKILL pid {first} -> restarted as {STATE['pid']} (NRestarts 1); agent_start: "
            f"kernel {start['kernel']}, libbpf {start['libbpf']}, "
            f"{len(start['hooks_attached'])} hooks, missing {start['hooks_missing']}, "
            f"self_test {start['self_test']}")


@step("version-help-man-docs", needs=("install",))
def version() -> str:
    v = out(["randguard", "--version"])
    want = rf"randguard {re.escape(STATE['version'])} \(libbpf 1\.\d+, \S+/libbpf\.so\.[\d.]+\)"
    assert re.fullmatch(want, v), v
    h = out(["randguard", "--help"])
    for cmd in ("run", "check-config", "detections", "replay", "--version"):
        assert cmd in h, f"--help lacks {cmd}"
    out(["randguard", "run", "--help"])
    r = sh(["randguard", "check-config", "/etc/randguard/config.toml"])
    assert ": ok (" in r.stderr, r.stderr
    table = out(["randguard", "detections"])  # the installed config's, from the shipped pack
    assert "| `cron_modified` | `T1053.003` |" in table, table[:400]
    man = sh("zcat /usr/share/man/man8/randguard.8.gz").stdout
    assert man.startswith(".TH RANDGUARD 8"), man[:40]
    doc = Path("/usr/share/doc/randguard")
    for f in ("copyright", "changelog.Debian.gz", "README.md", "events.md", "packaging.md"):
        assert (doc / f).exists() or (doc / f"{f}.gz").exists(), f"no {doc}/{f}[.gz]"
    conffiles = out(["dpkg-query", "-W", "-f", "${Conffiles}", "randguard"])
    for f in ("/etc/randguard/config.toml", "/etc/randguard/rules.d/README"):
        assert f in conffiles, f"{f} is not a conffile: {conffiles}"
    return f"{v}; {r.stderr.strip()}"


@step("unit-hardening", needs=("enabled-started-restarted-on-failure",))
def hardening() -> str:
    want = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "read-only",
            "StateDirectory": "randguard",
            "PrivateTmp": "yes", "Restart": "on-failure", "KillSignal": "15",
            "RuntimeDirectory": "randguard", "Type": "exec", "StartLimitBurst": "5",
            "ProtectKernelTunables": "yes", "LogRateLimitIntervalUSec": "0",
            "RestartPreventExitStatus": "2"}
    bad = {k: (v, prop(k)) for k, v in want.items() if prop(k) != v}
    assert not bad, f"unit properties (want, got): {bad}"
    # the persistence inventory ran under the unit's sandbox and kept its state where only
    # root reads it
    deadline = time.monotonic() + 120  # it hashes after agent_start: slow under TCG
    while not (invs := [e for e in events() if e.get("event_type") == "persistence_inventory"]
               ) and time.monotonic() < deadline:
        time.sleep(2)
    assert invs and invs[-1]["files"] > 0, f"persistence_inventory records: {invs}"
    assert invs[-1]["state_file"] == "/var/lib/randguard/inventory.state", invs[-1]
    st, dst = os.stat(invs[-1]["state_file"]), os.stat("/var/lib/randguard")
    assert (st.st_mode & 0o777, st.st_uid, dst.st_mode & 0o777) == (0o600, 0, 0o700), (
        oct(st.st_mode), st.st_uid, oct(dst.st_mode))
    bset = set(prop("CapabilityBoundingSet").split())
    assert bset == EXPECTED_CAPS, f"CapabilityBoundingSet {sorted(bset)}"
    pid = main_pid()
    eff = caps_of(pid)
    assert eff == EXPECTED_CAPS, f"CapEff of the agent {sorted(eff)}"
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/1/ns/mnt"), \
        "the agent shares PID 1's mount namespace"
    mem = int(prop("MemoryMax"))
    assert mem < 1 << 40, "no MemoryMax"
    cur = int(prop("MemoryCurrent"))
    score = sh(["systemd-analyze", "security", UNIT, "--no-pager"], check=False).stdout
    m = re.search(r"Overall exposure level for \S+: ([\d.]+) (\S+)", score)
    return (f"CapEff {' '.join(sorted(eff))}; MemoryMax {mem >> 20} MiB, MemoryCurrent "
            f"{cur >> 20} MiB; systemd-analyze security: "
            f"{m.group(1) + ' ' + m.group(2) if m else '?'}")


@step("demo-in-journal", needs=("enabled-started-restarted-on-failure",))
def demo() -> str:
    sh(f"sh -c 'printf x > {DEMO}'; rm -f {DEMO}")

    def found():
        evs = [e for e in events() if e.get("resolved_path") == DEMO or e.get("path") == DEMO]
        kinds = {e["event_type"] for e in evs if e.get("detection_type")
                 == "systemd_service_modified" and e.get("alert") is True}
        alerts = {e["source_event_type"] for e in evs if e["event_type"] == "alert"
                  and e.get("rule_id") == "FILE-SYSTEMD-001"}
        if {"file_open", "file_write", "file_unlink"} <= kinds and \
                {"file_write", "file_unlink"} <= alerts:
            return evs
        return None

    evs = wait_for("file_open/file_write/file_unlink + alerts for the demo", found, 30)
    w = next(e for e in evs if e["event_type"] == "file_write")
    assert w["comm"] == "sh" and w["exe_path"] == "/usr/bin/dash", w
    return "; ".join(f"seq {e['seq']} {e['event_type']}"
                     + (f" {e['detection_type']}" if e.get("detection_type") else "")
                     + (f" {e['rule_id']}" if e.get("rule_id") else "") for e in evs)


@step("reload-sighup", needs=("enabled-started-restarted-on-failure",))
def reload() -> str:
    pid = main_pid()
    rules = Path("/etc/randguard/rules.d/local.toml")
    rules.write_text('[[rules]]\nid = "LOCAL-001"\nname = "reload probe"\ntype = "file"\n'
                     'paths = ["/etc/rg-reload-probe"]\noperations = ["file_write"]\n')
    rules.chmod(0o644)
    before = sum("reloaded /etc/randguard/config.toml" in ln for ln in journal())
    sh(["systemctl", "reload", UNIT])
    wait_for("'reloaded' in the journal",
             lambda: sum("reloaded /etc/randguard/config.toml" in ln for ln in journal()) > before,
             30)
    assert main_pid() == pid, "reload changed the MainPID"
    sh("printf x > /etc/rg-reload-probe; rm -f /etc/rg-reload-probe")
    a = wait_for("LOCAL-001 alert",
                 lambda: [e for e in events() if e.get("rule_id") == "LOCAL-001"], 30)
    return f"same pid {pid}; alert seq {a[0]['seq']} from the rule added in rules.d"


@step("apt-install-twice-is-a-noop", needs=("enabled-started-restarted-on-failure",))
def twice() -> str:
    pid, files = main_pid(), package_files()
    before = (digest(files), digest(etc_files()))
    r = apt_install(DEB)
    assert "is already the newest version" in r.stdout, r.stdout[-400:]
    assert "0 upgraded, 0 newly installed, 0 to remove" in r.stdout, r.stdout[-400:]
    assert main_pid() == pid, "the second install restarted the agent"
    assert (digest(files), digest(etc_files())) == before, "files changed"
    return "apt: already the newest version; same MainPID, same files"


def other_user_shell(fifo: str, probe: str, shell: str = "sh") -> subprocess.Popen:
    """A shell of another user (nobody), blocked until `fifo` is written; then it tries to
    create `probe` (EACCES). Started before an agent start, its exe_path can only come from
    /proc/PID/exe, which the kernel shows another user's process only with CAP_SYS_PTRACE."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(fifo)
    os.mkfifo(fifo, 0o666)
    os.chmod(fifo, 0o666)
    return subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             "--", shell, "-c", f"read x < {fifo}; echo x > {probe}"],
                            stderr=subprocess.DEVNULL)


def release(fifo: str, proc: subprocess.Popen) -> None:
    with open(fifo, "w") as f:
        f.write("go\n")
    proc.wait(30)


@step("upgrade-restarts-running-keeps-admin-edit",
      needs=("enabled-started-restarted-on-failure",))
def upgrade() -> str:
    cfg = Path("/etc/randguard/config.toml")
    cfg.write_text(cfg.read_text() + "\n# admin edit\n")
    edited = cfg.read_bytes()
    # the shell's binary under /home: the agent runs with ProtectHome=read-only, yet
    # /proc/PID/exe names the file by its path on the host
    home_sh = Path("/home/rg/dash")
    home_sh.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy("/usr/bin/dash", home_sh)
    fifo, probe = "/run/rg-fifo", "/etc/rg-nobody-probe"
    nobody = other_user_shell(fifo, probe, str(home_sh))
    pid = main_pid()
    finals = sum(1 for e in events() if e.get("event_type") == "health" and e.get("final"))
    n = len(agent_starts())
    r = apt_install(UPGRADE_DEB)
    new = out(["dpkg-query", "-W", "-f", "${Version}", "randguard"])
    assert new == JOB["upgrade_version"], f"version after upgrade: {new}"
    wait_started(n)
    assert main_pid() != pid, "not restarted"
    assert out(["randguard", "--version"]).startswith(f"randguard {new} "), "--version"
    assert cfg.read_bytes() == edited, "the admin's edit of config.toml was lost"
    leftovers = [p for p in etc_files() if re.search(r"\.dpkg-(new|dist|old|tmp)$", p)]
    assert not leftovers, leftovers
    got = sum(1 for e in events() if e.get("event_type") == "health" and e.get("final"))
    assert got == finals + 1, "the old agent wrote no final health record"
    assert "Configuration file" not in r.stdout, "dpkg asked about the conffile"
    release(fifo, nobody)
    ev = wait_for("the open by the other user's shell",
                  lambda: [e for e in events() if e.get("resolved_path") == probe], 30)[0]
    assert ev["error"] == "EACCES" and ev["uid"] == 65534, ev
    assert ev["exe_path"] == str(home_sh), f"exe_path {ev['exe_path']!r} (CAP_SYS_PTRACE?)"
    shutil.rmtree(home_sh.parent)
    return (f"{STATE['version']} -> {new}: pid {pid} -> {main_pid()} (the old one wrote its "
            f"final health), config edit kept; uid 65534 shell from before the start: "
            f"exe_path {ev['exe_path']}")


@step("stop-final-health-no-bpf-left", needs=("enabled-started-restarted-on-failure",))
def stop() -> str:
    inv = prop("InvocationID")
    n_before = len(ours(bpf_progs()))
    assert n_before, "no randguard BPF programs while running?"
    t0 = time.monotonic()
    sh(["systemctl", "stop", UNIT])
    took = time.monotonic() - t0
    assert out(["systemctl", "is-active", UNIT], check=False) == "inactive"
    assert prop("Result") == "success" and prop("ExecMainStatus") == "0", \
        f"Result {prop('Result')}, status {prop('ExecMainStatus')}"
    evs = events(inv)
    assert evs and evs[-1].get("event_type") == "health" and evs[-1].get("final") is True, \
        f"last line of the run: {evs[-1] if evs else None}"
    left = ours(bpf_progs())
    assert not left, f"BPF programs left: {left}"
    links = [lk for lk in bpf_links() if lk.get("type") in ("perf_event", "tracing",
                                                           "raw_tracepoint")]
    assert not links, f"BPF links left: {links}"
    assert not Path("/run/randguard").exists(), "/run/randguard left"
    return (f"systemctl stop {took:.2f}s; final health seq {evs[-1]['seq']} "
            f"(uptime {evs[-1]['uptime_s']}s, rss {evs[-1]['rss_kb']} kB); {n_before} programs "
            "before, 0 after")


@step("reinstall-while-stopped-stays-stopped", needs=("stop-final-health-no-bpf-left",))
def reinstall_stopped() -> str:
    before = digest(etc_files())
    sh(["dpkg", "-i", str(UPGRADE_DEB)], timeout=300)
    time.sleep(1)
    assert out(["systemctl", "is-active", UNIT], check=False) == "inactive", "it was started"
    assert digest(etc_files()) == before, "/etc/randguard changed"
    return "dpkg -i of the installed version: ok, service still inactive, config unchanged"


@step("remove-keeps-config", needs=("install",))
def remove() -> str:
    sh(["apt-get", "remove", "-y", "randguard"], timeout=300)
    status = out(["dpkg-query", "-W", "-f", "${Status}", "randguard"], check=False)
    assert status == "deinstall ok config-files", status
    for p in ("/etc/randguard/config.toml", "/etc/randguard/rules.d/README"):
        assert Path(p).exists(), f"{p} removed"
    for p in ("/usr/lib/randguard", "/usr/bin/randguard", "/lib/systemd/system/randguard.service",
              "/usr/share/randguard"):
        assert not Path(p).exists(), f"{p} left after remove"
    return f"{status}; /etc/randguard kept: {' '.join(sorted(etc_files()))}"


@step("purge-removes-config-no-leftovers", needs=("install",))
def purge() -> str:
    sh(["apt-get", "purge", "-y", "randguard"], timeout=300)
    assert not Path("/etc/randguard").exists(), "/etc/randguard left after purge"
    status = out(["dpkg-query", "-W", "-f", "${Status}", "randguard"], check=False)
    assert "installed" not in status or "not-installed" in status, status
    r = sh(["apt-get", "autoremove", "--purge", "-y"], timeout=300)
    auto = re.findall(r"^Removing (\S+) ", r.stdout, re.M)
    now = snapshot()
    added = sorted(now - STATE["snapshot"])
    gone = sorted(STATE["snapshot"] - now)
    named = sorted(p for p in now if "randguard" in p)
    assert not added and not gone and not named, \
        f"differences to before the install: added {added[:20]}, gone {gone[:20]}, {named[:20]}"
    return (f"/etc/randguard gone; autoremove: {' '.join(a.split(':')[0] for a in auto)}; "
            "file tree identical to before the install")


# --------------------------------------------------------------------------- fleet (docs/fleet.md)

# A collector on the guest's loopback: systemd-journal-remote through its socket unit, plain
# HTTP (the documented setup is TLS with a private CA; only this test uses HTTP), and the
# uploader through its service: the packaged retry drop-in as shipped, the URL from a
# journal-upload.conf.d drop-in. All of it under /run: nothing is left in /etc.
COLLECTOR = "127.0.0.1:19532"
REMOTE_DIR = "/var/log/journal/remote"
EXAMPLES = Path("/usr/share/doc/randguard/examples")
REMOTE_UNITS = ["systemd-journal-remote.socket", "systemd-journal-remote.service"]
UPLOAD = "systemd-journal-upload.service"
HOST = "rg-deb-guest"  # run.py's image: /etc/hostname


def write(path: str, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


def fleet_setup() -> None:
    write("/run/systemd/system/systemd-journal-remote.socket.d/test.conf",
          f"[Socket]\nListenStream=\nListenStream={COLLECTOR}\n")
    write("/run/systemd/system/systemd-journal-remote.service.d/test.conf",
          "[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-journal-remote "
          f"--listen-http=-3 --output={REMOTE_DIR}/\n")
    write("/run/systemd/system/systemd-journal-upload.service.d/retry.conf",
          (EXAMPLES / "journal-upload-retry.conf").read_text())
    write("/run/systemd/journal-upload.conf.d/test.conf", f"[Upload]\nURL=http://{COLLECTOR}\n")
    sh(["systemctl", "daemon-reload"])


def collected(matches: list[str] | None = None) -> list[dict]:
    """The collector's journal entries of randguard (journalctl -o json: fields + MESSAGE)."""
    r = sh(["journalctl", "--no-pager", "-D", REMOTE_DIR, "-o", "json",
            "SYSLOG_IDENTIFIER=randguard", *(matches or [])], check=False)
    ents = []
    for ln in r.stdout.splitlines():
        with contextlib.suppress(ValueError):
            ents.append(json.loads(ln))
    return ents


def collected_events(invocation: str) -> list[dict]:
    """This agent run's NDJSON at the collector (PRIORITY=6: journal.py), with _HOSTNAME."""
    evs = []
    for e in collected(["PRIORITY=6", f"_SYSTEMD_INVOCATION_ID={invocation}"]):
        ev = json.loads(e["MESSAGE"])
        ev["_HOSTNAME"] = e.get("_HOSTNAME")
        evs.append(ev)
    return evs


def seq_gaps(evs: list[dict]) -> list[int]:
    """seq values missing from 1..max (duplicates, from a retried upload, are not gaps)."""
    seen = {e["seq"] for e in evs}
    return sorted(set(range(1, max(seen, default=0) + 1)) - seen)


def demo_alerts(evs: list[dict], path: str) -> list[dict]:
    return [e for e in evs if e.get("event_type") == "alert" and e.get("path") == path
            and e.get("rule_id") == "FILE-SYSTEMD-001"]


def local_max_seq(invocation: str) -> int:
    return max((e["seq"] for e in events(invocation)), default=0)


@step("fleet-upload-demo-to-collector", needs=("demo-in-journal",))
def fleet_ship() -> str:
    """systemd-journal-upload ships the journal to systemd-journal-remote on loopback: the
    demo's alerts arrive with their host, and PRIORITY=6 selects exactly the NDJSON."""
    assert Path("/lib/systemd/systemd-journal-upload").exists(), "systemd-journal-remote missing"
    fleet_setup()
    t0 = time.monotonic()
    inv = prop("InvocationID")
    STATE["fleet_invocation"], STATE["fleet_seq0"] = inv, local_max_seq(inv)
    sh(["systemctl", "start", *REMOTE_UNITS[:1], UPLOAD])
    want = local_max_seq(inv)
    evs = wait_for(f"seq 1..{want} of this run at the collector",
                   lambda: (c := collected_events(inv)) and max(e["seq"] for e in c) >= want
                   and c, 90, 1.0)
    took = time.monotonic() - t0
    alerts = demo_alerts(evs, DEMO)
    assert {a["source_event_type"] for a in alerts} >= {"file_write", "file_unlink"}, alerts
    bad_host = [(e["seq"], e["host"], e["_HOSTNAME"]) for e in evs
                if e["host"] != HOST or e["_HOSTNAME"] != HOST]
    assert not bad_host, f"host (field, _HOSTNAME) not {HOST}: {bad_host[:5]}"
    assert not seq_gaps(evs), f"seq gaps at the collector: {seq_gaps(evs)[:20]}"
    # the agent's log lines carry other priorities, and PRIORITY=6 is only NDJSON
    logs = [e for e in collected([f"_SYSTEMD_INVOCATION_ID={inv}"]) if e.get("PRIORITY") != "6"]
    assert logs and all(not e["MESSAGE"].startswith("{") for e in logs), logs[:3]
    prios = sorted({e["PRIORITY"] for e in logs})
    # the same selection on the host, as packaging.md and the unit's comment say
    n_events = len(events())
    mine = sh(["journalctl", "--no-pager", "-u", UNIT, "-p", "info..info", "-o", "cat"]
              ).stdout.splitlines()
    assert len(mine) >= n_events and all(ln.startswith("{") for ln in mine), \
        (len(mine), n_events, [ln for ln in mine if not ln.startswith("{")][:3])
    files = sorted(p.name for p in Path(REMOTE_DIR).glob("*.journal"))
    return (f"{len(evs)} records of this run at the collector ({files}) within {took:.1f}s, "
            f"seq 1..{max(e['seq'] for e in evs)} without a gap, host {HOST}; demo alerts seq "
            f"{[a['seq'] for a in alerts]}; agent log lines at PRIORITY {prios}")


@step("fleet-collector-down-nothing-lost", needs=("fleet-upload-demo-to-collector",))
def fleet_outage() -> str:
    """The collector stops; the demo runs again; the uploader fails and retries (the packaged
    drop-in); the collector starts again: every record written meanwhile arrives."""
    inv = STATE["fleet_invocation"]
    demo2 = "/etc/systemd/system/rand-guard-demo-2.service"
    try:
        sh(["systemctl", "stop", *REMOTE_UNITS])
        restarts = int(out(["systemctl", "show", UPLOAD, "-p", "NRestarts", "--value"]))
        before = local_max_seq(inv)
        sh(f"sh -c 'printf x > {demo2}'; rm -f {demo2}")
        local = wait_for("the outage's demo alerts in the local journal",
                         lambda: len(demo_alerts(events(inv), demo2)) >= 2 and events(inv), 30)
        wait_for("the uploader to fail and be restarted",
                 lambda: int(out(["systemctl", "show", UPLOAD, "-p", "NRestarts", "--value"]))
                 > restarts, 60, 0.5)
        down_max = local_max_seq(inv)
        assert max(e["seq"] for e in collected_events(inv)) < down_max, "collector still up?"
        t0 = time.monotonic()
        sh(["systemctl", "start", REMOTE_UNITS[0]])
        evs = wait_for(f"seq up to {down_max} at the collector",
                       lambda: (c := collected_events(inv)) and max(e["seq"] for e in c)
                       >= down_max and c, 90, 1.0)
        took = time.monotonic() - t0
        assert not seq_gaps(evs), f"seq gaps at the collector: {seq_gaps(evs)[:20]}"
        alerts = demo_alerts(evs, demo2)
        assert len(alerts) >= 2 and all(a["host"] == HOST for a in alerts), alerts
        assert len(demo_alerts(local, demo2)) == len(alerts), "alerts differ from the local ones"
        failed = [ln for ln in sh(["journalctl", "--no-pager", "-o", "cat", "-u", UPLOAD],
                                  check=False).stdout.splitlines() if "failed" in ln]
        n = int(out(["systemctl", "show", UPLOAD, "-p", "NRestarts", "--value"])) - restarts
        dups = len(evs) - len({e["seq"] for e in evs})
        last = max(e["seq"] for e in evs)
        return (f"collector down while seq {before + 1}..{down_max} were written (demo 2 alerts "
                f"seq {[a['seq'] for a in alerts]}); uploader restarted {n}x "
                f"({failed[-1][:90] if failed else 'no failure logged'!r}); after the restart "
                f"all arrived in {took:.1f}s: seq 1..{last} without a gap, {dups} duplicates")
    finally:
        sh(["systemctl", "stop", UPLOAD, *REMOTE_UNITS], check=False)


@step("fleet-sandboxed-services-change-no-persistence", needs=("fleet-upload-demo-to-collector",))
def fleet_inventory() -> str:
    """The collector's and the uploader's starts (services in mount namespaces of their own:
    each mounts at `/` there) make the inventory hash its roots again, and that must find
    nothing changed: no persistence_change comes from a file_mount (it once walked `/` without
    entering /lib -> usr/lib and called some 400 files removed)."""
    inv = STATE["fleet_invocation"]
    time.sleep(3)  # the inventory hashes a path again once it has been quiet a while
    evs = [e for e in events(inv) if e["seq"] > STATE["fleet_seq0"]]
    src = {e["seq"]: e for e in evs}
    mounts = [e for e in evs if e["event_type"] == "file_mount"]
    assert mounts, "no file_mount from the services' starts: the check below would be empty"
    bad = [(e["path"], e["change"]) for e in evs if e["event_type"] == "persistence_change"
           and src.get(e.get("source_seq"), {}).get("event_type") == "file_mount"]
    assert not bad, f"{len(bad)} persistence changes from a mount: {bad[:8]}"
    return (f"{len(mounts)} file_mount events while the fleet steps ran "
            f"({sorted({e['resolved_path'] for e in mounts})[:4]}), no persistence change "
            "from them")


# --------------------------------------------------------------------------- caps mode

def drop_in(text: str) -> None:
    d = Path("/run/systemd/system/randguard.service.d")
    d.mkdir(parents=True, exist_ok=True)
    (d / "caps.conf").write_text(text)
    sh(["systemctl", "daemon-reload"])


def experiment(name: str, bset: str | None, extra: str = "", config: str | None = None) -> dict:
    """Restart the agent with another bounding set (and extra unit settings); what works."""
    text = "[Service]\n"
    if bset is not None:
        text += f"CapabilityBoundingSet=\nCapabilityBoundingSet={bset}\n"
    if config:
        text += ("ExecStart=\nExecStart=/usr/bin/randguard run --config " + config + "\n")
    drop_in(text + extra)
    fifo, probe = "/run/rg-fifo", "/etc/rg-nobody-probe"
    nobody = other_user_shell(fifo, probe)
    n = len(agent_starts())
    lines = len(journal())
    sh(["systemctl", "reset-failed", UNIT], check=False)
    sh(["systemctl", "restart", UNIT], check=False)
    res: dict = {"name": name, "bset": bset, "extra": extra.strip()}

    def outcome():
        if len(agent_starts()) > n:
            return "started"
        if prop("NRestarts") != "0" or prop("ActiveState") in ("failed", "inactive") or \
                prop("SubState") == "auto-restart":
            return "failed"
        return None

    res["outcome"] = wait_for("agent_start or a failure", outcome, 180, 1.0)
    res["started"] = res["outcome"] == "started"
    if res["started"]:
        start = agent_starts()[n]
        res["self_test"] = start["self_test"]
        res["hooks_attached"] = len(start["hooks_attached"])
    else:
        res["state"] = prop("ActiveState") + "/" + prop("SubState") + "/" + prop("Result")
        res["log"] = [ln for ln in journal()[lines:] if "rror" in ln][-3:]
    release(fifo, nobody)
    if res["started"]:
        with contextlib.suppress(AssertionError):
            ev = wait_for("probe", lambda: [e for e in events() if e.get("resolved_path") == probe
                                            and e["pid"] == nobody.pid], 15)[0]
            res["other_user_exe_path"] = ev["exe_path"]
        if config:
            evs = events()
            first = [i for i, e in enumerate(evs) if e.get("event_type") == "agent_start"][n]
            inv = [e for e in evs[first:] if e.get("event_type") == "network_listen"
                   and e.get("inventory") and e.get("unix_path") == "/tmp/rg-nobody.sock"]
            res["other_user_socket_pid"] = inv[-1]["pid"] if inv else "no event"
            res["inventory_warnings"] = [ln for ln in journal()[lines:] if "inventory" in ln][-2:]
        res["CapEff"] = " ".join(sorted(caps_of(main_pid()))) if main_pid() else ""
        res["memory_peak_mib"] = memory_peak()
    sh(["systemctl", "stop", UNIT], check=False)
    return res


def memory_peak() -> float | None:
    cg = prop("ControlGroup")
    with contextlib.suppress(OSError, ValueError):
        return round(int(Path(f"/sys/fs/cgroup{cg}/memory.peak").read_text()) / 2**20, 1)
    return None


def caps_mode() -> None:
    sh(["depmod", "-a"])  # the sock_diag modules run.py put in, loaded on demand
    sh(["apt-get", "update", "-qq"], timeout=120)
    apt_install(DEB)
    wait_started(0)
    Path("/etc/randguard/net.toml").write_text(
        Path("/etc/randguard/config.toml").read_text()
        .replace("network = false", "network = true", 1)
        .replace("[network]\n# Off by default. Collection needs both this and [events] network "
                 "= true.\nenabled = false", "[network]\nenabled = true"))
    os.chmod("/etc/randguard/net.toml", 0o644)
    # a unix socket of another user, listening since before the agent's start
    sockd = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                              "python3", "-c",
                              "import socket,time,os\n"
                              "s=socket.socket(socket.AF_UNIX)\n"
                              "s.bind('/tmp/rg-nobody.sock'); s.listen(); time.sleep(3600)"])
    full = "CAP_BPF CAP_PERFMON CAP_SYS_ADMIN CAP_SYS_PTRACE CAP_DAC_READ_SEARCH"
    net = "/etc/randguard/net.toml"
    paranoid = Path("/proc/sys/kernel/perf_event_paranoid")
    plans = [
        ("shipped", full, "", net),
        ("no CAP_SYS_PTRACE", "CAP_BPF CAP_PERFMON CAP_SYS_ADMIN CAP_DAC_READ_SEARCH", "", net),
        ("no CAP_DAC_READ_SEARCH", "CAP_BPF CAP_PERFMON CAP_SYS_ADMIN CAP_SYS_PTRACE", "", net),
        ("no CAP_SYS_ADMIN", "CAP_BPF CAP_PERFMON CAP_SYS_PTRACE CAP_DAC_READ_SEARCH", "", None),
        ("no CAP_SYS_ADMIN, perf_event_paranoid=2",
         "CAP_BPF CAP_PERFMON CAP_SYS_PTRACE CAP_DAC_READ_SEARCH", "", None),
        ("CAP_BPF CAP_PERFMON only, perf_event_paranoid=2", "CAP_BPF CAP_PERFMON", "", None),
        ("CAP_SYS_ADMIN only", "CAP_SYS_ADMIN", "", None),
        ("drop-in CapabilityBoundingSet=~CAP_SYS_ADMIN, perf_event_paranoid=2", None,
         "CapabilityBoundingSet=~CAP_SYS_ADMIN\n", None),
        ("no CAP_BPF CAP_PERFMON", "CAP_SYS_ADMIN CAP_SYS_PTRACE CAP_DAC_READ_SEARCH", "", None),
        ("tracefs unmounted before start", full, "", None),
        ("+MemoryDenyWriteExecute", full, "MemoryDenyWriteExecute=yes\n", None),
        ("SystemCallFilter without bpf and perf_event_open", full,
         "SystemCallFilter=\nSystemCallFilter=@system-service\n", None),
    ]
    orig = paranoid.read_text().strip()
    log(f"kernel.perf_event_paranoid = {orig}")
    send("@@CAPS " + json.dumps({"name": "kernel.perf_event_paranoid", "value": orig}))
    for name, bset, extra, config in plans:
        paranoid.write_text("2" if "paranoid=2" in name else orig)
        if name.startswith("tracefs"):
            sh("umount /sys/kernel/tracing", check=False)
            res = experiment(name, bset, extra, config)
            res["tracefs_mounted_after"] = "tracefs" in Path("/proc/mounts").read_text()
        else:
            res = experiment(name, bset, extra, config)
        log(json.dumps(res))
        RESULTS.append(res)
        send("@@CAPS " + json.dumps(res))
    sockd.kill()


# --------------------------------------------------------------------------- main

STEPS = [install_journal_remote, install, started, version, hardening, demo, fleet_ship,
         fleet_outage, fleet_inventory, reload, twice, upgrade, stop, reinstall_stopped, remove,
         purge]


def main() -> None:
    t0 = time.monotonic()
    send("@@BOOT " + json.dumps({"uptime": float(Path("/proc/uptime").read_text().split()[0]),
                                 "kernel": os.uname().release}))
    ok = False
    try:
        if JOB.get("mode") == "caps":
            caps_mode()
            ok = True
        elif JOB.get("mode") == "journal-bench":
            sys.path.insert(0, "/rg")
            import journal_guest  # bench/workloads/journal_guest.py

            journal_guest.run(sys.modules[__name__])
            ok = True
        else:
            for s in STEPS:
                s()
            ok = all(r["ok"] for r in RESULTS)
    except Exception:
        send("@@STEP " + json.dumps({"name": "harness", "ok": False, "seconds": 0,
                                     "detail": traceback.format_exc()[-1500:]}))
    jr = "\n".join(journal()).encode()[-400_000:]
    send("@@JOURNAL " + base64.b64encode(jr).decode())
    send("@@DONE " + json.dumps({"ok": ok, "seconds": round(time.monotonic() - t0, 1)}))
    termios.tcdrain(_port)


if __name__ == "__main__":
    try:
        main()
    finally:
        sys.stdout.flush()
        subprocess.run(["systemctl", "poweroff", "--no-block"], check=False)
