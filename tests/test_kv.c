/*
 * test_kv.c: the kv guest in one process: it serves RESP on TCP, a pause
 * keeps commands from running, replies wait for their epoch to be released
 * (output commit) and ask for a checkpoint meanwhile, and its whole state
 * moves as a savevm stream to a second guest at other addresses, which then
 * serves the same data.
 */
#include "config.h"

#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nodecfg.h"
#include "kv.h"
#include "kvclient.h"
#include "ram.h"
#include "savevm.h"
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

/* Is a reply waiting on the connection within ms? */
static bool readable(struct kvc *c, int ms)
{
	struct pollfd p = { c->fd, POLLIN, 0 };

	return c->len > 0 || poll(&p, 1, ms) == 1;
}

static void expect_status(struct kvc *c, const char *want)
{
	struct kvr r;

	ck_assert_msg(kvc_read(c, &r) == 0, "%s", c->err);
	ck_assert_int_eq(r.type, '+');
	ck_assert_str_eq(r.str, want);
	kvr_free(&r);
}

START_TEST(serves_resp)
{
	struct rig r;
	struct kvc c;
	struct kvr rep;
	char line[256];

	rig_init(&r, true);
	ck_assert_msg(kvc_connect(&c, r.port, 5000) == 0, "%s", c.err);
	ck_assert_int_eq(kvc_call(&c, &rep, "PING", NULL), 0);
	ck_assert_str_eq(rep.str, "PONG");
	kvr_free(&rep);
	ck_assert_int_eq(kvc_call(&c, &rep, "SET", "k", "v1", NULL), 0);
	ck_assert_str_eq(rep.str, "OK");
	kvr_free(&rep);
	ck_assert_int_eq(kvc_call(&c, &rep, "GET", "k", NULL), 0);
	ck_assert_int_eq(rep.type, '$');
	ck_assert_str_eq(rep.str, "v1");
	kvr_free(&rep);
	/* inline commands, pipelined, as redis-benchmark's PING_INLINE sends */
	ck_assert_int_eq(kvc_send_raw(&c, "PING\r\nPING\r\n", 12), 0);
	expect_status(&c, "PONG");
	expect_status(&c, "PONG");
	r.g->ops->describe(r.g, line, sizeof(line));
	ck_assert_msg(strstr(line, "kv: 1 keys, serving 127.0.0.1:"), "%s", line);
	/* a protocol error closes only this connection, with an error first */
	ck_assert_int_eq(kvc_send_raw(&c, "*1\r\n$x\r\n", 9), 0);
	ck_assert_int_eq(kvc_read(&c, &rep), 0);
	ck_assert_int_eq(rep.type, '-');
	ck_assert_msg(strstr(rep.str, "Protocol error"), "%s", rep.str);
	kvr_free(&rep);
	ck_assert_int_ne(kvc_read(&c, &rep), 0);
	kvc_close(&c);
	ck_assert_int_eq(kvc_connect(&c, r.port, 5000), 0);
	ck_assert_int_eq(kvc_call(&c, &rep, "GET", "k", NULL), 0);
	ck_assert_str_eq(rep.str, "v1");
	kvr_free(&rep);
	/* QUIT answers, then closes */
	ck_assert_int_eq(kvc_call(&c, &rep, "QUIT", NULL), 0);
	ck_assert_str_eq(rep.str, "OK");
	kvr_free(&rep);
	ck_assert_int_ne(kvc_read(&c, &rep), 0);
	kvc_close(&c);
	rig_free(&r);
}
END_TEST

