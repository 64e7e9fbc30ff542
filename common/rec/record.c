/*
 * record.c: recordings (see record.h).
 *
 * Writer.  The loop thread copies each record into a job and queues it; the
 * recorder thread takes jobs in order, moves its image forward (a full
 * stream replaces it, a checkpoint is applied to it), writes the record,
 * then its index entry, then applies retention.  Every keyframe-every
 * checkpoints the image is written out as a keyframe starting a new
 * segment, in place of that checkpoint's own bytes.
 *
 * Retention works on whole segments.  A segment's index entries are a
 * prefix of the index when it is the oldest (entries are appended in
 * segment order), so dropping the oldest segment is: rewrite the index
 * without that prefix (to index.tmp, then rename), then delete the file.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "colo.pb-c.h"
#include "fs.h"
#include "in.h"
#include "record.h"

/* ---- files ---- */

static char *seg_path(const char *dir, uint32_t seg)
{
	char name[32];

	snprintf(name, sizeof(name), COLO_REC_SEG_FMT, seg);
	return colo_path_join(dir, name);
}

/* ---- index entries ---- */

static void entry_free(struct colo_rec_entry *e)
{
	for (size_t i = 0; i < e->ndevices; i++)
		free(e->devices[i]);
	free(e->devices);
	memset(e, 0, sizeof(*e));
}

static int segment_number(const char *name, uint32_t *seg)
{
	unsigned v;
	int used = 0;

	if (sscanf(name, "seg-%6u%n", &v, &used) != 1 || used != 10 || name[used])
		return -1;
	*seg = v;
	return 0;
}

/* Protobuf -> entry; -1 when it makes no sense. */
static int entry_from_pb(const Colo__RecordIndexEntry *pb, struct colo_rec_entry *e)
{
	memset(e, 0, sizeof(*e));
	if (!pb->segment || segment_number(pb->segment, &e->segment) != 0)
		return -1;
	if (pb->length == 0 || pb->offset > UINT64_MAX - pb->length ||
	    (!pb->keyframe && pb->ram_length > pb->length))
		return -1;
	e->seq = pb->seq;
	e->generation = pb->generation;
	e->wall_ns = pb->wall_time_ns;
	e->offset = pb->offset;
	e->length = pb->length;
	e->ram_length = pb->ram_length;
	e->checksum = pb->checksum;
	e->keyframe = pb->keyframe;
	for (size_t i = 0; i < pb->n_pages; i++)
		for (int k = 0; k < COLO_PAGE_KINDS; k++)
			if (pb->pages[i]->key &&
			    strcmp(pb->pages[i]->key, colo_page_kind_name((enum colo_page_kind)k)) == 0)
				e->pages[k] = pb->pages[i]->value;
	if (pb->n_devices) {
		e->devices = calloc(pb->n_devices, sizeof(*e->devices));
		if (!e->devices)
			return -1;
		for (size_t i = 0; i < pb->n_devices; i++) {
			e->devices[i] = strdup(pb->devices[i] ? pb->devices[i] : "");
			if (!e->devices[i]) {
				entry_free(e);
				return -1;
			}
			e->ndevices++;
		}
	}
	return 0;
}

/*
 * Parse an index file's bytes into entries.  Stops at the first entry that
 * is torn or does not decode: *good is the byte length of what parsed.
 */
static int parse_index(const uint8_t *data, size_t len, struct colo_rec_entry **out,
		       size_t *nout, size_t *good)
{
	struct colo_rec_entry *v = NULL;
	size_t n = 0, cap = 0, pos = 0;

	while (len - pos >= 4) {
		uint32_t el = colo_load_be32(data + pos);
		Colo__RecordIndexEntry *pb;
		struct colo_rec_entry e;

		if (el == 0 || el > COLO_REC_ENTRY_MAX || el > len - pos - 4)
			break;
		pb = colo__record_index_entry__unpack(NULL, el, data + pos + 4);
		if (!pb)
			break;
		if (entry_from_pb(pb, &e) != 0) {
			colo__record_index_entry__free_unpacked(pb, NULL);
			break;
		}
		colo__record_index_entry__free_unpacked(pb, NULL);
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			struct colo_rec_entry *nv = realloc(v, nc * sizeof(*nv));

			if (!nv) {
				entry_free(&e);
				for (size_t i = 0; i < n; i++)
					entry_free(&v[i]);
				free(v);
				return -ENOMEM;
			}
			v = nv;
			cap = nc;
		}
		e.entry_bytes = 4 + el;
		v[n++] = e;
		pos += 4 + el;
	}
	*out = v;
	*nout = n;
	*good = pos;
	return 0;
}

