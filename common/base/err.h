/*
 * err.h: human-readable error reports for libcolo.
 *
 * Functions in common/ return 0 or a negative errno and, where the caller can
 * show it, fill a struct colo_err with one line that says what was wrong and
 * where (stream offset, field, expected vs got).  The first error set wins:
 * an inner function knows the precise cause, an outer one may only add
 * context in front of it with colo_err_prefix().
 *
 * A struct colo_err is a plain value owned by the caller; nothing here
 * allocates.  Not thread-safe: one colo_err per thread of work.
 */
#ifndef COLO_ERR_H
#define COLO_ERR_H

#include <stdbool.h>
#include <stddef.h>

#define COLO_ERR_MAX 512

struct colo_err {
	int code;                 /* positive errno, 0 while no error is set */
	char msg[COLO_ERR_MAX];
};

#define COLO_PRINTF(a, b) __attribute__((format(printf, a, b)))

void colo_err_clear(struct colo_err *e);

/* Set the error unless one is set already; returns -code for tail calls. */
int colo_err_set(struct colo_err *e, int code, const char *fmt, ...)
	COLO_PRINTF(3, 4);

/* Put "<context>: " in front of the message already set (no-op if none). */
void colo_err_prefix(struct colo_err *e, const char *fmt, ...) COLO_PRINTF(2, 3);

static inline bool colo_err_isset(const struct colo_err *e)
{
	return e->code != 0;
}

#endif
