/*
 * test_seal.c: the sealed replication connection (colo_repl_seal, repl.h;
 * docs/protocol.md "Sealed connection").
 *
 * Two real colo_repl_conn ends on one libuv loop over loopback TCP: a
 * accepted by the test's listener ("b"), the other connected ("a").  What
 * must hold: what one side sends sealed (small messages, writes of several
 * MiB split into many chunks, sends and writes mixed, try_write) arrives
 * identical and in order, both ways, with done() called once per write;
 * writes queued plain before the seal go first; a seal called while the
 * peer's sealed bytes already wait in rx (from the read callback or not)
 * opens them; a wrong key, a flipped ciphertext byte, a cut chunk, a chunk
 * length over the maximum or under the tag's, a FINAL or other non-MESSAGE
 * chunk and a replayed one each end the connection with a protocol error
 * that says so (in one log line naming the peer), and no byte of the bad
 * chunk is handed on; on the wire there is the 24-byte header and
 * chunks exactly as docs/protocol.md says, and never the plaintext; an
 * owner that yields (colo_repl_yield) gets the rest on the next turns, one
 * slice per turn, plain or sealed.  The
 * bad streams are crafted here with libsodium and sent by an end left
 * plain.
 *
 * Every run waits on what it expects (bytes counted, a callback called)
 * with a deadline far beyond it; nothing is timed.
 */
#include "config.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "log.h"
#include "repl.h"
#include "testutil.h"

#define DEADLINE_MS 20000
#define HEADER crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define CHUNK 65536u

struct end {
	const char *name;
	struct colo_repl_conn *c;
	int connected;                 /* 1 ok, -1 failed */
	struct colo_buf got;           /* what came, consumed at once */
	size_t nread;                  /* the read callbacks' nread, summed */
	int lost;
	enum colo_repl_end how;
	char why[384];
	/* Seal from inside the read callback once plain_len bytes came. */
	bool seal_in_read;
	size_t plain_len;
	struct colo_buf plain;         /* those bytes */
	size_t extra_at_seal;          /* what was in rx behind them then */
	const uint8_t *tx, *rx;
	bool hold;                     /* consume nothing (the test does) */
	/* Consume at most slice bytes per read callback and yield the rest
	 * to the next turn (colo_repl_yield); count the calls per turn. */
	size_t slice;
	unsigned turn_seen, in_turn, in_turn_max, resumed;
};

struct fix {
	uv_loop_t loop;
	uv_tcp_t server;
	uv_timer_t tick;
	uv_check_t turn_end;           /* counts turns of the loop */
	unsigned turns;
	struct sockaddr_in addr;
	struct end a, b;
	int log_pipe[2];
	char b_peer[160];              /* b's name for a, "127.0.0.1:port" */
};

static struct fix F;
static uint8_t k1[COLO_SEAL_KEY_BYTES], k2[COLO_SEAL_KEY_BYTES], k3[COLO_SEAL_KEY_BYTES];

/* ---- the two ends ---- */

static void on_connected(struct colo_repl_conn *c, void *owner, int status)
{
	struct end *e = owner;

	(void)c;
	e->connected = status == 0 ? 1 : -1;
}

static void on_read(struct colo_repl_conn *c, void *owner, size_t nread)
{
	struct end *e = owner;
	struct colo_err err;

	e->nread += nread;
	if (e->seal_in_read && !colo_repl_sealed(c)) {
		if (colo_repl_rx_len(c) < e->plain_len)
			return;
		colo_buf_put(&e->plain, colo_repl_rx(c), e->plain_len);
		colo_repl_consume(c, e->plain_len);
		e->extra_at_seal = colo_repl_rx_len(c);
		colo_err_clear(&err);
		ck_assert_msg(colo_repl_seal(c, e->tx, e->rx, &err) == 0, "%s", err.msg);
		ck_assert_uint_eq(colo_repl_rx_len(c), 0);
	}
	if (e->hold)
		return;
	if (e->slice) {
		size_t n = colo_repl_rx_len(c) < e->slice ? colo_repl_rx_len(c) : e->slice;

		if (e->turn_seen != F.turns) {
			e->turn_seen = F.turns;
			e->in_turn = 0;
		}
		if (++e->in_turn > e->in_turn_max)
			e->in_turn_max = e->in_turn;
		e->resumed += nread == 0;
		colo_buf_put(&e->got, colo_repl_rx(c), n);
		colo_repl_consume(c, n);
		if (colo_repl_rx_len(c))
			colo_repl_yield(c);
		return;
	}
	colo_buf_put(&e->got, colo_repl_rx(c), colo_repl_rx_len(c));
	colo_repl_consume(c, colo_repl_rx_len(c));
}

static void on_lost(struct colo_repl_conn *c, void *owner, enum colo_repl_end how,
		    const char *why)
{
	struct end *e = owner;

	e->lost++;
	e->how = how;
	snprintf(e->why, sizeof(e->why), "%s", why);
	colo_repl_close(c);
	e->c = NULL;
}

