/*
 * test_pair.c: a primary and a secondary on loopback, as processes: they
 * reach checkpoints and verify clean on both sides; the secondary takes
 * over when the primary is killed (at random moments and at every named
 * checkpoint phase) or on request; a stale primary is refused; a promoted
 * node gets a new secondary (reprotect); the interval changes at run time;
 * bad configurations and garbage from a peer are refused.
 *
 * Each test runs in its own process (Check's fork mode) and stops its
 * daemons by pid; daemons also die with the test (PR_SET_PDEATHSIG).
 */
#include "config.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pair.h"
#include "testutil.h"

#define TIMEOUT_MS 300          /* heartbeat-timeout-ms of the tests */
/* Slack on "promotes within the timeout": the check itself polls every
 * 5 ms; sanitizer builds are slower. */
#define PROMOTE_SLACK_MS 100

struct pair {
	struct proc a, b;            /* a: primary, b: secondary */
	char b_listen[32];           /* 127.0.0.1:PORT */
	char a_listen[32];           /* where a listens if it becomes a secondary */
};

static void check_alive(struct proc *p)
{
	if (proc_wait(p, 0)) {
		proc_dump_log(p);
		ck_abort_msg("%s exited with status %d", p->name, p->exit_status);
	}
}

/* Start b (secondary) then a (primary); wait until protected. */
static void pair_start(struct pair *pr, const char *fault)
{
	struct wait_arg w;

	snprintf(pr->b_listen, sizeof(pr->b_listen), "127.0.0.1:%u", pair_free_port());
	snprintf(pr->a_listen, sizeof(pr->a_listen), "127.0.0.1:%u", pair_free_port());
	proc_start(&pr->b, pair_bin("colo-secondary"), "b", "--guest", "memtouch",
		   "--listen", pr->b_listen,
		   "--peer", pr->a_listen, "--ram-mb", "16", "--memtouch-rate", "20000",
		   "--heartbeat-timeout-ms", "300", NULL);
	proc_start(&pr->a, pair_bin("colo-primary"), "a", "--guest", "memtouch",
		   "--peer", pr->b_listen,
		   "--ram-mb", "16", "--memtouch-rate", "20000",
		   "--checkpoint-interval-ms", "20", "--heartbeat-timeout-ms", "300",
		   "--fault", fault ? fault : "", NULL);
	if (!wait_for(cond_protected, &pr->b, 20000) ||
	    !wait_for(cond_protected, &pr->a, 20000)) {
		proc_dump_log(&pr->a);
		proc_dump_log(&pr->b);
		ck_abort_msg("the pair did not get protected");
	}
	w.p = &pr->b;
	w.n = 5;
	ck_assert_msg(wait_for(cond_committed, &w, 20000), "no checkpoints");
}

static void assert_clean(struct proc *p)
{
	char why[512];
	uint64_t checked = 0;

	if (!ctl_verify_clean(p, &checked, why, sizeof(why))) {
		proc_dump_log(p);
		ck_abort_msg("verify on %s: %s", p->name, why);
	}
	ck_assert_uint_eq(checked, 16u << 20 >> 12);
}

/* Kill the primary (or wait for it to die), then time the takeover. */
static uint64_t time_takeover(struct pair *pr, bool kill_it)
{
	uint64_t died, took;

	if (kill_it)
		proc_signal(&pr->a, SIGKILL);
	ck_assert_msg(proc_wait(&pr->a, 20000), "the primary did not die");
	died = now_ms();
	if (!wait_for(cond_primary, &pr->b, 5000)) {
		proc_dump_log(&pr->a);
		proc_dump_log(&pr->b);
		ck_abort_msg("the secondary did not take over");
	}
	took = now_ms() - died;
	fprintf(stderr, "# takeover %" PRIu64 " ms after the primary died\n", took);
	return took;
}

