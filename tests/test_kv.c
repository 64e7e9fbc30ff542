/*
 * test_kv.c: the kv guest in one process: it serves RESP on TCP, a pause
 * keeps commands from running, replies wait for their epoch to be released
 * (output commit) and ask for a checkpoint meanwhile, and its whole state
 * moves as a savevm stream to a second guest at other addresses, which then
 * serves the same data.
 *
 * The client is hiredis, so the guest is checked against a RESP parser it
 * did not write.  Where a test shows that nothing happens (a held reply, a
 * paused guest) it first waits until the guest ran what it was sent (its
 * command count), then looks for a reply within a window: a slow machine
 * can make such a check weaker, never make it fail.
 */
#include "config.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "nodecfg.h"
#include "kv.h"
#include "ram.h"
#include "savevm.h"
#include "kvcall.h"
#include "testutil.h"

struct rig {
	struct colo_config cfg;
	struct colo_ram *ram;
	struct colo_savevm sv;
	struct colo_guest *g;
	uint16_t port;
};

static atomic_int wants;

static void on_want(void *ud)
{
	(void)ud;
	atomic_fetch_add(&wants, 1);
}

/* A guest on guest-listen 127.0.0.1:port (0: any free port). */
static void rig_init_port(struct rig *r, bool start, uint16_t port)
{
	char machine[64];
	struct colo_err err;

	memset(r, 0, sizeof(*r));
	r->cfg.guest = (char *)"kv";
	r->cfg.ram_mb = 4;
	r->cfg.dirty_tracking = COLO_DIRTY_AUTO;
	snprintf(r->cfg.guest_listen.host, sizeof(r->cfg.guest_listen.host), "127.0.0.1");
	r->cfg.guest_listen.port = port;
	colo_err_clear(&err);
	colo_guest_machine_name(&colo_kv_ops, machine, sizeof(machine));
	ck_assert_msg(colo_ram_new(COLO_DIRTY_AUTO, &r->ram, &err) == 0, "%s", err.msg);
	ck_assert_msg(colo_savevm_init(&r->sv, machine, &err) == 0, "%s", err.msg);
	ck_assert_msg(colo_kv_ops.create(&r->cfg, &r->g, &err) == 0, "%s", err.msg);
	ck_assert_msg(r->g->ops->attach(r->g, r->ram, &r->sv, &err) == 0, "%s", err.msg);
	ck_assert_msg(colo_ram_start(r->ram, &err) == 0, "%s", err.msg);
	if (start) {
		ck_assert_msg(r->g->ops->start(r->g, &err) == 0, "%s", err.msg);
		r->port = colo_kv_port(r->g);
		ck_assert(port || r->port != 0);
	}
}

static void rig_init(struct rig *r, bool start)
{
	rig_init_port(r, start, 0);
}

static void rig_free(struct rig *r)
{
	r->g->ops->destroy(r->g);
	colo_savevm_free(&r->sv);
	colo_ram_free(r->ram);
}

/* ---- the client (kvcall.h: hiredis, blocking, 10 s timeouts) ---- */

/* Send a command, do not wait for its reply. */
static void kv_send(redisContext *c, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = redisvAppendCommand(c, fmt, ap);
	va_end(ap);
	ck_assert_int_eq(rc, REDIS_OK);
	kv_flush(c);
}

static bool cond_wants(void *ud)
{
	(void)ud;
	return atomic_load(&wants) >= 1;
}

