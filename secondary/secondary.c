/*
 * secondary.c: the secondary role engine (see secondary.h): its state
 * machine, the connection from the primary, engine ops, start and stop.
 *
 * One primary at a time.  What it sends is read by the function of the
 * engine's state (secondary_int.h has the states and their transitions):
 *   HELLO                 be32 length + Hello
 *   SYNC                  a whole savevm stream (header ... EOF, vmdesc)
 *   PROTECTED             CHECKPOINT_REQUEST
 *   REQUESTED             VMSTATE_SEND
 *   CKPT_RAM              RAM END section + EOF, pages into the RAM cache
 *   CKPT_SIZE             VMSTATE_SIZE + be64 n
 *   CKPT_DEV              n bytes of device stream
 * Anything else is a protocol error.  A connection that comes while one is
 * served, or after promotion, is heard out and refused with a Hello that
 * says why: a stale primary learns it was replaced.
 */
#include "config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "colo.pb-c.h"
#include "colomsg.h"
#include "hello.h"
#include "log.h"
#include "secondary_int.h"

/* ---- the state machine (secondary_int.h) ---- */

static const char *const state_names[S_STATES] = {
	[S_WAITING] = "waiting", [S_HELLO] = "hello", [S_AUTH] = "authenticating",
	[S_SYNC] = "syncing",
	[S_PROTECTED] = "protected", [S_REQUESTED] = "requested",
	[S_CKPT_RAM] = "checkpoint-ram", [S_CKPT_SIZE] = "checkpoint-size",
	[S_CKPT_DEV] = "checkpoint-devices", [S_PROMOTING] = "promoting",
	[S_PROMOTED] = "primary",
};

#define B(s) (1u << (s))
#define CONNECTED (B(S_HELLO) | B(S_AUTH) | B(S_SYNC) | B(S_PROTECTED) | B(S_REQUESTED) | \
		   B(S_CKPT_RAM) | B(S_CKPT_SIZE) | B(S_CKPT_DEV))

static const unsigned state_next[S_STATES] = {
	[S_WAITING] = B(S_HELLO) | B(S_WAITING) | B(S_PROMOTING),
	[S_HELLO] = B(S_AUTH) | B(S_SYNC) | B(S_WAITING),
	[S_AUTH] = B(S_SYNC) | B(S_WAITING),
	[S_SYNC] = B(S_PROTECTED) | B(S_WAITING),
	[S_PROTECTED] = B(S_REQUESTED) | B(S_WAITING),
	[S_REQUESTED] = B(S_CKPT_RAM) | B(S_WAITING),
	[S_CKPT_RAM] = B(S_CKPT_SIZE) | B(S_WAITING),
	[S_CKPT_SIZE] = B(S_CKPT_DEV) | B(S_WAITING),
	[S_CKPT_DEV] = B(S_PROTECTED) | B(S_WAITING),
	[S_PROMOTING] = B(S_PROMOTED),
	[S_PROMOTED] = 0,
};

/*
 * A full sync's progress, once a second while it lasts, for an operator
 * watching on a terminal (a log read later has the sync's start and end):
 * how much of the guest's RAM has arrived, how fast, how long still.
 */
static void on_sync_progress(uv_timer_t *t)
{
	struct colo_secondary *s = t->data;
	uint64_t total = 0, done = s->sync_pages * COLO_PAGE_SIZE, now = colo_now_ns();
	double secs = (double)(now - s->sync_t0_ns) / 1e9;
	/* The rate of the last second: the primary encodes before it sends. */
	double rate = secs > 0 && done > s->sync_done ? (double)(done - s->sync_done) / secs : 0;

	for (size_t b = 0; b < s->nblocks; b++)
		total += s->blocks[b]->length;
	if (done > total)
		done = total;
	if (rate > 0)
		colo_log_info("full sync from %s: %.0f%% of the RAM (%.1f of %.1f MiB), %.0f MB/s, "
			      "ETA %.0f s", s->primary_node, total ? 100.0 * (double)done /
			      (double)total : 100.0, (double)done / 1048576, (double)total / 1048576,
			      rate / 1e6, (double)(total - done) / rate);
	else
		colo_log_info("full sync from %s: %.0f%% of the RAM (%.1f of %.1f MiB), waiting "
			      "for more", s->primary_node, total ? 100.0 * (double)done /
			      (double)total : 100.0, (double)done / 1048576, (double)total / 1048576);
	s->sync_t0_ns = now;
	s->sync_done = done;
}

