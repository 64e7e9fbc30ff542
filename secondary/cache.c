/* cache.c: the secondary's RAM cache (see cache.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cache.h"
#include "ramfmt.h"

#define PAGE COLO_PAGE_SIZE

int ram_cache_init(struct ram_cache *c, struct colo_ram_block **blocks, size_t nblocks,
		   struct colo_err *err)
{
	size_t total = 0;

	memset(c, 0, sizeof(*c));
	c->blocks = blocks;
	c->nblocks = nblocks;
	c->index = calloc(nblocks ? nblocks : 1, sizeof(*c->index));
	if (!c->index)
		return colo_err_set(err, ENOMEM, "out of memory");
	for (size_t b = 0; b < nblocks; b++) {
		c->index[b] = calloc(blocks[b]->npages ? blocks[b]->npages : 1,
				     sizeof(uint32_t));
		if (!c->index[b])
			return colo_err_set(err, ENOMEM, "out of memory");
		total += blocks[b]->npages;
	}
	if (total == 0)
		return 0;
	/* A page is saved at most once per checkpoint: a slot for each. */
	c->pages = mmap(NULL, total * PAGE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	c->refs = calloc(total, sizeof(*c->refs));
	if (c->pages == MAP_FAILED || !c->refs) {
		if (c->pages == MAP_FAILED)
			c->pages = NULL;
		return colo_err_set(err, ENOMEM, "RAM cache: cannot reserve %zu pages", total);
	}
	c->cap = total;
	return 0;
}

void ram_cache_free(struct ram_cache *c)
{
	for (size_t b = 0; c->index && b < c->nblocks; b++)
		free(c->index[b]);
	free(c->index);
	free(c->refs);
	if (c->pages)
		munmap(c->pages, c->cap * PAGE);
	memset(c, 0, sizeof(*c));
}

uint32_t ram_cache_block_index(const struct ram_cache *c, const struct colo_ram_block *b)
{
	for (size_t i = 0; i < c->nblocks; i++)
		if (c->blocks[i] == b)
			return (uint32_t)i;
	return 0;
}

uint8_t *ram_cache_slot(struct ram_cache *c, uint32_t b, uint32_t pg, struct colo_err *err)
{
	uint32_t k = c->index[b][pg];
	uint8_t *page = c->blocks[b]->host + (size_t)pg * PAGE;

	if (k)
		return c->base ? c->pages + (size_t)(k - 1) * PAGE : page;
	if (c->n == c->cap) {        /* cannot be: each page has a slot */
		colo_err_set(err, ENOMEM, "RAM cache: all %zu slots used", c->cap);
		return NULL;
	}
	k = (uint32_t)c->n + 1;
	c->refs[c->n].block = b;
	c->refs[c->n].page = pg;
	memcpy(c->pages + c->n * PAGE, c->base ? c->base[b] + (size_t)pg * PAGE : page, PAGE);
	c->n++;
	if (c->n > c->touched)
		c->touched = c->n;
	c->index[b][pg] = k;
	return c->base ? c->pages + (size_t)(k - 1) * PAGE : page;
}

/*
 * The checkpoint is over and used n slots.  Slots above what it and the
 * next one are likely to need (twice n, at least 1024) go back to the
 * kernel: one big checkpoint (the first after a sync, say) must not keep
 * the secondary's memory up for good.  The mapping stays.  At most
 * TRIM_STEP slots a commit, from the top: giving back the 55k slots the
 * first checkpoint of a 256 MiB guest had left took one commit 92 ms of
 * the loop on a paravirtual host; the next commits give back the rest.
 */
#define TRIM_STEP 2048

static void trim(struct ram_cache *c, size_t n)
{
	size_t keep = n * 2 > 1024 ? n * 2 : 1024;

	if (c->touched > keep) {
		size_t from = c->touched - keep > TRIM_STEP ? c->touched - TRIM_STEP : keep;

		madvise(c->pages + from * PAGE, (c->touched - from) * PAGE, MADV_DONTNEED);
		c->touched = from;
	}
}

void ram_cache_commit(struct ram_cache *c)
{
	size_t used = c->n;

	for (size_t i = 0; i < c->n; i++) {
		struct colo_ram_block *b = c->blocks[c->refs[i].block];
		size_t off = (size_t)c->refs[i].page * PAGE;

		if (c->base) {
			memcpy(c->base[c->refs[i].block] + off, c->pages + i * PAGE, PAGE);
			memcpy(b->host + off, c->pages + i * PAGE, PAGE);
		}
		c->index[c->refs[i].block][c->refs[i].page] = 0;
	}
	c->n = 0;
	trim(c, used);
}

void ram_cache_set_base(struct ram_cache *c, uint8_t **base)
{
	/* The two modes keep different things in the slots: none may be in
	 * use across the change (it comes between checkpoints anyway). */
	ram_cache_discard(c);
	c->base = base;
}

void ram_cache_discard(struct ram_cache *c)
{
	size_t used = c->n;

	for (size_t i = 0; i < c->n; i++) {
		struct colo_ram_block *b = c->blocks[c->refs[i].block];

		if (!c->base)
			memcpy(b->host + (size_t)c->refs[i].page * PAGE, c->pages + i * PAGE,
			       PAGE);
		c->index[c->refs[i].block][c->refs[i].page] = 0;
	}
	c->n = 0;
	trim(c, used);
}

void ram_cache_swap(struct ram_cache *c)
{
	uint8_t tmp[PAGE];

	if (c->base)
		return;
	for (size_t i = 0; i < c->n; i++) {
		uint8_t *page = c->blocks[c->refs[i].block]->host +
			(size_t)c->refs[i].page * PAGE;
		uint8_t *slot = c->pages + i * PAGE;

		memcpy(tmp, page, PAGE);
		memcpy(page, slot, PAGE);
		memcpy(slot, tmp, PAGE);
	}
}
