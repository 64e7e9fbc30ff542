/*
 * test_repl.c: peers that break the replication protocol (DESIGN.md §4).
 *
 * A real colo-primary and colo-secondary talk through a man in the middle
 * run by the test: a proxy thread that relays both ways, follows what the
 * secondary says (its Hello, then be32 COLO messages) and, at a chosen
 * moment, stops relaying and sends one side bytes out of turn.  Each side
 * must refuse them with a protocol error that names the peer and says what
 * was wrong, drop the connection, and keep what it had: the secondary its
 * last committed checkpoint (a failover then serves it, verified page by
 * page), the primary its running guest (degraded, never stopped).
 *
 * Each test runs in its own process (Check's fork mode) and stops its
 * daemons by pid.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "pair.h"
#include "testutil.h"

enum inject {
	S_SEND_UNASKED,         /* secondary, protected: VMSTATE_SEND with no REQUEST */
	S_GARBAGE_RAM,          /* secondary: REQUEST, then SEND + bytes that are no stream */
	S_HUGE_SIZE,            /* secondary: a RAM part, then VMSTATE_SIZE of 4 GiB */
	P_REPLY_IN_SYNC,        /* primary, syncing: CHECKPOINT_REPLY */
	P_LOADED_UNASKED,       /* primary, protected: VMSTATE_LOADED with none in flight */
};

struct proxy {
	int lfd;
	uint16_t port;              /* where the primary connects */
	uint16_t to;                /* the secondary's port */
	enum inject mode;
	pthread_t th;
	atomic_bool stop;
	atomic_bool injected;
	/* what the secondary said so far */
	uint8_t sp[64];
	size_t sp_len;
	bool hello_seen, ready_seen, reply_seen;
	bool asked;                 /* our CHECKPOINT_REQUEST went */
	/* the RAM section's id, from the sync's START section */
	uint8_t ps_tail[8];
	int64_t ram_id;
};

static bool write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		len -= (size_t)w;
	}
	return true;
}

static bool send_msg(int fd, uint32_t m)
{
	uint8_t b[4];

	colo_store_be32(b, m);
	return write_all(fd, b, 4);
}

/* Follow the secondary's side: a framed Hello, then be32 messages. */
static void follow_secondary(struct proxy *px, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		px->sp[px->sp_len++] = p[i];
		if (!px->hello_seen) {
			if (px->sp_len >= 4 && px->sp_len == 4 + colo_load_be32(px->sp)) {
				px->hello_seen = true;
				px->sp_len = 0;
			} else if (px->sp_len == sizeof(px->sp)) {
				px->sp_len = 4;   /* a long Hello: keep its length only */
				colo_store_be32(px->sp, colo_load_be32(px->sp) - (uint32_t)(sizeof(px->sp) - 4));
			}
			continue;
		}
		if (px->sp_len < 4)
			continue;
		if (colo_load_be32(px->sp) == 0)
			px->ready_seen = true;
		else if (colo_load_be32(px->sp) == 2 && px->ready_seen)
			px->reply_seen = true;
		px->sp_len = 0;
	}
}

/* Find the RAM START section in the sync: 0x01 be32 id 0x03 "ram". */
static void follow_primary(struct proxy *px, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n && px->ram_id < 0; i++) {
		memmove(px->ps_tail, px->ps_tail + 1, sizeof(px->ps_tail) - 1);
		px->ps_tail[sizeof(px->ps_tail) - 1] = p[i];
		if (px->ps_tail[0] == 0x01 && px->ps_tail[5] == 3 &&
		    memcmp(px->ps_tail + 6, "ra", 2) == 0 && i + 1 < n && p[i + 1] == 'm')
			px->ram_id = colo_load_be32(px->ps_tail + 1);
	}
}

/* Once the moment came, what goes where; true when done injecting. */
static bool inject(struct proxy *px, int pfd, int sfd)
{
	uint8_t b[64];

	switch (px->mode) {
	case S_SEND_UNASKED:
		if (!px->ready_seen)
			return false;
		send_msg(sfd, 3);
		return true;
	case S_GARBAGE_RAM:
		if (!px->ready_seen)
			return false;
		if (!px->reply_seen) {
			if (!px->asked)
				px->asked = send_msg(sfd, 1);
			return false;
		}
		send_msg(sfd, 3);
		memset(b, 0x99, sizeof(b));
		write_all(sfd, b, sizeof(b));
		return true;
	case S_HUGE_SIZE:
		if (!px->ready_seen || px->ram_id < 0)
			return false;
		if (!px->reply_seen) {
			if (!px->asked)
				px->asked = send_msg(sfd, 1);
			return false;
		}
		/* VMSTATE_SEND, RAM END section with just EOS, footer, EOF. */
		colo_store_be32(b, 3);
		b[4] = 0x03;
		colo_store_be32(b + 5, (uint32_t)px->ram_id);
		memset(b + 9, 0, 8);
		b[16] = 0x10;                        /* be64 EOS */
		b[17] = 0x7e;
		colo_store_be32(b + 18, (uint32_t)px->ram_id);
		b[22] = 0x00;                        /* EOF */
		colo_store_be32(b + 23, 4);                 /* VMSTATE_SIZE */
		colo_store_be32(b + 27, 1);
		colo_store_be32(b + 31, 0);                 /* be64 4 GiB */
		write_all(sfd, b, 35);
		return true;
	case P_REPLY_IN_SYNC:
		if (!px->hello_seen)
			return false;
		send_msg(pfd, 2);
		return true;
	case P_LOADED_UNASKED:
		if (!px->ready_seen)
			return false;
		send_msg(pfd, 6);
		return true;
	}
	return false;
}

