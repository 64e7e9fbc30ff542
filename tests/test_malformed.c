/*
 * test_malformed.c: bad streams get one clear line naming what is wrong and
 * where, never a crash.  Each input is loaded into the demo guest twice,
 * whole and one byte at a time: both must fail with the same message.
 */
#include "config.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"
#include "dump.h"
#include "savevm.h"
#include "testutil.h"

#define RAM (16 * 1024)

/* The loader's message for b fed in pieces of `piece` bytes (0: whole). */
static char *load_msg(const struct colo_buf *b, size_t piece, uint32_t kinds)
{
	struct colo_savevm_loader *l;
	struct colo_demo d;
	struct colo_err err;
	size_t off = 0;
	int rc = 0;
	char *msg;

	colo_err_clear(&err);
	ck_assert_int_eq(colo_demo_init(&d, RAM, 0, &err), 0);
	l = colo_savevm_loader_new(&d.sv, NULL, kinds);
	while (off < b->len && rc == 0) {
		size_t n = piece && piece < b->len - off ? piece : b->len - off;
		ssize_t got = colo_savevm_loader_feed(l, b->data + off, n);

		if (got < 0)
			rc = (int)got;
		off += n;
	}
	if (rc == 0)
		rc = colo_savevm_loader_finish(l);
	msg = strdup(rc ? colo_savevm_loader_error(l) : "(loaded)");
	colo_savevm_loader_free(l);
	colo_demo_free(&d);
	return msg;
}

static void expect_kinds(const struct colo_buf *b, const char *want, bool exact,
			 uint32_t kinds)
{
	char *whole = load_msg(b, 0, kinds);
	char *bytes = load_msg(b, 1, kinds);

	ck_assert_str_eq(whole, bytes);
	if (exact)
		ck_assert_str_eq(whole, want);
	else
		ck_assert_msg(strstr(whole, want), "got \"%s\", wanted \"%s\"", whole, want);
	free(whole);
	free(bytes);
}

static void expect(const struct colo_buf *b, const char *want)
{
	expect_kinds(b, want, true, COLO_PAGE_KINDS_QEMU);
}

static void expect_part(const struct colo_buf *b, const char *want)
{
	expect_kinds(b, want, false, COLO_PAGE_KINDS_QEMU);
}

/* "QEVM" v3 + configuration "colo-demo-1": 24 bytes. */
static void prefix(struct colo_buf *b)
{
	colo_buf_reset(b);
	colo_buf_put_be32(b, 0x5145564d);
	colo_buf_put_be32(b, 3);
	colo_buf_put_u8(b, 0x07);
	colo_buf_put_be32(b, 11);
	colo_buf_put(b, COLO_DEMO_MACHINE, 11);
	ck_assert_uint_eq(b->len, 24);
}

static void section_hdr(struct colo_buf *b, uint8_t type, uint32_t id,
			const char *name, uint32_t inst, uint32_t ver)
{
	colo_buf_put_u8(b, type);
	colo_buf_put_be32(b, id);
	colo_buf_put_u8(b, (uint8_t)strlen(name));
	colo_buf_put(b, name, strlen(name));
	colo_buf_put_be32(b, inst);
	colo_buf_put_be32(b, ver);
}

/* prefix + START "ram" v4 (payload at 41) + a good MEM_SIZE (to 66). */
static void ram_prefix(struct colo_buf *b)
{
	prefix(b);
	section_hdr(b, 0x01, 0, "ram", 0, 4);
	colo_buf_put_be64(b, RAM | 0x04);
	colo_buf_put_u8(b, 8);
	colo_buf_put(b, "demo.ram", 8);
	colo_buf_put_be64(b, RAM);
	ck_assert_uint_eq(b->len, 66);
}

static void demo_stream(struct colo_buf *b, unsigned flags)
{
	struct colo_demo d;
	struct colo_err err;

	colo_err_clear(&err);
	colo_buf_reset(b);
	ck_assert_int_eq(colo_demo_init(&d, RAM, 9, &err), 0);
	ck_assert_int_eq(colo_savevm_save(&d.sv, b, flags, &err), 0);
	colo_demo_free(&d);
}

