/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * randguard record contract: the one definition of every record the kernel side writes into the
 * shared ring buffer. agent/randguard/records.py mirrors it and tests/unit/test_contract.py
 * proves the two agree against the compiled objects' BTF.
 *
 * A record is a fixed part followed by a string area. Strings are described by rg_str
 * (offset from the record start, length without NUL) and are not NUL-terminated on the wire.
 * All integers are little-endian (x86-64).
 */
#ifndef RANDGUARD_H
#define RANDGUARD_H

#define RG_SCHEMA_VERSION 1
#define RG_COMM_LEN 16
#define RG_PATH_MAX 4096 /* longest path or name carried whole */
#define RG_REC_MAX 24576 /* largest record (fixed part + strings) */

/* rg_header.kind */
enum rg_kind {
	RG_KIND_FILE = 1,
	RG_KIND_PROC_FORK = 2,
	RG_KIND_PROC_EXEC = 3,
	RG_KIND_PROC_EXIT = 4,
	RG_KIND_PROC_EXEC_FAILED = 5,
	RG_KIND_NET = 6, /* struct rg_net_event */
};

/* rg_header.flags: bit n set when string slot n was cut at RG_PATH_MAX (or at a depth limit). */
enum rg_header_flag {
	RG_HF_TRUNC_S0 = 1 << 0,
	RG_HF_TRUNC_S1 = 1 << 1,
	RG_HF_TRUNC_S2 = 1 << 2,
	RG_HF_TRUNC_S3 = 1 << 3,
	RG_HF_TRUNC_S4 = 1 << 4,
};

/* Index of the per-CPU drop counters (rg_drops map): one slot per event family. */
enum rg_family {
	RG_FAM_FILE = 0,
	RG_FAM_PROCESS = 1,
	RG_FAM_NETWORK = 2,
	RG_FAM_MAX = 4,
};

struct rg_header {
	__u16 kind;    /* enum rg_kind */
	__u16 version; /* RG_SCHEMA_VERSION */
	__u16 size;    /* whole record: fixed part + strings */
	__u16 flags;   /* enum rg_header_flag */
	__u64 ts_ns;   /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 pid;     /* tgid */
	__u32 tid;
	__u32 uid; /* real uid */
	__u32 gid; /* real gid */
};

struct rg_str {
	__u16 off; /* from the start of the record; 0 with len 0: absent */
	__u16 len;
};

/* rg_file_event.op: the event family, which is also the output event_type. */
enum rg_file_op {
	RG_OP_OPEN = 1,   /* file_open */
	RG_OP_WRITE = 2,  /* file_write */
	RG_OP_RENAME = 3, /* file_rename */
	RG_OP_UNLINK = 4, /* file_unlink */
	RG_OP_LINK = 5,   /* file_link */
	RG_OP_CHMOD = 6,    /* file_chmod: flags is the mode asked for */
	RG_OP_CHOWN = 7,    /* file_chown: flags is uid << 32 | gid (0xffffffff: unchanged) */
	RG_OP_TRUNCATE = 8, /* file_truncate: flags is the length */
	RG_OP_MKDIR = 9,    /* file_mkdir: flags is the mode */
	RG_OP_MKNOD = 10,   /* file_mknod: flags is dev << 32 | mode */
	RG_OP_SETXATTR = 11, /* file_setxattr: name2 is the attribute's name, flags its size */
	RG_OP_UTIMES = 12,   /* file_utimes: flags is the mtime asked for (ns) or RG_MTIME_* */
	RG_OP_MOUNT = 13,    /* file_mount: source as name (mount(2): raw), target as name2 */
	RG_OP_UMOUNT = 14,   /* file_umount: the mount point as name */
	RG_OP_IO_URING_SETUP = 15, /* io_uring_setup: flags is IORING_SETUP_*, ret the ring's fd */
	RG_OP_REMOVEXATTR = 16, /* file_removexattr: name2 is the attribute's name */
};

/* rg_file_event.flags of a file_utimes that sets no explicit time */
#define RG_MTIME_NOW 0x8000000000000000ULL     /* no times, or UTIME_NOW: the current time */
#define RG_MTIME_KEPT 0x8000000000000001ULL    /* UTIME_OMIT: left as it is */
#define RG_MTIME_UNKNOWN 0x8000000000000002ULL /* the times could not be read */

