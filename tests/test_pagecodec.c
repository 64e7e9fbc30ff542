/*
 * test_pagecodec.c: page codecs: round trips over the benchmark's workloads,
 * exact bytes of DELTA and XBZRLE, the per-page choice, base updates, and
 * decoders that refuse malformed input without touching the page.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "pagecodec.h"
#include "testutil.h"

#define PAGE COLO_PAGE_SIZE

enum workload { W_SPARSE8, W_SPARSE64, W_SPARSE512, W_SCATTER, W_RANDOM, W_TEXT,
		W_MOSTLY_ZERO, W_SAME, W_ZEROED, W_COUNT };

static void text(uint8_t *p, size_t n, struct colo_rng *r)
{
	static const char *words[] = { "colo ", "keeps ", "a ", "guest ", "alive ",
				       "across ", "failover, ", "checkpoint ", "page ",
				       "delta\n" };

	for (size_t i = 0; i < n;) {
		const char *w = words[colo_rng_below(r, 10)];

		for (size_t k = 0; w[k] && i < n; k++)
			p[i++] = (uint8_t)w[k];
	}
}

/* base: some previous content; page: base after the workload's writes. */
static void make_pair(enum workload w, uint64_t seed, uint8_t *base, uint8_t *page)
{
	struct colo_rng r = { seed };

	if (seed % 3 == 0)
		text(base, PAGE, &r);
	else
		colo_rng_fill(&r, base, PAGE);
	memcpy(page, base, PAGE);
	switch (w) {
	case W_SPARSE8:
	case W_SPARSE64:
	case W_SPARSE512: {
		size_t n = w == W_SPARSE8 ? 8 : w == W_SPARSE64 ? 64 : 512;
		size_t at = (size_t)colo_rng_below(&r, PAGE - n + 1);

		colo_rng_fill(&r, page + at, n);
		break;
	}
	case W_SCATTER:
		for (int k = 0; k < 16; k++)
			colo_rng_fill(&r, page + colo_rng_below(&r, PAGE - 8), 1 + colo_rng_below(&r, 8));
		break;
	case W_RANDOM:
		colo_rng_fill(&r, page, PAGE);
		break;
	case W_TEXT:
		text(page, PAGE, &r);
		break;
	case W_MOSTLY_ZERO:
		memset(page, 0, PAGE);
		for (int k = 0; k < 5; k++)
			page[colo_rng_below(&r, PAGE)] = (uint8_t)(1 + colo_rng_below(&r, 255));
		break;
	case W_SAME:
		break;
	case W_ZEROED:
		memset(page, 0, PAGE);
		break;
	case W_COUNT:
		break;
	}
}

static void check_decode(const struct colo_page_codec *c, const uint8_t *enc, size_t n,
			 const uint8_t *base, const uint8_t *page)
{
	uint8_t out[PAGE];
	struct colo_err err;

	memcpy(out, base, PAGE);
	colo_err_clear(&err);
	ck_assert_msg(c->decode(enc, n, out, &err) == 0, "%s: %s", c->name, err.msg);
	ck_assert_msg(memcmp(out, page, PAGE) == 0, "%s decodes to another page", c->name);
}

START_TEST(codecs_round_trip)
{
	static uint8_t base[PAGE], page[PAGE], enc[PAGE * 2];

	for (int w = 0; w < W_COUNT; w++) {
		for (uint64_t seed = 1; seed <= 60; seed++) {
			size_t n;

			make_pair((enum workload)w, seed * 7919 + (uint64_t)w, base, page);
			n = colo_delta_encode(page, base, enc, sizeof(enc));
			ck_assert_msg(n > 0 || memcmp(page, base, PAGE) == 0, "delta w%d", w);
			if (n)
				check_decode(&colo_codec_delta, enc, n, base, page);
			n = colo_delta_lz4_encode(page, base, enc, sizeof(enc));
			if (n)
				check_decode(&colo_codec_delta_lz4, enc, n, base, page);
			n = colo_xbzrle_encode(page, base, enc, PAGE);
			if (n)
				check_decode(&colo_codec_xbzrle, enc, n, base, page);
			n = colo_lz4_encode(page, enc, sizeof(enc));
			ck_assert_uint_gt(n, 0);
			check_decode(&colo_codec_lz4, enc, n, base, page);
		}
	}
}
END_TEST

