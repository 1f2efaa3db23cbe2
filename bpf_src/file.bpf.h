/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What file.bpf.c and the optional resolve.bpf.c share: a file syscall's arguments, stashed per
 * thread from sys_enter to sys_exit (the open family needs no stash: its exit reads them from
 * the saved registers), and what the resolver adds in between.
 */
#ifndef RG_FILE_BPF_H
#define RG_FILE_BPF_H

struct rg_inflight {
	__u64 name;  /* user pointer */
	__u64 name2; /* user pointer */
	__u64 flags;
	__u64 file; /* write: the struct file being written */
	/*
	 * rename, link, symlink: the new name's dentry as the kernel resolved it (the moved
	 * dentry for rename, the new one for link and symlink); unlink, rmdir: the removed one;
	 * and the mount it is on, set by resolve.bpf.c when it is attached (fentry on
	 * security_path_*); 0 otherwise. Walked at sys_exit for the real path.
	 */
	__u64 target_dentry;
	__u64 target_mnt;
	__s32 dfd;
	__s32 dfd2;
	__u16 syscall;
	__u8 op;
	__u8 abi;
	__u8 dcache; /* a path-changing syscall: file.bpf.c's directory cache is off until exit */
	__u8 has_old; /* chmod, chown, truncate: `old` was read before the call changed it */
	__u8 _pad[2];
	__u64 old; /* rg_file_event.old */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384); /* [performance] max_syscalls_in_flight */
	__type(key, __u32); /* tid */
	__type(value, struct rg_inflight);
} rg_inflight_map SEC(".maps");

/*
 * An io_uring name operation's target as the kernel resolved it (resolve.bpf.c, from inside the
 * operation's handler), for the request's completion: keyed by the request (struct io_kiocb *).
 * LRU: a request that posts no completion leaves its entry behind.
 */
struct rg_uring_target {
	__u64 dentry;
	__u64 mnt;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct rg_uring_target);
} rg_uring_noted SEC(".maps");

/* What a chmod, chown or truncate is about to change on this inode, as rg_file_event.old has it
 * (ids as the kernel keeps them: the initial user namespace's). */
static __always_inline __u64 rg_old_value(struct inode *inode, __u8 op)
{
	switch (op) {
	case RG_OP_CHMOD:
		return BPF_CORE_READ(inode, i_mode) & 07777;
	case RG_OP_CHOWN:
		return (__u64)BPF_CORE_READ(inode, i_uid.val) << 32 | BPF_CORE_READ(inode, i_gid.val);
	default: /* RG_OP_TRUNCATE */
		return BPF_CORE_READ(inode, i_size);
	}
}

#endif
