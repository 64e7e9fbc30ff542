/*
 * stream_reader.c: the push parser of stream.h.
 *
 * The stream is parsed in units (header, configuration, section header,
 * payload units chosen by the section's handler, footer, command, vmdesc).
 * A unit is parsed only when all of its bytes are present: when the window
 * ends first, the parse stops with -EAGAIN and the number of bytes the unit
 * needs, nothing is reported, and the unit is parsed again once that many
 * bytes are there.  Callbacks therefore fire exactly once per unit, however
 * the input was split.
 *
 * Bytes are parsed in place from the caller's buffer; only an unfinished
 * unit is copied (into ibuf), and ibuf is topped up with exactly the bytes
 * the unit needs, after which parsing returns to the caller's buffer.
 *
 * PACKAGED commands carry a nested stream (items, no header) of at most
 * 16 MiB: it is collected whole and parsed with the same handlers at depth 1.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream_int.h"

enum pst {
	ST_HEADER,
	ST_CONFIG,
	ST_ITEM,
	ST_PAYLOAD,
	ST_FOOTER,
	ST_AFTER_EOF,
	ST_NESTED_END,
	ST_DONE,
};

/* What the unit being parsed is, for "truncated inside ..." messages. */
enum unit {
	U_HEADER,
	U_CONFIG,
	U_ITEM,
	U_SECHDR,
	U_PAYLOAD,
	U_FOOTER,
	U_COMMAND,
	U_PACKAGE,
	U_VMDESC,
};

struct pstate {
	enum pst st;
	enum unit unit;
	uint8_t unit_type;
	struct colo_section_info cur;
	struct colo_section_handler h;
};

struct sec_entry {
	uint32_t id;
	uint32_t instance_id;
	uint32_t version_id;
	char idstr[COLO_IDSTR_MAX + 1];
};

struct colo_stream_reader {
	const struct colo_stream_ops *ops;
	void *ud;
	unsigned flags;
	struct pstate ps[2];
	int footers;                 /* -1 unknown, 0 absent, 1 present */
	struct colo_buf ibuf;        /* unfinished unit */
	size_t need;                 /* bytes that unit needs */
	uint64_t offset;             /* stream offset of the first unconsumed byte */
	struct sec_entry *secs;
	size_t nsecs;
	struct colo_err err;
	bool failed;
	struct colo_stream_config config;
	bool have_config;
};

#define TRY(x) do { int rc_ = (x); if (rc_) return rc_; } while (0)

static int fail(struct colo_stream_reader *r, int rc)
{
	if (!colo_err_isset(&r->err))
		colo_err_set(&r->err, rc < 0 ? -rc : EPROTO,
			     "stream refused at offset %" PRIu64, r->offset);
	r->failed = true;
	return -r->err.code;
}

static const char *describe(const struct pstate *ps, char *buf, size_t len)
{
	switch (ps->unit) {
	case U_HEADER:
		return "the stream header";
	case U_CONFIG:
		return "the configuration section";
	case U_ITEM:
		return "an item";
	case U_SECHDR:
		snprintf(buf, len, "the header of a %s section",
			 colo_stream_section_type_name(ps->unit_type));
		return buf;
	case U_PAYLOAD:
		snprintf(buf, len, "the payload of section %" PRIu32 " '%s'",
			 ps->cur.section_id, ps->cur.idstr);
		return buf;
	case U_FOOTER:
		snprintf(buf, len, "the footer of section %" PRIu32 " '%s'",
			 ps->cur.section_id, ps->cur.idstr);
		return buf;
	case U_COMMAND:
		return "a command";
	case U_PACKAGE:
		return "the data of a PACKAGED command";
	case U_VMDESC:
		return "the vmdesc";
	}
	return "an item";
}

static struct sec_entry *find_section(struct colo_stream_reader *r, uint32_t id)
{
	for (size_t i = 0; i < r->nsecs; i++)
		if (r->secs[i].id == id)
			return &r->secs[i];
	return NULL;
}

