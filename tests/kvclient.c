/* kvclient.c: see kvclient.h. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "kvclient.h"

#define ARGS_MAX 64

int kvc_connect(struct kvc *c, uint16_t port, int timeout_ms)
{
	struct sockaddr_in sa;
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	int one = 1;

	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		snprintf(c->err, sizeof(c->err), "socket: %s", strerror(errno));
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		snprintf(c->err, sizeof(c->err), "connect to port %u: %s", port, strerror(errno));
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	return 0;
}

void kvc_close(struct kvc *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	c->len = c->cap = 0;
}

int kvc_send_raw(struct kvc *c, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

		if (n <= 0) {
			snprintf(c->err, sizeof(c->err), "send: %s", n < 0 ? strerror(errno) :
				 "closed");
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_args(struct kvc *c, int argc, const char **argv)
{
	size_t cap = 32, len = 0;
	char *out;
	int r;

	for (int i = 0; i < argc; i++)
		cap += strlen(argv[i]) + 32;
	out = malloc(cap);
	if (!out)
		return -1;
	len += (size_t)snprintf(out, cap, "*%d\r\n", argc);
	for (int i = 0; i < argc; i++) {
		size_t n = strlen(argv[i]);

		len += (size_t)snprintf(out + len, cap - len, "$%zu\r\n", n);
		memcpy(out + len, argv[i], n);
		len += n;
		memcpy(out + len, "\r\n", 2);
		len += 2;
	}
	r = kvc_send_raw(c, out, len);
	free(out);
	return r;
}

static int collect(const char *arg0, va_list ap, const char **argv)
{
	int argc = 0;

	for (const char *a = arg0; a && argc < ARGS_MAX; a = va_arg(ap, const char *))
		argv[argc++] = a;
	return argc;
}

int kvc_send(struct kvc *c, const char *arg0, ...)
{
	const char *argv[ARGS_MAX];
	va_list ap;
	int argc;

	va_start(ap, arg0);
	argc = collect(arg0, ap, argv);
	va_end(ap);
	return send_args(c, argc, argv);
}

/* Make sure n bytes are buffered; -1 on EOF, error or timeout. */
static int need(struct kvc *c, size_t n)
{
	while (c->len < n) {
		ssize_t got;

		if (c->cap - c->len < 4096) {
			size_t cap = c->cap ? c->cap * 2 : 65536;
			uint8_t *b = realloc(c->buf, cap);

			if (!b)
				return -1;
			c->buf = b;
			c->cap = cap;
		}
		got = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (got <= 0) {
			snprintf(c->err, sizeof(c->err), "recv: %s", got < 0 ? strerror(errno) :
				 "connection closed");
			return -1;
		}
		c->len += (size_t)got;
	}
	return 0;
}

/* Parse one reply starting at *pos; -1 if more bytes are needed or bad. */
static int parse(struct kvc *c, size_t *pos, struct kvr *r)
{
	size_t i = *pos, start;
	char line[64];

	memset(r, 0, sizeof(*r));
	/* a whole line first */
	while (!(i < c->len && memchr(c->buf + i, '\n', c->len - i)))
		if (need(c, c->len + 1) != 0)
			return -1;
	start = i;
	{
		uint8_t *nl = memchr(c->buf + i, '\n', c->len - i);
		size_t ll = (size_t)(nl - (c->buf + i));

		if (ll < 2 || c->buf[i + ll - 1] != '\r') {
			snprintf(c->err, sizeof(c->err), "bad reply line");
			return -1;
		}
		r->type = (char)c->buf[i];
		i += ll + 1;
		ll -= 2;   /* the text between the type byte and "\r" */
		if (r->type == '+' || r->type == '-') {
			r->str = malloc(ll + 1);
			if (!r->str)
				return -1;
			memcpy(r->str, c->buf + start + 1, ll);
			r->str[ll] = '\0';
			r->len = ll;
		} else {
			size_t n = ll < sizeof(line) - 1 ? ll : sizeof(line) - 1;

			memcpy(line, c->buf + start + 1, n);
			line[n] = '\0';
			r->integer = strtoll(line, NULL, 10);
		}
	}
	if (r->type == '$') {
		if (r->integer < 0) {
			r->nil = true;
		} else {
			size_t n = (size_t)r->integer;

			if (need(c, i + n + 2) != 0)
				return -1;
			r->str = malloc(n + 1);
			if (!r->str)
				return -1;
			memcpy(r->str, c->buf + i, n);
			r->str[n] = '\0';
			r->len = n;
			i += n + 2;
		}
	} else if (r->type == '*') {
		if (r->integer < 0) {
			r->nil = true;
		} else {
			r->n = (size_t)r->integer;
			r->elems = calloc(r->n ? r->n : 1, sizeof(*r->elems));
			if (!r->elems)
				return -1;
			for (size_t k = 0; k < r->n; k++)
				if (parse(c, &i, &r->elems[k]) != 0)
					return -1;
		}
	} else if (r->type != '+' && r->type != '-' && r->type != ':') {
		snprintf(c->err, sizeof(c->err), "bad reply type '%c'", r->type);
		return -1;
	}
	*pos = i;
	return 0;
}

int kvc_read(struct kvc *c, struct kvr *r)
{
	size_t pos = 0;

	if (parse(c, &pos, r) != 0) {
		kvr_free(r);
		return -1;
	}
	memmove(c->buf, c->buf + pos, c->len - pos);
	c->len -= pos;
	return 0;
}

int kvc_call(struct kvc *c, struct kvr *r, const char *arg0, ...)
{
	const char *argv[ARGS_MAX];
	va_list ap;
	int argc;

	va_start(ap, arg0);
	argc = collect(arg0, ap, argv);
	va_end(ap);
	memset(r, 0, sizeof(*r));
	if (send_args(c, argc, argv) != 0)
		return -1;
	return kvc_read(c, r);
}

void kvr_free(struct kvr *r)
{
	for (size_t k = 0; r->elems && k < r->n; k++)
		kvr_free(&r->elems[k]);
	free(r->elems);
	free(r->str);
	memset(r, 0, sizeof(*r));
}
