/*
 * vmstate.c: save and load of vmstate descriptions (see vmstate.h).
 *
 * The walk mirrors QEMU's migration/vmstate.c so that both sides agree on
 * every byte: fields in table order, element by element, then subsections
 * as `0x05 u8 len name be32 version payload`.  The vmdesc built alongside
 * follows QEMU 7.2's shape as observed in its migration files: per field
 * "name", then "array_len" (arrays whose elements all look alike: only the
 * first element is described) or "index" (one entry per element), "type",
 * "struct" for nested descriptions, and "size" = bytes written.
 */
#include "config.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmstate.h"
#include "stream.h"

/* ALLOC'd arrays carry their element count in front, so they can be freed
 * recursively even after the count field was overwritten by a load. */
struct alloc_hdr {
	size_t count;
	size_t elem;
} __attribute__((aligned(16)));

static void *alloc_array(size_t count, size_t elem)
{
	struct alloc_hdr *h;

	if (count == 0 || elem == 0)
		return NULL;
	h = calloc(1, sizeof(*h) + count * elem);
	if (!h)
		return NULL;
	h->count = count;
	h->elem = elem;
	return h + 1;
}

void *colo_vmstate_alloc(size_t count, size_t elem)
{
	if (elem && count > SIZE_MAX / 2 / elem)
		return NULL;
	return alloc_array(count, elem);
}

static size_t alloc_count(const void *p)
{
	return p ? ((const struct alloc_hdr *)p - 1)->count : 0;
}

static void free_array(void *p)
{
	if (p)
		free((struct alloc_hdr *)p - 1);
}

bool colo_vmstate_needed(const struct colo_vmstate_desc *vmsd, void *opaque)
{
	return !vmsd->needed || vmsd->needed(opaque);
}

static bool field_present(const struct colo_vmstate_field *f, void *opaque,
			  int version_id)
{
	if (f->field_exists)
		return f->field_exists(opaque, version_id);
	return f->version_id <= version_id;
}

#define NO_OFFSET COLO_VMSTATE_NO_OFFSET

/* " at offset N" for load errors, nothing for save errors. */
static const char *where(uint64_t at)
{
	static _Thread_local char buf[40];

	if (at == NO_OFFSET)
		return "";
	snprintf(buf, sizeof(buf), " at offset %" PRIu64, at);
	return buf;
}

/* Number of elements, from the table or from the count field. */
int colo_vmstate_field_count(const struct colo_vmstate_field *f, const void *opaque,
			     uint64_t *n, uint64_t at, struct colo_err *err)
{
	const uint8_t *cp = (const uint8_t *)opaque + f->num_offset;
	int64_t v;

	if (f->flags & COLO_VMS_ARRAY) {
		*n = (uint64_t)f->num;
		return 0;
	}
	if (f->flags & COLO_VMS_VARRAY_INT32) {
		int32_t c;

		memcpy(&c, cp, sizeof(c));
		v = c;
	} else if (f->flags & COLO_VMS_VARRAY_UINT32) {
		uint32_t c;

		memcpy(&c, cp, sizeof(c));
		v = c;
	} else if (f->flags & COLO_VMS_VARRAY_UINT16) {
		uint16_t c;

		memcpy(&c, cp, sizeof(c));
		v = c;
	} else if (f->flags & COLO_VMS_VARRAY_UINT8) {
		v = *cp;
	} else {
		*n = 1;
		return 0;
	}
	if (v < 0)
		return colo_err_set(err, EINVAL, "field '%s': element count %" PRId64
				    " is negative%s", f->name, v, where(at));
	if (f->cap && (uint64_t)v > f->cap)
		return colo_err_set(err, EINVAL, "field '%s': element count %" PRId64
				    " exceeds the %zu elements it can hold%s",
				    f->name, v, f->cap, where(at));
	*n = (uint64_t)v;
	return 0;
}