static int remember_section(struct colo_stream_reader *r,
			    const struct colo_section_info *s)
{
	struct sec_entry *e = find_section(r, s->section_id);

	if (!e) {
		if (r->nsecs >= COLO_SECTIONS_MAX)
			return colo_err_set(&r->err, E2BIG, "more than %d section ids "
					    "in one stream at offset %" PRIu64,
					    COLO_SECTIONS_MAX, s->offset);
		if ((r->nsecs & (r->nsecs - 1)) == 0) {
			size_t cap = r->nsecs ? r->nsecs * 2 : 8;
			struct sec_entry *n = realloc(r->secs, cap * sizeof(*n));

			if (!n)
				return colo_err_set(&r->err, ENOMEM, "out of memory");
			r->secs = n;
		}
		e = &r->secs[r->nsecs++];
	}
	e->id = s->section_id;
	e->instance_id = s->instance_id;
	e->version_id = s->version_id;
	memcpy(e->idstr, s->idstr, sizeof(e->idstr));
	return 0;
}

static int step_header(struct colo_stream_reader *r, struct pstate *ps,
		       struct colo_in *in)
{
	uint32_t magic, version;

	ps->unit = U_HEADER;
	TRY(colo_in_be32(in, &magic));
	if (magic != COLO_STREAM_MAGIC)
		return colo_err_set(&r->err, EPROTO, "bad magic 0x%08" PRIx32 " at offset %"
				    PRIu64 ": not a savevm stream (expected 0x5145564d"
				    " \"QEVM\")", magic, colo_in_offset(in) - 4);
	TRY(colo_in_be32(in, &version));
	if (version == COLO_STREAM_VERSION_OBSOLETE)
		return colo_err_set(&r->err, EPROTO, "stream version 2 at offset %" PRIu64
				    " is the obsolete savevm v2 format; only version 3"
				    " is supported", colo_in_offset(in) - 4);
	if (version != COLO_STREAM_VERSION)
		return colo_err_set(&r->err, EPROTO, "unsupported stream version %" PRIu32
				    " at offset %" PRIu64 " (expected 3)", version,
				    colo_in_offset(in) - 4);
	if (r->ops->header)
		TRY(r->ops->header(r->ud, version, &r->err));
	ps->st = ST_CONFIG;
	return 0;
}

static int step_config(struct colo_stream_reader *r, struct pstate *ps,
		       struct colo_in *in)
{
	uint64_t at = colo_in_offset(in);
	uint8_t t;
	int rc;

	rc = colo_in_peek(in, 0, &t);
	if (rc == -ENODATA || (rc == 0 && t != COLO_SEC_CONFIGURATION)) {
		ps->st = ST_ITEM;       /* QEMU can be told not to send one */
		return 0;
	}
	if (rc)
		return rc;
	ps->unit = U_CONFIG;
	in->pos++;
	rc = colo_vmstate_load(in, &colo__vmstate_configuration, &r->config, 0, &r->err);
	if (rc == -EAGAIN)
		return rc;
	if (rc) {
		colo_err_prefix(&r->err, "configuration section at offset %" PRIu64, at);
		return rc;
	}
	r->have_config = true;
	if (r->ops->configuration)
		TRY(r->ops->configuration(r->ud, &r->config, at, &r->err));
	ps->st = ST_ITEM;
	return 0;
}

static int begin_section(struct colo_stream_reader *r, struct pstate *ps,
			 struct colo_in *in)
{
	struct colo_section_info *s = &ps->cur;

