/*
 * arbiter.c: the leader key, the sync key and the lease in etcd (see
 * arbiter.h).  One etcd call at a time: each answer decides the next one,
 * so the arbiter is a small state machine driven by the answers and one
 * timer.  The arbiter owns its etcd client, its timer and the texts of
 * its keys; it is freed once both have closed.  Loop thread only.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "clock.h"
#include "etcd.h"
#include "log.h"
#include "node.h"
#include "arbiter_int.h"

#define ERR_LOG_MS 5000          /* the same etcd error is logged this often */

const char *const colo__arb_names[] = {
	"idle", "taking over", "granting", "claiming", "holding", "superseded",
};

/* ---- small things ---- */

static void on_timer(uv_timer_t *t)
{
	colo__arb_step(t->data);
}

void colo__arb_arm(struct colo_arbiter *a, uint64_t ms)
{
	if (a->timer_open && !a->closing)
		uv_timer_start(&a->timer, on_timer, ms, 0);
}

void colo__arb_to(struct colo_arbiter *a, enum arb_state s)
{
	if (a->state != s)
		colo_log_debug("arbiter: %s -> %s", colo__arb_names[a->state], colo__arb_names[s]);
	a->state = s;
	a->step = 0;
}

void colo__arb_etcd_error(struct colo_arbiter *a, const char *what, const char *why)
{
	uint64_t now = colo_now_ns();

	if (strcmp(a->last_err, why) != 0 || now - a->last_err_ns > ERR_LOG_MS * 1000000ull) {
		colo_log_warn("arbiter: %s: %s", what, why);
		snprintf(a->last_err, sizeof(a->last_err), "%s", why);
		a->last_err_ns = now;
	}
}

void colo__arb_etcd_ok(struct colo_arbiter *a)
{
	if (a->last_err[0]) {
		colo_log_info("arbiter: etcd answers again (%s)", colo_etcd_endpoint(a->etcd));
		a->last_err[0] = '\0';
	}
}

int colo__arb_leader_value(char *buf, size_t len, const char *node, uint64_t gen, uint32_t ttl)
{
	return snprintf(buf, len, "{\"node\":\"%s\",\"generation\":%" PRIu64 ",\"ttl_ms\":%u}",
			node, gen, ttl);
}

int colo__arb_sync_value(char *buf, size_t len, uint64_t gen, const char *secondary)
{
	return snprintf(buf, len, "{\"generation\":%" PRIu64 ",\"secondary\":\"%s\"}", gen,
			secondary);
}

/* Read a key's answer into s; a value that is not ours to read is kept raw. */
void colo__arb_seen(struct seen *s, const struct colo_etcd_kv *kv)
{
	json_t *j, *v;

	memset(s, 0, sizeof(*s));
	if (!kv)
		return;
	s->present = true;
	s->mod_rev = kv->mod_revision;
	snprintf(s->raw, sizeof(s->raw), "%.*s", (int)(kv->value_len < 500 ? kv->value_len :
							  500), (const char *)kv->value);
	j = json_loadb((const char *)kv->value, kv->value_len, 0, NULL);
	if (!j)
		return;
	if ((v = json_object_get(j, "node")) && json_is_string(v))
		snprintf(s->node, sizeof(s->node), "%s", json_string_value(v));
	if ((v = json_object_get(j, "secondary")) && json_is_string(v))
		snprintf(s->node, sizeof(s->node), "%s", json_string_value(v));
	if ((v = json_object_get(j, "generation")) && json_is_integer(v) &&
	    json_integer_value(v) > 0)
		s->gen = (uint64_t)json_integer_value(v);
	if ((v = json_object_get(j, "ttl_ms")) && json_is_integer(v) &&
	    json_integer_value(v) > 0 && json_integer_value(v) < 3600000)
		s->ttl_ms = (uint32_t)json_integer_value(v);
	json_decref(j);
}

static bool can_serve_alone(const struct colo_arbiter *a, uint64_t now)
{
	return a->state == A_HOLD && a->have_known && !a->sync_have[0] &&
	       now < a->valid_until_ns;
}