/* The progress period: SYNC_PROGRESS_MS, or COLO_SYNC_PROGRESS_MS when it
 * holds a number of milliseconds from 10 to 60000 (anything else is
 * ignored, with a warning). */
static uint64_t progress_period(void)
{
	const char *env = getenv("COLO_SYNC_PROGRESS_MS");
	char *end;
	unsigned long v;

	if (!env)
		return SYNC_PROGRESS_MS;
	errno = 0;
	v = strtoul(env, &end, 10);
	if (errno || end == env || *end || v < 10 || v > 60000) {
		colo_log_warn("COLO_SYNC_PROGRESS_MS='%s' is not a number of milliseconds from "
			      "10 to 60000: progress every %d ms", env, SYNC_PROGRESS_MS);
		return SYNC_PROGRESS_MS;
	}
	return v;
}

void secondary_to(struct colo_secondary *s, enum secondary_state to)
{
	assert(state_next[s->state] & B(to));
	/* Connected states have a connection; the others none. */
	assert(!(CONNECTED & B(to)) == !s->conn);
	if (s->state != to)
		colo_log_debug("state %s -> %s", state_names[s->state], state_names[to]);
	if (to == S_SYNC && s->state != S_SYNC && s->progress_on) {
		s->sync_t0_ns = colo_now_ns();
		s->sync_done = 0;
		uv_timer_start(&s->sync_progress, on_sync_progress, s->progress_ms,
			       s->progress_ms);
	} else if (to != S_SYNC && s->progress_on) {
		uv_timer_stop(&s->sync_progress);
	}
	s->state = to;
}

bool secondary_promoted(const struct colo_secondary *s)
{
	return s->state == S_PROMOTING || s->state == S_PROMOTED;
}

/* ---- losing the primary ---- */

/* Forget the primary's connection; what was committed stays. */
void secondary_drop_primary(struct colo_secondary *s, const char *why)
{
	bool syncing = s->state == S_SYNC;

	colo_repl_close(s->conn);
	s->conn = NULL;
	secondary_load_reset(s);
	secondary_cmp_reset(&s->cmp);
	uv_timer_stop(&s->handshake);
	colo_hello_auth_wipe(&s->auth);
	colo_session_wipe(&s->session);
	s->authed = false;
	s->tag_len = 0;
	s->sync_streamed = false;
	if (syncing) {
		/* A half-loaded sync leaves nothing to take over from. */
		s->have_committed = false;
	}
	if (!secondary_promoted(s))
		secondary_to(s, S_WAITING);
	if (why)
		colo_log_warn("primary %s: %s; %s", s->primary_node[0] ? s->primary_node :
			      "(hello)", why, s->have_committed ?
			      "keeping the last committed checkpoint" :
			      "no committed state to take over from");
}

void secondary_fail(struct colo_secondary *s, const char *why)
{
	s->n->stats.checkpoints_failed++;
	secondary_drop_primary(s, why);
}

/* ---- connections being refused ---- */

static bool refusing_add(struct colo_secondary *s, struct colo_repl_conn *c)
{
	for (int i = 0; i < SECONDARY_REFUSING_MAX; i++) {
		if (!s->refusing[i]) {
			s->refusing[i] = c;
			return true;
		}
	}
	return false;
}

static void refusing_close(struct colo_secondary *s, struct colo_repl_conn *c)
{
	for (int i = 0; i < SECONDARY_REFUSING_MAX; i++)
		if (s->refusing[i] == c)
			s->refusing[i] = NULL;
	colo_repl_close(c);
}

/*
 * A peer that did not prove the key: one line naming its address, the
 * connection closed, nothing of ours changed (what is committed, the
 * primary we protect).
 */
static void refuse_unproven(struct colo_secondary *s, struct colo_repl_conn *c,
			    const char *why)
{
	colo_log_error("refused primary at %s: %s", c->addr, why);
	s->n->stats.peers_refused++;
	if (c == s->conn)
		secondary_drop_primary(s, NULL);
	else
		refusing_close(s, c);
}

