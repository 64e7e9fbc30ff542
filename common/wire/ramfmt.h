/*
 * ramfmt.h: records of the RAM section ("ram", version 4; DESIGN.md §3).
 *
 * A RAM section payload is a sequence of records, each opening with
 * `be64 (offset | flags)` (offset page-aligned, flags in the low 12 bits):
 *   MEM_SIZE  total bytes; then per block `u8 len, idstr, be64 length`
 *             (+ be64 address when x-ignore-shared is on)
 *   page      unless CONTINUE (same block as the previous page):
 *             `u8 len, idstr`; then by kind:
 *             ZERO u8 fill | PAGE 4096 bytes | XBZRLE u8 0x01 be16 len data |
 *             COMPRESS be32 len zlib-data | LZ4, DELTA, DELTA|LZ4: be16 len
 *   EOS       ends the payload of every RAM section.
 * LZ4 and DELTA are colo's own and appear only when both sides agreed on
 * them; both flags together (0xc00) are a DELTA whose bytes are LZ4'd
 * (docs/delta.md).  A reader is told which page kinds it accepts.
 *
 * Page codecs plug in through struct colo_page_codec: the record layer only
 * frames pages (kind + bytes); encoding and decoding are the codec's.
 *
 * The reader keeps the block table of the last MEM_SIZE and the block of
 * the last page across sections (as QEMU's loader does), so one reader
 * serves a whole replication channel.  Writers and readers belong to one
 * thread; page data handed to a sink is valid during the callback only.
 */
#ifndef COLO_RAMFMT_H
#define COLO_RAMFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "err.h"
#include "in.h"
#include "stream.h"

#define COLO_PAGE_SIZE 4096u
#define COLO_RAM_SECTION_VERSION 4
#define COLO_RAM_IDSTR "ram"

enum {
	COLO_RAM_FULL = 0x001,          /* obsolete in QEMU: refused */
	COLO_RAM_ZERO = 0x002,
	COLO_RAM_MEM_SIZE = 0x004,
	COLO_RAM_PAGE = 0x008,
	COLO_RAM_EOS = 0x010,
	COLO_RAM_CONTINUE = 0x020,
	COLO_RAM_XBZRLE = 0x040,
	COLO_RAM_HOOK = 0x080,          /* RDMA: refused */
	COLO_RAM_COMPRESS = 0x100,
	COLO_RAM_MULTIFD_FLUSH = 0x200, /* newer QEMU: no payload */
	COLO_RAM_LZ4 = 0x400,
	COLO_RAM_DELTA = 0x800,
};
#define COLO_RAM_FLAGS_MASK 0xfffu

#define COLO_RAM_BLOCKS_MAX 256
#define COLO_RAM_XBZRLE_MAX COLO_PAGE_SIZE          /* QEMU's limit */
#define COLO_RAM_COMPRESS_MAX (COLO_PAGE_SIZE + 14) /* zlib compressBound */
/* Longest LZ4 or DELTA payload: an encoder that cannot do better sends PAGE. */
#define COLO_RAM_ENCODED_MAX (COLO_PAGE_SIZE + 256)

enum colo_page_kind {
	COLO_PAGE_ZERO,
	COLO_PAGE_RAW,
	COLO_PAGE_XBZRLE,
	COLO_PAGE_COMPRESS,
	COLO_PAGE_LZ4,
	COLO_PAGE_DELTA,
	COLO_PAGE_DELTA_LZ4,            /* DELTA|LZ4: runs with LZ4'd bytes */
	COLO_PAGE_KINDS
};

#define COLO_PAGE_KIND_BIT(k) (1u << (k))
#define COLO_PAGE_KINDS_QEMU (COLO_PAGE_KIND_BIT(COLO_PAGE_ZERO) |           \
			      COLO_PAGE_KIND_BIT(COLO_PAGE_RAW) |            \
			      COLO_PAGE_KIND_BIT(COLO_PAGE_XBZRLE) |         \
			      COLO_PAGE_KIND_BIT(COLO_PAGE_COMPRESS))
#define COLO_PAGE_KINDS_ALL ((1u << COLO_PAGE_KINDS) - 1)

const char *colo_page_kind_name(enum colo_page_kind k);   /* "zero", "page", ... */
uint32_t colo_page_kind_flag(enum colo_page_kind k);