static void *proxy_main(void *arg)
{
	struct proxy *px = arg;
	struct sockaddr_in sa;
	uint8_t buf[65536];
	int pfd = -1, sfd = -1;
	bool blocked = false;

	for (;;) {
		struct pollfd pl = { px->lfd, POLLIN, 0 };

		if (atomic_load(&px->stop))
			goto out;
		if (poll(&pl, 1, 50) > 0)
			break;
	}
	pfd = accept(px->lfd, NULL, NULL);
	/* One primary only: a reconnect finds no one. */
	close(px->lfd);
	px->lfd = -1;
	sfd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(px->to);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (pfd < 0 || sfd < 0 || connect(sfd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		goto out;
	while (!atomic_load(&px->stop)) {
		struct pollfd pl[2] = { { pfd, POLLIN, 0 }, { sfd, POLLIN, 0 } };
		ssize_t n;

		if (poll(pl, 2, 50) < 0 && errno != EINTR)
			break;
		if (pl[0].revents) {
			n = read(pfd, buf, sizeof(buf));
			if (n <= 0)
				break;
			if (!blocked) {
				follow_primary(px, buf, (size_t)n);
				write_all(sfd, buf, (size_t)n);
			}
		}
		if (pl[1].revents) {
			n = read(sfd, buf, sizeof(buf));
			if (n <= 0)
				break;
			if (!blocked)
				write_all(pfd, buf, (size_t)n);
			follow_secondary(px, buf, (size_t)n);
		}
		/* From the moment on, nothing more is relayed either way. */
		if (!atomic_load(&px->injected)) {
			bool moment = px->mode == P_REPLY_IN_SYNC ? px->hello_seen :
				      px->ready_seen;

			blocked = blocked || moment;
			if (moment && inject(px, pfd, sfd))
				atomic_store(&px->injected, true);
		}
	}
out:
	if (pfd >= 0)
		close(pfd);
	if (sfd >= 0)
		close(sfd);
	return NULL;
}

static void proxy_start(struct proxy *px, enum inject mode, uint16_t to)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int one = 1;

	memset(px, 0, sizeof(*px));
	px->mode = mode;
	px->to = to;
	px->ram_id = -1;
	px->lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(px->lfd, 0);
	setsockopt(px->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(px->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(px->lfd, 4), 0);
	ck_assert_int_eq(getsockname(px->lfd, (struct sockaddr *)&sa, &len), 0);
	px->port = ntohs(sa.sin_port);
	ck_assert_int_eq(pthread_create(&px->th, NULL, proxy_main, px), 0);
}

static void proxy_stop(struct proxy *px)
{
	atomic_store(&px->stop, true);
	pthread_join(px->th, NULL);
	if (px->lfd >= 0)
		close(px->lfd);
}

/* A pair through the proxy: b listens on its own port, a connects to px. */
static void start_through(struct proc *a, struct proc *b, struct proxy *px,
			  enum inject mode)
{
	char listen[32], peer[32];
	uint16_t port = pair_free_port();

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
	proxy_start(px, mode, port);
	snprintf(peer, sizeof(peer), "127.0.0.1:%u", px->port);
	proc_start(b, pair_bin("colo-secondary"), "b", "--guest", "memtouch",
		   "--listen", listen, "--ram-mb", "16", "--heartbeat-timeout-ms", "300",
		   NULL);
	{
		struct wait_arg w = { b, 0, "listening on" };

		ck_assert(wait_for(cond_log, &w, 10000));
	}
	/* A long interval: after the sync nothing but what the proxy sends. */
	proc_start(a, pair_bin("colo-primary"), "a", "--guest", "memtouch",
		   "--peer", peer, "--ram-mb", "16", "--checkpoint-interval-ms", "60000",
		   "--heartbeat-timeout-ms", "300", NULL);
}

static void expect_log(struct proc *p, const char *text)
{
	struct wait_arg w = { p, 0, text };

	if (!wait_for(cond_log, &w, 20000)) {
		proc_dump_log(p);
		ck_abort_msg("%s never logged \"%s\"", p->name, text);
	}
}

struct state_arg {
	struct proc *p;
	const char *state;
};

static bool cond_state(void *ud)
{
	struct state_arg *a = ud;
	char state[64];

	return ctl_status(a->p, NULL, state, sizeof(state), NULL, NULL) &&
	       strcmp(state, a->state) == 0;
}

static void expect_state(struct proc *p, const char *state)
{
	struct state_arg a = { p, state };

	if (!wait_for(cond_state, &a, 20000)) {
		proc_dump_log(p);
		ck_abort_msg("%s never got to state %s", p->name, state);
	}
}

/*
 * The secondary refused what it was sent and kept its committed sync:
 * waiting, checkpoint 0 committed; a failover serves it, verified.
 */
static void secondary_kept_its_state(struct proc *a, struct proc *b)
{
	Colo__ControlResponse *r;
	uint64_t last = 99, checked = 0;
	char why[512];

	expect_state(b, "waiting");
	ck_assert(ctl_status(b, NULL, NULL, 0, &last, NULL));
	ck_assert_uint_eq(last, 0);
	ck_assert_msg(!proc_wait(a, 0), "the primary died");
	r = ctl(b, COLO__CONTROL_REQUEST__CMD_FAILOVER, 0, NULL, 0);
	ck_assert_ptr_nonnull(r);
	ck_assert_msg(r->ok, "%s", r->error);
	colo__control_response__free_unpacked(r, NULL);
	ck_assert(wait_for(cond_primary, b, 5000));
	ck_assert_msg(ctl_verify_clean(b, &checked, why, sizeof(why)), "%s", why);
	ck_assert_uint_eq(checked, 16u << 20 >> 12);
}

START_TEST(secondary_refuses_send_without_request)
{
	struct proc a, b;
	struct proxy px;

	start_through(&a, &b, &px, S_SEND_UNASKED);
	expect_log(&b, "protocol error from a (127.0.0.1:");
	expect_log(&b, "unexpected message 3 (VMSTATE_SEND) while protected: expected "
		   "CHECKPOINT_REQUEST");
	secondary_kept_its_state(&a, &b);
	proc_stop(&a);
	ck_assert_int_eq(proc_stop(&b), 0);
	proxy_stop(&px);
}
END_TEST

START_TEST(secondary_refuses_a_checkpoint_that_is_no_stream)
{
	struct proc a, b;
	struct proxy px;

	start_through(&a, &b, &px, S_GARBAGE_RAM);
	expect_log(&b, "protocol error from a (127.0.0.1:");
	expect_log(&b, ": bad checkpoint: ");
	expect_log(&b, "keeping the last committed checkpoint");
	secondary_kept_its_state(&a, &b);
	proc_stop(&a);
	ck_assert_int_eq(proc_stop(&b), 0);
	proxy_stop(&px);
}
END_TEST

START_TEST(secondary_refuses_a_lying_device_size)
{
	struct proc a, b;
	struct proxy px;

	start_through(&a, &b, &px, S_HUGE_SIZE);
	expect_log(&b, "VMSTATE_SIZE of 4294967296 bytes (at most 67108864)");
	secondary_kept_its_state(&a, &b);
	proc_stop(&a);
	ck_assert_int_eq(proc_stop(&b), 0);
	proxy_stop(&px);
}
END_TEST

START_TEST(primary_refuses_reply_during_sync)
{
	struct proc a, b;
	struct proxy px;

	start_through(&a, &b, &px, P_REPLY_IN_SYNC);
	expect_log(&a, "protocol error from b (127.0.0.1:");
	expect_log(&a, "unexpected CHECKPOINT_REPLY (2) while syncing");
	expect_log(&a, "lost secondary b (protocol error): running unprotected");
	/* It serves on, unprotected, and looks for a secondary again. */
	expect_state(&a, "degraded");
	ck_assert_msg(!proc_wait(&a, 0), "the primary died");
	ck_assert_int_eq(proc_stop(&a), 0);
	proc_stop(&b);
	proxy_stop(&px);
}
END_TEST

START_TEST(primary_refuses_loaded_with_nothing_in_flight)
{
	struct proc a, b;
	struct proxy px;

	start_through(&a, &b, &px, P_LOADED_UNASKED);
	expect_log(&a, "unexpected VMSTATE_LOADED (6) while protected, checkpoint idle");
	expect_log(&a, "lost secondary b (protocol error): running unprotected");
	expect_state(&a, "degraded");
	ck_assert_msg(!proc_wait(&a, 0), "the primary died");
	/* The secondary loses its connection but keeps the committed sync. */
	expect_state(&b, "waiting");
	ck_assert_int_eq(proc_stop(&a), 0);
	ck_assert_int_eq(proc_stop(&b), 0);
	proxy_stop(&px);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("repl");
	TCase *tc = tcase_create("out of turn");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, secondary_refuses_send_without_request);
	tcase_add_test(tc, secondary_refuses_a_checkpoint_that_is_no_stream);
	tcase_add_test(tc, secondary_refuses_a_lying_device_size);
	tcase_add_test(tc, primary_refuses_reply_during_sync);
	tcase_add_test(tc, primary_refuses_loaded_with_nothing_in_flight);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
