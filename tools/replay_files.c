/*
 * replay_files.c: `colo-replay extract` and `verify` (see replay.h): the
 * commands that go through a recording's files as a whole.  extract
 * writes one checkpoint's RAM blocks and devices out as files; verify
 * reads every record and rebuilds every checkpoint, and lists segment
 * files no index entry refers to.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "replay_int.h"

#define SAFE_NAME_RULE "ram/<block name>.bin, every byte of the name other than " \
	"A-Z a-z 0-9 . _ - (and a leading .) replaced by _, and -2, -3... added " \
	"when two names would share a file"

/* ---- extract ---- */

/* A block name as a file name (SAFE_NAME_RULE), unique among taken. */
static void safe_name(const char *name, const json_t *taken, char *buf, size_t len)
{
	char base[COLO_IMAGE_NAME_MAX + 1];
	size_t n = 0;

	for (const char *p = name; *p && n < sizeof(base) - 1; p++) {
		char c = *p;
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';

		if (n == 0 && c == '.')
			ok = false;
		base[n++] = ok ? c : '_';
	}
	if (n == 0)
		base[n++] = '_';
	base[n] = '\0';
	snprintf(buf, len, "ram/%s.bin", base);
	for (unsigned k = 2; json_object_get(taken, buf); k++)
		snprintf(buf, len, "ram/%s-%u.bin", base, k);
}

static int make_dir(const char *path, struct colo_err *err)
{
	struct stat st;

	if (mkdir(path, 0755) == 0)
		return 0;
	if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	return colo_err_set(err, errno == EEXIST ? ENOTDIR : errno, "%s: cannot create "
			    "the directory: %s", path, strerror(errno == EEXIST ? ENOTDIR : errno));
}

/* The block's bytes; zero pages are left as holes. */
/* Write b to path; progress (if any) says "writing blocks", from `base`
 * of `total` bytes, every 64 MiB. */
static int write_block(const struct colo_recording *rec, const char *path,
		       const struct colo_image_block *b, uint64_t base, uint64_t total,
		       struct colo_err *err)
{
	static const uint8_t zero[COLO_PAGE_SIZE];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0)
		return colo_err_set(err, errno, "%s: cannot create: %s", path, strerror(errno));
	for (uint64_t off = 0; off < b->length; off += COLO_PAGE_SIZE) {
		const uint8_t *p = b->data + off;
		size_t done = 0;

		if (rec->progress && off % (64u << 20) == 0)
			rec->progress(rec->progress_ud, "writing blocks", base + off, total);
		if (memcmp(p, zero, COLO_PAGE_SIZE) == 0)
			continue;
		while (done < COLO_PAGE_SIZE) {
			ssize_t w = pwrite(fd, p + done, COLO_PAGE_SIZE - done,
					   (off_t)(off + done));

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				colo_err_set(err, w < 0 ? errno : EIO, "%s: cannot write: %s", path,
					     strerror(w < 0 ? errno : EIO));
				close(fd);
				return -err->code;
			}
			done += (size_t)w;
		}
	}
	if (ftruncate(fd, (off_t)b->length) != 0) {
		colo_err_set(err, errno, "%s: cannot write: %s", path, strerror(errno));
		close(fd);
		return -err->code;
	}
	if (close(fd) != 0)
		return colo_err_set(err, errno, "%s: cannot write: %s", path, strerror(errno));
	return 0;
}

static int write_json(const char *path, const json_t *doc, struct colo_err *err)
{
	FILE *f = fopen(path, "w");
	int bad;

	if (!f)
		return colo_err_set(err, errno, "%s: cannot create: %s", path, strerror(errno));
	bad = json_dumpf(doc, f, JSON_INDENT(2)) != 0;
	bad |= fputc('\n', f) == EOF;
	bad |= fclose(f) != 0;
	if (bad)
		return colo_err_set(err, errno ? errno : EIO, "%s: cannot write: %s", path,
				    strerror(errno ? errno : EIO));
	return 0;
}

