/*
 * test_hb.c: heartbeats between two nodes, each on its own loop and thread.
 *
 * What must hold: a node whose own loop was busy does not take its peer's
 * queued heartbeats for silence; a node whose loop is busy keeps sending
 * (heartbeats have their own thread) until the loop has been stuck for the
 * stall limit, and then goes silent so the peer sees it dead; the
 * generation guard refuses older peers and reports newer ones.  With a key:
 * genuine heartbeats keep the peer alive, and forged ones (no MAC, a wrong
 * key, a field changed) and replayed ones change nothing (the watch fires,
 * no newer generation is reported) and are counted; a restarted sender is
 * believed again.
 *
 * No assertion here is on time: each run lasts until what it waits for has
 * happened (counters, a long callback over, the peer declared dead), with
 * a deadline far beyond it, and the assertions are on what happened.  A
 * loop held by a sleep in a callback is the workload, not a wait.  How soon
 * a hung peer is declared dead is printed as a '#' line; heartbeats per
 * interval on a real pair are a colo-pair-bench figure.
 */
#include "config.h"

#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "colo.pb-c.h"
#include "hb.h"
#include "hbcap.h"
#include "stats.h"
#include "testutil.h"

#define DEADLINE_MS 20000       /* a run not over by then fails its test */

struct node;

/* What a run waits for; evaluated on b's loop (b watches a). */
typedef bool (*until_fn)(struct node *a, struct node *b);

struct node {
	uv_loop_t loop;
	struct colo_hb *hb;
	struct colo_stats stats;
	struct node *peer;
	uv_timer_t block, check;
	uv_async_t io;                 /* the long callback runs as I/O */
	uint32_t block_at_ms, block_ms;
	bool hold_until_dead;          /* hold the loop until the peer calls us dead */
	until_fn until;                /* set on the watcher only */
	atomic_bool *done;             /* shared by both nodes of a run */
	uint64_t deadline_ns;
	pthread_t th;
	atomic_int dead;               /* peer_dead calls */
	_Atomic uint64_t dead_at_ns;
	atomic_int phase;              /* long callback: 0 before, 1 during, 2 over */
	_Atomic uint64_t held_at_ns;
	_Atomic uint64_t sent_while_held;       /* by this node, while held */
	_Atomic uint64_t peer_sent_while_held;  /* by the peer, while this one was held */
	atomic_int called_dead_while_held;
	bool timed_out;
	bool mark_set;                 /* the watcher's count when the hold was over */
	uint64_t mark;
	char newer_node[64];
	uint64_t newer_gen;
	/* Datagrams a test sends to this node every 10 ms (run_spray). */
	uv_timer_t spray;
	const struct dgram *spray_list;
	size_t spray_n;
	bool spray_repeat;
	int spray_fd;
	struct sockaddr_in spray_to;
	uint64_t sprayed;
};

static uint64_t sent(struct node *n)
{
	return __atomic_load_n(&n->stats.heartbeats_sent, __ATOMIC_RELAXED);
}

/* peer_dead calls on n (a function, so that failures read well) */
static int deaths(struct node *n)
{
	return atomic_load(&n->dead);
}

static void on_peer_dead(void *ud)
{
	struct node *n = ud;

	/* Before counting: a peer held until it is called dead is still held. */
	if (atomic_load(&n->peer->phase) == 1)
		atomic_store(&n->peer->called_dead_while_held, 1);
	if (atomic_load(&n->dead) == 0)
		atomic_store(&n->dead_at_ns, colo_now_ns());
	atomic_fetch_add(&n->dead, 1);
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
	uint64_t s0 = sent(n), p0 = sent(n->peer);

	atomic_store(&n->held_at_ns, colo_now_ns());
	atomic_store(&n->phase, 1);
	if (n->hold_until_dead) {
		while (!atomic_load(&n->peer->dead) && colo_now_ns() < n->deadline_ns)
			usleep(2000);
	} else {
		usleep(n->block_ms * 1000u);
	}
	atomic_store(&n->sent_while_held, sent(n) - s0);
	atomic_store(&n->peer_sent_while_held, sent(n->peer) - p0);
	atomic_store(&n->phase, 2);
}

