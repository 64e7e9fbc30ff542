/*
 * savevm.c: full save and load of a guest's sections (see savevm.h).
 */
#include "config.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "pagecodec.h"
#include "ramenc.h"
#include "savevm.h"

int colo_savevm_init(struct colo_savevm *sv, const char *machine, struct colo_err *err)
{
	memset(sv, 0, sizeof(*sv));
	/*
	 * QEMU finds the owner of a PART/END section by the id its START
	 * carried, and every entry whose START it has not read yet still has
	 * id 0: a RAM section with id 0 would be taken for the first device.
	 */
	sv->next_section_id = 1;
	return colo_stream_config_init(&sv->config, machine, err);
}

void colo_savevm_free(struct colo_savevm *sv)
{
	free(sv->devs);
	free(sv->blocks);
	memset(sv, 0, sizeof(*sv));
}

struct colo_savevm_block *colo_savevm_find_block(struct colo_savevm *sv,
						 const char *name)
{
	for (size_t i = 0; i < sv->nblocks; i++)
		if (strcmp(sv->blocks[i].info.name, name) == 0)
			return &sv->blocks[i];
	return NULL;
}

int colo_savevm_add_ram(struct colo_savevm *sv, const char *name, void *host,
			uint64_t length, struct colo_err *err)
{
	struct colo_savevm_block *b;
	size_t len = strlen(name);

	if (len == 0 || len > COLO_IDSTR_MAX)
		return colo_err_set(err, EINVAL, "RAM block name must be 1 to %d bytes",
				    COLO_IDSTR_MAX);
	if (length == 0 || length % COLO_PAGE_SIZE)
		return colo_err_set(err, EINVAL, "RAM block '%s': length %" PRIu64
				    " is not a positive multiple of %u", name, length,
				    COLO_PAGE_SIZE);
	if (colo_savevm_find_block(sv, name))
		return colo_err_set(err, EEXIST, "RAM block '%s' is registered twice", name);
	if (sv->nblocks >= COLO_RAM_BLOCKS_MAX)
		return colo_err_set(err, E2BIG, "more than %d RAM blocks", COLO_RAM_BLOCKS_MAX);
	b = realloc(sv->blocks, (sv->nblocks + 1) * sizeof(*b));
	if (!b)
		return colo_err_set(err, ENOMEM, "out of memory");
	sv->blocks = b;
	b = &sv->blocks[sv->nblocks++];
	memset(b, 0, sizeof(*b));
	memcpy(b->info.name, name, len + 1);
	b->info.length = length;
	b->host = host;
	if (sv->nblocks == 1)
		sv->ram_section_id = sv->next_section_id++;
	return 0;
}

int colo_savevm_add_device(struct colo_savevm *sv, const char *idstr,
			   uint32_t instance_id, const struct colo_vmstate_desc *vmsd,
			   void *opaque, struct colo_err *err)
{
	struct colo_savevm_device *d;
	size_t len = strlen(idstr);

	if (len == 0 || len > COLO_IDSTR_MAX)
		return colo_err_set(err, EINVAL, "device name must be 1 to %d bytes",
				    COLO_IDSTR_MAX);
	for (size_t i = 0; i < sv->ndevs; i++)
		if (sv->devs[i].instance_id == instance_id &&
		    strcmp(sv->devs[i].idstr, idstr) == 0)
			return colo_err_set(err, EEXIST, "device '%s' instance %" PRIu32
					    " is registered twice", idstr, instance_id);
	d = realloc(sv->devs, (sv->ndevs + 1) * sizeof(*d));
	if (!d)
		return colo_err_set(err, ENOMEM, "out of memory");
	sv->devs = d;
	d = &sv->devs[sv->ndevs++];
	memset(d, 0, sizeof(*d));
	memcpy(d->idstr, idstr, len + 1);
	d->instance_id = instance_id;
	d->section_id = sv->next_section_id++;
	d->vmsd = vmsd;
	d->opaque = opaque;
	return 0;
}

/*
 * A memo entry: the offset of an LZ4 page's bytes in its output (bits 63..16),
 * its kind (15..13) and its LZ4 length (12..0, at most COLO_PAGE_SIZE - 3).
 */
#define MEMO_ENT(off, kind, len) (((uint64_t)(off) << 16) | ((uint64_t)(kind) << 13) | (len))
#define MEMO_OFF(e) ((size_t)((e) >> 16))
#define MEMO_KIND(e) ((enum colo_page_kind)(((e) >> 13) & 7))
#define MEMO_LEN(e) ((size_t)((e) & 0x1fff))

