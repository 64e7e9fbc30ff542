/*
 * test_hb.c: heartbeats between two nodes, each on its own loop and thread.
 *
 * What must hold: a node whose own loop was busy does not take its peer's
 * queued heartbeats for silence; a node whose loop is busy keeps sending
 * (heartbeats have their own thread) until the loop has been stuck for the
 * stall limit, and then goes silent so the peer sees it dead; the
 * generation guard refuses older peers and reports newer ones.
 *
 * Times here are lower bounds or generous margins: a slow machine can make
 * a peer look alive for longer, never dead sooner.
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hb.h"
#include "stats.h"
#include "testutil.h"

struct node {
	uv_loop_t loop;
	struct colo_hb *hb;
	struct colo_stats stats;
	uv_timer_t block, end;
	uv_async_t io;                 /* the long callback runs as I/O */
	uint32_t block_at_ms, block_ms, end_ms;
	pthread_t th;
	atomic_int dead;               /* peer_dead calls */
	_Atomic uint64_t dead_at_ns;
	uint64_t t0_ns;
	char newer_node[64];
	uint64_t newer_gen;
};

static void on_peer_dead(void *ud)
{
	struct node *n = ud;

	if (atomic_fetch_add(&n->dead, 1) == 0)
		atomic_store(&n->dead_at_ns, colo_now_ns());
}

static void on_newer(void *ud, const char *node, uint64_t gen)
{
	struct node *n = ud;

	snprintf(n->newer_node, sizeof(n->newer_node), "%s", node);
	n->newer_gen = gen;
}

/*
 * A long callback, run in the loop's I/O phase as a checkpoint's socket read
 * would be: after it, the next turn of the loop runs its timers (the peer's
 * dead timer among them) before it polls the heartbeat socket again.
 */
static void on_io(uv_async_t *h)
{
	struct node *n = h->data;

	usleep(n->block_ms * 1000u);
}

static void on_block(uv_timer_t *t)
{
	struct node *n = t->data;

	uv_async_send(&n->io);
}

static void on_end(uv_timer_t *t)
{
	struct node *n = t->data;

	colo_hb_stop(n->hb);
	uv_close((uv_handle_t *)&n->block, NULL);
	uv_close((uv_handle_t *)&n->end, NULL);
	uv_close((uv_handle_t *)&n->io, NULL);
}

static void node_init(struct node *n, const char *name, uint64_t gen)
{
	struct colo_addr any = { "127.0.0.1", 0 };
	struct colo_hb_cb cb = { on_peer_dead, on_newer, n };
	struct colo_err err;

	memset(n, 0, sizeof(*n));
	ck_assert_int_eq(uv_loop_init(&n->loop), 0);
	colo_stats_init(&n->stats);
	colo_err_clear(&err);
	ck_assert_msg(colo_hb_start(&n->loop, &any, &cb, &n->stats, &n->hb, &err) == 0, "%s",
		      err.msg);
	colo_hb_set_identity(n->hb, name, 1, gen);
	uv_timer_init(&n->loop, &n->block);
	uv_timer_init(&n->loop, &n->end);
	uv_async_init(&n->loop, &n->io, on_io);
	n->block.data = n->end.data = n->io.data = n;
}

static void node_addr(struct node *n, struct sockaddr_in *sa)
{
	uv_ip4_addr("127.0.0.1", colo_hb_port(n->hb), sa);
}

static void *node_main(void *arg)
{
	struct node *n = arg;

	uv_run(&n->loop, UV_RUN_DEFAULT);
	return NULL;
}

static void node_run(struct node *n)
{
	n->t0_ns = colo_now_ns();
	if (n->block_ms)
		uv_timer_start(&n->block, on_block, n->block_at_ms, 0);
	uv_timer_start(&n->end, on_end, n->end_ms, 0);
	ck_assert_int_eq(pthread_create(&n->th, NULL, node_main, n), 0);
}

static void node_join(struct node *n)
{
	pthread_join(n->th, NULL);
	ck_assert_int_eq(uv_loop_close(&n->loop), 0);
}

/*
 * a sends to b every 20 ms; b watches a with a timeout of timeout_ms.
 * Either loop may be held for a while.
 */
static void run_pair(struct node *a, struct node *b, uint32_t timeout_ms, uint32_t stall_ms,
		     uint32_t ms)
{
	struct sockaddr_in sa;

	node_addr(b, &sa);
	colo_hb_send_to(a->hb, (struct sockaddr *)&sa, 20, stall_ms);
	colo_hb_watch(b->hb, "a", timeout_ms);
	a->end_ms = b->end_ms = ms;
	node_run(a);
	node_run(b);
	node_join(a);
	node_join(b);
}

