/*
 * test_kvstore.c: the kv guest's store: commands and their flags, INCRBY's
 * strictness, a seeded random workload against a plain model, relocation
 * (the region copied to another address), ENOMEM leaving every byte as it
 * was, SCAN across table growth, Redis's glob, and what a loaded or
 * corrupted state can and cannot do.
 *
 * A few cases reach into the region to damage it on purpose; they use the
 * layout kvstore.c documents (entry: tag, next, hash, klen, vlen, key,
 * value; the table is meta.table_size u64 heads at meta.table_off).
 *
 * Under valgrind (LD_PRELOAD names vgpreload) the long loops run a tenth of
 * their rounds.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvstore.h"
#include "testutil.h"

#define ENTRY_HDR 40            /* tag, next, hash, klen, vlen */
#define E_NEXT 8
#define E_HASH 16
#define E_KLEN 24

static bool under_valgrind(void)
{
	const char *p = getenv("LD_PRELOAD");

	return p && strstr(p, "vgpreload");
}

static uint64_t scaled(uint64_t n)
{
	return under_valgrind() ? (n + 9) / 10 : n;
}

static uint64_t ld64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static void st64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/* ---- a store in malloc'd memory ---- */

struct store {
	uint8_t *mem;
	uint64_t size;
	struct colo_kv_meta m;
	struct colo_kvstore kv;
};

static void store_init(struct store *s, uint64_t size, uint64_t seed)
{
	struct colo_err err;

	s->size = size;
	s->mem = malloc(size);
	ck_assert_ptr_nonnull(s->mem);
	/* Not zeroed: format must not need it. */
	memset(s->mem, 0xa5, size);
	colo_err_clear(&err);
	ck_assert_msg(colo_kv_format(&s->kv, s->mem, size, &s->m, seed, &err) == 0, "%s",
		      err.msg);
}

static void store_free(struct store *s)
{
	free(s->mem);
	s->mem = NULL;
}

static void check_ok(const struct colo_kvstore *kv)
{
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(colo_kv_check(kv, &err) == 0, "check: %s", err.msg);
}

/* colo_kv_check fails and its message contains want. */
static void check_says(const struct colo_kvstore *kv, const char *want)
{
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_int_eq(colo_kv_check(kv, &err), -EINVAL);
	ck_assert_msg(strstr(err.msg, want), "check said '%s', wanted '%s'", err.msg, want);
}

static void expect_val(struct colo_kvstore *kv, const void *key, size_t klen,
		       const void *want, uint64_t wlen)
{
	const uint8_t *v;
	uint64_t vl;

	ck_assert_int_eq(colo_kv_get(kv, key, klen, &v, &vl), 1);
	ck_assert_uint_eq(vl, wlen);
	if (wlen)
		ck_assert_mem_eq(v, want, wlen);
}

static void expect_str(struct colo_kvstore *kv, const char *key, const char *want)
{
	expect_val(kv, key, strlen(key), want, strlen(want));
}

static void expect_none(struct colo_kvstore *kv, const void *key, size_t klen)
{
	const uint8_t *v;
	uint64_t vl;

	ck_assert_int_eq(colo_kv_get(kv, key, klen, &v, &vl), 0);
}

/* ---- a plain model: one slot per key id ---- */

struct mval {
	uint8_t *p;
	uint64_t len;
	bool live;
};

struct model {
	struct mval *v;
	unsigned keys;
	uint64_t live;
};

static void model_init(struct model *md, unsigned keys)
{
	md->v = calloc(keys, sizeof(*md->v));
	ck_assert_ptr_nonnull(md->v);
	md->keys = keys;
	md->live = 0;
}

static void model_free(struct model *md)
{
	for (unsigned i = 0; i < md->keys; i++)
		free(md->v[i].p);
	free(md->v);
}

static void model_set(struct model *md, unsigned id, const void *p, uint64_t len)
{
	struct mval *v = &md->v[id];
	uint8_t *n = malloc(len ? len : 1);

	ck_assert_ptr_nonnull(n);
	if (len)
		memcpy(n, p, len);
	free(v->p);
	v->p = n;
	v->len = len;
	md->live += !v->live;
	v->live = true;
}

static void model_del(struct model *md, unsigned id)
{
	struct mval *v = &md->v[id];

	free(v->p);
	v->p = NULL;
	v->len = 0;
	md->live -= v->live;
	v->live = false;
}

/* Key id -> bytes; every fifth key has a NUL and a 0xff in it. */
static size_t key_of(unsigned id, char *buf)
{
	int n = snprintf(buf, 32, "key:%u", id);

	if (id % 5 == 0) {
		buf[n++] = '\0';
		buf[n++] = (char)0xff;
	}
	return (size_t)n;
}

static void model_expect(struct colo_kvstore *kv, const struct model *md, unsigned id)
{
	char key[32];
	size_t kl = key_of(id, key);

	if (md->v[id].live)
		expect_val(kv, key, kl, md->v[id].p, md->v[id].len);
	else
		expect_none(kv, key, kl);
}

static void model_expect_all(struct colo_kvstore *kv, const struct model *md)
{
	for (unsigned id = 0; id < md->keys; id++)
		model_expect(kv, md, id);
	ck_assert_uint_eq(colo_kv_count(kv), md->live);
}

/* The reference for INCRBY: an integer is what prints back to itself. */
static bool ref_int(const uint8_t *p, uint64_t n, int64_t *out)
{
	char buf[32], back[32], *end;
	long long v;

	if (n == 0 || n >= sizeof(buf) || memchr(p, 0, n))
		return false;
	memcpy(buf, p, n);
	buf[n] = '\0';
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (errno || *end)
		return false;
	snprintf(back, sizeof(back), "%lld", v);
	if (strcmp(back, buf) != 0)
		return false;
	*out = v;
	return true;
}

/* ---- commands ---- */

START_TEST(commands_and_flags)
{
	static const char bkey[] = { 'a', '\0', 'b' };
	struct store s;
	uint64_t nl, writes = 0;
	int64_t n;

	store_init(&s, 1 << 20, 1);
	ck_assert_uint_eq(colo_kv_count(&s.kv), 0);
	expect_none(&s.kv, "k", 1);
	ck_assert_int_eq(colo_kv_set(&s.kv, "k", 1, "v1", 2, 0), 1);
	writes++;
	expect_str(&s.kv, "k", "v1");
	ck_assert_int_eq(colo_kv_set(&s.kv, "k", 1, "value2", 6, 0), 1);
	writes++;
	expect_str(&s.kv, "k", "value2");
	ck_assert_uint_eq(colo_kv_count(&s.kv), 1);

	/* NX: only if absent; XX: only if present. */
	ck_assert_int_eq(colo_kv_set(&s.kv, "k", 1, "nx", 2, COLO_KV_NX), 0);
	expect_str(&s.kv, "k", "value2");
	ck_assert_int_eq(colo_kv_set(&s.kv, "m", 1, "xx", 2, COLO_KV_XX), 0);
	expect_none(&s.kv, "m", 1);
	ck_assert_uint_eq(colo_kv_count(&s.kv), 1);
	ck_assert_int_eq(colo_kv_set(&s.kv, "m", 1, "nx", 2, COLO_KV_NX), 1);
	writes++;
	expect_str(&s.kv, "m", "nx");
	ck_assert_int_eq(colo_kv_set(&s.kv, "m", 1, "xx", 2, COLO_KV_XX), 1);
	writes++;
	expect_str(&s.kv, "m", "xx");
	ck_assert_uint_eq(s.m.writes, writes);

	ck_assert_int_eq(colo_kv_del(&s.kv, "k", 1), 1);
	writes++;
	ck_assert_int_eq(colo_kv_del(&s.kv, "k", 1), 0);
	expect_none(&s.kv, "k", 1);
	ck_assert_uint_eq(colo_kv_count(&s.kv), 1);

	ck_assert_int_eq(colo_kv_append(&s.kv, "a", 1, "xy", 2, &nl), 0);
	writes++;
	ck_assert_uint_eq(nl, 2);
	ck_assert_int_eq(colo_kv_append(&s.kv, "a", 1, "zzz", 3, &nl), 0);
	writes++;
	ck_assert_uint_eq(nl, 5);
	expect_str(&s.kv, "a", "xyzzz");
	ck_assert_int_eq(colo_kv_append(&s.kv, "a", 1, NULL, 0, &nl), 0);
	writes++;
	ck_assert_uint_eq(nl, 5);

	ck_assert_int_eq(colo_kv_incrby(&s.kv, "n", 1, 5, &n), 0);
	writes++;
	ck_assert_int_eq(n, 5);
	expect_str(&s.kv, "n", "5");
	ck_assert_int_eq(colo_kv_incrby(&s.kv, "n", 1, -7, &n), 0);
	writes++;
	ck_assert_int_eq(n, -2);
	expect_str(&s.kv, "n", "-2");
	ck_assert_int_eq(colo_kv_incrby(&s.kv, "a", 1, 1, &n), -EINVAL);
	expect_str(&s.kv, "a", "xyzzz");

	/* Empty key, empty value, NUL bytes in keys. */
	ck_assert_int_eq(colo_kv_set(&s.kv, "", 0, "empty", 5, 0), 1);
	writes++;
	expect_str(&s.kv, "", "empty");
	ck_assert_int_eq(colo_kv_set(&s.kv, "ev", 2, NULL, 0, 0), 1);
	writes++;
	expect_val(&s.kv, "ev", 2, NULL, 0);
	ck_assert_int_eq(colo_kv_set(&s.kv, bkey, 3, "bin", 3, 0), 1);
	writes++;
	expect_val(&s.kv, bkey, 3, "bin", 3);
	expect_none(&s.kv, "a\0c", 3);
	expect_str(&s.kv, "a", "xyzzz");
	ck_assert_uint_eq(colo_kv_count(&s.kv), 6);

	/* Only changing commands count. */
	ck_assert_uint_eq(s.m.writes, writes);
	check_ok(&s.kv);
	store_free(&s);
}
END_TEST

