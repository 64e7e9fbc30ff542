/*
 * primary.c: the primary role engine (see primary.h): its state machine,
 * the replication connection to the secondary, heartbeats, control
 * requests, start and stop.  The checkpoint pipeline is ckpt.c, output
 * commit output.c, compare mode's comparator compare.c; the states and
 * their transitions are documented in primary_int.h.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arbiter.h"
#include "colo.pb-c.h"
#include "colomsg.h"
#include "hello.h"
#include "log.h"
#include "pagecodec.h"
#include "primary_int.h"

#define RECONNECT_MS 500
#define RECONNECT_LOG_NS (10ull * 1000000000ull)

/* ---- the state machines (primary_int.h) ---- */

static const char *const state_names[P_STATES] = {
	[P_DEGRADED] = "degraded", [P_CONNECTING] = "connecting", [P_HELLO] = "hello",
	[P_SYNC] = "syncing", [P_PROTECTED] = "protected", [P_STOPPED] = "stopped",
};

static const char *const phase_names[CK_PHASES] = {
	[CK_IDLE] = "idle", [CK_STAGING] = "staging", [CK_ENCODING] = "encoding",
	[CK_REPLIED] = "replied", [CK_ENCODED] = "encoded", [CK_SENT] = "sent",
	[CK_RECEIVED] = "received", [CK_ABANDONED] = "abandoned",
};

#define B(s) (1u << (s))

static const unsigned state_next[P_STATES] = {
	[P_DEGRADED] = B(P_CONNECTING) | B(P_DEGRADED) | B(P_STOPPED),
	[P_CONNECTING] = B(P_HELLO) | B(P_DEGRADED) | B(P_STOPPED),
	[P_HELLO] = B(P_SYNC) | B(P_DEGRADED) | B(P_STOPPED),
	[P_SYNC] = B(P_PROTECTED) | B(P_DEGRADED) | B(P_STOPPED),
	[P_PROTECTED] = B(P_DEGRADED) | B(P_STOPPED),
	[P_STOPPED] = 0,
};

static const unsigned phase_next[CK_PHASES] = {
	[CK_IDLE] = B(CK_STAGING),
	/* ... -> IDLE: staging failed, or REQUEST could not be sent. */
	[CK_STAGING] = B(CK_ENCODING) | B(CK_ABANDONED) | B(CK_IDLE),
	/* ... -> IDLE from the encoding phases: the encoding failed, or could
	 * not be queued (the worker is not running). */
	[CK_ENCODING] = B(CK_REPLIED) | B(CK_ENCODED) | B(CK_SENT) | B(CK_ABANDONED) |
			B(CK_IDLE),
	[CK_REPLIED] = B(CK_SENT) | B(CK_ABANDONED) | B(CK_IDLE),
	[CK_ENCODED] = B(CK_SENT) | B(CK_IDLE),
	[CK_SENT] = B(CK_RECEIVED) | B(CK_IDLE),
	[CK_RECEIVED] = B(CK_IDLE),
	[CK_ABANDONED] = B(CK_IDLE),
};

void primary_to(struct colo_primary *p, enum primary_state to)
{
	assert(state_next[p->state] & B(to));
	if (p->state != to)
		colo_log_debug("state %s -> %s", state_names[p->state], state_names[to]);
	p->state = to;
}

void primary_ckpt_to(struct colo_primary *p, enum ckpt_phase to)
{
	assert(phase_next[p->phase] & B(to));
	/* A checkpoint between staging and acknowledgement exists only while
	 * a secondary is being synced or protects us. */
	assert(to == CK_IDLE || to == CK_ABANDONED || p->state == P_SYNC ||
	       p->state == P_PROTECTED);
	p->phase = to;
}

/* ---- losing the secondary ---- */

static void try_connect(uv_timer_t *t);

