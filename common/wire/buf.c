/* buf.c: see buf.h. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

void colo_buf_init(struct colo_buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->failed = false;
}

void colo_buf_free(struct colo_buf *b)
{
	free(b->data);
	colo_buf_init(b);
}

void colo_buf_reset(struct colo_buf *b)
{
	b->len = 0;
	b->failed = false;
}

bool colo_buf_reserve(struct colo_buf *b, size_t extra)
{
	size_t want, cap;
	uint8_t *p;

	if (b->failed)
		return false;
	if (extra > SIZE_MAX / 2 - b->len) {
		b->failed = true;
		return false;
	}
	want = b->len + extra;
	if (want <= b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap < want)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p) {
		b->failed = true;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

uint8_t *colo_buf_steal(struct colo_buf *b, size_t *len)
{
	uint8_t *p = b->data;

	if (len)
		*len = b->len;
	colo_buf_init(b);
	return p;
}

uint8_t *colo_buf_append(struct colo_buf *b, size_t n)
{
	uint8_t *p;

	if (!colo_buf_reserve(b, n))
		return NULL;
	if (!b->data)
		return NULL;            /* n == 0 on an empty buffer */
	p = b->data + b->len;
	b->len += n;
	return p;
}

void colo_buf_put(struct colo_buf *b, const void *src, size_t n)
{
	uint8_t *p;

	if (n == 0)
		return;
	p = colo_buf_append(b, n);
	if (p)
		memcpy(p, src, n);
}

void colo_buf_put_u8(struct colo_buf *b, uint8_t v)
{
	uint8_t *p = colo_buf_append(b, 1);

	if (p)
		*p = v;
}

void colo_buf_put_be16(struct colo_buf *b, uint16_t v)
{
	uint8_t *p = colo_buf_append(b, 2);

	if (p)
		colo_store_be16(p, v);
}

void colo_buf_put_be32(struct colo_buf *b, uint32_t v)
{
	uint8_t *p = colo_buf_append(b, 4);

	if (p)
		colo_store_be32(p, v);
}

void colo_buf_put_be64(struct colo_buf *b, uint64_t v)
{
	uint8_t *p = colo_buf_append(b, 8);

	if (p)
		colo_store_be64(p, v);
}

void colo_buf_fill(struct colo_buf *b, uint8_t byte, size_t n)
{
	uint8_t *p = colo_buf_append(b, n);

	if (p && n)
		memset(p, byte, n);
}

void colo_buf_patch_be32(struct colo_buf *b, size_t at, uint32_t v)
{
	if (!b->failed && at + 4 <= b->len)
		colo_store_be32(b->data + at, v);
}

void colo_buf_printf(struct colo_buf *b, const char *fmt, ...)
{
	va_list ap;
	uint8_t *p;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n <= 0)
		return;
	/* One byte more for vsnprintf's NUL, which len leaves out. */
	p = colo_buf_append(b, (size_t)n + 1);
	if (!p)
		return;
	va_start(ap, fmt);
	vsnprintf((char *)p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len--;
}
