/*
 * compare.c: the secondary's running copy of the guest under output-mode
 * compare (docs/compare.md).
 *
 * The guest's RAM (the blocks) is no longer the committed state: the guest
 * runs on it, unit after unit as the primary's INPUT frames bring them, and
 * answers each with an OUTPUT frame (the digest of what it said).  The
 * committed state is a copy of every block, the mirror: after the sync it
 * is the sync; checkpoints decode against it and commit into it and into
 * the blocks both (cache.c).  At each commit the pages the guest wrote
 * since the last one (dirty tracking on the blocks) are copied back from
 * the mirror, so the blocks hold the checkpoint exactly, as do the devices
 * (loaded by the commit).  A unit runs when the checkpoint before its epoch
 * is committed: one of an older epoch is held by a checkpoint and dropped,
 * one of a newer epoch waits in a queue for its checkpoint.
 *
 * On failover the guest serves from the blocks as they are: every reply the
 * primary released was either said here too, by this run, or held by a
 * checkpoint committed here before what ran since.
 *
 * Memory: the mirror (one mapping per block), the queue and the OUTPUT
 * frames not yet sent are this module's.  Loop thread only.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "buf.h"
#include "colomsg.h"
#include "log.h"
#include "ramfmt.h"
#include "secondary_int.h"

#define PAGE COLO_PAGE_SIZE

struct sec_unit {
	struct sec_unit *next;
	uint64_t pos, epoch;
	size_t len;
	uint8_t data[];
};

int secondary_cmp_init(struct colo_secondary *s, struct colo_err *err)
{
	struct secondary_cmp *c = &s->cmp;

	colo_buf_init(&c->out);
	if (s->n->cfg.output_mode != COLO_OUTPUT_COMPARE)
		return 0;
	if (!s->n->gops->compare_run)
		return colo_err_set(err, EINVAL, "output-mode compare: the %s guest cannot "
				    "run it", s->n->gops->kind);
	c->mirror = calloc(s->nblocks ? s->nblocks : 1, sizeof(*c->mirror));
	if (!c->mirror)
		return colo_err_set(err, ENOMEM, "out of memory");
	c->on = true;
	return 0;
}

void secondary_cmp_reset(struct secondary_cmp *c)
{
	while (c->head) {
		struct sec_unit *n = c->head->next;

		free(c->head);
		c->head = n;
	}
	c->tail = NULL;
	c->last_pos = c->last_epoch = 0;
	colo_buf_reset(&c->out);
}

void secondary_cmp_free(struct colo_secondary *s)
{
	struct secondary_cmp *c = &s->cmp;

	secondary_cmp_reset(c);
	for (size_t b = 0; c->mirror && b < s->nblocks; b++)
		if (c->mirror[b])
			munmap(c->mirror[b], s->blocks[b]->length);
	free(c->mirror);
	colo_buf_free(&c->out);
	memset(c, 0, sizeof(*c));
}

/* The sync is in the blocks: it becomes the mirror too, and the guest's
 * writes are tracked from here. */