/* Bytes (bits for bitmaps) of one element. */
static int field_size(const struct colo_vmstate_field *f, const void *opaque,
		      uint64_t *size, uint64_t at, struct colo_err *err)
{
	uint32_t len;

	if (!(f->flags & COLO_VMS_VBUFFER)) {
		*size = f->size;
		return 0;
	}
	memcpy(&len, (const uint8_t *)opaque + f->size_offset, sizeof(len));
	if (f->cap && len > f->cap)
		return colo_err_set(err, EINVAL, "field '%s': length %" PRIu32
				    " exceeds the %zu bytes it can hold%s",
				    f->name, len, f->cap, where(at));
	*size = len;
	return 0;
}

/* Can all elements of this array share one vmdesc entry?  (QEMU's rule.) */
static bool can_compress(const struct colo_vmstate_field *f)
{
	if (f->field_exists)
		return false;
	if (f->flags & COLO_VMS_STRUCT) {
		for (const struct colo_vmstate_field *s = f->vmsd->fields; s->name; s++)
			if (!can_compress(s))
				return false;
		if (f->vmsd->subsections && f->vmsd->subsections[0])
			return false;
	}
	return true;
}

static int save_state(struct colo_buf *out, const struct colo_vmstate_desc *vmsd,
		      void *opaque, json_t *vmdesc, struct colo_err *err);

static int save_field(struct colo_buf *out, const struct colo_vmstate_field *f,
		      void *opaque, json_t *jfields, struct colo_err *err)
{
	uint8_t *base = (uint8_t *)opaque + f->offset;
	uint64_t n, size;
	bool compress = can_compress(f);
	json_t *jloop = jfields;
	int r;

	r = colo_vmstate_field_count(f, opaque, &n, NO_OFFSET, err);
	if (r == 0)
		r = field_size(f, opaque, &size, NO_OFFSET, err);
	if (r)
		return r;
	if (f->flags & COLO_VMS_POINTER) {
		base = *(uint8_t **)base;
		if (!base && n && size)
			return colo_err_set(err, EINVAL, "field '%s': NULL pointer "
					    "with %" PRIu64 " elements", f->name, n);
	}
	for (uint64_t i = 0; i < n; i++) {
		/* base is NULL only for an empty ALLOC array (size or n 0). */
		uint8_t *elem = base ? base + size * i : NULL;
		size_t start = out->len;
		json_t *jf = NULL, *js = NULL;

		if (jloop) {
			jf = json_object();
			json_object_set_new(jf, "name", json_string(f->name));
			if (n > 1) {
				if (compress)
					json_object_set_new(jf, "array_len",
							    json_integer((json_int_t)n));
				else
					json_object_set_new(jf, "index",
							    json_integer((json_int_t)i));
			}
			json_object_set_new(jf, "type", json_string(
				f->flags & COLO_VMS_STRUCT ? "struct" : f->info->name));
		}
		if (f->flags & COLO_VMS_STRUCT) {
			if (jf)
				js = json_object();
			r = save_state(out, f->vmsd, elem, js, err);
			if (jf)
				json_object_set_new(jf, "struct", js);
			if (r) {
				json_decref(jf);
				return r;
			}
		} else {
			f->info->put(out, elem, (size_t)size, f);
		}
		if (jf) {
			json_object_set_new(jf, "size",
					    json_integer((json_int_t)(out->len - start)));
			json_array_append_new(jloop, jf);
			if (compress)
				jloop = NULL;
		}
	}
	return 0;
}

