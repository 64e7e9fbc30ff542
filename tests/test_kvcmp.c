/*
 * test_kvcmp.c: the kv guest in compare mode, in one process.  A primary
 * guest with a tap hands out every batch it ran as a unit and holds the
 * replies; a second guest, attached but not started, runs the units with
 * compare_run and must produce the same digests and the same store; the
 * replies go once their positions are matched (or their epoch released).
 * A test-only nondeterministic command makes the digests differ, bytes
 * that are not a unit are refused with a line that names the fault, and a
 * unit over COLO_CMP_UNIT_MAX comes without its bytes.
 *
 * The client is hiredis.  Where a test shows that a reply is held, it
 * first waits until the guest ran the commands (its command count, or the
 * units the tap saw), then looks for a reply within a window: a slow
 * machine can make such a check weaker, never make it fail.
 */
#include "config.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "nodecfg.h"
#include "kv.h"
#include "kvcall.h"
#include "ram.h"
#include "savevm.h"
#include "testutil.h"

/* The unit's layout (docs/kv.md, "Compare mode"). */
#define U_FLAGS 1
#define U_NAMELEN 44
#define U_NAME 45
#define U_HDR 49

struct rig {
	struct colo_config cfg;
	struct colo_ram *ram;
	struct colo_savevm sv;
	struct colo_guest *g;
	uint16_t port;
};

static void rig_init(struct rig *r)
{
	char machine[64];
	struct colo_err err;

	memset(r, 0, sizeof(*r));
	r->cfg.guest = (char *)"kv";
	r->cfg.ram_mb = 4;
	r->cfg.dirty_tracking = COLO_DIRTY_AUTO;
	snprintf(r->cfg.guest_listen.host, sizeof(r->cfg.guest_listen.host), "127.0.0.1");
	colo_err_clear(&err);
	colo_guest_machine_name(&colo_kv_ops, machine, sizeof(machine));
	ck_assert_msg(colo_ram_new(COLO_DIRTY_AUTO, &r->ram, &err) == 0, "%s", err.msg);
	ck_assert_msg(colo_savevm_init(&r->sv, machine, &err) == 0, "%s", err.msg);
	ck_assert_msg(colo_kv_ops.create(&r->cfg, &r->g, &err) == 0, "%s", err.msg);
	ck_assert_msg(r->g->ops->attach(r->g, r->ram, &r->sv, &err) == 0, "%s", err.msg);
	ck_assert_msg(colo_ram_start(r->ram, &err) == 0, "%s", err.msg);
}

static void rig_start(struct rig *r)
{
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(r->g->ops->start(r->g, &err) == 0, "%s", err.msg);
	r->port = colo_kv_port(r->g);
	ck_assert(r->port != 0);
}

static void rig_free(struct rig *r)
{
	r->g->ops->destroy(r->g);
	colo_savevm_free(&r->sv);
	colo_ram_free(r->ram);
}

static struct colo_ram_block *kv_block(struct rig *r)
{
	struct colo_ram_block *b = colo_ram_find(r->ram, COLO_KV_RAM);

	ck_assert_ptr_nonnull(b);
	return b;
}

/* As the engine does at a checkpoint: pause, new epoch, resume. */
static void set_epoch(struct rig *r, uint64_t seq)
{
	r->g->ops->pause(r->g);
	r->g->ops->output_epoch(r->g, seq);
	r->g->ops->resume(r->g);
}

/* ---- the tap: a copy of every unit ---- */

#define TAP_MAX 256

struct tap {
	pthread_mutex_t mu;
	size_t n;
	bool overflow;
	struct colo_cmp_unit u[TAP_MAX];      /* data: our copy */
	struct colo_guest *instant;           /* set: match each unit at once */
};

