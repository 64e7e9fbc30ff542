/*
 * test_ram.c: RAM blocks and dirty-page tracking (common/state/ram.h).
 *
 * A page written and not reported silently corrupts the replica, so every
 * backend (uffd-wp, mprotect, manual) runs the same seeded random writes
 * (single bytes, writes straddling pages, whole-block memsets, 4 threads,
 * threads racing the harvest) over several harvest rounds and blocks of a
 * few MiB, against a reference of what was written: a missed page fails
 * the test, extra pages (allowed by the contract) are counted and printed
 * as '# ' lines on stderr, which the TAP log keeps.
 *
 * Blocks backed by a shared file (a memfd, a regular file in $TMPDIR) run
 * in every backend too: content seen by other readers of the file both
 * ways, tracking (also after the kernel dropped their page table entries),
 * unsharing, guard pages, release, and descriptors that cannot back one.
 *
 * uffd-wp cases are TAP skips when the probe says uffd-wp does not work
 * here (Linux < 6.7, seccomp, valgrind, which lacks the userfaultfd system
 * call).  Under valgrind (LD_PRELOAD names vgpreload) counts are cut
 * tenfold and every case that takes an mprotect write fault is a skip (see
 * skip_mprotect()): what runs there is the manual backend and the code
 * every backend shares.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/fs.h>
#include <linux/userfaultfd.h>

#include "ram.h"
#include "testutil.h"

#define PAGE COLO_RAM_PAGE_SIZE

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif

/* Loop tests run once per backend, in this order. */
static const enum colo_dirty_mode backends[] = {
	COLO_DIRTY_UFFD_WP, COLO_DIRTY_MPROTECT, COLO_DIRTY_MANUAL, COLO_DIRTY_SOFT_DIRTY,
};
#define NBACKENDS 4

static bool under_valgrind(void)
{
	const char *p = getenv("LD_PRELOAD");

	return p && strstr(p, "vgpreload");
}

/* Fewer under valgrind, and under emulation (COLO_TEST_SLOW=N: N times
 * fewer; tests/vm_softdirty.sh runs this under TCG). */
static unsigned scaled(unsigned n)
{
	const char *slow = getenv("COLO_TEST_SLOW");
	unsigned d = under_valgrind() ? 10 : 1;

	if (slow && atoi(slow) > 1)
		d *= (unsigned)atoi(slow);
	return (n + d - 1) / d;
}

static void diag(const char *fmt, ...) COLO_PRINTF(1, 2);

static void diag(const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "# %s\n", line);
}

/* Each test starts and ends with nothing forced (CK_FORK=no shares them). */
static void reset_probe(void)
{
	colo_ram_probe_fail(COLO_DIRTY_UFFD_WP, false);
	colo_ram_probe_fail(COLO_DIRTY_MPROTECT, false);
	colo_ram_probe_fail(COLO_DIRTY_SOFT_DIRTY, false);
	unsetenv("COLO_DIRTY_PROBE_FAIL");
}

/* Does soft-dirty work on this kernel?  (It does not where the kernel was
 * built without CONFIG_MEM_SOFT_DIRTY: tests/vm_softdirty.sh runs these
 * tests under one that has it.)  `why` gets the reason when not. */
static bool have_soft_dirty(char *why, size_t len)
{
	struct colo_ram *ram;
	struct colo_err err;

	colo_err_clear(&err);
	if (colo_ram_new(COLO_DIRTY_SOFT_DIRTY, &ram, &err) != 0) {
		snprintf(why, len, "%s", err.msg);
		return false;
	}
	colo_ram_free(ram);
	return true;
}

/*
 * valgrind does not resume reliably from a SIGSEGV handler that fixed the
 * fault (registers are not precise at the faulting access: a resumed
 * memset wrote through its fill pattern as an address; and with
 * --vex-iropt-register-updates=allregs-at-mem-access, signal delivery
 * failed to extend the stack).  So under valgrind nothing takes mprotect
 * write faults, not even the mprotect probe.
 */
static bool no_mprotect_faults(void)
{
	return under_valgrind();
}

#define NO_MPROTECT_WHY "valgrind does not resume reliably from SIGSEGV"

/* The running test needs mprotect write faults: a TAP skip without them. */
static void skip_mprotect(const char *test)
{
	if (no_mprotect_faults())
		colo_test_skip("%s [mprotect]: " NO_MPROTECT_WHY, test);
}

/* A colo_ram tracked by `m`; the test is a TAP skip if uffd-wp or
 * soft-dirty is unavailable here, or for mprotect (and soft-dirty, whose
 * fence faults) under valgrind. */
static struct colo_ram *ram_new(enum colo_dirty_mode m, const char *test)
{
	struct colo_ram *ram = NULL;
	struct colo_err err;
	int ret;

	if (m == COLO_DIRTY_MPROTECT || m == COLO_DIRTY_SOFT_DIRTY)
		skip_mprotect(test);
	colo_err_clear(&err);
	ret = colo_ram_new(m, &ram, &err);
	if (ret < 0 && (m == COLO_DIRTY_UFFD_WP || m == COLO_DIRTY_SOFT_DIRTY))
		colo_test_skip("%s [%s]: %s", test, colo_dirty_mode_name(m), err.msg);
	ck_assert_msg(ret == 0, "colo_ram_new(%s): %s", colo_dirty_mode_name(m), err.msg);
	if (m != COLO_DIRTY_AUTO)
		ck_assert_int_eq(colo_ram_tracking(ram), m);
	return ram;
}

static struct colo_ram_block *add(struct colo_ram *ram, const char *name, uint64_t size)
{
	struct colo_ram_block *b;
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(colo_ram_add_block(ram, name, size, &b, &err) == 0, "%s", err.msg);
	return b;
}

static void start(struct colo_ram *ram)
{
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(colo_ram_start(ram, &err) == 0, "%s", err.msg);
}

/*
 * Every other harvest is followed by colo_ram_rearm(), as the engine does
 * once it has copied the pages: mprotect then protects them again on its
 * thread while the test writes on.  After the others the next harvest
 * does it first.  Both must miss nothing.
 */
static uint64_t harvest(struct colo_ram *ram)
{
	static unsigned calls;
	struct colo_err err;
	uint64_t n;

	colo_err_clear(&err);
	ck_assert_msg(colo_ram_harvest(ram, &n, &err) == 0, "%s", err.msg);
	if (++calls % 2)
		colo_ram_rearm(ram);
	return n;
}

/* mprotect reports a harvest's pages once more in the next harvest (ram.h):
 * what that adds to the next count, in this mode (n: the pages of the last
 * harvest that were not written since). */
static uint64_t echo(struct colo_ram *ram, uint64_t n)
{
	return colo_ram_tracking(ram) == COLO_DIRTY_MPROTECT ? n : 0;
}

static void clear_all(struct colo_ram *ram)
{
	for (size_t i = 0; i < colo_ram_nblocks(ram); i++)
		colo_ram_block_clear_dirty(colo_ram_block_at(ram, i));
}

/* ---- a guest writing, and what it wrote ---- */

/* What the guest wrote since the last check: one byte per page. */
struct ref {
	size_t nblocks;
	uint8_t *pages[8];
	uint64_t written;           /* pages, over the whole test */
	uint64_t extra;             /* reported, not written */
};

static void ref_init(struct ref *r, struct colo_ram *ram)
{
	memset(r, 0, sizeof(*r));
	r->nblocks = colo_ram_nblocks(ram);
	ck_assert_uint_le(r->nblocks, 8);
	for (size_t i = 0; i < r->nblocks; i++) {
		r->pages[i] = calloc(colo_ram_block_at(ram, i)->npages, 1);
		ck_assert_ptr_nonnull(r->pages[i]);
	}
}

static void ref_free(struct ref *r)
{
	for (size_t i = 0; i < r->nblocks; i++)
		free(r->pages[i]);
}

static size_t block_index(struct colo_ram *ram, struct colo_ram_block *b)
{
	for (size_t i = 0; i < colo_ram_nblocks(ram); i++)
		if (colo_ram_block_at(ram, i) == b)
			return i;
	ck_abort_msg("block %s not in its colo_ram", b->name);
	return 0;
}

static void ref_mark(uint8_t *pages, uint64_t off, uint64_t len)
{
	for (uint64_t p = off / PAGE; p <= (off + len - 1) / PAGE; p++)
		pages[p] = 1;
}

/* The guest writes bytes; in manual mode it says so afterwards. */
static void guest_write(struct colo_ram_block *b, uint64_t off, const void *src, size_t len)
{
	ck_assert_uint_le(off + len, b->length);
	memcpy(b->host + off, src, len);
	if (colo_ram_tracking(b->ram) == COLO_DIRTY_MANUAL)
		colo_ram_mark_dirty(b, off, len);
}

static void write_ref(struct ref *r, struct colo_ram_block *b, uint64_t off,
		      const void *src, size_t len)
{
	guest_write(b, off, src, len);
	ref_mark(r->pages[block_index(b->ram, b)], off, len);
}

/*
 * Harvest and compare with the reference.  A written page not reported
 * fails; dirty was clear before, so *ndirty must count exactly the pages
 * reported; bits past the last page must never be set.  Clears both.
 */
static void check_round(struct colo_ram *ram, struct ref *r, const char *what, int round)
{
	uint64_t n = harvest(ram), reported = 0;

	for (size_t i = 0; i < r->nblocks; i++) {
		struct colo_ram_block *b = colo_ram_block_at(ram, i);
		uint64_t last = b->dirty[(b->npages - 1) / 64], here = 0;

		if (b->npages % 64)
			ck_assert_msg((last >> (b->npages % 64)) == 0,
				      "%s: bits past the end of block %s", what, b->name);
		for (uint64_t p = 0; p < b->npages; p++) {
			bool d = colo_ram_page_dirty(b, p);

			if (r->pages[i][p] && !d)
				ck_abort_msg("%s [%s] round %d: block %s page %llu written "
					     "but not reported", what,
					     colo_dirty_mode_name(colo_ram_tracking(ram)), round,
					     b->name, (unsigned long long)p);
			r->written += r->pages[i][p];
			r->extra += d && !r->pages[i][p];
			here += d;
		}
		ck_assert_uint_eq(colo_ram_block_count_dirty(b), here);
		reported += here;
		memset(r->pages[i], 0, b->npages);
	}
	ck_assert_msg(n == reported, "%s round %d: harvest said %llu new pages, "
		      "bitmaps hold %llu", what, round, (unsigned long long)n,
		      (unsigned long long)reported);
	clear_all(ram);
}

static void report(const struct ref *r, struct colo_ram *ram, const char *what)
{
	diag("%s [%s]: %llu pages written, none missed, %llu false positives", what,
	     colo_dirty_mode_name(colo_ram_tracking(ram)), (unsigned long long)r->written,
	     (unsigned long long)r->extra);
}

/* A started colo_ram with clean bitmaps, for the write tests. */
static void start_clean(struct colo_ram *ram)
{
	start(ram);
	harvest(ram);
	clear_all(ram);
}

/* ---- names ---- */

START_TEST(mode_names)
{
	enum colo_dirty_mode m;

	for (int i = COLO_DIRTY_AUTO; i <= COLO_DIRTY_SOFT_DIRTY; i++) {
		ck_assert_int_eq(colo_dirty_mode_parse(colo_dirty_mode_name(i), &m), 0);
		ck_assert_int_eq(m, i);
	}
	ck_assert_str_eq(colo_dirty_mode_name(COLO_DIRTY_UFFD_WP), "uffd-wp");
	ck_assert_str_eq(colo_dirty_mode_name(COLO_DIRTY_SOFT_DIRTY), "soft-dirty");
	ck_assert_str_eq(colo_dirty_mode_name(COLO_DIRTY_SOFT_DIRTY + 1), "?");
	ck_assert_int_eq(colo_dirty_mode_parse("uffd", &m), -EINVAL);
	ck_assert_int_eq(colo_dirty_mode_parse("", &m), -EINVAL);
	ck_assert_int_eq(colo_dirty_mode_parse("MPROTECT", &m), -EINVAL);
}
END_TEST

/* ---- blocks ---- */

