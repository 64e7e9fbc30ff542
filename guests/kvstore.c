/*
 * kvstore.c: see kvstore.h.
 *
 * Region layout (offsets from the region's start; u64 fields in host order,
 * little-endian on x86-64):
 *
 *   0 .. 63     header: the magic "colokv01", then zeros.  Offset 0 is never
 *               a block, so it can mean "none".
 *   64 ..       the heap: blocks of 32 << class bytes, 32-aligned, carved at
 *               heap_top or taken from the class's free list.  Blocks are
 *               never merged, so the table, the entries and the free blocks
 *               tile [64, heap_top) exactly (colo_kv_check relies on it).
 *
 * A block is one of:
 *   the bucket array  table_size u64 chain heads, no header (its class
 *                     follows from table_size, a power of two >= 4);
 *   an entry          u64 tag (TAG_ENTRY | class), u64 next, u64 hash,
 *                     u64 klen, u64 vlen, key bytes, value bytes;
 *   free              u64 tag (TAG_FREE | class), u64 next free block.
 *
 * Allocation takes the class's free list first, then fresh memory at
 * heap_top, then splits the smallest larger free block (the pieces go to
 * the lists of the classes below it).  Every command needs at most one
 * allocation that can fail, taken before anything is written, so -ENOMEM
 * leaves the store as it was; table growth comes after the command's own
 * allocation and is skipped when memory is short.
 *
 * Trust.  colo_kv_open() checks the meta against the region, and nothing
 * here ever stores an out-of-range value into the meta, so meta fields can
 * be used as they are.  Region bytes are never trusted: an offset read from
 * the region is checked (inside the heap, aligned, tagged, class and
 * lengths inside the block) before it is followed, a bad one ends its chain
 * as a 0 would, and a chain walk stops after count + 1 entries (a cycle).
 * A corrupted region loses keys; it never makes a call touch memory outside
 * the region or loop forever, and it never leaves a meta that open() would
 * refuse (so a secondary can always adopt what it was sent; counters that
 * corruption made drift are clamped).  colo_kv_check() says what is wrong.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "kvstore.h"

#define KV_MAGIC "colokv01"
#define KV_HEAP 64u                     /* the first block's offset */
#define BLK_MIN 32u                     /* class 0 */
#define TABLE_MIN 4u                    /* buckets in a class-0 block */
#define TABLE_INIT 1024u

#define TAG_CLASS UINT64_C(0xff)
#define TAG_ENTRY UINT64_C(0x6b76656e74727900) /* "kventry" above the class byte */
#define TAG_FREE UINT64_C(0x6b76667265650000)

/* Entry fields. */
#define E_TAG 0
#define E_NEXT 8
#define E_HASH 16
#define E_KLEN 24
#define E_VLEN 32
#define E_HDR 40
/* The smallest entry block: every entry has a 40-byte header. */
#define E_MIN 64u
/* Free block fields. */
#define F_NEXT 8

struct ent {
	uint64_t off;
	uint64_t next;
	uint64_t hash;
	uint64_t klen;
	uint64_t vlen;
	unsigned cls;
};

/* ---- region access ---- */

static inline uint64_t ld(const struct colo_kvstore *kv, uint64_t off)
{
	uint64_t v;

	memcpy(&v, kv->base + off, sizeof(v));
	return v;
}

/* Every write of the region goes through wrote() (colo_kv_track). */
static inline void wrote(struct colo_kvstore *kv, uint64_t off, uint64_t n)
{
	if (kv->mark && n)
		kv->mark(kv->mark_ud, off, n);
}

static inline void st(struct colo_kvstore *kv, uint64_t off, uint64_t v)
{
	memcpy(kv->base + off, &v, sizeof(v));
	wrote(kv, off, sizeof(v));
}

static inline void zero(struct colo_kvstore *kv, uint64_t off, uint64_t n)
{
	memset(kv->base + off, 0, n);
	wrote(kv, off, n);
}

/* memmove that accepts NULL when n is 0 and skips bytes already there
 * (APPEND in place passes the old value as its own first part). */
static inline void put_bytes(struct colo_kvstore *kv, uint64_t off, const void *p, uint64_t n)
{
	if (n && kv->base + off != (const uint8_t *)p) {
		memmove(kv->base + off, p, n);
		wrote(kv, off, n);
	}
}

static inline uint64_t blk_size(unsigned c)
{
	return (uint64_t)BLK_MIN << c;
}