/* One page as a full save writes it: its record, and its memo entry in *ent. */
static int put_page(struct colo_ram_writer *rw, const char *block, uint64_t off,
		    const uint8_t *page, uint32_t kinds, uint64_t *ent, struct colo_err *err)
{
	uint8_t enc[COLO_PAGE_SIZE];
	size_t len = 0;
	int r;

	if ((kinds & COLO_PAGE_KIND_BIT(COLO_PAGE_ZERO)) && colo_page_is_zero(page)) {
		colo_ram_put_zero(rw, block, off, 0);
		*ent = MEMO_ENT(0, COLO_PAGE_ZERO, 0);
	} else if ((kinds & COLO_PAGE_KIND_BIT(COLO_PAGE_LZ4)) &&
		   /* be16 length + data must beat 4096 bytes */
		   (len = colo_lz4_encode(page, enc, COLO_PAGE_SIZE - 3)) > 0) {
		r = colo_ram_put_encoded(rw, block, off, COLO_PAGE_LZ4, enc, len, err);
		if (r)
			return r;
		*ent = MEMO_ENT(rw->out->len - len, COLO_PAGE_LZ4, len);
	} else {
		colo_ram_put_raw(rw, block, off, page);
		*ent = MEMO_ENT(0, COLO_PAGE_RAW, 0);
	}
	return 0;
}

/* A page unchanged since the memo's output, written as it was there. */
static int put_memo_page(struct colo_ram_writer *rw, const char *block, uint64_t off,
			 const uint8_t *page, const uint8_t *prev, uint64_t *ent,
			 struct colo_err *err)
{
	size_t len = MEMO_LEN(*ent);
	int r;

	switch (MEMO_KIND(*ent)) {
	case COLO_PAGE_ZERO:
		colo_ram_put_zero(rw, block, off, 0);
		return 0;
	case COLO_PAGE_LZ4:
		r = colo_ram_put_encoded(rw, block, off, COLO_PAGE_LZ4, prev + MEMO_OFF(*ent),
					 len, err);
		if (r == 0)
			*ent = MEMO_ENT(rw->out->len - len, COLO_PAGE_LZ4, len);
		return r;
	default:
		colo_ram_put_raw(rw, block, off, page);
		return 0;
	}
}

int colo_savevm_write_ram_memo(struct colo_stream_writer *w, uint32_t section_id,
			       const struct colo_ram_block_info *blocks,
			       const uint8_t *const *hosts, size_t n, uint32_t kinds,
			       struct colo_ram_memo *memo, struct colo_err *err)
{
	struct colo_ram_writer rw;
	uint32_t in_part = 0;
	uint64_t at = 0, scratch;
	int r;

	colo_ram_writer_init(&rw, w->out);
	r = colo_sw_section_begin(w, COLO_SEC_START, section_id, COLO_RAM_IDSTR, 0,
				  COLO_RAM_SECTION_VERSION, err);
	if (r)
		return r;
	colo_ram_put_mem_size(&rw, blocks, n, false);
	colo_ram_put_eos(&rw);
	colo_sw_section_end(w);
	for (size_t i = 0; i < n; i++) {
		for (uint64_t off = 0; off < blocks[i].length; off += COLO_PAGE_SIZE, at++) {
			const uint8_t *page = hosts[i] + off;
			uint64_t pg = off / COLO_PAGE_SIZE;
			uint64_t *ent = memo ? &memo->ent[at] : &scratch;

			if (in_part == 0) {
				colo_sw_section_begin(w, COLO_SEC_PART, section_id, NULL, 0, 0, err);
				colo_ram_writer_section(&rw);
			}
			if (memo && memo->prev && !((memo->changed[i][pg / 64] >> (pg % 64)) & 1))
				r = put_memo_page(&rw, blocks[i].name, off, page, memo->prev, ent,
						  err);
			else
				r = put_page(&rw, blocks[i].name, off, page, kinds, ent, err);
			if (r)
				return r;
			if (++in_part == COLO_SAVEVM_PART_PAGES) {
				colo_ram_put_eos(&rw);
				colo_sw_section_end(w);
				in_part = 0;
			}
		}
	}
	if (in_part) {
		colo_ram_put_eos(&rw);
		colo_sw_section_end(w);
	}
	colo_sw_section_begin(w, COLO_SEC_END, section_id, NULL, 0, 0, err);
	colo_ram_put_eos(&rw);
	colo_sw_section_end(w);
	return 0;
}