static void on_unit(void *ud, const struct colo_cmp_unit *u)
{
	struct tap *t = ud;
	struct colo_guest *instant;
	uint8_t *copy = NULL;

	pthread_mutex_lock(&t->mu);
	instant = t->instant;
	if (t->n == TAP_MAX) {
		t->overflow = true;
		pthread_mutex_unlock(&t->mu);
		return;
	}
	if (u->data) {
		copy = malloc(u->len ? u->len : 1);
		if (copy)
			memcpy(copy, u->data, u->len);
		else
			t->overflow = true;
	}
	t->u[t->n] = *u;
	t->u[t->n].data = copy;
	t->n++;
	pthread_mutex_unlock(&t->mu);
	if (instant)
		instant->ops->output_match(instant, u->pos);
}

/* From now on the tap matches each unit at once (an engine whose
 * secondary always agrees, before the replies are even queued). */
static void tap_instant(struct tap *t, struct colo_guest *g)
{
	pthread_mutex_lock(&t->mu);
	t->instant = g;
	pthread_mutex_unlock(&t->mu);
}

static void tap_init(struct tap *t)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->mu, NULL);
}

static void tap_free(struct tap *t)
{
	for (size_t i = 0; i < t->n; i++)
		free((void *)t->u[i].data);
	pthread_mutex_destroy(&t->mu);
}

static size_t tap_count(struct tap *t)
{
	size_t n;

	pthread_mutex_lock(&t->mu);
	n = t->n;
	pthread_mutex_unlock(&t->mu);
	return n;
}

/* The i-th unit (it will not change: the tap only appends). */
static const struct colo_cmp_unit *tap_unit(struct tap *t, size_t i)
{
	const struct colo_cmp_unit *u;

	pthread_mutex_lock(&t->mu);
	ck_assert(!t->overflow);
	ck_assert_uint_lt(i, t->n);
	u = &t->u[i];
	pthread_mutex_unlock(&t->mu);
	return u;
}

struct count_arg {
	struct tap *t;
	size_t n;
};

static bool cond_units(void *ud)
{
	struct count_arg *a = ud;

	return tap_count(a->t) >= a->n;
}

static void wait_units(struct tap *t, size_t n)
{
	struct count_arg a = { t, n };

	ck_assert_msg(colo_test_wait(cond_units, &a, 20000), "the tap saw %zu units, not %zu",
		      tap_count(t), n);
}

/* Has the tap seen a unit flagged as ending in a protocol error? */
static bool cond_proto_unit(void *ud)
{
	struct tap *t = ud;
	bool found = false;

	pthread_mutex_lock(&t->mu);
	for (size_t i = 0; i < t->n; i++)
		if (t->u[i].data && (t->u[i].data[U_FLAGS] & 1))
			found = true;
	pthread_mutex_unlock(&t->mu);
	return found;
}

/* ---- the client (kvcall.h: hiredis, blocking, 10 s timeouts) ---- */

/* Queue a command; kv_flush() sends what is queued in one go. */
static void kv_append(redisContext *c, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = redisvAppendCommand(c, fmt, ap);
	va_end(ap);
	ck_assert_int_eq(rc, REDIS_OK);
}

static void expect_str(redisContext *c, const char *want)
{
	redisReply *r = kv_read(c);

	ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
	ck_assert_str_eq(r->str, want);
	freeReplyObject(r);
}

static void expect_int(redisContext *c, long long want)
{
	redisReply *r = kv_read(c);

	ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
	ck_assert_int_eq(r->integer, want);
	freeReplyObject(r);
}

static void expect_error(redisContext *c, const char *part)
{
	redisReply *r = kv_read(c);

	ck_assert_int_eq(r->type, REDIS_REPLY_ERROR);
	ck_assert_msg(strstr(r->str, part), "%s", r->str);
	freeReplyObject(r);
}

