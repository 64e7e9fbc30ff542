/*
 * test_auth.c: peer authentication between real nodes (DESIGN.md §8,
 * docs/security.md, issue 11), on loopback.
 *
 * A keyed pair (colo-primary and colo-secondary with one psk-file) meets
 * what a stranger can do without the key:
 *  - a rogue colo-primary with no key, or with another key, connects to the
 *    secondary while it protects its primary, and while it waits with
 *    committed state and no primary: refused with one line per attempt
 *    naming the rogue's address, counted in `peers refused`; the secondary
 *    keeps its primary (or, waiting, its committed checkpoint and RAM,
 *    compared by verify's block hash) and the real primary is accepted
 *    when it comes back;
 *  - a keyed node and an unkeyed one refuse each other, both saying why;
 *  - forged heartbeats (unsigned, signed with another key, and a genuine
 *    one captured before the pair started, replayed) naming the secondary
 *    with a newer generation do not stop the primary, and are counted in
 *    `heartbeats refused`; a genuine new one does stop it (exit 5), which
 *    shows the forgeries were refused for what they are;
 *  - forged primary heartbeats sent while the primary is stopped do not
 *    hold off the secondary's takeover.
 * Heartbeats are made by the node's own code (hb.c) in the test process,
 * with the key read from the same file, so they are what a node sends.
 *
 * Each test runs in its own process (Check's fork mode) and stops every
 * process it started by pid.
 */
#include "config.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "clock.h"
#include "hb.h"
#include "hbcap.h"
#include "pair.h"
#include "psk.h"
#include "testutil.h"

#define WAIT_MS 20000

struct pair {
	struct proc a, b;
	char listen[32];        /* b's replication address (its heartbeats too) */
	char b_peer[32];        /* where b would connect after a takeover: nobody */
	uint16_t port;
};

/* b: memtouch, the given key (NULL: none) and heartbeat timeout. */
static void start_b(struct pair *pr, const char *key, const char *timeout)
{
	const char *args[] = { "--guest", "memtouch", "--ram-mb", "16",
			       "--heartbeat-timeout-ms", timeout, "--listen", pr->listen,
			       "--peer", pr->b_peer, key ? "--psk-file" : NULL, key, NULL };
	struct wait_arg w = { &pr->b, 0, "listening on" };

	proc_startv(&pr->b, pair_bin("colo-secondary"), "b", args);
	if (!wait_for(cond_log, &w, WAIT_MS)) {
		proc_dump_log(&pr->b);
		ck_abort_msg("the secondary did not start");
	}
}

/* A primary named name towards b (a, or a rogue). */
static void start_primary(struct proc *p, const struct pair *pr, const char *name,
			  const char *key, const char *timeout)
{
	const char *args[] = { "--guest", "memtouch", "--ram-mb", "16",
			       "--memtouch-rate", "2000", "--checkpoint-interval-ms", "50",
			       "--heartbeat-timeout-ms", timeout, "--peer", pr->listen,
			       key ? "--psk-file" : NULL, key, NULL };

	proc_startv(p, pair_bin("colo-primary"), name, args);
}

static void pair_init(struct pair *pr)
{
	memset(pr, 0, sizeof(*pr));
	pr->port = pair_free_port();
	snprintf(pr->listen, sizeof(pr->listen), "127.0.0.1:%u", pr->port);
	snprintf(pr->b_peer, sizeof(pr->b_peer), "127.0.0.1:%u", pair_free_port());
}

static uint64_t committed(struct proc *p)
{
	uint64_t last = 0;

	ck_assert_msg(ctl_status(p, NULL, NULL, 0, &last, NULL), "%s does not answer", p->name);
	return last;
}

/* b's last committed checkpoint goes on past `after` (by n). */
static void expect_advancing(struct proc *b, uint64_t after, uint64_t n)
{
	struct wait_arg w = { b, after + n, NULL };

	if (!wait_for(cond_committed, &w, WAIT_MS)) {
		proc_dump_log(b);
		ck_abort_msg("%s's committed checkpoint stays at %" PRIu64, b->name, committed(b));
	}
}

