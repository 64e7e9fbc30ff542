/* test_vmstate.c: vmstate save/load, QEMU's version rules, vmdesc JSON. */
#include "config.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "vmstate.h"

/* ---- a device using every field kind ---- */

struct inner {
	uint16_t a;
	int32_t b;
	uint32_t blen;
	uint8_t *blob;          /* ALLOC inside an ALLOC'd array */
};

struct all {
	bool b;
	int8_t i8;
	int16_t i16;
	int32_t i32;
	int64_t i64;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;
	double f;
	uint8_t buf[5];
	uint32_t vlen;
	uint8_t vbuf[16];
	uint32_t alen;
	uint8_t *abuf;
	uint64_t bm[2];
	uint16_t arr[3];
	uint32_t n;
	uint32_t varr[6];
	struct inner in;
	struct inner ins[2];
	uint32_t nin;
	struct inner *pins;
	uint32_t v2;
	uint32_t eq;
	uint8_t n8;
	int64_t v8[4];
};

static const struct colo_vmstate_desc inner_vmsd = {
	.name = "inner",
	.version_id = 1,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT16(a, struct inner),
		COLO_VMSTATE_INT32(b, struct inner),
		COLO_VMSTATE_UINT32(blen, struct inner),
		COLO_VMSTATE_VBUFFER_ALLOC_UINT32(blob, struct inner, blen),
		COLO_VMSTATE_END,
	},
};

static const struct colo_vmstate_desc all_vmsd = {
	.name = "all",
	.version_id = 2,
	.minimum_version_id = 1,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_BOOL(b, struct all),
		COLO_VMSTATE_INT8(i8, struct all),
		COLO_VMSTATE_INT16(i16, struct all),
		COLO_VMSTATE_INT32(i32, struct all),
		COLO_VMSTATE_INT64(i64, struct all),
		COLO_VMSTATE_UINT8(u8, struct all),
		COLO_VMSTATE_UINT16(u16, struct all),
		COLO_VMSTATE_UINT32(u32, struct all),
		COLO_VMSTATE_UINT64(u64, struct all),
		COLO_VMSTATE_FLOAT64(f, struct all),
		COLO_VMSTATE_BUFFER(buf, struct all),
		COLO_VMSTATE_UINT32(vlen, struct all),
		COLO_VMSTATE_VBUFFER_UINT32(vbuf, struct all, vlen),
		COLO_VMSTATE_UINT32(alen, struct all),
		COLO_VMSTATE_VBUFFER_ALLOC_UINT32(abuf, struct all, alen),
		COLO_VMSTATE_BITMAP(bm, struct all, 70),
		COLO_VMSTATE_UNUSED(3),
		COLO_VMSTATE_UINT16_ARRAY(arr, struct all, 3),
		COLO_VMSTATE_UINT32(n, struct all),
		COLO_VMSTATE_VARRAY_UINT32(varr, struct all, n, 0, colo_vmstate_info_uint32,
					   uint32_t),
		COLO_VMSTATE_STRUCT(in, struct all, inner_vmsd, struct inner),
		COLO_VMSTATE_STRUCT_ARRAY(ins, struct all, 2, inner_vmsd, struct inner),
		COLO_VMSTATE_UINT32(nin, struct all),
		COLO_VMSTATE_STRUCT_VARRAY_UINT32_ALLOC(pins, struct all, nin, inner_vmsd,
							struct inner),
		COLO_VMSTATE_UINT32_V(v2, struct all, 2),
		COLO_VMSTATE_UINT32_EQUAL(eq, struct all, "eq is a build constant"),
		COLO_VMSTATE_UINT8(n8, struct all),
		COLO_VMSTATE_VARRAY_UINT8(v8, struct all, n8, 0, colo_vmstate_info_int64,
					  int64_t),
		COLO_VMSTATE_END,
	},
};