START_TEST(pair_checkpoints_and_verifies)
{
	struct pair pr;
	struct wait_arg w;
	Colo__Role role;
	char state[64];
	uint64_t last, gen;

	pair_start(&pr, NULL);
	w.p = &pr.a;
	w.n = 50;
	ck_assert_msg(wait_for(cond_committed, &w, 30000), "fewer than 50 checkpoints");
	ck_assert(ctl_status(&pr.a, &role, state, sizeof(state), &last, &gen));
	ck_assert_int_eq(role, COLO__ROLE__ROLE_PRIMARY);
	ck_assert_str_eq(state, "protected");
	ck_assert_uint_eq(gen, 1);
	ck_assert_uint_ge(last, 50);
	ck_assert(ctl_status(&pr.b, &role, state, sizeof(state), &last, &gen));
	ck_assert_int_eq(role, COLO__ROLE__ROLE_SECONDARY);
	assert_clean(&pr.a);
	assert_clean(&pr.b);
	check_alive(&pr.a);
	ck_assert_int_eq(proc_stop(&pr.a), 0);
	ck_assert_int_eq(proc_stop(&pr.b), 0);
}
END_TEST

/* kill -9 at random moments: the secondary serves a consistent state. */
START_TEST(kill_primary_at_random)
{
	struct colo_rng rng = { 1000 + (uint64_t)getpid() };
	struct pair pr;
	uint64_t took;

	pair_start(&pr, NULL);
	usleep((useconds_t)(colo_rng_below(&rng, 200) * 1000));
	took = time_takeover(&pr, true);
	ck_assert_msg(took <= TIMEOUT_MS + PROMOTE_SLACK_MS,
		      "took over %" PRIu64 " ms after the kill", took);
	assert_clean(&pr.b);
	/* The promoted node's guest runs on: verify again a little later. */
	usleep(100000);
	assert_clean(&pr.b);
	ck_assert_int_eq(proc_stop(&pr.b), 0);
}
END_TEST

/* The primary dies at each named phase of a checkpoint. */
static const char *const phases[] = {
	"paused", "staged", "request", "encoded", "mid-send", "sent", "received",
};

START_TEST(kill_primary_mid_checkpoint)
{
	char fault[64];
	struct pair pr;
	uint64_t took;

	snprintf(fault, sizeof(fault), "abort-at=%s,after=12", phases[_i]);
	pair_start(&pr, fault);
	took = time_takeover(&pr, false);
	ck_assert_msg(proc_log_has(&pr.a, "fault injection: killing this process at"),
		      "the primary died otherwise");
	ck_assert_msg(took <= TIMEOUT_MS + PROMOTE_SLACK_MS,
		      "%s: took over %" PRIu64 " ms after the death", phases[_i], took);
	assert_clean(&pr.b);
	ck_assert_int_eq(proc_stop(&pr.b), 0);
}
END_TEST

/* A full sync cut in the middle leaves nothing to take over from. */
START_TEST(kill_primary_mid_sync)
{
	struct proc a, b;
	char listen[32];
	struct wait_arg w;
	Colo__Role role;

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", pair_free_port());
	proc_start(&b, pair_bin("colo-secondary"), "b", "--guest", "memtouch",
		   "--listen", listen, "--ram-mb", "16",
		   NULL);
	proc_start(&a, pair_bin("colo-primary"), "a", "--guest", "memtouch",
		   "--peer", listen, "--ram-mb", "16",
		   "--fault", "abort-at=mid-sync", NULL);
	ck_assert(proc_wait(&a, 20000));
	w.p = &b;
	w.text = "no committed state to take over from";
	ck_assert_msg(wait_for(cond_log, &w, 5000), "the secondary kept a half sync");
	usleep(500000);
	ck_assert(ctl_status(&b, &role, NULL, 0, NULL, NULL));
	ck_assert_int_eq(role, COLO__ROLE__ROLE_SECONDARY);
	ck_assert_int_eq(proc_stop(&b), 0);
}
END_TEST

