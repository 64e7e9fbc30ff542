/*
 * test_ramenc.c: the RAM section end to end: guest blocks written round
 * after round, dirty pages staged, encoded on several threads against the
 * shadow, framed as RAM sections, read back by the stream reader and
 * applied to a second set of blocks, which must equal the first after every
 * round, for every codec set, in the first full sync and in many
 * incremental rounds.
 */
#include "config.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ram.h"
#include "ramenc.h"
#include "stream.h"
#include "testutil.h"

#define PAGE COLO_PAGE_SIZE
#define NBLK 2

static const uint64_t sizes[NBLK] = { 1u << 20, 256u << 10 };
static const char *const names[NBLK] = { "main.ram", "vga.vram" };

struct world {
	/* source: the guest */
	struct colo_ram_block src[NBLK];
	struct colo_ram_block *srcp[NBLK];
	struct colo_ram_shadow shadow[NBLK];
	/* destination: what the secondary holds */
	struct colo_ram_target dst[NBLK];
	struct colo_ram_applier applier;
	struct colo_stream_reader *reader;
	struct colo_ram_stage stage;
	struct colo_ram_encoder *enc;
	uint32_t allowed;
	struct colo_rng rng;
	int round;
	bool async;                    /* colo_ram_encode_start, not _encode */
	atomic_uint done_calls;        /* its on_done */
	/* Where on_done gathers the job (as the primary does), else NULL. */
	struct colo_buf *done_out;
	struct colo_ram_enc_stats *done_stats;
	int done_rc;
	struct colo_err done_err;
};

static void on_done(void *ud)
{
	struct world *w = ud;

	if (w->done_out)
		w->done_rc = colo_ram_encode_finish(w->enc, w->done_out, w->done_stats,
						    &w->done_err);
	atomic_fetch_add(&w->done_calls, 1);
}

/* Encode w's stage into out as colo_ram_encode does, one way or the other. */
static int encode(struct world *w, struct colo_buf *out, struct colo_ram_enc_stats *st,
		  struct colo_err *err)
{
	unsigned calls = atomic_load(&w->done_calls);
	int r;

	if (!w->async)
		return colo_ram_encode(w->enc, &w->stage, w->shadow, NBLK, w->allowed, out,
				       st, err);
	colo_ram_encoder_on_done(w->enc, on_done, w);
	/* Every other job is gathered on the worker that ended it. */
	w->done_out = calls % 2 ? out : NULL;
	w->done_stats = st;
	w->done_rc = -1;
	r = colo_ram_encode_start(w->enc, &w->stage, w->shadow, NBLK, w->allowed, err);
	if (r)
		return r;
	while (atomic_load(&w->done_calls) == calls)
		sched_yield();
	/* Once per job. */
	ck_assert_uint_eq(atomic_load(&w->done_calls), calls + 1);
	if (w->done_out) {
		*err = w->done_err;
		return w->done_rc;
	}
	return colo_ram_encode_finish(w->enc, out, st, err);
}

static uint8_t *map(uint64_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ck_assert(p != MAP_FAILED);
	return p;
}

static int on_section(void *ud, const struct colo_section_info *s,
		      struct colo_section_handler *h, struct colo_err *err)
{
	struct world *w = ud;

	(void)s; (void)err;
	h->payload = colo_ram_applier_handler;
	h->ctx = &w->applier;
	return 0;
}

static const struct colo_stream_ops ops = { .section = on_section };