static void on_block(uv_timer_t *t)
{
	struct node *n = t->data;

	uv_async_send(&n->io);
}

/* Every 5 ms: the watcher decides when the run is over; both stop then. */
static void on_check(uv_timer_t *t)
{
	struct node *n = t->data;

	if (n->until && !atomic_load(n->done)) {
		if (n->until(n->peer, n)) {
			atomic_store(n->done, true);
		} else if (colo_now_ns() >= n->deadline_ns) {
			n->timed_out = true;
			atomic_store(n->done, true);
		}
	}
	if (!atomic_load(n->done))
		return;
	colo_hb_stop(n->hb);
	uv_close((uv_handle_t *)&n->block, NULL);
	uv_close((uv_handle_t *)&n->check, NULL);
	uv_close((uv_handle_t *)&n->io, NULL);
	uv_close((uv_handle_t *)&n->spray, NULL);
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
	uv_timer_init(&n->loop, &n->check);
	uv_async_init(&n->loop, &n->io, on_io);
	uv_timer_init(&n->loop, &n->spray);
	n->block.data = n->check.data = n->io.data = n->spray.data = n;
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
	if (n->block_ms || n->hold_until_dead)
		uv_timer_start(&n->block, on_block, n->block_at_ms, 0);
	uv_timer_start(&n->check, on_check, 5, 5);
	ck_assert_int_eq(pthread_create(&n->th, NULL, node_main, n), 0);
}

static void node_join(struct node *n)
{
	pthread_join(n->th, NULL);
	ck_assert_int_eq(uv_loop_close(&n->loop), 0);
}

/*
 * a sends to b every 20 ms; b watches a with a timeout of timeout_ms.
 * Either loop may be held for a while.  The run lasts until until(a, b).
 */
static void run_pair(struct node *a, struct node *b, uint32_t timeout_ms, uint32_t stall_ms,
		     until_fn until, const char *what)
{
	struct sockaddr_in sa;
	atomic_bool done = false;

	a->peer = b;
	b->peer = a;
	a->done = b->done = &done;
	b->until = until;
	a->deadline_ns = b->deadline_ns = colo_now_ns() + (uint64_t)DEADLINE_MS * 1000000ull;
	node_addr(b, &sa);
	colo_hb_send_to(a->hb, (struct sockaddr *)&sa, 20, stall_ms);
	colo_hb_watch(b->hb, "a", timeout_ms);
	node_run(a);
	node_run(b);
	node_join(a);
	node_join(b);
	ck_assert_msg(!b->timed_out, "not within %d ms: %s (b: %" PRIu64 " received, %"
		      PRIu64 " refused, %d dead; a: %" PRIu64 " sent)", DEADLINE_MS, what,
		      b->stats.heartbeats_received, b->stats.heartbeats_refused,
		      deaths(b), a->stats.heartbeats_sent);
}

static bool received_20(struct node *a, struct node *b)
{
	(void)a;
	return b->stats.heartbeats_received >= 20;
}

START_TEST(steady)
{
	struct node a, b;

	node_init(&a, "a", 1);
	node_init(&b, "b", 1);
	run_pair(&a, &b, 150, 1000, received_20, "20 heartbeats received");
	ck_assert_int_eq(deaths(&b), 0);
	ck_assert_uint_ge(a.stats.heartbeats_sent, 20);
	ck_assert_uint_eq(b.stats.heartbeats_refused, 0);
}
END_TEST

/* The long callback is over, and b received 5 heartbeats since. */
static bool held_and_after(struct node *held, struct node *b)
{
	if (atomic_load(&held->phase) != 2)
		return false;
	if (!b->mark_set) {
		b->mark_set = true;
		b->mark = b->stats.heartbeats_received;
	}
	return b->stats.heartbeats_received >= b->mark + 5;
}

static bool b_held_and_after(struct node *a, struct node *b)
{
	(void)a;
	return held_and_after(b, b);
}

static bool a_held_and_after(struct node *a, struct node *b)
{
	return held_and_after(a, b);
}

/* b's own loop is held for 400 ms with a 150 ms timeout: a's heartbeats
 * wait in b's socket, and b must read them before calling a dead. */
