/*
 * ckpt.c: the primary's checkpoint pipeline (DESIGN.md §4, §5).
 *
 * A checkpoint (struct ckpt) is staged with the guest paused (a big copy
 * on a libuv worker, so that the loop goes on meanwhile; the guest is
 * paused and resumed on the loop), encoded on the encoder's own threads
 * (the loop hands them the job and hears of its end through chunk_async;
 * a few pages are encoded on the loop), and written:
 *   VMSTATE_SEND, RAM END section header, records, EOS + footer, EOF,
 *   VMSTATE_SIZE n, device stream (device FULL sections, colo/checkpoint, EOF)
 * The header and each chunk of records go out as the encoder finishes
 * them (streaming, below), right after the REQUEST (in compare mode once
 * the REPLY is in), the rest when the last is done; a small checkpoint,
 * one in compare mode, and the full sync (with a migration's framing
 * instead) go in one write once encoded.  A ckpt is
 * reference-counted: the engine, the worker and each write hold it, so a
 * connection that drops mid-way frees nothing in use.  Which
 * step it is at is the engine's checkpoint phase (primary_int.h).
 *
 * The checkpoint clock is here too: a timerfd, not a libuv timer, because
 * libuv counts whole milliseconds and rounds up, which added 1-2 ms to
 * every group commit (the wait for min-interval-ms), the latency a client
 * sees under output-mode buffer.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "arbiter.h"
#include "clock.h"
#include "colomsg.h"
#include "log.h"
#include "primary_int.h"
#include "record.h"
#include "stream.h"

#define INLINE_ENCODE_PAGES 32  /* fewer dirty pages: encode on the loop */
#define INLINE_STAGE_PAGES 1024 /* no more (4 MiB, about a millisecond):
				   stage on the loop */

static void ckpt_unref(struct ckpt *c)
{
	if (--c->refs > 0)
		return;
	colo_buf_free(&c->head);
	colo_buf_free(&c->ram);
	colo_buf_free(&c->mid);
	colo_buf_free(&c->dev);
	colo_buf_free(&c->snap);
	XXH3_freeState(c->sum);
	free(c);
}

/* The engine lets go of the checkpoint in flight. */
static void ckpt_release(struct colo_primary *p)
{
	struct ckpt *c = p->cur;

	p->cur = NULL;
	ckpt_unref(c);
}

void primary_ckpt_abandon(struct colo_primary *p)
{
	if (p->prev) {
		ckpt_unref(p->prev);
		p->prev = NULL;
	}
	if (!p->cur)
		return;
	/* A worker that still stages or encodes keeps the pipeline until it
	 * returns. */
	primary_ckpt_to(p, p->phase == CK_STAGING || p->phase == CK_ENCODING ||
			p->phase == CK_REPLIED ? CK_ABANDONED : CK_IDLE);
	ckpt_release(p);
}

/* ---- staging (guest paused) ---- */

static int save_devices(struct colo_primary *p, struct colo_buf *out, bool vmdesc,
			struct colo_err *err)
{
	struct colo_savevm *sv = &p->n->sv;
	struct colo_stream_writer w;
	int r = 0;

	colo_sw_init(&w, out, vmdesc);
	for (size_t i = 0; i < sv->ndevs && r == 0; i++) {
		const struct colo_savevm_device *d = &sv->devs[i];

		if (!colo_vmstate_needed(d->vmsd, d->opaque))
			continue;
		r = colo_sw_device(&w, d->section_id, d->idstr, d->instance_id, d->vmsd,
				   d->opaque, err);
	}
	if (r == 0 && vmdesc) {
		/* The vmdesc goes after EOF: keep it in `mid` of the sync. */
		colo_sw_eof(&w);
		r = colo_sw_vmdesc(&w, err);
	}
	colo_sw_free(&w);
	return r;
}

static void mark_all_dirty(struct colo_primary *p)
{
	for (size_t b = 0; b < p->nblocks; b++) {
		struct colo_ram_block *blk = p->blocks[b];
		size_t words = (blk->npages + 63) / 64;

		memset(blk->dirty, 0xff, words * 8);
		if (blk->npages % 64)
			blk->dirty[words - 1] = (1ull << (blk->npages % 64)) - 1;
	}
}

/*
 * A worker (staging or encoding) returned.  False if the checkpoint ends
 * here: abandoned while it ran (the pipeline is free again, and a
 * secondary that connected meanwhile gets its sync), or failed (`failed`
 * is why, for the engine's log).
 */
static bool worker_back(struct colo_primary *p, struct ckpt *c, const char *failed)
{
	if (c != p->cur) {
		primary_ckpt_to(p, CK_IDLE);
		if (p->state == P_SYNC)
			primary_sync_start(p);
		return false;
	}
	if (c->enc_rc) {
		colo_log_error("checkpoint %" PRIu64 ": %s", c->seq, c->enc_err.msg);
		primary_ckpt_to(p, CK_IDLE);
		ckpt_release(p);
		primary_go_degraded(p, failed);
		return false;
	}
	return true;
}

/* ---- encoding, on the encoder's threads ---- */