/* The delta of a sparse write is never bigger than QEMU's XBZRLE. */
START_TEST(delta_not_worse_than_xbzrle_on_sparse_writes)
{
	static uint8_t base[PAGE], page[PAGE], enc[PAGE];
	size_t dsum = 0, xsum = 0;

	for (int w = W_SPARSE8; w <= W_SCATTER; w++)
		for (uint64_t seed = 1; seed <= 200; seed++) {
			make_pair((enum workload)w, seed, base, page);
			dsum += colo_delta_encode(page, base, enc, sizeof(enc));
			xsum += colo_xbzrle_encode(page, base, enc, sizeof(enc));
		}
	ck_assert_msg(dsum <= xsum, "delta %zu bytes, xbzrle %zu", dsum, xsum);
}
END_TEST

START_TEST(delta_exact_bytes)
{
	static uint8_t base[PAGE], page[PAGE], enc[64];
	static const uint8_t want[] = {
		10, 3, 'a', 'b', 'c',             /* gap 10, run of 3 */
		0x93, 0x1f, 1, 'z',               /* gap 3987 (ULEB), run of 1 */
	};
	size_t n;

	memset(base, 0, PAGE);
	memcpy(page, base, PAGE);
	memcpy(page + 10, "abc", 3);
	page[4000] = 'z';
	n = colo_delta_encode(page, base, enc, sizeof(enc));
	ck_assert_uint_eq(n, sizeof(want));
	ck_assert_mem_eq(enc, want, sizeof(want));

	/* Changed words next to each other make one run, trimmed to bytes. */
	memcpy(page, base, PAGE);
	page[7] = 1;
	page[8] = 2;
	page[20] = 3;          /* word 2: also next to word 1 */
	n = colo_delta_encode(page, base, enc, sizeof(enc));
	ck_assert_uint_eq(n, 2 + 14);
	ck_assert_uint_eq(enc[0], 7);
	ck_assert_uint_eq(enc[1], 14);
	/* An unchanged word between them splits the run. */
	memcpy(page, base, PAGE);
	page[7] = 1;
	page[16] = 2;
	n = colo_delta_encode(page, base, enc, sizeof(enc));
	ck_assert_uint_eq(n, 6);
	ck_assert_mem_eq(enc, "\x07\x01\x01\x08\x01\x02", 6);
	/* Unchanged: nothing. */
	ck_assert_uint_eq(colo_delta_encode(base, base, enc, sizeof(enc)), 0);
}
END_TEST

START_TEST(xbzrle_exact_bytes)
{
	static uint8_t base[PAGE], page[PAGE], enc[64];
	static const uint8_t want[] = { 10, 3, 'a', 'b', 'c', 0x93, 0x1f, 1, 'z' };
	size_t n;

	memset(base, 0, PAGE);
	memcpy(page, base, PAGE);
	memcpy(page + 10, "abc", 3);
	page[4000] = 'z';
	n = colo_xbzrle_encode(page, base, enc, sizeof(enc));
	ck_assert_uint_eq(n, sizeof(want));
	ck_assert_mem_eq(enc, want, sizeof(want));
	/* QEMU splits a run at every unchanged byte. */
	memcpy(page, base, PAGE);
	memcpy(page + 8, "a\0b", 3);
	n = colo_xbzrle_encode(page, base, enc, sizeof(enc));
	ck_assert_uint_eq(n, 6);
	ck_assert_mem_eq(enc, "\x08\x01" "a" "\x01\x01" "b", 6);
}
END_TEST

static uint32_t bits(int a, int b, int c, int d, int e)
{
	uint32_t m = COLO_PAGE_KIND_BIT(COLO_PAGE_RAW);

	for (int k = 0; k < 5; k++) {
		int v = k == 0 ? a : k == 1 ? b : k == 2 ? c : k == 3 ? d : e;

		if (v >= 0)
			m |= COLO_PAGE_KIND_BIT(v);
	}
	return m;
}

#define ALL bits(COLO_PAGE_ZERO, COLO_PAGE_LZ4, COLO_PAGE_DELTA, COLO_PAGE_DELTA_LZ4, -1)
#define QEMU bits(COLO_PAGE_ZERO, COLO_PAGE_XBZRLE, -1, -1, -1)

static enum colo_page_kind choose(enum workload w, uint64_t seed, uint32_t allowed,
				  bool with_base, int *unchanged)
{
	static uint8_t base[PAGE], page[PAGE], out[COLO_PAGE_ENC_MAX];
	struct colo_page_enc e;
	uint8_t *b = with_base ? base : NULL;
	int r;

	make_pair(w, seed, base, page);
	r = colo_page_encode(page, b, allowed, COLO_ENC_UPDATE_BASE, out, &e);
	*unchanged = r;
	if (r == 0 && with_base) {
		uint8_t back[PAGE];
		struct colo_err err;

		/* The base is now the page; and the encoding decodes to it. */
		ck_assert_msg(memcmp(base, page, PAGE) == 0, "base not updated");
		make_pair(w, seed, back, page);
		colo_err_clear(&err);
		ck_assert_int_eq(colo_ram_page_apply(&(struct colo_ram_page){
			.kind = e.kind, .data = e.kind == COLO_PAGE_RAW ? page : out,
			.len = e.kind == COLO_PAGE_RAW ? PAGE : e.len, .fill = e.fill },
			back, colo_page_codecs, &err), 0);
		ck_assert_msg(memcmp(back, page, PAGE) == 0, "%s decodes to another page",
			      colo_page_kind_name(e.kind));
	}
	return r ? COLO_PAGE_KINDS : e.kind;
}

