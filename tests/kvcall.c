/* kvcall.c: see kvcall.h. */
#include "config.h"

#include <check.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "guest.h"
#include "kvcall.h"
#include "testutil.h"

redisReply *kv_call(redisContext *c, const char *fmt, ...)
{
	va_list ap;
	void *r;

	va_start(ap, fmt);
	r = redisvCommand(c, fmt, ap);
	va_end(ap);
	ck_assert_msg(r, "%s: %s", fmt, c->errstr);
	return r;
}

redisContext *kv_open(uint16_t port)
{
	struct timeval tv = { 10, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);

	ck_assert_msg(c && !c->err, "connect to port %u: %s", port, c ? c->errstr : "no memory");
	ck_assert_int_eq(redisSetTimeout(c, tv), REDIS_OK);
	return c;
}

void kv_flush(redisContext *c)
{
	int done = 0;

	while (!done)
		ck_assert_msg(redisBufferWrite(c, &done) == REDIS_OK, "send: %s", c->errstr);
}

void kv_send_raw(redisContext *c, const char *bytes, size_t len)
{
	ck_assert_int_eq(redisAppendFormattedCommand(c, bytes, len), REDIS_OK);
	kv_flush(c);
}

redisReply *kv_read(redisContext *c)
{
	void *r = NULL;

	ck_assert_msg(redisGetReply(c, &r) == REDIS_OK && r, "no reply: %s", c->errstr);
	return r;
}

bool kv_closed(redisContext *c)
{
	void *r = NULL;

	if (redisGetReply(c, &r) == REDIS_OK) {
		freeReplyObject(r);
		return false;
	}
	return true;
}

bool kv_readable(redisContext *c, int ms)
{
	struct pollfd p = { c->fd, POLLIN, 0 };

	return c->reader->len > c->reader->pos || poll(&p, 1, ms) == 1;
}

void kv_expect_status(redisContext *c, const char *want)
{
	redisReply *r = kv_read(c);

	ck_assert_int_eq(r->type, REDIS_REPLY_STATUS);
	ck_assert_str_eq(r->str, want);
	freeReplyObject(r);
}

unsigned long long kv_commands_run(struct colo_guest *g)
{
	char line[256];
	const char *p;

	g->ops->describe(g, line, sizeof(line));
	p = strstr(line, " clients, ");
	ck_assert_msg(p, "%s", line);
	return strtoull(p + strlen(" clients, "), NULL, 10);
}

struct ran_arg {
	struct colo_guest *g;
	unsigned long long n;
};

static bool cond_ran(void *ud)
{
	struct ran_arg *a = ud;

	return kv_commands_run(a->g) >= a->n;
}

void kv_wait_ran(struct colo_guest *g, unsigned long long n)
{
	struct ran_arg a = { g, n };

	ck_assert_msg(colo_test_wait(cond_ran, &a, 20000), "the guest ran %llu commands, "
		      "not %llu", kv_commands_run(g), n);
}