/* colo-ctl failover; the old primary, still alive, is then refused. */
START_TEST(manual_failover_and_stale_primary)
{
	struct pair pr;
	Colo__ControlResponse *r;
	uint64_t gen;
	struct wait_arg w;

	pair_start(&pr, NULL);
	r = ctl(&pr.b, COLO__CONTROL_REQUEST__CMD_FAILOVER, 0, NULL, 0);
	ck_assert_ptr_nonnull(r);
	ck_assert_msg(r->ok, "%s", r->error);
	ck_assert_msg(strstr(r->message, "taking over from checkpoint "), "%s", r->message);
	colo__control_response__free_unpacked(r, NULL);
	ck_assert(wait_for(cond_primary, &pr.b, 2000));
	ck_assert(ctl_status(&pr.b, NULL, NULL, 0, NULL, &gen));
	ck_assert_uint_eq(gen, 2);
	assert_clean(&pr.b);
	/* a (generation 1) lost its secondary; it learns it was replaced. */
	ck_assert_msg(proc_wait(&pr.a, 15000), "the stale primary kept running");
	ck_assert_int_eq(pr.a.exit_status, 5);
	ck_assert(proc_log_has(&pr.a, "newer than ours (1)"));
	w.p = &pr.b;
	w.text = "generation 1 is older than ours (2)";
	ck_assert_msg(wait_for(cond_log, &w, 2000), "no refusal logged");
	/* A failover on a primary is refused, with exit status 1 from colo-ctl. */
	r = ctl(&pr.b, COLO__CONTROL_REQUEST__CMD_FAILOVER, 0, NULL, 0);
	ck_assert_ptr_nonnull(r);
	ck_assert(!r->ok);
	ck_assert_str_eq(r->error, "this node is the primary: failover is requested on "
			 "the secondary");
	colo__control_response__free_unpacked(r, NULL);
	ck_assert_int_eq(proc_stop(&pr.b), 0);
}
END_TEST

static double rate(struct proc *p, int ms)
{
	uint64_t a, b, t0, t1;

	ck_assert(ctl_status(p, NULL, NULL, 0, &a, NULL));
	t0 = now_ms();
	usleep((useconds_t)ms * 1000);
	ck_assert(ctl_status(p, NULL, NULL, 0, &b, NULL));
	t1 = now_ms();
	return (double)(b - a) * 1000.0 / (double)(t1 - t0);
}

START_TEST(set_interval_changes_the_rate)
{
	struct pair pr;
	Colo__ControlResponse *r;
	double slow, fast;

	pair_start(&pr, NULL);
	r = ctl(&pr.a, COLO__CONTROL_REQUEST__CMD_SET_INTERVAL, 200, NULL, 0);
	ck_assert(r && r->ok);
	ck_assert_str_eq(r->message, "checkpoint interval set to 200 ms");
	colo__control_response__free_unpacked(r, NULL);
	usleep(300000);
	slow = rate(&pr.a, 1000);
	r = ctl(&pr.a, COLO__CONTROL_REQUEST__CMD_SET_INTERVAL, 10, NULL, 0);
	ck_assert(r && r->ok);
	colo__control_response__free_unpacked(r, NULL);
	usleep(200000);
	fast = rate(&pr.a, 1000);
	fprintf(stderr, "# %.1f checkpoints/s at 200 ms, %.1f at 10 ms\n", slow, fast);
	ck_assert_msg(slow >= 3 && slow <= 6, "%.1f checkpoints/s at 200 ms", slow);
	ck_assert_msg(fast >= 4 * slow, "%.1f checkpoints/s at 10 ms", fast);
	/* colo-ctl checkpoint answers once it committed. */
	r = ctl(&pr.a, COLO__CONTROL_REQUEST__CMD_CHECKPOINT, 0, NULL, 0);
	ck_assert(r && r->ok);
	ck_assert_msg(strstr(r->message, " committed"), "%s", r->message);
	colo__control_response__free_unpacked(r, NULL);
	/* Bad values are refused. */
	r = ctl(&pr.a, COLO__CONTROL_REQUEST__CMD_SET_INTERVAL, 0, NULL, 0);
	ck_assert(r && !r->ok);
	ck_assert_str_eq(r->error, "interval 0 ms is outside 1..60000");
	colo__control_response__free_unpacked(r, NULL);
	ck_assert_int_eq(proc_stop(&pr.a), 0);
	ck_assert_int_eq(proc_stop(&pr.b), 0);
}
END_TEST

