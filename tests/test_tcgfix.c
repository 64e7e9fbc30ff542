/*
 * test_tcgfix.c: the test-only interposer tests/vm/tcgfix.so (the QEMU 7.2
 * TCG workaround, docs/vm.md) on its own, without QEMU.  The library is
 * opened with dlopen and its pthread_cond_wait called directly, so this
 * program's own calls stay glibc's.
 *
 * What must hold: the library loads (its load-time check that glibc
 * records mutex owners passes here); a caller that owns the mutex gets
 * glibc's wait, and owns the mutex on return; a caller that does not own
 * it (QEMU's run_on_cpu without the big lock) neither releases nor steals
 * a mutex another thread holds, returns without owning it, is not stuck by
 * a wake-up sent before it waited, and wakes a thread whose wake-up was
 * sent, without the mutex, between its check and its wait (the vCPU's lost
 * kick).  glibc's own function fails all but the first two: it unlocks the
 * holder's mutex and waits for a signal nobody sends.
 *
 * No assertion is on time: each test waits for what it needs with a
 * deadline far beyond it (a hang fails by Check's timeout).
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include "testutil.h"

#ifndef TCGFIX_SO
#error "TCGFIX_SO must name the built tests/vm/tcgfix.so"
#endif

typedef int (*cond_wait_fn)(pthread_cond_t *, pthread_mutex_t *);

static cond_wait_fn interposed(void)
{
	void *h = dlopen(TCGFIX_SO, RTLD_NOW | RTLD_LOCAL);
	cond_wait_fn fn;

	ck_assert_msg(h != NULL, "dlopen %s: %s", TCGFIX_SO, dlerror());
	fn = (cond_wait_fn)dlsym(h, "pthread_cond_wait");
	ck_assert_msg(fn != NULL, "no pthread_cond_wait in %s", TCGFIX_SO);
	return fn;
}

static void errorcheck_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;

	ck_assert_int_eq(pthread_mutexattr_init(&a), 0);
	ck_assert_int_eq(pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK), 0);
	ck_assert_int_eq(pthread_mutex_init(m, &a), 0);
	pthread_mutexattr_destroy(&a);
}

/* m is free: nobody, this thread included, holds it. */
static void assert_free(pthread_mutex_t *m)
{
	ck_assert_int_eq(pthread_mutex_trylock(m), 0);
	ck_assert_int_eq(pthread_mutex_unlock(m), 0);
}

START_TEST(loads)
{
	cond_wait_fn fn = interposed();

	ck_assert_ptr_ne((void *)fn, (void *)pthread_cond_wait);
}
END_TEST

struct waker {
	pthread_mutex_t *m;
	pthread_cond_t *c;
	atomic_bool done;
};

static void *wake(void *arg)
{
	struct waker *w = arg;

	pthread_mutex_lock(w->m);
	atomic_store(&w->done, true);
	pthread_cond_broadcast(w->c);
	pthread_mutex_unlock(w->m);
	return NULL;
}

/* The owner's wait: glibc's, and the caller owns the mutex on return. */
START_TEST(owner_waits_as_usual)
{
	cond_wait_fn fn = interposed();
	pthread_mutex_t m;
	pthread_cond_t c = PTHREAD_COND_INITIALIZER;
	struct waker w = { .m = &m, .c = &c };
	pthread_t t;

	errorcheck_init(&m);
	ck_assert_int_eq(pthread_mutex_lock(&m), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, wake, &w), 0);
	while (!atomic_load(&w.done))
		ck_assert_int_eq(fn(&c, &m), 0);
	/* An error-checking mutex refuses an unlock by a thread not its owner. */
	ck_assert_int_eq(pthread_mutex_unlock(&m), 0);
	pthread_join(t, NULL);
	pthread_mutex_destroy(&m);
}
END_TEST

struct holder {
	pthread_mutex_t *m;
	sem_t held;
	bool kept;              /* still the owner while the other thread waited */
	bool saw_waiter;
};

/* Hold m until the other thread blocks on it, then check it is still ours. */
static void *hold(void *arg)
{
	struct holder *h = arg;
	int i;

	pthread_mutex_lock(h->m);
	sem_post(&h->held);
	/* glibc marks a mutex contended (2) when a thread sleeps on it. */
	for (i = 0; i < 20000 && !h->saw_waiter; i++) {
		h->saw_waiter = __atomic_load_n(&h->m->__data.__lock, __ATOMIC_RELAXED) > 1;
		if (!h->saw_waiter)
			usleep(1000);
	}
	h->kept = h->m->__data.__owner == gettid();
	pthread_mutex_unlock(h->m);
	return NULL;
}

