/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What every randguard object shares: the ring buffer and drop counters (one instance for all
 * objects: the loader reuses the first object's fds), the record scratch area, and the
 * kernel-side path walk that turns a struct path into an absolute path.
 */
#ifndef RG_COMMON_BPF_H
#define RG_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "randguard.h"

char LICENSE[] SEC("license") = "GPL";

/*
 * The record layouts and the enums userspace mirrors, kept in every object's BTF (libbpf skips
 * this section) so that the agent checks records.py against what was really compiled (the
 * records carry the enums' values as plain integers: without this, no enum reaches the BTF).
 */
struct rg_contract {
	struct rg_file_event file;
	struct rg_proc_fork fork;
	struct rg_proc_exec exec;
	struct rg_proc_exit exit;
	struct rg_proc_exec_failed exec_failed;
	struct rg_net_event net;
	enum rg_kind kind;
	enum rg_header_flag header_flag;
	enum rg_family family;
	enum rg_file_op file_op;
	enum rg_syscall syscall;
	enum rg_abi abi;
	enum rg_file_flag file_flag;
	enum rg_exec_source exec_source;
	enum rg_verdict verdict;
	enum rg_net_op net_op;
	enum rg_net_syscall net_syscall;
	enum rg_net_family net_family;
	enum rg_net_flag net_flag;
};
const struct rg_contract rg_contract __attribute__((section(".rg_contract"), used));

/* Set by the loader before load. */
const volatile __u32 rg_self_tgid = 0;     /* the agent: its own activity is never reported */
const volatile __u64 rg_wakeup_bytes = 0;  /* wake the reader only past this much pending data */

/*
 * BTF loads. Where the kernel has bpf_rdonly_cast() (6.2+), a kernel pointer held as a number
 * becomes one the verifier lets a program load through: a field is then one plain load (a fault
 * reads as zero, as a failed probe read does) instead of a bpf_probe_read_kernel() call, the
 * unit of cost of the hot paths (bench/notes.md says what it saved). The loader sets
 * rg_btf_loads from the kernel's BTF; elsewhere the branch is dead code, which the verifier
 * drops before the unresolved call could matter. A pointer field loaded this way is still a pointer to the
 * verifier (no hashing, no passing to a global function): the fast paths store such fields
 * into map memory and, after rg_reload(), read them back as the numbers the rest works on.
 */
const volatile __u8 rg_btf_loads = 0;
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;
#define rg_btf(type, p) ((type *)bpf_rdonly_cast((const void *)(p), bpf_core_type_id_kernel(type)))
#define rg_reload() asm volatile("" ::: "memory")

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* resized from [ebpf] buffer_size */
} rg_events SEC(".maps");

/* Records the kernel could not put into the full ring, per family. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RG_FAM_MAX);
	__type(key, __u32);
	__type(value, __u64);
} rg_drops SEC(".maps");

/* Events the kernel filter dropped on purpose (by config), per family: reported in health. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RG_FAM_MAX);
	__type(key, __u32);
	__type(value, __u64);
} rg_filtered SEC(".maps");

/*
 * Syscalls not followed from sys_enter to sys_exit because the family's in-flight table was
 * full ([performance] max_syscalls_in_flight threads inside hooked syscalls): no event.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RG_FAM_MAX);
	__type(key, __u32);
	__type(value, __u64);
} rg_table_full SEC(".maps");

/*
 * Records are assembled here, then copied into the ring with their real size. Offsets into rec
 * are masked with RG_REC_MASK and copies are at most RG_PATH_MAX long, hence the slack. Too big
 * for a per-CPU array value, so it is an array with one entry per CPU (sized by the loader).
 * Progress (walk_used, pass, pos) is kept here rather than in registers on purpose: the
 * verifier then reaches the same state from every path and prunes, which keeps programs with
 * several path walks within its limits.
 */
#define RG_REC_MASK (32768 - 1)
struct rg_scratch {
	__u8 rec[RG_REC_MASK + 1];
	__u8 path[2 * RG_PATH_MAX]; /* the path walk writes leaf-to-root, ending at RG_PATH_MAX */
	__u8 slack[RG_PATH_MAX];
	__u32 walk_used; /* rg_walk()'s progress */
	__u32 walk_root; /* it ended at the root of the mount namespace (not cut, not detached) */
	__u32 pass;      /* the filter's verdict so far */
	__u32 walk_trunc; /* rg_walk() cut the path (RG_WALK_TRUNC) */
	__u64 pos;       /* end of the record being assembled */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256); /* set to the number of possible CPUs by the loader */
	__type(key, __u32);
	__type(value, struct rg_scratch);
} rg_scratch_map SEC(".maps");

static __always_inline struct rg_scratch *rg_scratch(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&rg_scratch_map, &cpu);
}

static __always_inline void rg_count(void *map, __u32 family)
{
	__u64 *n = bpf_map_lookup_elem(map, &family);
	if (n)
		*n += 1; /* per-CPU slot: no atomic needed */
}

