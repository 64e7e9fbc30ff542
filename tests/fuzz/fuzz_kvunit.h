/*
 * fuzz_kvunit.h: the input layout of the kv compare-mode fuzz target
 * (fuzz_kvunit.c) and the rig it shares with its seed generator
 * (gen_kvunit_seeds.c): kv guests made by colo_kv_ops on RAM of their own,
 * and a primary connection that runs client bytes through the kv thread's
 * own batch code (kv_conn_run_batch, kv_int.h) without a socket, its tap
 * keeping a copy of every unit.
 *
 *   input := u8 mode, u8 seed, bytes
 *
 * The mode is taken modulo KVU_MODES, so every byte value means something:
 *
 *   UNIT    the bytes are one INPUT unit as it arrives from the network
 *           (kv_compare.c has the format), run with compare_run.
 *   ROUND   the bytes are what a client sends to a primary: they arrive in
 *           pieces (seed bits 0-2, as fuzz_kv.c cuts them: 0 one byte at a
 *           time, else a ceiling of 4097, 1, 2, 3, 7, 16, 100 or 1000
 *           bytes), each piece appended to the connection's input and run
 *           by kv_conn_run_batch until it stops at a partial command.
 *
 * Seed bits 4-5, both modes: the store every node starts from (KVU_STORE_*,
 * by the API, the same bytes on every node): a few named keys in 256 KiB;
 * a 64 KiB store with about 4 KiB left (writes run out of memory); 1024
 * keys in 256 KiB (the next new key doubles the table); empty.
 *
 * Memory: a node owns its guest, RAM and savevm; a primary owns its node,
 * its connection's buffers and the units' copies.  One thread.
 */
#ifndef COLO_FUZZ_KVUNIT_H
#define COLO_FUZZ_KVUNIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "guest.h"
#include "kv_int.h"
#include "ram.h"
#include "savevm.h"

#define KVU_HEADER_LEN 2

enum kvu_mode {
	KVU_MODE_UNIT,
	KVU_MODE_ROUND,
	KVU_MODES
};

enum kvu_store {
	KVU_STORE_NAMED,
	KVU_STORE_TIGHT,
	KVU_STORE_FULL,
	KVU_STORE_EMPTY,
};

#define KVU_SEED_PIECES 0x07
#define KVU_SEED_STORE_SHIFT 4
#define KVU_SEED_STORE 0x30

static inline enum kvu_store kvu_store_of(uint8_t seed)
{
	return (enum kvu_store)((seed & KVU_SEED_STORE) >> KVU_SEED_STORE_SHIFT);
}

/* A kv guest, attached, not started: a secondary as compare_run finds it. */
struct kvu_node {
	const char *who;
	struct colo_ram *ram;
	struct colo_savevm sv;
	struct colo_guest *g;
	struct kv *kv;
	struct colo_ram_block *block;
};

/* Make one (abort() with a message if that fails: not the input's fault). */
void kvu_node_init(struct kvu_node *n, const char *who, enum kvu_store store);
void kvu_node_free(struct kvu_node *n);

/* One unit the primary's tap saw; its bytes are at off in units. */
struct kvu_unit {
	uint64_t pos, epoch;
	bool has_data;
	size_t off, len;
	struct colo_cmp_digest out;
	struct colo_cmp_digest sent;   /* of the batch's replies in c.out */
};

struct kvu_primary {
	struct kvu_node node;
	struct kv_conn c;
	struct colo_buf bytes;         /* every unit's bytes, one after another */
	struct kvu_unit *u;
	size_t n, cap;
	size_t batches;
	bool untapped_reply;           /* a batch with replies had no unit */
};

/* A primary with a tap, on one connection: client id 1, one client, one
 * connection, port 6379. */
void kvu_primary_init(struct kvu_primary *p, enum kvu_store store);
void kvu_primary_free(struct kvu_primary *p);

/* Bytes arrive on the connection: run every batch they complete (as
 * kv.c's on_read and conn_run, with the output always drained).  Nothing
 * once the connection is done (QUIT, a protocol error). */
void kvu_primary_feed(struct kvu_primary *p, const uint8_t *bytes, size_t n);

/* Feed all of [bytes, n) in pieces by the piece seed (seed bits 0-2);
 * returns how many pieces. */
size_t kvu_primary_feed_pieces(struct kvu_primary *p, const uint8_t *bytes, size_t n,
			       uint8_t seed);

static inline const uint8_t *kvu_unit_data(const struct kvu_primary *p, size_t i)
{
	return p->bytes.data + p->u[i].off;
}

#endif
