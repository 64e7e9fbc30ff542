/*
 * primary_int.h: what the files of the primary engine share (not API; see
 * primary.h for that).
 *
 *   primary.c  the engine: its state machine, the connection to the
 *              secondary (Hello, COLO messages), heartbeats, output commit,
 *              the control requests, start and stop
 *   ckpt.c     the checkpoint pipeline: stage with the guest paused, encode
 *              on a worker, frame, send, commit; the checkpoint clock
 *   fault.c    fault injection for the tests (--fault)
 *
 * Two state enums drive it, each changed in one place only (primary_to(),
 * primary_ckpt_to()), where an illegal transition is a programmer error
 * and asserted.  A message from the secondary that its state does not
 * expect is the peer's error: refused with a protocol error.
 *
 * Everything runs on the node's loop thread, except the staging copy of a
 * big checkpoint (stage_work(), ckpt.c, on a libuv worker, the guest
 * paused) and the encoding, on the encoder's own threads, which own the
 * stage, the shadows and the encoder from colo_ram_encode_start() until
 * the loop has taken their end (p->encoding: phase CK_ENCODING, CK_REPLIED
 * or CK_ABANDONED).
 */
#ifndef COLO_PRIMARY_INT_H
#define COLO_PRIMARY_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>
#include <xxhash.h>

#include "buf.h"
#include "ctl.h"
#include "err.h"
#include "guest.h"
#include "hb.h"
#include "hello.h"
#include "node.h"
#include "primary.h"
#include "ramenc.h"
#include "repl.h"

/*
 * The engine's state: where it stands with its secondary.
 *
 *   DEGRADED   -> CONNECTING          the reconnect timer fired
 *   CONNECTING -> HELLO               connected; our Hello is sent
 *   HELLO      -> SYNC                the secondary accepted us; the full
 *                                     sync starts
 *   SYNC       -> PROTECTED           CHECKPOINT_READY: the sync is loaded
 *   CONNECTING, HELLO, SYNC, PROTECTED -> DEGRADED
 *                                     cannot connect, refused, connection
 *                                     lost, no heartbeat, protocol error
 *   DEGRADED   -> DEGRADED            lost again (the timer is re-armed)
 *   any        -> STOPPED             the node stops (SIGTERM, superseded)
 */
enum primary_state {
	P_DEGRADED,      /* no secondary: the guest runs unprotected, output flows */
	P_CONNECTING,    /* a connection to the secondary is being made */
	P_HELLO,         /* connected, our Hello sent; waiting for the answer */
	P_SYNC,          /* the full sync is being sent / loaded */
	P_PROTECTED,     /* checkpoints flow; output waits for their acknowledgement */
	P_STOPPED,       /* the node is stopping: nothing starts any more */
	P_STATES
};

/*
 * Where the checkpoint in flight is (DESIGN.md §4: at most one being
 * staged, encoded or sent; see `prev` for the one before it).  It is
 * staged with the guest paused; then two things happen in either order:
 * its pages are encoded (on a worker) and, unless it is the full sync, the
 * secondary answers CHECKPOINT_REQUEST with CHECKPOINT_REPLY.  When both
 * have happened it is sent.
 *
 *   IDLE      -> ENCODING     staged (REQUEST sent unless a sync)
 *   ENCODING  -> REPLIED      CHECKPOINT_REPLY came first
 *   ENCODING  -> ENCODED      the encoding finished first
 *   ENCODING  -> SENT         a sync, encoded: no REPLY for a sync; or a
 *                             checkpoint sent eagerly (below), encoded
 *   REPLIED, ENCODED -> SENT  the other half came: it is written
 *   SENT      -> RECEIVED     VMSTATE_RECEIVED: held output released
 *   RECEIVED  -> IDLE         VMSTATE_LOADED: committed
 *   SENT      -> IDLE         a sync: CHECKPOINT_READY
 *   ENCODED, SENT, RECEIVED -> IDLE
 *                             the secondary was lost: the checkpoint goes
 *   ENCODING, REPLIED -> ABANDONED
 *                             lost while a worker still encodes: nothing
 *                             new starts until it returns
 *   ABANDONED -> IDLE         the worker returned
 *
 * Sent eagerly (every output mode but compare, primary_eager()): the
 * records follow the REQUEST without waiting for the REPLY, chunk by chunk
 * as they are encoded, so the phase goes ENCODING -> SENT and the REPLY,
 * which the secondary sends on reading the REQUEST, comes in ENCODING
 * (-> REPLIED) or SENT (the checkpoint notes it); VMSTATE_RECEIVED before
 * it is a protocol error.  In compare mode the secondary's guest runs
 * until the REQUEST: the records wait for its REPLY (docs/protocol.md).
 *
 * Pipelined (eager only): once a checkpoint is SENT, its last byte taken
 * by the socket and its REPLY in, it moves to `prev`, where it waits for
 * VMSTATE_RECEIVED and VMSTATE_LOADED, and the phase goes back to IDLE:
 * the next checkpoint may start (the clock says when) without waiting for
 * the secondary's decode and commit.  The secondary takes them in order,
 * so while `prev` is there it is what the next messages are about; at most
 * one waits there.
 */
