/*
 * kvclient.h: a small blocking RESP2 client for the tests: one connection,
 * commands sent as multibulk, replies read whole.  Every read and write has
 * a timeout, so a test never hangs on a silent server.
 */
#ifndef COLO_TEST_KVCLIENT_H
#define COLO_TEST_KVCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kvc {
	int fd;
	uint8_t *buf;                /* bytes read, not yet parsed */
	size_t len, cap;
	char err[160];               /* why the last call failed */
};

struct kvr {
	char type;                   /* '+', '-', ':', '$', '*' */
	bool nil;                    /* $-1 or *-1 */
	long long integer;
	char *str;                   /* '+', '-', '$': NUL-terminated copy */
	size_t len;
	size_t n;                    /* '*': elements */
	struct kvr *elems;
};

/* 0, or -1 with c->err. */
int kvc_connect(struct kvc *c, uint16_t port, int timeout_ms);
void kvc_close(struct kvc *c);
/* Send raw bytes. */
int kvc_send_raw(struct kvc *c, const void *data, size_t len);
/* Send one command (NULL-terminated arguments). */
int kvc_send(struct kvc *c, const char *arg0, ...);
/* Read one reply; -1 on a closed connection, a timeout or bad bytes. */
int kvc_read(struct kvc *c, struct kvr *r);
/* kvc_send + kvc_read. */
int kvc_call(struct kvc *c, struct kvr *r, const char *arg0, ...);
void kvr_free(struct kvr *r);

#endif
