/* hello.c: the replication handshake (see hello.h). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "colo.pb-c.h"
#include "hello.h"
#include "nodecfg.h"
#include "ramfmt.h"

static Colo__Role role_to_pb(enum colo_role r)
{
	return r == COLO_ROLE_PRIMARY ? COLO__ROLE__ROLE_PRIMARY : COLO__ROLE__ROLE_SECONDARY;
}

/* ---- the transcript and the proofs ---- */

/* Subkeys of the shared key: one for proofs, one for sessions. */
#define KDF_CONTEXT "colo-hel"
#define KDF_PROOF 1
#define KDF_SESSION 2

static const char LABEL_OPENER[] = "colo hello: the opener's proof";
static const char LABEL_ANSWERER[] = "colo hello: the answerer's proof";

int colo_hello_auth_init(struct colo_hello_auth *a, const uint8_t *psk,
			 struct colo_err *err)
{
	memset(a, 0, sizeof(*a));
	if (!psk)
		return 0;
	if (colo_sodium_init(err) != 0)
		return -EINVAL;
	if (crypto_kdf_derive_from_key(a->key, sizeof(a->key), KDF_PROOF, KDF_CONTEXT,
				       psk) != 0 ||
	    crypto_kdf_derive_from_key(a->session_key, sizeof(a->session_key), KDF_SESSION,
				       KDF_CONTEXT, psk) != 0)
		return colo_err_set(err, EINVAL, "cannot derive the handshake's keys");
	randombytes_buf(a->nonce, sizeof(a->nonce));
	crypto_generichash_init(&a->transcript, NULL, 0, crypto_generichash_BYTES);
	a->keyed = true;
	return 0;
}

void colo_hello_auth_wipe(struct colo_hello_auth *a)
{
	sodium_memzero(a, sizeof(*a));
}

/* A Hello as framed on the wire joins the transcript. */
static void transcript_add(struct colo_hello_auth *a, const uint8_t *frame, size_t len)
{
	if (!a || !a->keyed)
		return;
	crypto_generichash_update(&a->transcript, frame, len);
	a->hellos++;
}

/* The transcript's digest so far (the state goes on). */
static void transcript_digest(const struct colo_hello_auth *a,
			      uint8_t out[crypto_generichash_BYTES])
{
	crypto_generichash_state copy = a->transcript;

	crypto_generichash_final(&copy, out, crypto_generichash_BYTES);
	sodium_memzero(&copy, sizeof(copy));
}

static void proof(const struct colo_hello_auth *a, bool opener,
		  uint8_t out[COLO_HELLO_PROOF_BYTES])
{
	crypto_auth_hmacsha512256_state st;
	uint8_t digest[crypto_generichash_BYTES];
	const char *label = opener ? LABEL_OPENER : LABEL_ANSWERER;

	transcript_digest(a, digest);
	crypto_auth_hmacsha512256_init(&st, a->key, sizeof(a->key));
	crypto_auth_hmacsha512256_update(&st, (const uint8_t *)label, strlen(label));
	crypto_auth_hmacsha512256_update(&st, digest, sizeof(digest));
	crypto_auth_hmacsha512256_final(&st, out);
	sodium_memzero(&st, sizeof(st));
}

static bool proof_ok(const struct colo_hello_auth *a, bool opener, const uint8_t *got)
{
	uint8_t want[COLO_HELLO_PROOF_BYTES];
	bool ok;

	proof(a, opener, want);
	ok = sodium_memcmp(want, got, sizeof(want)) == 0;
	sodium_memzero(want, sizeof(want));
	return ok;
}

/* ---- Hellos ---- */

int colo_hello_frame(const struct colo_hello *h, struct colo_hello_auth *a,
		     struct colo_buf *out)
{
	Colo__Hello pb = COLO__HELLO__INIT;
	char names[128], *list[COLO_PAGE_KINDS], *save = NULL, *tok;
	size_t count = 0, len;
	uint8_t *buf;
	bool keyed = a && a->keyed, answer;