START_TEST(serves_resp)
{
	struct rig r;
	redisContext *c;
	redisReply *rep;
	char line[256];

	rig_init(&r, true);
	c = kv_open(r.port);
	rep = kv_call(c, "PING");
	ck_assert_str_eq(rep->str, "PONG");
	freeReplyObject(rep);
	rep = kv_call(c, "SET %s %s", "k", "v1");
	ck_assert_str_eq(rep->str, "OK");
	freeReplyObject(rep);
	rep = kv_call(c, "GET %s", "k");
	ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
	ck_assert_str_eq(rep->str, "v1");
	freeReplyObject(rep);
	/* inline commands, pipelined, as redis-benchmark's PING_INLINE sends */
	kv_send_raw(c, "PING\r\nPING\r\n", 12);
	kv_expect_status(c, "PONG");
	kv_expect_status(c, "PONG");
	r.g->ops->describe(r.g, line, sizeof(line));
	ck_assert_msg(strstr(line, "kv: 1 keys, serving 127.0.0.1:"), "%s", line);
	/* a protocol error closes only this connection, with an error first */
	kv_send_raw(c, "*1\r\n$x\r\n", 9);
	rep = kv_read(c);
	ck_assert_int_eq(rep->type, REDIS_REPLY_ERROR);
	ck_assert_msg(strstr(rep->str, "Protocol error"), "%s", rep->str);
	freeReplyObject(rep);
	ck_assert(kv_closed(c));
	redisFree(c);
	c = kv_open(r.port);
	rep = kv_call(c, "GET %s", "k");
	ck_assert_str_eq(rep->str, "v1");
	freeReplyObject(rep);
	/* QUIT answers, then closes */
	rep = kv_call(c, "QUIT");
	ck_assert_str_eq(rep->str, "OK");
	freeReplyObject(rep);
	ck_assert(kv_closed(c));
	redisFree(c);
	rig_free(&r);
}
END_TEST

/* Replies wait for their epoch; a held reply asks for a checkpoint. */
START_TEST(output_waits_for_its_checkpoint)
{
	struct rig r;
	redisContext *c, *d;
	redisReply *rep;
	unsigned long long ran;

	rig_init(&r, true);
	atomic_store(&wants, 0);
	r.g->ops->output_notify(r.g, on_want, NULL);
	c = kv_open(r.port);
	d = kv_open(r.port);
	/* as the engine does at a checkpoint: pause, new epoch, resume */
	r.g->ops->pause(r.g);
	r.g->ops->output_epoch(r.g, 7);
	r.g->ops->resume(r.g);
	ran = kv_commands_run(r.g);
	kv_send(c, "SET %s %s", "a", "1");
	kv_wait_ran(r.g, ran + 1);                  /* it ran; its reply is held */
	ck_assert(!kv_readable(c, 200));
	ck_assert(colo_test_wait(cond_wants, NULL, 20000));
	/* a read of it on another connection waits too */
	kv_send(d, "GET %s", "a");
	kv_wait_ran(r.g, ran + 2);
	ck_assert(!kv_readable(d, 100));
	r.g->ops->output_release(r.g, 6);
	ck_assert(!kv_readable(c, 100));
	r.g->ops->output_release(r.g, 7);
	ck_assert(kv_readable(c, 10000));
	kv_expect_status(c, "OK");
	rep = kv_read(d);
	ck_assert_str_eq(rep->str, "1");
	freeReplyObject(rep);
	/* epoch 0: at once */
	r.g->ops->output_epoch(r.g, 0);
	r.g->ops->output_release(r.g, UINT64_MAX);
	rep = kv_call(c, "INCR %s", "n");
	ck_assert_int_eq(rep->integer, 1);
	freeReplyObject(rep);
	/* back to holding: a later epoch lowers what may go */
	r.g->ops->pause(r.g);
	r.g->ops->output_epoch(r.g, 9);
	r.g->ops->resume(r.g);
	ran = kv_commands_run(r.g);
	kv_send(c, "INCR %s", "n");
	kv_wait_ran(r.g, ran + 1);
	ck_assert(!kv_readable(c, 150));
	/* protection lost: everything goes */
	r.g->ops->output_epoch(r.g, 0);
	r.g->ops->output_release(r.g, UINT64_MAX);
	ck_assert(kv_readable(c, 10000));
	rep = kv_read(c);
	ck_assert_int_eq(rep->integer, 2);
	freeReplyObject(rep);
	r.g->ops->output_notify(r.g, NULL, NULL);
	redisFree(c);
	redisFree(d);
	rig_free(&r);
}
END_TEST

