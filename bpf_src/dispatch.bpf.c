// SPDX-License-Identifier: GPL-2.0-only
/*
 * The two programs that see every syscall (see dispatch.bpf.h): each finds the syscall's slot
 * and tail-calls the family program in it. A syscall nobody traces costs a bit test: its
 * number (of either ABI) has no bit in rg_enter_nrs / rg_exit_nrs, so neither the ABI nor the
 * program array is looked at.
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

/* Set by the loader: bit n set when syscall number n of either ABI has an enter (exit) slot. */
const volatile __u64 rg_enter_nrs[RG_IA32_BASE / 64] = {};
const volatile __u64 rg_exit_nrs[RG_IA32_BASE / 64] = {};

static __always_inline int nr_traced(const volatile __u64 *bits, long nr)
{
	if ((unsigned long)nr >= RG_IA32_BASE)
		return 0;
	return (bits[(nr / 64) & (RG_IA32_BASE / 64 - 1)] >> (nr % 64)) & 1;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(rg_sys_enter, struct pt_regs *regs, long nr)
{
	if (nr_traced(rg_enter_nrs, nr))
		bpf_tail_call(ctx, &rg_enter_progs, rg_sys_slot(nr));
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(rg_sys_exit, struct pt_regs *regs, long ret)
{
	long nr = regs->orig_ax;

	if (nr_traced(rg_exit_nrs, nr))
		bpf_tail_call(ctx, &rg_exit_progs, rg_sys_slot(nr));
	return 0;
}
