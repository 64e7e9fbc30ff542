/*
 * image_load.c: reading streams into an image (see image.h):
 * colo_image_load_full() and colo_image_apply() (with pages decoded
 * already: colo_image_apply_given()).
 *
 * A full stream is read by the stream reader with two payload handlers:
 * RAM records, decoded straight into the image's blocks, and device
 * payloads, kept as raw bytes and sized by the caller's sizer, else by the
 * vmdesc found first at the end of the stream (as tools/dump.c does).
 *
 * A checkpoint is two streams (docs/protocol.md).  The device stream is read
 * by the stream reader too (no header, no vmdesc), each payload sized by the
 * sizer, else by the image's copy of that device.  The RAM stream is a PART/END section of the
 * RAM section whose START came in the full stream, which a fresh stream
 * reader cannot place (it knows no section ids), so it is framed here and
 * its records are read by ramfmt's reader with the image's blocks as the
 * MEM_SIZE table.  Both are checked whole, and the checksum of
 * colo/checkpoint with them, before the image changes.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "colomsg.h"
#include "image.h"
#include "image_int.h"
#include "pagecodec.h"
#include "stream.h"
#include "vmstate.h"

#define PAGE COLO_PAGE_SIZE

/* Bad input is -EINVAL whatever the parser called it (image.h). */
static int input_error(struct colo_err *err, int r)
{
	if (r == -ENOMEM)
		return r;
	if (colo_err_isset(err))
		err->code = EINVAL;
	else
		colo_err_set(err, EINVAL, "invalid input");
	return -EINVAL;
}

/* ---- reading streams ---- */

struct pending {
	size_t dev;                       /* index in img->devs */
	uint64_t offset;                  /* of its payload in the device stream */
	size_t len;                       /* of its payload */
	uint8_t *fresh;                   /* its new payload buffer, if resized */
};

struct loader {
	struct colo_image *img;
	struct colo_stream_reader *r;
	struct colo_ram_reader rr;
	struct colo_in *ram_in;           /* where the RAM record being read is */
	const uint8_t *data;              /* the stream the reader reads, whole */
	size_t len;
	const struct colo_image_sizer *sz;
	bool checkpoint;
	bool apply_pages;                 /* or only check them */
	/* pages decoded already (colo_image_apply_given), or NULL */
	const struct colo_image_given *given;
	size_t *given_map;                /* its block index: the image's */
	size_t given_next;                /* where to look for the next one */
	bool given_off;                   /* one was missing: decode the rest */
	bool have_mem_size;
	/* a full stream's vmdesc, found from its end */
	struct colo_vmdesc *vd;
	bool vd_found, vd_seen, vd_used;
	size_t vd_at;
	struct colo_err vd_err;
	/* the device section being read */
	struct colo_image_device *cur;    /* full stream: payload goes here */
	size_t cur_bytes;
	const char *sized_by;
	/* a checkpoint's device stream */
	struct pending *pend;
	size_t npend;
	struct colo_ckpt_info info;
	bool have_info;
	uint64_t info_offset;
};

/* ---- pages decoded already ---- */

/* Check the pages given against the image, and map their blocks to the
 * image's (l->given_map). */
static int given_check(struct loader *l, const struct colo_image_given *g,
		       struct colo_err *err)
{
	struct colo_image *img = l->img;
	size_t *map;
	int r = 0;

	map = l->given_map = malloc((g->nnames ? g->nnames : 1) * sizeof(*map));
	if (!map)
		return colo_err_set(err, ENOMEM, "out of memory");
	for (size_t k = 0; k < g->nnames; k++) {
		map[k] = SIZE_MAX;
		for (size_t b = 0; b < img->nblocks; b++)
			if (strcmp(img->blocks[b].name, g->names[k]) == 0)
				map[k] = b;
	}
	for (size_t i = 0; i < g->n && !r; i++) {
		uint32_t k = g->refs[i].block, pg = g->refs[i].page;
		size_t b = k < g->nnames ? map[k] : SIZE_MAX;

		if (b == SIZE_MAX)
			r = colo_err_set(err, EINVAL, "decoded page %zu: block %" PRIu32 " (%s) "
					 "is not a block of the image", i, k,
					 k < g->nnames ? g->names[k] : "no such block");
		else if ((uint64_t)pg >= img->blocks[b].length / PAGE)
			r = colo_err_set(err, EINVAL, "decoded page %zu: page %" PRIu32 " is "
					 "past the end of block '%s' (%" PRIu64 " pages)", i,
					 pg, img->blocks[b].name, img->blocks[b].length / PAGE);
	}
	if (r == 0)
		l->given = g;
	return r;
}

