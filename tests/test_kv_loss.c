/*
 * test_kv_loss.c: no acknowledged write is lost across a failover.
 *
 * Each trial runs a kv pair (output-mode buffer), four clients writing
 * with unique values (SET of fresh keys, INCR of a counter, APPEND of
 * numbered tokens) and recording every acknowledged reply; then the
 * primary dies with SIGKILL, at a random moment or at a named checkpoint
 * phase (--fault).  Once the secondary has taken over, everything is read
 * back from it: every acknowledged write must be there, the one write each
 * client had in flight may or may not be, and nothing that was never
 * written may appear.
 *
 * `make check` runs 10 trials (COLO_LOSS_TRIALS to change it; `make
 * check-long` runs 100), one in three with dirty-tracking manual (the
 * store marks what it writes) and one in three with mprotect instead of
 * the best the kernel has (uffd-wp where it works; tests/vm_softdirty.sh
 * runs these under Debian's kernel, where it is soft-dirty).  A last
 * test shows the checker is not blind: with output-mode none and
 * checkpoints far apart, the same kill loses writes and the checker says
 * so.  The same trials run in output-mode compare
 * (docs/compare.md), also with a client that sends a command whose reply
 * differs between the nodes (COLOTEST.NONDET, a test-only kv hook), so
 * that mismatch checkpoints happen under the kills.  Another freezes the secondary: a reply is held
 * until the primary declares it lost, then released (no client hangs).
 *
 * The clients are hiredis, a RESP parser the kv guest did not write.  The
 * random choices (when to kill, after how many checkpoints) come from a
 * seed printed per trial; COLO_TEST_SEED replays it.
 */
#include "config.h"

#include <dirent.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pair.h"
#include "kvcall.h"
#include "testutil.h"

#define CLIENTS 4

struct client {
	int id;
	uint16_t port;
	atomic_bool *stop;
	atomic_bool connected;
	pthread_t th;
	/* what was acknowledged, and whether one more was in flight */
	uint64_t sets, incrs, appends;
	bool set_open, incr_open, append_open;
	bool nondet;                /* also COLOTEST.NONDET c<id>:nd, every 4th op */
	char odd[200];              /* a reply that makes no sense */
	char no_connect[200];       /* why it could not connect, if it could not */
};

/* A hiredis connection with a 10 s timeout on everything; NULL and why. */
static redisContext *kv_connect(uint16_t port, char *why, size_t len)
{
	struct timeval tv = { 10, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);

	if (!c || c->err || redisSetTimeout(c, tv) != REDIS_OK) {
		snprintf(why, len, "connect to port %u: %s", port, c ? c->errstr : "no memory");
		if (c)
			redisFree(c);
		return NULL;
	}
	return c;
}

/* A reply's text for a message ("" if it has none). */
static const char *text(const redisReply *r)
{
	return r->str ? r->str : "";
}

