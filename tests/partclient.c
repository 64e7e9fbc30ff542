/*
 * partclient.c: the client of the partition test (tests/partition.sh,
 * docs/partition-test.md).  It talks to the kv guest only through the
 * service address, as any client would, and writes down every operation it
 * tried, so that tests/partcheck.c can judge afterwards what a client was
 * told and what the pair kept.
 *
 *   partclient write --host H --port P --schedule S --client C --out LOG
 *                    [--timeout-ms MS] [--read-every N] [--rate N] [--seed N]
 *   partclient read  --host H --port P --out FILE [--timeout-ms MS]
 *                    [--deadline-ms MS] [--flush] LOG...
 *
 * write: one connection at a time.  Each operation is a SET of a key never
 *   used before, S:C:i with the value vC.i (i = 1, 2, ...), or, every N-th
 *   operation (default 3), a GET of one of this client's earlier keys, picked
 *   at random.  A connection that fails (no reply within MS, default 1000, an
 *   error, EOF) is dropped and a new one made; an operation is never retried,
 *   the next one takes the next key.  LOG gets one line per operation,
 *   written with one write(2) so a line is whole even if the client is killed:
 *       # partclient schedule S client C
 *       set START_NS END_NS KEY VALUE OUTCOME
 *       get START_NS END_NS KEY VALUE|- OUTCOME
 *   START_NS and END_NS are CLOCK_REALTIME nanoseconds before the command
 *   was sent and after its reply (or failure); OUTCOME is ok (the reply came:
 *   +OK, or the GET's value, "-" for none), fail (an error reply: not
 *   applied) or unknown (sent, no reply: it may or may not have been applied).
 *   --rate N starts at most N operations a second (default 0: no limit), so
 *   that a long run's logs stay small; a slow reply does not make the next
 *   ones come faster to catch up.
 *   Connection attempts are not operations and are not logged.  SIGTERM or
 *   SIGINT ends it after the current operation with a line "# end".
 *
 * read: the final read-back.  Every key of every set line of the LOGs (any
 *   outcome) is read with MGET through a new connection, reconnecting until
 *   DEADLINE (default 30000 ms), and FILE gets (through FILE.tmp and a rename)
 *       # readback
 *       KEY VALUE|-
 *   With --flush it then empties the store (FLUSHALL), so that a long run's
 *   schedules do not fill the guest's RAM (each schedule's keys are unique
 *   and read back before the next one starts).
 *
 * Exit status: 0 done; 1 read: the deadline passed before every key was
 * read; 2 usage, an unreadable LOG, FILE not written.
 *
 * One thread; the only state shared with the signal handler is a
 * sig_atomic_t flag.  Values and keys hold no blanks, so the lines split on
 * spaces.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXIT_LATE 1
#define EXIT_USAGE 2
#define KEYLEN 96
#define BATCH 200             /* keys per MGET in read */