/* rg_file_event.syscall: which syscall produced the event. */
enum rg_syscall {
	RG_SYS_OPEN = 1,
	RG_SYS_CREAT = 2,
	RG_SYS_OPENAT = 3,
	RG_SYS_OPENAT2 = 4,
	RG_SYS_WRITE = 5,
	RG_SYS_WRITEV = 6,
	RG_SYS_PWRITE64 = 7,
	RG_SYS_PWRITEV = 8,
	RG_SYS_PWRITEV2 = 9,
	RG_SYS_RENAME = 10,
	RG_SYS_RENAMEAT = 11,
	RG_SYS_RENAMEAT2 = 12,
	RG_SYS_UNLINK = 13,
	RG_SYS_UNLINKAT = 14,
	RG_SYS_RMDIR = 15,
	RG_SYS_LINK = 16,
	RG_SYS_LINKAT = 17,
	RG_SYS_SYMLINK = 18,
	RG_SYS_SYMLINKAT = 19,
	RG_SYS_COPY_FILE_RANGE = 20,
	RG_SYS_SENDFILE = 21,
	RG_SYS_SPLICE = 22,
	/* hooked for the directory cache (file.bpf.c): they change what paths directories have */
	RG_SYS_MOUNT = 23,
	RG_SYS_UMOUNT = 24, /* i386 only */
	RG_SYS_UMOUNT2 = 25,
	RG_SYS_MOVE_MOUNT = 26,
	RG_SYS_PIVOT_ROOT = 27,
	RG_SYS_IO_URING_SETUP = 28, /* io_uring renames are not seen: the cache goes off */
	/* attribute changes */
	RG_SYS_CHMOD = 29,
	RG_SYS_FCHMOD = 30,
	RG_SYS_FCHMODAT = 31,
	RG_SYS_FCHMODAT2 = 32,
	RG_SYS_CHOWN = 33,
	RG_SYS_FCHOWN = 34,
	RG_SYS_LCHOWN = 35,
	RG_SYS_FCHOWNAT = 36,
	RG_SYS_TRUNCATE = 37,
	RG_SYS_FTRUNCATE = 38,
	RG_SYS_CHOWN16 = 39, /* i386 only: 16-bit ids */
	RG_SYS_FCHOWN16 = 40,
	RG_SYS_LCHOWN16 = 41,
	RG_SYS_TRUNCATE64 = 42, /* i386 only: the length in two registers */
	RG_SYS_FTRUNCATE64 = 43,
	RG_SYS_MKDIR = 44,
	RG_SYS_MKDIRAT = 45,
	RG_SYS_MKNOD = 46,
	RG_SYS_MKNODAT = 47,
	RG_SYS_SETXATTR = 48,
	RG_SYS_LSETXATTR = 49,
	RG_SYS_FSETXATTR = 50,
	RG_SYS_SETXATTRAT = 51,
	RG_SYS_FALLOCATE = 52,         /* a write family call: content changed without write() */
	RG_SYS_OPEN_BY_HANDLE_AT = 53, /* an open family call: a file opened without a path */
	RG_SYS_UTIME = 54,
	RG_SYS_UTIMES = 55,
	RG_SYS_FUTIMESAT = 56,
	RG_SYS_UTIMENSAT = 57,
	RG_SYS_UTIMENSAT_TIME64 = 58, /* i386 only: 64-bit times */
	RG_SYS_REMOVEXATTR = 59,
	RG_SYS_LREMOVEXATTR = 60,
	RG_SYS_FREMOVEXATTR = 61,
	RG_SYS_REMOVEXATTRAT = 62,
	RG_SYS_MAX = 63,
};

/* The ABI a syscall was made through (every record a syscall made has an `abi` field). */
enum rg_abi {
	RG_ABI_X86_64 = 0,
	RG_ABI_I386 = 1, /* int $0x80 or sysenter: a 32-bit process, or a 64-bit one asking for it */
};