static void *client_main(void *arg)
{
	struct client *cl = arg;
	redisContext *c;
	char key[64], val[64], ctr[64], logk[64];

	c = kv_connect(cl->port, cl->no_connect, sizeof(cl->no_connect));
	if (!c)
		return NULL;
	atomic_store(&cl->connected, true);
	snprintf(ctr, sizeof(ctr), "c%d:ctr", cl->id);
	snprintf(logk, sizeof(logk), "c%d:log", cl->id);
	for (uint64_t op = 0; !atomic_load(cl->stop); op++) {
		redisReply *r;

		if (cl->nondet && op % 4 == 3) {
			/* Its reply differs between the nodes: a mismatch, so a
			 * checkpoint; the reply is 16 hex characters. */
			r = redisCommand(c, "COLOTEST.NONDET c%d:nd", cl->id);
			if (!r)
				goto out;
			if (r->type != REDIS_REPLY_STRING || r->len != 16)
				snprintf(cl->odd, sizeof(cl->odd), "COLOTEST.NONDET: type %d %s",
					 r->type, text(r));
			freeReplyObject(r);
			if (cl->odd[0])
				break;
			continue;
		}
		switch (op % 3) {
		case 0:
			snprintf(key, sizeof(key), "c%d:s:%" PRIu64, cl->id, cl->sets);
			snprintf(val, sizeof(val), "v%d:%" PRIu64, cl->id, cl->sets);
			cl->set_open = true;
			r = redisCommand(c, "SET %s %s", key, val);
			if (!r)
				goto out;
			cl->set_open = false;
			if (r->type != REDIS_REPLY_STATUS || strcmp(text(r), "OK") != 0)
				snprintf(cl->odd, sizeof(cl->odd), "SET %s: type %d %s", key,
					 r->type, text(r));
			else
				cl->sets++;
			break;
		case 1:
			cl->incr_open = true;
			r = redisCommand(c, "INCR %s", ctr);
			if (!r)
				goto out;
			cl->incr_open = false;
			if (r->type != REDIS_REPLY_INTEGER || r->integer != (long long)cl->incrs + 1)
				snprintf(cl->odd, sizeof(cl->odd), "INCR %s: type %d %lld after %"
					 PRIu64, ctr, r->type, r->integer, cl->incrs);
			else
				cl->incrs++;
			break;
		default:
			snprintf(val, sizeof(val), "%" PRIu64 ",", cl->appends);
			cl->append_open = true;
			r = redisCommand(c, "APPEND %s %s", logk, val);
			if (!r)
				goto out;
			cl->append_open = false;
			if (r->type != REDIS_REPLY_INTEGER)
				snprintf(cl->odd, sizeof(cl->odd), "APPEND: type %d", r->type);
			else
				cl->appends++;
			break;
		}
		freeReplyObject(r);
		if (cl->odd[0])
			break;
	}
out:
	redisFree(c);
	return NULL;
}

static bool is_nil(const redisReply *r)
{
	return r->type == REDIS_REPLY_NIL;
}

/* The expected APPEND log after n tokens. */
static char *log_of(uint64_t n)
{
	size_t cap = 32 + n * 12, len = 0;
	char *s = malloc(cap);

	s[0] = '\0';
	for (uint64_t k = 0; k < n; k++)
		len += (size_t)snprintf(s + len, cap - len, "%" PRIu64 ",", k);
	return s;
}

/*
 * Read everything back from the node serving on port; 0 if every rule
 * holds, else the number of violations (each described on stderr).
 */
static int check_clients(uint16_t port, struct client *cls, int n, uint64_t *acked)
{
	redisContext *c;
	redisReply *r;
	char why[200];
	int bad = 0;
	uint64_t total = 0;

	*acked = 0;
	c = kv_connect(port, why, sizeof(why));
	ck_assert_msg(c, "%s", why);
	for (int i = 0; i < n; i++) {
		struct client *cl = &cls[i];
		char key[64], val[64];

		*acked += cl->sets + cl->incrs + cl->appends;
		for (uint64_t k = 0; k <= cl->sets; k++) {
			snprintf(key, sizeof(key), "c%d:s:%" PRIu64, cl->id, k);
			snprintf(val, sizeof(val), "v%d:%" PRIu64, cl->id, k);
			r = kv_call(c, "GET %s", key);
			if (k < cl->sets && (is_nil(r) || strcmp(text(r), val) != 0)) {
				fprintf(stderr, "# LOST: %s acknowledged as %s, now %s\n", key, val,
					is_nil(r) ? "(nil)" : text(r));
				bad++;
			} else if (k == cl->sets && !is_nil(r) &&
				   (!cl->set_open || strcmp(text(r), val) != 0)) {
				fprintf(stderr, "# NEVER WRITTEN: %s = %s\n", key, text(r));
				bad++;
			}
			if (!is_nil(r))
				total++;
			freeReplyObject(r);
		}
		snprintf(key, sizeof(key), "c%d:ctr", cl->id);
		r = kv_call(c, "GET %s", key);
		{
			long long v = is_nil(r) ? 0 : atoll(text(r));

			if (v < (long long)cl->incrs ||
			    v > (long long)cl->incrs + (cl->incr_open ? 1 : 0)) {
				fprintf(stderr, "# %s: %lld, acknowledged %" PRIu64 "%s\n", key, v,
					cl->incrs, cl->incr_open ? " (+1 in flight)" : "");
				bad++;
			}
			total += !is_nil(r);
		}
		freeReplyObject(r);
		snprintf(key, sizeof(key), "c%d:log", cl->id);
		r = kv_call(c, "GET %s", key);
		{
			/* the acknowledged tokens, then at most the one in flight */
			char *a = log_of(cl->appends), *b = log_of(cl->appends + 1);
			const char *got = is_nil(r) ? "" : text(r);
			size_t gl = is_nil(r) ? 0 : r->len;
			bool ok = (gl == strlen(a) && memcmp(got, a, gl) == 0) ||
				  (cl->append_open && gl == strlen(b) && memcmp(got, b, gl) == 0);

			if (!ok) {
				fprintf(stderr, "# %s: '%.80s' (%zu bytes), acknowledged %" PRIu64
					" tokens%s\n", key, got, gl, cl->appends,
					cl->append_open ? " (+1 in flight)" : "");
				bad++;
			}
			total += !is_nil(r);
			free(a);
			free(b);
		}
		freeReplyObject(r);
	}
	/* A client's COLOTEST.NONDET key may be there (it is not counted). */
	for (int i = 0; i < n; i++) {
		if (!cls[i].nondet)
			continue;
		r = kv_call(c, "EXISTS c%d:nd", cls[i].id);
		total += r->type == REDIS_REPLY_INTEGER ? (uint64_t)r->integer : 0;
		freeReplyObject(r);
	}
	/* Nothing else exists. */
	r = kv_call(c, "DBSIZE");
	if (r->type != REDIS_REPLY_INTEGER || (uint64_t)r->integer != total) {
		fprintf(stderr, "# DBSIZE %lld, found %" PRIu64 " keys\n", r->integer, total);
		bad++;
	}
	freeReplyObject(r);
	redisFree(c);
	return bad;
}

