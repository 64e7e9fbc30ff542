/*
 * hb.h: UDP heartbeats between the two nodes (DESIGN.md §4).
 *
 * Every heartbeat-interval-ms each node sends its peer a protobuf Heartbeat
 * {node_id, role, generation, seq, committed_checkpoint, sent_ns}.  A node
 * watching its peer arms a timer for heartbeat-timeout-ms that every valid
 * heartbeat re-arms; when it fires the peer is dead.  Separate from the TCP
 * stream, so a large checkpoint cannot delay it.
 *
 * Split-brain guard: a heartbeat from an older generation is refused (and
 * said so in the log, at most once a second per sender); one from a newer
 * generation is reported to the engine, which decides (a primary that sees
 * one has been replaced and must stop).  Heartbeats that do not unpack, or
 * come from another node than the expected peer, are counted and dropped.
 *
 * Authentication (DESIGN.md §8), once colo_hb_set_key has given the shared
 * key: every heartbeat sent carries a MAC (HMAC-SHA-512-256 under a subkey
 * for heartbeats only) over all its other fields, and a heartbeat received
 * without a MAC, with a wrong one, or with a seq not above the highest
 * accepted from its sender (a replay) changes nothing: no re-armed watch,
 * no newer-generation report.  It is counted in heartbeats_refused and
 * logged at most once a second.  The seq starts at the sender's wall clock
 * in ns, so it grows across restarts with no saved state (a sender whose
 * clock went back is refused until it passes its old seq).  Without a key,
 * heartbeats are neither signed nor checked.
 *
 * Heartbeats are sent by a thread of their own, so a long callback on the
 * loop does not delay them, but only while the loop keeps making progress
 * (a timer on it fires within stall_ms): a hung node goes silent.  Receiving
 * runs on the loop; before calling the peer dead the socket is drained, so
 * heartbeats that arrived while this node's loop was busy still count.
 * Callbacks are called on the loop thread.
 */
#ifndef COLO_HB_H
#define COLO_HB_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "nodecfg.h"
#include "err.h"
#include "psk.h"
#include "stats.h"

struct colo_hb;

struct colo_hb_cb {
	void (*peer_dead)(void *ud);                 /* timeout passed */
	void (*newer_generation)(void *ud, const char *node, uint64_t generation);
	void *ud;
};

/* Resolve a numeric host:port. */
int colo_addr_sockaddr(const struct colo_addr *a, struct sockaddr_storage *ss,
		       struct colo_err *err);

/* Bind a UDP socket on bind (port 0: any free port). */
int colo_hb_start(uv_loop_t *loop, const struct colo_addr *bind,
		  const struct colo_hb_cb *cb, struct colo_stats *stats,
		  struct colo_hb **out, struct colo_err *err);
/* Close the socket and timers; the struct goes once libuv is done with it. */
void colo_hb_stop(struct colo_hb *hb);
uint16_t colo_hb_port(const struct colo_hb *hb);

void colo_hb_set_identity(struct colo_hb *hb, const char *node, int role,
			  uint64_t generation);
void colo_hb_set_committed(struct colo_hb *hb, uint64_t seq);
/*
 * Sign every heartbeat sent from now on with key (the shared key, see
 * psk.h; a subkey is derived, key is not kept) and refuse every one
 * received that is not signed with it.  Call on the loop thread.
 */
int colo_hb_set_key(struct colo_hb *hb, const uint8_t key[COLO_PSK_BYTES],
		    struct colo_err *err);
/* Send to peer every interval_ms while this node's loop has been seen
 * running within stall_ms (peer NULL: stop sending). */
void colo_hb_send_to(struct colo_hb *hb, const struct sockaddr *peer,
		     uint32_t interval_ms, uint32_t stall_ms);
/*
 * Watch for heartbeats from node `peer_node` (NULL: any node): peer_dead
 * fires timeout_ms after the last valid one (or after this call).  0 stops.
 */
void colo_hb_watch(struct colo_hb *hb, const char *peer_node, uint32_t timeout_ms);
/* ns since the last valid heartbeat (UINT64_MAX: none yet). */
uint64_t colo_hb_since_last(const struct colo_hb *hb);

/* The fields of one heartbeat (DESIGN.md §4), for colo_hb_encode. */
struct colo_hb_fields {
	const char *node;               /* at most 255 bytes */
	int role;
	uint64_t generation, seq, committed, sent_ns;
};

/*
 * f packed as the datagram a sender puts on the wire, with its MAC when hb
 * has a key: its length in buf, or 0 when it does not fit in cap or the
 * node id is too long.  The sender thread sends these; tests and the fuzz
 * target (tests/fuzz/fuzz_hb.c) make genuine heartbeats with it.  Any
 * thread.
 */
size_t colo_hb_encode(struct colo_hb *hb, const struct colo_hb_fields *f, uint8_t *buf,
		      size_t cap);
/*
 * What this node does with one datagram of len bytes that came from
 * `from`: unpack it, authenticate it, check generation and node, and re-arm
 * the watch (or count it refused).  The socket's read callback calls it;
 * tests and the fuzz target feed it datagrams without a socket.  Loop
 * thread; callbacks may run from inside it.
 */
void colo_hb_receive(struct colo_hb *hb, const uint8_t *data, size_t len,
		     const struct sockaddr *from);

#endif
