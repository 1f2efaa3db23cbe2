// SPDX-License-Identifier: GPL-2.0-only
/*
 * The floor of a sys_enter/sys_exit dispatcher: one tp_btf program on each, running for every
 * syscall of every task (i386 ones too) and returning at once. Whatever randguard's dispatcher
 * adds to a syscall nobody traces (getppid) beyond this is its own bit test and tail call.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/sys_enter")
int BPF_PROG(min_btf_enter, struct pt_regs *regs, long id) { return 0; }

SEC("tp_btf/sys_exit")
int BPF_PROG(min_btf_exit, struct pt_regs *regs, long ret) { return 0; }