struct opts {
	const char *host;
	int port;
	const char *schedule;
	int client;
	const char *out;
	long timeout_ms;
	long deadline_ms;
	bool flush;
	int read_every;
	long rate;
	unsigned seed;
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void die(int status, const char *fmt, ...)
{
	va_list ap;

	fputs("partclient: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

static uint64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	/* An interrupted nap is fine: the caller looks at stopping. */
	nanosleep(&ts, NULL);
}

static redisContext *connect_to(const struct opts *o)
{
	struct timeval tv = { o->timeout_ms / 1000, (o->timeout_ms % 1000) * 1000 };
	redisContext *c = redisConnectWithTimeout(o->host, o->port, tv);

	if (!c || c->err || redisSetTimeout(c, tv) != REDIS_OK) {
		if (c)
			redisFree(c);
		return NULL;
	}
	return c;
}

/* One whole line per write(2), so a killed client leaves no torn line. */
static void log_line(int fd, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || n >= (int)sizeof(line))
		die(EXIT_USAGE, "log line too long");
	if (write(fd, line, (size_t)n) != n)
		die(EXIT_USAGE, "writing the log: %s", strerror(errno));
}

/* ---- write ---- */

static const char *outcome(const redisReply *r, bool want_ok)
{
	if (!r)
		return "unknown";
	if (r->type == REDIS_REPLY_ERROR)
		return "fail";
	if (want_ok)
		return r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0 ? "ok" :
		       "fail";
	return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL ? "ok" : "fail";
}

static int run_write(const struct opts *o)
{
	struct sigaction sa;
	redisContext *c = NULL;
	uint64_t i = 0, ops = 0, acked = 0, unknown = 0, next_us = 0;
	char key[KEYLEN], val[48];
	int fd;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	srand(o->seed);

	fd = open(o->out, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0644);
	if (fd < 0)
		die(EXIT_USAGE, "%s: %s", o->out, strerror(errno));
	log_line(fd, "# partclient schedule %s client %d\n", o->schedule, o->client);
	while (!stopping) {
		bool is_get = i > 0 && o->read_every > 0 && ops % (uint64_t)o->read_every ==
			      (uint64_t)o->read_every - 1;
		uint64_t t0, t1, k;
		redisReply *r;
		const char *how;

		if (!c) {
			c = connect_to(o);
			if (!c) {
				nap_ms(50);
				continue;
			}
		}
		if (o->rate > 0) {
			uint64_t now = mono_ms() * 1000u;

			if (next_us > now)
				nap_ms((long)((next_us - now + 999) / 1000));
			now = mono_ms() * 1000u;
			next_us = (next_us > now ? next_us : now) + 1000000u / (uint64_t)o->rate;
		}
		ops++;
		k = is_get ? 1 + (uint64_t)rand() % i : ++i;
		snprintf(key, sizeof(key), "%s:%d:%" PRIu64, o->schedule, o->client, k);
		t0 = wall_ns();
		if (is_get) {
			r = redisCommand(c, "GET %s", key);
		} else {
			snprintf(val, sizeof(val), "v%d.%" PRIu64, o->client, k);
			r = redisCommand(c, "SET %s %s", key, val);
		}
		t1 = wall_ns();
		how = outcome(r, !is_get);
		if (is_get)
			log_line(fd, "get %" PRIu64 " %" PRIu64 " %s %s %s\n", t0, t1, key,
				 r && r->type == REDIS_REPLY_STRING && !strpbrk(r->str, " \n") ?
				 r->str : "-", how);
		else
			log_line(fd, "set %" PRIu64 " %" PRIu64 " %s %s %s\n", t0, t1, key, val,
				 how);
		if (!is_get) {
			acked += strcmp(how, "ok") == 0;
			unknown += !r;
		}
		if (r) {
			freeReplyObject(r);
		} else {
			/* No reply: this connection's state is unknown, start over. */
			redisFree(c);
			c = NULL;
		}
	}
	log_line(fd, "# end\n");
	close(fd);
	if (c)
		redisFree(c);
	printf("partclient %s:%d: %" PRIu64 " sets acknowledged, %" PRIu64 " unknown, %" PRIu64
	       " operations\n", o->schedule, o->client, acked, unknown, ops);
	return 0;
}

/* ---- read ---- */

struct keys {
	char **v;
	size_t n, cap;
};

static void add_key(struct keys *k, const char *s)
{
	if (k->n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 1024;
		char **p = realloc(k->v, cap * sizeof(*p));

		if (!p)
			die(EXIT_USAGE, "out of memory");
		k->v = p;
		k->cap = cap;
	}
	k->v[k->n] = strdup(s);
	if (!k->v[k->n])
		die(EXIT_USAGE, "out of memory");
	k->n++;
}

static void read_log(const char *path, struct keys *k)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, key[KEYLEN];
	size_t cap = 0;

	if (!f)
		die(EXIT_USAGE, "%s: %s", path, strerror(errno));
	while (getline(&line, &cap, f) > 0) {
		/* Keys are never reused: one SET per key, so no duplicates. */
		if (strncmp(line, "set ", 4) == 0 &&
		    sscanf(line, "set %*s %*s %95s", key) == 1)
			add_key(k, key);
	}
	free(line);
	fclose(f);
}

/* Keys [from, from+n) with MGET; false if the connection failed. */
static bool read_batch(redisContext *c, const struct keys *k, size_t from, size_t n, FILE *out)
{
	const char *argv[1 + BATCH];
	redisReply *r;

	argv[0] = "MGET";
	for (size_t j = 0; j < n; j++)
		argv[1 + j] = k->v[from + j];
	r = redisCommandArgv(c, (int)n + 1, argv, NULL);
	if (!r)
		return false;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != n) {
		/* Refused (e.g. a node that no longer serves): ask again later. */
		freeReplyObject(r);
		return false;
	}
	for (size_t j = 0; j < n; j++) {
		const redisReply *e = r->element[j];

		fprintf(out, "%s %s\n", k->v[from + j],
			e->type == REDIS_REPLY_STRING && !strpbrk(e->str, " \n") ? e->str : "-");
	}
	freeReplyObject(r);
	return true;
}

