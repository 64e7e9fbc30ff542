/*
 * replay_state.c: reaching a checkpoint of a recording, and the pages
 * that differ between two states (see replay_int.h).
 *
 * Checkpoints are rebuilt here step by step rather than with
 * colo_recording_state(), so that verify goes through each segment once
 * (load its keyframe, apply every record after it: linear, not quadratic),
 * diff moves one state forward to the other when it can, and every error
 * names the record that failed.  A step is: read the record (its checksum
 * checked), then load it (keyframe) or apply it (checkpoint).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "replay_int.h"

/* ---- reaching a checkpoint ---- */

int replay_find_entry(const struct colo_recording *rec, uint64_t seq, size_t *at,
		      struct colo_err *err)
{
	const struct colo_rec_entry *e = colo_recording_find(rec, seq);
	uint64_t lo = UINT64_MAX, hi = 0;

	if (e) {
		*at = (size_t)(e - rec->e);
		return 0;
	}
	if (rec->n == 0)
		return colo_err_set(err, ENOENT, "no checkpoint %" PRIu64 ": the recording "
				    "holds none", seq);
	for (size_t i = 0; i < rec->n; i++) {
		lo = rec->e[i].seq < lo ? rec->e[i].seq : lo;
		hi = rec->e[i].seq > hi ? rec->e[i].seq : hi;
	}
	return colo_err_set(err, ENOENT, "no checkpoint %" PRIu64 " in the recording (it "
			    "holds %zu, seq %" PRIu64 " to %" PRIu64 ")", seq, rec->n, lo, hi);
}

/*
 * Where the first bad byte is in the segment.  A record is one stream (a
 * keyframe) or two (a checkpoint: RAM, then devices), and image errors
 * name "offset N" in the stream they read; else the record's start.
 */
static uint64_t bad_byte(const struct colo_rec_entry *x, const char *msg)
{
	const char *p = strstr(msg, "offset ");
	uint64_t base = x->offset, v;

	if (!p || p[7] < '0' || p[7] > '9')
		return x->offset;
	v = strtoull(p + 7, NULL, 10);
	if (!x->keyframe && strncmp(msg, "checkpoint device stream", 24) == 0)
		base += x->ram_length;
	return base - x->offset + v < x->length ? base + v : x->offset;
}

/*
 * "checkpoint S (seg-N at offset O): why" for a failure of record x; O is
 * the bad byte when the image said where it is (decoded), else the
 * record's start.
 */
int replay_record_error(const struct colo_rec_entry *x, const struct colo_err *why,
			bool decoded, struct colo_err *err)
{
	char own[64];
	const char *msg = why->msg;
	int n = snprintf(own, sizeof(own), "checkpoint %" PRIu64 ": ", x->seq);

	/* colo_recording_read() names the checkpoint already. */
	if (n > 0 && strncmp(msg, own, (size_t)n) == 0)
		msg += n;
	return colo_err_set(err, why->code ? why->code : EIO, "checkpoint %" PRIu64 " ("
			    COLO_REC_SEG_FMT " at offset %" PRIu64 "): %s", x->seq,
			    x->segment, decoded ? bad_byte(x, msg) : x->offset, msg);
}

/* Move img by record i: a keyframe replaces it, a checkpoint is applied. */
int replay_step(const struct colo_recording *rec, size_t i, struct colo_image *img,
		struct colo_err *err)
{
	const struct colo_rec_entry *x = &rec->e[i];
	struct colo_err why;
	uint8_t *data;
	size_t len;
	int r;

	colo_err_clear(&why);
	r = colo_recording_read(rec, x, &data, &len, &why);
	if (r != 0)
		return replay_record_error(x, &why, false, err);
	if (x->keyframe) {
		colo_image_free(img);
		colo_image_init(img);
	}
	r = colo_recording_step(x, img, data, len, &why);
	/* The index and the record must agree on which it is. */
	if (r == 0 && !x->keyframe && img->ckpt.valid && img->ckpt.seq != x->seq)
		r = colo_err_set(&why, EINVAL, "its colo/checkpoint section is of "
				 "checkpoint %" PRIu64, img->ckpt.seq);
	free(data);
	return r ? replay_record_error(x, &why, true, err) : 0;
}

