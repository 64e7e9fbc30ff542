/*
 * node_ctl.c: what a node answers on its control socket (DESIGN.md §6):
 * status, stats, verify and record here, failover, set-interval and
 * checkpoint by the engine running now (struct colo_engine_ops).  ctl.c
 * serves the socket; this file turns requests into replies.  Replies are
 * built on the stack and packed by colo_ctl_reply() before it returns.
 * Loop thread only.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "arbiter.h"
#include "ctl.h"
#include "log.h"
#include "node.h"
#include "node_int.h"
#include "ramfmt.h"
#include "record.h"

static void add_phases(struct colo_node *n, Colo__PhaseTiming *store,
		       Colo__PhaseTiming **ptrs, size_t *count)
{
	/* Each role times its own phases: a node shows those of its role now. */
	int first = n->role == COLO_ROLE_SECONDARY ? COLO_PHASE_SECONDARY_FIRST :
		COLO_PHASE_PRIMARY_FIRST;
	int end = n->role == COLO_ROLE_SECONDARY ? COLO_PHASE_SECONDARY_END :
		COLO_PHASE_PRIMARY_END;

	*count = 0;
	for (int ph = first; ph < end; ph++) {
		Colo__PhaseTiming *t = &store[ph];
		uint64_t cnt;

		colo__phase_timing__init(t);
		t->phase = (char *)colo_phase_name((enum colo_phase)ph);
		colo_stats_percentiles(&n->stats, (enum colo_phase)ph, &t->p50_us,
				       &t->p99_us, &cnt);
		t->count = cnt;
		ptrs[(*count)++] = t;
	}
}

/* The recording line of status. */
static void recording_text(struct colo_node *n, char *buf, size_t len)
{
	struct colo_recorder_stats st;

	buf[0] = '\0';
	if (!n->rec)
		return;
	colo_recorder_stats(n->rec, &st);
	if (!st.running)
		snprintf(buf, len, "%s: stopped: %s", colo_recorder_dir(n->rec), st.error);
	else if (!st.have_keyframe)
		snprintf(buf, len, "%s: waiting for a full state to start from",
			 colo_recorder_dir(n->rec));
	else
		snprintf(buf, len, "%s: %" PRIu64 " checkpoints (%" PRIu64 " keyframes), last %"
			 PRIu64 ", %" PRIu64 " bytes", colo_recorder_dir(n->rec), st.checkpoints,
			 st.keyframes, st.last_seq, st.bytes);
}

static void ctl_status(struct colo_node *n, struct colo_ctl_pending *p)
{
	Colo__ControlResponse resp = COLO__CONTROL_RESPONSE__INIT;
	Colo__Status st = COLO__STATUS__INIT;
	Colo__PhaseTiming phases[COLO_PHASES], *pp[COLO_PHASES];
	char state[64] = "", peer[320] = "", peer_state[64] = "", enc[128] = "";
	char guest[1024] = "", rec[4200];
	char arb[700] = "none", holder[320] = "", takeover[160] = "";
	int64_t left = -1;
	uint64_t last = 0, now = colo_now_ns();
	size_t np;

	if (n->eops)
		n->eops->status(n->engine, state, sizeof(state), peer, sizeof(peer),
				peer_state, sizeof(peer_state), &last, enc, sizeof(enc));
	st.node = n->cfg.name;
	st.role = n->role == COLO_ROLE_PRIMARY ? COLO__ROLE__ROLE_PRIMARY :
		  COLO__ROLE__ROLE_SECONDARY;
	st.generation = n->generation;
	st.state = state;
	st.peer = peer;
	st.peer_state = peer_state;
	st.last_committed = last;
	st.interval_ms = n->cfg.checkpoint_interval_ms;
	st.min_interval_ms = n->cfg.min_interval_ms;
	colo_stats_rates(&n->stats, now, &st.dirty_pages_per_s, &st.bytes_per_s);
	add_phases(n, phases, pp, &np);
	st.n_phases = np;
	st.phases = pp;
	if (n->gops->describe)
		n->gops->describe(n->guest, guest, sizeof(guest));
	else
		snprintf(guest, sizeof(guest), "%s", n->machine);
	st.guest = guest;
	st.tracking = (char *)colo_ram_tracking_reason(n->ram);
	st.uptime_ms = (now - n->started_ns) / 1000000;
	st.encodings = enc;
	recording_text(n, rec, sizeof(rec));
	st.recording = rec;
	if (n->arb)
		colo_arbiter_status(n->arb, arb, sizeof(arb), holder, sizeof(holder), &left,
				    takeover, sizeof(takeover));
	st.arbiter = arb;
	st.lease_holder = holder;
	st.lease_left_ms = left;
	st.takeover = takeover;
	resp.ok = true;
	resp.result_case = COLO__CONTROL_RESPONSE__RESULT_STATUS;
	resp.status = &st;
	colo_ctl_reply(p, &resp);
}