START_TEST(incrby_is_strict)
{
	static const struct {
		const char *val;
		int r;
		int64_t out;
	} cases[] = {
		{ "10", 0, 11 },
		{ "-5", 0, -4 },
		{ "0", 0, 1 },
		{ "-1", 0, 0 },
		{ "007", -EINVAL, 0 },
		{ "00", -EINVAL, 0 },
		{ "-0", -EINVAL, 0 },
		{ " 1", -EINVAL, 0 },
		{ "1 ", -EINVAL, 0 },
		{ "+1", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
		{ "-", -EINVAL, 0 },
		{ "1.5", -EINVAL, 0 },
		{ "0x10", -EINVAL, 0 },
		{ "abc", -EINVAL, 0 },
		{ "9223372036854775807", -ERANGE, 0 },
		{ "9223372036854775806", 0, INT64_MAX },
		{ "9223372036854775808", -EINVAL, 0 },
		{ "18446744073709551615", -EINVAL, 0 },
		{ "18446744073709551616", -EINVAL, 0 },
		{ "99999999999999999999999", -EINVAL, 0 },
		{ "-9223372036854775808", 0, INT64_MIN + 1 },
		{ "-9223372036854775809", -EINVAL, 0 },
	};
	struct store s;
	int64_t out;
	char text[24];

	store_init(&s, 1 << 20, 2);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *val = cases[i].val;
		uint64_t writes;
		int r;

		ck_assert_int_eq(colo_kv_set(&s.kv, "i", 1, val, strlen(val), 0), 1);
		writes = s.m.writes;
		out = 12345;
		r = colo_kv_incrby(&s.kv, "i", 1, 1, &out);
		ck_assert_msg(r == cases[i].r, "'%s': %d, wanted %d", val, r, cases[i].r);
		if (r) {
			/* Refused: nothing changed, nothing counted. */
			ck_assert_int_eq(out, 12345);
			ck_assert_uint_eq(s.m.writes, writes);
			expect_str(&s.kv, "i", val);
			continue;
		}
		ck_assert_int_eq(out, cases[i].out);
		ck_assert_uint_eq(s.m.writes, writes + 1);
		snprintf(text, sizeof(text), "%" PRId64, out);
		expect_str(&s.kv, "i", text);
	}
	/* The other edge, a NUL inside, a missing key counting as 0. */
	ck_assert_int_eq(colo_kv_set(&s.kv, "i", 1, "-9223372036854775808", 20, 0), 1);
	ck_assert_int_eq(colo_kv_incrby(&s.kv, "i", 1, -1, &out), -ERANGE);
	ck_assert_int_eq(colo_kv_incrby(&s.kv, "i", 1, INT64_MAX, &out), 0);
	ck_assert_int_eq(out, -1);
	ck_assert_int_eq(colo_kv_set(&s.kv, "z", 1, "1\0", 2, 0), 1);
	ck_assert_int_eq(colo_kv_incrby(&s.kv, "z", 1, 1, &out), -EINVAL);
	ck_assert_int_eq(colo_kv_incrby(&s.kv, "new", 3, INT64_MIN, &out), 0);
	ck_assert_int_eq(out, INT64_MIN);
	expect_str(&s.kv, "new", "-9223372036854775808");
	ck_assert_int_eq(colo_kv_incrby(&s.kv, "new", 3, -1, &out), -ERANGE);
	check_ok(&s.kv);
	store_free(&s);
}
END_TEST

START_TEST(values_grow_shrink_and_move)
{
	struct store s;
	struct colo_rng rng = { COLO_TEST_SEED(3) };
	uint8_t *big = malloc(3 << 20), *want = malloc(3 << 20);
	uint64_t nl, used0, len = 0;

	ck_assert_ptr_nonnull(big);
	ck_assert_ptr_nonnull(want);
	colo_rng_fill(&rng, big, 3 << 20);
	store_init(&s, 16 << 20, 3);
	used0 = s.m.used;

	/* APPEND across every class from 64 bytes to 2 MiB. */
	for (uint64_t add = 1; len + add <= (2u << 20) - 64; add = add * 3 / 2 + 1) {
		ck_assert_int_eq(colo_kv_append(&s.kv, "grow", 4, big + len, add, &nl), 0);
		len += add;
		ck_assert_uint_eq(nl, len);
		expect_val(&s.kv, "grow", 4, big, len);
	}
	check_ok(&s.kv);
	/* A 1 MiB value in place, then a small one (moves to a small block). */
	ck_assert_int_eq(colo_kv_set(&s.kv, "grow", 4, big + 7, 1 << 20, 0), 1);
	expect_val(&s.kv, "grow", 4, big + 7, 1 << 20);
	ck_assert_int_eq(colo_kv_set(&s.kv, "grow", 4, "tiny", 4, 0), 1);
	expect_str(&s.kv, "grow", "tiny");
	ck_assert_uint_eq(s.m.used, used0 + 64);
	check_ok(&s.kv);

	/* Values that come from the store itself (SET k GET(k), APPEND k k). */
	ck_assert_int_eq(colo_kv_set(&s.kv, "self", 4, big, 100, 0), 1);
	for (int i = 0; i < 12; i++) {
		const uint8_t *v;
		uint64_t vl;

		ck_assert_int_eq(colo_kv_get(&s.kv, "self", 4, &v, &vl), 1);
		memcpy(want, v, vl);
		memcpy(want + vl, v, vl);
		ck_assert_int_eq(colo_kv_append(&s.kv, "self", 4, v, vl, &nl), 0);
		expect_val(&s.kv, "self", 4, want, 2 * vl);
		ck_assert_int_eq(colo_kv_get(&s.kv, "self", 4, &v, &vl), 1);
		ck_assert_int_eq(colo_kv_set(&s.kv, "copy", 4, v + 1, vl - 1, 0), 1);
		expect_val(&s.kv, "copy", 4, want + 1, vl - 1);
		ck_assert_int_eq(colo_kv_get(&s.kv, "self", 4, &v, &vl), 1);
		ck_assert_int_eq(colo_kv_set(&s.kv, "self", 4, v + 3, vl - 3, 0), 1);
		expect_val(&s.kv, "self", 4, want + 3, vl - 3);
	}
	check_ok(&s.kv);
	/* Too big for the region: ENOMEM, not a wrap-around. */
	ck_assert_int_eq(colo_kv_set(&s.kv, "huge", 4, big, SIZE_MAX, 0), -ENOMEM);
	ck_assert_int_eq(colo_kv_append(&s.kv, "self", 4, big, SIZE_MAX - 2, &nl), -ENOMEM);
	check_ok(&s.kv);
	store_free(&s);
	free(big);
	free(want);
}
END_TEST

