/*
 * secondary.c: the secondary role engine (see secondary.h).
 *
 * One primary at a time.  Bytes from it go through a small channel parser:
 *   HELLO    be32 length + Hello
 *   SYNC     a whole savevm stream (header ... EOF, vmdesc) into the guest
 *   MSG      be32 COLO messages
 *   RAM      after VMSTATE_SEND: RAM END section + EOF, pages into the cache
 *   DEV      after VMSTATE_SIZE n: n bytes of device stream
 * The stream reader is fed straight from the receive buffer and tells how
 * much it took; whatever follows the stream stays for the next phase.
 *
 * The RAM cache holds the pages of the checkpoint in flight: a page's slot
 * starts as a copy of the committed page (its base) and the record decodes
 * into it.  Commit copies the slots over the committed RAM; discard forgets
 * them.  The committed RAM is the guest's own memory.
 */
#include "config.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "colo.pb-c.h"
#include "colomsg.h"
#include "hb.h"
#include "log.h"
#include "record.h"
#include "pagecodec.h"
#include "primary.h"
#include "secondary.h"
#include "stream.h"

#define PAGE COLO_PAGE_SIZE

enum sstate { S_WAITING, S_HELLO, S_SYNC, S_PROTECTED, S_PROMOTING, S_PROMOTED };

static const char *const state_names[] = {
	"waiting", "hello", "syncing", "protected", "promoting", "primary",
};

enum rxphase { RX_HELLO, RX_SYNC, RX_MSG, RX_RAM, RX_DEV };

struct sconn {
	uv_tcp_t tcp;
	struct colo_secondary *s;    /* NULL once dropped */
	struct colo_buf rx;
	bool refuser;                /* after promotion: answer and close */
};

struct cache {
	uint8_t *pages;              /* slots of 4 KiB, mmap'd */
	struct { uint32_t block, page; } *refs;
	size_t n, cap;
	uint32_t **index;            /* per block: slot + 1 of each page, or 0 */
};

struct colo_secondary {
	struct colo_node *n;
	uint64_t promote_from_ns;        /* last heartbeat (or the request) */
	bool promote_on_timeout;
	uv_tcp_t listener;
	struct sconn *conn;
	enum sstate state;
	enum rxphase phase;
	struct colo_stream_reader *reader;
	struct colo_ram_reader rr;
	struct colo_ram_block **blocks;  /* colo_ram's, by index */
	size_t nblocks;
	struct colo_ram_block **map;     /* MEM_SIZE index -> block */
	size_t nmap;
	struct colo_savevm_device *cur_dev;
	bool enable_colo;
	bool in_checkpoint;              /* RAM pages go to the cache */
	uint64_t ckpt_rx_start;          /* bytes_received when it began */
	/* Recording: what arrived of the sync or checkpoint in progress. */
	bool rec_tee;
	struct colo_buf rec_in;
	bool expect_send;                /* after REQUEST/REPLY */
	struct cache cache;
	XXH3_state_t *hash;
	uint64_t dev_len;
	struct colo_buf dev;
	struct colo_buf *backup;         /* one per device */
	/* what we hold */
	bool have_committed;
	uint64_t last_committed;
	uint64_t sync_seq;               /* the number the primary's Hello gave the sync */
	uint64_t sync_pages;
	/* the primary */
	char primary_node[256];
	uint64_t primary_gen;
	uint32_t encodings;
	struct colo_hb *hb;
	struct sockaddr_storage hb_peer;
	bool have_hb_peer;
	bool watching;
	struct colo_primary *primary;    /* after promotion */
	bool stopped;
};

static void drop_primary(struct colo_secondary *s, const char *why);
static void promote(struct colo_secondary *s, const char *why, bool timeout);

/* ---- cache ---- */

static int cache_init(struct colo_secondary *s, struct colo_err *err)
{
	struct cache *c = &s->cache;

	c->index = calloc(s->nblocks ? s->nblocks : 1, sizeof(*c->index));
	if (!c->index)
		return colo_err_set(err, ENOMEM, "out of memory");
	for (size_t b = 0; b < s->nblocks; b++) {
		c->index[b] = calloc(s->blocks[b]->npages ? s->blocks[b]->npages : 1,
				     sizeof(uint32_t));
		if (!c->index[b])
			return colo_err_set(err, ENOMEM, "out of memory");
	}
	return 0;
}

static void cache_discard(struct cache *c)
{
	for (size_t i = 0; i < c->n; i++)
		c->index[c->refs[i].block][c->refs[i].page] = 0;
	c->n = 0;
}

static void cache_free(struct colo_secondary *s)
{
	struct cache *c = &s->cache;

	for (size_t b = 0; c->index && b < s->nblocks; b++)
		free(c->index[b]);
	free(c->index);
	free(c->refs);
	if (c->pages)
		munmap(c->pages, c->cap * PAGE);
	memset(c, 0, sizeof(*c));
}

/* The slot of a page, made from its committed content on first use. */
static uint8_t *cache_slot(struct colo_secondary *s, uint32_t b, uint32_t pg,
			   struct colo_err *err)
{
	struct cache *c = &s->cache;
	uint32_t k = c->index[b][pg];