static void fill_inner(struct inner *x, struct colo_rng *r)
{
	x->a = (uint16_t)colo_rng_next(r);
	x->b = (int32_t)colo_rng_next(r);
	x->blen = (uint32_t)colo_rng_below(r, 5);
	x->blob = colo_vmstate_alloc(x->blen, 1);
	colo_rng_fill(r, x->blob, x->blen);
}

static void fill_all(struct all *a, uint64_t seed)
{
	struct colo_rng r = { seed };

	memset(a, 0, sizeof(*a));
	a->b = colo_rng_next(&r) & 1;
	a->i8 = (int8_t)colo_rng_next(&r);
	a->i16 = (int16_t)colo_rng_next(&r);
	a->i32 = (int32_t)colo_rng_next(&r);
	a->i64 = (int64_t)colo_rng_next(&r);
	a->u8 = (uint8_t)colo_rng_next(&r);
	a->u16 = (uint16_t)colo_rng_next(&r);
	a->u32 = (uint32_t)colo_rng_next(&r);
	a->u64 = colo_rng_next(&r);
	a->f = (double)(int64_t)colo_rng_next(&r) / 3.0;
	colo_rng_fill(&r, a->buf, sizeof(a->buf));
	a->vlen = (uint32_t)colo_rng_below(&r, 17);
	colo_rng_fill(&r, a->vbuf, a->vlen);
	a->alen = (uint32_t)colo_rng_below(&r, 40);
	a->abuf = colo_vmstate_alloc(a->alen, 1);
	colo_rng_fill(&r, a->abuf, a->alen);
	a->bm[0] = colo_rng_next(&r);
	a->bm[1] = colo_rng_next(&r) & 0x3f;
	for (int i = 0; i < 3; i++)
		a->arr[i] = (uint16_t)colo_rng_next(&r);
	a->n = (uint32_t)colo_rng_below(&r, 7);
	for (uint32_t i = 0; i < a->n; i++)
		a->varr[i] = (uint32_t)colo_rng_next(&r);
	fill_inner(&a->in, &r);
	fill_inner(&a->ins[0], &r);
	fill_inner(&a->ins[1], &r);
	a->nin = (uint32_t)colo_rng_below(&r, 4);
	a->pins = colo_vmstate_alloc(a->nin, sizeof(struct inner));
	for (uint32_t i = 0; i < a->nin; i++)
		fill_inner(&a->pins[i], &r);
	a->v2 = (uint32_t)colo_rng_next(&r);
	a->eq = 0xc0105eed;
	a->n8 = (uint8_t)colo_rng_below(&r, 5);
	for (uint8_t i = 0; i < a->n8; i++)
		a->v8[i] = (int64_t)colo_rng_next(&r);
}

static void assert_inner_eq(const struct inner *x, const struct inner *y)
{
	ck_assert_uint_eq(x->a, y->a);
	ck_assert_int_eq(x->b, y->b);
	ck_assert_uint_eq(x->blen, y->blen);
	if (x->blen)
		ck_assert_mem_eq(x->blob, y->blob, x->blen);
}

static void assert_all_eq(const struct all *a, const struct all *b)
{
	ck_assert(a->b == b->b);
	ck_assert_int_eq(a->i8, b->i8);
	ck_assert_int_eq(a->i16, b->i16);
	ck_assert_int_eq(a->i32, b->i32);
	ck_assert_int_eq(a->i64, b->i64);
	ck_assert_uint_eq(a->u8, b->u8);
	ck_assert_uint_eq(a->u16, b->u16);
	ck_assert_uint_eq(a->u32, b->u32);
	ck_assert_uint_eq(a->u64, b->u64);
	ck_assert_mem_eq(&a->f, &b->f, sizeof(double));
	ck_assert_mem_eq(a->buf, b->buf, sizeof(a->buf));
	ck_assert_uint_eq(a->vlen, b->vlen);
	ck_assert_mem_eq(a->vbuf, b->vbuf, a->vlen);
	ck_assert_uint_eq(a->alen, b->alen);
	if (a->alen)
		ck_assert_mem_eq(a->abuf, b->abuf, a->alen);
	ck_assert_uint_eq(a->bm[0], b->bm[0]);
	ck_assert_uint_eq(a->bm[1], b->bm[1]);
	ck_assert_mem_eq(a->arr, b->arr, sizeof(a->arr));
	ck_assert_uint_eq(a->n, b->n);
	ck_assert_mem_eq(a->varr, b->varr, a->n * sizeof(uint32_t));
	assert_inner_eq(&a->in, &b->in);
	assert_inner_eq(&a->ins[0], &b->ins[0]);
	assert_inner_eq(&a->ins[1], &b->ins[1]);
	ck_assert_uint_eq(a->nin, b->nin);
	for (uint32_t i = 0; i < a->nin; i++)
		assert_inner_eq(&a->pins[i], &b->pins[i]);
	ck_assert_uint_eq(a->v2, b->v2);
	ck_assert_uint_eq(a->n8, b->n8);
	ck_assert_mem_eq(a->v8, b->v8, a->n8 * sizeof(int64_t));
}