int colo_savevm_write_ram(struct colo_stream_writer *w, uint32_t section_id,
			  const struct colo_ram_block_info *blocks, const uint8_t *const *hosts,
			  size_t n, uint32_t kinds, struct colo_err *err)
{
	return colo_savevm_write_ram_memo(w, section_id, blocks, hosts, n, kinds, NULL, err);
}

static int save_ram(struct colo_savevm *sv, struct colo_stream_writer *w,
		    struct colo_err *err)
{
	struct colo_ram_block_info *infos = calloc(sv->nblocks, sizeof(*infos));
	const uint8_t **hosts = calloc(sv->nblocks, sizeof(*hosts));
	int r;

	if (!infos || !hosts) {
		free(infos);
		free(hosts);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < sv->nblocks; i++) {
		infos[i] = sv->blocks[i].info;
		hosts[i] = sv->blocks[i].host;
	}
	/* QEMU's own kinds: zero pages as ZERO records, the rest raw. */
	r = colo_savevm_write_ram(w, sv->ram_section_id, infos, hosts, sv->nblocks,
				  COLO_PAGE_KIND_BIT(COLO_PAGE_ZERO), err);
	free(infos);
	free(hosts);
	return r;
}

int colo_savevm_save(struct colo_savevm *sv, struct colo_buf *out, unsigned flags,
		     struct colo_err *err)
{
	struct colo_stream_writer w;
	int r;

	colo_sw_init(&w, out, !(flags & COLO_SAVEVM_NO_VMDESC));
	colo_sw_header(&w);
	r = colo_sw_configuration(&w, &sv->config, err);
	if (r)
		goto out;
	if (flags & COLO_SAVEVM_ENABLE_COLO)
		colo_sw_enable_colo(&w);
	if (sv->nblocks && (r = save_ram(sv, &w, err)))
		goto out;
	for (size_t i = 0; i < sv->ndevs; i++) {
		const struct colo_savevm_device *d = &sv->devs[i];

		/* QEMU sends no section for a device whose needed() says no. */
		if (!colo_vmstate_needed(d->vmsd, d->opaque))
			continue;
		r = colo_sw_device(&w, d->section_id, d->idstr, d->instance_id,
				   d->vmsd, d->opaque, err);
		if (r)
			goto out;
	}
	colo_sw_eof(&w);
	if (!(flags & COLO_SAVEVM_NO_VMDESC))
		r = colo_sw_vmdesc(&w, err);
	if (r == 0 && !colo_buf_ok(out))
		r = colo_err_set(err, ENOMEM, "out of memory writing the stream");
out:
	colo_sw_free(&w);
	return r;
}

/* ---- loader ---- */

struct colo_savevm_loader {
	struct colo_savevm *sv;
	struct colo_stream_reader *reader;
	struct colo_ram_target *targets;    /* the registered blocks */
	struct colo_ram_applier applier;
	struct colo_savevm_device *cur;
	struct colo_savevm_load_info info;
};

int colo_savevm_check_config(const struct colo_savevm *sv,
			     const struct colo_stream_config *c, uint64_t offset,
			     bool *ignore_shared, struct colo_err *err)
{
	*ignore_shared = false;
	if (strcmp(c->name, sv->config.name) != 0)
		return colo_err_set(err, EINVAL, "configuration at offset %" PRIu64
				    ": machine type received is '%s' and local is '%s'",
				    offset, c->name, sv->config.name);
	if (c->has_page_bits && c->target_page_bits != 12)
		return colo_err_set(err, EINVAL, "configuration at offset %" PRIu64
				    ": target page bits %" PRIu32 ", colo uses 12",
				    offset, c->target_page_bits);
	for (uint32_t i = 0; i < c->caps_count; i++) {
		if (strcmp(c->caps[i].str, "x-ignore-shared") == 0)
			*ignore_shared = true;
		else
			return colo_err_set(err, EINVAL, "configuration at offset %" PRIu64
					    ": unknown capability '%s'", offset,
					    c->caps[i].str);
	}
	return 0;
}

static int on_configuration(void *ud, const struct colo_stream_config *c,
			    uint64_t offset, struct colo_err *err)
{
	struct colo_savevm_loader *l = ud;

	return colo_savevm_check_config(l->sv, c, offset, &l->applier.rr.ignore_shared, err);
}

struct colo_savevm_device *colo_savevm_find_device(struct colo_savevm *sv,
						   const char *idstr, uint32_t instance_id)
{
	for (size_t i = 0; i < sv->ndevs; i++)
		if (sv->devs[i].instance_id == instance_id &&
		    strcmp(sv->devs[i].idstr, idstr) == 0)
			return &sv->devs[i];
	return NULL;
}