/* While paused no command runs (here: with replies going out at once). */
START_TEST(pause_holds_commands)
{
	struct rig r;
	redisContext *c;
	redisReply *rep;
	unsigned long long ran;

	rig_init(&r, true);
	c = kv_open(r.port);
	r.g->ops->pause(r.g);
	ran = kv_commands_run(r.g);
	kv_send(c, "SET %s %s", "p", "1");
	/* A window in which the paused guest must run nothing. */
	ck_assert(!kv_readable(c, 200));
	ck_assert_uint_eq(kv_commands_run(r.g), ran);
	r.g->ops->resume(r.g);
	ck_assert(kv_readable(c, 10000));
	kv_expect_status(c, "OK");
	rep = kv_call(c, "DBSIZE");
	ck_assert_int_eq(rep->integer, 1);
	freeReplyObject(rep);
	redisFree(c);
	rig_free(&r);
}
END_TEST

/* The state as a stream into a second guest (other addresses): it serves
 * the same data, and verify finds the store consistent. */
START_TEST(state_moves_to_another_guest)
{
	struct rig a, b;
	redisContext *c;
	redisReply *rep;
	struct colo_buf s;
	struct colo_err err;
	struct colo_savevm_loader *l;
	struct colo_verify_report vr;
	char key[32], val[32];

	rig_init(&a, true);
	c = kv_open(a.port);
	for (int i = 0; i < 2000; i++) {
		snprintf(key, sizeof(key), "key:%d", i);
		snprintf(val, sizeof(val), "value-%d", i * 7);
		freeReplyObject(kv_call(c, "SET %s %s", key, val));
	}
	freeReplyObject(kv_call(c, "DEL %s", "key:5"));
	redisFree(c);
	a.g->ops->pause(a.g);
	colo_buf_init(&s);
	colo_err_clear(&err);
	ck_assert_msg(colo_savevm_save(&a.sv, &s, 0, &err) == 0, "%s", err.msg);
	a.g->ops->resume(a.g);
	rig_init(&b, false);
	l = colo_savevm_loader_new(&b.sv, NULL, COLO_PAGE_KINDS_QEMU);
	ck_assert_msg(colo_savevm_loader_feed(l, s.data, s.len) == (ssize_t)s.len, "%s",
		      colo_savevm_loader_error(l));
	ck_assert_msg(colo_savevm_loader_finish(l) == 0, "%s", colo_savevm_loader_error(l));
	colo_savevm_loader_free(l);
	colo_buf_free(&s);
	b.g->ops->verify(b.g, &vr);
	ck_assert(vr.supported);
	ck_assert_uint_eq(vr.pages_bad, 0);
	ck_assert_msg(strstr(vr.summary, "1999 keys"), "%s", vr.summary);
	ck_assert_msg(b.g->ops->start(b.g, &err) == 0, "%s", err.msg);
	b.port = colo_kv_port(b.g);
	c = kv_open(b.port);
	rep = kv_call(c, "DBSIZE");
	ck_assert_int_eq(rep->integer, 1999);
	freeReplyObject(rep);
	rep = kv_call(c, "GET %s", "key:1234");
	ck_assert_str_eq(rep->str, "value-8638");
	freeReplyObject(rep);
	rep = kv_call(c, "GET %s", "key:5");
	ck_assert_int_eq(rep->type, REDIS_REPLY_NIL);
	freeReplyObject(rep);
	redisFree(c);
	rig_free(&b);
	rig_free(&a);
}
END_TEST

static bool cond_serving(void *guest)
{
	return colo_kv_port(guest) != 0;
}

/*
 * guest-listen in use (a promoted secondary whose old primary still holds
 * the port): start succeeds, the guest keeps its state and says it waits,
 * and it serves as soon as the port is free.
 */
