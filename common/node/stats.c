/* stats.c: see stats.h. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "stats.h"

static const char *const names[COLO_PHASES] = {
	"pause", "sync", "copy", "resume", "encode", "send", "ack", "round-trip",
	"decode", "load", "commit",
};

static const char *const causes[COLO_CAUSES] = {
	"interval", "output", "request", "mismatch", "timeout", "uncompared",
};

const char *colo_ckpt_cause_name(enum colo_ckpt_cause c)
{
	return (unsigned)c < COLO_CAUSES ? causes[c] : "unknown";
}

const char *colo_phase_name(enum colo_phase p)
{
	return (unsigned)p < COLO_PHASES ? names[p] : "unknown";
}

void colo_stats_init(struct colo_stats *s)
{
	memset(s, 0, sizeof(*s));
}

/* 100 µs to 10 s, 1-2.5-5 steps: a checkpoint phase is 10 µs (resume) to
 * seconds (a big sync's round trip). */
const uint32_t colo_stats_bucket_us[COLO_STATS_BUCKETS - 1] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000,
};

void colo_stats_phase(struct colo_stats *s, enum colo_phase p, uint64_t ns)
{
	struct colo_phase_ring *r = &s->phases[p];
	uint64_t us = ns / 1000;
	int b = 0;

	r->us[r->next] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
	r->next = (r->next + 1) % COLO_STATS_SAMPLES;
	if (r->n < COLO_STATS_SAMPLES)
		r->n++;
	r->total++;
	r->sum_us += us;
	while (b < COLO_STATS_BUCKETS - 1 && us > colo_stats_bucket_us[b])
		b++;
	r->buckets[b]++;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

void colo_stats_percentiles(const struct colo_stats *s, enum colo_phase p,
			    double *p50, double *p99, uint64_t *count)
{
	const struct colo_phase_ring *r = &s->phases[p];
	uint32_t sorted[COLO_STATS_SAMPLES];

	*count = r->total;
	if (r->n == 0) {
		*p50 = *p99 = 0;
		return;
	}
	memcpy(sorted, r->us, r->n * sizeof(sorted[0]));
	qsort(sorted, r->n, sizeof(sorted[0]), cmp_u32);
	/* Nearest rank. */
	*p50 = sorted[(r->n * 50 + 99) / 100 - 1];
	*p99 = sorted[(r->n * 99 + 99) / 100 - 1];
}

void colo_stats_checkpoint(struct colo_stats *s, uint64_t now_ns, uint64_t pages,
			   uint64_t bytes)
{
	if (pages > s->ckpt_pages_max)
		s->ckpt_pages_max = pages;
	s->recent[s->recent_next].t_ns = now_ns;
	s->recent[s->recent_next].pages = pages;
	s->recent[s->recent_next].bytes = bytes;
	s->recent_next = (s->recent_next + 1) % COLO_STATS_RATE_WINDOW;
	if (s->recent_n < COLO_STATS_RATE_WINDOW)
		s->recent_n++;
}

void colo_stats_rates(const struct colo_stats *s, uint64_t now_ns, double *pages_per_s,
		      double *bytes_per_s)
{
	uint64_t oldest = now_ns, pages = 0, bytes = 0;

	*pages_per_s = *bytes_per_s = 0;
	for (uint32_t i = 0; i < s->recent_n; i++) {
		uint32_t k = (s->recent_next + COLO_STATS_RATE_WINDOW - 1 - i) %
			     COLO_STATS_RATE_WINDOW;

		if (now_ns - s->recent[k].t_ns > 5000000000ull)
			break;
		oldest = s->recent[k].t_ns;
		pages += s->recent[k].pages;
		bytes += s->recent[k].bytes;
	}
	/* Span from the oldest sample to now; at least one interval long. */
	if (pages || bytes) {
		double span = (double)(now_ns - oldest) / 1e9;

		if (span < 0.001)
			span = 0.001;
		*pages_per_s = (double)pages / span;
		*bytes_per_s = (double)bytes / span;
	}
}
