/*
 * test_image.c: images (common/rec/image.h).
 *
 * Round trips: a guest (demo: every vmstate field kind; memtouch: a real
 * guest with threads) saved as a full stream, loaded into an image, written
 * out again, loaded again (same image, same bytes), read by colo-replay's
 * dump and by the savevm loader into a fresh guest of the same kind (same
 * state).  A full sync and checkpoints built as primary.c builds them
 * (staged pages encoded against a shadow with every codec set, device FULL
 * sections, colo/checkpoint with its checksum) and applied: the image must
 * equal a fresh full save of the guest, and its touched bits the pages that
 * changed.  Bad input: every truncation of a full stream and of both
 * checkpoint streams, and streams that lie, fail with a one-line message
 * naming an offset and leave the image as it was.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "ckptgen.h"
#include "colomsg.h"
#include "demo.h"
#include "dump.h"
#include "guest.h"
#include "image.h"
#include "memtouch.h"
#include "nodecfg.h"
#include "pagecodec.h"
#include "ram.h"
#include "ramenc.h"
#include "registry.h"
#include "savevm.h"
#include "stream.h"
#include "testutil.h"

#define PAGE COLO_PAGE_SIZE
#define DEMO_RAM (64 * PAGE)

/* ---- helpers ---- */

static void load_ok(struct colo_image *img, const struct colo_buf *b)
{
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(colo_image_load_full(img, b->data, b->len, &err) == 0, "%s", err.msg);
}

static void save_ok(const struct colo_image *img, struct colo_buf *out)
{
	struct colo_err err;

	colo_err_clear(&err);
	colo_buf_reset(out);
	ck_assert_msg(colo_image_save_full(img, out, &err) == 0, "%s", err.msg);
}

static void same(const struct colo_image *a, const struct colo_image *b, const char *what)
{
	struct colo_err why;

	colo_err_clear(&why);
	ck_assert_msg(colo_image_compare(a, b, &why) == 0, "%s: %s", what, why.msg);
}

/* A full save of a guest's registry, as an image. */
static void image_of(struct colo_savevm *sv, struct colo_image *img)
{
	struct colo_buf b = COLO_BUF_INIT;
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(colo_savevm_save(sv, &b, COLO_SAVEVM_ENABLE_COLO, &err) == 0, "%s",
		      err.msg);
	load_ok(img, &b);
	colo_buf_free(&b);
}

/* Load a full stream into a guest with colo's loader (every page kind). */
static void guest_load(struct colo_savevm *sv, const struct colo_buf *b, uint32_t kinds)
{
	struct colo_savevm_loader *l = colo_savevm_loader_new(sv, colo_page_codecs, kinds);
	ssize_t got;

	ck_assert_ptr_nonnull(l);
	got = colo_savevm_loader_feed(l, b->data, b->len);
	ck_assert_msg(got == (ssize_t)b->len && colo_savevm_loader_finish(l) == 0, "%s",
		      colo_savevm_loader_error(l));
	colo_savevm_loader_free(l);
}

static void dump_ok(const struct colo_buf *b)
{
	struct colo_err err;
	json_t *doc;

	colo_err_clear(&err);
	ck_assert_msg(colo_dump_buffer(b->data, b->len, NULL, NULL, &doc, &err) == 0, "%s",
		      err.msg);
	json_decref(doc);
}

/* Expect a load to fail with a message holding `want` and an offset. */
static void load_fails(struct colo_image *img, const void *p, size_t len, const char *want)
{
	struct colo_err err;
	int r;

	colo_err_clear(&err);
	r = colo_image_load_full(img, p, len, &err);
	ck_assert_msg(r == -EINVAL, "load of %zu bytes: %d (%s), expected -EINVAL", len, r,
		      err.msg);
	if (getenv("COLO_TEST_VERBOSE"))
		fprintf(stderr, "# load of %zu bytes: %s\n", len, err.msg);
	ck_assert_msg(strstr(err.msg, "offset"), "no offset in '%s'", err.msg);
	ck_assert_msg(!strchr(err.msg, '\n'), "more than one line: '%s'", err.msg);
	if (want)
		ck_assert_msg(strstr(err.msg, want), "'%s' does not say '%s'", err.msg, want);
}

static void apply_fails(struct colo_image *img, const void *ram, size_t ram_len,
			const void *dev, size_t dev_len, const char *want)
{
	struct colo_image before;
	struct colo_err err;
	int r;

	colo_err_clear(&err);
	ck_assert_int_eq(colo_image_copy(&before, img, &err), 0);
	r = colo_image_apply(img, ram, ram_len, dev, dev_len, &err);
	ck_assert_msg(r == -EINVAL, "apply: %d (%s), expected -EINVAL", r, err.msg);
	if (getenv("COLO_TEST_VERBOSE"))
		fprintf(stderr, "# apply of %zu + %zu bytes: %s\n", ram_len, dev_len, err.msg);
	ck_assert_msg(!strchr(err.msg, '\n'), "more than one line: '%s'", err.msg);
	if (want)
		ck_assert_msg(strstr(err.msg, want), "'%s' does not say '%s'", err.msg, want);
	/* Refused before anything changed. */
	same(img, &before, "after a refused checkpoint");
	colo_image_free(&before);
}

/* ---- checkpoints, as primary.c frames them ---- */

/* RAM: END header, records, EOS, footer, EOF (primary.c frame_ram). */
static void ram_open(struct colo_buf *ram, struct colo_stream_writer *w, uint32_t id)
{
	struct colo_err err;

	colo_err_clear(&err);
	colo_sw_init(w, ram, false);
	ck_assert_int_eq(colo_sw_section_begin(w, COLO_SEC_END, id, NULL, 0, 0, &err), 0);
}

static void ram_close(struct colo_buf *ram, struct colo_stream_writer *w)
{
	colo_buf_put_be64(ram, COLO_RAM_EOS);
	colo_sw_section_end(w);
	colo_sw_eof(w);
	colo_sw_free(w);
}

/*
 * A full sync as primary.c writes it: every page staged and encoded
 * without a base (so LZ4 where it pays) in one PART, devices, EOF, vmdesc.
 * The shadows end up holding what the receiver holds.
 */
static void primary_sync(struct colo_savevm *sv, struct colo_ram_encoder *enc,
			 struct colo_ram_shadow *shadows, struct colo_buf *out)
{
	struct colo_ram_block_info infos[4];
	struct colo_stream_writer w;
	struct colo_ram_writer rw;
	struct colo_ram_stage st;
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_uint_le(sv->nblocks, 4);
	colo_ram_stage_init(&st);
	for (size_t b = 0; b < sv->nblocks; b++) {
		infos[b] = sv->blocks[b].info;
		shadows[b].valid = false;
		for (uint64_t pg = 0; pg < infos[b].length / PAGE; pg++)
			ck_assert_int_eq(colo_ram_stage_add(&st, (uint32_t)b, (uint32_t)pg,
							    sv->blocks[b].host + pg * PAGE,
							    &err), 0);
	}
	colo_buf_reset(out);
	colo_sw_init(&w, out, true);
	colo_sw_header(&w);
	ck_assert_int_eq(colo_sw_configuration(&w, &sv->config, &err), 0);
	colo_sw_enable_colo(&w);
	colo_ram_writer_init(&rw, out);
	colo_sw_section_begin(&w, COLO_SEC_START, sv->ram_section_id, COLO_RAM_IDSTR, 0,
			      COLO_RAM_SECTION_VERSION, &err);
	colo_ram_put_mem_size(&rw, infos, sv->nblocks, false);
	colo_ram_put_eos(&rw);
	colo_sw_section_end(&w);
	colo_sw_section_begin(&w, COLO_SEC_PART, sv->ram_section_id, NULL, 0, 0, &err);
	ck_assert_msg(colo_ram_encode(enc, &st, shadows, sv->nblocks, COLO_PAGE_KINDS_ALL,
				      out, NULL, &err) == 0, "%s", err.msg);
	colo_ram_put_eos(&rw);
	colo_sw_section_end(&w);
	colo_sw_section_begin(&w, COLO_SEC_END, sv->ram_section_id, NULL, 0, 0, &err);
	colo_ram_put_eos(&rw);
	colo_sw_section_end(&w);
	for (size_t i = 0; i < sv->ndevs; i++) {
		const struct colo_savevm_device *d = &sv->devs[i];

		if (colo_vmstate_needed(d->vmsd, d->opaque))
			ck_assert_int_eq(colo_sw_device(&w, d->section_id, d->idstr,
							d->instance_id, d->vmsd, d->opaque,
							&err), 0);
	}
	colo_sw_eof(&w);
	ck_assert_int_eq(colo_sw_vmdesc(&w, &err), 0);
	colo_sw_free(&w);
	colo_ram_stage_free(&st);
}