int colo_savevm_device_payload(void *device, const struct colo_section_info *s,
			       struct colo_in *in, struct colo_err *err)
{
	struct colo_savevm_device *d = device;
	int r;

	if (s->version_id > INT32_MAX)
		return colo_err_set(err, EPROTO, "device '%s': version %" PRIu32
				    " out of range", s->idstr, s->version_id);
	r = colo_vmstate_load(in, d->vmsd, d->opaque, (int)s->version_id, err);
	if (r && r != -EAGAIN)
		colo_err_prefix(err, "device '%s' instance %" PRIu32 " (section %"
				PRIu32 " at offset %" PRIu64 ")", s->idstr,
				s->instance_id, s->section_id, s->offset);
	return r;
}

static int device_payload(void *ctx, const struct colo_section_info *s,
			  struct colo_in *in, struct colo_err *err)
{
	struct colo_savevm_loader *l = ctx;
	int r = colo_savevm_device_payload(l->cur, s, in, err);

	if (r == 0)
		l->info.devices++;
	return r;
}

static int on_section(void *ud, const struct colo_section_info *s,
		      struct colo_section_handler *h, struct colo_err *err)
{
	struct colo_savevm_loader *l = ud;

	(void)err;
	if (s->type != COLO_SEC_FULL) {
		if (strcmp(s->idstr, COLO_RAM_IDSTR) == 0 && s->instance_id == 0) {
			h->payload = colo_ram_applier_handler;
			h->ctx = &l->applier;
		}
		return 0;
	}
	l->cur = colo_savevm_find_device(l->sv, s->idstr, s->instance_id);
	if (l->cur) {
		h->payload = device_payload;
		h->ctx = l;
	}
	return 0;
}

static int on_command(void *ud, const struct colo_command_info *c, struct colo_err *err)
{
	struct colo_savevm_loader *l = ud;

	(void)err;
	if (c->cmd == COLO_CMD_ENABLE_COLO)
		l->info.enable_colo = true;
	else if (c->cmd == COLO_CMD_OPEN_RETURN_PATH)
		l->info.open_return_path = true;
	else if (c->cmd == COLO_CMD_PING) {
		l->info.pings++;
		l->info.last_ping = c->value;
	}
	return 0;
}

static int on_vmdesc(void *ud, const uint8_t *json, size_t len, uint64_t offset,
		     struct colo_err *err)
{
	struct colo_savevm_loader *l = ud;

	(void)json; (void)len; (void)offset; (void)err;
	l->info.vmdesc = true;
	return 0;
}

static const struct colo_stream_ops loader_ops = {
	.configuration = on_configuration,
	.section = on_section,
	.command = on_command,
	.vmdesc = on_vmdesc,
};

struct colo_savevm_loader *colo_savevm_loader_new(struct colo_savevm *sv,
						  const struct colo_page_codec *const *codecs,
						  uint32_t allowed_page_kinds)
{
	struct colo_savevm_loader *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->sv = sv;
	l->targets = calloc(sv->nblocks ? sv->nblocks : 1, sizeof(*l->targets));
	l->reader = colo_stream_reader_new(&loader_ops, l, 0);
	if (!l->targets || !l->reader) {
		colo_savevm_loader_free(l);
		return NULL;
	}
	for (size_t i = 0; i < sv->nblocks; i++) {
		memcpy(l->targets[i].name, sv->blocks[i].info.name, sizeof(l->targets[i].name));
		l->targets[i].mem = sv->blocks[i].host;
		l->targets[i].length = sv->blocks[i].info.length;
	}
	colo_ram_applier_init(&l->applier, l->targets, sv->nblocks, allowed_page_kinds);
	l->applier.codecs = codecs;
	return l;
}

void colo_savevm_loader_free(struct colo_savevm_loader *l)
{
	if (!l)
		return;
	colo_stream_reader_free(l->reader);
	colo_ram_applier_free(&l->applier);
	free(l->targets);
	free(l);
}

ssize_t colo_savevm_loader_feed(struct colo_savevm_loader *l, const void *data,
				size_t len)
{
	return colo_stream_reader_feed(l->reader, data, len);
}

int colo_savevm_loader_finish(struct colo_savevm_loader *l)
{
	return colo_stream_reader_finish(l->reader);
}

const char *colo_savevm_loader_error(const struct colo_savevm_loader *l)
{
	return colo_stream_reader_error(l->reader);
}

struct colo_savevm_load_info colo_savevm_loader_info(const struct colo_savevm_loader *l)
{
	struct colo_savevm_load_info info = l->info;

	memcpy(info.pages, l->applier.pages, sizeof(info.pages));
	return info;
}
