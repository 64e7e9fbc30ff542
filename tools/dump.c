/*
 * dump.c: `colo-replay dump` (see dump.h).
 *
 * Device payloads are not self-delimiting, so the vmdesc is found first,
 * from the end of the file (colo_vmdesc_locate), and each device section is
 * sized and decoded with its entry.  RAM sections are self-delimiting and
 * are counted page by page.  Then the stream reader walks the whole file:
 * any malformation stops the dump with the reader's one-line message.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dump.h"
#include "ramfmt.h"
#include "stream.h"
#include "vmdesc.h"

struct dump_block {
	char name[COLO_IDSTR_MAX + 1];
	uint64_t length;
	uint64_t pages[COLO_PAGE_KINDS];
};

struct dump {
	struct colo_vmdesc *vd;
	uint64_t vmdesc_at;                  /* where it was found from the end */
	bool vmdesc_found;                   /* something vmdesc-like is there */
	struct colo_err vd_err;              /* why it did not parse */
	bool vmdesc_seen;                    /* the stream reached it */
	struct colo_ram_reader rr;
	json_t *doc;
	json_t *items;
	json_t *cur;                         /* item of the current section */
	const struct colo_vmdesc_device *dev;
	struct dump_block *blocks;           /* every block any MEM_SIZE named */
	size_t nblocks;
	size_t *map;                         /* MEM_SIZE index -> blocks[] */
	uint64_t sec_pages[COLO_PAGE_KINDS];
	uint64_t pages[COLO_PAGE_KINDS];
	unsigned sections[5];
	unsigned devices;
	unsigned commands;
};

/*
 * Names from the stream are bytes, not necessarily UTF-8: a byte that is
 * not valid UTF-8 is shown as the text \xNN, so the name is never dropped.
 */
json_t *colo_dump_name_json(const char *s)
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

json_t *colo_dump_pages_json(const uint64_t *pages)
{
	json_t *o = json_object();

	for (int k = 0; k < COLO_PAGE_KINDS; k++)
		if (pages[k])
			json_object_set_new(o, colo_page_kind_name((enum colo_page_kind)k),
					    json_integer((json_int_t)pages[k]));
	return o;
}

static json_t *new_item(struct dump *d, const char *kind, uint64_t offset, int depth)
{
	json_t *it = json_object();

	json_object_set_new(it, "offset", json_integer((json_int_t)offset));
	json_object_set_new(it, "kind", json_string(kind));
	if (depth)
		json_object_set_new(it, "depth", json_integer(depth));
	json_array_append_new(d->items, it);
	return it;
}

static int on_header(void *ud, uint32_t version, struct colo_err *err)
{
	struct dump *d = ud;
	json_t *h = json_object();

	(void)err;
	json_object_set_new(h, "magic", json_string("QEVM"));
	json_object_set_new(h, "version", json_integer(version));
	json_object_set_new(d->doc, "header", h);
	return 0;
}

static int on_configuration(void *ud, const struct colo_stream_config *c,
			    uint64_t offset, struct colo_err *err)
{
	struct dump *d = ud;
	json_t *o = json_object(), *caps = json_array();

	(void)err;
	json_object_set_new(o, "offset", json_integer((json_int_t)offset));
	json_object_set_new(o, "name", colo_dump_name_json(c->name));
	for (uint32_t i = 0; i < c->caps_count; i++)
		json_array_append_new(caps, colo_dump_name_json(c->caps[i].str));
	json_object_set_new(o, "capabilities", caps);
	if (c->has_page_bits)
		json_object_set_new(o, "target_page_bits", json_integer(c->target_page_bits));
	if (c->has_uuid) {
		char hex[33];

		for (int i = 0; i < 16; i++)
			snprintf(hex + 2 * i, 3, "%02x", c->uuid[i]);
		json_object_set_new(o, "uuid", json_string(hex));
	}
	json_object_set_new(d->doc, "configuration", o);
	d->rr.ignore_shared = colo_stream_config_has_cap(c, "x-ignore-shared");
	return 0;
}

