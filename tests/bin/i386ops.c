/*
 * i386ops: file operations and execve made through the i386 syscall entry (int $0x80) by a
 * 64-bit process, or natively, so that a kernel test can compare what randguard reports for
 * the two. The native ABI calls the same syscalls by number (libc's open() would be openat).
 *
 *   i386ops ABI OP ARGS...    ABI: i386 or x86_64
 *   i386ops probe             exit 0 when int $0x80 works here, 2 when the kernel lacks it
 *
 * OPs: open PATH FLAGS, openat PATH FLAGS, creat PATH, write PATH TEXT (open O_WRONLY|
 * O_APPEND|O_CREAT, write, close), rename OLD NEW, renameat OLD NEW, unlink PATH,
 * unlinkat PATH FLAGS, rmdir PATH, link OLD NEW, linkat OLD NEW FLAGS, symlink TARGET LINK,
 * symlinkat TARGET LINK, execve PATH [ARGS...] (argv is PATH ARGS..., the environment empty),
 * connect PORT (a TCP socket, then connect to 127.0.0.1:PORT; i386 by the direct socket
 * syscalls), socketcall-connect PORT (i386 only: the same through socketcall(2)).
 * Attributes: chmod PATH MODE, fchmod PATH MODE, fchmodat PATH MODE, fchmodat2 PATH MODE FLAGS,
 * fchmodat2-fd FDPATH NAME MODE FLAGS, chown16|chown32|lchown16|lchown32 PATH UID GID,
 * fchown16|fchown32 PATH UID GID, fchownat PATH UID GID FLAGS, fchownat-fd FDPATH NAME UID GID
 * FLAGS, truncate PATH LEN, truncate64 PATH LEN, ftruncate PATH LEN, ftruncate64 PATH LEN.
 * The f* calls without "at" act on an fd of PATH that i386ops opens first (open(2) through the
 * same ABI: O_RDONLY, for ftruncate* O_WRONLY, both with O_LARGEFILE); the -fd forms pass an fd
 * of FDPATH (opened O_RDONLY) as the dirfd: with NAME "" and AT_EMPTY_PATH (4096) the call is
 * on that file.
 * New names and extended attributes: mkdir PATH MODE, mkdirat PATH MODE, mknod PATH MODE DEV,
 * mknodat PATH MODE DEV (MODE with the file type: 010644 is a FIFO; DEV as the kernel takes it,
 * major << 8 | minor for small numbers), setxattr|lsetxattr PATH NAME VALUE, fsetxattr PATH
 * NAME VALUE (on an fd of PATH, opened O_RDONLY as above): the value is VALUE's bytes without
 * the NUL (size strlen(VALUE)), flags 0.
 * Natively the 16- and 32-bit-id calls are the one chown, lchown or fchown, and truncate64 and
 * ftruncate64 are truncate and ftruncate; i386 passes a 64-bit LEN as two halves, low first.
 * Numbers (MODE, UID, LEN, FLAGS) are read by strtol: 0755 is octal, -1 is -1.
 * The result goes to stderr; a failed call exits 1.
 *
 * int $0x80 takes 32-bit registers, so every pointer passed (strings, argv) is copied below
 * 4 GiB first (MAP_32BIT); an i386 argv is an array of 32-bit pointers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* i386 programs pass it for files past 2 GiB; glibc's x86-64 O_LARGEFILE is 0 (implied) */
#define KERNEL_O_LARGEFILE 0100000

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452	/* Linux 6.6; older headers lack it, older kernels say ENOSYS */
#endif

/*
 * Per argument: s = the next command-line argument as a string, n = the next one as a number,
 * c = AT_FDCWD, m = mode 0644, f = an fd of the next argument (a path) opened O_RDONLY, w = the
 * same opened O_WRONLY, L = the next argument as a 64-bit number (i386: two arguments, the low
 * half first), v = the next argument as a string and then its length (an xattr's value and
 * size), 0 = zero.
 */
