// SPDX-License-Identifier: GPL-2.0-only
/*
 * Network telemetry: connect, bind, listen, accept and accept4.
 *
 * The dispatcher (dispatch.bpf.h) tail-calls these programs for the hooked syscalls, native
 * and i386 (the direct calls, and socketcall(2), which names the call and points at its
 * arguments). Each syscall is seen twice: sys_enter checks that the fd is a socket of a reported family and
 * stashes the arguments per thread; sys_exit builds one rg_net_event with the result. Addresses
 * come from two places: the user's sockaddr (connect: where to; bind: what was asked for; read
 * at exit, after the kernel has copied it, so its page is resident) and the socket itself (the
 * address and port the kernel really bound or chose: the local side of a connect, a listen, a
 * successful bind, and both sides of an accepted socket). The record layout and the meaning of
 * every field are in randguard.h (struct rg_net_event).
 */
#include "common.bpf.h"
#include "dispatch.bpf.h"
#include <bpf/bpf_endian.h>

#define AF_UNSPEC 0
#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EAGAIN 11
#define EINPROGRESS 115
#define ERESTARTSYS 512
#define ERESTART_RESTARTBLOCK 516

#define SOCKADDR_MAX 128    /* sizeof(struct sockaddr_storage): the kernel takes no more */
#define SOCKADDR_MASK 127
#define SUN_PATH_OFF 2      /* offsetof(struct sockaddr_un, sun_path) */
#define SUN_PATH_MAX 108    /* sizeof(sun_path) */
#define SIN_LEN 8           /* family, port, IPv4 address */
#define SIN6_LEN_RFC2133 24 /* family, port, flowinfo, IPv6 address */
#define SIN6_LEN 28         /* ... and the scope id */

/* Set by the loader before load: report every socket family (netlink, packet, ...) too. */
const volatile __u8 rg_net_all_families = 0;

/* A network syscall in flight, by thread. */
struct rg_net_inflight {
	__u64 addr;    /* connect, bind: user sockaddr pointer */
	__s32 fd;
	__u32 addrlen; /* connect, bind */
	__u32 arg;     /* listen: backlog; accept4: flags */
	__u16 family;  /* the socket's family at enter (0: the fd was no socket) */
	__u8 syscall;  /* enum rg_net_syscall */
	__u8 op;       /* enum rg_net_op */
	__u8 abi;      /* enum rg_abi */
	__u8 _pad[7];
};

/* A plain hash, not an LRU: when it is full, a new call is counted as lost, not an old one. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384); /* [performance] max_syscalls_in_flight */
	__type(key, __u32); /* tid */
	__type(value, struct rg_net_inflight);
} rg_net_inflight SEC(".maps");

#define REC_MASK RG_REC_MASK

/* Hide a value's range from clang, so that a mask written for the verifier is kept. */
#define hide_range(v) asm volatile("" : "+r"(v))

/*
 * The socket behind an fd, or NULL when the fd is not a socket. A socket file has an S_IFSOCK
 * inode and private_data pointing at a struct socket whose ->file points back (an O_PATH fd
 * of a socket inode on disk has neither).
 */
static __always_inline struct socket *fd_socket(int fd, struct file **fp)
{
	struct file *f = rg_fd_file(fd);
	struct socket *sock;

	if (!f)
		return NULL;
	if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	sock = BPF_CORE_READ(f, private_data);
	if (!sock || BPF_CORE_READ(sock, file) != f)
		return NULL;
	*fp = f;
	return sock;
}

static __always_inline int family_wanted(__u16 family)
{
	return rg_net_all_families || family == AF_INET || family == AF_INET6 || family == AF_UNIX;
}

static __always_inline int net_enter(int fd, __u64 addr, __u32 addrlen, __u32 arg, __u8 sys,
				     __u8 op, __u8 abi)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct file *f = NULL;
	struct socket *sock;
	__u16 family = 0;

	if (rg_is_self())
		return 0;
	sock = fd_socket(fd, &f);
	if (sock)
		family = BPF_CORE_READ(sock, sk, __sk_common.skc_family);
	if (!family_wanted(family))
		return 0;

	struct rg_net_inflight in = {
		.addr = addr, .fd = fd, .addrlen = addrlen, .arg = arg, .family = family,
		.syscall = sys, .op = op, .abi = abi,
	};
	/* a full in-flight table loses the event: counted */
	if (bpf_map_update_elem(&rg_net_inflight, &tid, &in, BPF_ANY))
		rg_count(&rg_table_full, RG_FAM_NETWORK);
	return 0;
}

