/* repl.c: the replication connection (see repl.h). */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "repl.h"
#include "seal.h"

_Static_assert(COLO_SEAL_KEY_BYTES == crypto_secretstream_xchacha20poly1305_KEYBYTES,
	       "a seal key is a secretstream key");

/* What one read may add to rx: a checkpoint arrives in pieces this big. */
#define READ_CHUNK 65536

static void on_closed(uv_handle_t *h)
{
	struct colo_repl_conn *c = h->data;

	/* libuv has called back every batch's write by now (tcp's close). */
	if (--c->handles > 0)
		return;
	if (c->seal) {
		colo__seal_free(c->seal);
		if (c->rx.data)
			sodium_memzero(c->rx.data, c->rx.cap);
	}
	colo_buf_free(&c->rx);
	free(c);
}

void colo_repl_close(struct colo_repl_conn *c)
{
	if (!c || !c->owner)
		return;
	c->owner = NULL;
	c->handles = 2;
	if (c->seal) {
		colo__seal_stop(c->seal);
		c->handles++;
		uv_close((uv_handle_t *)&c->kick, on_closed);
	}
	uv_close((uv_handle_t *)&c->resume, on_closed);
	uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void format_addr(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "?");
	}
}

int colo_repl_peer_addr(const struct colo_repl_conn *c, struct sockaddr_storage *ss)
{
	int len = sizeof(*ss);

	return uv_tcp_getpeername(&c->tcp, (struct sockaddr *)ss, &len);
}

void colo_repl_set_peer(struct colo_repl_conn *c, const char *node)
{
	snprintf(c->peer, sizeof(c->peer), "%s", node ? node : "");
}

const char *colo_repl_describe(const struct colo_repl_conn *c, char *buf, size_t len)
{
	if (c->peer[0])
		snprintf(buf, len, "%s (%s)", c->peer, c->addr);
	else
		snprintf(buf, len, "%s", c->addr);
	return buf;
}

static struct colo_repl_conn *conn_new(uv_loop_t *loop, const struct colo_repl_ops *ops,
				       void *owner, struct colo_err *err)
{
	struct colo_repl_conn *c = calloc(1, sizeof(*c));

	if (!c) {
		colo_err_set(err, ENOMEM, "out of memory");
		return NULL;
	}
	colo_buf_init(&c->rx);
	c->ops = ops;
	c->owner = owner;
	snprintf(c->addr, sizeof(c->addr), "?");
	uv_tcp_init(loop, &c->tcp);
	c->tcp.data = c;
	uv_idle_init(loop, &c->resume);
	c->resume.data = c;
	return c;
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct colo_repl_conn *c = h->data;
	/* Sealed, the socket's bytes are ciphertext: they go to the seal. */
	struct colo_buf *to = c->seal ? colo__seal_in(c->seal) : &c->rx;

	(void)suggested;
	if (!colo_buf_reserve(to, READ_CHUNK)) {
		*buf = uv_buf_init(NULL, 0);      /* libuv reports UV_ENOBUFS */
		return;
	}
	*buf = uv_buf_init((char *)to->data + to->len, (unsigned)(to->cap - to->len));
}

/* Closed by the callback or not, the memory is still ours: compact. */
static void compact(struct colo_repl_conn *c)
{
	if (c->rx_pos) {
		memmove(c->rx.data, c->rx.data + c->rx_pos, c->rx.len - c->rx_pos);
		c->rx.len -= c->rx_pos;
		c->rx_pos = 0;
	}
}

/* Open what whole chunks came and hand their plaintext to the owner. */
static void open_sealed(struct colo_repl_conn *c)
{
	char why[192];
	size_t added;
	int r;

	r = colo__seal_open(c->seal, &c->rx, &added, why, sizeof(why));
	if (added)
		c->ops->read(c, c->owner, added);
	if (r && c->owner) {
		if (r == -EPROTO)
			colo_repl_protocol_error(c, "%s", why);
		else
			c->ops->lost(c, c->owner, COLO_REPL_CLOSED, why);
	}
	compact(c);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct colo_repl_conn *c = st->data;

	(void)buf;
	if (!c->owner || nread == 0)
		return;
	if (nread < 0) {
		/* What came before the end goes first, as it does plain. */
		if (c->seal) {
			open_sealed(c);
			if (!c->owner)
				return;
		}
		c->ops->lost(c, c->owner, COLO_REPL_CLOSED, nread == UV_EOF ?
			     "closed by peer" : uv_strerror((int)nread));
		return;
	}
	if (c->seal) {
		colo__seal_in(c->seal)->len += (size_t)nread;
		open_sealed(c);
		return;
	}
	c->rx.len += (size_t)nread;
	c->ops->read(c, c->owner, (size_t)nread);
	compact(c);
	/* Sealed by the callback: the peer's sealed bytes behind its last
	 * plain message may be here already (yielded: on the next turn). */
	if (c->seal && c->owner && !c->yielded)
		open_sealed(c);
}

