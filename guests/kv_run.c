/*
 * kv_run.c: how the kv service runs (see kv.c's opening comment): on a
 * thread of its own, or on the engine's loop (embed).
 *
 * Either way the service is our own uv loop (listener, connections, the
 * wake-up async).  On a thread, the loop runs there to the end, and the
 * run gate (mu, cv, paused, busy) is how the engine parks it.  Embedded,
 * our loop runs inside the engine's: a poll handle there watches our
 * loop's backend (its epoll descriptor) and a timer our loop's next
 * timeout; either runs our loop once without waiting.  Paused, both stop,
 * so nothing of ours runs until resume.  Those two handles are the engine
 * loop's: they are freed when it has closed them, which may be after this
 * guest is gone.  Embedded, every op and every callback is on the engine's
 * loop thread, and a release or a match writes at once (kv_flush_here).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "kv_int.h"
#include "thread.h"

/* ---- the run gate ---- */

void kv_section_enter(struct kv *kv)
{
	pthread_mutex_lock(&kv->mu);
	while (kv->paused)
		pthread_cond_wait(&kv->cv, &kv->mu);
	kv->busy = true;
	pthread_mutex_unlock(&kv->mu);
}

void kv_section_leave(struct kv *kv)
{
	pthread_mutex_lock(&kv->mu);
	kv->busy = false;
	pthread_cond_broadcast(&kv->cv);
	pthread_mutex_unlock(&kv->mu);
}

/* ---- waking the kv thread ---- */

void kv_wake(struct kv *kv)
{
	pthread_mutex_lock(&kv->wake_mu);
	if (kv->wake_ok)
		uv_async_send(&kv->wake);
	pthread_mutex_unlock(&kv->wake_mu);
}

static void hosted_arm(struct kv *kv);

/* Write what may go now, and read again where the held bytes fell. */
static void flush_all(struct kv *kv)
{
	struct kv_gate gt = kv_gate_now(kv);

	for (struct kv_conn *c = kv->conns, *n; c; c = n) {
		n = c->next;
		kv_conn_flush(c, &gt);
		if (!c->closing)
			kv_conn_resume(c);
	}
}

void kv_on_wake(uv_async_t *a)
{
	struct kv *kv = a->data;

	if (atomic_load(&kv->stop_req)) {
		while (kv->conns)
			kv_conn_close(kv->conns);
		uv_close((uv_handle_t *)&kv->listener, NULL);
		uv_close((uv_handle_t *)&kv->wake, NULL);
		uv_close((uv_handle_t *)&kv->retry, NULL);
		return;
	}
	flush_all(kv);
}

/*
 * On the engine's loop, outside our own loop's turn and not paused, a
 * release or a match writes at once: the wake-up would only come back to
 * this thread a turn later.  0: done; -1: wake the loop instead.
 */
int kv_flush_here(struct kv *kv)
{
	if (!kv->hosted || kv->in_run || kv->paused)
		return -1;
	flush_all(kv);
	hosted_arm(kv);
	return 0;
}

void kv_loop_close(struct kv *kv)
{
	uv_close((uv_handle_t *)&kv->listener, NULL);
	uv_close((uv_handle_t *)&kv->wake, NULL);
	uv_close((uv_handle_t *)&kv->retry, NULL);
	uv_run(&kv->loop, UV_RUN_DEFAULT);
	uv_loop_close(&kv->loop);
}

static void *kv_main(void *arg)
{
	struct kv *kv = arg;

	pthread_setname_np(pthread_self(), "guest-kv");
	uv_run(&kv->loop, UV_RUN_DEFAULT);
	return NULL;
}

/* ---- on the engine's loop (embed; the opening comment says how) ---- */

struct kv_hosted {
	uv_poll_t poll;
	uv_timer_t timer;
	struct kv *kv;
	int open;                       /* handles not closed yet */
};

static void hosted_run(struct kv *kv)
{
	if (kv->paused)
		return;
	kv->in_run = true;
	uv_run(&kv->loop, UV_RUN_NOWAIT);
	kv->in_run = false;
	hosted_arm(kv);
}

static void on_hosted_poll(uv_poll_t *h, int status, int events)
{
	(void)status;
	(void)events;
	hosted_run(((struct kv_hosted *)h->data)->kv);
}

static void on_hosted_timer(uv_timer_t *t)
{
	hosted_run(((struct kv_hosted *)t->data)->kv);
}

/* The timer follows our loop's next timeout (none: stopped). */
static void hosted_arm(struct kv *kv)
{
	int t = uv_backend_timeout(&kv->loop);

	if (t < 0)
		uv_timer_stop(&kv->hosted->timer);
	else
		uv_timer_start(&kv->hosted->timer, on_hosted_timer, (uint64_t)t, 0);
}

