/*
 * image_int.h: what image.c (blocks, devices, saving, copies) and
 * image_load.c (reading streams) share and nothing outside them uses.
 * Not thread-safe, like the image.
 */
#ifndef COLO_IMAGE_INT_H
#define COLO_IMAGE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "image.h"

/* Words of a block's touched bitmap: one bit per page. */
static inline size_t colo__image_bitmap_words(uint64_t length)
{
	return (size_t)((length / COLO_PAGE_SIZE + 63) / 64);
}

static inline void colo__image_mark_touched(struct colo_image_block *b, uint64_t page)
{
	b->touched[page / 64] |= 1ull << (page % 64);
}

/* A block of `length` zero bytes (mmap'd) with its bitmap; b is overwritten. */
int colo__image_block_alloc(struct colo_image_block *b, const char *name, uint64_t length,
			    struct colo_err *err);
/* A new, zeroed device at the end of img->devs; NULL when out of memory. */
struct colo_image_device *colo__image_add_device(struct colo_image *img,
						 struct colo_err *err);
/* Index of the device in img->devs, or -1. */
int colo__image_find_device(const struct colo_image *img, const char *idstr,
			    uint32_t instance_id);

#endif