/* Run unit i of t on guest g; its digest must be (or not be) the primary's. */
static void replay(struct rig *b, struct tap *t, size_t i, bool same)
{
	const struct colo_cmp_unit *u = tap_unit(t, i);
	struct colo_cmp_digest d;
	struct colo_err err;

	ck_assert_ptr_nonnull(u->data);
	colo_err_clear(&err);
	memset(&d, 0xee, sizeof(d));
	ck_assert_msg(b->g->ops->compare_run(b->g, u->data, u->len, &d, &err) == 0,
		      "unit %zu (pos %llu): %s", i, (unsigned long long)u->pos, err.msg);
	if (same) {
		ck_assert_msg(d.len == u->out.len && d.hash == u->out.hash, "unit %zu (pos %llu): "
			      "%llu bytes %016llx here, %llu bytes %016llx on the primary", i,
			      (unsigned long long)u->pos, (unsigned long long)d.len,
			      (unsigned long long)d.hash, (unsigned long long)u->out.len,
			      (unsigned long long)u->out.hash);
	} else {
		ck_assert_msg(d.hash != u->out.hash, "unit %zu (pos %llu) matched", i,
			      (unsigned long long)u->pos);
	}
}

/* Both guests hold the same store, byte for byte. */
static void same_store(struct rig *a, struct rig *b)
{
	struct colo_verify_report va, vb;
	struct colo_ram_block *ba = kv_block(a), *bb = kv_block(b);

	ck_assert_uint_eq(ba->length, bb->length);
	ck_assert_msg(memcmp(ba->host, bb->host, ba->length) == 0, "the stores' RAM differs");
	a->g->ops->verify(a->g, &va);
	b->g->ops->verify(b->g, &vb);
	ck_assert_uint_eq(vb.pages_bad, 0);
	ck_assert_str_eq(va.summary, vb.summary);
}

/*
 * The whole round: a pipeline of many kinds of command, client state
 * across batches, a protocol error and a QUIT, all held; the units run on
 * a second guest give the primary's digests and its store; then a match
 * lets every reply go, and the second guest serves that store once started.
 */
