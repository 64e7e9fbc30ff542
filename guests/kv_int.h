/*
 * kv_int.h: what kv.c (the service), kv_output.c (replies on their way
 * out) and kv_compare.c (compare mode) share: the guest's struct, a
 * connection's struct, and the calls between them.  Not for other users:
 * they have kv.h (but for the compare-mode fuzz target's rig,
 * tests/fuzz/kvunit_rig.c, which runs the primary's batches without a
 * socket to check them against compare_run).
 *
 * Memory and threads are as kv.c's opening comment says; the compare-mode
 * fields are marked with the thread that owns them.
 */
#ifndef COLO_GUEST_KV_INT_H
#define COLO_GUEST_KV_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "buf.h"
#include "guest.h"
#include "kvcmd.h"
#include "kvstore.h"
#include "resp.h"

struct kv_conn;
struct kv_chunk;
struct kv_hosted;

struct kv {
	struct colo_guest g;
	uint64_t region_size;
	uint64_t seed;
	char listen_host[64];
	uint16_t listen_port;
	struct colo_ram_block *block;
	struct colo_kv_meta meta;
	struct colo_kvstore store;
	bool manual;                  /* dirty-tracking manual: the store marks */
	bool started;

	/* the kv thread, or the engine's loop (embed): then host is that loop
	 * and hosted its handles that run ours */
	pthread_t th;
	uv_loop_t *host;
	struct kv_hosted *hosted;
	bool in_run;                     /* hosted: our loop is running */
	uv_loop_t loop;
	uv_tcp_t listener;
	uv_async_t wake;
	atomic_bool stop_req;
	uv_timer_t retry;                /* guest-listen was in use */
	struct sockaddr_storage addr;    /* guest-listen */
	_Atomic uint16_t port;           /* bound; 0 before */
	struct kv_conn *conns;
	uint64_t nconns;
	uint64_t start_ns;
	_Atomic uint64_t commands;
	_Atomic uint64_t clients;
	uint64_t want_sent;              /* the epoch the engine was last asked for */

	/* the run gate */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool paused, busy;

	/* output commit */
	_Atomic uint64_t epoch;
	_Atomic uint64_t released;
	_Atomic uint64_t held_bytes;     /* replies held, all connections */
	_Atomic uint64_t held_batches;   /* the batches they came in */
	pthread_mutex_t hook_mu;         /* want and tap, and their calls */
	void (*want)(void *ud);
	void *want_ud;
	/* wake_mu guards wake_ok: true while the kv thread's wake handle may
	 * be sent to (release and match come from any thread, also while the
	 * guest stops).  Not hook_mu: a tap may call output_match. */
	pthread_mutex_t wake_mu;
	bool wake_ok;

	/* compare mode (kv_compare.c) */
	atomic_bool tap_set;             /* a tap is set: build units */
	void (*tap)(void *ud, const struct colo_cmp_unit *u);
	void *tap_ud;
	uint64_t last_pos;               /* kv thread: the last position given */
	struct colo_buf unit;            /* kv thread: the unit being built */
	_Atomic uint64_t matched;        /* output_match's watermark */
	struct colo_buf cmp_out;         /* compare_run's replies (loop thread) */
	struct colo_resp_parser cmp_parser; /* compare_run's (loop thread) */
};

static inline struct kv *kv_of(struct colo_guest *g)
{
	return (struct kv *)g;
}

/* Wake the kv thread (it flushes what may go now), if it runs. */
void kv_wake(struct kv *kv);
/* After the store was formatted or opened: with dirty-tracking manual,
 * what it writes is marked in the block. */
void kv_track(struct kv *kv);
/* Flush what may go now on the calling thread if that is ours (embed, not
 * in our loop's turn, not paused): 0; else -1, and nothing happened. */
int kv_flush_here(struct kv *kv);

/* ---- running: kv_run.c ---- */

