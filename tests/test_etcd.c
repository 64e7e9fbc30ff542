/*
 * test_etcd.c: the etcd client (common/node/etcd.c) against a real etcd
 * member on loopback (tests/etcdsrv.c), and against listeners of the test's
 * own that refuse, never answer, or answer wrong.
 *
 * What must hold: leases are granted, kept alive and revoked, and a key on
 * a lease goes with it (revoked, or its TTL run out); reads give absent and
 * present keys with their revisions; transactions take the right branch
 * and read back what the failure branch asked for; a dead first endpoint
 * costs one failed call that names it and the next call goes to the next
 * endpoint; a silent listener times the call out, a wrong one fails it
 * with a reason that says what came; closing with calls in flight calls
 * nothing back and leaks nothing (the sanitizer build checks that).
 *
 * Waits are on the callbacks, with a 20 s deadline far beyond them; the
 * only bounds on time are generous ones (a 300 ms timeout fires after at
 * least 200 ms and before 10 s).  Skipped as a whole without an etcd binary.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "etcd.h"
#include "etcdsrv.h"
#include "testutil.h"

#define DEADLINE_MS 20000

static struct colo_etcdsrv srv;
static uv_loop_t loop;
static uv_timer_t guard;
static bool guard_fired;
static struct colo_etcd *cli;

/* ---- a real etcd for the whole suite (unchecked fixture: the parent) ---- */

static void srv_up(void)
{
	char why[512];

	if (colo_etcdsrv_start(&srv, why, sizeof(why)) != 0) {
		printf("Bail out! etcd: %s\n", why);
		exit(EXIT_FAILURE);
	}
}

static void srv_down(void)
{
	colo_etcdsrv_stop(&srv);
}

/* ---- a loop and a client per test ---- */

static void guard_cb(uv_timer_t *t)
{
	(void)t;
	guard_fired = true;
}

static void loop_up(void)
{
	struct colo_err err = { 0 };

	ck_assert_int_eq(uv_loop_init(&loop), 0);
	uv_timer_init(&loop, &guard);
	ck_assert_msg(colo_etcd_new(&loop, srv.endpoint, 5000, &cli, &err) == 0, "%s", err.msg);
}

static void loop_down(void)
{
	colo_etcd_close(cli);
	cli = NULL;
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	/* Every handle closed: the client freed itself. */
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}

/* Run the loop until *n reaches want (or the deadline: a failure). */
static void wait_for(const int *n, int want)
{
	guard_fired = false;
	uv_timer_start(&guard, guard_cb, DEADLINE_MS, 0);
	while (*n < want && !guard_fired)
		uv_run(&loop, UV_RUN_ONCE);
	uv_timer_stop(&guard);
	ck_assert_msg(*n >= want, "%d of %d answers within %d ms", *n, want, DEADLINE_MS);
}

/* Run the loop for ms, whatever happens. */
static void run_for(unsigned ms)
{
	guard_fired = false;
	uv_timer_start(&guard, guard_cb, ms, 0);
	while (!guard_fired)
		uv_run(&loop, UV_RUN_ONCE);
}

/* ---- what the callbacks saw ---- */

struct kvcopy {
	bool present;
	char key[128];
	char value[256];
	size_t value_len;
	bool value_terminated;
	int64_t create_revision, mod_revision, version, lease;
};

struct res {
	int n;
	int rc;
	char why[512];
	int64_t id, ttl, rev;
	bool succeeded;
	size_t nkvs;
	struct kvcopy kv[4];
};

static void res_common(struct res *r, int rc, const char *why)
{
	r->n++;
	r->rc = rc;
	snprintf(r->why, sizeof(r->why), "%s", why != NULL ? why : "");
	ck_assert_msg((rc == 0) == (why == NULL), "rc %d with why \"%s\"", rc, r->why);
}

static void copy_kv(struct kvcopy *c, const struct colo_etcd_kv *kv)
{
	memset(c, 0, sizeof(*c));
	if (kv == NULL)
		return;
	c->present = true;
	snprintf(c->key, sizeof(c->key), "%s", kv->key);
	ck_assert_uint_lt(kv->value_len, sizeof(c->value));
	memcpy(c->value, kv->value, kv->value_len);
	c->value_len = kv->value_len;
	c->value_terminated = kv->value[kv->value_len] == '\0';
	c->create_revision = kv->create_revision;
	c->mod_revision = kv->mod_revision;
	c->version = kv->version;
	c->lease = kv->lease;
}