START_TEST(units_replay_on_a_second_guest)
{
	static const char proto_err[] = "*3\r\n$3\r\nSET\r\n$2\r\npe\r\n$1\r\n1\r\n*1\r\n$x\r\n";
	static const char quit[] = "GET k1\r\nQUIT\r\nGET k1\r\n";
	struct rig a, b;
	struct tap t;
	redisContext *c1, *c2, *c3, *c4;
	redisReply *rep;
	unsigned long long ran;
	const struct colo_cmp_unit *u;
	size_t n;
	char want[64];

	tap_init(&t);
	rig_init(&a);
	rig_init(&b);
	same_store(&a, &b);                 /* both fresh */
	a.g->ops->compare_tap(a.g, on_unit, &t);
	rig_start(&a);
	set_epoch(&a, 5);                   /* released 4: nothing of 5 goes */

	c1 = kv_open(a.port);
	kv_append(c1, "SET k1 v1");
	kv_append(c1, "GET k1");
	kv_append(c1, "INCR n");
	kv_append(c1, "INCR n");
	kv_append(c1, "CLIENT SETNAME alpha");
	kv_append(c1, "CLIENT GETNAME");
	kv_append(c1, "CLIENT ID");
	kv_append(c1, "INFO");
	kv_append(c1, "HELLO 2 SETNAME alpha2");
	kv_append(c1, "CLIENT GETNAME");
	kv_append(c1, "CONFIG GET port");
	kv_append(c1, "MSET a 1 b 2");
	kv_append(c1, "MGET a b nokey");
	kv_append(c1, "APPEND a xyz");
	kv_append(c1, "DEL b");
	kv_append(c1, "KEYS *");
	kv_append(c1, "SCAN 0");
	kv_append(c1, "DBSIZE");
	kv_append(c1, "PING");
	kv_append(c1, "ECHO hi");
	kv_append(c1, "NOSUCH x");
	kv_append(c1, "GET");
	kv_append(c1, "COMMAND COUNT");
	kv_flush(c1);
	kv_wait_ran(a.g, 23);
	ck_assert(!kv_readable(c1, 200));

	/* client state across batches: the unit carries it from before the
	 * batch, which here changes it after reading it */
	c2 = kv_open(a.port);
	kv_append(c2, "CLIENT SETNAME beta");
	kv_flush(c2);
	kv_wait_ran(a.g, 24);
	n = tap_count(&t);
	kv_append(c2, "CLIENT GETNAME");
	kv_append(c2, "CLIENT SETNAME gamma");
	kv_append(c2, "CLIENT GETNAME");
	kv_flush(c2);
	kv_wait_ran(a.g, 27);
	u = tap_unit(&t, n);
	ck_assert_uint_eq(u->data[U_NAMELEN], 4);
	ck_assert(memcmp(u->data + U_NAME, "beta", 4) == 0);

	/* a protocol error after a command: one flagged unit ends with it */
	c3 = kv_open(a.port);
	kv_send_raw(c3, proto_err, sizeof(proto_err) - 1);
	ck_assert(colo_test_wait(cond_proto_unit, &t, 20000));

	/* QUIT: what follows it is neither run nor in the unit */
	c4 = kv_open(a.port);
	ran = kv_commands_run(a.g);
	kv_send_raw(c4, quit, sizeof(quit) - 1);
	kv_wait_ran(a.g, ran + 2);
	n = tap_count(&t);
	u = tap_unit(&t, n - 1);
	ck_assert_uint_ge(u->len, U_HDR + 6);
	ck_assert(memcmp(u->data + u->len - 6, "QUIT\r\n", 6) == 0);
	ck_assert(!kv_readable(c1, 100));
	ck_assert(!kv_readable(c3, 0));
	ck_assert(!kv_readable(c4, 0));

	/* the second guest runs them all: same digests, same store */
	for (size_t i = 0; i < n; i++) {
		u = tap_unit(&t, i);
		ck_assert_uint_eq(u->pos, i + 1);
		ck_assert_uint_eq(u->epoch, 5);
		replay(&b, &t, i, true);
	}
	a.g->ops->pause(a.g);
	same_store(&a, &b);
	a.g->ops->resume(a.g);

	/* matched: every reply goes, in order */
	a.g->ops->output_match(a.g, tap_unit(&t, n - 1)->pos);
	ck_assert(kv_readable(c1, 10000));
	kv_expect_status(c1, "OK");
	expect_str(c1, "v1");
	expect_int(c1, 1);
	expect_int(c1, 2);
	kv_expect_status(c1, "OK");
	expect_str(c1, "alpha");
	expect_int(c1, 1);                  /* the first connection */
	rep = kv_read(c1);
	ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
	ck_assert_msg(strstr(rep->str, "connected_clients:1\r\n"), "%s", rep->str);
	ck_assert_msg(strstr(rep->str, "total_commands_processed:7\r\n"), "%s", rep->str);
	freeReplyObject(rep);
	rep = kv_read(c1);
	ck_assert_int_eq(rep->type, REDIS_REPLY_ARRAY);
	ck_assert_uint_eq(rep->elements, 14);
	freeReplyObject(rep);
	expect_str(c1, "alpha2");
	rep = kv_read(c1);
	ck_assert_int_eq(rep->type, REDIS_REPLY_ARRAY);
	ck_assert_uint_eq(rep->elements, 2);
	snprintf(want, sizeof(want), "%u", a.port);
	ck_assert_str_eq(rep->element[1]->str, want);
	freeReplyObject(rep);
	kv_expect_status(c1, "OK");
	rep = kv_read(c1);
	ck_assert_uint_eq(rep->elements, 3);
	ck_assert_str_eq(rep->element[0]->str, "1");
	ck_assert_str_eq(rep->element[1]->str, "2");
	ck_assert_int_eq(rep->element[2]->type, REDIS_REPLY_NIL);
	freeReplyObject(rep);
	expect_int(c1, 4);
	expect_int(c1, 1);
	rep = kv_read(c1);
	ck_assert_uint_eq(rep->elements, 3);   /* k1 n a */
	freeReplyObject(rep);
	rep = kv_read(c1);
	ck_assert_uint_eq(rep->elements, 2);
	freeReplyObject(rep);
	expect_int(c1, 3);
	kv_expect_status(c1, "PONG");
	expect_str(c1, "hi");
	expect_error(c1, "unknown command 'NOSUCH'");
	expect_error(c1, "wrong number of arguments for 'get'");
	rep = kv_read(c1);
	ck_assert_int_eq(rep->type, REDIS_REPLY_INTEGER);
	freeReplyObject(rep);
	kv_expect_status(c2, "OK");
	expect_str(c2, "beta");
	kv_expect_status(c2, "OK");
	expect_str(c2, "gamma");
	kv_expect_status(c3, "OK");
	expect_error(c3, "Protocol error");
	ck_assert(kv_closed(c3));
	expect_str(c4, "v1");
	kv_expect_status(c4, "OK");
	ck_assert(kv_closed(c4));
	redisFree(c1);
	redisFree(c2);
	redisFree(c3);
	redisFree(c4);

	/* promoted: the second guest serves what the units made */
	rig_start(&b);
	c1 = kv_open(b.port);
	rep = kv_call(c1, "MGET k1 n a pe b");
	ck_assert_uint_eq(rep->elements, 5);
	ck_assert_str_eq(rep->element[0]->str, "v1");
	ck_assert_str_eq(rep->element[1]->str, "2");
	ck_assert_str_eq(rep->element[2]->str, "1xyz");
	ck_assert_str_eq(rep->element[3]->str, "1");
	ck_assert_int_eq(rep->element[4]->type, REDIS_REPLY_NIL);
	freeReplyObject(rep);
	redisFree(c1);
	a.g->ops->compare_tap(a.g, NULL, NULL);
	rig_free(&b);
	rig_free(&a);
	tap_free(&t);
}
END_TEST