/* c's encoding ended (enc_rc and enc_err say how); its reference goes. */
static void encode_ended(struct colo_primary *p, struct ckpt *c)
{
	if (worker_back(p, c, "encoding failed")) {
		colo_stats_phase(&p->n->stats, COLO_PHASE_ENCODE, colo_now_ns() - c->t_staged);
		if (p->phase == CK_ENCODING && !c->full && !primary_eager(p))
			primary_ckpt_to(p, CK_ENCODED);     /* the REPLY is not here yet */
		else
			primary_ckpt_send(p);
	}
	ckpt_unref(c);
}

/* ---- sending ---- */

static void on_ckpt_written(void *ud, int status)
{
	struct ckpt *c = ud;
	struct colo_primary *p = c->p;

	if (c == p->cur && status == 0) {
		c->t_sent = colo_now_ns();
		colo_stats_phase(&p->n->stats, COLO_PHASE_SEND, c->t_sent - c->t_ready);
		if (!c->full)
			primary_fault_at(&p->fault, F_SENT, c->seq);
		primary_ckpt_pipeline(p);
	}
	ckpt_unref(c);
}

/* The RAM section framing: the section begins and ends around the records. */
static void frame_ram(struct colo_primary *p, struct ckpt *c)
{
	struct colo_savevm *sv = &p->n->sv;
	struct colo_stream_writer w;
	struct colo_ram_writer rw;
	struct colo_err err;

	colo_err_clear(&err);
	colo_sw_init(&w, &c->head, false);
	if (c->full) {
		struct colo_ram_block_info *info = calloc(sv->nblocks, sizeof(*info));

		colo_sw_header(&w);
		colo_sw_configuration(&w, &sv->config, &err);
		colo_sw_enable_colo(&w);
		colo_ram_writer_init(&rw, &c->head);
		colo_sw_section_begin(&w, COLO_SEC_START, sv->ram_section_id, COLO_RAM_IDSTR,
				      0, COLO_RAM_SECTION_VERSION, &err);
		for (size_t i = 0; info && i < sv->nblocks; i++)
			info[i] = sv->blocks[i].info;
		colo_ram_put_mem_size(&rw, info, info ? sv->nblocks : 0, false);
		free(info);
		colo_ram_put_eos(&rw);
		colo_sw_section_end(&w);
		colo_sw_section_begin(&w, COLO_SEC_PART, sv->ram_section_id, NULL, 0, 0, &err);
	} else {
		colo_buf_put_be32(&c->head, COLO_MSG_VMSTATE_SEND);
		colo_sw_section_begin(&w, COLO_SEC_END, sv->ram_section_id, NULL, 0, 0, &err);
	}
	colo_sw_free(&w);
	/* After the records: EOS and the footer; a sync adds an empty END. */
	colo_sw_init(&w, &c->mid, false);
	w.section_id = sv->ram_section_id;
	w.in_section = true;
	colo_buf_put_be64(&c->mid, COLO_RAM_EOS);
	colo_sw_section_end(&w);
	if (c->full) {
		colo_sw_section_begin(&w, COLO_SEC_END, sv->ram_section_id, NULL, 0, 0, &err);
		colo_buf_put_be64(&c->mid, COLO_RAM_EOS);
		colo_sw_section_end(&w);
	} else {
		colo_sw_eof(&w);
	}
	colo_sw_free(&w);
}

/*
 * The checksum of a checkpoint covers everything from the RAM END section
 * through its EOF, then the devices; a sync's tag covers all its bytes.
 * Head and records come first: hashed where the records were gathered, on
 * an encoder thread when they are many (the first checkpoint after a sync
 * of a big guest can be hundreds of MiB, too long for the loop).
 */
static void ckpt_sum_begin(struct ckpt *c)
{
	size_t skip = c->full ? 0 : 4;   /* a checkpoint's: after VMSTATE_SEND */

	if (!c->sum)
		return;
	XXH3_64bits_reset(c->sum);
	XXH3_64bits_update(c->sum, c->head.data + skip, c->head.len - skip);
	XXH3_64bits_update(c->sum, c->ram.data, c->ram.len);
}

/* ... and the rest, on the loop: the footer (`mid`, before VMSTATE_SIZE
 * joins it), the devices. */
static uint64_t ckpt_sum_end(struct ckpt *c)
{
	XXH3_64bits_update(c->sum, c->mid.data, c->mid.len);
	XXH3_64bits_update(c->sum, c->dev.data, c->dev.len);
	return XXH3_64bits_digest(c->sum);
}

