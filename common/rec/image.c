/*
 * image.c: a guest's state as plain data (see image.h): its blocks and
 * devices, written out as a full stream, copied and compared.  Reading
 * streams into an image is image_load.c.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "image.h"
#include "image_int.h"
#include "savevm.h"
#include "stream.h"

#define PAGE COLO_PAGE_SIZE

/* ---- blocks and devices ---- */

static void block_free(struct colo_image_block *b)
{
	if (b->data)
		munmap(b->data, (size_t)b->length);
	free(b->touched);
	memset(b, 0, sizeof(*b));
}

/* Zero-filled memory, mmap'd: pages no record writes cost nothing. */
int colo__image_block_alloc(struct colo_image_block *b, const char *name, uint64_t length,
			    struct colo_err *err)
{
	void *p;

	memset(b, 0, sizeof(*b));
	if (length == 0 || length % PAGE || length > COLO_IMAGE_BLOCK_MAX)
		return colo_err_set(err, EINVAL, "RAM block '%s': %" PRIu64 " bytes is not "
				    "a positive multiple of %u up to %llu", name, length,
				    PAGE, COLO_IMAGE_BLOCK_MAX);
	p = mmap(NULL, (size_t)length, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return colo_err_set(err, ENOMEM, "cannot map %" PRIu64 " bytes for RAM "
				    "block '%s'", length, name);
	b->touched = calloc(colo__image_bitmap_words(length), sizeof(uint64_t));
	if (!b->touched) {
		munmap(p, (size_t)length);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	snprintf(b->name, sizeof(b->name), "%s", name);
	b->data = p;
	b->length = length;
	return 0;
}

struct colo_image_device *colo__image_add_device(struct colo_image *img,
						 struct colo_err *err)
{
	struct colo_image_device *d = realloc(img->devs, (img->ndevs + 1) * sizeof(*d));

	if (!d) {
		colo_err_set(err, ENOMEM, "out of memory");
		return NULL;
	}
	img->devs = d;
	d = &img->devs[img->ndevs++];
	memset(d, 0, sizeof(*d));
	return d;
}

int colo__image_find_device(const struct colo_image *img, const char *idstr,
			    uint32_t instance_id)
{
	for (size_t i = 0; i < img->ndevs; i++)
		if (img->devs[i].instance_id == instance_id &&
		    strcmp(img->devs[i].idstr, idstr) == 0)
			return (int)i;
	return -1;
}

void colo_image_init(struct colo_image *img)
{
	memset(img, 0, sizeof(*img));
}

void colo_image_free(struct colo_image *img)
{
	for (size_t i = 0; i < img->nblocks; i++)
		block_free(&img->blocks[i]);
	free(img->blocks);
	for (size_t i = 0; i < img->ndevs; i++)
		free(img->devs[i].payload);
	free(img->devs);
	free(img->vmdesc_json);
	colo_vmdesc_free(img->vmdesc);
	free(img->sent);
	memset(img, 0, sizeof(*img));
}

const struct colo_image_block *colo_image_block(const struct colo_image *img,
						const char *name)
{
	for (size_t i = 0; i < img->nblocks; i++)
		if (strcmp(img->blocks[i].name, name) == 0)
			return &img->blocks[i];
	return NULL;
}

const struct colo_image_device *colo_image_device(const struct colo_image *img,
						  const char *idstr,
						  uint32_t instance_id)
{
	int i = colo__image_find_device(img, idstr, instance_id);

	return i < 0 ? NULL : &img->devs[i];
}

uint64_t colo_image_block_hash(const struct colo_image_block *b)
{
	return XXH3_64bits(b->data, (size_t)b->length);
}

/* ---- writing ---- */

static int save_ram(const struct colo_image *img, struct colo_stream_writer *w,
		    uint32_t id, uint32_t kinds, struct colo_ram_memo *memo,
		    struct colo_err *err)
{
	struct colo_ram_block_info *infos = calloc(img->nblocks, sizeof(*infos));
	const uint8_t **hosts = calloc(img->nblocks, sizeof(*hosts));
	int r;

	if (!infos || !hosts) {
		free(infos);
		free(hosts);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < img->nblocks; i++) {
		snprintf(infos[i].name, sizeof(infos[i].name), "%s", img->blocks[i].name);
		infos[i].length = img->blocks[i].length;
		hosts[i] = img->blocks[i].data;
	}
	r = colo_savevm_write_ram_memo(w, id, infos, hosts, img->nblocks, kinds, memo, err);
	free(infos);
	free(hosts);
	return r;
}

static int save_full(const struct colo_image *img, struct colo_buf *out, uint32_t kinds,
		     bool colo, struct colo_ram_memo *memo, struct colo_err *err)
{
	struct colo_stream_writer w;
	struct colo_stream_config c;
	uint32_t next_id = img->ram_section_id, ram_id;
	int r = 0;

	/* Kept ids are written back; an image made otherwise gets fresh ones. */
	for (size_t i = 0; i < img->ndevs; i++)
		if (img->devs[i].section_id > next_id)
			next_id = img->devs[i].section_id;
	next_id++;
	ram_id = img->ram_section_id ? img->ram_section_id : next_id++;
	colo_sw_init(&w, out, false);
	colo_sw_header(&w);
	if (img->config[0]) {
		if ((r = colo_stream_config_init(&c, img->config, err)) ||
		    (r = colo_sw_configuration(&w, &c, err)))
			goto out;
	}
	if (colo)
		colo_sw_enable_colo(&w);
	if (img->nblocks && (r = save_ram(img, &w, ram_id, kinds, memo, err)))
		goto out;
	for (size_t i = 0; i < img->ndevs; i++) {
		const struct colo_image_device *d = &img->devs[i];

		r = colo_sw_device_raw(&w, d->section_id ? d->section_id : next_id++,
				       d->idstr, d->instance_id, d->version, d->payload,
				       d->len, err);
		if (r)
			goto out;
	}
	colo_sw_eof(&w);
	if (img->vmdesc_json)
		r = colo_sw_vmdesc_raw(&w, img->vmdesc_json, img->vmdesc_len, err);
	if (r == 0 && !colo_buf_ok(out))
		r = colo_err_set(err, ENOMEM, "out of memory writing the image");
out:
	colo_sw_free(&w);
	return r;
}

int colo_image_save_full_kinds(const struct colo_image *img, struct colo_buf *out,
			       uint32_t kinds, struct colo_err *err)
{
	return save_full(img, out, kinds, true, NULL, err);
}

int colo_image_save_plain(const struct colo_image *img, struct colo_buf *out,
			  struct colo_err *err)
{
	return save_full(img, out, COLO_PAGE_KINDS_QEMU, false, NULL, err);
}

#define FULL_KINDS (COLO_PAGE_KIND_BIT(COLO_PAGE_ZERO) | COLO_PAGE_KIND_BIT(COLO_PAGE_RAW) | \
		    COLO_PAGE_KIND_BIT(COLO_PAGE_LZ4))

int colo_image_save_full(const struct colo_image *img, struct colo_buf *out,
			 struct colo_err *err)
{
	return colo_image_save_full_kinds(img, out, FULL_KINDS, err);
}

/* ---- keyframes that encode only what changed ---- */

void colo_image_memo_init(struct colo_image_memo *m)
{
	memset(m, 0, sizeof(*m));
	colo_buf_init(&m->out[0]);
	colo_buf_init(&m->out[1]);
}

static void memo_forget_layout(struct colo_image_memo *m)
{
	for (size_t i = 0; i < m->nblocks; i++)
		free(m->changed[i]);
	free(m->changed);
	free(m->lengths);
	free(m->ent);
	m->changed = NULL;
	m->lengths = NULL;
	m->ent = NULL;
	m->nblocks = 0;
	m->valid = false;
}

void colo_image_memo_free(struct colo_image_memo *m)
{
	memo_forget_layout(m);
	colo_buf_free(&m->out[0]);
	colo_buf_free(&m->out[1]);
	memset(m, 0, sizeof(*m));
}

/* The memo sized for img's blocks; false when out of memory (it is empty). */
static bool memo_fit(struct colo_image_memo *m, const struct colo_image *img)
{
	uint64_t pages = 0;
	bool same = m->nblocks == img->nblocks && m->ent;

	for (size_t i = 0; same && i < img->nblocks; i++)
		same = m->lengths[i] == img->blocks[i].length;
	if (same)
		return true;
	memo_forget_layout(m);
	for (size_t i = 0; i < img->nblocks; i++)
		pages += img->blocks[i].length / PAGE;
	m->ent = calloc(pages ? (size_t)pages : 1, sizeof(*m->ent));
	m->changed = calloc(img->nblocks ? img->nblocks : 1, sizeof(*m->changed));
	m->lengths = calloc(img->nblocks ? img->nblocks : 1, sizeof(*m->lengths));
	if (!m->ent || !m->changed || !m->lengths) {
		memo_forget_layout(m);
		return false;
	}
	for (size_t i = 0; i < img->nblocks; i++) {
		m->changed[i] = calloc(colo__image_bitmap_words(img->blocks[i].length),
				       sizeof(uint64_t));
		if (!m->changed[i]) {
			m->nblocks = i;
			memo_forget_layout(m);
			return false;
		}
		m->lengths[i] = img->blocks[i].length;
		m->nblocks = i + 1;
	}
	return true;
}

void colo_image_memo_note(struct colo_image_memo *m, const struct colo_image *img)
{
	bool follows = !img->loaded && img->serial == m->serial + 1;

	m->serial = img->serial;
	if (!memo_fit(m, img) || !follows) {
		m->valid = false;
		return;
	}
	for (size_t i = 0; i < img->nblocks; i++) {
		const struct colo_image_block *b = &img->blocks[i];
		size_t words = colo__image_bitmap_words(b->length);

		for (size_t k = 0; k < words; k++)
			m->changed[i][k] |= b->touched[k];
	}
}

int colo_image_memo_save(const struct colo_image *img, struct colo_image_memo *m,
			 struct colo_err *err)
{
	struct colo_buf *out = &m->out[m->cur ^ 1];
	struct colo_ram_memo rm;
	int r;