static int device_payload(void *ctx, const struct colo_section_info *s,
			  struct colo_in *in, struct colo_err *err)
{
	struct dump *d = ctx;
	uint64_t bytes = d->dev->desc.bytes;
	struct colo_in sub;
	json_t *dev;
	int r;

	if (colo_in_avail(in) < bytes) {
		if (in->final)
			return colo_err_set(err, EPROTO, "device section %" PRIu32 " '%s' "
					    "at offset %" PRIu64 ": its vmdesc entry "
					    "describes %" PRIu64 " payload bytes, the "
					    "stream ends after %zu", s->section_id,
					    s->idstr, s->offset, bytes, colo_in_avail(in));
		return colo_in_short(in, (size_t)bytes);
	}
	colo_in_init(&sub, in->p + in->pos, (size_t)bytes, colo_in_offset(in), true);
	r = colo_vmdesc_decode(&d->dev->desc, &sub, &dev, err);
	if (r) {
		colo_err_prefix(err, "device section %" PRIu32 " '%s'", s->section_id,
				s->idstr);
		return r;
	}
	json_object_set_new(d->cur, "device", dev);
	in->pos += (size_t)bytes;
	d->devices++;
	return 0;
}

static int on_section(void *ud, const struct colo_section_info *s,
		      struct colo_section_handler *h, struct colo_err *err)
{
	struct dump *d = ud;
	json_t *it = new_item(d, "section", s->offset, s->depth);

	d->cur = it;
	json_object_set_new(it, "type", json_string(colo_stream_section_type_name(s->type)));
	json_object_set_new(it, "section_id", json_integer(s->section_id));
	json_object_set_new(it, "idstr", colo_dump_name_json(s->idstr));
	json_object_set_new(it, "instance_id", json_integer(s->instance_id));
	json_object_set_new(it, "version_id", json_integer(s->version_id));
	json_object_set_new(it, "payload_offset", json_integer((json_int_t)s->payload_offset));
	if (s->type != COLO_SEC_FULL) {
		if (strcmp(s->idstr, COLO_RAM_IDSTR) == 0) {
			memset(d->sec_pages, 0, sizeof(d->sec_pages));
			h->payload = colo_ram_reader_payload;
			h->ctx = &d->rr;
		}
		return 0;
	}
	if (!d->vd && d->vmdesc_found)
		return colo_err_set(err, EPROTO, "device section %" PRIu32 " '%s' at "
				    "offset %" PRIu64 " cannot be decoded: the vmdesc at "
				    "offset %" PRIu64 " is invalid: %s", s->section_id,
				    s->idstr, s->offset, d->vmdesc_at, d->vd_err.msg);
	if (!d->vd)
		return colo_err_set(err, EPROTO, "device section %" PRIu32 " '%s' at "
				    "offset %" PRIu64 " cannot be decoded: the stream "
				    "has no vmdesc", s->section_id, s->idstr, s->offset);
	d->dev = colo_vmdesc_find(d->vd, s->idstr, s->instance_id);
	if (!d->dev)
		return colo_err_set(err, EPROTO, "device section %" PRIu32 " '%s' "
				    "instance %" PRIu32 " at offset %" PRIu64 " has no "
				    "entry in the vmdesc", s->section_id, s->idstr,
				    s->instance_id, s->offset);
	h->payload = device_payload;
	h->ctx = d;
	return 0;
}

static int on_section_done(void *ud, const struct colo_section_info *s,
			   struct colo_err *err)
{
	struct dump *d = ud;

	(void)err;
	json_object_set_new(d->cur, "payload_size", json_integer((json_int_t)s->payload_len));
	if (s->type != COLO_SEC_FULL)
		json_object_set_new(d->cur, "pages", colo_dump_pages_json(d->sec_pages));
	if (s->type >= COLO_SEC_START && s->type <= COLO_SEC_FULL)
		d->sections[s->type]++;
	d->cur = NULL;
	return 0;
}

