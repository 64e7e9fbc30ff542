/*
 * test_arbiter.c: [arbiter] arbiter = etcd with real processes and a real
 * etcd (tests/etcdsrv.c) on loopback (docs/arbiter.md).
 *
 * Each test starts its own etcd, a kv pair (or a lone primary) with
 * lease-ttl-ms 1000, and drives faults a partition would cause: the
 * primary killed or frozen (SIGSTOP: alive, silent, as behind a
 * partition), etcd frozen, a manual failover.  Assertions are on what
 * the nodes do (roles, generations, exit statuses), on the keys in etcd
 * (read with the project's own etcd client), on what a client sees, and
 * on the release logs: the old primary never releases output after the
 * new one started to.
 */
#include "config.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "clock.h"
#include "etcd.h"
#include "etcdsrv.h"
#include "pair.h"
#include "testutil.h"

#define TTL "1000"

struct node {
	struct proc p;
	uint16_t rep, kv;               /* replication and kv ports */
	char rel[300];                  /* its release log */
};

static struct colo_etcdsrv etcd;
static char cluster[64];

static void need_etcd(void)
{
	char why[256];

	if (!colo_etcdsrv_binary())
		colo_test_skip("etcd is not installed (Debian: etcd-server)");
	if (colo_etcdsrv_start(&etcd, why, sizeof(why)) != 0)
		ck_abort_msg("cannot start etcd: %s", why);
	snprintf(cluster, sizeof(cluster), "t%d", (int)getpid());
}

static void ports(struct node *a, struct node *b)
{
	a->rep = pair_free_port();
	do
		b->rep = pair_free_port();
	while (b->rep == a->rep);
	do
		a->kv = pair_free_port();
	while (a->kv == a->rep || a->kv == b->rep);
	do
		b->kv = pair_free_port();
	while (b->kv == a->rep || b->kv == b->rep || b->kv == a->kv);
}

/* Start node `name` as `role` (colo-primary / colo-secondary), peer `other`. */
static void start(struct node *x, const char *bin, const char *name,
		  const struct node *other, const char *const *extra)
{
	static char listen[64], peer[64], kv[64];
	const char *args[PROC_ARGS_MAX] = { 0 };
	size_t n = 0;

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", x->rep);
	snprintf(peer, sizeof(peer), "127.0.0.1:%u", other->rep);
	snprintf(kv, sizeof(kv), "127.0.0.1:%u", x->kv);
	snprintf(x->rel, sizeof(x->rel), "%s/%s.rel", pair_dir(), name);
	const char *base[] = {
		"--guest", "kv", "--guest-listen", kv, "--listen", listen, "--peer", peer,
		"--heartbeat-timeout-ms", "300", "--checkpoint-interval-ms", "20",
		"--arbiter", "etcd", "--etcd-endpoints", etcd.endpoint, "--lease-ttl-ms", TTL,
		"--cluster", cluster, "--release-log", x->rel, "--log-level", "debug",
	};
	for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++)
		args[n++] = base[i];
	for (size_t i = 0; extra && extra[i]; i++)
		args[n++] = extra[i];
	ck_assert_uint_lt(n, PROC_ARGS_MAX);
	proc_startv(&x->p, pair_bin(bin), name, args);
}

static void start_pair(struct node *a, struct node *b)
{
	ports(a, b);
	start(b, "colo-secondary", "b", a, NULL);
	start(a, "colo-primary", "a", b, NULL);
	ck_assert_msg(proc_wait_state(&a->p, "protected", 20000), "a not protected");
}

/* ---- etcd, read with the project's client ---- */

struct get_wait {
	bool done, present;
	int rc;
	char value[512];
};

static void on_get(void *ud, int rc, const struct colo_etcd_kv *kv, int64_t rev,
		   const char *why)
{
	struct get_wait *w = ud;

	(void)rev;
	(void)why;
	w->done = true;
	w->rc = rc;
	w->present = kv != NULL;
	if (kv)
		snprintf(w->value, sizeof(w->value), "%.*s", (int)kv->value_len,
			 (const char *)kv->value);
}