START_TEST(add_block_rules)
{
	enum colo_dirty_mode mode = backends[_i];
	struct colo_ram *ram = ram_new(mode, "add_block_rules");
	struct colo_ram_block *b;
	struct colo_err err;
	char name[300];

	/* Sizes round up to whole pages; memory starts zeroed. */
	b = add(ram, "one", 1);
	ck_assert_uint_eq(b->length, PAGE);
	ck_assert_uint_eq(b->npages, 1);
	ck_assert_uint_eq((uintptr_t)b->host % PAGE, 0);
	ck_assert_ptr_eq(b->ram, ram);
	b = add(ram, "exact", PAGE);
	ck_assert_uint_eq(b->length, PAGE);
	b = add(ram, "over", 5 * PAGE + 1);
	ck_assert_uint_eq(b->length, 6 * PAGE);
	ck_assert_uint_eq(b->npages, 6);
	for (uint64_t i = 0; i < b->length; i++)
		ck_assert_uint_eq(b->host[i], 0);

	/* 255 bytes is the longest name. */
	memset(name, 'n', 255);
	name[255] = '\0';
	b = add(ram, name, 3);
	ck_assert_str_eq(b->name, name);
	ck_assert_ptr_eq(colo_ram_find(ram, name), b);
	name[255] = 'n';
	name[256] = '\0';
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ram_add_block(ram, name, 3, &b, &err), -ENAMETOOLONG);
	ck_assert_ptr_null(b);
	ck_assert_msg(strstr(err.msg, "255") && !strchr(err.msg, '\n'), "%s", err.msg);

	colo_err_clear(&err);
	ck_assert_int_eq(colo_ram_add_block(ram, "over", PAGE, &b, &err), -EEXIST);
	ck_assert_msg(strstr(err.msg, "\"over\"") && strstr(err.msg, "already"), "%s", err.msg);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ram_add_block(ram, "", PAGE, &b, &err), -EINVAL);
	ck_assert_msg(err.msg[0], "no message");
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ram_add_block(ram, "zero", 0, &b, &err), -EINVAL);
	ck_assert_msg(strstr(err.msg, "\"zero\""), "%s", err.msg);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ram_add_block(ram, "huge", UINT64_MAX, &b, &err), -EINVAL);

	ck_assert_uint_eq(colo_ram_nblocks(ram), 4);
	ck_assert_str_eq(colo_ram_block_at(ram, 0)->name, "one");
	ck_assert_str_eq(colo_ram_block_at(ram, 2)->name, "over");
	ck_assert_ptr_null(colo_ram_block_at(ram, 4));
	ck_assert_ptr_eq(colo_ram_find(ram, "exact"), colo_ram_block_at(ram, 1));
	ck_assert_ptr_null(colo_ram_find(ram, "nope"));

	/* Not after tracking started; harvest not before. */
	start(ram);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ram_add_block(ram, "late", PAGE, &b, &err), -EBUSY);
	ck_assert_msg(strstr(err.msg, "\"late\""), "%s", err.msg);
	ck_assert_uint_eq(colo_ram_nblocks(ram), 4);
	colo_ram_free(ram);

	ram = ram_new(mode, "add_block_rules");
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ram_harvest(ram, NULL, &err), -EINVAL);
	ck_assert_msg(strstr(err.msg, "not started"), "%s", err.msg);
	colo_ram_free(ram);
}
END_TEST

/* start: everything dirty (tail bits clear), then nothing until written;
 * reads never count. */
START_TEST(start_and_idle)
{
	enum colo_dirty_mode mode = backends[_i];
	struct colo_ram *ram = ram_new(mode, "start_and_idle");
	struct colo_ram_block *a, *b;
	volatile uint8_t sink = 0;

	a = add(ram, "a", 3 * 1024 * 1024 + 5 * PAGE);      /* 773 pages */
	b = add(ram, "b", 64 * PAGE);
	memset(a->host, 0x5a, 10 * PAGE);                     /* before start */
	start(ram);
	ck_assert_uint_eq(colo_ram_block_count_dirty(a), a->npages);
	ck_assert_uint_eq(colo_ram_block_count_dirty(b), b->npages);
	ck_assert_uint_eq(a->dirty[a->npages / 64] >> (a->npages % 64), 0);
	ck_assert_uint_eq(harvest(ram), 0);         /* all were set already */
	clear_all(ram);
	for (int round = 0; round < 3; round++) {
		ck_assert_uint_eq(harvest(ram), 0);
		ck_assert_uint_eq(colo_ram_block_count_dirty(a), 0);
		ck_assert_uint_eq(colo_ram_block_count_dirty(b), 0);
		for (uint64_t i = 0; i < a->length; i += PAGE / 2)
			sink += a->host[i];
		for (uint64_t i = 0; i < b->length; i += 97)
			sink += b->host[i];
	}
	(void)sink;
	/* Start again: all dirty, then clean tracking from there. */
	a->host[0] = 1;
	start(ram);
	ck_assert_uint_eq(colo_ram_block_count_dirty(a), a->npages);
	clear_all(ram);
	guest_write(a, 17 * PAGE + 3, "x", 1);
	ck_assert_uint_eq(harvest(ram), 1);
	ck_assert(colo_ram_page_dirty(a, 17));
	colo_ram_free(ram);
}
END_TEST

/* ---- writes between harvests ---- */

START_TEST(single_byte_writes)
{
	enum colo_dirty_mode mode = backends[_i];
	struct colo_rng rng = { COLO_TEST_SEED(0x5eed0001 + (uint64_t)_i) };
	struct colo_ram *ram = ram_new(mode, "single_byte_writes");
	struct colo_ram_block *b;
	struct ref r;

	b = add(ram, "ram", 4 * 1024 * 1024 + PAGE);
	start_clean(ram);
	ref_init(&r, ram);
	for (int round = 0; round < 12; round++) {
		unsigned n = 1 + (unsigned)colo_rng_below(&rng, round % 3 ? 400 : 5);

		for (unsigned k = 0; k < n; k++) {
			uint64_t off = colo_rng_below(&rng, b->length);
			uint8_t v = (uint8_t)colo_rng_next(&rng);

			if (k == 0 && round % 4 == 1)
				off = 0;
			if (k == 0 && round % 4 == 2)
				off = b->length - 1;
			write_ref(&r, b, off, &v, 1);
		}
		check_round(ram, &r, "single_byte_writes", round);
	}
	report(&r, ram, "single_byte_writes");
	ref_free(&r);
	colo_ram_free(ram);
}
END_TEST

START_TEST(straddling_writes)
{
	enum colo_dirty_mode mode = backends[_i];
	struct colo_rng rng = { COLO_TEST_SEED(0x5eed0002 + (uint64_t)_i) };
	struct colo_ram *ram = ram_new(mode, "straddling_writes");
	struct colo_ram_block *b;
	uint8_t buf[2 * PAGE + 64];
	struct ref r;

	b = add(ram, "ram", 2 * 1024 * 1024);
	start_clean(ram);
	ref_init(&r, ram);
	for (int round = 0; round < 10; round++) {
		for (unsigned k = 0; k < 60; k++) {
			/* 2..64 bytes across a boundary, or up to 3 pages. */
			uint64_t page = 1 + colo_rng_below(&rng, b->npages - 3);
			size_t len = k % 10 == 9 ? PAGE + 2 + (size_t)colo_rng_below(&rng, PAGE)
						 : 2 + (size_t)colo_rng_below(&rng, 63);
			size_t before = 1 + (size_t)colo_rng_below(&rng, len - 1);

			colo_rng_fill(&rng, buf, len);
			write_ref(&r, b, page * PAGE - before, buf, len);
		}
		check_round(ram, &r, "straddling_writes", round);
	}
	report(&r, ram, "straddling_writes");
	ref_free(&r);
	colo_ram_free(ram);
}
END_TEST

START_TEST(whole_block_memset)
{
	enum colo_dirty_mode mode = backends[_i];
	struct colo_ram *ram = ram_new(mode, "whole_block_memset");
	struct colo_ram_block *b;
	struct ref r;

	b = add(ram, "ram", 3 * 1024 * 1024 + 3 * PAGE);
	start_clean(ram);
	ref_init(&r, ram);
	for (int round = 0; round < 6; round++) {
		if (round % 2 == 0) {
			memset(b->host, round + 1, b->length);
			if (mode == COLO_DIRTY_MANUAL)
				colo_ram_mark_dirty(b, 0, b->length);
			memset(r.pages[0], 1, b->npages);
		}
		check_round(ram, &r, "whole_block_memset", round);
	}
	ck_assert_uint_eq(r.written, 3 * b->npages);
	report(&r, ram, "whole_block_memset");
	ref_free(&r);
	colo_ram_free(ram);
}
END_TEST

START_TEST(multi_block)
{
	static const uint64_t sizes[] = { PAGE, 1024 * 1024 + PAGE, 3 * 1024 * 1024, 65536, 7 };
	enum colo_dirty_mode mode = backends[_i];
	struct colo_rng rng = { COLO_TEST_SEED(0x5eed0003 + (uint64_t)_i) };
	struct colo_ram *ram = ram_new(mode, "multi_block");
	struct colo_ram_block *bl[5];
	uint8_t buf[80];
	struct ref r;

	for (int i = 0; i < 5; i++) {
		char name[16];

		snprintf(name, sizeof(name), "blk%d", i);
		bl[i] = add(ram, name, sizes[i]);
	}
	start_clean(ram);
	ref_init(&r, ram);
	for (int round = 0; round < 10; round++) {
		/* Some rounds touch one block only, the others all. */
		int only = round % 3 == 2 ? (int)colo_rng_below(&rng, 5) : -1;

		for (unsigned k = 0; k < 200; k++) {
			struct colo_ram_block *b = bl[only >= 0 ? only : (int)colo_rng_below(&rng, 5)];
			size_t len = 1 + (size_t)colo_rng_below(&rng, sizeof(buf));
			uint64_t off;

			if (len > b->length)
				len = (size_t)b->length;
			off = colo_rng_below(&rng, b->length - len + 1);
			colo_rng_fill(&rng, buf, len);
			write_ref(&r, b, off, buf, len);
		}
		check_round(ram, &r, "multi_block", round);
	}
	report(&r, ram, "multi_block");
	ref_free(&r);
	colo_ram_free(ram);
}
END_TEST

/* ---- four threads writing between harvests ---- */

struct tw {
	struct colo_ram *ram;
	struct colo_ram_block *bl[3];
	struct colo_rng rng;
	uint8_t *pages[3];          /* this thread's reference */
	unsigned writes;
};

static void *thread_writer(void *arg)
{
	struct tw *t = arg;
	uint8_t buf[24];

	for (unsigned k = 0; k < t->writes; k++) {
		int i = (int)colo_rng_below(&t->rng, 3);
		struct colo_ram_block *b = t->bl[i];
		size_t len = k % 4 ? 1 : sizeof(buf);
		uint64_t off = colo_rng_below(&t->rng, b->length - len + 1);

		colo_rng_fill(&t->rng, buf, len);
		guest_write(b, off, buf, len);
		ref_mark(t->pages[i], off, len);
	}
	return NULL;
}

START_TEST(four_threads)
{
	enum colo_dirty_mode mode = backends[_i];
	struct colo_ram *ram = ram_new(mode, "four_threads");
	struct tw tw[4];
	pthread_t th[4];
	struct ref r;
	uint64_t seed;

	add(ram, "a", 2 * 1024 * 1024);
	add(ram, "b", 1024 * 1024 + 3 * PAGE);
	add(ram, "c", 4 * 1024 * 1024);
	start_clean(ram);
	ref_init(&r, ram);
	seed = COLO_TEST_SEED(0x5eed0004 + 100 * (uint64_t)_i);
	for (int t = 0; t < 4; t++) {
		tw[t].ram = ram;
		tw[t].rng.s = seed + (uint64_t)t;
		for (int i = 0; i < 3; i++) {
			tw[t].bl[i] = colo_ram_block_at(ram, (size_t)i);
			tw[t].pages[i] = calloc(tw[t].bl[i]->npages, 1);
		}
	}
	for (int round = 0; round < 8; round++) {
		for (int t = 0; t < 4; t++) {
			tw[t].writes = scaled(500 + 300 * (unsigned)round);
			ck_assert_int_eq(pthread_create(&th[t], NULL, thread_writer, &tw[t]), 0);
		}
		for (int t = 0; t < 4; t++)
			pthread_join(th[t], NULL);
		for (int t = 0; t < 4; t++)
			for (int i = 0; i < 3; i++)
				for (uint64_t p = 0; p < tw[t].bl[i]->npages; p++) {
					r.pages[i][p] |= tw[t].pages[i][p];
					tw[t].pages[i][p] = 0;
				}
		check_round(ram, &r, "four_threads", round);
	}
	report(&r, ram, "four_threads");
	for (int t = 0; t < 4; t++)
		for (int i = 0; i < 3; i++)
			free(tw[t].pages[i]);
	ref_free(&r);
	colo_ram_free(ram);
}
END_TEST

/* ---- threads writing while the harvest runs ---- */

/* Shared blocks (below). */
static int memfd_new(const char *name, unsigned flags);
static struct colo_ram_block *add_fd(struct colo_ram *ram, const char *name, uint64_t size,
				     int fd);

/*
 * Each writer logs every write with the number of harvests completed
 * before it began (e1) and after it completed (e2).  The contract: a write
 * that completed before harvest e2+1 returned is reported by harvest e2+1
 * or e2+2; it may also be reported earlier, by a harvest that was running
 * while it happened (e1+1 .. e2).  And as a COLO primary would, the
 * harvester copies every reported page into a shadow right after each
 * harvest, while the writers go on: after the writers stop and two final
 * harvests, the shadow must equal the memory byte for byte.  One of the
 * three blocks is a shared mapping of a memfd.
 */