START_TEST(busy_receiver_is_not_fooled)
{
	struct node a, b;

	node_init(&a, "a", 1);
	node_init(&b, "b", 1);
	b.block_at_ms = 100;
	b.block_ms = 400;
	run_pair(&a, &b, 150, 1000, b_held_and_after, "b's loop held, then 5 heartbeats");
	/* a sent while b was held: those waited in b's socket, and b read
	 * them before its dead timer could call a dead. */
	ck_assert_msg(atomic_load(&b.peer_sent_while_held) > 0, "a sent nothing while b was held");
	ck_assert_int_eq(deaths(&b), 0);
	ck_assert_uint_ge(b.stats.heartbeats_received, 5);
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
	run_pair(&a, &b, 150, 1000, a_held_and_after, "a's loop held, then 5 heartbeats");
	ck_assert_int_eq(deaths(&b), 0);
	ck_assert_msg(atomic_load(&a.sent_while_held) > 0, "a sent nothing while its loop was "
		      "held");
}
END_TEST

static bool a_called_dead(struct node *a, struct node *b)
{
	return atomic_load(&b->dead) > 0 && atomic_load(&a->phase) == 2;
}

/* a's loop stays stuck (until b calls it dead; the stall limit is 500 ms):
 * a keeps sending for a while, then goes silent, and b calls it dead while
 * it is still stuck. */
START_TEST(hung_sender_goes_silent)
{
	struct node a, b;
	uint64_t held_at, dead_at;

	node_init(&a, "a", 1);
	node_init(&b, "b", 1);
	a.block_at_ms = 100;
	a.hold_until_dead = true;
	run_pair(&a, &b, 150, 500, a_called_dead, "b calls the hung a dead");
	ck_assert_int_ge(deaths(&b), 1);
	ck_assert_msg(atomic_load(&a.called_dead_while_held), "a was called dead, but not "
		      "while its loop was stuck");
	/* Not silent at once: the stall limit, not the hang, silences it. */
	ck_assert_msg(atomic_load(&a.sent_while_held) > 0, "a went silent at once");
	held_at = atomic_load(&a.held_at_ns);
	dead_at = atomic_load(&b.dead_at_ns);
	fprintf(stderr, "# dead %.0f ms after the hang (stall limit 500 ms + timeout 150 ms), "
		"%" PRIu64 " heartbeats sent while hung\n", (double)(dead_at - held_at) / 1e6,
		atomic_load(&a.sent_while_held));
}
END_TEST

static bool refused_and_dead(struct node *a, struct node *b)
{
	(void)a;
	return b->stats.heartbeats_refused >= 10 && atomic_load(&b->dead) > 0;
}

static bool newer_seen(struct node *a, struct node *b)
{
	(void)a;
	return b->newer_gen != 0 && b->stats.heartbeats_received >= 20;
}

/* The split-brain guard on heartbeats. */
START_TEST(generations)
{
	struct node a, b;

	/* a is older than b: refused, and b sees a as dead. */
	node_init(&a, "a", 1);
	node_init(&b, "b", 2);
	run_pair(&a, &b, 150, 1000, refused_and_dead, "10 refused and a called dead");
	ck_assert_uint_eq(b.stats.heartbeats_received, 0);
	ck_assert_uint_ge(b.stats.heartbeats_refused, 10);
	ck_assert_int_ge(deaths(&b), 1);
	/* a is newer than b: reported to b's engine, and counted as alive
	 * (20 heartbeats take longer than the timeout). */
	node_init(&a, "a", 3);
	node_init(&b, "b", 2);
	run_pair(&a, &b, 150, 1000, newer_seen, "the newer generation reported, 20 received");
	ck_assert_str_eq(b.newer_node, "a");
	ck_assert_uint_eq(b.newer_gen, 3);
	ck_assert_int_eq(deaths(&b), 0);
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
	run_pair(&a, &b, 150, 1000, refused_and_dead, "10 refused and a called dead");
	ck_assert_uint_eq(b.stats.heartbeats_received, 0);
	ck_assert_uint_ge(b.stats.heartbeats_refused, 5 + 5);
	ck_assert_int_ge(deaths(&b), 1);
}
END_TEST