static int on_command(void *ud, const struct colo_command_info *c, struct colo_err *err)
{
	struct dump *d = ud;
	json_t *it = new_item(d, "command", c->offset, c->depth);

	(void)err;
	json_object_set_new(it, "command", json_string(colo_stream_command_name(c->cmd)));
	if (c->cmd == COLO_CMD_PING)
		json_object_set_new(it, "value", json_integer(c->value));
	if (c->cmd == COLO_CMD_PACKAGED)
		json_object_set_new(it, "length", json_integer(c->value));
	d->commands++;
	return 0;
}

static int on_eof(void *ud, int depth, uint64_t offset, struct colo_err *err)
{
	(void)err;
	new_item(ud, "eof", offset, depth);
	return 0;
}

static int on_vmdesc(void *ud, const uint8_t *json, size_t len, uint64_t offset,
		     struct colo_err *err)
{
	struct dump *d = ud;
	json_t *it;

	if (d->vmdesc_found && offset == d->vmdesc_at && !d->vd)
		return colo_err_set(err, EPROTO, "VMDESCRIPTION at offset %" PRIu64
				    ": %s", offset, d->vd_err.msg);
	if (!d->vd || offset != d->vmdesc_at) {
		/*
		 * Not what was found from the end (bytes follow it, or it is
		 * no JSON object): fine as long as no device was decoded with
		 * something else.
		 */
		if (d->devices)
			return colo_err_set(err, EPROTO, "devices were decoded with "
					    "bytes at offset %" PRIu64 " that look like a "
					    "vmdesc, but the stream's VMDESCRIPTION is at "
					    "offset %" PRIu64, d->vmdesc_at, offset);
		colo_vmdesc_free(d->vd);
		d->vd = NULL;
		if (colo_vmdesc_parse((const char *)json, len, &d->vd, err)) {
			colo_err_prefix(err, "VMDESCRIPTION at offset %" PRIu64, offset);
			return -err->code;
		}
		d->vmdesc_at = offset;
	}
	d->vmdesc_seen = true;
	it = new_item(d, "vmdesc", offset, 0);
	json_object_set_new(it, "length", json_integer((json_int_t)len));
	json_object_set_new(it, "devices", json_integer(d->vd ? (json_int_t)d->vd->ndevs : 0));
	return 0;
}

static int on_mem_size(void *ud, const struct colo_ram_block_info *blocks, size_t n,
		       uint64_t total, struct colo_err *err)
{
	struct dump *d = ud;
	json_t *ms = json_object(), *jb = json_array();
	size_t *map = calloc(n ? n : 1, sizeof(*map));

	if (!map)
		return colo_err_set(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		size_t k;
		json_t *b = json_object();

		for (k = 0; k < d->nblocks; k++)
			if (strcmp(d->blocks[k].name, blocks[i].name) == 0)
				break;
		if (k == d->nblocks) {
			struct dump_block *nb = realloc(d->blocks, (k + 1) * sizeof(*nb));

			if (!nb) {
				free(map);
				json_decref(ms);
				json_decref(jb);
				json_decref(b);
				return colo_err_set(err, ENOMEM, "out of memory");
			}
			d->blocks = nb;
			memset(&nb[k], 0, sizeof(nb[k]));
			memcpy(nb[k].name, blocks[i].name, sizeof(nb[k].name));
			d->nblocks++;
		}
		d->blocks[k].length = blocks[i].length;
		map[i] = k;
		json_object_set_new(b, "name", colo_dump_name_json(blocks[i].name));
		json_object_set_new(b, "length", json_integer((json_int_t)blocks[i].length));
		if (d->rr.ignore_shared)
			json_object_set_new(b, "addr", json_integer((json_int_t)blocks[i].addr));
		json_array_append_new(jb, b);
	}
	free(d->map);
	d->map = map;
	json_object_set_new(ms, "total", json_integer((json_int_t)total));
	json_object_set_new(ms, "blocks", jb);
	if (d->cur)
		json_object_set_new(d->cur, "mem_size", ms);
	else
		json_decref(ms);
	return 0;
}

