// SPDX-License-Identifier: GPL-2.0-only
/*
 * Process lifecycle from the scheduler's BTF tracepoints: fork, exec, exit. These keep the
 * agent's process table current (ppid, comm, exe_path for every event) and need no tracefs.
 */
#include "common.bpf.h"

/* Report new threads and thread exits too (off: only processes). */
const volatile __u8 rg_report_threads = 0;

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

SEC("tp_btf/sched_process_exec")
int BPF_PROG(rg_proc_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	struct rg_scratch *s = rg_scratch();
	__u64 pos = sizeof(struct rg_proc_exec);
	struct rg_proc_exec *e;
	int trunc = 0;

	if (!s)
		return 0;
	e = (void *)s->rec;
	__builtin_memset(e, 0, sizeof(*e));
	rg_fill_header(&e->hdr, RG_KIND_PROC_EXEC);
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->old_tid = old_pid;
	bpf_get_current_comm(e->comm, sizeof(e->comm));

	struct file *exe = BPF_CORE_READ(bprm, file);
	if (exe) {
		__u32 off = rg_walk_path(s, &exe->f_path, &trunc);
		if (trunc)
			e->hdr.flags |= RG_HF_TRUNC_S0;
		rg_put_walked(s, off, &pos, &e->exe);
	}
	const char *filename = BPF_CORE_READ(bprm, filename);
	if (filename && pos <= RG_REC_MAX - RG_PATH_MAX) {
		long n = bpf_probe_read_kernel_str(&s->rec[pos & RG_REC_MASK], RG_PATH_MAX, filename);
		if (n > 0) {
			e->filename.off = pos;
			e->filename.len = n - 1;
			pos += n - 1;
			if (n == RG_PATH_MAX)
				e->hdr.flags |= RG_HF_TRUNC_S1;
		}
	}
	e->hdr.size = pos;
	rg_submit(s->rec, pos, RG_FAM_PROCESS);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(rg_proc_exit, struct task_struct *task)
{
	struct rg_scratch *s = rg_scratch();
	struct rg_proc_exit *e;
	/* do_exit() decrements signal->live before this tracepoint: 0 means the group is gone */
	__u8 group_dead = BPF_CORE_READ(task, signal, live.counter) == 0;

	if (!s || (!rg_report_threads && !group_dead))
		return 0;
	e = (void *)s->rec;
	__builtin_memset(e, 0, sizeof(*e));
	rg_fill_header(&e->hdr, RG_KIND_PROC_EXIT);
	e->hdr.size = sizeof(*e);
	e->exit_code = task->exit_code;
	e->group_dead = group_dead;
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), task->comm);
	rg_submit(e, sizeof(*e), RG_FAM_PROCESS);
	return 0;
}
