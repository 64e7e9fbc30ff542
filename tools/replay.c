/*
 * replay.c: `colo-replay` on recordings (see replay.h): list, show and
 * diff, and the pieces of documents every command uses.  States are
 * rebuilt in replay_state.c, devices decoded in replay_fields.c; extract
 * and verify are in replay_files.c.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "replay_int.h"

#define TEXT_RANGES_MAX 12       /* page ranges per block in text output */

/* ---- pieces of documents ---- */

/* "time" of a document: null (unknown, e.g. the initial sync's) is "-". */
static const char *time_of(const json_t *o)
{
	const char *s = json_string_value(json_object_get(o, "time"));

	return s ? s : "-";
}

/* UTC with milliseconds, as the logs write it; "-" when unknown. */
static void format_time(uint64_t ns, char *buf, size_t len)
{
	if (ns == 0 || colo_iso8601(ns, buf, len) == 0)
		snprintf(buf, len, "-");
}

static json_t *jtime(uint64_t ns)
{
	char b[64];

	if (ns == 0)
		return json_null();
	format_time(ns, b, sizeof(b));
	return json_string(b);
}

static json_t *jsegment(uint32_t seg)
{
	char b[32];

	snprintf(b, sizeof(b), COLO_REC_SEG_FMT, seg);
	return json_string(b);
}

/* seq, generation and time of an entry, for documents. */
void replay_put_entry_id(json_t *o, const struct colo_rec_entry *e)
{
	json_object_set_new(o, "seq", jint(e->seq));
	json_object_set_new(o, "generation", jint(e->generation));
	json_object_set_new(o, "wall_ns", jint(e->wall_ns));
	json_object_set_new(o, "time", jtime(e->wall_ns));
}

/* Where an entry's record is, for documents. */
static void put_record(json_t *o, const struct colo_rec_entry *e)
{
	json_object_set_new(o, "keyframe", json_boolean(e->keyframe));
	json_object_set_new(o, "segment", jsegment(e->segment));
	json_object_set_new(o, "offset", jint(e->offset));
	json_object_set_new(o, "bytes", jint(e->length));
	if (!e->keyframe)
		json_object_set_new(o, "ram_bytes", jint(e->ram_length));
}

/* Up to TEXT_RANGES_MAX ranges, three to a line. */
static void print_ranges(const json_t *ranges, int indent, FILE *out)
{
	size_t n = json_array_size(ranges);

	for (size_t i = 0; i < n && i < TEXT_RANGES_MAX; i++) {
		const json_t *r = json_array_get(ranges, i);
		json_int_t pages = geti(r, "pages");

		if (i % 3 == 0)
			fprintf(out, "%*s", indent, "");
		fprintf(out, "0x%llx-0x%llx (%" JSON_INTEGER_FORMAT " %s)%s",
			(unsigned long long)geti(r, "start"), (unsigned long long)geti(r, "end"),
			pages, plural((uint64_t)pages, "page", "pages"),
			i + 1 == n ? "\n" : i % 3 == 2 ? ",\n" : ", ");
	}
	if (n > TEXT_RANGES_MAX)
		fprintf(out, "%*s... %zu more ranges (--json lists them all)\n", indent, "",
			n - TEXT_RANGES_MAX);
}

/* ---- list ---- */

int colo_replay_list(const struct colo_recording *rec, json_t **doc, struct colo_err *err)
{
	json_t *d = json_object(), *rows = json_array();
	uint64_t bytes = 0, keyframes = 0, segments = 0;

	(void)err;
	json_object_set_new(d, "dir", colo_dump_name_json(rec->dir));
	for (size_t i = 0; i < rec->n; i++) {
		const struct colo_rec_entry *e = &rec->e[i];
		json_t *o = json_object(), *devs = json_array();

		replay_put_entry_id(o, e);
		put_record(o, e);
		json_object_set_new(o, "xxh3", jhex64(e->checksum));
		json_object_set_new(o, "pages", colo_dump_pages_json(e->pages));
		for (size_t k = 0; k < e->ndevices; k++)
			json_array_append_new(devs, colo_dump_name_json(e->devices[k]));
		json_object_set_new(o, "devices", devs);
		json_object_set_new(o, "format", jint(e->format));
		if (e->ndevice_bytes) {
			json_t *sizes = json_array();

			for (size_t k = 0; k < e->ndevice_bytes; k++)
				json_array_append_new(sizes, jint(e->device_bytes[k]));
			json_object_set_new(o, "device_bytes", sizes);
		} else {
			json_object_set_new(o, "device_bytes", json_null());
		}
		json_array_append_new(rows, o);
		bytes += e->length;
		keyframes += e->keyframe;
		segments += i == 0 || e->segment != rec->e[i - 1].segment;
	}
	json_object_set_new(d, "checkpoints", rows);
	json_object_set_new(d, "count", jint(rec->n));
	json_object_set_new(d, "keyframes", jint(keyframes));
	json_object_set_new(d, "segments", jint(segments));
	json_object_set_new(d, "bytes", jint(bytes));
	json_object_set_new(d, "torn_bytes", jint(rec->torn_bytes));
	json_object_set_new(d, "unreachable", jint(rec->unreachable));
	json_object_set_new(d, "note", rec->note[0] ? colo_dump_name_json(rec->note) : json_null());
	*doc = d;
	return 0;
}