static void grant_cb(void *ud, int rc, int64_t id, int64_t ttl_s, const char *why)
{
	struct res *r = ud;

	res_common(r, rc, why);
	r->id = id;
	r->ttl = ttl_s;
}

static void keepalive_cb(void *ud, int rc, int64_t ttl_s, const char *why)
{
	struct res *r = ud;

	res_common(r, rc, why);
	r->ttl = ttl_s;
}

static void done_cb(void *ud, int rc, const char *why)
{
	res_common(ud, rc, why);
}

static void get_cb(void *ud, int rc, const struct colo_etcd_kv *kv, int64_t rev, const char *why)
{
	struct res *r = ud;

	res_common(r, rc, why);
	r->rev = rev;
	copy_kv(&r->kv[0], kv);
}

static void txn_cb(void *ud, int rc, bool succeeded, int64_t rev,
		   const struct colo_etcd_kv *const *kvs, size_t n, const char *why)
{
	struct res *r = ud;

	res_common(r, rc, why);
	r->succeeded = succeeded;
	r->rev = rev;
	r->nkvs = n;
	ck_assert_uint_le(n, 4);
	for (size_t i = 0; i < n; i++) {
		if (succeeded)
			ck_assert_ptr_null(kvs[i]);
		copy_kv(&r->kv[i], kvs[i]);
	}
}

/* ---- blocking helpers for the tests (the loop runs inside) ---- */

static struct res do_get(const char *key)
{
	struct res r = { 0 };

	ck_assert_int_eq(colo_etcd_get(cli, key, get_cb, &r), 0);
	ck_assert_int_eq(r.n, 0);      /* never from inside the starter */
	wait_for(&r.n, 1);
	return r;
}

static struct res do_txn(struct colo_etcd_txn *t)
{
	struct res r = { 0 };

	ck_assert_int_eq(colo_etcd_txn_run(cli, t, txn_cb, &r), 0);
	ck_assert_int_eq(r.n, 0);
	wait_for(&r.n, 1);
	return r;
}

static struct res do_put(const char *key, const char *value, int64_t lease)
{
	struct colo_etcd_txn *t = colo_etcd_txn_new();

	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(colo_etcd_txn_put(t, key, value, strlen(value), lease), 0);
	return do_txn(t);
}

static struct res do_grant(int64_t ttl)
{
	struct res r = { 0 };

	ck_assert_int_eq(colo_etcd_grant(cli, ttl, grant_cb, &r), 0);
	ck_assert_int_eq(r.n, 0);
	wait_for(&r.n, 1);
	return r;
}

static struct res do_keepalive(int64_t id)
{
	struct res r = { 0 };

	ck_assert_int_eq(colo_etcd_keepalive(cli, id, keepalive_cb, &r), 0);
	ck_assert_int_eq(r.n, 0);
	wait_for(&r.n, 1);
	return r;
}

static struct res do_revoke(int64_t id)
{
	struct res r = { 0 };

	ck_assert_int_eq(colo_etcd_revoke(cli, id, done_cb, &r), 0);
	ck_assert_int_eq(r.n, 0);
	wait_for(&r.n, 1);
	return r;
}

/* ---- against etcd ---- */