static int save_subsections(struct colo_buf *out, const struct colo_vmstate_desc *vmsd,
			    void *opaque, json_t *vmdesc, struct colo_err *err)
{
	json_t *jsubs = NULL;

	for (const struct colo_vmstate_desc *const *sp = vmsd->subsections;
	     sp && *sp; sp++) {
		const struct colo_vmstate_desc *sub = *sp;
		size_t len = strlen(sub->name);
		json_t *js = NULL;
		int r;

		if (!colo_vmstate_needed(sub, opaque))
			continue;
		if (len > 255)
			return colo_err_set(err, EINVAL, "subsection name '%s' is "
					    "longer than 255 bytes", sub->name);
		if (vmdesc) {
			if (!jsubs) {
				jsubs = json_array();
				json_object_set_new(vmdesc, "subsections", jsubs);
			}
			js = json_object();
			json_array_append_new(jsubs, js);
		}
		colo_buf_put_u8(out, COLO_SEC_SUBSECTION);
		colo_buf_put_u8(out, (uint8_t)len);
		colo_buf_put(out, sub->name, len);
		colo_buf_put_be32(out, (uint32_t)sub->version_id);
		r = save_state(out, sub, opaque, js, err);
		if (r)
			return r;
	}
	return 0;
}

static int save_state(struct colo_buf *out, const struct colo_vmstate_desc *vmsd,
		      void *opaque, json_t *vmdesc, struct colo_err *err)
{
	json_t *jfields = NULL;
	int r;

	if (vmsd->pre_save) {
		r = vmsd->pre_save(opaque, err);
		if (r) {
			colo_err_set(err, EINVAL, "pre_save refused");
			colo_err_prefix(err, "%s", vmsd->name);
			return r < 0 ? r : -EINVAL;
		}
	}
	if (vmdesc) {
		json_object_set_new(vmdesc, "vmsd_name", json_string(vmsd->name));
		json_object_set_new(vmdesc, "version", json_integer(vmsd->version_id));
		jfields = json_array();
		json_object_set_new(vmdesc, "fields", jfields);
	}
	for (const struct colo_vmstate_field *f = vmsd->fields; f && f->name; f++) {
		if (!field_present(f, opaque, vmsd->version_id))
			continue;
		r = save_field(out, f, opaque, jfields, err);
		if (r) {
			colo_err_prefix(err, "%s", vmsd->name);
			return r;
		}
	}
	r = save_subsections(out, vmsd, opaque, vmdesc, err);
	if (r) {
		colo_err_prefix(err, "%s", vmsd->name);
		return r;
	}
	if (vmsd->post_save)
		vmsd->post_save(opaque);
	return 0;
}

int colo_vmstate_save(struct colo_buf *out, const struct colo_vmstate_desc *vmsd,
		      void *opaque, struct json_t *vmdesc, struct colo_err *err)
{
	int r = save_state(out, vmsd, opaque, vmdesc, err);

	if (r == 0 && !colo_buf_ok(out))
		return colo_err_set(err, ENOMEM, "%s: out of memory while saving",
				    vmsd->name);
	return r;
}

static void free_allocs(const struct colo_vmstate_desc *vmsd, void *opaque);

/* Free what one ALLOC'd or embedded struct array holds, recursively. */
static void free_struct_elems(const struct colo_vmstate_field *f, uint8_t *base,
			      uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		free_allocs(f->vmsd, base + f->size * i);
}

static void free_allocs(const struct colo_vmstate_desc *vmsd, void *opaque)
{
	for (const struct colo_vmstate_field *f = vmsd->fields; f && f->name; f++) {
		uint8_t **pp = (uint8_t **)((uint8_t *)opaque + f->offset);

		if ((f->flags & COLO_VMS_POINTER) && (f->flags & COLO_VMS_ALLOC)) {
			if (f->flags & COLO_VMS_STRUCT)
				free_struct_elems(f, *pp, alloc_count(*pp));
			free_array(*pp);
			*pp = NULL;
		} else if ((f->flags & COLO_VMS_STRUCT) && !(f->flags & COLO_VMS_POINTER)) {
			uint64_t n = 1;

			if (f->flags & COLO_VMS_ARRAY)
				n = (uint64_t)f->num;
			else if (f->flags & COLO_VMS_VARRAY_ANY)
				n = f->cap;
			free_struct_elems(f, (uint8_t *)pp, n);
		}
	}
	for (const struct colo_vmstate_desc *const *sp = vmsd->subsections;
	     sp && *sp; sp++)
		free_allocs(*sp, opaque);
}