/* Append colo/checkpoint (with the checksum) and EOF to a checkpoint's devices. */
static int seal_devices(struct colo_primary *p, struct ckpt *c, struct colo_err *err)
{
	struct colo_stream_writer w;
	struct colo_ckpt_info info;
	int r;

	if (!c->sum)
		return colo_err_set(err, ENOMEM, "out of memory");
	memset(&info, 0, sizeof(info));
	info.generation = p->n->generation;
	info.seq = c->seq;
	info.time_ns = c->wall_ns;
	info.pages = c->pages;
	info.checksum = ckpt_sum_end(c);
	/* An authenticated session tags the checksum: a spliced stream fails. */
	if (p->authed)
		colo_ckpt_tag(p->session.ckpt, 'C', info.generation, info.seq, info.checksum,
			      c->tag);
	colo_sw_init(&w, &c->dev, false);
	r = colo_sw_device(&w, 0, COLO_CKPT_IDSTR, 0, &colo_ckpt_info_vmstate, &info, err);
	colo_sw_eof(&w);
	colo_sw_free(&w);
	if (r)
		return r;
	/* VMSTATE_SIZE n goes after the RAM part's EOF. */
	colo_buf_put_be32(&c->mid, COLO_MSG_VMSTATE_SIZE);
	colo_buf_put_be64(&c->mid, c->dev.len);
	return 0;
}

/* ---- streaming: records out as the encoder threads finish them ---- */

static bool stream_ready(struct colo_primary *p, struct ckpt *c);

/* A part is written: the stream goes on if it held back for this turn, and
 * the rest of the checkpoint follows once the last chunk is out. */
static void on_part_written(void *ud, int status)
{
	struct ckpt *c = ud;
	struct colo_primary *p = c->p;

	c->parts_out--;
	/* A failed write also fails the read: the engine hears of it there. */
	if (status == 0 && c == p->cur && c->stream_held && stream_ready(p, c) &&
	    c == p->cur && c->send_rest && c->streamed == c->nchunks) {
		c->send_rest = false;
		primary_ckpt_send(p);
	}
	ckpt_unref(c);
}

/* One more piece of the checkpoint on the wire; false: the pair is lost. */
static bool send_part(struct colo_primary *p, struct ckpt *c, const void *data, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
	int r;

	if (len == 0)
		return true;
	c->refs++;
	r = colo_repl_write(p->conn, &b, 1, on_part_written, c);
	if (r) {
		c->refs--;
		primary_go_degraded(p, uv_strerror(r));
		return false;
	}
	c->parts_out++;
	p->n->stats.bytes_sent += len;
	return true;
}

/*
 * Every chunk that is ready, in order, behind those sent; false: the pair
 * is lost.  The socket takes all a write gives it (on loopback, with the
 * secondary reading as fast, the first checkpoint after a big guest's
 * sync was 8 MiB in one turn of the loop, 5 ms of copying): once this
 * turn has run STREAM_TURN_NS, the rest waits for a part still on its way
 * to be written (stream_held), at a later turn.
 */
#define STREAM_TURN_NS 2000000ull

static bool stream_ready(struct colo_primary *p, struct ckpt *c)
{
	const uint8_t *data;
	size_t len;

	c->stream_held = false;
	while (c->streamed < c->nchunks &&
	       colo_ram_encoder_chunk(p->enc, c->streamed, &data, &len)) {
		if (c->parts_out && (p->fault.hold_stream ||
				     colo_node_turn_spent(p->n, STREAM_TURN_NS))) {
			c->stream_held = true;
			p->n->stats.streams_held++;
			return true;
		}
		if (!send_part(p, c, data, len))
			return false;
		c->streamed++;
	}
	return true;
}

void primary_ckpt_stream(struct colo_primary *p)
{
	struct ckpt *c = p->cur;

	if (!c || c->full || !c->nchunks || c->streaming)
		return;
	if (!colo_buf_ok(&c->head)) {
		primary_go_degraded(p, "out of memory building a checkpoint");
		return;
	}
	c->streaming = true;
	if (send_part(p, c, c->head.data, c->head.len))
		stream_ready(p, c);
}

void primary_on_chunk(void *ud)
{
	struct colo_primary *p = ud;

	if (atomic_load(&p->chunk_async_on))
		uv_async_send(&p->chunk_async);
}

/*
 * The encoder's threads finished the job (on the last one of them): the
 * records into one buffer and the checksum over them, here and not on the
 * loop.  The loop leaves c's records, figures and checksum alone until it
 * sees `encoded`.
 */
void primary_on_encoded(void *ud)
{
	struct colo_primary *p = ud;
	struct ckpt *c = p->encoding;

	colo_err_clear(&c->enc_err);
	c->enc_rc = colo_ram_encode_finish(p->enc, &c->ram, &c->st, &c->enc_err);
	if (c->enc_rc == 0)
		ckpt_sum_begin(c);
	atomic_store(&p->encoded, true);
	if (atomic_load(&p->chunk_async_on))
		uv_async_send(&p->chunk_async);
}

void primary_on_chunk_async(uv_async_t *a)
{
	struct colo_primary *p = a->data;
	struct ckpt *c = p->encoding;

	if (p->cur && p->cur->streaming &&
	    (p->phase == CK_REPLIED || (p->phase == CK_ENCODING && primary_eager(p))))
		stream_ready(p, p->cur);
	if (c && atomic_exchange(&p->encoded, false)) {
		p->encoding = NULL;
		encode_ended(p, c);
	}
}

void primary_ckpt_encoder_gone(struct colo_primary *p)
{
	if (p->encoding) {
		ckpt_unref(p->encoding);
		p->encoding = NULL;
	}
}