/* ---- the random workload ---- */

#define WL_KEYS 6000
#define WL_BIG_KEYS 8

static uint64_t value_len(struct colo_rng *rng, unsigned id)
{
	if (id < WL_BIG_KEYS && colo_rng_below(rng, 2) == 0)
		return colo_rng_below(rng, (1 << 20) + 1);
	if (colo_rng_below(rng, 20) == 0)
		return colo_rng_below(rng, 4097);
	return colo_rng_below(rng, 49);
}

START_TEST(random_workload_matches_model)
{
	const uint64_t ops = scaled(200000);
	struct store s;
	struct model md;
	struct colo_rng rng = { COLO_TEST_SEED(0x5eed) };
	uint8_t *buf = malloc(2 << 20);
	uint64_t enomem = 0, grew = 0, ts = 0;

	ck_assert_ptr_nonnull(buf);
	store_init(&s, 64 << 20, 0xabcdef);
	model_init(&md, WL_KEYS);
	for (uint64_t i = 0; i < ops; i++) {
		unsigned id = (unsigned)colo_rng_below(&rng, WL_KEYS);
		unsigned op = (unsigned)colo_rng_below(&rng, 100);
		struct mval *mv = &md.v[id];
		char key[32];
		size_t kl = key_of(id, key);
		uint64_t len, nl;
		int64_t iv, out;
		int r;

		if (op < 30) {
			int flags = (int)colo_rng_below(&rng, 4) % 3;   /* 0, NX, XX, 0 */
			int want = ((flags & COLO_KV_NX) && mv->live) ||
				   ((flags & COLO_KV_XX) && !mv->live) ? 0 : 1;

			len = value_len(&rng, id);
			colo_rng_fill(&rng, buf, len);
			r = colo_kv_set(&s.kv, key, kl, buf, len, flags);
			if (r == -ENOMEM)
				enomem++;
			else
				ck_assert_int_eq(r, want);
			if (r == 1)
				model_set(&md, id, buf, len);
		} else if (op < 45) {
			model_expect(&s.kv, &md, id);
		} else if (op < 60) {
			ck_assert_int_eq(colo_kv_del(&s.kv, key, kl), mv->live);
			model_del(&md, id);
		} else if (op < 75) {
			len = colo_rng_below(&rng, id < WL_BIG_KEYS ? 65536 : 64);
			if (mv->len + len > (2u << 20) - 64)
				len = 0;
			colo_rng_fill(&rng, buf, len);
			r = colo_kv_append(&s.kv, key, kl, buf, len, &nl);
			if (r == -ENOMEM) {
				enomem++;
			} else {
				ck_assert_int_eq(r, 0);
				ck_assert_uint_eq(nl, mv->len + len);
				if (mv->live) {
					memmove(buf + mv->len, buf, len);
					memcpy(buf, mv->p, mv->len);
				}
				model_set(&md, id, buf, nl);
			}
		} else if (op < 90) {
			int64_t by = colo_rng_below(&rng, 10) == 0 ? (int64_t)colo_rng_next(&rng)
				     : (int64_t)colo_rng_below(&rng, 2001) - 1000;
			int want = 0;

			iv = 0;
			if (mv->live && !ref_int(mv->p, mv->len, &iv))
				want = -EINVAL;
			else if ((by > 0 && iv > INT64_MAX - by) || (by < 0 && iv < INT64_MIN - by))
				want = -ERANGE;
			r = colo_kv_incrby(&s.kv, key, kl, by, &out);
			if (r == -ENOMEM) {
				enomem++;
			} else {
				ck_assert_int_eq(r, want);
			}
			if (r == 0) {
				ck_assert_int_eq(out, iv + by);
				len = (uint64_t)snprintf((char *)buf, 32, "%" PRId64, out);
				model_set(&md, id, buf, len);
			}
		} else {
			/* Numbers (some of them INCRBY's edge cases) as plain SETs. */
			iv = colo_rng_below(&rng, 4) == 0 ? (int64_t)colo_rng_next(&rng)
			     : (int64_t)colo_rng_below(&rng, 100);
			len = (uint64_t)snprintf((char *)buf, 32, "%" PRId64, iv);
			if (colo_rng_below(&rng, 8) == 0)
				buf[len++] = ' ';
			ck_assert_int_eq(colo_kv_set(&s.kv, key, kl, buf, len, 0), 1);
			model_set(&md, id, buf, len);
		}
		if (s.m.table_size != ts) {
			grew += ts != 0;
			ts = s.m.table_size;
		}
		if (i % 10000 == 9999) {
			check_ok(&s.kv);
			ck_assert_uint_eq(colo_kv_count(&s.kv), md.live);
		}
		if (i % 50000 == 49999)
			model_expect_all(&s.kv, &md);
	}
	model_expect_all(&s.kv, &md);
	check_ok(&s.kv);
	/* ~3500 keys live: the table doubled from 1024 at least twice. */
	ck_assert_uint_ge(grew, under_valgrind() ? 1 : 2);
	ck_assert_uint_eq(enomem, 0);
	model_free(&md);
	store_free(&s);
	free(buf);
}
END_TEST

/* ---- relocation ---- */

static void random_ops(struct colo_kvstore *kv, struct model *md, struct colo_rng *rng,
		       uint64_t n, uint64_t maxlen)
{
	uint8_t *buf = malloc(2 * maxlen + 64);

	ck_assert_ptr_nonnull(buf);
	for (uint64_t i = 0; i < n; i++) {
		unsigned id = (unsigned)colo_rng_below(rng, md->keys);
		char key[32];
		size_t kl = key_of(id, key);
		uint64_t len = colo_rng_below(rng, maxlen + 1), nl;
		unsigned op = (unsigned)colo_rng_below(rng, 10);

		colo_rng_fill(rng, buf, len);
		if (op < 6) {
			ck_assert_int_eq(colo_kv_set(kv, key, kl, buf, len, 0), 1);
			model_set(md, id, buf, len);
		} else if (op < 8) {
			ck_assert_int_eq(colo_kv_del(kv, key, kl), md->v[id].live);
			model_del(md, id);
		} else if (md->v[id].len + len <= maxlen) {
			ck_assert_int_eq(colo_kv_append(kv, key, kl, buf, len, &nl), 0);
			memmove(buf + md->v[id].len, buf, len);
			if (md->v[id].len)
				memcpy(buf, md->v[id].p, md->v[id].len);
			model_set(md, id, buf, nl);
		}
	}
	free(buf);
}