int colo_replay_extract(const struct colo_recording *rec, uint64_t seq,
			const char *outdir, json_t **doc, struct colo_err *err)
{
	const struct colo_rec_entry *e;
	struct colo_image img;
	struct replay_vmdesc vc;
	json_t *d = json_object(), *devs = json_array(), *blocks = json_array();
	uint64_t ram_done = 0, ram_total = 0;
	char *path = NULL;
	int rc;

	*doc = NULL;
	replay_vmdesc_init(&vc, rec);
	rc = colo_replay_state(rec, seq, &img, &e, err);
	if (rc == 0) {
		json_object_set_new(d, "config", colo_dump_name_json(img.config));
		replay_put_entry_id(d, e);
		json_object_set_new(d, "recording", colo_dump_name_json(rec->dir));
	}
	json_object_set_new(d, "devices", devs);
	json_object_set_new(d, "blocks", blocks);
	json_object_set_new(d, "file_names", json_string(SAFE_NAME_RULE));
	for (size_t i = 0; rc == 0 && i < img.ndevs; i++) {
		json_t *o = replay_device_head(&img.devs[i]), *fields, *vm;

		json_array_append_new(devs, o);
		rc = replay_device_fields(&img, &img.devs[i], &fields, err);
		if (rc == 0)
			json_object_set_new(o, "fields", fields);
		if (rc == 0 && replay_is_vm(&img.devs[i]) &&
		    (rc = replay_vm_json(&vc, &img.devs[i], NULL, &vm, err)) == 0)
			json_object_set_new(o, "vm", vm);
	}
	if (rc == 0 && (rc = make_dir(outdir, err)) == 0) {
		path = colo_path_join(outdir, "ram");
		rc = path ? make_dir(path, err) : colo_err_set(err, ENOMEM, "out of memory");
		free(path);
	}
	for (size_t i = 0; i < img.nblocks; i++)
		ram_total += img.blocks[i].length;
	for (size_t i = 0; rc == 0 && i < img.nblocks; i++) {
		const struct colo_image_block *b = &img.blocks[i];
		json_t *o = json_object(), *taken = json_object();
		char file[COLO_IMAGE_NAME_MAX + 32];

		for (size_t k = 0; k < json_array_size(blocks); k++)
			json_object_set_new(taken, gets_(json_array_get(blocks, k), "file"),
					    json_true());
		safe_name(b->name, taken, file, sizeof(file));
		json_decref(taken);
		json_object_set_new(o, "name", colo_dump_name_json(b->name));
		json_object_set_new(o, "length", jint(b->length));
		json_object_set_new(o, "xxh3", jhex64(colo_image_block_hash(b)));
		json_object_set_new(o, "file", json_string(file));
		json_array_append_new(blocks, o);
		path = colo_path_join(outdir, file);
		rc = path ? write_block(rec, path, b, ram_done, ram_total, err) :
			    colo_err_set(err, ENOMEM, "out of memory");
		free(path);
		ram_done += b->length;
	}
	if (rc == 0 && rec->progress)
		rec->progress(rec->progress_ud, "writing blocks", ram_done, ram_total);
	if (rc == 0) {
		path = colo_path_join(outdir, "devices.json");
		rc = path ? write_json(path, d, err) : colo_err_set(err, ENOMEM, "out of memory");
		free(path);
	}
	colo_image_free(&img);
	replay_vmdesc_free(&vc);
	if (rc != 0) {
		json_decref(d);
		return rc;
	}
	*doc = d;
	return 0;
}

void colo_replay_extract_text(const json_t *d, const char *outdir, FILE *out)
{
	const json_t *blocks = json_object_get(d, "blocks");
	size_t ndevs = json_array_size(json_object_get(d, "devices"));

	fprintf(out, "checkpoint %" JSON_INTEGER_FORMAT " of %s (%s) extracted into %s\n",
		geti(d, "seq"), gets_(d, "recording"), gets_(d, "config"), outdir);
	for (size_t i = 0; i < json_array_size(blocks); i++) {
		const json_t *b = json_array_get(blocks, i);

		fprintf(out, "  %-28s %12" JSON_INTEGER_FORMAT " bytes  xxh3 %s  block '%s'\n",
			gets_(b, "file"), geti(b, "length"), gets_(b, "xxh3"), gets_(b, "name"));
	}
	fprintf(out, "  %-28s %zu %s\n", "devices.json", ndevs, plural(ndevs, "device",
									 "devices"));
}

/* ---- verify ---- */

/* Every device decodes through the vmdesc; a VM's blob splits into QEMU's
 * sections (which need not all decode: their sizes may have changed). */
