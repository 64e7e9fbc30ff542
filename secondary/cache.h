/*
 * cache.h: the secondary's RAM cache (DESIGN.md §1, §5): the pages of the
 * checkpoint in flight, kept apart from the committed RAM until the whole
 * checkpoint has arrived and verified.
 *
 * The committed RAM is the guest's own memory (the blocks), and a
 * checkpoint is decoded in place, into the blocks: the first time the
 * checkpoint touches a page, its committed content is saved in a slot (an
 * undo log), and the page's record is decoded over the page itself.
 * Commit forgets the slots: nothing is copied.  Discard (a checkpoint cut
 * off, refused, or a takeover) copies every slot back over its page, so
 * the blocks hold the committed checkpoint again; every path that drops a
 * checkpoint in flight discards before anything else reads the blocks.
 * Whoever must read the committed RAM while a checkpoint is in flight
 * (colo-ctl verify, its block hashes) calls ram_cache_swap() before and
 * after: it exchanges each touched page with its slot.  The slots are one
 * anonymous mapping with room for every page of the guest, reserved at
 * init (address space only: a slot takes memory once used, and trimming
 * gives it back), so that no checkpoint ever moves the slots (doubling a
 * mapping of 32k slots was a 100 ms copy on the loop) and a steady load
 * allocates nothing.
 *
 * Output-mode compare (docs/compare.md): the guest runs on the blocks, so
 * the committed RAM is a copy of its own (the base, ram_cache_set_base):
 * there a slot is the page in flight, starting as a copy of the base page,
 * and commit copies each slot over the base and the block both; discard
 * forgets the slots.
 *
 * The cache borrows the blocks (they belong to the node's colo_ram) and
 * the bases, and owns its slots and index.  Loop thread only.
 */
#ifndef COLO_SECONDARY_CACHE_H
#define COLO_SECONDARY_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "ram.h"

struct ram_cache {
	struct colo_ram_block **blocks;  /* borrowed, by index */
	size_t nblocks;
	uint8_t *pages;                  /* slots of 4 KiB, mmap'd: the saved
					    committed pages (no base), or the
					    pages in flight (base) */
	struct { uint32_t block, page; } *refs;   /* what each slot holds */
	size_t n, cap;                   /* slots used, and the guest's pages */
	size_t touched;                  /* slots that may hold memory: the most
					    used since the last trim */
	uint32_t **index;                /* per block: slot + 1 of each page, or 0 */
	uint8_t **base;                  /* per block: the committed RAM; NULL:
					    the blocks themselves */
};

int ram_cache_init(struct ram_cache *c, struct colo_ram_block **blocks, size_t nblocks,
		   struct colo_err *err);
void ram_cache_free(struct ram_cache *c);
/* The block's index among the cache's blocks (the caller knows it is one). */
uint32_t ram_cache_block_index(const struct ram_cache *c, const struct colo_ram_block *b);
/* Where page pg of block b of the checkpoint in flight is decoded: the page
 * itself, its committed content saved on first use (no base); or its slot,
 * made from the base page on first use (base). */
uint8_t *ram_cache_slot(struct ram_cache *c, uint32_t b, uint32_t pg, struct colo_err *err);
/* The checkpoint in flight is committed; the cache is then empty. */
void ram_cache_commit(struct ram_cache *c);
/* Committed RAM is base[b] for block b from now on (NULL: the blocks). */
void ram_cache_set_base(struct ram_cache *c, uint8_t **base);
/* The checkpoint in flight is dropped: the committed RAM is as it was. */
void ram_cache_discard(struct ram_cache *c);
/* No base: exchange each page the checkpoint in flight touched with its
 * saved committed content (twice: back as it was).  With a base: nothing
 * (the base is the committed RAM already). */
void ram_cache_swap(struct ram_cache *c);

#endif
