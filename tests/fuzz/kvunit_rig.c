/*
 * kvunit_rig.c: the kv guests of the compare-mode fuzz target and its seed
 * generator (fuzz_kvunit.h has the why and the layout).
 */
#include "config.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "fuzz_check.h"
#include "fuzz_kvunit.h"
#include "kv.h"
#include "nodecfg.h"
#include "splitmix.h"

#define STORE_SIZE (256u << 10)
#define FULL_KEYS 1024              /* kvstore.c's TABLE_INIT */

/* ---- stores ---- */

static void put(struct kvu_node *n, const char *key, const void *val, size_t vlen)
{
	int r = colo_kv_set(&n->kv->store, key, strlen(key), val, vlen, 0);

	CHECK(r >= 0, "%s: setting up key %s: %d", n->who, key, r);
}

/* Keys a unit may name: strings, a counter, a binary value, an empty one. */
static void named(struct kvu_node *n)
{
	char key[16], val[16];

	put(n, "k1", "v1", 2);
	put(n, "k2", "hello world", 11);
	put(n, "counter", "42", 2);
	put(n, "bin", "\x00\x01\r\n", 4);
	put(n, "empty", "", 0);
	put(n, "", "empty-key", 9);
	for (unsigned i = 0; i < 16; i++) {
		snprintf(key, sizeof(key), "key:%u", i);
		snprintf(val, sizeof(val), "value-%u", i * i);
		put(n, key, val, strlen(val));
	}
}

/* Fill a 64 KiB store but for about 4 KiB at the heap's top (as fuzz_kv.c's
 * ballast: blocks of 32, 16 and 4 KiB after the 8 KiB table). */
static void ballast(struct kvu_node *n)
{
	static const uint8_t zeros[20000];
	static const size_t vlen[] = { 20000, 10000, 3000 };

	for (size_t i = 0; i < sizeof(vlen) / sizeof(vlen[0]); i++) {
		char key[16];

		snprintf(key, sizeof(key), "ballast:%zu", i);
		put(n, key, zeros, vlen[i]);
	}
}

static void full(struct kvu_node *n)
{
	char key[16], val[16];

	for (unsigned i = 0; colo_kv_count(&n->kv->store) < FULL_KEYS; i++) {
		snprintf(key, sizeof(key), "key:%u", i);
		snprintf(val, sizeof(val), "value-%u", i * i);
		put(n, key, val, strlen(val));
	}
}

/*
 * The stores, each made once per process by the API and then copied into
 * every node that asks for it (a full store takes a thousand sets and a
 * check: most of a run's time if made each time).  Kept until exit.
 */
static struct pristine {
	uint8_t *ram;
	size_t len;
	struct colo_kv_meta meta;
} pristine[4];

static void store_set_up(struct kvu_node *n, enum kvu_store store)
{
	struct pristine *pr = &pristine[store];
	struct colo_err err;
	int r;

	colo_err_clear(&err);
	if (!pr->ram) {
		switch (store) {
		case KVU_STORE_NAMED:
			named(n);
			break;
		case KVU_STORE_TIGHT:
			ballast(n);
			break;
		case KVU_STORE_FULL:
			full(n);
			break;
		case KVU_STORE_EMPTY:
			break;
		}
		r = colo_kv_check(&n->kv->store, &err);
		CHECK(r == 0, "%s: the store set up: %s", n->who, err.msg);
		CHECK(n->kv->meta.heap_top <= n->block->length, "%s: heap top beyond the store",
		      n->who);
		pr->len = (size_t)n->block->length;
		pr->ram = malloc(pr->len);
		CHECK(pr->ram != NULL, "%s: no memory for a copy of the store", n->who);
		memcpy(pr->ram, n->block->host, pr->len);
		pr->meta = n->kv->meta;
		return;
	}
	CHECK(pr->len == n->block->length, "%s: a store of %llu bytes, its copy %zu", n->who,
	      (unsigned long long)n->block->length, pr->len);
	/* Above the heap's top both are the zeros of a new block: copying
	 * them would only fault in pages. */
	memcpy(n->block->host, pr->ram, (size_t)pr->meta.heap_top);
	n->kv->meta = pr->meta;
	/* The primary runs on kv->store as start() would have opened it. */
	r = colo_kv_open(&n->kv->store, n->block->host, n->block->length, &n->kv->meta, &err);
	CHECK(r == 0, "%s: the store's copy: %s", n->who, err.msg);
}

void kvu_node_init(struct kvu_node *n, const char *who, enum kvu_store store)
{
	struct colo_config cfg;
	struct colo_err err;
	char machine[64];
	int r;

	memset(n, 0, sizeof(*n));
	n->who = who;
	memset(&cfg, 0, sizeof(cfg));
	cfg.guest = (char *)"kv";
	cfg.ram_mb = 1;
	cfg.dirty_tracking = COLO_DIRTY_AUTO;
	snprintf(cfg.guest_listen.host, sizeof(cfg.guest_listen.host), "127.0.0.1");
	colo_err_clear(&err);
	colo_guest_machine_name(&colo_kv_ops, machine, sizeof(machine));
	/* No tracking: the RAM is only read and written, never started. */
	r = colo_ram_new(COLO_DIRTY_MANUAL, &n->ram, &err);
	CHECK(r == 0, "%s: ram: %s", who, err.msg);
	r = colo_savevm_init(&n->sv, machine, &err);
	CHECK(r == 0, "%s: savevm: %s", who, err.msg);
	r = colo_kv_ops.create(&cfg, &n->g, &err);
	CHECK(r == 0, "%s: create: %s", who, err.msg);
	n->kv = kv_of(n->g);
	/* Smaller than ram-mb can say: full and tight stores stay cheap. */
	n->kv->region_size = store == KVU_STORE_TIGHT ? COLO_KV_MIN_REGION : STORE_SIZE;
	r = n->g->ops->attach(n->g, n->ram, &n->sv, &err);
	CHECK(r == 0, "%s: attach: %s", who, err.msg);
	n->block = colo_ram_find(n->ram, COLO_KV_RAM);
	CHECK(n->block != NULL, "%s: no RAM block %s", who, COLO_KV_RAM);
	store_set_up(n, store);
}

