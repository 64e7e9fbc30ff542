/*
 * qemu_harness.h: colo-primary's reading of QEMU's COLO stream (the relay,
 * guests/qemu_relay.c) run on bytes instead of on a QEMU, for
 * tests/test_qemu_relay.c and the fuzz target tests/fuzz/fuzz_qemu.c
 * (the bytes: tests/qemu_record.h).
 *
 * Running (qh_run): a struct qemu_guest is made as qemu_create() and
 * qemu_attach() make it for a primary (settings, a colo_ram in manual mode
 * for the mirror, a colo_savevm, lock, cond, wake pipe), without QEMU: its
 * migration socket is one end of a socketpair.  A thread plays QEMU on the
 * other end: it writes the input, paced as QEMU paces it (qh_index finds
 * the protocol's turns: nothing after the initial migration before READY,
 * nothing after a REQUEST before REPLY, no next REQUEST before LOADED),
 * whole or in pieces that the relay reads one at a time, then closes its
 * writing side; meanwhile it collects the relay's answers (be32 COLO
 * messages).  Where QEMU would wait for an answer that does not come while
 * the relay waits for bytes (its thread sleeps in poll() with every byte
 * read: /proc/self/task/TID/syscall), QEMU would hang: the writer counts a
 * stall and writes on.  The calling thread runs qemu_relay_begin() then
 * qemu_relay_main() to their end, which with a closed input always comes:
 * the relay either fails on the bytes or reads "QEMU closed its migration
 * connection".  What the relay ended with is the message qemu_relay_begin()
 * failed with or the one it gave qemu_died().  At each qemu_notify() (ready,
 * then each checkpoint in the mirror) the state is hashed, so a run can
 * show that a failure applied nothing.
 *
 * Memory: a struct qh_run owns its guest, mirror and answers until
 * qh_run_free().  Each function is called from one thread; qh_run starts
 * and joins its own.
 */
#ifndef COLO_TEST_QEMU_HARNESS_H
#define COLO_TEST_QEMU_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "qemu.h"
#include "qemu_record.h"
#include "savevm.h"

struct qemu_guest;
struct colo_ram;

/* ---- running the relay ---- */

struct qh_opts {
	/* 0: the input is written as fast as the relay reads it; else a seed
	 * for piece sizes (QH_PIECES_MAX pieces at most, then the rest). */
	uint8_t split_seed;
	/* Keep QEMU's side open once the input is written (QEMU alive and
	 * silent): the relay ends only on its own.  Never on a stream it would
	 * wait on forever (a whole checkpoint, then nothing). */
	bool hold;
};

#define QH_PIECES_MAX 64

struct qh_run {
	struct qemu_guest *q;          /* the relay's guest: q->blocks, q->dev */
	struct colo_ram *ram;
	struct colo_savevm sv;
	struct colo_qemu_settings set;
	bool begun;                    /* qemu_relay_begin() succeeded */
	char ended[COLO_ERR_MAX];      /* what the relay ended with; "" none */
	uint32_t *answers;             /* be32 messages the relay sent, in order */
	size_t nanswers;
	size_t notified;               /* qemu_notify() calls */
	uint64_t notify_hash;          /* qh_state_hash() at the last of them */
	size_t notify_ckpts;           /* q->ckpts at the last of them */
	size_t gates;                  /* turns where the writer waited for an answer */
	size_t stalls;                 /* ... and the relay waited for bytes instead */
};

/* Run the relay on `in`; -errno only when the harness itself cannot run
 * (whatever the input, the relay's own end is in run->ended).  *out is
 * set whenever it could be allocated: free it with qh_run_free(). */
int qh_run(const uint8_t *in, size_t len, const struct qh_opts *o, struct qh_run **out,
	   struct colo_err *err);
void qh_run_free(struct qh_run *run);

/* The mirror (every block: name, length, content) and the device "qemu/vm"
 * (machine, ram section id, device sections, vmdesc) as one hash. */
uint64_t qh_state_hash(const struct qemu_guest *q);

/* Do the answers follow the protocol: READY, then REPLY RECEIVED LOADED
 * per checkpoint, maybe a last REPLY?  *ckpts gets the LOADED count. */
bool qh_answers_ok(const struct qh_run *run, size_t *ckpts);

#endif
