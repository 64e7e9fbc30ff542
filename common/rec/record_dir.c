/*
 * record_dir.c: a recording's directory as the recorder thread writes it
 * (see record.h for the layout, recorder.c for the thread): taking the
 * directory's lock, adopting what an earlier recorder left there, new
 * segments, records and their index entries, meta.json and
 * sync-devices, and retention.
 *
 * Retention works on whole segments.  A segment's index entries are a
 * prefix of the index when it is the oldest (entries are appended in
 * segment order), so dropping the oldest segment is: rewrite the index
 * without that prefix (to index.tmp, then rename), then delete the file.
 *
 * Everything here but the lock and the adoption (done by
 * colo_recorder_start() before the thread runs) belongs to the recorder
 * thread; a failure stops the recording through colo__rec_fail().
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "colo.pb-c.h"
#include "fs.h"
#include "in.h"
#include "record_int.h"

uint64_t colo__rec_total_bytes(const struct colo_recorder *r)
{
	uint64_t t = r->idx_size + r->meta_size + r->sync_size;

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

int colo__rec_new_segment(struct colo_recorder *r)
{
	struct seginfo *ns;
	char *path;

	if (colo__rec_flush(r) != 0)
		return -1;
	if (r->seg_fd >= 0) {
		fdatasync(r->seg_fd);
		close(r->seg_fd);
		r->seg_fd = -1;
	}
	ns = realloc(r->segs, (r->nsegs + 1) * sizeof(*ns));
	if (!ns) {
		colo__rec_fail(r, "out of memory");
		return -1;
	}
	r->segs = ns;
	path = colo__rec_seg_path(r->dir, r->next_seg);
	if (!path) {
		colo__rec_fail(r, "out of memory");
		return -1;
	}
	r->seg_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (r->seg_fd < 0) {
		colo__rec_fail(r, "%s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	free(path);
	memset(&r->segs[r->nsegs], 0, sizeof(r->segs[0]));
	r->segs[r->nsegs].no = r->next_seg++;
	r->nsegs++;
	return 0;
}

static void seg_name(const struct colo_recorder *r, char *name, size_t size)
{
	snprintf(name, size, COLO_REC_SEG_FMT, r->segs[r->nsegs - 1].no);
}

int colo__rec_flush(struct colo_recorder *r)
{
	char name[32];
	int e;

	if (r->failed)
		return -1;
	if (!colo_buf_ok(&r->wrec) || !colo_buf_ok(&r->widx)) {
		colo__rec_fail(r, "out of memory");
		return -1;
	}
	if (r->wrec.len && (e = colo_write_all(r->seg_fd, r->wrec.data, r->wrec.len)) != 0) {
		seg_name(r, name, sizeof(name));
		colo__rec_fail(r, "%s: %s", name, strerror(-e));
		return -1;
	}
	if (r->widx.len && (e = colo_write_all(r->idx_fd, r->widx.data, r->widx.len)) != 0) {
		colo__rec_fail(r, "%s/" COLO_REC_INDEX ": %s", r->dir, strerror(-e));
		return -1;
	}
	colo_buf_reset(&r->wrec);
	colo_buf_reset(&r->widx);
	pthread_mutex_lock(&r->mu);
	r->st.checkpoints += r->batch_ck;
	r->st.keyframes += r->batch_key;
	if (r->batch_ck) {
		r->st.have_keyframe = true;
		r->st.last_seq = r->batch_seq;
	}
	r->st.bytes = colo__rec_total_bytes(r);
	pthread_mutex_unlock(&r->mu);
	r->batch_ck = r->batch_key = 0;
	return 0;
}

/* Append the record to the current segment; its offset in *off. */
int colo__rec_put_record(struct colo_recorder *r, const void *a, size_t alen,
			 const void *b, size_t blen, uint64_t *off)
{
	struct seginfo *s = &r->segs[r->nsegs - 1];
	char name[32];
	int e;

	*off = s->bytes;
	/* What the batch has no room for comes after it. */
	if (r->wrec.len + alen + blen > COLO_REC_BATCH_BYTES && colo__rec_flush(r))
		return -1;
	if (alen + blen < COLO_REC_BATCH_BYTES) {
		colo_buf_put(&r->wrec, a, alen);
		if (blen)
			colo_buf_put(&r->wrec, b, blen);
	} else if ((e = colo_write_all(r->seg_fd, a, alen)) != 0 ||
		   (blen && (e = colo_write_all(r->seg_fd, b, blen)) != 0)) {
		seg_name(r, name, sizeof(name));
		colo__rec_fail(r, "%s: %s", name, strerror(-e));
		return -1;
	}
	s->bytes += alen + blen;
	return 0;
}