	if (k)
		return c->pages + (size_t)(k - 1) * PAGE;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 1024;
		uint8_t *np = mmap(NULL, cap * PAGE, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		void *nr = realloc(c->refs, cap * sizeof(*c->refs));

		if (np == MAP_FAILED || !nr) {
			if (np != MAP_FAILED)
				munmap(np, cap * PAGE);
			if (nr)
				c->refs = nr;
			colo_err_set(err, ENOMEM, "RAM cache: cannot hold %zu pages", cap);
			return NULL;
		}
		c->refs = nr;
		if (c->pages) {
			memcpy(np, c->pages, c->n * PAGE);
			munmap(c->pages, c->cap * PAGE);
		}
		c->pages = np;
		c->cap = cap;
	}
	k = (uint32_t)c->n + 1;
	c->refs[c->n].block = b;
	c->refs[c->n].page = pg;
	memcpy(c->pages + c->n * PAGE, s->blocks[b]->host + (size_t)pg * PAGE, PAGE);
	c->n++;
	c->index[b][pg] = k;
	return c->pages + (size_t)(k - 1) * PAGE;
}

static void cache_commit(struct colo_secondary *s)
{
	struct cache *c = &s->cache;

	for (size_t i = 0; i < c->n; i++) {
		struct colo_ram_block *b = s->blocks[c->refs[i].block];

		memcpy(b->host + (size_t)c->refs[i].page * PAGE, c->pages + i * PAGE, PAGE);
		c->index[c->refs[i].block][c->refs[i].page] = 0;
	}
	c->n = 0;
}

/* ---- RAM records: sync into the guest, checkpoints into the cache ---- */

static int on_mem_size(void *ud, const struct colo_ram_block_info *info, size_t n,
		       uint64_t total, struct colo_err *err)
{
	struct colo_secondary *s = ud;
	struct colo_ram_block **map;

	(void)total;
	if (s->in_checkpoint)
		return colo_err_set(err, EPROTO, "MEM_SIZE inside a checkpoint");
	map = calloc(n ? n : 1, sizeof(*map));
	if (!map)
		return colo_err_set(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		for (size_t b = 0; b < s->nblocks; b++)
			if (strcmp(s->blocks[b]->name, info[i].name) == 0)
				map[i] = s->blocks[b];
		if (!map[i] || map[i]->length != info[i].length) {
			free(map);
			return colo_err_set(err, EINVAL, "RAM block '%s' (%" PRIu64 " bytes) "
					    "of the primary is not a block of that size "
					    "here", info[i].name, info[i].length);
		}
	}
	free(s->map);
	s->map = map;
	s->nmap = n;
	return 0;
}

static size_t block_index(struct colo_secondary *s, const struct colo_ram_block *b)
{
	for (size_t i = 0; i < s->nblocks; i++)
		if (s->blocks[i] == b)
			return i;
	return 0;
}

static int on_page(void *ud, const struct colo_ram_page *p, struct colo_err *err)
{
	struct colo_secondary *s = ud;
	struct colo_ram_block *b = s->map[p->block_index];
	uint8_t *dst;

	if (!s->in_checkpoint) {
		s->sync_pages++;
		return colo_ram_page_apply(p, b->host, colo_page_codecs, err);
	}
	dst = cache_slot(s, (uint32_t)block_index(s, b), (uint32_t)(p->offset / PAGE), err);
	if (!dst)
		return -err->code;
	return colo_ram_page_apply_to(p, dst, colo_page_codecs, err);
}

/* ---- stream reader ops (sync and checkpoint RAM streams) ---- */

static int on_configuration(void *ud, const struct colo_stream_config *c,
			    uint64_t offset, struct colo_err *err)
{
	struct colo_secondary *s = ud;

	return colo_savevm_check_config(&s->n->sv, c, offset, &s->rr.ignore_shared, err);
}

static int on_section(void *ud, const struct colo_section_info *si,
		      struct colo_section_handler *h, struct colo_err *err)
{
	struct colo_secondary *s = ud;

	if (si->type != COLO_SEC_FULL) {
		if (strcmp(si->idstr, COLO_RAM_IDSTR) == 0 && si->instance_id == 0) {
			h->payload = colo_ram_reader_payload;
			h->ctx = &s->rr;
		}
		return 0;
	}
	if (s->in_checkpoint)
		return colo_err_set(err, EPROTO, "device section '%s' in the RAM part of "
				    "a checkpoint", si->idstr);
	s->cur_dev = colo_savevm_find_device(&s->n->sv, si->idstr, si->instance_id);
	if (s->cur_dev) {
		h->payload = colo_savevm_device_payload;
		h->ctx = s->cur_dev;
	}
	return 0;
}

static int on_command(void *ud, const struct colo_command_info *c, struct colo_err *err)
{
	struct colo_secondary *s = ud;

	(void)err;
	if (c->cmd == COLO_CMD_ENABLE_COLO)
		s->enable_colo = true;
	return 0;
}

static const struct colo_stream_ops stream_ops = {
	.configuration = on_configuration,
	.section = on_section,
	.command = on_command,
};

/* ---- sending ---- */

struct small_write {
	uv_write_t req;
	uint8_t data[];
};

static void on_small_written(uv_write_t *req, int status)
{
	(void)status;
	free(req);
}

static int conn_send(struct sconn *c, const void *data, size_t len)
{
	struct small_write *w = malloc(sizeof(*w) + len);
	uv_buf_t b;

	if (!w)
		return -ENOMEM;
	memcpy(w->data, data, len);
	b = uv_buf_init((char *)w->data, (unsigned)len);
	if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_small_written) != 0) {
		free(w);
		return -EIO;
	}
	return 0;
}

static int send_msg(struct colo_secondary *s, uint32_t m)
{
	uint8_t b[4];

	colo_store_be32(b, m);
	return s->conn ? conn_send(s->conn, b, 4) : -ENOTCONN;
}

