/*
 * fuzz_stream.c: libFuzzer target for every reader of the savevm stream
 * (DESIGN.md §3, §8: "fuzz every parser that reads bytes from outside").
 *
 * The input is `mode, piece seed, stream` (fuzz_stream.h).  The modes:
 *
 *   DUMP    colo_dump_buffer() (vmdesc-driven device decoding, RAM page
 *           counting) fed the stream whole and again in pieces.  stream.h
 *           promises that results do not depend on how the bytes were
 *           split, so this is a differential test of the push parser: both
 *           runs must fail with the same message, or both succeed with equal
 *           documents.  A document must describe every item, and devices
 *           must have been decoded with the stream's own vmdesc; a refusal
 *           is checked against a bare reader (a stream with neither devices
 *           nor vmdesc needs no vmdesc to dump).  The document is then
 *           printed as text, as `colo-replay dump` would.
 *   LOADER  the savevm loader into the demo guest (the secondary's path),
 *           in pieces and whole: same error, or same loaded guest (compared
 *           by saving both again), and that save loads back to the same
 *           bytes.
 *   RAW     a bare reader for continuation streams (NO_HEADER |
 *           TRAILING_OK, as a COLO checkpoint channel uses it) with the RAM
 *           record reader on every section, restarted after each stream on
 *           the same channel.  Every callback is hashed, and the whole and
 *           split runs must produce the same hash.
 *
 * Beyond the sanitizers, the target checks the API's promises and abort()s
 * when one is broken, which makes libFuzzer keep the input: errors are a
 * negative errno with a non-empty message (never "out of memory": inputs
 * are small), stay latched, feed() takes all it is given unless the stream
 * ended, page callbacks stay inside their block.  Everything is freed on
 * every run so LeakSanitizer can report.  FUZZ_VERBOSE=1 prints what each
 * run concluded, for triage.
 */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"
#include "dump.h"
#include "fuzz_check.h"
#include "pagecodec.h"
#include "fuzz_stream.h"
#include "ramfmt.h"
#include "savevm.h"
#include "splitmix.h"
#include "stream.h"
#include "vmdesc.h"

/* A continuation channel carries stream after stream; bound the work. */
#define RAW_STREAMS_MAX 64
#define RAW_FLAGS (COLO_SR_NO_HEADER | COLO_SR_TRAILING_OK)


/* FUZZ_VERBOSE=1 in the environment: say what each run concluded (triage). */
static void note(const char *who, int rc, const char *msg)
{
	static int verbose = -1;

	if (verbose < 0)
		verbose = getenv("FUZZ_VERBOSE") != NULL;
	if (verbose)
		fprintf(stderr, "%s: %s\n", who, rc ? msg : "ok");
}

/* An error must say what went wrong: a negative errno and a message. */
static void check_error(int rc, const struct colo_err *e, const char *who)
{
	CHECK(rc < 0, "%s: failure with rc %d", who, rc);
	CHECK(e->code == -rc, "%s: rc %d but error code %d", who, rc, e->code);
	CHECK(strnlen(e->msg, sizeof(e->msg)) < sizeof(e->msg),
	      "%s: unterminated message", who);
	CHECK(e->msg[0] != '\0', "%s: error %d without a message", who, rc);
	/* Inputs are small and libFuzzer kills the run before malloc() fails,
	 * so "out of memory" here always hides the real cause. */
	CHECK(e->code != ENOMEM, "%s: out of memory on a small input: %s", who, e->msg);
}

/* ---- piece sizes ---- */

struct pieces {
	uint64_t s;
	size_t max;
	bool empty_feeds;           /* sometimes hand the reader 0 bytes */
};

/*
 * Seed 0 feeds byte by byte; otherwise the low bits pick a ceiling: tiny
 * pieces cut every field, 4097 makes pages straddle pieces.
 */
static void pieces_init(struct pieces *p, uint8_t seed, bool empty_feeds)
{
	static const size_t ceiling[8] = { 4097, 1, 2, 3, 7, 16, 100, 1000 };

	p->s = seed;
	p->max = seed == 0 ? 1 : ceiling[seed & 7];
	p->empty_feeds = empty_feeds && seed != 0;
}

