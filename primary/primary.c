/*
 * primary.c: the primary role engine (see primary.h).
 *
 * Connection life: DEGRADED -> CONNECTING -> HELLO -> SYNC -> PROTECTED, and
 * back to DEGRADED (reconnect timer) whenever the connection drops, the
 * secondary's heartbeats stop, or it speaks out of turn.
 *
 * A checkpoint (struct ckpt) is staged on the loop with the guest paused,
 * encoded on a libuv worker thread (which drives the encoder's own
 * threads), and written with one uv_write of several buffers:
 *   VMSTATE_SEND, RAM END section header, records, EOS + footer, EOF,
 *   VMSTATE_SIZE n, device stream (device FULL sections, colo/checkpoint, EOF)
 * A ckpt is reference-counted: the engine, the worker and the write each
 * hold it, so a connection that drops mid-way frees nothing in use.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "colo.pb-c.h"
#include "colomsg.h"
#include "hb.h"
#include "log.h"
#include "pagecodec.h"
#include "primary.h"
#include "ramenc.h"
#include "record.h"
#include "stream.h"

enum pstate { P_DEGRADED, P_CONNECTING, P_HELLO, P_SYNC, P_PROTECTED, P_STOPPED };

static const char *const state_names[] = {
	"degraded", "connecting", "hello", "syncing", "protected", "stopped",
};

#define RECONNECT_MS 500
#define RECONNECT_LOG_NS (10ull * 1000000000ull)
#define INLINE_ENCODE_PAGES 32  /* fewer dirty pages: encode on the loop */

struct conn {
	uv_tcp_t tcp;
	struct colo_primary *p;      /* NULL once dropped */
	struct colo_buf rx;
};

struct ckpt {
	int refs;
	struct colo_primary *p;      /* NULL once abandoned */
	struct colo_primary *eng;    /* always: the engine outlives its work */
	bool full;                   /* the initial sync */
	uint64_t seq;
	uint64_t t0, t_staged, t_ready, t_sent;
	uint64_t wall_ns;
	uint64_t pages;
	struct colo_buf head;        /* VMSTATE_SEND + section header (or sync prefix) */
	struct colo_buf ram;         /* records */
	struct colo_buf mid;         /* EOS, footer, EOF, VMSTATE_SIZE */
	struct colo_buf dev;         /* device stream */
	struct colo_buf snap;        /* a recording's first keyframe, taken paused */
	struct colo_ram_enc_stats st;
	uint32_t allowed;            /* encodings, fixed when it was staged */
	int enc_rc;
	struct colo_err enc_err;
	bool encoded, replied, written, received;
	uv_work_t work;
	uv_write_t wreq;
};

struct pending {
	struct colo_ctl_pending *ctl;
	struct pending *next;
};

struct colo_primary {
	struct colo_node *n;
	enum pstate state;
	struct conn *conn;
	uv_connect_t connect_req;
	uv_timer_t reconnect;
	int tick_fd;                 /* timerfd: the next checkpoint's start */
	uv_poll_t tick;
	bool tick_on;
	struct sockaddr_storage peer;
	uint64_t last_unreachable_log_ns;
	/* agreed with the secondary */
	uint32_t encodings;
	char peer_node[256];
	struct colo_hb *hb;
	/* pipeline */
	struct colo_ram_block **blocks;
	size_t nblocks;
	struct colo_ram_shadow *shadows;
	struct colo_ram_stage stage;
	struct colo_ram_encoder *enc;
	struct ckpt *cur;
	bool encoding;               /* a worker uses stage, shadows, encoder */
	bool sync_waiting;           /* a full sync waits for that worker */
	uint64_t next_seq;
	uint64_t last_committed;
	uint64_t last_start_ns, last_done_ns;
	bool want_now;
	struct pending *waiting;     /* colo-ctl checkpoint requests */
	uv_async_t want_async;       /* the guest's output waits (any thread) */
	bool want_async_on;
	/* tests: --fault abort-at=PHASE[,after=N] */
	int fault;
	uint64_t fault_after;
};

/* ---- fault injection (tests only: --fault abort-at=PHASE[,after=N]) ---- */

enum fault {
	F_NONE, F_PAUSED, F_STAGED, F_REQUEST, F_ENCODED, F_MID_SEND, F_SENT,
	F_RECEIVED, F_SYNC,
};

static const char *const fault_names[] = {
	"", "paused", "staged", "request", "encoded", "mid-send", "sent", "received",
	"mid-sync",
};

static int parse_fault(struct colo_primary *p, const char *spec, struct colo_err *err)
{
	char buf[128], *save = NULL;

	p->fault = F_NONE;
	p->fault_after = 5;
	if (!spec || !*spec)
		return 0;
	snprintf(buf, sizeof(buf), "%s", spec);
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strncmp(tok, "abort-at=", 9) == 0) {
			for (int i = 1; i < (int)(sizeof(fault_names) / sizeof(fault_names[0])); i++)
				if (strcmp(tok + 9, fault_names[i]) == 0)
					p->fault = i;
			if (p->fault == F_NONE)
				return colo_err_set(err, EINVAL, "fault: unknown phase '%s'",
						    tok + 9);
		} else if (strncmp(tok, "after=", 6) == 0) {
			p->fault_after = strtoull(tok + 6, NULL, 10);
		} else {
			return colo_err_set(err, EINVAL, "fault: cannot parse '%s'", tok);
		}
	}
	colo_log_warn("fault injection armed: abort at %s after checkpoint %" PRIu64,
		      fault_names[p->fault], p->fault_after);
	return 0;
}