static bool lease_valid(const struct colo_arbiter *a, uint64_t now)
{
	return a->state == A_HOLD && now < a->valid_until_ns;
}

static void tell_gate(struct colo_arbiter *a)
{
	if (a->cb.gate && lease_valid(a, colo_now_ns()))
		a->cb.gate(a->ud);
}

static void on_lost_timer(uv_timer_t *t)
{
	struct colo_arbiter *a = t->data;

	if (a->cb.superseded)
		a->cb.superseded(a->ud, a->lost_why);
}

/* Another node holds the cluster: nothing more is released alone. */
static void superseded(struct colo_arbiter *a, const char *why)
{
	colo__arb_to(a, A_LOST);
	a->valid_until_ns = 0;
	snprintf(a->lost_why, sizeof(a->lost_why), "%s", why);
	colo_log_error("arbiter: %s", why);
	if (a->cb.superseded && a->timer_open && !a->closing)
		uv_timer_start(&a->timer, on_lost_timer, 0, 0);
}

/* The validity of the lease, from when the call that renewed it was sent. */
void colo__arb_renewed(struct colo_arbiter *a, uint64_t sent)
{
	a->lease_sent_ns = sent;
	a->valid_until_ns = sent + (uint64_t)(a->ttl_ms - a->margin_ms) * 1000000ull;
	a->next_renew_ns = sent + (uint64_t)a->renew_ms * 1000000ull;
	if (a->lapse_logged) {
		colo_log_info("arbiter: lease renewed");
		a->lapse_logged = false;
	}
}

/* ---- GRANT ---- */

void colo__arb_on_granted(void *ud, int rc, int64_t id, int64_t ttl_s, const char *why)
{
	struct colo_arbiter *a = ud;

	a->busy = false;
	if (rc && a->state == A_TAKE) {
		colo__arb_take_end(a, rc, 0, 0, why);
		return;
	}
	if (rc) {
		colo__arb_etcd_error(a, "cannot get a lease", why);
		colo__arb_arm(a, RETRY_MS);
		return;
	}
	colo__arb_etcd_ok(a);
	a->lease = id;
	if (ttl_s * 1000 < a->ttl_ms)       /* etcd may give more, never less */
		colo_log_warn("arbiter: etcd granted a %" PRId64 " s lease, less than "
			      "lease-ttl-ms", ttl_s);
	a->lease_sent_ns = a->t_call;
	if (a->state == A_GRANT) {
		colo__arb_to(a, A_CLAIM);
		colo__arb_step(a);
	} else if (a->state == A_TAKE) {
		a->step++;
		colo__arb_step(a);
	}
}

/* ---- CLAIM: a primary writes the leader key ---- */

static void on_claim_read(void *ud, int rc, const struct colo_etcd_kv *kv, int64_t rev,
			  const char *why)
{
	struct colo_arbiter *a = ud;

	(void)rev;
	a->busy = false;
	if (rc) {
		colo__arb_etcd_error(a, "cannot read the keys", why);
		a->step = 0;
		colo__arb_arm(a, RETRY_MS);
		return;
	}
	colo__arb_etcd_ok(a);
	colo__arb_seen(a->step == 0 ? &a->leader : &a->sync, kv);
	a->step++;
	colo__arb_step(a);
}

static void on_claimed(void *ud, int rc, bool ok, int64_t rev,
		       const struct colo_etcd_kv *const *kvs, size_t n, const char *why)
{
	struct colo_arbiter *a = ud;

	(void)rev;
	(void)kvs;
	(void)n;
	a->busy = false;
	a->step = 0;
	if (rc) {
		colo__arb_etcd_error(a, "cannot write the leader key", why);
		if (rc == -ENOENT) {
			/* The lease ended in etcd while it was cut off (etcd:
			 * "requested lease not found"): a new one, then claim. */
			colo_log_warn("arbiter: the lease ended in etcd: getting a new one");
			a->lease = 0;
			colo__arb_to(a, A_GRANT);
		}
		colo__arb_arm(a, RETRY_MS);
		return;
	}
	colo__arb_etcd_ok(a);
	if (!ok) {
		/* Someone wrote in between: read again. */
		colo__arb_arm(a, 50);
		return;
	}
	colo__arb_to(a, A_HOLD);
	a->ever_held = true;
	colo__arb_renewed(a, a->lease_sent_ns);
	colo_log_info("arbiter: this node holds the leader key of generation %" PRIu64
		      " in etcd (lease %" PRIx64 ", %u ms)", a->n->generation,
		      (uint64_t)a->lease, a->ttl_ms);
	tell_gate(a);
	colo__arb_step(a);
}

