/*
 * kv.c: the kv guest (see kv.h).
 *
 * Threads.  The engine's loop thread calls the ops; the service runs on
 * the kv thread (its own uv loop: listener, connections, a wake-up async),
 * or, embedded (on a primary, in every output mode), on the engine's loop
 * thread itself (kv_run.c says how; "the kv thread" below is then that
 * thread).
 * The two meet in three places:
 *   - the run gate (mu, cv, paused, busy): the kv thread runs commands only
 *     inside a section it enters when not paused; pause() waits for the
 *     section in progress to end;
 *   - epoch and released (atomics): the tag of new replies and how far
 *     replies may go out; release() wakes the kv thread to write them;
 *   - the want hook (hook_mu): the kv thread asks the engine for a
 *     checkpoint when a reply is held;
 *   - compare mode (kv_compare.c): the tap (hook_mu) is called on the kv
 *     thread with each batch's unit, and matched (an atomic watermark of
 *     positions, raised by output_match) lets held replies go like
 *     released does.
 * Everything else (connections, their queues) belongs to the kv thread.
 *
 * This file has the ops and the connections (reading and running
 * commands); kv_run.c runs the loop, on a thread or embedded; kv_output.c
 * holds each connection's replies until they may go and writes them.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "clock.h"
#include "nodecfg.h"
#include "kv.h"
#include "kv_int.h"
#include "kvcmd.h"
#include "kvstore.h"
#include "log.h"
#include "ram.h"
#include "resp.h"
#include "savevm.h"

#define HOLD_MAX (16u << 20)         /* stop reading above this much waiting */
#define HOLD_RESUME (4u << 20)       /* ... and read again below this */
#define READ_CHUNK (64u << 10)
#define LISTEN_RETRY_MS 200

static struct kv *to_kv(struct colo_guest *g)
{
	return kv_of(g);
}

/* ---- connections ---- */

static void on_conn_closed(uv_handle_t *h)
{
	struct kv_conn *c = h->data;

	kv_conn_drop_held(c);
	colo_resp_parser_free(&c->parser);
	colo_buf_free(&c->in);
	colo_buf_free(&c->out);
	free(c);
}

void kv_conn_close(struct kv_conn *c)
{
	struct kv *kv = c->kv;

	if (c->closing)
		return;
	c->closing = true;
	if (c->prev)
		c->prev->next = c->next;
	else
		kv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	atomic_fetch_sub(&kv->clients, 1);
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct kv_conn *c = h->data;

	(void)suggested;
	if (!colo_buf_reserve(&c->in, READ_CHUNK)) {
		*buf = uv_buf_init(NULL, 0);
		return;
	}
	*buf = uv_buf_init((char *)c->in.data + c->in.len, READ_CHUNK);
}

/*
 * One batch: the commands in c->in, until the input runs out or the
 * replies waiting on this connection reach HOLD_MAX (a pipeline of GETs of
 * big values must not make the output unbounded).  true if it stopped for
 * the latter with commands left.
 *
 * In compare mode the batch is one unit (kv_compare.c): the bytes it ran
 * with the client state and counters as they were before it, handed to
 * the tap inside the section, so a pause() that returned has seen the unit
 * of every command that ran before it.
 *
 * The replies are left in c->out for conn_run_batch() to queue under
 * *tag_out and *pos_out.
 */