static size_t pieces_next(void *ctx)
{
	struct pieces *p = ctx;
	uint64_t v;

	if (p->max == 1)
		return 1;
	v = colo_splitmix64(&p->s);
	if (p->empty_feeds && (v >> 40) % 29 == 0)
		return 0;
	return 1 + (size_t)(v % p->max);
}

/* ---- DUMP ---- */

static FILE *devnull(void)
{
	static FILE *f;

	if (!f)
		f = fopen("/dev/null", "w");
	CHECK(f != NULL, "cannot open /dev/null");
	return f;
}

static json_int_t jint(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/*
 * dump.h promises a description of every item.  A key that is missing
 * (jansson refuses to make a string of bytes that are not UTF-8, and
 * json_object_set_new() then quietly sets nothing) is a lost fact.
 */
static void check_doc(const json_t *doc, size_t n, uint64_t vat)
{
	const json_t *items = json_object_get(doc, "items");
	const json_t *sum = json_object_get(doc, "summary");
	const json_t *conf = json_object_get(doc, "configuration");
	const json_t *blocks = json_object_get(doc, "ram_blocks");
	json_int_t full = 0, vmdesc_at = -1;

	CHECK(json_is_array(items) && json_is_object(sum) && json_is_array(blocks),
	      "document without items, summary or ram_blocks");
	CHECK(jint(sum, "bytes_read") == (json_int_t)n, "dump read %lld of %zu bytes",
	      (long long)jint(sum, "bytes_read"), n);
	if (!json_is_null(conf))
		CHECK(json_is_string(json_object_get(conf, "name")),
		      "configuration without a name");
	for (size_t i = 0; i < json_array_size(items); i++) {
		const json_t *it = json_array_get(items, i);
		const char *kind = json_string_value(json_object_get(it, "kind"));
		const char *type;

		CHECK(kind != NULL, "item %zu without a kind", i);
		if (strcmp(kind, "vmdesc") == 0)
			vmdesc_at = jint(it, "offset");
		if (strcmp(kind, "section") != 0)
			continue;
		CHECK(json_is_string(json_object_get(it, "idstr")),
		      "section item %zu (offset %lld) without its idstr", i,
		      (long long)jint(it, "offset"));
		type = json_string_value(json_object_get(it, "type"));
		if (type && strcmp(type, "FULL") == 0)
			full++;
	}
	for (size_t i = 0; i < json_array_size(blocks); i++)
		CHECK(json_is_string(json_object_get(json_array_get(blocks, i), "name")),
		      "RAM block %zu without its name", i);
	/* Success means every device section was decoded. */
	CHECK(jint(sum, "devices") == full, "%lld devices decoded, %lld FULL sections",
	      (long long)jint(sum, "devices"), (long long)full);
	/* Devices are decoded with the stream's own vmdesc, not with bytes
	 * that merely look like one (inside a RAM page, say). */
	if (full)
		CHECK(vmdesc_at >= 0 && (uint64_t)vmdesc_at == vat,
		      "devices decoded with the vmdesc-like bytes at offset %lld, the "
		      "stream's vmdesc is at %lld", vat == UINT64_MAX ? -1LL :
		      (long long)vat, (long long)vmdesc_at);
}

/*
 * An oracle for refusals: a bare reader that handles "ram" sections as the
 * dump does and refuses devices.  Where it reads to the end a stream that
 * has no VMDESCRIPTION at all (QEMU can be told to send none), the dump
 * has nothing to decode and no vmdesc to judge, so it must succeed too:
 * bytes that only look like a vmdesc (in a RAM page) are no reason to fail.
 */
struct bare {
	struct colo_ram_reader rr;
	uint64_t vmdesc_at;
};

static int bare_configuration(void *ud, const struct colo_stream_config *c,
			      uint64_t offset, struct colo_err *err)
{
	struct bare *b = ud;

	(void)offset; (void)err;
	b->rr.ignore_shared = colo_stream_config_has_cap(c, "x-ignore-shared");
	return 0;
}

static int bare_section(void *ud, const struct colo_section_info *s,
			struct colo_section_handler *h, struct colo_err *err)
{
	struct bare *b = ud;

	(void)err;
	if (s->type != COLO_SEC_FULL && strcmp(s->idstr, COLO_RAM_IDSTR) == 0) {
		h->payload = colo_ram_reader_payload;
		h->ctx = &b->rr;
	}
	return 0;
}

static int bare_vmdesc(void *ud, const uint8_t *json, size_t len, uint64_t offset,
		       struct colo_err *err)
{
	(void)json; (void)len; (void)err;
	((struct bare *)ud)->vmdesc_at = offset;
	return 0;
}

static const struct colo_stream_ops bare_ops = {
	.configuration = bare_configuration,
	.section = bare_section,
	.vmdesc = bare_vmdesc,
};

static bool bare_reads(const uint8_t *p, size_t n)
{
	struct colo_stream_reader *r;
	struct bare b;
	bool ok;

	memset(&b, 0, sizeof(b));
	b.vmdesc_at = UINT64_MAX;
	colo_ram_reader_init(&b.rr, NULL, COLO_PAGE_KINDS_ALL);
	r = colo_stream_reader_new(&bare_ops, &b, 0);
	CHECK(r != NULL, "cannot make a reader");
	ok = colo_stream_reader_feed(r, p, n) >= 0 && colo_stream_reader_finish(r) == 0;
	colo_stream_reader_free(r);
	colo_ram_reader_free(&b.rr);
	return ok && b.vmdesc_at == UINT64_MAX;
}

static void fuzz_dump(const uint8_t *p, size_t n, uint8_t seed)
{
	struct colo_err ew, ep;
	json_t *dw, *dp;
	struct pieces pc;
	size_t vat;
	int rw, rp;

	if (colo_vmdesc_locate(p, n, &vat) != 0)
		vat = SIZE_MAX;
	colo_err_clear(&ew);
	colo_err_clear(&ep);
	rw = colo_dump_buffer(p, n, NULL, NULL, &dw, &ew);
	pieces_init(&pc, seed, false);
	rp = colo_dump_buffer(p, n, pieces_next, &pc, &dp, &ep);
	note("dump (whole)", rw, ew.msg);
	note("dump (pieces)", rp, ep.msg);
	if (rw)
		check_error(rw, &ew, "dump (whole)");
	if (rp)
		check_error(rp, &ep, "dump (pieces)");
	CHECK((rw == 0) == (dw != NULL), "dump (whole): rc %d with document %p", rw,
	      (void *)dw);
	CHECK((rp == 0) == (dp != NULL), "dump (pieces): rc %d with document %p", rp,
	      (void *)dp);
	CHECK(rw == rp && strcmp(ew.msg, ep.msg) == 0,
	      "whole and split input disagree:\n  whole:  %d %s\n  pieces: %d %s",
	      rw, ew.msg, rp, ep.msg);
	if (rw == 0) {
		if (!json_equal(dw, dp)) {
			char *a = json_dumps(dw, JSON_SORT_KEYS);
			char *b = json_dumps(dp, JSON_SORT_KEYS);

			fuzz_fail(__FILE__, __LINE__, "json_equal(dw, dp)",
				  "whole and split input give different documents:\n"
				  "  whole:  %.2000s\n  pieces: %.2000s",
				  a ? a : "?", b ? b : "?");
		}
		check_doc(dw, n, vat == SIZE_MAX ? UINT64_MAX : vat);
		/* The text printer reads the same document `colo-replay dump` prints. */
		colo_dump_print_text(dw, devnull());
	}
	else
		CHECK(!bare_reads(p, n),
		      "dump refuses a stream without vmdesc and devices: %s", ew.msg);
	json_decref(dw);
	json_decref(dp);
}

/* ---- LOADER ---- */

struct load_result {
	int rc;
	char msg[COLO_ERR_MAX];
	struct colo_savevm_load_info info;
};

static void load(struct colo_demo *d, const uint8_t *p, size_t n, struct pieces *pc,
		 struct load_result *res, const char *who)
{
	struct colo_savevm_loader *l;
	struct colo_err e;
	int rc = 0;

	/* Every page decoder is fed what the fuzzer makes of page bytes. */
	l = colo_savevm_loader_new(&d->sv, colo_page_codecs, COLO_PAGE_KINDS_ALL);
	CHECK(l != NULL, "%s: cannot make a loader", who);
	for (size_t off = 0; off < n;) {
		size_t k = pc ? pieces_next(pc) : n - off;
		ssize_t got;

		if (k > n - off)
			k = n - off;
		got = colo_savevm_loader_feed(l, p + off, k);
		if (got < 0) {
			rc = (int)got;
			break;
		}
		/* Without TRAILING_OK the loader takes every byte or fails. */
		CHECK((size_t)got == k, "%s: fed %zu bytes, %zd consumed", who, k, got);
		off += k;
	}
	if (rc == 0) {
		rc = colo_savevm_loader_finish(l);
	} else {
		int again = colo_savevm_loader_finish(l);

		CHECK(again == rc, "%s: error %d not latched: finish gives %d", who, rc,
		      again);
	}
	res->rc = rc;
	res->msg[0] = '\0';
	if (rc) {
		ssize_t again = colo_savevm_loader_feed(l, p, n);

		CHECK(again == rc, "%s: error %d not latched: feed gives %zd", who, rc,
		      again);
		snprintf(res->msg, sizeof(res->msg), "%s", colo_savevm_loader_error(l));
		e.code = -rc;
		memcpy(e.msg, res->msg, sizeof(e.msg));
		check_error(rc, &e, who);
	}
	res->info = colo_savevm_loader_info(l);
	note(who, rc, res->msg);
	colo_savevm_loader_free(l);
}

static bool same_info(const struct colo_savevm_load_info *a,
		      const struct colo_savevm_load_info *b)
{
	if (a->enable_colo != b->enable_colo ||
	    a->open_return_path != b->open_return_path || a->pings != b->pings ||
	    a->last_ping != b->last_ping || a->devices != b->devices ||
	    a->vmdesc != b->vmdesc)
		return false;
	return memcmp(a->pages, b->pages, sizeof(a->pages)) == 0;
}

/* Save a loaded guest again: a load that succeeded must leave a savable guest. */
static void save(struct colo_demo *d, struct colo_buf *out, const char *who)
{
	struct colo_err e;
	int r;

	colo_err_clear(&e);
	r = colo_savevm_save(&d->sv, out, COLO_SAVEVM_NO_VMDESC, &e);
	CHECK(r == 0, "%s: a successfully loaded guest cannot be saved: %s", who, e.msg);
}

/*
 * What colo saves, colo loads back to the same guest: the saved stream of a
 * loaded guest loads into a fresh one, whose save is the same bytes.
 */
static void round_trip(const struct colo_buf *saved)
{
	struct colo_buf again = COLO_BUF_INIT;
	struct load_result res;
	struct colo_demo d;
	struct colo_err e;

	colo_err_clear(&e);
	CHECK(colo_demo_init(&d, FUZZ_DEMO_RAM, 0, &e) == 0, "demo guest: %s", e.msg);
	load(&d, saved->data, saved->len, NULL, &res, "loader (round trip)");
	CHECK(res.rc == 0, "a stream colo saved does not load: %s", res.msg);
	save(&d, &again, "loader (round trip)");
	CHECK(again.len == saved->len && memcmp(again.data, saved->data, again.len) == 0,
	      "save, load, save gives different bytes (%zu / %zu)", saved->len,
	      again.len);
	colo_buf_free(&again);
	colo_demo_free(&d);
}

static void fuzz_loader(const uint8_t *p, size_t n, uint8_t seed)
{
	struct colo_demo dw, dp;
	struct load_result rw, rp;
	struct pieces pc;
	struct colo_err e;

	colo_err_clear(&e);
	CHECK(colo_demo_init(&dw, FUZZ_DEMO_RAM, 0, &e) == 0, "demo guest: %s", e.msg);
	CHECK(colo_demo_init(&dp, FUZZ_DEMO_RAM, 0, &e) == 0, "demo guest: %s", e.msg);
	pieces_init(&pc, seed, true);
	load(&dp, p, n, &pc, &rp, "loader (pieces)");
	load(&dw, p, n, NULL, &rw, "loader (whole)");
	CHECK(rw.rc == rp.rc && strcmp(rw.msg, rp.msg) == 0,
	      "whole and split input disagree:\n  whole:  %d %s\n  pieces: %d %s",
	      rw.rc, rw.msg, rp.rc, rp.msg);
	if (rw.rc == 0) {
		struct colo_buf bw = COLO_BUF_INIT, bp = COLO_BUF_INIT;

		CHECK(same_info(&rw.info, &rp.info),
		      "whole and split input: load info differs");
		save(&dw, &bw, "loader (whole)");
		save(&dp, &bp, "loader (pieces)");
		CHECK(bw.len == bp.len && memcmp(bw.data, bp.data, bw.len) == 0,
		      "whole and split input load different guests (%zu / %zu "
		      "bytes saved)", bw.len, bp.len);
		round_trip(&bw);
		colo_buf_free(&bw);
		colo_buf_free(&bp);
	}
	colo_demo_free(&dw);
	colo_demo_free(&dp);
}

/* ---- RAW ---- */

struct raw {
	struct colo_ram_reader rr;
	uint64_t h;                 /* FNV-1a over every callback and its data */
};

static void mix(struct raw *w, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++) {
		w->h ^= b[i];
		w->h *= 0x100000001b3ull;
	}
}

