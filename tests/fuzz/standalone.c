/*
 * standalone.c: a main() for fuzz targets in builds without libFuzzer, so
 * the regression corpus (crashes the fuzzer found, interesting seeds) runs
 * in every `make check`, with or without --enable-sanitizers.
 *
 *   fuzz-stream-regress PATH...
 *
 * Each PATH is an input file, or a directory whose files (not recursing,
 * dot files skipped, in name order so the TAP numbering is stable) are
 * inputs.  Output is TAP for automake's tap-driver: `1..N`, then `ok K -
 * PATH` or `not ok K - PATH (why)`.  Every input runs in a child process:
 * a target that aborts on one input (that is how a fuzz target reports a
 * bug) must not hide the verdict on the others, and LeakSanitizer checks
 * each child at its exit, so a leak is charged to the input that caused it.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz_stream.h"

struct inputs {
	char **paths;
	size_t n;
	size_t cap;
};

/* Takes ownership of path. */
static int add_path(struct inputs *in, char *p)
{
	if (!p)
		return -1;
	if (in->n == in->cap) {
		size_t cap = in->cap ? in->cap * 2 : 16;
		char **np = realloc(in->paths, cap * sizeof(*np));

		if (!np) {
			free(p);
			return -1;
		}
		in->paths = np;
		in->cap = cap;
	}
	in->paths[in->n++] = p;
	return 0;
}

static int skip_dot(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

static int add_arg(struct inputs *in, const char *arg)
{
	struct dirent **ents;
	struct stat st;
	int n;

	if (stat(arg, &st) < 0) {
		fprintf(stderr, "%s: %s\n", arg, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return add_path(in, strdup(arg));
	n = scandir(arg, &ents, skip_dot, alphasort);
	if (n < 0) {
		fprintf(stderr, "%s: %s\n", arg, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		size_t len = strlen(arg) + strlen(ents[i]->d_name) + 2;
		char *p = malloc(len);
		int r = -1;

		/* Only regular files: a README or a sub-directory is no input. */
		if (p) {
			snprintf(p, len, "%s/%s", arg, ents[i]->d_name);
			if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
				r = add_path(in, p);
			} else {
				free(p);
				r = 0;
			}
		}
		free(ents[i]);
		if (r < 0) {
			while (++i < n)
				free(ents[i]);
			free(ents);
			return -1;
		}
	}
	free(ents);
	return 0;
}

static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data = NULL;
	size_t cap = 0;

	*len = 0;
	if (!f)
		return NULL;
	for (;;) {
		size_t got;

		if (*len == cap) {
			uint8_t *nd = realloc(data, cap ? cap * 2 : 4096);

			if (!nd) {
				free(data);
				fclose(f);
				return NULL;
			}
			data = nd;
			cap = cap ? cap * 2 : 4096;
		}
		got = fread(data + *len, 1, cap - *len, f);
		*len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		free(data);
		data = NULL;
	}
	fclose(f);
	return data;
}

/* Run one input in a child; returns NULL on success or why it failed. */
static const char *run_one(const char *path, char *why, size_t whylen)
{
	pid_t pid;
	int status;

	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		snprintf(why, whylen, "fork: %s", strerror(errno));
		return why;
	}
	if (pid == 0) {
		size_t len;
		uint8_t *data = read_file(path, &len);

		if (!data) {
			fprintf(stderr, "%s: cannot read: %s\n", path, strerror(errno));
			_exit(2);
		}
		LLVMFuzzerTestOneInput(data, len);
		free(data);
		exit(0);    /* not _exit: LeakSanitizer runs at exit */
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			snprintf(why, whylen, "waitpid: %s", strerror(errno));
			return why;
		}
	if (WIFSIGNALED(status)) {
		snprintf(why, whylen, "killed by signal %d", WTERMSIG(status));
		return why;
	}
	if (WEXITSTATUS(status) != 0) {
		snprintf(why, whylen, "exit status %d", WEXITSTATUS(status));
		return why;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct inputs in = { NULL, 0, 0 };
	int failed = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++)
		if (add_arg(&in, argv[i]) < 0)
			return 1;
	printf("1..%zu\n", in.n);
	for (size_t i = 0; i < in.n; i++) {
		char why[128];
		const char *bad = run_one(in.paths[i], why, sizeof(why));

		if (bad) {
			printf("not ok %zu - %s (%s)\n", i + 1, in.paths[i], bad);
			failed++;
		} else {
			printf("ok %zu - %s\n", i + 1, in.paths[i]);
		}
		free(in.paths[i]);
	}
	free(in.paths);
	return failed ? 1 : 0;
}