START_TEST(steady)
{
	struct node a, b;

	node_init(&a, "a", 1);
	node_init(&b, "b", 1);
	run_pair(&a, &b, 150, 1000, 600);
	ck_assert_int_eq(atomic_load(&b.dead), 0);
	ck_assert_uint_ge(b.stats.heartbeats_received, 10);
	ck_assert_uint_ge(a.stats.heartbeats_sent, 10);
	ck_assert_uint_eq(b.stats.heartbeats_refused, 0);
}
END_TEST

/* b's own loop is held for 400 ms with a 150 ms timeout: a's heartbeats
 * wait in b's socket, and b must read them before calling a dead. */
START_TEST(busy_receiver_is_not_fooled)
{
	struct node a, b;

	node_init(&a, "a", 1);
	node_init(&b, "b", 1);
	b.block_at_ms = 100;
	b.block_ms = 400;
	run_pair(&a, &b, 150, 1000, 800);
	ck_assert_int_eq(atomic_load(&b.dead), 0);
	ck_assert_uint_ge(b.stats.heartbeats_received, 15);
}
END_TEST

/* a's loop is held for 400 ms: its heartbeats leave from their own thread. */
START_TEST(busy_sender_keeps_sending)
{
	struct node a, b;

	node_init(&a, "a", 1);
	node_init(&b, "b", 1);
	a.block_at_ms = 100;
	a.block_ms = 400;
	run_pair(&a, &b, 150, 1000, 800);
	ck_assert_int_eq(atomic_load(&b.dead), 0);
	ck_assert_uint_ge(a.stats.heartbeats_sent, 25);
}
END_TEST

/* a's loop is stuck far beyond the stall limit (300 ms): a goes silent and
 * b calls it dead, no sooner than stall limit + timeout after the hang. */
START_TEST(hung_sender_goes_silent)
{
	struct node a, b;
	uint64_t hung_at, dead_at;

	node_init(&a, "a", 1);
	node_init(&b, "b", 1);
	a.block_at_ms = 100;
	a.block_ms = 1500;
	run_pair(&a, &b, 150, 300, 1800);
	ck_assert_int_ge(atomic_load(&b.dead), 1);
	hung_at = a.t0_ns + 100 * 1000000ull;
	dead_at = atomic_load(&b.dead_at_ns);
	fprintf(stderr, "# dead %.0f ms after the hang\n", (double)(dead_at - hung_at) / 1e6);
	/* The loop's last sign of life may be up to one stamp (10 ms) before
	 * the hang, the last heartbeat up to one interval (20 ms) before the
	 * stall limit ran out. */
	ck_assert_uint_ge(dead_at - hung_at, (300 - 20 + 150 - 10) * 1000000ull);
}
END_TEST

/* The split-brain guard on heartbeats. */
START_TEST(generations)
{
	struct node a, b;

	/* a is older than b: refused, and b sees a as dead. */
	node_init(&a, "a", 1);
	node_init(&b, "b", 2);
	run_pair(&a, &b, 150, 1000, 500);
	ck_assert_uint_eq(b.stats.heartbeats_received, 0);
	ck_assert_uint_ge(b.stats.heartbeats_refused, 5);
	ck_assert_int_ge(atomic_load(&b.dead), 1);
	/* a is newer than b: reported to b's engine, and counted as alive. */
	node_init(&a, "a", 3);
	node_init(&b, "b", 2);
	run_pair(&a, &b, 150, 1000, 500);
	ck_assert_str_eq(b.newer_node, "a");
	ck_assert_uint_eq(b.newer_gen, 3);
	ck_assert_int_eq(atomic_load(&b.dead), 0);
}
END_TEST

/* Another node than the one watched, and datagrams that are not heartbeats. */
START_TEST(strangers_are_dropped)
{
	struct node a, b;
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	node_init(&a, "x", 1);          /* b watches "a" */
	node_init(&b, "b", 1);
	node_addr(&b, &sa);
	ck_assert_int_ge(fd, 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(sendto(fd, "\xff\xff\xff garbage", 12, 0,
					(struct sockaddr *)&sa, sizeof(sa)), 12);
	close(fd);
	run_pair(&a, &b, 150, 1000, 500);
	ck_assert_uint_eq(b.stats.heartbeats_received, 0);
	ck_assert_uint_ge(b.stats.heartbeats_refused, 5 + 5);
	ck_assert_int_ge(atomic_load(&b.dead), 1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("hb");
	TCase *tc = tcase_create("hb");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, steady);
	tcase_add_test(tc, busy_receiver_is_not_fooled);
	tcase_add_test(tc, busy_sender_keeps_sending);
	tcase_add_test(tc, hung_sender_goes_silent);
	tcase_add_test(tc, generations);
	tcase_add_test(tc, strangers_are_dropped);
	suite_add_tcase(s, tc);
	return colo_test_main(s);
}