/* Offset of a decoded device field of the demo stream (from its dump). */
static size_t field_offset(const struct colo_buf *b, const char *dev, const char *field)
{
	struct colo_err err;
	json_t *doc;
	const json_t *items;
	size_t at = 0;

	colo_err_clear(&err);
	ck_assert_int_eq(colo_dump_buffer(b->data, b->len, NULL, NULL, &doc, &err), 0);
	items = json_object_get(doc, "items");
	for (size_t i = 0; i < json_array_size(items); i++) {
		const json_t *it = json_array_get(items, i);
		const json_t *fields = json_object_get(json_object_get(it, "device"), "fields");
		const char *idstr = json_string_value(json_object_get(it, "idstr"));

		if (!idstr || strcmp(idstr, dev) != 0)
			continue;
		for (size_t k = 0; k < json_array_size(fields); k++) {
			const json_t *f = json_array_get(fields, k);

			if (strcmp(json_string_value(json_object_get(f, "name")), field) == 0)
				at = (size_t)json_integer_value(json_object_get(f, "offset"));
		}
	}
	json_decref(doc);
	ck_assert_uint_gt(at, 0);
	return at;
}

/* Offsets where each item of the demo stream starts and ends. */
static size_t item_bounds(const struct colo_buf *b, size_t *bounds, size_t max)
{
	struct colo_err err;
	json_t *doc;
	const json_t *items;
	size_t n = 0;

	colo_err_clear(&err);
	ck_assert_int_eq(colo_dump_buffer(b->data, b->len, NULL, NULL, &doc, &err), 0);
	items = json_object_get(doc, "items");
	for (size_t i = 0; i < json_array_size(items) && n + 3 <= max; i++) {
		const json_t *it = json_array_get(items, i);
		const json_t *po = json_object_get(it, "payload_offset");

		bounds[n++] = (size_t)json_integer_value(json_object_get(it, "offset"));
		if (po) {
			size_t p = (size_t)json_integer_value(po);

			bounds[n++] = p;
			bounds[n++] = p + (size_t)json_integer_value(json_object_get(it,
								"payload_size"));
		}
	}
	json_decref(doc);
	return n;
}

START_TEST(header_errors)
{
	struct colo_buf b = COLO_BUF_INIT;

	expect(&b, "empty stream: no header at offset 0");
	colo_buf_put(&b, "QEVX\0\0\0\3", 8);
	expect(&b, "bad magic 0x51455658 at offset 0: not a savevm stream (expected "
	       "0x5145564d \"QEVM\")");
	colo_buf_reset(&b);
	colo_buf_put(&b, "QEVM\0\0\0\2", 8);
	expect(&b, "stream version 2 at offset 4 is the obsolete savevm v2 format; only "
	       "version 3 is supported");
	colo_buf_reset(&b);
	colo_buf_put(&b, "QEVM\0\0\0\4", 8);
	expect(&b, "unsupported stream version 4 at offset 4 (expected 3)");
	colo_buf_reset(&b);
	colo_buf_put(&b, "QEVM\0\0", 6);
	expect(&b, "truncated: stream ends at offset 6 inside the stream header (at "
	       "least 2 more bytes needed)");
	colo_buf_free(&b);
}
END_TEST

START_TEST(item_errors)
{
	struct colo_buf b = COLO_BUF_INIT;

	prefix(&b);
	expect(&b, "stream ends at offset 24 without an EOF marker");
	colo_buf_put_u8(&b, 0x09);
	expect(&b, "unknown section type 0x09 at offset 24");
	prefix(&b);
	colo_buf_put_u8(&b, 0x07);
	expect(&b, "configuration section at offset 24 is not the first item");
	prefix(&b);
	colo_buf_put_u8(&b, 0x05);
	expect(&b, "subsection marker at offset 24 outside a device payload");
	prefix(&b);
	colo_buf_put_u8(&b, 0x7e);
	expect(&b, "section footer at offset 24 outside a section");
	prefix(&b);
	colo_buf_put_u8(&b, 0x06);
	expect(&b, "VMDESCRIPTION at offset 24 comes before EOF");
	prefix(&b);
	colo_buf_put_u8(&b, 0x00);
	colo_buf_put_u8(&b, 'A');
	expect(&b, "unexpected byte 0x41 at offset 25 after EOF (expected VMDESCRIPTION "
	       "or the end of the stream)");
	colo_buf_free(&b);
}
END_TEST

