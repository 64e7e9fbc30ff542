/* test_ramfmt.c: RAM section records: exact bytes, parsing, page codecs hook. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "ramfmt.h"
#include "testutil.h"

static const struct colo_section_info ram_section = {
	.type = COLO_SEC_PART, .section_id = 2, .idstr = "ram", .version_id = 4,
};

START_TEST(exact_record_bytes)
{
	static const struct colo_ram_block_info blocks[] = {
		{ "a", 8192, 0 }, { "bb", 4096, 0 },
	};
	static const uint8_t want[] = {
		/* MEM_SIZE: 12288 | 0x04, "a" 8192, "bb" 4096 */
		0, 0, 0, 0, 0, 0, 0x30, 0x04,
		1, 'a', 0, 0, 0, 0, 0, 0, 0x20, 0x00,
		2, 'b', 'b', 0, 0, 0, 0, 0, 0, 0x10, 0x00,
		/* ZERO "a" +0x1000 fill 0 */
		0, 0, 0, 0, 0, 0, 0x10, 0x02, 1, 'a', 0x00,
		/* ZERO "a" +0 fill 7, CONTINUE */
		0, 0, 0, 0, 0, 0, 0x00, 0x22, 0x07,
		/* XBZRLE "bb" +0: 0x01, be16 3, data */
		0, 0, 0, 0, 0, 0, 0x00, 0x40, 2, 'b', 'b', 0x01, 0, 3, 9, 8, 7,
		/* LZ4 "bb" +0 CONTINUE: be16 2 */
		0, 0, 0, 0, 0, 0, 0x04, 0x20, 0, 2, 5, 6,
		/* DELTA "a" +0x1000: be16 1 */
		0, 0, 0, 0, 0, 0, 0x18, 0x00, 1, 'a', 0, 1, 4,
		/* COMPRESS CONTINUE: be32 1 */
		0, 0, 0, 0, 0, 0, 0x11, 0x20, 0, 0, 0, 1, 3,
		/* EOS */
		0, 0, 0, 0, 0, 0, 0, 0x10,
	};
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_ram_writer w;
	struct colo_err err;
	static const uint8_t x[] = { 9, 8, 7 }, l[] = { 5, 6 }, d[] = { 4 }, c[] = { 3 };

	colo_err_clear(&err);
	colo_ram_writer_init(&w, &out);
	colo_ram_put_mem_size(&w, blocks, 2, false);
	colo_ram_put_zero(&w, "a", 4096, 0);
	colo_ram_put_zero(&w, "a", 0, 7);
	ck_assert_int_eq(colo_ram_put_encoded(&w, "bb", 0, COLO_PAGE_XBZRLE, x, 3, &err), 0);
	ck_assert_int_eq(colo_ram_put_encoded(&w, "bb", 0, COLO_PAGE_LZ4, l, 2, &err), 0);
	ck_assert_int_eq(colo_ram_put_encoded(&w, "a", 4096, COLO_PAGE_DELTA, d, 1, &err), 0);
	ck_assert_int_eq(colo_ram_put_encoded(&w, "a", 4096, COLO_PAGE_COMPRESS, c, 1, &err), 0);
	colo_ram_put_eos(&w);
	ck_assert_uint_eq(out.len, sizeof(want));
	ck_assert_mem_eq(out.data, want, sizeof(want));
	colo_buf_free(&out);
}
END_TEST

START_TEST(encoded_length_limits)
{
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_ram_writer w;
	struct colo_err err;
	static uint8_t big[8192];

	colo_ram_writer_init(&w, &out);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ram_put_encoded(&w, "a", 0, COLO_PAGE_LZ4, big,
					      COLO_RAM_ENCODED_MAX + 1, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "lz4 page of 4353 bytes: outside 1..4352");
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ram_put_encoded(&w, "a", 0, COLO_PAGE_RAW, big, 1, &err),
			 -EINVAL);
	ck_assert_str_eq(err.msg, "page kind 'page' is not an encoding");
	ck_assert_uint_eq(out.len, 0);
	colo_buf_free(&out);
}
END_TEST

/* ---- applying pages to memory through the codec hook ---- */

struct applied {
	uint8_t mem[3 * COLO_PAGE_SIZE];
	const struct colo_page_codec *const *codecs;
	struct colo_err last;
	int pages;
};

static int apply_page(void *ud, const struct colo_ram_page *p, struct colo_err *err)
{
	struct applied *a = ud;

	a->pages++;
	return colo_ram_page_apply(p, a->mem, a->codecs, err);
}

/* A toy codec: its payload is one byte XORed into every byte of the base. */
static int xor_decode(const uint8_t *in, size_t len, uint8_t *page, struct colo_err *err)
{
	if (len != 1)
		return colo_err_set(err, EPROTO, "xor payload must be 1 byte, not %zu", len);
	for (size_t i = 0; i < COLO_PAGE_SIZE; i++)
		page[i] ^= in[0];
	return 0;
}