static void conn_lost(struct colo_repl_conn *c, void *owner, enum colo_repl_end end,
		      const char *why)
{
	struct colo_secondary *s = owner;

	if (c != s->conn) {
		refusing_close(s, c);
		return;
	}
	if (s->state == S_AUTH && end == COLO_REPL_CLOSED) {
		/* What a primary with another key does: our proof did not check. */
		refuse_unproven(s, c, "it closed without proving it has the key (another "
				"psk-file?)");
		return;
	}
	if (end == COLO_REPL_PROTOCOL && s->state != S_HELLO && s->state != S_AUTH)
		secondary_fail(s, why);      /* a sync or checkpoint went wrong */
	else
		secondary_drop_primary(s, end == COLO_REPL_PROTOCOL ? NULL : why);
}

/* ---- the Hello ---- */

static void send_hello(struct colo_secondary *s, struct colo_repl_conn *c, bool accepted,
		       const char *refusal, struct colo_hello_auth *a)
{
	struct colo_node *n = s->n;
	struct colo_hello h = {
		.protocol = COLO_REPL_VERSION,
		.node = n->cfg.name,
		.role = s->state == S_PROMOTED ? COLO_ROLE_PRIMARY : COLO_ROLE_SECONDARY,
		.generation = n->generation,
		.encodings = accepted ? s->encodings : n->cfg.encodings,
		.guest = n->machine,
		.heartbeat_port = s->hb ? colo_hb_port(s->hb) : 0,
		.accepted = accepted,
		.refusal = refusal,
		.encrypt = n->cfg.encrypt != 0,
		.compare = s->cmp.on,
	};

	colo_hello_send(c, &h, a);
}

/* Why this node will not be protecting the primary that said h on c. */
static bool refuse(struct colo_secondary *s, struct colo_repl_conn *c,
		   const struct colo_hello *h, char *why, size_t len)
{
	struct colo_node *n = s->n;

	if (colo_hello_check(h, n->cfg.name, n->machine, why, len) != 0)
		return true;
	if (h->generation < n->generation)
		snprintf(why, len, "refusing primary %s: its generation %" PRIu64
			 " is older than ours (%" PRIu64 ")", h->node, h->generation,
			 n->generation);
	else if (secondary_promoted(s))
		snprintf(why, len, "node %s is a primary now (generation %" PRIu64 ")",
			 n->cfg.name, n->generation);
	else if (c != s->conn)
		snprintf(why, len, "node %s already protects primary %s", n->cfg.name,
			 s->primary_node);
	else if (n->have_psk && h->encrypt != (n->cfg.encrypt != 0))
		snprintf(why, len, "primary %s has encrypt = %s, node %s %s: both must agree",
			 h->node, h->encrypt ? "yes" : "no", n->cfg.name,
			 n->cfg.encrypt ? "yes" : "no");
	else if (h->compare != s->cmp.on)
		snprintf(why, len, "primary %s has output-mode %s, node %s %s: both must "
			 "say compare or neither", h->node, h->compare ? "compare" :
			 "buffer or none", n->cfg.name, s->cmp.on ? "compare" :
			 "buffer or none");
	else
		return false;
	return true;
}

/* Heartbeats go to the primary's address, on the port its Hello names. */
static void heartbeat_peer(struct colo_secondary *s, uint32_t port)
{
	s->have_hb_peer = false;
	if (!port || colo_repl_peer_addr(s->conn, &s->hb_peer) != 0)
		return;
	if (s->hb_peer.ss_family == AF_INET)
		((struct sockaddr_in *)&s->hb_peer)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)&s->hb_peer)->sin6_port = htons((uint16_t)port);
	s->have_hb_peer = true;
}