static const struct op {
	const char *name;
	long nr64, nr32;
	const char *args;
} ops[] = {
	{ "open", SYS_open, 5, "snm" },
	{ "openat", SYS_openat, 295, "csnm" },
	{ "creat", SYS_creat, 8, "sm" },
	{ "rename", SYS_rename, 38, "ss" },
	{ "renameat", SYS_renameat, 302, "cscs" },
	{ "unlink", SYS_unlink, 10, "s" },
	{ "unlinkat", SYS_unlinkat, 301, "csn" },
	{ "rmdir", SYS_rmdir, 40, "s" },
	{ "link", SYS_link, 9, "ss" },
	{ "linkat", SYS_linkat, 303, "cscsn" },
	{ "symlink", SYS_symlink, 83, "ss" },
	{ "symlinkat", SYS_symlinkat, 304, "scs" },
	{ "chmod", SYS_chmod, 15, "sn" },
	{ "fchmod", SYS_fchmod, 94, "fn" },
	{ "fchmodat", SYS_fchmodat, 306, "csn" },
	{ "fchmodat2", SYS_fchmodat2, 452, "csnn" },
	{ "fchmodat2-fd", SYS_fchmodat2, 452, "fsnn" },
	{ "chown16", SYS_chown, 182, "snn" },
	{ "chown32", SYS_chown, 212, "snn" },
	{ "lchown16", SYS_lchown, 16, "snn" },
	{ "lchown32", SYS_lchown, 198, "snn" },
	{ "fchown16", SYS_fchown, 95, "fnn" },
	{ "fchown32", SYS_fchown, 207, "fnn" },
	{ "fchownat", SYS_fchownat, 298, "csnnn" },
	{ "fchownat-fd", SYS_fchownat, 298, "fsnnn" },
	{ "truncate", SYS_truncate, 92, "sn" },
	{ "truncate64", SYS_truncate, 193, "sL" },
	{ "ftruncate", SYS_ftruncate, 93, "wn" },
	{ "ftruncate64", SYS_ftruncate, 194, "wL" },
	{ "mkdir", SYS_mkdir, 39, "sn" },
	{ "mkdirat", SYS_mkdirat, 296, "csn" },
	{ "mknod", SYS_mknod, 14, "snn" },
	{ "mknodat", SYS_mknodat, 297, "csnn" },
	{ "setxattr", SYS_setxattr, 226, "ssv0" },
	{ "lsetxattr", SYS_lsetxattr, 227, "ssv0" },
	{ "fsetxattr", SYS_fsetxattr, 228, "fsv0" },
	/* T, V, U: atime and mtime both SECONDS, as timespecs, timevals, a utimbuf */
	{ "utimensat", SYS_utimensat, 320, "csT0" },
	{ "futimesat", SYS_futimesat, 299, "csV" },
	{ "utimes", SYS_utimes, 271, "sV" },
	{ "utime", SYS_utime, 30, "sU" },
};

enum {
	I386_WRITE = 4, I386_OPEN = 5, I386_CLOSE = 6, I386_EXECVE = 11, I386_GETPID = 20,
	I386_SOCKETCALL = 102, I386_SOCKET = 359, I386_CONNECT = 362,
};
enum { SC_SOCKET = 1, SC_CONNECT = 3 }; /* socketcall(2)'s call numbers (linux/net.h) */

static int i386;
static char *low, *low_end;

static __attribute__((noreturn)) void die(const char *msg)
{
	fprintf(stderr, "i386ops: %s\n", msg);
	exit(2);
}

/* Zeroed memory below 4 GiB, where int $0x80's 32-bit pointers reach. */
static void *low_alloc(size_t n)
{
	void *p = low;

	n = (n + 7) & ~(size_t)7;
	if (n > (size_t)(low_end - low))
		die("arguments too long");
	low += n;
	return p;
}

static char *low_str(const char *s)
{
	return strcpy(low_alloc(strlen(s) + 1), s);
}