static void send_hello(struct colo_secondary *s, struct sconn *c, bool accepted,
		       const char *refusal)
{
	struct colo_node *n = s->n;
	Colo__Hello h = COLO__HELLO__INIT;
	char names[128], *list[COLO_PAGE_KINDS], *save = NULL, *tok;
	size_t count = 0, len;
	uint8_t *buf;

	colo_encodings_format(accepted ? s->encodings : n->cfg.encodings, names,
			      sizeof(names));
	for (tok = strtok_r(names, ",", &save); tok && count < COLO_PAGE_KINDS;
	     tok = strtok_r(NULL, ",", &save))
		list[count++] = tok;
	h.protocol = COLO_REPL_VERSION;
	h.node_id = n->cfg.name;
	h.role = s->state == S_PROMOTED ? COLO__ROLE__ROLE_PRIMARY :
		 COLO__ROLE__ROLE_SECONDARY;
	h.generation = n->generation;
	h.n_encodings = count;
	h.encodings = list;
	h.guest = n->machine;
	h.heartbeat_port = s->hb ? colo_hb_port(s->hb) : 0;
	h.accepted = accepted;
	h.refusal = (char *)(refusal ? refusal : "");
	len = colo__hello__get_packed_size(&h);
	buf = malloc(4 + len);
	if (!buf)
		return;
	colo_store_be32(buf, (uint32_t)len);
	colo__hello__pack(&h, buf + 4);
	conn_send(c, buf, 4 + len);
	free(buf);
}

/* ---- connection ---- */

static void on_conn_closed(uv_handle_t *h)
{
	struct sconn *c = h->data;

	colo_buf_free(&c->rx);
	free(c);
}

static void conn_close(struct sconn *c)
{
	c->s = NULL;
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void reset_stream(struct colo_secondary *s)
{
	colo_stream_reader_free(s->reader);
	s->reader = NULL;
	colo_ram_reader_free(&s->rr);
	{
		struct colo_ram_sink sink = { on_mem_size, on_page, s };

		colo_ram_reader_init(&s->rr, &sink, s->encodings);
	}
	free(s->map);
	s->map = NULL;
	s->nmap = 0;
	cache_discard(&s->cache);
	s->in_checkpoint = false;
	s->expect_send = false;
	s->rec_tee = false;
	colo_buf_reset(&s->rec_in);
}

/* Forget the primary's connection; what was committed stays. */
static void drop_primary(struct colo_secondary *s, const char *why)
{
	bool syncing = s->state == S_SYNC;

	if (s->conn) {
		conn_close(s->conn);
		s->conn = NULL;
	}
	reset_stream(s);
	colo_buf_reset(&s->dev);
	if (syncing) {
		/* A half-loaded sync leaves nothing to take over from. */
		s->have_committed = false;
	}
	if (s->state != S_PROMOTING && s->state != S_PROMOTED)
		s->state = S_WAITING;
	if (why)
		colo_log_warn("primary %s: %s; %s", s->primary_node[0] ? s->primary_node :
			      "(hello)", why, s->have_committed ?
			      "keeping the last committed checkpoint" :
			      "no committed state to take over from");
}

static void protocol_error(struct colo_secondary *s, const char *what)
{
	s->n->stats.checkpoints_failed++;
	drop_primary(s, what);
}

/* ---- Hello ---- */

static void hello(struct colo_secondary *s, struct sconn *c, const uint8_t *data,
		  size_t len)
{
	struct colo_node *n = s->n;
	Colo__Hello *h = colo__hello__unpack(NULL, len, data);
	char why[768];
	uint32_t offered = 0;
	struct colo_err err;

	if (!h || !h->node_id) {
		if (h)
			colo__hello__free_unpacked(h, NULL);
		colo_log_warn("a peer sent a Hello that does not unpack: closing");
		if (c == s->conn)
			drop_primary(s, NULL);
		else
			conn_close(c);
		return;
	}
	why[0] = '\0';
	if (h->protocol != COLO_REPL_VERSION)
		snprintf(why, sizeof(why), "replication protocol %u, this node speaks %d",
			 h->protocol, COLO_REPL_VERSION);
	else if (strcmp(h->node_id, n->cfg.name) == 0)
		snprintf(why, sizeof(why), "node '%s' is this node: check --peer", h->node_id);
	else if (h->generation < n->generation)
		snprintf(why, sizeof(why), "refusing primary %s: its generation %" PRIu64
			 " is older than ours (%" PRIu64 ")", h->node_id, h->generation,
			 n->generation);
	else if (s->state == S_PROMOTED || s->state == S_PROMOTING)
		snprintf(why, sizeof(why), "node %s is a primary now (generation %" PRIu64 ")",
			 n->cfg.name, n->generation);
	else if (c->refuser)
		snprintf(why, sizeof(why), "node %s already protects primary %s",
			 n->cfg.name, s->primary_node);
	else if (!h->guest || strcmp(h->guest, n->machine) != 0)
		snprintf(why, sizeof(why), "primary %s runs guest '%s', this node '%s'",
			 h->node_id, h->guest ? h->guest : "", n->machine);
	if (why[0]) {
		colo_log_warn("%s", why);
		send_hello(s, c, false, why);
		colo__hello__free_unpacked(h, NULL);
		if (c == s->conn) {
			s->conn = NULL;
			reset_stream(s);
			s->state = S_WAITING;
		}
		conn_close(c);
		return;
	}
	colo_err_clear(&err);
	for (size_t i = 0; i < h->n_encodings; i++) {
		uint32_t one;

		if (colo_encodings_parse(h->encodings[i], &one, &err) == 0)
			offered |= one;
	}
	s->encodings = (offered & n->cfg.encodings) | COLO_PAGE_KIND_BIT(COLO_PAGE_RAW);
	snprintf(s->primary_node, sizeof(s->primary_node), "%s", h->node_id);
	s->primary_gen = h->generation;
	s->sync_seq = h->sync_seq;
	/* Heartbeats go to the primary's address, on the port its Hello names,
	 * once the sync made its generation ours (sync_done). */
	s->have_hb_peer = false;
	if (h->heartbeat_port) {
		int sl = sizeof(s->hb_peer);

		if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&s->hb_peer, &sl) == 0) {
			if (s->hb_peer.ss_family == AF_INET)
				((struct sockaddr_in *)&s->hb_peer)->sin_port =
					htons((uint16_t)h->heartbeat_port);
			else
				((struct sockaddr_in6 *)&s->hb_peer)->sin6_port =
					htons((uint16_t)h->heartbeat_port);
			s->have_hb_peer = true;
		}
	}
	colo__hello__free_unpacked(h, NULL);
	reset_stream(s);
	s->reader = colo_stream_reader_new(&stream_ops, s, COLO_SR_TRAILING_OK);
	if (!s->reader) {
		drop_primary(s, "out of memory");
		return;
	}
	s->enable_colo = false;
	s->sync_pages = 0;
	/* The sync overwrites the guest: until it completes we hold nothing. */
	s->have_committed = false;
	s->state = S_SYNC;
	s->phase = RX_SYNC;
	s->rec_tee = n->rec != NULL;
	colo_buf_reset(&s->rec_in);
	n->stats.full_syncs++;
	send_hello(s, c, true, NULL);
	colo_log_info("primary %s (generation %" PRIu64 ") connected; loading its full "
		      "sync", s->primary_node, s->primary_gen);
}

