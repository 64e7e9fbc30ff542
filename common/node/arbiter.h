/*
 * arbiter.h: the third party that decides which node of a pair may serve
 * ([arbiter] arbiter = etcd; DESIGN.md §4, docs/arbiter.md).
 *
 * Two keys under /colo/<cluster>/ in etcd:
 *   leader  {"node":N,"generation":G,"ttl_ms":T}, attached to N's lease:
 *           node N is the primary of generation G.
 *   sync    {"generation":G,"secondary":S}, no lease: in generation G,
 *           secondary S holds every reply the primary released, so S (and
 *           only S) may take over; "" while the primary runs alone.
 *
 * The primary (colo_arbiter_lead) claims the leader key and keeps its
 * lease alive.  It may release output with no secondary (serve alone) only
 * while colo_arbiter_may_serve_alone() says so: the leader key is its own,
 * the sync key names nobody, and its lease is valid by its own monotonic
 * clock, counted from when the last renewal was sent, less a margin.  Once
 * renewals fail, it stops releasing before etcd can let the lease expire.
 * Before it serves alone it writes sync "" (so its secondary cannot take
 * over from a state without those replies); once a secondary has the full
 * sync, it writes that secondary's name.
 *
 * The secondary (colo_arbiter_take) takes over only by a transaction that
 * holds only if the sync key names it in its generation and the leader key
 * is as it read it; the transaction writes the new generation, which is
 * thereby ordered by etcd.  If an old lease still held the leader key, it
 * waits that lease's TTL before serving.
 *
 * The arbiter belongs to the node (struct colo_node.arb, NULL with arbiter
 * none) and outlives a promotion: the lease the secondary took over with
 * is the one the primary engine then keeps.  Loop thread only.
 */
#ifndef COLO_ARBITER_H
#define COLO_ARBITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct colo_node;
struct colo_arbiter;

/* What the engine leading now is told. */
struct colo_arbiter_cb {
	/* colo_arbiter_may_serve_alone() or colo_arbiter_lease_valid() may have
	 * become true: release what waits. */
	void (*gate)(void *ud);
	/* Another node holds the cluster (a newer generation): stop serving. */
	void (*superseded)(void *ud, const char *why);
};

int colo_arbiter_new(struct colo_node *n, struct colo_arbiter **out, struct colo_err *err);
/* The node stops: a lease held is revoked (so a secondary need not wait it
 * out), then the client closes; the loop must run for that. */
void colo_arbiter_close(struct colo_arbiter *a);

/* Primary: claim the leader key for the node's generation and keep it. */
void colo_arbiter_lead(struct colo_arbiter *a, const struct colo_arbiter_cb *cb, void *ud);
/* Primary: who may take over from now on: a secondary's name, "" for none. */
void colo_arbiter_set_secondary(struct colo_arbiter *a, const char *name);
bool colo_arbiter_may_serve_alone(const struct colo_arbiter *a);
/* Primary: holds the leader key, and its lease is valid by its own clock
 * (gate() is called when this may have become true). */
bool colo_arbiter_lease_valid(const struct colo_arbiter *a);

/*
 * Secondary: take the cluster over from `from` (the primary's name, for
 * the log).  done(ud, 0, gen, wait_ms, msg): won; gen is the new
 * generation, the node must not serve before wait_ms have passed.  done(ud,
 * -EPERM, ...): this node may not take over (the sync key names another
 * node or generation, or someone else won); done(ud, other negative errno,
 * ...): etcd did not answer.  msg says what happened, in one line.
 */
typedef void (*colo_arbiter_take_cb)(void *ud, int rc, uint64_t gen, uint32_t wait_ms,
				     const char *msg);
int colo_arbiter_take(struct colo_arbiter *a, const char *from, colo_arbiter_take_cb done,
		      void *ud, struct colo_err *err);

/* colo-ctl status: "etcd URL (cluster C)", the leader key's node and
 * generation ("" unknown), this node's lease left in ms (-1: holds none),
 * and who may take over. */
void colo_arbiter_status(const struct colo_arbiter *a, char *arbiter, size_t alen,
			 char *holder, size_t hlen, int64_t *left_ms, char *takeover,
			 size_t tlen);

#endif
