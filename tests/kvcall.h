/*
 * kvcall.h: what the kv tests (test_kv, test_kvcmp, test_kv_loss) share on
 * top of hiredis, Debian's Redis client library: the kv guest is checked
 * against a RESP parser it did not write.  Each call fails the test (Check)
 * when the connection does not do what it must.
 */
#ifndef COLO_TEST_KVCALL_H
#define COLO_TEST_KVCALL_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A command the test needs an answer to: fails the test if none comes. */
redisReply *kv_call(redisContext *c, const char *fmt, ...);

/* Blocking, to 127.0.0.1:port, with a 10 s timeout on everything. */
redisContext *kv_open(uint16_t port);
/* Write out whatever hiredis holds for the server. */
void kv_flush(redisContext *c);
/* Send bytes as they are (inline commands, pipelines, garbage). */
void kv_send_raw(redisContext *c, const char *bytes, size_t len);
/* The next reply; fails the test on a closed connection or a timeout. */
redisReply *kv_read(redisContext *c);
/* Is there no more reply: the connection closed (hiredis: an error). */
bool kv_closed(redisContext *c);
/* Is a reply waiting on the connection within ms? */
bool kv_readable(redisContext *c, int ms);
/* The next reply is this status ("OK", "PONG"). */
void kv_expect_status(redisContext *c, const char *want);

struct colo_guest;

/* The commands a kv guest has run, from its describe line. */
unsigned long long kv_commands_run(struct colo_guest *g);
/* Wait until it has run n in all (20 s at most, then fail). */
void kv_wait_ran(struct colo_guest *g, unsigned long long n);

#endif
