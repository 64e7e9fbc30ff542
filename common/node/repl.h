/*
 * repl.h: the replication connection (DESIGN.md §4), one layer for both
 * roles.
 *
 * One TCP connection, the secondary listening and the primary connecting,
 * carries the stream primary->secondary and the return path back.  What
 * travels on it, in both directions:
 *   Hello         be32 length + protobuf Hello, once each way (hello.h)
 *   COLO message  be32 (colomsg.h); VMSTATE_SIZE adds a be64 length
 *   streams       savevm bytes: the full sync, a checkpoint's RAM part and
 *                 its device stream (primary to secondary only)
 * A struct colo_repl_conn is the libuv handle, the bytes received and not
 * yet consumed, and the peer's address for log lines.  The engine that owns
 * it parses what came itself (the roles read different things: colo_repl_rx()
 * and colo_repl_rx_len()) and says what it consumed (colo_repl_consume(), a
 * move of an offset: the unconsumed tail is moved to the front once, after
 * the read callback); this layer frames and sends, and reports the end.
 *
 * Ends of a connection, as the owner hears them (struct colo_repl_ops):
 *   lost(COLO_REPL_CLOSED)    the peer closed, or reading failed
 *   lost(COLO_REPL_PROTOCOL)  the owner called colo_repl_protocol_error():
 *                             the peer spoke out of turn or sent bytes that
 *                             are not the protocol (logged here, one line
 *                             naming the peer and its address)
 * In both cases the owner must colo_repl_close() it, usually from inside
 * the callback.
 *
 * Ownership.  colo_repl_connect() and colo_repl_accept() make a connection;
 * colo_repl_close() detaches the owner at once (no callback after it) and
 * the memory goes once libuv has closed the handle.  colo_repl_send*() copy
 * what they send; colo_repl_write() borrows the caller's buffers until its
 * done() callback, which is always called (with an error once the
 * connection is closed).  Loop thread only.
 *
 * Sealing ([security] encrypt, docs/protocol.md "Sealed connection").
 * After colo_repl_seal() every byte either way travels sealed (libsodium
 * secretstream, XChaCha20-Poly1305, in chunks of at most 64 KiB of
 * plaintext), transparently: the owner still reads plaintext in
 * colo_repl_rx() and sends with the same calls.  What it hears of the peer
 * changes in two ways only: read()'s nread counts plaintext, and a chunk
 * that does not open, is too long or is marked final is a protocol error
 * (lost(COLO_REPL_PROTOCOL), logged by this layer), its bytes never handed
 * on.  Sealed, colo_repl_write() seals the caller's buffers a few chunks at
 * a time as the socket drains (a bounded window, so a GiB-sized write costs
 * neither a GiB copy nor a long stall of the loop) and still borrows them
 * until done().  The keys are copied here and wiped on close, with the
 * stream states (seal.h).
 */
#ifndef COLO_REPL_H
#define COLO_REPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "buf.h"
#include "err.h"

struct colo_repl_conn;
struct colo_seal;

#define COLO_SEAL_KEY_BYTES 32

enum colo_repl_end {
	COLO_REPL_CLOSED,       /* the peer closed, or a read failed */
	COLO_REPL_PROTOCOL,     /* what the peer sent is not the protocol */
};

struct colo_repl_ops {
	/* Connected (colo_repl_connect only): status 0, or a libuv error. */
	void (*connected)(struct colo_repl_conn *c, void *owner, int status);
	/* nread new bytes came: colo_repl_rx(c) holds them at its end.  Once
	 * sealed, nread is plaintext: the wire carried 21 bytes more per chunk
	 * (a be32 length and the tag), and the peer's 24-byte header. */
	void (*read)(struct colo_repl_conn *c, void *owner, size_t nread);
	/* The connection is over (see above); why is one short phrase. */
	void (*lost)(struct colo_repl_conn *c, void *owner, enum colo_repl_end end,
		     const char *why);
};

struct colo_repl_conn {
	uv_tcp_t tcp;
	struct colo_buf rx;              /* received; consumed up to rx_pos */
	size_t rx_pos;
	const struct colo_repl_ops *ops;
	void *owner;                     /* NULL once closed */
	char addr[64];                   /* the peer, "a.b.c.d:port" or "[v6]:port" */
	char peer[64];                   /* its node name once known, else "" */
	uv_connect_t connect_req;
	struct colo_seal *seal;          /* NULL until colo_repl_seal() */
	uv_timer_t kick;                 /* sealed only: work for the next loop turn */
	uv_idle_t resume;                /* the owner yielded: read on next turn */
	bool yielded;                    /* reading stopped until resume runs */
	int handles;                     /* still to close: tcp, resume, kick if sealed */
};

