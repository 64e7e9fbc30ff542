/*
 * load.c: what the primary sends, loaded (DESIGN.md §4).
 *
 * The full sync is a whole savevm stream read straight into the idle
 * guest: RAM pages into its blocks, devices into its structs.  A
 * checkpoint's RAM part (a RAM END section and EOF) is decoded into the RAM
 * cache, each page against its committed base; its device stream is
 * checked whole (every device, then colo/checkpoint with the XXH3-64 of
 * everything before it), loaded with a backup to undo it, and only then
 * acknowledged and committed, in one step on the loop: a failover sees the
 * old or the new checkpoint, never a mix.
 *
 * The stream reader is fed straight from the connection and says how much
 * it took; whatever follows its stream stays for the engine's next state.
 * Loop thread only.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "colo.pb-c.h"
#include "colomsg.h"
#include "image.h"
#include "log.h"
#include "pagecodec.h"
#include "record.h"
#include "secondary_int.h"

#define PAGE COLO_PAGE_SIZE

/* ---- RAM records: the sync into the guest, checkpoints into the cache ---- */

static int on_mem_size(void *ud, const struct colo_ram_block_info *info, size_t n,
		       uint64_t total, struct colo_err *err)
{
	struct colo_secondary *s = ud;
	struct colo_ram_block **map;

	(void)total;
	if (s->state != S_SYNC)
		return colo_err_set(err, EPROTO, "MEM_SIZE inside a checkpoint");
	map = calloc(n ? n : 1, sizeof(*map));
	if (!map)
		return colo_err_set(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		for (size_t b = 0; b < s->nblocks; b++)
			if (strcmp(s->blocks[b]->name, info[i].name) == 0)
				map[i] = s->blocks[b];
		if (!map[i] || map[i]->length != info[i].length) {
			free(map);
			return colo_err_set(err, EINVAL, "RAM block '%s' (%" PRIu64 " bytes) "
					    "of the primary is not a block of that size "
					    "here", info[i].name, info[i].length);
		}
	}
	free(s->map);
	s->map = map;
	s->nmap = n;
	return 0;
}

static int on_page(void *ud, const struct colo_ram_page *p, struct colo_err *err)
{
	struct colo_secondary *s = ud;
	struct colo_ram_block *b = s->map[p->block_index];
	uint8_t *dst;
	uint32_t bi;
	int r;

	if (s->state == S_SYNC) {
		s->sync_pages++;
		return colo_ram_page_apply(p, b->host, colo_page_codecs, err);
	}
	bi = ram_cache_block_index(&s->cache, b);
	dst = ram_cache_slot(&s->cache, bi, (uint32_t)(p->offset / PAGE), err);
	if (!dst)
		return -err->code;
	r = colo_ram_page_apply_to(p, dst, colo_page_codecs, err);
	/* A page that costs the recorder a whole decode is copied while it is
	 * in the CPU's cache. */
	if (r == 0 && s->rec_tee && !s->rec_pages_off && colo_image_worth_giving(p->kind)) {
		struct colo_err e2;

		colo_err_clear(&e2);
		if (colo_ram_stage_add(&s->rec_pages, bi, (uint32_t)(p->offset / PAGE), dst,
				       &e2) != 0) {
			s->rec_pages_off = true;
			colo_ram_stage_reset(&s->rec_pages);
		}
	}
	return r;
}

/* ---- stream reader ops (sync and checkpoint RAM streams) ---- */

static int on_configuration(void *ud, const struct colo_stream_config *c,
			    uint64_t offset, struct colo_err *err)
{
	struct colo_secondary *s = ud;

	return colo_savevm_check_config(&s->n->sv, c, offset, &s->rr.ignore_shared, err);
}

static int on_section(void *ud, const struct colo_section_info *si,
		      struct colo_section_handler *h, struct colo_err *err)
{
	struct colo_secondary *s = ud;