START_TEST(lease_grant_keepalive_revoke)
{
	struct res g, r;

	g = do_grant(30);
	ck_assert_msg(g.rc == 0, "%s", g.why);
	ck_assert_int_ne(g.id, 0);
	ck_assert_int_eq(g.ttl, 30);

	r = do_put("/t/lease/key", "held", g.id);
	ck_assert_msg(r.rc == 0 && r.succeeded, "%s", r.why);
	r = do_get("/t/lease/key");
	ck_assert(r.kv[0].present);
	ck_assert_int_eq(r.kv[0].lease, g.id);

	r = do_keepalive(g.id);
	ck_assert_msg(r.rc == 0, "%s", r.why);
	ck_assert_int_gt(r.ttl, 0);
	ck_assert_int_le(r.ttl, 30);

	r = do_revoke(g.id);
	ck_assert_msg(r.rc == 0, "%s", r.why);
	r = do_get("/t/lease/key");
	ck_assert_int_eq(r.rc, 0);
	ck_assert(!r.kv[0].present);

	/* A lease that is gone: keepalive answers, with no TTL. */
	r = do_keepalive(g.id);
	ck_assert_msg(r.rc == 0, "%s", r.why);
	ck_assert_int_le(r.ttl, 0);
	/* Revoking it again is etcd's "not found", with etcd's words. */
	r = do_revoke(g.id);
	ck_assert_int_eq(r.rc, -ENOENT);
	ck_assert_msg(strstr(r.why, srv.endpoint) != NULL &&
		      strstr(r.why, "answered HTTP 404: etcdserver: requested lease not found"),
		      "%s", r.why);
	/* A put on it fails the transaction the same way. */
	r = do_put("/t/lease/key", "x", g.id);
	ck_assert_int_eq(r.rc, -ENOENT);

	/* revoke with no callback */
	g = do_grant(30);
	ck_assert_int_eq(colo_etcd_revoke(cli, g.id, NULL, NULL), 0);
	r = do_keepalive(g.id);   /* after the revoke: one connection, in order */
	ck_assert_int_eq(r.rc, 0);
}
END_TEST

START_TEST(get_absent_and_present)
{
	struct res a, p, r;
	static const char bin[] = { 'a', '\0', 'b' };
	struct colo_etcd_txn *t;

	a = do_get("/t/get/none");
	ck_assert_msg(a.rc == 0, "%s", a.why);
	ck_assert(!a.kv[0].present);
	ck_assert_int_gt(a.rev, 0);

	p = do_put("/t/get/k", "v1", 0);
	ck_assert(p.succeeded);
	ck_assert_int_gt(p.rev, a.rev);
	r = do_get("/t/get/k");
	ck_assert(r.kv[0].present);
	ck_assert_str_eq(r.kv[0].key, "/t/get/k");
	ck_assert_uint_eq(r.kv[0].value_len, 2);
	ck_assert(memcmp(r.kv[0].value, "v1", 2) == 0 && r.kv[0].value_terminated);
	ck_assert_int_eq(r.kv[0].create_revision, p.rev);
	ck_assert_int_eq(r.kv[0].mod_revision, p.rev);
	ck_assert_int_eq(r.kv[0].version, 1);
	ck_assert_int_eq(r.kv[0].lease, 0);
	ck_assert_int_eq(r.rev, p.rev);

	p = do_put("/t/get/k", "v22", 0);
	r = do_get("/t/get/k");
	ck_assert_uint_eq(r.kv[0].value_len, 3);
	ck_assert_int_eq(r.kv[0].mod_revision, p.rev);
	ck_assert_int_gt(r.kv[0].mod_revision, r.kv[0].create_revision);
	ck_assert_int_eq(r.kv[0].version, 2);

	/* Bytes with a NUL, and the empty value (which etcd leaves out). */
	t = colo_etcd_txn_new();
	ck_assert_int_eq(colo_etcd_txn_put(t, "/t/get/bin", bin, sizeof(bin), 0), 0);
	ck_assert_int_eq(colo_etcd_txn_put(t, "/t/get/empty", "", 0, 0), 0);
	ck_assert(do_txn(t).succeeded);
	r = do_get("/t/get/bin");
	ck_assert_uint_eq(r.kv[0].value_len, 3);
	ck_assert(memcmp(r.kv[0].value, bin, 3) == 0);
	r = do_get("/t/get/empty");
	ck_assert(r.kv[0].present);
	ck_assert_uint_eq(r.kv[0].value_len, 0);
	ck_assert(r.kv[0].value_terminated);
}
END_TEST