/* Die here, as kill -9 would: no cleanup, no last words on the wire. */
static void fault_point(struct colo_primary *p, int where, uint64_t seq)
{
	if (p->fault != where || (where != F_SYNC && seq < p->fault_after))
		return;
	colo_log_warn("fault injection: killing this process at %s (checkpoint %" PRIu64
		      ")", fault_names[where], seq);
	kill(getpid(), SIGKILL);
}

static void go_degraded(struct colo_primary *p, const char *why);
static void schedule_next(struct colo_primary *p);
static void start_checkpoint(struct colo_primary *p, bool full);

/* ---- output commit (guest.h) ---- */

static bool buffering(const struct colo_primary *p)
{
	return p->n->cfg.output_mode == COLO_OUTPUT_BUFFER && p->n->gops->output_epoch;
}

static void out_epoch(struct colo_primary *p, uint64_t seq)
{
	if (p->n->gops->output_epoch && p->n->guest)
		p->n->gops->output_epoch(p->n->guest, seq);
}

static void out_release(struct colo_primary *p, uint64_t seq)
{
	if (p->n->gops->output_release && p->n->guest)
		p->n->gops->output_release(p->n->guest, seq);
}

/* Group commit: held output asks for a checkpoint now (min-interval-ms
 * still applies). */
static void on_want_async(uv_async_t *a)
{
	struct colo_primary *p = a->data;

	if (p->state == P_PROTECTED)
		colo_primary_want_checkpoint(p);
}

static void want_from_guest(void *ud)
{
	struct colo_primary *p = ud;

	uv_async_send(&p->want_async);
}

/* ---- ckpt ---- */

static void ckpt_unref(struct ckpt *c)
{
	if (--c->refs > 0)
		return;
	colo_buf_free(&c->head);
	colo_buf_free(&c->ram);
	colo_buf_free(&c->mid);
	colo_buf_free(&c->dev);
	colo_buf_free(&c->snap);
	free(c);
}

/* The engine lets go of its checkpoint (done, or the connection dropped). */
static void ckpt_drop(struct colo_primary *p)
{
	if (!p->cur)
		return;
	p->cur->p = NULL;
	ckpt_unref(p->cur);
	p->cur = NULL;
}

/* ---- answering colo-ctl checkpoint requests ---- */

static void answer_waiting(struct colo_primary *p, bool ok, const char *msg)
{
	while (p->waiting) {
		struct pending *w = p->waiting;

		p->waiting = w->next;
		colo_node_reply_checkpoint(w->ctl, ok, msg);
		free(w);
	}
}

/* ---- connection ---- */

static void on_conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;

	colo_buf_free(&c->rx);
	free(c);
}

