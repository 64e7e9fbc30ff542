/*
 * image_size.c: the size of a device payload from its bytes and its
 * vmstate description (colo_image_measure(), see image.h), for devices
 * whose payload changes size between checkpoints (counted arrays,
 * allocated buffers, optional subsections).
 *
 * The walk reads what colo_vmstate_load() reads, in the same order and
 * with the same version rules, but keeps nothing of the device: integer
 * fields (the counts and lengths later fields are sized by) are stored in
 * a zeroed scratch copy of the device's struct, at the offsets the
 * description gives, and every other field is skipped by its wire size.
 * Hooks are not run: they act on a real device.  A field_exists test
 * would need the device's real state, so a description with one is not
 * walked (the caller falls back to what it knew before).
 *
 * No state: thread-safe.  The scratch is allocated per call and freed.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "in.h"
#include "stream.h"

#define DEPTH_MAX 16

struct walk {
	struct colo_in in;
	struct colo_err *err;
};

static bool int_info(const struct colo_vmstate_info *i)
{
	return i == &colo_vmstate_info_uint8 || i == &colo_vmstate_info_uint16 ||
	       i == &colo_vmstate_info_uint32 || i == &colo_vmstate_info_uint64 ||
	       i == &colo_vmstate_info_int8 || i == &colo_vmstate_info_int16 ||
	       i == &colo_vmstate_info_int32 || i == &colo_vmstate_info_int64;
}

/* Bytes of one element on the wire (bitmaps: size is in bits). */
static uint64_t wire_size(const struct colo_vmstate_field *f, uint64_t size)
{
	if (f->info == &colo_vmstate_info_bitmap)
		return (size + 63) / 64 * 8;
	return size;
}

/* Does the description (or one inside it) have a field_exists test? */
static bool has_tests(const struct colo_vmstate_desc *vmsd, int depth)
{
	if (!vmsd || depth > DEPTH_MAX)
		return depth > DEPTH_MAX;
	for (const struct colo_vmstate_field *f = vmsd->fields; f && f->name; f++)
		if (f->field_exists ||
		    ((f->flags & COLO_VMS_STRUCT) && has_tests(f->vmsd, depth + 1)))
			return true;
	for (const struct colo_vmstate_desc *const *sp = vmsd->subsections; sp && *sp; sp++)
		if (has_tests(*sp, depth + 1))
			return true;
	return false;
}

static size_t max_sz(size_t a, size_t b)
{
	return a > b ? a : b;
}

/* How far into the device's struct the description reaches: the scratch. */
static size_t extent(const struct colo_vmstate_desc *vmsd, int depth)
{
	size_t end = 0;

	if (!vmsd || depth > DEPTH_MAX)
		return 0;
	for (const struct colo_vmstate_field *f = vmsd->fields; f && f->name; f++) {
		size_t n = f->flags & COLO_VMS_ARRAY ? (size_t)(f->num > 0 ? f->num : 0) :
			   f->flags & COLO_VMS_VARRAY_ANY ? f->cap : 1;
		size_t one = f->info == &colo_vmstate_info_bitmap ?
			     (f->size + 63) / 64 * 8 : f->size;

		if (f->flags & COLO_VMS_POINTER)
			end = max_sz(end, f->offset + sizeof(void *));
		else if (f->flags & COLO_VMS_VBUFFER)
			end = max_sz(end, f->offset + f->cap);
		else if (f->flags & COLO_VMS_STRUCT)
			end = max_sz(end, f->offset + (n ? n - 1 : 0) * f->size +
				     max_sz(f->size, extent(f->vmsd, depth + 1)));
		else
			end = max_sz(end, f->offset + n * one);
		if (f->flags & COLO_VMS_VARRAY_ANY)
			end = max_sz(end, f->num_offset + sizeof(uint32_t));
		if (f->flags & COLO_VMS_VBUFFER)
			end = max_sz(end, f->size_offset + sizeof(uint32_t));
	}
	for (const struct colo_vmstate_desc *const *sp = vmsd->subsections; sp && *sp; sp++)
		end = max_sz(end, extent(*sp, depth + 1));
	return end;
}

static int short_payload(struct walk *w, const char *what)
{
	return colo_err_set(w->err, EINVAL, "%s: the payload ends at offset %zu", what,
			    w->in.len);
}

static int walk_state(struct walk *w, const struct colo_vmstate_desc *vmsd, int version,
		      uint8_t *st, int depth);