START_TEST(txn_branches)
{
	struct colo_etcd_txn *t;
	struct res r, first;
	int64_t mod;

	/* create_revision 0: the key is absent, so the put happens. */
	t = colo_etcd_txn_new();
	ck_assert_int_eq(colo_etcd_txn_create_rev_eq(t, "/t/txn/k", 0), 0);
	ck_assert_int_eq(colo_etcd_txn_put(t, "/t/txn/k", "a", 1, 0), 0);
	ck_assert_int_eq(colo_etcd_txn_else_get(t, "/t/txn/k"), 0);
	first = do_txn(t);
	ck_assert_msg(first.rc == 0, "%s", first.why);
	ck_assert(first.succeeded);
	ck_assert_uint_eq(first.nkvs, 1);
	ck_assert(!first.kv[0].present);

	/* Again: the key is there now, the else branch reads it back. */
	t = colo_etcd_txn_new();
	ck_assert_int_eq(colo_etcd_txn_create_rev_eq(t, "/t/txn/k", 0), 0);
	ck_assert_int_eq(colo_etcd_txn_put(t, "/t/txn/k", "lost", 4, 0), 0);
	ck_assert_int_eq(colo_etcd_txn_else_get(t, "/t/txn/k"), 0);
	ck_assert_int_eq(colo_etcd_txn_else_get(t, "/t/txn/none"), 0);
	r = do_txn(t);
	ck_assert_msg(r.rc == 0, "%s", r.why);
	ck_assert(!r.succeeded);
	ck_assert_int_eq(r.rev, first.rev);
	ck_assert_uint_eq(r.nkvs, 2);
	ck_assert(r.kv[0].present);
	ck_assert_str_eq(r.kv[0].key, "/t/txn/k");
	ck_assert_str_eq(r.kv[0].value, "a");
	ck_assert_int_eq(r.kv[0].create_revision, first.rev);
	ck_assert(!r.kv[1].present);
	mod = r.kv[0].mod_revision;

	/* mod_revision: the right one lets the put through, a stale one not. */
	t = colo_etcd_txn_new();
	ck_assert_int_eq(colo_etcd_txn_mod_rev_eq(t, "/t/txn/k", mod), 0);
	ck_assert_int_eq(colo_etcd_txn_put(t, "/t/txn/k", "b", 1, 0), 0);
	r = do_txn(t);
	ck_assert(r.succeeded);
	ck_assert_int_gt(r.rev, mod);
	ck_assert_uint_eq(r.nkvs, 0);
	t = colo_etcd_txn_new();
	ck_assert_int_eq(colo_etcd_txn_mod_rev_eq(t, "/t/txn/k", mod), 0);
	ck_assert_int_eq(colo_etcd_txn_put(t, "/t/txn/k", "c", 1, 0), 0);
	ck_assert_int_eq(colo_etcd_txn_else_get(t, "/t/txn/k"), 0);
	r = do_txn(t);
	ck_assert(!r.succeeded);
	ck_assert_str_eq(r.kv[0].value, "b");

	/* value compare, several compares (all must hold), delete. */
	t = colo_etcd_txn_new();
	ck_assert_int_eq(colo_etcd_txn_value_eq(t, "/t/txn/k", "b", 1), 0);
	ck_assert_int_eq(colo_etcd_txn_create_rev_eq(t, "/t/txn/none", 0), 0);
	ck_assert_int_eq(colo_etcd_txn_mod_rev_eq(t, "/t/txn/k", mod), 0);
	ck_assert_int_eq(colo_etcd_txn_delete(t, "/t/txn/k"), 0);
	ck_assert(!do_txn(t).succeeded);
	t = colo_etcd_txn_new();
	ck_assert_int_eq(colo_etcd_txn_value_eq(t, "/t/txn/k", "b", 1), 0);
	ck_assert_int_eq(colo_etcd_txn_create_rev_eq(t, "/t/txn/none", 0), 0);
	ck_assert_int_eq(colo_etcd_txn_delete(t, "/t/txn/k"), 0);
	ck_assert(do_txn(t).succeeded);
	ck_assert(!do_get("/t/txn/k").kv[0].present);
	/* A value compare on an absent key does not hold. */
	t = colo_etcd_txn_new();
	ck_assert_int_eq(colo_etcd_txn_value_eq(t, "/t/txn/k", "b", 1), 0);
	ck_assert(!do_txn(t).succeeded);
	/* A transaction freed unrun. */
	t = colo_etcd_txn_new();
	ck_assert_int_eq(colo_etcd_txn_put(t, "/t/txn/k", "b", 1, 0), 0);
	colo_etcd_txn_free(t);
	colo_etcd_txn_free(NULL);
}
END_TEST