/* ---- the checkpoint's device stream ---- */

struct devload {
	struct colo_secondary *s;
	struct colo_ckpt_info info;
	bool have_info;
	uint64_t info_offset;
	struct colo_savevm_device *dev;
};

static int ckpt_info_payload(void *ctx, const struct colo_section_info *si,
			     struct colo_in *in, struct colo_err *err)
{
	struct devload *d = ctx;
	int r;

	(void)si;
	r = colo_vmstate_load(in, &colo_ckpt_info_vmstate, &d->info,
			      (int)si->version_id, err);
	if (r == 0)
		d->have_info = true;
	return r;
}

static int dev_section(void *ud, const struct colo_section_info *si,
		       struct colo_section_handler *h, struct colo_err *err)
{
	struct devload *d = ud;

	if (si->type != COLO_SEC_FULL)
		return colo_err_set(err, EPROTO, "%s section in a device stream",
				    colo_stream_section_type_name(si->type));
	if (d->have_info)
		return colo_err_set(err, EPROTO, "section '%s' after %s", si->idstr,
				    COLO_CKPT_IDSTR);
	if (strcmp(si->idstr, COLO_CKPT_IDSTR) == 0 && si->instance_id == 0) {
		d->info_offset = si->offset;
		h->payload = ckpt_info_payload;
		h->ctx = d;
		return 0;
	}
	d->dev = colo_savevm_find_device(&d->s->n->sv, si->idstr, si->instance_id);
	if (d->dev) {
		h->payload = colo_savevm_device_payload;
		h->ctx = d->dev;
	}
	return 0;
}

static const struct colo_stream_ops dev_ops = { .section = dev_section };

/* Save every device so a bad device stream can be undone. */
static int backup_devices(struct colo_secondary *s, struct colo_err *err)
{
	struct colo_savevm *sv = &s->n->sv;

	for (size_t i = 0; i < sv->ndevs; i++) {
		colo_buf_reset(&s->backup[i]);
		if (colo_vmstate_save(&s->backup[i], sv->devs[i].vmsd, sv->devs[i].opaque,
				      NULL, err))
			return -err->code;
	}
	return 0;
}

static void restore_devices(struct colo_secondary *s)
{
	struct colo_savevm *sv = &s->n->sv;

	for (size_t i = 0; i < sv->ndevs; i++) {
		struct colo_in in;
		struct colo_err err;

		colo_err_clear(&err);
		colo_in_init(&in, s->backup[i].data, s->backup[i].len, 0, true);
		colo_vmstate_load(&in, sv->devs[i].vmsd, sv->devs[i].opaque,
				  sv->devs[i].vmsd->version_id, &err);
	}
}

/*
 * The whole checkpoint is here: check it, load its devices, acknowledge,
 * commit, acknowledge again.  One step on the loop: nothing can come between.
 */
/*
 * Hand the checkpoint just committed to the recording: the bytes as they
 * arrived, or, when the recording has no state to start from yet, the whole
 * committed state as its first keyframe.
 */
static void record_committed(struct colo_secondary *s, const struct colo_ckpt_info *info)
{
	struct colo_node *n = s->n;
	struct colo_err err;

	if (!n->rec) {
		s->rec_tee = false;
		return;
	}
	if (colo_recorder_wants_keyframe(n->rec)) {
		struct colo_buf full;

		colo_buf_init(&full);
		colo_err_clear(&err);
		if (colo_node_snapshot(n, &full, &err) == 0) {
			struct iovec v = { full.data, full.len };

			colo_recorder_full(n->rec, info->seq, n->generation, info->time_ns, &v, 1);
		} else {
			colo_log_error("recording: %s", err.msg);
		}
		colo_buf_free(&full);
	} else if (s->rec_tee && colo_buf_ok(&s->rec_in)) {
		struct iovec ram = { s->rec_in.data, s->rec_in.len };
		struct iovec dev = { s->dev.data, s->dev.len };

		colo_recorder_checkpoint(n->rec, info->seq, n->generation, info->time_ns, &ram, 1,
					 &dev, 1);
	}
	s->rec_tee = false;
	colo_buf_reset(&s->rec_in);
}