static void mix_u64(struct raw *w, uint64_t v)
{
	mix(w, &v, sizeof(v));
}

static int raw_section(void *ud, const struct colo_section_info *s,
		       struct colo_section_handler *h, struct colo_err *err)
{
	struct raw *w = ud;

	(void)err;
	CHECK(s->idstr[COLO_IDSTR_MAX] == '\0', "section idstr not terminated");
	mix_u64(w, 's');
	mix_u64(w, s->type);
	mix_u64(w, s->section_id);
	mix(w, s->idstr, strlen(s->idstr));
	mix_u64(w, s->instance_id);
	mix_u64(w, s->version_id);
	mix_u64(w, s->offset);
	mix_u64(w, s->payload_offset);
	mix_u64(w, (uint64_t)s->depth);
	/* Every section goes to the RAM records: the most parsing per byte. */
	h->payload = colo_ram_reader_payload;
	h->ctx = &w->rr;
	return 0;
}

static int raw_section_done(void *ud, const struct colo_section_info *s,
			    struct colo_err *err)
{
	struct raw *w = ud;

	(void)err;
	CHECK(s->payload_offset + s->payload_len >= s->payload_offset,
	      "payload length wraps");
	mix_u64(w, 'd');
	mix_u64(w, s->section_id);
	mix_u64(w, s->payload_len);
	return 0;
}

