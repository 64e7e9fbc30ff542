/*
 * vmstate_types.c: the field types of vmstate.h, byte for byte as QEMU
 * encodes them (big-endian integers, raw buffers, bitmaps as be64 words).
 * Type names are QEMU's, including its "int64 equal" for the uint64 check:
 * they appear in the vmdesc, where QEMU tools expect them.
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "vmstate.h"

/* Integers: one generic pair per width, sign handled by the C type. */
#define DEFINE_INT(cname, qname, ctype, bits)                                 \
static int get_##cname(struct colo_in *in, void *pv, size_t size,           \
		       const struct colo_vmstate_field *f, struct colo_err *err) \
{                                                                             \
	uint##bits##_t v;                                                     \
	int r;                                                                \
	(void)size; (void)f; (void)err;                                       \
	r = get_be##bits(in, &v);                                             \
	if (r == 0)                                                           \
		*(ctype *)pv = (ctype)v;                                      \
	return r;                                                             \
}                                                                             \
static void put_##cname(struct colo_buf *out, const void *pv, size_t size,  \
			const struct colo_vmstate_field *f)                   \
{                                                                             \
	(void)size; (void)f;                                                  \
	put_be##bits(out, (uint##bits##_t) * (const ctype *)pv);              \
}                                                                             \
const struct colo_vmstate_info colo_vmstate_info_##cname = {                \
	.name = qname, .get = get_##cname, .put = put_##cname,               \
};

static inline int get_be8(struct colo_in *in, uint8_t *v)
{
	return colo_in_u8(in, v);
}

static inline void put_be8(struct colo_buf *out, uint8_t v)
{
	colo_buf_put_u8(out, v);
}

#define get_be16 colo_in_be16
#define get_be32 colo_in_be32
#define get_be64 colo_in_be64
#define put_be16 colo_buf_put_be16
#define put_be32 colo_buf_put_be32
#define put_be64 colo_buf_put_be64

DEFINE_INT(int8, "int8", int8_t, 8)
DEFINE_INT(int16, "int16", int16_t, 16)
DEFINE_INT(int32, "int32", int32_t, 32)
DEFINE_INT(int64, "int64", int64_t, 64)
DEFINE_INT(uint8, "uint8", uint8_t, 8)
DEFINE_INT(uint16, "uint16", uint16_t, 16)
DEFINE_INT(uint32, "uint32", uint32_t, 32)
DEFINE_INT(uint64, "uint64", uint64_t, 64)

/* bool: one byte; QEMU loads any non-zero byte as true. */
static int get_bool(struct colo_in *in, void *pv, size_t size,
		    const struct colo_vmstate_field *f, struct colo_err *err)
{
	uint8_t v;
	int r;

	(void)size; (void)f; (void)err;
	r = colo_in_u8(in, &v);
	if (r == 0)
		*(bool *)pv = v != 0;
	return r;
}

static void put_bool(struct colo_buf *out, const void *pv, size_t size,
		     const struct colo_vmstate_field *f)
{
	(void)size; (void)f;
	colo_buf_put_u8(out, *(const bool *)pv ? 1 : 0);
}

const struct colo_vmstate_info colo_vmstate_info_bool = {
	.name = "bool", .get = get_bool, .put = put_bool,
};

/* float64: the IEEE 754 bits as a be64. */
static int get_float64(struct colo_in *in, void *pv, size_t size,
		       const struct colo_vmstate_field *f, struct colo_err *err)
{
	uint64_t bits;
	int r;

	(void)size; (void)f; (void)err;
	r = colo_in_be64(in, &bits);
	if (r == 0)
		memcpy(pv, &bits, sizeof(double));
	return r;
}

static void put_float64(struct colo_buf *out, const void *pv, size_t size,
			const struct colo_vmstate_field *f)
{
	uint64_t bits;

	(void)size; (void)f;
	memcpy(&bits, pv, sizeof(bits));
	colo_buf_put_be64(out, bits);
}

const struct colo_vmstate_info colo_vmstate_info_float64 = {
	.name = "float64", .get = get_float64, .put = put_float64,
};

