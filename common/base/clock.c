/* clock.c: see clock.h. */
#include "config.h"

#include <stdio.h>
#include <uv.h>

#include "clock.h"

uint64_t colo_now_ns(void)
{
	return uv_hrtime();
}

uint64_t colo_thread_cpu_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * COLO_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

uint64_t colo_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * COLO_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

size_t colo_iso8601(uint64_t wall_ns, char *buf, size_t len)
{
	time_t s = (time_t)(wall_ns / COLO_NSEC_PER_SEC);
	struct tm tm;
	size_t n;
	int m;

	if (len == 0)
		return 0;
	if (gmtime_r(&s, &tm) &&
	    (n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm)) != 0 &&
	    (m = snprintf(buf + n, len - n, ".%03uZ",
			  (unsigned)(wall_ns / COLO_NSEC_PER_MS % 1000u))) > 0 &&
	    (size_t)m < len - n)
		return n + (size_t)m;
	buf[0] = '\0';
	return 0;
}