/* Run unprotected and look for a secondary again. */
void primary_go_degraded(struct colo_primary *p, const char *why)
{
	bool was_protected = p->state == P_PROTECTED || p->state == P_SYNC;

	if (p->state == P_STOPPED)
		return;
	if (why && was_protected)
		colo_log_warn("lost secondary %s (%s): running unprotected", p->peer_node, why);
	primary_to(p, P_DEGRADED);
	primary_cmp_lost(p);
	colo_repl_close(p->conn);
	p->conn = NULL;
	primary_ckpt_abandon(p);
	primary_clock_stop(p);
	/* Keep sending heartbeats: a secondary that still hears us must not
	 * take over while we serve.  Only stop listening for its. */
	colo_hb_watch(p->hb, NULL, 0);
	p->peer_node[0] = '\0';
	colo_hello_auth_wipe(&p->auth);
	colo_session_wipe(&p->session);
	p->authed = false;
	primary_answer_waiting(p, false, UINT64_MAX, "not protected: the secondary was lost");
	if (p->n->arb) {
		/* Held output goes once the arbiter lets this node serve alone
		 * (its secondary can no longer take over); until then it waits. */
		colo_arbiter_set_secondary(p->n->arb, "");
		p->alone_waits = true;
		primary_alone_round(p);
	} else {
		/* Held output must go: no client may hang on a lost secondary. */
		primary_out_epoch(p, 0);
		primary_out_release(p, UINT64_MAX);
	}
	uv_timer_start(&p->reconnect, try_connect, RECONNECT_MS, 0);
}

static void conn_lost(struct colo_repl_conn *c, void *owner, enum colo_repl_end end,
		      const char *why)
{
	struct colo_primary *p = owner;

	(void)c;
	if (end == COLO_REPL_PROTOCOL) {
		primary_go_degraded(p, "protocol error");
		return;
	}
	colo_log_warn("connection to secondary %s: %s", p->peer_node[0] ? p->peer_node :
		      "(hello)", why);
	primary_go_degraded(p, "connection lost");
}

/* ---- what the secondary says, by state ---- */

/* A secondary that failed authentication: one line, then try again later. */
static void refuse_secondary(struct colo_primary *p, const char *why, const char *its)
{
	colo_log_error("refused secondary at %s: %s%s%s", p->conn->addr, why,
		       its ? "; it said: " : "", its ? its : "");
	p->n->stats.peers_refused++;
	primary_go_degraded(p, NULL);
}

/* Both proved the key: prove ours, and start the session. */
static int primary_authenticated(struct colo_primary *p)
{
	struct colo_err err;

	if (colo_hello_prove(p->conn, &p->auth) != 0)
		return -EIO;
	colo_hello_session(&p->auth, &p->session);
	p->authed = true;
	/* encrypt = yes: everything after our proof is sealed, both ways. */
	colo_err_clear(&err);
	if (p->n->cfg.encrypt &&
	    colo_repl_seal(p->conn, p->session.opener_to_answerer,
			   p->session.answerer_to_opener, &err) != 0) {
		colo_log_error("%s", err.msg);
		return -EIO;
	}
	return 0;
}

