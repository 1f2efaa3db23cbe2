// SPDX-License-Identifier: GPL-2.0-only
/*
 * Optional: the real target of rename, link and symlink, the real victim of unlink and rmdir,
 * the real file of chmod, chown and truncate by name, and the real new name of mkdir and mknod.
 *
 * file.bpf.c sees these calls at their syscall tracepoints, where only the name as passed is
 * known: a name through a symlinked directory (`mv job /tmp/x/job`, /tmp/x -> /etc/cron.d)
 * would be joined lexically to the wrong path. The kernel's own path hooks
 * (security_path_rename/link/symlink/unlink/rmdir/chmod/chown/truncate/mkdir/mknod, called
 * once the names are resolved) hand over the dentry and its mount; these fentry programs note
 * them in the thread's in-flight entry, and file.bpf.c walks them at sys_exit. fentry needs BTF
 * and ftrace: where a program cannot load or attach, the agent goes on without it (those names
 * are joined lexically).
 */
#include "common.bpf.h"
#include "file.bpf.h"

/*
 * io_uring (6.1 on, where each operation has a handler of its own): the request whose handler
 * this thread runs (an io worker's, an SQPOLL thread's, or the submitter's), set on entering
 * io_renameat, io_unlinkat, io_mkdirat, io_symlinkat, io_linkat and taken by the path hook it
 * reaches.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32); /* tid */
	__type(value, __u64); /* struct io_kiocb * */
} rg_uring_running SEC(".maps");

static __always_inline int uring_running(void *req)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 r = (__u64)req;

	bpf_map_update_elem(&rg_uring_running, &tid, &r, BPF_ANY);
	return 0;
}

/* One fentry per io_uring handler whose path hooks are noted for the request. */
#define RG_URING_HANDLER(op)                                   \
	SEC("fentry/io_" #op)                                  \
	int BPF_PROG(rg_resolve_io_##op, void *req)            \
	{                                                      \
		return uring_running(req);                     \
	}

RG_URING_HANDLER(renameat)
RG_URING_HANDLER(unlinkat)
RG_URING_HANDLER(mkdirat)
RG_URING_HANDLER(symlinkat)
RG_URING_HANDLER(linkat)

/* A path hook inside an io_uring handler: the target noted for the request. 1: it was one. */
static __always_inline int note_uring(struct dentry *dentry, struct vfsmount *mnt)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *req = bpf_map_lookup_elem(&rg_uring_running, &tid);

	if (!req)
		return 0;
	struct rg_uring_target t = {.dentry = (__u64)dentry, .mnt = (__u64)mnt};
	__u64 id = *req;

	bpf_map_update_elem(&rg_uring_noted, &id, &t, BPF_ANY);
	bpf_map_delete_elem(&rg_uring_running, &tid);
	return 1;
}

/* A syscall's own entry first (a name operation runs in an io worker, which makes none). */
static __always_inline int note_target(struct dentry *dentry, const struct path *dir)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct rg_inflight *in = bpf_map_lookup_elem(&rg_inflight_map, &tid);

	if (!in) {
		note_uring(dentry, BPF_CORE_READ(dir, mnt));
		return 0;
	}
	in->target_dentry = (__u64)dentry;
	in->target_mnt = (__u64)BPF_CORE_READ(dir, mnt);
	return 0;
}

/* after the rename, the moved dentry carries the new name under the new directory */
SEC("fentry/security_path_rename")
int BPF_PROG(rg_resolve_rename, const struct path *old_dir, struct dentry *old_dentry,
	     const struct path *new_dir, struct dentry *new_dentry)
{
	return note_target(old_dentry, new_dir);
}

SEC("fentry/security_path_link")
int BPF_PROG(rg_resolve_link, struct dentry *old_dentry, const struct path *new_dir,
	     struct dentry *new_dentry)
{
	return note_target(new_dentry, new_dir);
}

SEC("fentry/security_path_symlink")
int BPF_PROG(rg_resolve_symlink, const struct path *dir, struct dentry *dentry)
{
	return note_target(dentry, dir);
}

