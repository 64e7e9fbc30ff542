/*
 * record_index.c: what writing and reading a recording share (see
 * record_int.h): segment file names and the index file's entries, parsed
 * from its bytes.  Parsing allocates the entries (and their device names);
 * colo__rec_entry_free() releases one.  No state: thread-safe.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "colo.pb-c.h"
#include "fs.h"
#include "in.h"
#include "record_int.h"

char *colo__rec_seg_path(const char *dir, uint32_t seg)
{
	char name[32];

	snprintf(name, sizeof(name), COLO_REC_SEG_FMT, seg);
	return colo_path_join(dir, name);
}

void colo__rec_entry_free(struct colo_rec_entry *e)
{
	for (size_t i = 0; i < e->ndevices; i++)
		free(e->devices[i]);
	free(e->devices);
	free(e->device_bytes);
	memset(e, 0, sizeof(*e));
}

int colo__rec_segment_number(const char *name, uint32_t *seg)
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
	if (!pb->segment || colo__rec_segment_number(pb->segment, &e->segment) != 0)
		return -1;
	if (pb->length == 0 || pb->offset > UINT64_MAX - pb->length ||
	    (!pb->keyframe && pb->ram_length > pb->length) ||
	    (pb->n_device_bytes && pb->n_device_bytes != pb->n_devices))
		return -1;
	e->format = pb->format ? pb->format : 1;
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
				colo__rec_entry_free(e);
				return -1;
			}
			e->ndevices++;
		}
	}
	if (pb->n_device_bytes) {
		e->device_bytes = malloc(pb->n_device_bytes * sizeof(*e->device_bytes));
		if (!e->device_bytes) {
			colo__rec_entry_free(e);
			return -1;
		}
		memcpy(e->device_bytes, pb->device_bytes,
		       pb->n_device_bytes * sizeof(*e->device_bytes));
		e->ndevice_bytes = pb->n_device_bytes;
	}
	return 0;
}

/*
 * Parse an index file's bytes into entries.  Stops at the first entry that
 * is torn or does not decode: *good is the byte length of what parsed.
 */
int colo__rec_parse_index(const uint8_t *data, size_t len, struct colo_rec_entry **out,
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
				colo__rec_entry_free(&e);
				for (size_t i = 0; i < n; i++)
					colo__rec_entry_free(&v[i]);
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
