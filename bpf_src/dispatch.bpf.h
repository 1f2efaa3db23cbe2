/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The syscall dispatcher (dispatch.bpf.c) and what its tail-called family programs share.
 *
 * One tp_btf program on sys_enter and one on sys_exit run for every syscall of every task, of
 * every ABI: unlike the syscalls/ tracepoints, these fire for i386 syscalls (int $0x80 from a
 * 64-bit process, or a 32-bit process) too. Each looks up the syscall's slot in a program array
 * and tail-calls the family program there; a syscall nobody traces returns after one bit test
 * (dispatch.bpf.c's rg_enter_nrs / rg_exit_nrs). Slots are syscall numbers: native ones from 0, i386 ones from
 * RG_IA32_BASE. The loader fills the arrays and rg_sys_info (what each slot is) from the config's
 * hooks, and only then attaches the two dispatchers.
 */
#ifndef RG_DISPATCH_BPF_H
#define RG_DISPATCH_BPF_H

/* The slot numbering, shared with the agent (syscalls.py; checked at load through BTF). */
enum rg_dispatch_slot {
	RG_IA32_BASE = 1024,       /* slot of i386 syscall 0 */
	RG_SOCKETCALL_BASE = 2048, /* rg_sys_info slot of i386 socketcall(2)'s call n */
	RG_SYS_SLOTS = 2048,       /* program array size */
	RG_SYS_INFO_SLOTS = 2080,
};
const enum rg_dispatch_slot rg_dispatch_contract __attribute__((section(".rg_contract"), used));

#define RG_TS_COMPAT 0x0002 /* x86 thread_info.status: the running syscall is i386 */

/* What a slot is. */
struct rg_sysinfo {
	__u16 id;  /* the family's syscall id: enum rg_syscall, rg_net_syscall or rg_exec_source */
	__u8 abi;  /* enum rg_abi */
	__u8 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RG_SYS_INFO_SLOTS);
	__type(key, __u32);
	__type(value, struct rg_sysinfo);
} rg_sys_info SEC(".maps");

/* Is the current syscall an i386 one? (in_ia32_syscall()) */
static __always_inline int rg_in_ia32(void)
{
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf))
		return bpf_get_current_task_btf()->thread_info.status & RG_TS_COMPAT;
	/* 5.10: no BTF task pointer, read it */
	struct task_struct *task = (void *)bpf_get_current_task();
	return BPF_CORE_READ(task, thread_info.status) & RG_TS_COMPAT;
}

/* The slot of syscall `nr` of the running ABI; RG_SYS_SLOTS (no slot) for x32 or no syscall. */
static __always_inline __u32 rg_sys_slot(long nr)
{
	if ((unsigned long)nr >= RG_IA32_BASE)
		return RG_SYS_SLOTS;
	return rg_in_ia32() ? RG_IA32_BASE + nr : nr;
}

/* What the running syscall is, or NULL when nothing traces it. */
static __always_inline struct rg_sysinfo *rg_sys_lookup(long nr)
{
	__u32 slot = rg_sys_slot(nr);

	return bpf_map_lookup_elem(&rg_sys_info, &slot);
}

/*
 * Argument n of the running syscall, as its ABI passes it: i386 in ebx, ecx, edx, esi, edi,
 * ebp, each 32 bits (the kernel drops the upper halves: so must we, or a 64-bit caller could
 * show us another pointer than the one the kernel used); x86-64 in rdi, rsi, rdx, r10, r8, r9.
 */
static __always_inline __u64 rg_arg(const struct pt_regs *regs, int n, __u8 abi)
{
	if (abi == RG_ABI_I386) {
		switch (n) {
		case 0: return (__u32)regs->bx;
		case 1: return (__u32)regs->cx;
		case 2: return (__u32)regs->dx;
		case 3: return (__u32)regs->si;
		case 4: return (__u32)regs->di;
		default: return (__u32)regs->bp;
		}
	}
	switch (n) {
	case 0: return regs->di;
	case 1: return regs->si;
	case 2: return regs->dx;
	case 3: return regs->r10;
	case 4: return regs->r8;
	default: return regs->r9;
	}
}

#endif