#define GUEST_METRICS_MAX 48

struct guest_metrics {
	Colo__Stats__GuestEntry e[GUEST_METRICS_MAX], *ep[GUEST_METRICS_MAX];
	char names[GUEST_METRICS_MAX][64];
	size_t n;
};

static void put_metric(void *ud, const char *name, double value)
{
	struct guest_metrics *m = ud;

	if (m->n == GUEST_METRICS_MAX)
		return;
	colo__stats__guest_entry__init(&m->e[m->n]);
	snprintf(m->names[m->n], sizeof(m->names[m->n]), "%s", name);
	m->e[m->n].key = m->names[m->n];
	m->e[m->n].value = value;
	m->ep[m->n] = &m->e[m->n];
	m->n++;
}

static void ctl_stats(struct colo_node *n, struct colo_ctl_pending *p)
{
	static struct guest_metrics gm;   /* loop thread only: 10 KiB off the stack */
	Colo__ControlResponse resp = COLO__CONTROL_RESPONSE__INIT;
	Colo__Stats st = COLO__STATS__INIT;
	Colo__Stats__PagesByKindEntry kinds[COLO_PAGE_KINDS], *kp[COLO_PAGE_KINDS];
	Colo__PhaseTiming phases[COLO_PHASES], *pp[COLO_PHASES];
	Colo__Stats__CheckpointsByCauseEntry causes[COLO_CAUSES], *cp[COLO_CAUSES];
	size_t np, nk = 0, nc = 0;

	st.checkpoints = n->stats.checkpoints;
	st.checkpoints_failed = n->stats.checkpoints_failed;
	st.pages_sent = n->stats.pages_sent;
	st.pages_unchanged = n->stats.pages_unchanged;
	st.bytes_sent = n->stats.bytes_sent;
	st.bytes_received = n->stats.bytes_received;
	st.full_syncs = n->stats.full_syncs;
	st.failovers = n->stats.failovers;
	st.heartbeats_sent = n->stats.heartbeats_sent;
	st.heartbeats_received = n->stats.heartbeats_received;
	st.heartbeats_refused = n->stats.heartbeats_refused;
	st.peers_refused = n->stats.peers_refused;
	st.compared = n->stats.compared;
	st.matched = n->stats.matched;
	st.mismatches = n->stats.mismatches;
	st.compare_dropped = n->stats.compare_dropped;
	st.loop_busy_max_us = n->stats.loop_busy_max_ns / 1000;
	st.loop_busy_over_10ms = n->stats.loop_busy_over_10ms;
	st.loop_cpu_max_us = n->stats.loop_cpu_max_ns / 1000;
	st.loop_cpu_over_10ms = n->stats.loop_cpu_over_10ms;
	st.pipelined = n->stats.pipelined;
	st.streams_held = n->stats.streams_held;
	st.loop_stalls = n->stats.loop_stalls;
	st.checkpoint_pages_max = n->stats.ckpt_pages_max;
	for (int k = 0; k < COLO_CAUSES; k++) {
		if (!n->stats.by_cause[k])
			continue;
		colo__stats__checkpoints_by_cause_entry__init(&causes[nc]);
		causes[nc].key = (char *)colo_ckpt_cause_name((enum colo_ckpt_cause)k);
		causes[nc].value = n->stats.by_cause[k];
		cp[nc] = &causes[nc];
		nc++;
	}
	st.n_checkpoints_by_cause = nc;
	st.checkpoints_by_cause = cp;
	for (int k = 0; k < COLO_PAGE_KINDS; k++) {
		if (!n->stats.pages_by_kind[k])
			continue;
		colo__stats__pages_by_kind_entry__init(&kinds[nk]);
		kinds[nk].key = (char *)colo_page_kind_name((enum colo_page_kind)k);
		kinds[nk].value = n->stats.pages_by_kind[k];
		kp[nk] = &kinds[nk];
		nk++;
	}
	st.n_pages_by_kind = nk;
	st.pages_by_kind = kp;
	add_phases(n, phases, pp, &np);
	st.n_phases = np;
	st.phases = pp;
	gm.n = 0;
	if (n->gops->metrics && n->guest)
		n->gops->metrics(n->guest, put_metric, &gm);
	st.n_guest = gm.n;
	st.guest = gm.ep;
	resp.ok = true;
	resp.result_case = COLO__CONTROL_RESPONSE__RESULT_STATS;
	resp.stats = &st;
	colo_ctl_reply(p, &resp);
}