/*
 * A page codec.  encode() writes the page's encoding into out (cap bytes)
 * and returns its length, 0 when this encoding does not pay for this page,
 * or a negative errno; base is the page as the receiver holds it (NULL when
 * it holds nothing).  decode() turns len bytes into the page in place: on
 * entry `page` holds the base.  Decoders check every length and reject
 * malformed input with a message; they never write outside the page.
 */
struct colo_page_codec {
	enum colo_page_kind kind;
	const char *name;
	ssize_t (*encode)(const uint8_t *page, const uint8_t *base, uint8_t *out,
			  size_t cap);
	int (*decode)(const uint8_t *in, size_t len, uint8_t *page,
		      struct colo_err *err);
};

/* A block as MEM_SIZE announces it. */
struct colo_ram_block_info {
	char name[COLO_IDSTR_MAX + 1];
	uint64_t length;
	uint64_t addr;                /* x-ignore-shared only */
};

struct colo_ram_page {
	const struct colo_ram_block_info *block;
	unsigned block_index;
	uint64_t offset;              /* within the block, page-aligned */
	enum colo_page_kind kind;
	const uint8_t *data;          /* RAW: the page; others: encoded bytes */
	size_t len;
	uint8_t fill;                 /* ZERO */
	uint64_t record_offset;       /* stream offset of the record */
};

struct colo_ram_sink {
	int (*mem_size)(void *ud, const struct colo_ram_block_info *blocks,
			size_t n, uint64_t total, struct colo_err *err);
	int (*page)(void *ud, const struct colo_ram_page *p, struct colo_err *err);
	void *ud;
};

struct colo_ram_reader {
	struct colo_ram_sink sink;
	uint32_t allowed;             /* COLO_PAGE_KIND_BIT set */
	bool ignore_shared;           /* MEM_SIZE entries carry an address */
	struct colo_ram_block_info *blocks;
	size_t nblocks;
	int last_block;               /* for CONTINUE; -1: none yet */
	uint64_t flushes;             /* MULTIFD_FLUSH records seen */
};

void colo_ram_reader_init(struct colo_ram_reader *rr, const struct colo_ram_sink *sink,
			  uint32_t allowed_kinds);
void colo_ram_reader_free(struct colo_ram_reader *rr);
/* Section handler (struct colo_section_handler.payload) with ctx = rr. */
int colo_ram_reader_payload(void *rr, const struct colo_section_info *s,
			    struct colo_in *in, struct colo_err *err);

/*
 * Apply a page to the memory of its block (`host` = block start, length
 * as announced): ZERO fills, RAW copies, other kinds go through the codec
 * of that kind in `codecs` (NULL-terminated; may be NULL).
 */
int colo_ram_page_apply(const struct colo_ram_page *p, uint8_t *host,
			const struct colo_page_codec *const *codecs,
			struct colo_err *err);
/* The same into one page of memory (which holds the page's base). */
int colo_ram_page_apply_to(const struct colo_ram_page *p, uint8_t *page,
			   const struct colo_page_codec *const *codecs,
			   struct colo_err *err);

/* ---- writer ---- */

struct colo_ram_writer {
	struct colo_buf *out;
	char last[COLO_IDSTR_MAX + 1];   /* block of the last page; "" none */
};

void colo_ram_writer_init(struct colo_ram_writer *w, struct colo_buf *out);
/* Call at each new section: the first page names its block again. */
void colo_ram_writer_section(struct colo_ram_writer *w);
void colo_ram_put_mem_size(struct colo_ram_writer *w,
			   const struct colo_ram_block_info *blocks, size_t n,
			   bool with_addr);
void colo_ram_put_zero(struct colo_ram_writer *w, const char *block,
		       uint64_t offset, uint8_t fill);
void colo_ram_put_raw(struct colo_ram_writer *w, const char *block,
		      uint64_t offset, const void *page);
/* XBZRLE, COMPRESS, LZ4 or DELTA bytes, framed as that kind wants. */
int colo_ram_put_encoded(struct colo_ram_writer *w, const char *block,
			 uint64_t offset, enum colo_page_kind kind,
			 const void *data, size_t len, struct colo_err *err);
void colo_ram_put_eos(struct colo_ram_writer *w);

#endif