static void conn_drop(struct colo_primary *p)
{
	struct conn *c = p->conn;

	if (!c)
		return;
	p->conn = NULL;
	c->p = NULL;
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

struct small_write {
	uv_write_t req;
	uint8_t data[];
};

static void on_small_written(uv_write_t *req, int status)
{
	(void)status;      /* a failed write also fails the read: handled there */
	free(req);
}

static int send_bytes(struct colo_primary *p, const void *data, size_t len)
{
	struct small_write *w;
	uv_buf_t b;
	int r;

	if (!p->conn)
		return -ENOTCONN;
	w = malloc(sizeof(*w) + len);
	if (!w)
		return -ENOMEM;
	memcpy(w->data, data, len);
	b = uv_buf_init((char *)w->data, (unsigned)len);
	r = uv_write(&w->req, (uv_stream_t *)&p->conn->tcp, &b, 1, on_small_written);
	if (r)
		free(w);
	return r;
}

static int send_msg(struct colo_primary *p, uint32_t msg)
{
	uint8_t b[4];

	colo_store_be32(b, msg);
	return send_bytes(p, b, sizeof(b));
}

/* ---- full sync and checkpoints: staging (guest paused) ---- */

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

/* ---- encoding, on a worker thread ---- */

static void encode_work(uv_work_t *w)
{
	struct ckpt *c = w->data;
	struct colo_primary *p = c->eng;

	/* The loop leaves stage, shadows and encoder alone while p->encoding. */
	colo_err_clear(&c->enc_err);
	c->enc_rc = colo_ram_encode(p->enc, &p->stage, p->shadows, p->nblocks,
				    c->allowed, &c->ram, &c->st, &c->enc_err);
}

static void maybe_send(struct colo_primary *p);

static void encode_done(uv_work_t *w, int status)
{
	struct ckpt *c = w->data;
	struct colo_primary *p = c->p;

	(void)status;
	c->encoded = true;
	c->eng->encoding = false;
	if (c->eng->sync_waiting && c->eng->state == P_SYNC) {
		/* A full sync was asked for while this (abandoned) one ran. */
		c->eng->sync_waiting = false;
		start_checkpoint(c->eng, true);
	}
	if (p && c == p->cur) {
		uint64_t now = colo_now_ns();

		colo_stats_phase(&p->n->stats, COLO_PHASE_ENCODE, now - c->t_staged);
		if (c->enc_rc) {
			colo_log_error("checkpoint %" PRIu64 ": %s", c->seq, c->enc_err.msg);
			go_degraded(p, "encoding failed");
		} else {
			maybe_send(p);
		}
	}
	ckpt_unref(c);
}

/* ---- sending ---- */

static void on_ckpt_written(uv_write_t *req, int status)
{
	struct ckpt *c = req->data;
	struct colo_primary *p = c->p;

	if (p && c == p->cur && status == 0) {
		c->written = true;
		c->t_sent = colo_now_ns();
		colo_stats_phase(&p->n->stats, COLO_PHASE_SEND, c->t_sent - c->t_ready);
		if (!c->full)
			fault_point(p, F_SENT, c->seq);
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

/* Append colo/checkpoint (with the checksum) and EOF to a checkpoint's devices. */
static int seal_devices(struct colo_primary *p, struct ckpt *c, struct colo_err *err)
{
	struct colo_stream_writer w;
	struct colo_ckpt_info info;
	XXH3_state_t *h = XXH3_createState();
	size_t mid_hashed = c->mid.len;
	int r;

	if (!h)
		return colo_err_set(err, ENOMEM, "out of memory");
	/* Everything from the RAM END section through its EOF, then devices. */
	XXH3_64bits_reset(h);
	XXH3_64bits_update(h, c->head.data + 4, c->head.len - 4);
	XXH3_64bits_update(h, c->ram.data, c->ram.len);
	XXH3_64bits_update(h, c->mid.data, mid_hashed);
	XXH3_64bits_update(h, c->dev.data, c->dev.len);
	memset(&info, 0, sizeof(info));
	info.generation = p->n->generation;
	info.seq = c->seq;
	info.time_ns = c->wall_ns;
	info.pages = c->pages;
	info.checksum = XXH3_64bits_digest(h);
	XXH3_freeState(h);
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

/* Fault injection: put half of the bytes on the wire, then die. */
static void send_half_and_die(struct colo_primary *p, uv_buf_t *bufs, int n, int where,
			      uint64_t seq)
{
	size_t total = 0, half, done = 0;

	for (int i = 0; i < n; i++)
		total += bufs[i].len;
	half = total / 2;
	for (int i = 0; i < n && done < half; i++) {
		size_t off = 0;

		while (off < bufs[i].len && done < half) {
			size_t want = bufs[i].len - off < half - done ? bufs[i].len - off :
				      half - done;
			uv_buf_t b = uv_buf_init(bufs[i].base + off, (unsigned)want);
			int w = uv_try_write((uv_stream_t *)&p->conn->tcp, &b, 1);

			if (w == UV_EAGAIN) {
				usleep(100);
				continue;
			}
			if (w < 0)
				break;
			off += (size_t)w;
			done += (size_t)w;
		}
	}
	fault_point(p, where, seq);
}

static void maybe_send(struct colo_primary *p)
{
	struct ckpt *c = p->cur;
	struct colo_err err;
	uv_buf_t bufs[4];
	int r;

	if (!c || !c->encoded || (!c->full && !c->replied) || c->t_ready || !p->conn)
		return;
	colo_err_clear(&err);
	frame_ram(p, c);
	if (!c->full && seal_devices(p, c, &err)) {
		colo_log_error("checkpoint %" PRIu64 ": %s", c->seq, err.msg);
		go_degraded(p, "cannot build the checkpoint");
		return;
	}
	if (!colo_buf_ok(&c->head) || !colo_buf_ok(&c->ram) || !colo_buf_ok(&c->mid) ||
	    !colo_buf_ok(&c->dev)) {
		go_degraded(p, "out of memory building a checkpoint");
		return;
	}
	c->t_ready = colo_now_ns();
	if (!c->full)
		fault_point(p, F_ENCODED, c->seq);
	/* A sync: prefix .. PART header, records, EOS .. END, devices, EOF,
	 * vmdesc.  A checkpoint: VMSTATE_SEND + END header, records, EOS ..
	 * EOF + VMSTATE_SIZE, devices + colo/checkpoint + EOF. */
	bufs[1] = uv_buf_init((char *)c->ram.data, (unsigned)c->ram.len);
	bufs[2] = uv_buf_init((char *)c->mid.data, (unsigned)c->mid.len);
	bufs[3] = uv_buf_init((char *)c->dev.data, (unsigned)c->dev.len);
	bufs[0] = uv_buf_init((char *)c->head.data, (unsigned)c->head.len);
	if ((p->fault == F_MID_SEND && !c->full && c->seq >= p->fault_after) ||
	    (p->fault == F_SYNC && c->full))
		send_half_and_die(p, bufs, 4, c->full ? F_SYNC : F_MID_SEND, c->seq);
	c->wreq.data = c;
	c->refs++;
	r = uv_write(&c->wreq, (uv_stream_t *)&p->conn->tcp, bufs, 4, on_ckpt_written);
	if (r) {
		c->refs--;
		go_degraded(p, uv_strerror(r));
		return;
	}
	p->n->stats.bytes_sent += c->head.len + c->ram.len + c->mid.len + c->dev.len;
}

/* ---- taking a checkpoint ---- */

static void start_checkpoint(struct colo_primary *p, bool full)
{
	struct colo_node *n = p->n;
	struct colo_err err;
	struct ckpt *c;
	struct timespec wall;
	uint64_t t1, t2, t3;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c) {
		go_degraded(p, "out of memory");
		return;
	}
	c->refs = 1;
	c->p = p;
	c->eng = p;
	c->full = full;
	c->allowed = p->encodings;
	/* One sequence for syncs and checkpoints: numbers never go back while
	 * this engine runs, even across resyncs. */
	c->seq = p->next_seq++;
	colo_err_clear(&err);
	colo_ram_stage_reset(&p->stage);

	/* The guest waits from here ... */
	c->t0 = colo_now_ns();
	clock_gettime(CLOCK_REALTIME, &wall);
	c->wall_ns = (uint64_t)wall.tv_sec * 1000000000ull + (uint64_t)wall.tv_nsec;
	colo_node_pause_guest(n);
	/* What the guest answers from here on is in the next checkpoint. */
	if (buffering(p))
		out_epoch(p, c->seq + 1);
	if (!full)
		fault_point(p, F_PAUSED, c->seq);
	t1 = colo_now_ns();
	r = colo_ram_harvest(n->ram, NULL, &err);
	if (r == 0 && full)
		mark_all_dirty(p);
	t2 = colo_now_ns();
	if (r == 0)
		r = colo_ram_stage_collect(&p->stage, p->blocks, p->nblocks, &err);
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
	t3 = colo_now_ns();
	if (!full)
		fault_point(p, F_STAGED, c->seq);
	colo_node_resume_guest(n);
	/* ... to here. */
	c->t_staged = colo_now_ns();
	c->pages = p->stage.n;
	colo_stats_phase(&n->stats, COLO_PHASE_PAUSE, t1 - c->t0);
	colo_stats_phase(&n->stats, COLO_PHASE_SYNC, t2 - t1);
	colo_stats_phase(&n->stats, COLO_PHASE_COPY, t3 - t2);
	colo_stats_phase(&n->stats, COLO_PHASE_RESUME, c->t_staged - t3);
	p->last_start_ns = c->t0;
	p->want_now = false;
	p->cur = c;
	if (r) {
		colo_log_error("checkpoint %" PRIu64 ": %s", c->seq, err.msg);
		go_degraded(p, "staging failed");
		return;
	}
	if (full) {
		/* The secondary holds nothing yet: every page goes without a base. */
		for (size_t b = 0; b < p->nblocks; b++)
			p->shadows[b].valid = false;
	} else if (send_msg(p, COLO_MSG_CHECKPOINT_REQUEST) != 0) {
		go_degraded(p, "cannot send CHECKPOINT_REQUEST");
		return;
	} else {
		fault_point(p, F_REQUEST, c->seq);
	}
	c->work.data = c;
	c->refs++;
	p->encoding = true;
	if (!full && p->stage.n <= INLINE_ENCODE_PAGES) {
		/* A few pages encode faster here than the two thread hops take
		 * (worker, then back to this loop): this is the latency a client
		 * waits for under output-mode buffer. */
		encode_work(&c->work);
		encode_done(&c->work, 0);
		return;
	}
	if (uv_queue_work(n->loop, &c->work, encode_work, encode_done) != 0) {
		c->refs--;
		p->encoding = false;
		go_degraded(p, "cannot queue the encoding");
	}
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

		colo_recorder_checkpoint(n->rec, c->seq, n->generation, c->wall_ns, ram, 3,
					 &dev, 1);
	}
}

static void checkpoint_committed(struct colo_primary *p)
{
	struct ckpt *c = p->cur;
	uint64_t now = colo_now_ns();
	char msg[64];

	p->last_committed = c->seq;
	p->last_done_ns = now;
	colo_stats_phase(&p->n->stats, COLO_PHASE_ROUND_TRIP, now - c->t0);
	colo_stats_checkpoint(&p->n->stats, now, c->pages,
			      c->head.len + c->ram.len + c->mid.len + c->dev.len);
	p->n->stats.checkpoints++;
	p->n->stats.pages_sent += c->pages - c->st.unchanged;
	p->n->stats.pages_unchanged += c->st.unchanged;
	for (int k = 0; k < COLO_PAGE_KINDS; k++)
		p->n->stats.pages_by_kind[k] += c->st.pages[k];
	colo_hb_set_committed(p->hb, c->seq);
	record_committed(p, c);
	ckpt_drop(p);
	snprintf(msg, sizeof(msg), "checkpoint %" PRIu64 " committed", p->last_committed);
	answer_waiting(p, true, msg);
	schedule_next(p);
}

/* ---- timers ---- */

/*
 * The checkpoint clock is a timerfd, not a libuv timer: libuv counts whole
 * milliseconds and rounds up, which added 1-2 ms to every group commit
 * (the wait for min-interval-ms), the latency a client sees under
 * output-mode buffer.
 */
static void tick_at(struct colo_primary *p, uint64_t when_ns)
{
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	/* Absolute, and never 0 (0 disarms): a moment passed fires at once. */
	when_ns = when_ns ? when_ns : 1;
	its.it_value.tv_sec = (time_t)(when_ns / 1000000000ull);
	its.it_value.tv_nsec = (long)(when_ns % 1000000000ull);
	timerfd_settime(p->tick_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void tick_stop(struct colo_primary *p)
{
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	if (p->tick_fd >= 0)
		timerfd_settime(p->tick_fd, 0, &its, NULL);
}

static void on_tick(uv_poll_t *h, int status, int events)
{
	struct colo_primary *p = h->data;
	uint64_t fired;

	(void)status;
	(void)events;
	if (read(p->tick_fd, &fired, sizeof(fired)) != (ssize_t)sizeof(fired))
		return;                /* re-armed or stopped since: not due */
	if (p->state == P_PROTECTED && !p->cur && !p->encoding)
		start_checkpoint(p, false);
}

static void schedule_next(struct colo_primary *p)
{
	const struct colo_config *cfg = &p->n->cfg;
	uint64_t now = colo_now_ns(), next, earliest;

	if (p->state != P_PROTECTED || p->cur)
		return;
	/* min-interval-ms spaces starts (DESIGN.md, group commit). */
	earliest = p->last_start_ns + (uint64_t)cfg->min_interval_ms * 1000000ull;
	next = p->want_now ? earliest :
	       p->last_start_ns + (uint64_t)cfg->checkpoint_interval_ms * 1000000ull;
	if (next < earliest)
		next = earliest;
	tick_at(p, next > now ? next : now);
}

/* ---- receiving ---- */

static void protocol_error(struct colo_primary *p, const char *fmt, uint32_t v)
{
	char why[160];

	snprintf(why, sizeof(why), fmt, v);
	colo_log_error("secondary %s: %s", p->peer_node, why);
	go_degraded(p, "protocol error");
}

static void hello_reply(struct colo_primary *p, const uint8_t *data, size_t len)
{
	Colo__Hello *h = colo__hello__unpack(NULL, len, data);
	struct colo_node *n = p->n;
	struct colo_err err;
	uint32_t kinds = 0;

	if (!h || !h->node_id) {
		if (h)
			colo__hello__free_unpacked(h, NULL);
		colo_log_error("secondary at peer address sent a Hello that does not unpack");
		go_degraded(p, "bad hello");
		return;
	}
	if (!h->accepted) {
		if (h->generation > n->generation) {
			colo_log_error("secondary %s has generation %" PRIu64 ", newer than ours "
				       "(%" PRIu64 "): another node took over; stopping", h->node_id,
				       h->generation, n->generation);
			colo__hello__free_unpacked(h, NULL);
			colo_node_exit(n, COLO_EXIT_SUPERSEDED);
			return;
		}
		colo_log_warn("secondary %s refused us: %s", h->node_id,
			      h->refusal ? h->refusal : "no reason given");
		colo__hello__free_unpacked(h, NULL);
		go_degraded(p, "refused");
		return;
	}
	colo_err_clear(&err);
	for (size_t i = 0; i < h->n_encodings; i++) {
		uint32_t one;

		if (colo_encodings_parse(h->encodings[i], &one, &err) == 0)
			kinds |= one;
	}
	p->encodings = (kinds & n->cfg.encodings) | COLO_PAGE_KIND_BIT(COLO_PAGE_RAW);
	snprintf(p->peer_node, sizeof(p->peer_node), "%s", h->node_id);
	if (h->heartbeat_port) {
		struct sockaddr_storage hb = p->peer;

		if (hb.ss_family == AF_INET)
			((struct sockaddr_in *)&hb)->sin_port = htons((uint16_t)h->heartbeat_port);
		else
			((struct sockaddr_in6 *)&hb)->sin6_port = htons((uint16_t)h->heartbeat_port);
		colo_hb_send_to(p->hb, (struct sockaddr *)&hb, n->cfg.heartbeat_interval_ms,
				colo_node_stall_ms(n));
	}
	/* Its heartbeats start once the sync is loaded: watch from READY. */
	colo__hello__free_unpacked(h, NULL);
	colo_log_info("secondary %s accepted us; full sync", p->peer_node);
	p->state = P_SYNC;
	n->stats.full_syncs++;
	if (p->encoding)
		p->sync_waiting = true;     /* an abandoned checkpoint still encodes */
	else
		start_checkpoint(p, true);
}

/* Parse what arrived; returns false when the connection was dropped. */
static bool parse_rx(struct colo_primary *p)
{
	struct colo_buf *rx = &p->conn->rx;
	size_t pos = 0;

	while (p->conn) {
		size_t avail = rx->len - pos;
		uint32_t m;

		if (p->state == P_HELLO) {
			uint32_t len;

			if (avail < 4)
				break;
			len = colo_load_be32(rx->data + pos);
			if (len == 0 || len > COLO_HELLO_MAX) {
				protocol_error(p, "Hello of %u bytes", len);
				return false;
			}
			if (avail < 4 + (size_t)len)
				break;
			pos += 4 + len;
			hello_reply(p, rx->data + pos - len, len);
			continue;
		}
		if (avail < 4)
			break;
		m = colo_load_be32(rx->data + pos);
		pos += 4;
		switch (m) {
		case COLO_MSG_CHECKPOINT_READY:
			if (p->state != P_SYNC || !p->cur || !p->cur->full || !p->cur->t_ready) {
				protocol_error(p, "unexpected CHECKPOINT_READY (%u)", m);
				return false;
			}
			p->last_committed = p->cur->seq;
			colo_hb_set_committed(p->hb, p->last_committed);
			out_release(p, p->cur->seq);
			record_committed(p, p->cur);
			ckpt_drop(p);               /* the sync is loaded */
			p->state = P_PROTECTED;
			colo_hb_watch(p->hb, p->peer_node, p->n->cfg.heartbeat_timeout_ms);
			p->last_done_ns = colo_now_ns();
			colo_log_info("protected by %s (generation %" PRIu64 ")", p->peer_node,
				      p->n->generation);
			schedule_next(p);
			break;
		case COLO_MSG_CHECKPOINT_REPLY:
			if (!p->cur || p->cur->full || p->cur->replied) {
				protocol_error(p, "unexpected CHECKPOINT_REPLY (%u)", m);
				return false;
			}
			p->cur->replied = true;
			maybe_send(p);
			break;
		case COLO_MSG_VMSTATE_RECEIVED:
			if (!p->cur || p->cur->full || !p->cur->t_ready || p->cur->received) {
				protocol_error(p, "unexpected VMSTATE_RECEIVED (%u)", m);
				return false;
			}
			p->cur->received = true;
			colo_stats_phase(&p->n->stats, COLO_PHASE_ACK, colo_now_ns() -
					 (p->cur->t_sent ? p->cur->t_sent : p->cur->t_ready));
			/* The secondary will commit it before any promotion: the
			 * replies that waited for it may go. */
			out_release(p, p->cur->seq);
			fault_point(p, F_RECEIVED, p->cur->seq);
			break;
		case COLO_MSG_VMSTATE_LOADED:
			if (!p->cur || !p->cur->received) {
				protocol_error(p, "unexpected VMSTATE_LOADED (%u)", m);
				return false;
			}
			checkpoint_committed(p);
			break;
		default:
			protocol_error(p, "unknown message %u", m);
			return false;
		}
	}
	if (p->conn) {
		memmove(rx->data, rx->data + pos, rx->len - pos);
		rx->len -= pos;
	}
	return p->conn != NULL;
}

static void alloc_read(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;
	uint8_t *p;

	(void)suggested;
	if (!colo_buf_reserve(&c->rx, 4096)) {
		*buf = uv_buf_init(NULL, 0);
		return;
	}
	p = c->rx.data + c->rx.len;
	*buf = uv_buf_init((char *)p, (unsigned)(c->rx.cap - c->rx.len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	struct colo_primary *p = c->p;

	(void)buf;
	if (!p)
		return;
	if (nread < 0) {
		colo_log_warn("connection to secondary %s: %s", p->peer_node[0] ?
			      p->peer_node : "(hello)", nread == UV_EOF ? "closed by peer" :
			      uv_strerror((int)nread));
		go_degraded(p, "connection lost");
		return;
	}
	c->rx.len += (size_t)nread;
	p->n->stats.bytes_received += (uint64_t)nread;
	parse_rx(p);
}

static void send_hello(struct colo_primary *p)
{
	struct colo_node *n = p->n;
	Colo__Hello h = COLO__HELLO__INIT;
	char names[128], *list[COLO_PAGE_KINDS], *save = NULL, *tok;
	size_t count = 0, len;
	struct small_write *w;
	uv_buf_t b;

	colo_encodings_format(n->cfg.encodings, names, sizeof(names));
	for (tok = strtok_r(names, ",", &save); tok && count < COLO_PAGE_KINDS;
	     tok = strtok_r(NULL, ",", &save))
		list[count++] = tok;
	h.protocol = COLO_REPL_VERSION;
	h.node_id = n->cfg.name;
	h.role = COLO__ROLE__ROLE_PRIMARY;
	h.generation = n->generation;
	h.n_encodings = count;
	h.encodings = list;
	h.guest = n->machine;
	h.heartbeat_port = colo_hb_port(p->hb);
	/* Nothing else is numbered between this Hello and the sync. */
	h.sync_seq = p->next_seq;
	len = colo__hello__get_packed_size(&h);
	w = malloc(sizeof(*w) + 4 + len);
	if (!w) {
		go_degraded(p, "out of memory");
		return;
	}
	colo_store_be32(w->data, (uint32_t)len);
	colo__hello__pack(&h, w->data + 4);
	b = uv_buf_init((char *)w->data, (unsigned)(4 + len));
	if (uv_write(&w->req, (uv_stream_t *)&p->conn->tcp, &b, 1, on_small_written) != 0) {
		free(w);
		go_degraded(p, "cannot send Hello");
	}
}

static void on_connected(uv_connect_t *req, int status)
{
	struct colo_primary *p = req->data;
	struct conn *c = (struct conn *)(void *)req->handle;

	if (!c->p || p->state != P_CONNECTING) {
		return;
	}
	if (status) {
		uint64_t now = colo_now_ns();

		if (now - p->last_unreachable_log_ns > RECONNECT_LOG_NS) {
			colo_log_warn("cannot reach a secondary at %s:%u: %s; running "
				      "unprotected", p->n->cfg.peer.host, p->n->cfg.peer.port,
				      uv_strerror(status));
			p->last_unreachable_log_ns = now;
		}
		go_degraded(p, NULL);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	p->state = P_HELLO;
	if (uv_read_start((uv_stream_t *)&c->tcp, alloc_read, on_read) != 0) {
		go_degraded(p, "cannot read");
		return;
	}
	send_hello(p);
}

static void try_connect(uv_timer_t *t)
{
	struct colo_primary *p = t->data;
	struct conn *c;

	if (p->state != P_DEGRADED || p->conn)
		return;
	c = calloc(1, sizeof(*c));
	if (!c) {
		uv_timer_start(&p->reconnect, try_connect, RECONNECT_MS, 0);
		return;
	}
	c->p = p;
	colo_buf_init(&c->rx);
	uv_tcp_init(p->n->loop, &c->tcp);
	c->tcp.data = c;
	p->conn = c;
	p->state = P_CONNECTING;
	p->connect_req.data = p;
	if (uv_tcp_connect(&p->connect_req, &c->tcp, (struct sockaddr *)&p->peer,
			   on_connected) != 0)
		go_degraded(p, NULL);
}

/* Lose the secondary: run unprotected and look for one again. */
static void go_degraded(struct colo_primary *p, const char *why)
{
	bool was_protected = p->state == P_PROTECTED || p->state == P_SYNC;

	if (p->state == P_STOPPED)
		return;
	if (why && was_protected)
		colo_log_warn("lost secondary %s (%s): running unprotected", p->peer_node, why);
	p->state = P_DEGRADED;
	conn_drop(p);
	ckpt_drop(p);
	tick_stop(p);
	/* Keep sending heartbeats: a secondary that still hears us must not
	 * take over while we serve.  Only stop listening for its. */
	colo_hb_watch(p->hb, NULL, 0);
	p->peer_node[0] = '\0';
	answer_waiting(p, false, "not protected: the secondary was lost");
	/* Held output must go: no client may hang on a lost secondary. */
	out_epoch(p, 0);
	out_release(p, UINT64_MAX);
	uv_timer_start(&p->reconnect, try_connect, why ? RECONNECT_MS : RECONNECT_MS, 0);
}

/* ---- heartbeat ---- */

static void on_peer_dead(void *ud)
{
	struct colo_primary *p = ud;

	if (p->state == P_SYNC || p->state == P_PROTECTED || p->state == P_HELLO)
		go_degraded(p, "no heartbeat");
}

static void on_newer_generation(void *ud, const char *node, uint64_t gen)
{
	struct colo_primary *p = ud;

	colo_log_error("node %s has generation %" PRIu64 ", newer than ours (%" PRIu64
		       "): it took over; stopping", node, gen, p->n->generation);
	colo_node_exit(p->n, COLO_EXIT_SUPERSEDED);
}

/* ---- engine ops ---- */

static void eng_status(void *eng, char *state, size_t slen, char *peer, size_t plen,
		       char *peer_state, size_t pslen, uint64_t *last, char *enc,
		       size_t elen)
{
	struct colo_primary *p = eng;

	snprintf(state, slen, "%s", state_names[p->state]);
	snprintf(peer, plen, "%s:%u%s%s", p->n->cfg.peer.host, p->n->cfg.peer.port,
		 p->peer_node[0] ? " " : "", p->peer_node);
	snprintf(peer_state, pslen, "%s", p->conn && p->state >= P_HELLO ? "connected" :
		 "disconnected");
	*last = p->last_committed;
	if (p->state >= P_SYNC)
		colo_encodings_format(p->encodings, enc, elen);
	else
		snprintf(enc, elen, "-");
}

static int eng_failover(void *eng, char *msg, size_t len, struct colo_err *err)
{
	(void)eng; (void)msg; (void)len;
	return colo_err_set(err, EINVAL, "this node is the primary: failover is "
			    "requested on the secondary");
}

static int eng_set_interval(void *eng, uint32_t ms, char *msg, size_t len,
			    struct colo_err *err)
{
	struct colo_primary *p = eng;

	if (ms < 1 || ms > 60000)
		return colo_err_set(err, EINVAL, "interval %u ms is outside 1..60000", ms);
	if (ms < p->n->cfg.min_interval_ms)
		return colo_err_set(err, EINVAL, "interval %u ms is below min-interval-ms "
				    "(%u)", ms, p->n->cfg.min_interval_ms);
	p->n->cfg.checkpoint_interval_ms = ms;
	snprintf(msg, len, "checkpoint interval set to %u ms", ms);
	colo_log_info("checkpoint interval set to %u ms", ms);
	if (!p->cur)
		schedule_next(p);
	return 0;
}

static int eng_checkpoint(void *eng, struct colo_ctl_pending *ctl, struct colo_err *err)
{
	struct colo_primary *p = eng;
	struct pending *w;

	if (p->state != P_PROTECTED && p->state != P_SYNC)
		return colo_err_set(err, EAGAIN, "not protected: no secondary to "
				    "checkpoint to (state %s)", state_names[p->state]);
	w = calloc(1, sizeof(*w));
	if (!w)
		return colo_err_set(err, ENOMEM, "out of memory");
	w->ctl = ctl;
	w->next = p->waiting;
	p->waiting = w;
	colo_primary_want_checkpoint(p);
	return 0;
}

static void eng_reloaded(void *eng)
{
	struct colo_primary *p = eng;

	if (!buffering(p)) {         /* output-mode none from now on */
		out_epoch(p, 0);
		out_release(p, UINT64_MAX);
	}
	if (!p->cur)
		schedule_next(p);
}

static void eng_stop(void *eng)
{
	struct colo_primary *p = eng;

	p->state = P_STOPPED;
	/* Held replies are dropped with the guest's connections: their
	 * checkpoints were never acknowledged. */
	if (p->n->gops->output_notify && p->n->guest)
		p->n->gops->output_notify(p->n->guest, NULL, NULL);
	if (p->want_async_on) {
		p->want_async_on = false;
		uv_close((uv_handle_t *)&p->want_async, NULL);
	}
	answer_waiting(p, false, "the node is stopping");
	conn_drop(p);
	ckpt_drop(p);
	tick_stop(p);
	uv_timer_stop(&p->reconnect);
	if (p->tick_on) {
		p->tick_on = false;
		uv_close((uv_handle_t *)&p->tick, NULL);
	}
	uv_close((uv_handle_t *)&p->reconnect, NULL);
	colo_hb_stop(p->hb);
	p->hb = NULL;
}

static const struct colo_engine_ops primary_ops = {
	.role = COLO_ROLE_PRIMARY,
	.status = eng_status,
	.failover = eng_failover,
	.set_interval = eng_set_interval,
	.checkpoint = eng_checkpoint,
	.reloaded = eng_reloaded,
	.stop = eng_stop,
};

/* ---- public ---- */

void colo_primary_want_checkpoint(struct colo_primary *p)
{
	p->want_now = true;
	if (!p->cur)
		schedule_next(p);
}


uint64_t colo_primary_next_seq(const struct colo_primary *p)
{
	return p->next_seq;
}

bool colo_primary_protected(const struct colo_primary *p)
{
	return p->state == P_PROTECTED;
}

int colo_primary_start(struct colo_node *n, uint64_t first_seq, struct colo_primary **out,
		       struct colo_err *err)
{
	struct colo_hb_cb cb = { on_peer_dead, on_newer_generation, NULL };
	struct colo_addr any;
	struct colo_primary *p;
	unsigned threads;
	int r;

	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return colo_err_set(err, ENOMEM, "out of memory");
	p->n = n;
	p->tick_fd = -1;
	p->state = P_DEGRADED;
	p->next_seq = first_seq;    /* the first full sync */
	p->last_committed = first_seq ? first_seq - 1 : 0;
	cb.ud = p;
	r = parse_fault(p, n->cfg.fault, err);
	if (r) {
		free(p);
		return r;
	}
	colo_ram_stage_init(&p->stage);
	p->tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (p->tick_fd < 0) {
		r = colo_err_set(err, errno, "cannot create the checkpoint timer: %s",
				 strerror(errno));
		goto fail;
	}
	r = colo_addr_sockaddr(&n->cfg.peer, &p->peer, err);
	if (r)
		goto fail;
	p->nblocks = colo_ram_nblocks(n->ram);
	p->blocks = calloc(p->nblocks ? p->nblocks : 1, sizeof(*p->blocks));
	p->shadows = calloc(p->nblocks ? p->nblocks : 1, sizeof(*p->shadows));
	if (!p->blocks || !p->shadows) {
		r = colo_err_set(err, ENOMEM, "out of memory");
		goto fail;
	}
	for (size_t b = 0; b < p->nblocks; b++) {
		p->blocks[b] = colo_ram_block_at(n->ram, b);
		r = colo_ram_shadow_init(&p->shadows[b], p->blocks[b]->name,
					 p->blocks[b]->length, err);
		if (r)
			goto fail;
	}
	threads = n->cfg.encode_threads ? n->cfg.encode_threads :
		  colo_ram_encoder_default_threads();
	r = colo_ram_encoder_new(threads, &p->enc, err);
	if (r)
		goto fail;
	/* Heartbeats leave from any local address, on a port the Hello names. */
	memset(&any, 0, sizeof(any));
	snprintf(any.host, sizeof(any.host), "%s",
		 strchr(n->cfg.peer.host, ':') ? "::" : "0.0.0.0");
	r = colo_hb_start(n->loop, &any, &cb, &n->stats, &p->hb, err);
	if (r)
		goto fail;
	colo_hb_set_identity(p->hb, n->cfg.name, COLO__ROLE__ROLE_PRIMARY, n->generation);
	colo_hb_set_committed(p->hb, p->last_committed);
	/* No secondary yet: the guest answers at once. */
	out_epoch(p, 0);
	out_release(p, UINT64_MAX);
	if (!n->guest_running) {
		r = colo_node_start_guest(n, err);
		if (r)
			goto fail;
	}
	/* Nothing fails from here: the handles need the loop to close. */
	uv_timer_init(n->loop, &p->reconnect);
	p->reconnect.data = p;
	uv_poll_init(n->loop, &p->tick, p->tick_fd);
	p->tick.data = p;
	p->tick_on = true;
	uv_poll_start(&p->tick, UV_READABLE, on_tick);
	uv_async_init(n->loop, &p->want_async, on_want_async);
	p->want_async.data = p;
	p->want_async_on = true;
	if (n->gops->output_notify && n->guest)
		n->gops->output_notify(n->guest, want_from_guest, p);
	colo_node_set_engine(n, &primary_ops, p);
	colo_log_info("primary engine started: peer %s:%u, interval %u ms, %u encode "
		      "threads, dirty tracking %s", n->cfg.peer.host, n->cfg.peer.port,
		      n->cfg.checkpoint_interval_ms, threads,
		      colo_ram_tracking_reason(n->ram));
	uv_timer_start(&p->reconnect, try_connect, 0, 0);
	*out = p;
	return 0;
fail:
	colo_primary_free(p);
	return r;
}

void colo_primary_free(struct colo_primary *p)
{
	if (!p)
		return;
	for (size_t b = 0; p->shadows && b < p->nblocks; b++)
		colo_ram_shadow_free(&p->shadows[b]);
	free(p->shadows);
	free(p->blocks);
	colo_ram_stage_free(&p->stage);
	colo_ram_encoder_free(p->enc);
	if (p->hb)
		colo_hb_stop(p->hb);
	if (p->tick_fd >= 0)
		close(p->tick_fd);      /* its poll handle was closed by eng_stop */
	free(p);
}
