/*
 * kv.h: the kv guest, a Redis-compatible key-value service (RESP2 on TCP)
 * whose whole database lives in guest RAM (guests/kvstore.h), so that the
 * secondary holds a copy it can serve from after a failover.
 *
 * RAM: one block "kv" of ram-mb MiB holding the store.  Device: "kv", the
 * store's metadata (colo_kv_meta_vmstate).  Connections are not guest
 * state: a promoted secondary starts with none, and the clients of the old
 * primary reconnect.
 *
 * The service runs on a thread of its own with its own libuv loop, started
 * by start() on guest-listen.  pause() waits until no command is running
 * and keeps new ones from starting until resume(): a checkpoint sees the
 * store between commands.  Replies follow output commit (guest.h): each
 * read's replies are one chunk tagged with the epoch current when the
 * commands ran, written once that epoch is released.  A connection with
 * 16 MiB of replies waiting runs no more of its commands and is not read
 * until they drain below 4 MiB.
 *
 * Compare mode (guest.h; kv_compare.c has the unit's format): each batch of
 * commands run on one connection is a unit, handed to the tap inside the
 * run section (so a pause() that returned has seen every unit that ran
 * before it) and before its replies are queued; its replies then also go
 * once output_match reaches its position.  The tap must not wait for the
 * engine's loop thread (it runs with the kv thread's hook lock held).
 * compare_run runs a unit on the attached, not started guest's store.
 */
#ifndef COLO_GUEST_KV_H
#define COLO_GUEST_KV_H

#include "guest.h"

#define COLO_KV_RAM "kv"
#define COLO_KV_DEVICE "kv"

extern const struct colo_guest_ops colo_kv_ops;

/* For tests: the port the service listens on (after start), 0 if none. */
uint16_t colo_kv_port(struct colo_guest *g);

#endif