/* The primary is who it said (or nobody is checked): its full sync comes. */
static bool accept_primary(struct colo_secondary *s, struct colo_repl_conn *c)
{
	struct colo_node *n = s->n;

	snprintf(s->primary_node, sizeof(s->primary_node), "%s", s->pending.node);
	colo_repl_set_peer(c, s->primary_node);
	s->primary_gen = s->pending.generation;
	s->sync_seq = s->pending.sync_seq;
	/* Heartbeats start once the sync made its generation ours (load.c). */
	heartbeat_peer(s, s->pending.heartbeat_port);
	uv_timer_stop(&s->handshake);
	if (secondary_sync_begin(s) != 0) {
		secondary_drop_primary(s, "out of memory");
		return false;
	}
	secondary_to(s, S_SYNC);
	n->stats.full_syncs++;
	colo_log_info("primary %s (generation %" PRIu64 ") connected%s; loading its full "
		      "sync", s->primary_node, s->primary_gen,
		      !s->authed ? "" : colo_repl_sealed(c) ?
		      " and proved the key; the connection is encrypted" :
		      " and proved the key");
	return true;
}

/* A Hello on c (the primary's connection, or one being refused). */
static bool rx_hello_on(struct colo_secondary *s, struct colo_repl_conn *c)
{
	struct colo_node *n = s->n;
	struct colo_hello_auth local, *a = c == s->conn ? &s->auth : &local;
	struct colo_hello h;
	struct colo_err err;
	char why[768];
	bool go = false;
	int r;

	colo_err_clear(&err);
	if (colo_hello_auth_init(a, n->have_psk ? n->psk : NULL, &err) != 0) {
		colo_log_error("%s", err.msg);
		refuse_unproven(s, c, "cannot start the handshake");
		return false;
	}
	r = colo_hello_take(c, &h, a, &err);
	if (r == 0) {
		colo_hello_auth_wipe(a);
		return false;
	}
	if (r < 0) {
		colo_hello_auth_wipe(&local);
		colo_repl_protocol_error(c, "%s", err.msg);
		return false;
	}
	if (a->keyed && !h.authenticated) {
		/* It cannot check an answer: say why in the clear, prove nothing. */
		snprintf(why, sizeof(why), "node %s authenticates its peers: primary %s has "
			 "no psk-file", n->cfg.name, h.node);
		send_hello(s, c, false, why, NULL);
		refuse_unproven(s, c, "it did not authenticate (no psk-file there?)");
	} else if (!a->keyed && h.has_nonce) {
		snprintf(why, sizeof(why), "node %s has no psk-file: primary %s has one",
			 n->cfg.name, h.node);
		colo_log_warn("%s", why);
		send_hello(s, c, false, why, NULL);
		refuse_unproven(s, c, "it authenticates, this node has no psk-file");
	} else if (refuse(s, c, &h, why, sizeof(why))) {
		colo_log_warn("%s (from %s%s)", why, c->addr,
			      a->keyed ? ", which has not proven the key yet" : "");
		/* Keyed, the refusal is proven: the primary may believe our
		 * generation (and stop if it is newer). */
		send_hello(s, c, false, why, a);
		if (c == s->conn)
			secondary_drop_primary(s, NULL);
		else
			refusing_close(s, c);
	} else {
		s->encodings = colo_hello_agree(h.encodings, n->cfg.encodings);
		snprintf(s->pending.node, sizeof(s->pending.node), "%s", h.node);
		s->pending.generation = h.generation;
		s->pending.sync_seq = h.sync_seq;
		s->pending.heartbeat_port = h.heartbeat_port;
		go = true;
	}
	colo_hello_release(&h);
	colo_hello_auth_wipe(&local);
	if (!go)
		return false;
	if (!a->keyed) {
		if (!accept_primary(s, c))
			return false;
		send_hello(s, c, true, NULL, NULL);
		return true;
	}
	/* Our answer and its proof; the primary proves itself next. */
	send_hello(s, c, true, NULL, a);
	secondary_to(s, S_AUTH);
	return true;
}

/* ---- what the primary sends, one reader per state ---- */

/*
 * Each returns true when it consumed something and the engine may go on
 * with what follows, false when it waits for more bytes or the connection
 * went.
 */
typedef bool (*rx_fn)(struct colo_secondary *s);

static bool rx_hello(struct colo_secondary *s)
{
	return rx_hello_on(s, s->conn);
}