/* Encoded, and (unless the sync) REPLY in: put it on the wire (what a
 * stream has not sent yet). */
void primary_ckpt_send(struct colo_primary *p)
{
	struct ckpt *c = p->cur;
	struct colo_err err;
	uv_buf_t bufs[5];
	unsigned nbufs = 4, first = 0;
	int r;

	if (p->phase != CK_SENT)             /* again: after a held stream */
		primary_ckpt_to(p, CK_SENT);
	colo_err_clear(&err);
	if (c->streaming) {
		/* Head and records are out (all are ready now): the rest. */
		if (!stream_ready(p, c))
			return;
		if (c->stream_held) {
			c->send_rest = true;     /* once they are (on_part_written) */
			return;
		}
		if (c->streamed != c->nchunks) {
			primary_go_degraded(p, "a chunk of the checkpoint was not encoded");
			return;
		}
		first = 2;
	}
	if (!c->full && seal_devices(p, c, &err)) {
		colo_log_error("checkpoint %" PRIu64 ": %s", c->seq, err.msg);
		primary_go_degraded(p, "cannot build the checkpoint");
		return;
	}
	if (!colo_buf_ok(&c->head) || !colo_buf_ok(&c->ram) || !colo_buf_ok(&c->mid) ||
	    !colo_buf_ok(&c->dev) || (p->authed && !c->sum)) {
		primary_go_degraded(p, "out of memory building a checkpoint");
		return;
	}
	c->t_ready = colo_now_ns();
	if (!c->full)
		primary_fault_at(&p->fault, F_ENCODED, c->seq);
	/* A sync: prefix .. PART header, records, EOS .. END, devices, EOF,
	 * vmdesc.  A checkpoint: VMSTATE_SEND + END header, records, EOS ..
	 * EOF + VMSTATE_SIZE, devices + colo/checkpoint + EOF. */
	bufs[0] = uv_buf_init((char *)c->head.data, (unsigned)c->head.len);
	bufs[1] = uv_buf_init((char *)c->ram.data, (unsigned)c->ram.len);
	bufs[2] = uv_buf_init((char *)c->mid.data, (unsigned)c->mid.len);
	bufs[3] = uv_buf_init((char *)c->dev.data, (unsigned)c->dev.len);
	/* Authenticated: the tag of the checkpoint's checksum (seal_devices),
	 * or of all the sync's bytes, follows them. */
	if (p->authed) {
		if (c->full)
			colo_ckpt_tag(p->session.ckpt, 'S', p->n->generation, c->seq,
				      ckpt_sum_end(c), c->tag);
		bufs[nbufs++] = uv_buf_init((char *)c->tag, sizeof(c->tag));
	}
	if (primary_fault_mid_send(&p->fault, c->full, c->seq))
		primary_fault_half_send(&p->fault, p->conn, bufs + first, nbufs - first, c->full,
					c->seq);
	c->refs++;
	r = colo_repl_write(p->conn, bufs + first, nbufs - first, on_ckpt_written, c);
	if (r) {
		c->refs--;
		primary_go_degraded(p, uv_strerror(r));
		return;
	}
	for (unsigned i = first; i < nbufs; i++)
		p->n->stats.bytes_sent += bufs[i].len;
}

/* ---- taking a checkpoint ---- */

/*
 * The secondary reads what follows a CHECKPOINT_REQUEST in order, and the
 * REPLY only says it has read the REQUEST: waiting for it cost a loopback
 * round trip and two wake-ups per checkpoint, the latency every held reply
 * waits in output-mode buffer.  In compare mode the REPLY also says the
 * secondary's own guest has stopped taking input (docs/compare.md).
 */
bool primary_eager(const struct colo_primary *p)
{
	return !p->cmp.on;
}

/*
 * A guest whose state reaches the engine late (a VM: QEMU's checkpoints
 * land in its RAM while it runs on) could say something after ready() said
 * yes and before the sync paused it, from a state the sync lacks: out at
 * once (epoch 0), it is lost should this node die before the next
 * checkpoint commits.  So while buffering, what it says from the first ask
 * on carries the sync's epoch, as primary_ckpt_start() would set it; ready()
 * waits until what went out at once is in its RAM.  (With an arbiter the
 * epoch is never 0 here; the sync's number is next_seq in either case.)
 */
void primary_sync_start(struct colo_primary *p)
{
	const struct colo_guest_ops *g = p->n->gops;

	if (g->ready && primary_buffering(p) && !p->n->arb)
		primary_out_epoch(p, p->next_seq + 1);
	if (g->ready && !g->ready(p->n->guest)) {
		if (!p->sync_waiting)
			colo_log_info("the full sync waits for the guest's first state");
		p->sync_waiting = true;
		return;
	}
	p->sync_waiting = false;
	primary_ckpt_start(p, true);
}

static void encode_start(struct colo_primary *p, struct ckpt *c);

/* ---- staging: on a worker when big, the guest paused throughout ---- */

