/*
 * fuzz_hello.c: libFuzzer target for the authenticated Hello (hello.h):
 * what each side of a replication connection takes from its peer before
 * it believes anything, colo_hello_take and colo_hello_take_proof, played
 * without a connection.  A side is a struct colo_hello_auth and a zeroed
 * struct colo_repl_conn whose rx holds what came, in a heap buffer of
 * exactly that many bytes (so AddressSanitizer sees a read past them); its
 * own Hellos are framed with colo_hello_frame and its proof made with
 * colo_hello_proof, what colo_hello_send and colo_hello_prove send.  A
 * side answers as secondary.c does: with its proof when both have a key,
 * without when only one has.
 *
 * Keyed sides hold one fixed key.  That is fair: every proof covers the
 * nonces drawn at random for this run (colo_hello_auth_init), so no input
 * can hold a proof that checks, however well it knows the key.  The input
 * layout is in fuzz_auth.h.
 *
 * Promises checked (abort() with a message, so libFuzzer keeps the input):
 *   - colo_hello_take returns 1, having consumed one Hello of at most
 *     COLO_HELLO_MAX bytes (and the proof after an answer with a nonce);
 *     0, having consumed nothing, only when the bytes end before that; or
 *     -EPROTO / -EACCES with a message.  A Hello taken has a node and a
 *     guest, a refusal that is NULL or says something, known encodings,
 *     and is authenticated exactly when this side has a key and it had a
 *     nonce.  colo_hello_take_proof: 1 or -EACCES on 32 bytes, 0 on fewer.
 *   - ANSWERER: an opener's proof from the input never checks.
 *   - OPENER: an answer from the input is never authenticated.
 *   - PAIR: when no byte in flight changed, every step succeeds, each side
 *     takes what the other said, sides with a key both authenticate and
 *     derive the same session (a checkpoint tag one makes checks on the
 *     other; one of another kind does not); when a byte changed, the
 *     opener never believes the answer and the answerer never believes
 *     the opener's proof.
 *   - REFLECT: an opener's own Hello sent back is refused as a reflection;
 *     an answerer's own proof sent back does not check.
 *   - no crash, leak or undefined behaviour (the sanitizers).
 * FUZZ_VERBOSE=1 prints a line per run.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "fuzz_auth.h"
#include "fuzz_check.h"
#include "hello.h"
#include "ramfmt.h"
#include "repl.h"

#define EDITS_MAX 64
/* More than a PAIR's conversation can be (three strings of at most 63). */
#define CONVERSATION_MAX 1024
#define MY_NODE "self"
#define MY_GUEST "colo-demo-1"

static const uint8_t key[COLO_PSK_BYTES] = "colo fuzz target's shared key";

/* ---- a side ---- */

struct side {
	const char *who;
	bool keyed;
	struct colo_hello_auth a;
	struct colo_repl_conn c;            /* rx only */
};

static void side_init(struct side *s, const char *who, bool keyed)
{
	struct colo_err err;

	memset(s, 0, sizeof(*s));
	s->who = who;
	s->keyed = keyed;
	colo_err_clear(&err);
	CHECK(colo_hello_auth_init(&s->a, keyed ? key : NULL, &err) == 0, "%s: %s", who,
	      err.msg);
}

static void side_free(struct side *s)
{
	colo_hello_auth_wipe(&s->a);
	free(s->c.rx.data);
}

/* Bytes arrive: rx becomes what was not consumed and these, exactly. */
static void arrive(struct side *s, const uint8_t *p, size_t n)
{
	size_t old = colo_repl_rx_len(&s->c);
	uint8_t *d = malloc(old + n ? old + n : 1);

	CHECK(d != NULL, "%s: no memory for %zu bytes", s->who, old + n);
	if (old)
		memcpy(d, colo_repl_rx(&s->c), old);
	if (n)
		memcpy(d + old, p, n);
	free(s->c.rx.data);
	s->c.rx.data = d;
	s->c.rx.len = s->c.rx.cap = old + n;
	s->c.rx_pos = 0;
}