struct race_log {
	uint8_t block;
	uint32_t first, last;       /* pages */
	uint32_t e1, e2;
};

struct race {
	struct colo_ram *ram;
	struct colo_ram_block *bl[3];
	atomic_uint epoch;          /* harvests completed */
	atomic_int running;         /* writers still writing */
};

struct racer {
	struct race *race;
	struct colo_rng rng;
	unsigned id;
	struct race_log *log;
	size_t n, cap;
};

static void *race_writer(void *arg)
{
	struct racer *w = arg;
	struct race *race = w->race;
	uint64_t seq = (uint64_t)w->id << 48;

	for (size_t k = 0; k < w->cap; k++) {
		int i = (int)colo_rng_below(&w->rng, 3);
		struct colo_ram_block *b = race->bl[i];
		uint64_t v = ++seq, off;
		size_t len = 8;
		struct race_log *l = &w->log[w->n++];

		/* A fresh value each time, so a lost write shows in the
		 * shadow; one in four straddles a page boundary. */
		if (k % 4 == 3) {
			off = (1 + colo_rng_below(&w->rng, b->npages - 1)) * PAGE -
			      1 - colo_rng_below(&w->rng, 7);
		} else {
			off = colo_rng_below(&w->rng, b->length / 8) * 8;
		}
		l->block = (uint8_t)i;
		l->first = (uint32_t)(off / PAGE);
		l->last = (uint32_t)((off + len - 1) / PAGE);
		l->e1 = atomic_load(&race->epoch);
		guest_write(b, off, &v, len);
		l->e2 = atomic_load(&race->epoch);
		if (k % 64 == 0)
			sched_yield();
	}
	atomic_fetch_sub(&race->running, 1);
	return NULL;
}

START_TEST(writes_racing_harvest)
{
	enum colo_dirty_mode mode = backends[_i];
	struct colo_ram *ram = ram_new(mode, "writes_racing_harvest");
	/* Fewer where each write can take a fault (mprotect, or a
	 * soft-dirty fence). */
	unsigned writes = scaled(mode == COLO_DIRTY_MPROTECT ||
				 mode == COLO_DIRTY_SOFT_DIRTY ? 15000 : 40000);
	uint8_t **hist = NULL;       /* hist[n]: pages harvest n+1 reported */
	size_t nhist = 0, caphist = 0, words = 0, wordsof[3];
	uint8_t *shadow[3];
	struct racer w[4];
	pthread_t th[4];
	struct race race;
	uint64_t late = 0, early = 0, checked = 0, seed;
	int fd;

	memset(&race, 0, sizeof(race));
	race.ram = ram;
	race.bl[0] = add(ram, "a", 3 * 1024 * 1024);
	/* b is a shared mapping of a memfd, whose descriptor goes at once:
	 * the mapping stays (anonymous with soft-dirty, which cannot track
	 * shared blocks). */
	if (mode == COLO_DIRTY_SOFT_DIRTY) {
		race.bl[1] = add(ram, "b", 1024 * 1024 + 5 * PAGE);
	} else {
		fd = memfd_new("colo-test-race", 0);
		race.bl[1] = add_fd(ram, "b", 1024 * 1024 + 5 * PAGE, fd);
		close(fd);
	}
	race.bl[2] = add(ram, "c", 2 * 1024 * 1024);
	start(ram);
	harvest(ram);
	clear_all(ram);
	for (int i = 0; i < 3; i++) {
		shadow[i] = malloc(race.bl[i]->length);
		memcpy(shadow[i], race.bl[i]->host, race.bl[i]->length);
		wordsof[i] = (race.bl[i]->npages + 63) / 64;
		words += wordsof[i];
	}
	atomic_store(&race.running, 4);
	seed = COLO_TEST_SEED(0x5eed0005 + 100 * (uint64_t)_i);
	for (unsigned t = 0; t < 4; t++) {
		w[t].race = &race;
		w[t].rng.s = seed + t;
		w[t].id = t + 1;
		w[t].cap = writes;
		w[t].n = 0;
		w[t].log = malloc(writes * sizeof(*w[t].log));
		ck_assert_int_eq(pthread_create(&th[t], NULL, race_writer, &w[t]), 0);
	}
	/* Harvest until the writers are done, then twice more. */
	for (int tail = 0; tail < 2;) {
		uint64_t *snap;

		if (atomic_load(&race.running) == 0)
			tail++;
		harvest(ram);
		/* Published at once: the copy below is not part of it. */
		atomic_store(&race.epoch, (unsigned)nhist + 1);
		if (nhist == caphist) {
			caphist = caphist ? caphist * 2 : 1024;
			hist = realloc(hist, caphist * sizeof(*hist));
		}
		snap = malloc(words * sizeof(uint64_t));
		hist[nhist++] = (uint8_t *)snap;
		for (int i = 0; i < 3; i++) {
			struct colo_ram_block *b = race.bl[i];

			memcpy(snap, b->dirty, wordsof[i] * sizeof(uint64_t));
			snap += wordsof[i];
			for (uint64_t p = 0; p < b->npages; p++)
				if (colo_ram_page_dirty(b, p))
					memcpy(shadow[i] + p * PAGE, b->host + p * PAGE, PAGE);
			colo_ram_block_clear_dirty(b);
		}
		if (nhist > 20000)
			usleep(200);        /* enough rounds; let the writers run */
	}
	for (int t = 0; t < 4; t++)
		pthread_join(th[t], NULL);

	for (int t = 0; t < 4; t++) {
		for (size_t k = 0; k < w[t].n; k++) {
			const struct race_log *l = &w[t].log[k];
			size_t base = 0;

			for (int i = 0; i < l->block; i++)
				base += wordsof[i];
			for (uint32_t p = l->first; p <= l->last; p++) {
				uint32_t found = 0;

				/* harvest number h is hist[h - 1] */
				for (uint32_t h = l->e1 + 1; h <= l->e2 + 2 && !found; h++) {
					const uint64_t *s = (const uint64_t *)hist[h - 1] + base;

					if ((s[p / 64] >> (p % 64)) & 1)
						found = h;
				}
				ck_assert_msg(found, "[%s] writer %d write %zu: block %s page %u "
					      "written between harvests %u and %u, reported by "
					      "none of harvests %u..%u", colo_dirty_mode_name(mode),
					      t, k, race.bl[l->block]->name, p, l->e1, l->e2,
					      l->e1 + 1, l->e2 + 2);
				late += found == l->e2 + 2;
				early += found <= l->e2;
				checked++;
			}
		}
	}
	for (int i = 0; i < 3; i++) {
		struct colo_ram_block *b = race.bl[i];

		for (uint64_t p = 0; p < b->npages; p++)
			ck_assert_msg(memcmp(shadow[i] + p * PAGE, b->host + p * PAGE, PAGE) == 0,
				      "[%s] block %s page %llu: the copy made after the "
				      "harvests differs from memory (a write was missed)",
				      colo_dirty_mode_name(mode), b->name, (unsigned long long)p);
	}
	diag("writes_racing_harvest [%s]: %llu page writes by 4 threads over %zu "
	     "harvests, none missed, shadow copy equals memory; %llu reported by a "
	     "harvest racing the write, %llu only by the next-but-one",
	     colo_dirty_mode_name(mode), (unsigned long long)checked, nhist,
	     (unsigned long long)early, (unsigned long long)late);
	ck_assert_uint_ge(nhist, 20);
	for (int t = 0; t < 4; t++)
		free(w[t].log);
	for (size_t h = 0; h < nhist; h++)
		free(hist[h]);
	free(hist);
	for (int i = 0; i < 3; i++)
		free(shadow[i]);
	colo_ram_free(ram);
}
END_TEST

/* ---- big harvests ---- */

/*
 * More isolated written pages than one PAGEMAP_SCAN call can return (its
 * output vector holds 16384 regions): the harvest must resume at walk_end.
 */
START_TEST(many_regions)
{
	enum colo_dirty_mode mode = backends[_i];
	struct colo_ram *ram = ram_new(mode, "many_regions");
	uint64_t npages = under_valgrind() ? 4096 : 48000;
	struct colo_ram_block *b;
	struct ref r;

	b = add(ram, "big", npages * PAGE);
	start_clean(ram);
	ref_init(&r, ram);
	for (int round = 0; round < 2; round++) {
		for (uint64_t p = (uint64_t)round; p < b->npages; p += 2)
			write_ref(&r, b, p * PAGE + p % PAGE, "w", 1);
		check_round(ram, &r, "many_regions", round);
	}
	ck_assert_uint_eq(r.written, b->npages);
	report(&r, ram, "many_regions");
	ref_free(&r);
	colo_ram_free(ram);
}
END_TEST

/*
 * mprotect: every isolated writable page splits the mapping, and a process
 * has vm.max_map_count (65530) mappings.  Past that, the handler opens the
 * whole block and the round reports all of it; nothing is missed, and the
 * next harvest protects the block in one piece again.
 */
START_TEST(mprotect_out_of_vmas)
{
	struct colo_ram *ram;
	struct colo_ram_block *b;
	struct ref r;

	ram = ram_new(COLO_DIRTY_MPROTECT, "mprotect_out_of_vmas");
	b = add(ram, "big", 80000 * 2 * (uint64_t)PAGE);
	start_clean(ram);
	ref_init(&r, ram);
	for (uint64_t p = 1; p < b->npages; p += 2)
		write_ref(&r, b, p * PAGE, "v", 1);
	check_round(ram, &r, "mprotect_out_of_vmas", 0);
	ck_assert_uint_gt(r.extra, 0);      /* it did run out */
	diag("mprotect_out_of_vmas: %llu isolated pages written, %llu more reported",
	     (unsigned long long)r.written, (unsigned long long)r.extra);
	r.extra = 0;
	/* The next round reports the whole block once more (carried: the
	 * protector then protects it in one piece), the one after is precise
	 * again: only its writes and the last round's. */
	for (uint64_t p = 10; p < 1000; p += 10)
		write_ref(&r, b, p * PAGE + 5, "v", 1);
	check_round(ram, &r, "mprotect_out_of_vmas", 1);
	ck_assert_uint_eq(r.extra, b->npages - 99);
	r.extra = 0;
	for (uint64_t p = 10; p < 1000; p += 10)
		write_ref(&r, b, p * PAGE + 7, "w", 1);
	check_round(ram, &r, "mprotect_out_of_vmas", 2);
	ck_assert_uint_eq(r.extra, 0);      /* precise again */
	r.extra = 0;
	write_ref(&r, b, 5 * PAGE, "x", 1);
	check_round(ram, &r, "mprotect_out_of_vmas", 3);
	ck_assert_uint_eq(r.extra, 99);     /* round 2's pages, once more */
	ref_free(&r);
	colo_ram_free(ram);
}
END_TEST

/* ---- colo_ram_mark_dirty ---- */

START_TEST(mark_dirty_ranges)
{
	enum colo_dirty_mode mode = backends[_i];
	struct colo_ram *ram = ram_new(mode, "mark_dirty_ranges");
	struct colo_ram_block *b;

	b = add(ram, "m", 200 * PAGE);
	start_clean(ram);
	colo_ram_mark_dirty(b, 5 * PAGE, 0);                /* nothing */
	ck_assert_uint_eq(harvest(ram), 0);
	colo_ram_mark_dirty(b, 0, 1);                       /* page 0 */
	colo_ram_mark_dirty(b, 2 * PAGE - 1, 2);            /* 1, 2 */
	colo_ram_mark_dirty(b, 63 * PAGE, PAGE + 1);        /* 63, 64 */
	colo_ram_mark_dirty(b, 100 * PAGE, 70 * PAGE);      /* 100..169 */
	colo_ram_mark_dirty(b, b->length - 1, 1);           /* 199 */
	colo_ram_mark_dirty(b, 0, 1);                       /* again: counted once */
	ck_assert_uint_eq(harvest(ram), 1 + 2 + 2 + 70 + 1);
	for (uint64_t p = 0; p < b->npages; p++) {
		bool want = p <= 2 || p == 63 || p == 64 || (p >= 100 && p < 170) || p == 199;

		ck_assert_msg(colo_ram_page_dirty(b, p) == want, "page %llu",
			      (unsigned long long)p);
	}
	/* Already dirty: not new. */
	colo_ram_mark_dirty(b, 0, PAGE);
	ck_assert_uint_eq(harvest(ram), 0);
	clear_all(ram);
	ck_assert_uint_eq(harvest(ram), echo(ram, 1));
	clear_all(ram);
	ck_assert_uint_eq(harvest(ram), 0);
	colo_ram_mark_dirty(b, 0, b->length);
	ck_assert_uint_eq(harvest(ram), b->npages);
	ck_assert_uint_eq(colo_ram_block_count_dirty(b), 200);
	colo_ram_free(ram);
}
END_TEST

/* The kernel writing into a block (read(2)): uffd-wp sees it; mprotect
 * cannot and the system call fails (documented in ram.h). */
