/*
 * vmstate.h: device state described field by field, saved and loaded in
 * QEMU's vmstate encoding (DESIGN.md §3).
 *
 * A device declares a struct colo_vmstate_desc: name, version, the oldest
 * version it can load, a table of fields built with the macros below, and
 * optional subsections that are sent only when their needed() says so.  Save
 * writes the fields in table order (big-endian, no framing, exactly as QEMU
 * does) followed by the needed subsections; load reads them back with QEMU's
 * version rules:
 *   - a stream version above the description's version_id: "too new";
 *   - below minimum_version_id: "too old";
 *   - a field with version_id V exists in streams of version >= V, or where
 *     its field_exists(opaque, version) predicate says so;
 *   - a subsection whose name does not start with the parent's name ends
 *     the subsection list; one that does but is unknown is an error.
 * While saving, the vmdesc JSON of QEMU 7.2 (name, type, size, array_len /
 * index, nested "struct") can be built alongside (see vmdesc.h).
 *
 * Memory: the opaque struct belongs to the caller.  Fields flagged ALLOC
 * point to arrays made by colo_vmstate_alloc(): load replaces such an array
 * (freeing the old one, and what its elements hold), and the caller frees
 * the last one with colo_vmstate_free_allocs().  Never point an ALLOC field
 * at memory from plain malloc().
 *
 * Loading from a stream that is still arriving may stop with -EAGAIN after
 * some fields were stored; the caller loads the unit again once more bytes
 * are there.  pre_load may therefore run more than once for one device;
 * post_load runs once, after every byte of the device was read.
 *
 * Descriptions are immutable tables and may be shared between threads; a
 * save or load works on one opaque at a time.
 */
#ifndef COLO_VMSTATE_H
#define COLO_VMSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "in.h"

struct json_t;
struct colo_vmstate_field;

/* A field type: QEMU's type name (it appears in the vmdesc) and codec. */
struct colo_vmstate_info {
	const char *name;
	/* Read `size` bytes' worth of one element into pv. */
	int (*get)(struct colo_in *in, void *pv, size_t size,
		   const struct colo_vmstate_field *f, struct colo_err *err);
	/* Write one element. */
	void (*put)(struct colo_buf *out, const void *pv, size_t size,
		    const struct colo_vmstate_field *f);
};

enum {
	COLO_VMS_SINGLE = 0x0001,
	COLO_VMS_POINTER = 0x0002,       /* the field holds a pointer to the data */
	COLO_VMS_ARRAY = 0x0004,         /* `num` elements */
	COLO_VMS_STRUCT = 0x0008,        /* nested description in `vmsd` */
	COLO_VMS_VARRAY_INT32 = 0x0010,  /* count in an int32 field */
	COLO_VMS_BUFFER = 0x0020,        /* `size` bytes, one element */
	COLO_VMS_VARRAY_UINT16 = 0x0080,
	COLO_VMS_VBUFFER = 0x0100,       /* byte length in a uint32 field */
	COLO_VMS_VARRAY_UINT8 = 0x0400,
	COLO_VMS_VARRAY_UINT32 = 0x0800,
	COLO_VMS_MUST_EXIST = 0x1000,    /* load fails if the field is absent */
	COLO_VMS_ALLOC = 0x2000,         /* with POINTER: load allocates */
};

#define COLO_VMS_VARRAY_ANY (COLO_VMS_VARRAY_INT32 | COLO_VMS_VARRAY_UINT16 | \
			     COLO_VMS_VARRAY_UINT8 | COLO_VMS_VARRAY_UINT32)

struct colo_vmstate_desc;

struct colo_vmstate_field {
	const char *name;
	size_t offset;             /* of the field in the opaque struct */
	size_t size;               /* bytes of one element (bits for bitmaps) */
	size_t cap;                /* storage limit: elements (VARRAY) or bytes
				      (VBUFFER) when the storage is fixed; 0 for
				      allocated storage */
	int num;                   /* ARRAY: element count */
	size_t num_offset;         /* VARRAY: offset of the count field */
	size_t size_offset;        /* VBUFFER: offset of the uint32 length */
	const struct colo_vmstate_info *info;
	uint32_t flags;
	const struct colo_vmstate_desc *vmsd;   /* STRUCT */
	int version_id;            /* exists in stream versions >= this */
	bool (*field_exists)(void *opaque, int version_id);
	const char *err_hint;      /* appended to mismatch errors */
};