/* atime = mtime = sec, in the layout of the ABI: 'T' two timespecs (a fraction of 7 ns or
 * 7 us), 'V' two timevals, 'U' a utimbuf (seconds only); i386's fields are 32-bit. */
static void *low_times(char kind, long sec)
{
	long frac = kind == 'U' ? -1 : 7;
	int fields = kind == 'U' ? 2 : 4;
	long v[4] = { sec, frac, sec, frac };

	if (kind == 'U')
		v[1] = sec;
	if (i386) {
		int32_t *p = low_alloc(fields * 4);

		for (int j = 0; j < fields; j++)
			p[j] = (int32_t)v[j];
		return p;
	}
	long *p = low_alloc(fields * 8);

	for (int j = 0; j < fields; j++)
		p[j] = v[j];
	return p;
}

static long sys32(long nr, long a, long b, long c, long d, long e)
{
	long ret;

	/* r8-r11 are clobbered by int $0x80 on older kernels */
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e)
			 : "memory", "cc", "r8", "r9", "r10", "r11");
	return (int)ret;	/* the i386 ABI returns eax */
}

/* One syscall through the chosen ABI; -errno on failure either way. */
static long call(long nr64, long nr32, long a, long b, long c, long d, long e)
{
	long ret;

	if (i386)
		return sys32(nr32, a, b, c, d, e);
	ret = syscall(nr64, a, b, c, d, e);
	return ret < 0 ? -errno : ret;
}

static int report(const char *what, long ret)
{
	fprintf(stderr, "%s %s = %ld%s%s\n", i386 ? "i386" : "x86_64", what, ret,
		ret < 0 ? " " : "", ret < 0 ? strerror(-ret) : "");
	return ret < 0;
}

static void segv(int sig)
{
	(void)sig;
	static const char msg[] = "i386ops: int $0x80 faulted: no ia32 emulation\n";
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(3);
	_exit(2);
}

/* Without ia32 emulation int $0x80 faults (no gate) or returns -ENOSYS. */
static int probe(void)
{
	long pid;

	signal(SIGSEGV, segv);
	i386 = 1;
	pid = sys32(I386_GETPID, 0, 0, 0, 0, 0);
	if (pid == getpid()) {
		fprintf(stderr, "i386ops: ia32 emulation works\n");
		return 0;
	}
	fprintf(stderr, "i386ops: int $0x80 getpid = %ld: no ia32 emulation\n", pid);
	return 2;
}

static int run_op(const struct op *op, char **argv, int argc)
{
	long a[5] = { 0 }, fd;
	unsigned long len;
	int n = 0, i = 0;

	for (const char *k = op->args; *k; k++) {
		if (strchr("snfwLvTVU", *k) && n >= argc)
			die("too few arguments");
		switch (*k) {
		case 's': a[i++] = (long)low_str(argv[n++]); break;
		case 'n': a[i++] = strtol(argv[n++], NULL, 0); break;
		case 'c': a[i++] = AT_FDCWD; break;
		case 'm': a[i++] = 0644; break;
		case '0': a[i++] = 0; break;
		case 'v':
			a[i++] = (long)low_str(argv[n]);
			a[i++] = strlen(argv[n++]);
			break;
		case 'f':
		case 'w':
			fd = call(SYS_open, I386_OPEN, (long)low_str(argv[n++]),
				  (*k == 'w' ? O_WRONLY : O_RDONLY) | KERNEL_O_LARGEFILE, 0, 0, 0);
			if (report("open", fd))
				return 1;
			a[i++] = fd;
			break;
		case 'T':
		case 'V':
		case 'U':
			a[i++] = (long)low_times(*k, strtol(argv[n++], NULL, 0));
			break;
		case 'L':
			len = strtoul(argv[n++], NULL, 0);
			a[i++] = i386 ? (long)(uint32_t)len : (long)len;
			if (i386)
				a[i++] = (long)(uint32_t)(len >> 32);
			break;
		}
	}
	if (n != argc)
		die("too many arguments");
	return report(op->name, call(op->nr64, op->nr32, a[0], a[1], a[2], a[3], a[4]));
}

