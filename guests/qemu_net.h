/*
 * qemu_net.h: output commit for a VM's network (DESIGN.md §9, docs/vm.md):
 * the relay between the VM's NIC and the outside.
 *
 * The VM's NIC has a `-netdev stream` backend connected to a unix socket
 * this module listens on; the outside is a tap device it opens (created if
 * missing, brought up, optionally added to a bridge).  Framing on the
 * socket, both ways: be32 length, then the raw Ethernet frame.
 *
 * Frames from the VM are held per epoch of QEMU's checkpoints.  QEMU's
 * epoch N is what the VM did between two stops; it closes when QEMU stops
 * the VM for checkpoint N (VMSTATE_SEND), and the socket is drained then,
 * so every frame the VM sent before the stop is in it
 * (qemu_net_close_epoch).  Once checkpoint N is whole in colo-primary's
 * mirror it belongs to the colo checkpoint the engine stages next; the
 * closed frames take that checkpoint's sequence as their tag
 * (qemu_net_tag) and go out to the tap once the secondary has received it
 * (qemu_net_release).  A frame held in the open epoch asks for a
 * checkpoint at once (the kick callback: group commit).  Epoch 0
 * (qemu_net_epoch: no secondary, or output-mode none) sends everything at
 * once.
 *
 * Frames to the VM pass at once, except while QEMU has the VM stopped for
 * a checkpoint (between its REQUEST and our LOADED): QEMU drops what
 * reaches a stopped NIC, so they wait here (up to a bound) and follow when
 * it runs (qemu_net_vm_running).
 *
 * A standby node (the secondary) reads and drops what its tap brings until
 * qemu_net_serve(): its VM does not run, and nothing it would say may
 * reach anyone.
 *
 * Threads: one thread of its own moves the frames (poll on the listener,
 * the socket, the tap and a wake pipe).  Every other function may be called
 * from any thread; a mutex guards the queues.  qemu_net_close_epoch() reads
 * the socket itself, under that mutex, so the epoch's end is exact.
 * Memory: the struct owns its frames; qemu_net_free() releases all.
 */
#ifndef COLO_GUEST_QEMU_NET_H
#define COLO_GUEST_QEMU_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct qemu_net;

/* An Ethernet frame on the socket: at most QEMU's own buffer (NET_BUFSIZE). */
#define QEMU_NET_FRAME_MAX (4096 + 65536)
/* Frames towards a stopped VM kept at most (the rest are dropped, counted). */
#define QEMU_NET_TOVM_MAX (4u << 20)

struct qemu_net_stats {
	uint64_t held_frames, held_bytes;      /* waiting now */
	uint64_t held_max_bytes;               /* the most ever waiting */
	uint64_t out_frames, out_bytes;        /* from the VM, sent to the tap */
	uint64_t in_frames, in_bytes;          /* from the tap, sent to the VM */
	uint64_t in_waited;                    /* of those, held while it was stopped */
	uint64_t dropped;                      /* frames dropped (see qemu_net.c) */
	uint64_t epochs;                       /* QEMU epochs closed */
	uint64_t kicks;                        /* checkpoints asked for by held frames */
	double release_p50_ms, release_p99_ms; /* frame read -> sent, recent frames */
	bool connected;                        /* QEMU's NIC is attached */
	bool serving;
};

/*
 * Listen on sock_path and open the tap `tap` (created if missing, brought
 * up, added to `bridge` unless that is NULL or ""); start the thread.
 * serving: frames flow at once (a primary); else they are dropped until
 * qemu_net_serve().  One line naming the tap or bridge on failure; *out
 * may then hold a half-made relay: qemu_net_free() it (NULL is fine).
 */
int qemu_net_open(const char *sock_path, const char *tap, const char *bridge, bool serving,
		  struct qemu_net **out, struct colo_err *err);
void qemu_net_free(struct qemu_net *n);

/* Held frames want a checkpoint: fn(ud) from the net thread, once per
 * open epoch (until the VM stops for the next checkpoint). */
void qemu_net_set_kick(struct qemu_net *n, void (*fn)(void *ud), void *ud);

/* The tap still there and up: 0, or why not (a secondary checks before
 * it takes over). */
int qemu_net_check(struct qemu_net *n, struct colo_err *err);
/* Start moving frames (a secondary taking over). */
void qemu_net_serve(struct qemu_net *n);

/* QEMU's checkpoints, from the relay thread. */
void qemu_net_vm_stopping(struct qemu_net *n);  /* REQUEST: frames to it wait */
void qemu_net_close_epoch(struct qemu_net *n);  /* VMSTATE_SEND: drain, close */
void qemu_net_tag(struct qemu_net *n, uint64_t seq); /* the closed frames' checkpoint */
void qemu_net_vm_running(struct qemu_net *n);   /* LOADED sent: deliver to it */

/* The engine's epochs (guest.h output commit). */
void qemu_net_epoch(struct qemu_net *n, uint64_t seq);
void qemu_net_release(struct qemu_net *n, uint64_t seq);
/*
 * May a full sync be staged now?  Not while frames sent at once (epoch 0)
 * come from a QEMU epoch that is not in the mirror yet: a secondary synced
 * without it could take over and roll back what a client saw.  Then QEMU
 * is asked for a checkpoint (kick), and the answer is yes once that
 * checkpoint is in the mirror (qemu_net_tag).  The engine sets the sync's
 * epoch before it asks (when it holds output at all), so that nothing said
 * from then on goes out before the sync and the checkpoint after it hold
 * it: frames tagged OPEN while the epoch is 0 are released at once, by the
 * "everything" that epoch 0 comes with.
 */
bool qemu_net_sync_ready(struct qemu_net *n);

void qemu_net_stats(struct qemu_net *n, struct qemu_net_stats *st);

#endif
