/*
 * fuzz_kvunit.c: libFuzzer target for the kv guest's compare_run
 * (kv_compare.c), the secondary's reading of an INPUT unit that arrives
 * from the network, and for the agreement between it and the primary's
 * batches.  fuzz_kvunit.h has the input layout.
 *
 * UNIT: the bytes run with compare_run on a kv guest attached, not
 * started, its store set up by the seed.  compare_run returns 0 or a
 * negative errno with a message of one printable line starting "kv unit: ";
 * a refused unit leaves the RAM block and the meta exactly as they were;
 * after an accepted one colo_kv_check() finds nothing wrong, it said
 * something (every command has a reply), and a second guest with the same
 * store that runs the same bytes gives the same digest and the same RAM
 * and meta (compare_run is deterministic).
 *
 * ROUND: the bytes are a client's, run on a primary (the kv thread's own
 * batch code, fuzz_kvunit.h) whose tap keeps every unit; a second guest
 * runs each unit with compare_run.  Every unit has its bytes (inputs are
 * far below COLO_CMP_UNIT_MAX), positions go 1, 2, 3..., every batch with
 * replies is a unit, the tap's digest is that of the replies the batch
 * left to write; compare_run accepts every unit and gives the primary's
 * digest; the first unit cut short by a byte is refused and changes
 * nothing; at the end both RAM blocks and metas are the same bytes and
 * colo_kv_check() is happy with both.
 *
 * abort() with a message when a promise breaks, so libFuzzer keeps the
 * input; everything is freed on every run (LeakSanitizer).  FUZZ_VERBOSE=1
 * prints a line per run, for triage.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "fuzz_check.h"
#include "fuzz_kvunit.h"

#define MSG_PREFIX "kv unit: "

/* standalone.c calls this; its prototype lives in fuzz_stream.h too. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const store_name[] = { "named keys", "tight", "full", "empty" };

/* The RAM block and meta as they are now. */
struct image {
	uint8_t *ram;
	size_t len;
	struct colo_kv_meta meta;
};

/* One buffer for the process (a new one per run would be most of a run's
 * time in page faults); kept until exit. */
static void image_take(const struct kvu_node *n, struct image *im)
{
	static uint8_t *buf;
	static size_t cap;

	im->len = (size_t)n->block->length;
	if (im->len > cap) {
		free(buf);
		buf = malloc(im->len);
		CHECK(buf != NULL, "%s: no memory for a copy of the RAM", n->who);
		cap = im->len;
	}
	im->ram = buf;
	memcpy(im->ram, n->block->host, im->len);
	im->meta = n->kv->meta;
}

/* The first differing byte of the RAM, or the meta, or NULL. */
static const char *image_differs(const struct kvu_node *n, const uint8_t *ram, size_t len,
				 const struct colo_kv_meta *meta, char *why, size_t whylen)
{
	if (len != n->block->length) {
		snprintf(why, whylen, "RAM of %zu and %llu bytes", len,
			 (unsigned long long)n->block->length);
		return why;
	}
	if (memcmp(ram, n->block->host, len) != 0) {
		size_t i = 0;

		while (ram[i] == n->block->host[i])
			i++;
		snprintf(why, whylen, "RAM differs from byte 0x%zx (0x%02x, now 0x%02x)", i,
			 ram[i], n->block->host[i]);
		return why;
	}
	if (memcmp(meta, &n->kv->meta, sizeof(*meta)) != 0) {
		snprintf(why, whylen, "meta differs");
		return why;
	}
	return NULL;
}

static void store_ok(const struct kvu_node *n, const char *when)
{
	struct colo_kvstore st;
	struct colo_err err;
	int r;

	colo_err_clear(&err);
	r = colo_kv_open(&st, n->block->host, n->block->length, &n->kv->meta, &err);
	if (r == 0)
		r = colo_kv_check(&st, &err);
	CHECK(r == 0, "%s: %s: the store is broken: %s", n->who, when, err.msg);
}

/* compare_run's answer: 0, or -errno with one line "kv unit: ...". */
static void answer_ok(const struct kvu_node *n, int r, const struct colo_err *err)
{
	size_t len;

	if (r == 0) {
		CHECK(err->code == 0, "%s: accepted with an error set (%d: %s)", n->who,
		      err->code, err->msg);
		return;
	}
	CHECK(r < 0 && r > -4096 && err->code == -r, "%s: refused with %d, error code %d",
	      n->who, r, err->code);
	len = strnlen(err->msg, sizeof(err->msg));
	CHECK(len < sizeof(err->msg), "%s: unterminated message", n->who);
	CHECK(strncmp(err->msg, MSG_PREFIX, strlen(MSG_PREFIX)) == 0 &&
	      len > strlen(MSG_PREFIX), "%s: message does not start \"" MSG_PREFIX "\": %s",
	      n->who, err->msg);
	for (size_t i = 0; i < len; i++)
		CHECK(err->msg[i] >= ' ' && err->msg[i] <= '~', "%s: message byte %zu is "
		      "0x%02x: %s", n->who, i, (unsigned char)err->msg[i], err->msg);
}

static int run(struct kvu_node *n, const uint8_t *data, size_t len, struct colo_cmp_digest *d,
	       struct colo_err *err)
{
	int r;

	colo_err_clear(err);
	d->len = d->hash = UINT64_MAX;
	r = n->g->ops->compare_run(n->g, data, len, d, err);
	answer_ok(n, r, err);
	return r;
}

/* ---- UNIT ---- */

