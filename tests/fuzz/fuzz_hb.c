/*
 * fuzz_hb.c: libFuzzer target for what a node does with a heartbeat
 * datagram (colo_hb_receive, hb.h): the protobuf decoder, the MAC and
 * replay checks, the generation guard and the watch.
 *
 * One node per process, made when the first input comes: a struct colo_hb
 * bound to 127.0.0.1 port 0 on a loop that never runs (receiving only arms
 * its timer), at generation FUZZ_HB_GENERATION, watching "peer", with a
 * key drawn at random; and a second one, with another random key, that
 * only signs (ROGUE).  As the key is random, no input can carry a genuine
 * MAC: only what the target signs itself is genuine.  The input layout is
 * in fuzz_auth.h.
 *
 * Promises checked (abort() with a message, so libFuzzer keeps the input):
 *   - every non-empty datagram is counted once, received or refused;
 *   - a datagram the target did not sign with the node's key (RAW, ROGUE,
 *     an EDITED copy of a genuine one) changes nothing: no newer
 *     generation reported, heartbeats_received (which moves exactly when
 *     the watch is re-armed and the last valid time set) unchanged;
 *   - a SIGNED heartbeat is believed exactly when hb.h says: its seq above
 *     the highest accepted from its sender (the target keeps its own
 *     account of those), its generation not older than the node's, its
 *     sender the watched one; a newer generation is reported, with its
 *     sender and number, exactly then; fed again it changes nothing;
 *   - no crash, leak or undefined behaviour (the sanitizers).
 *
 * The node remembers its senders' seqs from one input to the next, as a
 * running node does, and the target's account goes along; an input's seq
 * is relative to that account, so every input means the same kind of
 * heartbeat whatever ran before it.  FUZZ_VERBOSE=1 prints a line per run.
 */
#include "config.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <uv.h>

#include "buf.h"
#include "fuzz_auth.h"
#include "fuzz_check.h"
#include "hb.h"
#include "log.h"
#include "role.h"
#include "stats.h"

/* The largest datagram the node reads (hb.c's HB_MAX). */
#define DGRAM_MAX 512

static const char *const nodes[FUZZ_HB_NODE_COUNT] = FUZZ_HB_NODES;
static const uint64_t generations[FUZZ_HB_GENERATION_COUNT] = FUZZ_HB_GENERATIONS;

struct target {
	uv_loop_t loop;
	struct colo_hb *hb, *rogue;
	struct colo_stats stats, rogue_stats;
	struct sockaddr_in from;
	uint64_t newer;                         /* newer_generation calls */
	char newer_node[64];
	uint64_t newer_gen;
	bool known[FUZZ_HB_NODE_COUNT];         /* the node holds a seq for it */
	uint64_t seq[FUZZ_HB_NODE_COUNT];       /* that seq */
};

/* What one datagram moved. */
struct moved {
	uint64_t received, refused, newer;
};

static void on_newer(void *ud, const char *node, uint64_t generation)
{
	struct target *t = ud;

	t->newer++;
	snprintf(t->newer_node, sizeof(t->newer_node), "%s", node);
	t->newer_gen = generation;
}

static struct colo_hb *node_start(struct target *t, const struct colo_hb_cb *cb,
				  struct colo_stats *stats)
{
	static const struct colo_addr any = { "127.0.0.1", 0 };
	uint8_t key[COLO_PSK_BYTES];
	struct colo_hb *hb;
	struct colo_err err;

	colo_err_clear(&err);
	CHECK(colo_sodium_init(&err) == 0, "libsodium: %s", err.msg);
	CHECK(colo_hb_start(&t->loop, &any, cb, stats, &hb, &err) == 0, "heartbeat socket: %s",
	      err.msg);
	randombytes_buf(key, sizeof(key));
	CHECK(colo_hb_set_key(hb, key, &err) == 0, "key: %s", err.msg);
	sodium_memzero(key, sizeof(key));
	return hb;
}

/* The node, made once; it lives as long as the process. */
static struct target *target(void)
{
	static struct target t;
	static bool made;
	const struct colo_hb_cb cb = { .newer_generation = on_newer, .ud = &t };
	const struct colo_hb_cb none = { .ud = NULL };