struct trial {
	const char *fault;           /* NULL: SIGKILL at a random moment */
	const char *output_mode;     /* "buffer", "none" or "compare" (both nodes) */
	const char *interval_ms;
	uint32_t kill_after_ms;      /* for a random kill */
	bool nondet;                 /* compare: client 0 sends COLOTEST.NONDET */
	uint64_t mismatches;         /* out: the primary's, just before the kill */
	const char *tracking;        /* dirty-tracking on both nodes; NULL: auto */
};

static bool cond_all_connected(void *ud)
{
	struct client *cls = ud;

	for (int i = 0; i < CLIENTS; i++)
		if (!atomic_load(&cls[i].connected))
			return false;
	return true;
}

/* One trial; returns the number of violations found. */
static int run_trial(struct trial *t, uint64_t *acked_out)
{
	struct proc a, b;
	struct client cls[CLIENTS];
	atomic_bool stop = false;
	char listen[32], a_kv[32], b_kv[32], fault[64];
	uint16_t a_port = pair_free_port(), b_port = pair_free_port();
	uint64_t acked;
	int bad;

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", pair_free_port());
	snprintf(a_kv, sizeof(a_kv), "127.0.0.1:%u", a_port);
	snprintf(b_kv, sizeof(b_kv), "127.0.0.1:%u", b_port);
	snprintf(fault, sizeof(fault), "%s", t->fault ? t->fault : "");
	/* The test-only command exists only where this is set. */
	setenv("COLO_KV_TEST_NONDET", t->nondet ? "1" : "0", 1);
	proc_start(&b, pair_bin("colo-secondary"), "b", "--guest", "kv", "--guest-listen", b_kv,
		   "--listen", listen, "--ram-mb", "16", "--heartbeat-timeout-ms", "300",
		   "--output-mode", strcmp(t->output_mode, "compare") == 0 ? "compare" :
		   "buffer", "--dirty-tracking", t->tracking ? t->tracking : "auto", NULL);
	proc_start(&a, pair_bin("colo-primary"), "a", "--guest", "kv", "--guest-listen", a_kv,
		   "--peer", listen, "--ram-mb", "16", "--heartbeat-timeout-ms", "300",
		   "--checkpoint-interval-ms", t->interval_ms, "--output-mode", t->output_mode,
		   "--fault", fault, "--dirty-tracking", t->tracking ? t->tracking : "auto", NULL);
	if (t->tracking)
		fprintf(stderr, "# dirty-tracking %s on both nodes\n", t->tracking);
	unsetenv("COLO_KV_TEST_NONDET");
	if (!wait_for(cond_protected, &a, 20000) || !wait_for(cond_protected, &b, 20000)) {
		proc_dump_log(&a);
		proc_dump_log(&b);
		ck_abort_msg("the pair did not get protected");
	}
	/* What the primary tracks with, as its start line says (with auto:
	 * what it chose, and why). */
	{
		size_t len = 0;
		char *logtext = (char *)colo_test_read_file(a.log, &len);
		char *at;

		if (logtext)
			logtext[len] = '\0';
		at = logtext ? strstr(logtext, "dirty tracking: ") : NULL;

		if (at)
			fprintf(stderr, "# primary: %.*s\n", (int)strcspn(at, ",\n"), at);
		free(logtext);
	}

	memset(cls, 0, sizeof(cls));
	for (int i = 0; i < CLIENTS; i++) {
		cls[i].id = i;
		cls[i].port = a_port;
		cls[i].stop = &stop;
		cls[i].nondet = t->nondet && i == 0;
		ck_assert_int_eq(pthread_create(&cls[i].th, NULL, client_main, &cls[i]), 0);
	}
	if (!t->fault) {
		/* The kill comes a while after every client is writing: a
		 * client that could not connect yet would be a false alarm. */
		if (!wait_for(cond_all_connected, cls, 20000)) {
			atomic_store(&stop, true);
			for (int i = 0; i < CLIENTS; i++)
				pthread_join(cls[i].th, NULL);
			ck_abort_msg("the clients did not connect: %s", cls[0].no_connect[0] ?
				     cls[0].no_connect : "(no error)");
		}
		/* The workload: the clients write for a while before the kill. */
		usleep(t->kill_after_ms * 1000u);
		if (t->nondet)
			ctl_stat(&a, "mismatches", &t->mismatches);
		proc_signal(&a, SIGKILL);
	}
	if (!proc_wait(&a, 30000)) {
		proc_dump_log(&a);
		ck_abort_msg("the primary did not die (fault %s)", fault);
	}
	if (!wait_for(cond_primary, &b, 10000)) {
		proc_dump_log(&a);
		proc_dump_log(&b);
		ck_abort_msg("the secondary did not take over");
	}
	atomic_store(&stop, true);
	for (int i = 0; i < CLIENTS; i++) {
		pthread_join(cls[i].th, NULL);
		ck_assert_msg(!cls[i].odd[0], "client %d: %s", i, cls[i].odd);
		/* A fault may kill the primary before a client got to connect
		 * (a loaded machine starts threads late): it was told nothing,
		 * so it has nothing to lose.  Without a fault every client was
		 * connected before the kill (cond_all_connected). */
		if (cls[i].no_connect[0]) {
			ck_assert_msg(t->fault, "client %d: %s", i, cls[i].no_connect);
			fprintf(stderr, "# client %d never connected before the fault: %s\n", i,
				cls[i].no_connect);
		}
	}
	bad = check_clients(b_port, cls, CLIENTS, &acked);
	fprintf(stderr, "# %s: %" PRIu64 " writes acknowledged, %d violations\n",
		t->fault ? t->fault : "random kill", acked, bad);
	if (bad) {
		proc_dump_log(&a);
		proc_dump_log(&b);
	}
	*acked_out = acked;
	ck_assert_int_eq(proc_stop(&b), 0);
	return bad;
}

