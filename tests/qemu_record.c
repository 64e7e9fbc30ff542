/* qemu_record.c: QEMU's COLO stream recorded and indexed (see qemu_record.h). */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "colomsg.h"
#include "qemu_record.h"
#include "qmp.h"
#include "vmdesc.h"

/* QEMU, on a loaded 2-core machine under ASan. */
#define QMP_CONNECT_MS 20000
#define QMP_COMMAND_MS 10000
#define ACCEPT_MS 10000
#define INITIAL_MS 60000
#define CKPT_MS 30000
#define QUIET_MS 100
#define STOP_MS 10000

/* ---- indexing ---- */

struct ix {
	struct qh_stream *s;
	struct colo_ram_reader rr;
	const struct colo_vmdesc *vd;   /* NULL: stop at the first device */
	uint64_t delta;                 /* stream offset - reader offset */
	struct qh_ckpt *ck;             /* the checkpoint being read */
};

static int ix_mem_size(void *ud, const struct colo_ram_block_info *b, size_t n,
		       uint64_t total, struct colo_err *err)
{
	struct ix *x = ud;
	struct qh_stream *s = x->s;

	(void)total;
	if (s->blocks || n == 0)
		return 0;
	s->blocks = calloc(n, sizeof(*b));
	if (!s->blocks)
		return colo_err_set(err, ENOMEM, "out of memory");
	memcpy(s->blocks, b, n * sizeof(*b));
	s->nblocks = n;
	s->block_len = s->mem_size + 8 + 1 + strlen(b[0].name);
	return 0;
}

static int ix_page(void *ud, const struct colo_ram_page *p, struct colo_err *err)
{
	struct ix *x = ud;
	size_t at = (size_t)(p->record_offset + x->delta);

	(void)err;
	if (x->ck) {
		if (x->ck->npages++ == 0)
			x->ck->first_page = at;
	} else if (x->s->initial_pages++ == 0) {
		x->s->first_page = at;
	}
	return 0;
}

static int ix_config(void *ud, const struct colo_stream_config *c, uint64_t offset,
		     struct colo_err *err)
{
	struct ix *x = ud;

	(void)err;
	x->s->config = (size_t)offset;
	snprintf(x->s->machine, sizeof(x->s->machine), "%s", c->name);
	return 0;
}

static int ix_command(void *ud, const struct colo_command_info *c, struct colo_err *err)
{
	struct ix *x = ud;

	(void)err;
	if (c->cmd == COLO_CMD_ENABLE_COLO)
		x->s->command = (size_t)c->offset;
	return 0;
}

static int skip_device(void *ctx, const struct colo_section_info *s, struct colo_in *in,
		       struct colo_err *err)
{
	const struct colo_vmdesc_device *d = ctx;

	(void)s;
	(void)err;
	if (colo_in_avail(in) < d->desc.bytes)
		return colo_in_short(in, (size_t)d->desc.bytes);
	in->pos += (size_t)d->desc.bytes;
	return 0;
}

static int ix_section(void *ud, const struct colo_section_info *sec,
		      struct colo_section_handler *h, struct colo_err *err)
{
	struct ix *x = ud;
	struct qh_stream *s = x->s;
	const struct colo_vmdesc_device *d;

	if (strcmp(sec->idstr, COLO_RAM_IDSTR) == 0) {
		if (sec->type == COLO_SEC_START && s->mem_size == SIZE_MAX)
			s->mem_size = (size_t)(sec->payload_offset + x->delta);
		if (x->ck && x->ck->ram == SIZE_MAX)
			x->ck->ram = (size_t)(sec->offset + x->delta);
		h->payload = colo_ram_reader_payload;
		h->ctx = &x->rr;
		return 0;
	}
	if (x->ck)
		return colo_err_set(err, EPROTO, "section '%s' in checkpoint %zu", sec->idstr,
				    (size_t)(x->ck - s->ckpt));
	if (s->devices == SIZE_MAX)
		s->devices = (size_t)sec->offset;
	if (!x->vd)
		return colo_err_set(err, ECANCELED, "devices");
	d = colo_vmdesc_find(x->vd, sec->idstr, sec->instance_id);
	if (sec->type != COLO_SEC_FULL || !d)
		return colo_err_set(err, EPROTO, "device section '%s' %" PRIu32 " (type %u) "
				    "not in the VMDESCRIPTION", sec->idstr, sec->instance_id,
				    sec->type);
	s->ndevices++;
	h->payload = skip_device;
	h->ctx = (void *)d;
	return 0;
}

