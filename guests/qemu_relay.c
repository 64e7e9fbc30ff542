/*
 * qemu_relay.c: the secondary's side of QEMU's COLO protocol, played by
 * colo-primary on QEMU's migration socket (DESIGN.md §9; what QEMU 7.2
 * sends is in shared/notes/qemu-7.2-colo.md).
 *
 * The initial migration: header, configuration, COMMAND ENABLE_COLO, RAM
 * START (MEM_SIZE: the blocks), PART.., END, device FULL sections, EOF,
 * VMDESCRIPTION.  RAM pages go straight into the mirror (nothing checkpoints
 * it before it is ready).  Device payloads are not self-delimiting, so the
 * bytes from the first device section on are kept until they end in a
 * VMDESCRIPTION whose device sizes walk them exactly to EOF; QEMU then
 * waits for CHECKPOINT_READY, and the device sections are the device state.
 *
 * Each checkpoint: <- REQUEST, -> REPLY, <- VMSTATE_SEND, RAM END section
 * of the dirty pages, EOF, <- VMSTATE_SIZE n + n bytes of device sections,
 * -> RECEIVED, -> LOADED.  The pages are held until the whole checkpoint
 * is in and checked; only then are they copied into the mirror (with the
 * guest not paused by the engine) and the device state replaced, so a
 * checkpoint that breaks off or does not parse never reaches the mirror,
 * and so never a secondary.  Then the engine is asked for a checkpoint.
 * The VM's network (qemu_net.h) follows the same steps: frames to the VM
 * wait from REQUEST to LOADED, the VM's own close their epoch at
 * VMSTATE_SEND and take the colo checkpoint of the mirror copy as tag.
 *
 * Everything here runs on the relay thread, except qemu_relay_begin() and
 * qemu_relay_blocks() (the loop thread, before the thread starts).
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "clock.h"
#include "colomsg.h"
#include "log.h"
#include "qemu_int.h"
#include "ram.h"
#include "savevm.h"
#include "vmdesc.h"
#include "vmstate.h"

#define RB_READ 65536u
#define RELAY_BEGIN_MS 30000
/* video RAM, firmware, option ROMs, ACPI: a VGA's vram can be 256 MiB */
#define QEMU_SMALL_BLOCK_MAX (1ull << 30)
#define STALL_MS 10000            /* QEMU silent in the middle of a checkpoint */
#define DEVBUF_MAX (COLO_DEVSTATE_MAX + COLO_VMDESC_MAX)
#define STOP_AT_DEVICES (-ECANCELED)

/* ---- the socket ---- */

/* Read what is there (at least one byte), or wait up to timeout_ms (-1:
 * no limit) for it.  -ECANCELED when stop() woke us. */
