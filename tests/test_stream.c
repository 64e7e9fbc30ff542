/*
 * test_stream.c: the section stream writer (byte-exact) and the push
 * reader: every item reported, identical results whatever the piece sizes,
 * footers detected, continuation streams, nested PACKAGED streams.
 */
#include "config.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ramfmt.h"
#include "stream.h"
#include "testutil.h"

/* ---- a recorder: every event as one line of text ---- */

struct rec {
	struct colo_buf log;
	struct colo_ram_reader rr;
};

static void logf_(struct rec *r, const char *fmt, ...) COLO_PRINTF(2, 3);

static void logf_(struct rec *r, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	colo_buf_put(&r->log, line, (size_t)n);
	colo_buf_put_u8(&r->log, '\n');
}

static int r_header(void *ud, uint32_t v, struct colo_err *err)
{
	(void)err;
	logf_(ud, "header %" PRIu32, v);
	return 0;
}

static int r_config(void *ud, const struct colo_stream_config *c, uint64_t off,
		    struct colo_err *err)
{
	struct rec *r = ud;

	(void)err;
	logf_(r, "config @%" PRIu64 " '%s' caps %" PRIu32, off, c->name, c->caps_count);
	for (uint32_t i = 0; i < c->caps_count; i++)
		logf_(r, "  cap %s", c->caps[i].str);
	r->rr.ignore_shared = colo_stream_config_has_cap(c, "x-ignore-shared");
	return 0;
}

/*
 * Payload of test devices ("blob*"): be16 count, then count records of
 * `u8 len, len bytes`, each its own unit, so a handler that parses in
 * several units is exercised too.
 */
struct blob_state {
	struct rec *r;
	int left;               /* -1: count not read yet */
};

static struct blob_state blob;

static int blob_payload(void *ctx, const struct colo_section_info *s,
			struct colo_in *in, struct colo_err *err)
{
	struct blob_state *b = ctx;

	(void)s; (void)err;
	if (b->left < 0) {
		uint16_t n;
		int r;

		colo_in_set_mark(in);
		if ((r = colo_in_be16(in, &n)))
			return r;
		b->left = n;
	}
	while (b->left > 0) {
		const uint8_t *p;
		uint8_t len;
		uint32_t sum = 0;
		int r;

		colo_in_set_mark(in);
		if ((r = colo_in_u8(in, &len)) || (r = colo_in_bytes(in, &p, len)))
			return r;
		for (uint8_t i = 0; i < len; i++)
			sum = sum * 31 + p[i];
		logf_(b->r, "  record len %u sum %08" PRIx32, len, sum);
		b->left--;
	}
	return 0;
}

static int r_section(void *ud, const struct colo_section_info *s,
		     struct colo_section_handler *h, struct colo_err *err)
{
	struct rec *r = ud;

	(void)err;
	logf_(r, "section %s id %" PRIu32 " '%s' inst %" PRIu32 " ver %" PRIu32
	      " @%" PRIu64 " depth %d", colo_stream_section_type_name(s->type),
	      s->section_id, s->idstr, s->instance_id, s->version_id, s->offset,
	      s->depth);
	if (strcmp(s->idstr, "ram") == 0) {
		h->payload = colo_ram_reader_payload;
		h->ctx = &r->rr;
	} else if (strncmp(s->idstr, "blob", 4) == 0) {
		blob.r = r;
		blob.left = -1;
		h->payload = blob_payload;
		h->ctx = &blob;
	}
	return 0;
}

static int r_done(void *ud, const struct colo_section_info *s, struct colo_err *err)
{
	(void)err;
	logf_(ud, "done id %" PRIu32 " payload %" PRIu64 "+%" PRIu64, s->section_id,
	      s->payload_offset, s->payload_len);
	return 0;
}

static int r_command(void *ud, const struct colo_command_info *c, struct colo_err *err)
{
	(void)err;
	logf_(ud, "command %s len %u value %" PRIu32 " @%" PRIu64 " depth %d",
	      colo_stream_command_name(c->cmd), c->len, c->value, c->offset, c->depth);
	return 0;
}