static const char *const phases[] = {
	"paused", "staged", "request", "encoded", "mid-send", "sent", "received",
};
#define NPHASES (sizeof(phases) / sizeof(phases[0]))

START_TEST(no_acknowledged_write_is_lost)
{
	struct colo_rng rng = { colo_test_seed_random("no_acknowledged_write_is_lost") };
	struct trial t = { NULL, "buffer", "50", 0, false, 0, NULL };
	char fault[64];
	uint64_t acked;

	/* one trial in three with the store marking its own writes, one with
	 * mprotect (its pages protected again on a thread after each harvest) */
	if (_i % 3 == 1)
		t.tracking = "manual";
	else if (_i % 3 == 2)
		t.tracking = "mprotect";
	/* trial i: a random kill, or the primary dies at a phase of a checkpoint */
	if (_i % (NPHASES + 1) != 0) {
		snprintf(fault, sizeof(fault), "abort-at=%s,after=%" PRIu64,
			 phases[_i % (NPHASES + 1) - 1], 20 + colo_rng_below(&rng, 60));
		t.fault = fault;
	} else {
		t.kill_after_ms = 100 + (uint32_t)colo_rng_below(&rng, 600);
	}
	ck_assert_int_eq(run_trial(&t, &acked), 0);
	ck_assert_uint_gt(acked, 0);
}
END_TEST

