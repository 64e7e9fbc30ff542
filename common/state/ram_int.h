/*
 * ram_int.h: what the RAM modules of common/ share, not public API.
 *
 * ram.c holds the public API and what every backend uses (bitmaps, the
 * probe forcing, block set-up); ram_uffd.c the uffd-wp backend;
 * ram_mprotect.c the mprotect backend, the SIGSEGV handler and the table
 * of blocks it knows; ram_softdirty.c the soft-dirty backend (which uses
 * that handler and table for its fence).
 *
 * Ownership: a struct colo_ram owns its blocks (struct ram_block: the
 * mapping, `written` and `pub.dirty`; never the descriptor of a shared
 * block's file, which its caller keeps), its userfaultfd, pagemap and
 * clear_refs descriptors, the PAGEMAP_SCAN output vector, the soft-dirty
 * read buffer and, when `segv_user` is
 * set, one reference on the SIGSEGV handler.  Each block's `sync` points
 * at its colo_ram's.
 *
 * Threads: `written` words and `sync` are atomics that guest threads (via
 * colo_ram_mark_dirty) and the SIGSEGV handler change at any time;
 * everything else belongs to the control thread.  The process-wide state
 * of the mprotect backend stays inside ram_mprotect.c.
 */
#ifndef COLO_RAM_INT_H
#define COLO_RAM_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "ram.h"

#define PAGE COLO_RAM_PAGE_SIZE
#define SHIFT COLO_RAM_PAGE_SHIFT

/* Blocks the SIGSEGV handler can know at once, over all colo_ram. */
#define RAM_MAX_SLOTS 1024

/* PAGEMAP_SCAN's output region: <linux/fs.h>, or ram_uffd.c on old headers. */
struct page_region;

/*
 * Harvest/handler exclusion (mprotect mode).  The handler's "note the page,
 * then make it writable" and the harvest's "take the notes, then protect
 * again" must not interleave (see colo__ram_mprotect_harvest()), so each is
 * a critical section: Dekker-style on two sequentially consistent atomics,
 * because a signal handler cannot take a mutex.
 */
struct ram_sync {
	atomic_int harvesting;
	atomic_int in_handler;
};

struct ram_block {
	struct colo_ram_block pub;
	_Atomic uint64_t *written;  /* noticed since the last harvest */
	uint64_t *carried;          /* mprotect: the last harvest's writable pages */
	size_t nwords;
	uint8_t *map;               /* the mapping: guard page, block, guard page */
	size_t maplen;
	bool shared;                /* the block is a MAP_SHARED mapping of a file */
	struct ram_sync *sync;
	int slot;                   /* index in ram_slots, -1 if none */
	/* soft-dirty: the handler's faults here are the fence's; changed
	 * under the slot lock only */
	atomic_bool sd;
};

/*
 * mprotect: the thread that protects the last harvest's pages again while
 * the guest runs (ram_mprotect.c, "Protecting again").  busy from a
 * harvest's kick until those pages are protected; everything that reads or
 * changes the blocks or their `carried` bitmaps waits for it to clear.
 */
struct ram_protector {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool started;               /* th runs */
	bool pending;               /* a harvest's pages wait for colo_ram_rearm */
	bool busy;
	bool quit;
	int err;                    /* a protection failed: errno, for the next harvest */
	const struct ram_block *err_block;
};

struct colo_ram {
	enum colo_dirty_mode mode;
	char reason[512];
	struct ram_block **blocks;
	size_t nblocks;
	size_t cap;
	bool started;
	bool segv_user;             /* holds a reference on the handler */
	bool auto_picked;           /* mode chosen by the auto probe */
	int uffd;
	int pagemap;
	int clear_refs;             /* soft-dirty: /proc/self/clear_refs */
	uint64_t *pmbuf;            /* soft-dirty: pagemap entries read at once */
	bool wp_unpopulated;
	struct page_region *vec;
	struct ram_sync sync;
	struct ram_protector prot;
};

/* ---- ram.c ---- */

/* Is backend `m` forced to fail (colo_ram_probe_fail)?  Says by whom in `why`. */
bool colo__ram_probe_forced(enum colo_dirty_mode m, char *why, size_t whylen);
/* Is backend `m` forced to fail on shared blocks ("<name>:shared" in
 * COLO_DIRTY_PROBE_FAIL)?  Says by whom in `why`. */
