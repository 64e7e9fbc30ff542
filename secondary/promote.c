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
 * listener stays, to refuse stale primaries.  Loop thread only.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

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

static void take_over(struct colo_secondary *s)
{
	struct colo_node *n = s->n;
	struct colo_err err;
	double ms;

	colo_err_clear(&err);
	if (colo_node_set_generation(n, n->generation + 1, &err) != 0) {
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

void secondary_promote(struct colo_secondary *s, const char *why, bool timeout)
{
	struct colo_node *n = s->n;
	struct colo_err err;
	uint64_t now = colo_now_ns(), since = colo_hb_since_last(s->hb);

	if (secondary_promoted(s))
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
	/* A checkpoint in flight is discarded whole. */
	secondary_drop_primary(s, NULL);
	secondary_to(s, S_PROMOTING);
	colo_hb_watch(s->hb, NULL, 0);
	s->watching = false;
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
	if (secondary_promoted(s))
		return colo_err_set(err, EALREADY, "already taking over");
	if (!s->have_committed)
		return colo_err_set(err, EAGAIN, "no committed checkpoint yet: nothing to "
				    "take over from");
	if (s->n->gops->can_serve && s->n->guest && s->n->gops->can_serve(s->n->guest, err)) {
		colo_err_prefix(err, "not taking over");
		return -err->code;
	}
	snprintf(msg, len, "taking over from checkpoint %" PRIu64 ", generation %" PRIu64
		 " -> %" PRIu64, s->last_committed, s->n->generation, s->n->generation + 1);
	secondary_promote(s, "failover requested", false);
	return 0;
}
