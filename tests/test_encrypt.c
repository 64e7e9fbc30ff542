/*
 * test_encrypt.c: `[security] encrypt = yes` between real nodes
 * (docs/security.md), on loopback.
 *
 * A keyed pair talks through a relay run by the test, a thread that copies
 * bytes both ways and keeps the first MiBs the primary sent.  Without
 * encryption those bytes hold the savevm stream in the clear (its magic,
 * the guest's machine name, every checkpoint's colo/checkpoint section);
 * with it none of them may appear, while the pair still checkpoints and a
 * failover still serves what was committed.  Nodes that disagree about
 * encryption refuse each other at the Hello, both saying why.
 *
 * Each test runs in its own process (Check's fork mode) and stops every
 * process it started by pid.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pair.h"
#include "testutil.h"

#define WAIT_MS 20000
#define CAPTURE_MAX (8u << 20)

/* ---- the relay ---- */

struct relay {
	int lfd;
	uint16_t port;              /* where the primary connects */
	uint16_t to;                /* the secondary's port */
	pthread_t th;
	atomic_bool stop;
	uint8_t *cap;               /* what the primary sent, the first MiBs */
	atomic_size_t cap_len;
};

static int connect_to(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static bool copy(int from, int to, struct relay *r, bool capture)
{
	uint8_t buf[65536];
	ssize_t n = read(from, buf, sizeof(buf)), off = 0;

	if (n <= 0)
		return false;
	if (capture) {
		size_t have = atomic_load(&r->cap_len);
		size_t take = have + (size_t)n > CAPTURE_MAX ? CAPTURE_MAX - have : (size_t)n;

		memcpy(r->cap + have, buf, take);
		atomic_store(&r->cap_len, have + take);
	}
	while (off < n) {
		ssize_t w = write(to, buf + off, (size_t)(n - off));

		if (w <= 0)
			return false;
		off += w;
	}
	return true;
}

/* One connection at a time, relayed until either side closes. */
static void *relay_main(void *arg)
{
	struct relay *r = arg;

	while (!atomic_load(&r->stop)) {
		struct pollfd lp = { r->lfd, POLLIN, 0 };
		int p, s;

		if (poll(&lp, 1, 100) <= 0)
			continue;
		p = accept(r->lfd, NULL, NULL);
		if (p < 0)
			continue;
		s = connect_to(r->to);
		while (s >= 0 && !atomic_load(&r->stop)) {
			struct pollfd fds[2] = { { p, POLLIN, 0 }, { s, POLLIN, 0 } };

			if (poll(fds, 2, 100) < 0)
				break;
			if (fds[0].revents && !copy(p, s, r, true))
				break;
			if (fds[1].revents && !copy(s, p, r, false))
				break;
		}
		if (s >= 0)
			close(s);
		close(p);
	}
	return NULL;
}

static void relay_start(struct relay *r, uint16_t to)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int one = 1;

	memset(r, 0, sizeof(*r));
	r->to = to;
	r->cap = malloc(CAPTURE_MAX);
	ck_assert_ptr_nonnull(r->cap);
	r->lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(r->lfd, 0);
	setsockopt(r->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(r->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(r->lfd, 4), 0);
	ck_assert_int_eq(getsockname(r->lfd, (struct sockaddr *)&a, &len), 0);
	r->port = ntohs(a.sin_port);
	ck_assert_int_eq(pthread_create(&r->th, NULL, relay_main, r), 0);
}

static void relay_stop(struct relay *r)
{
	atomic_store(&r->stop, true);
	pthread_join(r->th, NULL);
	close(r->lfd);
	free(r->cap);
}

static int captured_count(struct relay *r, const char *text)
{
	size_t n = atomic_load(&r->cap_len), len = strlen(text);
	int count = 0;

	for (size_t i = 0; i + len <= n; i++)
		if (memcmp(r->cap + i, text, len) == 0)
			count++;
	return count;
}

static bool captured(struct relay *r, const char *text)
{
	return captured_count(r, text) > 0;
}

/* ---- the pair ---- */

struct pair {
	struct proc a, b;
	char listen[32], b_peer[32], a_peer[32];
	struct relay relay;
};

static void start(struct pair *pr, const char *key, const char *enc_a, const char *enc_b)
{
	uint16_t port = pair_free_port();
	const char *bargs[] = { "--guest", "memtouch", "--ram-mb", "16",
				"--heartbeat-timeout-ms", "1000", "--listen", pr->listen,
				"--peer", pr->b_peer, "--psk-file", key, "--encrypt", enc_b,
				NULL };
	const char *aargs[] = { "--guest", "memtouch", "--ram-mb", "16",
				"--memtouch-rate", "2000", "--checkpoint-interval-ms", "50",
				"--heartbeat-timeout-ms", "1000", "--peer", pr->a_peer,
				"--psk-file", key, "--encrypt", enc_a, NULL };
	struct wait_arg w = { &pr->b, 0, "listening on" };

	snprintf(pr->listen, sizeof(pr->listen), "127.0.0.1:%u", port);
	snprintf(pr->b_peer, sizeof(pr->b_peer), "127.0.0.1:%u", pair_free_port());
	relay_start(&pr->relay, port);
	snprintf(pr->a_peer, sizeof(pr->a_peer), "127.0.0.1:%u", pr->relay.port);
	proc_startv(&pr->b, pair_bin("colo-secondary"), "b", bargs);
	if (!wait_for(cond_log, &w, WAIT_MS)) {
		proc_dump_log(&pr->b);
		ck_abort_msg("the secondary did not start");
	}
	proc_startv(&pr->a, pair_bin("colo-primary"), "a", aargs);
}

static void stop(struct pair *pr)
{
	proc_stop(&pr->a);
	proc_stop(&pr->b);
	relay_stop(&pr->relay);
}

static void expect_log(struct proc *p, const char *text)
{
	struct wait_arg w = { p, 0, text };

	if (!wait_for(cond_log, &w, WAIT_MS)) {
		proc_dump_log(p);
		ck_abort_msg("%s never logged \"%s\"", p->name, text);
	}
}

/*
 * _i = 0: a keyed pair without encryption, whose stream the relay reads;
 * _i = 1: with encrypt = yes, where it reads nothing of it.  Both
 * checkpoint, and the encrypted one fails over to what it committed.
 */
START_TEST(encryption_hides_the_stream)
{
	const char *key = pair_keyfile("psk");
	bool enc = _i == 1;
	struct pair pr;
	struct wait_arg w;
	uint64_t checked = 0;
	char why[256];

	memset(&pr, 0, sizeof(pr));
	start(&pr, key, enc ? "yes" : "no", enc ? "yes" : "no");
	if (!proc_wait_state(&pr.b, "protected", WAIT_MS))
		ck_abort_msg("the pair did not get protected");
	w = (struct wait_arg){ &pr.b, 5, NULL };
	if (!wait_for(cond_committed, &w, WAIT_MS)) {
		proc_dump_log(&pr.b);
		ck_abort_msg("no checkpoints through the relay");
	}
	ck_assert_int_eq(proc_log_has(&pr.b, "the connection is encrypted"), enc);
	ck_assert_int_eq(proc_log_has(&pr.a, "the connection is encrypted"), enc);
	/* The sync's magic, the machine name (once in the Hello, which is
	 * always plain, and again in the stream's configuration section),
	 * every checkpoint's section. */
	ck_assert_int_eq(captured(&pr.relay, "QEVM"), !enc);
	ck_assert_int_eq(captured_count(&pr.relay, "colo-memtouch"), enc ? 1 : 2);
	ck_assert_int_eq(captured(&pr.relay, "colo/checkpoint"), !enc);
	ck_assert_uint_gt(atomic_load(&pr.relay.cap_len), 4096);
	if (enc) {
		/* What was committed through the sealed stream is whole. */
		ck_assert_msg(ctl_verify_clean(&pr.b, &checked, why, sizeof(why)), "%s", why);
		ck_assert_uint_gt(checked, 0);
		proc_signal(&pr.a, SIGKILL);
		proc_wait(&pr.a, WAIT_MS);
		if (!wait_for(cond_primary, &pr.b, WAIT_MS)) {
			proc_dump_log(&pr.b);
			ck_abort_msg("b did not take over");
		}
	}
	stop(&pr);
}
END_TEST

START_TEST(nodes_that_disagree_refuse_each_other)
{
	const char *key = pair_keyfile("psk");
	struct pair pr;

	memset(&pr, 0, sizeof(pr));
	start(&pr, key, "no", "yes");
	expect_log(&pr.b, "primary a has encrypt = no, node b yes: both must agree");
	expect_log(&pr.a, "refused us: primary a has encrypt = no, node b yes: both must "
		   "agree");
	ck_assert(!proc_log_has(&pr.b, "loading its full sync"));
	stop(&pr);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("encrypt");
	TCase *tc = tcase_create("encrypt");

	tcase_set_timeout(tc, 90);
	tcase_add_loop_test(tc, encryption_hides_the_stream, 0, 2);
	tcase_add_test(tc, nodes_that_disagree_refuse_each_other);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
