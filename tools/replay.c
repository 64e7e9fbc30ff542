/*
 * replay.c: `colo-replay` on recordings (see replay.h).
 *
 * Checkpoints are rebuilt here step by step rather than with
 * colo_recording_state(), so that verify goes through each segment once
 * (load its keyframe, apply every record after it: linear, not quadratic),
 * diff moves one state forward to the other when it can, and every error
 * names the record that failed.  A step is: read the record (its checksum
 * checked), then load it (keyframe) or apply it (checkpoint).
 *
 * Device fields are compared and printed flattened to paths
 * ("counters[2].value", "demo/stats.hits" for a subsection's field); the
 * JSON keeps the tree colo_vmdesc_decode() makes.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "in.h"
#include "replay.h"
#include "vmdesc.h"

#define TEXT_RANGES_MAX 12       /* page ranges per block in text output */
#define TEXT_VALUES_MAX 8        /* array elements shown in text output */
#define TEXT_HEX_MAX 32          /* bytes of a hex value shown in text output */

#define SAFE_NAME_RULE "ram/<block name>.bin, every byte of the name other than " \
	"A-Z a-z 0-9 . _ - (and a leading .) replaced by _, and -2, -3... added " \
	"when two names would share a file"

/* ---- small helpers ---- */

static const char *plural(uint64_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

/*
 * Names from streams as JSON strings.  They are bytes, not necessarily
 * UTF-8: a byte that is not valid UTF-8 is shown as the text \xNN.
 */
static json_t *jtext(const char *s)
{
	static const char hex[] = "0123456789abcdef";
	json_t *j = json_string(s);
	char *esc, *o;

	if (j)
		return j;
	esc = malloc(strlen(s) * 4 + 1);
	if (!esc)
		return NULL;
	o = esc;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x80) {
			*o++ = (char)*p;
		} else {
			*o++ = '\\';
			*o++ = 'x';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	j = json_string(esc);
	free(esc);
	return j;
}

static json_t *jint(uint64_t v)
{
	return json_integer((json_int_t)v);
}

static json_t *jhex64(uint64_t v)
{
	char b[24];

	snprintf(b, sizeof(b), "%016" PRIx64, v);
	return json_string(b);
}

static json_int_t geti(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static const char *gets_(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

/* "time" of a document: null (unknown, e.g. the initial sync's) is "-". */
static const char *time_of(const json_t *o)
{
	const char *s = json_string_value(json_object_get(o, "time"));

	return s ? s : "-";
}

/* UTC with milliseconds, as the logs write it; "-" when unknown. */
static void format_time(uint64_t ns, char *buf, size_t len)
{
	time_t s = (time_t)(ns / 1000000000u);
	struct tm tm;
	size_t n;

	if (ns == 0 || !gmtime_r(&s, &tm) ||
	    (n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm)) == 0) {
		snprintf(buf, len, "-");
		return;
	}
	snprintf(buf + n, len - n, ".%03uZ", (unsigned)(ns / 1000000u % 1000u));
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

static json_t *pages_json(const uint64_t *pages)
{
	json_t *o = json_object();

	for (int k = 0; k < COLO_PAGE_KINDS; k++)
		if (pages[k])
			json_object_set_new(o, colo_page_kind_name((enum colo_page_kind)k),
					    jint(pages[k]));
	return o;
}

/* "256 pages (64 zero, 192 page)", as dump prints them. */
static void print_pages(const json_t *pages, FILE *out)
{
	const char *k;
	json_t *v;
	json_int_t total = 0;
	bool first = true;

	json_object_foreach((json_t *)pages, k, v)
		total += json_integer_value(v);
	fprintf(out, "%" JSON_INTEGER_FORMAT " %s", total, plural((uint64_t)total, "page",
								     "pages"));
	json_object_foreach((json_t *)pages, k, v) {
		fprintf(out, "%s%" JSON_INTEGER_FORMAT " %s", first ? " (" : ", ",
			json_integer_value(v), k);
		first = false;
	}
	if (!first)
		fputc(')', out);
}

/* seq, generation and time of an entry, for documents. */
static void put_entry_id(json_t *o, const struct colo_rec_entry *e)
{
	json_object_set_new(o, "seq", jint(e->seq));
	json_object_set_new(o, "generation", jint(e->generation));
	json_object_set_new(o, "wall_ns", jint(e->wall_ns));
	json_object_set_new(o, "time", jtime(e->wall_ns));
}

/* ---- reaching a checkpoint ---- */

static int find_entry(const struct colo_recording *rec, uint64_t seq, size_t *at,
		      struct colo_err *err)
{
	const struct colo_rec_entry *e = colo_recording_find(rec, seq);
	uint64_t lo = UINT64_MAX, hi = 0;

	if (e) {
		*at = (size_t)(e - rec->e);
		return 0;
	}
	if (rec->n == 0)
		return colo_err_set(err, ENOENT, "no checkpoint %" PRIu64 ": the recording "
				    "holds none", seq);
	for (size_t i = 0; i < rec->n; i++) {
		lo = rec->e[i].seq < lo ? rec->e[i].seq : lo;
		hi = rec->e[i].seq > hi ? rec->e[i].seq : hi;
	}
	return colo_err_set(err, ENOENT, "no checkpoint %" PRIu64 " in the recording (it "
			    "holds %zu, seq %" PRIu64 " to %" PRIu64 ")", seq, rec->n, lo, hi);
}

/*
 * Where the first bad byte is in the segment.  A record is one stream (a
 * keyframe) or two (a checkpoint: RAM, then devices), and image errors
 * name "offset N" in the stream they read; else the record's start.
 */
static uint64_t bad_byte(const struct colo_rec_entry *x, const char *msg)
{
	const char *p = strstr(msg, "offset ");
	uint64_t base = x->offset, v;

	if (!p || p[7] < '0' || p[7] > '9')
		return x->offset;
	v = strtoull(p + 7, NULL, 10);
	if (!x->keyframe && strncmp(msg, "checkpoint device stream", 24) == 0)
		base += x->ram_length;
	return base - x->offset + v < x->length ? base + v : x->offset;
}

/*
 * "checkpoint S (seg-N at offset O): why" for a failure of record x; O is
 * the bad byte when the image said where it is (decoded), else the
 * record's start.
 */
static int record_error(const struct colo_rec_entry *x, const struct colo_err *why,
			bool decoded, struct colo_err *err)
{
	char own[64];
	const char *msg = why->msg;
	int n = snprintf(own, sizeof(own), "checkpoint %" PRIu64 ": ", x->seq);

	/* colo_recording_read() names the checkpoint already. */
	if (n > 0 && strncmp(msg, own, (size_t)n) == 0)
		msg += n;
	return colo_err_set(err, why->code ? why->code : EIO, "checkpoint %" PRIu64 " ("
			    COLO_REC_SEG_FMT " at offset %" PRIu64 "): %s", x->seq,
			    x->segment, decoded ? bad_byte(x, msg) : x->offset, msg);
}

/* Move img by record i: a keyframe replaces it, a checkpoint is applied. */
static int step(const struct colo_recording *rec, size_t i, struct colo_image *img,
		struct colo_err *err)
{
	const struct colo_rec_entry *x = &rec->e[i];
	struct colo_err why;
	uint8_t *data;
	size_t len;
	int r;

	colo_err_clear(&why);
	r = colo_recording_read(rec, x, &data, &len, &why);
	if (r != 0)
		return record_error(x, &why, false, err);
	if (x->keyframe) {
		colo_image_free(img);
		colo_image_init(img);
		r = colo_image_load_full(img, data, len, &why);
	} else {
		r = colo_image_apply(img, data, (size_t)x->ram_length, data + x->ram_length,
				     len - (size_t)x->ram_length, &why);
		/* The index and the record must agree on which it is. */
		if (r == 0 && img->ckpt.valid && img->ckpt.seq != x->seq)
			r = colo_err_set(&why, EINVAL, "its colo/checkpoint section is of "
					 "checkpoint %" PRIu64, img->ckpt.seq);
	}
	free(data);
	return r ? record_error(x, &why, true, err) : 0;
}

/* The state at record `at`: its segment's keyframe and what follows. */
static int state_at(const struct colo_recording *rec, size_t at, struct colo_image *img,
		    struct colo_err *err)
{
	colo_image_init(img);
	for (size_t i = rec->e[at].key; i <= at; i++)
		if (step(rec, i, img, err) != 0)
			return -err->code;
	return 0;
}

int colo_replay_state(const struct colo_recording *rec, uint64_t seq,
		      struct colo_image *img, const struct colo_rec_entry **entry,
		      struct colo_err *err)
{
	size_t at;

	colo_image_init(img);
	if (find_entry(rec, seq, &at, err) != 0)
		return -err->code;
	*entry = &rec->e[at];
	colo_image_free(img);
	return state_at(rec, at, img, err);
}

/* ---- devices ---- */

static const struct colo_image_device *find_device(const struct colo_image *img,
						   const char *idstr, uint32_t instance)
{
	for (size_t i = 0; i < img->ndevs; i++)
		if (img->devs[i].instance_id == instance && strcmp(img->devs[i].idstr, idstr) == 0)
			return &img->devs[i];
	return NULL;
}

/* A device's payload as the vmdesc's tree of named, typed values. */
static int device_fields(const struct colo_image *img, const struct colo_image_device *d,
			 json_t **out, struct colo_err *err)
{
	const struct colo_vmdesc_device *vd;
	struct colo_in in;

	*out = NULL;
	vd = img->vmdesc ? colo_vmdesc_find(img->vmdesc, d->idstr, d->instance_id) : NULL;
	if (!vd)
		return colo_err_set(err, EPROTO, "device '%s' instance %" PRIu32 " has no "
				    "entry in the vmdesc", d->idstr, d->instance_id);
	if (vd->desc.bytes != d->len)
		return colo_err_set(err, EPROTO, "device '%s' instance %" PRIu32 " has %zu "
				    "payload bytes, its vmdesc entry describes %" PRIu64,
				    d->idstr, d->instance_id, d->len, vd->desc.bytes);
	colo_in_init(&in, d->payload, d->len, 0, true);
	if (colo_vmdesc_decode(&vd->desc, &in, out, err) != 0) {
		colo_err_prefix(err, "device '%s' instance %" PRIu32, d->idstr, d->instance_id);
		return -err->code;
	}
	return 0;
}

static json_t *device_head(const struct colo_image_device *d)
{
	json_t *o = json_object();

	json_object_set_new(o, "name", jtext(d->idstr));
	json_object_set_new(o, "instance_id", jint(d->instance_id));
	json_object_set_new(o, "version", jint(d->version));
	return o;
}

static bool same_payload(const struct colo_image_device *a,
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
};

static void leaves_free(struct leaves *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].path);
	free(l->v);
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
	if (!path)
		return -ENOMEM;
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

/* ---- values as text (as dump prints them) ---- */

static int hexbyte(const char *p)
{
	static const char digits[] = "0123456789abcdef";
	const char *hi = strchr(digits, p[0]), *lo = strchr(digits, p[1]);

	return (int)((hi - digits) << 4 | (lo - digits));
}

/*
 * Values that are not numbers are hex strings; those holding text (and
 * NUL padding) print as text.  Other strings ("nan", a uint64 above
 * INT64_MAX) print as they are.
 */
static void print_hex_value(const char *hex, FILE *out)
{
	size_t len = strlen(hex), n = len / 2, text = 0;
	bool is_text = n > 0;

	if (len % 2 || strspn(hex, "0123456789abcdef") != len) {
		fputs(hex, out);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		int b = hexbyte(hex + 2 * i);

		if (b == 0)
			break;
		if (b < 0x20 || b > 0x7e) {
			is_text = false;
			break;
		}
		text++;
	}
	for (size_t i = text; is_text && i < n; i++)
		if (hexbyte(hex + 2 * i) != 0)
			is_text = false;
	if (is_text && text > 0) {
		fputc('"', out);
		for (size_t i = 0; i < text; i++)
			fputc(hexbyte(hex + 2 * i), out);
		fputc('"', out);
		if (n > text)
			fprintf(out, " + %zu NUL", n - text);
		return;
	}
	if (n > TEXT_HEX_MAX)
		fprintf(out, "%.*s... (%zu bytes)", 2 * TEXT_HEX_MAX, hex, n);
	else
		fputs(n ? hex : "(empty)", out);
}

static void print_value(const json_t *v, FILE *out)
{
	if (!v) {
		fputs("(absent)", out);
	} else if (json_is_array(v)) {
		size_t n = json_array_size(v);

		fputc('[', out);
		for (size_t i = 0; i < n && i < TEXT_VALUES_MAX; i++) {
			if (i)
				fputs(", ", out);
			print_value(json_array_get(v, i), out);
		}
		if (n > TEXT_VALUES_MAX)
			fprintf(out, ", ... %zu more", n - TEXT_VALUES_MAX);
		fputc(']', out);
	} else if (json_is_integer(v)) {
		fprintf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	} else if (json_is_real(v)) {
		fprintf(out, "%.17g", json_real_value(v));
	} else if (json_is_true(v)) {
		fputs("true", out);
	} else if (json_is_false(v)) {
		fputs("false", out);
	} else if (json_is_string(v)) {
		print_hex_value(json_string_value(v), out);
	}
}

/* Every leaf of a decoded device, one line each. */
static void print_fields(const json_t *tree, int indent, FILE *out)
{
	struct leaves l = { NULL, 0, 0 };

	if (flatten(tree, "", &l) != 0) {
		fprintf(out, "%*s(out of memory)\n", indent, "");
		leaves_free(&l);
		return;
	}
	for (size_t i = 0; i < l.n; i++) {
		fprintf(out, "%*s%-32s %-14s ", indent, "", l.v[i].path, l.v[i].type);
		print_value(l.v[i].value, out);
		fputc('\n', out);
	}
	leaves_free(&l);
}

/* ---- pages ---- */

static bool bit_set(const uint64_t *bits, uint64_t i)
{
	return (bits[i / 64] >> (i % 64)) & 1;
}

/* The pages set in bits as merged ranges {"start","end","pages"}, offsets
 * in the block, end inclusive; *count gets how many pages. */
static json_t *ranges_json(const uint64_t *bits, uint64_t npages, uint64_t *count)
{
	json_t *a = json_array();
	uint64_t p = 0;

	*count = 0;
	while (p < npages) {
		uint64_t q;
		json_t *r;

		if (p % 64 == 0 && bits[p / 64] == 0) {
			p += 64;
			continue;
		}
		if (!bit_set(bits, p)) {
			p++;
			continue;
		}
		for (q = p; q < npages && bit_set(bits, q); q++)
			;
		r = json_object();
		json_object_set_new(r, "start", jint(p * COLO_PAGE_SIZE));
		json_object_set_new(r, "end", jint(q * COLO_PAGE_SIZE - 1));
		json_object_set_new(r, "pages", jint(q - p));
		json_array_append_new(a, r);
		*count += q - p;
		p = q;
	}
	return a;
}

/* Pages whose bytes differ between a and b (the first npages of each). */
static uint64_t *differing_pages(const struct colo_image_block *a,
				 const struct colo_image_block *b, uint64_t npages)
{
	uint64_t *bits = calloc(npages / 64 + 1, sizeof(*bits));

	if (!bits)
		return NULL;
	for (uint64_t p = 0; p < npages; p++)
		if (memcmp(a->data + p * COLO_PAGE_SIZE, b->data + p * COLO_PAGE_SIZE,
			   COLO_PAGE_SIZE) != 0)
			bits[p / 64] |= 1ull << (p % 64);
	return bits;
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
	json_object_set_new(d, "dir", jtext(rec->dir));
	for (size_t i = 0; i < rec->n; i++) {
		const struct colo_rec_entry *e = &rec->e[i];
		json_t *o = json_object(), *devs = json_array();

		put_entry_id(o, e);
		json_object_set_new(o, "keyframe", json_boolean(e->keyframe));
		json_object_set_new(o, "segment", jsegment(e->segment));
		json_object_set_new(o, "offset", jint(e->offset));
		json_object_set_new(o, "bytes", jint(e->length));
		if (!e->keyframe)
			json_object_set_new(o, "ram_bytes", jint(e->ram_length));
		json_object_set_new(o, "xxh3", jhex64(e->checksum));
		json_object_set_new(o, "pages", pages_json(e->pages));
		for (size_t k = 0; k < e->ndevices; k++)
			json_array_append_new(devs, jtext(e->devices[k]));
		json_object_set_new(o, "devices", devs);
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
	json_object_set_new(d, "note", rec->note[0] ? jtext(rec->note) : json_null());
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
		print_pages(json_object_get(o, "pages"), out);
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

		json_object_set_new(o, "name", jtext(b->name));
		json_object_set_new(o, "length", jint(b->length));
		json_object_set_new(o, "xxh3", jhex64(colo_image_block_hash(b)));
		if (basis == BASIS_SENT && b->touched) {
			ranges = ranges_json(b->touched, npages, &count);
		} else if (basis == BASIS_COMPARED) {
			const struct colo_image_block *pb = colo_image_block(prev, b->name);
			uint64_t *bits;

			if (pb && pb->length == b->length) {
				bits = differing_pages(b, pb, npages);
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
			ranges = ranges_json(bits, npages, &count);
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

static json_t *show_devices(const struct colo_image *img, const struct colo_image *prev,
			    enum basis basis, struct colo_err *err)
{
	json_t *a = json_array();

	for (size_t i = 0; i < img->ndevs; i++) {
		const struct colo_image_device *d = &img->devs[i];
		const struct colo_image_device *pd;
		json_t *o = device_head(d), *fields;

		json_array_append_new(a, o);
		if (basis == BASIS_SENT) {
			json_object_set_new(o, "changed", json_boolean(d->touched));
		} else if (basis == BASIS_COMPARED) {
			pd = find_device(prev, d->idstr, d->instance_id);
			json_object_set_new(o, "changed", json_boolean(!pd || !same_payload(d, pd)));
		} else {
			json_object_set_new(o, "changed", json_null());
		}
		if (device_fields(img, d, &fields, err) != 0) {
			json_decref(a);
			return NULL;
		}
		json_object_set_new(o, "fields", fields);
	}
	return a;
}

int colo_replay_show(const struct colo_recording *rec, uint64_t seq, json_t **doc,
		     struct colo_err *err)
{
	struct colo_image img, prev;
	const struct colo_rec_entry *e;
	enum basis basis = BASIS_SENT;
	struct colo_err prev_err;
	json_t *d = NULL, *blocks = NULL, *devs = NULL;
	size_t at;
	int rc;

	*doc = NULL;
	colo_image_init(&prev);
	if (find_entry(rec, seq, &at, err) != 0)
		return -err->code;
	e = &rec->e[at];
	rc = state_at(rec, at, &img, err);
	colo_err_clear(&prev_err);
	if (rc == 0 && e->keyframe) {
		/* A keyframe carries everything: compare with the state before,
		 * if that can be had (it does not decide what this one is). */
		basis = BASIS_NONE;
		colo_image_free(&prev);
		if (at > 0 && state_at(rec, at - 1, &prev, &prev_err) == 0)
			basis = BASIS_COMPARED;
	}
	if (rc == 0 && (blocks = show_blocks(&img, &prev, basis, err)) &&
	    (devs = show_devices(&img, &prev, basis, err))) {
		d = json_object();
		json_object_set_new(d, "dir", jtext(rec->dir));
		put_entry_id(d, e);
		json_object_set_new(d, "config", jtext(img.config));
		json_object_set_new(d, "keyframe", json_boolean(e->keyframe));
		json_object_set_new(d, "segment", jsegment(e->segment));
		json_object_set_new(d, "offset", jint(e->offset));
		json_object_set_new(d, "bytes", jint(e->length));
		if (!e->keyframe)
			json_object_set_new(d, "ram_bytes", jint(e->ram_length));
		json_object_set_new(d, "keyframe_seq", jint(rec->e[e->key].seq));
		json_object_set_new(d, "checkpoints_applied", jint(at - e->key));
		json_object_set_new(d, "pages", pages_json(e->pages));
		json_object_set_new(d, "changes", json_string(basis == BASIS_SENT ? "sent" :
							      basis == BASIS_COMPARED ?
							      "compared" : "unknown"));
		if (basis == BASIS_COMPARED)
			json_object_set_new(d, "compared_with", jint(rec->e[at - 1].seq));
		if (colo_err_isset(&prev_err))
			json_object_set_new(d, "compare_error", jtext(prev_err.msg));
		json_object_set_new(d, "blocks", blocks);
		json_object_set_new(d, "devices", devs);
		blocks = devs = NULL;
	}
	json_decref(blocks);
	json_decref(devs);
	colo_image_free(&img);
	colo_image_free(&prev);
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
	print_pages(json_object_get(d, "pages"), out);
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
		print_fields(json_object_get(o, "fields"), 6, out);
	}
}

/* ---- diff ---- */

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
static int diff_fields(const json_t *fa, const json_t *fb, json_t *changes)
{
	struct leaves la = { NULL, 0, 0 }, lb = { NULL, 0, 0 };
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

static int diff_devices(const struct colo_image *a, const struct colo_image *b,
			json_t *out, struct colo_err *err)
{
	for (size_t i = 0; i < a->ndevs; i++) {
		const struct colo_image_device *da = &a->devs[i];
		const struct colo_image_device *db = find_device(b, da->idstr, da->instance_id);
		json_t *o, *fa = NULL, *fb = NULL, *changes;

		if (db && same_payload(da, db))
			continue;
		o = json_object();
		json_object_set_new(o, "name", jtext(da->idstr));
		json_object_set_new(o, "instance_id", jint(da->instance_id));
		json_array_append_new(out, o);
		if (!db) {
			json_object_set_new(o, "only_in", json_string("from"));
			continue;
		}
		json_object_set_new(o, "version_from", jint(da->version));
		json_object_set_new(o, "version_to", jint(db->version));
		if (device_fields(a, da, &fa, err) != 0 || device_fields(b, db, &fb, err) != 0) {
			json_decref(fa);
			return -err->code;
		}
		changes = json_array();
		json_object_set_new(o, "fields", changes);
		if (diff_fields(fa, fb, changes) != 0) {
			json_decref(fa);
			json_decref(fb);
			return colo_err_set(err, ENOMEM, "out of memory");
		}
		json_decref(fa);
		json_decref(fb);
	}
	for (size_t i = 0; i < b->ndevs; i++) {
		const struct colo_image_device *db = &b->devs[i];
		json_t *o;

		if (find_device(a, db->idstr, db->instance_id))
			continue;
		o = json_object();
		json_object_set_new(o, "name", jtext(db->idstr));
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

		json_object_set_new(o, "name", jtext(ba->name));
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
		bits = differing_pages(ba, bb, npages);
		if (!bits)
			return colo_err_set(err, ENOMEM, "out of memory");
		ranges = ranges_json(bits, npages, &count);
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
		json_object_set_new(o, "name", jtext(b->blocks[i].name));
		json_object_set_new(o, "length", jint(b->blocks[i].length));
		json_object_set_new(o, "only_in", json_string("to"));
		json_array_append_new(out, o);
	}
	return 0;
}

/*
 * Both states (initialised by the call, whatever happens).  In one
 * segment the later one is the earlier one moved forward, which reads
 * each record once.
 */
static int diff_states(const struct colo_recording *rec, size_t ia, size_t ib,
		       struct colo_image *a, struct colo_image *b, struct colo_err *err)
{
	size_t lo = ia < ib ? ia : ib, hi = ia < ib ? ib : ia;
	struct colo_image *first = ia < ib ? a : b, *second = ia < ib ? b : a;

	colo_image_init(a);
	colo_image_init(b);
	if (rec->e[lo].key != rec->e[hi].key) {
		colo_image_free(a);
		if (state_at(rec, ia, a, err) != 0)
			return -err->code;
		colo_image_free(b);
		return state_at(rec, ib, b, err);
	}
	colo_image_free(first);
	if (state_at(rec, lo, first, err) != 0)
		return -err->code;
	colo_image_free(second);
	if (colo_image_copy(second, first, err) != 0)
		return -err->code;
	for (size_t i = lo + 1; i <= hi; i++)
		if (step(rec, i, second, err) != 0)
			return -err->code;
	return 0;
}

int colo_replay_diff(const struct colo_recording *rec, uint64_t from, uint64_t to,
		     json_t **doc, struct colo_err *err)
{
	struct colo_image a, b;
	size_t ia, ib;
	json_t *d, *devs, *blocks, *o;
	int rc;

	*doc = NULL;
	if (find_entry(rec, from, &ia, err) != 0 || find_entry(rec, to, &ib, err) != 0)
		return -err->code;
	rc = diff_states(rec, ia, ib, &a, &b, err);
	d = json_object();
	devs = json_array();
	blocks = json_array();
	json_object_set_new(d, "dir", jtext(rec->dir));
	o = json_object();
	put_entry_id(o, &rec->e[ia]);
	json_object_set_new(o, "config", jtext(a.config));
	json_object_set_new(d, "from", o);
	o = json_object();
	put_entry_id(o, &rec->e[ib]);
	json_object_set_new(o, "config", jtext(b.config));
	json_object_set_new(d, "to", o);
	json_object_set_new(d, "devices", devs);
	json_object_set_new(d, "blocks", blocks);
	if (rc == 0)
		rc = diff_devices(&a, &b, devs, err);
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
	for (size_t i = 0; i < json_array_size(devs); i++) {
		const json_t *o = json_array_get(devs, i);
		const json_t *fields = json_object_get(o, "fields");
		const char *only = gets_(o, "only_in");

		fprintf(out, "  '%s' instance %" JSON_INTEGER_FORMAT, gets_(o, "name"),
			geti(o, "instance_id"));
		if (*only) {
			fprintf(out, ": only in %" JSON_INTEGER_FORMAT "\n",
				strcmp(only, "from") == 0 ? fs : ts);
			continue;
		}
		if (geti(o, "version_from") != geti(o, "version_to"))
			fprintf(out, " version %" JSON_INTEGER_FORMAT " -> %" JSON_INTEGER_FORMAT,
				geti(o, "version_from"), geti(o, "version_to"));
		fputc('\n', out);
		for (size_t k = 0; k < json_array_size(fields); k++) {
			const json_t *f = json_array_get(fields, k);
			const json_t *a = json_object_get(f, "from"), *b = json_object_get(f, "to");

			fprintf(out, "    %-32s %-14s ", gets_(f, "path"), gets_(f, "type"));
			print_value(json_is_null(a) ? NULL : a, out);
			fputs(" -> ", out);
			print_value(json_is_null(b) ? NULL : b, out);
			fputc('\n', out);
		}
	}
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

/* ---- extract ---- */

/* A block name as a file name (SAFE_NAME_RULE), unique among taken. */
static void safe_name(const char *name, const json_t *taken, char *buf, size_t len)
{
	char base[COLO_IMAGE_NAME_MAX + 1];
	size_t n = 0;

	for (const char *p = name; *p && n < sizeof(base) - 1; p++) {
		char c = *p;
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';

		if (n == 0 && c == '.')
			ok = false;
		base[n++] = ok ? c : '_';
	}
	if (n == 0)
		base[n++] = '_';
	base[n] = '\0';
	snprintf(buf, len, "ram/%s.bin", base);
	for (unsigned k = 2; json_object_get(taken, buf); k++)
		snprintf(buf, len, "ram/%s-%u.bin", base, k);
}

static char *join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static int make_dir(const char *path, struct colo_err *err)
{
	struct stat st;

	if (mkdir(path, 0755) == 0)
		return 0;
	if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	return colo_err_set(err, errno == EEXIST ? ENOTDIR : errno, "%s: cannot create "
			    "the directory: %s", path, strerror(errno == EEXIST ? ENOTDIR : errno));
}

/* The block's bytes; zero pages are left as holes. */
static int write_block(const char *path, const struct colo_image_block *b,
		       struct colo_err *err)
{
	static const uint8_t zero[COLO_PAGE_SIZE];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0)
		return colo_err_set(err, errno, "%s: cannot create: %s", path, strerror(errno));
	for (uint64_t off = 0; off < b->length; off += COLO_PAGE_SIZE) {
		const uint8_t *p = b->data + off;
		size_t done = 0;

		if (memcmp(p, zero, COLO_PAGE_SIZE) == 0)
			continue;
		while (done < COLO_PAGE_SIZE) {
			ssize_t w = pwrite(fd, p + done, COLO_PAGE_SIZE - done,
					   (off_t)(off + done));

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				colo_err_set(err, w < 0 ? errno : EIO, "%s: cannot write: %s", path,
					     strerror(w < 0 ? errno : EIO));
				close(fd);
				return -err->code;
			}
			done += (size_t)w;
		}
	}
	if (ftruncate(fd, (off_t)b->length) != 0) {
		colo_err_set(err, errno, "%s: cannot write: %s", path, strerror(errno));
		close(fd);
		return -err->code;
	}
	if (close(fd) != 0)
		return colo_err_set(err, errno, "%s: cannot write: %s", path, strerror(errno));
	return 0;
}

static int write_json(const char *path, const json_t *doc, struct colo_err *err)
{
	FILE *f = fopen(path, "w");
	int bad;

	if (!f)
		return colo_err_set(err, errno, "%s: cannot create: %s", path, strerror(errno));
	bad = json_dumpf(doc, f, JSON_INDENT(2)) != 0;
	bad |= fputc('\n', f) == EOF;
	bad |= fclose(f) != 0;
	if (bad)
		return colo_err_set(err, errno ? errno : EIO, "%s: cannot write: %s", path,
				    strerror(errno ? errno : EIO));
	return 0;
}

int colo_replay_extract(const struct colo_recording *rec, uint64_t seq,
			const char *outdir, json_t **doc, struct colo_err *err)
{
	const struct colo_rec_entry *e;
	struct colo_image img;
	json_t *d = json_object(), *devs = json_array(), *blocks = json_array();
	char *path = NULL;
	int rc;

	*doc = NULL;
	rc = colo_replay_state(rec, seq, &img, &e, err);
	if (rc == 0) {
		json_object_set_new(d, "config", jtext(img.config));
		put_entry_id(d, e);
		json_object_set_new(d, "recording", jtext(rec->dir));
	}
	json_object_set_new(d, "devices", devs);
	json_object_set_new(d, "blocks", blocks);
	json_object_set_new(d, "file_names", json_string(SAFE_NAME_RULE));
	for (size_t i = 0; rc == 0 && i < img.ndevs; i++) {
		json_t *o = device_head(&img.devs[i]), *fields;

		json_array_append_new(devs, o);
		rc = device_fields(&img, &img.devs[i], &fields, err);
		if (rc == 0)
			json_object_set_new(o, "fields", fields);
	}
	if (rc == 0 && (rc = make_dir(outdir, err)) == 0) {
		path = join(outdir, "ram");
		rc = path ? make_dir(path, err) : colo_err_set(err, ENOMEM, "out of memory");
		free(path);
	}
	for (size_t i = 0; rc == 0 && i < img.nblocks; i++) {
		const struct colo_image_block *b = &img.blocks[i];
		json_t *o = json_object(), *taken = json_object();
		char file[COLO_IMAGE_NAME_MAX + 32];

		for (size_t k = 0; k < json_array_size(blocks); k++)
			json_object_set_new(taken, gets_(json_array_get(blocks, k), "file"),
					    json_true());
		safe_name(b->name, taken, file, sizeof(file));
		json_decref(taken);
		json_object_set_new(o, "name", jtext(b->name));
		json_object_set_new(o, "length", jint(b->length));
		json_object_set_new(o, "xxh3", jhex64(colo_image_block_hash(b)));
		json_object_set_new(o, "file", json_string(file));
		json_array_append_new(blocks, o);
		path = join(outdir, file);
		rc = path ? write_block(path, b, err) : colo_err_set(err, ENOMEM, "out of memory");
		free(path);
	}
	if (rc == 0) {
		path = join(outdir, "devices.json");
		rc = path ? write_json(path, d, err) : colo_err_set(err, ENOMEM, "out of memory");
		free(path);
	}
	colo_image_free(&img);
	if (rc != 0) {
		json_decref(d);
		return rc;
	}
	*doc = d;
	return 0;
}

void colo_replay_extract_text(const json_t *d, const char *outdir, FILE *out)
{
	const json_t *blocks = json_object_get(d, "blocks");
	size_t ndevs = json_array_size(json_object_get(d, "devices"));

	fprintf(out, "checkpoint %" JSON_INTEGER_FORMAT " of %s (%s) extracted into %s\n",
		geti(d, "seq"), gets_(d, "recording"), gets_(d, "config"), outdir);
	for (size_t i = 0; i < json_array_size(blocks); i++) {
		const json_t *b = json_array_get(blocks, i);

		fprintf(out, "  %-28s %12" JSON_INTEGER_FORMAT " bytes  xxh3 %s  block '%s'\n",
			gets_(b, "file"), geti(b, "length"), gets_(b, "xxh3"), gets_(b, "name"));
	}
	fprintf(out, "  %-28s %zu %s\n", "devices.json", ndevs, plural(ndevs, "device",
									 "devices"));
}

/* ---- verify ---- */

/* Every device decodes through the vmdesc. */
static int check_devices(const struct colo_image *img, const struct colo_rec_entry *x,
			 struct colo_err *err)
{
	for (size_t i = 0; i < img->ndevs; i++) {
		struct colo_err why;
		json_t *fields;

		colo_err_clear(&why);
		if (device_fields(img, &img->devs[i], &fields, &why) != 0)
			return record_error(x, &why, false, err);
		json_decref(fields);
	}
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Segment files no entry refers to, sorted: {"file","bytes"}. */
static json_t *unreferenced(const struct colo_recording *rec)
{
	json_t *a = json_array();
	DIR *dir = opendir(rec->dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;

	if (!dir)
		return a;
	while ((de = readdir(dir)) != NULL) {
		unsigned v;
		int used = 0;
		bool known = false;
		char **nn;

		if (sscanf(de->d_name, "seg-%6u%n", &v, &used) != 1 || used != 10 ||
		    de->d_name[used])
			continue;
		for (size_t i = 0; i < rec->n && !known; i++)
			known = rec->e[i].segment == v;
		if (known || !(nn = realloc(names, (n + 1) * sizeof(*names))))
			continue;
		names = nn;
		if ((names[n] = strdup(de->d_name)) != NULL)
			n++;
	}
	closedir(dir);
	if (n)
		qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_object();
		char *p = join(rec->dir, names[i]);
		struct stat st;

		json_object_set_new(o, "file", json_string(names[i]));
		json_object_set_new(o, "bytes", jint(p && stat(p, &st) == 0 ?
						     (uint64_t)st.st_size : 0));
		json_array_append_new(a, o);
		free(p);
		free(names[i]);
	}
	free(names);
	return a;
}

int colo_replay_verify(const struct colo_recording *rec, json_t **doc,
		       struct colo_err *err)
{
	json_t *d = json_object(), *problems = json_array();
	struct colo_image img;
	uint64_t bytes = 0, keys = 0, segs = 0;
	size_t at = SIZE_MAX, done = 0;
	char buf[COLO_ERR_MAX + 64];
	int rc = 0;

	colo_image_init(&img);
	for (size_t i = 0; i < rec->n && rc == 0; i++) {
		const struct colo_rec_entry *x = &rec->e[i];

		/* Records of a segment follow its keyframe in the index: each
		 * moves the state of the one before. */
		if (x->keyframe || (at != SIZE_MAX && at + 1 == i && rec->e[at].key == x->key)) {
			rc = step(rec, i, &img, err);
		} else {
			colo_image_free(&img);
			rc = state_at(rec, i, &img, err);
		}
		if (rc == 0)
			rc = check_devices(&img, x, err);
		if (rc != 0) {
			json_object_set_new(d, "failed_seq", jint(x->seq));
			break;
		}
		at = i;
		done++;
		bytes += x->length;
		keys += x->keyframe;
		segs += i == 0 || x->segment != rec->e[i - 1].segment;
	}
	colo_image_free(&img);
	if (rec->torn_bytes)
		json_array_append_new(problems, jtext(rec->note));
	if (rec->unreachable) {
		if (rec->torn_bytes)
			snprintf(buf, sizeof(buf), "%zu index %s unreachable (bytes missing, or "
				 "no keyframe before them)", rec->unreachable,
				 plural(rec->unreachable, "entry", "entries"));
		else
			snprintf(buf, sizeof(buf), "%zu index %s unreachable; the first: %s",
				 rec->unreachable, plural(rec->unreachable, "entry", "entries"),
				 rec->note);
		json_array_append_new(problems, jtext(buf));
	}
	if (rc == 0 && json_array_size(problems))
		rc = colo_err_set(err, EINVAL, "%s", json_string_value(json_array_get(problems, 0)));
	json_object_set_new(d, "dir", jtext(rec->dir));
	json_object_set_new(d, "ok", json_boolean(rc == 0));
	if (rc != 0)
		json_object_set_new(d, "error", jtext(err->msg));
	json_object_set_new(d, "checkpoints", jint(done));
	json_object_set_new(d, "keyframes", jint(keys));
	json_object_set_new(d, "segments", jint(segs));
	json_object_set_new(d, "bytes", jint(bytes));
	json_object_set_new(d, "problems", problems);
	json_object_set_new(d, "unreferenced_segments", unreferenced(rec));
	*doc = d;
	return rc;
}

void colo_replay_verify_text(const json_t *d, FILE *out)
{
	const json_t *unref = json_object_get(d, "unreferenced_segments");
	json_int_t n = geti(d, "checkpoints"), segs = geti(d, "segments");

	/* A failed checkpoint is the one line on stderr. */
	if (json_object_get(d, "failed_seq"))
		return;
	fprintf(out, "%" JSON_INTEGER_FORMAT " %s in %" JSON_INTEGER_FORMAT " %s verified, %"
		JSON_INTEGER_FORMAT " bytes\n", n, plural((uint64_t)n, "checkpoint", "checkpoints"),
		segs, plural((uint64_t)segs, "segment", "segments"), geti(d, "bytes"));
	for (size_t i = 0; i < json_array_size(unref); i++) {
		const json_t *o = json_array_get(unref, i);

		fprintf(out, "note: %s (%" JSON_INTEGER_FORMAT " bytes) is not referenced by any "
			"readable index entry\n", gets_(o, "file"), geti(o, "bytes"));
	}
}