/* Staged pages and every (needed) device of sv, as the primary sends them. */
static void build_ckpt(struct colo_savevm *sv, struct colo_ram_encoder *enc,
		       struct colo_ram_stage *st, struct colo_ram_shadow *shadows,
		       uint32_t allowed, uint64_t seq, struct colo_buf *ram,
		       struct colo_buf *dev, struct colo_ram_enc_stats *stats)
{
	struct colo_stream_writer w;
	struct colo_err err;

	colo_err_clear(&err);
	colo_buf_reset(ram);
	colo_buf_reset(dev);
	memset(stats, 0, sizeof(*stats));
	ram_open(ram, &w, sv->ram_section_id);
	ck_assert_msg(colo_ram_encode(enc, st, shadows, sv->nblocks, allowed, ram, stats,
				      &err) == 0, "%s", err.msg);
	ram_close(ram, &w);
	colo_sw_init(&w, dev, false);
	for (size_t i = 0; i < sv->ndevs; i++) {
		const struct colo_savevm_device *d = &sv->devs[i];

		if (colo_vmstate_needed(d->vmsd, d->opaque))
			ck_assert_msg(colo_sw_device(&w, d->section_id, d->idstr,
						     d->instance_id, d->vmsd, d->opaque,
						     &err) == 0, "%s", err.msg);
	}
	colo_sw_free(&w);
	colo_test_ckpt_seal(ram, dev, 3, seq, st->n);
}

static void apply_ok(struct colo_image *img, const struct colo_buf *ram,
		     const struct colo_buf *dev)
{
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(colo_image_apply(img, ram->data, ram->len, dev->data, dev->len,
				       &err) == 0, "%s", err.msg);
}

/* touched must be exactly the pages where `before` and `after` differ. */
static void check_touched(const struct colo_image *before, const struct colo_image *after,
			  uint64_t *changed)
{
	*changed = 0;
	for (size_t i = 0; i < after->nblocks; i++) {
		const struct colo_image_block *a = &before->blocks[i], *b = &after->blocks[i];

		for (uint64_t pg = 0; pg < b->length / PAGE; pg++) {
			bool diff = memcmp(a->data + pg * PAGE, b->data + pg * PAGE, PAGE) != 0;

			ck_assert_msg(colo_image_page_touched(b, pg) == diff, "block '%s' page "
				      "%" PRIu64 ": touched %d, changed %d", b->name, pg,
				      colo_image_page_touched(b, pg), diff);
			*changed += diff;
		}
	}
}

/* ---- the demo guest ---- */