START_TEST(relocated_region_reads_back)
{
	const uint64_t size = 8 << 20;
	struct store a;
	struct model md;
	struct colo_rng rng = { COLO_TEST_SEED(11) }, ra, rb;
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_kv_meta mb;
	struct colo_kvstore kb;
	struct colo_err err;
	struct colo_in in;
	uint8_t *raw, *b;

	store_init(&a, size, 0x1234);
	model_init(&md, 5000);
	random_ops(&a.kv, &md, &rng, 20000, 1000);
	ck_assert_uint_gt(a.m.table_size, 1024);
	check_ok(&a.kv);

	/* Another address, and not even 8-aligned; the meta through its
	 * vmstate, as a checkpoint carries it. */
	raw = malloc(size + 3);
	ck_assert_ptr_nonnull(raw);
	b = raw + 3;
	memcpy(b, a.mem, size);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_vmstate_save(&out, &colo_kv_meta_vmstate, &a.m, NULL, &err), 0);
	memset(&mb, 0, sizeof(mb));
	colo_in_init(&in, out.data, out.len, 0, true);
	ck_assert_int_eq(colo_vmstate_load(&in, &colo_kv_meta_vmstate, &mb, 1, &err), 0);
	ck_assert_msg(colo_kv_open(&kb, b, size, &mb, &err) == 0, "%s", err.msg);
	check_ok(&kb);
	model_expect_all(&kb, &md);

	/* The same commands on both give the same bytes. */
	ra = rng;
	rb = rng;
	{
		struct model mb_model;

		model_init(&mb_model, md.keys);
		for (unsigned i = 0; i < md.keys; i++)
			if (md.v[i].live)
				model_set(&mb_model, i, md.v[i].p, md.v[i].len);
		random_ops(&a.kv, &md, &ra, scaled(5000), 1000);
		random_ops(&kb, &mb_model, &rb, scaled(5000), 1000);
		ck_assert_mem_eq(&mb, &a.m, sizeof(mb));
		ck_assert_int_eq(memcmp(b, a.mem, a.m.heap_top), 0);
		model_free(&mb_model);
	}

	/* The original gone, the copy still serves every key. */
	store_free(&a);
	check_ok(&kb);
	model_expect_all(&kb, &md);
	model_free(&md);
	colo_buf_free(&out);
	free(raw);
}
END_TEST

/* ---- ENOMEM ---- */

struct snap {
	uint8_t *mem;
	struct colo_kv_meta m;
};

static void snap_take(struct snap *sn, const struct store *s)
{
	memcpy(sn->mem, s->mem, s->size);
	sn->m = s->m;
}

static void snap_same(const struct snap *sn, const struct store *s)
{
	ck_assert_int_eq(memcmp(sn->mem, s->mem, s->size), 0);
	ck_assert_int_eq(memcmp(&sn->m, &s->m, sizeof(s->m)), 0);
}

START_TEST(enomem_changes_nothing)
{
	struct store s;
	struct snap sn;
	struct colo_rng rng = { COLO_TEST_SEED(5) };
	const uint64_t seed = rng.s;
	uint8_t buf[8192];
	char key[48];
	unsigned nkeys = 0, small = 0, incr_enomem = 0;
	uint64_t nl, top;
	int64_t out;
	int r;

	store_init(&s, 256 << 10, 5);
	sn.mem = malloc(s.size);
	ck_assert_ptr_nonnull(sn.mem);
	colo_rng_fill(&rng, buf, sizeof(buf));
	/* Keys "i..." of every length up to 40 holding "9": INCRBY to "10" needs
	 * a bigger block for exactly the ones that fill theirs. */
	for (int l = 1; l <= 40; l++) {
		memset(key, 'i', (size_t)l);
		ck_assert_int_eq(colo_kv_set(&s.kv, key, (size_t)l, "9", 1, 0), 1);
	}
	/* Fill with values of random sizes until one does not fit. */
	for (;;) {
		uint64_t len = 1 + colo_rng_below(&rng, 3000);

		snprintf(key, sizeof(key), "f%u", nkeys);
		snap_take(&sn, &s);
		if ((r = colo_kv_set(&s.kv, key, strlen(key), buf, len, 0)) == -ENOMEM)
			break;
		ck_assert_int_eq(r, 1);
		nkeys++;
	}
	snap_same(&sn, &s);
	/* Then with tiny values until not even those fit. */
	for (;;) {
		snprintf(key, sizeof(key), "t%u", small);
		snap_take(&sn, &s);
		if ((r = colo_kv_set(&s.kv, key, strlen(key), buf, 1, 0)) == -ENOMEM)
			break;
		ck_assert_int_eq(r, 1);
		small++;
	}
	snap_same(&sn, &s);
	ck_assert_uint_gt(nkeys, 50);
	check_ok(&s.kv);

	/* Every kind of growth fails and changes nothing. */
	snap_take(&sn, &s);
	ck_assert_int_eq(colo_kv_set(&s.kv, "new", 3, buf, 5000, 0), -ENOMEM);
	snap_same(&sn, &s);
	ck_assert_int_eq(colo_kv_set(&s.kv, "f0", 2, buf, 5000, 0), -ENOMEM);
	snap_same(&sn, &s);
	ck_assert_int_eq(colo_kv_set(&s.kv, "t0", 2, buf, 5000, COLO_KV_XX), -ENOMEM);
	snap_same(&sn, &s);
	ck_assert_int_eq(colo_kv_append(&s.kv, "f1", 2, buf, 5000, &nl), -ENOMEM);
	snap_same(&sn, &s);
	ck_assert_int_eq(colo_kv_append(&s.kv, "t1", 2, buf, sizeof(buf), &nl), -ENOMEM);
	snap_same(&sn, &s);
	ck_assert_int_eq(colo_kv_incrby(&s.kv, "new", 3, 1, &out), -ENOMEM);
	snap_same(&sn, &s);
	for (int l = 1; l <= 40; l++) {
		memset(key, 'i', (size_t)l);
		snap_take(&sn, &s);
		r = colo_kv_incrby(&s.kv, key, (size_t)l, 1, &out);
		if (r == -ENOMEM) {
			snap_same(&sn, &s);
			incr_enomem++;
			expect_val(&s.kv, key, (size_t)l, "9", 1);
		} else {
			ck_assert_int_eq(r, 0);
			ck_assert_int_eq(out, 10);
		}
	}
	ck_assert_uint_ge(incr_enomem, 1);
	check_ok(&s.kv);
	for (unsigned i = 0; i < small; i++) {
		snprintf(key, sizeof(key), "t%u", i);
		expect_val(&s.kv, key, strlen(key), buf, 1);
	}

	/* Deleting makes room: the same sizes fit again, from the free lists. */
	top = s.m.heap_top;
	for (unsigned i = 0; i < nkeys; i += 3) {
		snprintf(key, sizeof(key), "f%u", i);
		ck_assert_int_eq(colo_kv_del(&s.kv, key, strlen(key)), 1);
	}
	check_ok(&s.kv);
	rng.s = seed;
	colo_rng_fill(&rng, buf, sizeof(buf));
	for (unsigned i = 0; i < nkeys; i++) {
		uint64_t len = 1 + colo_rng_below(&rng, 3000);

		if (i % 3)
			continue;
		snprintf(key, sizeof(key), "g%u", i);
		ck_assert_int_eq(colo_kv_set(&s.kv, key, strlen(key), buf, len, 0), 1);
	}
	ck_assert_uint_eq(s.m.heap_top, top);
	check_ok(&s.kv);
	free(sn.mem);
	store_free(&s);
}
END_TEST