static int raw_command(void *ud, const struct colo_command_info *c, struct colo_err *err)
{
	struct raw *w = ud;

	(void)err;
	mix_u64(w, 'c');
	mix_u64(w, c->cmd);
	mix_u64(w, c->len);
	mix_u64(w, c->value);
	mix_u64(w, c->offset);
	mix_u64(w, (uint64_t)c->depth);
	mix(w, c->data, c->len);   /* the data must be readable during the call */
	return 0;
}

static int raw_eof(void *ud, int depth, uint64_t offset, struct colo_err *err)
{
	struct raw *w = ud;

	(void)err;
	mix_u64(w, 'e');
	mix_u64(w, (uint64_t)depth);
	mix_u64(w, offset);
	return 0;
}

static int raw_vmdesc(void *ud, const uint8_t *json, size_t len, uint64_t offset,
		      struct colo_err *err)
{
	struct raw *w = ud;

	(void)err;
	CHECK(len <= COLO_VMDESC_MAX, "vmdesc of %zu bytes passed on", len);
	mix_u64(w, 'v');
	mix_u64(w, offset);
	mix(w, json, len);
	return 0;
}

static int raw_mem_size(void *ud, const struct colo_ram_block_info *blocks, size_t n,
			uint64_t total, struct colo_err *err)
{
	struct raw *w = ud;
	uint64_t sum = 0;

	(void)err;
	CHECK(n <= COLO_RAM_BLOCKS_MAX, "MEM_SIZE with %zu blocks", n);
	CHECK(blocks == w->rr.blocks && n == w->rr.nblocks,
	      "MEM_SIZE callback does not see the reader's block table");
	mix_u64(w, 'm');
	mix_u64(w, total);
	for (size_t i = 0; i < n; i++) {
		CHECK(blocks[i].name[0] != '\0', "MEM_SIZE block %zu has no name", i);
		CHECK(blocks[i].length && blocks[i].length % COLO_PAGE_SIZE == 0,
		      "MEM_SIZE block '%s' length %llu", blocks[i].name,
		      (unsigned long long)blocks[i].length);
		sum += blocks[i].length;
		mix(w, blocks[i].name, strlen(blocks[i].name));
		mix_u64(w, blocks[i].length);
		mix_u64(w, blocks[i].addr);
	}
	CHECK(sum <= total, "MEM_SIZE blocks add up to more than the total");
	return 0;
}