int secondary_cmp_synced(struct colo_secondary *s, struct colo_err *err)
{
	struct secondary_cmp *c = &s->cmp;
	int r;

	if (!c->on)
		return 0;
	for (size_t b = 0; b < s->nblocks; b++) {
		struct colo_ram_block *bl = s->blocks[b];

		if (!c->mirror[b]) {
			void *m = mmap(NULL, bl->length, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

			if (m == MAP_FAILED)
				return colo_err_set(err, errno, "compare: no memory for a copy "
						    "of block %s (%" PRIu64 " bytes): %s",
						    bl->name, bl->length, strerror(errno));
			c->mirror[b] = m;
		}
		memcpy(c->mirror[b], bl->host, bl->length);
	}
	r = colo_ram_start(s->n->ram, err);
	if (r)
		return r;
	for (size_t b = 0; b < s->nblocks; b++)
		colo_ram_block_clear_dirty(s->blocks[b]);
	ram_cache_set_base(&s->cache, c->mirror);
	return 0;
}

/* Run one unit; its OUTPUT joins what goes at the end of this read. */
static int run(struct colo_secondary *s, uint64_t pos, const uint8_t *data, size_t len)
{
	struct secondary_cmp *c = &s->cmp;
	struct colo_cmp_digest d = { 0, 0 };
	struct colo_err err;
	uint8_t f[COLO_FRAME_HEAD + COLO_FRAME_OUTPUT_LEN];

	colo_err_clear(&err);
	if (s->n->gops->compare_run(s->n->guest, data, len, &d, &err) != 0) {
		colo_repl_protocol_error(s->conn, "INPUT unit %" PRIu64 ": %s", pos, err.msg);
		return -1;
	}
	colo_store_be32(f, COLO_FRAME_OUTPUT);
	colo_store_be32(f + 4, COLO_FRAME_OUTPUT_LEN);
	colo_store_be64(f + 8, pos);
	colo_store_be64(f + 16, d.len);
	colo_store_be64(f + 24, d.hash);
	colo_buf_put(&c->out, f, sizeof(f));
	if (!colo_buf_ok(&c->out)) {
		secondary_fail(s, "out of memory for OUTPUT frames");
		return -1;
	}
	s->n->stats.compared++;
	return 0;
}

/* Run what waited for the checkpoint just committed; drop what it holds. */
void secondary_cmp_run_queued(struct colo_secondary *s)
{
	struct secondary_cmp *c = &s->cmp;

	while (s->conn && c->head && c->head->epoch <= s->last_committed + 1) {
		struct sec_unit *u = c->head;
		int r = 0;

		c->head = u->next;
		if (!c->head)
			c->tail = NULL;
		if (u->epoch <= s->last_committed)
			s->n->stats.compare_dropped++;
		else
			r = run(s, u->pos, u->data, u->len);
		free(u);
		if (r)
			return;
	}
}

/* A checkpoint was committed into the mirror and the blocks: undo what the
 * guest wrote since the last one. */
void secondary_cmp_committed(struct colo_secondary *s)
{
	struct secondary_cmp *c = &s->cmp;
	struct colo_err err;

	if (!c->on)
		return;
	colo_err_clear(&err);
	if (colo_ram_harvest(s->n->ram, NULL, &err) != 0) {
		/* Without the list, every page. */
		colo_log_warn("compare: %s; reloading every page", err.msg);
		for (size_t b = 0; b < s->nblocks; b++)
			memcpy(s->blocks[b]->host, c->mirror[b], s->blocks[b]->length);
	} else {
		for (size_t b = 0; b < s->nblocks; b++) {
			struct colo_ram_block *bl = s->blocks[b];

			for (uint64_t pg = 0; pg < bl->npages; pg++)
				if (colo_ram_page_dirty(bl, pg))
					memcpy(bl->host + pg * PAGE, c->mirror[b] + pg * PAGE,
					       PAGE);
			colo_ram_block_clear_dirty(bl);
		}
	}
	colo_ram_rearm(s->n->ram);
}

/*
 * An INPUT frame at the front of what came, in PROTECTED or REQUESTED.
 * 1: taken; 0: more bytes needed; -1: the connection went; 2: not a frame.
 */
int secondary_cmp_rx(struct colo_secondary *s)
{
	struct secondary_cmp *c = &s->cmp;
	struct colo_repl_conn *conn = s->conn;
	const uint8_t *b = colo_repl_rx(conn);
	size_t avail = colo_repl_rx_len(conn), body;
	uint64_t pos, epoch;
	uint32_t len;
	struct sec_unit *u;
	int r = 0;

	if (avail < 4 || colo_load_be32(b) != COLO_FRAME_INPUT)
		return 2;
	if (!c->on) {
		colo_repl_protocol_error(conn, "unexpected INPUT while %s: output-mode is "
					 "not compare here", s->state == S_PROTECTED ?
					 "protected" : "requested");
		return -1;
	}
	if (avail < COLO_FRAME_HEAD)
		return 0;
	len = colo_load_be32(b + 4);
	if (len < COLO_FRAME_INPUT_HEAD || len - COLO_FRAME_INPUT_HEAD > COLO_CMP_UNIT_MAX) {
		colo_repl_protocol_error(conn, "INPUT of %" PRIu32 " bytes (from %u to %u)",
					 len, COLO_FRAME_INPUT_HEAD,
					 COLO_FRAME_INPUT_HEAD + COLO_CMP_UNIT_MAX);
		return -1;
	}
	if (avail < COLO_FRAME_HEAD + (size_t)len)
		return 0;
	pos = colo_load_be64(b + 8);
	epoch = colo_load_be64(b + 16);
	body = len - COLO_FRAME_INPUT_HEAD;
	if (pos <= c->last_pos || epoch < c->last_epoch) {
		colo_repl_protocol_error(conn, "INPUT unit %" PRIu64 " of epoch %" PRIu64
					 " after unit %" PRIu64 " of epoch %" PRIu64, pos,
					 epoch, c->last_pos, c->last_epoch);
		return -1;
	}
	c->last_pos = pos;
	c->last_epoch = epoch;
	b += COLO_FRAME_HEAD + COLO_FRAME_INPUT_HEAD;
	if (epoch <= s->last_committed) {
		s->n->stats.compare_dropped++;        /* a checkpoint holds it */
	} else if (epoch == s->last_committed + 1 && !c->head) {
		r = run(s, pos, b, body);
	} else {
		u = malloc(sizeof(*u) + body);
		if (!u) {
			secondary_fail(s, "out of memory for INPUT units");
			return -1;
		}
		u->next = NULL;
		u->pos = pos;
		u->epoch = epoch;
		u->len = body;
		memcpy(u->data, b, body);
		if (c->tail)
			c->tail->next = u;
		else
			c->head = u;
		c->tail = u;
	}
	if (r)
		return -1;
	colo_repl_consume(conn, COLO_FRAME_HEAD + (size_t)len);
	return 1;
}

/* What this read produced goes in one write. */
void secondary_cmp_flush(struct colo_secondary *s)
{
	struct secondary_cmp *c = &s->cmp;

	if (!c->out.len)
		return;
	if (s->conn && colo_repl_send(s->conn, c->out.data, c->out.len) == 0)
		s->n->stats.bytes_sent += c->out.len;
	colo_buf_reset(&c->out);
}