static const struct colo_page_codec xor_delta = {
	.kind = COLO_PAGE_DELTA, .name = "xor", .decode = xor_decode,
};

static int run_reader(struct colo_ram_reader *rr, const struct colo_buf *b,
		      struct colo_err *err)
{
	struct colo_in in;

	colo_err_clear(err);
	colo_in_init(&in, b->data, b->len, 0, true);
	return colo_ram_reader_payload(rr, &ram_section, &in, err);
}

START_TEST(pages_apply_through_codecs)
{
	static const struct colo_ram_block_info blocks[] = { { "m", 3 * COLO_PAGE_SIZE, 0 } };
	static const struct colo_page_codec *const codecs[] = { &xor_delta, NULL };
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_ram_writer w;
	struct colo_ram_reader rr;
	struct applied a;
	struct colo_err err;
	uint8_t page[COLO_PAGE_SIZE];
	static const uint8_t key = 0x5a;
	struct colo_ram_sink sink = { NULL, apply_page, &a };

	memset(&a, 0, sizeof(a));
	memset(a.mem, 0xee, sizeof(a.mem));
	a.codecs = codecs;
	for (size_t i = 0; i < sizeof(page); i++)
		page[i] = (uint8_t)(i * 7);
	colo_err_clear(&err);
	colo_ram_writer_init(&w, &out);
	colo_ram_put_mem_size(&w, blocks, 1, false);
	colo_ram_put_raw(&w, "m", 0, page);
	colo_ram_put_zero(&w, "m", 4096, 0);
	colo_ram_put_raw(&w, "m", 8192, page);
	ck_assert_int_eq(colo_ram_put_encoded(&w, "m", 8192, COLO_PAGE_DELTA, &key, 1, &err), 0);
	colo_ram_put_eos(&w);
	colo_ram_reader_init(&rr, &sink, COLO_PAGE_KINDS_ALL);
	ck_assert_msg(run_reader(&rr, &out, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(a.pages, 4);
	ck_assert_mem_eq(a.mem, page, COLO_PAGE_SIZE);
	for (size_t i = 0; i < COLO_PAGE_SIZE; i++) {
		ck_assert_uint_eq(a.mem[COLO_PAGE_SIZE + i], 0);
		ck_assert_uint_eq(a.mem[2 * COLO_PAGE_SIZE + i], (uint8_t)(i * 7) ^ key);
	}

	/* Without a codec for the kind, the page is refused by name. */
	a.codecs = NULL;
	ck_assert_int_eq(run_reader(&rr, &out, &err), -ENOTSUP);
	ck_assert_str_eq(err.msg, "delta page at offset 8237 cannot be decoded: no codec "
			 "for it here");
	colo_ram_reader_free(&rr);
	colo_buf_free(&out);
}
END_TEST

START_TEST(records_are_units)
{
	static const struct colo_ram_block_info blocks[] = { { "m", 2 * COLO_PAGE_SIZE, 0 } };
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_ram_writer w;
	struct colo_ram_reader rr;
	struct applied a;
	struct colo_err err;
	struct colo_ram_sink sink = { NULL, apply_page, &a };
	uint8_t page[COLO_PAGE_SIZE];
	size_t cut_record;

	memset(&a, 0, sizeof(a));
	memset(page, 0x11, sizeof(page));
	colo_ram_writer_init(&w, &out);
	colo_ram_put_mem_size(&w, blocks, 1, false);
	colo_ram_put_raw(&w, "m", 0, page);
	cut_record = out.len;
	colo_ram_put_raw(&w, "m", 4096, page);
	colo_ram_put_eos(&w);
	colo_ram_reader_init(&rr, &sink, COLO_PAGE_KINDS_ALL);
	for (size_t cut = 1; cut < out.len; cut += 97) {
		struct colo_in in;
		int r;

		memset(&a, 0, sizeof(a));
		colo_err_clear(&err);
		colo_in_init(&in, out.data, cut, 0, false);
		r = colo_ram_reader_payload(&rr, &ram_section, &in, &err);
		ck_assert_int_eq(r, -EAGAIN);
		/* The mark is the start of the record that is not all there. */
		ck_assert_uint_le(in.mark, cut);
		ck_assert_uint_gt(in.mark + in.need, cut);
		ck_assert_int_eq(a.pages, cut >= cut_record ? 1 : 0);
	}
	colo_ram_reader_free(&rr);
	colo_buf_free(&out);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("ramfmt");
	TCase *tc = tcase_create("ramfmt");

	tcase_add_test(tc, exact_record_bytes);
	tcase_add_test(tc, encoded_length_limits);
	tcase_add_test(tc, pages_apply_through_codecs);
	tcase_add_test(tc, records_are_units);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
