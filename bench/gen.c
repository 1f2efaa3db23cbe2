// SPDX-License-Identifier: GPL-2.0-only
/*
 * Load generators for bench/bench.py. One binary, one mode per run; each prints one JSON line
 * on stdout with what it did (operations, elapsed ns), so the caller computes rates and ns per
 * operation. Built by bench.py with: gcc -O2 -o gen gen.c
 *
 *   gen open   PATH FLAGS SECONDS      openat(PATH, FLAGS) + close in a tight loop
 *   gen open_i386 PATH FLAGS SECONDS   the same with i386 open + close through int $0x80 (the
 *                                      compat entry; the path is copied below 2 GiB)
 *   gen getppid SECONDS                getppid in a tight loop (a syscall nobody traces)
 *   gen write  PATH SECONDS            one open (O_WRONLY), then write(fd, 1 byte) in a loop
 *   gen openrate PATH RATE SECONDS     openat(PATH, O_WRONLY) + close at RATE/s (0: flat out)
 *   gen exec   RATE SECONDS            posix_spawn /bin/true at RATE/s, reaped asynchronously
 *   gen fork   N PARALLEL              N short-lived processes (fork, child _exit), PARALLEL
 *                                      workers
 *   gen mixed  WATCHED_DIR UNWATCHED_FILE SCALE SECONDS
 *                                      per second and per unit of SCALE: 1000 read-only opens
 *                                      of an unwatched file, 200 create+write+rename+unlink
 *                                      cycles in a watched directory, 20 execs of /bin/true
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* CPU time of this process (user + system), ns: robust against time stolen by other load. */
static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = {.tv_sec = t / 1000000000ull, .tv_nsec = t % 1000000000ull};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void die(const char *what)
{
	fprintf(stderr, "gen: %s: %s\n", what, strerror(errno));
	exit(1);
}

/*
 * The timed loop of the syscall-cost modes (open, open_i386, getppid, write): op(arg) once
 * untimed (it must not fail: a bad path, or no i386 entry), then in batches of 256 until SECS
 * have passed, with batch_end(arg), if any, after each batch. Prints the iterations, wall ns
 * and CPU ns of the timed part. Always inlined, so that each mode's op is a direct (inlined)
 * call, as in a loop written out by hand.
 */
static inline __attribute__((always_inline)) int
timed_loop(const char *what, long (*op)(void *), void (*batch_end)(void *), void *arg, double secs)
{
	uint64_t start, end, t, c0, ops = 0;

	if (op(arg) < 0)
		die(what);
	c0 = cpu_ns();
	start = now_ns();
	end = start + (uint64_t)(secs * 1e9);
	for (;;) {
		for (int i = 0; i < 256; i++)
			op(arg);
		ops += 256;
		if (batch_end)
			batch_end(arg);
		if ((t = now_ns()) >= end)
			break;
	}
	printf("{\"ops\": %llu, \"ns\": %llu, \"cpu_ns\": %llu}\n", (unsigned long long)ops,
	       (unsigned long long)(t - start), (unsigned long long)(cpu_ns() - c0));
	return 0;
}

struct open_arg {
	const char *path;
	int flags;
};

/* openat + close; returns the fd (closed) or -1 with errno set. */
static long op_openat(void *arg)
{
	const struct open_arg *a = arg;
	int fd = openat(AT_FDCWD, a->path, a->flags, 0644);

	if (fd >= 0)
		close(fd);
	return fd;
}

/*
 * An i386 syscall from this 64-bit process: int $0x80 takes the i386 numbers and arguments in
 * ebx, ecx, edx (pointers truncated to 32 bits). Older kernels clobber r8-r11 on this entry.
 */
static inline long i386_syscall3(long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "0"(nr), "b"(a), "c"(b), "d"(c)
			 : "r8", "r9", "r10", "r11", "memory", "cc");
	return ret;
}

#define I386_NR_OPEN 5
#define I386_NR_CLOSE 6