START_TEST(configuration_errors)
{
	struct colo_buf b = COLO_BUF_INIT;

	colo_buf_put(&b, "QEVM\0\0\0\3", 8);
	colo_buf_put_u8(&b, 0x07);
	colo_buf_put_be32(&b, 1000);
	colo_buf_fill(&b, 'a', 1000);
	expect(&b, "configuration section at offset 8: configuration: field 'name': "
	       "length 1000 exceeds the 255 bytes it can hold at offset 13");

	colo_buf_reset(&b);
	colo_buf_put(&b, "QEVM\0\0\0\3", 8);
	colo_buf_put_u8(&b, 0x07);
	colo_buf_put_be32(&b, 2);
	colo_buf_put(&b, "pc", 2);
	colo_buf_put_u8(&b, 0x00);
	expect(&b, "configuration at offset 8: machine type received is 'pc' and local "
	       "is 'colo-demo-1'");

	prefix(&b);
	colo_buf_put_u8(&b, 0x05);
	colo_buf_put_u8(&b, 26);
	colo_buf_put(&b, "configuration/capabilities", 26);
	colo_buf_put_be32(&b, 1);
	colo_buf_put_be32(&b, 1);
	colo_buf_put_u8(&b, 5);
	colo_buf_put(&b, "x-foo", 5);
	colo_buf_put_u8(&b, 0x00);
	expect(&b, "configuration at offset 8: unknown capability 'x-foo'");

	/* 40 capabilities: more than the 32 a configuration may list. */
	prefix(&b);
	colo_buf_put_u8(&b, 0x05);
	colo_buf_put_u8(&b, 26);
	colo_buf_put(&b, "configuration/capabilities", 26);
	colo_buf_put_be32(&b, 1);
	colo_buf_put_be32(&b, 40);
	expect(&b, "configuration section at offset 8: configuration: "
	       "configuration/capabilities: field 'caps': element count 40 exceeds "
	       "the 32 elements it can hold at offset 60");
	colo_buf_free(&b);
}
END_TEST

START_TEST(section_header_errors)
{
	struct colo_buf b = COLO_BUF_INIT;

	prefix(&b);
	colo_buf_put_u8(&b, 0x01);
	colo_buf_put_be32(&b, 0);
	colo_buf_put_u8(&b, 200);          /* idstr length past the end */
	colo_buf_put(&b, "ram", 3);
	expect(&b, "truncated: stream ends at offset 33 inside the header of a START "
	       "section (at least 197 more bytes needed)");

	prefix(&b);
	colo_buf_put_u8(&b, 0x02);
	colo_buf_put_be32(&b, 77);
	expect(&b, "PART section for unknown section id 77 at offset 24");

	prefix(&b);
	section_hdr(&b, 0x04, 9, "nosuch", 0, 1);
	expect(&b, "unknown device 'nosuch' instance 0 (section 9 at offset 24)");

	prefix(&b);
	section_hdr(&b, 0x04, 1, "demo", 1, 2);
	expect(&b, "unknown device 'demo' instance 1 (section 1 at offset 24)");

	prefix(&b);
	section_hdr(&b, 0x01, 3, "block", 0, 1);
	expect(&b, "unknown iterative section 'block' (START section 3 at offset 24)");
	colo_buf_free(&b);
}
END_TEST

