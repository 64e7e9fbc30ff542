/*
 * secondary_int.h: what the files of the secondary engine share (not API;
 * see secondary.h for that).
 *
 *   secondary.c  the engine: its state machine, the connection from the
 *                primary (Hello, COLO messages, one reader per state),
 *                engine ops, start and stop
 *   load.c       what arrives is loaded: the full sync into the guest, a
 *                checkpoint's pages into the RAM cache and its devices,
 *                verified, then committed; recordings of both
 *   cache.c      the RAM cache of the checkpoint in flight
 *   promote.c    failover: heartbeats lost or colo-ctl failover, fencing,
 *                the new generation, the primary engine started
 *
 * One state enum says where the engine is, connection and checkpoint
 * alike; it changes in secondary_to() only, where an illegal transition is
 * a programmer error and asserted.  Bytes or a message that the state does
 * not expect are the primary's error: refused with a protocol error, and
 * the checkpoint in flight discarded whole.
 *
 * Loop thread only.
 */
#ifndef COLO_SECONDARY_INT_H
#define COLO_SECONDARY_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>
#include <xxhash.h>

#include "buf.h"
#include "cache.h"
#include "hb.h"
#include "hello.h"
#include "node.h"
#include "primary.h"
#include "ramenc.h"
#include "ramfmt.h"
#include "repl.h"
#include "secondary.h"
#include "stream.h"

/* A full sync's progress period; COLO_SYNC_PROGRESS_MS (10 to 60000)
 * changes it, for a test whose sync may end within a second. */
#define SYNC_PROGRESS_MS 1000

/*
 * The engine's state: the connection from the primary and the checkpoint
 * it is receiving, in one.  What the connection carries next follows
 * from it.
 *
 *   WAITING    -> HELLO        a primary connected
 *   HELLO      -> SYNC         its Hello accepted: our Hello sent
 *   HELLO      -> AUTH         with a key: its Hello proven to be fresh and
 *                              accepted: our Hello and proof sent
 *   AUTH       -> SYNC         its proof checks: the session starts
 *   SYNC       -> PROTECTED    the full sync loaded: CHECKPOINT_READY sent
 *   PROTECTED  -> REQUESTED    CHECKPOINT_REQUEST: CHECKPOINT_REPLY sent
 *   REQUESTED  -> CKPT_RAM     VMSTATE_SEND
 *   CKPT_RAM   -> CKPT_SIZE    the RAM part ended (its EOF)
 *   CKPT_SIZE  -> CKPT_DEV     VMSTATE_SIZE n
 *   CKPT_DEV   -> PROTECTED    n bytes in, verified, committed:
 *                              VMSTATE_RECEIVED and VMSTATE_LOADED sent
 *   HELLO .. CKPT_DEV -> WAITING
 *                              refused, failed authentication, the
 *                              handshake took too long, the connection
 *                              went, or a protocol error (a tag that does
 *                              not check): a checkpoint in flight is discarded,
 *                              a half-loaded sync leaves nothing committed
 *   WAITING    -> WAITING      dropped again (promotion drops first)
 *   WAITING    -> PROMOTING    no heartbeat, or colo-ctl failover, with a
 *                              committed checkpoint to take over from
 *   PROMOTING  -> PROMOTED     fenced; generation bumped; primary started
 * With an arbiter, the node asks it for the cluster before it leaves the
 * state it is in (so that its primary cannot clear the sync key first):
 * WAITING .. CKPT_DEV -> WAITING -> PROMOTING once it won.
 */
enum secondary_state {
	S_WAITING,       /* no primary connected; what was committed is kept */
	S_HELLO,         /* a primary connected; its Hello awaited */
	S_AUTH,          /* with a key: accepted, the primary's proof awaited */
	S_SYNC,          /* its full sync loads into the guest */
	S_PROTECTED,     /* a checkpoint committed; CHECKPOINT_REQUEST awaited */
	S_REQUESTED,     /* REPLY sent; VMSTATE_SEND awaited */
	S_CKPT_RAM,      /* the checkpoint's RAM part: pages into the cache */
	S_CKPT_SIZE,     /* the RAM part whole; VMSTATE_SIZE awaited */
	S_CKPT_DEV,      /* the device stream of VMSTATE_SIZE bytes */
	S_PROMOTING,     /* taking over: fence-command runs */
	S_PROMOTED,      /* primary now: the primary engine drives the node */
	S_STATES
};

#define SECONDARY_REFUSING_MAX 8

struct sec_unit;

/* Output-mode compare: the running copy (compare.c). */
struct secondary_cmp {
	bool on;
	uint8_t **mirror;                /* per block: the committed RAM */
	struct sec_unit *head, *tail;    /* units waiting for their checkpoint */
	uint64_t last_pos, last_epoch;   /* of the last INPUT */
	struct colo_buf out;             /* OUTPUT frames of this read */
};