/* With the leader and sync keys read: claim, wait, or give up. */
static void claim_decide(struct colo_arbiter *a)
{
	struct colo_node *n = a->n;
	uint64_t g = n->generation;
	struct colo_etcd_txn *t;
	char why[384], sv[160];
	bool put_sync;

	if (a->leader.present) {
		if (a->leader.gen > g) {
			snprintf(why, sizeof(why), "node %s holds generation %" PRIu64 " (this "
				 "node's is %" PRIu64 "): superseded", a->leader.node,
				 a->leader.gen, g);
			superseded(a, why);
			return;
		}
		/* An older or earlier lease: it ends by itself within its TTL. */
		snprintf(why, sizeof(why), "the leader key is held by %s (generation %"
			 PRIu64 "): waiting for its lease to end", a->leader.node[0] ?
			 a->leader.node : "?", a->leader.gen);
		colo__arb_etcd_error(a, "cannot claim yet", why);
		colo__arb_arm(a, RETRY_MS * 2);
		return;
	}
	if (a->sync.present && a->sync.gen > g) {
		snprintf(why, sizeof(why), "the cluster is at generation %" PRIu64 " (this "
			 "node's is %" PRIu64 "): superseded; start it as a secondary",
			 a->sync.gen, g);
		superseded(a, why);
		return;
	}
	if (a->sync.present && a->sync.gen == g && a->sync.node[0] && !a->ever_held &&
	    strcmp(a->sync.node, n->cfg.name) != 0) {
		snprintf(why, sizeof(why), "secondary %s holds the committed state of "
			 "generation %" PRIu64 ", and it takes over: start this node as "
			 "its secondary", a->sync.node, g);
		superseded(a, why);
		return;
	}
	put_sync = !a->sync.present || a->sync.gen < g;
	t = colo_etcd_txn_new();
	if (!t)
		goto oom;
	colo__arb_leader_value(a->my_leader, sizeof(a->my_leader), n->cfg.name, g, a->ttl_ms);
	if (colo_etcd_txn_create_rev_eq(t, a->key_leader, 0) ||
	    (a->sync.present ? colo_etcd_txn_mod_rev_eq(t, a->key_sync, a->sync.mod_rev) :
	     colo_etcd_txn_create_rev_eq(t, a->key_sync, 0)) ||
	    colo_etcd_txn_put(t, a->key_leader, a->my_leader, strlen(a->my_leader),
			      a->lease))
		goto oom_t;
	if (put_sync) {
		colo__arb_sync_value(sv, sizeof(sv), g, "");
		if (colo_etcd_txn_put(t, a->key_sync, sv, strlen(sv), 0))
			goto oom_t;
		a->sync_have[0] = '\0';
	} else {
		snprintf(a->sync_have, sizeof(a->sync_have), "%s", a->sync.node);
	}
	a->have_known = true;
	a->busy = true;
	a->t_call = colo_now_ns();
	if (colo_etcd_txn_run(a->etcd, t, on_claimed, a) != 0) {
		a->busy = false;
		a->have_known = false;
		colo__arb_arm(a, RETRY_MS);
	}
	return;
oom_t:
	colo_etcd_txn_free(t);
oom:
	colo_log_error("arbiter: out of memory");
	colo__arb_arm(a, RETRY_MS);
}

/* ---- HOLD: renew the lease, check the key, write the sync key ---- */

