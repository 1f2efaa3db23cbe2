"""The journal section's guest side (bench/workloads/journal.py boots it through
tests/deb/run.py --journal-bench): in the .deb test's Debian 12 guest, with systemd as PID 1,
the installed randguard.service under three measurements. Results go to the host as one
`@@BENCH {json}` line.

1. cpu: the agent's CPU per line written with the shipped unit (StandardOutput=journal) and
   with a drop-in StandardOutput=truncate:FILE, under the same paced watched-file workload;
   journald's CPU beside it (cgroup cpu.stat of both services).
2. writer: how journald's native protocol compares with the stdout stream for the same
   lines: a writer sends N event lines either batched to stdout (as the agent does) or one
   datagram per entry with EVENT_TYPE/SEVERITY/RANDGUARD_SEQ fields; writer and journald
   CPU per entry.
3. lossless: systemd-journal-upload to systemd-journal-remote on 127.0.0.1 (tests/deb's
   setup) at rising paced rates: the highest at which every line reaches the collector
   (seq without a gap, no `loss` record, all arrived within DRAIN_S after the load).

`g` is tests/deb/guest_test.py's module (sh, out, wait_for, events, send, fleet_setup...).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

BENCH_CFG = "/etc/randguard/bench.toml"
TARGET = "/etc/rg-bench/f"  # watched (/etc): each open(O_WRONLY) is one file_open line
OUT_FILE = "/var/lib/rg-bench.ndjson"
DROPIN = Path("/run/systemd/system/randguard.service.d/bench.conf")
DRAIN_S = 60
SEQ = re.compile(r'^\{"seq":(\d+),')

# A paced open loop (the guest has python3, no compiler): N opens at RATE per second.
GEN = """import os, sys, time
n, rate, path = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
t0 = time.monotonic()
for i in range(n):
    d = t0 + i / rate - time.monotonic()
    if d > 0.002:
        time.sleep(d)
    os.close(os.open(path, os.O_WRONLY))
print(time.monotonic() - t0)
"""

# One event line (a real file_open of the demo) and the two ways of handing it to journald.
LINE = ('{"seq":%d,"event_type":"file_open","timestamp":"2026-12-04T22:40:25.288731599Z",'
        '"timestamp_ns":4297241441633,"host":"rg-deb-guest","syscall":"openat","abi":"x86_64",'
        '"pid":9253,"tid":9253,"ppid":9189,"uid":0,"gid":0,"comm":"sh","exe_path":'
        '"/usr/bin/dash","resolved_path":"/etc/systemd/system/rand-guard-demo.service",'
        '"filename":"/etc/systemd/system/rand-guard-demo.service","old_path":null,'
        '"old_filename":null,"ret":3,"error":null,"flags":577,"access":"write","created":true,'
        '"fd":3,"inode":739,"path_truncated":false,"io_uring":false,"alert":true,'
        '"detection_type":"systemd_service_modified","mitre":["T1543.002"]}')
WRITER = """import os, resource, socket, sys
mode, n, line = sys.argv[1], int(sys.argv[2]), LINE
if mode == "stream":
    for b in range(0, n, 64):
        os.write(1, "".join(line % i + "\\n" for i in range(b, min(n, b + 64))).encode())
else:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.connect("/run/systemd/journal/socket")
    for i in range(n):
        s.send(("SYSLOG_IDENTIFIER=rgw-native\\nPRIORITY=6\\nEVENT_TYPE=file_open\\n"
                "SEVERITY=high\\nRANDGUARD_SEQ=%d\\nMESSAGE=" % i + line % i + "\\n").encode())