void colo_vmstate_free_allocs(const struct colo_vmstate_desc *vmsd, void *opaque)
{
	free_allocs(vmsd, opaque);
}

static int load_state(struct colo_in *in, const struct colo_vmstate_desc *vmsd,
		      void *opaque, int version_id, struct colo_err *err);

/* Replace an ALLOC'd array by a zeroed one of n elements. */
static int realloc_field(struct colo_in *in, const struct colo_vmstate_field *f,
			 void *opaque, uint64_t n, uint64_t size,
			 struct colo_err *err)
{
	uint8_t **pp = (uint8_t **)((uint8_t *)opaque + f->offset);
	uint64_t avail = colo_in_avail(in);

	if (n && size > COLO_VMSTATE_ALLOC_MAX / n)
		return colo_err_set(err, EPROTO, "field '%s': %" PRIu64 " elements of %"
				    PRIu64 " bytes exceed the %u-byte allocation limit"
				    " at offset %" PRIu64, f->name, n, size,
				    COLO_VMSTATE_ALLOC_MAX, colo_in_offset(in));
	/* Every element of a plain type takes at least one byte on the wire. */
	if (in->final && !(f->flags & COLO_VMS_STRUCT) && n * (size ? 1 : 0) > avail)
		return colo_err_set(err, EPROTO, "field '%s': %" PRIu64 " elements "
				    "announced but only %" PRIu64 " bytes remain at offset %"
				    PRIu64, f->name, n, avail, colo_in_offset(in));
	if (*pp) {
		if (f->flags & COLO_VMS_STRUCT)
			free_struct_elems(f, *pp, alloc_count(*pp));
		free_array(*pp);
		*pp = NULL;
	}
	if (n && size) {
		*pp = alloc_array((size_t)n, (size_t)size);
		if (!*pp)
			return colo_err_set(err, ENOMEM, "field '%s': out of memory "
					    "for %" PRIu64 " elements", f->name, n);
	}
	return 0;
}

static int load_field(struct colo_in *in, const struct colo_vmstate_field *f,
		      void *opaque, struct colo_err *err)
{
	uint8_t *base = (uint8_t *)opaque + f->offset;
	uint64_t n, size;
	int r;

	r = colo_vmstate_field_count(f, opaque, &n, colo_in_offset(in), err);
	if (r == 0)
		r = field_size(f, opaque, &size, colo_in_offset(in), err);
	if (r)
		return r;
	if ((f->flags & COLO_VMS_POINTER) && (f->flags & COLO_VMS_ALLOC)) {
		uint64_t bytes = f->flags & COLO_VMS_VBUFFER ? 1 : size;

		r = realloc_field(in, f, opaque, f->flags & COLO_VMS_VBUFFER ? size : n,
				  bytes, err);
		if (r)
			return r;
	}
	if (f->flags & COLO_VMS_POINTER) {
		base = *(uint8_t **)base;
		if (!base && n && size)
			return colo_err_set(err, EINVAL, "field '%s': NULL pointer with "
					    "%" PRIu64 " elements", f->name, n);
	}
	for (uint64_t i = 0; i < n; i++) {
		/* base is NULL only for an empty ALLOC array (size or n 0). */
		uint8_t *elem = base ? base + size * i : NULL;

		if (f->flags & COLO_VMS_STRUCT)
			r = load_state(in, f->vmsd, elem, f->vmsd->version_id, err);
		else
			r = f->info->get(in, elem, (size_t)size, f, err);
		if (r)
			return r;
	}
	return 0;
}

static const struct colo_vmstate_desc *find_sub(const struct colo_vmstate_desc *vmsd,
						const uint8_t *name, size_t len)
{
	for (const struct colo_vmstate_desc *const *sp = vmsd->subsections;
	     sp && *sp; sp++)
		if (strlen((*sp)->name) == len && memcmp((*sp)->name, name, len) == 0)
			return *sp;
	return NULL;
}