static void stage_work(uv_work_t *w)
{
	struct ckpt *c = w->data;
	struct colo_primary *p = c->p;

	/* The loop leaves stage and the blocks' dirty bitmaps alone here. */
	colo_err_clear(&c->enc_err);
	c->enc_rc = colo_ram_stage_collect(&p->stage, p->blocks, p->nblocks, &c->enc_err);
}

static void stage_done(uv_work_t *w, int status)
{
	struct ckpt *c = w->data;
	struct colo_primary *p = c->p;
	struct colo_node *n = p->n;
	uint64_t t3 = colo_now_ns();

	(void)status;
	if (c == p->cur && !c->full)
		primary_fault_at(&p->fault, F_STAGED, c->seq);
	colo_node_resume_guest(n);
	/* ... to here.  The harvested pages are staged: track them again. */
	colo_ram_rearm(n->ram);
	c->t_staged = colo_now_ns();
	c->pages = p->stage.n;
	colo_stats_phase(&n->stats, COLO_PHASE_COPY, t3 - c->t_harvested);
	colo_stats_phase(&n->stats, COLO_PHASE_RESUME, c->t_staged - t3);
	if (worker_back(p, c, "staging failed"))
		encode_start(p, c);
	ckpt_unref(c);
}

void primary_ckpt_start(struct colo_primary *p, bool full)
{
	struct colo_node *n = p->n;
	struct colo_err err;
	struct ckpt *c;
	uint64_t t1, dirty = 0;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c) {
		primary_go_degraded(p, "out of memory");
		return;
	}
	c->refs = 1;
	c->p = p;
	c->full = full;
	c->allowed = p->encodings;
	/* One sequence for syncs and checkpoints: numbers never go back while
	 * this engine runs, even across resyncs. */
	c->seq = p->next_seq++;
	colo_err_clear(&err);
	colo_ram_stage_reset(&p->stage);
	p->stage_seq = c->seq;

	/* The guest waits from here ... */
	c->t0 = colo_now_ns();
	c->wall_ns = colo_wall_ns();
	colo_node_pause_guest(n);
	if (full && n->gops->full_sync && n->guest_running)
		n->gops->full_sync(n->guest);
	/* What the guest answers from here on is in the next checkpoint. */
	if (primary_buffering(p))
		primary_out_epoch(p, c->seq + 1);
	if (!full)
		primary_fault_at(&p->fault, F_PAUSED, c->seq);
	t1 = colo_now_ns();
	r = colo_ram_harvest(n->ram, NULL, &err);
	if (r == 0 && full)
		mark_all_dirty(p);
	c->t_harvested = colo_now_ns();
	/* The devices do not change while the guest is paused: saved before
	 * the copy, here on the loop (guests expect their ops here). */
	if (r == 0)
		r = save_devices(p, &c->dev, full, &err);
	/* A recording started on a running pair needs a first keyframe: the
	 * whole state, now, while the guest is paused at this checkpoint. */
	if (r == 0 && !full && colo_recorder_wants_keyframe(n->rec) &&
	    colo_node_snapshot(n, &c->snap, &err) != 0) {
		colo_log_error("recording: %s", err.msg);
		colo_buf_reset(&c->snap);
		colo_err_clear(&err);
	}
	colo_stats_phase(&n->stats, COLO_PHASE_PAUSE, t1 - c->t0);
	colo_stats_phase(&n->stats, COLO_PHASE_SYNC, c->t_harvested - t1);
	p->last_start_ns = c->t0;
	if (!full)
		n->stats.by_cause[p->want_now ? p->want_cause : COLO_CAUSE_INTERVAL]++;
	p->want_now = false;
	if (r) {
		colo_node_resume_guest(n);
		colo_log_error("checkpoint %" PRIu64 ": %s", c->seq, err.msg);
		ckpt_unref(c);
		primary_go_degraded(p, "staging failed");
		return;
	}
	p->cur = c;
	primary_ckpt_to(p, CK_STAGING);
	c->stage.data = c;
	c->refs++;
	for (size_t b = 0; b < p->nblocks && dirty <= INLINE_STAGE_PAGES; b++)
		dirty += colo_ram_block_count_dirty(p->blocks[b]);
	/* A big copy goes to a worker, so that this loop (the control socket,
	 * the replication connection, an embedded guest's clients once it
	 * resumes) does not stall on it; a small one is faster here than the
	 * two thread hops.  The sync's always goes: pages the guest never
	 * touched cost a page fault each to read. */
	if ((full || dirty > INLINE_STAGE_PAGES) &&
	    uv_queue_work(n->loop, &c->stage, stage_work, stage_done) == 0)
		return;
	stage_work(&c->stage);
	stage_done(&c->stage, 0);
}