	s->payload_offset = colo_in_offset(in);
	s->payload_len = 0;
	memset(&ps->h, 0, sizeof(ps->h));
	if (r->ops->section)
		TRY(r->ops->section(r->ud, s, &ps->h, &r->err));
	if (!ps->h.payload) {
		if (s->type == COLO_SEC_FULL)
			return colo_err_set(&r->err, ENOENT, "unknown device '%s' instance %"
					    PRIu32 " (section %" PRIu32 " at offset %"
					    PRIu64 ")", s->idstr, s->instance_id,
					    s->section_id, s->offset);
		return colo_err_set(&r->err, ENOENT, "unknown iterative section '%s' "
				    "(%s section %" PRIu32 " at offset %" PRIu64 ")",
				    s->idstr, colo_stream_section_type_name(s->type),
				    s->section_id, s->offset);
	}
	ps->st = ST_PAYLOAD;
	return 0;
}

static int section_header(struct colo_stream_reader *r, struct pstate *ps,
			  struct colo_in *in, uint8_t type, uint64_t at, int depth)
{
	struct colo_section_info *s = &ps->cur;
	const uint8_t *name;
	uint8_t len;
	uint32_t id;

	ps->unit = U_SECHDR;
	ps->unit_type = type;
	TRY(colo_in_be32(in, &id));
	memset(s, 0, sizeof(*s));
	s->type = type;
	s->section_id = id;
	s->offset = at;
	s->depth = depth;
	if (type == COLO_SEC_START || type == COLO_SEC_FULL) {
		TRY(colo_in_u8(in, &len));
		TRY(colo_in_bytes(in, &name, len));
		TRY(colo_in_be32(in, &s->instance_id));
		TRY(colo_in_be32(in, &s->version_id));
		memcpy(s->idstr, name, len);
		s->idstr[len] = '\0';
		if (memchr(name, '\0', len))
			return colo_err_set(&r->err, EPROTO, "section name with a NUL "
					    "byte in %s section %" PRIu32 " at offset %"
					    PRIu64, colo_stream_section_type_name(type),
					    id, at);
		TRY(remember_section(r, s));
	} else {
		const struct sec_entry *e = find_section(r, id);

		if (!e)
			return colo_err_set(&r->err, EPROTO, "%s section for unknown "
					    "section id %" PRIu32 " at offset %" PRIu64,
					    colo_stream_section_type_name(type), id, at);
		memcpy(s->idstr, e->idstr, sizeof(s->idstr));
		s->instance_id = e->instance_id;
		s->version_id = e->version_id;
	}
	return begin_section(r, ps, in);
}

static int run_nested(struct colo_stream_reader *r, const uint8_t *p,
		      size_t len, uint64_t off);

static int command(struct colo_stream_reader *r, struct pstate *ps,
		   struct colo_in *in, uint64_t at, int depth)
{
	struct colo_command_info c;
	const char *name;
	int fixed;

