/*
 * compare.c: the primary's comparator for output-mode compare
 * (docs/compare.md).
 *
 * The guest hands every input unit it ran to the tap, on its own thread:
 * the unit is copied into a frame (INPUT: kind, length, position, epoch,
 * the unit's bytes) and queued under a mutex; the loop drains the queue,
 * writes the frames to the secondary in one write, and keeps one entry per
 * unit in a FIFO ordered by position: the digest of what our guest said,
 * and whether the secondary said the same.  Entries are popped from the
 * front while they matched or a committed checkpoint holds their epoch;
 * the last popped position is the watermark the guest may release up to
 * (output_match).  An entry that did not match, or that could not be sent
 * (no secondary, a unit too large), stops the watermark until a checkpoint
 * holding it is acknowledged, and asks for that checkpoint.  An entry the
 * secondary leaves unanswered for compare-timeout-ms asks for one too.
 *
 * Memory: the queue's frames belong to this module until their write is
 * done; the FIFO is one growing ring.  Threads: the tap runs on the
 * guest's thread and touches only the queue (mutex); everything else is
 * the loop thread's.  A guest that can run on the loop (embed) does, here:
 * then the tap runs on the loop too, and a check handle drains the queue
 * at the end of each turn of the loop instead of the async (docs/compare.md,
 * "Where the guest runs").
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "colomsg.h"
#include "log.h"
#include "primary_int.h"

/* One unit on its way from the guest to the secondary. */
struct cmp_frame {
	struct cmp_frame *next;
	uint64_t pos, epoch;
	struct colo_cmp_digest out;
	bool sendable;                    /* false: the unit was too large */
	size_t len;                       /* of frame[] */
	uint8_t frame[];                  /* INPUT: head, pos, epoch, unit */
};

/* A batch of frames being written. */
struct cmp_write {
	struct cmp_frame *frames;
	unsigned n;
	uv_buf_t bufs[];
};

enum { E_PENDING, E_MATCHED, E_HELD };

static void frames_free(struct cmp_frame *f)
{
	while (f) {
		struct cmp_frame *n = f->next;

		free(f);
		f = n;
	}
}

/* ---- the guest's thread ---- */

static void on_unit(void *ud, const struct colo_cmp_unit *u)
{
	struct colo_primary *p = ud;
	struct primary_cmp *c = &p->cmp;
	size_t body = u->data ? u->len : 0;
	struct cmp_frame *f = malloc(sizeof(*f) + COLO_FRAME_HEAD + COLO_FRAME_INPUT_HEAD +
				     body);
	bool wake, was_empty;

	if (!f) {
		/* Not compared: the entry must still exist, or the watermark
		 * could pass this unit's replies.  Out of memory for a frame
		 * header means out of memory for everything: stop. */
		colo_log_error("compare: out of memory for unit %" PRIu64 "; stopping",
			       u->pos);
		abort();
	}
	f->next = NULL;
	f->pos = u->pos;
	f->epoch = u->epoch;
	f->out = u->out;
	f->sendable = u->data != NULL;
	f->len = COLO_FRAME_HEAD + COLO_FRAME_INPUT_HEAD + body;
	colo_store_be32(f->frame, COLO_FRAME_INPUT);
	colo_store_be32(f->frame + 4, (uint32_t)(COLO_FRAME_INPUT_HEAD + body));
	colo_store_be64(f->frame + 8, u->pos);
	colo_store_be64(f->frame + 16, u->epoch);
	if (body)
		memcpy(f->frame + COLO_FRAME_HEAD + COLO_FRAME_INPUT_HEAD, u->data, body);
	pthread_mutex_lock(&c->mu);
	was_empty = !c->head;
	if (c->tail)
		c->tail->next = f;
	else
		c->head = f;
	c->tail = f;
	/* A queue that held something already has its wake-up on the way (the
	 * drain takes the whole queue): one per batch spares the loop's
	 * eventfd and libuv's spinning on a send in progress. */
	wake = c->async_on && was_empty && !c->embedded;
	pthread_mutex_unlock(&c->mu);
	if (wake)
		uv_async_send(&c->async);
}

