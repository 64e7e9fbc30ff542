/*
 * recorder.c: the writer of recordings (colo_recorder_*, see record.h).
 *
 * The loop thread copies each record into a job and queues it, with the
 * pages its node decoded already when it has them (taken, not copied: the
 * recorder hands the memory of jobs it is done with back at the next
 * hand-overs, `spare`); the recorder thread takes the jobs queued in
 * batches, and for each in order moves its image forward (a full stream
 * replaces it, a checkpoint is applied to it, copying the pages given where
 * that beats decoding) and adds the record, then its index entry, to the
 * batch, which is written at its end (then retention, record_dir.c).
 * Every keyframe-every checkpoints the image is written out as a keyframe
 * starting a new segment, in place of that checkpoint's own bytes; only
 * the pages changed since the last keyframe are encoded again (struct
 * colo_image_memo).  Device payloads are sized by walking them with the
 * descriptions the node registered (copied at start), so a device's
 * payload may change size; each index entry says how big each one was.
 * The queue and the published stats are under the recorder's mutex; the
 * rest belongs to its thread.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "fs.h"
#include "record_int.h"
#include "ram.h"
#include "ramenc.h"
#include "savevm.h"

enum { JOB_FULL, JOB_CKPT };

struct job {
	struct job *next;
	int kind;
	uint64_t seq, generation, wall_ns;
	size_t len, ram_len;
	/* a checkpoint's pages as the node decoded them (none: n == 0) */
	struct colo_ram_stage pages;
	char **names;                    /* their blocks' names */
	size_t nnames;
	uint8_t data[];
};

static size_t job_bytes(const struct job *j)
{
	return j->len + j->pages.n * COLO_PAGE_SIZE;
}

static void job_free(struct job *j)
{
	for (size_t i = 0; i < j->nnames; i++)
		free(j->names[i]);
	free(j->names);
	colo_ram_stage_free(&j->pages);
	free(j);
}

void colo__rec_log(struct colo_recorder *r, bool error, const char *fmt, ...)
{
	char line[COLO_ERR_MAX + 256];
	va_list ap;

	if (!r->cfg.log)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	r->cfg.log(r->cfg.log_ud, error, line);
}

/* The first reason to stop wins: logged once, kept for status.  Any thread. */
static void mark_stopped(struct colo_recorder *r, const char *msg)
{
	bool first;

	pthread_mutex_lock(&r->mu);
	first = r->st.running;
	if (first) {
		r->st.running = false;
		snprintf(r->st.error, sizeof(r->st.error), "%s", msg);
	}
	pthread_mutex_unlock(&r->mu);
	if (first)
		colo__rec_log(r, true, "recording to %s stopped: %s (replication goes on)",
			      r->dir, msg);
}