int colo__rec_put_entry(struct colo_recorder *r, uint64_t seq, uint64_t gen, uint64_t wall,
			uint64_t off, uint64_t len, uint64_t ram_len, uint64_t sum, bool key)
{
	Colo__RecordIndexEntry pb = COLO__RECORD_INDEX_ENTRY__INIT;
	Colo__RecordIndexEntry__PagesEntry pe[COLO_PAGE_KINDS];
	Colo__RecordIndexEntry__PagesEntry *pp[COLO_PAGE_KINDS];
	char seg[32], **devs = NULL;
	uint64_t *bytes = NULL;
	struct seginfo *s = &r->segs[r->nsegs - 1];
	size_t np = 0, nd = 0, plen;
	uint8_t *buf;

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
	pb.format = COLO_REC_FORMAT;
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
		bytes = calloc(r->img.ndevs, sizeof(*bytes));
		if (!devs || !bytes) {
			free(devs);
			free(bytes);
			colo__rec_fail(r, "out of memory");
			return -1;
		}
	}
	/* A keyframe holds every device in the image's order; a checkpoint
	 * the ones it carried, in its order.  Their sizes go with them. */
	for (size_t k = 0; k < (key ? r->img.ndevs : r->img.nsent); k++) {
		const struct colo_image_device *d = &r->img.devs[key ? k : r->img.sent[k]];
		size_t dl = strlen(d->idstr) + 16;

		devs[nd] = malloc(dl);
		if (!devs[nd])
			break;
		snprintf(devs[nd], dl, "%s/%" PRIu32, d->idstr, d->instance_id);
		bytes[nd] = d->len;
		nd++;
	}
	pb.devices = devs;
	pb.n_devices = nd;
	pb.device_bytes = bytes;
	pb.n_device_bytes = nd;
	plen = colo__record_index_entry__get_packed_size(&pb);
	buf = malloc(plen + 4);
	if (buf) {
		colo_store_be32(buf, (uint32_t)plen);
		colo__record_index_entry__pack(&pb, buf + 4);
	}
	for (size_t i = 0; i < nd; i++)
		free(devs[i]);
	free(devs);
	free(bytes);
	if (!buf) {
		colo__rec_fail(r, "out of memory");
		return -1;
	}
	colo_buf_put(&r->widx, buf, plen + 4);
	free(buf);
	r->idx_size += plen + 4;
	s->entries++;
	s->index_bytes += plen + 4;
	return 0;
}

/* DIR/name replaced by data whole: written to a temporary file, synced, renamed. */
static int replace_file(const char *dir, const char *name, const void *data, size_t len)
{
	char *path = colo_path_join(dir, name);
	int e;

	if (!path)
		return -ENOMEM;
	e = colo_replace_file(path, data, len, 0600, NULL, NULL);
	free(path);
	return e;
}

int colo__rec_write_meta(struct colo_recorder *r, struct colo_err *err)
{
	json_t *doc = json_object(), *node = json_object();
	char *text;
	int e;

	for (const char *const *m = r->cfg.meta; m && m[0] && m[1]; m += 2)
		json_object_set_new(node, m[0], json_string(m[1]));
	json_object_set_new(doc, "format", json_integer(COLO_REC_FORMAT));
	json_object_set_new(doc, "node", node);
	text = json_dumps(doc, JSON_INDENT(2));
	json_decref(doc);
	if (!text)
		return colo_err_set(err, ENOMEM, "out of memory");
	e = replace_file(r->dir, COLO_REC_META, text, strlen(text));
	if (e == 0)
		r->meta_size = strlen(text);
	free(text);
	if (e)
		return colo_err_set(err, -e, "record: %s/" COLO_REC_META ": %s", r->dir,
				    strerror(-e));
	return 0;
}

