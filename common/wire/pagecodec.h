/*
 * pagecodec.h: how one 4 KiB page travels: the codecs and the choice.
 *
 * A page is sent against its *base*, the page as the receiver already holds
 * it (primary: a shadow copy updated as pages are sent; secondary: committed
 * RAM), or without one (first sync).  The encodings (DESIGN.md §3):
 *   ZERO       one fill byte
 *   RAW        the 4096 bytes
 *   LZ4        an LZ4 block of the page
 *   DELTA      colo's difference from the base: runs of changed bytes,
 *              `uleb gap, uleb len, len bytes`, found a word at a time
 *              (docs/delta.md specifies it byte by byte)
 *   DELTA_LZ4  the same runs, their bytes in one LZ4 block (when that pays)
 *   XBZRLE     QEMU's difference encoding, for QEMU-compatible peers
 * colo_page_encode() picks, per page, the cheapest encoding the stream
 * allows, with fast paths for unchanged pages (nothing to send) and sparse
 * changes (DELTA without trying anything else).
 *
 * Decoders check every length and offset: malformed input is an error with
 * a message, never a write outside the page.  Everything here is pure
 * computation on caller memory: thread-safe, no allocation.
 */
#ifndef COLO_PAGECODEC_H
#define COLO_PAGECODEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"
#include "ramfmt.h"

/* Codecs of the encoded kinds, for colo_ram_page_apply() and friends. */
extern const struct colo_page_codec colo_codec_lz4;
extern const struct colo_page_codec colo_codec_delta;
extern const struct colo_page_codec colo_codec_delta_lz4;
extern const struct colo_page_codec colo_codec_xbzrle;
/* All of them, NULL-terminated. */
extern const struct colo_page_codec *const colo_page_codecs[];

/* Room colo_page_encode() may use in `out`. */
#define COLO_PAGE_ENC_MAX COLO_RAM_ENCODED_MAX

/* Don't bother with LZ4 for fewer changed bytes than this. */
#define COLO_DELTA_LZ4_MIN 256

struct colo_page_enc {
	enum colo_page_kind kind;
	size_t len;                /* bytes in out (0 for ZERO and RAW) */
	uint8_t fill;              /* ZERO */
};

enum {
	COLO_ENC_UPDATE_BASE = 1u << 0,   /* make base equal page afterwards */
};

/*
 * Encode page against base (NULL: the receiver holds nothing), choosing
 * among the kinds in `allowed` (COLO_PAGE_KIND_BIT; RAW is always
 * possible).  Returns 1 when the page equals its base (send nothing), 0
 * with *e set (for RAW send the page itself; otherwise out holds e->len
 * bytes).  With COLO_ENC_UPDATE_BASE the base is brought up to date too,
 * touching only the changed bytes when it can.
 */
int colo_page_encode(const uint8_t *page, uint8_t *base, uint32_t allowed,
		     unsigned flags, uint8_t *out, struct colo_page_enc *e);

/* Single encodings, for benchmarks and tests: bytes written, 0 when the
 * encoding does not fit in cap (or the page equals its base for deltas). */
size_t colo_delta_encode(const uint8_t *page, const uint8_t *base, uint8_t *out,
			 size_t cap);
size_t colo_delta_lz4_encode(const uint8_t *page, const uint8_t *base, uint8_t *out,
			     size_t cap);
size_t colo_xbzrle_encode(const uint8_t *page, const uint8_t *base, uint8_t *out,
			  size_t cap);
size_t colo_lz4_encode(const uint8_t *page, uint8_t *out, size_t cap);

/* Decoders: page holds the base on entry and the page on success. */
int colo_delta_decode(const uint8_t *in, size_t len, uint8_t *page, struct colo_err *err);
int colo_delta_lz4_decode(const uint8_t *in, size_t len, uint8_t *page,
			  struct colo_err *err);
int colo_xbzrle_decode(const uint8_t *in, size_t len, uint8_t *page, struct colo_err *err);
int colo_lz4_decode(const uint8_t *in, size_t len, uint8_t *page, struct colo_err *err);

/* Is the page all zero bytes? (word at a time, stops at the first one) */
int colo_page_is_zero(const uint8_t *page);

/*
 * Tests and benchmarks: choose the vector width of the delta scan (0
 * portable, 1 AVX2, 2 AVX-512BW; -1 or more than the CPU has: the best it
 * has).  Returns the level in use.  The encodings are the same at every
 * level.  Not thread-safe: call before encoding starts.
 */
int colo_page_codec_simd(int level);
const char *colo_page_codec_simd_name(void);

#endif
