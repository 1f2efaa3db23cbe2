// SPDX-License-Identifier: GPL-2.0-only
/*
 * Process lifecycle from the scheduler's BTF tracepoints (fork, exec, exit), joined with the
 * execve/execveat syscalls so an exec says which syscall caused it and a failed exec is seen.
 * These records keep the agent's process table current and become process_* events.
 */
#include "common.bpf.h"
#include "dispatch.bpf.h"

#define SIGNAL_GROUP_EXIT 0x00000004

/* Set by the loader before load. */
const volatile __u8 rg_report_threads = 0; /* new threads and thread exits too */
const volatile __u32 rg_args_bytes = 0;    /* argv bytes to copy at exec; 0: none */
const volatile __u8 rg_collect_cwd = 0;

/* Exec syscalls in flight, by thread: which syscall and the name it was given. */
struct rg_exec_pending {
	__u64 filename; /* user pointer */
	__u32 source;
	__u8 abi;
	__u8 _pad[3];
};

/*
 * A plain hash, not an LRU: every entry is taken out at sys_exit or at sched_process_exec, and
 * when it is full a new exec is counted (rg_table_full) instead of an older one evicted unseen.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); /* [performance] max_pending_exec_sources */
	__type(key, __u32);
	__type(value, struct rg_exec_pending);
} rg_exec_pending_map SEC(".maps");

SEC("tp_btf/sched_process_fork")
int BPF_PROG(rg_proc_fork, struct task_struct *parent, struct task_struct *child)
{
	struct rg_scratch *s = rg_scratch();
	struct rg_proc_fork *e;

	if (!s || (!rg_report_threads && child->tgid != child->pid))
		return 0;
	e = (void *)s->rec;
	__builtin_memset(e, 0, sizeof(*e));
	rg_fill_header(&e->hdr, RG_KIND_PROC_FORK);
	e->hdr.size = sizeof(*e);
	e->parent_tgid = parent->tgid;
	e->child_tgid = child->tgid;
	e->child_tid = child->pid;
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), child->comm);
	rg_submit(e, sizeof(*e), RG_FAM_PROCESS);
	return 0;
}

/* Copy the new image's argv (NUL-separated, as the kernel laid it out on the stack). */
static __always_inline void put_args(struct rg_scratch *s, struct task_struct *task,
				     struct rg_proc_exec *e)
{
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	__u64 start = BPF_CORE_READ(mm, arg_start), end = BPF_CORE_READ(mm, arg_end);
	__u64 at = s->pos, len = end - start, max = rg_args_bytes;