	ps->unit = U_COMMAND;
	memset(&c, 0, sizeof(c));
	c.offset = at;
	c.depth = depth;
	TRY(colo_in_be16(in, &c.cmd));
	TRY(colo_in_be16(in, &c.len));
	name = colo_stream_command_name(c.cmd);
	switch (c.cmd) {
	case COLO_CMD_OPEN_RETURN_PATH:
	case COLO_CMD_ENABLE_COLO:
		fixed = 0;
		break;
	case COLO_CMD_PING:
	case COLO_CMD_PACKAGED:
		fixed = 4;
		break;
	case COLO_CMD_POSTCOPY_ADVISE:
	case COLO_CMD_POSTCOPY_LISTEN:
	case COLO_CMD_POSTCOPY_RUN:
	case COLO_CMD_POSTCOPY_RAM_DISCARD:
	case COLO_CMD_POSTCOPY_RESUME:
	case COLO_CMD_RECV_BITMAP:
		return colo_err_set(&r->err, ENOTSUP, "command %u (%s) at offset %" PRIu64
				    " is not supported", c.cmd, name, at);
	default:
		return colo_err_set(&r->err, EPROTO, "unknown command %u at offset %"
				    PRIu64, c.cmd, at);
	}
	if (c.len != fixed)
		return colo_err_set(&r->err, EPROTO, "command %s at offset %" PRIu64
				    " has length %u, expected %d", name, at, c.len, fixed);
	TRY(colo_in_bytes(in, &c.data, c.len));
	if (fixed == 4)
		c.value = colo_load_be32(c.data);
	if (c.cmd == COLO_CMD_PACKAGED) {
		const uint8_t *pkg;
		uint64_t pkg_at = colo_in_offset(in);

		if (depth > 0)
			return colo_err_set(&r->err, EPROTO, "PACKAGED command at offset %"
					    PRIu64 " inside PACKAGED data", at);
		if (c.value > COLO_PACKAGED_MAX)
			return colo_err_set(&r->err, EPROTO, "PACKAGED length %" PRIu32
					    " at offset %" PRIu64 " exceeds the %u-byte limit",
					    c.value, at, COLO_PACKAGED_MAX);
		if (in->final && c.value > colo_in_avail(in))
			return colo_err_set(&r->err, EPROTO, "PACKAGED length %" PRIu32
					    " at offset %" PRIu64 " runs past the end of the "
					    "stream (%zu bytes remain)", c.value, at,
					    colo_in_avail(in));
		ps->unit = U_PACKAGE;
		TRY(colo_in_bytes(in, &pkg, c.value));
		if (r->ops->command)
			TRY(r->ops->command(r->ud, &c, &r->err));
		return run_nested(r, pkg, c.value, pkg_at);
	}
	if (r->ops->command)
		TRY(r->ops->command(r->ud, &c, &r->err));
	return 0;
}

static int step_item(struct colo_stream_reader *r, struct pstate *ps,
		     struct colo_in *in, int depth)
{
	uint64_t at = colo_in_offset(in);
	uint8_t t;

	ps->unit = U_ITEM;
	TRY(colo_in_u8(in, &t));
	switch (t) {
	case COLO_SEC_EOF:
		if (r->ops->eof)
			TRY(r->ops->eof(r->ud, depth, at, &r->err));
		if (depth > 0)
			ps->st = ST_NESTED_END;
		else if (r->flags & COLO_SR_NO_VMDESC)
			ps->st = ST_DONE;
		else
			ps->st = ST_AFTER_EOF;
		return 0;
	case COLO_SEC_START:
	case COLO_SEC_PART:
	case COLO_SEC_END:
	case COLO_SEC_FULL:
		return section_header(r, ps, in, t, at, depth);
	case COLO_SEC_COMMAND:
		return command(r, ps, in, at, depth);
	case COLO_SEC_VMDESC:
		return colo_err_set(&r->err, EPROTO, "VMDESCRIPTION at offset %" PRIu64
				    " comes before EOF", at);
	case COLO_SEC_CONFIGURATION:
		return colo_err_set(&r->err, EPROTO, "configuration section at offset %"
				    PRIu64 " is not the first item", at);
	case COLO_SEC_SUBSECTION:
		return colo_err_set(&r->err, EPROTO, "subsection marker at offset %"
				    PRIu64 " outside a device payload", at);
	case COLO_SEC_FOOTER:
		return colo_err_set(&r->err, EPROTO, "section footer at offset %" PRIu64
				    " outside a section", at);
	default:
		return colo_err_set(&r->err, EPROTO, "unknown section type 0x%02x at "
				    "offset %" PRIu64, t, at);
	}
}

static int step_payload(struct colo_stream_reader *r, struct pstate *ps,
			struct colo_in *in)
{
	int rc;

	ps->unit = U_PAYLOAD;
	rc = ps->h.payload(ps->h.ctx, &ps->cur, in, &r->err);
	if (rc)
		return rc;
	ps->cur.payload_len = colo_in_offset(in) - ps->cur.payload_offset;
	ps->st = ST_FOOTER;
	return 0;
}

static int step_footer(struct colo_stream_reader *r, struct pstate *ps,
		       struct colo_in *in)
{
	const struct colo_section_info *s = &ps->cur;
	uint64_t at = colo_in_offset(in);
	uint32_t id;
	uint8_t m = 0;
	int rc;

