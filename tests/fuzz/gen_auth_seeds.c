/*
 * gen_auth_seeds.c: write the seeds of the heartbeat and Hello fuzz
 * targets (fuzz_hb.c, fuzz_hello.c).
 *
 *   gen_auth_seeds hb DIR       tests/fuzz/hb-seeds/
 *   gen_auth_seeds hello DIR    tests/fuzz/hello-seeds/
 *
 * The datagrams and Hellos are made by colo's own code (colo_hb_encode,
 * colo_hello_frame), so they are what a node sends: a heartbeat unsigned
 * and signed (with a key the target does not hold), the forged newer
 * generation that would stop a primary; an opener's Hello with and without
 * a nonce, a refusal, an answer with its proof; and specs for the targets'
 * own genuine heartbeats and handshakes, with and without changed bytes.
 * Each file starts with a mode byte of fuzz_auth.h.  Nonces and keys are
 * drawn at random, so a rebuilt seed differs in those bytes only; the
 * committed seeds were written by this program.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <uv.h>

#include "buf.h"
#include "fuzz_auth.h"
#include "hb.h"
#include "hello.h"
#include "ramfmt.h"

static const char *out_dir;

static void die(const char *what, const char *why)
{
	fprintf(stderr, "gen_auth_seeds: %s: %s\n", what, why);
	exit(1);
}

static void write_seed(const char *name, uint8_t mode, const struct colo_buf *b)
{
	char path[4096];
	FILE *f;

	if (!colo_buf_ok(b))
		die(name, "out of memory");
	snprintf(path, sizeof(path), "%s/%s", out_dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(&mode, 1, 1, f) != 1 ||
	    (b->len && fwrite(b->data, 1, b->len, f) != b->len) || fclose(f) != 0)
		die(path, strerror(errno));
}

/* ---- heartbeats ---- */

static struct colo_hb *hb_make(uv_loop_t *loop, bool keyed)
{
	static const struct colo_addr any = { "127.0.0.1", 0 };
	const struct colo_hb_cb cb = { .ud = NULL };
	uint8_t key[COLO_PSK_BYTES];
	struct colo_hb *hb;
	struct colo_err err;

	colo_err_clear(&err);
	if (colo_hb_start(loop, &any, &cb, NULL, &hb, &err) != 0)
		die("heartbeat socket", err.msg);
	randombytes_buf(key, sizeof(key));
	if (keyed && colo_hb_set_key(hb, key, &err) != 0)
		die("heartbeat key", err.msg);
	return hb;
}

static void hb_datagram(struct colo_hb *hb, const char *name, uint64_t generation)
{
	const struct colo_hb_fields f = { .node = "peer", .role = 1, .generation = generation,
					  .seq = 1767225600000000000ull, .committed = 12,
					  .sent_ns = 987654321 };
	struct colo_buf b = COLO_BUF_INIT;
	uint8_t *d = colo_buf_append(&b, 512);
	size_t len = d ? colo_hb_encode(hb, &f, d, 512) : 0;

	if (!len)
		die(name, "does not encode");
	b.len = len;
	write_seed(name, FUZZ_HB_RAW, &b);
	colo_buf_free(&b);
}

/* A spec of fuzz_auth.h, then `extra` bytes (EDITED's records). */
static void hb_spec(const char *name, enum fuzz_hb_mode mode, uint8_t node, uint8_t gen,
		    int8_t seq, const uint8_t *extra, size_t n)
{
	struct colo_buf b = COLO_BUF_INIT;

	colo_buf_put_u8(&b, node);
	colo_buf_put_u8(&b, 1);                    /* ROLE_SECONDARY */
	colo_buf_put_u8(&b, gen);
	colo_buf_put_u8(&b, (uint8_t)seq);
	colo_buf_put_be64(&b, 12);
	colo_buf_put_be64(&b, 987654321);
	if (n)
		colo_buf_put(&b, extra, n);
	write_seed(name, (uint8_t)mode, &b);
	colo_buf_free(&b);
}

