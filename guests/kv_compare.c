/*
 * kv_compare.c: the kv guest in compare mode (guest.h, "Compare mode";
 * docs/kv.md, "Compare mode").
 *
 * Primary: every batch the kv thread runs on a connection (the complete
 * commands of one read, up to the output cap) is one unit.  kv_cmp_emit()
 * gives it the next position, builds its bytes in kv->unit (kv thread
 * only, reused) and its digest, and calls the tap under hook_mu, inside
 * the run section and before the batch's replies are queued: the tap
 * copies what it keeps.  output_match() raises the matched watermark and
 * wakes the kv thread, whose flush lets every held reply at or before it
 * go.
 *
 * Secondary: kv_compare_run() takes a unit's bytes on the engine's loop
 * thread (guest attached, not started), checks them whole before anything
 * runs (a unit refused changes nothing), reopens the store on the RAM
 * block (checkpoints replace RAM and meta between calls), runs the
 * commands with a fresh parser, the unit's client state and counters, and
 * digests the replies (kv->cmp_out, loop thread only, reused).
 *
 * The unit (all integers big-endian, as on the rest of colo's wire):
 *
 *    0  u8   version (1)
 *    1  u8   flags: KV_UNIT_PROTO_ERROR, no others
 *    2  u16  tcp_port                 what INFO, CONFIG GET port show
 *    4  u64  client id                CLIENT ID, HELLO
 *   12  u64  uptime_s                 INFO
 *   20  u64  connected_clients        INFO
 *   28  u64  total_connections        INFO
 *   36  u64  commands_processed       INFO, before the unit's first command
 *   44  u8   n: the client name's length (0: none)
 *   45  n    the name (CLIENT SETNAME before the unit), '!'..'~' only
 * 45+n  u32  m: the RESP bytes' length
 * 49+n  m    the RESP bytes the batch ran
 *
 * and nothing after.  The RESP bytes are the batch's complete commands: up
 * to and with QUIT if it ran one, and all the connection's input if the
 * batch ended in a protocol error (the parser finds the same fault in the
 * same bytes however they were split, docs/kv.md).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "kv_int.h"
#include "ram.h"
#include "resp.h"

#define UNIT_VERSION 1u
#define UNIT_FIXED 45u               /* through the name's length byte */
#define UNIT_HDR (UNIT_FIXED + 4u)   /* plus the RESP length, without the name */
#define UNIT_KEEP (1u << 20)         /* a scratch buffer above this is freed */
#define PARSER_KEEP 4096             /* ... and a parser with room for more args */

void kv_cmp_digest(const uint8_t *out, size_t len, struct colo_cmp_digest *d)
{
	d->len = len;
	d->hash = len ? XXH3_64bits(out, len) : 0;
}

/* ---- primary ---- */

static void unit_put(struct colo_buf *b, const struct colo_kvcmd_ctx *ctx, const uint8_t *resp,
		     size_t len, unsigned flags)
{
	const struct colo_kvcmd_client *cl = ctx->client;
	size_t nl = strnlen(cl->name, COLO_KVCMD_NAME_MAX);

	colo_buf_put_u8(b, UNIT_VERSION);
	colo_buf_put_u8(b, (uint8_t)flags);
	colo_buf_put_be16(b, ctx->tcp_port);
	colo_buf_put_be64(b, cl->id);
	colo_buf_put_be64(b, ctx->uptime_s);
	colo_buf_put_be64(b, ctx->connected_clients);
	colo_buf_put_be64(b, ctx->total_connections);
	colo_buf_put_be64(b, ctx->commands_processed);
	colo_buf_put_u8(b, (uint8_t)nl);
	colo_buf_put(b, cl->name, nl);
	colo_buf_put_be32(b, (uint32_t)len);
	colo_buf_put(b, resp, len);
}

uint64_t kv_cmp_emit(struct kv *kv, const struct colo_kvcmd_ctx *ctx, const uint8_t *resp,
		     size_t len, unsigned flags, uint64_t epoch, const uint8_t *out,
		     size_t outlen)
{
	struct colo_cmp_unit u;
	size_t nl = strnlen(ctx->client->name, COLO_KVCMD_NAME_MAX);

	pthread_mutex_lock(&kv->hook_mu);
	if (!kv->tap) {
		pthread_mutex_unlock(&kv->hook_mu);
		return 0;
	}
	memset(&u, 0, sizeof(u));
	u.pos = ++kv->last_pos;
	u.epoch = epoch;
	kv_cmp_digest(out, outlen, &u.out);
	/* Too big, or no memory for it: not compared, it waits for a
	 * checkpoint (guest.h). */
	if (len <= COLO_CMP_UNIT_MAX - UNIT_HDR - nl) {
		colo_buf_reset(&kv->unit);
		unit_put(&kv->unit, ctx, resp, len, flags);
		if (colo_buf_ok(&kv->unit)) {
			u.data = kv->unit.data;
			u.len = kv->unit.len;
		}
	}
	kv->tap(kv->tap_ud, &u);
	pthread_mutex_unlock(&kv->hook_mu);
	if (kv->unit.cap > UNIT_KEEP || !colo_buf_ok(&kv->unit))
		colo_buf_free(&kv->unit);
	return u.pos;
}