/* rg_file_event.fflags */
enum rg_file_flag {
	RG_FF_CREATED = 1 << 0, /* open: this call created the file (FMODE_CREATED) */
	RG_FF_WRITE = 1 << 1,   /* open: opened for writing, creating or truncating */
	RG_FF_IO_URING = 1 << 2, /* submitted through io_uring (syscall: the call it stands for) */
	RG_FF_DIRECT = 1 << 3,   /* io_uring open into a direct descriptor: ret is no fd */
	RG_FF_NO_RESULT = 1 << 4, /* io_uring, IOSQE_CQE_SKIP_SUCCESS: sent at submission, ret 0 */
	RG_FF_FORCED = 1 << 5,   /* passed whatever the filter says: a setid bit or file caps set */
	RG_FF_OLD = 1 << 6,      /* chmod, chown, truncate: `old` holds the value before the call */
	RG_FF_INODE = 1 << 7,    /* passed as its inode is a persistence file's (rg_persist_inodes) */
};

/*
 * A file event, emitted at sys_exit so it carries the result.
 * String slots (the header's truncation bits use these indexes):
 *   s0 path:  the object's absolute path as the kernel resolved it (successful opens, writes)
 *   s1 dir:   the directory `name` is relative to (cwd or the dirfd), resolved by the kernel;
 *             absent when `name` is absolute or s0 is present
 *   s2 name:  the raw string passed to the syscall (rename/link: the source)
 *   s3 dir2:  like dir, for name2
 *   s4 name2: rename/link: the target as passed
 */
struct rg_file_event {
	struct rg_header hdr;
	__s64 ret;       /* syscall return value */
	__u64 flags;     /* open flags, rename/unlinkat/linkat flags */
	__u64 ino;       /* inode number when the kernel knows the file */
	__u32 dev;       /* its superblock's device (kernel encoding) */
	__u32 ppid;      /* tgid of the real parent */
	__u16 syscall;   /* enum rg_syscall */
	__u8 op;         /* enum rg_file_op */
	__u8 fflags;     /* enum rg_file_flag */
	__s32 fd;        /* write: the fd; *at calls: the dirfd */
	char comm[RG_COMM_LEN];
	struct rg_str path;
	struct rg_str dir;
	struct rg_str name;
	struct rg_str dir2;
	struct rg_str name2;
	__u8 abi; /* enum rg_abi */
	__u8 _pad[3];
	/* with RG_FF_OLD, what the call changes as it was before (read as flags is: chmod the mode,
	 * chown uid << 32 | gid, truncate the size) */
	__u64 old;
};

/*
 * The key of rg_persist_inodes: a persistence file the inventory listed, by inode, so that a
 * change through another name of it (a hard link from an unwatched directory) passes too. The
 * value is the inode's i_generation (a reused inode number is another file), 0 where the file
 * system does not tell userspace (tmpfs: no FS_IOC_GETVERSION) and it is not compared.
 */
struct rg_inode_key {
	__u64 ino;
	__u32 dev; /* the superblock's s_dev (kernel encoding: major << 20 | minor) */
	__u32 _pad;
};

/* A new process or thread (sched_process_fork); the header is the parent's. */
struct rg_proc_fork {
	struct rg_header hdr;
	__u32 parent_tgid;
	__u32 child_tgid;
	__u32 child_tid;
	__u32 _pad;
	char comm[RG_COMM_LEN];
};

/* Which syscall an exec came from (joined in the kernel by thread id). */
enum rg_exec_source {
	RG_SRC_UNKNOWN = 0, /* the syscall hook was off, or the kernel started the program */
	RG_SRC_EXECVE = 1,
	RG_SRC_EXECVEAT = 2,
};

/* A completed exec (sched_process_exec); the header is the new image's. */
struct rg_proc_exec {
	struct rg_header hdr;
	__u32 ppid;
	__u32 old_tid; /* the thread that called exec (it becomes the leader) */
	__u32 euid;
	__u32 egid;
	__u64 cgroup_id;
	__u32 source; /* enum rg_exec_source */
	__u8 abi;     /* enum rg_abi of the exec syscall (RG_SRC_UNKNOWN: 0) */
	__u8 _pad[3];
	char comm[RG_COMM_LEN];
	char parent_comm[RG_COMM_LEN];
	struct rg_str exe;      /* s0: absolute path of the new image, resolved by the kernel */
	struct rg_str filename; /* s1: the file name as passed to exec */
	struct rg_str args;     /* s2: argv, NUL-separated, when rg_args_bytes > 0 */
	struct rg_str cwd;      /* s3: the working directory, when rg_collect_cwd */
};