START_TEST(kernel_writes)
{
	enum colo_dirty_mode mode = backends[_i];
	struct colo_ram *ram;
	struct colo_ram_block *b;
	int fds[2];

	ram = ram_new(mode, "kernel_writes");
	b = add(ram, "k", 16 * PAGE);
	start_clean(ram);
	ck_assert_int_eq(pipe(fds), 0);
	ck_assert_int_eq(write(fds[1], "hello", 5), 5);
	if (mode == COLO_DIRTY_UFFD_WP || mode == COLO_DIRTY_SOFT_DIRTY) {
		ck_assert_int_eq(read(fds[0], b->host + 3 * PAGE + 10, 5), 5);
		ck_assert_uint_eq(harvest(ram), 1);
		ck_assert(colo_ram_page_dirty(b, 3));
		/* Once more, on a page written before that harvest. */
		b->host[5 * PAGE] = 1;
		ck_assert_uint_eq(harvest(ram), 1);
		clear_all(ram);
		ck_assert_int_eq(write(fds[1], "again", 5), 5);
		ck_assert_int_eq(read(fds[0], b->host + 5 * PAGE + 10, 5), 5);
		ck_assert_uint_eq(harvest(ram), 1);
		ck_assert(colo_ram_page_dirty(b, 5));
	} else {
		errno = 0;
		ck_assert_int_eq(read(fds[0], b->host + 3 * PAGE + 10, 5), -1);
		ck_assert_int_eq(errno, EFAULT);
	}
	close(fds[0]);
	close(fds[1]);
	colo_ram_free(ram);
}
END_TEST

/* ---- choosing a backend ---- */

START_TEST(auto_picks_best)
{
	struct colo_ram *ram, *probe;
	struct colo_err err;
	char why_sd[sizeof(((struct colo_err *)0)->msg)];
	bool uffd, sd;

	skip_mprotect("auto_picks_best");   /* uffd-wp is missing there: auto probes mprotect */
	colo_err_clear(&err);
	uffd = colo_ram_new(COLO_DIRTY_UFFD_WP, &probe, &err) == 0;
	if (uffd)
		colo_ram_free(probe);
	else
		diag("uffd-wp unavailable here: %s", err.msg);
	sd = have_soft_dirty(why_sd, sizeof(why_sd));
	if (!sd)
		diag("%s", why_sd);
	ram = ram_new(COLO_DIRTY_AUTO, "auto");
	ck_assert_int_eq(colo_ram_tracking(ram), uffd ? COLO_DIRTY_UFFD_WP :
			 sd ? COLO_DIRTY_SOFT_DIRTY : COLO_DIRTY_MPROTECT);
	if (uffd)
		ck_assert_str_eq(colo_ram_tracking_reason(ram),
				 "uffd-wp: userfaultfd async write-protect with PAGEMAP_SCAN works");
	else if (sd)
		ck_assert_msg(strncmp(colo_ram_tracking_reason(ram),
				      "soft-dirty: uffd-wp unavailable (", 33) == 0,
			      "%s", colo_ram_tracking_reason(ram));
	else
		ck_assert_msg(strncmp(colo_ram_tracking_reason(ram),
				      "mprotect: uffd-wp unavailable (", 31) == 0 &&
			      strstr(colo_ram_tracking_reason(ram), "; soft-dirty unavailable ("),
			      "%s", colo_ram_tracking_reason(ram));
	diag("auto: %s", colo_ram_tracking_reason(ram));
	colo_ram_free(ram);

	ram = ram_new(COLO_DIRTY_MPROTECT, "auto");
	ck_assert_str_eq(colo_ram_tracking_reason(ram), "mprotect: requested");
	colo_ram_free(ram);
}
END_TEST

START_TEST(auto_falls_back_forced)
{
	struct colo_ram *ram;
	const char *why;

	colo_ram_probe_fail(COLO_DIRTY_UFFD_WP, true);
	colo_ram_probe_fail(COLO_DIRTY_SOFT_DIRTY, true);
	if (!no_mprotect_faults()) {
		ram = ram_new(COLO_DIRTY_AUTO, "auto");
		ck_assert_int_eq(colo_ram_tracking(ram), COLO_DIRTY_MPROTECT);
		ck_assert_str_eq(colo_ram_tracking_reason(ram), "mprotect: uffd-wp "
				 "unavailable (forced to fail by colo_ram_probe_fail()); "
				 "soft-dirty unavailable (forced to fail by "
				 "colo_ram_probe_fail())");
		colo_ram_free(ram);
	}

	colo_ram_probe_fail(COLO_DIRTY_MPROTECT, true);
	ram = ram_new(COLO_DIRTY_AUTO, "auto");
	ck_assert_int_eq(colo_ram_tracking(ram), COLO_DIRTY_MANUAL);
	why = colo_ram_tracking_reason(ram);
	ck_assert_msg(strncmp(why, "manual: uffd-wp unavailable (forced", 35) == 0 &&
		      strstr(why, "; soft-dirty unavailable (forced") &&
		      strstr(why, "; mprotect unavailable (forced"), "%s", why);
	colo_ram_free(ram);

	/* Un-forcing works. */
	colo_ram_probe_fail(COLO_DIRTY_MPROTECT, false);
	skip_mprotect("auto_falls_back_forced (the manual fallback passed)");
	ram = ram_new(COLO_DIRTY_AUTO, "auto");
	ck_assert_int_eq(colo_ram_tracking(ram), COLO_DIRTY_MPROTECT);
	colo_ram_free(ram);
}
END_TEST

START_TEST(auto_falls_back_env)
{
	struct colo_ram *ram;
	const char *why;

	setenv("COLO_DIRTY_PROBE_FAIL", "uffd-wp,soft-dirty", 1);
	if (!no_mprotect_faults()) {
		ram = ram_new(COLO_DIRTY_AUTO, "auto");
		ck_assert_int_eq(colo_ram_tracking(ram), COLO_DIRTY_MPROTECT);
		ck_assert_str_eq(colo_ram_tracking_reason(ram), "mprotect: uffd-wp "
				 "unavailable (forced to fail by COLO_DIRTY_PROBE_FAIL); "
				 "soft-dirty unavailable (forced to fail by "
				 "COLO_DIRTY_PROBE_FAIL)");
		colo_ram_free(ram);
	}

	setenv("COLO_DIRTY_PROBE_FAIL", "uffd-wp,soft-dirty,mprotect", 1);
	ram = ram_new(COLO_DIRTY_AUTO, "auto");
	ck_assert_int_eq(colo_ram_tracking(ram), COLO_DIRTY_MANUAL);
	why = colo_ram_tracking_reason(ram);
	ck_assert_msg(strstr(why, "uffd-wp unavailable (forced to fail by COLO_DIRTY_PROBE_FAIL)") &&
		      strstr(why, "mprotect unavailable (forced to fail by COLO_DIRTY_PROBE_FAIL)"),
		      "%s", why);
	diag("auto, both forced: %s", why);
	colo_ram_free(ram);

	/* Names must match whole. */
	skip_mprotect("auto_falls_back_env (the manual fallback passed)");
	setenv("COLO_DIRTY_PROBE_FAIL", "mprotect-not,uffd", 1);
	ram = ram_new(COLO_DIRTY_AUTO, "auto");
	ck_assert_int_ne(colo_ram_tracking(ram), COLO_DIRTY_MANUAL);
	colo_ram_free(ram);
}
END_TEST

START_TEST(explicit_backend_forced_fails)
{
	struct colo_ram *ram = (struct colo_ram *)1;
	struct colo_err err;

	colo_ram_probe_fail(COLO_DIRTY_UFFD_WP, true);
	colo_err_clear(&err);
	ck_assert_int_lt(colo_ram_new(COLO_DIRTY_UFFD_WP, &ram, &err), 0);
	ck_assert_ptr_null(ram);
	ck_assert_str_eq(err.msg, "dirty tracking uffd-wp unavailable: forced to fail by "
			 "colo_ram_probe_fail() (needs Linux >= 6.7; try dirty-tracking=auto)");
	colo_ram_probe_fail(COLO_DIRTY_UFFD_WP, false);

	setenv("COLO_DIRTY_PROBE_FAIL", "mprotect", 1);
	colo_err_clear(&err);
	ck_assert_int_lt(colo_ram_new(COLO_DIRTY_MPROTECT, &ram, &err), 0);
	ck_assert_str_eq(err.msg, "dirty tracking mprotect unavailable: forced to fail by "
			 "COLO_DIRTY_PROBE_FAIL");
	setenv("COLO_DIRTY_PROBE_FAIL", "soft-dirty", 1);
	colo_err_clear(&err);
	ck_assert_int_lt(colo_ram_new(COLO_DIRTY_SOFT_DIRTY, &ram, &err), 0);
	ck_assert_str_eq(err.msg, "dirty tracking soft-dirty unavailable: forced to fail by "
			 "COLO_DIRTY_PROBE_FAIL (try dirty-tracking=auto)");
	/* manual cannot fail */
	colo_err_clear(&err);
	setenv("COLO_DIRTY_PROBE_FAIL", "uffd-wp,mprotect,manual", 1);
	ck_assert_int_eq(colo_ram_new(COLO_DIRTY_MANUAL, &ram, &err), 0);
	ck_assert_str_eq(colo_ram_tracking_reason(ram), "manual: requested");
	colo_ram_free(ram);
}
END_TEST

/* ---- SIGSEGV: faults that are not ours ---- */

enum fault_kind {
	FAULT_GUARD,            /* the guard page just past a block */
	FAULT_READONLY,         /* a read-only mapping of someone else */
	FAULT_NULL,             /* nothing mapped there */
	FAULT_SENT,             /* kill(getpid(), SIGSEGV): not a fault */
	FAULT_EXEC,             /* a call into a block's (non-executable) page */
	FAULT_SD_READONLY,      /* a soft-dirty block someone else made read-only */
	FAULT_COUNT,
};

static const char *const fault_names[] = {
	"guard page", "read-only mapping", "unmapped address", "sent SIGSEGV",
	"instruction fetch from a block", "soft-dirty block made read-only by hand",
};

/* child_fault's exit status when soft-dirty is unavailable. */
#define CHILD_NO_SOFT_DIRTY 93

static volatile uintptr_t fault_expect;

static void on_segv_info(int sig, siginfo_t *si, void *uctx)
{
	(void)uctx;
	/* The previous handler sees the original fault. */
	_exit(sig == SIGSEGV && (fault_expect == 0 ||
				 (uintptr_t)si->si_addr == fault_expect) ? 42 : 41);
}

static void on_segv_plain(int sig)
{
	_exit(sig == SIGSEGV ? 43 : 44);
}

/* In a child: track a block with mprotect (soft-dirty for
 * FAULT_SD_READONLY), check that works, then fault. */
static void child_fault(enum fault_kind kind)
{
	enum colo_dirty_mode mode = kind == FAULT_SD_READONLY ? COLO_DIRTY_SOFT_DIRTY :
		COLO_DIRTY_MPROTECT;
	struct colo_ram_block *b;
	struct colo_ram *ram;
	struct colo_err err;
	uint64_t n = 0;
	uint8_t *ro;
	volatile uintptr_t target;

	colo_err_clear(&err);
	ro = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mode == COLO_DIRTY_SOFT_DIRTY && colo_ram_new(mode, &ram, &err) != 0)
		_exit(CHILD_NO_SOFT_DIRTY);
	if (mode == COLO_DIRTY_SOFT_DIRTY)
		colo_ram_free(ram);
	if (ro == MAP_FAILED || colo_ram_new(mode, &ram, &err) ||
	    colo_ram_add_block(ram, "a", 3 * PAGE, &b, &err) || colo_ram_start(ram, &err))
		_exit(90);
	colo_ram_block_clear_dirty(b);
	b->host[PAGE + 5] = 7;                  /* ours: handled */
	if (b->host[PAGE + 5] != 7 || colo_ram_harvest(ram, &n, &err) || n != 1)
		_exit(91);
	switch (kind) {
	case FAULT_GUARD:
		target = (uintptr_t)(b->host + b->length);
		fault_expect = target;
		*(volatile uint8_t *)target = 1;
		break;
	case FAULT_READONLY:
		target = (uintptr_t)ro + 3;
		fault_expect = target;
		*(volatile uint8_t *)target = 1;
		break;
	case FAULT_NULL:
		target = 8;
		fault_expect = target;
		*(volatile uint8_t *)target = 1;
		break;
	case FAULT_SENT:
		fault_expect = 0;
		kill(getpid(), SIGSEGV);
		break;
	case FAULT_EXEC: {
		void (*fn)(void);

		target = (uintptr_t)b->host;
		fault_expect = target;
		memcpy(&fn, (const void *)&target, sizeof(fn));
		alarm(10);              /* a handler that loops would hang */
		fn();
		break;
	}
	case FAULT_SD_READONLY:
		/* Not a fence's: retried once, then passed on. */
		target = (uintptr_t)b->host + PAGE + 9;
		fault_expect = target;
		if (mprotect(b->host, b->length, PROT_READ) != 0)
			_exit(94);
		alarm(10);
		*(volatile uint8_t *)target = 1;
		break;
	default:
		break;
	}
	_exit(92);                              /* survived */
}

