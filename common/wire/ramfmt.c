/*
 * ramfmt.c: RAM section records (see ramfmt.h).  The reader follows QEMU's
 * ram_load_precopy(): a record is `be64 offset|flags`, the flags without
 * CONTINUE say what follows, and EOS ends the payload.  Every length and
 * offset is checked before use.
 */
#include "config.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ramfmt.h"

#define TRY_R(x) do { int rc_ = (x); if (rc_) return rc_; } while (0)

static const struct {
	const char *name;
	uint32_t flag;
} kinds[COLO_PAGE_KINDS] = {
	[COLO_PAGE_ZERO] = { "zero", COLO_RAM_ZERO },
	[COLO_PAGE_RAW] = { "page", COLO_RAM_PAGE },
	[COLO_PAGE_XBZRLE] = { "xbzrle", COLO_RAM_XBZRLE },
	[COLO_PAGE_COMPRESS] = { "compress", COLO_RAM_COMPRESS },
	[COLO_PAGE_LZ4] = { "lz4", COLO_RAM_LZ4 },
	[COLO_PAGE_DELTA] = { "delta", COLO_RAM_DELTA },
	[COLO_PAGE_DELTA_LZ4] = { "delta-lz4", COLO_RAM_DELTA | COLO_RAM_LZ4 },
};

const char *colo_page_kind_name(enum colo_page_kind k)
{
	return (unsigned)k < COLO_PAGE_KINDS ? kinds[k].name : "unknown";
}

uint32_t colo_page_kind_flag(enum colo_page_kind k)
{
	return (unsigned)k < COLO_PAGE_KINDS ? kinds[k].flag : 0;
}

static int kind_of(uint32_t flags, enum colo_page_kind *k)
{
	for (int i = 0; i < COLO_PAGE_KINDS; i++)
		if (kinds[i].flag == flags) {
			*k = (enum colo_page_kind)i;
			return 0;
		}
	return -1;
}

void colo_ram_reader_init(struct colo_ram_reader *rr, const struct colo_ram_sink *sink,
			  uint32_t allowed_kinds)
{
	memset(rr, 0, sizeof(*rr));
	if (sink)
		rr->sink = *sink;
	rr->allowed = allowed_kinds;
	rr->last_block = -1;
}

void colo_ram_reader_free(struct colo_ram_reader *rr)
{
	free(rr->blocks);
	rr->blocks = NULL;
	rr->nblocks = 0;
	rr->last_block = -1;
}

/* MEM_SIZE: the block list.  One unit, so a table is never half-updated. */
static int read_mem_size(struct colo_ram_reader *rr, struct colo_in *in,
			 uint64_t total, uint64_t at, struct colo_err *err)
{
	struct colo_ram_block_info *blocks = NULL;
	uint64_t left = total;
	size_t n = 0;
	int r = 0;

	while (left > 0) {
		struct colo_ram_block_info *b;
		const uint8_t *name;
		uint8_t len;

		if (n == COLO_RAM_BLOCKS_MAX) {
			r = colo_err_set(err, EPROTO, "MEM_SIZE at offset %" PRIu64 " lists "
					 "more than %d blocks", at, COLO_RAM_BLOCKS_MAX);
			break;
		}
		if ((r = colo_in_u8(in, &len)) || (r = colo_in_bytes(in, &name, len)))
			break;
		if (n % 16 == 0) {
			void *nb = realloc(blocks, (n + 16) * sizeof(*blocks));

			if (!nb) {
				r = colo_err_set(err, ENOMEM, "out of memory");
				break;
			}
			blocks = nb;
		}
		b = &blocks[n];
		memset(b, 0, sizeof(*b));
		memcpy(b->name, name, len);
		if ((r = colo_in_be64(in, &b->length)))
			break;
		if (rr->ignore_shared && (r = colo_in_be64(in, &b->addr)))
			break;
		if (len == 0 || memchr(name, '\0', len)) {
			r = colo_err_set(err, EPROTO, "MEM_SIZE at offset %" PRIu64 ": block "
					 "%zu has an empty or invalid name", at, n);
			break;
		}
		for (size_t i = 0; i < n; i++)
			if (strcmp(blocks[i].name, b->name) == 0) {
				r = colo_err_set(err, EPROTO, "MEM_SIZE at offset %" PRIu64
						 ": block '%s' is listed twice", at, b->name);
				goto out;
			}
		if (b->length == 0 || b->length % COLO_PAGE_SIZE) {
			r = colo_err_set(err, EPROTO, "MEM_SIZE at offset %" PRIu64 ": block "
					 "'%s' has length %" PRIu64 ", not a positive "
					 "multiple of %u", at, b->name, b->length,
					 COLO_PAGE_SIZE);
			break;
		}
		if (b->length > left) {
			r = colo_err_set(err, EPROTO, "MEM_SIZE at offset %" PRIu64 ": blocks "
					 "add up to more than the announced total of %"
					 PRIu64 " bytes", at, total);
			break;
		}
		left -= b->length;
		n++;
	}
out:
	if (r) {
		free(blocks);
		return r;
	}
	free(rr->blocks);
	rr->blocks = blocks;
	rr->nblocks = n;
	rr->last_block = -1;
	if (rr->sink.mem_size)
		return rr->sink.mem_size(rr->sink.ud, rr->blocks, n, total, err);
	return 0;
}

