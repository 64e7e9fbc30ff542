/*
 * ram_mprotect.c: the mprotect dirty-page backend (see ram.h): block pages
 * are read-only after a harvest, the first write faults, and a SIGSEGV
 * handler notes the page in the block's `written` bitmap and makes it
 * writable; a harvest takes the notes, and a thread of the colo_ram's own
 * (the protector) protects those pages again while the guest runs.
 *
 * Process-wide state: a fixed table of registered blocks that the handler
 * reads without locks (soft-dirty's blocks are in it too: their faults
 * go to ram_softdirty.c), the handler's user count and the action it
 * replaced.  Registration and the user count are serialised by ram_lock;
 * the handler never takes it.  Each colo_ram in this mode holds one
 * reference on the handler (taken by the probe, dropped by colo_ram_free),
 * and each of its blocks one slot while it exists.
 *
 * Threads: the handler runs on whichever guest thread faulted; harvests
 * and start exclude it through struct ram_sync (the argument is at
 * colo__ram_mprotect_harvest()).  The protector only protects, between a
 * harvest and the next call from the control thread, which waits for it.
 * The rest is called from the control thread.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#include "ram.h"
#include "ram_int.h"
#include "thread.h"

/* The handler reads these from signal context: they must be lock-free
 * (64-bit words are checked at run time by the mprotect probe). */
_Static_assert(ATOMIC_POINTER_LOCK_FREE == 2, "atomic pointers must be lock-free");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "atomic ints must be lock-free");

/* More runs than this to re-protect, and one mprotect of the whole block
 * is cheaper than one call per run (and merges the block's VMAs back). */
#define RAM_MPROTECT_RUNS_MAX 256

/* ---- process-wide state ---- */

static pthread_mutex_t ram_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(struct ram_block *) ram_slots[RAM_MAX_SLOTS];
static atomic_size_t ram_nslots;        /* high-water mark of used slots */
static unsigned ram_segv_users;         /* under ram_lock */
static struct sigaction ram_segv_prev;  /* written before ours is installed */

/* ---- the SIGSEGV handler ---- */

void colo__ram_harvest_enter(struct ram_sync *s)
{
	atomic_store(&s->harvesting, 1);
	while (atomic_load(&s->in_handler))
		sched_yield();
}

void colo__ram_harvest_leave(struct ram_sync *s)
{
	atomic_store(&s->harvesting, 0);
}

/* The block holding `addr`, from the lock-free table. */
static struct ram_block *slot_lookup(uintptr_t addr)
{
	size_t n = atomic_load_explicit(&ram_nslots, memory_order_acquire);

	for (size_t i = 0; i < n; i++) {
		struct ram_block *b = atomic_load_explicit(&ram_slots[i],
							   memory_order_acquire);
		uintptr_t host;

		if (!b)
			continue;
		host = (uintptr_t)b->pub.host;
		if (addr >= host && addr - host < b->pub.length)
			return b;
	}
	return NULL;
}

/*
 * A write to a read-only page of a block: note the page, then let the write
 * through.  Both steps inside the handler's critical section, so no harvest
 * can take the note between them (see colo__ram_mprotect_harvest()).
 * Returns false if the page could not be made writable: the fault is then
 * not ours to fix, and retrying it forever would hang the thread.
 */
static bool ram_segv_fault(struct ram_block *b, uintptr_t addr)
{
	struct ram_sync *s = b->sync;
	uint64_t page = (addr - (uintptr_t)b->pub.host) >> SHIFT;
	bool ok = true;

	for (;;) {
		while (atomic_load(&s->harvesting))
			sched_yield();
		atomic_fetch_add(&s->in_handler, 1);
		if (!atomic_load(&s->harvesting))
			break;
		atomic_fetch_sub(&s->in_handler, 1);
	}
	atomic_fetch_or(&b->written[page / 64], 1ull << (page % 64));
	if (mprotect(b->pub.host + (page << SHIFT), PAGE, PROT_READ | PROT_WRITE) != 0) {
		/*
		 * Out of VMAs (vm.max_map_count: every isolated writable
		 * page splits the block's mapping in three).  Give the whole
		 * block write access, which merges its VMAs, after noting
		 * every page: this round reports the whole block.
		 */
		for (size_t w = 0; w < b->nwords; w++)
			atomic_fetch_or(&b->written[w], colo__ram_word_mask(b->pub.npages, w));
		if (mprotect(b->pub.host, b->pub.length, PROT_READ | PROT_WRITE) != 0)
			ok = false;
	}
	atomic_fetch_sub(&s->in_handler, 1);
	return ok;
}