enum ckpt_phase {
	CK_IDLE,         /* no checkpoint in flight */
	CK_STAGING,      /* guest paused; its dirty pages are being copied */
	CK_ENCODING,     /* staged; the encoder runs and the REPLY is awaited */
	CK_REPLIED,      /* REPLY in; the encoder still runs */
	CK_ENCODED,      /* encoded; the REPLY is awaited */
	CK_SENT,         /* written; VMSTATE_RECEIVED (a sync: READY) awaited */
	CK_RECEIVED,     /* will be committed; VMSTATE_LOADED awaited */
	CK_ABANDONED,    /* dropped while a worker stages or encodes it */
	CK_PHASES
};

/* Test fault points (--fault abort-at=PHASE[,after=N]): fault.c. */
enum primary_fault {
	F_NONE, F_PAUSED, F_STAGED, F_REQUEST, F_ENCODED, F_MID_SEND, F_SENT,
	F_RECEIVED, F_SYNC,
};

struct primary_fault_cfg {
	enum primary_fault at;
	uint64_t after;              /* from this checkpoint on */
	bool stop;                   /* stop-at: SIGSTOP once instead of SIGKILL */
	bool hold_stream;            /* hold-stream: after every part */
};

/* One checkpoint, or the full sync (full). */
struct ckpt {
	int refs;                    /* the engine, a worker, the write */
	struct colo_primary *p;      /* the engine outlives its work */
	bool full;                   /* the full sync, not a checkpoint */
	uint64_t seq;
	uint64_t t0;                 /* the guest paused */
	uint64_t t_harvested;        /* its dirty pages known: the copy starts */
	uint64_t t_staged;           /* the guest resumed */
	uint64_t t_ready;            /* handed to the socket */
	uint64_t t_sent;             /* the socket took the last byte (0: not yet) */
	uint64_t wall_ns;
	uint64_t pages;
	uint8_t tag[COLO_CKPT_TAG_BYTES];  /* authenticated: after the last byte */
	struct colo_buf head;        /* VMSTATE_SEND + section header (or sync prefix) */
	struct colo_buf ram;         /* records */
	struct colo_buf mid;         /* EOS, footer, EOF, VMSTATE_SIZE */
	struct colo_buf dev;         /* device stream */
	struct colo_buf snap;        /* a recording's first keyframe, taken paused */
	struct colo_ram_enc_stats st;
	/* The checksum, begun over head and records where they were gathered
	 * (an encoder thread), finished over the rest on the loop; NULL for a
	 * sync that needs none. */
	XXH3_state_t *sum;
	uint32_t allowed;            /* encodings, fixed when it was staged */
	int enc_rc;                  /* of the staging copy, then of encoding */
	struct colo_err enc_err;
	/* Streamed (ckpt.c): encoded on a worker, its records go out chunk by
	 * chunk as they are ready, once the REPLY is in. */
	size_t nchunks;              /* the job's chunks (0: not streamed) */
	size_t streamed;             /* chunks handed to the socket */
	bool streaming;              /* head sent: the rest follows */
	bool stream_held;            /* ready chunks wait for a later turn */
	bool send_rest;              /* encoded: the tail goes once they are out */
	unsigned parts_out;          /* parts handed to the socket, not written */
	bool replied;                /* CHECKPOINT_REPLY came */
	uv_work_t stage;             /* the staging copy, when on a worker */
};