struct colo_vmstate_desc {
	const char *name;
	int version_id;
	int minimum_version_id;
	/* Load hooks may refuse with a message; see the note on -EAGAIN. */
	int (*pre_load)(void *opaque, struct colo_err *err);
	int (*post_load)(void *opaque, int version_id, struct colo_err *err);
	int (*pre_save)(void *opaque, struct colo_err *err);
	void (*post_save)(void *opaque);
	/* Subsections only: send it?  NULL means always. */
	bool (*needed)(void *opaque);
	const struct colo_vmstate_field *fields;        /* ends with END */
	const struct colo_vmstate_desc *const *subsections; /* NULL-terminated */
};

/* Largest array one ALLOC field may make a stream allocate. */
#define COLO_VMSTATE_ALLOC_MAX (64u << 20)

/*
 * Save opaque as described.  vmdesc, when not NULL, is a JSON object that
 * receives "vmsd_name", "version", "fields" and "subsections" (QEMU's shape).
 */
int colo_vmstate_save(struct colo_buf *out, const struct colo_vmstate_desc *vmsd,
		      void *opaque, struct json_t *vmdesc, struct colo_err *err);

/*
 * Load a payload saved with version `version_id` of the description.
 * Returns 0, -EAGAIN (need more bytes: see in.h), or a negative errno with
 * err set ("vmstate 'NAME' field 'F': ... at offset N").
 */
int colo_vmstate_load(struct colo_in *in, const struct colo_vmstate_desc *vmsd,
		      void *opaque, int version_id, struct colo_err *err);

/* A zeroed array for an ALLOC field (NULL when count or elem is 0). */
void *colo_vmstate_alloc(size_t count, size_t elem);

/* Free what ALLOC fields point to (recursively) and set them to NULL. */
void colo_vmstate_free_allocs(const struct colo_vmstate_desc *vmsd, void *opaque);

/*
 * Elements of field f of the struct at opaque: `num` for an array, the
 * count field's value for a VARRAY (refused when negative or over `cap`),
 * 1 otherwise.  at: the stream offset for the message, or
 * COLO_VMSTATE_NO_OFFSET.
 */
#define COLO_VMSTATE_NO_OFFSET UINT64_MAX
int colo_vmstate_field_count(const struct colo_vmstate_field *f, const void *opaque,
			     uint64_t *n, uint64_t at, struct colo_err *err);

/* Is vmsd->needed(opaque) true (or absent)? */
bool colo_vmstate_needed(const struct colo_vmstate_desc *vmsd, void *opaque);

/* Field types, with QEMU's names. */
extern const struct colo_vmstate_info colo_vmstate_info_bool;
extern const struct colo_vmstate_info colo_vmstate_info_int8;
extern const struct colo_vmstate_info colo_vmstate_info_int16;
extern const struct colo_vmstate_info colo_vmstate_info_int32;
extern const struct colo_vmstate_info colo_vmstate_info_int64;
extern const struct colo_vmstate_info colo_vmstate_info_uint8;
extern const struct colo_vmstate_info colo_vmstate_info_uint16;
extern const struct colo_vmstate_info colo_vmstate_info_uint32;
extern const struct colo_vmstate_info colo_vmstate_info_uint64;
extern const struct colo_vmstate_info colo_vmstate_info_float64;
extern const struct colo_vmstate_info colo_vmstate_info_uint8_equal;
extern const struct colo_vmstate_info colo_vmstate_info_uint16_equal;
extern const struct colo_vmstate_info colo_vmstate_info_int32_equal;
extern const struct colo_vmstate_info colo_vmstate_info_uint32_equal;
extern const struct colo_vmstate_info colo_vmstate_info_uint64_equal;
extern const struct colo_vmstate_info colo_vmstate_info_buffer;
extern const struct colo_vmstate_info colo_vmstate_info_unused_buffer;
extern const struct colo_vmstate_info colo_vmstate_info_bitmap;

/*
 * Declaration macros.  Each checks at compile time that the struct member
 * has the C type the wire type needs: a mismatch does not compile.
 */
#define COLO__TYPECHECK(ctype, st, f) (0 * sizeof(_Generic(((st *)0)->f, ctype: 0)))
#define COLO__OFFSET(st, f, ctype) (offsetof(st, f) + COLO__TYPECHECK(ctype, st, f))
#define COLO__ARRAY_LEN(st, f) (sizeof(((st *)0)->f) / sizeof(((st *)0)->f[0]))
#define COLO__ELEM_OFFSET(st, f, ctype) \
	(offsetof(st, f) + COLO__TYPECHECK(ctype, st, f[0]))