static int walk_field(struct walk *w, const struct colo_vmstate_field *f, uint8_t *st,
		      int depth)
{
	uint64_t n = 0, size = f->size, total;
	int r;

	if ((r = colo_vmstate_field_count(f, st, &n, w->in.pos, w->err)) != 0)
		return r;
	if (f->flags & COLO_VMS_VBUFFER) {
		uint32_t len;

		memcpy(&len, st + f->size_offset, sizeof(len));
		if (f->cap && len > f->cap)
			return colo_err_set(w->err, EINVAL, "field '%s': length %" PRIu32
					    " exceeds its %zu bytes at offset %zu", f->name,
					    len, f->cap, w->in.pos);
		size = len;
	}
	/* What colo_vmstate_load() would refuse to allocate (and a count of
	 * empty structs that would take a long walk to reach nothing). */
	if ((f->flags & COLO_VMS_ALLOC) && n &&
	    (f->flags & COLO_VMS_VBUFFER ? size : n * f->size) > COLO_VMSTATE_ALLOC_MAX)
		return colo_err_set(w->err, EINVAL, "field '%s': %" PRIu64 " elements exceed "
				    "the allocation limit at offset %zu", f->name, n, w->in.pos);
	if (f->flags & COLO_VMS_STRUCT) {
		uint8_t *elem = NULL;
		size_t esz = max_sz(f->size, extent(f->vmsd, depth + 1));

		/* Elements behind a pointer get a scratch of their own. */
		if ((f->flags & COLO_VMS_POINTER) && n && !(elem = malloc(esz)))
			return colo_err_set(w->err, ENOMEM, "out of memory");
		for (uint64_t i = 0; i < n && r == 0; i++) {
			uint8_t *e = elem ? elem : st + f->offset + i * f->size;

			if (elem)
				memset(elem, 0, esz);
			r = walk_state(w, f->vmsd, f->vmsd->version_id, e, depth + 1);
		}
		free(elem);
		return r;
	}
	if (n && wire_size(f, size) > (w->in.len - w->in.pos) / n)
		return short_payload(w, f->name);
	total = n * wire_size(f, size);
	if (!(f->flags & (COLO_VMS_POINTER | COLO_VMS_VBUFFER)) && int_info(f->info)) {
		for (uint64_t i = 0; i < n; i++) {
			r = f->info->get(&w->in, st + f->offset + i * size, (size_t)size, f,
					 w->err);
			if (r)
				return r == -EAGAIN ? short_payload(w, f->name) : r;
		}
		return 0;
	}
	w->in.pos += (size_t)total;
	return 0;
}

static const struct colo_vmstate_desc *find_sub(const struct colo_vmstate_desc *vmsd,
						const uint8_t *name, size_t len)
{
	for (const struct colo_vmstate_desc *const *sp = vmsd->subsections; sp && *sp; sp++)
		if (strlen((*sp)->name) == len && memcmp((*sp)->name, name, len) == 0)
			return *sp;
	return NULL;
}

/* `0x05 u8 len name be32 version payload`, while the name is the parent's. */
static int walk_subsections(struct walk *w, const struct colo_vmstate_desc *vmsd,
			    uint8_t *st, int depth)
{
	size_t plen = strlen(vmsd->name);

	for (;;) {
		const struct colo_vmstate_desc *sub;
		size_t avail = w->in.len - w->in.pos, at = w->in.pos;
		const uint8_t *p = w->in.p + w->in.pos;
		uint32_t version;
		int r;

		if (avail < 2 || p[0] != COLO_SEC_SUBSECTION || p[1] < plen + 1 ||
		    avail < 2u + p[1] || memcmp(p + 2, vmsd->name, plen) != 0)
			return 0;
		sub = find_sub(vmsd, p + 2, p[1]);
		if (!sub)
			return colo_err_set(w->err, EINVAL, "unknown subsection '%.*s' at "
					    "offset %zu", (int)p[1], (const char *)p + 2, at);
		w->in.pos += 2u + p[1];
		if (colo_in_be32(&w->in, &version) != 0)
			return short_payload(w, sub->name);
		if (version > INT32_MAX)
			return colo_err_set(w->err, EINVAL, "subsection '%s': version %" PRIu32
					    " out of range at offset %zu", sub->name, version, at);
		r = walk_state(w, sub, (int)version, st, depth + 1);
		if (r)
			return r;
	}
}

static int walk_state(struct walk *w, const struct colo_vmstate_desc *vmsd, int version,
		      uint8_t *st, int depth)
{
	int r;

	if (depth > DEPTH_MAX)
		return colo_err_set(w->err, EINVAL, "'%s' nests deeper than %d", vmsd->name,
				    DEPTH_MAX);
	if (version > vmsd->version_id || version < vmsd->minimum_version_id)
		return colo_err_set(w->err, EINVAL, "'%s': version %d is not one of %d..%d",
				    vmsd->name, version, vmsd->minimum_version_id,
				    vmsd->version_id);
	for (const struct colo_vmstate_field *f = vmsd->fields; f && f->name; f++) {
		if (f->version_id > version) {
			if (f->flags & COLO_VMS_MUST_EXIST)
				return colo_err_set(w->err, EINVAL, "'%s': field '%s' must exist "
						    "but is absent in version %d", vmsd->name,
						    f->name, version);
			continue;
		}
		if ((r = walk_field(w, f, st, depth)) != 0)
			return r;
	}
	return walk_subsections(w, vmsd, st, depth);
}

int colo_image_measure(const struct colo_vmstate_desc *vmsd, int version,
		       const uint8_t *p, size_t avail, uint64_t *bytes, struct colo_err *err)
{
	struct walk w;
	uint8_t *st;
	int r;

	if (has_tests(vmsd, 0))
		return 1;
	st = calloc(1, extent(vmsd, 0) + sizeof(uint64_t));
	if (!st)
		return colo_err_set(err, ENOMEM, "out of memory");
	colo_in_init(&w.in, p, avail, 0, true);
	w.err = err;
	r = walk_state(&w, vmsd, version, st, 0);
	free(st);
	if (r)
		return r == -ENOMEM ? r : -EINVAL;
	*bytes = w.in.pos;
	return 0;
}