static void held_by_another(bool errorcheck)
{
	cond_wait_fn fn = interposed();
	pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t c = PTHREAD_COND_INITIALIZER;
	struct holder h = { .m = &m };
	pthread_t t;

	if (errorcheck)
		errorcheck_init(&m);
	ck_assert_int_eq(sem_init(&h.held, 0, 0), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, hold, &h), 0);
	ck_assert_int_eq(sem_wait(&h.held), 0);
	ck_assert_int_eq(fn(&c, &m), 0);
	pthread_join(t, NULL);
	ck_assert_msg(h.saw_waiter, "the wait never blocked on the held mutex");
	ck_assert_msg(h.kept, "the holder lost the mutex while the other thread waited");
	if (errorcheck)
		ck_assert_int_eq(pthread_mutex_unlock(&m), EPERM);
	assert_free(&m);
	sem_destroy(&h.held);
	pthread_mutex_destroy(&m);
}

START_TEST(held_by_another_default)
{
	held_by_another(false);
}
END_TEST

START_TEST(held_by_another_errorcheck)
{
	held_by_another(true);
}
END_TEST

/* The signal came before the wait: the wait still ends, mutex untouched. */
START_TEST(early_wakeup_is_not_lost)
{
	cond_wait_fn fn = interposed();
	pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t c = PTHREAD_COND_INITIALIZER;

	pthread_cond_broadcast(&c);
	ck_assert_int_eq(fn(&c, &m), 0);
	assert_free(&m);
}
END_TEST

/* run_on_cpu's loop, without the mutex, against a worker that finishes. */
START_TEST(waiting_loop_ends)
{
	cond_wait_fn fn = interposed();
	pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t c = PTHREAD_COND_INITIALIZER;
	struct waker w = { .m = &m, .c = &c };
	pthread_t t;
	int rounds = 0;

	ck_assert_int_eq(pthread_create(&t, NULL, wake, &w), 0);
	while (!atomic_load(&w.done)) {
		ck_assert_int_eq(fn(&c, &m), 0);
		rounds++;
	}
	pthread_join(t, NULL);
	assert_free(&m);
	fprintf(stderr, "# %d wait(s) before the worker's wake-up\n", rounds);
}
END_TEST

struct sleeper {
	cond_wait_fn fn;
	pthread_mutex_t *m;
	pthread_cond_t halt;
	sem_t checked, kicked;
	atomic_bool work;
};

/* A vCPU thread: checks for work under the mutex, then sleeps on its halt
 * condition; the kick comes between the check and the sleep. */
static void *sleeper(void *arg)
{
	struct sleeper *s = arg;

	pthread_mutex_lock(s->m);
	if (!atomic_load(&s->work)) {
		sem_post(&s->checked);
		sem_wait(&s->kicked);
		/* The check was made: now the wait, as QEMU's loop does it. */
		do
			s->fn(&s->halt, s->m);
		while (!atomic_load(&s->work));
	}
	pthread_mutex_unlock(s->m);
	return NULL;
}

/* run_on_cpu without the mutex: queue, kick (lost), wait for the work. */
START_TEST(lost_kick_is_sent_again)
{
	pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t done = PTHREAD_COND_INITIALIZER;
	struct sleeper s = { .fn = interposed(), .m = &m };
	pthread_t t;

	pthread_cond_init(&s.halt, NULL);
	ck_assert_int_eq(sem_init(&s.checked, 0, 0), 0);
	ck_assert_int_eq(sem_init(&s.kicked, 0, 0), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, sleeper, &s), 0);
	ck_assert_int_eq(sem_wait(&s.checked), 0);
	atomic_store(&s.work, true);
	pthread_cond_broadcast(&s.halt);        /* nobody waits yet: lost */
	sem_post(&s.kicked);
	/* The interposer takes the mutex once the sleeper waits (it holds the
	 * mutex until then) and wakes it; this loop ends when it has left. */
	while (pthread_tryjoin_np(t, NULL) == EBUSY)
		ck_assert_int_eq(s.fn(&done, &m), 0);
	assert_free(&m);
	sem_destroy(&s.checked);
	sem_destroy(&s.kicked);
	pthread_cond_destroy(&s.halt);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("tcgfix");
	TCase *tc = tcase_create("tcgfix");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, loads);
	tcase_add_test(tc, owner_waits_as_usual);
	tcase_add_test(tc, held_by_another_default);
	tcase_add_test(tc, held_by_another_errorcheck);
	tcase_add_test(tc, early_wakeup_is_not_lost);
	tcase_add_test(tc, waiting_loop_ends);
	tcase_add_test(tc, lost_kick_is_sent_again);
	suite_add_tcase(s, tc);
	return colo_test_main(s);
}