/* The primary's proof: it has the key and answered our nonce. */
static bool rx_auth(struct colo_secondary *s)
{
	struct colo_node *n = s->n;
	struct colo_err err;
	int r;

	colo_err_clear(&err);
	r = colo_hello_take_proof(s->conn, &s->auth, &err);
	if (r == 0)
		return false;
	if (r < 0) {
		refuse_unproven(s, s->conn, err.msg);
		return false;
	}
	colo_hello_session(&s->auth, &s->session);
	s->authed = true;
	/* encrypt = yes: everything after its proof is sealed, both ways. */
	if (n->cfg.encrypt &&
	    colo_repl_seal(s->conn, s->session.answerer_to_opener,
			   s->session.opener_to_answerer, &err) != 0) {
		colo_log_error("%s", err.msg);
		secondary_drop_primary(s, NULL);
		return false;
	}
	return accept_primary(s, s->conn);
}

/* Authenticated: the 32-byte tag after a sync or checkpoint; true once whole. */
static bool rx_tag(struct colo_secondary *s)
{
	size_t want = sizeof(s->tag) - s->tag_len, avail = colo_repl_rx_len(s->conn);
	size_t take = avail < want ? avail : want;

	memcpy(s->tag + s->tag_len, colo_repl_rx(s->conn), take);
	colo_repl_consume(s->conn, take);
	s->tag_len += take;
	return s->tag_len == sizeof(s->tag);
}

/*
 * A savevm stream (the sync, a checkpoint's RAM part) into the reader, a
 * slice at a time.  Once this turn of the loop has run for TURN_BUDGET_NS,
 * the rest waits for the next turn (s->yield), so that no turn decodes for
 * much longer than that.  The slice is small because a page's cost is not
 * its bytes': a zero page is 9 bytes of the stream and, in a page of the
 * cache touched for the first time, a page fault (14-19 us on some
 * paravirtual hosts), so 1 KiB of a sync can be 1.5 ms.
 */
#define FEED_SLICE 1024
#define TURN_BUDGET_NS 4000000ull

static int rx_stream(struct colo_secondary *s, const char *what)
{
	for (;;) {
		size_t avail = colo_repl_rx_len(s->conn), used = 0;
		size_t len = avail < FEED_SLICE ? avail : FEED_SLICE;
		int r = secondary_feed(s, colo_repl_rx(s->conn), len, &used);

		if (r < 0) {
			colo_repl_protocol_error(s->conn, "%s: %s", what,
						 colo_stream_reader_error(s->reader));
			return -1;
		}
		colo_repl_consume(s->conn, used);
		if (r > 0 || used < len || used == avail)
			return r;
		if (colo_node_turn_spent(s->n, TURN_BUDGET_NS)) {
			s->yield = true;
			return 0;
		}
	}
}

static bool rx_sync(struct colo_secondary *s)
{
	if (!s->sync_streamed) {
		if (rx_stream(s, "bad full sync") <= 0)
			return false;
		s->sync_streamed = true;
		s->tag_len = 0;
	}
	if (s->authed) {
		if (!rx_tag(s))
			return false;
		if (!colo_ckpt_tag_ok(s->session.ckpt, 'S', s->primary_gen, s->sync_seq,
				      XXH3_64bits_digest(s->hash), s->tag)) {
			colo_repl_protocol_error(s->conn, "full sync refused: its tag does not "
						 "check (altered on the way?)");
			return false;
		}
	}
	s->sync_streamed = false;
	if (secondary_sync_done(s) != 0)
		return false;
	secondary_to(s, S_PROTECTED);
	return true;
}

/* The next be32 COLO message, if it is `want`; a protocol error if not. */
static int rx_message(struct colo_secondary *s, uint32_t want)
{
	uint32_t m;

	if (colo_repl_rx_len(s->conn) < 4)
		return 0;
	m = colo_load_be32(colo_repl_rx(s->conn));
	if (m != want) {
		colo_repl_protocol_error(s->conn, "unexpected message %u (%s) while %s: "
					 "expected %s", m, colo_msg_name(m),
					 state_names[s->state], colo_msg_name(want));
		return -1;
	}
	colo_repl_consume(s->conn, 4);
	return 1;
}

static bool rx_request(struct colo_secondary *s)
{
	int f = secondary_cmp_rx(s);

	if (f != 2)
		return f == 1;
	if (rx_message(s, COLO_MSG_CHECKPOINT_REQUEST) <= 0)
		return false;
	secondary_to(s, S_REQUESTED);
	colo_repl_send_msg(s->conn, COLO_MSG_CHECKPOINT_REPLY);
	return true;
}