static int load_subsections(struct colo_in *in, const struct colo_vmstate_desc *vmsd,
			    void *opaque, struct colo_err *err)
{
	size_t plen = strlen(vmsd->name);

	for (;;) {
		const struct colo_vmstate_desc *sub;
		uint8_t mark, len;
		uint32_t version;
		uint64_t at = colo_in_offset(in);
		int r;

		r = colo_in_peek(in, 0, &mark);
		if (r == -ENODATA)
			return 0;
		if (r)
			return r;
		if (mark != COLO_SEC_SUBSECTION)
			return 0;
		r = colo_in_peek(in, 1, &len);
		if (r == -ENODATA)
			return 0;
		if (r)
			return r;
		/* QEMU: a subsection name is "<parent name>/<something>". */
		if (len < plen + 1)
			return 0;
		if (colo_in_avail(in) < 2u + len) {
			if (in->final)
				return 0;
			return colo_in_short(in, 2u + len);
		}
		if (memcmp(in->p + in->pos + 2, vmsd->name, plen) != 0)
			return 0;
		sub = find_sub(vmsd, in->p + in->pos + 2, len);
		if (!sub)
			return colo_err_set(err, ENOENT, "unknown subsection '%.*s' "
					    "at offset %" PRIu64, (int)len,
					    (const char *)in->p + in->pos + 2, at);
		in->pos += 2u + len;
		r = colo_in_be32(in, &version);
		if (r)
			return r;
		if (version > INT32_MAX)
			return colo_err_set(err, EPROTO, "subsection '%s': version %"
					    PRIu32 " is out of range at offset %" PRIu64,
					    sub->name, version, at);
		r = load_state(in, sub, opaque, (int)version, err);
		if (r)
			return r;
	}
}

static int load_state(struct colo_in *in, const struct colo_vmstate_desc *vmsd,
		      void *opaque, int version_id, struct colo_err *err)
{
	int r;

	if (version_id > vmsd->version_id) {
		colo_err_set(err, EINVAL, "stream version %d is too new (local "
			     "version %d) at offset %" PRIu64, version_id,
			     vmsd->version_id, colo_in_offset(in));
		goto fail;
	}
	if (version_id < vmsd->minimum_version_id) {
		colo_err_set(err, EINVAL, "stream version %d is too old (local "
			     "minimum version %d) at offset %" PRIu64, version_id,
			     vmsd->minimum_version_id, colo_in_offset(in));
		goto fail;
	}
	if (vmsd->pre_load) {
		r = vmsd->pre_load(opaque, err);
		if (r) {
			colo_err_set(err, EINVAL, "pre_load refused");
			goto fail;
		}
	}
	for (const struct colo_vmstate_field *f = vmsd->fields; f && f->name; f++) {
		if (!field_present(f, opaque, version_id)) {
			if (f->flags & COLO_VMS_MUST_EXIST) {
				colo_err_set(err, EINVAL, "field '%s' must exist but "
					     "is absent in version %d at offset %" PRIu64,
					     f->name, version_id, colo_in_offset(in));
				goto fail;
			}
			continue;
		}
		r = load_field(in, f, opaque, err);
		if (r == -EAGAIN)
			return r;
		if (r)
			goto fail;
	}
	r = load_subsections(in, vmsd, opaque, err);
	if (r == -EAGAIN)
		return r;
	if (r)
		goto fail;
	if (vmsd->post_load) {
		r = vmsd->post_load(opaque, version_id, err);
		if (r) {
			colo_err_set(err, EINVAL, "post_load refused at offset %" PRIu64,
				     colo_in_offset(in));
			goto fail;
		}
	}
	return 0;
fail:
	colo_err_prefix(err, "%s", vmsd->name);
	return -err->code;
}

int colo_vmstate_load(struct colo_in *in, const struct colo_vmstate_desc *vmsd,
		      void *opaque, int version_id, struct colo_err *err)
{
	return load_state(in, vmsd, opaque, version_id, err);
}