/*
 * output-mode compare: replies go once the secondary's copy said the same;
 * checkpoints every second bound the drift.  Trial i: a random kill, or
 * the primary dies at a phase of its 2nd to 4th checkpoint.  Odd trials
 * add a client whose COLOTEST.NONDET differs between the nodes, so the
 * kills also land among mismatch checkpoints; those come at once, so
 * there the primary dies at its 4th to 6th (at its 3rd, once in a full
 * check, no write had been acknowledged yet).
 */
START_TEST(compare_no_acknowledged_write_is_lost)
{
	struct colo_rng rng = { colo_test_seed_random("compare_no_acknowledged_write_is_lost") };
	struct trial t = { NULL, "compare", "1000", 0, _i % 2 == 1, 0, NULL };
	char fault[64];
	uint64_t acked;

	if (_i / 2 % 2 == 1)
		t.tracking = "manual";
	if (_i % (NPHASES + 1) != 0) {
		snprintf(fault, sizeof(fault), "abort-at=%s,after=%" PRIu64,
			 phases[_i % (NPHASES + 1) - 1],
			 (t.nondet ? 4 : 2) + colo_rng_below(&rng, 3));
		t.fault = fault;
	} else {
		t.kill_after_ms = 300 + (uint32_t)colo_rng_below(&rng, 1200);
	}
	ck_assert_int_eq(run_trial(&t, &acked), 0);
	ck_assert_uint_gt(acked, 0);
}
END_TEST

/* The nondeterministic command makes mismatches, and with them
 * checkpoints, while nothing acknowledged is lost. */
START_TEST(compare_mismatches_lose_nothing)
{
	struct trial t = { NULL, "compare", "20000", 1500, true, 0, NULL };
	uint64_t acked;

	ck_assert_int_eq(run_trial(&t, &acked), 0);
	ck_assert_uint_gt(acked, 0);
	ck_assert_msg(t.mismatches > 0, "COLOTEST.NONDET made no mismatch");
}
END_TEST

/* Both nodes must say compare: a secondary that does not refuses the
 * primary's Hello, naming both settings, and each side says so. */
START_TEST(compare_needs_both_nodes)
{
	struct proc a, b;
	char listen[32], a_kv[32], b_kv[32];
	struct wait_arg wa, wb;

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", pair_free_port());
	snprintf(a_kv, sizeof(a_kv), "127.0.0.1:%u", pair_free_port());
	snprintf(b_kv, sizeof(b_kv), "127.0.0.1:%u", pair_free_port());
	proc_start(&b, pair_bin("colo-secondary"), "b", "--guest", "kv", "--guest-listen", b_kv,
		   "--listen", listen, "--ram-mb", "16", NULL);
	proc_start(&a, pair_bin("colo-primary"), "a", "--guest", "kv", "--guest-listen", a_kv,
		   "--peer", listen, "--ram-mb", "16", "--output-mode", "compare", NULL);
	wa = (struct wait_arg){ &a, 0, "secondary b refused us: primary a has output-mode "
				"compare, node b buffer or none: both must say compare or "
				"neither" };
	wb = (struct wait_arg){ &b, 0, "primary a has output-mode compare, node b buffer "
				"or none" };
	if (!wait_for(cond_log, &wa, 20000) || !wait_for(cond_log, &wb, 20000)) {
		proc_dump_log(&a);
		proc_dump_log(&b);
		ck_abort_msg("the disagreement was not said");
	}
	ck_assert(!proc_log_has(&a, "protected by b"));
	ck_assert_int_eq(proc_stop(&a), 0);
	ck_assert_int_eq(proc_stop(&b), 0);
}
END_TEST