/* Its Hello: accepted (the sync starts), or refused. */
static void rx_hello(struct colo_primary *p)
{
	struct colo_node *n = p->n;
	struct colo_hello h;
	struct colo_err err;
	char why[512];
	int r;

	colo_err_clear(&err);
	r = colo_hello_take(p->conn, &h, &p->auth, &err);
	if (r == 0)
		return;
	if (r == -EACCES) {
		refuse_secondary(p, err.msg, NULL);
		return;
	}
	if (r < 0) {
		colo_repl_protocol_error(p->conn, "%s", err.msg);
		return;
	}
	/* With a key, nothing a peer says counts before it proved it has it. */
	if (p->auth.keyed && !h.authenticated) {
		refuse_secondary(p, "it did not authenticate (no psk-file there?)", h.refusal);
		colo_hello_release(&h);
		return;
	}
	if (!h.accepted) {
		if (h.generation > n->generation) {
			colo_log_error("secondary %s has generation %" PRIu64 ", newer than ours "
				       "(%" PRIu64 "): another node took over; stopping", h.node,
				       h.generation, n->generation);
			colo_hello_release(&h);
			colo_node_exit(n, COLO_EXIT_SUPERSEDED);
			return;
		}
		colo_log_warn("secondary %s refused us: %s", h.node,
			      h.refusal ? h.refusal : "no reason given");
		colo_hello_release(&h);
		primary_go_degraded(p, "refused");
		return;
	}
	if (colo_hello_check(&h, n->cfg.name, n->machine, why, sizeof(why)) != 0) {
		colo_hello_release(&h);
		colo_repl_protocol_error(p->conn, "%s", why);
		return;
	}
	if (p->auth.keyed && h.encrypt != (n->cfg.encrypt != 0)) {
		colo_hello_release(&h);
		colo_repl_protocol_error(p->conn, "encrypt = %s there, %s here: both nodes "
					 "must agree", h.encrypt ? "yes" : "no",
					 n->cfg.encrypt ? "yes" : "no");
		return;
	}
	if (h.compare != p->cmp.on) {
		/* A secondary that accepted without checking (an older one). */
		colo_hello_release(&h);
		colo_repl_protocol_error(p->conn, "output-mode %s there, %s here: both nodes "
					 "must say compare or neither", h.compare ? "compare" :
					 "not compare", p->cmp.on ? "compare" : "not compare");
		return;
	}
	if (p->auth.keyed && primary_authenticated(p) != 0) {
		colo_hello_release(&h);
		primary_go_degraded(p, "cannot start the session");
		return;
	}
	p->encodings = colo_hello_agree(h.encodings, n->cfg.encodings);
	snprintf(p->peer_node, sizeof(p->peer_node), "%s", h.node);
	colo_repl_set_peer(p->conn, h.node);
	if (h.heartbeat_port) {
		struct sockaddr_storage hb = p->peer;

		if (hb.ss_family == AF_INET)
			((struct sockaddr_in *)&hb)->sin_port = htons((uint16_t)h.heartbeat_port);
		else
			((struct sockaddr_in6 *)&hb)->sin6_port = htons((uint16_t)h.heartbeat_port);
		colo_hb_send_to(p->hb, (struct sockaddr *)&hb, n->cfg.heartbeat_interval_ms,
				colo_node_stall_ms(n));
	}
	/* Its heartbeats start once the sync is loaded: watch from READY. */
	colo_hello_release(&h);
	colo_log_info("secondary %s accepted us%s; full sync", p->peer_node,
		      !p->authed ? "" : colo_repl_sealed(p->conn) ?
		      " and proved the key; the connection is encrypted" :
		      " and proved the key");
	uv_timer_stop(&p->reconnect);
	primary_to(p, P_SYNC);
	n->stats.full_syncs++;
	/* An abandoned checkpoint still encoding starts the sync when it returns. */
	if (p->phase == CK_IDLE)
		primary_sync_start(p);
}

/* CHECKPOINT_READY: the sync is loaded; checkpoints start. */
static void on_ready(struct colo_primary *p)
{
	primary_ckpt_committed(p);
	primary_to(p, P_PROTECTED);
	colo_hb_watch(p->hb, p->peer_node, p->n->cfg.heartbeat_timeout_ms);
	colo_log_info("protected by %s (generation %" PRIu64 ")", p->peer_node,
		      p->n->generation);
	/* It holds all that was released: from now on it may take over. */
	colo_arbiter_set_secondary(p->n->arb, p->peer_node);
	primary_schedule(p);
}

static void on_reply(struct colo_primary *p)
{
	if (p->phase == CK_SENT) {
		/* Sent eagerly, before the REPLY: noted, for RECEIVED. */
		if (!primary_eager(p) || p->cur->replied) {
			colo_repl_protocol_error(p->conn, "unexpected CHECKPOINT_REPLY (%u) while "
						 "protected, checkpoint sent%s",
						 COLO_MSG_CHECKPOINT_REPLY, p->cur->replied ?
						 " and already answered" : "");
			return;
		}
		p->cur->replied = true;
		primary_ckpt_pipeline(p);
		return;
	}
	p->cur->replied = true;
	if (p->phase == CK_ENCODING) {
		primary_ckpt_to(p, CK_REPLIED);       /* the rest once encoded */
		primary_ckpt_stream(p);
	} else {
		primary_ckpt_send(p);
	}
}

static void on_loaded(struct colo_primary *p)
{
	primary_ckpt_committed(p);
	primary_schedule(p);
}

/* What the secondary may send, in which state and checkpoint phase. */
static const struct {
	enum primary_state state;
	unsigned phases;                  /* B(phase) it may come in */
	void (*fn)(struct colo_primary *p);
} on_msg[COLO_MSG_COUNT] = {
	[COLO_MSG_CHECKPOINT_READY] = { P_SYNC, B(CK_SENT), on_ready },
	[COLO_MSG_CHECKPOINT_REPLY] = { P_PROTECTED, B(CK_ENCODING) | B(CK_ENCODED) |
					B(CK_SENT), on_reply },
	[COLO_MSG_VMSTATE_RECEIVED] = { P_PROTECTED, B(CK_SENT), primary_ckpt_received },
	[COLO_MSG_VMSTATE_LOADED] = { P_PROTECTED, B(CK_RECEIVED), on_loaded },
};