bool kv_conn_run_batch(struct kv_conn *c, uint64_t *tag_out, uint64_t *pos_out)
{
	struct kv *kv = c->kv;
	struct colo_kvcmd_ctx ctx;
	struct colo_kvcmd_client before;
	size_t off = 0, ran = 0;
	uint64_t tag, pos = 0, n = 0, base;
	unsigned uflags = 0;
	bool capped = false, tapped;

	memset(&ctx, 0, sizeof(ctx));
	ctx.kv = &kv->store;
	ctx.client = &c->cli;
	ctx.total_connections = kv->nconns;
	ctx.tcp_port = atomic_load(&kv->port);
	ctx.uptime_s = (colo_now_ns() - kv->start_ns) / 1000000000ull;
	ctx.connected_clients = atomic_load(&kv->clients);
	ctx.role = "master";
	ctx.maxmemory = kv->store.size;
	/* Only this thread adds to commands: it holds for the whole batch. */
	base = atomic_load(&kv->commands);
	ctx.commands_processed = base;
	tapped = atomic_load(&kv->tap_set);
	if (tapped)
		before = c->cli;
	kv_section_enter(kv);
	tag = atomic_load(&kv->epoch);
	while (off < c->in.len) {
		size_t used = 0;
		int r, flags;

		if (c->out.len + c->held >= HOLD_MAX) {
			capped = true;
			break;
		}
		r = colo_resp_parse(&c->parser, c->in.data + off, c->in.len - off, &used);
		if (r == 0)
			break;
		if (r < 0) {
			/* Redis answers a protocol error and closes the connection.
			 * The unit takes all the input: the fault is in it. */
			colo_resp_error(&c->out, "ERR %s", c->parser.error);
			c->done = true;
			off = ran = c->in.len;
			uflags |= KV_UNIT_PROTO_ERROR;
			break;
		}
		ctx.commands_processed = base + n;
		flags = colo_kvcmd_exec(&ctx, c->parser.argc, c->parser.argv, c->parser.argl,
					&c->out);
		off += used;
		ran = off;
		n++;
		if (flags & COLO_KVCMD_QUIT) {
			/* What came after QUIT is dropped, and is not in the unit. */
			c->done = true;
			off = c->in.len;
			break;
		}
	}
	if (tapped && ran) {
		ctx.client = &before;
		ctx.commands_processed = base;
		pos = kv_cmp_emit(kv, &ctx, c->in.data, ran, uflags, tag, c->out.data, c->out.len);
	}
	kv_section_leave(kv);
	atomic_fetch_add(&kv->commands, n);
	if (off) {
		memmove(c->in.data, c->in.data + off, c->in.len - off);
		c->in.len -= off;
	}
	*tag_out = tag;
	*pos_out = pos;
	return capped;
}

static bool conn_run_batch(struct kv_conn *c)
{
	uint64_t tag, pos;
	bool capped = kv_conn_run_batch(c, &tag, &pos);

	kv_conn_queue(c, tag, pos);
	return capped;
}

/* Run what the input holds, batch after batch while the output drains. */
static void conn_run(struct kv_conn *c)
{
	while (conn_run_batch(c) && !c->closing && !c->done && c->held < HOLD_MAX)
		;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct kv_conn *c = s->data;

	(void)buf;
	if (c->closing)
		return;
	if (nread < 0) {
		/* The client left: what it was owed goes nowhere. */
		kv_conn_close(c);
		return;
	}
	if (nread == 0)
		return;
	c->in.len += (size_t)nread;
	conn_run(c);
	if (c->closing)
		return;
	if (c->done || c->held >= HOLD_MAX) {
		uv_read_stop(s);
		c->reading = false;
	}
}

static void conn_read_again(struct kv_conn *c)
{
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
		c->reading = true;
}

/* The output drained (a write finished, or held replies were released):
 * run the commands left waiting, then read again. */
void kv_conn_resume(struct kv_conn *c)
{
	if (c->closing || c->done || c->reading || c->held >= HOLD_RESUME)
		return;
	if (c->in.len) {
		conn_run(c);
		if (c->closing || c->done || c->held >= HOLD_MAX)
			return;
	}
	conn_read_again(c);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct kv *kv = server->data;
	struct kv_conn *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->kv = kv;
	colo_resp_parser_init(&c->parser);
	colo_buf_init(&c->in);
	colo_buf_init(&c->out);
	uv_tcp_init(&kv->loop, &c->tcp);
	c->tcp.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		c->closing = true;
		uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	c->next = kv->conns;
	if (kv->conns)
		kv->conns->prev = c;
	kv->conns = c;
	kv->nconns++;
	c->cli.id = kv->nconns;
	atomic_fetch_add(&kv->clients, 1);
	conn_read_again(c);
}

/*
 * Bind guest-listen with IP_FREEBIND, so the address need not be on this
 * host yet: a promote-command that brings a service address up after the
 * guest started is fine.  0 (listening, kv->port set) or -errno.
 */
