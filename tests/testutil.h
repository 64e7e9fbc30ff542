/*
 * testutil.h: what the Check suites share: the TAP runner, a seeded
 * random generator, splitting a buffer into pieces, and files.
 */
#ifndef COLO_TESTUTIL_H
#define COLO_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

/* Run the suite, TAP on stdout (automake's tap-driver reads it). */
int colo_test_main(Suite *s);

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

/* A fresh directory under $TMPDIR (or /tmp); the caller removes it. */
char *colo_test_tmpdir(void);
void colo_test_rmdir(char *dir);

#endif