/* The value of /colo/<cluster>/<name>, "" when absent. */
static void etcd_key(const char *name, char *out, size_t len)
{
	uv_loop_t loop;
	struct colo_etcd *e;
	struct colo_err err;
	struct get_wait w = { 0 };
	char key[128];

	snprintf(key, sizeof(key), "/colo/%s/%s", cluster, name);
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_etcd_new(&loop, etcd.endpoint, 2000, &e, &err), 0);
	ck_assert_int_eq(colo_etcd_get(e, key, on_get, &w), 0);
	while (!w.done)
		uv_run(&loop, UV_RUN_ONCE);
	colo_etcd_close(e);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	ck_assert_msg(w.rc == 0, "reading %s failed: %d", key, w.rc);
	snprintf(out, len, "%s", w.present ? w.value : "");
}

struct key_arg {
	const char *name, *want;
};

static bool cond_key(void *ud)
{
	struct key_arg *k = ud;
	char v[512];

	etcd_key(k->name, v, sizeof(v));
	return strcmp(v, k->want) == 0;
}

static void wait_key(const char *name, const char *want, int ms)
{
	struct key_arg k = { name, want };
	char v[512];

	if (!wait_for(cond_key, &k, ms)) {
		etcd_key(name, v, sizeof(v));
		ck_abort_msg("key %s is '%s', not '%s'", name, v, want);
	}
}

/* ---- status ---- */

struct arb_status {
	char arbiter[256], holder[128], takeover[64], state[64];
	int64_t left_ms;
	uint64_t gen;
	Colo__Role role;
};

static bool arb_status(const struct proc *p, struct arb_status *s)
{
	char err[256];
	Colo__ControlResponse *r = ctl(p, COLO__CONTROL_REQUEST__CMD_STATUS, 0, err,
				       sizeof(err));

	if (!r || !r->ok || !r->status) {
		if (r)
			colo__control_response__free_unpacked(r, NULL);
		return false;
	}
	snprintf(s->arbiter, sizeof(s->arbiter), "%s", r->status->arbiter);
	snprintf(s->holder, sizeof(s->holder), "%s", r->status->lease_holder);
	snprintf(s->takeover, sizeof(s->takeover), "%s", r->status->takeover);
	snprintf(s->state, sizeof(s->state), "%s", r->status->state);
	s->left_ms = r->status->lease_left_ms;
	s->gen = r->status->generation;
	s->role = r->status->role;
	colo__control_response__free_unpacked(r, NULL);
	return true;
}

struct st_arg {
	struct proc *p;
	const char *holder, *takeover;
};

static bool cond_arb(void *ud)
{
	struct st_arg *a = ud;
	struct arb_status s;

	return arb_status(a->p, &s) && strcmp(s.holder, a->holder) == 0 &&
	       (!a->takeover || strcmp(s.takeover, a->takeover) == 0);
}

/* ---- clients ---- */

static redisContext *kv_open(uint16_t port, int timeout_ms)
{
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);

	if (!c || c->err) {
		if (c)
			redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv);
	return c;
}

/* SET key val; true when OK came back within the timeout. */
static bool kv_set(uint16_t port, const char *key, const char *val, int timeout_ms)
{
	redisContext *c = kv_open(port, timeout_ms);
	redisReply *r;
	bool ok;

	if (!c)
		return false;
	r = redisCommand(c, "SET %s %s", key, val);
	ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0;
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return ok;
}

/* GET key into out ("" for nil); false when no answer came. */
static bool kv_get(uint16_t port, const char *key, char *out, size_t len)
{
	redisContext *c = kv_open(port, 5000);
	redisReply *r;
	bool ok;

	if (!c)
		return false;
	r = redisCommand(c, "GET %s", key);
	ok = r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL);
	if (ok)
		snprintf(out, len, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return ok;
}

/* ---- release logs ---- */

/* First and last release (ckpt/alone/open) in a log, wall ns; false if none. */
static bool release_span(const char *file, uint64_t from_ns, uint64_t *first,
			 uint64_t *last)
{
	FILE *f = fopen(file, "r");
	char line[400], node[64], what[32];
	uint64_t t, gen, seq;
	bool any = false;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%" SCNu64 " %63s %" SCNu64 " %31s %" SCNu64, &t, node, &gen,
			   what, &seq) != 5 || t < from_ns)
			continue;
		if (strcmp(what, "ckpt") && strcmp(what, "alone") && strcmp(what, "open"))
			continue;
		if (!any)
			*first = t;
		*last = t;
		any = true;
	}
	fclose(f);
	return any;
}