static void world_init(struct world *w, uint32_t allowed, unsigned threads, uint64_t seed)
{
	struct colo_err err;

	memset(w, 0, sizeof(*w));
	colo_err_clear(&err);
	w->allowed = allowed;
	w->rng.s = seed;
	for (int b = 0; b < NBLK; b++) {
		struct colo_ram_block *s = &w->src[b];

		snprintf(s->name, sizeof(s->name), "%s", names[b]);
		s->length = sizes[b];
		s->npages = sizes[b] / PAGE;
		s->host = map(sizes[b]);
		s->dirty = calloc((s->npages + 63) / 64, 8);
		w->srcp[b] = s;
		ck_assert_int_eq(colo_ram_shadow_init(&w->shadow[b], names[b], sizes[b], &err), 0);
		snprintf(w->dst[b].name, sizeof(w->dst[b].name), "%s", names[b]);
		w->dst[b].length = sizes[b];
		w->dst[b].mem = map(sizes[b]);
		memset(w->dst[b].mem, 0xee, sizes[b]);     /* the secondary starts as junk */
	}
	colo_ram_applier_init(&w->applier, w->dst, NBLK, allowed);
	w->reader = colo_stream_reader_new(&ops, w, COLO_SR_NO_HEADER | COLO_SR_NO_VMDESC);
	colo_ram_stage_init(&w->stage);
	ck_assert_int_eq(colo_ram_encoder_new(threads, &w->enc, &err), 0);
}

static void world_free(struct world *w)
{
	for (int b = 0; b < NBLK; b++) {
		munmap(w->src[b].host, sizes[b]);
		free(w->src[b].dirty);
		colo_ram_shadow_free(&w->shadow[b]);
		munmap(w->dst[b].mem, sizes[b]);
	}
	colo_ram_applier_free(&w->applier);
	colo_stream_reader_free(w->reader);
	colo_ram_stage_free(&w->stage);
	colo_ram_encoder_free(w->enc);
}

static void mark(struct colo_ram_block *b, uint64_t off, uint64_t len)
{
	for (uint64_t p = off / PAGE; p <= (off + len - 1) / PAGE; p++)
		b->dirty[p / 64] |= 1ull << (p % 64);
}

/* One round of guest writes, of a kind chosen by the round number. */
static void guest_writes(struct world *w)
{
	struct colo_rng *r = &w->rng;
	int n = 1 + (int)colo_rng_below(r, 200);

	for (int i = 0; i < n; i++) {
		struct colo_ram_block *b = &w->src[colo_rng_below(r, NBLK)];
		uint64_t len, off;

		switch ((w->round + i) % 6) {
		case 0:
			len = 1 + colo_rng_below(r, 8);
			break;
		case 1:
			len = 64;
			break;
		case 2:
			len = 512;
			break;
		case 3:
			len = PAGE;
			break;
		case 4:
			len = 3 * PAGE + 17;       /* across pages */
			break;
		default:
			len = 0;                   /* dirty but unchanged */
			break;
		}
		off = colo_rng_below(r, b->length - (len ? len : 1));
		if (len == 0) {
			mark(b, off, 1);
			continue;
		}
		if (i % 7 == 3)
			memset(b->host + off, 0, len);
		else if (i % 7 == 5)
			memset(b->host + off, 'x', len);
		else
			colo_rng_fill(r, b->host + off, len);
		mark(b, off, len);
	}
	if (w->round % 10 == 9) {                  /* a whole block rewritten */
		memset(w->src[1].host, (uint8_t)w->round, w->src[1].length);
		mark(&w->src[1], 0, w->src[1].length);
	}
}

