/*
 * output.c: the primary's output commit (guest.h, DESIGN.md §4): the
 * guest's epochs and releases, with the release log; serving alone under
 * an arbiter; the guest's requests for a checkpoint (group commit) and why
 * checkpoints are wanted; answers to colo-ctl checkpoint requests.  Loop
 * thread only, but primary_want_from_guest(), which any thread may call.
 */
#include "config.h"

#include <stdlib.h>

#include "arbiter.h"
#include "primary_int.h"

bool primary_buffering(const struct colo_primary *p)
{
	/* Compare mode is fixed at start (the Hello agreed on it). */
	return p->cmp.on ||
	       (p->n->cfg.output_mode != COLO_OUTPUT_NONE && p->n->gops->output_epoch);
}

void primary_out_epoch(struct colo_primary *p, uint64_t seq)
{
	if (p->n->gops->output_epoch && p->n->guest)
		p->n->gops->output_epoch(p->n->guest, seq);
	primary_cmp_epoch(p, seq);
	if (seq && p->passing) {
		p->passing = false;
		colo_node_release_event(p->n, "close", 0);
	}
}

/*
 * Let the guest's replies up to seq go; the release log says why (what).
 * The line is written first: a guest on this loop (embed) writes its
 * replies inside output_release, and the log must not date a release
 * later than the replies it let go (a node frozen in between would log
 * it only once woken, docs/arbiter.md).
 */
static void out_release(struct colo_primary *p, uint64_t seq, const char *what)
{
	if (seq != UINT64_MAX)
		colo_node_release_event(p->n, what, seq);
	else if (!p->passing) {
		p->passing = true;
		colo_node_release_event(p->n, "open", 0);
	}
	if (p->n->gops->output_release && p->n->guest)
		p->n->gops->output_release(p->n->guest, seq);
	primary_cmp_released(p, seq);
	if (seq >= p->release_late)
		p->release_late = 0;         /* what waited for the arbiter is out */
}

void primary_out_release(struct colo_primary *p, uint64_t seq)
{
	out_release(p, seq, "ckpt");
}

/*
 * With an arbiter and no secondary: what the guest said so far goes out
 * only while the arbiter says this node may serve alone, checked now, on
 * the loop, at each release.  Each release closes an epoch (it takes a
 * number, as a checkpoint would), so that what the guest says after it
 * waits for the next check.  Not between our Hello and the sync: the
 * Hello named the sync's number, and the sync releases what waits.
 */
void primary_alone_round(struct colo_primary *p)
{
	uint64_t e = p->next_seq;

	if (!p->n->arb || !p->alone_waits ||
	    (p->state != P_DEGRADED && p->state != P_CONNECTING) ||
	    !colo_arbiter_may_serve_alone(p->n->arb))
		return;
	p->alone_waits = false;
	primary_out_epoch(p, e + 1);
	out_release(p, e, "alone");
	p->next_seq = e + 1;
}

/* Group commit: held output asks for a checkpoint now (min-interval-ms
 * still applies). */
void primary_on_want_async(uv_async_t *a)
{
	struct colo_primary *p = a->data;

	if (p->state == P_PROTECTED) {
		/* Compare mode: the comparator decides (compare.c). */
		if (!p->cmp.on)
			primary_want(p, COLO_CAUSE_OUTPUT);
	} else if (p->state == P_DEGRADED || p->state == P_CONNECTING) {
		p->alone_waits = true;
		primary_alone_round(p);
	}
	else if (p->state == P_SYNC && p->phase == CK_IDLE && p->sync_waiting)
		primary_sync_start(p);
	else if (p->state == P_SYNC)
		/* Asked while the sync is in flight: the first checkpoint after
		 * it (a guest that drives its checkpoints may wait on it). */
		p->want_now = true;
}

void primary_want_from_guest(void *ud)
{
	struct colo_primary *p = ud;

	uv_async_send(&p->want_async);
}

/* ---- answering colo-ctl checkpoint requests ---- */

void primary_answer_waiting(struct colo_primary *p, bool ok, uint64_t upto,
			    const char *msg)
{
	struct pending **pw = &p->waiting;

	while (*pw) {
		struct pending *w = *pw;

		if (w->seq > upto) {
			pw = &w->next;
			continue;
		}
		*pw = w->next;
		colo_node_reply_checkpoint(w->ctl, ok, msg);
		free(w);
	}
}

/* A checkpoint as soon as min-interval-ms allows; the first why counts. */
void primary_want(struct colo_primary *p, enum colo_ckpt_cause why)
{
	if (!p->want_now)
		p->want_cause = why;
	p->want_now = true;
	primary_schedule(p);
}