/* Stop what runs: each must exit 0 (clean, and no leak under ASan). */
static void stop_all(struct node *a, struct node *b)
{
	int sa = 0, sb = 0;

	if (a && !a->p.exited && (sa = proc_stop(&a->p)) != 0)
		proc_dump_log(&a->p);
	if (b && !b->p.exited && (sb = proc_stop(&b->p)) != 0)
		proc_dump_log(&b->p);
	colo_etcdsrv_stop(&etcd);
	ck_assert_int_eq(sa, 0);
	ck_assert_int_eq(sb, 0);
}

/* ---- tests ---- */

/* The primary holds the leader key; once protected, the sync key names
 * its secondary; both nodes' status say so. */
START_TEST(claims_and_names_its_secondary)
{
	struct node a = { 0 }, b = { 0 };
	struct st_arg sa = { &a.p, "a (generation 1)", "b" };
	struct st_arg sb = { &b.p, "a (generation 1)", "b" };
	struct arb_status s;
	char v[512];

	need_etcd();
	start_pair(&a, &b);
	wait_key("sync", "{\"generation\":1,\"secondary\":\"b\"}", 10000);
	etcd_key("leader", v, sizeof(v));
	ck_assert_str_eq(v, "{\"node\":\"a\",\"generation\":1,\"ttl_ms\":1000}");
	ck_assert_msg(wait_for(cond_arb, &sa, 5000), "a's status");
	ck_assert_msg(wait_for(cond_arb, &sb, 5000), "b's status");
	ck_assert(arb_status(&a.p, &s));
	ck_assert_msg(strstr(s.arbiter, "holding") && strstr(s.arbiter, etcd.endpoint),
		      "arbiter: %s", s.arbiter);
	ck_assert_int_gt(s.left_ms, 0);
	ck_assert_int_le(s.left_ms, 750);
	ck_assert(arb_status(&b.p, &s));
	ck_assert_int_eq(s.left_ms, -1);
	/* Acknowledged writes went out on checkpoints. */
	ck_assert(kv_set(a.kv, "k", "v", 5000));
	stop_all(&a, &b);
}
END_TEST

/* SIGTERM of the primary gives its lease back: the secondary finds the
 * leader key gone and serves after one heartbeat timeout, not the TTL. */
START_TEST(clean_stop_gives_the_lease_back)
{
	struct node a = { 0 }, b = { 0 };
	char v[16];

	need_etcd();
	start_pair(&a, &b);
	wait_key("sync", "{\"generation\":1,\"secondary\":\"b\"}", 10000);
	ck_assert(kv_set(a.kv, "k", "v", 5000));
	ck_assert_int_eq(proc_stop(&a.p), 0);
	ck_assert(proc_log_has(&a.p, "arbiter: lease given back"));
	wait_key("leader", "{\"node\":\"b\",\"generation\":2,\"ttl_ms\":1000}", 10000);
	ck_assert_msg(wait_for(cond_primary, &b.p, 10000), "b did not take over");
	ck_assert(proc_log_has(&b.p, "won generation 2 in etcd from a (its lease had ended)"));
	ck_assert(proc_log_has(&b.p, "serving in 300 ms"));
	ck_assert(kv_get(b.kv, "k", v, sizeof(v)));
	ck_assert_str_eq(v, "v");
	stop_all(NULL, &b);
}
END_TEST

/* kill -9 of the primary: the secondary wins generation 2 in etcd, waits
 * out the old lease, and serves everything that was acknowledged. */
