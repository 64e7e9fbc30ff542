/*
 * kv_output.c: the kv guest's replies on their way out (kv.h, "output
 * commit"; guest.h).  Each batch a connection runs leaves its replies in
 * c->out; kv_conn_queue() sends them at once when they may go and nothing
 * is held before them, else copies them into a chunk at the tail of the
 * connection's held queue (and asks the engine for a checkpoint).
 * kv_conn_flush() writes the chunks that may go from the head: what the
 * socket takes at once, the rest in one uv_write per flush.
 *
 * A held reply goes when `tag <= released || (pos && pos <= matched)`.
 * Along one connection tags and positions both only grow, so once a chunk
 * may go so may every chunk before it: flushing from the head in order
 * keeps the connection's order.
 *
 * Memory: the connection owns its held chunks; a write request owns the
 * chunks it writes from the moment it is queued and frees them in its
 * callback; kv_conn_drop_held() frees what is still held when the
 * connection is freed.  c->held counts the bytes of both; kv->held_bytes
 * and kv->held_batches count them for all connections (metrics).
 *
 * Threads: the kv thread only (the watermarks it reads are atomics in
 * struct kv, raised from any thread).
 */
#include "config.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "kv_int.h"

/* One batch's replies, waiting for their epoch to be released (or, in
 * compare mode, their position to be matched). */
struct kv_chunk {
	struct kv_chunk *next;
	uint64_t tag;
	uint64_t pos;                    /* the unit's position; 0: none */
	size_t len;
	uint8_t data[];
};

struct wreq {
	uv_write_t req;
	struct kv_conn *c;
	struct kv_chunk *chunks;
	size_t bytes;
};

struct kv_gate kv_gate_now(struct kv *kv)
{
	struct kv_gate g = { atomic_load(&kv->released), atomic_load(&kv->matched) };

	return g;
}

static bool may_go(const struct kv_gate *g, uint64_t tag, uint64_t pos)
{
	return tag <= g->released || (pos && pos <= g->matched);
}

/* Bytes held no more: the connection's count and the guest's total
 * (metrics, read from the engine's thread). */
static void held_less(struct kv_conn *c, size_t n)
{
	c->held -= n;
	atomic_fetch_sub(&c->kv->held_bytes, n);
}

static void on_written(uv_write_t *req, int status)
{
	struct wreq *w = (struct wreq *)req;
	struct kv_conn *c = w->c;

	(void)status;
	while (w->chunks) {
		struct kv_chunk *n = w->chunks->next;

		free(w->chunks);
		atomic_fetch_sub(&c->kv->held_batches, 1);
		w->chunks = n;
	}
	held_less(c, w->bytes);
	free(w);
	if (c->closing)
		return;
	if (c->done && !c->head && c->held == 0) {
		kv_conn_close(c);
		return;
	}
	kv_conn_resume(c);
}

/*
 * Write what the socket takes now, without a request (uv_try_write refuses
 * while earlier writes are queued, so order holds).  Returns how much of
 * [data, len) went, or -1 after closing the connection.
 */
static ssize_t conn_try_write(struct kv_conn *c, const uint8_t *data, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
	int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);

	if (r >= 0)
		return r;
	if (r == UV_EAGAIN)
		return 0;
	kv_conn_close(c);                  /* the client went away */
	return -1;
}

/* Write every chunk that may go (see the top): what the socket takes at
 * once, the rest in one uv_write. */