/* ---- writer ---- */

enum { JOB_FULL, JOB_CKPT };

struct job {
	struct job *next;
	int kind;
	uint64_t seq, generation, wall_ns;
	size_t len, ram_len;
	uint8_t data[];
};

struct seginfo {
	uint32_t no;
	uint64_t bytes;                  /* segment file size */
	uint64_t entries;
	uint64_t index_bytes;            /* of its entries in the index */
};

struct colo_recorder {
	struct colo_record_cfg cfg;
	char *dir;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *head, *tail;
	bool quit, started;
	bool key_queued;                 /* a full stream was queued */
	struct colo_recorder_stats st;   /* under mu */

	/* the thread's own */
	int idx_fd, seg_fd, lock_fd;
	uint64_t idx_size;
	struct seginfo *segs;
	size_t nsegs;
	uint32_t next_seg;
	uint64_t since_key;
	struct colo_image img;
	bool have_img, failed;
	struct colo_buf kbuf;
};

static void rec_fail(struct colo_recorder *r, const char *fmt, ...) COLO_PRINTF(2, 3);
static void rec_log(struct colo_recorder *r, bool error, const char *fmt, ...)
	COLO_PRINTF(3, 4);

static void rec_log(struct colo_recorder *r, bool error, const char *fmt, ...)
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
		rec_log(r, true, "recording to %s stopped: %s (replication goes on)", r->dir,
			msg);
}

/* The recorder thread cannot go on writing. */
static void rec_fail(struct colo_recorder *r, const char *fmt, ...)
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

static uint64_t total_bytes(const struct colo_recorder *r)
{
	uint64_t t = r->idx_size;

	for (size_t i = 0; i < r->nsegs; i++)
		t += r->segs[i].bytes;
	return t;
}

static uint64_t total_entries(const struct colo_recorder *r)
{
	uint64_t t = 0;

	for (size_t i = 0; i < r->nsegs; i++)
		t += r->segs[i].entries;
	return t;
}

static void publish(struct colo_recorder *r)
{
	uint64_t bytes = total_bytes(r);

	pthread_mutex_lock(&r->mu);
	r->st.bytes = bytes;
	pthread_mutex_unlock(&r->mu);
}

