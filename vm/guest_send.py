"""In the guest: send every file of a folder to the host over a serial port, each as a base64
section between '@@RG name@@' and '@@END@@' lines (vm/kernels.py parses them)."""

import base64
import os
import sys
import termios
import tty

folder, port = sys.argv[1], sys.argv[2]
out = b""
for name in sorted(os.listdir(folder)):
    with open(os.path.join(folder, name), "rb") as f:
        data = f.read()
    out += f"@@RG {name}@@\n".encode() + base64.encodebytes(data) + b"@@END@@\n"
out += b"@@RG done@@\n@@END@@\n"
fd = os.open(port, os.O_WRONLY | os.O_NOCTTY)
tty.setraw(fd)
while out:
    out = out[os.write(fd, out):]
termios.tcdrain(fd)  # everything on the wire before the guest powers off
os.close(fd)