/*
 * Not ours: do what would have happened without us.  A previous handler is
 * called; a default action is restored and the fault re-executes (or, for
 * a SIGSEGV that was sent rather than caused, the signal is raised again:
 * it stays pending until this handler returns).
 */
static void ram_segv_chain(int sig, siginfo_t *si, void *uctx)
{
	const struct sigaction *prev = &ram_segv_prev;
	struct sigaction dfl;

	if (prev->sa_flags & SA_SIGINFO) {
		prev->sa_sigaction(sig, si, uctx);
		return;
	}
	if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
		prev->sa_handler(sig);
		return;
	}
	if (prev->sa_handler == SIG_IGN && si->si_code <= 0)
		return;         /* a sent SIGSEGV that was being ignored */
	/* A fault with SIGSEGV ignored kills too (the kernel forces it). */
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	sigaction(SIGSEGV, &dfl, NULL);
	if (si->si_code <= 0)
		raise(sig);
}

/*
 * Can this access fault be a write?  Block pages are always readable, so on
 * a block an access fault is a write to a page we protected, unless it is an
 * instruction fetch (which opening the page for writing would not cure: the
 * thread would fault forever).  x86-64 tells us in the page-fault error
 * code; without one (other CPUs; err without the user-mode bit, as a
 * debugger or emulator may leave it) the fault is taken to be a write.
 */
static bool fault_is_write(const void *uctx)
{
#if defined(__x86_64__)
	const ucontext_t *uc = uctx;
	greg_t e = uc->uc_mcontext.gregs[REG_ERR];

	if (e & 0x4)            /* X86_PF_USER: a real error code */
		return (e & 0x2) && !(e & 0x10);   /* PF_WRITE, not PF_INSTR */
#else
	(void)uctx;
#endif
	return true;
}

static void ram_segv(int sig, siginfo_t *si, void *uctx)
{
	int saved = errno;

	if (si->si_code == SEGV_ACCERR && fault_is_write(uctx)) {
		uintptr_t addr = (uintptr_t)si->si_addr;
		struct ram_block *b = slot_lookup(addr);

		/* A soft-dirty block is read-only only while a harvest's
		 * fence is up (ram_softdirty.c). */
		if (b && (atomic_load(&b->sd) ? colo__ram_sd_fault(addr)
					      : ram_segv_fault(b, addr))) {
			errno = saved;
			return;
		}
	}
	errno = saved;
	ram_segv_chain(sig, si, uctx);
}

int colo__ram_segv_ref(char *why, size_t whylen)
{
	struct sigaction sa, cur;
	int ret = 0;

	pthread_mutex_lock(&ram_lock);
	if (ram_segv_users == 0) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = ram_segv;
		/* SA_ONSTACK: chained handlers (ASan's) expect their
		 * alternate stack, and a stack overflow needs one. */
		sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGSEGV, NULL, &ram_segv_prev) != 0 ||
		    sigaction(SIGSEGV, &sa, NULL) != 0) {
			ret = -errno;
			snprintf(why, whylen, "sigaction(SIGSEGV): %s", strerror(errno));
		} else if (sigaction(SIGSEGV, NULL, &cur) != 0 ||
			   !(cur.sa_flags & SA_SIGINFO) || cur.sa_sigaction != ram_segv) {
			/* A sanitizer that keeps SIGSEGV to itself. */
			sigaction(SIGSEGV, &ram_segv_prev, NULL);
			ret = -EPERM;
			snprintf(why, whylen, "sigaction(SIGSEGV) did not install the handler");
		}
	}
	if (ret == 0)
		ram_segv_users++;
	pthread_mutex_unlock(&ram_lock);
	return ret;
}