void kvu_node_free(struct kvu_node *n)
{
	if (n->g)
		n->g->ops->destroy(n->g);
	colo_savevm_free(&n->sv);
	colo_ram_free(n->ram);
	memset(n, 0, sizeof(*n));
}

/* ---- the primary ---- */

/* The tap: on the "kv thread" (ours), before the batch's replies go. */
static void on_unit(void *ud, const struct colo_cmp_unit *u)
{
	struct kvu_primary *p = ud;
	struct kvu_unit *e;

	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct kvu_unit *nu = realloc(p->u, cap * sizeof(*nu));

		CHECK(nu != NULL, "primary: no memory for %zu units", cap);
		p->u = nu;
		p->cap = cap;
	}
	e = &p->u[p->n++];
	memset(e, 0, sizeof(*e));
	e->pos = u->pos;
	e->epoch = u->epoch;
	e->out = u->out;
	e->has_data = u->data != NULL;
	e->off = p->bytes.len;
	e->len = u->data ? u->len : 0;
	if (u->data)
		colo_buf_put(&p->bytes, u->data, u->len);
	CHECK(colo_buf_ok(&p->bytes), "primary: no memory for the units' bytes");
}

void kvu_primary_init(struct kvu_primary *p, enum kvu_store store)
{
	struct kv *kv;

	memset(p, 0, sizeof(*p));
	kvu_node_init(&p->node, "primary", store);
	kv = p->node.kv;
	colo_buf_init(&p->bytes);
	p->node.g->ops->compare_tap(p->node.g, on_unit, p);
	/* What on_connection and start() would have set. */
	kv->nconns = 1;
	atomic_store(&kv->clients, 1);
	atomic_store(&kv->port, 6379);
	kv->start_ns = colo_now_ns();
	p->c.kv = kv;
	p->c.cli.id = kv->nconns;
	colo_resp_parser_init(&p->c.parser);
	colo_buf_init(&p->c.in);
	colo_buf_init(&p->c.out);
}

void kvu_primary_free(struct kvu_primary *p)
{
	colo_resp_parser_free(&p->c.parser);
	colo_buf_free(&p->c.in);
	colo_buf_free(&p->c.out);
	colo_buf_free(&p->bytes);
	free(p->u);
	kvu_node_free(&p->node);
	memset(p, 0, sizeof(*p));
}

void kvu_primary_feed(struct kvu_primary *p, const uint8_t *bytes, size_t n)
{
	struct kv_conn *c = &p->c;
	bool capped;

	if (c->done || n == 0)
		return;
	colo_buf_put(&c->in, bytes, n);
	CHECK(colo_buf_ok(&c->in), "primary: no memory for the input");
	do {
		uint64_t tag, pos;
		size_t before = p->n;

		capped = kv_conn_run_batch(c, &tag, &pos);
		p->batches++;
		CHECK(colo_buf_ok(&c->out), "primary: no memory for the replies");
		if (pos) {
			CHECK(p->n == before + 1 && p->u[before].pos == pos,
			      "primary: batch %zu says unit %llu, the tap saw %zu units", p->batches,
			      (unsigned long long)pos, p->n - before);
			kv_cmp_digest(c->out.data, c->out.len, &p->u[before].sent);
		} else {
			CHECK(p->n == before, "primary: the tap saw a unit of a batch without one");
			if (c->out.len)
				p->untapped_reply = true;
		}
		/* Written at once: the output is always drained here. */
		colo_buf_reset(&c->out);
	} while (capped && !c->done);
}

/* As fuzz_kv.c cuts its input: seed 0 byte by byte, else up to a ceiling,
 * sometimes a read that brings nothing. */
size_t kvu_primary_feed_pieces(struct kvu_primary *p, const uint8_t *bytes, size_t n,
			       uint8_t seed)
{
	static const size_t ceiling[8] = { 4097, 1, 2, 3, 7, 16, 100, 1000 };
	uint8_t bits = seed & KVU_SEED_PIECES;
	size_t max = bits == 0 ? 1 : ceiling[bits], at = 0, pieces = 0;
	uint64_t s = seed;

	while (at < n && !p->c.done) {
		uint64_t v = colo_splitmix64(&s);
		size_t k = max == 1 ? 1 : (bits && (v >> 40) % 29 == 0) ? 0 : 1 + (size_t)(v % max);

		if (k > n - at)
			k = n - at;
		kvu_primary_feed(p, bytes + at, k);
		at += k;
		pieces++;
	}
	return pieces;
}