START_TEST(lease_expires)
{
	struct res g, r;
	int polls = 0;

	g = do_grant(1);
	ck_assert_msg(g.rc == 0, "%s", g.why);
	ck_assert_int_ge(g.ttl, 1);
	r = do_put("/t/expire/key", "v", g.id);
	ck_assert(r.succeeded);
	ck_assert(do_get("/t/expire/key").kv[0].present);
	/* Not kept alive: it goes within a few TTLs (15 s is far beyond). */
	do {
		run_for(100);
		r = do_get("/t/expire/key");
		ck_assert_int_eq(r.rc, 0);
	} while (r.kv[0].present && ++polls < 150);
	ck_assert_msg(!r.kv[0].present, "the key outlived its %" PRId64 " s lease by 15 s", g.ttl);
	printf("# key gone after %d polls of 100 ms\n", polls);
	r = do_keepalive(g.id);
	ck_assert_int_eq(r.rc, 0);
	ck_assert_int_le(r.ttl, 0);
}
END_TEST

START_TEST(failover_to_next_endpoint)
{
	struct colo_err err = { 0 };
	char eps[256], dead[64];
	uint16_t port = colo_etcdsrv_free_port();
	struct res r;

	ck_assert_uint_ne(port, 0);
	snprintf(dead, sizeof(dead), "http://127.0.0.1:%u", port);
	snprintf(eps, sizeof(eps), " %s/ , %s", dead, srv.endpoint);
	colo_etcd_close(cli);
	ck_assert_msg(colo_etcd_new(&loop, eps, 5000, &cli, &err) == 0, "%s", err.msg);
	ck_assert_str_eq(colo_etcd_endpoint(cli), dead);

	r = do_get("/t/failover");
	ck_assert_int_eq(r.rc, -ECONNREFUSED);
	ck_assert_str_eq(colo_etcd_endpoint(cli), dead);
	{
		char want[128];

		snprintf(want, sizeof(want), "etcd %s: connection refused", dead);
		ck_assert_str_eq(r.why, want);
	}
	r = do_get("/t/failover");
	ck_assert_msg(r.rc == 0, "%s", r.why);
	ck_assert_str_eq(colo_etcd_endpoint(cli), srv.endpoint);
	/* Success stays. */
	r = do_get("/t/failover");
	ck_assert_int_eq(r.rc, 0);
	ck_assert_str_eq(colo_etcd_endpoint(cli), srv.endpoint);
}
END_TEST

START_TEST(bad_endpoints)
{
	struct colo_err err = { 0 };
	struct colo_etcd *e = (void *)1;

	ck_assert_int_eq(colo_etcd_new(&loop, "127.0.0.1:2379", 1000, &e, &err), -EINVAL);
	ck_assert_ptr_null(e);
	ck_assert_str_eq(err.msg, "etcd endpoint \"127.0.0.1:2379\": not http://HOST:PORT");
	colo_err_clear(&err);
	ck_assert_int_eq(colo_etcd_new(&loop, "http://a:1,https://b:2", 1000, &e, &err), -EINVAL);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_etcd_new(&loop, "", 1000, &e, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "etcd endpoints: none given");
	colo_err_clear(&err);
	ck_assert_int_eq(colo_etcd_new(&loop, "http://a:1", 0, &e, &err), -EINVAL);
	colo_etcd_close(NULL);
}
END_TEST

/* ---- listeners of the test's own ---- */

struct fconn {
	uv_tcp_t tcp;            /* first: the handle is the struct */
	uv_write_t w;
	uv_shutdown_t sh;
	struct fake *f;
	bool replied, gone;
};

struct fake {
	uv_tcp_t srv;
	uint16_t port;
	const char *reply;       /* NULL: accept and never answer */
	size_t reply_len;
	struct fconn *conns[16];
	int n;
};

static char rdbuf[65536];

static void fk_alloc(uv_handle_t *h, size_t want, uv_buf_t *b)
{
	(void)h;
	(void)want;
	*b = uv_buf_init(rdbuf, sizeof(rdbuf));
}

static void fk_closed(uv_handle_t *h)
{
	((struct fconn *)h)->gone = true;
}

static void fk_done(uv_write_t *w, int status)
{
	struct fconn *c = w->data;

	(void)status;
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_shutdown(&c->sh, (uv_stream_t *)&c->tcp, NULL);
}

