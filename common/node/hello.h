/*
 * hello.h: the replication handshake (DESIGN.md §4, §8; docs/protocol.md).
 *
 * The first thing each side sends on a replication connection is a Hello:
 * a be32 length, then the protobuf Hello of proto/colo.proto.  The primary
 * speaks first: who it is (node, generation), what it runs (the guest's
 * machine name), the page encodings it offers, its heartbeat port and the
 * number its full sync will carry.  The secondary answers with its own
 * Hello, accepting (with the encodings both speak) or refusing with one
 * line that says why.  Then the primary sends the full sync.
 *
 * What both roles check of a peer's Hello is here once:
 * colo_hello_check() refuses another protocol version, a peer with this
 * node's own name and a peer that runs another guest.  The roles decide
 * the rest (generations, a secondary that is busy or promoted).
 *
 * Authentication (DESIGN.md §8, docs/security.md).  A node with a key
 * (psk-file) puts 32 fresh random bytes, its nonce, in its Hello.  Both
 * sides hash the two Hellos as they went on the wire, the opener's (the
 * primary's) first: the transcript, which holds both nonces, both node
 * names and everything else either Hello said.  The answerer (the
 * secondary) sends a proof right after its Hello, and the opener, once it
 * has checked that, sends its own: each a 32-byte MAC of the transcript
 * under a subkey of the shared key, with a label per side so that neither
 * proof can be reflected back as the other, and fresh nonces so that none
 * can be replayed.  From the transcript both derive the session (hello.h's
 * struct colo_session): the keys that tag each checkpoint's checksum and,
 * with encrypt = yes, seal the connection each way.  A node that has a key
 * believes nothing of a peer that has not proven it has the same.
 *
 * A struct colo_hello read with colo_hello_take() points into the message
 * it was unpacked from; colo_hello_release() frees that.  One sent is the
 * caller's, only read while sending.  Loop thread only.
 */
#ifndef COLO_HELLO_H
#define COLO_HELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "err.h"
#include "psk.h"
#include "repl.h"
#include "role.h"

/* The replication protocol version a Hello carries; another is refused. */
#define COLO_REPL_VERSION 1
/* How long either side waits for the other's Hello (and proof) before it
 * closes the connection: one that never answers must not block the pair. */
#define COLO_HELLO_TIMEOUT_MS 10000
/* Largest Hello either side accepts (its be32 length, without itself). */
#define COLO_HELLO_MAX (64u << 10)

struct colo_hello {
	uint32_t protocol;            /* COLO_REPL_VERSION */
	const char *node;             /* the sender's node name */
	enum colo_role role;          /* what it is now */
	uint64_t generation;
	uint32_t encodings;           /* COLO_PAGE_KIND_BIT set (names on the wire) */
	const char *guest;            /* machine name: "colo-<kind>-<version>" */
	uint32_t heartbeat_port;      /* 0: none */
	uint64_t sync_seq;            /* primary: the full sync's number */
	bool accepted;                /* secondary's answer */
	const char *refusal;          /* why not, when !accepted */
	bool encrypt;                 /* the sender wants the connection sealed */
	bool compare;                 /* the sender runs output-mode compare */
	bool has_nonce;               /* taken: the sender has a key */
	bool authenticated;           /* taken: it had a nonce (and, from the
					 answerer, a proof that checked) */
	void *priv;                   /* what colo_hello_take() unpacked */
};

#define COLO_HELLO_NONCE_BYTES 32
#define COLO_HELLO_PROOF_BYTES crypto_auth_BYTES
#define COLO_SESSION_KEY_BYTES 32
#define COLO_CKPT_TAG_BYTES crypto_auth_BYTES

/*
 * One side of one handshake: the subkey proofs are made with, this
 * side's nonce and the transcript so far.  Made by colo_hello_auth_init
 * (with or without a key) for each connection; wiped by _wipe.
 */
struct colo_hello_auth {
	bool keyed;
	int hellos;                   /* hashed into the transcript so far */
	bool opener;                  /* sent the first Hello */
	uint8_t key[COLO_PSK_BYTES];  /* the proofs' subkey */
	uint8_t session_key[COLO_PSK_BYTES];  /* the session's subkey */
	uint8_t nonce[COLO_HELLO_NONCE_BYTES];
	crypto_generichash_state transcript;
};

