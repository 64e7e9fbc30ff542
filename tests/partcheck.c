/*
 * partcheck.c: the checker of the partition test (tests/partition.sh,
 * docs/partition-test.md).  It reads what the clients were told (partclient
 * write logs), what the pair kept (partclient read files) and when each
 * node released output (the nodes' release logs, docs/partition-test.md),
 * and reports every way these disagree.
 *
 *   partcheck [--end NS] [--show N] [--client LOG]... [--release LOG]...
 *             [--readback FILE]...
 *
 * Reported:
 *   - lost acknowledged writes: a SET whose +OK came back, and whose key the
 *     read-back found missing or holding another value;
 *   - unread acknowledged writes: the same, whose key no read-back holds at
 *     all (the read-back did not happen or was cut short): nothing shows
 *     they were kept;
 *   - lost observed writes: a SET with no reply (outcome unknown) whose value
 *     a GET returned, missing in the read-back (a reply, the GET's, showed it);
 *   - contradicting reads: a GET that started after its key's SET was
 *     acknowledged and returned something else, or returned a value that no
 *     SET of that key wrote (another value, or one whose SET failed);
 *   - double-release windows: each (node, generation) pair of one release
 *     log serves from its first release event (ckpt, alone, open) to its
 *     last (ckpt, alone); an open lasts until the next close, stop or killed
 *     line of the same file, or to the end of the run (--end NS, else the
 *     latest time in any input).  Two periods of different pairs that share
 *     an instant are a window, reported with both periods and the overlap.
 * Times are printed as seconds after the earliest time in any input (t0,
 * printed in nanoseconds first).  The last line sums it up:
 *   partcheck: schedules S acknowledged A lost L observed-lost O
 *   contradictions C windows W unread U
 * Exit status: 0 when L, O, C, W and U are 0; 1 otherwise; 2 usage, a file
 * that cannot be read or a line that is not of its kind (named with
 * FILE:LINE).
 *
 * One thread; every string is owned by the key table or the period list
 * and freed at exit.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_BAD 1
#define EXIT_USAGE 2
#define WORDS 8

enum outcome { OUT_OK, OUT_FAIL, OUT_UNKNOWN };

struct write {
	char *key;                   /* NULL: free slot */
	char *value;                 /* written; NULL: only read, never written */
	char *readback;              /* NULL: not read back; "-": missing */
	uint64_t start, end;
	enum outcome how;
	bool observed;               /* an ok GET returned value */
};

struct get {
	char *key, *value;
	uint64_t start, end;
};

struct period {
	char *node, *gen, *file;
	uint64_t first, last, open_since;
	bool open, to_end;           /* an open pending; ran to the end of the run */
};

static struct {
	struct write *slot;
	size_t cap, used;
	struct get *gets;
	size_t n_gets, cap_gets;
	struct period *per;
	size_t n_per, cap_per;
	char **schedules;
	size_t n_schedules;
	uint64_t t_min, t_max;
	long show;
} g = { .t_min = UINT64_MAX, .show = 20 };

static void die(int status, const char *fmt, ...)
{
	va_list ap;

	fputs("partcheck: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return p;
	*cap = *cap ? *cap * 2 : 64;
	if (*cap < need)
		*cap = need;
	p = realloc(p, *cap * size);
	if (!p)
		die(EXIT_USAGE, "out of memory");
	return p;
}

static char *dup(const char *s)
{
	char *d = strdup(s);

	if (!d)
		die(EXIT_USAGE, "out of memory");
	return d;
}

static void saw_time(uint64_t t)
{
	if (t < g.t_min)
		g.t_min = t;
	if (t > g.t_max)
		g.t_max = t;
}

static double rel(uint64_t t)
{
	return t >= g.t_min ? (double)(t - g.t_min) / 1e9 : -(double)(g.t_min - t) / 1e9;
}

/* ---- the key table: open addressing, FNV-1a ---- */

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603u;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211u;
	return h;
}

static struct write *find(const char *key, bool add)
{
	size_t i;

