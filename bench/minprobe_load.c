// SPDX-License-Identifier: GPL-2.0-only
/*
 * Load a BPF object, attach every program in it (by section name), print "ready" and wait for
 * SIGINT/SIGTERM; links are destroyed on the way out. Built by bench.py with:
 *   gcc -O2 -o minprobe_load minprobe_load.c -lbpf
 */
#include <bpf/libbpf.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	struct bpf_link *links[64];
	struct bpf_program *prog;
	struct bpf_object *obj;
	int n = 0, rc = 1;

	if (argc != 2) {
		fprintf(stderr, "usage: %s OBJ\n", argv[0]);
		return 2;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj || libbpf_get_error(obj)) {
		fprintf(stderr, "minprobe: cannot open %s\n", argv[1]);
		return 1;
	}
	if (bpf_object__load(obj)) {
		fprintf(stderr, "minprobe: load failed\n");
		goto out;
	}
	bpf_object__for_each_program(prog, obj) {
		struct bpf_link *l = bpf_program__attach(prog);
		if (!l || libbpf_get_error(l)) {
			fprintf(stderr, "minprobe: attach %s failed\n", bpf_program__name(prog));
			goto out;
		}
		if (n < 64)
			links[n++] = l;
	}
	printf("ready %d\n", n);
	fflush(stdout);
	while (!stop)
		pause();
	rc = 0;
out:
	while (n > 0)
		bpf_link__destroy(links[--n]);
	bpf_object__close(obj);
	return rc;
}