static int r_eof(void *ud, int depth, uint64_t off, struct colo_err *err)
{
	(void)err;
	logf_(ud, "eof @%" PRIu64 " depth %d", off, depth);
	return 0;
}

static int r_vmdesc(void *ud, const uint8_t *json, size_t len, uint64_t off,
		    struct colo_err *err)
{
	(void)err;
	logf_(ud, "vmdesc @%" PRIu64 " %.*s", off, (int)len, (const char *)json);
	return 0;
}

static int r_mem_size(void *ud, const struct colo_ram_block_info *b, size_t n,
		      uint64_t total, struct colo_err *err)
{
	(void)err;
	logf_(ud, "  mem_size %" PRIu64 " blocks %zu", total, n);
	for (size_t i = 0; i < n; i++)
		logf_(ud, "    block '%s' %" PRIu64 " addr %" PRIx64, b[i].name,
		      b[i].length, b[i].addr);
	return 0;
}

static int r_page(void *ud, const struct colo_ram_page *p, struct colo_err *err)
{
	uint32_t sum = 0;

	(void)err;
	for (size_t i = 0; i < p->len; i++)
		sum = sum * 31 + p->data[i];
	logf_(ud, "  page '%s' +0x%" PRIx64 " %s len %zu fill %u sum %08" PRIx32
	      " @%" PRIu64, p->block->name, p->offset, colo_page_kind_name(p->kind),
	      p->len, p->fill, sum, p->record_offset);
	return 0;
}

static const struct colo_stream_ops rec_ops = {
	.header = r_header,
	.configuration = r_config,
	.section = r_section,
	.section_done = r_done,
	.command = r_command,
	.eof = r_eof,
	.vmdesc = r_vmdesc,
};

static void rec_init(struct rec *r)
{
	struct colo_ram_sink sink = { r_mem_size, r_page, r };

	colo_buf_init(&r->log);
	colo_ram_reader_init(&r->rr, &sink, COLO_PAGE_KINDS_ALL);
}

static void rec_free(struct rec *r)
{
	colo_buf_free(&r->log);
	colo_ram_reader_free(&r->rr);
}

/*
 * Parse data fed in pieces; returns the transcript (malloc'd), ending with
 * "ok" or "error: <message>".
 */
static char *parse(const uint8_t *data, size_t len, struct colo_pieces *pieces,
		   unsigned flags)
{
	struct rec r;
	struct colo_stream_reader *sr;
	size_t off = 0;
	int rc = 0;
	char *s;

	rec_init(&r);
	sr = colo_stream_reader_new(&rec_ops, &r, flags);
	ck_assert_ptr_nonnull(sr);
	while (off < len) {
		size_t n = pieces ? colo_pieces_next(pieces) : len - off;
		ssize_t got;

		if (n > len - off)
			n = len - off;
		got = colo_stream_reader_feed(sr, data + off, n);
		if (got < 0) {
			rc = (int)got;
			break;
		}
		ck_assert_uint_eq((size_t)got, n);
		off += n;
	}
	if (rc == 0)
		rc = colo_stream_reader_finish(sr);
	if (rc)
		logf_(&r, "error: %s", colo_stream_reader_error(sr));
	else
		logf_(&r, "ok at %" PRIu64, colo_stream_reader_offset(sr));
	colo_stream_reader_free(sr);
	colo_buf_put_u8(&r.log, 0);
	s = (char *)colo_buf_steal(&r.log, NULL);
	colo_ram_reader_free(&r.rr);
	return s;
}

/* ---- stream builders ---- */