/*
 * Positions and epochs side by side: a match lets a connection's replies
 * go up to its position and no further; a release still lets an epoch go
 * whatever was matched; a tap that matches at once lets replies straight
 * to the socket.
 */
START_TEST(release_and_match_both_free_replies)
{
	struct rig a;
	struct tap t;
	redisContext *c;
	redisReply *rep;

	tap_init(&t);
	rig_init(&a);
	a.g->ops->compare_tap(a.g, on_unit, &t);
	rig_start(&a);
	set_epoch(&a, 5);
	c = kv_open(a.port);
	kv_append(c, "SET x 1");
	kv_flush(c);
	wait_units(&t, 1);
	kv_append(c, "SET y 2");
	kv_flush(c);
	wait_units(&t, 2);
	ck_assert(!kv_readable(c, 200));
	/* the first unit matched: its reply alone */
	a.g->ops->output_match(a.g, tap_unit(&t, 0)->pos);
	ck_assert(kv_readable(c, 10000));
	kv_expect_status(c, "OK");
	ck_assert(!kv_readable(c, 150));
	/* its epoch released: the second goes, unmatched */
	a.g->ops->output_release(a.g, 5);
	ck_assert(kv_readable(c, 10000));
	kv_expect_status(c, "OK");

	/* a later epoch, a match below the unit: still held; its release
	 * frees it */
	set_epoch(&a, 6);
	kv_append(c, "INCR z");
	kv_flush(c);
	wait_units(&t, 3);
	ck_assert_uint_eq(tap_unit(&t, 2)->epoch, 6);
	a.g->ops->output_match(a.g, tap_unit(&t, 2)->pos - 1);
	ck_assert(!kv_readable(c, 150));
	a.g->ops->output_release(a.g, 6);
	ck_assert(kv_readable(c, 10000));
	expect_int(c, 1);

	/* matched from inside the tap, before the replies are queued: they
	 * go at once though epoch 7 is never released */
	set_epoch(&a, 7);
	tap_instant(&t, a.g);
	rep = kv_call(c, "GET x");
	ck_assert_str_eq(rep->str, "1");
	freeReplyObject(rep);
	rep = kv_call(c, "INCR z");
	ck_assert_int_eq(rep->integer, 2);
	freeReplyObject(rep);
	ck_assert_uint_eq(tap_count(&t), 5);
	for (size_t i = 0; i < 5; i++)
		ck_assert_uint_eq(tap_unit(&t, i)->pos, i + 1);
	redisFree(c);
	a.g->ops->compare_tap(a.g, NULL, NULL);
	rig_free(&a);
	tap_free(&t);
}
END_TEST