static const struct colo_repl_ops ops = {
	.connected = on_connected,
	.read = on_read,
	.lost = on_lost,
};

static void on_accept(uv_stream_t *server, int status)
{
	struct colo_err err;

	ck_assert_int_eq(status, 0);
	colo_err_clear(&err);
	ck_assert_msg(colo_repl_accept(server, &ops, &F.b, &F.b.c, &err) == 0, "%s", err.msg);
	F.b.connected = 1;
}

static void on_tick(uv_timer_t *t)
{
	(void)t;        /* only wakes the loop, so that run_until sees its deadline */
}

static void on_turn_end(uv_check_t *h)
{
	(void)h;
	F.turns++;
}

typedef bool (*cond_fn)(void *ud);

static void run_until(cond_fn cond, void *ud, const char *what)
{
	uint64_t end = colo_now_ns() + (uint64_t)DEADLINE_MS * 1000000u;

	while (!cond(ud) && colo_now_ns() < end)
		uv_run(&F.loop, UV_RUN_ONCE);
	ck_assert_msg(cond(ud), "still waiting for %s after %d ms", what, DEADLINE_MS);
}

static bool both_connected(void *ud)
{
	(void)ud;
	return F.a.connected && F.b.connected;
}

static void setup(void)
{
	struct sockaddr_in any;
	int len = sizeof(F.addr);

	memset(&F, 0, sizeof(F));
	F.a.name = "a";
	F.b.name = "b";
	ck_assert_int_eq(sodium_init() >= 0, 1);
	randombytes_buf(k1, sizeof(k1));
	randombytes_buf(k2, sizeof(k2));
	randombytes_buf(k3, sizeof(k3));
	/* Log lines go to a pipe the tests read. */
	colo_log_init("test_seal", "t", COLO_ROLE_PRIMARY, COLO_LOG_INFO);
	ck_assert_int_eq(pipe(F.log_pipe), 0);
	ck_assert_int_eq(fcntl(F.log_pipe[0], F_SETFL, O_NONBLOCK), 0);
	colo_log_set_fd(F.log_pipe[1]);

	ck_assert_int_eq(uv_loop_init(&F.loop), 0);
	uv_timer_init(&F.loop, &F.tick);
	uv_timer_start(&F.tick, on_tick, 10, 10);
	uv_check_init(&F.loop, &F.turn_end);
	uv_check_start(&F.turn_end, on_turn_end);
	uv_tcp_init(&F.loop, &F.server);
	uv_ip4_addr("127.0.0.1", 0, &any);
	ck_assert_int_eq(uv_tcp_bind(&F.server, (const struct sockaddr *)&any, 0), 0);
	ck_assert_int_eq(uv_listen((uv_stream_t *)&F.server, 4, on_accept), 0);
	ck_assert_int_eq(uv_tcp_getsockname(&F.server, (struct sockaddr *)&F.addr, &len), 0);
	{
		struct colo_err err;

		colo_err_clear(&err);
		ck_assert_msg(colo_repl_connect(&F.loop, (const struct sockaddr *)&F.addr, &ops,
						&F.a, &F.a.c, &err) == 0, "%s", err.msg);
	}
	run_until(both_connected, NULL, "both ends");
	ck_assert_int_eq(F.a.connected, 1);
	colo_repl_describe(F.b.c, F.b_peer, sizeof(F.b_peer));
	ck_assert_msg(strncmp(F.b_peer, "127.0.0.1:", 10) == 0, "%s", F.b_peer);
}