/* ---- the FIFO ---- */

static struct cmp_entry *entry_at(struct primary_cmp *c, size_t i)
{
	return &c->ring[(c->first + i) % c->cap];
}

static int push(struct primary_cmp *c, const struct cmp_entry *e)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 1024;
		struct cmp_entry *r = malloc(cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		for (size_t i = 0; i < c->n; i++)
			r[i] = *entry_at(c, i);
		free(c->ring);
		c->ring = r;
		c->cap = cap;
		c->first = 0;
	}
	*entry_at(c, c->n++) = *e;
	return 0;
}

/* Tell the guest how far its replies may go, if that moved. */
void primary_cmp_tell(struct colo_primary *p)
{
	struct primary_cmp *c = &p->cmp;

	if (c->matched > c->told) {
		c->told = c->matched;
		if (p->n->gops->output_match && p->n->guest)
			p->n->gops->output_match(p->n->guest, c->told);
	}
}

/* Pop what may go; the watermark follows (told to the guest by the caller). */
static void pop(struct colo_primary *p)
{
	struct primary_cmp *c = &p->cmp;
	uint64_t upto = c->matched;

	while (c->n) {
		struct cmp_entry *e = entry_at(c, 0);

		if (e->st != E_MATCHED && e->epoch > c->covered)
			break;
		upto = e->pos;
		c->first = (c->first + 1) % c->cap;
		c->n--;
	}
	if (upto > c->matched)
		c->matched = upto;
}

static void advance(struct colo_primary *p)
{
	pop(p);
	primary_cmp_tell(p);
}

/* A checkpoint must hold an entry that will not match. */
static void want_for(struct colo_primary *p, uint64_t epoch, enum colo_ckpt_cause why)
{
	struct primary_cmp *c = &p->cmp;

	if (epoch <= c->covered || epoch <= c->asked)
		return;
	/* The checkpoint in flight holds it: its acknowledgement releases it. */
	if (p->cur && !p->cur->full && p->cur->seq >= epoch)
		return;
	c->asked = epoch;
	primary_want(p, why);
}

/* ---- the loop ---- */

static void on_written(void *ud, int status)
{
	struct cmp_write *w = ud;

	(void)status;            /* a failed write closes the connection */
	frames_free(w->frames);
	free(w);
}

/* Move what the guest ran into the FIFO; send what can be compared. */
void primary_cmp_drain(struct colo_primary *p)
{
	struct primary_cmp *c = &p->cmp;
	struct cmp_frame *list, *f, *keep = NULL, **tail = &keep;
	struct cmp_write *w;
	unsigned n = 0;
	int r;
	uint64_t now = colo_now_ns();
	bool send = p->state == P_PROTECTED && p->conn;

	if (!c->on)
		return;
	pthread_mutex_lock(&c->mu);
	list = c->head;
	c->head = c->tail = NULL;
	pthread_mutex_unlock(&c->mu);
	/* One entry per unit; the frames to send are kept, in order, the
	 * rest freed. */
	for (f = list; f;) {
		struct cmp_frame *nx = f->next;
		struct cmp_entry e = { .pos = f->pos, .epoch = f->epoch, .out = f->out,
				       .sent_ns = now, .st = E_PENDING };

		if (c->n && e.pos != entry_at(c, c->n - 1)->pos + 1) {
			colo_log_error("compare: unit %" PRIu64 " after unit %" PRIu64
				       "; stopping", e.pos, entry_at(c, c->n - 1)->pos);
			abort();
		}
		if (f->epoch <= c->covered) {
			/* A checkpoint acknowledged already holds it. */
			e.st = E_MATCHED;
		} else if (!send || !f->sendable) {
			e.st = E_HELD;
			if (send)
				want_for(p, f->epoch, COLO_CAUSE_UNCOMPARED);
		}
		c->top = e.pos;
		if (push(c, &e) != 0) {
			colo_log_error("compare: out of memory for the comparator; stopping");
			abort();
		}
		f->next = NULL;
		if (e.st == E_PENDING) {
			n++;
			p->n->stats.compared++;
			*tail = f;
			tail = &f->next;
		} else {
			free(f);
		}
		f = nx;
	}
	advance(p);
	if (!n)
		return;
	w = malloc(sizeof(*w) + n * sizeof(uv_buf_t));
	if (!w) {
		frames_free(keep);
		primary_go_degraded(p, "out of memory for compare frames");
		return;
	}
	w->frames = keep;
	w->n = 0;
	for (f = keep; f; f = f->next)
		w->bufs[w->n++] = uv_buf_init((char *)f->frame, (unsigned)f->len);
	r = colo_repl_write_now(p->conn, w->bufs, w->n, on_written, w);
	if (r != 0)
		on_written(w, r < 0 ? r : 0);      /* all went at once, or none will */
	if (r < 0)
		primary_go_degraded(p, "cannot send compare frames");
}

