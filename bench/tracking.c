/*
 * tracking.c: colo-bench's dirty-tracking and pause-model parts.
 *
 *   first write   ns for the first write to a clean page, per backend, and
 *                 the same writes to untracked memory as the baseline
 *   harvest       time to collect 1k/10k/100k dirty pages of a 1 GiB block
 *   pause         harvest + copy of 10k dirty pages into the staging buffer
 *                 (what the guest waits for), as a ratio to a plain memcpy
 *                 of the same pages into the same buffer
 */
#include "config.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"
#include "ram.h"
#include "ramenc.h"

#define PAGE COLO_RAM_PAGE_SIZE
#define GIB (1ull << 30)
#define SCRATCH (96u << 20)

/* Those this kernel lacks are left out (soft-dirty here:
 * bench/softdirty-vm.sh runs these parts under Debian's kernel). */
static const enum colo_dirty_mode modes[] = {
	COLO_DIRTY_UFFD_WP, COLO_DIRTY_SOFT_DIRTY, COLO_DIRTY_MPROTECT, COLO_DIRTY_MANUAL,
};
#define NMODES (sizeof(modes) / sizeof(modes[0]))

static struct colo_ram *make_ram(enum colo_dirty_mode m, uint64_t size,
				 struct colo_ram_block **blk)
{
	struct colo_ram *ram;
	struct colo_err err;

	colo_err_clear(&err);
	if (colo_ram_new(m, &ram, &err))
		return NULL;            /* not on this machine: skipped */
	if (colo_ram_add_block(ram, "bench.ram", size, blk, &err) ||
	    colo_ram_start(ram, &err)) {
		fprintf(stderr, "colo-bench: %s: %s\n", colo_dirty_mode_name(m), err.msg);
		exit(1);
	}
	return ram;
}

static void harvest_clean(struct colo_ram *ram, struct colo_ram_block *b)
{
	struct colo_err err;
	uint64_t n;

	colo_err_clear(&err);
	if (colo_ram_harvest(ram, &n, &err)) {
		fprintf(stderr, "colo-bench: harvest: %s\n", err.msg);
		exit(1);
	}
	colo_ram_block_clear_dirty(b);
}

/* Touch `count` pages spread over the block, one byte each, `shift` pages
 * past the first of each stride. */
static void touch_at(struct colo_ram_block *b, uint64_t count, bool manual, uint8_t v,
		     uint64_t shift)
{
	uint64_t stride = b->npages / count;

	for (uint64_t i = 0; i < count; i++) {
		uint64_t off = (i * stride + shift) * PAGE + (i % 64) * 8;

		b->host[off] = v;
		if (manual)
			colo_ram_mark_dirty(b, off, 1);
	}
}

static void touch(struct colo_ram_block *b, uint64_t count, bool manual, uint8_t v)
{
	touch_at(b, count, manual, v, 0);
}

/*
 * Every page clean and write-protected: mprotect reports a harvest's pages
 * once more in the next harvest and protects them again only after
 * colo_ram_rearm() (ram.h), so one harvest leaves them writable and their
 * next writes would not fault.  A second harvest after the rearm takes the
 * echo and leaves nothing writable.
 */
static void settle(struct colo_ram *ram, struct colo_ram_block *b)
{
	harvest_clean(ram, b);
	colo_ram_rearm(ram);
	harvest_clean(ram, b);
}

static double first_write_ns(enum colo_dirty_mode m, uint64_t pages, int reps,
			     bool *ok)
{
	struct colo_ram_block *b;
	struct colo_ram *ram = make_ram(m, pages * PAGE, &b);
	double best = 1e30;

	*ok = ram != NULL;
	if (!ram)
		return 0;
	touch(b, pages, m == COLO_DIRTY_MANUAL, 1);    /* populate */
	for (int r = 0; r < reps; r++) {
		double t;

		settle(ram, b);
		t = bench_now();
		touch(b, pages, m == COLO_DIRTY_MANUAL, (uint8_t)(r + 2));
		t = bench_now() - t;
		if (t < best)
			best = t;
	}
	colo_ram_free(ram);
	return best / (double)pages * 1e9;
}