START_TEST(demo_round_trip)
{
	uint64_t seed = 1 + (uint64_t)_i;
	struct colo_buf s1 = COLO_BUF_INIT, s2 = COLO_BUF_INIT, s3 = COLO_BUF_INIT;
	struct colo_image a, b;
	struct colo_demo d, g;
	struct colo_err err;
	uint64_t zero = 0, total = 0;

	colo_err_clear(&err);
	colo_image_init(&a);
	colo_image_init(&b);
	ck_assert_msg(colo_demo_init(&d, DEMO_RAM, seed, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(colo_savevm_save(&d.sv, &s1, COLO_SAVEVM_ENABLE_COLO, &err), 0);
	load_ok(&a, &s1);
	ck_assert_str_eq(a.config, COLO_DEMO_MACHINE);
	ck_assert_uint_eq(a.nblocks, 1);
	ck_assert_str_eq(a.blocks[0].name, COLO_DEMO_RAM);
	ck_assert_uint_eq(a.blocks[0].length, DEMO_RAM);
	ck_assert_int_eq(memcmp(a.blocks[0].data, d.ram, DEMO_RAM), 0);
	ck_assert_ptr_eq(colo_image_block(&a, COLO_DEMO_RAM), &a.blocks[0]);
	ck_assert_ptr_null(colo_image_block(&a, "nope"));
	ck_assert_uint_eq(colo_image_block_hash(&a.blocks[0]), XXH3_64bits(d.ram, DEMO_RAM));
	ck_assert_uint_eq(a.ram_section_id, d.sv.ram_section_id);
	ck_assert_uint_eq(a.ndevs, 2);
	ck_assert_str_eq(a.devs[0].idstr, "demo");
	ck_assert_uint_eq(a.devs[0].version, 2);
	ck_assert_uint_eq(a.devs[0].section_id, d.sv.devs[0].section_id);
	ck_assert_str_eq(a.devs[1].idstr, "demo-config");
	ck_assert_ptr_eq(colo_image_device(&a, "demo-config", 0), &a.devs[1]);
	ck_assert_ptr_null(colo_image_device(&a, "demo-config", 1));
	ck_assert(a.devs[0].touched && a.devs[1].touched);
	ck_assert_ptr_nonnull(a.vmdesc);
	ck_assert_uint_eq(a.vmdesc->ndevs, 2);
	ck_assert_uint_eq(a.vmdesc_len, strlen(a.vmdesc_json));
	ck_assert(!a.ckpt.valid);
	/* Every page had a record; every fourth demo page is zero. */
	for (uint64_t pg = 0; pg < DEMO_RAM / PAGE; pg++) {
		ck_assert(colo_image_page_touched(&a.blocks[0], pg));
		zero += colo_page_is_zero(d.ram + pg * PAGE) ? 1 : 0;
	}
	for (int k = 0; k < COLO_PAGE_KINDS; k++)
		total += a.pages[k];
	ck_assert_uint_eq(total, DEMO_RAM / PAGE);
	ck_assert_uint_eq(a.pages[COLO_PAGE_ZERO], zero);

	/* image -> stream -> image: the same image, and the same bytes again. */
	save_ok(&a, &s2);
	load_ok(&b, &s2);
	same(&a, &b, "reloaded");
	ck_assert_uint_eq(b.ram_section_id, a.ram_section_id);
	ck_assert_uint_eq(b.devs[1].section_id, a.devs[1].section_id);
	ck_assert_uint_eq(b.pages[COLO_PAGE_ZERO], zero);
	ck_assert_uint_eq(b.pages[COLO_PAGE_LZ4] + b.pages[COLO_PAGE_RAW] + zero,
			  DEMO_RAM / PAGE);
	save_ok(&b, &s3);
	ck_assert_uint_eq(s2.len, s3.len);
	ck_assert_int_eq(memcmp(s2.data, s3.data, s2.len), 0);
	dump_ok(&s2);

	/* -> a fresh guest: the same state as the one saved. */
	ck_assert_int_eq(colo_demo_init(&g, DEMO_RAM, 0, &err), 0);
	guest_load(&g.sv, &s2, COLO_PAGE_KINDS_ALL);
	ck_assert_msg(colo_demo_check(&g, seed, &err) == 0, "%s", err.msg);
	colo_demo_free(&g);
	/* With QEMU's page kinds only, QEMU's set is enough to load it. */
	colo_buf_reset(&s3);
	ck_assert_int_eq(colo_image_save_full_kinds(&a, &s3, COLO_PAGE_KINDS_QEMU, &err), 0);
	ck_assert_int_eq(colo_demo_init(&g, DEMO_RAM, 0, &err), 0);
	guest_load(&g.sv, &s3, COLO_PAGE_KINDS_QEMU);
	ck_assert_msg(colo_demo_check(&g, seed, &err) == 0, "%s", err.msg);
	colo_demo_free(&g);
	dump_ok(&s3);
	/* Without ZERO, every page is raw. */
	colo_buf_reset(&s3);
	ck_assert_int_eq(colo_image_save_full_kinds(&a, &s3, 0, &err), 0);
	load_ok(&b, &s3);
	same(&a, &b, "raw pages only");
	ck_assert_uint_eq(b.pages[COLO_PAGE_RAW], DEMO_RAM / PAGE);

	colo_image_free(&a);
	colo_image_free(&b);
	colo_demo_free(&d);
	colo_buf_free(&s1);
	colo_buf_free(&s2);
	colo_buf_free(&s3);
}
END_TEST

START_TEST(copy_is_deep)
{
	struct colo_image a, b;
	struct colo_demo d;
	struct colo_err err;

	colo_err_clear(&err);
	colo_image_init(&a);
	ck_assert_int_eq(colo_demo_init(&d, DEMO_RAM, 9, &err), 0);
	image_of(&d.sv, &a);
	ck_assert_int_eq(colo_image_copy(&b, &a, &err), 0);
	same(&a, &b, "copy");
	ck_assert_ptr_nonnull(b.vmdesc);
	ck_assert_uint_eq(b.vmdesc->ndevs, a.vmdesc->ndevs);
	ck_assert_uint_eq(colo_image_block_hash(&b.blocks[0]),
			  colo_image_block_hash(&a.blocks[0]));
	b.blocks[0].data[5]++;
	b.devs[0].payload[0]++;
	ck_assert_int_eq(memcmp(a.blocks[0].data, d.ram, DEMO_RAM), 0);
	ck_assert_int_eq(colo_image_compare(&a, &b, &err), 1);
	ck_assert_msg(strstr(err.msg, "page at 0x0 differs"), "%s", err.msg);
	ck_assert_uint_ne(colo_image_block_hash(&b.blocks[0]),
			  colo_image_block_hash(&a.blocks[0]));
	colo_image_free(&a);
	colo_image_free(&b);
	colo_demo_free(&d);
}
END_TEST

/*
 * colo_image_save_plain(): the same state, as a plain stream: QEMU's page
 * kinds only (zero and raw pages), and the configuration followed at once
 * by RAM's START, where colo's full stream has COMMAND ENABLE_COLO.
 */
START_TEST(plain_stream_is_the_same_state)
{
	struct colo_buf plain = COLO_BUF_INIT, full = COLO_BUF_INIT;
	struct colo_image a, b;
	struct colo_demo d;
	struct colo_err err;
	size_t after;

	colo_err_clear(&err);
	colo_image_init(&a);
	colo_image_init(&b);
	ck_assert_int_eq(colo_demo_init(&d, DEMO_RAM, 13, &err), 0);
	image_of(&d.sv, &a);
	ck_assert_msg(colo_image_save_plain(&a, &plain, &err) == 0, "%s", err.msg);
	ck_assert_msg(colo_image_save_full(&a, &full, &err) == 0, "%s", err.msg);
	load_ok(&b, &plain);
	same(&a, &b, "through a plain stream");
	ck_assert_uint_gt(b.pages[COLO_PAGE_ZERO] + b.pages[COLO_PAGE_RAW], 0);
	ck_assert_uint_eq(b.pages[COLO_PAGE_ZERO] + b.pages[COLO_PAGE_RAW], DEMO_RAM / PAGE);
	ck_assert_ptr_nonnull(b.vmdesc_json);
	/* header (8), configuration: type, be32 length, the name */
	after = 8 + 1 + 4 + strlen(a.config);
	ck_assert_uint_gt(plain.len, after);
	ck_assert_uint_eq(plain.data[8], COLO_SEC_CONFIGURATION);
	ck_assert_uint_eq(plain.data[after], COLO_SEC_START);
	ck_assert_uint_eq(full.data[after], COLO_SEC_COMMAND);
	colo_image_free(&a);
	colo_image_free(&b);
	colo_demo_free(&d);
	colo_buf_free(&plain);
	colo_buf_free(&full);
}
END_TEST

/* Change the demo's devices without changing their payload sizes. */
static void demo_mutate_devices(struct colo_demo *d, struct colo_rng *rng)
{
	d->state.i32 += 7;
	d->state.u64 ^= colo_rng_next(rng);
	d->state.load += 0.5;
	d->state.label[colo_rng_below(rng, sizeof(d->state.label))]++;
	if (d->state.ncounters)
		d->state.counters[0].value++;
	if (d->state.blob_len)
		d->state.blob[colo_rng_below(rng, d->state.blob_len)] ^= 0x5a;
	if (d->state.stats_enabled)
		d->state.hits++;
}

/* Write the demo's RAM the ways a guest does; stage what it wrote. */
static void demo_mutate_ram(struct colo_demo *d, struct colo_rng *rng,
			    struct colo_ram_stage *st)
{
	uint64_t npages = d->ram_size / PAGE;
	unsigned n = 1 + (unsigned)colo_rng_below(rng, 12);
	uint64_t used = 0;      /* the primary stages a page once */
	struct colo_err err;

	colo_err_clear(&err);
	colo_ram_stage_reset(st);
	ck_assert_uint_le(npages, 64);
	for (unsigned i = 0; i < n; i++) {
		uint64_t pg = colo_rng_below(rng, npages);
		uint8_t *p = d->ram + pg * PAGE;

		if (used & (1ull << pg))
			continue;
		used |= 1ull << pg;

		switch (colo_rng_below(rng, 6)) {
		case 0:         /* a few bytes: DELTA, XBZRLE */
			for (int k = 0; k < 8; k++)
				p[colo_rng_below(rng, PAGE)] = (uint8_t)colo_rng_next(rng);
			break;
		case 1:         /* cleared */
			memset(p, 0, PAGE);
			break;
		case 2:         /* all new, random */
			colo_rng_fill(rng, p, PAGE);
			break;
		case 3:         /* all new, compressible */
			memset(p, (int)colo_rng_below(rng, 256), PAGE);
			memcpy(p + 100, "a compressible page", 19);
			break;
		case 4:         /* written with what it held: staged, not sent */
			break;
		default:        /* a run in the middle */
			memset(p + colo_rng_below(rng, PAGE / 2), 0xab, 300);
			break;
		}
		ck_assert_int_eq(colo_ram_stage_add(st, 0, (uint32_t)pg, p, &err), 0);
	}
}

static const uint32_t round_kinds[] = {
	COLO_PAGE_KINDS_ALL,
	COLO_PAGE_KINDS_QEMU,
	COLO_PAGE_KIND_BIT(COLO_PAGE_ZERO) | COLO_PAGE_KIND_BIT(COLO_PAGE_RAW) |
		COLO_PAGE_KIND_BIT(COLO_PAGE_LZ4),
	COLO_PAGE_KIND_BIT(COLO_PAGE_RAW) | COLO_PAGE_KIND_BIT(COLO_PAGE_DELTA),
	COLO_PAGE_KIND_BIT(COLO_PAGE_RAW) | COLO_PAGE_KIND_BIT(COLO_PAGE_DELTA_LZ4),
	COLO_PAGE_KIND_BIT(COLO_PAGE_RAW),
};

START_TEST(demo_checkpoints)
{
	struct colo_buf ram = COLO_BUF_INIT, dev = COLO_BUF_INIT, s = COLO_BUF_INIT;
	struct colo_buf s2 = COLO_BUF_INIT;
	struct colo_rng rng = { 42 + (uint64_t)_i };
	struct colo_image img, before, fresh;
	struct colo_ram_encoder *enc;
	struct colo_ram_shadow shadow;
	struct colo_ram_stage st;
	struct colo_ram_enc_stats stats;
	uint64_t kinds_seen[COLO_PAGE_KINDS] = { 0 };
	struct colo_demo d, g;
	struct colo_err err;

	colo_err_clear(&err);
	colo_image_init(&img);
	colo_image_init(&fresh);
	colo_ram_stage_init(&st);
	ck_assert_int_eq(colo_ram_encoder_new(2, &enc, &err), 0);
	ck_assert_int_eq(colo_demo_init(&d, DEMO_RAM, 5 + (uint64_t)_i, &err), 0);
	/* The primary's sync, with LZ4 pages; the shadow holds what it sent. */
	ck_assert_int_eq(colo_ram_shadow_init(&shadow, COLO_DEMO_RAM, DEMO_RAM, &err), 0);
	primary_sync(&d.sv, enc, &shadow, &s);
	load_ok(&img, &s);
	ck_assert_uint_gt(img.pages[COLO_PAGE_LZ4], 0);
	image_of(&d.sv, &fresh);
	same(&img, &fresh, "the primary's sync");
	for (uint64_t seq = 1; seq <= 60; seq++) {
		uint32_t allowed = round_kinds[seq % (sizeof(round_kinds) / sizeof(round_kinds[0]))];
		uint64_t changed, sent = 0;

		demo_mutate_ram(&d, &rng, &st);
		demo_mutate_devices(&d, &rng);
		build_ckpt(&d.sv, enc, &st, &shadow, allowed, seq, &ram, &dev, &stats);
		ck_assert_int_eq(colo_image_copy(&before, &img, &err), 0);
		apply_ok(&img, &ram, &dev);
		image_of(&d.sv, &fresh);
		same(&img, &fresh, "after a checkpoint");
		check_touched(&before, &img, &changed);
		for (int k = 0; k < COLO_PAGE_KINDS; k++) {
			ck_assert_uint_eq(img.pages[k], stats.pages[k]);
			sent += img.pages[k];
			kinds_seen[k] += img.pages[k];
		}
		/* An unchanged page is not sent; every sent page changed. */
		ck_assert_uint_eq(sent, changed);
		ck_assert(img.devs[0].touched && img.devs[1].touched);
		ck_assert(img.ckpt.valid);
		ck_assert_uint_eq(img.ckpt.seq, seq);
		ck_assert_uint_eq(img.ckpt.generation, 3);
		ck_assert_uint_eq(img.ckpt.wall_ns, 1000 + seq);
		ck_assert_uint_eq(img.ckpt.pages, st.n);
		colo_image_free(&before);
	}
	/* Every kind colo writes came by (COMPRESS has no encoder). */
	for (int k = 0; k < COLO_PAGE_KINDS; k++)
		if (k != COLO_PAGE_COMPRESS)
			ck_assert_msg(kinds_seen[k] > 0, "no %s page in 60 checkpoints",
				      colo_page_kind_name(k));

	/* The moved image, written out, is the guest: into a fresh guest it
	 * gives the very stream the guest gives. */
	save_ok(&img, &s);
	dump_ok(&s);
	ck_assert_int_eq(colo_demo_init(&g, DEMO_RAM, 0, &err), 0);
	guest_load(&g.sv, &s, COLO_PAGE_KINDS_ALL);
	colo_buf_reset(&s);
	ck_assert_int_eq(colo_savevm_save(&g.sv, &s, 0, &err), 0);
	ck_assert_int_eq(colo_savevm_save(&d.sv, &s2, 0, &err), 0);
	ck_assert_uint_eq(s.len, s2.len);
	ck_assert_int_eq(memcmp(s.data, s2.data, s.len), 0);

	colo_demo_free(&g);
	colo_demo_free(&d);
	colo_image_free(&img);
	colo_image_free(&fresh);
	colo_ram_shadow_free(&shadow);
	colo_ram_stage_free(&st);
	colo_ram_encoder_free(enc);
	colo_buf_free(&ram);
	colo_buf_free(&dev);
	colo_buf_free(&s);
	colo_buf_free(&s2);
}
END_TEST

/* A demo guest as a primary replicates it: its encoder, the shadow of what
 * it sent, a stage for the pages written; img is loaded from its sync. */
struct demo_primary {
	struct colo_demo d;
	struct colo_ram_encoder *enc;
	struct colo_ram_shadow shadow;
	struct colo_ram_stage st;
};

static void demo_primary_start(struct demo_primary *p, uint64_t seed, struct colo_image *img,
			       struct colo_buf *s)
{
	struct colo_err err;

	colo_err_clear(&err);
	colo_image_init(img);
	colo_ram_stage_init(&p->st);
	ck_assert_int_eq(colo_ram_encoder_new(2, &p->enc, &err), 0);
	ck_assert_int_eq(colo_demo_init(&p->d, DEMO_RAM, seed, &err), 0);
	ck_assert_int_eq(colo_ram_shadow_init(&p->shadow, COLO_DEMO_RAM, DEMO_RAM, &err), 0);
	primary_sync(&p->d.sv, p->enc, &p->shadow, s);
	load_ok(img, s);
}

static void demo_primary_free(struct demo_primary *p)
{
	colo_demo_free(&p->d);
	colo_ram_shadow_free(&p->shadow);
	colo_ram_stage_free(&p->st);
	colo_ram_encoder_free(p->enc);
}

/* A memo's save is colo_image_save_full()'s output, byte for byte. */
static void memo_same(const struct colo_image *img, struct colo_image_memo *m,
		      struct colo_buf *full, const char *what)
{
	const struct colo_buf *k;
	struct colo_err err;

	colo_err_clear(&err);
	save_ok(img, full);
	ck_assert_msg(colo_image_memo_save(img, m, &err) == 0, "%s", err.msg);
	k = &m->out[m->cur];
	ck_assert_msg(k->len == full->len && memcmp(k->data, full->data, k->len) == 0,
		      "%s: the memo's keyframe (%zu bytes) is not the full save (%zu bytes)",
		      what, k->len, full->len);
}

/*
 * The recorder's keyframes: a memo noted after every load and apply saves
 * exactly what a full save gives, though it encodes only the pages changed
 * since its last save; an apply it was not told of, or a load, makes it
 * encode every page again.  A page changed behind its back (not by an
 * apply) keeps its old bytes in the keyframe: the memo's bytes are used.
 */
START_TEST(memo_keyframes_are_full_saves)
{
	struct colo_buf ram = COLO_BUF_INIT, dev = COLO_BUF_INIT, s = COLO_BUF_INIT;
	struct colo_buf full = COLO_BUF_INIT;
	struct colo_rng rng = { 7 };
	struct colo_image img;
	struct colo_image_memo m;
	struct colo_ram_enc_stats stats;
	struct demo_primary p;
	struct colo_err err;
	const struct colo_buf *k;
	uint8_t *pg;
	uint64_t lz4 = 0;

	colo_err_clear(&err);
	colo_image_memo_init(&m);
	demo_primary_start(&p, 11, &img, &s);
	colo_image_memo_note(&m, &img);
	memo_same(&img, &m, &full, "after the sync");
	for (uint64_t seq = 1; seq <= 60; seq++) {
		demo_mutate_ram(&p.d, &rng, &p.st);
		demo_mutate_devices(&p.d, &rng);
		build_ckpt(&p.d.sv, p.enc, &p.st, &p.shadow, COLO_PAGE_KINDS_ALL, seq, &ram, &dev,
			   &stats);
		apply_ok(&img, &ram, &dev);
		if (seq != 33)          /* one apply the memo is not told of */
			colo_image_memo_note(&m, &img);
		if (seq % 5 == 0)
			memo_same(&img, &m, &full, "after checkpoints");
		if (seq == 40) {
			/* a load: a whole new state */
			save_ok(&img, &s);
			load_ok(&img, &s);
			colo_image_memo_note(&m, &img);
		}
	}
	memo_same(&img, &m, &full, "at the end");
	/* An LZ4 page of the last keyframe, changed behind the memo's back. */
	for (uint64_t i = 0; i < img.blocks[0].length / PAGE; i++) {
		pg = img.blocks[0].data + i * PAGE;
		if (!colo_page_is_zero(pg) && colo_lz4_encode(pg, (uint8_t[PAGE]){ 0 },
							       PAGE - 3) > 0) {
			lz4++;
			memset(pg + 7, 0x3c, 64);
			break;
		}
	}
	ck_assert_uint_eq(lz4, 1);
	save_ok(&img, &full);
	ck_assert_int_eq(colo_image_memo_save(&img, &m, &err), 0);
	k = &m.out[m.cur];
	ck_assert(k->len != full.len || memcmp(k->data, full.data, full.len) != 0);

	demo_primary_free(&p);
	colo_image_free(&img);
	colo_image_memo_free(&m);
	colo_buf_free(&ram);
	colo_buf_free(&dev);
	colo_buf_free(&s);
	colo_buf_free(&full);
}
END_TEST

/* A given page with every byte flipped: what only a copy of it gives. */
static void flip_all(const struct colo_ram_stage *st, uint8_t *out)
{
	for (size_t i = 0; i < st->n * PAGE; i++)
		out[i] = (uint8_t)~st->pages[i];
}

/* Pages where a and b differ. */
static uint64_t pages_differ(const struct colo_image *a, const struct colo_image *b)
{
	uint64_t n = 0;

	for (size_t i = 0; i < a->nblocks; i++)
		for (uint64_t pg = 0; pg < a->blocks[i].length / PAGE; pg++)
			n += memcmp(a->blocks[i].data + pg * PAGE, b->blocks[i].data + pg * PAGE,
				    PAGE) != 0;
	return n;
}

/*
 * The recorder's way: the primary's staged pages given, the records of
 * LZ4 pages take them instead of being decoded, the others are decoded.
 * Each checkpoint is applied four ways to copies of the same image:
 * decoded; given; given with every byte flipped (only the records that
 * took a given page differ from the decoded image, and exactly the LZ4
 * ones do); given in reverse order (the first LZ4 record finds its page
 * last, the rest find none and are decoded: one page differs).
 */
START_TEST(demo_checkpoints_given)
{
	struct colo_buf ram = COLO_BUF_INIT, dev = COLO_BUF_INIT, s = COLO_BUF_INIT;
	struct colo_rng rng = { 7 };
	struct colo_image img, given, flipped, rev, fresh;
	struct colo_ram_enc_stats stats;
	struct demo_primary p;
	struct colo_err err;
	uint64_t lz4_seen = 0;

	colo_err_clear(&err);
	colo_image_init(&fresh);
	demo_primary_start(&p, 11, &img, &s);
	for (uint64_t seq = 1; seq <= 24; seq++) {
		uint32_t allowed = round_kinds[seq % (sizeof(round_kinds) / sizeof(round_kinds[0]))];
		const char *names[] = { p.d.sv.blocks[0].info.name };
		struct colo_image_given g = { NULL, NULL, 0, names, 1 };
		struct colo_stage_ref *rrefs;
		uint8_t *bytes;
		uint64_t lz4;

		demo_mutate_ram(&p.d, &rng, &p.st);
		demo_mutate_devices(&p.d, &rng);
		build_ckpt(&p.d.sv, p.enc, &p.st, &p.shadow, allowed, seq, &ram, &dev, &stats);
		ck_assert_int_eq(colo_image_copy(&given, &img, &err), 0);
		ck_assert_int_eq(colo_image_copy(&flipped, &img, &err), 0);
		ck_assert_int_eq(colo_image_copy(&rev, &img, &err), 0);
		apply_ok(&img, &ram, &dev);
		image_of(&p.d.sv, &fresh);
		same(&img, &fresh, "decoded");
		lz4 = img.pages[COLO_PAGE_LZ4];
		lz4_seen += lz4;

		g.data = p.st.pages;
		g.refs = p.st.refs;
		g.n = p.st.n;
		ck_assert_msg(colo_image_apply_given(&given, ram.data, ram.len, dev.data, dev.len,
						     NULL, &g, &err) == 0, "%s", err.msg);
		same(&given, &fresh, "given the staged pages");
		for (int k = 0; k < COLO_PAGE_KINDS; k++)
			ck_assert_uint_eq(given.pages[k], img.pages[k]);

		bytes = malloc(p.st.n * PAGE + 1);
		rrefs = malloc((p.st.n + 1) * sizeof(*rrefs));
		ck_assert(bytes && rrefs);
		flip_all(&p.st, bytes);
		g.data = bytes;
		ck_assert_msg(colo_image_apply_given(&flipped, ram.data, ram.len, dev.data,
						     dev.len, NULL, &g, &err) == 0, "%s", err.msg);
		ck_assert_uint_eq(pages_differ(&flipped, &img), lz4);

		for (size_t i = 0; i < p.st.n; i++) {
			rrefs[i] = p.st.refs[p.st.n - 1 - i];
			memcpy(bytes + i * PAGE, p.st.pages + (p.st.n - 1 - i) * PAGE, PAGE);
			for (size_t k = 0; k < PAGE; k++)
				bytes[i * PAGE + k] = (uint8_t)~bytes[i * PAGE + k];
		}
		g.refs = rrefs;
		ck_assert_msg(colo_image_apply_given(&rev, ram.data, ram.len, dev.data, dev.len,
						     NULL, &g, &err) == 0, "%s", err.msg);
		ck_assert_uint_eq(pages_differ(&rev, &img), lz4 ? 1 : 0);

		free(bytes);
		free(rrefs);
		colo_image_free(&given);
		colo_image_free(&flipped);
		colo_image_free(&rev);
	}
	ck_assert_uint_gt(lz4_seen, 0);
	demo_primary_free(&p);
	colo_image_free(&img);
	colo_image_free(&fresh);
	colo_buf_free(&ram);
	colo_buf_free(&dev);
	colo_buf_free(&s);
}
END_TEST

/* A page given outside the image's blocks: refused, nothing changed. */
START_TEST(given_pages_checked)
{
	struct colo_buf ram = COLO_BUF_INIT, dev = COLO_BUF_INIT, s = COLO_BUF_INIT;
	struct colo_rng rng = { 9 };
	struct colo_image img, before;
	struct colo_ram_encoder *enc;
	struct colo_ram_shadow shadow;
	struct colo_ram_stage st;
	struct colo_ram_enc_stats stats;
	struct colo_stage_ref bad;
	struct colo_demo d;
	struct colo_err err, why;
	const char *other[] = { "not-ram" };

	colo_err_clear(&err);
	colo_image_init(&img);
	colo_ram_stage_init(&st);
	ck_assert_int_eq(colo_ram_encoder_new(1, &enc, &err), 0);
	ck_assert_int_eq(colo_demo_init(&d, DEMO_RAM, 12, &err), 0);
	ck_assert_int_eq(colo_ram_shadow_init(&shadow, COLO_DEMO_RAM, DEMO_RAM, &err), 0);
	primary_sync(&d.sv, enc, &shadow, &s);
	load_ok(&img, &s);
	demo_mutate_ram(&d, &rng, &st);
	build_ckpt(&d.sv, enc, &st, &shadow, COLO_PAGE_KINDS_ALL, 1, &ram, &dev, &stats);
	ck_assert_uint_gt(st.n, 0);
	ck_assert_int_eq(colo_image_copy(&before, &img, &err), 0);
	{
		const char *names[] = { d.sv.blocks[0].info.name };
		struct colo_image_given g = { st.pages, st.refs, st.n, other, 1 };

		ck_assert_int_eq(colo_image_apply_given(&img, ram.data, ram.len, dev.data,
							dev.len, NULL, &g, &err), -EINVAL);
		ck_assert_str_eq(err.msg, "decoded page 0: block 0 (not-ram) is not a block "
				 "of the image");
		g.names = names;
		bad = (struct colo_stage_ref){ 0, DEMO_RAM / PAGE };
		g.refs = &bad;
		g.n = 1;
		colo_err_clear(&err);
		ck_assert_int_eq(colo_image_apply_given(&img, ram.data, ram.len, dev.data,
							dev.len, NULL, &g, &err), -EINVAL);
		ck_assert_msg(strstr(err.msg, "decoded page 0: page ") &&
			      strstr(err.msg, " is past the end of block "), "%s", err.msg);
		bad.block = 1;
		colo_err_clear(&err);
		ck_assert_int_eq(colo_image_apply_given(&img, ram.data, ram.len, dev.data,
							dev.len, NULL, &g, &err), -EINVAL);
		ck_assert_str_eq(err.msg, "decoded page 0: block 1 (no such block) is not a "
				 "block of the image");
	}
	colo_err_clear(&why);
	ck_assert_msg(colo_image_compare(&img, &before, &why) == 0, "%s", why.msg);
	colo_image_free(&before);
	colo_demo_free(&d);
	colo_image_free(&img);
	colo_ram_shadow_free(&shadow);
	colo_ram_stage_free(&st);
	colo_ram_encoder_free(enc);
	colo_buf_free(&ram);
	colo_buf_free(&dev);
	colo_buf_free(&s);
}
END_TEST

/* ---- memtouch: a real guest, manual dirty tracking ---- */

struct rig {
	struct colo_ram *ram;
	struct colo_savevm sv;
	struct colo_guest *g;
	struct colo_ram_block *b;
	struct colo_memtouch_state *st;
};

static void rig_init(struct rig *r, uint32_t threads)
{
	char *argv[] = { "test_image", "--guest", "memtouch", "--ram-mb", "1", NULL };
	struct colo_memtouch_settings *mt;
	struct colo_config cfg;
	char machine[64];
	struct colo_err err;

	memset(r, 0, sizeof(*r));
	colo_err_clear(&err);
	ck_assert_msg(colo_config_load(&cfg, COLO_ROLE_PRIMARY, colo_guest_list(), 5, argv,
				       stdout, NULL, &err) == 0, "%s", err.msg);
	mt = colo_memtouch_settings(&cfg);
	ck_assert_ptr_nonnull(mt);
	mt->rate = 0;
	mt->pattern = COLO_MEMTOUCH_RANDOM;
	mt->bytes = 64;
	mt->threads = threads;
	mt->seed = 11;
	colo_guest_machine_name(&colo_memtouch_ops, machine, sizeof(machine));
	ck_assert_msg(colo_ram_new(COLO_DIRTY_MANUAL, &r->ram, &err) == 0, "%s", err.msg);
	ck_assert_msg(colo_savevm_init(&r->sv, machine, &err) == 0, "%s", err.msg);
	ck_assert_msg(colo_memtouch_ops.create(&cfg, &r->g, &err) == 0, "%s", err.msg);
	colo_config_free(&cfg);       /* the guest keeps copies of its settings */
	ck_assert_msg(r->g->ops->attach(r->g, r->ram, &r->sv, &err) == 0, "%s", err.msg);
	ck_assert_msg(colo_ram_start(r->ram, &err) == 0, "%s", err.msg);
	r->b = colo_ram_find(r->ram, COLO_MEMTOUCH_RAM);
	ck_assert_ptr_nonnull(r->b);
	r->st = colo_memtouch_state(r->g);
}

static void rig_free(struct rig *r)
{
	r->g->ops->destroy(r->g);
	colo_savevm_free(&r->sv);
	colo_ram_free(r->ram);
}

static uint64_t total_writes(const struct colo_memtouch_state *st)
{
	uint64_t n = 0;

	for (uint32_t t = 0; t < st->threads; t++)
		n += st->writes[t];
	return n;
}

/* Let the guest run until it made at least n more writes, then pause it. */
static void run_writes(struct rig *r, uint64_t n)
{
	uint64_t want = total_writes(r->st) + n;

	for (;;) {
		struct timespec ts = { 0, 1000000 };

		r->g->ops->resume(r->g);
		nanosleep(&ts, NULL);
		r->g->ops->pause(r->g);
		if (total_writes(r->st) >= want)
			return;
	}
}

START_TEST(memtouch_round_trip_and_checkpoints)
{
	struct colo_buf ram = COLO_BUF_INIT, dev = COLO_BUF_INIT, s = COLO_BUF_INIT;
	struct colo_image img, before, fresh;
	struct colo_ram_encoder *enc;
	struct colo_ram_shadow shadow;
	struct colo_ram_stage st;
	struct colo_ram_enc_stats stats;
	struct colo_verify_report rep;
	struct colo_err err;
	struct rig r, r2;

	colo_err_clear(&err);
	colo_image_init(&img);
	colo_image_init(&fresh);
	colo_ram_stage_init(&st);
	ck_assert_int_eq(colo_ram_encoder_new(2, &enc, &err), 0);
	rig_init(&r, 2);
	ck_assert_msg(r.g->ops->start(r.g, &err) == 0, "%s", err.msg);
	r.g->ops->pause(r.g);
	run_writes(&r, 500);
	/* The full sync: everything; tracking from here. */
	ck_assert_int_eq(colo_ram_harvest(r.ram, NULL, &err), 0);
	colo_ram_block_clear_dirty(r.b);
	ck_assert_int_eq(colo_ram_shadow_init(&shadow, COLO_MEMTOUCH_RAM, r.b->length, &err), 0);
	primary_sync(&r.sv, enc, &shadow, &s);
	load_ok(&img, &s);
	image_of(&r.sv, &fresh);
	same(&img, &fresh, "memtouch: the primary's sync");

	/* Round trip into a second guest, through the image's own stream. */
	save_ok(&img, &s);
	dump_ok(&s);
	rig_init(&r2, 2);
	guest_load(&r2.sv, &s, COLO_PAGE_KINDS_ALL);
	ck_assert_int_eq(memcmp(r2.b->host, r.b->host, r.b->length), 0);
	ck_assert_int_eq(memcmp(r2.st, r.st, sizeof(*r.st)), 0);
	r2.g->ops->verify(r2.g, &rep);
	ck_assert_msg(rep.supported && rep.pages_bad == 0, "%s", rep.summary);
	rig_free(&r2);

	for (uint64_t seq = 1; seq <= 4; seq++) {
		uint64_t changed, sent = 0;

		run_writes(&r, 50 * seq);
		ck_assert_int_eq(colo_ram_harvest(r.ram, NULL, &err), 0);
		colo_ram_stage_reset(&st);
		ck_assert_int_eq(colo_ram_stage_collect(&st, &r.b, 1, &err), 0);
		ck_assert_uint_gt(st.n, 0);
		build_ckpt(&r.sv, enc, &st, &shadow, seq == 2 ? COLO_PAGE_KINDS_QEMU :
			   COLO_PAGE_KINDS_ALL, seq, &ram, &dev, &stats);
		ck_assert_int_eq(colo_image_copy(&before, &img, &err), 0);
		apply_ok(&img, &ram, &dev);
		image_of(&r.sv, &fresh);
		same(&img, &fresh, "memtouch after a checkpoint");
		check_touched(&before, &img, &changed);
		for (int k = 0; k < COLO_PAGE_KINDS; k++)
			sent += img.pages[k];
		ck_assert_uint_eq(sent, changed);
		ck_assert(img.devs[0].touched);
		colo_image_free(&before);
	}
	/* The last state, from the image, verifies in a fresh guest. */
	save_ok(&img, &s);
	rig_init(&r2, 2);
	guest_load(&r2.sv, &s, COLO_PAGE_KINDS_ALL);
	r2.g->ops->verify(r2.g, &rep);
	ck_assert_msg(rep.supported && rep.pages_bad == 0, "%s", rep.summary);
	ck_assert_uint_eq(total_writes(r2.st), total_writes(r.st));
	rig_free(&r2);

	r.g->ops->resume(r.g);
	r.g->ops->stop(r.g);
	rig_free(&r);
	colo_image_free(&img);
	colo_image_free(&fresh);
	colo_ram_shadow_free(&shadow);
	colo_ram_stage_free(&st);
	colo_ram_encoder_free(enc);
	colo_buf_free(&ram);
	colo_buf_free(&dev);
	colo_buf_free(&s);
}
END_TEST

/* ---- bad input ---- */

/* A toy guest: 2 pages of RAM and a 40-byte device. */
struct toy {
	uint8_t mem[2 * PAGE];
	struct colo_ckpt_info dev;
	struct colo_savevm sv;
};

static void toy_init(struct toy *t)
{
	struct colo_err err;

	colo_err_clear(&err);
	memset(t, 0, sizeof(*t));
	memset(t->mem, 0x11, PAGE);
	t->dev.seq = 77;
	ck_assert_int_eq(colo_savevm_init(&t->sv, "toy", &err), 0);
	ck_assert_int_eq(colo_savevm_add_ram(&t->sv, "toy.ram", t->mem, sizeof(t->mem),
					     &err), 0);
	ck_assert_int_eq(colo_savevm_add_device(&t->sv, "toy-dev", 0,
						&colo_ckpt_info_vmstate, &t->dev, &err), 0);
}

static const char toy_vmdesc[] =
	"{\"page_size\": 4096, \"devices\": [{\"name\": \"toy-dev\", \"instance_id\": 0, "
	"\"vmsd_name\": \"toy-dev\", \"version\": 1, \"fields\": [{\"name\": \"v\", "
	"\"type\": \"uint64\", \"size\": 8, \"array_len\": 5}]}]}";

/*
 * A hand-made full stream: MEM_SIZE with `blocks` ("name:pages,..."), one
 * page record at `page_off` of the first block, devices as raw sections
 * ("idstr:bytes,...", 0x42 bytes), EOF, the toy vmdesc unless vmdesc is 0.
 */
static void forge_full(struct colo_buf *out, const char *blocks, uint64_t page_off,
		       const char *devs, bool vmdesc, bool mem_size_twice)
{
	struct colo_ram_block_info info[4];
	struct colo_stream_writer w;
	struct colo_stream_config c;
	struct colo_ram_writer rw;
	struct colo_err err;
	char list[256], *save = NULL, *tok;
	size_t n = 0;
	uint32_t id = 2;
	uint8_t page[PAGE];

	colo_err_clear(&err);
	colo_buf_reset(out);
	memset(info, 0, sizeof(info));
	snprintf(list, sizeof(list), "%s", blocks);
	for (tok = strtok_r(list, ",", &save); tok && n < 4; tok = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(tok, ':');

		*colon = '\0';
		snprintf(info[n].name, sizeof(info[n].name), "%s", tok);
		info[n++].length = strtoull(colon + 1, NULL, 10) * PAGE;
	}
	colo_sw_init(&w, out, false);
	colo_sw_header(&w);
	ck_assert_int_eq(colo_stream_config_init(&c, "toy", &err), 0);
	ck_assert_int_eq(colo_sw_configuration(&w, &c, &err), 0);
	colo_ram_writer_init(&rw, out);
	colo_sw_section_begin(&w, COLO_SEC_START, 1, COLO_RAM_IDSTR, 0, 4, &err);
	colo_ram_put_mem_size(&rw, info, n, false);
	if (mem_size_twice)
		colo_ram_put_mem_size(&rw, info, n, false);
	colo_ram_put_eos(&rw);
	colo_sw_section_end(&w);
	colo_sw_section_begin(&w, COLO_SEC_PART, 1, NULL, 0, 0, &err);
	memset(page, 0x33, sizeof(page));
	colo_ram_put_raw(&rw, info[0].name, page_off, page);
	colo_ram_put_eos(&rw);
	colo_sw_section_end(&w);
	snprintf(list, sizeof(list), "%s", devs);
	for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(tok, ':');
		uint8_t payload[256];
		size_t len;

		*colon = '\0';
		len = strtoull(colon + 1, NULL, 10);
		memset(payload, 0x42, sizeof(payload));
		ck_assert_int_eq(colo_sw_device_raw(&w, id++, tok, 0, 1, payload, len, &err), 0);
	}
	colo_sw_eof(&w);
	if (vmdesc)
		ck_assert_int_eq(colo_sw_vmdesc_raw(&w, toy_vmdesc, strlen(toy_vmdesc), &err), 0);
	colo_sw_free(&w);
}

START_TEST(full_stream_lies)
{
	struct colo_buf b = COLO_BUF_INIT;
	struct colo_image img, good;
	struct colo_err err;

	colo_err_clear(&err);
	colo_image_init(&img);
	colo_image_init(&good);
	/* The forger's honest stream loads. */
	forge_full(&b, "toy.ram:2", PAGE, "toy-dev:40", true, false);
	load_ok(&good, &b);
	ck_assert_str_eq(good.config, "toy");
	ck_assert_uint_eq(good.blocks[0].data[PAGE], 0x33);
	ck_assert(!colo_image_page_touched(&good.blocks[0], 0));
	ck_assert(colo_image_page_touched(&good.blocks[0], 1));
	ck_assert_uint_eq(good.pages[COLO_PAGE_RAW], 1);
	ck_assert_uint_eq(good.devs[0].len, 40);
	ck_assert_uint_eq(good.devs[0].payload[39], 0x42);
	ck_assert_int_eq(colo_image_copy(&img, &good, &err), 0);

	forge_full(&b, "toy.ram:2", 2 * PAGE, "toy-dev:40", true, false);
	load_fails(&img, b.data, b.len, "outside block 'toy.ram'");
	forge_full(&b, "toy.ram:2,toy.ram:1", 0, "toy-dev:40", true, false);
	load_fails(&img, b.data, b.len, "block 'toy.ram' is listed twice");
	forge_full(&b, "toy.ram:2", 0, "toy-dev:40", true, true);
	load_fails(&img, b.data, b.len, "listed its RAM blocks already");
	forge_full(&b, "toy.ram:2", 0, "toy-dev:40,ghost:4", true, false);
	load_fails(&img, b.data, b.len, "device 'ghost' instance 0 (section 3 at offset");
	load_fails(&img, b.data, b.len, "is not in the vmdesc");
	forge_full(&b, "toy.ram:2", 0, "toy-dev:41", true, false);
	load_fails(&img, b.data, b.len, "payload is not the 40 bytes the vmdesc gives");
	forge_full(&b, "toy.ram:2", 0, "toy-dev:39", true, false);
	load_fails(&img, b.data, b.len, "payload is not the 40 bytes");
	forge_full(&b, "toy.ram:2", 0, "toy-dev:40,toy-dev:40", true, false);
	load_fails(&img, b.data, b.len, "device 'toy-dev' instance 0 appears twice");
	forge_full(&b, "toy.ram:2", 0, "toy-dev:40", false, false);
	load_fails(&img, b.data, b.len, "the stream has no vmdesc");
	/* Trailing bytes, and a page before any MEM_SIZE. */
	forge_full(&b, "toy.ram:2", 0, "toy-dev:40", true, false);
	colo_buf_put_u8(&b, 0);
	load_fails(&img, b.data, b.len, "trailing data at offset");
	load_fails(&img, "QEMU", 4, "bad magic");
	load_fails(&img, NULL, 0, "empty stream");
	/* None of that touched the image. */
	same(&img, &good, "after refused loads");
	colo_image_free(&img);
	colo_image_free(&good);
	colo_buf_free(&b);
}
END_TEST

START_TEST(full_stream_truncated_everywhere)
{
	struct colo_buf b = COLO_BUF_INIT;
	struct colo_image img, good;
	struct colo_demo d;
	struct colo_err err;

	colo_err_clear(&err);
	colo_image_init(&img);
	colo_image_init(&good);
	/* Small: 2 pages, one of them zero; LZ4 pages keep it short. */
	ck_assert_int_eq(colo_demo_init(&d, 2 * PAGE, 3, &err), 0);
	memset(d.ram, 0, PAGE);
	image_of(&d.sv, &good);
	save_ok(&good, &b);
	ck_assert_int_eq(colo_image_copy(&img, &good, &err), 0);
	for (size_t len = 0; len < b.len; len++)
		load_fails(&img, b.data, len, NULL);
	same(&img, &good, "after every truncation");
	load_ok(&img, &b);
	colo_image_free(&img);
	colo_image_free(&good);
	colo_demo_free(&d);
	colo_buf_free(&b);
}
END_TEST

/* The toy as an image, and a checkpoint of it. */
static void toy_ckpt(struct toy *t, struct colo_image *img, struct colo_buf *ram,
		     struct colo_buf *dev)
{
	struct colo_stream_writer w;
	struct colo_ram_writer rw;
	struct colo_err err;

	colo_err_clear(&err);
	image_of(&t->sv, img);
	colo_buf_reset(ram);
	colo_buf_reset(dev);
	ram_open(ram, &w, 1);
	colo_ram_writer_init(&rw, ram);
	memset(t->mem + PAGE, 0x22, 100);
	colo_ram_put_raw(&rw, "toy.ram", PAGE, t->mem + PAGE);
	memset(t->mem, 0, PAGE);
	colo_ram_put_zero(&rw, "toy.ram", 0, 0);
	ram_close(ram, &w);
	t->dev.seq++;
	colo_sw_init(&w, dev, false);
	ck_assert_int_eq(colo_sw_device(&w, 2, "toy-dev", 0, &colo_ckpt_info_vmstate, &t->dev,
					&err), 0);
	colo_sw_free(&w);
	colo_test_ckpt_seal(ram, dev, 3, 9, 2);
}

START_TEST(checkpoint_truncated_everywhere)
{
	struct colo_buf ram = COLO_BUF_INIT, dev = COLO_BUF_INIT;
	struct colo_image img, fresh;
	struct toy t;

	colo_image_init(&img);
	colo_image_init(&fresh);
	toy_init(&t);
	toy_ckpt(&t, &img, &ram, &dev);
	for (size_t len = 0; len < ram.len; len++)
		apply_fails(&img, ram.data, len, dev.data, dev.len, "offset");
	for (size_t len = 0; len < dev.len; len++)
		apply_fails(&img, ram.data, ram.len, dev.data, len, "offset");
	apply_ok(&img, &ram, &dev);
	image_of(&t.sv, &fresh);
	same(&img, &fresh, "toy after its checkpoint");
	ck_assert(colo_image_page_touched(&img.blocks[0], 0));
	ck_assert(colo_image_page_touched(&img.blocks[0], 1));
	ck_assert_uint_eq(img.pages[COLO_PAGE_ZERO], 1);
	ck_assert_uint_eq(img.pages[COLO_PAGE_RAW], 1);
	ck_assert_uint_eq(img.ckpt.seq, 9);
	colo_image_free(&img);
	colo_image_free(&fresh);
	colo_savevm_free(&t.sv);
	colo_buf_free(&ram);
	colo_buf_free(&dev);
}
END_TEST

/* A checkpoint with a RAM stream of its own making, sealed as the primary. */
static void forge_ckpt(struct colo_buf *ram, struct colo_buf *dev, uint32_t ram_id,
		       const char *block, uint64_t off, const char *devname, size_t dev_bytes,
		       uint32_t dev_version)
{
	struct colo_stream_writer w;
	struct colo_ram_writer rw;
	struct colo_err err;
	uint8_t page[PAGE], payload[128];

	colo_err_clear(&err);
	colo_buf_reset(ram);
	colo_buf_reset(dev);
	ram_open(ram, &w, ram_id);
	colo_ram_writer_init(&rw, ram);
	memset(page, 0x5c, sizeof(page));
	colo_ram_put_raw(&rw, block, off, page);
	ram_close(ram, &w);
	colo_sw_init(&w, dev, false);
	memset(payload, 0x42, sizeof(payload));
	if (devname)
		ck_assert_int_eq(colo_sw_device_raw(&w, 2, devname, 0, dev_version, payload,
						    dev_bytes, &err), 0);
	colo_sw_free(&w);
	colo_test_ckpt_seal(ram, dev, 3, 1, 1);
}

START_TEST(checkpoint_lies)
{
	struct colo_buf ram = COLO_BUF_INIT, dev = COLO_BUF_INIT, x = COLO_BUF_INIT;
	struct colo_stream_writer w;
	struct colo_image img;
	struct colo_err err;
	struct toy t;

	colo_err_clear(&err);
	colo_image_init(&img);
	toy_init(&t);
	image_of(&t.sv, &img);

	forge_ckpt(&ram, &dev, 1, "toy.ram", 0, "toy-dev", 40, 1);
	apply_ok(&img, &ram, &dev);
	ck_assert_uint_eq(img.blocks[0].data[0], 0x5c);
	ck_assert_uint_eq(img.devs[0].payload[0], 0x42);
	image_of(&t.sv, &img);

	forge_ckpt(&ram, &dev, 1, "toy.ram", 2 * PAGE, "toy-dev", 40, 1);
	apply_fails(&img, ram.data, ram.len, dev.data, dev.len,
		    "checkpoint RAM stream: RAM page at offset 5: page offset 0x2000 is "
		    "outside block 'toy.ram'");
	forge_ckpt(&ram, &dev, 1, "vga.ram", 0, "toy-dev", 40, 1);
	apply_fails(&img, ram.data, ram.len, dev.data, dev.len, "unknown block 'vga.ram'");
	forge_ckpt(&ram, &dev, 7, "toy.ram", 0, "toy-dev", 40, 1);
	apply_fails(&img, ram.data, ram.len, dev.data, dev.len,
		    "is section 7, the image's RAM section is 1");
	forge_ckpt(&ram, &dev, 1, "toy.ram", 0, "ghost", 40, 1);
	apply_fails(&img, ram.data, ram.len, dev.data, dev.len,
		    "checkpoint device stream: device 'ghost' instance 0 (section 2 at "
		    "offset 0) is not a device of the image");
	forge_ckpt(&ram, &dev, 1, "toy.ram", 0, "toy-dev", 41, 1);
	apply_fails(&img, ram.data, ram.len, dev.data, dev.len,
		    "payload is not the 40 bytes the image holds: no footer at offset 61");
	forge_ckpt(&ram, &dev, 1, "toy.ram", 0, "toy-dev", 32, 1);
	apply_fails(&img, ram.data, ram.len, dev.data, dev.len, "payload is not the 40 bytes");
	forge_ckpt(&ram, &dev, 1, "toy.ram", 0, "toy-dev", 40, 2);
	apply_fails(&img, ram.data, ram.len, dev.data, dev.len,
		    "has version 2, the image's has 1");
	/* No colo/checkpoint; a section after it; a bad checksum. */
	forge_ckpt(&ram, &dev, 1, "toy.ram", 0, "toy-dev", 40, 1);
	colo_buf_reset(&x);
	colo_sw_init(&w, &x, false);
	colo_sw_eof(&w);
	colo_sw_free(&w);
	apply_fails(&img, ram.data, ram.len, x.data, x.len, "no colo/checkpoint section");
	colo_buf_reset(&x);
	colo_buf_put(&x, dev.data, dev.len - 1);          /* without its EOF */
	colo_sw_init(&w, &x, false);
	ck_assert_int_eq(colo_sw_device_raw(&w, 2, "toy-dev", 0, 1, dev.data, 40, &err), 0);
	colo_sw_eof(&w);
	colo_sw_free(&w);
	apply_fails(&img, ram.data, ram.len, x.data, x.len, "section 'toy-dev' at offset");
	apply_fails(&img, ram.data, ram.len, x.data, x.len, "after colo/checkpoint");
	ram.data[100]++;        /* page bytes */
	apply_fails(&img, ram.data, ram.len, dev.data, dev.len, "colo/checkpoint says checksum");
	ram.data[100]--;
	/* MEM_SIZE, a START, trailing bytes. */
	colo_buf_reset(&x);
	{
		struct colo_ram_block_info bi = { "toy.ram", 2 * PAGE, 0 };
		struct colo_ram_writer rw;

		ram_open(&x, &w, 1);
		colo_ram_writer_init(&rw, &x);
		colo_ram_put_mem_size(&rw, &bi, 1, false);
		ram_close(&x, &w);
	}
	apply_fails(&img, x.data, x.len, dev.data, dev.len,
		    "MEM_SIZE at offset 5 inside a checkpoint");
	colo_buf_reset(&x);
	colo_sw_init(&w, &x, false);
	ck_assert_int_eq(colo_sw_section_begin(&w, COLO_SEC_START, 1, COLO_RAM_IDSTR, 0, 4,
					       &err), 0);
	colo_sw_free(&w);
	apply_fails(&img, x.data, x.len, dev.data, dev.len, "START (0x01) at offset 0");
	colo_buf_reset(&x);
	colo_buf_put(&x, ram.data, ram.len);
	colo_buf_put_u8(&x, 0);
	apply_fails(&img, x.data, x.len, dev.data, dev.len, "trailing data at offset");
	/* Still the image it was, and a good checkpoint still applies. */
	apply_ok(&img, &ram, &dev);

	colo_image_free(&img);
	colo_savevm_free(&t.sv);
	colo_buf_free(&ram);
	colo_buf_free(&dev);
	colo_buf_free(&x);
}
END_TEST

static Suite *image_suite(void)
{
	Suite *s = suite_create("image");
	TCase *tc = tcase_create("image");

	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, demo_round_trip, 0, 3);
	tcase_add_test(tc, copy_is_deep);
	tcase_add_test(tc, plain_stream_is_the_same_state);
	tcase_add_loop_test(tc, demo_checkpoints, 0, 2);
	tcase_add_test(tc, demo_checkpoints_given);
	tcase_add_test(tc, memo_keyframes_are_full_saves);
	tcase_add_test(tc, given_pages_checked);
	tcase_add_test(tc, memtouch_round_trip_and_checkpoints);
	tcase_add_test(tc, full_stream_lies);
	tcase_add_test(tc, full_stream_truncated_everywhere);
	tcase_add_test(tc, checkpoint_truncated_everywhere);
	tcase_add_test(tc, checkpoint_lies);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(image_suite());
}