void colo__ram_segv_unref(void)
{
	struct sigaction cur;

	pthread_mutex_lock(&ram_lock);
	assert(ram_segv_users > 0);
	if (--ram_segv_users == 0) {
		/* Put the previous action back, unless someone replaced ours. */
		if (sigaction(SIGSEGV, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
		    cur.sa_sigaction == ram_segv)
			sigaction(SIGSEGV, &ram_segv_prev, NULL);
	}
	pthread_mutex_unlock(&ram_lock);
}

int colo__ram_slot_add(struct ram_block *b)
{
	int ret = -ENOSPC;

	pthread_mutex_lock(&ram_lock);
	for (size_t i = 0; i < RAM_MAX_SLOTS; i++) {
		if (atomic_load(&ram_slots[i]))
			continue;
		/* Release: the handler sees the block's fields filled in. */
		atomic_store_explicit(&ram_slots[i], b, memory_order_release);
		if (i >= atomic_load(&ram_nslots))
			atomic_store_explicit(&ram_nslots, i + 1, memory_order_release);
		b->slot = (int)i;
		ret = 0;
		break;
	}
	pthread_mutex_unlock(&ram_lock);
	return ret;
}

void colo__ram_slot_del(struct ram_block *b)
{
	if (b->slot < 0)
		return;
	pthread_mutex_lock(&ram_lock);
	atomic_store_explicit(&ram_slots[b->slot], NULL, memory_order_release);
	pthread_mutex_unlock(&ram_lock);
	b->slot = -1;
}

void colo__ram_slots_lock(void)
{
	pthread_mutex_lock(&ram_lock);
}

void colo__ram_slots_unlock(void)
{
	pthread_mutex_unlock(&ram_lock);
}

size_t colo__ram_slots_used(void)
{
	return atomic_load(&ram_nslots);
}

struct ram_block *colo__ram_slot_at(size_t i)
{
	return i < RAM_MAX_SLOTS ? atomic_load(&ram_slots[i]) : NULL;
}

/* ---- probe ---- */

/*
 * mprotect: install the handler (kept on success) and take one real fault
 * on a registered page through it.
 */
int colo__ram_mprotect_probe(struct colo_ram *ram, char *why, size_t whylen)
{
	_Atomic uint64_t word = 0;
	struct ram_block b;
	uint8_t *p;
	int ret;

	if (colo__ram_probe_forced(COLO_DIRTY_MPROTECT, why, whylen))
		return -ENOTSUP;
	if (!atomic_is_lock_free(&word)) {
		snprintf(why, whylen, "64-bit atomics are not lock-free on this CPU");
		return -ENOTSUP;
	}
	p = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return colo__ram_why_errno(why, whylen, "mmap");
	memset(&b, 0, sizeof(b));
	b.pub.host = p;
	b.pub.length = PAGE;
	b.pub.npages = 1;
	b.written = &word;
	b.nwords = 1;
	b.sync = &ram->sync;
	b.slot = -1;
	ret = colo__ram_segv_ref(why, whylen);
	if (ret == 0) {
		ret = colo__ram_slot_add(&b);
		if (ret < 0) {
			snprintf(why, whylen, "more than %d blocks registered", RAM_MAX_SLOTS);
		} else {
			*(volatile uint8_t *)(p + 9) = 1;
			if (atomic_load(&word) != 1 || p[9] != 1) {
				ret = -ENOTSUP;
				snprintf(why, whylen, "a write fault was not noticed");
			}
			colo__ram_slot_del(&b);
		}
		if (ret < 0)
			colo__ram_segv_unref();
		else
			ram->segv_user = true;
	}
	munmap(p, PAGE);
	return ret;
}

/*
 * A shared block: one real write fault on its page 0 through the handler,
 * as the probe does on anonymous memory.  The write is an atomic add of
 * zero, so the file's content is unchanged even if another process writes
 * it meanwhile.  Before colo_ram_start, so the note is dropped again.
 */
int colo__ram_mprotect_shared_selftest(struct ram_block *b, char *why, size_t whylen)
{
	bool noted;

	assert(b->slot >= 0);
	if (mprotect(b->pub.host, PAGE, PROT_READ) != 0)
		return colo__ram_why_errno(why, whylen, "mprotect");
	__atomic_fetch_add(b->pub.host, 0, __ATOMIC_RELAXED);
	noted = atomic_fetch_and(&b->written[0], ~1ull) & 1;
	if (!noted) {
		snprintf(why, whylen, "a write fault was not noticed");
		return -ENOTSUP;
	}
	return 0;
}

/* ---- harvest ---- */

/*
 * mprotect.  A harvest does not protect the pages it reports: re-protecting
 * scattered pages is the kernel's work of merging the block's mappings
 * again, about 2 us per isolated page (17 ms for 10k), and it would all be
 * in the guest's pause.  Instead the pages a harvest took stay writable and
 * `carried`: the protector thread protects them while the guest runs, and
 * the next harvest reports them once more, since a write to one before its
 * protection leaves no trace.  That costs a staging copy of those pages at
 * the next checkpoint, which the encoder then drops as unchanged when they
 * were not written (ramenc.c).
 *
 * Invariant, outside the critical sections of harvests and handlers: a
 * writable page of a started block has its `written` or its `carried` bit
 * set.
 *   - start (colo_ram_start() in ram.c) waits for the protector, clears
 *     `carried` and protects every page, inside a harvest-side section;
 *   - the handler sets the bit, THEN makes the page writable, both inside
 *     its section;
 *   - a harvest waits for the protector to be done with the last harvest's
 *     pages (so those are read-only now unless a handler opened one and set
 *     its bit), then, inside its section, exchanges each `written` word
 *     with 0, reports it together with `carried`, and makes the taken word
 *     the new `carried`;
 *   - the protector only takes write access away (a page it protects after
 *     a handler opened it faults once more, and the handler sets the bit it
 *     already has); where it cannot, it sets the pages' `written` bits
 *     first.
 * So a write W to page p either faults, and the handler sets p's bit before
 * W lands; or p is writable, and its `written` bit is set (reported by the
 * first harvest to take it: that one starts after the bit was set) or its
 * `carried` bit is (reported by the next harvest, which starts after W).
 * Either way W is reported by the first harvest that returns after W
 * completes, as before the protection moved off the harvest.
 *
 * The sections are needed because the handler's two steps are not atomic:
 * without them a harvest could take the bit between the handler's OR and
 * its mprotect(READ|WRITE), the protector protect the (still read-only)
 * page, and the handler then open it with neither bit set: every later
 * write to it would be lost.  Handlers wait (sched_yield) while a harvest
 * runs; a harvest waits only for handlers already inside, whose section is
 * one atomic OR and one mprotect.  The protector needs no section: it
 * never clears a bit.
 */
bool colo__ram_mprotect_harvest(struct ram_block *b, uint64_t *added)
{
	bool took = false;

	*added += colo__ram_take_written(b, b->carried, &took);
	return took;
}

/* ---- protecting again ----
 *
 * A harvest leaves its pages pending; colo_ram_rearm() (the caller has
 * copied them) or else the next wait hands them to the protector.
 * protect_all() runs on it between that kick and the wait that comes
 * first in every harvest, start, add, unshare or free, so it has the
 * blocks and their `carried` bitmaps to itself; `err` is handed over by
 * the same mutex (the waiter reads it after seeing busy cleared).
 */

struct prot_runs {
	struct ram_block *b;
	uint64_t start, len;        /* the run being extended */
	uint64_t n;                 /* runs protected so far */
	bool whole;                 /* give up on runs: protect the block */
};

static void runs_flush(struct prot_runs *r)
{
	if (r->len == 0 || r->whole)
		return;
	if (++r->n > RAM_MPROTECT_RUNS_MAX ||
	    mprotect(r->b->pub.host + (r->start << SHIFT), r->len << SHIFT, PROT_READ) != 0)
		r->whole = true;
	r->len = 0;
}

static void runs_add(struct prot_runs *r, uint64_t page, uint64_t len)
{
	if (r->len && r->start + r->len == page) {
		r->len += len;
		return;
	}
	runs_flush(r);
	r->start = page;
	r->len = len;
}

/* One block's carried pages, by runs; 0 or an errno. */
static int protect_block(struct ram_block *b)
{
	struct prot_runs r = { .b = b };

	for (size_t w = 0; w < b->nwords; w++) {
		uint64_t bits = b->carried[w];

		/* Each run of ones in the word extends or starts a run. */
		while (bits) {
			unsigned bit = (unsigned)__builtin_ctzll(bits);
			uint64_t rest = ~(bits >> bit);
			unsigned len = rest ? (unsigned)__builtin_ctzll(rest) : 64 - bit;

			runs_add(&r, (uint64_t)w * 64 + bit, len);
			bits = bit + len >= 64 ? 0 : bits & ~0ull << (bit + len);
		}
	}
	runs_flush(&r);
	/*
	 * Many runs (or a failed mprotect, e.g. out of VMAs): protect the
	 * whole block in one call.  Correct because every writable page has a
	 * bit set (the invariant); it also merges the block's VMAs.
	 */
	if (r.whole && mprotect(b->pub.host, b->pub.length, PROT_READ) != 0) {
		int e = errno;

		/* Report every page again next time rather than lose one. */
		for (size_t w = 0; w < b->nwords; w++)
			atomic_fetch_or(&b->written[w], colo__ram_word_mask(b->pub.npages, w));
		return e;
	}
	return 0;
}

/* Every block's; the first failure goes to the next harvest.  On the
 * protector, or inline when it has no thread (never both). */
static void protect_all(struct colo_ram *ram)
{
	for (size_t i = 0; i < ram->nblocks; i++) {
		int e = protect_block(ram->blocks[i]);

		if (e && !ram->prot.err) {
			ram->prot.err = e;
			ram->prot.err_block = ram->blocks[i];
		}
	}
}

static void *protector_main(void *arg)
{
	struct colo_ram *ram = arg;
	struct ram_protector *pr = &ram->prot;

	pthread_mutex_lock(&pr->mu);
	for (;;) {
		while (!pr->busy && !pr->quit)
			pthread_cond_wait(&pr->cv, &pr->mu);
		if (pr->quit)
			break;
		pthread_mutex_unlock(&pr->mu);
		protect_all(ram);
		pthread_mutex_lock(&pr->mu);
		pr->busy = false;
		pthread_cond_broadcast(&pr->cv);
	}
	pthread_mutex_unlock(&pr->mu);
	return NULL;
}

static bool protector_start(struct colo_ram *ram)
{
	struct ram_protector *pr = &ram->prot;

	if (pr->started)
		return true;
	if (pthread_mutex_init(&pr->mu, NULL) != 0)
		return false;
	if (pthread_cond_init(&pr->cv, NULL) != 0) {
		pthread_mutex_destroy(&pr->mu);
		return false;
	}
	if (colo_thread_start(&pr->th, protector_main, ram) != 0) {
		pthread_cond_destroy(&pr->cv);
		pthread_mutex_destroy(&pr->mu);
		return false;
	}
	pr->started = true;
	return true;
}

void colo__ram_protector_kick(struct colo_ram *ram)
{
	struct ram_protector *pr = &ram->prot;

	if (!protector_start(ram)) {
		/* No thread: protect here, in the pause, as it used to be. */
		protect_all(ram);
		return;
	}
	pthread_mutex_lock(&pr->mu);
	pr->busy = true;
	pthread_cond_signal(&pr->cv);
	pthread_mutex_unlock(&pr->mu);
}

void colo__ram_protector_wait(struct colo_ram *ram)
{
	struct ram_protector *pr = &ram->prot;

	if (pr->pending) {
		pr->pending = false;
		colo__ram_protector_kick(ram);
	}
	if (!pr->started)
		return;
	pthread_mutex_lock(&pr->mu);
	while (pr->busy)
		pthread_cond_wait(&pr->cv, &pr->mu);
	pthread_mutex_unlock(&pr->mu);
}

int colo__ram_protector_error(struct colo_ram *ram, struct colo_err *err)
{
	struct ram_protector *pr = &ram->prot;
	int e = pr->err;

	if (!e)
		return 0;
	pr->err = 0;
	return colo_err_set(err, e, "RAM block \"%s\": harvest: mprotect: %s "
			    "(its pages are reported again)", pr->err_block->pub.name,
			    strerror(e));
}

void colo__ram_protector_stop(struct colo_ram *ram)
{
	struct ram_protector *pr = &ram->prot;

	if (!pr->started)
		return;
	pthread_mutex_lock(&pr->mu);
	pr->quit = true;
	pthread_cond_broadcast(&pr->cv);
	pthread_mutex_unlock(&pr->mu);
	pthread_join(pr->th, NULL);
	pthread_cond_destroy(&pr->cv);
	pthread_mutex_destroy(&pr->mu);
	pr->started = false;
}