/* Answer once the request has come (so that closing sends no RST), then
 * read on until the client closes. */
static void fk_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct fconn *c = (struct fconn *)s;
	uv_buf_t out;

	(void)b;
	if (n < 0) {
		uv_close((uv_handle_t *)s, fk_closed);
		return;
	}
	if (n > 0 && !c->replied && c->f->reply != NULL) {
		c->replied = true;
		out = uv_buf_init((char *)c->f->reply, (unsigned)c->f->reply_len);
		c->w.data = c;
		uv_write(&c->w, s, &out, 1, fk_done);
	}
}

static void fk_conn(uv_stream_t *srvs, int status)
{
	struct fake *f = srvs->data;
	struct fconn *c;

	ck_assert_int_eq(status, 0);
	ck_assert_int_lt(f->n, 16);
	c = calloc(1, sizeof(*c));
	ck_assert_ptr_nonnull(c);
	c->f = f;
	uv_tcp_init(&loop, &c->tcp);
	ck_assert_int_eq(uv_accept(srvs, (uv_stream_t *)&c->tcp), 0);
	f->conns[f->n++] = c;
	if (f->reply != NULL)
		uv_read_start((uv_stream_t *)&c->tcp, fk_alloc, fk_read);
}

static void fake_start(struct fake *f, const char *reply, size_t len)
{
	struct sockaddr_in a;
	struct sockaddr_storage ss;
	int sl = sizeof(ss);

	memset(f, 0, sizeof(*f));
	f->reply = reply;
	f->reply_len = len;
	uv_ip4_addr("127.0.0.1", 0, &a);
	uv_tcp_init(&loop, &f->srv);
	f->srv.data = f;
	ck_assert_int_eq(uv_tcp_bind(&f->srv, (struct sockaddr *)&a, 0), 0);
	ck_assert_int_eq(uv_listen((uv_stream_t *)&f->srv, 16, fk_conn), 0);
	ck_assert_int_eq(uv_tcp_getsockname(&f->srv, (struct sockaddr *)&ss, &sl), 0);
	f->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void fake_stop(struct fake *f)
{
	bool all;

	for (int i = 0; i < f->n; i++)
		if (!uv_is_closing((uv_handle_t *)&f->conns[i]->tcp))
			uv_close((uv_handle_t *)&f->conns[i]->tcp, fk_closed);
	uv_close((uv_handle_t *)&f->srv, NULL);
	do {
		uv_run(&loop, UV_RUN_NOWAIT);
		all = true;
		for (int i = 0; i < f->n; i++)
			all = all && f->conns[i]->gone;
	} while (!all);
	for (int i = 0; i < f->n; i++)
		free(f->conns[i]);
	uv_run(&loop, UV_RUN_NOWAIT);
}

/* A client of the fake alone, timeout_ms per call. */
static void use_fake(const struct fake *f, uint32_t timeout_ms, char *ep, size_t eplen)
{
	struct colo_err err = { 0 };

	snprintf(ep, eplen, "http://127.0.0.1:%u", f->port);
	colo_etcd_close(cli);
	ck_assert_msg(colo_etcd_new(&loop, ep, timeout_ms, &cli, &err) == 0, "%s", err.msg);
}

START_TEST(silent_listener_times_out)
{
	struct fake f;
	char ep[64], want[128];
	uint64_t t0, ms;
	struct res r;

	fake_start(&f, NULL, 0);
	use_fake(&f, 300, ep, sizeof(ep));
	t0 = uv_hrtime();
	r = do_get("/t/x");
	ms = (uv_hrtime() - t0) / 1000000;
	ck_assert_int_eq(r.rc, -ETIMEDOUT);
	snprintf(want, sizeof(want), "etcd %s: timed out after 300 ms", ep);
	ck_assert_str_eq(r.why, want);
	ck_assert_int_eq(f.n, 1);      /* it did connect: the answer never came */
	ck_assert_msg(ms >= 200 && ms < 10000, "timed out after %" PRIu64 " ms", ms);
	printf("# a 300 ms timeout fired after %" PRIu64 " ms\n", ms);
	fake_stop(&f);
}
END_TEST

struct wrong {
	const char *name;
	const char *head;        /* HTTP head (Content-Length added); NULL: body raw */
	const char *body;
	int rc;
	const char *why;         /* after "etcd EP: " */
};

#define OK200 "HTTP/1.1 200 OK\r\n"

static const struct wrong wrongs[] = {
	{ "not HTTP", NULL, "SSH-2.0-something else\r\n", -EPROTO,
	  "answered something that is not HTTP" },
	{ "not JSON", OK200, "hello", -EBADMSG, "answered something that is not JSON" },
	{ "empty", OK200, "", -EBADMSG, "answered something that is not JSON" },
	{ "JSON not an object", OK200, "[]", -EBADMSG, "answered something that is not JSON" },
	{ "JSON and more", OK200, "{}{}", -EBADMSG, "answered something that is not JSON" },
	{ "bad revision", OK200, "{\"header\":{\"revision\":\"1x\"}}", -EBADMSG,
	  "answered a revision that is not an int64" },
	{ "bad base64", OK200, "{\"kvs\":[{\"key\":\"!\"}]}", -EBADMSG,
	  "answered a key or value not in base64" },
	{ "kvs not an array", OK200, "{\"kvs\":{}}", -EBADMSG,
	  "answered kvs that are not an array" },
	{ "HTTP error, not etcd's", "HTTP/1.1 502 Bad Gateway\r\n", "bad\tgateway\nmore", -EPROTO,
	  "answered HTTP 502: bad?gateway" },
	{ "etcd's error", "HTTP/1.1 503 Service Unavailable\r\n",
	  "{\"error\":\"etcdserver: no leader\",\"message\":\"etcdserver: no leader\",\"code\":14}",
	  -EAGAIN, "answered HTTP 503: etcdserver: no leader" },
	{ "error in a stream", OK200,
	  "{\"error\":{\"grpc_code\":5,\"http_code\":404,\"message\":\"lease gone\"}}",
	  -ENOENT, "answered HTTP 200: lease gone" },
	{ "closed at once", NULL, "", -ECONNRESET, "closed the connection without answering" },
};

START_TEST(wrong_answers)
{
	const struct wrong *w = &wrongs[_i];
	char ep[64], want[256], reply[1024];
	struct fake f;
	struct res r;

	if (w->head != NULL)
		snprintf(reply, sizeof(reply), "%sContent-Length: %zu\r\n\r\n%s", w->head,
			 strlen(w->body), w->body);
	else
		snprintf(reply, sizeof(reply), "%s", w->body);
	fake_start(&f, reply, strlen(reply));
	use_fake(&f, 5000, ep, sizeof(ep));
	r = do_get("/t/x");
	ck_assert_msg(r.rc == w->rc, "%s: rc %d, why %s", w->name, r.rc, r.why);
	snprintf(want, sizeof(want), "etcd %s: %s", ep, w->why);
	ck_assert_str_eq(r.why, want);
	fake_stop(&f);
}
END_TEST

START_TEST(too_large_answer)
{
	size_t body = 2 * 1024 * 1024, hl;
	char head[128], ep[64], want[128];
	char *reply;
	struct fake f;
	struct res r;

	hl = (size_t)snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n",
			      body);
	reply = malloc(hl + body);
	ck_assert_ptr_nonnull(reply);
	memcpy(reply, head, hl);
	memset(reply + hl, ' ', body);
	reply[hl] = '{';
	reply[hl + body - 1] = '}';
	fake_start(&f, reply, hl + body);
	use_fake(&f, 5000, ep, sizeof(ep));
	r = do_get("/t/x");
	ck_assert_int_eq(r.rc, -EMSGSIZE);
	snprintf(want, sizeof(want), "etcd %s: answered more than 1048576 bytes", ep);
	ck_assert_str_eq(r.why, want);
	fake_stop(&f);
	free(reply);
}
END_TEST

