/*
 * memtouch.c: see memtouch.h.
 *
 * Threads and pause.  Each writer thread is in one of three states:
 * RUNNING (it may be writing), IDLE (sleeping for the rate; it checks for
 * a pause before its next write) and PARKED (waiting for resume).  pause()
 * raises pause_req and waits until no thread is RUNNING; a thread that
 * leaves IDLE stores RUNNING and then reads pause_req, and pause() stores
 * pause_req and then reads the states, all sequentially consistent, so one
 * of the two always sees the other (Dekker): either the thread parks
 * before writing, or pause() waits for it.  A thread publishes its count of
 * completed writes to the device before it leaves RUNNING (release), and
 * pause() reads the states with acquire: once pause() returns, RAM and
 * counters agree and neither changes until resume().  pause() spins for a
 * few microseconds (a running thread is at most one write away from
 * parking) and then sleeps on a condition variable; resume() is one
 * broadcast.
 *
 * Counters are published only when a thread leaves RUNNING and every
 * PUBLISH_EVERY writes (for describe()), so threads do not share a cache
 * line per write.  After any pause the device state is where a thread goes
 * on from: a parked thread re-reads its count when resumed, a thread that
 * slept through the pause (IDLE) sees the pause epoch moved when it wakes
 * and re-reads it too.  So a state loaded into a paused guest (or a counter
 * changed by hand) is obeyed.
 *
 * Threads run with a private copy of the shape (seed, pattern, sizes),
 * taken at start(): a load that changes the device state can never make a
 * thread write outside its partition.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "cfgopt.h"
#include "clock.h"
#include "thread.h"
#include "nodecfg.h"
#include "guest.h"
#include "memtouch.h"
#include "ram.h"
#include "savevm.h"
#include "splitmix.h"
#include "vmstate.h"

#define PAGE COLO_RAM_PAGE_SIZE
#define NSEC 1000000000ull

/* Pacing: sleep once a thread is this far ahead of its schedule (batches of
 * ~20 writes at 20k/s), forget the schedule when this far behind. */
#define PACE_SLACK_NS 1000000ull
#define PACE_LAG_MAX_NS 50000000ull
/* Longest single sleep, so stop() never waits long. */
#define SLEEP_CHUNK_NS 10000000ull
#define PUBLISH_EVERY 1024
/* pause(): busy-wait this long before sleeping on the condition.  A running
 * writer is at most one write (well under a microsecond; a few with a
 * tracking fault) from parking; a longer spin only helps when it is not
 * on a CPU, and then the spin may keep it off one.  (Yielding instead was
 * measured: worse.) */
#define PAUSE_SPIN_NS 5000ull

enum { TH_RUNNING, TH_IDLE, TH_PARKED };

/* What a thread needs to compute its writes. */
struct mt_shape {
	uint64_t seed;
	uint32_t pattern;
	uint32_t bytes;
	uint32_t threads;
	uint64_t part_size;
	uint64_t block_size;
};

struct mt_keys {
	uint64_t off;
	uint64_t data;
};

struct mt_thread {
	_Alignas(64) atomic_int state;   /* own cache line: pause() polls it */
	uint32_t t;
	pthread_t tid;
	struct memtouch *m;
};

struct memtouch {
	struct colo_guest base;
	uint32_t rate;                       /* writes/s per thread, 0 = no limit */
	uint64_t block_size;
	struct colo_memtouch_state st;       /* the device */
	struct colo_ram_block *block;        /* after attach */
	bool manual;                         /* mark what we write */

	struct mt_shape run;                 /* what the threads use */
	struct mt_thread *th;
	uint32_t nth;
	bool started, paused;
	atomic_bool pause_req, stop_req;
	atomic_uint epoch;                   /* pauses so far */
	pthread_mutex_t mu;
	pthread_cond_t parked_cv;            /* a thread parked or went idle */
	pthread_cond_t resume_cv;

	/* describe() */
	bool rate_init;
	uint64_t rate_total;
	uint64_t rate_at_ns;
	uint64_t rate_est;
};

static struct memtouch *to_mt(struct colo_guest *g)
{
	return (struct memtouch *)g;
}

/* ---- the writes: pure functions of (shape, t, k) ---- */

/* Uniform in [0, n) from 64 random bits (Lemire's multiply-shift). */
static inline uint64_t below(uint64_t h, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)h * n) >> 64);
}