/* Start a keyed pair (both with key) and wait until it checkpoints. */
static void start_keyed_pair(struct pair *pr, const char *key, const char *timeout)
{
	pair_init(pr);
	start_b(pr, key, timeout);
	start_primary(&pr->a, pr, "a", key, timeout);
	if (!proc_wait_state(&pr->b, "protected", WAIT_MS) ||
	    !proc_wait_state(&pr->a, "protected", WAIT_MS))
		ck_abort_msg("the keyed pair did not get protected");
	ck_assert(proc_log_has(&pr->b, "primary a (generation 1) connected and proved the key; "
			       "loading its full sync"));
	expect_advancing(&pr->b, 0, 3);
}

static void expect_log(struct proc *p, const char *text)
{
	struct wait_arg w = { p, 0, text };

	if (!wait_for(cond_log, &w, WAIT_MS)) {
		proc_dump_log(p);
		ck_abort_msg("%s never logged \"%s\"", p->name, text);
	}
}

static uint64_t peers_refused(struct proc *p)
{
	uint64_t n = 0;

	ck_assert_msg(ctl_refusals(p, &n, NULL), "%s does not answer", p->name);
	return n;
}

static uint64_t heartbeats_refused(struct proc *p)
{
	uint64_t n = 0;

	ck_assert_msg(ctl_refusals(p, NULL, &n), "%s does not answer", p->name);
	return n;
}

/*
 * The lines of p's log that contain `before`, a port number and then
 * `after`: their count, each port (distinct ports: distinct connections).
 */