/* Staged and resumed: ask the secondary, and encode. */
static void encode_start(struct colo_primary *p, struct ckpt *c)
{
	struct colo_err err;
	int r;

	colo_err_clear(&err);
	if (c->full) {
		/* The secondary holds nothing yet: every page goes without a base. */
		for (size_t b = 0; b < p->nblocks; b++)
			p->shadows[b].valid = false;
	} else if (colo_repl_send_msg(p->conn, COLO_MSG_CHECKPOINT_REQUEST) != 0) {
		primary_ckpt_to(p, CK_IDLE);
		ckpt_release(p);
		primary_go_degraded(p, "cannot send CHECKPOINT_REQUEST");
		return;
	} else {
		primary_fault_at(&p->fault, F_REQUEST, c->seq);
	}
	primary_ckpt_to(p, CK_ENCODING);
	c->refs++;
	c->nchunks = c->streamed = 0;
	c->streaming = c->replied = false;
	colo_err_clear(&c->enc_err);
	/* Framed before the encoding starts: the thread that ends it hashes
	 * the head. */
	frame_ram(p, c);
	if ((!c->full || p->authed) && !c->sum)
		c->sum = XXH3_createState();
	if (!c->full && p->stage.n <= INLINE_ENCODE_PAGES) {
		/* A few pages encode faster here than the two thread hops take
		 * (to an encoder thread and back to this loop): this is the
		 * latency a client waits for under output-mode buffer. */
		c->enc_rc = colo_ram_encode(p->enc, &p->stage, p->shadows, p->nblocks,
					    c->allowed, &c->ram, &c->st, &c->enc_err);
		if (c->enc_rc == 0)
			ckpt_sum_begin(c);
		encode_ended(p, c);
		return;
	}
	/* On the encoder's threads: what is encoded goes out once the REPLY
	 * is in, while the rest is encoded (so the secondary decodes
	 * meanwhile).  Not in compare mode: its INPUT frames go out whenever
	 * the guest ran, and the secondary takes them between checkpoints
	 * only, so a checkpoint must be one write there. */
	if (!c->full && !p->cmp.on)
		c->nchunks = colo_ram_encode_prepare(p->enc, p->stage.n);
	atomic_store(&p->encoded, false);
	/* From here the thread that ends the job owns c's records and figures
	 * (primary_on_encoded), until the loop sees `encoded`. */
	p->encoding = c;
	r = colo_ram_encode_start(p->enc, &p->stage, p->shadows, p->nblocks, c->allowed,
				  &err);
	if (r) {
		p->encoding = NULL;
		c->enc_rc = r;
		c->enc_err = err;
		c->nchunks = 0;
		encode_ended(p, c);
		return;
	}
	/* Eager: the head now, each chunk as it is encoded. */
	if (c->nchunks && primary_eager(p))
		primary_ckpt_stream(p);
}

/* ---- acknowledgements ---- */

/*
 * May the replies c holds go now?  Without an arbiter, yes: the secondary
 * acknowledged c.  With one, the secondary may have taken over since it
 * sent the acknowledgment, and this node must release nothing once the
 * new primary may serve (docs/arbiter.md).  A new primary serves no
 * sooner than the old lease's TTL, or one heartbeat timeout, after it won,
 * and it won after its last acknowledgment, which it sent after c began:
 * so an acknowledgment read within three quarters of the lesser of the
 * two since c began is early enough.  A later one (this node was frozen,
 * or its loop stalled) counts only while this node's lease is valid by its
 * own clock; else the release waits for the arbiter (the gate, or the
 * superseded exit).  With etcd out of reach, acknowledgments that come in
 * time still release: the secondary cannot take over without etcd.
 */
static bool release_in_time(struct colo_primary *p, const struct ckpt *c)
{
	const struct colo_config *cfg = &p->n->cfg;
	uint64_t bound_ms = cfg->lease_ttl_ms < cfg->heartbeat_timeout_ms ?
			    cfg->lease_ttl_ms : cfg->heartbeat_timeout_ms;

	return !p->n->arb || colo_now_ns() - c->t0 < bound_ms * 750000ull ||
	       colo_arbiter_lease_valid(p->n->arb);
}

/* VMSTATE_RECEIVED for c: the secondary will commit it before any
 * promotion, so the replies that waited for it may go (if in time). */
static void ckpt_acked(struct colo_primary *p, struct ckpt *c)
{
	/* From the last byte written, or from the write if the answer beat
	 * the write's completion to this loop. */
	colo_stats_phase(&p->n->stats, COLO_PHASE_ACK, colo_now_ns() -
			 (c->t_sent > c->t_ready ? c->t_sent : c->t_ready));
	if (release_in_time(p, c)) {
		primary_out_release(p, c->seq);
	} else {
		colo_log_warn("checkpoint %" PRIu64 " acknowledged %.0f ms after it began and "
			      "this node's lease is not valid by its clock: its replies wait "
			      "for the arbiter", c->seq, (double)(colo_now_ns() - c->t0) / 1e6);
		p->release_late = c->seq;
	}
	primary_fault_at(&p->fault, F_RECEIVED, c->seq);
}

void primary_release_late(struct colo_primary *p)
{
	if (p->release_late && colo_arbiter_lease_valid(p->n->arb)) {
		colo_log_info("arbiter: lease valid again: checkpoint %" PRIu64 "'s replies go",
			      p->release_late);
		primary_out_release(p, p->release_late);
	}
}

