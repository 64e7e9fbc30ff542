/*
 * primary.h: the primary role engine (DESIGN.md §1, §4, §5).
 *
 * It runs the guest and keeps it protected: it connects to the secondary at
 * `peer`, exchanges Hellos, sends a full sync, then takes checkpoints every
 * checkpoint-interval-ms (sooner when asked): pause the guest, harvest the
 * dirty bitmap, stage the dirty pages and device state, resume the guest,
 * and only then encode (worker threads) and send.  At most one checkpoint
 * is in flight.  Without a secondary it runs *degraded* (unprotected) and
 * keeps trying to reach one; a newer generation seen anywhere means it was
 * replaced, and it stops.
 *
 * A promoted secondary starts this engine on its own node: the guest is
 * already running there, and the first connection gets a full sync.
 *
 * Runs on the node's loop thread.
 */
#ifndef COLO_PRIMARY_H
#define COLO_PRIMARY_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "node.h"

struct colo_primary;

/*
 * Start the primary engine on node n (guest started if it is not running).
 * Checkpoints are numbered from first_seq: 0 for a fresh primary; a promoted
 * secondary goes on from the checkpoint it took over from, so numbers never
 * go back across a failover.
 */
int colo_primary_start(struct colo_node *n, uint64_t first_seq, struct colo_primary **out,
		       struct colo_err *err);
void colo_primary_free(struct colo_primary *p);

/* Output is waiting (group commit): take a checkpoint as soon as allowed. */
void colo_primary_want_checkpoint(struct colo_primary *p);

/* The sequence number the next checkpoint will carry. */
uint64_t colo_primary_next_seq(const struct colo_primary *p);
bool colo_primary_protected(const struct colo_primary *p);

#endif