void kv_compare_tap(struct colo_guest *g, void (*fn)(void *ud, const struct colo_cmp_unit *u),
		    void *ud)
{
	struct kv *kv = kv_of(g);

	pthread_mutex_lock(&kv->hook_mu);
	kv->tap = fn;
	kv->tap_ud = ud;
	atomic_store(&kv->tap_set, fn != NULL);
	pthread_mutex_unlock(&kv->hook_mu);
}

void kv_output_match(struct colo_guest *g, uint64_t pos)
{
	struct kv *kv = kv_of(g);
	uint64_t m = atomic_load(&kv->matched);

	while (m < pos && !atomic_compare_exchange_weak(&kv->matched, &m, pos))
		;
	/* m is what it was before: below pos if this call raised it. */
	if (m < pos && kv_flush_here(kv) != 0)
		kv_wake(kv);
}

/* ---- secondary ---- */

struct unit {
	unsigned flags;
	uint16_t tcp_port;
	uint64_t uptime_s, connected_clients, total_connections, commands;
	struct colo_kvcmd_client cli;
	const uint8_t *resp;
	size_t len;
};

/* The header, every length against what is there. */
static int unit_parse(const uint8_t *data, size_t len, struct unit *u, struct colo_err *err)
{
	size_t nl, at;
	uint32_t m;

	memset(u, 0, sizeof(*u));
	if (len < UNIT_HDR)
		return colo_err_set(err, EPROTO, "kv unit: %zu bytes, shorter than its %u-byte "
				    "header", len, UNIT_HDR);
	if (data[0] != UNIT_VERSION)
		return colo_err_set(err, EPROTO, "kv unit: version %u, expected %u", data[0],
				    UNIT_VERSION);
	u->flags = data[1];
	if (u->flags & ~KV_UNIT_PROTO_ERROR)
		return colo_err_set(err, EPROTO, "kv unit: unknown flags 0x%02x", u->flags);
	u->tcp_port = colo_load_be16(data + 2);
	u->cli.id = colo_load_be64(data + 4);
	u->uptime_s = colo_load_be64(data + 12);
	u->connected_clients = colo_load_be64(data + 20);
	u->total_connections = colo_load_be64(data + 28);
	u->commands = colo_load_be64(data + 36);
	nl = data[44];
	if (nl > len - UNIT_HDR)
		return colo_err_set(err, EPROTO, "kv unit: client name of %zu bytes runs past "
				    "the unit's end (%zu bytes)", nl, len);
	for (size_t i = 0; i < nl; i++)
		if (data[UNIT_FIXED + i] < '!' || data[UNIT_FIXED + i] > '~')
			return colo_err_set(err, EPROTO, "kv unit: client name byte %zu is "
					    "0x%02x, not printable ASCII", i,
					    data[UNIT_FIXED + i]);
	memcpy(u->cli.name, data + UNIT_FIXED, nl);
	u->cli.name[nl] = '\0';
	at = UNIT_FIXED + nl;
	m = colo_load_be32(data + at);
	at += 4;
	if (m != len - at)
		return colo_err_set(err, EPROTO, "kv unit: RESP length %u, but %zu bytes "
				    "follow", m, len - at);
	u->resp = data + at;
	u->len = m;
	return 0;
}

/*
 * The parser's error as part of our one-line message: it quotes the byte
 * it found where a '$' belonged (Redis's text, for the client), which may
 * be any byte; the secondary logs our line.
 */
static const char *printable(const char *s, char *out, size_t len)
{
	size_t o = 0;

	for (; *s && o + 5 < len; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch >= ' ' && ch <= '~' && ch != '\\')
			out[o++] = (char)ch;
		else
			o += (size_t)snprintf(out + o, len - o, "\\x%02x", ch);
	}
	out[o] = '\0';
	return out;
}

/*
 * Parse the RESP bytes without running them: whole commands only, ending
 * as the flags say.  The primary's parser kept its progress across reads;
 * a fresh one on the same bytes finds the same commands and the same fault
 * (docs/kv.md), so anything else is not a unit.
 */