/* colo_hello_take, and what hello.h promises of it whatever the bytes. */
static int take(struct side *s, struct colo_hello *h)
{
	size_t avail = colo_repl_rx_len(&s->c), used;
	uint32_t len = avail >= 4 ? colo_load_be32(colo_repl_rx(&s->c)) : 0;
	/* The opener takes the answer, which a nonce makes wait for a proof. */
	bool answer = s->keyed && s->a.hellos == 1;
	struct colo_err err;
	char why[512];
	int r;

	colo_err_clear(&err);
	r = colo_hello_take(&s->c, h, &s->a, &err);
	used = avail - colo_repl_rx_len(&s->c);
	if (r == 0) {
		CHECK(used == 0 && h->priv == NULL, "%s: waits for more, having consumed %zu "
		      "bytes", s->who, used);
		CHECK(avail < 4 || (size_t)len + 4 + (answer ? COLO_HELLO_PROOF_BYTES : 0) > avail,
		      "%s: waits for more with %zu bytes there for a Hello of %u", s->who, avail,
		      len);
		return r;
	}
	if (r < 0) {
		CHECK(r == -EPROTO || r == -EACCES, "%s: take returned %d", s->who, r);
		CHECK(err.code == -r && err.msg[0] != '\0', "%s: error %d without a message",
		      s->who, r);
		CHECK(h->priv == NULL, "%s: a refused Hello kept its message", s->who);
		return r;
	}
	CHECK(r == 1, "%s: take returned %d", s->who, r);
	CHECK(len >= 1 && len <= COLO_HELLO_MAX, "%s: took a Hello of %u bytes", s->who, len);
	CHECK(used == 4 + (size_t)len + (answer && h->has_nonce ? COLO_HELLO_PROOF_BYTES : 0),
	      "%s: took a Hello of %u bytes%s, consumed %zu", s->who, len,
	      h->has_nonce ? " with a nonce" : "", used);
	CHECK(h->node && h->guest, "%s: a Hello without a node or a guest", s->who);
	CHECK(!h->refusal || h->refusal[0], "%s: an empty refusal", s->who);
	CHECK((h->encodings & ~COLO_PAGE_KINDS_ALL) == 0, "%s: encodings 0x%x", s->who,
	      h->encodings);
	CHECK(h->authenticated == (s->keyed && h->has_nonce), "%s: authenticated %d, keyed %d, "
	      "nonce %d", s->who, h->authenticated, s->keyed, h->has_nonce);
	/* What every node then asks of it: reads its strings. */
	r = colo_hello_check(h, MY_NODE, MY_GUEST, why, sizeof(why));
	CHECK(r == 0 || (r == -EPROTO && memchr(why, '\0', sizeof(why)) && why[0]),
	      "%s: check returned %d", s->who, r);
	CHECK(colo_hello_agree(h->encodings, COLO_PAGE_KINDS_ALL) & COLO_PAGE_KIND_BIT(COLO_PAGE_RAW),
	      "%s: agreed on encodings without raw", s->who);
	return 1;
}

/* colo_hello_take_proof, and what hello.h promises of it. */
static int take_proof(struct side *s)
{
	size_t avail = colo_repl_rx_len(&s->c), used;
	struct colo_err err;
	int r;

	colo_err_clear(&err);
	r = colo_hello_take_proof(&s->c, &s->a, &err);
	used = avail - colo_repl_rx_len(&s->c);
	if (avail < COLO_HELLO_PROOF_BYTES)
		CHECK(r == 0 && used == 0, "%s: %zu bytes of a proof: returned %d, consumed %zu",
		      s->who, avail, r, used);
	else
		CHECK((r == 1 || (r == -EACCES && err.msg[0])) && used == COLO_HELLO_PROOF_BYTES,
		      "%s: a proof: returned %d, consumed %zu", s->who, r, used);
	return r;
}

/* h framed as s sends it (with_key false: as a side without one), appended to w. */
static void frame(struct side *s, const struct colo_hello *h, bool with_key,
		  struct colo_buf *w)
{
	size_t before = w->len;

	CHECK(colo_hello_frame(h, with_key ? &s->a : NULL, w) == 0, "%s: cannot frame",
	      s->who);
	CHECK(w->len - before >= 4 &&
	      colo_load_be32(w->data + before) <= COLO_HELLO_MAX, "%s: framed a Hello of "
	      "%zu bytes", s->who, w->len - before);
}

/* What the target's node says when the input is the other side. */
static const struct colo_hello mine = {
	.protocol = COLO_REPL_VERSION,
	.node = MY_NODE,
	.role = COLO_ROLE_PRIMARY,
	.generation = 3,
	.encodings = COLO_PAGE_KINDS_ALL,
	.guest = MY_GUEST,
	.heartbeat_port = 7071,
	.sync_seq = 1,
	.accepted = true,
};

/* ---- the input is the opener ---- */

