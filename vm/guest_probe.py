"""In the guest: start the agent with file, process and network events on and print its first
record (agent_start: hooks attached and missing, self-test), then stop it."""

import signal
import subprocess
import sys

CONFIG = "/tmp/probe.toml"

with open(CONFIG, "w") as f:
    f.write("[events]\nnetwork = true\n[network]\nenabled = true\n")
p = subprocess.Popen([sys.executable, "-m", "randguard", "run", "--config", CONFIG],
                     stdout=subprocess.PIPE, stderr=sys.stderr)
line = p.stdout.readline()
p.send_signal(signal.SIGINT)
try:
    p.wait(60)
except subprocess.TimeoutExpired:
    p.kill()
sys.stdout.write(line.decode(errors="replace"))
