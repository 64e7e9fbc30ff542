/*
 * promote.c: failover, the secondary becoming the primary (DESIGN.md §1,
 * §4).
 *
 * When the primary's heartbeats stop for heartbeat-timeout-ms, or on
 * colo-ctl failover, and a checkpoint was committed: the checkpoint in
 * flight is discarded whole (unless the guest says it could not serve:
 * guest.h can_serve, e.g. a VM's tap is gone), fence-command runs if set
 * (it must exit 0),
 * the generation goes up by one and is persisted, and the primary engine
 * starts on this node from the last committed checkpoint: the guest starts
 * from the committed state, and a new secondary can protect it
 * (reprotect).  promote-command runs once it serves.  The secondary's
 * listener stays, to refuse stale primaries.
 *
 * With an arbiter (arbiter.h) the node takes over only once it has won
 * the cluster in etcd: the generation is the one the transaction wrote,
 * and if an old lease held the leader key, the node waits it out before
 * it serves.  When it does not win it goes back to waiting for a primary;
 * after a heartbeat timeout it tries again every second while no primary
 * is connected and etcd did not name another node (it never serves
 * without the key).  Loop thread only.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "arbiter.h"
#include "colo.pb-c.h"
#include "log.h"
#include "secondary_int.h"

static void on_promote_hook(void *ud, int status)
{
	(void)ud;
	if (status == 0)
		colo_log_info("promote-command done");
	else
		colo_log_error("promote-command exited with status %d", status);
}

#define ARB_RETRY_MS 1000

static void take_over(struct colo_secondary *s)
{
	struct colo_node *n = s->n;
	struct colo_err err;
	double ms;

	colo_err_clear(&err);
	/* With an arbiter the generation was won, and kept, already. */
	if (!n->arb && colo_node_set_generation(n, n->generation + 1, &err) != 0) {
		colo_log_error("cannot take over: %s", err.msg);
		colo_node_exit(n, COLO_EXIT_STATE);
		return;
	}
	secondary_to(s, S_PROMOTED);
	n->stats.failovers++;
	colo_hb_set_identity(s->hb, n->cfg.name, COLO__ROLE__ROLE_PRIMARY, n->generation);
	colo_hb_send_to(s->hb, NULL, 0, 0);
	colo_log_info("taking over as primary, generation %" PRIu64 ", from checkpoint %"
		      PRIu64, n->generation, s->last_committed);
	if (colo_primary_start(n, s->last_committed + 1, &s->primary, &err) != 0) {
		colo_log_error("cannot start the primary engine: %s", err.msg);
		colo_node_exit(n, COLO_EXIT_SETUP);
		return;
	}
	ms = (double)(colo_now_ns() - s->promote_from_ns) / 1e6;
	if (s->promote_on_timeout)
		colo_log_info("serving as primary %.1f ms after the last heartbeat "
			      "(timeout %u ms, overhead %.1f ms)", ms,
			      n->cfg.heartbeat_timeout_ms, ms - n->cfg.heartbeat_timeout_ms);
	else
		colo_log_info("serving as primary %.1f ms after the request", ms);
	if (n->cfg.promote_command && n->cfg.promote_command[0])
		colo_node_run_hook(n, "promote", n->cfg.promote_command, on_promote_hook, s,
				   &err);
}

static void on_fence_done(void *ud, int status)
{
	struct colo_secondary *s = ud;

	if (status != 0) {
		colo_log_error("fence-command exited with status %d: not taking over", status);
		colo_node_exit(s->n, COLO_EXIT_FENCE);
		return;
	}
	colo_log_info("fence-command done");
	take_over(s);
}

/* Fence (if set), then serve. */
static void fence_and_take_over(struct colo_secondary *s)
{
	struct colo_node *n = s->n;
	struct colo_err err;

	if (n->cfg.fence_command && n->cfg.fence_command[0]) {
		colo_err_clear(&err);
		if (colo_node_run_hook(n, "fence", n->cfg.fence_command, on_fence_done, s,
				       &err) != 0) {
			colo_log_error("fence-command: %s: not taking over", err.msg);
			colo_node_exit(n, COLO_EXIT_FENCE);
		}
		return;
	}
	take_over(s);
}

static void on_waited(uv_timer_t *t)
{
	fence_and_take_over(t->data);
}

static void arb_retry(uv_timer_t *t);