static void fuzz_answerer(const uint8_t *p, size_t n, bool keyed)
{
	struct colo_buf w = COLO_BUF_INIT;
	struct colo_hello h;
	struct side s;
	int r, rp = 0;

	side_init(&s, "answerer", keyed);
	arrive(&s, p, n);
	r = take(&s, &h);
	if (r == 1 && keyed && h.authenticated) {
		/* Our answer and its proof; the opener proves itself next. */
		frame(&s, &mine, true, &w);
		rp = take_proof(&s);
		CHECK(rp != 1, "answerer: an opener's proof from the input checked");
	}
	if (fuzz_verbose())
		fprintf(stderr, "answerer%s: take %d%s, proof %d\n", keyed ? "" : " (no key)", r,
			r == 1 && h.has_nonce ? " (nonce)" : "", rp);
	colo_hello_release(&h);
	colo_buf_free(&w);
	side_free(&s);
}

/* ---- the input is the answer ---- */

static void fuzz_opener(const uint8_t *p, size_t n, bool keyed)
{
	struct colo_buf w = COLO_BUF_INIT;
	struct colo_hello h;
	struct side s;
	int r;

	side_init(&s, "opener", keyed);
	frame(&s, &mine, true, &w);
	arrive(&s, p, n);
	r = take(&s, &h);
	CHECK(r != 1 || !h.authenticated, "opener: an answer from the input authenticated");
	if (fuzz_verbose())
		fprintf(stderr, "opener%s: take %d%s\n", keyed ? "" : " (no key)", r,
			r == 1 && h.has_nonce ? " (nonce)" : "");
	colo_hello_release(&h);
	colo_buf_free(&w);
	side_free(&s);
}

/* ---- both sides ---- */

struct reader {
	const uint8_t *p;
	size_t n, at;
};

/* A big-endian number of `bytes` bytes; past the end, zeros. */
static uint64_t rd(struct reader *r, int bytes)
{
	uint64_t v = 0;

	for (int i = 0; i < bytes; i++)
		v = v << 8 | (r->at < r->n ? r->p[r->at++] : 0);
	return v;
}

static void rd_str(struct reader *r, char out[FUZZ_HELLO_STR_MAX + 1])
{
	size_t len = (size_t)rd(r, 1) % (FUZZ_HELLO_STR_MAX + 1);

	if (len > r->n - r->at)
		len = r->n - r->at;
	memcpy(out, r->p + r->at, len);
	out[len] = '\0';
	r->at += len;
}

/* A Hello as the input says it, with room for its strings. */
struct said {
	struct colo_hello h;
	char node[FUZZ_HELLO_STR_MAX + 1], guest[FUZZ_HELLO_STR_MAX + 1];
	char refusal[FUZZ_HELLO_STR_MAX + 1];
};

static void said_read(struct reader *r, struct said *s)
{
	memset(s, 0, sizeof(*s));
	s->h.protocol = (uint32_t)rd(r, 1);
	s->h.role = rd(r, 1) & 1 ? COLO_ROLE_SECONDARY : COLO_ROLE_PRIMARY;
	s->h.encodings = (uint32_t)rd(r, 1) & COLO_PAGE_KINDS_ALL;
	s->h.heartbeat_port = (uint32_t)rd(r, 2);
	s->h.generation = rd(r, 8);
	s->h.sync_seq = rd(r, 8);
	rd_str(r, s->node);
	rd_str(r, s->guest);
	rd_str(r, s->refusal);
	s->h.node = s->node;
	s->h.guest = s->guest;
	s->h.refusal = s->refusal[0] ? s->refusal : NULL;
}

/* What a side took is what the other said. */
static void same(const struct side *s, const struct colo_hello *got, const struct said *sent,
		 bool nonce)
{
	CHECK(got->protocol == sent->h.protocol && got->role == sent->h.role &&
	      got->generation == sent->h.generation && got->sync_seq == sent->h.sync_seq &&
	      got->heartbeat_port == sent->h.heartbeat_port &&
	      got->accepted == sent->h.accepted && got->encrypt == sent->h.encrypt,
	      "%s: took other numbers than were sent", s->who);
	CHECK(strcmp(got->node, sent->node) == 0 && strcmp(got->guest, sent->guest) == 0,
	      "%s: took node '%s' guest '%s', sent '%s' '%s'", s->who, got->node, got->guest,
	      sent->node, sent->guest);
	CHECK(sent->refusal[0] ? got->refusal && strcmp(got->refusal, sent->refusal) == 0 :
	      got->refusal == NULL, "%s: took another refusal than was sent", s->who);
	/* Raw is always on (DESIGN.md §3): a name read adds it. */
	CHECK((got->encodings & ~(sent->h.encodings | COLO_PAGE_KIND_BIT(COLO_PAGE_RAW))) == 0,
	      "%s: took encodings 0x%x, sent 0x%x", s->who, got->encodings, sent->h.encodings);
	CHECK(got->has_nonce == nonce, "%s: nonce %d, sent %d", s->who, got->has_nonce, nonce);
}