/*
 * The page given for this record: the next one of its page, looking on
 * from the last one found (the pages are in the records' order; pages
 * without a record in between are skipped).  None: NULL, and the records
 * that follow are decoded (a page given and not found would otherwise
 * cost a look through all of them each time).
 */
static const uint8_t *given_find(struct loader *l, const struct colo_ram_page *p)
{
	const struct colo_image_given *g = l->given;
	uint64_t pg = p->offset / PAGE;

	if (l->given_off)
		return NULL;
	for (size_t k = l->given_next; k < g->n; k++)
		if (g->refs[k].page == pg && l->given_map[g->refs[k].block] == p->block_index) {
			l->given_next = k + 1;
			return g->data + k * PAGE;
		}
	l->given_off = true;
	return NULL;
}

static int on_mem_size(void *ud, const struct colo_ram_block_info *info, size_t n,
		       uint64_t total, struct colo_err *err)
{
	struct loader *l = ud;
	struct colo_image *img = l->img;
	uint64_t at = l->ram_in->off + l->ram_in->mark;

	(void)total;
	if (l->checkpoint)
		return colo_err_set(err, EINVAL, "MEM_SIZE at offset %" PRIu64 " inside a "
				    "checkpoint", at);
	if (l->have_mem_size)
		return colo_err_set(err, EINVAL, "MEM_SIZE at offset %" PRIu64 ": the "
				    "stream listed its RAM blocks already", at);
	l->have_mem_size = true;
	img->blocks = calloc(n ? n : 1, sizeof(*img->blocks));
	if (!img->blocks)
		return colo_err_set(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		int r = colo__image_block_alloc(&img->blocks[i], info[i].name, info[i].length, err);

		if (r) {
			colo_err_prefix(err, "MEM_SIZE at offset %" PRIu64, at);
			return r;
		}
		img->nblocks = i + 1;
	}
	return 0;
}

/* Offsets and block indexes were checked by the record reader. */
static int on_page(void *ud, const struct colo_ram_page *p, struct colo_err *err)
{
	struct loader *l = ud;
	struct colo_image_block *b = &l->img->blocks[p->block_index];
	const uint8_t *src;
	int r;

	if (!l->apply_pages)
		return 0;
	if (l->given && colo_image_worth_giving(p->kind) && (src = given_find(l, p)))
		memcpy(b->data + p->offset, src, PAGE);
	else if ((r = colo_ram_page_apply(p, b->data, colo_page_codecs, err)) != 0)
		return r;
	colo__image_mark_touched(b, p->offset / PAGE);
	l->img->pages[p->kind]++;
	return 0;
}

static void loader_init(struct loader *l, struct colo_image *img, const void *data,
			size_t len, const struct colo_image_sizer *sz)
{
	struct colo_ram_sink sink = { on_mem_size, on_page, NULL };

	memset(l, 0, sizeof(*l));
	l->img = img;
	l->data = data;
	l->len = len;
	l->sz = sz;
	l->apply_pages = true;
	sink.ud = l;
	colo_ram_reader_init(&l->rr, &sink, COLO_PAGE_KINDS_ALL);
	colo_err_clear(&l->vd_err);
}

static void loader_free(struct loader *l)
{
	colo_stream_reader_free(l->r);
	colo_ram_reader_free(&l->rr);
	colo_vmdesc_free(l->vd);
	for (size_t k = 0; k < l->npend; k++)
		free(l->pend[k].fresh);
	free(l->pend);
	free(l->given_map);
}

static int ram_payload(void *ctx, const struct colo_section_info *s,
		       struct colo_in *in, struct colo_err *err)
{
	struct loader *l = ctx;