/* The recorder thread cannot go on writing. */
void colo__rec_fail(struct colo_recorder *r, const char *fmt, ...)
{
	char msg[COLO_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (r->failed)
		return;
	r->failed = true;
	mark_stopped(r, msg);
	if (r->seg_fd >= 0)
		close(r->seg_fd);
	r->seg_fd = -1;
}

/* A checkpoint recorded in this batch (published by colo__rec_flush()). */
static void counted(struct colo_recorder *r, uint64_t seq, bool key)
{
	r->batch_ck++;
	r->batch_key += key;
	r->batch_seq = seq;
}

/* The image's sizer: the registered description of the device, if any. */
static int vmsd_size(void *ud, const char *idstr, uint32_t instance_id, uint32_t version,
		     const uint8_t *p, size_t avail, uint64_t *bytes, struct colo_err *err)
{
	const struct colo_recorder *r = ud;

	for (size_t i = 0; i < r->ndevs; i++) {
		if (r->devs[i].instance_id != instance_id || strcmp(r->devs[i].idstr, idstr))
			continue;
		if (version > INT32_MAX)
			return colo_err_set(err, EINVAL, "version %" PRIu32 " out of range",
					    version);
		return colo_image_measure(r->devs[i].vmsd, (int)version, p, avail, bytes, err);
	}
	return 1;
}

/* The node's devices, for the sizer (before the thread runs). */
static int copy_devices(struct colo_recorder *r, const struct colo_savevm *sv,
			struct colo_err *err)
{
	r->sizer.size = vmsd_size;
	r->sizer.ud = r;
	if (!sv || !sv->ndevs)
		return 0;
	r->devs = calloc(sv->ndevs, sizeof(*r->devs));
	if (!r->devs)
		return colo_err_set(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < sv->ndevs; i++) {
		snprintf(r->devs[i].idstr, sizeof(r->devs[i].idstr), "%s", sv->devs[i].idstr);
		r->devs[i].instance_id = sv->devs[i].instance_id;
		r->devs[i].vmsd = sv->devs[i].vmsd;
	}
	r->ndevs = sv->ndevs;
	return 0;
}

static void do_full(struct colo_recorder *r, struct job *j)
{
	struct colo_err err;
	uint64_t off;

	colo_err_clear(&err);
	if (colo_image_load_full_sized(&r->img, j->data, j->len, &r->sizer, &err) != 0) {
		r->have_img = false;
		colo__rec_fail(r, "full stream of checkpoint %" PRIu64 " does not decode: %s",
			       j->seq, err.msg);
		return;
	}
	r->have_img = true;
	colo_image_memo_note(&r->memo, &r->img);
	r->since_key = 0;
	if (colo__rec_put_sync(r) || colo__rec_new_segment(r) ||
	    colo__rec_put_record(r, j->data, j->len, NULL, 0, &off) ||
	    colo__rec_put_entry(r, j->seq, j->generation, j->wall_ns, off, j->len, 0,
				XXH3_64bits(j->data, j->len), true))
		return;
	counted(r, j->seq, true);
}

static void do_ckpt(struct colo_recorder *r, struct job *j)
{
	struct colo_image_given g = {
		j->pages.pages, j->pages.refs, j->pages.n, (const char *const *)j->names,
		j->nnames,
	};
	struct colo_err err;
	uint64_t off, sum;

	colo_err_clear(&err);
	if (colo_image_apply_given(&r->img, j->data, j->ram_len, j->data + j->ram_len,
				   j->len - j->ram_len, &r->sizer, &g, &err) != 0) {
		colo__rec_fail(r, "checkpoint %" PRIu64 " does not decode: %s", j->seq, err.msg);
		return;
	}
	colo_image_memo_note(&r->memo, &r->img);
	if (++r->since_key >= r->cfg.keyframe_every) {
		const struct colo_buf *k;

		/* This checkpoint is written as the state it leads to: only the
		 * pages changed since the last keyframe are encoded again. */
		if (colo_image_memo_save(&r->img, &r->memo, &err) != 0) {
			colo__rec_fail(r, "keyframe at checkpoint %" PRIu64 ": %s", j->seq, err.msg);
			return;
		}
		k = &r->memo.out[r->memo.cur];
		r->since_key = 0;
		if (colo__rec_new_segment(r) ||
		    colo__rec_put_record(r, k->data, k->len, NULL, 0, &off) ||
		    colo__rec_put_entry(r, j->seq, j->generation, j->wall_ns, off, k->len, 0,
					XXH3_64bits(k->data, k->len), true))
			return;
		counted(r, j->seq, true);
		return;
	}
	sum = XXH3_64bits(j->data, j->len);
	if (colo__rec_put_record(r, j->data, j->len, NULL, 0, &off) ||
	    colo__rec_put_entry(r, j->seq, j->generation, j->wall_ns, off, j->len, j->ram_len,
				sum, false))
		return;
	counted(r, j->seq, false);
}

/* One job on the recorder thread; its pages' memory is kept for the node. */
static void run_job(struct colo_recorder *r, struct job *j)
{
	if (!r->failed) {
		if (j->kind == JOB_FULL)
			do_full(r, j);
		else if (r->have_img)
			do_ckpt(r, j);
		else {
			pthread_mutex_lock(&r->mu);
			r->st.dropped++;
			pthread_mutex_unlock(&r->mu);
		}
		if (!r->failed)
			colo__rec_retention(r);
	}
	pthread_mutex_lock(&r->mu);
	r->st.queued_bytes -= job_bytes(j);
	if (j->pages.cap && (r->nspare == 0 || (r->nspare < COLO_REC_SPARES &&
						j->pages.cap <= COLO_REC_SPARE_PAGES))) {
		r->spare[r->nspare++] = j->pages;
		colo_ram_stage_init(&j->pages);
	}
	pthread_mutex_unlock(&r->mu);
	job_free(j);
}

/*
 * Jobs are taken in batches: after a wake-up the thread lets the node queue
 * for COLO_REC_BATCH_NS (unless it is stopping), then runs every job queued
 * and writes them together.  At hundreds of checkpoints a second this
 * wakes it, and the node's signal reaches a waiting thread, a few hundred
 * times less, and writes each file once a batch instead of once a
 * checkpoint.
 */
static void *rec_main(void *arg)
{
	struct colo_recorder *r = arg;

	pthread_setname_np(pthread_self(), "colo-recorder");
	for (;;) {
		struct job *batch;
		bool quit;

		pthread_mutex_lock(&r->mu);
		while (!r->head && !r->quit)
			pthread_cond_wait(&r->cv, &r->mu);
		quit = r->quit;
		pthread_mutex_unlock(&r->mu);
		if (!quit) {
			struct timespec ts = { 0, COLO_REC_BATCH_NS };

			nanosleep(&ts, NULL);
		}
		pthread_mutex_lock(&r->mu);
		batch = r->head;
		r->head = r->tail = NULL;
		pthread_mutex_unlock(&r->mu);
		if (!batch)
			break;
		while (batch) {
			struct job *j = batch;

			batch = j->next;
			run_job(r, j);
		}
		colo__rec_flush(r);
	}
	if (r->seg_fd >= 0) {
		fdatasync(r->seg_fd);
		close(r->seg_fd);
		r->seg_fd = -1;
	}
	if (r->idx_fd >= 0)
		fdatasync(r->idx_fd);
	return NULL;
}

static size_t iov_len(const struct iovec *iov, int n)
{
	size_t t = 0;

	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

/* The pages a node decoded, with the names of their blocks. */
struct decoded {
	struct colo_ram_stage *pages;
	struct colo_ram_block *const *blocks;
	size_t nblocks;
};

/* Take d's pages and their blocks' names into j; false when out of memory
 * (j unchanged).  The caller's stage becomes the spare one, or empty. */
static bool take_pages(struct colo_recorder *r, struct job *j, const struct decoded *d)
{
	j->names = calloc(d->nblocks ? d->nblocks : 1, sizeof(*j->names));
	if (!j->names)
		return false;
	for (size_t i = 0; i < d->nblocks; i++) {
		j->names[i] = strdup(d->blocks[i]->name);
		if (!j->names[i]) {
			j->nnames = i;
			for (size_t k = 0; k < i; k++)
				free(j->names[k]);
			free(j->names);
			j->names = NULL;
			j->nnames = 0;
			return false;
		}
	}
	j->nnames = d->nblocks;
	j->pages = *d->pages;
	colo_ram_stage_init(d->pages);
	pthread_mutex_lock(&r->mu);
	if (r->nspare)
		*d->pages = r->spare[--r->nspare];
	pthread_mutex_unlock(&r->mu);
	return true;
}

/* Copy the pieces (RAM ones first) into a job and queue it, with the
 * decoded pages if any (taken, not copied). */
static void enqueue(struct colo_recorder *r, int kind, uint64_t seq, uint64_t gen,
		    uint64_t wall, const struct iovec *a, int na, const struct iovec *b, int nb,
		    const struct decoded *d)
{
	size_t alen = iov_len(a, na), blen = iov_len(b, nb), at = 0;
	size_t plen = d && d->pages ? d->pages->n * COLO_PAGE_SIZE : 0;
	struct job *j;
	uint64_t waiting;
	bool running;

	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	running = r->st.running;
	waiting = r->st.queued_bytes + alen + blen + plen;
	pthread_mutex_unlock(&r->mu);
	if (!running)
		return;
	if (waiting > r->cfg.queue_max) {
		char msg[COLO_ERR_MAX];

		snprintf(msg, sizeof(msg), "the recorder fell behind: %" PRIu64 " MiB waiting, "
			 "over the limit of %" PRIu64 " MiB (the disk is too slow?)",
			 waiting >> 20, r->cfg.queue_max >> 20);
		mark_stopped(r, msg);
		return;
	}
	j = malloc(sizeof(*j) + alen + blen);
	if (!j) {
		mark_stopped(r, "out of memory queueing a checkpoint");
		return;
	}
	memset(j, 0, sizeof(*j));
	j->kind = kind;
	j->seq = seq;
	j->generation = gen;
	j->wall_ns = wall;
	j->len = alen + blen;
	j->ram_len = alen;
	for (int i = 0; i < na; i++) {
		if (a[i].iov_len)
			memcpy(j->data + at, a[i].iov_base, a[i].iov_len);
		at += a[i].iov_len;
	}
	for (int i = 0; i < nb; i++) {
		if (b[i].iov_len)
			memcpy(j->data + at, b[i].iov_base, b[i].iov_len);
		at += b[i].iov_len;
	}
	/* Without them the recorder decodes the pages itself. */
	if (plen)
		take_pages(r, j, d);
	pthread_mutex_lock(&r->mu);
	if (r->tail)
		r->tail->next = j;
	else
		r->head = j;
	r->tail = j;
	r->st.queued_bytes += job_bytes(j);
	if (kind == JOB_FULL)
		r->key_queued = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

void colo_recorder_full(struct colo_recorder *r, uint64_t seq, uint64_t generation,
			uint64_t wall_ns, const struct iovec *iov, int n)
{
	enqueue(r, JOB_FULL, seq, generation, wall_ns, iov, n, NULL, 0, NULL);
}

void colo_recorder_checkpoint(struct colo_recorder *r, uint64_t seq, uint64_t generation,
			      uint64_t wall_ns, const struct iovec *ram, int nram,
			      const struct iovec *dev, int ndev)
{
	enqueue(r, JOB_CKPT, seq, generation, wall_ns, ram, nram, dev, ndev, NULL);
}

void colo_recorder_checkpoint_decoded(struct colo_recorder *r, uint64_t seq,
				      uint64_t generation, uint64_t wall_ns,
				      const struct iovec *ram, int nram, const struct iovec *dev,
				      int ndev, struct colo_ram_stage *pages,
				      struct colo_ram_block *const *blocks, size_t nblocks)
{
	struct decoded d = { pages, blocks, nblocks };

	enqueue(r, JOB_CKPT, seq, generation, wall_ns, ram, nram, dev, ndev, &d);
	colo_ram_stage_reset(pages);
}

bool colo_recorder_wants_keyframe(struct colo_recorder *r)
{
	bool w;

	if (!r)
		return false;
	pthread_mutex_lock(&r->mu);
	w = r->st.running && !r->key_queued;
	pthread_mutex_unlock(&r->mu);
	return w;
}

int colo_recorder_start(const struct colo_record_cfg *cfg, struct colo_recorder **out,
			struct colo_err *err)
{
	struct colo_recorder *r;
	sigset_t all, old;
	int e;

	*out = NULL;
	if (!cfg->dir || !cfg->dir[0])
		return colo_err_set(err, EINVAL, "record: no directory given");
	if (cfg->keyframe_every == 0)
		return colo_err_set(err, EINVAL, "keyframe-every must be at least 1");
	e = colo_mkdir_p(cfg->dir, 0700, NULL);
	if (e)
		return colo_err_set(err, -e, "record: cannot create %s: %s", cfg->dir,
				    strerror(-e));
	{
		struct stat st;

		if (stat(cfg->dir, &st) != 0)
			return colo_err_set(err, errno, "record: %s: %s", cfg->dir,
					    strerror(errno));
		if (!S_ISDIR(st.st_mode))
			return colo_err_set(err, ENOTDIR, "record: %s is not a directory",
					    cfg->dir);
		if (access(cfg->dir, W_OK | X_OK) != 0)
			return colo_err_set(err, errno, "record: %s: %s", cfg->dir,
					    strerror(errno));
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return colo_err_set(err, ENOMEM, "out of memory");
	r->cfg = *cfg;
	r->dir = strdup(cfg->dir);
	r->idx_fd = r->seg_fd = r->lock_fd = -1;
	colo_image_init(&r->img);
	colo_buf_init(&r->kbuf);
	colo_buf_init(&r->wrec);
	colo_buf_init(&r->widx);
	colo_image_memo_init(&r->memo);
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->cfg.dir = r->dir;
	if (!r->dir) {
		colo_recorder_stop(r);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	if (copy_devices(r, cfg->sv, err) != 0 || colo__rec_lock_dir(r, err) != 0 ||
	    colo__rec_adopt_dir(r, err) != 0 || colo__rec_write_meta(r, err) != 0) {
		colo_recorder_stop(r);
		return -err->code;
	}
	/* Both were the caller's, for the start only. */
	r->cfg.sv = NULL;
	r->cfg.meta = NULL;
	r->st.running = true;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	e = pthread_create(&r->th, NULL, rec_main, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	r->started = e == 0;
	if (e) {
		r->st.running = false;
		colo_recorder_stop(r);
		return colo_err_set(err, e, "record: cannot start its thread: %s", strerror(e));
	}
	*out = r;
	return 0;
}

void colo_recorder_stats(struct colo_recorder *r, struct colo_recorder_stats *st)
{
	pthread_mutex_lock(&r->mu);
	*st = r->st;
	pthread_mutex_unlock(&r->mu);
}

const char *colo_recorder_dir(const struct colo_recorder *r)
{
	return r->dir;
}

void colo_recorder_stop(struct colo_recorder *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->quit = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	if (r->started)
		pthread_join(r->th, NULL);
	while (r->head) {
		struct job *n = r->head->next;

		job_free(r->head);
		r->head = n;
	}
	for (size_t i = 0; i < r->nspare; i++)
		colo_ram_stage_free(&r->spare[i]);
	if (r->seg_fd >= 0)
		close(r->seg_fd);
	if (r->idx_fd >= 0)
		close(r->idx_fd);
	if (r->lock_fd >= 0)
		close(r->lock_fd);              /* releases the flock */
	colo_image_free(&r->img);
	colo_buf_free(&r->kbuf);
	colo_buf_free(&r->wrec);
	colo_buf_free(&r->widx);
	colo_image_memo_free(&r->memo);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r->segs);
	free(r->devs);
	free(r->dir);
	free(r);
}