/* Run child_fault(kind) with SIGSEGV set up by `prev`; its stderr into
 * `errbuf`.  Returns the wait status. */
static int run_fault_child(enum fault_kind kind, int prev, char *errbuf, size_t errlen)
{
	int pipefd[2], status;
	size_t got = 0;
	pid_t pid;
	ssize_t n;

	ck_assert_int_eq(pipe(pipefd), 0);
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct sigaction sa;

		dup2(pipefd[1], 2);
		close(pipefd[0]);
		memset(&sa, 0, sizeof(sa));
		sigemptyset(&sa.sa_mask);
		if (prev == 1) {
			sa.sa_handler = SIG_DFL;
			sigaction(SIGSEGV, &sa, NULL);
		} else if (prev == 2) {
			sa.sa_sigaction = on_segv_info;
			sa.sa_flags = SA_SIGINFO;
			sigaction(SIGSEGV, &sa, NULL);
		} else if (prev == 3) {
			sa.sa_handler = on_segv_plain;
			sigaction(SIGSEGV, &sa, NULL);
		}
		child_fault(kind);
	}
	close(pipefd[1]);
	while (got + 1 < errlen && (n = read(pipefd[0], errbuf + got, errlen - 1 - got)) > 0)
		got += (size_t)n;
	errbuf[got] = '\0';
	close(pipefd[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return status;
}

/* The soft-dirty case where this kernel has no soft-dirty: a TAP skip. */
static void skip_no_soft_dirty(enum fault_kind kind, int st)
{
	if (kind == FAULT_SD_READONLY && WIFEXITED(st) &&
	    WEXITSTATUS(st) == CHILD_NO_SOFT_DIRTY)
		colo_test_skip("%s: soft-dirty is unavailable here", fault_names[kind]);
}

static void skip_exec_case(enum fault_kind kind)
{
#if !defined(__x86_64__)
	if (kind == FAULT_EXEC)
		colo_test_skip("instruction fetch case: needs the x86-64 page-fault error code");
#else
	(void)kind;
#endif
}

/* Previous action SIG_DFL: the process dies of SIGSEGV as it would have. */
START_TEST(foreign_fault_default_kills)
{
	enum fault_kind kind = (enum fault_kind)_i;
	char err[4096];
	int st;

	skip_mprotect("foreign_fault_default_kills");
	skip_exec_case(kind);
	st = run_fault_child(kind, 1, err, sizeof(err));
	skip_no_soft_dirty(kind, st);
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV,
		      "%s: child %s %d, stderr: %s", fault_names[kind],
		      WIFSIGNALED(st) ? "killed by signal" : "exited with",
		      WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), err);
}
END_TEST

/* Previous action a handler function: it is called, with the fault's
 * siginfo. */
START_TEST(foreign_fault_chains)
{
	enum fault_kind kind = (enum fault_kind)(_i / 2);
	int prev = 2 + _i % 2;
	char err[4096];
	int st;

	skip_mprotect("foreign_fault_chains");
	skip_exec_case(kind);
	st = run_fault_child(kind, prev, err, sizeof(err));
	skip_no_soft_dirty(kind, st);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == (prev == 2 ? 42 : 43),
		      "%s, previous %s: child %s %d, stderr: %s", fault_names[kind],
		      prev == 2 ? "SA_SIGINFO handler" : "sa_handler",
		      WIFSIGNALED(st) ? "killed by signal" : "exited with",
		      WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), err);
}
END_TEST

/*
 * Whatever the process had: SIG_DFL normally, ASan's handler in a
 * sanitizer build (it reports the SEGV and exits).  Either way the
 * process must not survive, and ASan must be the one to report.
 */
START_TEST(foreign_fault_inherited)
{
	struct sigaction cur;
	char err[8192];
	int st;

	skip_mprotect("foreign_fault_inherited");
	ck_assert_int_eq(sigaction(SIGSEGV, NULL, &cur), 0);
	st = run_fault_child(FAULT_GUARD, 0, err, sizeof(err));
	if (!(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == SIG_DFL) {
		ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "status %#x: %s", st, err);
		return;
	}
	diag("foreign_fault_inherited: a SIGSEGV handler was installed before us; "
	     "child status %#x", st);
	ck_assert_msg(!(WIFEXITED(st) && WEXITSTATUS(st) == 92), "the fault was swallowed");
	ck_assert_msg(!(WIFEXITED(st) && WEXITSTATUS(st) == 0), "child exited 0");
#ifdef TEST_ASAN
	ck_assert_msg(strstr(err, "AddressSanitizer") && strstr(err, "SEGV"),
		      "ASan did not report the SEGV: %s", err);
#endif
}
END_TEST

static bool same_action(const struct sigaction *a, const struct sigaction *b)
{
	if ((a->sa_flags & SA_SIGINFO) != (b->sa_flags & SA_SIGINFO))
		return false;
	if (a->sa_flags & SA_SIGINFO)
		return a->sa_sigaction == b->sa_sigaction;
	return a->sa_handler == b->sa_handler;
}

/* The handler is installed while an mprotect colo_ram exists, and the
 * action from before comes back when the last one goes. */
START_TEST(free_restores_sigsegv)
{
	struct sigaction orig, mine, cur;
	struct colo_ram *r1, *r2, *r3;

	skip_mprotect("free_restores_sigsegv");
	ck_assert_int_eq(sigaction(SIGSEGV, NULL, &orig), 0);
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1) {
			memset(&mine, 0, sizeof(mine));
			mine.sa_sigaction = on_segv_info;
			mine.sa_flags = SA_SIGINFO;
			sigemptyset(&mine.sa_mask);
			ck_assert_int_eq(sigaction(SIGSEGV, &mine, NULL), 0);
		}
		ck_assert_int_eq(sigaction(SIGSEGV, NULL, &mine), 0);
		r1 = ram_new(COLO_DIRTY_MPROTECT, "free_restores_sigsegv");
		ck_assert_int_eq(sigaction(SIGSEGV, NULL, &cur), 0);
		ck_assert(!same_action(&cur, &mine));
		r2 = ram_new(COLO_DIRTY_MPROTECT, "free_restores_sigsegv");
		r3 = ram_new(COLO_DIRTY_MANUAL, "free_restores_sigsegv");
		colo_ram_free(r1);
		ck_assert_int_eq(sigaction(SIGSEGV, NULL, &cur), 0);
		ck_assert(!same_action(&cur, &mine));           /* r2 still needs it */
		colo_ram_free(r2);
		ck_assert_int_eq(sigaction(SIGSEGV, NULL, &cur), 0);
		ck_assert(same_action(&cur, &mine));
		colo_ram_free(r3);
		ck_assert_int_eq(sigaction(SIGSEGV, NULL, &cur), 0);
		ck_assert(same_action(&cur, &mine));
	}
	ck_assert_int_eq(sigaction(SIGSEGV, &orig, NULL), 0);
}
END_TEST

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Descriptors closed, memory unmapped, handler slots reused. */
START_TEST(free_releases_everything)
{
	enum colo_dirty_mode mode = backends[_i];
	int fds = count_fds();
	unsigned char vec[4];
	struct colo_ram *ram;
	uint8_t *host[3];

	ram = ram_new(mode, "free_releases_everything");
	for (int i = 0; i < 3; i++) {
		char name[8];

		snprintf(name, sizeof(name), "b%d", i);
		host[i] = add(ram, name, 4 * PAGE)->host;
	}
	start(ram);
	host[1][5] = 1;
	colo_ram_free(ram);
	ck_assert_int_eq(count_fds(), fds);
	for (int i = 0; i < 3; i++) {
		errno = 0;
		ck_assert_int_eq(mincore(host[i], 4 * PAGE, vec), -1);
		ck_assert_int_eq(errno, ENOMEM);
	}
	/* More blocks over time than the handler's table holds at once. */
	for (int k = 0; k < (under_valgrind() ? 50 : 1500); k++) {
		ram = ram_new(mode, "free_releases_everything");
		add(ram, "x", PAGE);
		add(ram, "y", PAGE);
		colo_ram_free(ram);
	}
	ck_assert_int_eq(count_fds(), fds);
}
END_TEST

/* ---- blocks backed by a shared file ---- */

/*
 * Shared blocks stand for the secondary's copy of a VM's RAM that a VM
 * process started on failover maps: the file is opened again by path or
 * mapped a second time here to play that process.  Every test that adds
 * one runs once per backend.
 */

static int memfd_new(const char *name, unsigned flags)
{
	int fd = memfd_create(name, MFD_CLOEXEC | flags);

	ck_assert_msg(fd >= 0, "memfd_create: %s", strerror(errno));
	return fd;
}

/* An unnamed regular file in $TMPDIR (ext4 here, not shmem). */
static int tmpfile_new(void)
{
	char *dir = colo_test_tmpdir();
	int fd;

	ck_assert_ptr_nonnull(dir);
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	ck_assert_msg(fd >= 0, "O_TMPFILE in %s: %s", dir, strerror(errno));
	colo_test_rmdir(dir);
	return fd;
}

/* A new open file description of the same file, as another process has. */
static int reopen(int fd, int flags)
{
	char path[64];
	int fd2;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	fd2 = open(path, flags | O_CLOEXEC);
	ck_assert_msg(fd2 >= 0, "%s: %s", path, strerror(errno));
	return fd2;
}

/* An independent mapping of the file, as the other process has. */
static uint8_t *map_other(int fd, uint64_t len)
{
	uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	ck_assert_msg(p != MAP_FAILED, "mmap: %s", strerror(errno));
	return p;
}

static uint64_t file_size(int fd)
{
	struct stat st;

	ck_assert_int_eq(fstat(fd, &st), 0);
	return (uint64_t)st.st_size;
}

static void file_write(int fd, uint64_t off, const void *p, size_t len)
{
	ck_assert_int_eq(pwrite(fd, p, len, (off_t)off), (ssize_t)len);
}

/* The file's bytes [off, off + len) equal `want`, read with pread(2). */
static void check_file(int fd, uint64_t off, const void *want, size_t len, const char *what)
{
	uint8_t *got = malloc(len);

	ck_assert_ptr_nonnull(got);
	ck_assert_int_eq(pread(fd, got, len, (off_t)off), (ssize_t)len);
	for (size_t i = 0; i < len; i++)
		ck_assert_msg(got[i] == ((const uint8_t *)want)[i], "%s: file byte %llu is "
			      "%u, want %u", what, (unsigned long long)(off + i), got[i],
			      ((const uint8_t *)want)[i]);
	free(got);
}

/* How many lines of /proc/self/maps map the memfd named `name`. */
static int count_maps(const char *name)
{
	char line[512], pat[128];
	FILE *f = fopen("/proc/self/maps", "r");
	int n = 0;

	ck_assert_ptr_nonnull(f);
	snprintf(pat, sizeof(pat), "/memfd:%s (deleted)", name);
	while (fgets(line, sizeof(line), f))
		n += strstr(line, pat) != NULL;
	fclose(f);
	return n;
}

#ifndef PAGEMAP_SCAN
struct page_region {
	__u64 start, end, categories;
};

struct pm_scan_arg {
	__u64 size, flags, start, end, walk_end, vec, vec_len, max_pages;
	__u64 category_inverted, category_mask, category_anyof_mask, return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_WRITTEN (1 << 1)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

/*
 * Without the library: can this kernel track a write to a shared mapping
 * of `fd` with async uffd-wp, also after the page's entry was dropped (as
 * reclaim does)?  Only where it cannot may colo_ram_add_block_fd fail in
 * uffd-wp mode.  The file is at least one page long.
 */
static bool kernel_uffd_tracks_shared(int fd, char *why, size_t whylen)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC };
	struct page_region vec[2];
	struct pm_scan_arg scan = {
		.size = sizeof(scan), .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
		.vec_len = 2, .category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN,
	};
	int uffd, pm = -1;
	long n = -1;
	uint8_t *p;

	snprintf(why, whylen, "ok");
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (uffd < 0 || p == MAP_FAILED || ioctl(uffd, UFFDIO_API, &api) != 0) {
		snprintf(why, whylen, "userfaultfd, mmap or UFFDIO_API: %s", strerror(errno));
	} else {
		struct uffdio_register reg = {
			.range = { (uintptr_t)p, PAGE }, .mode = UFFDIO_REGISTER_MODE_WP,
		};
		struct uffdio_writeprotect wp = {
			.range = { (uintptr_t)p, PAGE }, .mode = UFFDIO_WRITEPROTECT_MODE_WP,
		};

		pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0 ||
		    ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) != 0) {
			snprintf(why, whylen, "register/write-protect: %s", strerror(errno));
		} else {
			__atomic_fetch_add(p, 0, __ATOMIC_RELAXED);
			madvise(p, PAGE, MADV_DONTNEED);
			scan.start = (uintptr_t)p;
			scan.end = (uintptr_t)p + PAGE;
			scan.vec = (uintptr_t)vec;
			n = ioctl(pm, PAGEMAP_SCAN, &scan);
			if (n != 1)
				snprintf(why, whylen, "PAGEMAP_SCAN returned %ld (%s)", n,
					 n < 0 ? strerror(errno) : "the write was lost");
		}
	}
	if (p != MAP_FAILED)
		munmap(p, PAGE);
	if (pm >= 0)
		close(pm);
	if (uffd >= 0)
		close(uffd);
	return n == 1;
}