	l->ram_in = in;
	return colo_ram_reader_payload(&l->rr, s, in, err);
}

/*
 * Nothing but the vmdesc (or the image) sizes a device payload: when the
 * stream has footers, the section's footer must follow right there, or
 * the size is a lie.  The stream reader checks the footer again; this is
 * for a message that says what is wrong.
 */
static int check_footer(struct loader *l, const struct colo_section_info *s,
			struct colo_in *in, struct colo_err *err)
{
	int footers = colo_stream_reader_footers(l->r);
	uint8_t b[5];

	if (footers == 0)
		return 0;
	for (size_t i = 0; i < sizeof(b); i++) {
		int r = colo_in_peek(in, i, &b[i]);

		if (r == -ENODATA)
			return 0;     /* the reader says where the stream is cut */
		if (r)
			return r;
		if (i == 0 && b[0] != COLO_SEC_FOOTER) {
			/* A full stream may have no footers (the reader decides);
			 * a checkpoint's device stream is colo's: it has them. */
			if (footers < 0 && !l->checkpoint)
				return 0;
			goto lie;
		}
	}
	if (colo_load_be32(b + 1) == s->section_id)
		return 0;
lie:
	return colo_err_set(err, EINVAL, "device '%s' instance %" PRIu32 " (section %"
			    PRIu32 " at offset %" PRIu64 "): its payload is not the %zu "
			    "bytes %s: no footer at offset %" PRIu64, s->idstr,
			    s->instance_id, s->section_id, s->offset, l->cur_bytes,
			    l->sized_by, colo_in_offset(in));
}

static int raw_payload(void *ctx, const struct colo_section_info *s,
		       struct colo_in *in, struct colo_err *err)
{
	struct loader *l = ctx;
	const uint8_t *p;
	int r;

	if ((r = colo_in_bytes(in, &p, l->cur_bytes)) || (r = check_footer(l, s, in, err)))
		return r;
	if (l->cur && l->cur_bytes)
		memcpy(l->cur->payload, p, l->cur_bytes);
	return 0;
}

/*
 * The caller's sizer, for the section s: 0 with *bytes (and sized_by)
 * set, 1 when it does not know the device, else an error naming it.
 */
static int sizer_bytes(struct loader *l, const struct colo_section_info *s,
		       uint64_t *bytes, struct colo_err *err)
{
	size_t at = s->payload_offset < l->len ? (size_t)s->payload_offset : l->len;
	struct colo_err why;
	int r;

	if (!l->sz || !l->sz->size)
		return 1;
	colo_err_clear(&why);
	r = l->sz->size(l->sz->ud, s->idstr, s->instance_id, s->version_id, l->data + at,
			l->len - at, bytes, &why);
	if (r < 0)
		return colo_err_set(err, why.code ? why.code : EINVAL, "device '%s' instance %"
				    PRIu32 " (section %" PRIu32 " at offset %" PRIu64 "): %s",
				    s->idstr, s->instance_id, s->section_id, s->offset, why.msg);
	if (r == 0)
		l->sized_by = "measured";
	return r;
}

static int payload_fits(const struct loader *l, const struct colo_section_info *s,
			uint64_t bytes, struct colo_err *err)
{
	if (s->payload_offset <= l->len && bytes <= l->len - s->payload_offset)
		return 0;
	return colo_err_set(err, EINVAL, "device '%s' instance %" PRIu32 " (section %"
			    PRIu32 " at offset %" PRIu64 "): its payload, the %" PRIu64
			    " bytes %s, runs past the end of the stream at offset %zu",
			    s->idstr, s->instance_id, s->section_id, s->offset, bytes,
			    l->sized_by, l->len);
}

/* ---- full streams ---- */

static int load_config(void *ud, const struct colo_stream_config *c, uint64_t offset,
		       struct colo_err *err)
{
	struct loader *l = ud;

	(void)offset; (void)err;
	l->rr.ignore_shared = colo_stream_config_has_cap(c, "x-ignore-shared");
	snprintf(l->img->config, sizeof(l->img->config), "%s", c->name);
	return 0;
}