static void finish_checkpoint(struct colo_secondary *s)
{
	struct colo_node *n = s->n;
	struct colo_stream_reader *r;
	struct devload d;
	struct colo_err err;
	uint64_t sum;
	int rc;

	memset(&d, 0, sizeof(d));
	d.s = s;
	colo_err_clear(&err);
	if (backup_devices(s, &err)) {
		colo_log_error("checkpoint: %s", err.msg);
		protocol_error(s, "cannot back up devices");
		return;
	}
	r = colo_stream_reader_new(&dev_ops, &d, COLO_SR_NO_HEADER | COLO_SR_NO_VMDESC);
	rc = r ? (int)colo_stream_reader_feed(r, s->dev.data, s->dev.len) : -ENOMEM;
	if (rc >= 0)
		rc = colo_stream_reader_finish(r);
	if (rc < 0 || !d.have_info) {
		colo_log_error("checkpoint device stream: %s", r ?
			       (rc < 0 ? colo_stream_reader_error(r) :
				"no " COLO_CKPT_IDSTR " section") : "out of memory");
		colo_stream_reader_free(r);
		restore_devices(s);
		protocol_error(s, "bad device stream");
		return;
	}
	colo_stream_reader_free(r);
	XXH3_64bits_update(s->hash, s->dev.data, d.info_offset);
	sum = XXH3_64bits_digest(s->hash);
	if (sum != d.info.checksum || d.info.generation != s->primary_gen ||
	    d.info.seq != s->last_committed + 1) {
		colo_log_error("checkpoint %" PRIu64 " refused: the primary's checksum %016" PRIx64
			       ", %016" PRIx64 " over what arrived, generation %" PRIu64 " (expected %" PRIu64
			       "), sequence expected %" PRIu64, d.info.seq, d.info.checksum,
			       sum, d.info.generation, s->primary_gen, s->last_committed + 1);
		restore_devices(s);
		protocol_error(s, "checkpoint verification failed");
		return;
	}
	/* From here on we commit this checkpoint before any promotion. */
	send_msg(s, COLO_MSG_VMSTATE_RECEIVED);
	cache_commit(s);
	s->last_committed = d.info.seq;
	record_committed(s, &d.info);
	colo_hb_set_committed(s->hb, s->last_committed);
	n->stats.checkpoints++;
	colo_stats_checkpoint(&n->stats, colo_now_ns(), d.info.pages,
			      n->stats.bytes_received - s->ckpt_rx_start);
	send_msg(s, COLO_MSG_VMSTATE_LOADED);
	colo_buf_reset(&s->dev);
	s->in_checkpoint = false;
}

/* ---- channel parser ---- */

static void sync_done(struct colo_secondary *s)
{
	struct colo_node *n = s->n;
	struct colo_err err;

	if (!s->enable_colo) {
		protocol_error(s, "the full sync did not enable COLO");
		return;
	}
	colo_err_clear(&err);
	if (s->primary_gen != n->generation &&
	    colo_node_set_generation(n, s->primary_gen, &err) != 0) {
		colo_log_error("%s", err.msg);
		protocol_error(s, "cannot persist the generation");
		return;
	}
	colo_hb_set_identity(s->hb, n->cfg.name, COLO__ROLE__ROLE_SECONDARY, n->generation);
	if (s->have_hb_peer)
		colo_hb_send_to(s->hb, (struct sockaddr *)&s->hb_peer,
				n->cfg.heartbeat_interval_ms, colo_node_stall_ms(n));
	s->have_committed = true;
	s->last_committed = s->sync_seq;
	if (s->rec_tee && n->rec && colo_buf_ok(&s->rec_in)) {
		struct iovec v = { s->rec_in.data, s->rec_in.len };

		colo_recorder_full(n->rec, s->sync_seq, n->generation, 0, &v, 1);
	}
	s->rec_tee = false;
	colo_buf_free(&s->rec_in);
	s->state = S_PROTECTED;
	s->phase = RX_MSG;
	colo_hb_watch(s->hb, s->primary_node, n->cfg.heartbeat_timeout_ms);
	s->watching = true;
	colo_log_info("full sync from %s loaded (%" PRIu64 " pages): protecting it",
		      s->primary_node, s->sync_pages);
	send_msg(s, COLO_MSG_CHECKPOINT_READY);
}

/* Feed the reader from rx[*pos..]; returns 1 when its stream ended. */
static int feed_stream(struct colo_secondary *s, const uint8_t *p, size_t len,
		       size_t *used, bool hash)
{
	ssize_t got = colo_stream_reader_feed(s->reader, p, len);

	if (got < 0) {
		colo_log_error("stream from %s: %s", s->primary_node,
			       colo_stream_reader_error(s->reader));
		return -1;
	}
	if (hash)
		XXH3_64bits_update(s->hash, p, (size_t)got);
	if (s->rec_tee)
		colo_buf_put(&s->rec_in, p, (size_t)got);
	*used = (size_t)got;
	return colo_stream_reader_done(s->reader) ? 1 : 0;
}