static void print_notes(const json_t *d, FILE *out)
{
	json_int_t unreachable = geti(d, "unreachable");

	if (json_is_string(json_object_get(d, "note")))
		fprintf(out, "note: %s\n", gets_(d, "note"));
	if (unreachable)
		fprintf(out, "note: %" JSON_INTEGER_FORMAT " index %s left out (bytes "
			"missing, or no keyframe before them)\n", unreachable,
			plural((uint64_t)unreachable, "entry", "entries"));
}

void colo_replay_list_text(const json_t *d, FILE *out)
{
	const json_t *rows = json_object_get(d, "checkpoints");
	json_int_t n = geti(d, "count"), keys = geti(d, "keyframes");
	json_int_t segs = geti(d, "segments");

	fprintf(out, "%10s %5s  %-24s  %-20s %11s  %s\n", "SEQ", "GEN", "TIME",
		"K RECORD", "BYTES", "PAGES");
	for (size_t i = 0; i < json_array_size(rows); i++) {
		const json_t *o = json_array_get(rows, i);
		char rec[64];

		snprintf(rec, sizeof(rec), "%s %s@%" JSON_INTEGER_FORMAT,
			 json_is_true(json_object_get(o, "keyframe")) ? "K" : " ",
			 gets_(o, "segment"), geti(o, "offset"));
		fprintf(out, "%10" JSON_INTEGER_FORMAT " %5" JSON_INTEGER_FORMAT "  %-24s  "
			"%-20s %11" JSON_INTEGER_FORMAT "  ", geti(o, "seq"),
			geti(o, "generation"), time_of(o), rec, geti(o, "bytes"));
		colo_dump_print_pages(json_object_get(o, "pages"), "page", out);
		fputc('\n', out);
	}
	fprintf(out, "%" JSON_INTEGER_FORMAT " %s (%" JSON_INTEGER_FORMAT " %s) in %"
		JSON_INTEGER_FORMAT " %s, %" JSON_INTEGER_FORMAT " bytes\n", n,
		plural((uint64_t)n, "checkpoint", "checkpoints"), keys,
		plural((uint64_t)keys, "keyframe", "keyframes"), segs,
		plural((uint64_t)segs, "segment", "segments"), geti(d, "bytes"));
	print_notes(d, out);
}

/* ---- show ---- */

enum basis { BASIS_SENT, BASIS_COMPARED, BASIS_NONE };

static json_t *show_blocks(const struct colo_image *img, const struct colo_image *prev,
			   enum basis basis, struct colo_err *err)
{
	json_t *a = json_array();

	for (size_t i = 0; i < img->nblocks; i++) {
		const struct colo_image_block *b = &img->blocks[i];
		uint64_t npages = b->length / COLO_PAGE_SIZE, count = 0;
		json_t *o = json_object(), *ranges = NULL;

		json_object_set_new(o, "name", colo_dump_name_json(b->name));
		json_object_set_new(o, "length", jint(b->length));
		json_object_set_new(o, "xxh3", jhex64(colo_image_block_hash(b)));
		if (basis == BASIS_SENT && b->touched) {
			ranges = replay_ranges_json(b->touched, npages, &count);
		} else if (basis == BASIS_COMPARED) {
			const struct colo_image_block *pb = colo_image_block(prev, b->name);
			uint64_t *bits;

			if (pb && pb->length == b->length) {
				bits = replay_differing_pages(b, pb, npages);
			} else {
				/* new, or resized: every page counts as changed */
				bits = calloc(npages / 64 + 1, sizeof(*bits));
				for (uint64_t p = 0; bits && p < npages; p++)
					bits[p / 64] |= 1ull << (p % 64);
			}
			if (!bits) {
				json_decref(o);
				json_decref(a);
				colo_err_set(err, ENOMEM, "out of memory");
				return NULL;
			}
			ranges = replay_ranges_json(bits, npages, &count);
			free(bits);
		}
		if (ranges) {
			json_object_set_new(o, "pages_changed", jint(count));
			json_object_set_new(o, "ranges", ranges);
		} else {
			json_object_set_new(o, "pages_changed", json_null());
		}
		json_array_append_new(a, o);
	}
	return a;
}