START_TEST(growth_skipped_when_memory_is_short)
{
	struct store s;
	uint8_t buf[64 << 10];
	char key[32];
	unsigned n = 0, fillers = 0;
	uint64_t tbytes;

	memset(buf, 'v', sizeof(buf));
	store_init(&s, 256 << 10, 6);
	tbytes = s.m.table_size * 8;
	for (; n < 1000; n++) {
		snprintf(key, sizeof(key), "g%u", n);
		ck_assert_int_eq(colo_kv_set(&s.kv, key, strlen(key), "x", 1, 0), 1);
	}
	/* Fill so that less than a doubled table's block is left, but room
	 * for the keys to come. */
	while (s.size - s.m.heap_top >= 2 * tbytes) {
		uint64_t room = s.size - s.m.heap_top - 2048, p = 1;

		while (p * 2 <= room)
			p *= 2;
		snprintf(key, sizeof(key), "filler%u", fillers++);
		ck_assert_int_eq(colo_kv_set(&s.kv, key, strlen(key), buf, p / 2, 0), 1);
	}
	ck_assert_uint_eq(s.m.table_size, 1024);
	/* Past the table size: each key is stored, the table stays. */
	while (colo_kv_count(&s.kv) <= 1030) {
		snprintf(key, sizeof(key), "g%u", n++);
		ck_assert_int_eq(colo_kv_set(&s.kv, key, strlen(key), "x", 1, 0), 1);
	}
	ck_assert_uint_eq(s.m.table_size, 1024);
	check_ok(&s.kv);
	for (unsigned i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "g%u", i);
		expect_val(&s.kv, key, strlen(key), "x", 1);
	}
	/* Memory back: the next insert grows the table. */
	for (unsigned i = 0; i < fillers; i++) {
		snprintf(key, sizeof(key), "filler%u", i);
		ck_assert_int_eq(colo_kv_del(&s.kv, key, strlen(key)), 1);
	}
	ck_assert_int_eq(colo_kv_set(&s.kv, "last", 4, "x", 1, 0), 1);
	ck_assert_uint_eq(s.m.table_size, 2048);
	check_ok(&s.kv);
	for (unsigned i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "g%u", i);
		expect_val(&s.kv, key, strlen(key), "x", 1);
	}
	store_free(&s);
}
END_TEST

/* ---- SCAN ---- */

struct seen {
	uint32_t *hits;        /* by id of "s<id>" */
	unsigned n;
	unsigned empty;        /* the empty key */
	unsigned calls;
	const uint8_t *lo, *hi; /* the region: keys must lie inside */
};

static void on_key(void *ud, const uint8_t *key, uint64_t klen)
{
	struct seen *sn = ud;
	char buf[32];
	unsigned id;

	ck_assert(key >= sn->lo && key + klen <= sn->hi);
	if (klen == 0) {
		sn->empty++;
		return;
	}
	ck_assert_uint_lt(klen, sizeof(buf));
	memcpy(buf, key, klen);
	buf[klen] = '\0';
	ck_assert_int_eq(sscanf(buf + 1, "%u", &id), 1);
	ck_assert_uint_lt(id, sn->n);
	sn->hits[id]++;
}

static void seen_init(struct seen *sn, unsigned n, const struct store *s)
{
	sn->hits = calloc(n, sizeof(*sn->hits));
	ck_assert_ptr_nonnull(sn->hits);
	sn->n = n;
	sn->empty = 0;
	sn->calls = 0;
	sn->lo = s->mem;
	sn->hi = s->mem + s->size;
}

static void scan_all(struct store *s, struct seen *sn, const char *pat, uint64_t count)
{
	uint64_t cursor = 0;

	memset(sn->hits, 0, sn->n * sizeof(*sn->hits));
	sn->empty = 0;
	sn->calls = 0;
	do {
		cursor = colo_kv_scan(&s->kv, cursor, pat, pat ? strlen(pat) : 0, count,
				      on_key, sn);
		sn->calls++;
	} while (cursor);
}

START_TEST(scan_visits_each_key_once)
{
	const unsigned n = 5000;
	struct store s;
	struct seen sn;
	char key[32];
	unsigned match = 0;

	store_init(&s, 4 << 20, 7);
	seen_init(&sn, n, &s);
	for (unsigned i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "s%u", i);
		ck_assert_int_eq(colo_kv_set(&s.kv, key, strlen(key), "v", 1, 0), 1);
	}
	ck_assert_int_eq(colo_kv_set(&s.kv, "", 0, "empty", 5, 0), 1);
	static const uint64_t counts[] = { 0, 1, 10, 1000, 1u << 20 };
	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		scan_all(&s, &sn, NULL, counts[c]);
		for (unsigned i = 0; i < n; i++)
			ck_assert_msg(sn.hits[i] == 1, "count %" PRIu64 ": s%u seen %u times",
				      counts[c], i, sn.hits[i]);
		ck_assert_uint_eq(sn.empty, 1);
		if (counts[c] == 10)
			ck_assert_uint_gt(sn.calls, 100);
		if (counts[c] == 1u << 20)
			ck_assert_uint_eq(sn.calls, 1);
	}
	/* "*" is every key, the empty one too; other patterns filter. */
	scan_all(&s, &sn, "*", 10);
	ck_assert_uint_eq(sn.empty, 1);
	scan_all(&s, &sn, "?*", 10);
	ck_assert_uint_eq(sn.empty, 0);
	scan_all(&s, &sn, "s1*", 10);
	for (unsigned i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "%u", i);
		ck_assert_uint_eq(sn.hits[i], key[0] == '1');
		match += sn.hits[i];
	}
	ck_assert_uint_eq(match, 1111);
	/* Any cursor is safe. */
	for (uint64_t c = 1; c; c <<= 1)
		colo_kv_scan(&s.kv, c | (c >> 3), NULL, 0, 3, on_key, &sn);
	free(sn.hits);
	store_free(&s);
}
END_TEST

START_TEST(scan_survives_growth)
{
	const unsigned n = 700;
	struct store s;
	struct seen sn;
	char key[32];
	uint64_t cursor = 0, ts0, changes = 0, ts;
	unsigned b = 0;

	store_init(&s, 8 << 20, 8);
	seen_init(&sn, n, &s);
	for (unsigned i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "s%u", i);
		ck_assert_int_eq(colo_kv_set(&s.kv, key, strlen(key), "v", 1, 0), 1);
	}
	ts0 = ts = s.m.table_size;
	do {
		cursor = colo_kv_scan(&s.kv, cursor, "s*", 2, 4, on_key, &sn);
		/* Between calls, keys the pattern skips: 7700 keys in all. */
		for (int k = 0; k < 40 && b < 7000; k++, b++) {
			snprintf(key, sizeof(key), "b%u", b);
			ck_assert_int_eq(colo_kv_set(&s.kv, key, strlen(key), "v", 1, 0), 1);
		}
		if (s.m.table_size != ts) {
			changes++;
			ts = s.m.table_size;
		}
	} while (cursor);
	ck_assert_uint_eq(ts0, 1024);
	ck_assert_uint_eq(s.m.table_size, 8192);
	ck_assert_uint_eq(changes, 3);
	for (unsigned i = 0; i < n; i++)
		ck_assert_msg(sn.hits[i] >= 1, "s%u never seen", i);
	check_ok(&s.kv);
	free(sn.hits);
	store_free(&s);
}
END_TEST

/* ---- glob ---- */