/* Connect to `to`; ops->connected() tells how it went. */
int colo_repl_connect(uv_loop_t *loop, const struct sockaddr *to,
		      const struct colo_repl_ops *ops, void *owner,
		      struct colo_repl_conn **out, struct colo_err *err);
/* Accept a connection that waits on server and start reading it. */
int colo_repl_accept(uv_stream_t *server, const struct colo_repl_ops *ops, void *owner,
		     struct colo_repl_conn **out, struct colo_err *err);
/* Stop: no callback from now on; NULL is fine. */
void colo_repl_close(struct colo_repl_conn *c);

/* The peer's node name, for log lines (after its Hello). */
void colo_repl_set_peer(struct colo_repl_conn *c, const char *node);
/* "b (127.0.0.1:7070)", or the address alone before the Hello. */
const char *colo_repl_describe(const struct colo_repl_conn *c, char *buf, size_t len);
int colo_repl_peer_addr(const struct colo_repl_conn *c, struct sockaddr_storage *ss);

/* Send a copy of data. */
int colo_repl_send(struct colo_repl_conn *c, const void *data, size_t len);
/* A COLO message (colomsg.h): one be32. */
int colo_repl_send_msg(struct colo_repl_conn *c, uint32_t msg);
/* Send bufs as they are; done(ud, 0 or a libuv error) once written. */
int colo_repl_write(struct colo_repl_conn *c, const uv_buf_t *bufs, unsigned n,
		    void (*done)(void *ud, int status), void *ud);
/*
 * The same, but what the socket takes at once is written here: returns 1
 * when all of it went (done is not called and bufs are free at once), 0
 * when the rest waits for done, or an error.  For many small writes: it
 * saves the loop a system call per write (repl.c, write_at_once).  Sealed,
 * it is colo_repl_write().
 */
int colo_repl_write_now(struct colo_repl_conn *c, const uv_buf_t *bufs, unsigned n,
			void (*done)(void *ud, int status), void *ud);
/*
 * As much of data as the socket takes now (uv_try_write): for fault tests.
 * Sealed, it seals all of data at once (up to INT_MAX bytes) and hands it
 * to libuv behind what is queued, returning its length: the socket takes
 * what it can now and libuv writes the rest, as colo_repl_send() would.
 */
int colo_repl_try_write(struct colo_repl_conn *c, const void *data, size_t len);

/*
 * From now on everything sent on c is sealed with tx_key and everything
 * received is opened with rx_key (libsodium crypto_secretstream_xchacha20poly1305).
 * Bytes already received and not yet consumed (colo_repl_rx) are taken as the
 * first sealed bytes: call it right after consuming the last plain message
 * (typically from inside the read callback). Keys are copied (and wiped on close).
 *
 * What was sent before goes first, plain; then this side's 24-byte header.
 * Bytes taken from rx are opened once the read callback that called this
 * returns, or on the next turn of the loop: never inside this call.  Fails
 * on a closed connection or one sealed already.
 */
int colo_repl_seal(struct colo_repl_conn *c, const uint8_t tx_key[COLO_SEAL_KEY_BYTES],
		   const uint8_t rx_key[COLO_SEAL_KEY_BYTES], struct colo_err *err);
bool colo_repl_sealed(const struct colo_repl_conn *c);

/* What came and was not consumed yet, valid until the read callback returns. */
static inline const uint8_t *colo_repl_rx(const struct colo_repl_conn *c)
{
	return c->rx.data + c->rx_pos;
}

static inline size_t colo_repl_rx_len(const struct colo_repl_conn *c)
{
	return c->rx.len - c->rx_pos;
}

/* The owner parsed n bytes from the front of what came. */
void colo_repl_consume(struct colo_repl_conn *c, size_t n);

/*
 * From inside ops->read(): the owner has had its share of this turn of the
 * loop.  Nothing more is read now; on the next turn ops->read() is called
 * again (nread 0) with what is left in colo_repl_rx(), and the socket is
 * read again once a call returns without yielding.  So a large transfer
 * is taken in slices and the loop's other work runs between them.
 */
void colo_repl_yield(struct colo_repl_conn *c);

/*
 * The peer broke the protocol: log one line naming it and why, then tell
 * the owner, through ops->lost(COLO_REPL_PROTOCOL), which closes.
 */
void colo_repl_protocol_error(struct colo_repl_conn *c, const char *fmt, ...)
	COLO_PRINTF(2, 3);

#endif