int colo__rec_put_sync(struct colo_recorder *r)
{
	struct colo_image view = r->img;      /* shallow: the devices, no RAM */
	struct colo_err err;
	int e;

	view.blocks = NULL;
	view.nblocks = 0;
	colo_err_clear(&err);
	colo_buf_reset(&r->kbuf);
	if (colo_image_save_full(&view, &r->kbuf, &err) != 0) {
		colo__rec_fail(r, COLO_REC_SYNC ": %s", err.msg);
		return -1;
	}
	e = replace_file(r->dir, COLO_REC_SYNC, r->kbuf.data, r->kbuf.len);
	if (e) {
		colo__rec_fail(r, "%s/" COLO_REC_SYNC ": %s", r->dir, strerror(-e));
		return -1;
	}
	r->sync_size = r->kbuf.len;
	return 0;
}

/* Drop the oldest segment: the index loses its prefix, then the file goes. */
static int drop_oldest(struct colo_recorder *r)
{
	struct seginfo *s = &r->segs[0];
	char *idx = colo_path_join(r->dir, COLO_REC_INDEX);
	char *tmp = colo_path_join(r->dir, COLO_REC_INDEX ".tmp");
	char *seg = colo__rec_seg_path(r->dir, s->no);
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
		colo__rec_fail(r, "retention: rewriting %s/" COLO_REC_INDEX ": %s", r->dir,
			       strerror(-e));
	free(data);
	free(idx);
	free(tmp);
	free(seg);
	return e;
}

static bool over_limits(const struct colo_recorder *r)
{
	return !r->failed && r->nsegs > 1 &&
	       ((r->cfg.max_bytes && colo__rec_total_bytes(r) > r->cfg.max_bytes) ||
		(r->cfg.max_checkpoints && total_entries(r) > r->cfg.max_checkpoints));
}

void colo__rec_retention(struct colo_recorder *r)
{
	/* Dropping a segment rewrites the index from the file: the batch first. */
	if (!over_limits(r) || colo__rec_flush(r) != 0)
		return;
	while (over_limits(r))
		if (drop_oldest(r) != 0)
			return;
}

/*
 * One recorder per directory: an flock on DIR/lock, held while recording
 * (two nodes writing one index would interleave their entries).
 */
int colo__rec_lock_dir(struct colo_recorder *r, struct colo_err *err)
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
int colo__rec_adopt_dir(struct colo_recorder *r, struct colo_err *err)
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
	{
		/* A sync-devices left from before counts until replaced. */
		char *sync = colo_path_join(r->dir, COLO_REC_SYNC);
		struct stat st;

		if (sync && stat(sync, &st) == 0)
			r->sync_size = (uint64_t)st.st_size;
		free(sync);
	}
	e = colo_read_file(idx, &data, &len);
	if (e && e != -ENOENT) {
		colo_err_set(err, -e, "%s: %s", idx, strerror(-e));
		free(idx);
		return -err->code;
	}
	if (e == 0 && colo__rec_parse_index(data, len, &v, &n, &good) != 0) {
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
		colo__rec_log(r, false, "recording %s: cutting a torn index tail of %zu bytes",
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
			sp = colo__rec_seg_path(r->dir, v[i].segment);
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

			if (colo__rec_segment_number(de->d_name, &no) == 0 && no >= r->next_seg)
				r->next_seg = no + 1;
		}
		closedir(d);
	}
	for (size_t i = 0; i < n; i++)
		colo__rec_entry_free(&v[i]);
	free(v);
	free(idx);
	if (r->next_seg == 0)
		r->next_seg = 1;
	return 0;
fail:
	for (size_t i = 0; i < n; i++)
		colo__rec_entry_free(&v[i]);
	free(v);
	free(idx);
	return -err->code;
}