static int ix_vmdesc(void *ud, const uint8_t *json, size_t len, uint64_t offset,
		     struct colo_err *err)
{
	struct ix *x = ud;

	(void)json;
	(void)len;
	(void)err;
	x->s->vmdesc = (size_t)offset;
	return 0;
}

static const struct colo_stream_ops ix_ops = {
	.configuration = ix_config,
	.section = ix_section,
	.command = ix_command,
	.vmdesc = ix_vmdesc,
};

static void ix_reset(struct ix *x, struct qh_stream *s)
{
	struct colo_ram_sink sink = { ix_mem_size, ix_page, x };
	uint8_t *data = s->data;
	size_t len = s->len;

	colo_ram_reader_free(&x->rr);
	free(s->blocks);
	memset(s, 0, sizeof(*s));
	s->data = data;
	s->len = len;
	s->config = s->command = s->mem_size = s->block_len = s->first_page = SIZE_MAX;
	s->devices = s->vmdesc = SIZE_MAX;
	x->s = s;
	x->delta = 0;
	x->ck = NULL;
	colo_ram_reader_init(&x->rr, &sink, COLO_PAGE_KINDS_QEMU);
}

/* Read the initial migration with vd; 0 when it ends exactly at `end`. */
static int ix_initial(struct ix *x, struct qh_stream *s, const struct colo_vmdesc *vd,
		      size_t end, struct colo_stream_reader **out, struct colo_err *err)
{
	struct colo_stream_reader *r;
	ssize_t n;

	ix_reset(x, s);
	x->vd = vd;
	r = colo_stream_reader_new(&ix_ops, x, COLO_SR_TRAILING_OK);
	if (!r)
		return colo_err_set(err, ENOMEM, "out of memory");
	n = colo_stream_reader_feed(r, s->data, s->len);
	if (n < 0 || (size_t)n != end || !colo_stream_reader_done(r)) {
		if (n < 0)
			colo_err_set(err, (int)-n, "%s", colo_stream_reader_error(r));
		else
			colo_err_set(err, EPROTO, "the initial migration does not end at %zu",
				     end);
		colo_stream_reader_free(r);
		return -EPROTO;
	}
	s->initial_len = end;
	*out = r;
	return 0;
}

static bool need(const struct qh_stream *s, size_t pos, size_t n)
{
	return s->len >= pos && s->len - pos >= n;
}

static uint32_t be32_at(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return be32toh(v);
}

/* One checkpoint at *pos: 1 whole, 0 cut short, <0 not a checkpoint. */
static int ix_ckpt(struct ix *x, struct colo_stream_reader *r, size_t *pos,
		   struct colo_err *err)
{
	struct qh_stream *s = x->s;
	struct qh_ckpt *ck = &s->ckpt[s->nckpts];
	size_t p = *pos;
	uint64_t n;
	ssize_t got;

	memset(ck, 0, sizeof(*ck));
	ck->send = ck->ram = ck->eof = ck->size = ck->dev = ck->end = ck->first_page = SIZE_MAX;
	ck->start = p;
	if (!need(s, p, 4))
		return 0;
	if (be32_at(s->data + p) != COLO_MSG_CHECKPOINT_REQUEST)
		return colo_err_set(err, EPROTO, "message %" PRIu32 " at %zu, not a "
				    "CHECKPOINT_REQUEST", be32_at(s->data + p), p);
	ck->send = p += 4;
	if (!need(s, p, 4))
		return 0;
	if (be32_at(s->data + p) != COLO_MSG_VMSTATE_SEND)
		return colo_err_set(err, EPROTO, "message %" PRIu32 " at %zu, not "
				    "VMSTATE_SEND", be32_at(s->data + p), p);
	p += 4;
	colo_stream_reader_restart(r, COLO_SR_NO_HEADER | COLO_SR_NO_VMDESC |
				   COLO_SR_TRAILING_OK);
	x->delta = p - colo_stream_reader_offset(r);
	x->ck = ck;
	got = colo_stream_reader_feed(r, s->data + p, s->len - p);
	x->ck = NULL;
	if (got < 0)
		return colo_err_set(err, (int)-got, "checkpoint %zu: %s", s->nckpts,
				    colo_stream_reader_error(r));
	if (!colo_stream_reader_done(r))
		return 0;
	p += (size_t)got;
	ck->eof = p - 1;
	ck->size = p;
	if (!need(s, p, 12))
		return 0;
	if (be32_at(s->data + p) != COLO_MSG_VMSTATE_SIZE)
		return colo_err_set(err, EPROTO, "message %" PRIu32 " at %zu, not "
				    "VMSTATE_SIZE", be32_at(s->data + p), p);
	n = (uint64_t)be32_at(s->data + p + 4) << 32 | be32_at(s->data + p + 8);
	ck->dev = p += 12;
	if (!need(s, p, n))
		return 0;
	ck->end = p + (size_t)n;
	*pos = ck->end;
	return 1;
}