/* A request to a node that may still be starting: retry until it answers. */
static Colo__ControlResponse *ctl_retry(struct proc *p, Colo__ControlRequest__CmdCase cmd)
{
	Colo__ControlResponse *r = NULL;

	for (int i = 0; i < 1000 && !r; i++) {
		r = ctl(p, cmd, 0, NULL, 0);
		if (!r) {
			check_alive(p);
			usleep(10000);
		}
	}
	return r;
}

/* colo-ctl checkpoint: one checkpoint now, never closer than min-interval-ms
 * to the one before; refused with no secondary. */
START_TEST(checkpoint_on_demand)
{
	struct proc a, b;
	char listen[32];
	Colo__ControlResponse *r;
	uint64_t t0, t2, last = 0, seq1 = 0, seq2 = 0;

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", pair_free_port());
	proc_start(&a, pair_bin("colo-primary"), "a", "--guest", "memtouch",
		   "--peer", listen, "--ram-mb", "16",
		   "--checkpoint-interval-ms", "60000", "--min-interval-ms", "300", NULL);
	r = ctl_retry(&a, COLO__CONTROL_REQUEST__CMD_CHECKPOINT);
	ck_assert(r && !r->ok);
	ck_assert_msg(strstr(r->error, "not protected: no secondary to checkpoint to"), "%s",
		      r->error);
	colo__control_response__free_unpacked(r, NULL);
	proc_start(&b, pair_bin("colo-secondary"), "b", "--guest", "memtouch",
		   "--listen", listen, "--ram-mb", "16",
		   NULL);
	ck_assert(wait_for(cond_protected, &a, 20000));
	t0 = now_ms();
	r = ctl(&a, COLO__CONTROL_REQUEST__CMD_CHECKPOINT, 0, NULL, 0);
	ck_assert(r && r->ok);
	ck_assert_int_eq(sscanf(r->message, "checkpoint %" SCNu64 " committed", &seq1), 1);
	colo__control_response__free_unpacked(r, NULL);
	r = ctl(&a, COLO__CONTROL_REQUEST__CMD_CHECKPOINT, 0, NULL, 0);
	ck_assert(r && r->ok);
	ck_assert_int_eq(sscanf(r->message, "checkpoint %" SCNu64 " committed", &seq2), 1);
	colo__control_response__free_unpacked(r, NULL);
	t2 = now_ms();
	fprintf(stderr, "# two checkpoints on demand in %" PRIu64 " ms\n", t2 - t0);
	/* The interval (60 s) never fired: these are the only checkpoints. */
	ck_assert_uint_eq(seq1, 1);
	ck_assert_uint_eq(seq2, 2);
	/* The second waited for min-interval-ms after the first (a lower bound:
	 * nothing about the machine's speed can make it fail). */
	ck_assert_uint_ge(t2 - t0, 300);
	ck_assert(ctl_status(&b, NULL, NULL, 0, &last, NULL));
	ck_assert_uint_eq(last, 2);
	assert_clean(&b);
	ck_assert_int_eq(proc_stop(&a), 0);
	ck_assert_int_eq(proc_stop(&b), 0);
}
END_TEST

/* The secondary dies and a new one comes: the primary runs on unprotected,
 * resyncs it, and checkpoint numbers go on from where they were. */
