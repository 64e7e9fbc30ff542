/*
 * vmdesc.c: parse the VMDESCRIPTION JSON and decode device payloads with it
 * (see vmdesc.h).  The JSON comes from the stream, so it is checked like
 * any other input: types, ranges, depth, and that every struct's described
 * bytes add up to the size it claims.
 */
#include "config.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "stream.h"
#include "vmdesc.h"

#define BYTES_MAX (1ull << 40)      /* no device payload is near this */
#define ARRAY_LEN_MAX (1u << 24)

static void free_struct(struct colo_vmdesc_struct *s);

static void free_field(struct colo_vmdesc_field *f)
{
	free(f->name);
	free(f->type);
	if (f->sub) {
		free_struct(f->sub);
		free(f->sub);
	}
}

static void free_struct(struct colo_vmdesc_struct *s)
{
	for (size_t i = 0; i < s->nfields; i++)
		free_field(&s->fields[i]);
	free(s->fields);
	for (size_t i = 0; i < s->nsubs; i++)
		free_struct(&s->subs[i]);
	free(s->subs);
	free(s->vmsd_name);
	memset(s, 0, sizeof(*s));
}

void colo_vmdesc_free(struct colo_vmdesc *vd)
{
	if (!vd)
		return;
	for (size_t i = 0; i < vd->ndevs; i++) {
		free(vd->devs[i].name);
		free_struct(&vd->devs[i].desc);
	}
	free(vd->devs);
	free(vd);
}

static int get_string(json_t *o, const char *key, char **out, const char *path,
		      struct colo_err *err)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_string(v))
		return colo_err_set(err, EPROTO, "vmdesc: %s: \"%s\" is missing or not "
				    "a string", path, key);
	*out = strdup(json_string_value(v));
	if (!*out)
		return colo_err_set(err, ENOMEM, "out of memory");
	return 0;
}

static int get_int(json_t *o, const char *key, bool required, int64_t lo,
		   int64_t hi, int64_t *out, const char *path, struct colo_err *err)
{
	json_t *v = json_object_get(o, key);

	if (!v && !required)
		return 1;
	if (!json_is_integer(v))
		return colo_err_set(err, EPROTO, "vmdesc: %s: \"%s\" is missing or not "
				    "an integer", path, key);
	*out = json_integer_value(v);
	if (*out < lo || *out > hi)
		return colo_err_set(err, EPROTO, "vmdesc: %s: \"%s\" is %" PRId64
				    ", outside %" PRId64 "..%" PRId64, path, key,
				    *out, lo, hi);
	return 0;
}

static int parse_struct(json_t *o, struct colo_vmdesc_struct *s, int depth,
			const char *path, struct colo_err *err);

static int parse_field(json_t *o, struct colo_vmdesc_field *f, int depth,
		       const char *path, struct colo_err *err)
{
	char fpath[COLO_ERR_MAX];
	int64_t v;
	json_t *js;
	int r;

	f->index = -1;
	f->array_len = 1;
	if (!json_is_object(o))
		return colo_err_set(err, EPROTO, "vmdesc: %s: a field is not an object",
				    path);
	if ((r = get_string(o, "name", &f->name, path, err)))
		return r;
	snprintf(fpath, sizeof(fpath), "%s field '%s'", path, f->name);
	if ((r = get_string(o, "type", &f->type, fpath, err)))
		return r;
	if ((r = get_int(o, "size", true, 0, COLO_VMDESC_FIELD_MAX, &v, fpath, err)))
		return r;
	f->size = (uint64_t)v;
	r = get_int(o, "array_len", false, 1, ARRAY_LEN_MAX, &v, fpath, err);
	if (r < 0)
		return r;
	if (r == 0)
		f->array_len = (uint64_t)v;
	r = get_int(o, "index", false, 0, ARRAY_LEN_MAX, &v, fpath, err);
	if (r < 0)
		return r;
	if (r == 0)
		f->index = v;
	js = json_object_get(o, "struct");
	if (!js && strcmp(f->type, "tmp") == 0 && json_object_get(o, "fields"))
		js = o;   /* VMSTATE_WITH_TMP: the description sits inline */
	if (js) {
		if (depth >= COLO_VMDESC_DEPTH_MAX)
			return colo_err_set(err, EPROTO, "vmdesc: %s: structs nested "
					    "deeper than %d", fpath, COLO_VMDESC_DEPTH_MAX);
		f->sub = calloc(1, sizeof(*f->sub));
		if (!f->sub)
			return colo_err_set(err, ENOMEM, "out of memory");
		if ((r = parse_struct(js, f->sub, depth + 1, fpath, err)))
			return r;
		if (f->sub->bytes != f->size)
			return colo_err_set(err, EPROTO, "vmdesc: %s: size %" PRIu64
					    " but its description covers %" PRIu64
					    " bytes", fpath, f->size, f->sub->bytes);
	}
	return 0;
}

