/*
 * kvcall.h: what the kv tests (test_kv, test_kv_loss) share on top of
 * hiredis, Debian's Redis client library: the kv guest is checked against a
 * RESP parser it did not write.
 */
#ifndef COLO_TEST_KVCALL_H
#define COLO_TEST_KVCALL_H

#include <hiredis/hiredis.h>

/* A command the test needs an answer to: fails the test if none comes. */
redisReply *kv_call(redisContext *c, const char *fmt, ...);

#endif