/* ---- closing ---- */

static void never_get(void *ud, int rc, const struct colo_etcd_kv *kv, int64_t rev,
		      const char *why)
{
	(void)rc, (void)kv, (void)rev, (void)why;
	(*(int *)ud)++;
}

static void never_grant(void *ud, int rc, int64_t id, int64_t ttl, const char *why)
{
	(void)rc, (void)id, (void)ttl, (void)why;
	(*(int *)ud)++;
}

static void never_txn(void *ud, int rc, bool ok, int64_t rev,
		      const struct colo_etcd_kv *const *kvs, size_t n, const char *why)
{
	(void)rc, (void)ok, (void)rev, (void)kvs, (void)n, (void)why;
	(*(int *)ud)++;
}

static void never_ka(void *ud, int rc, int64_t ttl, const char *why)
{
	(void)rc, (void)ttl, (void)why;
	(*(int *)ud)++;
}

START_TEST(close_with_calls_in_flight)
{
	struct colo_etcd *other;
	struct colo_err err = { 0 };
	struct colo_etcd_txn *t;
	struct fake f;
	char ep[64];
	int calls = 0;

	/* Calls to etcd, not one answered yet: closed before the loop runs. */
	ck_assert_int_eq(colo_etcd_get(cli, "/t/close", never_get, &calls), 0);
	ck_assert_int_eq(colo_etcd_grant(cli, 10, never_grant, &calls), 0);
	ck_assert_int_eq(colo_etcd_keepalive(cli, 1, never_ka, &calls), 0);
	t = colo_etcd_txn_new();
	ck_assert_int_eq(colo_etcd_txn_else_get(t, "/t/close"), 0);
	ck_assert_int_eq(colo_etcd_txn_run(cli, t, never_txn, &calls), 0);
	colo_etcd_close(cli);
	cli = NULL;

	/* Calls connected to a listener that never answers, then closed. */
	fake_start(&f, NULL, 0);
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", f.port);
	ck_assert_int_eq(colo_etcd_new(&loop, ep, 10000, &other, &err), 0);
	ck_assert_int_eq(colo_etcd_get(other, "/t/close", never_get, &calls), 0);
	ck_assert_int_eq(colo_etcd_revoke(other, 1, NULL, NULL), 0);
	ck_assert_int_eq(colo_etcd_grant(other, 10, never_grant, &calls), 0);
	for (int i = 0; f.n < 3 && i < DEADLINE_MS / 20; i++)
		run_for(20);
	ck_assert_int_eq(f.n, 3);
	colo_etcd_close(other);
	run_for(300);
	ck_assert_int_eq(calls, 0);
	fake_stop(&f);
}
END_TEST

