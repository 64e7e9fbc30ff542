/* testutil.c: see testutil.h. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "splitmix.h"
#include "testutil.h"

/*
 * Copy Check's TAP from `in` to stdout, turning a failure whose message
 * starts with the skip mark into "ok N - name # SKIP why".  Check writes
 * "not ok N - FILE:TCASE:TEST: MESSAGE".  Returns the "not ok" lines left.
 */
static int copy_tap(FILE *in)
{
	static const char mark[] = ": " COLO_TEST_SKIP_MARK;
	char line[8192];
	int failed = 0;

	while (fgets(line, sizeof(line), in)) {
		char *m = strstr(line, mark);
		int num, at = 0;

		if (strncmp(line, "not ok ", 7) == 0 && m &&
		    sscanf(line, "not ok %d - %n", &num, &at) == 1 && at > 0 && line + at <= m) {
			*m = '\0';
			printf("ok %d - %s # SKIP %s", num, line + at, m + sizeof(mark) - 1);
		} else {
			if (strncmp(line, "not ok ", 7) == 0)
				failed++;
			fputs(line, stdout);
		}
	}
	fflush(stdout);
	return failed;
}

int colo_test_main(Suite *s)
{
	SRunner *sr = srunner_create(s);
	char *dir = colo_test_tmpdir(), *path = NULL;
	int failed = 1;
	FILE *tap;

	/* Check writes its TAP to a file; skips are rewritten on the way out. */
	if (!dir || asprintf(&path, "%s/tap", dir) < 0) {
		printf("Bail out! no scratch directory for the TAP output\n");
		return EXIT_FAILURE;
	}
	srunner_set_tap(sr, path);
	srunner_run_all(sr, CK_SILENT);
	tap = fopen(path, "r");
	if (tap) {
		failed = copy_tap(tap);
		fclose(tap);
	} else {
		printf("Bail out! cannot read Check's TAP output %s\n", path);
	}
	unlink(path);
	free(path);
	colo_test_rmdir(dir);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

void colo_test_skip_all(const char *fmt, ...)
{
	va_list ap;

	printf("1..0 # SKIP ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(EXIT_SUCCESS);
}

uint64_t colo_test_seed(const char *what, uint64_t dflt)
{
	const char *env = getenv("COLO_TEST_SEED");
	uint64_t seed = dflt;
	size_t len;

	if (env && *env) {
		char *end;

		errno = 0;
		seed = strtoull(env, &end, 0);
		ck_assert_msg(errno == 0 && *end == '\0', "COLO_TEST_SEED=%s is not a number",
			      env);
	}
	/* Check names a test's function NAME_fn: print the test's name. */
	len = strlen(what);
	if (len > 3 && strcmp(what + len - 3, "_fn") == 0)
		len -= 3;
	fprintf(stderr, "# seed %.*s: %" PRIu64 "%s\n", (int)len, what, seed,
		env && *env ? " (from COLO_TEST_SEED)" : "");
	return seed;
}

uint64_t colo_test_seed_random(const char *what)
{
	/* Mixed, so seeds taken a moment apart look nothing alike. */
	return colo_test_seed(what, colo_mix64((uint64_t)getpid() << 32 ^ colo_wall_ns()) %
			      1000000000000u);
}

bool colo_test_wait(bool (*cond)(void *ud), void *ud, int ms)
{
	uint64_t end = colo_now_ms() + (uint64_t)ms;

	for (;;) {
		if (cond(ud))
			return true;
		if (colo_now_ms() >= end)
			return false;
		usleep(5000);
	}
}

uint64_t colo_rng_next(struct colo_rng *r)
{
	return colo_splitmix64(&r->s);
}

uint64_t colo_rng_below(struct colo_rng *r, uint64_t n)
{
	return n ? colo_rng_next(r) % n : 0;
}

void colo_rng_fill(struct colo_rng *r, void *p, size_t n)
{
	uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)colo_rng_next(r);
}

size_t colo_pieces_next(void *pieces)
{
	struct colo_pieces *p = pieces;

	if (p->fixed)
		return p->fixed;
	return 1 + (size_t)colo_rng_below(&p->rng, p->max ? p->max : 1);
}

uint8_t *colo_test_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0) {
		data = malloc((size_t)n + 1);
		if (data && fread(data, 1, (size_t)n, f) != (size_t)n) {
			free(data);
			data = NULL;
		}
		*len = (size_t)n;
	}
	fclose(f);
	return data;
}

int colo_test_write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	if (!f)
		return -1;
	if (fwrite(data, 1, len, f) != len) {
		fclose(f);
		return -1;
	}
	return fclose(f) == 0 ? 0 : -1;
}

size_t colo_test_resident(const void *p, size_t npages)
{
	unsigned char *vec = malloc(npages ? npages : 1);
	size_t k = 0;

	ck_assert_ptr_nonnull(vec);
	ck_assert_int_eq(mincore((void *)p, npages * 4096, vec), 0);
	for (size_t i = 0; i < npages; i++)
		k += vec[i] & 1;
	free(vec);
	return k;
}

char *colo_test_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *dir;

	if (!base || !*base)
		base = "/tmp";
	if (asprintf(&dir, "%s/colo-test-XXXXXX", base) < 0)
		return NULL;
	if (!mkdtemp(dir)) {
		free(dir);
		return NULL;
	}
	return dir;
}

void colo_test_rmdir(char *dir)
{
	DIR *d;
	struct dirent *e;

	if (!dir)
		return;
	d = opendir(dir);
	while (d && (e = readdir(d))) {
		char *p;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (asprintf(&p, "%s/%s", dir, e->d_name) >= 0) {
			unlink(p);
			free(p);
		}
	}
	if (d)
		closedir(d);
	rmdir(dir);
	free(dir);
}
