/*
 * vmnet_writer.c: the writer of the VM output-commit tests and bench
 * (issue 19): clients that write to a Redis server over TCP, record what was
 * acknowledged, and later check that all of it is still there.  It talks to
 * the server only through its address, so it sees what any client of a VM
 * sees: replies that arrive, connections that stall, break or reset.
 *
 *   vmnet-writer write --host H --port P --out FILE [--clients N]
 *                      [--timeout-ms MS] [--prefix W] [--verbose]
 *   vmnet-writer check --host H --port P --in FILE [--timeout-ms MS]
 *
 * write: N client threads (default 4), each with one connection, loop
 *   SET W:C:i i then INCR W:C:n (C the client from 0, i = 1, 2, ...; W the
 *   prefix, default "w").  A SET counts as acknowledged once its +OK came
 *   back, an INCR once its integer did.  A connection that fails (error,
 *   EOF, no reply within MS, default 60000, long enough for TCP to
 *   retransmit across a failover) is counted as a reconnect; the client
 *   connects again (every 100 ms until it can) and goes on with the next i.
 *   The command in flight when it failed may or may not have been applied:
 *   such SETs are listed in inflight_i, such INCRs counted in inflight_incr.
 *   A SET refused with an error reply was not applied: the same i is sent
 *   again.  Refusals and replies of the wrong kind or value are counted as
 *   errors.  Keys with the prefix must not exist yet (pick another --prefix
 *   to write to the same server twice).  SIGTERM or SIGINT stops it: each
 *   thread ends after its current command (at most MS), then FILE is
 *   written (through FILE.tmp and a rename):
 *       prefix W
 *       client C acked_sets S acked_incr V reconnects R errors E inflight_i I inflight_incr K rolled_back B jumped J
 *       ...
 *       total clients N sets A incrs B reconnects R errors E inflight U seconds T
 *   S is the highest i acknowledged, V the highest INCR value acknowledged,
 *   I "0" or the comma-separated i's in flight at a failure, K the INCRs in
 *   flight at a failure since the last acknowledged one (the counter may be
 *   up to V + K); B the acknowledged INCRs that the server forgot while the
 *   writer wrote (an INCR answered with a value at or below the last one
 *   acknowledged: the counter went back), J the INCRs nobody sent that it
 *   counted (an answer above the last by more than the ones in flight + 1);
 *   A and B count acknowledged SETs and INCRs.  On stdout: a
 *   line per lost connection and per error (what came back), one summary
 *   line at the end and, with --verbose, progress every second.
 *
 * check: reads FILE back from the server (MGET in batches of 1000,
 *   pipelined) and prints one line:
 *       acknowledged N, lost L, extra X, reconnects R
 *   N: acknowledged SETs.  L: acknowledged SETs whose key is missing or
 *   wrong, plus counters below their acknowledged value, plus every B.
 *   X: writes nobody made: the key after the last i sent, or one in flight
 *   holding another value, or a counter above V + K (keys further on are
 *   not read), plus every J.  R: the writer's reconnects.  Each loss or extra is described on stderr (the
 *   first 10 of each).
 *
 * Exit status: write: 0 FILE written; 2 usage, no connection at the start,
 * keys of the prefix exist, FILE not written.  check: 0 when L and X are 0;
 * 1 when not; 2 usage, unreadable FILE, no connection or no reply.
 *
 * Each thread owns its connection and its record; main reads the records
 * after joining the threads (the atomics are for --verbose progress only).
 * SIGTERM/SIGINT are blocked in every thread and taken by main with
 * sigtimedwait, so no code runs in a signal handler.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXIT_BAD 1           /* check: something lost or invented */
#define EXIT_USAGE 2         /* usage, connection, file */
#define MAX_CLIENTS 256
#define BATCH 1000           /* keys per MGET */
#define WINDOW 8             /* MGETs in flight at once */
#define SHOW 10              /* losses (extras) described on stderr */
#define KEYLEN 96

struct opts {
	const char *host;
	int port;
	int clients;
	const char *file;
	long timeout_ms;
	const char *prefix;
	bool verbose;
	bool write_opts;             /* --clients, --prefix or --verbose given */
};