/* i386 open + close; returns the fd (closed) or -1 with errno set. */
static long op_open_i386(void *arg)
{
	const struct open_arg *a = arg;
	long fd = i386_syscall3(I386_NR_OPEN, (long)(uintptr_t)a->path, a->flags, 0644);

	if (fd < 0) {
		errno = (int)-fd;
		return -1;
	}
	i386_syscall3(I386_NR_CLOSE, fd, 0, 0);
	return fd;
}

static int mode_open(const char *path, int flags, double secs)
{
	struct open_arg a = {path, flags};

	return timed_loop(path, op_openat, NULL, &a, secs);
}

/* A copy of s in memory below 2 GiB (MAP_32BIT), which int $0x80 can address. */
static char *low_copy(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT,
		       -1, 0);

	if (p == MAP_FAILED)
		die("mmap(MAP_32BIT)");
	return memcpy(p, s, n);
}

static int mode_open_i386(const char *path, int flags, double secs)
{
	struct open_arg a = {low_copy(path), flags};

	return timed_loop(path, op_open_i386, NULL, &a, secs);
}

static long op_getppid(void *arg)
{
	(void)arg;
	return getppid();
}

static int mode_getppid(double secs)
{
	return timed_loop("getppid", op_getppid, NULL, NULL, secs);
}

/* write 1 byte; a failure ends the run. */
static long op_write(void *arg)
{
	if (write(*(int *)arg, "x", 1) != 1)
		die("write");
	return 0;
}

static void rewind_fd(void *arg) /* keep the file small; lseek is not traced */
{
	if (lseek(*(int *)arg, 0, SEEK_SET) < 0)
		die("lseek");
}

/* The untimed first write is the one a watched file reports; the timed ones come after it. */
static int mode_write(const char *path, double secs)
{
	int fd = openat(AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		die(path);
	timed_loop("write", op_write, rewind_fd, &fd, secs);
	close(fd);
	return 0;
}

/* Paced: every 1 ms tick, catch up with rate * elapsed; flat out when rate is 0. */
static int mode_openrate(const char *path, double rate, double secs)
{
	uint64_t start = now_ns(), end = start + (uint64_t)(secs * 1e9), t = start;
	uint64_t ops = 0, tick = 1000000;
	int fd;

	while (t < end) {
		uint64_t due = rate > 0 ? (uint64_t)((t - start) * rate / 1e9) + 1 : ops + 1024;
		while (ops < due) {
			fd = openat(AT_FDCWD, path, O_WRONLY, 0644);
			if (fd < 0)
				die(path);
			close(fd);
			ops++;
		}
		if (rate > 0) {
			uint64_t next = start + ((now_ns() - start) / tick + 1) * tick;
			if (next < end)
				sleep_until(next);
		}
		t = now_ns();
	}
	printf("{\"ops\": %llu, \"ns\": %llu}\n", (unsigned long long)ops,
	       (unsigned long long)(t - start));
	return 0;
}

static int outstanding;

static void reap(int block)
{
	while (outstanding > 0) {
		pid_t p = waitpid(-1, NULL, block ? 0 : WNOHANG);
		if (p <= 0)
			break;
		outstanding--;
		block = 0;
	}
}

static void reap_all(void)
{
	while (outstanding > 0)
		reap(1);
}

/* Reap what has exited, sleep to the next `tick` boundary after `start` (unless it is past
 * `end`); the time then. */
static uint64_t next_tick(uint64_t start, uint64_t end, uint64_t tick)
{
	reap(0);
	uint64_t next = start + ((now_ns() - start) / tick + 1) * tick;
	if (next < end)
		sleep_until(next);
	return now_ns();
}

static void spawn_true(void)
{
	static char *argv[] = {"true", NULL};
	pid_t pid;

	while (outstanding >= 64)
		reap(1);
	if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ))
		die("posix_spawn");
	outstanding++;
}

static int mode_exec(double rate, double secs)
{
	uint64_t start = now_ns(), end = start + (uint64_t)(secs * 1e9), t = start;
	uint64_t ops = 0, tick = 1000000;

	while (t < end) {
		uint64_t due = (uint64_t)((t - start) * rate / 1e9) + 1;
		while (ops < due) {
			spawn_true();
			ops++;
		}
		t = next_tick(start, end, tick);
	}
	reap_all();
	printf("{\"ops\": %llu, \"ns\": %llu}\n", (unsigned long long)ops,
	       (unsigned long long)(now_ns() - start));
	return 0;
}

