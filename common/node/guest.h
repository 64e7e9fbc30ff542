/*
 * guest.h: what a guest is to the engines (DESIGN.md §1, §5).
 *
 * A guest's whole state is RAM blocks (added to a struct colo_ram, so they
 * are dirty-tracked) and devices (vmstate descriptions registered in a
 * struct colo_savevm, which also lists the blocks for streams).  The engine
 * drives its life: attach (register state), start (run), pause / resume
 * around each checkpoint (while paused nothing of the guest's state may
 * change), stop.  On the secondary a guest is attached but not started
 * until a promotion; its state is overwritten by checkpoints meanwhile.
 *
 * verify() recomputes what the guest's RAM must hold from its device state
 * (for guests whose RAM follows from it) and reports mismatching pages; it
 * is called with the guest paused or not started.
 *
 * Configuration: every guest is configured by the [guest] keys guest,
 * guest-listen and ram-mb (struct colo_config), and may bring keys of its
 * own, in [guest] too: a table of struct colo_opt (cfgopt.h) whose offsets
 * are into a settings struct of the guest's.  The config allocates one
 * such struct per guest of the program's list, fills it like any key
 * (defaults, file, flags; --help lists the keys) and create() reads it
 * with colo_config_guest(cfg, ops).  A program hands its guests to the
 * config as a NULL-terminated array of ops; the first is the default.
 *
 * Threads: ops are called from the engine's loop thread; a guest runs its
 * own threads between start and stop, and pause() returns only once they
 * are all parked.  A guest with embed() can run on the engine's loop
 * instead, where thread hand-offs would cost more than the thread gives
 * (a primary embeds such a guest in every output mode: each reply waits
 * on a checkpoint or a comparison driven from the loop; docs/kv.md):
 *   embed(g, loop)        before start: run on loop, no thread of its own.
 *                         Everything it does then happens on the loop
 *                         thread (so output_notify's and compare_tap's fns
 *                         are called there, from the guest's callbacks:
 *                         they must not call back into the guest), and
 *                         pause() is immediate.
 *
 * Output commit (guests that answer clients; the ops are NULL for others).
 * No client may see a reply the secondary could not reproduce, so each
 * reply is tagged with the sequence number of the checkpoint that will hold
 * its effect and is held until that checkpoint is acknowledged:
 *   output_epoch(g, S)    replies made from now on carry S; 0 = send them
 *                         at once (no secondary, or output-mode none).
 *                         Called while the guest is paused (or not started),
 *                         but for a number set ahead while it runs: an
 *                         arbiter's round (primary/output.c), and a guest
 *                         with ready() when its sync is asked for
 *                         (primary_sync_start): S is then the checkpoint
 *                         after the sync (what the guest says from then on
 *                         is in the sync or in a later checkpoint).
 *   output_release(g, S)  every held reply with a tag <= S may go out;
 *                         UINT64_MAX releases everything.
 *   output_notify(g, fn)  fn(ud) is called, from any thread, when a reply
 *                         is held and waits for a checkpoint (group commit).
 * output_release may be called from the loop thread at any time.
 *
 * Guests that take their state from elsewhere (a QEMU VM: its checkpoints
 * arrive from QEMU and land in the guest's RAM by the guest's own writes):
 *   manual_dirty          the guest marks every page it writes
 *                         (colo_ram_mark_dirty): its RAM is tracked in
 *                         manual mode whatever dirty-tracking says.
 *   drives_checkpoints    the engine takes a checkpoint when the guest asks
 *                         (output_notify's fn), not on its own clock;
 *                         set_interval(g, ms) tells the guest the interval
 *                         (checkpoint-interval-ms, colo-ctl set-interval).
 *   ready(g)              false while the guest has no state to sync yet;
 *                         it calls output_notify's fn once it has.
 *   watch(g, died, ud)    died(ud, why) is called once, from any thread,
 *                         when the guest is gone for good (its process
 *                         exited or stopped answering): the node stops, so
 *                         its heartbeats stop and a secondary takes over.
 *
 * Compare mode (output-mode compare, docs/compare.md).  The secondary runs
 * its own copy of the guest on the inputs the primary's guest consumed, in
 * the order it consumed them, and a reply goes out as soon as the
 * secondary produced the same bytes.  A guest that can run so has the
 * three ops below (NULL for the others: the mode is refused for them); its
 * execution must be deterministic given the units (no wall clock, no
 * randomness that the unit does not carry).  An input unit is what the
 * guest ran in one go on one connection (kv: the complete commands of one
 * read), with all it needs to run it again elsewhere.
 *   compare_tap(g, fn, ud)   primary, before start: from then on fn(ud, u)
 *                         is called on the guest's thread for every unit
 *                         it ran, in the order they ran, before any reply
 *                         of the unit may go; fn copies what it keeps.  A
 *                         unit over COLO_CMP_UNIT_MAX bytes comes with data
 *                         NULL: it is not compared, its replies wait for a
 *                         checkpoint.
 *                         Every reply of the unit is held under its epoch
 *                         (output_epoch) and its position.
 *   output_match(g, pos)  primary: every held reply of a unit at or before
 *                         position pos may go too (the engine matched them
 *                         or a checkpoint covers them).  Monotone; any
 *                         thread.  A reply goes when its epoch is released
 *                         or its position matched, whichever comes first.
 *   compare_run(g, data, len, d, err)
 *                         secondary, loop thread, guest attached but not
 *                         started: run one unit's bytes (u->data of the
 *                         primary) on the guest's RAM and devices, and give
 *                         the digest of its output; 0, or -errno and a line
 *                         for bytes that are not a unit.
 */