static int parse_struct(json_t *o, struct colo_vmdesc_struct *s, int depth,
			const char *path, struct colo_err *err)
{
	json_t *jf, *js;
	uint64_t bytes = 0;
	int64_t v;
	int r;

	if (!json_is_object(o))
		return colo_err_set(err, EPROTO, "vmdesc: %s: not an object", path);
	if (depth == 0 && !json_object_get(o, "vmsd_name") && json_object_get(o, "size")) {
		/* A device saved the old way (no vmstate description: QEMU's
		 * user networking, "slirp"): its entry names one buffer field
		 * and the payload's size; it is named after the device. */
		if ((r = get_string(o, "name", &s->vmsd_name, path, err)))
			return r;
		s->version = 0;
	} else {
		if ((r = get_string(o, "vmsd_name", &s->vmsd_name, path, err)))
			return r;
		if ((r = get_int(o, "version", true, 0, INT32_MAX, &v, path, err)))
			return r;
		s->version = v;
	}
	jf = json_object_get(o, "fields");
	if (!json_is_array(jf))
		return colo_err_set(err, EPROTO, "vmdesc: %s: \"fields\" is missing or "
				    "not an array", path);
	s->nfields = json_array_size(jf);
	s->fields = calloc(s->nfields ? s->nfields : 1, sizeof(*s->fields));
	if (!s->fields)
		return colo_err_set(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < s->nfields; i++) {
		struct colo_vmdesc_field *f = &s->fields[i];

		if ((r = parse_field(json_array_get(jf, i), f, depth, path, err)))
			return r;
		bytes += f->size * f->array_len;   /* each term < 2^52 */
		if (bytes > BYTES_MAX)
			return colo_err_set(err, EPROTO, "vmdesc: %s: fields add up to "
					    "more than %llu bytes", path, BYTES_MAX);
	}
	js = json_object_get(o, "subsections");
	if (js) {
		if (!json_is_array(js))
			return colo_err_set(err, EPROTO, "vmdesc: %s: \"subsections\" "
					    "is not an array", path);
		if (depth >= COLO_VMDESC_DEPTH_MAX)
			return colo_err_set(err, EPROTO, "vmdesc: %s: subsections nested "
					    "deeper than %d", path, COLO_VMDESC_DEPTH_MAX);
		s->nsubs = json_array_size(js);
		s->subs = calloc(s->nsubs ? s->nsubs : 1, sizeof(*s->subs));
		if (!s->subs)
			return colo_err_set(err, ENOMEM, "out of memory");
		for (size_t i = 0; i < s->nsubs; i++) {
			struct colo_vmdesc_struct *sub = &s->subs[i];
			char spath[COLO_ERR_MAX];

			snprintf(spath, sizeof(spath), "%s subsection %zu", path, i);
			if ((r = parse_struct(json_array_get(js, i), sub, depth + 1,
					      spath, err)))
				return r;
			if (strlen(sub->vmsd_name) > 255)
				return colo_err_set(err, EPROTO, "vmdesc: %s: name longer "
						    "than 255 bytes", spath);
			/* 0x05, u8 len, name, be32 version, payload */
			bytes += 6 + strlen(sub->vmsd_name) + sub->bytes;
			if (bytes > BYTES_MAX)
				return colo_err_set(err, EPROTO, "vmdesc: %s: more than "
						    "%llu bytes", path, BYTES_MAX);
		}
	}
	s->bytes = bytes;
	return 0;
}

int colo_vmdesc_parse(const char *json, size_t len, struct colo_vmdesc **out,
		      struct colo_err *err)
{
	struct colo_vmdesc *vd;
	json_error_t je;
	json_t *root, *jd;
	int64_t v;
	int r;