static int mode_fork(long n, int parallel)
{
	uint64_t start = now_ns();
	long per = n / parallel;

	for (int w = 0; w < parallel; w++) {
		pid_t worker = fork();
		if (worker < 0)
			die("fork");
		if (worker == 0) {
			long todo = per + (w == 0 ? n % parallel : 0);
			for (long i = 0; i < todo; i++) {
				pid_t c = fork();
				if (c < 0)
					die("fork");
				if (c == 0)
					_exit(0);
				if (waitpid(c, NULL, 0) < 0)
					die("waitpid");
			}
			_exit(0);
		}
	}
	for (int w = 0; w < parallel; w++)
		wait(NULL);
	printf("{\"ops\": %ld, \"ns\": %llu}\n", n, (unsigned long long)(now_ns() - start));
	return 0;
}

static int mode_mixed(const char *wdir, const char *unwatched, double scale, double secs)
{
	uint64_t start = now_ns(), end = start + (uint64_t)(secs * 1e9), t = start;
	uint64_t tick = 1000000, reads = 0, cycles = 0, execs = 0;
	char a[4096], b[4096];
	int fd;

	while (t < end) {
		double el = (t - start) / 1e9;
		uint64_t due_r = (uint64_t)(el * 1000 * scale) + 1;
		uint64_t due_c = (uint64_t)(el * 200 * scale) + 1;
		uint64_t due_e = (uint64_t)(el * 20 * scale) + 1;

		while (reads < due_r) {
			fd = openat(AT_FDCWD, unwatched, O_RDONLY);
			if (fd < 0)
				die(unwatched);
			close(fd);
			reads++;
		}
		while (cycles < due_c) {
			snprintf(a, sizeof(a), "%s/f%llu", wdir, (unsigned long long)(cycles % 64));
			snprintf(b, sizeof(b), "%s/g%llu", wdir, (unsigned long long)(cycles % 64));
			fd = openat(AT_FDCWD, a, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd < 0)
				die(a);
			if (write(fd, "data\n", 5) != 5)
				die("write");
			close(fd);
			if (rename(a, b))
				die("rename");
			if (unlink(b))
				die("unlink");
			cycles++;
		}
		while (execs < due_e) {
			spawn_true();
			execs++;
		}
		t = next_tick(start, end, tick);
	}
	reap_all();
	printf("{\"ops\": %llu, \"reads\": %llu, \"cycles\": %llu, \"execs\": %llu, \"ns\": %llu}\n",
	       (unsigned long long)(reads + cycles + execs), (unsigned long long)reads,
	       (unsigned long long)cycles, (unsigned long long)execs,
	       (unsigned long long)(now_ns() - start));
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 5 && !strcmp(argv[1], "open"))
		return mode_open(argv[2], (int)strtol(argv[3], NULL, 0), atof(argv[4]));
	if (argc >= 5 && !strcmp(argv[1], "open_i386"))
		return mode_open_i386(argv[2], (int)strtol(argv[3], NULL, 0), atof(argv[4]));
	if (argc >= 3 && !strcmp(argv[1], "getppid"))
		return mode_getppid(atof(argv[2]));
	if (argc >= 4 && !strcmp(argv[1], "write"))
		return mode_write(argv[2], atof(argv[3]));
	if (argc >= 5 && !strcmp(argv[1], "openrate"))
		return mode_openrate(argv[2], atof(argv[3]), atof(argv[4]));
	if (argc >= 4 && !strcmp(argv[1], "exec"))
		return mode_exec(atof(argv[2]), atof(argv[3]));
	if (argc >= 4 && !strcmp(argv[1], "fork"))
		return mode_fork(atol(argv[2]), atoi(argv[3]));
	if (argc >= 6 && !strcmp(argv[1], "mixed"))
		return mode_mixed(argv[2], argv[3], atof(argv[4]), atof(argv[5]));
	fprintf(stderr, "usage: see the comment at the top of bench/gen.c\n");
	return 2;
}