/* The checker is not blind: without output commit, acknowledged writes
 * made after the last checkpoint are gone, and it says so. */
START_TEST(checker_sees_loss_without_output_commit)
{
	struct trial t = { NULL, "none", "60000", 500, false, 0, NULL };
	uint64_t acked;

	ck_assert_int_gt(run_trial(&t, &acked), 0);
}
END_TEST


/*
 * Output commit when the secondary goes away: with the secondary frozen
 * (SIGSTOP), a write's reply is held, since no checkpoint can be
 * acknowledged; the primary declares the secondary lost after the heartbeat
 * timeout, and only then does the reply come, so no client hangs.  The
 * order is checked, not a time: the primary logs the loss before it
 * releases anything.
 */
START_TEST(held_output_is_released_when_the_secondary_is_lost)
{
	struct proc a, b;
	redisContext *c;
	redisReply *r;
	char listen[32], a_kv[32], b_kv[32], why[200];
	uint16_t a_port = pair_free_port();

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", pair_free_port());
	snprintf(a_kv, sizeof(a_kv), "127.0.0.1:%u", a_port);
	snprintf(b_kv, sizeof(b_kv), "127.0.0.1:%u", pair_free_port());
	proc_start(&b, pair_bin("colo-secondary"), "b", "--guest", "kv", "--guest-listen", b_kv,
		   "--listen", listen, "--ram-mb", "16", "--heartbeat-timeout-ms", "300", NULL);
	proc_start(&a, pair_bin("colo-primary"), "a", "--guest", "kv", "--guest-listen", a_kv,
		   "--peer", listen, "--ram-mb", "16", "--heartbeat-timeout-ms", "300", NULL);
	ck_assert(wait_for(cond_protected, &a, 20000));
	c = kv_connect(a_port, why, sizeof(why));
	ck_assert_msg(c, "%s", why);
	r = kv_call(c, "SET %s %s", "before", "1");
	ck_assert_str_eq(text(r), "OK");
	freeReplyObject(r);

	proc_signal(&b, SIGSTOP);
	ck_assert(wait_for(cond_stopped, &b, 20000));
	ck_assert(!proc_log_has(&a, "lost secondary"));
	/* The reply came (hiredis waits up to 10 s), and it came after the
	 * primary gave up on b. */
	r = kv_call(c, "SET %s %s", "held", "2");
	ck_assert_msg(proc_log_has(&a, "lost secondary b"), "a reply before the secondary "
		      "was declared lost: output commit did not hold it");
	ck_assert_str_eq(text(r), "OK");
	freeReplyObject(r);
	/* Degraded: replies are not held any more. */
	r = kv_call(c, "GET %s", "held");
	ck_assert_str_eq(text(r), "2");
	freeReplyObject(r);
	redisFree(c);

	proc_signal(&b, SIGCONT);
	proc_stop(&b);
	ck_assert_int_eq(proc_stop(&a), 0);
}
END_TEST

/* Does process pid have a thread named name (/proc/PID/task/T/comm)? */
static bool has_thread(pid_t pid, const char *name)
{
	char path[64], comm[64];
	struct dirent *e;
	bool found = false;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return false;
	while (!found && (e = readdir(d))) {
		char tpath[400];
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(tpath, sizeof(tpath), "%s/%s/comm", path, e->d_name);
		f = fopen(tpath, "r");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f)) {
			comm[strcspn(comm, "\n")] = '\0';
			found = strcmp(comm, name) == 0;
		}
		fclose(f);
	}
	closedir(d);
	return found;
}

/*
 * Where the service runs (docs/kv.md, "Threads and the pause"): on a
 * primary, on the primary's own loop thread in buffer mode too, so the
 * process has no kv thread, and replies still wait for their checkpoint
 * and come.  So does a secondary promoted to primary in buffer mode (its
 * guest starts at the promotion), serving what the first one committed.
 */
/* Has the release log (docs/arbiter.md: "<wall_ns> <node> <generation> ckpt
 * <seq>") a release of a checkpoint after checkpoint `after`? */