static void hb_seeds(void)
{
	static const uint8_t edits[] = { 30, 0x01, 200, 0x08, 2, 0x80 };
	uv_loop_t loop;
	struct colo_hb *plain, *keyed;
	struct colo_err err;

	colo_err_clear(&err);
	if (colo_sodium_init(&err) != 0)
		die("libsodium", err.msg);
	if (uv_loop_init(&loop) != 0)
		die("loop", "cannot make one");
	plain = hb_make(&loop, false);
	keyed = hb_make(&loop, true);
	hb_datagram(plain, "raw-unsigned", FUZZ_HB_GENERATION);
	hb_datagram(plain, "raw-unsigned-newer-generation", FUZZ_HB_GENERATION + 1);
	hb_datagram(keyed, "raw-signed-with-another-key", FUZZ_HB_GENERATION);
	/* Generations by index: 0 older, 1 the node's, 2 newer. */
	hb_spec("signed-peer", FUZZ_HB_SIGNED, 0, 1, 1, NULL, 0);
	hb_spec("signed-peer-newer-generation", FUZZ_HB_SIGNED, 0, 2, 1, NULL, 0);
	hb_spec("signed-peer-older-generation", FUZZ_HB_SIGNED, 0, 0, 1, NULL, 0);
	hb_spec("signed-peer-old-seq", FUZZ_HB_SIGNED, 0, 1, -1, NULL, 0);
	hb_spec("signed-other-node", FUZZ_HB_SIGNED, 1, 1, 1, NULL, 0);
	hb_spec("edited-seq-byte-and-appended", FUZZ_HB_EDITED, 0, 1, 1, edits, sizeof(edits));
	hb_spec("another-key", FUZZ_HB_ROGUE, 0, 2, 1, NULL, 0);
	colo_hb_stop(plain);
	colo_hb_stop(keyed);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop) != 0)
		die("loop", "handles left open");
}

/* ---- Hellos ---- */

static const uint8_t key[COLO_PSK_BYTES] = "a key the fuzz target lacks";

static struct colo_hello hello(bool answer, bool accepted, const char *refusal)
{
	struct colo_hello h = {
		.protocol = COLO_REPL_VERSION,
		.node = answer ? "b" : "a",
		.role = answer ? COLO_ROLE_SECONDARY : COLO_ROLE_PRIMARY,
		.generation = 3,
		.encodings = COLO_PAGE_KIND_BIT(COLO_PAGE_RAW) | COLO_PAGE_KIND_BIT(COLO_PAGE_LZ4),
		.guest = "colo-demo-1",
		.heartbeat_port = 7071,
		.sync_seq = answer ? 0 : 1,
		.accepted = accepted,
		.refusal = refusal,
	};

	return h;
}

static void auth(struct colo_hello_auth *a, bool keyed)
{
	struct colo_err err;

	colo_err_clear(&err);
	if (colo_hello_auth_init(a, keyed ? key : NULL, &err) != 0)
		die("handshake", err.msg);
}

/* An opener's Hello (keyed: with its nonce), then `tail` zero bytes. */
static void opener_seed(const char *name, enum fuzz_hello_mode mode, bool keyed, size_t tail)
{
	const struct colo_hello h = hello(false, false, NULL);
	struct colo_buf b = COLO_BUF_INIT;
	struct colo_hello_auth a;

	auth(&a, keyed);
	if (colo_hello_frame(&h, &a, &b) != 0)
		die(name, "cannot frame");
	colo_buf_fill(&b, 0, tail);
	write_seed(name, (uint8_t)mode, &b);
	colo_buf_free(&b);
	colo_hello_auth_wipe(&a);
}

/*
 * An answer as an answerer (keyed or not) gives it after taking a keyed
 * opener's Hello, in b; the opener's Hello's length in *opener_len.
 */
static void answer(struct colo_buf *b, bool keyed, bool accepted, const char *refusal,
		   size_t *opener_len)
{
	const struct colo_hello ho = hello(false, false, NULL);
	const struct colo_hello hs = hello(true, accepted, refusal);
	struct colo_repl_conn c;
	struct colo_hello_auth o, s;
	struct colo_hello got;
	struct colo_err err;

	memset(&c, 0, sizeof(c));
	auth(&o, true);
	auth(&s, keyed);
	colo_err_clear(&err);
	if (colo_hello_frame(&ho, &o, &c.rx) != 0 || colo_hello_take(&c, &got, &s, &err) != 1)
		die("the opener's Hello", err.msg[0] ? err.msg : "cannot frame");
	*opener_len = c.rx.len;
	colo_hello_release(&got);
	if (colo_hello_frame(&hs, &s, b) != 0)
		die("the answer", "cannot frame");
	colo_buf_free(&c.rx);
	colo_hello_auth_wipe(&o);
	colo_hello_auth_wipe(&s);
}

static void answer_seed(const char *name, enum fuzz_hello_mode mode, bool keyed,
			bool accepted, const char *refusal)
{
	struct colo_buf b = COLO_BUF_INIT;
	size_t opener_len;

	answer(&b, keyed, accepted, refusal, &opener_len);
	write_seed(name, (uint8_t)mode, &b);
	colo_buf_free(&b);
}

static void put_str(struct colo_buf *b, const char *s)
{
	colo_buf_put_u8(b, (uint8_t)strlen(s));
	colo_buf_put(b, s, strlen(s));
}

