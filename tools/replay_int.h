/*
 * replay_int.h: what the files of `colo-replay` on recordings share among
 * themselves (replay.h is the commands' side).
 *
 *   replay_state.c   rebuilding checkpoints record by record, page ranges
 *   replay_fields.c  devices decoded through the vmdesc, fields flattened
 *                    to paths, compared and printed
 *   replay.c         list, show and diff, and the pieces of documents the
 *                    commands share
 *   replay_files.c   extract and verify
 *   replay_vm.c      the qemu guest's device: QEMU's device sections in it,
 *                    decoded through QEMU's VMDESCRIPTION
 *   replay_serve.c   serve for a VM: a paused QEMU on a checkpoint
 *
 * Names, page counts and values print as dump prints them (dump.h).
 * Documents are jansson values the caller owns; nothing here is
 * thread-safe.
 */
#ifndef COLO_TOOLS_REPLAY_INT_H
#define COLO_TOOLS_REPLAY_INT_H

#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dump.h"
#include "replay.h"

/* ---- reading and writing documents ---- */

static inline const char *plural(uint64_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

static inline json_t *jint(uint64_t v)
{
	return json_integer((json_int_t)v);
}

static inline json_t *jhex64(uint64_t v)
{
	char b[24];

	snprintf(b, sizeof(b), "%016" PRIx64, v);
	return json_string(b);
}

static inline json_int_t geti(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static inline const char *gets_(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

/* seq, generation and time of an entry, for documents. */
void replay_put_entry_id(json_t *o, const struct colo_rec_entry *e);

/* ---- reaching a checkpoint (replay_state.c) ---- */

/* The index of the entry named seq; else an error naming what there is. */
int replay_find_entry(const struct colo_recording *rec, uint64_t seq, size_t *at,
		      struct colo_err *err);

/*
 * "checkpoint S (seg-N at offset O): why" for a failure of record x; O is
 * the bad byte when the image said where it is (decoded), else the
 * record's start.
 */
int replay_record_error(const struct colo_rec_entry *x, const struct colo_err *why,
			bool decoded, struct colo_err *err);

/* Move img by record i: a keyframe replaces it, a checkpoint is applied. */
int replay_step(const struct colo_recording *rec, size_t i, struct colo_image *img,
		struct colo_err *err);

/* The state at record `at`: its segment's keyframe and what follows; img
 * is initialised by the call. */
int replay_state_at(const struct colo_recording *rec, size_t at, struct colo_image *img,
		    struct colo_err *err);

/*
 * The states at records ia and ib (both initialised by the call, whatever
 * happens).  In one segment the later one is the earlier one moved
 * forward, which reads each record once.
 */
int replay_diff_states(const struct colo_recording *rec, size_t ia, size_t ib,
		       struct colo_image *a, struct colo_image *b, struct colo_err *err);

/* The pages set in bits as merged ranges {"start","end","pages"}, offsets
 * in the block, end inclusive; *count gets how many pages. */
json_t *replay_ranges_json(const uint64_t *bits, uint64_t npages, uint64_t *count);

/* Pages whose bytes differ between a and b (the first npages of each), as
 * a bitmap the caller frees; NULL when out of memory. */
uint64_t *replay_differing_pages(const struct colo_image_block *a,
				 const struct colo_image_block *b, uint64_t npages);

/* ---- devices and their fields (replay_fields.c) ---- */

const struct colo_image_device *replay_find_device(const struct colo_image *img,
						   const char *idstr, uint32_t instance);

/*
 * A device's payload as the vmdesc's tree of named, typed values; the qemu
 * guest's device with its own description (replay_vm_fields); a payload
 * whose size the vmdesc does not give (it changed since the vmdesc was
 * written) as a raw tree with a note.
 */
int replay_device_fields(const struct colo_image *img, const struct colo_image_device *d,
			 json_t **out, struct colo_err *err);

/* One decoded field {"name","type","size","offset","value"} (value stolen). */
json_t *replay_field_json(const char *name, const char *type, uint64_t size,
			  uint64_t offset, json_t *value);
/* Bytes as a hex string. */
json_t *replay_hex_json(const uint8_t *p, size_t n);
/* A tree of one raw field "(payload)" with a "note" saying why. */
json_t *replay_raw_tree(const char *idstr, uint32_t version, const uint8_t *p, size_t n,
			const char *note);

/* {"name","instance_id","version"} of a device. */
json_t *replay_device_head(const struct colo_image_device *d);

bool replay_same_payload(const struct colo_image_device *a,
			 const struct colo_image_device *b);

/* Append to changes the leaves of fa and fb that differ, arrays element
 * by element, as {"path","type","from","to"}; -ENOMEM. */
int replay_diff_fields(const json_t *fa, const json_t *fb, json_t *changes);

/* A value as dump prints it; NULL is "(absent)". */
void replay_print_value(const json_t *v, FILE *out);

/* Every leaf of a decoded device, one line each (a tree's note first). */
void replay_print_fields(const json_t *tree, int indent, FILE *out);

/* A copy of src's devices only (no RAM), for comparing with later states;
 * dst is initialised by the call. */
int replay_devices_copy(struct colo_image *dst, const struct colo_image *src,
			struct colo_err *err);

/* ---- VMs (replay_vm.c) ---- */

/* The qemu guest's device "qemu/vm", as the guest registers it. */
bool replay_is_vm(const struct colo_image_device *d);
const struct colo_image_device *replay_vm_device(const struct colo_image *img);

/* qemu/vm read with the guest's description; the caller frees with
 * replay_vm_free(). */
struct replay_vm {
	char machine[65];                /* QEMU's configuration name */
	uint32_t ram_section_id;         /* QEMU's id of its "ram" section */
	uint32_t version;
	uint8_t *blob;                   /* QEMU's device sections, then EOF */
	size_t blob_len;
	uint8_t *vmdesc;                 /* QEMU's VMDESCRIPTION: in a sync only */
	size_t vmdesc_len;
};
int replay_vm_parse(const struct colo_image_device *d, struct replay_vm *vm,
		    struct colo_err *err);
void replay_vm_free(struct replay_vm *vm);

/*
 * The plain migration stream QEMU loads for a VM's state (replay_serve.c):
 * header, configuration with QEMU's machine name, RAM under QEMU's id of
 * its RAM section (zero and raw pages), the VM's device sections, and
 * vmdesc (QEMU's description; NULL: an empty one) after the EOF.
 */
int replay_vm_stream(const struct colo_image *img, const struct replay_vm *vm,
		     const uint8_t *vmdesc, size_t vmdesc_len, struct colo_buf *out,
		     struct colo_err *err);

/* qemu/vm's own fields as a decoded tree (the blob is shown apart). */
json_t *replay_vm_fields(const struct replay_vm *vm);

/* Where QEMU's description comes from: the state, else sync-devices (read
 * once per command). */
struct replay_vmdesc {
	const struct colo_recording *rec;
	struct colo_vmdesc *sync, *own;
	bool tried;
	char why[COLO_ERR_MAX];          /* why sync has none */
};
void replay_vmdesc_init(struct replay_vmdesc *c, const struct colo_recording *rec);
void replay_vmdesc_free(struct replay_vmdesc *c);

/*
 * QEMU's device sections of vm's blob, in order: {"name", "instance_id",
 * "version", "section_id", "offset" (in the blob), "bytes", "xxh3",
 * "fields": TREE}; TREE is raw ("(payload)" in hex) with a "note" where
 * the description does not fit.  *source says whose description was used
 * (NULL: none, c->why says why).  An error when the blob does not split.
 */
int replay_vm_sections(struct replay_vmdesc *c, const struct replay_vm *vm,
		       json_t **out, const char **source, struct colo_err *err);
const json_t *replay_vm_find_section(const json_t *sections, const json_t *o);

/* {"machine", "ram_section_id", "blob_bytes", "vmdesc", ["vmdesc_note"],
 * "devices": sections each with "changed" (against prev's; null without
 * prev)}. */
int replay_vm_json(struct replay_vmdesc *c, const struct colo_image_device *d,
		   const struct colo_image_device *prev, json_t **out, struct colo_err *err);
void replay_vm_print(const json_t *vm, int indent, FILE *out);

#endif