/* COLO messages, one be32 each, in SYNC and PROTECTED; OUTPUT frames. */
static void rx_messages(struct colo_primary *p)
{
	struct colo_repl_conn *c = p->conn;

	while (p->conn == c && colo_repl_rx_len(c) >= 4) {
		uint32_t m = colo_load_be32(colo_repl_rx(c));

		if (m == COLO_FRAME_OUTPUT) {
			if (!p->cmp.on || p->state != P_PROTECTED) {
				colo_repl_protocol_error(c, "unexpected OUTPUT while %s%s",
							 state_names[p->state], p->cmp.on ? "" :
							 " (output-mode is not compare)");
				return;
			}
			if (primary_cmp_rx(p) <= 0)
				return;
			continue;
		}
		colo_repl_consume(c, 4);
		if (p->prev) {
			primary_prev_message(p, m);
			continue;
		}
		if (m >= COLO_MSG_COUNT || !on_msg[m].fn || on_msg[m].state != p->state ||
		    !(on_msg[m].phases & B(p->phase))) {
			colo_repl_protocol_error(c, "unexpected %s (%u) while %s, checkpoint %s",
						 colo_msg_name(m), m, state_names[p->state],
						 phase_names[p->phase]);
			return;
		}
		on_msg[m].fn(p);
	}
}

static void conn_read(struct colo_repl_conn *c, void *owner, size_t nread)
{
	struct colo_primary *p = owner;

	p->n->stats.bytes_received += nread;
	while (p->conn == c && colo_repl_rx_len(c)) {
		enum primary_state before = p->state;

		if (p->state == P_HELLO)
			rx_hello(p);
		else if (p->state == P_SYNC || p->state == P_PROTECTED)
			rx_messages(p);
		else
			colo_repl_protocol_error(c, "%zu bytes while %s", colo_repl_rx_len(c),
						 state_names[p->state]);
		/* Only a change of state (the Hello taken) leaves bytes to go on with. */
		if (p->state == before)
			break;
	}
	/* Compare mode: what the OUTPUTs of this read matched goes in one go. */
	primary_cmp_tell(p);
}

/* ---- connecting ---- */

static void send_hello(struct colo_primary *p)
{
	struct colo_node *n = p->n;
	struct colo_hello h = {
		.protocol = COLO_REPL_VERSION,
		.node = n->cfg.name,
		.role = COLO_ROLE_PRIMARY,
		.generation = n->generation,
		.encodings = n->cfg.encodings,
		.guest = n->machine,
		.heartbeat_port = colo_hb_port(p->hb),
		/* Nothing else is numbered between this Hello and the sync. */
		.sync_seq = p->next_seq,
		.encrypt = n->cfg.encrypt != 0,
		.compare = p->cmp.on,
	};
	struct colo_err err;

	colo_err_clear(&err);
	if (colo_hello_auth_init(&p->auth, n->have_psk ? n->psk : NULL, &err) != 0) {
		colo_log_error("%s", err.msg);
		primary_go_degraded(p, "cannot start the handshake");
		return;
	}
	if (colo_hello_send(p->conn, &h, &p->auth) != 0)
		primary_go_degraded(p, "cannot send Hello");
}

static void hello_timeout(uv_timer_t *t)
{
	struct colo_primary *p = t->data;

	if (p->state != P_HELLO)
		return;
	colo_log_warn("secondary at %s: no answer to our Hello within %d ms", p->conn->addr,
		      COLO_HELLO_TIMEOUT_MS);
	primary_go_degraded(p, NULL);
}

static void conn_connected(struct colo_repl_conn *c, void *owner, int status)
{
	struct colo_primary *p = owner;

	(void)c;
	if (status) {
		uint64_t now = colo_now_ns();

		if (now - p->last_unreachable_log_ns > RECONNECT_LOG_NS) {
			colo_log_warn("cannot reach a secondary at %s:%u: %s; running "
				      "unprotected", p->n->cfg.peer.host, p->n->cfg.peer.port,
				      uv_strerror(status));
			p->last_unreachable_log_ns = now;
		}
		primary_go_degraded(p, NULL);
		return;
	}
	primary_to(p, P_HELLO);
	send_hello(p);
	/* A listener that never answers must not keep us from trying again. */
	if (p->state == P_HELLO)
		uv_timer_start(&p->reconnect, hello_timeout, COLO_HELLO_TIMEOUT_MS, 0);
}

