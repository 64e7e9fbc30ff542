/*
 * ramenc.h: a checkpoint's dirty pages, from guest RAM to RAM records and
 * back.
 *
 * Primary side, in three steps (DESIGN.md §4, §5):
 *   1. while the guest is paused, colo_ram_stage_collect() copies every
 *      dirty page into a staging buffer (struct colo_ram_stage) and clears
 *      its dirty bit: the guest can resume as soon as this returns;
 *   2. colo_ram_encode() turns the staged pages into RAM records on N
 *      threads, each page against its base in the shadow copy of its block
 *      (struct colo_ram_shadow), bringing the shadow up to date;
 *   3. the caller frames the records as a RAM section and sends them.
 * Pages are cut into fixed chunks of COLO_RAM_ENC_CHUNK pages; each chunk
 * is encoded on its own and the chunks are emitted in order, so the bytes
 * produced do not depend on the number of threads.
 *
 * Secondary side: struct colo_ram_applier is a RAM section handler that
 * decodes records into named blocks of memory through the page codecs.
 *
 * Threads: an encoder owns `threads` worker threads (a synchronous
 * caller works too) and is driven from one thread.  Each shadow page is
 * touched by the one worker that encodes it.
 */
#ifndef COLO_RAMENC_H
#define COLO_RAMENC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "pagecodec.h"
#include "ramfmt.h"

#define COLO_RAM_ENC_CHUNK 256        /* pages per unit of work */
#define COLO_RAM_ENC_THREADS_MAX 64

struct colo_ram_block;

/* A page copied out of a block: which block, which page. */
struct colo_stage_ref {
	uint32_t block;
	uint32_t page;
};

struct colo_ram_stage {
	uint8_t *pages;               /* n pages of 4096 bytes, page-aligned */
	struct colo_stage_ref *refs;
	size_t n;
	size_t cap;
	size_t populated;             /* pages of `pages` known to be mapped */
};

void colo_ram_stage_init(struct colo_ram_stage *st);
void colo_ram_stage_free(struct colo_ram_stage *st);
/* Room for n pages (grows; keeps what is staged). */
int colo_ram_stage_reserve(struct colo_ram_stage *st, size_t n, struct colo_err *err);
void colo_ram_stage_reset(struct colo_ram_stage *st);
/* Stage one page (copies it). */
int colo_ram_stage_add(struct colo_ram_stage *st, uint32_t block, uint32_t page,
		       const void *data, struct colo_err *err);
/*
 * Copy every page marked in the blocks' dirty bitmaps into the stage and
 * clear those bits; stage refs index `blocks`.  Call it with the guest
 * paused, after a harvest (ram.h).
 */
int colo_ram_stage_collect(struct colo_ram_stage *st, struct colo_ram_block *const *blocks,
			   size_t nblocks, struct colo_err *err);

/* The primary's copy of each block as the secondary holds it. */
struct colo_ram_shadow {
	char name[COLO_IDSTR_MAX + 1];
	uint8_t *mem;                 /* length bytes */
	uint64_t length;
	bool valid;                   /* false until a full sync filled it */
};

int colo_ram_shadow_init(struct colo_ram_shadow *sh, const char *name,
			 uint64_t length, struct colo_err *err);
void colo_ram_shadow_free(struct colo_ram_shadow *sh);

struct colo_ram_enc_stats {
	uint64_t pages[COLO_PAGE_KINDS];  /* sent, by kind */
	uint64_t kind_bytes[COLO_PAGE_KINDS];  /* record bytes, by kind */
	uint64_t unchanged;               /* staged but equal to the base */
	uint64_t bytes;                   /* record bytes produced */
};

struct colo_ram_encoder;

/* encode-threads' default: the CPUs this process may run on (>= 1). */
unsigned colo_ram_encoder_default_threads(void);

int colo_ram_encoder_new(unsigned threads, struct colo_ram_encoder **out,
			 struct colo_err *err);
void colo_ram_encoder_free(struct colo_ram_encoder *enc);
unsigned colo_ram_encoder_threads(const struct colo_ram_encoder *enc);

