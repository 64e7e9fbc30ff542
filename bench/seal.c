/*
 * seal.c: colo-bench --only seal: what sealing the replication connection
 * ([security] encrypt, colo_repl_seal) costs in throughput.
 *
 * One transfer of checkpoint-sized writes (16 MiB each, colo_repl_write,
 * the next as the last is done) from a sending end to a receiving end over
 * loopback TCP, each end a real colo_repl_conn on its own loop and thread
 * as on two nodes; timed from the first write to the receiver's last byte.
 * The same transfer plain and sealed, alternately, best of each: the
 * figure is sealed / plain.  Sealing and opening the same bytes in memory
 * (libsodium alone, one thread each) are measured too: the ends seal and
 * open on their own cores, so the slower of the two bounds the sealed
 * connection, and sealed / that bound says what the layer adds to the
 * cipher.
 */
#include "config.h"

#include <jansson.h>
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"
#include "repl.h"

#define WRITE_LEN (16u << 20)

static const uint8_t key_ps[COLO_SEAL_KEY_BYTES] = { 1 }, key_sp[COLO_SEAL_KEY_BYTES] = { 2 };

struct run {
	bool sealed;
	size_t total;
	uint8_t *data;
	/* receiving end: its own loop and thread */
	uv_loop_t rloop;
	uv_tcp_t server;
	struct colo_repl_conn *rc;
	size_t got;
	double t_end;
	/* sending end: the caller's thread */
	uv_loop_t sloop;
	struct colo_repl_conn *sc;
	size_t sent;
	double t0;
	atomic_int listening;
	struct sockaddr_in addr;
};

static void die(const char *what)
{
	fprintf(stderr, "colo-bench: seal: %s\n", what);
	exit(1);
}

static void r_read(struct colo_repl_conn *c, void *owner, size_t nread)
{
	struct run *r = owner;

	(void)nread;
	r->got += colo_repl_rx_len(c);
	colo_repl_consume(c, colo_repl_rx_len(c));
	if (r->got >= r->total) {
		r->t_end = bench_now();
		colo_repl_close(c);
		r->rc = NULL;
		uv_close((uv_handle_t *)&r->server, NULL);
	}
}

static void r_lost(struct colo_repl_conn *c, void *owner, enum colo_repl_end end,
		   const char *why)
{
	(void)owner;
	(void)end;
	fprintf(stderr, "colo-bench: seal: receiver lost the connection: %s\n", why);
	colo_repl_close(c);
	exit(1);
}

static const struct colo_repl_ops r_ops = { .read = r_read, .lost = r_lost };

static void r_accept(uv_stream_t *server, int status)
{
	struct run *r = server->data;
	struct colo_err err;

	colo_err_clear(&err);
	if (status || colo_repl_accept(server, &r_ops, r, &r->rc, &err))
		die("cannot accept");
	if (r->sealed && colo_repl_seal(r->rc, key_sp, key_ps, &err))
		die(err.msg);
}

static void *receiver(void *arg)
{
	struct run *r = arg;
	int len = sizeof(r->addr);

	uv_loop_init(&r->rloop);
	uv_tcp_init(&r->rloop, &r->server);
	r->server.data = r;
	uv_ip4_addr("127.0.0.1", 0, &r->addr);
	if (uv_tcp_bind(&r->server, (const struct sockaddr *)&r->addr, 0) ||
	    uv_listen((uv_stream_t *)&r->server, 1, r_accept) ||
	    uv_tcp_getsockname(&r->server, (struct sockaddr *)&r->addr, &len))
		die("cannot listen on loopback");
	atomic_store(&r->listening, 1);
	uv_run(&r->rloop, UV_RUN_DEFAULT);
	uv_loop_close(&r->rloop);
	return NULL;
}

static void s_next(void *ud, int status);

static void s_write(struct run *r)
{
	size_t n = r->total - r->sent < WRITE_LEN ? r->total - r->sent : WRITE_LEN;
	uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)n);

	r->sent += n;
	if (colo_repl_write(r->sc, &b, 1, s_next, r))
		die("cannot write");
}

static void s_next(void *ud, int status)
{
	struct run *r = ud;

	if (status)
		die(uv_strerror(status));
	if (r->sent < r->total) {
		s_write(r);
		return;
	}
	colo_repl_close(r->sc);
	r->sc = NULL;
}

static void s_connected(struct colo_repl_conn *c, void *owner, int status)
{
	struct run *r = owner;
	struct colo_err err;

	colo_err_clear(&err);
	if (status)
		die(uv_strerror(status));
	if (r->sealed && colo_repl_seal(c, key_ps, key_sp, &err))
		die(err.msg);
	r->t0 = bench_now();
	s_write(r);
}

static void s_read(struct colo_repl_conn *c, void *owner, size_t nread)
{
	(void)owner;
	(void)nread;
	colo_repl_consume(c, colo_repl_rx_len(c));    /* the receiver's header */
}

static void s_lost(struct colo_repl_conn *c, void *owner, enum colo_repl_end end,
		   const char *why)
{
	(void)owner;
	(void)end;
	(void)why;
	colo_repl_close(c);      /* the receiver closes once it has all */
}