/* Stage, encode, frame as a section, read back; returns the section bytes. */
static void checkpoint(struct world *w, struct colo_buf *sec, struct colo_ram_enc_stats *st)
{
	struct colo_stream_writer sw;
	struct colo_ram_writer rw;
	struct colo_err err;
	ssize_t got;

	colo_err_clear(&err);
	colo_ram_stage_reset(&w->stage);
	ck_assert_int_eq(colo_ram_stage_collect(&w->stage, w->srcp, NBLK, &err), 0);
	for (int b = 0; b < NBLK; b++)
		for (size_t k = 0; k < (w->srcp[b]->npages + 63) / 64; k++)
			ck_assert_uint_eq(w->srcp[b]->dirty[k], 0);
	colo_buf_reset(sec);
	colo_sw_init(&sw, sec, false);
	colo_ram_writer_init(&rw, sec);
	if (w->round == 0) {
		struct colo_ram_block_info info[NBLK];

		for (int b = 0; b < NBLK; b++) {
			memset(&info[b], 0, sizeof(info[b]));
			snprintf(info[b].name, sizeof(info[b].name), "%s", names[b]);
			info[b].length = sizes[b];
		}
		colo_sw_section_begin(&sw, COLO_SEC_START, 1, "ram", 0, 4, &err);
		colo_ram_put_mem_size(&rw, info, NBLK, false);
	} else {
		colo_sw_section_begin(&sw, COLO_SEC_END, 1, NULL, 0, 0, &err);
	}
	ck_assert_msg(encode(w, sec, st, &err) == 0, "%s", err.msg);
	colo_ram_put_eos(&rw);
	colo_sw_section_end(&sw);
	colo_sw_eof(&sw);
	colo_sw_free(&sw);
	/* The secondary reads it in random pieces. */
	colo_stream_reader_restart(w->reader, COLO_SR_NO_HEADER | COLO_SR_NO_VMDESC);
	for (size_t off = 0; off < sec->len;) {
		size_t n = 1 + (size_t)colo_rng_below(&w->rng, 5000);

		if (n > sec->len - off)
			n = sec->len - off;
		got = colo_stream_reader_feed(w->reader, sec->data + off, n);
		ck_assert_msg(got == (ssize_t)n, "round %d: %s", w->round,
			      colo_stream_reader_error(w->reader));
		off += n;
	}
	ck_assert(colo_stream_reader_done(w->reader));
	w->round++;
}

static void assert_same(struct world *w)
{
	for (int b = 0; b < NBLK; b++)
		for (uint64_t off = 0; off < sizes[b]; off += PAGE)
			ck_assert_msg(memcmp(w->src[b].host + off, w->dst[b].mem + off, PAGE) == 0,
				      "round %d: block %s page 0x%" PRIx64 " differs",
				      w->round, names[b], off);
}

#define B(k) COLO_PAGE_KIND_BIT(COLO_PAGE_##k)
static const uint32_t codec_sets[] = {
	B(ZERO) | B(RAW) | B(LZ4) | B(DELTA) | B(DELTA_LZ4),     /* colo */
	B(ZERO) | B(RAW) | B(XBZRLE),                            /* QEMU peer */
	B(RAW),                                                  /* nothing else */
	B(RAW) | B(DELTA),
	B(RAW) | B(LZ4),
	B(RAW) | B(ZERO) | B(DELTA_LZ4),
};
#define NSETS (sizeof(codec_sets) / sizeof(codec_sets[0]))

static void run_rounds(uint32_t allowed, unsigned threads, int rounds, uint64_t seed,
		       bool async)
{
	struct colo_buf sec = COLO_BUF_INIT;
	struct world w;

	world_init(&w, allowed, threads, seed);
	w.async = async;
	/* The guest had contents before protection started. */
	for (int b = 0; b < NBLK; b++) {
		colo_rng_fill(&w.rng, w.src[b].host, sizes[b] / 2);
		mark(&w.src[b], 0, sizes[b]);
	}
	for (int i = 0; i < rounds; i++) {
		if (i)
			guest_writes(&w);
		checkpoint(&w, &sec, NULL);
		assert_same(&w);
	}
	colo_buf_free(&sec);
	world_free(&w);
}

/* Every page written, then six checkpoints with writes between; the last
 * checkpoint's section in sec, and the copy equal to the guest. */
static void six_rounds(struct world *w, struct colo_buf *sec)
{
	for (int b = 0; b < NBLK; b++) {
		colo_rng_fill(&w->rng, w->src[b].host, sizes[b]);
		mark(&w->src[b], 0, sizes[b]);
	}
	for (int i = 0; i < 6; i++) {
		if (i)
			guest_writes(w);
		checkpoint(w, sec, NULL);
	}
	assert_same(w);
}

START_TEST(every_codec_set_many_rounds)
{
	run_rounds(codec_sets[_i], 3, 25, COLO_TEST_SEED(1000 + (uint64_t)_i), false);
}
END_TEST

