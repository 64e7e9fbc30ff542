/*
 * cache.h: the secondary's RAM cache (DESIGN.md §1, §5): the pages of the
 * checkpoint in flight, kept apart from the committed RAM until the whole
 * checkpoint has arrived and verified.
 *
 * A page's slot starts as a copy of the committed page (its base, which the
 * page's record is decoded against) the first time the checkpoint touches
 * it.  Commit copies every slot over the committed page; discard forgets
 * them.  The committed RAM is the guest's own memory (the blocks); the
 * slots are one growing anonymous mapping, kept across checkpoints so a
 * steady load allocates nothing.
 *
 * Output-mode compare (docs/compare.md): the guest runs on the blocks, so
 * the committed RAM is a copy of its own (the base, ram_cache_set_base):
 * slots start from the base, and commit copies each slot over the base and
 * the block both.
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
	uint8_t *pages;                  /* slots of 4 KiB, mmap'd */
	struct { uint32_t block, page; } *refs;   /* what each slot holds */
	size_t n, cap;
	uint32_t **index;                /* per block: slot + 1 of each page, or 0 */
	uint8_t **base;                  /* per block: the committed RAM; NULL:
					    the blocks themselves */
};

int ram_cache_init(struct ram_cache *c, struct colo_ram_block **blocks, size_t nblocks,
		   struct colo_err *err);
void ram_cache_free(struct ram_cache *c);
/* The block's index among the cache's blocks (the caller knows it is one). */
uint32_t ram_cache_block_index(const struct ram_cache *c, const struct colo_ram_block *b);
/* The slot of page pg of block b, made from the committed page on first use. */
uint8_t *ram_cache_slot(struct ram_cache *c, uint32_t b, uint32_t pg, struct colo_err *err);
/* Every slot over its committed page; the cache is then empty. */
void ram_cache_commit(struct ram_cache *c);
/* Committed RAM is base[b] for block b from now on (NULL: the blocks). */
void ram_cache_set_base(struct ram_cache *c, uint8_t **base);
/* Forget the slots (a checkpoint cut off). */
void ram_cache_discard(struct ram_cache *c);

#endif