struct edits {
	uint16_t at[EDITS_MAX];
	uint8_t x[EDITS_MAX];
	size_t n;
};

/*
 * The bytes of one leg in flight, which start at byte base of the
 * conversation, with the edits that fall on them: whether they changed.
 */
static bool in_flight(const struct edits *e, size_t base, uint8_t *d, size_t len)
{
	uint8_t was[CONVERSATION_MAX];

	CHECK(len <= sizeof(was), "a leg of %zu bytes", len);
	memcpy(was, d, len);
	for (size_t i = 0; i < e->n; i++)
		if (e->at[i] >= base && e->at[i] - base < len)
			d[e->at[i] - base] ^= e->x[i];
	return memcmp(was, d, len) != 0;
}

/* Both keyed sides proved: the same session, and tags that check. */
static void same_session(struct side *o, struct side *s, const struct said *so)
{
	struct colo_session ko, ks;
	uint8_t tag[COLO_CKPT_TAG_BYTES];

	colo_hello_session(&o->a, &ko);
	colo_hello_session(&s->a, &ks);
	CHECK(memcmp(&ko, &ks, sizeof(ko)) == 0, "the sides derived different sessions");
	CHECK(memcmp(ko.opener_to_answerer, ko.answerer_to_opener,
		     sizeof(ko.opener_to_answerer)) != 0, "the same sealing key both ways");
	colo_ckpt_tag(ko.ckpt, 'C', so->h.generation, so->h.sync_seq, 42, tag);
	CHECK(colo_ckpt_tag_ok(ks.ckpt, 'C', so->h.generation, so->h.sync_seq, 42, tag),
	      "a checkpoint tag does not check on the other side");
	CHECK(!colo_ckpt_tag_ok(ks.ckpt, 'S', so->h.generation, so->h.sync_seq, 42, tag),
	      "a checkpoint's tag checks as a sync's");
	colo_session_wipe(&ko);
	colo_session_wipe(&ks);
}

static void fuzz_pair(const uint8_t *p, size_t n)
{
	struct reader r = { p, n, 0 };
	unsigned flags = (unsigned)rd(&r, 1);
	struct colo_buf w = COLO_BUF_INIT;
	struct colo_hello hs, ho;
	struct said so, sa;
	struct side o, s;
	struct edits e = { .n = 0 };
	uint8_t pr[COLO_HELLO_PROOF_BYTES];
	bool changed = false, proven;
	size_t base = 0;
	int r1, r2 = 0, r3 = 0;

	memset(&hs, 0, sizeof(hs));
	memset(&ho, 0, sizeof(ho));
	said_read(&r, &so);
	said_read(&r, &sa);
	so.h.encrypt = flags & FUZZ_HELLO_OPENER_ENCRYPT;
	sa.h.encrypt = flags & FUZZ_HELLO_ANSWERER_ENCRYPT;
	sa.h.accepted = !(flags & FUZZ_HELLO_REFUSE);
	while (e.n < EDITS_MAX && r.n - r.at >= 3) {
		e.at[e.n] = (uint16_t)(rd(&r, 2) % CONVERSATION_MAX);
		e.x[e.n++] = (uint8_t)rd(&r, 1);
	}
	side_init(&o, "opener", !(flags & FUZZ_HELLO_OPENER_NO_KEY));
	side_init(&s, "answerer", !(flags & FUZZ_HELLO_ANSWERER_NO_KEY));

	/* The opener's Hello. */
	frame(&o, &so.h, true, &w);
	changed |= in_flight(&e, base, w.data, w.len);
	base += w.len;
	arrive(&s, w.data, w.len);
	colo_buf_reset(&w);
	r1 = take(&s, &hs);
	if (!changed) {
		CHECK(r1 == 1, "answerer: refused an opener's Hello no byte of which changed (%d)",
		      r1);
		same(&s, &hs, &so, o.keyed);
	}
	if (r1 != 1)
		goto out;

	/* The answer: proven only when both have a key (secondary.c). */
	proven = s.keyed && hs.authenticated;
	if ((s.keyed && !hs.authenticated) || (!s.keyed && hs.has_nonce))
		sa.h.accepted = false;
	frame(&s, &sa.h, proven, &w);
	changed |= in_flight(&e, base, w.data, w.len);
	base += w.len;
	arrive(&o, w.data, w.len);
	r2 = take(&o, &ho);
	if (!changed) {
		CHECK(r2 == 1, "opener: refused an answer no byte of which changed (%d)", r2);
		same(&o, &ho, &sa, proven);
		CHECK(ho.authenticated == (o.keyed && proven), "opener: authenticated %d, an "
		      "answer %sproven", ho.authenticated, proven ? "" : "not ");
	} else {
		CHECK(r2 != 1 || !ho.authenticated, "opener: believed an answer to changed bytes");
	}
	if (r2 != 1 || !ho.authenticated)
		goto out;

	/* The opener's proof. */
	colo_hello_proof(&o.a, pr);
	changed |= in_flight(&e, base, pr, sizeof(pr));
	arrive(&s, pr, sizeof(pr));
	r3 = take_proof(&s);
	CHECK((r3 == 1) == !changed, "answerer: the opener's proof %s, a byte in flight %s",
	      r3 == 1 ? "checked" : "did not check", changed ? "changed" : "did not change");
	if (r3 == 1)
		same_session(&o, &s, &so);
out:
	if (fuzz_verbose())
		fprintf(stderr, "pair (opener %s, answerer %s, %zu edits, %s): take %d, "
			"answer %d, proof %d\n", o.keyed ? "keyed" : "no key",
			s.keyed ? "keyed" : "no key", e.n, changed ? "changed" : "unchanged",
			r1, r2, r3);
	colo_hello_release(&hs);
	colo_hello_release(&ho);
	colo_buf_free(&w);
	side_free(&o);
	side_free(&s);
}