	/* Encodings travel by name, so a peer that knows fewer ignores the rest. */
	colo_encodings_format(h->encodings, names, sizeof(names));
	for (tok = strtok_r(names, ",", &save); tok && count < COLO_PAGE_KINDS;
	     tok = strtok_r(NULL, ",", &save))
		list[count++] = tok;
	pb.protocol = h->protocol;
	pb.node_id = (char *)h->node;
	pb.role = role_to_pb(h->role);
	pb.generation = h->generation;
	pb.n_encodings = count;
	pb.encodings = list;
	pb.guest = (char *)h->guest;
	pb.heartbeat_port = h->heartbeat_port;
	pb.sync_seq = h->sync_seq;
	pb.accepted = h->accepted;
	pb.refusal = (char *)(h->refusal ? h->refusal : "");
	pb.encrypt = h->encrypt;
	pb.compare = h->compare;
	if (keyed) {
		pb.nonce.data = a->nonce;
		pb.nonce.len = sizeof(a->nonce);
	}
	/* The second Hello is the answer: its proof follows it. */
	answer = keyed && a->hellos == 1;
	len = colo__hello__get_packed_size(&pb);
	buf = colo_buf_append(out, 4 + len + (answer ? COLO_HELLO_PROOF_BYTES : 0));
	if (!buf)
		return -ENOMEM;
	colo_store_be32(buf, (uint32_t)len);
	colo__hello__pack(&pb, buf + 4);
	transcript_add(a, buf, 4 + len);
	if (keyed && a->hellos == 1)
		a->opener = true;
	if (answer)
		proof(a, false, buf + 4 + len);
	return 0;
}

int colo_hello_send(struct colo_repl_conn *c, const struct colo_hello *h,
		    struct colo_hello_auth *a)
{
	struct colo_buf out = COLO_BUF_INIT;
	int r = colo_hello_frame(h, a, &out);

	if (r == 0)
		r = colo_repl_send(c, out.data, out.len);
	colo_buf_free(&out);
	return r;
}

int colo_hello_take(struct colo_repl_conn *c, struct colo_hello *h,
		    struct colo_hello_auth *a, struct colo_err *err)
{
	Colo__Hello *pb;
	struct colo_err ignored;
	uint32_t len;
	bool keyed = a && a->keyed, answer = keyed && a->hellos == 1, nonce;
	size_t need;

	memset(h, 0, sizeof(*h));
	if (colo_repl_rx_len(c) < 4)
		return 0;
	len = colo_load_be32(colo_repl_rx(c));
	if (len == 0 || len > COLO_HELLO_MAX)
		return colo_err_set(err, EPROTO, "a Hello of %u bytes (at most %u)", len,
				    COLO_HELLO_MAX);
	if (colo_repl_rx_len(c) < 4 + (size_t)len)
		return 0;
	pb = colo__hello__unpack(NULL, len, colo_repl_rx(c) + 4);
	if (!pb || !pb->node_id) {
		if (pb)
			colo__hello__free_unpacked(pb, NULL);
		colo_repl_consume(c, 4 + (size_t)len);
		return colo_err_set(err, EPROTO, "a Hello that does not unpack");
	}
	nonce = pb->nonce.len > 0;
	if (nonce && pb->nonce.len != COLO_HELLO_NONCE_BYTES) {
		size_t got = pb->nonce.len;     /* pb is freed before the message */

		colo__hello__free_unpacked(pb, NULL);
		colo_repl_consume(c, 4 + (size_t)len);
		return colo_err_set(err, EPROTO, "a Hello with a nonce of %zu bytes (not %d)",
				    got, COLO_HELLO_NONCE_BYTES);
	}
	/* An answer with a nonce is believed only with its proof. */
	need = 4 + (size_t)len + (answer && nonce ? COLO_HELLO_PROOF_BYTES : 0);
	if (colo_repl_rx_len(c) < need) {
		colo__hello__free_unpacked(pb, NULL);
		return 0;
	}
	if (keyed && nonce && sodium_memcmp(pb->nonce.data, a->nonce, sizeof(a->nonce)) == 0) {
		/* Our own nonce coming back: a reflection. */
		colo__hello__free_unpacked(pb, NULL);
		colo_repl_consume(c, need);
		return colo_err_set(err, EACCES, "failed authentication: it sent this node's "
				    "own nonce back");
	}
	transcript_add(a, colo_repl_rx(c), 4 + (size_t)len);
	if (answer && nonce && !proof_ok(a, false, colo_repl_rx(c) + 4 + len)) {
		colo__hello__free_unpacked(pb, NULL);
		colo_repl_consume(c, need);
		return colo_err_set(err, EACCES, "failed authentication: its proof does not "
				    "check (another psk-file?)");
	}
	colo_repl_consume(c, need);
	h->priv = pb;
	h->protocol = pb->protocol;
	h->node = pb->node_id;
	h->role = pb->role == COLO__ROLE__ROLE_PRIMARY ? COLO_ROLE_PRIMARY :
		  COLO_ROLE_SECONDARY;
	h->generation = pb->generation;
	colo_err_clear(&ignored);
	for (size_t i = 0; i < pb->n_encodings; i++) {
		uint32_t one;

		if (colo_encodings_parse(pb->encodings[i], &one, &ignored) == 0)
			h->encodings |= one;
	}
	h->guest = pb->guest ? pb->guest : "";
	h->heartbeat_port = pb->heartbeat_port;
	h->sync_seq = pb->sync_seq;
	h->accepted = pb->accepted;
	h->refusal = pb->refusal && pb->refusal[0] ? pb->refusal : NULL;
	h->encrypt = pb->encrypt;
	h->compare = pb->compare;
	h->has_nonce = nonce;
	h->authenticated = keyed && nonce;
	return 1;
}