/* A colo-ctl checkpoint request, answered once a checkpoint committed. */
/* Output-mode compare (compare.c). */
struct cmp_entry {
	uint64_t pos, epoch;
	uint64_t sent_ns;
	struct colo_cmp_digest out;  /* what our guest said */
	uint8_t st;                  /* compare.c: pending, matched, held */
};

struct cmp_frame;

struct primary_cmp {
	bool on;                     /* output-mode compare */
	pthread_mutex_t mu;          /* head, tail, async_on: the guest's thread */
	struct cmp_frame *head, *tail;
	bool async_on;
	uv_async_t async;
	bool embedded;               /* the guest runs on this loop: no async,
					the check handle drains after its turn */
	uv_check_t check;
	uv_timer_t timer;            /* compare-timeout-ms */
	struct cmp_entry *ring;      /* the FIFO, by position */
	size_t cap, first, n;
	uint64_t covered;            /* epochs up to it are released */
	uint64_t matched;            /* the watermark */
	uint64_t told;               /* ... as the guest was last given it */
	uint64_t asked;              /* a checkpoint was asked for this epoch */
	uint64_t top;                /* the last position the guest ran */
};

struct pending {
	struct colo_ctl_pending *ctl;
	uint64_t seq;                /* answered once this one commits */
	struct pending *next;
};

struct colo_primary {
	struct colo_node *n;
	enum primary_state state;
	enum ckpt_phase phase;
	struct ckpt *cur;            /* in flight: set from ENCODING to RECEIVED */
	struct ckpt *prev;           /* pipelined: sent whole, its REPLY in; RECEIVED
					and LOADED awaited */
	bool prev_received;          /* ... and RECEIVED in */
	struct colo_repl_conn *conn;
	uv_timer_t reconnect;
	int tick_fd;                 /* timerfd: the next checkpoint's start */
	uv_poll_t tick;
	bool tick_on;
	uint64_t tick_armed_ns;      /* what tick_fd is armed for; 0: not armed */
	uv_idle_t kick;              /* a start due now, at the next turn */
	bool kick_on;
	struct sockaddr_storage peer;
	uint64_t last_unreachable_log_ns;
	/* agreed with the secondary */
	uint32_t encodings;
	char peer_node[256];
	struct colo_hello_auth auth;  /* this connection's handshake */
	struct colo_session session;  /* its keys, once both proved the key */
	bool authed;                  /* ... and checkpoints carry tags */
	struct colo_hb *hb;
	/* the pipeline (ckpt.c) */
	struct colo_ram_block **blocks;
	size_t nblocks;
	struct colo_ram_shadow *shadows;
	struct colo_ram_stage stage;
	uint64_t stage_seq;          /* the checkpoint whose pages stage holds */
	struct colo_ram_encoder *enc;
	uint64_t next_seq;
	uint64_t last_committed;
	uint64_t last_start_ns, last_done_ns;
	bool want_now;               /* a request: the next one as soon as allowed */
	bool sync_waiting;           /* the sync waits for the guest's ready() */
	struct pending *waiting;     /* colo-ctl checkpoint requests */
	uv_async_t want_async;       /* the guest's output waits (any thread) */
	bool want_async_on;
	uv_async_t chunk_async;      /* an encoder thread finished a chunk,
					or the encoding */
	atomic_bool chunk_async_on;
	struct ckpt *encoding;       /* the encoder's threads work for it */
	atomic_bool encoded;         /* ... and are done (chunk_async) */
	bool guest_embedded;         /* the guest runs on this loop (embed) */
	struct primary_fault_cfg fault;
	bool passing;                /* output passes at once (release log: open) */
	bool alone_waits;            /* arbiter, no secondary: output may be held */
	uint64_t release_late;       /* acknowledged late, held for the arbiter */
	enum colo_ckpt_cause want_cause;  /* why want_now was set */
	struct primary_cmp cmp;
};