static bool rx_send(struct colo_secondary *s)
{
	int f = secondary_cmp_rx(s);

	if (f != 2)
		return f == 1;
	if (rx_message(s, COLO_MSG_VMSTATE_SEND) <= 0)
		return false;
	secondary_ckpt_begin(s);
	secondary_to(s, S_CKPT_RAM);
	return true;
}

static bool rx_ckpt_ram(struct colo_secondary *s)
{
	int r = rx_stream(s, "bad checkpoint");

	if (r <= 0)
		return false;
	secondary_to(s, S_CKPT_SIZE);
	return true;
}

static bool rx_size(struct colo_secondary *s)
{
	uint64_t n;

	if (colo_repl_rx_len(s->conn) >= 4 &&
	    colo_load_be32(colo_repl_rx(s->conn)) == COLO_MSG_VMSTATE_SIZE &&
	    colo_repl_rx_len(s->conn) < 12)
		return false;                 /* its be64 is on the way */
	if (rx_message(s, COLO_MSG_VMSTATE_SIZE) <= 0)
		return false;
	n = colo_load_be64(colo_repl_rx(s->conn));
	if (n > COLO_DEVSTATE_MAX) {
		colo_repl_protocol_error(s->conn, "VMSTATE_SIZE of %" PRIu64 " bytes (at most "
					 "%u)", n, COLO_DEVSTATE_MAX);
		return false;
	}
	colo_repl_consume(s->conn, 8);
	s->dev_len = n;
	colo_buf_reset(&s->dev);
	s->tag_len = 0;
	secondary_to(s, S_CKPT_DEV);
	return true;
}

static bool rx_dev(struct colo_secondary *s)
{
	size_t want = (size_t)(s->dev_len - s->dev.len), avail = colo_repl_rx_len(s->conn);
	size_t take = avail < want ? avail : want;

	colo_buf_put(&s->dev, colo_repl_rx(s->conn), take);
	colo_repl_consume(s->conn, take);
	if (s->dev.len < s->dev_len)
		return false;
	if (s->authed && !rx_tag(s))
		return false;
	if (secondary_ckpt_done(s) != 0)
		return false;
	secondary_to(s, S_PROTECTED);
	return true;
}

static const rx_fn rx_by_state[S_STATES] = {
	[S_HELLO] = rx_hello,
	[S_AUTH] = rx_auth,
	[S_SYNC] = rx_sync,
	[S_PROTECTED] = rx_request,
	[S_REQUESTED] = rx_send,
	[S_CKPT_RAM] = rx_ckpt_ram,
	[S_CKPT_SIZE] = rx_size,
	[S_CKPT_DEV] = rx_dev,
};

static void conn_read(struct colo_repl_conn *c, void *owner, size_t nread)
{
	struct colo_secondary *s = owner;

	if (c != s->conn) {
		/* Heard out, then refused (or closed on a bad Hello). */
		rx_hello_on(s, c);
		return;
	}
	s->n->stats.bytes_received += nread;
	s->yield = false;
	while (s->conn == c && colo_repl_rx_len(c) && rx_by_state[s->state](s))
		;
	if (s->conn == c && s->yield)
		colo_repl_yield(c);
	if (s->conn == c)
		secondary_cmp_flush(s);
}

static const struct colo_repl_ops conn_ops = {
	.read = conn_read,
	.lost = conn_lost,
};

static void on_handshake_timeout(uv_timer_t *t)
{
	struct colo_secondary *s = t->data;

	if (s->conn && (s->state == S_HELLO || s->state == S_AUTH)) {
		colo_log_warn("replication connection from %s closed: no %s within %d ms",
			      s->conn->addr, s->state == S_HELLO ? "Hello" : "proof of the key",
			      COLO_HELLO_TIMEOUT_MS);
		secondary_drop_primary(s, NULL);
	}
}

