"""The actions recorded in scenario.rgrec, for the pipeline's replay tests.

Re-record (as root, from the repo root):
    .venv/bin/randguard run --config tests/data/scenario.toml \
        --record tests/data/scenario.rgrec > /dev/null &
    sleep 6; .venv/bin/python tests/data/scenario.py; sleep 1; kill -INT %1
"""

import contextlib
import os
import shutil

BASE = "/var/tmp/rg-scenario"
W = f"{BASE}/watched"

shutil.rmtree(BASE, ignore_errors=True)
os.makedirs(f"{W}/excluded")
os.makedirs(f"{W}/sub")
# create + write once + a second write that must not be reported
fd = os.open(f"{W}/a.conf", os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b"one")
os.write(fd, b"two")
os.close(fd)
# relative to the cwd, with .. and //
os.chdir(f"{W}/sub")
os.close(os.open("..//sub/./b.conf", os.O_WRONLY | os.O_CREAT, 0o644))
# relative to a dirfd, and a failed open
dfd = os.open(W, os.O_RDONLY | os.O_DIRECTORY)
os.close(os.open("c.conf", os.O_RDWR | os.O_CREAT, 0o600, dir_fd=dfd))
with contextlib.suppress(FileNotFoundError):
    os.open("missing/d.conf", os.O_WRONLY, dir_fd=dfd)
# read-only opens: only under read_paths
with open(f"{W}/secret", "w") as f:
    f.write("s")
with open(f"{W}/secret") as f:
    f.read()
with open(f"{W}/a.conf") as f:
    f.read()
# excluded, then renamed into the watched tree
with open(f"{W}/excluded/x.service", "w") as f:
    f.write("[Unit]\n")
os.rename(f"{W}/excluded/x.service", f"{W}/x.service")
# a name that is not valid UTF-8 and holds a newline
raw = os.fsencode(W) + b"/odd\n\xff"
os.close(os.open(raw, os.O_WRONLY | os.O_CREAT, 0o644))
# links and unlinks
os.symlink("a.conf", f"{W}/link.conf")
os.link(f"{W}/a.conf", f"{W}/hard.conf")
for name in ("link.conf", "hard.conf", "x.service"):
    os.unlink(name, dir_fd=dfd)
os.close(dfd)
shutil.rmtree(BASE)
