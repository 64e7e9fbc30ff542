/* kvcall.c: see kvcall.h. */
#include "config.h"

#include <check.h>
#include <stdarg.h>

#include "kvcall.h"

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