/*
 * before: the devices of the state before (a checkpoint: what QEMU's
 * sections are compared with, since a VM sends them all every time).
 */
static json_t *show_devices(struct replay_vmdesc *vc, const struct colo_image *img,
			    const struct colo_image *prev, const struct colo_image *before,
			    enum basis basis, struct colo_err *err)
{
	json_t *a = json_array();

	for (size_t i = 0; i < img->ndevs; i++) {
		const struct colo_image_device *d = &img->devs[i];
		const struct colo_image_device *pd;
		json_t *o = replay_device_head(d), *fields, *vm;

		json_array_append_new(a, o);
		if (basis == BASIS_SENT) {
			json_object_set_new(o, "changed", json_boolean(d->touched));
		} else if (basis == BASIS_COMPARED) {
			pd = replay_find_device(prev, d->idstr, d->instance_id);
			json_object_set_new(o, "changed",
					    json_boolean(!pd || !replay_same_payload(d, pd)));
		} else {
			json_object_set_new(o, "changed", json_null());
		}
		if (replay_device_fields(img, d, &fields, err) != 0) {
			json_decref(a);
			return NULL;
		}
		json_object_set_new(o, "fields", fields);
		if (!replay_is_vm(d))
			continue;
		pd = basis == BASIS_SENT ? replay_vm_device(before) :
		     basis == BASIS_COMPARED ? replay_vm_device(prev) : NULL;
		if (replay_vm_json(vc, d, pd, &vm, err) != 0) {
			json_decref(a);
			return NULL;
		}
		json_object_set_new(o, "vm", vm);
	}
	return a;
}

int colo_replay_show(const struct colo_recording *rec, uint64_t seq, json_t **doc,
		     struct colo_err *err)
{
	struct colo_image img, prev, before;
	const struct colo_rec_entry *e;
	enum basis basis = BASIS_SENT;
	struct colo_err prev_err;
	struct replay_vmdesc vc;
	json_t *d = NULL, *blocks = NULL, *devs = NULL;
	size_t at;
	int rc;

	*doc = NULL;
	colo_image_init(&prev);
	colo_image_init(&before);
	if (replay_find_entry(rec, seq, &at, err) != 0)
		return -err->code;
	e = &rec->e[at];
	replay_vmdesc_init(&vc, rec);
	if (e->keyframe) {
		rc = replay_state_at(rec, at, &img, err);
	} else {
		/* The devices just before this checkpoint are kept for comparing. */
		rc = replay_state_at(rec, at - 1, &img, err);
		if (rc == 0)
			rc = replay_devices_copy(&before, &img, err);
		if (rc == 0)
			rc = replay_step(rec, at, &img, err);
	}
	colo_err_clear(&prev_err);
	if (rc == 0 && e->keyframe) {
		/* A keyframe carries everything: compare with the state before,
		 * if that can be had (it does not decide what this one is). */
		basis = BASIS_NONE;
		colo_image_free(&prev);
		if (at > 0 && replay_state_at(rec, at - 1, &prev, &prev_err) == 0)
			basis = BASIS_COMPARED;
	}
	if (rc == 0 && (blocks = show_blocks(&img, &prev, basis, err)) &&
	    (devs = show_devices(&vc, &img, &prev, &before, basis, err))) {
		d = json_object();
		json_object_set_new(d, "dir", colo_dump_name_json(rec->dir));
		replay_put_entry_id(d, e);
		json_object_set_new(d, "config", colo_dump_name_json(img.config));
		put_record(d, e);
		json_object_set_new(d, "keyframe_seq", jint(rec->e[e->key].seq));
		json_object_set_new(d, "checkpoints_applied", jint(at - e->key));
		json_object_set_new(d, "pages", colo_dump_pages_json(e->pages));
		json_object_set_new(d, "changes", json_string(basis == BASIS_SENT ? "sent" :
							      basis == BASIS_COMPARED ?
							      "compared" : "unknown"));
		if (basis == BASIS_COMPARED)
			json_object_set_new(d, "compared_with", jint(rec->e[at - 1].seq));
		if (colo_err_isset(&prev_err))
			json_object_set_new(d, "compare_error", colo_dump_name_json(prev_err.msg));
		json_object_set_new(d, "blocks", blocks);
		json_object_set_new(d, "devices", devs);
		blocks = devs = NULL;
	}
	json_decref(blocks);
	json_decref(devs);
	colo_image_free(&img);
	colo_image_free(&prev);
	colo_image_free(&before);
	replay_vmdesc_free(&vc);
	if (!d)
		return -(err->code ? err->code : ENOMEM);
	*doc = d;
	return 0;
}