static void blob_section(struct colo_stream_writer *w, uint8_t type, uint32_t id,
			 const char *name, struct colo_rng *rng, int records)
{
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_int_eq(colo_sw_section_begin(w, type, id, name, 0, 1, &err), 0);
	colo_buf_put_be16(w->out, (uint16_t)records);
	for (int i = 0; i < records; i++) {
		uint8_t len = (uint8_t)colo_rng_below(rng, 40);
		uint8_t *p = colo_buf_append(w->out, 1u + len);

		p[0] = len;
		colo_rng_fill(rng, p + 1, len);
	}
	colo_sw_section_end(w);
}

static void ram_pages(struct colo_ram_writer *rw, struct colo_rng *rng, int n)
{
	static const char *blocks[] = { "pc.ram", "vga.vram" };
	struct colo_err err;
	uint8_t page[COLO_PAGE_SIZE];

	colo_err_clear(&err);
	for (int i = 0; i < n; i++) {
		const char *b = blocks[colo_rng_below(rng, 2)];
		uint64_t off = colo_rng_below(rng, 16) * COLO_PAGE_SIZE;
		size_t len = 1 + (size_t)colo_rng_below(rng, 300);

		colo_rng_fill(rng, page, sizeof(page));
		switch (colo_rng_below(rng, 6)) {
		case 0:
			colo_ram_put_zero(rw, b, off, (uint8_t)colo_rng_below(rng, 2));
			break;
		case 1:
			colo_ram_put_raw(rw, b, off, page);
			break;
		case 2:
			ck_assert_int_eq(colo_ram_put_encoded(rw, b, off, COLO_PAGE_XBZRLE,
							      page, len, &err), 0);
			break;
		case 3:
			ck_assert_int_eq(colo_ram_put_encoded(rw, b, off, COLO_PAGE_COMPRESS,
							      page, len, &err), 0);
			break;
		case 4:
			ck_assert_int_eq(colo_ram_put_encoded(rw, b, off, COLO_PAGE_LZ4,
							      page, len, &err), 0);
			break;
		default:
			ck_assert_int_eq(colo_ram_put_encoded(rw, b, off, COLO_PAGE_DELTA,
							      page, len, &err), 0);
			break;
		}
	}
}