static const struct colo_repl_ops conn_ops = {
	.connected = conn_connected,
	.read = conn_read,
	.lost = conn_lost,
};

static void try_connect(uv_timer_t *t)
{
	struct colo_primary *p = t->data;
	struct colo_err err;

	if (p->state != P_DEGRADED || p->conn)
		return;
	colo_err_clear(&err);
	primary_to(p, P_CONNECTING);
	if (colo_repl_connect(p->n->loop, (struct sockaddr *)&p->peer, &conn_ops, p, &p->conn,
			      &err) != 0)
		primary_go_degraded(p, NULL);
}

/* ---- heartbeat ---- */

static void on_peer_dead(void *ud)
{
	struct colo_primary *p = ud;

	if (p->state == P_SYNC || p->state == P_PROTECTED || p->state == P_HELLO)
		primary_go_degraded(p, "no heartbeat");
}

static void on_arb_gate(void *ud)
{
	primary_release_late(ud);
	primary_alone_round(ud);
}

static void on_arb_superseded(void *ud, const char *why)
{
	struct colo_primary *p = ud;

	colo_log_error("%s; stopping", why);
	colo_node_exit(p->n, COLO_EXIT_SUPERSEDED);
}

static void on_newer_generation(void *ud, const char *node, uint64_t gen)
{
	struct colo_primary *p = ud;

	colo_log_error("node %s has generation %" PRIu64 ", newer than ours (%" PRIu64
		       "): it took over; stopping", node, gen, p->n->generation);
	colo_node_exit(p->n, COLO_EXIT_SUPERSEDED);
}

/* ---- engine ops ---- */

static void eng_status(void *eng, char *state, size_t slen, char *peer, size_t plen,
		       char *peer_state, size_t pslen, uint64_t *last, char *enc,
		       size_t elen)
{
	struct colo_primary *p = eng;

	snprintf(state, slen, "%s", state_names[p->state]);
	snprintf(peer, plen, "%s:%u%s%s", p->n->cfg.peer.host, p->n->cfg.peer.port,
		 p->peer_node[0] ? " " : "", p->peer_node);
	snprintf(peer_state, pslen, "%s", p->conn && p->state >= P_HELLO &&
		 p->state != P_STOPPED ? "connected" : "disconnected");
	*last = p->last_committed;
	if (p->state == P_SYNC || p->state == P_PROTECTED)
		colo_encodings_format(p->encodings, enc, elen);
	else
		snprintf(enc, elen, "-");
}

static int eng_failover(void *eng, char *msg, size_t len, struct colo_err *err)
{
	(void)eng; (void)msg; (void)len;
	return colo_err_set(err, EINVAL, "this node is the primary: failover is "
			    "requested on the secondary");
}

static int eng_set_interval(void *eng, uint32_t ms, char *msg, size_t len,
			    struct colo_err *err)
{
	struct colo_primary *p = eng;

	if (ms < 1 || ms > 60000)
		return colo_err_set(err, EINVAL, "interval %u ms is outside 1..60000", ms);
	if (ms < p->n->cfg.min_interval_ms)
		return colo_err_set(err, EINVAL, "interval %u ms is below min-interval-ms "
				    "(%u)", ms, p->n->cfg.min_interval_ms);
	p->n->cfg.checkpoint_interval_ms = ms;
	if (p->n->gops->set_interval && p->n->guest)
		p->n->gops->set_interval(p->n->guest, ms);
	snprintf(msg, len, "checkpoint interval set to %u ms", ms);
	colo_log_info("checkpoint interval set to %u ms", ms);
	primary_schedule(p);
	return 0;
}

static int eng_checkpoint(void *eng, struct colo_ctl_pending *ctl, struct colo_err *err)
{
	struct colo_primary *p = eng;
	struct pending *w;

	if (p->state != P_PROTECTED && p->state != P_SYNC)
		return colo_err_set(err, EAGAIN, "not protected: no secondary to "
				    "checkpoint to (state %s)", state_names[p->state]);
	w = calloc(1, sizeof(*w));
	if (!w)
		return colo_err_set(err, ENOMEM, "out of memory");
	w->ctl = ctl;
	w->seq = p->next_seq;        /* the first to start from now on */
	w->next = p->waiting;
	p->waiting = w;
	primary_want(p, COLO_CAUSE_REQUEST);
	return 0;
}

