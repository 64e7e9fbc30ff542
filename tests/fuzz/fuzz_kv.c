/*
 * fuzz_kv.c: libFuzzer target for the kv guest's client-input path: the
 * RESP parser (resp.h), the commands (kvcmd.h) and the store under them
 * (kvstore.h), driven the way a connection in guests/kv.c drives them.
 *
 * The input is `u8 mode, u8 piece seed, bytes` (the stream target's
 * layout, fuzz_stream.h).  The mode, taken modulo 2 so every byte value
 * means something:
 *
 *   CLIENT  the bytes are what a client sends, run against a fresh store
 *           once whole and once, on a second store, in pieces as reads
 *           would deliver them: each piece is appended to the connection's
 *           input, the parser runs from the first unconsumed byte, *used
 *           bytes are dropped, each command runs, QUIT ends the connection
 *           and so does a protocol error, after "-ERR ..." as in kv.c.
 *           resp.h promises that the split does not matter, so both runs
 *           must send the same reply bytes and leave the same store.  The
 *           piece seed: bits 0-2 the largest piece (seed 0: one byte at a
 *           time), bit 3 keeps the bytes of empty commands skipped before a
 *           0 (kv.c does; resp.h allows both), bits 4 and 5 how full the
 *           store starts (CLIENT_REGION).  Then a SCAN walk over the store
 *           must visit every key once, and one during which the table
 *           doubles every key at least once (kvstore.h).
 *   REGION  the bytes corrupt a populated store (its size from the piece
 *           seed, REGION_FULL): records of 4 bytes, a u24 little-endian
 *           offset (modulo the region plus its meta struct) and a byte
 *           XORed there.  The store is then adopted with
 *           colo_kv_open() as a secondary adopts what it was sent, and if
 *           that accepts it, a fixed list of commands runs on it.
 *           kvstore.c's "Trust" paragraph promises that a corrupted region
 *           loses keys but never makes a call reach outside the region or
 *           loop, and never leaves a meta open() would refuse; FLUSHALL
 *           must give a store colo_kv_check() accepts.
 *
 * Promises checked after every command, in both modes (abort() with a
 * message when one is broken, so libFuzzer keeps the input): the reply is
 * exactly one well-formed RESP2 reply; a command without COLO_KVCMD_WROTE
 * leaves the meta and every region byte as they were (and no run writes
 * above the highest heap top); in CLIENT mode colo_kv_check() finds
 * nothing wrong.  The parser's: *used within the input, arguments of a
 * multibulk command inside the bytes it consumed, `want` beyond the
 * input, an error with a text.  Everything is freed on every run
 * (LeakSanitizer).  FUZZ_VERBOSE=1 prints a line per run, FUZZ_VERBOSE=2
 * also every command and reply, for triage.
 */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "buf.h"
#include "err.h"
#include "fuzz_check.h"
#include "kvcmd.h"
#include "kvstore.h"
#include "resp.h"
#include "splitmix.h"

#define KV_HEADER_LEN 2

enum kv_mode {
	KV_MODE_CLIENT,
	KV_MODE_REGION,
	KV_MODES
};

/*
 * CLIENT's store: 256 KiB, room for the table to grow.  Piece-seed bit 4
 * makes it a "tight" one of 64 KiB where ballast keys leave about 4 KiB
 * free (an empty 64 KiB store takes some 900 keys, more than 4 KiB of
 * input can name); else bit 5 starts it with FULL_KEYS keys, so that the
 * next new key doubles the table (1025 keys are more than 4 KiB can name).
 */
#define CLIENT_REGION (256u << 10)
#define TIGHT_REGION COLO_KV_MIN_REGION
#define SEED_KEEP_SKIPPED 0x08
#define SEED_TIGHT 0x10
#define SEED_FULL 0x20
#define FULL_KEYS 1024              /* kvstore.c's TABLE_INIT */
/*
 * REGION's store: the smallest a store accepts, 64 KiB, with (piece seed
 * & 63) more keys; or with bit 6, 256 KiB and FULL_KEYS keys, so that the
 * commands after the flips double a corrupted table.
 */