/* The smallest class holding `need` bytes; COLO_KV_CLASSES if none. */
static unsigned class_for(uint64_t need)
{
	unsigned c = 0;

	while (c < COLO_KV_CLASSES && blk_size(c) < need)
		c++;
	return c;
}

/* Is [off, off + block of class c) a possible block below top? */
static bool blk_ok(uint64_t top, uint64_t off, unsigned c)
{
	return c < COLO_KV_CLASSES && off >= KV_HEAP && off % BLK_MIN == 0 && off <= top &&
	       blk_size(c) <= top - off;
}

static uint64_t key_hash(const struct colo_kv_meta *m, const void *key, size_t klen)
{
	return XXH3_64bits_withSeed(klen ? key : "", klen, m->seed);
}

static uint64_t table_slot(const struct colo_kvstore *kv, uint64_t h)
{
	return kv->m->table_off + (h & (kv->m->table_size - 1)) * 8;
}

/* Chain walks stop after this many entries: more means a cycle. */
static uint64_t walk_max(const struct colo_kvstore *kv)
{
	return kv->m->count + 1;
}

/* Read the entry at off; NULL, or why it is not one. */
static const char *ent_load(const struct colo_kvstore *kv, uint64_t off, struct ent *e)
{
	uint64_t top = kv->m->heap_top, tag, room;

	if (off < KV_HEAP || off % BLK_MIN || off > top || top - off < E_MIN)
		return "is not a block inside the heap";
	tag = ld(kv, off + E_TAG);
	if ((tag & ~TAG_CLASS) != TAG_ENTRY)
		return "has no entry tag";
	e->cls = (unsigned)(tag & TAG_CLASS);
	if (!blk_ok(top, off, e->cls) || blk_size(e->cls) < E_MIN)
		return "has a block class that does not fit the heap";
	e->off = off;
	e->next = ld(kv, off + E_NEXT);
	e->hash = ld(kv, off + E_HASH);
	e->klen = ld(kv, off + E_KLEN);
	e->vlen = ld(kv, off + E_VLEN);
	room = blk_size(e->cls) - E_HDR;
	if (e->klen > room || e->vlen > room - e->klen)
		return "has key and value longer than its block";
	return NULL;
}

static inline const uint8_t *ent_key(const struct colo_kvstore *kv, const struct ent *e)
{
	return kv->base + e->off + E_HDR;
}

static inline const uint8_t *ent_val(const struct colo_kvstore *kv, const struct ent *e)
{
	return kv->base + e->off + E_HDR + e->klen;
}

/*
 * Find key (hash h).  true with the entry and `link`, the offset of the
 * u64 that points to it (its table slot or the previous entry's next).
 */
static bool find(const struct colo_kvstore *kv, const void *key, size_t klen, uint64_t h,
		 struct ent *e, uint64_t *link)
{
	uint64_t at = table_slot(kv, h);
	uint64_t cur = ld(kv, at);

	for (uint64_t n = walk_max(kv); cur && n; n--) {
		if (ent_load(kv, cur, e))
			break;
		if (e->hash == h && e->klen == klen &&
		    (klen == 0 || memcmp(ent_key(kv, e), key, klen) == 0)) {
			*link = at;
			return true;
		}
		at = cur + E_NEXT;
		cur = e->next;
	}
	return false;
}

/* ---- allocator ---- */

/* Pop class c's free list; 0 when it is empty (or its head is bad). */
static uint64_t pop_free(struct colo_kvstore *kv, unsigned c)
{
	struct colo_kv_meta *m = kv->m;
	uint64_t off = m->free_head[c], next;

	if (!off || !blk_ok(m->heap_top, off, c) || ld(kv, off) != (TAG_FREE | c))
		return 0;
	next = ld(kv, off + F_NEXT);
	/* The meta only ever holds offsets open() would accept; a block that
	 * names itself would be handed out forever. */
	m->free_head[c] = next != off && blk_ok(m->heap_top, next, c) ? next : 0;
	return off;
}

static void push_free(struct colo_kvstore *kv, uint64_t off, unsigned c)
{
	st(kv, off, TAG_FREE | c);
	st(kv, off + F_NEXT, kv->m->free_head[c]);
	kv->m->free_head[c] = off;
}

