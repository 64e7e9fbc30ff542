/*
 * seal.h: the sealed framing of the replication connection, for repl.c only
 * (colo_repl_seal() in repl.h is the public side; docs/protocol.md "Sealed
 * connection" has the wire format).
 *
 * Each direction is one libsodium secretstream (XChaCha20-Poly1305): a
 * 24-byte header, then chunks, each a be32 ciphertext length and the
 * ciphertext of at most COLO_SEAL_CHUNK plaintext bytes.  A chunk is opened
 * only whole and only once its tag checks, so no byte of a chunk that was
 * tampered with, cut short or sealed with another key is ever handed on; and
 * as each chunk's key moves on after it, chunks cannot be replayed,
 * reordered or dropped either.
 *
 * Sending.  What the connection is asked to send queues here as items (a
 * borrowed colo_repl_write(), or a copy); they are sealed in order, in
 * batches of a few chunks, each batch one uv_write, and no more than a
 * window of ciphertext waits in libuv at once: the rest is sealed as
 * batches are written.  So a write of a GiB costs the loop one batch at a
 * time and a window of memory, not a sealed copy of the whole.  An item's
 * done() is called once its last batch is written, with the error of any
 * batch that failed, or UV_ECANCELED (or that error) from colo__seal_free()
 * for what never went.  An "eager" item (colo_repl_try_write) is sealed and
 * handed to libuv whole at once, ignoring the window.
 *
 * Receiving.  The read side puts ciphertext into colo__seal_in() and
 * colo__seal_open() moves the plaintext of every whole chunk that opens to
 * the end of the connection's rx buffer.
 *
 * Memory: the keys are copied; keys, stream states and the ciphertext
 * buffers are wiped by colo__seal_free().  Loop thread only.
 */
#ifndef COLO_SEAL_H
#define COLO_SEAL_H

#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "err.h"

#define COLO_SEAL_HEADER crypto_secretstream_xchacha20poly1305_HEADERBYTES  /* 24 */
#define COLO_SEAL_ABYTES crypto_secretstream_xchacha20poly1305_ABYTES      /* 17 */
/* The most plaintext in one chunk, and so the longest ciphertext length. */
#define COLO_SEAL_CHUNK 65536u
#define COLO_SEAL_CHUNK_MAX (COLO_SEAL_CHUNK + COLO_SEAL_ABYTES)

struct colo_seal;

/*
 * A sealer writing to stream; header receives what must be sent first, as
 * it is.  write_failed(arg, status) is called when a uv_write fails at once
 * (not from its callback): the owner then reports the connection lost.
 */
int colo__seal_new(const uint8_t tx_key[32], const uint8_t rx_key[32], uv_stream_t *stream,
		   void (*write_failed)(void *arg, int status), void *arg,
		   uint8_t header[COLO_SEAL_HEADER], struct colo_seal **out,
		   struct colo_err *err);
/* No more writes start (the handle is closing); done() calls still come. */
void colo__seal_stop(struct colo_seal *s);
/* done(UV_ECANCELED or the write error) for what never went; wipe; free. */
void colo__seal_free(struct colo_seal *s);

/*
 * Queue bufs to be sealed and sent after everything queued before.  copy:
 * the bytes are copied now (done may be NULL), else borrowed until done().
 * 0, or a libuv error (out of memory, an earlier write failed) with done
 * never called.
 */
int colo__seal_write(struct colo_seal *s, const uv_buf_t *bufs, unsigned n, bool copy,
		     bool eager, void (*done)(void *ud, int status), void *ud);
/* The first write error, 0 while there is none. */
int colo__seal_write_error(const struct colo_seal *s);

/* Where received ciphertext goes (reserve, fill, add to len). */
struct colo_buf *colo__seal_in(struct colo_seal *s);
/*
 * Open every whole chunk received: plaintext appended to rx, *added says
 * how much (even on failure: the chunks before the bad one are genuine).
 * 0; -EPROTO when the peer's bytes are not a sealed stream with our key;
 * -ENOMEM.  why says which, for the log line.
 */
int colo__seal_open(struct colo_seal *s, struct colo_buf *rx, size_t *added, char *why,
		    size_t why_len);

#endif