static int find_block(const struct colo_ram_reader *rr, const uint8_t *name, size_t len)
{
	for (size_t i = 0; i < rr->nblocks; i++)
		if (strlen(rr->blocks[i].name) == len &&
		    memcmp(rr->blocks[i].name, name, len) == 0)
			return (int)i;
	return -1;
}

static int read_page(struct colo_ram_reader *rr, struct colo_in *in,
		     uint64_t addr, uint32_t flags, uint64_t at,
		     struct colo_err *err)
{
	struct colo_ram_page p;
	enum colo_page_kind kind;
	int bi;

	if (kind_of(flags & ~(uint32_t)COLO_RAM_CONTINUE, &kind) < 0)
		return colo_err_set(err, EPROTO, "unknown combination of RAM flags 0x%03"
				    PRIx32 " at offset %" PRIu64, flags, at);
	if (flags & COLO_RAM_CONTINUE) {
		if (rr->last_block < 0)
			return colo_err_set(err, EPROTO, "RAM page at offset %" PRIu64
					    " continues a block but no block came "
					    "before", at);
		bi = rr->last_block;
	} else {
		const uint8_t *name;
		uint8_t len;

		TRY_R(colo_in_u8(in, &len));
		TRY_R(colo_in_bytes(in, &name, len));
		bi = find_block(rr, name, len);
		if (bi < 0)
			return colo_err_set(err, EPROTO, "RAM page at offset %" PRIu64
					    " names unknown block '%.*s'", at, (int)len,
					    (const char *)name);
	}
	memset(&p, 0, sizeof(p));
	p.block = &rr->blocks[bi];
	p.block_index = (unsigned)bi;
	p.offset = addr;
	p.kind = kind;
	p.record_offset = at;
	if (addr >= p.block->length)
		return colo_err_set(err, EPROTO, "RAM page at offset %" PRIu64 ": page "
				    "offset 0x%" PRIx64 " is outside block '%s' (%"
				    PRIu64 " bytes)", at, addr, p.block->name,
				    p.block->length);
	if (!(rr->allowed & COLO_PAGE_KIND_BIT(kind)))
		return colo_err_set(err, EPROTO, "RAM page at offset %" PRIu64 " uses "
				    "encoding '%s', which this stream did not enable",
				    at, colo_page_kind_name(kind));
	switch (kind) {
	case COLO_PAGE_ZERO:
		TRY_R(colo_in_u8(in, &p.fill));
		break;
	case COLO_PAGE_RAW:
		p.len = COLO_PAGE_SIZE;
		TRY_R(colo_in_bytes(in, &p.data, p.len));
		break;
	case COLO_PAGE_XBZRLE: {
		uint8_t hdr;
		uint16_t len;

		TRY_R(colo_in_u8(in, &hdr));
		TRY_R(colo_in_be16(in, &len));
		if (hdr != 0x01)
			return colo_err_set(err, EPROTO, "XBZRLE page at offset %" PRIu64
					    " has encoding byte 0x%02x, expected 0x01",
					    at, hdr);
		if (len > COLO_RAM_XBZRLE_MAX)
			return colo_err_set(err, EPROTO, "XBZRLE page at offset %" PRIu64
					    " has length %u, more than %u", at, len,
					    COLO_RAM_XBZRLE_MAX);
		p.len = len;
		TRY_R(colo_in_bytes(in, &p.data, p.len));
		break;
	}
	case COLO_PAGE_COMPRESS: {
		uint32_t len;

		TRY_R(colo_in_be32(in, &len));
		if (len == 0 || len > COLO_RAM_COMPRESS_MAX)
			return colo_err_set(err, EPROTO, "compressed page at offset %"
					    PRIu64 " has length %" PRIu32 ", outside 1..%u",
					    at, len, COLO_RAM_COMPRESS_MAX);
		p.len = len;
		TRY_R(colo_in_bytes(in, &p.data, p.len));
		break;
	}
	case COLO_PAGE_LZ4:
	case COLO_PAGE_DELTA:
	case COLO_PAGE_DELTA_LZ4: {
		uint16_t len;

		TRY_R(colo_in_be16(in, &len));
		if (len == 0 || len > COLO_RAM_ENCODED_MAX)
			return colo_err_set(err, EPROTO, "%s page at offset %" PRIu64
					    " has length %u, outside 1..%u",
					    colo_page_kind_name(kind), at, len,
					    COLO_RAM_ENCODED_MAX);
		p.len = len;
		TRY_R(colo_in_bytes(in, &p.data, p.len));
		break;
	}
	case COLO_PAGE_KINDS:
		break;
	}
	rr->last_block = bi;
	if (rr->sink.page)
		return rr->sink.page(rr->sink.ud, &p, err);
	return 0;
}

