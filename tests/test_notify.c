/*
 * test_notify.c: what the daemons tell a service manager (node_notify.c).
 *
 * Each daemon gets NOTIFY_SOCKET pointing at a datagram socket of the
 * test's own, and WATCHDOG_USEC, as systemd gives a Type=notify unit with
 * WatchdogSec.  The messages and their order are checked: READY=1 with a
 * STATUS naming role and state once the node serves, STATUS updates as the
 * pair gets protected and checkpoints commit, RELOADING=1 then READY=1
 * around SIGHUP (also when the new file is refused), watchdog pings at
 * about half the watchdog period, and STOPPING=1 last.  A manager that
 * does not read (a full queue) does not stop the node.  Without
 * NOTIFY_SOCKET, the same node sends nothing (nothing would be there to
 * read it: the test checks its log says nothing of it either).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "pair.h"
#include "testutil.h"

struct listener {
	int fd;
	char path[300];
};

static void listen_at(struct listener *l, const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(l->path, sizeof(l->path), "%s/%s", pair_dir(), name);
	ck_assert_uint_lt(strlen(l->path), sizeof(sa.sun_path));
	strcpy(sa.sun_path, l->path);
	l->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(l->fd, 0);
	ck_assert_int_eq(bind(l->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The next message other than a watchdog ping (counted in *pings), within
 * ms; false if none came. */
