/* seal.c: the sealed framing of the replication connection (see seal.h). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "psk.h"
#include "seal.h"

/* Plaintext per uv_write: a few chunks, so that one syscall carries them. */
#define BATCH_PLAIN (4 * COLO_SEAL_CHUNK)
/* Ciphertext waiting in libuv: enough to keep the socket busy while the
 * loop seals the next batch, little enough that a large write costs a
 * window of memory and no long stall of the loop. */
#define WINDOW (16 * COLO_SEAL_CHUNK)

#define TAG_MESSAGE crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
#define TAG_FINAL crypto_secretstream_xchacha20poly1305_TAG_FINAL

struct seal_item {
	struct seal_item *next;
	void (*done)(void *ud, int status);
	void *ud;
	bool eager;
	unsigned n;                   /* bufs, none of them empty unless n == 1 */
	unsigned bi;                  /* sealed up to bufs[bi].base + off */
	size_t off;
	uv_buf_t bufs[];              /* then, for a copy, the bytes */
};

struct seal_batch {
	uv_write_t req;
	struct colo_seal *s;
	struct seal_item *items;      /* those whose last chunk is here, in order */
	size_t len;
	uint8_t data[];
};

struct colo_seal {
	crypto_secretstream_xchacha20poly1305_state tx, rx;
	uint8_t rx_key[crypto_secretstream_xchacha20poly1305_KEYBYTES];  /* until the header */
	bool rx_started;              /* the peer's header came */
	struct colo_buf in;           /* ciphertext received and not opened yet */
	uv_stream_t *stream;
	void (*write_failed)(void *arg, int status);
	void *arg;
	struct seal_item *head, **tail;         /* not sealed whole yet */
	struct seal_item *dead, **dead_tail;    /* in a batch uv_write refused */
	size_t inflight;              /* ciphertext handed to libuv, not written */
	int werr;                     /* the first write error */
	bool stopped;
};

int colo__seal_new(const uint8_t tx_key[32], const uint8_t rx_key[32], uv_stream_t *stream,
		   void (*write_failed)(void *arg, int status), void *arg,
		   uint8_t header[COLO_SEAL_HEADER], struct colo_seal **out,
		   struct colo_err *err)
{
	struct colo_seal *s;
	int r;

	*out = NULL;
	r = colo_sodium_init(err);
	if (r)
		return r;
	s = calloc(1, sizeof(*s));
	if (!s)
		return colo_err_set(err, ENOMEM, "out of memory");
	if (crypto_secretstream_xchacha20poly1305_init_push(&s->tx, header, tx_key) != 0) {
		free(s);
		return colo_err_set(err, EINVAL, "cannot start a sealed stream");
	}
	memcpy(s->rx_key, rx_key, sizeof(s->rx_key));
	colo_buf_init(&s->in);
	s->stream = stream;
	s->write_failed = write_failed;
	s->arg = arg;
	s->tail = &s->head;
	s->dead_tail = &s->dead;
	*out = s;
	return 0;
}

static void finish_items(struct seal_item *it, int status)
{
	while (it) {
		struct seal_item *next = it->next;

		if (it->done)
			it->done(it->ud, status);
		free(it);
		it = next;
	}
}

void colo__seal_stop(struct colo_seal *s)
{
	s->stopped = true;
}

void colo__seal_free(struct colo_seal *s)
{
	struct seal_item *dead, *head;
	int status;

	if (!s)
		return;
	status = s->werr ? s->werr : UV_ECANCELED;
	dead = s->dead;
	head = s->head;
	s->dead = s->head = NULL;
	/* What a refused uv_write held went first, then what was queued. */
	finish_items(dead, status);
	finish_items(head, status);
	if (s->in.data)
		sodium_memzero(s->in.data, s->in.cap);
	colo_buf_free(&s->in);
	sodium_memzero(s, sizeof(*s));
	free(s);
}

int colo__seal_write_error(const struct colo_seal *s)
{
	return s->werr;
}

struct colo_buf *colo__seal_in(struct colo_seal *s)
{
	return &s->in;
}

/* ---- sending ---- */

/* Where the next chunk's plaintext starts: an item and a place in it. */
struct cursor {
	struct seal_item *it;
	unsigned bi;
	size_t off;
};

