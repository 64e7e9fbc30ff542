/*
 * etcd.h: an asynchronous client of etcd's v3 JSON gateway, for the arbiter
 * (issue 12): leases (grant, keep alive, revoke), reading a key, and
 * transactions that compare keys and then put/delete or read them back.
 *
 * Every call is one HTTP POST of a JSON body to http://HOST:PORT/v3/...
 * (keys and values base64, int64 as decimal strings; answers omit fields
 * that hold their default, so an absent field reads as 0, false or none).
 * The calls run on the caller's libuv loop through libcurl's multi
 * interface (one uv_poll per socket, one uv_timer): nothing here blocks.
 * Each call is bounded by timeout_ms (connect and answer together) and by
 * an answer of at most COLO_ETCD_MAX_REPLY bytes.  Endpoints are tried in
 * turn: a call goes to the current endpoint, and any failed call moves the
 * current endpoint to the next in the list, so a dead member costs one
 * failed call.
 *
 * Ownership: struct colo_etcd is the client's own, freed by
 * colo_etcd_close() once the loop has closed its handles (the loop must run
 * after close).  The strings and buffers passed to the starters are copied
 * before they return.  A struct colo_etcd_txn belongs to its builder until
 * colo_etcd_txn_run() takes it (and frees it, also on error).  What a
 * callback receives (kv structs, their key and value, why) belongs to the
 * client and is valid during the callback only.
 *
 * Errors: starters return 0, or a negative errno with nothing started and
 * the callback never called.  Callbacks get rc 0 or a negative errno and
 * `why`, one line naming the endpoint ("etcd http://127.0.0.1:2379:
 * connection refused"; NULL when rc is 0):
 *   -ECONNREFUSED and other connect errnos  nothing listens / unreachable
 *   -ETIMEDOUT    no whole answer within timeout_ms
 *   -EPROTO       the answer is not HTTP, or an HTTP error without etcd's
 *                 JSON error body
 *   -EBADMSG      HTTP 200 but not JSON, or JSON without the fields expected
 *   -EMSGSIZE     the answer is larger than COLO_ETCD_MAX_REPLY
 *   -ECONNRESET   the connection closed before the answer was whole
 *   etcd's own errors (HTTP != 200 with {"error","message","code"}, or an
 *   {"error":{...}} in a streamed answer): -ENOENT (not found, e.g. an
 *   unknown lease), -EINVAL (invalid argument, failed precondition),
 *   -ETIMEDOUT (deadline exceeded), -EAGAIN (unavailable, e.g. no leader),
 *   -EACCES (permission, authentication), -ENOSPC (resource exhausted),
 *   -EIO otherwise; `why` carries etcd's message.
 *
 * Threads: none of this is thread-safe; a client and everything it calls
 * back belong to the thread that runs its loop.  Callbacks always come from
 * the loop, never from inside a starter; a callback may start calls or
 * close the client (then no further callback comes).
 */
#ifndef COLO_ETCD_H
#define COLO_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "err.h"

/* The largest answer read; a larger one fails the call with -EMSGSIZE. */
#define COLO_ETCD_MAX_REPLY (1024 * 1024)

struct colo_etcd;

/* endpoints: comma list of http://HOST:PORT; timeout_ms bounds each call
 * (connect + answer). */
int colo_etcd_new(uv_loop_t *loop, const char *endpoints, uint32_t timeout_ms,
		  struct colo_etcd **out, struct colo_err *err);
/* Cancel every call in flight (their callbacks are NOT called), close the
 * handles; the struct is freed once libuv has closed them (the loop must
 * run).  NULL is fine. */
void colo_etcd_close(struct colo_etcd *e);
/* The endpoint the last call went to ("http://127.0.0.1:2379"); before any
 * call, the first of the list. */
const char *colo_etcd_endpoint(const struct colo_etcd *e);

struct colo_etcd_kv {          /* owned by the client; valid during the callback only */
	const char *key;
	const uint8_t *value;      /* also NUL-terminated */
	size_t value_len;
	int64_t create_revision, mod_revision, version, lease;
};

/* Every callback gets rc = 0 or a negative errno and why = a one-line reason
 * naming the endpoint (see above).  On an error the call is over; the NEXT
 * call goes to the next endpoint in the list (round robin). */
typedef void (*colo_etcd_grant_cb)(void *ud, int rc, int64_t id, int64_t ttl_s, const char *why);
int colo_etcd_grant(struct colo_etcd *e, int64_t ttl_s, colo_etcd_grant_cb cb, void *ud);
/* ttl_s <= 0: the lease is gone (expired or revoked). */
typedef void (*colo_etcd_keepalive_cb)(void *ud, int rc, int64_t ttl_s, const char *why);
int colo_etcd_keepalive(struct colo_etcd *e, int64_t id, colo_etcd_keepalive_cb cb, void *ud);
typedef void (*colo_etcd_done_cb)(void *ud, int rc, const char *why);
/* cb may be NULL.  An unknown (expired, revoked) lease: -ENOENT. */
int colo_etcd_revoke(struct colo_etcd *e, int64_t id, colo_etcd_done_cb cb, void *ud);
/* kv NULL: the key is absent.  revision: the store's revision (header). */
typedef void (*colo_etcd_get_cb)(void *ud, int rc, const struct colo_etcd_kv *kv,
				 int64_t revision, const char *why);
int colo_etcd_get(struct colo_etcd *e, const char *key, colo_etcd_get_cb cb, void *ud);

/* A transaction: if every compare holds, then the puts/deletes, else the
 * gets.  The builders return 0 or -ENOMEM (the transaction stays usable but
 * incomplete: free it rather than run it). */
struct colo_etcd_txn;
struct colo_etcd_txn *colo_etcd_txn_new(void);      /* NULL: out of memory */
void colo_etcd_txn_free(struct colo_etcd_txn *t);   /* only if never run; NULL is fine */
/* Compares (all must hold).  create_revision 0 = the key is absent. */
int colo_etcd_txn_value_eq(struct colo_etcd_txn *t, const char *key, const void *v, size_t len);
int colo_etcd_txn_create_rev_eq(struct colo_etcd_txn *t, const char *key, int64_t rev);
int colo_etcd_txn_mod_rev_eq(struct colo_etcd_txn *t, const char *key, int64_t rev);
/* Success ops: lease 0 = none. */
int colo_etcd_txn_put(struct colo_etcd_txn *t, const char *key, const void *v, size_t len,
		      int64_t lease);
int colo_etcd_txn_delete(struct colo_etcd_txn *t, const char *key);
/* Failure ops: read these keys back. */
int colo_etcd_txn_else_get(struct colo_etcd_txn *t, const char *key);
/* kvs[i] answers the i-th else_get when !succeeded (NULL where absent);
 * n = their count.  When succeeded, kvs holds n NULLs. */
typedef void (*colo_etcd_txn_cb)(void *ud, int rc, bool succeeded, int64_t revision,
				 const struct colo_etcd_kv *const *kvs, size_t n, const char *why);
/* Runs and takes t (freed when done, also on error). */
int colo_etcd_txn_run(struct colo_etcd *e, struct colo_etcd_txn *t, colo_etcd_txn_cb cb,
		      void *ud);

#endif