static int start_reading(struct colo_repl_conn *c, struct colo_err *err)
{
	struct sockaddr_storage ss;
	int r;

	uv_tcp_nodelay(&c->tcp, 1);
	if (colo_repl_peer_addr(c, &ss) == 0)
		format_addr(&ss, c->addr, sizeof(c->addr));
	r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (r)
		return colo_err_set(err, -r, "cannot read from %s: %s", c->addr,
				    uv_strerror(r));
	return 0;
}

void colo_repl_consume(struct colo_repl_conn *c, size_t n)
{
	c->rx_pos += n < colo_repl_rx_len(c) ? n : colo_repl_rx_len(c);
}

/*
 * The turn after a yield: the rest of what came, then the socket again.
 * An idle handle runs once per turn, and the loop does not wait in its poll
 * while one is active (a zero timer started from its own callback would run
 * again at once, in the same turn).
 */
static void on_resume(uv_idle_t *h)
{
	struct colo_repl_conn *c = h->data;
	int r;

	uv_idle_stop(h);
	if (!c->owner)
		return;
	c->yielded = false;
	if (colo_repl_rx_len(c))
		c->ops->read(c, c->owner, 0);
	if (!c->owner)
		return;
	compact(c);
	if (c->yielded)
		return;
	/* Whole sealed chunks that waited behind the yield. */
	if (c->seal) {
		open_sealed(c);
		if (!c->owner || c->yielded)
			return;
	}
	r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (r)
		c->ops->lost(c, c->owner, COLO_REPL_CLOSED, uv_strerror(r));
}

void colo_repl_yield(struct colo_repl_conn *c)
{
	if (!c || !c->owner || c->yielded)
		return;
	c->yielded = true;
	uv_read_stop((uv_stream_t *)&c->tcp);
	uv_idle_start(&c->resume, on_resume);
}

/* ---- making connections ---- */

static void on_connect(uv_connect_t *req, int status)
{
	struct colo_repl_conn *c = req->data;
	struct colo_err err;

	if (!c->owner)
		return;
	colo_err_clear(&err);
	if (status == 0 && start_reading(c, &err) != 0)
		status = -err.code;
	c->ops->connected(c, c->owner, status);
}

int colo_repl_connect(uv_loop_t *loop, const struct sockaddr *to,
		      const struct colo_repl_ops *ops, void *owner,
		      struct colo_repl_conn **out, struct colo_err *err)
{
	struct colo_repl_conn *c = conn_new(loop, ops, owner, err);
	struct sockaddr_storage ss;
	int r;

	*out = NULL;
	if (!c)
		return -err->code;
	memset(&ss, 0, sizeof(ss));
	memcpy(&ss, to, to->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) :
	       sizeof(struct sockaddr_in));
	format_addr(&ss, c->addr, sizeof(c->addr));
	c->connect_req.data = c;
	r = uv_tcp_connect(&c->connect_req, &c->tcp, to, on_connect);
	if (r) {
		colo_err_set(err, -r, "cannot connect to %s: %s", c->addr, uv_strerror(r));
		colo_repl_close(c);
		return r;
	}
	*out = c;
	return 0;
}

int colo_repl_accept(uv_stream_t *server, const struct colo_repl_ops *ops, void *owner,
		     struct colo_repl_conn **out, struct colo_err *err)
{
	struct colo_repl_conn *c = conn_new(server->loop, ops, owner, err);
	int r;

	*out = NULL;
	if (!c)
		return -err->code;
	r = uv_accept(server, (uv_stream_t *)&c->tcp);
	if (r) {
		colo_err_set(err, -r, "cannot accept a connection: %s", uv_strerror(r));
		colo_repl_close(c);
		return r;
	}
	r = start_reading(c, err);
	if (r) {
		colo_repl_close(c);
		return r;
	}
	*out = c;
	return 0;
}

/* ---- writing ---- */

struct write_group;

struct write_req {
	uv_write_t req;
	void (*done)(void *ud, int status);
	void *ud;
	struct write_group *group;   /* a piece of a big write, or NULL */
	uint8_t data[];              /* the copy colo_repl_send() made */
};

/* A big write's pieces: done once the last of them is written. */
struct write_group {
	unsigned pending;
	int status;                  /* the first error */
	void (*done)(void *ud, int status);
	void *ud;
};