	ps->unit = U_FOOTER;
	if (r->footers != 0) {
		rc = colo_in_peek(in, 0, &m);
		if (rc == -EAGAIN)
			return rc;
		/* Footers are on or off for the whole stream: the first section
		 * decides, and 0x7e is no item type, so the guess is safe. */
		if (r->footers < 0)
			r->footers = rc == 0 && m == COLO_SEC_FOOTER;
	}
	if (r->footers == 1) {
		if (rc == -ENODATA)
			return colo_in_short(in, 5);
		if (m != COLO_SEC_FOOTER)
			return colo_err_set(&r->err, EPROTO, "section %" PRIu32 " '%s': "
					    "expected a footer at offset %" PRIu64
					    ", found 0x%02x", s->section_id, s->idstr,
					    at, m);
		in->pos++;
		TRY(colo_in_be32(in, &id));
		if (id != s->section_id)
			return colo_err_set(&r->err, EPROTO, "section %" PRIu32 " '%s': "
					    "footer at offset %" PRIu64 " names section %"
					    PRIu32, s->section_id, s->idstr, at, id);
	}
	if (r->ops->section_done)
		TRY(r->ops->section_done(r->ud, s, &r->err));
	ps->st = ST_ITEM;
	return 0;
}

static int step_after_eof(struct colo_stream_reader *r, struct pstate *ps,
			  struct colo_in *in)
{
	uint64_t at = colo_in_offset(in);
	const uint8_t *json;
	uint32_t len;
	uint8_t t;
	int rc;

	rc = colo_in_peek(in, 0, &t);
	if (rc == -ENODATA) {
		ps->st = ST_DONE;
		return 0;
	}
	if (rc)
		return rc;
	if (t != COLO_SEC_VMDESC) {
		if (r->flags & COLO_SR_TRAILING_OK) {
			ps->st = ST_DONE;
			return 0;
		}
		return colo_err_set(&r->err, EPROTO, "unexpected byte 0x%02x at offset %"
				    PRIu64 " after EOF (expected VMDESCRIPTION or the "
				    "end of the stream)", t, at);
	}
	ps->unit = U_VMDESC;
	in->pos++;
	TRY(colo_in_be32(in, &len));
	if (len > COLO_VMDESC_MAX)
		return colo_err_set(&r->err, EPROTO, "vmdesc length %" PRIu32 " at offset %"
				    PRIu64 " exceeds the %u-byte limit", len, at,
				    COLO_VMDESC_MAX);
	if (in->final && len > colo_in_avail(in))
		return colo_err_set(&r->err, EPROTO, "vmdesc length %" PRIu32 " at offset %"
				    PRIu64 " runs past the end of the stream (%zu bytes"
				    " remain)", len, at, colo_in_avail(in));
	TRY(colo_in_bytes(in, &json, len));
	if (r->ops->vmdesc)
		TRY(r->ops->vmdesc(r->ud, json, len, at, &r->err));
	ps->st = ST_DONE;
	return 0;
}

static int step(struct colo_stream_reader *r, struct pstate *ps,
		struct colo_in *in, int depth)
{
	switch (ps->st) {
	case ST_HEADER:
		return step_header(r, ps, in);
	case ST_CONFIG:
		return step_config(r, ps, in);
	case ST_ITEM:
		return step_item(r, ps, in, depth);
	case ST_PAYLOAD:
		return step_payload(r, ps, in);
	case ST_FOOTER:
		return step_footer(r, ps, in);
	case ST_AFTER_EOF:
		return step_after_eof(r, ps, in);
	case ST_NESTED_END:
	case ST_DONE:
		break;
	}
	return 0;
}