START_TEST(device_version_errors)
{
	struct colo_buf b = COLO_BUF_INIT;

	prefix(&b);
	section_hdr(&b, 0x04, 1, "demo", 0, 3);
	colo_buf_fill(&b, 0, 64);
	expect(&b, "device 'demo' instance 0 (section 1 at offset 24): demo: stream "
	       "version 3 is too new (local version 2) at offset 42");
	prefix(&b);
	section_hdr(&b, 0x04, 1, "demo", 0, 0);
	colo_buf_fill(&b, 0, 64);
	expect(&b, "device 'demo' instance 0 (section 1 at offset 24): demo: stream "
	       "version 0 is too old (local minimum version 1) at offset 42");
	colo_buf_free(&b);
}
END_TEST

START_TEST(device_field_lies)
{
	struct colo_buf b = COLO_BUF_INIT;
	size_t at;
	char want[256];

	/* A blob length far beyond the stream. */
	demo_stream(&b, 0);
	at = field_offset(&b, "demo", "blob_len");
	colo_store_be32(b.data + at, 1u << 20);
	expect_part(&b, "demo: field 'blob': 1048576 elements announced but only ");
	colo_store_be32(b.data + at, 0x7fffffff);
	expect_part(&b, "field 'blob': 2147483647 elements of 1 bytes exceed the "
		    "67108864-byte allocation limit");

	/* More counters than the device holds. */
	demo_stream(&b, 0);
	at = field_offset(&b, "demo", "ncounters");
	colo_store_be32(b.data + at, 9);
	snprintf(want, sizeof(want), "demo: field 'counters': element count 9 exceeds "
		 "the 8 elements it can hold at offset %zu", at + 4);
	expect_part(&b, want);

	/* The _equal field disagrees with this side. */
	demo_stream(&b, 0);
	at = field_offset(&b, "demo-config", "page_size");
	colo_store_be32(b.data + at, 8192);
	snprintf(want, sizeof(want), "demo-config: field 'page_size' must equal the "
		 "local value: stream has 0x2000, local is 0x1000 (both sides must use "
		 "4 KiB pages) at offset %zu", at);
	expect_part(&b, want);
	colo_buf_free(&b);
}
END_TEST

START_TEST(footer_errors)
{
	struct colo_buf b = COLO_BUF_INIT;
	size_t bounds[64];
	size_t n;

	/* START "ram": header 17 bytes at 24, payload 33 bytes, footer at 74. */
	demo_stream(&b, 0);
	ck_assert_uint_eq(b.data[74], 0x7e);
	colo_store_be32(b.data + 75, 5);
	expect(&b, "section 1 'ram': footer at offset 74 names section 5");

	/* The PART's footer byte replaced: footers were seen, so it is missing. */
	demo_stream(&b, 0);
	n = item_bounds(&b, bounds, 64);
	ck_assert_uint_ge(n, 6);
	ck_assert_uint_eq(b.data[bounds[5]], 0x7e);
	b.data[bounds[5]] = 0x04;
	{
		char want[128];

		snprintf(want, sizeof(want), "section 1 'ram': expected a footer at offset "
			 "%zu, found 0x04", bounds[5]);
		expect(&b, want);
	}
	colo_buf_free(&b);
}
END_TEST

START_TEST(command_errors)
{
	struct colo_buf b = COLO_BUF_INIT;

	prefix(&b);
	colo_buf_put(&b, "\x08\x00\x2a\x00\x00", 5);
	expect(&b, "unknown command 42 at offset 24");
	prefix(&b);
	colo_buf_put(&b, "\x08\x00\x03\x00\x00", 5);
	expect(&b, "command 3 (POSTCOPY_ADVISE) at offset 24 is not supported");
	prefix(&b);
	colo_buf_put(&b, "\x08\x00\x02\x00\x02\x00\x01", 7);
	expect(&b, "command PING at offset 24 has length 2, expected 4");
	prefix(&b);
	colo_buf_put(&b, "\x08\x00\x08\x00\x01\x00", 6);
	expect(&b, "command ENABLE_COLO at offset 24 has length 1, expected 0");
	prefix(&b);
	colo_buf_put(&b, "\x08\x00\x01\x00\x04\x00\x00\x00\x00", 9);
	expect(&b, "command OPEN_RETURN_PATH at offset 24 has length 4, expected 0");
	colo_buf_free(&b);
}
END_TEST

