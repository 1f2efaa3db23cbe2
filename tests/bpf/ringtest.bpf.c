// SPDX-License-Identifier: GPL-2.0
/* Minimal CO-RE object for the binding's kernel tests (tests/kernel/): a getppid tracepoint that,
 * for one target process only, counts calls and emits a 24-byte record into a ring buffer.
 * A second program, on getpgid, emits 40-byte records (48 bytes in the ring, so records straddle
 * the end of the ring: this exercises the double mapping) and discards every third one (this
 * exercises the DISCARD bit). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

/* Set from user space before load (BpfObject.set_rodata). */
const volatile __u32 target_tgid = 0;
const volatile __u64 tag = 0;

struct ringtest_event {
	__u64 seq;  /* value of counter[0] before this call: 0, 1, 2, ... */
	__u64 tag;
	__u64 tgid;
};

struct ringtest_big_event {
	__u64 seq;
	__u64 tag;
	__u64 tgid;
	__u64 kind;   /* 1 */
	__u64 check;  /* seq ^ tag ^ RINGTEST_CHECK: detects torn or misplaced records */
};

#define RINGTEST_CHECK 0xa5a5a5a55a5a5a5aULL

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096 * 64);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

static __always_inline void count_drop(void)
{
	__u32 zero = 0;
	__u64 *drop = bpf_map_lookup_elem(&drops, &zero);

	if (drop)
		*drop += 1;
}

/* counter[0] before the increment, or -1 if the map is unavailable. One thread of the target
 * calls the syscall at a time, so read-then-add is exact; the add is atomic anyway (XADD without
 * a fetch works with the default -mcpu). */
static __always_inline __s64 next_seq(void)
{
	__u32 zero = 0;
	__u64 *cnt = bpf_map_lookup_elem(&counter, &zero);
	__u64 seq;

	if (!cnt)
		return -1;
	seq = *cnt;
	__sync_fetch_and_add(cnt, 1);
	return seq;
}

/* A record of `size` bytes for the target's call, its head (seq, tag, tgid) filled; NULL when
 * the call is not the target's or the ring is full (counted). */
static __always_inline struct ringtest_event *start_event(__u64 size)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct ringtest_event *e;
	__s64 seq;

	if (tgid != target_tgid)
		return NULL;
	seq = next_seq();
	if (seq < 0)
		return NULL;
	e = bpf_ringbuf_reserve(&events, size, 0);
	if (!e) {
		count_drop();
		return NULL;
	}
	e->seq = seq;
	e->tag = tag;
	e->tgid = tgid;
	return e;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int handle_getppid(void *ctx)
{
	struct ringtest_event *e = start_event(sizeof(*e));

	if (e)
		bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getpgid")
int handle_getpgid(void *ctx)
{
	struct ringtest_big_event *e = (void *)start_event(sizeof(*e));

	if (!e)
		return 0;
	e->kind = 1;
	e->check = e->seq ^ tag ^ RINGTEST_CHECK;
	if (e->seq % 3 == 2)
		bpf_ringbuf_discard(e, 0);
	else
		bpf_ringbuf_submit(e, 0);
	return 0;
}