static int kv_listen(struct kv *kv)
{
	struct sockaddr *sa = (struct sockaddr *)&kv->addr;
	struct sockaddr_storage got;
	socklen_t len = sizeof(got);
	int one = 1, fd, r;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa->sa_family == AF_INET)
		setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one));
#ifdef IPV6_FREEBIND
	else
		setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof(one));
#endif
	if (bind(fd, sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) :
		 sizeof(struct sockaddr_in)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&got, &len) != 0) {
		r = -errno;
		close(fd);
		return r;
	}
	r = uv_tcp_open(&kv->listener, fd);
	if (r) {
		close(fd);
		return r;
	}
	/* The handle owns fd from here: it is closed with it. */
	r = uv_listen((uv_stream_t *)&kv->listener, 511, on_connection);
	if (r)
		return r;
	atomic_store(&kv->port, ntohs(got.ss_family == AF_INET6 ?
				      ((struct sockaddr_in6 *)&got)->sin6_port :
				      ((struct sockaddr_in *)&got)->sin_port));
	return 0;
}

static void on_retry(uv_timer_t *t)
{
	struct kv *kv = t->data;
	int r = kv_listen(kv);

	if (r == -EADDRINUSE)
		return;
	uv_timer_stop(t);
	if (r)
		colo_log_error("kv: cannot listen on %s:%u: %s; not serving", kv->listen_host,
			       kv->listen_port, strerror(-r));
	else
		colo_log_info("kv: serving on %s:%u", kv->listen_host, kv->listen_port);
}

/* ---- ops ---- */

static int kv_create(const struct colo_config *cfg, struct colo_guest **out,
		     struct colo_err *err)
{
	struct kv *kv;

	*out = NULL;
	kv = calloc(1, sizeof(*kv));
	if (!kv)
		return colo_err_set(err, ENOMEM, "kv: out of memory");
	kv->g.ops = &colo_kv_ops;
	kv->region_size = (uint64_t)cfg->ram_mb << 20;
	kv->seed = 0x636f6c6f2d6b7631ull;   /* fixed: the store moves, not the seed */
	snprintf(kv->listen_host, sizeof(kv->listen_host), "%s", cfg->guest_listen.host);
	kv->listen_port = cfg->guest_listen.port;
	pthread_mutex_init(&kv->mu, NULL);
	pthread_cond_init(&kv->cv, NULL);
	pthread_mutex_init(&kv->hook_mu, NULL);
	pthread_mutex_init(&kv->wake_mu, NULL);
	colo_buf_init(&kv->unit);
	colo_buf_init(&kv->cmp_out);
	colo_resp_parser_init(&kv->cmp_parser);
	atomic_store(&kv->released, UINT64_MAX);
	*out = &kv->g;
	return 0;
}

static int kv_attach(struct colo_guest *g, struct colo_ram *ram, struct colo_savevm *sv,
		     struct colo_err *err)
{
	struct kv *kv = to_kv(g);
	struct colo_ram_block *b;
	int r;

	if (kv->block)
		return colo_err_set(err, EBUSY, "kv: already attached");
	if ((r = colo_ram_add_block(ram, COLO_KV_RAM, kv->region_size, &b, err)) ||
	    (r = colo_savevm_add_ram(sv, COLO_KV_RAM, b->host, b->length, err)) ||
	    (r = colo_savevm_add_device(sv, COLO_KV_DEVICE, 0, &colo_kv_meta_vmstate,
					&kv->meta, err))) {
		colo_err_prefix(err, "kv");
		return r;
	}
	kv->block = b;
	kv->manual = colo_ram_tracking(ram) == COLO_DIRTY_MANUAL;
	/* An empty database; on a secondary the sync replaces it. */
	r = colo_kv_format(&kv->store, b->host, b->length, &kv->meta, kv->seed, err);
	if (r)
		colo_err_prefix(err, "kv");
	else
		kv_track(kv);
	return r;
}

static void mark_block(void *ud, uint64_t off, uint64_t len)
{
	colo_ram_mark_dirty(ud, off, len);
}

void kv_track(struct kv *kv)
{
	if (kv->manual)
		colo_kv_track(&kv->store, mark_block, kv->block);
}