	if (!start || end <= start || at > RG_REC_MAX - RG_PATH_MAX)
		return;
	if (max > RG_PATH_MAX - 1)
		max = RG_PATH_MAX - 1;
	if (len > max) {
		len = max;
		e->hdr.flags |= RG_HF_TRUNC_S2;
	}
	if (bpf_probe_read_user(&s->rec[at & RG_REC_MASK], len & (RG_PATH_MAX - 1), (void *)start))
		return;
	e->args.off = at;
	e->args.len = len;
	s->pos = at + len;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(rg_proc_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	struct rg_scratch *s = rg_scratch();
	struct rg_proc_exec *e;
	__u32 old_tid = old_pid;
	int trunc = 0;

	if (!s)
		return 0;
	e = (void *)s->rec;
	__builtin_memset(e, 0, sizeof(*e));
	s->pos = sizeof(*e);
	rg_fill_header(&e->hdr, RG_KIND_PROC_EXEC);
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->old_tid = old_tid;
	e->euid = BPF_CORE_READ(task, cred, euid.val);
	e->egid = BPF_CORE_READ(task, cred, egid.val);
	e->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	BPF_CORE_READ_STR_INTO(&e->parent_comm, task, real_parent, comm);

	struct rg_exec_pending *pending = bpf_map_lookup_elem(&rg_exec_pending_map, &old_tid);
	if (pending) {
		e->source = pending->source;
		e->abi = pending->abi;
		bpf_map_delete_elem(&rg_exec_pending_map, &old_tid);
	}

	struct file *exe = BPF_CORE_READ(bprm, file);
	if (exe) {
		__u32 off = rg_walk_path(&exe->f_path, &trunc);
		if (trunc)
			e->hdr.flags |= RG_HF_TRUNC_S0;
		rg_put_walked(s, off, &s->pos, &e->exe);
	}
	const char *filename = BPF_CORE_READ(bprm, filename);
	__u64 pos = s->pos;
	if (filename && pos <= RG_REC_MAX - RG_PATH_MAX) {
		long n = bpf_probe_read_kernel_str(&s->rec[pos & RG_REC_MASK], RG_PATH_MAX, filename);
		if (n > 0) {
			e->filename.off = pos;
			e->filename.len = n - 1;
			s->pos = pos + n - 1;
			if (n == RG_PATH_MAX)
				e->hdr.flags |= RG_HF_TRUNC_S1;
		}
	}
	if (rg_args_bytes)
		put_args(s, task, e);
	if (rg_collect_cwd) {
		struct fs_struct *fs = BPF_CORE_READ(task, fs);
		__u32 off = rg_walk_path(&fs->pwd, &trunc);
		if (trunc)
			e->hdr.flags |= RG_HF_TRUNC_S3;
		rg_put_walked(s, off, &s->pos, &e->cwd);
	}
	e->hdr.size = s->pos;
	rg_submit(s->rec, s->pos, RG_FAM_PROCESS);
	return 0;
}

/* Note which syscall an exec is, by thread, for sched_process_exec or the failure at exit. */
SEC("tp_btf/sys_enter")
int BPF_PROG(rg_proc_enter_exec, struct pt_regs *regs, long nr)
{
	struct rg_sysinfo *si = rg_sys_lookup(nr);
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	if (!si)
		return 0;
	struct rg_exec_pending p = {
		/* execveat(dirfd, name, ...) */
		.filename = rg_arg(regs, si->id == RG_SRC_EXECVEAT, si->abi),
		.source = si->id,
		.abi = si->abi,
	};
	/* full: this exec's process_start has no source, and its failure is not reported */
	if (bpf_map_update_elem(&rg_exec_pending_map, &tid, &p, BPF_ANY))
		rg_count(&rg_table_full, RG_FAM_PROCESS);
	return 0;
}

/* After a successful exec the pending entry is gone already; after a failed one, report it. */
SEC("tp_btf/sys_exit")
int BPF_PROG(rg_proc_exit_exec, struct pt_regs *regs, long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct rg_exec_pending *p = bpf_map_lookup_elem(&rg_exec_pending_map, &tid);
	struct rg_scratch *s;

	if (!p)
		return 0;
	struct rg_exec_pending pending = *p;
	bpf_map_delete_elem(&rg_exec_pending_map, &tid);
	if (ret >= 0 || !(s = rg_scratch()))
		return 0;

	struct rg_proc_exec_failed *e = (void *)s->rec;
	__builtin_memset(e, 0, sizeof(*e));
	s->pos = sizeof(*e);
	rg_fill_header(&e->hdr, RG_KIND_PROC_EXEC_FAILED);
	e->ret = ret;
	e->ppid = rg_current_ppid();
	e->source = pending.source;
	e->abi = pending.abi;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (rg_put_user_str(s, (const char *)pending.filename, &s->pos, &e->filename))
		e->hdr.flags |= RG_HF_TRUNC_S0;
	e->hdr.size = s->pos;
	rg_submit(s->rec, s->pos, RG_FAM_PROCESS);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(rg_proc_exit, struct task_struct *task)
{
	struct rg_scratch *s = rg_scratch();
	struct rg_proc_exit *e;
	__u8 group_dead = rg_group_dead(task);

	if (!s || (!rg_report_threads && !group_dead))
		return 0;
	e = (void *)s->rec;
	__builtin_memset(e, 0, sizeof(*e));
	rg_fill_header(&e->hdr, RG_KIND_PROC_EXIT);
	e->hdr.size = sizeof(*e);
	/* a group exit (exit_group, a fatal signal) is the process's status, whatever thread */
	if (BPF_CORE_READ(task, signal, flags) & SIGNAL_GROUP_EXIT)
		e->exit_code = BPF_CORE_READ(task, signal, group_exit_code);
	else
		e->exit_code = task->exit_code;
	e->group_dead = group_dead;
	e->lifetime_ns = bpf_ktime_get_ns() - BPF_CORE_READ(task, group_leader, start_time);
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), task->comm);
	rg_submit(e, sizeof(*e), RG_FAM_PROCESS);
	return 0;
}