static void save_ok(const struct colo_vmstate_desc *d, void *o, struct colo_buf *out)
{
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(colo_vmstate_save(out, d, o, NULL, &err) == 0, "%s", err.msg);
}

static int load_buf(const struct colo_vmstate_desc *d, void *o, const struct colo_buf *b,
		    int version, struct colo_err *err)
{
	struct colo_in in;

	colo_err_clear(err);
	colo_in_init(&in, b->data, b->len, 0, true);
	return colo_vmstate_load(&in, d, o, version, err);
}

START_TEST(round_trip_every_type)
{
	const uint64_t base = COLO_TEST_SEED(0);

	for (uint64_t seed = base + 1; seed <= base + 300; seed++) {
		struct colo_buf out = COLO_BUF_INIT;
		struct all a, b;
		struct colo_err err;

		fill_all(&a, seed);
		memset(&b, 0, sizeof(b));
		b.eq = 0xc0105eed;
		save_ok(&all_vmsd, &a, &out);
		ck_assert_msg(load_buf(&all_vmsd, &b, &out, 2, &err) == 0, "%s", err.msg);
		assert_all_eq(&a, &b);
		/* Loading again into the same struct replaces its ALLOC arrays. */
		ck_assert_msg(load_buf(&all_vmsd, &b, &out, 2, &err) == 0, "%s", err.msg);
		assert_all_eq(&a, &b);
		colo_vmstate_free_allocs(&all_vmsd, &a);
		colo_vmstate_free_allocs(&all_vmsd, &b);
		ck_assert_ptr_null(b.pins);
		ck_assert_ptr_null(b.abuf);
		colo_buf_free(&out);
	}
}
END_TEST

/* Every prefix of a payload asks for more; the whole loads. */
START_TEST(every_prefix_is_eagain)
{
	struct colo_buf out = COLO_BUF_INIT;
	struct all a, b;
	struct colo_err err;

	fill_all(&a, 42);
	save_ok(&all_vmsd, &a, &out);
	memset(&b, 0, sizeof(b));
	b.eq = 0xc0105eed;
	for (size_t cut = 0; cut < out.len; cut++) {
		struct colo_in in;

		colo_err_clear(&err);
		colo_in_init(&in, out.data, cut, 0, false);
		ck_assert_int_eq(colo_vmstate_load(&in, &all_vmsd, &b, 2, &err), -EAGAIN);
		ck_assert_uint_gt(in.need, cut);
		ck_assert(!colo_err_isset(&err));
	}
	ck_assert_int_eq(load_buf(&all_vmsd, &b, &out, 2, &err), 0);
	assert_all_eq(&a, &b);
	colo_vmstate_free_allocs(&all_vmsd, &a);
	colo_vmstate_free_allocs(&all_vmsd, &b);
	colo_buf_free(&out);
}
END_TEST

/* ---- byte-exact encodings, computed by hand ---- */