static double baseline_write_ns(uint64_t pages, int reps)
{
	struct colo_ram_block b;
	double best = 1e30;

	memset(&b, 0, sizeof(b));
	b.npages = pages;
	b.host = bench_map(pages * PAGE);
	for (int r = 0; r < reps; r++) {
		double t = bench_now();

		touch(&b, pages, false, (uint8_t)r);
		t = bench_now() - t;
		if (t < best)
			best = t;
	}
	munmap(b.host, pages * PAGE);
	return best / (double)pages * 1e9;
}

static double harvest_ms(enum colo_dirty_mode m, struct colo_ram *ram,
			 struct colo_ram_block *b, uint64_t dirty, int reps)
{
	double best = 1e30;
	struct colo_err err;
	uint64_t n = 0;

	for (int r = 0; r < reps; r++) {
		double t;

		settle(ram, b);
		touch(b, dirty, m == COLO_DIRTY_MANUAL, (uint8_t)(r + 5));
		colo_err_clear(&err);
		t = bench_now();
		colo_ram_harvest(ram, &n, &err);
		t = bench_now() - t;
		if (n < dirty) {
			fprintf(stderr, "colo-bench: %s harvest found %llu of %llu pages\n",
				colo_dirty_mode_name(m), (unsigned long long)n,
				(unsigned long long)dirty);
			exit(1);
		}
		if (t < best)
			best = t;
	}
	return best * 1e3;
}

void bench_tracking(json_t *out)
{
	uint64_t fw_pages = bench_opts.quick ? 8192 : 32768;
	int reps = bench_opts.quick ? 3 : 5;
	static const uint64_t counts[] = { 1000, 10000, 100000 };
	double base_ns = baseline_write_ns(fw_pages, reps);
	json_t *jm = json_array();

	if (!bench_opts.json) {
		printf("\n== dirty tracking: first write to a clean page (%llu pages), "
		       "harvest of a 1 GiB block, best of %d\n",
		       (unsigned long long)fw_pages, reps);
		printf("  untracked memory: %.1f ns per write (baseline)\n", base_ns);
		printf("  %-10s %10s %9s | %12s %12s %12s\n", "backend", "ns/write",
		       "x base", "harvest 1k", "10k", "100k");
	}
	for (size_t i = 0; i < NMODES; i++) {
		enum colo_dirty_mode m = modes[i];
		json_t *o = json_object(), *jh = json_object();
		struct colo_ram_block *b;
		struct colo_ram *ram;
		double ns, ms[3];
		bool ok;

		ns = first_write_ns(m, fw_pages, reps, &ok);
		json_object_set_new(o, "backend", json_string(colo_dirty_mode_name(m)));
		json_object_set_new(o, "available", json_boolean(ok));
		if (!ok) {
			json_array_append_new(jm, o);
			json_decref(jh);
			if (!bench_opts.json)
				printf("  %-10s not available here\n", colo_dirty_mode_name(m));
			continue;
		}
		ram = make_ram(m, GIB, &b);
		for (int k = 0; k < 3; k++) {
			char key[16];

			ms[k] = harvest_ms(m, ram, b, counts[k], reps);
			snprintf(key, sizeof(key), "%llu", (unsigned long long)counts[k]);
			json_object_set_new(jh, key, json_real(ms[k]));
		}
		colo_ram_free(ram);
		json_object_set_new(o, "first_write_ns", json_real(ns));
		json_object_set_new(o, "first_write_vs_untracked", json_real(ns / base_ns));
		json_object_set_new(o, "harvest_ms", jh);
		json_array_append_new(jm, o);
		if (!bench_opts.json)
			printf("  %-10s %10.1f %8.1fx | %9.3f ms %9.3f ms %9.3f ms\n",
			       colo_dirty_mode_name(m), ns, ns / base_ns, ms[0], ms[1], ms[2]);
	}
	{
		json_t *o = json_object();

		json_object_set_new(o, "untracked_write_ns", json_real(base_ns));
		json_object_set_new(o, "backends", jm);
		json_object_set_new(out, "tracking", o);
	}
}