/* A random stream using every item kind, PACKAGED included. */
static void random_stream(struct colo_buf *out, uint64_t seed)
{
	static const struct colo_ram_block_info blocks[] = {
		{ "pc.ram", 16 * COLO_PAGE_SIZE, 0 },
		{ "vga.vram", 16 * COLO_PAGE_SIZE, 0 },
	};
	struct colo_rng rng = { seed };
	struct colo_stream_writer w;
	struct colo_ram_writer rw;
	struct colo_stream_config c;
	struct colo_err err;
	int parts = (int)colo_rng_below(&rng, 4);

	colo_err_clear(&err);
	colo_sw_init(&w, out, false);
	colo_ram_writer_init(&rw, out);
	colo_sw_header(&w);
	ck_assert_int_eq(colo_stream_config_init(&c, "pc-i440fx-7.2", &err), 0);
	if (seed % 3 == 0)
		ck_assert_int_eq(colo_stream_config_add_cap(&c, "x-colo", &err), 0);
	ck_assert_int_eq(colo_sw_configuration(&w, &c, &err), 0);
	if (seed % 2)
		colo_sw_enable_colo(&w);
	colo_sw_ping(&w, (uint32_t)seed);
	colo_sw_section_begin(&w, COLO_SEC_START, 2, "ram", 0, 4, &err);
	colo_ram_writer_section(&rw);
	colo_ram_put_mem_size(&rw, blocks, 2, false);
	colo_ram_put_eos(&rw);
	colo_sw_section_end(&w);
	for (int p = 0; p < parts; p++) {
		colo_sw_section_begin(&w, COLO_SEC_PART, 2, NULL, 0, 0, &err);
		colo_ram_writer_section(&rw);
		ram_pages(&rw, &rng, (int)colo_rng_below(&rng, 12));
		colo_ram_put_eos(&rw);
		colo_sw_section_end(&w);
	}
	if (seed % 4 == 1) {
		/* A nested stream, as postcopy packages one. */
		struct colo_buf pkg = COLO_BUF_INIT;
		struct colo_stream_writer pw;
		struct colo_ram_writer prw;

		colo_sw_init(&pw, &pkg, false);
		colo_ram_writer_init(&prw, &pkg);
		colo_sw_ping(&pw, 3);
		colo_sw_section_begin(&pw, COLO_SEC_PART, 2, NULL, 0, 0, &err);
		ram_pages(&prw, &rng, 3);
		colo_ram_put_eos(&prw);
		colo_sw_section_end(&pw);
		blob_section(&pw, COLO_SEC_FULL, 9, "blob-in-package", &rng, 2);
		colo_sw_eof(&pw);
		ck_assert_int_eq(colo_sw_packaged(&w, pkg.data, pkg.len, &err), 0);
		colo_sw_free(&pw);
		colo_buf_free(&pkg);
	}
	colo_sw_section_begin(&w, COLO_SEC_END, 2, NULL, 0, 0, &err);
	colo_ram_writer_section(&rw);
	ram_pages(&rw, &rng, (int)colo_rng_below(&rng, 5));
	colo_ram_put_eos(&rw);
	colo_sw_section_end(&w);
	for (uint32_t d = 0; d < 1 + colo_rng_below(&rng, 4); d++) {
		char name[16];

		snprintf(name, sizeof(name), "blob%" PRIu32, d);
		blob_section(&w, COLO_SEC_FULL, 10 + d, name, &rng, (int)colo_rng_below(&rng, 6));
	}
	colo_sw_open_return_path(&w);
	colo_sw_eof(&w);
	if (seed % 5 != 0) {
		colo_buf_put_u8(out, COLO_SEC_VMDESC);
		colo_buf_put_be32(out, 2);
		colo_buf_put(out, "{}", 2);
	}
	colo_sw_free(&w);
	ck_assert(colo_buf_ok(out));
}

/* ---- writer: exact bytes ---- */

/* colo_buf_printf: printf's text, no NUL, appended; long lines whole. */
START_TEST(buf_printf_appends_text)
{
	struct colo_buf b = COLO_BUF_INIT;
	char big[3000];

	colo_buf_put(&b, "x", 1);
	colo_buf_printf(&b, "%s=%d;", "a", 42);
	ck_assert_uint_eq(b.len, 6);
	ck_assert_int_eq(memcmp(b.data, "xa=42;", 6), 0);
	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	colo_buf_printf(&b, "%s.", big);
	ck_assert_uint_eq(b.len, 6 + sizeof(big));
	ck_assert_uint_eq(b.data[b.len - 1], '.');
	ck_assert_uint_eq(b.data[6], 'y');
	colo_buf_printf(&b, "%s", "");
	ck_assert_uint_eq(b.len, 6 + sizeof(big));
	ck_assert(colo_buf_ok(&b));
	colo_buf_free(&b);
}
END_TEST