static int raw_page(void *ud, const struct colo_ram_page *p, struct colo_err *err)
{
	struct raw *w = ud;

	(void)err;
	CHECK(p->block_index < w->rr.nblocks && p->block == &w->rr.blocks[p->block_index],
	      "page of block %u, the table has %zu", p->block_index, w->rr.nblocks);
	CHECK(p->offset % COLO_PAGE_SIZE == 0 && p->offset < p->block->length,
	      "page offset 0x%llx outside block '%s' of %llu bytes",
	      (unsigned long long)p->offset, p->block->name,
	      (unsigned long long)p->block->length);
	CHECK((unsigned)p->kind < COLO_PAGE_KINDS, "page kind %d", (int)p->kind);
	CHECK(w->rr.allowed & COLO_PAGE_KIND_BIT(p->kind), "page kind %d not allowed",
	      (int)p->kind);
	switch (p->kind) {
	case COLO_PAGE_ZERO:
		CHECK(p->len == 0, "zero page with %zu data bytes", p->len);
		break;
	case COLO_PAGE_RAW:
		CHECK(p->len == COLO_PAGE_SIZE, "raw page of %zu bytes", p->len);
		break;
	case COLO_PAGE_XBZRLE:
		/* QEMU accepts an empty XBZRLE page: nothing changed. */
		CHECK(p->len <= COLO_RAM_XBZRLE_MAX, "xbzrle page of %zu bytes", p->len);
		break;
	case COLO_PAGE_COMPRESS:
		CHECK(p->len > 0 && p->len <= COLO_RAM_COMPRESS_MAX,
		      "compressed page of %zu bytes", p->len);
		break;
	default:
		CHECK(p->len > 0 && p->len <= COLO_RAM_ENCODED_MAX,
		      "%s page of %zu bytes", colo_page_kind_name(p->kind), p->len);
		break;
	}
	mix_u64(w, 'p');
	mix_u64(w, p->block_index);
	mix_u64(w, p->offset);
	mix_u64(w, (uint64_t)p->kind);
	mix_u64(w, p->fill);
	mix_u64(w, p->record_offset);
	mix(w, p->data, p->len);   /* valid during the callback: ASan checks it */
	return 0;
}