static int do_write(char **argv, int argc)
{
	long fd, ret;
	char *text;

	if (argc != 2)
		die("usage: write PATH TEXT");
	fd = call(SYS_open, 5, (long)low_str(argv[0]), O_WRONLY | O_APPEND | O_CREAT, 0644, 0, 0);
	if (report("open", fd))
		return 1;
	text = low_str(argv[1]);
	ret = call(SYS_write, I386_WRITE, fd, (long)text, strlen(text), 0, 0);
	report("write", ret);
	report("close", call(SYS_close, I386_CLOSE, fd, 0, 0, 0, 0));
	return ret < 0;
}

static int do_execve(char **argv, int argc)
{
	void **v64;
	uint32_t *v32;
	void *env = low_alloc(8);	/* NULL: an empty environment for both ABIs */

	if (argc < 1)
		die("usage: execve PATH [ARGS...]");
	v64 = low_alloc((argc + 1) * sizeof(*v64));
	v32 = low_alloc((argc + 1) * sizeof(*v32));
	for (int i = 0; i < argc; i++) {
		v64[i] = low_str(argv[i]);
		v32[i] = (uint32_t)(uintptr_t)v64[i];
	}
	return report("execve", call(SYS_execve, I386_EXECVE, (long)v64[0],
				     i386 ? (long)v32 : (long)v64, (long)env, 0, 0));
}

/* A TCP socket connected to 127.0.0.1:PORT, by the direct syscalls or (i386) socketcall. */
static int do_connect(char **argv, int argc, int socketcall)
{
	struct sockaddr_in *sa = low_alloc(sizeof(*sa));
	uint32_t *args = low_alloc(4 * sizeof(*args));
	long fd, ret;

	if (argc != 1)
		die("usage: connect PORT");
	if (socketcall && !i386)
		die("socketcall is i386 only");
	sa->sin_family = AF_INET;
	sa->sin_port = htons(atoi(argv[0]));
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (socketcall) {
		args[0] = AF_INET, args[1] = SOCK_STREAM, args[2] = 0;
		fd = sys32(I386_SOCKETCALL, SC_SOCKET, (long)args, 0, 0, 0);
	} else {
		fd = call(SYS_socket, I386_SOCKET, AF_INET, SOCK_STREAM, 0, 0, 0);
	}
	if (report("socket", fd))
		return 1;
	if (socketcall) {
		args[0] = fd, args[1] = (uint32_t)(uintptr_t)sa, args[2] = sizeof(*sa);
		ret = sys32(I386_SOCKETCALL, SC_CONNECT, (long)args, 0, 0, 0);
	} else {
		ret = call(SYS_connect, I386_CONNECT, fd, (long)sa, sizeof(*sa), 0, 0);
	}
	report("connect", ret);
	return ret < 0;
}

int main(int argc, char **argv)
{
	size_t size = 1 << 20;

	if (argc == 2 && !strcmp(argv[1], "probe"))
		return probe();
	if (argc < 3 || (strcmp(argv[1], "i386") && strcmp(argv[1], "x86_64")))
		die("usage: i386ops i386|x86_64 OP ARGS... | i386ops probe");
	i386 = !strcmp(argv[1], "i386");
	low = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT,
		   -1, 0);
	if (low == MAP_FAILED)
		die("mmap MAP_32BIT failed");
	low_end = low + size;

	if (!strcmp(argv[2], "write"))
		return do_write(argv + 3, argc - 3);
	if (!strcmp(argv[2], "execve"))
		return do_execve(argv + 3, argc - 3);
	if (!strcmp(argv[2], "connect") || !strcmp(argv[2], "socketcall-connect"))
		return do_connect(argv + 3, argc - 3, argv[2][0] == 's');
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (!strcmp(argv[2], ops[i].name))
			return run_op(&ops[i], argv + 3, argc - 3);
	die("unknown operation");
}