/* _equal: the stream must carry the value the local side already holds. */
static int mismatch(struct colo_in *in, const struct colo_vmstate_field *f,
		    size_t width, uint64_t got, uint64_t local, struct colo_err *err)
{
	return colo_err_set(err, EINVAL,
			    "field '%s' must equal the local value: stream has 0x%" PRIx64
			    ", local is 0x%" PRIx64 "%s%s%s at offset %" PRIu64,
			    f->name, got, local, f->err_hint ? " (" : "",
			    f->err_hint ? f->err_hint : "", f->err_hint ? ")" : "",
			    colo_in_offset(in) - width);
}

#define DEFINE_EQUAL(cname, qname, ctype, bits)                               \
static int get_##cname##_equal(struct colo_in *in, void *pv, size_t size,   \
			       const struct colo_vmstate_field *f,            \
			       struct colo_err *err)                          \
{                                                                             \
	uint##bits##_t v;                                                     \
	int r;                                                                \
	(void)size;                                                           \
	r = get_be##bits(in, &v);                                             \
	if (r)                                                                \
		return r;                                                     \
	if ((ctype)v != *(const ctype *)pv)                                   \
		return mismatch(in, f, bits / 8, (uint##bits##_t)v,           \
				(uint##bits##_t) * (const ctype *)pv, err);   \
	return 0;                                                             \
}                                                                             \
const struct colo_vmstate_info colo_vmstate_info_##cname##_equal = {        \
	.name = qname, .get = get_##cname##_equal, .put = put_##cname,       \
};

DEFINE_EQUAL(uint8, "uint8 equal", uint8_t, 8)
DEFINE_EQUAL(uint16, "uint16 equal", uint16_t, 16)
DEFINE_EQUAL(int32, "int32 equal", int32_t, 32)
DEFINE_EQUAL(uint32, "uint32 equal", uint32_t, 32)
DEFINE_EQUAL(uint64, "int64 equal", uint64_t, 64)

/* Raw bytes. */
static int get_buffer(struct colo_in *in, void *pv, size_t size,
		      const struct colo_vmstate_field *f, struct colo_err *err)
{
	(void)f; (void)err;
	return colo_in_copy(in, pv, size);
}

static void put_buffer(struct colo_buf *out, const void *pv, size_t size,
		       const struct colo_vmstate_field *f)
{
	(void)f;
	colo_buf_put(out, pv, size);
}

const struct colo_vmstate_info colo_vmstate_info_buffer = {
	.name = "buffer", .get = get_buffer, .put = put_buffer,
};

/* Space that once held fields: zeros out, skipped in. */
static int get_unused(struct colo_in *in, void *pv, size_t size,
		      const struct colo_vmstate_field *f, struct colo_err *err)
{
	(void)pv; (void)f; (void)err;
	return colo_in_skip(in, size);
}

static void put_unused(struct colo_buf *out, const void *pv, size_t size,
		       const struct colo_vmstate_field *f)
{
	(void)pv; (void)f;
	colo_buf_fill(out, 0, size);
}

const struct colo_vmstate_info colo_vmstate_info_unused_buffer = {
	.name = "unused_buffer", .get = get_unused, .put = put_unused,
};

/* Bitmaps: `size` is the number of bits; be64 words on the wire. */
static int get_bitmap(struct colo_in *in, void *pv, size_t size,
		      const struct colo_vmstate_field *f, struct colo_err *err)
{
	size_t words = (size + 63) / 64;
	const uint8_t *p;
	uint64_t *bmp = pv;
	int r;

	(void)f; (void)err;
	r = colo_in_bytes(in, &p, words * 8);
	if (r)
		return r;
	for (size_t i = 0; i < words; i++)
		bmp[i] = colo_load_be64(p + i * 8);
	return 0;
}

static void put_bitmap(struct colo_buf *out, const void *pv, size_t size,
		       const struct colo_vmstate_field *f)
{
	size_t words = (size + 63) / 64;
	const uint64_t *bmp = pv;

	(void)f;
	for (size_t i = 0; i < words; i++)
		colo_buf_put_be64(out, bmp[i]);
}

const struct colo_vmstate_info colo_vmstate_info_bitmap = {
	.name = "bitmap", .get = get_bitmap, .put = put_bitmap,
};