START_TEST(packaged_lies)
{
	struct colo_buf b = COLO_BUF_INIT;

	/* Longer than QEMU's limit. */
	prefix(&b);
	colo_buf_put(&b, "\x08\x00\x07\x00\x04", 5);
	colo_buf_put_be32(&b, (1u << 24) + 1);
	expect(&b, "PACKAGED length 16777217 at offset 24 exceeds the 16777216-byte limit");

	/* Longer than what follows. */
	prefix(&b);
	colo_buf_put(&b, "\x08\x00\x07\x00\x04", 5);
	colo_buf_put_be32(&b, 1000);
	colo_buf_fill(&b, 0, 10);
	expect(&b, "PACKAGED length 1000 at offset 24 runs past the end of the stream "
	       "(10 bytes remain)");

	/* A nested section longer than the package. */
	prefix(&b);
	colo_buf_put(&b, "\x08\x00\x07\x00\x04", 5);
	colo_buf_put_be32(&b, 18 + 10);
	section_hdr(&b, 0x04, 1, "demo", 0, 2);
	colo_buf_fill(&b, 0, 10);
	colo_buf_put_u8(&b, 0x00);
	expect(&b, "PACKAGED data (28 bytes at offset 33) ends inside the payload of "
	       "section 1 'demo'");

	/* A package inside a package. */
	prefix(&b);
	colo_buf_put(&b, "\x08\x00\x07\x00\x04", 5);
	colo_buf_put_be32(&b, 10);
	colo_buf_put(&b, "\x08\x00\x07\x00\x04", 5);
	colo_buf_put_be32(&b, 1);
	colo_buf_put_u8(&b, 0);
	colo_buf_put_u8(&b, 0);
	expect(&b, "PACKAGED command at offset 33 inside PACKAGED data");

	/* Bytes after the nested EOF. */
	prefix(&b);
	colo_buf_put(&b, "\x08\x00\x07\x00\x04", 5);
	colo_buf_put_be32(&b, 2);
	colo_buf_put_u8(&b, 0);
	colo_buf_put_u8(&b, 0);
	colo_buf_put_u8(&b, 0);
	expect(&b, "1 bytes follow the EOF inside PACKAGED data at offset 34");
	colo_buf_free(&b);
}
END_TEST

START_TEST(vmdesc_lies)
{
	struct colo_buf b = COLO_BUF_INIT;

	prefix(&b);
	colo_buf_put_u8(&b, 0x00);
	colo_buf_put_u8(&b, 0x06);
	colo_buf_put_be32(&b, 0xffffffff);
	expect(&b, "vmdesc length 4294967295 at offset 25 exceeds the 16777216-byte limit");
	prefix(&b);
	colo_buf_put_u8(&b, 0x00);
	colo_buf_put_u8(&b, 0x06);
	colo_buf_put_be32(&b, 256);
	colo_buf_put(&b, "{}", 2);
	expect(&b, "vmdesc length 256 at offset 25 runs past the end of the stream (2 "
	       "bytes remain)");
	prefix(&b);
	colo_buf_put_u8(&b, 0x00);
	colo_buf_put_u8(&b, 0x06);
	colo_buf_put_be32(&b, 2);
	colo_buf_put(&b, "{}xyz", 5);
	expect(&b, "trailing data at offset 32 after the end of the stream");
	colo_buf_free(&b);
}
END_TEST