static int load_section(void *ud, const struct colo_section_info *s,
			struct colo_section_handler *h, struct colo_err *err)
{
	struct loader *l = ud;
	const struct colo_vmdesc_device *vdev;
	struct colo_image_device *d;
	uint64_t bytes = 0;
	int r;

	if (s->type != COLO_SEC_FULL) {
		/* Anything else is refused by the reader as unknown. */
		if (strcmp(s->idstr, COLO_RAM_IDSTR) == 0 && s->instance_id == 0) {
			if (s->type == COLO_SEC_START)
				l->img->ram_section_id = s->section_id;
			h->payload = ram_payload;
			h->ctx = l;
		}
		return 0;
	}
	if (colo__image_find_device(l->img, s->idstr, s->instance_id) >= 0)
		return colo_err_set(err, EINVAL, "device '%s' instance %" PRIu32 " appears "
				    "twice (section %" PRIu32 " at offset %" PRIu64 ")",
				    s->idstr, s->instance_id, s->section_id, s->offset);
	r = sizer_bytes(l, s, &bytes, err);
	if (r < 0)
		return r;
	if (r == 1 && !l->vd && l->vd_found)
		return colo_err_set(err, EINVAL, "device '%s' instance %" PRIu32 " (section %"
				    PRIu32 " at offset %" PRIu64 ") cannot be sized: the "
				    "vmdesc at offset %zu is invalid: %s", s->idstr,
				    s->instance_id, s->section_id, s->offset, l->vd_at,
				    l->vd_err.msg);
	if (r == 1 && !l->vd)
		return colo_err_set(err, EINVAL, "device '%s' instance %" PRIu32 " (section %"
				    PRIu32 " at offset %" PRIu64 ") cannot be sized: the "
				    "stream has no vmdesc", s->idstr, s->instance_id,
				    s->section_id, s->offset);
	if (r == 1) {
		vdev = colo_vmdesc_find(l->vd, s->idstr, s->instance_id);
		if (!vdev)
			return colo_err_set(err, EINVAL, "device '%s' instance %" PRIu32
					    " (section %" PRIu32 " at offset %" PRIu64 ") is "
					    "not in the vmdesc", s->idstr, s->instance_id,
					    s->section_id, s->offset);
		bytes = vdev->desc.bytes;
		l->sized_by = "the vmdesc gives";
		l->vd_used = true;
	}
	if (bytes > SIZE_MAX / 2)
		return colo_err_set(err, EINVAL, "device '%s' instance %" PRIu32 " (section %"
				    PRIu32 " at offset %" PRIu64 "): %" PRIu64 " bytes",
				    s->idstr, s->instance_id, s->section_id, s->offset, bytes);
	if (payload_fits(l, s, bytes, err))
		return -err->code;
	if (!(d = colo__image_add_device(l->img, err)))
		return -ENOMEM;
	snprintf(d->idstr, sizeof(d->idstr), "%s", s->idstr);
	d->instance_id = s->instance_id;
	d->version = s->version_id;
	d->section_id = s->section_id;
	d->len = (size_t)bytes;
	d->touched = true;
	d->payload = malloc(d->len ? d->len : 1);
	if (!d->payload)
		return colo_err_set(err, ENOMEM, "out of memory for %zu bytes of device "
				    "'%s'", d->len, s->idstr);
	l->cur = d;
	l->cur_bytes = d->len;
	h->payload = raw_payload;
	h->ctx = l;
	return 0;
}

static int load_vmdesc(void *ud, const uint8_t *json, size_t len, uint64_t offset,
		       struct colo_err *err)
{
	struct loader *l = ud;
	struct colo_image *img = l->img;