void kv_conn_flush(struct kv_conn *c, const struct kv_gate *gt)
{
	struct kv_chunk *first, *last = NULL, *ch;
	uv_buf_t bufs[64];
	unsigned n = 0;
	size_t bytes = 0;
	struct wreq *w;

	if (c->closing)
		return;
	while ((ch = c->head) && may_go(gt, ch->tag, ch->pos)) {
		ssize_t put = conn_try_write(c, ch->data, ch->len);

		if (put < 0)
			return;
		held_less(c, (size_t)put);
		if ((size_t)put < ch->len) {
			memmove(ch->data, ch->data + put, ch->len - (size_t)put);
			ch->len -= (size_t)put;
			break;
		}
		c->head = ch->next;
		if (!c->head)
			c->tail = NULL;
		free(ch);
		atomic_fetch_sub(&c->kv->held_batches, 1);
	}
	first = c->head;
	for (ch = c->head; ch && may_go(gt, ch->tag, ch->pos) && n < 64; ch = ch->next) {
		bufs[n++] = uv_buf_init((char *)ch->data, (unsigned)ch->len);
		bytes += ch->len;
		last = ch;
	}
	if (!last) {
		if (c->done && !c->head && c->held == 0)
			kv_conn_close(c);
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		kv_conn_close(c);
		return;
	}
	c->head = last->next;
	if (!c->head)
		c->tail = NULL;
	last->next = NULL;
	w->c = c;
	w->chunks = first;
	w->bytes = bytes;
	if (uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, n, on_written) != 0) {
		while (w->chunks) {
			struct kv_chunk *nx = w->chunks->next;

			free(w->chunks);
			atomic_fetch_sub(&c->kv->held_batches, 1);
			w->chunks = nx;
		}
		held_less(c, bytes);
		free(w);
		kv_conn_close(c);
		return;
	}
	if (c->head && may_go(gt, c->head->tag, c->head->pos))
		kv_conn_flush(c, gt);          /* more than 64 chunks were ready */
}

static void ask_for_checkpoint(struct kv *kv, uint64_t tag)
{
	if (kv->want_sent == tag)
		return;
	kv->want_sent = tag;
	pthread_mutex_lock(&kv->hook_mu);
	if (kv->want)
		kv->want(kv->want_ud);
	pthread_mutex_unlock(&kv->hook_mu);
}

/*
 * Queue this batch's replies (c->out) under tag and pos, and send what may
 * go.  The watermarks are read only now, after the tap saw the unit: a
 * match that came in between lets the replies go at once.
 */
void kv_conn_queue(struct kv_conn *c, uint64_t tag, uint64_t pos)
{
	struct kv *kv = c->kv;
	struct kv_gate gt = kv_gate_now(kv);
	struct kv_chunk *ch;

	if (c->out.len && may_go(&gt, tag, pos) && !c->head) {
		/* Nothing held before it and it may go: straight to the socket,
		 * no copy. */
		ssize_t put = conn_try_write(c, c->out.data, c->out.len);

		if (put < 0)
			return;
		if ((size_t)put == c->out.len) {
			colo_buf_reset(&c->out);
		} else {
			memmove(c->out.data, c->out.data + put, c->out.len - (size_t)put);
			c->out.len -= (size_t)put;
		}
	}
	if (c->out.len) {
		ch = malloc(sizeof(*ch) + c->out.len);
		if (!ch) {
			kv_conn_close(c);
			return;
		}
		ch->next = NULL;
		ch->tag = tag;
		ch->pos = pos;
		ch->len = c->out.len;
		memcpy(ch->data, c->out.data, c->out.len);
		colo_buf_reset(&c->out);
		if (c->tail)
			c->tail->next = ch;
		else
			c->head = ch;
		c->tail = ch;
		c->held += ch->len;
		atomic_fetch_add(&kv->held_bytes, ch->len);
		atomic_fetch_add(&kv->held_batches, 1);
		if (!may_go(&gt, tag, pos))
			ask_for_checkpoint(kv, tag);
	}
	kv_conn_flush(c, &gt);
}

void kv_conn_drop_held(struct kv_conn *c)
{
	while (c->head) {
		struct kv_chunk *n = c->head->next;

		held_less(c, c->head->len);
		free(c->head);
		atomic_fetch_sub(&c->kv->held_batches, 1);
		c->head = n;
	}
	c->tail = NULL;
}
