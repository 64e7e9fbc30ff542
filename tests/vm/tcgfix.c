/*
 * tcgfix.c: a test-only LD_PRELOAD interposer of pthread_cond_wait for QEMU
 * 7.2 under TCG (docs/vm.md, "QEMU 7.2 workarounds used by the tests").  The
 * tests load it into the QEMU they start; it is never installed, and colo
 * itself never loads it.
 *
 * Why: QEMU 7.2's COLO primary saves RAM without the big lock, and under
 * TCG that save calls run_on_cpu without it: run_on_cpu queues work for the
 * vCPU, kicks it (a broadcast of the vCPU's halt condition), and waits with
 * pthread_cond_wait(cond, big lock).  Two things break.  glibc's wait
 * unlocks a mutex another thread holds and returns with the caller owning
 * it, unknown to QEMU: the next lock by that thread deadlocks (after the
 * first checkpoint).  And the kick, sent without the lock, can fall between
 * the vCPU thread's "no work" check and its wait: the vCPU sleeps on, the
 * work is never done, and the checkpoint hangs (seen after 53 to 168
 * checkpoints).
 *
 * What it does: when the caller does not own the mutex, take it, broadcast
 * every condition that a thread is waiting on with that mutex (the lock's
 * waiters, the vCPU among them: a lost kick is sent again, now ordered by
 * the lock; to the others it is a spurious wake-up), wait on the caller's
 * condition for at most 10 ms, and release the mutex: the caller leaves as
 * it came, not owning it, and tests its own condition again, as every
 * correct caller (run_on_cpu's loop included) does after a wait; a wake-up
 * of its own lost the same way costs it at most 10 ms.  When the caller
 * owns the mutex (every other wait in QEMU) the real pthread_cond_wait
 * runs, and the pair (condition, mutex) is noted in a table for the time
 * of the wait, so that a later takeover can wake it.
 * pthread_cond_timedwait is not interposed: QEMU never calls it without the
 * mutex, and its sleepers are woken by their deadline anyway.
 *
 * Knowing the owner: glibc keeps the owning thread's kernel tid in
 * __data.__owner for normal (default), error-checking, recursive and
 * adaptive mutexes.  That is glibc's implementation, not an interface, so
 * it is checked when the library loads (a default and an error-checking
 * mutex, locked and unlocked by this thread); a lock elided by hardware
 * transactions records no owner and fails that check.  Mutexes whose
 * __kind has other flags (robust, priority-inheriting or -protecting,
 * elided) cannot be judged and go to the real function untouched; QEMU's
 * are default mutexes.  If a check fails, or more than TCGFIX_SLOTS pairs
 * are waited on at once, the library prints one line on stderr and ends
 * the process with status 125: better no test than a test on a silently
 * wrong interposer.
 *
 * COLO_TCGFIX_VERBOSE=1 in the environment prints a line when loaded and,
 * at exit, how many waits it took over.  Thread-safe: the table has its
 * own lock (never held while waiting); the rest is set before main() or
 * atomic.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <gnu/libc-version.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef __GLIBC__
#error "tcgfix.c reads glibc's pthread_mutex_t; it is for glibc only"
#endif

/* glibc's __kind: the type in the low bits, then flags (pthreadP.h). */
#define TCGFIX_KIND_TYPE_MASK 3
#define TCGFIX_KIND_PSHARED 128
#define TCGFIX_KIND_NO_ELISION 512

/* How long a wait without the mutex may last before its caller looks again. */
#define TCGFIX_WAIT_NS 10000000L
/* Distinct (condition, mutex) pairs waited on at once: QEMU has a few per
 * vCPU and a few more. */
#define TCGFIX_SLOTS 1024

typedef int (*cond_wait_fn)(pthread_cond_t *, pthread_mutex_t *);

static cond_wait_fn real_cond_wait;
static atomic_ulong takeovers;
static int verbose;

/* Who waits on what now; n counts the threads in one pair's wait. */
struct waiting {
	pthread_cond_t *cond;
	pthread_mutex_t *mutex;
	unsigned n;
};
static struct waiting waiting[TCGFIX_SLOTS];
static unsigned waiting_used;           /* slots below it may be in use */
static pthread_mutex_t waiting_lock = PTHREAD_MUTEX_INITIALIZER;

static void refuse(const char *why)
{
	fprintf(stderr, "colo-tcgfix: %s; ending this process rather than "
		"run it with an interposer that may be wrong (tests/vm/tcgfix.c)\n", why);
	_exit(125);
}

/* 1 the caller owns m, 0 it does not, -1 cannot tell (see the top). */
static int owned_by_caller(const pthread_mutex_t *m)
{
	int kind = m->__data.__kind;

	if (kind & ~(TCGFIX_KIND_TYPE_MASK | TCGFIX_KIND_PSHARED | TCGFIX_KIND_NO_ELISION))
		return -1;
	return m->__data.__owner == gettid();
}

