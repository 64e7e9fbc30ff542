/*
 * kvstore.h: the kv guest's data, entirely inside one RAM region.
 *
 * A string key-value store (keys and values are byte strings) whose hash
 * table, entries and free lists all live in a caller-given region of guest
 * RAM, linked by offsets from the region's start, never by pointers: the
 * secondary maps its copy of the region at another address and the store
 * is valid there unchanged.  What is not in the region is the small
 * metadata struct (table position and size, key count, allocator heads),
 * saved as the vmstate device "kv" (colo_kv_meta_vmstate); RAM + meta,
 * captured together while the guest is paused, are the whole state.
 *
 * Offsets are u64 and 0 means "none" (the region's first bytes are never
 * handed out).  Everything on the wire is fixed-width little-endian as laid
 * out in RAM on x86-64; the layout (kvstore.c's opening comment) is part of
 * the guest's version.  The region needs no alignment.
 *
 * Allocation: size classes (powers of two from 32 bytes) with a free list
 * each, and a bump pointer for memory never used yet; a request that fits
 * nowhere fails with -ENOMEM and changes nothing.  The table doubles when
 * keys outnumber buckets (one rehash, inside the command that crossed the
 * line).  Hashing: XXH3-64 seeded with meta->seed.
 *
 * Not thread-safe: one thread (the kv guest's) uses a store at a time.
 * Pointers returned into the region (colo_kv_get) are valid until the next
 * call that changes the store.
 */
#ifndef COLO_KVSTORE_H
#define COLO_KVSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "vmstate.h"

#define COLO_KV_CLASSES 48           /* 32 B << 0 .. 47 */
#define COLO_KV_MIN_REGION (64u << 10)

/* The vmstate device "kv" (version 1). */
struct colo_kv_meta {
	uint64_t region_size;            /* bytes of the region it was built in */
	uint64_t seed;                   /* hash seed */
	uint64_t table_off;              /* bucket array: table_size u64 heads */
	uint64_t table_size;             /* buckets, a power of two */
	uint64_t count;                  /* keys */
	uint64_t heap_top;               /* first byte never allocated */
	uint64_t used;                   /* bytes in allocated blocks */
	uint64_t writes;                 /* changing commands applied, ever */
	uint64_t free_head[COLO_KV_CLASSES];
};

extern const struct colo_vmstate_desc colo_kv_meta_vmstate;

struct colo_kvstore {
	uint8_t *base;                   /* the region */
	uint64_t size;
	struct colo_kv_meta *m;          /* the device state (caller's memory) */
	/* colo_kv_track(); NULL: nobody is told */
	void (*mark)(void *ud, uint64_t off, uint64_t len);
	void *mark_ud;
};

/* Build an empty store in region [base, base+size) (zeroed or not).
 * Format and open leave no mark hook set. */
int colo_kv_format(struct colo_kvstore *kv, void *base, uint64_t size,
		   struct colo_kv_meta *meta, uint64_t seed, struct colo_err *err);
/*
 * Adopt a store whose region and meta were loaded (from a sync or a
 * checkpoint): checks that meta fits the region (sizes, offsets in range,
 * table size a power of two) so that no later call can reach outside it.
 */
int colo_kv_open(struct colo_kvstore *kv, void *base, uint64_t size,
		 struct colo_kv_meta *meta, struct colo_err *err);
/*
 * From now on every byte range of the region a call writes is handed to
 * fn(ud, offset, length) before the call returns (a guest tracking its own
 * dirty pages, dirty-tracking manual); fn NULL stops it.  Nothing but the
 * calls of this file writes the region.
 */
void colo_kv_track(struct colo_kvstore *kv, void (*fn)(void *ud, uint64_t off,
							uint64_t len), void *ud);

/* 1 and the value (pointer into the region) if the key exists, else 0. */
int colo_kv_get(struct colo_kvstore *kv, const void *key, size_t klen,
		const uint8_t **val, uint64_t *vlen);

enum {
	COLO_KV_NX = 1,                  /* only if the key does not exist */
	COLO_KV_XX = 2,                  /* only if it exists */
};
/* 1 set, 0 not set (NX/XX said no), -ENOMEM (store unchanged). */
int colo_kv_set(struct colo_kvstore *kv, const void *key, size_t klen,
		const void *val, size_t vlen, int flags);
/* 1 deleted, 0 no such key. */
int colo_kv_del(struct colo_kvstore *kv, const void *key, size_t klen);
/* Append; *newlen = the value's length after.  0 or -ENOMEM. */
int colo_kv_append(struct colo_kvstore *kv, const void *key, size_t klen,
		   const void *val, size_t vlen, uint64_t *newlen);
/*
 * Add `by` to the key's value read as a decimal int64 (a missing key is 0)
 * and store the result as decimal text.  0 and *out, or -EINVAL (the value
 * is not an integer in Redis's sense: optional '-', digits, no spaces or
 * leading zeros, fits int64), -ERANGE (the sum overflows), -ENOMEM.
 */
int colo_kv_incrby(struct colo_kvstore *kv, const void *key, size_t klen, int64_t by,
		   int64_t *out);
uint64_t colo_kv_count(const struct colo_kvstore *kv);
/* Remove every key (the region is reformatted with the same seed). */
void colo_kv_flush(struct colo_kvstore *kv);

/*
 * SCAN: visit about `count` buckets from `cursor` (at least one, and on past
 * empty buckets until one held a key or the walk ends), calling fn for each
 * key that matches `pattern` (Redis glob; NULL or "*" = all keys, the empty
 * one too, as Redis's SCAN and KEYS special-case "*"); returns the next
 * cursor, 0 when the walk is complete.  Redis's reverse-binary cursor: a
 * key present for the whole walk is visited at least once even if the
 * table grows between calls, exactly once if it does not.  Any cursor
 * value is safe.  fn must not change the store.
 */
typedef void (*colo_kv_visit_fn)(void *ud, const uint8_t *key, uint64_t klen);
uint64_t colo_kv_scan(struct colo_kvstore *kv, uint64_t cursor, const void *pattern,
		      size_t plen, uint64_t count, colo_kv_visit_fn fn, void *ud);

/*
 * Redis's glob (stringmatchlen): * ? [abc] [^a] [a-z] \x; nocase false.
 * Exactly Redis's answers, quirks included: "*" does not match the empty
 * string (callers that mean "all keys" test for "*" themselves, as Redis
 * does), an unclosed "[abc" is a set, ranges compare bytes as signed char.
 */
bool colo_glob_match(const void *pattern, size_t plen, const void *str, size_t slen);

/*
 * Walk the whole store and check it: every offset in range and aligned,
 * every chain's keys hash to their bucket, key count and used bytes add up,
 * free lists acyclic and inside the heap, every heap byte in exactly one
 * block.  0, or -EINVAL with what is wrong in err ("kv: bucket 17: entry
 * at offset 0x1f40 hashes to bucket 3"); -ENOMEM if it cannot allocate its
 * bitmap (one bit per 32 heap bytes).
 */
int colo_kv_check(const struct colo_kvstore *kv, struct colo_err *err);

#endif