r = resource.getrusage(resource.RUSAGE_SELF)
print(r.ru_utime + r.ru_stime, file=open("/run/rg-writer-cpu", "w"))
"""


def cpu_usec(unit: str) -> int:
    for ln in Path(f"/sys/fs/cgroup/system.slice/{unit}/cpu.stat").read_text().splitlines():
        if ln.startswith("usage_usec "):
            return int(ln.split()[1])
    raise LookupError(unit)


# The guest has no /var/log/journal: journald keeps the journal in /run, capped by default at
# 10% of that tmpfs (about 40 MB here), rotating files of an eighth of that. The bench writes
# over 100,000 lines: room for all of them, so that vacuuming does not take lines away.
JOURNALD_CONF = "[Journal]\nRuntimeMaxUse=250M\nRuntimeMaxFileSize=32M\n"


def setup(g) -> None:
    Path("/run/systemd/journald.conf.d").mkdir(parents=True, exist_ok=True)
    Path("/run/systemd/journald.conf.d/bench.conf").write_text(JOURNALD_CONF)
    g.sh(["systemctl", "restart", "systemd-journald"])
    g.sh(["apt-get", "update", "-qq"], timeout=120)
    g.sh(["apt-get", "install", "-y", "--no-install-recommends", "systemd-journal-remote"],
         timeout=300)
    g.apt_install(g.DEB)
    g.wait_started(0)
    # no inventory hashing during the measurements: only the workload's events
    cfg = Path("/etc/randguard/config.toml").read_text()
    cfg = re.sub(r"(\[inventory\]\s*\n(?:#.*\n)*)enabled = true", r"\1enabled = false", cfg)
    assert "enabled = false" in cfg.split("[inventory]")[1], "inventory not turned off"
    Path(BENCH_CFG).write_text(cfg)
    os.chmod(BENCH_CFG, 0o644)
    Path(TARGET).parent.mkdir(exist_ok=True)
    Path(TARGET).write_text("")
    Path("/rg/gen.py").write_text(GEN)
    # the line in the script, not on systemd-run's command line (no specifiers, no $ there)
    Path("/rg/writer.py").write_text(WRITER.replace("LINE", repr(LINE), 1))


def restart_agent(g, to_file: bool) -> str:
    """The shipped unit with the bench config, stdout to the journal or to OUT_FILE; its
    invocation id once agent_start is written."""
    DROPIN.parent.mkdir(parents=True, exist_ok=True)
    text = f"[Service]\nExecStart=\nExecStart=/usr/bin/randguard run --config {BENCH_CFG}\n"
    if to_file:
        text += f"StandardOutput=truncate:{OUT_FILE}\n"
    DROPIN.write_text(text)
    g.sh(["systemctl", "daemon-reload"])
    g.sh(["systemctl", "restart", g.UNIT])
    inv = g.prop("InvocationID")
    g.wait_for("agent_start", lambda: last_seq(g, inv, to_file) > 0, 120, 0.5)
    return inv


def lines(g, inv: str, to_file: bool) -> list[str]:
    if to_file:
        return Path(OUT_FILE).read_text().splitlines()
    return g.sh(["journalctl", "--no-pager", "-o", "cat", f"_SYSTEMD_INVOCATION_ID={inv}",
                 "PRIORITY=6"], check=False).stdout.splitlines()


def last_seq(g, inv: str, to_file: bool, where: list[str] | None = None) -> int:
    """The last line's seq (the journal read from its end: -n 1)."""
    if to_file:
        tail = lines(g, inv, True)[-1:]
    else:
        tail = g.sh(["journalctl", "--no-pager", *(where or []), "-n", "1", "-o", "cat",
                     f"_SYSTEMD_INVOCATION_ID={inv}", "PRIORITY=6"], check=False
                    ).stdout.splitlines()
    m = SEQ.match(tail[0]) if tail else None
    return int(m.group(1)) if m else 0


def count_target(g, inv: str, to_file: bool) -> int:
    if to_file:
        return sum(TARGET in ln for ln in lines(g, inv, True))
    return int(g.out(f"journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID={inv} PRIORITY=6 "
                     f"| grep -cF {TARGET} || true"))


def generate(g, n: int, rate: float) -> float:
    """Run the paced generator; its wall seconds."""
    return float(g.out(["python3", "/rg/gen.py", str(n), str(rate), TARGET], timeout=600))


def cpu_run(g, to_file: bool, n: int, rate: float) -> dict:
    inv = restart_agent(g, to_file)
    time.sleep(3)  # past the self-test's leftovers
    seq0, before = last_seq(g, inv, to_file), count_target(g, inv, to_file)
    a0, j0 = cpu_usec("randguard.service"), cpu_usec("systemd-journald.service")
    secs = generate(g, n, rate)
    g.wait_for("every open written", lambda: count_target(g, inv, to_file) - before >= n,
               120, 1.0)
    a1, j1 = cpu_usec("randguard.service"), cpu_usec("systemd-journald.service")
    written = last_seq(g, inv, to_file) - seq0
    return {"output": "file" if to_file else "journal", "opens": n, "rate": rate,
            "seconds": round(secs, 2), "lines": written,
            "agent_cpu_us_per_line": round((a1 - a0) / written, 1),
            "journald_cpu_us_per_line": round((j1 - j0) / written, 1)}