/*
 * colo_ram_add_block_fd, which must succeed; in uffd-wp mode a failure is a
 * TAP skip only where the kernel itself cannot (checked without us).
 */
static struct colo_ram_block *add_fd(struct colo_ram *ram, const char *name, uint64_t size,
				     int fd)
{
	struct colo_ram_block *b = NULL;
	struct colo_err err;
	char why[256];
	int ret;

	colo_err_clear(&err);
	ret = colo_ram_add_block_fd(ram, name, size, fd, &b, &err);
	if (ret == -ENOTSUP && colo_ram_tracking(ram) == COLO_DIRTY_UFFD_WP) {
		ck_assert_msg(strstr(err.msg, "dirty tracking uffd-wp cannot track a shared "
				     "mapping"), "%s", err.msg);
		ck_assert_msg(!kernel_uffd_tracks_shared(fd, why, sizeof(why)),
			      "the add failed but the kernel can do it: %s", err.msg);
		colo_test_skip("shared block [uffd-wp]: %s (kernel: %s)", err.msg, why);
	}
	ck_assert_msg(ret == 0, "colo_ram_add_block_fd(%s) [%s]: %s", name,
		      colo_dirty_mode_name(colo_ram_tracking(ram)), err.msg);
	ck_assert_ptr_nonnull(b);
	ck_assert(colo_ram_block_shared(b));
	ck_assert_uint_eq((uintptr_t)b->host % PAGE, 0);
	ck_assert_uint_eq(b->length, (size + PAGE - 1) / PAGE * PAGE);
	ck_assert_uint_eq(file_size(fd), b->length);
	return b;
}

static void unshare_ok(struct colo_ram_block *b)
{
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(colo_ram_block_unshare(b, &err) == 0, "%s", err.msg);
	ck_assert(!colo_ram_block_shared(b));
}

/*
 * Bytes written through the block are in the file for every other reader
 * (a second mapping, read(2) on another open of it), and the other way
 * round; for a memfd and for a regular file.  Writes that do not go
 * through the block's own mapping are never reported (ram.h).
 */
START_TEST(shared_content)
{
	enum colo_dirty_mode mode = backends[_i];

	for (int kind = 0; kind < 2; kind++) {
		struct colo_ram *ram = ram_new(mode, "shared_content");
		int fd = kind ? tmpfile_new() : memfd_new("colo-test-content", 0);
		struct colo_ram_block *b, *a;
		int fd2 = reopen(fd, O_RDWR);
		uint8_t buf[16], *other;

		a = add(ram, "anon", 2 * PAGE);
		ck_assert(!colo_ram_block_shared(a));
		b = add_fd(ram, "pc.ram", 5 * PAGE + 1, fd);
		ck_assert_uint_eq(b->npages, 6);
		other = map_other(fd2, b->length);
		start_clean(ram);

		/* Block to file. */
		guest_write(b, 3 * PAGE + 5, "abc", 3);
		guest_write(b, b->length - 2, "yz", 2);
		guest_write(b, 0, "first", 5);
		ck_assert_int_eq(memcmp(other + 3 * PAGE + 5, "abc", 3), 0);
		ck_assert_int_eq(memcmp(other + b->length - 2, "yz", 2), 0);
		check_file(fd2, 3 * PAGE + 5, "abc", 3, "block to file");
		check_file(fd2, b->length - 2, "yz", 2, "block to file, last page");
		check_file(fd2, 0, "first", 5, "block to file, page 0");
		ck_assert_uint_eq(harvest(ram), 3);
		ck_assert(colo_ram_page_dirty(b, 0) && colo_ram_page_dirty(b, 3) &&
			  colo_ram_page_dirty(b, 5));
		clear_all(ram);

		/* File to block, through the other mapping and write(2). */
		memcpy(other + PAGE + 7, "xyz", 3);
		file_write(fd2, 4 * PAGE + 100, "pqrs", 4);
		ck_assert_int_eq(memcmp(b->host + PAGE + 7, "xyz", 3), 0);
		ck_assert_int_eq(memcmp(b->host + 4 * PAGE + 100, "pqrs", 4), 0);
		ck_assert_uint_eq(harvest(ram), echo(ram, 3));
		ck_assert(!colo_ram_page_dirty(b, 1) && !colo_ram_page_dirty(b, 4));

		/* The caller keeps its descriptor; the content outlives the
		 * colo_ram. */
		colo_ram_free(ram);
		ck_assert_int_ge(fcntl(fd, F_GETFD), 0);
		check_file(fd, 3 * PAGE + 5, "abc", 3, "after colo_ram_free");
		memset(buf, 0, sizeof(buf));
		ck_assert_int_eq(memcmp(other + 2 * PAGE, buf, sizeof(buf)), 0);
		munmap(other, 6 * PAGE);
		close(fd2);
		close(fd);
	}
}
END_TEST

/*
 * A file of the right size keeps all its content (page 0 too, which the
 * backends write once to try tracking); others are resized to the block.
 */
START_TEST(shared_keeps_content)
{
	enum colo_dirty_mode mode = backends[_i];
	struct colo_rng rng = { COLO_TEST_SEED(0x5eed0101 + (uint64_t)_i) };
	struct colo_ram *ram = ram_new(mode, "shared_keeps_content");
	struct colo_ram_block *b;
	struct colo_err err;
	uint8_t *pat = malloc(6 * PAGE);
	int fd;

	ck_assert_ptr_nonnull(pat);
	colo_rng_fill(&rng, pat, 6 * PAGE);
	pat[0] = 0x5a;

	/* The right size: untouched. */
	fd = memfd_new("colo-test-keep", 0);
	file_write(fd, 0, pat, 3 * PAGE);
	b = add_fd(ram, "exact", 3 * PAGE - 10, fd);
	ck_assert_int_eq(memcmp(b->host, pat, 3 * PAGE), 0);
	check_file(fd, 0, pat, 3 * PAGE, "right size");
	close(fd);

	/* Shorter: grows with zeros. */
	fd = memfd_new("colo-test-grow", 0);
	file_write(fd, 0, pat, PAGE + 3);
	b = add_fd(ram, "grow", 4 * PAGE, fd);
	ck_assert_int_eq(memcmp(b->host, pat, PAGE + 3), 0);
	for (uint64_t i = PAGE + 3; i < b->length; i++)
		ck_assert_uint_eq(b->host[i], 0);
	close(fd);

	/* Longer: loses its tail. */
	fd = memfd_new("colo-test-shrink", 0);
	file_write(fd, 0, pat, 6 * PAGE);
	b = add_fd(ram, "shrink", 2 * PAGE, fd);
	ck_assert_int_eq(memcmp(b->host, pat, 2 * PAGE), 0);
	close(fd);

	/* A memfd sealed against resizing works at the right size only. */
	fd = memfd_new("colo-test-sealed", MFD_ALLOW_SEALING);
	file_write(fd, 0, pat, 2 * PAGE);
	ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK), 0);
	b = add_fd(ram, "sealed", 2 * PAGE, fd);
	ck_assert_int_eq(memcmp(b->host, pat, 2 * PAGE), 0);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ram_add_block_fd(ram, "sealed-big", 3 * PAGE, fd, &b, &err),
			 -EPERM);
	ck_assert_ptr_null(b);
	ck_assert_msg(strstr(err.msg, "\"sealed-big\"") && strstr(err.msg, "resizing") &&
		      strstr(err.msg, strerror(EPERM)), "%s", err.msg);
	close(fd);
	ck_assert_uint_eq(colo_ram_nblocks(ram), 4);
	free(pat);
	colo_ram_free(ram);
}
END_TEST

/*
 * Writes to shared blocks (a memfd, a regular file) next to an anonymous
 * one are all reported, as in multi_block.  In some rounds the kernel then
 * drops the page table entries of the shared blocks, as reclaim does
 * (MADV_DONTNEED: the content stays in the file), and the regular file is
 * written back (fsync): nothing written may be missed for that, and the
 * content must stay.
 */
START_TEST(shared_dirty_tracking)
{
	enum colo_dirty_mode mode = backends[_i];
	struct colo_rng rng = { COLO_TEST_SEED(0x5eed0102 + (uint64_t)_i) };
	struct colo_ram *ram = ram_new(mode, "shared_dirty_tracking");
	struct colo_ram_block *bl[3];
	uint8_t *want[3], buf[96];
	int fds[2];
	struct ref r;

	fds[0] = memfd_new("colo-test-track", 0);
	fds[1] = tmpfile_new();
	bl[0] = add(ram, "anon", 1024 * 1024);
	bl[1] = add_fd(ram, "memfd", 2 * 1024 * 1024 + 3 * PAGE, fds[0]);
	bl[2] = add_fd(ram, "file", 1024 * 1024, fds[1]);
	for (int i = 0; i < 3; i++) {
		want[i] = calloc(1, bl[i]->length);
		ck_assert_ptr_nonnull(want[i]);
	}
	start_clean(ram);
	ref_init(&r, ram);
	for (int round = 0; round < 12; round++) {
		for (unsigned k = 0; k < 150; k++) {
			int i = (int)colo_rng_below(&rng, 3);
			struct colo_ram_block *b = bl[i];
			size_t len = 1 + (size_t)colo_rng_below(&rng, sizeof(buf));
			uint64_t off = colo_rng_below(&rng, b->length - len + 1);

			colo_rng_fill(&rng, buf, len);
			write_ref(&r, b, off, buf, len);
			memcpy(want[i] + off, buf, len);
		}
		if (round % 3 == 1 && mode != COLO_DIRTY_MANUAL) {
			for (int i = 1; i < 3; i++)
				ck_assert_int_eq(madvise(bl[i]->host, bl[i]->length,
							 MADV_DONTNEED), 0);
			ck_assert_int_eq(fsync(fds[1]), 0);
		}
		check_round(ram, &r, "shared_dirty_tracking", round);
		for (int i = 0; i < 3; i++)
			ck_assert_msg(memcmp(bl[i]->host, want[i], bl[i]->length) == 0,
				      "block %s: content changed", bl[i]->name);
	}
	check_file(fds[0], 0, want[1], bl[1]->length, "memfd after the rounds");
	check_file(fds[1], 0, want[2], bl[2]->length, "file after the rounds");
	report(&r, ram, "shared_dirty_tracking");
	ref_free(&r);
	for (int i = 0; i < 3; i++)
		free(want[i]);
	colo_ram_free(ram);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/* The kernel writing into a shared block (read(2)): as for anonymous ones,
 * uffd-wp sees it, mprotect makes the system call fail. */
START_TEST(shared_kernel_writes)
{
	enum colo_dirty_mode mode = backends[_i];
	struct colo_ram *ram = ram_new(mode, "shared_kernel_writes");
	int fd = memfd_new("colo-test-kwrite", 0), fds[2];
	struct colo_ram_block *b;

	b = add_fd(ram, "k", 16 * PAGE, fd);
	start_clean(ram);
	ck_assert_int_eq(pipe(fds), 0);
	ck_assert_int_eq(write(fds[1], "hello", 5), 5);
	if (mode == COLO_DIRTY_UFFD_WP) {
		ck_assert_int_eq(read(fds[0], b->host + 3 * PAGE + 10, 5), 5);
		ck_assert_uint_eq(harvest(ram), 1);
		ck_assert(colo_ram_page_dirty(b, 3));
		check_file(fd, 3 * PAGE + 10, "hello", 5, "read(2) into the block");
	} else {
		errno = 0;
		ck_assert_int_eq(read(fds[0], b->host + 3 * PAGE + 10, 5), -1);
		ck_assert_int_eq(errno, EFAULT);
	}
	close(fds[0]);
	close(fds[1]);
	colo_ram_free(ram);
	close(fd);
}
END_TEST

/*
 * Unshare: zeros at the same address, every page dirty; the file keeps its
 * content for every other reader and stops seeing the block's writes;
 * tracking reports later writes exactly, and start re-arms it.
 */
START_TEST(shared_unshare)
{
	enum colo_dirty_mode mode = backends[_i];
	struct colo_rng rng = { COLO_TEST_SEED(0x5eed0103 + (uint64_t)_i) };
	struct colo_ram *ram = ram_new(mode, "shared_unshare");
	int fd = memfd_new("colo-test-unshare", 0), fd2;
	struct colo_ram_block *s, *a;
	uint8_t *pat = malloc(8 * PAGE), *other, *fresh;
	struct colo_err err;
	uint8_t *host;
	struct ref r;

	ck_assert_ptr_nonnull(pat);
	colo_rng_fill(&rng, pat, 8 * PAGE);
	file_write(fd, 0, pat, 8 * PAGE);
	a = add(ram, "a", 4 * PAGE);
	s = add_fd(ram, "s", 8 * PAGE, fd);
	fd2 = reopen(fd, O_RDWR);
	other = map_other(fd2, 8 * PAGE);
	start_clean(ram);
	guest_write(s, 2 * PAGE + 1, "before", 6);
	memcpy(pat + 2 * PAGE + 1, "before", 6);
	ck_assert_uint_eq(harvest(ram), 1);
	clear_all(ram);

	host = s->host;
	ck_assert_int_ge(count_maps("colo-test-unshare"), 2);     /* block, other */
	unshare_ok(s);
	ck_assert_ptr_eq(s->host, host);
	ck_assert_uint_eq(s->length, 8 * PAGE);
	ck_assert_int_eq(count_maps("colo-test-unshare"), 1);     /* other only */
	ck_assert_uint_eq(colo_ram_block_count_dirty(s), s->npages);
	ck_assert_uint_eq(colo_ram_block_count_dirty(a), 0);
	for (uint64_t i = 0; i < s->length; i++)
		ck_assert_msg(s->host[i] == 0, "byte %llu not zero after unshare",
			      (unsigned long long)i);
	check_file(fd2, 0, pat, 8 * PAGE, "after unshare");
	ck_assert_int_eq(memcmp(other, pat, 8 * PAGE), 0);
	fresh = map_other(fd, 8 * PAGE);
	ck_assert_int_eq(memcmp(fresh, pat, 8 * PAGE), 0);
	munmap(fresh, 8 * PAGE);

	/* Tracked again, privately. */
	clear_all(ram);
	ck_assert_uint_eq(harvest(ram), 0);
	ref_init(&r, ram);
	write_ref(&r, s, 0, "p0", 2);
	write_ref(&r, s, 5 * PAGE - 1, "xx", 2);
	write_ref(&r, a, 3 * PAGE, "a3", 2);
	memcpy(other + 7 * PAGE, "other", 5);                  /* not ours now */
	check_round(ram, &r, "shared_unshare", 0);
	ck_assert_uint_eq(r.extra, 0);
	ck_assert_uint_eq(s->host[7 * PAGE], 0);
	memcpy(pat + 7 * PAGE, "other", 5);
	check_file(fd2, 0, pat, 8 * PAGE, "block writes after unshare");

	/* Re-arm. */
	start(ram);
	ck_assert_uint_eq(colo_ram_block_count_dirty(s), s->npages);
	clear_all(ram);
	write_ref(&r, s, 6 * PAGE + 9, "again", 5);
	check_round(ram, &r, "shared_unshare", 1);
	ck_assert_uint_eq(r.extra, 0);
	ck_assert_int_eq(memcmp(s->host + 6 * PAGE + 9, "again", 5), 0);
	ck_assert_int_eq(memcmp(s->host, "p0", 2), 0);

	/* Only shared blocks, and only once. */
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ram_block_unshare(s, &err), -EINVAL);
	ck_assert_msg(strstr(err.msg, "\"s\"") && strstr(err.msg, "not a shared block"),
		      "%s", err.msg);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ram_block_unshare(a, &err), -EINVAL);
	ref_free(&r);
	colo_ram_free(ram);
	ck_assert_int_eq(count_maps("colo-test-unshare"), 1);

	/* Before start: start arms the private memory. */
	ram = ram_new(mode, "shared_unshare");
	s = add_fd(ram, "s", 8 * PAGE, fd);
	ck_assert_int_eq(memcmp(s->host, pat, 8 * PAGE), 0);
	unshare_ok(s);
	ck_assert_uint_eq(s->host[2 * PAGE + 1], 0);
	start_clean(ram);
	guest_write(s, 4 * PAGE, "z", 1);
	ck_assert_uint_eq(harvest(ram), 1);
	ck_assert(colo_ram_page_dirty(s, 4));
	colo_ram_free(ram);
	check_file(fd, 0, pat, 8 * PAGE, "the end");
	munmap(other, 8 * PAGE);
	close(fd2);
	close(fd);
	free(pat);
}
END_TEST