	if (si->type != COLO_SEC_FULL) {
		if (strcmp(si->idstr, COLO_RAM_IDSTR) == 0 && si->instance_id == 0) {
			h->payload = colo_ram_reader_payload;
			h->ctx = &s->rr;
		}
		return 0;
	}
	if (s->state != S_SYNC)
		return colo_err_set(err, EPROTO, "device section '%s' in the RAM part of "
				    "a checkpoint", si->idstr);
	s->cur_dev = colo_savevm_find_device(&s->n->sv, si->idstr, si->instance_id);
	if (s->cur_dev) {
		h->payload = colo_savevm_device_payload;
		h->ctx = s->cur_dev;
	}
	return 0;
}

static int on_command(void *ud, const struct colo_command_info *c, struct colo_err *err)
{
	struct colo_secondary *s = ud;

	(void)err;
	if (c->cmd == COLO_CMD_ENABLE_COLO)
		s->enable_colo = true;
	return 0;
}

static const struct colo_stream_ops stream_ops = {
	.configuration = on_configuration,
	.section = on_section,
	.command = on_command,
};

void secondary_load_reset(struct colo_secondary *s)
{
	struct colo_ram_sink sink = { on_mem_size, on_page, s };

	colo_stream_reader_free(s->reader);
	s->reader = NULL;
	colo_ram_reader_free(&s->rr);
	colo_ram_reader_init(&s->rr, &sink, s->encodings);
	free(s->map);
	s->map = NULL;
	s->nmap = 0;
	ram_cache_discard(&s->cache);
	s->rec_tee = false;
	colo_buf_reset(&s->rec_in);
	colo_ram_stage_reset(&s->rec_pages);
	colo_buf_reset(&s->dev);
}

int secondary_load_init(struct colo_secondary *s, struct colo_err *err)
{
	struct colo_ram_sink sink = { on_mem_size, on_page, s };
	int r;

	s->backup = calloc(s->n->sv.ndevs ? s->n->sv.ndevs : 1, sizeof(*s->backup));
	s->hash = XXH3_createState();
	if (!s->backup || !s->hash)
		return colo_err_set(err, ENOMEM, "out of memory");
	colo_buf_init(&s->dev);
	colo_buf_init(&s->rec_in);
	colo_ram_stage_init(&s->rec_pages);
	r = ram_cache_init(&s->cache, s->blocks, s->nblocks, err);
	if (r)
		return r;
	colo_ram_reader_init(&s->rr, &sink, s->encodings);
	return 0;
}

void secondary_load_free(struct colo_secondary *s)
{
	colo_stream_reader_free(s->reader);
	colo_ram_reader_free(&s->rr);
	free(s->map);
	ram_cache_free(&s->cache);
	colo_buf_free(&s->rec_in);
	colo_ram_stage_free(&s->rec_pages);
	for (size_t i = 0; s->backup && i < s->n->sv.ndevs; i++)
		colo_buf_free(&s->backup[i]);
	free(s->backup);
	colo_buf_free(&s->dev);
	if (s->hash)
		XXH3_freeState(s->hash);
}

int secondary_feed(struct colo_secondary *s, const uint8_t *p, size_t len, size_t *used)
{
	bool timed = s->state == S_CKPT_RAM;
	uint64_t t0 = timed ? colo_now_ns() : 0;
	ssize_t got = colo_stream_reader_feed(s->reader, p, len);

	if (timed)
		s->ckpt_decode_ns += colo_now_ns() - t0;
	*used = 0;
	if (got < 0)
		return -1;
	/* A checkpoint's checksum covers its RAM part; an authenticated sync's
	 * tag covers all of it. */
	if (s->state == S_CKPT_RAM || (s->state == S_SYNC && s->authed))
		XXH3_64bits_update(s->hash, p, (size_t)got);
	if (s->rec_tee)
		colo_buf_put(&s->rec_in, p, (size_t)got);
	*used = (size_t)got;
	return colo_stream_reader_done(s->reader) ? 1 : 0;
}