static const struct colo_stream_ops raw_ops = {
	.section = raw_section,
	.section_done = raw_section_done,
	.command = raw_command,
	.eof = raw_eof,
	.vmdesc = raw_vmdesc,
};

struct raw_result {
	int rc;
	char msg[COLO_ERR_MAX];
	uint64_t hash;
	size_t consumed;
	unsigned streams;
};

static void raw_run(const uint8_t *p, size_t n, struct pieces *pc,
		    struct raw_result *res, const char *who)
{
	struct colo_ram_sink sink = { raw_mem_size, raw_page, NULL };
	struct colo_stream_reader *r;
	struct raw w;
	size_t off = 0;
	int rc = 0;

	memset(&w, 0, sizeof(w));
	w.h = 0xcbf29ce484222325ull;
	sink.ud = &w;
	colo_ram_reader_init(&w.rr, &sink, COLO_PAGE_KINDS_ALL);
	r = colo_stream_reader_new(&raw_ops, &w, RAW_FLAGS);
	CHECK(r != NULL, "%s: cannot make a reader", who);
	res->streams = 0;
	for (;;) {
		while (off < n && !colo_stream_reader_done(r)) {
			size_t k = pc ? pieces_next(pc) : n - off;
			ssize_t got;

			if (k > n - off)
				k = n - off;
			got = colo_stream_reader_feed(r, p + off, k);
			if (got < 0) {
				rc = (int)got;
				goto out;
			}
			CHECK((size_t)got <= k, "%s: fed %zu bytes, %zd consumed", who, k,
			      got);
			/* Fewer than given only once the stream has ended. */
			CHECK((size_t)got == k || colo_stream_reader_done(r),
			      "%s: fed %zu bytes, %zd consumed, stream not done", who,
			      k, got);
			off += (size_t)got;
			CHECK(colo_stream_reader_offset(r) <= off,
			      "%s: reader offset %llu past the %zu bytes consumed", who,
			      (unsigned long long)colo_stream_reader_offset(r), off);
		}
		if (!colo_stream_reader_done(r)) {
			rc = colo_stream_reader_finish(r);
			if (rc)
				goto out;
			CHECK(colo_stream_reader_done(r), "%s: finished but not done",
			      who);
		}
		/* What the reader took is exactly what it said it consumed. */
		CHECK(colo_stream_reader_offset(r) == off,
		      "%s: stream %u done at reader offset %llu, %zu bytes consumed", who,
		      res->streams, (unsigned long long)colo_stream_reader_offset(r),
		      off);
		mix_u64(&w, 'E');
		mix_u64(&w, off);
		if (++res->streams == RAW_STREAMS_MAX || off == n)
			break;
		/* The next checkpoint on the same channel. */
		colo_stream_reader_restart(r, RAW_FLAGS);
	}
out:
	res->rc = rc;
	res->msg[0] = '\0';
	if (rc) {
		struct colo_err e;
		ssize_t again = colo_stream_reader_feed(r, p, n);

		CHECK(again == rc, "%s: error %d not latched: feed gives %zd", who, rc,
		      again);
		CHECK(colo_stream_reader_finish(r) == rc, "%s: error %d not latched by "
		      "finish", who, rc);
		CHECK(colo_stream_reader_errcode(r) == -rc, "%s: rc %d, errcode %d", who,
		      rc, colo_stream_reader_errcode(r));
		snprintf(res->msg, sizeof(res->msg), "%s", colo_stream_reader_error(r));
		e.code = -rc;
		memcpy(e.msg, res->msg, sizeof(e.msg));
		check_error(rc, &e, who);
	}
	res->hash = w.h;
	res->consumed = off;
	note(who, rc, res->msg);
	colo_stream_reader_free(r);
	colo_ram_reader_free(&w.rr);
}

