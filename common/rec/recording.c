/*
 * recording.c: the reader of recordings (colo_recording_*, see record.h),
 * for colo-replay and tests.  Opening reads the index once and keeps the
 * entries whose bytes are there, each with the keyframe it starts from,
 * and meta.json's pairs; a state is rebuilt from that keyframe and the
 * checkpoints after it, each record's devices sized as its entry says.
 * The recording owns its entries and pairs until colo_recording_close().
 * Not thread-safe; a recording belongs to one thread at a time.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "fs.h"
#include "record_int.h"

/* meta.json, if there: its format (newer than this build: refused) and pairs. */
static int read_meta(struct colo_recording *rec, struct colo_err *err)
{
	char *path = colo_path_join(rec->dir, COLO_REC_META);
	uint8_t *data = NULL;
	size_t len = 0, n = 0;
	json_t *doc, *node;
	json_int_t format;
	const char *key;
	json_t *v;
	int e;

	if (!path)
		return colo_err_set(err, ENOMEM, "out of memory");
	e = colo_read_file(path, &data, &len);
	free(path);
	if (e == -ENOENT)
		return 0;
	if (e)
		return colo_err_set(err, -e, "%s/" COLO_REC_META ": %s", rec->dir, strerror(-e));
	doc = json_loadb((const char *)data, len, 0, NULL);
	free(data);
	if (!json_is_object(doc)) {
		json_decref(doc);
		return colo_err_set(err, EINVAL, "%s/" COLO_REC_META " is not a JSON object",
				    rec->dir);
	}
	format = json_integer_value(json_object_get(doc, "format"));
	if (format > COLO_REC_FORMAT) {
		json_decref(doc);
		return colo_err_set(err, EPROTONOSUPPORT, "%s: recording format %"
				    JSON_INTEGER_FORMAT " is newer than this build reads (%d)",
				    rec->dir, format, COLO_REC_FORMAT);
	}
	node = json_object_get(doc, "node");
	rec->meta = calloc(2 * json_object_size(node) + 1, sizeof(*rec->meta));
	if (!rec->meta) {
		json_decref(doc);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	json_object_foreach(node, key, v) {
		if (!json_is_string(v))
			continue;
		if (!(rec->meta[n] = strdup(key)) ||
		    !(rec->meta[n + 1] = strdup(json_string_value(v)))) {
			free(rec->meta[n]);
			rec->meta[n] = NULL;
			json_decref(doc);
			return colo_err_set(err, ENOMEM, "out of memory");
		}
		n += 2;
		rec->nmeta = n / 2;
	}
	json_decref(doc);
	return 0;
}

const char *colo_recording_meta(const struct colo_recording *rec, const char *key)
{
	for (size_t i = 0; i < rec->nmeta; i++)
		if (strcmp(rec->meta[2 * i], key) == 0)
			return rec->meta[2 * i + 1];
	return NULL;
}

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
	if (colo__rec_parse_index(data, len, &v, &n, &good) != 0) {
		free(data);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	free(data);
	rec = calloc(1, sizeof(*rec));
	if (!rec || !(rec->dir = strdup(dir))) {
		free(rec);
		for (size_t i = 0; i < n; i++)
			colo__rec_entry_free(&v[i]);
		free(v);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		if (v[i].format <= COLO_REC_FORMAT)
			continue;
		colo_err_set(err, EPROTONOSUPPORT, "%s: checkpoint %" PRIu64 " is in recording "
			     "format %" PRIu32 ", newer than this build reads (%d)", dir,
			     v[i].seq, v[i].format, COLO_REC_FORMAT);
		for (size_t k = 0; k < n; k++)
			colo__rec_entry_free(&v[k]);
		free(v);
		colo_recording_close(rec);
		return -EPROTONOSUPPORT;
	}
	if (read_meta(rec, err) != 0) {
		for (size_t k = 0; k < n; k++)
			colo__rec_entry_free(&v[k]);
		free(v);
		colo_recording_close(rec);
		return -err->code;
	}
	rec->torn_bytes = len - good;
	if (rec->torn_bytes)
		snprintf(rec->note, sizeof(rec->note), "index: %" PRIu64 " bytes after the last "
			 "whole entry (at offset %zu) ignored", rec->torn_bytes, good);
	for (size_t i = 0; i < n; i++) {
		struct colo_rec_entry *x = &v[i];
		bool ok = true;

		if (x->segment != stat_seg) {
			char *sp = colo__rec_seg_path(dir, x->segment);
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
			colo__rec_entry_free(x);
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
		colo__rec_entry_free(&rec->e[i]);
	free(rec->e);
	for (size_t i = 0; i < 2 * rec->nmeta; i++)
		free(rec->meta[i]);
	free(rec->meta);
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
	char *sp = colo__rec_seg_path(rec->dir, e->segment);
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

/* Sizes a record's device sections as its entry lists them, in order. */
struct entry_sizer {
	const struct colo_rec_entry *e;
	size_t next;
};

static int entry_size(void *ud, const char *idstr, uint32_t instance_id, uint32_t version,
		      const uint8_t *p, size_t avail, uint64_t *bytes, struct colo_err *err)
{
	struct entry_sizer *es = ud;
	const struct colo_rec_entry *e = es->e;
	char name[COLO_IMAGE_NAME_MAX + 16];

	(void)version; (void)p; (void)avail;
	snprintf(name, sizeof(name), "%s/%" PRIu32, idstr, instance_id);
	if (es->next >= e->ndevice_bytes)
		return colo_err_set(err, EINVAL, "the index lists %zu device sections, the "
				    "record has more", e->ndevice_bytes);
	if (strcmp(e->devices[es->next], name) != 0)
		return colo_err_set(err, EINVAL, "the index lists '%s' as device section %zu, "
				    "the record has '%s'", e->devices[es->next], es->next + 1,
				    name);
	*bytes = e->device_bytes[es->next++];
	return 0;
}

int colo_recording_step(const struct colo_rec_entry *e, struct colo_image *img,
			const uint8_t *data, size_t len, struct colo_err *err)
{
	struct entry_sizer es = { e, 0 };
	struct colo_image_sizer sz = { entry_size, &es };
	const struct colo_image_sizer *szp = e->ndevice_bytes ? &sz : NULL;
	int r;

	if (e->keyframe)
		r = colo_image_load_full_sized(img, data, len, szp, err);
	else
		r = colo_image_apply_sized(img, data, (size_t)e->ram_length,
					   data + e->ram_length, len - (size_t)e->ram_length,
					   szp, err);
	if (r == 0 && szp && es.next != e->ndevice_bytes)
		r = colo_err_set(err, EINVAL, "the index lists %zu device sections, the record "
				 "has %zu", e->ndevice_bytes, es.next);
	return r;
}

int colo_recording_sync_devices(const struct colo_recording *rec, struct colo_image *img,
				struct colo_err *err)
{
	char *path = colo_path_join(rec->dir, COLO_REC_SYNC);
	uint8_t *data = NULL;
	size_t len = 0;
	int e;

	colo_image_init(img);
	if (!path)
		return colo_err_set(err, ENOMEM, "out of memory");
	e = colo_read_file(path, &data, &len);
	if (e) {
		colo_err_set(err, -e, "%s: %s", path, strerror(-e));
		free(path);
		return e;
	}
	free(path);
	e = colo_image_load_full(img, data, len, err);
	free(data);
	if (e)
		colo_err_prefix(err, COLO_REC_SYNC);
	return e;
}

int colo_recording_state(const struct colo_recording *rec, const struct colo_rec_entry *e,
			 struct colo_image *img, struct colo_err *err)
{
	size_t at = (size_t)(e - rec->e);
	uint64_t total = 0, done = 0;
	uint8_t *data;
	size_t len;
	int r;

	colo_image_init(img);
	if (at >= rec->n || e->key > at)
		return colo_err_set(err, EINVAL, "checkpoint %" PRIu64 " is not in the recording",
				    e->seq);
	for (size_t i = e->key; i <= at; i++)
		total += rec->e[i].length;
	for (size_t i = e->key; i <= at; i++) {
		const struct colo_rec_entry *x = &rec->e[i];

		r = colo_recording_read(rec, x, &data, &len, err);
		if (r)
			return r;
		r = colo_recording_step(x, img, data, len, err);
		free(data);
		done += x->length;
		if (rec->progress)
			rec->progress(rec->progress_ud, "rebuilding checkpoint", done, total);
		if (r) {
			if (strncmp(err->msg, "checkpoint ", 11) != 0)   /* read says it */
				colo_err_prefix(err, "checkpoint %" PRIu64 " (" COLO_REC_SEG_FMT
						" at %" PRIu64 ")", x->seq, x->segment, x->offset);
			return r;
		}
	}
	return 0;
}