struct client {
	int id;
	const struct opts *o;
	redisContext *c;
	pthread_t th;
	uint64_t acked_set;          /* highest i whose SET was acknowledged */
	long long acked_incr;        /* highest INCR value acknowledged */
	long long last_incr;         /* the last one, to judge the next */
	uint64_t incr_open;          /* INCRs in flight at a failure since */
	uint64_t *inflight;          /* SETs in flight at a failure, rising */
	size_t n_inflight, cap_inflight;
	uint64_t errors;
	uint64_t rolled_back;        /* acknowledged INCRs the counter lost */
	uint64_t jumped;             /* INCRs it counted that nobody sent */
	bool no_memory;
	atomic_uint_fast64_t sets, incrs, reconnects;
};

static atomic_bool stopping;
static double t_start;             /* when the clients started */

static void die(int status, const char *fmt, ...)
{
	va_list ap;

	fputs("vmnet-writer: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* A connection with MS on connect and on every reply; NULL and why. */
static redisContext *connect_to(const struct opts *o, char *why, size_t len)
{
	struct timeval tv = { o->timeout_ms / 1000, (o->timeout_ms % 1000) * 1000 };
	redisContext *c = redisConnectWithTimeout(o->host, o->port, tv);

	if (!c || c->err || redisSetTimeout(c, tv) != REDIS_OK) {
		snprintf(why, len, "cannot connect to %s:%d: %s", o->host, o->port,
			 c ? c->errstr : "out of memory");
		if (c)
			redisFree(c);
		return NULL;
	}
	return c;
}

/* ---- write ---- */

static void note_inflight(struct client *cl, uint64_t i)
{
	if (cl->n_inflight == cl->cap_inflight) {
		size_t cap = cl->cap_inflight ? cl->cap_inflight * 2 : 16;
		uint64_t *p = realloc(cl->inflight, cap * sizeof(*p));

		if (!p) {
			/* Not recorded, so check would call it lost: say so. */
			cl->no_memory = true;
			return;
		}
		cl->inflight = p;
		cl->cap_inflight = cap;
	}
	cl->inflight[cl->n_inflight++] = i;
}

/* The connection failed: drop it and connect again (false: stopping). */
static bool reconnect(struct client *cl, const char *doing)
{
	char why[200];
	double t0 = now_s();

	/* hiredis words a reply that did not come in time as EAGAIN. */
	printf("t=%.1f client %d: connection lost during %s: %s\n", t0 - t_start, cl->id,
	       doing, strcmp(cl->c->errstr, strerror(EAGAIN)) == 0 ? "no reply in time" :
	       cl->c->errstr);
	fflush(stdout);
	redisFree(cl->c);
	cl->c = NULL;
	atomic_fetch_add(&cl->reconnects, 1);
	while (!atomic_load(&stopping)) {
		cl->c = connect_to(cl->o, why, sizeof(why));
		if (cl->c) {
			printf("t=%.1f client %d: reconnected after %.2f s\n", now_s() - t_start,
			       cl->id, now_s() - t0);
			fflush(stdout);
			return true;
		}
		nap_ms(100);
	}
	return false;
}

/* An error counted: say what came back, and to which command. */
static void note_error(struct client *cl, const char *cmd, const redisReply *r,
		       const char *why)
{
	cl->errors++;
	if (r->type == REDIS_REPLY_INTEGER)
		printf("t=%.1f client %d: %s: %s: %lld (the last was %lld, %" PRIu64
		       " in flight)\n", now_s() - t_start, cl->id, cmd, why, r->integer,
		       cl->last_incr, cl->incr_open);
	else
		printf("t=%.1f client %d: %s: %s: reply type %d \"%.*s\"\n", now_s() - t_start,
		       cl->id, cmd, why, r->type, r->str ? (int)(r->len < 120 ? r->len : 120) : 0,
		       r->str ? r->str : "");
	fflush(stdout);
}

static bool is_ok(const redisReply *r)
{
	return r->type == REDIS_REPLY_STATUS && r->str && strcmp(r->str, "OK") == 0;
}

static void *client_main(void *arg)
{
	struct client *cl = arg;
	char key[KEYLEN], val[32], ctr[KEYLEN];
	uint64_t i = 1;

	snprintf(ctr, sizeof(ctr), "%s:%d:n", cl->o->prefix, cl->id);
	while (!atomic_load(&stopping)) {
		redisReply *r;

		snprintf(key, sizeof(key), "%s:%d:%" PRIu64, cl->o->prefix, cl->id, i);
		snprintf(val, sizeof(val), "%" PRIu64, i);
		r = redisCommand(cl->c, "SET %s %s", key, val);
		if (!r) {
			note_inflight(cl, i++);
			if (!reconnect(cl, "SET"))
				break;
			continue;
		}
		if (!is_ok(r)) {
			/* Refused, so not applied: the same i again, not too fast. */
			note_error(cl, "SET", r, "not +OK");
			freeReplyObject(r);
			nap_ms(100);
			continue;
		}
		freeReplyObject(r);
		cl->acked_set = i++;
		atomic_fetch_add(&cl->sets, 1);

		r = redisCommand(cl->c, "INCR %s", ctr);
		if (!r) {
			cl->incr_open++;
			if (!reconnect(cl, "INCR"))
				break;
			continue;
		}
		if (r->type != REDIS_REPLY_INTEGER) {
			note_error(cl, "INCR", r, "not an integer");
		} else {
			/* One more than the last, or more by the ones in flight:
			 * at or below it, acknowledged INCRs were undone (a
			 * rollback past what a client was told). */
			if (r->integer <= cl->last_incr) {
				cl->rolled_back += (uint64_t)(cl->last_incr - r->integer + 1);
				note_error(cl, "INCR", r, "rolled back");
			} else if ((uint64_t)(r->integer - cl->last_incr) > cl->incr_open + 1) {
				cl->jumped += (uint64_t)(r->integer - cl->last_incr) -
					      (cl->incr_open + 1);
				note_error(cl, "INCR", r, "out of step");
			}
			cl->last_incr = r->integer;
			if (r->integer > cl->acked_incr)
				cl->acked_incr = r->integer;
			cl->incr_open = 0;
			atomic_fetch_add(&cl->incrs, 1);
		}
		freeReplyObject(r);
	}
	return NULL;
}

/* Refuse a prefix already used on this server: its keys would look extra. */
static void check_fresh(redisContext *c, const struct opts *o)
{
	const char *argv[1 + 2 * MAX_CLIENTS];
	char keys[2 * MAX_CLIENTS][KEYLEN];
	char why[200] = "";
	int argc = 0;
	redisReply *r;

	argv[argc++] = "EXISTS";
	for (int i = 0; i < o->clients; i++) {
		snprintf(keys[2 * i], KEYLEN, "%s:%d:1", o->prefix, i);
		snprintf(keys[2 * i + 1], KEYLEN, "%s:%d:n", o->prefix, i);
		argv[argc++] = keys[2 * i];
		argv[argc++] = keys[2 * i + 1];
	}
	r = redisCommandArgv(c, argc, argv, NULL);
	if (!r)
		die(EXIT_USAGE, "EXISTS on %s:%d: %s", o->host, o->port, c->errstr);
	if (r->type != REDIS_REPLY_INTEGER)
		snprintf(why, sizeof(why), "EXISTS on %s:%d: %s", o->host, o->port,
			 r->str ? r->str : "not an integer");
	else if (r->integer != 0)
		snprintf(why, sizeof(why), "keys with prefix '%s' exist on %s:%d already: "
			 "use another --prefix", o->prefix, o->host, o->port);
	freeReplyObject(r);
	if (why[0])
		die(EXIT_USAGE, "%s", why);
}

struct totals {
	uint64_t sets, incrs, reconnects;
};

static struct totals totals(struct client *cls, int n)
{
	struct totals t = { 0, 0, 0 };

	for (int i = 0; i < n; i++) {
		t.sets += atomic_load(&cls[i].sets);
		t.incrs += atomic_load(&cls[i].incrs);
		t.reconnects += atomic_load(&cls[i].reconnects);
	}
	return t;
}

static void write_file(const struct opts *o, struct client *cls, double secs)
{
	char tmp[4096];
	uint64_t errors = 0, inflight = 0;
	struct totals t = totals(cls, o->clients);
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", o->file) >= (int)sizeof(tmp))
		die(EXIT_USAGE, "%s: name too long", o->file);
	f = fopen(tmp, "w");
	if (!f)
		die(EXIT_USAGE, "%s: %s", tmp, strerror(errno));
	fprintf(f, "prefix %s\n", o->prefix);
	for (int i = 0; i < o->clients; i++) {
		struct client *cl = &cls[i];

		fprintf(f, "client %d acked_sets %" PRIu64 " acked_incr %lld reconnects %" PRIu64
			" errors %" PRIu64 " inflight_i ", cl->id, cl->acked_set, cl->acked_incr,
			(uint64_t)atomic_load(&cl->reconnects), cl->errors);
		if (cl->n_inflight == 0)
			fputc('0', f);
		for (size_t k = 0; k < cl->n_inflight; k++)
			fprintf(f, "%s%" PRIu64, k ? "," : "", cl->inflight[k]);
		fprintf(f, " inflight_incr %" PRIu64 " rolled_back %" PRIu64 " jumped %" PRIu64
			"\n", cl->incr_open, cl->rolled_back, cl->jumped);
		errors += cl->errors;
		inflight += cl->n_inflight + cl->incr_open;
	}
	fprintf(f, "total clients %d sets %" PRIu64 " incrs %" PRIu64 " reconnects %" PRIu64
		" errors %" PRIu64 " inflight %" PRIu64 " seconds %.2f\n", o->clients,
		t.sets, t.incrs, t.reconnects, errors, inflight, secs);
	if (fflush(f) != 0 || ferror(f)) {
		int e = errno;

		fclose(f);
		die(EXIT_USAGE, "%s: %s", tmp, strerror(e));
	}
	fclose(f);
	if (rename(tmp, o->file) != 0)
		die(EXIT_USAGE, "rename %s to %s: %s", tmp, o->file, strerror(errno));
}

static int run_write(const struct opts *o)
{
	struct client *cls = calloc((size_t)o->clients, sizeof(*cls));
	sigset_t sigs;
	double t0, t1, last = 0;
	uint64_t errors = 0, inflight = 0;
	struct totals t;
	char why[200];
	int err;

	if (!cls)
		die(EXIT_USAGE, "out of memory");
	/* Blocked here, inherited by the threads, taken by sigtimedwait. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	/* A write to a connection the peer reset must fail, not kill us. */
	signal(SIGPIPE, SIG_IGN);

	for (int i = 0; i < o->clients; i++) {
		cls[i].id = i;
		cls[i].o = o;
		cls[i].c = connect_to(o, why, sizeof(why));
		if (!cls[i].c)
			die(EXIT_USAGE, "%s", why);
	}
	check_fresh(cls[0].c, o);
	t0 = now_s();
	t_start = t0;
	for (int i = 0; i < o->clients; i++) {
		err = pthread_create(&cls[i].th, NULL, client_main, &cls[i]);
		if (err)
			die(EXIT_USAGE, "pthread_create: %s", strerror(err));
	}
	for (;;) {
		struct timespec ts = { 1, 0 };
		int sig = sigtimedwait(&sigs, NULL, &ts);

		if (sig == SIGTERM || sig == SIGINT)
			break;
		if (o->verbose && now_s() - last >= 1.0) {
			last = now_s();
			t = totals(cls, o->clients);
			printf("t=%.1f acked=%" PRIu64 " reconnects=%" PRIu64 "\n", last - t0,
			       t.sets, t.reconnects);
			fflush(stdout);
		}
	}
	atomic_store(&stopping, true);
	for (int i = 0; i < o->clients; i++)
		pthread_join(cls[i].th, NULL);
	t1 = now_s();

	write_file(o, cls, t1 - t0);
	t = totals(cls, o->clients);
	for (int i = 0; i < o->clients; i++) {
		errors += cls[i].errors;
		inflight += cls[i].n_inflight + cls[i].incr_open;
		if (cls[i].no_memory)
			fprintf(stderr, "vmnet-writer: client %d: out of memory recording a SET "
				"in flight: check will count it as lost\n", i);
	}
	printf("clients %d: %" PRIu64 " SETs and %" PRIu64 " INCRs acknowledged in %.2f s "
	       "(%.0f SETs/s), reconnects %" PRIu64 ", errors %" PRIu64 ", in flight at a "
	       "failure %" PRIu64 "\n", o->clients, t.sets, t.incrs, t1 - t0,
	       t1 > t0 ? (double)t.sets / (t1 - t0) : 0.0, t.reconnects, errors, inflight);
	for (int i = 0; i < o->clients; i++) {
		if (cls[i].c)
			redisFree(cls[i].c);
		free(cls[i].inflight);
	}
	free(cls);
	return 0;
}

/* ---- check ---- */

struct record {
	int id;
	uint64_t acked_set, reconnects, incr_open, rolled_back, jumped;
	long long acked_incr;
	uint64_t *inflight;          /* rising, as written */
	size_t n_inflight;
};

struct tally {
	uint64_t acked, lost, extra, reconnects;
};

static bool parse_u64(const char *s, uint64_t *v)
{
	char *end;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno == 0 && *end == '\0';
}

/* "0" or "i,i,...": the SETs in flight at a failure. */
static bool parse_inflight(char *s, struct record *rec)
{
	char *save, *tok;
	size_t n = 1;
	uint64_t v;

	if (strcmp(s, "0") == 0)
		return true;
	for (const char *p = s; *p; p++)
		n += *p == ',';
	rec->inflight = malloc(n * sizeof(uint64_t));
	if (!rec->inflight)
		return false;
	for (tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!parse_u64(tok, &v) || v == 0 ||
		    (rec->n_inflight && v <= rec->inflight[rec->n_inflight - 1]))
			return false;
		rec->inflight[rec->n_inflight++] = v;
	}
	return rec->n_inflight > 0;
}

/* One "client ..." line into rec; false if it is not one. */
static bool parse_client(char *line, struct record *rec)
{
	char *tok[18], *save, *t;
	int n = 0;
	uint64_t v;
	unsigned seen = 0;

	for (t = strtok_r(line, " \n", &save); t && n < 18; t = strtok_r(NULL, " \n", &save))
		tok[n++] = t;
	if (n != 18 || t || strcmp(tok[0], "client") != 0 || !parse_u64(tok[1], &v) ||
	    v >= MAX_CLIENTS)
		return false;
	rec->id = (int)v;
	for (int k = 2; k < n; k += 2) {
		const char *name = tok[k];

		if (strcmp(name, "inflight_i") == 0) {
			if (!parse_inflight(tok[k + 1], rec))
				return false;
			seen |= 1u << 0;
			continue;
		}
		if (!parse_u64(tok[k + 1], &v))
			return false;
		if (strcmp(name, "acked_sets") == 0)
			rec->acked_set = v, seen |= 1u << 1;
		else if (strcmp(name, "acked_incr") == 0 && v <= (uint64_t)INT64_MAX)
			rec->acked_incr = (long long)v, seen |= 1u << 2;
		else if (strcmp(name, "reconnects") == 0)
			rec->reconnects = v, seen |= 1u << 3;
		else if (strcmp(name, "errors") == 0)
			seen |= 1u << 4;
		else if (strcmp(name, "inflight_incr") == 0)
			rec->incr_open = v, seen |= 1u << 5;
		else if (strcmp(name, "rolled_back") == 0)
			rec->rolled_back = v, seen |= 1u << 6;
		else if (strcmp(name, "jumped") == 0)
			rec->jumped = v, seen |= 1u << 7;
		else
			return false;
	}
	return seen == 0xff;
}

/* FILE's records; prefix gets its prefix (64 bytes). */
static struct record *read_file(const char *path, char *prefix, int *n)
{
	FILE *f = fopen(path, "r");
	struct record *recs = NULL;
	char *line = NULL;
	size_t cap = 0;
	int lineno = 0, count = 0;

	if (!f)
		die(EXIT_USAGE, "%s: %s", path, strerror(errno));
	prefix[0] = '\0';
	while (getline(&line, &cap, f) > 0) {
		lineno++;
		if (strncmp(line, "prefix ", 7) == 0) {
			if (sscanf(line + 7, "%63s", prefix) != 1)
				die(EXIT_USAGE, "%s:%d: no prefix", path, lineno);
			continue;
		}
		if (strncmp(line, "total ", 6) == 0)
			continue;
		recs = realloc(recs, (size_t)(count + 1) * sizeof(*recs));
		if (!recs)
			die(EXIT_USAGE, "out of memory");
		memset(&recs[count], 0, sizeof(*recs));
		if (!parse_client(line, &recs[count]))
			die(EXIT_USAGE, "%s:%d: not a client line of vmnet-writer write", path,
			    lineno);
		count++;
	}
	free(line);
	fclose(f);
	if (!prefix[0] || count == 0)
		die(EXIT_USAGE, "%s: no prefix line or no client line: not written by "
		    "vmnet-writer write", path);
	*n = count;
	return recs;
}

static bool in_flight(const struct record *rec, uint64_t i)
{
	size_t lo = 0, hi = rec->n_inflight;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (rec->inflight[mid] == i)
			return true;
		if (rec->inflight[mid] < i)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* The next pipelined reply, which must be an array. */
static redisReply *get_array(redisContext *c, const char *what)
{
	void *r = NULL;

	int type;

	if (redisGetReply(c, &r) != REDIS_OK || !r)
		die(EXIT_USAGE, "%s: %s", what, c->errstr);
	type = ((redisReply *)r)->type;
	if (type != REDIS_REPLY_ARRAY) {
		char why[200];

		snprintf(why, sizeof(why), "%s", type == REDIS_REPLY_ERROR ?
			 ((redisReply *)r)->str : "not an array");
		freeReplyObject(r);
		die(EXIT_USAGE, "%s: %s", what, why);
	}
	return r;
}

/* Key i of rec, read back as r: a loss, an extra, or as it should be. */
static void judge(const char *prefix, const struct record *rec, uint64_t i,
		  const redisReply *r, struct tally *t)
{
	char want[32];
	bool nil = r->type != REDIS_REPLY_STRING;
	bool right;

	snprintf(want, sizeof(want), "%" PRIu64, i);
	right = !nil && strcmp(r->str, want) == 0;
	if (i <= rec->acked_set && !in_flight(rec, i)) {
		t->acked++;
		if (!right && t->lost++ < SHOW)
			fprintf(stderr, "lost: %s:%d:%" PRIu64 " acknowledged as %s, now %s\n",
				prefix, rec->id, i, want, nil ? "missing" : r->str);
	} else if (!nil && !(right && in_flight(rec, i))) {
		if (t->extra++ < SHOW)
			fprintf(stderr, "extra: %s:%d:%" PRIu64 " is %s, never acknowledged "
				"nor in flight\n", prefix, rec->id, i, r->str);
	}
}

static void check_client(redisContext *c, const char *prefix, const struct record *rec,
			 struct tally *t)
{
	uint64_t top = rec->acked_set, pending[WINDOW];
	const char *argv[1 + BATCH];
	char (*keys)[KEYLEN] = malloc(BATCH * KEYLEN);
	redisReply *r;
	long long v;
	int np = 0;

	if (!keys)
		die(EXIT_USAGE, "out of memory");
	if (rec->n_inflight && rec->inflight[rec->n_inflight - 1] > top)
		top = rec->inflight[rec->n_inflight - 1];
	top++;                       /* one past: must not exist unless in flight */
	argv[0] = "MGET";
	for (uint64_t b = 1; b <= top; b += BATCH) {
		int argc = 1;

		for (uint64_t i = b; i <= top && i < b + BATCH; i++) {
			snprintf(keys[argc - 1], KEYLEN, "%s:%d:%" PRIu64, prefix, rec->id, i);
			argv[argc] = keys[argc - 1];
			argc++;
		}
		/* hiredis copies the arguments into its output buffer. */
		if (redisAppendCommandArgv(c, argc, argv, NULL) != REDIS_OK)
			die(EXIT_USAGE, "MGET: %s", c->errstr);
		pending[np++] = b;
		if (np < WINDOW && b + BATCH <= top)
			continue;
		for (int k = 0; k < np; k++) {
			r = get_array(c, "MGET");
			for (size_t e = 0; e < r->elements; e++)
				judge(prefix, rec, pending[k] + e, r->element[e], t);
			freeReplyObject(r);
		}
		np = 0;
	}
	free(keys);

	r = redisCommand(c, "GET %s:%d:n", prefix, rec->id);
	if (!r)
		die(EXIT_USAGE, "GET: %s", c->errstr);
	v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
	if (v < rec->acked_incr) {
		if (t->lost++ < SHOW)
			fprintf(stderr, "lost: %s:%d:n is %lld, acknowledged %lld\n", prefix,
				rec->id, v, rec->acked_incr);
	} else if ((uint64_t)(v - rec->acked_incr) > rec->incr_open) {
		if (t->extra++ < SHOW)
			fprintf(stderr, "extra: %s:%d:n is %lld, acknowledged %lld with %" PRIu64
				" in flight\n", prefix, rec->id, v, rec->acked_incr, rec->incr_open);
	}
	freeReplyObject(r);
	/* What the writer saw go back or jump while it wrote: a counter that
	 * went on counting hides it by the end. */
	if (rec->rolled_back) {
		if (t->lost < SHOW)
			fprintf(stderr, "lost: %s:%d:n went back while written: %" PRIu64
				" acknowledged INCRs undone\n", prefix, rec->id, rec->rolled_back);
		t->lost += rec->rolled_back;
	}
	if (rec->jumped) {
		if (t->extra < SHOW)
			fprintf(stderr, "extra: %s:%d:n counted %" PRIu64 " INCRs nobody sent "
				"while written\n", prefix, rec->id, rec->jumped);
		t->extra += rec->jumped;
	}
	t->reconnects += rec->reconnects;
}

static int run_check(const struct opts *o)
{
	char prefix[64], why[200];
	struct tally t = { 0 };
	struct record *recs;
	redisContext *c;
	int n;

	recs = read_file(o->file, prefix, &n);
	c = connect_to(o, why, sizeof(why));
	if (!c)
		die(EXIT_USAGE, "%s", why);
	for (int i = 0; i < n; i++)
		check_client(c, prefix, &recs[i], &t);
	redisFree(c);
	for (int i = 0; i < n; i++)
		free(recs[i].inflight);
	free(recs);
	printf("acknowledged %" PRIu64 ", lost %" PRIu64 ", extra %" PRIu64 ", reconnects %"
	       PRIu64 "\n", t.acked, t.lost, t.extra, t.reconnects);
	return t.lost == 0 && t.extra == 0 ? 0 : EXIT_BAD;
}

/* ---- command line ---- */

static void usage(const char *why)
{
	if (why)
		fprintf(stderr, "vmnet-writer: %s\n", why);
	fputs("usage: vmnet-writer write --host H --port P --out FILE [--clients N] "
	      "[--timeout-ms MS] [--prefix W] [--verbose]\n"
	      "       vmnet-writer check --host H --port P --in FILE [--timeout-ms MS]\n",
	      stderr);
	exit(EXIT_USAGE);
}

static long number(const char *opt, const char *s, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < lo || v > hi) {
		fprintf(stderr, "vmnet-writer: %s %s: not a number from %ld to %ld\n", opt, s,
			lo, hi);
		exit(EXIT_USAGE);
	}
	return v;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "host", required_argument, NULL, 'h' },
		{ "port", required_argument, NULL, 'p' },
		{ "clients", required_argument, NULL, 'c' },
		{ "out", required_argument, NULL, 'o' },
		{ "in", required_argument, NULL, 'i' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "prefix", required_argument, NULL, 'w' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .clients = 4, .timeout_ms = 60000, .prefix = "w" };
	const char *out = NULL, *in = NULL;
	bool write_mode;
	int ch;

	if (argc < 2)
		usage(NULL);
	if (strcmp(argv[1], "write") == 0)
		write_mode = true;
	else if (strcmp(argv[1], "check") == 0)
		write_mode = false;
	else
		usage("the first word is write or check");
	optind = 2;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'h': o.host = optarg; break;
		case 'p': o.port = (int)number("--port", optarg, 1, 65535); break;
		case 'c':
			o.clients = (int)number("--clients", optarg, 1, MAX_CLIENTS);
			o.write_opts = true;
			break;
		case 'o': out = optarg; break;
		case 'i': in = optarg; break;
		case 't': o.timeout_ms = number("--timeout-ms", optarg, 1, 86400000L); break;
		case 'w': o.prefix = optarg; o.write_opts = true; break;
		case 'v': o.verbose = true; o.write_opts = true; break;
		default: usage(NULL);
		}
	}
	if (optind != argc)
		usage("unexpected arguments");
	if (!o.host || !o.port)
		usage("--host and --port are needed");
	if (!o.prefix[0] || strlen(o.prefix) > 32 || strpbrk(o.prefix, " \t\n"))
		usage("--prefix: 1 to 32 characters, no blanks");
	if (write_mode) {
		if (!out || in)
			usage("write takes --out FILE, not --in");
		o.file = out;
		return run_write(&o);
	}
	if (!in || out)
		usage("check takes --in FILE, not --out");
	if (o.write_opts)
		usage("check takes --host, --port, --in and --timeout-ms only");
	o.file = in;
	return run_check(&o);
}