START_TEST(ram_errors)
{
	struct colo_buf b = COLO_BUF_INIT;

	prefix(&b);
	section_hdr(&b, 0x01, 0, "ram", 0, 3);
	colo_buf_put_be64(&b, 0x10);
	expect(&b, "RAM section 0 at offset 24 has version 3, expected 4");

	prefix(&b);
	section_hdr(&b, 0x01, 0, "ram", 0, 4);
	colo_buf_put_be64(&b, 4096 | 0x04);
	colo_buf_put_u8(&b, 4);
	colo_buf_put(&b, "nope", 4);
	colo_buf_put_be64(&b, 4096);
	colo_buf_put_be64(&b, 0x10);
	expect(&b, "RAM block 'nope' of the stream does not exist here");

	prefix(&b);
	section_hdr(&b, 0x01, 0, "ram", 0, 4);
	colo_buf_put_be64(&b, 8192 | 0x04);
	colo_buf_put_u8(&b, 8);
	colo_buf_put(&b, "demo.ram", 8);
	colo_buf_put_be64(&b, 8192);
	colo_buf_put_be64(&b, 0x10);
	expect(&b, "RAM block 'demo.ram' has 8192 bytes in the stream and 16384 here");

	prefix(&b);
	section_hdr(&b, 0x01, 0, "ram", 0, 4);
	colo_buf_put_be64(&b, 4096 | 0x04);
	colo_buf_put_u8(&b, 8);
	colo_buf_put(&b, "demo.ram", 8);
	colo_buf_put_be64(&b, 16384);
	expect(&b, "MEM_SIZE at offset 41: blocks add up to more than the announced "
	       "total of 4096 bytes");

	prefix(&b);
	section_hdr(&b, 0x01, 0, "ram", 0, 4);
	colo_buf_put_be64(&b, 8192 | 0x04);
	for (int i = 0; i < 2; i++) {
		colo_buf_put_u8(&b, 1);
		colo_buf_put(&b, "a", 1);
		colo_buf_put_be64(&b, 4096);
	}
	expect(&b, "MEM_SIZE at offset 41: block 'a' is listed twice");

	prefix(&b);
	section_hdr(&b, 0x01, 0, "ram", 0, 4);
	colo_buf_put_be64(&b, 4096 | 0x04);
	colo_buf_put_u8(&b, 1);
	colo_buf_put(&b, "a", 1);
	colo_buf_put_be64(&b, 100);
	expect(&b, "MEM_SIZE at offset 41: block 'a' has length 100, not a positive "
	       "multiple of 4096");
	colo_buf_free(&b);
}
END_TEST