/* ---- reflections ---- */

static void fuzz_reflect(const uint8_t *p, size_t n)
{
	struct colo_buf w = COLO_BUF_INIT;
	struct colo_hello h;
	struct side o, s;
	int r;

	side_init(&o, "opener", true);
	side_init(&s, "answerer", true);
	memset(&h, 0, sizeof(h));
	if (n < 1 || p[0] % 2 == 0) {
		/* The opener's own Hello back, and whatever follows as its proof. */
		frame(&o, &mine, true, &w);
		arrive(&o, w.data, w.len);
		if (n > 1)
			arrive(&o, p + 1, n - 1);
		r = take(&o, &h);
		CHECK(n > COLO_HELLO_PROOF_BYTES ? r == -EACCES : r == 0, "opener: its own Hello "
		      "back, then %zu bytes: take %d", n ? n - 1 : 0, r);
	} else {
		/* A genuine opener, and the answerer's own proof back as its. */
		frame(&o, &mine, true, &w);
		arrive(&s, w.data, w.len);
		colo_buf_reset(&w);
		CHECK(take(&s, &h) == 1, "answerer: refused a genuine Hello");
		frame(&s, &mine, true, &w);
		arrive(&s, w.data + w.len - COLO_HELLO_PROOF_BYTES, COLO_HELLO_PROOF_BYTES);
		r = take_proof(&s);
		CHECK(r == -EACCES, "answerer: its own proof back: %d", r);
	}
	if (fuzz_verbose())
		fprintf(stderr, "reflect (%s): %d\n", n < 1 || p[0] % 2 == 0 ? "Hello" : "proof",
			r);
	colo_hello_release(&h);
	colo_buf_free(&w);
	side_free(&o);
	side_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p;
	size_t n;

	if (size < 1)
		return 0;
	p = data + 1;
	n = size - 1;
	switch ((enum fuzz_hello_mode)(data[0] % FUZZ_HELLO_MODES)) {
	case FUZZ_HELLO_ANSWERER:
		fuzz_answerer(p, n, true);
		break;
	case FUZZ_HELLO_ANSWERER_UNKEYED:
		fuzz_answerer(p, n, false);
		break;
	case FUZZ_HELLO_OPENER:
		fuzz_opener(p, n, true);
		break;
	case FUZZ_HELLO_OPENER_UNKEYED:
		fuzz_opener(p, n, false);
		break;
	case FUZZ_HELLO_PAIR:
		fuzz_pair(p, n);
		break;
	case FUZZ_HELLO_REFLECT:
	case FUZZ_HELLO_MODES:
		fuzz_reflect(p, n);
		break;
	}
	return 0;
}