/* ---- the full sync ---- */

int secondary_sync_begin(struct colo_secondary *s)
{
	secondary_load_reset(s);
	s->reader = colo_stream_reader_new(&stream_ops, s, COLO_SR_TRAILING_OK);
	if (!s->reader)
		return -ENOMEM;
	s->enable_colo = false;
	s->sync_pages = 0;
	XXH3_64bits_reset(s->hash);
	s->sync_streamed = false;
	/* The sync overwrites the guest: until it completes we hold nothing. */
	s->have_committed = false;
	s->rec_tee = s->n->rec != NULL;
	return 0;
}

int secondary_sync_done(struct colo_secondary *s)
{
	struct colo_node *n = s->n;
	struct colo_err err;

	if (!s->enable_colo) {
		colo_repl_protocol_error(s->conn, "the full sync did not enable COLO");
		return -EPROTO;
	}
	colo_err_clear(&err);
	if (s->primary_gen != n->generation &&
	    colo_node_set_generation(n, s->primary_gen, &err) != 0) {
		colo_log_error("%s", err.msg);
		secondary_fail(s, "cannot persist the generation");
		return -EIO;
	}
	colo_hb_set_identity(s->hb, n->cfg.name, COLO__ROLE__ROLE_SECONDARY, n->generation);
	if (s->have_hb_peer)
		colo_hb_send_to(s->hb, (struct sockaddr *)&s->hb_peer,
				n->cfg.heartbeat_interval_ms, colo_node_stall_ms(n));
	if (secondary_cmp_synced(s, &err) != 0) {
		colo_log_error("%s", err.msg);
		secondary_fail(s, "cannot keep a copy of the sync");
		return -ENOMEM;
	}
	s->have_committed = true;
	s->last_committed = s->sync_seq;
	if (s->rec_tee && n->rec && colo_buf_ok(&s->rec_in)) {
		struct iovec v = { s->rec_in.data, s->rec_in.len };

		colo_recorder_full(n->rec, s->sync_seq, n->generation, 0, &v, 1);
	}
	s->rec_tee = false;
	colo_buf_free(&s->rec_in);
	colo_hb_watch(s->hb, s->primary_node, n->cfg.heartbeat_timeout_ms);
	s->watching = true;
	colo_log_info("full sync from %s loaded (%" PRIu64 " pages): protecting it",
		      s->primary_node, s->sync_pages);
	colo_repl_send_msg(s->conn, COLO_MSG_CHECKPOINT_READY);
	return 0;
}

/* ---- a checkpoint ---- */

void secondary_ckpt_begin(struct colo_secondary *s)
{
	s->ckpt_rx_start = s->n->stats.bytes_received;
	s->ckpt_decode_ns = 0;
	s->rec_tee = s->n->rec != NULL && !colo_recorder_wants_keyframe(s->n->rec);
	colo_buf_reset(&s->rec_in);
	colo_ram_stage_reset(&s->rec_pages);
	s->rec_pages_off = false;
	XXH3_64bits_reset(s->hash);
	colo_stream_reader_restart(s->reader, COLO_SR_NO_HEADER | COLO_SR_NO_VMDESC |
				   COLO_SR_TRAILING_OK);
}

struct devload {
	struct colo_secondary *s;
	struct colo_ckpt_info info;
	bool have_info;
	uint64_t info_offset;
	struct colo_savevm_device *dev;
};

static int ckpt_info_payload(void *ctx, const struct colo_section_info *si,
			     struct colo_in *in, struct colo_err *err)
{
	struct devload *d = ctx;
	int r;

	r = colo_vmstate_load(in, &colo_ckpt_info_vmstate, &d->info,
			      (int)si->version_id, err);
	if (r == 0)
		d->have_info = true;
	return r;
}