static void fuzz_unit(const uint8_t *p, size_t len, uint8_t seed)
{
	enum kvu_store store = kvu_store_of(seed);
	struct kvu_node a, b;
	struct colo_cmp_digest da, db;
	struct colo_err err;
	struct image im;
	char why[128];
	const char *bad;
	int r;

	kvu_node_init(&a, "secondary", store);
	image_take(&a, &im);
	r = run(&a, p, len, &da, &err);
	if (r) {
		bad = image_differs(&a, im.ram, im.len, &im.meta, why, sizeof(why));
		CHECK(bad == NULL, "a refused unit (%s) changed the store: %s", err.msg, bad);
		if (fuzz_verbose())
			fprintf(stderr, "unit: %zu bytes, %s store, refused: %s\n", len,
				store_name[store], err.msg);
		goto out;
	}
	store_ok(&a, "after an accepted unit");
	CHECK(da.len > 0, "an accepted unit said nothing");
	/* The same bytes on the same store: the same everything. */
	kvu_node_init(&b, "secondary (again)", store);
	r = run(&b, p, len, &db, &err);
	CHECK(r == 0, "the same unit on the same store refused the second time: %s", err.msg);
	CHECK(da.len == db.len && da.hash == db.hash, "the same unit on the same store said "
	      "%llu bytes (hash %016llx), then %llu (hash %016llx)",
	      (unsigned long long)da.len, (unsigned long long)da.hash,
	      (unsigned long long)db.len, (unsigned long long)db.hash);
	bad = image_differs(&b, a.block->host, (size_t)a.block->length, &a.kv->meta, why,
			    sizeof(why));
	CHECK(bad == NULL, "the same unit on the same store left different stores: %s", bad);
	if (fuzz_verbose())
		fprintf(stderr, "unit: %zu bytes, %s store, accepted: %llu reply bytes, %llu "
			"keys\n", len, store_name[store], (unsigned long long)da.len,
			(unsigned long long)a.kv->meta.count);
	kvu_node_free(&b);
out:
	kvu_node_free(&a);
}

/* ---- ROUND ---- */

static void fuzz_round(const uint8_t *p, size_t len, uint8_t seed)
{
	enum kvu_store store = kvu_store_of(seed);
	struct kvu_primary pri;
	struct kvu_node sec;
	struct colo_cmp_digest d;
	struct colo_err err;
	char why[128];
	const char *bad;
	size_t pieces;
	int r;

	kvu_primary_init(&pri, store);
	kvu_node_init(&sec, "secondary", store);
	bad = image_differs(&sec, pri.node.block->host, (size_t)pri.node.block->length,
			    &pri.node.kv->meta, why, sizeof(why));
	CHECK(bad == NULL, "the two stores start different: %s", bad);
	pieces = kvu_primary_feed_pieces(&pri, p, len, seed);
	CHECK(!pri.untapped_reply, "a batch with replies was no unit");
	for (size_t i = 0; i < pri.n; i++) {
		const struct kvu_unit *u = &pri.u[i];
		const uint8_t *ud = kvu_unit_data(&pri, i);

		CHECK(u->pos == i + 1, "unit %zu has position %llu", i + 1,
		      (unsigned long long)u->pos);
		CHECK(u->has_data, "unit %zu of %zu bytes came without its bytes", i + 1,
		      u->len);
		CHECK(u->out.len == u->sent.len && u->out.hash == u->sent.hash,
		      "unit %zu: the tap's digest is not that of the replies", i + 1);
		if (i == 0) {
			struct image im;

			image_take(&sec, &im);
			r = run(&sec, ud, u->len - 1, &d, &err);
			CHECK(r != 0, "unit 1 without its last byte was accepted");
			bad = image_differs(&sec, im.ram, im.len, &im.meta, why, sizeof(why));
			CHECK(bad == NULL, "unit 1 cut short, refused (%s), changed the store: %s",
			      err.msg, bad);
		}
		r = run(&sec, ud, u->len, &d, &err);
		CHECK(r == 0, "unit %zu (%zu bytes) of the primary refused: %s", i + 1, u->len,
		      err.msg);
		CHECK(d.len == u->out.len && d.hash == u->out.hash, "unit %zu: the primary "
		      "said %llu bytes (hash %016llx), the secondary %llu (hash %016llx)",
		      i + 1, (unsigned long long)u->out.len, (unsigned long long)u->out.hash,
		      (unsigned long long)d.len, (unsigned long long)d.hash);
	}
	bad = image_differs(&sec, pri.node.block->host, (size_t)pri.node.block->length,
			    &pri.node.kv->meta, why, sizeof(why));
	CHECK(bad == NULL, "after %zu units the stores differ: %s", pri.n, bad);
	store_ok(&pri.node, "the primary's, at the end");
	store_ok(&sec, "the secondary's, at the end");
	if (fuzz_verbose())
		fprintf(stderr, "round: %zu bytes in %zu pieces, %s store: %zu batches, %zu "
			"units, %zu unit bytes, %llu keys%s\n", len, pieces, store_name[store],
			pri.batches, pri.n, pri.bytes.len,
			(unsigned long long)sec.kv->meta.count,
			pri.c.done ? ", connection done" : "");
	kvu_node_free(&sec);
	kvu_primary_free(&pri);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data + KVU_HEADER_LEN;
	size_t n;

	if (size < KVU_HEADER_LEN)
		return 0;
	/* The test-only nondeterministic command stays unknown here. */
	unsetenv("COLO_KV_TEST_NONDET");
	n = size - KVU_HEADER_LEN;
	switch ((enum kvu_mode)(data[0] % KVU_MODES)) {
	case KVU_MODE_UNIT:
		fuzz_unit(p, n, data[1]);
		break;
	case KVU_MODE_ROUND:
	case KVU_MODES:
		fuzz_round(p, n, data[1]);
		break;
	}
	return 0;
}