/* COLOTEST.NONDET: its digest differs on the second guest, the units
 * around it still match; without the variable it is an unknown command. */
START_TEST(nondet_command_mismatches)
{
	struct rig a, b;
	struct tap t;
	redisContext *c;
	redisReply *rep, *rep2;

	ck_assert_int_eq(setenv("COLO_KV_TEST_NONDET", "1", 1), 0);
	tap_init(&t);
	rig_init(&a);
	rig_init(&b);
	a.g->ops->compare_tap(a.g, on_unit, &t);
	rig_start(&a);
	set_epoch(&a, 5);
	c = kv_open(a.port);
	kv_append(c, "SET k v");
	kv_flush(c);
	wait_units(&t, 1);
	kv_append(c, "COLOTEST.NONDET r");
	kv_flush(c);
	wait_units(&t, 2);
	kv_append(c, "GET k");
	kv_flush(c);
	wait_units(&t, 3);
	replay(&b, &t, 0, true);
	replay(&b, &t, 1, false);
	ck_assert_uint_eq(tap_unit(&t, 1)->out.len, strlen("$16\r\n\r\n") + 16);
	replay(&b, &t, 2, true);
	a.g->ops->output_match(a.g, 3);
	kv_expect_status(c, "OK");
	rep = kv_read(c);
	ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
	ck_assert_uint_eq(rep->len, 16);
	ck_assert_uint_eq(strspn(rep->str, "0123456789abcdef"), 16);
	expect_str(c, "v");
	/* the key holds what was answered */
	tap_instant(&t, a.g);
	rep2 = kv_call(c, "GET r");
	ck_assert_str_eq(rep2->str, rep->str);
	freeReplyObject(rep2);
	freeReplyObject(rep);
	ck_assert_int_eq(unsetenv("COLO_KV_TEST_NONDET"), 0);
	rep = kv_call(c, "COLOTEST.NONDET r");
	ck_assert_int_eq(rep->type, REDIS_REPLY_ERROR);
	ck_assert_str_eq(rep->str, "ERR unknown command 'COLOTEST.NONDET', with args "
			 "beginning with: 'r' ");
	freeReplyObject(rep);
	redisFree(c);
	a.g->ops->compare_tap(a.g, NULL, NULL);
	rig_free(&b);
	rig_free(&a);
	tap_free(&t);
}
END_TEST

/* A unit by hand, laid out as docs/kv.md says. */
static size_t unit_make(uint8_t *buf, uint8_t version, uint8_t flags, const char *name,
			const void *resp, size_t rlen)
{
	size_t nl = strlen(name), at = 0;

	buf[at++] = version;
	buf[at++] = flags;
	buf[at++] = 0x18;                    /* port 6379 */
	buf[at++] = 0xeb;
	for (int f = 0; f < 5; f++)          /* id, uptime, clients, conns, cmds */
		for (int i = 0; i < 8; i++)
			buf[at++] = i == 7 ? (uint8_t)(f + 1) : 0;
	buf[at++] = (uint8_t)nl;
	memcpy(buf + at, name, nl);
	at += nl;
	buf[at++] = (uint8_t)(rlen >> 24);
	buf[at++] = (uint8_t)(rlen >> 16);
	buf[at++] = (uint8_t)(rlen >> 8);
	buf[at++] = (uint8_t)rlen;
	memcpy(buf + at, resp, rlen);
	return at + rlen;
}