static void on_verified(void *ud, int rc, const struct colo_etcd_kv *kv, int64_t rev,
			const char *why)
{
	struct colo_arbiter *a = ud;
	struct seen s;
	char msg[384];

	(void)rev;
	a->busy = false;
	if (a->state != A_HOLD)
		return;
	if (rc) {
		colo__arb_etcd_error(a, "cannot read the leader key", why);
		colo__arb_arm(a, RETRY_MS);
		return;
	}
	colo__arb_seen(&s, kv);
	if (!s.present) {
		colo_log_warn("arbiter: the leader key vanished under a live lease: "
			      "claiming it again");
		a->valid_until_ns = 0;
		colo__arb_to(a, A_CLAIM);
		colo__arb_step(a);
		return;
	}
	if (strcmp(s.raw, a->my_leader) != 0) {
		snprintf(msg, sizeof(msg), "node %s took the leader key with generation %"
			 PRIu64 ": superseded", s.node[0] ? s.node : "?", s.gen);
		superseded(a, msg);
		return;
	}
	a->leader = s;
	colo__arb_renewed(a, a->t_call);
	tell_gate(a);
	colo__arb_step(a);
}

static void on_kept(void *ud, int rc, int64_t ttl_s, const char *why)
{
	struct colo_arbiter *a = ud;

	a->busy = false;
	if (a->state != A_HOLD)
		return;
	if (rc) {
		colo__arb_etcd_error(a, "cannot renew the lease", why);
		if (!a->lapse_logged && colo_now_ns() >= a->valid_until_ns) {
			colo_log_warn("arbiter: the lease could not be renewed in time: "
				      "nothing is released without a secondary until etcd "
				      "answers");
			a->lapse_logged = true;
		}
		colo__arb_arm(a, RETRY_MS);
		return;
	}
	colo__arb_etcd_ok(a);
	if (ttl_s <= 0) {
		colo_log_warn("arbiter: the lease expired in etcd: claiming the leader key "
			      "again");
		a->valid_until_ns = 0;
		a->lease = 0;
		colo__arb_to(a, A_GRANT);
		colo__arb_step(a);
		return;
	}
	/* The renewal counts from when it was sent, once the key is ours. */
	a->busy = true;
	if (colo_etcd_get(a->etcd, a->key_leader, on_verified, a) != 0) {
		a->busy = false;
		colo__arb_arm(a, RETRY_MS);
	}
}

static void on_sync_written(void *ud, int rc, bool ok, int64_t rev,
			    const struct colo_etcd_kv *const *kvs, size_t n, const char *why)
{
	struct colo_arbiter *a = ud;
	char msg[384];
	struct seen s;

	(void)rev;
	a->busy = false;
	if (a->state != A_HOLD)
		return;
	if (rc) {
		colo__arb_etcd_error(a, "cannot write the sync key", why);
		colo__arb_arm(a, RETRY_MS);
		return;
	}
	colo__arb_etcd_ok(a);
	if (!ok) {
		colo__arb_seen(&s, n > 0 ? kvs[0] : NULL);
		if (!s.present) {
			a->valid_until_ns = 0;
			colo__arb_to(a, A_CLAIM);
			colo__arb_step(a);
			return;
		}
		snprintf(msg, sizeof(msg), "node %s took the leader key with generation %"
			 PRIu64 ": superseded", s.node[0] ? s.node : "?", s.gen);
		superseded(a, msg);
		return;
	}
	snprintf(a->sync_have, sizeof(a->sync_have), "%s", a->pending_sync);
	colo_log_info("arbiter: %s%s", a->sync_have[0] ? "may take over: " :
		      "no secondary may take over (serving alone)", a->sync_have);
	tell_gate(a);
	colo__arb_step(a);
}