START_TEST(glob_is_redis)
{
	static const struct {
		const char *pat;
		const char *str;
		bool match;
	} cases[] = {
		{ "h?llo", "hello", true }, { "h?llo", "hallo", true },
		{ "h?llo", "hllo", false }, { "h?llo", "heello", false },
		{ "h*llo", "hllo", true }, { "h*llo", "heeeello", true },
		{ "h*llo", "hello", true }, { "h*llo", "hellox", false },
		{ "h[ae]llo", "hello", true }, { "h[ae]llo", "hallo", true },
		{ "h[ae]llo", "hillo", false },
		{ "h[^e]llo", "hallo", true }, { "h[^e]llo", "hbllo", true },
		{ "h[^e]llo", "hello", false },
		{ "h[a-b]llo", "hallo", true }, { "h[a-b]llo", "hbllo", true },
		{ "h[a-b]llo", "hcllo", false },
		{ "h[b-a]llo", "hallo", true },          /* reversed range */
		{ "h[^a-b]llo", "hcllo", true }, { "h[^a-b]llo", "hallo", false },
		{ "h\\*llo", "h*llo", true }, { "h\\*llo", "hello", false },
		{ "h\\?llo", "h?llo", true }, { "h\\?llo", "hallo", false },
		{ "\\[a]", "[a]", true }, { "\\[a]", "a", false },
		{ "[\\]]", "]", true }, { "[\\]x]", "x", true }, { "[\\-]", "-", true },
		{ "[\\^]", "^", true }, { "\\a", "a", true }, { "\\", "\\", true },
		{ "a\\", "a\\", true },
		{ "*", "anything", true }, { "*", "", false },   /* Redis: "*" != "" */
		{ "**", "x", true }, { "", "", true }, { "", "a", false },
		{ "a", "", false }, { "?", "", false }, { "*?", "", false },
		{ "*?", "a", true }, { "?*", "a", true },
		{ "a*", "a", true }, { "a**", "a", true }, { "*a", "a", true },
		{ "*a*", "bab", true }, { "*a*b", "xaxxb", true }, { "*a*b", "xaxxbx", false },
		{ "HELLO", "hello", false }, { "h*", "Hello", false },
		{ "[", "[", false }, { "[", "", false },
		{ "[abc", "a", true }, { "[abc", "d", false },   /* unclosed set */
		{ "[]", "]", false }, { "[^]", "x", true },
		{ "[a-]", "a", true }, { "[a-]", "^", true },   /* a..']' */
		{ "[a-]", "-", false },
		{ "a[bc]d[!e]", "abd!", true },
		{ "a*a*a*a*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false },
		{ "*[0-9][0-9]", "key:42", true }, { "key:[0-9]", "key:x", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool m = colo_glob_match(cases[i].pat, strlen(cases[i].pat), cases[i].str,
					 strlen(cases[i].str));

		ck_assert_msg(m == cases[i].match, "'%s' vs '%s': %d", cases[i].pat,
			      cases[i].str, m);
	}
	/* Lengths, not NULs, end both. */
	ck_assert(colo_glob_match("a\0*", 3, "a\0bc", 4));
	ck_assert(!colo_glob_match("a\0*", 3, "a", 1));
	ck_assert(colo_glob_match("a?c", 3, "a\0c", 3));
	ck_assert(colo_glob_match("x", 1, "xyz", 1));
	ck_assert(colo_glob_match(NULL, 0, NULL, 0));
	/* Ranges compare bytes as signed char (Redis on x86-64). */
	ck_assert(!colo_glob_match("[\x01-\xff]", 5, "\x80", 1));
	ck_assert(colo_glob_match("[\x80-\xff]", 5, "\x90", 1));
	/* Redis gives up past 1000 nested stars (this would match). */
	{
		char pat[4001], str[3000];

		for (int i = 0; i < 2000; i++) {
			pat[2 * i] = '*';
			pat[2 * i + 1] = 'a';
		}
		memset(str, 'a', sizeof(str));
		ck_assert(!colo_glob_match(pat, 4000, str, sizeof(str)));
		ck_assert(colo_glob_match(pat, 40, str, sizeof(str)));
	}
}
END_TEST

/* ---- loaded state ---- */

/* n keys "key<i>" with values of 0 to 60 bytes, every fourth deleted. */
static void fill_some(struct store *s, unsigned n)
{
	static const char val[] = "0123456789abcdef0123456789abcdef"
				  "0123456789abcdef0123456789abcdef";
	char key[32];

	for (unsigned i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "key%u", i);
		ck_assert_int_eq(colo_kv_set(&s->kv, key, strlen(key), val, (i % 7) * 10, 0), 1);
	}
	for (unsigned i = 0; i < n; i += 4) {
		snprintf(key, sizeof(key), "key%u", i);
		ck_assert_int_eq(colo_kv_del(&s->kv, key, strlen(key)), 1);
	}
}

START_TEST(open_refuses_bad_meta)
{
	struct store s;
	struct colo_kvstore kv;
	struct colo_kv_meta m;
	struct colo_err err;
	uint64_t top;
	unsigned cls;

	store_init(&s, 1 << 20, 9);
	fill_some(&s, 3000);
	top = s.m.heap_top;
	for (cls = 0; !s.m.free_head[cls]; cls++)
		;

#define REFUSED(mutate, size, want) do {                                     \
		m = s.m;                                                     \
		mutate;                                                      \
		colo_err_clear(&err);                                        \
		ck_assert_int_eq(colo_kv_open(&kv, s.mem, (size), &m, &err), -EINVAL); \
		ck_assert_msg(strstr(err.msg, (want)), "'%s' lacks '%s'", err.msg, (want)); \
	} while (0)

	REFUSED((void)0, 4096, "kv: region of 4096 bytes is smaller than the minimum 65536");
	REFUSED((void)0, s.size / 2, "kv: meta is for a region of 1048576 bytes, this one "
		"has 524288");
	REFUSED(m.region_size = 1 << 21, s.size, "meta is for a region of 2097152 bytes");
	REFUSED(m.heap_top = s.size + 32, s.size, "kv: heap top 0x100020 is not a 32-aligned "
		"offset in 0x40..0x100000");
	REFUSED(m.heap_top = 32, s.size, "heap top 0x20");
	REFUSED(m.heap_top = top - 8, s.size, "is not a 32-aligned");
	REFUSED(m.table_size = 1000, s.size, "kv: table size 1000 is not a power of two >= 4");
	REFUSED(m.table_size = 0, s.size, "table size 0 is not");
	REFUSED(m.table_size = 2, s.size, "table size 2 is not");
	REFUSED(m.table_size = 1ull << 40, s.size, "buckets at");
	REFUSED(m.table_size = 1ull << 63, s.size, "is not a block inside the heap");
	REFUSED(m.table_off = top - 8, s.size, "is not a block inside the heap");
	REFUSED(m.table_off = 0, s.size, "at 0x0 is not a block");
	REFUSED(m.table_off += 8, s.size, "is not a block inside the heap");
	REFUSED(m.table_off = UINT64_MAX - 7, s.size, "is not a block inside the heap");
	REFUSED(m.count = UINT64_MAX, s.size, "kv: count 18446744073709551615 is more keys");
	REFUSED(m.used = top, s.size, "kv: used");
	REFUSED(m.used = 0, s.size, "kv: used 0 bytes");
	REFUSED(m.free_head[cls] = top, s.size, "is not a block inside the heap");
	REFUSED(m.free_head[0] = 32, s.size, "kv: free list 0 (32-byte blocks): head 0x20");
	REFUSED(m.free_head[1] = 64 + 8, s.size, "free list 1");
	REFUSED(m.free_head[47] = 64, s.size, "free list 47");
	REFUSED(m.free_head[5] = UINT64_MAX - 31, s.size, "free list 5");
	s.mem[3] ^= 1;
	REFUSED((void)0, s.size, "kv: region does not start with the store's magic");
	s.mem[3] ^= 1;
#undef REFUSED

	/* Right shape, wrong numbers: open takes it, check says what is off. */
	m = s.m;
	ck_assert_int_eq(colo_kv_open(&kv, s.mem, s.size, &m, &err), 0);
	check_ok(&kv);
	m.count++;
	check_says(&kv, "kv: count says 2251 keys, the table holds 2250");
	m = s.m;
	m.used += 32;
	check_says(&kv, "kv: used says");
	m = s.m;
	m.heap_top += 4096;
	snprintf(err.msg, sizeof(err.msg), "kv: 0x%" PRIx64 "..0x%" PRIx64 " belongs to no "
		 "block (leaked)", top, top + 4096);
	check_says(&kv, err.msg);
	m = s.m;
	m.seed ^= 1;
	check_says(&kv, "but its key hashes to");
	m = s.m;
	m.free_head[cls] = 0;
	check_says(&kv, "belongs to no block (leaked)");
	check_ok(&s.kv);
	store_free(&s);
}
END_TEST

/* Offset of the entry holding key (the layout in kvstore.c). */
static uint64_t entry_of(struct store *s, const char *key)
{
	const uint8_t *v;
	uint64_t vl;

	ck_assert_int_eq(colo_kv_get(&s->kv, key, strlen(key), &v, &vl), 1);
	return (uint64_t)(v - s->mem) - strlen(key) - ENTRY_HDR;
}