START_TEST(secondary_restart_resyncs)
{
	struct pair pr;
	struct wait_arg w;
	char state[64];
	uint64_t before, after, b_last;

	pair_start(&pr, NULL);
	proc_signal(&pr.b, SIGKILL);
	ck_assert(proc_wait(&pr.b, 5000));
	ck_assert(ctl_status(&pr.a, NULL, NULL, 0, &before, NULL));
	/* no secondary: degraded, within the heartbeat timeout and some */
	for (int i = 0; i < 200; i++) {
		ck_assert(ctl_status(&pr.a, NULL, state, sizeof(state), NULL, NULL));
		if (strcmp(state, "protected") != 0)
			break;
		usleep(10000);
	}
	ck_assert_str_ne(state, "protected");
	proc_start(&pr.b, pair_bin("colo-secondary"), "b2", "--guest", "memtouch",
		   "--listen", pr.b_listen,
		   "--ram-mb", "16", "--heartbeat-timeout-ms", "300", NULL);
	ck_assert_msg(wait_for(cond_protected, &pr.a, 20000), "no resync");
	w.p = &pr.b;
	w.n = before + 10;
	if (!wait_for(cond_committed, &w, 20000)) {
		proc_dump_log(&pr.a);
		proc_dump_log(&pr.b);
		ck_abort_msg("no checkpoints after the resync");
	}
	ck_assert(ctl_status(&pr.a, NULL, NULL, 0, &after, NULL));
	ck_assert(ctl_status(&pr.b, NULL, NULL, 0, &b_last, NULL));
	ck_assert_uint_gt(after, before);
	ck_assert_uint_gt(b_last, before);
	ck_assert(proc_log_has(&pr.a, "full sync"));
	ck_assert(!proc_log_has(&pr.b, "refused"));
	assert_clean(&pr.b);
	check_alive(&pr.a);
	ck_assert_int_eq(proc_stop(&pr.a), 0);
	ck_assert_int_eq(proc_stop(&pr.b), 0);
}
END_TEST

/* A primary, B secondary -> B promoted -> A rejoins as secondary -> B protected. */
START_TEST(reprotect_cycle)
{
	struct pair pr;
	struct proc a2;
	struct wait_arg w;
	uint64_t gen_a, gen_b, last, took_from;

	pair_start(&pr, NULL);
	time_takeover(&pr, true);
	/* Numbers go on from the checkpoint b took over from (pair_start saw
	 * at least 5 committed), they do not start again at 0. */
	ck_assert(ctl_status(&pr.b, NULL, NULL, 0, &took_from, NULL));
	ck_assert_uint_ge(took_from, 5);
	proc_start(&a2, pair_bin("colo-secondary"), "a", "--guest", "memtouch",
		   "--listen", pr.a_listen,
		   "--ram-mb", "16", "--heartbeat-timeout-ms", "300", NULL);
	if (!wait_for(cond_protected, &pr.b, 20000) || !wait_for(cond_protected, &a2, 5000)) {
		proc_dump_log(&pr.b);
		proc_dump_log(&a2);
		ck_abort_msg("no reprotection");
	}
	ck_assert(ctl_status(&pr.b, NULL, NULL, 0, &last, &gen_b));
	ck_assert_uint_gt(last, took_from);
	w.p = &a2;
	w.n = last + 10;
	ck_assert_msg(wait_for(cond_committed, &w, 20000), "no checkpoints after reprotect");
	ck_assert(ctl_status(&a2, NULL, NULL, 0, NULL, &gen_a));
	ck_assert_uint_eq(gen_b, 2);
	ck_assert_uint_eq(gen_a, 2);
	assert_clean(&pr.b);
	assert_clean(&a2);
	/* ... and it fails over again, the other way. */
	proc_signal(&pr.b, SIGKILL);
	ck_assert(proc_wait(&pr.b, 5000));
	ck_assert(wait_for(cond_primary, &a2, 5000));
	ck_assert(ctl_status(&a2, NULL, NULL, 0, NULL, &gen_a));
	ck_assert_uint_eq(gen_a, 3);
	assert_clean(&a2);
	ck_assert_int_eq(proc_stop(&a2), 0);
}
END_TEST