/*
 * Encode the staged pages as RAM records appended to out (no section
 * header, no EOS).  shadows[i] is the shadow of block i (stage refs index
 * it); a block whose shadow is not valid is sent without a base (first,
 * full sync) and its shadow becomes valid.  allowed: page kinds the stream
 * agreed on (COLO_PAGE_KIND_BIT).  stats (may be NULL) is added to.
 */
int colo_ram_encode(struct colo_ram_encoder *enc, const struct colo_ram_stage *st,
		    struct colo_ram_shadow *shadows, size_t nshadows, uint32_t allowed,
		    struct colo_buf *out, struct colo_ram_enc_stats *stats,
		    struct colo_err *err);

/*
 * The same without waiting: colo_ram_encode_start() hands the job to the
 * workers and returns; fn(ud) (colo_ram_encoder_on_done) is called on the
 * worker that finished the last chunk, after on_chunk's call for it (or
 * here, at once, when nothing is staged), and colo_ram_encode_finish()
 * then gives the records and figures: from fn itself (on that worker, so
 * that a big job's records are gathered off the driving thread), or from
 * the driving thread once fn has told it.  Until then the driving thread
 * leaves st, the shadows and the encoder alone, but may read ready chunks
 * (below).  colo_ram_encoder_free() waits for a job under way, fn
 * included.
 */
int colo_ram_encode_start(struct colo_ram_encoder *enc, const struct colo_ram_stage *st,
			  struct colo_ram_shadow *shadows, size_t nshadows, uint32_t allowed,
			  struct colo_err *err);
void colo_ram_encoder_on_done(struct colo_ram_encoder *enc, void (*fn)(void *ud), void *ud);
int colo_ram_encode_finish(struct colo_ram_encoder *enc, struct colo_buf *out,
			   struct colo_ram_enc_stats *stats, struct colo_err *err);

/*
 * Sending the records while they are encoded.  Before colo_ram_encode()
 * runs (on another thread) or colo_ram_encode_start(), the thread that
 * will send calls colo_ram_encode_prepare() with the number of staged
 * pages: it returns the job's number of chunks, none of them ready.  While
 * the job runs, fn(ud) (colo_ram_encoder_on_chunk, NULL: none) is called
 * from the thread that finished each chunk, and colo_ram_encoder_chunk()
 * gives a chunk's records once it is ready (false before).  The chunks, in
 * order, are exactly what the job appends to out; each stays valid and
 * unchanged until the next colo_ram_encode_prepare() or job.
 * Returns 0 chunks (and nothing ready) when out of memory: encode as usual.
 */
size_t colo_ram_encode_prepare(struct colo_ram_encoder *enc, size_t npages);
void colo_ram_encoder_on_chunk(struct colo_ram_encoder *enc, void (*fn)(void *ud), void *ud);
bool colo_ram_encoder_chunk(const struct colo_ram_encoder *enc, size_t k, const uint8_t **data,
			    size_t *len);

/* ---- secondary: records into memory ---- */

struct colo_ram_target {
	char name[COLO_IDSTR_MAX + 1];
	uint8_t *mem;
	uint64_t length;
};

/*
 * Section handler that applies pages to targets by block name.  MEM_SIZE
 * must name only known blocks of the same size.  Use colo_ram_applier_handler
 * as struct colo_section_handler.payload with ctx = the applier.
 */
struct colo_ram_applier {
	struct colo_ram_reader rr;
	struct colo_ram_target *targets;
	size_t ntargets;
	struct colo_ram_target **map;     /* MEM_SIZE index -> target */
	size_t nmap;
	const struct colo_page_codec *const *codecs;
	uint64_t pages[COLO_PAGE_KINDS];
};

void colo_ram_applier_init(struct colo_ram_applier *a, struct colo_ram_target *targets,
			   size_t ntargets, uint32_t allowed);
void colo_ram_applier_free(struct colo_ram_applier *a);
int colo_ram_applier_handler(void *applier, const struct colo_section_info *s,
			     struct colo_in *in, struct colo_err *err);

#endif