#define COLO_VMSTATE_SINGLE_TEST(f, st, ver, test, inf, ctype) {          \
	.name = #f, .version_id = (ver), .field_exists = (test),           \
	.size = sizeof(ctype), .info = &(inf), .flags = COLO_VMS_SINGLE,   \
	.offset = COLO__OFFSET(st, f, ctype) }

#define COLO_VMSTATE_SINGLE(f, st, ver, inf, ctype) \
	COLO_VMSTATE_SINGLE_TEST(f, st, ver, NULL, inf, ctype)

#define COLO_VMSTATE_BOOL_V(f, st, v)   COLO_VMSTATE_SINGLE(f, st, v, colo_vmstate_info_bool, bool)
#define COLO_VMSTATE_INT8_V(f, st, v)   COLO_VMSTATE_SINGLE(f, st, v, colo_vmstate_info_int8, int8_t)
#define COLO_VMSTATE_INT16_V(f, st, v)  COLO_VMSTATE_SINGLE(f, st, v, colo_vmstate_info_int16, int16_t)
#define COLO_VMSTATE_INT32_V(f, st, v)  COLO_VMSTATE_SINGLE(f, st, v, colo_vmstate_info_int32, int32_t)
#define COLO_VMSTATE_INT64_V(f, st, v)  COLO_VMSTATE_SINGLE(f, st, v, colo_vmstate_info_int64, int64_t)
#define COLO_VMSTATE_UINT8_V(f, st, v)  COLO_VMSTATE_SINGLE(f, st, v, colo_vmstate_info_uint8, uint8_t)
#define COLO_VMSTATE_UINT16_V(f, st, v) COLO_VMSTATE_SINGLE(f, st, v, colo_vmstate_info_uint16, uint16_t)
#define COLO_VMSTATE_UINT32_V(f, st, v) COLO_VMSTATE_SINGLE(f, st, v, colo_vmstate_info_uint32, uint32_t)
#define COLO_VMSTATE_UINT64_V(f, st, v) COLO_VMSTATE_SINGLE(f, st, v, colo_vmstate_info_uint64, uint64_t)
#define COLO_VMSTATE_FLOAT64_V(f, st, v) COLO_VMSTATE_SINGLE(f, st, v, colo_vmstate_info_float64, double)

#define COLO_VMSTATE_BOOL(f, st)    COLO_VMSTATE_BOOL_V(f, st, 0)
#define COLO_VMSTATE_INT8(f, st)    COLO_VMSTATE_INT8_V(f, st, 0)
#define COLO_VMSTATE_INT16(f, st)   COLO_VMSTATE_INT16_V(f, st, 0)
#define COLO_VMSTATE_INT32(f, st)   COLO_VMSTATE_INT32_V(f, st, 0)
#define COLO_VMSTATE_INT64(f, st)   COLO_VMSTATE_INT64_V(f, st, 0)
#define COLO_VMSTATE_UINT8(f, st)   COLO_VMSTATE_UINT8_V(f, st, 0)
#define COLO_VMSTATE_UINT16(f, st)  COLO_VMSTATE_UINT16_V(f, st, 0)
#define COLO_VMSTATE_UINT32(f, st)  COLO_VMSTATE_UINT32_V(f, st, 0)
#define COLO_VMSTATE_UINT64(f, st)  COLO_VMSTATE_UINT64_V(f, st, 0)
#define COLO_VMSTATE_FLOAT64(f, st) COLO_VMSTATE_FLOAT64_V(f, st, 0)

/* Present only where test(opaque, stream_version) is true. */
#define COLO_VMSTATE_UINT32_TEST(f, st, test) \
	COLO_VMSTATE_SINGLE_TEST(f, st, 0, test, colo_vmstate_info_uint32, uint32_t)
#define COLO_VMSTATE_UINT64_TEST(f, st, test) \
	COLO_VMSTATE_SINGLE_TEST(f, st, 0, test, colo_vmstate_info_uint64, uint64_t)

/* The loaded value must equal the local one (configuration checks). */
#define COLO_VMSTATE_UINT8_EQUAL(f, st, hint)  { .name = #f, .err_hint = (hint), \
	.size = 1, .info = &colo_vmstate_info_uint8_equal, .flags = COLO_VMS_SINGLE, \
	.offset = COLO__OFFSET(st, f, uint8_t) }
#define COLO_VMSTATE_UINT16_EQUAL(f, st, hint) { .name = #f, .err_hint = (hint), \
	.size = 2, .info = &colo_vmstate_info_uint16_equal, .flags = COLO_VMS_SINGLE, \
	.offset = COLO__OFFSET(st, f, uint16_t) }