/*
 * Without waiting (colo_ram_encode_start, on_done, colo_ram_encode_finish),
 * job after job on 1 to 4 threads, the secondary's copy equals the guest
 * after every round: a worker that wakes late for one job never takes a
 * chunk of the next.
 */
START_TEST(async_jobs_back_to_back)
{
	run_rounds(codec_sets[0], 1 + (unsigned)_i, 40, COLO_TEST_SEED(2000 + (uint64_t)_i),
		   true);
}
END_TEST

/* The same bytes, encoded either way. */
START_TEST(async_output_is_the_same)
{
	struct colo_buf sec[2] = { COLO_BUF_INIT, COLO_BUF_INIT };

	for (int a = 0; a < 2; a++) {
		struct world w;

		world_init(&w, codec_sets[0], 3, 77);
		w.async = a == 1;
		six_rounds(&w, &sec[a]);
		world_free(&w);
	}
	ck_assert_uint_eq(sec[1].len, sec[0].len);
	ck_assert_mem_eq(sec[1].data, sec[0].data, sec[0].len);
	colo_buf_free(&sec[0]);
	colo_buf_free(&sec[1]);
}
END_TEST

/* Nothing staged: on_done at once, and no records. */
START_TEST(async_empty_job)
{
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_ram_enc_stats st;
	struct colo_err err;
	struct world w;

	world_init(&w, codec_sets[0], 2, 5);
	colo_err_clear(&err);
	memset(&st, 0, sizeof(st));
	colo_ram_stage_reset(&w.stage);
	colo_ram_encoder_on_done(w.enc, on_done, &w);
	ck_assert_int_eq(colo_ram_encode_start(w.enc, &w.stage, w.shadow, NBLK, w.allowed,
					       &err), 0);
	ck_assert_uint_eq(atomic_load(&w.done_calls), 1);
	ck_assert_int_eq(colo_ram_encode_finish(w.enc, &out, &st, &err), 0);
	ck_assert_uint_eq(out.len, 0);
	ck_assert_uint_eq(st.bytes, 0);
	colo_buf_free(&out);
	world_free(&w);
}
END_TEST

/* Freed while a job is under way: the job ends first (on_done ran), so
 * what it works on may go right after. */
START_TEST(async_free_waits_for_the_job)
{
	struct colo_err err;
	struct world w;

	world_init(&w, codec_sets[0], 2, 9);
	colo_err_clear(&err);
	for (int b = 0; b < NBLK; b++) {
		colo_rng_fill(&w.rng, w.src[b].host, sizes[b]);
		mark(&w.src[b], 0, sizes[b]);
	}
	colo_ram_stage_reset(&w.stage);
	ck_assert_int_eq(colo_ram_stage_collect(&w.stage, w.srcp, NBLK, &err), 0);
	colo_ram_encoder_on_done(w.enc, on_done, &w);
	ck_assert_int_eq(colo_ram_encode_start(w.enc, &w.stage, w.shadow, NBLK, w.allowed,
					       &err), 0);
	colo_ram_encoder_free(w.enc);
	w.enc = NULL;
	ck_assert_uint_eq(atomic_load(&w.done_calls), 1);
	world_free(&w);
}
END_TEST

/* Same dirty set, 1 to 5 threads: the same bytes. */
START_TEST(output_does_not_depend_on_threads)
{
	struct colo_buf ref = COLO_BUF_INIT, sec = COLO_BUF_INIT;

	for (unsigned threads = 1; threads <= 5; threads++) {
		struct world w;

		world_init(&w, codec_sets[0], threads, 42);
		six_rounds(&w, &sec);
		if (threads == 1) {
			colo_buf_reset(&ref);
			colo_buf_put(&ref, sec.data, sec.len);
		} else {
			ck_assert_uint_eq(sec.len, ref.len);
			ck_assert_mem_eq(sec.data, ref.data, ref.len);
		}
		world_free(&w);
	}
	colo_buf_free(&ref);
	colo_buf_free(&sec);
}
END_TEST

/* ---- the records streamed as their chunks are encoded ---- */

struct enc_job {
	struct world *w;
	struct colo_buf out;
	atomic_uint calls;            /* on_chunk */
	int rc;
};

