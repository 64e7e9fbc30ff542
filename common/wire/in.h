/*
 * in.h: a bounds-checked read cursor over a window of stream bytes.
 *
 * The stream reader is fed bytes in arbitrary pieces (socket reads), so every
 * parser in libcolo works in *units* (a section header, one RAM record, one
 * device payload): it marks the unit start, reads, and when the window ends
 * before the unit does, a getter returns -EAGAIN after recording in `need`
 * how many bytes past the mark the unit requires so far.  The caller rewinds
 * to the mark, waits until at least that many bytes are there and parses the
 * unit again.  A getter never reads past `len`; nothing here trusts a length.
 *
 * `final` says that no byte will follow the window (end of file, or the
 * inside of a length-delimited package): parsers use it to resolve
 * look-ahead (e.g. "is a subsection next?") instead of waiting.
 *
 * The window is borrowed: a struct colo_in never owns its bytes.
 */
#ifndef COLO_IN_H
#define COLO_IN_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"

struct colo_in {
	const uint8_t *p;   /* window */
	size_t len;         /* bytes in the window */
	size_t pos;         /* next byte to read */
	size_t mark;        /* start of the unit being parsed */
	size_t need;        /* after -EAGAIN: bytes needed from mark */
	uint64_t off;       /* absolute stream offset of p[0] */
	bool final;         /* no byte will follow the window */
};

static inline void colo_in_init(struct colo_in *in, const void *p, size_t len,
				uint64_t off, bool final)
{
	in->p = p;
	in->len = len;
	in->pos = 0;
	in->mark = 0;
	in->need = 0;
	in->off = off;
	in->final = final;
}

/* Absolute stream offset of the next byte. */
static inline uint64_t colo_in_offset(const struct colo_in *in)
{
	return in->off + in->pos;
}

static inline size_t colo_in_avail(const struct colo_in *in)
{
	return in->len - in->pos;
}

static inline void colo_in_set_mark(struct colo_in *in)
{
	in->mark = in->pos;
	in->need = 0;
}

static inline void colo_in_rewind(struct colo_in *in)
{
	in->pos = in->mark;
}

/* Record that n bytes are wanted at pos; always returns -EAGAIN. */
static inline int colo_in_short(struct colo_in *in, size_t n)
{
	size_t want = in->pos - in->mark + n;

	if (want > in->need)
		in->need = want;
	return -EAGAIN;
}

static inline int colo_in_bytes(struct colo_in *in, const uint8_t **p, size_t n)
{
	if (colo_in_avail(in) < n)
		return colo_in_short(in, n);
	/* An empty window may have no buffer: no arithmetic on NULL. */
	*p = in->len ? in->p + in->pos : in->p;
	in->pos += n;
	return 0;
}

static inline int colo_in_copy(struct colo_in *in, void *dst, size_t n)
{
	const uint8_t *p;
	int r = colo_in_bytes(in, &p, n);

	if (r == 0 && n)
		memcpy(dst, p, n);
	return r;
}

static inline int colo_in_skip(struct colo_in *in, size_t n)
{
	const uint8_t *p;

	return colo_in_bytes(in, &p, n);
}

static inline int colo_in_u8(struct colo_in *in, uint8_t *v)
{
	if (colo_in_avail(in) < 1)
		return colo_in_short(in, 1);
	*v = in->p[in->pos++];
	return 0;
}

static inline int colo_in_be16(struct colo_in *in, uint16_t *v)
{
	if (colo_in_avail(in) < 2)
		return colo_in_short(in, 2);
	*v = colo_load_be16(in->p + in->pos);
	in->pos += 2;
	return 0;
}

static inline int colo_in_be32(struct colo_in *in, uint32_t *v)
{
	if (colo_in_avail(in) < 4)
		return colo_in_short(in, 4);
	*v = colo_load_be32(in->p + in->pos);
	in->pos += 4;
	return 0;
}

static inline int colo_in_be64(struct colo_in *in, uint64_t *v)
{
	if (colo_in_avail(in) < 8)
		return colo_in_short(in, 8);
	*v = colo_load_be64(in->p + in->pos);
	in->pos += 8;
	return 0;
}

/*
 * Look at the byte `ahead` bytes past pos without consuming.  Returns 0 and
 * sets *v, -EAGAIN if it has not arrived yet, or -ENODATA if the window is
 * final and ends before it (the caller treats that as "nothing follows").
 */
static inline int colo_in_peek(struct colo_in *in, size_t ahead, uint8_t *v)
{
	if (colo_in_avail(in) <= ahead)
		return in->final ? -ENODATA : colo_in_short(in, ahead + 1);
	*v = in->p[in->pos + ahead];
	return 0;
}

#endif