static int run_nested(struct colo_stream_reader *r, const uint8_t *p,
		      size_t len, uint64_t off)
{
	struct pstate *ps = &r->ps[1];
	struct colo_in in;
	char what[320];

	colo_in_init(&in, p, len, off, true);
	memset(ps, 0, sizeof(*ps));
	ps->st = ST_ITEM;
	for (;;) {
		int rc;

		if (ps->st == ST_NESTED_END) {
			if (in.pos != in.len)
				return colo_err_set(&r->err, EPROTO, "%zu bytes follow the "
						    "EOF inside PACKAGED data at offset %"
						    PRIu64, in.len - in.pos,
						    colo_in_offset(&in));
			return 0;
		}
		if (ps->st == ST_ITEM && in.pos == in.len)
			return 0;
		colo_in_set_mark(&in);
		rc = step(r, ps, &in, 1);
		if (rc == -EAGAIN)
			return colo_err_set(&r->err, EPROTO, "PACKAGED data (%zu bytes at "
					    "offset %" PRIu64 ") ends inside %s", len, off,
					    describe(ps, what, sizeof(what)));
		if (rc)
			return rc;
	}
}

/*
 * Parse units from `in` until the stream is done (1), a unit is incomplete
 * (0: in->pos is at its start and in->need says how much it wants) or an
 * error (< 0).
 */
static int run(struct colo_stream_reader *r, struct colo_in *in)
{
	struct pstate *ps = &r->ps[0];

	for (;;) {
		int rc;

		if (ps->st == ST_DONE)
			return 1;
		colo_in_set_mark(in);
		rc = step(r, ps, in, 0);
		if (rc == -EAGAIN) {
			colo_in_rewind(in);
			return 0;
		}
		if (rc)
			return fail(r, rc);
	}
}

struct colo_stream_reader *colo_stream_reader_new(const struct colo_stream_ops *ops,
						  void *ud, unsigned flags)
{
	struct colo_stream_reader *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->ops = ops;
	r->ud = ud;
	r->footers = -1;
	colo_buf_init(&r->ibuf);
	colo_err_clear(&r->err);
	colo_stream_reader_restart(r, flags);
	return r;
}

void colo_stream_reader_free(struct colo_stream_reader *r)
{
	if (!r)
		return;
	colo_buf_free(&r->ibuf);
	free(r->secs);
	free(r);
}

void colo_stream_reader_restart(struct colo_stream_reader *r, unsigned flags)
{
	r->flags = flags;
	/* A caller may have stopped the last stream with an error of its own. */
	r->failed = false;
	colo_err_clear(&r->err);
	memset(r->ps, 0, sizeof(r->ps));
	r->ps[0].st = flags & COLO_SR_NO_HEADER ? ST_ITEM : ST_HEADER;
	r->ps[0].unit = flags & COLO_SR_NO_HEADER ? U_ITEM : U_HEADER;
	colo_buf_reset(&r->ibuf);
	r->need = 0;
}

/* How many bytes trail depends on how they arrived: only say where. */
static ssize_t trailing(struct colo_stream_reader *r)
{
	colo_err_set(&r->err, EPROTO, "trailing data at offset %" PRIu64
		     " after the end of the stream", r->offset);
	r->failed = true;
	return -r->err.code;
}