/* A block of class c, or 0 (nothing changed). */
static uint64_t blk_alloc(struct colo_kvstore *kv, unsigned c)
{
	struct colo_kv_meta *m = kv->m;
	uint64_t off;

	if (c >= COLO_KV_CLASSES)
		return 0;
	off = pop_free(kv, c);
	if (!off && blk_size(c) <= kv->size - m->heap_top) {
		off = m->heap_top;
		m->heap_top += blk_size(c);
	}
	for (unsigned k = c + 1; !off && k < COLO_KV_CLASSES; k++) {
		if (!(off = pop_free(kv, k)))
			continue;
		/* Keep the first 32 << c bytes; the rest is one block of each
		 * class from c to k - 1, the one of class j at off + 32 << j. */
		for (unsigned j = k; j-- > c;)
			push_free(kv, off + blk_size(j), j);
	}
	if (off)
		m->used += blk_size(c);
	return off;
}

static void blk_free(struct colo_kvstore *kv, uint64_t off, unsigned c)
{
	struct colo_kv_meta *m = kv->m;

	push_free(kv, off, c);
	m->used = m->used >= blk_size(c) ? m->used - blk_size(c) : 0;
}

/* Only a corrupted region (a bad class freed, a key inserted twice) can
 * push the counters out of what open() accepts: hold them there. */
static void counters_clamp(struct colo_kv_meta *m)
{
	uint64_t heap = m->heap_top - KV_HEAP;

	if (m->count > heap / E_MIN)
		m->count = heap / E_MIN;
	if (m->used > heap)
		m->used = heap;
	if (m->used < m->table_size * 8)
		m->used = m->table_size * 8;
}

/* ---- entries ---- */

/* The class of an entry of these lengths; COLO_KV_CLASSES if none fits. */
static unsigned ent_class(const struct colo_kvstore *kv, uint64_t klen, uint64_t vlen)
{
	if (klen > kv->size || vlen > kv->size - klen)
		return COLO_KV_CLASSES;
	return class_for(E_HDR + klen + vlen);
}

/* Write a whole entry whose value is v1 followed by v2 (either may lie in
 * the region: nothing but the new block is written). */
static void ent_write(struct colo_kvstore *kv, uint64_t off, unsigned c, uint64_t next,
		      uint64_t h, const void *key, uint64_t klen, const void *v1,
		      uint64_t l1, const void *v2, uint64_t l2)
{
	st(kv, off + E_TAG, TAG_ENTRY | c);
	st(kv, off + E_NEXT, next);
	st(kv, off + E_HASH, h);
	st(kv, off + E_KLEN, klen);
	st(kv, off + E_VLEN, l1 + l2);
	put_bytes(kv, off + E_HDR, key, klen);
	put_bytes(kv, off + E_HDR + klen, v1, l1);
	put_bytes(kv, off + E_HDR + klen + l1, v2, l2);
}

/* Replace entry e (pointed to from link) by one in a new block of class c
 * with the same key and value v1 + v2; false (nothing changed) on ENOMEM. */
static bool ent_move(struct colo_kvstore *kv, const struct ent *e, uint64_t link, unsigned c,
		     const void *v1, uint64_t l1, const void *v2, uint64_t l2)
{
	uint64_t nb = blk_alloc(kv, c);

	if (!nb)
		return false;
	ent_write(kv, nb, c, e->next, e->hash, ent_key(kv, e), e->klen, v1, l1, v2, l2);
	st(kv, link, nb);
	blk_free(kv, e->off, e->cls);
	return true;
}

/* Double the table when keys outnumber buckets, if memory allows. */
static void maybe_grow(struct colo_kvstore *kv)
{
	struct colo_kv_meta *m = kv->m;
	uint64_t size = m->table_size, nsize, nt, budget = m->count;

	if (m->count <= size || size > kv->size / 16)
		return;
	nsize = size * 2;
	if (!(nt = blk_alloc(kv, class_for(nsize * 8))))
		return;
	zero(kv, nt, nsize * 8);
	for (uint64_t b = 0; b < size; b++) {
		uint64_t cur = ld(kv, m->table_off + b * 8);
		struct ent e;

		for (; cur && budget && !ent_load(kv, cur, &e); budget--) {
			uint64_t slot = nt + (e.hash & (nsize - 1)) * 8;

			st(kv, cur + E_NEXT, ld(kv, slot));
			st(kv, slot, cur);
			cur = e.next;
		}
	}
	blk_free(kv, m->table_off, class_for(size * 8));
	m->table_off = nt;
	m->table_size = nsize;
}