static void eng_reloaded(void *eng)
{
	struct colo_primary *p = eng;

	if (!primary_buffering(p)) {         /* output-mode none from now on */
		primary_out_epoch(p, 0);
		primary_out_release(p, UINT64_MAX);
	}
	if (p->n->gops->set_interval && p->n->guest)
		p->n->gops->set_interval(p->n->guest, p->n->cfg.checkpoint_interval_ms);
	primary_schedule(p);
}

static void eng_stop(void *eng)
{
	struct colo_primary *p = eng;

	primary_to(p, P_STOPPED);
	/* Held replies are dropped with the guest's connections: their
	 * checkpoints were never acknowledged. */
	if (p->n->gops->output_notify && p->n->guest)
		p->n->gops->output_notify(p->n->guest, NULL, NULL);
	if (p->want_async_on) {
		p->want_async_on = false;
		uv_close((uv_handle_t *)&p->want_async, NULL);
	}
	/* An encoder thread still at work may find it closed: it then sends
	 * nothing (primary_on_chunk, primary_on_encoded), and
	 * colo_primary_free() joins it before anything it uses goes. */
	if (atomic_exchange(&p->chunk_async_on, false))
		uv_close((uv_handle_t *)&p->chunk_async, NULL);
	primary_cmp_stop(p);
	primary_answer_waiting(p, false, UINT64_MAX, "the node is stopping");
	colo_repl_close(p->conn);
	p->conn = NULL;
	primary_ckpt_abandon(p);
	primary_clock_close(p);
	uv_timer_stop(&p->reconnect);
	uv_close((uv_handle_t *)&p->reconnect, NULL);
	colo_hb_stop(p->hb);
	p->hb = NULL;
}

static const struct colo_engine_ops primary_ops = {
	.role = COLO_ROLE_PRIMARY,
	.status = eng_status,
	.failover = eng_failover,
	.set_interval = eng_set_interval,
	.checkpoint = eng_checkpoint,
	.reloaded = eng_reloaded,
	.stop = eng_stop,
};

/* ---- public ---- */

void colo_primary_want_checkpoint(struct colo_primary *p)
{
	primary_want(p, COLO_CAUSE_REQUEST);
}

uint64_t colo_primary_next_seq(const struct colo_primary *p)
{
	return p->next_seq;
}

bool colo_primary_protected(const struct colo_primary *p)
{
	return p->state == P_PROTECTED;
}