def writer_run(g, mode: str, n: int) -> dict:
    ident = "rgw-native" if mode == "native" else "rgw-stream"
    j0 = cpu_usec("systemd-journald.service")
    g.sh(["systemd-run", "--wait", "--collect", "--quiet", "-p", "StandardOutput=journal",
          "-p", f"SyslogIdentifier={ident}", "-p", "LogRateLimitIntervalSec=0",
          "python3", "/rg/writer.py", mode, str(n)], timeout=600)
    seen = 0

    def arrived() -> bool:
        nonlocal seen
        seen = int(g.out(f"journalctl --no-pager -o cat -t {ident} | wc -l"))
        return seen >= n

    try:
        g.wait_for(f"{n} {mode} entries", arrived, 180, 2.0)
    except AssertionError as e:
        raise AssertionError(f"{e}: {seen} seen; {g.out(['journalctl', '--disk-usage'])}; "
                             f"{journald_notes(g)}") from None
    j1 = cpu_usec("systemd-journald.service")
    w = float(Path("/run/rg-writer-cpu").read_text())
    return {"mode": mode, "entries": n, "writer_cpu_us_per_entry": round(w * 1e6 / n, 1),
            "journald_cpu_us_per_entry": round((j1 - j0) / n, 1)}


def journald_notes(g) -> list[str]:
    """journald's own messages about suppressing, rotating or deleting entries."""
    r = g.sh(["journalctl", "--no-pager", "-o", "cat", "-u", "systemd-journald"], check=False)
    return [ln for ln in r.stdout.splitlines()
            if re.search(r"uppress|otat|eleted|acuum|full|dropp", ln)][-5:]


def lossless(g, rates: list[float], seconds: float) -> list[dict]:
    """Paced rates through journald -> upload -> remote; stop after the first that loses."""
    inv = restart_agent(g, False)
    g.fleet_setup()
    g.sh(["systemctl", "start", g.REMOTE_UNITS[0], g.UPLOAD])
    rows = []
    for rate in rates:
        seq0 = last_seq(g, inv, False)
        n = int(rate * seconds)
        secs = generate(g, n, rate)
        t_end = time.monotonic()
        total = sum(r["opens"] for r in rows) + n
        g.wait_for("the lines in the local journal",
                   lambda total=total: count_target(g, inv, False) >= total, 120, 2.0)
        want = last_seq(g, inv, False)
        arrived = None
        deadline = t_end + DRAIN_S
        while time.monotonic() < deadline:  # the collector's last line, read from the end
            if last_seq(g, inv, False, ["-D", g.REMOTE_DIR]) >= want:
                arrived = time.monotonic() - t_end
                break
            time.sleep(1)
        got = remote_seqs(g, inv)
        window = set(range(seq0 + 1, want + 1))
        evs = g.events(inv)
        losses = [e for e in evs if e.get("event_type") == "loss" and e["seq"] > seq0]
        row = {"rate": rate, "opens": n, "achieved_rate": round(n / secs, 1),
               "lines": len(window), "missing_at_collector": len(window - got),
               "loss_records": len(losses), "arrived_s": round(arrived, 1) if arrived else None}
        row["lossless"] = (arrived is not None and not row["missing_at_collector"]
                           and not losses)
        rows.append(row)
        g.log(f"lossless {row}")
        if not row["lossless"] or row["achieved_rate"] < 0.9 * rate:
            break
    g.sh(["systemctl", "stop", g.UPLOAD, *g.REMOTE_UNITS], check=False)
    return rows


def remote_seqs(g, inv: str) -> set[int]:
    r = g.sh(["journalctl", "--no-pager", "-D", g.REMOTE_DIR, "-o", "cat",
              f"_SYSTEMD_INVOCATION_ID={inv}", "PRIORITY=6"], check=False)
    return {int(m.group(1)) for ln in r.stdout.splitlines() if (m := SEQ.match(ln))}


def run(g) -> None:
    job = g.JOB.get("bench", {})
    t0 = time.monotonic()
    setup(g)
    res: dict = {"kernel": os.uname().release, "vcpus": os.cpu_count(), "cpu": [],
                 "writer": [], "lossless": []}
    n, rate = job.get("opens", 6000), job.get("rate", 600.0)
    errors = []
    for _ in range(job.get("rounds", 2)):
        for to_file in (False, True):
            res["cpu"].append(cpu_run(g, to_file, n, rate))
            g.log(f"cpu {res['cpu'][-1]}")
    for mode in ("stream", "native"):
        try:
            res["writer"].append(writer_run(g, mode, job.get("writer_entries", 10000)))
            g.log(f"writer {res['writer'][-1]}")
        except AssertionError as e:  # the other phases still run
            errors.append(f"writer {mode}: {e}")
            g.log(errors[-1])
    res["lossless"] = lossless(g, job.get("rates", [250, 500, 1000, 2000, 4000]),
                               job.get("seconds", 10))
    res["journal_disk_usage"] = g.out(["journalctl", "--disk-usage"])
    res["journald_notes"] = journald_notes(g)
    res["errors"] = errors
    res["seconds"] = round(time.monotonic() - t0, 1)
    g.send("@@BENCH " + json.dumps(res))