START_TEST(writer_exact_bytes)
{
	static const uint8_t want[] = {
		'Q', 'E', 'V', 'M', 0, 0, 0, 3,
		/* configuration "none" + capabilities subsection */
		0x07, 0, 0, 0, 4, 'n', 'o', 'n', 'e',
		0x05, 26, 'c', 'o', 'n', 'f', 'i', 'g', 'u', 'r', 'a', 't', 'i', 'o', 'n',
		'/', 'c', 'a', 'p', 'a', 'b', 'i', 'l', 'i', 't', 'i', 'e', 's',
		0, 0, 0, 1, 0, 0, 0, 1, 15,
		'x', '-', 'i', 'g', 'n', 'o', 'r', 'e', '-', 's', 'h', 'a', 'r', 'e', 'd',
		/* commands */
		0x08, 0, 1, 0, 0,                     /* OPEN_RETURN_PATH */
		0x08, 0, 2, 0, 4, 0xde, 0xad, 0xbe, 0xef,   /* PING */
		0x08, 0, 8, 0, 0,                     /* ENABLE_COLO */
		0x08, 0, 7, 0, 4, 0, 0, 0, 1, 0x00,   /* PACKAGED: a bare EOF */
		/* START "ram" id 2 instance 0 version 4, EOS, footer */
		0x01, 0, 0, 0, 2, 3, 'r', 'a', 'm', 0, 0, 0, 0, 0, 0, 0, 4,
		0, 0, 0, 0, 0, 0, 0, 0x10,
		0x7e, 0, 0, 0, 2,
		/* END id 2 */
		0x03, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x7e, 0, 0, 0, 2,
		0x00,
	};
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_stream_writer w;
	struct colo_ram_writer rw;
	struct colo_stream_config c;
	struct colo_err err;
	static const uint8_t eof = 0;

	colo_err_clear(&err);
	colo_sw_init(&w, &out, false);
	colo_ram_writer_init(&rw, &out);
	colo_sw_header(&w);
	ck_assert_int_eq(colo_stream_config_init(&c, "none", &err), 0);
	ck_assert_int_eq(colo_stream_config_add_cap(&c, "x-ignore-shared", &err), 0);
	ck_assert_int_eq(colo_sw_configuration(&w, &c, &err), 0);
	colo_sw_open_return_path(&w);
	colo_sw_ping(&w, 0xdeadbeef);
	colo_sw_enable_colo(&w);
	ck_assert_int_eq(colo_sw_packaged(&w, &eof, 1, &err), 0);
	ck_assert_int_eq(colo_sw_section_begin(&w, COLO_SEC_START, 2, "ram", 0, 4, &err), 0);
	colo_ram_put_eos(&rw);
	colo_sw_section_end(&w);
	colo_sw_section_begin(&w, COLO_SEC_END, 2, NULL, 0, 0, &err);
	colo_ram_put_eos(&rw);
	colo_sw_section_end(&w);
	colo_sw_eof(&w);
	ck_assert_uint_eq(out.len, sizeof(want));
	ck_assert_mem_eq(out.data, want, sizeof(want));
	colo_sw_free(&w);
	colo_buf_free(&out);
}
END_TEST

START_TEST(writer_vmdesc_trailer)
{
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_stream_writer w;
	struct colo_err err;
	static const char json[] = "{\"page_size\": 4096, \"devices\": []}";

	colo_err_clear(&err);
	colo_sw_init(&w, &out, true);
	colo_sw_eof(&w);
	ck_assert_int_eq(colo_sw_vmdesc(&w, &err), 0);
	ck_assert_uint_eq(out.len, 1 + 5 + strlen(json));
	ck_assert_uint_eq(out.data[1], 0x06);
	ck_assert_uint_eq(colo_load_be32(out.data + 2), strlen(json));
	ck_assert_mem_eq(out.data + 6, json, strlen(json));
	colo_sw_free(&w);
	colo_buf_free(&out);
}
END_TEST

/* ---- reader ---- */

START_TEST(reader_reports_every_item)
{
	struct colo_buf out = COLO_BUF_INIT;
	char *t;

	random_stream(&out, 1);   /* seed 1: ENABLE_COLO, PACKAGED, vmdesc */
	t = parse(out.data, out.len, NULL, 0);
	ck_assert_msg(strstr(t, "header 3\n") == t, "%s", t);
	ck_assert_msg(strstr(t, "config @8 'pc-i440fx-7.2' caps 0\n"), "%s", t);
	ck_assert_msg(strstr(t, "command ENABLE_COLO len 0 value 0 @"), "%s", t);
	ck_assert_msg(strstr(t, "command PING len 4 value 1 @"), "%s", t);
	ck_assert_msg(strstr(t, "  mem_size 131072 blocks 2\n"
			     "    block 'pc.ram' 65536 addr 0\n"
			     "    block 'vga.vram' 65536 addr 0\n"), "%s", t);
	ck_assert_msg(strstr(t, "command PACKAGED len 4 value "), "%s", t);
	ck_assert_msg(strstr(t, "command PING len 4 value 3 @"), "%s", t);
	ck_assert_msg(strstr(t, "section FULL id 9 'blob-in-package' inst 0 ver 1 @"), "%s", t);
	ck_assert_msg(strstr(t, "eof @") && strstr(t, " depth 1\n"), "%s", t);
	ck_assert_msg(strstr(t, "command OPEN_RETURN_PATH len 0"), "%s", t);
	ck_assert_msg(strstr(t, "vmdesc @"), "%s", t);
	ck_assert_msg(strstr(t, "\nok at "), "%s", t);
	free(t);
	colo_buf_free(&out);
}
END_TEST