	if (!memo_fit(m, img))
		return colo_err_set(err, ENOMEM, "out of memory");
	if (img->serial != m->serial)
		m->valid = false;       /* a change that was not noted */
	rm.prev = m->valid ? m->out[m->cur].data : NULL;
	rm.ent = m->ent;
	rm.changed = (const uint64_t *const *)m->changed;
	colo_buf_reset(out);
	m->valid = false;               /* the entries move to out as it is written */
	r = save_full(img, out, FULL_KINDS, true, &rm, err);
	if (r)
		return r;
	m->cur ^= 1;
	m->serial = img->serial;
	m->valid = true;
	for (size_t i = 0; i < m->nblocks; i++)
		memset(m->changed[i], 0,
		       colo__image_bitmap_words(m->lengths[i]) * sizeof(uint64_t));
	return 0;
}

/* ---- copies and comparisons ---- */

int colo_image_copy(struct colo_image *dst, const struct colo_image *src,
		    struct colo_err *err)
{
	int r = 0;

	colo_image_init(dst);
	dst->loaded = true;             /* a state no memo has seen */
	memcpy(dst->config, src->config, sizeof(dst->config));
	dst->ram_section_id = src->ram_section_id;
	dst->ckpt = src->ckpt;
	memcpy(dst->pages, src->pages, sizeof(dst->pages));
	dst->blocks = calloc(src->nblocks ? src->nblocks : 1, sizeof(*dst->blocks));
	dst->devs = calloc(src->ndevs ? src->ndevs : 1, sizeof(*dst->devs));
	dst->sent = calloc(src->nsent ? src->nsent : 1, sizeof(*dst->sent));
	if (!dst->blocks || !dst->devs || !dst->sent) {
		r = colo_err_set(err, ENOMEM, "out of memory");
		goto fail;
	}
	if (src->nsent)
		memcpy(dst->sent, src->sent, src->nsent * sizeof(*dst->sent));
	dst->nsent = src->nsent;
	for (size_t i = 0; i < src->nblocks; i++) {
		const struct colo_image_block *s = &src->blocks[i];
		struct colo_image_block *d = &dst->blocks[i];

		if ((r = colo__image_block_alloc(d, s->name, s->length, err)))
			goto fail;
		dst->nblocks = i + 1;
		memcpy(d->data, s->data, (size_t)s->length);
		memcpy(d->touched, s->touched, colo__image_bitmap_words(s->length) * sizeof(uint64_t));
	}
	for (size_t i = 0; i < src->ndevs; i++) {
		struct colo_image_device *d = &dst->devs[i];

		*d = src->devs[i];
		d->payload = malloc(d->len ? d->len : 1);
		if (!d->payload) {
			r = colo_err_set(err, ENOMEM, "out of memory");
			goto fail;
		}
		dst->ndevs = i + 1;
		if (d->len)
			memcpy(d->payload, src->devs[i].payload, d->len);
	}
	if (src->vmdesc_json) {
		dst->vmdesc_json = malloc(src->vmdesc_len + 1);
		if (!dst->vmdesc_json) {
			r = colo_err_set(err, ENOMEM, "out of memory");
			goto fail;
		}
		memcpy(dst->vmdesc_json, src->vmdesc_json, src->vmdesc_len + 1);
		dst->vmdesc_len = src->vmdesc_len;
	}
	if (src->vmdesc && src->vmdesc_json &&
	    (r = colo_vmdesc_parse(src->vmdesc_json, src->vmdesc_len, &dst->vmdesc, err)))
		goto fail;
	return 0;
fail:
	colo_image_free(dst);
	return r;
}

int colo_image_compare(const struct colo_image *a, const struct colo_image *b,
		       struct colo_err *why)
{
	if (strcmp(a->config, b->config) != 0) {
		colo_err_set(why, EIO, "configuration '%s' and '%s'", a->config, b->config);
		return 1;
	}
	if (a->nblocks != b->nblocks) {
		colo_err_set(why, EIO, "%zu and %zu RAM blocks", a->nblocks, b->nblocks);
		return 1;
	}
	for (size_t i = 0; i < a->nblocks; i++) {
		const struct colo_image_block *x = &a->blocks[i], *y = &b->blocks[i];

		if (strcmp(x->name, y->name) != 0 || x->length != y->length) {
			colo_err_set(why, EIO, "RAM block %zu: '%s' (%" PRIu64 " bytes) and "
				     "'%s' (%" PRIu64 " bytes)", i, x->name, x->length,
				     y->name, y->length);
			return 1;
		}
		for (uint64_t off = 0; off < x->length; off += PAGE) {
			if (memcmp(x->data + off, y->data + off, PAGE) != 0) {
				colo_err_set(why, EIO, "RAM block '%s': page at 0x%" PRIx64
					     " differs", x->name, off);
				return 1;
			}
		}
	}
	if (a->ndevs != b->ndevs) {
		colo_err_set(why, EIO, "%zu and %zu devices", a->ndevs, b->ndevs);
		return 1;
	}
	for (size_t i = 0; i < a->ndevs; i++) {
		const struct colo_image_device *x = &a->devs[i], *y = &b->devs[i];

		if (strcmp(x->idstr, y->idstr) != 0 || x->instance_id != y->instance_id ||
		    x->version != y->version) {
			colo_err_set(why, EIO, "device %zu: '%s' instance %" PRIu32 " version %"
				     PRIu32 " and '%s' instance %" PRIu32 " version %" PRIu32,
				     i, x->idstr, x->instance_id, x->version, y->idstr,
				     y->instance_id, y->version);
			return 1;
		}
		if (x->len != y->len || (x->len && memcmp(x->payload, y->payload, x->len))) {
			colo_err_set(why, EIO, "device '%s' instance %" PRIu32 ": payloads "
				     "differ (%zu and %zu bytes)", x->idstr, x->instance_id,
				     x->len, y->len);
			return 1;
		}
	}
	if (a->vmdesc_len != b->vmdesc_len || !a->vmdesc_json != !b->vmdesc_json ||
	    (a->vmdesc_json && memcmp(a->vmdesc_json, b->vmdesc_json, a->vmdesc_len))) {
		colo_err_set(why, EIO, "vmdescs differ (%zu and %zu bytes)", a->vmdesc_len,
			     b->vmdesc_len);
		return 1;
	}
	return 0;
}
