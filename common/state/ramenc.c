/*
 * ramenc.c: staging, parallel encoding and applying of RAM pages (see
 * ramenc.h).
 *
 * The worker pool is a generation counter under a mutex: a job bumps the
 * generation and wakes the workers; everyone (a synchronous caller
 * included) takes chunk numbers from an atomic counter until none are
 * left; whoever finishes the last chunk ends the job (below, "encoder").
 * Each chunk writes its records into its own buffer, reused from job to
 * job, and the caller appends the buffers in chunk order.
 */
#include "config.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ram.h"
#include "ramenc.h"

#define PAGE COLO_PAGE_SIZE

/* ---- stage ---- */

void colo_ram_stage_init(struct colo_ram_stage *st)
{
	memset(st, 0, sizeof(*st));
}

void colo_ram_stage_free(struct colo_ram_stage *st)
{
	if (st->pages)
		munmap(st->pages, st->cap * PAGE);
	free(st->refs);
	colo_ram_stage_init(st);
}

void colo_ram_stage_reset(struct colo_ram_stage *st)
{
	st->n = 0;
}

/*
 * Map pages [populated, n) of the stage, in steps of 1 MiB, before they are
 * written: the kernel then maps them in one call instead of one page fault
 * each, 14-19 us apiece on some paravirtual hosts (a 4 MiB first copy
 * took 25 ms there).  A kernel without MADV_POPULATE_WRITE (before 5.14)
 * takes the faults as before.
 */
#define STAGE_POPULATE_STEP 256

static void stage_populate(struct colo_ram_stage *st, size_t n)
{
	size_t upto = (n + STAGE_POPULATE_STEP - 1) / STAGE_POPULATE_STEP * STAGE_POPULATE_STEP;

	if (n <= st->populated)
		return;
	if (upto > st->cap)
		upto = st->cap;
#ifdef MADV_POPULATE_WRITE
	(void)madvise(st->pages + st->populated * PAGE, (upto - st->populated) * PAGE,
		      MADV_POPULATE_WRITE);
#endif
	st->populated = upto;
}

