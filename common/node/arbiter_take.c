/*
 * arbiter_take.c: a secondary and the arbiter (see arbiter.h): until it
 * takes over it reads the two keys once a second (for colo-ctl status);
 * to take over it reads them, gets a lease, and writes the new generation
 * in one transaction that holds only if the sync key names this node in
 * its generation and the leader key is as it read it.  Loop thread only.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "node.h"
#include "arbiter_int.h"

/* ---- TAKE: a secondary takes the cluster over ---- */

void colo__arb_take_end(struct colo_arbiter *a, int rc, uint64_t gen, uint32_t wait_ms,
		     const char *msg)
{
	colo_arbiter_take_cb done = a->take_done;

	a->take_done = NULL;
	if (rc) {
		colo__arb_to(a, A_IDLE);
		if (a->lease) {          /* not needed: let it go now */
			colo_etcd_revoke(a->etcd, a->lease, NULL, NULL);
			a->lease = 0;
		}
		colo__arb_arm(a, WATCH_MS);
	}
	if (done)
		done(a->take_ud, rc, gen, wait_ms, msg);
}

static void on_take_read(void *ud, int rc, const struct colo_etcd_kv *kv, int64_t rev,
			 const char *why)
{
	struct colo_arbiter *a = ud;
	char expect[160], msg[512];

	(void)rev;
	a->busy = false;
	if (a->state != A_TAKE)
		return;
	if (rc) {
		colo__arb_take_end(a, rc, 0, 0, why);
		return;
	}
	colo__arb_etcd_ok(a);
	if (a->step == 0) {
		colo__arb_seen(&a->sync, kv);
		colo__arb_sync_value(expect, sizeof(expect), a->n->generation, a->n->cfg.name);
		if (!a->sync.present || strcmp(a->sync.raw, expect) != 0) {
			if (a->sync.present)
				snprintf(msg, sizeof(msg), "the sync key says generation %"
					 PRIu64 ", secondary '%s': this node (generation %"
					 PRIu64 ") may not take over", a->sync.gen,
					 a->sync.node, a->n->generation);
			else
				snprintf(msg, sizeof(msg), "there is no sync key: no "
					 "primary ever named this node as its secondary");
			colo__arb_take_end(a, -EPERM, 0, 0, msg);
			return;
		}
	} else {
		colo__arb_seen(&a->leader, kv);
	}
	a->step++;
	colo__arb_step(a);
}

static void on_taken(void *ud, int rc, bool ok, int64_t rev,
		     const struct colo_etcd_kv *const *kvs, size_t n, const char *why)
{
	struct colo_arbiter *a = ud;
	struct seen l, sy;
	uint32_t wait_ms;
	uint64_t gen = a->n->generation + 1;
	char msg[512];

	(void)rev;
	a->busy = false;
	if (a->state != A_TAKE)
		return;
	if (rc) {
		colo__arb_take_end(a, rc, 0, 0, why);
		return;
	}
	if (!ok) {
		colo__arb_seen(&l, n > 0 ? kvs[0] : NULL);
		colo__arb_seen(&sy, n > 1 ? kvs[1] : NULL);
		snprintf(msg, sizeof(msg), "another node was first: leader %s (generation %"
			 PRIu64 "), sync key names '%s' for generation %" PRIu64,
			 l.present ? l.node : "none", l.gen, sy.node, sy.gen);
		colo__arb_take_end(a, -EPERM, 0, 0, msg);
		return;
	}
	/* An old lease may still let its holder serve alone: it runs out
	 * within its TTL.  Without one, what was in flight to the old
	 * primary is stale after a heartbeat timeout. */
	wait_ms = a->leader.present ? (a->leader.ttl_ms ? a->leader.ttl_ms : a->ttl_ms) :
		  a->n->cfg.heartbeat_timeout_ms;
	colo__arb_to(a, A_HOLD);
	a->ever_held = true;
	a->sync_have[0] = a->sync_want[0] = '\0';
	a->have_known = true;
	colo__arb_renewed(a, a->lease_sent_ns);
	snprintf(msg, sizeof(msg), "won generation %" PRIu64 " in etcd from %s%s%s", gen,
		 a->from, a->leader.present ? ", whose lease held the leader key: waiting "
		 "it out" : "", a->leader.present ? "" : " (its lease had ended)");
	colo_log_info("arbiter: %s", msg);
	colo__arb_take_end(a, 0, gen, wait_ms, msg);
	colo__arb_step(a);
}

void colo__arb_take_step(struct colo_arbiter *a)
{
	struct colo_etcd_txn *t;
	char expect[160], sv[160];
	int r = 0;

	a->busy = true;
	a->t_call = colo_now_ns();
	switch (a->step) {
	case 0:
		r = colo_etcd_get(a->etcd, a->key_sync, on_take_read, a);
		break;
	case 1:
		r = colo_etcd_get(a->etcd, a->key_leader, on_take_read, a);
		break;
	case 2:
		if (a->lease) {
			a->step++;
			a->busy = false;
			colo__arb_take_step(a);
			return;
		}
		r = colo_etcd_grant(a->etcd, (a->ttl_ms + 999) / 1000, colo__arb_on_granted, a);
		break;
	default:
		t = colo_etcd_txn_new();
		colo__arb_sync_value(expect, sizeof(expect), a->n->generation, a->n->cfg.name);
		colo__arb_sync_value(sv, sizeof(sv), a->n->generation + 1, "");
		colo__arb_leader_value(a->my_leader, sizeof(a->my_leader), a->n->cfg.name,
			     a->n->generation + 1, a->ttl_ms);
		if (!t || colo_etcd_txn_value_eq(t, a->key_sync, expect, strlen(expect)) ||
		    (a->leader.present ?
		     colo_etcd_txn_mod_rev_eq(t, a->key_leader, a->leader.mod_rev) :
		     colo_etcd_txn_create_rev_eq(t, a->key_leader, 0)) ||
		    colo_etcd_txn_put(t, a->key_leader, a->my_leader, strlen(a->my_leader),
				      a->lease) ||
		    colo_etcd_txn_put(t, a->key_sync, sv, strlen(sv), 0) ||
		    colo_etcd_txn_else_get(t, a->key_leader) ||
		    colo_etcd_txn_else_get(t, a->key_sync)) {
			colo_etcd_txn_free(t);
			r = -ENOMEM;
			break;
		}
		r = colo_etcd_txn_run(a->etcd, t, on_taken, a);
		break;
	}
	if (r) {
		a->busy = false;
		colo__arb_take_end(a, r, 0, 0, "out of memory");
	}
}

/* ---- IDLE: a secondary watches the keys, for colo-ctl status ---- */

void colo__arb_on_watch_read(void *ud, int rc, const struct colo_etcd_kv *kv, int64_t rev,
			  const char *why)
{
	struct colo_arbiter *a = ud;

	(void)rev;
	a->busy = false;
	if (a->state != A_IDLE) {       /* a take or a lead started meanwhile */
		colo__arb_step(a);
		return;
	}
	if (rc) {
		colo__arb_etcd_error(a, "cannot read the keys", why);
		a->step = 0;
		colo__arb_arm(a, WATCH_MS);
		return;
	}
	colo__arb_etcd_ok(a);
	colo__arb_seen(a->step == 0 ? &a->leader : &a->sync, kv);
	if (++a->step < 2) {
		colo__arb_step(a);
		return;
	}
	a->step = 0;
	colo__arb_arm(a, WATCH_MS);
}
