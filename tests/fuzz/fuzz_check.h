/*
 * fuzz_check.h: how a fuzz target reports a broken promise: one message
 * naming the file, line and condition, then abort(), which makes libFuzzer
 * keep the input (and standalone.c report it as "not ok").  And whether
 * FUZZ_VERBOSE is set, for targets that say what each run concluded.
 */
#ifndef COLO_FUZZ_CHECK_H
#define COLO_FUZZ_CHECK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

static inline void fuzz_fail(const char *file, int line, const char *cond,
			     const char *fmt, ...)
	__attribute__((noreturn, format(printf, 4, 5)));

static inline void fuzz_fail(const char *file, int line, const char *cond,
			     const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s:%d: broken promise: %s\n  ", file, line, cond);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

#define CHECK(cond, ...) do {                                                 \
	if (!(cond))                                                          \
		fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);            \
} while (0)

/* FUZZ_VERBOSE in the environment: say what each run concluded (triage). */
static inline bool fuzz_verbose(void)
{
	static int v = -1;

	if (v < 0)
		v = getenv("FUZZ_VERBOSE") != NULL;
	return v;
}

#endif
