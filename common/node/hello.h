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
 * the rest (generations, a secondary that is busy or promoted).  Peer
 * authentication (DESIGN.md §8) belongs to this handshake too.
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

#include "err.h"
#include "repl.h"
#include "role.h"

/* The replication protocol version a Hello carries; another is refused. */
#define COLO_REPL_VERSION 1
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
	void *priv;                   /* what colo_hello_take() unpacked */
};

/* Frame and send h on c. */
int colo_hello_send(struct colo_repl_conn *c, const struct colo_hello *h);

/*
 * Take a whole Hello from the front of c->rx: 1 when it was there (*h
 * filled and the bytes consumed), 0 when more bytes are needed, or a
 * negative errno with err saying what was wrong ("a Hello of 1195725856
 * bytes", "a Hello that does not unpack").
 */
int colo_hello_take(struct colo_repl_conn *c, struct colo_hello *h, struct colo_err *err);
void colo_hello_release(struct colo_hello *h);

/*
 * What any node refuses in a peer's Hello (other protocol, same name,
 * other guest): 0, or -EPROTO with why filled for the refusal and the log.
 */
int colo_hello_check(const struct colo_hello *peer, const char *my_node,
		     const char *my_guest, char *why, size_t len);

/* The encodings both sides speak: raw always (DESIGN.md §3). */
uint32_t colo_hello_agree(uint32_t offered, uint32_t mine);

#endif