static void read_all(struct store *s, unsigned n)
{
	char key[32];

	for (unsigned i = 0; i < n; i++) {
		const uint8_t *v;
		uint64_t vl;

		snprintf(key, sizeof(key), "key%u", i);
		if (colo_kv_get(&s->kv, key, strlen(key), &v, &vl))
			ck_assert(v >= s->mem && vl <= s->size && v + vl <= s->mem + s->size);
	}
}

START_TEST(check_names_the_damage)
{
	const unsigned n = 2000;
	struct store s;
	struct snap sn;
	char want[256];
	uint64_t e, slot, mask, b, other, f;
	unsigned fc;

	store_init(&s, 1 << 20, 10);
	sn.mem = malloc(s.size);
	ck_assert_ptr_nonnull(sn.mem);
	fill_some(&s, n);
	check_ok(&s.kv);
	snap_take(&sn, &s);
	mask = s.m.table_size - 1;

	/* A bucket pointing past the heap. */
	e = entry_of(&s, "key1");
	b = ld64(s.mem + e + E_HASH) & mask;
	slot = s.m.table_off + b * 8;
	st64(s.mem + slot, s.m.heap_top + 64);
	snprintf(want, sizeof(want), "kv: bucket %" PRIu64 ": entry at offset 0x%" PRIx64
		 " is not a block inside the heap", b, s.m.heap_top + 64);
	check_says(&s.kv, want);
	expect_none(&s.kv, "key1", 4);
	read_all(&s, n);
	memcpy(s.mem, sn.mem, s.size);

	/* An entry moved to the head of another bucket. */
	other = (b + 1) & mask;
	{
		uint64_t at = slot, cur = ld64(s.mem + slot);

		while (cur != e) {
			at = cur + E_NEXT;
			cur = ld64(s.mem + at);
		}
		st64(s.mem + at, ld64(s.mem + e + E_NEXT));
		st64(s.mem + e + E_NEXT, ld64(s.mem + s.m.table_off + other * 8));
		st64(s.mem + s.m.table_off + other * 8, e);
	}
	snprintf(want, sizeof(want), "kv: bucket %" PRIu64 ": entry at offset 0x%" PRIx64
		 " hashes to bucket %" PRIu64, other, e, b);
	check_says(&s.kv, want);
	expect_none(&s.kv, "key1", 4);
	read_all(&s, n);
	memcpy(s.mem, sn.mem, s.size);
	check_ok(&s.kv);

	/* A cycle. */
	st64(s.mem + e + E_NEXT, e);
	snprintf(want, sizeof(want), "entry at offset 0x%" PRIx64 " overlaps another block "
		 "or is reached twice", e);
	check_says(&s.kv, want);
	expect_none(&s.kv, "key1x", 5);
	ck_assert_int_eq(colo_kv_set(&s.kv, "key1x", 5, "v", 1, 0), 1);
	read_all(&s, n);
	memcpy(s.mem, sn.mem, s.size);
	s.m = sn.m;

	/* A key byte changed. */
	s.mem[e + ENTRY_HDR + 1] ^= 0x20;
	check_says(&s.kv, "but its key hashes to");
	expect_none(&s.kv, "key1", 4);
	memcpy(s.mem, sn.mem, s.size);

	/* The tag (its low byte is the block class), the lengths. */
	s.mem[e] ^= 0x80;
	check_says(&s.kv, "has a block class that does not fit the heap");
	memcpy(s.mem, sn.mem, s.size);
	s.mem[e + 3] ^= 0x80;
	check_says(&s.kv, "has no entry tag");
	read_all(&s, n);
	memcpy(s.mem, sn.mem, s.size);
	st64(s.mem + e + E_KLEN, 1u << 30);
	check_says(&s.kv, "has key and value longer than its block");
	read_all(&s, n);
	memcpy(s.mem, sn.mem, s.size);

	/* Free lists: a damaged tag, a block listed twice. */
	for (fc = 0; !s.m.free_head[fc]; fc++)
		;
	f = s.m.free_head[fc];
	s.mem[f + 1] ^= 1;
	snprintf(want, sizeof(want), "kv: free list %u: block at 0x%" PRIx64 " has tag", fc, f);
	check_says(&s.kv, want);
	memcpy(s.mem, sn.mem, s.size);
	st64(s.mem + f + 8, f);
	check_says(&s.kv, "is listed twice");
	/* Allocating from it cannot go round the loop. */
	for (int i = 0; i < 50; i++) {
		char key[16];

		snprintf(key, sizeof(key), "new%d", i);
		ck_assert_int_eq(colo_kv_set(&s.kv, key, strlen(key), "v", 1, 0), 1);
	}
	memcpy(s.mem, sn.mem, s.size);
	s.m = sn.m;
	check_ok(&s.kv);
	free(sn.mem);
	store_free(&s);
}
END_TEST

static void count_key(void *ud, const uint8_t *key, uint64_t klen)
{
	struct seen *sn = ud;

	ck_assert(key >= sn->lo && key + klen <= sn->hi);
	sn->calls++;
}

START_TEST(corrupted_region_never_crashes)
{
	const unsigned n = 600, rounds = (unsigned)scaled(300);
	struct store s;
	struct colo_rng rng = { COLO_TEST_SEED(12) };
	struct colo_kv_meta pm;
	uint8_t *pristine;
	uint8_t buf[512];
	unsigned detected = 0;

	memset(buf, 'b', sizeof(buf));

	store_init(&s, 256 << 10, 12);
	fill_some(&s, n);
	check_ok(&s.kv);
	pristine = malloc(s.size);
	ck_assert_ptr_nonnull(pristine);
	memcpy(pristine, s.mem, s.size);
	pm = s.m;
	for (unsigned r = 0; r < rounds; r++) {
		struct colo_kvstore kv2;
		struct colo_kv_meta m2;
		struct colo_err err;
		struct seen sn = { .lo = s.mem, .hi = s.mem + s.size };
		unsigned flips = 1 + (unsigned)colo_rng_below(&rng, 16);
		uint64_t cursor = 0;
		int c;

		memcpy(s.mem, pristine, s.size);
		s.m = pm;
		for (unsigned i = 0; i < flips; i++) {
			/* Half of the rounds aim at the table. */
			uint64_t off = r % 2 ? s.m.table_off +
					       colo_rng_below(&rng, s.m.table_size * 8)
					     : colo_rng_below(&rng, s.m.heap_top);

			s.mem[off] ^= (uint8_t)(1 + colo_rng_below(&rng, 255));
		}
		colo_err_clear(&err);
		c = colo_kv_check(&s.kv, &err);
		ck_assert(c == 0 || c == -EINVAL);
		if (c) {
			ck_assert_msg(strncmp(err.msg, "kv: ", 4) == 0, "%s", err.msg);
			detected++;
		}
		read_all(&s, n);
		do {
			cursor = colo_kv_scan(&s.kv, cursor, "key1*", 5, 7, count_key, &sn);
		} while (cursor);
		for (int i = 0; i < 200; i++) {
			char key[32];
			uint64_t nl;
			int64_t out;
			unsigned id = (unsigned)colo_rng_below(&rng, n + 50);
			size_t kl = (size_t)snprintf(key, sizeof(key), "key%u", id);
			uint64_t len = colo_rng_below(&rng, sizeof(buf));

			switch (colo_rng_below(&rng, 4)) {
			case 0:
				colo_kv_set(&s.kv, key, kl, buf, len, 0);
				break;
			case 1:
				colo_kv_del(&s.kv, key, kl);
				break;
			case 2:
				colo_kv_append(&s.kv, key, kl, buf, len, &nl);
				break;
			default:
				colo_kv_incrby(&s.kv, key, kl, 1, &out);
				break;
			}
		}
		read_all(&s, n + 50);
		colo_err_clear(&err);
		c = colo_kv_check(&s.kv, &err);
		ck_assert(c == 0 || c == -EINVAL);
		/* Whatever happened, the meta is one a secondary would take. */
		m2 = s.m;
		ck_assert_msg(colo_kv_open(&kv2, s.mem, s.size, &m2, &err) == 0, "round %u: %s",
			      r, err.msg);
		colo_kv_flush(&s.kv);
		check_ok(&s.kv);
		ck_assert_uint_eq(colo_kv_count(&s.kv), 0);
	}
	fprintf(stderr, "# %u of %u corruptions reported by check\n", detected, rounds);
	ck_assert_uint_gt(detected, rounds / 2);
	free(pristine);
	store_free(&s);
}
END_TEST