static void on_written(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	struct write_group *g = w->group;

	/* A failed write also fails the read: the owner hears of it there. */
	if (g) {
		if (status && !g->status)
			g->status = status;
		if (--g->pending == 0) {
			if (g->done)
				g->done(g->ud, g->status);
			free(g);
		}
	} else if (w->done) {
		w->done(w->ud, status);
	}
	free(w);
}

/*
 * What the socket takes at once, without a request (nothing while one
 * waits: libuv keeps the order).  A uv_write that completes at once still
 * costs a system call at the loop's next turn: draining, libuv stops
 * watching the socket for writable, which changes its poll set.  For a
 * stream of small writes, one a turn (compare mode's units and digests),
 * that was one epoll_ctl for every write.  An error here is left for
 * uv_write to find again and report as it always does.
 */
static size_t write_at_once(struct colo_repl_conn *c, const uv_buf_t *bufs, unsigned n)
{
	int r = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);

	return r > 0 ? (size_t)r : 0;
}

/*
 * A big write goes as pieces of at most WRITE_SLICE bytes, a request each.
 * The kernel copies whatever a write gives it that the socket takes: on
 * loopback, with the peer reading as fast, one writev of a sync took many
 * MiB, 5 ms and more of one turn of the loop.  libuv writes a request per
 * turn once the socket has filled, so a turn copies a piece at most.
 */
#define WRITE_SLICE (1u << 20)
#define WRITE_SLICE_BUFS 8

static int write_pieces(struct colo_repl_conn *c, const uv_buf_t *bufs, unsigned n,
			void (*done)(void *ud, int status), void *ud)
{
	struct write_group *g = calloc(1, sizeof(*g));
	size_t off = 0;
	unsigned i = 0;

	if (!g)
		return UV_ENOMEM;
	g->done = done;
	g->ud = ud;
	g->pending = 1;              /* this call's, until every piece is queued */
	while (i < n) {
		uv_buf_t piece[WRITE_SLICE_BUFS];
		size_t room = WRITE_SLICE;
		unsigned k = 0;
		struct write_req *w;
		int r;

		while (i < n && room && k < WRITE_SLICE_BUFS) {
			size_t take = bufs[i].len - off < room ? bufs[i].len - off : room;

			piece[k++] = uv_buf_init(bufs[i].base + off, (unsigned)take);
			room -= take;
			off += take;
			if (off == bufs[i].len) {
				i++;
				off = 0;
			}
		}
		w = calloc(1, sizeof(*w));
		r = w ? uv_write(&w->req, (uv_stream_t *)&c->tcp, piece, k, on_written) :
			UV_ENOMEM;
		if (r) {
			free(w);
			if (g->pending == 1) {
				free(g);             /* nothing queued: the caller's error */
				return r;
			}
			g->status = r;       /* the rest never goes: done says so */
			break;
		}
		w->group = g;
		g->pending++;
	}
	/* Callbacks come at a later turn, never from uv_write itself. */
	g->pending--;
	return 0;
}

int colo_repl_write(struct colo_repl_conn *c, const uv_buf_t *bufs, unsigned n,
		    void (*done)(void *ud, int status), void *ud)
{
	struct write_req *w;
	size_t total = 0;
	int r;

	if (!c || !c->owner)
		return UV_ENOTCONN;
	if (c->seal)
		return colo__seal_write(c->seal, bufs, n, false, false, done, ud);
	for (unsigned i = 0; i < n; i++)
		total += bufs[i].len;
	if (total > WRITE_SLICE)
		return write_pieces(c, bufs, n, done, ud);
	w = calloc(1, sizeof(*w));
	if (!w)
		return UV_ENOMEM;
	w->done = done;
	w->ud = ud;
	/* Nothing to send still completes in its turn (libuv wants a buffer). */
	if (n == 0)
		r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &(uv_buf_t){ .base = NULL },
			     1, on_written);
	else
		r = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, n, on_written);
	if (r)
		free(w);
	return r;
}

int colo_repl_write_now(struct colo_repl_conn *c, const uv_buf_t *bufs, unsigned n,
			void (*done)(void *ud, int status), void *ud)
{
	uv_buf_t few[8], *rest = few;
	size_t total = 0, k;
	unsigned i;
	int r;

	if (!c || !c->owner)
		return UV_ENOTCONN;
	if (c->seal)
		return colo_repl_write(c, bufs, n, done, ud);
	for (i = 0; i < n; i++)
		total += bufs[i].len;
	k = write_at_once(c, bufs, n);
	if (k == total)
		return 1;
	/* The rest: uv_write copies the array, not the bytes. */
	for (i = 0; k >= bufs[i].len; i++)
		k -= bufs[i].len;
	if (n - i > sizeof(few) / sizeof(few[0])) {
		rest = malloc((n - i) * sizeof(*rest));
		if (!rest)
			return UV_ENOMEM;
	}
	memcpy(rest, bufs + i, (n - i) * sizeof(*rest));
	rest[0].base += k;
	rest[0].len -= k;
	r = colo_repl_write(c, rest, n - i, done, ud);
	if (rest != few)
		free(rest);
	return r;
}