static void close_in_cb(void *ud, int rc, const struct colo_etcd_kv *kv, int64_t rev,
			const char *why)
{
	(void)rc, (void)kv, (void)rev, (void)why;
	(*(int *)ud)++;
	colo_etcd_close(cli);
	cli = NULL;
}

START_TEST(close_from_a_callback)
{
	int calls = 0;

	ck_assert_int_eq(colo_etcd_get(cli, "/t/close1", close_in_cb, &calls), 0);
	ck_assert_int_eq(colo_etcd_get(cli, "/t/close2", close_in_cb, &calls), 0);
	ck_assert_int_eq(colo_etcd_get(cli, "/t/close3", close_in_cb, &calls), 0);
	wait_for(&calls, 1);
	run_for(300);
	ck_assert_int_eq(calls, 1);
}
END_TEST

int main(void)
{
	Suite *s;
	TCase *tc;

	if (colo_etcdsrv_binary() == NULL)
		colo_test_skip_all("no etcd binary (Debian's etcd-server) in PATH or $COLO_ETCD");
	s = suite_create("etcd");
	tc = tcase_create("etcd");
	tcase_set_timeout(tc, 60);
	tcase_add_unchecked_fixture(tc, srv_up, srv_down);
	tcase_add_checked_fixture(tc, loop_up, loop_down);
	tcase_add_test(tc, lease_grant_keepalive_revoke);
	tcase_add_test(tc, get_absent_and_present);
	tcase_add_test(tc, txn_branches);
	tcase_add_test(tc, lease_expires);
	tcase_add_test(tc, failover_to_next_endpoint);
	tcase_add_test(tc, bad_endpoints);
	tcase_add_test(tc, silent_listener_times_out);
	tcase_add_loop_test(tc, wrong_answers, 0, (int)(sizeof(wrongs) / sizeof(wrongs[0])));
	tcase_add_test(tc, too_large_answer);
	tcase_add_test(tc, close_with_calls_in_flight);
	tcase_add_test(tc, close_from_a_callback);
	suite_add_tcase(s, tc);
	return colo_test_main(s);
}