static int index_bytes(struct qh_stream *s, struct colo_err *err)
{
	struct colo_stream_reader *r = NULL;
	struct colo_vmdesc *vd = NULL;
	struct ix x;
	size_t pos;
	int rc;

	memset(&x, 0, sizeof(x));
	/* The devices are not self-delimiting: find where they start, then
	 * the VMDESCRIPTION after them whose sizes walk them exactly. */
	ix_reset(&x, s);
	r = colo_stream_reader_new(&ix_ops, &x, COLO_SR_TRAILING_OK);
	if (!r)
		return colo_err_set(err, ENOMEM, "out of memory");
	(void)colo_stream_reader_feed(r, s->data, s->len);
	colo_stream_reader_free(r);
	r = NULL;
	pos = s->devices;
	if (pos == SIZE_MAX || pos == 0) {
		colo_ram_reader_free(&x.rr);
		return colo_err_set(err, EPROTO, "no device sections in the initial migration");
	}
	rc = -EPROTO;
	for (size_t p = pos + 1; p + 5 <= s->len && rc; p++) {
		uint32_t jlen;
		struct colo_err e;

		if (s->data[p] != COLO_SEC_VMDESC || s->data[p - 1] != COLO_SEC_EOF)
			continue;
		jlen = be32_at(s->data + p + 1);
		if (jlen < 2 || !need(s, p + 5, jlen) || s->data[p + 5] != '{' ||
		    s->data[p + 5 + jlen - 1] != '}')
			continue;
		colo_err_clear(&e);
		if (colo_vmdesc_parse((const char *)s->data + p + 5, jlen, &vd, &e) != 0)
			continue;
		rc = ix_initial(&x, s, vd, p + 5 + jlen, &r, &e);
		if (rc) {
			colo_vmdesc_free(vd);
			vd = NULL;
		}
	}
	if (rc) {
		colo_ram_reader_free(&x.rr);
		return colo_err_set(err, EPROTO, "no VMDESCRIPTION after the device sections "
				    "at %zu that walks them to their EOF", pos);
	}
	/* Checkpoints while they are whole; what follows is partial. */
	pos = s->initial_len;
	while (pos < s->len && s->nckpts < QH_CKPTS_MAX) {
		struct colo_err e;

		colo_err_clear(&e);
		if (ix_ckpt(&x, r, &pos, &e) <= 0)
			break;
		s->nckpts++;
	}
	if (pos < s->len && s->nckpts == QH_CKPTS_MAX)
		s->ckpt[s->nckpts] = (struct qh_ckpt){ .start = pos, .send = SIZE_MAX };
	s->partial = pos < s->len;
	colo_stream_reader_free(r);
	colo_vmdesc_free(vd);
	colo_ram_reader_free(&x.rr);
	return 0;
}

int qh_index(const uint8_t *data, size_t len, struct qh_stream *s, struct colo_err *err)
{
	int r;

	memset(s, 0, sizeof(*s));
	s->data = malloc(len ? len : 1);
	if (!s->data)
		return colo_err_set(err, ENOMEM, "out of memory");
	memcpy(s->data, data, len);
	s->len = len;
	r = index_bytes(s, err);
	if (r)
		qh_stream_free(s);
	return r;
}

void qh_stream_free(struct qh_stream *s)
{
	free(s->data);
	free(s->blocks);
	memset(s, 0, sizeof(*s));
}

/* ---- recording ---- */

struct rec {
	struct colo_qmp qmp;
	int listen_fd, fd;
	uint8_t *buf;
	size_t len, cap;
};

static int qmp_do(struct rec *rc, const char *cmd, json_t *args, json_t **ret,
		  struct colo_err *err)
{
	struct colo_err e;
	int r;

	colo_err_clear(&e);
	r = colo_qmp_execute(&rc->qmp, cmd, args, ret, QMP_COMMAND_MS, &e);
	if (r)
		colo_err_set(err, e.code, "QMP %s: %s", cmd, e.msg);
	return r;
}

