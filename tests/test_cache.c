/*
 * test_cache.c: the secondary's RAM cache (secondary/cache.h).  A
 * checkpoint is decoded in place into the blocks, with each touched page's
 * committed content saved first: commit keeps what was written, discard
 * brings back exactly the committed pages, a swap shows the committed RAM
 * and a second swap the checkpoint in flight again.  With a base (compare
 * mode) the pages in flight live in slots and commit copies them over the
 * base and the block both.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "ram.h"
#include "ramfmt.h"
#include "testutil.h"

#define PAGE COLO_PAGE_SIZE
#define NPAGES 8000                 /* a checkpoint of half of them: past the
				       1024 slots trimming keeps, and more
				       than a commit gives back */

struct rig {
	struct colo_ram *ram;
	struct colo_ram_block *b;
	struct ram_cache c;
	uint8_t *committed;             /* what the block held at the start */
};

static void rig_init(struct rig *r)
{
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(colo_ram_new(COLO_DIRTY_MANUAL, &r->ram, &err) == 0, "%s", err.msg);
	ck_assert_msg(colo_ram_add_block(r->ram, "blk", (uint64_t)NPAGES * PAGE, &r->b,
					 &err) == 0, "%s", err.msg);
	for (size_t i = 0; i < (size_t)NPAGES * PAGE; i++)
		r->b->host[i] = (uint8_t)(i * 7 + i / PAGE);
	r->committed = malloc((size_t)NPAGES * PAGE);
	ck_assert_ptr_nonnull(r->committed);
	memcpy(r->committed, r->b->host, (size_t)NPAGES * PAGE);
	ck_assert_msg(ram_cache_init(&r->c, &r->b, 1, &err) == 0, "%s", err.msg);
}

static void rig_free(struct rig *r)
{
	ram_cache_free(&r->c);
	colo_ram_free(r->ram);
	free(r->committed);
}

/* Every other page, twice each (a page met again in one checkpoint). */
static void write_checkpoint(struct rig *r, uint8_t fill)
{
	struct colo_err err;

	colo_err_clear(&err);
	for (int round = 0; round < 2; round++)
		for (uint32_t pg = 0; pg < NPAGES; pg += 2) {
			uint8_t *p = ram_cache_slot(&r->c, 0, pg, &err);

			ck_assert_msg(p != NULL, "%s", err.msg);
			p[round] ^= fill;
		}
}

static bool block_is_committed(const struct rig *r)
{
	return memcmp(r->b->host, r->committed, (size_t)NPAGES * PAGE) == 0;
}

START_TEST(in_place_commit_discard_swap)
{
	struct rig r;

	rig_init(&r);
	write_checkpoint(&r, 0x5a);
	/* In place: the block shows the checkpoint in flight. */
	ck_assert_uint_eq(r.b->host[0], r.committed[0] ^ 0x5a);
	ck_assert_uint_eq(r.b->host[1], r.committed[1] ^ 0x5a);
	ck_assert_uint_eq(r.b->host[PAGE], r.committed[PAGE]);
	/* A swap shows the committed RAM; a second, the checkpoint again. */
	ram_cache_swap(&r.c);
	ck_assert(block_is_committed(&r));
	ram_cache_swap(&r.c);
	ck_assert_uint_eq(r.b->host[2 * PAGE], r.committed[2 * PAGE] ^ 0x5a);
	/* Discard: exactly the committed pages again. */
	ram_cache_discard(&r.c);
	ck_assert(block_is_committed(&r));
	/* Commit keeps what was written and empties the log: a discard
	 * after it changes nothing. */
	write_checkpoint(&r, 0x33);
	ram_cache_commit(&r.c);
	for (uint32_t pg = 0; pg < NPAGES; pg += 2) {
		r.committed[(size_t)pg * PAGE] ^= 0x33;
		r.committed[(size_t)pg * PAGE + 1] ^= 0x33;
	}
	ck_assert(block_is_committed(&r));
	ram_cache_discard(&r.c);
	ck_assert(block_is_committed(&r));
	/* The next checkpoint saves the new committed content. */
	write_checkpoint(&r, 0x0f);
	ram_cache_discard(&r.c);
	ck_assert(block_is_committed(&r));
	rig_free(&r);
}
END_TEST

/* After a big checkpoint, the slots small ones do not need go back to the
 * kernel, 2048 from the top at each (one commit giving back a big one's
 * all at once held the loop for 92 ms); a big one after that still works. */