	if (add && (g.used + 1) * 2 > g.cap) {
		struct write *old = g.slot;
		size_t old_cap = g.cap;

		g.cap = g.cap ? g.cap * 2 : 1024;
		g.slot = calloc(g.cap, sizeof(*g.slot));
		if (!g.slot)
			die(EXIT_USAGE, "out of memory");
		for (size_t k = 0; k < old_cap; k++) {
			if (!old[k].key)
				continue;
			for (i = hash(old[k].key) & (g.cap - 1); g.slot[i].key; i = (i + 1) & (g.cap - 1))
				;
			g.slot[i] = old[k];
		}
		free(old);
	}
	if (!g.cap)
		return NULL;
	for (i = hash(key) & (g.cap - 1); g.slot[i].key; i = (i + 1) & (g.cap - 1))
		if (strcmp(g.slot[i].key, key) == 0)
			return &g.slot[i];
	if (!add)
		return NULL;
	g.slot[i].key = dup(key);
	g.used++;
	return &g.slot[i];
}

/* ---- input ---- */

static int split(char *line, char **w)
{
	int n = 0;

	for (char *t = strtok(line, " \t\r\n"); t; t = strtok(NULL, " \t\r\n")) {
		if (n == WORDS)
			return WORDS + 1;
		w[n++] = t;
	}
	return n;
}

static bool parse_ns(const char *s, uint64_t *v)
{
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno == 0 && *end == '\0';
}

typedef void line_fn(const char *path, int lineno, char **w, int n);

static void each_line(const char *path, line_fn *fn)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, *w[WORDS];
	size_t cap = 0;
	int lineno = 0;

	if (!f)
		die(EXIT_USAGE, "%s: %s", path, strerror(errno));
	while (getline(&line, &cap, f) > 0) {
		int n;

		lineno++;
		n = split(line, w);
		if (n > 0)
			fn(path, lineno, w, n);
	}
	free(line);
	fclose(f);
}

static void client_line(const char *path, int lineno, char **w, int n)
{
	uint64_t t0, t1;
	enum outcome how;

	if (w[0][0] == '#') {
		if (n >= 3 && strcmp(w[1], "partclient") == 0 && strcmp(w[2], "schedule") == 0 &&
		    n >= 4) {
			for (size_t k = 0; k < g.n_schedules; k++)
				if (strcmp(g.schedules[k], w[3]) == 0)
					return;
			g.schedules = realloc(g.schedules, (g.n_schedules + 1) * sizeof(char *));
			if (!g.schedules)
				die(EXIT_USAGE, "out of memory");
			g.schedules[g.n_schedules++] = dup(w[3]);
		}
		return;
	}
	if (n != 6 || (strcmp(w[0], "set") != 0 && strcmp(w[0], "get") != 0) ||
	    !parse_ns(w[1], &t0) || !parse_ns(w[2], &t1) || t1 < t0)
		die(EXIT_USAGE, "%s:%d: not an operation of partclient write", path, lineno);
	if (strcmp(w[5], "ok") == 0)
		how = OUT_OK;
	else if (strcmp(w[5], "fail") == 0)
		how = OUT_FAIL;
	else if (strcmp(w[5], "unknown") == 0)
		how = OUT_UNKNOWN;
	else
		die(EXIT_USAGE, "%s:%d: outcome '%s' is not ok, fail or unknown", path, lineno, w[5]);
	saw_time(t0);
	saw_time(t1);
	if (w[0][0] == 's') {
		struct write *wr = find(w[3], true);

		if (wr->value)
			die(EXIT_USAGE, "%s:%d: key %s written twice", path, lineno, w[3]);
		wr->value = dup(w[4]);
		wr->start = t0;
		wr->end = t1;
		wr->how = how;
		return;
	}
	if (how != OUT_OK)
		return;              /* a GET with no answer tells nothing */
	g.gets = grow(g.gets, &g.cap_gets, g.n_gets + 1, sizeof(*g.gets));
	g.gets[g.n_gets++] = (struct get){ dup(w[3]), dup(w[4]), t0, t1 };
}

static void readback_line(const char *path, int lineno, char **w, int n)
{
	struct write *wr;

	if (w[0][0] == '#')
		return;
	if (n != 2)
		die(EXIT_USAGE, "%s:%d: not a line of partclient read", path, lineno);
	wr = find(w[0], true);
	free(wr->readback);
	wr->readback = dup(w[1]);
}