struct small {
	uint8_t a;
	uint16_t b;
	uint32_t c;
	int64_t d;
	bool e;
	double f;
	uint8_t sub;
	uint16_t y;
};

static bool sub_needed(void *o)
{
	return ((struct small *)o)->sub != 0;
}

static const struct colo_vmstate_desc small_sub = {
	.name = "small/sub",
	.version_id = 3,
	.minimum_version_id = 1,
	.needed = sub_needed,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT16(y, struct small),
		COLO_VMSTATE_END,
	},
};

static const struct colo_vmstate_desc small_vmsd = {
	.name = "small",
	.version_id = 1,
	.minimum_version_id = 1,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT8(a, struct small),
		COLO_VMSTATE_UINT16(b, struct small),
		COLO_VMSTATE_UINT32(c, struct small),
		COLO_VMSTATE_INT64(d, struct small),
		COLO_VMSTATE_BOOL(e, struct small),
		COLO_VMSTATE_FLOAT64(f, struct small),
		COLO_VMSTATE_END,
	},
	.subsections = (const struct colo_vmstate_desc *const[]) { &small_sub, NULL },
};

START_TEST(exact_bytes)
{
	static const uint8_t want[] = {
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
		0x01,
		0x3f, 0xf8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,   /* 1.5 */
		0x05, 0x09, 's', 'm', 'a', 'l', 'l', '/', 's', 'u', 'b',
		0x00, 0x00, 0x00, 0x03, 0xab, 0xcd,
	};
	struct small s = { 0x01, 0x0203, 0x04050607, -2, true, 1.5, 1, 0xabcd };
	struct small t;
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_err err;

	save_ok(&small_vmsd, &s, &out);
	ck_assert_uint_eq(out.len, sizeof(want));
	ck_assert_mem_eq(out.data, want, sizeof(want));
	memset(&t, 0, sizeof(t));
	ck_assert_int_eq(load_buf(&small_vmsd, &t, &out, 1, &err), 0);
	ck_assert_uint_eq(t.d, (uint64_t)-2);
	ck_assert_uint_eq(t.y, 0xabcd);
	ck_assert(t.f == 1.5);

	/* Not needed: the subsection is not written at all. */
	s.sub = 0;
	colo_buf_reset(&out);
	save_ok(&small_vmsd, &s, &out);
	ck_assert_uint_eq(out.len, 24);
	memset(&t, 0, sizeof(t));
	t.y = 77;
	ck_assert_int_eq(load_buf(&small_vmsd, &t, &out, 1, &err), 0);
	ck_assert_uint_eq(t.y, 77);
	colo_buf_free(&out);
}
END_TEST

static const struct colo_vmstate_desc bm_vmsd = {
	.name = "bm", .version_id = 1,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_BITMAP(bm, struct all, 70),
		COLO_VMSTATE_END,
	},
};

START_TEST(bitmap_words_big_endian)
{
	struct all a;
	struct colo_buf out = COLO_BUF_INIT;
	static const uint8_t want[] = { 0x80, 0, 0, 0, 0, 0, 0, 0x01,
					0, 0, 0, 0, 0, 0, 0, 0x20 };

	memset(&a, 0, sizeof(a));
	a.bm[0] = 0x8000000000000001ull;
	a.bm[1] = 0x20;
	save_ok(&bm_vmsd, &a, &out);
	ck_assert_uint_eq(out.len, 16);
	ck_assert_mem_eq(out.data, want, 16);
	colo_buf_free(&out);
}
END_TEST

/* ---- version rules ---- */

struct ver {
	uint32_t a;
	uint32_t b;      /* from version 2 */
	uint32_t c;      /* when the predicate says so */
	bool with_c;
};

static bool c_exists(void *o, int version_id)
{
	(void)version_id;
	return ((struct ver *)o)->with_c;
}

#define VER_FIELDS                                                  \
	(const struct colo_vmstate_field[]) {                       \
		COLO_VMSTATE_UINT32(a, struct ver),                 \
		COLO_VMSTATE_UINT32_V(b, struct ver, 2),            \
		COLO_VMSTATE_UINT32_TEST(c, struct ver, c_exists),  \
		COLO_VMSTATE_END,                                   \
	}

