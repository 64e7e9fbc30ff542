/*
 * vmdesc.h: the VMDESCRIPTION JSON that ends a stream, read back and used
 * to decode device payloads without knowing the devices (DESIGN.md §3).
 *
 * The writer side is in vmstate.c / stream_writer.c (the JSON is built
 * while saving).  Here: locating the vmdesc at the end of a file, parsing
 * it into a checked tree, computing each device's payload size from it
 * (device payloads are not self-delimiting), and decoding a payload into a
 * JSON tree of named, typed values.
 *
 * Shape (QEMU 7.2): {"page_size": 4096, "devices": [{"name", "instance_id",
 * "vmsd_name", "version", "fields": [{"name", ["array_len" | "index"],
 * "type", ["struct": {vmsd_name, version, fields, [subsections]}], "size"}],
 * ["subsections": [{vmsd_name, version, fields, [subsections]}]]}]}.
 * A "tmp" field carries vmsd_name/version/fields inline.  A field's size is
 * the bytes of one element; for a struct it includes the struct's own
 * subsections; subsection headers at device level belong to no field.
 *
 * A struct colo_vmdesc owns all its strings; free with colo_vmdesc_free().
 */
#ifndef COLO_VMDESC_H
#define COLO_VMDESC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "in.h"

struct json_t;
struct colo_vmdesc_struct;

struct colo_vmdesc_field {
	char *name;
	char *type;
	uint64_t size;                   /* bytes of one element */
	uint64_t array_len;              /* elements described by this entry */
	int64_t index;                   /* -1 unless the entry has "index" */
	struct colo_vmdesc_struct *sub;  /* "struct", or a "tmp" description */
};

struct colo_vmdesc_struct {
	char *vmsd_name;
	int64_t version;
	struct colo_vmdesc_field *fields;
	size_t nfields;
	struct colo_vmdesc_struct *subs;
	size_t nsubs;
	uint64_t bytes;                  /* payload bytes incl. subsections */
};

struct colo_vmdesc_device {
	char *name;
	uint32_t instance_id;
	struct colo_vmdesc_struct desc;
};

struct colo_vmdesc {
	int64_t page_size;
	struct colo_vmdesc_device *devs;
	size_t ndevs;
};

/* Limits on what a vmdesc may describe. */
#define COLO_VMDESC_DEPTH_MAX 16
#define COLO_VMDESC_FIELD_MAX (256u << 20)

int colo_vmdesc_parse(const char *json, size_t len, struct colo_vmdesc **out,
		      struct colo_err *err);
void colo_vmdesc_free(struct colo_vmdesc *vd);
const struct colo_vmdesc_device *colo_vmdesc_find(const struct colo_vmdesc *vd,
						  const char *name, uint32_t instance_id);

/*
 * Find the VMDESCRIPTION record at the end of a whole stream: the one
 * `0x06 be32 len '{'...` whose length reaches exactly to the end or, when
 * bytes follow it, the last one ending in '}'.  Sets *at to the offset of
 * the 0x06 byte; -ENOENT if there is none.  The stream reader still checks
 * that it sits where the stream says.
 */
int colo_vmdesc_locate(const uint8_t *data, size_t len, size_t *at);

/*
 * Decode exactly desc->bytes bytes of a device payload (the caller checks
 * they are there).  *out gets a JSON array of {"name", "type", "size",
 * "value" | "elements" | "struct", ...}, subsections as an array under
 * "subsections" of the returned object: the result is an object
 * {"vmsd_name", "version", "fields": [...], "subsections": [...]}.
 */
int colo_vmdesc_decode(const struct colo_vmdesc_struct *desc, struct colo_in *in,
		       struct json_t **out, struct colo_err *err);

#endif