/* What a proven handshake leaves both sides (same keys on both). */
struct colo_session {
	uint8_t opener_to_answerer[COLO_SESSION_KEY_BYTES];  /* sealing, P->S */
	uint8_t answerer_to_opener[COLO_SESSION_KEY_BYTES];  /* sealing, S->P */
	uint8_t ckpt[COLO_SESSION_KEY_BYTES];                /* checkpoint tags */
};

/* psk NULL: a node without a key (no nonce, nothing proven). */
int colo_hello_auth_init(struct colo_hello_auth *a, const uint8_t *psk,
			 struct colo_err *err);
void colo_hello_auth_wipe(struct colo_hello_auth *a);

/*
 * Frame and send h on c.  With a keyed a: h carries a's nonce, joins the
 * transcript, and an answer (the second Hello) is followed by its proof.
 * a may be NULL (no key).
 */
int colo_hello_send(struct colo_repl_conn *c, const struct colo_hello *h,
		    struct colo_hello_auth *a);
/*
 * What colo_hello_send sends, appended to out instead (a's transcript
 * moves on just the same): 0, or -ENOMEM (out keeps its bytes, the
 * transcript is untouched).  For tests and the fuzz target
 * (tests/fuzz/fuzz_hello.c), which play a handshake without a connection:
 * colo_hello_take and colo_hello_take_proof read only a struct
 * colo_repl_conn's rx, so a zeroed one whose rx they fill with
 * colo_buf_put() serves.
 */
int colo_hello_frame(const struct colo_hello *h, struct colo_hello_auth *a,
		     struct colo_buf *out);

/*
 * Take a whole Hello from the front of c->rx: 1 when it was there (*h
 * filled and the bytes consumed), 0 when more bytes are needed, or a
 * negative errno with err saying what was wrong ("a Hello of 1195725856
 * bytes", "a Hello that does not unpack").  With a keyed a the Hello joins
 * the transcript; an answer with a nonce must be followed by its proof:
 * until that is there too it waits, and a proof that does not check is
 * -EACCES ("failed authentication: ...").  h->authenticated tells whether
 * the peer had a nonce (and, for an answer, proved itself).
 */
int colo_hello_take(struct colo_repl_conn *c, struct colo_hello *h,
		    struct colo_hello_auth *a, struct colo_err *err);
void colo_hello_release(struct colo_hello *h);

/* The opener's proof, once the answer checked: send it. */
int colo_hello_prove(struct colo_repl_conn *c, struct colo_hello_auth *a);
/* The bytes colo_hello_prove sends (tests and the fuzz target). */
void colo_hello_proof(const struct colo_hello_auth *a, uint8_t p[COLO_HELLO_PROOF_BYTES]);
/* The answerer takes the opener's proof: 1 (it checks), 0 (more bytes
 * needed) or -EACCES. */
int colo_hello_take_proof(struct colo_repl_conn *c, struct colo_hello_auth *a,
			  struct colo_err *err);
/* Both Hellos in: the session's keys. */
void colo_hello_session(const struct colo_hello_auth *a, struct colo_session *s);
void colo_session_wipe(struct colo_session *s);

/*
 * The tag of a checkpoint (kind 'C': its XXH3 checksum) or of a full sync
 * (kind 'S': the XXH3 of all its bytes), under the session's ckpt key:
 * a keyed MAC of kind, generation, sequence and checksum.
 */
void colo_ckpt_tag(const uint8_t key[COLO_SESSION_KEY_BYTES], char kind, uint64_t generation,
		   uint64_t seq, uint64_t checksum, uint8_t tag[COLO_CKPT_TAG_BYTES]);
bool colo_ckpt_tag_ok(const uint8_t key[COLO_SESSION_KEY_BYTES], char kind,
		      uint64_t generation, uint64_t seq, uint64_t checksum,
		      const uint8_t tag[COLO_CKPT_TAG_BYTES]);

/*
 * What any node refuses in a peer's Hello (other protocol, same name,
 * other guest): 0, or -EPROTO with why filled for the refusal and the log.
 */
int colo_hello_check(const struct colo_hello *peer, const char *my_node,
		     const char *my_guest, char *why, size_t len);

/* The encodings both sides speak: raw always (DESIGN.md §3). */
uint32_t colo_hello_agree(uint32_t offered, uint32_t mine);

#endif
