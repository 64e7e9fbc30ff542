/*
 * buf.h: a growable output byte buffer with big-endian writers.
 *
 * Every multi-byte integer on colo's wire is big-endian (DESIGN.md §3).  The
 * writers never fail individually: an allocation failure latches `failed`
 * and later writes are dropped, so a producer checks colo_buf_ok() once at
 * the end (the way a QEMUFile latches its error).  The buffer owns `data`;
 * colo_buf_free() releases it, colo_buf_steal() hands it to the caller.
 * Not thread-safe.
 */
#ifndef COLO_BUF_H
#define COLO_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct colo_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	bool failed;
};

#define COLO_BUF_INIT { NULL, 0, 0, false }

void colo_buf_init(struct colo_buf *b);
void colo_buf_free(struct colo_buf *b);
void colo_buf_reset(struct colo_buf *b);          /* len = 0, keeps memory */
bool colo_buf_reserve(struct colo_buf *b, size_t extra);
uint8_t *colo_buf_steal(struct colo_buf *b, size_t *len);

/* Room for n more bytes, returned for the caller to fill; NULL on failure
 * (and for n == 0 on a buffer that has no memory yet). */
uint8_t *colo_buf_append(struct colo_buf *b, size_t n);

void colo_buf_put(struct colo_buf *b, const void *p, size_t n);
void colo_buf_put_u8(struct colo_buf *b, uint8_t v);
void colo_buf_put_be16(struct colo_buf *b, uint16_t v);
void colo_buf_put_be32(struct colo_buf *b, uint32_t v);
void colo_buf_put_be64(struct colo_buf *b, uint64_t v);
void colo_buf_fill(struct colo_buf *b, uint8_t byte, size_t n);
/* Text, as printf would write it (no terminating NUL). */
void colo_buf_printf(struct colo_buf *b, const char *fmt, ...) COLO_PRINTF(2, 3);

/* Overwrite 4 bytes at `at` (a length written after its payload). */
void colo_buf_patch_be32(struct colo_buf *b, size_t at, uint32_t v);

static inline bool colo_buf_ok(const struct colo_buf *b)
{
	return !b->failed;
}

static inline void colo_store_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void colo_store_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void colo_store_be64(uint8_t *p, uint64_t v)
{
	colo_store_be32(p, (uint32_t)(v >> 32));
	colo_store_be32(p + 4, (uint32_t)v);
}

static inline uint16_t colo_load_be16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline uint32_t colo_load_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t colo_load_be64(const uint8_t *p)
{
	return (uint64_t)colo_load_be32(p) << 32 | colo_load_be32(p + 4);
}

#endif