static void fuzz_raw(const uint8_t *p, size_t n, uint8_t seed)
{
	struct raw_result rw, rp;
	struct pieces pc;

	raw_run(p, n, NULL, &rw, "raw (whole)");
	pieces_init(&pc, seed, true);
	raw_run(p, n, &pc, &rp, "raw (pieces)");
	CHECK(rw.rc == rp.rc && strcmp(rw.msg, rp.msg) == 0,
	      "whole and split input disagree:\n  whole:  %d %s\n  pieces: %d %s",
	      rw.rc, rw.msg, rp.rc, rp.msg);
	/* Streams completed before an error are the same; the bytes taken from
	 * the stream that failed depend on the pieces. */
	CHECK(rw.streams == rp.streams && (rw.rc || rw.consumed == rp.consumed),
	      "whole and split input: %u streams in %zu bytes / %u streams in %zu bytes",
	      rw.streams, rw.consumed, rp.streams, rp.consumed);
	CHECK(rw.hash == rp.hash, "whole and split input: different callbacks");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data + FUZZ_HEADER_LEN;
	size_t n;

	if (size < FUZZ_HEADER_LEN)
		return 0;
	n = size - FUZZ_HEADER_LEN;
	switch ((enum fuzz_mode)(data[0] % FUZZ_MODES)) {
	case FUZZ_MODE_DUMP:
		fuzz_dump(p, n, data[1]);
		break;
	case FUZZ_MODE_LOADER:
		fuzz_loader(p, n, data[1]);
		break;
	case FUZZ_MODE_RAW:
	case FUZZ_MODES:
		fuzz_raw(p, n, data[1]);
		break;
	}
	return 0;
}