/* the removed dentry keeps its name and parent (a negative or unhashed dentry) */
SEC("fentry/security_path_unlink")
int BPF_PROG(rg_resolve_unlink, const struct path *dir, struct dentry *dentry)
{
	return note_target(dentry, dir);
}

SEC("fentry/security_path_rmdir")
int BPF_PROG(rg_resolve_rmdir, const struct path *dir, struct dentry *dentry)
{
	return note_target(dentry, dir);
}

/*
 * The mount point a mount or move_mount is made on. (Not an umount's: by its sys_exit the mount
 * is detached, and its root no longer leads up to the mount point; it is joined as given.)
 */
SEC("fentry/security_sb_mount")
int BPF_PROG(rg_resolve_sb_mount, const char *dev_name, const struct path *path)
{
	return note_target(BPF_CORE_READ(path, dentry), path);
}

SEC("fentry/security_move_mount")
int BPF_PROG(rg_resolve_move_mount, const struct path *from_path, const struct path *to_path)
{
	return note_target(BPF_CORE_READ(to_path, dentry), to_path);
}

/* The number of the syscall the current thread is in, from its saved user registers. */
static __always_inline __u64 current_nr(void)
{
	struct pt_regs *regs;

	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs)) {
		regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	} else { /* 5.10: task_pt_regs() by hand, at the top of the 16 KiB kernel stack */
		struct task_struct *task = (void *)bpf_get_current_task();
		regs = (struct pt_regs *)(BPF_CORE_READ(task, stack) + 16384) - 1;
	}
	return BPF_CORE_READ(regs, orig_ax);
}

/*
 * chmod, chown, truncate, mkdir, mknod: file.bpf.c follows them at sys_exit only, so the entry
 * is made here, with the syscall's number: these hooks also run inside other syscalls (a unix
 * socket's bind creates its file through security_path_mknod), whose entries the exit ignores.
 * chmod, chown and truncate (`op`) also note what they are about to change: the hook runs
 * before the change. A full table: joined lexically.
 */
static __always_inline int note_own(struct dentry *dentry, struct vfsmount *mnt, __u8 op)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct rg_inflight in = {
		.target_dentry = (__u64)dentry, .target_mnt = (__u64)mnt, .flags = current_nr(),
	};

	if (note_uring(dentry, mnt))
		return 0;
	if (op) {
		in.old = rg_old_value(BPF_CORE_READ(dentry, d_inode), op);
		in.has_old = 1;
	}
	bpf_map_update_elem(&rg_inflight_map, &tid, &in, BPF_ANY);
	return 0;
}

SEC("fentry/security_path_chmod")
int BPF_PROG(rg_resolve_chmod, const struct path *path)
{
	return note_own(BPF_CORE_READ(path, dentry), BPF_CORE_READ(path, mnt), RG_OP_CHMOD);
}

SEC("fentry/security_path_chown")
int BPF_PROG(rg_resolve_chown, const struct path *path)
{
	return note_own(BPF_CORE_READ(path, dentry), BPF_CORE_READ(path, mnt), RG_OP_CHOWN);
}

SEC("fentry/security_path_truncate")
int BPF_PROG(rg_resolve_truncate, const struct path *path)
{
	return note_own(BPF_CORE_READ(path, dentry), BPF_CORE_READ(path, mnt), RG_OP_TRUNCATE);
}

/* the new dentry (negative until the call succeeds) has its name and parent already */
SEC("fentry/security_path_mkdir")
int BPF_PROG(rg_resolve_mkdir, const struct path *dir, struct dentry *dentry)
{
	return note_own(dentry, BPF_CORE_READ(dir, mnt), 0);
}

SEC("fentry/security_path_mknod")
int BPF_PROG(rg_resolve_mknod, const struct path *dir, struct dentry *dentry)
{
	return note_own(dentry, BPF_CORE_READ(dir, mnt), 0);
}
