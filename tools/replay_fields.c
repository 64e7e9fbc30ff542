/*
 * replay_fields.c: devices of a rebuilt state decoded through the vmdesc,
 * and their fields compared and printed (see replay_int.h).
 *
 * Device fields are compared and printed flattened to paths
 * ("counters[2].value", "demo/stats.hits" for a subsection's field); the
 * JSON keeps the tree colo_vmdesc_decode() makes.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "in.h"
#include "replay_int.h"
#include "vmdesc.h"

/* ---- devices ---- */

const struct colo_image_device *replay_find_device(const struct colo_image *img,
						   const char *idstr, uint32_t instance)
{
	for (size_t i = 0; i < img->ndevs; i++)
		if (img->devs[i].instance_id == instance && strcmp(img->devs[i].idstr, idstr) == 0)
			return &img->devs[i];
	return NULL;
}

json_t *replay_field_json(const char *name, const char *type, uint64_t size,
			  uint64_t offset, json_t *value)
{
	json_t *f = json_object();

	json_object_set_new(f, "name", json_string(name));
	json_object_set_new(f, "type", json_string(type));
	json_object_set_new(f, "size", jint(size));
	json_object_set_new(f, "offset", jint(offset));
	json_object_set_new(f, "value", value);
	return f;
}

json_t *replay_hex_json(const uint8_t *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	char *s = malloc(2 * n + 1);
	json_t *j;

	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		s[2 * i] = hex[p[i] >> 4];
		s[2 * i + 1] = hex[p[i] & 15];
	}
	s[2 * n] = '\0';
	j = json_string(s);
	free(s);
	return j;
}

json_t *replay_raw_tree(const char *idstr, uint32_t version, const uint8_t *p, size_t n,
			const char *note)
{
	json_t *t = json_object(), *fields = json_array();

	json_object_set_new(t, "vmsd_name", colo_dump_name_json(idstr));
	json_object_set_new(t, "version", jint(version));
	json_object_set_new(t, "fields", fields);
	json_array_append_new(fields, replay_field_json("(payload)", "raw", n, 0,
							replay_hex_json(p, n)));
	json_object_set_new(t, "note", json_string(note));
	return t;
}

/* A device's payload as the vmdesc's tree of named, typed values. */
int replay_device_fields(const struct colo_image *img, const struct colo_image_device *d,
			 json_t **out, struct colo_err *err)
{
	const struct colo_vmdesc_device *vd;
	struct colo_in in;

	*out = NULL;
	if (replay_is_vm(d)) {
		struct replay_vm vm;

		if (replay_vm_parse(d, &vm, err) != 0)
			return -err->code;
		*out = replay_vm_fields(&vm);
		replay_vm_free(&vm);
		return 0;
	}
	vd = img->vmdesc ? colo_vmdesc_find(img->vmdesc, d->idstr, d->instance_id) : NULL;
	if (!vd)
		return colo_err_set(err, EPROTO, "device '%s' instance %" PRIu32 " has no "
				    "entry in the vmdesc", d->idstr, d->instance_id);
	if (vd->desc.bytes != d->len) {
		char note[160];

		/* Sized by the recording's index: its size changed since the
		 * vmdesc was written, which describes it no more. */
		snprintf(note, sizeof(note), "not decoded: %zu bytes, the vmdesc (of the "
			 "full sync) describes %" PRIu64, d->len, vd->desc.bytes);
		*out = replay_raw_tree(d->idstr, d->version, d->payload, d->len, note);
		return 0;
	}
	colo_in_init(&in, d->payload, d->len, 0, true);
	if (colo_vmdesc_decode(&vd->desc, &in, out, err) != 0) {
		colo_err_prefix(err, "device '%s' instance %" PRIu32, d->idstr, d->instance_id);
		return -err->code;
	}
	return 0;
}

json_t *replay_device_head(const struct colo_image_device *d)
{
	json_t *o = json_object();

	json_object_set_new(o, "name", colo_dump_name_json(d->idstr));
	json_object_set_new(o, "instance_id", jint(d->instance_id));
	json_object_set_new(o, "version", jint(d->version));
	return o;
}