/* An exec that failed (sys_exit_execve/execveat with an error). */
struct rg_proc_exec_failed {
	struct rg_header hdr;
	__s64 ret;
	__u32 ppid;
	__u32 source; /* enum rg_exec_source */
	char comm[RG_COMM_LEN];
	struct rg_str filename; /* s0: as passed */
	__u8 abi;               /* enum rg_abi */
	__u8 _pad[3];
};

/* A process (or, with rg_report_threads, a thread) that ended (sched_process_exit). */
struct rg_proc_exit {
	struct rg_header hdr;
	__s32 exit_code;  /* wait status: exit status << 8 | terminating signal */
	__u8 group_dead;  /* the last thread of the process */
	__u8 _pad[3];
	__u64 lifetime_ns;
	char comm[RG_COMM_LEN];
};

/* Kernel-side path filter (LPM trie). Filled from the config before any program is attached. */
#define RG_FILTER_KEY_LEN 256
#define RG_FILTER_MAX_SUFFIXES 16
#define RG_SUFFIX_LEN 30

enum rg_verdict {
	RG_V_WATCH = 1,   /* write-like operations pass */
	RG_V_READ = 2,    /* read-only opens pass */
	RG_V_EXCLUDE = 4, /* nothing passes */
	RG_V_FORCE = 8,   /* on a suffix or pass_all: passes even an excluded path (detections) */
};

struct rg_filter_key {
	__u32 prefixlen; /* bits */
	__u8 data[RG_FILTER_KEY_LEN];
};

struct rg_filter_val {
	__u8 verdict;  /* enum rg_verdict bits */
	__u8 exact;    /* the entry applies only to a path of exactly this length */
	__u8 fallback; /* verdict when `exact` does not hold */
	__u8 _pad;
};

struct rg_suffix {
	__u8 len;     /* at most RG_SUFFIX_LEN */
	__u8 verdict;
	char s[RG_SUFFIX_LEN + 2]; /* left-aligned; the slack keeps masked indexes in bounds */
};

struct rg_filter_conf {
	__u32 nr_suffixes;
	__u32 pass_all; /* verdict bits that pass every path not excluded */
	struct rg_suffix suffixes[RG_FILTER_MAX_SUFFIXES];
};

/* ---- network (issue 5) ------------------------------------------------------------------ */

/* rg_net_event.op: the event family, which is also the output event_type. */
enum rg_net_op {
	RG_NET_CONNECT = 1, /* network_connect */
	RG_NET_BIND = 2,    /* network_bind */
	RG_NET_LISTEN = 3,  /* network_listen */
	RG_NET_ACCEPT = 4,  /* network_accept */
};

/* rg_net_event.syscall */
enum rg_net_syscall {
	RG_NSYS_CONNECT = 1,
	RG_NSYS_BIND = 2,
	RG_NSYS_LISTEN = 3,
	RG_NSYS_ACCEPT = 4,
	RG_NSYS_ACCEPT4 = 5,
	RG_NSYS_SOCKETCALL = 6, /* i386 socketcall(2): dispatch only; its events name the call made */
};

/* Address families and protocols as the kernel numbers them (other values are passed raw). */
enum rg_net_family {
	RG_AF_UNSPEC = 0,
	RG_AF_UNIX = 1,
	RG_AF_INET = 2,
	RG_AF_INET6 = 10,
};

enum rg_net_proto {
	RG_IPPROTO_TCP = 6,
	RG_IPPROTO_UDP = 17,
};

/* rg_net_event.nflags */
enum rg_net_flag {
	RG_NF_LOCAL = 1 << 0,         /* laddr/lport are set */
	RG_NF_REMOTE = 1 << 1,        /* raddr/rport are set */
	RG_NF_SOCK = 1 << 2,          /* the socket was read: family, sock_type, protocol, sock_ino */
	RG_NF_UNIX_ABSTRACT = 1 << 3, /* unix_path is an abstract name (see below) */
	RG_NF_LOCAL_SOCK = 1 << 4,    /* the local side was read from the socket, not the sockaddr */
};