/* Push the pages out of the caches (the L3 here is 32 MiB) before a timing,
 * so that neither side of a comparison inherits the other's warm data. */
static void evict(uint8_t *scratch, size_t len)
{
	for (size_t i = 0; i < len; i += 64)
		scratch[i]++;
}

/*
 * The pause: the guest stops, the dirty bitmap is harvested and the dirty
 * pages are copied into the staging buffer; then it runs again.  Baseline:
 * memcpy of the same pages into the same (warm) buffer, caches cold for
 * both.
 */
/*
 * mprotect protects a harvest's pages again on a thread while the guest
 * runs, and the next harvest reports them once more (ram.h).  Above, every
 * round writes the same pages, so that costs nothing.  Here each round
 * writes other pages than the last (two sets, alternating), right after
 * the last harvest, while its pages are being protected, as a guest that
 * resumes does: the pause stages both rounds' pages, and the harvest
 * waits for whatever protection is left.  The baseline is the memcpy of
 * the round's own pages, as above.
 */
static void pause_mprotect_moving(json_t *jm, struct colo_ram_stage *st, uint8_t *scratch,
				  uint64_t dirty, int reps)
{
	struct colo_ram_block *b;
	struct colo_ram *ram = make_ram(COLO_DIRTY_MPROTECT, GIB, &b);
	double best = 1e30, mc = 1e30;
	size_t staged = 0;
	uint64_t stride, shift = 0;
	struct colo_err err;
	json_t *o;

	if (!ram)
		return;
	colo_err_clear(&err);
	stride = b->npages / dirty;
	harvest_clean(ram, b);
	for (int r = 0; r < reps + 1; r++) {
		uint64_t n;
		double t;

		shift = r % 2 ? stride / 2 : 0;
		touch_at(b, dirty, false, (uint8_t)(r + 1), shift);
		colo_ram_stage_reset(st);
		colo_ram_block_clear_dirty(b);
		evict(scratch, SCRATCH);
		t = bench_now();
		if (colo_ram_harvest(ram, &n, &err) || colo_ram_stage_collect(st, &b, 1, &err)) {
			fprintf(stderr, "colo-bench: %s\n", err.msg);
			exit(1);
		}
		t = bench_now() - t;
		colo_ram_rearm(ram);    /* the guest resumes */
		if (r == 0)
			continue;       /* the first round has no last round's pages */
		if (st->n < dirty || st->n > 2 * dirty) {
			fprintf(stderr, "colo-bench: staged %zu pages, not %llu to %llu\n",
				st->n, (unsigned long long)dirty, (unsigned long long)(2 * dirty));
			exit(1);
		}
		staged = st->n;
		if (t < best)
			best = t;
	}
	/* The protection of the last round's pages is done before the
	 * baseline: colo_ram_free waits for it. */
	colo_ram_free(ram);
	ram = make_ram(COLO_DIRTY_MANUAL, GIB, &b);
	if (!ram)
		return;
	touch_at(b, dirty, true, 1, shift);
	for (int r = 0; r < reps; r++) {
		double t;

		evict(scratch, SCRATCH);
		t = bench_now();
		for (uint64_t k = 0; k < dirty; k++)
			memcpy(st->pages + k * PAGE, b->host + (k * stride + shift) * PAGE, PAGE);
		t = bench_now() - t;
		if (t < mc)
			mc = t;
	}
	colo_ram_free(ram);
	o = json_object();
	json_object_set_new(o, "backend", json_string("mprotect, other pages each round"));
	json_object_set_new(o, "pause_ms", json_real(best * 1e3));
	json_object_set_new(o, "staged_pages", json_integer((json_int_t)staged));
	json_object_set_new(o, "memcpy_ms", json_real(mc * 1e3));
	json_object_set_new(o, "pause_vs_memcpy", json_real(best / mc));
	json_array_append_new(jm, o);
	if (!bench_opts.json)
		printf("  mprotect, other pages each round: pause %7.3f ms (staged %zu pages: "
		       "this round's and the last's) | memcpy of this round's %7.3f ms | "
		       "%.2fx memcpy\n", best * 1e3, staged, mc * 1e3, best / mc);
}