static void teardown(void)
{
	colo_repl_close(F.a.c);
	colo_repl_close(F.b.c);
	uv_close((uv_handle_t *)&F.server, NULL);
	uv_close((uv_handle_t *)&F.tick, NULL);
	uv_close((uv_handle_t *)&F.turn_end, NULL);
	uv_run(&F.loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(uv_loop_close(&F.loop), 0);
	colo_buf_free(&F.a.got);
	colo_buf_free(&F.b.got);
	colo_buf_free(&F.a.plain);
	colo_buf_free(&F.b.plain);
	colo_log_set_fd(2);
	close(F.log_pipe[0]);
	close(F.log_pipe[1]);
}

/* The log lines written so far. */
static const char *log_text(void)
{
	static char text[8192];
	static size_t len;
	ssize_t r;

	while (len < sizeof(text) - 1 &&
	       (r = read(F.log_pipe[0], text + len, sizeof(text) - 1 - len)) > 0)
		len += (size_t)r;
	text[len] = '\0';
	return text;
}

static void seal(struct end *e, const uint8_t *tx, const uint8_t *rx)
{
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(colo_repl_seal(e->c, tx, rx, &err) == 0, "%s", err.msg);
	ck_assert(colo_repl_sealed(e->c));
}

/* a tx k1 / rx k2, b the other way round. */
static void seal_both(void)
{
	seal(&F.a, k1, k2);
	seal(&F.b, k2, k1);
}

struct want {
	struct end *e;
	size_t len;
};

static bool got_len(void *ud)
{
	struct want *w = ud;

	return w->e->got.len >= w->len || w->e->lost;
}

static void wait_got(struct end *e, size_t len)
{
	struct want w = { e, len };

	run_until(got_len, &w, e->name);
	ck_assert_msg(!e->lost, "%s lost the connection: %s", e->name, e->why);
}

static bool lost(void *ud)
{
	return ((struct end *)ud)->lost > 0;
}

static uint8_t *random_bytes(size_t len, uint64_t seed)
{
	struct colo_rng r = { seed };
	uint8_t *p = malloc(len);

	ck_assert_ptr_nonnull(p);
	colo_rng_fill(&r, p, len);
	return p;
}

struct done_count {
	int calls;
	int status;
};

static void on_done(void *ud, int status)
{
	struct done_count *d = ud;

	d->calls++;
	d->status = status;
}

static bool done_called(void *ud)
{
	return ((struct done_count *)ud)->calls > 0;
}

/* ---- sealed traffic arrives whole ---- */

START_TEST(small_messages_both_ways)
{
	struct colo_buf want_a, want_b;

	colo_buf_init(&want_a);
	colo_buf_init(&want_b);
	seal_both();
	for (uint32_t i = 0; i < 200; i++) {
		char text[32];
		int n = snprintf(text, sizeof(text), "message %u;", i);

		ck_assert_int_eq(colo_repl_send_msg(F.a.c, i), 0);
		colo_buf_put_be32(&want_b, i);
		ck_assert_int_eq(colo_repl_send(F.b.c, text, (size_t)n), 0);
		colo_buf_put(&want_a, text, (size_t)n);
	}
	wait_got(&F.b, want_b.len);
	wait_got(&F.a, want_a.len);
	ck_assert_uint_eq(F.b.got.len, want_b.len);
	ck_assert_mem_eq(F.b.got.data, want_b.data, want_b.len);
	ck_assert_uint_eq(F.a.got.len, want_a.len);
	ck_assert_mem_eq(F.a.got.data, want_a.data, want_a.len);
	/* read()'s nread counts plaintext, what the owner parses. */
	ck_assert_uint_eq(F.b.nread, want_b.len);
	ck_assert_uint_eq(F.a.nread, want_a.len);
	colo_buf_free(&want_a);
	colo_buf_free(&want_b);
}
END_TEST

/*
 * Several MiB through colo_repl_write (many chunks, more than the window;
 * plain, 1 MiB pieces, one of them across three buffers), between sends
 * and writes, both ways at once: every byte, in order, and each done()
 * once, after the call returned.
 */
static void large_writes(bool sealed)
{
	const size_t big = 6 * 1024 * 1024 + 12345, other = 3 * 1024 * 1024 + 7;
	uint8_t *p = random_bytes(big, 1), *q = random_bytes(other, 2);
	struct done_count d1 = { 0, 1 }, d2 = { 0, 1 }, d3 = { 0, 1 }, d4 = { 0, 1 };
	struct colo_buf want;
	uv_buf_t bufs[4];

	colo_buf_init(&want);
	if (sealed)
		seal_both();
	ck_assert_int_eq(colo_repl_send(F.a.c, "before", 6), 0);
	colo_buf_put(&want, "before", 6);
	/* A write of several buffers, one of them empty. */
	bufs[0] = uv_buf_init((char *)p, 100);
	bufs[1] = uv_buf_init((char *)p + 100, 0);
	bufs[2] = uv_buf_init((char *)p + 100, (unsigned)(big - 100 - 5000));
	bufs[3] = uv_buf_init((char *)p + big - 5000, 5000);
	ck_assert_int_eq(colo_repl_write(F.a.c, bufs, 4, on_done, &d1), 0);
	colo_buf_put(&want, p, big);
	ck_assert_int_eq(d1.calls, 0);
	ck_assert_int_eq(colo_repl_send_msg(F.a.c, 3), 0);
	colo_buf_put_be32(&want, 3);
	bufs[0] = uv_buf_init((char *)q, (unsigned)other);
	ck_assert_int_eq(colo_repl_write(F.a.c, bufs, 1, on_done, &d2), 0);
	colo_buf_put(&want, q, other);
	/* An empty write still completes, in its turn. */
	ck_assert_int_eq(colo_repl_write(F.a.c, bufs, 0, on_done, &d3), 0);
	ck_assert_int_eq(colo_repl_send(F.a.c, "after", 5), 0);
	colo_buf_put(&want, "after", 5);
	/* The other way at the same time. */
	bufs[0] = uv_buf_init((char *)q, (unsigned)other);
	ck_assert_int_eq(colo_repl_write(F.b.c, bufs, 1, on_done, &d4), 0);

	wait_got(&F.b, want.len);
	wait_got(&F.a, other);
	run_until(done_called, &d3, "the empty write's done");
	run_until(done_called, &d4, "b's write's done");
	ck_assert_uint_eq(F.b.got.len, want.len);
	ck_assert_msg(memcmp(F.b.got.data, want.data, want.len) == 0, "b got other bytes");
	ck_assert_uint_eq(F.a.got.len, other);
	ck_assert_msg(memcmp(F.a.got.data, q, other) == 0, "a got other bytes");
	/* Once more round the loop: a second done() call would come now. */
	ck_assert_int_eq(colo_repl_send_msg(F.a.c, 9), 0);
	wait_got(&F.b, want.len + 4);
	ck_assert_int_eq(d1.calls, 1);
	ck_assert_int_eq(d1.status, 0);
	ck_assert_int_eq(d2.calls, 1);
	ck_assert_int_eq(d2.status, 0);
	ck_assert_int_eq(d3.calls, 1);
	ck_assert_int_eq(d3.status, 0);
	ck_assert_int_eq(d4.calls, 1);
	ck_assert_int_eq(d4.status, 0);
	free(p);
	free(q);
	colo_buf_free(&want);
}

START_TEST(large_writes_and_sends_in_order)
{
	large_writes(true);
}
END_TEST

START_TEST(large_writes_and_sends_in_order_plain)
{
	large_writes(false);
}
END_TEST

/*
 * colo_repl_write_now() and colo_repl_send() write what the socket takes at
 * once.  A small write is all gone on return (1, done never called); one of
 * more than the socket holds is cut where the socket stopped, in the middle
 * of one of its buffers, and the rest waits in libuv (0, done once, later);
 * a send behind it waits behind it; a send of more than the socket holds
 * goes partly at once and partly later.  Every byte arrives, in order.
 * Sealed, write_now is colo_repl_write: 0 and done later, every time.
 */
static void writes_at_once(bool sealed)
{
	const size_t big = 48 * 1024 * 1024 + 4321;
	uint8_t *p = random_bytes(big, 4);
	struct done_count d1 = { 0, 1 }, d2 = { 0, 1 };
	struct colo_buf want;
	uv_buf_t bufs[12];
	size_t at = 0;
	unsigned i;

	colo_buf_init(&want);
	if (sealed)
		seal_both();
	bufs[0] = uv_buf_init((char *)p, 10);
	bufs[1] = uv_buf_init((char *)p + 10, 0);
	bufs[2] = uv_buf_init((char *)p + 10, 90);
	ck_assert_int_eq(colo_repl_write_now(F.a.c, bufs, 3, on_done, &d1), sealed ? 0 : 1);
	colo_buf_put(&want, p, 100);
	wait_got(&F.b, want.len);
	/* Eleven buffers of odd sizes, more than the function keeps on its
	 * stack, so that the cut falls inside one and the rest is an array
	 * of its own. */
	for (i = 0; i < 11; i++) {
		size_t len = i < 10 ? big / 11 - 977 * i : big - at;

		bufs[i] = uv_buf_init((char *)p + at, (unsigned)len);
		at += len;
	}
	ck_assert_uint_eq(at, big);
	ck_assert_int_eq(colo_repl_write_now(F.a.c, bufs, 11, on_done, &d2), 0);
	colo_buf_put(&want, p, big);
	ck_assert_int_eq(colo_repl_send(F.a.c, "after", 5), 0);
	colo_buf_put(&want, "after", 5);
	ck_assert_int_eq(colo_repl_send(F.b.c, p + 1, big - 1), 0);
	ck_assert_int_eq(d2.calls, 0);

	wait_got(&F.b, want.len);
	wait_got(&F.a, big - 1);
	run_until(done_called, &d2, "the big write's done");
	ck_assert_uint_eq(F.b.got.len, want.len);
	ck_assert_msg(memcmp(F.b.got.data, want.data, want.len) == 0, "b got other bytes");
	ck_assert_uint_eq(F.a.got.len, big - 1);
	ck_assert_msg(memcmp(F.a.got.data, p + 1, big - 1) == 0, "a got other bytes");
	/* Once more round the loop: a late or second done() would come now. */
	ck_assert_int_eq(colo_repl_send_msg(F.a.c, 9), 0);
	wait_got(&F.b, want.len + 4);
	ck_assert_int_eq(d1.calls, sealed ? 1 : 0);
	ck_assert_int_eq(d2.calls, 1);
	ck_assert_int_eq(d2.status, 0);
	free(p);
	colo_buf_free(&want);
}

START_TEST(writes_what_the_socket_takes_at_once)
{
	writes_at_once(false);
}
END_TEST

START_TEST(writes_at_once_sealed_wait_for_done)
{
	writes_at_once(true);
}
END_TEST

/* try_write seals and queues all of it, behind what was queued. */
START_TEST(try_write_takes_everything_sealed)
{
	const size_t len = 1024 * 1024 + 3;
	uint8_t *p = random_bytes(len, 3);

	seal_both();
	ck_assert_int_eq(colo_repl_send(F.a.c, "x", 1), 0);
	ck_assert_int_eq(colo_repl_try_write(F.a.c, p, len), (int)len);
	wait_got(&F.b, 1 + len);
	ck_assert_uint_eq(F.b.got.len, 1 + len);
	ck_assert_int_eq(F.b.got.data[0], 'x');
	ck_assert_msg(memcmp(F.b.got.data + 1, p, len) == 0, "b got other bytes");
	free(p);
}
END_TEST

/*
 * a writes several MiB plain (more than the socket holds, so most still
 * waits in libuv), a short plain message, then seals and sends at once: all
 * of it lands in b's socket before b reads, so b's read callback finds the
 * sealed header and chunk behind the plain bytes in rx, and seals there.
 */
START_TEST(seal_in_read_callback_with_sealed_bytes_behind)
{
	const size_t big = 4 * 1024 * 1024;
	uint8_t *p = random_bytes(big, 4);
	struct done_count d = { 0, 1 };
	uv_buf_t b = uv_buf_init((char *)p, (unsigned)big);

	F.b.seal_in_read = true;
	F.b.plain_len = big + 5;
	F.b.tx = k2;
	F.b.rx = k1;
	ck_assert_int_eq(colo_repl_write(F.a.c, &b, 1, on_done, &d), 0);
	ck_assert_int_eq(colo_repl_send(F.a.c, "hello", 5), 0);
	seal(&F.a, k1, k2);
	ck_assert_int_eq(colo_repl_send(F.a.c, "sealed", 6), 0);
	ck_assert_int_eq(colo_repl_send_msg(F.a.c, 42), 0);
	wait_got(&F.b, 10);
	ck_assert_uint_eq(F.b.plain.len, big + 5);
	ck_assert_msg(memcmp(F.b.plain.data, p, big) == 0, "the plain write changed");
	ck_assert_mem_eq(F.b.plain.data + big, "hello", 5);
	/* The case under test happened: sealed bytes waited behind "hello". */
	ck_assert_uint_ge(F.b.extra_at_seal, HEADER + 4 + ABYTES + 6);
	ck_assert_uint_eq(F.b.got.len, 10);
	ck_assert_mem_eq(F.b.got.data, "sealed\0\0\0\x2a", 10);
	ck_assert_int_eq(d.calls, 1);
	ck_assert_int_eq(d.status, 0);
	/* And b's answer, sealed, reaches a. */
	ck_assert_int_eq(colo_repl_send(F.b.c, "reply", 5), 0);
	wait_got(&F.a, 5);
	ck_assert_mem_eq(F.a.got.data, "reply", 5);
	free(p);
}
END_TEST

struct rx_at_least {
	struct end *e;
	size_t n;
};

static bool rx_has(void *ud)
{
	struct rx_at_least *w = ud;

	return w->e->c && colo_repl_rx_len(w->e->c) >= w->n;
}

/* The same outside the read callback: the bytes wait in rx, b seals later. */
START_TEST(seal_outside_read_callback_with_bytes_in_rx)
{
	struct rx_at_least w = { &F.b, 5 + HEADER + 4 + ABYTES + 6 };

	F.b.hold = true;
	ck_assert_int_eq(colo_repl_send(F.a.c, "hello", 5), 0);
	seal(&F.a, k1, k2);
	ck_assert_int_eq(colo_repl_send(F.a.c, "sealed", 6), 0);
	run_until(rx_has, &w, "a's plain and sealed bytes in b's rx");
	ck_assert_mem_eq(colo_repl_rx(F.b.c), "hello", 5);
	colo_repl_consume(F.b.c, 5);
	F.b.hold = false;
	seal(&F.b, k2, k1);
	ck_assert_uint_eq(colo_repl_rx_len(F.b.c), 0);
	wait_got(&F.b, 6);
	ck_assert_uint_eq(F.b.got.len, 6);
	ck_assert_mem_eq(F.b.got.data, "sealed", 6);
}
END_TEST

/* a says hello, seals, says its last words and closes, all before b reads:
 * b seals in its read callback and still gets them before the end. */
START_TEST(last_sealed_words_before_close_arrive)
{
	F.b.seal_in_read = true;
	F.b.plain_len = 5;
	F.b.tx = k2;
	F.b.rx = k1;
	ck_assert_int_eq(colo_repl_send(F.a.c, "hello", 5), 0);
	seal(&F.a, k1, k2);
	ck_assert_int_eq(colo_repl_send(F.a.c, "last words", 10), 0);
	colo_repl_close(F.a.c);
	F.a.c = NULL;
	run_until(lost, &F.b, "b to hear the end");
	ck_assert_int_eq(F.b.how, COLO_REPL_CLOSED);
	ck_assert_uint_eq(F.b.plain.len, 5);
	ck_assert_uint_eq(F.b.got.len, 10);
	ck_assert_mem_eq(F.b.got.data, "last words", 10);
}
END_TEST

START_TEST(seal_twice_is_refused)
{
	struct colo_err err;

	seal_both();
	colo_err_clear(&err);
	ck_assert_int_eq(colo_repl_seal(F.a.c, k1, k2, &err), -EALREADY);
	ck_assert_msg(strstr(err.msg, "sealed already"), "%s", err.msg);
}
END_TEST

/* Closed with a write half sent (sealed: a window of batches; plain: its
 * 1 MiB pieces): done() once, with an error. */
static void close_mid_write(bool sealed)
{
	const size_t big = 8 * 1024 * 1024;
	uint8_t *p = random_bytes(big, 5);
	struct done_count d = { 0, 0 }, d2 = { 0, 0 };
	uv_buf_t b = uv_buf_init((char *)p, (unsigned)big);

	if (sealed)
		seal_both();
	/* Closed at once: a window of batches sits in libuv, the rest queued. */
	ck_assert_int_eq(colo_repl_write(F.a.c, &b, 1, on_done, &d), 0);
	ck_assert_int_eq(colo_repl_write(F.a.c, &b, 1, on_done, &d2), 0);
	colo_repl_close(F.a.c);
	F.a.c = NULL;
	run_until(done_called, &d2, "the second write's done");
	run_until(done_called, &d, "the first write's done");
	ck_assert_int_eq(d.calls, 1);
	ck_assert_int_lt(d.status, 0);
	ck_assert_int_eq(d2.calls, 1);
	ck_assert_int_lt(d2.status, 0);
	ck_assert_int_eq(colo_repl_write(F.a.c, &b, 1, on_done, &d), UV_ENOTCONN);
	ck_assert_int_eq(d.calls, 1);
	free(p);
}

START_TEST(close_calls_done_once_with_an_error)
{
	close_mid_write(true);
}
END_TEST

START_TEST(close_calls_done_once_with_an_error_plain)
{
	close_mid_write(false);
}
END_TEST

/* ---- what does not open ends the connection ---- */

static void expect_protocol_error(struct end *e, const char *why)
{
	run_until(lost, e, "the protocol error");
	ck_assert_int_eq(e->lost, 1);
	ck_assert_int_eq(e->how, COLO_REPL_PROTOCOL);
	ck_assert_str_eq(e->why, why);
}

/* The log has one ERROR line naming b's peer (a's address) and why. */
static void expect_log_line(const char *why)
{
	const char *text = log_text(), *at;
	char want[640];

	snprintf(want, sizeof(want), " ERROR node=t gen=0 role=primary: protocol error from "
		 "%s: %s\n", F.b_peer, why);
	at = strstr(text, want);
	ck_assert_msg(at, "no line '%s' in the log:\n%s", want, text);
	ck_assert_msg(!strstr(at + strlen(want), "protocol error"), "more than one line:\n%s", text);
}

#define NOT_OPEN "a sealed chunk that does not open (tampered with, or sealed with another key)"

START_TEST(wrong_key_is_a_protocol_error)
{
	seal(&F.a, k1, k2);
	seal(&F.b, k2, k3);
	ck_assert_int_eq(colo_repl_send(F.a.c, "secret", 6), 0);
	expect_protocol_error(&F.b, NOT_OPEN);
	expect_log_line(NOT_OPEN);
	ck_assert_uint_eq(F.b.nread, 0);
	ck_assert_uint_eq(F.b.got.len, 0);
}
END_TEST

/* A sealed stream made here: header, then chunks; tag per chunk. */
struct crafted {
	crypto_secretstream_xchacha20poly1305_state st;
	struct colo_buf out;
};

static void craft_start(struct crafted *cr, const uint8_t *key)
{
	uint8_t *h;

	colo_buf_init(&cr->out);
	h = colo_buf_append(&cr->out, HEADER);
	ck_assert_ptr_nonnull(h);
	crypto_secretstream_xchacha20poly1305_init_push(&cr->st, h, key);
}

/* Append a chunk; returns where its ciphertext starts in out. */
static size_t craft_chunk(struct crafted *cr, const void *m, size_t len, uint8_t tag)
{
	size_t at;
	uint8_t *c;

	colo_buf_put_be32(&cr->out, (uint32_t)(len + ABYTES));
	at = cr->out.len;
	c = colo_buf_append(&cr->out, len + ABYTES);
	ck_assert_ptr_nonnull(c);
	crypto_secretstream_xchacha20poly1305_push(&cr->st, c, NULL, m, len, NULL, 0, tag);
	return at;
}

/* b sealed with a's keys; a left plain sends the crafted bytes. */
static void send_crafted(struct crafted *cr)
{
	seal(&F.b, k2, k1);
	ck_assert_int_eq(colo_repl_send(F.a.c, cr->out.data, cr->out.len), 0);
	colo_buf_free(&cr->out);
}

START_TEST(flipped_byte_is_a_protocol_error)
{
	uint8_t msg[3000];
	struct crafted cr;
	size_t at;

	memset(msg, 'm', sizeof(msg));
	craft_start(&cr, k1);
	craft_chunk(&cr, "good", 4, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
	at = craft_chunk(&cr, msg, sizeof(msg), crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
	craft_chunk(&cr, "late", 4, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
	cr.out.data[at + sizeof(msg) / 2] ^= 0x20;
	send_crafted(&cr);
	expect_protocol_error(&F.b, NOT_OPEN);
	expect_log_line(NOT_OPEN);
	/* The chunk before is genuine and went; nothing of the bad one or after. */
	ck_assert_uint_eq(F.b.got.len, 4);
	ck_assert_mem_eq(F.b.got.data, "good", 4);
	ck_assert_uint_eq(F.b.nread, 4);
}
END_TEST

START_TEST(cut_chunk_is_a_protocol_error)
{
	struct crafted cr;
	size_t at;

	/* A chunk whose length was shortened: its tag is not where it says. */
	craft_start(&cr, k1);
	at = craft_chunk(&cr, "truncated!", 10, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
	colo_store_be32(cr.out.data + at - 4, 10 + ABYTES - 1);
	send_crafted(&cr);
	expect_protocol_error(&F.b, NOT_OPEN);
	ck_assert_uint_eq(F.b.got.len, 0);
}
END_TEST

START_TEST(chunk_over_the_maximum_is_a_protocol_error)
{
	struct crafted cr;
	char why[128];

	craft_start(&cr, k1);
	colo_buf_put_be32(&cr.out, CHUNK + ABYTES + 1);
	colo_buf_fill(&cr.out, 0, 100);
	send_crafted(&cr);
	snprintf(why, sizeof(why), "a sealed chunk of %u bytes (at most %u)", CHUNK + ABYTES + 1,
		 CHUNK + ABYTES);
	expect_protocol_error(&F.b, why);
	expect_log_line(why);
	ck_assert_uint_eq(F.b.got.len, 0);
}
END_TEST

START_TEST(chunk_under_the_tag_size_is_a_protocol_error)
{
	struct crafted cr;

	craft_start(&cr, k1);
	colo_buf_put_be32(&cr.out, ABYTES - 1);
	colo_buf_fill(&cr.out, 0, ABYTES - 1);
	send_crafted(&cr);
	expect_protocol_error(&F.b, "a sealed chunk of 16 bytes (at least 17)");
}
END_TEST

START_TEST(final_chunk_is_a_protocol_error)
{
	struct crafted cr;
	const char *why = "a sealed chunk tagged FINAL (a sealed connection never ends that way)";

	craft_start(&cr, k1);
	craft_chunk(&cr, "bye", 3, crypto_secretstream_xchacha20poly1305_TAG_FINAL);
	send_crafted(&cr);
	expect_protocol_error(&F.b, why);
	expect_log_line(why);
	ck_assert_uint_eq(F.b.got.len, 0);
}
END_TEST

START_TEST(other_tag_is_a_protocol_error)
{
	struct crafted cr;

	craft_start(&cr, k1);
	craft_chunk(&cr, "rekey", 5, crypto_secretstream_xchacha20poly1305_TAG_REKEY);
	send_crafted(&cr);
	expect_protocol_error(&F.b, "a sealed chunk tagged 2 (only MESSAGE chunks are sent)");
	ck_assert_uint_eq(F.b.got.len, 0);
}
END_TEST

/* A genuine chunk sent twice does not open the second time: the key moved on. */
START_TEST(replayed_chunk_is_a_protocol_error)
{
	uint8_t again[4 + ABYTES + 4];
	struct crafted cr;

	craft_start(&cr, k1);
	craft_chunk(&cr, "once", 4, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
	ck_assert_uint_eq(cr.out.len, HEADER + sizeof(again));
	memcpy(again, cr.out.data + HEADER, sizeof(again));
	colo_buf_put(&cr.out, again, sizeof(again));
	send_crafted(&cr);
	expect_protocol_error(&F.b, NOT_OPEN);
	ck_assert_uint_eq(F.b.got.len, 4);
	ck_assert_mem_eq(F.b.got.data, "once", 4);
}
END_TEST

/* ---- the wire ---- */

/*
 * a sealed sends a write of a known pattern; b stays plain and keeps the
 * raw bytes: the 24-byte header, then chunks of be32 length + ciphertext
 * of at most 64 KiB of plaintext each, which open with a's key into the
 * pattern; the pattern itself is nowhere on the wire.
 */
START_TEST(wire_is_header_and_chunks_never_plaintext)
{
	const char *pattern = "colo-plaintext-pattern;";
	const size_t len = 200 * 1024;
	size_t plen = strlen(pattern), chunks = (len + CHUNK - 1) / CHUNK, pos = HEADER;
	uint8_t *p = malloc(len), *m = malloc(CHUNK);
	crypto_secretstream_xchacha20poly1305_state st;
	struct done_count d = { 0, 1 };
	uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
	struct colo_buf opened;

	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)pattern[i % plen];
	seal(&F.a, k1, k2);
	ck_assert_int_eq(colo_repl_write(F.a.c, &b, 1, on_done, &d), 0);
	wait_got(&F.b, HEADER + chunks * (4 + ABYTES) + len);
	run_until(done_called, &d, "the write's done");
	ck_assert_uint_eq(F.b.got.len, HEADER + chunks * (4 + ABYTES) + len);
	ck_assert_ptr_null(memmem(F.b.got.data, F.b.got.len, pattern, plen));
	ck_assert_ptr_null(memmem(F.b.got.data, F.b.got.len, pattern + 5, 8));

	colo_buf_init(&opened);
	ck_assert_int_eq(crypto_secretstream_xchacha20poly1305_init_pull(&st, F.b.got.data, k1), 0);
	while (pos < F.b.got.len) {
		uint32_t clen = colo_load_be32(F.b.got.data + pos);
		unsigned long long mlen;
		unsigned char tag;

		ck_assert_uint_le(clen, CHUNK + ABYTES);
		ck_assert_uint_le(pos + 4 + clen, F.b.got.len);
		ck_assert_int_eq(crypto_secretstream_xchacha20poly1305_pull(
			&st, m, &mlen, &tag, F.b.got.data + pos + 4, clen, NULL, 0), 0);
		ck_assert_int_eq(tag, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
		colo_buf_put(&opened, m, (size_t)mlen);
		pos += 4 + clen;
	}
	ck_assert_uint_eq(opened.len, len);
	ck_assert_msg(memcmp(opened.data, p, len) == 0, "the chunks open to other bytes");
	colo_buf_free(&opened);
	free(p);
	free(m);
}
END_TEST

/* ---- an owner that yields takes one slice per turn ---- */

/*
 * b takes 1000 bytes per read callback and yields the rest: every byte of
 * a 1 MiB write still arrives, in order, a slice per turn of the loop
 * (read again with nread 0 on the next turn), and the connection goes on
 * normally after.  Without the yield's resume the rest would wait in rx
 * for bytes that never come; without its stop, libuv would read again in
 * the same turn.
 */
static void yield_slices(bool sealed)
{
	const size_t len = 1024 * 1024 + 17;
	uint8_t *p = random_bytes(len, 3);
	struct done_count d = { 0, 1 };
	uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);

	if (sealed)
		seal_both();
	F.b.slice = 1000;
	ck_assert_int_eq(colo_repl_write(F.a.c, &b, 1, on_done, &d), 0);
	wait_got(&F.b, len);
	ck_assert_uint_eq(F.b.got.len, len);
	ck_assert_msg(memcmp(F.b.got.data, p, len) == 0, "b got other bytes");
	ck_assert_uint_ge(F.b.resumed, len / 1000 / 2);
	/* One slice per turn, or two when the resume's slice was the last
	 * and the socket, read again, had more in the same turn. */
	if (!sealed)
		ck_assert_uint_le(F.b.in_turn_max, 2);
	/* Reading goes on once nothing is left over. */
	F.b.slice = 0;
	ck_assert_int_eq(colo_repl_send(F.a.c, "after", 5), 0);
	wait_got(&F.b, len + 5);
	ck_assert(memcmp(F.b.got.data + len, "after", 5) == 0);
	run_until(done_called, &d, "the write's done");
	free(p);
}

START_TEST(yield_takes_one_slice_per_turn)
{
	yield_slices(false);
}
END_TEST

START_TEST(yield_takes_slices_sealed)
{
	yield_slices(true);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("seal");
	TCase *tc = tcase_create("seal");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, small_messages_both_ways);
	tcase_add_test(tc, large_writes_and_sends_in_order);
	tcase_add_test(tc, large_writes_and_sends_in_order_plain);
	tcase_add_test(tc, try_write_takes_everything_sealed);
	tcase_add_test(tc, writes_what_the_socket_takes_at_once);
	tcase_add_test(tc, writes_at_once_sealed_wait_for_done);
	tcase_add_test(tc, seal_in_read_callback_with_sealed_bytes_behind);
	tcase_add_test(tc, seal_outside_read_callback_with_bytes_in_rx);
	tcase_add_test(tc, last_sealed_words_before_close_arrive);
	tcase_add_test(tc, seal_twice_is_refused);
	tcase_add_test(tc, close_calls_done_once_with_an_error);
	tcase_add_test(tc, close_calls_done_once_with_an_error_plain);
	tcase_add_test(tc, wrong_key_is_a_protocol_error);
	tcase_add_test(tc, flipped_byte_is_a_protocol_error);
	tcase_add_test(tc, cut_chunk_is_a_protocol_error);
	tcase_add_test(tc, chunk_over_the_maximum_is_a_protocol_error);
	tcase_add_test(tc, chunk_under_the_tag_size_is_a_protocol_error);
	tcase_add_test(tc, final_chunk_is_a_protocol_error);
	tcase_add_test(tc, other_tag_is_a_protocol_error);
	tcase_add_test(tc, replayed_chunk_is_a_protocol_error);
	tcase_add_test(tc, wire_is_header_and_chunks_never_plaintext);
	tcase_add_test(tc, yield_takes_one_slice_per_turn);
	tcase_add_test(tc, yield_takes_slices_sealed);
	suite_add_tcase(s, tc);
	return colo_test_main(s);
}