static void count_chunk(void *ud)
{
	atomic_fetch_add(&((struct enc_job *)ud)->calls, 1);
}

static void *encode_thread(void *arg)
{
	struct enc_job *j = arg;
	struct colo_err err;

	colo_err_clear(&err);
	j->rc = colo_ram_encode(j->w->enc, &j->w->stage, j->w->shadow, NBLK, j->w->allowed,
				&j->out, NULL, &err);
	return NULL;
}

/*
 * Prepared, a job's chunks are not ready; encoded on another thread (3
 * threads of its own), each becomes ready once, with a call of on_chunk,
 * and read in order as they come they are exactly the records
 * colo_ram_encode appends; prepared again, none is ready.
 */
START_TEST(chunks_stream_as_encoded)
{
	struct colo_buf streamed = COLO_BUF_INIT;
	struct enc_job j = { 0 };
	struct colo_err err;
	const uint8_t *data;
	size_t n, next = 0, len;
	pthread_t th;
	struct world w;

	world_init(&w, codec_sets[0], 3, COLO_TEST_SEED(11));
	for (int b = 0; b < NBLK; b++) {
		colo_rng_fill(&w.rng, w.src[b].host, sizes[b]);
		mark(&w.src[b], 0, sizes[b]);
	}
	colo_err_clear(&err);
	colo_ram_stage_reset(&w.stage);
	ck_assert_int_eq(colo_ram_stage_collect(&w.stage, w.srcp, NBLK, &err), 0);
	n = colo_ram_encode_prepare(w.enc, w.stage.n);
	ck_assert_uint_eq(n, (w.stage.n + COLO_RAM_ENC_CHUNK - 1) / COLO_RAM_ENC_CHUNK);
	ck_assert_uint_ge(n, 2);
	ck_assert(!colo_ram_encoder_chunk(w.enc, 0, &data, &len));
	j.w = &w;
	colo_ram_encoder_on_chunk(w.enc, count_chunk, &j);
	ck_assert_int_eq(pthread_create(&th, NULL, encode_thread, &j), 0);
	while (next < n) {
		if (colo_ram_encoder_chunk(w.enc, next, &data, &len)) {
			colo_buf_put(&streamed, data, len);
			next++;
		} else {
			sched_yield();
		}
	}
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(j.rc, 0);
	ck_assert_uint_eq(atomic_load(&j.calls), n);
	ck_assert(!colo_ram_encoder_chunk(w.enc, n, &data, &len));
	ck_assert_uint_eq(streamed.len, j.out.len);
	ck_assert_mem_eq(streamed.data, j.out.data, j.out.len);
	ck_assert_uint_eq(colo_ram_encode_prepare(w.enc, w.stage.n), n);
	for (size_t k = 0; k < n; k++)
		ck_assert(!colo_ram_encoder_chunk(w.enc, k, &data, &len));
	colo_ram_encoder_on_chunk(w.enc, NULL, NULL);
	colo_buf_free(&streamed);
	colo_buf_free(&j.out);
	world_free(&w);
}
END_TEST

START_TEST(stats_count_what_was_sent)
{
	struct colo_buf sec = COLO_BUF_INIT;
	struct colo_ram_enc_stats st;
	struct world w;

	world_init(&w, codec_sets[0], 2, COLO_TEST_SEED(7));
	/* Full sync of zeroed blocks: all ZERO. */
	for (int b = 0; b < NBLK; b++)
		mark(&w.src[b], 0, sizes[b]);
	memset(&st, 0, sizeof(st));
	checkpoint(&w, &sec, &st);
	ck_assert_uint_eq(st.pages[COLO_PAGE_ZERO], (sizes[0] + sizes[1]) / PAGE);
	ck_assert_uint_eq(st.unchanged, 0);
	/* Dirty but unchanged pages are not sent. */
	mark(&w.src[0], 0, 10 * PAGE);
	memset(&st, 0, sizeof(st));
	checkpoint(&w, &sec, &st);
	ck_assert_uint_eq(st.unchanged, 10);
	ck_assert_uint_eq(st.bytes, 0);
	/* 8 bytes in 3 pages: 3 DELTA records. */
	for (int k = 0; k < 3; k++) {
		memcpy(w.src[0].host + (uint64_t)k * 7 * PAGE + 100, "changed!", 8);
		mark(&w.src[0], (uint64_t)k * 7 * PAGE + 100, 8);
	}
	memset(&st, 0, sizeof(st));
	checkpoint(&w, &sec, &st);
	ck_assert_uint_eq(st.pages[COLO_PAGE_DELTA], 3);
	assert_same(&w);
	colo_buf_free(&sec);
	world_free(&w);
}
END_TEST