static void on_async(uv_async_t *a)
{
	primary_cmp_drain(a->data);
}

/* Embedded guest: its units of this turn of the loop go out at its end. */
static void on_check(uv_check_t *h)
{
	struct colo_primary *p = h->data;

	if (p->cmp.head)
		primary_cmp_drain(p);
}

/* The oldest unanswered unit is compare-timeout-ms late: a checkpoint. */
static void on_timer(uv_timer_t *t)
{
	struct colo_primary *p = t->data;
	struct primary_cmp *c = &p->cmp;
	uint64_t limit = (uint64_t)p->n->cfg.compare_timeout_ms * 1000000ull;

	if (p->state != P_PROTECTED)
		return;
	for (size_t i = 0; i < c->n; i++) {
		struct cmp_entry *e = entry_at(c, i);

		if (e->st != E_PENDING || e->epoch <= c->covered)
			continue;
		if (colo_now_ns() - e->sent_ns >= limit)
			want_for(p, e->epoch, COLO_CAUSE_TIMEOUT);
		break;
	}
}

/* OUTPUT: the secondary's digest of a unit's output. */
int primary_cmp_output(struct colo_primary *p, uint64_t pos, uint64_t len, uint64_t hash)
{
	struct primary_cmp *c = &p->cmp;
	struct cmp_entry *e;
	uint64_t first;

	if (pos == 0 || pos > c->top) {
		colo_repl_protocol_error(p->conn, "OUTPUT for unit %" PRIu64 ", which was "
					 "never sent (the last is %" PRIu64 ")", pos, c->top);
		return -1;
	}
	if (!c->n || pos < entry_at(c, 0)->pos)
		return 0;                   /* a checkpoint released it already */
	first = entry_at(c, 0)->pos;
	e = entry_at(c, (size_t)(pos - first));
	if (e->st != E_PENDING)
		return 0;
	if (e->out.len == len && e->out.hash == hash) {
		e->st = E_MATCHED;
		p->n->stats.matched++;
		pop(p);                 /* told once per read: primary_cmp_tell */
		return 0;
	}
	e->st = E_HELD;
	p->n->stats.mismatches++;
	colo_log_debug("compare: unit %" PRIu64 " differs: %" PRIu64 " bytes %016" PRIx64
		       " here, %" PRIu64 " bytes %016" PRIx64 " on %s", pos, e->out.len,
		       e->out.hash, len, hash, p->peer_node);
	want_for(p, e->epoch, COLO_CAUSE_MISMATCH);
	return 0;
}

/* An OUTPUT frame at the front of what came (while protected, in compare
 * mode): be32 kind, be32 24, be64 pos, length, hash.  1: taken; 0: more
 * bytes needed; -1: a protocol error. */
int primary_cmp_rx(struct colo_primary *p)
{
	struct colo_repl_conn *c = p->conn;
	const uint8_t *b = colo_repl_rx(c);
	uint64_t pos, olen, hash;
	uint32_t len;

	if (colo_repl_rx_len(c) < COLO_FRAME_HEAD)
		return 0;
	len = colo_load_be32(b + 4);
	if (len != COLO_FRAME_OUTPUT_LEN) {
		colo_repl_protocol_error(c, "OUTPUT of %" PRIu32 " bytes (it has %u)", len,
					 COLO_FRAME_OUTPUT_LEN);
		return -1;
	}
	if (colo_repl_rx_len(c) < COLO_FRAME_HEAD + COLO_FRAME_OUTPUT_LEN)
		return 0;
	pos = colo_load_be64(b + 8);
	olen = colo_load_be64(b + 16);
	hash = colo_load_be64(b + 24);
	colo_repl_consume(c, COLO_FRAME_HEAD + COLO_FRAME_OUTPUT_LEN);
	return primary_cmp_output(p, pos, olen, hash) == 0 ? 1 : -1;
}