START_TEST(encoder_choice)
{
	int u;

	ck_assert_int_eq(choose(W_SAME, 1, ALL, true, &u), COLO_PAGE_KINDS);
	ck_assert_int_eq(u, 1);
	ck_assert_int_eq(choose(W_SAME, 1, QEMU, true, &u), COLO_PAGE_KINDS);
	ck_assert_int_eq(choose(W_SAME, 1, bits(-1, -1, -1, -1, -1), true, &u),
			 COLO_PAGE_KINDS);
	ck_assert_int_eq(choose(W_SPARSE8, 2, ALL, true, &u), COLO_PAGE_DELTA);
	ck_assert_int_eq(choose(W_SPARSE64, 2, ALL, true, &u), COLO_PAGE_DELTA);
	ck_assert_int_eq(choose(W_SCATTER, 2, ALL, true, &u), COLO_PAGE_DELTA);
	ck_assert_int_eq(choose(W_SPARSE8, 2, QEMU, true, &u), COLO_PAGE_XBZRLE);
	ck_assert_int_eq(choose(W_ZEROED, 2, ALL, true, &u), COLO_PAGE_ZERO);
	ck_assert_int_eq(choose(W_ZEROED, 2, QEMU, true, &u), COLO_PAGE_ZERO);
	ck_assert_int_eq(choose(W_RANDOM, 2, ALL, true, &u), COLO_PAGE_RAW);
	ck_assert_int_eq(choose(W_RANDOM, 2, QEMU, true, &u), COLO_PAGE_RAW);
	/* Text rewritten over text: compressed one way or another. */
	ck_assert_int_eq(choose(W_TEXT, 3, ALL, true, &u) == COLO_PAGE_LZ4 ||
			 choose(W_TEXT, 3, ALL, true, &u) == COLO_PAGE_DELTA_LZ4, 1);
	/* 512 random bytes over text: DELTA; 512 text bytes: maybe DELTA_LZ4. */
	ck_assert_int_eq(choose(W_SPARSE512, 1, ALL, true, &u), COLO_PAGE_DELTA);
	/* No base (first sync). */
	ck_assert_int_eq(choose(W_MOSTLY_ZERO, 2, ALL, false, &u), COLO_PAGE_LZ4);
	ck_assert_int_eq(choose(W_ZEROED, 2, ALL, false, &u), COLO_PAGE_ZERO);
	ck_assert_int_eq(choose(W_RANDOM, 2, ALL, false, &u), COLO_PAGE_RAW);
	ck_assert_int_eq(choose(W_TEXT, 2, ALL, false, &u), COLO_PAGE_LZ4);
	ck_assert_int_eq(choose(W_TEXT, 2, QEMU, false, &u), COLO_PAGE_RAW);
}
END_TEST

/* Every workload, every allowed set: whatever is chosen decodes to the page. */
START_TEST(encoder_round_trip)
{
	int u;

	for (int w = 0; w < W_COUNT; w++)
		for (uint64_t seed = 1; seed <= 30; seed++) {
			choose((enum workload)w, seed, ALL, true, &u);
			choose((enum workload)w, seed, QEMU, true, &u);
			choose((enum workload)w, seed, bits(COLO_PAGE_DELTA, -1, -1, -1, -1),
			       true, &u);
			choose((enum workload)w, seed, bits(COLO_PAGE_LZ4, -1, -1, -1, -1),
			       true, &u);
		}
}
END_TEST

/* Malformed encodings are refused and leave the page as it was. */
static void refuse(const struct colo_page_codec *c, const uint8_t *in, size_t len,
		   const char *want)
{
	uint8_t page[PAGE], copy[PAGE];
	struct colo_err err;
	struct colo_rng r = { 5 };

	colo_rng_fill(&r, page, PAGE);
	memcpy(copy, page, PAGE);
	colo_err_clear(&err);
	ck_assert_int_ne(c->decode(in, len, page, &err), 0);
	ck_assert_msg(strstr(err.msg, want), "%s: got '%s', wanted '%s'", c->name,
		      err.msg, want);
	ck_assert_msg(memcmp(page, copy, PAGE) == 0, "%s changed the page", c->name);
}

