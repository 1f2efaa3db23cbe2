// SPDX-License-Identifier: GPL-2.0-only
/*
 * File operations through io_uring, for the kernel tests: none of them passes the syscall it
 * stands for. Raw syscalls (no liburing), static, so the qemu guests run it as it is.
 *
 *   uringops [-s] [-a] OP ARG... [, OP ARG...]...
 *
 *   -s  set the ring up with IORING_SETUP_SQPOLL (a kernel thread submits)
 *   -a  IOSQE_ASYNC on every request (run by an io worker)
 *
 *   openat PATH OFLAGS       open (OFLAGS octal); the fd becomes the current file
 *   openat2 PATH OFLAGS      the same through IORING_OP_OPENAT2
 *   openat_direct PATH OFLAGS  open into a direct descriptor (fixed slot 0)
 *   write TEXT               write a line TEXT to the current file (IORING_OP_WRITE)
 *   writev TEXT              the same through IORING_OP_WRITEV
 *   write_registered TEXT    put the current fd in fixed slot 1, write with IOSQE_FIXED_FILE
 *   fallocate LEN            allocate LEN bytes of the current file (IORING_OP_FALLOCATE)
 *   ftruncate LEN            truncate the current file to LEN (IORING_OP_FTRUNCATE, 6.9 on)
 *   splice TEXT              a line TEXT into the current file from a pipe (IORING_OP_SPLICE)
 *   rename OLD NEW | unlink PATH | rmdir PATH | mkdir PATH MODE | symlink TARGET LINK |
 *   link OLD NEW             the IORING_OP_*AT calls, relative names against the cwd
 *   setxattr PATH NAME HEX   set attribute NAME of PATH to the bytes HEX (IORING_OP_SETXATTR)
 *   fsetxattr NAME HEX       the same on the current file (IORING_OP_FSETXATTR)
 *
 * OP! submits OP with IOSQE_CQE_SKIP_SUCCESS (5.17 on: no completion when it succeeds), hard
 * linked to a NOP whose completion says it is done: printed as result 0 (an open's fd is then
 * not known).
 *
 * Prints one line per operation: its name and the completion's result. Exits 2 when the kernel
 * has no io_uring (or it is disabled), 1 on bad usage.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define OP_FTRUNCATE 55 /* newer than these headers */

static int ring_fd;
static unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask, *sq_flags;
static struct io_uring_sqe *sqes;
static struct io_uring_cqe *cqes;
static int sqpoll;

static void setup(unsigned flags)
{
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	p.flags = flags;
	p.sq_thread_idle = 2000;
	ring_fd = syscall(__NR_io_uring_setup, 8, &p);
	if (ring_fd < 0) {
		perror("io_uring_setup");
		exit(2);
	}
	size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	char *sq = mmap(0, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd,
			IORING_OFF_SQ_RING);
	char *cq = mmap(0, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd,
			IORING_OFF_CQ_RING);
	sqes = mmap(0, p.sq_entries * sizeof(*sqes), PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	/* two fixed file slots, empty: direct opens go into 0, write_registered puts its fd in 1 */
	int none[2] = {-1, -1};
	if (syscall(__NR_io_uring_register, ring_fd, IORING_REGISTER_FILES, none, 2) < 0) {
		perror("io_uring_register");
		exit(2);
	}
	sq_tail = (unsigned *)(sq + p.sq_off.tail);
	sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	sq_array = (unsigned *)(sq + p.sq_off.array);
	sq_flags = (unsigned *)(sq + p.sq_off.flags);
	cq_head = (unsigned *)(cq + p.cq_off.head);
	cq_tail = (unsigned *)(cq + p.cq_off.tail);
	cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
}

static struct io_uring_sqe *next_sqe(unsigned ahead)
{
	unsigned tail = *sq_tail + ahead, i = tail & *sq_mask;
	struct io_uring_sqe *sqe = &sqes[i];

	memset(sqe, 0, sizeof(*sqe));
	sq_array[i] = i;
	return sqe;
}

/* Submit the `n` prepared sqes and wait for a completion; returns its result (and sets
 * *data to its user_data). */
static int run(unsigned n, __u64 *data)
{
	__atomic_store_n(sq_tail, *sq_tail + n, __ATOMIC_RELEASE);
	unsigned enter = IORING_ENTER_GETEVENTS, submit = n;

	if (sqpoll) {
		submit = 0;
		if (__atomic_load_n(sq_flags, __ATOMIC_ACQUIRE) & IORING_SQ_NEED_WAKEUP)
			enter |= IORING_ENTER_SQ_WAKEUP;
	}
	for (;;) {
		unsigned head = *cq_head;

		if (head != __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE)) {
			int res = cqes[head & *cq_mask].res;

			*data = cqes[head & *cq_mask].user_data;
			__atomic_store_n(cq_head, head + 1, __ATOMIC_RELEASE);
			return res;
		}
		if (syscall(__NR_io_uring_enter, ring_fd, submit, 1, enter, NULL, 0) < 0) {
			perror("io_uring_enter");
			exit(2);
		}
		submit = 0;
	}
}