#define HASHES_MAX 16

static void ctl_verify(struct colo_node *n, struct colo_ctl_pending *p)
{
	Colo__ControlResponse resp = COLO__CONTROL_RESPONSE__INIT;
	Colo__VerifyResult vr = COLO__VERIFY_RESULT__INIT;
	struct colo_verify_report rep;
	char bad[COLO_VERIFY_LIST_MAX][300], *badp[COLO_VERIFY_LIST_MAX];
	char hashes[HASHES_MAX][300], *hashp[HASHES_MAX];
	char state[64], peer[320], pst[64], enc[128];
	size_t nb = 0, nh;

	memset(&rep, 0, sizeof(rep));
	/* The guest holds still while its RAM is recomputed; on a secondary
	 * the loop thread is also where commits happen, and a checkpoint in
	 * flight, decoded in place, is swapped out meanwhile (committed_view):
	 * this sees the last committed one. */
	colo_node_pause_guest(n);
	if (n->eops && n->eops->committed_view)
		n->eops->committed_view(n->engine, true);
	if (n->gops->verify)
		n->gops->verify(n->guest, &rep);
	nh = colo_ram_nblocks(n->ram);
	if (nh > HASHES_MAX)
		nh = HASHES_MAX;
	for (size_t i = 0; i < nh; i++) {
		const struct colo_ram_block *b = colo_ram_block_at(n->ram, i);

		snprintf(hashes[i], sizeof(hashes[i]), "%s %016" PRIx64, b->name,
			 (uint64_t)XXH3_64bits(b->host, b->length));
		hashp[i] = hashes[i];
	}
	if (n->eops && n->eops->committed_view)
		n->eops->committed_view(n->engine, false);
	colo_node_resume_guest(n);
	if (n->eops)
		n->eops->status(n->engine, state, sizeof(state), peer, sizeof(peer), pst,
				sizeof(pst), &vr.last_committed, enc, sizeof(enc));
	vr.n_block_hashes = nh;
	vr.block_hashes = hashp;
	vr.supported = rep.supported;
	vr.pages_checked = rep.pages_checked;
	vr.pages_bad = rep.pages_bad;
	for (uint64_t i = 0; i < rep.pages_bad && nb < COLO_VERIFY_LIST_MAX; i++) {
		snprintf(bad[nb], sizeof(bad[nb]), "%s+0x%" PRIx64, rep.bad[nb].block,
			 rep.bad[nb].offset);
		badp[nb] = bad[nb];
		nb++;
	}
	vr.n_bad_pages = nb;
	vr.bad_pages = badp;
	vr.summary = rep.supported ? rep.summary : (char *)"this guest cannot verify itself";
	resp.ok = true;
	resp.result_case = COLO__CONTROL_RESPONSE__RESULT_VERIFY;
	resp.verify = &vr;
	colo_ctl_reply(p, &resp);
}