START_TEST(ram_page_errors)
{
	struct colo_buf b = COLO_BUF_INIT;

	ram_prefix(&b);
	colo_buf_put_be64(&b, 0x02);
	colo_buf_put_u8(&b, 3);
	colo_buf_put(&b, "zzz", 3);
	colo_buf_put_u8(&b, 0);
	expect(&b, "RAM page at offset 66 names unknown block 'zzz'");

	ram_prefix(&b);
	colo_buf_put_be64(&b, 0x22);
	colo_buf_put_u8(&b, 0);
	expect(&b, "RAM page at offset 66 continues a block but no block came before");

	ram_prefix(&b);
	colo_buf_put_be64(&b, 0x100000 | 0x02);
	colo_buf_put_u8(&b, 8);
	colo_buf_put(&b, "demo.ram", 8);
	colo_buf_put_u8(&b, 0);
	expect(&b, "RAM page at offset 66: page offset 0x100000 is outside block "
	       "'demo.ram' (16384 bytes)");

	ram_prefix(&b);
	colo_buf_put_be64(&b, 0x01);
	expect(&b, "unknown combination of RAM flags 0x001 at offset 66");

	ram_prefix(&b);
	colo_buf_put_be64(&b, 0x0a);          /* ZERO|PAGE */
	expect(&b, "unknown combination of RAM flags 0x00a at offset 66");

	ram_prefix(&b);
	colo_buf_put_be64(&b, 0x30);
	expect(&b, "RAM end-of-section record at offset 66 carries 0x0000000000000030");

	ram_prefix(&b);
	colo_buf_put_be64(&b, 0x80);
	expect(&b, "RAM hook record (RDMA) at offset 66 is not supported");

	ram_prefix(&b);
	colo_buf_put_be64(&b, 0x40);
	colo_buf_put_u8(&b, 8);
	colo_buf_put(&b, "demo.ram", 8);
	colo_buf_put_u8(&b, 0x02);
	colo_buf_put_be16(&b, 4);
	colo_buf_put_be32(&b, 0);
	expect(&b, "XBZRLE page at offset 66 has encoding byte 0x02, expected 0x01");

	ram_prefix(&b);
	colo_buf_put_be64(&b, 0x40);
	colo_buf_put_u8(&b, 8);
	colo_buf_put(&b, "demo.ram", 8);
	colo_buf_put_u8(&b, 0x01);
	colo_buf_put_be16(&b, 5000);
	expect(&b, "XBZRLE page at offset 66 has length 5000, more than 4096");

	/* Well-formed XBZRLE, but no decoder on this side. */
	ram_prefix(&b);
	colo_buf_put_be64(&b, 0x40);
	colo_buf_put_u8(&b, 8);
	colo_buf_put(&b, "demo.ram", 8);
	colo_buf_put_u8(&b, 0x01);
	colo_buf_put_be16(&b, 2);
	colo_buf_put(&b, "\x01\x02", 2);
	expect(&b, "xbzrle page at offset 66 cannot be decoded: no codec for it here");

	/* colo's own encodings only after both sides agreed on them. */
	ram_prefix(&b);
	colo_buf_put_be64(&b, 0x400);
	colo_buf_put_u8(&b, 8);
	colo_buf_put(&b, "demo.ram", 8);
	colo_buf_put_be16(&b, 1);
	colo_buf_put_u8(&b, 0);
	expect(&b, "RAM page at offset 66 uses encoding 'lz4', which this stream did "
	       "not enable");

	ram_prefix(&b);
	colo_buf_put_be64(&b, 0x800);
	colo_buf_put_u8(&b, 8);
	colo_buf_put(&b, "demo.ram", 8);
	colo_buf_put_be16(&b, 0);
	expect_kinds(&b, "delta page at offset 66 has length 0, outside 1..4352", true,
		     COLO_PAGE_KINDS_ALL);

	ram_prefix(&b);
	colo_buf_put_be64(&b, 0x100);
	colo_buf_put_u8(&b, 8);
	colo_buf_put(&b, "demo.ram", 8);
	colo_buf_put_be32(&b, 70000);
	expect(&b, "compressed page at offset 66 has length 70000, outside 1..4110");
	colo_buf_free(&b);
}
END_TEST

/* Cut a good stream at every item boundary (and one byte either side). */
START_TEST(truncated_at_every_boundary)
{
	struct colo_buf b = COLO_BUF_INIT;
	size_t bounds[64];
	size_t n, eof_end;

	demo_stream(&b, 0);
	n = item_bounds(&b, bounds, 64);
	eof_end = bounds[n - 1];             /* the last item is the vmdesc */
	ck_assert_uint_eq(b.data[bounds[n - 1]], 0x06);
	for (size_t i = 0; i < n; i++) {
		for (int d = -1; d <= 1; d++) {
			struct colo_buf cut = COLO_BUF_INIT;
			size_t at = bounds[i] + (size_t)d;
			char *whole, *bytes;

			if ((d < 0 && bounds[i] == 0) || at >= b.len)
				continue;
			colo_buf_put(&cut, b.data, at);
			whole = load_msg(&cut, 0, COLO_PAGE_KINDS_QEMU);
			bytes = load_msg(&cut, 7, COLO_PAGE_KINDS_QEMU);
			ck_assert_str_eq(whole, bytes);
			if (at == eof_end)
				ck_assert_str_eq(whole, "(loaded)");   /* no vmdesc: fine */
			else
				ck_assert_msg(strncmp(whole, "truncated: stream ends at offset ",
						      33) == 0 ||
					      strstr(whole, "without an EOF marker") ||
					      strstr(whole, "empty stream"),
					      "cut at %zu: %s", at, whole);
			free(whole);
			free(bytes);
			colo_buf_free(&cut);
		}
	}
	colo_buf_free(&b);
}
END_TEST