#define REGION_SMALL COLO_KV_MIN_REGION
#define REGION_FULL (256u << 10)
#define SEED_REGION_FULL 0x40
#define KV_SEED UINT64_C(0x636f6c6f2d6b7631)
/* Bounds the work per input (each command checks the whole store). */
#define CMDS_MAX 10000

/* standalone.c calls this; its prototype lives in fuzz_stream.h too. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


/* FUZZ_VERBOSE in the environment: 1 a line per run, 2 also per command. */
static int verbosity(void)
{
	static int v = -1;

	if (v < 0) {
		const char *s = getenv("FUZZ_VERBOSE");

		v = s ? atoi(s) : 0;
		if (s && v < 1)
			v = 1;
	}
	return v;
}

static void say(int level, const char *fmt, ...) COLO_PRINTF(2, 3);

static void say(int level, const char *fmt, ...)
{
	va_list ap;

	if (verbosity() < level)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Bytes for a message: printable ASCII as is, the rest escaped, cut at max. */
static const char *show(const uint8_t *s, size_t n, size_t max, char *out, size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < n && i < max && o + 5 < outlen; i++) {
		if (s[i] >= ' ' && s[i] <= '~' && s[i] != '\\')
			out[o++] = (char)s[i];
		else
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", s[i]);
	}
	if (n > max && o + 4 < outlen) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

/* ---- piece sizes (as fuzz_stream.c cuts its streams) ---- */

struct pieces {
	uint64_t s;
	size_t max;
	bool empty_feeds;           /* sometimes a read that brings nothing */
};

/* Seed 0 feeds byte by byte; otherwise the low bits pick a ceiling. */
static void pieces_init(struct pieces *p, uint8_t seed)
{
	static const size_t ceiling[8] = { 4097, 1, 2, 3, 7, 16, 100, 1000 };

	p->s = seed;
	p->max = seed == 0 ? 1 : ceiling[seed & 7];
	p->empty_feeds = seed != 0;
}

static size_t pieces_next(struct pieces *p)
{
	uint64_t v;

	if (p->max == 1)
		return 1;
	v = colo_splitmix64(&p->s);
	if (p->empty_feeds && (v >> 40) % 29 == 0)
		return 0;
	return 1 + (size_t)(v % p->max);
}

/* ---- RESP2 reply validator ---- */

/* The CR of the CRLF ending the line from `at`; false for a lone CR or LF
 * inside the line or no CRLF before n. */
static bool line_end(const uint8_t *p, size_t n, size_t at, size_t *cr)
{
	for (size_t i = at; i < n; i++) {
		if (p[i] == '\n')
			return false;
		if (p[i] == '\r') {
			if (i + 1 >= n || p[i + 1] != '\n')
				return false;
			*cr = i;
			return true;
		}
	}
	return false;
}

/*
 * Is p[0, n) exactly one RESP2 reply (+simple, -error, :integer, $bulk or
 * $-1, *array or *-1 of replies)?  NULL, or why not (static text).
 */
static const char *reply_check(const uint8_t *p, size_t n)
{
	static char why[96];
	size_t at = 0;
	uint64_t pending = 1;               /* replies still to read */

	while (pending) {
		long long v = 0;
		size_t cr;

		if (at >= n) {
			snprintf(why, sizeof(why), "ends at byte %zu with %llu replies to come",
				 at, (unsigned long long)pending);
			return why;
		}
		if (!line_end(p, n, at + 1, &cr)) {
			snprintf(why, sizeof(why), "line at byte %zu is not ended by CRLF "
				 "(or holds a lone CR or LF)", at);
			return why;
		}
		switch (p[at]) {
		case '+':
			break;
		case '-':
			if (cr == at + 1) {
				snprintf(why, sizeof(why), "empty error at byte %zu", at);
				return why;
			}
			break;
		case ':':
			if (!colo_resp_str2ll(p + at + 1, cr - at - 1, &v)) {
				snprintf(why, sizeof(why), "integer at byte %zu is not one", at);
				return why;
			}
			break;
		case '$':
			if (!colo_resp_str2ll(p + at + 1, cr - at - 1, &v) || v < -1) {
				snprintf(why, sizeof(why), "bad bulk length at byte %zu", at);
				return why;
			}
			if (v >= 0) {
				size_t body = cr + 2;

				if ((unsigned long long)v > n - body || n - body - (size_t)v < 2 ||
				    p[body + (size_t)v] != '\r' || p[body + (size_t)v + 1] != '\n') {
					snprintf(why, sizeof(why), "bulk of %lld bytes at byte %zu "
						 "is not followed by CRLF", v, at);
					return why;
				}
				cr = body + (size_t)v;
			}
			break;
		case '*':
			if (!colo_resp_str2ll(p + at + 1, cr - at - 1, &v) || v < -1) {
				snprintf(why, sizeof(why), "bad array length at byte %zu", at);
				return why;
			}
			/* Every element takes at least 3 bytes. */
			if (v > 0 && (unsigned long long)v > n / 3) {
				snprintf(why, sizeof(why), "array of %lld at byte %zu is longer "
					 "than the reply", v, at);
				return why;
			}
			if (v > 0)
				pending += (uint64_t)v;
			break;
		default:
			snprintf(why, sizeof(why), "type byte 0x%02x at byte %zu", p[at], at);
			return why;
		}
		at = cr + 2;
		pending--;
	}
	if (at != n) {
		snprintf(why, sizeof(why), "%zu bytes after the reply's end at byte %zu",
			 n - at, at);
		return why;
	}
	return NULL;
}

/* ---- a connection to a store ---- */

/*
 * The store as a command found it: the meta and a hash of the region up to
 * the highest heap top seen (bytes above it were never handed out: they
 * stay zero, checked once at the end, which keeps hashing cheap).
 */
struct snap {
	struct colo_kv_meta m;
	XXH64_hash_t h;
};

struct conn {
	const char *who;
	uint8_t *region;
	uint64_t size;
	struct colo_kv_meta meta;
	struct colo_kvstore kv;
	struct colo_kvcmd_client cli;
	struct colo_kvcmd_ctx ctx;
	struct colo_resp_parser p;
	struct colo_buf in;                 /* received, not yet consumed */
	struct colo_buf out;                /* every reply */
	struct snap before;
	uint64_t hashed;                    /* region bytes the snapshots cover */
	size_t cmds;
	bool drop_on_more;                  /* drop *used after 0 (optional, resp.h) */
	bool corrupt;                       /* region mode: the store may be broken */
	bool done;                          /* QUIT, protocol error or CMDS_MAX */
	const char *ended;                  /* why done, for the run's line */
};

static void snap_take(struct conn *c, struct snap *s)
{
	memcpy(&s->m, c->kv.m, sizeof(s->m));
	/* A corrupted store: hash everything (what the flips touched too). */
	if (c->corrupt)
		c->hashed = c->size;
	else if (c->kv.m->heap_top > c->hashed)
		c->hashed = c->kv.m->heap_top;
	s->h = XXH3_64bits(c->region, (size_t)c->hashed);
}

/* Nothing was written above the heap's highest top (calloc'd zeros). */
static void check_above(const struct conn *c)
{
	static const uint8_t zeros[4096];

	/* memcmp by pages: a loop over bytes would be most of a run's time
	 * under coverage instrumentation. */
	for (uint64_t at = c->hashed; at < c->size; at += sizeof(zeros)) {
		size_t k = c->size - at < sizeof(zeros) ? (size_t)(c->size - at) : sizeof(zeros);

		CHECK(memcmp(c->region + at, zeros, k) == 0, "%s: bytes in 0x%llx..0x%llx "
		      "above the heap (top at most 0x%llx) were written", c->who,
		      (unsigned long long)at, (unsigned long long)(at + k),
		      (unsigned long long)c->hashed);
	}
}

static void conn_init(struct conn *c, const char *who, uint64_t size)
{
	struct colo_err err;
	int r;

	memset(c, 0, sizeof(*c));
	c->who = who;
	c->size = size;
	/* Zeroed: both runs' stores must start from the same bytes. */
	c->region = calloc(1, (size_t)size);
	CHECK(c->region != NULL, "%s: no memory for a %llu-byte region", who,
	      (unsigned long long)size);
	colo_err_clear(&err);
	r = colo_kv_format(&c->kv, c->region, size, &c->meta, KV_SEED, &err);
	CHECK(r == 0, "%s: format: %s", who, err.msg);
	c->cli.id = 7;
	c->ctx.kv = &c->kv;
	c->ctx.client = &c->cli;
	c->ctx.tcp_port = 6379;
	c->ctx.connected_clients = 1;
	c->ctx.total_connections = 1;
	c->ctx.role = "master";
	c->ctx.maxmemory = size;
	colo_resp_parser_init(&c->p);
	colo_buf_init(&c->in);
	colo_buf_init(&c->out);
	c->drop_on_more = true;
	c->ended = "end of input";
	snap_take(c, &c->before);
}

static void conn_free(struct conn *c)
{
	colo_resp_parser_free(&c->p);
	colo_buf_free(&c->in);
	colo_buf_free(&c->out);
	free(c->region);
	c->region = NULL;
}

/* The store after a command: checked, and unchanged unless it said WROTE. */
static void check_store(struct conn *c, int flags, const char *cmd)
{
	struct colo_err err;
	struct snap now;
	int r;

	colo_err_clear(&err);
	r = colo_kv_check(&c->kv, &err);
	if (!c->corrupt) {
		CHECK(r == 0, "%s: store broken after command %zu (%s): %s", c->who, c->cmds,
		      cmd, err.msg);
	} else {
		struct colo_kvstore again;

		CHECK(r == 0 || err.msg[0] != '\0', "%s: check failed (%d) without a message",
		      c->who, r);
		/* Trust: whatever the region held, the meta stays adoptable. */
		colo_err_clear(&err);
		r = colo_kv_open(&again, c->region, c->size, c->kv.m, &err);
		CHECK(r == 0, "%s: command %zu (%s) on a corrupted store left a meta that "
		      "open() refuses: %s", c->who, c->cmds, cmd, err.msg);
	}
	snap_take(c, &now);
	if (!(flags & COLO_KVCMD_WROTE)) {
		CHECK(memcmp(&now.m, &c->before.m, sizeof(now.m)) == 0,
		      "%s: command %zu (%s) without WROTE changed the meta", c->who, c->cmds,
		      cmd);
		CHECK(now.h == c->before.h,
		      "%s: command %zu (%s) without WROTE changed the region", c->who,
		      c->cmds, cmd);
	}
	c->before = now;
}

/* Run the command the parser holds; buf/len/used: what it was parsed from. */
static void run_command(struct conn *c, const uint8_t *buf, size_t len, size_t used)
{
	struct colo_resp_parser *p = &c->p;
	size_t mark = c->out.len;
	const char *bad;
	char cmd[96], rep[96];
	int flags;

	CHECK(p->argc >= 1 && used >= 1, "%s: a command of %d arguments from %zu bytes",
	      c->who, p->argc, used);
	/* Multibulk arguments point into what this command consumed. */
	for (int i = 0; i < p->argc; i++) {
		uintptr_t a = (uintptr_t)p->argv[i], b = (uintptr_t)buf;

		if (a >= b && a < b + len)
			CHECK(p->argl[i] <= b + used - a, "%s: argument %d (%zu bytes at "
			      "byte %zu) reaches past the %zu bytes consumed", c->who, i,
			      p->argl[i], (size_t)(a - b), used);
	}
	show(p->argv[0], p->argl[0], 24, cmd, sizeof(cmd));
	c->ctx.commands_processed = c->cmds;
	flags = colo_kvcmd_exec(&c->ctx, p->argc, p->argv, p->argl, &c->out);
	c->cmds++;
	CHECK(colo_buf_ok(&c->out), "%s: reply buffer failed", c->who);
	bad = reply_check(c->out.data + mark, c->out.len - mark);
	CHECK(bad == NULL, "%s: command %zu (%s): reply %s: %s", c->who, c->cmds, cmd, bad,
	      show(c->out.data + mark, c->out.len - mark, 40, rep, sizeof(rep)));
	say(2, "%s: %s (%d args) -> %s", c->who, cmd, p->argc,
	    show(c->out.data + mark, c->out.len - mark, 40, rep, sizeof(rep)));
	check_store(c, flags, cmd);
	if (flags & COLO_KVCMD_QUIT) {
		c->done = true;
		c->ended = "QUIT";
	} else if (c->cmds >= CMDS_MAX) {
		c->done = true;
		c->ended = "command cap";
	}
}

/* Bytes arrive: append, then run every complete command (kv.c's conn_run). */
static void conn_feed(struct conn *c, const uint8_t *bytes, size_t n)
{
	size_t off = 0;

	if (c->done)
		return;
	colo_buf_put(&c->in, bytes, n);
	CHECK(colo_buf_ok(&c->in), "%s: no memory for the input", c->who);
	while (!c->done && off < c->in.len) {
		const uint8_t *buf = c->in.data + off;
		size_t len = c->in.len - off, used = SIZE_MAX;
		int r = colo_resp_parse(&c->p, buf, len, &used);

		CHECK(used <= len, "%s: parse returned %d with *used %zu of %zu bytes", c->who,
		      r, used, len);
		if (r == 0) {
			CHECK(c->p.want == 0 || c->p.want > len, "%s: parser wants %zu bytes, "
			      "has %zu", c->who, c->p.want, len);
			if (c->drop_on_more)
				off += used;
			break;
		}
		if (r < 0) {
			const char *bad;
			size_t mark = c->out.len;

			CHECK(r == -1, "%s: parse returned %d", c->who, r);
			CHECK(memchr(c->p.error, '\0', sizeof(c->p.error)) != NULL,
			      "%s: unterminated parser error", c->who);
			CHECK(c->p.error[0] != '\0', "%s: protocol error without a text", c->who);
			/* What kv.c answers before closing. */
			colo_resp_error(&c->out, "ERR %s", c->p.error);
			bad = reply_check(c->out.data + mark, c->out.len - mark);
			CHECK(bad == NULL, "%s: error reply for '%s': %s", c->who, c->p.error, bad);
			c->done = true;
			c->ended = c->p.error;
			off = c->in.len;
			break;
		}
		CHECK(r == 1, "%s: parse returned %d", c->who, r);
		run_command(c, buf, len, used);
		off += used;
	}
	if (off) {
		memmove(c->in.data, c->in.data + off, c->in.len - off);
		c->in.len -= off;
	}
}

#define FEED(c, lit) conn_feed((c), (const uint8_t *)(lit), sizeof(lit) - 1)

/* Keys "key:N" set through the API (quicker than commands, each of which
 * would check the store) until the store holds `count`; then one check. */
static void prefill(struct conn *c, uint64_t count)
{
	struct colo_err err;
	char key[32], val[32];

	for (unsigned i = 0; colo_kv_count(&c->kv) < count; i++) {
		int kl = snprintf(key, sizeof(key), "key:%u", i);
		int vl = snprintf(val, sizeof(val), "value-%u", i * i);
		int r = colo_kv_set(&c->kv, key, (size_t)kl, val, (size_t)vl, COLO_KV_NX);

		CHECK(r >= 0, "%s: prefill %s: %d", c->who, key, r);
	}
	colo_err_clear(&err);
	CHECK(colo_kv_check(&c->kv, &err) == 0, "%s: prefill: %s", c->who, err.msg);
	snap_take(c, &c->before);
}

/* Fill a 64 KiB store but for 4032 bytes at the heap's top: blocks of
 * 32, 16 and 4 KiB after the 8 KiB table (kvstore.c's layout). */
static void ballast(struct conn *c)
{
	static const uint8_t zeros[20000];
	static const size_t vlen[] = { 20000, 10000, 3000 };
	struct colo_err err;

	for (size_t i = 0; i < sizeof(vlen) / sizeof(vlen[0]); i++) {
		char key[16];
		int k = snprintf(key, sizeof(key), "ballast:%zu", i);
		int r = colo_kv_set(&c->kv, key, (size_t)k, zeros, vlen[i], 0);

		CHECK(r == 1, "%s: ballast %zu: %d", c->who, i, r);
	}
	colo_err_clear(&err);
	CHECK(colo_kv_check(&c->kv, &err) == 0, "%s: ballast: %s", c->who, err.msg);
	snap_take(c, &c->before);
}

/* ---- SCAN's promise (kvstore.h) ---- */

/* The keys a walk visited, in the order visited. */
struct visits {
	struct colo_buf keys;               /* the bytes of every key */
	struct colo_buf at;                 /* struct key per visit, into keys */
	size_t n;
};

struct key {
	size_t off, len;
};

static void visit(void *ud, const uint8_t *k, uint64_t klen)
{
	struct visits *v = ud;
	struct key e = { v->keys.len, (size_t)klen };

	colo_buf_put(&v->keys, k, (size_t)klen);
	colo_buf_put(&v->at, &e, sizeof(e));
	v->n++;
}

static const uint8_t *sort_base;

static int key_cmp(const void *a, const void *b)
{
	const struct key *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int r = n ? memcmp(sort_base + x->off, sort_base + y->off, n) : 0;

	return r ? r : (x->len > y->len) - (x->len < y->len);
}

/* Sort the visits; the buffers must not grow after this. */
static struct key *visits_sorted(struct visits *v, const char *who)
{
	struct key *k = (struct key *)v->at.data;

	CHECK(colo_buf_ok(&v->keys) && colo_buf_ok(&v->at), "%s: no memory for a walk",
	      who);
	sort_base = v->keys.data;
	if (v->n)
		qsort(k, v->n, sizeof(*k), key_cmp);
	return k;
}

static bool visited(const struct visits *v, const struct key *sorted, const uint8_t *key,
		    size_t len)
{
	size_t lo = 0, hi = v->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		size_t n = len < sorted[mid].len ? len : sorted[mid].len;
		int r = n ? memcmp(v->keys.data + sorted[mid].off, key, n) : 0;

		if (!r)
			r = (sorted[mid].len > len) - (sorted[mid].len < len);
		if (!r)
			return true;
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/*
 * A full SCAN walk visits every key exactly once while the table stays;
 * one during which the table doubles visits every key that was there for
 * the whole walk at least once.  The second is tried when the store is a
 * few keys short of doubling (a full store), by adding keys mid-walk.
 */
static void check_scan(struct conn *c)
{
	struct visits all = { COLO_BUF_INIT, COLO_BUF_INIT, 0 };
	struct visits grown = { COLO_BUF_INIT, COLO_BUF_INIT, 0 };
	struct colo_err err;
	struct key *sa, *sg;
	uint64_t cursor = 0, size, added = 0;
	unsigned calls = 0;

	do
		cursor = colo_kv_scan(&c->kv, cursor, NULL, 0, 1 + calls++ % 5, visit, &all);
	while (cursor);
	sa = visits_sorted(&all, c->who);
	CHECK(all.n == colo_kv_count(&c->kv), "%s: a SCAN walk visited %zu keys, the "
	      "store holds %llu", c->who, all.n, (unsigned long long)colo_kv_count(&c->kv));
	for (size_t i = 1; i < all.n; i++)
		CHECK(key_cmp(&sa[i - 1], &sa[i]) != 0, "%s: a SCAN walk visited a key twice",
		      c->who);
	size = c->kv.m->table_size;
	if (size - colo_kv_count(&c->kv) >= 64 || colo_kv_count(&c->kv) > size)
		goto out;
	/* Half a walk, enough keys to double the table, the rest of the walk. */
	cursor = 0;
	for (calls = 0; calls < 8; calls++)
		cursor = colo_kv_scan(&c->kv, cursor, NULL, 0, size / 16, visit, &grown);
	while (c->kv.m->table_size == size) {
		char key[32];
		int k = snprintf(key, sizeof(key), "scan-grow:%llu", (unsigned long long)added++);

		if (colo_kv_set(&c->kv, key, (size_t)k, "", 0, 0) < 0)
			goto out;
	}
	while (cursor)
		cursor = colo_kv_scan(&c->kv, cursor, NULL, 0, 3, visit, &grown);
	sg = visits_sorted(&grown, c->who);
	for (size_t i = 0; i < all.n; i++)
		CHECK(visited(&grown, sg, all.keys.data + sa[i].off, sa[i].len),
		      "%s: a SCAN walk during which the table doubled (%llu to %llu buckets) "
		      "missed a key that was there throughout", c->who,
		      (unsigned long long)size, (unsigned long long)c->kv.m->table_size);
	colo_err_clear(&err);
	CHECK(colo_kv_check(&c->kv, &err) == 0, "%s: after the table grew: %s", c->who,
	      err.msg);
	say(1, "%s: SCAN across the table's doubling saw all %zu keys", c->who, all.n);
out:
	colo_buf_free(&all.keys);
	colo_buf_free(&all.at);
	colo_buf_free(&grown.keys);
	colo_buf_free(&grown.at);
}

/* ---- CLIENT ---- */

static void fuzz_client(const uint8_t *p, size_t n, uint8_t seed)
{
	bool tight = seed & SEED_TIGHT, full = !tight && (seed & SEED_FULL);
	struct conn w, s;
	struct pieces pc;
	size_t pieces = 0, at;

	conn_init(&w, "client (whole)", tight ? TIGHT_REGION : CLIENT_REGION);
	conn_init(&s, "client (pieces)", tight ? TIGHT_REGION : CLIENT_REGION);
	if (tight) {
		ballast(&w);
		ballast(&s);
	} else if (full) {
		prefill(&w, FULL_KEYS);
		prefill(&s, FULL_KEYS);
	}
	/* kv.c keeps skipped empty commands after 0; resp.h allows both. */
	s.drop_on_more = !(seed & SEED_KEEP_SKIPPED);
	conn_feed(&w, p, n);
	pieces_init(&pc, seed);
	for (at = 0; at < n && !s.done; pieces++) {
		size_t k = pieces_next(&pc);

		if (k > n - at)
			k = n - at;
		conn_feed(&s, p + at, k);
		at += k;
	}
	if (w.out.len != s.out.len ||
	    (w.out.len && memcmp(w.out.data, s.out.data, w.out.len) != 0)) {
		size_t i = 0;
		char a[128], b[128];

		while (i < w.out.len && i < s.out.len && w.out.data[i] == s.out.data[i])
			i++;
		i = i > 16 ? i - 16 : 0;
		fuzz_fail(__FILE__, __LINE__, "same replies",
			  "whole and split input give different replies (%zu and %zu "
			  "bytes, %zu and %zu commands), from byte %zu:\n  whole:  %s\n"
			  "  pieces: %s", w.out.len, s.out.len, w.cmds, s.cmds, i,
			  show(w.out.data + i, w.out.len - i, 48, a, sizeof(a)),
			  show(s.out.data + i, s.out.len - i, 48, b, sizeof(b)));
	}
	CHECK(w.cmds == s.cmds && strcmp(w.ended, s.ended) == 0,
	      "whole and split input end differently: %zu commands, %s / %zu, %s",
	      w.cmds, w.ended, s.cmds, s.ended);
	CHECK(memcmp(&w.meta, &s.meta, sizeof(w.meta)) == 0 && w.hashed == s.hashed &&
	      w.before.h == s.before.h, "whole and split input leave different stores");
	check_above(&w);
	check_above(&s);
	say(1, "client: %zu commands, %zu reply bytes, %llu keys, %llu bytes used, "
	    "ended by %s; %zu pieces (seed %u%s%s)", w.cmds, w.out.len,
	    (unsigned long long)w.meta.count, (unsigned long long)w.meta.used, w.ended,
	    pieces, seed, s.drop_on_more ? "" : ", skipped bytes kept",
	    tight ? ", tight store" : full ? ", full store" : "");
	check_scan(&w);
	conn_free(&w);
	conn_free(&s);
}

/* ---- REGION ---- */

/* A store with a bit of everything: chains, free blocks of a few classes,
 * counters, an empty key and an empty value, a binary value. */
static void populate(struct conn *c)
{
	FEED(c, "SET k1 v1\r\nSET k2 \"hello world\"\r\nAPPEND k2 \" and more words\"\r\n"
	     "INCR counter\r\nINCR counter\r\nINCRBY counter 40\r\n"
	     "MSET a 1 b 2 c 3 d 4\r\nDEL c\r\nSET \"\" empty-key\r\nSET empty \"\"\r\n"
	     "*3\r\n$3\r\nSET\r\n$3\r\nbin\r\n$4\r\n\x00\x01\r\n\r\n"
	     "APPEND log 0123456789012345678901234567890123456789\r\n"
	     "APPEND log 0123456789012345678901234567890123456789\r\n"
	     "APPEND log 0123456789012345678901234567890123456789\r\n"
	     "SET tmp x\r\nDEL tmp\r\n");
}

/* Commands that read, write, allocate and free on what open() accepted. */
static void region_commands(struct conn *c)
{
	char big[700];
	int k;

	FEED(c, "GET k1\r\nGET k2\r\nGET \"\"\r\nSET k1 a-longer-value-than-before\r\n"
	     "SET fresh value\r\nSET a 1 NX\r\nSET zz 1 XX\r\nDEL k2\r\nDEL a nope\r\n"
	     "SCAN 0 COUNT 1000\r\nSCAN 0 MATCH k* COUNT 1000\r\nSCAN 7 TYPE string\r\n"
	     "KEYS *\r\nKEYS key:?\r\nDBSIZE\r\nEXISTS k1 b log bin\r\nSTRLEN log\r\n"
	     "APPEND k1 -appended\r\nAPPEND newkey x\r\nINCR counter\r\nINCR k1\r\n"
	     "INCRBY counter 1000\r\nDECR fresh-counter\r\nMGET k1 k2 a b bin empty\r\n"
	     "GETSET b 42\r\nSET log short\r\nTYPE bin\r\nINFO keyspace\r\nINFO memory\r\n");
	k = snprintf(big, sizeof(big), "APPEND log %0600d\r\n", 7);
	conn_feed(c, (const uint8_t *)big, (size_t)k);
	FEED(c, "MSET n1 1 n2 2 n3 3 n4 4 n5 5 n6 6 n7 7 n8 8\r\nDEL n2 n4 n6\r\n"
	     "SET n9 nine\r\nKEYS n*\r\nDBSIZE\r\n");
}

static void fuzz_region(const uint8_t *p, size_t n, uint8_t seed)
{
	bool full = seed & SEED_REGION_FULL;
	struct conn c;
	struct colo_err err;
	size_t flips = 0;
	int r;

	conn_init(&c, "region", full ? REGION_FULL : REGION_SMALL);
	populate(&c);
	CHECK(!c.done, "region: populating ended by %s", c.ended);
	prefill(&c, full ? FULL_KEYS : colo_kv_count(&c.kv) + (seed & 63));
	for (size_t i = 0; i + 4 <= n; i += 4) {
		uint64_t off = (uint64_t)p[i] | (uint64_t)p[i + 1] << 8 |
			       (uint64_t)p[i + 2] << 16;

		off %= c.size + sizeof(c.meta);
		if (off < c.size)
			c.region[off] ^= p[i + 3];
		else
			((uint8_t *)&c.meta)[off - c.size] ^= p[i + 3];
		flips++;
	}
	colo_err_clear(&err);
	r = colo_kv_open(&c.kv, c.region, c.size, &c.meta, &err);
	if (r) {
		CHECK(r < 0 && err.msg[0] != '\0', "region: open failed (%d) without a "
		      "message", r);
		say(1, "region: %zu flips%s, open refuses: %s", flips,
		    full ? " (full store)" : "", err.msg);
		conn_free(&c);
		return;
	}
	colo_err_clear(&err);
	r = colo_kv_check(&c.kv, &err);
	say(1, "region: %zu flips%s, opened, check: %s", flips, full ? " (full store)" : "",
	    r ? err.msg : "ok");
	c.corrupt = true;
	snap_take(&c, &c.before);
	region_commands(&c);
	CHECK(!c.done, "region: commands ended by %s", c.ended);
	FEED(&c, "FLUSHALL\r\n");
	colo_err_clear(&err);
	r = colo_kv_check(&c.kv, &err);
	CHECK(r == 0, "region: store broken after FLUSHALL: %s", err.msg);
	/* A flushed store is a good one again. */
	c.corrupt = false;
	FEED(&c, "SET after flush\r\nGET after\r\nDBSIZE\r\n");
	say(1, "region: %zu commands, flushed store ok", c.cmds);
	conn_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data + KV_HEADER_LEN;
	size_t n;

	if (size < KV_HEADER_LEN)
		return 0;
	n = size - KV_HEADER_LEN;
	switch ((enum kv_mode)(data[0] % KV_MODES)) {
	case KV_MODE_CLIENT:
		fuzz_client(p, n, data[1]);
		break;
	case KV_MODE_REGION:
	case KV_MODES:
		fuzz_region(p, n, data[1]);
		break;
	}
	return 0;
}