/* ---- filling the record ---------------------------------------------------------------- */

/* family, type, protocol and inode from the socket. */
static __always_inline struct sock *put_socket(struct rg_net_event *e, struct socket *sock,
					       struct file *f)
{
	struct sock *sk = BPF_CORE_READ(sock, sk);

	if (!sk)
		return NULL;
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->sock_type = BPF_CORE_READ(sk, sk_type);
	e->protocol = BPF_CORE_READ(sk, sk_protocol);
	e->sock_ino = BPF_CORE_READ(f, f_inode, i_ino);
	e->nflags |= RG_NF_SOCK;
	return sk;
}

static __always_inline int ipv6_linklocal(const __u8 *a)
{
	return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

/*
 * One side as the socket has it now: the local one (the bound or chosen address and port) or,
 * with `peer`, the remote one of a connected socket.
 */
static __always_inline void side_from_sock(struct rg_net_event *e, struct sock *sk, int peer)
{
	__u8 *addr = peer ? e->raddr : e->laddr;

	if (e->family == AF_INET) {
		if (peer)
			bpf_core_read(addr, 4, &sk->__sk_common.skc_daddr);
		else
			bpf_core_read(addr, 4, &sk->__sk_common.skc_rcv_saddr);
	} else if (e->family == AF_INET6) {
		if (peer)
			bpf_core_read(addr, 16, &sk->__sk_common.skc_v6_daddr);
		else
			bpf_core_read(addr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		if (!e->scope_id && ipv6_linklocal(addr))
			e->scope_id = BPF_CORE_READ(sk, __sk_common.skc_bound_dev_if);
	} else {
		return;
	}
	if (peer) {
		e->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
		e->nflags |= RG_NF_REMOTE;
	} else {
		e->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
		e->nflags |= RG_NF_LOCAL | RG_NF_LOCAL_SOCK;
	}
}

/*
 * s->path[0..len) holds a struct sockaddr_un, zero-filled after len: put its name into the
 * unix_path slot. A path name ends at its first NUL (or at len); an abstract name (leading NUL)
 * is every byte after that NUL.
 */
static __always_inline void put_unix_name(struct rg_scratch *s, __u32 len)
{
	struct rg_net_event *e = (void *)s->rec;
	__u64 at = s->pos;
	__u32 n;
	long r;

	if (len <= SUN_PATH_OFF || at > RG_REC_MAX - RG_PATH_MAX)
		return; /* unnamed */
	n = len - SUN_PATH_OFF;
	if (n > SUN_PATH_MAX)
		n = SUN_PATH_MAX;
	if (s->path[SUN_PATH_OFF] == 0) {
		e->nflags |= RG_NF_UNIX_ABSTRACT;
		n -= 1;
		hide_range(n);
		n &= SOCKADDR_MASK;
		if (!n)
			return;
		bpf_probe_read_kernel(&s->rec[at & REC_MASK], n, &s->path[SUN_PATH_OFF + 1]);
	} else {
		/*
		 * Up to the first NUL, at most n bytes: the byte after the name is zero (the fill) or
		 * is replaced by the helper's terminator, which is not counted.
		 */
		n += 1;
		hide_range(n);
		r = bpf_probe_read_kernel_str(&s->rec[at & REC_MASK], n & SOCKADDR_MASK,
					      &s->path[SUN_PATH_OFF]);
		if (r <= 1)
			return;
		n = (r - 1) & SOCKADDR_MASK;
	}
	e->unix_path.off = at;
	e->unix_path.len = n;
	s->pos = at + n;
}

/* The socket's own unix address (what bind gave it, or autobind chose), into unix_path. */
static __always_inline void unix_from_sock(struct rg_scratch *s, struct sock *sk)
{
	struct unix_address *ua = BPF_CORE_READ((struct unix_sock *)sk, addr);
	__u32 len;

	if (!ua)
		return;
	len = BPF_CORE_READ(ua, len);
	if (len > SUN_PATH_OFF + SUN_PATH_MAX)
		len = SUN_PATH_OFF + SUN_PATH_MAX;
	__builtin_memset(s->path, 0, SOCKADDR_MAX);
	hide_range(len);
	if (bpf_core_read(s->path, len & SOCKADDR_MASK, &ua->name))
		return;
	put_unix_name(s, len);
}

/*
 * The user sockaddr of a connect or bind, copied to s->path and parsed into the local
 * (`remote` = 0) or remote side. Returns its family (0 when unreadable).
 */
static __always_inline __u16 put_user_sockaddr(struct rg_scratch *s, __u64 uaddr, __u32 len,
					       int remote)
{
	struct rg_net_event *e = (void *)s->rec;
	__u8 *addr = remote ? e->raddr : e->laddr;
	__u16 sa_family, port;

	/* the kernel refuses (-EINVAL) what it does not copy: no address then */
	if (!uaddr || len < 2 || len > SOCKADDR_MAX)
		return 0;
	__builtin_memset(s->path, 0, SOCKADDR_MAX);
	hide_range(len);
	if (bpf_probe_read_user(s->path, len & 0xff, (void *)uaddr))
		return 0;
	sa_family = *(__u16 *)&s->path[0];
	e->sa_family = sa_family;
	if (!e->family)
		e->family = sa_family; /* not a socket (rg_net_all_families only) */
	port = bpf_ntohs(*(__u16 *)&s->path[2]);

	if (sa_family == AF_INET && len >= SIN_LEN) {
		if (e->family == AF_INET) {
			__builtin_memcpy(addr, &s->path[4], 4);
		} else if (e->family == AF_INET6) {
			/* an IPv4 sockaddr on an IPv6 socket (UDP): as the v4-mapped address */
			addr[10] = 0xff;
			addr[11] = 0xff;
			__builtin_memcpy(&addr[12], &s->path[4], 4);
		} else {
			return sa_family;
		}
	} else if (sa_family == AF_INET6 && len >= SIN6_LEN_RFC2133 && e->family == AF_INET6) {
		__builtin_memcpy(addr, &s->path[8], 16);
		if (len >= SIN6_LEN)
			e->scope_id = *(__u32 *)&s->path[24];
	} else if (sa_family == AF_UNIX && e->family == AF_UNIX) {
		put_unix_name(s, len);
		return sa_family;
	} else {
		return sa_family;
	}
	if (remote) {
		e->rport = port;
		e->nflags |= RG_NF_REMOTE;
	} else {
		e->lport = port;
		e->nflags |= RG_NF_LOCAL;
	}
	return sa_family;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(rg_net_exit, struct pt_regs *regs, long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct rg_net_inflight *inp, in;
	struct rg_scratch *s;

	inp = bpf_map_lookup_elem(&rg_net_inflight, &tid);
	if (!inp)
		return 0;
	in = *inp;
	bpf_map_delete_elem(&rg_net_inflight, &tid);
	/* nothing was accepted: no event (a restarted call comes back through enter) */
	if (in.op == RG_NET_ACCEPT &&
	    (ret == -EAGAIN || (ret <= -ERESTARTSYS && ret >= -ERESTART_RESTARTBLOCK)))
		return 0;
	s = rg_scratch();
	if (!s)
		return 0;

	struct rg_net_event *e = (void *)s->rec;
	struct socket *sock;
	struct sock *sk = NULL;
	struct file *f = NULL;

	__builtin_memset(e, 0, sizeof(*e));
	s->pos = sizeof(*e);
	rg_fill_header(&e->hdr, RG_KIND_NET);
	e->ret = ret;
	e->fd = in.fd;
	e->arg = in.arg;
	e->op = in.op;
	e->syscall = in.syscall;
	e->abi = in.abi;
	e->family = in.family;
	e->ppid = rg_current_ppid();
	bpf_get_current_comm(e->comm, sizeof(e->comm));

	/* accept: the new socket when there is one, else the listening one */
	sock = fd_socket((in.op == RG_NET_ACCEPT && ret >= 0) ? (int)ret : in.fd, &f);
	if (sock)
		sk = put_socket(e, sock, f);

	switch (in.op) {
	case RG_NET_CONNECT:
		put_user_sockaddr(s, in.addr, in.addrlen, 1);
		if (sk && (ret == 0 || ret == -EINPROGRESS))
			side_from_sock(e, sk, 0);
		break;
	case RG_NET_BIND:
		if (sk && ret == 0) {
			/* the user's sockaddr for the scope id and family, then what was bound */
			put_user_sockaddr(s, in.addr, in.addrlen, 0);
			if (e->family == AF_UNIX) {
				e->nflags &= ~RG_NF_UNIX_ABSTRACT;
				e->unix_path.off = e->unix_path.len = 0;
				s->pos = sizeof(*e);
				unix_from_sock(s, sk);
			} else {
				side_from_sock(e, sk, 0);
			}
		} else {
			put_user_sockaddr(s, in.addr, in.addrlen, 0);
		}
		break;
	case RG_NET_LISTEN:
		if (sk) {
			if (e->family == AF_UNIX)
				unix_from_sock(s, sk);
			else
				side_from_sock(e, sk, 0);
		}
		break;
	case RG_NET_ACCEPT:
		if (sk) {
			if (e->family == AF_UNIX) {
				unix_from_sock(s, sk);
			} else {
				side_from_sock(e, sk, 0);
				if (ret >= 0)
					side_from_sock(e, sk, 1);
			}
		}
		break;
	}
	e->hdr.size = s->pos;
	rg_submit(s->rec, s->pos, RG_FAM_NETWORK);
	return 0;
}

static __always_inline __u8 op_of(__u16 sys)
{
	switch (sys) {
	case RG_NSYS_CONNECT: return RG_NET_CONNECT;
	case RG_NSYS_BIND: return RG_NET_BIND;
	case RG_NSYS_LISTEN: return RG_NET_LISTEN;
	default: return RG_NET_ACCEPT;
	}
}

SEC("tp_btf/sys_enter")
int BPF_PROG(rg_net_enter, struct pt_regs *regs, long nr)
{
	struct rg_sysinfo *si = rg_sys_lookup(nr);
	__u64 a[4];

	if (!si)
		return 0;
	__u8 abi = si->abi;
	__u16 sys = si->id;

	if (sys == RG_NSYS_SOCKETCALL) {
		/* socketcall(call, args): the call's arguments are 32-bit words in user memory;
		 * the loader noted the calls it hooks from RG_SOCKETCALL_BASE */
		__u32 call = rg_arg(regs, 0, abi), w[4] = {};
		const void *args = (const void *)rg_arg(regs, 1, abi);

		if (call >= RG_SYS_INFO_SLOTS - RG_SOCKETCALL_BASE)
			return 0;
		call += RG_SOCKETCALL_BASE;
		si = bpf_map_lookup_elem(&rg_sys_info, &call);
		if (!si || !si->id)
			return 0;
		sys = si->id;
		/* listen has two words, connect, bind and accept three: near a page end, read less */
		if (bpf_probe_read_user(w, 16, args) && bpf_probe_read_user(w, 12, args))
			bpf_probe_read_user(w, 8, args);
		for (int i = 0; i < 4; i++)
			a[i] = w[i];
	} else {
		for (int i = 0; i < 4; i++)
			a[i] = rg_arg(regs, i, abi);
	}
	switch (sys) {
	case RG_NSYS_CONNECT:
	case RG_NSYS_BIND:
		return net_enter((int)a[0], a[1], (__u32)a[2], 0, sys, op_of(sys), abi);
	case RG_NSYS_LISTEN:
		return net_enter((int)a[0], 0, 0, (__u32)a[1], sys, op_of(sys), abi);
	case RG_NSYS_ACCEPT4:
		return net_enter((int)a[0], 0, 0, (__u32)a[3], sys, op_of(sys), abi);
	default:
		return net_enter((int)a[0], 0, 0, 0, sys, op_of(sys), abi);
	}
}