START_TEST(decoders_refuse_malformed)
{
	refuse(&colo_codec_delta, (const uint8_t *)"", 0, "empty delta");
	refuse(&colo_codec_delta, (const uint8_t *)"\x05\x00", 2, "run of 0 bytes");
	refuse(&colo_codec_delta, (const uint8_t *)"\x05\x04" "ab", 4,
	       "is longer than the encoding");
	refuse(&colo_codec_delta, (const uint8_t *)"\xff\x1f\x02" "ab", 5,
	       "leaves the page");
	refuse(&colo_codec_delta, (const uint8_t *)"\x80\x80\x01", 3, "bad run header");
	/* A good run then a bad one: still nothing written. */
	refuse(&colo_codec_delta, (const uint8_t *)"\x00\x01" "a" "\x00", 4,
	       "bad run header");
	refuse(&colo_codec_delta_lz4, (const uint8_t *)"\x00", 1, "bad run count");
	refuse(&colo_codec_delta_lz4, (const uint8_t *)"\x01\x00\x04\x10" "zz", 6,
	       "does not decompress to the 4 bytes");
	refuse(&colo_codec_xbzrle, (const uint8_t *)"\x00\x00", 2, "bad run");
	refuse(&colo_codec_xbzrle, (const uint8_t *)"\x00\x01" "a" "\x00\x01" "b", 6,
	       "bad run");
	refuse(&colo_codec_xbzrle, (const uint8_t *)"\xff\x1f\x02" "ab", 5, "overflows");
	refuse(&colo_codec_lz4, (const uint8_t *)"\xf0garbage", 8,
	       "does not decompress to one page");
}
END_TEST

/* Random bytes: never a crash, never a write unless accepted. */
START_TEST(decoders_survive_noise)
{
	struct colo_rng r = { COLO_TEST_SEED(77) };
	uint8_t in[600];

	for (int round = 0; round < 20000; round++) {
		size_t len = 1 + (size_t)colo_rng_below(&r, sizeof(in));

		colo_rng_fill(&r, in, len);
		if (round % 4 == 1)        /* plausible run headers */
			in[0] = (uint8_t)colo_rng_below(&r, 64), in[1] = (uint8_t)colo_rng_below(&r, 16);
		for (const struct colo_page_codec *const *c = colo_page_codecs; *c; c++) {
			uint8_t page[PAGE];
			struct colo_err err;

			memset(page, 0xa5, PAGE);
			colo_err_clear(&err);
			if ((*c)->decode(in, len, page, &err) != 0)
				ck_assert(err.msg[0] != '\0');
		}
	}
}
END_TEST

START_TEST(zero_detection)
{
	static uint8_t page[PAGE];

	memset(page, 0, PAGE);
	ck_assert(colo_page_is_zero(page));
	for (size_t at = 0; at < PAGE; at += 509) {
		page[at] = 1;
		ck_assert(!colo_page_is_zero(page));
		page[at] = 0;
	}
	page[PAGE - 1] = 0x80;
	ck_assert(!colo_page_is_zero(page));
}
END_TEST

/* The vector widths of the delta scan find the same runs. */
START_TEST(simd_levels_agree)
{
	static uint8_t base[PAGE], page[PAGE], ref[PAGE], enc[PAGE];
	int best = colo_page_codec_simd(-1);

	for (int w = 0; w < W_COUNT; w++)
		for (uint64_t seed = 1; seed <= 40; seed++) {
			size_t nref, n;

			make_pair((enum workload)w, seed * 31 + (uint64_t)w, base, page);
			colo_page_codec_simd(0);
			nref = colo_delta_encode(page, base, ref, sizeof(ref));
			for (int level = 1; level <= best; level++) {
				ck_assert_int_eq(colo_page_codec_simd(level), level);
				n = colo_delta_encode(page, base, enc, sizeof(enc));
				ck_assert_uint_eq(n, nref);
				ck_assert_mem_eq(enc, ref, n);
			}
		}
	colo_page_codec_simd(-1);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("pagecodec");
	TCase *tc = tcase_create("pagecodec");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, codecs_round_trip);
	tcase_add_test(tc, delta_not_worse_than_xbzrle_on_sparse_writes);
	tcase_add_test(tc, delta_exact_bytes);
	tcase_add_test(tc, xbzrle_exact_bytes);
	tcase_add_test(tc, encoder_choice);
	tcase_add_test(tc, encoder_round_trip);
	tcase_add_test(tc, decoders_refuse_malformed);
	tcase_add_test(tc, decoders_survive_noise);
	tcase_add_test(tc, zero_detection);
	tcase_add_test(tc, simd_levels_agree);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