	if (l->vd_found && offset == l->vd_at && !l->vd)
		return colo_err_set(err, EINVAL, "VMDESCRIPTION at offset %" PRIu64 ": %s",
				    offset, l->vd_err.msg);
	if (!l->vd || offset != l->vd_at) {
		/* Not the one found from the end: fine if nothing was sized by it. */
		if (l->vd_used)
			return colo_err_set(err, EINVAL, "devices were sized with bytes at "
					    "offset %zu that look like a vmdesc, but the "
					    "stream's VMDESCRIPTION is at offset %" PRIu64,
					    l->vd_at, offset);
		colo_vmdesc_free(l->vd);
		l->vd = NULL;
		if (colo_vmdesc_parse((const char *)json, len, &l->vd, err)) {
			colo_err_prefix(err, "VMDESCRIPTION at offset %" PRIu64, offset);
			return -EINVAL;
		}
		l->vd_at = offset;
	}
	img->vmdesc_json = malloc(len + 1);
	if (!img->vmdesc_json)
		return colo_err_set(err, ENOMEM, "out of memory");
	memcpy(img->vmdesc_json, json, len);
	img->vmdesc_json[len] = '\0';
	img->vmdesc_len = len;
	l->vd_seen = true;
	return 0;
}

static const struct colo_stream_ops load_ops = {
	.configuration = load_config,
	.section = load_section,
	.vmdesc = load_vmdesc,
};

static int reader_error(struct colo_stream_reader *r, const char *what,
			struct colo_err *err)
{
	int code = colo_stream_reader_errcode(r);

	colo_err_set(err, code ? code : EINVAL, "%s%s", what, colo_stream_reader_error(r));
	return -err->code;
}