/* ---- authentication ---- */

static const uint8_t key1[COLO_PSK_BYTES] = { 0x11, 0x11, 0x11, 0x11, 1, 2, 3, 4 };
static const uint8_t key2[COLO_PSK_BYTES] = { 0x22, 0x22, 0x22, 0x22, 1, 2, 3, 4 };

static void set_key(struct node *n, const uint8_t *key)
{
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(colo_hb_set_key(n->hb, key, &err) == 0, "%s", err.msg);
}

/* Both nodes hold the key: a keeps b's watch armed. */
START_TEST(keyed_steady)
{
	struct node a, b;

	node_init(&a, "a", 1);
	node_init(&b, "b", 1);
	set_key(&a, key1);
	set_key(&b, key1);
	run_pair(&a, &b, 150, 1000, received_20, "20 authenticated heartbeats received");
	ck_assert_int_eq(deaths(&b), 0);
	ck_assert_uint_eq(b.stats.heartbeats_refused, 0);
}
END_TEST

/* b holds a key, a has none or another: a's heartbeats keep nothing alive. */
START_TEST(keyed_refuses_unkeyed_and_wrong_key)
{
	struct node a, b;

	node_init(&a, "a", 1);
	node_init(&b, "b", 1);
	set_key(&b, key1);
	run_pair(&a, &b, 150, 1000, refused_and_dead, "10 refused and a called dead");
	ck_assert_uint_eq(b.stats.heartbeats_received, 0);
	ck_assert_int_ge(deaths(&b), 1);
	node_init(&a, "a", 1);
	node_init(&b, "b", 1);
	set_key(&a, key2);
	set_key(&b, key1);
	run_pair(&a, &b, 150, 1000, refused_and_dead, "10 refused and a called dead");
	ck_assert_uint_eq(b.stats.heartbeats_received, 0);
	ck_assert_int_ge(deaths(&b), 1);
}
END_TEST

/* A captured heartbeat with generation and seq changed; its MAC kept. */
static void tamper(const struct dgram *in, uint64_t gen, uint64_t seq_add, struct dgram *out)
{
	Colo__Heartbeat *msg = colo__heartbeat__unpack(NULL, in->len, in->data);

	ck_assert_ptr_nonnull(msg);
	ck_assert_uint_gt(msg->mac.len, 0);
	msg->generation = gen;
	msg->seq += seq_add;
	out->len = colo__heartbeat__get_packed_size(msg);
	ck_assert_uint_le(out->len, sizeof(out->data));
	colo__heartbeat__pack(msg, out->data);
	colo__heartbeat__free_unpacked(msg, NULL);
}

static void on_spray(uv_timer_t *t)
{
	struct node *n = t->data;

	if (atomic_load(n->done) || (n->sprayed && !n->spray_repeat))
		return;
	for (size_t i = 0; i < n->spray_n; i++)
		if (sendto(n->spray_fd, n->spray_list[i].data, n->spray_list[i].len, 0,
			   (struct sockaddr *)&n->spray_to, sizeof(n->spray_to)) ==
		    (ssize_t)n->spray_list[i].len)
			n->sprayed++;
}

/* b watches "a" (timeout 150 ms) and is sent list every 10 ms (repeat) or
 * once, until until(b, b). */
static void run_spray(struct node *b, const struct dgram *list, size_t n, bool repeat,
		      until_fn until, const char *what)
{
	atomic_bool done = false;

	b->peer = b;
	b->done = &done;
	b->until = until;
	b->deadline_ns = colo_now_ns() + (uint64_t)DEADLINE_MS * 1000000ull;
	b->spray_list = list;
	b->spray_n = n;
	b->spray_repeat = repeat;
	b->spray_fd = socket(AF_INET, SOCK_DGRAM, 0);
	ck_assert_int_ge(b->spray_fd, 0);
	node_addr(b, &b->spray_to);
	colo_hb_watch(b->hb, "a", 150);
	uv_timer_start(&b->spray, on_spray, 0, 10);
	node_run(b);
	node_join(b);
	close(b->spray_fd);
	ck_assert_msg(!b->timed_out, "not within %d ms: %s (b: %" PRIu64 " received, %"
		      PRIu64 " refused, %d dead, %" PRIu64 " sent to it)", DEADLINE_MS, what,
		      b->stats.heartbeats_received, b->stats.heartbeats_refused,
		      deaths(b), b->sprayed);
}

