// SPDX-License-Identifier: GPL-2.0-only
/*
 * The two programs that see every syscall (see dispatch.bpf.h): each finds the syscall's slot
 * and tail-calls the family program in it. Nothing else runs for a syscall nobody traces.
 */
#include "common.bpf.h"
#include "dispatch.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, RG_SYS_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} rg_enter_progs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, RG_SYS_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} rg_exit_progs SEC(".maps");

SEC("tp_btf/sys_enter")
int BPF_PROG(rg_sys_enter, struct pt_regs *regs, long nr)
{
	bpf_tail_call(ctx, &rg_enter_progs, rg_sys_slot(nr));
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(rg_sys_exit, struct pt_regs *regs, long ret)
{
	bpf_tail_call(ctx, &rg_exit_progs, rg_sys_slot(regs->orig_ax));
	return 0;
}