/* The run gate: commands run between enter and leave, never paused. */
void kv_section_enter(struct kv *kv);
void kv_section_leave(struct kv *kv);
/* The wake handle's callback: flush, or close everything on a stop. */
void kv_on_wake(uv_async_t *a);
/* Our loop is set up and listening: run it on a thread of its own, or on
 * kv->host if set (embed).  0, or -errno and err; our loop is closed then. */
int kv_run_start(struct kv *kv, struct colo_err *err);
void kv_run_pause(struct kv *kv);
void kv_run_resume(struct kv *kv);
void kv_run_stop(struct kv *kv);
/* Close our loop's handles and the loop (a start that failed). */
void kv_loop_close(struct kv *kv);

/* ---- connections: kv thread only ---- */

struct kv_conn {
	uv_tcp_t tcp;
	struct kv *kv;
	struct kv_conn *prev, *next;
	struct colo_resp_parser parser;
	struct colo_kvcmd_client cli;    /* CLIENT ID, SETNAME */
	struct colo_buf in;              /* input not yet consumed */
	struct colo_buf out;             /* replies of the read being handled */
	struct kv_chunk *head, *tail;    /* held, in order (kv_output.c) */
	size_t held;                     /* bytes in chunks + being written */
	bool reading, closing, done;     /* done: close once the output is out */
};

/* kv.c: close the connection (its handle's close callback frees it), and
 * run the commands left waiting once its output drained, then read again. */
void kv_conn_close(struct kv_conn *c);
void kv_conn_resume(struct kv_conn *c);

/*
 * kv.c: one batch of c's input, inside the run section (the unit handed to
 * the tap, in compare mode): its replies are appended to c->out, to be
 * queued under *tag (the epoch) and *pos (the unit's position, 0: none);
 * the commands it ran are dropped from c->in; c->done is set by QUIT or a
 * protocol error.  true if it stopped at the output cap (c->out plus
 * c->held) with commands left.  Uses neither c->tcp nor the held chunks.
 */
bool kv_conn_run_batch(struct kv_conn *c, uint64_t *tag, uint64_t *pos);

/* kv_output.c.  What may go now: a snapshot of the two watermarks. */
struct kv_gate {
	uint64_t released, matched;
};

struct kv_gate kv_gate_now(struct kv *kv);

/* Queue this batch's replies (c->out) under tag and pos, and send what may
 * go.  May close the connection. */
void kv_conn_queue(struct kv_conn *c, uint64_t tag, uint64_t pos);

/* Write every held chunk that may go under gt.  May close the connection. */
void kv_conn_flush(struct kv_conn *c, const struct kv_gate *gt);

/* Free the chunks still held (the connection is being freed). */
void kv_conn_drop_held(struct kv_conn *c);

/* Unit flags (docs/kv.md, "Compare mode"). */
#define KV_UNIT_PROTO_ERROR 0x01u    /* the batch ended in a protocol error */

/*
 * The kv thread, inside the run section, after a batch of one connection
 * ran (off > 0) and before any of its replies may be written: hand the
 * unit to the tap.  ctx is the batch's context as it was before its first
 * command (client state before it, commands_processed before it); resp
 * [0, len) the bytes the batch ran; out [0, outlen) its replies.  Returns
 * the unit's position, 0 when no tap is set.
 */
uint64_t kv_cmp_emit(struct kv *kv, const struct colo_kvcmd_ctx *ctx, const uint8_t *resp,
		     size_t len, unsigned flags, uint64_t epoch, const uint8_t *out,
		     size_t outlen);

/* The digest of an output (guest.h): both sides compute it here. */
void kv_cmp_digest(const uint8_t *out, size_t len, struct colo_cmp_digest *d);

/* The compare-mode ops (guest.h). */
void kv_compare_tap(struct colo_guest *g, void (*fn)(void *ud, const struct colo_cmp_unit *u),
		    void *ud);
void kv_output_match(struct colo_guest *g, uint64_t pos);
int kv_compare_run(struct colo_guest *g, const uint8_t *data, size_t len,
		   struct colo_cmp_digest *d, struct colo_err *err);

#endif