START_TEST(busy_address_is_waited_for)
{
	struct rig a, b;
	redisContext *c;
	redisReply *rep;
	struct colo_err err;
	char line[256];
	uint16_t port;

	rig_init(&a, true);
	port = a.port;
	rig_init_port(&b, false, port);
	colo_err_clear(&err);
	ck_assert_msg(b.g->ops->start(b.g, &err) == 0, "%s", err.msg);
	ck_assert_uint_eq(colo_kv_port(b.g), 0);
	b.g->ops->describe(b.g, line, sizeof(line));
	ck_assert_msg(strstr(line, "waiting for 127.0.0.1:"), "%s", line);
	/* a still answers on the port */
	c = kv_open(port);
	freeReplyObject(kv_call(c, "SET %s %s", "who", "a"));
	redisFree(c);
	rig_free(&a);
	ck_assert(colo_test_wait(cond_serving, b.g, 20000));
	ck_assert_uint_eq(colo_kv_port(b.g), port);
	c = kv_open(port);
	rep = kv_call(c, "GET %s", "who");
	ck_assert_int_eq(rep->type, REDIS_REPLY_NIL);   /* b's own (empty) store */
	freeReplyObject(rep);
	redisFree(c);
	b.g->ops->describe(b.g, line, sizeof(line));
	ck_assert_msg(strstr(line, "serving 127.0.0.1:"), "%s", line);
	rig_free(&b);
}
END_TEST

/*
 * Held replies are bounded: a pipeline of GETs of a 1 MiB value, sent at
 * once while output is held, runs only until 16 MiB of replies wait, and
 * the rest runs once they are released and drain.
 */
START_TEST(held_output_is_bounded)
{
	enum { GETS = 40, BIG = 1 << 20 };
	struct rig r;
	redisContext *c;
	redisReply *rep;
	char *big = malloc(BIG + 1);

	ck_assert_ptr_nonnull(big);
	memset(big, 'x', BIG);
	big[BIG] = '\0';
	rig_init(&r, true);
	c = kv_open(r.port);
	rep = kv_call(c, "SET %s %b", "big", big, (size_t)BIG);
	ck_assert_str_eq(rep->str, "OK");
	freeReplyObject(rep);
	r.g->ops->pause(r.g);
	r.g->ops->output_epoch(r.g, 5);
	r.g->ops->resume(r.g);
	{
		static const char get[] = "*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n";
		char all[GETS * sizeof(get)];
		size_t len = 0;

		for (int i = 0; i < GETS; i++) {
			memcpy(all + len, get, sizeof(get) - 1);
			len += sizeof(get) - 1;
		}
		kv_send_raw(c, all, len);
	}
	/* SET, then as many GETs as fill 16 MiB of replies; then a window in
	 * which it must run no more. */
	kv_wait_ran(r.g, 1 + 16);
	usleep(300000);
	ck_assert_uint_eq(kv_commands_run(r.g), 1 + 16);
	ck_assert(!kv_readable(c, 0));
	r.g->ops->output_release(r.g, 5);
	for (int i = 0; i < GETS; i++) {
		rep = kv_read(c);
		ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
		ck_assert_uint_eq(rep->len, BIG);
		freeReplyObject(rep);
	}
	ck_assert_uint_eq(kv_commands_run(r.g), 1 + GETS);
	redisFree(c);
	rig_free(&r);
	free(big);
}
END_TEST

/* Garbage in the store's RAM: verify says so (and never reads outside it). */
/* ---- embedded: the guest on a loop of the test's (embed) ---- */

/* Turn the host loop until the guest ran n commands (10 s at most). */
static void host_until_ran(uv_loop_t *host, struct colo_guest *g, unsigned long long n)
{
	for (int i = 0; i < 10000 && kv_commands_run(g) < n; i++) {
		uv_run(host, UV_RUN_NOWAIT);
		usleep(1000);
	}
	ck_assert_uint_ge(kv_commands_run(g), n);
}

/* Turn the host loop until c has a reply (ms at most); whether it has. */
static bool host_until_readable(uv_loop_t *host, redisContext *c, int ms)
{
	for (int i = 0; i < ms; i++) {
		uv_run(host, UV_RUN_NOWAIT);
		if (kv_readable(c, 1))
			return true;
	}
	return false;
}