static bool released_after(const char *path, uint64_t after)
{
	char line[256], what[16];
	unsigned long long wall, gen, seq;
	bool found = false;
	FILE *f = fopen(path, "r");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "%llu %*s %llu %15s %llu", &wall, &gen, what, &seq) == 4 &&
			strcmp(what, "ckpt") == 0 && seq > after;
	fclose(f);
	return found;
}

START_TEST(primary_runs_the_service_on_its_loop)
{
	struct proc a, b;
	redisContext *c;
	redisReply *r;
	char listen[32], a_kv[32], b_kv[32], why[200];
	uint16_t a_port = pair_free_port(), b_port = pair_free_port();
	Colo__ControlResponse *resp;
	char *dir = colo_test_tmpdir(), rel[PATH_MAX];
	uint64_t before = 0;

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", pair_free_port());
	snprintf(a_kv, sizeof(a_kv), "127.0.0.1:%u", a_port);
	snprintf(b_kv, sizeof(b_kv), "127.0.0.1:%u", b_port);
	proc_start(&b, pair_bin("colo-secondary"), "b", "--guest", "kv", "--guest-listen", b_kv,
		   "--listen", listen, "--ram-mb", "16", NULL);
	snprintf(rel, sizeof(rel), "%s/release.log", dir);
	proc_start(&a, pair_bin("colo-primary"), "a", "--guest", "kv", "--guest-listen", a_kv,
		   "--peer", listen, "--ram-mb", "16", "--output-mode", "buffer",
		   "--release-log", rel, NULL);
	ck_assert(wait_for(cond_protected, &a, 20000));
	ck_assert_msg(!has_thread(a.pid, "guest-kv"), "the primary runs kv on a thread of "
		      "its own");
	ck_assert(ctl_status(&a, NULL, NULL, 0, &before, NULL));
	c = kv_connect(a_port, why, sizeof(why));
	ck_assert_msg(c, "%s", why);
	r = kv_call(c, "SET %s %s", "k", "v1");
	ck_assert_str_eq(text(r), "OK");
	freeReplyObject(r);
	/* The reply waited for a checkpoint begun after the write: its
	 * release is logged before the replies go.  (The status's last
	 * committed is no witness: a release comes at VMSTATE_RECEIVED, and
	 * it moves only at VMSTATE_LOADED, after.) */
	ck_assert_msg(released_after(rel, before), "no release of a checkpoint after %" PRIu64
		      " in the release log", before);
	redisFree(c);

	resp = ctl(&b, COLO__CONTROL_REQUEST__CMD_FAILOVER, 0, why, sizeof(why));
	ck_assert_msg(resp, "%s", why);
	colo__control_response__free_unpacked(resp, NULL);
	ck_assert(wait_for(cond_primary, &b, 20000));
	ck_assert(proc_stop(&a) >= 0);
	c = kv_connect(b_port, why, sizeof(why));
	ck_assert_msg(c, "%s", why);
	r = kv_call(c, "GET %s", "k");
	ck_assert_str_eq(text(r), "v1");
	freeReplyObject(r);
	redisFree(c);
	ck_assert_msg(!has_thread(b.pid, "guest-kv"), "the promoted secondary runs kv on a "
		      "thread of its own");
	ck_assert_int_eq(proc_stop(&b), 0);
	colo_test_rmdir(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("kv_loss");
	TCase *tc = tcase_create("kv_loss");
	const char *env = getenv("COLO_LOSS_TRIALS");
	int trials = env && atoi(env) > 0 ? atoi(env) : 10;

	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, no_acknowledged_write_is_lost, 0, trials);
	tcase_add_loop_test(tc, compare_no_acknowledged_write_is_lost, 0, trials);
	tcase_add_test(tc, compare_mismatches_lose_nothing);
	tcase_add_test(tc, compare_needs_both_nodes);
	tcase_add_test(tc, checker_sees_loss_without_output_commit);
	tcase_add_test(tc, held_output_is_released_when_the_secondary_is_lost);
	tcase_add_test(tc, primary_runs_the_service_on_its_loop);
	suite_add_tcase(s, tc);
	return colo_test_main(s);
}