/* `info ramblock`: a header line, then "NAME PSIZE UNIT OFFSET USED TOTAL". */
static int rec_ramblocks(struct rec *rc, struct qh_recording *rec, struct colo_err *err)
{
	json_t *ret = NULL;
	const char *text, *line;
	int r = qmp_do(rc, "human-monitor-command",
		       json_pack("{s:s}", "command-line", "info ramblock"), &ret, err);

	if (r)
		return r;
	text = json_string_value(ret);
	line = text ? strchr(text, '\n') : NULL;
	while (line && *++line) {
		char name[COLO_IDSTR_MAX + 1], unit[16], off[32], used[32];
		unsigned psize;
		struct qh_block_used *b;

		if (sscanf(line, "%255s %u %15s %31s %31s", name, &psize, unit, off, used) == 5) {
			b = realloc(rec->ramblocks, (rec->nramblocks + 1) * sizeof(*b));
			if (!b) {
				json_decref(ret);
				return colo_err_set(err, ENOMEM, "out of memory");
			}
			rec->ramblocks = b;
			b += rec->nramblocks++;
			snprintf(b->name, sizeof(b->name), "%s", name);
			b->used = strtoull(used, NULL, 16);
		}
		line = strchr(line, '\n');
	}
	json_decref(ret);
	if (rec->nramblocks == 0)
		return colo_err_set(err, EPROTO, "no RAM blocks in `info ramblock`");
	return 0;
}