/* The same transcript, byte by byte and in random pieces, over many streams. */
START_TEST(pieces_do_not_matter)
{
	const uint64_t base = COLO_TEST_SEED(0);

	for (uint64_t seed = base + 1; seed <= base + 60; seed++) {
		struct colo_buf out = COLO_BUF_INIT;
		struct colo_pieces one = { .fixed = 1 };
		struct colo_pieces rnd = { .max = 1 + seed * 37, .rng = { seed } };
		char *whole, *bytes, *random;

		random_stream(&out, seed);
		whole = parse(out.data, out.len, NULL, 0);
		bytes = parse(out.data, out.len, &one, 0);
		random = parse(out.data, out.len, &rnd, 0);
		ck_assert_msg(strstr(whole, "\nok at "), "seed %" PRIu64 ": %s", seed, whole);
		ck_assert_str_eq(whole, bytes);
		ck_assert_str_eq(whole, random);
		free(whole);
		free(bytes);
		free(random);
		colo_buf_free(&out);
	}
}
END_TEST

/* Errors too come out the same, at the same offset, whatever the pieces. */
START_TEST(pieces_do_not_matter_for_errors)
{
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_rng rng = { COLO_TEST_SEED(99) };

	random_stream(&out, 7);
	for (int round = 0; round < 200; round++) {
		struct colo_pieces one = { .fixed = 1 };
		struct colo_pieces rnd = { .max = 64, .rng = { rng.s + (uint64_t)round } };
		size_t at = (size_t)colo_rng_below(&rng, out.len);
		uint8_t saved = out.data[at];
		size_t len = round % 2 ? out.len : at;   /* corrupt or truncate */
		char *whole, *bytes, *random;

		if (round % 2)
			out.data[at] ^= (uint8_t)(1 + colo_rng_below(&rng, 255));
		whole = parse(out.data, len, NULL, 0);
		bytes = parse(out.data, len, &one, 0);
		random = parse(out.data, len, &rnd, 0);
		ck_assert_str_eq(whole, bytes);
		ck_assert_str_eq(whole, random);
		/* Cut right after EOF: a stream may end without its vmdesc. */
		if (round % 2 == 0 && at != out.len - 7)
			ck_assert_msg(strncmp(whole, "error: ", 7) == 0 ||
				      strstr(whole, "\nerror: "), "cut at %zu: %s", at, whole);
		out.data[at] = saved;
		free(whole);
		free(bytes);
		free(random);
	}
	colo_buf_free(&out);
}
END_TEST