static bool under_valgrind(void)
{
	const char *p = getenv("LD_PRELOAD");

	return p && strstr(p, "vgpreload");
}

/*
 * The real thing: blocks from colo_ram with a tracking backend, the guest
 * writing without telling anyone (except in manual mode), harvest, stage,
 * encode, apply.  Any page the tracking missed shows up as a difference.
 */
static void tracked_rounds(enum colo_dirty_mode mode)
{
	struct colo_buf sec = COLO_BUF_INIT;
	struct colo_ram_block *blocks[NBLK];
	struct colo_ram *ram;
	struct colo_err err;
	struct world w;

	colo_err_clear(&err);
	if (mode != COLO_DIRTY_MANUAL && under_valgrind())
		colo_test_skip("%s under valgrind", colo_dirty_mode_name(mode));
	ck_assert_msg(colo_ram_new(mode, &ram, &err) == 0, "%s", err.msg);
	for (int b = 0; b < NBLK; b++)
		ck_assert_int_eq(colo_ram_add_block(ram, names[b], sizes[b], &blocks[b], &err), 0);
	world_init(&w, codec_sets[0], 2, colo_test_seed(colo_dirty_mode_name(mode),
							 99 + (uint64_t)mode));
	/* checkpoint() stages from w.srcp: make that the tracked blocks. */
	for (int b = 0; b < NBLK; b++) {
		colo_rng_fill(&w.rng, blocks[b]->host, sizes[b] / 3);
		w.srcp[b] = blocks[b];
	}
	ck_assert_int_eq(colo_ram_start(ram, &err), 0);
	for (int round = 0; round < 30; round++) {
		struct colo_rng *r = &w.rng;

		if (round) {
			for (int i = 0; i < 150; i++) {
				struct colo_ram_block *b = blocks[colo_rng_below(r, NBLK)];
				uint64_t len = 1 + colo_rng_below(r, i % 10 ? 16 : 3 * PAGE);
				uint64_t off = colo_rng_below(r, b->length - len);

				colo_rng_fill(r, b->host + off, len);
				if (mode == COLO_DIRTY_MANUAL)
					colo_ram_mark_dirty(b, off, len);
			}
		}
		ck_assert_int_eq(colo_ram_harvest(ram, NULL, &err), 0);
		checkpoint(&w, &sec, NULL);
		for (int b = 0; b < NBLK; b++)
			for (uint64_t off = 0; off < sizes[b]; off += PAGE)
				ck_assert_msg(memcmp(blocks[b]->host + off, w.dst[b].mem + off,
						     PAGE) == 0, "%s: round %d: block %s page "
					      "0x%" PRIx64 " differs", colo_dirty_mode_name(mode),
					      round, names[b], off);
	}
	world_free(&w);
	colo_ram_free(ram);
	colo_buf_free(&sec);
}

START_TEST(tracked_uffd_wp)
{
	struct colo_ram *probe;
	struct colo_err err;

	colo_err_clear(&err);
	if (colo_ram_new(COLO_DIRTY_UFFD_WP, &probe, &err))
		colo_test_skip("uffd-wp: %s", err.msg);
	colo_ram_free(probe);
	tracked_rounds(COLO_DIRTY_UFFD_WP);
}
END_TEST

START_TEST(tracked_mprotect)
{
	tracked_rounds(COLO_DIRTY_MPROTECT);
}
END_TEST