/*
 * The next chunk at k: its plaintext (never across two buffers, so that it
 * is sealed where it lies), and k moved past it; *last when that ends the
 * item.  false once the queue is over.
 */
static bool next_chunk(struct cursor *k, const uint8_t **m, size_t *mlen, bool *last)
{
	struct seal_item *it = k->it;
	size_t left;

	if (!it)
		return false;
	left = it->bufs[k->bi].len - k->off;
	*mlen = left < COLO_SEAL_CHUNK ? left : COLO_SEAL_CHUNK;
	*m = (const uint8_t *)it->bufs[k->bi].base + k->off;
	k->off += *mlen;
	*last = false;
	if (k->off == it->bufs[k->bi].len) {
		k->bi++;
		k->off = 0;
		if (k->bi == it->n) {
			*last = true;
			k->it = it->next;    /* items behind the head are untouched */
			k->bi = 0;
		}
	}
	return true;
}

static void on_batch_written(uv_write_t *req, int status);

/* Seal the next batch from the queue's head and hand it to libuv. */
static int seal_batch(struct colo_seal *s)
{
	struct cursor k = { s->head, s->head->bi, s->head->off }, probe = k;
	size_t total = 0, plain = 0, mlen;
	unsigned chunks = 0;
	struct seal_item **items_tail;
	struct seal_batch *b;
	const uint8_t *m;
	uint8_t *p;
	uv_buf_t buf;
	bool last;
	int r;

	for (;;) {
		struct cursor before = probe;

		if (!next_chunk(&probe, &m, &mlen, &last))
			break;
		if (chunks && plain + mlen > BATCH_PLAIN) {
			probe = before;
			break;
		}
		plain += mlen;
		total += 4 + COLO_SEAL_ABYTES + mlen;
		chunks++;
	}
	b = malloc(sizeof(*b) + total);
	if (!b)
		return UV_ENOMEM;
	b->s = s;
	b->items = NULL;
	b->len = total;
	items_tail = &b->items;
	p = b->data;
	for (unsigned i = 0; i < chunks; i++) {
		next_chunk(&k, &m, &mlen, &last);
		colo_store_be32(p, (uint32_t)(mlen + COLO_SEAL_ABYTES));
		crypto_secretstream_xchacha20poly1305_push(&s->tx, p + 4, NULL, m, mlen, NULL, 0,
							   TAG_MESSAGE);
		p += 4 + COLO_SEAL_ABYTES + mlen;
		if (last) {
			struct seal_item *it = s->head;

			s->head = it->next;
			if (!s->head)
				s->tail = &s->head;
			it->next = NULL;
			*items_tail = it;
			items_tail = &it->next;
		}
	}
	if (s->head) {
		s->head->bi = k.bi;
		s->head->off = k.off;
	}
	buf = uv_buf_init((char *)b->data, (unsigned)total);
	r = uv_write(&b->req, s->stream, &buf, 1, on_batch_written);
	if (r) {
		/* Their bytes are sealed and lost, and the stream with them. */
		*s->dead_tail = b->items;
		if (b->items)
			s->dead_tail = items_tail;
		free(b);
		return r;
	}
	s->inflight += total;
	return 0;
}

static void pump(struct colo_seal *s)
{
	while (s->head && !s->werr && !s->stopped &&
	       (s->inflight < WINDOW || s->head->eager)) {
		int r = seal_batch(s);

		if (r) {
			s->werr = r;
			s->write_failed(s->arg, r);
			return;
		}
	}
}

static void on_batch_written(uv_write_t *req, int status)
{
	struct seal_batch *b = (struct seal_batch *)req;
	struct colo_seal *s = b->s;
	struct seal_item *items = b->items;

	s->inflight -= b->len;
	if (status < 0 && !s->werr)
		s->werr = status;
	free(b);
	/* A later batch that went does not make up for one that did not. */
	finish_items(items, status < 0 ? status : s->werr);
	pump(s);
}