void colo_replay_show_text(const json_t *d, FILE *out)
{
	const json_t *blocks = json_object_get(d, "blocks");
	const json_t *devs = json_object_get(d, "devices");
	const char *changes = gets_(d, "changes");
	json_int_t seq = geti(d, "seq"), applied = geti(d, "checkpoints_applied");
	bool key = json_is_true(json_object_get(d, "keyframe"));
	char since[96];

	if (strcmp(changes, "sent") == 0)
		snprintf(since, sizeof(since), "sent in checkpoint %" JSON_INTEGER_FORMAT, seq);
	else if (strcmp(changes, "compared") == 0)
		snprintf(since, sizeof(since), "changed since checkpoint %" JSON_INTEGER_FORMAT,
			 geti(d, "compared_with"));
	else if (json_object_get(d, "compare_error"))
		snprintf(since, sizeof(since), "changes unknown: the checkpoint before "
			 "cannot be rebuilt");
	else
		snprintf(since, sizeof(since), "changes unknown: the first keyframe");
	fprintf(out, "checkpoint %" JSON_INTEGER_FORMAT " of %s\n", seq, gets_(d, "dir"));
	fprintf(out, "  generation     %" JSON_INTEGER_FORMAT "\n", geti(d, "generation"));
	fprintf(out, "  time           %s\n", time_of(d));
	fprintf(out, "  record         %s at offset %" JSON_INTEGER_FORMAT ", %"
		JSON_INTEGER_FORMAT " bytes, ", gets_(d, "segment"), geti(d, "offset"),
		geti(d, "bytes"));
	if (key)
		fputs("keyframe\n", out);
	else
		fprintf(out, "checkpoint (RAM %" JSON_INTEGER_FORMAT " bytes); rebuilt from "
			"keyframe %" JSON_INTEGER_FORMAT " and %" JSON_INTEGER_FORMAT " %s\n",
			geti(d, "ram_bytes"), geti(d, "keyframe_seq"), applied,
			plural((uint64_t)applied, "checkpoint", "checkpoints"));
	fprintf(out, "  configuration  %s\n", gets_(d, "config"));
	fputs("  pages          ", out);
	colo_dump_print_pages(json_object_get(d, "pages"), "page", out);
	fputc('\n', out);
	fprintf(out, "RAM blocks (%s%s)\n", strcmp(changes, "unknown") ? "pages " : "", since);
	for (size_t i = 0; i < json_array_size(blocks); i++) {
		const json_t *b = json_array_get(blocks, i);
		const json_t *n = json_object_get(b, "pages_changed");

		fprintf(out, "  %-24s %12" JSON_INTEGER_FORMAT " bytes  xxh3 %s", gets_(b, "name"),
			geti(b, "length"), gets_(b, "xxh3"));
		if (json_is_integer(n))
			fprintf(out, "  %" JSON_INTEGER_FORMAT " %s", json_integer_value(n),
				plural((uint64_t)json_integer_value(n), "page", "pages"));
		fputc('\n', out);
		print_ranges(json_object_get(b, "ranges"), 4, out);
	}
	fprintf(out, "devices (%s%s)\n", strcmp(changes, "unknown") ? "* " : "", since);
	for (size_t i = 0; i < json_array_size(devs); i++) {
		const json_t *o = json_array_get(devs, i);

		fprintf(out, "  %s '%s' instance %" JSON_INTEGER_FORMAT " version %"
			JSON_INTEGER_FORMAT "\n",
			json_is_true(json_object_get(o, "changed")) ? "*" : " ", gets_(o, "name"),
			geti(o, "instance_id"), geti(o, "version"));
		replay_print_fields(json_object_get(o, "fields"), 6, out);
		if (json_object_get(o, "vm"))
			replay_vm_print(json_object_get(o, "vm"), 6, out);
	}
}

