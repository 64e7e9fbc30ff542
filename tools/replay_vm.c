/*
 * replay_vm.c: the qemu guest's device in a recording (see replay_int.h):
 * "qemu/vm" read with the guest's own description, its `blob` split into
 * QEMU's device sections, and each section decoded through QEMU's
 * VMDESCRIPTION.
 *
 * QEMU's description travels in the subsection qemu/vm/vmdesc of a full
 * sync only, so it is taken from the state itself when that is a sync,
 * else from the recording's sync-devices (the devices of its newest full
 * stream).  It describes the sections as they were at that sync: a
 * section whose size differs at another checkpoint (a subsection present
 * or not) is shown as its bytes with a note, not decoded.  Sections are
 * delimited by their footers (QEMU writes them for every machine type
 * since 2.4), trusting the description's size only where the footer is
 * found right after it.
 *
 * Documents are jansson values the caller owns.  Not thread-safe.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "in.h"
#include "qemu_int.h"
#include "replay_int.h"
#include "stream.h"
#include "vmdesc.h"

bool replay_is_vm(const struct colo_image_device *d)
{
	return d->instance_id == 0 && strcmp(d->idstr, COLO_QEMU_DEVICE) == 0;
}

const struct colo_image_device *replay_vm_device(const struct colo_image *img)
{
	for (size_t i = 0; i < img->ndevs; i++)
		if (replay_is_vm(&img->devs[i]))
			return &img->devs[i];
	return NULL;
}

/* ---- the device ---- */

int replay_vm_parse(const struct colo_image_device *d, struct replay_vm *vm,
		    struct colo_err *err)
{
	struct qemu_vm_dev dev;
	struct colo_in in;
	int r;