static bool forty_refused_and_dead(struct node *a, struct node *b)
{
	(void)a;
	return b->stats.heartbeats_refused >= 40 && atomic_load(&b->dead) > 0;
}

/*
 * Forgeries naming a newer generation, sent every 10 ms: unsigned, signed
 * with another key, and genuine ones with the generation (and the seq)
 * changed.  None keeps a alive, none reports the newer generation.
 */
START_TEST(forged_heartbeats_change_nothing)
{
	struct dgram list[4], genuine;
	struct node b;

	hb_capture("a", 1, 5, NULL, &list[0]);
	hb_capture("a", 1, 5, key2, &list[1]);
	hb_capture("a", 1, 1, key1, &genuine);
	tamper(&genuine, 5, 0, &list[2]);
	tamper(&genuine, 5, 1000, &list[3]);
	node_init(&b, "b", 1);
	set_key(&b, key1);
	run_spray(&b, list, 4, true, forty_refused_and_dead, "40 refused and a called dead");
	ck_assert_uint_eq(b.stats.heartbeats_received, 0);
	ck_assert_uint_ge(b.stats.heartbeats_refused, 40);
	ck_assert_int_ge(deaths(&b), 1);
	ck_assert_uint_eq(b.newer_gen, 0);
	ck_assert_str_eq(b.newer_node, "");
}
END_TEST

static bool ten_refused_and_dead(struct node *a, struct node *b)
{
	(void)a;
	return b->stats.heartbeats_refused >= 10 && atomic_load(&b->dead) > 0;
}

/* One genuine heartbeat, then the same datagram again every 10 ms: it is
 * believed once, and a is called dead all the same. */
START_TEST(replayed_heartbeat_changes_nothing)
{
	struct dgram genuine;
	struct node b;

	hb_capture("a", 1, 1, key1, &genuine);
	node_init(&b, "b", 1);
	set_key(&b, key1);
	run_spray(&b, &genuine, 1, true, ten_refused_and_dead, "10 refused and a called dead");
	ck_assert_uint_eq(b.stats.heartbeats_received, 1);
	ck_assert_uint_ge(b.stats.heartbeats_refused, 10);
	ck_assert_int_ge(deaths(&b), 1);
}
END_TEST

static bool two_received_one_refused(struct node *a, struct node *b)
{
	(void)a;
	return b->stats.heartbeats_received >= 2 && b->stats.heartbeats_refused >= 1;
}

/* a restarts (a new sender, a new seq base): believed; then a heartbeat of
 * the old a comes late: refused. */
START_TEST(restarted_sender_is_believed)
{
	struct dgram list[3];
	struct node b;

	hb_capture("a", 1, 1, key1, &list[0]);
	hb_capture("a", 1, 1, key1, &list[1]);
	list[2] = list[0];
	node_init(&b, "b", 1);
	set_key(&b, key1);
	run_spray(&b, list, 3, false, two_received_one_refused,
		  "the restarted sender believed, the old one refused");
	ck_assert_uint_eq(b.stats.heartbeats_received, 2);
	ck_assert_uint_eq(b.stats.heartbeats_refused, 1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("hb");
	TCase *tc = tcase_create("hb");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, steady);
	tcase_add_test(tc, busy_receiver_is_not_fooled);
	tcase_add_test(tc, busy_sender_keeps_sending);
	tcase_add_test(tc, hung_sender_goes_silent);
	tcase_add_test(tc, generations);
	tcase_add_test(tc, strangers_are_dropped);
	tcase_add_test(tc, keyed_steady);
	tcase_add_test(tc, keyed_refuses_unkeyed_and_wrong_key);
	tcase_add_test(tc, forged_heartbeats_change_nothing);
	tcase_add_test(tc, replayed_heartbeat_changes_nothing);
	tcase_add_test(tc, restarted_sender_is_believed);
	suite_add_tcase(s, tc);
	return colo_test_main(s);
}