	if (made)
		return &t;
	/* A refusal line a second would bury libFuzzer's own. */
	if (!fuzz_verbose())
		colo_log_set_level(COLO_LOG_ERROR);
	CHECK(uv_loop_init(&t.loop) == 0, "no loop");
	t.hb = node_start(&t, &cb, &t.stats);
	colo_hb_set_identity(t.hb, "self", COLO_ROLE_PRIMARY, FUZZ_HB_GENERATION);
	/* A timeout the never-running loop cannot reach: only re-armed. */
	colo_hb_watch(t.hb, nodes[0], 600000);
	t.rogue = node_start(&t, &none, &t.rogue_stats);
	t.from.sin_family = AF_INET;
	t.from.sin_port = htons(7071);
	t.from.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	made = true;
	return &t;
}

/* One datagram to the node: what it moved, counted once if it had bytes. */
static struct moved feed(struct target *t, const uint8_t *d, size_t n, const char *what)
{
	struct moved m = { t->stats.heartbeats_received, t->stats.heartbeats_refused,
			   t->newer };

	colo_hb_receive(t->hb, d, n, (const struct sockaddr *)&t->from);
	m.received = t->stats.heartbeats_received - m.received;
	m.refused = t->stats.heartbeats_refused - m.refused;
	m.newer = t->newer - m.newer;
	CHECK(m.received + m.refused == (n ? 1u : 0u), "%s of %zu bytes: counted received "
	      "%" PRIu64 " and refused %" PRIu64 " times", what, n, m.received, m.refused);
	CHECK(m.newer <= m.received, "%s: a newer generation reported, the heartbeat not "
	      "received", what);
	return m;
}

static void changes_nothing(const struct moved *m, const char *what)
{
	CHECK(m->received == 0 && m->newer == 0, "%s was believed: received %" PRIu64
	      ", newer generation reported %" PRIu64 " times", what, m->received, m->newer);
}

/* ---- signed heartbeats ---- */

struct spec {
	unsigned node;                          /* index into nodes */
	struct colo_hb_fields f;
};

static void spec_read(const struct target *t, const uint8_t *p, size_t n, struct spec *s)
{
	uint8_t b[FUZZ_HB_SPEC_LEN] = { 0 };

	memcpy(b, p, n < sizeof(b) ? n : sizeof(b));
	s->node = b[0] % FUZZ_HB_NODE_COUNT;
	s->f.node = nodes[s->node];
	s->f.role = (int8_t)b[1];
	s->f.generation = generations[b[2] % FUZZ_HB_GENERATION_COUNT];
	/* Wraps as a u64 would: a seq below the start is a seq like any. */
	s->f.seq = (t->known[s->node] ? t->seq[s->node] : FUZZ_HB_SEQ_START) +
		   (uint64_t)(int64_t)(int8_t)b[3];
	s->f.committed = colo_load_be64(b + 4);
	s->f.sent_ns = colo_load_be64(b + 12);
}

static size_t sign(struct colo_hb *hb, const struct spec *s, uint8_t d[DGRAM_MAX])
{
	size_t len = colo_hb_encode(hb, &s->f, d, DGRAM_MAX);

	CHECK(len > 0, "a heartbeat from '%s' does not encode", s->f.node);
	return len;
}