/* Replies wait for their epoch; a held reply asks for a checkpoint. */
START_TEST(output_waits_for_its_checkpoint)
{
	struct rig r;
	struct kvc c, d;
	struct kvr rep;

	rig_init(&r, true);
	atomic_store(&wants, 0);
	r.g->ops->output_notify(r.g, on_want, NULL);
	ck_assert_int_eq(kvc_connect(&c, r.port, 5000), 0);
	ck_assert_int_eq(kvc_connect(&d, r.port, 5000), 0);
	/* as the engine does at a checkpoint: pause, new epoch, resume */
	r.g->ops->pause(r.g);
	r.g->ops->output_epoch(r.g, 7);
	r.g->ops->resume(r.g);
	ck_assert_int_eq(kvc_send(&c, "SET", "a", "1", NULL), 0);
	ck_assert(!readable(&c, 200));
	ck_assert_int_ge(atomic_load(&wants), 1);
	/* a read of it on another connection waits too */
	ck_assert_int_eq(kvc_send(&d, "GET", "a", NULL), 0);
	ck_assert(!readable(&d, 100));
	r.g->ops->output_release(r.g, 6);
	ck_assert(!readable(&c, 100));
	r.g->ops->output_release(r.g, 7);
	ck_assert(readable(&c, 5000));
	expect_status(&c, "OK");
	ck_assert_int_eq(kvc_read(&d, &rep), 0);
	ck_assert_str_eq(rep.str, "1");
	kvr_free(&rep);
	/* epoch 0: at once */
	r.g->ops->output_epoch(r.g, 0);
	r.g->ops->output_release(r.g, UINT64_MAX);
	ck_assert_int_eq(kvc_call(&c, &rep, "INCR", "n", NULL), 0);
	ck_assert_int_eq(rep.integer, 1);
	kvr_free(&rep);
	/* back to holding: a later epoch lowers what may go */
	r.g->ops->pause(r.g);
	r.g->ops->output_epoch(r.g, 9);
	r.g->ops->resume(r.g);
	ck_assert_int_eq(kvc_send(&c, "INCR", "n", NULL), 0);
	ck_assert(!readable(&c, 150));
	/* protection lost: everything goes */
	r.g->ops->output_epoch(r.g, 0);
	r.g->ops->output_release(r.g, UINT64_MAX);
	ck_assert(readable(&c, 5000));
	ck_assert_int_eq(kvc_read(&c, &rep), 0);
	ck_assert_int_eq(rep.integer, 2);
	kvr_free(&rep);
	r.g->ops->output_notify(r.g, NULL, NULL);
	kvc_close(&c);
	kvc_close(&d);
	rig_free(&r);
}
END_TEST

/* While paused no command runs (here: with replies going out at once). */
START_TEST(pause_holds_commands)
{
	struct rig r;
	struct kvc c;
	struct kvr rep;

	rig_init(&r, true);
	ck_assert_int_eq(kvc_connect(&c, r.port, 5000), 0);
	r.g->ops->pause(r.g);
	ck_assert_int_eq(kvc_send(&c, "SET", "p", "1", NULL), 0);
	ck_assert(!readable(&c, 200));
	r.g->ops->resume(r.g);
	ck_assert(readable(&c, 5000));
	expect_status(&c, "OK");
	ck_assert_int_eq(kvc_call(&c, &rep, "DBSIZE", NULL), 0);
	ck_assert_int_eq(rep.integer, 1);
	kvr_free(&rep);
	kvc_close(&c);
	rig_free(&r);
}
END_TEST

/* The state as a stream into a second guest (other addresses): it serves
 * the same data, and verify finds the store consistent. */
START_TEST(state_moves_to_another_guest)
{
	struct rig a, b;
	struct kvc c;
	struct kvr rep;
	struct colo_buf s;
	struct colo_err err;
	struct colo_savevm_loader *l;
	struct colo_verify_report vr;
	char key[32], val[32];

	rig_init(&a, true);
	ck_assert_int_eq(kvc_connect(&c, a.port, 5000), 0);
	for (int i = 0; i < 2000; i++) {
		snprintf(key, sizeof(key), "key:%d", i);
		snprintf(val, sizeof(val), "value-%d", i * 7);
		ck_assert_int_eq(kvc_call(&c, &rep, "SET", key, val, NULL), 0);
		kvr_free(&rep);
	}
	ck_assert_int_eq(kvc_call(&c, &rep, "DEL", "key:5", NULL), 0);
	kvr_free(&rep);
	kvc_close(&c);
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
	ck_assert_int_eq(kvc_connect(&c, b.port, 5000), 0);
	ck_assert_int_eq(kvc_call(&c, &rep, "DBSIZE", NULL), 0);
	ck_assert_int_eq(rep.integer, 1999);
	kvr_free(&rep);
	ck_assert_int_eq(kvc_call(&c, &rep, "GET", "key:1234", NULL), 0);
	ck_assert_str_eq(rep.str, "value-8638");
	kvr_free(&rep);
	ck_assert_int_eq(kvc_call(&c, &rep, "GET", "key:5", NULL), 0);
	ck_assert(rep.nil);
	kvr_free(&rep);
	kvc_close(&c);
	rig_free(&b);
	rig_free(&a);
}
END_TEST

/*
 * guest-listen in use (a promoted secondary whose old primary still holds
 * the port): start succeeds, the guest keeps its state and says it waits,
 * and it serves as soon as the port is free.
 */