static int rec_listen(struct rec *rc, const char *path, struct colo_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (strlen(path) >= sizeof(sa.sun_path))
		return colo_err_set(err, ENAMETOOLONG, "%s: too long for a unix socket", path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	rc->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (rc->listen_fd < 0 || bind(rc->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(rc->listen_fd, 1))
		return colo_err_set(err, errno, "%s: %s", path, strerror(errno));
	return 0;
}

/* What QEMU sends, waiting up to timeout_ms for something: 0, or
 * -ETIMEDOUT, or -ECONNRESET when QEMU closed. */
static int rec_read(struct rec *rc, int timeout_ms, struct colo_err *err)
{
	struct pollfd pf = { .fd = rc->fd, .events = POLLIN };
	ssize_t n;
	int r;

	if (rc->cap - rc->len < 65536) {
		size_t cap = rc->cap ? rc->cap * 2 : 1 << 20;
		uint8_t *b = realloc(rc->buf, cap);

		if (!b)
			return colo_err_set(err, ENOMEM, "out of memory");
		rc->buf = b;
		rc->cap = cap;
	}
	do
		r = poll(&pf, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return -ETIMEDOUT;
	n = read(rc->fd, rc->buf + rc->len, rc->cap - rc->len);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0)
		return colo_err_set(err, ECONNRESET, "QEMU closed its migration after %zu "
				    "bytes", rc->len);
	rc->len += (size_t)n;
	return 0;
}

static int rec_send(struct rec *rc, uint32_t m, struct colo_err *err)
{
	uint32_t be = htobe32(m);

	if (send(rc->fd, &be, 4, MSG_NOSIGNAL) != 4)
		return colo_err_set(err, errno ? errno : EIO, "answering QEMU %s: %s",
				    colo_msg_name(m), strerror(errno));
	return 0;
}

/* The initial migration: all of it is in the socket once QEMU says "colo". */
static int rec_initial(struct rec *rc, struct colo_err *err)
{
	uint64_t deadline = colo_now_ms() + INITIAL_MS;

	for (;;) {
		json_t *ret = NULL;
		const char *st;
		char status[32];
		int r = rec_read(rc, QUIET_MS, err);

		if (r == 0)
			continue;
		if (r != -ETIMEDOUT)
			return r;
		if ((r = qmp_do(rc, "query-migrate", NULL, &ret, err)) != 0)
			return r;
		st = json_string_value(json_object_get(ret, "status"));
		snprintf(status, sizeof(status), "%s", st ? st : "none");
		json_decref(ret);
		if (strcmp(status, "colo") == 0)
			break;
		if (strcmp(status, "active") != 0 && strcmp(status, "setup") != 0 &&
		    strcmp(status, "device") != 0)
			return colo_err_set(err, EIO, "migration '%s'", status);
		if (colo_now_ms() > deadline)
			return colo_err_set(err, ETIMEDOUT, "migration still '%s' after %d ms",
					    status, INITIAL_MS);
	}
	/* QEMU flushed all before it said "colo"; it waits for READY now. */
	for (;;) {
		int r = rec_read(rc, 0, err);

		if (r == -ETIMEDOUT)
			return 0;
		if (r)
			return r;
	}
}

static int rec_pmemsave(struct rec *rc, uint64_t at, size_t len, const char *path,
			uint8_t **out, struct colo_err *err)
{
	FILE *f;
	int r = qmp_do(rc, "pmemsave", json_pack("{s:I,s:I,s:s}", "val", (json_int_t)at,
						  "size", (json_int_t)len, "filename", path),
		       NULL, err);

	if (r)
		return r;
	*out = malloc(len);
	f = fopen(path, "rb");
	if (!*out || !f || fread(*out, 1, len, f) != len) {
		if (f)
			fclose(f);
		unlink(path);
		return colo_err_set(err, EIO, "pmemsave %s: %zu bytes not there", path, len);
	}
	fclose(f);
	unlink(path);
	return 0;
}

static const struct qh_block_used *rec_block(const struct qh_recording *rec, const char *n)
{
	for (size_t i = 0; i < rec->nramblocks; i++)
		if (strcmp(rec->ramblocks[i].name, n) == 0)
			return &rec->ramblocks[i];
	return NULL;
}

static int rec_dumps(struct rec *rc, const char *dir, struct qh_recording *rec,
		     struct colo_err *err)
{
	const struct qh_block_used *ram = rec_block(rec, "pc.ram");
	const struct qh_block_used *bios = rec_block(rec, "pc.bios");
	char path[PATH_MAX];
	json_t *ret = NULL;
	const char *st;
	int r;

	if (!ram || !bios)
		return colo_err_set(err, EINVAL, "dumps need pc.ram and pc.bios");
	/* Below 4 GiB pc.ram is mapped from 0 (a pc of at most 3 GiB). */
	rec->low_len = (size_t)ram->used;
	rec->bios_len = (size_t)bios->used;
	snprintf(path, sizeof(path), "%s/pmem.bin", dir);
	if ((r = rec_pmemsave(rc, 0, rec->low_len, path, &rec->low, err)) ||
	    (r = rec_pmemsave(rc, (1ull << 32) - rec->bios_len, rec->bios_len, path,
			      &rec->bios, err)) ||
	    (r = qmp_do(rc, "query-status", NULL, &ret, err)))
		return r;
	st = json_string_value(json_object_get(ret, "status"));
	snprintf(rec->status, sizeof(rec->status), "%s", st ? st : "?");
	json_decref(ret);
	return 0;
}

/* Read until checkpoint k is whole, answering REPLY once it was asked. */
static int rec_ckpt(struct rec *rc, size_t k, struct colo_err *err)
{
	uint64_t deadline = colo_now_ms() + CKPT_MS;
	bool replied = false;

	for (;;) {
		struct qh_stream s;
		int r;

		memset(&s, 0, sizeof(s));
		s.data = rc->buf;
		s.len = rc->len;
		r = index_bytes(&s, err);
		free(s.blocks);
		if (r)
			return r;
		if (s.nckpts > k)
			return 0;
		/* ckpt[k] has what came of it: send is set once REQUEST is in */
		if (!replied && s.partial && s.ckpt[k].send != SIZE_MAX) {
			if ((r = rec_send(rc, COLO_MSG_CHECKPOINT_REPLY, err)) != 0)
				return r;
			replied = true;
		}
		if (colo_now_ms() > deadline)
			return colo_err_set(err, ETIMEDOUT, "checkpoint %zu not whole after %d "
					    "ms", k, CKPT_MS);
		r = rec_read(rc, CKPT_MS, err);
		if (r == -ETIMEDOUT)
			return colo_err_set(err, ETIMEDOUT, "QEMU silent for %d ms in checkpoint "
					    "%zu", CKPT_MS, k);
		if (r)
			return r;
	}
}

int qh_record(const char *qemu, const char *dir, const char *const *vm_args,
	      unsigned ckpts, unsigned delay_ms, bool dumps, struct qh_recording *rec,
	      struct colo_err *err)
{
	char qmp_sock[PATH_MAX], qmp_arg[PATH_MAX + 40], mig[PATH_MAX], uri[PATH_MAX + 8];
	char log[PATH_MAX];
	const char *argv[48];
	struct rec rc = { .listen_fd = -1, .fd = -1 };
	struct pollfd pf;
	size_t n = 0;
	int r;

	memset(rec, 0, sizeof(*rec));
	if (ckpts < 1 || ckpts > QH_CKPTS_MAX)
		return colo_err_set(err, EINVAL, "%u checkpoints", ckpts);
	snprintf(qmp_sock, sizeof(qmp_sock), "%s/qmp.sock", dir);
	snprintf(qmp_arg, sizeof(qmp_arg), "unix:%s,server=on,wait=off", qmp_sock);
	snprintf(mig, sizeof(mig), "%s/mig.sock", dir);
	snprintf(uri, sizeof(uri), "unix:%s", mig);
	snprintf(log, sizeof(log), "%s/qemu.log", dir);
	argv[n++] = qemu;
	for (; *vm_args && n < 44; vm_args++)
		argv[n++] = *vm_args;
	argv[n++] = "-qmp";
	argv[n++] = qmp_arg;
	argv[n] = NULL;
	colo_qmp_init(&rc.qmp);
	if ((r = colo_qmp_start(&rc.qmp, qemu, argv, log, err)) ||
	    (r = colo_qmp_connect(&rc.qmp, qmp_sock, QMP_CONNECT_MS, err)) ||
	    (r = rec_ramblocks(&rc, rec, err)) ||
	    (r = rec_listen(&rc, mig, err)) ||
	    (r = qmp_do(&rc, "migrate-set-capabilities",
			json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability", "x-colo",
				  "state", 1), NULL, err)) ||
	    (r = qmp_do(&rc, "migrate-set-parameters",
			json_pack("{s:I}", "x-checkpoint-delay", (json_int_t)delay_ms), NULL,
			err)) ||
	    (r = qmp_do(&rc, "migrate", json_pack("{s:s}", "uri", uri), NULL, err)))
		goto out;
	pf.fd = rc.listen_fd;
	pf.events = POLLIN;
	if (poll(&pf, 1, ACCEPT_MS) != 1) {
		r = colo_err_set(err, ETIMEDOUT, "QEMU did not connect to %s", mig);
		goto out;
	}
	rc.fd = accept4(rc.listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (rc.fd < 0) {
		r = colo_err_set(err, errno, "accept: %s", strerror(errno));
		goto out;
	}
	if ((r = rec_initial(&rc, err)) != 0)
		goto out;
	{
		struct qh_stream s;

		memset(&s, 0, sizeof(s));
		s.data = rc.buf;
		s.len = rc.len;
		r = index_bytes(&s, err);
		free(s.blocks);
		if (r == 0 && (s.initial_len != rc.len || s.nckpts))
			r = colo_err_set(err, EPROTO, "%zu bytes after the initial migration "
					 "before CHECKPOINT_READY", rc.len - s.initial_len);
		if (r) {
			colo_err_prefix(err, "the initial migration");
			goto out;
		}
	}
	if ((r = rec_send(&rc, COLO_MSG_CHECKPOINT_READY, err)) != 0)
		goto out;
	for (size_t k = 0; k < ckpts; k++) {
		if ((r = rec_ckpt(&rc, k, err)) != 0)
			goto out;
		/* QEMU keeps the VM stopped until it reads LOADED. */
		if (k + 1 == ckpts && dumps && (r = rec_dumps(&rc, dir, rec, err)) != 0)
			goto out;
		if ((r = rec_send(&rc, COLO_MSG_VMSTATE_RECEIVED, err)) != 0 ||
		    (r = rec_send(&rc, COLO_MSG_VMSTATE_LOADED, err)) != 0)
			goto out;
	}
	r = qh_index(rc.buf, rc.len, &rec->s, err);
	if (r == 0 && (rec->s.nckpts != ckpts || rec->s.partial))
		r = colo_err_set(err, EPROTO, "%zu checkpoints recorded, %u asked",
				 rec->s.nckpts, ckpts);
out:
	colo_qmp_stop(&rc.qmp, STOP_MS);
	colo_qmp_free(&rc.qmp);
	if (rc.fd >= 0)
		close(rc.fd);
	if (rc.listen_fd >= 0)
		close(rc.listen_fd);
	unlink(mig);
	free(rc.buf);
	if (r)
		qh_recording_free(rec);
	return r;
}

void qh_recording_free(struct qh_recording *rec)
{
	qh_stream_free(&rec->s);
	free(rec->ramblocks);
	free(rec->low);
	free(rec->bios);
	memset(rec, 0, sizeof(*rec));
}