static void keys_for(uint64_t seed, uint32_t t, struct mt_keys *k)
{
	uint64_t base = colo_splitmix64_at(seed, t);

	k->off = colo_mix64(base ^ 0x6f66667365740000ull);
	k->data = colo_mix64(base ^ 0x6461746100000000ull);
}

/* Offset of write k inside its partition. */
static inline uint64_t write_rel(const struct mt_shape *s, const struct mt_keys *keys,
				 uint64_t k)
{
	uint64_t h, hot;

	switch (s->pattern) {
	case COLO_MEMTOUCH_SEQUENTIAL:
		return (k % (s->part_size / s->bytes)) * s->bytes;
	case COLO_MEMTOUCH_HOTSET:
		h = colo_splitmix64_at(keys->off, k);
		hot = s->part_size / 10;
		if (hot < s->bytes)
			hot = s->bytes;
		if (below(h, 10) < 9)
			return below(colo_mix64(h), hot - s->bytes + 1);
		return below(colo_mix64(h), s->part_size - s->bytes + 1);
	default:
		h = colo_splitmix64_at(keys->off, k);
		return below(h, s->part_size - s->bytes + 1);
	}
}

static inline void write_data(uint8_t *p, uint32_t bytes, uint64_t w)
{
	uint32_t i = 0;

	for (; i + 8 <= bytes; i += 8)
		memcpy(p + i, &w, 8);
	memcpy(p + i, &w, bytes - i);
}

static void shape_of(const struct colo_memtouch_state *st, struct mt_shape *s)
{
	s->seed = st->seed;
	s->pattern = st->pattern;
	s->bytes = st->bytes;
	s->threads = st->threads;
	s->part_size = st->part_size;
	s->block_size = st->block_size;
}

static bool shape_eq(const struct mt_shape *a, const struct mt_shape *b)
{
	return a->seed == b->seed && a->pattern == b->pattern && a->bytes == b->bytes &&
	       a->threads == b->threads && a->part_size == b->part_size &&
	       a->block_size == b->block_size;
}

static uint64_t part_size_for(uint64_t block_size, uint32_t threads)
{
	return block_size / threads / PAGE * PAGE;
}

/* Is the device state one we can run and verify?  Says why not. */
static int shape_check(const struct colo_memtouch_state *st, uint64_t block_size,
		       struct colo_err *err)
{
	if (st->threads < 1 || st->threads > COLO_MEMTOUCH_THREADS_MAX)
		return colo_err_set(err, EINVAL, "threads %" PRIu32 " is not 1 to %d",
				    st->threads, COLO_MEMTOUCH_THREADS_MAX);
	if (st->pattern > COLO_MEMTOUCH_HOTSET)
		return colo_err_set(err, EINVAL, "pattern %" PRIu32 " is unknown",
				    st->pattern);
	if (st->bytes < 1 || st->bytes > COLO_MEMTOUCH_BYTES_MAX)
		return colo_err_set(err, EINVAL, "bytes %" PRIu32 " is not 1 to %d",
				    st->bytes, COLO_MEMTOUCH_BYTES_MAX);
	if (st->block_size != block_size)
		return colo_err_set(err, EINVAL, "block size %" PRIu64 " is not %" PRIu64
				    " (ram-mb differs)", st->block_size, block_size);
	if (st->part_size != part_size_for(block_size, st->threads))
		return colo_err_set(err, EINVAL, "partition size %" PRIu64 " is not %"
				    PRIu64 " for %" PRIu32 " threads", st->part_size,
				    part_size_for(block_size, st->threads), st->threads);
	if (st->part_size < st->bytes)
		return colo_err_set(err, EINVAL, "partition of %" PRIu64 " bytes is "
				    "smaller than a write of %" PRIu32, st->part_size,
				    st->bytes);
	return 0;
}

/* ---- the device ---- */

static int memtouch_post_load(void *opaque, int version_id, struct colo_err *err)
{
	struct colo_memtouch_state *st = opaque;
	struct memtouch *m = (struct memtouch *)((char *)st - offsetof(struct memtouch, st));
	struct mt_shape s;
	int r;

	(void)version_id;
	if ((r = shape_check(st, m->block_size, err)))
		return r;
	shape_of(st, &s);
	if (m->started && !shape_eq(&s, &m->run))
		return colo_err_set(err, EBUSY, "seed, pattern, bytes or threads differ "
				    "from the running guest's: stop it before loading");
	return 0;
}