	*out = NULL;
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return colo_err_set(err, EPROTO, "vmdesc: invalid JSON at byte %d: %s",
				    je.position, je.text);
	vd = calloc(1, sizeof(*vd));
	if (!vd) {
		json_decref(root);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	if (!json_is_object(root)) {
		r = colo_err_set(err, EPROTO, "vmdesc: the top level is not an object");
		goto out;
	}
	if ((r = get_int(root, "page_size", true, 1, INT32_MAX, &v, "top level", err)))
		goto out;
	vd->page_size = v;
	jd = json_object_get(root, "devices");
	if (!json_is_array(jd)) {
		r = colo_err_set(err, EPROTO, "vmdesc: \"devices\" is missing or not an "
				 "array");
		goto out;
	}
	vd->ndevs = json_array_size(jd);
	vd->devs = calloc(vd->ndevs ? vd->ndevs : 1, sizeof(*vd->devs));
	if (!vd->devs) {
		r = colo_err_set(err, ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < vd->ndevs; i++) {
		struct colo_vmdesc_device *d = &vd->devs[i];
		json_t *jdev = json_array_get(jd, i);
		char path[COLO_ERR_MAX];

		snprintf(path, sizeof(path), "device %zu", i);
		if (!json_is_object(jdev)) {
			r = colo_err_set(err, EPROTO, "vmdesc: %s is not an object", path);
			goto out;
		}
		if ((r = get_string(jdev, "name", &d->name, path, err)))
			goto out;
		snprintf(path, sizeof(path), "device %zu '%s'", i, d->name);
		if ((r = get_int(jdev, "instance_id", true, 0, UINT32_MAX, &v, path, err)))
			goto out;
		d->instance_id = (uint32_t)v;
		if ((r = parse_struct(jdev, &d->desc, 0, path, err)))
			goto out;
	}
	r = 0;
out:
	json_decref(root);
	if (r)
		colo_vmdesc_free(vd);
	else
		*out = vd;
	return r;
}

const struct colo_vmdesc_device *colo_vmdesc_find(const struct colo_vmdesc *vd,
						  const char *name, uint32_t instance_id)
{
	for (size_t i = 0; vd && i < vd->ndevs; i++)
		if (vd->devs[i].instance_id == instance_id &&
		    strcmp(vd->devs[i].name, name) == 0)
			return &vd->devs[i];
	return NULL;
}

int colo_vmdesc_locate(const uint8_t *data, size_t len, size_t *at)
{
	size_t lo = len > COLO_VMDESC_MAX + 4096 ? len - COLO_VMDESC_MAX - 4096 : 0;

	if (len < 7)
		return -ENOENT;
	/*
	 * JSON text holds no 0x06 byte, so scanning from the end, the first
	 * record whose length reaches exactly to the end is the real one.
	 * Failing that (bytes after it), the last record that ends in '}'
	 * inside the file: the stream reader then reports what follows it.
	 */
	for (int exact = 1; exact >= 0; exact--) {
		for (size_t p = len - 6; p + 1 > lo; p--) {
			if (data[p] == COLO_SEC_VMDESC && data[p + 5] == '{') {
				uint64_t n = colo_load_be32(data + p + 1);

				if (exact ? n == len - p - 5
					  : (n >= 2 && n <= len - p - 5 &&
					     data[p + 5 + n - 1] == '}')) {
					*at = p;
					return 0;
				}
			}
			if (p == 0)
				break;
		}
	}
	return -ENOENT;
}

/* A value by its QEMU type name; raw bytes as hex where it is no number. */
static json_t *value_of(const char *type, const uint8_t *p, uint64_t size)
{
	bool is_signed = strncmp(type, "int", 3) == 0 || strcmp(type, "timer") == 0;
	bool is_unsigned = strncmp(type, "uint", 4) == 0;
	uint64_t u = 0;

	if (strcmp(type, "bool") == 0 && size == 1)
		return json_boolean(p[0] != 0);
	if (strcmp(type, "float64") == 0 && size == 8) {
		uint64_t bits = colo_load_be64(p);
		double d;

		memcpy(&d, &bits, sizeof(d));
		if (!isfinite(d))      /* JSON has no NaN or infinity */
			return json_string(isnan(d) ? "nan" : d > 0 ? "inf" : "-inf");
		return json_real(d);
	}
	if ((is_signed || is_unsigned) &&
	    (size == 1 || size == 2 || size == 4 || size == 8)) {
		for (uint64_t i = 0; i < size; i++)
			u = u << 8 | p[i];
		if (is_signed) {
			unsigned shift = (unsigned)(64 - size * 8);
			int64_t s = (int64_t)(u << shift) >> shift;

			return json_integer(s);
		}
		if (u > INT64_MAX) {
			char buf[24];

			snprintf(buf, sizeof(buf), "%" PRIu64, u);
			return json_string(buf);
		}
		return json_integer((json_int_t)u);
	}
	{
		static const char hex[] = "0123456789abcdef";
		char *s = malloc(size * 2 + 1);
		json_t *j;

		if (!s)
			return NULL;
		for (uint64_t i = 0; i < size; i++) {
			s[2 * i] = hex[p[i] >> 4];
			s[2 * i + 1] = hex[p[i] & 15];
		}
		s[size * 2] = '\0';
		j = json_string(s);
		free(s);
		return j;
	}
}

static int decode_struct(const struct colo_vmdesc_struct *s, struct colo_in *in,
			 json_t **out, struct colo_err *err);

static int ends_inside(struct colo_in *in, const char *what, const char *name,
		       struct colo_err *err)
{
	return colo_err_set(err, EPROTO, "device payload ends at offset %" PRIu64
			    " inside %s '%s' (the vmdesc describes more bytes)",
			    in->off + in->len, what, name);
}

static int decode_field(const struct colo_vmdesc_field *f, struct colo_in *in,
			json_t *fields, struct colo_err *err)
{
	json_t *jf = json_object(), *vals = NULL;
	int r = 0;

	json_array_append_new(fields, jf);
	json_object_set_new(jf, "name", json_string(f->name));
	if (f->index >= 0)
		json_object_set_new(jf, "index", json_integer(f->index));
	json_object_set_new(jf, "type", json_string(f->type));
	json_object_set_new(jf, "size", json_integer((json_int_t)f->size));
	json_object_set_new(jf, "offset", json_integer((json_int_t)colo_in_offset(in)));
	if (f->array_len > 1) {
		json_object_set_new(jf, "array_len", json_integer((json_int_t)f->array_len));
		vals = json_array();
		json_object_set_new(jf, "values", vals);
	}
	for (uint64_t k = 0; k < f->array_len; k++) {
		json_t *v = NULL;

		if (f->sub) {
			size_t start = in->pos;

			r = decode_struct(f->sub, in, &v, err);
			if (r == 0 && in->pos - start != f->size)
				r = colo_err_set(err, EPROTO, "field '%s' at offset %" PRIu64
						 " decoded to %zu bytes, its size is %"
						 PRIu64, f->name, in->off + start,
						 in->pos - start, f->size);
		} else {
			const uint8_t *p;

			r = colo_in_bytes(in, &p, (size_t)f->size);
			if (r == -EAGAIN)
				return ends_inside(in, "field", f->name, err);
			if (r == 0) {
				v = value_of(f->type, p, f->size);
				if (!v)
					r = colo_err_set(err, ENOMEM, "out of memory");
			}
		}
		if (r) {
			json_decref(v);
			return r;
		}
		if (vals)
			json_array_append_new(vals, v);
		else
			json_object_set_new(jf, "value", v);
	}
	return 0;
}

static int decode_struct(const struct colo_vmdesc_struct *s, struct colo_in *in,
			 json_t **out, struct colo_err *err)
{
	json_t *o = json_object(), *fields = json_array(), *subs = NULL;
	int r = 0;

	*out = o;
	json_object_set_new(o, "vmsd_name", json_string(s->vmsd_name));
	json_object_set_new(o, "version", json_integer(s->version));
	json_object_set_new(o, "fields", fields);
	for (size_t i = 0; i < s->nfields && r == 0; i++)
		r = decode_field(&s->fields[i], in, fields, err);
	if (r == 0 && s->nsubs) {
		subs = json_array();
		json_object_set_new(o, "subsections", subs);
	}
	for (size_t i = 0; i < s->nsubs && r == 0; i++) {
		const struct colo_vmdesc_struct *sub = &s->subs[i];
		uint64_t at = colo_in_offset(in);
		const uint8_t *name;
		uint8_t mark, len;
		uint32_t version;
		json_t *js;

		if ((r = colo_in_u8(in, &mark)) || (r = colo_in_u8(in, &len)) ||
		    (r = colo_in_bytes(in, &name, len)) ||
		    (r = colo_in_be32(in, &version))) {
			r = ends_inside(in, "subsection", sub->vmsd_name, err);
			break;
		}
		if (mark != COLO_SEC_SUBSECTION)
			r = colo_err_set(err, EPROTO, "expected subsection '%s' at offset %"
					 PRIu64 ", found byte 0x%02x", sub->vmsd_name,
					 at, mark);
		else if (len != strlen(sub->vmsd_name) ||
			 memcmp(name, sub->vmsd_name, len) != 0)
			r = colo_err_set(err, EPROTO, "expected subsection '%s' at offset %"
					 PRIu64 ", found '%.*s'", sub->vmsd_name, at,
					 (int)len, (const char *)name);
		if (r)
			break;
		r = decode_struct(sub, in, &js, err);
		json_object_set_new(js, "stream_version", json_integer(version));
		json_array_append_new(subs, js);
	}
	return r;
}

int colo_vmdesc_decode(const struct colo_vmdesc_struct *desc, struct colo_in *in,
		       struct json_t **out, struct colo_err *err)
{
	int r = decode_struct(desc, in, out, err);

	if (r) {
		json_decref(*out);
		*out = NULL;
	}
	return r;
}