static int kv_start(struct colo_guest *g, struct colo_err *err)
{
	struct kv *kv = to_kv(g);
	int r;

	if (!kv->block)
		return colo_err_set(err, EINVAL, "kv: start before attach");
	if (kv->started)
		return colo_err_set(err, EBUSY, "kv: already started");
	/* What is in RAM now may have come from the other node: check it. */
	r = colo_kv_open(&kv->store, kv->block->host, kv->block->length, &kv->meta, err);
	if (r) {
		colo_err_prefix(err, "kv: the database in RAM");
		return r;
	}
	kv_track(kv);
	memset(&kv->addr, 0, sizeof(kv->addr));
	if (uv_ip4_addr(kv->listen_host, kv->listen_port, (struct sockaddr_in *)&kv->addr) != 0 &&
	    uv_ip6_addr(kv->listen_host, kv->listen_port, (struct sockaddr_in6 *)&kv->addr) != 0)
		return colo_err_set(err, EINVAL, "kv: guest-listen '%s' is not a numeric address",
				    kv->listen_host);
	r = uv_loop_init(&kv->loop);
	if (r)
		return colo_err_set(err, -r, "kv: %s", uv_strerror(r));
	uv_tcp_init(&kv->loop, &kv->listener);
	uv_async_init(&kv->loop, &kv->wake, kv_on_wake);
	uv_timer_init(&kv->loop, &kv->retry);
	kv->listener.data = kv->wake.data = kv->retry.data = kv;
	r = kv_listen(kv);
	if (r == -EADDRINUSE) {
		/* A promoted secondary whose old primary still holds the address
		 * (same host, or a manual failover): it goes when it learns of the
		 * new generation.  The state is here; serve as soon as we can. */
		colo_log_warn("kv: %s:%u is in use; trying again every %d ms",
			      kv->listen_host, kv->listen_port, LISTEN_RETRY_MS);
		uv_timer_start(&kv->retry, on_retry, LISTEN_RETRY_MS, LISTEN_RETRY_MS);
	} else if (r) {
		colo_err_set(err, -r, "kv: cannot listen on %s:%u: %s", kv->listen_host,
			     kv->listen_port, strerror(-r));
		kv_loop_close(kv);
		return -err->code;
	}
	kv->start_ns = colo_now_ns();
	r = kv_run_start(kv, err);
	if (r == 0)
		kv->started = true;
	return r;
}

static void kv_pause(struct colo_guest *g)
{
	kv_run_pause(to_kv(g));
}

static void kv_resume(struct colo_guest *g)
{
	kv_run_resume(to_kv(g));
}

static void kv_stop(struct colo_guest *g)
{
	struct kv *kv = to_kv(g);

	if (!kv->started)
		return;
	kv_run_stop(kv);
	kv->started = false;
	atomic_store(&kv->port, 0);
}

static int kv_embed(struct colo_guest *g, uv_loop_t *loop, struct colo_err *err)
{
	struct kv *kv = to_kv(g);

	if (kv->started)
		return colo_err_set(err, EBUSY, "kv: already started on a thread of its own");
	kv->host = loop;
	return 0;
}

static void kv_verify(struct colo_guest *g, struct colo_verify_report *r)
{
	struct kv *kv = to_kv(g);
	struct colo_kvstore st;
	struct colo_err err;

	memset(r, 0, sizeof(*r));
	r->supported = true;
	if (!kv->block)
		return;
	r->pages_checked = kv->block->length / COLO_RAM_PAGE_SIZE;
	colo_err_clear(&err);
	if (colo_kv_open(&st, kv->block->host, kv->block->length, &kv->meta, &err) != 0 ||
	    colo_kv_check(&st, &err) != 0) {
		r->pages_bad = 1;
		snprintf(r->bad[0].block, sizeof(r->bad[0].block), "%s", COLO_KV_RAM);
		r->bad[0].offset = 0;
		/* The report holds one line; the error's start names the fault. */
		size_t n = strnlen(err.msg, sizeof(r->summary) - 1);

		memcpy(r->summary, err.msg, n);
		r->summary[n] = '\0';
		return;
	}
	snprintf(r->summary, sizeof(r->summary), "kv: %" PRIu64 " keys, %" PRIu64
		 " bytes used, store consistent", kv->meta.count, kv->meta.used);
}