static void parse_rx(struct colo_secondary *s)
{
	struct sconn *c = s->conn;
	size_t pos = 0;

	while (s->conn == c && c) {
		const uint8_t *p = c->rx.data + pos;
		size_t avail = c->rx.len - pos, used = 0;
		uint32_t m;
		int r;

		switch (s->phase) {
		case RX_HELLO: {
			uint32_t len;

			if (avail < 4)
				goto out;
			len = colo_load_be32(p);
			if (len == 0 || len > COLO_HELLO_MAX) {
				colo_log_warn("a peer sent a Hello of %u bytes: closing", len);
				drop_primary(s, NULL);
				return;
			}
			if (avail < 4 + (size_t)len)
				goto out;
			pos += 4 + len;
			hello(s, c, p + 4, len);
			break;
		}
		case RX_SYNC:
		case RX_RAM:
			if (avail == 0)
				goto out;
			r = feed_stream(s, p, avail, &used, s->phase == RX_RAM);
			if (r < 0) {
				protocol_error(s, s->phase == RX_SYNC ? "bad full sync" :
					       "bad checkpoint");
				return;
			}
			pos += used;
			if (r == 1) {
				if (s->phase == RX_SYNC)
					sync_done(s);
				else
					s->phase = RX_MSG;
			}
			break;
		case RX_MSG:
			if (avail < 4)
				goto out;
			m = colo_load_be32(p);
			if (m == COLO_MSG_VMSTATE_SIZE) {
				uint64_t n;

				if (avail < 12)
					goto out;
				n = colo_load_be64(p + 4);
				if (!s->in_checkpoint || n > COLO_DEVSTATE_MAX) {
					protocol_error(s, "unexpected VMSTATE_SIZE");
					return;
				}
				pos += 12;
				s->dev_len = n;
				colo_buf_reset(&s->dev);
				s->phase = RX_DEV;
				break;
			}
			pos += 4;
			if (m == COLO_MSG_CHECKPOINT_REQUEST && !s->in_checkpoint &&
			    !s->expect_send) {
				s->expect_send = true;
				send_msg(s, COLO_MSG_CHECKPOINT_REPLY);
			} else if (m == COLO_MSG_VMSTATE_SEND && s->expect_send) {
				s->expect_send = false;
				s->in_checkpoint = true;
				s->ckpt_rx_start = s->n->stats.bytes_received;
				s->rec_tee = s->n->rec != NULL &&
					     !colo_recorder_wants_keyframe(s->n->rec);
				colo_buf_reset(&s->rec_in);
				XXH3_64bits_reset(s->hash);
				colo_stream_reader_restart(s->reader, COLO_SR_NO_HEADER |
							   COLO_SR_NO_VMDESC |
							   COLO_SR_TRAILING_OK);
				s->phase = RX_RAM;
			} else {
				char why[80];

				snprintf(why, sizeof(why), "unexpected message %u (%s)", m,
					 colo_msg_name(m));
				protocol_error(s, why);
				return;
			}
			break;
		case RX_DEV: {
			size_t want = (size_t)(s->dev_len - s->dev.len);
			size_t take = avail < want ? avail : want;

			colo_buf_put(&s->dev, p, take);
			pos += take;
			if (s->dev.len < s->dev_len)
				goto out;
			s->phase = RX_MSG;
			finish_checkpoint(s);
			break;
		}
		}
	}
out:
	if (s->conn == c && c) {
		memmove(c->rx.data, c->rx.data + pos, c->rx.len - pos);
		c->rx.len -= pos;
	}
}

static void alloc_read(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct sconn *c = h->data;

	(void)suggested;
	if (!colo_buf_reserve(&c->rx, 65536)) {
		*buf = uv_buf_init(NULL, 0);
		return;
	}
	*buf = uv_buf_init((char *)c->rx.data + c->rx.len, (unsigned)(c->rx.cap - c->rx.len));
}

/* After promotion, a connection gets a refusing Hello and is closed. */
static void refuser_read(struct sconn *c)
{
	struct colo_secondary *s = c->s;
	uint32_t len;

	if (c->rx.len < 4)
		return;
	len = colo_load_be32(c->rx.data);
	if (len == 0 || len > COLO_HELLO_MAX) {
		conn_close(c);
		return;
	}
	if (c->rx.len < 4 + (size_t)len)
		return;
	hello(s, c, c->rx.data + 4, len);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct sconn *c = st->data;
	struct colo_secondary *s = c->s;

	(void)buf;
	if (!s)
		return;
	if (nread < 0) {
		if (c == s->conn)
			drop_primary(s, nread == UV_EOF ? "connection closed" :
				     uv_strerror((int)nread));
		else
			conn_close(c);
		return;
	}
	c->rx.len += (size_t)nread;
	if (c->refuser) {
		refuser_read(c);
		return;
	}
	s->n->stats.bytes_received += (uint64_t)nread;
	parse_rx(s);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct colo_secondary *s = server->data;
	struct sconn *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->s = s;
	colo_buf_init(&c->rx);
	uv_tcp_init(s->n->loop, &c->tcp);
	c->tcp.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	if (s->state == S_PROMOTED || s->state == S_PROMOTING || s->conn) {
		/* Hear it out, then refuse: a stale primary learns why. */
		c->refuser = true;
	} else {
		s->conn = c;
		s->state = S_HELLO;
		s->phase = RX_HELLO;
	}
	uv_read_start((uv_stream_t *)&c->tcp, alloc_read, on_read);
}