/* compare_run must refuse data with an error whose one line starts with
 * "kv unit: " and contains `part` (NULL: any). */
static void refused(struct rig *b, const uint8_t *data, size_t len, const char *part)
{
	struct colo_cmp_digest d;
	struct colo_err err;
	int r;

	colo_err_clear(&err);
	r = b->g->ops->compare_run(b->g, data, len, &d, &err);
	ck_assert_msg(r < 0, "%zu bytes accepted (want: %s)", len, part ? part : "refused");
	ck_assert_int_eq(-r, err.code);
	ck_assert_msg(strncmp(err.msg, "kv unit: ", 9) == 0, "%s", err.msg);
	ck_assert_msg(!strchr(err.msg, '\n'), "%s", err.msg);
	if (part)
		ck_assert_msg(strstr(err.msg, part), "'%s' does not say '%s'", err.msg, part);
}

/* Bytes that are not a unit: each fault named, nothing run, no crash. */
START_TEST(bad_units_are_refused)
{
	static const char set[] = "*3\r\n$3\r\nSET\r\n$1\r\nq\r\n$1\r\n1\r\n";
	static const char partial[] = "*3\r\n$3\r\nSET\r\n$1\r\nq\r\n$1\r\n1\r\n*2\r\n$3\r\nGET";
	static const char bad[] = "*1\r\n$x\r\n";
	struct rig a, b;
	struct tap t;
	redisContext *c;
	const struct colo_cmp_unit *u;
	struct colo_ram_block *blk;
	struct colo_cmp_digest d;
	struct colo_err err;
	struct colo_rng rng = { COLO_TEST_SEED(0x6b76636d70) };
	uint8_t buf[512], *copy, *ram;
	size_t len;

	tap_init(&t);
	rig_init(&a);
	rig_init(&b);
	a.g->ops->compare_tap(a.g, on_unit, &t);
	rig_start(&a);
	c = kv_open(a.port);
	freeReplyObject(kv_call(c, "CLIENT SETNAME who"));
	freeReplyObject(kv_call(c, "SET a 1"));
	redisFree(c);
	wait_units(&t, 2);
	u = tap_unit(&t, 1);
	blk = kv_block(&b);
	ram = malloc(blk->length);
	copy = malloc(u->len);
	ck_assert_ptr_nonnull(ram);
	ck_assert_ptr_nonnull(copy);
	memcpy(ram, blk->host, blk->length);

	/* a started guest does not run units */
	colo_err_clear(&err);
	ck_assert_int_eq(a.g->ops->compare_run(a.g, u->data, u->len, &d, &err), -EBUSY);
	ck_assert_str_eq(err.msg, "kv: compare_run while serving");

	refused(&b, NULL, 0, "0 bytes, shorter than its 49-byte header");
	for (len = 0; len < u->len; len++)
		refused(&b, u->data, len, NULL);
	memcpy(copy, u->data, u->len);
	copy[0] = 2;
	refused(&b, copy, u->len, "version 2, expected 1");
	memcpy(copy, u->data, u->len);
	copy[U_FLAGS] = 0x82;
	refused(&b, copy, u->len, "unknown flags 0x82");
	memcpy(copy, u->data, u->len);
	copy[U_NAMELEN] = 255;
	refused(&b, copy, u->len, "client name of 255 bytes runs past");
	memcpy(copy, u->data, u->len);
	copy[U_NAME] = ' ';
	refused(&b, copy, u->len, "client name byte 0 is 0x20");
	memcpy(copy, u->data, u->len);
	copy[U_NAME + 3 + 3]++;             /* the RESP length's low byte ("who") */
	refused(&b, copy, u->len, "RESP length");
	copy[U_NAME + 3] = 0xff;
	refused(&b, copy, u->len, "RESP length");
	refused(&b, buf, unit_make(buf, 1, 0, "", partial, sizeof(partial) - 1),
		"RESP bytes after its last complete command");
	refused(&b, buf, unit_make(buf, 1, 0, "", bad, sizeof(bad) - 1),
		"that the unit does not flag");
	refused(&b, buf, unit_make(buf, 1, 1, "", set, sizeof(set) - 1),
		"flagged as ending in a protocol error");
	refused(&b, buf, unit_make(buf, 1, 0, "", "", 0), "holds no command");
	/* garbage, half of it with a good version byte */
	for (int i = 0; i < 2000; i++) {
		len = (size_t)colo_rng_below(&rng, sizeof(buf));
		colo_rng_fill(&rng, buf, len);
		if (len && i % 2)
			buf[0] = 1;
		refused(&b, buf, len, NULL);
	}
	ck_assert_msg(memcmp(ram, blk->host, blk->length) == 0, "a refused unit wrote");

	/* the genuine ones run; one made by hand too */
	replay(&b, &t, 0, true);
	replay(&b, &t, 1, true);
	len = unit_make(buf, 1, 1, "x", bad, sizeof(bad) - 1);
	colo_err_clear(&err);
	ck_assert_msg(b.g->ops->compare_run(b.g, buf, len, &d, &err) == 0, "%s", err.msg);
	ck_assert_uint_eq(d.len, strlen("-ERR Protocol error: invalid bulk length\r\n"));
	ck_assert_uint_eq(d.hash, XXH3_64bits("-ERR Protocol error: invalid bulk length\r\n",
					      d.len));
	a.g->ops->compare_tap(a.g, NULL, NULL);
	free(copy);
	free(ram);
	rig_free(&b);
	rig_free(&a);
	tap_free(&t);
}
END_TEST