static int new_segment(struct colo_recorder *r)
{
	struct seginfo *ns;
	char *path;

	if (r->seg_fd >= 0) {
		fdatasync(r->seg_fd);
		close(r->seg_fd);
		r->seg_fd = -1;
	}
	ns = realloc(r->segs, (r->nsegs + 1) * sizeof(*ns));
	if (!ns) {
		rec_fail(r, "out of memory");
		return -1;
	}
	r->segs = ns;
	path = seg_path(r->dir, r->next_seg);
	if (!path) {
		rec_fail(r, "out of memory");
		return -1;
	}
	r->seg_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (r->seg_fd < 0) {
		rec_fail(r, "%s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	free(path);
	memset(&r->segs[r->nsegs], 0, sizeof(r->segs[0]));
	r->segs[r->nsegs].no = r->next_seg++;
	r->nsegs++;
	return 0;
}

/* Append the record to the current segment; its offset in *off. */
static int put_record(struct colo_recorder *r, const void *a, size_t alen, const void *b,
		      size_t blen, uint64_t *off)
{
	struct seginfo *s = &r->segs[r->nsegs - 1];
	int e;

	*off = s->bytes;
	if ((e = colo_write_all(r->seg_fd, a, alen)) != 0 ||
	    (blen && (e = colo_write_all(r->seg_fd, b, blen)) != 0)) {
		char name[32];

		snprintf(name, sizeof(name), COLO_REC_SEG_FMT, s->no);
		rec_fail(r, "%s: %s", name, strerror(-e));
		return -1;
	}
	s->bytes += alen + blen;
	return 0;
}

static int put_entry(struct colo_recorder *r, uint64_t seq, uint64_t gen, uint64_t wall,
		     uint64_t off, uint64_t len, uint64_t ram_len, uint64_t sum, bool key)
{
	Colo__RecordIndexEntry pb = COLO__RECORD_INDEX_ENTRY__INIT;
	Colo__RecordIndexEntry__PagesEntry pe[COLO_PAGE_KINDS];
	Colo__RecordIndexEntry__PagesEntry *pp[COLO_PAGE_KINDS];
	char seg[32], **devs = NULL;
	struct seginfo *s = &r->segs[r->nsegs - 1];
	size_t np = 0, nd = 0, plen;
	uint8_t *buf;
	int e;

	snprintf(seg, sizeof(seg), COLO_REC_SEG_FMT, s->no);
	pb.seq = seq;
	pb.generation = gen;
	pb.wall_time_ns = wall;
	pb.segment = seg;
	pb.offset = off;
	pb.length = len;
	pb.ram_length = ram_len;
	pb.checksum = sum;
	pb.keyframe = key;
	for (int k = 0; k < COLO_PAGE_KINDS; k++) {
		if (!r->img.pages[k])
			continue;
		colo__record_index_entry__pages_entry__init(&pe[np]);
		pe[np].key = (char *)colo_page_kind_name((enum colo_page_kind)k);
		pe[np].value = r->img.pages[k];
		pp[np] = &pe[np];
		np++;
	}
	pb.pages = pp;
	pb.n_pages = np;
	if (r->img.ndevs) {
		devs = calloc(r->img.ndevs, sizeof(*devs));
		if (!devs) {
			rec_fail(r, "out of memory");
			return -1;
		}
	}
	for (size_t i = 0; i < r->img.ndevs; i++) {
		const struct colo_image_device *d = &r->img.devs[i];
		size_t dl;

		if (!key && !d->touched)
			continue;
		dl = strlen(d->idstr) + 16;
		devs[nd] = malloc(dl);
		if (!devs[nd])
			break;
		snprintf(devs[nd], dl, "%s/%" PRIu32, d->idstr, d->instance_id);
		nd++;
	}
	pb.devices = devs;
	pb.n_devices = nd;
	plen = colo__record_index_entry__get_packed_size(&pb);
	buf = malloc(plen + 4);
	if (!buf) {
		for (size_t i = 0; i < nd; i++)
			free(devs[i]);
		free(devs);
		rec_fail(r, "out of memory");
		return -1;
	}
	colo_store_be32(buf, (uint32_t)plen);
	colo__record_index_entry__pack(&pb, buf + 4);
	for (size_t i = 0; i < nd; i++)
		free(devs[i]);
	free(devs);
	e = colo_write_all(r->idx_fd, buf, plen + 4);
	free(buf);
	if (e) {
		rec_fail(r, "%s/" COLO_REC_INDEX ": %s", r->dir, strerror(-e));
		return -1;
	}
	r->idx_size += plen + 4;
	s->entries++;
	s->index_bytes += plen + 4;
	return 0;
}

/* Drop the oldest segment: the index loses its prefix, then the file goes. */
static int drop_oldest(struct colo_recorder *r)
{
	struct seginfo *s = &r->segs[0];
	char *idx = colo_path_join(r->dir, COLO_REC_INDEX);
	char *tmp = colo_path_join(r->dir, COLO_REC_INDEX ".tmp");
	char *seg = seg_path(r->dir, s->no);
	uint8_t *data = NULL;
	size_t len = 0;
	int fd = -1, e;

	if (!idx || !tmp || !seg) {
		e = -ENOMEM;
		goto out;
	}
	if ((e = colo_read_file(idx, &data, &len)) != 0)
		goto out;
	if (len < s->index_bytes) {
		e = -EIO;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		e = -errno;
		goto out;
	}
	if ((e = colo_write_all(fd, data + s->index_bytes, len - s->index_bytes)) != 0)
		goto out;
	if (fsync(fd) != 0) {
		e = -errno;
		goto out;
	}
	close(fd);
	fd = -1;
	/* The new index no longer names the segment: only then delete it. */
	if (rename(tmp, idx) != 0) {
		e = -errno;
		goto out;
	}
	close(r->idx_fd);
	r->idx_fd = open(idx, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (r->idx_fd < 0) {
		e = -errno;
		goto out;
	}
	r->idx_size = len - s->index_bytes;
	unlink(seg);
	memmove(&r->segs[0], &r->segs[1], (r->nsegs - 1) * sizeof(r->segs[0]));
	r->nsegs--;
	e = 0;
out:
	if (fd >= 0)
		close(fd);
	if (e)
		rec_fail(r, "retention: rewriting %s/" COLO_REC_INDEX ": %s", r->dir,
			 strerror(-e));
	free(data);
	free(idx);
	free(tmp);
	free(seg);
	return e;
}

static void retention(struct colo_recorder *r)
{
	while (!r->failed && r->nsegs > 1 &&
	       ((r->cfg.max_bytes && total_bytes(r) > r->cfg.max_bytes) ||
		(r->cfg.max_checkpoints && total_entries(r) > r->cfg.max_checkpoints)))
		if (drop_oldest(r) != 0)
			return;
}

static void counted(struct colo_recorder *r, uint64_t seq, bool key)
{
	pthread_mutex_lock(&r->mu);
	r->st.checkpoints++;
	if (key)
		r->st.keyframes++;
	r->st.have_keyframe = true;
	r->st.last_seq = seq;
	pthread_mutex_unlock(&r->mu);
}

static void do_full(struct colo_recorder *r, struct job *j)
{
	struct colo_err err;
	uint64_t off;

	colo_err_clear(&err);
	if (colo_image_load_full(&r->img, j->data, j->len, &err) != 0) {
		r->have_img = false;
		rec_fail(r, "full stream of checkpoint %" PRIu64 " does not decode: %s", j->seq,
			 err.msg);
		return;
	}
	r->have_img = true;
	r->since_key = 0;
	if (new_segment(r) || put_record(r, j->data, j->len, NULL, 0, &off) ||
	    put_entry(r, j->seq, j->generation, j->wall_ns, off, j->len, 0,
		      XXH3_64bits(j->data, j->len), true))
		return;
	counted(r, j->seq, true);
}

static void do_ckpt(struct colo_recorder *r, struct job *j)
{
	struct colo_err err;
	uint64_t off, sum;

	colo_err_clear(&err);
	if (colo_image_apply(&r->img, j->data, j->ram_len, j->data + j->ram_len,
			     j->len - j->ram_len, &err) != 0) {
		rec_fail(r, "checkpoint %" PRIu64 " does not decode: %s", j->seq, err.msg);
		return;
	}
	if (++r->since_key >= r->cfg.keyframe_every) {
		/* This checkpoint is written as the state it leads to. */
		colo_buf_reset(&r->kbuf);
		if (colo_image_save_full(&r->img, &r->kbuf, &err) != 0) {
			rec_fail(r, "keyframe at checkpoint %" PRIu64 ": %s", j->seq, err.msg);
			return;
		}
		r->since_key = 0;
		if (new_segment(r) || put_record(r, r->kbuf.data, r->kbuf.len, NULL, 0, &off) ||
		    put_entry(r, j->seq, j->generation, j->wall_ns, off, r->kbuf.len, 0,
			      XXH3_64bits(r->kbuf.data, r->kbuf.len), true))
			return;
		counted(r, j->seq, true);
		return;
	}
	sum = XXH3_64bits(j->data, j->len);
	if (put_record(r, j->data, j->len, NULL, 0, &off) ||
	    put_entry(r, j->seq, j->generation, j->wall_ns, off, j->len, j->ram_len, sum, false))
		return;
	counted(r, j->seq, false);
}

static void *rec_main(void *arg)
{
	struct colo_recorder *r = arg;

	for (;;) {
		struct job *j;

		pthread_mutex_lock(&r->mu);
		while (!r->head && !r->quit)
			pthread_cond_wait(&r->cv, &r->mu);
		j = r->head;
		if (j) {
			r->head = j->next;
			if (!r->head)
				r->tail = NULL;
			r->st.queued_bytes -= j->len;
		}
		pthread_mutex_unlock(&r->mu);
		if (!j)
			break;
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
				retention(r);
			publish(r);
		}
		free(j);
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

/* Copy the pieces (RAM ones first) into a job and queue it. */
static void enqueue(struct colo_recorder *r, int kind, uint64_t seq, uint64_t gen,
		    uint64_t wall, const struct iovec *a, int na, const struct iovec *b, int nb)
{
	size_t alen = iov_len(a, na), blen = iov_len(b, nb), at = 0;
	struct job *j;
	uint64_t waiting;
	bool running;

	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	running = r->st.running;
	waiting = r->st.queued_bytes + alen + blen;
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
	j->next = NULL;
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
	pthread_mutex_lock(&r->mu);
	if (r->tail)
		r->tail->next = j;
	else
		r->head = j;
	r->tail = j;
	r->st.queued_bytes += j->len;
	if (kind == JOB_FULL)
		r->key_queued = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

void colo_recorder_full(struct colo_recorder *r, uint64_t seq, uint64_t generation,
			uint64_t wall_ns, const struct iovec *iov, int n)
{
	enqueue(r, JOB_FULL, seq, generation, wall_ns, iov, n, NULL, 0);
}

void colo_recorder_checkpoint(struct colo_recorder *r, uint64_t seq, uint64_t generation,
			      uint64_t wall_ns, const struct iovec *ram, int nram,
			      const struct iovec *dev, int ndev)
{
	enqueue(r, JOB_CKPT, seq, generation, wall_ns, ram, nram, dev, ndev);
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

/*
 * One recorder per directory: an flock on DIR/lock, held while recording
 * (two nodes writing one index would interleave their entries).
 */
static int lock_dir(struct colo_recorder *r, struct colo_err *err)
{
	char *path = colo_path_join(r->dir, "lock");

	if (!path)
		return colo_err_set(err, ENOMEM, "out of memory");
	r->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (r->lock_fd < 0) {
		colo_err_set(err, errno, "record: %s: %s", path, strerror(errno));
		free(path);
		return -err->code;
	}
	free(path);
	if (flock(r->lock_fd, LOCK_EX | LOCK_NB) != 0)
		return colo_err_set(err, EBUSY, "record: %s is in use by another recorder",
				    r->dir);
	return 0;
}

/* What is in dir already: segments, the index (a torn tail cut off). */
static int adopt_dir(struct colo_recorder *r, struct colo_err *err)
{
	char *idx = colo_path_join(r->dir, COLO_REC_INDEX);
	uint8_t *data = NULL;
	size_t len = 0, n = 0, good = 0;
	struct colo_rec_entry *v = NULL;
	DIR *d;
	struct dirent *de;
	int e;

	if (!idx)
		return colo_err_set(err, ENOMEM, "out of memory");
	e = colo_read_file(idx, &data, &len);
	if (e && e != -ENOENT) {
		colo_err_set(err, -e, "%s: %s", idx, strerror(-e));
		free(idx);
		return -err->code;
	}
	if (e == 0 && parse_index(data, len, &v, &n, &good) != 0) {
		free(data);
		free(idx);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	free(data);
	r->idx_fd = open(idx, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (r->idx_fd < 0) {
		colo_err_set(err, errno, "%s: %s", idx, strerror(errno));
		goto fail;
	}
	if (good < len) {
		rec_log(r, false, "recording %s: cutting a torn index tail of %zu bytes",
			r->dir, len - good);
		if (ftruncate(r->idx_fd, (off_t)good) != 0) {
			colo_err_set(err, errno, "%s: %s", idx, strerror(errno));
			goto fail;
		}
	}
	r->idx_size = good;
	/* Segments named by the index, in its order, with their sizes. */
	for (size_t i = 0; i < n; i++) {
		struct seginfo *s = r->nsegs ? &r->segs[r->nsegs - 1] : NULL;

		if (!s || s->no != v[i].segment) {
			struct seginfo *ns = realloc(r->segs, (r->nsegs + 1) * sizeof(*ns));
			char *sp;
			struct stat st;

			if (!ns) {
				colo_err_set(err, ENOMEM, "out of memory");
				goto fail;
			}
			r->segs = ns;
			sp = seg_path(r->dir, v[i].segment);
			if (!sp) {
				colo_err_set(err, ENOMEM, "out of memory");
				goto fail;
			}
			s = &r->segs[r->nsegs++];
			memset(s, 0, sizeof(*s));
			s->no = v[i].segment;
			if (stat(sp, &st) == 0)
				s->bytes = (uint64_t)st.st_size;
			free(sp);
		}
		s->entries++;
		s->index_bytes += v[i].entry_bytes;    /* for retention */
	}
	/* New segments never reuse a number, named by the index or not. */
	d = opendir(r->dir);
	if (d) {
		while ((de = readdir(d))) {
			uint32_t no;

			if (segment_number(de->d_name, &no) == 0 && no >= r->next_seg)
				r->next_seg = no + 1;
		}
		closedir(d);
	}
	for (size_t i = 0; i < n; i++)
		entry_free(&v[i]);
	free(v);
	free(idx);
	if (r->next_seg == 0)
		r->next_seg = 1;
	return 0;
fail:
	for (size_t i = 0; i < n; i++)
		entry_free(&v[i]);
	free(v);
	free(idx);
	return -err->code;
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
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->cfg.dir = r->dir;
	if (!r->dir) {
		colo_recorder_stop(r);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	if (lock_dir(r, err) != 0 || adopt_dir(r, err) != 0) {
		colo_recorder_stop(r);
		return -err->code;
	}
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

		free(r->head);
		r->head = n;
	}
	if (r->seg_fd >= 0)
		close(r->seg_fd);
	if (r->idx_fd >= 0)
		close(r->idx_fd);
	if (r->lock_fd >= 0)
		close(r->lock_fd);              /* releases the flock */
	colo_image_free(&r->img);
	colo_buf_free(&r->kbuf);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r->segs);
	free(r->dir);
	free(r);
}

/* ---- reader ---- */

int colo_recording_open(const char *dir, struct colo_recording **out, struct colo_err *err)
{
	struct colo_recording *rec;
	char *idx = colo_path_join(dir, COLO_REC_INDEX);
	uint8_t *data = NULL;
	size_t len = 0, good = 0, n = 0, kept = 0;
	struct colo_rec_entry *v = NULL;
	uint32_t cur_seg = UINT32_MAX, stat_seg = UINT32_MAX;
	uint64_t seg_size = 0;
	size_t key = SIZE_MAX;
	int e;

	*out = NULL;
	if (!idx)
		return colo_err_set(err, ENOMEM, "out of memory");
	e = colo_read_file(idx, &data, &len);
	if (e) {
		colo_err_set(err, -e, "%s: %s", e == -ENOENT ? dir : idx,
			     e == -ENOENT ? "not a recording (no index)" : strerror(-e));
		free(idx);
		return -err->code;
	}
	free(idx);
	if (parse_index(data, len, &v, &n, &good) != 0) {
		free(data);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	free(data);
	rec = calloc(1, sizeof(*rec));
	if (!rec || !(rec->dir = strdup(dir))) {
		free(rec);
		for (size_t i = 0; i < n; i++)
			entry_free(&v[i]);
		free(v);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	rec->torn_bytes = len - good;
	if (rec->torn_bytes)
		snprintf(rec->note, sizeof(rec->note), "index: %" PRIu64 " bytes after the last "
			 "whole entry (at offset %zu) ignored", rec->torn_bytes, good);
	for (size_t i = 0; i < n; i++) {
		struct colo_rec_entry *x = &v[i];
		bool ok = true;

		if (x->segment != stat_seg) {
			char *sp = seg_path(dir, x->segment);
			struct stat st;

			stat_seg = x->segment;
			seg_size = sp && stat(sp, &st) == 0 ? (uint64_t)st.st_size : 0;
			free(sp);
		}
		if (x->segment != cur_seg) {
			cur_seg = x->segment;
			key = SIZE_MAX;
		}
		if (x->offset + x->length > seg_size) {
			ok = false;
			if (!rec->note[0])
				snprintf(rec->note, sizeof(rec->note), "checkpoint %" PRIu64 ": "
					 COLO_REC_SEG_FMT " is missing or shorter than %" PRIu64
					 " bytes", x->seq, x->segment, x->offset + x->length);
		} else if (x->keyframe) {
			key = kept;
		} else if (key == SIZE_MAX) {
			ok = false;
			if (!rec->note[0])
				snprintf(rec->note, sizeof(rec->note), "checkpoint %" PRIu64 ": no "
					 "keyframe before it in " COLO_REC_SEG_FMT, x->seq,
					 x->segment);
		}
		if (!ok) {
			rec->unreachable++;
			entry_free(x);
			if (x->keyframe)
				key = SIZE_MAX;
			continue;
		}
		x->key = key;
		v[kept++] = *x;
	}
	rec->e = v;
	rec->n = kept;
	*out = rec;
	return 0;
}

void colo_recording_close(struct colo_recording *rec)
{
	if (!rec)
		return;
	for (size_t i = 0; i < rec->n; i++)
		entry_free(&rec->e[i]);
	free(rec->e);
	free(rec->dir);
	free(rec);
}

const struct colo_rec_entry *colo_recording_find(const struct colo_recording *rec,
						 uint64_t seq)
{
	for (size_t i = rec->n; i-- > 0;)
		if (rec->e[i].seq == seq)
			return &rec->e[i];
	return NULL;
}

int colo_recording_read(const struct colo_recording *rec, const struct colo_rec_entry *e,
			uint8_t **data, size_t *len, struct colo_err *err)
{
	char *sp = seg_path(rec->dir, e->segment);
	uint8_t *buf = NULL;
	size_t got = 0;
	uint64_t sum;
	int fd;

	*data = NULL;
	*len = 0;
	if (!sp)
		return colo_err_set(err, ENOMEM, "out of memory");
	if (e->length > SIZE_MAX - 1 || !(buf = malloc((size_t)e->length))) {
		free(sp);
		return colo_err_set(err, ENOMEM, "checkpoint %" PRIu64 ": cannot hold its %"
				    PRIu64 " bytes", e->seq, e->length);
	}
	fd = open(sp, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		colo_err_set(err, errno, "checkpoint %" PRIu64 ": %s: %s", e->seq, sp,
			     strerror(errno));
		goto fail;
	}
	got = colo_pread_all(fd, buf, (size_t)e->length, e->offset);
	close(fd);
	if (got < e->length) {
		colo_err_set(err, EIO, "checkpoint %" PRIu64 ": " COLO_REC_SEG_FMT " ends at "
			     "offset %" PRIu64 ", inside its record (%" PRIu64 " bytes at %" PRIu64
			     ")", e->seq, e->segment, e->offset + got, e->length, e->offset);
		goto fail;
	}
	sum = XXH3_64bits(buf, (size_t)e->length);
	if (sum != e->checksum) {
		colo_err_set(err, EINVAL, "checkpoint %" PRIu64 ": " COLO_REC_SEG_FMT " bytes %"
			     PRIu64 "..%" PRIu64 " do not match their checksum (%016" PRIx64
			     ", index says %016" PRIx64 ")", e->seq, e->segment, e->offset,
			     e->offset + e->length, sum, e->checksum);
		goto fail;
	}
	free(sp);
	*data = buf;
	*len = (size_t)e->length;
	return 0;
fail:
	free(sp);
	free(buf);
	return -err->code;
}

int colo_recording_state(const struct colo_recording *rec, const struct colo_rec_entry *e,
			 struct colo_image *img, struct colo_err *err)
{
	size_t at = (size_t)(e - rec->e);
	uint8_t *data;
	size_t len;
	int r;

	colo_image_init(img);
	if (at >= rec->n || e->key > at)
		return colo_err_set(err, EINVAL, "checkpoint %" PRIu64 " is not in the recording",
				    e->seq);
	for (size_t i = e->key; i <= at; i++) {
		const struct colo_rec_entry *x = &rec->e[i];

		r = colo_recording_read(rec, x, &data, &len, err);
		if (r)
			return r;
		if (x->keyframe)
			r = colo_image_load_full(img, data, len, err);
		else
			r = colo_image_apply(img, data, (size_t)x->ram_length,
					     data + x->ram_length, len - (size_t)x->ram_length, err);
		free(data);
		if (r) {
			if (strncmp(err->msg, "checkpoint ", 11) != 0)   /* read says it */
				colo_err_prefix(err, "checkpoint %" PRIu64 " (" COLO_REC_SEG_FMT
						" at %" PRIu64 ")", x->seq, x->segment, x->offset);
			return r;
		}
	}
	return 0;
}