/*
 * Make key's value v1 + v2 (found: e and link from find()); 1, or -ENOMEM
 * with nothing changed.  An entry is rewritten in place when the value fits
 * its block, unless the block is four or more times the one it needs and
 * a smaller block can be had (so a key that once held a big value does not
 * keep its block forever).
 */
static int put(struct colo_kvstore *kv, const void *key, size_t klen, uint64_t h, bool found,
	       const struct ent *e, uint64_t link, const void *v1, uint64_t l1,
	       const void *v2, uint64_t l2)
{
	struct colo_kv_meta *m = kv->m;
	unsigned c;
	uint64_t nb, slot;

	if (l2 > kv->size || l1 > kv->size - l2 ||
	    (c = ent_class(kv, klen, l1 + l2)) >= COLO_KV_CLASSES)
		return -ENOMEM;
	if (found) {
		if (c > e->cls) {
			if (!ent_move(kv, e, link, c, v1, l1, v2, l2))
				return -ENOMEM;
		} else if (c + 1 >= e->cls || !ent_move(kv, e, link, c, v1, l1, v2, l2)) {
			/* In place: the key stays, v1 may be the value itself. */
			put_bytes(kv, e->off + E_HDR + klen, v1, l1);
			put_bytes(kv, e->off + E_HDR + klen + l1, v2, l2);
			st(kv, e->off + E_VLEN, l1 + l2);
		}
		m->writes++;
		counters_clamp(m);
		return 1;
	}
	if (!(nb = blk_alloc(kv, c)))
		return -ENOMEM;
	slot = table_slot(kv, h);
	ent_write(kv, nb, c, ld(kv, slot), h, key, klen, v1, l1, v2, l2);
	st(kv, slot, nb);
	m->count++;
	m->writes++;
	maybe_grow(kv);
	counters_clamp(m);
	return 1;
}

/* ---- the API ---- */

/* An empty store in the region kv names (size checked by the caller). */
static void format_region(struct colo_kvstore *kv, uint64_t seed)
{
	struct colo_kv_meta *meta = kv->m;
	uint64_t t;

	memset(meta, 0, sizeof(*meta));
	meta->region_size = kv->size;
	meta->seed = seed;
	meta->heap_top = KV_HEAP;
	zero(kv, 0, KV_HEAP);
	put_bytes(kv, 0, KV_MAGIC, 8);
	t = blk_alloc(kv, class_for(TABLE_INIT * 8));
	zero(kv, t, TABLE_INIT * 8);
	meta->table_off = t;
	meta->table_size = TABLE_INIT;
}

int colo_kv_format(struct colo_kvstore *kv, void *base, uint64_t size,
		   struct colo_kv_meta *meta, uint64_t seed, struct colo_err *err)
{
	if (size < COLO_KV_MIN_REGION)
		return colo_err_set(err, EINVAL, "kv: region of %" PRIu64 " bytes is smaller "
				    "than the minimum %u", size, COLO_KV_MIN_REGION);
	kv->base = base;
	kv->size = size;
	kv->m = meta;
	kv->mark = NULL;
	kv->mark_ud = NULL;
	format_region(kv, seed);
	return 0;
}

/* Does meta describe a store that fits this region?  (See "Trust".) */
static int meta_check(const uint8_t *base, uint64_t size, const struct colo_kv_meta *m,
		      struct colo_err *err)
{
	uint64_t top = m->heap_top, ts = m->table_size;