/* A PAIR spec of fuzz_auth.h. */
static void pair_spec(struct colo_buf *b, const struct colo_hello *h)
{
	colo_buf_put_u8(b, (uint8_t)h->protocol);
	colo_buf_put_u8(b, h->role == COLO_ROLE_SECONDARY);
	colo_buf_put_u8(b, (uint8_t)h->encodings);
	colo_buf_put_be16(b, (uint16_t)h->heartbeat_port);
	colo_buf_put_be64(b, h->generation);
	colo_buf_put_be64(b, h->sync_seq);
	put_str(b, h->node);
	put_str(b, h->guest);
	put_str(b, h->refusal ? h->refusal : "");
}

/* Both sides, then edits: (at, xor) pairs, n of them. */
static void pair_seed(const char *name, uint8_t flags, const uint16_t *edits, size_t n)
{
	const struct colo_hello ho = hello(false, false, NULL);
	const struct colo_hello hs = hello(true, !(flags & FUZZ_HELLO_REFUSE),
					   flags & FUZZ_HELLO_REFUSE ? "not today" : NULL);
	struct colo_buf b = COLO_BUF_INIT;

	colo_buf_put_u8(&b, flags);
	pair_spec(&b, &ho);
	pair_spec(&b, &hs);
	for (size_t i = 0; i < n; i++) {
		colo_buf_put_be16(&b, edits[2 * i]);
		colo_buf_put_u8(&b, (uint8_t)edits[2 * i + 1]);
	}
	write_seed(name, FUZZ_HELLO_PAIR, &b);
	colo_buf_free(&b);
}

static void hello_seeds(void)
{
	struct colo_buf b = COLO_BUF_INIT;
	struct colo_err err;
	size_t hello_len, answer_len;
	uint16_t edits[2];

	colo_err_clear(&err);
	if (colo_sodium_init(&err) != 0)
		die("libsodium", err.msg);
	opener_seed("answerer-keyed-hello-then-a-proof", FUZZ_HELLO_ANSWERER, true,
		    COLO_HELLO_PROOF_BYTES);
	opener_seed("answerer-unkeyed-hello", FUZZ_HELLO_ANSWERER, false, 0);
	opener_seed("answerer-without-key-keyed-hello", FUZZ_HELLO_ANSWERER_UNKEYED, true, 0);
	answer_seed("opener-keyed-answer-with-proof", FUZZ_HELLO_OPENER, true, true, NULL);
	answer_seed("opener-unkeyed-refusal", FUZZ_HELLO_OPENER, false, false,
		    "node b authenticates its peers: primary a has no psk-file");
	answer_seed("opener-without-key-keyed-answer", FUZZ_HELLO_OPENER_UNKEYED, true, true,
		    NULL);
	pair_seed("pair-genuine", 0, NULL, 0);
	pair_seed("pair-genuine-refusal", FUZZ_HELLO_REFUSE, NULL, 0);
	pair_seed("pair-genuine-encrypt", FUZZ_HELLO_OPENER_ENCRYPT |
		  FUZZ_HELLO_ANSWERER_ENCRYPT, NULL, 0);
	pair_seed("pair-no-keys", FUZZ_HELLO_OPENER_NO_KEY | FUZZ_HELLO_ANSWERER_NO_KEY,
		  NULL, 0);
	pair_seed("pair-opener-without-key", FUZZ_HELLO_OPENER_NO_KEY, NULL, 0);
	pair_seed("pair-answerer-without-key", FUZZ_HELLO_ANSWERER_NO_KEY, NULL, 0);
	/* A byte in each leg of a keyed PAIR: the Hello, the answer's proof,
	 * the opener's proof (the PAIR's Hellos are these, so are their sizes). */
	answer(&b, true, true, NULL, &hello_len);
	answer_len = b.len;
	colo_buf_reset(&b);
	edits[1] = 0x01;
	edits[0] = 10;
	pair_seed("pair-opener-hello-changed", 0, edits, 1);
	edits[0] = (uint16_t)(hello_len + answer_len - 1);
	pair_seed("pair-answer-proof-changed", 0, edits, 1);
	edits[0] = (uint16_t)(hello_len + answer_len + 5);
	pair_seed("pair-opener-proof-changed", 0, edits, 1);
	colo_buf_put_u8(&b, 0);
	colo_buf_fill(&b, 0, COLO_HELLO_PROOF_BYTES);
	write_seed("reflect-own-hello", FUZZ_HELLO_REFLECT, &b);
	colo_buf_reset(&b);
	colo_buf_put_u8(&b, 1);
	write_seed("reflect-own-proof", FUZZ_HELLO_REFLECT, &b);
	colo_buf_free(&b);
}

int main(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[1], "hb") != 0 && strcmp(argv[1], "hello") != 0)) {
		fprintf(stderr, "usage: gen_auth_seeds hb|hello DIR\n");
		return 2;
	}
	out_dir = argv[2];
	if (strcmp(argv[1], "hb") == 0)
		hb_seeds();
	else
		hello_seeds();
	return 0;
}