static int on_page(void *ud, const struct colo_ram_page *p, struct colo_err *err)
{
	struct dump *d = ud;

	(void)err;
	d->blocks[d->map[p->block_index]].pages[p->kind]++;
	d->sec_pages[p->kind]++;
	d->pages[p->kind]++;
	return 0;
}

static const struct colo_stream_ops dump_ops = {
	.header = on_header,
	.configuration = on_configuration,
	.section = on_section,
	.section_done = on_section_done,
	.command = on_command,
	.eof = on_eof,
	.vmdesc = on_vmdesc,
};

static void finish_doc(struct dump *d, uint64_t consumed)
{
	json_t *blocks = json_array(), *sum = json_object(), *secs = json_object();

	for (size_t i = 0; i < d->nblocks; i++) {
		json_t *b = json_object();

		json_object_set_new(b, "name", colo_dump_name_json(d->blocks[i].name));
		json_object_set_new(b, "length", json_integer((json_int_t)d->blocks[i].length));
		json_object_set_new(b, "pages", colo_dump_pages_json(d->blocks[i].pages));
		json_array_append_new(blocks, b);
	}
	json_object_set_new(d->doc, "ram_blocks", blocks);
	for (unsigned t = COLO_SEC_START; t <= COLO_SEC_FULL; t++)
		json_object_set_new(secs, colo_stream_section_type_name(t),
				    json_integer(d->sections[t]));
	json_object_set_new(sum, "sections", secs);
	json_object_set_new(sum, "devices", json_integer(d->devices));
	json_object_set_new(sum, "commands", json_integer(d->commands));
	json_object_set_new(sum, "pages", colo_dump_pages_json(d->pages));
	json_object_set_new(sum, "bytes_read", json_integer((json_int_t)consumed));
	json_object_set_new(d->doc, "summary", sum);
}

int colo_dump_buffer(const uint8_t *data, size_t len, size_t (*piece)(void *ctx),
		     void *ctx, struct json_t **doc, struct colo_err *err)
{
	struct colo_ram_sink sink = { on_mem_size, on_page, NULL };
	struct colo_stream_reader *r;
	uint64_t consumed = 0;
	struct dump d;
	size_t vat;
	int rc = 0;

	*doc = NULL;
	memset(&d, 0, sizeof(d));
	sink.ud = &d;
	colo_ram_reader_init(&d.rr, &sink, COLO_PAGE_KINDS_ALL);
	/* Errors of the vmdesc count only where the stream needs it. */
	colo_err_clear(&d.vd_err);
	if (colo_vmdesc_locate(data, len, &vat) == 0) {
		d.vmdesc_found = true;
		d.vmdesc_at = vat;
		/* colo_vmdesc_locate() checked that the length fits the file. */
		if (colo_vmdesc_parse((const char *)data + vat + 5,
				      colo_load_be32(data + vat + 1), &d.vd, &d.vd_err))
			d.vd = NULL;
	}
	d.doc = json_object();
	d.items = json_array();
	json_object_set_new(d.doc, "size", json_integer((json_int_t)len));
	json_object_set_new(d.doc, "header", json_null());
	json_object_set_new(d.doc, "configuration", json_null());
	json_object_set_new(d.doc, "items", d.items);
	r = colo_stream_reader_new(&dump_ops, &d, 0);
	if (!r) {
		rc = colo_err_set(err, ENOMEM, "out of memory");
		goto out;
	}
	for (size_t off = 0; off < len;) {
		size_t n = piece ? piece(ctx) : len - off;

		if (n == 0 || n > len - off)
			n = len - off;
		ssize_t got = colo_stream_reader_feed(r, data + off, n);

		if (got < 0 || (size_t)got != n)
			break;    /* without TRAILING_OK, feed takes all or fails */
		off += n;
	}
	if (colo_stream_reader_finish(r) < 0)
		rc = colo_err_set(err, colo_stream_reader_errcode(r), "%s",
				  colo_stream_reader_error(r));
	else if (d.devices && !d.vmdesc_seen)
		rc = colo_err_set(err, EPROTO, "the stream has no VMDESCRIPTION, but its "
				  "devices were decoded with bytes at offset %" PRIu64
				  " that look like one: the file is damaged", d.vmdesc_at);
	else
		json_object_set_new(d.doc, "footers",
				    json_boolean(colo_stream_reader_footers(r) == 1));
	consumed = colo_stream_reader_offset(r);
	colo_stream_reader_free(r);
	if (rc == 0)
		finish_doc(&d, consumed);
out:
	if (rc == 0)
		*doc = d.doc;
	else
		json_decref(d.doc);
	colo_vmdesc_free(d.vd);
	colo_ram_reader_free(&d.rr);
	free(d.blocks);
	free(d.map);
	return rc;
}