int colo_repl_send(struct colo_repl_conn *c, const void *data, size_t len)
{
	struct write_req *w;
	uv_buf_t b;
	size_t k;
	int r;

	if (!c || !c->owner)
		return UV_ENOTCONN;
	if (c->seal) {
		b = uv_buf_init((char *)data, (unsigned)len);
		return colo__seal_write(c->seal, &b, 1, true, false, NULL, NULL);
	}
	b = uv_buf_init((char *)data, (unsigned)len);
	k = write_at_once(c, &b, 1);
	if (k == len)
		return 0;
	data = (const uint8_t *)data + k;
	len -= k;
	w = calloc(1, sizeof(*w) + len);
	if (!w)
		return UV_ENOMEM;
	memcpy(w->data, data, len);
	b = uv_buf_init((char *)w->data, (unsigned)len);
	r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
	if (r)
		free(w);
	return r;
}

int colo_repl_send_msg(struct colo_repl_conn *c, uint32_t msg)
{
	uint8_t b[4];

	colo_store_be32(b, msg);
	return colo_repl_send(c, b, sizeof(b));
}

int colo_repl_try_write(struct colo_repl_conn *c, const void *data, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
	int r;

	if (!c || !c->owner)
		return UV_ENOTCONN;
	if (c->seal) {
		b.len = len < INT_MAX ? len : INT_MAX;
		r = colo__seal_write(c->seal, &b, 1, true, true, NULL, NULL);
		return r ? r : (int)b.len;
	}
	return uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
}

/* ---- sealing ---- */

static void on_kick(uv_timer_t *t)
{
	struct colo_repl_conn *c = t->data;
	int werr;

	if (!c->owner)
		return;
	werr = colo__seal_write_error(c->seal);
	if (werr) {
		c->ops->lost(c, c->owner, COLO_REPL_CLOSED, uv_strerror(werr));
		return;
	}
	open_sealed(c);
}

/* A uv_write refused at once: tell the owner on the next turn, not from
 * inside whatever call of its own it is in. */
static void on_write_failed(void *arg, int status)
{
	struct colo_repl_conn *c = arg;

	(void)status;
	if (c->owner)
		uv_timer_start(&c->kick, on_kick, 0, 0);
}

int colo_repl_seal(struct colo_repl_conn *c, const uint8_t tx_key[COLO_SEAL_KEY_BYTES],
		   const uint8_t rx_key[COLO_SEAL_KEY_BYTES], struct colo_err *err)
{
	uint8_t header[COLO_SEAL_HEADER];
	struct colo_seal *s;
	size_t left;
	int r;

	if (!c || !c->owner)
		return colo_err_set(err, ENOTCONN, "cannot seal a closed connection");
	if (c->seal)
		return colo_err_set(err, EALREADY, "the connection to %s is sealed already",
				    c->addr);
	r = colo__seal_new(tx_key, rx_key, (uv_stream_t *)&c->tcp, on_write_failed, c, header,
			   &s, err);
	if (r)
		return r;
	/* What the peer sent after its last plain message is its sealed start. */
	left = colo_repl_rx_len(c);
	colo_buf_put(colo__seal_in(s), colo_repl_rx(c), left);
	if (!colo_buf_ok(colo__seal_in(s))) {
		colo__seal_free(s);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	/* Plain, behind every plain write before it: the peer opens from here. */
	r = colo_repl_send(c, header, sizeof(header));
	if (r) {
		colo__seal_free(s);
		return colo_err_set(err, -r, "cannot send to %s: %s", c->addr, uv_strerror(r));
	}
	c->rx.len = c->rx_pos;
	uv_timer_init(c->tcp.loop, &c->kick);
	c->kick.data = c;
	c->seal = s;
	/* Not opened here: the owner may be inside its read callback.  on_read
	 * opens them when that returns, else the next turn of the loop does. */
	if (left)
		uv_timer_start(&c->kick, on_kick, 0, 0);
	return 0;
}

bool colo_repl_sealed(const struct colo_repl_conn *c)
{
	return c && c->seal;
}

/* ---- ending ---- */

void colo_repl_protocol_error(struct colo_repl_conn *c, const char *fmt, ...)
{
	char why[384], who[160];
	va_list ap;

	if (!c || !c->owner)
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	colo_log_error("protocol error from %s: %s", colo_repl_describe(c, who, sizeof(who)),
		       why);
	c->ops->lost(c, c->owner, COLO_REPL_PROTOCOL, why);
}