int colo_primary_start(struct colo_node *n, uint64_t first_seq, struct colo_primary **out,
		       struct colo_err *err)
{
	struct colo_hb_cb cb = { on_peer_dead, on_newer_generation, NULL };
	struct colo_addr any;
	struct colo_primary *p;
	unsigned threads;
	int r;

	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return colo_err_set(err, ENOMEM, "out of memory");
	p->n = n;
	p->tick_fd = -1;
	p->state = P_DEGRADED;
	p->phase = CK_IDLE;
	p->next_seq = first_seq;    /* the first full sync */
	p->last_committed = first_seq ? first_seq - 1 : 0;
	cb.ud = p;
	r = primary_fault_parse(&p->fault, n->cfg.fault, err);
	if (r) {
		free(p);
		return r;
	}
	colo_ram_stage_init(&p->stage);
	r = primary_clock_init(p, err);
	if (r)
		goto fail;
	r = colo_addr_sockaddr(&n->cfg.peer, &p->peer, err);
	if (r)
		goto fail;
	p->nblocks = colo_ram_nblocks(n->ram);
	p->blocks = calloc(p->nblocks ? p->nblocks : 1, sizeof(*p->blocks));
	p->shadows = calloc(p->nblocks ? p->nblocks : 1, sizeof(*p->shadows));
	if (!p->blocks || !p->shadows) {
		r = colo_err_set(err, ENOMEM, "out of memory");
		goto fail;
	}
	for (size_t b = 0; b < p->nblocks; b++) {
		p->blocks[b] = colo_ram_block_at(n->ram, b);
		r = colo_ram_shadow_init(&p->shadows[b], p->blocks[b]->name,
					 p->blocks[b]->length, err);
		if (r)
			goto fail;
	}
	threads = n->cfg.encode_threads ? n->cfg.encode_threads :
		  colo_ram_encoder_default_threads();
	r = colo_ram_encoder_new(threads, &p->enc, err);
	if (r)
		goto fail;
	/* Heartbeats leave on a port the Hello names: from any local address,
	 * or loopback's when the peer is on loopback (nobody else may reach a
	 * node without a key: node_sec.c). */
	memset(&any, 0, sizeof(any));
	if (colo_addr_is_loopback(n->cfg.peer.host))
		snprintf(any.host, sizeof(any.host), "%s", n->cfg.peer.host);
	else
		snprintf(any.host, sizeof(any.host), "%s",
			 strchr(n->cfg.peer.host, ':') ? "::" : "0.0.0.0");
	r = colo_hb_start(n->loop, &any, &cb, &n->stats, &p->hb, err);
	if (r == 0 && n->have_psk)
		r = colo_hb_set_key(p->hb, n->psk, err);
	if (r)
		goto fail;
	colo_hb_set_identity(p->hb, n->cfg.name, COLO__ROLE__ROLE_PRIMARY, n->generation);
	colo_hb_set_committed(p->hb, p->last_committed);
	if (n->arb) {
		/* No secondary yet: the guest answers once the arbiter says
		 * this node may serve alone. */
		primary_out_epoch(p, p->next_seq);
	} else {
		/* No secondary yet: the guest answers at once. */
		primary_out_epoch(p, 0);
		primary_out_release(p, UINT64_MAX);
	}
	/* Every reply waits on a checkpoint (buffer) or a comparison
	 * (compare) that this loop drives: a guest that can run on the loop
	 * saves the thread hand-offs of each (the want, the pause, the
	 * release), which on a small or busy host cost more than the thread
	 * gives (docs/kv.md, "Threads and the pause").  One already running
	 * (promoted here) keeps its threads. */
	if (n->gops->embed && n->guest && !n->guest_running) {
		r = n->gops->embed(n->guest, n->loop, err);
		if (r)
			goto fail;
		p->guest_embedded = true;
	}
	r = primary_cmp_init(p, err);
	if (r)
		goto fail;
	if (!n->guest_running) {
		r = colo_node_start_guest(n, err);
		if (r)
			goto fail;
	}
	/* Nothing fails from here: the handles need the loop to close. */
	uv_timer_init(n->loop, &p->reconnect);
	p->reconnect.data = p;
	primary_clock_start(p);
	uv_async_init(n->loop, &p->want_async, primary_on_want_async);
	p->want_async.data = p;
	p->want_async_on = true;
	uv_async_init(n->loop, &p->chunk_async, primary_on_chunk_async);
	p->chunk_async.data = p;
	atomic_store(&p->chunk_async_on, true);
	colo_ram_encoder_on_chunk(p->enc, primary_on_chunk, p);
	colo_ram_encoder_on_done(p->enc, primary_on_encoded, p);
	if (n->gops->output_notify && n->guest)
		n->gops->output_notify(n->guest, primary_want_from_guest, p);
	primary_cmp_start(p);
	if (n->gops->set_interval && n->guest)
		n->gops->set_interval(n->guest, n->cfg.checkpoint_interval_ms);
	colo_node_set_engine(n, &primary_ops, p);
	if (n->arb) {
		static const struct colo_arbiter_cb acb = { on_arb_gate, on_arb_superseded };

		colo_arbiter_lead(n->arb, &acb, p);
	}
	colo_log_info("primary engine started: peer %s:%u, interval %u ms, %u encode "
		      "threads, dirty tracking %s", n->cfg.peer.host, n->cfg.peer.port,
		      n->cfg.checkpoint_interval_ms, threads,
		      colo_ram_tracking_reason(n->ram));
	uv_timer_start(&p->reconnect, try_connect, 0, 0);
	*out = p;
	return 0;
fail:
	colo_primary_free(p);
	return r;
}

void colo_primary_free(struct colo_primary *p)
{
	if (!p)
		return;
	/* First: a job under way works on the stage and the shadows. */
	colo_ram_encoder_free(p->enc);
	p->enc = NULL;
	primary_ckpt_encoder_gone(p);
	for (size_t b = 0; p->shadows && b < p->nblocks; b++)
		colo_ram_shadow_free(&p->shadows[b]);
	free(p->shadows);
	free(p->blocks);
	primary_cmp_stop(p);
	primary_cmp_free(p);
	colo_ram_stage_free(&p->stage);
	if (p->hb)
		colo_hb_stop(p->hb);
	if (p->tick_fd >= 0)
		close(p->tick_fd);      /* its poll handle was closed by eng_stop */
	free(p);
}