static int check_devices(struct replay_vmdesc *vc, const struct colo_image *img,
			 const struct colo_rec_entry *x, struct colo_err *err)
{
	for (size_t i = 0; i < img->ndevs; i++) {
		struct colo_err why;
		json_t *fields, *vm = NULL;

		colo_err_clear(&why);
		if (replay_device_fields(img, &img->devs[i], &fields, &why) != 0 ||
		    (replay_is_vm(&img->devs[i]) &&
		     replay_vm_json(vc, &img->devs[i], NULL, &vm, &why) != 0))
			return replay_record_error(x, &why, false, err);
		json_decref(fields);
		json_decref(vm);
	}
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Segment files no entry refers to, sorted: {"file","bytes"}. */
static json_t *unreferenced(const struct colo_recording *rec)
{
	json_t *a = json_array();
	DIR *dir = opendir(rec->dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;

	if (!dir)
		return a;
	while ((de = readdir(dir)) != NULL) {
		unsigned v;
		int used = 0;
		bool known = false;
		char **nn;

		if (sscanf(de->d_name, "seg-%6u%n", &v, &used) != 1 || used != 10 ||
		    de->d_name[used])
			continue;
		for (size_t i = 0; i < rec->n && !known; i++)
			known = rec->e[i].segment == v;
		if (known || !(nn = realloc(names, (n + 1) * sizeof(*names))))
			continue;
		names = nn;
		if ((names[n] = strdup(de->d_name)) != NULL)
			n++;
	}
	closedir(dir);
	if (n)
		qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_object();
		char *p = colo_path_join(rec->dir, names[i]);
		struct stat st;

		json_object_set_new(o, "file", json_string(names[i]));
		json_object_set_new(o, "bytes", jint(p && stat(p, &st) == 0 ?
						     (uint64_t)st.st_size : 0));
		json_array_append_new(a, o);
		free(p);
		free(names[i]);
	}
	free(names);
	return a;
}

int colo_replay_verify(const struct colo_recording *rec, json_t **doc,
		       struct colo_err *err)
{
	json_t *d = json_object(), *problems = json_array();
	struct colo_image img;
	struct replay_vmdesc vc;
	uint64_t bytes = 0, keys = 0, segs = 0;
	size_t at = SIZE_MAX, done = 0;
	char buf[COLO_ERR_MAX + 64];
	uint64_t total = 0;
	int rc = 0;

	colo_image_init(&img);
	replay_vmdesc_init(&vc, rec);
	for (size_t i = 0; i < rec->n; i++)
		total += rec->e[i].length;
	for (size_t i = 0; i < rec->n && rc == 0; i++) {
		const struct colo_rec_entry *x = &rec->e[i];

		/* Records of a segment follow its keyframe in the index: each
		 * moves the state of the one before. */
		if (x->keyframe || (at != SIZE_MAX && at + 1 == i && rec->e[at].key == x->key)) {
			rc = replay_step(rec, i, &img, err);
		} else {
			colo_image_free(&img);
			rc = replay_state_at(rec, i, &img, err);
		}
		if (rc == 0)
			rc = check_devices(&vc, &img, x, err);
		if (rc != 0) {
			json_object_set_new(d, "failed_seq", jint(x->seq));
			break;
		}
		at = i;
		done++;
		bytes += x->length;
		if (rec->progress)
			rec->progress(rec->progress_ud, "verifying", bytes, total);
		keys += x->keyframe;
		segs += i == 0 || x->segment != rec->e[i - 1].segment;
	}
	colo_image_free(&img);
	replay_vmdesc_free(&vc);
	if (rec->torn_bytes)
		json_array_append_new(problems, colo_dump_name_json(rec->note));
	if (rec->unreachable) {
		if (rec->torn_bytes)
			snprintf(buf, sizeof(buf), "%zu index %s unreachable (bytes missing, or "
				 "no keyframe before them)", rec->unreachable,
				 plural(rec->unreachable, "entry", "entries"));
		else
			snprintf(buf, sizeof(buf), "%zu index %s unreachable; the first: %s",
				 rec->unreachable, plural(rec->unreachable, "entry", "entries"),
				 rec->note);
		json_array_append_new(problems, colo_dump_name_json(buf));
	}
	if (rc == 0 && json_array_size(problems))
		rc = colo_err_set(err, EINVAL, "%s", json_string_value(json_array_get(problems, 0)));
	json_object_set_new(d, "dir", colo_dump_name_json(rec->dir));
	json_object_set_new(d, "ok", json_boolean(rc == 0));
	if (rc != 0)
		json_object_set_new(d, "error", colo_dump_name_json(err->msg));
	json_object_set_new(d, "checkpoints", jint(done));
	json_object_set_new(d, "keyframes", jint(keys));
	json_object_set_new(d, "segments", jint(segs));
	json_object_set_new(d, "bytes", jint(bytes));
	json_object_set_new(d, "problems", problems);
	json_object_set_new(d, "unreferenced_segments", unreferenced(rec));
	*doc = d;
	return rc;
}

void colo_replay_verify_text(const json_t *d, FILE *out)
{
	const json_t *unref = json_object_get(d, "unreferenced_segments");
	json_int_t n = geti(d, "checkpoints"), segs = geti(d, "segments");

	/* A failed checkpoint is the one line on stderr. */
	if (json_object_get(d, "failed_seq"))
		return;
	fprintf(out, "%" JSON_INTEGER_FORMAT " %s in %" JSON_INTEGER_FORMAT " %s verified, %"
		JSON_INTEGER_FORMAT " bytes\n", n, plural((uint64_t)n, "checkpoint", "checkpoints"),
		segs, plural((uint64_t)segs, "segment", "segments"), geti(d, "bytes"));
	for (size_t i = 0; i < json_array_size(unref); i++) {
		const json_t *o = json_array_get(unref, i);

		fprintf(out, "note: %s (%" JSON_INTEGER_FORMAT " bytes) is not referenced by any "
			"readable index entry\n", gets_(o, "file"), geti(o, "bytes"));
	}
}