START_TEST(takes_over_through_the_key)
{
	struct node a = { 0 }, b = { 0 };
	struct st_arg sb = { &b.p, "b (generation 2)", "none" };
	char v[512];

	need_etcd();
	start_pair(&a, &b);
	wait_key("sync", "{\"generation\":1,\"secondary\":\"b\"}", 10000);
	ck_assert(kv_set(a.kv, "before", "kill", 5000));
	proc_signal(&a.p, SIGKILL);
	proc_wait(&a.p, 5000);
	ck_assert_msg(wait_for(cond_primary, &b.p, 10000), "b did not take over");
	ck_assert_msg(wait_for(cond_arb, &sb, 5000), "b's status after the takeover");
	ck_assert(proc_log_has(&b.p, "won generation 2 in etcd from a, whose lease held "
			       "the leader key: waiting it out"));
	etcd_key("leader", v, sizeof(v));
	ck_assert_str_eq(v, "{\"node\":\"b\",\"generation\":2,\"ttl_ms\":1000}");
	etcd_key("sync", v, sizeof(v));
	ck_assert_str_eq(v, "{\"generation\":2,\"secondary\":\"\"}");
	ck_assert(kv_get(b.kv, "before", v, sizeof(v)));
	ck_assert_str_eq(v, "kill");
	/* Alone, with the key: it serves. */
	ck_assert(kv_set(b.kv, "after", "x", 5000));
	/* The old primary, back with its old generation, is refused. */
	start(&a, "colo-primary", "a", &b, NULL);
	ck_assert_msg(proc_wait(&a.p, 10000), "a stale primary kept running");
	ck_assert_int_eq(a.p.exit_status, 5);
	/* Whichever it heard first: etcd's leader key or b's heartbeat. */
	ck_assert(proc_log_has(&a.p, "holds generation 2 (this node's is 1): superseded") ||
		  proc_log_has(&a.p, "b has generation 2, newer than ours (1)"));
	stop_all(NULL, &b);
}
END_TEST

/*
 * The primary frozen (alive but silent, as behind a partition): the
 * secondary takes over after the old lease's TTL; the old primary, woken,
 * stops (exit 5), and none of its releases comes after the new primary's
 * first.
 */
/*
 * a frozen since t0: b takes over and serves `writes` SETs; a, woken,
 * stops (exit 5), and none of its releases (it must have some when
 * a_released) comes after b's first since t0.
 */
static void takeover_then_wake(struct node *a, struct node *b, int writes, uint64_t t0,
			       bool a_released)
{
	uint64_t a_first, a_last, b_first, b_last;
	char key[32];

	ck_assert_msg(wait_for(cond_primary, &b->p, 15000), "b did not take over");
	for (int i = 0; i < writes; i++) {
		snprintf(key, sizeof(key), "b%d", i);
		ck_assert(kv_set(b->kv, key, "2", 5000));
	}
	proc_signal(&a->p, SIGCONT);
	ck_assert_msg(proc_wait(&a->p, 15000), "the old primary kept running");
	ck_assert_int_eq(a->p.exit_status, 5);
	ck_assert(release_span(b->rel, t0, &b_first, &b_last));
	if (release_span(a->rel, 0, &a_first, &a_last))
		ck_assert_msg(a_last < b_first, "a released at %" PRIu64 ", after b's first "
			      "release at %" PRIu64, a_last, b_first);
	else
		ck_assert_msg(!a_released, "a released nothing");
}

START_TEST(frozen_primary_never_serves_beside_the_new_one)
{
	struct node a = { 0 }, b = { 0 };
	uint64_t t0;
	int acked = 0;
	char key[32];

	need_etcd();
	start_pair(&a, &b);
	wait_key("sync", "{\"generation\":1,\"secondary\":\"b\"}", 10000);
	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "a%d", i);
		acked += kv_set(a.kv, key, "1", 5000);
	}
	ck_assert_int_eq(acked, 20);
	t0 = colo_wall_ns();
	proc_signal(&a.p, SIGSTOP);
	takeover_then_wake(&a, &b, 20, t0, true);
	for (int i = 0; i < 20; i++) {
		char v[16];

		snprintf(key, sizeof(key), "a%d", i);
		ck_assert(kv_get(b.kv, key, v, sizeof(v)));
		ck_assert_str_eq(v, "1");
	}
	stop_all(NULL, &b);
}
END_TEST

/*
 * The same freeze, but at the worst moment: right after a checkpoint went
 * out (--fault stop-at=sent), so that the secondary's acknowledgment of it
 * waits in the frozen primary's socket while the secondary takes over and
 * serves.  Woken, the old primary reads an acknowledgment its lease no
 * longer covers: it must not release on it (it says so), and stops (exit
 * 5).  Before the rule it released there, after the new primary's first
 * release.
 */
START_TEST(frozen_with_an_acknowledgment_in_flight)
{
	static const char *const fault[] = { "--fault", "stop-at=sent,after=40", NULL };
	struct node a = { 0 }, b = { 0 };
	uint64_t t0;

	need_etcd();
	ports(&a, &b);
	start(&b, "colo-secondary", "b", &a, NULL);
	start(&a, "colo-primary", "a", &b, fault);
	ck_assert_msg(proc_wait_state(&a.p, "protected", 20000), "a not protected");
	ck_assert(kv_set(a.kv, "before", "1", 5000));
	ck_assert_msg(wait_for(cond_stopped, &a.p, 20000), "a did not stop at the fault");
	t0 = colo_wall_ns();
	takeover_then_wake(&a, &b, 5, t0, false);
	stop_all(NULL, &b);
}
END_TEST

