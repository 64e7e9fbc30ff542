/*
 * fuzz_auth.h: the input layouts of the fuzz targets of what a node
 * believes from its peer before anything else, the heartbeat decoder
 * (fuzz_hb.c) and the authenticated Hello (fuzz_hello.c), shared with
 * their seed generator (gen_auth_seeds.c) so that seeds always start with
 * bytes the targets understand.  Every first byte is a mode taken modulo
 * the number of modes, so every byte value means something and mutations
 * of it stay useful.  Fields a short input lacks read as 0.
 *
 * Heartbeats:
 *
 *   input := u8 mode, bytes
 *
 *   RAW     the bytes are one datagram, as a stranger would send it.
 *   SIGNED  the bytes are a spec (FUZZ_HB_SPEC_LEN bytes): u8 node (an
 *           index into FUZZ_HB_NODES), u8 role (as a signed byte),
 *           u8 generation (an index into the generations below), i8 seq
 *           (relative to the highest seq this process accepted from that
 *           node, or FUZZ_HB_SEQ_START), be64 committed, be64 sent_ns.
 *           The target makes the heartbeat with the key it gave its node
 *           (colo_hb_encode) and feeds it twice.
 *   EDITED  a spec, then records (u8 at, u8 xor): the signed heartbeat is
 *           fed, then a copy with the records applied (at beyond its end
 *           appends xor; xor 0 flips the lowest bit).
 *   ROGUE   a spec, signed with another key.
 *
 * Hellos (a be32 length, a protobuf Hello, for an answer with a nonce then
 * its 32-byte proof; hello.h):
 *
 *   input := u8 mode, bytes
 *
 *   ANSWERER, ANSWERER_UNKEYED  the bytes are what an opener sent: its
 *           Hello, then its proof (keyed answerer only).
 *   OPENER, OPENER_UNKEYED  the target's node sends its Hello first; the
 *           bytes are the answer (and its proof).
 *   PAIR    both sides are the target's, the bytes say what they say:
 *           u8 flags (FUZZ_HELLO_*), the opener's spec, the answerer's
 *           spec, then records (be16 at, u8 xor) that change the bytes in
 *           flight, at (modulo 1024) counting from the first byte of the
 *           opener's Hello through the answer to the opener's proof (xor 0:
 *           no change).
 *           A spec: u8 protocol, u8 role, u8 encodings, be16 heartbeat
 *           port, be64 generation, be64 sync_seq, then the node, the
 *           guest and the refusal, each a u8 length (modulo
 *           FUZZ_HELLO_STR_MAX + 1) and as many bytes.
 *   REFLECT u8 side: even, the opener's own Hello comes back as the
 *           answer, followed by the remaining bytes; odd, the answerer's
 *           own proof comes back as the opener's.
 */
#ifndef COLO_FUZZ_AUTH_H
#define COLO_FUZZ_AUTH_H

#include <stddef.h>
#include <stdint.h>

enum fuzz_hb_mode {
	FUZZ_HB_RAW,
	FUZZ_HB_SIGNED,
	FUZZ_HB_EDITED,
	FUZZ_HB_ROGUE,
	FUZZ_HB_MODES
};

#define FUZZ_HB_SPEC_LEN 20
/*
 * The senders a spec names: no more than hb.c remembers (HB_SENDERS), so
 * none is ever forgotten and the target knows exactly which seq each may
 * use.  The first is the one the target's node watches.
 */
#define FUZZ_HB_NODES { "peer", "other", "", "peer-2" }
#define FUZZ_HB_NODE_COUNT 4
#define FUZZ_HB_GENERATION 5            /* the target's node's own */
#define FUZZ_HB_GENERATIONS { FUZZ_HB_GENERATION - 1, FUZZ_HB_GENERATION, \
			      FUZZ_HB_GENERATION + 1, 0, UINT64_MAX }
#define FUZZ_HB_GENERATION_COUNT 5
#define FUZZ_HB_SEQ_START 1000

enum fuzz_hello_mode {
	FUZZ_HELLO_ANSWERER,
	FUZZ_HELLO_ANSWERER_UNKEYED,
	FUZZ_HELLO_OPENER,
	FUZZ_HELLO_OPENER_UNKEYED,
	FUZZ_HELLO_PAIR,
	FUZZ_HELLO_REFLECT,
	FUZZ_HELLO_MODES
};

/* PAIR's flags. */
#define FUZZ_HELLO_OPENER_NO_KEY 0x01
#define FUZZ_HELLO_ANSWERER_NO_KEY 0x02
#define FUZZ_HELLO_REFUSE 0x04           /* the answer refuses */
#define FUZZ_HELLO_OPENER_ENCRYPT 0x08
#define FUZZ_HELLO_ANSWERER_ENCRYPT 0x10
#define FUZZ_HELLO_STR_MAX 63

/* The fixed part of a PAIR spec, before its strings. */
#define FUZZ_HELLO_SPEC_LEN 21

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