int colo_image_load_full_sized(struct colo_image *img, const void *stream, size_t len,
			       const struct colo_image_sizer *sz, struct colo_err *err)
{
	const uint8_t *data = stream;
	struct colo_image tmp;
	struct loader l;
	size_t at;
	int r = 0;

	colo_image_init(&tmp);
	loader_init(&l, &tmp, stream, len, sz);
	if (len && colo_vmdesc_locate(data, len, &at) == 0) {
		l.vd_found = true;
		l.vd_at = at;
		/* colo_vmdesc_locate() checked that the length fits. */
		if (colo_vmdesc_parse((const char *)data + at + 5, colo_load_be32(data + at + 1),
				      &l.vd, &l.vd_err))
			l.vd = NULL;
	}
	l.r = colo_stream_reader_new(&load_ops, &l, 0);
	if (!l.r) {
		r = colo_err_set(err, ENOMEM, "out of memory");
		goto out;
	}
	if (colo_stream_reader_feed(l.r, stream, len) < 0 ||
	    colo_stream_reader_finish(l.r) < 0) {
		r = reader_error(l.r, "", err);
		goto out;
	}
	if (l.vd_used && !l.vd_seen) {
		r = colo_err_set(err, EINVAL, "the stream has no VMDESCRIPTION, but its "
				 "devices were sized with bytes at offset %zu that look "
				 "like one", l.vd_at);
		goto out;
	}
	if (l.vd_seen) {
		tmp.vmdesc = l.vd;
		l.vd = NULL;
	}
	tmp.sent = calloc(tmp.ndevs ? tmp.ndevs : 1, sizeof(*tmp.sent));
	if (!tmp.sent) {
		r = colo_err_set(err, ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < tmp.ndevs; i++)
		tmp.sent[i] = i;
	tmp.nsent = tmp.ndevs;
	tmp.serial = img->serial + 1;
	tmp.loaded = true;
	colo_image_free(img);
	*img = tmp;
	colo_image_init(&tmp);
out:
	loader_free(&l);
	colo_image_free(&tmp);
	return r ? input_error(err, r) : 0;
}

int colo_image_load_full(struct colo_image *img, const void *stream, size_t len,
			 struct colo_err *err)
{
	return colo_image_load_full_sized(img, stream, len, NULL, err);
}

/* ---- checkpoints ---- */

static int ckpt_payload(void *ctx, const struct colo_section_info *s,
			struct colo_in *in, struct colo_err *err)
{
	struct loader *l = ctx;
	int r;

	if (s->version_id > INT32_MAX)
		return colo_err_set(err, EINVAL, "%s at offset %" PRIu64 ": version %"
				    PRIu32 " out of range", COLO_CKPT_IDSTR, s->offset,
				    s->version_id);
	r = colo_vmstate_load(in, &colo_ckpt_info_vmstate, &l->info, (int)s->version_id,
			      err);
	if (r && r != -EAGAIN)
		colo_err_prefix(err, "%s at offset %" PRIu64, COLO_CKPT_IDSTR, s->offset);
	if (r == 0)
		l->have_info = true;
	return r;
}

static int dev_section(void *ud, const struct colo_section_info *s,
		       struct colo_section_handler *h, struct colo_err *err)
{
	struct loader *l = ud;
	struct colo_image_device *d;
	uint64_t bytes = 0;
	int i, r;

	if (s->type != COLO_SEC_FULL)
		return colo_err_set(err, EINVAL, "%s section %" PRIu32 " at offset %" PRIu64
				    " in a device stream",
				    colo_stream_section_type_name(s->type), s->section_id,
				    s->offset);
	if (l->have_info)
		return colo_err_set(err, EINVAL, "section '%s' at offset %" PRIu64
				    " after %s", s->idstr, s->offset, COLO_CKPT_IDSTR);
	if (strcmp(s->idstr, COLO_CKPT_IDSTR) == 0 && s->instance_id == 0) {
		l->info_offset = s->offset;
		h->payload = ckpt_payload;
		h->ctx = l;
		return 0;
	}
	i = colo__image_find_device(l->img, s->idstr, s->instance_id);
	if (i < 0)
		return colo_err_set(err, EINVAL, "device '%s' instance %" PRIu32 " (section %"
				    PRIu32 " at offset %" PRIu64 ") is not a device of "
				    "the image", s->idstr, s->instance_id, s->section_id,
				    s->offset);
	d = &l->img->devs[i];
	for (size_t k = 0; k < l->npend; k++)
		if (l->pend[k].dev == (size_t)i)
			return colo_err_set(err, EINVAL, "device '%s' instance %" PRIu32
					    " appears twice (section %" PRIu32 " at offset %"
					    PRIu64 ")", s->idstr, s->instance_id,
					    s->section_id, s->offset);
	if (s->version_id != d->version)
		return colo_err_set(err, EINVAL, "device '%s' instance %" PRIu32 " (section %"
				    PRIu32 " at offset %" PRIu64 ") has version %" PRIu32
				    ", the image's has %" PRIu32, s->idstr, s->instance_id,
				    s->section_id, s->offset, s->version_id, d->version);
	r = sizer_bytes(l, s, &bytes, err);
	if (r < 0)
		return r;
	if (r == 1) {
		bytes = d->len;
		l->sized_by = "the image holds";
	}
	if (payload_fits(l, s, bytes, err))
		return -err->code;
	l->pend[l->npend].dev = (size_t)i;
	l->pend[l->npend].offset = s->payload_offset;
	l->pend[l->npend].len = (size_t)bytes;
	if (bytes != d->len && !(l->pend[l->npend].fresh = malloc(bytes ? (size_t)bytes : 1)))
		return colo_err_set(err, ENOMEM, "out of memory for %" PRIu64 " bytes of "
				    "device '%s'", bytes, s->idstr);
	l->npend++;
	l->cur = NULL;
	l->cur_bytes = (size_t)bytes;
	h->payload = raw_payload;
	h->ctx = l;
	return 0;
}

static const struct colo_stream_ops dev_ops = { .section = dev_section };

static int ram_truncated(const struct colo_in *in, const struct colo_section_info *si,
			 struct colo_err *err)
{
	size_t more = in->need > in->len - in->mark ? in->need - (in->len - in->mark) : 1;

	return colo_err_set(err, EINVAL, "truncated: stream ends at offset %zu inside "
			    "%s section %" PRIu32 " at offset %" PRIu64 " (at least %zu "
			    "more byte%s needed)", in->len,
			    colo_stream_section_type_name(si->type), si->section_id,
			    si->offset, more, more == 1 ? "" : "s");
}

/*
 * The RAM stream of a checkpoint: PART/END sections of the image's RAM
 * section, then EOF (primary.c frame_ram writes one END section).  With
 * apply_pages false, only read: framing, block names, page offsets and
 * lengths are checked, nothing is decoded.
 */
static int ram_stream(struct loader *l, const uint8_t *p, size_t len,
		      struct colo_err *err)
{
	struct colo_image *img = l->img;
	struct colo_ram_sink sink = { on_mem_size, on_page, l };
	struct colo_section_info si;
	struct colo_in in;
	int r;

	colo_ram_reader_free(&l->rr);
	colo_ram_reader_init(&l->rr, &sink, COLO_PAGE_KINDS_ALL);
	l->rr.blocks = calloc(img->nblocks ? img->nblocks : 1, sizeof(*l->rr.blocks));
	if (!l->rr.blocks)
		return colo_err_set(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < img->nblocks; i++) {
		snprintf(l->rr.blocks[i].name, sizeof(l->rr.blocks[i].name), "%s",
			 img->blocks[i].name);
		l->rr.blocks[i].length = img->blocks[i].length;
	}
	l->rr.nblocks = img->nblocks;
	colo_in_init(&in, p, len, 0, true);
	l->ram_in = &in;
	for (;;) {
		uint64_t at = colo_in_offset(&in);
		uint32_t id;
		uint8_t t;

		colo_in_set_mark(&in);
		if (colo_in_u8(&in, &t))
			return colo_err_set(err, EINVAL, "stream ends at offset %" PRIu64
					    " without an EOF marker", at);
		if (t == COLO_SEC_EOF)
			break;
		memset(&si, 0, sizeof(si));
		si.type = t;
		si.offset = at;
		if (t != COLO_SEC_PART && t != COLO_SEC_END)
			return colo_err_set(err, EINVAL, "%s (0x%02x) at offset %" PRIu64
					    ": only RAM PART/END sections and EOF belong "
					    "here",
					    colo_stream_section_type_name(t), t, at);
		if (colo_in_be32(&in, &id))
			return ram_truncated(&in, &si, err);
		si.section_id = id;
		if (id != img->ram_section_id)
			return colo_err_set(err, EINVAL, "%s section at offset %" PRIu64
					    " is section %" PRIu32 ", the image's RAM "
					    "section is %" PRIu32,
					    colo_stream_section_type_name(t), at, id,
					    img->ram_section_id);
		snprintf(si.idstr, sizeof(si.idstr), "%s", COLO_RAM_IDSTR);
		si.version_id = COLO_RAM_SECTION_VERSION;
		si.payload_offset = colo_in_offset(&in);
		r = colo_ram_reader_payload(&l->rr, &si, &in, err);
		if (r == -EAGAIN)
			return ram_truncated(&in, &si, err);
		if (r)
			return r;
		/* colo always writes footers; QEMU can be told not to. */
		colo_in_set_mark(&in);
		if (colo_in_avail(&in) && in.p[in.pos] == COLO_SEC_FOOTER) {
			uint64_t fat = colo_in_offset(&in);

			in.pos++;
			if (colo_in_be32(&in, &id))
				return ram_truncated(&in, &si, err);
			if (id != si.section_id)
				return colo_err_set(err, EINVAL, "RAM section %" PRIu32 ": footer "
						    "at offset %" PRIu64 " names section %"
						    PRIu32, si.section_id, fat, id);
		}
	}
	if (colo_in_avail(&in))
		return colo_err_set(err, EINVAL, "trailing data at offset %" PRIu64
				    " after EOF",
				    colo_in_offset(&in));
	return 0;
}

int colo_image_apply_sized(struct colo_image *img, const void *ram, size_t ram_len,
			   const void *dev, size_t dev_len, const struct colo_image_sizer *sz,
			   struct colo_err *err)
{
	return colo_image_apply_given(img, ram, ram_len, dev, dev_len, sz, NULL, err);
}

int colo_image_apply_given(struct colo_image *img, const void *ram, size_t ram_len,
			   const void *dev, size_t dev_len, const struct colo_image_sizer *sz,
			   const struct colo_image_given *g, struct colo_err *err)
{
	const uint8_t *devb = dev;
	XXH3_state_t *h = NULL;
	struct loader l;
	size_t *sent;
	uint64_t sum;
	int r = 0;

	loader_init(&l, img, dev, dev_len, sz);
	l.checkpoint = true;
	if (g && g->n && (r = given_check(&l, g, err)) != 0)
		goto out_early;
	/* 1. The device stream, whole, before anything changes. */
	l.pend = calloc(img->ndevs ? img->ndevs : 1, sizeof(*l.pend));
	sent = calloc(img->ndevs ? img->ndevs : 1, sizeof(*sent));
	l.r = colo_stream_reader_new(&dev_ops, &l, COLO_SR_NO_HEADER | COLO_SR_NO_VMDESC);
	if (!l.pend || !l.r || !sent) {
		r = colo_err_set(err, ENOMEM, "out of memory");
		goto out;
	}
	if (colo_stream_reader_feed(l.r, dev, dev_len) < 0 ||
	    colo_stream_reader_finish(l.r) < 0) {
		r = reader_error(l.r, "checkpoint device stream: ", err);
		goto out;
	}
	if (!l.have_info) {
		r = colo_err_set(err, EINVAL, "checkpoint device stream: no %s section "
				 "before its EOF at offset %" PRIu64, COLO_CKPT_IDSTR,
				 colo_stream_reader_offset(l.r) - 1);
		goto out;
	}
	/* 2. The RAM stream, read but not decoded. */
	l.apply_pages = false;
	if ((r = ram_stream(&l, ram, ram_len, err))) {
		colo_err_prefix(err, "checkpoint RAM stream");
		goto out;
	}
	/* 3. The checksum covers both, up to colo/checkpoint (docs/protocol.md). */
	h = XXH3_createState();
	if (!h) {
		r = colo_err_set(err, ENOMEM, "out of memory");
		goto out;
	}
	XXH3_64bits_reset(h);
	XXH3_64bits_update(h, ram, ram_len);
	XXH3_64bits_update(h, dev, (size_t)l.info_offset);
	sum = XXH3_64bits_digest(h);
	if (sum != l.info.checksum) {
		r = colo_err_set(err, EINVAL, "checkpoint %" PRIu64 ": %s says checksum %016"
				 PRIx64 ", the bytes given hash to %016" PRIx64, l.info.seq,
				 COLO_CKPT_IDSTR, l.info.checksum, sum);
		goto out;
	}
	/* 4. Now change the image: pages, then devices. */
	img->serial++;
	img->loaded = false;
	for (size_t i = 0; i < img->nblocks; i++)
		memset(img->blocks[i].touched, 0,
		       colo__image_bitmap_words(img->blocks[i].length) * sizeof(uint64_t));
	for (size_t i = 0; i < img->ndevs; i++)
		img->devs[i].touched = false;
	memset(img->pages, 0, sizeof(img->pages));
	img->ckpt.valid = false;
	l.apply_pages = true;
	if ((r = ram_stream(&l, ram, ram_len, err))) {
		colo_err_prefix(err, "checkpoint RAM stream");
		goto out;
	}
	for (size_t k = 0; k < l.npend; k++) {
		struct pending *pd = &l.pend[k];
		struct colo_image_device *d = &img->devs[pd->dev];

		if (pd->fresh) {
			free(d->payload);
			d->payload = pd->fresh;
			d->len = pd->len;
			pd->fresh = NULL;
		}
		if (d->len)
			memcpy(d->payload, devb + pd->offset, d->len);
		d->touched = true;
		sent[k] = pd->dev;
	}
	free(img->sent);
	img->sent = sent;
	img->nsent = l.npend;
	sent = NULL;
	img->ckpt.valid = true;
	img->ckpt.seq = l.info.seq;
	img->ckpt.generation = l.info.generation;
	img->ckpt.wall_ns = l.info.time_ns;
	img->ckpt.pages = l.info.pages;
	img->ckpt.checksum = l.info.checksum;
out:
	free(sent);
	XXH3_freeState(h);
out_early:
	loader_free(&l);
	return r ? input_error(err, r) : 0;
}

int colo_image_apply(struct colo_image *img, const void *ram, size_t ram_len,
		     const void *dev, size_t dev_len, struct colo_err *err)
{
	return colo_image_apply_sized(img, ram, ram_len, dev, dev_len, NULL, err);
}