#define COLO_VMSTATE_INT32_EQUAL(f, st, hint)  { .name = #f, .err_hint = (hint), \
	.size = 4, .info = &colo_vmstate_info_int32_equal, .flags = COLO_VMS_SINGLE, \
	.offset = COLO__OFFSET(st, f, int32_t) }
#define COLO_VMSTATE_UINT32_EQUAL(f, st, hint) { .name = #f, .err_hint = (hint), \
	.size = 4, .info = &colo_vmstate_info_uint32_equal, .flags = COLO_VMS_SINGLE, \
	.offset = COLO__OFFSET(st, f, uint32_t) }
#define COLO_VMSTATE_UINT64_EQUAL(f, st, hint) { .name = #f, .err_hint = (hint), \
	.size = 8, .info = &colo_vmstate_info_uint64_equal, .flags = COLO_VMS_SINGLE, \
	.offset = COLO__OFFSET(st, f, uint64_t) }

/* A fixed byte array member, sent whole. */
#define COLO_VMSTATE_BUFFER_V(f, st, v) { .name = #f, .version_id = (v),     \
	.size = sizeof(((st *)0)->f), .info = &colo_vmstate_info_buffer,       \
	.flags = COLO_VMS_BUFFER, .offset = COLO__ELEM_OFFSET(st, f, uint8_t) }
#define COLO_VMSTATE_BUFFER(f, st) COLO_VMSTATE_BUFFER_V(f, st, 0)

/* A byte array member of which the first `lenf` (uint32 member) bytes are sent. */
#define COLO_VMSTATE_VBUFFER_UINT32(f, st, lenf) { .name = #f,               \
	.cap = sizeof(((st *)0)->f), .info = &colo_vmstate_info_buffer,        \
	.flags = COLO_VMS_VBUFFER, .offset = COLO__ELEM_OFFSET(st, f, uint8_t),\
	.size_offset = COLO__OFFSET(st, lenf, uint32_t) }

/* A `uint8_t *` member of `lenf` bytes; load allocates it. */
#define COLO_VMSTATE_VBUFFER_ALLOC_UINT32(f, st, lenf) { .name = #f,         \
	.info = &colo_vmstate_info_buffer,                                     \
	.flags = COLO_VMS_VBUFFER | COLO_VMS_POINTER | COLO_VMS_ALLOC,         \
	.offset = COLO__OFFSET(st, f, uint8_t *),                              \
	.size_offset = COLO__OFFSET(st, lenf, uint32_t) }

/* n bytes that carry nothing: zeros on save, skipped on load. */
#define COLO_VMSTATE_UNUSED_V(v, n) { .name = "unused", .version_id = (v),    \
	.size = (n), .info = &colo_vmstate_info_unused_buffer,                 \
	.flags = COLO_VMS_BUFFER }
#define COLO_VMSTATE_UNUSED(n) COLO_VMSTATE_UNUSED_V(0, n)

/* A uint64_t array member holding nbits bits, sent as be64 words. */
#define COLO_VMSTATE_BITMAP(f, st, nbits) { .name = #f, .size = (nbits),     \
	.info = &colo_vmstate_info_bitmap, .flags = COLO_VMS_SINGLE,           \
	.offset = COLO__ELEM_OFFSET(st, f, uint64_t) +                         \
		  0 * sizeof(char[sizeof(((st *)0)->f) * 8 >= (nbits) ? 1 : -1]) }

/* A fixed array member of n elements of one wire type. */
#define COLO_VMSTATE_ARRAY(f, st, n, v, inf, ctype) { .name = #f,            \
	.version_id = (v), .num = (n), .size = sizeof(ctype), .info = &(inf), \
	.flags = COLO_VMS_ARRAY, .offset = COLO__ELEM_OFFSET(st, f, ctype) +   \
		  0 * sizeof(char[COLO__ARRAY_LEN(st, f) >= (size_t)(n) ? 1 : -1]) }

#define COLO_VMSTATE_UINT8_ARRAY(f, st, n)  COLO_VMSTATE_ARRAY(f, st, n, 0, colo_vmstate_info_uint8, uint8_t)
#define COLO_VMSTATE_UINT16_ARRAY(f, st, n) COLO_VMSTATE_ARRAY(f, st, n, 0, colo_vmstate_info_uint16, uint16_t)
#define COLO_VMSTATE_UINT32_ARRAY(f, st, n) COLO_VMSTATE_ARRAY(f, st, n, 0, colo_vmstate_info_uint32, uint32_t)
#define COLO_VMSTATE_UINT64_ARRAY(f, st, n) COLO_VMSTATE_ARRAY(f, st, n, 0, colo_vmstate_info_uint64, uint64_t)
#define COLO_VMSTATE_INT32_ARRAY(f, st, n)  COLO_VMSTATE_ARRAY(f, st, n, 0, colo_vmstate_info_int32, int32_t)
#define COLO_VMSTATE_INT64_ARRAY(f, st, n)  COLO_VMSTATE_ARRAY(f, st, n, 0, colo_vmstate_info_int64, int64_t)