static bool next_msg(struct listener *l, int ms, char *out, size_t len, int *pings)
{
	double until = now_s() + ms / 1000.0;

	while (now_s() < until) {
		struct timeval tv = { 0, 20000 };
		ssize_t n;

		setsockopt(l->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		n = recv(l->fd, out, len - 1, 0);
		if (n < 0)
			continue;
		out[n] = '\0';
		if (strcmp(out, "WATCHDOG=1") == 0) {
			if (pings)
				(*pings)++;
			continue;
		}
		return true;
	}
	return false;
}

/* Messages until one holds `want` (within ms); fails the test if none does. */
static void expect(struct listener *l, const char *want, int ms, char *got, size_t len,
		   int *pings)
{
	double until = now_s() + ms / 1000.0;

	while (now_s() < until) {
		int left = (int)((until - now_s()) * 1000) + 1;

		if (next_msg(l, left, got, len, pings) && strstr(got, want))
			return;
	}
	ck_abort_msg("%s: no message with '%s' in %d ms", l->path, want, ms);
}

/* How many datagrams a unix socket queues before senders wait. */
static int dgram_qlen(void)
{
	FILE *f = fopen("/proc/sys/net/unix/max_dgram_qlen", "r");
	int n = 0;

	if (f) {
		if (fscanf(f, "%d", &n) != 1)
			n = 0;
		fclose(f);
	}
	return n;
}

static void set_env(const struct listener *l)
{
	setenv("NOTIFY_SOCKET", l->path, 1);
	setenv("WATCHDOG_USEC", "200000", 1);
}

static void unset_env(void)
{
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
}

START_TEST(a_pair_tells_the_service_manager)
{
	struct listener la, lb;
	struct proc a, b;
	char msg[1024], listen[32], file[300];
	int pings = 0;
	double t0;
	FILE *f;

	listen_at(&la, "notify-a");
	listen_at(&lb, "notify-b");
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", pair_free_port());
	snprintf(file, sizeof(file), "%s/b.conf", pair_dir());
	f = fopen(file, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "[replication]\nlisten = %s\n", listen);
	fclose(f);

	set_env(&lb);
	proc_start(&b, pair_bin("colo-secondary"), "b", "--guest", "memtouch", "-c", file,
		   "--ram-mb", "4", NULL);
	/* The first message: READY=1, listening and not yet protecting. */
	ck_assert(next_msg(&lb, 10000, msg, sizeof(msg), NULL));
	ck_assert_msg(strncmp(msg, "READY=1\nSTATUS=secondary waiting, no peer, last "
			      "committed 0, generation ", 63) == 0, "%s", msg);

	set_env(&la);
	proc_start(&a, pair_bin("colo-primary"), "a", "--guest", "memtouch", "--peer", listen,
		   "--ram-mb", "4", "--checkpoint-interval-ms", "50", NULL);
	unset_env();
	ck_assert(next_msg(&la, 10000, msg, sizeof(msg), NULL));
	ck_assert_msg(strncmp(msg, "READY=1\nSTATUS=primary ", 23) == 0, "%s", msg);
	/* Protected, then checkpoints: the STATUS follows, once a second. */
	expect(&la, "STATUS=primary protected, peer ", 10000, msg, sizeof(msg), NULL);
	expect(&lb, "STATUS=secondary protected, peer a (", 10000, msg, sizeof(msg), NULL);
	ck_assert(wait_for(cond_protected, &a, 10000));

	/* Watchdog pings: WATCHDOG_USEC 200 ms, a ping every 100 ms. */
	pings = 0;
	t0 = now_s();
	while (now_s() - t0 < 1.0)
		next_msg(&lb, 100, msg, sizeof(msg), &pings);
	ck_assert_msg(pings >= 6 && pings <= 14, "%d pings in a second", pings);
	ck_assert(proc_log_has(&b, "service manager watchdog: a ping every 100 ms"));

	/* SIGHUP: RELOADING=1 first, READY=1 after, both with the status. */
	proc_signal(&b, SIGHUP);
	ck_assert(next_msg(&lb, 5000, msg, sizeof(msg), NULL));
	ck_assert_msg(strncmp(msg, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0 &&
		      strstr(msg, "\nSTATUS=secondary "), "%s", msg);
	ck_assert(next_msg(&lb, 5000, msg, sizeof(msg), NULL));
	ck_assert_msg(strncmp(msg, "READY=1\nSTATUS=secondary ", 25) == 0, "%s", msg);
	/* A file it refuses: reloading, and ready again with the old one. */
	f = fopen(file, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "[replication]\ncheckpoint-interval-ms = often\n");
	fclose(f);
	proc_signal(&b, SIGHUP);
	ck_assert(next_msg(&lb, 5000, msg, sizeof(msg), NULL));
	ck_assert_msg(strncmp(msg, "RELOADING=1\n", 12) == 0, "%s", msg);
	ck_assert(next_msg(&lb, 5000, msg, sizeof(msg), NULL));
	ck_assert_msg(strncmp(msg, "READY=1\n", 8) == 0, "%s", msg);
	ck_assert(proc_log_has(&b, "keeping the running configuration"));

	/* Nobody read a's socket since it got protected: its queue fills
	 * with pings (ten a second: it may take a moment more on a busy
	 * host), and a goes on (it answers, it did not block on the full
	 * queue), saying so once. */
	if (dgram_qlen() <= 10) {
		struct wait_arg w = { &a, 0, "NOTIFY_SOCKET: the service manager takes no "
				      "notification: Resource temporarily unavailable" };

		ck_assert_msg(wait_for(cond_log, &w, 10000), "a never found its queue full");
		ck_assert(wait_for(cond_protected, &a, 2000));
	}
	while (next_msg(&la, 300, msg, sizeof(msg), NULL))
		;

	/* SIGTERM: STOPPING=1 is the last word. */
	ck_assert_int_eq(proc_stop(&a), 0);
	expect(&la, "STOPPING=1\nSTATUS=primary ", 5000, msg, sizeof(msg), NULL);
	ck_assert(!next_msg(&la, 300, msg, sizeof(msg), NULL));
	while (next_msg(&lb, 300, msg, sizeof(msg), NULL))
		;
	/* b took over when a stopped: it stops as a primary. */
	ck_assert(wait_for(cond_primary, &b, 10000));
	ck_assert_int_eq(proc_stop(&b), 0);
	expect(&lb, "STOPPING=1\nSTATUS=primary ", 5000, msg, sizeof(msg), NULL);
	ck_assert(!next_msg(&lb, 300, msg, sizeof(msg), NULL));
	close(la.fd);
	close(lb.fd);
}
END_TEST

/* No NOTIFY_SOCKET: no watchdog, no notifications. */
START_TEST(without_a_service_manager_nothing)
{
	struct proc b;
	char listen[32];

	unset_env();
	setenv("WATCHDOG_USEC", "200000", 1);
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", pair_free_port());
	proc_start(&b, pair_bin("colo-secondary"), "b", "--guest", "memtouch", "--listen",
		   listen, "--ram-mb", "4", NULL);
	unset_env();
	ck_assert(wait_for(cond_log, &(struct wait_arg){ &b, 0, "listening on" }, 10000));
	ck_assert_int_eq(proc_stop(&b), 0);
	ck_assert(!proc_log_has(&b, "watchdog"));
	ck_assert(!proc_log_has(&b, "NOTIFY_SOCKET"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("notify");
	TCase *tc = tcase_create("notify");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, a_pair_tells_the_service_manager);
	tcase_add_test(tc, without_a_service_manager_nothing);
	suite_add_tcase(s, tc);
	return colo_test_main(s);
}