START_TEST(tracked_manual)
{
	tracked_rounds(COLO_DIRTY_MANUAL);
}
END_TEST

START_TEST(refuses_bad_jobs)
{
	struct colo_ram_encoder *enc;
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_int_eq(colo_ram_encoder_new(0, &enc, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "encode-threads must be 1 to 64, not 0");
	ck_assert_uint_ge(colo_ram_encoder_default_threads(), 1);
	ck_assert_uint_le(colo_ram_encoder_default_threads(), COLO_RAM_ENC_THREADS_MAX);
}
END_TEST

/*
 * The stage maps its pages before the copy writes them, a MiB at a time
 * (one call, instead of a page fault per page): after each reserve the
 * pages asked for, rounded up to 256 and within the mapping, are resident
 * and the rest are not; growing keeps the pages staged.
 */
START_TEST(stage_maps_its_pages_before_the_copy)
{
	struct colo_ram_stage st;
	struct colo_err err;
	uint8_t page[PAGE];
	bool kernel = false;

#ifdef MADV_POPULATE_WRITE
	{
		uint8_t *probe = map(PAGE);

		kernel = madvise(probe, PAGE, MADV_POPULATE_WRITE) == 0;
		munmap(probe, PAGE);
	}
#endif
	colo_err_clear(&err);
	colo_ram_stage_init(&st);
	ck_assert_int_eq(colo_ram_stage_reserve(&st, 300, &err), 0);
	ck_assert_uint_eq(st.cap, 512);
	ck_assert_uint_eq(st.populated, 512);
	if (kernel)
		ck_assert_uint_eq(colo_test_resident(st.pages, 512), 512);
	for (uint32_t i = 0; i < 300; i++) {
		memset(page, (int)i, PAGE);
		ck_assert_int_eq(colo_ram_stage_add(&st, 0, i, page, &err), 0);
	}
	ck_assert_uint_eq(st.populated, 512);
	/* Past the mapping: a new one, mapped up to 768 of its 1024. */
	ck_assert_int_eq(colo_ram_stage_reserve(&st, 600, &err), 0);
	ck_assert_uint_eq(st.cap, 1024);
	ck_assert_uint_eq(st.populated, 768);
	if (kernel) {
		ck_assert_uint_eq(colo_test_resident(st.pages, 768), 768);
		ck_assert_uint_eq(colo_test_resident(st.pages + 768 * PAGE, 256), 0);
	}
	ck_assert_uint_eq(st.n, 300);
	for (uint32_t i = 0; i < 300; i++) {
		memset(page, (int)i, PAGE);
		ck_assert_mem_eq(st.pages + (size_t)i * PAGE, page, PAGE);
		ck_assert_uint_eq(st.refs[i].page, i);
	}
	/* Within the mapping, the next MiB when asked for. */
	ck_assert_int_eq(colo_ram_stage_reserve(&st, 769, &err), 0);
	ck_assert_uint_eq(st.populated, 1024);
	colo_ram_stage_free(&st);
	ck_assert_ptr_null(st.pages);
	ck_assert_uint_eq(st.populated, 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("ramenc");
	TCase *tc = tcase_create("ramenc");

	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, every_codec_set_many_rounds, 0, (int)NSETS);
	tcase_add_test(tc, output_does_not_depend_on_threads);
	tcase_add_loop_test(tc, async_jobs_back_to_back, 0, 4);
	tcase_add_test(tc, async_output_is_the_same);
	tcase_add_test(tc, async_empty_job);
	tcase_add_test(tc, async_free_waits_for_the_job);
	tcase_add_test(tc, stats_count_what_was_sent);
	tcase_add_test(tc, chunks_stream_as_encoded);
	tcase_add_test(tc, tracked_uffd_wp);
	tcase_add_test(tc, tracked_mprotect);
	tcase_add_test(tc, tracked_manual);
	tcase_add_test(tc, refuses_bad_jobs);
	tcase_add_test(tc, stage_maps_its_pages_before_the_copy);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