static int unit_check_resp(struct kv *kv, const struct unit *u, struct colo_err *err)
{
	struct colo_resp_parser *p = &kv->cmp_parser;
	char why[4 * COLO_RESP_ERROR_MAX + 1];
	size_t off = 0;
	uint64_t n = 0;
	int r = 0;

	colo_resp_parser_reset(p);
	while (off < u->len) {
		size_t used = 0;

		r = colo_resp_parse(p, u->resp + off, u->len - off, &used);
		if (r <= 0)
			break;
		off += used;
		n++;
	}
	if (r < 0 && strcmp(p->error, "out of memory") == 0)
		r = colo_err_set(err, ENOMEM, "kv unit: out of memory parsing its commands");
	else if (r < 0 && !(u->flags & KV_UNIT_PROTO_ERROR))
		r = colo_err_set(err, EPROTO, "kv unit: a protocol error in its command %" PRIu64
				 " at RESP byte %zu (%s) that the unit does not flag",
				 n + 1, off, printable(p->error, why, sizeof(why)));
	else if (r >= 0 && (u->flags & KV_UNIT_PROTO_ERROR))
		r = colo_err_set(err, EPROTO, "kv unit: flagged as ending in a protocol error, "
				 "but its %zu RESP bytes have none", u->len);
	else if (r >= 0 && off < u->len)
		r = colo_err_set(err, EPROTO, "kv unit: %zu RESP bytes after its last complete "
				 "command", u->len - off);
	else if (r >= 0 && n == 0)
		r = colo_err_set(err, EPROTO, "kv unit: holds no command");
	else
		r = 0;
	return r;
}

int kv_compare_run(struct colo_guest *g, const uint8_t *data, size_t len,
		   struct colo_cmp_digest *d, struct colo_err *err)
{
	struct kv *kv = kv_of(g);
	struct colo_resp_parser *p = &kv->cmp_parser;
	struct colo_kvcmd_ctx ctx;
	struct colo_buf *out = &kv->cmp_out;
	struct unit u;
	size_t off = 0;
	uint64_t n = 0;
	bool oom = false;
	int r;

	if (!kv->block)
		return colo_err_set(err, EINVAL, "kv: compare_run before attach");
	if (kv->started)
		return colo_err_set(err, EBUSY, "kv: compare_run while serving");
	if ((r = unit_parse(data, len, &u, err)) || (r = unit_check_resp(kv, &u, err)))
		return r;
	/* RAM and meta may have come from a checkpoint since the last unit. */
	r = colo_kv_open(&kv->store, kv->block->host, kv->block->length, &kv->meta, err);
	if (r) {
		colo_err_prefix(err, "kv: the database in RAM");
		return r;
	}
	kv_track(kv);
	memset(&ctx, 0, sizeof(ctx));
	ctx.kv = &kv->store;
	ctx.client = &u.cli;
	ctx.tcp_port = u.tcp_port;
	ctx.uptime_s = u.uptime_s;
	ctx.connected_clients = u.connected_clients;
	ctx.total_connections = u.total_connections;
	ctx.role = "master";                /* it answers as the primary did */
	ctx.maxmemory = kv->store.size;
	colo_buf_reset(out);
	colo_resp_parser_reset(p);
	while (off < u.len) {
		size_t used = 0;

		r = colo_resp_parse(p, u.resp + off, u.len - off, &used);
		if (r == 0)
			break;                  /* unit_check_resp() said it cannot */
		if (r < 0) {
			/* The primary's fault, answered as it did; unflagged, the
			 * parser ran out of memory this time. */
			if (u.flags & KV_UNIT_PROTO_ERROR)
				colo_resp_error(out, "ERR %s", p->error);
			else
				oom = true;
			break;
		}
		ctx.commands_processed = u.commands + n;
		r = colo_kvcmd_exec(&ctx, p->argc, p->argv, p->argl, out);
		off += used;
		n++;
		if (r & COLO_KVCMD_QUIT)
			break;
	}
	/* A unit of very many arguments leaves big arrays: not kept. */
	if (p->cap > PARSER_KEEP || p->words.cap > UNIT_KEEP)
		colo_resp_parser_free(p);
	if (oom || !colo_buf_ok(out)) {
		colo_buf_free(out);
		return colo_err_set(err, ENOMEM, "kv unit: out of memory running its commands");
	}
	kv_cmp_digest(out->data, out->len, d);
	if (out->cap > UNIT_KEEP)
		colo_buf_free(out);
	return 0;
}