static struct period *period_of(const char *file, const char *node, const char *gen)
{
	for (size_t k = 0; k < g.n_per; k++) {
		struct period *p = &g.per[k];

		if (p->file == file && strcmp(p->node, node) == 0 && strcmp(p->gen, gen) == 0)
			return p;
	}
	g.per = grow(g.per, &g.cap_per, g.n_per + 1, sizeof(*g.per));
	g.per[g.n_per] = (struct period){ dup(node), dup(gen), (char *)file, UINT64_MAX, 0, 0,
					  false, false };
	return &g.per[g.n_per++];
}

static const char *release_file;   /* the file being read: periods point to it */

static void release_line(const char *path, int lineno, char **w, int n)
{
	const char *ev = n == 5 ? w[3] : "";
	struct period *p;
	uint64_t t, seq;

	if (w[0][0] == '#')
		return;
	if (n != 5 || !parse_ns(w[0], &t) || !parse_ns(w[4], &seq))
		die(EXIT_USAGE, "%s:%d: not a release-log line (WALL_NS NODE GEN EVENT SEQ)", path,
		    lineno);
	saw_time(t);
	if (strcmp(ev, "ckpt") == 0 || strcmp(ev, "alone") == 0 || strcmp(ev, "open") == 0) {
		p = period_of(release_file, w[1], w[2]);
		if (t < p->first)
			p->first = t;
		if (t > p->last)
			p->last = t;
		if (ev[0] == 'o' && !p->open) {
			p->open = true;
			p->open_since = t;
		}
		return;
	}
	if (strcmp(ev, "close") != 0 && strcmp(ev, "stop") != 0 && strcmp(ev, "killed") != 0)
		die(EXIT_USAGE, "%s:%d: unknown event '%s'", path, lineno, ev);
	/* Every open of this file ends here (one file per node incarnation). */
	for (size_t k = 0; k < g.n_per; k++) {
		p = &g.per[k];
		if (p->file != release_file || !p->open)
			continue;
		if (t > p->last)
			p->last = t;
		p->open = false;
	}
}

/* ---- judgement ---- */

