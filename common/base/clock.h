/*
 * clock.h: time as colo reads and writes it.  The monotonic clock that
 * every timeout, interval and measurement uses (libuv's, so the loop's
 * timers and our own readings agree), the wall clock that is only shown to
 * people and stored in records, and the one way a wall time is written:
 * ISO 8601 in UTC with milliseconds, as the logs and colo-replay print it.
 *
 * On Linux the monotonic clock is CLOCK_MONOTONIC, so a reading converted
 * with colo_mono_timespec() is an absolute deadline for
 * clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, ...) or for
 * pthread_cond_timedwait() on a condition variable whose clock attribute
 * is CLOCK_MONOTONIC.
 *
 * No state, nothing allocated; every function is thread-safe.
 */
#ifndef COLO_CLOCK_H
#define COLO_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define COLO_NSEC_PER_SEC 1000000000ull
#define COLO_NSEC_PER_MS 1000000ull

/* Nanoseconds on the monotonic clock (uv_hrtime()). */
uint64_t colo_now_ns(void);

/* CPU time the calling thread has used, in nanoseconds. */
uint64_t colo_thread_cpu_ns(void);

static inline uint64_t colo_now_ms(void)
{
	return colo_now_ns() / COLO_NSEC_PER_MS;
}

/* A monotonic reading as a struct timespec (an absolute deadline). */
static inline struct timespec colo_mono_timespec(uint64_t ns)
{
	struct timespec ts = {
		.tv_sec = (time_t)(ns / COLO_NSEC_PER_SEC),
		.tv_nsec = (long)(ns % COLO_NSEC_PER_SEC),
	};

	return ts;
}

/* Nanoseconds since the epoch (CLOCK_REALTIME): for people and records. */
uint64_t colo_wall_ns(void);

/* "2024-05-01T12:34:56.789Z" and its NUL. */
#define COLO_ISO8601_MAX 32

/*
 * Write wall time `wall_ns` as ISO 8601 UTC with milliseconds into buf.
 * Returns its length, or 0 (buf "") when it does not fit or the time
 * cannot be represented.
 */
size_t colo_iso8601(uint64_t wall_ns, char *buf, size_t len);

#endif