static int dev_section(void *ud, const struct colo_section_info *si,
		       struct colo_section_handler *h, struct colo_err *err)
{
	struct devload *d = ud;

	if (si->type != COLO_SEC_FULL)
		return colo_err_set(err, EPROTO, "%s section in a device stream",
				    colo_stream_section_type_name(si->type));
	if (d->have_info)
		return colo_err_set(err, EPROTO, "section '%s' after %s", si->idstr,
				    COLO_CKPT_IDSTR);
	if (strcmp(si->idstr, COLO_CKPT_IDSTR) == 0 && si->instance_id == 0) {
		d->info_offset = si->offset;
		h->payload = ckpt_info_payload;
		h->ctx = d;
		return 0;
	}
	d->dev = colo_savevm_find_device(&d->s->n->sv, si->idstr, si->instance_id);
	if (d->dev) {
		h->payload = colo_savevm_device_payload;
		h->ctx = d->dev;
	}
	return 0;
}

static const struct colo_stream_ops dev_ops = { .section = dev_section };

/* Save every device so a bad device stream can be undone. */
static int backup_devices(struct colo_secondary *s, struct colo_err *err)
{
	struct colo_savevm *sv = &s->n->sv;

	for (size_t i = 0; i < sv->ndevs; i++) {
		colo_buf_reset(&s->backup[i]);
		if (colo_vmstate_save(&s->backup[i], sv->devs[i].vmsd, sv->devs[i].opaque,
				      NULL, err))
			return -err->code;
	}
	return 0;
}

static void restore_devices(struct colo_secondary *s)
{
	struct colo_savevm *sv = &s->n->sv;

	for (size_t i = 0; i < sv->ndevs; i++) {
		struct colo_in in;
		struct colo_err err;

		colo_err_clear(&err);
		colo_in_init(&in, s->backup[i].data, s->backup[i].len, 0, true);
		colo_vmstate_load(&in, sv->devs[i].vmsd, sv->devs[i].opaque,
				  sv->devs[i].vmsd->version_id, &err);
	}
}

/*
 * Hand the checkpoint just committed to the recording: the bytes as they
 * arrived, or, when the recording has no state to start from yet, the whole
 * committed state as its first keyframe.
 */
static void record_committed(struct colo_secondary *s, const struct colo_ckpt_info *info)
{
	struct colo_node *n = s->n;
	struct colo_err err;

	if (!n->rec) {
		s->rec_tee = false;
		return;
	}
	if (colo_recorder_wants_keyframe(n->rec)) {
		struct colo_buf full;

		colo_buf_init(&full);
		colo_err_clear(&err);
		if (colo_node_snapshot(n, &full, &err) == 0) {
			struct iovec v = { full.data, full.len };

			colo_recorder_full(n->rec, info->seq, n->generation, info->time_ns, &v, 1);
		} else {
			colo_log_error("recording: %s", err.msg);
		}
		colo_buf_free(&full);
	} else if (s->rec_tee && colo_buf_ok(&s->rec_in)) {
		struct iovec ram = { s->rec_in.data, s->rec_in.len };
		struct iovec dev = { s->dev.data, s->dev.len };

		if (s->rec_pages_off)
			colo_recorder_checkpoint(n->rec, info->seq, n->generation, info->time_ns,
						 &ram, 1, &dev, 1);
		else
			colo_recorder_checkpoint_decoded(n->rec, info->seq, n->generation,
							 info->time_ns, &ram, 1, &dev, 1,
							 &s->rec_pages, s->blocks, s->nblocks);
	}
	s->rec_tee = false;
	colo_buf_reset(&s->rec_in);
	colo_ram_stage_reset(&s->rec_pages);
}

