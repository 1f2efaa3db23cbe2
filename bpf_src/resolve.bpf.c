// SPDX-License-Identifier: GPL-2.0-only
/*
 * Optional: the real target of rename, link and symlink, and the real victim of unlink and
 * rmdir.
 *
 * file.bpf.c sees these calls at their syscall tracepoints, where only the name as passed is
 * known: a name through a symlinked directory (`mv job /tmp/x/job`, /tmp/x -> /etc/cron.d)
 * would be joined lexically to the wrong path. The kernel's own path hooks
 * (security_path_rename/link/symlink/unlink/rmdir, called once the names are resolved) hand
 * over the dentry and its mount; these fentry programs note them in the thread's in-flight
 * entry, and file.bpf.c walks them at sys_exit. fentry needs BTF and ftrace: where it
 * cannot load or attach, the agent goes on without this object (names are joined lexically).
 */
#include "common.bpf.h"
#include "file.bpf.h"

static __always_inline int note_target(struct dentry *dentry, const struct path *dir)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct rg_inflight *in = bpf_map_lookup_elem(&rg_inflight_map, &tid);

	if (in) {
		in->target_dentry = (__u64)dentry;
		in->target_mnt = (__u64)BPF_CORE_READ(dir, mnt);
	}
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