/* ---- diff ---- */

/* One side's VM sections: {"name", "instance_id", "only_in"} when so. */
static json_t *only_in(const json_t *s, const char *side)
{
	json_t *o = json_object();

	json_object_set_new(o, "name", json_string(gets_(s, "name")));
	json_object_set_new(o, "instance_id", jint((uint64_t)geti(s, "instance_id")));
	json_object_set_new(o, "only_in", json_string(side));
	return o;
}

/* QEMU's device sections that differ between two qemu/vm payloads. */
static int diff_vm(struct replay_vmdesc *vc, const struct colo_image_device *da,
		   const struct colo_image_device *db, json_t *o, struct colo_err *err)
{
	struct replay_vm va, vb;
	json_t *sa = NULL, *sb = NULL, *out;
	const char *src;
	int r;

	if ((r = replay_vm_parse(da, &va, err)) != 0)
		return r;
	if ((r = replay_vm_parse(db, &vb, err)) != 0) {
		replay_vm_free(&va);
		return r;
	}
	r = replay_vm_sections(vc, &va, &sa, &src, err);
	if (r == 0)
		r = replay_vm_sections(vc, &vb, &sb, &src, err);
	replay_vm_free(&va);
	replay_vm_free(&vb);
	out = json_array();
	json_object_set_new(o, "vm_devices", out);
	for (size_t i = 0; r == 0 && i < json_array_size(sa); i++) {
		const json_t *x = json_array_get(sa, i), *y = replay_vm_find_section(sb, x);
		json_t *c, *changes;

		if (!y) {
			json_array_append_new(out, only_in(x, "from"));
			continue;
		}
		if (strcmp(gets_(x, "xxh3"), gets_(y, "xxh3")) == 0)
			continue;
		c = json_object();
		json_object_set_new(c, "name", json_string(gets_(x, "name")));
		json_object_set_new(c, "instance_id", jint((uint64_t)geti(x, "instance_id")));
		json_object_set_new(c, "version_from", jint((uint64_t)geti(x, "version")));
		json_object_set_new(c, "version_to", jint((uint64_t)geti(y, "version")));
		changes = json_array();
		json_object_set_new(c, "fields", changes);
		json_array_append_new(out, c);
		if (replay_diff_fields(json_object_get(x, "fields"), json_object_get(y, "fields"),
				       changes) != 0)
			r = colo_err_set(err, ENOMEM, "out of memory");
	}
	for (size_t i = 0; r == 0 && i < json_array_size(sb); i++)
		if (!replay_vm_find_section(sa, json_array_get(sb, i)))
			json_array_append_new(out, only_in(json_array_get(sb, i), "to"));
	json_decref(sa);
	json_decref(sb);
	return r;
}

static int diff_devices(struct replay_vmdesc *vc, const struct colo_image *a,
			const struct colo_image *b, json_t *out, struct colo_err *err)
{
	for (size_t i = 0; i < a->ndevs; i++) {
		const struct colo_image_device *da = &a->devs[i];
		const struct colo_image_device *db = replay_find_device(b, da->idstr, da->instance_id);
		json_t *o, *fa = NULL, *fb = NULL, *changes;

		if (db && replay_same_payload(da, db))
			continue;
		o = json_object();
		json_object_set_new(o, "name", colo_dump_name_json(da->idstr));
		json_object_set_new(o, "instance_id", jint(da->instance_id));
		json_array_append_new(out, o);
		if (!db) {
			json_object_set_new(o, "only_in", json_string("from"));
			continue;
		}
		json_object_set_new(o, "version_from", jint(da->version));
		json_object_set_new(o, "version_to", jint(db->version));
		if (replay_device_fields(a, da, &fa, err) != 0 ||
		    replay_device_fields(b, db, &fb, err) != 0) {
			json_decref(fa);
			return -err->code;
		}
		changes = json_array();
		json_object_set_new(o, "fields", changes);
		if (replay_diff_fields(fa, fb, changes) != 0) {
			json_decref(fa);
			json_decref(fb);
			return colo_err_set(err, ENOMEM, "out of memory");
		}
		json_decref(fa);
		json_decref(fb);
		if (replay_is_vm(da) && diff_vm(vc, da, db, o, err) != 0)
			return -err->code;
	}
	for (size_t i = 0; i < b->ndevs; i++) {
		const struct colo_image_device *db = &b->devs[i];
		json_t *o;

		if (replay_find_device(a, db->idstr, db->instance_id))
			continue;
		o = json_object();
		json_object_set_new(o, "name", colo_dump_name_json(db->idstr));
		json_object_set_new(o, "instance_id", jint(db->instance_id));
		json_object_set_new(o, "only_in", json_string("to"));
		json_array_append_new(out, o);
	}
	return 0;
}