const struct colo_vmstate_desc colo_memtouch_vmstate = {
	.name = COLO_MEMTOUCH_DEVICE,
	.version_id = 1,
	.minimum_version_id = 1,
	.post_load = memtouch_post_load,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT64(seed, struct colo_memtouch_state),
		COLO_VMSTATE_UINT32(pattern, struct colo_memtouch_state),
		COLO_VMSTATE_UINT32(bytes, struct colo_memtouch_state),
		COLO_VMSTATE_UINT32(threads, struct colo_memtouch_state),
		COLO_VMSTATE_UINT64(part_size, struct colo_memtouch_state),
		COLO_VMSTATE_UINT64(block_size, struct colo_memtouch_state),
		COLO_VMSTATE_VARRAY_UINT32(writes, struct colo_memtouch_state, threads,
					   0, colo_vmstate_info_uint64, uint64_t),
		COLO_VMSTATE_END,
	},
};

const char *colo_memtouch_pattern_name(uint32_t pattern)
{
	switch (pattern) {
	case COLO_MEMTOUCH_SEQUENTIAL: return "sequential";
	case COLO_MEMTOUCH_RANDOM: return "random";
	case COLO_MEMTOUCH_HOTSET: return "hotset";
	default: return "unknown";
	}
}

struct colo_memtouch_state *colo_memtouch_state(struct colo_guest *g)
{
	return &to_mt(g)->st;
}

uint64_t colo_memtouch_write_offset(const struct colo_memtouch_state *st,
				    uint32_t t, uint64_t k)
{
	struct mt_shape s;
	struct mt_keys keys;
	struct colo_err err;

	colo_err_clear(&err);
	if (shape_check(st, st->block_size, &err) || t >= st->threads)
		return UINT64_MAX;
	shape_of(st, &s);
	keys_for(s.seed, t, &keys);
	return (uint64_t)t * s.part_size + write_rel(&s, &keys, k);
}

/* ---- threads ---- */