int colo__seal_write(struct colo_seal *s, const uv_buf_t *bufs, unsigned n, bool copy,
		     bool eager, void (*done)(void *ud, int status), void *ud)
{
	size_t total = 0;
	unsigned keep = 0, k = 0;
	struct seal_item *it;
	uint8_t *data;

	if (s->werr)
		return s->werr;
	if (s->stopped)
		return UV_ENOTCONN;
	for (unsigned i = 0; i < n; i++) {
		total += bufs[i].len;
		keep += bufs[i].len > 0;
	}
	/* Nothing to send still goes, as one empty chunk, so that done() comes
	 * from a write callback as a plain write's would. */
	it = calloc(1, sizeof(*it) + (keep ? keep : 1) * sizeof(uv_buf_t) + (copy ? total : 0));
	if (!it)
		return UV_ENOMEM;
	data = (uint8_t *)(it->bufs + (keep ? keep : 1));
	for (unsigned i = 0; i < n; i++) {
		if (!bufs[i].len)
			continue;
		if (copy) {
			memcpy(data, bufs[i].base, bufs[i].len);
			it->bufs[k++] = uv_buf_init((char *)data, (unsigned)bufs[i].len);
			data += bufs[i].len;
		} else {
			it->bufs[k++] = bufs[i];
		}
	}
	if (!keep)
		it->bufs[k++] = uv_buf_init((char *)data, 0);
	it->n = k;
	it->eager = eager;
	it->done = done;
	it->ud = ud;
	*s->tail = it;
	s->tail = &it->next;
	pump(s);
	return 0;
}

/* ---- receiving ---- */

int colo__seal_open(struct colo_seal *s, struct colo_buf *rx, size_t *added, char *why,
		    size_t why_len)
{
	const uint8_t *p = s->in.data;
	size_t len = s->in.len, pos = 0;
	int r = 0;

	*added = 0;
	if (!s->rx_started) {
		if (len < COLO_SEAL_HEADER)
			return 0;
		if (crypto_secretstream_xchacha20poly1305_init_pull(&s->rx, p, s->rx_key) != 0) {
			snprintf(why, why_len, "a sealed stream header that is not one");
			return -EPROTO;
		}
		sodium_memzero(s->rx_key, sizeof(s->rx_key));
		s->rx_started = true;
		pos = COLO_SEAL_HEADER;
	}
	while (len - pos >= 4) {
		uint32_t clen = colo_load_be32(p + pos);
		unsigned long long mlen;
		unsigned char tag;

		if (clen < COLO_SEAL_ABYTES || clen > COLO_SEAL_CHUNK_MAX) {
			snprintf(why, why_len, "a sealed chunk of %" PRIu32 " bytes (at %s %u)", clen,
				 clen < COLO_SEAL_ABYTES ? "least" : "most",
				 clen < COLO_SEAL_ABYTES ? COLO_SEAL_ABYTES : COLO_SEAL_CHUNK_MAX);
			r = -EPROTO;
			break;
		}
		if (len - pos - 4 < clen)
			break;
		/* clen, not clen - ABYTES: never a reserve of 0 on an empty buffer. */
		if (!colo_buf_reserve(rx, clen)) {
			snprintf(why, why_len, "out of memory opening a sealed chunk");
			r = -ENOMEM;
			break;
		}
		if (crypto_secretstream_xchacha20poly1305_pull(&s->rx, rx->data + rx->len, &mlen,
							       &tag, p + pos + 4, clen, NULL,
							       0) != 0) {
			snprintf(why, why_len, "a sealed chunk that does not open (tampered with, "
				 "or sealed with another key)");
			r = -EPROTO;
			break;
		}
		if (tag != TAG_MESSAGE) {
			/* Its plaintext lies past rx->len: never handed on. */
			if (tag == TAG_FINAL)
				snprintf(why, why_len, "a sealed chunk tagged FINAL (a sealed "
					 "connection never ends that way)");
			else
				snprintf(why, why_len, "a sealed chunk tagged %u (only MESSAGE "
					 "chunks are sent)", tag);
			r = -EPROTO;
			break;
		}
		rx->len += (size_t)mlen;
		*added += (size_t)mlen;
		pos += 4 + clen;
	}
	if (r) {
		s->in.len = 0;           /* the connection is over */
		return r;
	}
	if (pos) {
		memmove(s->in.data, p + pos, len - pos);
		s->in.len = len - pos;
	}
	return 0;
}