static const struct colo_vmstate_desc ver1 = {
	.name = "ver", .version_id = 1, .minimum_version_id = 1, .fields = VER_FIELDS,
};
static const struct colo_vmstate_desc ver2 = {
	.name = "ver", .version_id = 2, .minimum_version_id = 1, .fields = VER_FIELDS,
};
static const struct colo_vmstate_desc ver3_min3 = {
	.name = "ver", .version_id = 3, .minimum_version_id = 3, .fields = VER_FIELDS,
};

START_TEST(versioned_fields)
{
	struct ver v = { 1, 2, 3, false }, w;
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_err err;

	/* Saved as version 1: b is not in the stream. */
	save_ok(&ver1, &v, &out);
	ck_assert_uint_eq(out.len, 4);
	memset(&w, 0, sizeof(w));
	w.b = 99;
	ck_assert_int_eq(load_buf(&ver2, &w, &out, 1, &err), 0);
	ck_assert_uint_eq(w.a, 1);
	ck_assert_uint_eq(w.b, 99);

	/* Version 2 carries b; the predicate adds c. */
	colo_buf_reset(&out);
	v.with_c = true;
	save_ok(&ver2, &v, &out);
	ck_assert_uint_eq(out.len, 12);
	memset(&w, 0, sizeof(w));
	w.with_c = true;
	ck_assert_int_eq(load_buf(&ver2, &w, &out, 2, &err), 0);
	ck_assert_uint_eq(w.b, 2);
	ck_assert_uint_eq(w.c, 3);
	colo_buf_free(&out);
}
END_TEST