/* The state at record `at`: its segment's keyframe and what follows. */
int replay_state_at(const struct colo_recording *rec, size_t at, struct colo_image *img,
		    struct colo_err *err)
{
	uint64_t total = 0, done = 0;

	colo_image_init(img);
	for (size_t i = rec->e[at].key; i <= at; i++)
		total += rec->e[i].length;
	for (size_t i = rec->e[at].key; i <= at; i++) {
		if (replay_step(rec, i, img, err) != 0)
			return -err->code;
		done += rec->e[i].length;
		if (rec->progress)
			rec->progress(rec->progress_ud, "rebuilding checkpoint", done, total);
	}
	return 0;
}

int colo_replay_state(const struct colo_recording *rec, uint64_t seq,
		      struct colo_image *img, const struct colo_rec_entry **entry,
		      struct colo_err *err)
{
	size_t at;

	colo_image_init(img);
	if (replay_find_entry(rec, seq, &at, err) != 0)
		return -err->code;
	*entry = &rec->e[at];
	colo_image_free(img);
	return replay_state_at(rec, at, img, err);
}

/*
 * Both states (initialised by the call, whatever happens).  In one
 * segment the later one is the earlier one moved forward, which reads
 * each record once.
 */
int replay_diff_states(const struct colo_recording *rec, size_t ia, size_t ib,
		       struct colo_image *a, struct colo_image *b, struct colo_err *err)
{
	size_t lo = ia < ib ? ia : ib, hi = ia < ib ? ib : ia;
	struct colo_image *first = ia < ib ? a : b, *second = ia < ib ? b : a;

	colo_image_init(a);
	colo_image_init(b);
	if (rec->e[lo].key != rec->e[hi].key) {
		colo_image_free(a);
		if (replay_state_at(rec, ia, a, err) != 0)
			return -err->code;
		colo_image_free(b);
		return replay_state_at(rec, ib, b, err);
	}
	colo_image_free(first);
	if (replay_state_at(rec, lo, first, err) != 0)
		return -err->code;
	colo_image_free(second);
	if (colo_image_copy(second, first, err) != 0)
		return -err->code;
	for (size_t i = lo + 1; i <= hi; i++)
		if (replay_step(rec, i, second, err) != 0)
			return -err->code;
	return 0;
}

/* A copy of src's devices only (no RAM), for comparing with later states. */
int replay_devices_copy(struct colo_image *dst, const struct colo_image *src,
			struct colo_err *err)
{
	struct colo_image view = *src;       /* shallow: the devices, no RAM */

	view.blocks = NULL;
	view.nblocks = 0;
	return colo_image_copy(dst, &view, err);
}

/* ---- pages ---- */

static bool bit_set(const uint64_t *bits, uint64_t i)
{
	return (bits[i / 64] >> (i % 64)) & 1;
}

/* The pages set in bits as merged ranges {"start","end","pages"}, offsets
 * in the block, end inclusive; *count gets how many pages. */
json_t *replay_ranges_json(const uint64_t *bits, uint64_t npages, uint64_t *count)
{
	json_t *a = json_array();
	uint64_t p = 0;

	*count = 0;
	while (p < npages) {
		uint64_t q;
		json_t *r;

		if (p % 64 == 0 && bits[p / 64] == 0) {
			p += 64;
			continue;
		}
		if (!bit_set(bits, p)) {
			p++;
			continue;
		}
		for (q = p; q < npages && bit_set(bits, q); q++)
			;
		r = json_object();
		json_object_set_new(r, "start", jint(p * COLO_PAGE_SIZE));
		json_object_set_new(r, "end", jint(q * COLO_PAGE_SIZE - 1));
		json_object_set_new(r, "pages", jint(q - p));
		json_array_append_new(a, r);
		*count += q - p;
		p = q;
	}
	return a;
}

/* Pages whose bytes differ between a and b (the first npages of each). */
uint64_t *replay_differing_pages(const struct colo_image_block *a,
				 const struct colo_image_block *b, uint64_t npages)
{
	uint64_t *bits = calloc(npages / 64 + 1, sizeof(*bits));

	if (!bits)
		return NULL;
	for (uint64_t p = 0; p < npages; p++)
		if (memcmp(a->data + p * COLO_PAGE_SIZE, b->data + p * COLO_PAGE_SIZE,
			   COLO_PAGE_SIZE) != 0)
			bits[p / 64] |= 1ull << (p % 64);
	return bits;
}