/* colo-ctl stats and the metrics endpoint: clients, commands, keys, and
 * the replies held for output commit. */
static void kv_metrics(struct colo_guest *g,
		       void (*put)(void *ud, const char *name, double value), void *ud)
{
	struct kv *kv = to_kv(g);

	put(ud, "kv_keys", (double)__atomic_load_n(&kv->meta.count, __ATOMIC_RELAXED));
	put(ud, "kv_clients", (double)atomic_load(&kv->clients));
	put(ud, "kv_commands", (double)atomic_load(&kv->commands));
	put(ud, "output_held_bytes", (double)atomic_load(&kv->held_bytes));
	put(ud, "output_held_batches", (double)atomic_load(&kv->held_batches));
}

static void kv_describe(struct colo_guest *g, char *buf, size_t len)
{
	struct kv *kv = to_kv(g);
	uint64_t keys = __atomic_load_n(&kv->meta.count, __ATOMIC_RELAXED);

	uint16_t port = atomic_load(&kv->port);

	if (kv->started && port)
		snprintf(buf, len, "kv: %" PRIu64 " keys, serving %s:%u, %" PRIu64 " clients, %"
			 PRIu64 " commands", keys, kv->listen_host, port,
			 atomic_load(&kv->clients), atomic_load(&kv->commands));
	else if (kv->started)
		snprintf(buf, len, "kv: %" PRIu64 " keys, waiting for %s:%u (in use)", keys,
			 kv->listen_host, kv->listen_port);
	else
		snprintf(buf, len, "kv: %" PRIu64 " keys, not serving", keys);
}

static void kv_output_epoch(struct colo_guest *g, uint64_t seq)
{
	struct kv *kv = to_kv(g);
	uint64_t rel = atomic_load(&kv->released);

	atomic_store(&kv->epoch, seq);
	/* Replies of epoch seq wait for it: nothing at or after it is out. */
	if (seq && rel >= seq)
		atomic_store(&kv->released, seq - 1);
}

static void kv_output_release(struct colo_guest *g, uint64_t seq)
{
	struct kv *kv = to_kv(g);
	uint64_t rel = atomic_load(&kv->released);

	while (rel < seq && !atomic_compare_exchange_weak(&kv->released, &rel, seq))
		;
	if (kv_flush_here(kv) != 0)
		kv_wake(kv);
}

static void kv_output_notify(struct colo_guest *g, void (*fn)(void *ud), void *ud)
{
	struct kv *kv = to_kv(g);

	pthread_mutex_lock(&kv->hook_mu);
	kv->want = fn;
	kv->want_ud = ud;
	pthread_mutex_unlock(&kv->hook_mu);
}

static void kv_destroy(struct colo_guest *g)
{
	struct kv *kv = to_kv(g);

	if (!g)
		return;
	kv_stop(g);
	colo_buf_free(&kv->unit);
	colo_buf_free(&kv->cmp_out);
	colo_resp_parser_free(&kv->cmp_parser);
	pthread_mutex_destroy(&kv->wake_mu);
	pthread_mutex_destroy(&kv->hook_mu);
	pthread_cond_destroy(&kv->cv);
	pthread_mutex_destroy(&kv->mu);
	free(kv);
}

uint16_t colo_kv_port(struct colo_guest *g)
{
	return atomic_load(&to_kv(g)->port);
}

const struct colo_guest_ops colo_kv_ops = {
	.kind = "kv",
	.version = 1,
	.listens = true,
	.create = kv_create,
	.attach = kv_attach,
	.start = kv_start,
	.embed = kv_embed,
	.pause = kv_pause,
	.resume = kv_resume,
	.stop = kv_stop,
	.verify = kv_verify,
	.describe = kv_describe,
	.metrics = kv_metrics,
	.output_epoch = kv_output_epoch,
	.output_release = kv_output_release,
	.output_notify = kv_output_notify,
	.compare_tap = kv_compare_tap,
	.output_match = kv_output_match,
	.compare_run = kv_compare_run,
	.destroy = kv_destroy,
};