/* Load the device stream into the guest's devices; the info section out. */
static int load_devices(struct colo_secondary *s, struct devload *d, struct colo_err *err)
{
	struct colo_stream_reader *r;
	int rc;

	memset(d, 0, sizeof(*d));
	d->s = s;
	r = colo_stream_reader_new(&dev_ops, d, COLO_SR_NO_HEADER | COLO_SR_NO_VMDESC);
	if (!r)
		return colo_err_set(err, ENOMEM, "out of memory");
	rc = (int)colo_stream_reader_feed(r, s->dev.data, s->dev.len);
	if (rc >= 0)
		rc = colo_stream_reader_finish(r);
	if (rc < 0)
		colo_err_set(err, EPROTO, "%s", colo_stream_reader_error(r));
	else if (!d->have_info)
		rc = colo_err_set(err, EPROTO, "no " COLO_CKPT_IDSTR " section");
	colo_stream_reader_free(r);
	return rc < 0 ? rc : 0;
}

int secondary_ckpt_done(struct colo_secondary *s)
{
	struct colo_node *n = s->n;
	struct devload d;
	struct colo_err err;
	uint64_t sum, t0 = colo_now_ns(), t1;

	colo_err_clear(&err);
	if (backup_devices(s, &err)) {
		colo_log_error("checkpoint: %s", err.msg);
		secondary_fail(s, "cannot back up devices");
		return -EIO;
	}
	if (load_devices(s, &d, &err) != 0) {
		restore_devices(s);
		colo_repl_protocol_error(s->conn, "checkpoint device stream: %s", err.msg);
		return -EPROTO;
	}
	XXH3_64bits_update(s->hash, s->dev.data, d.info_offset);
	sum = XXH3_64bits_digest(s->hash);
	if (sum != d.info.checksum || d.info.generation != s->primary_gen ||
	    d.info.seq != s->last_committed + 1) {
		restore_devices(s);
		colo_repl_protocol_error(s->conn, "checkpoint %" PRIu64 " refused: the primary's "
					 "checksum %016" PRIx64 ", %016" PRIx64 " over what "
					 "arrived, generation %" PRIu64 " (expected %" PRIu64
					 "), sequence expected %" PRIu64, d.info.seq,
					 d.info.checksum, sum, d.info.generation, s->primary_gen,
					 s->last_committed + 1);
		return -EPROTO;
	}
	if (s->authed && !colo_ckpt_tag_ok(s->session.ckpt, 'C', d.info.generation,
					   d.info.seq, sum, s->tag)) {
		restore_devices(s);
		colo_repl_protocol_error(s->conn, "checkpoint %" PRIu64 " refused: its tag "
					 "does not check (altered on the way?)", d.info.seq);
		return -EPROTO;
	}
	/* From here on we commit this checkpoint before any promotion. */
	colo_repl_send_msg(s->conn, COLO_MSG_VMSTATE_RECEIVED);
	t1 = colo_now_ns();
	ram_cache_commit(&s->cache);
	s->last_committed = d.info.seq;
	secondary_cmp_committed(s);
	/* A recording's keyframe is taken here, before the running copy (compare
	 * mode) moves on from the checkpoint. */
	record_committed(s, &d.info);
	colo_hb_set_committed(s->hb, s->last_committed);
	n->stats.checkpoints++;
	colo_stats_checkpoint(&n->stats, colo_now_ns(), d.info.pages,
			      n->stats.bytes_received - s->ckpt_rx_start);
	colo_repl_send_msg(s->conn, COLO_MSG_VMSTATE_LOADED);
	colo_stats_phase(&n->stats, COLO_PHASE_DECODE, s->ckpt_decode_ns);
	colo_stats_phase(&n->stats, COLO_PHASE_LOAD, t1 - t0);
	colo_stats_phase(&n->stats, COLO_PHASE_COMMIT, colo_now_ns() - t1);
	colo_buf_reset(&s->dev);
	/* Compare mode: what waited for this checkpoint runs (a unit the guest
	 * cannot read closes the connection). */
	secondary_cmp_run_queued(s);
	return s->conn ? 0 : -EPROTO;
}