static bool same(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

static uint64_t judge_writes(uint64_t *acked, uint64_t *observed_lost, uint64_t *unread)
{
	uint64_t lost = 0;

	*acked = 0;
	*observed_lost = 0;
	*unread = 0;
	for (size_t i = 0; i < g.cap; i++) {
		const struct write *wr = &g.slot[i];
		bool kept;

		if (!wr->key || !wr->value)
			continue;
		kept = same(wr->readback, wr->value);
		if (wr->how == OUT_OK) {
			(*acked)++;
			if (!wr->readback) {
				if ((*unread)++ < (uint64_t)g.show)
					printf("unread: %s = %s acknowledged at +%.3fs, in no read-back\n",
					       wr->key, wr->value, rel(wr->end));
			} else if (!kept && lost++ < (uint64_t)g.show) {
				printf("lost: %s = %s acknowledged at +%.3fs (sent +%.3fs), read back %s\n",
				       wr->key, wr->value, rel(wr->end), rel(wr->start),
				       strcmp(wr->readback, "-") == 0 ? "missing" : wr->readback);
			}
		} else if (wr->how == OUT_UNKNOWN && wr->observed && !kept) {
			if ((*observed_lost)++ < (uint64_t)g.show)
				printf("lost (observed): %s = %s sent at +%.3fs with no reply, seen by a "
				       "read, read back %s\n", wr->key, wr->value, rel(wr->start),
				       wr->readback ? wr->readback : "never");
		}
	}
	return lost;
}

static uint64_t judge_reads(void)
{
	uint64_t bad = 0;

	for (size_t i = 0; i < g.n_gets; i++) {
		const struct get *gt = &g.gets[i];
		struct write *wr = find(gt->key, false);
		const char *why = NULL;

		if (strcmp(gt->value, "-") != 0) {
			if (!wr || !wr->value)
				why = "a value no SET wrote";
			else if (!same(gt->value, wr->value))
				why = "another value than the one written";
			else if (wr->how == OUT_FAIL)
				why = "the value of a SET that failed";
			else
				wr->observed = true;
		}
		if (!why && wr && wr->value && wr->how == OUT_OK && wr->end < gt->start &&
		    !same(gt->value, wr->value))
			why = "not the value acknowledged before the read";
		if (why && bad++ < (uint64_t)g.show)
			printf("contradiction: GET %s at +%.3fs..+%.3fs returned %s: %s%s%s\n", gt->key,
			       rel(gt->start), rel(gt->end), gt->value, why,
			       wr && wr->value ? ", written " : "", wr && wr->value ? wr->value : "");
	}
	return bad;
}

static uint64_t judge_periods(uint64_t end)
{
	uint64_t windows = 0;

	for (size_t k = 0; k < g.n_per; k++) {
		struct period *p = &g.per[k];

		if (p->open) {
			p->to_end = true;
			if (end > p->last)
				p->last = end;
		}
		printf("period: node %s gen %s +%.3fs..+%.3fs%s (%s)\n", p->node, p->gen,
		       rel(p->first), rel(p->last), p->to_end ? " (open to the end)" : "",
		       p->file);
	}
	for (size_t i = 0; i < g.n_per; i++) {
		for (size_t j = i + 1; j < g.n_per; j++) {
			const struct period *a = &g.per[i], *b = &g.per[j];
			uint64_t from = a->first > b->first ? a->first : b->first;
			uint64_t to = a->last < b->last ? a->last : b->last;

			if (same(a->node, b->node) && same(a->gen, b->gen))
				continue;
			if (from > to)
				continue;
			windows++;
			printf("window: node %s gen %s (+%.3fs..+%.3fs) and node %s gen %s "
			       "(+%.3fs..+%.3fs) both released from +%.3fs to +%.3fs (%.1f ms)\n",
			       a->node, a->gen, rel(a->first), rel(a->last), b->node, b->gen,
			       rel(b->first), rel(b->last), rel(from), rel(to),
			       (double)(to - from) / 1e6);
		}
	}
	return windows;
}

static void usage(const char *why)
{
	if (why)
		fprintf(stderr, "partcheck: %s\n", why);
	fputs("usage: partcheck [--end NS] [--show N] [--client LOG]... [--release LOG]...\n"
	      "                 [--readback FILE]...\n", stderr);
	exit(EXIT_USAGE);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "client", required_argument, NULL, 'c' },
		{ "release", required_argument, NULL, 'r' },
		{ "readback", required_argument, NULL, 'b' },
		{ "end", required_argument, NULL, 'e' },
		{ "show", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t end = 0, acked, lost, observed_lost, bad_reads, windows, unread;
	int ch;

	/* Files are read in kind order whatever the command line's order. */
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': case 'r': case 'b': break;
		case 'e':
			if (!parse_ns(optarg, &end))
				usage("--end: nanoseconds");
			break;
		case 's': g.show = strtol(optarg, NULL, 10); break;
		default: usage(NULL);
		}
	}
	if (optind != argc)
		usage("unexpected arguments");
	for (int pass = 0; pass < 3; pass++) {
		optind = 1;
		while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
			if (pass == 0 && ch == 'c')
				each_line(optarg, client_line);
			if (pass == 1 && ch == 'b')
				each_line(optarg, readback_line);
			if (pass == 2 && ch == 'r') {
				release_file = optarg;
				each_line(optarg, release_line);
			}
		}
	}
	if (g.t_min == UINT64_MAX)
		g.t_min = g.t_max = 0;
	if (!end)
		end = g.t_max;
	printf("t0 %" PRIu64 " ns (the earliest time in the inputs); end of the run +%.3fs\n",
	       g.t_min, rel(end));
	bad_reads = judge_reads();
	lost = judge_writes(&acked, &observed_lost, &unread);
	windows = judge_periods(end);
	printf("partcheck: schedules %zu acknowledged %" PRIu64 " lost %" PRIu64 " observed-lost %"
	       PRIu64 " contradictions %" PRIu64 " windows %" PRIu64 " unread %" PRIu64 "\n",
	       g.n_schedules, acked, lost, observed_lost, bad_reads, windows, unread);

	for (size_t i = 0; i < g.cap; i++) {
		free(g.slot[i].key);
		free(g.slot[i].value);
		free(g.slot[i].readback);
	}
	free(g.slot);
	for (size_t i = 0; i < g.n_gets; i++) {
		free(g.gets[i].key);
		free(g.gets[i].value);
	}
	free(g.gets);
	for (size_t i = 0; i < g.n_per; i++) {
		free(g.per[i].node);
		free(g.per[i].gen);
	}
	free(g.per);
	for (size_t i = 0; i < g.n_schedules; i++)
		free(g.schedules[i]);
	free(g.schedules);
	return lost || observed_lost || bad_reads || windows || unread ? EXIT_BAD : 0;
}