START_TEST(footers_absent_are_detected)
{
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_stream_writer w;
	struct colo_rng rng = { COLO_TEST_SEED(5) };
	struct colo_stream_reader *r;
	struct rec rc;
	char *t;

	colo_sw_init(&w, &out, false);
	w.footers = false;   /* QEMU with send-section-footer=off */
	colo_sw_header(&w);
	blob_section(&w, COLO_SEC_FULL, 1, "blob-a", &rng, 2);
	blob_section(&w, COLO_SEC_FULL, 2, "blob-b", &rng, 1);
	colo_sw_eof(&w);
	t = parse(out.data, out.len, NULL, 0);
	ck_assert_msg(strstr(t, "done id 2 payload") && strstr(t, "\nok at "), "%s", t);
	free(t);

	rec_init(&rc);
	r = colo_stream_reader_new(&rec_ops, &rc, 0);
	ck_assert_int_eq(colo_stream_reader_feed(r, out.data, out.len), (ssize_t)out.len);
	ck_assert_int_eq(colo_stream_reader_finish(r), 0);
	ck_assert_int_eq(colo_stream_reader_footers(r), 0);
	ck_assert_ptr_null(colo_stream_reader_config(r));
	colo_stream_reader_free(r);
	rec_free(&rc);
	colo_sw_free(&w);
	colo_buf_free(&out);
}
END_TEST

START_TEST(footer_missing_after_footers_seen)
{
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_stream_writer w;
	struct colo_rng rng = { COLO_TEST_SEED(5) };
	size_t second;
	char *t;

	colo_sw_init(&w, &out, false);
	colo_sw_header(&w);
	blob_section(&w, COLO_SEC_FULL, 1, "blob-a", &rng, 1);
	second = out.len;
	w.footers = false;
	blob_section(&w, COLO_SEC_FULL, 2, "blob-b", &rng, 0);
	colo_sw_eof(&w);
	t = parse(out.data, out.len, NULL, 0);
	/* blob-b: 1 type + 4 id + 1 len + 6 name + 4 + 4, then be16 count */
	ck_assert_msg(strstr(t, "error: section 2 'blob-b': expected a footer at offset "),
		      "%s", t);
	ck_assert_uint_eq(out.data[second + 22], 0x00);   /* EOF where the footer goes */
	free(t);
	colo_sw_free(&w);
	colo_buf_free(&out);
}
END_TEST

/*
 * A COLO checkpoint on a live channel: `RAM END section, EOF` without header,
 * then bytes of another protocol.  The reader stops at EOF, hands the rest
 * back, and the next checkpoint refers to the section id it already knows.
 */
START_TEST(continuation_streams)
{
	static const struct colo_ram_block_info blocks[] = { { "pc.ram", 65536, 0 } };
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_stream_writer w;
	struct colo_ram_writer rw;
	struct colo_stream_reader *r;
	struct colo_err err;
	struct rec rc;
	uint8_t page[COLO_PAGE_SIZE];
	size_t first_end;
	ssize_t got;

	memset(page, 0xab, sizeof(page));
	colo_err_clear(&err);
	colo_sw_init(&w, &out, false);
	colo_ram_writer_init(&rw, &out);
	/* checkpoint 1 (after an initial sync that declared id 2) */
	colo_sw_section_begin(&w, COLO_SEC_START, 2, "ram", 0, 4, &err);
	colo_ram_put_mem_size(&rw, blocks, 1, false);
	colo_ram_put_raw(&rw, "pc.ram", 4096, page);
	colo_ram_put_eos(&rw);
	colo_sw_section_end(&w);
	colo_sw_eof(&w);
	first_end = out.len;
	colo_buf_put_be32(&out, 5);          /* a COLO message: VMSTATE_RECEIVED */
	rec_init(&rc);
	r = colo_stream_reader_new(&rec_ops, &rc,
				   COLO_SR_NO_HEADER | COLO_SR_NO_VMDESC | COLO_SR_TRAILING_OK);
	got = colo_stream_reader_feed(r, out.data, out.len);
	ck_assert_int_eq(got, (ssize_t)first_end);
	ck_assert(colo_stream_reader_done(r));
	ck_assert_int_eq(colo_stream_reader_feed(r, out.data + got, 4), 0);

	/* checkpoint 2: an END for the same id, in 1-byte pieces */
	colo_buf_reset(&out);
	colo_ram_writer_section(&rw);
	colo_sw_section_begin(&w, COLO_SEC_END, 2, NULL, 0, 0, &err);
	colo_ram_put_zero(&rw, "pc.ram", 8192, 0);
	colo_ram_put_eos(&rw);
	colo_sw_section_end(&w);
	colo_sw_eof(&w);
	colo_buf_put_be32(&out, 6);
	colo_stream_reader_restart(r, COLO_SR_NO_HEADER | COLO_SR_NO_VMDESC |
				   COLO_SR_TRAILING_OK);
	for (size_t i = 0; i < out.len; i++) {
		got = colo_stream_reader_feed(r, out.data + i, 1);
		if (colo_stream_reader_done(r) && got == 0) {
			ck_assert_uint_eq(i, out.len - 4);
			break;
		}
		ck_assert_int_eq(got, 1);
	}
	ck_assert(colo_stream_reader_done(r));
	/* Offsets count the channel's bytes: the second stream starts after the first. */
	snprintf((char *)page, sizeof(page),
		 "section END id 2 'ram' inst 0 ver 4 @%zu depth 0\n"
		 "  page 'pc.ram' +0x2000 zero len 0 fill 0 sum 00000000 @%zu\n",
		 first_end, first_end + 5);
	colo_buf_put_u8(&rc.log, 0);
	ck_assert_msg(strstr((char *)rc.log.data, (char *)page), "%s", (char *)rc.log.data);
	colo_stream_reader_free(r);
	rec_free(&rc);
	colo_sw_free(&w);
	colo_buf_free(&out);
}
END_TEST