static void on_arb_taken(void *ud, int rc, uint64_t gen, uint32_t wait_ms, const char *msg)
{
	struct colo_secondary *s = ud;
	struct colo_err err;

	s->taking = false;
	if (s->stopped || secondary_promoted(s))
		return;
	if (rc != 0) {
		colo_log_error("not taking over: %s", msg);
		if (s->state != S_WAITING && s->primary_node[0]) {
			/* Still connected: its heartbeats count again. */
			colo_hb_watch(s->hb, s->primary_node, s->n->cfg.heartbeat_timeout_ms);
			s->watching = true;
		} else if (rc != -EPERM && s->promote_on_timeout) {
			/* Only etcd's silence is worth another try: a refusal stands. */
			uv_timer_start(&s->arb_timer, arb_retry, ARB_RETRY_MS, 0);
		}
		return;
	}
	colo_err_clear(&err);
	if (colo_node_set_generation(s->n, gen, &err) != 0) {
		colo_log_error("cannot take over: %s", err.msg);
		colo_node_exit(s->n, COLO_EXIT_STATE);
		return;
	}
	s->arb_gen = gen;
	/* A checkpoint in flight is discarded whole; the old primary, if it
	 * hears us, stops at once. */
	secondary_drop_primary(s, NULL);
	if (!s->have_committed) {
		colo_log_error("cannot take over: the sync in flight was cut off, nothing "
			       "is committed");
		colo_node_exit(s->n, COLO_EXIT_STATE);
		return;
	}
	secondary_to(s, S_PROMOTING);
	colo_hb_set_identity(s->hb, s->n->cfg.name, COLO__ROLE__ROLE_PRIMARY, gen);
	colo_log_info("the arbiter gave this node generation %" PRIu64 "; serving in %u ms",
		      gen, wait_ms);
	uv_timer_start(&s->arb_timer, on_waited, wait_ms, 0);
}

static void arb_take(struct colo_secondary *s)
{
	struct colo_err err;

	colo_err_clear(&err);
	s->taking = true;
	if (colo_arbiter_take(s->n->arb, s->primary_node, on_arb_taken, s, &err) != 0) {
		s->taking = false;
		colo_log_error("not taking over: %s", err.msg);
	}
}

/* Still no primary, and the arbiter did not answer last time: again. */
static void arb_retry(uv_timer_t *t)
{
	struct colo_secondary *s = t->data;

	if (s->state == S_WAITING && s->have_committed && !s->taking)
		arb_take(s);
}

void secondary_promote(struct colo_secondary *s, const char *why, bool timeout)
{
	struct colo_node *n = s->n;
	struct colo_err err;
	uint64_t now = colo_now_ns(), since = colo_hb_since_last(s->hb);

	if (secondary_promoted(s) || s->taking)
		return;
	/* Before anything is fenced: a guest nobody could reach (a VM whose
	 * tap is gone) must not be the one left serving. */
	colo_err_clear(&err);
	if (n->gops->can_serve && n->guest && n->gops->can_serve(n->guest, &err) != 0) {
		colo_log_error("%s, but not taking over: %s", why, err.msg);
		if (timeout)
			colo_node_exit(n, COLO_EXIT_GUEST);
		return;
	}
	colo_log_warn("%s: taking over from %s (last committed checkpoint %" PRIu64 ")",
		      why, s->primary_node, s->last_committed);
	/* What failover costs is measured from the last sign of life. */
	s->promote_on_timeout = timeout && since != UINT64_MAX && since <= now;
	s->promote_from_ns = s->promote_on_timeout ? now - since : now;
	colo_hb_watch(s->hb, NULL, 0);
	s->watching = false;
	if (n->arb) {
		/* Still connected while the arbiter is asked: dropping the
		 * primary first would have it clear the sync key before us. */
		arb_take(s);
		return;
	}
	/* A checkpoint in flight is discarded whole. */
	secondary_drop_primary(s, NULL);
	secondary_to(s, S_PROMOTING);
	fence_and_take_over(s);
}

void secondary_on_peer_dead(void *ud)
{
	struct colo_secondary *s = ud;
	char why[384];

	if (!s->watching || secondary_promoted(s))
		return;
	if (!s->have_committed) {
		colo_log_warn("primary %s silent for %u ms, but there is no committed "
			      "checkpoint to take over from", s->primary_node,
			      s->n->cfg.heartbeat_timeout_ms);
		colo_hb_watch(s->hb, NULL, 0);
		s->watching = false;
		return;
	}
	snprintf(why, sizeof(why), "no heartbeat from %s for %u ms", s->primary_node,
		 s->n->cfg.heartbeat_timeout_ms);
	secondary_promote(s, why, true);
}

int secondary_failover(struct colo_secondary *s, char *msg, size_t len,
		       struct colo_err *err)
{
	if (secondary_promoted(s) || s->taking)
		return colo_err_set(err, EALREADY, "already taking over");
	if (!s->have_committed)
		return colo_err_set(err, EAGAIN, "no committed checkpoint yet: nothing to "
				    "take over from");
	if (s->n->gops->can_serve && s->n->guest && s->n->gops->can_serve(s->n->guest, err)) {
		colo_err_prefix(err, "not taking over");
		return -err->code;
	}
	if (s->n->arb)
		snprintf(msg, len, "taking over from checkpoint %" PRIu64 " if the arbiter "
			 "gives this node the cluster (generation %" PRIu64 " now; see the "
			 "log and colo-ctl status)", s->last_committed, s->n->generation);
	else
		snprintf(msg, len, "taking over from checkpoint %" PRIu64 ", generation %"
			 PRIu64 " -> %" PRIu64, s->last_committed, s->n->generation,
			 s->n->generation + 1);
	secondary_promote(s, "failover requested", false);
	return 0;
}