/*
 * With no thread of its own the guest serves only while its host loop
 * turns; a pause stops it at once; a release or a match writes the held
 * reply on the spot, with the host loop not turning; a guest already
 * started cannot be embedded; stopped, it leaves the host loop with
 * nothing open.
 */
START_TEST(embedded_runs_on_the_host_loop)
{
	struct rig r;
	uv_loop_t host;
	redisContext *c;
	struct colo_err err;
	unsigned long long ran;

	ck_assert_int_eq(uv_loop_init(&host), 0);
	rig_init(&r, false);
	colo_err_clear(&err);
	ck_assert_msg(r.g->ops->embed(r.g, &host, &err) == 0, "%s", err.msg);
	ck_assert_msg(r.g->ops->start(r.g, &err) == 0, "%s", err.msg);
	r.port = colo_kv_port(r.g);
	ck_assert_uint_ne(r.port, 0);
	c = kv_open(r.port);
	ran = kv_commands_run(r.g);
	kv_send(c, "SET %s %s", "e", "1");
	/* The loop not turning: nothing runs. */
	ck_assert(!kv_readable(c, 100));
	ck_assert_uint_eq(kv_commands_run(r.g), ran);
	ck_assert(host_until_readable(&host, c, 10000));
	kv_expect_status(c, "OK");

	/* Paused, the turning loop runs nothing; resumed, it does. */
	r.g->ops->pause(r.g);
	kv_send(c, "SET %s %s", "e", "2");
	ck_assert(!host_until_readable(&host, c, 150));
	ck_assert_uint_eq(kv_commands_run(r.g), ran + 1);
	r.g->ops->output_epoch(r.g, 5);           /* paused, as the engine does */
	r.g->ops->resume(r.g);
	host_until_ran(&host, r.g, ran + 2);
	ck_assert(!host_until_readable(&host, c, 100));   /* held for epoch 5 */
	/* The release writes here and now: no turn of the loop. */
	r.g->ops->output_release(r.g, 5);
	ck_assert(kv_readable(c, 1000));
	kv_expect_status(c, "OK");

	ck_assert_int_ne(r.g->ops->embed(r.g, &host, &err), 0);
	ck_assert_str_eq(err.msg, "kv: already started on a thread of its own");
	redisFree(c);
	rig_free(&r);
	uv_run(&host, UV_RUN_DEFAULT);             /* the host's handles close */
	ck_assert_int_eq(uv_loop_close(&host), 0);
}
END_TEST

START_TEST(garbage_is_reported)
{
	struct rig r;
	struct colo_ram_block *b;
	struct colo_verify_report vr;

	rig_init(&r, false);
	b = colo_ram_find(r.ram, COLO_KV_RAM);
	ck_assert_ptr_nonnull(b);
	r.g->ops->verify(r.g, &vr);
	ck_assert_uint_eq(vr.pages_bad, 0);
	memset(b->host, 0xa5, b->length);
	r.g->ops->verify(r.g, &vr);
	ck_assert(vr.supported);
	ck_assert_uint_eq(vr.pages_bad, 1);
	ck_assert_msg(strncmp(vr.summary, "kv: ", 4) == 0, "%s", vr.summary);
	rig_free(&r);
}
END_TEST


int main(void)
{
	Suite *s = suite_create("kv");
	TCase *tc = tcase_create("kv");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, serves_resp);
	tcase_add_test(tc, output_waits_for_its_checkpoint);
	tcase_add_test(tc, pause_holds_commands);
	tcase_add_test(tc, state_moves_to_another_guest);
	tcase_add_test(tc, held_output_is_bounded);
	tcase_add_test(tc, busy_address_is_waited_for);
	tcase_add_test(tc, embedded_runs_on_the_host_loop);
	tcase_add_test(tc, garbage_is_reported);
	suite_add_tcase(s, tc);
	return colo_test_main(s);
}