int colo_ram_reader_payload(void *ctx, const struct colo_section_info *s,
			    struct colo_in *in, struct colo_err *err)
{
	struct colo_ram_reader *rr = ctx;

	if (s->version_id != COLO_RAM_SECTION_VERSION)
		return colo_err_set(err, EPROTO, "RAM section %" PRIu32 " at offset %"
				    PRIu64 " has version %" PRIu32 ", expected %d",
				    s->section_id, s->offset, s->version_id,
				    COLO_RAM_SECTION_VERSION);
	for (;;) {
		uint64_t v, at, addr;
		uint32_t flags;
		int r;

		colo_in_set_mark(in);
		at = colo_in_offset(in);
		r = colo_in_be64(in, &v);
		if (r)
			return r;
		flags = (uint32_t)(v & COLO_RAM_FLAGS_MASK);
		addr = v & ~(uint64_t)COLO_RAM_FLAGS_MASK;
		if (flags & COLO_RAM_EOS) {
			if (flags != COLO_RAM_EOS || addr != 0)
				return colo_err_set(err, EPROTO, "RAM end-of-section record "
						    "at offset %" PRIu64 " carries 0x%016"
						    PRIx64, at, v);
			return 0;
		}
		if (flags == COLO_RAM_MEM_SIZE)
			r = read_mem_size(rr, in, addr, at, err);
		else if (flags == COLO_RAM_MULTIFD_FLUSH) {
			rr->flushes++;
			r = 0;
		} else if (flags & COLO_RAM_HOOK)
			r = colo_err_set(err, ENOTSUP, "RAM hook record (RDMA) at offset %"
					 PRIu64 " is not supported", at);
		else
			r = read_page(rr, in, addr, flags, at, err);
		if (r)
			return r;
	}
}

int colo_ram_page_apply(const struct colo_ram_page *p, uint8_t *host,
			const struct colo_page_codec *const *codecs,
			struct colo_err *err)
{
	return colo_ram_page_apply_to(p, host + p->offset, codecs, err);
}

int colo_ram_page_apply_to(const struct colo_ram_page *p, uint8_t *page,
			   const struct colo_page_codec *const *codecs,
			   struct colo_err *err)
{