int colo_dump_file(const char *path, struct json_t **doc, struct colo_err *err)
{
	struct stat st;
	uint8_t *data;
	int fd, rc;

	*doc = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return colo_err_set(err, errno, "cannot open: %s", strerror(errno));
	if (fstat(fd, &st) < 0) {
		rc = colo_err_set(err, errno, "cannot stat: %s", strerror(errno));
		close(fd);
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return colo_err_set(err, EINVAL, "not a regular file");
	}
	if (st.st_size == 0) {
		close(fd);
		return colo_dump_buffer(NULL, 0, NULL, NULL, doc, err);
	}
	data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (data == MAP_FAILED)
		return colo_err_set(err, errno, "cannot map: %s", strerror(errno));
	rc = colo_dump_buffer(data, (size_t)st.st_size, NULL, NULL, doc, err);
	munmap(data, (size_t)st.st_size);
	return rc;
}

/* ---- text ---- */

static json_int_t jint(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static const char *jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

void colo_dump_print_pages(const json_t *pages, const char *one, FILE *out)
{
	const char *k;
	json_t *v;
	json_int_t total = 0;
	bool first = true;

	json_object_foreach((json_t *)pages, k, v)
		total += json_integer_value(v);
	fprintf(out, "%" JSON_INTEGER_FORMAT " %s", total, total == 1 ? one : "pages");
	json_object_foreach((json_t *)pages, k, v) {
		fprintf(out, "%s%" JSON_INTEGER_FORMAT " %s", first ? " (" : ", ",
			json_integer_value(v), k);
		first = false;
	}
	if (!first)
		fputc(')', out);
}

static int hexbyte(const char *p)
{
	static const char digits[] = "0123456789abcdef";
	const char *hi = strchr(digits, p[0]), *lo = strchr(digits, p[1]);

	return (int)((hi - digits) << 4 | (lo - digits));
}

/*
 * Values the dump could not turn into numbers are hex strings; those that
 * hold text (and NUL padding) print as text.  Other strings ("nan", a uint64
 * above INT64_MAX) print as they are.
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
	if (n > 32)
		fprintf(out, "%.64s... (%zu bytes)", hex, n);
	else
		fputs(n ? hex : "(empty)", out);
}

void colo_dump_print_value(const json_t *v, FILE *out)
{
	if (json_is_array(v)) {
		size_t n = json_array_size(v);

		fputc('[', out);
		for (size_t i = 0; i < n && i < 8; i++) {
			if (i)
				fputs(", ", out);
			colo_dump_print_value(json_array_get(v, i), out);
		}
		if (n > 8)
			fprintf(out, ", ... %zu more", n - 8);
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

static bool is_uint_string(const char *type)
{
	return strncmp(type, "uint", 4) == 0;
}

static void print_struct(const json_t *s, int indent, FILE *out);

static void print_field(const json_t *f, int indent, FILE *out)
{
	const char *type = jstr(f, "type");
	const json_t *vals = json_object_get(f, "values");
	const json_t *v = json_object_get(f, "value");
	char name[300];

	if (json_object_get(f, "index"))
		snprintf(name, sizeof(name), "%s[%" JSON_INTEGER_FORMAT "]",
			 jstr(f, "name"), jint(f, "index"));
	else if (vals)
		snprintf(name, sizeof(name), "%s[%" JSON_INTEGER_FORMAT "]",
			 jstr(f, "name"), jint(f, "array_len"));
	else
		snprintf(name, sizeof(name), "%s", jstr(f, "name"));
	fprintf(out, "%*s%-24s %-14s ", indent, "", name, type);
	if (vals) {
		size_t n = json_array_size(vals);

		if (json_is_object(json_array_get(vals, 0))) {
			fprintf(out, "%s\n", jstr(json_array_get(vals, 0), "vmsd_name"));
			for (size_t i = 0; i < n; i++) {
				fprintf(out, "%*s[%zu]\n", indent + 2, "", i);
				print_struct(json_array_get(vals, i), indent + 4, out);
			}
			return;
		}
		colo_dump_print_value(vals, out);
		fputc('\n', out);
		return;
	}
	if (json_is_object(v)) {
		fprintf(out, "%s\n", jstr(v, "vmsd_name"));
		print_struct(v, indent + 2, out);
		return;
	}
	if (json_is_string(v) && is_uint_string(type))
		fputs(json_string_value(v), out);       /* uint64 above INT64_MAX */
	else
		colo_dump_print_value(v, out);
	fputc('\n', out);
}