START_TEST(version_too_new_and_too_old)
{
	struct ver v = { 1, 2, 3, false }, w;
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_err err;

	save_ok(&ver2, &v, &out);
	ck_assert_int_eq(load_buf(&ver1, &w, &out, 2, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "ver: stream version 2 is too new (local version 1) "
			 "at offset 0");
	ck_assert_int_eq(load_buf(&ver3_min3, &w, &out, 2, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "ver: stream version 2 is too old (local minimum "
			 "version 3) at offset 0");
	colo_buf_free(&out);
}
END_TEST

static const struct colo_vmstate_desc must_vmsd = {
	.name = "me", .version_id = 1, .minimum_version_id = 1,
	.fields = (const struct colo_vmstate_field[]) {
		{ .name = "b", .version_id = 2, .size = 4,
		  .info = &colo_vmstate_info_uint32,
		  .flags = COLO_VMS_SINGLE | COLO_VMS_MUST_EXIST,
		  .offset = offsetof(struct ver, b) },
		COLO_VMSTATE_END,
	},
};

START_TEST(must_exist)
{
	struct ver w;
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_err err;

	ck_assert_int_eq(load_buf(&must_vmsd, &w, &out, 1, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "me: field 'b' must exist but is absent in version 1 "
			 "at offset 0");
}
END_TEST

/* ---- subsections ---- */

START_TEST(unknown_subsection)
{
	/* small's fields, then a subsection named like a child of "small". */
	struct small s = { 1, 2, 3, 4, true, 0.0, 0, 0 }, t;
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_err err;

	save_ok(&small_vmsd, &s, &out);
	colo_buf_put_u8(&out, 0x05);
	colo_buf_put_u8(&out, 10);
	colo_buf_put(&out, "small/nope", 10);
	colo_buf_put_be32(&out, 1);
	ck_assert_int_eq(load_buf(&small_vmsd, &t, &out, 1, &err), -ENOENT);
	ck_assert_str_eq(err.msg, "small: unknown subsection 'small/nope' at offset 24");
	colo_buf_free(&out);
}
END_TEST

START_TEST(foreign_subsection_ends_the_list)
{
	/* A subsection of another device is left for the caller, as in QEMU. */
	struct small s = { 1, 2, 3, 4, true, 0.0, 0, 0 }, t;
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_err err;
	struct colo_in in;

	save_ok(&small_vmsd, &s, &out);
	colo_buf_put_u8(&out, 0x05);
	colo_buf_put_u8(&out, 9);
	colo_buf_put(&out, "other/sub", 9);
	colo_buf_put_be32(&out, 1);
	colo_err_clear(&err);
	colo_in_init(&in, out.data, out.len, 0, true);
	ck_assert_int_eq(colo_vmstate_load(&in, &small_vmsd, &t, 1, &err), 0);
	ck_assert_uint_eq(in.pos, 24);
	colo_buf_free(&out);
}
END_TEST

START_TEST(subsection_version_checked)
{
	struct small s = { 1, 2, 3, 4, true, 0.0, 1, 5 }, t;
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_err err;

	save_ok(&small_vmsd, &s, &out);
	/* Patch the subsection version (3) to 9. */
	colo_buf_patch_be32(&out, 24 + 2 + 9, 9);
	ck_assert_int_eq(load_buf(&small_vmsd, &t, &out, 1, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "small: small/sub: stream version 9 is too new "
			 "(local version 3) at offset 39");
	colo_buf_free(&out);
}
END_TEST

/* ---- checks on what a stream may claim ---- */

START_TEST(equal_mismatch)
{
	struct all a, b;
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_err err;

	fill_all(&a, 7);
	save_ok(&all_vmsd, &a, &out);
	memset(&b, 0, sizeof(b));
	b.eq = 0x12345678;
	ck_assert_int_eq(load_buf(&all_vmsd, &b, &out, 2, &err), -EINVAL);
	ck_assert_msg(strstr(err.msg, "all: field 'eq' must equal the local value: "
			     "stream has 0xc0105eed, local is 0x12345678 (eq is a "
			     "build constant) at offset ") != NULL, "%s", err.msg);
	colo_vmstate_free_allocs(&all_vmsd, &a);
	colo_vmstate_free_allocs(&all_vmsd, &b);
	colo_buf_free(&out);
}
END_TEST

struct counted {
	uint32_t n;
	uint32_t v[4];
	uint32_t len;
	uint8_t buf[8];
	uint32_t an;
	uint64_t *arr;
};

static const struct colo_vmstate_desc counted_vmsd = {
	.name = "counted", .version_id = 1, .minimum_version_id = 1,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT32(n, struct counted),
		COLO_VMSTATE_VARRAY_UINT32(v, struct counted, n, 0, colo_vmstate_info_uint32,
					   uint32_t),
		COLO_VMSTATE_UINT32(len, struct counted),
		COLO_VMSTATE_VBUFFER_UINT32(buf, struct counted, len),
		COLO_VMSTATE_UINT32(an, struct counted),
		COLO_VMSTATE_VARRAY_UINT32_ALLOC(arr, struct counted, an, 0,
						 colo_vmstate_info_uint64, uint64_t),
		COLO_VMSTATE_END,
	},
};

START_TEST(count_beyond_capacity)
{
	struct counted c;
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_err err;

	colo_buf_put_be32(&out, 5);           /* 5 elements into room for 4 */
	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(load_buf(&counted_vmsd, &c, &out, 1, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "counted: field 'v': element count 5 exceeds the 4 "
			 "elements it can hold at offset 4");

	colo_buf_reset(&out);
	colo_buf_put_be32(&out, 0);
	colo_buf_put_be32(&out, 9);           /* 9 bytes into room for 8 */
	ck_assert_int_eq(load_buf(&counted_vmsd, &c, &out, 1, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "counted: field 'buf': length 9 exceeds the 8 bytes "
			 "it can hold at offset 8");
	colo_buf_free(&out);
}
END_TEST

START_TEST(alloc_limits)
{
	struct counted c;
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_err err;

	colo_buf_put_be32(&out, 0);
	colo_buf_put_be32(&out, 0);
	colo_buf_put_be32(&out, 0x40000000);  /* 1 Gi elements of 8 bytes */
	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(load_buf(&counted_vmsd, &c, &out, 1, &err), -EPROTO);
	ck_assert_str_eq(err.msg, "counted: field 'arr': 1073741824 elements of 8 bytes "
			 "exceed the 67108864-byte allocation limit at offset 12");

	colo_buf_reset(&out);
	colo_buf_put_be32(&out, 0);
	colo_buf_put_be32(&out, 0);
	colo_buf_put_be32(&out, 1000);        /* a lying count at the end */
	colo_buf_put_be64(&out, 1);
	ck_assert_int_eq(load_buf(&counted_vmsd, &c, &out, 1, &err), -EPROTO);
	ck_assert_str_eq(err.msg, "counted: field 'arr': 1000 elements announced but "
			 "only 8 bytes remain at offset 12");
	ck_assert_ptr_null(c.arr);
	colo_buf_free(&out);
}
END_TEST

/* ---- hooks ---- */

struct hooked {
	uint32_t v;
	int pre_load, post_load, pre_save, post_save;
	bool refuse;
};

static int h_pre_load(void *o, struct colo_err *err)
{
	(void)err;
	((struct hooked *)o)->pre_load++;
	return 0;
}

static int h_post_load(void *o, int version, struct colo_err *err)
{
	struct hooked *h = o;

	h->post_load++;
	if (h->v > 100)
		return colo_err_set(err, EINVAL, "v=%u is above 100 (version %d)", h->v,
				    version);
	return 0;
}

static int h_pre_save(void *o, struct colo_err *err)
{
	struct hooked *h = o;

	h->pre_save++;
	if (h->refuse)
		return colo_err_set(err, EBUSY, "busy");
	return 0;
}

static void h_post_save(void *o)
{
	((struct hooked *)o)->post_save++;
}

static const struct colo_vmstate_desc hooked_vmsd = {
	.name = "hooked", .version_id = 1, .minimum_version_id = 1,
	.pre_load = h_pre_load, .post_load = h_post_load,
	.pre_save = h_pre_save, .post_save = h_post_save,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT32(v, struct hooked),
		COLO_VMSTATE_END,
	},
};

START_TEST(hooks)
{
	struct hooked h = { .v = 5 }, g = { 0 };
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_err err;

	save_ok(&hooked_vmsd, &h, &out);
	ck_assert_int_eq(h.pre_save, 1);
	ck_assert_int_eq(h.post_save, 1);
	ck_assert_int_eq(load_buf(&hooked_vmsd, &g, &out, 1, &err), 0);
	ck_assert_int_eq(g.pre_load, 1);
	ck_assert_int_eq(g.post_load, 1);
	ck_assert_uint_eq(g.v, 5);

	colo_buf_reset(&out);
	colo_buf_put_be32(&out, 500);
	ck_assert_int_eq(load_buf(&hooked_vmsd, &g, &out, 1, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "hooked: v=500 is above 100 (version 1)");

	colo_buf_reset(&out);
	h.refuse = true;
	colo_err_clear(&err);
	ck_assert_int_lt(colo_vmstate_save(&out, &hooked_vmsd, &h, NULL, &err), 0);
	ck_assert_str_eq(err.msg, "hooked: busy");
	ck_assert_int_eq(h.post_save, 1);
	colo_buf_free(&out);
}
END_TEST

/* ---- vmdesc ---- */

struct pair {
	uint8_t x;
	uint8_t sub;
};

static bool pair_sub_needed(void *o)
{
	return ((struct pair *)o)->sub != 0;
}

static const struct colo_vmstate_desc pair_sub = {
	.name = "pair/sub", .version_id = 1, .needed = pair_sub_needed,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT8(sub, struct pair),
		COLO_VMSTATE_END,
	},
};

static const struct colo_vmstate_desc pair_plain = {
	.name = "pair", .version_id = 1,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT8(x, struct pair),
		COLO_VMSTATE_END,
	},
};

static const struct colo_vmstate_desc pair_with_sub = {
	.name = "pair", .version_id = 1,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT8(x, struct pair),
		COLO_VMSTATE_END,
	},
	.subsections = (const struct colo_vmstate_desc *const[]) { &pair_sub, NULL },
};

struct holder {
	uint32_t arr[3];
	struct pair plain[2];
	struct pair subbed[2];
};

static const struct colo_vmstate_desc holder_vmsd = {
	.name = "holder", .version_id = 4, .minimum_version_id = 1,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT32_ARRAY(arr, struct holder, 3),
		COLO_VMSTATE_STRUCT_ARRAY(plain, struct holder, 2, pair_plain, struct pair),
		COLO_VMSTATE_STRUCT_ARRAY(subbed, struct holder, 2, pair_with_sub,
					  struct pair),
		COLO_VMSTATE_END,
	},
};

/* QEMU 7.2's shape: compressed arrays carry array_len, others one entry
 * per element with index; struct sizes include nested subsections. */
START_TEST(vmdesc_json_shape)
{
	struct holder h = { { 1, 2, 3 }, { { 4, 0 }, { 5, 0 } }, { { 6, 1 }, { 7, 0 } } };
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_err err;
	json_t *d = json_object();
	char *s;

	colo_err_clear(&err);
	ck_assert_int_eq(colo_vmstate_save(&out, &holder_vmsd, &h, d, &err), 0);
	s = json_dumps(d, 0);
	ck_assert_str_eq(s,
		"{\"vmsd_name\": \"holder\", \"version\": 4, \"fields\": ["
		"{\"name\": \"arr\", \"array_len\": 3, \"type\": \"uint32\", \"size\": 4}, "
		"{\"name\": \"plain\", \"array_len\": 2, \"type\": \"struct\", \"struct\": "
		"{\"vmsd_name\": \"pair\", \"version\": 1, \"fields\": [{\"name\": \"x\", "
		"\"type\": \"uint8\", \"size\": 1}]}, \"size\": 1}, "
		"{\"name\": \"subbed\", \"index\": 0, \"type\": \"struct\", \"struct\": "
		"{\"vmsd_name\": \"pair\", \"version\": 1, \"fields\": [{\"name\": \"x\", "
		"\"type\": \"uint8\", \"size\": 1}], \"subsections\": [{\"vmsd_name\": "
		"\"pair/sub\", \"version\": 1, \"fields\": [{\"name\": \"sub\", \"type\": "
		"\"uint8\", \"size\": 1}]}]}, \"size\": 16}, "
		"{\"name\": \"subbed\", \"index\": 1, \"type\": \"struct\", \"struct\": "
		"{\"vmsd_name\": \"pair\", \"version\": 1, \"fields\": [{\"name\": \"x\", "
		"\"type\": \"uint8\", \"size\": 1}]}, \"size\": 1}]}");
	/* 12 + 2 + (1 + 15) + 1 */
	ck_assert_uint_eq(out.len, 31);
	free(s);
	json_decref(d);
	colo_buf_free(&out);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("vmstate");
	TCase *tc = tcase_create("vmstate");

	tcase_add_test(tc, round_trip_every_type);
	tcase_add_test(tc, every_prefix_is_eagain);
	tcase_add_test(tc, exact_bytes);
	tcase_add_test(tc, bitmap_words_big_endian);
	tcase_add_test(tc, versioned_fields);
	tcase_add_test(tc, version_too_new_and_too_old);
	tcase_add_test(tc, must_exist);
	tcase_add_test(tc, unknown_subsection);
	tcase_add_test(tc, foreign_subsection_ends_the_list);
	tcase_add_test(tc, subsection_version_checked);
	tcase_add_test(tc, equal_mismatch);
	tcase_add_test(tc, count_beyond_capacity);
	tcase_add_test(tc, alloc_limits);
	tcase_add_test(tc, hooks);
	tcase_add_test(tc, vmdesc_json_shape);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