/*
 * At sched_process_exit: is this the group's last thread? do_exit() decrements signal->live
 * before the tracepoint, so 0 means the process is gone.
 */
static __always_inline int rg_group_dead(struct task_struct *task)
{
	return BPF_CORE_READ(task, signal, live.counter) == 0;
}

/* Fill the common header for the current task. */
static __always_inline void rg_fill_header(struct rg_header *h, __u16 kind)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();

	h->kind = kind;
	h->version = RG_SCHEMA_VERSION;
	h->flags = 0;
	h->ts_ns = bpf_ktime_get_ns();
	h->pid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
	h->uid = (__u32)uid_gid;
	h->gid = uid_gid >> 32;
}

/* Copy an assembled record into the ring; a failed reserve is counted, never silent. */
static __always_inline void rg_submit(void *rec, __u32 size, __u32 family)
{
	__u64 flags = BPF_RB_NO_WAKEUP;
	__u64 avail = bpf_ringbuf_query(&rg_events, BPF_RB_AVAIL_DATA);

	if (size > RG_REC_MAX)
		size = RG_REC_MAX;
	/*
	 * Wake the reader once, when this record crosses the watermark; below it, and past it
	 * (the reader is awake already, or polls within its timeout), a wakeup costs the traced
	 * process an interrupt per event and buys nothing.
	 */
	if (avail < rg_wakeup_bytes && avail + size >= rg_wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	if (bpf_ringbuf_output(&rg_events, rec, size, flags))
		rg_count(&rg_drops, family);
}

static __always_inline int rg_is_self(void)
{
	return rg_self_tgid && (bpf_get_current_pid_tgid() >> 32) == rg_self_tgid;
}

#define RG_PATH_DEPTH 128
#define PATH_MASK_C (RG_PATH_MAX - 1)

/*
 * A dentry's parent and name. They sit side by side in struct dentry on every kernel so far,
 * and one read of all three costs what one read of each would (a probe read is the unit of
 * cost on the hot paths); CO-RE tells the layout, and a kernel that moves them gets three reads.
 */
struct rg_dentry_up {
	struct dentry *parent;
	__u64 hash_len; /* d_name: hash in the low half, length in the high */
	const unsigned char *name;
};

static __always_inline void rg_dentry_up(struct dentry *d, struct rg_dentry_up *up)
{
	if (bpf_core_field_offset(struct dentry, d_name) ==
	    bpf_core_field_offset(struct dentry, d_parent) + 8) {
		bpf_probe_read_kernel(up, sizeof(*up), &d->d_parent);
	} else {
		up->parent = BPF_CORE_READ(d, d_parent);
		up->hash_len = BPF_CORE_READ(d, d_name.hash_len);
		up->name = BPF_CORE_READ(d, d_name.name);
	}
}

/*
 * Global functions. A static function is inlined, and the verifier checks its body again at
 * every call site and in every state a caller reaches it with; a global (non-static, noinline)
 * one is checked once per program, on its own, and its callers see only its result. The
 * heavy, shared pieces (the path walk, the filter's verdict, the name checks) are global,
 * which keeps start-up (verification) short. Their arguments are scalars only (5.10 accepts
 * nothing else); what they work on they look up themselves (the per-CPU scratch and key
 * buffers); and they nest at most two deep below a program, so that the frames stay within
 * the verifier's 512 bytes of stack.
 */

/*
 * Walk a path (dentry, mount) up to the root of its mount namespace, crossing mount points,
 * writing the components right to left into s->path so that the result is contiguous. Returns
 * the offset of the first byte in s->path (the result ends at RG_PATH_MAX), with RG_WALK_TRUNC
 * set when the path was cut. This is d_path() for programs that cannot call bpf_d_path
 * (tracepoints). Global: see above.
 */
#define RG_WALK_TRUNC (1u << 16)
__noinline __u32 rg_walk(__u64 dentry_ptr, __u64 vfsmnt_ptr)
{
	struct rg_scratch *s = rg_scratch();
	struct dentry *dentry = (struct dentry *)dentry_ptr;
	struct vfsmount *vfsmnt = (struct vfsmount *)vfsmnt_ptr;
	struct mount *mnt = (void *)vfsmnt - bpf_core_field_offset(struct mount, mnt);
	struct mount *mnt_parent = BPF_CORE_READ(mnt, mnt_parent);
	struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	__u32 used;
	int i;

	if (!s)
		return RG_WALK_TRUNC | (RG_PATH_MAX - 1);

	/*
	 * The length written so far lives in memory, not in a register: the verifier then sees
	 * every iteration in the same state and prunes, instead of tracking one range per step.
	 */
	s->walk_used = 0;
	s->walk_root = 0;
	s->walk_trunc = 0;
	for (i = 0; i < RG_PATH_DEPTH; i++) {
		struct rg_dentry_up up;

		rg_dentry_up(dentry, &up);
		struct dentry *parent = up.parent;

		if (dentry == mnt_root || dentry == parent) {
			if (dentry != mnt_root || mnt == mnt_parent) {
				/* the namespace root, or a disconnected dentry */
				s->walk_root = dentry == mnt_root;
				break;
			}
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = mnt_parent;
			mnt_parent = BPF_CORE_READ(mnt, mnt_parent);
			vfsmnt = &mnt->mnt;
			mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
			continue;
		}
		__u32 len = (up.hash_len >> 32) & PATH_MASK_C;
		const unsigned char *name = up.name;

		used = s->walk_used & PATH_MASK_C;
		if (used + len + 1 >= RG_PATH_MAX) {
			s->walk_trunc = RG_WALK_TRUNC;
			break;
		}
		/* the component goes right before what is already there, the slash before it */
		__u32 at = (RG_PATH_MAX - used - len) & PATH_MASK_C;
		bpf_probe_read_kernel(&s->path[at], len, name);
		s->path[(at - 1) & PATH_MASK_C] = '/';
		s->walk_used = used + len + 1;
		dentry = parent;
	}
	if (i == RG_PATH_DEPTH)
		s->walk_trunc = RG_WALK_TRUNC;
	used = s->walk_used & PATH_MASK_C;
	if (!used) {
		s->path[RG_PATH_MAX - 1] = '/';
		used = 1;
	}
	return s->walk_trunc | (RG_PATH_MAX - used);
}

/* The walk of a struct path: the offset, and *trunc set when it was cut. */
static __always_inline __u32 rg_walk_path(const struct path *p, int *trunc)
{
	__u32 r = rg_walk((__u64)BPF_CORE_READ(p, dentry), (__u64)BPF_CORE_READ(p, mnt));

	*trunc = !!(r & RG_WALK_TRUNC);
	return r & PATH_MASK_C;
}

/* Append s->path[off..RG_PATH_MAX) to the record at *pos as string slot `slot`. */
static __always_inline void rg_put_walked(struct rg_scratch *s, __u32 off, __u64 *pos,
					  struct rg_str *str)
{
	__u32 len = RG_PATH_MAX - off;
	__u64 at = *pos;

	if (at > RG_REC_MAX - RG_PATH_MAX || off >= RG_PATH_MAX)
		return;
	bpf_probe_read_kernel(&s->rec[at & RG_REC_MASK], len & (RG_PATH_MAX - 1), &s->path[off & (RG_PATH_MAX - 1)]);
	str->off = at;
	str->len = len;
	*pos = at + len;
}

/*
 * Append a user string (or with `kern` a kernel one) to the record. Returns 1 when it filled
 * RG_PATH_MAX - 1 bytes (so it may have been cut), 0 otherwise. A failed read leaves the slot absent.
 */
static __always_inline int rg_put_str(struct rg_scratch *s, const char *src, __u64 *pos,
				      struct rg_str *str, int kern)
{
	__u64 at = *pos;
	long n;

	if (!src || at > RG_REC_MAX - RG_PATH_MAX)
		return 0;
	if (kern)
		n = bpf_probe_read_kernel_str(&s->rec[at & RG_REC_MASK], RG_PATH_MAX, src);
	else
		n = bpf_probe_read_user_str(&s->rec[at & RG_REC_MASK], RG_PATH_MAX, src);
	if (n <= 0)
		return 0;
	str->off = at;
	str->len = n - 1;
	*pos = at + n - 1;
	return n == RG_PATH_MAX;
}

static __always_inline int rg_put_user_str(struct rg_scratch *s, const char *src, __u64 *pos,
					   struct rg_str *str)
{
	return rg_put_str(s, src, pos, str, 0);
}

/* The struct file behind one of the current task's fds, or NULL. */
static __always_inline struct file *rg_fd_file(int fd)
{
	struct fdtable *fdt;
	struct {
		__u64 max_fds; /* unsigned int, then padding */
		struct file **fd;
	} t = {};
	struct file *f = NULL;

	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)) {
		/* the task's own table: BTF loads, no probe reads (each costs ~200 ns here) */
		fdt = bpf_get_current_task_btf()->files->fdt;
		t.max_fds = fdt->max_fds;
		t.fd = fdt->fd;
	} else {
		struct task_struct *task = (void *)bpf_get_current_task();

		fdt = BPF_CORE_READ(task, files, fdt);
		/* max_fds and fd side by side (every kernel so far): one read */
		if (bpf_core_field_offset(struct fdtable, max_fds) == 0 &&
		    bpf_core_field_offset(struct fdtable, fd) == 8) {
			bpf_probe_read_kernel(&t, sizeof(t), fdt);
		} else {
			t.max_fds = BPF_CORE_READ(fdt, max_fds);
			t.fd = BPF_CORE_READ(fdt, fd);
		}
	}
	if (fd < 0 || (unsigned int)fd >= (unsigned int)t.max_fds)
		return NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &t.fd[fd]);
	return f;
}

static __always_inline __u32 rg_current_ppid(void)
{
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf))
		return bpf_get_current_task_btf()->real_parent->tgid; /* BTF loads: no probe reads */
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	return BPF_CORE_READ(task, real_parent, tgid);
}

#endif /* RG_COMMON_BPF_H */
