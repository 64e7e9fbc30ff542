/*
 * ctl.h: the control socket (DESIGN.md §6), server and client.
 *
 * A node serves a unix stream socket (default /run/colo/<node>.sock, see
 * colo_ctl_default_path()) on its libuv loop.  Each frame, both ways, is a
 * be32 length followed by that many bytes of protobuf: a ControlRequest from
 * the client, exactly one ControlResponse back, in order.  A connection may
 * carry several requests; the server hands them to the handler one at a
 * time, so replies leave in the order the requests came.  Requests carry
 * COLO_CTL_VERSION; a frame of another version is answered ok=false naming
 * both versions (tmux checks the peer's version on every message too).  A
 * frame that is empty, longer than COLO_CTL_MAX_FRAME or not a
 * ControlRequest is answered ok=false with one line and the connection is
 * closed.  Only the socket's owner (our euid) and root may connect: the
 * file is mode 0600 in a directory we create 0700, and the peer's uid is
 * checked with SO_PEERCRED on every connection.
 *
 * Ownership.  The handler gets a token (struct colo_ctl_pending) and the
 * unpacked request; both belong to the library and stay valid until the
 * handler passes the token to colo_ctl_reply(), which it must do exactly
 * once, now or later (e.g. once a checkpoint committed).  The reply frees
 * the token and the request.  If the client hung up, or the server was
 * stopped, in the meantime, colo_ctl_reply() just frees them: the token
 * never dangles.  The response passed to colo_ctl_reply() stays the
 * caller's: it is packed before the call returns (stack messages are fine).
 *
 * Threads.  The server and its tokens belong to the loop's thread: call
 * colo_ctl_reply() and colo_ctl_server_stop() on it (from another thread,
 * go through a uv_async_t).  colo_ctl_call() is a blocking client for
 * tools and tests, usable from any thread.
 *
 * A client hanging up while its reply is written raises SIGPIPE; the
 * server start sets SIGPIPE to SIG_IGN when it is SIG_DFL, so a daemon
 * does not die of `colo-ctl status` interrupted by ^C.
 */
#ifndef COLO_CTL_H
#define COLO_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "colo.pb-c.h"
#include "err.h"

#define COLO_CTL_VERSION 1
/* Largest frame either way, length prefix not counted. */
#define COLO_CTL_MAX_FRAME (1u << 20)

struct colo_ctl_server;
struct colo_ctl_pending;

/*
 * Called on the loop thread for each well-formed request of our version.
 * `req` is valid until colo_ctl_reply(p, ...).
 */
typedef void (*colo_ctl_handler_fn)(struct colo_ctl_pending *p,
				    const Colo__ControlRequest *req, void *ud);

/* One log line (no newline) about a connection: refused peer, bad frame. */
typedef void (*colo_ctl_log_fn)(void *ud, const char *line);

/*
 * Serve the control socket at `path` on `loop`.  Creates the missing
 * directories above it (mode 0700); refuses to start when a live server
 * answers on `path` ("control socket PATH is in use by another process",
 * -EADDRINUSE) or when `path` exists and is not a socket (-EEXIST); removes
 * a stale socket file; binds, sets mode 0600 and listens.  Returns 0 and
 * *out, or a negative errno with err set.
 */
int colo_ctl_server_start(uv_loop_t *loop, const char *path,
			  colo_ctl_handler_fn fn, void *ud,
			  struct colo_ctl_server **out, struct colo_err *err);

/* Where log lines go (default: "colo: control: ..." on stderr). */
void colo_ctl_server_set_log(struct colo_ctl_server *srv, colo_ctl_log_fn fn,
			     void *ud);

const char *colo_ctl_server_path(const struct colo_ctl_server *srv);

/*
 * Stop serving: close the listener and every connection and remove the
 * socket file (only if it is still the one we bound).  Outstanding tokens
 * stay valid and must still be replied.  The server frees itself once its
 * handles have closed, so run the loop (as uv_run does anyway) before
 * uv_loop_close().  Call once; NULL is a no-op.  Fine from a uv_signal_t
 * (SIGTERM) callback.
 */
void colo_ctl_server_stop(struct colo_ctl_server *srv);

/*
 * Answer the request of token `p` with `resp` (its version is set to
 * COLO_CTL_VERSION on the wire) and free the token.  A response packing to
 * more than COLO_CTL_MAX_FRAME is replaced by an ok=false one saying so.
 */
void colo_ctl_reply(struct colo_ctl_pending *p, Colo__ControlResponse *resp);

/* Shorthands: ok=false with error, ok=true with result message. */
void colo_ctl_reply_error(struct colo_ctl_pending *p, const char *fmt, ...)
	COLO_PRINTF(2, 3);
void colo_ctl_reply_message(struct colo_ctl_pending *p, const char *fmt, ...)
	COLO_PRINTF(2, 3);

/* Whether the client of token `p` is still connected (the reply reaches it). */
bool colo_ctl_pending_connected(const struct colo_ctl_pending *p);

/*
 * The peer check done for each connection: `peer_uid` (pid for the
 * message) may control a node running as `euid` if it is `euid` or root.
 * Returns 0, or -EPERM with err set.
 */
int colo_ctl_check_peer(uid_t peer_uid, pid_t peer_pid, uid_t euid,
			struct colo_err *err);

/*
 * Default socket of node `name`, the one rule daemons and colo-ctl share:
 * /run/colo/<name>.sock for root, else $XDG_RUNTIME_DIR/colo/<name>.sock,
 * or /tmp/colo-<uid>/<name>.sock when XDG_RUNTIME_DIR is unset or empty.
 * Returns 0, or -ENAMETOOLONG when it does not fit in `size`.
 */
int colo_ctl_default_path(const char *name, char *buf, size_t size);

/*
 * Blocking client: connect to `path`, send `req` as it is (set its version
 * to COLO_CTL_VERSION), wait for the response.  `timeout_ms` bounds the
 * whole call (<= 0: no limit).  Returns 0 and *resp (free it with
 * colo__control_response__free_unpacked(*resp, NULL)) whatever its ok
 * field, or a negative errno with one line in err:
 *   -ENOENT/-ECONNREFUSED "cannot connect to PATH: ... (is the node running?)"
 *   -ETIMEDOUT            "no reply from PATH within N ms"
 *   -ECONNRESET           "PATH closed the connection before replying"
 *   -EBADMSG              "bad reply from PATH: ..."
 */
int colo_ctl_call(const char *path, const Colo__ControlRequest *req,
		  Colo__ControlResponse **resp, int timeout_ms,
		  struct colo_err *err);

#endif