bool colo__ram_shared_forced(enum colo_dirty_mode m, char *why, size_t whylen);
/* "<what>: <strerror(errno)>" into `why`; returns -errno. */
int colo__ram_why_errno(char *why, size_t whylen, const char *what);
/* Mask of the valid bits of word `w` (the last word may be partial). */
uint64_t colo__ram_word_mask(uint64_t npages, size_t w);
/* OR pages [first, first + n) into `bm`; returns how many were not set. */
uint64_t colo__ram_bitmap_set_range(uint64_t *bm, uint64_t first, uint64_t n);
/* Move `written` into `dirty`; returns the pages new to `dirty`.  carry
 * (mprotect's `carried`): reported too, then replaced by what was taken;
 * *took set when anything was.  NULL, NULL otherwise. */
uint64_t colo__ram_take_written(struct ram_block *b, uint64_t *carry, bool *took);

/* ---- ram_uffd.c ---- */

int colo__ram_uffd_probe(struct colo_ram *ram, char *why, size_t whylen);
/* The PAGEMAP_SCAN output vector for ram->vec; NULL when out of memory. */
struct page_region *colo__ram_uffd_vec_new(void);
int colo__ram_uffd_register(int uffd, void *addr, uint64_t len, char *why, size_t whylen);
/*
 * Really try uffd-wp on page 0 of a shared block just registered (before
 * colo_ram_start: the page's tracking state does not matter yet).  Its
 * content is left as it was.
 */
int colo__ram_uffd_shared_selftest(struct colo_ram *ram, struct ram_block *b,
				   char *why, size_t whylen);
int colo__ram_uffd_start(struct colo_ram *ram, struct ram_block *b, struct colo_err *err);
int colo__ram_uffd_harvest(struct colo_ram *ram, struct ram_block *b, uint64_t *added,
			   struct colo_err *err);

/* ---- ram_mprotect.c ---- */

int colo__ram_mprotect_probe(struct colo_ram *ram, char *why, size_t whylen);
/* Install the SIGSEGV handler or take one more reference on it (-errno,
 * `why` set), and drop one (the probes take it, colo_ram_free drops it). */
int colo__ram_segv_ref(char *why, size_t whylen);
void colo__ram_segv_unref(void);
/* Make a block known to the SIGSEGV handler (-ENOSPC: table full), or not. */
int colo__ram_slot_add(struct ram_block *b);
void colo__ram_slot_del(struct ram_block *b);
/* The table under its lock, for soft-dirty's walk over every block of the
 * process: no slot is added or removed between lock and unlock. */
void colo__ram_slots_lock(void);
void colo__ram_slots_unlock(void);
size_t colo__ram_slots_used(void);
struct ram_block *colo__ram_slot_at(size_t i);
/* The same for mprotect: a write fault on page 0 of a shared block in its
 * slot must reach the handler; its content is left as it was. */
int colo__ram_mprotect_shared_selftest(struct ram_block *b, char *why, size_t whylen);
/* The harvest side of struct ram_sync's critical section. */
void colo__ram_harvest_enter(struct ram_sync *s);
void colo__ram_harvest_leave(struct ram_sync *s);
/* Report `written` and `carried`; the taken notes become `carried`.
 * Whether any did (else there is nothing to protect again). */
bool colo__ram_mprotect_harvest(struct ram_block *b, uint64_t *added);
/* Wait until the last harvest's pages are protected again (kicking the
 * protector first if colo_ram_rearm() was not called). */
void colo__ram_protector_wait(struct colo_ram *ram);
/* Protect every block's `carried` pages again, on the protector (inline
 * when it cannot start). */
void colo__ram_protector_kick(struct colo_ram *ram);
/* The error a protection left, once: 0 or -errno with err set. */
int colo__ram_protector_error(struct colo_ram *ram, struct colo_err *err);
/* End the protector (colo_ram_free). */
void colo__ram_protector_stop(struct colo_ram *ram);

/* ---- ram_softdirty.c ---- */

int colo__ram_sd_probe(struct colo_ram *ram, char *why, size_t whylen);
/* The buffer for ram->pmbuf; NULL when out of memory. */
uint64_t *colo__ram_sd_buf_new(void);
/* A shared block (in its slot, marked sd): is a write still reported once
 * the kernel unmapped the page?  Its content is left as it was. */
int colo__ram_sd_shared_selftest(struct colo_ram *ram, struct ram_block *b,
				 char *why, size_t whylen);
/* Note every soft-dirty block's bits in its `written` (every colo_ram of
 * the process) and clear them, fenced (ram_softdirty.c, "Harvest"). */
int colo__ram_sd_collect(struct colo_ram *ram, struct colo_err *err);
/* The SIGSEGV handler's part: a write fault on soft-dirty block memory.
 * True when the write may be retried. */
bool colo__ram_sd_fault(uintptr_t addr);

#endif