START_TEST(sighup_rereads_the_file)
{
	char file[300], listen[32];
	struct proc a, b;
	FILE *f;
	struct wait_arg w;
	Colo__ControlResponse *r;

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", pair_free_port());
	snprintf(file, sizeof(file), "%s/a.ini", pair_dir());
	f = fopen(file, "w");
	fprintf(f, "[replication]\npeer = %s\ncheckpoint-interval-ms = 100\n", listen);
	fclose(f);
	proc_start(&b, pair_bin("colo-secondary"), "b", "--guest", "memtouch",
		   "--listen", listen, "--ram-mb", "16",
		   NULL);
	proc_start(&a, pair_bin("colo-primary"), "a", "--guest", "memtouch",
		   "-c", file, "--ram-mb", "16", NULL);
	ck_assert(wait_for(cond_protected, &a, 20000));
	f = fopen(file, "w");
	fprintf(f, "[replication]\npeer = %s\ncheckpoint-interval-ms = 30\n", listen);
	fclose(f);
	proc_signal(&a, SIGHUP);
	w.p = &a;
	w.text = "configuration re-read";
	ck_assert(wait_for(cond_log, &w, 5000));
	r = ctl(&a, COLO__CONTROL_REQUEST__CMD_STATUS, 0, NULL, 0);
	ck_assert(r && r->ok);
	ck_assert_uint_eq(r->status->interval_ms, 30);
	colo__control_response__free_unpacked(r, NULL);
	/* A bad file: refused, the running configuration kept. */
	f = fopen(file, "w");
	fprintf(f, "[replication]\ncheckpoint-interval-ms = often\n");
	fclose(f);
	proc_signal(&a, SIGHUP);
	w.text = "keeping the running configuration";
	ck_assert(wait_for(cond_log, &w, 5000));
	r = ctl(&a, COLO__CONTROL_REQUEST__CMD_STATUS, 0, NULL, 0);
	ck_assert(r && r->ok);
	ck_assert_uint_eq(r->status->interval_ms, 30);
	colo__control_response__free_unpacked(r, NULL);
	ck_assert_int_eq(proc_stop(&a), 0);
	ck_assert_int_eq(proc_stop(&b), 0);
}
END_TEST

START_TEST(bad_configuration_is_refused)
{
	struct proc p;
	char file[300];
	FILE *f;

	proc_start(&p, pair_bin("colo-primary"), "bad", "--guest", "memtouch",
		   "--checkpoint-interval-ms", "fast", NULL);
	ck_assert(proc_wait(&p, 10000));
	ck_assert_int_eq(p.exit_status, 2);
	ck_assert_msg(proc_log_has(&p, "checkpoint-interval-ms: 'fast' is not an integer"),
		      "no key/value/why in the message");
	proc_start(&p, pair_bin("colo-secondary"), "bad", "--guest", "memtouch",
		   "--listen", "localhost:7070", NULL);
	ck_assert(proc_wait(&p, 10000));
	ck_assert_int_eq(p.exit_status, 2);
	ck_assert_msg(proc_log_has(&p, "listen"), "no key in the message");
	proc_start(&p, pair_bin("colo-primary"), "bad", "--guest", "nosuch", NULL);
	ck_assert(proc_wait(&p, 10000));
	ck_assert_int_eq(p.exit_status, 2);
	ck_assert(proc_log_has(&p, "guest: 'nosuch' is not one of kv, memtouch"));
	snprintf(file, sizeof(file), "%s/bad.ini", pair_dir());
	f = fopen(file, "w");
	fprintf(f, "[heartbeat]\nheartbeat-timeout-ms = 10\nheartbeat-interval-ms = 50\n");
	fclose(f);
	proc_start(&p, pair_bin("colo-primary"), "bad", "--guest", "memtouch",
		   "-c", file, NULL);
	ck_assert(proc_wait(&p, 10000));
	ck_assert_int_eq(p.exit_status, 2);
	ck_assert(proc_log_has(&p, "heartbeat-timeout-ms"));
	/* A port already taken: a start-up failure with its own status. */
	{
		struct proc b;
		char listen[32];
		struct wait_arg w;

		snprintf(listen, sizeof(listen), "127.0.0.1:%u", pair_free_port());
		proc_start(&b, pair_bin("colo-secondary"), "b1", "--guest", "memtouch",
			   "--listen", listen, NULL);
		w.p = &b;
		w.text = "listening on";
		ck_assert(wait_for(cond_log, &w, 10000));
		proc_start(&p, pair_bin("colo-secondary"), "b2", "--guest", "memtouch",
			   "--listen", listen, NULL);
		ck_assert(proc_wait(&p, 10000));
		ck_assert_int_eq(p.exit_status, 3);
		ck_assert_msg(proc_log_has(&p, "cannot listen on"), "no reason logged");
		ck_assert_int_eq(proc_stop(&b), 0);
	}
}
END_TEST