	memset(vm, 0, sizeof(*vm));
	memset(&dev, 0, sizeof(dev));
	if (d->version > INT32_MAX)
		return colo_err_set(err, EINVAL, "device '%s': version %" PRIu32 " out of range",
				    d->idstr, d->version);
	colo_in_init(&in, d->payload, d->len, 0, true);
	r = colo_vmstate_load(&in, &qemu_vm_vmsd, &dev, (int)d->version, err);
	if (r == 0 && in.pos != d->len)
		r = colo_err_set(err, EINVAL, "%zu bytes after its fields at offset %zu",
				 d->len - in.pos, in.pos);
	if (r) {
		colo_err_prefix(err, "device '%s'", d->idstr);
		colo_vmstate_free_allocs(&qemu_vm_vmsd, &dev);
		return r == -EAGAIN ? -EINVAL : r;
	}
	memcpy(vm->machine, dev.machine, sizeof(dev.machine));
	vm->machine[sizeof(dev.machine)] = '\0';
	vm->ram_section_id = dev.ram_section_id;
	vm->version = d->version;
	/* The copies below are plain malloc memory: the guest's are the
	 * loader's and go back to it. */
	vm->blob = malloc(dev.blob_len ? dev.blob_len : 1);
	vm->blob_len = dev.blob_len;
	if (vm->blob && dev.blob_len)
		memcpy(vm->blob, dev.blob, dev.blob_len);
	if (dev.vmdesc && dev.vmdesc_len) {
		vm->vmdesc = malloc(dev.vmdesc_len);
		vm->vmdesc_len = dev.vmdesc_len;
		if (vm->vmdesc)
			memcpy(vm->vmdesc, dev.vmdesc, dev.vmdesc_len);
	}
	colo_vmstate_free_allocs(&qemu_vm_vmsd, &dev);
	if (!vm->blob || (vm->vmdesc_len && !vm->vmdesc)) {
		replay_vm_free(vm);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	return 0;
}

void replay_vm_free(struct replay_vm *vm)
{
	free(vm->blob);
	free(vm->vmdesc);
	memset(vm, 0, sizeof(*vm));
}

#define field replay_field_json
#define hex_json replay_hex_json

/*
 * qemu/vm's own fields as a decoded tree: machine, ram_section_id,
 * blob_len (the blob itself is the sections, shown apart) and, in a sync,
 * the subsection's vmdesc_len.
 */
json_t *replay_vm_fields(const struct replay_vm *vm)
{
	json_t *t = json_object(), *fields = json_array();
	uint8_t machine[64] = { 0 };

	memcpy(machine, vm->machine, strlen(vm->machine));
	json_object_set_new(t, "vmsd_name", json_string(COLO_QEMU_DEVICE));
	json_object_set_new(t, "version", jint(vm->version));
	json_object_set_new(t, "fields", fields);
	json_array_append_new(fields, field("machine", "buffer", 64, 0,
					    hex_json(machine, sizeof(machine))));
	json_array_append_new(fields, field("ram_section_id", "uint32", 4, 64,
					    jint(vm->ram_section_id)));
	json_array_append_new(fields, field("blob_len", "uint32", 4, 68, jint(vm->blob_len)));
	if (vm->vmdesc) {
		json_t *sub = json_object(), *sf = json_array(), *subs = json_array();

		json_object_set_new(sub, "vmsd_name", json_string(COLO_QEMU_DEVICE "/vmdesc"));
		json_object_set_new(sub, "version", jint(1));
		json_object_set_new(sub, "fields", sf);
		json_array_append_new(sf, field("vmdesc_len", "uint32", 4, 72 + vm->blob_len + 6 +
						strlen(COLO_QEMU_DEVICE "/vmdesc"),
						jint(vm->vmdesc_len)));
		json_array_append_new(subs, sub);
		json_object_set_new(t, "subsections", subs);
	}
	return t;
}

/* ---- QEMU's description ---- */

void replay_vmdesc_init(struct replay_vmdesc *c, const struct colo_recording *rec)
{
	memset(c, 0, sizeof(*c));
	c->rec = rec;
}

void replay_vmdesc_free(struct replay_vmdesc *c)
{
	colo_vmdesc_free(c->sync);
	colo_vmdesc_free(c->own);
	memset(c, 0, sizeof(*c));
}

/* The sync-devices' description, read once. */
static const struct colo_vmdesc *sync_vmdesc(struct replay_vmdesc *c)
{
	const struct colo_image_device *d;
	struct colo_image img;
	struct replay_vm vm;
	struct colo_err err;

	if (c->tried)
		return c->sync;
	c->tried = true;
	colo_err_clear(&err);
	if (colo_recording_sync_devices(c->rec, &img, &err) != 0) {
		snprintf(c->why, sizeof(c->why), "%s", err.msg);
		return NULL;
	}
	d = replay_vm_device(&img);
	if (!d)
		snprintf(c->why, sizeof(c->why), COLO_REC_SYNC " holds no " COLO_QEMU_DEVICE);
	else if (replay_vm_parse(d, &vm, &err) != 0)
		snprintf(c->why, sizeof(c->why), COLO_REC_SYNC ": %.400s", err.msg);
	else if (!vm.vmdesc)
		snprintf(c->why, sizeof(c->why), COLO_REC_SYNC "'s " COLO_QEMU_DEVICE " has no "
			 "VMDESCRIPTION (the recording began with a snapshot of a "
			 "secondary)");
	else if (colo_vmdesc_parse((const char *)vm.vmdesc, vm.vmdesc_len, &c->sync, &err))
		snprintf(c->why, sizeof(c->why), COLO_REC_SYNC ": QEMU's VMDESCRIPTION: %.400s",
			 err.msg);
	if (d)
		replay_vm_free(&vm);
	colo_image_free(&img);
	return c->sync;
}

/* The description for vm: its own (a sync), else the recording's. */
static const struct colo_vmdesc *vmdesc_for(struct replay_vmdesc *c,
					    const struct replay_vm *vm, const char **source)
{
	struct colo_err err;

	if (vm->vmdesc) {
		colo_vmdesc_free(c->own);
		c->own = NULL;
		colo_err_clear(&err);
		if (colo_vmdesc_parse((const char *)vm->vmdesc, vm->vmdesc_len, &c->own,
				      &err) == 0) {
			*source = "this checkpoint (a full sync)";
			return c->own;
		}
	}
	*source = COLO_REC_SYNC;
	return sync_vmdesc(c);
}

/* ---- QEMU's device sections ---- */

/* Could a FULL section header start at p[0..len)? (idstr of printable bytes) */
static bool header_at(const uint8_t *p, size_t len)
{
	size_t n;

	if (len < 6 || p[0] != COLO_SEC_FULL)
		return false;
	n = p[5];
	if (n == 0 || len < 6 + n + 8)
		return false;
	for (size_t i = 0; i < n; i++)
		if (p[6 + i] < 0x20 || p[6 + i] > 0x7e)
			return false;
	return true;
}

/* Is there a footer of section id at p, followed by a section or the EOF
 * that ends the blob? */
static bool footer_at(const uint8_t *blob, size_t len, size_t p, uint32_t id)
{
	if (p + 5 >= len || blob[p] != COLO_SEC_FOOTER || colo_load_be32(blob + p + 1) != id)
		return false;
	return (blob[p + 5] == COLO_SEC_EOF && p + 6 == len) ||
	       header_at(blob + p + 5, len - p - 5);
}

/* A section's payload decoded through the description, or raw with a note. */
static json_t *section_tree(const struct colo_vmdesc *vd, const char *source,
			    const char *idstr, uint32_t instance, uint32_t version,
			    const uint8_t *p, size_t n)
{
	const struct colo_vmdesc_device *vdev = vd ? colo_vmdesc_find(vd, idstr, instance) : NULL;
	char note[COLO_ERR_MAX + 128];
	struct colo_err err;
	struct colo_in in;
	json_t *t = NULL;

	if (!vd) {
		/* why is said once, for the whole blob */
		snprintf(note, sizeof(note), "not decoded: no QEMU VMDESCRIPTION");
	} else if (!vdev) {
		snprintf(note, sizeof(note), "not decoded: not in QEMU's VMDESCRIPTION (of %s)",
			 source);
	} else if (vdev->desc.bytes != n) {
		snprintf(note, sizeof(note), "not decoded: %zu bytes, QEMU's VMDESCRIPTION (of "
			 "%s) describes %" PRIu64 " (a subsection present or not at this "
			 "checkpoint)", n, source, vdev->desc.bytes);
	} else {
		colo_err_clear(&err);
		colo_in_init(&in, p, n, 0, true);
		if (colo_vmdesc_decode(&vdev->desc, &in, &t, &err) == 0)
			return t;
		snprintf(note, sizeof(note), "not decoded: %s", err.msg);
	}
	return replay_raw_tree(idstr, version, p, n, note);
}

int replay_vm_sections(struct replay_vmdesc *c, const struct replay_vm *vm,
		       json_t **out, const char **source, struct colo_err *err)
{
	const struct colo_vmdesc *vd = vmdesc_for(c, vm, source);
	const char *src = *source;
	const uint8_t *b = vm->blob;
	size_t len = vm->blob_len, pos = 0;
	json_t *a = json_array();

	*out = NULL;
	while (pos < len && b[pos] != COLO_SEC_EOF) {
		const struct colo_vmdesc_device *vdev;
		char idstr[COLO_IDSTR_MAX + 1];
		uint32_t id, instance, version;
		size_t at = pos, ps, end = SIZE_MAX, n;
		json_t *o;

		if (!header_at(b + pos, len - pos)) {
			json_decref(a);
			return colo_err_set(err, EINVAL, COLO_QEMU_DEVICE ".blob: no device "
					    "section at offset %zu (byte 0x%02x)", pos, b[pos]);
		}
		id = colo_load_be32(b + pos + 1);
		n = b[pos + 5];
		memcpy(idstr, b + pos + 6, n);
		idstr[n] = '\0';
		instance = colo_load_be32(b + pos + 6 + n);
		version = colo_load_be32(b + pos + 10 + n);
		ps = pos + 14 + n;
		/* The description's size where its footer follows; else the footer. */
		vdev = vd ? colo_vmdesc_find(vd, idstr, instance) : NULL;
		if (vdev && vdev->desc.bytes <= len - ps &&
		    footer_at(b, len, ps + (size_t)vdev->desc.bytes, id))
			end = ps + (size_t)vdev->desc.bytes;
		for (size_t q = ps; end == SIZE_MAX && q + 6 <= len; q++)
			if (footer_at(b, len, q, id))
				end = q;
		if (end == SIZE_MAX) {
			json_decref(a);
			return colo_err_set(err, EINVAL, COLO_QEMU_DEVICE ".blob: section '%s' "
					    "(id %" PRIu32 ") at offset %zu: no footer ends it",
					    idstr, id, at);
		}
		o = json_object();
		json_object_set_new(o, "name", colo_dump_name_json(idstr));
		json_object_set_new(o, "instance_id", jint(instance));
		json_object_set_new(o, "version", jint(version));
		json_object_set_new(o, "section_id", jint(id));
		json_object_set_new(o, "offset", jint(at));
		json_object_set_new(o, "bytes", jint(end - ps));
		json_object_set_new(o, "xxh3", jhex64(XXH3_64bits(b + ps, end - ps)));
		json_object_set_new(o, "fields", section_tree(vd, src, idstr, instance, version,
							      b + ps, end - ps));
		json_array_append_new(a, o);
		pos = end + 5;
	}
	if (pos + 1 != len) {
		json_decref(a);
		return colo_err_set(err, EINVAL, COLO_QEMU_DEVICE ".blob: %s at offset %zu",
				    pos >= len ? "no EOF" : "bytes after the EOF", pos);
	}
	*source = vd ? src : NULL;
	*out = a;
	return 0;
}

/* The section of sections named like o, or NULL. */
const json_t *replay_vm_find_section(const json_t *sections, const json_t *o)
{
	for (size_t i = 0; i < json_array_size(sections); i++) {
		const json_t *s = json_array_get(sections, i);

		if (geti(s, "instance_id") == geti(o, "instance_id") &&
		    strcmp(gets_(s, "name"), gets_(o, "name")) == 0)
			return s;
	}
	return NULL;
}

int replay_vm_json(struct replay_vmdesc *c, const struct colo_image_device *d,
		   const struct colo_image_device *prev, json_t **out, struct colo_err *err)
{
	struct replay_vm vm, pvm;
	json_t *o, *secs, *psecs = NULL;
	const char *source = NULL, *psource;
	int r;

	*out = NULL;
	if ((r = replay_vm_parse(d, &vm, err)) != 0)
		return r;
	r = replay_vm_sections(c, &vm, &secs, &source, err);
	if (r == 0 && prev && replay_vm_parse(prev, &pvm, err) == 0) {
		/* what the state before had: the sections that changed are marked */
		if (replay_vm_sections(c, &pvm, &psecs, &psource, err) != 0)
			psecs = NULL;
		replay_vm_free(&pvm);
		colo_err_clear(err);
	}
	if (r == 0) {
		o = json_object();
		json_object_set_new(o, "machine", colo_dump_name_json(vm.machine));
		json_object_set_new(o, "ram_section_id", jint(vm.ram_section_id));
		json_object_set_new(o, "blob_bytes", jint(vm.blob_len));
		json_object_set_new(o, "vmdesc", source ? json_string(source) : json_null());
		if (!source)
			json_object_set_new(o, "vmdesc_note", colo_dump_name_json(c->why));
		for (size_t i = 0; i < json_array_size(secs); i++) {
			json_t *s = json_array_get(secs, i);
			const json_t *ps = psecs ? replay_vm_find_section(psecs, s) : NULL;

			json_object_set_new(s, "changed", !psecs ? json_null() :
					    json_boolean(!ps || strcmp(gets_(ps, "xxh3"),
								       gets_(s, "xxh3"))));
		}
		json_object_set_new(o, "devices", secs);
		*out = o;
	}
	json_decref(psecs);
	replay_vm_free(&vm);
	return r;
}

/* ---- text ---- */

void replay_vm_print(const json_t *vm, int indent, FILE *out)
{
	const json_t *secs = json_object_get(vm, "devices");
	const json_t *src = json_object_get(vm, "vmdesc");
	size_t n = json_array_size(secs);

	fprintf(out, "%*sVM %s: %zu QEMU device %s in blob, ", indent, "",
		gets_(vm, "machine"), n, plural(n, "section", "sections"));
	if (json_is_string(src))
		fprintf(out, "decoded with QEMU's VMDESCRIPTION of %s\n", json_string_value(src));
	else
		fprintf(out, "not decoded: %s\n", gets_(vm, "vmdesc_note"));
	for (size_t i = 0; i < n; i++) {
		const json_t *s = json_array_get(secs, i);
		const json_t *ch = json_object_get(s, "changed");

		fprintf(out, "%*s%s '%s' instance %" JSON_INTEGER_FORMAT " version %"
			JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT " bytes\n", indent, "",
			json_is_true(ch) ? "*" : " ", gets_(s, "name"), geti(s, "instance_id"),
			geti(s, "version"), geti(s, "bytes"));
		replay_print_fields(json_object_get(s, "fields"), indent + 4, out);
	}
}