/* Replies of epochs up to seq went out (a checkpoint, or alone). */
void primary_cmp_released(struct colo_primary *p, uint64_t seq)
{
	struct primary_cmp *c = &p->cmp;

	if (!c->on)
		return;
	if (seq > c->covered)
		c->covered = seq;
	advance(p);
}

/* Replies of epoch seq and later wait again (output_epoch). */
void primary_cmp_epoch(struct colo_primary *p, uint64_t seq)
{
	struct primary_cmp *c = &p->cmp;

	if (c->on && seq && c->covered >= seq)
		c->covered = seq - 1;
}

/* The secondary is gone: nothing it was sent will be answered. */
void primary_cmp_lost(struct colo_primary *p)
{
	struct primary_cmp *c = &p->cmp;

	for (size_t i = 0; i < c->n; i++)
		if (entry_at(c, i)->st == E_PENDING)
			entry_at(c, i)->st = E_HELD;
	c->asked = 0;
}

int primary_cmp_init(struct colo_primary *p, struct colo_err *err)
{
	struct primary_cmp *c = &p->cmp;
	int r;

	if (p->n->cfg.output_mode != COLO_OUTPUT_COMPARE)
		return 0;
	if (!p->n->gops->compare_tap || !p->n->guest)
		return colo_err_set(err, EINVAL, "output-mode compare: the %s guest cannot "
				    "run it", p->n->gops->kind);
	r = pthread_mutex_init(&c->mu, NULL);
	if (r)
		return colo_err_set(err, r, "compare: %s", strerror(r));
	c->on = true;
	p->n->gops->compare_tap(p->n->guest, on_unit, p);
	c->embedded = p->guest_embedded;
	return 0;
}

/* The loop's handles; nothing fails from here. */
void primary_cmp_start(struct colo_primary *p)
{
	struct primary_cmp *c = &p->cmp;
	uint64_t tick = p->n->cfg.compare_timeout_ms / 4;

	if (!c->on)
		return;
	uv_async_init(p->n->loop, &c->async, on_async);
	c->async.data = p;
	uv_timer_init(p->n->loop, &c->timer);
	c->timer.data = p;
	uv_timer_start(&c->timer, on_timer, tick ? tick : 1, tick ? tick : 1);
	if (c->embedded) {
		uv_check_init(p->n->loop, &c->check);
		c->check.data = p;
		uv_check_start(&c->check, on_check);
	}
	pthread_mutex_lock(&c->mu);
	c->async_on = true;
	pthread_mutex_unlock(&c->mu);
	uv_async_send(&c->async);           /* what ran before */
}

/* The node stops: the tap goes, the handles close. */
void primary_cmp_stop(struct colo_primary *p)
{
	struct primary_cmp *c = &p->cmp;

	if (!c->on)
		return;
	if (p->n->gops->compare_tap && p->n->guest)
		p->n->gops->compare_tap(p->n->guest, NULL, NULL);
	pthread_mutex_lock(&c->mu);
	if (c->async_on) {
		c->async_on = false;
		uv_close((uv_handle_t *)&c->async, NULL);
		uv_timer_stop(&c->timer);
		uv_close((uv_handle_t *)&c->timer, NULL);
		if (c->embedded)
			uv_close((uv_handle_t *)&c->check, NULL);
	}
	pthread_mutex_unlock(&c->mu);
}

void primary_cmp_free(struct colo_primary *p)
{
	struct primary_cmp *c = &p->cmp;

	if (!c->on)
		return;
	frames_free(c->head);
	free(c->ring);
	pthread_mutex_destroy(&c->mu);
	memset(c, 0, sizeof(*c));
}