/* A unit over COLO_CMP_UNIT_MAX comes without its bytes, with its
 * position and its digest; the next one is whole again. */
START_TEST(big_unit_comes_without_bytes)
{
	static const char oom[] = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";
	const size_t big = COLO_CMP_UNIT_MAX + 1;
	struct rig a;
	struct tap t;
	redisContext *c;
	redisReply *rep;
	const struct colo_cmp_unit *u;
	char *v = malloc(big);

	ck_assert_ptr_nonnull(v);
	memset(v, 'b', big);
	tap_init(&t);
	rig_init(&a);
	a.g->ops->compare_tap(a.g, on_unit, &t);
	rig_start(&a);
	c = kv_open(a.port);
	rep = kv_call(c, "SET big %b", v, big);       /* a 4 MiB store: it does not fit */
	ck_assert_int_eq(rep->type, REDIS_REPLY_ERROR);
	freeReplyObject(rep);
	freeReplyObject(kv_call(c, "PING"));
	redisFree(c);
	wait_units(&t, 2);
	u = tap_unit(&t, 0);
	ck_assert_ptr_null(u->data);
	ck_assert_uint_eq(u->len, 0);
	ck_assert_uint_eq(u->pos, 1);
	ck_assert_uint_eq(u->out.len, sizeof(oom) - 1);
	ck_assert_uint_eq(u->out.hash, XXH3_64bits(oom, sizeof(oom) - 1));
	u = tap_unit(&t, 1);
	ck_assert_ptr_nonnull(u->data);
	ck_assert_uint_eq(u->pos, 2);
	ck_assert_uint_eq(u->out.len, strlen("+PONG\r\n"));
	ck_assert_uint_eq(u->out.hash, XXH3_64bits("+PONG\r\n", strlen("+PONG\r\n")));
	a.g->ops->compare_tap(a.g, NULL, NULL);
	rig_free(&a);
	tap_free(&t);
	free(v);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("kvcmp");
	TCase *tc = tcase_create("kvcmp");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, units_replay_on_a_second_guest);
	tcase_add_test(tc, release_and_match_both_free_replies);
	tcase_add_test(tc, nondet_command_mismatches);
	tcase_add_test(tc, bad_units_are_refused);
	tcase_add_test(tc, big_unit_comes_without_bytes);
	suite_add_tcase(s, tc);
	return colo_test_main(s);
}