/* Bytes that are not colo's protocol: refused, and the node serves on. */
START_TEST(garbage_from_a_peer)
{
	struct proc a, b;
	char listen[32];
	uint16_t port = pair_free_port();
	struct sockaddr_in sa;
	static const char junk[] = "GET / HTTP/1.0\r\n\r\n\x00\x01\x02\xff\xfe";
	int fd;

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
	proc_start(&b, pair_bin("colo-secondary"), "b", "--guest", "memtouch",
		   "--listen", listen, "--ram-mb", "16",
		   NULL);
	{
		struct wait_arg w = { &b, 0, "listening on" };

		ck_assert(wait_for(cond_log, &w, 10000));
	}
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* TCP: a Hello length of 1195725856 ("GET ") is refused at once. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(write(fd, junk, sizeof(junk)), sizeof(junk));
	{
		char buf[16];

		ck_assert_int_le(read(fd, buf, sizeof(buf)), 0);   /* closed on us */
	}
	close(fd);
	/* UDP: garbage heartbeats are counted and dropped. */
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	for (int i = 0; i < 20; i++)
		ck_assert_int_eq(sendto(fd, junk, sizeof(junk), 0, (struct sockaddr *)&sa,
					sizeof(sa)), sizeof(junk));
	close(fd);
	/* The secondary still protects a real primary. */
	proc_start(&a, pair_bin("colo-primary"), "a", "--guest", "memtouch",
		   "--peer", listen, "--ram-mb", "16",
		   "--checkpoint-interval-ms", "20", NULL);
	ck_assert(wait_for(cond_protected, &a, 20000));
	{
		struct wait_arg w = { &b, 10, NULL };

		ck_assert(wait_for(cond_committed, &w, 20000));
	}
	assert_clean(&b);
	ck_assert_int_eq(proc_stop(&a), 0);
	ck_assert_int_eq(proc_stop(&b), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("pair");
	TCase *tc = tcase_create("pair");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, pair_checkpoints_and_verifies);
	tcase_add_loop_test(tc, kill_primary_at_random, 0, 3);
	tcase_add_loop_test(tc, kill_primary_mid_checkpoint, 0,
			    (int)(sizeof(phases) / sizeof(phases[0])));
	tcase_add_test(tc, kill_primary_mid_sync);
	tcase_add_test(tc, manual_failover_and_stale_primary);
	tcase_add_test(tc, set_interval_changes_the_rate);
	tcase_add_test(tc, checkpoint_on_demand);
	tcase_add_test(tc, secondary_restart_resyncs);
	tcase_add_test(tc, reprotect_cycle);
	tcase_add_test(tc, sighup_rereads_the_file);
	tcase_add_test(tc, bad_configuration_is_refused);
	tcase_add_test(tc, garbage_from_a_peer);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