/* uffd-wp: the kernel's writes into an unshared block are tracked too. */
START_TEST(unshared_kernel_writes)
{
	struct colo_ram *ram = ram_new(COLO_DIRTY_UFFD_WP, "unshared_kernel_writes");
	int fd = memfd_new("colo-test-ukwrite", 0), fds[2];
	struct colo_ram_block *b;

	b = add_fd(ram, "k", 16 * PAGE, fd);
	start_clean(ram);
	unshare_ok(b);
	clear_all(ram);
	ck_assert_int_eq(pipe(fds), 0);
	ck_assert_int_eq(write(fds[1], "hello", 5), 5);
	ck_assert_int_eq(read(fds[0], b->host + 9 * PAGE + 10, 5), 5);
	ck_assert_uint_eq(harvest(ram), 1);
	ck_assert(colo_ram_page_dirty(b, 9));
	close(fds[0]);
	close(fds[1]);
	colo_ram_free(ram);
	close(fd);
}
END_TEST

/*
 * A second colo_ram made after a block of the first was unshared, on the
 * same file: each reports only its own writes, and each goes on working
 * when the other is freed.
 */
START_TEST(unshare_then_new)
{
	enum colo_dirty_mode mode = backends[_i];
	int fd = memfd_new("colo-test-handback", 0);
	struct colo_ram *r1, *r2;
	struct colo_ram_block *b1, *b2;
	struct sigaction before, now;

	ck_assert_int_eq(sigaction(SIGSEGV, NULL, &before), 0);
	r1 = ram_new(mode, "unshare_then_new");
	b1 = add_fd(r1, "pc.ram", 16 * PAGE, fd);
	start_clean(r1);
	guest_write(b1, 3 * PAGE, "r1", 2);
	unshare_ok(b1);
	start_clean(r1);

	r2 = ram_new(mode, "unshare_then_new");
	b2 = add_fd(r2, "pc.ram", 16 * PAGE, fd);
	ck_assert_int_eq(memcmp(b2->host + 3 * PAGE, "r1", 2), 0);
	start_clean(r2);
	guest_write(b1, 5 * PAGE, "1", 1);
	guest_write(b2, 7 * PAGE, "2", 1);
	ck_assert_uint_eq(harvest(r1), 1);
	ck_assert(colo_ram_page_dirty(b1, 5));
	ck_assert_uint_eq(harvest(r2), 1);
	ck_assert(colo_ram_page_dirty(b2, 7));
	ck_assert_uint_eq(b1->host[7 * PAGE], 0);
	colo_ram_free(r1);
	clear_all(r2);
	guest_write(b2, 9 * PAGE, "3", 1);
	ck_assert_uint_eq(harvest(r2), 1 + echo(r2, 1));
	ck_assert(colo_ram_page_dirty(b2, 9));
	colo_ram_free(r2);
	ck_assert_int_eq(count_maps("colo-test-handback"), 0);
	ck_assert_int_eq(sigaction(SIGSEGV, NULL, &now), 0);
	ck_assert(now.sa_handler == before.sa_handler);
	check_file(fd, 7 * PAGE, "2", 1, "r2's write");
	close(fd);
}
END_TEST

/*
 * The guard pages around a shared block, and around it once unshared:
 * writes just inside work, one byte past either end kills the process
 * (a child, with SIGSEGV at its default, as in foreign_fault_default_kills).
 * _i: backend * 4 + case (bit 0: past the end, bit 1: unshared first).
 */
START_TEST(shared_guards)
{
	enum colo_dirty_mode mode = backends[_i / 4];
	bool above = _i & 1, unshared = _i & 2;
	struct colo_ram *ram;
	int fd, st;
	pid_t pid;

	if (under_valgrind())
		colo_test_skip("shared_guards: valgrind reports the child's intended fault "
			       "as an error of its own");
	ram = ram_new(mode, "shared_guards");
	fd = memfd_new("colo-test-guards", 0);

	colo_ram_free(ram);            /* the backend works: the child uses it */
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct colo_ram_block *b;
		struct sigaction sa;
		struct colo_err err;
		uint64_t n;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGSEGV, &sa, NULL);
		colo_err_clear(&err);
		if (colo_ram_new(mode, &ram, &err) ||
		    colo_ram_add_block_fd(ram, "g", 3 * PAGE, fd, &b, &err) ||
		    (unshared && colo_ram_block_unshare(b, &err)) || colo_ram_start(ram, &err))
			_exit(90);
		colo_ram_block_clear_dirty(b);
		b->host[0] = 1;
		b->host[b->length - 1] = 2;
		if (mode == COLO_DIRTY_MANUAL)
			colo_ram_mark_dirty(b, 0, b->length);
		/* pages 0 and 2; manual marked all three */
		if (colo_ram_harvest(ram, &n, &err) || n != (mode == COLO_DIRTY_MANUAL ? 3 : 2))
			_exit(91);
		*(volatile uint8_t *)(above ? b->host + b->length : b->host - 1) = 1;
		_exit(92);                      /* survived */
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "[%s] %s guard, %s: child "
		      "%s %d", colo_dirty_mode_name(mode), above ? "upper" : "lower",
		      unshared ? "unshared" : "shared",
		      WIFSIGNALED(st) ? "killed by signal" : "exited with",
		      WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	close(fd);
}
END_TEST

/* Descriptors that cannot back a block: each says what is wrong, and
 * nothing is added or left mapped. */
START_TEST(shared_bad_fd)
{
	struct colo_ram *ram = ram_new(COLO_DIRTY_MANUAL, "shared_bad_fd");
	int fd = memfd_new("colo-test-bad", MFD_ALLOW_SEALING), fds[2], closed, ro, path;
	struct colo_ram_block *b = (struct colo_ram_block *)1;
	struct colo_err err;
	int dir;

#define BAD(call, code, ...) do {						\
		colo_err_clear(&err);						\
		b = (struct colo_ram_block *)1;					\
		ck_assert_int_eq((call), -(code));				\
		ck_assert_ptr_null(b);						\
		ck_assert_msg(!strchr(err.msg, '\n'), "%s", err.msg);		\
		for (const char *want[] = { __VA_ARGS__, NULL }, **w = want; *w; w++) \
			ck_assert_msg(strstr(err.msg, *w), "\"%s\" not in: %s", *w, err.msg); \
	} while (0)

	BAD(colo_ram_add_block_fd(ram, "neg", PAGE, -1, &b, &err), EBADF,
	    "\"neg\"", "file descriptor -1", strerror(EBADF));
	closed = dup(fd);
	close(closed);
	BAD(colo_ram_add_block_fd(ram, "closed", PAGE, closed, &b, &err), EBADF,
	    "\"closed\"", strerror(EBADF));
	ck_assert_int_eq(pipe(fds), 0);
	BAD(colo_ram_add_block_fd(ram, "pipe", PAGE, fds[0], &b, &err), EINVAL,
	    "\"pipe\"", "not a regular file or a memfd");
	dir = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	BAD(colo_ram_add_block_fd(ram, "dir", PAGE, dir, &b, &err), EINVAL,
	    "not a regular file");
	ro = reopen(fd, O_RDONLY);
	BAD(colo_ram_add_block_fd(ram, "ro", PAGE, ro, &b, &err), EACCES,
	    "\"ro\"", "O_RDWR");
	path = reopen(fd, O_PATH);
	BAD(colo_ram_add_block_fd(ram, "path", PAGE, path, &b, &err), EACCES, "O_RDWR");
	ck_assert_uint_eq(file_size(fd), 0);

	/* Sealed against writing: mmap refuses, and says so. */
	ck_assert_int_eq(ftruncate(fd, 2 * PAGE), 0);
	ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), 0);
	BAD(colo_ram_add_block_fd(ram, "sealed", 2 * PAGE, fd, &b, &err), EPERM,
	    "\"sealed\"", "MAP_SHARED", strerror(EPERM));
	ck_assert_int_eq(count_maps("colo-test-bad"), 0);

	/* The rules of every block. */
	close(fd);
	fd = memfd_new("colo-test-bad", 0);
	BAD(colo_ram_add_block_fd(ram, "", PAGE, fd, &b, &err), EINVAL, "empty name");
	BAD(colo_ram_add_block_fd(ram, "zero", 0, fd, &b, &err), EINVAL, "\"zero\"");
	add(ram, "taken", PAGE);
	BAD(colo_ram_add_block_fd(ram, "taken", PAGE, fd, &b, &err), EEXIST, "already");
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ram_block_unshare(colo_ram_find(ram, "taken"), &err), -EINVAL);
	ck_assert_msg(strstr(err.msg, "\"taken\"") && strstr(err.msg, "not a shared block"),
		      "%s", err.msg);
	start(ram);
	BAD(colo_ram_add_block_fd(ram, "late", PAGE, fd, &b, &err), EBUSY, "\"late\"");
	ck_assert_uint_eq(colo_ram_nblocks(ram), 1);
	ck_assert_int_eq(count_maps("colo-test-bad"), 0);
	ck_assert_uint_eq(file_size(fd), 0);