static int diff_blocks(const struct colo_image *a, const struct colo_image *b, json_t *out,
		       struct colo_err *err)
{
	for (size_t i = 0; i < a->nblocks; i++) {
		const struct colo_image_block *ba = &a->blocks[i];
		const struct colo_image_block *bb = colo_image_block(b, ba->name);
		uint64_t npages, count;
		uint64_t *bits;
		json_t *o = json_object(), *ranges;

		json_object_set_new(o, "name", colo_dump_name_json(ba->name));
		json_array_append_new(out, o);
		if (!bb) {
			json_object_set_new(o, "length", jint(ba->length));
			json_object_set_new(o, "only_in", json_string("from"));
			continue;
		}
		if (bb->length != ba->length) {
			json_object_set_new(o, "length_from", jint(ba->length));
			json_object_set_new(o, "length_to", jint(bb->length));
		} else {
			json_object_set_new(o, "length", jint(ba->length));
		}
		/* Resized blocks: the pages both have. */
		npages = (ba->length < bb->length ? ba->length : bb->length) / COLO_PAGE_SIZE;
		bits = replay_differing_pages(ba, bb, npages);
		if (!bits)
			return colo_err_set(err, ENOMEM, "out of memory");
		ranges = replay_ranges_json(bits, npages, &count);
		free(bits);
		json_object_set_new(o, "pages_differ", jint(count));
		json_object_set_new(o, "ranges", ranges);
		if (count == 0 && bb->length == ba->length)
			json_array_remove(out, json_array_size(out) - 1);
	}
	for (size_t i = 0; i < b->nblocks; i++) {
		json_t *o;

		if (colo_image_block(a, b->blocks[i].name))
			continue;
		o = json_object();
		json_object_set_new(o, "name", colo_dump_name_json(b->blocks[i].name));
		json_object_set_new(o, "length", jint(b->blocks[i].length));
		json_object_set_new(o, "only_in", json_string("to"));
		json_array_append_new(out, o);
	}
	return 0;
}

int colo_replay_diff(const struct colo_recording *rec, uint64_t from, uint64_t to,
		     json_t **doc, struct colo_err *err)
{
	struct colo_image a, b;
	struct replay_vmdesc vc;
	size_t ia, ib;
	json_t *d, *devs, *blocks, *o;
	int rc;

	*doc = NULL;
	if (replay_find_entry(rec, from, &ia, err) != 0 || replay_find_entry(rec, to, &ib, err) != 0)
		return -err->code;
	rc = replay_diff_states(rec, ia, ib, &a, &b, err);
	d = json_object();
	devs = json_array();
	blocks = json_array();
	json_object_set_new(d, "dir", colo_dump_name_json(rec->dir));
	o = json_object();
	replay_put_entry_id(o, &rec->e[ia]);
	json_object_set_new(o, "config", colo_dump_name_json(a.config));
	json_object_set_new(d, "from", o);
	o = json_object();
	replay_put_entry_id(o, &rec->e[ib]);
	json_object_set_new(o, "config", colo_dump_name_json(b.config));
	json_object_set_new(d, "to", o);
	json_object_set_new(d, "devices", devs);
	json_object_set_new(d, "blocks", blocks);
	replay_vmdesc_init(&vc, rec);
	if (rc == 0)
		rc = diff_devices(&vc, &a, &b, devs, err);
	replay_vmdesc_free(&vc);
	if (rc == 0)
		rc = diff_blocks(&a, &b, blocks, err);
	if (rc == 0)
		json_object_set_new(d, "identical", json_boolean(
			strcmp(a.config, b.config) == 0 && json_array_size(devs) == 0 &&
			json_array_size(blocks) == 0));
	colo_image_free(&a);
	colo_image_free(&b);
	if (rc != 0) {
		json_decref(d);
		return rc;
	}
	*doc = d;
	return 0;
}