bool replay_same_payload(const struct colo_image_device *a,
			 const struct colo_image_device *b)
{
	return a->version == b->version && a->len == b->len &&
	       (a->len == 0 || memcmp(a->payload, b->payload, a->len) == 0);
}

/* Flattened fields: one leaf per scalar, or per array of scalars. */
struct leaf {
	char *path;
	const char *type;
	const json_t *value;
};

struct leaves {
	struct leaf *v;
	size_t n, cap;
	json_t *paths;          /* path -> times seen */
};

static void leaves_free(struct leaves *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].path);
	free(l->v);
	json_decref(l->paths);
	memset(l, 0, sizeof(*l));
}

static char *path_of(const char *prefix, const char *name, json_int_t index, bool indexed)
{
	size_t n = strlen(prefix) + strlen(name) + 32;
	char *p = malloc(n);

	if (!p)
		return NULL;
	if (indexed)
		snprintf(p, n, "%s%s[%" JSON_INTEGER_FORMAT "]", prefix, name, index);
	else
		snprintf(p, n, "%s%s", prefix, name);
	return p;
}

static int leaf_add(struct leaves *l, char *path, const char *type, const json_t *value)
{
	json_int_t seen;

	if (!path)
		return -ENOMEM;
	/* A name twice in one struct (QEMU's "unused" fields): the second is
	 * path#2, and so on, in both trees alike. */
	if (!l->paths && !(l->paths = json_object())) {
		free(path);
		return -ENOMEM;
	}
	seen = json_integer_value(json_object_get(l->paths, path));
	json_object_set_new(l->paths, path, json_integer(seen + 1));
	if (seen) {
		size_t n = strlen(path) + 24;
		char *p = malloc(n);

		if (!p) {
			free(path);
			return -ENOMEM;
		}
		snprintf(p, n, "%s#%" JSON_INTEGER_FORMAT, path, seen + 1);
		free(path);
		path = p;
	}
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 32;
		struct leaf *nv = realloc(l->v, nc * sizeof(*nv));

		if (!nv) {
			free(path);
			return -ENOMEM;
		}
		l->v = nv;
		l->cap = nc;
	}
	l->v[l->n++] = (struct leaf){ path, type, value };
	return 0;
}

static int flatten(const json_t *s, const char *prefix, struct leaves *l);

/* path + "." as the prefix of a struct's fields */
static int flatten_sub(const json_t *s, char *path, struct leaves *l)
{
	size_t n;
	char *p;
	int r;

	if (!path)
		return -ENOMEM;
	n = strlen(path) + 2;
	p = malloc(n);
	if (!p) {
		free(path);
		return -ENOMEM;
	}
	snprintf(p, n, "%s.", path);
	free(path);
	r = flatten(s, p, l);
	free(p);
	return r;
}

static int flatten(const json_t *s, const char *prefix, struct leaves *l)
{
	const json_t *fields = json_object_get(s, "fields");
	const json_t *subs = json_object_get(s, "subsections");
	int r = 0;

	for (size_t i = 0; i < json_array_size(fields) && r == 0; i++) {
		const json_t *f = json_array_get(fields, i);
		const json_t *vals = json_object_get(f, "values");
		const json_t *v = json_object_get(f, "value");
		const json_t *ix = json_object_get(f, "index");
		const char *type = gets_(f, "type");
		char *path = path_of(prefix, gets_(f, "name"), json_integer_value(ix), ix != NULL);

		if (!path)
			return -ENOMEM;
		if (vals && json_is_object(json_array_get(vals, 0))) {
			for (size_t k = 0; k < json_array_size(vals) && r == 0; k++)
				r = flatten_sub(json_array_get(vals, k),
						path_of(path, "", (json_int_t)k, true), l);
			free(path);
		} else if (!vals && json_is_object(v)) {
			r = flatten_sub(v, path, l);
		} else {
			r = leaf_add(l, path, type, vals ? vals : v);
		}
	}
	for (size_t i = 0; i < json_array_size(subs) && r == 0; i++) {
		const json_t *sub = json_array_get(subs, i);

		r = flatten_sub(sub, path_of(prefix, gets_(sub, "vmsd_name"), 0, false), l);
	}
	return r;
}