/*
 * A primary alone (its secondary gone) serves while its lease is valid;
 * with etcd silent it stops releasing before the lease could have ended
 * in etcd, and serves again once etcd answers.
 */
START_TEST(alone_primary_fences_itself)
{
	struct node a = { 0 }, b = { 0 };
	struct arb_status s;
	uint64_t first, last, t_stop, t_cont;
	redisContext *c;
	redisReply *r;

	need_etcd();
	start_pair(&a, &b);
	wait_key("sync", "{\"generation\":1,\"secondary\":\"b\"}", 10000);
	proc_signal(&b.p, SIGKILL);
	proc_wait(&b.p, 5000);
	wait_key("sync", "{\"generation\":1,\"secondary\":\"\"}", 10000);
	ck_assert(kv_set(a.kv, "alone", "1", 5000));
	ck_assert(release_span(a.rel, 0, &first, &last));
	kill(etcd.pid, SIGSTOP);
	t_stop = colo_wall_ns();
	/* Past the lease's validity by a's clock (1000 - 250 ms after the
	 * last renewal was sent). */
	usleep(1200 * 1000);
	ck_assert(arb_status(&a.p, &s));
	ck_assert_int_eq(s.left_ms, 0);
	c = kv_open(a.kv, 800);
	ck_assert_ptr_nonnull(c);
	r = redisCommand(c, "SET %s %s", "held", "1");
	ck_assert_msg(r == NULL, "a answered with no valid lease");
	redisFree(c);
	t_cont = colo_wall_ns();
	kill(etcd.pid, SIGCONT);
	/* No release between the lease's end by a's clock and etcd's return. */
	ck_assert(release_span(a.rel, t_stop + 1000000000ull, &first, &last) == false ||
		  first > t_cont);
	/* Back: it claims the key again and serves. */
	ck_assert(kv_set(a.kv, "again", "1", 15000));
	stop_all(&a, NULL);
}
END_TEST

/* No key, no promotion: with etcd silent the secondary does not take
 * over from a dead primary; once etcd answers, it does. */
START_TEST(secondary_never_promotes_without_the_key)
{
	struct node a = { 0 }, b = { 0 };
	Colo__Role role;
	struct wait_arg w = { &b.p, 0, "not taking over" };

	need_etcd();
	start_pair(&a, &b);
	wait_key("sync", "{\"generation\":1,\"secondary\":\"b\"}", 10000);
	ck_assert(kv_set(a.kv, "k", "v", 5000));
	kill(etcd.pid, SIGSTOP);
	proc_signal(&a.p, SIGKILL);
	proc_wait(&a.p, 5000);
	ck_assert_msg(wait_for(cond_log, &w, 10000), "b did not try");
	usleep(1500 * 1000);
	ck_assert(ctl_status(&b.p, &role, NULL, 0, NULL, NULL));
	ck_assert_int_eq(role, COLO__ROLE__ROLE_SECONDARY);
	kill(etcd.pid, SIGCONT);
	ck_assert_msg(wait_for(cond_primary, &b.p, 15000), "b did not take over once "
		      "etcd answered");
	{
		char v[16];

		ck_assert(kv_get(b.kv, "k", v, sizeof(v)));
		ck_assert_str_eq(v, "v");
	}
	stop_all(NULL, &b);
}
END_TEST