/* A genuine heartbeat: believed exactly when hb.h says, and once. */
static void feed_genuine(struct target *t, const struct spec *s, const uint8_t *d,
			 size_t len)
{
	unsigned i = s->node;
	bool fresh = !t->known[i] || s->f.seq > t->seq[i];
	bool believed = fresh && s->f.generation >= FUZZ_HB_GENERATION && i == 0;
	bool newer = believed && s->f.generation > FUZZ_HB_GENERATION;
	struct moved m = feed(t, d, len, "a genuine heartbeat");

	CHECK(m.received == believed, "a genuine heartbeat from '%s' (generation %" PRIu64
	      ", seq %" PRIu64 ", highest before %" PRIu64 "%s) was %sbelieved", s->f.node,
	      s->f.generation, s->f.seq, t->seq[i], t->known[i] ? "" : ", none yet",
	      m.received ? "" : "not ");
	CHECK(m.newer == newer, "generation %" PRIu64 " from '%s' reported as newer %" PRIu64
	      " times", s->f.generation, s->f.node, m.newer);
	if (newer)
		CHECK(strcmp(t->newer_node, s->f.node) == 0 && t->newer_gen == s->f.generation,
		      "newer generation reported as %" PRIu64 " from '%s', sent %" PRIu64
		      " from '%s'", t->newer_gen, t->newer_node, s->f.generation, s->f.node);
	if (believed)
		CHECK(colo_hb_since_last(t->hb) != UINT64_MAX, "believed, but no last time");
	if (fresh) {
		t->known[i] = true;
		t->seq[i] = s->f.seq;
	}
	m = feed(t, d, len, "a replayed heartbeat");
	changes_nothing(&m, "the same genuine heartbeat a second time");
	if (fuzz_verbose())
		fprintf(stderr, "genuine from '%s', generation %" PRIu64 ", seq %" PRIu64 ": %s\n",
			s->f.node, s->f.generation, s->f.seq,
			believed ? "believed" : fresh ? "refused (generation or node)" :
			"refused (replay)");
}

static void fuzz_signed(struct target *t, const uint8_t *p, size_t n)
{
	uint8_t d[DGRAM_MAX];
	struct spec s;

	spec_read(t, p, n, &s);
	feed_genuine(t, &s, d, sign(t->hb, &s, d));
}

/* A genuine heartbeat, then a copy with edits: the copy is never believed. */
static void fuzz_edited(struct target *t, const uint8_t *p, size_t n)
{
	uint8_t d[DGRAM_MAX], e[DGRAM_MAX];
	size_t len, elen, edits = 0;
	struct spec s;
	struct moved m;

	spec_read(t, p, n, &s);
	len = sign(t->hb, &s, d);
	feed_genuine(t, &s, d, len);
	memcpy(e, d, len);
	elen = len;
	for (size_t i = FUZZ_HB_SPEC_LEN; i + 2 <= n; i += 2) {
		uint8_t x = p[i + 1] ? p[i + 1] : 1;

		if (p[i] < elen)
			e[p[i]] ^= x;
		else if (elen < sizeof(e))
			e[elen++] = x;
		edits++;
	}
	m = feed(t, e, elen, "an edited heartbeat");
	changes_nothing(&m, "a genuine heartbeat edited");
	if (fuzz_verbose())
		fprintf(stderr, "edited (%zu edits, %zu to %zu bytes): refused\n", edits, len,
			elen);
}

static void fuzz_rogue(struct target *t, const uint8_t *p, size_t n)
{
	uint8_t d[DGRAM_MAX];
	struct spec s;
	struct moved m;

	spec_read(t, p, n, &s);
	m = feed(t, d, sign(t->rogue, &s, d), "a heartbeat with another key");
	changes_nothing(&m, "a heartbeat signed with another key");
	if (fuzz_verbose())
		fprintf(stderr, "another key, from '%s': refused\n", s.f.node);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct target *t;
	struct moved m;

	if (size < 1)
		return 0;
	t = target();
	switch ((enum fuzz_hb_mode)(data[0] % FUZZ_HB_MODES)) {
	case FUZZ_HB_RAW:
		m = feed(t, data + 1, size - 1, "a datagram");
		changes_nothing(&m, "a datagram nobody signed");
		if (fuzz_verbose())
			fprintf(stderr, "raw %zu bytes: refused\n", size - 1);
		break;
	case FUZZ_HB_SIGNED:
		fuzz_signed(t, data + 1, size - 1);
		break;
	case FUZZ_HB_EDITED:
		fuzz_edited(t, data + 1, size - 1);
		break;
	case FUZZ_HB_ROGUE:
	case FUZZ_HB_MODES:
		fuzz_rogue(t, data + 1, size - 1);
		break;
	}
	return 0;
}