void primary_ckpt_received(struct colo_primary *p)
{
	struct ckpt *c = p->cur;

	if (!c->full && !c->replied) {
		colo_repl_protocol_error(p->conn, "VMSTATE_RECEIVED for checkpoint %" PRIu64
					 " before its CHECKPOINT_REPLY", c->seq);
		return;
	}
	primary_ckpt_to(p, CK_RECEIVED);
	ckpt_acked(p, c);
}

/*
 * Hand a committed checkpoint to the recording: a sync or a snapshot as a
 * keyframe, otherwise the bytes the secondary received (the RAM stream
 * after VMSTATE_SEND, up to VMSTATE_SIZE; then the device stream).
 */
static void record_committed(struct colo_primary *p, struct ckpt *c)
{
	struct colo_node *n = p->n;

	if (!n->rec)
		return;
	if (c->full) {
		struct iovec v[4] = {
			{ c->head.data, c->head.len }, { c->ram.data, c->ram.len },
			{ c->mid.data, c->mid.len }, { c->dev.data, c->dev.len },
		};

		colo_recorder_full(n->rec, c->seq, n->generation, c->wall_ns, v, 4);
	} else if (c->snap.len) {
		struct iovec v = { c->snap.data, c->snap.len };

		colo_recorder_full(n->rec, c->seq, n->generation, c->wall_ns, &v, 1);
	} else if (c->head.len >= 4 && c->mid.len >= 12) {
		struct iovec ram[3] = {
			{ c->head.data + 4, c->head.len - 4 }, { c->ram.data, c->ram.len },
			{ c->mid.data, c->mid.len - 12 },
		};
		struct iovec dev = { c->dev.data, c->dev.len };

		/* The staged pages are the state it leads to (those equal to
		 * their shadow too): the recorder need not decode the records.
		 * Unless the next checkpoint (pipelined before the recording
		 * started) has staged since. */
		if (p->stage_seq == c->seq)
			colo_recorder_checkpoint_decoded(n->rec, c->seq, n->generation,
							 c->wall_ns, ram, 3, &dev, 1, &p->stage,
							 p->blocks, p->nblocks);
		else
			colo_recorder_checkpoint(n->rec, c->seq, n->generation, c->wall_ns, ram,
						 3, &dev, 1);
	}
}

/* VMSTATE_LOADED (a checkpoint) or CHECKPOINT_READY (the sync) for c. */
static void ckpt_done(struct colo_primary *p, struct ckpt *c)
{
	struct colo_stats *st = &p->n->stats;
	uint64_t now = colo_now_ns();
	char msg[64];

	p->last_committed = c->seq;
	p->last_done_ns = now;
	if (c->full) {
		/* Nothing was held for the sync but what the guest said meanwhile. */
		primary_out_release(p, c->seq);
	} else {
		colo_stats_phase(st, COLO_PHASE_ROUND_TRIP, now - c->t0);
		colo_stats_checkpoint(st, now, c->pages,
				      c->head.len + c->ram.len + c->mid.len + c->dev.len);
		st->checkpoints++;
		st->pages_sent += c->pages - c->st.unchanged;
		st->pages_unchanged += c->st.unchanged;
		for (int k = 0; k < COLO_PAGE_KINDS; k++) {
			st->pages_by_kind[k] += c->st.pages[k];
			st->bytes_by_kind[k] += c->st.kind_bytes[k];
		}
	}
	colo_hb_set_committed(p->hb, c->seq);
	record_committed(p, c);
	if (!c->full) {
		snprintf(msg, sizeof(msg), "checkpoint %" PRIu64 " committed", c->seq);
		primary_answer_waiting(p, true, c->seq, msg);
	}
}

void primary_ckpt_committed(struct colo_primary *p)
{
	ckpt_done(p, p->cur);
	primary_ckpt_to(p, CK_IDLE);
	ckpt_release(p);
}

void primary_ckpt_pipeline(struct colo_primary *p)
{
	struct ckpt *c = p->cur;

	/* Not while this node records: the next checkpoint's staging would
	 * take the pages the recorder is handed at commit, and it would
	 * decode every checkpoint again instead (record_committed). */
	if (!c || c->full || p->prev || p->phase != CK_SENT || !c->t_sent || !c->replied ||
	    !primary_eager(p) || p->state != P_PROTECTED || p->n->rec)
		return;
	/* The engine's reference goes with it. */
	p->prev = c;
	p->prev_received = false;
	p->cur = NULL;
	primary_ckpt_to(p, CK_IDLE);
	p->n->stats.pipelined++;
	primary_schedule(p);
}

void primary_prev_message(struct colo_primary *p, uint32_t m)
{
	struct ckpt *c = p->prev;

	if (m == COLO_MSG_VMSTATE_RECEIVED && !p->prev_received) {
		p->prev_received = true;
		ckpt_acked(p, c);
	} else if (m == COLO_MSG_VMSTATE_LOADED && p->prev_received) {
		p->prev = NULL;
		ckpt_done(p, c);
		ckpt_unref(c);
		/* The next may have been sent whole meanwhile: it waits here now. */
		primary_ckpt_pipeline(p);
		primary_schedule(p);
	} else {
		colo_repl_protocol_error(p->conn, "unexpected %s (%u) while checkpoint %" PRIu64
					 " waits for its %s", colo_msg_name(m), m, c->seq,
					 p->prev_received ? "VMSTATE_LOADED" :
					 "VMSTATE_RECEIVED");
	}
}