static void hold_step(struct colo_arbiter *a)
{
	uint64_t now = colo_now_ns();

	if (strcmp(a->sync_want, a->sync_have) != 0 || !a->have_known) {
		struct colo_etcd_txn *t = colo_etcd_txn_new();
		char sv[160];

		snprintf(a->pending_sync, sizeof(a->pending_sync), "%s", a->sync_want);
		colo__arb_sync_value(sv, sizeof(sv), a->n->generation, a->pending_sync);
		if (!t || colo_etcd_txn_value_eq(t, a->key_leader, a->my_leader,
						 strlen(a->my_leader)) ||
		    colo_etcd_txn_put(t, a->key_sync, sv, strlen(sv), 0) ||
		    colo_etcd_txn_else_get(t, a->key_leader)) {
			colo_etcd_txn_free(t);
			colo__arb_arm(a, RETRY_MS);
			return;
		}
		a->busy = true;
		a->t_call = now;
		if (colo_etcd_txn_run(a->etcd, t, on_sync_written, a) != 0) {
			a->busy = false;
			colo__arb_arm(a, RETRY_MS);
		}
		return;
	}
	if (now < a->next_renew_ns) {
		colo__arb_arm(a, (a->next_renew_ns - now) / 1000000 + 1);
		return;
	}
	a->busy = true;
	a->t_call = now;
	if (colo_etcd_keepalive(a->etcd, a->lease, on_kept, a) != 0) {
		a->busy = false;
		colo__arb_arm(a, RETRY_MS);
	}
}

/* ---- the machine ---- */

void colo__arb_step(struct colo_arbiter *a)
{
	int r = 0;

	if (a->busy || a->closing)
		return;
	switch (a->state) {
	case A_IDLE:
		a->busy = true;
		r = colo_etcd_get(a->etcd, a->step == 0 ? a->key_leader : a->key_sync,
				  colo__arb_on_watch_read, a);
		break;
	case A_TAKE:
		colo__arb_take_step(a);
		return;
	case A_GRANT:
		a->busy = true;
		a->t_call = colo_now_ns();
		r = colo_etcd_grant(a->etcd, (a->ttl_ms + 999) / 1000, colo__arb_on_granted, a);
		break;
	case A_CLAIM:
		if (a->step >= 2) {
			claim_decide(a);
			return;
		}
		a->busy = true;
		r = colo_etcd_get(a->etcd, a->step == 0 ? a->key_leader : a->key_sync,
				  on_claim_read, a);
		break;
	case A_HOLD:
		hold_step(a);
		return;
	case A_LOST:
		return;
	}
	if (r) {
		a->busy = false;
		colo__arb_arm(a, RETRY_MS);
	}
}

/* ---- public ---- */

int colo_arbiter_new(struct colo_node *n, struct colo_arbiter **out, struct colo_err *err)
{
	struct colo_arbiter *a;
	int r;

	*out = NULL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return colo_err_set(err, ENOMEM, "out of memory");
	a->n = n;
	a->ttl_ms = n->cfg.lease_ttl_ms;
	/* Renew four times a lease; stop serving alone a quarter before it
	 * could end in etcd (rates of clocks differ by far less). */
	a->renew_ms = a->ttl_ms / 4;
	a->margin_ms = a->ttl_ms / 4;
	snprintf(a->key_leader, sizeof(a->key_leader), "/colo/%s/leader", n->cfg.cluster);
	snprintf(a->key_sync, sizeof(a->key_sync), "/colo/%s/sync", n->cfg.cluster);
	snprintf(a->endpoints, sizeof(a->endpoints), "%s", n->cfg.etcd_endpoints);
	r = colo_etcd_new(n->loop, n->cfg.etcd_endpoints, a->renew_ms, &a->etcd, err);
	if (r) {
		free(a);
		return r;
	}
	uv_timer_init(n->loop, &a->timer);
	a->timer.data = a;
	a->timer_open = true;
	colo_log_info("arbiter: etcd at %s, keys under /colo/%s/, lease %u ms",
		      n->cfg.etcd_endpoints, n->cfg.cluster, a->ttl_ms);
	if (n->cfg.role == COLO_ROLE_SECONDARY)
		colo__arb_arm(a, 0);
	*out = a;
	return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
	free(h->data);
}

static void on_revoked(void *ud, int rc, const char *why)
{
	struct colo_arbiter *a = ud;

	if (rc)
		colo_log_warn("arbiter: could not give the lease back: %s (it ends within "
			      "%u ms)", why, a->ttl_ms);
	else
		colo_log_info("arbiter: lease given back");
	colo_etcd_close(a->etcd);
	a->etcd = NULL;
	uv_close((uv_handle_t *)&a->timer, on_timer_closed);
}