/* ---- failover ---- */

static void on_promote_hook(void *ud, int status)
{
	struct colo_secondary *s = ud;

	if (status == 0)
		colo_log_info("promote-command done");
	else
		colo_log_error("promote-command exited with status %d", status);
	(void)s;
}

static void take_over(struct colo_secondary *s)
{
	struct colo_node *n = s->n;
	struct colo_err err;

	colo_err_clear(&err);
	if (colo_node_set_generation(n, n->generation + 1, &err) != 0) {
		colo_log_error("cannot take over: %s", err.msg);
		colo_node_exit(n, COLO_EXIT_STATE);
		return;
	}
	s->state = S_PROMOTED;
	n->stats.failovers++;
	colo_hb_set_identity(s->hb, n->cfg.name, COLO__ROLE__ROLE_PRIMARY, n->generation);
	colo_hb_send_to(s->hb, NULL, 0, 0);
	colo_log_info("taking over as primary, generation %" PRIu64 ", from checkpoint %"
		      PRIu64, n->generation, s->last_committed);
	if (colo_primary_start(n, s->last_committed + 1, &s->primary, &err) != 0) {
		colo_log_error("cannot start the primary engine: %s", err.msg);
		colo_node_exit(n, COLO_EXIT_SETUP);
		return;
	}
	{
		double ms = (double)(colo_now_ns() - s->promote_from_ns) / 1e6;

		if (s->promote_on_timeout)
			colo_log_info("serving as primary %.1f ms after the last heartbeat "
				      "(timeout %u ms, overhead %.1f ms)", ms,
				      n->cfg.heartbeat_timeout_ms,
				      ms - n->cfg.heartbeat_timeout_ms);
		else
			colo_log_info("serving as primary %.1f ms after the request", ms);
	}
	if (n->cfg.promote_command && n->cfg.promote_command[0])
		colo_node_run_hook(n, "promote", n->cfg.promote_command, on_promote_hook, s,
				   &err);
}

static void on_fence_done(void *ud, int status)
{
	struct colo_secondary *s = ud;

	if (status != 0) {
		colo_log_error("fence-command exited with status %d: not taking over", status);
		colo_node_exit(s->n, COLO_EXIT_FENCE);
		return;
	}
	colo_log_info("fence-command done");
	take_over(s);
}

static void promote(struct colo_secondary *s, const char *why, bool timeout)
{
	struct colo_node *n = s->n;
	struct colo_err err;

	if (s->state == S_PROMOTING || s->state == S_PROMOTED)
		return;
	colo_log_warn("%s: taking over from %s (last committed checkpoint %" PRIu64 ")",
		      why, s->primary_node, s->last_committed);
	/* What failover costs is measured from the last sign of life. */
	{
		uint64_t now = colo_now_ns(), since = colo_hb_since_last(s->hb);

		s->promote_on_timeout = timeout && since != UINT64_MAX && since <= now;
		s->promote_from_ns = s->promote_on_timeout ? now - since : now;
	}
	/* A checkpoint in flight is discarded whole. */
	drop_primary(s, NULL);
	s->state = S_PROMOTING;
	colo_hb_watch(s->hb, NULL, 0);
	s->watching = false;
	if (n->cfg.fence_command && n->cfg.fence_command[0]) {
		colo_err_clear(&err);
		if (colo_node_run_hook(n, "fence", n->cfg.fence_command, on_fence_done, s,
				       &err) != 0) {
			colo_log_error("fence-command: %s: not taking over", err.msg);
			colo_node_exit(n, COLO_EXIT_FENCE);
		}
		return;
	}
	take_over(s);
}

static void on_peer_dead(void *ud)
{
	struct colo_secondary *s = ud;
	char why[384];

	if (!s->watching || s->state == S_PROMOTING || s->state == S_PROMOTED)
		return;
	if (!s->have_committed) {
		colo_log_warn("primary %s silent for %u ms, but there is no committed "
			      "checkpoint to take over from", s->primary_node,
			      s->n->cfg.heartbeat_timeout_ms);
		colo_hb_watch(s->hb, NULL, 0);
		s->watching = false;
		return;
	}
	snprintf(why, sizeof(why), "no heartbeat from %s for %u ms", s->primary_node,
		 s->n->cfg.heartbeat_timeout_ms);
	promote(s, why, true);
}

static void on_newer_generation(void *ud, const char *node, uint64_t gen)
{
	(void)ud; (void)node; (void)gen;   /* a secondary adopts it at sync */
}

/* ---- engine ops ---- */

static void eng_status(void *eng, char *state, size_t slen, char *peer, size_t plen,
		       char *peer_state, size_t pslen, uint64_t *last, char *enc,
		       size_t elen)
{
	struct colo_secondary *s = eng;
	uint64_t since = s->hb ? colo_hb_since_last(s->hb) : UINT64_MAX;

	snprintf(state, slen, "%s", state_names[s->state]);
	snprintf(peer, plen, "%s", s->primary_node[0] ? s->primary_node : "-");
	if (!s->primary_node[0])
		snprintf(peer_state, pslen, "none");
	else if (since == UINT64_MAX || since > (uint64_t)s->n->cfg.heartbeat_timeout_ms *
		 1000000ull)
		snprintf(peer_state, pslen, "%s, no heartbeat", s->conn ? "connected" :
			 "disconnected");
	else
		snprintf(peer_state, pslen, "%s, alive", s->conn ? "connected" :
			 "disconnected");
	*last = s->last_committed;
	if (s->state == S_SYNC || s->state == S_PROTECTED)
		colo_encodings_format(s->encodings, enc, elen);
	else
		snprintf(enc, elen, "-");
}

