/*
 * testutil.h: what the Check suites share: the TAP runner (with skips), a
 * seeded random generator and where its seed comes from, waiting on a
 * condition with a deadline, splitting a buffer into pieces, and files.
 *
 * Skips: Check knows only pass and fail, and runs each test in a forked
 * child, so a skip travels back as a failure whose message starts with
 * COLO_TEST_SKIP_MARK; colo_test_main() turns exactly those into TAP
 * "ok N - name # SKIP why" lines (automake's tap-driver counts them as
 * SKIP) and every other failure stays a failure.  A whole program that
 * cannot run calls colo_test_skip_all(): "1..0 # SKIP why", exit 0 (the
 * tap-driver reads a skipped plan; it takes exit 77 for an error).
 *
 * Seeds: a test that draws random numbers takes its seed from
 * colo_test_seed(), which prints it as a TAP diagnostic ("# seed ...") and
 * lets COLO_TEST_SEED in the environment replace it, to replay a failure.
 *
 * Nothing here is thread-safe except colo_rng on separate structs.
 */
#ifndef COLO_TESTUTIL_H
#define COLO_TESTUTIL_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Run the suite, TAP on stdout (automake's tap-driver reads it). */
int colo_test_main(Suite *s);

/* Skip the running test (does not return): "ok N - name # SKIP why".
 * The first argument must be a string literal (a printf format). */
#define COLO_TEST_SKIP_MARK "colo-test-skip: "
#define colo_test_skip(...) ck_abort_msg(COLO_TEST_SKIP_MARK __VA_ARGS__)

/* The whole program cannot run here: a skipped TAP plan, exit 0. */
void colo_test_skip_all(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * The seed for `what`: $COLO_TEST_SEED when set (a number, decimal or 0x
 * hex), else `dflt`.  Printed to stderr as "# seed WHAT: N" so the TAP log
 * of a failure says how to replay it.  colo_test_seed_random() is the same
 * with a default that differs from run to run (pid and clock).
 */
uint64_t colo_test_seed(const char *what, uint64_t dflt);
uint64_t colo_test_seed_random(const char *what);
/* colo_test_seed() named after the calling function (a test). */
#define COLO_TEST_SEED(dflt) colo_test_seed(__func__, (dflt))

/* Poll every 5 ms until cond(ud) or ms pass; returns cond's last value. */
bool colo_test_wait(bool (*cond)(void *ud), void *ud, int ms);

/* splitmix64: small, seedable, good enough for test data. */
struct colo_rng {
	uint64_t s;
};

uint64_t colo_rng_next(struct colo_rng *r);
uint64_t colo_rng_below(struct colo_rng *r, uint64_t n);   /* [0, n) */
void colo_rng_fill(struct colo_rng *r, void *p, size_t n);

/* Piece sizes for feeding a reader: fixed, or random in [1, max]. */
struct colo_pieces {
	size_t fixed;          /* 0: random */
	size_t max;
	struct colo_rng rng;
};

size_t colo_pieces_next(void *pieces);

/* Read a whole file into malloc'd memory; NULL on error. */
uint8_t *colo_test_read_file(const char *path, size_t *len);
int colo_test_write_file(const char *path, const void *data, size_t len);

/* How many of the npages pages from p (page-aligned) are resident (mincore). */
size_t colo_test_resident(const void *p, size_t npages);

/* A fresh directory under $TMPDIR (or /tmp); the caller removes it. */
char *colo_test_tmpdir(void);
void colo_test_rmdir(char *dir);

#endif