	if (size < COLO_KV_MIN_REGION)
		return colo_err_set(err, EINVAL, "kv: region of %" PRIu64 " bytes is smaller "
				    "than the minimum %u", size, COLO_KV_MIN_REGION);
	if (m->region_size != size)
		return colo_err_set(err, EINVAL, "kv: meta is for a region of %" PRIu64
				    " bytes, this one has %" PRIu64, m->region_size, size);
	if (memcmp(base, KV_MAGIC, 8) != 0)
		return colo_err_set(err, EINVAL, "kv: region does not start with the "
				    "store's magic (never formatted?)");
	if (top < KV_HEAP || top > size || top % BLK_MIN)
		return colo_err_set(err, EINVAL, "kv: heap top 0x%" PRIx64 " is not a "
				    "32-aligned offset in 0x%x..0x%" PRIx64, top, KV_HEAP, size);
	if (ts < TABLE_MIN || (ts & (ts - 1)))
		return colo_err_set(err, EINVAL, "kv: table size %" PRIu64 " is not a power "
				    "of two >= %u", ts, TABLE_MIN);
	if (ts > top / 8 || !blk_ok(top, m->table_off, class_for(ts * 8)))
		return colo_err_set(err, EINVAL, "kv: table of %" PRIu64 " buckets at 0x%"
				    PRIx64 " is not a block inside the heap (top 0x%" PRIx64
				    ")", ts, m->table_off, top);
	if (m->count > (top - KV_HEAP) / E_MIN)
		return colo_err_set(err, EINVAL, "kv: count %" PRIu64 " is more keys than "
				    "the heap can hold", m->count);
	if (m->used < ts * 8 || m->used > top - KV_HEAP)
		return colo_err_set(err, EINVAL, "kv: used %" PRIu64 " bytes is not between "
				    "the table's %" PRIu64 " and the heap's %" PRIu64,
				    m->used, ts * 8, top - KV_HEAP);
	for (unsigned c = 0; c < COLO_KV_CLASSES; c++) {
		uint64_t h = m->free_head[c];

		if (h && !blk_ok(top, h, c))
			return colo_err_set(err, EINVAL, "kv: free list %u (%" PRIu64 "-byte "
					    "blocks): head 0x%" PRIx64 " is not a block inside "
					    "the heap (top 0x%" PRIx64 ")", c, blk_size(c), h, top);
	}
	return 0;
}

int colo_kv_open(struct colo_kvstore *kv, void *base, uint64_t size,
		 struct colo_kv_meta *meta, struct colo_err *err)
{
	int r;

	if ((r = meta_check(base, size, meta, err)))
		return r;
	kv->base = base;
	kv->size = size;
	kv->m = meta;
	kv->mark = NULL;
	kv->mark_ud = NULL;
	return 0;
}

void colo_kv_track(struct colo_kvstore *kv, void (*fn)(void *ud, uint64_t off,
							uint64_t len), void *ud)
{
	kv->mark = fn;
	kv->mark_ud = ud;
}

int colo_kv_get(struct colo_kvstore *kv, const void *key, size_t klen,
		const uint8_t **val, uint64_t *vlen)
{
	struct ent e;
	uint64_t link;

	if (!find(kv, key, klen, key_hash(kv->m, key, klen), &e, &link))
		return 0;
	*val = ent_val(kv, &e);
	*vlen = e.vlen;
	return 1;
}

int colo_kv_set(struct colo_kvstore *kv, const void *key, size_t klen,
		const void *val, size_t vlen, int flags)
{
	uint64_t h = key_hash(kv->m, key, klen), link = 0;
	struct ent e;
	bool found = find(kv, key, klen, h, &e, &link);

	if (((flags & COLO_KV_NX) && found) || ((flags & COLO_KV_XX) && !found))
		return 0;
	return put(kv, key, klen, h, found, &e, link, val, vlen, NULL, 0);
}

int colo_kv_del(struct colo_kvstore *kv, const void *key, size_t klen)
{
	struct colo_kv_meta *m = kv->m;
	struct ent e;
	uint64_t link;

	if (!find(kv, key, klen, key_hash(m, key, klen), &e, &link))
		return 0;
	st(kv, link, e.next);
	blk_free(kv, e.off, e.cls);
	if (m->count)
		m->count--;
	m->writes++;
	counters_clamp(m);
	return 1;
}

int colo_kv_append(struct colo_kvstore *kv, const void *key, size_t klen,
		   const void *val, size_t vlen, uint64_t *newlen)
{
	uint64_t h = key_hash(kv->m, key, klen), link = 0;
	struct ent e;
	bool found = find(kv, key, klen, h, &e, &link);
	int r;

	/* The old value is passed as v1: in place it is rewritten onto itself
	 * (memmove of a block to where it is), moved it is copied. */
	if (found)
		r = put(kv, key, klen, h, true, &e, link, ent_val(kv, &e), e.vlen, val, vlen);
	else
		r = put(kv, key, klen, h, false, &e, link, val, vlen, NULL, 0);
	if (r < 0)
		return r;
	*newlen = (found ? e.vlen : 0) + vlen;
	return 0;
}