void bench_pause(json_t *out)
{
	uint64_t dirty = 10000;
	int reps = bench_opts.quick ? 5 : 15;
	json_t *jm = json_array();
	struct colo_ram_stage st;
	struct colo_err err;
	uint8_t *scratch;

	colo_err_clear(&err);
	colo_ram_stage_init(&st);
	if (colo_ram_stage_reserve(&st, dirty, &err)) {
		fprintf(stderr, "colo-bench: %s\n", err.msg);
		exit(1);
	}
	memset(st.pages, 1, dirty * PAGE);          /* faulted in, as in a running node */
	scratch = bench_map(SCRATCH);
	if (!bench_opts.json)
		printf("\n== pause model: harvest + copy of %llu dirty pages of a 1 GiB "
		       "block into the staging buffer, best of %d\n",
		       (unsigned long long)dirty, reps);
	for (size_t i = 0; i < NMODES; i++) {
		enum colo_dirty_mode m = modes[i];
		struct colo_ram_block *b;
		struct colo_ram *ram = make_ram(m, GIB, &b);
		double best = 1e30, mc = 1e30, harvest = 1e30;
		uint64_t stride;
		json_t *o;

		if (!ram)
			continue;
		stride = b->npages / dirty;
		for (int r = 0; r < reps; r++) {
			uint64_t n;
			double t;

			harvest_clean(ram, b);
			touch(b, dirty, m == COLO_DIRTY_MANUAL, (uint8_t)(r + 1));
			colo_ram_stage_reset(&st);
			evict(scratch, SCRATCH);
			t = bench_now();
			colo_ram_harvest(ram, &n, &err);
			colo_ram_stage_collect(&st, &b, 1, &err);
			t = bench_now() - t;
			colo_ram_rearm(ram);    /* the guest resumes */
			if (st.n != dirty) {
				fprintf(stderr, "colo-bench: staged %zu of %llu pages\n", st.n,
					(unsigned long long)dirty);
				exit(1);
			}
			if (t < best)
				best = t;
			/* Baseline: the same pages, the same buffer, just memcpy. */
			evict(scratch, SCRATCH);
			t = bench_now();
			for (uint64_t k = 0; k < dirty; k++)
				memcpy(st.pages + k * PAGE, b->host + k * stride * PAGE, PAGE);
			t = bench_now() - t;
			if (t < mc)
				mc = t;
		}
		/* Harvest alone, for the breakdown. */
		for (int r = 0; r < reps; r++) {
			uint64_t n;
			double t;

			harvest_clean(ram, b);
			touch(b, dirty, m == COLO_DIRTY_MANUAL, (uint8_t)(r + 1));
			t = bench_now();
			colo_ram_harvest(ram, &n, &err);
			t = bench_now() - t;
			if (t < harvest)
				harvest = t;
		}
		o = json_object();
		json_object_set_new(o, "backend", json_string(colo_dirty_mode_name(m)));
		json_object_set_new(o, "pause_ms", json_real(best * 1e3));
		json_object_set_new(o, "harvest_ms", json_real(harvest * 1e3));
		json_object_set_new(o, "memcpy_ms", json_real(mc * 1e3));
		json_object_set_new(o, "pause_vs_memcpy", json_real(best / mc));
		json_array_append_new(jm, o);
		if (!bench_opts.json)
			printf("  %-10s pause %7.3f ms (harvest %6.3f ms) | memcpy %7.3f ms | "
			       "%.2fx memcpy\n", colo_dirty_mode_name(m), best * 1e3,
			       harvest * 1e3, mc * 1e3, best / mc);
		colo_ram_free(ram);
	}
	pause_mprotect_moving(jm, &st, scratch, dirty, reps);
	colo_ram_stage_free(&st);
	munmap(scratch, SCRATCH);
	json_object_set_new(out, "pause", jm);
}