/* ---- the device ---- */

START_TEST(meta_vmstate_round_trip)
{
	struct store s;
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_kv_meta m;
	struct colo_err err;
	struct colo_in in;
	unsigned nfree = 0;

	store_init(&s, 1 << 20, 0x0123456789abcdefull);
	fill_some(&s, 3000);
	for (unsigned c = 0; c < COLO_KV_CLASSES; c++)
		nfree += s.m.free_head[c] != 0;
	ck_assert_uint_ge(nfree, 2);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_vmstate_save(&out, &colo_kv_meta_vmstate, &s.m, NULL, &err), 0);
	ck_assert_str_eq(colo_kv_meta_vmstate.name, "kv");
	ck_assert_int_eq(colo_kv_meta_vmstate.version_id, 1);
	/* Eight u64 and the free heads, big-endian. */
	ck_assert_uint_eq(out.len, (8 + COLO_KV_CLASSES) * 8);
	ck_assert_uint_eq(colo_load_be64(out.data + 8), 0x0123456789abcdefull);
	memset(&m, 0xee, sizeof(m));
	colo_in_init(&in, out.data, out.len, 0, true);
	ck_assert_int_eq(colo_vmstate_load(&in, &colo_kv_meta_vmstate, &m, 1, &err), 0);
	ck_assert_mem_eq(&m, &s.m, sizeof(m));
	/* Short: refused, with a message. */
	colo_in_init(&in, out.data, out.len - 1, 0, true);
	colo_err_clear(&err);
	ck_assert_int_lt(colo_vmstate_load(&in, &colo_kv_meta_vmstate, &m, 1, &err), 0);
	colo_buf_free(&out);
	store_free(&s);
}
END_TEST

START_TEST(flush_keeps_the_seed)
{
	struct store s;
	uint64_t writes, seed = 77;

	store_init(&s, 1 << 20, seed);
	ck_assert_int_eq(colo_kv_format(&s.kv, s.mem, 1000, &s.m, seed, &(struct colo_err){ 0 }),
			 -EINVAL);
	store_free(&s);
	store_init(&s, 1 << 20, seed);
	fill_some(&s, 3000);
	writes = s.m.writes;
	colo_kv_flush(&s.kv);
	ck_assert_uint_eq(s.m.writes, writes + 1);
	ck_assert_uint_eq(s.m.seed, seed);
	ck_assert_uint_eq(colo_kv_count(&s.kv), 0);
	ck_assert_uint_eq(s.m.table_size, 1024);
	ck_assert_uint_eq(s.m.used, 1024 * 8);
	for (unsigned c = 0; c < COLO_KV_CLASSES; c++)
		ck_assert_uint_eq(s.m.free_head[c], 0);
	expect_none(&s.kv, "key1", 4);
	check_ok(&s.kv);
	ck_assert_int_eq(colo_kv_set(&s.kv, "key1", 4, "v", 1, 0), 1);
	expect_str(&s.kv, "key1", "v");
	check_ok(&s.kv);
	store_free(&s);
}
END_TEST

/* ---- colo_kv_track: every write of the region is handed over ---- */

struct marks {
	uint8_t *mask;               /* a byte per region byte: 1 once marked */
	uint64_t size, calls;
	bool out_of_range;
};

static void on_mark(void *ud, uint64_t off, uint64_t len)
{
	struct marks *mk = ud;

	mk->calls++;
	if (off > mk->size || len > mk->size - off) {
		mk->out_of_range = true;
		return;
	}
	memset(mk->mask + off, 1, len);
}

/* Every byte that differs from `before` was marked; then start afresh. */
static void all_changes_marked(struct store *s, uint8_t *before, struct marks *mk,
			       const char *what, uint64_t step)
{
	ck_assert_msg(!mk->out_of_range, "%s (step %" PRIu64 "): a mark outside the region",
		      what, step);
	uint64_t i = 0;

	while (i < s->size && (before[i] == s->mem[i] || mk->mask[i]))
		i++;
	ck_assert_msg(i == s->size, "%s (step %" PRIu64 "): byte %" PRIu64 " changed (0x%02x "
		      "to 0x%02x) and was not marked", what, step, i, before[i], s->mem[i]);
	memcpy(before, s->mem, s->size);
	memset(mk->mask, 0, s->size);
}

START_TEST(every_write_is_marked)
{
	struct colo_rng rng = { colo_test_seed_random("every_write_is_marked") };
	struct store s;
	struct marks mk = { 0 };
	struct colo_err err;
	uint8_t *before, val[700];
	uint64_t steps = scaled(3000), nl;
	int64_t out;

	store_init(&s, 256u << 10, 7);
	mk.size = s.size;
	mk.mask = calloc(1, s.size);
	before = malloc(s.size);
	ck_assert(mk.mask && before);
	memcpy(before, s.mem, s.size);
	colo_kv_track(&s.kv, on_mark, &mk);
	for (uint64_t i = 0; i < steps; i++) {
		char key[32];
		size_t kl = (size_t)snprintf(key, sizeof(key), "k%u",
					     (unsigned)colo_rng_below(&rng, 600));
		size_t vl = (size_t)colo_rng_below(&rng, sizeof(val));
		unsigned op = (unsigned)colo_rng_below(&rng, 100);

		colo_rng_fill(&rng, val, vl);
		if (op < 45)
			(void)colo_kv_set(&s.kv, key, kl, val, vl, (int)colo_rng_below(&rng, 3));
		else if (op < 60)
			(void)colo_kv_del(&s.kv, key, kl);
		else if (op < 75)
			(void)colo_kv_append(&s.kv, key, kl, val, vl % 40, &nl);
		else if (op < 99)
			(void)colo_kv_incrby(&s.kv, "ctr", 3, (int64_t)vl - 300, &out);
		else
			colo_kv_flush(&s.kv);
		all_changes_marked(&s, before, &mk, "a command", i);
	}
	ck_assert_uint_gt(mk.calls, steps);
	check_ok(&s.kv);
	/* format and open leave no hook: nothing is told any more */
	mk.calls = 0;
	colo_err_clear(&err);
	ck_assert_int_eq(colo_kv_open(&s.kv, s.mem, s.size, &s.m, &err), 0);
	(void)colo_kv_set(&s.kv, "after", 5, "x", 1, 0);
	ck_assert_uint_eq(mk.calls, 0);
	free(before);
	free(mk.mask);
	store_free(&s);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("kvstore");
	TCase *tc = tcase_create("kvstore");

	tcase_set_timeout(tc, under_valgrind() ? 600 : 60);
	tcase_add_test(tc, commands_and_flags);
	tcase_add_test(tc, incrby_is_strict);
	tcase_add_test(tc, values_grow_shrink_and_move);
	tcase_add_test(tc, random_workload_matches_model);
	tcase_add_test(tc, relocated_region_reads_back);
	tcase_add_test(tc, enomem_changes_nothing);
	tcase_add_test(tc, growth_skipped_when_memory_is_short);
	tcase_add_test(tc, scan_visits_each_key_once);
	tcase_add_test(tc, scan_survives_growth);
	tcase_add_test(tc, glob_is_redis);
	tcase_add_test(tc, open_refuses_bad_meta);
	tcase_add_test(tc, check_names_the_damage);
	tcase_add_test(tc, corrupted_region_never_crashes);
	tcase_add_test(tc, meta_vmstate_round_trip);
	tcase_add_test(tc, flush_keeps_the_seed);
	tcase_add_test(tc, every_write_is_marked);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