static int run_read(const struct opts *o, char **logs, int nlogs)
{
	struct keys k = { 0 };
	uint64_t deadline = mono_ms() + (uint64_t)o->deadline_ms;
	redisContext *c = NULL;
	char tmp[4096];
	size_t done = 0;
	FILE *out;

	signal(SIGPIPE, SIG_IGN);
	for (int j = 0; j < nlogs; j++)
		read_log(logs[j], &k);
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", o->out) >= (int)sizeof(tmp))
		die(EXIT_USAGE, "%s: name too long", o->out);
	out = fopen(tmp, "w");
	if (!out)
		die(EXIT_USAGE, "%s: %s", tmp, strerror(errno));
	fprintf(out, "# readback\n");
	while (done < k.n && mono_ms() < deadline) {
		size_t n = k.n - done < BATCH ? k.n - done : BATCH;

		if (!c) {
			c = connect_to(o);
			if (!c) {
				nap_ms(100);
				continue;
			}
		}
		if (read_batch(c, &k, done, n, out)) {
			done += n;
			continue;
		}
		redisFree(c);
		c = NULL;
		nap_ms(100);
	}
	while (o->flush && done == k.n && mono_ms() < deadline) {
		redisReply *r;

		if (!c && !(c = connect_to(o))) {
			nap_ms(100);
			continue;
		}
		r = redisCommand(c, "FLUSHALL");
		if (r && r->type == REDIS_REPLY_STATUS) {
			freeReplyObject(r);
			break;
		}
		if (r)
			freeReplyObject(r);
		redisFree(c);
		c = NULL;
	}
	if (c)
		redisFree(c);
	if (fclose(out) != 0 || rename(tmp, o->out) != 0)
		die(EXIT_USAGE, "%s: %s", o->out, strerror(errno));
	printf("partclient read: %zu of %zu keys read back\n", done, k.n);
	for (size_t j = 0; j < k.n; j++)
		free(k.v[j]);
	free(k.v);
	return done == k.n ? 0 : EXIT_LATE;
}

/* ---- command line ---- */

static void usage(const char *why)
{
	if (why)
		fprintf(stderr, "partclient: %s\n", why);
	fputs("usage: partclient write --host H --port P --schedule S --client C --out LOG\n"
	      "                        [--timeout-ms MS] [--read-every N] [--rate N] [--seed N]\n"
	      "       partclient read --host H --port P --out FILE [--timeout-ms MS]\n"
	      "                       [--deadline-ms MS] [--flush] LOG...\n", stderr);
	exit(EXIT_USAGE);
}

static long number(const char *opt, const char *s, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < lo || v > hi) {
		fprintf(stderr, "partclient: %s %s: not a number from %ld to %ld\n", opt, s, lo,
			hi);
		exit(EXIT_USAGE);
	}
	return v;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "host", required_argument, NULL, 'h' },
		{ "port", required_argument, NULL, 'p' },
		{ "schedule", required_argument, NULL, 's' },
		{ "client", required_argument, NULL, 'c' },
		{ "out", required_argument, NULL, 'o' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "deadline-ms", required_argument, NULL, 'd' },
		{ "read-every", required_argument, NULL, 'r' },
		{ "seed", required_argument, NULL, 'S' },
		{ "flush", no_argument, NULL, 'F' },
		{ "rate", required_argument, NULL, 'R' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .client = -1, .timeout_ms = 1000, .deadline_ms = 30000,
			  .read_every = 3, .seed = 1 };
	bool write_mode;
	int ch;

	if (argc < 2)
		usage(NULL);
	if (strcmp(argv[1], "write") == 0)
		write_mode = true;
	else if (strcmp(argv[1], "read") == 0)
		write_mode = false;
	else
		usage("the first word is write or read");
	optind = 2;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'h': o.host = optarg; break;
		case 'p': o.port = (int)number("--port", optarg, 1, 65535); break;
		case 's': o.schedule = optarg; break;
		case 'c': o.client = (int)number("--client", optarg, 0, 999); break;
		case 'o': o.out = optarg; break;
		case 't': o.timeout_ms = number("--timeout-ms", optarg, 1, 600000); break;
		case 'd': o.deadline_ms = number("--deadline-ms", optarg, 1, 3600000); break;
		case 'r': o.read_every = (int)number("--read-every", optarg, 0, 1000); break;
		case 'F': o.flush = true; break;
		case 'R': o.rate = number("--rate", optarg, 0, 1000000); break;
		case 'S': o.seed = (unsigned)number("--seed", optarg, 0, 2147483647); break;
		default: usage(NULL);
		}
	}
	if (!o.host || !o.port || !o.out)
		usage("--host, --port and --out are needed");
	if (write_mode) {
		if (optind != argc)
			usage("write takes no file arguments");
		if (!o.schedule || o.client < 0)
			usage("write needs --schedule and --client");
		if (!o.schedule[0] || strlen(o.schedule) > 32 || strpbrk(o.schedule, " \t\n:"))
			usage("--schedule: 1 to 32 characters, no blanks or ':'");
		return run_write(&o);
	}
	if (optind == argc)
		usage("read needs the client LOGs");
	return run_read(&o, argv + optind, argc - optind);
}