/* And at every byte: never a success, never a crash, always an offset. */
START_TEST(truncated_at_every_byte)
{
	struct colo_buf b = COLO_BUF_INIT;
	struct colo_demo d;
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_int_eq(colo_demo_init(&d, RAM, 4, &err), 0);
	ck_assert_int_eq(colo_savevm_save(&d.sv, &b, COLO_SAVEVM_NO_VMDESC, &err), 0);
	colo_demo_free(&d);
	for (size_t at = 0; at < b.len; at++) {
		struct colo_buf cut = COLO_BUF_INIT;
		char *msg;

		colo_buf_put(&cut, b.data, at);
		msg = load_msg(&cut, 0, COLO_PAGE_KINDS_QEMU);
		ck_assert_msg(strcmp(msg, "(loaded)") != 0, "cut at %zu loaded", at);
		ck_assert_msg(strstr(msg, "at offset ") || strstr(msg, "empty stream"),
			      "cut at %zu: %s", at, msg);
		free(msg);
		colo_buf_free(&cut);
	}
	colo_buf_free(&b);
}
END_TEST

/* The dump needs the vmdesc to size device payloads. */
START_TEST(dump_vmdesc_errors)
{
	struct colo_buf b = COLO_BUF_INIT;
	struct colo_err err;
	json_t *doc;
	char want[256];
	size_t n;

	demo_stream(&b, COLO_SAVEVM_NO_VMDESC);
	colo_err_clear(&err);
	ck_assert_int_ne(colo_dump_buffer(b.data, b.len, NULL, NULL, &doc, &err), 0);
	ck_assert_ptr_null(doc);
	ck_assert_msg(strstr(err.msg, "device section 2 'demo' at offset ") &&
		      strstr(err.msg, " cannot be decoded: the stream has no vmdesc"),
		      "%s", err.msg);

	/* A vmdesc that is no JSON. */
	demo_stream(&b, COLO_SAVEVM_NO_VMDESC);
	n = b.len;
	colo_buf_put_u8(&b, 0x06);
	colo_buf_put_be32(&b, 5);
	colo_buf_put(&b, "{oops", 5);
	colo_err_clear(&err);
	ck_assert_int_ne(colo_dump_buffer(b.data, b.len, NULL, NULL, &doc, &err), 0);
	/* Reported where the stream first needs it: at the first device. */
	snprintf(want, sizeof(want), " cannot be decoded: the vmdesc at offset %zu is "
		 "invalid: vmdesc: invalid JSON at byte ", n);
	ck_assert_msg(strstr(err.msg, "device section 2 'demo' at offset ") &&
		      strstr(err.msg, want), "%s", err.msg);

	/* A vmdesc without the device. */
	demo_stream(&b, COLO_SAVEVM_NO_VMDESC);
	colo_buf_put_u8(&b, 0x06);
	{
		static const char empty[] = "{\"page_size\": 4096, \"devices\": []}";

		colo_buf_put_be32(&b, (uint32_t)strlen(empty));
		colo_buf_put(&b, empty, strlen(empty));
	}
	colo_err_clear(&err);
	ck_assert_int_ne(colo_dump_buffer(b.data, b.len, NULL, NULL, &doc, &err), 0);
	ck_assert_msg(strstr(err.msg, "device section 2 'demo' instance 0 at offset ") &&
		      strstr(err.msg, " has no entry in the vmdesc"), "%s", err.msg);
	colo_buf_free(&b);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("malformed");
	TCase *tc = tcase_create("malformed");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, header_errors);
	tcase_add_test(tc, item_errors);
	tcase_add_test(tc, configuration_errors);
	tcase_add_test(tc, section_header_errors);
	tcase_add_test(tc, device_version_errors);
	tcase_add_test(tc, device_field_lies);
	tcase_add_test(tc, footer_errors);
	tcase_add_test(tc, command_errors);
	tcase_add_test(tc, packaged_lies);
	tcase_add_test(tc, vmdesc_lies);
	tcase_add_test(tc, ram_errors);
	tcase_add_test(tc, ram_page_errors);
	tcase_add_test(tc, truncated_at_every_boundary);
	tcase_add_test(tc, truncated_at_every_byte);
	tcase_add_test(tc, dump_vmdesc_errors);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