static int lines_with_port(const struct proc *p, const char *before, const char *after,
			   unsigned *ports, int max)
{
	size_t len;
	uint8_t *data = colo_test_read_file(p->log, &len);
	char *line, *save = NULL;
	int n = 0;

	if (!data)
		return 0;
	data[len] = '\0';
	for (line = strtok_r((char *)data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *at = strstr(line, before), *end;
		unsigned long port;

		if (!at)
			continue;
		port = strtoul(at + strlen(before), &end, 10);
		if (end == at + strlen(before) || port == 0 || port > 65535 ||
		    strncmp(end, after, strlen(after)) != 0)
			continue;
		if (n < max)
			ports[n] = (unsigned)port;
		n++;
	}
	free(data);
	return n;
}

static void assert_distinct(const unsigned *ports, int n)
{
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			ck_assert_msg(ports[i] != ports[j], "two refusals name 127.0.0.1:%u",
				      ports[i]);
}

/*
 * A rogue primary (key: its psk-file, NULL: none) tries b until it has
 * been turned away at least once (`its_line` in its own log, once per
 * attempt); then it is stopped.  It never exits by itself (a refusal's
 * generation is not newer than its own).  Returns its attempts.
 */
static int rogue_tries(const struct pair *pr, const char *name, const char *key,
		       const char *its_line)
{
	struct proc r;
	struct wait_arg w = { &r, 0, its_line };
	int tries;

	start_primary(&r, pr, name, key, "1000");
	if (!wait_for(cond_log, &w, WAIT_MS)) {
		proc_dump_log(&r);
		proc_stop(&r);
		ck_abort_msg("rogue %s never logged \"%s\"", name, its_line);
	}
	ck_assert_msg(!proc_wait(&r, 0), "rogue %s exited (%d)", name, r.exit_status);
	ck_assert_int_eq(proc_stop(&r), 0);
	tries = proc_log_count(&r, its_line);
	ck_assert(!proc_log_has(&r, "accepted us; full sync"));
	return tries;
}

/* b logged one "refused primary at 127.0.0.1:PORT: why" per attempt, each
 * counted in peers_refused. */
struct refusals {
	struct proc *b;
	uint64_t base;          /* peers_refused before the rogues */
	int lines_before;
	int want;               /* at least this many lines of `why` */
	const char *why;
};

static bool refusals_settled(void *ud)
{
	struct refusals *r = ud;
	unsigned ports[64];
	int all = lines_with_port(r->b, "refused primary at 127.0.0.1:", ": ", ports, 64);
	int these = lines_with_port(r->b, "refused primary at 127.0.0.1:", r->why, ports, 64);
	uint64_t count;

	return ctl_refusals(r->b, &count, NULL) && these >= r->want &&
	       count - r->base == (uint64_t)(all - r->lines_before);
}

/* Check what b logged for one rogue's `tries` attempts; returns the lines. */
static int expect_refusals(struct proc *b, uint64_t base, int lines_before, int tries,
			   const char *why)
{
	struct refusals r = { b, base, lines_before, tries, why };
	unsigned ports[64];
	int n;

	if (!wait_for(refusals_settled, &r, WAIT_MS)) {
		proc_dump_log(b);
		ck_abort_msg("b: not one \"refused primary at 127.0.0.1:PORT%s\" per attempt (%d "
			     "attempts), each counted in peers_refused (%" PRIu64 ")", why,
			     tries, peers_refused(b) - base);
	}
	n = lines_with_port(b, "refused primary at 127.0.0.1:", why, ports, 64);
	/* An attempt under way when the rogue was stopped is refused too. */
	ck_assert_msg(n <= tries + 1, "%d refusals for %d attempts", n, tries);
	ck_assert_int_le(n, 64);
	assert_distinct(ports, n);
	return n;
}

/* ---- rogue primaries ---- */

#define NO_PSK_WHY ": it did not authenticate (no psk-file there?)"
#define WRONG_PSK_WHY ": it closed without proving it has the key (another psk-file?)"

/* While b protects a: refused, counted, and a stays b's primary. */
START_TEST(rogue_primary_refused_while_protected)
{
	struct pair pr;
	uint64_t base, last;
	unsigned ports[64];
	char peer[64], its[256];
	int tries, n;

	start_keyed_pair(&pr, pair_keyfile("psk"), "1000");
	base = peers_refused(&pr.b);

	/* No key: b says so before anything else, in the clear. */
	tries = rogue_tries(&pr, "r", NULL, "secondary b refused us: node b authenticates its "
			    "peers: primary r has no psk-file");
	expect_refusals(&pr.b, base, 0, tries, NO_PSK_WHY);
	ck_assert(ctl_peer(&pr.b, peer, sizeof(peer)));
	ck_assert_str_eq(peer, "a");
	ck_assert(proc_wait_state(&pr.b, "protected", WAIT_MS));
	last = committed(&pr.b);
	expect_advancing(&pr.b, last, 3);

	/*
	 * Another key: b, busy, refuses it for that before the rogue had to
	 * prove anything (one line naming it, which says it has not proven the
	 * key); the rogue finds b's proof does not check and goes.  (b cannot
	 * tell this rogue from a second primary with the right key, so it does
	 * not count it in peers_refused: not asserted either way here.)
	 */
	snprintf(its, sizeof(its), "refused secondary at 127.0.0.1:%u: failed authentication: "
		 "its proof does not check (another psk-file?)", pr.port);
	tries = rogue_tries(&pr, "w", pair_keyfile("other"), its);
	expect_log(&pr.b, "node b already protects primary a (from 127.0.0.1:");
	n = lines_with_port(&pr.b, "node b already protects primary a (from 127.0.0.1:",
			    ", which has not proven the key yet)", ports, 64);
	ck_assert_msg(n >= tries && n <= tries + 1, "%d lines for %d attempts", n, tries);
	assert_distinct(ports, n < 64 ? n : 64);

	/* a is b's primary throughout, and checkpoints go on. */
	ck_assert(ctl_peer(&pr.b, peer, sizeof(peer)));
	ck_assert_str_eq(peer, "a");
	ck_assert(proc_wait_state(&pr.b, "protected", WAIT_MS));
	last = committed(&pr.b);
	expect_advancing(&pr.b, last, 3);
	ck_assert(!proc_log_has(&pr.b, "primary r ("));
	ck_assert(!proc_log_has(&pr.b, "primary w ("));
	ck_assert(!proc_log_has(&pr.a, "lost secondary"));
	ck_assert_int_eq(proc_log_count(&pr.b, "connected and proved the key"), 1);
	ck_assert_int_eq(proc_stop(&pr.a), 0);
	ck_assert_int_eq(proc_stop(&pr.b), 0);
}
END_TEST

/*
 * While b waits with committed state and no primary (a killed; a long
 * heartbeat timeout so b does not take over): the rogues are refused and
 * b's committed checkpoint and RAM do not move; then a comes back with
 * the key and is accepted.
 */
START_TEST(rogue_primary_refused_while_waiting)
{
	struct pair pr;
	const char *key = pair_keyfile("psk");
	uint64_t base, last, seq, checked = 0;
	char hash[128], now[128], peer[64], its[256], why[512];
	int tries, lines;

	start_keyed_pair(&pr, key, "60000");
	proc_signal(&pr.a, SIGKILL);
	ck_assert(proc_wait(&pr.a, WAIT_MS));
	ck_assert(proc_wait_state(&pr.b, "waiting", WAIT_MS));
	ck_assert(ctl_block_hash(&pr.b, hash, sizeof(hash), &last));
	ck_assert_uint_eq(committed(&pr.b), last);
	ck_assert_uint_gt(last, 0);
	ck_assert_msg(ctl_verify_clean(&pr.b, &checked, why, sizeof(why)), "%s", why);
	base = peers_refused(&pr.b);

	tries = rogue_tries(&pr, "r", NULL, "secondary b refused us: node b authenticates its "
			    "peers: primary r has no psk-file");
	lines = expect_refusals(&pr.b, base, 0, tries, NO_PSK_WHY);
	ck_assert(proc_wait_state(&pr.b, "waiting", WAIT_MS));
	ck_assert(ctl_block_hash(&pr.b, now, sizeof(now), &seq));
	ck_assert_uint_eq(seq, last);
	ck_assert_str_eq(now, hash);

	/* Another key: b answers (it is free), the rogue cannot check b's
	 * proof and closes without its own. */
	snprintf(its, sizeof(its), "refused secondary at 127.0.0.1:%u: failed authentication: "
		 "its proof does not check (another psk-file?)", pr.port);
	tries = rogue_tries(&pr, "w", pair_keyfile("other"), its);
	expect_refusals(&pr.b, base, 0, tries, WRONG_PSK_WHY);
	ck_assert_int_eq(lines_with_port(&pr.b, "refused primary at 127.0.0.1:", NO_PSK_WHY,
					 (unsigned[64]){ 0 }, 64), lines);
	ck_assert(proc_wait_state(&pr.b, "waiting", WAIT_MS));
	ck_assert(ctl_block_hash(&pr.b, now, sizeof(now), &seq));
	ck_assert_uint_eq(seq, last);
	ck_assert_str_eq(now, hash);
	ck_assert_uint_eq(committed(&pr.b), last);
	ck_assert_msg(ctl_verify_clean(&pr.b, &checked, why, sizeof(why)), "%s", why);
	ck_assert(!proc_log_has(&pr.b, "primary r ("));
	ck_assert(!proc_log_has(&pr.b, "primary w ("));
	ck_assert_int_eq(proc_log_count(&pr.b, "loading its full sync"), 1);

	/* The real primary, with the key, is believed again. */
	start_primary(&pr.a, &pr, "a", key, "60000");
	ck_assert(proc_wait_state(&pr.b, "protected", WAIT_MS));
	ck_assert_int_eq(proc_log_count(&pr.b, "primary a (generation 1) connected and "
					"proved the key; loading its full sync"), 2);
	ck_assert(ctl_peer(&pr.b, peer, sizeof(peer)));
	ck_assert_str_eq(peer, "a");
	expect_advancing(&pr.b, committed(&pr.b), 3);
	ck_assert_int_eq(proc_stop(&pr.a), 0);
	ck_assert_int_eq(proc_stop(&pr.b), 0);
}
END_TEST

/* ---- a keyed node and an unkeyed one ---- */

/* Neither protects: b never loads a sync, a never gets protected. */
static void expect_unprotected(struct pair *pr)
{
	ck_assert(proc_wait_state(&pr->b, "waiting", WAIT_MS));
	ck_assert(proc_wait_state(&pr->a, "degraded", WAIT_MS));
	ck_assert(!proc_log_has(&pr->b, "loading its full sync"));
	ck_assert(!proc_log_has(&pr->a, "accepted us; full sync"));
	ck_assert(!proc_log_has(&pr->a, "protected by"));
	ck_assert_uint_ge(peers_refused(&pr->b), 1);
	ck_assert_msg(!proc_wait(&pr->a, 0), "the primary exited (%d)", pr->a.exit_status);
	ck_assert_int_eq(proc_stop(&pr->a), 0);
	ck_assert_int_eq(proc_stop(&pr->b), 0);
}

START_TEST(keyed_secondary_refuses_unkeyed_primary)
{
	struct pair pr;
	unsigned ports[64];

	pair_init(&pr);
	start_b(&pr, pair_keyfile("psk"), "1000");
	start_primary(&pr.a, &pr, "a", NULL, "1000");
	expect_log(&pr.b, NO_PSK_WHY);
	ck_assert_int_ge(lines_with_port(&pr.b, "ERROR node=b gen=1 role=secondary: refused "
					 "primary at 127.0.0.1:", NO_PSK_WHY, ports, 64), 1);
	expect_log(&pr.a, "WARN node=a gen=1 role=primary: secondary b refused us: node b "
		   "authenticates its peers: primary a has no psk-file");
	expect_unprotected(&pr);
}
END_TEST

START_TEST(unkeyed_secondary_refuses_keyed_primary)
{
	struct pair pr;
	unsigned ports[64];
	char want[256];

	pair_init(&pr);
	start_b(&pr, NULL, "1000");
	start_primary(&pr.a, &pr, "a", pair_keyfile("psk"), "1000");
	expect_log(&pr.b, "WARN node=b gen=1 role=secondary: node b has no psk-file: primary a "
		   "has one");
	expect_log(&pr.b, ": it authenticates, this node has no psk-file");
	ck_assert_int_ge(lines_with_port(&pr.b, "ERROR node=b gen=1 role=secondary: refused "
					 "primary at 127.0.0.1:", ": it authenticates, this node "
					 "has no psk-file", ports, 64), 1);
	snprintf(want, sizeof(want), "ERROR node=a gen=1 role=primary: refused secondary at "
		 "127.0.0.1:%u: it did not authenticate (no psk-file there?); it said: node b "
		 "has no psk-file: primary a has one", pr.port);
	expect_log(&pr.a, want);
	ck_assert_uint_ge(peers_refused(&pr.a), 1);
	expect_unprotected(&pr);
}
END_TEST

/* ---- forged heartbeats ---- */

static uint64_t seq_of(const struct dgram *d)
{
	Colo__Heartbeat *msg = colo__heartbeat__unpack(NULL, d->len, d->data);
	uint64_t seq;

	ck_assert_ptr_nonnull(msg);
	seq = msg->seq;
	colo__heartbeat__free_unpacked(msg, NULL);
	return seq;
}

static void load_key(const char *path, uint8_t key[COLO_PSK_BYTES])
{
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(colo_psk_load(path, key, &err) == 0, "%s", err.msg);
}

/* A UDP socket on loopback to send forgeries from; its port in *port. */
static int forger(uint16_t *port)
{
	struct sockaddr_in sa = { 0 };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	ck_assert_int_ge(fd, 0);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static void send_to(int fd, uint16_t port, const struct dgram *d)
{
	struct sockaddr_in sa = { 0 };

	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(sendto(fd, d->data, d->len, 0, (struct sockaddr *)&sa, sizeof(sa)),
			 (ssize_t)d->len);
}

/*
 * Send d to a's heartbeat port every 20 ms until a logs `text` (a node logs
 * a refused heartbeat at most once a second); a must not exit meanwhile.
 * Returns how many were sent.
 */
static int send_until_logged(struct proc *a, int fd, uint16_t port, const struct dgram *d,
			     const char *text)
{
	for (int sent = 1; sent <= WAIT_MS / 20; sent++) {
		send_to(fd, port, d);
		if (proc_log_has(a, text))
			return sent;
		ck_assert_msg(!proc_wait(a, 0), "the primary exited (%d) on a forged heartbeat",
			      a->exit_status);
		usleep(20000);
	}
	proc_dump_log(a);
	ck_abort_msg("%s never logged \"%s\"", a->name, text);
	return 0;
}

struct count_arg {
	struct proc *p;
	uint64_t n;
};

static bool hb_refused_reached(void *ud)
{
	struct count_arg *c = ud;
	uint64_t n;

	return ctl_refusals(c->p, NULL, &n) && n >= c->n;
}

/*
 * Forged heartbeats naming b with a newer generation, at the keyed
 * primary: unsigned, signed with another key, and a genuine one (the key,
 * b's name) captured before the pair started, replayed.  a must not stop
 * (it would exit 5 on a believed newer generation), and counts them.
 */
START_TEST(forged_heartbeats_do_not_stop_the_primary)
{
	const char *key_path = pair_keyfile("psk");
	uint8_t key[COLO_PSK_BYTES], other[COLO_PSK_BYTES];
	struct dgram unsigned_hb, wrong_hb, old_hb, new_hb;
	struct count_arg c;
	struct pair pr;
	char text[256], peer[64];
	uint64_t base;
	uint16_t from, port;
	int fd, sent = 0;

	load_key(key_path, key);
	load_key(pair_keyfile("other"), other);
	/* Before b exists: a heartbeat b could have sent long ago. */
	hb_capture("b", COLO__ROLE__ROLE_SECONDARY, 2, key, &old_hb);
	hb_capture("b", COLO__ROLE__ROLE_SECONDARY, 2, NULL, &unsigned_hb);
	hb_capture("b", COLO__ROLE__ROLE_SECONDARY, 2, other, &wrong_hb);
	start_keyed_pair(&pr, key_path, "1000");
	port = proc_udp_port(&pr.a);
	ck_assert_msg(port != 0, "no heartbeat socket found for a");
	base = heartbeats_refused(&pr.a);
	fd = forger(&from);

	snprintf(text, sizeof(text), "refusing heartbeat from 127.0.0.1:%u: no MAC", from);
	sent += send_until_logged(&pr.a, fd, port, &unsigned_hb, text);
	snprintf(text, sizeof(text), "refusing heartbeat from 127.0.0.1:%u: wrong MAC", from);
	sent += send_until_logged(&pr.a, fd, port, &wrong_hb, text);
	snprintf(text, sizeof(text), "refusing heartbeat from 127.0.0.1:%u: replayed: seq %"
		 PRIu64 " not above ", from, seq_of(&old_hb));
	sent += send_until_logged(&pr.a, fd, port, &old_hb, text);

	c = (struct count_arg){ &pr.a, base + (uint64_t)sent };
	ck_assert_msg(wait_for(hb_refused_reached, &c, WAIT_MS), "a counted %" PRIu64
		      " refused heartbeats of %d sent", heartbeats_refused(&pr.a) - base, sent);
	ck_assert_msg(!proc_wait(&pr.a, 0), "the primary exited (%d)", pr.a.exit_status);
	ck_assert(!proc_log_has(&pr.a, "newer than ours"));
	ck_assert(proc_wait_state(&pr.a, "protected", WAIT_MS));
	ck_assert(ctl_peer(&pr.b, peer, sizeof(peer)));
	ck_assert_str_eq(peer, "a");
	expect_advancing(&pr.b, committed(&pr.b), 3);

	/* The same code with the key and a fresh seq is believed: a stops. */
	hb_capture("b", COLO__ROLE__ROLE_SECONDARY, 2, key, &new_hb);
	send_to(fd, port, &new_hb);
	ck_assert_msg(proc_wait(&pr.a, WAIT_MS), "a genuine newer generation did not stop a");
	ck_assert_int_eq(pr.a.exit_status, 5);
	ck_assert(proc_log_has(&pr.a, "node b has generation 2, newer than ours (1): it took "
			       "over; stopping"));
	close(fd);
	sodium_memzero(key, sizeof(key));
	sodium_memzero(other, sizeof(other));
	proc_stop(&pr.a);
	ck_assert_int_eq(proc_stop(&pr.b), 0);
}
END_TEST

/*
 * a stopped (SIGSTOP: its connection stays open, only its heartbeats
 * stop); forged heartbeats naming a (unsigned, another key, a genuine one
 * captured before the pair started) go to b every 10 ms: b takes over on
 * its timeout all the same.
 */
START_TEST(forged_heartbeats_do_not_hold_off_the_takeover)
{
	const char *key_path = pair_keyfile("psk");
	uint8_t key[COLO_PSK_BYTES], other[COLO_PSK_BYTES];
	struct dgram list[3];
	struct pair pr;
	char text[128];
	uint64_t base, stopped;
	uint16_t from;
	int fd, sent = 0;
	bool took_over = false;

	load_key(key_path, key);
	load_key(pair_keyfile("other"), other);
	hb_capture("a", COLO__ROLE__ROLE_PRIMARY, 1, key, &list[0]);
	hb_capture("a", COLO__ROLE__ROLE_PRIMARY, 1, NULL, &list[1]);
	hb_capture("a", COLO__ROLE__ROLE_PRIMARY, 1, other, &list[2]);
	start_keyed_pair(&pr, key_path, "500");
	base = heartbeats_refused(&pr.b);
	fd = forger(&from);
	proc_signal(&pr.a, SIGSTOP);
	stopped = colo_now_ms();
	while (!took_over && colo_now_ms() - stopped < WAIT_MS) {
		for (int i = 0; i < 3; i++, sent++)
			send_to(fd, pr.port, &list[i]);
		took_over = cond_primary(&pr.b);
		if (!took_over)
			usleep(10000);
	}
	if (!took_over)
		proc_dump_log(&pr.b);
	ck_assert_msg(took_over, "b did not take over while forged heartbeats came");
	fprintf(stderr, "# takeover %" PRIu64 " ms after a stopped (timeout 500 ms), %d forged "
		"heartbeats sent meanwhile\n", colo_now_ms() - stopped, sent);
	ck_assert(proc_log_has(&pr.b, "no heartbeat from a for 500 ms: taking over"));
	snprintf(text, sizeof(text), "refusing heartbeat from 127.0.0.1:%u: ", from);
	ck_assert(proc_log_has(&pr.b, text));
	ck_assert_uint_ge(heartbeats_refused(&pr.b), base + 3);
	close(fd);
	sodium_memzero(key, sizeof(key));
	sodium_memzero(other, sizeof(other));
	proc_signal(&pr.a, SIGKILL);
	ck_assert(proc_wait(&pr.a, WAIT_MS));
	ck_assert_int_eq(proc_stop(&pr.b), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("rogue primaries");

	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, rogue_primary_refused_while_protected);
	tcase_add_test(tc, rogue_primary_refused_while_waiting);
	suite_add_tcase(s, tc);
	tc = tcase_create("keyed and unkeyed");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, keyed_secondary_refuses_unkeyed_primary);
	tcase_add_test(tc, unkeyed_secondary_refuses_keyed_primary);
	suite_add_tcase(s, tc);
	tc = tcase_create("forged heartbeats");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, forged_heartbeats_do_not_stop_the_primary);
	tcase_add_test(tc, forged_heartbeats_do_not_hold_off_the_takeover);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