/* primary.c */
void primary_to(struct colo_primary *p, enum primary_state to);
void primary_ckpt_to(struct colo_primary *p, enum ckpt_phase to);
void primary_go_degraded(struct colo_primary *p, const char *why);
bool primary_buffering(const struct colo_primary *p);
void primary_out_epoch(struct colo_primary *p, uint64_t seq);
void primary_out_release(struct colo_primary *p, uint64_t seq);
void primary_alone_round(struct colo_primary *p);
/* Answer the colo-ctl requests that checkpoint `upto` satisfies (all of
 * them with UINT64_MAX). */
void primary_answer_waiting(struct colo_primary *p, bool ok, uint64_t upto,
			    const char *msg);
void primary_want(struct colo_primary *p, enum colo_ckpt_cause why);
void primary_on_want_async(uv_async_t *a);
void primary_want_from_guest(void *ud);

int primary_cmp_init(struct colo_primary *p, struct colo_err *err);
void primary_cmp_start(struct colo_primary *p);
void primary_cmp_stop(struct colo_primary *p);
void primary_cmp_free(struct colo_primary *p);
void primary_cmp_drain(struct colo_primary *p);
int primary_cmp_output(struct colo_primary *p, uint64_t pos, uint64_t len, uint64_t hash);
int primary_cmp_rx(struct colo_primary *p);
void primary_cmp_released(struct colo_primary *p, uint64_t seq);
void primary_cmp_epoch(struct colo_primary *p, uint64_t seq);
void primary_cmp_lost(struct colo_primary *p);
void primary_cmp_tell(struct colo_primary *p);

/* ckpt.c */
/* Checkpoints go without waiting for the REPLY (all modes but compare). */
bool primary_eager(const struct colo_primary *p);
void primary_ckpt_start(struct colo_primary *p, bool full);
/* The full sync, once the guest is ready (guest.h); else when it says so. */
void primary_sync_start(struct colo_primary *p);
void primary_ckpt_send(struct colo_primary *p);
/* The REPLY came while encoding on a worker: send what is encoded so far. */
void primary_ckpt_stream(struct colo_primary *p);
/* chunk_async's callback, and the encoder's (any thread). */
void primary_on_chunk_async(uv_async_t *a);
void primary_on_chunk(void *ud);
void primary_on_encoded(void *ud);
void primary_ckpt_received(struct colo_primary *p);
void primary_ckpt_committed(struct colo_primary *p);
/* cur, sent whole and answered, moves to prev if it may (pipelined). */
void primary_ckpt_pipeline(struct colo_primary *p);
/* The arbiter's gate: replies of a checkpoint acknowledged late go if
 * this node's lease is valid by its clock now. */
void primary_release_late(struct colo_primary *p);
/* The encoder's threads are gone (joined): let go of what they worked for. */
void primary_ckpt_encoder_gone(struct colo_primary *p);
/* A message from the secondary while prev waits: its RECEIVED or LOADED. */
void primary_prev_message(struct colo_primary *p, uint32_t m);
void primary_ckpt_abandon(struct colo_primary *p);
int primary_clock_init(struct colo_primary *p, struct colo_err *err);
void primary_clock_start(struct colo_primary *p);
void primary_clock_stop(struct colo_primary *p);
void primary_clock_close(struct colo_primary *p);
void primary_schedule(struct colo_primary *p);

/* fault.c */
int primary_fault_parse(struct primary_fault_cfg *f, const char *spec,
			struct colo_err *err);
/* Die here, as kill -9 would, if armed for this point and checkpoint. */
void primary_fault_at(const struct primary_fault_cfg *f, enum primary_fault where,
		      uint64_t seq);
/* Armed to die half way through sending this checkpoint (or the sync)? */
bool primary_fault_mid_send(const struct primary_fault_cfg *f, bool full, uint64_t seq);
/* Put half of bufs on the wire, then die. */
void primary_fault_half_send(const struct primary_fault_cfg *f, struct colo_repl_conn *c,
			     const uv_buf_t *bufs, int n, bool full, uint64_t seq);

#endif