static void print_struct(const json_t *s, int indent, FILE *out)
{
	const json_t *fields = json_object_get(s, "fields");
	const json_t *subs = json_object_get(s, "subsections");

	for (size_t i = 0; i < json_array_size(fields); i++)
		print_field(json_array_get(fields, i), indent, out);
	for (size_t i = 0; i < json_array_size(subs); i++) {
		const json_t *sub = json_array_get(subs, i);

		fprintf(out, "%*ssubsection '%s' version %" JSON_INTEGER_FORMAT "\n",
			indent, "", jstr(sub, "vmsd_name"), jint(sub, "stream_version"));
		print_struct(sub, indent + 2, out);
	}
}

static void print_item(const json_t *it, FILE *out)
{
	const char *kind = jstr(it, "kind");
	json_int_t depth = jint(it, "depth");

	fprintf(out, "@%-9" JSON_INTEGER_FORMAT " %s", jint(it, "offset"),
		depth ? "  (in PACKAGED) " : "");
	if (strcmp(kind, "section") == 0) {
		const char *type = jstr(it, "type");
		const json_t *ms = json_object_get(it, "mem_size");
		const json_t *pages = json_object_get(it, "pages");
		const json_t *dev = json_object_get(it, "device");

		fprintf(out, "%-6s section %-3" JSON_INTEGER_FORMAT " '%s'", type,
			jint(it, "section_id"), jstr(it, "idstr"));
		if (strcmp(type, "START") == 0 || strcmp(type, "FULL") == 0)
			fprintf(out, " instance %" JSON_INTEGER_FORMAT " version %"
				JSON_INTEGER_FORMAT, jint(it, "instance_id"),
				jint(it, "version_id"));
		fprintf(out, ", payload %" JSON_INTEGER_FORMAT " bytes", jint(it, "payload_size"));
		if (pages && json_object_size(pages)) {
			fputs(", ", out);
			colo_dump_print_pages(pages, "pages", out);
		}
		fputc('\n', out);
		if (ms) {
			const json_t *bl = json_object_get(ms, "blocks");

			fprintf(out, "%12sMEM_SIZE %" JSON_INTEGER_FORMAT " bytes in %zu blocks\n",
				"", jint(ms, "total"), json_array_size(bl));
			for (size_t i = 0; i < json_array_size(bl); i++)
				fprintf(out, "%14s%-32s %" JSON_INTEGER_FORMAT " bytes\n", "",
					jstr(json_array_get(bl, i), "name"),
					jint(json_array_get(bl, i), "length"));
		}
		if (dev)
			print_struct(dev, 12, out);
	} else if (strcmp(kind, "command") == 0) {
		fprintf(out, "COMMAND %s", jstr(it, "command"));
		if (json_object_get(it, "value"))
			fprintf(out, " %" JSON_INTEGER_FORMAT, jint(it, "value"));
		if (json_object_get(it, "length"))
			fprintf(out, ", %" JSON_INTEGER_FORMAT " bytes of nested stream",
				jint(it, "length"));
		fputc('\n', out);
	} else if (strcmp(kind, "eof") == 0) {
		fputs("EOF\n", out);
	} else if (strcmp(kind, "vmdesc") == 0) {
		fprintf(out, "VMDESCRIPTION %" JSON_INTEGER_FORMAT " bytes, %"
			JSON_INTEGER_FORMAT " devices\n", jint(it, "length"),
			jint(it, "devices"));
	}
}