static int eng_failover(void *eng, char *msg, size_t len, struct colo_err *err)
{
	struct colo_secondary *s = eng;

	if (s->state == S_PROMOTING || s->state == S_PROMOTED)
		return colo_err_set(err, EALREADY, "already taking over");
	if (!s->have_committed)
		return colo_err_set(err, EAGAIN, "no committed checkpoint yet: nothing to "
				    "take over from");
	snprintf(msg, len, "taking over from checkpoint %" PRIu64 ", generation %" PRIu64
		 " -> %" PRIu64, s->last_committed, s->n->generation, s->n->generation + 1);
	promote(s, "failover requested", false);
	return 0;
}

static int eng_set_interval(void *eng, uint32_t ms, char *msg, size_t len,
			    struct colo_err *err)
{
	(void)eng; (void)ms; (void)msg; (void)len;
	return colo_err_set(err, EINVAL, "this node is a secondary: the checkpoint "
			    "interval is set on the primary");
}

static int eng_checkpoint(void *eng, struct colo_ctl_pending *p, struct colo_err *err)
{
	(void)eng; (void)p;
	return colo_err_set(err, EINVAL, "this node is a secondary: checkpoints are "
			    "taken by the primary");
}

static void eng_reloaded(void *eng)
{
	(void)eng;
}

/* SIGTERM, as the active engine or (after promotion) as a stop hook. */
static void eng_stop(void *eng)
{
	struct colo_secondary *s = eng;

	if (s->stopped)
		return;
	s->stopped = true;
	if (s->conn) {
		conn_close(s->conn);
		s->conn = NULL;
	}
	uv_close((uv_handle_t *)&s->listener, NULL);
	colo_hb_stop(s->hb);
	s->hb = NULL;
}

static const struct colo_engine_ops secondary_ops = {
	.role = COLO_ROLE_SECONDARY,
	.status = eng_status,
	.failover = eng_failover,
	.set_interval = eng_set_interval,
	.checkpoint = eng_checkpoint,
	.reloaded = eng_reloaded,
	.stop = eng_stop,
};

/* ---- public ---- */

int colo_secondary_start(struct colo_node *n, struct colo_secondary **out,
			 struct colo_err *err)
{
	struct colo_hb_cb cb = { on_peer_dead, on_newer_generation, NULL };
	struct sockaddr_storage ss;
	struct colo_secondary *s;
	int r;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return colo_err_set(err, ENOMEM, "out of memory");
	s->n = n;
	cb.ud = s;
	s->encodings = n->cfg.encodings;
	s->nblocks = colo_ram_nblocks(n->ram);
	s->blocks = calloc(s->nblocks ? s->nblocks : 1, sizeof(*s->blocks));
	s->backup = calloc(n->sv.ndevs ? n->sv.ndevs : 1, sizeof(*s->backup));
	s->hash = XXH3_createState();
	if (!s->blocks || !s->backup || !s->hash) {
		r = colo_err_set(err, ENOMEM, "out of memory");
		goto fail;
	}
	for (size_t b = 0; b < s->nblocks; b++)
		s->blocks[b] = colo_ram_block_at(n->ram, b);
	colo_buf_init(&s->dev);
	r = cache_init(s, err);
	if (r)
		goto fail;
	{
		struct colo_ram_sink sink = { on_mem_size, on_page, s };

		colo_ram_reader_init(&s->rr, &sink, s->encodings);
	}
	r = colo_addr_sockaddr(&n->cfg.listen, &ss, err);
	if (r)
		goto fail;
	r = colo_hb_start(n->loop, &n->cfg.listen, &cb, &n->stats, &s->hb, err);
	if (r)
		goto fail;
	colo_hb_set_identity(s->hb, n->cfg.name, COLO__ROLE__ROLE_SECONDARY, n->generation);
	uv_tcp_init(n->loop, &s->listener);
	s->listener.data = s;
	r = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&s->listener, 8, on_connection);
	if (r) {
		colo_err_set(err, -r, "cannot listen on %s:%u: %s", n->cfg.listen.host,
			     n->cfg.listen.port, uv_strerror(r));
		uv_close((uv_handle_t *)&s->listener, NULL);
		colo_hb_stop(s->hb);
		s->hb = NULL;
		r = -err->code;
		goto fail;
	}
	colo_node_set_engine(n, &secondary_ops, s);
	/* After a promotion the primary engine is the node's; this listener
	 * and heartbeat socket still have to close on SIGTERM. */
	colo_node_add_stop_hook(n, eng_stop, s);
	colo_log_info("secondary engine listening on %s:%u (generation %" PRIu64 ")",
		      n->cfg.listen.host, n->cfg.listen.port, n->generation);
	*out = s;
	return 0;
fail:
	colo_secondary_free(s);
	return r;
}

void colo_secondary_free(struct colo_secondary *s)
{
	if (!s)
		return;
	colo_primary_free(s->primary);
	colo_stream_reader_free(s->reader);
	colo_ram_reader_free(&s->rr);
	free(s->map);
	cache_free(s);
	colo_buf_free(&s->rec_in);
	for (size_t i = 0; s->backup && i < s->n->sv.ndevs; i++)
		colo_buf_free(&s->backup[i]);
	free(s->backup);
	colo_buf_free(&s->dev);
	if (s->hash)
		XXH3_freeState(s->hash);
	free(s->blocks);
	free(s);
}