	switch (p->kind) {
	case COLO_PAGE_ZERO:
		memset(page, p->fill, COLO_PAGE_SIZE);
		return 0;
	case COLO_PAGE_RAW:
		memcpy(page, p->data, COLO_PAGE_SIZE);
		return 0;
	default:
		break;
	}
	for (; codecs && *codecs; codecs++)
		if ((*codecs)->kind == p->kind && (*codecs)->decode) {
			int r = (*codecs)->decode(p->data, p->len, page, err);

			if (r)
				colo_err_prefix(err, "%s page at offset %" PRIu64,
						colo_page_kind_name(p->kind),
						p->record_offset);
			return r;
		}
	return colo_err_set(err, ENOTSUP, "%s page at offset %" PRIu64 " cannot be "
			    "decoded: no codec for it here",
			    colo_page_kind_name(p->kind), p->record_offset);
}

void colo_ram_writer_init(struct colo_ram_writer *w, struct colo_buf *out)
{
	w->out = out;
	w->last[0] = '\0';
}

void colo_ram_writer_section(struct colo_ram_writer *w)
{
	w->last[0] = '\0';
}

void colo_ram_put_mem_size(struct colo_ram_writer *w,
			   const struct colo_ram_block_info *blocks, size_t n,
			   bool with_addr)
{
	uint64_t total = 0;

	for (size_t i = 0; i < n; i++)
		total += blocks[i].length;
	colo_buf_put_be64(w->out, total | COLO_RAM_MEM_SIZE);
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(blocks[i].name);

		colo_buf_put_u8(w->out, (uint8_t)len);
		colo_buf_put(w->out, blocks[i].name, len);
		colo_buf_put_be64(w->out, blocks[i].length);
		if (with_addr)
			colo_buf_put_be64(w->out, blocks[i].addr);
	}
}

/* `be64 offset|flags`, plus the block name unless it is the previous one's. */
static void page_header(struct colo_ram_writer *w, const char *block,
			uint64_t offset, uint32_t flag)
{
	size_t len = strlen(block);

	if (strcmp(block, w->last) == 0) {
		colo_buf_put_be64(w->out, offset | flag | COLO_RAM_CONTINUE);
		return;
	}
	colo_buf_put_be64(w->out, offset | flag);
	colo_buf_put_u8(w->out, (uint8_t)len);
	colo_buf_put(w->out, block, len);
	memcpy(w->last, block, len + 1);
}

void colo_ram_put_zero(struct colo_ram_writer *w, const char *block,
		       uint64_t offset, uint8_t fill)
{
	page_header(w, block, offset, COLO_RAM_ZERO);
	colo_buf_put_u8(w->out, fill);
}

void colo_ram_put_raw(struct colo_ram_writer *w, const char *block,
		      uint64_t offset, const void *page)
{
	page_header(w, block, offset, COLO_RAM_PAGE);
	colo_buf_put(w->out, page, COLO_PAGE_SIZE);
}

int colo_ram_put_encoded(struct colo_ram_writer *w, const char *block,
			 uint64_t offset, enum colo_page_kind kind,
			 const void *data, size_t len, struct colo_err *err)
{
	size_t max;

	switch (kind) {
	case COLO_PAGE_XBZRLE:
		max = COLO_RAM_XBZRLE_MAX;
		break;
	case COLO_PAGE_COMPRESS:
		max = COLO_RAM_COMPRESS_MAX;
		break;
	case COLO_PAGE_LZ4:
	case COLO_PAGE_DELTA:
	case COLO_PAGE_DELTA_LZ4:
		max = COLO_RAM_ENCODED_MAX;
		break;
	default:
		return colo_err_set(err, EINVAL, "page kind '%s' is not an encoding",
				    colo_page_kind_name(kind));
	}
	if (len == 0 || len > max)
		return colo_err_set(err, EINVAL, "%s page of %zu bytes: outside 1..%zu",
				    colo_page_kind_name(kind), len, max);
	page_header(w, block, offset, colo_page_kind_flag(kind));
	if (kind == COLO_PAGE_XBZRLE) {
		colo_buf_put_u8(w->out, 0x01);
		colo_buf_put_be16(w->out, (uint16_t)len);
	} else if (kind == COLO_PAGE_COMPRESS) {
		colo_buf_put_be32(w->out, (uint32_t)len);
	} else {
		colo_buf_put_be16(w->out, (uint16_t)len);
	}
	colo_buf_put(w->out, data, len);
	return 0;
}

void colo_ram_put_eos(struct colo_ram_writer *w)
{
	colo_buf_put_be64(w->out, COLO_RAM_EOS);
}
