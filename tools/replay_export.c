/*
 * replay_export.c: `colo-replay export DIR N -o FILE` (see replay.h): the
 * state at checkpoint N as a plain migration stream, with none of colo's
 * extensions (no COMMAND ENABLE_COLO, QEMU's page kinds only: zero and
 * raw), its vmdesc after the EOF.
 *
 * For a VM (the qemu guest) the stream is the VM's own, as QEMU writes
 * one: QEMU's machine name, QEMU's RAM section id, QEMU's device sections,
 * and QEMU's VMDESCRIPTION (the checkpoint's, if it is a sync, else the
 * one of the recording's newest sync; an empty one when the recording has
 * none), so `qemu-system-x86_64 <the VM's arguments> -incoming
 * 'exec:cat FILE'` loads it.  For colo's own guests it is their state as
 * colo writes a full stream, less the COLO parts, which colo-replay dump
 * (and colo_image_load_full) read.
 *
 * FILE is written whole under a temporary name (FILE.tmp) and renamed,
 * so that a reader never sees half of one.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"
#include "fs.h"
#include "replay_int.h"

/* QEMU's description for vm: its own (a sync), else the newest sync's. */
static int vm_vmdesc(const struct colo_recording *rec, const struct replay_vm *vm,
		     uint8_t **out, size_t *len, const char **source)
{
	const struct colo_image_device *d;
	struct colo_image img;
	struct replay_vm svm;
	struct colo_err err;

	*out = NULL;
	*len = 0;
	*source = "none (an empty one)";
	if (vm->vmdesc && vm->vmdesc_len) {
		*out = malloc(vm->vmdesc_len);
		if (!*out)
			return -ENOMEM;
		memcpy(*out, vm->vmdesc, vm->vmdesc_len);
		*len = vm->vmdesc_len;
		*source = "this checkpoint's (a full sync)";
		return 0;
	}
	colo_err_clear(&err);
	if (colo_recording_sync_devices(rec, &img, &err) != 0)
		return 0;
	d = replay_vm_device(&img);
	if (d && replay_vm_parse(d, &svm, &err) == 0) {
		if (svm.vmdesc && svm.vmdesc_len && (*out = malloc(svm.vmdesc_len))) {
			memcpy(*out, svm.vmdesc, svm.vmdesc_len);
			*len = svm.vmdesc_len;
			*source = "the recording's newest sync's";
		}
		replay_vm_free(&svm);
	}
	colo_image_free(&img);
	return 0;
}

/* colo_replace_file()'s progress, as the recording's. */
static void write_progress(void *ud, size_t done, size_t total)
{
	const struct colo_recording *rec = ud;

	rec->progress(rec->progress_ud, "writing the file", done, total);
}

/* path, whole: written under a temporary name, synced and renamed. */
static int write_whole(const struct colo_recording *rec, const char *path,
		       const struct colo_buf *b, struct colo_err *err)
{
	int e = -colo_replace_file(path, b->data, b->len, 0644,
				   rec->progress ? write_progress : NULL, (void *)rec);

	return e ? colo_err_set(err, e, "%s: cannot write: %s", path, strerror(e)) : 0;
}

int colo_replay_export(const struct colo_recording *rec, uint64_t seq, const char *path,
		       json_t **doc, struct colo_err *err)
{
	const struct colo_rec_entry *e;
	const struct colo_image_device *d;
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_image img;
	struct replay_vm vm;
	json_t *o;
	int r;

	*doc = NULL;
	r = colo_replay_state(rec, seq, &img, &e, err);
	if (r)
		return r;
	o = json_object();
	replay_put_entry_id(o, e);
	json_object_set_new(o, "recording", colo_dump_name_json(rec->dir));
	json_object_set_new(o, "file", colo_dump_name_json(path));
	d = replay_vm_device(&img);
	if (d && (r = replay_vm_parse(d, &vm, err)) == 0) {
		uint8_t *vd = NULL;
		size_t vdl = 0;
		const char *source;

		r = vm_vmdesc(rec, &vm, &vd, &vdl, &source);
		if (r)
			r = colo_err_set(err, -r, "out of memory");
		else
			r = replay_vm_stream(&img, &vm, vd, vdl, &out, err);
		json_object_set_new(o, "kind", json_string("vm"));
		json_object_set_new(o, "config", colo_dump_name_json(vm.machine));
		json_object_set_new(o, "vmdesc", json_string(source));
		free(vd);
		replay_vm_free(&vm);
	} else if (!d) {
		r = colo_image_save_plain(&img, &out, err);
		json_object_set_new(o, "kind", json_string("guest"));
		json_object_set_new(o, "config", colo_dump_name_json(img.config));
		json_object_set_new(o, "vmdesc", json_string(img.vmdesc_json ? "the guest's" :
							     "none"));
	}
	colo_image_free(&img);
	if (r == 0)
		r = write_whole(rec, path, &out, err);
	json_object_set_new(o, "bytes", json_integer((json_int_t)out.len));
	colo_buf_free(&out);
	if (r) {
		json_decref(o);
		return r;
	}
	*doc = o;
	return 0;
}

static const char *str(const json_t *doc, const char *key)
{
	const char *v = json_string_value(json_object_get(doc, key));

	return v ? v : "?";
}

void colo_replay_export_text(const json_t *doc, FILE *out)
{
	const char *kind = str(doc, "kind"), *file = str(doc, "file");

	fprintf(out, "checkpoint %" JSON_INTEGER_FORMAT " of %s written to %s: %"
		JSON_INTEGER_FORMAT " bytes, a plain migration stream of %s (vmdesc: %s)\n",
		json_integer_value(json_object_get(doc, "seq")),
		str(doc, "recording"), file, json_integer_value(json_object_get(doc, "bytes")),
		str(doc, "config"), str(doc, "vmdesc"));
	if (strcmp(kind, "vm") == 0)
		fprintf(out, "load it: qemu-system-x86_64 <the VM's arguments> -incoming "
			"'exec:cat %s'\n", file);
	else
		fprintf(out, "read it: colo-replay dump %s\n", file);
}