void colo_arbiter_close(struct colo_arbiter *a)
{
	if (!a || a->closing)
		return;
	a->closing = true;
	uv_timer_stop(&a->timer);
	a->take_done = NULL;
	/* A lease given back ends at once: a secondary need not wait it out. */
	if (a->lease && a->state == A_HOLD &&
	    colo_etcd_revoke(a->etcd, a->lease, on_revoked, a) == 0)
		return;
	colo_etcd_close(a->etcd);
	a->etcd = NULL;
	uv_close((uv_handle_t *)&a->timer, on_timer_closed);
}

void colo_arbiter_lead(struct colo_arbiter *a, const struct colo_arbiter_cb *cb, void *ud)
{
	a->cb = *cb;
	a->ud = ud;
	if (a->state == A_LOST) {
		uv_timer_start(&a->timer, on_lost_timer, 0, 0);
		return;
	}
	if (a->state == A_HOLD || a->state == A_GRANT || a->state == A_CLAIM)
		return;
	/* A watch read in flight finds the state changed and steps on. */
	uv_timer_stop(&a->timer);
	colo__arb_to(a, a->lease ? A_CLAIM : A_GRANT);
	colo__arb_step(a);
}

void colo_arbiter_set_secondary(struct colo_arbiter *a, const char *name)
{
	if (!a || strcmp(a->sync_want, name) == 0)
		return;
	snprintf(a->sync_want, sizeof(a->sync_want), "%s", name);
	if (a->state == A_HOLD)
		colo__arb_step(a);
}

bool colo_arbiter_may_serve_alone(const struct colo_arbiter *a)
{
	return a && can_serve_alone(a, colo_now_ns());
}

bool colo_arbiter_lease_valid(const struct colo_arbiter *a)
{
	return a && lease_valid(a, colo_now_ns());
}

int colo_arbiter_take(struct colo_arbiter *a, const char *from, colo_arbiter_take_cb done,
		      void *ud, struct colo_err *err)
{
	if (a->state != A_IDLE)
		return colo_err_set(err, EALREADY, "the arbiter is %s", colo__arb_names[a->state]);
	snprintf(a->from, sizeof(a->from), "%s", from);
	a->take_done = done;
	a->take_ud = ud;
	uv_timer_stop(&a->timer);
	colo__arb_to(a, A_TAKE);
	/* A watch read in flight finds the state changed and steps on. */
	colo__arb_step(a);
	return 0;
}

void colo_arbiter_status(const struct colo_arbiter *a, char *arbiter, size_t alen,
			 char *holder, size_t hlen, int64_t *left_ms, char *takeover,
			 size_t tlen)
{
	uint64_t now = colo_now_ns();

	snprintf(arbiter, alen, "etcd %s (cluster %s), %s%s%s", a->endpoints,
		 a->n->cfg.cluster, colo__arb_names[a->state], a->last_err[0] ? ": " : "",
		 a->last_err);
	if (a->state == A_HOLD)
		snprintf(holder, hlen, "%s (generation %" PRIu64 ")", a->n->cfg.name,
			 a->n->generation);
	else if (a->leader.present)
		snprintf(holder, hlen, "%s (generation %" PRIu64 ")", a->leader.node,
			 a->leader.gen);
	else
		snprintf(holder, hlen, "%s", "none");
	*left_ms = a->state == A_HOLD && a->valid_until_ns > now ?
		   (int64_t)((a->valid_until_ns - now) / 1000000) :
		   (a->state == A_HOLD ? 0 : -1);
	if (a->state == A_HOLD && a->have_known)
		snprintf(takeover, tlen, "%s", a->sync_have[0] ? a->sync_have : "none");
	else if (a->sync.present)
		snprintf(takeover, tlen, "%s", a->sync.node[0] ? a->sync.node : "none");
	else
		snprintf(takeover, tlen, "%s", "?");
}