static const struct colo_repl_ops s_ops = {
	.connected = s_connected, .read = s_read, .lost = s_lost,
};

/* Seconds for one transfer. */
static double transfer(uint8_t *data, size_t total, bool sealed)
{
	struct run *r = calloc(1, sizeof(*r));
	struct colo_err err;
	pthread_t th;
	double t;

	if (!r)
		die("out of memory");
	r->sealed = sealed;
	r->total = total;
	r->data = data;
	if (pthread_create(&th, NULL, receiver, r))
		die("cannot start a thread");
	while (!atomic_load(&r->listening))
		sched_yield();
	uv_loop_init(&r->sloop);
	colo_err_clear(&err);
	if (colo_repl_connect(&r->sloop, (const struct sockaddr *)&r->addr, &s_ops, r, &r->sc,
			      &err))
		die(err.msg);
	uv_run(&r->sloop, UV_RUN_DEFAULT);
	uv_loop_close(&r->sloop);
	pthread_join(th, NULL);
	if (r->got != total)
		die("the receiver got another length");
	t = r->t_end - r->t0;
	free(r);
	return t;
}

/* GB/s of sealing (*seal) and then of opening (*open) len bytes in 64 KiB
 * chunks, in memory, one thread. */
static void in_memory(const uint8_t *data, size_t len, double *seal, double *open)
{
	const size_t chunk = 65536, clen = chunk + crypto_secretstream_xchacha20poly1305_ABYTES;
	crypto_secretstream_xchacha20poly1305_state tx, rx;
	uint8_t header[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
	uint8_t *c = malloc(len / chunk * clen), *m = malloc(chunk);
	double t0;

	if (!c || !m || len % chunk)
		die("out of memory");
	crypto_secretstream_xchacha20poly1305_init_push(&tx, header, key_ps);
	crypto_secretstream_xchacha20poly1305_init_pull(&rx, header, key_ps);
	t0 = bench_now();
	for (size_t i = 0; i < len / chunk; i++)
		crypto_secretstream_xchacha20poly1305_push(&tx, c + i * clen, NULL, data + i * chunk,
							   chunk, NULL, 0, 0);
	*seal = (double)len / (bench_now() - t0) / 1e9;
	t0 = bench_now();
	for (size_t i = 0; i < len / chunk; i++) {
		unsigned char tag;

		if (crypto_secretstream_xchacha20poly1305_pull(&rx, m, NULL, &tag, c + i * clen,
							       clen, NULL, 0))
			die("a chunk sealed here does not open");
	}
	*open = (double)len / (bench_now() - t0) / 1e9;
	free(c);
	free(m);
}

void bench_seal(json_t *out)
{
	size_t total = (bench_opts.quick ? 128u : 512u) << 20;
	int reps = bench_opts.quick ? 2 : 3;
	double plain = 1e9, sealed = 1e9, seal_mem = 0, open_mem = 0, bound;
	uint8_t *data = bench_map(WRITE_LEN);
	uint64_t s = 7;
	json_t *o = json_object();

	if (sodium_init() < 0)
		die("libsodium cannot initialise");
	for (size_t i = 0; i + 8 <= WRITE_LEN; i += 8) {
		uint64_t v = bench_rand(&s);

		memcpy(data + i, &v, 8);
	}
	/* Alternate, so that a noisy spell of the machine hits both. */
	for (int i = 0; i < reps; i++) {
		double t = transfer(data, total, false);

		plain = t < plain ? t : plain;
		t = transfer(data, total, true);
		sealed = t < sealed ? t : sealed;
	}
	for (int i = 0; i < reps; i++) {
		double sm, om;

		in_memory(data, WRITE_LEN, &sm, &om);
		seal_mem = sm > seal_mem ? sm : seal_mem;
		open_mem = om > open_mem ? om : open_mem;
	}
	/* Each end does one of the two on its own core: the slower bounds. */
	bound = seal_mem < open_mem ? seal_mem : open_mem;
	plain = (double)total / plain / 1e9;
	sealed = (double)total / sealed / 1e9;
	json_object_set_new(o, "bytes", json_integer((json_int_t)total));
	json_object_set_new(o, "plain_gbs", json_real(plain));
	json_object_set_new(o, "sealed_gbs", json_real(sealed));
	json_object_set_new(o, "sealed_vs_plain", json_real(sealed / plain));
	json_object_set_new(o, "seal_in_memory_gbs", json_real(seal_mem));
	json_object_set_new(o, "open_in_memory_gbs", json_real(open_mem));
	json_object_set_new(o, "sealed_vs_cipher", json_real(sealed / bound));
	json_object_set_new(out, "seal", o);
	if (!bench_opts.json) {
		printf("\n== seal: the replication connection over loopback, %zu MiB in 16 MiB "
		       "writes, best of %d\n", total >> 20, reps);
		printf("  plain  %6.2f GB/s\n  sealed %6.2f GB/s  = %.2fx plain\n", plain, sealed,
		       sealed / plain);
		printf("  in memory, one thread: seal %.2f GB/s, open %.2f GB/s; the sealed "
		       "connection = %.2fx the slower\n", seal_mem, open_mem, sealed / bound);
	}
	munmap(data, WRITE_LEN);
}