#undef BAD
	colo_ram_free(ram);
	close(fds[0]);
	close(fds[1]);
	close(dir);
	close(ro);
	close(path);
	close(fd);
}
END_TEST

/*
 * A backend that cannot track shared mappings fails the add with a message
 * naming it (forced here: this kernel can, see add_fd), without touching
 * the probe, and leaves nothing mapped.
 */
START_TEST(shared_backend_forced_fails)
{
	enum colo_dirty_mode mode = backends[_i];
	const char *name = colo_dirty_mode_name(mode);
	int fd = memfd_new("colo-test-forced", 0);
	struct colo_ram_block *b;
	struct colo_ram *ram;
	struct colo_err err;
	char env[64], want[256];

	snprintf(env, sizeof(env), "manual,%s:shared", name);
	setenv("COLO_DIRTY_PROBE_FAIL", env, 1);
	ram = ram_new(mode, "shared_backend_forced_fails");    /* the probe passes */
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ram_add_block_fd(ram, "pc.ram", 4 * PAGE, fd, &b, &err),
			 -ENOTSUP);
	ck_assert_ptr_null(b);
	snprintf(want, sizeof(want), "RAM block \"pc.ram\": dirty tracking %s cannot track "
		 "a shared mapping of this file: forced to fail by COLO_DIRTY_PROBE_FAIL%s",
		 name, mode == COLO_DIRTY_UFFD_WP || mode == COLO_DIRTY_SOFT_DIRTY ?
		 " (try dirty-tracking=mprotect)" : "");
	ck_assert_str_eq(err.msg, want);
	ck_assert_uint_eq(colo_ram_nblocks(ram), 0);
	ck_assert_int_eq(count_maps("colo-test-forced"), 0);
	add(ram, "anon", PAGE);                 /* anonymous blocks are not affected */
	unsetenv("COLO_DIRTY_PROBE_FAIL");
	/* (soft-dirty cannot track shared blocks anyway: softdirty_shared) */
	if (mode != COLO_DIRTY_SOFT_DIRTY) {
		add_fd(ram, "pc.ram", 4 * PAGE, fd);
		ck_assert_int_eq(count_maps("colo-test-forced"), 1);
	}
	colo_ram_free(ram);
	ck_assert_int_eq(count_maps("colo-test-forced"), 0);
	close(fd);
}
END_TEST

/* colo_ram_free unmaps shared, unshared and anonymous blocks and their
 * guards, and leaves the caller's descriptors and files alone. */
START_TEST(shared_free_unmaps)
{
	enum colo_dirty_mode mode = backends[_i];
	int fda = memfd_new("colo-test-free-a", 0), fdb = memfd_new("colo-test-free-b", 0);
	int fds = count_fds();
	struct colo_ram_block *bl[3];
	unsigned char vec[1];
	struct colo_ram *ram;
	uint8_t *host[3];

	ram = ram_new(mode, "shared_free_unmaps");
	bl[0] = add_fd(ram, "a", 64 * PAGE, fda);
	bl[1] = add_fd(ram, "b", 64 * PAGE, fdb);
	bl[2] = add(ram, "c", 64 * PAGE);
	start_clean(ram);
	for (uint64_t p = 0; p < 64; p += 2)
		for (int i = 0; i < 3; i++)
			guest_write(bl[i], p * PAGE, "w", 1);
	ck_assert_int_ge(count_maps("colo-test-free-a"), 1);
	unshare_ok(bl[1]);
	ck_assert_int_eq(count_maps("colo-test-free-b"), 0);
	for (int i = 0; i < 3; i++)
		host[i] = bl[i]->host;
	colo_ram_free(ram);
	ck_assert_int_eq(count_maps("colo-test-free-a"), 0);
	ck_assert_int_eq(count_fds(), fds);
	for (int i = 0; i < 3; i++)
		for (int64_t p = -1; p <= 64; p++) {
			errno = 0;
			ck_assert_int_eq(mincore(host[i] + p * (int64_t)PAGE, PAGE, vec), -1);
			ck_assert_int_eq(errno, ENOMEM);
		}
	check_file(fda, 62 * PAGE, "w", 1, "after free");
	close(fda);
	close(fdb);
}
END_TEST

/* ---- soft-dirty ---- */

/*
 * Two colo_ram in soft-dirty mode in one process: clear_refs clears the
 * bits of both at every harvest of either, and neither may lose a write.
 * Harvests alternate which one goes first.
 */
START_TEST(softdirty_two_rams)
{
	struct colo_ram *a = ram_new(COLO_DIRTY_SOFT_DIRTY, "softdirty_two_rams");
	struct colo_ram *b = ram_new(COLO_DIRTY_SOFT_DIRTY, "softdirty_two_rams");
	struct colo_ram_block *ba = add(a, "a", 64 * PAGE);
	struct colo_ram_block *bb = add(b, "b", 64 * PAGE);

	start(a);
	start(b);
	clear_all(a);
	clear_all(b);
	for (unsigned r = 0; r < 64; r++) {
		uint64_t pa = r, pb = (r * 7 + 3) % 64, na, nb;

		ba->host[pa * PAGE] = (uint8_t)(r + 1);
		bb->host[pb * PAGE + 100] = (uint8_t)(r + 1);
		if (r % 2) {
			na = harvest(a);
			nb = harvest(b);
		} else {
			nb = harvest(b);
			na = harvest(a);
		}
		ck_assert_msg(na == 1 && colo_ram_page_dirty(ba, pa),
			      "round %u: a reported %llu pages, page %llu %s", r,
			      (unsigned long long)na, (unsigned long long)pa,
			      colo_ram_page_dirty(ba, pa) ? "among them" : "missing");
		ck_assert_msg(nb == 1 && colo_ram_page_dirty(bb, pb),
			      "round %u: b reported %llu pages, page %llu %s", r,
			      (unsigned long long)nb, (unsigned long long)pb,
			      colo_ram_page_dirty(bb, pb) ? "among them" : "missing");
		clear_all(a);
		clear_all(b);
	}
	ck_assert_uint_eq(harvest(b), 0);
	ck_assert_uint_eq(harvest(a), 0);
	colo_ram_free(a);
	ck_assert_uint_eq(harvest(b), 0);
	bb->host[5 * PAGE] = 9;
	ck_assert_uint_eq(harvest(b), 1);
	colo_ram_free(b);
}
END_TEST

/*
 * Shared blocks: a file page's soft-dirty bit does not survive the kernel
 * unmapping the page (reclaim), so the add fails saying so.  With auto,
 * a colo_ram that chose soft-dirty goes over to mprotect instead, says
 * why, and tracks both blocks.
 */
START_TEST(softdirty_shared)
{
	struct colo_ram *ram = ram_new(COLO_DIRTY_SOFT_DIRTY, "softdirty_shared");
	int fd = memfd_new("colo-test-sd", 0);
	struct colo_ram_block *b, *anon;
	struct colo_err err;
	const char *why;
	uint64_t n;
	int ret;

	colo_err_clear(&err);
	ret = colo_ram_add_block_fd(ram, "pc.ram", 4 * PAGE, fd, &b, &err);
	colo_ram_free(ram);
	if (ret == 0) {
		diag("this kernel keeps a shared page's soft-dirty bit through reclaim");
		close(fd);
		return;
	}
	ck_assert_int_eq(ret, -ENOTSUP);
	ck_assert_str_eq(err.msg, "RAM block \"pc.ram\": dirty tracking soft-dirty cannot "
			 "track a shared mapping of this file: a write was not reported once "
			 "the kernel had unmapped the page (as reclaim does) (try "
			 "dirty-tracking=mprotect)");
	ck_assert_int_eq(count_maps("colo-test-sd"), 0);

	ram = ram_new(COLO_DIRTY_AUTO, "softdirty_shared");
	if (colo_ram_tracking(ram) != COLO_DIRTY_SOFT_DIRTY) {
		diag("auto picks %s here", colo_dirty_mode_name(colo_ram_tracking(ram)));
		colo_ram_free(ram);
		close(fd);
		return;
	}
	anon = add(ram, "anon", 8 * PAGE);
	b = add_fd(ram, "pc.ram", 4 * PAGE, fd);
	ck_assert_int_eq(colo_ram_tracking(ram), COLO_DIRTY_MPROTECT);
	why = colo_ram_tracking_reason(ram);
	ck_assert_msg(strncmp(why, "mprotect: soft-dirty cannot track the shared block "
			      "\"pc.ram\" (a write was not reported once", 87) == 0 &&
		      strstr(why, "); was soft-dirty: uffd-wp unavailable ("), "%s", why);
	diag("auto: %s", why);
	start(ram);
	clear_all(ram);
	anon->host[2 * PAGE] = 1;
	b->host[PAGE + 1] = 1;
	n = harvest(ram);
	ck_assert_msg(n == 2 && colo_ram_page_dirty(anon, 2) && colo_ram_page_dirty(b, 1),
		      "%llu pages reported", (unsigned long long)n);
	colo_ram_free(ram);
	close(fd);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("ram");
	TCase *tc;

	/* One test case per backend, so the TAP line names it. */
	for (int k = 0; k < NBACKENDS; k++) {
		tc = tcase_create(colo_dirty_mode_name(backends[k]));
		tcase_add_checked_fixture(tc, reset_probe, reset_probe);
		tcase_set_timeout(tc, 30);
		tcase_add_loop_test(tc, add_block_rules, k, k + 1);
		tcase_add_loop_test(tc, start_and_idle, k, k + 1);
		tcase_add_loop_test(tc, mark_dirty_ranges, k, k + 1);
		tcase_add_loop_test(tc, single_byte_writes, k, k + 1);
		tcase_add_loop_test(tc, straddling_writes, k, k + 1);
		tcase_add_loop_test(tc, whole_block_memset, k, k + 1);
		tcase_add_loop_test(tc, multi_block, k, k + 1);
		tcase_add_loop_test(tc, four_threads, k, k + 1);
		tcase_add_loop_test(tc, writes_racing_harvest, k, k + 1);
		tcase_add_loop_test(tc, many_regions, k, k + 1);
		if (backends[k] != COLO_DIRTY_MANUAL)
			tcase_add_loop_test(tc, kernel_writes, k, k + 1);
		if (backends[k] == COLO_DIRTY_MPROTECT)
			tcase_add_test(tc, mprotect_out_of_vmas);
		tcase_add_loop_test(tc, free_releases_everything, k, k + 1);
		if (backends[k] != COLO_DIRTY_MANUAL)
			tcase_add_loop_test(tc, shared_backend_forced_fails, k, k + 1);
		if (backends[k] == COLO_DIRTY_SOFT_DIRTY) {
			/* It cannot track shared blocks (softdirty_shared). */
			tcase_add_test(tc, softdirty_two_rams);
			tcase_add_test(tc, softdirty_shared);
			suite_add_tcase(s, tc);
			continue;
		}
		/* Blocks backed by a shared file. */
		tcase_add_loop_test(tc, shared_content, k, k + 1);
		tcase_add_loop_test(tc, shared_keeps_content, k, k + 1);
		tcase_add_loop_test(tc, shared_dirty_tracking, k, k + 1);
		if (backends[k] != COLO_DIRTY_MANUAL)
			tcase_add_loop_test(tc, shared_kernel_writes, k, k + 1);
		if (backends[k] == COLO_DIRTY_UFFD_WP)
			tcase_add_test(tc, unshared_kernel_writes);
		tcase_add_loop_test(tc, shared_unshare, k, k + 1);
		tcase_add_loop_test(tc, unshare_then_new, k, k + 1);
		tcase_add_loop_test(tc, shared_guards, 4 * k, 4 * k + 4);
		tcase_add_loop_test(tc, shared_free_unmaps, k, k + 1);
		suite_add_tcase(s, tc);
	}

	tc = tcase_create("probe");
	tcase_add_checked_fixture(tc, reset_probe, reset_probe);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, mode_names);
	tcase_add_test(tc, auto_picks_best);
	tcase_add_test(tc, auto_falls_back_forced);
	tcase_add_test(tc, auto_falls_back_env);
	tcase_add_test(tc, explicit_backend_forced_fails);
	suite_add_tcase(s, tc);

	tc = tcase_create("shared-fd");
	tcase_add_checked_fixture(tc, reset_probe, reset_probe);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, shared_bad_fd);
	suite_add_tcase(s, tc);

	/* mprotect's SIGSEGV handler and faults that are not its own. */
	tc = tcase_create("sigsegv");
	tcase_add_checked_fixture(tc, reset_probe, reset_probe);
	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, foreign_fault_default_kills, 0, FAULT_COUNT);
	tcase_add_loop_test(tc, foreign_fault_chains, 0, 2 * FAULT_COUNT);
	tcase_add_test(tc, foreign_fault_inherited);
	tcase_add_test(tc, free_restores_sigsegv);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