static void on_connection(uv_stream_t *server, int status)
{
	struct colo_secondary *s = server->data;
	struct colo_repl_conn *c;
	struct colo_err err;

	if (status < 0) {
		colo_log_warn("replication listener: %s", uv_strerror(status));
		return;
	}
	colo_err_clear(&err);
	if (colo_repl_accept(server, &conn_ops, s, &c, &err) != 0) {
		colo_log_warn("%s", err.msg);
		return;
	}
	/* Busy or promoted: hear it out, then refuse (conn_read). */
	if (secondary_promoted(s) || s->conn) {
		if (!refusing_add(s, c)) {
			colo_log_warn("replication connection from %s closed: %d others are "
				      "being refused already", c->addr, SECONDARY_REFUSING_MAX);
			colo_repl_close(c);
		}
		return;
	}
	s->conn = c;
	secondary_to(s, S_HELLO);
	/* A peer that connects and never finishes would keep the primary out. */
	uv_timer_start(&s->handshake, on_handshake_timeout, COLO_HELLO_TIMEOUT_MS, 0);
}

/* ---- engine ops ---- */

static void eng_status(void *eng, char *state, size_t slen, char *peer, size_t plen,
		       char *peer_state, size_t pslen, uint64_t *last, char *enc,
		       size_t elen)
{
	struct colo_secondary *s = eng;
	uint64_t since = s->hb ? colo_hb_since_last(s->hb) : UINT64_MAX;
	/* A checkpoint being received is a detail of being protected. */
	bool protecting = s->state >= S_PROTECTED && s->state <= S_CKPT_DEV;

	snprintf(state, slen, "%s", protecting ? "protected" : state_names[s->state]);
	snprintf(peer, plen, "%s", s->primary_node[0] ? s->primary_node : "-");
	if (!s->primary_node[0])
		snprintf(peer_state, pslen, "none");
	else if (since == UINT64_MAX || since > (uint64_t)s->n->cfg.heartbeat_timeout_ms *
		 1000000ull)
		snprintf(peer_state, pslen, "%s, no heartbeat", s->conn ? "connected" :
			 "disconnected");
	else
		snprintf(peer_state, pslen, "%s, alive", s->conn ? "connected" :
			 "disconnected");
	*last = s->last_committed;
	if (s->state == S_SYNC || protecting)
		colo_encodings_format(s->encodings, enc, elen);
	else
		snprintf(enc, elen, "-");
}

static int eng_failover(void *eng, char *msg, size_t len, struct colo_err *err)
{
	return secondary_failover(eng, msg, len, err);
}

static int eng_set_interval(void *eng, uint32_t ms, char *msg, size_t len,
			    struct colo_err *err)
{
	(void)eng; (void)ms; (void)msg; (void)len;
	return colo_err_set(err, EINVAL, "this node is a secondary: the checkpoint "
			    "interval is set on the primary");
}

static int eng_checkpoint(void *eng, struct colo_ctl_pending *p, struct colo_err *err)
{
	(void)eng; (void)p;
	return colo_err_set(err, EINVAL, "this node is a secondary: checkpoints are "
			    "taken by the primary");
}

static void eng_reloaded(void *eng)
{
	(void)eng;
}

/* SIGTERM, as the active engine or (after promotion) as a stop hook. */
static void eng_stop(void *eng)
{
	struct colo_secondary *s = eng;

	if (s->stopped)
		return;
	s->stopped = true;
	colo_repl_close(s->conn);
	s->conn = NULL;
	for (int i = 0; i < SECONDARY_REFUSING_MAX; i++)
		refusing_close(s, s->refusing[i]);
	uv_close((uv_handle_t *)&s->listener, NULL);
	uv_close((uv_handle_t *)&s->handshake, NULL);
	uv_close((uv_handle_t *)&s->arb_timer, NULL);
	if (s->progress_on) {
		s->progress_on = false;
		uv_close((uv_handle_t *)&s->sync_progress, NULL);
	}
	colo_hello_auth_wipe(&s->auth);
	colo_session_wipe(&s->session);
	colo_hb_stop(s->hb);
	s->hb = NULL;
}

/* Checkpoints are decoded in place (cache.h): verify swaps the committed
 * pages back in while it reads. */
static void eng_committed_view(void *eng, bool on)
{
	struct colo_secondary *s = eng;

	(void)on;                     /* a swap is its own inverse */
	ram_cache_swap(&s->cache);
}