static json_t *field_change(const char *path, const char *type, const json_t *a,
			    const json_t *b)
{
	json_t *o = json_object();

	json_object_set_new(o, "path", json_string(path));
	json_object_set_new(o, "type", json_string(type));
	json_object_set(o, "from", a ? (json_t *)a : json_null());
	json_object_set(o, "to", b ? (json_t *)b : json_null());
	return o;
}

/* The leaves of fa and fb that differ, arrays element by element. */
int replay_diff_fields(const json_t *fa, const json_t *fb, json_t *changes)
{
	struct leaves la = { NULL, 0, 0, NULL }, lb = { NULL, 0, 0, NULL };
	json_t *seen = json_object();
	int r;

	if ((r = flatten(fa, "", &la)) != 0 || (r = flatten(fb, "", &lb)) != 0)
		goto out;
	for (size_t j = 0; j < lb.n; j++)
		json_object_set_new(seen, lb.v[j].path, json_integer((json_int_t)j));
	for (size_t i = 0; i < la.n; i++) {
		const struct leaf *a = &la.v[i];
		const json_t *jj = json_object_get(seen, a->path);
		const struct leaf *b = jj ? &lb.v[json_integer_value(jj)] : NULL;

		if (!b) {
			json_array_append_new(changes, field_change(a->path, a->type, a->value, NULL));
			continue;
		}
		json_object_set_new(seen, a->path, json_integer(-1));
		if (json_equal((json_t *)a->value, (json_t *)b->value))
			continue;
		if (json_is_array(a->value) && json_is_array(b->value) &&
		    json_array_size(a->value) == json_array_size(b->value)) {
			for (size_t k = 0; k < json_array_size(a->value); k++) {
				const json_t *va = json_array_get(a->value, k);
				const json_t *vb = json_array_get(b->value, k);
				char *p;

				if (json_equal((json_t *)va, (json_t *)vb))
					continue;
				p = path_of(a->path, "", (json_int_t)k, true);
				if (!p) {
					r = -ENOMEM;
					goto out;
				}
				json_array_append_new(changes, field_change(p, a->type, va, vb));
				free(p);
			}
			continue;
		}
		json_array_append_new(changes, field_change(a->path, a->type, a->value, b->value));
	}
	for (size_t j = 0; j < lb.n; j++)
		if (json_integer_value(json_object_get(seen, lb.v[j].path)) >= 0)
			json_array_append_new(changes, field_change(lb.v[j].path, lb.v[j].type,
								    NULL, lb.v[j].value));
out:
	json_decref(seen);
	leaves_free(&la);
	leaves_free(&lb);
	return r;
}

/* ---- values as text (as dump prints them) ---- */

void replay_print_value(const json_t *v, FILE *out)
{
	if (!v)
		fputs("(absent)", out);
	else
		colo_dump_print_value(v, out);
}

/* Every leaf of a decoded device, one line each. */
void replay_print_fields(const json_t *tree, int indent, FILE *out)
{
	struct leaves l = { NULL, 0, 0, NULL };

	if (json_is_string(json_object_get(tree, "note")))
		fprintf(out, "%*s(%s)\n", indent, "", gets_(tree, "note"));
	if (flatten(tree, "", &l) != 0) {
		fprintf(out, "%*s(out of memory)\n", indent, "");
		leaves_free(&l);
		return;
	}
	for (size_t i = 0; i < l.n; i++) {
		fprintf(out, "%*s%-32s %-14s ", indent, "", l.v[i].path, l.v[i].type);
		replay_print_value(l.v[i].value, out);
		fputc('\n', out);
	}
	leaves_free(&l);
}