int colo_ram_stage_reserve(struct colo_ram_stage *st, size_t n, struct colo_err *err)
{
	size_t cap = st->cap ? st->cap : 256, old_cap = st->cap;
	struct colo_stage_ref *refs;
	uint8_t *pages, *old = st->pages;

	if (n <= st->cap) {
		stage_populate(st, n);
		return 0;
	}
	while (cap < n)
		cap *= 2;
	/* mmap: page-aligned, and untouched pages cost nothing. */
	pages = mmap(NULL, cap * PAGE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	refs = realloc(st->refs, cap * sizeof(*refs));
	if (pages == MAP_FAILED || !refs) {
		if (pages != MAP_FAILED)
			munmap(pages, cap * PAGE);
		if (refs)
			st->refs = refs;
		return colo_err_set(err, ENOMEM, "cannot stage %zu pages", cap);
	}
	st->pages = pages;
	st->refs = refs;
	st->cap = cap;
	st->populated = 0;
	stage_populate(st, n);       /* mapped before the pages so far are copied */
	if (old) {
		memcpy(st->pages, old, st->n * PAGE);
		munmap(old, old_cap * PAGE);
	}
	return 0;
}

int colo_ram_stage_add(struct colo_ram_stage *st, uint32_t block, uint32_t page,
		       const void *data, struct colo_err *err)
{
	int r = colo_ram_stage_reserve(st, st->n + 1, err);

	if (r)
		return r;
	memcpy(st->pages + st->n * PAGE, data, PAGE);
	st->refs[st->n].block = block;
	st->refs[st->n].page = page;
	st->n++;
	return 0;
}

int colo_ram_stage_collect(struct colo_ram_stage *st, struct colo_ram_block *const *blocks,
			   size_t nblocks, struct colo_err *err)
{
	size_t want = st->n;
	int r;

	for (size_t b = 0; b < nblocks; b++)
		for (size_t wi = 0; wi < (blocks[b]->npages + 63) / 64; wi++)
			want += (size_t)__builtin_popcountll(blocks[b]->dirty[wi]);
	r = colo_ram_stage_reserve(st, want, err);
	if (r)
		return r;
	for (size_t b = 0; b < nblocks; b++) {
		struct colo_ram_block *blk = blocks[b];
		size_t words = (blk->npages + 63) / 64;

		for (size_t wi = 0; wi < words; wi++) {
			uint64_t w = blk->dirty[wi];

			while (w) {
				uint64_t page = wi * 64 + (uint64_t)__builtin_ctzll(w);

				w &= w - 1;
				memcpy(st->pages + st->n * PAGE, blk->host + page * PAGE, PAGE);
				st->refs[st->n].block = (uint32_t)b;
				st->refs[st->n].page = (uint32_t)page;
				st->n++;
			}
			blk->dirty[wi] = 0;
		}
	}
	return 0;
}

/* ---- shadow ---- */

int colo_ram_shadow_init(struct colo_ram_shadow *sh, const char *name,
			 uint64_t length, struct colo_err *err)
{
	size_t len = strlen(name);

	memset(sh, 0, sizeof(*sh));
	if (len > COLO_IDSTR_MAX || length % PAGE)
		return colo_err_set(err, EINVAL, "shadow of block '%.40s': bad name or "
				    "length", name);
	sh->mem = mmap(NULL, length, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (sh->mem == MAP_FAILED) {
		sh->mem = NULL;
		return colo_err_set(err, ENOMEM, "cannot map a %" PRIu64 "-byte shadow "
				    "of block '%s'", length, name);
	}
	memcpy(sh->name, name, len + 1);
	sh->length = length;
	return 0;
}

void colo_ram_shadow_free(struct colo_ram_shadow *sh)
{
	if (sh->mem)
		munmap(sh->mem, sh->length);
	memset(sh, 0, sizeof(*sh));
}

/* ---- encoder ---- */

/*
 * A job is numbered (gen).  Its chunk numbers come from one 64-bit counter
 * whose upper half is the job's number, so a worker that took a snapshot
 * of an older job and runs late can never take a chunk of the next: its
 * compare-and-swap fails and it goes back to sleep.  Whoever finishes the
 * job's last chunk (ndone) ends the job: the shadows it touched become
 * valid, then a synchronous caller is woken (finished) or the asynchronous
 * one's done callback runs.  So a new job may start as soon as the last
 * one ended, without waiting for every worker to notice.
 */
struct job {
	const struct colo_ram_stage *st;
	struct colo_ram_shadow *shadows;
	uint32_t allowed;
	size_t nchunks;
	uint32_t gen;
	bool async;
};

struct chunk {
	struct colo_buf buf;
	struct colo_ram_enc_stats stats;
	atomic_bool ready;            /* buf holds the job's records (release) */
};

struct colo_ram_encoder {
	unsigned threads;
	pthread_t *workers;
	pthread_mutex_t mu;
	pthread_cond_t go;            /* a job (gen moved) or stop */
	pthread_cond_t finished;      /* finished_gen moved */
	uint32_t gen;                 /* the current job's number */
	uint32_t finished_gen;        /* the last job that ended */
	bool stop;
	struct job job;               /* the current job (under mu) */
	atomic_uint_fast64_t next;    /* gen << 32 | the next chunk to take */
	atomic_size_t ndone;          /* chunks of the current job done */
	size_t async_pages, async_chunks;  /* the last colo_ram_encode_start() */
	struct chunk *chunks;
	size_t nchunk_slots;
	size_t prepared;              /* chunks colo_ram_encode_prepare() reset */
	bool fresh;                   /* ... and no job since */
	void (*on_chunk)(void *ud);
	void *on_chunk_ud;
	void (*on_done)(void *ud);
	void *on_done_ud;
};

static void encode_chunk(struct colo_ram_encoder *enc, const struct job *j, size_t c)
{
	const struct colo_ram_stage *st = j->st;
	struct chunk *ch = &enc->chunks[c];
	size_t first = c * COLO_RAM_ENC_CHUNK;
	size_t last = first + COLO_RAM_ENC_CHUNK < st->n ? first + COLO_RAM_ENC_CHUNK : st->n;
	uint8_t out[COLO_PAGE_ENC_MAX];
	struct colo_ram_writer w;
	struct colo_err err;

	colo_buf_reset(&ch->buf);
	memset(&ch->stats, 0, sizeof(ch->stats));
	colo_ram_writer_init(&w, &ch->buf);   /* the chunk names its first block */
	colo_err_clear(&err);
	for (size_t i = first; i < last; i++) {
		const struct colo_stage_ref *ref = &st->refs[i];
		struct colo_ram_shadow *sh = &j->shadows[ref->block];
		const uint8_t *page = st->pages + i * PAGE;
		uint8_t *base = sh->mem + (uint64_t)ref->page * PAGE;
		uint64_t off = (uint64_t)ref->page * PAGE;
		struct colo_page_enc e;

		if (colo_page_encode(page, sh->valid ? base : NULL, j->allowed,
				     COLO_ENC_UPDATE_BASE, out, &e)) {
			ch->stats.unchanged++;
			continue;
		}
		if (!sh->valid)
			memcpy(base, page, PAGE);
		size_t at = ch->buf.len;

		if (e.kind == COLO_PAGE_ZERO)
			colo_ram_put_zero(&w, sh->name, off, e.fill);
		else if (e.kind == COLO_PAGE_RAW)
			colo_ram_put_raw(&w, sh->name, off, page);
		else
			colo_ram_put_encoded(&w, sh->name, off, e.kind, out, e.len, &err);
		ch->stats.pages[e.kind]++;
		ch->stats.kind_bytes[e.kind] += ch->buf.len - at;
	}
	atomic_store_explicit(&ch->ready, true, memory_order_release);
	if (enc->on_chunk)
		enc->on_chunk(enc->on_chunk_ud);
}

/* The job's last chunk is done (this thread did it). */
static void job_end(struct colo_ram_encoder *enc, const struct job *j)
{
	/* A full sync leaves every shadow it touched valid. */
	for (size_t i = 0; i < j->st->n; i++)
		j->shadows[j->st->refs[i].block].valid = true;
	if (j->async) {
		/* The caller may start the next job from the callback on. */
		if (enc->on_done)
			enc->on_done(enc->on_done_ud);
		return;
	}
	pthread_mutex_lock(&enc->mu);
	enc->finished_gen = j->gen;
	pthread_cond_broadcast(&enc->finished);
	pthread_mutex_unlock(&enc->mu);
}

/* Take chunks of job j until none is left (or j is not current). */
static void work(struct colo_ram_encoder *enc, const struct job *j)
{
	for (;;) {
		uint_fast64_t v = atomic_load(&enc->next);
		size_t c;

		do {
			if ((uint32_t)(v >> 32) != j->gen || (v & 0xffffffffu) >= j->nchunks)
				return;
		} while (!atomic_compare_exchange_weak(&enc->next, &v, v + 1));
		c = (size_t)(v & 0xffffffffu);
		encode_chunk(enc, j, c);
		if (atomic_fetch_add(&enc->ndone, 1) + 1 == j->nchunks)
			job_end(enc, j);
	}
}

static void *worker(void *arg)
{
	struct colo_ram_encoder *enc = arg;
	uint32_t seen = 0;

	pthread_setname_np(pthread_self(), "colo-encoder");
	pthread_mutex_lock(&enc->mu);
	for (;;) {
		struct job j;

		while (!enc->stop && enc->gen == seen)
			pthread_cond_wait(&enc->go, &enc->mu);
		/* Stopping: a job still pending is done first. */
		if (enc->gen == seen)
			break;
		seen = enc->gen;
		j = enc->job;
		pthread_mutex_unlock(&enc->mu);
		work(enc, &j);
		pthread_mutex_lock(&enc->mu);
	}
	pthread_mutex_unlock(&enc->mu);
	return NULL;
}

unsigned colo_ram_encoder_default_threads(void)
{
	cpu_set_t set;
	int n = 0;

	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		n = CPU_COUNT(&set);
	if (n < 1)
		n = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	return n > COLO_RAM_ENC_THREADS_MAX ? COLO_RAM_ENC_THREADS_MAX : (unsigned)n;
}

int colo_ram_encoder_new(unsigned threads, struct colo_ram_encoder **out,
			 struct colo_err *err)
{
	struct colo_ram_encoder *enc;

	*out = NULL;
	if (threads == 0 || threads > COLO_RAM_ENC_THREADS_MAX)
		return colo_err_set(err, EINVAL, "encode-threads must be 1 to %d, not %u",
				    COLO_RAM_ENC_THREADS_MAX, threads);
	enc = calloc(1, sizeof(*enc));
	if (!enc)
		return colo_err_set(err, ENOMEM, "out of memory");
	pthread_mutex_init(&enc->mu, NULL);
	pthread_cond_init(&enc->go, NULL);
	pthread_cond_init(&enc->finished, NULL);
	enc->workers = calloc(threads, sizeof(*enc->workers));
	if (!enc->workers) {
		colo_ram_encoder_free(enc);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	for (unsigned t = 0; t < threads; t++) {
		int r = pthread_create(&enc->workers[t], NULL, worker, enc);

		if (r) {
			colo_ram_encoder_free(enc);
			return colo_err_set(err, r, "cannot start encode thread %u: %s", t,
					    strerror(r));
		}
		enc->threads = t + 1;
	}
	*out = enc;
	return 0;
}

void colo_ram_encoder_free(struct colo_ram_encoder *enc)
{
	if (!enc)
		return;
	/* The workers finish a job under way first: its caller's data must
	 * outlive this call. */
	pthread_mutex_lock(&enc->mu);
	enc->stop = true;
	pthread_cond_broadcast(&enc->go);
	pthread_mutex_unlock(&enc->mu);
	for (unsigned t = 0; enc->workers && t < enc->threads; t++)
		pthread_join(enc->workers[t], NULL);
	for (size_t c = 0; c < enc->nchunk_slots; c++)
		colo_buf_free(&enc->chunks[c].buf);
	free(enc->chunks);
	free(enc->workers);
	pthread_mutex_destroy(&enc->mu);
	pthread_cond_destroy(&enc->go);
	pthread_cond_destroy(&enc->finished);
	free(enc);
}

unsigned colo_ram_encoder_threads(const struct colo_ram_encoder *enc)
{
	return enc->threads;
}

/* Room for n chunks, none of them ready (the caller's thread owns them). */
static int chunk_slots(struct colo_ram_encoder *enc, size_t n)
{
	if (n > enc->nchunk_slots) {
		struct chunk *c = realloc(enc->chunks, n * sizeof(*c));

		if (!c)
			return -1;
		for (size_t i = enc->nchunk_slots; i < n; i++)
			memset(&c[i], 0, sizeof(c[i]));
		enc->chunks = c;
		enc->nchunk_slots = n;
	}
	for (size_t i = 0; i < n; i++)
		atomic_store_explicit(&enc->chunks[i].ready, false, memory_order_relaxed);
	return 0;
}

size_t colo_ram_encode_prepare(struct colo_ram_encoder *enc, size_t npages)
{
	size_t n = (npages + COLO_RAM_ENC_CHUNK - 1) / COLO_RAM_ENC_CHUNK;

	enc->prepared = chunk_slots(enc, n) == 0 ? n : 0;
	enc->fresh = enc->prepared > 0;
	return enc->prepared;
}

void colo_ram_encoder_on_chunk(struct colo_ram_encoder *enc, void (*fn)(void *ud), void *ud)
{
	enc->on_chunk = fn;
	enc->on_chunk_ud = ud;
}

void colo_ram_encoder_on_done(struct colo_ram_encoder *enc, void (*fn)(void *ud), void *ud)
{
	enc->on_done = fn;
	enc->on_done_ud = ud;
}

bool colo_ram_encoder_chunk(const struct colo_ram_encoder *enc, size_t k, const uint8_t **data,
			    size_t *len)
{
	const struct chunk *ch;

	if (k >= enc->prepared)
		return false;
	ch = &enc->chunks[k];
	if (!atomic_load_explicit(&ch->ready, memory_order_acquire))
		return false;
	*data = ch->buf.data;
	*len = ch->buf.len;
	return true;
}

/* Check the stage against the shadows, and room for its chunks. */
static int job_setup(struct colo_ram_encoder *enc, const struct colo_ram_stage *st,
		     const struct colo_ram_shadow *shadows, size_t nshadows,
		     struct colo_err *err)
{
	size_t nchunks = (st->n + COLO_RAM_ENC_CHUNK - 1) / COLO_RAM_ENC_CHUNK;

	for (size_t i = 0; i < st->n; i++) {
		const struct colo_stage_ref *ref = &st->refs[i];

		if (ref->block >= nshadows ||
		    (uint64_t)ref->page * PAGE >= shadows[ref->block].length)
			return colo_err_set(err, EINVAL, "staged page %zu (block %" PRIu32
					    ", page %" PRIu32 ") has no shadow", i,
					    ref->block, ref->page);
	}
	/* Prepared for this job: the sender may be reading ready chunks, so
	 * neither move nor reset them. */
	if (!enc->fresh || enc->prepared != nchunks) {
		enc->prepared = 0;
		if (chunk_slots(enc, nchunks) != 0)
			return colo_err_set(err, ENOMEM, "out of memory");
	}
	enc->fresh = false;
	return 0;
}

/* Publish the job: the workers may take its chunks from here. */
static struct job job_publish(struct colo_ram_encoder *enc, const struct colo_ram_stage *st,
			      struct colo_ram_shadow *shadows, uint32_t allowed, bool async)
{
	struct job j;

	pthread_mutex_lock(&enc->mu);
	j.st = st;
	j.shadows = shadows;
	j.allowed = allowed;
	j.nchunks = (st->n + COLO_RAM_ENC_CHUNK - 1) / COLO_RAM_ENC_CHUNK;
	j.gen = ++enc->gen;
	j.async = async;
	enc->job = j;
	atomic_store(&enc->ndone, 0);
	atomic_store(&enc->next, (uint_fast64_t)j.gen << 32);
	pthread_cond_broadcast(&enc->go);
	pthread_mutex_unlock(&enc->mu);
	return j;
}

/* Append the chunks' records to out and their figures to stats. */
static int job_collect(struct colo_ram_encoder *enc, size_t npages, size_t nchunks,
		       struct colo_buf *out, struct colo_ram_enc_stats *stats,
		       struct colo_err *err)
{
	bool failed = false;

	for (size_t c = 0; c < nchunks; c++) {
		struct chunk *ch = &enc->chunks[c];

		if (!colo_buf_ok(&ch->buf))
			failed = true;
		colo_buf_put(out, ch->buf.data, ch->buf.len);
		if (stats) {
			for (int k = 0; k < COLO_PAGE_KINDS; k++) {
				stats->pages[k] += ch->stats.pages[k];
				stats->kind_bytes[k] += ch->stats.kind_bytes[k];
			}
			stats->unchanged += ch->stats.unchanged;
			stats->bytes += ch->buf.len;
		}
	}
	if (failed || !colo_buf_ok(out))
		return colo_err_set(err, ENOMEM, "out of memory encoding %zu pages", npages);
	return 0;
}

int colo_ram_encode(struct colo_ram_encoder *enc, const struct colo_ram_stage *st,
		    struct colo_ram_shadow *shadows, size_t nshadows, uint32_t allowed,
		    struct colo_buf *out, struct colo_ram_enc_stats *stats,
		    struct colo_err *err)
{
	struct job j;
	int r = job_setup(enc, st, shadows, nshadows, err);

	if (r)
		return r;
	if (st->n == 0)
		return 0;
	j = job_publish(enc, st, shadows, allowed, false);
	/* This thread works too; then it waits for chunks others still do. */
	work(enc, &j);
	pthread_mutex_lock(&enc->mu);
	while (enc->finished_gen != j.gen)
		pthread_cond_wait(&enc->finished, &enc->mu);
	pthread_mutex_unlock(&enc->mu);
	return job_collect(enc, st->n, j.nchunks, out, stats, err);
}

int colo_ram_encode_start(struct colo_ram_encoder *enc, const struct colo_ram_stage *st,
			  struct colo_ram_shadow *shadows, size_t nshadows, uint32_t allowed,
			  struct colo_err *err)
{
	int r = job_setup(enc, st, shadows, nshadows, err);

	if (r)
		return r;
	enc->async_pages = st->n;
	enc->async_chunks = (st->n + COLO_RAM_ENC_CHUNK - 1) / COLO_RAM_ENC_CHUNK;
	if (st->n == 0) {
		if (enc->on_done)
			enc->on_done(enc->on_done_ud);
		return 0;
	}
	job_publish(enc, st, shadows, allowed, true);
	return 0;
}

int colo_ram_encode_finish(struct colo_ram_encoder *enc, struct colo_buf *out,
			   struct colo_ram_enc_stats *stats, struct colo_err *err)
{
	return job_collect(enc, enc->async_pages, enc->async_chunks, out, stats, err);
}

/* ---- applier ---- */

static int applier_mem_size(void *ud, const struct colo_ram_block_info *blocks,
			    size_t n, uint64_t total, struct colo_err *err)
{
	struct colo_ram_applier *a = ud;
	struct colo_ram_target **map = calloc(n ? n : 1, sizeof(*map));

	(void)total;
	if (!map)
		return colo_err_set(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		for (size_t t = 0; t < a->ntargets; t++)
			if (strcmp(a->targets[t].name, blocks[i].name) == 0)
				map[i] = &a->targets[t];
		if (!map[i]) {
			free(map);
			return colo_err_set(err, EINVAL, "RAM block '%s' of the stream does "
					    "not exist here", blocks[i].name);
		}
		if (map[i]->length != blocks[i].length) {
			uint64_t here = map[i]->length;

			free(map);
			return colo_err_set(err, EINVAL, "RAM block '%s' has %" PRIu64
					    " bytes in the stream and %" PRIu64 " here",
					    blocks[i].name, blocks[i].length, here);
		}
	}
	free(a->map);
	a->map = map;
	a->nmap = n;
	return 0;
}

static int applier_page(void *ud, const struct colo_ram_page *p, struct colo_err *err)
{
	struct colo_ram_applier *a = ud;
	int r;

	/* Index and offset were checked against MEM_SIZE, of the same size. */
	r = colo_ram_page_apply(p, a->map[p->block_index]->mem, a->codecs, err);
	if (r == 0)
		a->pages[p->kind]++;
	return r;
}

void colo_ram_applier_init(struct colo_ram_applier *a, struct colo_ram_target *targets,
			   size_t ntargets, uint32_t allowed)
{
	struct colo_ram_sink sink = { applier_mem_size, applier_page, a };

	memset(a, 0, sizeof(*a));
	a->targets = targets;
	a->ntargets = ntargets;
	a->codecs = colo_page_codecs;
	colo_ram_reader_init(&a->rr, &sink, allowed);
}

void colo_ram_applier_free(struct colo_ram_applier *a)
{
	colo_ram_reader_free(&a->rr);
	free(a->map);
	a->map = NULL;
}

int colo_ram_applier_handler(void *applier, const struct colo_section_info *s,
			     struct colo_in *in, struct colo_err *err)
{
	struct colo_ram_applier *a = applier;

	return colo_ram_reader_payload(&a->rr, s, in, err);
}