static void print_changes(const json_t *fields, int indent, FILE *out)
{
	for (size_t k = 0; k < json_array_size(fields); k++) {
		const json_t *f = json_array_get(fields, k);
		const json_t *a = json_object_get(f, "from"), *b = json_object_get(f, "to");

		fprintf(out, "%*s%-32s %-14s ", indent, "", gets_(f, "path"), gets_(f, "type"));
		replay_print_value(json_is_null(a) ? NULL : a, out);
		fputs(" -> ", out);
		replay_print_value(json_is_null(b) ? NULL : b, out);
		fputc('\n', out);
	}
}

/* QEMU's sections of a VM that differ, each with its fields. */
/* One device of a diff: its heading line, then its changed fields (a VM's
 * QEMU devices nest under its qemu/vm device, indented further). */
static void print_device_change(const json_t *o, const char *head, int indent,
				json_int_t fs, json_int_t ts, FILE *out)
{
	const char *only = gets_(o, "only_in");
	const json_t *vm = json_object_get(o, "vm_devices");

	fprintf(out, "%*s%s'%s' instance %" JSON_INTEGER_FORMAT, indent - 2, "", head,
		gets_(o, "name"), geti(o, "instance_id"));
	if (*only) {
		fprintf(out, ": only in %" JSON_INTEGER_FORMAT "\n",
			strcmp(only, "from") == 0 ? fs : ts);
		return;
	}
	if (geti(o, "version_from") != geti(o, "version_to"))
		fprintf(out, " version %" JSON_INTEGER_FORMAT " -> %" JSON_INTEGER_FORMAT,
			geti(o, "version_from"), geti(o, "version_to"));
	fputc('\n', out);
	print_changes(json_object_get(o, "fields"), indent, out);
	for (size_t i = 0; i < json_array_size(vm); i++)
		print_device_change(json_array_get(vm, i), "VM device ", indent + 2, fs, ts,
				    out);
}

void colo_replay_diff_text(const json_t *d, FILE *out)
{
	const json_t *from = json_object_get(d, "from"), *to = json_object_get(d, "to");
	const json_t *devs = json_object_get(d, "devices");
	const json_t *blocks = json_object_get(d, "blocks");
	json_int_t fs = geti(from, "seq"), ts = geti(to, "seq");

	fprintf(out, "checkpoint %" JSON_INTEGER_FORMAT " -> %" JSON_INTEGER_FORMAT " of %s\n",
		fs, ts, gets_(d, "dir"));
	if (strcmp(gets_(from, "config"), gets_(to, "config")) != 0)
		fprintf(out, "configuration  %s -> %s\n", gets_(from, "config"),
			gets_(to, "config"));
	if (json_is_true(json_object_get(d, "identical"))) {
		fputs("no differences\n", out);
		return;
	}
	fputs("devices", out);
	fputs(json_array_size(devs) ? "\n" : ": no field differs\n", out);
	for (size_t i = 0; i < json_array_size(devs); i++)
		print_device_change(json_array_get(devs, i), "", 4, fs, ts, out);
	fputs("RAM blocks", out);
	fputs(json_array_size(blocks) ? "\n" : ": no page differs\n", out);
	for (size_t i = 0; i < json_array_size(blocks); i++) {
		const json_t *o = json_array_get(blocks, i);
		const char *only = gets_(o, "only_in");
		json_int_t pages = geti(o, "pages_differ");

		fprintf(out, "  %-24s ", gets_(o, "name"));
		if (*only) {
			fprintf(out, "%12" JSON_INTEGER_FORMAT " bytes, only in %" JSON_INTEGER_FORMAT
				"\n", geti(o, "length"), strcmp(only, "from") == 0 ? fs : ts);
			continue;
		}
		if (json_object_get(o, "length_from"))
			fprintf(out, "%" JSON_INTEGER_FORMAT " -> %" JSON_INTEGER_FORMAT " bytes, ",
				geti(o, "length_from"), geti(o, "length_to"));
		else
			fprintf(out, "%12" JSON_INTEGER_FORMAT " bytes  ", geti(o, "length"));
		fprintf(out, "%" JSON_INTEGER_FORMAT " %s differ\n", pages,
			plural((uint64_t)pages, "page", "pages"));
		print_ranges(json_object_get(o, "ranges"), 4, out);
	}
}