/* ---- the checkpoint clock ---- */

/*
 * A start due now goes through an idle handle: it runs at the next turn of
 * the loop, with no system call.  A later one arms the timerfd, and only
 * when that moves its expiry earlier: a tick that fires before the start
 * it was armed for is due finds so and re-arms (on_tick).  Under output
 * mode buffer a start is due as soon as the one before is written, so
 * with a timerfd armed for each that was two or three timerfd_settime
 * calls per checkpoint, each a costly interrupt enable on a paravirtual
 * host (docs/BENCHMARKS.md).
 */

static void tick_at(struct colo_primary *p, uint64_t when_ns)
{
	struct itimerspec its;

	/* Absolute on the monotonic clock colo_now_ns() reads, and never 0
	 * (0 disarms): a moment passed fires at once. */
	memset(&its, 0, sizeof(its));
	its.it_value = colo_mono_timespec(when_ns ? when_ns : 1);
	timerfd_settime(p->tick_fd, TFD_TIMER_ABSTIME, &its, NULL);
	p->tick_armed_ns = when_ns ? when_ns : 1;
}

void primary_clock_stop(struct colo_primary *p)
{
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	if (p->tick_fd >= 0 && p->tick_armed_ns)
		timerfd_settime(p->tick_fd, 0, &its, NULL);
	p->tick_armed_ns = 0;
	if (p->kick_on)
		uv_idle_stop(&p->kick);
}

/* When the next checkpoint may start, if one may (state and phase). */
static bool next_start(struct colo_primary *p, uint64_t *at)
{
	const struct colo_config *cfg = &p->n->cfg;
	uint64_t earliest;

	if (p->state != P_PROTECTED || p->phase != CK_IDLE)
		return false;
	/* A guest that drives its checkpoints asks for each (guest.h). */
	if (p->n->gops->drives_checkpoints && !p->want_now)
		return false;
	/* min-interval-ms spaces starts (DESIGN.md, group commit). */
	earliest = p->last_start_ns + (uint64_t)cfg->min_interval_ms * 1000000ull;
	*at = p->want_now ? earliest :
	      p->last_start_ns + (uint64_t)cfg->checkpoint_interval_ms * 1000000ull;
	if (*at < earliest)
		*at = earliest;
	return true;
}

/* Start the next checkpoint if it is due, else arm the clock for it. */
static void start_or_arm(struct colo_primary *p)
{
	uint64_t at;

	if (!next_start(p, &at))
		return;
	if (at <= colo_now_ns())
		primary_ckpt_start(p, false);
	else if (!p->tick_armed_ns || at < p->tick_armed_ns)
		tick_at(p, at);
}

static void on_tick(uv_poll_t *h, int status, int events)
{
	struct colo_primary *p = h->data;
	uint64_t fired;

	(void)status;
	(void)events;
	if (read(p->tick_fd, &fired, sizeof(fired)) != (ssize_t)sizeof(fired))
		return;                /* re-armed or stopped since: not due */
	p->tick_armed_ns = 0;
	start_or_arm(p);
}

static void on_kick(uv_idle_t *h)
{
	struct colo_primary *p = h->data;

	uv_idle_stop(h);
	start_or_arm(p);
}

int primary_clock_init(struct colo_primary *p, struct colo_err *err)
{
	p->tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (p->tick_fd < 0)
		return colo_err_set(err, errno, "cannot create the checkpoint timer: %s",
				    strerror(errno));
	return 0;
}

void primary_clock_start(struct colo_primary *p)
{
	uv_poll_init(p->n->loop, &p->tick, p->tick_fd);
	p->tick.data = p;
	p->tick_on = true;
	uv_poll_start(&p->tick, UV_READABLE, on_tick);
	uv_idle_init(p->n->loop, &p->kick);
	p->kick.data = p;
	p->kick_on = true;
}

void primary_clock_close(struct colo_primary *p)
{
	primary_clock_stop(p);
	if (p->tick_on) {
		p->tick_on = false;
		uv_close((uv_handle_t *)&p->tick, NULL);
	}
	if (p->kick_on) {
		p->kick_on = false;
		uv_close((uv_handle_t *)&p->kick, NULL);
	}
}

/* Arm the clock for the next checkpoint, if one may start: one due now
 * starts at the next turn of the loop (the caller may be deep in the
 * pipeline's callbacks). */
void primary_schedule(struct colo_primary *p)
{
	uint64_t at;

	if (!next_start(p, &at)) {
		if (p->state == P_PROTECTED && p->phase == CK_IDLE)
			primary_clock_stop(p);
		return;
	}
	if (at <= colo_now_ns()) {
		if (p->kick_on)
			uv_idle_start(&p->kick, on_kick);
	} else if (!p->tick_armed_ns || at < p->tick_armed_ns) {
		tick_at(p, at);
	}
}
