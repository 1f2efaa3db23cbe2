// SPDX-License-Identifier: GPL-2.0-only
/*
 * The floor for "what any tracepoint-based agent adds": an enter+exit tracepoint pair on
 * openat and on write whose programs return at once on a pid mismatch (target_tgid is never a
 * real process: 0 is the idle task). bench.py compares randguard's added cost with this one,
 * measured in the same run.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

volatile __u32 target_tgid = 0; /* .bss: the compiler cannot fold the comparison away */

static __always_inline int early_return(void)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	return 1;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int min_enter_openat(void *ctx) { return early_return(); }

SEC("tracepoint/syscalls/sys_exit_openat")
int min_exit_openat(void *ctx) { return early_return(); }

SEC("tracepoint/syscalls/sys_enter_write")
int min_enter_write(void *ctx) { return early_return(); }

SEC("tracepoint/syscalls/sys_exit_write")
int min_exit_write(void *ctx) { return early_return(); }