void colo_dump_print_text(const struct json_t *doc, FILE *out)
{
	const json_t *h = json_object_get(doc, "header");
	const json_t *c = json_object_get(doc, "configuration");
	const json_t *items = json_object_get(doc, "items");
	const json_t *blocks = json_object_get(doc, "ram_blocks");
	const json_t *sum = json_object_get(doc, "summary");
	const json_t *secs = json_object_get(sum, "sections");
	const char *k;
	json_t *v;

	fprintf(out, "header         %s version %" JSON_INTEGER_FORMAT ", %s\n",
		jstr(h, "magic"), jint(h, "version"),
		json_is_true(json_object_get(doc, "footers")) ? "section footers"
							       : "no section footers");
	if (json_is_object(c)) {
		const json_t *caps = json_object_get(c, "capabilities");

		fprintf(out, "configuration  machine '%s'", jstr(c, "name"));
		for (size_t i = 0; i < json_array_size(caps); i++)
			fprintf(out, "%s%s", i ? ", " : ", capabilities ",
				json_string_value(json_array_get(caps, i)));
		if (json_object_get(c, "target_page_bits"))
			fprintf(out, ", target page bits %" JSON_INTEGER_FORMAT,
				jint(c, "target_page_bits"));
		if (json_object_get(c, "uuid"))
			fprintf(out, ", uuid %s", jstr(c, "uuid"));
		fputc('\n', out);
	} else {
		fputs("configuration  none\n", out);
	}
	for (size_t i = 0; i < json_array_size(items); i++)
		print_item(json_array_get(items, i), out);
	fputs("RAM blocks\n", out);
	for (size_t i = 0; i < json_array_size(blocks); i++) {
		const json_t *b = json_array_get(blocks, i);

		fprintf(out, "  %-32s %12" JSON_INTEGER_FORMAT " bytes  ", jstr(b, "name"),
			jint(b, "length"));
		colo_dump_print_pages(json_object_get(b, "pages"), "pages", out);
		fputc('\n', out);
	}
	fputs("summary        sections:", out);
	json_object_foreach((json_t *)secs, k, v)
		fprintf(out, " %" JSON_INTEGER_FORMAT " %s", json_integer_value(v), k);
	fprintf(out, "; %" JSON_INTEGER_FORMAT " devices decoded; %" JSON_INTEGER_FORMAT
		" commands; ", jint(sum, "devices"), jint(sum, "commands"));
	colo_dump_print_pages(json_object_get(sum, "pages"), "pages", out);
	fprintf(out, "; read %" JSON_INTEGER_FORMAT " of %" JSON_INTEGER_FORMAT " bytes\n",
		jint(sum, "bytes_read"), jint(doc, "size"));
}