START_TEST(trimmed_slots_still_work)
{
	struct rig r;
	struct colo_err err;

	rig_init(&r);
	colo_err_clear(&err);
	write_checkpoint(&r, 0x01);
	ram_cache_discard(&r.c);
	ck_assert_uint_eq(r.c.touched, NPAGES / 2);
	ck_assert_uint_eq(colo_test_resident(r.c.pages, NPAGES / 2), NPAGES / 2);
	for (int k = 0; k < 2; k++) {
		for (uint32_t pg = 0; pg < 10; pg++)
			ram_cache_slot(&r.c, 0, pg, &err)[7] ^= 0x40;
		ram_cache_discard(&r.c);
		ck_assert(block_is_committed(&r));
		if (k == 0)
			ck_assert_uint_eq(r.c.touched, NPAGES / 2 - 2048);
	}
	ck_assert_uint_eq(r.c.touched, 1024);
	ck_assert_uint_eq(colo_test_resident(r.c.pages + 1024 * PAGE,
					     NPAGES / 2 - 1024), 0);
	ck_assert_uint_eq(colo_test_resident(r.c.pages, 1024), 1024);
	write_checkpoint(&r, 0x02);
	ram_cache_discard(&r.c);
	ck_assert(block_is_committed(&r));
	rig_free(&r);
}
END_TEST

/* Every page of the guest in one checkpoint: a slot each, reserved at
 * init, so the slots never move (no copy on the loop) and all of it
 * discards back exactly. */
START_TEST(a_slot_for_every_page_reserved)
{
	struct rig r;
	struct colo_err err;
	uint8_t *pages;

	rig_init(&r);
	colo_err_clear(&err);
	ck_assert_uint_eq(r.c.cap, NPAGES);
	pages = r.c.pages;
	for (uint32_t pg = 0; pg < NPAGES; pg++) {
		uint8_t *p = ram_cache_slot(&r.c, 0, pg, &err);

		ck_assert_msg(p != NULL, "page %u: %s", pg, err.msg);
		p[pg % PAGE] ^= 0xa5;
	}
	ck_assert_ptr_eq(r.c.pages, pages);
	ck_assert_uint_eq(r.c.n, NPAGES);
	ram_cache_discard(&r.c);
	ck_assert(block_is_committed(&r));
	rig_free(&r);
}
END_TEST

START_TEST(with_a_base)
{
	struct rig r;
	uint8_t *base, *bases[1];
	uint8_t *p;
	struct colo_err err;

	rig_init(&r);
	base = malloc((size_t)NPAGES * PAGE);
	ck_assert_ptr_nonnull(base);
	memcpy(base, r.committed, (size_t)NPAGES * PAGE);
	bases[0] = base;
	ram_cache_set_base(&r.c, bases);
	/* The guest ran ahead on the block: the checkpoint decodes from the
	 * base, apart from both. */
	r.b->host[5 * PAGE] = 0xee;
	colo_err_clear(&err);
	p = ram_cache_slot(&r.c, 0, 5, &err);
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_ne(p, r.b->host + 5 * PAGE);
	ck_assert_uint_eq(p[0], r.committed[5 * PAGE]);
	p[0] ^= 0x11;
	ck_assert_uint_eq(base[5 * PAGE], r.committed[5 * PAGE]);
	/* Swapping does nothing here: the base is the committed RAM. */
	ram_cache_swap(&r.c);
	ck_assert_uint_eq(r.b->host[5 * PAGE], 0xee);
	ram_cache_commit(&r.c);
	ck_assert_uint_eq(base[5 * PAGE], r.committed[5 * PAGE] ^ 0x11);
	ck_assert_uint_eq(r.b->host[5 * PAGE], r.committed[5 * PAGE] ^ 0x11);
	/* Discard forgets the slot and leaves base and block alone. */
	p = ram_cache_slot(&r.c, 0, 6, &err);
	p[0] ^= 0x22;
	ram_cache_discard(&r.c);
	ck_assert_uint_eq(base[6 * PAGE], r.committed[6 * PAGE]);
	ck_assert_uint_eq(r.b->host[6 * PAGE], r.committed[6 * PAGE]);
	rig_free(&r);
	free(base);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cache");
	TCase *tc = tcase_create("cache");

	tcase_add_test(tc, in_place_commit_discard_swap);
	tcase_add_test(tc, trimmed_slots_still_work);
	tcase_add_test(tc, a_slot_for_every_page_reserved);
	tcase_add_test(tc, with_a_base);
	suite_add_tcase(s, tc);
	return colo_test_main(s);
}