/* A fixed array member of which the first `countf` elements are sent. */
#define COLO__VARRAY(f, st, countf, ctr, vflag, v, inf, ctype) { .name = #f, \
	.version_id = (v), .size = sizeof(ctype), .info = &(inf),              \
	.cap = COLO__ARRAY_LEN(st, f), .flags = (vflag),                       \
	.offset = COLO__ELEM_OFFSET(st, f, ctype),                             \
	.num_offset = COLO__OFFSET(st, countf, ctr) }
#define COLO_VMSTATE_VARRAY_UINT32(f, st, countf, v, inf, ctype) \
	COLO__VARRAY(f, st, countf, uint32_t, COLO_VMS_VARRAY_UINT32, v, inf, ctype)
#define COLO_VMSTATE_VARRAY_INT32(f, st, countf, v, inf, ctype) \
	COLO__VARRAY(f, st, countf, int32_t, COLO_VMS_VARRAY_INT32, v, inf, ctype)
#define COLO_VMSTATE_VARRAY_UINT16(f, st, countf, v, inf, ctype) \
	COLO__VARRAY(f, st, countf, uint16_t, COLO_VMS_VARRAY_UINT16, v, inf, ctype)
#define COLO_VMSTATE_VARRAY_UINT8(f, st, countf, v, inf, ctype) \
	COLO__VARRAY(f, st, countf, uint8_t, COLO_VMS_VARRAY_UINT8, v, inf, ctype)

/* A `ctype *` member pointing to `countf` elements; load allocates it. */
#define COLO_VMSTATE_VARRAY_UINT32_ALLOC(f, st, countf, v, inf, ctype) {     \
	.name = #f, .version_id = (v), .size = sizeof(ctype), .info = &(inf), \
	.flags = COLO_VMS_VARRAY_UINT32 | COLO_VMS_POINTER | COLO_VMS_ALLOC,   \
	.offset = COLO__OFFSET(st, f, ctype *),                                \
	.num_offset = COLO__OFFSET(st, countf, uint32_t) }

/* Nested structs. */
#define COLO_VMSTATE_STRUCT_V(f, st, v, desc, ctype) { .name = #f,          \
	.version_id = (v), .vmsd = &(desc), .size = sizeof(ctype),             \
	.flags = COLO_VMS_STRUCT, .offset = COLO__OFFSET(st, f, ctype) }
#define COLO_VMSTATE_STRUCT(f, st, desc, ctype) COLO_VMSTATE_STRUCT_V(f, st, 0, desc, ctype)

#define COLO_VMSTATE_STRUCT_ARRAY(f, st, n, desc, ctype) { .name = #f,       \
	.num = (n), .vmsd = &(desc), .size = sizeof(ctype),                    \
	.flags = COLO_VMS_STRUCT | COLO_VMS_ARRAY,                             \
	.offset = COLO__ELEM_OFFSET(st, f, ctype) +                            \
		  0 * sizeof(char[COLO__ARRAY_LEN(st, f) >= (size_t)(n) ? 1 : -1]) }

#define COLO_VMSTATE_STRUCT_VARRAY_UINT32(f, st, countf, desc, ctype) {     \
	.name = #f, .vmsd = &(desc), .size = sizeof(ctype),                    \
	.cap = COLO__ARRAY_LEN(st, f),                                         \
	.flags = COLO_VMS_STRUCT | COLO_VMS_VARRAY_UINT32,                     \
	.offset = COLO__ELEM_OFFSET(st, f, ctype),                             \
	.num_offset = COLO__OFFSET(st, countf, uint32_t) }

#define COLO_VMSTATE_STRUCT_VARRAY_UINT32_ALLOC(f, st, countf, desc, ctype) { \
	.name = #f, .vmsd = &(desc), .size = sizeof(ctype),                    \
	.flags = COLO_VMS_STRUCT | COLO_VMS_VARRAY_UINT32 | COLO_VMS_POINTER | \
		 COLO_VMS_ALLOC,                                               \
	.offset = COLO__OFFSET(st, f, ctype *),                                \
	.num_offset = COLO__OFFSET(st, countf, uint32_t) }

#define COLO_VMSTATE_END { .name = NULL }

#endif