static void sleep_until(uint64_t ns)
{
	struct timespec ts = colo_mono_timespec(ns);      /* colo_now_ns()'s clock */

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static void publish(struct memtouch *m, uint32_t t, uint64_t k)
{
	__atomic_store_n(&m->st.writes[t], k, __ATOMIC_RELEASE);
}

/* Wait while paused; false when told to stop. */
static bool park(struct memtouch *m, struct mt_thread *th)
{
	bool go;

	pthread_mutex_lock(&m->mu);
	atomic_store(&th->state, TH_PARKED);
	pthread_cond_broadcast(&m->parked_cv);
	while (atomic_load(&m->pause_req) && !atomic_load(&m->stop_req))
		pthread_cond_wait(&m->resume_cv, &m->mu);
	go = !atomic_load(&m->stop_req);
	atomic_store(&th->state, TH_RUNNING);
	pthread_mutex_unlock(&m->mu);
	return go;
}

/* Sleep until `due` as IDLE: a pause() meanwhile need not wait for us. */
static void idle_until(struct memtouch *m, struct mt_thread *th, uint64_t due)
{
	atomic_store(&th->state, TH_IDLE);
	if (atomic_load(&m->pause_req)) {
		/* pause() may be asleep waiting for this thread */
		pthread_mutex_lock(&m->mu);
		pthread_cond_broadcast(&m->parked_cv);
		pthread_mutex_unlock(&m->mu);
	}
	for (;;) {
		uint64_t now = colo_now_ns();

		if (now >= due || atomic_load(&m->stop_req))
			break;
		sleep_until(due - now > SLEEP_CHUNK_NS ? now + SLEEP_CHUNK_NS : due);
	}
	atomic_store(&th->state, TH_RUNNING);
}

static void *mt_main(void *arg)
{
	struct mt_thread *th = arg;
	struct memtouch *m = th->m;
	const struct mt_shape *s = &m->run;
	uint8_t *part = m->block->host + (uint64_t)th->t * s->part_size;
	uint64_t part_off = (uint64_t)th->t * s->part_size;
	uint64_t k = __atomic_load_n(&m->st.writes[th->t], __ATOMIC_ACQUIRE);
	uint64_t published = k, k0 = k, t0 = m->rate ? colo_now_ns() : 0;
	unsigned epoch = atomic_load(&m->epoch);
	bool woke = false;
	struct mt_keys keys;

	keys_for(s->seed, th->t, &keys);
	for (;;) {
		uint64_t rel;

		if (atomic_load(&m->pause_req) || atomic_load(&m->stop_req)) {
			if (k != published)
				publish(m, th->t, k);
			if (!park(m, th))
				break;
			/* the device state says where to go on (it may have
			 * been loaded while we were parked) */
			k = published = __atomic_load_n(&m->st.writes[th->t], __ATOMIC_ACQUIRE);
			epoch = atomic_load(&m->epoch);
			k0 = k;
			t0 = m->rate ? colo_now_ns() : 0;
			continue;
		}
		if (woke) {
			/* slept through a pause: same as parked.  Our count was
			 * published before sleeping, so re-reading it is right
			 * even if that pause is only starting now. */
			woke = false;
			if (atomic_load(&m->epoch) != epoch) {
				epoch = atomic_load(&m->epoch);
				k = published = __atomic_load_n(&m->st.writes[th->t],
								__ATOMIC_ACQUIRE);
				k0 = k;
				t0 = colo_now_ns();
			}
		}
		/* one step: the write and its count */
		rel = write_rel(s, &keys, k);
		write_data(part + rel, s->bytes, colo_splitmix64_at(keys.data, k));
		if (m->manual)
			colo_ram_mark_dirty(m->block, part_off + rel, s->bytes);
		k++;
		if (k % PUBLISH_EVERY == 0) {
			publish(m, th->t, k);
			published = k;
		}
		if (m->rate) {
			uint64_t due = t0 + (uint64_t)((unsigned __int128)(k - k0) * NSEC / m->rate);
			uint64_t now = colo_now_ns();

			if (due > now + PACE_SLACK_NS) {
				if (k != published) {
					publish(m, th->t, k);
					published = k;
				}
				idle_until(m, th, due);
				woke = true;
			} else if (now > due + PACE_LAG_MAX_NS) {
				/* far behind (descheduled): do not burst to catch up */
				k0 = k;
				t0 = now;
			}
		}
	}
	if (k != published)
		publish(m, th->t, k);
	return NULL;
}

static bool all_quiet(struct memtouch *m)
{
	for (uint32_t i = 0; i < m->nth; i++)
		if (atomic_load(&m->th[i].state) == TH_RUNNING)
			return false;
	return true;
}

static void mt_pause(struct colo_guest *g)
{
	struct memtouch *m = to_mt(g);

	if (!m->started || m->paused)
		return;
	atomic_fetch_add_explicit(&m->epoch, 1, memory_order_relaxed);
	atomic_store(&m->pause_req, true);
	for (uint64_t i = 0, until = 0;; i++) {
		if (all_quiet(m))
			goto done;
		if (i % 64 == 0) {
			uint64_t now = colo_now_ns();

			if (!until)
				until = now + PAUSE_SPIN_NS;
			else if (now >= until)
				break;
		}
		cpu_relax();
	}
	pthread_mutex_lock(&m->mu);
	while (!all_quiet(m))
		pthread_cond_wait(&m->parked_cv, &m->mu);
	pthread_mutex_unlock(&m->mu);
done:
	m->paused = true;
}

static void mt_resume(struct colo_guest *g)
{
	struct memtouch *m = to_mt(g);

	if (!m->started || !m->paused)
		return;
	pthread_mutex_lock(&m->mu);
	atomic_store(&m->pause_req, false);
	pthread_mutex_unlock(&m->mu);
	/* after unlocking: the woken threads need the mutex at once */
	pthread_cond_broadcast(&m->resume_cv);
	m->paused = false;
}

static void mt_stop(struct colo_guest *g)
{
	struct memtouch *m = to_mt(g);

	if (!m->started)
		return;
	pthread_mutex_lock(&m->mu);
	atomic_store(&m->stop_req, true);
	pthread_cond_broadcast(&m->resume_cv);
	pthread_mutex_unlock(&m->mu);
	for (uint32_t i = 0; i < m->nth; i++)
		pthread_join(m->th[i].tid, NULL);
	free(m->th);
	m->th = NULL;
	m->nth = 0;
	m->started = m->paused = false;
	atomic_store(&m->pause_req, false);
	atomic_store(&m->stop_req, false);
}

static int mt_start(struct colo_guest *g, struct colo_err *err)
{
	struct memtouch *m = to_mt(g);
	int r;

	if (!m->block)
		return colo_err_set(err, EINVAL, "memtouch: start before attach");
	if (m->started)
		return colo_err_set(err, EBUSY, "memtouch: already started");
	if ((r = shape_check(&m->st, m->block_size, err))) {
		colo_err_prefix(err, "memtouch: device state");
		return r;
	}
	shape_of(&m->st, &m->run);
	m->th = aligned_alloc(_Alignof(struct mt_thread),
			      m->run.threads * sizeof(struct mt_thread));
	if (!m->th)
		return colo_err_set(err, ENOMEM, "memtouch: out of memory");
	memset(m->th, 0, m->run.threads * sizeof(struct mt_thread));
	atomic_store(&m->pause_req, false);
	atomic_store(&m->stop_req, false);
	m->started = true;
	m->paused = false;
	m->rate_init = true;
	m->rate_est = 0;
	m->rate_at_ns = colo_now_ns();
	m->rate_total = 0;
	for (uint32_t t = 0; t < m->run.threads; t++)
		m->rate_total += m->st.writes[t];
	/* The daemon's signals go to its loop thread, never to a writer. */
	for (uint32_t i = 0; i < m->run.threads; i++) {
		struct mt_thread *th = &m->th[i];
		char name[24];     /* at most 15 used: "memtouch/63" */

		th->t = i;
		th->m = m;
		atomic_init(&th->state, TH_RUNNING);
		r = colo_thread_start(&th->tid, mt_main, th);
		if (r) {
			mt_stop(g);
			return colo_err_set(err, r, "memtouch: cannot start thread %" PRIu32
					    ": %s", i, strerror(r));
		}
		m->nth = i + 1;
		snprintf(name, sizeof(name), "memtouch/%" PRIu32, i);
		pthread_setname_np(th->tid, name);
	}
	return 0;
}

/* ---- verify ---- */

static void note_bad(struct colo_verify_report *r, uint64_t offset)
{
	if (r->pages_bad < COLO_VERIFY_LIST_MAX) {
		snprintf(r->bad[r->pages_bad].block, sizeof(r->bad[0].block), "%s",
			 COLO_MEMTOUCH_RAM);
		r->bad[r->pages_bad].offset = offset;
	}
	r->pages_bad++;
}

static void compare_pages(struct colo_verify_report *r, const uint8_t *have,
			  const uint8_t *want, uint64_t off, uint64_t len)
{
	static const uint8_t zero[PAGE];

	for (uint64_t p = 0; p < len; p += PAGE) {
		if (memcmp(have + p, want ? want + p : zero, PAGE) != 0)
			note_bad(r, off + p);
		r->pages_checked++;
	}
}

static void mt_verify(struct colo_guest *g, struct colo_verify_report *r)
{
	struct memtouch *m = to_mt(g);
	const struct colo_memtouch_state *st = &m->st;
	struct colo_err err;
	struct mt_shape s;
	uint64_t total = 0, used;
	uint8_t *scratch;

	memset(r, 0, sizeof(*r));
	r->supported = true;
	if (!m->block) {
		snprintf(r->summary, sizeof(r->summary), "memtouch: not attached");
		return;
	}
	colo_err_clear(&err);
	if (shape_check(st, m->block_size, &err)) {
		/* nothing in the block can be trusted */
		for (uint64_t off = 0; off < m->block->length; off += PAGE) {
			note_bad(r, off);
			r->pages_checked++;
		}
		snprintf(r->summary, sizeof(r->summary), "memtouch: bad device state: %.200s",
			 err.msg);
		return;
	}
	shape_of(st, &s);
	scratch = mmap(NULL, s.part_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (scratch == MAP_FAILED) {
		r->supported = false;
		snprintf(r->summary, sizeof(r->summary), "memtouch: no memory to verify "
			 "(%" PRIu64 " bytes)", s.part_size);
		return;
	}
	for (uint32_t t = 0; t < s.threads; t++) {
		uint64_t n = st->writes[t], k = 0;
		struct mt_keys keys;

		total += n;
		if (t)
			memset(scratch, 0, s.part_size);
		keys_for(s.seed, t, &keys);
		/* sequential slots are disjoint and equal: a lap overwrites the
		 * previous one whole, only the last lap is visible */
		if (s.pattern == COLO_MEMTOUCH_SEQUENTIAL && n > s.part_size / s.bytes)
			k = n - s.part_size / s.bytes;
		for (; k < n; k++)
			write_data(scratch + write_rel(&s, &keys, k), s.bytes,
				   colo_splitmix64_at(keys.data, k));
		compare_pages(r, m->block->host + (uint64_t)t * s.part_size, scratch,
			      (uint64_t)t * s.part_size, s.part_size);
	}
	munmap(scratch, s.part_size);
	used = (uint64_t)s.threads * s.part_size;
	compare_pages(r, m->block->host + used, NULL, used, m->block->length - used);
	snprintf(r->summary, sizeof(r->summary), "memtouch: %" PRIu32 " thread%s, %"
		 PRIu64 " writes, %s %" PRIu32 " B", s.threads, s.threads == 1 ? "" : "s",
		 total, colo_memtouch_pattern_name(s.pattern), s.bytes);
}

/* ---- the rest of the ops ---- */

static void mt_describe(struct colo_guest *g, char *buf, size_t len)
{
	struct memtouch *m = to_mt(g);
	uint64_t total = 0, now = colo_now_ns();

	for (uint32_t t = 0; t < m->st.threads && t < COLO_MEMTOUCH_THREADS_MAX; t++)
		total += __atomic_load_n(&m->st.writes[t], __ATOMIC_RELAXED);
	/* The rate over the time since the last look (at least 100 ms); start()
	 * counts as a look. */
	if (!m->rate_init || total < m->rate_total) {
		m->rate_init = true;
		m->rate_est = 0;
		m->rate_total = total;
		m->rate_at_ns = now;
	} else if (now - m->rate_at_ns >= 100000000ull) {
		m->rate_est = (uint64_t)((double)(total - m->rate_total) * 1e9 /
					 (double)(now - m->rate_at_ns) + 0.5);
		m->rate_total = total;
		m->rate_at_ns = now;
	}
	snprintf(buf, len, "memtouch: %" PRIu64 " writes/s, %" PRIu64 " writes", m->rate_est,
		 total);
}

static int mt_create(const struct colo_config *cfg, struct colo_guest **out,
		     struct colo_err *err)
{
	const struct colo_memtouch_settings *set = colo_memtouch_settings(cfg);
	struct memtouch *m;

	*out = NULL;
	if (!set)
		return colo_err_set(err, EINVAL, "memtouch: the configuration has no "
				    "memtouch settings (not loaded with memtouch "
				    "among its guests)");
	if (cfg->ram_mb < 1 || cfg->ram_mb > 65536)
		return colo_err_set(err, EINVAL, "ram-mb: %" PRIu32 " is not 1 to 65536",
				    cfg->ram_mb);
	if (set->threads < 1 || set->threads > COLO_MEMTOUCH_THREADS_MAX)
		return colo_err_set(err, EINVAL, "memtouch-threads: %" PRIu32
				    " is not 1 to %d", set->threads,
				    COLO_MEMTOUCH_THREADS_MAX);
	if (set->bytes < 1 || set->bytes > COLO_MEMTOUCH_BYTES_MAX)
		return colo_err_set(err, EINVAL, "memtouch-bytes: %" PRIu32
				    " is not 1 to %d", set->bytes,
				    COLO_MEMTOUCH_BYTES_MAX);
	if ((unsigned)set->pattern > COLO_MEMTOUCH_HOTSET)
		return colo_err_set(err, EINVAL, "memtouch-pattern: %u is unknown",
				    (unsigned)set->pattern);
	m = calloc(1, sizeof(*m));
	if (!m)
		return colo_err_set(err, ENOMEM, "memtouch: out of memory");
	m->base.ops = &colo_memtouch_ops;
	m->rate = set->rate;
	m->block_size = (uint64_t)cfg->ram_mb << 20;
	m->st.seed = set->seed;
	m->st.pattern = (uint32_t)set->pattern;
	m->st.bytes = set->bytes;
	m->st.threads = set->threads;
	m->st.block_size = m->block_size;
	m->st.part_size = part_size_for(m->block_size, m->st.threads);
	if (shape_check(&m->st, m->block_size, err)) {
		free(m);
		colo_err_prefix(err, "memtouch");
		return -EINVAL;
	}
	atomic_init(&m->pause_req, false);
	atomic_init(&m->stop_req, false);
	atomic_init(&m->epoch, 0);
	pthread_mutex_init(&m->mu, NULL);
	pthread_cond_init(&m->parked_cv, NULL);
	pthread_cond_init(&m->resume_cv, NULL);
	*out = &m->base;
	return 0;
}

static int mt_attach(struct colo_guest *g, struct colo_ram *ram, struct colo_savevm *sv,
		     struct colo_err *err)
{
	struct memtouch *m = to_mt(g);
	struct colo_ram_block *b;
	int r;

	if (m->block)
		return colo_err_set(err, EBUSY, "memtouch: already attached");
	if ((r = colo_ram_add_block(ram, COLO_MEMTOUCH_RAM, m->block_size, &b, err)) ||
	    (r = colo_savevm_add_ram(sv, COLO_MEMTOUCH_RAM, b->host, b->length, err)) ||
	    (r = colo_savevm_add_device(sv, COLO_MEMTOUCH_DEVICE, 0,
					&colo_memtouch_vmstate, &m->st, err))) {
		colo_err_prefix(err, "memtouch");
		return r;
	}
	m->block = b;
	m->manual = colo_ram_tracking(ram) == COLO_DIRTY_MANUAL;
	return 0;
}

static void mt_destroy(struct colo_guest *g)
{
	struct memtouch *m = to_mt(g);

	if (!g)
		return;
	mt_stop(g);
	pthread_cond_destroy(&m->resume_cv);
	pthread_cond_destroy(&m->parked_cv);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

/* ---- its keys ---- */

static const char *const pattern_values[] = { "sequential", "random", "hotset", NULL };

/* The table writes the enum through an int. */
_Static_assert(sizeof(enum colo_memtouch_pattern) == sizeof(int), "enum size");
_Static_assert(COLO_MEMTOUCH_HOTSET == 2, "pattern_values follows the enum");

#define F(field) offsetof(struct colo_memtouch_settings, field)

static const struct colo_opt mt_opts[] = {
	{ "memtouch-rate", COLO_SEC_GUEST, COLO_OPT_UINT, F(rate), 0, UINT32_MAX,
	  .def = "20000", .meta = "N",
	  .help = "memtouch: writes per second per thread, 0 = no limit" },
	{ "memtouch-pattern", COLO_SEC_GUEST, COLO_OPT_ENUM, F(pattern),
	  .values = pattern_values, .def = "random", .meta = "PATTERN",
	  .help = "memtouch: where writes land: sequential, random or hotset" },
	{ "memtouch-bytes", COLO_SEC_GUEST, COLO_OPT_UINT, F(bytes),
	  1, COLO_MEMTOUCH_BYTES_MAX, .def = "64", .meta = "N",
	  .help = "memtouch: bytes per write, 1 to 4096" },
	{ "memtouch-threads", COLO_SEC_GUEST, COLO_OPT_UINT, F(threads),
	  1, COLO_MEMTOUCH_THREADS_MAX, .def = "1", .meta = "N",
	  .help = "memtouch: writer threads, 1 to 64" },
	{ "memtouch-seed", COLO_SEC_GUEST, COLO_OPT_U64, F(seed), .def = "1",
	  .meta = "N", .help = "memtouch: seed of the write pattern" },
};

#undef F

struct colo_memtouch_settings *colo_memtouch_settings(const struct colo_config *cfg)
{
	return colo_config_guest(cfg, &colo_memtouch_ops);
}

const struct colo_guest_ops colo_memtouch_ops = {
	.kind = "memtouch",
	.version = 1,
	.opts = mt_opts,
	.nopts = sizeof(mt_opts) / sizeof(mt_opts[0]),
	.settings_size = sizeof(struct colo_memtouch_settings),
	.create = mt_create,
	.attach = mt_attach,
	.start = mt_start,
	.pause = mt_pause,
	.resume = mt_resume,
	.stop = mt_stop,
	.verify = mt_verify,
	.describe = mt_describe,
	.destroy = mt_destroy,
};