ssize_t colo_stream_reader_feed(struct colo_stream_reader *r, const void *data,
				size_t len)
{
	const uint8_t *src = data;
	struct colo_in in;
	size_t used = 0;
	int rc;

	if (r->failed)
		return -r->err.code;
	if (r->ps[0].st == ST_DONE) {
		if (len && !(r->flags & COLO_SR_TRAILING_OK))
			return trailing(r);
		return 0;
	}
	/* Finish the unit waiting in ibuf, topping it up to what it needs. */
	while (r->ibuf.len > 0 && used < len) {
		size_t take = r->need - r->ibuf.len;

		if (take > len - used)
			take = len - used;
		colo_buf_put(&r->ibuf, src + used, take);
		if (!colo_buf_ok(&r->ibuf)) {
			colo_err_set(&r->err, ENOMEM, "out of memory buffering %zu bytes",
				     r->need);
			return fail(r, -ENOMEM);
		}
		used += take;
		if (r->ibuf.len < r->need)
			return (ssize_t)used;
		colo_in_init(&in, r->ibuf.data, r->ibuf.len, r->offset, false);
		rc = run(r, &in);
		if (rc < 0)
			return rc;
		r->offset += in.pos;
		if (rc == 1) {
			/* Only a look-ahead byte of this call can be left over. */
			size_t left = in.len - in.pos;

			colo_buf_reset(&r->ibuf);
			if ((left || used < len) && !(r->flags & COLO_SR_TRAILING_OK))
				return trailing(r);
			return (ssize_t)(used - left);
		}
		memmove(r->ibuf.data, r->ibuf.data + in.pos, in.len - in.pos);
		r->ibuf.len = in.len - in.pos;
		r->need = in.need;
	}
	if (used == len)
		return (ssize_t)used;
	/* Parse straight from the caller's bytes. */
	colo_in_init(&in, src + used, len - used, r->offset, false);
	rc = run(r, &in);
	if (rc < 0)
		return rc;
	r->offset += in.pos;
	used += in.pos;
	if (rc == 1) {
		if (used < len && !(r->flags & COLO_SR_TRAILING_OK))
			return trailing(r);
		return (ssize_t)used;
	}
	if (used < len)
		colo_buf_put(&r->ibuf, src + used, len - used);
	if (!colo_buf_ok(&r->ibuf)) {
		colo_err_set(&r->err, ENOMEM, "out of memory buffering %zu bytes", len - used);
		return fail(r, -ENOMEM);
	}
	r->need = in.need;
	return (ssize_t)len;
}

int colo_stream_reader_finish(struct colo_stream_reader *r)
{
	struct pstate *ps = &r->ps[0];
	struct colo_in in;
	char what[320];
	uint64_t end;
	int rc;

	if (r->failed)
		return -r->err.code;
	if (ps->st == ST_DONE)
		return 0;
	colo_in_init(&in, r->ibuf.data, r->ibuf.len, r->offset, true);
	rc = run(r, &in);
	if (rc < 0)
		return rc;
	r->offset += in.pos;
	end = r->offset + (in.len - in.pos);
	if (rc == 1) {
		colo_buf_reset(&r->ibuf);
		if (in.pos < in.len && !(r->flags & COLO_SR_TRAILING_OK))
			return (int)trailing(r);
		return 0;
	}
	if (ps->st == ST_HEADER && end == 0)
		colo_err_set(&r->err, EPROTO, "empty stream: no header at offset 0");
	else if (ps->unit == U_ITEM && in.pos == in.len)
		colo_err_set(&r->err, EPROTO, "stream ends at offset %" PRIu64
			     " without an EOF marker", end);
	else
	{
		/* need says what the next read wanted, not the whole unit. */
		size_t more = in.need > in.len - in.pos ? in.need - (in.len - in.pos) : 1;

		colo_err_set(&r->err, EPROTO, "truncated: stream ends at offset %" PRIu64
			     " inside %s (at least %zu more byte%s needed)", end,
			     describe(ps, what, sizeof(what)), more, more == 1 ? "" : "s");
	}
	r->failed = true;
	return -r->err.code;
}

bool colo_stream_reader_done(const struct colo_stream_reader *r)
{
	return r->ps[0].st == ST_DONE;
}

const char *colo_stream_reader_error(const struct colo_stream_reader *r)
{
	return r->err.msg;
}

int colo_stream_reader_errcode(const struct colo_stream_reader *r)
{
	return r->err.code;
}

uint64_t colo_stream_reader_offset(const struct colo_stream_reader *r)
{
	return r->offset;
}

const struct colo_stream_config *colo_stream_reader_config(const struct colo_stream_reader *r)
{
	return r->have_config ? &r->config : NULL;
}

int colo_stream_reader_footers(const struct colo_stream_reader *r)
{
	return r->footers;
}