START_TEST(trailing_bytes_refused_in_file_mode)
{
	struct colo_buf out = COLO_BUF_INIT;
	char *t;

	random_stream(&out, 2);
	colo_buf_put(&out, "xyz", 3);
	t = parse(out.data, out.len, NULL, 0);
	ck_assert_msg(strstr(t, "error: trailing data at offset "), "%s", t);
	free(t);
	colo_buf_free(&out);
}
END_TEST

START_TEST(ignore_shared_adds_addresses)
{
	static const struct colo_ram_block_info blocks[] = {
		{ "pc.ram", 8192, 0x100000 },
	};
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_stream_writer w;
	struct colo_ram_writer rw;
	struct colo_stream_config c;
	struct colo_err err;
	char *t;

	colo_err_clear(&err);
	colo_sw_init(&w, &out, false);
	colo_ram_writer_init(&rw, &out);
	colo_sw_header(&w);
	colo_stream_config_init(&c, "pc", &err);
	colo_stream_config_add_cap(&c, "x-ignore-shared", &err);
	colo_sw_configuration(&w, &c, &err);
	colo_sw_section_begin(&w, COLO_SEC_START, 2, "ram", 0, 4, &err);
	colo_ram_put_mem_size(&rw, blocks, 1, true);
	colo_ram_put_eos(&rw);
	colo_sw_section_end(&w);
	colo_sw_eof(&w);
	t = parse(out.data, out.len, NULL, 0);
	ck_assert_msg(strstr(t, "  cap x-ignore-shared\n"), "%s", t);
	ck_assert_msg(strstr(t, "    block 'pc.ram' 8192 addr 100000\n"), "%s", t);
	ck_assert_msg(strstr(t, "\nok at "), "%s", t);
	free(t);
	colo_sw_free(&w);
	colo_buf_free(&out);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("stream");
	TCase *tc = tcase_create("stream");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, buf_printf_appends_text);
	tcase_add_test(tc, writer_exact_bytes);
	tcase_add_test(tc, writer_vmdesc_trailer);
	tcase_add_test(tc, reader_reports_every_item);
	tcase_add_test(tc, pieces_do_not_matter);
	tcase_add_test(tc, pieces_do_not_matter_for_errors);
	tcase_add_test(tc, footers_absent_are_detected);
	tcase_add_test(tc, footer_missing_after_footers_seen);
	tcase_add_test(tc, continuation_streams);
	tcase_add_test(tc, trailing_bytes_refused_in_file_mode);
	tcase_add_test(tc, ignore_shared_adds_addresses);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
