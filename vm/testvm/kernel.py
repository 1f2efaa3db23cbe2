"""A Debian kernel out of its image packages: what qemu boots, its config, and the few modules
a guest gets (with the modules they depend on). A Debian host loads these on demand; the guests
have no /lib/modules otherwise. The agent's network inventory asks sock_diag for TCP, UDP and
unix sockets, which are modules in Debian's kernels."""

from __future__ import annotations

import re
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .archive import decompress, extract_vmlinux

GUEST_MODULES = {"inet_diag", "tcp_diag", "udp_diag", "unix_diag"}
# what depmod wants besides the modules (else it warns, and modprobe of a built-in one fails)
MODULE_INDEXES = ("modules.builtin", "modules.builtin.modinfo", "modules.order")


@dataclass
class Unpacked:
    release: str  # uname -r
    image: str  # "vmlinux" (the ELF inside the bzImage: qemu boots it faster) or "vmlinuz"
    data: bytes  # the image's
    config: bytes
    modules: dict[str, tuple[str, bytes]]  # name: (path under lib/modules/RELEASE/, bytes)
    indexes: list[tuple[str, bytes]]  # MODULE_INDEXES found: (name, bytes)

    def module_files(self) -> list[tuple[str, bytes]]:
        """(path under lib/modules/RELEASE/, bytes) of each module and index."""
        return [*self.modules.values(), *self.indexes]


def unpack(debs: list[Path], what: str) -> Unpacked:
    """The kernel in these packages (an image package and, for newer kernels, the packages
    split from it: modules, config); `what` names them in the error when there is none."""
    got = payload(debs)
    if "vmlinuz" not in got:
        raise SystemExit(f"{what}: no vmlinuz inside")
    name, bz = got["vmlinuz"]
    release = (name.split("/")[-2] if name.endswith("/vmlinuz.unsigned")
               else name.rsplit("/", 1)[-1].removeprefix("vmlinuz-"))
    elf = extract_vmlinux(bz)
    return Unpacked(release, "vmlinux" if elf else "vmlinuz", elf or bz,
                    got.get("config", ("", b""))[1],
                    {k[4:]: v for k, v in got.items() if k.startswith("mod:")},
                    [v for k, v in got.items() if k.startswith("index:")])


def module_name(path: str) -> str | None:
    base = path.rsplit("/", 1)[-1]
    for ext in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"):
        if base.endswith(ext):
            return base.removesuffix(ext).replace("-", "_")
    return None


def module_depends(ko: bytes) -> set[str]:
    m = re.search(rb"(?:^|\0)depends=([^\0]*)", ko)
    return {d.decode().replace("-", "_") for d in m.group(1).split(b",") if d} if m else set()


def scan_debs(debs: list[Path], wanted: set[str]) -> dict[str, tuple[str, bytes]]:
    """From the packages' data: 'vmlinuz' and 'config' (name, bytes), and every module in
    `wanted` as 'mod:NAME' (path under lib/modules/RELEASE/, uncompressed bytes)."""
    out: dict[str, tuple[str, bytes]] = {}
    for deb in debs:
        with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                              stdout=subprocess.PIPE) as p:
            with tarfile.open(fileobj=p.stdout, mode="r|") as tar:
                for m in tar:
                    if not m.isfile():
                        continue
                    base = m.name.rsplit("/", 1)[-1]
                    mod = module_name(m.name)
                    if base.startswith("vmlinuz"):
                        out["vmlinuz"] = (m.name, tar.extractfile(m).read())
                    elif base.startswith("config-") or (base == "config"
                                                        and "/modules/" in m.name):
                        out["config"] = (m.name, tar.extractfile(m).read())
                    elif base in MODULE_INDEXES and "/modules/" in m.name:
                        out[f"index:{base}"] = (base, tar.extractfile(m).read())
                    elif mod in wanted:
                        raw = tar.extractfile(m).read()
                        data = raw if m.name.endswith(".ko") else decompress(raw)
                        if data:
                            rel = m.name.split("/modules/", 1)[1].split("/", 1)[1]
                            rel = rel[: rel.index(".ko") + 3]
                            out[f"mod:{mod}"] = (rel, data)
            p.stdout.close()
    return out


def payload(debs: list[Path]) -> dict[str, tuple[str, bytes]]:
    """scan_debs until the wanted modules' dependencies are all in."""
    wanted = set(GUEST_MODULES)
    for _ in range(4):
        got = scan_debs(debs, wanted)
        deps = set().union(*(module_depends(v[1]) for k, v in got.items() if k.startswith("mod:")))
        if deps <= wanted:
            return got
        wanted |= deps
    return got