static void at_op(struct io_uring_sqe *sqe, int op, const char *a, const char *b)
{
	sqe->opcode = op;
	sqe->fd = AT_FDCWD;
	sqe->addr = (unsigned long)a;
	sqe->addr2 = (unsigned long)b; /* rename, link: the new name */
	sqe->len = AT_FDCWD;           /* rename, link: newdfd */
}

int main(int argc, char **argv)
{
	unsigned flags = 0, sqe_flags = 0;
	int i = 1, cur = -1;
	static char buf[4096];
	static struct iovec iov;
	static struct open_how how;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-s"))
			flags |= IORING_SETUP_SQPOLL, sqpoll = 1;
		else if (!strcmp(argv[i], "-a"))
			sqe_flags |= IOSQE_ASYNC;

		else
			return 1;
	}
	setup(flags);
	while (i < argc) {
		static char op[64];
		snprintf(op, sizeof(op), "%s", argv[i++]);
		unsigned skip = op[0] && op[strlen(op) - 1] == '!';
		if (skip)
			op[strlen(op) - 1] = 0;
		const char *a = i < argc ? argv[i] : "", *b = i + 1 < argc ? argv[i + 1] : "";
		struct io_uring_sqe *sqe = next_sqe(0);
		int used = 1;

		if (!strcmp(op, "openat") || !strcmp(op, "openat_direct")) {
			at_op(sqe, IORING_OP_OPENAT, a, NULL);
			sqe->open_flags = strtoul(b, NULL, 8);
			sqe->len = 0644;
			sqe->addr2 = 0;
			if (!strcmp(op, "openat_direct"))
				sqe->file_index = 1; /* slot 0 */
			used = 2;
		} else if (!strcmp(op, "openat2")) {
			at_op(sqe, IORING_OP_OPENAT2, a, NULL);
			how.flags = strtoul(b, NULL, 8);
			how.mode = how.flags & O_CREAT ? 0644 : 0;
			sqe->addr2 = (unsigned long)&how;
			sqe->len = sizeof(how);
			used = 2;
		} else if (!strcmp(op, "write") || !strcmp(op, "write_registered")) {
			snprintf(buf, sizeof(buf), "%s\n", a);
			sqe->opcode = IORING_OP_WRITE;
			sqe->fd = cur;
			sqe->addr = (unsigned long)buf;
			sqe->len = strlen(buf);
			sqe->off = -1; /* at the file position */
			if (!strcmp(op, "write_registered")) {
				struct io_uring_files_update up = {.offset = 1, .fds = (unsigned long)&cur};

				if (syscall(__NR_io_uring_register, ring_fd, IORING_REGISTER_FILES_UPDATE,
					    &up, 1) < 0) {
					perror("io_uring_register");
					return 2;
				}
				sqe->fd = 1;
				sqe->flags |= IOSQE_FIXED_FILE;
			}
		} else if (!strcmp(op, "writev")) {
			snprintf(buf, sizeof(buf), "%s\n", a);
			iov.iov_base = buf;
			iov.iov_len = strlen(buf);
			sqe->opcode = IORING_OP_WRITEV;
			sqe->fd = cur;
			sqe->addr = (unsigned long)&iov;
			sqe->len = 1;
			sqe->off = -1;
		} else if (!strcmp(op, "fallocate") || !strcmp(op, "ftruncate")) {
			sqe->opcode = op[1] == 'a' ? IORING_OP_FALLOCATE : OP_FTRUNCATE;
			sqe->fd = cur;
			if (op[1] == 'a')
				sqe->addr = strtoul(a, NULL, 10); /* the length; off 0, mode 0 */
			else
				sqe->off = strtoul(a, NULL, 10);
		} else if (!strcmp(op, "splice")) {
			int p[2];

			snprintf(buf, sizeof(buf), "%s\n", a);
			if (pipe(p) || write(p[1], buf, strlen(buf)) < 0) {
				perror("pipe");
				return 2;
			}
			sqe->opcode = IORING_OP_SPLICE;
			sqe->fd = cur;
			sqe->off = -1;
			sqe->splice_off_in = -1;
			sqe->splice_fd_in = p[0];
			sqe->len = strlen(buf);
		} else if (!strcmp(op, "rename")) {
			at_op(sqe, IORING_OP_RENAMEAT, a, b);
			used = 2;
		} else if (!strcmp(op, "link")) {
			at_op(sqe, IORING_OP_LINKAT, a, b);
			used = 2;
		} else if (!strcmp(op, "symlink")) {
			at_op(sqe, IORING_OP_SYMLINKAT, a, b);
			sqe->len = 0; /* the link's dirfd is fd */
			used = 2;
		} else if (!strcmp(op, "unlink") || !strcmp(op, "rmdir")) {
			at_op(sqe, IORING_OP_UNLINKAT, a, NULL);
			sqe->addr2 = 0;
			sqe->len = 0;
			sqe->unlink_flags = !strcmp(op, "rmdir") ? AT_REMOVEDIR : 0;
		} else if (!strcmp(op, "mkdir")) {
			at_op(sqe, IORING_OP_MKDIRAT, a, NULL);
			sqe->addr2 = 0;
			sqe->len = strtoul(b, NULL, 8);
			used = 2;
		} else if (!strcmp(op, "setxattr") || !strcmp(op, "fsetxattr")) {
			int f = op[0] == 'f';
			const char *hex = f ? b : (i + 2 < argc ? argv[i + 2] : "");
			size_t n = strlen(hex) / 2;

			for (size_t j = 0; j < n && j < sizeof(buf); j++)
				sscanf(hex + 2 * j, "%2hhx", &buf[j]);
			sqe->opcode = f ? IORING_OP_FSETXATTR : IORING_OP_SETXATTR;
			sqe->fd = cur;
			sqe->addr = (unsigned long)(f ? a : b); /* the attribute's name */
			sqe->addr2 = (unsigned long)buf;         /* its value */
			sqe->len = n;
			if (!f)
				sqe->addr3 = (unsigned long)a; /* the path */
			used = f ? 2 : 3;
		} else {
			fprintf(stderr, "unknown op %s\n", op);
			return 1;
		}
		sqe->flags |= sqe_flags;
		sqe->user_data = 1;
		if (skip) {
			sqe->flags |= IOSQE_CQE_SKIP_SUCCESS | IOSQE_IO_HARDLINK;
			next_sqe(1)->user_data = 2; /* a NOP */
		}
		i += used;
		if (i < argc && !strcmp(argv[i], ","))
			i++;
		__u64 data;
		int res = run(1 + skip, &data);

		if (skip) {
			/* one completion more (the NOP's, or a failure's) may come: run the ring's
			 * pending work, take what is there */
			int seen_fail = data == 1 ? res : 0, got = 1;

			for (int tries = 0; tries < 10 && got < 2; tries++) {
				syscall(__NR_io_uring_enter, ring_fd, 0, 0, IORING_ENTER_GETEVENTS,
					NULL, 0);
				while (got < 2 && *cq_head != __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE)) {
					struct io_uring_cqe *c = &cqes[*cq_head & *cq_mask];

					if (c->user_data == 1)
						seen_fail = c->res;
					__atomic_store_n(cq_head, *cq_head + 1, __ATOMIC_RELEASE);
					got++;
				}
				if (got < 2 && !seen_fail)
					usleep(1000);
			}
			res = seen_fail; /* 0: only the NOP completed, the request succeeded */
		}

		if ((!strcmp(op, "openat") || !strcmp(op, "openat2")) && res >= 0)
			cur = res;
		printf("%s%s %d\n", op, skip ? "!" : "", res);
		fflush(stdout);
	}
	return 0;
}
