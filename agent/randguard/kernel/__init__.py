"""The kernel shell: the cffi binding to libbpf, loading and attaching the BPF objects
(randguard/bpf) with what the config asks of them, and reading the ring buffer. Tested on the
real kernel and on the qemu matrix."""