static const struct colo_engine_ops secondary_ops = {
	.role = COLO_ROLE_SECONDARY,
	.status = eng_status,
	.failover = eng_failover,
	.set_interval = eng_set_interval,
	.checkpoint = eng_checkpoint,
	.reloaded = eng_reloaded,
	.stop = eng_stop,
	.committed_view = eng_committed_view,
};

static void on_newer_generation(void *ud, const char *node, uint64_t gen)
{
	(void)ud; (void)node; (void)gen;   /* a secondary adopts it at sync */
}

/* ---- public ---- */

int colo_secondary_start(struct colo_node *n, struct colo_secondary **out,
			 struct colo_err *err)
{
	struct colo_hb_cb cb = { secondary_on_peer_dead, on_newer_generation, NULL };
	struct sockaddr_storage ss;
	struct colo_secondary *s;
	int r;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return colo_err_set(err, ENOMEM, "out of memory");
	s->n = n;
	s->state = S_WAITING;
	cb.ud = s;
	s->encodings = n->cfg.encodings;
	s->nblocks = colo_ram_nblocks(n->ram);
	s->blocks = calloc(s->nblocks ? s->nblocks : 1, sizeof(*s->blocks));
	if (!s->blocks) {
		r = colo_err_set(err, ENOMEM, "out of memory");
		goto fail;
	}
	for (size_t b = 0; b < s->nblocks; b++)
		s->blocks[b] = colo_ram_block_at(n->ram, b);
	r = secondary_load_init(s, err);
	if (r == 0)
		r = secondary_cmp_init(s, err);
	if (r)
		goto fail;
	r = colo_addr_sockaddr(&n->cfg.listen, &ss, err);
	if (r)
		goto fail;
	r = colo_hb_start(n->loop, &n->cfg.listen, &cb, &n->stats, &s->hb, err);
	if (r)
		goto fail;
	if (n->have_psk && (r = colo_hb_set_key(s->hb, n->psk, err)) != 0) {
		colo_hb_stop(s->hb);
		s->hb = NULL;
		goto fail;
	}
	colo_hb_set_identity(s->hb, n->cfg.name, COLO__ROLE__ROLE_SECONDARY, n->generation);
	uv_timer_init(n->loop, &s->handshake);
	uv_timer_init(n->loop, &s->arb_timer);
	s->arb_timer.data = s;
	s->handshake.data = s;
	uv_tcp_init(n->loop, &s->listener);
	s->listener.data = s;
	r = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0);
	/* Sync progress only for an operator watching (not a journal). */
	if (r == 0 && isatty(STDERR_FILENO)) {
		uv_timer_init(n->loop, &s->sync_progress);
		s->sync_progress.data = s;
		s->progress_on = true;
		s->progress_ms = progress_period();
	}
	if (r == 0)
		r = uv_listen((uv_stream_t *)&s->listener, 8, on_connection);
	if (r) {
		colo_err_set(err, -r, "cannot listen on %s:%u: %s", n->cfg.listen.host,
			     n->cfg.listen.port, uv_strerror(r));
		uv_close((uv_handle_t *)&s->listener, NULL);
		uv_close((uv_handle_t *)&s->handshake, NULL);
		if (s->progress_on) {
			s->progress_on = false;
			uv_close((uv_handle_t *)&s->sync_progress, NULL);
		}
		colo_hb_stop(s->hb);
		s->hb = NULL;
		r = -err->code;
		goto fail;
	}
	colo_node_set_engine(n, &secondary_ops, s);
	/* After a promotion the primary engine is the node's; this listener
	 * and heartbeat socket still have to close on SIGTERM. */
	colo_node_add_stop_hook(n, eng_stop, s);
	colo_log_info("secondary engine listening on %s:%u (generation %" PRIu64 ")",
		      n->cfg.listen.host, n->cfg.listen.port, n->generation);
	*out = s;
	return 0;
fail:
	colo_secondary_free(s);
	return r;
}

void colo_secondary_free(struct colo_secondary *s)
{
	if (!s)
		return;
	colo_primary_free(s->primary);
	secondary_load_free(s);
	secondary_cmp_free(s);
	free(s->blocks);
	free(s);
}