struct colo_secondary {
	struct colo_node *n;
	enum secondary_state state;
	uv_tcp_t listener;
	struct colo_repl_conn *conn;     /* the primary's */
	bool yield;                      /* this turn's decoding budget is spent */
	/* Connections heard out and refused (busy, or promoted): a few at a
	 * time, so that a flood of them costs nothing but closed sockets. */
	struct colo_repl_conn *refusing[SECONDARY_REFUSING_MAX];
	/* loading (load.c) */
	struct colo_stream_reader *reader;
	struct colo_ram_reader rr;
	struct colo_ram_block **blocks;  /* colo_ram's, by index */
	size_t nblocks;
	struct colo_ram_block **map;     /* MEM_SIZE index -> block */
	size_t nmap;
	struct colo_savevm_device *cur_dev;
	bool enable_colo;                /* the sync had COMMAND ENABLE_COLO */
	uint64_t ckpt_rx_start;          /* bytes_received when it began */
	uint64_t ckpt_decode_ns;       /* this checkpoint's time in the decoder */
	bool rec_tee;                    /* keep what arrives for the recording */
	struct colo_buf rec_in;
	/* and the pages as decoded, so that the recorder need not decode them
	 * again (rec_pages_off: out of memory for them, this checkpoint) */
	struct colo_ram_stage rec_pages;
	bool rec_pages_off;
	struct ram_cache cache;
	XXH3_state_t *hash;
	uint64_t dev_len;
	struct colo_buf dev;
	uint8_t tag[COLO_CKPT_TAG_BYTES];  /* authenticated: the sync's or checkpoint's */
	size_t tag_len;
	bool sync_streamed;              /* the sync's stream is in; its tag awaited */
	struct colo_buf *backup;         /* one per device */
	/* what we hold */
	bool have_committed;
	uint64_t last_committed;
	uint64_t sync_seq;               /* the number the primary's Hello gave the sync */
	uint64_t sync_pages;
	/* the handshake (DESIGN.md §8): the primary's proof awaited in S_AUTH */
	struct colo_hello_auth auth;
	struct colo_session session;
	bool authed;                     /* checkpoints carry tags */
	uv_timer_t handshake;            /* a primary that does not finish it goes */
	/* a full sync's progress, logged each second when stderr is a terminal */
	uv_timer_t sync_progress;
	bool progress_on;                /* stderr is a terminal: the timer exists */
	uint64_t progress_ms;            /* its period */
	uint64_t sync_t0_ns, sync_done;  /* at the last progress line */
	struct {
		char node[256];
		uint64_t generation, sync_seq;
		uint32_t heartbeat_port;
	} pending;                       /* its Hello, believed once it proved the key */
	/* the primary */
	char primary_node[256];
	uint64_t primary_gen;
	uint32_t encodings;
	struct colo_hb *hb;
	struct sockaddr_storage hb_peer;
	bool have_hb_peer;
	bool watching;                   /* its heartbeats are watched */
	/* failover (promote.c) */
	uint64_t promote_from_ns;        /* last heartbeat (or the request) */
	bool promote_on_timeout;
	uv_timer_t arb_timer;            /* with an arbiter: the wait before serving,
					    or the next try to take over */
	uint64_t arb_gen;                /* the generation won in etcd */
	bool taking;                     /* the arbiter is being asked */
	struct colo_primary *primary;    /* after promotion */
	bool stopped;
	struct secondary_cmp cmp;
};

/* secondary.c */
void secondary_to(struct colo_secondary *s, enum secondary_state to);
void secondary_drop_primary(struct colo_secondary *s, const char *why);
/* A sync or checkpoint failed here, not by the primary's fault: drop it. */
void secondary_fail(struct colo_secondary *s, const char *why);
bool secondary_promoted(const struct colo_secondary *s);

/* load.c */
int secondary_load_init(struct colo_secondary *s, struct colo_err *err);
void secondary_load_free(struct colo_secondary *s);
/* Forget what arrived of a sync or checkpoint (a new primary, or a drop). */
void secondary_load_reset(struct colo_secondary *s);
/* A Hello was accepted: a full sync comes next. */
int secondary_sync_begin(struct colo_secondary *s);
/* VMSTATE_SEND: a checkpoint's RAM part comes next. */
void secondary_ckpt_begin(struct colo_secondary *s);
/*
 * Feed what came to the stream reader (SYNC, CKPT_RAM): the bytes it took
 * in *used; 1 when its stream ended, 0 when it wants more, -1 on bad bytes
 * (logged).
 */
int secondary_feed(struct colo_secondary *s, const uint8_t *p, size_t len, size_t *used);
/*
 * The sync is whole: adopt its generation, CHECKPOINT_READY.  0, or a
 * negative errno when it failed and the primary was dropped (logged).
 */
int secondary_sync_done(struct colo_secondary *s);
/* The device stream is whole: verify, RECEIVED, commit, LOADED; as above. */
int secondary_ckpt_done(struct colo_secondary *s);

/* promote.c */
int secondary_cmp_init(struct colo_secondary *s, struct colo_err *err);
void secondary_cmp_free(struct colo_secondary *s);
void secondary_cmp_reset(struct secondary_cmp *c);
int secondary_cmp_synced(struct colo_secondary *s, struct colo_err *err);
void secondary_cmp_committed(struct colo_secondary *s);
void secondary_cmp_run_queued(struct colo_secondary *s);
int secondary_cmp_rx(struct colo_secondary *s);
void secondary_cmp_flush(struct colo_secondary *s);

void secondary_promote(struct colo_secondary *s, const char *why, bool timeout);
void secondary_on_peer_dead(void *ud);
int secondary_failover(struct colo_secondary *s, char *msg, size_t len,
		       struct colo_err *err);

#endif