/* Redis's string2ll: [-]digits, no '+', spaces or leading zeros, fits. */
static bool parse_int64(const uint8_t *s, uint64_t n, int64_t *out)
{
	uint64_t v = 0, i = 0;
	bool neg;

	if (n == 0 || n > 20)
		return false;
	if (n == 1 && s[0] == '0') {
		*out = 0;
		return true;
	}
	neg = s[0] == '-';
	i = neg;
	if (i == n || s[i] < '1' || s[i] > '9')
		return false;
	for (; i < n; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (neg) {
		if (v > (uint64_t)INT64_MAX + 1)
			return false;
		*out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
	} else {
		if (v > (uint64_t)INT64_MAX)
			return false;
		*out = (int64_t)v;
	}
	return true;
}

int colo_kv_incrby(struct colo_kvstore *kv, const void *key, size_t klen, int64_t by,
		   int64_t *out)
{
	uint64_t h = key_hash(kv->m, key, klen), link = 0;
	struct ent e;
	bool found = find(kv, key, klen, h, &e, &link);
	int64_t cur = 0, sum;
	char text[24];
	int n, r;

	if (found && !parse_int64(ent_val(kv, &e), e.vlen, &cur))
		return -EINVAL;
	if ((by > 0 && cur > INT64_MAX - by) || (by < 0 && cur < INT64_MIN - by))
		return -ERANGE;
	sum = cur + by;
	n = snprintf(text, sizeof(text), "%" PRId64, sum);
	if ((r = put(kv, key, klen, h, found, &e, link, text, (uint64_t)n, NULL, 0)) < 0)
		return r;
	*out = sum;
	return 0;
}

uint64_t colo_kv_count(const struct colo_kvstore *kv)
{
	return kv->m->count;
}

void colo_kv_flush(struct colo_kvstore *kv)
{
	uint64_t writes = kv->m->writes;

	/* The size was accepted when the store was made. */
	format_region(kv, kv->m->seed);
	kv->m->writes = writes + 1;
}

/* ---- SCAN ---- */

static uint64_t rev64(uint64_t v)
{
	v = (v >> 1 & 0x5555555555555555ull) | (v & 0x5555555555555555ull) << 1;
	v = (v >> 2 & 0x3333333333333333ull) | (v & 0x3333333333333333ull) << 2;
	v = (v >> 4 & 0x0f0f0f0f0f0f0f0full) | (v & 0x0f0f0f0f0f0f0f0full) << 4;
	return __builtin_bswap64(v);
}

uint64_t colo_kv_scan(struct colo_kvstore *kv, uint64_t cursor, const void *pattern,
		      size_t plen, uint64_t count, colo_kv_visit_fn fn, void *ud)
{
	const struct colo_kv_meta *m = kv->m;
	uint64_t mask = m->table_size - 1, buckets = 0, keys = 0;
	/* "*" matches every key, the empty one too (Redis's SCAN and KEYS
	 * special-case it the same way: stringmatchlen("*", "") is false). */
	bool all = !pattern || (plen == 1 && *(const char *)pattern == '*');

	if (count == 0)
		count = 1;
	do {
		uint64_t cur = ld(kv, m->table_off + (cursor & mask) * 8);
		struct ent e;

		for (uint64_t n = walk_max(kv); cur && n && !ent_load(kv, cur, &e); n--) {
			keys++;
			if (all || colo_glob_match(pattern, plen, ent_key(kv, &e), e.klen))
				fn(ud, ent_key(kv, &e), e.klen);
			cur = e.next;
		}
		/* Redis's dictScan: increment the cursor's reversed bits under
		 * the mask, so buckets already visited stay behind the cursor
		 * when the table doubles. */
		cursor |= ~mask;
		cursor = rev64(rev64(cursor) + 1);
		buckets++;
	} while (cursor && (buckets < count || keys == 0));
	return cursor;
}

/* ---- glob ---- */

/*
 * Redis's stringmatchlen_impl (util.c), bounded by the lengths where Redis
 * reads its NUL terminator.  Byte ranges compare as signed char, as Redis
 * does on x86-64.  skip_longer: once a '*' failed to match the rest from
 * every position, earlier stars cannot help either (Redis's pruning);
 * nesting bounds the recursion against abusive patterns.
 */
static bool glob(const uint8_t *p, size_t pl, const uint8_t *s, size_t sl, bool *skip_longer,
		 int nesting)
{
	if (nesting > 1000)
		return false;
	while (pl && sl) {
		switch (p[0]) {
		case '*':
			while (pl > 1 && p[1] == '*') {
				p++;
				pl--;
			}
			if (pl == 1)
				return true;
			for (; sl; s++, sl--) {
				if (glob(p + 1, pl - 1, s, sl, skip_longer, nesting + 1))
					return true;
				if (*skip_longer)
					return false;
			}
			*skip_longer = true;
			return false;
		case '?':
			s++;
			sl--;
			break;
		case '[': {
			bool not, match = false;

			p++;
			pl--;
			not = pl && p[0] == '^';
			if (not) {
				p++;
				pl--;
			}
			for (;;) {
				if (pl == 0) {
					/* Unclosed: the last byte ends the set. */
					p--;
					pl++;
					break;
				}
				if (p[0] == '\\' && pl >= 2) {
					p++;
					pl--;
					if (p[0] == s[0])
						match = true;
				} else if (p[0] == ']') {
					break;
				} else if (pl >= 3 && p[1] == '-') {
					int lo = (signed char)p[0], hi = (signed char)p[2];
					int c = (signed char)s[0];

					if (lo > hi) {
						int t = lo;

						lo = hi;
						hi = t;
					}
					p += 2;
					pl -= 2;
					if (c >= lo && c <= hi)
						match = true;
				} else if (p[0] == s[0]) {
					match = true;
				}
				p++;
				pl--;
			}
			if (not)
				match = !match;
			if (!match)
				return false;
			s++;
			sl--;
			break;
		}
		case '\\':
			if (pl >= 2) {
				p++;
				pl--;
			}
			/* fall through */
		default:
			if (p[0] != s[0])
				return false;
			s++;
			sl--;
			break;
		}
		p++;
		pl--;
		if (sl == 0) {
			while (pl && p[0] == '*') {
				p++;
				pl--;
			}
			break;
		}
	}
	return pl == 0 && sl == 0;
}

bool colo_glob_match(const void *pattern, size_t plen, const void *str, size_t slen)
{
	bool skip_longer = false;

	return glob(pattern, plen, str, slen, &skip_longer, 0);
}

/* ---- check ---- */

/* Granules (32 bytes) of the heap already claimed by a block. */
struct claims {
	uint64_t *bits;
};

/* Claim [off, off + len); false if any of it was claimed already. */
static bool claim(struct claims *cl, uint64_t off, uint64_t len)
{
	uint64_t a = off / BLK_MIN, b = (off + len) / BLK_MIN;

	for (uint64_t i = a; i < b; i++)
		if (cl->bits[i / 64] >> (i % 64) & 1)
			return false;
	for (uint64_t i = a; i < b; i++)
		cl->bits[i / 64] |= 1ull << (i % 64);
	return true;
}

static int check_entries(const struct colo_kvstore *kv, struct claims *cl, uint64_t *used,
			 struct colo_err *err)
{
	const struct colo_kv_meta *m = kv->m;
	uint64_t n = 0;

	for (uint64_t b = 0; b < m->table_size; b++) {
		uint64_t head = ld(kv, m->table_off + b * 8), cur = head;

		while (cur) {
			struct ent e, o;
			const char *why = ent_load(kv, cur, &e);
			uint64_t h;

			if (why)
				return colo_err_set(err, EINVAL, "kv: bucket %" PRIu64 ": entry "
						    "at offset 0x%" PRIx64 " %s", b, cur, why);
			if (!claim(cl, cur, blk_size(e.cls)))
				return colo_err_set(err, EINVAL, "kv: bucket %" PRIu64 ": entry "
						    "at offset 0x%" PRIx64 " overlaps another "
						    "block or is reached twice", b, cur);
			h = key_hash(m, ent_key(kv, &e), e.klen);
			if (h != e.hash)
				return colo_err_set(err, EINVAL, "kv: bucket %" PRIu64 ": entry "
						    "at offset 0x%" PRIx64 " stores hash 0x%"
						    PRIx64 " but its key hashes to 0x%" PRIx64,
						    b, cur, e.hash, h);
			if ((h & (m->table_size - 1)) != b)
				return colo_err_set(err, EINVAL, "kv: bucket %" PRIu64 ": entry "
						    "at offset 0x%" PRIx64 " hashes to bucket %"
						    PRIu64, b, cur, h & (m->table_size - 1));
			/* Earlier entries of this chain were checked and claimed:
			 * this walk ends at cur. */
			for (uint64_t p = head; p != cur; p = o.next) {
				ent_load(kv, p, &o);
				if (o.hash == e.hash && o.klen == e.klen &&
				    memcmp(ent_key(kv, &o), ent_key(kv, &e), e.klen) == 0)
					return colo_err_set(err, EINVAL, "kv: bucket %" PRIu64
							    ": entries at offsets 0x%" PRIx64
							    " and 0x%" PRIx64 " have the same "
							    "key", b, p, cur);
			}
			n++;
			*used += blk_size(e.cls);
			cur = e.next;
		}
	}
	if (n != m->count)
		return colo_err_set(err, EINVAL, "kv: count says %" PRIu64 " keys, the "
				    "table holds %" PRIu64, m->count, n);
	return 0;
}

static int check_free(const struct colo_kvstore *kv, struct claims *cl, struct colo_err *err)
{
	const struct colo_kv_meta *m = kv->m;

	for (unsigned c = 0; c < COLO_KV_CLASSES; c++) {
		for (uint64_t cur = m->free_head[c]; cur; cur = ld(kv, cur + F_NEXT)) {
			uint64_t tag;

			if (!blk_ok(m->heap_top, cur, c))
				return colo_err_set(err, EINVAL, "kv: free list %u: block at "
						    "0x%" PRIx64 " is not a %" PRIu64 "-byte "
						    "block inside the heap (top 0x%" PRIx64 ")",
						    c, cur, blk_size(c), m->heap_top);
			if ((tag = ld(kv, cur)) != (TAG_FREE | c))
				return colo_err_set(err, EINVAL, "kv: free list %u: block at "
						    "0x%" PRIx64 " has tag 0x%" PRIx64 ", not "
						    "0x%" PRIx64, c, cur, tag, (TAG_FREE | c));
			if (!claim(cl, cur, blk_size(c)))
				return colo_err_set(err, EINVAL, "kv: free list %u: block at "
						    "0x%" PRIx64 " overlaps another block or "
						    "is listed twice", c, cur);
		}
	}
	return 0;
}

int colo_kv_check(const struct colo_kvstore *kv, struct colo_err *err)
{
	const struct colo_kv_meta *m = kv->m;
	uint64_t granules, used, i;
	struct claims cl;
	int r;

	if ((r = meta_check(kv->base, kv->size, m, err)))
		return r;
	granules = m->heap_top / BLK_MIN;
	if (!(cl.bits = calloc(granules / 64 + 1, sizeof(uint64_t))))
		return colo_err_set(err, ENOMEM, "kv: no memory for the check");
	claim(&cl, 0, KV_HEAP);
	claim(&cl, m->table_off, m->table_size * 8);
	used = m->table_size * 8;
	if ((r = check_entries(kv, &cl, &used, err)) || (r = check_free(kv, &cl, err)))
		goto out;
	if (used != m->used) {
		r = colo_err_set(err, EINVAL, "kv: used says %" PRIu64 " bytes, the table and "
				 "entries hold %" PRIu64, m->used, used);
		goto out;
	}
	for (i = 0; i < granules && cl.bits[i / 64] >> (i % 64) & 1; i++)
		;
	if (i < granules) {
		uint64_t end = i;

		while (end < granules && !(cl.bits[end / 64] >> (end % 64) & 1))
			end++;
		r = colo_err_set(err, EINVAL, "kv: 0x%" PRIx64 "..0x%" PRIx64 " belongs to no "
				 "block (leaked)", i * BLK_MIN, end * BLK_MIN);
	}
out:
	free(cl.bits);
	return r;
}

/* ---- the device ---- */

const struct colo_vmstate_desc colo_kv_meta_vmstate = {
	.name = "kv",
	.version_id = 1,
	.minimum_version_id = 1,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT64(region_size, struct colo_kv_meta),
		COLO_VMSTATE_UINT64(seed, struct colo_kv_meta),
		COLO_VMSTATE_UINT64(table_off, struct colo_kv_meta),
		COLO_VMSTATE_UINT64(table_size, struct colo_kv_meta),
		COLO_VMSTATE_UINT64(count, struct colo_kv_meta),
		COLO_VMSTATE_UINT64(heap_top, struct colo_kv_meta),
		COLO_VMSTATE_UINT64(used, struct colo_kv_meta),
		COLO_VMSTATE_UINT64(writes, struct colo_kv_meta),
		COLO_VMSTATE_UINT64_ARRAY(free_head, struct colo_kv_meta, COLO_KV_CLASSES),
		COLO_VMSTATE_END,
	},
};