static int hosted_start(struct kv *kv)
{
	struct kv_hosted *h = calloc(1, sizeof(*h));
	int r;

	if (!h)
		return -ENOMEM;
	r = uv_poll_init(kv->host, &h->poll, uv_backend_fd(&kv->loop));
	if (r) {
		free(h);
		return r;
	}
	uv_timer_init(kv->host, &h->timer);
	h->poll.data = h->timer.data = h;
	h->kv = kv;
	h->open = 2;
	kv->hosted = h;
	uv_poll_start(&h->poll, UV_READABLE, on_hosted_poll);
	hosted_arm(kv);
	return 0;
}

static void on_hosted_closed(uv_handle_t *x)
{
	struct kv_hosted *h = x->data;

	if (--h->open == 0)
		free(h);
}

/* Before our loop closes: its descriptor must leave the engine's first. */
static void hosted_stop(struct kv *kv)
{
	struct kv_hosted *h = kv->hosted;

	if (!h)
		return;
	kv->hosted = NULL;
	h->kv = NULL;
	uv_close((uv_handle_t *)&h->poll, on_hosted_closed);
	uv_close((uv_handle_t *)&h->timer, on_hosted_closed);
}

/* ---- start, pause, resume, stop ---- */

/* Our loop is set up and listening: run it, here or on a thread. */
int kv_run_start(struct kv *kv, struct colo_err *err)
{
	int r;

	atomic_store(&kv->stop_req, false);
	kv->paused = kv->busy = false;
	if (kv->host) {
		pthread_mutex_lock(&kv->wake_mu);
		kv->wake_ok = true;
		pthread_mutex_unlock(&kv->wake_mu);
		r = hosted_start(kv);
		if (r) {
			pthread_mutex_lock(&kv->wake_mu);
			kv->wake_ok = false;
			pthread_mutex_unlock(&kv->wake_mu);
			kv_loop_close(kv);
			return colo_err_set(err, -r, "kv: cannot run on the engine's loop: %s",
					    uv_strerror(r));
		}
		return 0;
	}
	/* Before the thread: a release or match meanwhile is pending on the
	 * handle when its loop first runs. */
	pthread_mutex_lock(&kv->wake_mu);
	kv->wake_ok = true;
	pthread_mutex_unlock(&kv->wake_mu);
	r = colo_thread_start(&kv->th, kv_main, kv);
	if (r) {
		pthread_mutex_lock(&kv->wake_mu);
		kv->wake_ok = false;
		pthread_mutex_unlock(&kv->wake_mu);
		kv_loop_close(kv);
		return colo_err_set(err, r, "kv: cannot start its thread: %s", strerror(r));
	}
	return 0;
}

void kv_run_pause(struct kv *kv)
{
	if (kv->hosted) {
		/* Nothing of ours runs unless the engine's loop runs it, and the
		 * engine is here: parked already. */
		kv->paused = true;
		uv_poll_stop(&kv->hosted->poll);
		uv_timer_stop(&kv->hosted->timer);
		return;
	}
	pthread_mutex_lock(&kv->mu);
	kv->paused = true;
	while (kv->busy)
		pthread_cond_wait(&kv->cv, &kv->mu);
	pthread_mutex_unlock(&kv->mu);
}

void kv_run_resume(struct kv *kv)
{
	if (kv->hosted) {
		if (kv->paused) {
			kv->paused = false;
			uv_poll_start(&kv->hosted->poll, UV_READABLE, on_hosted_poll);
			hosted_arm(kv);
		}
		return;
	}
	pthread_mutex_lock(&kv->mu);
	kv->paused = false;
	pthread_cond_broadcast(&kv->cv);
	pthread_mutex_unlock(&kv->mu);
}

/* Started: close everything of ours, and our loop. */
void kv_run_stop(struct kv *kv)
{
	kv_run_resume(kv);
	/* The thread closes the handle on this wake-up: nobody sends to it
	 * after. */
	pthread_mutex_lock(&kv->wake_mu);
	kv->wake_ok = false;
	atomic_store(&kv->stop_req, true);
	uv_async_send(&kv->wake);
	pthread_mutex_unlock(&kv->wake_mu);
	if (kv->hosted) {
		/* Our loop runs here to the end: the wake-up closes its handles. */
		hosted_stop(kv);
		uv_run(&kv->loop, UV_RUN_DEFAULT);
	} else {
		pthread_join(kv->th, NULL);
	}
	uv_loop_close(&kv->loop);
}