static void ctl_record(struct colo_node *n, struct colo_ctl_pending *p,
		       const Colo__RecordRequest *rq)
{
	struct colo_err err;
	char text[4200];

	colo_err_clear(&err);
	if (rq->start) {
		if (!rq->dir || !rq->dir[0]) {
			colo_ctl_reply_error(p, "record start needs a directory");
			return;
		}
		if (colo_node_record_start(n, rq->dir, &err) != 0) {
			colo_ctl_reply_error(p, "%s", err.msg);
			return;
		}
		colo_ctl_reply_message(p, "recording to %s", rq->dir);
		return;
	}
	if (!n->rec) {
		colo_ctl_reply_error(p, "not recording");
		return;
	}
	recording_text(n, text, sizeof(text));
	colo_node_record_stop(n);
	colo_ctl_reply_message(p, "stopped recording %s", text);
}

static void ctl_handler(struct colo_ctl_pending *p, const Colo__ControlRequest *req,
			void *ud)
{
	struct colo_node *n = ud;
	struct colo_err err;
	char msg[256] = "";

	colo_err_clear(&err);
	if (n->stopping || !n->eops) {
		colo_ctl_reply_error(p, "the node is stopping");
		return;
	}
	switch (req->cmd_case) {
	case COLO__CONTROL_REQUEST__CMD_STATUS:
		ctl_status(n, p);
		return;
	case COLO__CONTROL_REQUEST__CMD_STATS:
		ctl_stats(n, p);
		return;
	case COLO__CONTROL_REQUEST__CMD_VERIFY:
		ctl_verify(n, p);
		return;
	case COLO__CONTROL_REQUEST__CMD_FAILOVER:
		if (n->eops->failover(n->engine, msg, sizeof(msg), &err))
			colo_ctl_reply_error(p, "%s", err.msg);
		else
			colo_ctl_reply_message(p, "%s", msg);
		return;
	case COLO__CONTROL_REQUEST__CMD_SET_INTERVAL:
		if (!req->set_interval ||
		    n->eops->set_interval(n->engine, req->set_interval->ms, msg, sizeof(msg),
					  &err))
			colo_ctl_reply_error(p, "%s", err.msg[0] ? err.msg : "no interval");
		else
			colo_ctl_reply_message(p, "%s", msg);
		return;
	case COLO__CONTROL_REQUEST__CMD_CHECKPOINT:
		if (n->eops->checkpoint(n->engine, p, &err))
			colo_ctl_reply_error(p, "%s", err.msg);
		return;      /* otherwise the engine replies when it committed */
	case COLO__CONTROL_REQUEST__CMD_RECORD:
		if (!req->record)
			colo_ctl_reply_error(p, "no record request");
		else
			ctl_record(n, p, req->record);
		return;
	default:
		colo_ctl_reply_error(p, "unknown request");
		return;
	}
}

void colo_node_reply_checkpoint(struct colo_ctl_pending *p, bool ok, const char *msg)
{
	if (ok)
		colo_ctl_reply_message(p, "%s", msg);
	else
		colo_ctl_reply_error(p, "%s", msg);
}

static void ctl_log(void *ud, const char *line)
{
	(void)ud;
	colo_log_warn("control socket: %s", line);
}

int colo__node_ctl_start(struct colo_node *n, struct colo_err *err)
{
	int r = colo_ctl_server_start(n->loop, n->cfg.control, ctl_handler, n, &n->ctl, err);

	if (r == 0)
		colo_ctl_server_set_log(n->ctl, ctl_log, n);
	return r;
}

void colo__node_ctl_stop(struct colo_node *n)
{
	colo_ctl_server_stop(n->ctl);
	n->ctl = NULL;
}