START_TEST(busy_address_is_waited_for)
{
	struct rig a, b;
	struct kvc c;
	struct kvr rep;
	struct colo_err err;
	char line[256];
	uint16_t port;
	int i;

	rig_init(&a, true);
	port = a.port;
	rig_init_port(&b, false, port);
	colo_err_clear(&err);
	ck_assert_msg(b.g->ops->start(b.g, &err) == 0, "%s", err.msg);
	ck_assert_uint_eq(colo_kv_port(b.g), 0);
	b.g->ops->describe(b.g, line, sizeof(line));
	ck_assert_msg(strstr(line, "waiting for 127.0.0.1:"), "%s", line);
	/* a still answers on the port */
	ck_assert_int_eq(kvc_connect(&c, port, 5000), 0);
	ck_assert_int_eq(kvc_call(&c, &rep, "SET", "who", "a", NULL), 0);
	kvr_free(&rep);
	kvc_close(&c);
	rig_free(&a);
	for (i = 0; i < 250 && colo_kv_port(b.g) == 0; i++)
		usleep(20000);
	ck_assert_uint_eq(colo_kv_port(b.g), port);
	ck_assert_int_eq(kvc_connect(&c, port, 5000), 0);
	ck_assert_int_eq(kvc_call(&c, &rep, "GET", "who", NULL), 0);
	ck_assert(rep.nil);                     /* b's own (empty) store */
	kvr_free(&rep);
	kvc_close(&c);
	b.g->ops->describe(b.g, line, sizeof(line));
	ck_assert_msg(strstr(line, "serving 127.0.0.1:"), "%s", line);
	rig_free(&b);
}
END_TEST

/* The commands the guest has run, from its describe line. */
static unsigned long long commands_run(struct rig *r)
{
	char line[256];
	const char *p;

	r->g->ops->describe(r->g, line, sizeof(line));
	p = strstr(line, " clients, ");
	ck_assert_msg(p, "%s", line);
	return strtoull(p + strlen(" clients, "), NULL, 10);
}

/*
 * Held replies are bounded: a pipeline of GETs of a 1 MiB value, sent at
 * once while output is held, runs only until 16 MiB of replies wait, and
 * the rest runs once they are released and drain.
 */
START_TEST(held_output_is_bounded)
{
	enum { GETS = 40, BIG = 1 << 20 };
	struct rig r;
	struct kvc c;
	struct kvr rep;
	char *big = malloc(BIG + 1);
	unsigned long long n, last;
	int stable;

	ck_assert_ptr_nonnull(big);
	memset(big, 'x', BIG);
	big[BIG] = '\0';
	rig_init(&r, true);
	ck_assert_int_eq(kvc_connect(&c, r.port, 10000), 0);
	ck_assert_int_eq(kvc_call(&c, &rep, "SET", "big", big, NULL), 0);
	ck_assert_str_eq(rep.str, "OK");
	kvr_free(&rep);
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
		ck_assert_int_eq(kvc_send_raw(&c, all, len), 0);
	}
	/* wait until the guest stops running them */
	last = commands_run(&r);
	for (stable = 0; stable < 30; ) {
		usleep(10000);
		n = commands_run(&r);
		stable = n == last ? stable + 1 : 0;
		last = n;
	}
	/* SET, then as many GETs as fill 16 MiB of replies */
	ck_assert_uint_eq(last, 1 + 16);
	ck_assert(!readable(&c, 0));
	r.g->ops->output_release(r.g, 5);
	for (int i = 0; i < GETS; i++) {
		ck_assert_msg(kvc_read(&c, &rep) == 0, "reply %d: %s", i, c.err);
		ck_assert_int_eq(rep.type, '$');
		ck_assert_uint_eq(rep.len, BIG);
		kvr_free(&rep);
	}
	ck_assert_uint_eq(commands_run(&r), 1 + GETS);
	kvc_close(&c);
	rig_free(&r);
	free(big);
}
END_TEST

/* Garbage in the store's RAM: verify says so (and never reads outside it). */
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

START_TEST(manual_tracking_is_refused)
{
	struct colo_config cfg;
	struct colo_guest *g = NULL;
	struct colo_err err;

	memset(&cfg, 0, sizeof(cfg));
	cfg.ram_mb = 4;
	cfg.dirty_tracking = COLO_DIRTY_MANUAL;
	colo_err_clear(&err);
	ck_assert_int_ne(colo_kv_ops.create(&cfg, &g, &err), 0);
	ck_assert_str_eq(err.msg, "kv: dirty-tracking manual is not supported (the store "
			 "writes anywhere in its RAM): use auto, uffd-wp or mprotect");
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
	tcase_add_test(tc, garbage_is_reported);
	tcase_add_test(tc, manual_tracking_is_refused);
	suite_add_tcase(s, tc);
	return colo_test_main(s);
}
