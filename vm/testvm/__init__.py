"""Debian guests under qemu for the tests that need a whole machine: the kernel matrix
(vm/kernels.py) and the .deb test (tests/deb/run.py) build, cache and boot theirs with these
modules, so that a fix to one (a qemu option, a cpio detail, an archive quirk) fixes both.

Imported as `testvm` with vm/ on the path (the scripts' own folder, or pytest's pythonpath)."""