/* colo-ctl failover goes through the key: the live primary is superseded. */
START_TEST(manual_failover_through_the_key)
{
	struct node a = { 0 }, b = { 0 };
	char err[256];
	Colo__ControlResponse *r;
	uint64_t gen = 0;

	need_etcd();
	start_pair(&a, &b);
	wait_key("sync", "{\"generation\":1,\"secondary\":\"b\"}", 10000);
	r = ctl(&b.p, COLO__CONTROL_REQUEST__CMD_FAILOVER, 0, err, sizeof(err));
	ck_assert_msg(r && r->ok, "failover: %s", r ? r->error : err);
	ck_assert_msg(strstr(r->message, "if the arbiter gives this node the cluster"),
		      "%s", r->message);
	colo__control_response__free_unpacked(r, NULL);
	if (!wait_for(cond_primary, &b.p, 10000)) {
		proc_dump_log(&b.p);
		proc_dump_log(&a.p);
		ck_abort_msg("b did not take over");
	}
	ck_assert(ctl_status(&b.p, NULL, NULL, 0, NULL, &gen));
	ck_assert_uint_eq(gen, 2);
	ck_assert_msg(proc_wait(&a.p, 10000), "a kept running");
	ck_assert_int_eq(a.p.exit_status, 5);
	stop_all(NULL, &b);
}
END_TEST

/*
 * A primary that ran alone acknowledged writes its old secondary lacks:
 * that secondary may not take over when the primary dies.
 */
START_TEST(unnamed_secondary_may_not_take_over)
{
	struct node a = { 0 }, b = { 0 };
	struct wait_arg w = { &b.p, 0, "may not take over" };
	Colo__Role role;

	need_etcd();
	start_pair(&a, &b);
	wait_key("sync", "{\"generation\":1,\"secondary\":\"b\"}", 10000);
	/* b frozen: a loses it, says so in etcd, and serves alone. */
	proc_signal(&b.p, SIGSTOP);
	wait_key("sync", "{\"generation\":1,\"secondary\":\"\"}", 10000);
	ck_assert(kv_set(a.kv, "only-on-a", "1", 5000));
	proc_signal(&a.p, SIGKILL);
	proc_wait(&a.p, 5000);
	proc_signal(&b.p, SIGCONT);
	ck_assert_msg(wait_for(cond_log, &w, 10000), "b's log");
	ck_assert(proc_log_has(&b.p, "the sync key says generation 1, secondary '': this "
			       "node (generation 1) may not take over"));
	usleep(1500 * 1000);
	ck_assert(ctl_status(&b.p, &role, NULL, 0, NULL, NULL));
	ck_assert_int_eq(role, COLO__ROLE__ROLE_SECONDARY);
	stop_all(NULL, &b);
}
END_TEST

/* arbiter = none off loopback, with neither a fence-command nor
 * --allow-split-brain: the secondary refuses to start. */
START_TEST(split_brain_needs_consent)
{
	struct proc p = { 0 };
	const char *key = pair_keyfile("k");
	char listen[64], kv[64], text[300];
	const char *args[] = { "--listen", listen, "--peer", "127.0.0.1:2",
			       "--guest-listen", kv, "--psk-file", key, NULL, NULL };

	snprintf(listen, sizeof(listen), "0.0.0.0:%u", pair_free_port());
	snprintf(kv, sizeof(kv), "127.0.0.1:%u", pair_free_port());
	snprintf(text, sizeof(text), "listen %s is not loopback and there is neither an "
		 "arbiter nor a fence-command: a partition would let both nodes serve (set "
		 "[arbiter] arbiter = etcd, or fence-command, or --allow-split-brain)",
		 listen);

	proc_startv(&p, pair_bin("colo-secondary"), "s", args);
	ck_assert(proc_wait(&p, 10000));
	ck_assert_int_eq(p.exit_status, 2);
	ck_assert_msg(proc_log_has(&p, text), "no refusal in the log");
	args[8] = "--allow-split-brain";
	proc_startv(&p, pair_bin("colo-secondary"), "s", args);
	ck_assert_msg(proc_wait_state(&p, "waiting", 10000), "did not start");
	ck_assert_int_eq(proc_stop(&p), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("arbiter");
	TCase *t = tcase_create("etcd");

	tcase_set_timeout(t, 120);
	tcase_add_test(t, claims_and_names_its_secondary);
	tcase_add_test(t, clean_stop_gives_the_lease_back);
	tcase_add_test(t, takes_over_through_the_key);
	tcase_add_test(t, frozen_primary_never_serves_beside_the_new_one);
	tcase_add_test(t, frozen_with_an_acknowledgment_in_flight);
	tcase_add_test(t, alone_primary_fences_itself);
	tcase_add_test(t, secondary_never_promotes_without_the_key);
	tcase_add_test(t, manual_failover_through_the_key);
	tcase_add_test(t, unnamed_secondary_may_not_take_over);
	tcase_add_test(t, split_brain_needs_consent);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