/*
 * A network event, emitted at sys_exit so it carries the result. One record for every op:
 *
 *   connect  fd = the socket; remote = the user sockaddr (what was asked for); local = the socket
 *            after the call when it succeeded or is in progress (-EINPROGRESS): the source
 *            address and the ephemeral port the kernel chose.
 *   bind     fd = the socket; local = the socket after a successful bind (a port 0 bind carries
 *            the chosen port, RG_NF_LOCAL_SOCK), else the user sockaddr.
 *   listen   fd = the socket; local = the bound address and port read from the socket (a socket
 *            that was never bound is autobound by listen: the port the kernel chose). arg =
 *            the backlog.
 *   accept   fd = the listening socket, ret = the new fd; local and remote read from the new
 *            socket (remote = the peer). A failed accept describes the listening socket. arg =
 *            accept4 flags. -EAGAIN and the kernel's restart codes (-512..-516) are not reported.
 *
 * Addresses are 16 bytes in network order; an IPv4 address is in the first 4 bytes (the rest
 * zero) and is formatted by `family`: an IPv4 sockaddr given to an IPv6 socket (UDP allows it)
 * is stored as the IPv4-mapped IPv6 address. Ports are in host order. scope_id: the sockaddr's
 * sin6_scope_id, or for addresses read from an IPv6 socket the bound device when the address
 * is link-local (the sockaddr's scope id wins).
 *
 * family is the socket's domain (sk_family); when the fd is not a socket it is sa_family.
 * sa_family is the family of the user sockaddr (connect, bind; AF_UNSPEC = 0 on connect is a
 * disconnect), 0 otherwise. Only AF_INET, AF_INET6 and AF_UNIX sockets are reported unless the
 * loader sets rg_net_all_families; then other families come with family/sock_type/protocol and
 * no addresses, and calls on fds that are not sockets are reported too.
 *
 * String slot s0 unix_path (AF_UNIX only): connect: the address connected to (the sockaddr);
 * bind: the address bound (a successful autobind, addrlen 2, carries the name the kernel chose);
 * listen and accept: the listening socket's bound address. Bytes as the process spelled them
 * (a relative name stays relative), without a terminating NUL. An abstract name (sun_path[0]
 * is NUL) is carried without that leading NUL, with RG_NF_UNIX_ABSTRACT set; the name itself
 * may contain NULs. Output convention: "@" followed by the name, each NUL in it also as "@" (as
 * ss(8) prints them). Absent for unnamed sockets (an abstract name of length 0 is the flag with
 * the slot absent).
 */
struct rg_net_event {
	struct rg_header hdr;
	__s64 ret;         /* syscall return value; accept: the new fd */
	__u64 sock_ino;    /* the socket's inode (accept: the new socket's), 0 when unknown */
	__u32 ppid;        /* tgid of the real parent */
	__s32 fd;          /* the socket fd the call was made on (accept: the listening socket) */
	__u32 scope_id;    /* IPv6 scope id (see above), 0 otherwise */
	__u32 arg;         /* listen: backlog; accept4: flags; 0 otherwise */
	__u16 family;      /* socket domain: enum rg_net_family or the raw AF_* value */
	__u16 sa_family;   /* connect, bind: the user sockaddr's family */
	__u16 sock_type;   /* sk_type: SOCK_STREAM 1, SOCK_DGRAM 2, SOCK_RAW 3, SOCK_SEQPACKET 5 */
	__u16 protocol;    /* sk_protocol: enum rg_net_proto or raw (AF_UNIX: 0) */
	__u16 lport;       /* local port, host order */
	__u16 rport;       /* remote port, host order */
	__u8 op;           /* enum rg_net_op */
	__u8 syscall;      /* enum rg_net_syscall */
	__u16 nflags;      /* enum rg_net_flag */
	__u8 laddr[16];
	__u8 raddr[16];
	char comm[RG_COMM_LEN];
	struct rg_str unix_path; /* s0 */
	__u8 abi;                /* enum rg_abi */
	__u8 _pad[3];
};

#endif /* RANDGUARD_H */