static int rb_fill(struct qemu_guest *q, int timeout_ms, struct colo_err *err)
{
	struct qemu_rbuf *rb = &q->rb;
	struct pollfd pf[2] = {
		{ .fd = q->mig_fd, .events = POLLIN },
		{ .fd = q->wake[0], .events = POLLIN },
	};
	ssize_t n;
	int r;

	if (rb->pos > 0 && rb->pos == rb->len)
		rb->pos = rb->len = 0;
	if (rb->cap - rb->len < RB_READ) {
		if (rb->pos > 0) {
			memmove(rb->data, rb->data + rb->pos, rb->len - rb->pos);
			rb->len -= rb->pos;
			rb->pos = 0;
		}
		if (rb->cap - rb->len < RB_READ) {
			size_t cap = rb->cap ? rb->cap * 2 : 4 * RB_READ;
			uint8_t *d;

			while (cap - rb->len < RB_READ)
				cap *= 2;
			d = realloc(rb->data, cap);
			if (!d)
				return colo_err_set(err, ENOMEM, "out of memory reading QEMU's stream");
			rb->data = d;
			rb->cap = cap;
		}
	}
	for (;;) {
		r = poll(pf, 2, timeout_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return colo_err_set(err, errno, "poll: %s", strerror(errno));
		if (pf[1].revents)
			return colo_err_set(err, ECANCELED, "stopping");
		if (r == 0)
			return colo_err_set(err, ETIMEDOUT, "QEMU sent nothing for %d ms",
					    timeout_ms);
		n = read(q->mig_fd, rb->data + rb->len, rb->cap - rb->len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return colo_err_set(err, errno, "reading QEMU's migration socket: %s",
					    strerror(errno));
		if (n == 0)
			return colo_err_set(err, ECONNRESET, "QEMU closed its migration "
					    "connection");
		rb->len += (size_t)n;
		pthread_mutex_lock(&q->lock);
		q->bytes_in += (uint64_t)n;
		pthread_mutex_unlock(&q->lock);
		return 0;
	}
}

static int rb_need(struct qemu_guest *q, size_t n, int timeout_ms, struct colo_err *err)
{
	while (q->rb.len - q->rb.pos < n) {
		int r = rb_fill(q, timeout_ms, err);

		if (r)
			return r;
	}
	return 0;
}

static int read_be32(struct qemu_guest *q, uint32_t *v, int timeout_ms,
		     struct colo_err *err)
{
	uint32_t be;
	int r = rb_need(q, 4, timeout_ms, err);

	if (r)
		return r;
	memcpy(&be, q->rb.data + q->rb.pos, 4);
	q->rb.pos += 4;
	*v = be32toh(be);
	return 0;
}

static int expect_msg(struct qemu_guest *q, uint32_t want, int timeout_ms,
		      struct colo_err *err)
{
	uint32_t m;
	int r = read_be32(q, &m, timeout_ms, err);

	if (r)
		return r;
	if (m != want)
		return colo_err_set(err, EPROTO, "QEMU sent COLO message %" PRIu32 " (%s) where "
				    "%s was due", m, colo_msg_name(m), colo_msg_name(want));
	return 0;
}

static int send_msg(struct qemu_guest *q, uint32_t m, struct colo_err *err)
{
	uint32_t be = htobe32(m);
	size_t done = 0;

	while (done < 4) {
		ssize_t n = write(q->mig_fd, (uint8_t *)&be + done, 4 - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return colo_err_set(err, errno, "answering QEMU %s: %s", colo_msg_name(m),
					    strerror(errno));
		done += (size_t)n;
	}
	return 0;
}

/* ---- RAM ---- */

/* Filesystems whose pages are never written back to a disk. */
#define FS_TMPFS 0x01021994
#define FS_RAMFS 0x858458f6
#define FS_HUGETLBFS 0x958458f6

/*
 * On a disk filesystem the kernel writes the VM's RAM back as the sync and
 * the checkpoints dirty it, and throttles the writer (the loop, inside a
 * page fault) to the disk's pace: a full sync then stalls for seconds.
 * Allowed (it works), but said.
 */
static void say_if_on_disk(const char *path, int fd)
{
	struct statfs sf;

	if (fstatfs(fd, &sf) != 0 || sf.f_type == FS_TMPFS || sf.f_type == FS_RAMFS ||
	    sf.f_type == FS_HUGETLBFS)
		return;
	colo_log_warn("vm-ram-path %s is not on a tmpfs or hugetlbfs: the kernel writes the "
		      "VM's RAM back to disk and slows this node's loop to the disk's pace "
		      "(seconds at a full sync); /dev/shm is the default", path);
}

/* The secondary's main block lives in the file a failover's QEMU maps. */
static int add_shared(struct qemu_guest *q, const struct colo_ram_block_info *b,
		      struct colo_ram_block **out, struct colo_err *err)
{
	int fd = open(q->ram_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	int r;

	if (fd < 0)
		return colo_err_set(err, errno, "vm-ram-path %s: %s", q->ram_path,
				    strerror(errno));
	say_if_on_disk(q->ram_path, fd);
	r = colo_ram_add_block_fd(q->ram, b->name, b->length, fd, out, err);
	close(fd);
	if (r)
		return colo_err_set(err, -r, "vm-ram-path %s: %s", q->ram_path, err->msg);
	return 0;
}

int qemu_relay_blocks(struct qemu_guest *q, const struct colo_ram_block_info *b, size_t n,
		      struct colo_err *err)
{
	if (q->nblocks) {
		if (n != q->nblocks)
			return colo_err_set(err, EPROTO, "QEMU announces %zu RAM blocks, the "
					    "guest has %zu", n, q->nblocks);
		for (size_t i = 0; i < n; i++)
			if (strcmp(b[i].name, q->binfo[i].name) != 0 ||
			    b[i].length != q->binfo[i].length)
				return colo_err_set(err, EPROTO, "QEMU's RAM block %zu is '%s', %"
						    PRIu64 " bytes; the guest's is '%s', %" PRIu64
						    " bytes", i, b[i].name, b[i].length,
						    q->binfo[i].name, q->binfo[i].length);
		return 0;
	}
	if (n == 0)
		return colo_err_set(err, EPROTO, "QEMU announces no RAM blocks");
	/* Sizes on QEMU's word are bounded by what vm-args asked for: the main
	 * block is -m, the others (firmware, option ROMs, video) are small. */
	for (size_t i = 0; i < n; i++) {
		bool main_block = q->args.ram_block && strcmp(b[i].name, q->args.ram_block) == 0;

		if (main_block && q->args.ram_bytes && b[i].length != q->args.ram_bytes)
			return colo_err_set(err, EPROTO, "QEMU's RAM block '%s' is %" PRIu64
					    " bytes; vm-args say -m %" PRIu64, b[i].name,
					    b[i].length, q->args.ram_bytes);
		if (!main_block && b[i].length > QEMU_SMALL_BLOCK_MAX)
			return colo_err_set(err, EPROTO, "QEMU's RAM block '%s' is %" PRIu64
					    " bytes (at most %llu for a block besides %s)",
					    b[i].name, b[i].length, QEMU_SMALL_BLOCK_MAX,
					    q->args.ram_block ? q->args.ram_block : "the main one");
	}
	q->blocks = calloc(n, sizeof(*q->blocks));
	q->binfo = calloc(n, sizeof(*q->binfo));
	if (!q->blocks || !q->binfo)
		return colo_err_set(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		int r;

		if (b[i].length % COLO_PAGE_SIZE)
			return colo_err_set(err, EPROTO, "QEMU's RAM block '%s' is %" PRIu64
					    " bytes, not whole pages", b[i].name, b[i].length);
		q->binfo[i] = b[i];
		if (q->role == COLO_ROLE_SECONDARY && q->args.ram_block &&
		    strcmp(b[i].name, q->args.ram_block) == 0)
			r = add_shared(q, &b[i], &q->blocks[i], err);
		else
			r = colo_ram_add_block(q->ram, b[i].name, b[i].length, &q->blocks[i],
					       err);
		if (r == 0)
			r = colo_savevm_add_ram(q->sv, b[i].name, q->blocks[i]->host,
						b[i].length, err);
		if (r)
			return r;
		q->nblocks = i + 1;
	}
	return 0;
}

static int on_mem_size(void *ud, const struct colo_ram_block_info *blocks, size_t n,
		       uint64_t total, struct colo_err *err)
{
	(void)total;
	return qemu_relay_blocks(ud, blocks, n, err);
}

static int on_page(void *ud, const struct colo_ram_page *p, struct colo_err *err)
{
	struct qemu_guest *q = ud;
	struct colo_ram_block *b;
	struct qemu_pend *pd;
	int r;

	if (p->block_index >= q->nblocks)
		return colo_err_set(err, EPROTO, "a page of block %u before MEM_SIZE",
				    p->block_index);
	b = q->blocks[p->block_index];
	if (!q->in_ckpt) {
		/* The initial migration: nothing checkpoints the mirror yet. */
		r = colo_ram_page_apply(p, b->host, NULL, err);
		if (r == 0)
			colo_ram_mark_dirty(b, p->offset, COLO_PAGE_SIZE);
		return r;
	}
	if (q->npend == q->pend_cap) {
		size_t cap = q->pend_cap ? q->pend_cap * 2 : 1024;
		struct qemu_pend *np = realloc(q->pend, cap * sizeof(*np));

		if (!np)
			return colo_err_set(err, ENOMEM, "out of memory holding a checkpoint");
		q->pend = np;
		q->pend_cap = cap;
	}
	pd = &q->pend[q->npend];
	pd->block = p->block_index;
	pd->offset = p->offset;
	pd->zero = p->kind == COLO_PAGE_ZERO;
	pd->fill = p->fill;
	pd->at = q->pend_data.len;
	if (!pd->zero) {
		colo_buf_put(&q->pend_data, p->data, COLO_PAGE_SIZE);
		if (!colo_buf_ok(&q->pend_data))
			return colo_err_set(err, ENOMEM, "out of memory holding a checkpoint");
	}
	q->npend++;
	return 0;
}

/* ---- the stream reader ---- */

static int on_config(void *ud, const struct colo_stream_config *c, uint64_t offset,
		     struct colo_err *err)
{
	struct qemu_guest *q = ud;

	(void)offset;
	if (strlen(c->name) >= sizeof(q->dev.machine))
		return colo_err_set(err, EPROTO, "QEMU's machine name '%s' is too long",
				    c->name);
	if (c->has_page_bits && c->target_page_bits != 12)
		return colo_err_set(err, EPROTO, "QEMU's target pages are 2^%" PRIu32
				    " bytes; colo handles 4 KiB pages", c->target_page_bits);
	memset(q->dev.machine, 0, sizeof(q->dev.machine));
	memcpy(q->dev.machine, c->name, strlen(c->name));
	return 0;
}

static int on_command(void *ud, const struct colo_command_info *c, struct colo_err *err)
{
	struct qemu_guest *q = ud;

	if (c->cmd != COLO_CMD_ENABLE_COLO)
		return colo_err_set(err, EPROTO, "QEMU sent command %s at offset %" PRIu64
				    "; a COLO migration sends ENABLE_COLO only",
				    colo_stream_command_name(c->cmd), c->offset);
	q->enable_colo = true;
	return 0;
}

static int on_section(void *ud, const struct colo_section_info *s,
		      struct colo_section_handler *h, struct colo_err *err)
{
	struct qemu_guest *q = ud;

	if (strcmp(s->idstr, COLO_RAM_IDSTR) == 0) {
		if (s->type == COLO_SEC_START) {
			if (q->ram_started)
				return colo_err_set(err, EPROTO, "a second RAM START at offset %"
						    PRIu64, s->offset);
			q->ram_started = true;
			q->dev.ram_section_id = s->section_id;
		} else if (!q->ram_started) {
			return colo_err_set(err, EPROTO, "RAM section at offset %" PRIu64
					    " before RAM START", s->offset);
		}
		if (s->type == COLO_SEC_END && !q->in_ckpt)
			q->ram_ended = true;
		h->payload = colo_ram_reader_payload;
		h->ctx = &q->rr;
		return 0;
	}
	if (!q->in_ckpt && q->ram_ended && s->type == COLO_SEC_FULL) {
		q->dev_at = (int64_t)s->offset;
		return colo_err_set(err, ECANCELED, "device sections");
	}
	return colo_err_set(err, EPROTO, "QEMU sent section '%s' (%s) at offset %" PRIu64
			    " where RAM was due", s->idstr,
			    colo_stream_section_type_name(s->type), s->offset);
}

static int on_eof(void *ud, int depth, uint64_t offset, struct colo_err *err)
{
	struct qemu_guest *q = ud;

	(void)depth;
	if (q->in_ckpt)
		return 0;
	if (!q->ram_ended)
		return colo_err_set(err, EPROTO, "EOF at offset %" PRIu64 " before the RAM "
				    "was complete", offset);
	q->dev_at = (int64_t)offset;
	return colo_err_set(err, ECANCELED, "device sections");
}

static const struct colo_stream_ops sr_ops = {
	.configuration = on_config,
	.section = on_section,
	.command = on_command,
	.eof = on_eof,
};

static void hist_add(struct qemu_guest *q, const uint8_t *p, size_t n)
{
	if (n >= sizeof(q->hist)) {
		memcpy(q->hist, p + n - sizeof(q->hist), sizeof(q->hist));
		q->hist_len = sizeof(q->hist);
		return;
	}
	if (q->hist_len + n > sizeof(q->hist)) {
		size_t drop = q->hist_len + n - sizeof(q->hist);

		memmove(q->hist, q->hist + drop, q->hist_len - drop);
		q->hist_len -= drop;
	}
	memcpy(q->hist + q->hist_len, p, n);
	q->hist_len += n;
}

/* Feed what is buffered.  The initial migration stops at its first device
 * section: what follows (from dev_at) goes to devbuf. */
static int feed(struct qemu_guest *q, struct colo_err *err)
{
	struct qemu_rbuf *rb = &q->rb;
	size_t len = rb->len - rb->pos;
	ssize_t n = colo_stream_reader_feed(q->sr, rb->data + rb->pos, len);

	if (n >= 0) {
		hist_add(q, rb->data + rb->pos, (size_t)n);
		rb->pos += (size_t)n;
		q->sr_base += (uint64_t)n;
		return 0;
	}
	if (q->dev_at < 0)
		return colo_err_set(err, -(int)n, "QEMU's migration stream: %s",
				    colo_stream_reader_error(q->sr));
	/* Where the device sections start: in these bytes or just before. */
	if ((uint64_t)q->dev_at >= q->sr_base) {
		size_t skip = (size_t)((uint64_t)q->dev_at - q->sr_base);

		colo_buf_put(&q->devbuf, rb->data + rb->pos + skip, len - skip);
	} else {
		size_t back = (size_t)(q->sr_base - (uint64_t)q->dev_at);

		if (back > q->hist_len)
			return colo_err_set(err, EPROTO, "a device section header of over %zu "
					    "bytes", sizeof(q->hist));
		colo_buf_put(&q->devbuf, q->hist + q->hist_len - back, back);
		colo_buf_put(&q->devbuf, rb->data + rb->pos, len);
	}
	rb->pos = rb->len;
	if (!colo_buf_ok(&q->devbuf))
		return colo_err_set(err, ENOMEM, "out of memory");
	return 0;
}

/* ---- the initial migration's device sections ---- */

static int walk_payload(void *ctx, const struct colo_section_info *s, struct colo_in *in,
			struct colo_err *err)
{
	const struct colo_vmdesc_device *d = ctx;

	(void)s;
	if (colo_in_avail(in) < d->desc.bytes)
		return colo_in_short(in, (size_t)d->desc.bytes);
	in->pos += (size_t)d->desc.bytes;
	(void)err;
	return 0;
}

static int walk_section(void *ud, const struct colo_section_info *s,
			struct colo_section_handler *h, struct colo_err *err)
{
	const struct colo_vmdesc *vd = ud;
	const struct colo_vmdesc_device *d;

	if (s->type != COLO_SEC_FULL)
		return colo_err_set(err, EPROTO, "section '%s' among the devices", s->idstr);
	d = colo_vmdesc_find(vd, s->idstr, s->instance_id);
	if (!d)
		return colo_err_set(err, EPROTO, "device '%s' %" PRIu32 " is not in the "
				    "VMDESCRIPTION", s->idstr, s->instance_id);
	h->payload = walk_payload;
	h->ctx = (void *)d;
	return 0;
}

static const struct colo_stream_ops walk_ops = { .section = walk_section };

/* Do the device sections + vmdesc in devbuf end exactly?  1: yes, with
 * *end the offset of the vmdesc; 0: not yet; <0: cannot be. */
static int devices_complete(struct qemu_guest *q, size_t *end, struct colo_err *err)
{
	const uint8_t *d = q->devbuf.data;
	struct colo_stream_reader *w;
	struct colo_vmdesc *vd = NULL;
	uint32_t jlen;
	size_t at;
	bool ok;

	if (q->devbuf.len > DEVBUF_MAX)
		return colo_err_set(err, EPROTO, "over %u bytes of device state without an "
				    "end", DEVBUF_MAX);
	if (colo_vmdesc_locate(d, q->devbuf.len, &at) != 0 || at == 0 ||
	    q->devbuf.len - at < 5)
		return 0;
	memcpy(&jlen, d + at + 1, 4);
	jlen = be32toh(jlen);
	if (at + 5 + (size_t)jlen != q->devbuf.len || d[at - 1] != COLO_SEC_EOF)
		return 0;
	/* It looks like the end; if it is not, say why should QEMU fall
	 * silent here (it waits for READY once it sent everything). */
	if (colo_vmdesc_parse((const char *)d + at + 5, jlen, &vd, err) != 0) {
		snprintf(q->devs_why, sizeof(q->devs_why), "%s", err->msg);
		colo_err_clear(err);
		return 0;
	}
	w = colo_stream_reader_new(&walk_ops, vd, COLO_SR_NO_HEADER | COLO_SR_NO_VMDESC);
	if (!w) {
		colo_vmdesc_free(vd);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	/* sections then EOF, ending on the byte before the vmdesc */
	ok = colo_stream_reader_feed(w, d, at) == (ssize_t)at &&
	     colo_stream_reader_finish(w) == 0 && colo_stream_reader_done(w);
	if (!ok)
		snprintf(q->devs_why, sizeof(q->devs_why), "the device sections do not "
			 "match the VMDESCRIPTION at offset %zu: %s", at,
			 colo_stream_reader_error(w) ? colo_stream_reader_error(w) : "?");
	colo_stream_reader_free(w);
	if (!ok) {
		colo_vmdesc_free(vd);
		return 0;
	}
	colo_vmdesc_free(q->vd);
	q->vd = vd;
	*end = at;
	return 1;
}

/* One step of the initial migration: 1 when it is whole. */
static int initial_step(struct qemu_guest *q, int timeout_ms, struct colo_err *err)
{
	uint8_t *blob, *vmdesc;
	size_t end = 0;
	int r;

	if (q->rb.pos == q->rb.len) {
		r = rb_fill(q, timeout_ms, err);
		if (r)
			return r;
	}
	if (q->dev_at < 0)
		r = feed(q, err);
	else {
		colo_buf_put(&q->devbuf, q->rb.data + q->rb.pos, q->rb.len - q->rb.pos);
		q->rb.pos = q->rb.len;
		r = colo_buf_ok(&q->devbuf) ? 0 : colo_err_set(err, ENOMEM, "out of memory");
	}
	if (r || q->dev_at < 0)
		return r;
	r = devices_complete(q, &end, err);
	if (r <= 0)
		return r;
	if (!q->enable_colo)
		return colo_err_set(err, EPROTO, "QEMU's migration has no ENABLE_COLO: is "
				    "capability x-colo on?");
	if (q->nblocks == 0)
		return colo_err_set(err, EPROTO, "QEMU's migration announced no RAM blocks "
				    "(no MEM_SIZE)");
	vmdesc = colo_vmstate_alloc(q->devbuf.len - end - 5, 1);
	if (!vmdesc)
		return colo_err_set(err, ENOMEM, "out of memory");
	memcpy(vmdesc, q->devbuf.data + end + 5, q->devbuf.len - end - 5);
	pthread_mutex_lock(&q->lock);
	qemu_dev_set_vmdesc(q, vmdesc, q->devbuf.len - end - 5);
	pthread_mutex_unlock(&q->lock);
	blob = colo_vmstate_alloc(end, 1);
	if (!blob)
		return colo_err_set(err, ENOMEM, "out of memory");
	memcpy(blob, q->devbuf.data, end);
	pthread_mutex_lock(&q->lock);
	qemu_dev_set_blob(q, blob, end);
	pthread_mutex_unlock(&q->lock);
	colo_buf_free(&q->devbuf);
	q->dev_at = -1;
	return 1;
}

static void reader_reset(struct qemu_guest *q)
{
	struct colo_ram_sink sink = { .mem_size = on_mem_size, .page = on_page, .ud = q };

	colo_stream_reader_free(q->sr);
	colo_ram_reader_free(&q->rr);
	colo_ram_reader_init(&q->rr, &sink,
			     COLO_PAGE_KIND_BIT(COLO_PAGE_ZERO) | COLO_PAGE_KIND_BIT(COLO_PAGE_RAW));
	q->sr = colo_stream_reader_new(&sr_ops, q, COLO_SR_NO_VMDESC);
	q->sr_base = 0;
	q->hist_len = 0;
	q->ram_started = q->ram_ended = q->enable_colo = q->in_ckpt = false;
	q->dev_at = -1;
	colo_buf_reset(&q->devbuf);
	q->devs_why[0] = '\0';
	colo_vmdesc_free(q->vd);
	q->vd = NULL;
	q->rb.pos = q->rb.len = 0;
}

int qemu_relay_begin(struct qemu_guest *q, int timeout_ms, struct colo_err *err)
{
	uint64_t deadline = colo_now_ms() + (uint64_t)timeout_ms;

	reader_reset(q);
	if (!q->sr)
		return colo_err_set(err, ENOMEM, "out of memory");
	while (!q->ram_started || q->rr.nblocks == 0) {
		uint64_t now = colo_now_ms();
		int r;

		if (now >= deadline)
			return colo_err_set(err, ETIMEDOUT, "QEMU sent no RAM blocks within %d ms",
					    timeout_ms);
		r = initial_step(q, (int)(deadline - now), err);
		if (r < 0)
			return r;
		if (r == 1)
			break;
	}
	return 0;
}

/* ---- checkpoints ---- */

static int read_checkpoint(struct qemu_guest *q, size_t *devlen, struct colo_err *err)
{
	uint64_t n;
	uint32_t hi, lo;
	uint8_t *blob;
	int r;

	q->npend = 0;
	colo_buf_reset(&q->pend_data);
	q->in_ckpt = true;
	colo_stream_reader_restart(q->sr, COLO_SR_NO_HEADER | COLO_SR_NO_VMDESC |
				   COLO_SR_TRAILING_OK);
	while (!colo_stream_reader_done(q->sr)) {
		if (q->rb.pos == q->rb.len && (r = rb_fill(q, STALL_MS, err)) != 0)
			return r;
		if ((r = feed(q, err)) != 0)
			return r;
	}
	if ((r = expect_msg(q, COLO_MSG_VMSTATE_SIZE, STALL_MS, err)) != 0 ||
	    (r = read_be32(q, &hi, STALL_MS, err)) != 0 ||
	    (r = read_be32(q, &lo, STALL_MS, err)) != 0)
		return r;
	n = (uint64_t)hi << 32 | lo;
	if (n < 1 || n > COLO_DEVSTATE_MAX)
		return colo_err_set(err, EPROTO, "QEMU's device state of %" PRIu64 " bytes "
				    "(1 to %u)", n, COLO_DEVSTATE_MAX);
	if ((r = rb_need(q, (size_t)n, STALL_MS, err)) != 0)
		return r;
	blob = q->rb.data + q->rb.pos;
	/* Device payloads are not self-delimiting: the ends are all there is
	 * to check.  With footers the last section ends in one (0x7e, be32
	 * id) before the EOF, which a wrong size ending on any 0 byte lacks. */
	if (blob[0] != COLO_SEC_FULL || blob[n - 1] != COLO_SEC_EOF ||
	    (colo_stream_reader_footers(q->sr) == 1 &&
	     (n < 7 || blob[n - 6] != COLO_SEC_FOOTER)))
		return colo_err_set(err, EPROTO, "QEMU's device state (%" PRIu64 " bytes) "
				    "does not run from a device section to EOF", n);
	*devlen = (size_t)n;
	return 0;
}

/* The whole checkpoint is in: into the mirror, unless the engine holds the
 * guest paused (it is staging a checkpoint of its own). */
static int apply_checkpoint(struct qemu_guest *q, size_t devlen, uint64_t *epoch,
			    struct colo_err *err)
{
	uint8_t *blob = colo_vmstate_alloc(devlen, 1);

	if (!blob)
		return colo_err_set(err, ENOMEM, "out of memory");
	pthread_mutex_lock(&q->lock);
	while (q->paused && !q->stopping)
		pthread_cond_wait(&q->cond, &q->lock);
	for (size_t i = 0; i < q->npend; i++) {
		const struct qemu_pend *pd = &q->pend[i];
		struct colo_ram_block *b = q->blocks[pd->block];

		if (pd->zero)
			memset(b->host + pd->offset, pd->fill, COLO_PAGE_SIZE);
		else
			memcpy(b->host + pd->offset, q->pend_data.data + pd->at, COLO_PAGE_SIZE);
		colo_ram_mark_dirty(b, pd->offset, COLO_PAGE_SIZE);
	}
	memcpy(blob, q->rb.data + q->rb.pos, devlen);
	qemu_dev_set_blob(q, blob, devlen);
	q->ckpts++;
	q->pages_in += q->npend;
	*epoch = q->epoch;
	pthread_mutex_unlock(&q->lock);
	return 0;
}

static int checkpoint(struct qemu_guest *q, struct colo_err *err)
{
	uint64_t t0, ns, epoch = 0;
	size_t devlen = 0;
	int r;

	/* Between checkpoints QEMU is quiet for x-checkpoint-delay: no limit. */
	if ((r = expect_msg(q, COLO_MSG_CHECKPOINT_REQUEST, -1, err)) != 0)
		return r;
	t0 = colo_now_ns();
	pthread_mutex_lock(&q->lock);
	q->last_request_ns = t0;
	q->kick = false;              /* this is the checkpoint it asked for */
	pthread_mutex_unlock(&q->lock);
	/* QEMU stops the VM once it reads REPLY: frames to it wait from here. */
	if (q->net)
		qemu_net_vm_stopping(q->net);
	if ((r = send_msg(q, COLO_MSG_CHECKPOINT_REPLY, err)) != 0 ||
	    (r = expect_msg(q, COLO_MSG_VMSTATE_SEND, STALL_MS, err)) != 0)
		return r;
	/* The VM is stopped: what it sent so far is this checkpoint's output. */
	if (q->net)
		qemu_net_close_epoch(q->net);
	if ((r = read_checkpoint(q, &devlen, err)) != 0)
		return r;
	/* the device bytes are at rb.pos */
	if ((r = apply_checkpoint(q, devlen, &epoch, err)) != 0)
		return r;
	q->rb.pos += devlen;
	/* The mirror goes out in colo checkpoint `epoch`: so does the output. */
	if (q->net)
		qemu_net_tag(q->net, epoch);
	qemu_notify(q);
	if ((r = send_msg(q, COLO_MSG_VMSTATE_RECEIVED, err)) != 0)
		return r;
	if (q->set->sync_ack) {
		pthread_mutex_lock(&q->lock);
		while (!q->stopping && q->epoch != 0 && epoch != 0 && q->released < epoch)
			pthread_cond_wait(&q->cond, &q->lock);
		pthread_mutex_unlock(&q->lock);
	}
	if ((r = send_msg(q, COLO_MSG_VMSTATE_LOADED, err)) != 0)
		return r;
	if (q->net)
		qemu_net_vm_running(q->net);
	ns = colo_now_ns() - t0;
	pthread_mutex_lock(&q->lock);
	q->pause_us[q->pauses % QEMU_PAUSE_RING] = ns / 1000 > UINT32_MAX ? UINT32_MAX :
						   (uint32_t)(ns / 1000);
	q->pauses++;
	q->pause_last_ns = ns;
	q->last_loaded_ns = t0 + ns;
	q->pause_sum_ns += ns;
	if (ns > q->pause_max_ns)
		q->pause_max_ns = ns;
	pthread_mutex_unlock(&q->lock);
	return 0;
}

void *qemu_relay_main(void *arg)
{
	struct qemu_guest *q = arg;
	struct colo_err err;
	int r;

	pthread_setname_np(pthread_self(), "vm-relay");
	colo_err_clear(&err);
	if (q->colo_pending) {
		/* A promoted node: its VM runs; protect it from here. */
		r = qemu_vm_unshare(q, &err);
		pthread_mutex_lock(&q->qmp_lock);
		if (r == 0)
			r = qemu_vm_start_primary(q, &err);
		pthread_mutex_unlock(&q->qmp_lock);
		if (r == 0)
			r = qemu_relay_begin(q, RELAY_BEGIN_MS, &err);
		if (r) {
			/* The VM is the only copy now: it serves on, unprotected. */
			colo_log_error("cannot start COLO on the VM that took over, so it runs "
				       "unprotected: %s", err.msg);
			return NULL;
		}
	}
	/* qemu_relay_begin() may have read it all (a small VM): q->vd is set
	 * once the initial migration is whole. */
	r = q->vd ? 1 : 0;
	while (r == 0)
		r = initial_step(q, STALL_MS, &err);
	/* QEMU waits for READY once it sent all: silence means we never saw
	 * the end, and the VM would stay stopped. */
	if (r == -ETIMEDOUT && q->dev_at >= 0 && q->devs_why[0]) {
		colo_err_clear(&err);
		colo_err_set(&err, EPROTO, "QEMU's initial migration: %s", q->devs_why);
	} else if (r == -ETIMEDOUT && q->dev_at >= 0) {
		colo_err_prefix(&err, "QEMU's initial migration: %zu bytes of device "
				"sections that no VMDESCRIPTION ends", q->devbuf.len);
	}
	if (r == 1)
		r = send_msg(q, COLO_MSG_CHECKPOINT_READY, &err);
	if (r == 0) {
		pthread_mutex_lock(&q->lock);
		q->ready = true;
		pthread_mutex_unlock(&q->lock);
		qemu_notify(q);
		while ((r = checkpoint(q, &err)) == 0)
			;
	}
	if (r == -ECONNRESET)
		qemu_explain_end(q, &err);
	if (r != -ECANCELED)
		qemu_died(q, "%s", err.msg);
	return NULL;
}

void qemu_relay_free(struct qemu_guest *q)
{
	colo_stream_reader_free(q->sr);
	q->sr = NULL;
	colo_ram_reader_free(&q->rr);
	free(q->rb.data);
	memset(&q->rb, 0, sizeof(q->rb));
	colo_buf_free(&q->devbuf);
	colo_buf_free(&q->pend_data);
	free(q->pend);
	q->pend = NULL;
	q->npend = q->pend_cap = 0;
	colo_vmdesc_free(q->vd);
	q->vd = NULL;
}
