/*
 * secondary.h: the secondary role engine (DESIGN.md §1, §4, §5).
 *
 * It listens for a primary, answers its Hello (refusing a primary of an
 * older generation), loads the full sync into the idle guest, then serves
 * the checkpoint loop: pages of the checkpoint in flight decode into a RAM
 * cache, the device stream and the XXH3-64 checksum are verified before
 * VMSTATE_RECEIVED, and the commit (cache to RAM, devices into the guest)
 * happens before VMSTATE_LOADED, in one step on the loop thread: a failover
 * sees the old or the new checkpoint, never a mix.  A checkpoint cut off by
 * a failover or a dropped connection is discarded whole.
 *
 * When the primary's heartbeats stop for heartbeat-timeout-ms (or on
 * `colo-ctl failover`) it runs fence-command if set, bumps the generation,
 * starts the guest from the last committed checkpoint and hands the node to
 * the primary engine; its listener stays to refuse stale primaries.
 *
 * Runs on the node's loop thread.
 */
#ifndef COLO_SECONDARY_H
#define COLO_SECONDARY_H

#include "err.h"
#include "node.h"

struct colo_secondary;

int colo_secondary_start(struct colo_node *n, struct colo_secondary **out,
			 struct colo_err *err);
void colo_secondary_free(struct colo_secondary *s);

#endif