/* Lock and unlock m here and see glibc record and clear this thread. */
static void check_owner_field(pthread_mutex_t *m, const char *what)
{
	char why[160];

	if (m->__data.__owner != 0 || owned_by_caller(m) != 0) {
		snprintf(why, sizeof(why), "an unlocked %s mutex looks owned", what);
		refuse(why);
	}
	if (pthread_mutex_lock(m) != 0) {
		snprintf(why, sizeof(why), "cannot lock a %s mutex", what);
		refuse(why);
	}
	if (owned_by_caller(m) != 1) {
		snprintf(why, sizeof(why), "glibc did not record this thread as the "
			 "owner of a locked %s mutex (__owner %d, __kind %#x, tid %d)",
			 what, m->__data.__owner, (unsigned)m->__data.__kind, (int)gettid());
		pthread_mutex_unlock(m);
		refuse(why);
	}
	pthread_mutex_unlock(m);
	if (m->__data.__owner != 0) {
		snprintf(why, sizeof(why), "an unlocked %s mutex keeps an owner", what);
		refuse(why);
	}
}

static struct waiting *wait_begin(pthread_cond_t *cond, pthread_mutex_t *mutex)
{
	struct waiting *w, *free_slot = NULL;
	unsigned i;

	pthread_mutex_lock(&waiting_lock);
	for (i = 0; i < waiting_used; i++) {
		w = &waiting[i];
		if (w->n && w->cond == cond && w->mutex == mutex)
			goto found;
		if (!w->n && !free_slot)
			free_slot = w;
	}
	if (!free_slot) {
		if (waiting_used == TCGFIX_SLOTS)
			refuse("more (condition, mutex) pairs waited on at once than its table holds");
		free_slot = &waiting[waiting_used++];
	}
	w = free_slot;
	w->cond = cond;
	w->mutex = mutex;
found:
	w->n++;
	pthread_mutex_unlock(&waiting_lock);
	return w;
}

static void wait_end(struct waiting *w)
{
	pthread_mutex_lock(&waiting_lock);
	w->n--;
	pthread_mutex_unlock(&waiting_lock);
}

/* Wake everyone waiting with mutex; the caller holds it.  A condition in
 * the table is in use until its waiters leave, and they need the table's
 * lock to leave, so the broadcasts run under it. */
static void wake_waiters_of(pthread_mutex_t *mutex)
{
	unsigned i;

	pthread_mutex_lock(&waiting_lock);
	for (i = 0; i < waiting_used; i++)
		if (waiting[i].n && waiting[i].mutex == mutex)
			pthread_cond_broadcast(waiting[i].cond);
	pthread_mutex_unlock(&waiting_lock);
}

static void report(void)
{
	fprintf(stderr, "colo-tcgfix: %lu waits without the mutex taken over\n",
		atomic_load(&takeovers));
}

__attribute__((constructor)) static void tcgfix_init(void)
{
	pthread_mutex_t plain = PTHREAD_MUTEX_INITIALIZER;
	pthread_mutex_t checked;
	pthread_mutexattr_t attr;
	const char *v = getenv("COLO_TCGFIX_VERBOSE");

	/* The versioned name: the unversioned one could be the pre-2.3.2
	 * compatibility symbol, whose condition layout is another. */
	real_cond_wait = (cond_wait_fn)dlvsym(RTLD_NEXT, "pthread_cond_wait", "GLIBC_2.3.2");
	if (!real_cond_wait)
		refuse("no pthread_cond_wait@GLIBC_2.3.2 after this library");

	check_owner_field(&plain, "default");
	if (pthread_mutexattr_init(&attr) != 0 ||
	    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK) != 0 ||
	    pthread_mutex_init(&checked, &attr) != 0)
		refuse("cannot make an error-checking mutex");
	pthread_mutexattr_destroy(&attr);
	check_owner_field(&checked, "error-checking");
	pthread_mutex_destroy(&checked);

	verbose = v && strcmp(v, "1") == 0;
	if (verbose) {
		fprintf(stderr, "colo-tcgfix: loaded into pid %d; glibc %s records "
			"mutex owners\n", (int)getpid(), gnu_get_libc_version());
		atexit(report);
	}
}

int pthread_cond_wait(pthread_cond_t *cond, pthread_mutex_t *mutex)
{
	struct waiting *w;
	struct timespec until;
	int rc;

	switch (owned_by_caller(mutex)) {
	case -1:
		return real_cond_wait(cond, mutex);
	case 1:
		w = wait_begin(cond, mutex);
		rc = real_cond_wait(cond, mutex);
		wait_end(w);
		return rc;
	}

	atomic_fetch_add(&takeovers, 1);
	rc = pthread_mutex_lock(mutex);
	if (rc != 0)
		return rc;
	wake_waiters_of(mutex);
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += TCGFIX_WAIT_NS;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	/* clockwait names its clock: the condition's own may be either. */
	rc = pthread_cond_clockwait(cond, mutex, CLOCK_MONOTONIC, &until);
	pthread_mutex_unlock(mutex);
	return rc == ETIMEDOUT ? 0 : rc;
}