#ifndef COLO_GUEST_H
#define COLO_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct colo_config;
struct colo_opt;
struct uv_loop_s;
struct colo_ram;
struct colo_savevm;
struct colo_guest;

/* Compare mode (see above): an output's digest, and an input unit. */
struct colo_cmp_digest {
	uint64_t len;                 /* the output's bytes */
	uint64_t hash;                /* XXH3-64 of them (0 for none) */
};

struct colo_cmp_unit {
	uint64_t pos;                 /* 1, 2, ... in the order the units ran */
	uint64_t epoch;               /* the output epoch it ran under */
	const uint8_t *data;          /* what compare_run takes: the guest's own
					 format, at most COLO_CMP_UNIT_MAX bytes */
	size_t len;
	struct colo_cmp_digest out;   /* what it said */
};

#define COLO_CMP_UNIT_MAX (16u << 20)

/* What verify() found. */
#define COLO_VERIFY_LIST_MAX 16

struct colo_verify_report {
	bool supported;               /* false: this guest cannot verify itself */
	uint64_t pages_checked;
	uint64_t pages_bad;
	struct {
		char block[256];
		uint64_t offset;
	} bad[COLO_VERIFY_LIST_MAX];  /* the first mismatching pages */
	char summary[256];            /* one line, e.g. "KIND: 1234567 writes" */
};

struct colo_guest_ops {
	const char *kind;             /* its name: the value of the guest key */
	uint32_t version;             /* of its state layout: part of the
					 configuration name on the wire */
	/* Its own [guest] keys (see above): opts[0..nopts) fill a struct of
	   settings_size bytes.  NULL, 0, 0 for none. */
	const struct colo_opt *opts;
	size_t nopts;
	size_t settings_size;
	bool listens;                 /* serves clients on guest-listen (--help
					 names it there) */
	bool manual_dirty;            /* marks what it writes (see above) */
	bool drives_checkpoints;      /* asks for its checkpoints (see above) */
	/* Judge the guest's own settings before anything starts (also for
	 * --check-config); NULL: nothing beyond the keys' own checks. */
	int (*check)(const struct colo_config *cfg, struct colo_err *err);
	/* Make a guest from the configuration ([guest] keys). */
	int (*create)(const struct colo_config *cfg, struct colo_guest **out,
		      struct colo_err *err);
	/* Add RAM blocks to ram and register blocks + devices in sv. */
	int (*attach)(struct colo_guest *g, struct colo_ram *ram,
		      struct colo_savevm *sv, struct colo_err *err);
	int (*start)(struct colo_guest *g, struct colo_err *err);
	/* Run on the engine's loop (see above); NULL: threads only. */
	int (*embed)(struct colo_guest *g, struct uv_loop_s *loop, struct colo_err *err);
	void (*pause)(struct colo_guest *g);
	void (*resume)(struct colo_guest *g);
	/* Called paused, before a full sync's devices are saved (a new
	 * secondary); NULL if nothing changes for a sync. */
	void (*full_sync)(struct colo_guest *g);
	void (*stop)(struct colo_guest *g);
	void (*verify)(struct colo_guest *g, struct colo_verify_report *r);
	/* One line of what it is doing, for status (e.g. writes/s). */
	void (*describe)(struct colo_guest *g, char *buf, size_t len);
	/* Its own figures for colo-ctl stats: put(ud, name, value) for each,
	 * names in snake_case and stable (scripts read them); NULL: none. */
	void (*metrics)(struct colo_guest *g,
			void (*put)(void *ud, const char *name, double value), void *ud);
	/* Output commit (see above); NULL for guests without clients. */
	void (*output_epoch)(struct colo_guest *g, uint64_t seq);
	void (*output_release)(struct colo_guest *g, uint64_t seq);
	void (*output_notify)(struct colo_guest *g, void (*fn)(void *ud), void *ud);
	/* A secondary about to take over (before any fence): 0, or why the
	 * guest could not serve (e.g. nobody could reach it).  NULL: it can. */
	int (*can_serve)(struct colo_guest *g, struct colo_err *err);
	/* Guests that take their state from elsewhere (see above); NULL if not. */
	bool (*ready)(struct colo_guest *g);
	void (*set_interval)(struct colo_guest *g, uint32_t ms);
	void (*watch)(struct colo_guest *g, void (*died)(void *ud, const char *why),
		      void *ud);
	/* Compare mode (see above); NULL if the guest cannot run it. */
	void (*compare_tap)(struct colo_guest *g,
			    void (*fn)(void *ud, const struct colo_cmp_unit *u), void *ud);
	void (*output_match)(struct colo_guest *g, uint64_t pos);
	int (*compare_run)(struct colo_guest *g, const uint8_t *data, size_t len,
			   struct colo_cmp_digest *d, struct colo_err *err);
	void (*destroy)(struct colo_guest *g);
};

/* A guest is its ops plus whatever the implementation keeps after this. */
struct colo_guest {
	const struct colo_guest_ops *ops;
};

/* The configuration name on the wire: "colo-<kind>-<version>". */
void colo_guest_machine_name(const struct colo_guest_ops *ops, char *buf, size_t len);

#endif