void colo_hello_proof(const struct colo_hello_auth *a, uint8_t p[COLO_HELLO_PROOF_BYTES])
{
	proof(a, true, p);
}

int colo_hello_prove(struct colo_repl_conn *c, struct colo_hello_auth *a)
{
	uint8_t p[COLO_HELLO_PROOF_BYTES];
	int r;

	colo_hello_proof(a, p);
	r = colo_repl_send(c, p, sizeof(p));
	sodium_memzero(p, sizeof(p));
	return r;
}

int colo_hello_take_proof(struct colo_repl_conn *c, struct colo_hello_auth *a,
			  struct colo_err *err)
{
	bool ok;

	if (colo_repl_rx_len(c) < COLO_HELLO_PROOF_BYTES)
		return 0;
	ok = proof_ok(a, true, colo_repl_rx(c));
	colo_repl_consume(c, COLO_HELLO_PROOF_BYTES);
	if (!ok)
		return colo_err_set(err, EACCES, "failed authentication: its proof does not "
				    "check (another psk-file?)");
	return 1;
}

void colo_hello_session(const struct colo_hello_auth *a, struct colo_session *s)
{
	uint8_t digest[crypto_generichash_BYTES], master[COLO_SESSION_KEY_BYTES];

	transcript_digest(a, digest);
	/* Keyed by the shared key's session subkey: the transcript is public. */
	crypto_generichash(master, sizeof(master), digest, sizeof(digest), a->session_key,
			   sizeof(a->session_key));
	crypto_kdf_derive_from_key(s->opener_to_answerer, sizeof(s->opener_to_answerer), 1,
				   "colo-ses", master);
	crypto_kdf_derive_from_key(s->answerer_to_opener, sizeof(s->answerer_to_opener), 2,
				   "colo-ses", master);
	crypto_kdf_derive_from_key(s->ckpt, sizeof(s->ckpt), 3, "colo-ses", master);
	sodium_memzero(master, sizeof(master));
}

void colo_session_wipe(struct colo_session *s)
{
	sodium_memzero(s, sizeof(*s));
}

static void ckpt_message(char kind, uint64_t generation, uint64_t seq, uint64_t checksum,
			 uint8_t m[25])
{
	m[0] = (uint8_t)kind;
	colo_store_be64(m + 1, generation);
	colo_store_be64(m + 9, seq);
	colo_store_be64(m + 17, checksum);
}

void colo_ckpt_tag(const uint8_t key[COLO_SESSION_KEY_BYTES], char kind, uint64_t generation,
		   uint64_t seq, uint64_t checksum, uint8_t tag[COLO_CKPT_TAG_BYTES])
{
	uint8_t m[25];

	ckpt_message(kind, generation, seq, checksum, m);
	crypto_auth(tag, m, sizeof(m), key);
}

bool colo_ckpt_tag_ok(const uint8_t key[COLO_SESSION_KEY_BYTES], char kind,
		      uint64_t generation, uint64_t seq, uint64_t checksum,
		      const uint8_t tag[COLO_CKPT_TAG_BYTES])
{
	uint8_t m[25];

	ckpt_message(kind, generation, seq, checksum, m);
	return crypto_auth_verify(tag, m, sizeof(m), key) == 0;
}

void colo_hello_release(struct colo_hello *h)
{
	if (h->priv)
		colo__hello__free_unpacked(h->priv, NULL);
	memset(h, 0, sizeof(*h));
}

int colo_hello_check(const struct colo_hello *peer, const char *my_node,
		     const char *my_guest, char *why, size_t len)
{
	if (peer->protocol != COLO_REPL_VERSION)
		snprintf(why, len, "replication protocol %u, this node speaks %d",
			 peer->protocol, COLO_REPL_VERSION);
	else if (strcmp(peer->node, my_node) == 0)
		snprintf(why, len, "node '%s' is this node: check --peer", peer->node);
	else if (strcmp(peer->guest, my_guest) != 0)
		snprintf(why, len, "%s %s runs guest '%s', this node '%s'",
			 colo_role_name(peer->role), peer->node, peer->guest, my_guest);
	else
		return 0;
	return -EPROTO;
}

uint32_t colo_hello_agree(uint32_t offered, uint32_t mine)
{
	return (offered & mine) | COLO_PAGE_KIND_BIT(COLO_PAGE_RAW);
}
