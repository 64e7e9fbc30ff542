/*
 * progress.c: colo-replay's progress line (see progress.h).
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "clock.h"
#include "progress.h"

#define REDRAW_NS 100000000ull

void colo_progress_init(struct colo_progress *p, bool on, FILE *out)
{
	memset(p, 0, sizeof(*p));
	p->on = on;
	p->out = out;
}

static void erase(struct colo_progress *p)
{
	if (p->drawn) {
		fprintf(p->out, "\r%*s\r", p->drawn, "");
		fflush(p->out);
		p->drawn = 0;
	}
}

/* "812 B", "49.1 KiB", "460.0 MiB", "1.2 GiB" */
static void size_text(uint64_t v, char *out, size_t len)
{
	if (v < 1024)
		snprintf(out, len, "%" PRIu64 " B", v);
	else if (v < (1u << 20))
		snprintf(out, len, "%.1f KiB", (double)v / 1024);
	else if (v < (1u << 30))
		snprintf(out, len, "%.1f MiB", (double)v / 1048576);
	else
		snprintf(out, len, "%.1f GiB", (double)v / 1073741824);
}

void colo_progress_cb(void *ud, const char *what, uint64_t done, uint64_t total)
{
	struct colo_progress *p = ud;
	uint64_t now = colo_now_ns();
	double secs, rate;
	char line[160], d[32], t[32];
	int n;

	if (!p || !p->on || (p->pinned && strcmp(p->pinned, what) != 0))
		return;
	if (strcmp(p->what, what) != 0) {
		snprintf(p->what, sizeof(p->what), "%s", what);
		p->t0_ns = now;
		p->last_ns = 0;
	}
	/* The first of a phase, then ten a second, and the last. */
	if (p->last_ns && now - p->last_ns < REDRAW_NS && done < total)
		return;
	p->last_ns = now;
	secs = (double)(now - p->t0_ns) / 1e9;
	/* A rate needs some time behind it. */
	rate = secs > 0.05 ? (double)done / secs : 0;
	size_text(done, d, sizeof(d));
	size_text(total, t, sizeof(t));
	n = snprintf(line, sizeof(line), "%s: %3.0f%%  %s of %s", what,
		     total ? 100.0 * (double)done / (double)total : 100.0, d, t);
	if (rate > 0 && n > 0 && (size_t)n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - (size_t)n, "  %.0f MB/s  ETA %.0f s",
			      rate / 1e6, done < total ? (double)(total - done) / rate : 0.0);
	if (n < 0)
		return;
	fprintf(p->out, "\r%s%*s", line, p->drawn > n ? p->drawn - n : 0, "");
	fflush(p->out);
	p->drawn = n > p->drawn ? n : p->drawn;
}

void colo_progress_end(struct colo_progress *p)
{
	if (p && p->on)
		erase(p);
}
